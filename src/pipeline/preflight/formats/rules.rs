//! The vendor's mandatory limits applied to what was read of a file (pages, pixels per side,
//! bytes per page), and every refusal's message, in words the person who scanned it can act
//! on.

use super::{
    Facts, Format, KB, Layout, MAX_FILE_BYTES, MAX_PAGE_BYTES, MAX_PAGES, MAX_SIDE_PX, MB,
    MIN_PAGE_BYTES, MIN_SIDE_PX, Refusal,
};

pub(super) fn apply_rules(format: Format, size: u64, layout: &Layout) -> Result<Facts, Refusal> {
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

pub(super) fn too_big_in_total(size: u64) -> Refusal {
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

pub(super) fn cut_off(detail: &str) -> Refusal {
    Refusal(format!("{CUT_OFF} (Detail: {detail}.)"))
}

pub(super) fn damaged(format: Format, detail: &str) -> Refusal {
    Refusal(format!(
        "The file looks like {} but cannot be read: it is cut off or damaged. Scan the document again and let the scanner finish saving. (Detail: {detail}.)",
        format.with_article()
    ))
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Round {
    Down,
    Up,
}

/// "3 KB", "9.9 KB", "240.5 KB", "12.4 MB": KB below 1 MB, one decimal (dropped when it is
/// 0), rounded in the direction that never makes a refused size look like the limit itself
/// (down for "too small", up for "too big").
pub(super) fn show_size(bytes: u64, round: Round) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
