//! Checks a claimed file before any request is paid for.
//!
//! The format is recognised by its first bytes, whatever the extension says: the service takes
//! JPEG, PNG, TIFF, WEBP, AVIF and PDF. An empty file or anything else goes straight to
//! failed/ with a message a receptionist can act on, and no request is made.

use std::io::Read;
use std::path::Path;

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
}

/// Bytes read to recognise a format.
const HEADER_LEN: usize = 64;

/// A file the service would refuse, explained for the person who scanned it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// Checks the file at `path`; returns its format when it may be sent.
pub fn check(path: &Path) -> Result<Result<Format, Refusal>, std::io::Error> {
    let mut header = Vec::with_capacity(HEADER_LEN);
    std::fs::File::open(path)?
        .take(HEADER_LEN as u64)
        .read_to_end(&mut header)?;
    Ok(check_header(&header))
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
    } else if h.len() >= 12 && &h[4..8] == b"ftyp" && (&h[8..12] == b"avif" || &h[8..12] == b"avis")
    {
        Some(Format::Avif)
    } else if h.starts_with(b"%PDF-") {
        Some(Format::Pdf)
    } else {
        None
    }
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
