//! The journal's own faults (issue 9, finding 9). A stage the daemon does not know is an
//! error, never a default: read as "claimed", such a row would be sent again and could be
//! paid for twice; the daemon refuses to start instead, naming the row, and touches nothing.
//! And no journal write is ignored: one that fails is reported and retried until it lands.

use std::time::{Duration, SystemTime};

use beorg_emulator::Endpoint;
use beorg_hotfolder::sidecar::Status;
use beorg_hotfolder::store::journal::{Journal, NewClaim};

use crate::helpers::*;

#[tokio::test]
async fn an_unknown_journal_stage_stops_the_start_and_nothing_is_sent() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let inbox = &env.inboxes[0];
    // A claimed file whose row carries a stage this daemon does not know (another version
    // wrote it, or someone edited it by hand).
    let work = layout::work_dir(&inbox.path);
    std::fs::create_dir_all(&work).unwrap();
    let work_path = work.join("1700000000000-1_odd.png");
    std::fs::write(&work_path, beorg_emulator::samples::page_png(41, None)).unwrap();
    let journal = Journal::open(&env.state_dir).unwrap();
    let id = journal
        .insert_claimed(NewClaim {
            inbox: inbox.path.clone(),
            name: "odd.png".into(),
            work_path: work_path.clone(),
            size: std::fs::metadata(&work_path).unwrap().len(),
            detected_at: SystemTime::now(),
            claimed_at: SystemTime::now(),
            set: false,
        })
        .await
        .unwrap();
    drop(journal);
    rusqlite::Connection::open(layout::journal_path(&env.state_dir))
        .unwrap()
        .execute("UPDATE files SET stage = 'parked' WHERE id = ?1", [id])
        .unwrap();

    let mut daemon = env.spawn_binary(&[]);
    let status = daemon.wait(Duration::from_secs(30)).await;
    let log = daemon.stderr();
    assert!(!status.success(), "must not start; log:\n{log}");
    assert!(
        log.contains(&format!("journal row {id} (odd.png")) && log.contains("\"parked\""),
        "the error names the row and its stage; log:\n{log}"
    );
    assert!(env.submits().is_empty(), "nothing is sent for it");
    assert!(work_path.exists(), "the file stays where it is");
    assert!(files_in(&inbox.done).is_empty() && files_in(&inbox.failed).is_empty());
}

/// A submit answered 503 puts the row back to "claimed" while the file waits for its next
/// try. That write used to be dropped silently when it failed (`let _ = ...`); now it is
/// reported like every journal write, retried until it lands, and the file still completes.
#[tokio::test]
async fn a_failed_journal_write_after_a_refused_submit_is_reported_and_retried() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    // Long enough a backoff to see the row while the file waits for its second try.
    env.api("retry_base = \"3s\"").api("retry_max = \"3s\"");
    env.emulator.fail_next(Endpoint::Submit, 503, 1);
    // The 503 comes back late: time to lock the journal while the request is out.
    env.emulator
        .delay_next(Endpoint::Submit, Duration::from_millis(1500), 1);
    let mut daemon = env.spawn_binary(&[]);
    env.drop_scan(0, "locked.png", 43, None);
    wait_until("the first submit is out", || env.submits().len() == 1).await;

    // Another writer holds the journal: the daemon's next write fails (busy) after its
    // 5 s busy timeout.
    let blocker = rusqlite::Connection::open(layout::journal_path(&env.state_dir)).unwrap();
    blocker.busy_timeout(Duration::from_secs(5)).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    wait_until("the failed write is reported", || {
        daemon
            .stderr()
            .contains("cannot write the journal (not_sent)")
    })
    .await;
    blocker.execute_batch("COMMIT").unwrap();
    drop(blocker);

    // The retried write lands: the row says "claimed" while the file waits for its next try.
    let reader = rusqlite::Connection::open(layout::journal_path(&env.state_dir)).unwrap();
    let stage = || -> String {
        reader
            .query_row(
                "SELECT stage FROM files WHERE name = 'locked.png'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    let mut saw_claimed = false;
    wait_until("the row is back to claimed, or the file went on", || {
        saw_claimed |= stage() == "claimed";
        saw_claimed || env.submits().len() > 1
    })
    .await;
    assert!(
        saw_claimed,
        "the write after the 503 landed before the next try"
    );
    assert_eq!(env.sidecar(0, "locked.png").await.status, Status::Done);
    assert_eq!(env.submits().len(), 2);
    daemon.signal(rustix::process::Signal::TERM);
    assert!(daemon.wait(DEADLINE).await.success(), "{}", daemon.stderr());
}
