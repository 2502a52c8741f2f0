//! Finding new scans: watching the inboxes and deciding when a file (or a set) is complete.
//!
//! Intake is blocking filesystem work, so it runs on a thread of its own ([`run`]): one
//! `Intake` per session, fed notify events and the clock, offering what is ready to the
//! [`ReadyQueue`]. Its parts, one concept each:
//!
//! - `watch.rs`: notify events, polling (`watch = auto` chooses by filesystem), rescans, and
//!   (re)attaching an inbox that is missing, replaced or remounted.
//! - `settle.rs`: candidates (a file, or a set), the one settle rule and the one hold rule
//!   (open writers, zero tails, files cut off before their format's end, a set's temporary
//!   names, `[daemon] hold_limit`), and a file of an inbox becoming a candidate.
//! - `stamp.rs`: what differs between a file and a set to that rule: how its stamp is taken
//!   (size and mtime; a set folder's listing), what it waits for (a set's `ready_file`), which
//!   of its names and files hold it.
//! - `sets.rs`: where a path of a `sets` inbox belongs: a subfolder is a set (a document
//!   set), loose files and links are left alone.
//! - `waiting.rs`: one compact record per file (or set) from its first sight to the end of
//!   its claim (a backlog of 1,000,000 files waits there at start): names in one buffer, an
//!   index by (inbox, name), and the due and ready orders, oldest first.
//! - `ready.rs`: the [`ReadyQueue`] the claim loop takes from, oldest mtime first: the
//!   oldest few ready files handed over by intake; it holds paths, never contents.
//!
//! Symlinks, hard-linked files and anything but regular files are never taken (which entries
//! count is [`entries`](crate::pipeline::entries)' rule, shared with a set's listing and
//! `status`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::InboxConfig;
use crate::pipeline::entries::EntryRules;

mod ready;
mod sets;
mod settle;
mod stamp;
mod waiting;
mod watch;

pub use ready::{ReadyFile, ReadyQueue};
pub use watch::is_network_fs;

use settle::{CLOSE_GRACE, Gate, Particulars};
use waiting::{State, Waiting};
use watch::{Watched, watch_limit_hint};

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
    let (wake_tx, wakes) = mpsc::channel();
    queue.connect(wake_tx.clone());
    // notify calls this on its own thread: forward without blocking, never drop what may
    // be a change. An open alone is none, and intake's own reads open every file it offers:
    // kept, a backlog of 100,000 files would queue as many events here while it is offered.
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.as_ref().is_ok_and(watch::is_an_open) {
            return;
        }
        let _ = wake_tx.send(Wake::Event(res));
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
        // With due files to look at, at once; with files settling, every tick; idle, only
        // when something is due (a polled or missing inbox, the rescan) or the loop's slow
        // turn: events, pops and releases wake it otherwise.
        let now = Instant::now();
        let wait = if intake.has_due_to_look_at() {
            Duration::ZERO
        } else if intake.settling() {
            tick
        } else {
            let due = intake.next_due().min(next_rescan).min(now + IDLE_TURN);
            due.saturating_duration_since(now).max(tick)
        };
        match wakes.recv_timeout(wait) {
            Ok(wake) => {
                intake.on_wake(wake);
                // Take what else is queued, in bounded batches, so timers still run.
                for wake in wakes.try_iter().take(10_000) {
                    intake.on_wake(wake);
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
        if now >= next_settle_check || intake.has_due_to_look_at() {
            intake.check_candidates();
            next_settle_check = Instant::now() + tick;
        } else {
            intake.hand_over();
        }
    }
}

/// What wakes the intake loop: a folder event, or the claim loop (a pop or a release).
enum Wake {
    Event(notify::Result<notify::Event>),
    Queue,
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
    intake.waiting.len()
}

/// One session's intake: what is watched, what is settling, what was said. Its methods live
/// beside the concept they serve (`watch.rs`, `settle.rs`, `sets.rs`).
struct Intake {
    /// The inboxes of the config, by index.
    inboxes: Arc<Vec<InboxConfig>>,
    /// Where ready files go (the claim loop takes them from there).
    queue: Arc<ReadyQueue>,
    /// None when notify could not start: then every inbox is polled.
    watcher: Option<notify::RecommendedWatcher>,
    /// Per inbox (same index): how it is watched right now.
    watched: Vec<Watched>,
    /// Files, and subfolders of sets inboxes, seen and not claimed yet: one record each
    /// (`waiting.rs`), moved along by the settle rule (`settle.rs`).
    waiting: Waiting<Particulars>,
    /// When the settle check next looks at the settling candidates (None: none settles).
    look_at_settling: Option<Instant>,
    /// The oldest candidate seen just now and still settling: settled younger ones wait.
    gate: Option<Gate>,
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
            .map(|inbox| Watched::new(EntryRules::new(inbox), now))
            .collect();
        Intake {
            inboxes,
            queue,
            watcher,
            watched,
            waiting: Waiting::default(),
            look_at_settling: None,
            gate: None,
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

    /// What woke the loop: a folder event is looked at; a pop or a release is the hand-off's
    /// (at the end of the turn).
    fn on_wake(&mut self, wake: Wake) {
        match wake {
            Wake::Event(event) => self.on_event(event),
            Wake::Queue => {}
        }
    }

    /// Whether candidates are settling (or due for their last look): the loop then turns at
    /// every tick.
    fn settling(&self) -> bool {
        self.waiting.count(State::Settling) + self.waiting.count(State::Due) > 0
    }

    /// Says `what` about `path` at WARN, once per path.
    fn warn_once(&mut self, path: &Path, what: &str) {
        warn_once(&mut self.warned, path, what);
    }
}

/// Says `what` about `path` at WARN, unless `warned` holds it already.
fn warn_once(warned: &mut HashSet<PathBuf>, path: &Path, what: &str) {
    if warned.insert(path.to_path_buf()) {
        tracing::warn!(file = %path.display(), "{what}");
    }
}

/// An intake of one inbox (`<temp>/in`, settle `settle`) not attached to its folder, for unit
/// tests: the temp folder (kept while it lives), the inbox folder, the queue, the intake.
#[cfg(test)]
fn test_intake(settle: &str) -> (tempfile::TempDir, PathBuf, Arc<ReadyQueue>, Intake) {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("in");
    std::fs::create_dir(&inbox).unwrap();
    let text = format!(
        "[api]\nproject_id = \"U_RATE_2\"\nmachine_uid = \"m\"\ntoken = \"t\"\n[[inbox]]\npath = \"{0}/in\"\ntype = \"PASSPORT\"\ndone = \"{0}/done\"\nfailed = \"{0}/failed\"\nsettle = \"{settle}\"\n",
        dir.path().display()
    );
    let config = crate::config::Config::from_toml(&text, Path::new("/c.toml"), None).unwrap();
    let queue = Arc::new(ReadyQueue::default());
    let hold_limit = Duration::from_secs(300);
    let intake = Intake::new(Arc::new(config.inboxes), queue.clone(), None, hold_limit);
    (dir, inbox, queue, intake)
}
