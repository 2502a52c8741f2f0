//! Memory figures for submit bodies streamed from disk (issue 10), printed, not asserted: run
//! `cargo bench --bench memory`.
//!
//! 0. The daemon idle, for reference: its peak memory (VmHWM) with nothing to do.
//! 1. One 100 MB file sent in one request: the daemon's peak memory until it is in done/.
//! 2. 200 files of 5 MB waiting in the inbox at start, all sent: peak memory until the last
//!    one is in done/.
//! 3. One 100 MB document set (ten files of 10 MB in one folder of a `sets` inbox) sent in
//!    one request: peak memory until the folder is in done/.
//!
//! The daemon is the release binary (a child process, so its VmHWM is its own), the API the
//! built-in emulator on loopback in this process; folders are on /dev/shm when it exists.

use std::path::Path;
use std::time::{Duration, Instant};

use beorg_emulator::Endpoint;

#[allow(dead_code)] // each benchmark uses part of it
mod common;
use common::{emulator, peak_memory_mb, scratch, spawn, stop};

const MB: usize = 1024 * 1024;

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // `cargo bench --bench memory -- set` runs only the runs whose name contains "set".
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |what: &str| only.as_deref().is_none_or(|o| what.contains(o));
    runtime.block_on(async {
        if wanted("idle") {
            run("idle", &[], Duration::from_secs(3)).await;
        }
        if wanted("one 100 MB file") {
            run("one 100 MB file", &[100 * MB], Duration::from_secs(300)).await;
        }
        if wanted("200 files of 5 MB") {
            run(
                "200 files of 5 MB",
                &[5 * MB; 200],
                Duration::from_secs(600),
            )
            .await;
        }
        if wanted("one 100 MB set of 10 files") {
            run_set("one 100 MB set of 10 files", &[10 * MB; 10]).await;
        }
    });
}

fn config_text(base: &Path, url: &str) -> String {
    config_with(base, url, "")
}

/// The bench config; `inbox_extra` is appended to its `[[inbox]]`.
fn config_with(base: &Path, url: &str, inbox_extra: &str) -> String {
    format!(
        "[api]\nbase_url = \"{url}\"\nproject_id = \"U_RATE_2\"\nmachine_uid = \"emulator-machine\"\ntoken = \"bench\"\nrequests_per_second = 50.0\ndocuments_per_minute = 3000\nrequest_timeout = \"60s\"\n\n[daemon]\nstate_dir = \"{0}/state\"\n\n[defaults]\npreflight = \"off\"\nsettle = \"500ms\"\nfirst_poll = \"50ms\"\n\n[[inbox]]\npath = \"{0}/in\"\ntype = \"PASSPORT\"\ndone = \"{0}/done\"\nfailed = \"{0}/failed\"\n{inbox_extra}\n",
        base.display()
    )
}

/// Starts the daemon with one set of `sizes` files waiting in a `sets` inbox, waits until the
/// set is in done/, and prints the daemon's peak memory.
async fn run_set(what: &str, sizes: &[usize]) {
    let dir = scratch();
    let base = dir.path();
    for role in ["in", "done", "failed"] {
        std::fs::create_dir_all(base.join(role)).unwrap();
    }
    std::fs::create_dir_all(base.join("in/.building")).unwrap();
    for (n, size) in sizes.iter().enumerate() {
        let path = base.join(format!("in/.building/page-{n:02}.bin"));
        std::fs::write(path, content(*size, n)).unwrap();
    }
    std::fs::rename(base.join("in/.building"), base.join("in/set-1")).unwrap();
    let emulator = emulator().await;
    let started = Instant::now();
    let text = config_with(base, &emulator.base_url(), "sets = true");
    let child = spawn(base, &text, None);
    let sidecar = base.join("done/set-1.json");
    while started.elapsed() < Duration::from_secs(300) && !sidecar.exists() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let peak = peak_memory_mb(child.id());
    let total: usize = sizes.iter().sum();
    println!(
        "{what}: {} ({} MB in one request) in {:.1?}; daemon peak memory (VmHWM) {peak:.1} MB",
        if sidecar.exists() {
            "in done/"
        } else {
            "NOT in done/"
        },
        total / MB,
        started.elapsed(),
    );
    stop(child);
    emulator.shutdown();
}

/// Distinct content per file (the duplicate rule would answer equal files from one request).
fn content(len: usize, n: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let tag = format!("file {n} ");
    let end = tag.len().min(len);
    bytes[..end].copy_from_slice(&tag.as_bytes()[..end]);
    bytes
}

/// Starts the daemon with `sizes` files waiting in its inbox and waits until all are in
/// done/ (or `limit` passes, for the idle run), then prints its peak memory.
async fn run(what: &str, sizes: &[usize], limit: Duration) {
    let dir = scratch();
    let base = dir.path();
    for role in ["in", "done", "failed"] {
        std::fs::create_dir_all(base.join(role)).unwrap();
    }
    for (n, size) in sizes.iter().enumerate() {
        std::fs::write(base.join(format!("in/scan-{n:03}.bin")), content(*size, n)).unwrap();
    }
    let emulator = emulator().await;
    let started = Instant::now();
    let child = spawn(base, &config_text(base, &emulator.base_url()), None);
    let sidecars = || {
        std::fs::read_dir(base.join("done"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                    .count()
            })
            .unwrap_or(0)
    };
    while started.elapsed() < limit && (sizes.is_empty() || sidecars() < sizes.len()) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let peak = peak_memory_mb(child.id());
    let accepted = emulator
        .requests()
        .iter()
        .filter(|r| r.endpoint == Endpoint::Submit && r.status == 200)
        .count();
    let total: usize = sizes.iter().sum();
    println!(
        "{what}: {} of {} in done/ ({} MB, {accepted} submits accepted) in {:.1?}; daemon peak memory (VmHWM) {peak:.1} MB",
        sidecars(),
        sizes.len(),
        total / MB,
        started.elapsed(),
    );
    stop(child);
    emulator.shutdown();
}
