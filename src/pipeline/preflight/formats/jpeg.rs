//! JPEG: the size from the first frame header (SOFn), reached by walking the markers and
//! skipping segments by their length; the end is the end-of-image marker (`FF D9`), reached
//! through the entropy-coded data (bytes after it are not looked at).

use std::io::{BufRead, Read, Seek, SeekFrom};

use super::{Fail, KB, Layout, bad, short, sides};

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
pub(super) fn ending<R: BufRead + Seek>(r: &mut R, size: u64) -> Result<(), Fail> {
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

/// JPEG: walks the markers to the first frame header (SOF0..SOF15 but DHT, JPG, DAC).
///
/// Not through `imagesize`: its JPEG walk seeks back on a segment length below 2 and loops for
/// ever on a crafted or damaged file (`FF D8 FF E0 00 00`). Here every step moves forward, so
/// the walk ends at the end of the file at the latest.
pub(super) fn layout<R: Read + Seek>(r: &mut R) -> Result<Layout, Fail> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn a_jpeg_segment_of_length_zero_ends_the_walk() {
        let mut jpeg = b"\xFF\xD8\xFF\xE0\x00\x00".to_vec();
        jpeg.resize(20_000, 0xAB);
        let err = layout(&mut Cursor::new(&jpeg)).unwrap_err();
        assert!(matches!(err, Fail::Damaged(d) if d.contains("length 0")));
    }

    #[test]
    fn jpeg_size_comes_from_the_frame_header_after_fill_bytes_and_app_segments() {
        let mut jpeg = b"\xFF\xD8\xFF\xE0\x00\x04ab\xFF\xFF\xFF\xC2\x00\x11\x08".to_vec();
        jpeg.extend_from_slice(&1754u16.to_be_bytes());
        jpeg.extend_from_slice(&1240u16.to_be_bytes());
        let layout = layout(&mut Cursor::new(&jpeg)).unwrap();
        assert_eq!(layout, Layout::single(1240, 1754));
    }
}
