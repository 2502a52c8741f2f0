//! Wiring the stages together: [`run`] is what the binary, the demo and the tests call.
//!
//! At start the journal is read and every unfinished file resumes where it stopped; files left
//! in work folders without a record are adopted. Then intake runs, and a feeder loop takes
//! the oldest ready file whenever one of a few "prepared submit" slots is free, claims it and
//! gives it a task of its own: preflight → submit → poll → finish. Shutdown stops all waiting
//! at once; requests already in flight get a short grace, then are abandoned (the journal
//! makes that safe). A reload (SIGHUP) is a graceful stop and a new start in the same
//! process, with the same scheduler, so pacing and an account pause carry over.

pub mod telemetry;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::ApiClient;
use crate::config::{Config, InboxConfig};
use crate::metrics::Metrics;
use crate::pipeline::claim::{self, ClaimError, Job};
use crate::pipeline::finish;
use crate::pipeline::finish::MountGuard;
use crate::pipeline::intake::{self, ReadyFile, ReadyQueue};
use crate::pipeline::poll::{self, PollStep};
use crate::pipeline::preflight;
use crate::pipeline::submit::{self, SubmitStep};
use crate::scheduler::{Limits, Scheduler};
use crate::sidecar::{ErrorKind, Outcome};
use crate::store::journal::{Journal, Stage};

/// How many files may be claimed and read into memory ahead of their submit turn. One is
/// being uploaded, one waits with its body ready, one is being read: the upload link never
/// idles, and memory holds at most this many file bodies.
const PREPARED_SUBMITS: usize = 3;

/// After the shutdown signal, how long requests in flight may take to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Everything a file's task needs, shared by all of them.
pub struct Pipeline {
    pub config: Arc<Config>,
    pub journal: Journal,
    pub scheduler: Scheduler,
    pub api: ApiClient,
    /// Stop waiting: no new files, no more sleeps, polls or turns.
    pub stop: CancellationToken,
    /// Stop everything: abandon requests in flight (fired after the grace period).
    pub abort: CancellationToken,
    /// Bounds how many file bodies are in memory ahead of their submit.
    pub prepared_slots: Arc<Semaphore>,
    /// Notices a done/failed folder or inbox whose share was unmounted.
    pub mounts: Arc<MountGuard>,
    /// Per inbox: submits on the wire right now. (The journal says `submitting` from just
    /// before the submit turn; `status` shows files still waiting for the turn as waiting.)
    pub sending: Vec<AtomicU64>,
    /// Counters and gauges for `/metrics` (process lifetime, across reloads).
    pub metrics: Arc<Metrics>,
    /// Submits on their way, by content and request (the duplicate rule waits only on these).
    pub same_request: crate::pipeline::submit::SameRequest,
}

/// How often finished files older than `keep_history` are pruned from the journal.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

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
    let scheduler = Scheduler::start(limits_of(&config), lifetime.clone());
    let shared = Shared {
        scheduler,
        mounts: Arc::new(MountGuard::default()),
        metrics: Arc::new(Metrics::new()),
        liveness: Arc::new(intake::Liveness::default()),
        lifetime: lifetime.clone(),
    };
    serve_metrics(&config, &shared).await?;
    let mut retired: Vec<InboxConfig> = Vec::new();
    tokio::pin!(shutdown);
    loop {
        let session = Session::start(&config, &retired, &shared).await?;
        let started = tokio::select! {
            _ = session.liveness.started.notified() => true,
            _ = &mut shutdown => false,
        };
        if started {
            // READY=1 once every existing inbox is attached and listed (again, after a reload).
            crate::systemd::ready();
            session.spawn_watchdog();
        }
        let new = loop {
            tokio::select! {
                _ = &mut shutdown => {
                    crate::systemd::stopping();
                    tracing::info!("stopping: no new files are taken");
                    session.stop(SHUTDOWN_GRACE).await;
                    tracing::info!("stopped");
                    return Ok(());
                }
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

/// What lives as long as the process, across reloads.
struct Shared {
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

/// One run of the pipeline with one config: from resume to stop.
struct Session {
    p: Arc<Pipeline>,
    tasks: TaskTracker,
    liveness: Arc<intake::Liveness>,
}

impl Session {
    async fn start(
        config: &Config,
        retired: &[InboxConfig],
        shared: &Shared,
    ) -> anyhow::Result<Session> {
        let stop = shared.lifetime.child_token();
        let abort = shared.lifetime.child_token();
        let journal = Journal::open(&config.daemon.state_dir)?;
        let api = ApiClient::new(&config.api)?;
        // Active inboxes first, then the retired ones: job.inbox indexes this list, and intake
        // watches only the active prefix.
        let mut all = config.clone();
        all.inboxes.extend(retired.iter().cloned());
        let all = Arc::new(all);
        report_missing_outputs(config);
        shared.mounts.remember(
            all.inboxes
                .iter()
                .flat_map(|i| [i.path.as_path(), i.done.as_path(), i.failed.as_path()]),
        );
        remove_stale_temp_files(config);
        let p = Arc::new(Pipeline {
            config: all.clone(),
            journal,
            scheduler: shared.scheduler.clone(),
            api,
            stop: stop.clone(),
            abort,
            prepared_slots: Arc::new(Semaphore::new(PREPARED_SUBMITS)),
            mounts: shared.mounts.clone(),
            sending: all.inboxes.iter().map(|_| AtomicU64::new(0)).collect(),
            metrics: shared.metrics.clone(),
            same_request: Default::default(),
        });
        let tasks = TaskTracker::new();
        resume(&p, &tasks).await?;

        let queue = Arc::new(ReadyQueue::default());
        tasks.spawn(telemetry::write_snapshots(p.clone(), queue.clone()));
        tasks.spawn(prune_history(p.clone()));
        let liveness = shared.liveness.clone();
        let watched = Arc::new(config.inboxes.clone());
        let (intake_queue, rescan, intake_liveness) = (
            queue.clone(),
            config.daemon.rescan_interval,
            liveness.clone(),
        );
        tasks.spawn_blocking(move || {
            intake::run(watched, intake_queue, rescan, stop, intake_liveness)
        });
        tasks.spawn(feed(p.clone(), queue, tasks.clone()));
        tracing::info!(
            inboxes = config.inboxes.len(),
            requests_per_second = config.api.requests_per_second,
            documents_per_minute = config.api.documents_per_minute,
            "beorg-hotfolder {} running",
            env!("CARGO_PKG_VERSION")
        );
        Ok(Session { p, tasks, liveness })
    }

    fn spawn_watchdog(&self) {
        self.tasks
            .spawn(watchdog(self.liveness.clone(), self.p.stop.clone()));
    }

    /// Stops waiting at once; requests on the wire get `grace`, then are abandoned (the
    /// journal makes that safe).
    async fn stop(self, grace: Duration) {
        self.p.stop.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "requests still in flight after {} are abandoned; the journal resumes them",
                humantime::format_duration(grace)
            );
            self.p.abort.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(1), self.tasks.wait()).await;
        }
        self.p.abort.cancel();
    }
}

/// WATCHDOG=1 every half `WatchdogSec=`, but only while the intake thread turns (a hang
/// there, or in the async runtime that runs this task, stops the pings and systemd restarts
/// the service).
async fn watchdog(liveness: Arc<intake::Liveness>, stop: CancellationToken) {
    let Some(every) = crate::systemd::watchdog_interval() else {
        return;
    };
    loop {
        if liveness.turned_within(every) {
            crate::systemd::watchdog();
        } else {
            tracing::error!(
                "the intake loop has not turned for {}; not telling systemd we are alive",
                humantime::format_duration(every)
            );
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Forgets finished files older than `keep_history`, at start and then hourly.
async fn prune_history(p: Arc<Pipeline>) {
    loop {
        match p.journal.prune(p.config.daemon.keep_history).await {
            Ok(0) => {}
            Ok(n) => tracing::info!("forgot {n} finished files older than keep_history"),
            Err(e) => tracing::warn!("cannot prune the journal: {e:#}"),
        }
        tokio::select! {
            _ = p.stop.cancelled() => return,
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
        }
    }
}

/// Takes the oldest ready file whenever a prepared-submit slot is free, and starts its task.
async fn feed(p: Arc<Pipeline>, queue: Arc<ReadyQueue>, tasks: TaskTracker) {
    // Per path, the last reason a claim failed: a file that cannot be moved (inbox not
    // writable by the service, a subfolder on another filesystem) is offered again after each
    // settle; it is reported once per reason, not every few seconds.
    let mut refused: HashMap<PathBuf, String> = HashMap::new();
    loop {
        let permit = tokio::select! {
            _ = p.stop.cancelled() => return,
            permit = p.prepared_slots.clone().acquire_owned() => permit.expect("never closed"),
        };
        let file = tokio::select! {
            _ = p.stop.cancelled() => return,
            file = queue.pop() => file,
        };
        let job = claim_or_leave(&p, &file, &mut refused).await;
        queue.release(&file.path);
        if let Some(job) = job {
            tasks.spawn(drive(p.clone(), job, Some(permit)));
        }
    }
}

/// Claims a ready file; on any problem the file simply stays in the inbox for a later look.
async fn claim_or_leave(
    p: &Pipeline,
    file: &ReadyFile,
    refused: &mut HashMap<PathBuf, String>,
) -> Option<Job> {
    let inbox = &p.config.inboxes[file.inbox];
    match claim::claim(file, inbox, &p.journal, &p.stop).await {
        Ok(job) => {
            refused.remove(&file.path);
            tracing::info!(inbox = %inbox.path.display(), file = %job.name, "claimed");
            Some(job)
        }
        Err(ClaimError::Changed | ClaimError::Vanished | ClaimError::Stopped) => None,
        Err(e) => {
            let reason = e.to_string();
            if refused.get(&file.path) != Some(&reason) {
                tracing::warn!(inbox = %inbox.path.display(), file = %file.name, "not claimed, left in the inbox (tried again after each settle): {reason}");
                refused.insert(file.path.clone(), reason);
            }
            None
        }
    }
}

/// One file's way from claimed to finished.
async fn drive(p: Arc<Pipeline>, mut job: Job, permit: Option<OwnedSemaphorePermit>) {
    if job.document_id.is_none() {
        // The content is hashed first, in the file's own task (a slow share delays no other
        // file), and stored: before the duplicate rule can wait on anything, and so that even
        // a refusal's sidecar carries it. An unreadable file has none; it fails as unreadable.
        if job.sha256.is_none() {
            let path = job.work_path.clone();
            if let Ok(Ok(sha)) = tokio::task::spawn_blocking(move || claim::hash_file(&path)).await
            {
                let stored = crate::store::journal::until_stored(&p.stop, "content hash", || {
                    p.journal.set_sha256(job.id, sha.clone())
                })
                .await;
                if stored.is_none() {
                    return;
                }
                job.sha256 = Some(sha);
            }
        }
        match preflight_check(&job, p.config.inboxes[job.inbox].preflight).await {
            Preflight::Send => {}
            Preflight::Refuse(outcome) => {
                drop(permit);
                finish::finish(&p, &job, outcome).await;
                return;
            }
            Preflight::Vanished => return finish::lost(&p, &job).await,
        }
        match submit::submit(&p, &mut job, permit).await {
            SubmitStep::Submitted => {}
            SubmitStep::Finished(outcome) => {
                finish::finish(&p, &job, outcome).await;
                return;
            }
            SubmitStep::Vanished => return finish::lost(&p, &job).await,
            SubmitStep::Stopped => return,
        }
    }
    match poll::poll(&p, &job).await {
        PollStep::Finished(outcome) => {
            finish::finish(&p, &job, outcome).await;
        }
        PollStep::Stopped => {}
    }
}

/// What preflight decided about a claimed file.
enum Preflight {
    Send,
    Refuse(Outcome),
    Vanished,
}

/// Preflight: may this file be sent? The inbox's `preflight` policy decides what a refusal
/// means: strict (failed/, no request), warn (log and send), off (no check at all).
async fn preflight_check(job: &Job, policy: preflight::Policy) -> Preflight {
    if policy == preflight::Policy::Off {
        return Preflight::Send;
    }
    let path = job.work_path.clone();
    match tokio::task::spawn_blocking(move || crate::logging::contained(|| preflight::check(&path)))
        .await
    {
        Ok(Ok(Ok(_facts))) => Preflight::Send,
        Ok(Ok(Err(refusal))) if policy == preflight::Policy::Warn => {
            tracing::warn!(file = %job.name, "sending although the service will probably refuse it (preflight = \"warn\"): {refusal}");
            Preflight::Send
        }
        Ok(Ok(Err(refusal))) => {
            tracing::info!(file = %job.name, "refused before sending: {refusal}");
            Preflight::Refuse(Outcome::failed(ErrorKind::InvalidFile, None, refusal.0))
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Preflight::Vanished,
        Ok(Err(e)) => Preflight::Refuse(Outcome::failed(
            ErrorKind::Unreadable,
            None,
            format!(
                "The file could not be read ({e}). Check the scanner's file permissions and put it in the folder again."
            ),
        )),
        // The check itself panicked: let the API be the judge rather than lose the file.
        Err(e) => {
            tracing::error!(file = %job.name, "preflight crashed: {e}");
            Preflight::Send
        }
    }
}

/// Restarts every unfinished file from its journal row, and adopts unrecorded work files.
async fn resume(p: &Arc<Pipeline>, tasks: &TaskTracker) -> anyhow::Result<()> {
    let records = p.journal.unfinished().await?;
    for record in &records {
        let Some(inbox) = p.config.inboxes.iter().position(|i| i.path == record.inbox) else {
            tracing::warn!(
                file = %record.name, inbox = %record.inbox.display(),
                "its inbox is no longer in the config; the file stays at {}", record.work_path.display()
            );
            continue;
        };
        let job = Job::from_record(record, inbox);
        match record.stage {
            Stage::Finishing => {
                let (p, record) = (p.clone(), record.clone());
                tasks.spawn(async move {
                    finish::resume(&p, &job, &record).await;
                });
                continue;
            }
            Stage::Submitting => tracing::warn!(
                file = %job.name,
                "outcome unknown: the daemon stopped while this file was queued for sending or on its way; sending it again (if the earlier request reached the service, it answers 409 and the file goes to failed as a duplicate, or is answered from the document the 409 names)"
            ),
            Stage::Submitted => tracing::info!(
                file = %job.name, document_id = job.document_id.as_deref().unwrap_or("-"),
                "resuming: waiting for its result"
            ),
            _ => tracing::info!(file = %job.name, "resuming: not sent yet"),
        }
        tasks.spawn(drive(p.clone(), job, None));
    }
    for job in claim::adopt_orphans(&p.config.inboxes, &p.journal, &records).await? {
        tasks.spawn(drive(p.clone(), job, None));
    }
    Ok(())
}

/// A kill during an atomic write leaves its dot-named temp file behind; nobody else uses the
/// prefix, so whatever carries it at start is debris.
fn remove_stale_temp_files(config: &Config) {
    let dirs = config
        .inboxes
        .iter()
        .flat_map(|i| [i.done.clone(), i.failed.clone(), i.work_dir()])
        .chain([config.daemon.state_dir.clone()]);
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name
                .to_string_lossy()
                .starts_with(crate::store::fsutil::TEMP_PREFIX)
            {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => {
                        tracing::info!(file = %entry.path().display(), "removed a temp file left by an interrupted write")
                    }
                    Err(e) => {
                        tracing::warn!(file = %entry.path().display(), "cannot remove a leftover temp file: {e}")
                    }
                }
            }
        }
    }
}

/// done/ and failed/ are never created by the daemon (on an unmounted share that would put
/// passports on the root filesystem); say at start which ones are missing.
fn report_missing_outputs(config: &Config) {
    for (i, inbox) in config.inboxes.iter().enumerate() {
        for (key, dir) in [("done", &inbox.done), ("failed", &inbox.failed)] {
            if !dir.is_dir() {
                tracing::warn!(
                    "inbox[{i}].{key} folder {} does not exist; files wait in the work folder until it is created",
                    dir.display()
                );
            }
        }
    }
}
