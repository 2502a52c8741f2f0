//! Taking a settled file out of the inbox, so it is in exactly one place from then on.
//!
//! The claim is a no-clobber rename into the inbox's work folder (`.beorg-work/`, same
//! filesystem, ignored by intake) under a unique name, followed at once by the journal row.
//! A scanner that writes a new `scan0001.jpg` meanwhile cannot collide with the claimed one.
//! A crash between the rename and the row leaves an unrecorded file in the work folder, which
//! [`adopt_orphans`] takes back at the next start.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::lifecycle::{Event, Member, Payload};
use crate::pipeline::hashed::{self, Hashed};
use crate::pipeline::intake::ReadyFile;
use crate::pipeline::recorder::{NewClaim, Record};
use crate::pipeline::{Context, Inbox, Job, Recorder, Step};
use crate::store::{fsutil, layout};

/// Why a ready file was not claimed. None of these loses the file: it stays in the inbox.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("the file changed after it settled; it will be looked at again")]
    Changed,
    #[error("the file is gone from the inbox")]
    Vanished,
    #[error("cannot move the file into the work folder: {0}")]
    Io(#[from] std::io::Error),
    /// The daemon stopped while the journal could not be written; the file is in the work
    /// folder and is adopted at the next start.
    #[error("stopped before the claim could be recorded")]
    Stopped,
}

/// Moves a ready file into its inbox's work folder and records it. If the journal cannot be
/// written (state_dir full), waits here until it can: the file is safe in the work folder.
pub async fn claim(
    file: &ReadyFile,
    inbox: &Arc<Inbox>,
    recorder: &Recorder,
) -> Result<Job, ClaimError> {
    let work_dir = layout::work_dir(&inbox.path);
    // Flat in the work folder under the file's own name; its path below the inbox (a
    // subfolder of a recursive inbox) is kept in the journal.
    let base_name = file.name.rsplit('/').next().unwrap_or(&file.name);
    let work_path = work_dir.join(work_name(base_name, fsutil::name_max(&inbox.path)));
    let (from, to) = (file.path.clone(), work_path.clone());
    let (size, mtime) = (file.size, file.mtime);
    let settings = inbox.settings.clone();
    let payload = Payload::of_inbox(inbox.sets);
    let set = payload.is_set();
    tokio::task::spawn_blocking(move || {
        unchanged_since_ready(&payload, &settings, &from, size, mtime)?;
        move_into_work(&from, &to, &work_dir)
    })
    .await
    .map_err(|e| ClaimError::Io(std::io::Error::other(e)))??;
    let claimed_at = SystemTime::now();
    let claim = NewClaim {
        inbox: inbox.path.clone(),
        name: file.name.clone(),
        work_path: work_path.clone(),
        size: file.size,
        detected_at: file.detected_at,
        claimed_at,
        set,
    };
    recorder
        .claimed(inbox.clone(), claim)
        .await
        .map_err(|_| ClaimError::Stopped)
}

/// A set queued as ready still lists as it did (total size, newest mtime of anything in it)
/// and still has its ready file: nothing in it changed, came or went while it waited in the
/// queue.
fn set_unchanged(
    inbox: &crate::config::InboxConfig,
    folder: &Path,
    size: u64,
    mtime: SystemTime,
) -> Result<(), ClaimError> {
    match crate::pipeline::set::list(inbox, folder) {
        Ok(listing)
            if listing.size() == size
                && listing.newest() == mtime
                && (listing.ready || inbox.ready_file.is_none()) =>
        {
            Ok(())
        }
        Ok(_) => Err(ClaimError::Changed),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ClaimError::Vanished),
        Err(e) => Err(e.into()),
    }
}

/// Settled when queued, but the queue may have been long: a file is looked at once more
/// (size and mtime as when it was ready, one link; never a link: intake refuses them, and
/// one may have been swapped in since), a set is listed again ([`set_unchanged`]).
fn unchanged_since_ready(
    payload: &Payload,
    inbox: &crate::config::InboxConfig,
    from: &Path,
    size: u64,
    mtime: SystemTime,
) -> Result<(), ClaimError> {
    let meta = match std::fs::symlink_metadata(from) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ClaimError::Vanished),
        Err(e) => return Err(e.into()),
    };
    let unchanged = match payload {
        Payload::Set { .. } => meta.file_type().is_dir(),
        Payload::File => {
            meta.file_type().is_file()
                && meta.nlink() == 1
                && meta.len() == size
                && meta.modified().ok() == Some(mtime)
        }
    };
    if !unchanged {
        return Err(ClaimError::Changed);
    }
    if payload.is_set() {
        set_unchanged(inbox, from, size, mtime)?;
    }
    Ok(())
}

/// The claim itself: one no-clobber rename into the work folder, made durable.
fn move_into_work(from: &Path, to: &Path, work_dir: &Path) -> Result<(), ClaimError> {
    fsutil::create_dir_all_mode(work_dir, 0o700)?;
    match fsutil::rename_noclobber(from, to) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ClaimError::Vanished),
        // A claim must be a rename: a copy would leave the file in two places for a while.
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
            return Err(ClaimError::Io(std::io::Error::new(
                e.kind(),
                "its folder is on another filesystem than the inbox (a mount inside the inbox?); move the mount out or make it an inbox of its own",
            )));
        }
        Err(e) => return Err(e.into()),
    }
    fsutil::sync_dir(work_dir)?;
    fsutil::sync_dir(from.parent().unwrap_or(Path::new(".")))?;
    Ok(())
}

/// The claim's second half, run in the file's own task (hashing a large file on a slow share
/// delays no other file): the content's SHA-256, stored in the journal before the duplicate
/// rule can wait on anything, and so that even a refusal's sidecar carries it. A file or set
/// gone from the work folder is [`Step::Vanished`]; an unreadable one gets no hash, and
/// preflight or submit fails it as unreadable.
pub async fn hash(cx: &Context, job: &mut Job) -> Step {
    if let Some(hashed) = job.sha256.clone() {
        return recheck(cx, job, hashed).await;
    }
    match hash_and_record(cx, job).await {
        Ok(None) => Step::Stopped,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Step::Vanished,
        Ok(Some(_)) | Err(_) => Step::Next,
    }
}

/// A file resumed at start that an earlier run hashed but did not get an answer for: its
/// bytes may have changed since (the daemon died as it noticed a rewrite during the send,
/// or while it was stopped). The content is read again; if its hash differs, the documents
/// that answer the earlier bytes are superseded and the new hash is stored, so it is sent as
/// it is now, never answered from a document of other bytes.
async fn recheck(cx: &Context, job: &mut Job, hashed: String) -> Step {
    // Unreadable or gone: preflight and the submit answer it as they would.
    let Ok(now) = read_content(job).await else {
        return Step::Next;
    };
    if now.sha256 == hashed {
        job.hashed = now.hashed;
        return Step::Next;
    }
    tracing::warn!(
        inbox = %job.inbox.path.display(), file = %job.name,
        "its bytes changed since it was hashed (before the daemon stopped): any answer to the earlier bytes is superseded, and it is sent as it is now"
    );
    let Some(answering) = cx.recorder.documents_answering(job, &hashed).await else {
        return Step::Stopped;
    };
    let why = format!(
        "{} changed after it was sent (noticed at the next start): the answer describes the earlier bytes",
        job.payload.noun()
    );
    for document_id in answering {
        let why = why.clone();
        let superseded = Event::Superseded { document_id, why };
        if let Err(stopped) = cx.recorder.record(job, superseded).await {
            return stopped.into();
        }
    }
    match record_content(cx, job, now).await {
        Some(_) => Step::Next,
        None => Step::Stopped,
    }
}

/// What reading a claimed file or set gave: its hash and size, and a set's files as
/// planned (in the order they are sent).
pub struct Content {
    pub sha256: String,
    pub size: u64,
    pub members: Option<Vec<Member>>,
    /// Each file as it was hashed (none that changed while it was read).
    pub hashed: Vec<Hashed>,
}

/// Reads the work file, or each file of the set's folder, in the blocking pool.
pub async fn read_content(job: &Job) -> std::io::Result<Content> {
    let (inbox, path, payload) = (
        job.inbox.clone(),
        job.work_path.clone(),
        job.payload.clone(),
    );
    let read = tokio::task::spawn_blocking(move || match payload {
        Payload::File => {
            let (sha256, hashed) = hashed::hash_file(&path)?;
            let size = std::fs::metadata(&path)?.len();
            Ok(Content {
                sha256,
                size,
                members: None,
                hashed: hashed.into_iter().collect(),
            })
        }
        Payload::Set { .. } => {
            let (members, hashed) = crate::pipeline::set::read_members(&inbox, &path)?;
            Ok(Content {
                sha256: crate::pipeline::set::set_sha256(&members),
                size: members.iter().map(|m| m.size).sum(),
                members: Some(members),
                hashed,
            })
        }
    });
    read.await.map_err(std::io::Error::other)?
}

/// Reads the content (a file, or a set's files) and records it: the one hash-and-record of
/// both kinds. Returns the hash; `Ok(None)`: the daemon stopped before the journal took it;
/// `Err`: it could not be read (gone, or no permission).
pub async fn hash_and_record(cx: &Context, job: &mut Job) -> std::io::Result<Option<String>> {
    let content = read_content(job).await?;
    Ok(record_content(cx, job, content).await)
}

/// Records content read from `job` as its hash (and a set's files), and keeps its files as
/// they were hashed for the submit; `None` if stopped.
async fn record_content(cx: &Context, job: &mut Job, content: Content) -> Option<String> {
    let sha256 = content.sha256.clone();
    let hashed = Event::Hashed {
        sha256: content.sha256,
        size: content.size,
        members: content.members,
    };
    cx.recorder.record(job, hashed).await.ok()?;
    job.hashed = content.hashed;
    Some(sha256)
}

/// `<unix ms>-<counter>_<name>`: unique within the process and across restarts. The name
/// is shortened if needed to fit `name_max` bytes (the journal keeps it in full).
fn work_name(name: &str, name_max: usize) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let prefix = format!("{ms}-{n}_");
    let name = fsutil::fit_name(name, "", name_max.saturating_sub(prefix.len()));
    format!("{prefix}{name}")
}

/// The original name of a file in a work folder (`1700000000000-3_scan.jpg` → `scan.jpg`).
pub fn original_name(work_file_name: &str) -> &str {
    match work_file_name.split_once('_') {
        Some((prefix, rest))
            if !rest.is_empty()
                && prefix.contains('-')
                && prefix.chars().all(|c| c.is_ascii_digit() || c == '-') =>
        {
            rest
        }
        _ => work_file_name,
    }
}

/// Files in work folders that no unfinished journal row knows about (a crash between the
/// claim's rename and its row): record them again as claimed so they are processed.
pub async fn adopt_orphans(
    inboxes: &[Arc<Inbox>],
    recorder: &Recorder,
    known: &[Record],
) -> Vec<Job> {
    let mut adopted = Vec::new();
    for inbox in inboxes {
        let Ok(entries) = std::fs::read_dir(layout::work_dir(&inbox.path)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            // A folder in the work folder is a set whose claim was interrupted.
            let payload = match entry.file_type() {
                Ok(t) if t.is_file() => Payload::File,
                Ok(t) if t.is_dir() => Payload::new_set(),
                _ => continue,
            };
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if file_name.starts_with('.') || known.iter().any(|r| r.work_path == path) {
                continue;
            }
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            let now = SystemTime::now();
            let name = original_name(&file_name).to_string();
            let claim = NewClaim {
                inbox: inbox.path.clone(),
                name: name.clone(),
                work_path: path.clone(),
                size,
                detected_at: now,
                claimed_at: now,
                set: payload.is_set(),
            };
            let Ok(job) = recorder.claimed(inbox.clone(), claim).await else {
                // Stopping: the rest are adopted at the next start.
                return adopted;
            };
            tracing::warn!(
                inbox = %inbox.path.display(),
                file = %name,
                "found in the work folder without a journal record (interrupted claim); processing it"
            );
            adopted.push(job);
        }
    }
    adopted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_name_strips_only_our_prefix() {
        assert_eq!(original_name("1700000000000-3_scan.jpg"), "scan.jpg");
        assert_eq!(
            original_name("1700000000000-3_my_scan_1.jpg"),
            "my_scan_1.jpg"
        );
        assert_eq!(original_name("my_scan.jpg"), "my_scan.jpg");
        assert_eq!(original_name(&work_name("скан 1.pdf", 255)), "скан 1.pdf");
    }

    /// Finding 9 (issue 8): the prefix must not push a long name past NAME_MAX.
    #[test]
    fn work_names_fit_name_max() {
        let long = format!("{}.jpg", "ы".repeat(125));
        let work = work_name(&long, 255);
        assert!(work.len() <= 255, "{}", work.len());
        assert!(work.ends_with(".jpg"));
        assert!(long.starts_with(original_name(&work).trim_end_matches(".jpg")));
    }

    /// Finding 1: an empty (or any refused) file still has its content hash for the sidecar.
    #[test]
    fn an_empty_file_has_a_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.png");
        std::fs::write(&path, b"").unwrap();
        assert_eq!(
            fsutil::sha256_hex_of_file(&path).unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
