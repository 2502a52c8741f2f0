//! Memory figures for submit bodies streamed from disk (issue 10), printed, not asserted: run
//! `cargo bench --bench memory`.
//!
//! 0. The daemon idle, for reference: its peak memory (VmHWM) with nothing to do.
//! 1. One 100 MB file sent in one request: the daemon's peak memory until it is in done/.
//! 2. 200 files of 5 MB waiting in the inbox at start, all sent: peak memory until the last
//!    one is in done/.
//!
//! The daemon is the release binary (a child process, so its VmHWM is its own), the API the
//! built-in emulator on loopback in this process; folders are on /dev/shm when it exists.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use beorg_emulator::{Emulator, EmulatorConfig, Endpoint};

const MB: usize = 1024 * 1024;

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        run("idle", &[], Duration::from_secs(3)).await;
        run("one 100 MB file", &[100 * MB], Duration::from_secs(300)).await;
        run(
            "200 files of 5 MB",
            &[5 * MB; 200],
            Duration::from_secs(600),
        )
        .await;
    });
}

fn scratch() -> tempfile::TempDir {
    match Path::new("/dev/shm").is_dir() {
        true => tempfile::tempdir_in("/dev/shm").unwrap(),
        false => tempfile::tempdir().unwrap(),
    }
}

async fn emulator() -> Emulator {
    let config = EmulatorConfig {
        token: "bench".into(),
        time_scale: 0.001,
        ..EmulatorConfig::default()
    };
    Emulator::start(config, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap()
}

fn config_text(base: &Path, url: &str) -> String {
    format!(
        "[api]\nbase_url = \"{url}\"\nproject_id = \"U_RATE_2\"\nmachine_uid = \"emulator-machine\"\ntoken = \"bench\"\nrequests_per_second = 50.0\ndocuments_per_minute = 3000\nrequest_timeout = \"60s\"\n\n[daemon]\nstate_dir = \"{0}/state\"\n\n[defaults]\npreflight = \"off\"\nsettle = \"500ms\"\nfirst_poll = \"50ms\"\n\n[[inbox]]\npath = \"{0}/in\"\ntype = \"PASSPORT\"\ndone = \"{0}/done\"\nfailed = \"{0}/failed\"\n",
        base.display()
    )
}

fn spawn(base: &Path, text: &str) -> Child {
    let config = base.join("config.toml");
    std::fs::write(&config, text).unwrap();
    Command::new(env!("CARGO_BIN_EXE_beorg-hotfolder"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The child's peak resident memory (VmHWM), in MB.
fn peak_memory_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn stop(mut child: Child) {
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
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
    let child = spawn(base, &config_text(base, &emulator.base_url()));
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
