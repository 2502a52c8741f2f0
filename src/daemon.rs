//! Wiring the stages together: [`run`] is what the binary, the demo and the tests call.
//!
//! At start the journal is read and every unfinished file resumes where it stopped; files left
//! in work folders without a record are adopted. Then intake runs, and a feeder loop takes
//! the oldest ready file whenever one of a few "prepared submit" slots is free, claims it and
//! gives it a task of its own: preflight → submit → poll → finish. Shutdown stops all waiting
//! at once; requests already in flight get a short grace, then are abandoned (the journal
//! makes that safe).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::ApiClient;
use crate::claim::{self, ClaimError, Job};
use crate::config::Config;
use crate::finish;
use crate::intake::{self, ReadyFile, ReadyQueue};
use crate::journal::{Journal, Stage};
use crate::poll::{self, PollStep};
use crate::preflight;
use crate::scheduler::{Limits, Scheduler};
use crate::sidecar::{ErrorKind, Outcome};
use crate::submit::{self, SubmitStep, record_or_log};

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
}

/// Runs the daemon until `shutdown` completes. Returns an error only when it cannot start
/// (journal unreadable, HTTP client impossible); everything after start is logged and retried.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let abort = CancellationToken::new();
    let journal = Journal::open(&config.daemon.state_dir)?;
    let api = ApiClient::new(&config.api)?;
    let limits = Limits {
        requests_per_second: config.api.requests_per_second,
        documents_per_minute: config.api.documents_per_minute,
    };
    let scheduler = Scheduler::start(limits, abort.clone());
    let config = Arc::new(config);
    report_missing_outputs(&config);
    let p = Arc::new(Pipeline {
        config: config.clone(),
        journal,
        scheduler,
        api,
        stop: stop.clone(),
        abort: abort.clone(),
        prepared_slots: Arc::new(Semaphore::new(PREPARED_SUBMITS)),
    });
    let tasks = TaskTracker::new();
    resume(&p, &tasks).await?;

    let queue = Arc::new(ReadyQueue::default());
    let inboxes = Arc::new(config.inboxes.clone());
    tasks.spawn(intake::run(
        inboxes,
        queue.clone(),
        config.daemon.rescan_interval,
        stop.clone(),
    ));
    tasks.spawn(feed(p.clone(), queue, tasks.clone()));
    tracing::info!(
        inboxes = config.inboxes.len(),
        requests_per_second = config.api.requests_per_second,
        documents_per_minute = config.api.documents_per_minute,
        "beorg-hotfolder {} running",
        env!("CARGO_PKG_VERSION")
    );

    shutdown.await;
    tracing::info!("stopping: no new files are taken");
    stop.cancel();
    tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still in flight after the grace period are abandoned; the journal resumes them at the next start"
        );
        abort.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), tasks.wait()).await;
    }
    abort.cancel();
    tracing::info!("stopped");
    Ok(())
}

/// Takes the oldest ready file whenever a prepared-submit slot is free, and starts its task.
async fn feed(p: Arc<Pipeline>, queue: Arc<ReadyQueue>, tasks: TaskTracker) {
    loop {
        let permit = tokio::select! {
            _ = p.stop.cancelled() => return,
            permit = p.prepared_slots.clone().acquire_owned() => permit.expect("never closed"),
        };
        let file = tokio::select! {
            _ = p.stop.cancelled() => return,
            file = queue.pop() => file,
        };
        let job = claim_or_leave(&p, &queue, &file).await;
        queue.release(&file.path);
        if let Some(job) = job {
            tasks.spawn(drive(p.clone(), job, Some(permit)));
        }
    }
}

/// Claims a ready file; on any problem the file simply stays in the inbox for a later look.
async fn claim_or_leave(p: &Pipeline, queue: &ReadyQueue, file: &ReadyFile) -> Option<Job> {
    let inbox = &p.config.inboxes[file.inbox];
    match claim::claim(file, inbox, &p.journal).await {
        Ok(job) => {
            tracing::info!(inbox = %inbox.path.display(), file = %job.name, "claimed");
            Some(job)
        }
        Err(ClaimError::Changed | ClaimError::Vanished) => None,
        Err(e) => {
            tracing::warn!(inbox = %inbox.path.display(), file = %file.name, queued = queue.len(), "not claimed, left in the inbox: {e}");
            None
        }
    }
}

/// One file's way from claimed to finished.
async fn drive(p: Arc<Pipeline>, mut job: Job, permit: Option<OwnedSemaphorePermit>) {
    if job.document_id.is_none() {
        match preflight_check(&job).await {
            Preflight::Send => {}
            Preflight::Refuse(outcome) => {
                drop(permit);
                finish::finish(&p, &job, outcome).await;
                return;
            }
            Preflight::Vanished => return vanished(&p, &job).await,
        }
        match submit::submit(&p, &mut job, permit).await {
            SubmitStep::Submitted => {}
            SubmitStep::Finished(outcome) => {
                finish::finish(&p, &job, outcome).await;
                return;
            }
            SubmitStep::Vanished => return vanished(&p, &job).await,
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

/// Preflight: may this file be sent?
async fn preflight_check(job: &Job) -> Preflight {
    let path = job.work_path.clone();
    match tokio::task::spawn_blocking(move || preflight::check(&path)).await {
        Ok(Ok(Ok(_format))) => Preflight::Send,
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

/// A claimed file's work copy is gone (deleted by hand): report it, close its record.
async fn vanished(p: &Pipeline, job: &Job) {
    tracing::error!(
        file = %job.name, work_path = %job.work_path.display(),
        "the claimed file disappeared from the work folder (deleted by hand?); nothing to send or move"
    );
    record_or_log(p.journal.mark_finished(job.id, Stage::Failed).await);
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
                "outcome unknown: the daemon stopped while this file was being sent; sending it again (if the service already has it, it answers 409 and the file goes to failed as a duplicate)"
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
