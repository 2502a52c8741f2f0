//! Issue 11 §4: outcomes in done/, review/ and failed/ whose sidecar is older than the
//! inbox's `retention` are deleted with their sidecar; young ones and anything the daemon
//! did not write stay.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::helpers::*;
use beorg_hotfolder::sidecar::Status;

/// Sets `path`'s modification time `age` in the past.
fn age(path: &Path, age: Duration) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - age)
        .unwrap();
}

#[tokio::test]
async fn retention_deletes_old_outcomes_and_keeps_young_ones() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    let review = env.review_folder(0, true);
    env.inboxes[0].extra.push_str("retention = \"2h\"\n");
    let port = free_port();
    env.extra_tables = format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n");
    // Real outcomes, written by the daemon: one each in done/, review/ and failed/.
    let daemon = env.start();
    env.drop_scan(0, "old.png", 1400, None);
    env.drop_scan(0, "young.png", 1401, None);
    env.drop_scan(0, "old-review.png", 1402, Some("BEORG-EMU:verification=7"));
    env.drop_scan(0, "old-failed.png", 1403, Some("BEORG-EMU:broken"));
    env.drop_bytes(0, "stranger.png", b"not ours");
    for name in ["old.png", "young.png"] {
        assert_eq!(env.sidecar(0, name).await.status, Status::Done);
    }
    assert_eq!(
        sidecar_in(&review, "old-review.png").await.status,
        Status::Review
    );
    assert_eq!(
        env.sidecar(0, "old-failed.png").await.status,
        Status::Failed
    );
    env.sidecar(0, "stranger.png").await;
    daemon.stop().await;

    let inbox = env.inboxes[0].clone();
    let sidecar = |dir: &Path, name: &str| layout::sidecar_path(&dir.join(name));
    age(
        &sidecar(&inbox.done, "old.png"),
        Duration::from_secs(3 * 3600),
    );
    age(
        &sidecar(&review, "old-review.png"),
        Duration::from_secs(3 * 3600),
    );
    age(
        &sidecar(&inbox.failed, "old-failed.png"),
        Duration::from_secs(3 * 3600),
    );
    age(
        &sidecar(&inbox.done, "young.png"),
        Duration::from_secs(3600),
    );
    // An old file of someone else's in done/, and an old lone sidecar: not pairs of ours.
    std::fs::write(inbox.done.join("notes.txt"), b"keep me").unwrap();
    age(
        &inbox.done.join("notes.txt"),
        Duration::from_secs(30 * 24 * 3600),
    );
    std::fs::rename(
        inbox.failed.join("stranger.png"),
        env.dir.path().join("stranger.png"),
    )
    .unwrap();
    age(
        &sidecar(&inbox.failed, "stranger.png"),
        Duration::from_secs(3 * 3600),
    );

    // The sweep runs at start.
    let daemon = env.start();
    wait_until("old outcomes are deleted", || {
        !inbox.done.join("old.png").exists()
            && !review.join("old-review.png").exists()
            && !inbox.failed.join("old-failed.png").exists()
    })
    .await;
    for (dir, name) in [
        (&inbox.done, "old.png"),
        (&review, "old-review.png"),
        (&inbox.failed, "old-failed.png"),
    ] {
        assert!(!sidecar(dir, name).exists(), "{name}'s sidecar goes too");
    }
    assert_eq!(
        files_in(&inbox.done),
        ["notes.txt", "young.png", "young.png.json"]
    );
    assert_eq!(
        files_in(&inbox.failed),
        ["stranger.png.json"],
        "a lone sidecar stays"
    );
    let samples = scrape_metrics(port).await;
    let path = inbox.path.display().to_string();
    assert_eq!(
        metric_value(
            &samples,
            "beorg_retention_deleted_total",
            &[("inbox", path.as_str())]
        ),
        Some(3.0)
    );
    daemon.stop().await;
}
