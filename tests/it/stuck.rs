//! Issue 8, findings 1, 6 (verify after read) and 7, and the document_id that must reach the
//! log: no file that cannot finish holds back another; the duplicate rule compares what was
//! asked; a file that changes while it is sent is sent again.

use std::time::Duration;

use beorg_emulator::Endpoint;
use beorg_hotfolder::sidecar::{ErrorKind, Status};
use beorg_hotfolder::store::journal::Stage;
use rustix::process::Signal;

use crate::helpers::*;

/// Finding 1: a preflight-refused file in inbox A whose failed/ is missing stays claimed; files
/// of inbox B, and later files of A itself, are sent meanwhile. The same after A is retired
/// from the config with that row left. The refused file's sidecar carries its SHA-256.
#[tokio::test]
async fn a_file_that_cannot_finish_holds_back_no_other_file() {
    let mut env = TestEnv::new(&["PASSPORT", "SNILS"]).await;
    let sick = env.inboxes[0].clone();
    std::fs::remove_dir(&sick.failed).unwrap();
    let daemon = env.start();
    let refused = b"not a scan at all, refused by preflight\n".to_vec();
    env.drop_bytes(0, "notes.txt", &refused);
    let work = layout::work_dir(&sick.path);
    wait_until("notes.txt claimed", || files_in(&work).len() == 1).await;
    for n in 0..3 {
        env.drop_scan(1, &format!("b{n}.png"), 100 + n, None);
    }
    // A later file of the same inbox does not depend on the stuck one either.
    env.drop_scan(0, "a-later.png", 110, None);
    for n in 0..3 {
        assert_eq!(
            env.sidecar(1, &format!("b{n}.png")).await.status,
            Status::Done
        );
    }
    assert_eq!(env.sidecar(0, "a-later.png").await.status, Status::Done);
    assert_eq!(files_in(&work), vec![files_in(&work)[0].clone()]);
    assert!(files_in(&work)[0].ends_with("notes.txt"));
    daemon.stop().await;

    // Inbox A retired with its row left: nothing of B waits for it.
    env.inboxes.remove(0);
    let daemon = env.start();
    for n in 3..6 {
        env.drop_scan(0, &format!("b{n}.png"), 100 + n, None);
    }
    for n in 3..6 {
        assert_eq!(
            env.sidecar(0, &format!("b{n}.png")).await.status,
            Status::Done
        );
    }
    daemon.stop().await;

    // A back, its failed/ created: the refused file lands with its content's hash.
    env.inboxes.insert(0, sick.clone());
    std::fs::create_dir(&sick.failed).unwrap();
    let daemon = env.start();
    let sidecar = env.sidecar(0, "notes.txt").await;
    daemon.stop().await;
    assert_eq!(sidecar.error.unwrap().kind, ErrorKind::InvalidFile);
    assert_eq!(
        sidecar.source.sha256.as_deref(),
        Some(sha256_hex(&refused).as_str())
    );
}

/// Finding 7: the same picture dropped into a PASSPORT inbox and then into a SNILS inbox is
/// sent again as SNILS (not answered with the passport's result); dropped again into the
/// PASSPORT inbox it is answered from the journal, nothing paid.
#[tokio::test]
async fn the_same_scan_in_another_kind_of_inbox_is_sent_again() {
    let env = TestEnv::new(&["PASSPORT", "SNILS"]).await;
    let daemon = env.start();
    let bytes = beorg_emulator::samples::page_png(70, None);
    env.drop_bytes(0, "scan.png", &bytes);
    let passport = env.sidecar(0, "scan.png").await;
    assert_eq!(passport.status, Status::Done);
    env.drop_bytes(1, "scan.png", &bytes);
    let snils = env.sidecar(1, "scan.png").await;
    env.drop_bytes(0, "again.png", &bytes);
    let again = env.sidecar(0, "again.png").await;
    daemon.stop().await;

    assert_eq!(snils.status, Status::Done, "{:?}", snils.error);
    assert_eq!(snils.duplicate_of, None);
    assert_ne!(snils.document_id, passport.document_id);
    let types: Vec<Vec<String>> = env
        .submits()
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.types.clone())
        .collect();
    assert_eq!(
        types,
        vec![vec!["PASSPORT".to_string()], vec!["SNILS".to_string()]]
    );
    let doc = snils.result.unwrap()["documents"][0]["type"].clone();
    assert_eq!(doc, "SNILS");
    assert_eq!(again.duplicate_of, passport.document_id);
}

/// Finding 6 (verify after read): a file written to while its submit is on the wire is not
/// finished with the answer about the earlier bytes: it waits until it stops changing and is
/// sent again; done/ holds the bytes the sidecar describes.
#[tokio::test]
async fn a_file_changed_while_sent_is_sent_again() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    // The delayed answer must not time out (a retry would read the file again anyway).
    env.api("request_timeout = \"10s\"");
    env.emulator
        .delay_next(Endpoint::Submit, Duration::from_millis(700), 1);
    let daemon = env.start();
    let first = beorg_emulator::samples::page_png(60, None);
    env.drop_bytes(0, "growing.png", &first);
    let work = layout::work_dir(&env.inboxes[0].path);
    wait_for_stage(&env.state_dir, Stage::Submitting).await;
    // The writer rewrites the file in place while the request is on the wire.
    let work_file = work.join(&files_in(&work)[0]);
    let full = beorg_emulator::samples::page_png(62, None);
    std::fs::write(&work_file, &full).unwrap();
    let sidecar = env.sidecar(0, "growing.png").await;
    daemon.stop().await;
    assert_eq!(sidecar.status, Status::Done, "{:?}", sidecar.error);
    let done = std::fs::read(env.inboxes[0].done.join("growing.png")).unwrap();
    assert_eq!(done, full);
    assert_eq!(
        sidecar.source.sha256.as_deref(),
        Some(sha256_hex(&full).as_str())
    );
    let sent: Vec<String> = env
        .submits()
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.image_sha256[0].clone())
        .collect();
    assert_eq!(sent.last(), Some(&sha256_hex(&full)), "{sent:?}");
}

/// Suspected in issue 8: the journal cannot store a document_id when it arrives and the daemon
/// is then stopped: the id still reaches the log.
#[tokio::test]
async fn a_document_id_the_journal_cannot_store_still_reaches_the_log() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    let state = env.dir.path().join("small-state");
    let _disk = Tmpfs::mount(&state, "1m")
        .expect("this test mounts a tmpfs: run it as root (CI does), or with CAP_SYS_ADMIN");
    env.state_dir = state.clone();
    env.api("request_timeout = \"10s\"");
    env.emulator
        .delay_next(Endpoint::Submit, Duration::from_millis(700), 1);
    let mut daemon = env.spawn_binary(&[]);
    wait_until("started", || daemon.stderr().contains("running")).await;
    env.drop_scan(0, "paid.png", 61, None);
    wait_for_stage(&state, Stage::Submitting).await;
    let filler = state.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
    let document_id = wait_for("the document accepted", || {
        env.submits()
            .iter()
            .find(|r| r.status == 200)
            .and_then(|r| r.document_id.clone())
    })
    .await;
    wait_until("the journal refused the document_id", || {
        daemon
            .stderr()
            .contains("cannot write the journal (document)")
    })
    .await;
    daemon.signal(Signal::TERM);
    daemon.wait(Duration::from_secs(5)).await;
    std::fs::remove_file(&filler).unwrap();
    let logs = daemon.stderr();
    assert!(
        logs.lines()
            .any(|l| l.contains(&document_id) && l.contains("paid.png")),
        "{document_id} never logged:\n{logs}"
    );
}

/// Waits until a journal row is at `stage` (read through a second connection).
async fn wait_for_stage(state_dir: &std::path::Path, stage: Stage) {
    wait_for_journal(state_dir, &format!("a row at {stage:?}"), |rows| {
        rows.iter().any(|r| r.stage == stage)
    })
    .await
}
