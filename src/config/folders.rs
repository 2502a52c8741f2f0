//! Folder paths: made absolute and compared, so that no inbox takes another's (or its own)
//! output as input and no two roles share a folder.

use std::path::{Component, Path, PathBuf};

use super::{ConfigError, InboxConfig, key_error};

/// A folder key must not be empty.
pub(super) fn check_absolute_or_relative(path: &Path, key: &str) -> Result<(), ConfigError> {
    if path.as_os_str().is_empty() {
        Err(key_error(key, "is empty; give a folder path"))
    } else {
        Ok(())
    }
}

/// Makes a path absolute (relative to the working directory) and removes `.` and `..`
/// without touching the filesystem, so nesting checks compare like with like.
pub(super) fn normalize(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(path)
    };
    let mut out = PathBuf::new();
    for c in absolute.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Refuses layouts where one inbox would take another's (or its own) output as input, or
/// where two roles share a folder.
pub(super) fn check_folders(inboxes: &[InboxConfig], state_dir: &Path) -> Result<(), ConfigError> {
    let mut folders: Vec<(String, &Path)> = Vec::new();
    for (i, inbox) in inboxes.iter().enumerate() {
        folders.push((format!("inbox[{i}].path"), &inbox.path));
        folders.push((format!("inbox[{i}].done"), &inbox.done));
        folders.push((format!("inbox[{i}].failed"), &inbox.failed));
        if let Some(review) = &inbox.review {
            folders.push((format!("inbox[{i}].review"), review));
        }
    }
    // Several inboxes may share one review folder (`review` in [defaults]: one pile for a
    // person to check); every other pair must stay apart.
    let both_review = |a: &str, b: &str| a.ends_with(".review") && b.ends_with(".review");
    for (a, (key_a, path_a)) in folders.iter().enumerate() {
        for (key_b, path_b) in folders.iter().skip(a + 1) {
            if path_a == path_b && both_review(key_a, key_b) {
                continue;
            }
            if path_a == path_b {
                return Err(key_error(
                    key_b.clone(),
                    format!(
                        "\"{}\" is the same folder as {key_a}; every inbox needs its own path, done and failed folders",
                        path_b.display()
                    ),
                ));
            }
            if let Some((inner, outer)) = nesting(key_a, path_a, key_b, path_b) {
                return Err(key_error(
                    inner.0.to_string(),
                    format!(
                        "\"{}\" is inside {} (\"{}\"); move it out so that no folder is watched as another's output",
                        inner.1.display(),
                        outer.0,
                        outer.1.display()
                    ),
                ));
            }
        }
        if path_a.starts_with(state_dir) || state_dir.starts_with(path_a) {
            return Err(key_error(
                "daemon.state_dir",
                format!(
                    "\"{}\" overlaps {key_a} (\"{}\"); keep the state folder apart from scan folders",
                    state_dir.display(),
                    path_a.display()
                ),
            ));
        }
    }
    Ok(())
}

type Named<'a> = (&'a str, &'a Path);

fn nesting<'a>(
    key_a: &'a str,
    path_a: &'a Path,
    key_b: &'a str,
    path_b: &'a Path,
) -> Option<(Named<'a>, Named<'a>)> {
    if path_a.starts_with(path_b) {
        Some(((key_a, path_a), (key_b, path_b)))
    } else if path_b.starts_with(path_a) {
        Some(((key_b, path_b), (key_a, path_a)))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{GOOD, err_text};

    #[test]
    fn done_inside_inbox_is_refused() {
        let text = GOOD.replace("/srv/done/passport", "/srv/in/passport/done");
        let e = err_text(&text);
        assert!(e.contains("inbox[0].done") && e.contains("inside"), "{e}");
    }

    #[test]
    fn two_inboxes_sharing_a_folder_are_refused() {
        let text = format!(
            "{GOOD}\n[[inbox]]\npath = \"/srv/in/snils\"\ntype = \"SNILS\"\ndone = \"/srv/done/passport\"\nfailed = \"/srv/failed/snils\"\n"
        );
        let e = err_text(&text);
        assert!(
            e.contains("inbox[1].done") && e.contains("same folder"),
            "{e}"
        );
    }

    #[test]
    fn inbox_nested_in_another_inbox_is_refused() {
        let text = format!(
            "{GOOD}\n[[inbox]]\npath = \"/srv/in/passport/sub\"\ntype = \"SNILS\"\ndone = \"/srv/done/snils\"\nfailed = \"/srv/failed/snils\"\n"
        );
        let e = err_text(&text);
        assert!(e.contains("inbox[1].path"), "{e}");
    }
}
