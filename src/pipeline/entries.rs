//! Which entries of an inbox folder (or of a set's folder) the daemon takes: the one rule
//! intake, a set's listing and `status` all apply. Names never taken ([`is_ignored_name`]:
//! hidden, editors' backups, and the [temporary names](is_temporary_name) of files another
//! program is still busy with), the inbox's `ignore` patterns, and entries refused with a
//! reason (links, hard-linked files, anything but a regular file, names that are not UTF-8).
//! Pure rules about names and `lstat`: no watching, no settling (that is intake's).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::config::InboxConfig;

/// Names intake never takes: hidden files (and our own work folder and temp files), editors'
/// backups (`name~`), and the [temporary names](is_temporary_name).
pub fn is_ignored_name(name: &str) -> bool {
    name.starts_with('.') || name.ends_with('~') || is_temporary_name(name)
}

/// Names of files another program is still busy with: the partial-download suffixes of
/// browsers, FTP clients and copy tools (`.tmp`, `.part`, `.partial`, `.crdownload`), an
/// editor's swap file (`.swp`), and the lock files of Office (`~$name`) and LibreOffice
/// (`.~lock.name#`). In a set folder such a name holds the set: a set is never sent without
/// the file still arriving under it.
pub fn is_temporary_name(name: &str) -> bool {
    const SUFFIXES: [&str; 5] = [".tmp", ".part", ".partial", ".crdownload", ".swp"];
    let lower = name.to_lowercase();
    name.starts_with("~$")
        || name.starts_with(".~lock.")
        || SUFFIXES.iter().any(|s| lower.ends_with(s))
}

/// What intake does with one entry of an inbox folder: [`EntryRules::judge`]'s answer.
#[derive(Debug)]
pub enum Verdict {
    /// A regular file with no other hard link: taken once it has settled. `rel` is its path
    /// below the inbox (`scan.jpg`, or `2026/11/scan.jpg` in a recursive inbox).
    Take {
        rel: String,
        meta: std::fs::Metadata,
    },
    /// A folder of a recursive inbox: its entries are judged in turn.
    Descend,
    /// Left alone without a word: hidden and temporary names, the inbox's `ignore`
    /// patterns, folders of an inbox that is not recursive.
    Skip,
    /// Gone between the listing and the look.
    Gone,
    /// Never taken, and the user is told why (once): symlinks, hard-linked files, anything
    /// but a regular file, names that are not UTF-8. The text says what the entry is, not
    /// where it stays: a single file stays in the inbox, a set's goes with its set.
    Refuse(&'static str),
}

/// One inbox's rule for its entries: the one place that says which entries intake takes
/// (the `status` command counts waiting files with it too).
pub struct EntryRules {
    root: PathBuf,
    recursive: bool,
    /// The user's `ignore` patterns: without "/" matched against the name, with "/"
    /// against the path below the inbox.
    ignore_names: GlobSet,
    ignore_paths: GlobSet,
}

impl EntryRules {
    pub fn new(inbox: &InboxConfig) -> EntryRules {
        EntryRules::within(inbox, &inbox.path)
    }

    /// The inbox's rules for the entries of `root` (a set's folder, in the inbox or claimed).
    pub fn within(inbox: &InboxConfig, root: &Path) -> EntryRules {
        let (ignore_names, ignore_paths) = ignore_sets(&inbox.ignore);
        EntryRules {
            root: root.to_path_buf(),
            recursive: inbox.recursive,
            ignore_names,
            ignore_paths,
        }
    }

    /// What intake does with `path`, an entry of the inbox folder or (recursive inbox) of
    /// one of its subfolders. Looks at the entry itself (`lstat`), never follows a link.
    pub fn judge(&self, path: &Path) -> Verdict {
        self.judge_with(path, || std::fs::symlink_metadata(path))
    }

    /// The same for an entry of a listing (`path` is its path): it is looked at by its name
    /// in the listed folder, which is not walked down to again (a listing of 1,000,000
    /// files takes a third less time).
    pub fn judge_listed(&self, path: &Path, entry: &std::fs::DirEntry) -> Verdict {
        self.judge_with(path, || entry.metadata())
    }

    fn judge_with(
        &self,
        path: &Path,
        lstat: impl FnOnce() -> std::io::Result<std::fs::Metadata>,
    ) -> Verdict {
        let Some(rel) = path.strip_prefix(&self.root).ok().and_then(|r| r.to_str()) else {
            return Verdict::Refuse(
                "its name is not valid UTF-8 (set the share's character set to UTF-8)",
            );
        };
        let name = rel.rsplit('/').next().unwrap_or(rel);
        if is_ignored_name(name)
            || self.ignore_names.is_match(name)
            || self.ignore_paths.is_match(rel)
        {
            return Verdict::Skip;
        }
        let Ok(meta) = lstat() else {
            return Verdict::Gone;
        };
        let kind = meta.file_type();
        if kind.is_dir() {
            return if self.recursive {
                Verdict::Descend
            } else {
                Verdict::Skip
            };
        }
        if kind.is_symlink() {
            return Verdict::Refuse("is a symbolic link (links are never followed or uploaded)");
        }
        if !kind.is_file() {
            return Verdict::Refuse("is not a regular file");
        }
        if meta.nlink() > 1 {
            return Verdict::Refuse(
                "has other hard links (possibly to a file outside the inbox), so it is not uploaded",
            );
        }
        Verdict::Take {
            rel: rel.to_string(),
            meta,
        }
    }
}

/// Compiles `ignore` patterns (already validated by config) into name and path sets.
fn ignore_sets(patterns: &[String]) -> (GlobSet, GlobSet) {
    let (mut names, mut paths) = (GlobSetBuilder::new(), GlobSetBuilder::new());
    for pattern in patterns {
        if let Ok(glob) = Glob::new(pattern) {
            if pattern.contains('/') {
                paths.add(glob);
            } else {
                names.add(glob);
            }
        }
    }
    (
        names.build().unwrap_or_else(|_| GlobSet::empty()),
        paths.build().unwrap_or_else(|_| GlobSet::empty()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignored_names() {
        for n in [
            ".hidden",
            "~$lock.docx",
            "a.tmp",
            "a.PART",
            "a.partial",
            "a.crdownload",
            ".a.swp",
            "a.swp",
            "backup~",
            crate::store::layout::WORK_DIR,
        ] {
            assert!(is_ignored_name(n), "{n}");
        }
        for n in ["scan.jpg", "скан 1.pdf", "a~b.png", "tmp.jpg"] {
            assert!(!is_ignored_name(n), "{n}");
        }
    }

    #[test]
    fn ignore_patterns_match_names_or_paths() {
        let (names, paths) = ignore_sets(&["*.bak".into(), "drafts/*".into()]);
        assert!(names.is_match("scan.bak"));
        assert!(!names.is_match("scan.jpg"));
        assert!(paths.is_match("drafts/a.jpg"));
        assert!(!paths.is_match("final/a.jpg"));
    }
}
