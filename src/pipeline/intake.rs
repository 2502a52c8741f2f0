//! Finding new scans: watching the inboxes and deciding when a file is complete.
//!
//! Events (inotify through notify) and listings only say "look at this path". A path becomes a
//! candidate; a candidate is ready once its size and mtime stayed unchanged for `settle`
//! (checked by our own stat calls), or shortly after a local writer closed it. A settled file
//! is still *held* while it looks unfinished: a local writer has it open for writing (seen by
//! events: written to and not closed since), its end is still the zeros of a preallocated
//! file, or it stops before its format's end ([`preflight::is_cut_off`]). A held file is
//! taken once it is finished, or with a WARN once it has been held for `[daemon] hold_limit`
//! without a change. Ready files join the [`ReadyQueue`], oldest mtime first; the queue holds
//! paths, never contents.
//!
//! Each inbox is watched by events or by polling (`watch = auto` chooses by filesystem:
//! inotify never hears writes made by other hosts to an NFS or SMB mount). A lost event
//! (queue overflow) costs a rescan; a watch that cannot be added falls back to polling; an
//! inbox that is missing, deleted and recreated, or remounted is (re)attached by path.
//! Symlinks, hard-linked files and anything but regular files are never taken (which entries
//! count is [`entries`](crate::pipeline::entries)' rule, shared with a set's listing and
//! `status`).
//!
//! Intake is blocking filesystem work, so it runs on a thread of its own ([`run`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{InboxConfig, WatchMode};
use crate::pipeline::entries::{EntryRules, Verdict};
use crate::pipeline::preflight;

mod sets;

/// An empty file is often a scanner that has created its output and not written yet: it must
/// stay unchanged at least this long before it is taken (and then refused by preflight).
const EMPTY_FILE_SETTLE: Duration = Duration::from_secs(30);

/// A file closed by a local writer goes once unchanged this long after the close (or after
/// `settle`, if shorter).
const CLOSE_GRACE: Duration = Duration::from_millis(200);

/// How long after its first sight an older file that is still settling holds back younger
/// settled ones (a first listing of a large backlog takes a while).
const SETTLING_ORDER_WAIT: Duration = Duration::from_secs(5);

/// Bytes at the end of a file that, all zero, mean "preallocated and not filled yet".
const TAIL_LEN: u64 = 512;

/// A settled file waiting to be claimed.
#[derive(Debug, Clone)]
pub struct ReadyFile {
    /// Index of its inbox in the config.
    pub inbox: usize,
    pub path: PathBuf,
    /// Its path below the inbox (`scan.jpg`, or `2026/11/scan.jpg` in a recursive inbox).
    pub name: String,
    pub size: u64,
    pub mtime: SystemTime,
    /// When intake first saw it.
    pub detected_at: SystemTime,
}

/// Settled files, oldest mtime first (then by name). Shared by intake (producer) and the claim loop.
#[derive(Default)]
pub struct ReadyQueue {
    inner: Mutex<QueueInner>,
    added: Notify,
}

#[derive(Default)]
struct QueueInner {
    /// Oldest first: (mtime, name, inbox, arrival number) → the rest. Compact, since a
    /// backlog of 100,000 files waits here: the path is the inbox folder plus the name.
    order: BTreeMap<(SystemTime, Box<str>, usize, u64), Queued>,
    /// Each inbox's folder, as the paths pushed show it.
    roots: HashMap<usize, Arc<Path>>,
    /// Paths queued or being claimed, as hashes (a backlog's paths are not kept twice):
    /// intake does not offer them again. (Two paths with one 64-bit hash would only make
    /// one wait for the other's claim, or for the next rescan: never lost.)
    taken: HashSet<u64>,
    hasher: std::hash::RandomState,
    next_seq: u64,
}

impl QueueInner {
    fn taken_key(&self, path: &Path) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(path)
    }
}

/// What the queue keeps of a ready file besides its key.
struct Queued {
    size: u64,
    detected_at: SystemTime,
}

impl ReadyQueue {
    /// Adds a file unless its path is already queued or being claimed.
    pub fn push(&self, file: ReadyFile) -> bool {
        let mut q = self.lock();
        let root = file
            .path
            .to_str()
            .and_then(|p| p.strip_suffix(file.name.as_str()))
            .map(|root| match root.trim_end_matches('/') {
                "" => "/".to_string(),
                trimmed => trimmed.to_string(),
            });
        // Always a path below its inbox (intake makes it so); anything else is refused
        // rather than queued under a wrong path.
        let Some(root) = root else {
            return false;
        };
        let key = q.taken_key(&file.path);
        if !q.taken.insert(key) {
            return false;
        }
        if q.roots
            .get(&file.inbox)
            .is_none_or(|r| r.as_os_str() != root.as_str())
        {
            q.roots.insert(file.inbox, Arc::from(Path::new(&root)));
        }
        let seq = q.next_seq;
        q.next_seq += 1;
        let key = (file.mtime, file.name.into_boxed_str(), file.inbox, seq);
        let queued = Queued {
            size: file.size,
            detected_at: file.detected_at,
        };
        q.order.insert(key, queued);
        drop(q);
        self.added.notify_one();
        true
    }

    /// The oldest ready file, waiting for one if the queue is empty. Its path stays "taken"
    /// until [`ReadyQueue::release`].
    pub async fn pop(&self) -> ReadyFile {
        loop {
            let notified = self.added.notified();
            if let Some(file) = self.pop_now() {
                return file;
            }
            notified.await;
        }
    }

    /// The oldest ready file, if any.
    fn pop_now(&self) -> Option<ReadyFile> {
        let mut q = self.lock();
        let ((mtime, name, inbox, _), queued) = q.order.pop_first()?;
        let root = q.roots.get(&inbox).cloned().expect("known from its push");
        Some(ReadyFile {
            inbox,
            path: root.join(&*name),
            name: name.into_string(),
            size: queued.size,
            mtime,
            detected_at: queued.detected_at,
        })
    }

    /// The claim is over (the file moved out, or stayed and may be offered again).
    pub fn release(&self, path: &Path) {
        let mut q = self.lock();
        let key = q.taken_key(path);
        q.taken.remove(&key);
    }

    /// Whether intake should leave this path alone for now.
    pub fn is_taken(&self, path: &Path) -> bool {
        let q = self.lock();
        q.taken.contains(&q.taken_key(path))
    }

    /// Files waiting to be claimed.
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Filesystems whose clients get no inotify events for writes made by other machines:
/// NFS, SMB/CIFS, FUSE (sshfs, davfs, glusterfs, ...), and other network or cluster
/// filesystems. From statfs(2) `f_type`.
pub fn is_network_fs(f_type: i64) -> Option<&'static str> {
    Some(match f_type {
        0x6969 => "nfs",
        0x517B => "smb",
        0xFF53_4D42 => "cifs",
        0xFE53_4D42 => "smb2",
        0x6573_5546 => "fuse",
        0x00C3_6400 => "ceph",
        0x5346_414F => "afs",
        0x7375_7245 => "coda",
        0x564C => "ncp",
        0x0102_1997 => "9p",
        0x0116_1970 => "gfs2",
        0x7461_636F => "ocfs2",
        0x0BD0_0BD0 => "lustre",
        0x786F_4256 => "vboxsf",
        _ => return None,
    })
}

/// What the rest of the daemon sees of the intake thread.
#[derive(Default)]
pub struct Liveness {
    /// Set once every existing inbox is attached and listed (systemd's READY=1 waits for it).
    pub started: Notify,
    /// Unix milliseconds of the loop's last turn: the watchdog pings only while this moves.
    pub last_turn_ms: std::sync::atomic::AtomicU64,
}

impl Liveness {
    fn turned(&self) {
        self.last_turn_ms
            .store(unix_ms(), std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the loop turned within `limit`.
    pub fn turned_within(&self, limit: Duration) -> bool {
        let last = self.last_turn_ms.load(std::sync::atomic::Ordering::Relaxed);
        unix_ms().saturating_sub(last) <= limit.as_millis() as u64
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The intake loop. Blocking: run it with `spawn_blocking`. Returns when `cancel` fires.
pub fn run(
    inboxes: Arc<Vec<InboxConfig>>,
    queue: Arc<ReadyQueue>,
    rescan_interval: Duration,
    hold_limit: Duration,
    cancel: CancellationToken,
    liveness: Arc<Liveness>,
) {
    let (events_tx, events) = mpsc::channel();
    // notify calls this on its own thread: forward without blocking, never drop.
    let watcher = notify::recommended_watcher(move |res| {
        let _ = events_tx.send(res);
    })
    .map_err(|e| {
        tracing::warn!(
            "cannot start the folder watcher ({e}){}; every inbox is polled",
            watch_limit_hint(&e)
        )
    })
    .ok();
    let mut intake = Intake::new(inboxes, queue, watcher, hold_limit);
    intake.identity_every = rescan_interval;
    let tick = intake.tick();
    // Attach and list every inbox that exists now, then say so.
    intake.maintain_inboxes(Instant::now());
    liveness.turned();
    liveness.started.notify_one();
    let mut next_settle_check = Instant::now();
    let mut next_rescan = Instant::now() + rescan_interval;
    while !cancel.is_cancelled() {
        liveness.turned();
        // With files settling, every tick; idle, only when something is due (a polled or
        // missing inbox, the rescan) or the loop's slow turn: events wake it otherwise.
        let now = Instant::now();
        let wait = if intake.candidates.is_empty() && intake.set_candidates.is_empty() {
            let due = intake.next_due().min(next_rescan).min(now + IDLE_TURN);
            due.saturating_duration_since(now).max(tick)
        } else {
            tick
        };
        match events.recv_timeout(wait) {
            Ok(event) => {
                intake.on_event(event);
                // Take what else is queued, in bounded batches, so timers still run.
                for event in events.try_iter().take(10_000) {
                    intake.on_event(event);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
        }
        let now = Instant::now();
        intake.maintain_inboxes(now);
        if now >= next_rescan {
            // Safety net for events lost without an overflow notice.
            intake.scan_all();
            next_rescan = now + rescan_interval;
        }
        if now >= next_settle_check {
            intake.check_candidates();
            next_settle_check = Instant::now() + tick;
        }
    }
}

/// The intake loop's slowest turn when idle: often enough for the liveness checks (`/healthz`
/// wants a turn within 5 s, the systemd watchdog within half `WatchdogSec`), rare enough to
/// cost nothing.
const IDLE_TURN: Duration = Duration::from_secs(1);

/// Lists and settle-checks every inbox `passes` times, as the loop does each
/// `poll_interval`, without a watcher; returns the files seen. For the scale benchmark
/// (`benches/scale.rs`), which measures what one pass costs.
pub fn poll_passes(inboxes: Arc<Vec<InboxConfig>>, passes: usize) -> usize {
    let hold_limit = Duration::from_secs(300);
    let mut intake = Intake::new(inboxes, Arc::new(ReadyQueue::default()), None, hold_limit);
    for _ in 0..passes {
        intake.scan_all_unattached();
        intake.check_candidates();
    }
    intake.candidates.len()
}

/// Per inbox: how it is watched right now.
struct Watched {
    /// Polling, because configured, chosen for a network filesystem, or as a fallback.
    polled: bool,
    /// The folder exists and is attached (watched or polled).
    attached: bool,
    /// (device, inode) of the folder when attached: a change means deleted and recreated,
    /// or remounted.
    identity: Option<(u64, u64)>,
    next_poll: Instant,
    /// Which of its entries intake takes.
    rules: EntryRules,
    /// Reported missing already (one WARN per outage, not one per look).
    reported_missing: bool,
}

/// A file seen in an inbox and not yet ready.
struct Candidate {
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
enum Hold {
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
    fn waiting(self) -> &'static str {
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

    fn giving_up(self) -> &'static str {
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

struct Intake {
    inboxes: Arc<Vec<InboxConfig>>,
    queue: Arc<ReadyQueue>,
    watcher: Option<notify::RecommendedWatcher>,
    watched: Vec<Watched>,
    candidates: HashMap<PathBuf, Candidate>,
    /// Subfolders of sets inboxes not offered yet (see [`sets`]).
    set_candidates: HashMap<PathBuf, sets::SetCandidate>,
    /// Paths already warned about (symlinks, hard links, odd names): one WARN each.
    warned: HashSet<PathBuf>,
    /// How long a settled file that looks unfinished is held without a change (`[daemon]
    /// hold_limit`).
    hold_limit: Duration,
    /// How often an inbox watched by events is checked for having been replaced or remounted
    /// (`rescan_interval`; its deletion arrives as an event at once).
    identity_every: Duration,
}

impl Intake {
    fn new(
        inboxes: Arc<Vec<InboxConfig>>,
        queue: Arc<ReadyQueue>,
        watcher: Option<notify::RecommendedWatcher>,
        hold_limit: Duration,
    ) -> Intake {
        let now = Instant::now();
        let watched = inboxes
            .iter()
            .map(|inbox| {
                let rules = EntryRules::new(inbox);
                Watched {
                    polled: false,
                    attached: false,
                    identity: None,
                    next_poll: now,
                    rules,
                    reported_missing: false,
                }
            })
            .collect();
        Intake {
            inboxes,
            queue,
            watcher,
            watched,
            candidates: HashMap::new(),
            set_candidates: HashMap::new(),
            warned: HashSet::new(),
            hold_limit,
            identity_every: Duration::from_secs(60),
        }
    }

    /// The loop's heartbeat: often enough to settle a file about `settle` after its last
    /// change and to honour the shortest `poll_interval`.
    fn tick(&self) -> Duration {
        let shortest = self
            .inboxes
            .iter()
            .flat_map(|i| [i.settle / 4, i.poll_interval, CLOSE_GRACE / 2])
            .min()
            .unwrap_or(Duration::from_millis(250));
        shortest.clamp(Duration::from_millis(20), Duration::from_millis(250))
    }

    /// Attaches inboxes that appeared, re-attaches replaced ones, and lists polled ones.
    fn maintain_inboxes(&mut self, now: Instant) {
        for index in 0..self.inboxes.len() {
            if now < self.watched[index].next_poll {
                continue;
            }
            self.maintain(index);
            let w = &self.watched[index];
            // Events serve an attached inbox: no timer of its own, only the identity check.
            let every = if w.attached && !w.polled {
                self.identity_every.max(self.inboxes[index].poll_interval)
            } else {
                self.inboxes[index].poll_interval
            };
            self.watched[index].next_poll = now + every;
        }
    }

    /// The earliest moment an inbox needs a look of its own.
    fn next_due(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        self.watched
            .iter()
            .map(|w| w.next_poll)
            .min()
            .unwrap_or(far)
    }

    fn maintain(&mut self, index: usize) {
        let path = self.inboxes[index].path.clone();
        match folder_identity(&path) {
            None => self.detach_missing(index),
            Some(id) if !self.watched[index].attached => self.attach(index, id),
            Some(id) if self.watched[index].identity != Some(id) => {
                tracing::info!(inbox = %path.display(), "inbox folder was replaced (deleted and recreated, or remounted); attaching it again");
                self.attach(index, id);
            }
            Some(_) if self.watched[index].polled => self.scan(index),
            Some(_) => {}
        }
    }

    fn detach_missing(&mut self, index: usize) {
        let path = &self.inboxes[index].path;
        let w = &mut self.watched[index];
        if !w.reported_missing {
            tracing::warn!(
                inbox = %path.display(),
                "inbox folder does not exist (share not mounted, or deleted); looking again every {}",
                humantime::format_duration(self.inboxes[index].poll_interval)
            );
            w.reported_missing = true;
        }
        w.attached = false;
        w.identity = None;
    }

    /// Starts watching (or polling) an existing inbox folder, then lists it.
    fn attach(&mut self, index: usize, id: (u64, u64)) {
        let inbox = &self.inboxes[index];
        let path = inbox.path.clone();
        if self.watched[index].reported_missing {
            tracing::info!(inbox = %path.display(), "inbox folder is there now");
            self.watched[index].reported_missing = false;
        }
        let (polled, why) = self.choose_mode(index);
        let mut polled = polled;
        if !polled {
            // A sets inbox hears its sets' files: the folder below it, too.
            let mode = if inbox.recursive || inbox.sets {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            };
            let result = match self.watcher.as_mut() {
                Some(w) => {
                    let _ = w.unwatch(&path);
                    w.watch(&path, mode)
                        .map_err(|e| format!("cannot watch it ({e}){}", watch_limit_hint(&e)))
                }
                None => Err("the folder watcher is not running".to_string()),
            };
            if let Err(reason) = result {
                tracing::warn!(
                    inbox = %path.display(),
                    "{reason}; polling it every {} instead",
                    humantime::format_duration(inbox.poll_interval)
                );
                polled = true;
            }
        }
        if !polled || why.is_some() {
            let how = if polled {
                format!(
                    "polling every {}",
                    humantime::format_duration(inbox.poll_interval)
                )
            } else {
                "watching for events".to_string()
            };
            let why = why.map(|w| format!(" ({w})")).unwrap_or_default();
            tracing::info!(inbox = %path.display(), "{how}{why}");
        }
        let w = &mut self.watched[index];
        w.polled = polled;
        w.attached = true;
        w.identity = Some(id);
        self.scan(index);
    }

    /// Polling or events for an inbox, and why (for the log).
    fn choose_mode(&self, index: usize) -> (bool, Option<String>) {
        let inbox = &self.inboxes[index];
        match inbox.watch {
            WatchMode::Poll => (true, Some("watch = \"poll\"".into())),
            WatchMode::Events => (false, None),
            WatchMode::Auto => match rustix::fs::statfs(&inbox.path)
                .ok()
                .and_then(|s| is_network_fs(fs_type(&s)))
            {
                Some(fs) => (
                    true,
                    Some(format!(
                        "on a network filesystem ({fs}), where events for other hosts' writes never arrive"
                    )),
                ),
                None => (false, Some("local filesystem".into())),
            },
        }
    }

    fn on_event(&mut self, event: notify::Result<notify::Event>) {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("folder watcher error ({e}); rescanning all inboxes");
                self.scan_all();
                return;
            }
        };
        if event.need_rescan() {
            tracing::warn!(
                "folder events were lost (event queue overflow); rescanning all inboxes"
            );
            self.scan_all();
            return;
        }
        let closed = matches!(
            event.kind,
            EventKind::Access(AccessKind::Close(AccessMode::Write))
        );
        // notify 8.2 reports every open as `Open(Any)` (inotify's IN_OPEN does not say for
        // what), so an open for writing is known by what follows it: the file is created
        // (open with O_CREAT) or written to (IN_MODIFY). The close-after-write ends it.
        let written = matches!(
            event.kind,
            EventKind::Create(CreateKind::File) | EventKind::Modify(ModifyKind::Data(_))
        );
        // An open alone changes nothing (intake's own reads of a held file open it too).
        let opened = matches!(event.kind, EventKind::Access(AccessKind::Open(_)));
        for path in &event.paths {
            // An inbox folder itself was removed or moved: look at it on the next tick.
            if let Some(index) = self.inboxes.iter().position(|i| &i.path == path) {
                self.watched[index].next_poll = Instant::now();
                continue;
            }
            if let Some(index) = self.inbox_of(path) {
                if self.inboxes[index].sets {
                    let change = (!opened).then_some((closed, written));
                    self.look_at_in_sets_inbox(index, path, change);
                    continue;
                }
                self.look_at(index, path);
                if let Some(c) = self.candidates.get_mut(path) {
                    if closed {
                        c.closed_at = Some(Instant::now());
                        c.open_for_write = false;
                    } else if written {
                        c.open_for_write = true;
                    }
                }
            }
        }
    }

    /// The inbox a path belongs to: a direct child, for a recursive inbox any descendant
    /// outside hidden folders (our work folder among them), for a sets inbox anything in a
    /// set folder (a file still arriving in a folder inside a set holds the set too).
    fn inbox_of(&self, path: &Path) -> Option<usize> {
        self.inboxes.iter().position(|inbox| {
            let Ok(rel) = path.strip_prefix(&inbox.path) else {
                return false;
            };
            let parts: Vec<Component<'_>> = rel.components().collect();
            match parts.split_last() {
                Some((Component::Normal(_), dirs)) if inbox.sets => dirs.first().is_none_or(
                    |d| matches!(d, Component::Normal(n) if !n.to_string_lossy().starts_with('.')),
                ),
                Some((Component::Normal(_), dirs)) if inbox.recursive => dirs.iter().all(
                    |d| matches!(d, Component::Normal(n) if !n.to_string_lossy().starts_with('.')),
                ),
                Some((Component::Normal(_), dirs)) => dirs.is_empty(),
                _ => false,
            }
        })
    }

    /// Lists every inbox whether attached or not (benchmark only).
    fn scan_all_unattached(&mut self) {
        for index in 0..self.inboxes.len() {
            self.scan(index);
        }
    }

    fn scan_all(&mut self) {
        for index in 0..self.inboxes.len() {
            if self.watched[index].attached {
                self.scan(index);
            }
        }
    }

    fn scan(&mut self, index: usize) {
        let dir = self.inboxes[index].path.clone();
        self.scan_dir(index, &dir);
    }

    fn scan_dir(&mut self, index: usize, dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let sets = self.inboxes[index].sets;
        for entry in entries.flatten() {
            if sets {
                self.look_at_in_sets_inbox(index, &entry.path(), None);
            } else {
                self.look_at(index, &entry.path());
            }
        }
    }

    /// A path in an inbox may be new or changed: make it a candidate, descend into it (a
    /// folder of a recursive inbox), or leave it alone (and say why, once).
    fn look_at(&mut self, index: usize, path: &Path) {
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

    fn warn_once(&mut self, path: &Path, what: &str) {
        if self.warned.insert(path.to_path_buf()) {
            tracing::warn!(file = %path.display(), "{what}");
        }
    }

    /// Re-stats every candidate; the ones that are ready go to the queue, oldest first
    /// (mtime, then name, across all inboxes). A settled file waits while an older one seen
    /// just now is still settling (the files of a first listing settle in listing order,
    /// not by age), so the oldest file is always queued first.
    fn check_candidates(&mut self) {
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
        let hold = if tail_is_zeros(path, self.size) {
            Some(Hold::Zeros)
        } else if preflight::is_cut_off(path).unwrap_or(false) {
            Some(Hold::CutOff)
        } else {
            None
        };
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

/// statfs' `f_type`, whose integer type differs between architectures.
#[allow(clippy::unnecessary_cast)]
fn fs_type(s: &rustix::fs::StatFs) -> i64 {
    s.f_type as i64
}

/// (device, inode) of a folder, or None if it is missing or not a folder.
fn folder_identity(path: &Path) -> Option<(u64, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    meta.is_dir().then(|| (meta.dev(), meta.ino()))
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

/// For "no space left" from inotify: which sysctl to raise.
fn watch_limit_hint(e: &notify::Error) -> &'static str {
    match &e.kind {
        notify::ErrorKind::MaxFilesWatch => {
            ": inotify watch limit reached, raise fs.inotify.max_user_watches"
        }
        notify::ErrorKind::Io(io) if io.raw_os_error() == Some(24) => {
            ": inotify instance limit reached, raise fs.inotify.max_user_instances"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(name: &str, secs: u64) -> ReadyFile {
        ReadyFile {
            inbox: 0,
            path: PathBuf::from(format!("/in/{name}")),
            name: name.into(),
            size: 1,
            mtime: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
            detected_at: SystemTime::now(),
        }
    }

    #[tokio::test]
    async fn queue_gives_oldest_first_and_refuses_taken_paths() {
        let q = ReadyQueue::default();
        assert!(q.push(ready("new", 30)));
        assert!(q.push(ready("old", 10)));
        assert!(!q.push(ready("old", 10)), "already queued");
        assert_eq!(q.pop().await.name, "old");
        assert!(!q.push(ready("old", 10)), "being claimed");
        q.release(Path::new("/in/old"));
        assert!(q.push(ready("old", 10)));
        assert_eq!(q.pop().await.name, "old");
        assert_eq!(q.pop().await.name, "new");
    }

    /// Issue 12: the files of a first listing settle in listing order; a settled file waits
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
    fn network_filesystems_are_recognised_by_magic() {
        assert_eq!(is_network_fs(0x6969), Some("nfs"));
        assert_eq!(is_network_fs(0xFF53_4D42), Some("cifs"));
        assert_eq!(is_network_fs(0xFE53_4D42), Some("smb2"));
        assert_eq!(is_network_fs(0x6573_5546), Some("fuse"));
        assert_eq!(is_network_fs(0xEF53), None, "ext4");
        assert_eq!(is_network_fs(0x0102_1994), None, "tmpfs");
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
