//! Issue 8, findings 2, 5, 8, 11 and 12: one daemon per state folder, no token in config
//! errors, a bad base_url refused and a panic never leaving a dead task behind, no forged log
//! lines from file names.

use std::process::Command;
use std::time::Duration;

use beorg_hotfolder::sidecar::Status;
use rustix::process::Signal;

use crate::helpers::*;

/// The daemon's "started" log line.
const RUNNING: &str = concat!("beorg-hotfolder ", env!("CARGO_PKG_VERSION"), " running");

// ---------------------------------------------------------------------------------------
// Finding 2

/// Two `run`s on one state_dir gave two schedulers, re-sent each other's files and filed
/// paid results as duplicates. Now the second refuses at once, naming the first's pid;
/// `status` and `check` work beside the running daemon; after kill -9 the kernel has released
/// the lock and a new daemon starts and finishes the work.
#[tokio::test]
async fn a_second_daemon_on_the_same_state_dir_exits_at_once_naming_the_first() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let mut first = env.spawn_binary(&[]);
    env.drop_scan(0, "one.png", 201, None);
    assert_eq!(env.sidecar(0, "one.png").await.status, Status::Done);
    let pid = first.child.id().expect("first runs").to_string();

    let mut second = env.spawn_binary(&[]);
    let status = second.wait(Duration::from_secs(10)).await;
    assert!(!status.success(), "the second daemon must exit non-zero");
    let log = second.stderr();
    assert!(
        log.contains(&format!("pid {pid}")) && log.contains("systemctl stop"),
        "{log}"
    );
    assert!(!log.contains(RUNNING), "the second one never ran: {log}");

    // status and check beside the running daemon.
    let config = env.write_config();
    let (code, out) = run_bin(&["status", "--json"], &config, &[]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run_bin(&["check"], &config, &[]);
    assert_eq!(code, Some(0), "{out}");

    // kill -9: the lock goes with the process.
    first.signal(Signal::KILL);
    first.wait(Duration::from_secs(5)).await;
    let mut third = env.spawn_binary(&[]);
    env.drop_scan(0, "two.png", 202, None);
    assert_eq!(env.sidecar(0, "two.png").await.status, Status::Done);
    third.signal(Signal::TERM);
    assert!(third.wait(Duration::from_secs(5)).await.success());
    assert_eq!(env.emulator.accepted_images(), 2, "each file paid once");
}

// ---------------------------------------------------------------------------------------
// Finding 5

/// The token lines that made toml quote the line (and serde the value) in its error.
const BAD_TOKEN_LINES: [(&str, &str); 3] = [
    ("token = SECRET-h3-unquoted", "SECRET-h3"),
    ("token = 987654321987", "987654321987"),
    ("token = \"SECRET-h3-unterminated", "SECRET-h3"),
];

/// `run`, `check` and a SIGHUP reload printed the offending TOML line, token included.
#[tokio::test]
async fn no_config_error_of_run_check_or_reload_shows_the_token() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let good = env.config_text();
    let token_line = format!("token = \"{TOKEN}\"");
    assert!(good.contains(&token_line));
    let bad_path = env.dir.path().join("bad.toml");
    for (line, secret) in BAD_TOKEN_LINES {
        std::fs::write(&bad_path, good.replace(&token_line, line)).unwrap();
        for args in [&["run"][..], &["check"][..], &["check", "--online"][..]] {
            let (code, out) = run_bin(args, &bad_path, &[("RUST_LOG", "trace")]);
            assert_ne!(code, Some(0), "{args:?} {line}: {out}");
            assert!(out.contains("token"), "the error names the key: {out}");
            assert!(!out.contains(secret), "{args:?} {line} leaks: {out}");
        }
    }

    // The reload: the running daemon is told to read a config with each bad token line.
    let mut daemon = env.spawn_binary(&[("RUST_LOG", "trace")]);
    let config = env.dir.path().join("config.toml");
    wait_until("the daemon runs", || daemon.stderr().contains(RUNNING)).await;
    for (n, (line, _)) in BAD_TOKEN_LINES.iter().enumerate() {
        std::fs::write(&config, good.replace(&token_line, line)).unwrap();
        daemon.signal(Signal::HUP);
        wait_until("the reload is refused", || {
            daemon.stderr().matches("new config is refused").count() > n
        })
        .await;
    }
    daemon.signal(Signal::TERM);
    assert!(daemon.wait(Duration::from_secs(5)).await.success());
    let log = daemon.stderr();
    for (_, secret) in BAD_TOKEN_LINES {
        assert!(!log.contains(secret), "the reload leaks: {log}");
    }
}

// ---------------------------------------------------------------------------------------
// Finding 8

/// `http://127.0.0.1:99999` passed `check`; the daemon started, and the resumed poll task
/// panicked (InvalidPort) while the daemon went on looking healthy.
#[tokio::test]
async fn a_bad_base_url_is_refused_by_check_and_run_naming_the_key() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    for url in ["http://127.0.0.1:99999", "http://", "http://exa mple.com"] {
        env.base_url = url.to_string();
        let config = env.write_config();
        let (code, out) = run_bin(&["check"], &config, &[]);
        assert_eq!(code, Some(1), "check accepts {url}: {out}");
        assert!(out.contains("api.base_url"), "{out}");
        let (code, out) = run_bin(&["run"], &config, &[]);
        assert_ne!(code, Some(0), "run starts with {url}: {out}");
        assert!(out.contains("api.base_url"), "{out}");
    }
}

/// Env var that makes the test below its own child process.
const PANIC_CHILD: &str = "BEORG_TEST_PANIC_CHILD";

/// A panic in any task must stop the process with a non-zero status after logging it
/// (systemd restarts it), not leave a dead task in a daemon that looks healthy. The test runs
/// itself again as a child process with the binary's panic hook installed: the real daemon
/// runs, a contained panic (a crashed preflight check) is only logged, then a task panics.
#[tokio::test]
async fn a_panic_in_any_task_stops_the_process_with_a_non_zero_status() {
    if std::env::var_os(PANIC_CHILD).is_some() {
        return panicking_child().await;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "hardening::a_panic_in_any_task_stops_the_process_with_a_non_zero_status",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PANIC_CHILD, "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("the daemon carries on") && text.contains("contained-h3-marker"),
        "the contained panic is logged: {text}"
    );
    assert!(
        text.contains("panicked at") && text.contains("task-h3-marker"),
        "the task's panic is logged: {text}"
    );
    assert_eq!(
        out.status.code(),
        Some(beorg_hotfolder::logging::PANIC_EXIT_CODE),
        "{text}"
    );
}

async fn panicking_child() {
    beorg_hotfolder::logging::init(beorg_hotfolder::logging::LogFormat::Text);
    beorg_hotfolder::logging::exit_on_panic();
    let contained = tokio::task::spawn_blocking(|| {
        beorg_hotfolder::logging::contained(|| panic!("contained-h3-marker"))
    })
    .await;
    assert!(
        contained.is_err(),
        "the contained panic reached its JoinError"
    );
    let env = TestEnv::new(&["PASSPORT"]).await;
    let _daemon = env.start();
    env.drop_scan(0, "alive.png", 801, None);
    assert_eq!(env.sidecar(0, "alive.png").await.status, Status::Done);
    tokio::spawn(async { panic!("task-h3-marker") });
    // Without the hook the task dies alone and this process carries on and exits 0. Not a
    // wait: the time the hook has to end this process (the parent fails on exit status 0).
    tokio::time::sleep(Duration::from_secs(5)).await;
}

// ---------------------------------------------------------------------------------------
// Finding 11

/// `requests_per_second = 1e-20` passed `check` and panicked at start; by SIGHUP it would
/// have killed the scheduler task and stopped every file silently. Now `check` and `run`
/// refuse it naming the key and the range, and a reload to it is refused while the running
/// daemon goes on sending.
#[tokio::test]
async fn a_tiny_rate_is_refused_by_check_run_and_reload() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    let mut daemon = env.spawn_binary(&[]);
    wait_until("the daemon runs", || daemon.stderr().contains(RUNNING)).await;
    env.api("requests_per_second = 1e-20");
    let config = env.dir.path().join("config.toml");
    std::fs::write(&config, env.config_text()).unwrap();
    for args in [&["check"][..], &["run"][..]] {
        let (code, out) = run_bin(args, &config, &[]);
        assert_ne!(code, Some(0), "{args:?}: {out}");
        assert!(
            out.contains("api.requests_per_second") && out.contains("allowed 0.001 to 1000"),
            "{args:?}: {out}"
        );
    }
    daemon.signal(Signal::HUP);
    wait_until("the reload is refused", || {
        daemon.stderr().contains("new config is refused")
    })
    .await;
    assert!(
        daemon.stderr().contains("allowed 0.001 to 1000"),
        "{}",
        daemon.stderr()
    );
    env.drop_scan(0, "after.png", 1101, None);
    assert_eq!(env.sidecar(0, "after.png").await.status, Status::Done);
    daemon.signal(Signal::TERM);
    assert!(daemon.wait(Duration::from_secs(5)).await.success());
    assert!(!daemon.stderr().contains("panicked"), "{}", daemon.stderr());
}

// ---------------------------------------------------------------------------------------
// Finding 12

/// A file name with a newline and `ERROR … (HTTP 402)` printed forged ERROR lines.
#[tokio::test]
async fn file_names_cannot_forge_log_lines() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let mut daemon = env.spawn_binary(&[("RUST_LOG", "debug")]);
    let name = "bad\nFORGED ERROR the Beorg account refused (HTTP 402)\r\u{1b}[2K.png";
    env.drop_bytes(0, name, b"not an image at all");
    let sidecar = env.sidecar(0, name).await;
    assert_eq!(sidecar.status, Status::Failed);
    assert_eq!(sidecar.source.name, name, "the sidecar keeps the real name");
    daemon.signal(Signal::TERM);
    assert!(daemon.wait(Duration::from_secs(5)).await.success());
    let log = daemon.stderr();
    assert!(
        log.contains("bad\\nFORGED"),
        "the name is logged, escaped: {log}"
    );
    for line in log.lines() {
        assert!(!line.starts_with("FORGED"), "forged line: {line}\n{log}");
        assert!(!line.contains('\r') && !line.contains('\u{1b}'), "{line:?}");
    }
}
