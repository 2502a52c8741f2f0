//! `beorg-hotfolder status`: what the daemon is doing, for a sysadmin at a shell.
//!
//! The running daemon writes a snapshot to `state_dir/status.json` every
//! [`SNAPSHOT_EVERY`] (atomically): its pid, the account's standing, the last error, and per
//! inbox how many files are claimed, being submitted, polling, finished today. The `status`
//! command reads that snapshot (it never opens the journal, so it cannot disturb it or leave
//! root-owned SQLite files behind) and adds what it can see live: files waiting in each inbox.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::pipeline::Context;
use crate::pipeline::intake::{ReadyQueue, is_ignored_name};
use crate::sidecar::rfc3339;

/// Snapshot file name inside `state_dir`.
pub const STATUS_FILE: &str = "status.json";

/// How often the daemon rewrites the snapshot. A snapshot older than three of these means the
/// daemon is not running (or hangs).
pub const SNAPSHOT_EVERY: Duration = Duration::from_secs(2);

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
    /// Claimed files that disappeared from the work folder, still in the journal's history.
    pub lost: u64,
    /// Detection time of the oldest claimed, unsent file (unix seconds).
    pub oldest_claimed_unix: Option<u64>,
}

/// Writes a snapshot every [`SNAPSHOT_EVERY`] until the daemon stops, then a last one
/// marked `stopped`.
pub async fn write_snapshots(p: Arc<Context>, queue: Arc<ReadyQueue>) {
    let started_at = rfc3339(SystemTime::now());
    loop {
        let stopping = p.stop.is_cancelled();
        match snapshot(&p, &queue, &started_at, stopping).await {
            Ok(s) => {
                crate::systemd::status(&status_line(&s));
                publish_gauges(&p.metrics, &s);
                let path = p.config.daemon.state_dir.join(STATUS_FILE);
                let text = serde_json::to_vec_pretty(&s).expect("snapshot serializes");
                let written = tokio::task::spawn_blocking(move || {
                    crate::store::fsutil::replace_file_atomic(&path, &text)
                })
                .await;
                if let Ok(Err(e)) = written {
                    tracing::debug!("cannot write {STATUS_FILE}: {e}");
                }
            }
            Err(e) => tracing::debug!("cannot read the journal for {STATUS_FILE}: {e:#}"),
        }
        if stopping {
            return;
        }
        tokio::select! {
            _ = p.stop.cancelled() => {}
            _ = tokio::time::sleep(SNAPSHOT_EVERY) => {}
        }
    }
}

async fn snapshot(
    p: &Context,
    queue: &ReadyQueue,
    started_at: &str,
    stopped: bool,
) -> anyhow::Result<Snapshot> {
    let counts = p.journal.inbox_counts().await?;
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
                lost: c.lost,
                oldest_claimed_unix: c.oldest_claimed.map(unix_secs),
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
    })
}

/// Queue depth by inbox and state, and the account pause, for `/metrics`.
fn publish_gauges(metrics: &crate::metrics::Metrics, s: &Snapshot) {
    for inbox in &s.inboxes {
        let path = inbox.path.to_string_lossy();
        metrics.set_queue(&path, "waiting", inbox.claimed);
        metrics.set_queue(&path, "submitting", inbox.submitting);
        metrics.set_queue(&path, "polling", inbox.polling);
    }
    metrics.set_account_paused(s.account.paused);
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
    if s.account.paused {
        line.push_str(&format!(
            "; ACCOUNT PAUSED (HTTP {})",
            s.account.http_status.unwrap_or(0)
        ));
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

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// The command

/// What `status` prints (`--json` prints exactly this).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The daemon wrote a snapshot within the last few seconds and its process exists.
    pub running: bool,
    pub pid: u32,
    pub version: String,
    pub started_at: String,
    /// When the daemon last wrote its snapshot.
    pub last_seen: String,
    pub account: Account,
    pub last_error: Option<LastError>,
    pub inboxes: Vec<InboxReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboxReport {
    pub path: PathBuf,
    #[serde(rename = "type")]
    pub doc_type: String,
    /// In the inbox folder now, plus claimed and not yet sent.
    pub waiting: u64,
    /// Age of the oldest waiting file, in seconds.
    pub oldest_waiting_seconds: Option<u64>,
    pub submitting: u64,
    pub polling: u64,
    pub done_today: u64,
    pub failed_today: u64,
    pub lost: u64,
}

/// Builds the report for a config: the daemon's last snapshot plus a live look at the inboxes.
pub fn report(config: &Config) -> anyhow::Result<Report> {
    let path = config.daemon.state_dir.join(STATUS_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read {} ({e}): the daemon has not run with this config yet, or this user may not read daemon.state_dir (try sudo)",
            path.display()
        )
    })?;
    let snapshot: Snapshot = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} is not a status snapshot: {e}", path.display()))?;
    let now = unix_secs(SystemTime::now());
    let fresh = now.saturating_sub(snapshot.written_at_unix) <= 3 * SNAPSHOT_EVERY.as_secs();
    let running = !snapshot.stopped && fresh && process_exists(snapshot.pid);
    let inboxes = config
        .inboxes
        .iter()
        .map(|inbox| {
            let s = snapshot.inboxes.iter().find(|s| s.path == inbox.path);
            let (in_folder, oldest_in_folder) = waiting_in(&inbox.path, inbox.recursive);
            let oldest = [oldest_in_folder, s.and_then(|s| s.oldest_claimed_unix)]
                .into_iter()
                .flatten()
                .min();
            InboxReport {
                path: inbox.path.clone(),
                doc_type: inbox.doc_type.clone(),
                waiting: in_folder + s.map_or(0, |s| s.claimed),
                oldest_waiting_seconds: oldest.map(|t| now.saturating_sub(t)),
                submitting: s.map_or(0, |s| s.submitting),
                polling: s.map_or(0, |s| s.polling),
                done_today: s.map_or(0, |s| s.done_today),
                failed_today: s.map_or(0, |s| s.failed_today),
                lost: s.map_or(0, |s| s.lost),
            }
        })
        .collect();
    Ok(Report {
        running,
        pid: snapshot.pid,
        version: snapshot.version,
        started_at: snapshot.started_at,
        last_seen: snapshot.written_at,
        account: snapshot.account,
        last_error: snapshot.last_error,
        inboxes,
    })
}

/// Regular, not ignored files in an inbox folder (and its subfolders, for a recursive inbox,
/// skipping hidden ones as intake does), and the oldest one's mtime (unix seconds).
fn waiting_in(dir: &Path, recursive: bool) -> (u64, Option<u64>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, None);
    };
    let mut count = 0;
    let mut oldest: Option<u64> = None;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if is_ignored_name(name) {
            continue;
        }
        let (n, o) = if meta.is_dir() && recursive {
            waiting_in(&entry.path(), true)
        } else if meta.file_type().is_file() {
            (1, meta.modified().ok().map(unix_secs))
        } else {
            (0, None)
        };
        count += n;
        oldest = [oldest, o].into_iter().flatten().min();
    }
    (count, oldest)
}

fn process_exists(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// The report as lines for a terminal.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let state = if report.running {
        format!("running (pid {}, since {})", report.pid, report.started_at)
    } else {
        format!("NOT RUNNING (last seen {})", report.last_seen)
    };
    out.push_str(&format!("beorg-hotfolder {}: {state}\n", report.version));
    let a = &report.account;
    if a.paused {
        out.push_str(&format!(
            "account: PAUSED since {} (HTTP {}: {}); next try {}\n",
            a.since.as_deref().unwrap_or("?"),
            a.http_status.unwrap_or(0),
            a.message.as_deref().unwrap_or(""),
            a.retry_at.as_deref().unwrap_or("now"),
        ));
    } else {
        out.push_str("account: ok\n");
    }
    match &report.last_error {
        Some(e) => out.push_str(&format!("last error: {} {}\n", e.at, e.message)),
        None => out.push_str("last error: none\n"),
    }
    for i in &report.inboxes {
        out.push_str(&format!("\n{} ({})\n", i.path.display(), i.doc_type));
        let oldest = i
            .oldest_waiting_seconds
            .map(|s| {
                format!(
                    " (oldest {})",
                    humantime::format_duration(Duration::from_secs(s))
                )
            })
            .unwrap_or_default();
        out.push_str(&format!(
            "  waiting {}{oldest}, submitting {}, polling {}, done today {}, failed today {}",
            i.waiting, i.submitting, i.polling, i.done_today, i.failed_today
        ));
        if i.lost > 0 {
            out.push_str(&format!(", lost {}", i.lost));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_files_are_counted_in_subfolders_only_for_recursive_inboxes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("2026/11")).unwrap();
        std::fs::create_dir_all(d.join(".beorg-work")).unwrap();
        std::fs::write(d.join("a.jpg"), b"x").unwrap();
        std::fs::write(d.join("2026/11/b.jpg"), b"x").unwrap();
        std::fs::write(d.join(".beorg-work/claimed.jpg"), b"x").unwrap();
        std::fs::write(d.join("c.part"), b"x").unwrap();
        assert_eq!(waiting_in(d, false).0, 1);
        assert_eq!(waiting_in(d, true).0, 2);
        assert!(waiting_in(d, true).1.is_some());
    }
}
