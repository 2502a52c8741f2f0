//! Finding new scans: watching the inboxes and deciding when a file is complete.
//!
//! Events (notify) and a periodic rescan only say "look at this path". A path becomes a
//! candidate; a candidate is ready once its size and mtime stayed unchanged for `settle`,
//! checked by our own stat calls, so a scanner still writing over SMB is never taken
//! half-written. Ready files join the [`ReadyQueue`], oldest mtime first; the queue holds
//! paths, never contents. A lost event (queue overflow) costs nothing but a rescan.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::InboxConfig;

/// Names intake never takes: hidden files (and our own work folder and temp files), Office
/// lock files, and the partial-download suffixes of browsers, FTP clients and editors.
pub fn is_ignored_name(name: &str) -> bool {
    const SUFFIXES: [&str; 6] = [".tmp", ".part", ".partial", ".crdownload", ".swp", "~"];
    let lower = name.to_lowercase();
    name.starts_with('.') || name.starts_with("~$") || SUFFIXES.iter().any(|s| lower.ends_with(s))
}

/// An empty file is often a scanner that has created its output and not written yet: it must
/// stay unchanged at least this long before it is taken (and then refused by preflight).
const EMPTY_FILE_SETTLE: Duration = Duration::from_secs(30);

/// A settled file waiting to be claimed.
#[derive(Debug, Clone)]
pub struct ReadyFile {
    /// Index of its inbox in the config.
    pub inbox: usize,
    pub path: PathBuf,
    /// Its name in the inbox.
    pub name: String,
    pub size: u64,
    pub mtime: SystemTime,
    /// When intake first saw it.
    pub detected_at: SystemTime,
}

/// Settled files, oldest mtime first. Shared by intake (producer) and the claim loop.
#[derive(Default)]
pub struct ReadyQueue {
    inner: Mutex<QueueInner>,
    added: Notify,
}

#[derive(Default)]
struct QueueInner {
    /// Ordered by (mtime, arrival number): oldest first, ties in arrival order.
    order: BTreeMap<(SystemTime, u64), ReadyFile>,
    /// Paths queued or being claimed: intake must not offer them again.
    taken: HashSet<PathBuf>,
    next_seq: u64,
}

impl ReadyQueue {
    /// Adds a file unless its path is already queued or being claimed.
    pub fn push(&self, file: ReadyFile) -> bool {
        let mut q = self.lock();
        if !q.taken.insert(file.path.clone()) {
            return false;
        }
        let seq = q.next_seq;
        q.next_seq += 1;
        q.order.insert((file.mtime, seq), file);
        drop(q);
        self.added.notify_one();
        true
    }

    /// The oldest ready file, waiting for one if the queue is empty. Its path stays "taken"
    /// until [`ReadyQueue::release`].
    pub async fn pop(&self) -> ReadyFile {
        loop {
            let notified = self.added.notified();
            if let Some((_, file)) = self.lock().order.pop_first() {
                return file;
            }
            notified.await;
        }
    }

    /// The claim is over (the file moved out, or stayed and may be offered again).
    pub fn release(&self, path: &Path) {
        self.lock().taken.remove(path);
    }

    /// Whether intake should leave this path alone for now.
    pub fn is_taken(&self, path: &Path) -> bool {
        self.lock().taken.contains(path)
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

/// A file seen in an inbox and not yet settled.
struct Candidate {
    inbox: usize,
    size: u64,
    mtime: SystemTime,
    /// Last time size or mtime changed (or first sight).
    stable_since: Instant,
    detected_at: SystemTime,
}

/// The intake task: watches, rescans, settles. Runs until `cancel`.
pub async fn run(
    inboxes: Arc<Vec<InboxConfig>>,
    queue: Arc<ReadyQueue>,
    rescan_interval: Duration,
    cancel: CancellationToken,
) {
    let (events_tx, mut events) = mpsc::unbounded_channel();
    // notify calls this on its own thread: forward without blocking, never drop.
    let watcher = notify::recommended_watcher(move |res| {
        let _ = events_tx.send(res);
    });
    let mut intake = Intake {
        inboxes,
        queue,
        candidates: HashMap::new(),
        watcher: match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(
                    "cannot start the folder watcher ({e}); new files are found by rescanning every {}",
                    humantime::format_duration(rescan_interval)
                );
                None
            }
        },
        attached: Vec::new(),
        missing_reported: HashSet::new(),
    };
    intake.attached = vec![false; intake.inboxes.len()];
    intake.attach_all();
    intake.scan_all();

    let mut settle_tick = tokio::time::interval(intake.settle_tick());
    settle_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rescan = tokio::time::interval(rescan_interval);
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    rescan.tick().await; // the first tick is immediate; the startup scan just ran
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            // Something happened in a watched folder.
            Some(event) = events.recv() => intake.on_event(event),
            // Re-check candidates: have they stopped changing?
            _ = settle_tick.tick() => intake.check_candidates(),
            // Safety net for lost events, and late-appearing inboxes.
            _ = rescan.tick() => {
                intake.attach_all();
                intake.scan_all();
            }
        }
    }
}

struct Intake {
    inboxes: Arc<Vec<InboxConfig>>,
    queue: Arc<ReadyQueue>,
    candidates: HashMap<PathBuf, Candidate>,
    watcher: Option<notify::RecommendedWatcher>,
    /// Per inbox: is a watch in place?
    attached: Vec<bool>,
    /// Inboxes already reported missing (one WARN per outage, not one per rescan).
    missing_reported: HashSet<usize>,
}

impl Intake {
    /// How often candidates are re-checked: often enough that a file goes about `settle`
    /// after its last change.
    fn settle_tick(&self) -> Duration {
        let shortest = self
            .inboxes
            .iter()
            .map(|i| i.settle)
            .min()
            .unwrap_or(Duration::from_secs(2));
        (shortest / 4).clamp(Duration::from_millis(20), Duration::from_secs(1))
    }

    fn attach_all(&mut self) {
        for index in 0..self.inboxes.len() {
            if !self.attached[index] {
                self.attached[index] = self.attach(index);
            }
        }
    }

    fn attach(&mut self, index: usize) -> bool {
        let path = self.inboxes[index].path.clone();
        if !path.is_dir() {
            if self.missing_reported.insert(index) {
                tracing::warn!(
                    inbox = %path.display(),
                    "inbox folder does not exist (share not mounted?); will look again at every rescan"
                );
            }
            return false;
        }
        if self.missing_reported.remove(&index) {
            tracing::info!(inbox = %path.display(), "inbox folder is back");
        }
        let Some(watcher) = self.watcher.as_mut() else {
            return false;
        };
        match watcher.watch(&path, RecursiveMode::NonRecursive) {
            Ok(()) => {
                tracing::info!(inbox = %path.display(), "watching inbox");
                true
            }
            Err(e) => {
                tracing::warn!(
                    inbox = %path.display(),
                    "cannot watch inbox ({e}); its new files are found by rescanning only{}",
                    watch_limit_hint(&e)
                );
                false
            }
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
            tracing::warn!("folder events were lost (queue overflow); rescanning all inboxes");
            self.scan_all();
            return;
        }
        if matches!(event.kind, EventKind::Remove(_)) {
            // An inbox itself may have gone: its watch is gone with it.
            for (index, inbox) in self.inboxes.iter().enumerate() {
                if event.paths.iter().any(|p| p == &inbox.path) {
                    self.attached[index] = false;
                }
            }
        }
        for path in event.paths {
            if let Some(index) = self.inbox_of(&path) {
                self.look_at(index, path);
            }
        }
    }

    /// Which inbox a path is a direct child of.
    fn inbox_of(&self, path: &Path) -> Option<usize> {
        let parent = path.parent()?;
        self.inboxes.iter().position(|i| i.path == parent)
    }

    fn scan_all(&mut self) {
        for index in 0..self.inboxes.len() {
            self.scan(index);
        }
    }

    fn scan(&mut self, index: usize) {
        let dir = self.inboxes[index].path.clone();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(_) => {
                self.attached[index] = false;
                return;
            }
        };
        for entry in entries.flatten() {
            self.look_at(index, entry.path());
        }
    }

    /// A path in an inbox may be new or changed: make it a candidate (or forget it).
    fn look_at(&mut self, index: usize, path: PathBuf) {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            tracing::warn!(file = %path.display(), "file name is not valid UTF-8; left in place");
            return;
        };
        if is_ignored_name(name) || self.queue.is_taken(&path) {
            return;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            self.candidates.remove(&path);
            return;
        };
        // Only regular files: no folders, no symlinks (never followed), no devices.
        if !meta.file_type().is_file() {
            return;
        }
        let (size, mtime) = (
            meta.len(),
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        );
        match self.candidates.get_mut(&path) {
            Some(c) => c.observe(size, mtime),
            None => {
                tracing::info!(inbox = %self.inboxes[index].path.display(), file = name, "detected");
                self.candidates.insert(
                    path,
                    Candidate {
                        inbox: index,
                        size,
                        mtime,
                        stable_since: Instant::now(),
                        detected_at: SystemTime::now(),
                    },
                );
            }
        }
    }

    /// Re-stats every candidate; the ones unchanged for their settle time go to the queue.
    fn check_candidates(&mut self) {
        let now = Instant::now();
        let mut ready = Vec::new();
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
            let settle = self.inboxes[c.inbox].settle;
            let needed = if c.size == 0 {
                settle.max(EMPTY_FILE_SETTLE)
            } else {
                settle
            };
            if now.duration_since(c.stable_since) >= needed {
                ready.push((path.clone(), c.inbox, c.size, c.mtime, c.detected_at));
                false
            } else {
                true
            }
        });
        for (path, inbox, size, mtime, detected_at) in ready {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            self.queue.push(ReadyFile {
                inbox,
                path,
                name,
                size,
                mtime,
                detected_at,
            });
        }
    }
}

impl Candidate {
    fn observe(&mut self, size: u64, mtime: SystemTime) {
        if size != self.size || mtime != self.mtime {
            self.size = size;
            self.mtime = mtime;
            self.stable_since = Instant::now();
        }
    }
}

/// For "no space left" from inotify: which sysctl to raise.
fn watch_limit_hint(e: &notify::Error) -> &'static str {
    match &e.kind {
        notify::ErrorKind::MaxFilesWatch => {
            " (inotify watch limit reached: raise fs.inotify.max_user_watches)"
        }
        notify::ErrorKind::Io(io) if io.raw_os_error() == Some(24) => {
            " (inotify instance limit reached: raise fs.inotify.max_user_instances)"
        }
        _ => "",
    }
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
            ".beorg-work",
        ] {
            assert!(is_ignored_name(n), "{n}");
        }
        for n in ["scan.jpg", "скан 1.pdf", "a~b.png", "tmp.jpg"] {
            assert!(!is_ignored_name(n), "{n}");
        }
    }

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
}
