//! Issue 12: pacing at the vendor's limit. Oldest first across inboxes while bodies are
//! prepared ahead, result requests at the learned ready time (also after a restart), and an
//! idle daemon that leaves its status snapshot alone. (The limits themselves are pinned by
//! `a_burst_never_exceeds_either_rate_limit` in main.rs, unchanged.)

use std::time::{Duration, SystemTime};

use beorg_emulator::{EmulatorConfig, Endpoint};
use beorg_hotfolder::store::fsutil::sha256_hex;

use crate::helpers::*;

/// Writes `bytes` as `name` in inbox `i` with the given mtime (before the daemon starts).
fn put(env: &TestEnv, i: usize, name: &str, bytes: &[u8], mtime: SystemTime) -> String {
    let path = env.inboxes[i].path.join(name);
    std::fs::write(&path, bytes).unwrap();
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(mtime).unwrap();
    sha256_hex(bytes)
}

/// Issue 12: submits go strictly oldest first (mtime, then name) across all inboxes, also
/// when the oldest file is large and its body takes longest to prepare: the files claimed
/// after it, ready sooner, wait for it.
#[tokio::test]
async fn files_go_oldest_first_across_inboxes_also_while_bodies_are_prepared() {
    let mut env = TestEnv::new(&["PASSPORT", "SNILS"]).await;
    for inbox in &mut env.inboxes {
        inbox.extra = "preflight = \"off\"".into();
    }
    let t = SystemTime::now() - Duration::from_secs(3600);
    let s = Duration::from_secs(1);
    // The oldest is 40 MB: hashing it twice takes far longer than the small ones.
    let big: Vec<u8> = (0..40u32 << 20).map(|n| (n % 251) as u8).collect();
    let expected = [
        ("big.bin", put(&env, 1, "big.bin", &big, t)),
        ("a-tie.bin", put(&env, 1, "a-tie.bin", b"tie a", t + s)),
        ("b-tie.bin", put(&env, 0, "b-tie.bin", b"tie b", t + s)),
        ("c.bin", put(&env, 0, "c.bin", b"third", t + s * 2)),
        ("d.bin", put(&env, 1, "d.bin", b"fourth", t + s * 3)),
        ("e.bin", put(&env, 0, "e.bin", b"fifth", t + s * 4)),
    ];
    let daemon = env.start();
    wait_until("all submitted", || env.submits().len() >= expected.len()).await;
    daemon.stop().await;
    let sent: Vec<&str> = env
        .submits()
        .iter()
        .map(|r| {
            let sha = &r.image_sha256[0];
            expected
                .iter()
                .find(|(_, h)| h == sha)
                .map_or("?", |(n, _)| *n)
        })
        .collect();
    let order: Vec<&str> = expected.iter().map(|(n, _)| *n).collect();
    assert_eq!(sent, order);
}

/// Issue 12: the time results of a request take is learned from the journal, so after a
/// restart the first result request of a new document comes when such results were ready
/// (about 0.5 s here), not at `first_poll` (50 ms).
#[tokio::test]
async fn the_learned_ready_time_survives_a_restart() {
    let mut env = TestEnv::with_emulator(
        &["PASSPORT"],
        EmulatorConfig {
            // 60 s at the test environment's 1/100: every result is ready 0.6 s after its submit.
            processing: Some((60.0, 60.0)),
            ..EmulatorConfig::default()
        },
    )
    .await;
    // The first ask comes at most first_poll + max_poll_interval after the submit.
    env.inboxes[0].extra = "max_poll_interval = \"2s\"".into();
    let daemon = env.start();
    for n in 0..5 {
        let name = format!("learn-{n}.png");
        env.drop_scan(0, &name, 1200 + n, None);
        env.sidecar(0, &name).await;
    }
    daemon.stop().await;
    let daemon = env.start();
    env.drop_scan(0, "after.png", 1299, None);
    env.sidecar(0, "after.png").await;
    daemon.stop().await;
    let submit = env.submits().pop().unwrap();
    let id = submit.document_id.clone().unwrap();
    let first_ask = env
        .requests(Endpoint::Result)
        .into_iter()
        .find(|r| r.document_id.as_deref() == Some(id.as_str()))
        .unwrap();
    let after = first_ask.at - submit.at;
    assert!(
        after >= Duration::from_millis(400),
        "first result request {after:?} after the submit: the learned time was not used"
    );
}

/// Issue 12: idle, the daemon does not rewrite its status snapshot (it did every 2 s); it
/// writes it again when something happens.
#[tokio::test]
async fn an_idle_daemon_leaves_its_status_snapshot_alone() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let daemon = env.start();
    let status = env.state_dir.join(layout::STATUS_FILE);
    wait_until("first snapshot", || status.exists()).await;
    let mtime = || std::fs::metadata(&status).and_then(|m| m.modified()).ok();
    // Started: unchanged for longer than the 2 s between two snapshots, nothing is pending.
    let idle = wait_until_quiet(
        "the start's snapshots written",
        Duration::from_secs(3),
        mtime,
    )
    .await;
    holds_for(
        "snapshot untouched while idle",
        Duration::from_secs(5),
        || mtime() == idle,
    )
    .await;
    env.drop_scan(0, "wakes.png", 1301, None);
    env.sidecar(0, "wakes.png").await;
    wait_until("snapshot rewritten after the file", || mtime() != idle).await;
    daemon.stop().await;
}
