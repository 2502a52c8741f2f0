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
//!
//! This module holds the shared limits, the [`Format`] a file is recognised as, and the
//! dispatch ([`check`], [`check_ending`], [`is_cut_off`]) with the readers every format
//! shares. How each format is read lives in its own module (`jpeg`, `png`, `tiff`, `webp`,
//! `avif`, `pdf`); the vendor's limits applied to what was read, and the messages, in
//! `rules`.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

mod avif;
mod jpeg;
mod pdf;
mod png;
mod rules;
mod tiff;
mod webp;

pub use rules::CUT_OFF;
use rules::{Round, apply_rules, cut_off, damaged, show_size, too_big_in_total};

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
    } else if avif::is_avif(h) {
        Some(Format::Avif)
    } else if h.starts_with(b"%PDF-") {
        Some(Format::Pdf)
    } else {
        None
    }
}

/// Pages and pixel sizes as read from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    /// Pages counted; 0 = could not be counted (a PDF with object streams).
    pages: u32,
    /// Width and height of each page, for rasters; empty for PDF. For a TIFF with more pages
    /// than [`tiff::MAX_TIFF_IFDS`] only the pages walked.
    dims: Vec<(u32, u32)>,
    /// The TIFF has more IFDs than [`tiff::MAX_TIFF_IFDS`]; `pages` is that bound.
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
        Format::Png => png::layout(header),
        Format::Webp => webp::layout(header),
        Format::Jpeg => jpeg::layout(&mut BufReader::new(file)),
        Format::Avif => avif::layout(file),
        Format::Tiff => tiff::layout(&mut BufReader::new(file), size),
        Format::Pdf => {
            file.seek(SeekFrom::Start(0))?;
            pdf::layout(file)
        }
    }
}

/// The file ends the way its format ends. Cheap: no decoding; JPEG is walked marker by marker
/// (its entropy-coded data is scanned for the next marker, byte by byte through a buffer), the
/// other formats are checked by a few seeks.
fn check_ending(format: Format, header: &[u8], file: &mut File, size: u64) -> Result<(), Fail> {
    match format {
        Format::Jpeg => jpeg::ending(&mut BufReader::new(file), size),
        Format::Png => png::ending(&mut BufReader::new(file), size),
        Format::Pdf => pdf::ending(file, size),
        // Strips and tiles are checked on the walk through the pages.
        Format::Tiff => Ok(()),
        Format::Webp => webp::ending(header, size),
        Format::Avif => avif::ending(&mut BufReader::new(file), size),
    }
}

/// Most chunks or boxes walked: far above any real file, a bound on a crafted one.
const MAX_CHUNKS: u32 = 1_000_000;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
