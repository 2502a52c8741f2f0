//! PNG: the size from the IHDR chunk in the first 64 bytes (its checksum checked); the end is
//! the `IEND` chunk, reached chunk by chunk with every chunk's checksum checked.

use std::io::{Read, Seek, SeekFrom};

use super::{Fail, Layout, MAX_CHUNKS, bad, be32, short, sides};

/// PNG: the chunks, by their lengths, from the signature to `IEND`, each with its CRC-32
/// checked (a decoder such as Pillow refuses a file with any wrong chunk checksum; it is also
/// how a flipped byte anywhere in a PNG shows). Bytes after `IEND` are not looked at. A chunk
/// type that is not four ASCII letters means the walk lost its way: damaged.
pub(super) fn ending<R: Read + Seek>(r: &mut R, size: u64) -> Result<(), Fail> {
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

/// PNG: the first chunk must be a 13-byte IHDR; width and height follow its type.
pub(super) fn layout(h: &[u8]) -> Result<Layout, Fail> {
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
