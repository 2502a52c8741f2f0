//! AVIF: recognised by the brands of its `ftyp` box; the size from the box tree up to the
//! `ispe` property, through `imagesize`; the top-level boxes must fit the file and hold both
//! `meta` and `mdat`.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};

use super::{Fail, Layout, MAX_CHUNKS, bad, be32, short, sides};

/// An ISO-BMFF `ftyp` box whose major brand, or one of its compatible brands (as far as the
/// header goes), is `avif` or `avis` (some encoders put `mif1` first).
pub(super) fn is_avif(h: &[u8]) -> bool {
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

/// AVIF (ISO-BMFF): the top-level boxes, by their sizes (32-bit, 64-bit, or 0 = to the end),
/// must end exactly at the end of the file, and the `meta` box (the header) and the `mdat` box
/// (the image data) must both be there: a file cut exactly between two boxes lacks one.
pub(super) fn ending<R: Read + Seek>(r: &mut R, size: u64) -> Result<(), Fail> {
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

/// AVIF: the largest `ispe` (image spatial extent) property in `meta/iprp/ipco`, read by
/// `imagesize` (header-only; it honours an `irot` rotation of 90 or 270 degrees).
pub(super) fn layout(file: &mut File) -> Result<Layout, Fail> {
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
