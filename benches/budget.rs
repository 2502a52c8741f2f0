//! Several servers, one account (issue 13), printed, not asserted: run
//! `cargo bench --bench budget` (needs `redis-server` in PATH).
//!
//! Three release daemons, each with its own state folder and inbox, share one request budget
//! through a real `redis-server` on loopback and send to one emulator. Two workloads:
//! 1. every daemon holds a backlog: the total throughput against the account's ceiling, and
//!    each daemon's share;
//! 2. one daemon busy, two idle: the busy one's throughput against the ceiling.
//!
//! Throughput is measured in the steady state: the submits the emulator saw in a window that
//! starts after the first submits, so the first start's full-period wait is not counted.
//! Also printed: the closest two requests and the closest two submits came (over all
//! daemons), against the limits. Limits default to 10 requests a second and 100 documents a
//! minute (the vendor's ratio of 6 requests per document, ten times faster); set
//! `BUDGET_BENCH_REAL=1` for the vendor's own 1 and 10 (a run then takes about 7 minutes).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use beorg_emulator::{Emulator, EmulatorConfig, Endpoint, RequestRecord, samples};

#[allow(dead_code)] // the helpers the other benchmarks use too
mod common;
use common::{Redis, scratch, spawn, stop};

/// The document type each daemon sends: how the emulator's log tells them apart.
const TYPES: [&str; 3] = ["PASSPORT", "SNILS", "VNG"];

struct Limits {
    requests_per_second: f64,
    documents_per_minute: f64,
    /// How long throughput is measured.
    window: Duration,
}

fn main() {
    let limits = if std::env::var_os("BUDGET_BENCH_REAL").is_some() {
        Limits {
            requests_per_second: 1.0,
            documents_per_minute: 10.0,
            window: Duration::from_secs(180),
        }
    } else {
        Limits {
            requests_per_second: 10.0,
            documents_per_minute: 100.0,
            window: Duration::from_secs(40),
        }
    };
    let redis = Redis::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!(
        "limits: {} requests/s, {} documents/min; steady-state window {:?}; ceiling {:.1} documents in the window",
        limits.requests_per_second,
        limits.documents_per_minute,
        limits.window,
        limits.documents_per_minute * limits.window.as_secs_f64() / 60.0
    );
    runtime.block_on(async {
        workload(
            &redis,
            &limits,
            "3 daemons, each with a backlog",
            [true, true, true],
            "a",
        )
        .await;
        workload(
            &redis,
            &limits,
            "1 daemon busy, 2 idle",
            [true, false, false],
            "b",
        )
        .await;
    });
}

/// Runs three daemons on one budget (`busy[i]`: daemon i has a backlog) and prints figures.
async fn workload(redis: &Redis, limits: &Limits, what: &str, busy: [bool; 3], key: &str) {
    let emulator = emulator().await;
    let backlog =
        (limits.documents_per_minute * (limits.window.as_secs_f64() + 30.0) / 60.0).ceil() as u64;
    let dirs: Vec<_> = (0..3).map(|_| scratch()).collect();
    let mut daemons: Vec<Child> = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let base = dir.path();
        let text = config_text(base, &emulator.base_url(), redis, limits, TYPES[i], key);
        if busy[i] {
            for n in 0..backlog {
                let seed = 10_000 * (i as u64 + 1) + n;
                std::fs::write(
                    base.join(format!("in/scan-{n:04}.png")),
                    samples::page_png(seed, None),
                )
                .unwrap();
            }
        }
        daemons.push(spawn(base, &text, None));
    }
    // Steady state: from the third submit on.
    let submits = |e: &Emulator| -> Vec<RequestRecord> {
        e.requests()
            .into_iter()
            .filter(|r| r.endpoint == Endpoint::Submit)
            .collect()
    };
    let started = Instant::now();
    while submits(&emulator).len() < 3 && started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let window_start = Instant::now();
    tokio::time::sleep(limits.window).await;
    let window_end = Instant::now();
    let records = emulator.requests();
    for child in daemons {
        stop(child);
    }
    emulator.shutdown();
    print_figures(what, limits, &records, busy, (window_start, window_end));
}

fn print_figures(
    what: &str,
    limits: &Limits,
    records: &[RequestRecord],
    busy: [bool; 3],
    (from, to): (Instant, Instant),
) {
    let in_window: Vec<_> = records
        .iter()
        .filter(|r| r.endpoint == Endpoint::Submit && r.at >= from && r.at < to)
        .collect();
    let ceiling = limits.documents_per_minute * (to - from).as_secs_f64() / 60.0;
    let per_daemon: Vec<usize> = TYPES
        .iter()
        .map(|t| {
            in_window
                .iter()
                .filter(|r| r.types.iter().any(|x| x == t))
                .count()
        })
        .collect();
    let closest = |endpoint: Option<Endpoint>| {
        let mut at: Vec<Instant> = records
            .iter()
            .filter(|r| endpoint.is_none_or(|e| r.endpoint == e))
            .map(|r| r.at)
            .collect();
        at.sort();
        at.windows(2).map(|w| w[1] - w[0]).min()
    };
    let over = records.iter().filter(|r| r.status == 429).count();
    println!("\n{what}:");
    println!(
        "  documents sent in the window: {} of a ceiling of {ceiling:.1} = {:.1} %",
        in_window.len(),
        100.0 * in_window.len() as f64 / ceiling
    );
    for (i, n) in per_daemon.iter().enumerate() {
        println!(
            "  daemon {i} ({}): {n} documents, {:.1} % of the ceiling",
            if busy[i] { "backlog" } else { "idle" },
            100.0 * *n as f64 / ceiling
        );
    }
    println!(
        "  closest two requests: {:?} (limit {:?}); closest two submits: {:?} (limit {:?}); 429 answers: {over}",
        closest(None).unwrap_or_default(),
        Duration::from_secs_f64(1.0 / limits.requests_per_second),
        closest(Some(Endpoint::Submit)).unwrap_or_default(),
        Duration::from_secs_f64(60.0 / limits.documents_per_minute),
    );
}

fn config_text(
    base: &Path,
    url: &str,
    redis: &Redis,
    limits: &Limits,
    doc_type: &str,
    key: &str,
) -> String {
    for role in ["in", "done", "failed"] {
        std::fs::create_dir_all(base.join(role)).unwrap();
    }
    let (rps, dpm, port) = (
        limits.requests_per_second,
        limits.documents_per_minute,
        redis.port,
    );
    let base = base.display();
    format!(
        "[api]\nbase_url = \"{url}\"\nproject_id = \"U_RATE_2\"\nmachine_uid = \"emulator-machine\"\ntoken = \"bench\"\nrequests_per_second = {rps}\ndocuments_per_minute = {dpm}\n\n[daemon]\nstate_dir = \"{base}/state\"\n\n[budget]\nredis = \"redis://127.0.0.1:{port}/0\"\nkey = \"beorg:bench-{key}\"\n\n[defaults]\npreflight = \"off\"\nsettle = \"200ms\"\nfirst_poll = \"200ms\"\nmax_poll_interval = \"2s\"\n\n[[inbox]]\npath = \"{base}/in\"\ntype = \"{doc_type}\"\ndone = \"{base}/done\"\nfailed = \"{base}/failed\"\n"
    )
}

/// The emulator at 1/100 of the vendor's processing times (results come after a few polls).
async fn emulator() -> Emulator {
    let config = EmulatorConfig {
        token: "bench".into(),
        time_scale: 0.01,
        ..EmulatorConfig::default()
    };
    Emulator::start(config, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap()
}
