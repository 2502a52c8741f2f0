//! Sending a claimed file to the API and getting its `document_id`.
//!
//! The body is prepared (file read, hashed, base64-encoded) *before* asking the scheduler for
//! a turn, so the request leaves the moment the turn is granted. The journal says
//! `submitting` while a request may be on its way, and gets the `document_id` as soon as it
//! returns. Server and network errors are retried with exponential backoff and jitter, a
//! bounded number of times; account refusals (401/402) pause the account and retry without
//! counting against the file.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tokio::sync::OwnedSemaphorePermit;

use crate::api::{ApiFailure, ProcessInfo, ProcessOptions};
use crate::claim::Job;
use crate::config::InboxConfig;
use crate::daemon::Pipeline;
use crate::journal::{SameContent, until_stored};
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
            Err(e) => return SubmitStep::Finished(unreadable(&e)),
        };
        if job.sha256.as_deref() != Some(&prepared.sha256) {
            let sha = prepared.sha256.clone();
            if store(p, "content hash", || {
                p.journal.set_sha256(job.id, sha.clone())
            })
            .await
            .is_none()
            {
                return SubmitStep::Stopped;
            }
            job.sha256 = Some(prepared.sha256.clone());
        }
        match answer_from_earlier(p, job, &prepared.sha256).await {
            Earlier::Answered => return SubmitStep::Submitted,
            Earlier::Wait(wait) => {
                // Give the slot back: the earlier file may need it to get on.
                drop(_permit);
                tokio::select! {
                    _ = p.stop.cancelled() => return SubmitStep::Stopped,
                    _ = tokio::time::sleep(wait) => continue,
                }
            }
            Earlier::None => {}
            Earlier::Stopped => return SubmitStep::Stopped,
        }
        if store(p, "submitting", || p.journal.mark_submitting(job.id))
            .await
            .is_none()
        {
            return SubmitStep::Stopped;
        }
        let asked = std::time::Instant::now();
        tokio::select! {
            _ = p.stop.cancelled() => {
                // Nothing was sent: no doubt to leave behind.
                let _ = p.journal.mark_claimed(job.id).await;
                return SubmitStep::Stopped;
            }
            turn = p.scheduler.submit_turn(job.id) => if turn.is_none() { return SubmitStep::Stopped },
        }
        p.metrics.rate_limit_wait("submit", asked.elapsed());
        let sending = &p.sending[job.inbox];
        sending.fetch_add(1, Ordering::Relaxed);
        let reply = tokio::select! {
            // Only a hard stop abandons a request in flight; the journal then says
            // "submitting" and the next start treats the outcome as unknown.
            _ = p.abort.cancelled() => None,
            reply = p.api.submit(prepared.body, job.size) => Some(reply),
        };
        sending.fetch_sub(1, Ordering::Relaxed);
        let Some(reply) = reply else {
            return SubmitStep::Stopped;
        };
        let status = match &reply {
            Ok(_) => Some(200),
            Err(failure) => failure.http_status(),
        };
        p.metrics.api_request("submit", status);
        match reply {
            Ok(document_id) => {
                p.scheduler.account_ok(true);
                return submitted(p, job, document_id).await;
            }
            Err(ApiFailure::Duplicate {
                document_id: Some(document_id),
                ..
            }) => {
                tracing::info!(file = %job.name, document_id = %document_id, "the service already has this content (409); using its document");
                return answered_from(p, job, document_id).await;
            }
            Err(ApiFailure::Account { status, message }) => {
                let _ = p.journal.mark_claimed(job.id).await;
                p.scheduler
                    .account_refused(status, &message, p.config.api.account_retry);
            }
            Err(ApiFailure::Transient { status, message }) => {
                let _ = p.journal.mark_claimed(job.id).await;
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
                return SubmitStep::Finished(refused(&failure, server_errors > 0 || job.in_doubt));
            }
        }
    }
}

/// How long a file waits before looking again when an earlier file with the same content is
/// still being submitted.
const SAME_CONTENT_WAIT: Duration = Duration::from_millis(500);

/// How long a file waits before looking again when an earlier file has not been read yet
/// (it is being read right now, in another prepared slot).
const NOT_READ_YET_WAIT: Duration = Duration::from_millis(50);

/// What the journal knows about this content.
enum Earlier {
    /// Answered from an earlier document: go poll it.
    Answered,
    /// An earlier file with this (or possibly this) content is on its way: look again later.
    Wait(Duration),
    None,
    Stopped,
}

/// The duplicate rule: the same content is never paid for twice. If the journal has a
/// document for it, this file is answered from that document.
async fn answer_from_earlier(p: &Pipeline, job: &mut Job, sha256: &str) -> Earlier {
    let found = store(p, "duplicate lookup", || {
        p.journal.same_content(job.id, sha256.to_string())
    })
    .await;
    match found {
        None => Earlier::Stopped,
        Some(SameContent::None) => Earlier::None,
        Some(SameContent::InFlight { name }) => {
            tracing::debug!(file = %job.name, "same content as {name}, which is being submitted; waiting for its document");
            Earlier::Wait(SAME_CONTENT_WAIT)
        }
        Some(SameContent::NotReadYet { name }) => {
            tracing::debug!(file = %job.name, "{name}, claimed earlier, is not read yet; waiting to compare");
            Earlier::Wait(NOT_READ_YET_WAIT)
        }
        Some(SameContent::Document { document_id, name }) => {
            tracing::info!(file = %job.name, document_id = %document_id, "same content as {name}: answered from its document, no new submit");
            match answered_from(p, job, document_id).await {
                SubmitStep::Submitted => Earlier::Answered,
                _ => Earlier::Stopped,
            }
        }
    }
}

/// Records the fresh `document_id` before anything else.
async fn submitted(p: &Pipeline, job: &mut Job, document_id: String) -> SubmitStep {
    let stored = store(p, "document_id", || {
        p.journal.mark_submitted(job.id, document_id.clone())
    })
    .await;
    if stored.is_none() {
        return SubmitStep::Stopped;
    }
    job.document_id = Some(document_id.clone());
    job.submitted_at = Some(SystemTime::now());
    let inbox = &p.config.inboxes[job.inbox];
    tracing::info!(inbox = %inbox.path.display(), file = %job.name, document_id = %document_id, "submitted");
    SubmitStep::Submitted
}

/// Points the file at an existing document (same content sent before) instead of a new one.
async fn answered_from(p: &Pipeline, job: &mut Job, document_id: String) -> SubmitStep {
    let stored = store(p, "duplicate_of", || {
        p.journal.mark_duplicate_of(job.id, document_id.clone())
    })
    .await;
    if stored.is_none() {
        return SubmitStep::Stopped;
    }
    job.document_id = Some(document_id.clone());
    job.duplicate_of = Some(document_id);
    job.submitted_at = Some(SystemTime::now());
    SubmitStep::Submitted
}

async fn store<T, F, Fut>(p: &Pipeline, what: &str, write: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    until_stored(&p.stop, what, write).await
}

fn unreadable(e: &std::io::Error) -> Outcome {
    Outcome::failed(
        ErrorKind::Unreadable,
        None,
        format!(
            "The file could not be read ({e}). Check the scanner's file permissions and put it in the folder again."
        ),
    )
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

/// A 400, 413 or 409 as an outcome a person can act on. `in_doubt`: an earlier request for
/// this file may have reached the service without its answer reaching us.
fn refused(failure: &ApiFailure, in_doubt: bool) -> Outcome {
    let status = failure.http_status();
    let said = failure.message();
    match failure {
        ApiFailure::Duplicate { .. } => {
            let hint = if in_doubt {
                " The daemon was interrupted (or got no answer) while sending this file earlier; that earlier request reached the service, but its document number was never received. Look the document up in the Beorg portal by the time it was sent; the result there is this file's."
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
