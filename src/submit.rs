//! Sending a claimed file to the API and getting its `document_id`.
//!
//! The body is prepared (file read, hashed, base64-encoded) *before* asking the scheduler for
//! a turn, so the request leaves the moment the turn is granted. The journal says
//! `submitting` while a request may be on its way, and gets the `document_id` as soon as it
//! returns. Server and network errors are retried with exponential backoff and jitter, a
//! bounded number of times; account refusals (401/402) pause the account and retry without
//! counting against the file.

use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tokio::sync::OwnedSemaphorePermit;

use crate::api::{ApiFailure, ProcessInfo, ProcessOptions};
use crate::claim::Job;
use crate::config::InboxConfig;
use crate::daemon::Pipeline;
use crate::sidecar::{ErrorKind, Outcome};

/// Where a file stands after the submit stage.
#[derive(Debug)]
pub enum SubmitStep {
    /// It has a `document_id` (in the job and the journal): go poll.
    Submitted,
    /// It will not be sent: finish it with this outcome.
    Finished(Outcome),
    /// Its work file disappeared (deleted by hand?): nothing to send or move.
    Vanished,
    /// The daemon is stopping; the journal lets the next start carry on.
    Stopped,
}

/// A body ready to send.
struct Prepared {
    body: Vec<u8>,
    sha256: String,
}

/// Submits `job` until it has a `document_id` or a final outcome. `permit` (one of the few
/// "prepared submit" slots) bounds how many file bodies sit in memory at once; it is given
/// back during backoffs.
pub async fn submit(
    p: &Pipeline,
    job: &mut Job,
    mut permit: Option<OwnedSemaphorePermit>,
) -> SubmitStep {
    let inbox = &p.config.inboxes[job.inbox];
    let info = process_info(inbox);
    let mut server_errors = 0u32;
    loop {
        let _permit = match permit.take() {
            Some(permit) => permit,
            None => tokio::select! {
                _ = p.stop.cancelled() => return SubmitStep::Stopped,
                permit = p.prepared_slots.clone().acquire_owned() => permit.expect("never closed"),
            },
        };
        let prepared = match prepare(p, job, &info).await {
            Ok(prepared) => prepared,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return SubmitStep::Vanished,
            Err(e) => {
                return SubmitStep::Finished(Outcome::failed(
                    ErrorKind::Unreadable,
                    None,
                    format!(
                        "The file could not be read ({e}). Check the scanner's file permissions and put it in the folder again."
                    ),
                ));
            }
        };
        if job.sha256.as_deref() != Some(&prepared.sha256) {
            record_or_log(p.journal.set_sha256(job.id, prepared.sha256.clone()).await);
            job.sha256 = Some(prepared.sha256.clone());
        }
        record_or_log(p.journal.mark_submitting(job.id).await);
        tokio::select! {
            _ = p.stop.cancelled() => {
                // Nothing was sent: no doubt to leave behind.
                record_or_log(p.journal.mark_claimed(job.id).await);
                return SubmitStep::Stopped;
            }
            turn = p.scheduler.submit_turn() => if turn.is_none() { return SubmitStep::Stopped },
        }
        let reply = tokio::select! {
            // Only a hard stop abandons a request in flight; the journal then says
            // "submitting" and the next start treats the outcome as unknown.
            _ = p.abort.cancelled() => return SubmitStep::Stopped,
            reply = p.api.submit(prepared.body, job.size) => reply,
        };
        match reply {
            Ok(document_id) => {
                record_or_log(p.journal.mark_submitted(job.id, document_id.clone()).await);
                p.scheduler.account_ok(true);
                job.document_id = Some(document_id.clone());
                job.submitted_at = Some(SystemTime::now());
                tracing::info!(inbox = %inbox.path.display(), file = %job.name, document_id = %document_id, "submitted");
                return SubmitStep::Submitted;
            }
            Err(ApiFailure::Account { status, message }) => {
                record_or_log(p.journal.mark_claimed(job.id).await);
                p.scheduler
                    .account_refused(status, &message, p.config.api.account_retry);
            }
            Err(ApiFailure::Transient { status, message }) => {
                record_or_log(p.journal.mark_claimed(job.id).await);
                server_errors += 1;
                job.submit_attempts += 1;
                if server_errors >= p.config.api.submit_attempts {
                    return SubmitStep::Finished(gave_up(server_errors, status, &message));
                }
                let wait = backoff(p, server_errors);
                tracing::warn!(
                    inbox = %inbox.path.display(), file = %job.name, http_status = status,
                    "submit failed ({message}); try {} of {} in {}",
                    server_errors + 1, p.config.api.submit_attempts, humantime::format_duration(wait)
                );
                tokio::select! {
                    _ = p.stop.cancelled() => return SubmitStep::Stopped,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            Err(failure) => {
                return SubmitStep::Finished(refused(&failure, server_errors > 0));
            }
        }
    }
}

/// `process_info[0]` for an inbox: its type, key and stages.
fn process_info(inbox: &InboxConfig) -> ProcessInfo {
    ProcessInfo {
        doc_type: inbox.doc_type.clone(),
        key: inbox.key.clone(),
        options: (!inbox.stages.is_empty()).then(|| ProcessOptions {
            stages: inbox.stages.clone(),
        }),
    }
}

/// Reads, hashes and encodes the file in the blocking pool.
async fn prepare(p: &Pipeline, job: &Job, info: &ProcessInfo) -> std::io::Result<Prepared> {
    let (api, path, info) = (p.api.clone(), job.work_path.clone(), info.clone());
    tokio::task::spawn_blocking(move || {
        let bytes = std::fs::read(&path)?;
        let sha256 = hex(&Sha256::digest(&bytes));
        let body = api.submit_body(&bytes, Some(&info));
        Ok(Prepared { body, sha256 })
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Exponential backoff from `retry_base`, capped at `retry_max`, with jitter in [½, 1].
pub fn backoff(p: &Pipeline, attempt: u32) -> Duration {
    let api = &p.config.api;
    exponential_backoff(api.retry_base, api.retry_max, attempt)
}

pub fn exponential_backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = exp.min(max);
    capped.mul_f64(0.5 + fastrand::f64() * 0.5)
}

/// A 400, 413 or 409 as an outcome a person can act on.
fn refused(failure: &ApiFailure, after_retry: bool) -> Outcome {
    let status = failure.http_status();
    let said = failure.message();
    match failure {
        ApiFailure::Duplicate { .. } => {
            let hint = if after_retry {
                " An earlier attempt that got no answer probably reached the service: look the document up in the Beorg portal."
            } else {
                " This exact file was sent before: look up the earlier result, or scan the document again if it needs to be processed anew."
            };
            Outcome::failed(
                ErrorKind::Duplicate,
                status,
                format!("The service already has this file (HTTP 409: {said}).{hint}"),
            )
        }
        ApiFailure::Rejected { status: 413, .. } => Outcome::failed(
            ErrorKind::TooLarge,
            status,
            format!(
                "The file is too large for the service (HTTP 413: {said}). Scan with a lower resolution or fewer pages."
            ),
        ),
        _ => Outcome::failed(
            ErrorKind::Rejected,
            status,
            format!(
                "The service refused the file (HTTP {}: {said}). Check that it is a clear scan of the right document type.",
                status.unwrap_or(400)
            ),
        ),
    }
}

fn gave_up(attempts: u32, status: Option<u16>, message: &str) -> Outcome {
    Outcome::failed(
        ErrorKind::ServerError,
        status,
        format!(
            "The service did not accept the file after {attempts} tries (last error: {message}). Nothing is wrong with the file: put it back into the inbox to try again."
        ),
    )
}

/// Journal writes that fail mid-flight are logged, not fatal: the file stays where it is and
/// the next start re-reads the journal.
pub fn record_or_log(result: anyhow::Result<()>) {
    if let Err(e) = result {
        tracing::error!("journal write failed: {e:#}");
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(1));
        for attempt in 1..30 {
            let d = exponential_backoff(base, max, attempt);
            let full = base.saturating_mul(1 << (attempt - 1).min(20)).min(max);
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
        }
    }

    #[test]
    fn hex_is_lowercase() {
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
    }
}
