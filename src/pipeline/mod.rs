//! The stages a scan goes through, in order: [`intake`] → [`claim`] → [`preflight`] →
//! [`submit`] → [`poll`] → [`finish`]. Each stage is a module of its own and can be read
//! alone. What they share is defined here: the claimed file ([`Job`]), the inbox it came
//! from ([`Inbox`]), the context every file's task holds ([`Context`]), and the one answer
//! every stage gives ([`Step`]). The order in which the stages run is written once, in
//! `daemon::drive`. Beside the stages: [`entries`] (which entries of a folder are taken) and
//! [`set`] (what a document set is), which the stages use and which name no stage, and
//! [`ready_times`] (when to ask for a result).

pub mod claim;
pub mod entries;
pub mod finish;
pub mod intake;
pub mod poll;
pub mod preflight;
pub mod ready_times;
pub mod set;
pub mod submit;

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::SystemTime;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::api::ApiClient;
use crate::config::{Config, InboxConfig};
use crate::metrics::Metrics;
use crate::scheduler::Scheduler;
use crate::sidecar::Outcome;
use crate::store::journal::{FileId, Journal, NewClaim, Record, Stage};

/// What a stage decided about a file: the one contract every stage returns.
#[derive(Debug)]
pub enum Step {
    /// Carry on with the next stage.
    Next,
    /// The file's outcome is known: finish it (done/ or failed/).
    Finish(Outcome),
    /// The claimed file is gone from the work folder (deleted by hand): record it as lost.
    Vanished,
    /// The daemon is stopping; the journal resumes the file at the next start.
    Stopped,
}

/// An inbox as the running pipeline sees it: its settings, and what is happening in it now.
/// Dereferences to its [`InboxConfig`], so `job.inbox.done` reads as the setting it is.
#[derive(Debug)]
pub struct Inbox {
    pub settings: InboxConfig,
    /// Submits of this inbox on the wire right now. (The journal says `submitting` from just
    /// before the submit turn; `status` shows files still waiting for the turn as waiting.)
    pub sending: AtomicU64,
}

impl Inbox {
    pub fn new(settings: InboxConfig) -> Inbox {
        Inbox {
            settings,
            sending: AtomicU64::new(0),
        }
    }
}

impl Deref for Inbox {
    type Target = InboxConfig;
    fn deref(&self) -> &InboxConfig {
        &self.settings
    }
}

/// A claimed file on its way through the pipeline: the in-memory twin of its journal row.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: FileId,
    /// The inbox it came from (possibly one retired by a reload: its files in flight finish).
    pub inbox: Arc<Inbox>,
    /// Its name in the inbox, as the scanner wrote it; reused in done/ and failed/.
    pub name: String,
    pub work_path: PathBuf,
    pub size: u64,
    pub sha256: Option<String>,
    pub document_id: Option<String>,
    pub detected_at: SystemTime,
    pub claimed_at: SystemTime,
    pub submitted_at: Option<SystemTime>,
    /// Set when the content was answered from an earlier document (no new submit).
    pub duplicate_of: Option<String>,
    /// The daemon died while this file's submit was on its way: if the API now says 409,
    /// that earlier request reached it.
    pub in_doubt: bool,
    /// A document set: `work_path` is its folder, `sha256` the set's hash.
    pub is_set: bool,
    /// A set's files once hashed (with `sha256`), in the order they are sent.
    pub members: Vec<set::Member>,
}

impl Job {
    /// A file just claimed (or adopted from a work folder), recorded as row `id`.
    pub fn claimed(id: FileId, inbox: Arc<Inbox>, claim: NewClaim) -> Job {
        Job {
            id,
            inbox,
            name: claim.name,
            work_path: claim.work_path,
            size: claim.size,
            sha256: None,
            document_id: None,
            detected_at: claim.detected_at,
            claimed_at: claim.claimed_at,
            submitted_at: None,
            duplicate_of: None,
            in_doubt: false,
            is_set: false,
            members: Vec::new(),
        }
    }

    /// Rebuilds a job from its journal row at startup.
    pub fn from_record(record: &Record, inbox: Arc<Inbox>) -> Job {
        Job {
            id: record.id,
            inbox,
            name: record.name.clone(),
            work_path: record.work_path.clone(),
            size: record.size,
            sha256: record.sha256.clone(),
            document_id: record.document_id.clone(),
            detected_at: record.detected_at,
            claimed_at: record.claimed_at,
            submitted_at: record.submitted_at,
            duplicate_of: record.duplicate_of.clone(),
            in_doubt: record.stage == Stage::Submitting,
            is_set: record.is_set,
            members: record
                .set_files
                .as_deref()
                .and_then(|text| serde_json::from_str(text).ok())
                .unwrap_or_default(),
        }
    }
}

/// Everything a file's task needs, shared by all of them (one per session: a reload makes a
/// new one).
pub struct Context {
    /// The session's config; its `inboxes` also lists the retired ones (see [`Context::inboxes`]).
    pub config: Arc<Config>,
    /// Every inbox a file of this session may belong to: the configured ones first (in
    /// config order, as intake numbers them), then those retired by a reload whose files are
    /// still in flight.
    pub inboxes: Vec<Arc<Inbox>>,
    pub journal: Journal,
    /// The single owner of the request budget.
    pub scheduler: Scheduler,
    pub api: ApiClient,
    /// Stop waiting: no new files, no more sleeps, polls or turns.
    pub stop: CancellationToken,
    /// Stop everything: abandon requests in flight (fired after the grace period).
    pub abort: CancellationToken,
    /// Bounds how many file bodies are in memory ahead of their submit.
    pub prepared_slots: Arc<Semaphore>,
    /// Notices a done/failed folder or inbox whose share was unmounted.
    pub mounts: Arc<crate::store::mounts::MountGuard>,
    /// Counters and gauges for `/metrics` (process lifetime, across reloads).
    pub metrics: Arc<Metrics>,
    /// Submits on their way, by content and request (the duplicate rule waits only on these).
    pub same_request: submit::SameRequest,
    /// When results of each request are likely ready, learned (see [`ready_times`]).
    pub ready_times: ready_times::ReadyTimes,
}

impl Context {
    /// The inbox whose folder is `path`, if this session knows it.
    pub fn inbox_at(&self, path: &std::path::Path) -> Option<&Arc<Inbox>> {
        self.inboxes.iter().find(|i| i.path == path)
    }
}
