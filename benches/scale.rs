//! Scale figures for intake (issue 4), printed, not asserted: run `cargo bench --bench scale`.
//!
//! 1. A backlog of 100,000 files in one inbox at start (`cargo bench --bench scale --
//!    1000000`: only this, with a million): the time of one listing with an lstat of each
//!    file, time to the first submit, whether the first 20 submits are the 20 oldest files,
//!    the daemon's resident memory at 1, 2, 5, 10 and 20 s (VmRSS) and its peak (VmHWM).
//! 2. 200 inboxes: time to READY=1 and from a new file in the last inbox to its submit.
//! 3. One poll pass (list + stat + settle check) over 10,000 waiting files: CPU time.
//!
//! The daemon is the release binary, the API the built-in emulator on loopback; folders are
//! on /dev/shm when it exists, so the figures measure the daemon rather than the disk.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use beorg_emulator::Endpoint;
use beorg_hotfolder::config::Config;
use beorg_hotfolder::store::fsutil::sha256_hex;

#[allow(dead_code)] // each benchmark uses part of it
mod common;
use common::{
    emulator, numbered_inboxes_config, own_cpu_seconds, peak_memory_mb, ready, scratch, spawn,
    stop, wait_for,
};

const BACKLOG: usize = 100_000;
const INBOXES: usize = 200;
const POLL_FILES: usize = 10_000;

fn main() {
    // `cargo bench --bench scale -- 1000000`: the backlog only, with that many files.
    let backlog_only = std::env::args()
        .skip(1)
        .find_map(|a| a.replace([',', '_'], "").parse::<usize>().ok());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    if let Some(files) = backlog_only {
        runtime.block_on(backlog(files));
        return;
    }
    runtime.block_on(async {
        backlog(BACKLOG).await;
        many_inboxes().await;
    });
    poll_pass();
}

fn config_text(base: &Path, url: &str, inboxes: usize) -> String {
    numbered_inboxes_config(base, url, 50.0, 3000.0, "", inboxes)
}

fn content(n: usize) -> Vec<u8> {
    format!("scan number {n}").into_bytes()
}

/// How many files of the backlog's folder are named and created in an order other than their
/// age: file `n` (0 = oldest) is created `CREATE_STEP`-th and named `NAME_STEP`-th, modulo the
/// backlog (both primes, coprime with any backlog of 10^k files).
const CREATE_STEP: usize = 7919;
const NAME_STEP: usize = 48271;

/// Writes `files` tiny files into `inbox`, mtimes one second apart (file 0 the oldest), created
/// and named in orders that are neither age order nor each other.
fn write_backlog(inbox: &Path, files: usize) {
    let oldest = SystemTime::now() - Duration::from_secs(files as u64 + 10);
    for i in 0..files {
        let n = (i * CREATE_STEP) % files;
        let path = inbox.join(format!("scan-{:07}.bin", (n * NAME_STEP) % files));
        std::fs::write(&path, content(n)).unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(oldest + Duration::from_secs(n as u64))
            .unwrap();
    }
}

/// One listing of `dir` with an lstat of each entry, as intake's first pass does: its time.
fn list_and_stat(dir: &Path) -> (usize, Duration) {
    let started = Instant::now();
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if std::fs::symlink_metadata(entry.path()).is_ok() {
            seen += 1;
        }
    }
    (seen, started.elapsed())
}

/// The child's resident memory now (VmRSS), in MB.
fn resident_mb(pid: u32) -> f64 {
    common::proc_status_mb(pid, "VmRSS:")
}

/// A backlog of `files` files in one inbox at start: the first submit, whether the first 20
/// are the 20 oldest, resident memory over time (a transient peak is the listing, a held one
/// the queue) and the peak.
async fn backlog(files: usize) {
    let dir = scratch();
    let emulator = emulator().await;
    let text = config_text(dir.path(), &emulator.base_url(), 1);
    let inbox = dir.path().join("in/0");
    let made = Instant::now();
    write_backlog(&inbox, files);
    println!("backlog {files}: files written in {:.1?}", made.elapsed());
    let (seen, took) = list_and_stat(&inbox);
    println!(
        "backlog {files}: one listing with an lstat of each of the {seen} files (this process, cache warm) {took:.2?}"
    );
    let started = Instant::now();
    let child = spawn(dir.path(), &text, None);
    let pid = child.id();
    // Until the first submit (at most 60 s) and at least 20 s: the first submit, and the
    // resident memory at each due moment.
    let mut first = None;
    let mut resident = Vec::new();
    let mut due = [1, 2, 5, 10, 20].into_iter().peekable();
    while started.elapsed() < Duration::from_secs(60) && (first.is_none() || due.peek().is_some()) {
        if first.is_none() {
            first = emulator
                .requests()
                .into_iter()
                .find(|r| r.endpoint == Endpoint::Submit)
                .map(|r| r.at - started);
        }
        if let Some(at) = due.next_if(|at| started.elapsed() >= Duration::from_secs(*at)) {
            resident.push(format!("{at} s {:.1} MB", resident_mb(pid)));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    match first {
        Some(at) => {
            println!(
                "backlog {files}: first submit {at:.2?} after start (settle 2 s; files unchanged that long before the start are settled when listed)"
            )
        }
        None => println!("backlog {files}: no submit within 60 s"),
    }
    println!(
        "backlog {files}: daemon resident memory (VmRSS) after start: {}",
        resident.join(", ")
    );
    let by_sha: std::collections::HashMap<String, usize> =
        (0..files).map(|n| (sha256_hex(&content(n)), n)).collect();
    let submits: Vec<usize> = emulator
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == Endpoint::Submit)
        .map(|r| {
            by_sha
                .get(&r.image_sha256[0])
                .copied()
                .unwrap_or(usize::MAX)
        })
        .collect();
    // Which backlog file (0 = oldest) each of the first submits was.
    let first_20: Vec<usize> = submits.iter().take(20).copied().collect();
    let oldest_first = first_20.iter().copied().eq(0..first_20.len().min(20));
    println!(
        "backlog {files}: {} submitted by then; the first 20 by age rank (0 = oldest): {first_20:?} ({})",
        submits.len(),
        if oldest_first && first_20.len() == 20 {
            "the 20 oldest, in order"
        } else {
            "NOT the 20 oldest in order"
        }
    );
    println!(
        "backlog {files}: daemon peak memory (VmHWM) {:.1} MB",
        peak_memory_mb(pid)
    );
    stop(child);
    emulator.shutdown();
}

async fn many_inboxes() {
    let dir = scratch();
    let emulator = emulator().await;
    let text = config_text(dir.path(), &emulator.base_url(), INBOXES);
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_nonblocking(true).unwrap();
    let started = Instant::now();
    let child = spawn(dir.path(), &text, Some(&socket_path));
    let ready = ready(&socket, Duration::from_secs(30)).await;
    println!(
        "{INBOXES} inboxes: READY=1 {:.0?} after start ({})",
        started.elapsed(),
        if ready.is_some() {
            "attached"
        } else {
            "no READY within 30 s"
        }
    );
    let last: PathBuf = dir.path().join(format!("in/{}/new.bin", INBOXES - 1));
    let dropped = Instant::now();
    std::fs::write(&last, b"a scan in the last inbox").unwrap();
    let seen = wait_for(Duration::from_secs(30), || {
        emulator
            .requests()
            .into_iter()
            .find(|r| r.endpoint == Endpoint::Submit)
    })
    .await;
    if let Some(r) = seen {
        println!(
            "{INBOXES} inboxes: a file written in the last inbox was submitted {:.0?} later (settle 2 s, or less after close-write)",
            r.at - dropped
        );
    }
    println!(
        "{INBOXES} inboxes: daemon peak memory (VmHWM) {:.1} MB",
        peak_memory_mb(child.id())
    );
    stop(child);
    emulator.shutdown();
}

fn poll_pass() {
    let dir = scratch();
    let base = dir.path();
    let mut text = config_text(base, "http://127.0.0.1:9", 1);
    text = text.replace(
        "[defaults]\n",
        "[defaults]\nsettle = \"1h\"\nwatch = \"poll\"\n",
    );
    for n in 0..POLL_FILES {
        std::fs::write(base.join(format!("in/0/f-{n:05}.bin")), content(n)).unwrap();
    }
    let config = Config::from_toml(&text, &base.join("config.toml"), None).unwrap();
    let inboxes = Arc::new(config.inboxes);
    // The first pass meets every file; later passes are the steady state of a poll.
    beorg_hotfolder::pipeline::intake::poll_passes(inboxes.clone(), 1);
    let passes = 20;
    let (cpu, wall) = (own_cpu_seconds(), Instant::now());
    let seen = beorg_hotfolder::pipeline::intake::poll_passes(inboxes, passes);
    let (cpu, wall) = (own_cpu_seconds() - cpu, wall.elapsed());
    println!(
        "poll pass over {seen} waiting files: {:.0} ms CPU, {:.0} ms wall per pass (mean of {} passes after the first)",
        cpu * 1000.0 / passes as f64,
        wall.as_secs_f64() * 1000.0 / passes as f64,
        passes
    );
}
