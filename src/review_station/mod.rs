//! The review station: a small web page, served by the daemon when `[review_station]` is
//! configured, where a person checks each result in the review folders beside its scan and
//! approves it (with corrections), or rejects it.
//!
//! [`start`] binds the address (HTTPS with `tls_cert`/`tls_key`) and serves [`server`]'s
//! routes for the life of the process; each pipeline session [`Station::attach`]es its config
//! and journal, so a reload's inboxes are seen at once. Beside it: [`auth`] (the users file,
//! argon2id), [`sessions`] (login sessions and the login limit), [`csrf`], [`items`] (what
//! waits in the review folders, opaque ids, opening scans safely), [`decision`] (the sidecar
//! a decision writes), [`recover`] (a decision a crash interrupted), [`audit`] (the audit log), [`templates`] and [`texts`] (the pages, in
//! Russian and English), [`tls`]. The decision itself (move, sidecar, history line,
//! `file.reviewed` delivery, in one transaction that the first decider wins) is
//! [`crate::store::journal::Journal::review_decision`].

pub mod audit;
pub mod auth;
pub mod csrf;
pub mod decision;
pub mod items;
pub mod recover;
pub mod server;
pub mod sessions;
pub mod templates;
pub mod texts;
pub mod tls;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, ReviewStationConfig};
use crate::metrics::Metrics;
use crate::store::journal::Journal;

/// How many recent decisions the station remembers, to tell a second decider who was first.
const REMEMBERED_DECISIONS: usize = 10_000;

/// The running station.
pub struct Station {
    /// `[review_station]` as the process started with it (a reload may not change it).
    settings: ReviewStationConfig,
    /// The current session's config (its inboxes' review folders) and journal; `None`
    /// until the first session starts.
    attached: RwLock<Option<Attached>>,
    sessions: sessions::Sessions,
    /// Failed logins by name.
    logins: sessions::LoginLimit,
    /// Failed logins by client address.
    logins_from: sessions::LoginLimit,
    /// Bounds the password checks running at once.
    hashing: tokio::sync::Semaphore,
    audit: audit::AuditLog,
    metrics: Arc<Metrics>,
    /// Makes the items' opaque ids (random for each process).
    id_key: Vec<u8>,
    /// The Content-Security-Policy of the pages (with the style's hash).
    csp: String,
    /// Item id → who decided it, what, when: this process's decisions, for the 409 page.
    decided: Mutex<HashMap<String, (String, String, SystemTime)>>,
    /// Decisions one at a time: a second decider waits for the first's whole decision (the
    /// move, the record, the memory above) and then finds the item decided (409), never
    /// gone from review/ and not yet remembered (404).
    deciding: tokio::sync::Mutex<()>,
}

/// What a pipeline session lends the station.
#[derive(Clone)]
struct Attached {
    config: Arc<Config>,
    journal: Journal,
}

/// Starts the station if `config` has `[review_station]`: the users file must exist, the
/// audit log must open, the TLS files must load, the address must bind; each failure names
/// its key and stops the start.
pub async fn start(
    config: &Config,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> anyhow::Result<Option<Arc<Station>>> {
    let Some(settings) = config.review_station.clone() else {
        return Ok(None);
    };
    metrics.review_station_started();
    if let Err(e) = std::fs::metadata(&settings.users_file) {
        anyhow::bail!(
            "cannot read the reviewers file {} (review_station.users_file): {e}; create it with `beorg-hotfolder reviewer add NAME --users-file {}`",
            settings.users_file.display(),
            settings.users_file.display()
        );
    }
    let audit = audit::AuditLog::open(&settings.audit_log)?;
    let acceptor = settings.tls.as_ref().map(tls::acceptor).transpose()?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {} (review_station.listen): {e}",
                settings.listen
            )
        })?;
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    tracing::info!("review station at {scheme}://{}/", settings.listen);
    let station = Arc::new(Station {
        sessions: sessions::Sessions::new(settings.session_timeout),
        settings,
        attached: RwLock::new(None),
        logins: sessions::LoginLimit::new(sessions::MAX_FAILURES),
        logins_from: sessions::LoginLimit::new(sessions::MAX_FAILURES_FROM_ADDRESS),
        hashing: tokio::sync::Semaphore::new(sessions::HASHING_AT_ONCE),
        audit,
        metrics,
        id_key: sessions::random_hex(32).into_bytes(),
        csp: content_security_policy(),
        decided: Mutex::default(),
        deciding: tokio::sync::Mutex::new(()),
    });
    match acceptor {
        Some(acceptor) => {
            let listener = tls::TlsListener::new(listener, acceptor, stop.clone())?;
            tokio::spawn(server::serve(listener, station.clone(), stop));
        }
        None => {
            tokio::spawn(server::serve(listener, station.clone(), stop));
        }
    }
    Ok(Some(station))
}

impl Station {
    /// A pipeline session started with `config` (its inboxes, retired ones included) and
    /// `journal`: decisions go through them from now on. Decisions a crash interrupted are
    /// recorded now ([`recover`]).
    pub fn attach(&self, config: Arc<Config>, journal: Journal) {
        tokio::spawn(recover::finish_interrupted(config.clone(), journal.clone()));
        *self.attached.write().unwrap_or_else(|p| p.into_inner()) =
            Some(Attached { config, journal });
    }

    fn remember_decision(&self, id: &str, by: &str, decision: &str, at: SystemTime) {
        let mut map = self.decided.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= REMEMBERED_DECISIONS {
            map.clear();
        }
        map.insert(id.to_string(), (by.to_string(), decision.to_string(), at));
    }

    fn decided_by(&self, id: &str) -> Option<(String, String, SystemTime)> {
        self.decided
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }
}

/// `default-src 'none'`, images and frames (a PDF) from here, the one inline style by its
/// hash, forms to here only, no framing, no `<base>`.
fn content_security_policy() -> String {
    use base64::Engine;
    use sha2::Digest;
    let hash =
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(templates::STYLE));
    format!(
        "default-src 'none'; img-src 'self'; frame-src 'self'; style-src 'sha256-{hash}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
}
