//! Fault injection: SIGKILL at random moments while a batch flows through, restart each time.

use std::collections::HashMap;
use std::time::Duration;

use beorg_emulator::Endpoint;
use beorg_hotfolder::sidecar::{ErrorKind, Status};
use beorg_hotfolder::store::journal::Journal;
use rustix::process::Signal;

use crate::helpers::*;

const FILES: usize = 50;
const KILLS: usize = 20;

/// The seed of the kill times and file contents: `BEORG_CHAOS_SEED` replays a run (every run
/// prints its seed), otherwise a fresh one.
fn chaos_seed() -> u64 {
    let seed = match std::env::var("BEORG_CHAOS_SEED") {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("BEORG_CHAOS_SEED={text:?} is not a whole number")),
        Err(_) => fastrand::u64(..),
    };
    eprintln!("chaos seed {seed} (replay with BEORG_CHAOS_SEED={seed})");
    seed
}

#[tokio::test]
async fn sigkill_at_random_moments_loses_no_file_and_pays_for_none_twice() {
    chaos(KILLS, false).await;
}

/// Finding 1 under SIGKILL: a second inbox whose failed/ is missing holds files refused by
/// preflight, which cannot finish. The healthy inbox's batch flows exactly as without it:
/// every file finishes within the same deadline, paid once; the stuck files stay claimed in
/// their work folder, each exactly once, and complete once failed/ exists.
#[tokio::test]
async fn sigkill_at_random_moments_with_a_second_inbox_whose_failed_folder_is_missing_holds_back_no_file()
 {
    chaos(KILLS / 2, true).await;
}

/// Files refused by preflight in the sick inbox.
const STUCK: usize = 5;

async fn chaos(kills: usize, sick_inbox: bool) {
    let types: &[&str] = if sick_inbox {
        &["PASSPORT", "SNILS"]
    } else {
        &["PASSPORT"]
    };
    let mut env = TestEnv::new(types).await;
    // Slow enough that the batch spans many kills: 20 requests/s, 4 submits/s.
    env.api("requests_per_second = 20.0");
    env.api("documents_per_minute = 240");
    let seed = chaos_seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut stuck = Vec::new();
    if sick_inbox {
        std::fs::remove_dir(&env.inboxes[1].failed).unwrap();
        // Dropped first: the oldest files, claimed before the healthy batch.
        for n in 0..STUCK {
            let name = format!("notes-{n}.txt");
            env.drop_bytes(1, &name, format!("not a scan {n}\n").as_bytes());
            stuck.push(name);
        }
    }
    let mut contents = HashMap::new();
    for n in 0..FILES {
        let name = format!("scan-{n:02}.png");
        let bytes = beorg_emulator::samples::page_png(seed.wrapping_add(n as u64), None);
        contents.insert(name.clone(), sha256_hex(&bytes));
        env.drop_bytes(0, &name, &bytes);
    }

    let mut logs = env.sigkill_at_random_moments(&mut rng, kills).await;
    let mut last = env.spawn_binary(&[]);
    let inbox = env.inboxes[0].clone();
    wait_until("every file finished", || {
        contents.keys().all(|name| {
            layout::sidecar_path(&inbox.done.join(name)).exists()
                || layout::sidecar_path(&inbox.failed.join(name)).exists()
        })
    })
    .await;
    last.signal(Signal::TERM);
    assert!(last.wait(Duration::from_secs(5)).await.success());
    logs.push_str(&last.stderr());
    assert!(!logs.contains("panicked"), "{logs}");

    // Every file exactly once, in done or failed, with its sidecar; nothing left behind.
    let (done, failed) = (files_in(&inbox.done), files_in(&inbox.failed));
    assert_eq!(
        done.len() + failed.len(),
        2 * FILES,
        "done: {done:?}\nfailed: {failed:?}"
    );
    assert!(
        files_in(&inbox.path).is_empty(),
        "{:?}",
        files_in(&inbox.path)
    );
    assert!(files_in(&layout::work_dir(&inbox.path)).is_empty());
    let journal = Journal::open(&env.state_dir).unwrap();
    let unfinished: Vec<String> = journal
        .unfinished()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    if sick_inbox {
        // The stuck files: each exactly once, in the sick inbox or its work folder, never
        // lost; then failed/ appears and they complete.
        let sick = env.inboxes[1].clone();
        let work = layout::work_dir(&sick.path);
        let mut left: Vec<String> = files_in(&sick.path)
            .into_iter()
            .chain(
                files_in(&work)
                    .iter()
                    .map(|w| beorg_hotfolder::pipeline::claim::original_name(w).to_string()),
            )
            .collect();
        left.sort();
        assert_eq!(left, stuck, "{unfinished:?}");
        assert!(files_in(&sick.done).is_empty());
        std::fs::create_dir(&sick.failed).unwrap();
        let mut last = env.spawn_binary(&[]);
        for name in &stuck {
            let sidecar = env.sidecar(1, name).await;
            assert_eq!(
                sidecar.error.unwrap().kind,
                ErrorKind::InvalidFile,
                "{name}"
            );
            assert!(sidecar.source.sha256.is_some(), "{name}");
        }
        last.signal(Signal::TERM);
        assert!(last.wait(Duration::from_secs(5)).await.success());
        assert!(journal.unfinished().await.unwrap().is_empty());
    } else {
        assert!(unfinished.is_empty(), "the journal agrees: {unfinished:?}");
    }

    // The API accepted each content at most once. A content sent more than once must be an
    // in-doubt window the log shows ("outcome unknown"), and then ends as a duplicate.
    let mut sends: HashMap<String, Vec<u16>> = HashMap::new();
    // A kill in the middle of an upload leaves the emulator a cut body: a 400 with no image
    // it could read, which no content was accepted by.
    for r in env.requests(Endpoint::Submit) {
        let Some(sha) = r.image_sha256.first() else {
            assert_eq!(r.status, 400, "a submit without a readable image: {r:?}");
            continue;
        };
        sends.entry(sha.clone()).or_default().push(r.status);
    }
    for (name, sha) in &contents {
        let statuses = sends.get(sha).cloned().unwrap_or_default();
        assert!(
            statuses.iter().filter(|s| **s == 200).count() <= 1,
            "{name}: {statuses:?}"
        );
        let sidecar_path = if done.contains(&layout::sidecar_name(name)) {
            layout::sidecar_path(&inbox.done.join(name))
        } else {
            layout::sidecar_path(&inbox.failed.join(name))
        };
        let sidecar = read_sidecar(&sidecar_path);
        assert_eq!(
            sidecar.source.sha256.as_deref(),
            Some(sha.as_str()),
            "{name}"
        );
        if statuses.len() > 1 {
            let in_doubt = logs
                .lines()
                .any(|l| l.contains("outcome unknown") && l.contains(name.as_str()));
            assert!(
                in_doubt,
                "{name} was sent {statuses:?} without a logged in-doubt window"
            );
        }
        if sidecar.status == Status::Failed {
            let e = sidecar.error.unwrap();
            assert_eq!(e.kind, ErrorKind::Duplicate, "{name}: {}", e.message);
            assert!(e.message.contains("interrupted"), "{name}: {}", e.message);
        }
    }
    let in_doubt = logs.matches("outcome unknown").count();
    let failed_count = failed.len() / 2;
    eprintln!(
        "{kills} kills: {in_doubt} in-doubt windows, {failed_count} files failed as duplicates"
    );
}
