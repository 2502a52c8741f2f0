//! Issue 11 §2: results a person must check go to the inbox's review folder with the reasons
//! in plain words, or to done/ with the reasons listed when no review folder is set; the
//! review folder is never created by the daemon, is checked by `check`, and is counted by
//! `status` and the metrics. Each reason is asked of the emulator with a marker.

use std::time::Duration;

use crate::helpers::*;
use beorg_hotfolder::sidecar::Status;

#[tokio::test]
async fn each_review_reason_sends_the_result_to_review() {
    let mut env = TestEnv::new(&["PASSPORT", "SELFIE"]).await;
    env.inboxes[0].extra.push_str("min_confidence = 0.9\n");
    let passports = env.review_folder(0, true);
    let selfies = env.review_folder(1, true);
    let port = free_port();
    env.extra_tables = format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n");
    let daemon = env.start();
    env.drop_scan(0, "clean.png", 1300, None);
    env.drop_scan(0, "expired.png", 1301, Some("BEORG-EMU:verification=7"));
    env.drop_scan(0, "mrz.png", 1302, Some("BEORG-EMU:verification=2"));
    env.drop_scan(0, "low.png", 1303, Some("BEORG-EMU:low-confidence"));
    env.drop_scan(1, "mask.png", 1304, Some("BEORG-EMU:not-live"));
    env.drop_scan(1, "stranger.png", 1305, Some("BEORG-EMU:other-face"));

    let clean = env.sidecar(0, "clean.png").await;
    assert_eq!(clean.status, Status::Done);
    assert!(clean.review.is_empty());
    let expected = [
        (
            0,
            &passports,
            "expired.png",
            "The passport has expired (verification status 7).",
        ),
        (
            0,
            &passports,
            "mrz.png",
            "The machine-readable zone (MRZ) disagrees with the passport's fields (verification status 2).",
        ),
        (
            0,
            &passports,
            "low.png",
            "The field LastName was read with confidence 0.42, below min_confidence 0.9.",
        ),
        (
            1,
            &selfies,
            "mask.png",
            "The liveness check failed: the photo may not show a live person (probability ",
        ),
        (
            1,
            &selfies,
            "stranger.png",
            "The face match failed: the faces may be of different people (similarity ",
        ),
    ];
    for (i, folder, name, reason) in expected {
        let sidecar = sidecar_in(folder, name).await;
        assert_eq!(sidecar.status, Status::Review, "{name}");
        assert_eq!(sidecar.review.len(), 1, "{name}: {:?}", sidecar.review);
        assert!(
            sidecar.review[0].starts_with(reason),
            "{name}: {:?}",
            sidecar.review
        );
        assert!(
            folder.join(name).exists(),
            "the original beside its sidecar"
        );
        assert!(!env.inboxes[i].done.join(name).exists());
        assert!(sidecar.result.is_some() && sidecar.error.is_none());
    }
    // Counted by status and the metrics.
    let inbox = env.inboxes[0].path.display().to_string();
    wait_until("status counts the review outcomes", || {
        env.status()["inboxes"][0]["review_today"] == 3
    })
    .await;
    assert_eq!(env.status()["inboxes"][0]["done_today"], 1);
    let samples = scrape_metrics(port).await;
    let files = |outcome| {
        metric_value(
            &samples,
            "beorg_files_total",
            &[("inbox", inbox.as_str()), ("outcome", outcome)],
        )
    };
    assert_eq!((files("review"), files("done")), (Some(3.0), Some(1.0)));
    daemon.stop().await;
}

#[tokio::test]
async fn without_a_review_folder_the_result_goes_to_done_with_its_reasons() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let daemon = env.start();
    env.drop_scan(
        0,
        "expired.png",
        1310,
        Some("BEORG-EMU:verification=7 BEORG-EMU:low-confidence"),
    );
    let sidecar = env.sidecar(0, "expired.png").await;
    daemon.stop().await;
    assert_eq!(sidecar.status, Status::Done);
    // No min_confidence: the low confidence is not a reason.
    assert_eq!(
        sidecar.review,
        ["The passport has expired (verification status 7)."]
    );
    assert!(env.inboxes[0].done.join("expired.png").exists());
}

#[tokio::test]
async fn a_missing_review_folder_is_not_created_the_file_waits_and_check_names_it() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    let review = env.review_folder(0, false);
    let (code, out) = run_bin(&["check"], &env.write_config(), &[]);
    assert_eq!(code, Some(1), "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("inbox[0].review:"))
        .unwrap_or_else(|| panic!("check names the review folder:\n{out}"));
    assert!(line.contains("does not exist"), "{out}");
    let daemon = env.start();
    env.drop_scan(0, "expired.png", 1320, Some("BEORG-EMU:verification=7"));
    let work = layout::work_dir(&env.inboxes[0].path);
    wait_until("the file is claimed", || !files_in(&work).is_empty()).await;
    holds_for(
        "the review folder is not created",
        Duration::from_millis(800),
        || !review.exists() && !env.inboxes[0].done.join("expired.png").exists(),
    )
    .await;
    std::fs::create_dir_all(&review).unwrap();
    let sidecar = sidecar_in(&review, "expired.png").await;
    assert_eq!(sidecar.status, Status::Review);
    daemon.stop().await;
}
