//! The one integration-test binary: the real daemon (in process, or the real binary) against
//! the emulator over loopback, with real files in temp folders; `check`, the metrics
//! endpoint, preflight and the systemd unit beside it. Each test names the behaviour it pins;
//! `helpers.rs` is the environment every test uses.

mod architecture;
mod browser;
mod budget;
mod chaos;
mod check;
mod cli;
mod crash_points;
mod delivery;
mod explain;
mod finishing;
mod hardening;
mod helpers;
mod holds;
mod intake;
mod journal;
mod metrics;
mod monitoring;
mod pacing;
mod packaging;
mod paid_answers;
mod preflight;
mod projects;
mod redaction;
mod resilience;
mod results;
mod retention;
mod review;
mod review_station;
mod service;
mod sets;
mod streaming;
mod stuck;
mod systemd;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use beorg_emulator::{EmulatorConfig, Endpoint};
use beorg_hotfolder::sidecar::{ErrorKind, Status};
use helpers::*;

// ---------------------------------------------------------------------------------------
// The happy path

#[tokio::test]
async fn scans_of_several_types_become_sidecars_in_done() {
    let env = TestEnv::new(&["PASSPORT", "SNILS", "FPRN", "VNG", "OTPR"]).await;
    let daemon = env.start();
    let mut originals = Vec::new();
    for i in 0..env.inboxes.len() {
        let path = env.drop_scan(i, "scan.png", i as u64, None);
        originals.push(std::fs::read(&path).unwrap());
    }
    for (i, original) in originals.iter().enumerate() {
        let sidecar = env.sidecar(i, "scan.png").await;
        let inbox = &env.inboxes[i];
        assert_eq!(sidecar.status, Status::Done, "{}", inbox.doc_type);
        assert_eq!(sidecar.doc_type, inbox.doc_type);
        assert_eq!(sidecar.file, "scan.png");
        assert_eq!(sidecar.source.name, "scan.png");
        assert_eq!(sidecar.source.size, original.len() as u64);
        assert_eq!(
            sidecar.source.sha256.as_deref(),
            Some(sha256_hex(original).as_str())
        );
        let document_id = sidecar.document_id.clone().expect("document_id");
        let result = sidecar.result.expect("result kept");
        assert_eq!(result["document_id"], document_id.as_str());
        assert!(result["documents"].is_array(), "{result}");
        assert!(sidecar.error.is_none());
        assert!(sidecar.timestamps.submitted.is_some());
        // The original, unchanged, beside its sidecar; the inbox is empty again.
        assert_eq!(
            &std::fs::read(inbox.done.join("scan.png")).unwrap(),
            original
        );
        assert_eq!(files_in(&inbox.path), Vec::<String>::new());
    }
    // The FPRN quirk (nested data, renamed type) is kept as received.
    let fprn = env.sidecar(2, "scan.png").await.result.unwrap();
    assert_eq!(fprn["documents"][0]["type"], "PASSPORT_FPRN");
    daemon.stop().await;
}

#[tokio::test]
async fn files_waiting_before_start_are_processed() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    for n in 0..3 {
        env.drop_scan(0, &format!("backlog-{n}.png"), 100 + n, None);
    }
    let daemon = env.start();
    for n in 0..3 {
        let sidecar = env.sidecar(0, &format!("backlog-{n}.png")).await;
        assert_eq!(sidecar.status, Status::Done);
    }
    daemon.stop().await;
}

#[tokio::test]
async fn key_and_stages_from_the_inbox_reach_the_api() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    env.inboxes[0].extra = "key = \"PASSPORT1\"\nstages = [\"verification\"]".into();
    let daemon = env.start();
    env.drop_scan(0, "p.png", 7, None);
    let sidecar = env.sidecar(0, "p.png").await;
    assert_eq!(sidecar.result.unwrap()["documents"][0]["key"], "PASSPORT1");
    daemon.stop().await;
}

#[tokio::test]
async fn written_files_are_not_world_readable() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let daemon = env.start();
    let path = env.drop_scan(0, "mode.png", 8, None);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    env.sidecar(0, "mode.png").await;
    for name in ["mode.png", "mode.png.json"] {
        let mode = std::fs::metadata(env.inboxes[0].done.join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o007, 0, "{name} is world-accessible: {mode:o}");
    }
    daemon.stop().await;
}

// ---------------------------------------------------------------------------------------
// Intake

#[tokio::test]
async fn a_file_still_being_written_is_not_taken_until_it_settles() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let daemon = env.start();
    let full = beorg_emulator::samples::page_png(42, None);
    let path = env.inboxes[0].path.join("slow.png");
    // Write in 6 chunks, 100 ms apart: 600 ms in all, four times the 150 ms settle time
    // in total but never a pause as long as it.
    let chunk = full.len().div_ceil(6);
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&path).unwrap();
        for part in full.chunks(chunk) {
            file.write_all(part).unwrap();
            file.flush().unwrap();
            assert!(
                env.submits().is_empty(),
                "submitted while still being written"
            );
            // Not a wait: the slow writer's pause between chunks, the behaviour under test.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let sidecar = env.sidecar(0, "slow.png").await;
    assert_eq!(sidecar.status, Status::Done);
    let submits = env.submits();
    assert_eq!(submits.len(), 1);
    assert_eq!(
        submits[0].image_sha256,
        vec![sha256_hex(&full)],
        "the whole file was sent"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn ignored_names_and_folders_are_left_alone() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let inbox = env.inboxes[0].path.clone();
    let ignored = [
        ".hidden.png",
        "~$lock.png",
        "scan.tmp",
        "scan.part",
        "scan.partial",
        "scan.crdownload",
        "scan.swp",
        "scan.png~",
    ];
    for (n, name) in ignored.iter().enumerate() {
        std::fs::write(
            inbox.join(name),
            beorg_emulator::samples::page_png(200 + n as u64, None),
        )
        .unwrap();
    }
    std::fs::create_dir(inbox.join("subfolder")).unwrap();
    let daemon = env.start();
    env.drop_scan(0, "real.png", 300, None);
    env.sidecar(0, "real.png").await;
    // Longer than the 150 ms settle after the real file: nothing else is picked up later.
    holds_for(
        "only the real file is sent",
        Duration::from_millis(400),
        || env.submits().len() == 1,
    )
    .await;
    assert_eq!(env.submits().len(), 1);
    for name in ignored {
        assert!(inbox.join(name).exists(), "{name} was taken");
    }
    assert!(inbox.join("subfolder").is_dir());
    daemon.stop().await;
}

#[tokio::test]
async fn a_name_already_taken_in_done_gets_a_unique_variant() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let done = env.inboxes[0].done.clone();
    std::fs::write(done.join("scan.png"), b"older scan").unwrap();
    std::fs::write(done.join("scan.png.json"), b"{\"older\": true}").unwrap();
    let daemon = env.start();
    env.drop_scan(0, "scan.png", 9, None);
    let sidecar = env.sidecar(0, "scan (2).png").await;
    assert_eq!(sidecar.file, "scan (2).png");
    assert_eq!(sidecar.source.name, "scan.png");
    assert_eq!(std::fs::read(done.join("scan.png")).unwrap(), b"older scan");
    assert_eq!(
        std::fs::read(done.join("scan.png.json")).unwrap(),
        b"{\"older\": true}"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn a_done_folder_on_another_filesystem_gets_a_copy_and_the_work_file_goes() {
    use std::os::unix::fs::MetadataExt;
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    // /dev/shm is a tmpfs on Linux; the temp folder is not.
    let other = tempfile::tempdir_in("/dev/shm").expect("/dev/shm exists on Linux test machines");
    let dev = |p: &std::path::Path| std::fs::metadata(p).unwrap().dev();
    assert_ne!(
        dev(other.path()),
        dev(env.dir.path()),
        "need two filesystems for this test"
    );
    env.inboxes[0].done = other.path().to_path_buf();
    let daemon = env.start();
    let bytes = beorg_emulator::samples::page_png(21, None);
    env.drop_bytes(0, "far.png", &bytes);
    let sidecar_path = other.path().join("far.png.json");
    wait_until("sidecar on the other filesystem", || sidecar_path.exists()).await;
    assert_eq!(std::fs::read(other.path().join("far.png")).unwrap(), bytes);
    assert_eq!(
        files_in(other.path()),
        vec!["far.png", "far.png.json"],
        "no temp file left"
    );
    assert!(files_in(&layout::work_dir(&env.inboxes[0].path)).is_empty());
    daemon.stop().await;
}

#[tokio::test]
async fn a_scanner_reusing_a_name_while_the_first_file_is_in_flight_loses_nothing() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let daemon = env.start();
    // The first stays in processing for 300 ms (emulator: 3-10 s × 0.01 plus polls).
    env.drop_scan(0, "scan0001.png", 10, None);
    wait_until("first claimed", || {
        !env.inboxes[0].path.join("scan0001.png").exists()
    })
    .await;
    env.drop_scan(0, "scan0001.png", 11, None);
    let done = env.inboxes[0].done.clone();
    wait_until("both done", || {
        done.join("scan0001.png.json").exists() && done.join("scan0001 (2).png.json").exists()
    })
    .await;
    let a = read_sidecar(&done.join("scan0001.png.json"));
    let b = read_sidecar(&done.join("scan0001 (2).png.json"));
    assert_ne!(a.source.sha256, b.source.sha256);
    assert_ne!(a.document_id, b.document_id);
    daemon.stop().await;
}

// ---------------------------------------------------------------------------------------
// Outcomes

async fn single_failure(
    env: &TestEnv,
    name: &str,
    marker: Option<&str>,
) -> beorg_hotfolder::sidecar::Sidecar {
    env.drop_scan(0, name, fastrand::u64(..), marker);
    let sidecar = env.sidecar(0, name).await;
    assert_eq!(sidecar.status, Status::Failed);
    assert!(
        env.inboxes[0].failed.join(name).exists(),
        "original in failed/"
    );
    sidecar
}

#[tokio::test]
async fn a_broken_document_goes_to_failed_with_the_apis_reasons() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let daemon = env.start();
    let s = single_failure(&env, "blurred.png", Some("BEORG-EMU:broken")).await;
    let e = s.error.unwrap();
    assert_eq!(e.kind, ErrorKind::Broken);
    assert!(e.message.contains("Документ не читается"), "{}", e.message);
    assert!(s.document_id.is_some());
    assert!(s.result.is_some(), "the API's answer is kept");
    daemon.stop().await;
}

#[tokio::test]
async fn a_400_on_submit_goes_to_failed_with_status_and_message() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    env.emulator.fail_next(Endpoint::Submit, 400, 1);
    let daemon = env.start();
    let e = single_failure(&env, "bad.png", None).await.error.unwrap();
    assert_eq!(e.kind, ErrorKind::Rejected);
    assert_eq!(e.http_status, Some(400));
    assert_eq!(env.submits().len(), 1, "a 400 is not retried");
    daemon.stop().await;
}

#[tokio::test]
async fn a_413_goes_to_failed_as_too_large() {
    let env = TestEnv::with_emulator(
        &["PASSPORT"],
        EmulatorConfig {
            max_total_bytes: 20 * 1024,
            ..EmulatorConfig::default()
        },
    )
    .await;
    let daemon = env.start();
    let e = single_failure(&env, "huge.png", None).await.error.unwrap();
    assert_eq!(e.kind, ErrorKind::TooLarge);
    assert_eq!(e.http_status, Some(413));
    daemon.stop().await;
}

#[tokio::test]
async fn a_404_on_the_result_goes_to_failed_as_not_found() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let daemon = env.start();
    let s = single_failure(&env, "lost.png", Some("BEORG-EMU:lost")).await;
    let e = s.error.unwrap();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert_eq!(e.http_status, Some(404));
    assert!(s.document_id.is_some());
    daemon.stop().await;
}

#[tokio::test]
async fn a_409_from_the_api_goes_to_failed_as_duplicate() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    let bytes = beorg_emulator::samples::page_png(77, None);
    let daemon = env.start();
    env.drop_bytes(0, "first.png", &bytes);
    assert_eq!(env.sidecar(0, "first.png").await.status, Status::Done);
    daemon.stop().await;
    // A journal that never saw the first file (another server, or history pruned): the API
    // is the one to say it already has this content.
    env.state_dir = env.dir.path().join("fresh-state");
    let daemon = env.start();
    env.drop_bytes(0, "again.png", &bytes);
    let s = env.sidecar(0, "again.png").await;
    assert_eq!(s.status, Status::Failed);
    let e = s.error.unwrap();
    assert_eq!(e.kind, ErrorKind::Duplicate);
    assert_eq!(e.http_status, Some(409));
    assert!(e.message.contains("sent before"), "{}", e.message);
    daemon.stop().await;
}

#[tokio::test]
async fn server_errors_on_submit_are_retried_then_succeed() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    env.emulator.fail_next(Endpoint::Submit, 500, 1);
    env.emulator.fail_next(Endpoint::Submit, 503, 1);
    let daemon = env.start();
    env.drop_scan(0, "flaky.png", 12, None);
    assert_eq!(env.sidecar(0, "flaky.png").await.status, Status::Done);
    let statuses: Vec<u16> = env.submits().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![500, 503, 200]);
    daemon.stop().await;
}

#[tokio::test]
async fn server_errors_on_the_result_are_retried() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    env.emulator.fail_next(Endpoint::Result, 500, 3);
    let daemon = env.start();
    env.drop_scan(0, "r500.png", 13, None);
    assert_eq!(env.sidecar(0, "r500.png").await.status, Status::Done);
    let results: Vec<u16> = env
        .requests(Endpoint::Result)
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(&results[..3], &[500, 500, 500]);
    assert_eq!(results.last(), Some(&200));
    daemon.stop().await;
}

#[tokio::test]
async fn a_result_request_that_times_out_is_retried() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    env.api("request_timeout = \"300ms\"");
    env.emulator
        .delay_next(Endpoint::Result, Duration::from_millis(1500), 2);
    let daemon = env.start();
    env.drop_scan(0, "slowapi.png", 14, None);
    assert_eq!(env.sidecar(0, "slowapi.png").await.status, Status::Done);
    assert!(env.requests(Endpoint::Result).len() >= 3);
    daemon.stop().await;
}

#[tokio::test]
async fn a_submit_that_keeps_failing_gives_up_after_the_configured_attempts() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    env.api("submit_attempts = 3");
    env.emulator.fail_next(Endpoint::Submit, 500, 100);
    let daemon = env.start();
    let e = single_failure(&env, "down.png", None).await.error.unwrap();
    assert_eq!(e.kind, ErrorKind::ServerError);
    assert_eq!(e.http_status, Some(500));
    assert_eq!(env.submits().len(), 3);
    daemon.stop().await;
}

#[tokio::test]
async fn an_unreachable_api_is_a_server_error_after_retries_not_a_crash() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    env.base_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    env.api("submit_attempts = 2");
    let daemon = env.start();
    let e = single_failure(&env, "offline.png", None)
        .await
        .error
        .unwrap();
    assert_eq!(e.kind, ErrorKind::ServerError);
    assert_eq!(e.http_status, None);
    assert!(e.message.contains("connect"), "{}", e.message);
    daemon.stop().await;
}

#[tokio::test]
async fn a_result_that_is_not_json_goes_to_failed_with_the_raw_text() {
    let env = TestEnv::new(&["OTPR"]).await;
    let daemon = env.start();
    let s = single_failure(&env, "court.png", Some("BEORG-EMU:invalid-json")).await;
    assert_eq!(s.error.unwrap().kind, ErrorKind::BadResponse);
    assert!(s.result.is_none());
    assert!(s.result_raw.unwrap().contains("metadata"));
    daemon.stop().await;
}

#[tokio::test]
async fn no_result_by_the_deadline_fails_as_timeout_with_the_document_id() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    env.inboxes[0].extra = "result_timeout = \"700ms\"".into();
    let daemon = env.start();
    let s = single_failure(&env, "stuck.png", Some("BEORG-EMU:never")).await;
    let e = s.error.unwrap();
    assert_eq!(e.kind, ErrorKind::Timeout);
    let id = s.document_id.expect("document_id kept");
    assert!(e.message.contains(&id), "{}", e.message);
    daemon.stop().await;
}

#[tokio::test]
async fn an_empty_or_non_image_file_is_refused_without_a_request() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let daemon = env.start();
    env.drop_bytes(0, "notes.txt", b"meeting notes, not a scan");
    let e = env.sidecar(0, "notes.txt").await.error.unwrap();
    assert_eq!(e.kind, ErrorKind::InvalidFile);
    assert!(
        env.emulator.requests().is_empty(),
        "no request was paid for"
    );
    daemon.stop().await;
}

// ---------------------------------------------------------------------------------------
// The account

#[tokio::test]
async fn no_money_pauses_submits_without_failing_files_and_resumes_on_its_own() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    env.emulator.set_no_money(true);
    let daemon = env.start();
    env.drop_scan(0, "wait.png", 15, None);
    wait_until("a 402", || env.submits().iter().any(|r| r.status == 402)).await;
    // Paused for account_retry (400 ms): the file waits, claimed, not in failed/.
    holds_for("file not failed", Duration::from_millis(900), || {
        files_in(&env.inboxes[0].failed).is_empty()
    })
    .await;
    let tries = env.submits().len();
    assert!(
        tries <= 4,
        "a paused account is not hammered: {tries} submits in ~1 s"
    );
    env.emulator.set_no_money(false);
    assert_eq!(env.sidecar(0, "wait.png").await.status, Status::Done);
    daemon.stop().await;
}

#[tokio::test]
async fn a_401_pauses_and_fails_no_file() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    env.emulator.fail_next(Endpoint::Submit, 401, 2);
    let daemon = env.start();
    env.drop_scan(0, "auth.png", 16, None);
    assert_eq!(env.sidecar(0, "auth.png").await.status, Status::Done);
    let statuses: Vec<u16> = env.submits().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![401, 401, 200]);
    // The pause was respected between the refusals.
    let submits = env.submits();
    assert!(submits[1].at - submits[0].at >= Duration::from_millis(380));
    daemon.stop().await;
}

#[tokio::test]
async fn a_401_on_the_result_pauses_polls_too_and_fails_no_file() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    env.emulator.fail_next(Endpoint::Result, 401, 2);
    let daemon = env.start();
    env.drop_scan(0, "token.png", 20, None);
    assert_eq!(env.sidecar(0, "token.png").await.status, Status::Done);
    daemon.stop().await;
    let results = env.requests(Endpoint::Result);
    assert_eq!(results[0].status, 401);
    assert_eq!(results[1].status, 401);
    // A wrong token fails every request alike: the next result request waited out the pause.
    assert!(results[1].at - results[0].at >= Duration::from_millis(380));
    assert!(files_in(&env.inboxes[0].failed).is_empty());
}

// ---------------------------------------------------------------------------------------
// Pacing

#[tokio::test]
async fn a_burst_never_exceeds_either_rate_limit() {
    let mut env = TestEnv::new(&["PASSPORT", "SNILS"]).await;
    env.api("requests_per_second = 8.0");
    env.api("documents_per_minute = 120");
    let daemon = env.start();
    for n in 0..4 {
        env.drop_scan(0, &format!("p{n}.png"), 400 + n, None);
        env.drop_scan(1, &format!("s{n}.png"), 500 + n, None);
    }
    for n in 0..4 {
        env.sidecar(0, &format!("p{n}.png")).await;
        env.sidecar(1, &format!("s{n}.png")).await;
    }
    daemon.stop().await;
    // Nominal periods, without the daemon's 2 % margin, less 5 % for timer granularity.
    let (request_gap, submit_gap) = (
        Duration::from_millis(125 * 95 / 100),
        Duration::from_millis(500 * 95 / 100),
    );
    let all = env.emulator.requests();
    for pair in all.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= request_gap, "two requests {gap:?} apart");
    }
    let submits = env.submits();
    assert_eq!(submits.len(), 8);
    for pair in submits.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= submit_gap, "two submits {gap:?} apart");
    }
}

// ---------------------------------------------------------------------------------------
// The binary: signals, logs, config errors

#[tokio::test]
async fn the_token_appears_in_no_log_line_and_no_sidecar() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    env.api("submit_attempts = 2");
    env.emulator.fail_next(Endpoint::Submit, 401, 1);
    env.emulator.fail_next(Endpoint::Result, 500, 1);
    let mut daemon = env.spawn_binary(&[("RUST_LOG", "trace")]);
    env.drop_scan(0, "ok.png", 17, None);
    env.drop_scan(0, "broken.png", 18, Some("BEORG-EMU:broken"));
    env.sidecar(0, "ok.png").await;
    env.sidecar(0, "broken.png").await;
    // Also a transport error: the API goes away while a result is awaited.
    env.drop_scan(0, "late.png", 19, Some("BEORG-EMU:never"));
    wait_until("late submitted", || env.submits().len() >= 4).await;
    env.emulator.shutdown();
    wait_until("the transport error on late.png is logged", || {
        daemon
            .stderr()
            .lines()
            .any(|l| l.contains("late.png") && l.contains("result request failed"))
    })
    .await;
    daemon.signal(rustix::process::Signal::TERM);
    assert!(daemon.wait(Duration::from_secs(5)).await.success());
    let log = daemon.stderr();
    assert!(log.contains("submitted"), "the log is real: {log}");
    assert!(!log.contains(TOKEN), "token in the log:\n{log}");
    for dir in [&env.inboxes[0].done, &env.inboxes[0].failed] {
        for name in files_in(dir) {
            let text = std::fs::read(dir.join(&name)).unwrap();
            assert!(
                !String::from_utf8_lossy(&text).contains(TOKEN),
                "token in {name}"
            );
        }
    }
}

#[tokio::test]
async fn sigterm_mid_flight_exits_quickly_leaves_nothing_half_moved_and_a_restart_finishes() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    // The scans are made before the daemon starts: making one takes this thread, which also
    // serves the emulator, long enough on a busy machine to time out a submit (2 s).
    let page = |seed, marker| beorg_emulator::samples::page_png(seed, marker);
    let scans: Vec<_> = (0..3)
        .map(|n| (format!("t{n}.png"), page(600 + n, Some("BEORG-EMU:never"))))
        .chain([("normal.png".to_string(), page(700, None))])
        .collect();
    let mut daemon = env.spawn_binary(&[]);
    for (name, bytes) in &scans {
        env.drop_bytes(0, name, bytes);
    }
    wait_until("all submitted", || env.submits().len() >= 4).await;
    let asked = Instant::now();
    daemon.signal(rustix::process::Signal::TERM);
    let status = daemon.wait(Duration::from_secs(5)).await;
    assert!(status.success(), "exit status {status:?}");
    assert!(asked.elapsed() < Duration::from_secs(5));
    // Every file is in exactly one place: waiting in the work folder, or done with sidecar.
    let work = layout::work_dir(&env.inboxes[0].path);
    let in_work = files_in(&work).len();
    let done = files_in(&env.inboxes[0].done);
    let finished = done.iter().filter(|n| !n.ends_with(".json")).count();
    assert_eq!(
        in_work + finished,
        4,
        "work: {:?}, done: {done:?}",
        files_in(&work)
    );
    for name in done.iter().filter(|n| !n.ends_with(".json")) {
        assert!(
            done.contains(&layout::sidecar_name(name)),
            "{name} without its sidecar"
        );
    }
    assert!(!daemon.stderr().contains("panicked"));
    // A restart polls the stored document_ids: no new submit for the in-flight files.
    let submits_before = env.submits().len();
    let again = env.start();
    env.sidecar(0, "normal.png").await;
    holds_for(
        "nothing is submitted again",
        Duration::from_millis(300),
        || env.submits().len() == submits_before,
    )
    .await;
    assert_eq!(
        env.submits().len(),
        submits_before,
        "nothing was submitted twice"
    );
    again.stop().await;
}

#[tokio::test]
async fn a_bad_config_refuses_to_start_and_names_the_key() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let config = env.dir.path().join("bad.toml");
    let text = env
        .config_text()
        .replace("[defaults]\n", "[defaults]\nsetle = \"2s\"\n");
    std::fs::write(&config, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_beorg-hotfolder"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("setle"), "{stderr}");
    assert!(!stderr.contains(TOKEN));
}
