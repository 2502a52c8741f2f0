//! Where a path of a `sets` inbox belongs: each direct subfolder is a candidate set.
//!
//! A set folder becomes a candidate of the one settle and hold rule
//! ([`settle`](super::settle)), its stamp the folder's listing ([`stamp`](super::stamp)):
//! everything in the folder, not only the members (names, sizes and mtimes of the members,
//! the hidden and temporary names, the inbox's `ignore` patterns, the ready file and folders
//! inside). Events anywhere below a set folder count for it: one that may be a change
//! restarts its settle time, and a file created or written to and not closed since (any
//! name) holds it while a writer has it open. Loose files and symlinks (to a folder or not)
//! directly in a sets inbox are left alone with one WARN each; folders inside a set are
//! left to preflight (which refuses the set).

use std::path::{Component, Path, PathBuf};

use super::Intake;
use super::settle::rel_name;
use super::stamp::Stamp;
use crate::pipeline::entries::is_ignored_name;

/// Where a path in a sets inbox belongs.
enum Place {
    /// The set folder itself, or something below it (`below`).
    Set {
        folder: PathBuf,
        below: bool,
    },
    /// A file directly in the inbox.
    Loose,
    /// A symlink directly in the inbox (to a folder or not): never a set, never followed.
    Link,
    Elsewhere,
}

impl Intake {
    /// Where `path` belongs in the sets inbox `index`.
    fn place_in_sets_inbox(&self, index: usize, path: &Path) -> Place {
        let root = &self.inboxes[index].path;
        let Ok(rel) = path.strip_prefix(root) else {
            return Place::Elsewhere;
        };
        let parts: Vec<String> = rel
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        let is_link = || std::fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink());
        match parts.as_slice() {
            [first, ..] if is_ignored_name(first) => Place::Elsewhere,
            [_] if is_link() => Place::Link,
            [first] if path.is_dir() => Place::Set {
                folder: root.join(first),
                below: false,
            },
            [_] => Place::Loose,
            [first, _, ..] => Place::Set {
                folder: root.join(first),
                below: true,
            },
            [] => Place::Elsewhere,
        }
    }

    /// A path of a sets inbox may be new or changed: track its set (and a writer's
    /// open/close of anything in it: `event` is (closed, written) for an event that may be
    /// a change), or warn once about a loose file.
    pub(super) fn look_at_in_sets_inbox(
        &mut self,
        index: usize,
        path: &Path,
        event: Option<(bool, bool)>,
    ) {
        match self.place_in_sets_inbox(index, path) {
            Place::Loose => {
                if path.is_file() {
                    self.warn_once(
                        path,
                        "is a loose file in a sets inbox: only subfolders are sets; put it in a subfolder (one folder per set); left in place",
                    );
                }
            }
            Place::Link => self.warn_once(
                path,
                "is a symbolic link in a sets inbox: links are never followed, so it is never a set; left in place",
            ),
            Place::Elsewhere => {}
            Place::Set { folder, below } => {
                let root = &self.inboxes[index].path;
                let Some(name) = rel_name(root, &folder).map(str::to_string) else {
                    return self.warn_once(
                        &folder,
                        "its name is not valid UTF-8 (set the share's character set to UTF-8); left in place",
                    );
                };
                let slot = match self.waiting.find(index, &name) {
                    Some(slot) if self.waiting.get(slot).is_offered() => return,
                    Some(slot) => slot,
                    None => {
                        let inbox = &self.inboxes[index];
                        let Some(stamp) = Stamp::of_set(inbox, &folder) else {
                            return; // not a folder (any more)
                        };
                        tracing::info!(inbox = %inbox.path.display(), set = %name, "set detected");
                        match self.add(index, &name, stamp, None) {
                            Some(slot) => slot,
                            None => return,
                        }
                    }
                };
                // Every name counts: a temporary or hidden file being written is a member
                // still arriving.
                if let (true, Some((closed, written))) = (below, event) {
                    let record = self.waiting.get_mut(slot);
                    record.heard_writer(path, closed, written);
                    record.heard_change();
                }
            }
        }
    }
}
