//! WEBP: the size from the VP8, VP8L or VP8X header in the first 64 bytes; the file must be
//! as long as its RIFF header says.

use super::{Fail, Layout, bad, short, sides};

/// WEBP: the RIFF header gives the length of the rest; the file must be at least that long
/// (bytes after the RIFF data are not looked at).
pub(super) fn ending(h: &[u8], size: u64) -> Result<(), Fail> {
    let needed = 8 + u64::from(u32::from_le_bytes([h[4], h[5], h[6], h[7]]));
    if size < needed {
        return short(format!(
            "the WEBP file is {size} bytes, its RIFF header says {needed}"
        ));
    }
    Ok(())
}

fn le24(b: &[u8]) -> u32 {
    u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16
}

/// WEBP: the first chunk of the RIFF file is VP8 (lossy), VP8L (lossless) or VP8X (extended).
pub(super) fn layout(h: &[u8]) -> Result<Layout, Fail> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webp_lossless_and_lossy_headers() {
        let mut vp8l = b"RIFF\0\0\0\0WEBPVP8L\0\0\0\0\x2f".to_vec();
        let bits: u32 = (1499) | (1999 << 14);
        vp8l.extend_from_slice(&bits.to_le_bytes());
        vp8l.resize(30, 0);
        assert_eq!(layout(&vp8l).unwrap(), Layout::single(1500, 2000));
        let mut vp8 = b"RIFF\0\0\0\0WEBPVP8 \0\0\0\0\0\0\0\x9d\x01\x2a".to_vec();
        vp8.extend_from_slice(&(1200u16 | 0x4000).to_le_bytes()); // with a scaling hint
        vp8.extend_from_slice(&1600u16.to_le_bytes());
        assert_eq!(layout(&vp8).unwrap(), Layout::single(1200, 1600));
        vp8[24] = 0;
        assert!(layout(&vp8).is_err());
    }
}
