//! What the handle, the listener and the handlers share: the fixed settings, the socket, and
//! the mutable server state (accepted documents, the duplicate index, the harness's queues,
//! the request log) behind one std mutex that is never held across an await.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::EmulatorConfig;
use crate::documents::DocumentSet;
use crate::records::RequestRecord;

/// What the handle, the listener and the handlers share.
pub(crate) struct Shared {
    /// Fixed at start.
    pub(crate) config: EmulatorConfig,
    /// The bound address.
    pub(crate) addr: SocketAddr,
    /// Everything that changes while serving; a std mutex, never held across an await.
    pub(crate) state: Mutex<ServerState>,
    /// The listening socket; taken (and so closed) by shutdown.
    pub(crate) listener: Mutex<Option<TcpListener>>,
    /// Flips to true on shutdown; every open connection watches it and dies.
    pub(crate) stop_tx: watch::Sender<bool>,
    /// The server task, aborted by shutdown.
    pub(crate) task: Mutex<Option<JoinHandle<()>>>,
}

impl Shared {
    /// Locks the mutable state (a poisoned lock is still usable: the state stays consistent).
    pub(crate) fn state(&self) -> MutexGuard<'_, ServerState> {
        lock(&self.state)
    }

    /// Appends to the request log.
    pub(crate) fn record(&self, record: RequestRecord) {
        self.state().records.push(record);
    }
}

/// Locks a std mutex, recovering from poisoning.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The mutable side of the server.
pub(crate) struct ServerState {
    /// Number part of the next `s-<n>` id.
    pub(crate) next_id: u64,
    /// 402 on submits while set.
    pub(crate) no_money: bool,
    /// Forced statuses per endpoint, consumed in order.
    pub(crate) faults: [VecDeque<(u16, usize)>; 2],
    /// Forced delays per endpoint, consumed in order.
    pub(crate) delays: [VecDeque<(Duration, usize)>; 2],
    /// Accepted document sets by id.
    pub(crate) documents: HashMap<String, DocumentSet>,
    /// Accepted image contents (sha256) with what was asked for each (project, type, key,
    /// stages), and the document that first carried them. The same picture asked for as
    /// another document type, or sent to another project, is a new request, not a duplicate.
    pub(crate) seen: HashMap<([u8; 32], String), String>,
    /// The request log.
    pub(crate) records: Vec<RequestRecord>,
    /// Draws the random server errors of [`EmulatorConfig::server_error_rate`].
    pub(crate) fault_rng: fastrand::Rng,
}

impl ServerState {
    pub(crate) fn new(config: &EmulatorConfig) -> Self {
        Self {
            next_id: 10_000 + fastrand::u64(0..90_000),
            no_money: false,
            faults: [VecDeque::new(), VecDeque::new()],
            delays: [VecDeque::new(), VecDeque::new()],
            documents: HashMap::new(),
            seen: HashMap::new(),
            records: Vec::new(),
            fault_rng: fastrand::Rng::with_seed(config.server_error_seed),
        }
    }
}
