//! When a seen file is ready: candidates, the settle rule and the hold rules.
//!
//! A path becomes a candidate; a candidate is ready once its size and mtime stayed unchanged
//! for `settle` (checked by our own stat calls; an empty file for at least
//! [`EMPTY_FILE_SETTLE`]), or shortly after a local writer closed it. A settled file is still
//! *held* while it looks unfinished ([`Hold`]): a local writer has it open for writing (seen
//! by events: written to and not closed since), its end is still the zeros of a preallocated
//! file, or it stops before its format's end ([`preflight::is_cut_off`]). A held file is
//! taken once it is finished, or with a WARN once it has been held for `[daemon] hold_limit`
//! without a change. Ready files go to the [`ReadyQueue`](super::ReadyQueue) oldest first,
//! and a settled file waits while an older one seen just now is still settling. Which
//! entries count at all is [`entries`](crate::pipeline::entries)' rule. A set's settle and
//! hold rules are [`sets`](super::sets)'; the content checks ([`content_hold`]) and the
//! reasons ([`Hold`]) are shared.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::{Intake, ReadyFile};
use crate::config::InboxConfig;
use crate::pipeline::entries::Verdict;
use crate::pipeline::preflight;

/// An empty file is often a scanner that has created its output and not written yet: it must
/// stay unchanged at least this long before it is taken (and then refused by preflight).
pub(super) const EMPTY_FILE_SETTLE: Duration = Duration::from_secs(30);

/// A file closed by a local writer goes once unchanged this long after the close (or after
/// `settle`, if shorter).
pub(super) const CLOSE_GRACE: Duration = Duration::from_millis(200);

/// How long after its first sight an older file that is still settling holds back younger
/// settled ones (a first listing of a large backlog takes a while).
const SETTLING_ORDER_WAIT: Duration = Duration::from_secs(5);

/// Bytes at the end of a file that, all zero, mean "preallocated and not filled yet".
const TAIL_LEN: u64 = 512;

/// A file seen in an inbox and not yet ready.
pub(super) struct Candidate {
    inbox: usize,
    size: u64,
    mtime: SystemTime,
    /// Last time size or mtime changed (or first sight).
    stable_since: Instant,
    detected_at: SystemTime,
    /// A local writer closed it (close-after-write event) at this moment.
    closed_at: Option<Instant>,
    /// Events say a local writer has it open: it was created or written to, and no
    /// close-after-write came since. Never set for a polled inbox (no events there).
    open_for_write: bool,
    /// Held as unfinished (see [`Hold`]) since then, without a change since.
    incomplete_since: Option<Instant>,
    /// Size, mtime and ctime when its content was last judged unfinished: the file is read
    /// again only once one of them changed (ctime moves on every write, even when a writer
    /// sets the mtime back).
    judged: Option<Box<(Stamp, Hold)>>,
}

/// Size, mtime, ctime (seconds, nanoseconds) of a file.
type Stamp = (u64, SystemTime, i64, i64);

/// Why a settled file is held in the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hold {
    /// A local writer has it open for writing.
    Open,
    /// Its end is still zeros: a writer that reserved the full size is still filling it.
    Zeros,
    /// It stops before its format's end: still being written or copied, or cut off.
    CutOff,
    /// A set folder holds a [temporary name](crate::pipeline::entries::is_temporary_name): a file still arriving.
    Temporary,
}

impl Hold {
    /// Said once at INFO when the hold begins.
    pub(super) fn waiting(self) -> &'static str {
        match self {
            Hold::Open => "still open for writing; waiting until the writer closes it",
            Hold::Zeros => {
                "its end is still empty (a writer that reserved the full size is still filling it?); waiting"
            }
            Hold::CutOff => {
                "it ends before its format's end (still being written or copied?); waiting"
            }
            Hold::Temporary => {
                "a file is still being written under a temporary name (or a lock file is there); waiting until it is renamed or removed"
            }
        }
    }

    /// Said at WARN when `hold_limit` passed without a change and the hold is given up.
    pub(super) fn giving_up(self) -> &'static str {
        match self {
            Hold::Open => {
                "taking it although a writer still has it open (no close seen); raise [daemon] hold_limit if the writer pauses longer"
            }
            Hold::Zeros => "its end stayed empty; taking it anyway",
            Hold::CutOff => {
                "its end is still missing; taking it (preflight refuses it as cut off unless preflight is \"warn\" or \"off\")"
            }
            Hold::Temporary => {
                "the temporary name is still there; the set is never sent without that file: it goes to failed/"
            }
        }
    }
}

impl Intake {
    /// A path in an inbox may be new or changed: make it a candidate, descend into it (a
    /// folder of a recursive inbox), or leave it alone (and say why, once).
    pub(super) fn look_at(&mut self, index: usize, path: &Path) {
        if self.queue.is_taken(path) {
            return;
        }
        let (rel, meta) = match self.watched[index].rules.judge(path) {
            Verdict::Take { rel, meta } => (rel, meta),
            Verdict::Descend => return self.scan_dir(index, path),
            Verdict::Skip => return,
            Verdict::Gone => {
                self.candidates.remove(path);
                return;
            }
            Verdict::Refuse(why) => return self.warn_once(path, &format!("{why}; left in place")),
        };
        let inbox = &self.inboxes[index];
        let (size, mtime) = (
            meta.len(),
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        );
        match self.candidates.get_mut(path) {
            Some(c) => c.observe(size, mtime),
            None => {
                tracing::info!(inbox = %inbox.path.display(), file = %rel, "detected");
                self.candidates.insert(
                    path.to_path_buf(),
                    Candidate {
                        inbox: index,
                        size,
                        mtime,
                        stable_since: Instant::now(),
                        detected_at: SystemTime::now(),
                        closed_at: None,
                        open_for_write: false,
                        incomplete_since: None,
                        judged: None,
                    },
                );
            }
        }
    }

    /// Re-stats every candidate; the ones that are ready go to the queue, oldest first
    /// (mtime, then name, across all inboxes). A settled file waits while an older one seen
    /// just now is still settling (the files of a first listing settle in listing order,
    /// not by age), so the oldest file is always queued first.
    pub(super) fn check_candidates(&mut self) {
        self.check_set_candidates();
        let now = Instant::now();
        let mut any_settled = false;
        // The oldest file still settling, as (mtime, name): younger ones wait for it.
        let mut oldest_settling: Option<(SystemTime, String)> = None;
        let inboxes = self.inboxes.clone();
        fn age<'a>(
            inboxes: &[InboxConfig],
            c: &Candidate,
            path: &'a Path,
        ) -> (SystemTime, &'a str) {
            (c.mtime, rel_name(&inboxes[c.inbox].path, path))
        }
        self.candidates.retain(|path, c| {
            let Ok(meta) = std::fs::symlink_metadata(path) else {
                return false; // gone (renamed away, deleted)
            };
            if !meta.file_type().is_file() {
                return false;
            }
            c.observe(
                meta.len(),
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            );
            let settle = inboxes[c.inbox].settle;
            if c.is_settled(settle, now) {
                any_settled = true;
            } else if c.settles_soon(settle) {
                let this = age(&inboxes, c, path);
                if oldest_settling
                    .as_ref()
                    .is_none_or(|(m, n)| this < (*m, n.as_str()))
                {
                    oldest_settling = Some((this.0, this.1.to_string()));
                }
            }
            true
        });
        if !any_settled {
            return;
        }
        let ready = |path: &Path, c: &Candidate| {
            c.is_settled(inboxes[c.inbox].settle, now)
                && oldest_settling
                    .as_ref()
                    .is_none_or(|(m, n)| age(&inboxes, c, path) < (*m, n.as_str()))
        };
        // Moved out of the table (not copied: a first listing of a large backlog settles all
        // at once) into a list of exactly their number, oldest first: the queue sorts too,
        // but the feeder may take one meanwhile. The table and the list each give their
        // memory back as they empty, so a backlog of 100,000 files is never held twice over.
        let count = self.candidates.iter().filter(|(p, c)| ready(p, c)).count();
        let mut settled: Vec<(PathBuf, Candidate)> = Vec::with_capacity(count);
        settled.extend(self.candidates.extract_if(|p, c| ready(p, c)));
        self.shrink_candidates();
        // Newest first: the oldest is taken from the end.
        settled.sort_by(|(a, ca), (b, cb)| age(&inboxes, cb, b).cmp(&age(&inboxes, ca, a)));
        while let Some((path, c)) = settled.pop() {
            self.offer(path, c, now);
            if settled.capacity() > 2 * settled.len() + 1024 {
                settled.shrink_to_fit();
            }
        }
    }

    fn shrink_candidates(&mut self) {
        if self.candidates.capacity() > 2 * self.candidates.len() + 1024 {
            self.candidates.shrink_to_fit();
        }
    }

    /// A settled candidate goes to the queue unless it looks unfinished ([`Hold`]); then it
    /// is held, up to `hold_limit` without a change, and looked at again after each settle.
    fn offer(&mut self, path: PathBuf, mut c: Candidate, now: Instant) {
        let name = rel_name(&self.inboxes[c.inbox].path, &path).to_string();
        if let Some(hold) = c.hold(&path) {
            let since = *c.incomplete_since.get_or_insert(now);
            if now.duration_since(since) < self.hold_limit {
                if since == now {
                    tracing::info!(file = %name, "{}", hold.waiting());
                }
                c.stable_since = now;
                c.closed_at = None;
                self.candidates.insert(path, c);
                return;
            }
            tracing::warn!(
                file = %name,
                "held for {} without a change: {}",
                humantime::format_duration(self.hold_limit),
                hold.giving_up()
            );
        }
        self.queue.push(ReadyFile {
            inbox: c.inbox,
            path,
            name,
            size: c.size,
            mtime: c.mtime,
            detected_at: c.detected_at,
        });
    }
}

impl Candidate {
    /// An event from a local writer: a close after writing (`closed`), or a create or a write
    /// (`written`), which means the file is open for writing until the close.
    pub(super) fn heard_writer(&mut self, closed: bool, written: bool) {
        if closed {
            self.closed_at = Some(Instant::now());
            self.open_for_write = false;
        } else if written {
            self.open_for_write = true;
        }
    }

    fn observe(&mut self, size: u64, mtime: SystemTime) {
        if size != self.size || mtime != self.mtime {
            self.size = size;
            self.mtime = mtime;
            self.stable_since = Instant::now();
            // The hold limit counts from the last change.
            self.incomplete_since = None;
        }
    }

    /// Why this settled file should stay in the inbox for now, if it should. Its content is
    /// read only when it changed since it was last judged unfinished.
    fn hold(&mut self, path: &Path) -> Option<Hold> {
        if self.open_for_write {
            return Some(Hold::Open);
        }
        let stamp = std::fs::symlink_metadata(path)
            .ok()
            .map(|m| (m.len(), self.mtime, m.ctime(), m.ctime_nsec()));
        if let (Some(stamp), Some(judged)) = (stamp, self.judged.as_deref())
            && stamp == judged.0
        {
            return Some(judged.1);
        }
        let hold = content_hold(path, self.size);
        self.judged = stamp.zip(hold).map(Box::new);
        hold
    }

    /// Not settled yet, but seen only just now and not changing: a file of a first listing
    /// (or a copy with its old mtime kept) that settles within `settle`. Files being written
    /// have a fresh mtime, held and empty files may wait long: those never hold back others.
    fn settles_soon(&self, settle: Duration) -> bool {
        let seen_for = SystemTime::now()
            .duration_since(self.detected_at)
            .unwrap_or_default();
        self.size > 0
            && !self.open_for_write
            && self.incomplete_since.is_none()
            && seen_for <= settle + SETTLING_ORDER_WAIT
    }

    /// Unchanged for `settle`, or closed by a local writer and unchanged since.
    fn is_settled(&self, settle: Duration, now: Instant) -> bool {
        let needed = if self.size == 0 {
            settle.max(EMPTY_FILE_SETTLE)
        } else {
            settle
        };
        let quiet = now.duration_since(self.stable_since);
        let closed_and_quiet = self.size > 0
            && self.closed_at.is_some_and(|closed| {
                self.stable_since <= closed && now.duration_since(closed) >= CLOSE_GRACE.min(settle)
            });
        quiet >= needed || closed_and_quiet
    }
}

/// A candidate's path below its inbox (`scan.jpg`, or `2026/11/scan.jpg`): its name in the
/// queue, the journal and the outcome folders. Candidates are always UTF-8 below their inbox
/// (intake refuses other names).
fn rel_name<'a>(root: &Path, path: &'a Path) -> &'a str {
    path.strip_prefix(root)
        .ok()
        .and_then(Path::to_str)
        .unwrap_or_default()
}

/// Whether a file's content looks unfinished: its end is still zeros, or it stops before its
/// format's end. The rule for a single file and for each member of a set.
pub(super) fn content_hold(path: &Path, size: u64) -> Option<Hold> {
    if tail_is_zeros(path, size) {
        Some(Hold::Zeros)
    } else if preflight::is_cut_off(path).unwrap_or(false) {
        Some(Hold::CutOff)
    } else {
        None
    }
}

/// The last [`TAIL_LEN`] bytes are all zero: a file preallocated to its full size (by
/// `fallocate` or `ftruncate`, as some SMB clients do) and not filled to the end yet.
fn tail_is_zeros(path: &Path, size: u64) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    if size < TAIL_LEN {
        return false;
    }
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let mut tail = [0u8; TAIL_LEN as usize];
    file.seek(SeekFrom::Start(size - TAIL_LEN))
        .and_then(|_| file.read_exact(&mut tail))
        .is_ok_and(|()| tail.iter().all(|b| *b == 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::pipeline::intake::ReadyQueue;

    /// while an older one, seen just now, is still settling, so the oldest is queued first.
    #[tokio::test]
    async fn a_settled_file_waits_for_an_older_one_still_settling() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = dir.path().join("in");
        std::fs::create_dir(&inbox).unwrap();
        let text = format!(
            "[api]\nproject_id = \"U_RATE_2\"\nmachine_uid = \"m\"\ntoken = \"t\"\n[[inbox]]\npath = \"{0}/in\"\ntype = \"PASSPORT\"\ndone = \"{0}/done\"\nfailed = \"{0}/failed\"\nsettle = \"1s\"\n",
            dir.path().display()
        );
        let config = crate::config::Config::from_toml(&text, Path::new("/c.toml"), None).unwrap();
        let queue = Arc::new(ReadyQueue::default());
        let hold_limit = Duration::from_secs(300);
        let mut intake = Intake::new(Arc::new(config.inboxes), queue.clone(), None, hold_limit);
        let long_ago = SystemTime::now() - Duration::from_secs(3600);
        let (young, old) = (inbox.join("young.bin"), inbox.join("old.bin"));
        for (path, mtime) in [
            (&young, long_ago + Duration::from_secs(60)),
            (&old, long_ago),
        ] {
            std::fs::write(path, b"a scan, not a known format").unwrap();
            let file = std::fs::File::options().write(true).open(path).unwrap();
            file.set_modified(mtime).unwrap();
            intake.look_at(0, path);
        }
        // The younger one was listed first and has settled; the older one was seen just now.
        let settled = Instant::now() - Duration::from_secs(2);
        intake.candidates.get_mut(&young).unwrap().stable_since = settled;
        intake.check_candidates();
        assert!(queue.is_empty(), "the younger file waits for the older one");
        intake.candidates.get_mut(&old).unwrap().stable_since = settled;
        intake.check_candidates();
        assert_eq!(queue.pop().await.path, old);
        assert_eq!(queue.pop().await.path, young);
    }

    #[test]
    fn a_zero_tail_means_not_filled_yet() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(4096).unwrap();
        assert!(tail_is_zeros(&p, 4096));
        std::fs::write(&p, vec![7u8; 4096]).unwrap();
        assert!(!tail_is_zeros(&p, 4096));
        std::fs::write(&p, [0u8; 10]).unwrap();
        assert!(!tail_is_zeros(&p, 10), "tiny files are left to preflight");
    }
}
