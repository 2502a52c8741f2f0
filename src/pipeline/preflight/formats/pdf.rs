//! PDF: page objects counted in a streaming scan of the whole file (never held in memory at
//! once); no pixel size; the end is a `%%EOF` in the last KB.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use super::{Fail, KB, Layout, bad, short};

/// Bytes at the end of a PDF searched for `%%EOF`.
const PDF_TAIL: u64 = KB;

/// PDF: `%%EOF` in the last KB. With incremental updates each revision ends with one; the last
/// is at the end.
pub(super) fn ending(file: &mut File, size: u64) -> Result<(), Fail> {
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

/// Bytes read at a time when counting PDF pages.
const PDF_CHUNK: usize = 256 * 1024;

/// PDF: counts page objects (see [`count_pdf_pages`]). A PDF has no pixel size, so the
/// dimension rule does not apply.
pub(super) fn layout<R: Read>(r: &mut R) -> Result<Layout, Fail> {
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
        assert_eq!(layout(&mut Cursor::new(&hidden)).unwrap().pages, 0);
        let none = pdf_with(&["/Type /Catalog"]);
        assert!(matches!(
            layout(&mut Cursor::new(&none)),
            Err(Fail::Damaged(_))
        ));
    }
}
