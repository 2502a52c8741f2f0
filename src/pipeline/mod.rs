//! The stages a scan goes through, in order: [`intake`] → [`claim`] → [`preflight`] →
//! [`submit`] → [`poll`] → [`finish`]. Each stage is a module of its own and can be read
//! alone. What they share is defined here: the claimed file ([`Job`]), the inbox it came
//! from ([`Inbox`]), the context every file's task holds ([`Context`]), and the one answer
//! every stage gives ([`Step`]). The order in which the stages run is written once, in
//! `daemon::drive`. What a file's state is, is decided by the [`lifecycle`](crate::lifecycle)
//! state machine and stored by the [`recorder`], the only module here that names the
//! journal: the stages report events to it. Beside the stages: [`entries`] (which entries of a folder are taken) and
//! [`set`] (what a document set is) and [`hashed`] (a file's bytes as this run hashed them), which the
//! stages use and which name no stage, and [`ready_times`] (when to ask for a result).

pub mod claim;
pub mod entries;
pub mod finish;
pub mod hashed;
pub mod intake;
pub mod poll;
pub mod preflight;
pub mod ready_times;
pub mod recorder;
pub mod set;
pub mod submit;

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::api::ApiClient;
use crate::config::{Config, InboxConfig};
use crate::metrics::Metrics;
use crate::scheduler::Scheduler;
use crate::sidecar::Outcome;

pub use recorder::{Job, NotRecorded, Recorder};

/// What a stage decided about a file: the one contract every stage returns.
#[derive(Debug)]
pub enum Step {
    /// Carry on with the next stage.
    Next,
    /// The file's outcome is known: finish it (done/ or failed/).
    Finish(Outcome),
    /// The claimed file is gone from the work folder (deleted by hand): record it as lost.
    Vanished,
    /// The daemon is stopping (or a transition could not be recorded): the journal resumes
    /// the file at the next start.
    Stopped,
}

impl From<NotRecorded> for Step {
    fn from(_: NotRecorded) -> Step {
        Step::Stopped
    }
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

/// Everything a file's task needs, shared by all of them (one per session: a reload makes a
/// new one).
pub struct Context {
    /// The session's config; its `inboxes` also lists the retired ones (see [`Context::inboxes`]).
    pub config: Arc<Config>,
    /// Every inbox a file of this session may belong to: the configured ones first (in
    /// config order, as intake numbers them), then those retired by a reload whose files are
    /// still in flight.
    pub inboxes: Vec<Arc<Inbox>>,
    /// The one write point of the files' lifecycles, and the stages' way to the journal.
    pub recorder: Recorder,
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
