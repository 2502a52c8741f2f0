//! The one write point of a file's lifecycle, and the stages' only way to the journal.
//!
//! A stage reports what happened as a lifecycle [`Event`]; [`Recorder::record`] asks the
//! state machine ([`lifecycle::step`]) for the next state and the effects, stores the change
//! (the row and its history lines, one SQLite transaction), performs the other effects, and
//! only then applies the next state to the [`Job`] (whose state no stage can write: it reads
//! it through `Deref`). One policy for a write that fails, written here once: it is tried
//! again, with backoff, logged once per distinct error, until it is stored or the daemon
//! stops ([`NotRecorded::Stopped`]: the journal still says what was last stored, and the next
//! start resumes from there). An event the lifecycle refuses is a fault in the daemon: logged
//! as an error, nothing stored, and the file is left for the next start.
//!
//! The recorder also answers the stages' questions to the journal (the duplicate rule, a
//! file's documents, its asking time, the learned ready times), so no other module under
//! `pipeline` names the journal (`tests/it/architecture.rs` checks this).

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::lifecycle::{self, Effect, Event, FileState, Illegal, Payload};
use crate::metrics::Metrics;
use crate::pipeline::Inbox;
use crate::pipeline::hashed::Hashed;
pub use crate::store::journal::{FileId, NewClaim, Record, SameContent, Superseded};
use crate::store::journal::{Journal, until_stored};

/// A claimed file on its way through the pipeline: which row and inbox it is, and its
/// lifecycle state, which only the recorder changes (`job.sha256`, `job.stage`, ... read it).
#[derive(Debug, Clone)]
pub struct Job {
    pub id: FileId,
    /// The inbox it came from (possibly one retired by a reload: its files in flight finish).
    pub inbox: Arc<Inbox>,
    /// Its name in the inbox, as the scanner wrote it; reused in done/ and failed/.
    pub name: String,
    pub work_path: PathBuf,
    /// Its files as this run hashed them (empty until then, and for a row from an earlier
    /// run): the submit reads a file again only if it was written since.
    pub hashed: Vec<Hashed>,
    state: FileState,
}

impl Deref for Job {
    type Target = FileState;
    fn deref(&self) -> &FileState {
        &self.state
    }
}

impl Job {
    /// Rebuilds a job from its journal row at startup. A row left in `submitting` is in
    /// doubt: its request may have reached the API.
    pub fn from_record(record: &Record, inbox: Arc<Inbox>) -> Job {
        let payload = Payload::from_row(record.is_set, record.set_files.as_deref());
        let state = FileState {
            stage: record.stage,
            payload,
            size: record.size,
            sha256: record.sha256.clone(),
            document_id: record.document_id.clone(),
            duplicate_of: record.duplicate_of.clone(),
            detected_at: record.detected_at,
            claimed_at: record.claimed_at,
            submitted_at: record.submitted_at,
            submit_attempts: record.submit_attempts,
            in_doubt: record.stage == lifecycle::Stage::Submitting,
            sidecar_path: record
                .final_path
                .as_deref()
                .map(crate::store::layout::sidecar_path),
            final_path: record.final_path.clone(),
        };
        Job {
            id: record.id,
            inbox,
            name: record.name.clone(),
            work_path: record.work_path.clone(),
            hashed: Vec::new(),
            state,
        }
    }
}

/// Why a transition was not stored.
#[derive(Debug)]
pub enum NotRecorded {
    /// The daemon is stopping; the journal resumes the file at the next start.
    Stopped,
    /// The lifecycle refused the event (a fault in the daemon; logged).
    Illegal(Illegal),
}

/// The pipeline's access to the journal: the one place transitions are stored.
#[derive(Clone)]
pub struct Recorder {
    journal: Journal,
    stop: CancellationToken,
    metrics: Arc<Metrics>,
}

impl Recorder {
    pub fn new(journal: Journal, stop: CancellationToken, metrics: Arc<Metrics>) -> Recorder {
        Recorder {
            journal,
            stop,
            metrics,
        }
    }

    /// The journal itself, for what is not a file's lifecycle (pruning, `status`, the
    /// delivering task).
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Records a file (or set) just claimed into its work folder, or found there without a
    /// row (an interrupted claim): the row and its "claimed" line, the start of its lifecycle.
    pub async fn claimed(&self, inbox: Arc<Inbox>, claim: NewClaim) -> Result<Job, NotRecorded> {
        let payload = Payload::of_inbox(claim.set);
        let state = FileState::claimed(payload, claim.size, claim.detected_at, claim.claimed_at);
        let id = self
            .until_stored("claim", || self.journal.insert_claimed(claim.clone()))
            .await?;
        Ok(Job {
            id,
            inbox,
            name: claim.name,
            work_path: claim.work_path,
            hashed: Vec::new(),
            state,
        })
    }

    /// Reports `event` for `job`: stored and applied, or why not. Nothing of it is applied
    /// before it is stored.
    pub async fn record(&self, job: &mut Job, event: Event) -> Result<(), NotRecorded> {
        let name = event.name();
        let (next, effects) =
            lifecycle::step(&job.state, event, SystemTime::now()).map_err(|illegal| {
                tracing::error!(
                    inbox = %job.inbox.path.display(), file = %job.name,
                    "a fault in the daemon: {illegal}; nothing is recorded, and the file is taken up again from the journal at the next start"
                );
                NotRecorded::Illegal(illegal)
            })?;
        for effect in effects {
            match effect {
                Effect::Store(change) => {
                    self.until_stored(name, || self.journal.record(job.id, (*change).clone()))
                        .await?
                }
                Effect::WakeDeliveries => self.journal.wake_deliveries(),
                Effect::CountFinished { label, latency } => {
                    let inbox = job.inbox.path.to_string_lossy();
                    self.metrics.file_finished(&inbox, &label, latency);
                }
            }
        }
        job.state = next;
        Ok(())
    }

    /// The one policy for a journal write that fails: tried again until it is stored or the
    /// daemon stops.
    async fn until_stored<T, F, Fut>(&self, what: &str, write: F) -> Result<T, NotRecorded>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<T>>,
    {
        until_stored(&self.stop, what, write)
            .await
            .ok_or(NotRecorded::Stopped)
    }

    /// The duplicate rule before a submit: a document the journal has for this content and
    /// request (a requeued outcome's excluded). Asked until the journal answers.
    pub async fn same_content(
        &self,
        job: &Job,
        sha256: &str,
        request: &str,
    ) -> Option<SameContent> {
        let (id, inbox) = (job.id, job.inbox.path.clone());
        until_stored(&self.stop, "duplicate lookup", || {
            self.journal
                .same_content(id, sha256.into(), request.into(), inbox.clone())
        })
        .await
    }

    /// The duplicate rule after the service's 409: any document for this content and
    /// request, a requeued outcome's included.
    pub async fn same_content_after_conflict(
        &self,
        job: &Job,
        sha256: &str,
        request: &str,
    ) -> Option<SameContent> {
        let (id, inbox) = (job.id, job.inbox.path.clone());
        until_stored(&self.stop, "duplicate lookup", || {
            self.journal.same_content_after_conflict(
                id,
                sha256.into(),
                request.into(),
                inbox.clone(),
            )
        })
        .await
    }

    /// The documents paid for `job` that answer content `sha256` and are not superseded.
    pub async fn documents_answering(&self, job: &Job, sha256: &str) -> Option<Vec<String>> {
        until_stored(&self.stop, "documents of the file", || {
            self.journal.documents_answering(job.id, sha256.into())
        })
        .await
    }

    /// The documents paid for `job` whose answers it does not use, oldest first.
    pub async fn superseded_of(&self, job: &Job) -> Option<Vec<Superseded>> {
        until_stored(&self.stop, "superseded documents", || {
            self.journal.superseded_of(job.id)
        })
        .await
    }

    /// What was asked when `document_id` was obtained, if the journal knows (`Some(None)`:
    /// a row from before requests were recorded); `None` also when it cannot be read.
    pub async fn request_of_document(&self, document_id: &str) -> Option<Option<String>> {
        self.journal
            .request_of_document(document_id.into())
            .await
            .ok()
            .flatten()
    }

    /// How long the daemon has been asking for `job`'s result, over all its runs (zero,
    /// logged, when the journal cannot say).
    pub async fn poll_asked(&self, job: &Job) -> Duration {
        self.journal.poll_asked(job.id).await.unwrap_or_else(|e| {
            tracing::warn!(file = %job.name, "cannot read how long its result was asked for ({e:#}); counting result_timeout from now");
            Duration::ZERO
        })
    }

    /// The ready times (pending, ready) of the last `limit` files sent as `request`.
    pub async fn ready_times(
        &self,
        request: &str,
        limit: usize,
    ) -> Vec<(Option<Duration>, Duration)> {
        self.journal
            .ready_times(request.into(), limit)
            .await
            .unwrap_or_else(|e| {
                tracing::debug!("cannot read the learned ready times: {e:#}");
                Vec::new()
            })
    }
}
