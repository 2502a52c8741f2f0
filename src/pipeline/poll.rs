//! Waiting for a submitted document's result.
//!
//! The first request goes `first_poll` after the submit, then at intervals growing by half
//! each time up to `max_poll_interval`; 425 means "still processing". Server and network
//! errors are retried the same way. `result_timeout` counts only time the daemon was able to
//! ask: it runs while this stage waits and asks, not while the daemon is down nor while it
//! waits for a turn (an account pause, a queue of requests). The time spent so far is kept in
//! the journal, so a restart neither resets the timeout nor counts the downtime, and after a
//! restart the result is always asked for at least once before the file can time out (a
//! result that became ready meanwhile is not thrown away). A result is judged here: any
//! document marked `broken` sends the file to failed with the API's reasons.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::api::{ApiFailure, ResultReply};
use crate::lifecycle::{Event, Payload};
use crate::pipeline::Context;
use crate::pipeline::ready_times::{Sample, Schedule};
use crate::pipeline::{Job, Step};
use crate::sidecar::{ErrorKind, Outcome};

/// A 200 whose body is not JSON is asked for again this many times before the file goes to
/// failed with the raw text kept.
const UNPARSEABLE_RETRIES: u32 = 3;

/// Polls until a result, a final error or the deadline.
pub async fn poll(p: &Context, job: &mut Job) -> Step {
    let inbox = job.inbox.clone();
    let Some(document_id) = job.document_id.clone() else {
        tracing::error!(file = %job.name, "a fault in the daemon: asked to poll a file without a document_id; it is taken up again at the next start");
        return Step::Stopped;
    };
    let asked_before = p.recorder.poll_asked(job).await;
    let started = Instant::now();
    let mut clock = AskingClock::start(asked_before);
    let request = super::submit::request_key(&inbox);
    // A fresh document (not resumed, not answered from an earlier one) is asked for when
    // results of its request are likely ready, and teaches the schedule when it was.
    let learning = asked_before.is_zero() && job.duplicate_of.is_none();
    let mut schedule = if learning {
        let (first, max) = (inbox.first_poll, inbox.max_poll_interval);
        p.ready_times
            .schedule(&p.recorder, &request, first, max)
            .await
    } else {
        // After a restart, the asking time carried over counts towards the first wait (a
        // long-submitted file is asked for at once).
        Schedule::resumed(inbox.first_poll, inbox.max_poll_interval, asked_before)
    };
    let mut unparseable = 0u32;
    // Whether this run has asked yet: a file never times out before one answer of this run.
    let mut asked_once = false;
    // The last ask answered "still processing", counted from the submit.
    let mut pending: Option<Duration> = None;
    loop {
        let after_next = schedule.peek_after_next();
        let ask = schedule.next_ask();
        let mut wait = ask.at.saturating_sub(started.elapsed());
        if asked_once {
            wait = wait.min(inbox.result_timeout.saturating_sub(clock.asked()));
        }
        tokio::select! {
            _ = p.stop.cancelled() => return Step::Stopped,
            _ = tokio::time::sleep(wait) => {}
        }
        if asked_once && clock.asked() >= inbox.result_timeout {
            return Step::Finish(timed_out(inbox.result_timeout, &document_id));
        }
        let turn_asked = Instant::now();
        let turn = if ask.spare {
            // Only on a slot nothing else wants; not granted by the next ask, skipped.
            let skip_at = started + after_next;
            tokio::select! {
                _ = p.stop.cancelled() => return Step::Stopped,
                turn = p.scheduler.spare_poll_turn() => turn,
                _ = tokio::time::sleep_until(skip_at.into()) => continue,
            }
        } else {
            tokio::select! {
                _ = p.stop.cancelled() => return Step::Stopped,
                turn = p.scheduler.poll_turn() => turn,
            }
        };
        let Some(turn) = turn else {
            return Step::Stopped;
        };
        let turn_wait = turn_asked.elapsed();
        p.metrics.rate_limit_wait("poll", turn_wait);
        clock.not_counting(turn_wait);
        let sent_at = started.elapsed();
        turn.spend();
        let reply = tokio::select! {
            _ = p.stop.cancelled() => return Step::Stopped,
            reply = p.api.fetch_result(&document_id) => reply,
        };
        asked_once = true;
        let asked = Event::Asked {
            asked: clock.asked(),
            still_processing: matches!(reply, Ok(ResultReply::Pending)),
        };
        if let Err(stopped) = p.recorder.record(job, asked).await {
            return stopped.into();
        }
        let status = match &reply {
            Ok(ResultReply::Pending) => Some(425),
            Ok(_) => Some(200),
            Err(failure) => failure.http_status(),
        };
        p.metrics.api_request("result", status);
        match reply {
            Ok(ResultReply::Ready(result)) => {
                p.scheduler.account_ok(false);
                tracing::info!(inbox = %inbox.path.display(), file = %job.name, document_id = %document_id, "result ready");
                if learning {
                    let ready = sent_at;
                    let sample = Sample { pending, ready };
                    p.ready_times.observe(&request, sample).await;
                    let learned = Event::ReadyAfter { pending, ready };
                    if let Err(stopped) = p.recorder.record(job, learned).await {
                        return stopped.into();
                    }
                }
                let outcome = judge(result);
                return Step::Finish(match &job.payload {
                    Payload::Set { members } => name_broken_files(outcome, members),
                    Payload::File => outcome,
                });
            }
            Ok(ResultReply::Pending) => {
                p.scheduler.account_ok(false);
                pending = Some(sent_at);
                tracing::debug!(file = %job.name, document_id = %document_id, "still processing");
            }
            Ok(ResultReply::Unparseable(raw)) => {
                unparseable += 1;
                tracing::warn!(file = %job.name, document_id = %document_id, "the result is not valid JSON (answer {unparseable} of {UNPARSEABLE_RETRIES})");
                if unparseable >= UNPARSEABLE_RETRIES {
                    return Step::Finish(unreadable_result(raw));
                }
            }
            Err(ApiFailure::Account { status, message }) => {
                p.scheduler
                    .account_refused(status, &message, p.config.api.account_retry);
            }
            Err(ApiFailure::Transient { status, message }) => {
                let again = schedule.next_at().saturating_sub(started.elapsed());
                tracing::warn!(file = %job.name, document_id = %document_id, http_status = status, "result request failed ({message}); asking again in {}", humantime::format_duration(again));
            }
            Err(failure @ (ApiFailure::Rejected { .. } | ApiFailure::Duplicate { .. })) => {
                return Step::Finish(result_refused(&failure, &document_id));
            }
        }
    }
}

/// The time counted against `result_timeout`: asking time carried over from earlier runs,
/// plus this run's time in the poll stage, minus its waits for a turn.
struct AskingClock {
    started: Instant,
    before: Duration,
    not_counted: Duration,
}

impl AskingClock {
    fn start(before: Duration) -> AskingClock {
        AskingClock {
            started: Instant::now(),
            before,
            not_counted: Duration::ZERO,
        }
    }

    fn not_counting(&mut self, waited: Duration) {
        self.not_counted += waited;
    }

    fn asked(&self) -> Duration {
        (self.before + self.started.elapsed()).saturating_sub(self.not_counted)
    }
}

/// Done, unless a document in the result is marked broken. A "Universal" result lists its
/// documents under `documents`; a "Passport Auto" result is itself the one document (`data`,
/// `metadata`, `verifications`, and `broken` when set, at the top).
pub fn judge(result: Value) -> Outcome {
    let documents: Vec<&Value> = match result.get("documents") {
        Some(Value::Array(documents)) => documents.iter().collect(),
        _ => vec![&result],
    };
    let broken: Vec<&Value> = documents
        .into_iter()
        .filter(|d| is_true(d.get("broken")))
        .collect();
    if broken.is_empty() {
        return Outcome::done(result);
    }
    let reasons = broken_reasons(&broken);
    let message = if reasons.is_empty() {
        "The service could not read the document. Scan it again: the whole page, sharp, without glare.".to_string()
    } else {
        format!(
            "The service could not read the document: {}. Scan it again: the whole page, sharp, without glare.",
            reasons.join("; ")
        )
    };
    Outcome::failed(ErrorKind::Broken, Some(200), message).with_result(result)
}

/// Names the files (and keys) of the broken documents in a broken set's message.
pub fn name_broken_files(outcome: Outcome, members: &[crate::lifecycle::Member]) -> Outcome {
    let (Some(error), Some(result)) = (&outcome.error, &outcome.result) else {
        return outcome;
    };
    if error.kind != ErrorKind::Broken {
        return outcome;
    }
    let documents = result
        .get("documents")
        .and_then(serde_json::Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut parts = Vec::new();
    for (i, document) in documents.iter().enumerate() {
        if !is_broken(document) {
            continue;
        }
        let key = document.get("key").and_then(serde_json::Value::as_str);
        // By key; a document without one is taken to be the image at its place.
        let member = key
            .and_then(|k| members.iter().find(|m| m.key == k))
            .or_else(|| members.get(i));
        let reasons = broken_reasons(&[document]);
        let reasons = if reasons.is_empty() {
            "not readable".to_string()
        } else {
            reasons.join("; ")
        };
        match member {
            Some(m) => parts.push(format!("{} ({}): {reasons}", m.name, m.key)),
            None => parts.push(format!("{}: {reasons}", key.unwrap_or("a document"))),
        }
    }
    if parts.is_empty() {
        return outcome;
    }
    let message = format!(
        "The service marked documents of this set broken: {}. Scan those again (the whole page, sharp, without glare) and put the set in again.",
        parts.join(" | ")
    );
    let mut outcome = outcome;
    if let Some(error) = outcome.error.as_mut() {
        error.message = message;
    }
    outcome
}

/// Whether one document of a result is marked broken.
pub fn is_broken(document: &Value) -> bool {
    is_true(document.get("broken"))
}

/// `broken` arrives as `true`, `false`, `null`, or sometimes a string.
fn is_true(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true") || s == "1",
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        _ => false,
    }
}

/// Russian reasons first (the office reads Russian), then English, without repeats.
pub fn broken_reasons(broken: &[&Value]) -> Vec<String> {
    let mut reasons: Vec<String> = Vec::new();
    for key in ["broken_reasons_ru", "broken_reasons"] {
        for doc in broken {
            let list = doc.get(key).and_then(Value::as_array).map(Vec::as_slice);
            for reason in list.unwrap_or_default().iter().filter_map(Value::as_str) {
                if !reasons.iter().any(|r| r == reason) {
                    reasons.push(reason.to_string());
                }
            }
        }
    }
    reasons
}

fn timed_out(limit: Duration, document_id: &str) -> Outcome {
    Outcome::failed(
        ErrorKind::Timeout,
        None,
        format!(
            "No result arrived within {}. The service still has the document as {document_id}: look it up in the Beorg portal before scanning it again.",
            humantime::format_duration(limit)
        ),
    )
}

fn unreadable_result(raw: String) -> Outcome {
    Outcome::failed(
        ErrorKind::BadResponse,
        Some(200),
        "The service answered, but its answer could not be read as data. The answer is kept in result_raw; ask support to check it.",
    )
    .with_raw(raw)
}

fn result_refused(failure: &ApiFailure, document_id: &str) -> Outcome {
    let status = failure.http_status();
    let (kind, text) = if status == Some(404) {
        (
            ErrorKind::NotFound,
            format!(
                "The service no longer has document {document_id} (it may have been deleted). Scan the document again."
            ),
        )
    } else {
        (
            ErrorKind::Rejected,
            format!("The service refused to give the result of document {document_id}."),
        )
    };
    Outcome::failed(
        kind,
        status,
        format!(
            "{text} (HTTP {}: {})",
            status.unwrap_or(0),
            failure.message()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sidecar::Status;
    use serde_json::json;

    #[test]
    fn broken_documents_fail_with_reasons() {
        let r = json!({"documents": [
            {"broken": false},
            {"broken": true, "broken_reasons": ["blurred"], "broken_reasons_ru": ["размыто"]},
        ]});
        let o = judge(r);
        assert_eq!(o.status, Status::Failed);
        let e = o.error.unwrap();
        assert_eq!(e.kind, ErrorKind::Broken);
        assert!(e.message.contains("размыто; blurred"), "{}", e.message);
        assert!(o.result.is_some(), "the API's answer is kept");
    }

    #[test]
    fn null_or_absent_broken_is_done() {
        assert_eq!(
            judge(json!({"documents": [{"broken": null}]})).status,
            Status::Done
        );
        assert_eq!(judge(json!({"data": {}})).status, Status::Done);
        assert_eq!(
            judge(json!({"documents": [{"broken": "true"}]})).status,
            Status::Failed
        );
    }

    /// A "Passport Auto" result is flat: the document is the result itself.
    #[test]
    fn a_flat_passport_auto_result_is_judged_as_its_one_document() {
        let ok = json!({"document_id": "1", "data": {"Series": "4510"}, "metadata": {}, "verifications": {"status": 0}});
        assert_eq!(judge(ok).status, Status::Done);
        let broken = json!({"document_id": "1", "data": {}, "broken": true, "broken_reasons": ["blurred"], "broken_reasons_ru": ["размыто"]});
        let o = judge(broken);
        assert_eq!(o.status, Status::Failed);
        let e = o.error.unwrap();
        assert_eq!(e.kind, ErrorKind::Broken);
        assert!(e.message.contains("размыто; blurred"), "{}", e.message);
    }
}
