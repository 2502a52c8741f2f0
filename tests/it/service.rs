//! Running as a service: systemd notifications, file modes under another user.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use beorg_hotfolder::sidecar::Status;
use rustix::process::Signal;

use crate::helpers::*;

#[tokio::test]
async fn systemd_hears_ready_status_watchdog_and_stopping() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let socket_path = env.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_nonblocking(true).unwrap();
    let socket_env = socket_path.to_str().unwrap().to_string();
    // WatchdogSec=400ms: pings every 200 ms.
    let mut daemon = env.spawn_binary(&[
        ("NOTIFY_SOCKET", socket_env.as_str()),
        ("WATCHDOG_USEC", "400000"),
    ]);
    let mut heard: Vec<String> = Vec::new();
    let receive = |heard: &mut Vec<String>| {
        let mut buf = [0u8; 4096];
        while let Ok(n) = socket.recv(&mut buf) {
            heard.push(String::from_utf8_lossy(&buf[..n]).trim().to_string());
        }
    };
    wait_until("READY=1", || {
        receive(&mut heard);
        heard.iter().any(|m| m == "READY=1")
    })
    .await;
    env.drop_scan(0, "s.png", 81, None);
    env.sidecar(0, "s.png").await;
    wait_until("a STATUS with the day's count", || {
        receive(&mut heard);
        heard
            .iter()
            .any(|m| m.starts_with("STATUS=") && m.contains("1 done"))
    })
    .await;
    wait_until("watchdog pings", || {
        receive(&mut heard);
        heard.iter().filter(|m| *m == "WATCHDOG=1").count() >= 3
    })
    .await;
    daemon.signal(Signal::TERM);
    assert!(daemon.wait(Duration::from_secs(5)).await.success());
    receive(&mut heard);
    assert!(heard.iter().any(|m| m == "STOPPING=1"), "{heard:?}");
    let ready_at = heard.iter().position(|m| m == "READY=1").unwrap();
    assert!(
        heard[..ready_at].iter().all(|m| m != "WATCHDOG=1"),
        "no ping before READY: {heard:?}"
    );
}

#[tokio::test]
async fn an_original_owned_by_another_user_still_ends_up_private_and_ours() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let nobody = 65534;
    // The service user (nobody) owns the scan folders and its state; the scan itself was
    // written by someone else (root, as Samba would write as its user), world-readable.
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for dir in [
        &env.inboxes[0].path,
        &env.inboxes[0].done,
        &env.inboxes[0].failed,
        &env.state_dir,
    ] {
        std::fs::create_dir_all(dir).unwrap();
        rustix::fs::chown(
            dir,
            Some(rustix::fs::Uid::from_raw(nobody)),
            Some(rustix::fs::Gid::from_raw(nobody)),
        )
        .unwrap();
    }
    for parent in ["in", "done", "failed"] {
        std::fs::set_permissions(
            env.dir.path().join(parent),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    let config = env.write_config();
    let scan = env.inboxes[0].path.join("samba.png");
    std::fs::write(&scan, beorg_emulator::samples::page_png(82, None)).unwrap();
    std::fs::set_permissions(&scan, std::fs::Permissions::from_mode(0o644)).unwrap();
    let log = env.dir.path().join("nobody.log");
    let mut daemon = tokio::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_beorg-hotfolder"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("setpriv runs");
    let s = env.sidecar(0, "samba.png").await;
    assert_eq!(s.status, Status::Done);
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(daemon.id().unwrap() as i32).unwrap(),
        Signal::TERM,
    );
    let _ = daemon.wait().await;
    let placed = std::fs::metadata(env.inboxes[0].done.join("samba.png")).unwrap();
    assert_eq!(
        placed.permissions().mode() & 0o777,
        0o640,
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert_eq!(
        placed.uid(),
        nobody,
        "rewritten as the service user's own file"
    );
    let sidecar = std::fs::metadata(env.inboxes[0].done.join("samba.png.json")).unwrap();
    assert_eq!(sidecar.permissions().mode() & 0o777, 0o640);
    let state = std::fs::metadata(&env.state_dir).unwrap();
    assert_eq!(
        state.permissions().mode() & 0o777,
        0o700,
        "state folder private"
    );
}

#[tokio::test]
async fn sighup_applies_a_good_config_and_refuses_a_bad_one() {
    let mut env = TestEnv::new(&["PASSPORT", "SNILS"]).await;
    let snils = env.inboxes.remove(1);
    let passport = env.inboxes[0].clone();
    // A passport result takes 1.5 s to be asked for: it is in flight across the reload.
    env.inboxes[0].extra = "first_poll = \"1500ms\"\nmax_poll_interval = \"1500ms\"".into();
    let mut daemon = env.spawn_binary(&[]);
    wait_until("running", || daemon.stderr().contains("running")).await;
    env.drop_scan(0, "inflight.png", 91, None);
    wait_until("submitted", || env.submits().len() == 1).await;

    // New config: SNILS added, PASSPORT removed, a slower request rate.
    env.inboxes = vec![snils];
    env.api("requests_per_second = 4.0");
    let config = env.write_config();
    daemon.signal(Signal::HUP);
    wait_until("reloaded", || daemon.stderr().contains("config reloaded")).await;
    let reloaded = std::time::Instant::now();
    assert!(daemon.child.try_wait().unwrap().is_none(), "still running");
    // The removed inbox's file in flight finishes; the inbox itself is no longer watched.
    let done = passport.done.join("inflight.png.json");
    wait_until("the in-flight file finished", || done.exists()).await;
    std::fs::write(
        passport.path.join("ignored-now.png"),
        beorg_emulator::samples::page_png(93, None),
    )
    .unwrap();
    // The added inbox works.
    env.drop_scan(0, "new.png", 92, None);
    assert_eq!(env.sidecar(0, "new.png").await.status, Status::Done);
    assert!(
        passport.path.join("ignored-now.png").exists(),
        "a removed inbox is not watched"
    );
    // The new rate applies: requests after the reload are at least 250 ms apart.
    let after: Vec<_> = env
        .emulator
        .requests()
        .into_iter()
        .filter(|r| r.at > reloaded)
        .collect();
    assert!(
        after.len() >= 3,
        "{} requests after the reload",
        after.len()
    );
    for pair in after.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(237),
            "{gap:?} apart after the reload"
        );
    }

    // A bad config is refused and the running one stays.
    std::fs::write(&config, "this is [[not toml").unwrap();
    daemon.signal(Signal::HUP);
    wait_until("refused", || {
        daemon.stderr().contains("the new config is refused")
    })
    .await;
    env.drop_scan(0, "still.png", 94, None);
    assert_eq!(env.sidecar(0, "still.png").await.status, Status::Done);
    daemon.signal(Signal::TERM);
    assert!(daemon.wait(Duration::from_secs(5)).await.success());
}

/// `name{labels} value` lines of a Prometheus text scrape, `#` lines skipped.
/// The value of one series, written as Prometheus prints it (`name{k="v",...}`).
fn sample(all: &[Sample], series: &str) -> f64 {
    let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
    let labels: Vec<(&str, &str)> = labels
        .trim_end_matches('}')
        .split(',')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k, v.trim_matches('"'))
        })
        .collect();
    metric_value(all, name, &labels).unwrap_or_else(|| panic!("no sample {series} in {all:?}"))
}

#[tokio::test]
async fn the_metrics_endpoint_counts_files_requests_and_latency() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    env.extra_tables = format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n");
    let daemon = env.start();
    env.drop_scan(0, "ok.png", 95, None);
    env.drop_scan(0, "bad.png", 96, Some("BEORG-EMU:broken"));
    env.sidecar(0, "ok.png").await;
    env.sidecar(0, "bad.png").await;
    let inbox = env.inboxes[0].path.display().to_string();
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    // A file is counted just after its sidecar appears: scrape until both are.
    let (client, url) = (&client, &url);
    let all = wait_for_async(
        "both files counted",
        Duration::from_millis(50),
        || async move {
            let scrape = client.get(format!("{url}/metrics")).send().await.unwrap();
            assert_eq!(scrape.status(), 200);
            let all = parse_metrics(&scrape.text().await.unwrap());
            let counted = all.iter().filter(|s| s.name == "beorg_files_total").count();
            (counted == 2).then_some(all)
        },
    )
    .await;
    assert_eq!(
        sample(
            &all,
            &format!("beorg_files_total{{inbox=\"{inbox}\",outcome=\"done\"}}")
        ),
        1.0
    );
    assert_eq!(
        sample(
            &all,
            &format!("beorg_files_total{{inbox=\"{inbox}\",outcome=\"broken\"}}")
        ),
        1.0
    );
    assert_eq!(
        sample(
            &all,
            "beorg_api_requests_total{endpoint=\"submit\",status=\"200\"}"
        ),
        2.0
    );
    assert!(
        sample(
            &all,
            "beorg_api_requests_total{endpoint=\"result\",status=\"200\"}"
        ) >= 2.0
    );
    assert_eq!(
        sample(
            &all,
            &format!("beorg_file_latency_seconds_count{{inbox=\"{inbox}\"}}")
        ),
        2.0
    );
    assert_eq!(sample(&all, "beorg_account_paused"), 0.0);
    let health = client.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    daemon.stop().await;
}

#[tokio::test]
async fn logs_fit_journald_and_log_shippers() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    // Under journald: no timestamps of our own (journald adds them), no colour codes.
    let mut daemon = env.spawn_binary(&[("JOURNAL_STREAM", "8:12345")]);
    env.drop_scan(0, "j.png", 97, None);
    env.sidecar(0, "j.png").await;
    daemon.signal(Signal::TERM);
    daemon.wait(Duration::from_secs(5)).await;
    let text = daemon.stderr();
    assert!(text.contains("submitted"), "{text}");
    assert!(!text.contains('\u{1b}'), "ANSI codes in a non-terminal log");
    for line in text.lines() {
        assert!(
            !line.starts_with("20"),
            "a timestamp of our own under journald: {line}"
        );
    }
    // --log-format json: one JSON object per line.
    let mut daemon = env.spawn_binary_with(&["--log-format", "json"], &[]);
    env.drop_scan(0, "k.png", 98, None);
    env.sidecar(0, "k.png").await;
    daemon.signal(Signal::TERM);
    daemon.wait(Duration::from_secs(5)).await;
    let text = daemon.stderr();
    let mut submitted = false;
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        submitted |= v["fields"]["message"] == "submitted";
    }
    assert!(submitted, "{text}");
}
