//! Issue 10, document sets: every subfolder of a `sets` inbox is one request (passport +
//! selfie with biometrics), with the guarantees single files have: taken only complete,
//! claimed whole, refused before anything is paid, moved whole with one sidecar, resumed after
//! kill -9 without paying twice.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use beorg_emulator::Endpoint;
use beorg_emulator::samples::page_png;
use beorg_hotfolder::sidecar::{ErrorKind, Sidecar, Status};
use rustix::process::Signal;

use crate::helpers::*;

/// One PASSPORT inbox configured with `extra` (e.g. [`KYC`]).
async fn env_with(extra: &str) -> TestEnv {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    env.inboxes[0].extra = extra.to_string();
    env
}

/// Writes `bytes` as `set/name` in inbox `i` (hidden temp name, then rename, as a copy
/// program does); creates the set folder if needed.
fn put(env: &TestEnv, i: usize, set: &str, name: &str, bytes: &[u8]) -> PathBuf {
    let folder = env.inboxes[i].path.join(set);
    std::fs::create_dir_all(&folder).unwrap();
    let temp = folder.join(format!(".incoming-{name}"));
    std::fs::write(&temp, bytes).unwrap();
    let path = folder.join(name);
    std::fs::rename(&temp, &path).unwrap();
    path
}

/// Builds a set in a hidden folder of the inbox, then renames it into place whole.
fn put_set(env: &TestEnv, i: usize, set: &str, files: &[(&str, Vec<u8>)]) {
    let hidden = format!(".building-{set}");
    for (name, bytes) in files {
        let folder = env.inboxes[i].path.join(&hidden);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(name), bytes).unwrap();
    }
    std::fs::rename(
        env.inboxes[i].path.join(&hidden),
        env.inboxes[i].path.join(set),
    )
    .unwrap();
}

/// Waits for `<set>.json` in inbox `i`'s done or failed folder.
async fn set_sidecar(env: &TestEnv, i: usize, set: &str) -> (Sidecar, PathBuf) {
    let inbox = env.inboxes[i].clone();
    let path = wait_for(&format!("sidecar of set {set}"), || {
        [&inbox.done, &inbox.failed]
            .map(|dir| layout::sidecar_path(&dir.join(set)))
            .into_iter()
            .find(|p| p.exists())
    })
    .await;
    let folder = path.with_file_name(set);
    (read_sidecar(&path), folder)
}

fn names_in(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_passport_and_selfie_set_is_one_request_with_its_process_info() {
    let env = env_with(KYC).await;
    let daemon = env.start();
    let (passport, selfie) = (page_png(10_001, None), page_png(10_002, None));
    put_set(
        &env,
        0,
        "kyc-1",
        &[
            ("passport.png", passport.clone()),
            ("selfie.png", selfie.clone()),
        ],
    );
    let (sidecar, folder) = set_sidecar(&env, 0, "kyc-1").await;
    assert_eq!(sidecar.status, Status::Done, "{:?}", sidecar.error);
    assert_eq!(folder, env.inboxes[0].done.join("kyc-1"), "done/, whole");
    assert_eq!(names_in(&folder), ["passport.png", "selfie.png"]);
    assert!(!env.inboxes[0].path.join("kyc-1").exists());

    let submits = env.submits();
    assert_eq!(submits.len(), 1, "one request for the set");
    assert_eq!(
        submits[0].image_sha256,
        [sha256_hex(&passport), sha256_hex(&selfie)],
        "both images, in name order"
    );
    assert_eq!(
        submits[0].process_info_sent.clone().unwrap(),
        serde_json::json!([
            {"type": "PASSPORT", "key": "PASSPORT1", "options": {"stages": ["biometry_match"], "relation": {"biometry_match": "SELFIE1"}}},
            {"type": "SELFIE", "key": "SELFIE1", "options": {"stages": ["biometry_liveness"]}}
        ])
    );

    // The sidecar: the set's name, hash and total; its files in the order sent.
    assert_eq!(sidecar.doc_type, "PASSPORT", "the inbox's type");
    assert_eq!(sidecar.file, "kyc-1");
    assert_eq!(sidecar.source.name, "kyc-1");
    assert_eq!(sidecar.source.size, (passport.len() + selfie.len()) as u64);
    let lines = {
        let mut lines = [
            format!("{}  passport.png\n", sha256_hex(&passport)),
            format!("{}  selfie.png\n", sha256_hex(&selfie)),
        ];
        lines.sort();
        lines.concat()
    };
    assert_eq!(
        sidecar.source.sha256.as_deref(),
        Some(sha256_hex(lines.as_bytes()).as_str()),
        "the set hash as the README defines it"
    );
    let files = sidecar.source.files.clone().expect("source.files");
    let described: Vec<(String, String, String, u64)> = files
        .iter()
        .map(|f| (f.name.clone(), f.doc_type.clone(), f.key.clone(), f.size))
        .collect();
    assert_eq!(
        described,
        [
            (
                "passport.png".into(),
                "PASSPORT".into(),
                "PASSPORT1".into(),
                passport.len() as u64
            ),
            (
                "selfie.png".into(),
                "SELFIE".into(),
                "SELFIE1".into(),
                selfie.len() as u64
            ),
        ]
    );
    assert_eq!(files[1].sha256, sha256_hex(&selfie));
    let result = sidecar.result.expect("result");
    let documents = result["documents"].as_array().unwrap();
    assert_eq!(documents.len(), 2);
    assert!(
        documents[0]["biometrics"]["match_faces"]["similarity"].is_number(),
        "{result}"
    );
    assert!(
        documents[1]["biometrics"]["liveness"]["probability"].is_number(),
        "{result}"
    );
    // Private, like a single file: the folder 0750, its files 0640, the sidecar 0640.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&folder), 0o750);
    assert_eq!(mode(&folder.join("selfie.png")), 0o640);
    assert_eq!(mode(&layout::sidecar_path(&folder)), 0o640);
    daemon.stop().await;
}

/// Natural order (`page2` before `page10`), and keys made unique in that order.
#[tokio::test]
async fn a_sets_images_go_in_natural_name_order_with_unique_keys() {
    let env = env_with("sets = true").await;
    let daemon = env.start();
    let pages: Vec<(&str, Vec<u8>)> = ["page10.png", "page2.png", "page1.png"]
        .iter()
        .enumerate()
        .map(|(n, name)| (*name, page_png(10_100 + n as u64, None)))
        .collect();
    put_set(&env, 0, "notary", &pages);
    let (sidecar, _) = set_sidecar(&env, 0, "notary").await;
    assert_eq!(sidecar.status, Status::Done, "{:?}", sidecar.error);
    let sha = |name: &str| sha256_hex(&pages.iter().find(|p| p.0 == name).unwrap().1);
    let submits = env.submits();
    assert_eq!(
        submits[0].image_sha256,
        [sha("page1.png"), sha("page2.png"), sha("page10.png")]
    );
    let keys: Vec<String> = sidecar
        .source
        .files
        .unwrap()
        .iter()
        .map(|f| format!("{} {}", f.name, f.key))
        .collect();
    assert_eq!(
        keys,
        [
            "page1.png PASSPORT1",
            "page2.png PASSPORT2",
            "page10.png PASSPORT3"
        ]
    );
    daemon.stop().await;
}

/// A set copied file by file over several seconds (each gap shorter than `settle`, the last
/// file written in two halves with a pause longer than `settle` while open) is sent once,
/// complete.
#[tokio::test]
async fn a_set_written_file_by_file_is_sent_once_complete() {
    let env = env_with("sets = true\nsettle = \"1s\"").await;
    let daemon = env.start();
    let pages: Vec<Vec<u8>> = (0..4).map(|n| page_png(10_200 + n, None)).collect();
    for (n, bytes) in pages.iter().enumerate().take(3) {
        put(&env, 0, "slow", &format!("p{n}.png"), bytes);
        // Not a wait: the copier's gap between files (shorter than `settle`), the behaviour
        // under test.
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    {
        use std::io::Write;
        let path = env.inboxes[0].path.join("slow").join("p3.png");
        let mut file = std::fs::File::create(&path).unwrap();
        let half = pages[3].len() / 2;
        file.write_all(&pages[3][..half]).unwrap();
        file.sync_all().unwrap();
        // Longer than `settle`: the open writer and the cut-off file hold the set.
        holds_for(
            "nothing sent while the set grows",
            Duration::from_millis(1500),
            || env.submits().is_empty(),
        )
        .await;
        assert!(env.submits().is_empty(), "nothing sent while the set grows");
        file.write_all(&pages[3][half..]).unwrap();
    }
    let (sidecar, folder) = set_sidecar(&env, 0, "slow").await;
    assert_eq!(sidecar.status, Status::Done, "{:?}", sidecar.error);
    let submits = env.submits();
    assert_eq!(submits.len(), 1, "sent once");
    let expected: Vec<String> = pages.iter().map(|p| sha256_hex(p)).collect();
    assert_eq!(submits[0].image_sha256, expected, "complete, in order");
    assert_eq!(names_in(&folder).len(), 4);
    daemon.stop().await;
}

#[tokio::test]
async fn a_set_with_a_ready_file_waits_for_it() {
    let env = env_with(&format!("ready_file = \"READY\"\n{KYC}")).await;
    let daemon = env.start();
    put_set(
        &env,
        0,
        "kyc-2",
        &[
            ("passport.png", page_png(10_301, None)),
            ("selfie.png", page_png(10_302, None)),
        ],
    );
    let folder = env.inboxes[0].path.join("kyc-2");
    holds_for(
        "the set waits for READY",
        Duration::from_millis(1500),
        || folder.is_dir() && env.submits().is_empty(),
    )
    .await;
    std::fs::write(folder.join("READY"), b"").unwrap();
    let (sidecar, done) = set_sidecar(&env, 0, "kyc-2").await;
    assert_eq!(sidecar.status, Status::Done, "{:?}", sidecar.error);
    assert_eq!(
        names_in(&done),
        ["READY", "passport.png", "selfie.png"],
        "the ready file moves with the set"
    );
    assert_eq!(env.submits()[0].image_sha256.len(), 2, "READY is not sent");
    assert_eq!(sidecar.source.files.unwrap().len(), 2);
    daemon.stop().await;
}

/// 11 files, a missing selfie, two files for one key, a file too small, a folder inside:
/// each set goes to failed/ whole as `invalid_file` naming the file and the fix, and no
/// request is made.
#[tokio::test]
async fn sets_that_cannot_be_sent_fail_before_any_request() {
    let env = env_with(KYC).await;
    let daemon = env.start();
    let page = |seed: u64| page_png(10_400 + seed, None);
    let eleven: Vec<(String, Vec<u8>)> = (0..11).map(|n| (format!("p{n}.png"), page(n))).collect();
    let eleven: Vec<(&str, Vec<u8>)> = eleven
        .iter()
        .map(|(n, b)| (n.as_str(), b.clone()))
        .collect();
    put_set(&env, 0, "eleven", &eleven);
    put_set(&env, 0, "no-selfie", &[("passport.png", page(20))]);
    put_set(
        &env,
        0,
        "two-passports",
        &[
            ("a.png", page(21)),
            ("b.png", page(22)),
            ("selfie.png", page(23)),
        ],
    );
    // Complete, but under the service's 10 KB and 1000 px.
    let tiny = beorg_emulator::samples::sized_png(300, 300, 10_424, None);
    put_set(
        &env,
        0,
        "tiny",
        &[("passport.png", page(25)), ("selfie.png", tiny)],
    );
    let cases = [
        ("eleven", "11 files"),
        (
            "no-selfie",
            "This set needs a selfie for the face match of passport.png (PASSPORT1); none of its files matches *selfie*",
        ),
        (
            "two-passports",
            "a.png and b.png both claim the key PASSPORT1",
        ),
        ("tiny", "selfie.png in the set tiny:"),
    ];
    for (set, says) in cases {
        let (sidecar, folder) = set_sidecar(&env, 0, set).await;
        assert_eq!(folder, env.inboxes[0].failed.join(set), "{set}");
        assert!(folder.is_dir(), "{set}: moved whole");
        let error = sidecar.error.expect("error");
        assert_eq!(error.kind, ErrorKind::InvalidFile, "{set}");
        assert!(error.message.contains(says), "{set}: {}", error.message);
        assert!(sidecar.source.sha256.is_some(), "{set}");
    }
    assert!(env.submits().is_empty(), "no request for any of them");
    daemon.stop().await;
}

#[tokio::test]
async fn a_set_with_a_broken_document_fails_naming_the_file() {
    let env = env_with(KYC).await;
    let daemon = env.start();
    put_set(
        &env,
        0,
        "kyc-3",
        &[
            ("passport.png", page_png(10_501, None)),
            ("selfie.png", page_png(10_502, Some("BEORG-EMU:broken"))),
        ],
    );
    let (sidecar, folder) = set_sidecar(&env, 0, "kyc-3").await;
    assert_eq!(folder, env.inboxes[0].failed.join("kyc-3"));
    let error = sidecar.error.expect("error");
    assert_eq!(error.kind, ErrorKind::Broken);
    assert!(
        error.message.contains("selfie.png (SELFIE1): "),
        "{}",
        error.message
    );
    assert!(
        !error.message.contains("passport.png"),
        "only the broken file is named: {}",
        error.message
    );
    assert!(sidecar.result.is_some(), "the API's answer is kept");
    daemon.stop().await;
}

/// done/ on another filesystem: the folder is copied whole, then the work copy removed;
/// nothing is left behind in the work folder or as a temp folder in done/.
#[tokio::test]
async fn a_set_moves_whole_to_done_on_another_filesystem() {
    let mut env = env_with(KYC).await;
    let tmpfs = Tmpfs::mount(&env.dir.path().join("done-tmpfs"), "32m").expect(
        "mounting a tmpfs failed: this test needs root (CI runs as root); run `cargo test` as root",
    );
    env.inboxes[0].done = tmpfs.path.clone();
    let daemon = env.start();
    let (passport, selfie) = (page_png(10_601, None), page_png(10_602, None));
    put_set(
        &env,
        0,
        "kyc-4",
        &[
            ("passport.png", passport.clone()),
            ("selfie.png", selfie.clone()),
        ],
    );
    let (sidecar, folder) = set_sidecar(&env, 0, "kyc-4").await;
    assert_eq!(sidecar.status, Status::Done, "{:?}", sidecar.error);
    assert_eq!(folder, tmpfs.path.join("kyc-4"));
    assert_eq!(
        std::fs::read(folder.join("passport.png")).unwrap(),
        passport
    );
    assert_eq!(std::fs::read(folder.join("selfie.png")).unwrap(), selfie);
    assert_eq!(
        names_in(&tmpfs.path),
        ["kyc-4", "kyc-4.json"],
        "no temp folder left"
    );
    assert!(files_in(&layout::work_dir(&env.inboxes[0].path)).is_empty());
    assert!(names_in(&layout::work_dir(&env.inboxes[0].path)).is_empty());
    daemon.stop().await;
}

/// A loose file in a sets inbox is left alone (with a WARN), not sent.
#[tokio::test]
async fn a_loose_file_in_a_sets_inbox_is_left_alone() {
    let env = env_with(KYC).await;
    let daemon = env.start();
    env.drop_scan(0, "loose.png", 10_701, None);
    put_set(
        &env,
        0,
        "kyc-5",
        &[
            ("passport.png", page_png(10_702, None)),
            ("selfie.png", page_png(10_703, None)),
        ],
    );
    let (sidecar, _) = set_sidecar(&env, 0, "kyc-5").await;
    assert_eq!(sidecar.status, Status::Done, "{:?}", sidecar.error);
    assert!(env.inboxes[0].path.join("loose.png").exists());
    assert_eq!(env.submits().len(), 1);
    daemon.stop().await;
}

const CHAOS_SETS: usize = 12;
const CHAOS_KILLS: usize = 10;

/// SIGKILL at random moments while sets flow: each set ends once, whole, with its sidecar,
/// and the API accepts each set at most once.
#[tokio::test]
async fn sigkill_at_random_moments_while_sets_flow_ends_each_set_once_whole_and_paid_once() {
    let mut env = env_with(KYC).await;
    env.api("requests_per_second = 20.0");
    // Two sets a second: the batch spans most of the kills.
    env.api("documents_per_minute = 120");
    let seed = fastrand::u64(..);
    eprintln!("sets chaos seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    // Set name → the sha256 of its first image (passport.png, sent first).
    let mut sets = HashMap::new();
    for n in 0..CHAOS_SETS {
        let name = format!("kyc-{n:02}");
        let passport = page_png(seed.wrapping_add(2 * n as u64), None);
        let selfie = page_png(seed.wrapping_add(2 * n as u64 + 1), None);
        sets.insert(name.clone(), sha256_hex(&passport));
        put_set(
            &env,
            0,
            &name,
            &[("passport.png", passport), ("selfie.png", selfie)],
        );
    }
    let mut logs = env.sigkill_at_random_moments(&mut rng, CHAOS_KILLS).await;
    let mut last = env.spawn_binary(&[]);
    let inbox = env.inboxes[0].clone();
    wait_until("every set finished", || {
        sets.keys().all(|name| {
            layout::sidecar_path(&inbox.done.join(name)).exists()
                || layout::sidecar_path(&inbox.failed.join(name)).exists()
        })
    })
    .await;
    // The sets may all have finished before the last start: TERM only once it handles it.
    wait_until("the last daemon is running", || {
        last.stderr().contains("running")
    })
    .await;
    last.signal(Signal::TERM);
    let status = last.wait(Duration::from_secs(5)).await;
    logs.push_str(&last.stderr());
    assert!(status.success(), "{status:?}: {}", last.stderr());
    assert!(!logs.contains("panicked"), "{logs}");

    let (done, failed) = (names_in(&inbox.done), names_in(&inbox.failed));
    assert_eq!(
        done.len() + failed.len(),
        2 * CHAOS_SETS,
        "each set once, with its sidecar: done {done:?}, failed {failed:?}"
    );
    assert!(names_in(&inbox.path).iter().all(|n| n.starts_with('.')));
    assert!(names_in(&layout::work_dir(&inbox.path)).is_empty());
    let mut accepted: HashMap<String, usize> = HashMap::new();
    for r in env.requests(Endpoint::Submit) {
        assert!(
            r.image_sha256.len() == 2 || r.status != 200,
            "whole sets only"
        );
        if r.status == 200 {
            *accepted.entry(r.image_sha256[0].clone()).or_default() += 1;
        }
    }
    for (name, sha) in &sets {
        assert!(
            accepted.get(sha).copied().unwrap_or(0) <= 1,
            "{name} accepted twice"
        );
        let in_done = done.contains(name);
        let folder = if in_done { &inbox.done } else { &inbox.failed };
        assert_eq!(names_in(&folder.join(name)), ["passport.png", "selfie.png"]);
        let sidecar = read_sidecar(&layout::sidecar_path(&folder.join(name)));
        if !in_done {
            // Only an in-doubt window (killed while sending) may end as a duplicate.
            let e = sidecar.error.expect("error");
            assert_eq!(e.kind, ErrorKind::Duplicate, "{name}: {}", e.message);
        }
    }
}

/// `check` refuses what the daemon refuses at start, naming the key and the fix.
#[tokio::test]
async fn check_refuses_bad_set_configs_naming_the_key() {
    let cases = [
        (
            "sets = true\nrecursive = true",
            "inbox[0].sets",
            "recursive",
        ),
        (
            "sets = true\ntariff = \"passport_auto\"",
            "inbox[0].tariff",
            "`sets`",
        ),
        (
            "sets = true\n[[inbox.documents]]\nmatch = \"*\"\ntype = \"PASSPORT\"\nrelation = { biometry_match = \"SELFIE1\" }",
            "inbox[0].documents[0].relation",
            "add a rule with key = \"SELFIE1\"",
        ),
        (
            "[[inbox.documents]]\nmatch = \"*selfie*\"\ntype = \"SELFIE\"",
            "inbox[0].documents",
            "no `sets = true`",
        ),
    ];
    for (extra, key, says) in cases {
        let env = env_with(extra).await;
        let config = env.write_config();
        let (code, text) = run_bin(&["check"], &config, &[]);
        assert_ne!(code, Some(0), "{extra}: {text}");
        assert!(text.contains(key), "{extra}: {text}");
        assert!(text.contains(says), "{extra}: {text}");
        assert!(!text.contains(TOKEN), "{text}");
    }
}

/// `status` counts a set as one, waiting in the inbox or claimed, and done today.
#[tokio::test]
async fn status_counts_a_set_as_one() {
    let env = env_with(&format!("ready_file = \"READY\"\n{KYC}")).await;
    let daemon = env.start();
    for set in ["kyc-a", "kyc-b"] {
        put_set(
            &env,
            0,
            set,
            &[
                ("passport.png", page_png(10_800 + set.len() as u64, None)),
                (
                    "selfie.png",
                    page_png(10_900 + set.as_bytes()[4] as u64, None),
                ),
            ],
        );
    }
    let snapshot = layout::status_path(&env.state_dir);
    wait_until("the daemon's first snapshot", || snapshot.exists()).await;
    wait_until("status sees two sets waiting", || {
        env.status()["inboxes"][0]["waiting"] == 2
    })
    .await;
    std::fs::write(env.inboxes[0].path.join("kyc-a").join("READY"), b"").unwrap();
    set_sidecar(&env, 0, "kyc-a").await;
    wait_until("status: one done, one waiting", || {
        let status = env.status();
        status["inboxes"][0]["done_today"] == 1 && status["inboxes"][0]["waiting"] == 1
    })
    .await;
    daemon.stop().await;
}

/// 402 pauses a set (it waits, claimed, never fails); server errors are retried; the set is
/// accepted once, whole.
#[tokio::test]
async fn a_set_waits_out_402_and_retries_server_errors() {
    let env = env_with(KYC).await;
    // Both faults are set before anything is sent: the emulator picks a forced status when a
    // request arrives, so setting it between two requests could miss one already on its way.
    env.emulator.fail_next(Endpoint::Submit, 503, 2);
    env.emulator.set_no_money(true);
    let daemon = env.start();
    put_set(
        &env,
        0,
        "kyc-6",
        &[
            ("passport.png", page_png(11_001, None)),
            ("selfie.png", page_png(11_002, None)),
        ],
    );
    wait_until("a 402 for the set", || {
        env.submits().iter().any(|r| r.status == 402)
    })
    .await;
    let failed_dir = env.inboxes[0].failed.clone();
    holds_for(
        "the set waits, never fails",
        Duration::from_millis(800),
        || !layout::sidecar_path(&failed_dir.join("kyc-6")).exists(),
    )
    .await;
    env.emulator.set_no_money(false);
    let (sidecar, _) = set_sidecar(&env, 0, "kyc-6").await;
    assert_eq!(sidecar.status, Status::Done, "{:?}", sidecar.error);
    let statuses: Vec<u16> = env.submits().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(statuses.contains(&503), "{statuses:?}");
    daemon.stop().await;
}

/// The duplicate rule on the set as a whole: the same files under the same names, asked the
/// same way, are answered from the first set's document; nothing is paid twice.
#[tokio::test]
async fn the_same_set_again_is_answered_from_its_document() {
    let env = env_with(KYC).await;
    let daemon = env.start();
    let files = [
        ("passport.png", page_png(11_101, None)),
        ("selfie.png", page_png(11_102, None)),
    ];
    put_set(&env, 0, "first", &files);
    let (first, _) = set_sidecar(&env, 0, "first").await;
    assert_eq!(first.status, Status::Done, "{:?}", first.error);
    put_set(&env, 0, "again", &files);
    let (again, _) = set_sidecar(&env, 0, "again").await;
    assert_eq!(again.status, Status::Done, "{:?}", again.error);
    assert_eq!(again.duplicate_of, first.document_id);
    assert_eq!(again.source.sha256, first.source.sha256);
    assert_eq!(env.submits().len(), 1, "paid once");
    daemon.stop().await;
}

/// Killed between the claim's rename and its journal row: the set's folder waits in the work
/// folder without a row; the next start adopts it as a set and finishes it.
#[tokio::test]
async fn a_set_folder_left_in_the_work_folder_is_adopted() {
    let env = env_with(KYC).await;
    let work = layout::work_dir(&env.inboxes[0].path);
    let orphan = work.join("1700000000000-0_kyc-7");
    std::fs::create_dir_all(&orphan).unwrap();
    std::fs::write(orphan.join("passport.png"), page_png(11_201, None)).unwrap();
    std::fs::write(orphan.join("selfie.png"), page_png(11_202, None)).unwrap();
    let daemon = env.start();
    let (sidecar, folder) = set_sidecar(&env, 0, "kyc-7").await;
    assert_eq!(sidecar.status, Status::Done, "{:?}", sidecar.error);
    assert_eq!(names_in(&folder), ["passport.png", "selfie.png"]);
    assert_eq!(sidecar.source.files.unwrap().len(), 2);
    assert_eq!(env.submits()[0].image_sha256.len(), 2, "sent as one set");
    assert!(names_in(&work).is_empty());
    daemon.stop().await;
}

/// Issues 10 + 11: a set whose passport face does not match its selfie goes whole to the
/// review folder; its normalised documents name the member each belongs to, and the reason
/// names the file.
#[tokio::test]
async fn a_set_whose_faces_do_not_match_goes_to_review_naming_its_files() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    // `review` before the `[[inbox.documents]]` tables, which end the inbox's own keys.
    let review = env.review_folder(0, true);
    env.inboxes[0].extra.push_str(KYC);
    let _daemon = env.start();
    let passport = page_png(10_101, Some("BEORG-EMU:other-face"));
    put_set(
        &env,
        0,
        "kyc-other",
        &[
            ("passport.png", passport),
            ("selfie.png", page_png(10_102, None)),
        ],
    );
    let sidecar = sidecar_in(&review, "kyc-other").await;
    assert_eq!(sidecar.status, Status::Review, "{:?}", sidecar.error);
    assert_eq!(
        names_in(&review.join("kyc-other")),
        ["passport.png", "selfie.png"]
    );
    let files: Vec<(Option<&str>, &str)> = sidecar
        .documents
        .iter()
        .map(|d| (d.key.as_deref(), d.file.as_str()))
        .collect();
    assert_eq!(
        files,
        [
            (Some("PASSPORT1"), "passport.png"),
            (Some("SELFIE1"), "selfie.png")
        ]
    );
    assert!(
        sidecar.review.iter().any(|r| r.starts_with("passport.png")),
        "the reason names the file: {:?}",
        sidecar.review
    );
}

/// A set whose name is taken in done/ lands beside it as `<name> (2)`, with its own sidecar;
/// the first set and its sidecar are untouched.
#[tokio::test]
async fn a_set_whose_name_is_taken_in_done_gets_a_numbered_name() {
    let env = env_with(KYC).await;
    let _daemon = env.start();
    put_set(
        &env,
        0,
        "kyc-2",
        &[
            ("passport.png", page_png(10_201, None)),
            ("selfie.png", page_png(10_202, None)),
        ],
    );
    let (first, _) = set_sidecar(&env, 0, "kyc-2").await;
    put_set(
        &env,
        0,
        "kyc-2",
        &[
            ("passport.png", page_png(10_203, None)),
            ("selfie.png", page_png(10_204, None)),
        ],
    );
    let done = env.inboxes[0].done.clone();
    let second = sidecar_in(&done, "kyc-2 (2)").await;
    assert_eq!(second.status, Status::Done, "{:?}", second.error);
    assert_eq!(second.file, "kyc-2 (2)");
    assert_eq!(second.source.name, "kyc-2");
    assert_ne!(second.source.sha256, first.source.sha256);
    assert_eq!(
        names_in(&done.join("kyc-2 (2)")),
        ["passport.png", "selfie.png"]
    );
    assert_eq!(
        read_sidecar(&layout::sidecar_path(&done.join("kyc-2"))),
        first
    );
}

/// A writer in its own thread, as a copy tool or scanner works: creates `temp` in `folder`,
/// writes `bytes` in as many chunks as `pauses` while keeping it open (pausing after each),
/// closes it and renames it to `name`.
fn write_then_rename(
    folder: PathBuf,
    temp: &str,
    name: &str,
    bytes: Vec<u8>,
    pauses: &[u64],
) -> std::thread::JoinHandle<std::io::Result<()>> {
    let (temp, name) = (folder.join(temp), folder.join(name));
    let pauses = pauses.to_vec();
    std::thread::spawn(move || {
        use std::io::Write;
        let mut file = std::fs::File::create(&temp)?;
        let chunks = bytes.chunks(bytes.len().div_ceil(pauses.len()));
        for (chunk, pause) in chunks.zip(pauses) {
            file.write_all(chunk)?;
            file.sync_data()?;
            // Not a wait: the slow writer's pause between chunks, the behaviour under test.
            std::thread::sleep(Duration::from_millis(pause));
        }
        drop(file);
        std::fs::rename(&temp, &name)
    })
}

/// A file of a set written under a temporary name (`p2.png.tmp`, a chunk now and then, each
/// pause longer than `settle`) and renamed when complete holds the set: it is sent once,
/// with that file, and the writer's rename works. Watched by events and by polling (where
/// only the temporary name holds it).
#[tokio::test]
async fn a_set_waits_while_a_member_is_still_written_under_a_temporary_name() {
    for watch in [
        "watch = \"events\"",
        "watch = \"poll\"\npoll_interval = \"100ms\"",
    ] {
        let env = env_with(&format!("sets = true\nsettle = \"500ms\"\n{watch}")).await;
        let daemon = env.start();
        let (p1, p2) = (page_png(11_001, None), page_png(11_002, None));
        let folder = env.inboxes[0].path.join("tmpw");
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("p1.png"), &p1).unwrap();
        let writer = write_then_rename(
            folder.clone(),
            "p2.png.tmp",
            "p2.png",
            p2.clone(),
            &[800, 800, 800, 800],
        );
        wait_until("the writer is done", || writer.is_finished()).await;
        writer
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("{watch}: the writer's rename failed: {e}"));
        let (sidecar, done) = set_sidecar(&env, 0, "tmpw").await;
        assert_eq!(sidecar.status, Status::Done, "{watch}: {:?}", sidecar.error);
        let submits = env.submits();
        assert_eq!(submits.len(), 1, "{watch}: sent once");
        assert_eq!(
            submits[0].image_sha256,
            [sha256_hex(&p1), sha256_hex(&p2)],
            "{watch}: sent with the file that was still arriving"
        );
        assert_eq!(names_in(&done), ["p1.png", "p2.png"], "{watch}");
        daemon.stop().await;
    }
}

/// A file of a set written under a hidden name (rsync's `.name.XXXXXX`) and left open
/// through a pause longer than `settle` holds the set until it is closed and renamed in.
#[tokio::test]
async fn a_set_waits_while_a_hidden_file_in_it_is_open_for_writing() {
    let env = env_with("sets = true\nsettle = \"500ms\"\nwatch = \"events\"").await;
    let daemon = env.start();
    let (p1, p2) = (page_png(11_101, None), page_png(11_102, None));
    let folder = env.inboxes[0].path.join("rsynced");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("p1.png"), &p1).unwrap();
    // The first pause is shorter than `settle`: a file created in a folder that appeared an
    // instant before may beat the watch on that folder; its next write is seen.
    let writer = write_then_rename(
        folder.clone(),
        ".p2.png.Xq81Zt",
        "p2.png",
        p2.clone(),
        &[200, 1500, 0],
    );
    wait_until("the writer is done", || writer.is_finished()).await;
    writer.join().unwrap().expect("the writer's rename works");
    let (sidecar, _) = set_sidecar(&env, 0, "rsynced").await;
    assert_eq!(sidecar.status, Status::Done, "{:?}", sidecar.error);
    let submits = env.submits();
    assert_eq!(submits.len(), 1);
    assert_eq!(submits[0].image_sha256, [sha256_hex(&p1), sha256_hex(&p2)]);
    daemon.stop().await;
}

/// A temporary name left in a set (a copy that stopped) holds it for `hold_limit` without a
/// change; then the set goes whole to failed/ as `invalid_file` naming the leftover, and is
/// never sent without it.
#[tokio::test]
async fn a_set_left_with_a_temporary_name_fails_naming_it_and_is_never_sent() {
    let mut env = env_with("sets = true\nsettle = \"300ms\"").await;
    env.daemon_extra.push("hold_limit = \"2s\"".into());
    let daemon = env.start();
    let started = std::time::Instant::now();
    put_set(
        &env,
        0,
        "stopped",
        &[
            ("p1.png", page_png(11_201, None)),
            ("p2.png.part", page_png(11_202, None)[..5000].to_vec()),
        ],
    );
    let (sidecar, failed) = set_sidecar(&env, 0, "stopped").await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "held for hold_limit first"
    );
    assert_eq!(sidecar.status, Status::Failed);
    let error = sidecar.error.expect("an error");
    assert_eq!(error.kind, ErrorKind::InvalidFile);
    assert!(
        error.message.contains("p2.png.part") && error.message.contains("temporary name"),
        "{}",
        error.message
    );
    assert!(failed.starts_with(&env.inboxes[0].failed));
    assert_eq!(names_in(&failed), ["p1.png", "p2.png.part"]);
    assert!(env.submits().is_empty(), "never sent without the leftover");
    daemon.stop().await;
}

/// Only a regular file counts as the `ready_file`: a symbolic link (`READY -> /etc/passwd`)
/// or a folder named READY leaves the set waiting, with a WARN; a regular READY sends it.
#[tokio::test]
async fn only_a_regular_file_counts_as_the_ready_file() {
    let env = env_with(&format!("ready_file = \"READY\"\n{KYC}")).await;
    let daemon = env.start();
    put_set(
        &env,
        0,
        "kyc-r",
        &[
            ("passport.png", page_png(11_301, None)),
            ("selfie.png", page_png(11_302, None)),
        ],
    );
    let folder = env.inboxes[0].path.join("kyc-r");
    let ready = folder.join("READY");
    std::os::unix::fs::symlink("/etc/passwd", &ready).unwrap();
    holds_for(
        "a linked READY is not ready",
        Duration::from_secs(2),
        || folder.is_dir() && env.submits().is_empty(),
    )
    .await;
    std::fs::remove_file(&ready).unwrap();
    std::fs::create_dir(&ready).unwrap();
    holds_for(
        "a READY folder is not ready",
        Duration::from_secs(2),
        || folder.is_dir() && env.submits().is_empty(),
    )
    .await;
    std::fs::remove_dir(&ready).unwrap();
    std::fs::write(&ready, b"").unwrap();
    let (sidecar, done) = set_sidecar(&env, 0, "kyc-r").await;
    assert_eq!(sidecar.status, Status::Done, "{:?}", sidecar.error);
    assert!(
        std::fs::symlink_metadata(done.join("READY"))
            .unwrap()
            .is_file()
    );
    daemon.stop().await;
}

/// `status` counts only set folders with something in them, and no age comes from the
/// epoch: an empty folder and one holding only `.DS_Store` are not waiting; a set whose
/// files carry a 1970 mtime (a copy that kept it) waits since it arrived, as does a single
/// file with such an mtime.
#[tokio::test]
async fn status_counts_no_empty_set_folder_and_no_age_from_the_epoch() {
    let mut env = env_with(&format!("ready_file = \"READY\"\n{KYC}")).await;
    let single = env.add_inbox("PASSPORT", "single", "");
    let daemon = env.start();
    let inbox = env.inboxes[0].path.clone();
    std::fs::create_dir(inbox.join("empty")).unwrap();
    std::fs::create_dir(inbox.join("finder")).unwrap();
    std::fs::write(inbox.join("finder").join(".DS_Store"), b"x").unwrap();
    put_set(
        &env,
        0,
        "kyc-1970",
        &[
            ("passport.png", page_png(11_401, None)),
            ("selfie.png", page_png(11_402, None)),
        ],
    );
    for name in ["passport.png", "selfie.png"] {
        let file = std::fs::File::options()
            .write(true)
            .open(inbox.join("kyc-1970").join(name))
            .unwrap();
        file.set_modified(std::time::UNIX_EPOCH).unwrap();
    }
    let snapshot = layout::status_path(&env.state_dir);
    wait_until("the daemon's first snapshot", || snapshot.exists()).await;
    let status = env.status();
    assert_eq!(status["inboxes"][0]["waiting"], 1, "{status}");
    let age = status["inboxes"][0]["oldest_waiting_seconds"]
        .as_u64()
        .unwrap_or_else(|| panic!("an age: {status}"));
    assert!(age < 3600, "waiting since it arrived, not 1970: {status}");
    // A single file with a 1970 mtime, held (cut off) so that it stays waiting.
    let held = env.inboxes[single].path.join("held.png");
    std::fs::write(&held, &page_png(11_403, None)[..4000]).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&held)
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH)
        .unwrap();
    let status = env.status();
    assert_eq!(status["inboxes"][single]["waiting"], 1, "{status}");
    let age = status["inboxes"][single]["oldest_waiting_seconds"]
        .as_u64()
        .unwrap_or_else(|| panic!("an age: {status}"));
    assert!(age < 3600, "a single file too: {status}");
    daemon.stop().await;
}

/// Mode, owner, inode and link count of `path` itself (a symlink is not followed).
fn stat_of(path: &Path) -> (u32, u32, u32, u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).unwrap();
    (m.mode() & 0o7777, m.uid(), m.gid(), m.ino(), m.nlink())
}

/// A 0600 file outside the inbox, owned by another user (uid/gid 4321): what a refused set
/// links to and must never change.
fn private_file_outside(env: &TestEnv, name: &str, seed: u64) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let outside = env.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let path = outside.join(name);
    std::fs::write(&path, page_png(seed, None)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let owner = Some(rustix::fs::Uid::from_raw(4321));
    let group = Some(rustix::fs::Gid::from_raw(4321));
    let chowned = rustix::fs::chown(&path, owner, group);
    assert!(
        precondition(
            chowned.is_ok(),
            &format!("this test gives a file another owner and chown said {chowned:?}"),
            "run the tests as root (CI does)",
        ),
        "skipped"
    );
    path
}

/// A set in the inbox with a plain passport, `selfie.png` hard-linked to a 0600 file outside
/// the inbox and `face.png` a symlink to another: built in a hidden folder, renamed in whole.
/// Returns the two outside files.
fn put_set_with_links(env: &TestEnv, set: &str) -> (PathBuf, PathBuf) {
    let (linked, target) = (
        private_file_outside(env, "secret.png", 10_801),
        private_file_outside(env, "face-secret.png", 10_802),
    );
    let hidden = env.inboxes[0].path.join(format!(".building-{set}"));
    std::fs::create_dir_all(&hidden).unwrap();
    std::fs::write(hidden.join("passport.png"), page_png(10_803, None)).unwrap();
    std::fs::hard_link(&linked, hidden.join("selfie.png")).unwrap();
    std::os::unix::fs::symlink(&target, hidden.join("face.png")).unwrap();
    std::fs::rename(&hidden, env.inboxes[0].path.join(set)).unwrap();
    (linked, target)
}

/// The refusal of a set with links names each, and says where the set went and that they
/// were not changed.
fn assert_says_where_each_file_is(sidecar: &Sidecar, folder: &Path, copied: bool) {
    let error = sidecar.error.as_ref().expect("an error");
    assert_eq!(error.kind, ErrorKind::InvalidFile);
    let says = &error.message;
    let (went, how) = if copied {
        (
            format!(
                "The set was copied to {}/ (another filesystem) as it was",
                folder.display()
            ),
            "are copies with the same modes, and the files they point to were not changed",
        )
    } else {
        (
            format!("The set was moved to {}/ as it was", folder.display()),
            "were not changed",
        )
    };
    for part in [
        "face.png is a symbolic link",
        "selfie.png has other hard links",
        &went,
        &format!(
            "face.png (a symbolic link) and selfie.png (a hard link to a file elsewhere) {how}"
        ),
    ] {
        assert!(says.contains(part), "{part:?} not in: {says}");
    }
    assert!(!says.contains("left in place"), "it is not: {says}");
}

/// A set with a member hard-linked to a private file outside the inbox and a member that is
/// a symlink to another is refused and moved whole to failed/: the outside files keep their
/// mode and owner, the link and the symlink are in failed/ exactly as they were (the same
/// inode, the same target), only the set's own file is made private, and the message says
/// where each file is.
#[tokio::test]
async fn a_refused_set_never_changes_a_linked_file_and_says_where_each_file_is() {
    let env = env_with("sets = true").await;
    let daemon = env.start();
    let (linked, target) = put_set_with_links(&env, "seth2");
    let (linked_before, target_before) = (stat_of(&linked), stat_of(&target));
    let (sidecar, folder) = set_sidecar(&env, 0, "seth2").await;
    assert_eq!(folder, env.inboxes[0].failed.join("seth2"));
    assert_eq!(
        names_in(&folder),
        ["face.png", "passport.png", "selfie.png"]
    );
    let mode_of = |p: &Path| stat_of(p).0;
    assert_eq!(mode_of(&linked), 0o600, "the hard-linked file outside");
    assert_eq!(stat_of(&linked), linked_before, "mode, owner, inode, links");
    assert_eq!(mode_of(&target), 0o600, "the symlink's target");
    assert_eq!(stat_of(&target), target_before, "the symlink's target");
    assert_eq!(
        stat_of(&folder.join("selfie.png")),
        linked_before,
        "the link in failed/ is the same inode, unchanged"
    );
    assert_eq!(
        std::fs::read_link(folder.join("face.png")).unwrap(),
        target,
        "the symlink as it was"
    );
    assert_eq!(mode_of(&folder.join("passport.png")), 0o640, "file_mode");
    assert_says_where_each_file_is(&sidecar, &folder, false);
    assert!(env.submits().is_empty());
    daemon.stop().await;
}

/// The same set refused onto a failed/ on another filesystem: a symlink is copied as a
/// symlink (never lost, never followed), the hard-linked file's copy keeps its 0600 (its
/// content is not made group-readable), and the outside files are unchanged.
#[tokio::test]
async fn a_refused_set_copied_to_another_filesystem_keeps_its_symlink_and_every_mode() {
    let mut env = env_with("sets = true").await;
    let Some(tmpfs) = Tmpfs::mount(&env.dir.path().join("failed-tmpfs"), "32m") else {
        return;
    };
    env.inboxes[0].failed = tmpfs.path.clone();
    let daemon = env.start();
    let (linked, target) = put_set_with_links(&env, "seth3");
    let (linked_before, target_before) = (stat_of(&linked), stat_of(&target));
    let (sidecar, folder) = set_sidecar(&env, 0, "seth3").await;
    assert_eq!(folder, tmpfs.path.join("seth3"));
    assert_eq!(
        names_in(&folder),
        ["face.png", "passport.png", "selfie.png"]
    );
    assert_eq!(
        std::fs::read_link(folder.join("face.png")).unwrap(),
        target,
        "the symlink copied as a symlink"
    );
    let (copy_mode, copy_uid, copy_gid, _, _) = stat_of(&folder.join("selfie.png"));
    assert_eq!(
        (copy_mode, copy_uid, copy_gid),
        (0o600, 4321, 4321),
        "the copy's mode and owner"
    );
    assert_eq!(stat_of(&folder.join("passport.png")).0, 0o640, "file_mode");
    assert_eq!(stat_of(&folder).0, 0o750, "the set's folder");
    assert_eq!(stat_of(&target), target_before);
    let (mode, uid, gid, ino, _) = stat_of(&linked);
    assert_eq!(
        (mode, uid, gid, ino),
        (
            linked_before.0,
            linked_before.1,
            linked_before.2,
            linked_before.3
        ),
        "the outside file"
    );
    assert_says_where_each_file_is(&sidecar, &folder, true);
    assert_eq!(names_in(&tmpfs.path), ["seth3", "seth3.json"]);
    daemon.stop().await;
}

/// A symlink to a folder directly in a sets inbox is not a set: it is never followed,
/// taken or changed, and the log says so once, while real sets go on.
#[tokio::test]
async fn a_symlinked_folder_in_a_sets_inbox_is_left_alone_with_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let env = env_with(KYC).await;
    let outside = env.dir.path().join("outside-set");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("passport.png"), page_png(10_901, None)).unwrap();
    std::fs::write(outside.join("selfie.png"), page_png(10_902, None)).unwrap();
    for name in ["passport.png", "selfie.png"] {
        let path = outside.join(name);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let before: Vec<_> = ["passport.png", "selfie.png"]
        .map(|n| stat_of(&outside.join(n)))
        .into();
    let link = env.inboxes[0].path.join("linked-set");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let mut daemon = env.spawn_binary(&[]);
    put_set(
        &env,
        0,
        "kyc-real",
        &[
            ("passport.png", page_png(10_903, None)),
            ("selfie.png", page_png(10_904, None)),
        ],
    );
    let (sidecar, _) = set_sidecar(&env, 0, "kyc-real").await;
    assert_eq!(sidecar.status, Status::Done, "{:?}", sidecar.error);
    wait_until("the WARN about the link", || {
        daemon
            .stderr()
            .contains("is a symbolic link in a sets inbox")
    })
    .await;
    daemon.signal(Signal::TERM);
    daemon.wait(Duration::from_secs(5)).await;
    assert!(
        link.symlink_metadata().unwrap().is_symlink(),
        "left in place"
    );
    let after: Vec<_> = ["passport.png", "selfie.png"]
        .map(|n| stat_of(&outside.join(n)))
        .into();
    assert_eq!(after, before, "the linked folder's files are unchanged");
    assert_eq!(env.submits().len(), 1, "only the real set is sent");
    let warnings = daemon
        .stderr()
        .matches("is a symbolic link in a sets inbox")
        .count();
    assert_eq!(warnings, 1, "one WARN: {}", daemon.stderr());
}

/// Gives `path` the modification time `mtime` (a copy that keeps the original's).
fn set_mtime(path: &Path, mtime: std::time::SystemTime) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(mtime).unwrap();
}

/// Oldest first holds between a set and a single file as between two files: a settled one
/// waits while an older one, seen just now, is still settling (here changed once after the
/// daemon saw it), whichever is the set. The set's age is its newest file's mtime.
#[tokio::test]
async fn a_set_and_a_single_file_go_oldest_first_while_the_older_is_still_settling() {
    let hour = Duration::from_secs(3600);
    for set_is_older in [true, false] {
        let mut env = env_with("sets = true\nsettle = \"1s\"").await;
        // Polled: the older file's change is seen by its stamp alone (no writer's events).
        let files = env.add_inbox(
            "PASSPORT",
            "files",
            "settle = \"1s\"\nwatch = \"poll\"\npoll_interval = \"100ms\"",
        );
        let now = std::time::SystemTime::now();
        let (older, younger) = (now - 2 * hour, now - hour);
        let (set_age, file_age) = if set_is_older {
            (older, younger)
        } else {
            (younger, older)
        };
        let mut set_pages = vec![page_png(11_401, None)];
        let mut scan = page_png(11_402, None);
        set_mtime(&put(&env, 0, "kyc", "p1.png", &set_pages[0]), set_age);
        let file = env.drop_bytes(files, "scan.png", &scan);
        set_mtime(&file, file_age);
        let mut daemon = env.spawn_binary(&[]);
        daemon.logged("set detected", 1).await;
        daemon.logged("scan.png", 1).await;
        // The older one changes once (its mtime kept), before the younger one has settled.
        if set_is_older {
            set_pages.push(page_png(11_403, None));
            set_mtime(&put(&env, 0, "kyc", "p2.png", &set_pages[1]), set_age);
        } else {
            scan = page_png(11_404, None);
            std::fs::write(&file, &scan).unwrap();
            set_mtime(&file, file_age);
        }
        let (set_sidecar, _) = set_sidecar(&env, 0, "kyc").await;
        let file_sidecar = env.sidecar(files, "scan.png").await;
        daemon.stop().await;
        assert_eq!(set_sidecar.status, Status::Done, "{:?}", set_sidecar.error);
        assert_eq!(
            file_sidecar.status,
            Status::Done,
            "{:?}",
            file_sidecar.error
        );
        let set_images: Vec<String> = set_pages.iter().map(|p| sha256_hex(p)).collect();
        let file_images = vec![sha256_hex(&scan)];
        let expected = if set_is_older {
            [set_images, file_images]
        } else {
            [file_images, set_images]
        };
        let sent: Vec<Vec<String>> = env.submits().into_iter().map(|s| s.image_sha256).collect();
        assert_eq!(
            sent, expected,
            "set is older: {set_is_older}; the older one first"
        );
    }
}
