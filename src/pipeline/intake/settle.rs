//! When a candidate is ready: the one settle rule and the one hold rule, for a single file
//! and a document set alike.
//!
//! A path becomes a candidate (a [`Record`] of the waiting files,
//! [`waiting`](super::waiting)): a file of an inbox ([`Intake::look_at`]), or a subfolder
//! of a `sets` inbox ([`sets`](super::sets)). What differs between the two kinds is their
//! [`Stamp`]'s ([`stamp`](super::stamp)); the rest is this one rule:
//!
//! - **Settled**: its stamp stayed unchanged for `settle` (taken by our own stat calls and
//!   listings; at least [`EMPTY_FILE_SETTLE`] for an empty file, or a set holding one), or a
//!   local writer closed it shortly ago and nothing changed since (a file only). A file of
//!   an inbox watched by events (a local filesystem: the file's times are this machine's
//!   clock) counts from its last change as its ctime and mtime tell, if that is earlier than
//!   its first sight: a backlog waiting since before the start is settled at once; a file
//!   on a network share, whose times come from another clock, from its first sight. Before
//!   it can settle at all it may wait ([`Wait`]: a set for something to offer and for its
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

use super::stamp::{FileStamp, Stamp, StampRef, Wait, file_stamp};
use super::waiting::{Record, Slot, State};

/// A candidate: a waiting file's record, with what the settle rule keeps of the few that need
/// more.
pub(super) type Candidate = Record<Particulars>;
use super::{Intake, warn_once};
use crate::config::InboxConfig;
use crate::pipeline::entries::Verdict;
use crate::pipeline::preflight;
use crate::pipeline::set::Listing;

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

/// How long the settle check may look at due candidates in one turn of the intake loop (a
/// first listing of 1,000,000 files is looked at over many turns, events heard in between).
const LOOK_SLICE: Duration = Duration::from_millis(20);

/// What events said of a candidate's writers, how long it has been held, what was said about
/// it, and a set's listing: what few records carry, boxed.
#[derive(Default)]
pub(super) struct Particulars {
    /// A set's listing as last taken (its stamp); None for a single file.
    listing: Option<Listing>,
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

/// How intake came to look at a path.
#[derive(Clone, Copy)]
pub(super) enum Seen<'a> {
    /// An entry of a listing of its folder.
    Listed(&'a std::fs::DirEntry),
    /// An event that may be a change: (closed, written), a writer's close or open.
    Event((bool, bool)),
    /// By its path alone.
    Named,
}

/// The age of the oldest candidate still settling that was seen only just now: settled ones
/// younger than it wait (mtime, name, inbox).
pub(super) type Gate = (SystemTime, String, usize);

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
    pub(super) fn look_at(&mut self, index: usize, path: &Path, seen: Seen<'_>) {
        let known =
            rel_name(&self.inboxes[index].path, path).and_then(|rel| self.waiting.find(index, rel));
        if known.is_some_and(|slot| self.waiting.get(slot).is_offered()) {
            return;
        }
        let rules = &self.watched[index].rules;
        let verdict = match seen {
            Seen::Listed(entry) => rules.judge_listed(path, entry),
            _ => rules.judge(path),
        };
        let event = match seen {
            Seen::Event(event) => Some(event),
            _ => None,
        };
        let (rel, meta) = match verdict {
            Verdict::Take { rel, meta } => (rel, meta),
            Verdict::Descend => return self.scan_dir(index, path),
            Verdict::Skip => return,
            Verdict::Gone => {
                if let Some(slot) = known {
                    self.forget(slot);
                }
                return;
            }
            Verdict::Refuse(why) => return self.warn_once(path, &format!("{why}; left in place")),
        };
        let stamp = Stamp::of_file(&meta);
        let slot = match known {
            Some(slot) => {
                // Gone while due and there again: its last look is still to come.
                if self.waiting.get(slot).state() == State::Gone {
                    self.waiting.set_state(slot, State::Due);
                }
                // A change can bring its settling forward (an empty file filled).
                let changed = self.waiting.get_mut(slot).observe(stamp, Instant::now());
                if changed && self.waiting.get(slot).state() == State::Settling {
                    self.note_settling(slot);
                }
                slot
            }
            None => {
                let inbox = &self.inboxes[index].path;
                tracing::info!(inbox = %inbox.display(), file = %rel, "detected");
                // On a local filesystem the file's own times are this machine's clock: one
                // unchanged since before it was seen counts from its last change.
                let changed_at = (!self.watched[index].polled).then(|| last_change(&meta));
                match self.add(index, &rel, stamp, changed_at) {
                    Some(slot) => slot,
                    None => return,
                }
            }
        };
        if let Some((closed, written)) = event {
            self.waiting
                .get_mut(slot)
                .heard_writer(path, closed, written);
            if closed {
                self.look_again_by(Instant::now() + CLOSE_GRACE);
            }
        }
    }

    /// A new candidate, settling from now, or from `changed_at` if that is earlier (its last
    /// change, as its file's times tell); None (with a WARN) if it cannot be kept.
    pub(super) fn add(
        &mut self,
        index: usize,
        name: &str,
        stamp: Stamp,
        changed_at: Option<SystemTime>,
    ) -> Option<Slot> {
        let record = match stamp {
            Stamp::File { size, mtime } => Candidate::new(size, mtime, None),
            Stamp::Set(listing) => {
                let (size, mtime) = (listing.size(), listing.newest());
                let particulars = Particulars {
                    listing: Some(*listing),
                    ..Particulars::default()
                };
                Candidate::new(size, mtime, Some(Box::new(particulars)))
            }
        };
        let Some(slot) = self.waiting.insert(index, name, record) else {
            let path = self.inboxes[index].path.join(name);
            self.warn_once(&path, "its name is too long to be kept; left in place");
            return None;
        };
        if let Some(quiet) = changed_at.and_then(|at| SystemTime::now().duration_since(at).ok())
            && let Some(since) = Instant::now().checked_sub(quiet)
        {
            self.waiting.get_mut(slot).set_stable_since(since);
        }
        self.note_settling(slot);
        Some(slot)
    }

    /// A candidate settling (new, or settling again): when it is due, and whether it holds
    /// back younger ones meanwhile.
    fn note_settling(&mut self, slot: Slot) {
        let record = self.waiting.get(slot);
        let inbox = &self.inboxes[record.inbox()];
        let due = record.due_at(inbox);
        // One seen just now holds others back until it settles, or until it no longer
        // counts as seen just now.
        let holds_back_until = record.settles_soon(inbox).then(|| {
            let seen_for = SystemTime::now()
                .duration_since(record.detected_at())
                .unwrap_or_default();
            Instant::now() + (inbox.settle + SETTLING_ORDER_WAIT).saturating_sub(seen_for)
        });
        self.look_again_by(due);
        if let Some(until) = holds_back_until {
            self.look_again_by(until);
            let (mtime, name, inbox) = self.waiting.age(slot);
            if self
                .gate
                .as_ref()
                .is_none_or(|(m, n, i)| (mtime, name, inbox) < (*m, n.as_str(), *i))
            {
                self.gate = Some((mtime, name.to_string(), inbox));
            }
        }
    }

    /// The settle check looks at the settling candidates again by `at`.
    fn look_again_by(&mut self, at: Instant) {
        if self.look_at_settling.is_none_or(|due| at < due) {
            self.look_at_settling = Some(at);
        }
    }

    /// Its file (or set folder) is gone: a candidate is forgotten (one due for its last look
    /// when that look comes); one offered is the claim's to find gone.
    fn forget(&mut self, slot: Slot) {
        match self.waiting.get(slot).state() {
            State::Settling => self.waiting.free(slot),
            State::Due => self.waiting.set_state(slot, State::Gone),
            _ => {}
        }
    }

    /// The settle check, at each tick: the candidates that may have settled get their last
    /// look (a fresh stamp, the holds) oldest first, and the ready ones go to the claim loop.
    /// A settled candidate waits while an older one seen just now is still settling (the
    /// files and sets of a first listing settle in listing order, not by age), so the oldest
    /// is always offered first.
    pub(super) fn check_candidates(&mut self) {
        let now = Instant::now();
        if self.look_at_settling.is_some_and(|at| at <= now) {
            self.find_settled(now);
        }
        self.look_at_due();
        self.hand_over();
        self.waiting.compact_if_sparse();
    }

    /// Whether due candidates wait for their last look that no older one holds back: the
    /// intake loop then turns at once rather than at the next tick.
    pub(super) fn has_due_to_look_at(&self) -> bool {
        self.waiting
            .peek_due()
            .is_some_and(|slot| !self.gated(slot) || self.waiting.get(slot).state() == State::Gone)
    }

    /// Whether an older candidate still settling holds this one back.
    fn gated(&self, slot: Slot) -> bool {
        self.gate.as_ref().is_some_and(|(m, n, i)| {
            let (mtime, name, inbox) = self.waiting.age(slot);
            (mtime, name, inbox) >= (*m, n.as_str(), *i)
        })
    }

    /// Goes over the settling candidates: a set's listing is taken again (events only say
    /// something below it may have changed), the settled ones become due, and the oldest of
    /// those that settle soon is the new gate. Only when one may have settled (a file's stamp
    /// is taken again at its last look, not at every tick), or every tick while a set settles.
    fn find_settled(&mut self, now: Instant) {
        let inboxes = self.inboxes.clone();
        self.gate = None;
        self.look_at_settling = None;
        let mut settled = Vec::new();
        let mut settling = Vec::new();
        for slot in 0..self.waiting.slot_count() {
            if self.waiting.get(slot).state() != State::Settling {
                continue;
            }
            if self.waiting.get(slot).is_set() {
                self.look_at_set_again(slot, now);
                if self.waiting.get(slot).state() == State::Free {
                    continue;
                }
                self.look_again_by(now + self.tick());
            }
            let record = self.waiting.get(slot);
            let inbox = &inboxes[record.inbox()];
            if record.stamp().wait(inbox).is_some() {
                continue;
            }
            if record.is_settled(inbox, now) {
                settled.push(slot);
            } else {
                settling.push(slot);
            }
        }
        self.waiting.push_due_all(settled);
        for slot in settling {
            self.note_settling(slot);
        }
    }

    /// A settling set's listing taken again, and what it waits for said.
    fn look_at_set_again(&mut self, slot: Slot, now: Instant) {
        let index = self.waiting.get(slot).inbox();
        let inbox = &self.inboxes[index];
        let path = inbox.path.join(self.waiting.name(slot));
        let record = self.waiting.get_mut(slot);
        let Some(stamp) = record.stamp().take_again(inbox, &path) else {
            return self.waiting.free(slot); // gone (renamed away, deleted)
        };
        record.observe(stamp, now);
        record.forget_writers_gone();
        if let Some(wait) = record.stamp().wait(inbox) {
            record.tell_wait(wait, inbox, &path, &mut self.warned);
        }
    }

    /// The last look at due candidates, oldest first, for at most [`LOOK_SLICE`]: each one
    /// still settled and not held goes to the ready heap.
    fn look_at_due(&mut self) {
        let started = Instant::now();
        while let Some(slot) = self.waiting.peek_due() {
            if self.waiting.get(slot).state() == State::Gone {
                self.waiting.pop_due();
                self.waiting.free(slot);
                continue;
            }
            if self.gated(slot) || started.elapsed() >= LOOK_SLICE {
                return;
            }
            self.waiting.pop_due();
            self.last_look(slot);
        }
    }

    /// A due candidate's stamp taken again and its holds checked: ready, settling again (it
    /// changed, or it is held), or forgotten (gone).
    fn last_look(&mut self, slot: Slot) {
        let now = Instant::now();
        let index = self.waiting.get(slot).inbox();
        let inbox = &self.inboxes[index];
        let name = self.waiting.name(slot).to_string();
        let path = inbox.path.join(&name);
        let record = self.waiting.get_mut(slot);
        let Some(stamp) = record.stamp().take_again(inbox, &path) else {
            return self.waiting.free(slot); // gone (renamed away, deleted)
        };
        record.observe(stamp, now);
        record.forget_writers_gone();
        if record.stamp().wait(inbox).is_some() || !record.is_settled(inbox, now) {
            return self.settle_again(slot);
        }
        if let Some((what, hold)) = record.hold(&path) {
            let since = *record.particulars().incomplete_since.get_or_insert(now);
            let (set, file) = log_names(record, &name, what.as_deref());
            if now.duration_since(since) < self.hold_limit {
                if record.tells(Told::Hold(what.clone(), hold)) {
                    tracing::info!(set, file, "{}", hold.waiting());
                }
                record.particulars().closed_at = None;
                record.set_stable_since(now);
                return self.settle_again(slot);
            }
            tracing::warn!(
                set,
                file,
                "held for {} without a change: {}",
                humantime::format_duration(self.hold_limit),
                hold.giving_up()
            );
        }
        self.waiting.push_ready(slot);
    }

    /// A candidate that changed, or is held, settles again.
    fn settle_again(&mut self, slot: Slot) {
        self.waiting.set_state(slot, State::Settling);
        self.note_settling(slot);
    }
}

impl Candidate {
    /// Its stamp as kept: a file's size and mtime, a set's listing.
    pub(super) fn stamp(&self) -> StampRef<'_> {
        match self.particulars.as_deref().and_then(|p| p.listing.as_ref()) {
            Some(listing) => StampRef::Set(listing),
            None => StampRef::File {
                size: self.size,
                mtime: self.mtime(),
            },
        }
    }

    /// Whether it is a set folder.
    pub(super) fn is_set(&self) -> bool {
        matches!(self.stamp(), StampRef::Set(_))
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

    /// A file renamed or deleted while open is no longer a writer of this candidate.
    fn forget_writers_gone(&mut self) {
        if let Some(more) = self.particulars.as_deref_mut() {
            more.open_for_write
                .retain(|writer| std::fs::symlink_metadata(writer).is_ok());
        }
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
        self.set_stable_since(Instant::now());
    }

    /// Its stamp taken now: a change restarts the settle time, and the hold limit counts from
    /// the last change. Whether it changed.
    fn observe(&mut self, stamp: Stamp, now: Instant) -> bool {
        if stamp.as_ref() == self.stamp() {
            return false;
        }
        match stamp {
            Stamp::File { size, mtime } => {
                self.size = size;
                self.set_mtime(mtime);
            }
            Stamp::Set(listing) => {
                self.size = listing.size();
                self.set_mtime(listing.newest());
                self.particulars().listing = Some(*listing);
            }
        }
        self.set_stable_since(now);
        if let Some(more) = self.particulars.as_deref_mut() {
            more.incomplete_since = None;
        }
        true
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
                    let set = rel_name(&inbox.path, path).unwrap_or_default();
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
        if let Some(name) = self.stamp().temporary_name() {
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
        for (what, file, size) in self.stamp().checked_files(path) {
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
            .duration_since(self.detected_at())
            .unwrap_or_default();
        !self.stamp().holds_an_empty_file()
            && self.stamp().wait(inbox).is_none()
            && self.open_for_write().is_empty()
            && self
                .particulars
                .as_deref()
                .is_none_or(|more| more.incomplete_since.is_none())
            && seen_for <= inbox.settle + SETTLING_ORDER_WAIT
    }

    /// Waits for nothing, and unchanged for `settle` (at least [`EMPTY_FILE_SETTLE`] for an
    /// empty file or a set holding one), or closed by a local writer and unchanged since.
    pub(super) fn is_settled(&self, inbox: &InboxConfig, now: Instant) -> bool {
        self.stamp().wait(inbox).is_none() && now >= self.due_at(inbox)
    }

    /// The earliest moment it may be settled unless something changes: `settle` after its
    /// last change (at least [`EMPTY_FILE_SETTLE`] for an empty file or a set holding one),
    /// or a short grace after a local writer closed it with nothing changed since (a file
    /// with something in it).
    pub(super) fn due_at(&self, inbox: &InboxConfig) -> Instant {
        let settle = inbox.settle;
        let needed = if self.stamp().holds_an_empty_file() {
            settle.max(EMPTY_FILE_SETTLE)
        } else {
            settle
        };
        let stable_since = self.stable_since();
        let quiet = stable_since + needed;
        let closed = self.particulars.as_deref().and_then(|more| more.closed_at);
        match closed {
            Some(closed) if self.stamp().finished_by_a_close() && stable_since <= closed => {
                quiet.min(closed + CLOSE_GRACE.min(settle))
            }
            _ => quiet,
        }
    }
}

#[cfg(test)]
impl Intake {
    /// As if the file `name` of inbox `index` had not changed since `at`.
    pub(super) fn settled_at(&mut self, index: usize, name: &str, at: Instant) {
        let slot = self.waiting.find(index, name).unwrap();
        self.waiting.get_mut(slot).set_stable_since(at);
        self.look_again_by(Instant::now());
    }
}

/// How a candidate is named in the log, as the fields `set` and `file` (one left out when
/// `None`): a file by its name; a set by its name, and the file in it a hold is about.
fn log_names<'a>(
    c: &Candidate,
    name: &'a str,
    what: Option<&'a str>,
) -> (Option<DisplayValue<&'a str>>, Option<DisplayValue<&'a str>>) {
    let (set, file) = match c.stamp() {
        StampRef::File { .. } => (None, Some(name)),
        StampRef::Set(_) => (Some(name), what),
    };
    (set.map(display), file.map(display))
}

/// A path's name below its inbox (`scan.jpg`, `2026/11/scan.jpg`, or a set's folder name):
/// a candidate's name in the queue, the journal and the outcome folders. None for a path
/// outside it, or not UTF-8 (intake refuses those names).
pub(super) fn rel_name<'a>(root: &Path, path: &'a Path) -> Option<&'a str> {
    path.strip_prefix(root).ok().and_then(Path::to_str)
}

/// A file's last change as its times tell: the later of its mtime and its ctime (moved by
/// every write and every change of its times, even one that sets the mtime back).
fn last_change(meta: &std::fs::Metadata) -> SystemTime {
    use std::os::unix::fs::MetadataExt;
    let ctime = u32::try_from(meta.ctime_nsec())
        .ok()
        .and_then(|nanos| {
            let secs = u64::try_from(meta.ctime()).ok()?;
            SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
        })
        .unwrap_or_else(SystemTime::now);
    let mtime = meta.modified().unwrap_or_else(|_| SystemTime::now());
    ctime.max(mtime)
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
    use crate::pipeline::intake::test_intake;

    /// A settled file waits while an older one, seen just now, is still settling, so the
    /// oldest is queued first.
    #[tokio::test]
    async fn a_settled_file_waits_for_an_older_one_still_settling() {
        let (_dir, inbox, queue, mut intake) = test_intake("1s");
        let long_ago = SystemTime::now() - Duration::from_secs(3600);
        let (young, old) = (inbox.join("young.bin"), inbox.join("old.bin"));
        for (path, mtime) in [
            (&young, long_ago + Duration::from_secs(60)),
            (&old, long_ago),
        ] {
            std::fs::write(path, b"a scan, not a known format").unwrap();
            let file = std::fs::File::options().write(true).open(path).unwrap();
            file.set_modified(mtime).unwrap();
            intake.look_at(0, path, Seen::Named);
        }
        // The younger one was listed first and has settled; the older one was seen just now.
        let settled = Instant::now() - Duration::from_secs(2);
        intake.settled_at(0, "young.bin", settled);
        intake.check_candidates();
        assert!(queue.is_empty(), "the younger file waits for the older one");
        intake.settled_at(0, "old.bin", settled);
        intake.check_candidates();
        assert_eq!(queue.pop().await.path, old);
        assert_eq!(queue.pop().await.path, young);
    }

    /// A file deleted while it waits for its last look (held back by an older one still
    /// settling) and written again before that look is still offered: its record, marked
    /// gone, is taken back rather than dropped when the look comes.
    #[tokio::test]
    async fn a_file_deleted_and_written_again_while_due_is_still_offered() {
        let (_dir, inbox, queue, mut intake) = test_intake("1s");
        let long_ago = SystemTime::now() - Duration::from_secs(3600);
        let (young, old) = (inbox.join("young.bin"), inbox.join("old.bin"));
        let write = |path: &Path, mtime: SystemTime| {
            std::fs::write(path, b"a scan, not a known format").unwrap();
            let file = std::fs::File::options().write(true).open(path).unwrap();
            file.set_modified(mtime).unwrap();
        };
        write(&young, long_ago + Duration::from_secs(60));
        write(&old, long_ago);
        intake.look_at(0, &young, Seen::Named);
        intake.look_at(0, &old, Seen::Named);
        let settled = Instant::now() - Duration::from_secs(2);
        intake.settled_at(0, "young.bin", settled);
        intake.check_candidates();
        assert!(queue.is_empty(), "due, held back by the older one");
        std::fs::remove_file(&young).unwrap();
        intake.look_at(0, &young, Seen::Named);
        write(&young, long_ago + Duration::from_secs(60));
        intake.look_at(0, &young, Seen::Named);
        intake.settled_at(0, "old.bin", settled);
        intake.check_candidates();
        assert_eq!(queue.len(), 2, "both offered");
        assert_eq!(queue.pop().await.path, old);
        assert_eq!(queue.pop().await.path, young);
    }

    /// On a local disk a file's times are this machine's clock: one unchanged for `settle`
    /// before intake first sees it (a backlog at start) is settled at once. A polled inbox (a
    /// network share, another machine's clock) waits `settle` from its first sight.
    #[tokio::test]
    async fn a_file_unchanged_since_before_it_was_seen_is_settled_at_once_on_a_local_disk_only() {
        let (_dir, inbox, queue, mut intake) = test_intake("300ms");
        let path = inbox.join("waiting-since-before.bin");
        std::fs::write(&path, b"a scan, not a known format").unwrap();
        std::thread::sleep(Duration::from_millis(400));
        intake.watched[0].polled = true;
        intake.look_at(0, &path, Seen::Named);
        intake.check_candidates();
        assert!(
            queue.is_empty(),
            "a polled inbox counts from the first sight"
        );
        let slot = intake.waiting.find(0, "waiting-since-before.bin").unwrap();
        intake.waiting.free(slot);
        intake.watched[0].polled = false;
        intake.look_at(0, &path, Seen::Named);
        intake.check_candidates();
        assert_eq!(queue.pop().await.path, path, "settled at its first sight");
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
