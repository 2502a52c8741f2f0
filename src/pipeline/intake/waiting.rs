//! The waiting files: one compact record per file (or set) of the inboxes, from its first
//! sight until its claim is over, kept by the intake thread.
//!
//! A backlog of 1,000,000 files waits here at start, so a record is small (56 bytes, what a
//! plain file needs; what few records carry, the settle rule's particulars, is boxed), every
//! name (the path below its inbox) lives in one shared buffer, the index by (inbox, name)
//! holds record numbers only, and the two orders a record waits in are heaps of record
//! numbers, oldest first (mtime, then name, then inbox): **due** (settled, for a last look
//! before it is offered) and **ready** (for the claim loop). A record goes
//! [`State::Settling`] → `Due` → `Ready` → `Handed` and is freed when its claim is over or
//! its file goes away. Which way it goes is [`settle`](super::settle)'s rule; this module
//! only keeps.

use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant, SystemTime};

use hashbrown::HashTable;

/// A record's number in the store.
pub(super) type Slot = u32;

/// Where a record is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Not in use (on the free list).
    Free,
    /// Seen and not settled yet: looked at again when it may be.
    Settling,
    /// Settled, in the due heap for its last look (a fresh stamp, the holds) before the
    /// ready heap.
    Due,
    /// Went away while due: freed when the due heap gives it back.
    Gone,
    /// Looked at and ready: in the ready heap.
    Ready,
    /// Handed to the claim loop (in the hand-off, or being claimed): freed when the claim is
    /// over.
    Handed,
}

const STATES: usize = 6;

/// One waiting file or set. Its name is in the store's buffer; times are kept as integers
/// (a `SystemTime` or an `Instant` takes 16 bytes). `P` is what few records carry, boxed (the
/// settle rule's particulars: a set's listing, writers heard, a hold, what was said).
pub(super) struct Record<P> {
    name_at: u32,
    mtime_nanos: u32,
    name_len: u16,
    inbox: u16,
    state: State,
    /// Its size: the file's, or the total of a set's members.
    pub(super) size: u64,
    /// Its mtime (a set's: the newest of anything in it), seconds from the epoch.
    mtime_secs: i64,
    /// Microseconds from [`clock_start`]: the last time its stamp changed (or first sight).
    stable_us: i64,
    /// Microseconds from the epoch: when intake first saw it.
    detected_us: u64,
    /// What few records carry.
    pub(super) particulars: Option<Box<P>>,
}

impl<P> Record<P> {
    /// A record first seen now, of `size` and `mtime` (its name and inbox are the store's to
    /// set).
    pub(super) fn new(size: u64, mtime: SystemTime, particulars: Option<Box<P>>) -> Self {
        let (mtime_secs, mtime_nanos) = time_parts(mtime);
        let detected_us = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        Record {
            name_at: 0,
            mtime_nanos,
            name_len: 0,
            inbox: 0,
            state: State::Free,
            size,
            mtime_secs,
            stable_us: 0, // set by the store at insert
            detected_us,
            particulars,
        }
    }

    /// Index of its inbox in the config.
    pub(super) fn inbox(&self) -> usize {
        usize::from(self.inbox)
    }

    pub(super) fn state(&self) -> State {
        self.state
    }

    /// Its mtime (a set's: the newest of anything in it).
    pub(super) fn mtime(&self) -> SystemTime {
        from_time_parts(self.mtime_secs, self.mtime_nanos)
    }

    pub(super) fn set_mtime(&mut self, mtime: SystemTime) {
        (self.mtime_secs, self.mtime_nanos) = time_parts(mtime);
    }

    /// When intake first saw it.
    pub(super) fn detected_at(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_micros(self.detected_us)
    }

    /// When its stamp last changed (or first sight).
    pub(super) fn stable_since(&self) -> Instant {
        let start = clock_start();
        let from_start = Duration::from_micros(self.stable_us.unsigned_abs());
        if self.stable_us >= 0 {
            start + from_start
        } else {
            start.checked_sub(from_start).unwrap_or(start)
        }
    }

    /// Its stamp changed (or something said it may have) at `at`.
    pub(super) fn set_stable_since(&mut self, at: Instant) {
        let start = clock_start();
        // Rounded to the later microsecond: a settle time is never counted short.
        self.stable_us = match at.checked_duration_since(start) {
            Some(d) => (d.as_micros() + u128::from(d.subsec_nanos() % 1000 != 0)) as i64,
            None => -(start.duration_since(at).as_micros() as i64),
        };
    }

    /// Whether intake takes the path as already offered (ready, or handed to a claim).
    pub(super) fn is_offered(&self) -> bool {
        matches!(self.state, State::Ready | State::Handed)
    }
}

/// What records' settle times count from (the first use in the process).
fn clock_start() -> Instant {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// A `SystemTime` as (seconds from the epoch, nanoseconds), exactly, before the epoch too.
fn time_parts(t: SystemTime) -> (i64, u32) {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            match d.subsec_nanos() {
                0 => (-(d.as_secs() as i64), 0),
                n => (-(d.as_secs() as i64) - 1, 1_000_000_000 - n),
            }
        }
    }
}

fn from_time_parts(secs: i64, nanos: u32) -> SystemTime {
    if secs >= 0 {
        SystemTime::UNIX_EPOCH + Duration::new(secs as u64, nanos)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
            + Duration::from_nanos(u64::from(nanos))
    }
}

/// The waiting files of one intake.
pub(super) struct Waiting<P> {
    records: Vec<Record<P>>,
    free: Vec<Slot>,
    /// Every record's name, one after another; freed ones are garbage until a compaction.
    names: String,
    garbage: usize,
    /// (inbox, name) → record.
    index: HashTable<Slot>,
    hasher: RandomState,
    /// Due records, oldest first (a binary heap).
    due: Vec<Slot>,
    /// Ready records, oldest first (a binary heap).
    ready: Vec<Slot>,
    /// Records per state.
    counts: [usize; STATES],
}

impl<P> Default for Waiting<P> {
    fn default() -> Self {
        Waiting {
            records: Vec::new(),
            free: Vec::new(),
            names: String::new(),
            garbage: 0,
            index: HashTable::new(),
            hasher: RandomState::new(),
            due: Vec::new(),
            ready: Vec::new(),
            counts: [0; STATES],
        }
    }
}

/// The age order of records: mtime, then name, then inbox (oldest first).
struct Ages<'a, P> {
    records: &'a [Record<P>],
    names: &'a str,
}

impl<'a, P> Ages<'a, P> {
    fn key(&self, slot: Slot) -> (i64, u32, &'a str, u16) {
        let r = &self.records[slot as usize];
        (r.mtime_secs, r.mtime_nanos, name_in(self.names, r), r.inbox)
    }

    fn older(&self, a: Slot, b: Slot) -> bool {
        self.key(a) < self.key(b)
    }
}

fn name_in<'a, P>(names: &'a str, r: &Record<P>) -> &'a str {
    let at = r.name_at as usize;
    &names[at..at + usize::from(r.name_len)]
}

fn key_hash(hasher: &RandomState, inbox: u16, name: &str) -> u64 {
    hasher.hash_one((inbox, name))
}

impl<P> Waiting<P> {
    /// The record of `name` in inbox `inbox`, if one is waiting.
    pub(super) fn find(&self, inbox: usize, name: &str) -> Option<Slot> {
        let inbox = u16::try_from(inbox).ok()?;
        let hash = key_hash(&self.hasher, inbox, name);
        self.index
            .find(hash, |&s| {
                let r = &self.records[s as usize];
                r.inbox == inbox && name_in(&self.names, r) == name
            })
            .copied()
    }

    /// Adds `record` as `name` of inbox `inbox`, settling since now. None when the name cannot
    /// be kept (longer than 65,535 bytes, more than 4 GB of names, inbox number above 65,535):
    /// never on Linux, whose paths are at most 4,096 bytes.
    pub(super) fn insert(
        &mut self,
        inbox: usize,
        name: &str,
        mut record: Record<P>,
    ) -> Option<Slot> {
        debug_assert!(self.find(inbox, name).is_none(), "inserted twice: {name}");
        record.inbox = u16::try_from(inbox).ok()?;
        record.name_len = u16::try_from(name.len()).ok()?;
        record.name_at = u32::try_from(self.names.len()).ok()?;
        u32::try_from(self.names.len() + name.len()).ok()?;
        self.names.push_str(name);
        record.set_stable_since(Instant::now());
        record.state = State::Settling;
        self.counts[State::Settling as usize] += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.records[slot as usize] = record;
                slot
            }
            None => {
                self.records.push(record);
                (self.records.len() - 1) as Slot
            }
        };
        let hash = key_hash(&self.hasher, self.records[slot as usize].inbox, name);
        let (records, names, hasher) = (&self.records, &self.names, &self.hasher);
        self.index.insert_unique(hash, slot, |&s| {
            let r = &records[s as usize];
            key_hash(hasher, r.inbox, name_in(names, r))
        });
        Some(slot)
    }

    /// Forgets a record (its file went away, or its claim is over).
    pub(super) fn free(&mut self, slot: Slot) {
        let r = &self.records[slot as usize];
        if r.state == State::Free {
            return;
        }
        let hash = key_hash(&self.hasher, r.inbox, name_in(&self.names, r));
        if let Ok(entry) = self.index.find_entry(hash, |&s| s == slot) {
            entry.remove();
        }
        self.garbage += usize::from(r.name_len);
        self.set_state(slot, State::Free);
        let r = &mut self.records[slot as usize];
        r.particulars = None;
        r.name_len = 0;
        self.free.push(slot);
    }

    pub(super) fn get(&self, slot: Slot) -> &Record<P> {
        &self.records[slot as usize]
    }

    pub(super) fn get_mut(&mut self, slot: Slot) -> &mut Record<P> {
        &mut self.records[slot as usize]
    }

    /// Its name: its path below its inbox.
    pub(super) fn name(&self, slot: Slot) -> &str {
        name_in(&self.names, &self.records[slot as usize])
    }

    /// Moves a record to `state` (the due and ready heaps are [`Waiting::push_due_all`]'s
    /// and [`Waiting::push_ready`]'s).
    pub(super) fn set_state(&mut self, slot: Slot, state: State) {
        let r = &mut self.records[slot as usize];
        self.counts[r.state as usize] -= usize::from(r.state != State::Free);
        self.counts[state as usize] += usize::from(state != State::Free);
        r.state = state;
    }

    /// How many records are in `state`.
    pub(super) fn count(&self, state: State) -> usize {
        self.counts[state as usize]
    }

    /// Records waiting (any state but free).
    pub(super) fn len(&self) -> usize {
        self.records.len() - self.free.len()
    }

    /// Record numbers in use or free: every record is below it.
    pub(super) fn slot_count(&self) -> Slot {
        self.records.len() as Slot
    }

    /// The age key of a record: (mtime, name, inbox), oldest least.
    pub(super) fn age(&self, slot: Slot) -> (SystemTime, &str, usize) {
        let r = &self.records[slot as usize];
        (r.mtime(), self.name(slot), r.inbox())
    }

    /// Puts settled records in the due heap: many at once (a first listing settles all at
    /// once) by one O(n) heapify, a few joining a large heap one by one.
    pub(super) fn push_due_all(&mut self, slots: Vec<Slot>) {
        let many = slots.len() >= self.due.len() / 8;
        for &slot in &slots {
            self.set_state(slot, State::Due);
        }
        let ages = Ages {
            records: &self.records,
            names: &self.names,
        };
        if many {
            self.due.extend(slots);
            heap::heapify(&mut self.due, |a, b| ages.older(a, b));
        } else {
            for slot in slots {
                heap::push(&mut self.due, slot, |a, b| ages.older(a, b));
            }
        }
    }

    /// The oldest due record, without taking it.
    pub(super) fn peek_due(&self) -> Option<Slot> {
        self.due.first().copied()
    }

    /// Takes the oldest due record.
    pub(super) fn pop_due(&mut self) -> Option<Slot> {
        pop_oldest(&mut self.due, &self.records, &self.names)
    }

    /// Puts a record in the ready heap.
    pub(super) fn push_ready(&mut self, slot: Slot) {
        self.set_state(slot, State::Ready);
        let ages = Ages {
            records: &self.records,
            names: &self.names,
        };
        heap::push(&mut self.ready, slot, |a, b| ages.older(a, b));
    }

    /// The oldest ready record, without taking it.
    pub(super) fn peek_ready(&self) -> Option<Slot> {
        self.ready.first().copied()
    }

    /// Takes the oldest ready record (its state is the caller's to set).
    pub(super) fn pop_ready(&mut self) -> Option<Slot> {
        pop_oldest(&mut self.ready, &self.records, &self.names)
    }

    /// Gives memory back once most records are gone: freed records are squeezed out (their
    /// numbers in the index and the heaps renumbered) and the names buffer rewritten, in
    /// place of the old ones so as not to hold both. A drained backlog of 1,000,000 files
    /// leaves no 56 MB table behind.
    pub(super) fn compact_if_sparse(&mut self) {
        let live = self.len();
        let sparse = self.free.len() > 1024 && self.free.len() > 3 * live;
        let wasteful =
            self.garbage > 64 * 1024 && self.garbage > 3 * (self.names.len() - self.garbage);
        if sparse || wasteful {
            self.compact();
        }
    }

    fn compact(&mut self) {
        let mut renumbered = vec![Slot::MAX; self.records.len()];
        let mut names = String::with_capacity(self.names.len() - self.garbage);
        let mut kept = 0usize;
        for (old, new) in renumbered.iter_mut().enumerate() {
            if self.records[old].state == State::Free {
                continue;
            }
            self.records.swap(kept, old);
            let r = &mut self.records[kept];
            let name = name_in(&self.names, r);
            r.name_at = names.len() as u32;
            names.push_str(name);
            *new = kept as Slot;
            kept += 1;
        }
        self.records.truncate(kept);
        self.records.shrink_to_fit();
        self.names = names;
        self.garbage = 0;
        self.free = Vec::new();
        // Names and inboxes are unchanged, so are their hashes: renumber in place.
        for slot in self
            .index
            .iter_mut()
            .chain(&mut self.due)
            .chain(&mut self.ready)
        {
            *slot = renumbered[*slot as usize];
        }
        let (records, names, hasher) = (&self.records, &self.names, &self.hasher);
        self.index.shrink_to_fit(|&s| {
            let r = &records[s as usize];
            key_hash(hasher, r.inbox, name_in(names, r))
        });
    }
}

/// Takes the oldest record of an age heap (due or ready); a heap drained to a small part of
/// its capacity gives the rest back.
fn pop_oldest<P>(heap: &mut Vec<Slot>, records: &[Record<P>], names: &str) -> Option<Slot> {
    let ages = Ages { records, names };
    let slot = heap::pop(heap, |a, b| ages.older(a, b));
    if heap.capacity() > 2 * heap.len() + 4096 {
        heap.shrink_to_fit();
    }
    slot
}

/// A binary min-heap of record numbers under an order given by a closure (the standard one
/// needs the order in its elements: 4 bytes per record here, against 60 or more).
mod heap {
    use super::Slot;

    pub(super) fn push(heap: &mut Vec<Slot>, slot: Slot, less: impl Fn(Slot, Slot) -> bool) {
        heap.push(slot);
        let last = heap.len() - 1;
        sift_up(heap, last, &less);
    }

    pub(super) fn pop(heap: &mut Vec<Slot>, less: impl Fn(Slot, Slot) -> bool) -> Option<Slot> {
        let last = heap.pop()?;
        let Some(&top) = heap.first() else {
            return Some(last);
        };
        heap[0] = last;
        sift_down(heap, 0, &less);
        Some(top)
    }

    pub(super) fn heapify(heap: &mut [Slot], less: impl Fn(Slot, Slot) -> bool) {
        for at in (0..heap.len() / 2).rev() {
            sift_down(heap, at, &less);
        }
    }

    fn sift_up(heap: &mut [Slot], mut at: usize, less: &impl Fn(Slot, Slot) -> bool) {
        while at > 0 {
            let parent = (at - 1) / 2;
            if !less(heap[at], heap[parent]) {
                break;
            }
            heap.swap(at, parent);
            at = parent;
        }
    }

    fn sift_down(heap: &mut [Slot], mut at: usize, less: &impl Fn(Slot, Slot) -> bool) {
        loop {
            let (left, right) = (2 * at + 1, 2 * at + 2);
            let mut least = at;
            if left < heap.len() && less(heap[left], heap[least]) {
                least = left;
            }
            if right < heap.len() && less(heap[right], heap[least]) {
                least = right;
            }
            if least == at {
                break;
            }
            heap.swap(at, least);
            at = least;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(mtime_secs: u64) -> Record<()> {
        Record::new(
            1,
            SystemTime::UNIX_EPOCH + Duration::from_secs(mtime_secs),
            None,
        )
    }

    /// A backlog of 1,000,000 files waits here at start: a plain file's record holds its
    /// name's place, stamp and times in 56 bytes (a `PathBuf` key and 16-byte times took 136).
    #[test]
    fn a_waiting_file_takes_56_bytes_besides_its_name() {
        let size = std::mem::size_of::<Record<()>>();
        assert!(size <= 56, "a record takes {size} bytes");
    }

    #[test]
    fn the_age_order_is_mtime_then_name_then_inbox() {
        let mut w = Waiting::<()>::default();
        let mut slots = Vec::new();
        for (inbox, name, mtime) in [
            (1, "b", 5),
            (0, "b", 5),
            (0, "a", 5),
            (0, "z", 4),
            (1, "a", 6),
        ] {
            slots.push(w.insert(inbox, name, record(mtime)).unwrap());
        }
        w.push_due_all(slots);
        let mut order = Vec::new();
        while let Some(slot) = w.pop_due() {
            order.push((w.get(slot).inbox(), w.name(slot).to_string()));
        }
        let expected = [(0, "z"), (0, "a"), (0, "b"), (1, "b"), (1, "a")];
        let expected: Vec<(usize, String)> =
            expected.iter().map(|(i, n)| (*i, n.to_string())).collect();
        assert_eq!(order, expected);
    }

    /// Once most records are gone the rest are renumbered into a smaller table and names
    /// buffer: every one is still found by its name, and the heaps keep their order.
    #[test]
    fn records_left_after_a_drained_backlog_are_found_and_ordered_after_compaction() {
        let mut w = Waiting::<()>::default();
        let mut kept = Vec::new();
        for n in 0..5000u64 {
            let name = format!("scan-{n:05}.bin");
            let slot = w
                .insert((n % 2) as usize, &name, record(10_000 - n))
                .unwrap();
            if n % 10 == 0 {
                kept.push((slot, name));
            }
        }
        let kept_slots: Vec<Slot> = kept.iter().map(|(s, _)| *s).collect();
        for slot in 0..w.slot_count() {
            if !kept_slots.contains(&slot) {
                w.free(slot);
            }
        }
        let (half, rest) = kept.split_at(kept.len() / 2);
        w.push_due_all(half.iter().map(|(s, _)| *s).collect());
        for (slot, _) in rest {
            w.push_ready(*slot);
        }
        let before = w.slot_count();
        w.compact_if_sparse();
        assert_eq!(w.slot_count() as usize, kept.len(), "was {before}");
        for (n, (_, name)) in kept.iter().enumerate() {
            let inbox = usize::from(name[5..10].parse::<u64>().unwrap() % 2 == 1);
            let slot = w.find(inbox, name).unwrap_or_else(|| panic!("{name} lost"));
            assert_eq!(w.name(slot), name);
            let state = if n < half.len() {
                State::Due
            } else {
                State::Ready
            };
            assert_eq!(w.get(slot).state(), state);
        }
        assert!(w.find(1, "scan-00001.bin").is_none());
        let mut previous = None;
        while let Some(slot) = w.pop_ready() {
            let mtime = w.get(slot).mtime();
            assert!(
                previous.is_none_or(|p| p <= mtime),
                "ready heap out of order"
            );
            previous = Some(mtime);
        }
    }

    #[test]
    fn times_are_kept_exactly_before_the_epoch_too() {
        for t in [
            SystemTime::UNIX_EPOCH,
            SystemTime::UNIX_EPOCH + Duration::new(1_765_000_000, 123_456_789),
            SystemTime::UNIX_EPOCH - Duration::new(5, 1),
            SystemTime::UNIX_EPOCH - Duration::from_secs(86_400),
        ] {
            let (secs, nanos) = time_parts(t);
            assert_eq!(from_time_parts(secs, nanos), t);
        }
        let mut r = record(0);
        let at = Instant::now() - Duration::from_millis(1500);
        r.set_stable_since(at);
        let kept = r.stable_since();
        assert!(
            kept >= at && kept - at < Duration::from_micros(2),
            "{:?}",
            kept - at
        );
    }
}
