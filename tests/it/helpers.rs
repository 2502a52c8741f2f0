//! The test environment: temp folders, the emulator on a loopback port, a config with short
//! durations, the real daemon (in-process through `beorg_hotfolder::run`, or as the real
//! binary when a test needs signals or its stderr), and waits on conditions with deadlines.
//!
//! Set `TEST_LOG=1` to see the in-process daemon's logs.
//!
//! A test that needs something the machine may lack (root to mount a tmpfs, a tool, a kernel
//! setting) asks [`precondition`]: without it the test FAILS and says how to provide it.
//! `BEORG_TEST_SKIP_MISSING=1` turns that into a skip (printed), for a developer's laptop;
//! CI never sets it, and `.ci/run` provides every precondition.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, LazyLock, Once};
use std::time::{Duration, Instant};

use beorg_emulator::samples;
use beorg_emulator::{Emulator, EmulatorConfig, Endpoint, RequestRecord};
use beorg_hotfolder::config::Config;
use beorg_hotfolder::sidecar::Sidecar;
use tokio::sync::oneshot;

/// The token the test emulator accepts; tests assert it never leaks.
pub const TOKEN: &str = "tok-SECRET-5a9f3c";
pub const MACHINE_UID: &str = "machine-test-1";

/// Longest any test waits for a condition; generous for a busy 2-core CI machine.
pub const DEADLINE: Duration = Duration::from_secs(30);

static LOGS: Once = Once::new();

fn init_logs() {
    LOGS.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(beorg_hotfolder::logging::filter())
                .with_test_writer()
                .try_init();
        }
    });
}

/// The variable that lets a test whose precondition is missing skip instead of failing.
pub const SKIP_MISSING: &str = "BEORG_TEST_SKIP_MISSING";

/// True when `have`; otherwise fails the test naming `what` is missing and `how` to provide
/// it, or (with `BEORG_TEST_SKIP_MISSING=1`) prints that the test is skipped and returns false.
pub fn precondition(have: bool, what: &str, how: &str) -> bool {
    if have {
        return true;
    }
    if std::env::var(SKIP_MISSING).is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED ({SKIP_MISSING}=1): {what}");
        return false;
    }
    panic!("{what}; {how} (or set {SKIP_MISSING}=1 to skip such tests)");
}

pub const KB: usize = 1024;
pub const MB: usize = 1024 * KB;

/// Kernel-wide settings (inotify limits) are changed only by a test that holds this
/// exclusively; every [`TestEnv`] holds it shared, so no other test's daemon is starting
/// while a setting is lowered.
static KERNEL_SETTINGS: LazyLock<Arc<tokio::sync::RwLock<()>>> =
    LazyLock::new(|| Arc::new(tokio::sync::RwLock::new(())));

/// A [`TestEnv`]'s hold on [`KERNEL_SETTINGS`].
pub enum KernelSettings {
    Shared(#[allow(dead_code)] tokio::sync::OwnedRwLockReadGuard<()>),
    Exclusive(#[allow(dead_code)] tokio::sync::OwnedRwLockWriteGuard<()>),
}

/// A kernel setting under `/proc/sys` changed for one test, restored on drop. Only a test
/// whose [`TestEnv`] came from [`TestEnv::owning_kernel_settings`] may change one.
pub struct Sysctl {
    path: &'static str,
    old: String,
}

impl Sysctl {
    pub fn set(env: &TestEnv, path: &'static str, value: &str) -> Option<Sysctl> {
        assert!(
            matches!(env.kernel_settings, KernelSettings::Exclusive(_)),
            "changing {path} needs TestEnv::owning_kernel_settings"
        );
        let old = std::fs::read_to_string(path).ok()?;
        std::fs::write(path, value).ok()?;
        Some(Sysctl { path, old })
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = std::fs::write(self.path, self.old.trim());
    }
}

/// The emulators' own runtime. A test's runtime is one thread, and a test that blocks it
/// (generating a sample scan takes a while in a debug build) must not stall the API the
/// daemon is talking to: a submit timing out there would be a fault of the test, not of the
/// daemon.
static EMULATOR_RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("emulator")
        .enable_all()
        .build()
        .expect("the emulators' runtime")
});

/// An emulator on a loopback port, served by [`EMULATOR_RUNTIME`].
pub async fn start_emulator(config: EmulatorConfig) -> Emulator {
    EMULATOR_RUNTIME
        .spawn(Emulator::start(
            config,
            SocketAddr::from(([127, 0, 0, 1], 0)),
        ))
        .await
        .expect("the emulator's start task")
        .expect("emulator starts")
}

/// One inbox of the test config.
#[derive(Clone)]
pub struct Inbox {
    pub doc_type: String,
    pub path: PathBuf,
    pub done: PathBuf,
    pub failed: PathBuf,
    /// Extra TOML lines for this `[[inbox]]`.
    pub extra: String,
}

/// Temp folders, an emulator, and the config pieces a test may change before starting.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub emulator: Emulator,
    pub inboxes: Vec<Inbox>,
    /// Extra lines for `[api]` (later keys win over the defaults below).
    pub api_extra: Vec<String>,
    /// `[api].base_url`; the emulator unless a test points elsewhere.
    pub base_url: String,
    /// `[daemon].state_dir`.
    pub state_dir: PathBuf,
    /// Extra lines for `[daemon]`.
    pub daemon_extra: Vec<String>,
    /// Extra tables at the end of the config (e.g. `[metrics]`).
    pub extra_tables: String,
    /// Shared, or exclusive for a test that changes a kernel-wide setting.
    pub kernel_settings: KernelSettings,
}

impl Drop for TestEnv {
    /// The emulator runs on a runtime that outlives the test: stop it with the test.
    fn drop(&mut self) {
        self.emulator.shutdown();
    }
}

impl TestEnv {
    /// An emulator at 1/100 of the vendor's processing times and one inbox per type.
    pub async fn new(types: &[&str]) -> TestEnv {
        Self::with_emulator(types, EmulatorConfig::default()).await
    }

    /// Like [`TestEnv::new`], for a test that changes a kernel-wide setting ([`Sysctl`]): it
    /// waits until no other test's environment exists, and keeps others waiting meanwhile.
    pub async fn owning_kernel_settings(types: &[&str]) -> TestEnv {
        let exclusive = KERNEL_SETTINGS.clone().write_owned().await;
        Self::build(
            types,
            EmulatorConfig::default(),
            KernelSettings::Exclusive(exclusive),
        )
        .await
    }

    pub async fn with_emulator(types: &[&str], emulator: EmulatorConfig) -> TestEnv {
        let shared = KERNEL_SETTINGS.clone().read_owned().await;
        Self::build(types, emulator, KernelSettings::Shared(shared)).await
    }

    async fn build(
        types: &[&str],
        emulator: EmulatorConfig,
        kernel_settings: KernelSettings,
    ) -> TestEnv {
        init_logs();
        let emulator_config = EmulatorConfig {
            token: TOKEN.into(),
            machine_uid: MACHINE_UID.into(),
            time_scale: 0.01,
            ..emulator
        };
        let emulator = start_emulator(emulator_config).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let inboxes = types
            .iter()
            .map(|t| {
                let sub = t.to_lowercase();
                let inbox = Inbox {
                    doc_type: t.to_string(),
                    path: dir.path().join("in").join(&sub),
                    done: dir.path().join("done").join(&sub),
                    failed: dir.path().join("failed").join(&sub),
                    extra: String::new(),
                };
                for d in [&inbox.path, &inbox.done, &inbox.failed] {
                    std::fs::create_dir_all(d).unwrap();
                }
                inbox
            })
            .collect();
        TestEnv {
            base_url: emulator.base_url(),
            state_dir: dir.path().join("state"),
            dir,
            emulator,
            inboxes,
            api_extra: Vec::new(),
            daemon_extra: Vec::new(),
            extra_tables: String::new(),
            kernel_settings,
        }
    }

    /// Adds `key = value` lines to `[api]`.
    pub fn api(&mut self, line: &str) -> &mut Self {
        self.api_extra.push(line.to_string());
        self
    }

    /// The config text: fast durations, generous rates (tests of pacing set their own).
    pub fn config_text(&self) -> String {
        let mut api = vec![
            format!("base_url = \"{}\"", self.base_url),
            "project_id = \"U_RATE_2\"".into(),
            format!("machine_uid = \"{MACHINE_UID}\""),
            format!("token = \"{TOKEN}\""),
            "requests_per_second = 50.0".into(),
            "documents_per_minute = 3000".into(),
            "request_timeout = \"2s\"".into(),
            "connect_timeout = \"1s\"".into(),
            "account_retry = \"400ms\"".into(),
            "submit_attempts = 4".into(),
            "retry_base = \"50ms\"".into(),
            "retry_max = \"200ms\"".into(),
        ];
        let mut daemon = vec![
            format!("state_dir = \"{}\"", self.state_dir.display()),
            "rescan_interval = \"2s\"".into(),
        ];
        override_lines(&mut api, &self.api_extra);
        override_lines(&mut daemon, &self.daemon_extra);
        let mut text = format!(
            "[api]\n{}\n\n[daemon]\n{}\n\n[defaults]\nsettle = \"150ms\"\nfirst_poll = \"50ms\"\nmax_poll_interval = \"200ms\"\nresult_timeout = \"20s\"\n",
            api.join("\n"),
            daemon.join("\n"),
        );
        text.push_str(&self.extra_tables);
        for inbox in &self.inboxes {
            text.push_str(&format!(
                "\n[[inbox]]\npath = \"{}\"\ntype = \"{}\"\ndone = \"{}\"\nfailed = \"{}\"\n{}\n",
                inbox.path.display(),
                inbox.doc_type,
                inbox.done.display(),
                inbox.failed.display(),
                inbox.extra
            ));
        }
        text
    }

    pub fn config(&self) -> Config {
        Config::from_toml(&self.config_text(), &self.config_path(), None)
            .expect("test config is valid")
    }

    /// Writes the config to `DIR/config.toml` (for the binary) and returns its path.
    pub fn write_config(&self) -> PathBuf {
        let path = self.config_path();
        std::fs::write(&path, self.config_text()).unwrap();
        path
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    /// Starts the daemon in this process.
    pub fn start(&self) -> Daemon {
        let config = self.config();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(beorg_hotfolder::run(config, async {
            let _ = stopped.await;
        }));
        Daemon { stop, handle }
    }

    /// Runs `beorg-hotfolder status --config ... --json` and parses its output.
    pub fn status(&self) -> serde_json::Value {
        let config = self.write_config();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_beorg-hotfolder"))
            .args(["status", "--json", "--config"])
            .arg(&config)
            .env_remove("BEORG_TOKEN")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "status failed: {}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }

    /// Starts the real binary with `run --config`, stderr captured to `DIR/daemon-N.log`.
    pub fn spawn_binary(&self, envs: &[(&str, &str)]) -> Binary {
        self.spawn_binary_with(&[], envs)
    }

    /// Like [`TestEnv::spawn_binary`], with extra arguments before `run`.
    pub fn spawn_binary_with(&self, args: &[&str], envs: &[(&str, &str)]) -> Binary {
        let config = self.write_config();
        let log = self
            .dir
            .path()
            .join(format!("daemon-{}.log", fastrand::u32(..)));
        let stderr = std::fs::File::create(&log).unwrap();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_beorg-hotfolder"));
        cmd.args(args)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .env_remove("BEORG_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Binary {
            child: cmd.spawn().expect("binary starts"),
            log,
        }
    }

    /// Writes a generated page scan into inbox `i` (atomically: temp name, then rename).
    pub fn drop_scan(&self, i: usize, name: &str, seed: u64, marker: Option<&str>) -> PathBuf {
        self.drop_bytes(i, name, &samples::page_png(seed, marker))
    }

    /// Writes bytes into inbox `i` under a hidden temp name, then renames them into place.
    pub fn drop_bytes(&self, i: usize, name: &str, bytes: &[u8]) -> PathBuf {
        let inbox = &self.inboxes[i].path;
        let temp = inbox.join(format!(".incoming-{name}"));
        std::fs::write(&temp, bytes).unwrap();
        let path = inbox.join(name);
        std::fs::rename(&temp, &path).unwrap();
        path
    }

    /// Waits for `<name>.json` in inbox `i`'s done or failed folder and parses it.
    pub async fn sidecar(&self, i: usize, name: &str) -> Sidecar {
        let inbox = self.inboxes[i].clone();
        let path = wait_for(&format!("sidecar for {name}"), || {
            [&inbox.done, &inbox.failed]
                .map(|dir| layout::sidecar_path(&dir.join(name)))
                .into_iter()
                .find(|p| p.exists())
        })
        .await;
        read_sidecar(&path)
    }

    /// Submit requests the emulator has seen.
    pub fn submits(&self) -> Vec<RequestRecord> {
        self.requests(Endpoint::Submit)
    }

    pub fn requests(&self, endpoint: Endpoint) -> Vec<RequestRecord> {
        self.emulator
            .requests()
            .into_iter()
            .filter(|r| r.endpoint == endpoint)
            .collect()
    }
}

/// Appends `extra` lines to `lines`; a later line for the same key replaces the earlier one.
fn override_lines(lines: &mut Vec<String>, extra: &[String]) {
    let key = |l: &str| l.split('=').next().unwrap_or_default().trim().to_string();
    for line in extra {
        lines.retain(|l| key(l) != key(line));
        lines.push(line.clone());
    }
}

pub fn read_sidecar(path: &Path) -> Sidecar {
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

/// The daemon running in this process.
pub struct Daemon {
    stop: oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Daemon {
    /// Sends the shutdown signal and waits for `run` to return (it must within 5 s).
    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(5), self.handle)
            .await
            .expect("daemon stops within 5 s")
            .expect("daemon task did not panic")
            .expect("daemon returned Ok");
    }
}

/// The real binary, running.
pub struct Binary {
    pub child: tokio::process::Child,
    pub log: PathBuf,
}

impl Binary {
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = self.child.id().expect("still running");
        let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }

    /// Waits until the daemon has logged `text` at least `times` times, or panics after
    /// [`DEADLINE`] showing the log.
    pub async fn logged(&self, text: &str, times: usize) {
        let start = Instant::now();
        while self.stderr().matches(text).count() < times {
            if start.elapsed() > DEADLINE {
                panic!(
                    "timed out after {DEADLINE:?} waiting for {times} x {text:?} in the log:\n{}",
                    self.stderr()
                );
            }
            // The poll step of this condition wait.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then waits (at most 5 s) for a clean exit, as [`Daemon::stop`] does.
    pub async fn stop(&mut self) {
        self.signal(rustix::process::Signal::TERM);
        let status = self.wait(Duration::from_secs(5)).await;
        assert!(
            status.success(),
            "exited with {status}; log:\n{}",
            self.stderr()
        );
    }

    /// Waits for the process to exit, at most `limit`.
    pub async fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("did not exit within {limit:?}; log:\n{}", self.stderr()))
            .unwrap()
    }
}

/// Polls `probe` every 20 ms until it gives `Some`, or panics after [`DEADLINE`].
pub async fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = probe() {
            return v;
        }
        if start.elapsed() > DEADLINE {
            panic!("timed out after {DEADLINE:?} waiting for {what}");
        }
        // The poll step of this condition wait.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `cond` holds.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    wait_for(what, || cond().then_some(())).await
}

/// [`wait_for`] with a probe that is itself async (an HTTP scrape, a journal read): polls it
/// every `step` until it gives `Some`, or panics after [`DEADLINE`].
pub async fn wait_for_async<T, F>(what: &str, step: Duration, mut probe: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if start.elapsed() > DEADLINE {
            panic!("timed out after {DEADLINE:?} waiting for {what}");
        }
        // The poll step of this condition wait.
        tokio::time::sleep(step).await;
    }
}

/// Waits until the journal's unfinished rows (read through a second connection, as the
/// `status` command reads them) satisfy `cond`. It looks every 5 ms: a stage that lasts only
/// while a body is on the wire is still seen.
pub async fn wait_for_journal(
    state_dir: &Path,
    what: &str,
    cond: impl Fn(&[beorg_hotfolder::store::journal::Record]) -> bool,
) {
    let journal = beorg_hotfolder::store::journal::Journal::open(state_dir).unwrap();
    let cond = &cond;
    let journal = &journal;
    wait_for_async(what, Duration::from_millis(5), || async move {
        cond(&journal.unfinished().await.unwrap()).then_some(())
    })
    .await
}

/// Waits until `probe` has given the same value for `quiet` in a row (what it watches has
/// stopped changing), or panics after [`DEADLINE`]; returns that value.
pub async fn wait_until_quiet<T: PartialEq>(
    what: &str,
    quiet: Duration,
    mut probe: impl FnMut() -> T,
) -> T {
    let start = Instant::now();
    let (mut last, mut since) = (probe(), Instant::now());
    loop {
        if since.elapsed() >= quiet {
            return last;
        }
        if start.elapsed() > DEADLINE {
            panic!("timed out after {DEADLINE:?} waiting for {what}");
        }
        // The poll step of this condition wait.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = probe();
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
}

/// Asserts `cond` stays true for `period` (checked every 20 ms).
pub async fn holds_for(what: &str, period: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < period {
        assert!(cond(), "{what} stopped holding");
        // The check step of this bounded negative check.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Names of the regular files in a folder (not recursing), sorted.
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Hex SHA-256 of a byte string, as the daemon writes it.
pub use beorg_hotfolder::store::fsutil::sha256_hex;

/// A tmpfs mounted for a test (the machine's tests run as root), unmounted on drop.
pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "16k") on `path`. Where mounting is not allowed the test
    /// fails saying so (see [`precondition`]); None only with `BEORG_TEST_SKIP_MISSING=1`.
    pub fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        Self::mount_with(path, &format!("size={size},mode=0755"))
    }

    /// A read-only tmpfs on `path`, as [`Tmpfs::mount`].
    pub fn read_only(path: &Path) -> Option<Tmpfs> {
        Self::mount_with(path, "ro,size=64k")
    }

    fn mount_with(path: &Path, options: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(path)
            .status();
        let ok = status.as_ref().is_ok_and(|s| s.success());
        precondition(
            ok,
            &format!("this test mounts a tmpfs ({options}) and mount said {status:?}"),
            "run the tests as root (CI does), with CAP_SYS_ADMIN",
        )
        .then(|| Tmpfs {
            path: path.to_path_buf(),
        })
    }

    /// Changes the size limit of the mounted tmpfs.
    pub fn resize(&self, size: &str) {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount of {} failed", self.path.display());
    }

    pub fn unmount(&self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        self.unmount();
    }
}

/// `chattr +i` on a folder: nothing can be created in it or removed from it, not even by
/// root, until [`Immutable::release`] or drop. Needs root and `chattr` (e2fsprogs) on a
/// filesystem with attributes (ext4, xfs, btrfs, tmpfs): where that is missing the test fails
/// saying so (see [`precondition`]); None only with `BEORG_TEST_SKIP_MISSING=1`.
pub struct Immutable {
    pub path: PathBuf,
    set: bool,
}

impl Immutable {
    pub fn set(path: &Path) -> Option<Immutable> {
        let status = std::process::Command::new("chattr")
            .arg("+i")
            .arg(path)
            .status();
        precondition(
            status.as_ref().is_ok_and(|s| s.success()),
            &format!("`chattr +i {}` failed ({status:?})", path.display()),
            "this test needs root (CI runs as root), the chattr tool (apt-get install e2fsprogs; .ci/run does) and a temp folder on ext4/xfs/btrfs/tmpfs (set TMPDIR)",
        )
        .then(|| Immutable {
            path: path.to_path_buf(),
            set: true,
        })
    }

    pub fn release(&mut self) {
        if std::mem::take(&mut self.set) {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(&self.path)
                .status();
        }
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        self.release();
    }
}

/// One sample line of a Prometheus text exposition: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the text exposition: every line that is not a `#` comment must be a sample.
/// Panics on anything malformed, so a test that parses the output proves it parseable.
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| parse_line(l).unwrap_or_else(|e| panic!("bad sample line {l:?}: {e}")))
        .collect()
}

fn parse_line(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or("no value after the metric name")?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        rest = parse_labels(after_brace, &mut labels)?;
    }
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    // An exemplar (` # {...} v`) or a timestamp may follow; the value is the first field.
    let value = value.split(' ').next().unwrap_or_default();
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().map_err(|e| format!("bad value {v:?}: {e}"))?,
    };
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `k="v",k="v"}` into `labels`; returns what follows the `}`.
fn parse_labels<'a>(
    mut s: &'a str,
    labels: &mut BTreeMap<String, String>,
) -> Result<&'a str, String> {
    loop {
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let (key, rest) = s.split_once("=\"").ok_or("label without =\"")?;
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad label name {key:?}"));
        }
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("dangling backslash")?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    c => return Err(format!("unknown escape \\{c}")),
                },
                (_, c) => value.push(c),
            }
        };
        if labels.insert(key.to_owned(), value).is_some() {
            return Err(format!("label {key:?} repeated"));
        }
        s = &rest[end + 1..];
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

/// The value of the sample named `name` with exactly the labels `labels`.
pub fn metric_value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut found = samples
        .iter()
        .filter(|s| s.name == name && s.labels == want);
    let first = found.next()?;
    assert!(found.next().is_none(), "{name} {labels:?} appears twice");
    Some(first.value)
}

/// Runs the binary with `args` and `--config config`, without the caller's token variables
/// (`BEORG_TOKEN`, `CREDENTIALS_DIRECTORY`) unless `envs` sets them; exit code and
/// stdout+stderr.
pub fn run_bin(args: &[&str], config: &Path, envs: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_beorg-hotfolder"));
    cmd.args(args)
        .arg("--config")
        .arg(config)
        .env_remove("BEORG_TOKEN")
        .env_remove("CREDENTIALS_DIRECTORY");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// The daemon's on-disk names (work folder, sidecars, journal...), as the daemon spells them.
pub use beorg_hotfolder::store::layout;

/// Waits for `<name>.json` in `dir` (e.g. an inbox's review folder) and parses it.
pub async fn sidecar_in(dir: &Path, name: &str) -> Sidecar {
    let path = layout::sidecar_path(&dir.join(name));
    wait_until(&format!("sidecar {}", path.display()), || path.exists()).await;
    read_sidecar(&path)
}

impl TestEnv {
    /// Adds an inbox of `doc_type` under the folder name `sub` (for a second inbox of a type),
    /// with its folders created and `extra` TOML lines; returns its index.
    pub fn add_inbox(&mut self, doc_type: &str, sub: &str, extra: &str) -> usize {
        let d = self.dir.path();
        let inbox = Inbox {
            doc_type: doc_type.to_string(),
            path: d.join("in").join(sub),
            done: d.join("done").join(sub),
            failed: d.join("failed").join(sub),
            extra: extra.to_string(),
        };
        for dir in [&inbox.path, &inbox.done, &inbox.failed] {
            std::fs::create_dir_all(dir).unwrap();
        }
        self.inboxes.push(inbox);
        self.inboxes.len() - 1
    }

    /// A review folder for inbox `i` (`DIR/review/<n>`), created unless `create` is false,
    /// set as the inbox's `review`; returns it.
    pub fn review_folder(&mut self, i: usize, create: bool) -> PathBuf {
        let dir = self.dir.path().join("review").join(i.to_string());
        if create {
            std::fs::create_dir_all(&dir).unwrap();
        }
        self.inboxes[i]
            .extra
            .push_str(&format!("\nreview = \"{}\"\n", dir.display()));
        dir
    }
}

/// A free loopback port (for `[metrics] listen`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Scrapes `/metrics` on `port`.
pub async fn scrape_metrics(port: u16) -> Vec<Sample> {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let text = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    parse_metrics(&text)
}

/// A real `redis-server` on a loopback port, for the shared request budget (no persistence:
/// a restart loses its state, the harder case). Killed when dropped.
pub struct RedisServer {
    pub port: u16,
    child: Option<std::process::Child>,
    /// Extra arguments (e.g. `--requirepass`), kept for a restart.
    args: Vec<String>,
}

impl RedisServer {
    /// Starts one on a free port and waits until it answers.
    pub fn start(args: &[&str]) -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            child: None,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        server.restart();
        server
    }

    /// A free port with no server on it yet (start one there with [`RedisServer::restart`]).
    pub fn not_started(args: &[&str]) -> RedisServer {
        RedisServer {
            port: free_port(),
            child: None,
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts the server (again) on the same port and waits until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        let installed = std::process::Command::new("redis-server")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        precondition(
            installed,
            "redis-server is not installed (the shared-budget tests run a real one)",
            "install it: apt-get install redis-server (Debian/Ubuntu), or put Valkey's valkey-server in PATH as redis-server",
        );
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            // The poll step of a condition wait (synchronous: called outside the runtime).
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, as a crash: no goodbye to the clients, and its state is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How much of a period two requests of *different daemons* must at least be apart when
/// they reach the emulator, in the shared-budget tests. Each daemon's request leaves after its
/// grant with its own scheduling delay, and the two delays do not cancel out: on the 2-core
/// test machine with other tests and builds beside them, a pair granted a full period apart
/// arrived 190 ms apart for a 200 ms period. What these tests pin is that the daemons share
/// one budget; without it, three daemons at 5 requests/s each would send about every 67 ms.
/// The margin itself against the vendor's clock is measured by `cargo bench --bench budget`
/// (the closest two requests it saw are in the README), and a single daemon's spacing is
/// judged from its own sends by the pacing tests.
pub const ACROSS_DAEMONS: f64 = 0.9;

/// Asserts that no two requests in `records` arrived closer than `1/requests_per_second`,
/// and no two submits closer than `60/documents_per_minute` (what the vendor enforces), each
/// taken at [`ACROSS_DAEMONS`] for requests that several daemons sent.
pub fn assert_within_limits(
    records: &[beorg_emulator::RequestRecord],
    requests_per_second: f64,
    documents_per_minute: f64,
) {
    let request_gap = Duration::from_secs_f64(ACROSS_DAEMONS / requests_per_second);
    let submit_gap = Duration::from_secs_f64(60.0 * ACROSS_DAEMONS / documents_per_minute);
    let mut all: Vec<_> = records.iter().map(|r| r.at).collect();
    all.sort();
    for pair in all.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= request_gap, "two requests {gap:?} apart");
    }
    let mut submits: Vec<_> = records
        .iter()
        .filter(|r| r.endpoint == Endpoint::Submit)
        .map(|r| r.at)
        .collect();
    submits.sort();
    for pair in submits.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= submit_gap, "two submits {gap:?} apart");
    }
}

impl TestEnv {
    /// Starts the daemon binary `kills` times and SIGKILLs it at a random moment 50-700 ms
    /// after each start (the chaos tests); returns what the killed daemons logged.
    pub async fn sigkill_at_random_moments(&self, rng: &mut fastrand::Rng, kills: usize) -> String {
        let mut logs = String::new();
        for _ in 0..kills {
            let mut daemon = self.spawn_binary(&[]);
            // Not a wait: the random moment of the kill is the behaviour under test.
            tokio::time::sleep(Duration::from_millis(rng.u64(50..700))).await;
            daemon.signal(rustix::process::Signal::KILL);
            daemon.wait(Duration::from_secs(5)).await;
            logs.push_str(&daemon.stderr());
        }
        logs
    }
}

/// The transitions in the history of the newest journal row named `name` (read-only, while
/// the daemon runs); empty if there is no such row yet.
pub fn transitions_of(env: &TestEnv, name: &str) -> Vec<String> {
    let path = layout::journal_path(&env.state_dir);
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return Vec::new();
    };
    let _ = conn.busy_timeout(Duration::from_secs(5));
    let Ok(mut stmt) = conn.prepare(
        "SELECT transition FROM history WHERE file_id =
            (SELECT MAX(id) FROM files WHERE name = ?1) ORDER BY id",
    ) else {
        return Vec::new();
    };
    let rows = stmt.query_map([name], |r| r.get::<_, String>(0));
    rows.map(|rows| rows.flatten().collect())
        .unwrap_or_default()
}

/// Waits until the history of the newest file named `name` has `transition` (e.g.
/// "finished", "requeued", "delivery_closed") `times` times.
pub async fn wait_for_transition(env: &TestEnv, name: &str, transition: &str, times: usize) {
    wait_until(
        &format!("{name}: {transition} x{times} in its history"),
        || {
            transitions_of(env, name)
                .iter()
                .filter(|t| t.as_str() == transition)
                .count()
                >= times
        },
    )
    .await
}

/// A sets inbox's KYC rules (as in the README): a selfie with liveness, a passport matched
/// against it.
pub const KYC: &str = r#"sets = true
[[inbox.documents]]
match = "*selfie*"
type = "SELFIE"
key = "SELFIE1"
stages = ["biometry_liveness"]

[[inbox.documents]]
match = "*"
type = "PASSPORT"
key = "PASSPORT1"
stages = ["biometry_match"]
relation = { biometry_match = "SELFIE1" }
"#;

/// Gives the first inbox a ledger (`outcomes.jsonl` in the test's folder, returned) and a
/// signed webhook nobody answers (port 9 is closed): its first try fails, the second too
/// (`delivery_retry = ["0s", "50ms"]`), then it is given up.
pub fn ledger_and_a_dead_webhook(env: &mut TestEnv) -> PathBuf {
    let ledger = env.dir.path().join("outcomes.jsonl");
    let secret_file = env.dir.path().join("webhook-secret");
    std::fs::write(&secret_file, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").unwrap();
    env.inboxes[0].extra = format!(
        "ledger = \"{}\"\nwebhook = \"http://127.0.0.1:9/hook\"\nwebhook_secret_file = \"{}\"\ndelivery_retry = [\"0s\", \"50ms\"]\n",
        ledger.display(),
        secret_file.display()
    );
    ledger
}

/// Writes a journal row as the daemon's recorder would have left it at a crash: the claim,
/// then each event stepped by the lifecycle and its change stored. Its row id.
pub async fn journal_row(
    journal: &beorg_hotfolder::store::journal::Journal,
    claim: beorg_hotfolder::store::journal::NewClaim,
    events: Vec<beorg_hotfolder::lifecycle::Event>,
) -> i64 {
    use beorg_hotfolder::lifecycle::{Effect, FileState, Payload, step};
    let payload = Payload::of_inbox(claim.set);
    let mut state = FileState::claimed(payload, claim.size, claim.detected_at, claim.claimed_at);
    let id = journal.insert_claimed(claim).await.unwrap();
    for event in events {
        let (next, effects) = step(&state, event, std::time::SystemTime::now()).unwrap();
        for effect in effects {
            if let Effect::Store(change) = effect {
                journal.record(id, *change).await.unwrap();
            }
        }
        state = next;
    }
    id
}

/// The lifecycle's "finishing" event for a file going to `final_path` with `sidecar`.
pub fn finishing(final_path: &Path, sidecar: &str) -> beorg_hotfolder::lifecycle::Event {
    beorg_hotfolder::lifecycle::Event::Finishing {
        final_path: final_path.to_path_buf(),
        sidecar_path: layout::sidecar_path(final_path),
        sidecar: sidecar.to_string(),
    }
}
