//! Wiring the stages together: [`run`] is what the binary, the demo and the tests call.
//!
//! At start the journal is read and every unfinished file resumes where it stopped; files left
//! in work folders without a record are adopted. Then intake runs, and a feeder loop takes
//! the oldest ready file whenever one of a few "prepared submit" slots is free, claims it and
//! gives it a task of its own: preflight → submit → poll → finish. Shutdown stops all waiting
//! at once; requests already in flight get a short grace, then are abandoned (the journal
//! makes that safe). A reload (SIGHUP) is a graceful stop and a new start in the same
//! process, with the same scheduler, so pacing and an account pause carry over.

mod drive;
mod session;
pub mod telemetry;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, InboxConfig};
use crate::metrics::Metrics;
use crate::pipeline::intake;
use crate::scheduler::{Limits, Scheduler};
use crate::store::mounts::MountGuard;
use session::Session;

/// After the shutdown signal, how long requests in flight may take to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Runs the daemon until `shutdown` completes. Returns an error only when it cannot start
/// (journal unreadable, HTTP client impossible); everything after start is logged and retried.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let (_no_reloads, reloads) = tokio::sync::mpsc::unbounded_channel();
    run_reloadable(config, reloads, shutdown).await
}

/// Like [`run`], and each config received on `reloads` (SIGHUP, already parsed and checked)
/// replaces the running one: the current session stops taking files, lets submits on the wire
/// finish, and a new session starts with the new config, resuming everything from the journal.
/// Inboxes no longer configured are not watched any more, but their files in flight finish.
/// Pacing and the account pause carry over: one scheduler lives as long as the process.
pub async fn run_reloadable(
    mut config: Config,
    mut reloads: tokio::sync::mpsc::UnboundedReceiver<Config>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    // One daemon per state folder, for the whole run (a reload keeps the state folder, and
    // this lock): taken before the journal is opened.
    let _instance = crate::store::instance::InstanceLock::acquire(&config.daemon.state_dir)?;
    let lifetime = CancellationToken::new();
    // If this future is dropped rather than shut down (a runtime torn down after a panic),
    // every task and the intake thread still end.
    let _end_on_drop = lifetime.clone().drop_guard();
    let scheduler = start_scheduler(&config, lifetime.clone())?;
    let shared = Shared {
        scheduler,
        mounts: Arc::new(MountGuard::default()),
        metrics: Arc::new(Metrics::new()),
        liveness: Arc::new(intake::Liveness::default()),
        lifetime: lifetime.clone(),
    };
    serve_metrics(&config, &shared).await?;
    let review_station =
        crate::review_station::start(&config, shared.metrics.clone(), lifetime.clone()).await?;
    let mut retired: Vec<InboxConfig> = Vec::new();
    tokio::pin!(shutdown);
    loop {
        let session = Session::start(&config, &retired, &shared).await?;
        if let Some(station) = &review_station {
            let (config, journal) = session.config_and_journal();
            station.attach(config, journal);
        }
        // The stop request is polled until it completes, never after: a stop while the
        // inboxes are still being listed ends the run here.
        tokio::select! {
            _ = session.liveness.started.notified() => {}
            _ = &mut shutdown => return shut_down(session).await,
        }
        // READY=1 once every existing inbox is attached and listed (again, after a reload).
        crate::systemd::ready();
        session.spawn_watchdog();
        let new = loop {
            tokio::select! {
                _ = &mut shutdown => return shut_down(session).await,
                Some(new) = reloads.recv() => match reload_allowed(&config, &new) {
                    Ok(()) => break new,
                    Err(why) => tracing::error!("the new config is refused ({why}); the running one stays"),
                },
            }
        };
        crate::systemd::reloading();
        tracing::info!(
            "reloading the config: finishing requests on the wire, then carrying on with the new one"
        );
        session
            .stop(new.api.request_timeout.max(SHUTDOWN_GRACE))
            .await;
        retired = still_needed(&config, &retired, &new);
        log_changes(&config, &new, &retired);
        shared.scheduler.set_limits(limits_of(&new));
        config = new;
    }
}

/// The end of a run: no new files are taken, requests on the wire get [`SHUTDOWN_GRACE`].
async fn shut_down(session: Session) -> anyhow::Result<()> {
    crate::systemd::stopping();
    tracing::info!("stopping: no new files are taken");
    session.stop(SHUTDOWN_GRACE).await;
    tracing::info!("stopped");
    Ok(())
}

/// What lives as long as the process, across reloads.
pub(crate) struct Shared {
    scheduler: Scheduler,
    mounts: Arc<MountGuard>,
    metrics: Arc<Metrics>,
    /// The intake loop's heartbeat (the current session's intake updates it).
    liveness: Arc<intake::Liveness>,
    lifetime: CancellationToken,
}

/// Binds `[metrics] listen` (a bind failure stops the start: the operator asked for it) and
/// serves `/metrics` and `/healthz` (healthy while the intake loop turns).
async fn serve_metrics(config: &Config, shared: &Shared) -> anyhow::Result<()> {
    let Some(addr) = config.metrics.listen else {
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (metrics.listen): {e}"))?;
    tracing::info!("metrics at http://{addr}/metrics, health at http://{addr}/healthz");
    let liveness = shared.liveness.clone();
    let healthy = move || liveness.turned_within(Duration::from_secs(5));
    tokio::spawn(crate::metrics::serve(
        listener,
        shared.metrics.clone(),
        healthy,
        shared.lifetime.clone(),
    ));
    Ok(())
}

/// The scheduler on this process's own budget, or on the one shared through Redis (which
/// starts without Redis answering: it then waits, and sends nothing, until Redis answers).
fn start_scheduler(config: &Config, lifetime: CancellationToken) -> anyhow::Result<Scheduler> {
    let Some(shared) = &config.budget.redis else {
        return Ok(Scheduler::start(limits_of(config), lifetime));
    };
    let budget = crate::budget::SharedBudget::new(shared, &config.daemon.state_dir)?;
    tracing::info!(
        "the request budget is shared through {} (key {}) with every daemon that uses it",
        shared.shown_url(),
        shared.key
    );
    Ok(Scheduler::start_shared(limits_of(config), budget, lifetime))
}

fn limits_of(config: &Config) -> Limits {
    Limits {
        requests_per_second: config.api.requests_per_second,
        documents_per_minute: config.api.documents_per_minute,
    }
}

/// What a reload may not change while running.
fn reload_allowed(old: &Config, new: &Config) -> Result<(), String> {
    if old.daemon.state_dir != new.daemon.state_dir {
        return Err("daemon.state_dir cannot change while running; restart the service".into());
    }
    if old.metrics.listen != new.metrics.listen {
        return Err("metrics.listen cannot change while running; restart the service".into());
    }
    if old.review_station != new.review_station {
        return Err(
            "[review_station] cannot change while running (the reviewers file is read at each login and needs no reload); restart the service".into(),
        );
    }
    let budget = |c: &Config| {
        c.budget
            .redis
            .as_ref()
            .map(|b| (b.url.clone(), b.key.clone()))
    };
    if budget(old) != budget(new) {
        return Err(
            "budget.redis and budget.key cannot change while running; restart the service".into(),
        );
    }
    Ok(())
}

/// Inboxes that leave the config (now or earlier) stay known, unwatched, so the journal's
/// files of theirs still finish; an inbox that comes back is simply active again.
fn still_needed(old: &Config, retired: &[InboxConfig], new: &Config) -> Vec<InboxConfig> {
    old.inboxes
        .iter()
        .chain(retired)
        .filter(|i| new.inboxes.iter().all(|n| n.path != i.path))
        .fold(Vec::new(), |mut kept, inbox| {
            if kept.iter().all(|k: &InboxConfig| k.path != inbox.path) {
                kept.push(inbox.clone());
            }
            kept
        })
}

fn log_changes(old: &Config, new: &Config, retired: &[InboxConfig]) {
    let added: Vec<String> = new
        .inboxes
        .iter()
        .filter(|n| old.inboxes.iter().all(|o| o.path != n.path))
        .map(|i| i.path.display().to_string())
        .collect();
    let removed: Vec<String> = retired
        .iter()
        .map(|i| i.path.display().to_string())
        .collect();
    tracing::info!(
        inboxes = new.inboxes.len(),
        requests_per_second = new.api.requests_per_second,
        documents_per_minute = new.api.documents_per_minute,
        "config reloaded; added inboxes: {added:?}; no longer watched (their files in flight still finish): {removed:?}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(budget: &str) -> Config {
        let text = format!(
            "[api]\nproject_id = \"P\"\nmachine_uid = \"m\"\n\n[[inbox]]\npath = \"/srv/in\"\ntype = \"PASSPORT\"\ndone = \"/srv/done\"\nfailed = \"/srv/failed\"\n{budget}"
        );
        Config::from_toml(&text, std::path::Path::new("/c.toml"), Some("t".into())).unwrap()
    }

    /// Issue 21: the review station lives as long as the process (its sessions, its port); a
    /// reload that changes `[review_station]` is refused, naming it.
    #[test]
    fn a_reload_may_not_change_the_review_station() {
        let off = config("");
        let on = config("[review_station]\nlisten = \"127.0.0.1:8091\"\n");
        let moved = config("[review_station]\nlisten = \"127.0.0.1:8092\"\n");
        assert!(reload_allowed(&on, &on).is_ok());
        for (old, new) in [(&off, &on), (&on, &off), (&on, &moved)] {
            let refused = reload_allowed(old, new).unwrap_err();
            assert!(refused.contains("[review_station]"), "{refused}");
        }
    }

    /// Issue 13: the shared budget's Redis and key are fixed for the process's life (the
    /// scheduler lives across reloads); a reload that changes them is refused, naming them.
    #[test]
    fn a_reload_may_not_change_the_shared_budget() {
        let local = config("");
        let shared = config("[budget]\nredis = \"redis://127.0.0.1:6379/0\"\n");
        let other_key = config("[budget]\nredis = \"redis://127.0.0.1:6379/0\"\nkey = \"k\"\n");
        assert!(reload_allowed(&shared, &shared).is_ok());
        for (old, new) in [(&local, &shared), (&shared, &local), (&shared, &other_key)] {
            let refused = reload_allowed(old, new).unwrap_err();
            assert!(refused.contains("budget.redis and budget.key"), "{refused}");
        }
    }
}
