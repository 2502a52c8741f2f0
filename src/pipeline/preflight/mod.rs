//! Preflight, the stage: may this claimed file be sent? Nothing is paid for a file the
//! service would refuse.
//!
//! A file over the API's request limit never goes (`too_large`, whatever the inbox's
//! policy). Otherwise the inbox's `preflight` policy decides what a refusal by the format
//! rules ([`formats`]) means: `strict` (failed/ with the message, no request), `warn` (logged,
//! sent anyway: the service has the last word), `off` (not checked).

pub mod formats;
mod sets;

pub use crate::config::Policy;
pub use formats::*;

use crate::lifecycle::Payload;
use crate::pipeline::{Job, Step};
use crate::sidecar::{ErrorKind, Outcome};

/// The stage: [`Step::Next`] to send the file, [`Step::Finish`] with the refusal, or
/// [`Step::Vanished`] if its work copy is gone.
pub async fn preflight(job: &Job) -> Step {
    if let Payload::Set { members } = &job.payload {
        return sets::preflight(job, members).await;
    }
    match tokio::fs::metadata(&job.work_path).await {
        Ok(meta) => {
            if let Some(refusal) = over_request_limit(meta.len()) {
                tracing::info!(file = %job.name, "refused before sending: {refusal}");
                return Step::Finish(Outcome::failed(ErrorKind::TooLarge, None, refusal.0));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Step::Vanished,
        // Unreadable metadata: the format check below (or the submit) reports it.
        Err(_) => {}
    }
    let policy = job.inbox.preflight;
    if policy == Policy::Off {
        return Step::Next;
    }
    match judge(job).await {
        Verdict::Fine => Step::Next,
        Verdict::Refused(refusal) if policy == Policy::Warn => {
            tracing::warn!(file = %job.name, "sending although the service will probably refuse it (preflight = \"warn\"): {refusal}");
            Step::Next
        }
        Verdict::Refused(refusal) => {
            tracing::info!(file = %job.name, "refused before sending: {refusal}");
            Step::Finish(Outcome::failed(ErrorKind::InvalidFile, None, refusal.0))
        }
        Verdict::Vanished => Step::Vanished,
        Verdict::Unreadable(e) => Step::Finish(Outcome::failed(
            ErrorKind::Unreadable,
            None,
            format!(
                "The file could not be read ({e}). Check the scanner's file permissions and put it in the folder again."
            ),
        )),
        // The check itself panicked: let the API be the judge rather than lose the file.
        Verdict::Crashed(e) => {
            tracing::error!(file = %job.name, "preflight crashed: {e}");
            Step::Next
        }
    }
}

/// What the format rules made of a file.
enum Verdict {
    Fine,
    Refused(Refusal),
    Vanished,
    Unreadable(std::io::Error),
    Crashed(tokio::task::JoinError),
}

/// Runs the format rules on the blocking pool (they read the file).
async fn judge(job: &Job) -> Verdict {
    let path = job.work_path.clone();
    let checked =
        tokio::task::spawn_blocking(move || crate::logging::contained(|| check(&path))).await;
    match checked {
        Ok(Ok(Ok(_facts))) => Verdict::Fine,
        Ok(Ok(Err(refusal))) => Verdict::Refused(refusal),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Verdict::Vanished,
        Ok(Err(e)) => Verdict::Unreadable(e),
        Err(e) => Verdict::Crashed(e),
    }
}
