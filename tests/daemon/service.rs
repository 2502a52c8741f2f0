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
    std::fs::write(&scan, beorg_hotfolder::samples::page_png(82, None)).unwrap();
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
        beorg_hotfolder::samples::page_png(93, None),
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
