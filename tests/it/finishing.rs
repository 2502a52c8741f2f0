//! Finishing under faults and after downtime (issue 8, findings 3, 4 and 9): a move to done/
//! on another filesystem whose unlink fails, a crash between the copy and the unlink, names
//! as long as the filesystem allows, and a result that became ready while the daemon was down.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use beorg_emulator::Endpoint;
use beorg_hotfolder::sidecar::Status;
use beorg_hotfolder::store::journal::Stage;
use rustix::process::Signal;

use crate::helpers::*;

/// One PASSPORT inbox whose done/ is a tmpfs of its own (another filesystem than the work
/// folder: finishing copies, then unlinks), polled 1 s after the submit.
async fn env_with_done_on_tmpfs() -> (TestEnv, Tmpfs) {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    let tmpfs = Tmpfs::mount(&env.dir.path().join("done-tmpfs"), "16m").expect(
        "mounting a tmpfs failed: this test needs root (CI runs as root); run `cargo test` as root",
    );
    env.inboxes[0].done = tmpfs.path.clone();
    env.inboxes[0].extra = "first_poll = \"1s\"\nmax_poll_interval = \"1s\"".into();
    (env, tmpfs)
}

/// Waits until the journal has the file's `document_id` (stage `submitted`): stopped from
/// here on, the daemon never sends it again.
async fn wait_submitted(env: &TestEnv) {
    wait_for_journal(&env.state_dir, "a submitted row", |rows| {
        rows.iter().any(|r| r.stage == Stage::Submitted)
    })
    .await
}

fn work_dir(env: &TestEnv) -> PathBuf {
    layout::work_dir(&env.inboxes[0].path)
}

/// Finding 3: done/ on another filesystem and the unlink of the work copy failing (its folder
/// made immutable): six copies `a.png`, `a (2).png`, ... appeared, none with a sidecar. Now the
/// copy is made once; when the fault clears the work copy is removed and the sidecar written.
#[tokio::test]
async fn a_failing_unlink_after_a_cross_filesystem_move_makes_no_second_copy() {
    let (env, tmpfs) = env_with_done_on_tmpfs().await;
    let done = tmpfs.path.clone();
    let daemon = env.start();
    let bytes = std::fs::read(env.drop_scan(0, "a.png", 31, None)).unwrap();
    wait_submitted(&env).await;
    let Some(mut frozen) = Immutable::set(&work_dir(&env)) else {
        return;
    };
    wait_until("the copy in done/", || done.join("a.png").exists()).await;
    holds_for(
        "one copy in done/, no sidecar, while the work copy cannot be removed",
        Duration::from_secs(3),
        || files_in(&done) == ["a.png"],
    )
    .await;
    frozen.release();
    let sidecar = env.sidecar(0, "a.png").await;
    assert_eq!(sidecar.status, Status::Done);
    assert_eq!(sidecar.file, "a.png");
    assert_eq!(files_in(&done), ["a.png", "a.png.json"]);
    assert_eq!(std::fs::read(done.join("a.png")).unwrap(), bytes);
    assert_eq!(files_in(&work_dir(&env)), Vec::<String>::new());
    assert_eq!(env.submits().len(), 1);
    daemon.stop().await;
}

/// Finding 3: killed between the copy into done/ and the unlink of the work copy, the row
/// stayed `finishing` forever ("File exists" every minute). Now the next start recognises
/// its own copy, removes the work copy and writes the sidecar.
#[tokio::test]
async fn a_crash_between_copy_and_unlink_completes_at_the_next_start() {
    let (env, tmpfs) = env_with_done_on_tmpfs().await;
    let done = tmpfs.path.clone();
    let mut first = env.spawn_binary(&[]);
    let bytes = std::fs::read(env.drop_scan(0, "a.png", 32, None)).unwrap();
    wait_submitted(&env).await;
    let Some(mut frozen) = Immutable::set(&work_dir(&env)) else {
        return;
    };
    wait_until("the copy in done/", || done.join("a.png").exists()).await;
    first.signal(Signal::KILL);
    first.wait(Duration::from_secs(5)).await;
    frozen.release();
    assert_eq!(
        files_in(&work_dir(&env)).len(),
        1,
        "the work copy is still there"
    );

    let daemon = env.start();
    let sidecar = env.sidecar(0, "a.png").await;
    assert_eq!(sidecar.status, Status::Done);
    assert_eq!(files_in(&done), ["a.png", "a.png.json"]);
    assert_eq!(std::fs::read(done.join("a.png")).unwrap(), bytes);
    wait_until("the work copy removed", || {
        files_in(&work_dir(&env)).is_empty()
    })
    .await;
    assert_eq!(env.submits().len(), 1);
    daemon.stop().await;
}

/// Writes `bytes` into inbox 0 as `name` through a short temp name (the helpers' temp name
/// adds a prefix, too long for these names).
fn drop_long(env: &TestEnv, name: &str, bytes: &[u8]) {
    let inbox = &env.inboxes[0].path;
    let temp = inbox.join(".incoming-long");
    std::fs::write(&temp, bytes).unwrap();
    std::fs::rename(&temp, inbox.join(name)).unwrap();
}

fn sidecar_in(dir: &Path, name: &str) -> PathBuf {
    layout::sidecar_path(&dir.join(name))
}

/// Finding 9: a name over ~239 bytes failed to claim (ENAMETOOLONG: the work-folder prefix
/// pushed it past NAME_MAX) and was "detected" again forever. Now every name the inbox
/// accepts is processed: it keeps its name in done/ when that fits with `.json`, and is
/// shortened on a character boundary otherwise; the sidecar keeps the full original name.
#[tokio::test]
async fn names_as_long_as_the_filesystem_allows_are_processed() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let done = env.inboxes[0].done.clone();
    let daemon = env.start();
    // 244 bytes: fits in done/ with its `.json`, not in the work folder with the prefix.
    let medium = format!("{}.png", "Я".repeat(120));
    // 254 bytes: the inbox takes it, but `<name>.json` would be 259 bytes.
    let long = format!("{}.png", "Я".repeat(125));
    assert_eq!((medium.len(), long.len()), (244, 254));
    drop_long(&env, &medium, &samples_png(41));
    drop_long(&env, &long, &samples_png(42));

    let medium_sidecar = wait_for("the medium name's sidecar", || {
        Some(sidecar_in(&done, &medium)).filter(|p| p.exists())
    })
    .await;
    let s = read_sidecar(&medium_sidecar);
    assert_eq!((s.status, s.file.as_str()), (Status::Done, medium.as_str()));
    assert_eq!(s.source.name, medium);

    // Shortened to 250 bytes (123 letters and `.png`), so that `.json` fits too.
    let shortened = format!("{}.png", "Я".repeat(123));
    let long_sidecar = wait_for("the long name's sidecar", || {
        Some(sidecar_in(&done, &shortened)).filter(|p| p.exists())
    })
    .await;
    let s = read_sidecar(&long_sidecar);
    assert_eq!(
        (s.status, s.file.as_str()),
        (Status::Done, shortened.as_str())
    );
    assert_eq!(s.source.name, long, "the sidecar keeps the full name");
    assert!(done.join(&shortened).exists());

    // The same long name again (other content): its `(2)` variant, shortened to fit as well.
    drop_long(&env, &long, &samples_png(43));
    let second = format!("{} (2).png", "Я".repeat(121));
    let s = read_sidecar(
        &wait_for("the second long name's sidecar", || {
            Some(sidecar_in(&done, &second)).filter(|p| p.exists())
        })
        .await,
    );
    assert_eq!(
        (s.status, s.source.name.as_str()),
        (Status::Done, long.as_str())
    );
    assert_eq!(files_in(&env.inboxes[0].path), Vec::<String>::new());
    daemon.stop().await;
}

fn samples_png(seed: u64) -> Vec<u8> {
    beorg_emulator::samples::page_png(seed, None)
}

/// Finding 4: submitted, then the daemon down for longer than `result_timeout`: at the
/// next start the file went to failed/ as `timeout` without one result request, though the
/// result was ready. Now the downtime does not count, and the result is asked for.
#[tokio::test]
async fn a_result_ready_during_a_long_downtime_is_fetched_after_restart() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    env.inboxes[0].extra =
        "first_poll = \"1s\"\nmax_poll_interval = \"1s\"\nresult_timeout = \"2s\"".into();
    let daemon = env.start();
    env.drop_scan(0, "p.png", 51, None);
    wait_submitted(&env).await;
    let submitted = Instant::now();
    daemon.stop().await;
    assert!(
        env.requests(Endpoint::Result).is_empty(),
        "stopped before the first result request"
    );
    // The downtime: longer than result_timeout (the result is ready well before).
    // Not a wait for the daemon: the downtime itself, the behaviour under test.
    tokio::time::sleep_until((submitted + Duration::from_millis(2500)).into()).await;

    let daemon = env.start();
    let sidecar = env.sidecar(0, "p.png").await;
    assert_eq!(
        sidecar.status,
        Status::Done,
        "the paid result was thrown away: {:?}",
        sidecar.error
    );
    assert!(sidecar.result.is_some());
    assert_eq!(env.requests(Endpoint::Result).len(), 1);
    assert_eq!(env.submits().len(), 1);
    daemon.stop().await;
}
