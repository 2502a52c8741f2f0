//! Sending a claimed file to the API and getting its `document_id`.
//!
//! The file is opened, measured and hashed *before* asking the scheduler for a turn, so the
//! request leaves the moment the turn is granted (hashed: its hash from the claim, read
//! again only if it was written since, see [`hashed`](crate::pipeline::hashed)); its body
//! is streamed from the open file (base64-encoded in chunks as it is sent), read anew on
//! every try. The journal says `submitting` while a request may be on its way, and gets the
//! `document_id` as soon as it returns, before anything else is decided about it. A file
//! whose metadata moved while it was sent is judged by its content: the same bytes keep the
//! answer, other bytes supersede it (kept in the journal and the sidecar) and are sent
//! again. Server and network errors are retried with exponential backoff and jitter, a
//! bounded number of times; account refusals (401/402) pause the account and retry without
//! counting against the file.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit};

use crate::api::{ApiFailure, Asked, BodyFile, ProcessInfo, ProcessOptions, SubmitBody};
use crate::config::{InboxConfig, ProjectField, Tariff};
use crate::lifecycle::{Event, Member, Payload};
use crate::pipeline::hashed::{self, Hashed, Stamp};
use crate::pipeline::recorder::SameContent;
use crate::pipeline::{Context, Job, NotRecorded, Step};
use crate::scheduler::SubmitExpected;
use crate::sidecar::{ErrorKind, Outcome};

/// A body ready to send (nothing of the file in it yet), and the open file it reads from.
struct Prepared {
    body: SubmitBody,
    sha256: String,
    /// Kept open until the answer is in (each file of a set): its `fstat` after the send
    /// tells whether the file changed while it was read or sent.
    files: Vec<(std::fs::File, Stamp)>,
    /// Each file's path, name (for messages) and the SHA-256 of the bytes read for the send.
    sent: Vec<Sent>,
}

/// One file as it was read for a submit.
#[derive(Debug, Clone)]
struct Sent {
    path: std::path::PathBuf,
    /// Its name in the set (empty for a single file).
    name: String,
    sha256: String,
}

/// What is in the work folder now, compared by content with what was sent.
enum Now {
    /// The same bytes (only the metadata moved: a `touch`, the same file copied over it).
    Same,
    /// Deleted after it was sent (for a set: these of its files, named).
    Deleted(String),
    /// Other bytes now (for a set: these of its files, named).
    Changed(String),
}

impl Now {
    /// Why an answer is not used, in plain words (for the log and the sidecar).
    fn why(&self, payload: &Payload) -> String {
        match (self, payload.is_set()) {
            (Now::Changed(names), true) => {
                format!("{names} of this set changed while the set was sent (other bytes now)")
            }
            (Now::Deleted(names), true) => {
                format!("{names} of this set was deleted while the set was sent")
            }
            (Now::Changed(_), false) => {
                "the file changed while it was sent (other bytes now)".to_string()
            }
            (Now::Deleted(_), false) => "the file was deleted while it was sent".to_string(),
            (Now::Same, _) => "unchanged".to_string(),
        }
    }
}

/// Reads the files that were sent again from the work folder and compares their content with
/// what was sent: metadata that moved is not a change by itself.
async fn content_now(sent: &[Sent]) -> Now {
    let sent = sent.to_vec();
    let compared = tokio::task::spawn_blocking(move || {
        let (mut deleted, mut changed) = (Vec::new(), Vec::new());
        for file in &sent {
            match crate::store::fsutil::sha256_hex_of_file(&file.path) {
                Ok(sha256) if sha256 == file.sha256 => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => deleted.push(&file.name),
                // Other bytes, or unreadable now: not known to be what was sent.
                _ => changed.push(&file.name),
            }
        }
        let names = |list: Vec<&String>| {
            list.iter()
                .map(|n| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !changed.is_empty() {
            Now::Changed(names(changed))
        } else if !deleted.is_empty() {
            Now::Deleted(names(deleted))
        } else {
            Now::Same
        }
    })
    .await;
    compared.unwrap_or_else(|_| Now::Changed(String::new()))
}

/// Whether every open file is still as it was read.
fn all_unchanged(files: &[(std::fs::File, Stamp)]) -> bool {
    files
        .iter()
        .all(|(file, read_as)| file.metadata().is_ok_and(|m| Stamp::of(&m) == *read_as))
}

/// What reading a file for its submit gave.
enum Read {
    Ready(Prepared),
    /// The file changed while it was being read.
    Changed,
}

/// How long a file may wait for something before the wait is logged at WARN (once).
pub const LONG_WAIT: Duration = Duration::from_secs(60);

/// How often a file waiting for a same-request submit looks again if no event woke it.
const SAME_REQUEST_RECHECK: Duration = Duration::from_secs(5);

/// A wait that says so, once, when it has lasted [`LONG_WAIT`].
pub struct LongWait {
    since: Instant,
    reported: bool,
}

impl LongWait {
    pub fn new() -> LongWait {
        LongWait {
            since: Instant::now(),
            reported: false,
        }
    }

    /// True exactly once: the first time it is asked after `limit` has passed.
    pub fn due(&mut self, now: Instant, limit: Duration) -> bool {
        if self.reported || now.duration_since(self.since) < limit {
            return false;
        }
        self.reported = true;
        true
    }
}

impl Default for LongWait {
    fn default() -> Self {
        LongWait::new()
    }
}

/// Submits on their way, by request (content and what is asked): a file with the same
/// request waits for that one's document instead of paying again. Only files this daemon is
/// driving are here, so a file that cannot finish (its failed/ folder missing, its inbox no
/// longer configured) never holds anyone back; holding ends when the submit has its answer.
#[derive(Default)]
pub struct SameRequest {
    held: Mutex<HashMap<(String, String), String>>,
    /// Woken whenever a hold ends.
    released: Notify,
}

/// A hold on one request; dropping it lets a waiting file with the same request look again.
struct Holding<'a> {
    owner: &'a SameRequest,
    key: (String, String),
}

impl SameRequest {
    /// Holds `(sha256, request)` for `name`, or names the file that holds it.
    fn enter(&self, sha256: &str, request: &str, name: &str) -> Result<Holding<'_>, String> {
        let key = (sha256.to_string(), request.to_string());
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(holder) = held.get(&key) {
            return Err(holder.clone());
        }
        held.insert(key.clone(), name.to_string());
        Ok(Holding { owner: self, key })
    }
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        self.owner
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
        self.owner.released.notify_waiters();
    }
}

/// Submits `job` until it has a `document_id` or a final outcome. `permit` (one of the few
/// "prepared submit" slots) bounds how many files are open and ready to send at once; it is
/// given back during waits and backoffs. `expected` (this file's place in the oldest-first
/// order of submits) is likewise let go during those waits and taken again after them.
pub async fn submit(
    p: &Context,
    job: &mut Job,
    mut permit: Option<OwnedSemaphorePermit>,
    expected: SubmitExpected,
) -> Step {
    let mut expected = Some(expected);
    let inbox = job.inbox.clone();
    let mut server_errors = 0u32;
    let mut waiting: Option<LongWait> = None;
    // The content changed since it was hashed: read and record it again before going on.
    let mut rehash = false;
    loop {
        // The content hash is known from the claim; a row from an older daemon (or content
        // changed since) is hashed here, once.
        let sha256 = match job.sha256.clone() {
            Some(sha256) if !rehash => sha256,
            _ => match crate::pipeline::claim::hash_and_record(p, job).await {
                Ok(Some(sha256)) => sha256,
                Ok(None) => return Step::Stopped,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Step::Vanished,
                Err(e) => return Step::Finish(unreadable(&e)),
            },
        };
        rehash = false;
        // A set's request depends on its files (known once hashed).
        let (info, request) = what_is_asked(job);
        // The same request on its way from another file: wait for its answer (woken when
        // its hold ends), never paying twice. Nothing is read while waiting.
        let released = p.same_request.released.notified();
        tokio::pin!(released);
        released.as_mut().enable();
        let holding = match p.same_request.enter(&sha256, &request, &job.name) {
            Ok(holding) => holding,
            Err(holder) => {
                drop(permit.take());
                drop(expected.take());
                let wait = waiting.get_or_insert_with(LongWait::new);
                if wait.due(Instant::now(), LONG_WAIT) {
                    tracing::warn!(
                        inbox = %inbox.path.display(), file = %job.name,
                        "has waited over {} for {holder} (same content, asked the same way), which is being sent: it is answered from that file's document, nothing is paid twice; if this lasts, look in the log for what holds {holder} (account paused? server errors?)",
                        humantime::format_duration(LONG_WAIT)
                    );
                } else {
                    tracing::debug!(file = %job.name, "same content and request as {holder}, which is being sent; waiting for its document");
                }
                tokio::select! {
                    _ = p.stop.cancelled() => return Step::Stopped,
                    _ = released => {}
                    _ = tokio::time::sleep(SAME_REQUEST_RECHECK) => {}
                }
                continue;
            }
        };
        waiting = None;
        if expected.is_none() {
            expected = Some(p.scheduler.expect_submit(job.id));
        }
        match answer_from_earlier(p, job, &sha256, &request, Asking::BeforeSubmit).await {
            Earlier::Answered => return Step::Next,
            Earlier::None => {}
            Earlier::Stopped => return Step::Stopped,
        }
        let _permit = match permit.take() {
            Some(permit) => permit,
            None => {
                // The slots may all be held by later files waiting for their turn after this
                // one: let them go meanwhile (holding our place here would deadlock).
                drop(expected.take());
                let permit = tokio::select! {
                    _ = p.stop.cancelled() => return Step::Stopped,
                    permit = p.prepared_slots.clone().acquire_owned() => permit.expect("never closed"),
                };
                expected = Some(p.scheduler.expect_submit(job.id));
                permit
            }
        };
        let prepared = match prepare(p, job, &info).await {
            Ok(Read::Ready(prepared)) => prepared,
            Ok(Read::Changed) => {
                drop((_permit, holding, expected.take()));
                if !wait_until_unchanged(p, job).await {
                    return Step::Stopped;
                }
                rehash = true;
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Step::Vanished,
            Err(e) => return Step::Finish(unreadable(&e)),
        };
        if prepared.sha256 != sha256 {
            // Changed since it was hashed (and settled again since): hashed (a set: planned)
            // again, and the duplicate rule checked again for the content as it is now.
            rehash = true;
            permit = Some(_permit);
            continue;
        }
        let submitting = Event::Submitting {
            request: request.clone(),
        };
        if let Err(stopped) = p.recorder.record(job, submitting).await {
            return stopped.into();
        }
        let asked = std::time::Instant::now();
        let turn = tokio::select! {
            _ = p.stop.cancelled() => {
                // Nothing was sent: no doubt to leave behind. (Tried once, as the daemon is
                // stopping; if that fails, the next start treats the file as in doubt.)
                let reason = "the daemon stopped before its turn to be sent".to_string();
                let _ = p.recorder.record(job, Event::NotSent { reason }).await;
                return Step::Stopped;
            }
            turn = p.scheduler.submit_turn(job.id) => match turn {
                Some(turn) => turn,
                None => return Step::Stopped,
            },
        };
        p.metrics.rate_limit_wait("submit", asked.elapsed());
        let sending = &job.inbox.sending;
        sending.fetch_add(1, Ordering::Relaxed);
        turn.spend();
        let reply = tokio::select! {
            // Only a hard stop abandons a request in flight; the journal then says
            // "submitting" and the next start treats the outcome as unknown.
            _ = p.abort.cancelled() => None,
            reply = p.api.submit(prepared.body) => Some(reply),
        };
        sending.fetch_sub(1, Ordering::Relaxed);
        let Some(reply) = reply else {
            return Step::Stopped;
        };
        let status = match &reply {
            Ok(_) => Some(200),
            Err(failure) => failure.http_status(),
        };
        p.metrics.api_request("submit", status);
        // Every document the API gives is stored before anything else is decided about it:
        // used as this file's answer, or listed in its sidecar as superseded.
        if let Ok(document_id) = &reply
            && !record_document(p, job, document_id, &sha256, &request).await
        {
            return Step::Stopped;
        }
        match judge_after_send(p, job, (&prepared.files, &prepared.sent), &reply).await {
            AfterSend::UseTheAnswer => {}
            AfterSend::SendAgain => {
                drop((_permit, holding, expected.take()));
                if !wait_until_unchanged(p, job).await {
                    return Step::Stopped;
                }
                rehash = true;
                continue;
            }
            AfterSend::Stopped => return Step::Stopped,
        }
        match reply {
            Ok(document_id) => {
                p.scheduler.account_ok(true);
                return submitted(p, job, document_id).await;
            }
            Err(ApiFailure::Duplicate {
                document_id: Some(document_id),
                ..
            }) if asked_the_same(p, &document_id, &request).await => {
                tracing::info!(file = %job.name, document_id = %document_id, "the service already has this content (409); using its document");
                return answered_from(p, job, document_id, &request).await;
            }
            // A 409 for content this daemon sent itself (its document recorded since the
            // lookup before the send) is answered from that document, never a duplicate.
            Err(failure @ ApiFailure::Duplicate { .. }) => {
                let retried = server_errors > 0;
                return conflict(p, job, &failure, (&sha256, &request), retried).await;
            }
            Err(ApiFailure::Account { status, message }) => {
                let reason =
                    format!("HTTP {status} ({message}): an account problem, sending pauses");
                if let Err(stopped) = p.recorder.record(job, Event::NotSent { reason }).await {
                    return stopped.into();
                }
                p.scheduler
                    .account_refused(status, &message, p.config.api.account_retry);
            }
            Err(ApiFailure::Transient { status, message }) => {
                let answer = status.map_or("no answer".to_string(), |s| format!("HTTP {s}"));
                let reason = format!(
                    "{answer} ({message}): try {} of {}",
                    server_errors + 1,
                    p.config.api.submit_attempts
                );
                if let Err(stopped) = p.recorder.record(job, Event::NotSent { reason }).await {
                    return stopped.into();
                }
                drop((holding, expected.take()));
                server_errors += 1;
                if server_errors >= p.config.api.submit_attempts {
                    return Step::Finish(gave_up(server_errors, status, &message));
                }
                if !wait_before_retry(p, job, server_errors, status, &message).await {
                    return Step::Stopped;
                }
            }
            Err(failure) => {
                return Step::Finish(refused(&failure, server_errors > 0 || job.in_doubt));
            }
        }
    }
}

/// A 409 without a document this request may use: a document for this content in the
/// journal answers it (this daemon's own, recorded since the lookup before the send), else
/// it is refused, as content this daemon sent itself before it changed, or as a duplicate
/// (`retried`: an earlier try of this run may have reached the service).
async fn conflict(
    p: &Context,
    job: &mut Job,
    failure: &ApiFailure,
    (sha256, request): (&str, &str),
    retried: bool,
) -> Step {
    match answer_from_earlier(p, job, sha256, request, Asking::AfterConflict).await {
        Earlier::Answered => Step::Next,
        Earlier::Stopped => Step::Stopped,
        Earlier::None => match own_earlier(p, job).await {
            Some(own) => Step::Finish(refused_as_ours(failure, job, &own)),
            None => Step::Finish(refused(failure, retried || job.in_doubt)),
        },
    }
}

/// The backoff before try `server_errors + 1` of a submit, said at WARN; false if the
/// daemon stops meanwhile.
async fn wait_before_retry(
    p: &Context,
    job: &Job,
    server_errors: u32,
    status: Option<u16>,
    message: &str,
) -> bool {
    let wait = backoff(p, server_errors);
    tracing::warn!(
        inbox = %job.inbox.path.display(), file = %job.name, http_status = status,
        "submit failed ({message}); try {} of {} in {}",
        server_errors + 1, p.config.api.submit_attempts, humantime::format_duration(wait)
    );
    tokio::select! {
        _ = p.stop.cancelled() => false,
        _ = tokio::time::sleep(wait) => true,
    }
}

/// What to do with a submit's reply once the files sent are looked at again.
enum AfterSend {
    UseTheAnswer,
    /// Other bytes now: the answer (superseded, if any) is not used; send again once the
    /// content stops changing.
    SendAgain,
    Stopped,
}

/// Verifies after the send: the open files' size, mtime and ctime as when they were hashed.
/// If they moved, the content decides: the same bytes (a `touch`, a copy of the same file
/// over it) keep the answer; a file deleted after it was sent keeps it too (the result is
/// kept in failed/); other bytes are sent again once they stop changing, the earlier answer
/// superseded. (A file whose size changed while it was streamed has already broken the
/// request off.)
async fn judge_after_send(
    p: &Context,
    job: &mut Job,
    (files, sent): (&[(std::fs::File, Stamp)], &[Sent]),
    reply: &Result<String, ApiFailure>,
) -> AfterSend {
    if all_unchanged(files) || matches!(reply, Err(ApiFailure::Account { .. })) {
        return AfterSend::UseTheAnswer;
    }
    let inbox = job.inbox.clone();
    let now = content_now(sent).await;
    let document = reply.as_ref().ok();
    match (&now, document) {
        (Now::Same, _) => {
            tracing::info!(
                inbox = %inbox.path.display(), file = %job.name,
                "touched while it was sent, but its bytes are the ones sent: the answer is used"
            );
            return AfterSend::UseTheAnswer;
        }
        (Now::Deleted(_), Some(document_id)) => {
            tracing::warn!(
                inbox = %inbox.path.display(), file = %job.name, document_id = %document_id,
                "{} (from the work folder): its answer is used, the result goes to failed/ with what is left",
                now.why(&job.payload)
            );
            return AfterSend::UseTheAnswer;
        }
        _ => {}
    }
    let why = now.why(&job.payload);
    let answer = match document {
        Some(document_id) => {
            let superseded = Event::Superseded {
                document_id: document_id.clone(),
                why: why.clone(),
            };
            if p.recorder.record(job, superseded).await.is_err() {
                return AfterSend::Stopped;
            }
            format!(
                "document {document_id} (its answer, kept in the journal and listed in the sidecar under superseded) describes"
            )
        }
        None => "the answer describes".to_string(),
    };
    tracing::warn!(
        inbox = %inbox.path.display(), file = %job.name,
        "{why}; {answer} the earlier bytes and is not used: the file is sent again once it stops changing (is something still writing it?)"
    );
    let reason = format!("{why}: sent again once it stops changing");
    match p.recorder.record(job, Event::NotSent { reason }).await {
        Ok(()) => AfterSend::SendAgain,
        Err(_) => AfterSend::Stopped,
    }
}

/// Whether a document a 409 names may answer this request: not when the journal knows it
/// was asked for another way (another type or options): its result is not this file's.
async fn asked_the_same(p: &Context, document_id: &str, request: &str) -> bool {
    match p.recorder.request_of_document(document_id).await {
        Some(Some(asked)) => asked == request,
        _ => true,
    }
}

/// Waits until the work file's size, mtime and ctime stay the same for the inbox's `settle`
/// (metadata only: nothing is read). False if the daemon stops meanwhile.
async fn wait_until_unchanged(p: &Context, job: &Job) -> bool {
    let settle = job.inbox.settle.max(Duration::from_millis(100));
    let stamp = |path: &std::path::Path| stamps(path);
    let mut wait = LongWait::new();
    let mut last = stamp(&job.work_path);
    loop {
        tokio::select! {
            _ = p.stop.cancelled() => return false,
            _ = tokio::time::sleep(settle) => {}
        }
        let now = stamp(&job.work_path);
        if now == last {
            return true;
        }
        last = now;
        if wait.due(Instant::now(), LONG_WAIT) {
            tracing::warn!(
                file = %job.name, work_file = %job.work_path.display(),
                "still changing after {}: something keeps writing it after it was taken from the inbox; it is sent once it stops changing (stop the writer, or take the file out and put it back complete)",
                humantime::format_duration(LONG_WAIT)
            );
        }
    }
}

/// Size, mtime and ctime of a file, or of every entry of a set's folder (by name).
fn stamps(path: &std::path::Path) -> Option<Vec<(String, Stamp)>> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return Some(vec![(String::new(), Stamp::of(&meta))]);
    }
    let mut all: Vec<(String, Stamp)> = std::fs::read_dir(path)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((
                e.file_name().to_string_lossy().into_owned(),
                Stamp::of(&meta),
            ))
        })
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    Some(all)
}

/// What the journal knows about this content and request.
enum Earlier {
    /// Answered from an earlier document: go poll it.
    Answered,
    None,
    Stopped,
}

/// When the duplicate rule is asked.
#[derive(Clone, Copy)]
enum Asking {
    /// Before paying for a submit: a requeued outcome's documents do not answer (the
    /// operator asked for the file to be sent again).
    BeforeSubmit,
    /// After the service answered 409: any document the journal has for the content does.
    AfterConflict,
}

/// The duplicate rule: the same request (content and what is asked) is never paid for twice.
/// If the journal has a document for it, this file is answered from that document.
async fn answer_from_earlier(
    p: &Context,
    job: &mut Job,
    sha256: &str,
    request: &str,
    asking: Asking,
) -> Earlier {
    let found = match asking {
        Asking::BeforeSubmit => p.recorder.same_content(job, sha256, request).await,
        Asking::AfterConflict => {
            p.recorder
                .same_content_after_conflict(job, sha256, request)
                .await
        }
    };
    match found {
        None => Earlier::Stopped,
        Some(SameContent::None) => Earlier::None,
        Some(SameContent::Document {
            document_id,
            ours: true,
            ..
        }) => {
            tracing::info!(file = %job.name, document_id = %document_id, "this content was sent for this file before and its document is in the journal: that answer is used, no new submit");
            match submitted(p, job, document_id).await {
                Step::Next => Earlier::Answered,
                _ => Earlier::Stopped,
            }
        }
        Some(SameContent::Document {
            document_id, name, ..
        }) => {
            tracing::info!(file = %job.name, document_id = %document_id, "same content as {name}: answered from its document, no new submit");
            match answered_from(p, job, document_id, request).await {
                Step::Next => Earlier::Answered,
                _ => Earlier::Stopped,
            }
        }
    }
}

/// Logs the fresh `document_id` the moment it arrives (so it reaches the log even if the
/// journal cannot take it) and records it among the file's documents before anything else is
/// decided about it. False if the daemon stopped before it could be stored.
async fn record_document(
    p: &Context,
    job: &mut Job,
    document_id: &str,
    sha256: &str,
    request: &str,
) -> bool {
    tracing::info!(inbox = %job.inbox.path.display(), file = %job.name, document_id = %document_id, "submitted");
    let paid = Event::Document {
        document_id: document_id.to_string(),
        sha256: sha256.to_string(),
        request: request.to_string(),
    };
    let stored = p.recorder.record(job, paid).await;
    if let Err(NotRecorded::Stopped) = stored {
        unstored(job, document_id);
    }
    stored.is_ok()
}

/// Says where a paid document is when the daemon stopped before the journal took it.
fn unstored(job: &Job, document_id: &str) {
    tracing::error!(
        inbox = %job.inbox.path.display(), file = %job.name, document_id = %document_id,
        "stopped before this document_id could be stored in the journal: the next start sends the file again (the service then answers 409); its result is in the Beorg portal under this id"
    );
}

/// Makes `document_id` (recorded by [`record_document`]) the file's own answer.
async fn submitted(p: &Context, job: &mut Job, document_id: String) -> Step {
    let event = Event::Submitted {
        document_id: document_id.clone(),
    };
    match p.recorder.record(job, event).await {
        Ok(()) => Step::Next,
        Err(not_recorded) => {
            if let NotRecorded::Stopped = not_recorded {
                unstored(job, &document_id);
            }
            not_recorded.into()
        }
    }
}

/// Points the file at an existing document (same content sent before) instead of a new one.
async fn answered_from(p: &Context, job: &mut Job, document_id: String, request: &str) -> Step {
    let event = Event::AnsweredFrom {
        document_id,
        request: request.to_string(),
    };
    match p.recorder.record(job, event).await {
        Ok(()) => Step::Next,
        Err(not_recorded) => not_recorded.into(),
    }
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

/// What `job`'s submit asks for, and its request key for the duplicate rule: the inbox's
/// for a file, the set's planned `process_info` for a set.
fn what_is_asked(job: &Job) -> (Asked, String) {
    let Payload::Set { members } = &job.payload else {
        return (asked(&job.inbox), request_key(&job.inbox));
    };
    let inbox = &job.inbox;
    let info: Vec<ProcessInfo> = members.iter().map(|m| m.process_info()).collect();
    let mut key = serde_json::json!({
        "project": inbox.project_id,
        "set": info,
    });
    if inbox.project_field != ProjectField::default() {
        key["project_field"] = inbox.project_field.as_str().into();
    }
    let asked = Asked {
        project_id: inbox.project_id.clone(),
        project_field: inbox.project_field,
        process_info: Some(info),
    };
    (asked, key.to_string())
}

/// What a submit from this inbox asks for: its project under its field name, and
/// `process_info` (its type, key and stages) unless the tariff is "Passport Auto".
fn asked(inbox: &InboxConfig) -> Asked {
    let info = ProcessInfo {
        doc_type: inbox.doc_type.clone(),
        key: inbox.key.clone(),
        options: (!inbox.stages.is_empty()).then(|| ProcessOptions {
            stages: inbox.stages.clone(),
            relation: None,
        }),
    };
    Asked {
        project_id: inbox.project_id.clone(),
        project_field: inbox.project_field,
        process_info: match inbox.tariff {
            Tariff::Universal => Some(vec![info]),
            Tariff::PassportAuto => None,
        },
    }
}

/// What a file's request asks, as canonical JSON: project, type, key and stages, plus the
/// project field and the tariff when they are not the defaults (so the rows of older
/// daemons, which never sent anything else, keep matching). Two files are "the same
/// request" when their content and this are equal.
pub fn request_key(inbox: &InboxConfig) -> String {
    let mut key = serde_json::json!({
        "project": inbox.project_id,
        "type": inbox.doc_type,
        "key": inbox.key,
        "stages": inbox.stages,
    });
    if inbox.project_field != ProjectField::default() {
        key["project_field"] = inbox.project_field.as_str().into();
    }
    if inbox.tariff != Tariff::default() {
        key["tariff"] = inbox.tariff.as_str().into();
    }
    key.to_string()
}

/// Opens and hashes the file (each file of a set) in the blocking pool, checking with `fstat`
/// of the open file before and after that it did not change while it was read, and makes
/// the submit body (which reads the same open files again, in chunks, as it is sent).
async fn prepare(p: &Context, job: &Job, info: &Asked) -> std::io::Result<Read> {
    let (api, info, payload) = (p.api.clone(), info.clone(), job.payload.clone());
    let parts = job.payload.parts(&job.work_path);
    let known = job.hashed.clone();
    tokio::task::spawn_blocking(move || {
        let mut files = Vec::with_capacity(parts.len());
        let mut sent = Vec::with_capacity(parts.len());
        for (path, name) in parts {
            let Some((file, stamp, sha256)) = read_unchanged(&path, &known)? else {
                return Ok(Read::Changed);
            };
            files.push((file, stamp));
            sent.push(Sent { path, name, sha256 });
        }
        let body_files = files
            .iter()
            .map(|(file, stamp)| {
                Ok(BodyFile {
                    file: file.try_clone()?,
                    size: stamp.size,
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let body = api.submit_body(body_files, &info);
        Ok(Read::Ready(Prepared {
            body,
            sha256: content_hash(&payload, &files, &sent),
            files,
            sent,
        }))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Opens one file and gives the hash of its bytes: the one this run hashed them under if its
/// stamp is still the same (not read again), else hashed now; `None` if it changed while it
/// was read.
fn read_unchanged(
    path: &std::path::Path,
    known: &[Hashed],
) -> std::io::Result<Option<(std::fs::File, Stamp, String)>> {
    let file = std::fs::File::open(path)?;
    let stamp = Stamp::of(&file.metadata()?);
    if let Some(sha256) = hashed::known_hash(known, path, stamp) {
        return Ok(Some((file, stamp, sha256.to_string())));
    }
    let (sha256, unchanged) = hashed::hash_open_file(&file)?;
    Ok(unchanged.map(|stamp| (file, stamp, sha256)))
}

/// The content hash of what was read: a file's own, a set's over its files as read.
fn content_hash(payload: &Payload, files: &[(std::fs::File, Stamp)], sent: &[Sent]) -> String {
    match payload {
        Payload::File => sent.first().map(|s| s.sha256.clone()).unwrap_or_default(),
        Payload::Set { members } => {
            let read: Vec<Member> = members
                .iter()
                .zip(files.iter().zip(sent))
                .map(|(member, ((_, stamp), sent))| Member {
                    sha256: sent.sha256.clone(),
                    size: stamp.size,
                    ..member.clone()
                })
                .collect();
            crate::pipeline::set::set_sha256(&read)
        }
    }
}

/// The documents this daemon was given for `job` before its content changed, if any (so a
/// 409 for the parts that did not change is not reported as someone else's file).
async fn own_earlier(p: &Context, job: &Job) -> Option<Vec<String>> {
    let superseded = p.recorder.superseded_of(job).await?;
    (!superseded.is_empty()).then(|| superseded.into_iter().map(|s| s.document_id).collect())
}

/// A 409 for content this daemon sent itself as `own` before the file (or a file of the set)
/// changed: the service will not process those bytes again, and the earlier document
/// describes the earlier bytes, so it is not used as this content's answer.
fn refused_as_ours(failure: &ApiFailure, job: &Job, own: &[String]) -> Outcome {
    let what = match job.payload {
        Payload::Set { .. } => "files of this set",
        Payload::File => "this file",
    };
    Outcome::failed(
        ErrorKind::Duplicate,
        failure.http_status(),
        format!(
            "The service will not process {what} again (HTTP 409: {}): this daemon sent them as document {} before something changed in the work folder (see superseded); that result describes the earlier version. Put the scans in again as a new set, or look the document up in the Beorg portal.",
            failure.message(),
            own.join(", ")
        ),
    )
}

/// Exponential backoff from `retry_base`, capped at `retry_max`, with jitter in [½, 1].
fn backoff(p: &Context, attempt: u32) -> Duration {
    let api = &p.config.api;
    crate::retry::Backoff::exponential(api.retry_base, api.retry_max).wait(attempt)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A file hashed at its claim is not read a second time for its submit while it is as it
    /// was hashed (the hash given is the claim's, however it was come by); written since,
    /// it is read and hashed again.
    #[test]
    fn a_file_hashed_at_its_claim_is_not_read_again_for_its_submit_unless_written_since() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scan.jpg");
        std::fs::write(&path, b"the scanned bytes").unwrap();
        let (_, hashed) = hashed::hash_file(&path).unwrap();
        let as_claimed = Hashed {
            sha256: "the hash taken at the claim".to_string(),
            ..hashed.expect("unchanged while read")
        };
        let known = std::slice::from_ref(&as_claimed);
        let (_, _, sha256) = read_unchanged(&path, known).unwrap().unwrap();
        assert_eq!(sha256, "the hash taken at the claim");

        std::fs::write(&path, b"other scanned bytes").unwrap();
        let (_, stamp, sha256) = read_unchanged(&path, known).unwrap().unwrap();
        assert_eq!(
            sha256,
            crate::store::fsutil::sha256_hex(b"other scanned bytes")
        );
        assert_eq!(stamp.size, 19);
    }

    /// Finding 1: a wait longer than a minute is reported once, not every time it is checked.
    #[test]
    fn a_long_wait_is_reported_once() {
        let mut wait = LongWait::new();
        let start = wait.since;
        assert!(!wait.due(start, LONG_WAIT));
        assert!(!wait.due(start + LONG_WAIT - Duration::from_millis(1), LONG_WAIT));
        assert!(wait.due(start + LONG_WAIT, LONG_WAIT));
        assert!(!wait.due(start + LONG_WAIT * 2, LONG_WAIT));
        assert!(!wait.due(start + LONG_WAIT * 100, LONG_WAIT));
    }

    fn inbox(extra: &str) -> InboxConfig {
        let text = format!(
            "[api]\nproject_id = \"U_RATE_2\"\nmachine_uid = \"m\"\ntoken = \"t\"\n[[inbox]]\npath = \"/srv/in\"\ntype = \"PASSPORT\"\ndone = \"/srv/done\"\nfailed = \"/srv/failed\"\n{extra}\n"
        );
        let config =
            crate::config::Config::from_toml(&text, std::path::Path::new("/c.toml"), None).unwrap();
        config.inboxes[0].clone()
    }

    /// Issue 10: the project, its field name and the tariff are part of "the same request";
    /// an inbox that sets none of them asks exactly as older daemons recorded it, so their
    /// journal rows keep answering re-scans.
    #[test]
    fn the_request_includes_project_field_and_tariff() {
        assert_eq!(
            request_key(&inbox("")),
            r#"{"project":"U_RATE_2","type":"PASSPORT","key":null,"stages":[]}"#
        );
        assert_eq!(
            request_key(&inbox(
                "project_id = \"U_RATE_2\"\nproject_field = \"project_id\"\ntariff = \"universal\""
            )),
            request_key(&inbox(""))
        );
        let keys: Vec<String> = [
            "",
            "project_id = \"U_RATE_3\"",
            "project_field = \"campaign_id\"",
            "tariff = \"passport_auto\"",
        ]
        .iter()
        .map(|extra| request_key(&inbox(extra)))
        .collect();
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert!(
            asked(&inbox("tariff = \"passport_auto\""))
                .process_info
                .is_none()
        );
        let asked = asked(&inbox(
            "project_id = \"U_RATE_3\"\nproject_field = \"campaign_id\"",
        ));
        assert_eq!(asked.project_id, "U_RATE_3");
        assert_eq!(asked.project_field, ProjectField::CampaignId);
        assert_eq!(asked.process_info.unwrap().len(), 1);
    }

    /// Finding 1: one request on its way holds only files with the same content and request.
    #[test]
    fn only_the_same_request_waits() {
        let same = SameRequest::default();
        let held = same.enter("aa", "PASSPORT", "a.jpg").unwrap();
        assert_eq!(
            same.enter("aa", "PASSPORT", "b.jpg").err().as_deref(),
            Some("a.jpg")
        );
        assert!(same.enter("aa", "SNILS", "c.jpg").is_ok());
        assert!(same.enter("bb", "PASSPORT", "d.jpg").is_ok());
        drop(held);
        assert!(same.enter("aa", "PASSPORT", "b.jpg").is_ok());
    }
}
