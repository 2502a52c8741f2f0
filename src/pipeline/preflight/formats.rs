//! The format rules preflight applies to a file, judged from its bytes alone.
//!
//! The format is recognised by its first bytes, whatever the extension says: the service takes
//! JPEG, PNG, TIFF, WEBP, AVIF and PDF. Then the vendor's mandatory limits are applied (see the
//! constants below): bytes per page, pixels per side, number of pages. A file that breaks one of
//! them, an empty file, a file in another format, or a file that cannot be parsed goes straight
//! to failed/ with a message a receptionist can act on, and no request is made.
//!
//! What is read, and how:
//! - JPEG: the markers up to the first frame header (SOFn), skipping segments by their length;
//! - PNG, WEBP: the first 64 bytes (IHDR; VP8/VP8L/VP8X header);
//! - AVIF: the box tree up to the `ispe` property, through `imagesize`;
//! - TIFF: the chain of image file directories (IFDs), one seek per page;
//! - PDF: the whole file, streamed in chunks, counting page objects (never held in memory at once).
//!
//! Then **the file must end the way its format ends** ([`check_ending`]), judged without decoding:
//! JPEG reaches its end-of-image marker (`FF D9`; bytes after it, as some cameras add, are
//! fine), PNG its `IEND` chunk (every chunk's checksum checked on the way), PDF has `%%EOF` in
//! its last KB, every TIFF strip or tile lies inside the file, WEBP is as long as its RIFF
//! header says, and AVIF's top-level boxes fit. A file that fails this, or whose header ends
//! early, is *cut off* ([`is_cut_off`]): intake holds it as still being written, and preflight
//! refuses it with "The file is cut off". Header sanity: the PNG IHDR checksum, a JPEG frame
//! header (SOFn) before its first scan (SOS), a TIFF IFD chain that neither loops nor leaves
//! the file, and every TIFF page saying where its image data is.
//!
//! Nothing here panics on a malformed file: every read is bounded and every offset checked.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// One kilobyte as used in the checks *and* the messages: 1024 bytes.
pub const KB: u64 = 1024;
/// One megabyte as used in the checks *and* the messages: 1024 KB (1 048 576 bytes).
pub const MB: u64 = 1024 * KB;

// The vendor's mandatory limits, from its documentation page "Limits the vendor states as
// mandatory" (/work/shared/beorg-api.md §4): "each page image 10 KB to 5 MB; at most 20 pages;
// width and height 1000 to 5000 px". KB and MB are read as 1024 and 1024 × 1024 bytes.

/// Smallest page the service takes (10 KB, per page image; vendor limits, beorg-api.md §4).
pub const MIN_PAGE_BYTES: u64 = 10 * KB;
/// Largest page the service takes (5 MB, per page image; vendor limits, beorg-api.md §4).
pub const MAX_PAGE_BYTES: u64 = 5 * MB;
/// Shortest side the service takes, in pixels (vendor limits, beorg-api.md §4).
pub const MIN_SIDE_PX: u32 = 1000;
/// Longest side the service takes, in pixels (vendor limits, beorg-api.md §4).
pub const MAX_SIDE_PX: u32 = 5000;
/// Most pages in one file (vendor limits, beorg-api.md §4).
pub const MAX_PAGES: u32 = 20;
/// Largest file of any kind: [`MAX_PAGES`] pages of [`MAX_PAGE_BYTES`] (100 MB). Checked
/// before anything past the header is read.
pub const MAX_FILE_BYTES: u64 = MAX_PAGES as u64 * MAX_PAGE_BYTES;
/// The API's own limit on one request (413 "sum of files over 800 MB", beorg-api.md §2; the
/// emulator reads it as 800 × 1024 × 1024 bytes). A file over it is never sent, whatever the
/// inbox's `preflight` policy: see [`over_request_limit`].
pub const MAX_REQUEST_BYTES: u64 = 800 * MB;

/// File formats the service accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
    Tiff,
    Webp,
    Avif,
    Pdf,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "JPEG",
            Format::Png => "PNG",
            Format::Tiff => "TIFF",
            Format::Webp => "WEBP",
            Format::Avif => "AVIF",
            Format::Pdf => "PDF",
        }
    }

    /// "a PNG", "an AVIF": for messages.
    fn with_article(self) -> String {
        let article = if self == Format::Avif { "an" } else { "a" };
        format!("{article} {}", self.name())
    }
}

/// What preflight learned about an acceptable file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub format: Format,
    /// File size in bytes.
    pub size: u64,
    /// Pages: 1 for JPEG, PNG, WEBP and AVIF; the full-resolution IFDs of a TIFF; the page
    /// objects of a PDF. **0 for a PDF whose page objects could not be seen** (they sit in
    /// compressed object streams, `/ObjStm`): then the page count and the per-page size were
    /// not checked, only the 100 MB total and the 10 KB minimum.
    pub pages: u32,
    /// Width of the first page in pixels; `None` for PDF.
    pub width: Option<u32>,
    /// Height of the first page in pixels; `None` for PDF.
    pub height: Option<u32>,
}

/// A file the service would refuse, explained for the person who scanned it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// Bytes read to recognise a format (and, for PNG and WEBP, enough for the pixel size).
const HEADER_LEN: usize = 64;

/// Reads what it needs from `path` (header, and for PDF/TIFF a streaming scan) and applies
/// every rule.
///
/// `Err(io)` only for I/O errors (file vanished, permission denied); `Ok(Err(refusal))` for a
/// file the service would refuse, including one that cannot be parsed.
pub fn check(path: &Path) -> std::io::Result<Result<Facts, Refusal>> {
    let mut file = File::open(path)?;
    check_file(&mut file)
}

/// [`check`] on an open file (the size comes from the handle, so a rename cannot mix files).
fn check_file(file: &mut File) -> std::io::Result<Result<Facts, Refusal>> {
    let size = file.metadata()?.len();
    let header = read_header(file)?;
    let format = match check_header(&header) {
        Ok(format) => format,
        Err(refusal) => return Ok(Err(refusal)),
    };
    // Too big for any page count: refuse before reading a 2 GB file.
    if size > MAX_FILE_BYTES {
        return Ok(Err(too_big_in_total(size)));
    }
    let layout = match read_structure(format, &header, file, size) {
        Ok(layout) => layout,
        Err(Fail::Io(e)) => return Err(e),
        Err(Fail::Damaged(detail)) => return Ok(Err(damaged(format, &detail))),
        Err(Fail::CutOff(detail)) => return Ok(Err(cut_off(&detail))),
    };
    Ok(apply_rules(format, size, &layout))
}

fn read_header(file: &mut File) -> std::io::Result<Vec<u8>> {
    let mut header = Vec::with_capacity(HEADER_LEN);
    file.by_ref()
        .take(HEADER_LEN as u64)
        .read_to_end(&mut header)?;
    Ok(header)
}

/// The layout (header sanity included), then the ending.
fn read_structure(
    format: Format,
    header: &[u8],
    file: &mut File,
    size: u64,
) -> Result<Layout, Fail> {
    let layout = read_layout(format, header, file, size);
    if let Err(Fail::Io(_) | Fail::CutOff(_)) = layout {
        return layout;
    }
    // A cut-off file often looks damaged too (a PDF cut before its first page object): its
    // missing end is what the user can act on, so it wins.
    match check_ending(format, header, file, size) {
        Ok(()) => layout,
        Err(Fail::Damaged(detail)) => layout.and(Err(Fail::Damaged(detail))),
        Err(e) => Err(e),
    }
}

/// Whether `path` is a file of an accepted format that stops before its format's end (see
/// [`check_ending`]), or whose header ends early: most likely still being written or copied.
/// Intake holds such a file instead of taking it. `false` for anything else: a complete file,
/// one in another format, one damaged in another way (preflight judges those), an empty one
/// (intake has its own rule), and one over [`MAX_FILE_BYTES`] (refused by size, not read).
pub fn is_cut_off(path: &Path) -> std::io::Result<bool> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    let header = read_header(&mut file)?;
    let Some(format) = detect_format(&header) else {
        // A header too short to be recognised may be the first bytes of one being written.
        return Ok(!header.is_empty() && could_be_a_header_prefix(&header));
    };
    if size > MAX_FILE_BYTES {
        return Ok(false);
    }
    match read_structure(format, &header, &mut file, size) {
        Err(Fail::CutOff(_)) => Ok(true),
        Err(Fail::Io(e)) => Err(e),
        Ok(_) | Err(Fail::Damaged(_)) => Ok(false),
    }
}

/// The first bytes of a file whose magic is not complete yet (`FF D8`, `\x89PN`, `RIFF`...).
fn could_be_a_header_prefix(h: &[u8]) -> bool {
    const MAGICS: [&[u8]; 6] = [
        b"\xFF\xD8\xFF",
        b"\x89PNG\r\n\x1a\n",
        b"II*\0",
        b"MM\0*",
        b"RIFF",
        b"%PDF-",
    ];
    let avif = |h: &[u8]| {
        // A box size (the ftyp box is short: 00 00 00 nn), then `ftyp`.
        h.iter().take(3).all(|&b| b == 0)
            && h.get(4..)
                .is_none_or(|t| b"ftyp".starts_with(&t[..t.len().min(4)]))
    };
    h.len() < 12
        && (MAGICS
            .iter()
            .any(|m| m.starts_with(h) || (h.len() > m.len() && h.starts_with(m)))
            || avif(h))
}

/// A file too large for any request: `too_large`, whatever the preflight policy (the API
/// would answer 413 after the whole file had been read into memory and uploaded).
pub fn over_request_limit(size: u64) -> Option<Refusal> {
    (size > MAX_REQUEST_BYTES).then(|| {
        Refusal(format!(
            "The file is {}; the service takes at most {} in one request. Scan in lower resolution or split the document into several files.",
            show_size(size, Round::Up),
            show_size(MAX_REQUEST_BYTES, Round::Up)
        ))
    })
}

fn check_header(header: &[u8]) -> Result<Format, Refusal> {
    if header.is_empty() {
        return Err(Refusal(
            "The file is empty (0 bytes): the scan was not saved completely. Scan the document again."
                .into(),
        ));
    }
    detect_format(header).ok_or_else(|| {
        Refusal(
            "The file is not a picture or PDF the service accepts. Save the scan as JPEG, PNG, TIFF, WEBP, AVIF or PDF and put it in the folder again."
                .into(),
        )
    })
}

/// Recognises a format by its magic bytes.
pub fn detect_format(h: &[u8]) -> Option<Format> {
    if h.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(Format::Jpeg)
    } else if h.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(Format::Png)
    } else if h.starts_with(b"II*\0") || h.starts_with(b"MM\0*") {
        Some(Format::Tiff)
    } else if h.len() >= 12 && &h[0..4] == b"RIFF" && &h[8..12] == b"WEBP" {
        Some(Format::Webp)
    } else if is_avif(h) {
        Some(Format::Avif)
    } else if h.starts_with(b"%PDF-") {
        Some(Format::Pdf)
    } else {
        None
    }
}

/// An ISO-BMFF `ftyp` box whose major brand, or one of its compatible brands (as far as the
/// header goes), is `avif` or `avis` (some encoders put `mif1` first).
fn is_avif(h: &[u8]) -> bool {
    if h.len() < 12 || &h[4..8] != b"ftyp" {
        return false;
    }
    let avif = |brand: &[u8]| brand == b"avif" || brand == b"avis";
    if avif(&h[8..12]) {
        return true;
    }
    // Compatible brands follow the minor version (bytes 12..16), up to the end of the box.
    let box_end = (u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize).min(h.len());
    h.get(16..box_end)
        .is_some_and(|brands| brands.chunks_exact(4).any(avif))
}

// ---------------------------------------------------------------------------------------------
// The rules

/// Pages and pixel sizes as read from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    /// Pages counted; 0 = could not be counted (a PDF with object streams).
    pages: u32,
    /// Width and height of each page, for rasters; empty for PDF. For a TIFF with more pages
    /// than [`MAX_TIFF_IFDS`] only the pages walked.
    dims: Vec<(u32, u32)>,
    /// The TIFF has more IFDs than [`MAX_TIFF_IFDS`]; `pages` is that bound.
    more: bool,
}

impl Layout {
    fn single(width: u32, height: u32) -> Layout {
        Layout {
            pages: 1,
            dims: vec![(width, height)],
            more: false,
        }
    }
}

fn apply_rules(format: Format, size: u64, layout: &Layout) -> Result<Facts, Refusal> {
    let pages = layout.pages;
    if pages > MAX_PAGES {
        let count = if layout.more {
            format!("more than {pages}")
        } else {
            pages.to_string()
        };
        return Err(Refusal(format!(
            "The {} has {count} pages; the service takes at most {MAX_PAGES}. Split it into several files.",
            format.name()
        )));
    }
    for (i, &(w, h)) in layout.dims.iter().enumerate() {
        let fits = |side: u32| (MIN_SIDE_PX..=MAX_SIDE_PX).contains(&side);
        if fits(w) && fits(h) {
            continue;
        }
        let what = if layout.dims.len() > 1 {
            format!(
                "Page {} of {} of the {}",
                i + 1,
                layout.dims.len(),
                format.name()
            )
        } else {
            "The image".to_string()
        };
        let hint = if w < MIN_SIDE_PX || h < MIN_SIDE_PX {
            "Scan at 300 dpi."
        } else {
            "Scan at a lower resolution (300 dpi is enough)."
        };
        return Err(Refusal(format!(
            "{what} is {w} x {h} px; the service needs {MIN_SIDE_PX} to {MAX_SIDE_PX} px on each side. {hint}"
        )));
    }
    check_bytes_per_page(size, pages)?;
    let first = layout.dims.first();
    Ok(Facts {
        format,
        size,
        pages,
        width: first.map(|d| d.0),
        height: first.map(|d| d.1),
    })
}

/// 10 KB to 5 MB per page. For a single-page image that is the file size. For a multi-page
/// TIFF or PDF it is the file size divided by the page count: an *estimate* (a real page can be
/// bigger or smaller than the average, and the container adds a little), but the only one
/// available without decoding. With the page count unknown (0) only the 10 KB minimum for the
/// whole file is checked here (the 100 MB total was checked before reading).
fn check_bytes_per_page(size: u64, pages: u32) -> Result<(), Refusal> {
    let n = u64::from(pages.max(1));
    let how_big = |round: Round| {
        if n == 1 {
            format!("The file is {}", show_size(size, round))
        } else {
            format!(
                "The file is {} for {n} pages, about {} a page",
                show_size(size, round),
                show_size(size / n, round)
            )
        }
    };
    if size < MIN_PAGE_BYTES * n {
        let probably = if n == 1 {
            "the scan is probably blank or cut off"
        } else {
            "the pages are probably blank or cut off"
        };
        return Err(Refusal(format!(
            "{}; the service needs at least {} per page: {probably}.",
            how_big(Round::Down),
            show_size(MIN_PAGE_BYTES, Round::Down)
        )));
    }
    if pages > 0 && size > MAX_PAGE_BYTES * n {
        return Err(Refusal(format!(
            "{}; the service takes at most {} per page. Scan in lower resolution or as JPEG.",
            how_big(Round::Up),
            show_size(MAX_PAGE_BYTES, Round::Up)
        )));
    }
    Ok(())
}

fn too_big_in_total(size: u64) -> Refusal {
    Refusal(format!(
        "The file is {}; the service takes at most {} in all ({MAX_PAGES} pages of {} each). Split it into several files or scan in lower resolution.",
        show_size(size, Round::Up),
        show_size(MAX_FILE_BYTES, Round::Up),
        show_size(MAX_PAGE_BYTES, Round::Up)
    ))
}

/// The message for a file that ends before its format's end, for the person who scanned it.
pub const CUT_OFF: &str =
    "The file is cut off: it was not saved or copied completely. Scan it again.";

fn cut_off(detail: &str) -> Refusal {
    Refusal(format!("{CUT_OFF} (Detail: {detail}.)"))
}

fn damaged(format: Format, detail: &str) -> Refusal {
    Refusal(format!(
        "The file looks like {} but cannot be read: it is cut off or damaged. Scan the document again and let the scanner finish saving. (Detail: {detail}.)",
        format.with_article()
    ))
}

#[derive(Debug, Clone, Copy)]
enum Round {
    Down,
    Up,
}

/// "3 KB", "9.9 KB", "240.5 KB", "12.4 MB": KB below 1 MB, one decimal (dropped when it is
/// 0), rounded in the direction that never makes a refused size look like the limit itself
/// (down for "too small", up for "too big").
fn show_size(bytes: u64, round: Round) -> String {
    let (unit, name) = if bytes < MB { (KB, "KB") } else { (MB, "MB") };
    let scaled = u128::from(bytes) * 10;
    let unit = u128::from(unit);
    let tenths = match round {
        Round::Down => scaled / unit,
        Round::Up => scaled.div_ceil(unit),
    };
    if tenths % 10 == 0 {
        format!("{} {name}", tenths / 10)
    } else {
        format!("{}.{} {name}", tenths / 10, tenths % 10)
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the layout of each format

/// Why a layout could not be read.
#[derive(Debug)]
enum Fail {
    /// A real I/O error: passed to the caller.
    Io(std::io::Error),
    /// The file is not what its magic bytes say: refused. The text is a short technical detail.
    Damaged(String),
    /// The file stops before its format's end (its header, or its last part, is missing):
    /// held by intake as still being written, then refused. The text is a technical detail.
    CutOff(String),
}

impl From<std::io::Error> for Fail {
    fn from(e: std::io::Error) -> Fail {
        match e.kind() {
            std::io::ErrorKind::UnexpectedEof => Fail::CutOff("the file ends too early".into()),
            _ => Fail::Io(e),
        }
    }
}

fn bad<T>(detail: impl Into<String>) -> Result<T, Fail> {
    Err(Fail::Damaged(detail.into()))
}

fn short<T>(detail: impl Into<String>) -> Result<T, Fail> {
    Err(Fail::CutOff(detail.into()))
}

fn read_layout(format: Format, header: &[u8], file: &mut File, size: u64) -> Result<Layout, Fail> {
    match format {
        Format::Png => png_layout(header),
        Format::Webp => webp_layout(header),
        Format::Jpeg => jpeg_layout(&mut BufReader::new(file)),
        Format::Avif => avif_layout(file),
        Format::Tiff => tiff_layout(&mut BufReader::new(file), size),
        Format::Pdf => {
            file.seek(SeekFrom::Start(0))?;
            pdf_layout(file)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// How each format ends

/// The file ends the way its format ends. Cheap: no decoding; JPEG is walked marker by marker
/// (its entropy-coded data is scanned for the next marker, byte by byte through a buffer), the
/// other formats are checked by a few seeks.
fn check_ending(format: Format, header: &[u8], file: &mut File, size: u64) -> Result<(), Fail> {
    match format {
        Format::Jpeg => jpeg_ending(&mut BufReader::new(file), size),
        Format::Png => png_ending(&mut BufReader::new(file), size),
        Format::Pdf => pdf_ending(file, size),
        // Strips and tiles are checked on the walk through the pages.
        Format::Tiff => Ok(()),
        Format::Webp => webp_ending(header, size),
        Format::Avif => avif_ending(&mut BufReader::new(file), size),
    }
}

/// SOF0..SOF15, the frame headers that give the image's size (not DHT, JPG or DAC, which
/// share the range).
fn is_jpeg_frame_header(marker: u8) -> bool {
    matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC)
}

/// The length of the JPEG segment whose marker was just read (it counts its own two bytes).
fn jpeg_segment_len<R: Read>(r: &mut R) -> Result<u16, Fail> {
    let mut len = [0u8; 2];
    r.read_exact(&mut len)?;
    let len = u16::from_be_bytes(len);
    if len < 2 {
        return bad(format!("a JPEG segment of length {len}"));
    }
    Ok(len)
}

/// JPEG: from the start of image to the end-of-image marker (`FF D9`). Segments are skipped by
/// their length; after each start of scan the entropy-coded data is passed over up to the next
/// marker (`FF 00` is a data byte, `FF D0`..`FF D7` restart markers). What follows the EOI
/// (camera padding, a vendor trailer, the video of a "motion photo") is not looked at. The
/// file ending first is cut off.
///
/// Most files end with the EOI, maybe followed by padding: at the first start of scan the last
/// [`JPEG_TAIL`] bytes are looked at first, and a file that ends so is complete without its
/// image data being read (an `FF D9` after the first scan has started can only be the EOI:
/// image data never holds one). Only other files are walked to the end.
fn jpeg_ending<R: BufRead + Seek>(r: &mut R, size: u64) -> Result<(), Fail> {
    r.seek(SeekFrom::Start(2))?;
    let mut frame_seen = false;
    let mut tail_checked = false;
    let mut next = None;
    loop {
        let marker = match next.take() {
            Some(marker) => marker,
            None => {
                if read_u8(r)? != 0xFF {
                    return bad("no JPEG marker where one was due");
                }
                jpeg_marker_code(r)?
            }
        };
        match marker {
            0xD9 if frame_seen => return Ok(()),
            0xD9 => return bad("the JPEG ends before its frame header"),
            0x01 | 0xD0..=0xD8 => continue,
            0x00 => return bad("an invalid JPEG marker"),
            _ => {}
        }
        let len = jpeg_segment_len(r)?;
        frame_seen |= is_jpeg_frame_header(marker);
        r.seek_relative(i64::from(len) - 2)?;
        if marker == 0xDA {
            if !frame_seen {
                return bad("the JPEG image data starts before its size is given");
            }
            if !tail_checked {
                tail_checked = true;
                if jpeg_ends_with_eoi(r, size)? {
                    return Ok(());
                }
            }
            next = Some(skip_entropy_coded_data(r)?);
        }
    }
}

/// Bytes at the end of a JPEG looked at for its end-of-image marker before walking it.
const JPEG_TAIL: u64 = 64 * KB;

/// The bytes from here to the end of the file end with `FF D9`, then nothing but padding
/// (`00` or `FF` bytes) within the last [`JPEG_TAIL`]. Leaves the reader where it was.
fn jpeg_ends_with_eoi<R: BufRead + Seek>(r: &mut R, size: u64) -> Result<bool, Fail> {
    let here = r.stream_position()?;
    let from = size.saturating_sub(JPEG_TAIL).max(here);
    r.seek(SeekFrom::Start(from))?;
    let mut tail = Vec::with_capacity(JPEG_TAIL as usize);
    r.by_ref().take(JPEG_TAIL).read_to_end(&mut tail)?;
    r.seek(SeekFrom::Start(here))?;
    let end = tail
        .iter()
        .rposition(|&b| b != 0x00 && b != 0xFF)
        .map_or(0, |at| at + 1);
    Ok(end >= 2 && tail[end - 1] == 0xD9 && tail[end - 2] == 0xFF)
}

/// After `FF`: any number of fill bytes (`FF`), then the marker code.
fn jpeg_marker_code<R: Read>(r: &mut R) -> Result<u8, Fail> {
    loop {
        let code = read_u8(r)?;
        if code != 0xFF {
            return Ok(code);
        }
    }
}

/// Passes over a scan's entropy-coded data; returns the code of the marker that ends it.
fn skip_entropy_coded_data<R: BufRead>(r: &mut R) -> Result<u8, Fail> {
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return short("the JPEG ends inside its image data, before the end-of-image marker");
        }
        match buf.iter().position(|&b| b == 0xFF) {
            None => {
                let n = buf.len();
                r.consume(n);
            }
            Some(at) => {
                r.consume(at + 1);
                match jpeg_marker_code(r)? {
                    0x00 | 0xD0..=0xD7 => continue,
                    code => return Ok(code),
                }
            }
        }
    }
}

fn read_u8<R: Read>(r: &mut R) -> Result<u8, Fail> {
    let mut byte = [0u8; 1];
    r.read_exact(&mut byte)?;
    Ok(byte[0])
}

/// Most chunks or boxes walked: far above any real file, a bound on a crafted one.
const MAX_CHUNKS: u32 = 1_000_000;

/// PNG: the chunks, by their lengths, from the signature to `IEND`, each with its CRC-32
/// checked (a decoder such as Pillow refuses a file with any wrong chunk checksum; it is also
/// how a flipped byte anywhere in a PNG shows). Bytes after `IEND` are not looked at. A chunk
/// type that is not four ASCII letters means the walk lost its way: damaged.
fn png_ending<R: Read + Seek>(r: &mut R, size: u64) -> Result<(), Fail> {
    let mut at = 8u64;
    r.seek(SeekFrom::Start(at))?;
    for _ in 0..MAX_CHUNKS {
        let mut head = [0u8; 8];
        if at + 8 > size {
            return short("the PNG ends before its IEND chunk");
        }
        r.read_exact(&mut head)?;
        let len = be32(&head[0..4]);
        let kind = &head[4..8];
        if len > 0x7FFF_FFFF || !kind.iter().all(u8::is_ascii_alphabetic) {
            return bad(format!("a damaged PNG chunk at byte {at}"));
        }
        let end = at + 8 + u64::from(len) + 4;
        if end > size {
            return short(format!(
                "the PNG ends inside its {} chunk, before its IEND chunk",
                String::from_utf8_lossy(kind)
            ));
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(kind);
        let mut data = r.by_ref().take(u64::from(len));
        let mut buf = [0u8; 8192];
        loop {
            let n = data.read(&mut buf)?;
            if n == 0 {
                break;
            }
            crc.update(&buf[..n]);
        }
        let mut stored = [0u8; 4];
        r.read_exact(&mut stored)?;
        if crc.finalize() != u32::from_be_bytes(stored) {
            return bad(format!(
                "the checksum of the PNG {} chunk at byte {at} does not match",
                String::from_utf8_lossy(kind)
            ));
        }
        if kind == b"IEND" {
            return Ok(());
        }
        at = end;
    }
    bad("too many PNG chunks")
}

/// Bytes at the end of a PDF searched for `%%EOF`.
const PDF_TAIL: u64 = KB;

/// PDF: `%%EOF` in the last KB. With incremental updates each revision ends with one; the last
/// is at the end.
fn pdf_ending(file: &mut File, size: u64) -> Result<(), Fail> {
    let from = size.saturating_sub(PDF_TAIL);
    file.seek(SeekFrom::Start(from))?;
    let mut tail = Vec::with_capacity(PDF_TAIL as usize);
    file.take(PDF_TAIL).read_to_end(&mut tail)?;
    if tail.windows(5).any(|w| w == b"%%EOF") {
        Ok(())
    } else {
        short("no %%EOF in the last KB of the PDF")
    }
}

/// WEBP: the RIFF header gives the length of the rest; the file must be at least that long
/// (bytes after the RIFF data are not looked at).
fn webp_ending(h: &[u8], size: u64) -> Result<(), Fail> {
    let needed = 8 + u64::from(u32::from_le_bytes([h[4], h[5], h[6], h[7]]));
    if size < needed {
        return short(format!(
            "the WEBP file is {size} bytes, its RIFF header says {needed}"
        ));
    }
    Ok(())
}

/// AVIF (ISO-BMFF): the top-level boxes, by their sizes (32-bit, 64-bit, or 0 = to the end),
/// must end exactly at the end of the file, and the `meta` box (the header) and the `mdat` box
/// (the image data) must both be there: a file cut exactly between two boxes lacks one.
fn avif_ending<R: Read + Seek>(r: &mut R, size: u64) -> Result<(), Fail> {
    let mut at = 0u64;
    let (mut meta, mut mdat) = (false, false);
    for _ in 0..MAX_CHUNKS {
        if at == size {
            return match (meta, mdat) {
                (true, true) => Ok(()),
                (false, _) => short("the AVIF ends before its meta box"),
                (true, false) => short("the AVIF ends before its image data (mdat box)"),
            };
        }
        if at + 8 > size {
            return short("the AVIF ends inside a box header");
        }
        r.seek(SeekFrom::Start(at))?;
        let mut head = [0u8; 16];
        r.read_exact(&mut head[..8])?;
        meta |= &head[4..8] == b"meta";
        mdat |= &head[4..8] == b"mdat";
        let (len, header) = match be32(&head[0..4]) {
            // The last box, to the end of the file.
            0 if meta && mdat => return Ok(()),
            0 => return short("the AVIF ends before its meta and mdat boxes"),
            1 => {
                if at + 16 > size {
                    return short("the AVIF ends inside a box header");
                }
                r.read_exact(&mut head[8..16])?;
                let mut large = [0u8; 8];
                large.copy_from_slice(&head[8..16]);
                (u64::from_be_bytes(large), 16)
            }
            n => (u64::from(n), 8),
        };
        if len < header {
            return bad(format!("an AVIF box of {len} bytes at byte {at}"));
        }
        match at.checked_add(len) {
            Some(end) if end <= size => at = end,
            _ => return short("the AVIF ends inside a box"),
        }
    }
    bad("too many AVIF boxes")
}

/// Rejects a zero side (no real page has one; it means the header is garbage).
fn sides(width: u32, height: u32) -> Result<Layout, Fail> {
    if width == 0 || height == 0 {
        return bad(format!("the header gives {width} x {height} px"));
    }
    Ok(Layout::single(width, height))
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn le24(b: &[u8]) -> u32 {
    u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16
}

/// PNG: the first chunk must be a 13-byte IHDR; width and height follow its type.
fn png_layout(h: &[u8]) -> Result<Layout, Fail> {
    if h.len() < 33 {
        return short("the PNG header is cut off");
    }
    if be32(&h[8..12]) != 13 || &h[12..16] != b"IHDR" {
        return bad("no IHDR chunk after the PNG signature");
    }
    if crc32fast::hash(&h[12..29]) != be32(&h[29..33]) {
        return bad("the checksum of the PNG header (IHDR) does not match");
    }
    sides(be32(&h[16..20]), be32(&h[20..24]))
}

/// WEBP: the first chunk of the RIFF file is VP8 (lossy), VP8L (lossless) or VP8X (extended).
fn webp_layout(h: &[u8]) -> Result<Layout, Fail> {
    if h.len() < 30 {
        return short("the WEBP header is cut off");
    }
    match &h[12..16] {
        // Extended: canvas width - 1 and height - 1, 24 bits each, after 4 bytes of flags.
        b"VP8X" => sides(le24(&h[24..27]) + 1, le24(&h[27..30]) + 1),
        // Lossless: signature 0x2f, then 14 bits width - 1, 14 bits height - 1.
        b"VP8L" => {
            if h[20] != 0x2f {
                return bad("no VP8L signature");
            }
            let bits = u32::from_le_bytes([h[21], h[22], h[23], h[24]]);
            sides((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
        }
        // Lossy: 3-byte frame tag, start code 9d 01 2a, then 14-bit width and height (the top
        // two bits are a scaling hint).
        b"VP8 " => {
            if h[23..26] != [0x9d, 0x01, 0x2a] {
                return bad("no VP8 start code");
            }
            let w = u32::from(u16::from_le_bytes([h[26], h[27]]) & 0x3FFF);
            let ht = u32::from(u16::from_le_bytes([h[28], h[29]]) & 0x3FFF);
            sides(w, ht)
        }
        _ => bad("no VP8, VP8L or VP8X chunk in the WEBP file"),
    }
}

/// JPEG: walks the markers to the first frame header (SOF0..SOF15 but DHT, JPG, DAC).
///
/// Not through `imagesize`: its JPEG walk seeks back on a segment length below 2 and loops for
/// ever on a crafted or damaged file (`FF D8 FF E0 00 00`). Here every step moves forward, so
/// the walk ends at the end of the file at the latest.
fn jpeg_layout<R: Read + Seek>(r: &mut R) -> Result<Layout, Fail> {
    r.seek(SeekFrom::Start(2))?;
    let mut byte = [0u8; 1];
    loop {
        r.read_exact(&mut byte)?;
        if byte[0] != 0xFF {
            return bad(format!(
                "no JPEG marker where one was due (byte {:#04x})",
                byte[0]
            ));
        }
        // Any number of 0xFF fill bytes may precede the marker code.
        let mut marker = 0xFF;
        while marker == 0xFF {
            r.read_exact(&mut byte)?;
            marker = byte[0];
        }
        match marker {
            // Markers without a length: TEM, RSTn, SOI.
            0x01 | 0xD0..=0xD8 => continue,
            0xD9 | 0xDA => return bad("the JPEG image data starts before its size is given"),
            0x00 => return bad("an invalid JPEG marker"),
            _ => {}
        }
        let len = jpeg_segment_len(r)?;
        if is_jpeg_frame_header(marker) {
            let mut frame = [0u8; 5];
            r.read_exact(&mut frame)?;
            let height = u16::from_be_bytes([frame[1], frame[2]]);
            let width = u16::from_be_bytes([frame[3], frame[4]]);
            return sides(u32::from(width), u32::from(height));
        }
        r.seek(SeekFrom::Current(i64::from(len) - 2))?;
    }
}

/// AVIF: the largest `ispe` (image spatial extent) property in `meta/iprp/ipco`, read by
/// `imagesize` (header-only; it honours an `irot` rotation of 90 or 270 degrees).
fn avif_layout(file: &mut File) -> Result<Layout, Fail> {
    file.seek(SeekFrom::Start(0))?;
    match imagesize::reader_size(BufReader::new(file)) {
        Ok(size) => {
            let px = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
            sides(px(size.width), px(size.height))
        }
        Err(imagesize::ImageError::IoError(e))
            if !matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::InvalidData
                    | std::io::ErrorKind::InvalidInput
            ) =>
        {
            Err(Fail::Io(e))
        }
        Err(e) => bad(format!("no image size in the AVIF boxes ({e})")),
    }
}

/// Most IFDs walked in a TIFF: far above [`MAX_PAGES`], so the message can give the count of
/// any real file, but a bound on a chain crafted to be endless.
const MAX_TIFF_IFDS: u32 = 1000;

/// A TIFF's byte order (`II` little-endian, `MM` big-endian), for reading its numbers.
#[derive(Clone, Copy)]
struct ByteOrder {
    little: bool,
}

impl ByteOrder {
    fn u16(self, b: &[u8]) -> u16 {
        let bytes = [b[0], b[1]];
        if self.little {
            u16::from_le_bytes(bytes)
        } else {
            u16::from_be_bytes(bytes)
        }
    }

    fn u32(self, b: &[u8]) -> u32 {
        let bytes = [b[0], b[1], b[2], b[3]];
        if self.little {
            u32::from_le_bytes(bytes)
        } else {
            u32::from_be_bytes(bytes)
        }
    }
}

/// TIFF: follows the IFD chain from the header. Every IFD that is not a reduced-resolution
/// copy (a thumbnail, NewSubfileType bit 0 or OldSubfileType 2) is a page; each page must give
/// ImageWidth (256) and ImageLength (257). An offset outside the file, an IFD that does not
/// fit, or an offset seen before (a loop) makes the file damaged. `imagesize` is not used: it
/// reads the first IFD only.
fn tiff_layout<R: Read + Seek>(r: &mut R, size: u64) -> Result<Layout, Fail> {
    let mut head = [0u8; 8];
    r.seek(SeekFrom::Start(0))?;
    r.read_exact(&mut head)?;
    let order = ByteOrder {
        little: &head[0..2] == b"II",
    };
    let u16_at = |b: &[u8]| order.u16(b);
    let u32_at = |b: &[u8]| order.u32(b);
    let mut offset = u32_at(&head[4..8]);
    if offset == 0 {
        return bad("the TIFF has no image directory");
    }
    let mut seen = HashSet::new();
    let mut dims = Vec::new();
    let mut ifds = 0;
    let mut more = false;
    while offset != 0 {
        if ifds == MAX_TIFF_IFDS {
            more = true;
            break;
        }
        ifds += 1;
        if !seen.insert(offset) {
            return bad(format!("the TIFF page list loops back to offset {offset}"));
        }
        let start = u64::from(offset);
        if start < 8 {
            return bad(format!("a TIFF page points to offset {offset}"));
        }
        if start + 2 > size {
            return short(format!(
                "a TIFF page points to offset {offset}, outside the file of {size} bytes"
            ));
        }
        r.seek(SeekFrom::Start(start))?;
        let mut count = [0u8; 2];
        r.read_exact(&mut count)?;
        let count = u16_at(&count);
        if count == 0 {
            return bad(format!("an empty TIFF image directory at offset {offset}"));
        }
        let len = 12 * usize::from(count) + 4;
        if start + 2 + len as u64 > size {
            return short(format!(
                "the TIFF image directory at offset {offset} runs past the end of the file"
            ));
        }
        let mut entries = vec![0u8; len];
        r.read_exact(&mut entries)?;
        let (mut width, mut height, mut reduced) = (None, None, false);
        // Strip (or tile) offsets and byte counts: where this IFD's image data lies.
        let (mut offsets, mut counts) = (None, None);
        for e in entries[..len - 4].chunks_exact(12) {
            let tag = u16_at(&e[0..2]);
            if matches!(tag, 273 | 279 | 324 | 325) {
                let values = tiff_array(r, e, order, size)?;
                if matches!(tag, 273 | 324) {
                    offsets = Some(values);
                } else {
                    counts = Some(values);
                }
                continue;
            }
            let value = match u16_at(&e[2..4]) {
                3 => Some(u32::from(u16_at(&e[8..10]))), // SHORT
                4 => Some(u32_at(&e[8..12])),            // LONG
                _ => None,
            };
            match (tag, value) {
                (254, Some(v)) => reduced |= v & 1 == 1, // NewSubfileType: reduced resolution
                (255, Some(v)) => reduced |= v == 2,     // OldSubfileType: reduced resolution
                (256, v) => width = v,
                (257, v) => height = v,
                _ => {}
            }
        }
        let page = ifds;
        match (offsets, counts) {
            (Some(offsets), Some(counts)) if offsets.len() == counts.len() => {
                for (&o, &n) in offsets.iter().zip(&counts) {
                    if u64::from(o) + u64::from(n) > size {
                        return short(format!(
                            "the image data of TIFF directory {page} runs past the end of the file"
                        ));
                    }
                }
            }
            (Some(_), Some(_)) => {
                return bad(format!(
                    "TIFF directory {page} gives a different number of strip offsets and lengths"
                ));
            }
            _ => {
                return bad(format!(
                    "TIFF directory {page} does not say where its image data is"
                ));
            }
        }
        if !reduced {
            match (width, height) {
                (Some(w), Some(h)) if w > 0 && h > 0 => dims.push((w, h)),
                _ => {
                    return bad(format!(
                        "TIFF page {} has no readable width or height",
                        dims.len() + 1
                    ));
                }
            }
        }
        offset = u32_at(&entries[len - 4..]);
    }
    if dims.is_empty() {
        return bad("the TIFF holds only thumbnails");
    }
    Ok(Layout {
        pages: u32::try_from(dims.len()).unwrap_or(u32::MAX),
        dims,
        more,
    })
}

/// Most strips or tiles of one TIFF page: far above a real file (a 5000-row page in one strip
/// per row is 5000), a bound on a crafted one.
const MAX_TIFF_STRIPS: u32 = 1_000_000;

/// The values of a TIFF entry holding a SHORT or LONG array (strip offsets or byte counts):
/// inline in the entry when they fit in 4 bytes, else at the offset it gives.
fn tiff_array<R: Read + Seek>(
    r: &mut R,
    entry: &[u8],
    order: ByteOrder,
    size: u64,
) -> Result<Vec<u32>, Fail> {
    let u16_of = |b: &[u8]| order.u16(b);
    let u32_of = |b: &[u8]| order.u32(b);
    let width = match u16_of(&entry[2..4]) {
        3 => 2usize,
        4 => 4,
        kind => return bad(format!("TIFF strip positions of type {kind}")),
    };
    let count = u32_of(&entry[4..8]);
    if count == 0 || count > MAX_TIFF_STRIPS {
        return bad(format!("a TIFF page of {count} strips"));
    }
    let bytes = width * count as usize;
    let raw = if bytes <= 4 {
        entry[8..8 + bytes].to_vec()
    } else {
        let at = u64::from(u32_of(&entry[8..12]));
        if at + bytes as u64 > size {
            return short("the TIFF strip table lies past the end of the file");
        }
        let back = r.stream_position()?;
        r.seek(SeekFrom::Start(at))?;
        let mut raw = vec![0u8; bytes];
        r.read_exact(&mut raw)?;
        r.seek(SeekFrom::Start(back))?;
        raw
    };
    Ok(raw
        .chunks_exact(width)
        .map(|v| {
            if width == 2 {
                u32::from(u16_of(v))
            } else {
                u32_of(v)
            }
        })
        .collect())
}

/// Bytes read at a time when counting PDF pages.
const PDF_CHUNK: usize = 256 * 1024;

/// PDF: counts page objects (see [`count_pdf_pages`]). A PDF has no pixel size, so the
/// dimension rule does not apply.
fn pdf_layout<R: Read>(r: &mut R) -> Result<Layout, Fail> {
    let scan = count_pdf_pages(r, PDF_CHUNK)?;
    if scan.pages == 0 && !scan.object_streams {
        return bad("no page objects in the PDF");
    }
    if scan.pages == 0 {
        tracing::warn!(
            "the PDF keeps its page objects in compressed object streams: pages not counted, the page limit not checked"
        );
    }
    Ok(Layout {
        pages: scan.pages,
        dims: Vec::new(),
        more: false,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PdfScan {
    /// Page objects seen.
    pages: u32,
    /// `/ObjStm` seen: objects may hide in compressed streams.
    object_streams: bool,
}

/// Whitespace allowed between `/Type` and `/Page` (PDF whitespace: NUL, TAB, LF, FF, CR, SP).
const PDF_MAX_GAP: usize = 32;
/// Bytes kept from one chunk to the next: more than the longest match (`/Type` + gap + `/Page`
/// + the byte after), so a match cut by a chunk boundary is found whole in the next buffer.
const PDF_OVERLAP: usize = 64;
const _: () = assert!(PDF_OVERLAP > 5 + PDF_MAX_GAP + 5 + 1 && PDF_OVERLAP > b"/ObjStm".len());

/// Counts PDF page objects in a streaming scan: `/Type /Page` (or `/Type/Page`, any whitespace
/// between, up to [`PDF_MAX_GAP`] bytes) followed by a delimiter or whitespace, so `/Type /Pages`
/// (the page tree nodes) is not counted. Reads `chunk` bytes at a time and keeps the last
/// [`PDF_OVERLAP`] bytes of each buffer in front of the next; a match is counted in the buffer
/// where its last byte is new, so it is counted exactly once.
///
/// Good enough for scanner PDFs, which write one plain object per page. It overcounts a PDF
/// whose pages were rewritten by incremental updates (the old objects stay in the file), and
/// sees nothing of page objects inside compressed object streams (`/ObjStm`, PDF 1.5+), which
/// it reports instead.
fn count_pdf_pages<R: Read>(r: &mut R, chunk: usize) -> std::io::Result<PdfScan> {
    let mut buf: Vec<u8> = Vec::with_capacity(PDF_OVERLAP + chunk);
    let mut scan = PdfScan {
        pages: 0,
        object_streams: false,
    };
    loop {
        let kept = buf.len();
        let read = r.by_ref().take(chunk as u64).read_to_end(&mut buf)?;
        if read == 0 {
            return Ok(scan);
        }
        let mut i = 0;
        while let Some(at) = memchr_slash(&buf[i..]) {
            let start = i + at;
            i = start + 1;
            let rest = &buf[start..];
            if rest.starts_with(b"/ObjStm") && start + b"/ObjStm".len() > kept {
                scan.object_streams = true;
            }
            if !rest.starts_with(b"/Type") {
                continue;
            }
            let mut j = start + 5;
            while j < buf.len() && j - (start + 5) <= PDF_MAX_GAP && is_pdf_space(buf[j]) {
                j += 1;
            }
            if j - (start + 5) > PDF_MAX_GAP || !buf[j..].starts_with(b"/Page") {
                continue;
            }
            // The byte after `/Page` decides: it must end the name.
            let Some(&after) = buf.get(j + 5) else {
                continue; // cut by the chunk boundary: decided in the next buffer
            };
            if j + 5 >= kept && (is_pdf_space(after) || is_pdf_delimiter(after)) {
                scan.pages = scan.pages.saturating_add(1);
            }
        }
        let drop = buf.len().saturating_sub(PDF_OVERLAP);
        buf.drain(..drop);
    }
}

fn memchr_slash(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'/')
}

fn is_pdf_space(c: u8) -> bool {
    matches!(c, 0 | b'\t' | b'\n' | 0x0C | b'\r' | b' ')
}

fn is_pdf_delimiter(c: u8) -> bool {
    matches!(
        c,
        b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%'
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn formats_by_magic_bytes() {
        assert_eq!(detect_format(b"\xFF\xD8\xFF\xE0rest"), Some(Format::Jpeg));
        assert_eq!(detect_format(b"\x89PNG\r\n\x1a\nrest"), Some(Format::Png));
        assert_eq!(detect_format(b"II*\0rest"), Some(Format::Tiff));
        assert_eq!(detect_format(b"MM\0*rest"), Some(Format::Tiff));
        assert_eq!(detect_format(b"RIFF\0\0\0\0WEBPVP8 "), Some(Format::Webp));
        assert_eq!(detect_format(b"\0\0\0\x1cftypavif\0\0"), Some(Format::Avif));
        assert_eq!(
            detect_format(b"\0\0\0\x18ftypmif1\0\0\0\0mif1avif"),
            Some(Format::Avif)
        );
        assert_eq!(detect_format(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic"), None);
        assert_eq!(detect_format(b"%PDF-1.7\n"), Some(Format::Pdf));
        assert_eq!(detect_format(b"hello, world"), None);
        assert_eq!(detect_format(b"RIFF"), None);
    }

    #[test]
    fn empty_and_unknown_files_are_refused_in_plain_words() {
        assert!(check_header(b"").unwrap_err().0.contains("empty"));
        assert!(check_header(b"plain text").unwrap_err().0.contains("JPEG"));
    }

    #[test]
    fn sizes_are_shown_in_binary_units_rounded_away_from_the_limit() {
        assert_eq!(show_size(3 * 1024, Round::Down), "3 KB");
        assert_eq!(show_size(10 * 1024 - 1, Round::Down), "9.9 KB");
        assert_eq!(show_size(240 * 1024 + 600, Round::Down), "240.5 KB");
        assert_eq!(show_size(100 * MB + 1, Round::Up), "100.1 MB");
        assert_eq!(show_size(5 * MB + 1, Round::Up), "5.1 MB");
        assert_eq!(show_size(5 * MB, Round::Up), "5 MB");
        assert_eq!(show_size(13_002_342, Round::Up), "12.4 MB");
        assert_eq!(show_size(100 * MB, Round::Up), "100 MB");
    }

    #[test]
    fn size_per_page_is_the_average_for_several_pages() {
        assert!(check_bytes_per_page(MIN_PAGE_BYTES, 1).is_ok());
        assert!(check_bytes_per_page(MAX_PAGE_BYTES, 1).is_ok());
        let small = check_bytes_per_page(3 * MIN_PAGE_BYTES - 1, 3)
            .unwrap_err()
            .0;
        assert!(
            small.contains("for 3 pages, about 9.9 KB a page"),
            "{small}"
        );
        let big = check_bytes_per_page(2 * MAX_PAGE_BYTES + 2, 2)
            .unwrap_err()
            .0;
        assert!(big.contains("at most 5 MB per page"), "{big}");
        // Pages unknown: only the minimum.
        assert!(check_bytes_per_page(50 * MB, 0).is_ok());
        assert!(check_bytes_per_page(1000, 0).is_err());
    }

    fn pdf_with(bodies: &[&str]) -> Vec<u8> {
        let mut pdf = b"%PDF-1.4\n".to_vec();
        for (n, body) in bodies.iter().enumerate() {
            pdf.extend_from_slice(format!("{} 0 obj\n<< {body} >>\nendobj\n", n + 1).as_bytes());
        }
        pdf.extend_from_slice(b"trailer\n<< /Root 1 0 R >>\n%%EOF\n");
        pdf
    }

    #[test]
    fn pdf_page_objects_are_counted_whatever_the_chunk_boundaries() {
        let pdf = pdf_with(&[
            "/Type /Catalog /Pages 2 0 R",
            "/Type /Pages /Kids [3 0 R 4 0 R 5 0 R 6 0 R] /Count 4",
            "/Type /Page /Parent 2 0 R",
            "/Type/Page/Parent 2 0 R",
            "/Type\r\n  /Page>>",
            "/Parent 2 0 R /Type /Page",
            "/Type /PageLabelsNotAPage",
            "/Type /Pages /Kids [] /Count 0",
        ]);
        let expected = PdfScan {
            pages: 4,
            object_streams: false,
        };
        for chunk in 1..=80 {
            let scan = count_pdf_pages(&mut Cursor::new(&pdf), chunk).unwrap();
            assert_eq!(scan, expected, "chunk of {chunk} bytes");
        }
        assert_eq!(
            count_pdf_pages(&mut Cursor::new(&pdf), PDF_CHUNK).unwrap(),
            expected
        );
    }

    #[test]
    fn pdf_object_streams_are_noticed_and_a_pdf_without_pages_is_damaged() {
        let hidden = pdf_with(&["/Type /ObjStm /N 3 /First 20", "/Type /XRef"]);
        for chunk in [1, 7, 64, PDF_CHUNK] {
            let scan = count_pdf_pages(&mut Cursor::new(&hidden), chunk).unwrap();
            assert_eq!(
                scan,
                PdfScan {
                    pages: 0,
                    object_streams: true
                }
            );
        }
        assert_eq!(pdf_layout(&mut Cursor::new(&hidden)).unwrap().pages, 0);
        let none = pdf_with(&["/Type /Catalog"]);
        assert!(matches!(
            pdf_layout(&mut Cursor::new(&none)),
            Err(Fail::Damaged(_))
        ));
    }

    #[test]
    fn a_jpeg_segment_of_length_zero_ends_the_walk() {
        let mut jpeg = b"\xFF\xD8\xFF\xE0\x00\x00".to_vec();
        jpeg.resize(20_000, 0xAB);
        let err = jpeg_layout(&mut Cursor::new(&jpeg)).unwrap_err();
        assert!(matches!(err, Fail::Damaged(d) if d.contains("length 0")));
    }

    #[test]
    fn jpeg_size_comes_from_the_frame_header_after_fill_bytes_and_app_segments() {
        let mut jpeg = b"\xFF\xD8\xFF\xE0\x00\x04ab\xFF\xFF\xFF\xC2\x00\x11\x08".to_vec();
        jpeg.extend_from_slice(&1754u16.to_be_bytes());
        jpeg.extend_from_slice(&1240u16.to_be_bytes());
        let layout = jpeg_layout(&mut Cursor::new(&jpeg)).unwrap();
        assert_eq!(layout, Layout::single(1240, 1754));
    }

    #[test]
    fn big_endian_tiff_pages_and_thumbnails() {
        // MM, one thumbnail IFD (NewSubfileType 1, 160 x 120) then one page 2480 x 3508.
        let mut t = b"MM\0*\0\0\0\x08".to_vec();
        let ifd = |entries: &[(u16, u16, u32)], next: u32| {
            let mut v = (entries.len() as u16).to_be_bytes().to_vec();
            for &(tag, kind, value) in entries {
                v.extend_from_slice(&tag.to_be_bytes());
                v.extend_from_slice(&kind.to_be_bytes());
                v.extend_from_slice(&1u32.to_be_bytes());
                if kind == 3 {
                    v.extend_from_slice(&(value as u16).to_be_bytes());
                    v.extend_from_slice(&[0, 0]);
                } else {
                    v.extend_from_slice(&value.to_be_bytes());
                }
            }
            v.extend_from_slice(&next.to_be_bytes());
            v
        };
        // Each IFD's one strip: 10 bytes at offset 8 (inside the file).
        let strip = [(273, 4, 8), (279, 3, 10)];
        let first = ifd(
            &[
                (254, 4, 1),
                (256, 3, 160),
                (257, 3, 120),
                strip[0],
                strip[1],
            ],
            8 + 66,
        );
        assert_eq!(first.len(), 66);
        t.extend_from_slice(&first);
        t.extend_from_slice(&ifd(
            &[(256, 3, 2480), (257, 4, 3508), strip[0], strip[1]],
            0,
        ));
        let size = t.len() as u64;
        let layout = tiff_layout(&mut Cursor::new(&t), size).unwrap();
        assert_eq!(layout, Layout::single(2480, 3508));
        // The same file cut before the second IFD's end.
        let cut = &t[..t.len() - 6];
        let err = tiff_layout(&mut Cursor::new(cut), cut.len() as u64).unwrap_err();
        assert!(matches!(err, Fail::CutOff(d) if d.contains("past the end")));
        // A strip that lies past the end of the file: cut off.
        let mut long = t.clone();
        let at = 8 + 66 + 2 + 2 * 12 + 8; // the second IFD's StripOffsets value
        long[at..at + 4].copy_from_slice(&(size as u32 - 4).to_be_bytes());
        let err = tiff_layout(&mut Cursor::new(&long), size).unwrap_err();
        assert!(matches!(err, Fail::CutOff(d) if d.contains("image data")));
    }

    #[test]
    fn webp_lossless_and_lossy_headers() {
        let mut vp8l = b"RIFF\0\0\0\0WEBPVP8L\0\0\0\0\x2f".to_vec();
        let bits: u32 = (1499) | (1999 << 14);
        vp8l.extend_from_slice(&bits.to_le_bytes());
        vp8l.resize(30, 0);
        assert_eq!(webp_layout(&vp8l).unwrap(), Layout::single(1500, 2000));
        let mut vp8 = b"RIFF\0\0\0\0WEBPVP8 \0\0\0\0\0\0\0\x9d\x01\x2a".to_vec();
        vp8.extend_from_slice(&(1200u16 | 0x4000).to_le_bytes()); // with a scaling hint
        vp8.extend_from_slice(&1600u16.to_le_bytes());
        assert_eq!(webp_layout(&vp8).unwrap(), Layout::single(1200, 1600));
        vp8[24] = 0;
        assert!(webp_layout(&vp8).is_err());
    }
}
