//! Putting a finished file in its place: the original into done/ or failed/, then its sidecar.
//!
//! Order matters, and each step is recorded first: the journal gets the outcome and the chosen
//! name (`finishing`), the original is moved without overwriting anything, the sidecar is
//! written atomically beside it, and only then does the journal say done/failed. A restart at
//! any point completes the same steps. A fault on our side (folder missing, disk full,
//! permission denied) keeps the file claimed and retries with backoff; it is logged once per
//! distinct error, not once per try.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::claim::Job;
use crate::daemon::Pipeline;
use crate::fsutil;
use crate::journal::{Record, Stage};
use crate::sidecar::{Outcome, Sidecar, Status};
use crate::submit::record_or_log;

/// Longest wait between two tries of a move or write that keeps failing.
const MAX_FINISH_BACKOFF: Duration = Duration::from_secs(60);

/// Moves `job`'s original to done/ or failed/ and writes its sidecar. Returns false if the
/// daemon stopped before that was possible (the journal keeps the decision for next time).
pub async fn finish(p: &Pipeline, job: &Job, outcome: Outcome) -> bool {
    let inbox = &p.config.inboxes[job.inbox];
    let dest_dir = match outcome.status {
        Status::Done => inbox.done.clone(),
        Status::Failed => inbox.failed.clone(),
    };
    let mut last_error = String::new();
    let mut tries = 0u32;
    // Kept across tries: once the original has moved, a retry must finish at the same name.
    let mut chosen: Option<PathBuf> = None;
    loop {
        match place(p, job, &outcome, &dest_dir, &mut chosen).await {
            Ok(final_path) => {
                log_finished(inbox.path.as_path(), job, &outcome, &final_path);
                return true;
            }
            Err(e) => {
                tries += 1;
                let text = format!("{e:#}");
                if text != last_error {
                    tracing::error!(
                        file = %job.name, folder = %dest_dir.display(),
                        "cannot put the file in place ({text}); it stays in the work folder and is tried again until this is fixed"
                    );
                    last_error = text;
                }
                let wait = crate::submit::exponential_backoff(
                    Duration::from_secs(1),
                    MAX_FINISH_BACKOFF,
                    tries,
                );
                tokio::select! {
                    _ = p.stop.cancelled() => return false,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// One try: choose a free name (or keep the one chosen before, if the original already moved
/// there), record the decision, move, write the sidecar, record done.
async fn place(
    p: &Pipeline,
    job: &Job,
    outcome: &Outcome,
    dest_dir: &Path,
    chosen: &mut Option<PathBuf>,
) -> anyhow::Result<PathBuf> {
    let inbox = &p.config.inboxes[job.inbox];
    let (dir, name) = (dest_dir.to_path_buf(), job.name.clone());
    let (work, previous) = (job.work_path.clone(), chosen.clone());
    let final_path = blocking(move || {
        if !dir.is_dir() {
            anyhow::bail!("folder {} does not exist", dir.display());
        }
        match previous {
            Some(path) if !work.exists() || !path.exists() => Ok(path),
            _ => Ok(fsutil::free_name(&dir, &name)),
        }
    })
    .await?;
    *chosen = Some(final_path.clone());
    let file_name = file_name_of(&final_path);
    let sidecar = Sidecar::new(job, inbox, outcome, &file_name).to_json();
    p.journal
        .mark_finishing(job.id, final_path.clone(), sidecar.clone())
        .await?;
    let (from, to) = (job.work_path.clone(), final_path.clone());
    blocking(move || move_and_write(&from, &to, &sidecar)).await?;
    let stage = match outcome.status {
        Status::Done => Stage::Done,
        Status::Failed => Stage::Failed,
    };
    record_or_log(p.journal.mark_finished(job.id, stage).await);
    Ok(final_path)
}

/// The two filesystem steps, each safe to repeat: a moved original is not moved again, an
/// existing sidecar is not rewritten.
fn move_and_write(from: &Path, to: &Path, sidecar: &str) -> anyhow::Result<()> {
    if from.exists() {
        fsutil::move_file_noclobber(from, to)
            .map_err(|e| anyhow::anyhow!("moving to {}: {e}", to.display()))?;
        // The scanner's mode is often world-readable; a passport must not be.
        fsutil::restrict_mode(to)?;
    } else if !to.exists() {
        anyhow::bail!(
            "the file is neither in the work folder nor at {}",
            to.display()
        );
    }
    let sidecar_path = fsutil::sidecar_path(to);
    if !sidecar_path.exists() {
        fsutil::write_new_file_atomic(&sidecar_path, sidecar.as_bytes())
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", sidecar_path.display()))?;
    }
    Ok(())
}

/// Completes a finish interrupted by a crash, from the decision stored in the journal.
pub async fn resume(p: &Pipeline, job: &Job, record: &Record) -> bool {
    let (Some(final_path), Some(sidecar)) = (record.final_path.clone(), record.sidecar.clone())
    else {
        return false;
    };
    let stage = if final_path.starts_with(&p.config.inboxes[job.inbox].done) {
        Stage::Done
    } else {
        Stage::Failed
    };
    let (from, to) = (job.work_path.clone(), final_path.clone());
    loop {
        let (from, to, sidecar) = (from.clone(), to.clone(), sidecar.clone());
        match blocking(move || move_and_write(&from, &to, &sidecar)).await {
            Ok(()) => {
                record_or_log(p.journal.mark_finished(job.id, stage).await);
                tracing::info!(file = %job.name, to = %final_path.display(), "finished after restart");
                return true;
            }
            Err(e) => {
                tracing::error!(file = %job.name, "cannot complete the interrupted finish ({e:#}); trying again in a minute");
                tokio::select! {
                    _ = p.stop.cancelled() => return false,
                    _ = tokio::time::sleep(MAX_FINISH_BACKOFF) => {}
                }
            }
        }
    }
}

fn log_finished(inbox: &Path, job: &Job, outcome: &Outcome, final_path: &Path) {
    let to = final_path.display();
    let document_id = job.document_id.as_deref().unwrap_or("-");
    match &outcome.error {
        None => {
            tracing::info!(inbox = %inbox.display(), file = %job.name, document_id, to = %to, "done")
        }
        Some(e) => tracing::info!(
            inbox = %inbox.display(), file = %job.name, document_id, to = %to,
            kind = e.kind.as_str(), http_status = e.http_status,
            "failed: {}", e.message
        ),
    }
}

fn file_name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f).await?
}
