//! `explain` and `requeue`, the real binary against the journal of a real daemon run: a
//! file's history by path, name or document id (text and `--json`), for a done, a refused, a
//! delivered, a set and a pruned file; requeue of failed/ and review/ originals while the
//! daemon runs, sent again (never answered from their own earlier outcome), and each refusal
//! with nothing moved.

use std::path::{Path, PathBuf};

use beorg_emulator::Endpoint;
use beorg_emulator::samples::kyc_set;
use beorg_hotfolder::sidecar::{ErrorKind, Status};

use crate::helpers::*;

/// The transitions of a happy file, in order.
const DONE_JOURNEY: [&str; 9] = [
    "claimed",
    "hashed",
    "preflight",
    "submitting",
    "document",
    "submitted",
    "polled",
    "finishing",
    "finished",
];

fn explain(config: &Path, args: &[&str]) -> (Option<i32>, String) {
    run_bin(&[&["explain"], args].concat(), config, &[])
}

/// `explain --json` for `query`: the array it prints.
fn explain_json(config: &Path, query: &str) -> Vec<serde_json::Value> {
    let (code, text) = explain(config, &[query, "--json"]);
    assert_eq!(code, Some(0), "{text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn transitions(story: &serde_json::Value) -> Vec<String> {
    story["history"]
        .as_array()
        .unwrap_or_else(|| panic!("no history: {story}"))
        .iter()
        .map(|l| l["transition"].as_str().unwrap().to_string())
        .collect()
}

/// The printed lines' transition column (after the date and time).
fn printed_transitions(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.len() > 21 && l.as_bytes()[4] == b'-' && l.as_bytes()[13] == b':')
        .filter_map(|l| l[21..].split_whitespace().next().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn explain_tells_a_done_file_s_journey_by_path_name_or_document_id() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let config = env.write_config();
    let daemon = env.start();
    let dropped = env.drop_scan(0, "scan.png", 7001, None);
    let sidecar = env.sidecar(0, "scan.png").await;
    assert_eq!(sidecar.status, Status::Done);
    wait_for_transition(&env, "scan.png", "finished", 1).await;
    let done = env.inboxes[0].done.join("scan.png");
    let document_id = sidecar.document_id.clone().unwrap();

    // The same story whichever way the file is named, while the daemon runs.
    let by_path = explain(&config, &[done.to_str().unwrap()]);
    let by_name = explain(&config, &["scan.png"]);
    let by_document = explain(&config, &[&document_id]);
    for (how, (code, text)) in [
        ("path", &by_path),
        ("name", &by_name),
        ("document", &by_document),
    ] {
        assert_eq!(*code, Some(0), "{how}: {text}");
        assert_eq!(printed_transitions(text), DONE_JOURNEY, "{how}: {text}");
        assert!(
            text.contains(&format!("from {}", dropped.display())),
            "{how}: {text}"
        );
        assert!(
            text.contains(&format!("the API gave document {document_id}")),
            "{text}"
        );
        assert!(
            text.contains(&format!("sidecar {}.json", done.display())),
            "{text}"
        );
        assert!(!text.contains(TOKEN), "the token leaked: {text}");
    }
    assert_eq!(by_path.1, by_name.1);

    let stories = explain_json(&config, "scan.png");
    assert_eq!(stories.len(), 1, "{stories:?}");
    let story = &stories[0];
    assert_eq!(transitions(story), DONE_JOURNEY);
    assert_eq!(story["stage"], "done");
    assert_eq!(story["document_id"], document_id.as_str());
    let history = story["history"].as_array().unwrap();
    let claimed = &history[0]["details"];
    assert!(claimed["seen_ms"].as_i64().unwrap() <= history[0]["at_ms"].as_i64().unwrap());
    assert_eq!(
        history[1]["details"]["sha256"],
        sidecar.source.sha256.unwrap().as_str()
    );
    assert_eq!(history[4]["details"]["http_status"], 200);
    assert!(
        history[6]["details"]["asks"].as_i64().unwrap() >= 1,
        "{}",
        history[6]
    );
    assert!(
        history[6]["details"]["ready_ms"].as_i64().is_some(),
        "{}",
        history[6]
    );
    assert_eq!(history[8]["details"]["stage"], "done");
    daemon.stop().await;
}

#[tokio::test]
async fn explain_tells_why_a_refused_file_failed_and_that_nothing_was_sent() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let config = env.write_config();
    let daemon = env.start();
    env.drop_bytes(0, "notes.txt", b"not a scan\n");
    let sidecar = env.sidecar(0, "notes.txt").await;
    assert_eq!(sidecar.error.unwrap().kind, ErrorKind::InvalidFile);
    wait_for_transition(&env, "notes.txt", "finished", 1).await;
    let failed = env.inboxes[0].failed.join("notes.txt");
    let (code, text) = explain(&config, &[failed.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(
        printed_transitions(&text),
        ["claimed", "hashed", "preflight", "finishing", "finished"],
        "{text}"
    );
    assert!(
        text.contains("preflight       refused (invalid_file)"),
        "{text}"
    );
    assert!(text.contains("failed (invalid_file)"), "{text}");
    daemon.stop().await;
}

#[tokio::test]
async fn explain_lists_each_delivery_try_and_its_outcome() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    ledger_and_a_dead_webhook(&mut env);
    let config = env.write_config();
    let daemon = env.start();
    env.drop_scan(0, "delivered.png", 7002, None);
    env.sidecar(0, "delivered.png").await;
    wait_for_transition(&env, "delivered.png", "delivery_closed", 2).await;
    let stories = explain_json(&config, "delivered.png");
    let history = stories[0]["history"].as_array().unwrap();
    let of_kind = |kind: &str| -> Vec<(String, serde_json::Value)> {
        history
            .iter()
            .filter(|l| l["details"]["kind"] == kind)
            .map(|l| {
                (
                    l["transition"].as_str().unwrap().to_string(),
                    l["details"].clone(),
                )
            })
            .collect()
    };
    let ledger_lines = of_kind("ledger");
    assert_eq!(
        ledger_lines
            .iter()
            .map(|l| l.0.as_str())
            .collect::<Vec<_>>(),
        ["delivery_queued", "delivery_closed"],
        "{history:?}"
    );
    assert_eq!(ledger_lines[1].1["state"], "delivered");
    let webhook_lines = of_kind("webhook");
    assert_eq!(
        webhook_lines
            .iter()
            .map(|l| l.0.as_str())
            .collect::<Vec<_>>(),
        ["delivery_queued", "delivery_retry", "delivery_closed"],
        "{history:?}"
    );
    assert_eq!(webhook_lines[2].1["state"], "given_up");
    assert_eq!(webhook_lines[2].1["attempts"], 2);
    let (_, text) = explain(&config, &["delivered.png"]);
    assert!(text.contains("ledger delivered after 1 tries"), "{text}");
    assert!(text.contains("webhook given up after 2 tries"), "{text}");
    daemon.stop().await;
}

#[tokio::test]
async fn explain_of_an_unknown_file_says_so_and_exits_1() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let config = env.write_config();
    let daemon = env.start();
    env.drop_scan(0, "known.png", 7003, None);
    env.sidecar(0, "known.png").await;
    for query in ["unknown.png", "s-999999", "/nowhere/unknown.png"] {
        let (code, text) = explain(&config, &[query]);
        assert_eq!(code, Some(1), "{query}: {text}");
        assert!(
            text.contains(&format!("no file matches \"{query}\"")),
            "{query}: {text}"
        );
    }
    daemon.stop().await;
}

/// A file whose row `keep_history` pruned is told apart from an unknown one by its sidecar.
#[tokio::test]
async fn explain_of_a_file_pruned_after_keep_history_says_its_history_was_pruned() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let config = env.write_config();
    let daemon = env.start();
    env.drop_scan(0, "old.png", 7004, None);
    env.sidecar(0, "old.png").await;
    wait_for_transition(&env, "old.png", "finished", 1).await;
    daemon.stop().await;
    // Finished long ago, as far as the journal knows (keep_history is at least an hour).
    let journal = rusqlite::Connection::open(layout::journal_path(&env.state_dir)).unwrap();
    journal
        .execute(
            "UPDATE files SET finished_at = finished_at - 40 * 86400000",
            [],
        )
        .unwrap();
    drop(journal);
    // The daemon prunes at start.
    let daemon = env.start();
    wait_until("old.png pruned", || {
        transitions_of(&env, "old.png").is_empty()
    })
    .await;
    let done = env.inboxes[0].done.join("old.png");
    for query in [done.to_str().unwrap(), "old.png"] {
        let (code, text) = explain(&config, &[query]);
        assert_eq!(code, Some(0), "{query}: {text}");
        assert!(
            text.contains("its history was pruned after keep_history (30days)"),
            "{query}: {text}"
        );
        assert!(
            text.contains("finished        (from its sidecar) done"),
            "{text}"
        );
    }
    let stories = explain_json(&config, "old.png");
    assert_eq!(stories[0]["pruned"], true);
    // A sidecar that names another file says nothing about this one: unknown.
    let stranger = env.inboxes[0].done.join("stranger.png");
    std::fs::write(&stranger, "x").unwrap();
    std::fs::copy(layout::sidecar_path(&done), layout::sidecar_path(&stranger)).unwrap();
    let (code, text) = explain(&config, &[stranger.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("no file matches"), "{text}");
    daemon.stop().await;
}

/// A set is one story: claimed as a set, its files hashed together; in review it can be
/// requeued as a folder.
#[tokio::test]
async fn a_document_set_is_explained_as_one_and_requeued_as_a_folder() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    // `review` before the documents tables (keys after them would belong to the last one).
    let review = env.review_folder(0, true);
    env.inboxes[0].extra.push_str(KYC);
    let config = env.write_config();
    let daemon = env.start();
    let building = env.inboxes[0].path.join(".building");
    std::fs::create_dir(&building).unwrap();
    for (name, bytes) in kyc_set(7005, Some("BEORG-EMU:other-face")) {
        std::fs::write(building.join(name), bytes).unwrap();
    }
    std::fs::rename(&building, env.inboxes[0].path.join("client-1")).unwrap();
    let in_review = review.join("client-1");
    let sidecar = sidecar_in(&review, "client-1").await;
    assert_eq!(sidecar.status, Status::Review);
    wait_for_transition(&env, "client-1", "finished", 1).await;
    let (code, text) = explain(&config, &[in_review.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(printed_transitions(&text), DONE_JOURNEY, "{text}");
    assert!(text.contains("claimed         set from"), "{text}");
    assert!(text.contains("(2 files,"), "{text}");

    let submits = env.submits().len();
    let (code, text) = run_bin(&["requeue", in_review.to_str().unwrap()], &config, &[]);
    assert_eq!(code, Some(0), "{text}");
    wait_for_second_run(&env, "client-1", &in_review).await;
    assert_eq!(env.submits().len(), submits + 1, "sent again");
    assert!(in_review.exists() && layout::sidecar_path(&in_review).exists());
    daemon.stop().await;
}

/// Waits until the newest run of `name` (a row not requeued) finished with its sidecar
/// beside `original`.
async fn wait_for_second_run(env: &TestEnv, name: &str, original: &Path) {
    wait_until(&format!("{name} processed again"), || {
        let history = transitions_of(env, name);
        history.iter().any(|t| t == "finished")
            && !history.iter().any(|t| t == "requeued")
            && layout::sidecar_path(original).exists()
    })
    .await
}

/// A file the service refused (HTTP 400) is requeued from failed/ while the daemon runs: it
/// is taken from the inbox again, sent, and finishes with a new sidecar; its history keeps
/// the first outcome and the requeue.
#[tokio::test]
async fn a_file_requeued_from_failed_while_the_daemon_runs_is_sent_again_with_a_new_sidecar() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let config = env.write_config();
    env.emulator.fail_next(Endpoint::Submit, 400, 1);
    let daemon = env.start();
    env.drop_scan(0, "retry.png", 7006, None);
    let first = env.sidecar(0, "retry.png").await;
    assert_eq!(first.error.unwrap().kind, ErrorKind::Rejected);
    wait_for_transition(&env, "retry.png", "finished", 1).await;
    let failed = env.inboxes[0].failed.join("retry.png");

    let (code, text) = run_bin(&["requeue", failed.to_str().unwrap()], &config, &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("requeued"), "{text}");
    let done = env.inboxes[0].done.join("retry.png");
    wait_for_second_run(&env, "retry.png", &done).await;
    let sidecar = env.sidecar(0, "retry.png").await;
    assert_eq!(sidecar.status, Status::Done, "{sidecar:?}");
    assert!(!failed.exists() && !layout::sidecar_path(&failed).exists());
    assert_eq!(env.submits().len(), 2);

    let stories = explain_json(&config, "retry.png");
    assert_eq!(
        stories.len(),
        2,
        "the requeued run and the first one: {stories:?}"
    );
    let first_run = transitions(&stories[1]);
    assert_eq!(
        first_run.last().map(String::as_str),
        Some("requeued"),
        "{first_run:?}"
    );
    let requeued = stories[1]["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        requeued["details"]["sidecar_json"]["error"]["kind"],
        "rejected"
    );
    assert_eq!(transitions(&stories[0]), DONE_JOURNEY);
    daemon.stop().await;
}

/// The duplicate rule never answers a requeued file from its own earlier outcome: it is
/// submitted again (the operator asked to pay again). The service still refuses content it
/// has (409): then the journal's document answers, as for any 409 of our own content.
#[tokio::test]
async fn a_requeued_file_is_sent_again_not_answered_from_its_own_earlier_document() {
    let env = TestEnv::new(&["PASSPORT"]).await;
    let config = env.write_config();
    let daemon = env.start();
    env.drop_scan(0, "blurred.png", 7007, Some("BEORG-EMU:broken"));
    let first = env.sidecar(0, "blurred.png").await;
    let first_document = first.document_id.clone();
    assert_eq!(first.error.unwrap().kind, ErrorKind::Broken);
    wait_for_transition(&env, "blurred.png", "finished", 1).await;
    let failed = env.inboxes[0].failed.join("blurred.png");
    assert_eq!(env.submits().len(), 1);

    let (code, text) = run_bin(&["requeue", failed.to_str().unwrap()], &config, &[]);
    assert_eq!(code, Some(0), "{text}");
    wait_for_second_run(&env, "blurred.png", &failed).await;
    let history = transitions_of(&env, "blurred.png");
    assert!(
        history.contains(&"submitting".to_string()),
        "sent again, not answered from its earlier document: {history:?}"
    );
    assert_eq!(env.submits().len(), 2, "one more submit");
    // The service answered 409 (it has these bytes): the earlier document answers, the
    // file is not failed as a duplicate.
    assert_eq!(env.submits()[1].status, 409);
    let again = read_sidecar(&layout::sidecar_path(&failed));
    assert_eq!(again.error.unwrap().kind, ErrorKind::Broken);
    assert_eq!(again.duplicate_of, first_document);
    daemon.stop().await;
}

/// Each refusal says why, and nothing moves: no sidecar, a sidecar naming another file,
/// done/, outside every folder, another inbox's folder, a sidecar given, a name clash.
#[tokio::test]
async fn requeue_refuses_what_the_daemon_did_not_finish_there_and_moves_nothing() {
    let env = TestEnv::new(&["PASSPORT", "SNILS"]).await;
    let config = env.write_config();
    let daemon = env.start();
    env.drop_bytes(0, "refused.txt", b"not a scan\n");
    env.drop_bytes(0, "clash.txt", b"not a scan either\n");
    env.drop_scan(0, "good.png", 7008, None);
    for name in ["refused.txt", "clash.txt", "good.png"] {
        env.sidecar(0, name).await;
        wait_for_transition(&env, name, "finished", 1).await;
    }
    let (failed, other_failed) = (&env.inboxes[0].failed, &env.inboxes[1].failed);
    let put = |path: &Path, text: &str| {
        std::fs::write(path, text).unwrap();
        path.to_path_buf()
    };
    let unsidecarred = put(&failed.join("by-hand.png"), "x");
    let misnamed = put(&failed.join("misnamed.png"), "x");
    std::fs::copy(
        layout::sidecar_path(&failed.join("refused.txt")),
        layout::sidecar_path(&misnamed),
    )
    .unwrap();
    let outside = put(&env.dir.path().join("elsewhere.png"), "x");
    // A finished original moved by hand into another inbox's failed/ with its sidecar.
    let moved = other_failed.join("refused.txt");
    std::fs::rename(failed.join("refused.txt"), &moved).unwrap();
    std::fs::rename(
        layout::sidecar_path(&failed.join("refused.txt")),
        layout::sidecar_path(&moved),
    )
    .unwrap();
    // The name is taken in the inbox again (a new scan of the same name waits there).
    let clash = failed.join("clash.txt");
    let waiting = env.inboxes[0].path.join("clash.txt");
    let cases: [(PathBuf, &str); 7] = [
        (unsidecarred, "it has no sidecar"),
        (misnamed, "names another file (refused.txt)"),
        (env.inboxes[0].done.join("good.png"), "it is in done/"),
        (outside, "not in any inbox's failed/ or review/ folder"),
        (moved, "moved here from another inbox's folder"),
        (layout::sidecar_path(&clash), "this is a sidecar"),
        (clash.clone(), "already exists in the inbox"),
    ];
    let before_inbox = files_in(&env.inboxes[0].path);
    for (path, why) in &cases {
        let clashing = path == &clash;
        if clashing {
            // The name is taken in the inbox (a folder of that name, which intake leaves
            // alone in a plain inbox, so the daemon does not take it meanwhile).
            std::fs::create_dir(&waiting).unwrap();
        }
        let listing = |p: &Path| files_in(p.parent().unwrap());
        let before = listing(path);
        let (code, text) = run_bin(&["requeue", path.to_str().unwrap()], &config, &[]);
        assert_eq!(code, Some(1), "{}: {text}", path.display());
        assert!(text.contains("not requeued"), "{text}");
        assert!(
            text.contains(why),
            "{}: expected \"{why}\": {text}",
            path.display()
        );
        assert_eq!(listing(path), before, "nothing moved: {text}");
        if clashing {
            std::fs::remove_dir(&waiting).unwrap();
        }
    }
    assert_eq!(files_in(&env.inboxes[0].path), before_inbox);
    for name in ["refused.txt", "clash.txt", "good.png"] {
        assert!(
            !transitions_of(&env, name).contains(&"requeued".to_string()),
            "{name}"
        );
    }
    // Several paths: each is answered on its own; one refusal makes the exit status 1.
    let by_hand = failed.join("by-hand.png");
    let (code, text) = run_bin(
        &[
            "requeue",
            clash.to_str().unwrap(),
            by_hand.to_str().unwrap(),
        ],
        &config,
        &[],
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("clash.txt: requeued"), "{text}");
    assert!(text.contains("by-hand.png: not requeued"), "{text}");
    assert!(by_hand.exists());
    wait_for_second_run(&env, "clash.txt", &clash).await;
    daemon.stop().await;
}
