//! Starting, steering and stopping an emulator: the [`Emulator`] handle tests hold, and
//! [`serve_forever`] for the `emulator` subcommand.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::EmulatorConfig;
use crate::connection::ServerListener;
use crate::faults::slot;
use crate::records::{Endpoint, RequestRecord};
use crate::routes::router;
use crate::state::{ServerState, Shared, lock};

/// A handle on a running emulator; clones share the same server.
#[derive(Clone)]
pub struct Emulator {
    /// Everything the server and the handle share.
    shared: Arc<Shared>,
}

impl Emulator {
    /// Binds `addr` (port 0 allowed) and serves in a spawned tokio task.
    ///
    /// The server keeps running until [`Emulator::shutdown`], even when every handle is dropped.
    pub async fn start(config: EmulatorConfig, addr: SocketAddr) -> io::Result<Emulator> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let (stop_tx, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            state: Mutex::new(ServerState::new(&config)),
            config,
            addr: local,
            listener: Mutex::new(Some(listener)),
            stop_tx,
            task: Mutex::new(None),
        });
        let app = router(Arc::clone(&shared));
        let server_listener = ServerListener {
            shared: Arc::clone(&shared),
        };
        let task = tokio::spawn(async move {
            if let Err(err) = axum::serve(server_listener, app).await {
                tracing::warn!(error = %err, "emulator server stopped");
            }
        });
        *lock(&shared.task) = Some(task);
        tracing::debug!(addr = %local, "emulator listening");
        Ok(Emulator { shared })
    }

    /// The address actually bound (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `http://HOST:PORT` to put in a client's config; an unspecified bind address
    /// (`0.0.0.0`, `::`) is reached over loopback.
    pub fn base_url(&self) -> String {
        let addr = self.shared.addr;
        let ip = match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, addr.port()))
    }

    /// While on, every submit that passes validation is answered 402 (no money on the account).
    pub fn set_no_money(&self, on: bool) {
        self.shared.state().no_money = on;
    }

    /// The next `count` requests to `endpoint` answer `status` (with a JSON message) before any
    /// other check; they are recorded like any request. A `status` that is not a valid HTTP
    /// status code is answered as 500.
    pub fn fail_next(&self, endpoint: Endpoint, status: u16, count: usize) {
        if count > 0 {
            let mut state = self.shared.state();
            state.faults[slot(endpoint)].push_back((status, count));
        }
    }

    /// The next `count` requests to `endpoint` sleep `delay` before answering, to provoke client
    /// timeouts. The request itself is handled on arrival: a delayed submit is accepted (and
    /// counts for 409) even if the client gives up waiting for the answer.
    pub fn delay_next(&self, endpoint: Endpoint, delay: Duration, count: usize) {
        if count > 0 {
            let mut state = self.shared.state();
            state.delays[slot(endpoint)].push_back((delay, count));
        }
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        let mut records = self.shared.state().records.clone();
        records.sort_by_key(|record| record.at);
        records
    }

    /// How many distinct image contents, each with what was asked for it, were accepted
    /// (submit answered 200).
    pub fn accepted_images(&self) -> usize {
        self.shared.state().seen.len()
    }

    /// Stops serving: the listener is closed at once (later connections are refused), open
    /// connections are cut, and the server task is aborted. Idempotent.
    pub fn shutdown(&self) {
        self.shared.stop_tx.send_replace(true);
        drop(lock(&self.shared.listener).take());
        if let Some(task) = lock(&self.shared.task).take() {
            task.abort();
        }
        tracing::debug!(addr = %self.shared.addr, "emulator shut down");
    }
}

/// Runs the emulator until Ctrl-C: the `beorg-hotfolder emulator --listen ADDR` subcommand
/// calls this.
pub async fn serve_forever(config: EmulatorConfig, addr: SocketAddr) -> anyhow::Result<()> {
    let emulator = Emulator::start(config, addr)
        .await
        .map_err(|err| anyhow::anyhow!("cannot listen on {addr}: {err}"))?;
    tracing::info!(
        base_url = %emulator.base_url(),
        "Beorg API emulator running; press Ctrl-C to stop"
    );
    let signal = tokio::signal::ctrl_c().await;
    emulator.shutdown();
    signal.map_err(|err| anyhow::anyhow!("cannot wait for Ctrl-C: {err}"))
}
