//! The daemon's account of itself: when something changed (at most every [`SNAPSHOT_EVERY`])
//! and at least every [`HEARTBEAT`] it writes a snapshot to `state_dir/status.json` (atomically), and from the same snapshot sets the queue gauges of
//! `/metrics` and the one line `systemctl status` shows. The snapshot holds its pid, the
//! account's standing, the last error, and per inbox how many files are claimed, being
//! submitted, polling, finished today. The `status` command (`cli/status.rs`) reads it; this
//! module never depends on the command.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::pipeline::Context;
use crate::pipeline::intake::ReadyQueue;
use crate::sidecar::rfc3339;

/// Snapshot file name inside `state_dir`.
pub use crate::store::layout::STATUS_FILE;

/// The shortest time between two snapshots: a busy daemon rewrites it at most this often.
pub const SNAPSHOT_EVERY: Duration = Duration::from_secs(2);

/// The longest: an idle daemon rewrites it only this often (issue 12: idle costs nothing). A
/// snapshot older than three of these means the daemon is not running (or hangs).
pub const HEARTBEAT: Duration = Duration::from_secs(20);

/// What the daemon writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    pub pid: u32,
    pub version: String,
    pub started_at: String,
    pub written_at: String,
    pub written_at_unix: u64,
    /// True in the last snapshot of a clean shutdown.
    pub stopped: bool,
    pub account: Account,
    pub last_error: Option<LastError>,
    /// Settled files waiting for a submit slot, all inboxes together.
    pub ready_queue: usize,
    pub inboxes: Vec<InboxSnapshot>,
    /// Deliveries of outcomes still to be made, and given up (absent in older snapshots).
    #[serde(default)]
    pub deliveries: Deliveries,
    /// The request budget shared through Redis; `None` when it is this process's own.
    #[serde(default)]
    pub budget: Option<Budget>,
}

/// The request budget shared with other daemons (`[budget] redis`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Budget {
    /// `budget.redis` as it may be shown ([`crate::redact`]: no user name, no password).
    pub redis: String,
    /// `budget.key`.
    pub key: String,
    /// Since when Redis has not answered (nothing is sent meanwhile); `None` while it does.
    pub unavailable_since: Option<String>,
    /// Unix seconds of the same.
    pub unavailable_since_unix: Option<u64>,
    /// Why it does not answer.
    pub error: Option<String>,
    /// The limits this daemon keeps when the key's are stricter than its `[api]` ones;
    /// `None` while it keeps its own (absent in older snapshots).
    #[serde(default)]
    pub stricter_limits: Option<crate::budget::StricterLimits>,
}

/// Deliveries (webhook, exec, ledger), all inboxes together.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Deliveries {
    /// Recorded and not delivered yet (due now, or waiting for their next try).
    pub waiting: u64,
    /// Every try failed; still in the journal (`keep_history`).
    pub given_up: u64,
}

/// The account's standing with the API.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Account {
    /// Submits are held after a 401/402.
    pub paused: bool,
    pub http_status: Option<u16>,
    pub message: Option<String>,
    /// When the account first refused, in this episode.
    pub since: Option<String>,
    /// When submits are tried again.
    pub retry_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LastError {
    pub at: String,
    pub message: String,
}

/// One inbox, from the journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboxSnapshot {
    pub path: PathBuf,
    #[serde(rename = "type")]
    pub doc_type: String,
    /// Claimed, not sent yet (includes files held by an account pause).
    pub claimed: u64,
    pub submitting: u64,
    /// Sent, waiting for the result.
    pub polling: u64,
    pub done_today: u64,
    pub failed_today: u64,
    /// Finished today into the review folder (absent in snapshots of older daemons).
    #[serde(default)]
    pub review_today: u64,
    /// Claimed files that disappeared from the work folder, still in the journal's history.
    pub lost: u64,
    /// Detection time of the oldest claimed, unsent file (unix seconds).
    pub oldest_claimed_unix: Option<u64>,
    /// Results waiting for a person in the review folder now (absent in older snapshots).
    #[serde(default)]
    pub review_waiting: u64,
    /// When the oldest of them was finished there (unix seconds).
    #[serde(default)]
    pub review_oldest_unix: Option<u64>,
}

/// Writes a snapshot when something changed (at most every [`SNAPSHOT_EVERY`]) and at least
/// every [`HEARTBEAT`], until the daemon stops, then a last one marked `stopped`. Idle, it
/// wakes only for the heartbeat: nothing is read or written in between.
pub async fn write_snapshots(p: Arc<Context>, queue: Arc<ReadyQueue>) {
    let started_at = rfc3339(SystemTime::now());
    let mut last: Option<(String, Instant)> = None;
    loop {
        let stopping = p.stop.is_cancelled();
        match snapshot(&p, &queue, &started_at, stopping).await {
            Ok(s) => {
                let content = content_of(&s);
                let due = last.as_ref().is_none_or(|(written, at)| {
                    *written != content || at.elapsed() >= HEARTBEAT || stopping
                });
                if due {
                    write(&p, &s).await;
                    last = Some((content, Instant::now()));
                }
            }
            Err(e) => tracing::debug!("cannot read the journal for {STATUS_FILE}: {e:#}"),
        }
        if stopping {
            return;
        }
        let heartbeat_at = last
            .as_ref()
            .map_or_else(Instant::now, |(_, at)| *at + HEARTBEAT);
        tokio::select! {
            _ = p.stop.cancelled() => continue,
            _ = tokio::time::sleep(SNAPSHOT_EVERY) => {}
        }
        tokio::select! {
            _ = p.stop.cancelled() => {}
            _ = p.recorder.journal().changed() => {}
            _ = budget_health_changed(&p) => {}
            _ = tokio::time::sleep_until(heartbeat_at.into()) => {}
        }
    }
}

/// Resolves when the shared budget's Redis stops or starts answering; never without one.
async fn budget_health_changed(p: &Context) {
    match p.scheduler.shared_budget() {
        Some(shared) => shared.health_changed().await,
        None => std::future::pending().await,
    }
}

/// The snapshot without its time stamps: equal contents, nothing to rewrite.
fn content_of(s: &Snapshot) -> String {
    let mut s = s.clone();
    s.written_at.clear();
    s.written_at_unix = 0;
    serde_json::to_string(&s).expect("snapshot serializes")
}

async fn write(p: &Context, s: &Snapshot) {
    crate::systemd::status(&status_line(s));
    publish_gauges(&p.metrics, s);
    p.metrics.set_api_limits(
        p.config.api.requests_per_second,
        p.config.api.documents_per_minute,
    );
    let path = p.config.daemon.state_dir.join(STATUS_FILE);
    let text = serde_json::to_vec_pretty(s).expect("snapshot serializes");
    let written = tokio::task::spawn_blocking(move || {
        crate::store::fsutil::replace_file_atomic(&path, &text)
    })
    .await;
    if let Ok(Err(e)) = written {
        tracing::debug!("cannot write {STATUS_FILE}: {e}");
    }
}

async fn snapshot(
    p: &Context,
    queue: &ReadyQueue,
    started_at: &str,
    stopped: bool,
) -> anyhow::Result<Snapshot> {
    let counts = p.recorder.journal().inbox_counts().await?;
    let deliveries = p.recorder.journal().delivery_counts().await?;
    let reviews = review_waiting(p).await;
    let now = SystemTime::now();
    let inboxes = p
        .config
        .inboxes
        .iter()
        .enumerate()
        .map(|(i, inbox)| {
            let c = counts
                .iter()
                .find(|c| c.inbox == inbox.path)
                .cloned()
                .unwrap_or_default();
            let on_the_wire = p.inboxes[i]
                .sending
                .load(std::sync::atomic::Ordering::Relaxed);
            InboxSnapshot {
                path: inbox.path.clone(),
                doc_type: inbox.doc_type.clone(),
                claimed: (c.claimed + c.submitting).saturating_sub(on_the_wire),
                submitting: on_the_wire.min(c.submitting),
                polling: c.polling,
                done_today: c.done_today,
                failed_today: c.failed_today,
                review_today: c.review_today,
                lost: c.lost,
                oldest_claimed_unix: c.oldest_claimed.map(unix_secs),
                review_waiting: reviews[i].0,
                review_oldest_unix: reviews[i].1.map(unix_secs),
            }
        })
        .collect();
    Ok(Snapshot {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: started_at.to_string(),
        written_at: rfc3339(now),
        written_at_unix: unix_secs(now),
        stopped,
        account: account(&p.scheduler.account()),
        last_error: crate::logging::last_error().map(|(at, message)| LastError {
            at: rfc3339(at),
            message,
        }),
        ready_queue: queue.len(),
        inboxes,
        deliveries: Deliveries {
            waiting: deliveries.waiting,
            given_up: deliveries.given_up,
        },
        budget: p.scheduler.shared_budget().map(budget),
    })
}

/// Per configured inbox: how many results wait in its review folder, and since when the
/// oldest (none without a review folder).
async fn review_waiting(p: &Context) -> Vec<(u64, Option<SystemTime>)> {
    let folders: Vec<_> = p
        .config
        .inboxes
        .iter()
        .map(|i| (i.path.clone(), i.review.clone()))
        .collect();
    let count = folders.len();
    tokio::task::spawn_blocking(move || {
        folders
            .iter()
            .map(|(inbox, review)| match review {
                Some(review) => crate::review_station::items::waiting(inbox, review),
                None => (0, None),
            })
            .collect()
    })
    .await
    .unwrap_or_else(|_| vec![(0, None); count])
}

fn budget(shared: &crate::budget::SharedBudget) -> Budget {
    let health = shared.health();
    Budget {
        redis: shared.shown_url().to_string(),
        key: shared.key().to_string(),
        unavailable_since: health.unavailable_since.map(rfc3339),
        unavailable_since_unix: health.unavailable_since.map(unix_secs),
        error: health.error,
        stricter_limits: shared.stricter_limits(),
    }
}

/// Queue depth by inbox and state, and the account pause, for `/metrics`.
fn publish_gauges(metrics: &crate::metrics::Metrics, s: &Snapshot) {
    for inbox in &s.inboxes {
        let path = inbox.path.to_string_lossy();
        metrics.set_queue(&path, "waiting", inbox.claimed);
        metrics.set_queue(&path, "submitting", inbox.submitting);
        metrics.set_queue(&path, "polling", inbox.polling);
        let oldest_age = inbox
            .review_oldest_unix
            .map(|t| s.written_at_unix.saturating_sub(t))
            .unwrap_or(0);
        metrics.set_review_waiting(&path, inbox.review_waiting, Duration::from_secs(oldest_age));
        metrics.set_oldest_waiting(&path, inbox.oldest_claimed_unix);
    }
    metrics.set_account_paused(s.account.paused);
    let unavailable = s.budget.as_ref().and_then(|b| b.unavailable_since_unix);
    metrics.set_budget_unavailable_since(unavailable.unwrap_or(0));
    let stricter = s
        .budget
        .as_ref()
        .is_some_and(|b| b.stricter_limits.is_some());
    metrics.set_budget_limits_stricter(stricter);
}

/// The one line `systemctl status` shows.
fn status_line(s: &Snapshot) -> String {
    let sum = |f: fn(&InboxSnapshot) -> u64| s.inboxes.iter().map(f).sum::<u64>();
    let waiting = sum(|i| i.claimed) + s.ready_queue as u64;
    let mut line = format!(
        "{waiting} waiting, {} sending, {} awaiting results; today {} done, {} failed",
        sum(|i| i.submitting),
        sum(|i| i.polling),
        sum(|i| i.done_today),
        sum(|i| i.failed_today)
    );
    let review = sum(|i| i.review_today);
    if review > 0 {
        line.push_str(&format!(", {review} to review"));
    }
    let waiting_review = sum(|i| i.review_waiting);
    if waiting_review > 0 {
        line.push_str(&format!("; {waiting_review} waiting for review"));
    }
    if s.deliveries.waiting + s.deliveries.given_up > 0 {
        line.push_str(&format!(
            "; deliveries {} waiting, {} given up",
            s.deliveries.waiting, s.deliveries.given_up
        ));
    }
    if s.account.paused {
        line.push_str(&format!(
            "; ACCOUNT PAUSED (HTTP {})",
            s.account.http_status.unwrap_or(0)
        ));
    }
    if let Some(since) = s.budget.as_ref().and_then(|b| b.unavailable_since.as_ref()) {
        line.push_str(&format!("; BUDGET UNAVAILABLE since {since} (Redis)"));
    }
    line
}

fn account(state: &crate::scheduler::AccountState) -> Account {
    let Some(problem) = &state.problem else {
        return Account::default();
    };
    let now = Instant::now();
    let retry_at = state
        .paused_until
        .filter(|t| *t > now)
        .map(|t| rfc3339(SystemTime::now() + (t - now)));
    Account {
        paused: true,
        http_status: Some(problem.status),
        message: Some(problem.message.clone()),
        since: Some(rfc3339(problem.since)),
        retry_at,
    }
}

/// Seconds since the epoch (0 for a time before it).
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(review_today: u64) -> Snapshot {
        Snapshot {
            pid: 1,
            version: "0.1.0".into(),
            started_at: "t".into(),
            written_at: "t".into(),
            written_at_unix: 0,
            stopped: false,
            account: Account::default(),
            last_error: None,
            ready_queue: 0,
            deliveries: Deliveries::default(),
            budget: None,
            inboxes: vec![InboxSnapshot {
                path: PathBuf::from("/srv/in/passport"),
                doc_type: "PASSPORT".into(),
                claimed: 0,
                submitting: 0,
                polling: 0,
                done_today: 3,
                failed_today: 1,
                review_today,
                lost: 0,
                oldest_claimed_unix: None,
                review_waiting: 0,
                review_oldest_unix: None,
            }],
        }
    }

    /// Issue 11: `systemctl status` shows today's results sent to review, when there are any.
    #[test]
    fn the_status_line_counts_results_to_review() {
        assert!(status_line(&snapshot(2)).ends_with("today 3 done, 1 failed, 2 to review"));
        assert!(status_line(&snapshot(0)).ends_with("today 3 done, 1 failed"));
    }

    /// Issue 13: `systemctl status` says when the shared budget's Redis does not answer.
    #[test]
    fn the_status_line_says_when_the_shared_budget_is_unavailable() {
        let mut s = snapshot(0);
        s.budget = Some(Budget {
            redis: "redis://r:6379/0".into(),
            key: "beorg:U_RATE_2".into(),
            ..Budget::default()
        });
        assert!(!status_line(&s).contains("BUDGET"));
        s.budget.as_mut().unwrap().unavailable_since = Some("2026-12-01T18:00:00Z".into());
        assert!(
            status_line(&s).ends_with("; BUDGET UNAVAILABLE since 2026-12-01T18:00:00Z (Redis)")
        );
    }
}
