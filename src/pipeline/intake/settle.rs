//! When a candidate is ready: the one settle rule and the one hold rule, for a single file
//! and a document set alike.
//!
//! A path becomes a [`Candidate`]: a file of an inbox ([`Intake::look_at`]), or a subfolder
//! of a `sets` inbox ([`sets`](super::sets)). What differs between the two kinds is their
//! [`Stamp`]'s ([`stamp`](super::stamp)); the rest is this one rule:
//!
//! - **Settled**: its stamp stayed unchanged for `settle` (taken by our own stat calls and
//!   listings; at least [`EMPTY_FILE_SETTLE`] for an empty file, or a set holding one), or a
//!   local writer closed it shortly ago and nothing changed since (a file only). Before it can
//!   settle at all it may wait ([`Wait`]: a set for something to offer and for its
//!   `ready_file`), said once.
//! - **Held**: a settled candidate stays in the inbox while something in it looks unfinished
//!   ([`Hold`]): a name that holds it (a set's temporary name), a file a local writer has open
//!   for writing (seen by events: created or written to and not closed since), a file whose
//!   end is still the zeros of a preallocated file, or one that stops before its format's end
//!   ([`preflight::is_cut_off`]). A hold is said once at INFO while it lasts (not again at
//!   every change); it ends when the candidate is finished, or with a WARN once it has been
//!   held for `[daemon] hold_limit` without a change (a set still holding a temporary name
//!   then goes on only to be refused whole by preflight).
//! - **Offered**: ready candidates go to the [`ReadyQueue`](super::ReadyQueue) oldest first
//!   (mtime, then name, across all inboxes and both kinds), and a settled one waits while an
//!   older one seen just now is still settling.
//!
//! Which entries count at all is [`entries`](crate::pipeline::entries)' rule.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use tracing::field::{DisplayValue, display};

use super::stamp::{FileStamp, Stamp, Wait, file_stamp};
use super::{Intake, ReadyFile, warn_once};
use crate::config::InboxConfig;
use crate::pipeline::entries::Verdict;
use crate::pipeline::preflight;

/// An empty file is often a scanner that has created its output and not written yet: it must
/// stay unchanged at least this long before it is taken (and then refused by preflight).
pub(super) const EMPTY_FILE_SETTLE: Duration = Duration::from_secs(30);

/// A file closed by a local writer goes once unchanged this long after the close (or after
/// `settle`, if shorter).
pub(super) const CLOSE_GRACE: Duration = Duration::from_millis(200);

/// How long after its first sight an older candidate that is still settling holds back
/// younger settled ones (a first listing of a large backlog takes a while).
const SETTLING_ORDER_WAIT: Duration = Duration::from_secs(5);

/// Bytes at the end of a file that, all zero, mean "preallocated and not filled yet".
const TAIL_LEN: u64 = 512;

/// A file or a set seen in an inbox and not yet ready. A backlog of 100,000 files waits here
/// at start, so what a plain file needs is kept small and the rest is boxed
/// ([`Particulars`]).
pub(super) struct Candidate {
    /// Its inbox, by index.
    inbox: usize,
    /// Its stamp as last taken: a file's size and mtime, a set's listing.
    stamp: Stamp,
    /// Last time its stamp changed, or an event said something below a set folder did (or
    /// first sight).
    stable_since: Instant,
    detected_at: SystemTime,
    /// What few candidates carry (a writer heard, a hold, what was said); None for a file
    /// nothing was heard or said about.
    particulars: Option<Box<Particulars>>,
}

/// What events said of a candidate's writers, how long it has been held, and what was said
/// about it.
#[derive(Default)]
struct Particulars {
    /// A local writer closed (close-after-write event) something in it at this moment.
    closed_at: Option<Instant>,
    /// What events say a local writer has open: the file itself, or paths below a set folder
    /// (`p2.png.tmp`, `inner/a.png`; any name counts, sent or not), each created or written
    /// to and not closed since. Never set for a polled inbox (no events there).
    open_for_write: Vec<PathBuf>,
    /// Held as unfinished (see [`Hold`]) since then, without a change since.
    incomplete_since: Option<Instant>,
    /// The file last judged unfinished by its content: it is read again only once its stamp
    /// changed.
    judged: Option<Judged>,
    /// The wait or hold last said at INFO: said once while it lasts (a file copied in several
    /// goes, or a temporary file in a set growing chunk by chunk for an hour, is said once,
    /// not at every change).
    told: Option<Told>,
}

/// A file whose content looked unfinished, and its stamp then.
struct Judged {
    path: PathBuf,
    stamp: FileStamp,
    /// What it is in its candidate (`None`: the candidate itself).
    what: Option<String>,
    hold: Hold,
}

/// What a candidate said it waits for.
#[derive(PartialEq, Eq)]
enum Told {
    ReadyFile,
    Hold(Option<String>, Hold),
}

/// Why a settled candidate is held in the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hold {
    /// A local writer has it (or a file in it) open for writing.
    Open,
    /// Its end is still zeros: a writer that reserved the full size is still filling it.
    Zeros,
    /// It stops before its format's end: still being written or copied, or cut off.
    CutOff,
    /// A set folder holds a [temporary name](crate::pipeline::entries::is_temporary_name): a file still arriving.
    Temporary,
}

impl Hold {
    /// Said once at INFO while the hold lasts.
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
    /// A path in an inbox (not a sets inbox) may be new or changed: make it a candidate,
    /// descend into it (a folder of a recursive inbox), or leave it alone (and say why, once).
    /// `event` is (closed, written) for an event that may be a change: a writer's open/close.
    pub(super) fn look_at(&mut self, index: usize, path: &Path, event: Option<(bool, bool)>) {
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
        let stamp = Stamp::of_file(&meta);
        let candidate = match self.candidates.get_mut(path) {
            Some(c) => {
                c.observe(stamp, Instant::now());
                c
            }
            None => {
                let inbox = &self.inboxes[index].path;
                tracing::info!(inbox = %inbox.display(), file = %rel, "detected");
                let candidate = Candidate::new(index, stamp);
                self.candidates
                    .entry(path.to_path_buf())
                    .or_insert(candidate)
            }
        };
        if let Some((closed, written)) = event {
            candidate.heard_writer(path, closed, written);
        }
    }

    /// Takes every candidate's stamp again; the ones that are ready go to the queue, oldest
    /// first (mtime, then name, across all inboxes). A settled candidate waits while an older
    /// one seen just now is still settling (the files and sets of a first listing settle in
    /// listing order, not by age), so the oldest is always queued first.
    pub(super) fn check_candidates(&mut self) {
        let now = Instant::now();
        let mut any_settled = false;
        // The oldest candidate still settling, as (mtime, name): younger ones wait for it.
        let mut oldest_settling: Option<(SystemTime, String)> = None;
        let inboxes = self.inboxes.clone();
        fn age<'a>(
            inboxes: &[InboxConfig],
            c: &Candidate,
            path: &'a Path,
        ) -> (SystemTime, &'a str) {
            (c.stamp.mtime(), rel_name(&inboxes[c.inbox].path, path))
        }
        let warned = &mut self.warned;
        self.candidates.retain(|path, c| {
            let inbox = &inboxes[c.inbox];
            let Some(stamp) = c.stamp.take_again(inbox, path) else {
                return false; // gone (renamed away, deleted)
            };
            c.observe(stamp, now);
            // A file renamed or deleted while open is no longer a writer of this candidate.
            if let Some(more) = c.particulars.as_deref_mut() {
                more.open_for_write
                    .retain(|writer| std::fs::symlink_metadata(writer).is_ok());
            }
            if let Some(wait) = c.stamp.wait(inbox) {
                c.tell_wait(wait, inbox, path, warned);
            } else if c.is_settled(inbox, now) {
                any_settled = true;
            } else if c.settles_soon(inbox) {
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
            c.is_settled(&inboxes[c.inbox], now)
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

    /// A settled candidate goes to the queue unless something in it looks unfinished
    /// ([`Hold`]); then it is held, up to `hold_limit` without a change, and looked at again
    /// after each settle.
    fn offer(&mut self, path: PathBuf, mut c: Candidate, now: Instant) {
        let name = rel_name(&self.inboxes[c.inbox].path, &path).to_string();
        if let Some((what, hold)) = c.hold(&path) {
            let since = *c.particulars().incomplete_since.get_or_insert(now);
            let (set, file) = log_names(&c, &name, what.as_deref());
            if now.duration_since(since) < self.hold_limit {
                if c.tells(Told::Hold(what.clone(), hold)) {
                    tracing::info!(set, file, "{}", hold.waiting());
                }
                c.stable_since = now;
                c.particulars().closed_at = None;
                self.candidates.insert(path, c);
                return;
            }
            tracing::warn!(
                set,
                file,
                "held for {} without a change: {}",
                humantime::format_duration(self.hold_limit),
                hold.giving_up()
            );
        }
        self.queue.push(ReadyFile {
            inbox: c.inbox,
            path,
            name,
            size: c.stamp.size(),
            mtime: c.stamp.mtime(),
            detected_at: c.detected_at,
        });
    }
}

impl Candidate {
    /// A candidate first seen now, with its stamp.
    pub(super) fn new(inbox: usize, stamp: Stamp) -> Candidate {
        Candidate {
            inbox,
            stamp,
            stable_since: Instant::now(),
            detected_at: SystemTime::now(),
            particulars: None,
        }
    }

    /// Its [`Particulars`], made when first needed.
    fn particulars(&mut self) -> &mut Particulars {
        self.particulars.get_or_insert_default()
    }

    /// What a local writer has open in it (see [`Particulars::open_for_write`]).
    fn open_for_write(&self) -> &[PathBuf] {
        self.particulars
            .as_deref()
            .map_or(&[], |more| more.open_for_write.as_slice())
    }

    /// An event from a local writer on `writer` (the file itself, or a path below the set
    /// folder): a close after writing (`closed`), or a create or a write (`written`), which
    /// means it is open for writing until the close.
    pub(super) fn heard_writer(&mut self, writer: &Path, closed: bool, written: bool) {
        if closed {
            let more = self.particulars();
            more.closed_at = Some(Instant::now());
            more.open_for_write.retain(|open| open != writer);
        } else if written && !self.open_for_write().iter().any(|open| open == writer) {
            self.particulars().open_for_write.push(writer.to_path_buf());
        }
    }

    /// An event says something below a set folder may have changed: the settle time
    /// restarts. (A set is not listed at every event, as a file is stat'ed at each of its
    /// own: its listing is taken at the next check.)
    pub(super) fn heard_change(&mut self) {
        self.stable_since = Instant::now();
    }

    /// Its stamp taken now: a change restarts the settle time, and the hold limit counts from
    /// the last change.
    fn observe(&mut self, stamp: Stamp, now: Instant) {
        if stamp != self.stamp {
            self.stamp = stamp;
            self.stable_since = now;
            if let Some(more) = self.particulars.as_deref_mut() {
                more.incomplete_since = None;
            }
        }
    }

    /// Whether `told` is new (not what was said last), and remembers it as said.
    fn tells(&mut self, told: Told) -> bool {
        let more = self.particulars();
        if more.told.as_ref() == Some(&told) {
            return false;
        }
        more.told = Some(told);
        true
    }

    /// Says what it waits for: a ready file once at INFO while it waits, one that does not
    /// count as one at WARN once per path.
    fn tell_wait(
        &mut self,
        wait: Wait,
        inbox: &InboxConfig,
        path: &Path,
        warned: &mut HashSet<PathBuf>,
    ) {
        let ready_file = inbox.ready_file.as_deref().unwrap_or_default();
        match wait {
            Wait::Nothing => {}
            Wait::ReadyFile => {
                if self.tells(Told::ReadyFile) {
                    let set = rel_name(&inbox.path, path);
                    tracing::info!(set = %set, "waiting for its ready file {ready_file}");
                }
            }
            Wait::ReadyFileRefused(why) => warn_once(
                warned,
                &path.join(ready_file),
                &format!(
                    "{why}: only a regular file counts as the ready file; the set waits until {ready_file} is one (replace it with an empty file)"
                ),
            ),
        }
    }

    /// Why this settled candidate should stay in the inbox for now, and what in it (`None`:
    /// the candidate itself), if it should: a name that holds it, a file a writer has open,
    /// a file whose content looks unfinished.
    fn hold(&mut self, path: &Path) -> Option<(Option<String>, Hold)> {
        if let Some(name) = self.stamp.temporary_name() {
            return Some((Some(name.to_string()), Hold::Temporary));
        }
        if let Some(writer) = self.open_for_write().first() {
            let below = writer.strip_prefix(path).ok();
            let what = below
                .filter(|below| !below.as_os_str().is_empty())
                .map(|below| below.to_string_lossy().into_owned());
            return Some((what, Hold::Open));
        }
        self.content_hold(path)
    }

    /// The first of its files whose content looks unfinished ([`content_hold`]). A file is
    /// read only when it changed since it was last judged unfinished.
    fn content_hold(&mut self, path: &Path) -> Option<(Option<String>, Hold)> {
        let judged = self.particulars.as_deref().and_then(|m| m.judged.as_ref());
        if let Some(judged) = judged
            && file_stamp(&judged.path) == Some(judged.stamp)
        {
            return Some((judged.what.clone(), judged.hold));
        }
        if let Some(more) = self.particulars.as_deref_mut() {
            more.judged = None;
        }
        for (what, file, size) in self.stamp.checked_files(path) {
            let stamp = file_stamp(&file);
            if let Some(hold) = content_hold(&file, size) {
                if let Some(stamp) = stamp {
                    self.particulars().judged = Some(Judged {
                        path: file,
                        stamp,
                        what: what.clone(),
                        hold,
                    });
                }
                return Some((what, hold));
            }
        }
        None
    }

    /// Not settled yet, but seen only just now and not changing: a file or set of a first
    /// listing (or a copy with its old mtimes kept) that settles within `settle`. Those being
    /// written have a fresh mtime; waiting, held and empty ones may wait long: those never
    /// hold back others.
    fn settles_soon(&self, inbox: &InboxConfig) -> bool {
        let seen_for = SystemTime::now()
            .duration_since(self.detected_at)
            .unwrap_or_default();
        !self.stamp.holds_an_empty_file()
            && self.stamp.wait(inbox).is_none()
            && self.open_for_write().is_empty()
            && self
                .particulars
                .as_deref()
                .is_none_or(|more| more.incomplete_since.is_none())
            && seen_for <= inbox.settle + SETTLING_ORDER_WAIT
    }

    /// Waits for nothing, and unchanged for `settle` (at least [`EMPTY_FILE_SETTLE`] for an
    /// empty file or a set holding one), or closed by a local writer and unchanged since.
    fn is_settled(&self, inbox: &InboxConfig, now: Instant) -> bool {
        if self.stamp.wait(inbox).is_some() {
            return false;
        }
        let settle = inbox.settle;
        let needed = if self.stamp.holds_an_empty_file() {
            settle.max(EMPTY_FILE_SETTLE)
        } else {
            settle
        };
        let quiet = now.duration_since(self.stable_since);
        let closed_and_quiet = self.stamp.finished_by_a_close()
            && self
                .particulars
                .as_deref()
                .and_then(|more| more.closed_at)
                .is_some_and(|closed| {
                    self.stable_since <= closed
                        && now.duration_since(closed) >= CLOSE_GRACE.min(settle)
                });
        quiet >= needed || closed_and_quiet
    }
}

/// How a candidate is named in the log, as the fields `set` and `file` (one left out when
/// `None`): a file by its name; a set by its name, and the file in it a hold is about.
fn log_names<'a>(
    c: &Candidate,
    name: &'a str,
    what: Option<&'a str>,
) -> (Option<DisplayValue<&'a str>>, Option<DisplayValue<&'a str>>) {
    let (set, file) = match c.stamp {
        Stamp::File { .. } => (None, Some(name)),
        Stamp::Set(_) => (Some(name), what),
    };
    (set.map(display), file.map(display))
}

/// A candidate's path below its inbox (`scan.jpg`, `2026/11/scan.jpg`, or a set's folder
/// name): its name in the queue, the journal and the outcome folders. Candidates are always
/// UTF-8 below their inbox (intake refuses other names).
fn rel_name<'a>(root: &Path, path: &'a Path) -> &'a str {
    path.strip_prefix(root)
        .ok()
        .and_then(Path::to_str)
        .unwrap_or_default()
}

/// Whether a file's content looks unfinished: its end is still zeros, or it stops before its
/// format's end. The rule for a single file and for each member of a set.
fn content_hold(path: &Path, size: u64) -> Option<Hold> {
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
            intake.look_at(0, path, None);
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

    /// A backlog of 100,000 files waits in the candidate table at start: a plain file's
    /// entry holds its stamp and times, and what few candidates carry is boxed.
    #[test]
    fn a_waiting_file_takes_at_most_72_bytes_of_the_candidate_table_besides_its_path() {
        let size = std::mem::size_of::<Candidate>();
        assert!(size <= 72, "a candidate takes {size} bytes");
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
