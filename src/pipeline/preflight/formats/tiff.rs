//! TIFF: the chain of image file directories (IFDs), one seek per page; thumbnails are not
//! pages, every page gives its size and where its image data is, and that data lies inside
//! the file (which is how a cut-off TIFF shows).

use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};

use super::{Fail, Layout, bad, short};

/// Most IFDs walked in a TIFF: far above [`MAX_PAGES`](super::MAX_PAGES), so the message can
/// give the count of any real file, but a bound on a chain crafted to be endless.
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
pub(super) fn layout<R: Read + Seek>(r: &mut R, size: u64) -> Result<Layout, Fail> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

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
        let walked = layout(&mut Cursor::new(&t), size).unwrap();
        assert_eq!(walked, Layout::single(2480, 3508));
        // The same file cut before the second IFD's end.
        let cut = &t[..t.len() - 6];
        let err = layout(&mut Cursor::new(cut), cut.len() as u64).unwrap_err();
        assert!(matches!(err, Fail::CutOff(d) if d.contains("past the end")));
        // A strip that lies past the end of the file: cut off.
        let mut long = t.clone();
        let at = 8 + 66 + 2 + 2 * 12 + 8; // the second IFD's StripOffsets value
        long[at..at + 4].copy_from_slice(&(size as u32 - 4).to_be_bytes());
        let err = layout(&mut Cursor::new(&long), size).unwrap_err();
        assert!(matches!(err, Fail::CutOff(d) if d.contains("image data")));
    }
}
