//! A year on one office server (issue 23, goals 3 and 4), printed, not asserted: run
//! `cargo bench --bench year` (`BEORG_YEAR_FILES` sets the journal's size, 1,000,000 by
//! default; `BEORG_BENCH_BIN` runs another daemon binary, e.g. main's, on the same journal;
//! `BEORG_YEAR_JOURNAL` another journal file, e.g. one in an older layout).
//!
//! 1. A journal of a million finished files and their history, written through the
//!    journal's own code (`store::journal::bench_fill`, cached under target/year-bench/ per
//!    layout): its size on disk, total and per 100,000 files, with and without the history.
//! 2. The daemon on it: time to READY=1, peak memory (VmHWM) after 10 s idle, the wall time
//!    of `status` and of `explain` (by name, by path, by document id), median of 5 runs.
//! 3. Pruning: the daemon started with a keep_history that expires 11/12 of the rows, while
//!    a burst of files is paced at 20 requests/s: how long the prune took, the largest gap
//!    between consecutive requests at the emulator while it ran (against the nominal 50 ms),
//!    and the journal's size and free pages after.
//! 4. Retention: 100,000 outcomes (original + sidecar, sidecars 40 days old) in done/ with
//!    `retention = "30d"`, while a burst is paced: the sweep's wall time, its CPU (the
//!    daemon's CPU during the sweep minus its CPU pacing alone for as long, right after), and
//!    the largest request gap during it.

use std::io::BufRead;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use beorg_hotfolder::store::journal::Journal;
use beorg_hotfolder::store::journal::bench_fill::{YearOfWork, fill};

#[allow(dead_code)] // each benchmark uses part of it
mod common;
use common::{daemon_binary, emulator, peak_memory_mb, ready, stop, wait_for};

/// Fixed, because the journal stores absolute paths: the daemon must see the same inbox.
const BASE: &str = "/dev/shm/beorg-year-bench";
const DAY: Duration = Duration::from_secs(24 * 3600);
const RPS: f64 = 20.0;
const BURST: usize = 1500;
const OUTCOMES: usize = 100_000;

fn main() {
    let files: usize = std::env::var("BEORG_YEAR_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    println!("daemon: {} (load: {})", daemon_binary().display(), load());
    // Another journal (e.g. one written in main's layout, to time the upgrade at first open).
    let journal = match std::env::var_os("BEORG_YEAR_JOURNAL") {
        Some(path) => PathBuf::from(path),
        None => cached_journal(files),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        start_and_answer(&journal, files).await;
        prune_while_pacing(&journal, files).await;
        retention_while_pacing().await;
    });
    let _ = std::fs::remove_dir_all(BASE);
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// The journal for `files` files in this build's layout, written once and kept.
fn cached_journal(files: usize) -> PathBuf {
    let layout = layout_tag();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/year-bench")
        .join(format!("{files}-{layout}"));
    let path = dir.join("journal.sqlite");
    if !path.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        let building = dir.with_extension("building");
        let _ = std::fs::remove_dir_all(&building);
        let started = Instant::now();
        let journal = Journal::open(&building).unwrap();
        let now = SystemTime::now();
        let work = YearOfWork {
            inbox: Path::new(BASE).join("in"),
            done: Path::new(BASE).join("done"),
            files,
            from: now - 365 * DAY,
            to: now - Duration::from_secs(3600),
        };
        fill(&journal, &work).unwrap();
        drop(journal);
        checkpoint(&building.join("journal.sqlite"));
        std::fs::rename(&building, &dir).unwrap();
        println!(
            "journal: {files} finished files written in {:.1?} (load: {})",
            started.elapsed(),
            load()
        );
    }
    print_sizes(&path, files);
    path
}

/// A short fingerprint of the layout a new journal gets (tables and indexes).
fn layout_tag() -> String {
    let dir = tempfile::tempdir().unwrap();
    drop(Journal::open(dir.path()).unwrap());
    let conn = rusqlite_open(&dir.path().join("journal.sqlite"));
    let sql: String = conn
        .query_row(
            "SELECT group_concat(sql, ';') FROM (SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let hash = beorg_hotfolder::store::fsutil::sha256_hex(sql.as_bytes());
    hash[..12].to_string()
}

fn rusqlite_open(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

fn checkpoint(path: &Path) {
    let conn = rusqlite_open(path);
    conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")
        .unwrap();
}

fn print_sizes(path: &Path, files: usize) {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let per = |bytes: u64| mb(bytes) * 100_000.0 / files as f64;
    println!(
        "journal: {:.0} MB on disk for {files} files, {:.1} MB per 100,000 files",
        mb(size),
        per(size)
    );
    let conn = rusqlite_open(path);
    let history: Option<i64> = conn
        .query_row(
            "SELECT SUM(pgsize) FROM dbstat WHERE name IN ('history', 'history_file')",
            [],
            |r| r.get(0),
        )
        .ok()
        .flatten();
    let mut stmt = conn
        .prepare("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC")
        .ok();
    if let Some(stmt) = stmt.as_mut() {
        let rows: Vec<(String, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .flatten()
            .collect();
        let parts: Vec<String> = rows
            .iter()
            .take(12)
            .map(|(n, b)| format!("{n} {:.0} MB", mb(*b as u64)))
            .collect();
        println!("journal: by table and index: {}", parts.join(", "));
    }
    if let Some(history) = history {
        let without = size.saturating_sub(history as u64);
        println!(
            "journal: history {:.0} MB; without it {:.1} MB per 100,000 files",
            mb(history as u64),
            per(without)
        );
    }
}

/// A fresh copy of the cached journal under BASE, with the folders the config names.
fn fresh_base(journal: &Path) -> PathBuf {
    let base = PathBuf::from(BASE);
    let _ = std::fs::remove_dir_all(&base);
    for dir in ["in", "done", "failed", "state"] {
        std::fs::create_dir_all(base.join(dir)).unwrap();
    }
    if journal.exists() {
        std::fs::copy(journal, base.join("state/journal.sqlite")).unwrap();
    }
    base
}

fn config_text(base: &Path, url: &str, keep_history: &str, inbox_extra: &str) -> String {
    format!(
        "[api]\nbase_url = \"{url}\"\nproject_id = \"P\"\nmachine_uid = \"emulator-machine\"\ntoken = \"bench\"\nrequests_per_second = {RPS:?}\ndocuments_per_minute = 3000.0\n\n[daemon]\nstate_dir = \"{0}/state\"\nkeep_history = \"{keep_history}\"\n\n[defaults]\npreflight = \"off\"\n\n[[inbox]]\npath = \"{0}/in\"\ntype = \"PASSPORT\"\ndone = \"{0}/done\"\nfailed = \"{0}/failed\"\n{inbox_extra}",
        base.display()
    )
}

/// The daemon on `base/config.toml`, its log lines (info) stamped as they arrive.
struct Daemon {
    child: Child,
    started: Instant,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Daemon {
    fn start(base: &Path, text: &str, notify: Option<&Path>) -> Daemon {
        let config = base.join("config.toml");
        std::fs::write(&config, text).unwrap();
        let mut cmd = Command::new(daemon_binary());
        cmd.args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(socket) = notify {
            cmd.env("NOTIFY_SOCKET", socket);
        }
        let started = Instant::now();
        let mut child = cmd.spawn().unwrap();
        let lines: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
        let (stderr, sink) = (child.stderr.take().unwrap(), lines.clone());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().unwrap().push((Instant::now(), line));
            }
        });
        Daemon {
            child,
            started,
            lines,
        }
    }

    fn logged(&self, needle: &str) -> Option<(Instant, String)> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .find(|(_, l)| l.contains(needle))
            .cloned()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User + system CPU seconds so far.
    fn cpu_seconds(&self) -> f64 {
        common::cpu_seconds(self.pid(), false)
    }

    fn stop(self) {
        stop(self.child)
    }
}

fn median_wall(mut run: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            run();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[2]
}

fn cli(base: &Path, args: &[&str]) -> (bool, usize) {
    let out = Command::new(daemon_binary())
        .args(args)
        .arg("--config")
        .arg(base.join("config.toml"))
        .output()
        .unwrap();
    (out.status.success(), out.stdout.len())
}

async fn start_and_answer(journal: &Path, files: usize) {
    let base = fresh_base(journal);
    let emulator = emulator().await;
    let text = config_text(&base, &emulator.base_url(), "400d", "");
    let socket_path = base.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_nonblocking(true).unwrap();
    let daemon = Daemon::start(&base, &text, Some(&socket_path));
    let ready = ready(&socket, Duration::from_secs(120)).await;
    match ready {
        Some(_) => println!(
            "start: READY=1 {:.0?} after start, journal of {files} files (load: {})",
            daemon.started.elapsed(),
            load()
        ),
        None => println!("start: no READY within 120 s"),
    }
    let cpu_at_ready = daemon.cpu_seconds();
    tokio::time::sleep(Duration::from_secs(10)).await;
    println!(
        "idle: VmHWM {:.1} MB 10 s after READY; CPU {:.2} s in those 10 s (load: {})",
        peak_memory_mb(daemon.pid()),
        daemon.cpu_seconds() - cpu_at_ready,
        load()
    );
    let mut ok = true;
    let status = median_wall(|| ok &= cli(&base, &["status"]).0);
    println!(
        "status: {:.0?} wall, median of 5{} (load: {})",
        status,
        if ok { "" } else { " (FAILED)" },
        load()
    );
    let n = files / 2;
    let name = format!("scan-{n:07}.jpg");
    let path = base.join("done").join(&name).display().to_string();
    let document = format!("s-{}", 10_000_000 + n);
    for (what, query) in [("name", &name), ("path", &path), ("document id", &document)] {
        let mut found = true;
        let wall = median_wall(|| {
            let (success, printed) = cli(&base, &["explain", query]);
            found &= success && printed > 0;
        });
        println!(
            "explain by {what}: {wall:.0?} wall, median of 5{} (load: {})",
            if found { "" } else { " (NOT FOUND)" },
            load()
        );
    }
    daemon.stop();
}

/// `count` small files in the inbox, each different, oldest first.
fn burst(inbox: &Path, count: usize) {
    for n in 0..count {
        std::fs::write(inbox.join(format!("b-{n:05}.bin")), format!("burst {n}")).unwrap();
    }
}

/// The largest gap between consecutive requests arriving within `[from, to]`, and how many.
fn largest_gap(
    emulator: &beorg_emulator::Emulator,
    from: Instant,
    to: Instant,
) -> (Duration, usize) {
    let times: Vec<Instant> = emulator
        .requests()
        .into_iter()
        .map(|r| r.at)
        .filter(|t| *t >= from && *t <= to)
        .collect();
    let gap = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    (gap, times.len())
}

async fn prune_while_pacing(journal: &Path, files: usize) {
    let base = fresh_base(journal);
    let emulator = emulator().await;
    burst(&base.join("in"), BURST);
    let text = config_text(&base, &emulator.base_url(), "30d", "");
    let daemon = Daemon::start(&base, &text, None);
    let pruned = wait_for(Duration::from_secs(600), || {
        daemon.logged("finished files older than keep_history")
    })
    .await;
    let Some((at, line)) = pruned else {
        println!("prune: not logged within 600 s");
        daemon.stop();
        return;
    };
    let took = at - daemon.started;
    let first = emulator.requests().first().map(|r| r.at);
    let (gap, requests) = first.map_or((Duration::ZERO, 0), |f| largest_gap(&emulator, f, at));
    let first_after = first.map(|f| f - daemon.started).unwrap_or_default();
    let forgotten = line
        .split("forgot ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap_or("?")
        .to_string();
    // Pacing alone afterwards, for comparison.
    let after = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (gap_after, _) = largest_gap(&emulator, after, Instant::now());
    println!(
        "prune: forgot {forgotten} of {files} files, done {took:.1?} after start; first request {first_after:.1?} after start; largest request gap while pruning {gap:.0?} over {requests} requests (nominal {:.0?}; pacing alone after: {gap_after:.0?}) (load: {})",
        Duration::from_secs_f64(1.0 / RPS),
        load()
    );
    daemon.stop();
    let path = base.join("state/journal.sqlite");
    let conn = rusqlite_open(&path);
    let pages: i64 = conn
        .pragma_query_value(None, "page_count", |r| r.get(0))
        .unwrap();
    let free: i64 = conn
        .pragma_query_value(None, "freelist_count", |r| r.get(0))
        .unwrap();
    let vacuum: i64 = conn
        .pragma_query_value(None, "auto_vacuum", |r| r.get(0))
        .unwrap();
    drop(conn);
    checkpoint(&path);
    println!(
        "prune: journal after {:.0} MB on disk, {pages} pages of which {free} free (auto_vacuum {vacuum})",
        mb(std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)),
    );
}

/// `count` outcomes in `done`, their sidecars modified 40 days ago.
fn outcomes(base: &Path, count: usize) {
    let (done, inbox) = (base.join("done"), base.join("in"));
    let old = SystemTime::now() - 40 * DAY;
    for n in 0..count {
        let name = format!("old-{n:06}.jpg");
        std::fs::write(done.join(&name), format!("scan {n}")).unwrap();
        let sidecar = done.join(format!("{name}.json"));
        let text = serde_json::json!({"sidecar_version": 4, "status": "done", "file": name,
            "source": {"name": name, "inbox": inbox.display().to_string(), "size": 7},
            "result": {"documents": [{"data": {"LastName": "ИВАНОВА", "Series": "4510"}}]},
            "written_by": "beorg-hotfolder 0.1.0"});
        std::fs::write(&sidecar, text.to_string()).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&sidecar)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
}

async fn retention_while_pacing() {
    let base = fresh_base(Path::new("/nonexistent"));
    let made = Instant::now();
    outcomes(&base, OUTCOMES);
    println!(
        "retention: {OUTCOMES} outcomes written in {:.1?}",
        made.elapsed()
    );
    let emulator = emulator().await;
    burst(&base.join("in"), BURST);
    let text = config_text(&base, &emulator.base_url(), "30d", "retention = \"30d\"\n");
    let daemon = Daemon::start(&base, &text, None);
    let swept = wait_for(Duration::from_secs(600), || {
        daemon.logged("retention: deleted")
    })
    .await;
    let Some((at, line)) = swept else {
        println!("retention: not logged within 600 s");
        daemon.stop();
        return;
    };
    let cpu_sweep = daemon.cpu_seconds();
    let took = at - daemon.started;
    let first = emulator.requests().first().map(|r| r.at);
    let (gap, requests) = first.map_or((Duration::ZERO, 0), |f| largest_gap(&emulator, f, at));
    let first_after = first.map(|f| f - daemon.started).unwrap_or_default();
    // Pacing alone for as long, right after.
    let after = Instant::now();
    let alone = took.max(Duration::from_secs(2));
    tokio::time::sleep(alone).await;
    let cpu_alone = daemon.cpu_seconds() - cpu_sweep;
    let (gap_after, _) = largest_gap(&emulator, after, Instant::now());
    let deleted = line
        .split("deleted ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap_or("?")
        .to_string();
    println!(
        "retention: deleted {deleted} outcomes in {took:.1?}; daemon CPU {cpu_sweep:.2} s during the sweep, {cpu_alone:.2} s pacing alone for as long after: sweep {:.2} s CPU; first request {first_after:.1?} after start; largest request gap during it {gap:.0?} over {requests} requests (nominal {:.0?}; alone after: {gap_after:.0?}) (load: {})",
        cpu_sweep - cpu_alone,
        Duration::from_secs_f64(1.0 / RPS),
        load()
    );
    daemon.stop();
}
