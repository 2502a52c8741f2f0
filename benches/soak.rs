//! The soak (issue 23, goal 6), printed and checked: `cargo bench --bench soak` (about 20
//! minutes; `SOAK_MINUTES=3` runs a shorter one with proportionally fewer inputs; needs
//! `redis-server` in PATH).
//!
//! The release daemon (a child process) works against the emulator on loopback at high limits
//! (40 requests/s, 3,000 documents/min) with its budget shared through a real `redis-server`,
//! while the bench:
//! - drops 10,000 single files and 500 document sets (2 or 3 files each, built under a hidden
//!   name and renamed in) evenly over the first 85 % of the run, every content distinct (each
//!   a valid PNG with its own text chunk), plus 20 exact copies of earlier files (answered
//!   from the earlier document, never paid again);
//! - has the emulator answer 5 % of all requests 500/503 (seeded), and refuse every submit
//!   with 402 (no money) for a minute at 10 % and at 77.5 % of the run (in the first and the
//!   last quarter, whose peaks are compared);
//! - delivers every outcome to a webhook receiver (a real HTTP server here, checking the
//!   Standard Webhooks signature as the README's receiver does) that is down (connection
//!   refused) for 5 minutes from 40 % of the run, and to a ledger file;
//! - restarts Redis (killed, state lost) at 50 %, sends SIGHUP every 30 s (the config
//!   rewritten with one harmless key toggled), and kills the daemon with SIGKILL every 3
//!   minutes, starting it again at once (as systemd would).
//!
//! Every minute one line: elapsed, inputs dropped/finished, requests, 5xx injected, restarts,
//! the daemon's RSS and open fds, the journal's size, deliveries waiting. After 85 % no more
//! inputs come; after 100 % the chaos stops and the bench waits (10 minutes at most) for
//! everything to drain, then stops the daemon with SIGTERM and checks: 0 lost (every input's
//! sidecar in done/, review/ or failed/, nothing in the inboxes or work folders), 0 paid twice
//! (per content, submits the emulator accepted; a re-send it refused 409 is printed apart),
//! every outcome delivered (receiver and ledger), memory and fds flat (the last quarter's peak
//! within 10 % of the first quarter's), deliveries drained. Exits 1 if a check fails.
//! SIGKILL times are fixed (every 3 minutes), the moments inside a request are not: they fall
//! where the daemon happens to be. Scaled runs (`SOAK_MINUTES`) scale every period but the
//! SIGHUP's.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use beorg_emulator::{Emulator, EmulatorConfig, Endpoint, samples};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

#[allow(dead_code)] // the helpers the other benchmarks use too
mod common;
use common::{Redis, daemon_binary, emulator_with, scratch};

/// The webhook signing secret (Standard Webhooks form).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// High limits: the API is not what holds the daemon back.
const REQUESTS_PER_SECOND: f64 = 40.0;
const DOCUMENTS_PER_MINUTE: f64 = 3000.0;
/// Share of requests the emulator answers 5xx.
const SERVER_ERROR_RATE: f64 = 0.05;
/// How often memory and fds are sampled, and the drain is checked.
const SAMPLE_EVERY: Duration = Duration::from_secs(2);

/// When what happens, for a run of `total`.
struct Schedule {
    total: Duration,
    inputs_until: Duration,
    files: usize,
    sets: usize,
    duplicates: usize,
    no_money: [(Duration, Duration); 2],
    webhook_down: (Duration, Duration),
    redis_restart_at: Duration,
    hup_every: Duration,
    kill_every: Duration,
    drain_deadline: Duration,
}

impl Schedule {
    fn from_env() -> Schedule {
        let minutes: f64 = std::env::var("SOAK_MINUTES")
            .ok()
            .and_then(|m| m.parse().ok())
            .unwrap_or(20.0);
        let scale = minutes / 20.0;
        let total = Duration::from_secs_f64(minutes * 60.0);
        let at = |share: f64| total.mul_f64(share);
        let no_money = Duration::from_secs(60).mul_f64(scale.min(1.0));
        let webhook_down = Duration::from_secs(300).mul_f64(scale);
        Schedule {
            total,
            inputs_until: at(0.85),
            files: (10_000.0 * scale).ceil() as usize,
            sets: (500.0 * scale).ceil() as usize,
            duplicates: ((20.0 * scale).ceil() as usize).max(2),
            // One in the first quarter, one in the last, so the two quarters whose peaks are
            // compared each hold a pause and the backlog it leaves.
            no_money: [
                (at(0.1), at(0.1) + no_money),
                (at(0.775), at(0.775) + no_money),
            ],
            webhook_down: (at(0.4), at(0.4) + webhook_down),
            redis_restart_at: at(0.5),
            hup_every: Duration::from_secs(30),
            kill_every: Duration::from_secs(180).mul_f64(scale),
            drain_deadline: Duration::from_secs(600),
        }
    }
}

fn main() {
    let schedule = Schedule::from_env();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let failures = runtime.block_on(soak(&schedule));
    if !failures.is_empty() {
        println!("\nsoak FAILED:");
        for failure in &failures {
            println!("  - {failure}");
        }
        std::process::exit(1);
    }
    println!("\nsoak passed");
}

/// One input: a single file, a copy of an earlier file, or a set.
#[derive(Clone)]
enum Input {
    File { name: String, bytes: Arc<Vec<u8>> },
    Set { name: String, files: Vec<Vec<u8>> },
}

impl Input {
    fn name(&self) -> &str {
        match self {
            Input::File { name, .. } | Input::Set { name, .. } => name,
        }
    }
    fn is_set(&self) -> bool {
        matches!(self, Input::Set { .. })
    }
}

/// Where everything lives.
struct Layout {
    base: PathBuf,
}

impl Layout {
    fn inbox(&self, set: bool) -> PathBuf {
        self.base.join("in").join(kind(set))
    }
    fn outcome_dirs(&self, set: bool) -> [PathBuf; 3] {
        ["done", "review", "failed"].map(|role| self.base.join(role).join(kind(set)))
    }
    fn state(&self) -> PathBuf {
        self.base.join("state")
    }
    fn ledger(&self) -> PathBuf {
        self.base.join("ledger").join("soak.jsonl")
    }
    fn config(&self) -> PathBuf {
        self.base.join("config.toml")
    }
    fn journal(&self) -> PathBuf {
        self.state().join("journal.sqlite")
    }
}

fn kind(set: bool) -> &'static str {
    if set { "sets" } else { "files" }
}

async fn soak(schedule: &Schedule) -> Vec<String> {
    let dir = scratch();
    let layout = Layout {
        base: dir.path().to_path_buf(),
    };
    let mut redis = Redis::start();
    let emulator = emulator_with(EmulatorConfig {
        time_scale: 0.005,
        server_error_rate: SERVER_ERROR_RATE,
        server_error_seed: 23,
        ..EmulatorConfig::default()
    })
    .await;
    let receiver = Receiver::new();
    let hook_port = receiver.start(0).await;
    let redis_port = redis.port;
    let write_config = |hup: usize| {
        let text = config_text(&layout, &emulator.base_url(), redis_port, hook_port, hup);
        std::fs::write(layout.config(), text).unwrap();
    };
    write_config(0);
    let inputs = inputs(schedule);
    println!(
        "soak: {:?}; {} files ({} of them copies of earlier ones) and {} sets over {:?}; limits {REQUESTS_PER_SECOND} requests/s, {DOCUMENTS_PER_MINUTE} documents/min; {:.0} % of requests 5xx; daemon {}",
        schedule.total,
        schedule.files + schedule.duplicates,
        schedule.duplicates,
        schedule.sets,
        schedule.inputs_until,
        SERVER_ERROR_RATE * 100.0,
        daemon_binary().display()
    );
    let mut daemon = Daemon::start(&layout);
    let started = Instant::now();
    let dropped = Arc::new(AtomicUsize::new(0));
    let writer = spawn_writer(&layout, inputs.clone(), schedule.inputs_until, &dropped);

    let mut samples: Vec<Sample> = Vec::new();
    let mut events = Events::default();
    let mut next_sample = Duration::ZERO;
    let mut next_minute = Duration::from_secs(60);
    let mut drained_at = None;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t = started.elapsed();
        if t < schedule.total {
            chaos(
                schedule,
                t,
                &mut events,
                &mut daemon,
                &emulator,
                &receiver,
                hook_port,
                &mut redis,
                &write_config,
            )
            .await;
        }
        if t >= next_sample {
            next_sample += SAMPLE_EVERY;
            samples.push(Sample::take(t, daemon.pid()));
            if t >= schedule.total {
                if drained(&layout, &inputs, &receiver) {
                    drained_at = Some(t);
                    break;
                }
                if t >= schedule.total + schedule.drain_deadline {
                    break;
                }
            }
        }
        if t >= next_minute {
            next_minute += Duration::from_secs(60);
            print_minute(
                t,
                &layout,
                &dropped,
                &inputs,
                &emulator,
                &daemon,
                samples.iter().rev().find(|s| s.rss_kb > 0),
            );
        }
    }
    writer.join().unwrap();
    let end = started.elapsed();
    print_minute(
        end,
        &layout,
        &dropped,
        &inputs,
        &emulator,
        &daemon,
        samples.last(),
    );
    let restarts = daemon.restarts;
    daemon.stop();
    println!(
        "\nfinished at {end:.0?}: {}; {restarts} restarts after SIGKILL, {} SIGHUPs, Redis restarted {}x, 402 windows {}, webhook receiver down {}x",
        match drained_at {
            Some(at) => format!(
                "drained {:.0?} after the chaos stopped",
                at - schedule.total
            ),
            None => format!("NOT drained within {:?}", schedule.drain_deadline),
        },
        events.hups,
        events.redis_restarts,
        events.no_money_windows,
        events.webhook_downs,
    );
    let mut failures = Vec::new();
    check_lost(&layout, &inputs, &mut failures);
    check_paid(&emulator, &inputs, &mut failures);
    check_delivered(&layout, &inputs, &receiver, &mut failures);
    check_flat(schedule, &samples, &mut failures);
    check_journal(&layout, &mut failures);
    print_logged(&layout);
    emulator.shutdown();
    if !failures.is_empty() {
        println!("kept for a look: {}", dir.keep().display());
    }
    failures
}

/// How many WARN and ERROR lines the daemons logged, and the most frequent (timestamps cut).
fn print_logged(layout: &Layout) {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let logs = std::fs::read_dir(layout.base.join("logs"))
        .into_iter()
        .flatten()
        .flatten();
    for log in logs {
        let text = std::fs::read_to_string(log.path()).unwrap_or_default();
        for line in text.lines() {
            let Some(at) = line.find("WARN").or_else(|| line.find("ERROR")) else {
                continue;
            };
            let message: String = line[at..].chars().take(110).collect();
            *counts.entry(message).or_default() += 1;
        }
    }
    let mut top: Vec<_> = counts.into_iter().collect();
    top.sort_by_key(|entry| std::cmp::Reverse(entry.1));
    let total: usize = top.iter().map(|(_, n)| n).sum();
    println!("the daemons logged {total} WARN/ERROR lines; the most frequent:");
    for (message, n) in top.iter().take(8) {
        println!("  {n:>5}  {message}");
    }
}

/// What the chaos has done so far.
#[derive(Default)]
struct Events {
    hups: usize,
    kills: usize,
    redis_restarts: usize,
    no_money_windows: usize,
    no_money_on: bool,
    webhook_downs: usize,
    webhook_down: bool,
}

/// Applies whatever the schedule says is due at `t`.
#[allow(clippy::too_many_arguments)]
async fn chaos(
    schedule: &Schedule,
    t: Duration,
    events: &mut Events,
    daemon: &mut Daemon,
    emulator: &Emulator,
    receiver: &Receiver,
    hook_port: u16,
    redis: &mut Redis,
    write_config: &impl Fn(usize),
) {
    let in_window = schedule.no_money.iter().any(|(a, b)| t >= *a && t < *b);
    if in_window != events.no_money_on {
        events.no_money_on = in_window;
        emulator.set_no_money(in_window);
        if in_window {
            events.no_money_windows += 1;
        }
        println!(
            "{:>6.0?} 402 window {}",
            t,
            if in_window { "on" } else { "off" }
        );
    }
    let (down_from, down_to) = schedule.webhook_down;
    let down = t >= down_from && t < down_to;
    if down != events.webhook_down {
        events.webhook_down = down;
        if down {
            events.webhook_downs += 1;
            receiver.stop();
        } else {
            receiver.start(hook_port).await;
        }
        println!(
            "{t:>6.0?} webhook receiver {}",
            if down { "down" } else { "up" }
        );
    }
    if events.redis_restarts == 0 && t >= schedule.redis_restart_at {
        events.redis_restarts += 1;
        redis.restart();
        println!("{t:>6.0?} redis-server killed and started again (its state lost)");
    }
    if t >= schedule.hup_every * (events.hups as u32 + 1) {
        events.hups += 1;
        write_config(events.hups);
        daemon.hup();
    }
    if t >= schedule.kill_every * (events.kills as u32 + 1) {
        events.kills += 1;
        daemon.kill_and_restart();
        println!(
            "{t:>6.0?} SIGKILL, started again (restart {})",
            daemon.restarts
        );
    }
}

// ---------------------------------------------------------------------------------------
// Inputs

/// The inputs in the order they are dropped: sets spread evenly among the files, and each
/// copy a few hundred files after its original.
fn inputs(schedule: &Schedule) -> Vec<Input> {
    let bases: Vec<Vec<u8>> = (0..4).map(|s| samples::page_png(s, None)).collect();
    let mut out = Vec::new();
    let set_every = schedule.files / schedule.sets.max(1);
    let copy_every = schedule.files / schedule.duplicates.max(1);
    let mut originals: Vec<Arc<Vec<u8>>> = Vec::new();
    let (mut sets, mut copies) = (0, 0);
    for n in 0..schedule.files {
        let bytes = Arc::new(variant(&bases[n % bases.len()], &format!("file {n}")));
        originals.push(Arc::clone(&bytes));
        out.push(Input::File {
            name: format!("f-{n:05}.png"),
            bytes,
        });
        if n % set_every == set_every - 1 && sets < schedule.sets {
            let count = 2 + sets % 2;
            let files = (0..count)
                .map(|j| variant(&bases[j % bases.len()], &format!("set {sets} page {j}")))
                .collect();
            out.push(Input::Set {
                name: format!("set-{sets:04}"),
                files,
            });
            sets += 1;
        }
        if n % copy_every == copy_every / 2 && copies < schedule.duplicates && n > 0 {
            let original = n.saturating_sub(200);
            out.push(Input::File {
                name: format!("copy-{copies:03}-of-f-{original:05}.png"),
                bytes: Arc::clone(&originals[original]),
            });
            copies += 1;
        }
    }
    out
}

/// `base` (a PNG) with a text chunk saying `text` after its header: a valid PNG of its own
/// content, made without encoding pixels again.
fn variant(base: &[u8], text: &str) -> Vec<u8> {
    const AFTER_IHDR: usize = 8 + 25;
    let mut data = b"Comment\0".to_vec();
    data.extend_from_slice(text.as_bytes());
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    let mut typed = b"tEXt".to_vec();
    typed.extend_from_slice(&data);
    chunk.extend_from_slice(&typed);
    chunk.extend_from_slice(&crc32fast::hash(&typed).to_be_bytes());
    let mut out = base[..AFTER_IHDR].to_vec();
    out.extend_from_slice(&chunk);
    out.extend_from_slice(&base[AFTER_IHDR..]);
    out
}

/// Drops the inputs evenly over `until`, each under a hidden name first, then renamed in.
fn spawn_writer(
    layout: &Layout,
    inputs: Vec<Input>,
    until: Duration,
    dropped: &Arc<AtomicUsize>,
) -> std::thread::JoinHandle<()> {
    let (files_inbox, sets_inbox) = (layout.inbox(false), layout.inbox(true));
    let dropped = Arc::clone(dropped);
    std::thread::spawn(move || {
        let started = Instant::now();
        let count = inputs.len();
        for (i, input) in inputs.into_iter().enumerate() {
            let due = until.mul_f64(i as f64 / count as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                // Pacing the writer itself, not waiting on the daemon.
                std::thread::sleep(wait);
            }
            match input {
                Input::File { name, bytes } => {
                    let temp = files_inbox.join(format!(".incoming-{name}"));
                    std::fs::write(&temp, &*bytes).unwrap();
                    std::fs::rename(&temp, files_inbox.join(&name)).unwrap();
                }
                Input::Set { name, files } => {
                    let hidden = sets_inbox.join(format!(".building-{name}"));
                    std::fs::create_dir(&hidden).unwrap();
                    for (j, bytes) in files.iter().enumerate() {
                        std::fs::write(hidden.join(format!("page-{}.png", j + 1)), bytes).unwrap();
                    }
                    std::fs::rename(&hidden, sets_inbox.join(&name)).unwrap();
                }
            }
            dropped.fetch_add(1, Ordering::Relaxed);
        }
    })
}

fn config_text(layout: &Layout, url: &str, redis_port: u16, hook_port: u16, hup: usize) -> String {
    let base = layout.base.display();
    for set in [false, true] {
        std::fs::create_dir_all(layout.inbox(set)).unwrap();
        for dir in layout.outcome_dirs(set) {
            std::fs::create_dir_all(dir).unwrap();
        }
    }
    std::fs::create_dir_all(layout.ledger().parent().unwrap()).unwrap();
    let secret = layout.base.join("webhook-secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    // The harmless change a SIGHUP reloads: the longest poll interval, 2 s or 3 s.
    let max_poll = 2 + hup % 2;
    let inbox = |set: bool| {
        let [done, review, failed] = layout.outcome_dirs(set).map(|d| d.display().to_string());
        format!(
            "\n[[inbox]]\npath = \"{}\"\ntype = \"PASSPORT\"\ndone = \"{done}\"\nreview = \"{review}\"\nfailed = \"{failed}\"\n{}",
            layout.inbox(set).display(),
            if set { "sets = true\n" } else { "" }
        )
    };
    format!(
        "[api]\nbase_url = \"{url}\"\nproject_id = \"U_RATE_2\"\nmachine_uid = \"emulator-machine\"\ntoken = \"bench\"\nrequests_per_second = {REQUESTS_PER_SECOND:?}\ndocuments_per_minute = {DOCUMENTS_PER_MINUTE:?}\naccount_retry = \"10s\"\n\n[daemon]\nstate_dir = \"{base}/state\"\n\n[budget]\nredis = \"redis://127.0.0.1:{redis_port}/0\"\nkey = \"beorg:soak\"\n\n[defaults]\npreflight = \"off\"\nsettle = \"300ms\"\nfirst_poll = \"200ms\"\nmax_poll_interval = \"{max_poll}s\"\nwebhook = \"http://127.0.0.1:{hook_port}/hook\"\nwebhook_secret_file = \"{}\"\nledger = \"{}\"\ndelivery_retry = [\"0s\", \"5s\", \"15s\", \"30s\", \"1m\", \"1m\", \"1m\", \"1m\", \"1m\", \"1m\", \"1m\", \"1m\"]\n{}{}",
        secret.display(),
        layout.ledger().display(),
        inbox(false),
        inbox(true),
    )
}

// ---------------------------------------------------------------------------------------
// The daemon, Redis and the webhook receiver

/// The release daemon as a child process, its stderr in `logs/daemon-<n>.log`.
struct Daemon {
    child: Child,
    config: PathBuf,
    logs: PathBuf,
    restarts: usize,
}

impl Daemon {
    fn start(layout: &Layout) -> Daemon {
        let logs = layout.base.join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let config = layout.config();
        let child = spawn_daemon(&config, &logs, 0);
        Daemon {
            child,
            config,
            logs,
            restarts: 0,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn hup(&self) {
        let pid = rustix::process::Pid::from_raw(self.pid() as i32).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::HUP);
    }

    fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.restarts += 1;
        self.child = spawn_daemon(&self.config, &self.logs, self.restarts);
    }

    fn stop(self) {
        common::stop(self.child);
    }
}

fn spawn_daemon(config: &Path, logs: &Path, n: usize) -> Child {
    let log = File::create(logs.join(format!("daemon-{n}.log"))).unwrap();
    Command::new(daemon_binary())
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// What the receiver saw: the outcomes (by the input's name) with a valid signature, and the
/// requests refused for a bad signature or an old timestamp.
#[derive(Default)]
struct Seen {
    requests: usize,
    refused: usize,
    outcomes: HashMap<String, usize>,
}

/// A Standard Webhooks receiver on loopback that can be stopped and started again on its port.
#[derive(Clone)]
struct Receiver {
    seen: Arc<Mutex<Seen>>,
    stop: Arc<Mutex<Option<CancellationToken>>>,
}

impl Receiver {
    fn new() -> Receiver {
        Receiver {
            seen: Arc::default(),
            stop: Arc::default(),
        }
    }

    /// Serves on `port` (0: a free one); returns the port.
    async fn start(&self, port: u16) -> u16 {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("the receiver binds");
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(Arc::clone(&self.seen));
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.cancelled().await })
                .await
        });
        *self.stop.lock().unwrap() = Some(stop);
        port
    }

    /// Stops listening (connections are refused from now on).
    fn stop(&self) {
        if let Some(stop) = self.stop.lock().unwrap().take() {
            stop.cancel();
        }
    }

    fn outcomes(&self) -> HashSet<String> {
        self.seen.lock().unwrap().outcomes.keys().cloned().collect()
    }
}

async fn receive(
    State(seen): State<Arc<Mutex<Seen>>>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (id, timestamp) = (header("webhook-id"), header("webhook-timestamp"));
    let mut seen = seen.lock().unwrap();
    seen.requests += 1;
    let fresh = timestamp
        .parse::<u64>()
        .is_ok_and(|ts| now_unix().abs_diff(ts) <= 300);
    if !fresh || !signature_valid(&id, &timestamp, &body, &header("webhook-signature")) {
        seen.refused += 1;
        return StatusCode::BAD_REQUEST;
    }
    match outcome_name(&body) {
        Some(name) => {
            *seen.outcomes.entry(name).or_default() += 1;
            StatusCode::OK
        }
        None => {
            seen.refused += 1;
            StatusCode::BAD_REQUEST
        }
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The README's receiver check: HMAC-SHA256 over "id.timestamp.body" with the decoded secret,
/// compared with each `v1,` signature of the header.
fn signature_valid(id: &str, timestamp: &str, body: &str, header: &str) -> bool {
    let key = BASE64
        .decode(SECRET.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    let expected = BASE64.encode(mac.finalize().into_bytes());
    header
        .split(' ')
        .any(|s| s.strip_prefix("v1,") == Some(expected.as_str()))
}

/// The input a message is about: its sidecar's `file` (a single file's name, a set's folder
/// name).
fn outcome_name(body: &str) -> Option<String> {
    let message: serde_json::Value = serde_json::from_str(body).ok()?;
    Some(message["data"]["file"].as_str()?.to_string())
}

// ---------------------------------------------------------------------------------------
// Figures

/// The daemon's memory and fds at one moment.
struct Sample {
    at: Duration,
    rss_kb: u64,
    fds: usize,
}

impl Sample {
    fn take(at: Duration, pid: u32) -> Sample {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss_kb = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse().ok())
            .unwrap_or(0);
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
        Sample { at, rss_kb, fds }
    }
}

fn print_minute(
    t: Duration,
    layout: &Layout,
    dropped: &AtomicUsize,
    inputs: &[Input],
    emulator: &Emulator,
    daemon: &Daemon,
    sample: Option<&Sample>,
) {
    let requests = emulator.requests();
    let errors = requests.iter().filter(|r| r.status >= 500).count();
    let finished = finished_count(layout);
    let (waiting, given_up) = deliveries(layout).unwrap_or((u64::MAX, u64::MAX));
    let (rss, fds) = sample.map_or((0.0, 0), |s| (s.rss_kb as f64 / 1024.0, s.fds));
    println!(
        "{:>5.1} min  dropped {:>5}/{}  finished {:>5}  requests {:>6}  5xx {:>4}  restarts {:>2}  RSS {rss:>5.1} MB  fds {fds:>3}  journal {:>6.2} MB  deliveries waiting {waiting} given up {given_up}",
        t.as_secs_f64() / 60.0,
        dropped.load(Ordering::Relaxed),
        inputs.len(),
        finished,
        requests.len(),
        errors,
        daemon.restarts,
        journal_bytes(layout) as f64 / 1e6,
    );
}

/// Sidecars in the outcome folders.
fn finished_count(layout: &Layout) -> usize {
    [false, true]
        .iter()
        .flat_map(|set| layout.outcome_dirs(*set))
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .count()
}

/// The journal with its WAL.
fn journal_bytes(layout: &Layout) -> u64 {
    ["journal.sqlite", "journal.sqlite-wal"]
        .iter()
        .filter_map(|name| std::fs::metadata(layout.state().join(name)).ok())
        .map(|m| m.len())
        .sum()
}

/// Deliveries waiting and given up, read from the journal read-only.
fn deliveries(layout: &Layout) -> Option<(u64, u64)> {
    let conn = rusqlite::Connection::open_with_flags(
        layout.journal(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .ok()?;
    conn.busy_timeout(Duration::from_secs(5)).ok()?;
    conn.query_row(
        "SELECT COALESCE(SUM(state = 'waiting'), 0), COALESCE(SUM(state = 'given_up'), 0) FROM deliveries",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .ok()
}

/// Every input has its sidecar, the inboxes are empty, no delivery waits, and the receiver
/// and the ledger have every outcome.
fn drained(layout: &Layout, inputs: &[Input], receiver: &Receiver) -> bool {
    if finished_count(layout) < inputs.len() || !leftovers(layout).is_empty() {
        return false;
    }
    if deliveries(layout).is_none_or(|(waiting, _)| waiting > 0) {
        return false;
    }
    let (hooked, ledger) = (receiver.outcomes(), ledger_outcomes(layout));
    inputs
        .iter()
        .all(|i| hooked.contains(i.name()) && ledger.contains(i.name()))
}

/// Anything left in an inbox or its work folder.
fn leftovers(layout: &Layout) -> Vec<PathBuf> {
    let mut left = Vec::new();
    for set in [false, true] {
        let inbox = layout.inbox(set);
        for dir in [inbox.clone(), inbox.join(".beorg-work")] {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if entry.file_name() != ".beorg-work" {
                    left.push(entry.path());
                }
            }
        }
    }
    left
}

/// The inputs the ledger has a line for (lines cut by a crash skipped, as a reader does).
fn ledger_outcomes(layout: &Layout) -> HashSet<String> {
    std::fs::read_to_string(layout.ledger())
        .unwrap_or_default()
        .lines()
        .filter_map(outcome_name)
        .collect()
}

// ---------------------------------------------------------------------------------------
// Checks

fn check_lost(layout: &Layout, inputs: &[Input], failures: &mut Vec<String>) {
    let mut by_folder: BTreeMap<String, usize> = BTreeMap::new();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut lost = Vec::new();
    for input in inputs {
        let found = layout
            .outcome_dirs(input.is_set())
            .into_iter()
            .find_map(|dir| {
                let sidecar = dir.join(format!("{}.json", input.name()));
                let text = std::fs::read_to_string(&sidecar).ok()?;
                dir.join(input.name()).exists().then_some((dir, text))
            });
        match found {
            Some((dir, text)) => {
                let folder = dir.parent().unwrap().file_name().unwrap();
                *by_folder
                    .entry(folder.to_string_lossy().into_owned())
                    .or_default() += 1;
                let sidecar: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                if let Some(kind) = sidecar["error"]["kind"].as_str() {
                    *kinds
                        .entry(format!("{kind} ({})", input.name()))
                        .or_default() += 1;
                }
            }
            None => lost.push(input.name().to_string()),
        }
    }
    let left = leftovers(layout);
    println!(
        "lost: {} of {} inputs (outcomes: {by_folder:?}); left in inboxes or work folders: {}",
        lost.len(),
        inputs.len(),
        left.len()
    );
    if !kinds.is_empty() {
        let shown: Vec<_> = kinds.keys().take(20).collect();
        println!("  failed kinds (first 20): {shown:?}");
    }
    if !lost.is_empty() {
        failures.push(format!(
            "{} inputs lost (no sidecar and original in done/, review/ or failed/), e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(10)]
        ));
    }
    if !left.is_empty() {
        failures.push(format!(
            "{} entries left in inboxes or work folders, e.g. {:?}",
            left.len(),
            &left[..left.len().min(10)]
        ));
    }
}

/// Per content (the submit's image hashes), the submits the emulator accepted.
fn check_paid(emulator: &Emulator, inputs: &[Input], failures: &mut Vec<String>) {
    let content_of = |hashes: &[String]| {
        let mut hashes = hashes.to_vec();
        hashes.sort();
        hashes.join("+")
    };
    let copies: HashSet<String> = inputs
        .iter()
        .filter(|i| i.name().starts_with("copy-"))
        .filter_map(|i| match i {
            Input::File { bytes, .. } => Some(format!("{:x}", Sha256::digest(&***bytes))),
            Input::Set { .. } => None,
        })
        .collect();
    let submits: Vec<_> = emulator
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == Endpoint::Submit)
        .collect();
    let mut accepted: HashMap<String, usize> = HashMap::new();
    let mut refused_409: HashMap<String, usize> = HashMap::new();
    for submit in &submits {
        let content = content_of(&submit.image_sha256);
        match submit.status {
            200 => *accepted.entry(content).or_default() += 1,
            409 => *refused_409.entry(content).or_default() += 1,
            _ => {}
        }
    }
    let twice = accepted.values().filter(|n| **n > 1).count();
    let copies_sent = refused_409.keys().filter(|c| copies.contains(*c)).count();
    let resent: usize = refused_409
        .iter()
        .filter(|(c, _)| !copies.contains(*c))
        .map(|(_, n)| n)
        .sum();
    let distinct = inputs.len() - copies.len();
    println!(
        "paid: {} submits accepted for {} distinct contents (of {distinct} distinct inputs); paid twice: {twice}; the {} exact copies: {copies_sent} sent and refused 409 (not paid), the rest answered without a request; re-sends of an accepted content refused 409 (a SIGKILL between sending and recording): {resent}",
        accepted.values().sum::<usize>(),
        accepted.len(),
        copies.len(),
    );
    let by_status = submits.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r.status).or_insert(0usize) += 1;
        m
    });
    println!("  submits by status: {by_status:?}");
    if twice > 0 {
        failures.push(format!("{twice} contents paid twice"));
    }
    if accepted.len() != distinct {
        failures.push(format!(
            "{} distinct contents paid, {distinct} distinct inputs",
            accepted.len()
        ));
    }
}

fn check_delivered(
    layout: &Layout,
    inputs: &[Input],
    receiver: &Receiver,
    failures: &mut Vec<String>,
) {
    let (hooked, ledger) = (receiver.outcomes(), ledger_outcomes(layout));
    let missing = |have: &HashSet<String>| -> Vec<String> {
        inputs
            .iter()
            .map(|i| i.name().to_string())
            .filter(|n| !have.contains(n))
            .collect()
    };
    let (no_hook, no_line) = (missing(&hooked), missing(&ledger));
    let seen = receiver.seen.lock().unwrap();
    let repeats = seen.outcomes.values().filter(|n| **n > 1).count();
    println!(
        "delivered: webhook {} of {} ({} requests, {} refused for a bad signature or timestamp, {repeats} outcomes more than once), ledger {} of {}",
        inputs.len() - no_hook.len(),
        inputs.len(),
        seen.requests,
        seen.refused,
        inputs.len() - no_line.len(),
        inputs.len()
    );
    for (what, missing) in [("webhook", &no_hook), ("ledger", &no_line)] {
        if !missing.is_empty() {
            failures.push(format!(
                "{} outcomes never reached the {what}, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(10)]
            ));
        }
    }
    if seen.refused > 0 {
        failures.push(format!(
            "{} webhook requests had a bad signature or timestamp",
            seen.refused
        ));
    }
}

/// The peak RSS and fds per quarter of the run (the drain not counted).
fn check_flat(schedule: &Schedule, samples: &[Sample], failures: &mut Vec<String>) {
    let quarter = |q: u32| {
        let (from, to) = (schedule.total * q / 4, schedule.total * (q + 1) / 4);
        let inside = samples.iter().filter(|s| s.at >= from && s.at < to);
        inside.fold((0u64, 0usize), |(rss, fds), s| {
            (rss.max(s.rss_kb), fds.max(s.fds))
        })
    };
    let peaks: Vec<(u64, usize)> = (0..4).map(quarter).collect();
    let line: Vec<String> = peaks
        .iter()
        .map(|(rss, fds)| format!("{:.1} MB / {fds} fds", *rss as f64 / 1024.0))
        .collect();
    println!("peak RSS / open fds per quarter: {}", line.join(", "));
    let (first, last) = (peaks[0], peaks[3]);
    if last.0 as f64 > first.0 as f64 * 1.1 {
        failures.push(format!(
            "memory grew: last quarter's peak {:.1} MB, first quarter's {:.1} MB",
            last.0 as f64 / 1024.0,
            first.0 as f64 / 1024.0
        ));
    }
    if last.1 as f64 > first.1 as f64 * 1.1 {
        failures.push(format!(
            "open fds grew: last quarter's peak {}, first quarter's {}",
            last.1, first.1
        ));
    }
}

fn check_journal(layout: &Layout, failures: &mut Vec<String>) {
    let (waiting, given_up) = deliveries(layout).unwrap_or((u64::MAX, u64::MAX));
    println!(
        "journal: {:.2} MB (with its WAL, after SIGTERM); deliveries waiting {waiting}, given up {given_up}",
        journal_bytes(layout) as f64 / 1e6
    );
    if waiting > 0 || given_up > 0 {
        failures.push(format!(
            "outbox not drained: {waiting} deliveries waiting, {given_up} given up"
        ));
    }
}
