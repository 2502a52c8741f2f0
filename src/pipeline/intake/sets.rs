//! Intake of document sets: in a `sets` inbox each direct subfolder is a candidate set.
//!
//! A set is offered once its `ready_file` is there (when configured), its listing (names,
//! sizes, mtimes of its members) has not changed for `settle`, and none of its members looks
//! unfinished: open for writing (by events), a zero tail, or cut off before its format's end
//! — the same holds as a single file, up to `hold_limit` without a change. A set still
//! receiving files is never offered. Loose files and symlinks (to a folder or not) directly
//! in a sets inbox are left alone with one WARN each; folders inside a set are left to
//! preflight (which refuses the set).

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use std::time::{Instant, SystemTime};

use super::{EMPTY_FILE_SETTLE, Hold, Intake, ReadyFile, is_ignored_name, tail_is_zeros};
use crate::pipeline::preflight;
use crate::pipeline::set::{self, Listing};

/// A subfolder of a sets inbox, not offered yet.
pub(super) struct SetCandidate {
    inbox: usize,
    name: String,
    /// The listing as last seen; any change restarts the settle time.
    seen: Option<Listing>,
    stable_since: Instant,
    detected_at: SystemTime,
    /// Members a local writer has open (created or written to, no close since).
    open_for_write: HashSet<String>,
    /// Held as unfinished since then, without a change since.
    incomplete_since: Option<Instant>,
    /// Said once that it waits for its ready file.
    told_waiting: bool,
}

/// Where a path in a sets inbox belongs.
enum Place {
    /// The set folder itself, or a file in it (its name).
    Set {
        folder: PathBuf,
        member: Option<String>,
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
                member: None,
            },
            [_] => Place::Loose,
            [first, member] => Place::Set {
                folder: root.join(first),
                member: Some(member.clone()),
            },
            _ => Place::Elsewhere,
        }
    }

    /// A path of a sets inbox may be new or changed: track its set (and a writer's
    /// open/close of its member), or warn once about a loose file.
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
            Place::Set { folder, member } => {
                if self.queue.is_taken(&folder) || !folder.is_dir() {
                    return;
                }
                let candidate = self.set_candidates.entry(folder.clone()).or_insert_with(|| {
                    let name = folder
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    tracing::info!(inbox = %self.inboxes[index].path.display(), set = %name, "set detected");
                    SetCandidate {
                        inbox: index,
                        name,
                        seen: None,
                        stable_since: Instant::now(),
                        detected_at: SystemTime::now(),
                        open_for_write: HashSet::new(),
                        incomplete_since: None,
                        told_waiting: false,
                    }
                });
                let member = member.filter(|m| !is_ignored_name(m));
                if let (Some(member), Some((closed, written))) = (member, event) {
                    if closed {
                        candidate.open_for_write.remove(&member);
                    } else if written {
                        candidate.open_for_write.insert(member);
                    }
                    candidate.stable_since = Instant::now();
                }
            }
        }
    }

    /// Re-lists every candidate set; the ones that are ready go to the queue.
    pub(super) fn check_set_candidates(&mut self) {
        let now = Instant::now();
        let folders: Vec<PathBuf> = self.set_candidates.keys().cloned().collect();
        for folder in folders {
            self.check_set(&folder, now);
        }
    }

    fn check_set(&mut self, folder: &Path, now: Instant) {
        let Some(c) = self.set_candidates.get_mut(folder) else {
            return;
        };
        let inbox = &self.inboxes[c.inbox];
        let Ok(listing) = set::list(inbox, folder) else {
            self.set_candidates.remove(folder);
            return;
        };
        // A member renamed or deleted while open is no longer this set's writer.
        c.open_for_write
            .retain(|name| listing.files.iter().any(|f| &f.name == name));
        if c.seen.as_ref() != Some(&listing) {
            c.seen = Some(listing.clone());
            c.stable_since = now;
            c.incomplete_since = None;
        }
        if inbox.ready_file.is_some() && !listing.ready {
            if !c.told_waiting && !listing.files.is_empty() {
                tracing::info!(set = %c.name, "waiting for its ready file {}", inbox.ready_file.as_deref().unwrap_or_default());
                c.told_waiting = true;
            }
            return;
        }
        if listing.files.is_empty() && listing.folders.is_empty() && !listing.ready {
            return; // an empty folder: nothing to send yet
        }
        let needed = if listing.files.iter().any(|f| f.size == 0) {
            inbox.settle.max(EMPTY_FILE_SETTLE)
        } else {
            inbox.settle
        };
        if now.duration_since(c.stable_since) < needed {
            return;
        }
        if let Some((member, hold)) = set_hold(c, folder, &listing) {
            let since = *c.incomplete_since.get_or_insert(now);
            if now.duration_since(since) < self.hold_limit {
                if since == now {
                    tracing::info!(set = %c.name, file = %member, "{}", hold.waiting());
                }
                c.stable_since = now;
                return;
            }
            tracing::warn!(
                set = %c.name, file = %member,
                "held for {} without a change: {}",
                humantime::format_duration(self.hold_limit),
                hold.giving_up()
            );
        }
        let c = self.set_candidates.remove(folder).expect("looked up above");
        self.queue.push(ReadyFile {
            inbox: c.inbox,
            path: folder.to_path_buf(),
            name: c.name,
            size: listing.size(),
            mtime: listing.newest(),
            detected_at: c.detected_at,
        });
    }
}

/// The first member that looks unfinished, and why.
fn set_hold(c: &SetCandidate, folder: &Path, listing: &Listing) -> Option<(String, Hold)> {
    if let Some(open) = c.open_for_write.iter().next() {
        return Some((open.clone(), Hold::Open));
    }
    listing.files.iter().find_map(|f| {
        let path = folder.join(&f.name);
        let hold = if tail_is_zeros(&path, f.size) {
            Some(Hold::Zeros)
        } else if preflight::is_cut_off(&path).unwrap_or(false) {
            Some(Hold::CutOff)
        } else {
            None
        };
        hold.map(|h| (f.name.clone(), h))
    })
}
