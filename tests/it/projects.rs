//! Issue 10, "Passport Auto and projects": the tariff decides whether `process_info` is sent
//! and what the result looks like; each inbox sends its own project under the field name it
//! configures; both are part of "the same request" for the duplicate rule.

use beorg_hotfolder::sidecar::{ErrorKind, Status};

use crate::helpers::*;

/// Adds an inbox of `doc_type` in folders named `name` (two inboxes of one type need their
/// own folders), with `extra` TOML lines; returns its index.
fn add_inbox(env: &mut TestEnv, name: &str, doc_type: &str, extra: &str) -> usize {
    let root = env.dir.path();
    let inbox = Inbox {
        doc_type: doc_type.to_string(),
        path: root.join("in").join(name),
        done: root.join("done").join(name),
        failed: root.join("failed").join(name),
        extra: extra.to_string(),
    };
    for d in [&inbox.path, &inbox.done, &inbox.failed] {
        std::fs::create_dir_all(d).unwrap();
    }
    env.inboxes.push(inbox);
    env.inboxes.len() - 1
}

/// The project field and value the emulator saw with the submit that carried `bytes`.
fn project_sent_with(env: &TestEnv, bytes: &[u8]) -> Vec<(String, String)> {
    let sha = sha256_hex(bytes);
    env.submits()
        .into_iter()
        .filter(|r| r.image_sha256.contains(&sha))
        .filter_map(|r| r.project)
        .collect()
}

fn pair(field: &str, value: &str) -> (String, String) {
    (field.to_string(), value.to_string())
}

#[tokio::test]
async fn passport_auto_sends_no_process_info_and_keeps_the_flat_result() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    env.inboxes[0].extra = "tariff = \"passport_auto\"".into();
    let daemon = env.start();
    env.drop_scan(0, "auto.png", 1001, None);
    let sidecar = env.sidecar(0, "auto.png").await;
    assert_eq!(sidecar.status, Status::Done, "{:?}", sidecar.error);
    assert_eq!(sidecar.doc_type, "PASSPORT", "the inbox's type");
    let result = sidecar.result.expect("the result is kept");
    assert!(result.get("documents").is_none(), "{result}");
    assert!(result["data"]["LastName"].is_string(), "{result}");
    assert!(result["metadata"]["confidences"].is_object(), "{result}");
    assert_eq!(result["verifications"]["status"], 0, "{result}");
    let submits = env.submits();
    assert_eq!(submits.len(), 1);
    assert!(!submits[0].process_info, "no process_info on the wire");
    assert!(submits[0].types.is_empty());
    assert!(env.inboxes[0].done.join("auto.png").exists());
    daemon.stop().await;
}

/// A broken document in the flat shape (`broken` at the top) fails like one in `documents`.
#[tokio::test]
async fn a_broken_passport_auto_result_goes_to_failed() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    env.inboxes[0].extra = "tariff = \"passport_auto\"".into();
    let daemon = env.start();
    env.drop_scan(0, "blurred.png", 1002, Some("BEORG-EMU:broken"));
    let sidecar = env.sidecar(0, "blurred.png").await;
    assert_eq!(sidecar.status, Status::Failed);
    let e = sidecar.error.expect("error");
    assert_eq!(e.kind, ErrorKind::Broken);
    assert!(e.message.contains("Документ не читается"), "{}", e.message);
    assert!(sidecar.result.is_some(), "the API's answer is kept");
    assert!(env.inboxes[0].failed.join("blurred.png").exists());
    daemon.stop().await;
}

#[tokio::test]
async fn each_inbox_sends_its_project_under_its_field_name() {
    let mut env = TestEnv::new(&["PASSPORT", "OTPR"]).await;
    env.inboxes[1].extra = "project_id = \"U_RATE_3\"\nproject_field = \"campaign_id\"".into();
    env.extra_tables = "project_id = \"U_RATE_7\"\n".into();
    // `extra_tables` follows [defaults]: U_RATE_7 is the default of every inbox without its
    // own, instead of [api]'s U_RATE_2.
    let snils = add_inbox(&mut env, "snils", "SNILS", "");
    let daemon = env.start();
    let passport = env.drop_scan(0, "p.png", 1011, None);
    let otpr = env.drop_scan(1, "o.png", 1012, None);
    let snils_scan = env.drop_scan(snils, "s.png", 1013, None);
    for (i, name) in [(0, "p.png"), (1, "o.png"), (snils, "s.png")] {
        let sidecar = env.sidecar(i, name).await;
        assert_eq!(sidecar.status, Status::Done, "{name}: {:?}", sidecar.error);
    }
    let read = |path: &std::path::Path, inbox: usize| {
        std::fs::read(env.inboxes[inbox].done.join(path.file_name().unwrap())).unwrap()
    };
    assert_eq!(
        project_sent_with(&env, &read(&passport, 0)),
        vec![pair("project_id", "U_RATE_7")]
    );
    assert_eq!(
        project_sent_with(&env, &read(&otpr, 1)),
        vec![pair("campaign_id", "U_RATE_3")]
    );
    assert_eq!(
        project_sent_with(&env, &read(&snils_scan, snils)),
        vec![pair("project_id", "U_RATE_7")]
    );
    daemon.stop().await;
}

/// The duplicate rule's "same request" includes the project and the tariff: the same scan in
/// inboxes that differ only in one of them is sent (and paid for) once per inbox; in an inbox
/// asking exactly the same, it is answered from the first document. (The field name is in
/// the request too, see `submit::request_key`'s unit test; the emulator, like the vendor's
/// pages, takes both names for one project, so it is not exercised here.)
#[tokio::test]
async fn the_same_scan_differing_only_in_project_or_tariff_is_sent_again() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    let other_project = add_inbox(&mut env, "project", "PASSPORT", "project_id = \"U_RATE_3\"");
    let auto = add_inbox(&mut env, "auto", "PASSPORT", "tariff = \"passport_auto\"");
    let same = add_inbox(&mut env, "same", "PASSPORT", "project_id = \"U_RATE_2\"");
    let daemon = env.start();
    let scan = beorg_emulator::samples::page_png(1021, None);
    // One after the other, so the last inbox finds the first one's document in the journal.
    let mut documents = Vec::new();
    for i in [0, other_project, auto, same] {
        env.drop_bytes(i, "scan.png", &scan);
        let sidecar = env.sidecar(i, "scan.png").await;
        assert_eq!(
            sidecar.status,
            Status::Done,
            "inbox {i}: {:?}",
            sidecar.error
        );
        documents.push((sidecar.document_id.unwrap(), sidecar.duplicate_of));
    }
    let submits = env.submits();
    assert_eq!(
        submits.iter().filter(|r| r.status == 200).count(),
        3,
        "the first, the other project and the other tariff are new documents: {submits:?}"
    );
    assert!(
        submits.iter().all(|r| r.status != 409),
        "nothing was refused as a duplicate: {submits:?}"
    );
    let ids: std::collections::BTreeSet<&String> = documents[..3].iter().map(|(d, _)| d).collect();
    assert_eq!(ids.len(), 3, "{documents:?}");
    assert!(
        documents[..3].iter().all(|(_, dup)| dup.is_none()),
        "{documents:?}"
    );
    assert_eq!(
        documents[3],
        (documents[0].0.clone(), Some(documents[0].0.clone())),
        "asked the same way as the first: answered from its document"
    );
    daemon.stop().await;
}

/// Refused at start with the key named: "Passport Auto" with `key` or `stages`, and values
/// that are not among the allowed ones.
#[tokio::test]
async fn bad_tariff_or_project_settings_are_refused_at_start() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    let cases = [
        (
            "tariff = \"passport_auto\"\nstages = [\"verification\"]",
            &["inbox[0].tariff", "`stages`", "process_info"][..],
        ),
        (
            "tariff = \"passport_auto\"\nkey = \"PASSPORT1\"",
            &["inbox[0].tariff", "`key`", "process_info"][..],
        ),
        (
            "tariff = \"passport-auto\"",
            &["tariff", "universal", "passport_auto"][..],
        ),
        (
            "project_field = \"campaign\"",
            &["project_field", "project_id", "campaign_id"][..],
        ),
        ("project_id = \"\"", &["inbox[0].project_id"][..]),
    ];
    for (extra, expected) in cases {
        env.inboxes[0].extra = extra.to_string();
        // A config that is not refused would run on: the wait's limit fails the test then
        // (and the process is killed when dropped).
        let mut daemon = env.spawn_binary(&[]);
        let status = daemon.wait(std::time::Duration::from_secs(20)).await;
        let out = daemon.stderr();
        assert!(!status.success(), "{extra}: {out}");
        for want in expected {
            assert!(out.contains(want), "{extra}: no {want} in {out}");
        }
        assert!(!out.contains(TOKEN), "{out}");
    }
    assert!(env.submits().is_empty());
}
