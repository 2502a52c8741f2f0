//! Issue 10, bodies streamed from disk: a submit's body is read from the file in chunks as it
//! is sent, anew on every try; the emulator (which reads the whole request) parses it; a file
//! that changes size while it is sent is never finished with a wrong body.

use std::time::Duration;

use beorg_emulator::Endpoint;
use beorg_hotfolder::sidecar::Status;
use beorg_hotfolder::store::journal::Stage;

use crate::helpers::*;

/// Bytes that are not all alike (so a body cut or shifted anywhere decodes to another hash).
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[i % 4] ^ seed)
        .collect()
}

/// A retry after a 5xx sends the file again, read from disk again: the emulator's request log
/// has the same SHA-256 twice (the 500, then the 200), and the body of a file of many chunks
/// parses there (the emulator reads the whole request).
#[tokio::test]
async fn a_retry_after_a_server_error_reads_the_file_again() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    env.inboxes[0].extra = "preflight = \"off\"".into();
    env.emulator.fail_next(Endpoint::Submit, 500, 1);
    let daemon = env.start();
    // Over 20 read chunks, and not a multiple of 3 (padding at the very end only).
    let content = pattern(1024 * 1024 + 1, 7);
    env.drop_bytes(0, "big.bin", &content);
    let sidecar = env.sidecar(0, "big.bin").await;
    daemon.stop().await;
    assert_eq!(sidecar.status, Status::Done, "{:?}", sidecar.error);
    let sha = sha256_hex(&content);
    let sent: Vec<(u16, Vec<String>)> = env
        .submits()
        .into_iter()
        .map(|r| (r.status, r.image_sha256))
        .collect();
    assert_eq!(
        sent,
        [(500, vec![sha.clone()]), (200, vec![sha.clone()])],
        "the 500, then the same bytes again"
    );
    assert_eq!(sidecar.source.sha256.as_deref(), Some(sha.as_str()));
}

/// A file that shrinks and then grows while its body is being streamed is not finished with a
/// wrong body: the request carrying a cut file is broken off (or its answer is not used), the
/// file is sent again once it stops changing, and done/ holds the bytes the sidecar and the
/// accepted request describe.
#[tokio::test]
async fn a_file_that_changes_size_while_sent_is_not_finished_with_a_wrong_body() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    env.inboxes[0].extra = "preflight = \"off\"".into();
    env.api("request_timeout = \"20s\"");
    env.emulator
        .delay_next(Endpoint::Submit, Duration::from_millis(500), 1);
    let daemon = env.start();
    let first = pattern(24 * 1024 * 1024, 1);
    env.drop_bytes(0, "tiff.bin", &first);
    let work = layout::work_dir(&env.inboxes[0].path);
    until_submitting(&env.state_dir).await;
    let work_file = work.join(&files_in(&work)[0]);
    // Shrinks while (or just before) it is read for the wire, then is written whole again,
    // longer and different.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&work_file)
        .unwrap()
        .set_len(1024 * 1024)
        .unwrap();
    // Not a wait for the daemon: the file stays short this long, the window in which the
    // upload may read it short.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let last = pattern(24 * 1024 * 1024 + 5, 2);
    std::fs::write(&work_file, &last).unwrap();
    let sidecar = env.sidecar(0, "tiff.bin").await;
    daemon.stop().await;
    assert_eq!(sidecar.status, Status::Done, "{:?}", sidecar.error);
    let done = std::fs::read(env.inboxes[0].done.join("tiff.bin")).unwrap();
    assert!(
        done == last,
        "done/ holds other bytes than the last ones written"
    );
    let sha = sha256_hex(&last);
    assert_eq!(sidecar.source.sha256.as_deref(), Some(sha.as_str()));
    let accepted: Vec<Vec<String>> = env
        .submits()
        .into_iter()
        .filter(|r| r.status == 200)
        .map(|r| r.image_sha256)
        .collect();
    assert_eq!(accepted.last(), Some(&vec![sha.clone()]), "{accepted:?}");
    // Whatever the server accepted was a whole file as it was at some moment, never a cut one.
    let whole = [sha256_hex(&first), sha];
    assert!(
        accepted
            .iter()
            .all(|s| s.len() == 1 && whole.contains(&s[0])),
        "a cut body was accepted: {accepted:?}"
    );
}

/// Waits until the journal says a submit is under way (read through a second connection).
async fn until_submitting(state_dir: &std::path::Path) {
    wait_for_journal(state_dir, "a row at Submitting", |rows| {
        rows.iter().any(|r| r.stage == Stage::Submitting)
    })
    .await
}
