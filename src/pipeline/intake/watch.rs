//! Watching the inboxes: notify events, polling, rescans and (re)attaching inbox folders.
//!
//! Events (inotify through notify) and listings only say "look at this path"; what a path
//! becomes is [`settle`](super::settle)'s (or, in a sets inbox, [`sets`](super::sets)') rule.
//! Each inbox is watched by events or by polling (`watch = auto` chooses by filesystem:
//! inotify never hears writes made by other hosts to an NFS or SMB mount). A lost event
//! (queue overflow) costs a rescan; a watch that cannot be added falls back to polling; an
//! inbox that is missing, deleted and recreated, or remounted is (re)attached by path, and
//! its (device, inode) is checked every `rescan_interval`.

use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
use notify::{EventKind, RecursiveMode, Watcher};

use super::Intake;
use super::settle::Seen;
use crate::config::WatchMode;
use crate::pipeline::entries::EntryRules;

/// Per inbox: how it is watched right now.
pub(super) struct Watched {
    /// Polling, because configured, chosen for a network filesystem, or as a fallback.
    pub(super) polled: bool,
    /// The folder exists and is attached (watched or polled).
    attached: bool,
    /// (device, inode) of the folder when attached: a change means deleted and recreated,
    /// or remounted.
    identity: Option<(u64, u64)>,
    /// When it next needs a look of its own (a poll, the identity check, a missing inbox).
    next_poll: Instant,
    /// Which of its entries intake takes.
    pub(super) rules: EntryRules,
    /// Reported missing already (one WARN per outage, not one per look).
    reported_missing: bool,
}

impl Watched {
    /// An inbox not attached yet, looked at first at `now`.
    pub(super) fn new(rules: EntryRules, now: Instant) -> Watched {
        Watched {
            polled: false,
            attached: false,
            identity: None,
            next_poll: now,
            rules,
            reported_missing: false,
        }
    }
}

impl Intake {
    /// Attaches inboxes that appeared, re-attaches replaced ones, and lists polled ones.
    pub(super) fn maintain_inboxes(&mut self, now: Instant) {
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
    pub(super) fn next_due(&self) -> Instant {
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

    pub(super) fn on_event(&mut self, event: notify::Result<notify::Event>) {
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
        for path in &event.paths {
            // An inbox folder itself was removed or moved: look at it on the next tick.
            if let Some(index) = self.inboxes.iter().position(|i| &i.path == path) {
                self.watched[index].next_poll = Instant::now();
                continue;
            }
            if let Some(index) = self.inbox_of(path) {
                self.look(index, path, Some((closed, written)));
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
    pub(super) fn scan_all_unattached(&mut self) {
        for index in 0..self.inboxes.len() {
            self.scan(index);
        }
    }

    pub(super) fn scan_all(&mut self) {
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

    pub(super) fn scan_dir(&mut self, index: usize, dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for (n, entry) in entries.flatten().enumerate() {
            if self.inboxes[index].sets {
                self.look_at_in_sets_inbox(index, &entry.path(), None);
            } else {
                self.look_at(index, &entry.path(), Seen::Listed(&entry));
            }
            // A listing of 1,000,000 files takes seconds: the claim loop is not kept waiting.
            if n % 1024 == 1023 {
                self.hand_over();
            }
        }
    }

    /// A path of inbox `index` may be new or changed: a file, or a path of a sets inbox.
    /// `event` is (closed, written) for an event that may be a change (see `on_event`).
    fn look(&mut self, index: usize, path: &Path, event: Option<(bool, bool)>) {
        if self.inboxes[index].sets {
            self.look_at_in_sets_inbox(index, path, event);
        } else {
            self.look_at(index, path, event.map_or(Seen::Named, Seen::Event));
        }
    }
}

/// An open (notify 8.2 reports every open, for reading or writing, as `Open(Any)`): alone it
/// changes nothing (a write, a create or a close follows one that does), and intake's own
/// reads of the files it offers are opens too. Not forwarded to the intake loop.
pub(super) fn is_an_open(event: &notify::Event) -> bool {
    matches!(event.kind, EventKind::Access(AccessKind::Open(_)))
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

/// For "no space left" from inotify: which sysctl to raise.
pub(super) fn watch_limit_hint(e: &notify::Error) -> &'static str {
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

    #[test]
    fn network_filesystems_are_recognised_by_magic() {
        assert_eq!(is_network_fs(0x6969), Some("nfs"));
        assert_eq!(is_network_fs(0xFF53_4D42), Some("cifs"));
        assert_eq!(is_network_fs(0xFE53_4D42), Some("smb2"));
        assert_eq!(is_network_fs(0x6573_5546), Some("fuse"));
        assert_eq!(is_network_fs(0xEF53), None, "ext4");
        assert_eq!(is_network_fs(0x0102_1994), None, "tmpfs");
    }
}
