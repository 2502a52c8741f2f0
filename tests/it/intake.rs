//! Intake that survives real scanners and shares, and preflight before paying.

use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant, SystemTime};

use beorg_hotfolder::sidecar::{ErrorKind, Status};
use rustix::process::Signal;

use crate::helpers::*;

// ---------------------------------------------------------------------------------------
// Writers

#[tokio::test]
async fn a_preallocating_writer_that_keeps_mtime_still_is_not_taken_half_filled() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let daemon = env.start();
    let full = beorg_emulator::samples::page_png(51, None);
    let path = env.inboxes[0].path.join("smb.png");
    // The full size is reserved first; the content arrives in four parts, 300 ms apart (twice
    // the 150 ms settle), and the mtime is set back after each write, as an SMB client that
    // only updates it on close would leave it. Size and mtime alone say "settled".
    let stamp = SystemTime::now() - Duration::from_secs(60);
    let mut file = std::fs::File::create(&path).unwrap();
    file.set_len(full.len() as u64).unwrap();
    file.set_modified(stamp).unwrap();
    let part = full.len().div_ceil(4);
    for (n, chunk) in full.chunks(part).enumerate() {
        // Not a wait: the writer's pause between parts, the behaviour under test.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            env.submits().is_empty(),
            "taken before part {n} was written"
        );
        file.seek(SeekFrom::Start((n * part) as u64)).unwrap();
        file.write_all(chunk).unwrap();
        file.set_modified(stamp).unwrap();
    }
    drop(file);
    let sidecar = env.sidecar(0, "smb.png").await;
    assert_eq!(sidecar.status, Status::Done);
    assert_eq!(env.submits()[0].image_sha256, vec![sha256_hex(&full)]);
    daemon.stop().await;
}

#[tokio::test]
async fn a_file_renamed_into_place_from_a_partial_name_is_taken_once_complete() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let daemon = env.start();
    let full = beorg_emulator::samples::page_png(52, None);
    let partial = env.inboxes[0].path.join("upload.png.part");
    std::fs::write(&partial, &full[..full.len() / 2]).unwrap();
    holds_for(
        ".part files are never taken",
        Duration::from_millis(500),
        || env.submits().is_empty(),
    )
    .await;
    assert!(env.submits().is_empty(), ".part files are never taken");
    std::fs::write(&partial, &full).unwrap();
    std::fs::rename(&partial, env.inboxes[0].path.join("upload.png")).unwrap();
    assert_eq!(env.sidecar(0, "upload.png").await.status, Status::Done);
    assert_eq!(env.submits()[0].image_sha256, vec![sha256_hex(&full)]);
    daemon.stop().await;
}

#[tokio::test]
async fn a_file_closed_by_a_local_writer_goes_without_waiting_the_whole_settle_time() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    env.inboxes[0].extra = "settle = \"10s\"".into();
    let mut daemon = env.spawn_binary(&[]);
    daemon.logged("watching for events", 1).await;
    let written = Instant::now();
    std::fs::write(
        env.inboxes[0].path.join("closed.png"),
        beorg_emulator::samples::page_png(53, None),
    )
    .unwrap();
    wait_until("submitted", || !env.submits().is_empty()).await;
    let waited = env.submits()[0].at - written;
    assert!(
        waited < Duration::from_secs(5),
        "waited {waited:?}, settle is 10 s"
    );
    daemon.stop().await;
}

// ---------------------------------------------------------------------------------------
// Inboxes that come and go

#[tokio::test]
async fn an_inbox_created_after_start_is_attached_and_the_others_work_meanwhile() {
    let mut env = TestEnv::new(&["PASSPORT", "SNILS"]).await;
    let late = env.inboxes[1].path.clone();
    std::fs::remove_dir(&late).unwrap();
    env.inboxes[1].extra = "poll_interval = \"200ms\"".into();
    let mut daemon = env.spawn_binary(&[]);
    env.drop_scan(0, "now.png", 54, None);
    assert_eq!(env.sidecar(0, "now.png").await.status, Status::Done);
    std::fs::create_dir(&late).unwrap();
    daemon.logged("inbox folder is there now", 1).await;
    env.drop_scan(1, "late.png", 55, None);
    assert_eq!(env.sidecar(1, "late.png").await.status, Status::Done);
    daemon.stop().await;
}

#[tokio::test]
async fn an_inbox_deleted_and_recreated_is_watched_again() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    env.inboxes[0].extra = "watch = \"events\"\npoll_interval = \"200ms\"".into();
    env.daemon_extra.push("rescan_interval = \"1h\"".into());
    let mut daemon = env.spawn_binary(&[]);
    env.drop_scan(0, "before.png", 56, None);
    env.sidecar(0, "before.png").await;
    let inbox = env.inboxes[0].path.clone();
    std::fs::remove_dir_all(&inbox).unwrap();
    daemon.logged("inbox folder does not exist", 1).await;
    std::fs::create_dir(&inbox).unwrap();
    daemon.logged("inbox folder is there now", 1).await;
    env.drop_scan(0, "after.png", 57, None);
    assert_eq!(env.sidecar(0, "after.png").await.status, Status::Done);
    daemon.stop().await;
}

#[tokio::test]
async fn a_polled_inbox_finds_files_without_events() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    env.inboxes[0].extra = "watch = \"poll\"\npoll_interval = \"200ms\"".into();
    env.daemon_extra.push("rescan_interval = \"1h\"".into());
    let mut daemon = env.spawn_binary(&[]);
    env.drop_scan(0, "polled.png", 58, None);
    assert_eq!(env.sidecar(0, "polled.png").await.status, Status::Done);
    daemon.signal(Signal::TERM);
    daemon.wait(Duration::from_secs(5)).await;
    assert!(
        daemon.stderr().contains("polling every 200ms"),
        "{}",
        daemon.stderr()
    );
}

#[tokio::test]
async fn auto_mode_uses_events_on_a_local_disk_and_says_so() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let mut daemon = env.spawn_binary(&[]);
    env.drop_scan(0, "local.png", 59, None);
    env.sidecar(0, "local.png").await;
    daemon.signal(Signal::TERM);
    daemon.wait(Duration::from_secs(5)).await;
    assert!(
        daemon
            .stderr()
            .contains("watching for events (local filesystem)"),
        "{}",
        daemon.stderr()
    );
}

#[tokio::test]
async fn lost_events_from_a_queue_overflow_trigger_a_rescan() {
    // It lowers a kernel-wide limit: no other test's daemon starts meanwhile.
    let mut env = TestEnv::owning_kernel_settings(&["PASSPORT"]).await;
    // Events only; the periodic rescan is an hour away: only the overflow rescan can find
    // files whose events were dropped.
    env.inboxes[0].extra = "watch = \"events\"".into();
    env.daemon_extra.push("rescan_interval = \"1h\"".into());
    let small_queue = Sysctl::set(&env, "/proc/sys/fs/inotify/max_queued_events", "16");
    if !precondition(
        small_queue.is_some(),
        "this test lowers fs.inotify.max_queued_events and cannot write it",
        "run the tests as root (CI does)",
    ) {
        return;
    }
    let mut daemon = env.spawn_binary(&[]);
    wait_until("watching", || {
        daemon.stderr().contains("watching for events")
    })
    .await;
    drop(small_queue); // the daemon's inotify instance keeps its 16-event queue
    // Freeze the daemon so nothing drains the queue, make far more than 16 events, resume.
    daemon.signal(Signal::STOP);
    for n in 0..12 {
        env.drop_scan(0, &format!("burst-{n}.png"), 600 + n, None);
    }
    daemon.signal(Signal::CONT);
    for n in 0..12 {
        assert_eq!(
            env.sidecar(0, &format!("burst-{n}.png")).await.status,
            Status::Done
        );
    }
    daemon.signal(Signal::TERM);
    daemon.wait(Duration::from_secs(5)).await;
    assert!(
        daemon.stderr().contains("event queue overflow"),
        "{}",
        daemon.stderr()
    );
}

// ---------------------------------------------------------------------------------------
// Security at the door

#[tokio::test]
async fn a_symlink_to_a_secret_file_is_never_followed_or_uploaded() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let secret = env.dir.path().join("secret.png");
    let secret_bytes = beorg_emulator::samples::page_png(61, None);
    std::fs::write(&secret, &secret_bytes).unwrap();
    let link = env.inboxes[0].path.join("innocent.png");
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    let mut daemon = env.spawn_binary(&[]);
    env.drop_scan(0, "real.png", 62, None);
    env.sidecar(0, "real.png").await;
    let secret_sha = sha256_hex(&secret_bytes);
    holds_for(
        "the secret is never uploaded",
        Duration::from_millis(400),
        || {
            env.submits()
                .iter()
                .all(|r| !r.image_sha256.contains(&secret_sha))
        },
    )
    .await;
    daemon.signal(Signal::TERM);
    daemon.wait(Duration::from_secs(5)).await;
    assert!(
        env.submits()
            .iter()
            .all(|r| !r.image_sha256.contains(&secret_sha))
    );
    assert!(
        link.symlink_metadata().unwrap().file_type().is_symlink(),
        "left in place"
    );
    assert!(
        daemon.stderr().contains("symbolic link"),
        "{}",
        daemon.stderr()
    );
}

#[tokio::test]
async fn a_hard_link_to_a_file_outside_the_inbox_is_not_uploaded() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let outside = env.dir.path().join("payroll.png");
    let outside_bytes = beorg_emulator::samples::page_png(63, None);
    std::fs::write(&outside, &outside_bytes).unwrap();
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::hard_link(&outside, env.inboxes[0].path.join("linked.png")).unwrap();
    let daemon = env.start();
    env.drop_scan(0, "real.png", 64, None);
    env.sidecar(0, "real.png").await;
    holds_for(
        "only the real file is sent",
        Duration::from_millis(400),
        || env.submits().len() == 1,
    )
    .await;
    daemon.stop().await;
    assert_eq!(env.submits().len(), 1);
    assert!(
        env.inboxes[0].path.join("linked.png").exists(),
        "left in place"
    );
    let mode = std::fs::metadata(&outside).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600, "its mode is not changed");
}

#[tokio::test]
async fn names_in_any_language_with_spaces_and_odd_characters_are_kept_exactly() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let daemon = env.start();
    let name = "Паспорт Иванова (копия) №1 — 'скан' & ещё.png";
    env.drop_scan(0, name, 65, None);
    let s = env.sidecar(0, name).await;
    assert_eq!(s.source.name, name);
    assert_eq!(s.file, name);
    assert!(env.inboxes[0].done.join(name).exists());
    daemon.stop().await;
}

// ---------------------------------------------------------------------------------------
// Recursive inboxes and ignore patterns

#[tokio::test]
async fn a_recursive_inbox_keeps_the_subfolder_path_under_done() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    env.inboxes[0].extra = "recursive = true\nignore = [\"*.bak.png\", \"drafts/*\"]".into();
    let inbox = env.inboxes[0].path.clone();
    for dir in ["2026/11", "empty", "drafts", ".hidden"] {
        std::fs::create_dir_all(inbox.join(dir)).unwrap();
    }
    let png = |seed| beorg_emulator::samples::page_png(seed, None);
    std::fs::write(inbox.join("2026/11/a.png"), png(66)).unwrap();
    std::fs::write(inbox.join("drafts/draft.png"), png(67)).unwrap();
    std::fs::write(inbox.join(".hidden/h.png"), png(68)).unwrap();
    std::fs::write(inbox.join("old.bak.png"), png(69)).unwrap();
    let daemon = env.start();
    // A folder moved in wholesale, with a file already inside.
    let staging = env.dir.path().join("staging");
    std::fs::create_dir_all(staging.join("batch")).unwrap();
    std::fs::write(staging.join("batch/b.png"), png(70)).unwrap();
    std::fs::rename(staging.join("batch"), inbox.join("batch")).unwrap();

    let done = env.inboxes[0].done.clone();
    wait_until("both sidecars", || {
        done.join("2026/11/a.png.json").exists() && done.join("batch/b.png.json").exists()
    })
    .await;
    let s = read_sidecar(&done.join("2026/11/a.png.json"));
    assert_eq!(s.source.name, "2026/11/a.png");
    assert_eq!(s.file, "a.png");
    holds_for(
        "no ignored file is sent",
        Duration::from_millis(400),
        || env.submits().len() == 2,
    )
    .await;
    daemon.stop().await;
    assert_eq!(
        env.submits().len(),
        2,
        "drafts/, .hidden/ and *.bak.png are left alone"
    );
    for kept in ["drafts/draft.png", ".hidden/h.png", "old.bak.png"] {
        assert!(inbox.join(kept).exists(), "{kept}");
    }
    assert!(
        inbox.join("empty").is_dir() && inbox.join("2026/11").is_dir(),
        "folders stay"
    );
}

// ---------------------------------------------------------------------------------------
// Preflight

#[tokio::test]
async fn a_too_small_image_is_refused_before_paying_with_a_plain_message() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let daemon = env.start();
    env.drop_bytes(
        0,
        "thumb.png",
        &beorg_emulator::samples::sized_png(800, 600, 71, None),
    );
    let s = env.sidecar(0, "thumb.png").await;
    daemon.stop().await;
    assert_eq!(s.status, Status::Failed);
    let e = s.error.unwrap();
    assert_eq!(e.kind, ErrorKind::InvalidFile);
    assert!(e.message.contains("800 x 600"), "{}", e.message);
    assert!(env.emulator.requests().is_empty(), "no request was made");
}

#[tokio::test]
async fn preflight_warn_sends_anyway_and_off_skips_the_checks() {
    let mut env = TestEnv::new(&["PASSPORT", "SNILS"]).await;
    env.inboxes[0].extra = "preflight = \"warn\"".into();
    env.inboxes[1].extra = "preflight = \"off\"".into();
    let daemon = env.start();
    env.drop_bytes(
        0,
        "thumb.png",
        &beorg_emulator::samples::sized_png(800, 600, 72, None),
    );
    env.drop_bytes(1, "notes.txt", b"text, not a scan, but preflight is off");
    assert_eq!(env.sidecar(0, "thumb.png").await.status, Status::Done);
    env.sidecar(1, "notes.txt").await;
    daemon.stop().await;
    assert_eq!(env.submits().len(), 2);
}

#[tokio::test]
async fn a_file_that_cannot_be_claimed_stays_and_is_reported_once() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    env.inboxes[0].extra = "recursive = true".into();
    // Listed again every 300 ms: the stuck file is offered again and again.
    env.daemon_extra.push("rescan_interval = \"300ms\"".into());
    // A subfolder that is another filesystem: a claim (a rename into .beorg-work) cannot work.
    let mounted = env.inboxes[0].path.join("usb");
    let Some(_mount) = Tmpfs::mount(&mounted, "4m") else {
        return;
    };
    let mut daemon = env.spawn_binary(&[]);
    std::fs::write(
        mounted.join("stuck.png"),
        beorg_emulator::samples::page_png(99, None),
    )
    .unwrap();
    env.drop_scan(0, "fine.png", 100, None);
    env.sidecar(0, "fine.png").await;
    // Offered again every few hundred ms for a second and a half: reported once.
    holds_for("reported at most once", Duration::from_millis(1500), || {
        daemon
            .stderr()
            .matches("not claimed, left in the inbox")
            .count()
            <= 1
    })
    .await;
    daemon.signal(Signal::TERM);
    daemon.wait(Duration::from_secs(5)).await;
    let log = daemon.stderr();
    assert_eq!(
        log.matches("not claimed, left in the inbox").count(),
        1,
        "{log}"
    );
    assert!(log.contains("another filesystem"), "{log}");
    assert!(mounted.join("stuck.png").exists(), "left in place");
    assert_eq!(env.submits().len(), 1);
}
