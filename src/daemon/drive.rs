//! The one place where the order of the stages is written: a claimed file goes through
//! preflight, submit and poll, and is finished with whatever outcome a stage decided.

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use crate::pipeline::claim;
use crate::pipeline::finish;
use crate::pipeline::poll;
use crate::pipeline::preflight;
use crate::pipeline::submit;
use crate::pipeline::{Context, Job, Step};
use crate::sidecar::{ErrorKind, Outcome};

/// One file's way from claimed to finished.
pub(super) async fn drive(p: Arc<Context>, mut job: Job, permit: Option<OwnedSemaphorePermit>) {
    if job.document_id.is_none() {
        // The content is hashed first, in the file's own task (a slow share delays no other
        // file), and stored: before the duplicate rule can wait on anything, and so that even
        // a refusal's sidecar carries it. An unreadable file has none; it fails as unreadable.
        if job.sha256.is_none() {
            let path = job.work_path.clone();
            if let Ok(Ok(sha)) = tokio::task::spawn_blocking(move || claim::hash_file(&path)).await
            {
                let stored = crate::store::journal::until_stored(&p.stop, "content hash", || {
                    p.journal.set_sha256(job.id, sha.clone())
                })
                .await;
                if stored.is_none() {
                    return;
                }
                job.sha256 = Some(sha);
            }
        }
        match preflight_check(&job, job.inbox.preflight).await {
            Preflight::Send => {}
            Preflight::Refuse(outcome) => {
                drop(permit);
                finish::finish(&p, &job, outcome).await;
                return;
            }
            Preflight::Vanished => return finish::lost(&p, &job).await,
        }
        match submit::submit(&p, &mut job, permit).await {
            Step::Next => {}
            Step::Finish(outcome) => {
                finish::finish(&p, &job, outcome).await;
                return;
            }
            Step::Vanished => return finish::lost(&p, &job).await,
            Step::Stopped => return,
        }
    }
    match poll::poll(&p, &job).await {
        Step::Finish(outcome) => {
            finish::finish(&p, &job, outcome).await;
        }
        Step::Next | Step::Vanished | Step::Stopped => {}
    }
}

/// What preflight decided about a claimed file.
enum Preflight {
    Send,
    Refuse(Outcome),
    Vanished,
}

/// Preflight: may this file be sent? The inbox's `preflight` policy decides what a refusal
/// means: strict (failed/, no request), warn (log and send), off (no check at all).
async fn preflight_check(job: &Job, policy: preflight::Policy) -> Preflight {
    if policy == preflight::Policy::Off {
        return Preflight::Send;
    }
    let path = job.work_path.clone();
    match tokio::task::spawn_blocking(move || crate::logging::contained(|| preflight::check(&path)))
        .await
    {
        Ok(Ok(Ok(_facts))) => Preflight::Send,
        Ok(Ok(Err(refusal))) if policy == preflight::Policy::Warn => {
            tracing::warn!(file = %job.name, "sending although the service will probably refuse it (preflight = \"warn\"): {refusal}");
            Preflight::Send
        }
        Ok(Ok(Err(refusal))) => {
            tracing::info!(file = %job.name, "refused before sending: {refusal}");
            Preflight::Refuse(Outcome::failed(ErrorKind::InvalidFile, None, refusal.0))
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Preflight::Vanished,
        Ok(Err(e)) => Preflight::Refuse(Outcome::failed(
            ErrorKind::Unreadable,
            None,
            format!(
                "The file could not be read ({e}). Check the scanner's file permissions and put it in the folder again."
            ),
        )),
        // The check itself panicked: let the API be the judge rather than lose the file.
        Err(e) => {
            tracing::error!(file = %job.name, "preflight crashed: {e}");
            Preflight::Send
        }
    }
}
