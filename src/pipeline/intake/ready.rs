//! The ready queue: settled files (and sets) waiting to be claimed, oldest mtime first (then
//! by name). Intake pushes, the claim loop pops; a popped path stays "taken" until its claim
//! is over, so intake does not offer it twice. The queue holds paths, never contents, and
//! keeps them compact (an inbox's folder once, each file's name below it, in one array
//! ordered as a binary heap): a backlog of 100,000 files waits here.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::Notify;

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
    /// Oldest first (mtime, then name, then inbox): a binary heap, one array of compact
    /// entries (no tree nodes), since a backlog of 100,000 files waits here; the path is the
    /// inbox folder plus the name.
    order: BinaryHeap<Reverse<Queued>>,
    /// Each inbox's folder, as the paths pushed show it.
    roots: HashMap<usize, Arc<Path>>,
    /// Paths queued or being claimed, as hashes (a backlog's paths are not kept twice):
    /// intake does not offer them again. (Two paths with one 64-bit hash would only make
    /// one wait for the other's claim, or for the next rescan: never lost.)
    taken: HashSet<u64>,
    hasher: std::hash::RandomState,
}

impl QueueInner {
    fn taken_key(&self, path: &Path) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(path)
    }
}

/// What the queue keeps of a ready file; ordered by age: mtime, then name, then inbox (a
/// path is queued once, so no two are equal).
struct Queued {
    mtime: SystemTime,
    name: Box<str>,
    size: u64,
    detected_at: SystemTime,
    inbox: usize,
}

impl Queued {
    fn age(&self) -> (SystemTime, &str, usize) {
        (self.mtime, &self.name, self.inbox)
    }
}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        self.age().cmp(&other.age())
    }
}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.age() == other.age()
    }
}

impl Eq for Queued {}

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
        q.order.push(Reverse(Queued {
            mtime: file.mtime,
            name: file.name.into_boxed_str(),
            size: file.size,
            detected_at: file.detected_at,
            inbox: file.inbox,
        }));
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
        let Reverse(queued) = q.order.pop()?;
        // A backlog drained gives its memory back (the array does not shrink by itself).
        if q.order.capacity() > 2 * q.order.len() + 1024 {
            q.order.shrink_to_fit();
        }
        let root = q
            .roots
            .get(&queued.inbox)
            .cloned()
            .expect("known from its push");
        Some(ReadyFile {
            inbox: queued.inbox,
            path: root.join(&*queued.name),
            name: queued.name.into_string(),
            size: queued.size,
            mtime: queued.mtime,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
