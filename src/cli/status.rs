//! `beorg-hotfolder status`: what the daemon is doing, for a sysadmin at a shell.
//!
//! The running daemon writes a snapshot to `state_dir/status.json` when something changes
//! and at least every [`HEARTBEAT`] ([`crate::daemon::telemetry`]). The `status` command reads that
//! snapshot (it never opens the journal, so it cannot disturb it or leave root-owned SQLite
//! files behind) and adds what it can see live: files waiting in each inbox.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::daemon::telemetry::{
    Account, Budget, Deliveries, HEARTBEAT, LastError, STATUS_FILE, Snapshot, unix_secs,
};
use crate::pipeline::entries::{EntryRules, Verdict};
use crate::store::fsutil;

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
    /// Deliveries (webhook, exec, ledger) waiting and given up, as the daemon last saw them.
    pub deliveries: Deliveries,
    /// The request budget shared through Redis (`None`: this process's own).
    #[serde(default)]
    pub budget: Option<Budget>,
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
    /// Finished today into the review folder (a person must check them).
    pub review_today: u64,
    pub lost: u64,
    /// In the review folder now, waiting for a person's decision.
    #[serde(default)]
    pub review_waiting: u64,
    /// How long the oldest of them has waited, in seconds.
    #[serde(default)]
    pub oldest_review_seconds: Option<u64>,
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
    let fresh = now.saturating_sub(snapshot.written_at_unix) <= 3 * HEARTBEAT.as_secs();
    let running = !snapshot.stopped && fresh && process_exists(snapshot.pid);
    let inboxes = config
        .inboxes
        .iter()
        .map(|inbox| {
            let s = snapshot.inboxes.iter().find(|s| s.path == inbox.path);
            let (in_folder, oldest_in_folder) = if inbox.sets {
                crate::pipeline::set::waiting(inbox)
            } else {
                waiting_in(&EntryRules::new(inbox), &inbox.path)
            };
            let (review_waiting, oldest_review) = match &inbox.review {
                Some(review) => crate::review_station::items::waiting(&inbox.path, review),
                None => (0, None),
            };
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
                review_today: s.map_or(0, |s| s.review_today),
                lost: s.map_or(0, |s| s.lost),
                review_waiting,
                oldest_review_seconds: oldest_review.map(|t| now.saturating_sub(unix_secs(t))),
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
        deliveries: snapshot.deliveries,
        budget: snapshot.budget.map(shown_budget),
    })
}

/// The files intake would take from an inbox folder (and its subfolders, for a recursive
/// inbox): intake's own rule, so ignored names and patterns, links and anything but a regular
/// file are not counted. Also since when the oldest one waits (unix seconds): its arrival in
/// the folder (ctime), not its mtime, which a copy may have kept from long ago or the epoch.
fn waiting_in(rules: &EntryRules, dir: &Path) -> (u64, Option<u64>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, None);
    };
    let mut count = 0;
    let mut oldest: Option<u64> = None;
    for entry in entries.flatten() {
        let (n, o) = match rules.judge(&entry.path()) {
            Verdict::Take { meta, .. } => (1, fsutil::changed_at_unix(&meta)),
            Verdict::Descend => waiting_in(rules, &entry.path()),
            Verdict::Skip | Verdict::Gone | Verdict::Refuse(_) => (0, None),
        };
        count += n;
        oldest = [oldest, o].into_iter().flatten().min();
    }
    (count, oldest)
}

fn process_exists(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// The snapshot's budget with its URL as [`crate::redact`] lets it be shown (a snapshot
/// written by an older daemon may hold it as configured).
fn shown_budget(budget: Budget) -> Budget {
    Budget {
        redis: crate::redact::url(&budget.redis, crate::redact::Show::Whole),
        ..budget
    }
}

/// The shared budget's line: where it lives, and whether Redis answers; and the limits kept
/// when the key's are stricter than the daemon's own.
fn budget_line(b: &Budget) -> String {
    let mut line = budget_where(b);
    if let Some(limits) = &b.stricter_limits {
        line.push_str(&format!(
            "budget limits: {} (the stricter stored with key {}; this daemon's [api] says {}: give every daemon on the key the same limits)\n",
            limits.in_use, b.key, limits.own
        ));
    }
    line
}

fn budget_where(b: &Budget) -> String {
    match &b.unavailable_since {
        Some(since) => format!(
            "budget: UNAVAILABLE since {since} (shared, key {} on {}: {}); nothing is sent until Redis answers\n",
            b.key,
            b.redis,
            b.error.as_deref().unwrap_or("no answer")
        ),
        None => format!("budget: shared (key {} on {})\n", b.key, b.redis),
    }
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
    if let Some(b) = &report.budget {
        out.push_str(&budget_line(b));
    }
    match &report.last_error {
        Some(e) => out.push_str(&format!("last error: {} {}\n", e.at, e.message)),
        None => out.push_str("last error: none\n"),
    }
    let d = report.deliveries;
    if d.waiting + d.given_up > 0 {
        out.push_str(&format!(
            "deliveries: {} waiting, {} given up\n",
            d.waiting, d.given_up
        ));
    }
    for i in &report.inboxes {
        out.push_str(&format!("\n{} ({})\n", i.path.display(), i.doc_type));
        let oldest = oldest_of(i.oldest_waiting_seconds);
        out.push_str(&format!(
            "  waiting {}{oldest}, submitting {}, polling {}, done today {}, failed today {}",
            i.waiting, i.submitting, i.polling, i.done_today, i.failed_today
        ));
        if i.review_today > 0 {
            out.push_str(&format!(", to review today {}", i.review_today));
        }
        if i.lost > 0 {
            out.push_str(&format!(", lost {}", i.lost));
        }
        if i.review_waiting > 0 {
            let oldest = oldest_of(i.oldest_review_seconds);
            out.push_str(&format!(
                ", waiting for review {}{oldest}",
                i.review_waiting
            ));
        }
        out.push('\n');
    }
    out
}

/// " (oldest 2h 5m)" for an age in seconds, or nothing.
fn oldest_of(seconds: Option<u64>) -> String {
    seconds
        .map(|s| {
            format!(
                " (oldest {})",
                humantime::format_duration(Duration::from_secs(s))
            )
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An inbox at `dir` with these extra inbox keys.
    fn inbox(dir: &Path, extra: &str) -> crate::config::InboxConfig {
        let text = format!(
            "[api]\nproject_id = \"P\"\nmachine_uid = \"m\"\ntoken = \"t\"\n[[inbox]]\npath = \"{}\"\ntype = \"PASSPORT\"\ndone = \"/srv/done\"\nfailed = \"/srv/failed\"\n{extra}\n",
            dir.display()
        );
        let config = Config::from_toml(&text, Path::new("/etc/c.toml"), None).unwrap();
        config.inboxes[0].clone()
    }

    fn waiting(dir: &Path, extra: &str) -> (u64, Option<u64>) {
        let inbox = inbox(dir, extra);
        waiting_in(&EntryRules::new(&inbox), &inbox.path)
    }

    /// Issue 11: results sent to review today are shown beside done and failed.
    #[test]
    fn the_review_count_is_shown_when_there_is_one() {
        let inbox = |review_today| InboxReport {
            path: PathBuf::from("/srv/in/passport"),
            doc_type: "PASSPORT".into(),
            waiting: 0,
            oldest_waiting_seconds: None,
            submitting: 0,
            polling: 0,
            done_today: 5,
            failed_today: 1,
            review_today,
            lost: 0,
            review_waiting: 0,
            oldest_review_seconds: None,
        };
        let report = |review_today| Report {
            running: true,
            pid: 1,
            version: "0.1.0".into(),
            started_at: "t".into(),
            last_seen: "t".into(),
            account: Account::default(),
            last_error: None,
            deliveries: Deliveries::default(),
            inboxes: vec![inbox(review_today)],
            budget: None,
        };
        assert!(render(&report(2)).contains("done today 5, failed today 1, to review today 2\n"));
        assert!(!render(&report(0)).contains("review"));
    }

    #[test]
    fn deliveries_waiting_and_given_up_are_shown_when_there_are_any() {
        let mut report = Report {
            running: true,
            pid: 1,
            version: "0".into(),
            started_at: "t".into(),
            last_seen: "t".into(),
            account: Account::default(),
            last_error: None,
            inboxes: Vec::new(),
            deliveries: Deliveries::default(),
            budget: None,
        };
        assert!(!render(&report).contains("deliveries"));
        report.deliveries = Deliveries {
            waiting: 3,
            given_up: 1,
        };
        assert!(render(&report).contains("\ndeliveries: 3 waiting, 1 given up\n"));
    }

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
        assert_eq!(waiting(d, "").0, 1);
        assert_eq!(waiting(d, "recursive = true").0, 2);
        assert!(waiting(d, "recursive = true").1.is_some());
    }

    /// Issue 13: a shared budget is named, and Redis not answering is shown with its time.
    #[test]
    fn the_shared_budget_and_its_unavailability_are_shown() {
        let mut budget = Budget {
            redis: "redis://redis.office.lan:6379/0".into(),
            key: "beorg:U_RATE_2".into(),
            ..Budget::default()
        };
        assert_eq!(
            budget_line(&budget),
            "budget: shared (key beorg:U_RATE_2 on redis://redis.office.lan:6379/0)\n"
        );
        budget.unavailable_since = Some("2026-12-01T18:00:00Z".into());
        budget.error = Some("Connection refused".into());
        let line = budget_line(&budget);
        assert!(
            line.starts_with("budget: UNAVAILABLE since 2026-12-01T18:00:00Z"),
            "{line}"
        );
        assert!(line.contains("Connection refused"), "{line}");
    }

    /// A snapshot written by an older daemon holds the URL as configured; `status` (text and
    /// JSON) shows it redacted all the same.
    #[test]
    fn a_snapshots_redis_url_is_shown_redacted() {
        let budget = shown_budget(Budget {
            redis: "redis://SECRETUSER:S3CRET@redis.office.lan:6379/0?password=S3CRET".into(),
            key: "beorg:U_RATE_2".into(),
            ..Budget::default()
        });
        assert_eq!(
            budget.redis,
            "redis://***@redis.office.lan:6379/0?password=***"
        );
    }

    /// Limits kept from the shared key, stricter than the daemon's own, are shown with both.
    #[test]
    fn the_stricter_limits_kept_from_the_shared_key_are_shown() {
        use crate::config::Limits;
        let budget = Budget {
            redis: "redis://redis.office.lan:6379/0".into(),
            key: "beorg:U_RATE_2".into(),
            stricter_limits: Some(crate::budget::StricterLimits {
                own: Limits {
                    requests_per_second: 10.0,
                    documents_per_minute: 600.0,
                },
                in_use: Limits {
                    requests_per_second: 1.0,
                    documents_per_minute: 60.0,
                },
            }),
            ..Budget::default()
        };
        assert_eq!(
            budget_line(&budget),
            "budget: shared (key beorg:U_RATE_2 on redis://redis.office.lan:6379/0)\n\
             budget limits: 60 documents/min, 1 request/s (the stricter stored with key beorg:U_RATE_2; this daemon's [api] says 600 documents/min, 10 requests/s: give every daemon on the key the same limits)\n"
        );
    }
}
