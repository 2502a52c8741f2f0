//! One session: the pipeline running with one config, from resume to stop. It resumes every
//! unfinished file from the journal (and adopts orphans from the work folders), starts
//! intake, and feeds ready files to their tasks; a reload stops it and starts the next one.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::ApiClient;
use crate::config::{Config, InboxConfig};
use crate::daemon::Shared;
use crate::daemon::drive::drive;
use crate::pipeline::claim::{self, ClaimError};
use crate::pipeline::finish;
use crate::pipeline::intake::{self, ReadyFile, ReadyQueue};
use crate::pipeline::{Context, Inbox, Job, Recorder};
use crate::store::journal::{Journal, Stage};
use crate::store::layout;

/// How many files may be claimed and opened ahead of their submit turn. One is being
/// uploaded, one waits with its body ready, one is being hashed: the upload link never idles.
/// (Bodies are streamed from the open files, so this bounds open files, not memory.)
const PREPARED_SUBMITS: usize = 3;

/// How often finished files older than `keep_history` are pruned from the journal.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// How often outcomes older than their inbox's `retention` are looked for (and at start).
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// One run of the pipeline with one config: from resume to stop.
pub(super) struct Session {
    p: Arc<Context>,
    tasks: TaskTracker,
    pub(super) liveness: Arc<intake::Liveness>,
}

impl Session {
    pub(super) async fn start(
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
                .flat_map(|i| [i.path.as_path(), i.done.as_path(), i.failed.as_path()])
                .chain(all.inboxes.iter().filter_map(|i| i.review.as_deref())),
        );
        remove_stale_temp_files(config);
        let p = Arc::new(Context {
            inboxes: all
                .inboxes
                .iter()
                .cloned()
                .map(Inbox::new)
                .map(Arc::new)
                .collect(),
            config: all.clone(),
            recorder: Recorder::new(journal, stop.clone(), shared.metrics.clone()),
            scheduler: shared.scheduler.clone(),
            api,
            stop: stop.clone(),
            abort,
            prepared_slots: Arc::new(Semaphore::new(PREPARED_SUBMITS)),
            mounts: shared.mounts.clone(),
            metrics: shared.metrics.clone(),
            same_request: Default::default(),
            ready_times: Default::default(),
        });
        let tasks = TaskTracker::new();
        resume(&p, &tasks).await?;

        let queue = Arc::new(ReadyQueue::default());
        tasks.spawn(crate::daemon::telemetry::write_snapshots(
            p.clone(),
            queue.clone(),
        ));
        tasks.spawn(prune_history(p.clone()));
        tasks.spawn(apply_retention(p.clone()));
        tasks.spawn(crate::deliver::run(crate::deliver::Deliverer {
            config: p.config.clone(),
            journal: p.recorder.journal().clone(),
            metrics: p.metrics.clone(),
            stop: p.stop.clone(),
            abort: p.abort.clone(),
        }));
        let liveness = shared.liveness.clone();
        let watched = Arc::new(config.inboxes.clone());
        let (intake_queue, rescan, hold_limit, intake_liveness) = (
            queue.clone(),
            config.daemon.rescan_interval,
            config.daemon.hold_limit,
            liveness.clone(),
        );
        tasks.spawn_blocking(move || {
            intake::run(
                watched,
                intake_queue,
                rescan,
                hold_limit,
                stop,
                intake_liveness,
            )
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

    /// The session's config (retired inboxes included) and journal, for the review station.
    pub(super) fn config_and_journal(&self) -> (Arc<Config>, Journal) {
        (self.p.config.clone(), self.p.recorder.journal().clone())
    }

    pub(super) fn spawn_watchdog(&self) {
        self.tasks
            .spawn(watchdog(self.liveness.clone(), self.p.stop.clone()));
    }

    /// Stops waiting at once; requests on the wire get `grace`, then are abandoned (the
    /// journal makes that safe).
    pub(super) async fn stop(self, grace: Duration) {
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
async fn prune_history(p: Arc<Context>) {
    loop {
        match p
            .recorder
            .journal()
            .prune(p.config.daemon.keep_history)
            .await
        {
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

/// Deletes outcomes older than their inbox's `retention`, at start and then hourly.
async fn apply_retention(p: Arc<Context>) {
    if p.config.inboxes.iter().all(|i| i.retention.is_none()) {
        return;
    }
    loop {
        let inboxes = p.config.inboxes.clone();
        let swept = tokio::task::spawn_blocking(move || {
            crate::store::retention::sweep_all(&inboxes, std::time::SystemTime::now())
        })
        .await;
        for (inbox, deleted) in swept.unwrap_or_default() {
            p.metrics
                .retention_deleted(&inbox.to_string_lossy(), deleted);
        }
        tokio::select! {
            _ = p.stop.cancelled() => return,
            _ = tokio::time::sleep(RETENTION_EVERY) => {}
        }
    }
}

/// Takes the oldest ready file whenever a prepared-submit slot is free, and starts its task.
async fn feed(p: Arc<Context>, queue: Arc<ReadyQueue>, tasks: TaskTracker) {
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
        queue.release(&file);
        if let Some(job) = job {
            tasks.spawn(drive(p.clone(), job, Some(permit)));
        }
    }
}

/// Claims a ready file; on any problem the file simply stays in the inbox for a later look.
async fn claim_or_leave(
    p: &Context,
    file: &ReadyFile,
    refused: &mut HashMap<PathBuf, String>,
) -> Option<Job> {
    let inbox = &p.inboxes[file.inbox];
    match claim::claim(file, inbox, &p.recorder).await {
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

/// Restarts every unfinished file from its journal row, and adopts unrecorded work files.
async fn resume(p: &Arc<Context>, tasks: &TaskTracker) -> anyhow::Result<()> {
    let records = p.recorder.journal().unfinished().await?;
    for record in &records {
        let Some(inbox) = p.inbox_at(&record.inbox).cloned() else {
            tracing::warn!(
                file = %record.name, inbox = %record.inbox.display(),
                "its inbox is no longer in the config; the file stays at {}", record.work_path.display()
            );
            continue;
        };
        let mut job = Job::from_record(record, inbox);
        match record.stage {
            Stage::Finishing => {
                let (p, record) = (p.clone(), record.clone());
                tasks.spawn(async move {
                    finish::resume(&p, &mut job, &record).await;
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
    for job in claim::adopt_orphans(&p.inboxes, &p.recorder, &records).await {
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
        .flat_map(|i| [i.done.clone(), i.failed.clone(), layout::work_dir(&i.path)])
        .chain(config.inboxes.iter().filter_map(|i| i.review.clone()))
        .chain([config.daemon.state_dir.clone()]);
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if crate::store::layout::is_temp_file(&entry.file_name().to_string_lossy()) {
                // A folder: a set's copy to another filesystem, cut off by a kill.
                let removed = match entry.file_type().is_ok_and(|t| t.is_dir()) {
                    true => std::fs::remove_dir_all(entry.path()),
                    false => std::fs::remove_file(entry.path()),
                };
                match removed {
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

/// done/, failed/ and review folders are never created by the daemon (on an unmounted share
/// that would put passports on the root filesystem); say at start which ones are missing.
fn report_missing_outputs(config: &Config) {
    for (i, inbox) in config.inboxes.iter().enumerate() {
        let review = inbox.review.iter().map(|r| ("review", r));
        for (key, dir) in [("done", &inbox.done), ("failed", &inbox.failed)]
            .into_iter()
            .chain(review)
        {
            if !dir.is_dir() {
                tracing::warn!(
                    "inbox[{i}].{key} folder {} does not exist; files wait in the work folder until it is created",
                    dir.display()
                );
            }
        }
    }
}
