//! A claimed file's lifecycle as one state machine, with no IO.
//!
//! [`step`] is a pure function from a file's state ([`FileState`], the in-memory twin of its
//! journal row), an [`Event`] (what a stage saw happen) and the current time to the next
//! state and the [`Effect`]s to perform: the [`Change`] to store (the row's new values and
//! its history lines, in one transaction), the delivering task to wake, the finished file to
//! count. An event a stage may not report in the file's stage is an [`Illegal`] error, never
//! a default. The stages do the IO and report; the pipeline's recorder
//! (`pipeline::recorder`) runs `step`, performs the effects, and only then applies the next
//! state to the file it drives. The stages, their order and the failure policies are
//! written around this machine, not in it.
//!
//! ```text
//!             Hashed, Preflight, Superseded         Hashed, Preflight, Superseded, Document
//!               ┌────┐                                ┌────┐
//!   claim ──▶ Claimed ──────── Submitting ─────────▶ Submitting ──┐
//!               │   ▲ ◀─────── NotSent ─────────────────┘  │       │ Submitted,
//!               │   └─────────────────────────────────────────────┘ AnsweredFrom
//!               │ Submitted, AnsweredFrom (an earlier document)    ▼
//!               └──────────────────────────────────────────▶ Submitted ◀┐ Asked, ReadyAfter
//!   Claimed, Submitting, Submitted, Finishing ── Finishing ──▶ Finishing ─┘
//!   Finishing ── Finished ──▶ Done | Review | Failed;   any unfinished ── Lost ──▶ Lost
//! ```

pub mod outbox;
pub mod payload;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

pub use outbox::{DeliveryKind, NewOutcome};
pub use payload::{Member, Payload};

/// How far a claimed file has got: the journal row's `stage`, stored as text so `sqlite3`
/// output reads plainly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// In the work folder, not sent yet (or sent and refused for an account problem).
    Claimed,
    /// A submit request is (or was, at a crash) on its way; its outcome is unknown.
    Submitting,
    /// The API gave a `document_id`; waiting for the result.
    Submitted,
    /// The outcome is decided and stored; the move and the sidecar may be incomplete.
    Finishing,
    /// In done/ with its sidecar.
    Done,
    /// In the review folder with its sidecar: recognised, a person must check it.
    Review,
    /// In failed/ with its sidecar.
    Failed,
    /// Its file disappeared from the work folder (deleted by hand); nothing left to move.
    Lost,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Claimed => "claimed",
            Stage::Submitting => "submitting",
            Stage::Submitted => "submitted",
            Stage::Finishing => "finishing",
            Stage::Done => "done",
            Stage::Review => "review",
            Stage::Failed => "failed",
            Stage::Lost => "lost",
        }
    }

    /// The stage a journal text names; `None` for a text this daemon does not know (there is
    /// no default: guessing "claimed" would send the file again and could pay twice).
    pub fn parse(s: &str) -> Option<Stage> {
        Some(match s {
            "claimed" => Stage::Claimed,
            "submitting" => Stage::Submitting,
            "submitted" => Stage::Submitted,
            "finishing" => Stage::Finishing,
            "done" => Stage::Done,
            "review" => Stage::Review,
            "failed" => Stage::Failed,
            "lost" => Stage::Lost,
            _ => return None,
        })
    }

    /// Done, review, failed or lost: nothing more happens to the file in the pipeline.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Stage::Done | Stage::Review | Stage::Failed | Stage::Lost
        )
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The transitions' names as stored in the journal's history: a contract with
/// `explain --json` and `sqlite3` users (add, never rename). Each one's `details` keys are
/// listed beside it.
pub mod transition {
    /// `from` (inbox/name), `work_path`, `size`, `seen_ms` (when intake first saw it), `set`.
    pub const CLAIMED: &str = "claimed";
    /// `sha256`, `size` (a set: also `files`, how many).
    pub const HASHED: &str = "hashed";
    /// `verdict` ("ok" or "refused"), and when refused `kind` and `message`.
    pub const PREFLIGHT: &str = "preflight";
    /// `attempt` (1 for the first submit): a submit is about to leave.
    pub const SUBMITTING: &str = "submitting";
    /// `document_id`, `http_status` (200): the API gave a document.
    pub const DOCUMENT: &str = "document";
    /// `reason`: the submit did not go through (or was not made); the file waits to be sent.
    pub const NOT_SENT: &str = "not_sent";
    /// `document_id`: this document is the file's answer.
    pub const SUBMITTED: &str = "submitted";
    /// `document_id`: answered from an earlier document of the same content (nothing paid).
    pub const ANSWERED_FROM: &str = "answered_from";
    /// `document_id`, `why`: a document paid for this file whose answer is not used.
    pub const SUPERSEDED: &str = "superseded";
    /// `asks`, `still_processing` (425 answers), `asked_ms`, and when it was ready
    /// `ready_ms` (after the submit) and `pending_ms` (the last 425 before it): one line when
    /// polling ends, not one per ask.
    pub const POLLED: &str = "polled";
    /// `final_path`, `sidecar`, `status`, and for a failure `kind`, `http_status`, `message`.
    pub const FINISHING: &str = "finishing";
    /// `stage` (done, review, failed), `final_path`, `sidecar`.
    pub const FINISHED: &str = "finished";
    /// Nothing: its file disappeared from the work folder.
    pub const LOST: &str = "lost";
    /// `kind` (webhook, exec, ledger), `delivery_id`, `message_id`, `status`.
    pub const DELIVERY_QUEUED: &str = "delivery_queued";
    /// `kind`, `delivery_id`, `attempts`, `error`, `next_at_ms`: a try failed, another is due.
    pub const DELIVERY_RETRY: &str = "delivery_retry";
    /// `kind`, `delivery_id`, `attempts`, `state` (delivered, given_up, gone, dropped),
    /// `error`.
    pub const DELIVERY_CLOSED: &str = "delivery_closed";
    /// `from` (its path in failed/ or review/), `to` (its path in the inbox), `sidecar` (the
    /// removed sidecar's path) and `sidecar_json` (its content), `documents` (those the
    /// duplicate rule no longer answers it from).
    pub const REQUEUED: &str = "requeued";
    /// `decision` (approved, rejected), `by` (the reviewer), `from` (its path in review/),
    /// `to` (in done/ or failed/), `sidecar` (the new one), `stage` (done, failed),
    /// `corrected` (the names of the fields corrected, never their values), and `recovered`
    /// (true) when a crash kept it from being recorded with its move and the next start
    /// recorded it: a review station's decision.
    pub const REVIEWED: &str = "reviewed";
}

/// What the lifecycle knows of a claimed file: the in-memory twin of its journal row.
#[derive(Debug, Clone)]
pub struct FileState {
    pub stage: Stage,
    /// A file or a set, and a set's files once hashed.
    pub payload: Payload,
    /// Its size (a set: its files' total once hashed).
    pub size: u64,
    pub sha256: Option<String>,
    pub document_id: Option<String>,
    /// Set when the content was answered from an earlier document (no new submit).
    pub duplicate_of: Option<String>,
    pub detected_at: SystemTime,
    pub claimed_at: SystemTime,
    pub submitted_at: Option<SystemTime>,
    pub submit_attempts: u32,
    /// The daemon died while this file's submit was on its way: if the API now says 409,
    /// that earlier request reached it.
    pub in_doubt: bool,
    /// Once finishing: where the original goes, and its sidecar.
    pub final_path: Option<PathBuf>,
    pub sidecar_path: Option<PathBuf>,
}

impl FileState {
    /// A file (or set) just claimed: nothing known of its content yet.
    pub fn claimed(
        payload: Payload,
        size: u64,
        detected_at: SystemTime,
        claimed_at: SystemTime,
    ) -> FileState {
        FileState {
            stage: Stage::Claimed,
            payload,
            size,
            sha256: None,
            document_id: None,
            duplicate_of: None,
            detected_at,
            claimed_at,
            submitted_at: None,
            submit_attempts: 0,
            in_doubt: false,
            final_path: None,
            sidecar_path: None,
        }
    }
}

/// What a stage saw happen to a file: the only way a file's state changes.
#[derive(Debug, Clone)]
pub enum Event {
    /// Its content was read: its hash and size (a set: its files, planned).
    Hashed {
        sha256: String,
        size: u64,
        /// A set's files in the order they are sent; `None` for a file.
        members: Option<Vec<Member>>,
    },
    /// Preflight passed it (`None`), or refused it with an error kind and message.
    Preflight { refused: Option<(String, String)> },
    /// A submit asking `request` is about to leave: from here until it is answered the
    /// outcome is unknown if the process dies.
    Submitting { request: String },
    /// The API gave `document_id` for content `sha256` asked as `request` (stored before
    /// anything else is decided about it: used, or superseded).
    Document {
        document_id: String,
        sha256: String,
        request: String,
    },
    /// `document_id`, paid for this file, is not its answer: `why`, in plain words.
    Superseded { document_id: String, why: String },
    /// The submit did not go through, or was not made: back to waiting.
    NotSent { reason: String },
    /// `document_id` is the file's own answer.
    Submitted { document_id: String },
    /// The content, asked as `request`, is answered from an earlier document.
    AnsweredFrom {
        document_id: String,
        request: String,
    },
    /// The result was asked for: the asking time so far, and whether it was still processing.
    Asked {
        asked: Duration,
        still_processing: bool,
    },
    /// The result was found ready `ready` after the submit, the last "still processing"
    /// answer at `pending`.
    ReadyAfter {
        pending: Option<Duration>,
        ready: Duration,
    },
    /// The outcome is decided: where the original goes, its sidecar's path and text.
    Finishing {
        final_path: PathBuf,
        sidecar_path: PathBuf,
        sidecar: String,
    },
    /// The original and its sidecar are in place: done, review or failed, with the
    /// outcome's label for the metrics and its deliveries.
    Finished {
        stage: Stage,
        label: String,
        delivery: Option<NewOutcome>,
    },
    /// Its work file disappeared (deleted by hand) with nothing paid for it.
    Lost,
}

impl Event {
    /// The event's name, as in the log and in an [`Illegal`] error.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Hashed { .. } => transition::HASHED,
            Event::Preflight { .. } => transition::PREFLIGHT,
            Event::Submitting { .. } => transition::SUBMITTING,
            Event::Document { .. } => transition::DOCUMENT,
            Event::Superseded { .. } => transition::SUPERSEDED,
            Event::NotSent { .. } => transition::NOT_SENT,
            Event::Submitted { .. } => transition::SUBMITTED,
            Event::AnsweredFrom { .. } => transition::ANSWERED_FROM,
            Event::Asked { .. } => "asked",
            Event::ReadyAfter { .. } => "ready_after",
            Event::Finishing { .. } => transition::FINISHING,
            Event::Finished { .. } => transition::FINISHED,
            Event::Lost => transition::LOST,
        }
    }
}

/// One line of a file's history.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// A transition (see [`transition`]) and its details.
    Of {
        transition: &'static str,
        details: Value,
    },
    /// The one "polled" line, from the counters the row kept while polling.
    PollsSummary,
}

/// What one transition stores, in one journal transaction: the event (whose values the row
/// takes), the row's stage after it, and the history lines it appends.
#[derive(Debug, Clone)]
pub struct Change {
    pub at: SystemTime,
    pub event: Event,
    pub stage: Stage,
    pub lines: Vec<Line>,
}

/// What the recorder does for a transition, in this order, each only after the ones before
/// it succeeded.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Store the change (one transaction); until it is stored, nothing else happens.
    Store(Box<Change>),
    /// Deliveries were queued with the finish: wake the delivering task.
    WakeDeliveries,
    /// A file finished: count it under `label`, `latency` after it was first seen.
    CountFinished { label: String, latency: Duration },
}

/// An event a stage may not report in the file's stage: a fault in the daemon, never
/// resolved by a guess (the file is left as the journal has it, for the next start).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("\"{event}\" cannot happen to a file in the stage \"{stage}\"")]
pub struct Illegal {
    pub stage: Stage,
    pub event: &'static str,
}

/// The lifecycle: from `state`, `event` at `now` leads to the returned state, once the
/// returned effects are performed. Pure: no IO, no clock but `now`.
pub fn step(
    state: &FileState,
    event: Event,
    now: SystemTime,
) -> Result<(FileState, Vec<Effect>), Illegal> {
    let stage = next_stage(state.stage, &event).ok_or(Illegal {
        stage: state.stage,
        event: event.name(),
    })?;
    let mut next = state.clone();
    next.stage = stage;
    let lines = apply(&mut next, state, &event, now);
    let mut effects = Vec::with_capacity(3);
    let finished = match &event {
        Event::Finished {
            label, delivery, ..
        } => Some((
            label.clone(),
            delivery.as_ref().is_some_and(|d| !d.kinds.is_empty()),
        )),
        _ => None,
    };
    effects.push(Effect::Store(Box::new(Change {
        at: now,
        event,
        stage,
        lines,
    })));
    if let Some((label, queued)) = finished {
        if queued {
            effects.push(Effect::WakeDeliveries);
        }
        let latency = now.duration_since(state.detected_at).unwrap_or_default();
        effects.push(Effect::CountFinished { label, latency });
    }
    Ok((next, effects))
}

/// The transition table: the stage `event` leads to from `from`, `None` when it may not
/// happen there.
fn next_stage(from: Stage, event: &Event) -> Option<Stage> {
    use Stage::*;
    let unfinished = !from.is_final();
    Some(match (event, from) {
        // A resumed file in doubt (stage submitting) is hashed, checked and sent again.
        (
            Event::Hashed { .. } | Event::Preflight { .. } | Event::Superseded { .. },
            Claimed | Submitting,
        ) => from,
        (Event::Submitting { .. }, Claimed | Submitting) => Submitting,
        (Event::Document { .. }, Submitting) => Submitting,
        (Event::NotSent { .. }, Submitting) => Claimed,
        // Answered before a submit (an earlier document), or by the submit.
        (Event::Submitted { .. } | Event::AnsweredFrom { .. }, Claimed | Submitting) => Submitted,
        (Event::Asked { .. } | Event::ReadyAfter { .. }, Submitted) => Submitted,
        (Event::Finishing { .. }, _) if unfinished => Finishing,
        (
            Event::Finished {
                stage: to @ (Done | Review | Failed),
                ..
            },
            Finishing,
        ) => *to,
        (Event::Lost, _) if unfinished => Lost,
        _ => return None,
    })
}

/// Applies `event` to `next` (a copy of `was` with its new stage) and returns the history
/// lines it appends.
fn apply(next: &mut FileState, was: &FileState, event: &Event, now: SystemTime) -> Vec<Line> {
    let line = |transition: &'static str, details: Value| Line::Of {
        transition,
        details,
    };
    match event {
        Event::Hashed {
            sha256,
            size,
            members,
        } => {
            next.sha256 = Some(sha256.clone());
            next.size = *size;
            let mut details = json!({"sha256": sha256, "size": size});
            if let Some(members) = members {
                details["files"] = members.len().into();
                next.payload = Payload::Set {
                    members: members.clone(),
                };
            }
            vec![line(transition::HASHED, details)]
        }
        Event::Preflight { refused } => {
            let details = match refused {
                None => json!({"verdict": "ok"}),
                Some((kind, message)) => {
                    json!({"verdict": "refused", "kind": kind, "message": message})
                }
            };
            vec![line(transition::PREFLIGHT, details)]
        }
        Event::Submitting { .. } => {
            next.submit_attempts = was.submit_attempts + 1;
            let details = json!({"attempt": next.submit_attempts});
            vec![line(transition::SUBMITTING, details)]
        }
        Event::Document { document_id, .. } => {
            let details = json!({"document_id": document_id, "http_status": 200});
            vec![line(transition::DOCUMENT, details)]
        }
        Event::Superseded { document_id, why } => {
            let details = json!({"document_id": document_id, "why": why});
            vec![line(transition::SUPERSEDED, details)]
        }
        Event::NotSent { reason } => vec![line(transition::NOT_SENT, json!({"reason": reason}))],
        Event::Submitted { document_id } => {
            next.document_id = Some(document_id.clone());
            next.submitted_at = Some(now);
            let details = json!({"document_id": document_id});
            vec![line(transition::SUBMITTED, details)]
        }
        Event::AnsweredFrom { document_id, .. } => {
            next.document_id = Some(document_id.clone());
            next.duplicate_of = Some(document_id.clone());
            next.submitted_at = Some(now);
            let details = json!({"document_id": document_id});
            vec![line(transition::ANSWERED_FROM, details)]
        }
        Event::Asked { .. } | Event::ReadyAfter { .. } => Vec::new(),
        Event::Finishing {
            final_path,
            sidecar_path,
            sidecar,
        } => {
            next.final_path = Some(final_path.clone());
            next.sidecar_path = Some(sidecar_path.clone());
            if was.stage == Stage::Finishing {
                // A retry of the same finish at another name: the decision was told once.
                return Vec::new();
            }
            let details = finishing_details(final_path, sidecar_path, sidecar);
            vec![Line::PollsSummary, line(transition::FINISHING, details)]
        }
        Event::Finished { stage, .. } => {
            let details = json!({
                "stage": stage.as_str(),
                "final_path": was.final_path.as_deref().map(path_text),
                "sidecar": was.sidecar_path.as_deref().map(path_text),
            });
            vec![line(transition::FINISHED, details)]
        }
        Event::Lost => vec![line(transition::LOST, json!({}))],
    }
}

/// The "finishing" line's details: where the original goes, its sidecar, and the outcome
/// the sidecar states (status, and for a failure its kind, HTTP status and message).
fn finishing_details(
    final_path: &std::path::Path,
    sidecar_path: &std::path::Path,
    sidecar: &str,
) -> Value {
    let parsed: Value = serde_json::from_str(sidecar).unwrap_or_default();
    let error = parsed.get("error").filter(|e| !e.is_null());
    let field = |key: &str| error.and_then(|e| e.get(key)).cloned();
    json!({
        "final_path": path_text(final_path),
        "sidecar": path_text(sidecar_path),
        "status": parsed.get("status").cloned(),
        "kind": field("kind"),
        "http_status": field("http_status"),
        "message": field("message"),
    })
}

/// Whether an original finished in `stage` may be put back into its inbox by `requeue`:
/// only from failed/ or review/.
pub fn requeue(stage: Stage) -> Result<(), Illegal> {
    match stage {
        Stage::Failed | Stage::Review => Ok(()),
        stage => Err(Illegal {
            stage,
            event: transition::REQUEUED,
        }),
    }
}

/// Whether a review station may decide an original finished in `stage`, sending it to `to`:
/// only from review/, only to done/ or failed/.
pub fn review(stage: Stage, to: Stage) -> Result<Stage, Illegal> {
    match (stage, to) {
        (Stage::Review, Stage::Done | Stage::Failed) => Ok(to),
        (stage, _) => Err(Illegal {
            stage,
            event: transition::REVIEWED,
        }),
    }
}

fn path_text(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests;
