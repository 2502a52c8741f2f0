//! No paid answer thrown away: every document the API gives ends in its file's sidecar (the
//! one in use, or under `superseded` with why), whatever happens to the file in the work
//! folder while it is sent or polled. The emulator holds the submit's answer back (its
//! `delay_next`), so a touch, a rewrite or a deletion lands while the request is on its way.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use beorg_emulator::Endpoint;
use beorg_emulator::samples::page_png;
use beorg_hotfolder::lifecycle::Event;
use beorg_hotfolder::sidecar::{ErrorKind, Sidecar, Status};
use beorg_hotfolder::store::journal::{Journal, Stage};

use crate::helpers::*;

/// How long the emulator holds each submit's answer: the window the test acts in.
const ANSWER_DELAY: Duration = Duration::from_millis(1500);

/// An env whose first submit is answered only after [`ANSWER_DELAY`]; `extra` for the inbox.
async fn slow_submit_env(extra: &str) -> TestEnv {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    env.inboxes[0].extra = extra.to_string();
    env.api("request_timeout = \"10s\"");
    env.emulator.delay_next(Endpoint::Submit, ANSWER_DELAY, 1);
    env
}

/// The one claimed entry (file or set folder) in inbox 0's work folder, once the emulator has
/// a submit (it records one when the body is in, before its delayed answer).
async fn claimed_while_sent(env: &TestEnv) -> PathBuf {
    wait_until("a submit on its way", || !env.submits().is_empty()).await;
    claimed_entry(env)
}

/// The one entry (file or set folder) in inbox 0's work folder.
fn claimed_entry(env: &TestEnv) -> PathBuf {
    let work = layout::work_dir(&env.inboxes[0].path);
    let names: Vec<_> = std::fs::read_dir(&work)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        names.len(),
        1,
        "one claimed entry in {}: {names:?}",
        work.display()
    );
    names[0].clone()
}

/// Gives `path` a new mtime (and so a new ctime), its bytes untouched: what `touch` does.
fn touch(path: &Path) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() + Duration::from_secs(5))
        .unwrap();
}

/// The document ids the emulator gave (submits answered 200), in order.
fn paid(env: &TestEnv) -> Vec<String> {
    env.submits()
        .into_iter()
        .filter(|r| r.status == 200)
        .filter_map(|r| r.document_id)
        .collect()
}

/// Builds a set in a hidden folder of inbox 0, then renames it into place whole.
fn put_set(env: &TestEnv, set: &str, files: &[(&str, Vec<u8>)]) {
    let hidden = env.inboxes[0].path.join(format!(".building-{set}"));
    std::fs::create_dir_all(&hidden).unwrap();
    for (name, bytes) in files {
        std::fs::write(hidden.join(name), bytes).unwrap();
    }
    std::fs::rename(&hidden, env.inboxes[0].path.join(set)).unwrap();
}

/// The journal row of `name` once it is finished (read through a second connection).
async fn finished_row(env: &TestEnv, name: &str) -> Stage {
    wait_for_journal(
        &env.state_dir,
        &format!("{name} finished in the journal"),
        |open| !open.iter().any(|r| r.name == name),
    )
    .await;
    let db = rusqlite::Connection::open(layout::journal_path(&env.state_dir)).unwrap();
    let stage: String = db
        .query_row("SELECT stage FROM files WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .unwrap();
    match stage.as_str() {
        "done" => Stage::Done,
        "failed" => Stage::Failed,
        "lost" => Stage::Lost,
        other => panic!("unexpected stage {other}"),
    }
}

fn assert_answer_kept(sidecar: &Sidecar, env: &TestEnv) {
    let paid = paid(env);
    assert_eq!(paid.len(), 1, "paid once: {:?}", env.submits());
    assert_eq!(sidecar.document_id.as_deref(), Some(paid[0].as_str()));
    assert_eq!(
        sidecar.duplicate_of, None,
        "its own answer, not a duplicate"
    );
    assert!(sidecar.superseded.is_empty(), "{:?}", sidecar.superseded);
    assert_eq!(env.submits().len(), 1, "nothing sent again");
}

#[tokio::test]
async fn a_file_touched_while_it_is_sent_keeps_its_paid_answer() {
    let env = slow_submit_env("").await;
    let daemon = env.start();
    env.drop_scan(0, "touched.png", 19_201, None);
    touch(&claimed_while_sent(&env).await);
    let sidecar = env.sidecar(0, "touched.png").await;
    daemon.stop().await;
    assert_eq!(sidecar.status, Status::Done, "{:?}", sidecar.error);
    assert_answer_kept(&sidecar, &env);
}

#[tokio::test]
async fn a_set_member_touched_while_the_set_is_sent_keeps_its_paid_answer() {
    let env = slow_submit_env("sets = true").await;
    let daemon = env.start();
    put_set(
        &env,
        "touched",
        &[
            ("p1.png", page_png(19_211, None)),
            ("p2.png", page_png(19_212, None)),
        ],
    );
    touch(&claimed_while_sent(&env).await.join("p2.png"));
    let sidecar = sidecar_in(&env.inboxes[0].done, "touched").await;
    daemon.stop().await;
    assert_eq!(sidecar.status, Status::Done, "{:?}", sidecar.error);
    assert_answer_kept(&sidecar, &env);
    assert_eq!(files_in(&env.inboxes[0].done.join("touched")).len(), 2);
}

/// The file is gone, its result is not: the sidecar alone goes to failed/ with kind
/// `deleted`, the result and the document id in it; the journal says failed, not lost.
#[tokio::test]
async fn a_file_deleted_while_it_is_sent_keeps_its_result_in_failed() {
    let env = slow_submit_env("").await;
    let daemon = env.start();
    env.drop_scan(0, "gone.png", 19_221, None);
    std::fs::remove_file(claimed_while_sent(&env).await).unwrap();
    let sidecar = sidecar_in(&env.inboxes[0].failed, "gone.png").await;
    assert_eq!(finished_row(&env, "gone.png").await, Stage::Failed);
    daemon.stop().await;
    assert_eq!(sidecar.status, Status::Failed);
    let error = sidecar.error.clone().unwrap();
    assert_eq!(error.kind, ErrorKind::Deleted);
    assert!(
        error
            .message
            .contains("deleted from the daemon's work folder after it was sent")
            && error.message.contains("nothing was sent again"),
        "{}",
        error.message
    );
    assert!(sidecar.result.is_some(), "the paid result is kept");
    assert!(!sidecar.documents.is_empty());
    assert_answer_kept(&sidecar, &env);
    assert!(!env.inboxes[0].failed.join("gone.png").exists());
}

#[tokio::test]
async fn a_set_member_deleted_while_the_set_is_sent_keeps_the_result_in_failed() {
    let env = slow_submit_env("sets = true").await;
    let daemon = env.start();
    put_set(
        &env,
        "thinned",
        &[
            ("p1.png", page_png(19_231, None)),
            ("p2.png", page_png(19_232, None)),
        ],
    );
    std::fs::remove_file(claimed_while_sent(&env).await.join("p2.png")).unwrap();
    let sidecar = sidecar_in(&env.inboxes[0].failed, "thinned").await;
    daemon.stop().await;
    assert_eq!(sidecar.status, Status::Failed);
    let error = sidecar.error.clone().unwrap();
    assert_eq!(error.kind, ErrorKind::Deleted);
    assert!(
        error
            .message
            .starts_with("p2.png was deleted from this set's work folder"),
        "{}",
        error.message
    );
    assert!(sidecar.result.is_some(), "the paid result is kept");
    assert_answer_kept(&sidecar, &env);
    assert_eq!(
        files_in(&env.inboxes[0].failed.join("thinned")),
        ["p1.png"],
        "what is left of the set is beside its sidecar"
    );
}

/// Other bytes after the send: sent again, and the first paid answer is listed under
/// `superseded` with why (it describes the earlier bytes).
#[tokio::test]
async fn a_file_rewritten_while_it_is_sent_lists_the_paid_answer_as_superseded() {
    let env = slow_submit_env("").await;
    let daemon = env.start();
    env.drop_scan(0, "rewritten.png", 19_241, None);
    let work_file = claimed_while_sent(&env).await;
    let last = page_png(19_242, None);
    std::fs::write(&work_file, &last).unwrap();
    let sidecar = env.sidecar(0, "rewritten.png").await;
    daemon.stop().await;
    assert_eq!(sidecar.status, Status::Done, "{:?}", sidecar.error);
    let paid = paid(&env);
    assert_eq!(paid.len(), 2, "{:?}", env.submits());
    assert_eq!(sidecar.document_id.as_deref(), Some(paid[1].as_str()));
    assert_eq!(sidecar.superseded.len(), 1, "{:?}", sidecar.superseded);
    assert_eq!(sidecar.superseded[0].document_id, paid[0]);
    assert!(
        sidecar.superseded[0]
            .why
            .contains("changed while it was sent"),
        "{}",
        sidecar.superseded[0].why
    );
    assert_eq!(
        std::fs::read(env.inboxes[0].done.join("rewritten.png")).unwrap(),
        last
    );
}

/// The set's work folder deleted while its result is asked for: the fetched result goes to
/// failed/ in a sidecar (kind `deleted`) and the journal, not "lost".
#[tokio::test]
async fn a_set_deleted_from_the_work_folder_while_polled_keeps_its_result_in_failed() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let mut env = env;
    env.inboxes[0].extra = "sets = true".into();
    env.api("request_timeout = \"10s\"");
    // Every result request answered only after a while: the deletion lands while one waits.
    env.emulator
        .delay_next(Endpoint::Result, Duration::from_millis(800), 100);
    let daemon = env.start();
    put_set(
        &env,
        "polled",
        &[
            ("p1.png", page_png(19_251, None)),
            ("p2.png", page_png(19_252, None)),
        ],
    );
    wait_until("a result request", || {
        !env.requests(Endpoint::Result).is_empty()
    })
    .await;
    std::fs::remove_dir_all(claimed_entry(&env)).unwrap();
    let sidecar = sidecar_in(&env.inboxes[0].failed, "polled").await;
    assert_eq!(finished_row(&env, "polled").await, Stage::Failed);
    daemon.stop().await;
    assert_eq!(sidecar.status, Status::Failed);
    let error = sidecar.error.clone().unwrap();
    assert_eq!(error.kind, ErrorKind::Deleted);
    assert!(
        error
            .message
            .starts_with("The set was deleted from the daemon's work folder"),
        "{}",
        error.message
    );
    assert!(sidecar.result.is_some(), "the fetched result is kept");
    assert_eq!(sidecar.source.files.as_ref().map(Vec::len), Some(2));
    assert_answer_kept(&sidecar, &env);
    let db = rusqlite::Connection::open(layout::journal_path(&env.state_dir)).unwrap();
    let kept: String = db
        .query_row("SELECT sidecar FROM files WHERE name = 'polled'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(kept.contains("\"result\""), "the journal keeps the result");
}

/// A file of a set rewritten while the set was sent: the set is sent again, the service
/// answers 409 for the files that did not change, and the set fails naming this daemon's own
/// earlier document (listed under `superseded`), not as someone else's duplicate.
#[tokio::test]
async fn a_set_member_rewritten_while_sent_names_its_own_earlier_document_on_409() {
    let env = slow_submit_env("sets = true").await;
    let daemon = env.start();
    put_set(
        &env,
        "rewritten",
        &[
            ("p1.png", page_png(19_261, None)),
            ("p2.png", page_png(19_262, None)),
        ],
    );
    let member = claimed_while_sent(&env).await.join("p2.png");
    std::fs::write(&member, page_png(19_263, None)).unwrap();
    let sidecar = sidecar_in(&env.inboxes[0].failed, "rewritten").await;
    daemon.stop().await;
    let paid = paid(&env);
    assert_eq!(paid.len(), 1, "{:?}", env.submits());
    let error = sidecar.error.clone().unwrap();
    assert_eq!(error.kind, ErrorKind::Duplicate);
    assert!(
        error
            .message
            .contains(&format!("this daemon sent them as document {}", paid[0])),
        "{}",
        error.message
    );
    assert_eq!(sidecar.superseded.len(), 1, "{:?}", sidecar.superseded);
    assert_eq!(sidecar.superseded[0].document_id, paid[0]);
    assert!(
        sidecar.superseded[0]
            .why
            .starts_with("p2.png of this set changed"),
        "{}",
        sidecar.superseded[0].why
    );
}

/// Rewritten while sent (its answer superseded), then deleted before it could be sent
/// again: the paid document is not lost with it; its sidecar alone goes to failed/ (kind
/// `deleted`) listing the document under `superseded`.
#[tokio::test]
async fn a_file_deleted_after_its_paid_answer_was_superseded_keeps_it_in_failed() {
    let mut env = slow_submit_env("").await;
    // Long enough a settle that the file is deleted while it waits to be sent again.
    env.inboxes[0].extra = "settle = \"2s\"".into();
    let daemon = env.start();
    env.drop_scan(0, "short-lived.png", 19_271, None);
    let work_file = claimed_while_sent(&env).await;
    std::fs::write(&work_file, page_png(19_272, None)).unwrap();
    wait_for_journal(&env.state_dir, "the answer superseded", |rows| {
        rows[0].stage == Stage::Claimed
    })
    .await;
    std::fs::remove_file(&work_file).unwrap();
    let sidecar = sidecar_in(&env.inboxes[0].failed, "short-lived.png").await;
    daemon.stop().await;
    let paid = paid(&env);
    assert_eq!(paid.len(), 1, "{:?}", env.submits());
    assert_eq!(
        sidecar.error.as_ref().map(|e| e.kind),
        Some(ErrorKind::Deleted)
    );
    assert_eq!(sidecar.document_id, None);
    assert_eq!(sidecar.superseded.len(), 1, "{:?}", sidecar.superseded);
    assert_eq!(sidecar.superseded[0].document_id, paid[0]);
    assert!(
        sidecar
            .error
            .unwrap()
            .message
            .contains("listed under superseded"),
        "the message says where the paid document is"
    );
}

/// The single-file equivalent: deleted from the work folder while its result is asked for.
#[tokio::test]
async fn a_file_deleted_from_the_work_folder_while_polled_keeps_its_result_in_failed() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    env.api("request_timeout = \"10s\"");
    env.emulator
        .delay_next(Endpoint::Result, Duration::from_millis(800), 100);
    let daemon = env.start();
    env.drop_scan(0, "polled.png", 19_281, None);
    wait_until("a result request", || {
        !env.requests(Endpoint::Result).is_empty()
    })
    .await;
    std::fs::remove_file(claimed_entry(&env)).unwrap();
    let sidecar = sidecar_in(&env.inboxes[0].failed, "polled.png").await;
    assert_eq!(finished_row(&env, "polled.png").await, Stage::Failed);
    daemon.stop().await;
    assert_eq!(
        sidecar.error.as_ref().map(|e| e.kind),
        Some(ErrorKind::Deleted)
    );
    assert!(sidecar.result.is_some(), "the fetched result is kept");
    assert_answer_kept(&sidecar, &env);
}

/// A crash between deciding a paid file's outcome and moving it, then the work file deleted
/// by hand before the next start: the stored result still goes to failed/ (kind `deleted`),
/// not "lost".
#[tokio::test]
async fn a_paid_file_deleted_during_an_interrupted_finish_keeps_its_result_in_failed() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let inbox = &env.inboxes[0];
    let journal = Journal::open(&env.state_dir).unwrap();
    let claim = beorg_hotfolder::store::journal::NewClaim {
        inbox: inbox.path.clone(),
        name: "crashed.png".into(),
        work_path: layout::work_dir(&inbox.path).join("1700000000000-1_crashed.png"),
        size: 5,
        detected_at: SystemTime::now(),
        claimed_at: SystemTime::now(),
        set: false,
    };
    let stored = serde_json::json!({
        "sidecar_version": 3, "status": "done", "type": "PASSPORT", "document_id": "s-77",
        "file": "crashed.png",
        "source": {"name": "crashed.png", "inbox": inbox.path, "sha256": null, "size": 5},
        "result": {"document_id": "s-77", "documents": []},
        "timestamps": {"detected": "x", "claimed": "x", "submitted": "x", "finished": "x"},
        "written_by": "beorg-hotfolder"
    });
    let events = vec![
        Event::Submitting {
            request: "r".into(),
        },
        Event::Submitted {
            document_id: "s-77".into(),
        },
        finishing(&inbox.done.join("crashed.png"), &stored.to_string()),
    ];
    journal_row(&journal, claim, events).await;
    drop(journal);

    let daemon = env.start();
    let sidecar = sidecar_in(&inbox.failed, "crashed.png").await;
    assert_eq!(finished_row(&env, "crashed.png").await, Stage::Failed);
    daemon.stop().await;
    assert_eq!(
        sidecar.error.as_ref().map(|e| e.kind),
        Some(ErrorKind::Deleted)
    );
    assert_eq!(sidecar.document_id.as_deref(), Some("s-77"));
    assert_eq!(
        sidecar.result,
        Some(serde_json::json!({"document_id": "s-77", "documents": []}))
    );
    assert!(!layout::sidecar_path(&inbox.done.join("crashed.png")).exists());
}
