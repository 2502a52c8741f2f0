//! Generated sample scans for the demo and the tests: real PNG files that look like a page
//! (white paper, dark "text lines"), large enough for the service's limits (1240 x 1754 px,
//! A4 at 150 dpi). Each seed gives different content, so the API never sees a duplicate.
//! An optional marker is stored in a PNG text chunk: the emulator reacts to `BEORG-EMU:*`.

/// Width and height of a generated page, in pixels.
pub const PAGE_WIDTH: u32 = 1240;
pub const PAGE_HEIGHT: u32 = 1754;

/// A page-like grayscale PNG. `seed` makes it unique; `marker` (e.g. `BEORG-EMU:broken`)
/// steers the emulator.
pub fn page_png(seed: u64, marker: Option<&str>) -> Vec<u8> {
    sized_png(PAGE_WIDTH, PAGE_HEIGHT, seed, marker)
}

/// A KYC document set as a bank's desk sends it: a passport spread and a selfie, named so
/// that the issue's `[[inbox.documents]]` rules (`*selfie*`, then `*`) tell them apart.
pub fn kyc_set(seed: u64, passport_marker: Option<&str>) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("passport-spread.png", page_png(seed, passport_marker)),
        (
            "selfie.png",
            sized_png(1080, 1440, seed.wrapping_add(1), None),
        ),
    ]
}

/// A page-like grayscale PNG of any size.
pub fn sized_png(width: u32, height: u32, seed: u64, marker: Option<&str>) -> Vec<u8> {
    let pixels = page_pixels(width, height, seed);
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Fast);
        encoder
            .add_text_chunk("Software".into(), "beorg-hotfolder sample".into())
            .expect("text chunk");
        encoder
            .add_text_chunk("Comment".into(), format!("sample {seed}"))
            .expect("text chunk");
        if let Some(marker) = marker {
            encoder
                .add_text_chunk("BeorgEmulator".into(), marker.into())
                .expect("text chunk");
        }
        let mut writer = encoder.write_header().expect("PNG header");
        writer.write_image_data(&pixels).expect("PNG data");
    }
    out
}

/// White paper with rows of dark word-like blocks and light grain, from a seeded generator.
fn page_pixels(width: u32, height: u32, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let (w, h) = (width as usize, height as usize);
    let mut pixels = vec![248u8; w * h];
    // Sparse grain, as on a real scan of paper (and it keeps every page different).
    for _ in 0..(w * h / 200) {
        pixels[rng.usize(0..w * h)] = rng.u8(200..240);
    }
    let margin = w / 12;
    let mut y = h / 10;
    while y + 20 < h - h / 10 {
        let mut x = margin;
        while x < w - margin {
            let word = rng.usize(20..120).min(w - margin - x);
            for row in y..y + 14 {
                let ink = rng.u8(20..60);
                pixels[row * w + x..row * w + x + word].fill(ink);
            }
            x += word + rng.usize(10..30);
        }
        y += rng.usize(28..44);
    }
    pixels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_valid_distinct_and_within_the_services_size_limits() {
        let a = page_png(1, None);
        let b = page_png(2, Some("BEORG-EMU:broken"));
        assert_ne!(a, b);
        assert!(
            a.len() > 10 * 1024 && a.len() < 5 * 1024 * 1024,
            "{}",
            a.len()
        );
        assert!(a.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert!(b.windows(16).any(|w| w == b"BEORG-EMU:broken"));
        let decoder = png::Decoder::new(std::io::Cursor::new(a));
        let reader = decoder.read_info().unwrap();
        assert_eq!(reader.info().width, PAGE_WIDTH);
    }
}
