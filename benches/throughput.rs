//! Throughput when the API is not the limit (issue 23, goal 1), printed, not asserted:
//! `cargo bench --bench throughput`.
//!
//! 200 files of 5 MB (distinct contents) wait in an inbox on tmpfs at start; the API is the
//! emulator on loopback in this process, processing near-instant (times at 1/1000), with limits
//! far above what either client reaches (`requests_per_second` 1000, `documents_per_minute`
//! 60,000, the highest the config allows; the emulator refuses nothing for coming too close). In the same run, on the same
//! workload in a fresh folder against a fresh emulator of the same kind:
//!
//! 1. the release daemon (`BEORG_BENCH_BIN` runs another binary, e.g. main's, to compare), with
//!    `settle` 500 ms and `first_poll` 500 ms (the reference asks every 0.5 s);
//! 2. the Python reference client `benches/reference/client.py` (standard library only, a
//!    thread pool of its default size, no rate limit): read, base64, post, poll every 0.5 s,
//!    sidecar, move;
//! 3. the yardstick: `sha256sum` over the 200 files, then `base64` of each to /dev/null.
//!
//! Timed for each client: from its start (the process spawned, the files already waiting) to
//! the last of the 200 sidecars in done/; documents per second is 200 over that. CPU seconds
//! are the child's utime + stime from `/proc/<pid>/stat` (the daemon's when its last sidecar
//! appears; python's and the yardstick's once they exited, their waited-for children
//! included), per MB of file sent (1000 MB); peak memory is VmHWM. The emulator's own CPU
//! is this process's over the same time (it parses, decodes and hashes every body). Under the
//! daemon's row: when the submits started (from the emulator's request log) and what the
//! requests were.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use beorg_emulator::{Endpoint, RequestRecord};

#[allow(dead_code)] // each benchmark uses part of it
mod common;
use common::{
    cpu_seconds, emulator, own_cpu_seconds, peak_memory_mb, scratch, spawn, stat_fields, stop,
};

const FILES: usize = 200;
const MB: usize = 1024 * 1024;
const FILE_SIZE: usize = 5 * MB;
const LIMIT: Duration = Duration::from_secs(600);

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // `cargo bench --bench throughput -- daemon` runs the daemon only (no comparison).
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    runtime.block_on(async {
        let daemon = daemon_run().await;
        print_row("daemon", &daemon);
        print_requests(&daemon);
        if only.as_deref() == Some("daemon") {
            return;
        }
        let reference = reference_run().await;
        print_row("reference", &reference);
        let yardstick = yardstick();
        println!(
            "{:10} sha256sum + base64 over the same files: {:.2} CPU s, {:.2} CPU ms/MB",
            "yardstick",
            yardstick,
            yardstick / mb_sent() * 1000.0,
        );
        println!(
            "daemon/reference documents/s {:.2} x; daemon CPU/MB / yardstick CPU/MB {:.2} x",
            daemon.docs_per_second() / reference.docs_per_second(),
            daemon.cpu_seconds / yardstick,
        );
    });
}

/// What one client's run gave.
struct Run {
    done: usize,
    elapsed: Duration,
    cpu_seconds: f64,
    peak_mb: f64,
    emulator_cpu_seconds: f64,
    started: Instant,
    requests: Vec<RequestRecord>,
}

impl Run {
    fn docs_per_second(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64()
    }
}

fn mb_sent() -> f64 {
    (FILES * FILE_SIZE) as f64 / MB as f64
}

fn print_row(client: &str, run: &Run) {
    println!(
        "{client:10} {} of {FILES} in done/ in {:.2} s: {:.1} documents/s; {:.2} CPU s, {:.2} CPU ms/MB; peak memory {:.1} MB; the emulator's CPU {:.2} s",
        run.done,
        run.elapsed.as_secs_f64(),
        run.docs_per_second(),
        run.cpu_seconds,
        run.cpu_seconds / mb_sent() * 1000.0,
        run.peak_mb,
        run.emulator_cpu_seconds,
    );
}

/// Where the daemon's time went, as the API saw it: when the submits started, how they were
/// spaced, and what the requests were.
fn print_requests(run: &Run) {
    let since = |r: &RequestRecord| r.at.duration_since(run.started).as_secs_f64();
    let submits: Vec<&RequestRecord> = run
        .requests
        .iter()
        .filter(|r| r.endpoint == Endpoint::Submit)
        .collect();
    let results: Vec<&RequestRecord> = run
        .requests
        .iter()
        .filter(|r| r.endpoint != Endpoint::Submit)
        .collect();
    let (Some(first), Some(last)) = (submits.first(), submits.last()) else {
        println!("{:10} no submit arrived", "");
        return;
    };
    let span = since(last) - since(first);
    println!(
        "{:10} submits started from {:.2} s to {:.2} s after start (one every {:.1} ms); {} submits, {} result requests ({} answered 425), {:.2} requests/doc; last submit to last sidecar {:.2} s",
        "",
        since(first),
        since(last),
        span / (submits.len().max(2) - 1) as f64 * 1000.0,
        submits.len(),
        results.len(),
        results.iter().filter(|r| r.status == 425).count(),
        run.requests.len() as f64 / run.done.max(1) as f64,
        run.elapsed.as_secs_f64() - since(last),
    );
}

/// A fresh folder with the 200 files waiting in `in/`, and `done/` and `failed/` beside it.
fn staged() -> tempfile::TempDir {
    let dir = scratch();
    for role in ["in", "done", "failed"] {
        std::fs::create_dir_all(dir.path().join(role)).unwrap();
    }
    for n in 0..FILES {
        let path = dir.path().join(format!("in/scan-{n:03}.bin"));
        std::fs::write(path, content(n)).unwrap();
    }
    dir
}

/// Distinct content per file (the duplicate rule would answer equal files from one request).
fn content(n: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ (n as u64 + 1);
    let mut bytes = Vec::with_capacity(FILE_SIZE + 8);
    while bytes.len() < FILE_SIZE {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(FILE_SIZE);
    bytes
}

fn config_text(base: &Path, url: &str) -> String {
    format!(
        "[api]\nbase_url = \"{url}\"\nproject_id = \"U_RATE_2\"\nmachine_uid = \"emulator-machine\"\ntoken = \"bench\"\nrequests_per_second = 1000.0\ndocuments_per_minute = 60000\nrequest_timeout = \"120s\"\n\n[daemon]\nstate_dir = \"{0}/state\"\n\n[defaults]\npreflight = \"off\"\nsettle = \"500ms\"\nfirst_poll = \"500ms\"\n\n[[inbox]]\npath = \"{0}/in\"\ntype = \"PASSPORT\"\ndone = \"{0}/done\"\nfailed = \"{0}/failed\"\n",
        base.display()
    )
}

fn sidecars(done: &Path) -> usize {
    std::fs::read_dir(done)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
        .unwrap_or(0)
}

async fn daemon_run() -> Run {
    let dir = staged();
    let base = dir.path();
    let emulator = emulator().await;
    let own_before = own_cpu_seconds();
    let started = Instant::now();
    let child = spawn(base, &config_text(base, &emulator.base_url()), None);
    let mut peak_mb = 0.0f64;
    let done = wait_for_sidecars(&base.join("done"), started, (&child, &mut peak_mb)).await;
    let elapsed = started.elapsed();
    let run = Run {
        done,
        elapsed,
        cpu_seconds: cpu_seconds(child.id(), false),
        peak_mb: peak_mb.max(peak_memory_mb(child.id())),
        emulator_cpu_seconds: own_cpu_seconds() - own_before,
        started,
        requests: emulator.requests(),
    };
    stop(child);
    emulator.shutdown();
    run
}

async fn reference_run() -> Run {
    let dir = staged();
    let base = dir.path();
    let emulator = emulator().await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/reference/client.py");
    let own_before = own_cpu_seconds();
    let started = Instant::now();
    let mut child = Command::new("python3")
        .arg(script)
        .arg("--inbox")
        .arg(base.join("in"))
        .arg("--done")
        .arg(base.join("done"))
        .args(["--base-url", &emulator.base_url()])
        .args(["--token", "bench", "--machine-uid", "emulator-machine"])
        .args(["--project-id", "U_RATE_2", "--type", "PASSPORT"])
        .stdout(Stdio::null())
        .spawn()
        .expect("python3 in PATH");
    let mut peak_mb = 0.0f64;
    let done = wait_for_sidecars(&base.join("done"), started, (&child, &mut peak_mb)).await;
    let elapsed = started.elapsed();
    let emulator_cpu_seconds = own_cpu_seconds() - own_before;
    let cpu_seconds = cpu_at_exit(&mut child);
    Run {
        done,
        elapsed,
        cpu_seconds,
        peak_mb,
        emulator_cpu_seconds,
        started,
        requests: emulator.requests(),
    }
}

/// Waits until all sidecars are in `done`, the limit passed, or the child exited (a daemon
/// refusing its config, python failing), sampling its peak memory meanwhile (an exited
/// process has none to read); the count of sidecars.
async fn wait_for_sidecars(
    done: &Path,
    started: Instant,
    (child, peak): (&Child, &mut f64),
) -> usize {
    loop {
        let count = sidecars(done);
        *peak = peak.max(peak_memory_mb(child.id()));
        if exited(child.id()) {
            if count < FILES {
                let after = started.elapsed().as_secs_f64();
                println!("the client exited after {after:.2} s, {count} sidecars in done/");
            }
            return count;
        }
        if count >= FILES || started.elapsed() > LIMIT {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits for `child` to exit and returns its CPU seconds, read before it is reaped (with
/// those of its own waited-for children).
fn cpu_at_exit(child: &mut Child) -> f64 {
    while !exited(child.id()) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let cpu = cpu_seconds(child.id(), true);
    let _ = child.wait();
    cpu
}

/// Whether the process is a zombie (exited, not yet reaped), or gone.
fn exited(pid: u32) -> bool {
    stat_fields(pid).is_none_or(|f| f.first().is_some_and(|s| s == "Z"))
}

/// The CPU seconds of `sha256sum` over the 200 files plus `base64` of each to /dev/null.
fn yardstick() -> f64 {
    let dir = staged();
    let inbox = dir.path().join("in");
    let mut files: Vec<_> = std::fs::read_dir(&inbox)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("sha256sum \"$@\" >/dev/null && for f; do base64 \"$f\"; done >/dev/null")
        .arg("sh")
        .args(&files)
        .spawn()
        .expect("sh, sha256sum and base64");
    cpu_at_exit(&mut child)
}
