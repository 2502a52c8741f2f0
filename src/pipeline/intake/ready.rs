//! The ready queue: what the claim loop takes, oldest mtime first (then by name, then
//! inbox). The ready files themselves wait in intake's records
//! ([`waiting`](super::waiting)); intake hands the oldest few over here ([`HANDOFF`]), and
//! swaps one back when an older file becomes ready, so the order holds across the hand-off.
//! The claim loop pops and, when its claim is over, releases: until then intake leaves the
//! path alone. Pops and releases wake the intake loop, which tops the hand-off up.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::SystemTime;

use tokio::sync::Notify;

use super::waiting::{Slot, State};
use super::{Intake, Wake};

/// How many ready files wait in the hand-off: enough that the claim loop never waits for a
/// turn of the intake loop, few enough that a file made ready later but older is swapped in.
const HANDOFF: usize = 8;

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

impl ReadyFile {
    fn age(&self) -> (SystemTime, &str, usize) {
        (self.mtime, &self.name, self.inbox)
    }
}

/// Ready files handed over by intake, oldest first. Shared by intake (producer) and the
/// claim loop.
#[derive(Default)]
pub struct ReadyQueue {
    shared: Mutex<Shared>,
    added: Notify,
}

#[derive(Default)]
pub(super) struct Shared {
    /// The oldest ready files, oldest first, at most [`HANDOFF`].
    handoff: VecDeque<ReadyFile>,
    /// Claims that are over, as (inbox, name): intake forgets their records.
    released: Vec<(usize, String)>,
    /// Ready files still in intake's records.
    waiting: usize,
    /// Wakes the intake loop (None until it runs).
    wake: Option<mpsc::Sender<Wake>>,
}

impl Shared {
    fn wake_intake(&self) {
        if let Some(wake) = &self.wake {
            let _ = wake.send(Wake::Queue);
        }
    }
}

impl ReadyQueue {
    /// The oldest ready file, waiting for one if there is none. Its path stays taken until
    /// [`ReadyQueue::release`].
    pub async fn pop(&self) -> ReadyFile {
        loop {
            let notified = self.added.notified();
            if let Some(file) = self.pop_now() {
                return file;
            }
            notified.await;
        }
    }

    fn pop_now(&self) -> Option<ReadyFile> {
        let mut shared = self.lock();
        let file = shared.handoff.pop_front()?;
        shared.wake_intake();
        Some(file)
    }

    /// The claim of `file` is over (it moved out, or stayed and may be offered again).
    pub fn release(&self, file: &ReadyFile) {
        let mut shared = self.lock();
        shared.released.push((file.inbox, file.name.clone()));
        shared.wake_intake();
    }

    /// Files ready and not claimed yet.
    pub fn len(&self) -> usize {
        let shared = self.lock();
        shared.handoff.len() + shared.waiting
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The intake loop to wake on a pop or a release.
    pub(super) fn connect(&self, wake: mpsc::Sender<Wake>) {
        self.lock().wake = Some(wake);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Intake {
    /// Forgets the records of claims that are over, and keeps the hand-off holding the oldest
    /// ready files: topped up to [`HANDOFF`], and its youngest swapped back for an older one
    /// made ready since.
    pub(super) fn hand_over(&mut self) {
        let queue = self.queue.clone();
        let mut shared = queue.lock();
        for (inbox, name) in std::mem::take(&mut shared.released) {
            if let Some(slot) = self.waiting.find(inbox, &name)
                && self.waiting.get(slot).state() == State::Handed
            {
                self.waiting.free(slot);
            }
        }
        let mut handed = false;
        while let Some(oldest) = self.waiting.peek_ready() {
            if shared.handoff.len() >= HANDOFF {
                let youngest = shared.handoff.back().expect("full");
                if self.waiting.age(oldest) >= youngest.age() {
                    break;
                }
                let back = shared.handoff.pop_back().expect("full");
                if let Some(slot) = self.waiting.find(back.inbox, &back.name) {
                    self.waiting.push_ready(slot);
                }
            }
            let slot = self.waiting.pop_ready().expect("peeked");
            self.waiting.set_state(slot, State::Handed);
            let file = self.ready_file(slot);
            let at = shared.handoff.partition_point(|f| f.age() < file.age());
            shared.handoff.insert(at, file);
            handed = true;
        }
        shared.waiting = self.waiting.count(State::Ready);
        drop(shared);
        if handed {
            queue.added.notify_one();
        }
    }

    fn ready_file(&self, slot: Slot) -> ReadyFile {
        let record = self.waiting.get(slot);
        let name = self.waiting.name(slot).to_string();
        ReadyFile {
            inbox: record.inbox(),
            path: self.inboxes[record.inbox()].path.join(&name),
            name,
            size: record.size,
            mtime: record.mtime(),
            detected_at: record.detected_at(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::pipeline::intake::settle::Seen;
    use crate::pipeline::intake::test_intake;

    /// Writes `name` with an mtime `secs` after an hour ago, and has intake see it settled.
    fn settled(intake: &mut Intake, inbox: &Path, name: &str, secs: u64) {
        let path = inbox.join(name);
        std::fs::write(&path, name.as_bytes()).unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        file.set_modified(hour_ago + Duration::from_secs(secs))
            .unwrap();
        intake.look_at(0, &path, Seen::Named);
        intake.settled_at(0, name, Instant::now() - Duration::from_secs(5));
    }

    /// The hand-off holds the oldest few ready files; one made ready later but older than
    /// those is swapped in, so the claim loop still takes the oldest first.
    #[tokio::test]
    async fn an_older_file_ready_after_the_hand_off_filled_is_still_taken_first() {
        let (_dir, inbox, queue, mut intake) = test_intake("1s");
        for n in 0..HANDOFF + 2 {
            settled(&mut intake, &inbox, &format!("f{n}.bin"), 10 + n as u64);
        }
        intake.check_candidates();
        assert_eq!(queue.len(), HANDOFF + 2);
        assert_eq!(queue.lock().handoff.len(), HANDOFF);
        settled(&mut intake, &inbox, "older.bin", 5);
        intake.check_candidates();
        let mut taken = Vec::new();
        while !queue.is_empty() {
            let file = queue.pop().await;
            queue.release(&file);
            taken.push(file.name);
            intake.hand_over();
        }
        let mut expected = vec!["older.bin".to_string()];
        expected.extend((0..HANDOFF + 2).map(|n| format!("f{n}.bin")));
        assert_eq!(taken, expected);
        assert_eq!(intake.waiting.len(), 0, "every record freed at its release");
    }

    /// A file handed to the claim loop is not seen again by intake until its claim is over;
    /// after its release (the file stayed: its claim failed) it is a new candidate.
    #[tokio::test]
    async fn a_file_being_claimed_is_left_alone_until_its_release() {
        let (_dir, inbox, queue, mut intake) = test_intake("1s");
        settled(&mut intake, &inbox, "claimed.bin", 10);
        intake.check_candidates();
        let file = queue.pop().await;
        intake.look_at(0, &file.path, Seen::Named);
        intake.check_candidates();
        let slot = intake.waiting.find(0, "claimed.bin").unwrap();
        assert_eq!(intake.waiting.get(slot).state(), State::Handed);
        assert!(queue.is_empty());
        queue.release(&file);
        intake.hand_over();
        assert!(intake.waiting.find(0, "claimed.bin").is_none());
        intake.look_at(0, &file.path, Seen::Named);
        let slot = intake.waiting.find(0, "claimed.bin").unwrap();
        assert_eq!(intake.waiting.get(slot).state(), State::Settling);
    }
}
