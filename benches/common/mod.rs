//! What the benchmarks share: scratch folders on tmpfs, an emulator on loopback, the release
//! daemon as a child process, its peak memory read from `/proc`, a `redis-server` of its
//! own, waiting on a condition with a deadline, and a process's CPU time from `/proc`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use beorg_emulator::{Emulator, EmulatorConfig};

/// A temp folder on /dev/shm where there is one (the disk is not what is measured).
pub fn scratch() -> tempfile::TempDir {
    match Path::new("/dev/shm").is_dir() {
        true => tempfile::tempdir_in("/dev/shm").unwrap(),
        false => tempfile::tempdir().unwrap(),
    }
}

/// The emulator, near-instant (processing times at 1/1000), accepting the token `bench`.
pub async fn emulator() -> Emulator {
    emulator_with(EmulatorConfig {
        time_scale: 0.001,
        ..EmulatorConfig::default()
    })
    .await
}

/// The emulator with `config`, accepting the token `bench`.
pub async fn emulator_with(config: EmulatorConfig) -> Emulator {
    let config = EmulatorConfig {
        token: "bench".into(),
        ..config
    };
    Emulator::start(config, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap()
}

/// Writes `text` as `base/config.toml` and starts the daemon binary on it (with systemd's
/// `NOTIFY_SOCKET` when `notify` is given).
pub fn spawn(base: &Path, text: &str, notify: Option<&Path>) -> Child {
    let config = base.join("config.toml");
    std::fs::write(&config, text).unwrap();
    let mut cmd = Command::new(daemon_binary());
    cmd.args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(socket) = notify {
        cmd.env("NOTIFY_SOCKET", socket);
    }
    cmd.spawn().unwrap()
}

/// The daemon binary: this build's, or `BEORG_BENCH_BIN` (e.g. an older build, to compare).
pub fn daemon_binary() -> std::path::PathBuf {
    std::env::var_os("BEORG_BENCH_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_beorg-hotfolder").into())
}

/// The child's peak resident memory (VmHWM), in MB.
pub fn peak_memory_mb(pid: u32) -> f64 {
    proc_status_mb(pid, "VmHWM:")
}

/// A memory line of the child's `/proc/<pid>/status` (`VmHWM:`, `VmRSS:`), in MB.
pub fn proc_status_mb(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// SIGTERM, then waits for the child to exit.
pub fn stop(mut child: Child) {
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
}

/// A config for the emulator at `url` with `inboxes` PASSPORT inboxes `in/<i>` (their done and
/// failed folders made), the given limits, and `defaults` added to `[defaults]` (which turns
/// preflight off).
pub fn numbered_inboxes_config(
    base: &Path,
    url: &str,
    rps: f64,
    dpm: f64,
    defaults: &str,
    inboxes: usize,
) -> String {
    let mut text = format!(
        "[api]\nbase_url = \"{url}\"\nproject_id = \"U_RATE_2\"\nmachine_uid = \"emulator-machine\"\ntoken = \"bench\"\nrequests_per_second = {rps:?}\ndocuments_per_minute = {dpm:?}\n\n[daemon]\nstate_dir = \"{}/state\"\n\n[defaults]\npreflight = \"off\"\n{defaults}",
        base.display()
    );
    for i in 0..inboxes {
        text.push_str(&format!(
            "\n[[inbox]]\npath = \"{0}/in/{i}\"\ntype = \"PASSPORT\"\ndone = \"{0}/done/{i}\"\nfailed = \"{0}/failed/{i}\"\n",
            base.display()
        ));
        for role in ["in", "done", "failed"] {
            std::fs::create_dir_all(base.join(role).join(i.to_string())).unwrap();
        }
    }
    text
}

/// A `redis-server` on a free loopback port, without persistence; killed when dropped.
pub struct Redis {
    pub port: u16,
    child: Child,
}

impl Redis {
    pub fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Redis {
            port,
            child: Self::spawn(port),
        }
    }

    fn spawn(port: u16) -> Child {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server in PATH (apt-get install redis-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(10));
        }
        child
    }

    /// SIGKILL (its state is gone), then a new one on the same port.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn(self.port);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `probe` every 5 ms until it gives a value or `limit` passes.
pub async fn wait_for<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(v) = probe() {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// Waits up to `limit` for systemd's `READY=1` from the daemon on `socket` (its
/// `NOTIFY_SOCKET`, bound non-blocking).
pub async fn ready(socket: &std::os::unix::net::UnixDatagram, limit: Duration) -> Option<()> {
    wait_for(limit, || {
        let mut buf = [0u8; 256];
        socket
            .recv(&mut buf)
            .ok()
            .filter(|n| buf[..*n].starts_with(b"READY=1"))
            .map(|_| ())
    })
    .await
}

/// The fields of `/proc/<pid>/stat` after the command name (state first).
pub fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    Some(after_name.split_whitespace().map(String::from).collect())
}

/// utime + stime (and cutime + cstime with `children`) of `/proc/<pid>/stat`, in seconds.
pub fn cpu_seconds(pid: u32, children: bool) -> f64 {
    let Some(fields) = stat_fields(pid) else {
        return 0.0;
    };
    // After the name: state is field 3 of the stat line, utime 14, stime 15, cutime 16,
    // cstime 17; here they start at index 0 for field 3.
    let ticks = |field: usize| fields[field - 3].parse::<f64>().unwrap_or(0.0);
    let mut total = ticks(14) + ticks(15);
    if children {
        total += ticks(16) + ticks(17);
    }
    total / clock_ticks_per_second()
}

/// This process's utime + stime, in seconds.
pub fn own_cpu_seconds() -> f64 {
    cpu_seconds(std::process::id(), false)
}

/// `getconf CLK_TCK` (100 on Linux everywhere in practice).
fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}
