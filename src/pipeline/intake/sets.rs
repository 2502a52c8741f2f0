//! Intake of document sets: in a `sets` inbox each direct subfolder is a candidate set.
//!
//! A set is offered once its `ready_file` is there as a regular file (when configured), its
//! listing has not changed for `settle`, and nothing in it looks unfinished. The listing is
//! everything in the folder, not only the members: names, sizes and mtimes of the members,
//! the hidden and temporary names, the inbox's `ignore` patterns, the ready file and folders
//! inside; any of them changing restarts the settle time, and events (a file created or
//! written to and not closed since, anywhere below the set folder) hold it while a writer
//! has something open. A temporary name ([`is_temporary_name`](crate::pipeline::entries::is_temporary_name)) holds the set even when
//! quiet; a member holds it while it looks unfinished (a zero tail, cut off before its
//! format's end) as a single file would. Holds last up to `hold_limit` without a change;
//! then a set still holding a temporary name is offered only to be refused whole by
//! preflight (it is never sent without that file), and any other hold is given up with a
//! WARN. A set still receiving files is never offered. Loose files and symlinks (to a folder
//! or not) directly in a sets inbox are left alone with one WARN each; folders inside a set are left to preflight (which
//! refuses the set).

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use std::time::{Instant, SystemTime};

use super::settle::{EMPTY_FILE_SETTLE, Hold, content_hold};
use super::{Intake, ReadyFile};
use crate::pipeline::entries::is_ignored_name;
use crate::pipeline::set::{self, Listing};

/// A subfolder of a sets inbox, not offered yet.
pub(super) struct SetCandidate {
    inbox: usize,
    name: String,
    /// The listing as last seen; any change restarts the settle time.
    seen: Option<Listing>,
    stable_since: Instant,
    detected_at: SystemTime,
    /// Paths below the set folder (`p2.png.tmp`, `inner/a.png`) a local writer has open:
    /// created or written to, no close since. Any name counts, sent or not.
    open_for_write: HashSet<String>,
    /// Held as unfinished since then, without a change since.
    incomplete_since: Option<Instant>,
    /// Said once that it waits for its ready file.
    told_waiting: bool,
    /// The file and hold last said at INFO: a temporary file growing chunk by chunk for an
    /// hour is said once, not at every change.
    told_hold: Option<(String, Hold)>,
}

/// Where a path in a sets inbox belongs.
enum Place {
    /// The set folder itself, or something below it (its path below the set folder).
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
            [first, below @ ..] => Place::Set {
                folder: root.join(first),
                member: Some(below.join("/")),
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
                        told_hold: None,
                    }
                });
                // Every name counts: a temporary or hidden file being written is a member
                // still arriving.
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
        // A file renamed or deleted while open is no longer this set's writer.
        c.open_for_write
            .retain(|below| std::fs::symlink_metadata(folder.join(below)).is_ok());
        if c.seen.as_ref() != Some(&listing) {
            c.seen = Some(listing.clone());
            c.stable_since = now;
            c.incomplete_since = None;
        }
        if let Some(ready_file) = inbox.ready_file.as_deref()
            && !listing.ready
        {
            if let Some(why) = listing.ready_refused {
                let path = folder.join(ready_file);
                let what = format!(
                    "{why}: only a regular file counts as the ready file; the set waits until {ready_file} is one (replace it with an empty file)"
                );
                self.warn_once(&path, &what);
            } else if !c.told_waiting && !listing.is_empty() {
                tracing::info!(set = %c.name, "waiting for its ready file {ready_file}");
                c.told_waiting = true;
            }
            return;
        }
        if listing.is_empty() {
            return; // nothing to send yet
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
                if c.told_hold.as_ref() != Some(&(member.clone(), hold)) {
                    tracing::info!(set = %c.name, file = %member, "{}", hold.waiting());
                    c.told_hold = Some((member, hold));
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

/// The first thing in the set that looks unfinished, and why: a temporary name, a file a
/// writer has open, a member with a zero tail or cut off.
fn set_hold(c: &SetCandidate, folder: &Path, listing: &Listing) -> Option<(String, Hold)> {
    if let Some(name) = listing.temporary().next() {
        return Some((name.to_string(), Hold::Temporary));
    }
    if let Some(open) = c.open_for_write.iter().next() {
        return Some((open.clone(), Hold::Open));
    }
    listing
        .files
        .iter()
        .find_map(|f| content_hold(&folder.join(&f.name), f.size).map(|h| (f.name.clone(), h)))
}
