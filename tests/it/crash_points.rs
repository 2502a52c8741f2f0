//! Crash at every transition, enumerated: the daemon binary (built with its fail points, see
//! `store::journal::fail_points`) is killed right before and right after each transition of
//! a file's history is stored, once per run, then started again without fail points. After
//! each run: every file ended exactly once with its sidecar, the API accepted each content at
//! most once, each document id it gave is in a sidecar, and each file's history runs from
//! `claimed` to `finished` with no step missing. The random SIGKILLs of `chaos` stay beside
//! this. `cargo test --test it crash_points -- --nocapture` prints the table.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use beorg_emulator::Endpoint;
use beorg_hotfolder::sidecar::{ErrorKind, Sidecar, Status};
use beorg_hotfolder::store::journal::history::transition;
use rustix::process::Signal;
use serde_json::Value;

use crate::helpers::*;

/// Every transition name, and whether a document set passes through it too (then each
/// point is crashed once with the files' workload and once with a set's). `superseded` has
/// its own workload (a file rewritten while it is sent), and so has `lost` (a file deleted
/// by hand from the work folder before anything was paid for it). `requeued` is the
/// `requeue` command's: its runs crash that command, beside the running daemon, once the
/// workload has ended.
const TRANSITIONS: &[(&str, bool)] = &[
    (transition::CLAIMED, true),
    (transition::HASHED, true),
    (transition::PREFLIGHT, true),
    (transition::SUBMITTING, true),
    (transition::DOCUMENT, true),
    (transition::NOT_SENT, true),
    (transition::SUBMITTED, true),
    (transition::ANSWERED_FROM, false),
    (transition::SUPERSEDED, false),
    (transition::POLLED, true),
    (transition::FINISHING, true),
    (transition::FINISHED, true),
    (transition::LOST, false),
    (transition::DELIVERY_QUEUED, true),
    (transition::DELIVERY_RETRY, true),
    (transition::DELIVERY_CLOSED, true),
    (transition::REQUEUED, false),
];

/// The workload: two files of the same content (one answered from the other's document),
/// another scan, and a text file preflight refuses. The first submit gets a 503 (a
/// `not_sent`); every outcome goes to a ledger and to a webhook nobody answers (a retry,
/// then given up).
const SAME_A: &str = "same-a.png";
const SAME_B: &str = "same-b.png";
const OTHER: &str = "other.png";
const REFUSED: &str = "notes.txt";
const NAMES: [&str; 4] = [SAME_A, SAME_B, OTHER, REFUSED];

/// The scans, made once for all runs (a debug build takes a while to draw a page).
static SCANS: LazyLock<(Vec<u8>, Vec<u8>)> = LazyLock::new(|| {
    (
        beorg_emulator::samples::page_png(20_801, None),
        beorg_emulator::samples::page_png(20_802, None),
    )
});

/// A run's line in the table, or what failed in it.
type Outcome = Result<String, String>;
/// (the transition's place in [`TRANSITIONS`], before or after) → (its name, the outcome).
type Table = BTreeMap<(usize, &'static str), (&'static str, Outcome)>;

/// Runs at once: the machine is shared, and each run is two daemon starts.
const PARALLEL_RUNS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_right_before_or_after_any_transition_loses_nothing_and_pays_nothing_twice() {
    LazyLock::force(&SCANS);
    let slots = Arc::new(tokio::sync::Semaphore::new(PARALLEL_RUNS));
    let mut runs = tokio::task::JoinSet::new();
    for (name, a_set_too) in TRANSITIONS.iter().copied() {
        for when in ["before", "after"] {
            let point = format!("{when}:{name}");
            let slots = slots.clone();
            runs.spawn(async move {
                let _slot = slots.acquire_owned().await.unwrap();
                let outcome = match name {
                    transition::REQUEUED => crash_while_requeueing(&point).await,
                    transition::SUPERSEDED => {
                        crash_when_a_rewritten_answer_is_superseded(&point).await
                    }
                    transition::LOST => crash_when_a_claimed_file_is_deleted(&point).await,
                    _ => crash_and_restart(&point).await,
                };
                let outcome = match outcome {
                    Ok(files) if a_set_too => crash_while_a_set_is_sent(&point)
                        .await
                        .map(|set| format!("{files}; a set: {set}")),
                    other => other,
                };
                (name, when, outcome)
            });
        }
    }
    let mut table: Table = BTreeMap::new();
    while let Some(run) = runs.join_next().await {
        let (name, when, outcome) = match run {
            Ok(run) => run,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        let order = TRANSITIONS.iter().position(|(n, _)| *n == name).unwrap();
        table.insert((order, when), (name, outcome));
    }
    eprintln!("\n| transition | crash | outcome |\n| --- | --- | --- |");
    for ((_, when), (name, outcome)) in &table {
        let text = match outcome {
            Ok(text) => text.clone(),
            Err(e) => format!("FAILED: {e}"),
        };
        eprintln!("| {name} | {when} | {text} |");
    }
    let failures: Vec<String> = table
        .iter()
        .filter_map(|((_, when), (name, outcome))| {
            outcome
                .as_ref()
                .err()
                .map(|e| format!("{when}:{name}: {e}"))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// One run: the daemon with `point` armed must die there; started again, it must end every
/// file with nothing lost or paid twice. Returns the table's outcome line, or what failed.
async fn crash_and_restart(point: &str) -> Outcome {
    let env = workload_env().await;
    let armed = format!("{point}=return");
    let mut crashed = env.spawn_binary(&[("FAILPOINTS", armed.as_str())]);
    drop_workload(&env);
    let crash_log = killed_at(&mut crashed, point).await?;
    restart_until_everything_ended(&env, &NAMES, (REFUSED, 1), &crash_log).await
}

/// Waits for `crashed` to die at `point`: killed (SIGKILL) with the point named in its log.
/// Returns that log, or what happened instead (the point never hit, another end).
async fn killed_at(crashed: &mut Binary, point: &str) -> Result<String, String> {
    let status = match tokio::time::timeout(DEADLINE, crashed.child.wait()).await {
        Ok(status) => status.map_err(|e| e.to_string())?,
        Err(_) => {
            crashed.signal(Signal::KILL);
            return Err(format!(
                "the point was never hit: the daemon was still running after {DEADLINE:?}"
            ));
        }
    };
    let crash_log = crashed.stderr();
    let killed_there = crash_log.contains(&format!("fail point {point}: killing the daemon"));
    if status.signal() != Some(Signal::KILL.as_raw()) || !killed_there {
        return Err(format!(
            "the daemon ended with {status}, not killed at the point; log:\n{crash_log}"
        ));
    }
    Ok(crash_log)
}

/// Starts the daemon again without fail points, waits until every file of `names` ended
/// (``rows` as [`wait_until_everything_ended`] takes it), stops it, and checks that
/// nothing was lost or paid twice; the logs of both runs go with any failure.
async fn restart_until_everything_ended(
    env: &TestEnv,
    names: &[&str],
    rows: (&str, usize),
    crash_log: &str,
) -> Outcome {
    let log = restart_until(
        env,
        crash_log,
        wait_until_everything_ended(env, names, rows),
    )
    .await?;
    check_nothing_lost_or_paid_twice(env, names).map_err(|e| format!("{e}; log:\n{log}"))
}

/// Starts the daemon again without fail points, waits for `ended`, and stops it: it must
/// have ended cleanly, without a panic. The logs of both runs, or what failed with them.
async fn restart_until(
    env: &TestEnv,
    crash_log: &str,
    ended: impl std::future::Future<Output = Result<(), String>>,
) -> Result<String, String> {
    let mut restarted = env.spawn_binary(&[]);
    // Running (its signals handled) before it is stopped, even if there is nothing to do.
    wait_until("restarted", || restarted.stderr().contains("running")).await;
    let ended = ended.await;
    restarted.signal(Signal::TERM);
    let stopped = restarted.wait(Duration::from_secs(5)).await;
    let log = format!("{crash_log}{}", restarted.stderr());
    ended.map_err(|e| format!("{e}; log:\n{log}"))?;
    if !stopped.success() || log.contains("panicked") {
        return Err(format!(
            "the restarted daemon ended with {stopped}; log:\n{log}"
        ));
    }
    Ok(log)
}

/// The `superseded` workload: one scan whose submit is answered slowly, rewritten in the
/// work folder while it is sent. Its first document is superseded and it is sent again.
const REWRITTEN: &str = "rewritten.png";

/// A `superseded` run: the daemon with `point` armed must die there; started again, the
/// rewritten file ends once, each content paid once, both documents in its sidecar.
async fn crash_when_a_rewritten_answer_is_superseded(point: &str) -> Outcome {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    let ledger = env.dir.path().join("outcomes.jsonl");
    env.inboxes[0].extra = format!("ledger = \"{}\"\n", ledger.display());
    env.api("request_timeout = \"10s\"");
    env.emulator
        .delay_next(Endpoint::Submit, Duration::from_millis(800), 1);
    let armed = format!("{point}=return");
    let mut crashed = env.spawn_binary(&[("FAILPOINTS", armed.as_str())]);
    let (first, second) = &*SCANS;
    env.drop_bytes(0, REWRITTEN, first);
    let work = layout::work_dir(&env.inboxes[0].path);
    wait_until("the submit on its way", || !env.submits().is_empty()).await;
    let claimed = files_in(&work);
    let [claimed] = &claimed[..] else {
        return Err(format!(
            "one claimed file expected in the work folder: {claimed:?}"
        ));
    };
    std::fs::write(work.join(claimed), second).unwrap();
    let crash_log = killed_at(&mut crashed, point).await?;
    restart_until_everything_ended(&env, &[REWRITTEN], (REWRITTEN, 1), &crash_log).await
}

/// The set workload: one document set of two scans in a `sets` inbox with the ledger and
/// the dead webhook; its first submit gets a 503.
const SET: &str = "kyc-set";

/// A set run: the daemon with `point` armed must die there; started again, the set must end
/// once, in one place with its sidecar, each of its files paid once.
async fn crash_while_a_set_is_sent(point: &str) -> Outcome {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    ledger_and_a_dead_webhook(&mut env);
    env.inboxes[0].extra.push_str("sets = true\n");
    env.emulator.fail_next(Endpoint::Submit, 503, 1);
    let armed = format!("{point}=return");
    let mut crashed = env.spawn_binary(&[("FAILPOINTS", armed.as_str())]);
    let (first, second) = &*SCANS;
    let building = env.inboxes[0].path.join(".building");
    std::fs::create_dir_all(&building).unwrap();
    std::fs::write(building.join("page1.png"), first).unwrap();
    std::fs::write(building.join("page2.png"), second).unwrap();
    std::fs::rename(&building, env.inboxes[0].path.join(SET)).unwrap();
    let crash_log = killed_at(&mut crashed, point).await?;
    restart_until_everything_ended(&env, &[SET], (SET, 1), &crash_log).await
}

/// The `lost` workload: one scan whose first submit gets a 503 and whose work file is
/// deleted by hand during the backoff, before anything was paid for it.
const GONE: &str = "gone.png";

/// A `lost` run: the daemon with `point` armed must die there; started again, the file must
/// be recorded lost once: nothing paid, nothing left anywhere, its history ending in `lost`.
async fn crash_when_a_claimed_file_is_deleted(point: &str) -> Outcome {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    env.api("retry_base = \"3s\"").api("retry_max = \"3s\"");
    env.emulator.fail_next(Endpoint::Submit, 503, 1);
    let armed = format!("{point}=return");
    let mut crashed = env.spawn_binary(&[("FAILPOINTS", armed.as_str())]);
    env.drop_bytes(0, GONE, &SCANS.0);
    wait_until("the first submit refused", || {
        names_of(&history_of(&env, GONE)).contains(&transition::NOT_SENT)
    })
    .await;
    let work = layout::work_dir(&env.inboxes[0].path);
    for name in files_in(&work) {
        std::fs::remove_file(work.join(name)).unwrap();
    }
    let crash_log = killed_at(&mut crashed, point).await?;
    restart_until(&env, &crash_log, wait_until_lost(&env)).await?;
    let inbox = &env.inboxes[0];
    let left: Vec<String> = [&inbox.path, &inbox.done, &inbox.failed, &work]
        .into_iter()
        .flat_map(|dir| entries_in(dir))
        .collect();
    if !left.is_empty() {
        return Err(format!("left behind: {left:?}"));
    }
    let paid = env.submits().iter().filter(|r| r.status == 200).count();
    if paid != 0 {
        return Err(format!(
            "{paid} submits accepted for a file deleted before it was sent"
        ));
    }
    Ok("killed, restarted: lost 1, paid 0, once".to_string())
}

/// Waits until the `lost` workload's file is recorded lost, with one `lost` line ending a
/// history that begins with `claimed`.
async fn wait_until_lost(env: &TestEnv) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let history = history_of(env, GONE);
        let names = names_of(&history);
        if names.last() == Some(&transition::LOST) {
            let lost = names.iter().filter(|t| **t == transition::LOST).count();
            if names.first() != Some(&transition::CLAIMED) || lost != 1 {
                return Err(format!("{GONE}: history {names:?}"));
            }
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{GONE} not recorded lost: history {names:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `requeued` run: the workload ends under a daemon without fail points, then `requeue`
/// of the refused file, with `point` armed, must die there; the daemon goes on. The file
/// must end again, once, in failed/ with its sidecar (a second row for its name).
async fn crash_while_requeueing(point: &str) -> Outcome {
    let env = workload_env().await;
    let mut daemon = env.spawn_binary(&[]);
    drop_workload(&env);
    let ended = wait_until_everything_ended(&env, &NAMES, (REFUSED, 1)).await;
    let requeued = match ended {
        Ok(()) => requeue_crashing_at(&env, point),
        Err(e) => Err(e),
    };
    let ended = match requeued {
        Ok(()) => wait_until_everything_ended(&env, &NAMES, (REFUSED, 2)).await,
        Err(e) => Err(e),
    };
    daemon.signal(Signal::TERM);
    let stopped = daemon.wait(Duration::from_secs(5)).await;
    let log = daemon.stderr();
    ended.map_err(|e| format!("{e}; log:\n{log}"))?;
    if !stopped.success() || log.contains("panicked") {
        return Err(format!("the daemon ended with {stopped}; log:\n{log}"));
    }
    check_nothing_lost_or_paid_twice(&env, &NAMES)
        .map(|line| line.replacen("killed, restarted", "requeue killed, daemon ran on", 1))
        .map_err(|e| format!("{e}; log:\n{log}"))
}

/// Runs `requeue failed/<REFUSED>` with `point` armed; it must be killed there.
fn requeue_crashing_at(env: &TestEnv, point: &str) -> Result<(), String> {
    let config = env.write_config();
    let original = env.inboxes[0].failed.join(REFUSED);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_beorg-hotfolder"))
        .arg("requeue")
        .arg(&original)
        .arg("--config")
        .arg(&config)
        .env_remove("BEORG_TOKEN")
        .env("FAILPOINTS", format!("{point}=return"))
        .output()
        .map_err(|e| e.to_string())?;
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    let killed_there = said.contains(&format!("fail point {point}: killing the daemon"));
    if out.status.signal() != Some(Signal::KILL.as_raw()) || !killed_there {
        return Err(format!(
            "requeue ended with {}, not killed at the point: {said}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    Ok(())
}

async fn workload_env() -> TestEnv {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    ledger_and_a_dead_webhook(&mut env);
    env.emulator.fail_next(Endpoint::Submit, 503, 1);
    env
}

fn drop_workload(env: &TestEnv) {
    let (same, other) = &*SCANS;
    env.drop_bytes(0, SAME_A, same);
    env.drop_bytes(0, SAME_B, same);
    env.drop_bytes(0, OTHER, other);
    env.drop_bytes(0, REFUSED, b"not a scan\n");
}

/// Every file of `names` finished, with its sidecar, and each of its deliveries closed; the
/// file `rows.0` under its `rows.1`-th journal row (2 once it was requeued).
async fn wait_until_everything_ended(
    env: &TestEnv,
    names: &[&str],
    rows: (&str, usize),
) -> Result<(), String> {
    let inbox = env.inboxes[0].clone();
    let ended = || {
        rows_named(env, rows.0) == rows.1
            && names.iter().all(|name| {
                let has_sidecar = [&inbox.done, &inbox.failed]
                    .iter()
                    .any(|dir| layout::sidecar_path(&dir.join(name)).exists());
                let history = history_of(env, name);
                let (queued, closed) = deliveries(&history);
                has_sidecar && !queued.is_empty() && queued == closed
            })
    };
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !ended() {
        if tokio::time::Instant::now() > deadline {
            let stories: Vec<String> = names
                .iter()
                .map(|name| format!("{name}: {:?}", names_of(&history_of(env, name))))
                .collect();
            return Err(format!(
                "not every file ended within {DEADLINE:?} of the restart: {}",
                stories.join("; ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The checks after a run; the outcome line for the table.
fn check_nothing_lost_or_paid_twice(env: &TestEnv, names: &[&str]) -> Outcome {
    let inbox = &env.inboxes[0];
    // Each original exactly once, with its sidecar; nothing left in the inbox or work folder.
    let (done, failed) = (entries_in(&inbox.done), entries_in(&inbox.failed));
    let mut sidecars = HashMap::new();
    for &name in names {
        let places: Vec<&std::path::PathBuf> = [&inbox.done, &inbox.failed]
            .into_iter()
            .filter(|dir| dir.join(name).exists())
            .collect();
        let [place] = places[..] else {
            return Err(format!("{name} is in {places:?}, not in exactly one place"));
        };
        let sidecar_path = layout::sidecar_path(&place.join(name));
        if !sidecar_path.exists() {
            return Err(format!("{name} has no sidecar in {}", place.display()));
        }
        let sidecar = read_sidecar(&sidecar_path);
        // The sidecar describes the bytes beside it, not ones the file had before.
        let content = content_sha256(&place.join(name))?;
        if sidecar.source.sha256.as_deref() != Some(content.as_str()) {
            return Err(format!(
                "{name}: the sidecar describes content {:?} (document {:?}, superseded {:?}), the file beside it is {}",
                sidecar.source.sha256,
                sidecar.document_id,
                sidecar
                    .superseded
                    .iter()
                    .map(|d| &d.document_id)
                    .collect::<Vec<_>>(),
                content
            ));
        }
        sidecars.insert(name, sidecar);
    }
    if done.len() + failed.len() != 2 * names.len() {
        return Err(format!("done: {done:?}, failed: {failed:?}"));
    }
    let left: Vec<String> = entries_in(&inbox.path)
        .into_iter()
        .chain(entries_in(&layout::work_dir(&inbox.path)))
        .collect();
    if !left.is_empty() {
        return Err(format!("left behind: {left:?}"));
    }
    // The API accepted each content at most once.
    let mut accepted: HashMap<String, usize> = HashMap::new();
    let submits = env.submits();
    for r in submits.iter().filter(|r| r.status == 200) {
        for sha in &r.image_sha256 {
            *accepted.entry(sha.clone()).or_default() += 1;
        }
    }
    if let Some((sha, n)) = accepted.iter().find(|(_, n)| **n > 1) {
        return Err(format!("content {sha} accepted {n} times: {submits:?}"));
    }
    // Every document the API gave is in a sidecar (its answer, or listed as superseded).
    let in_sidecars: BTreeSet<&str> = sidecars
        .values()
        .flat_map(|s| {
            s.document_id
                .iter()
                .map(String::as_str)
                .chain(s.superseded.iter().map(|d| d.document_id.as_str()))
        })
        .collect();
    let issued: Vec<&str> = submits
        .iter()
        .filter_map(|r| r.document_id.as_deref())
        .collect();
    let mut unanswered = Vec::new();
    for document in &issued {
        if !in_sidecars.contains(document) {
            unanswered.push(*document);
        }
    }
    // The one window the API leaves open: a document given to a daemon that died before
    // storing it. Sent again, the content gets a 409 without the id; the file fails as a
    // duplicate whose message says its send was interrupted (README, "Crashes, restarts and
    // faults"). Anything else missing is a document lost.
    let interrupted: Vec<&str> = sidecars
        .iter()
        .filter(|(_, s)| is_interrupted_duplicate(s))
        .map(|(name, _)| *name)
        .collect();
    if unanswered.len() > interrupted.len() {
        return Err(format!(
            "documents {unanswered:?} are in no sidecar (interrupted duplicates: {interrupted:?})"
        ));
    }
    // Each history runs from claimed to finished with nothing missing between.
    for &name in names {
        check_history(name, &history_of(env, name), &sidecars[name])?;
    }
    let paid = issued.len();
    let mut line = format!(
        "killed, restarted: done {}, failed {}, paid {paid}, each once",
        done.len() / 2,
        failed.len() / 2
    );
    if !interrupted.is_empty() {
        line.push_str(&format!(
            "; {} failed as an interrupted duplicate, its document {} not in a sidecar",
            interrupted.join(", "),
            unanswered.join(", ")
        ));
    }
    Ok(line)
}

fn is_interrupted_duplicate(sidecar: &Sidecar) -> bool {
    sidecar.status == Status::Failed
        && sidecar.document_id.is_none()
        && sidecar
            .error
            .as_ref()
            .is_some_and(|e| e.kind == ErrorKind::Duplicate && e.message.contains("interrupted"))
}

/// claimed first; hashed and preflight before finishing; finishing right before finished,
/// which ends the file's own lines (deliveries follow); the answer's document in a
/// `submitted` or `answered_from` line; each delivery queued is closed.
fn check_history(name: &str, history: &[(String, Value)], sidecar: &Sidecar) -> Result<(), String> {
    let names = names_of(history);
    let own: Vec<&str> = names
        .iter()
        .copied()
        .filter(|t| !t.starts_with("delivery_"))
        .collect();
    let position = |t: &str| own.iter().position(|o| *o == t);
    let fail = |what: &str| Err(format!("{name}: {what}; history {names:?}"));
    if own.first() != Some(&transition::CLAIMED) {
        return fail("does not begin with claimed");
    }
    if own.last() != Some(&transition::FINISHED)
        || own.iter().filter(|t| **t == "finished").count() != 1
    {
        return fail("does not end in one finished line");
    }
    if own.get(own.len().wrapping_sub(2)) != Some(&transition::FINISHING) {
        return fail("finished is not right after finishing");
    }
    let finishing = position(transition::FINISHING).unwrap();
    for step in [transition::HASHED, transition::PREFLIGHT] {
        if !matches!(position(step), Some(p) if p < finishing) {
            return fail(&format!("no {step} line before finishing"));
        }
    }
    if let Some(document) = &sidecar.document_id {
        let answered = history.iter().any(|(t, details)| {
            (t == transition::SUBMITTED || t == transition::ANSWERED_FROM)
                && details["document_id"] == document.as_str()
        });
        if !answered {
            return fail(&format!(
                "no submitted or answered_from line for {document}"
            ));
        }
    }
    let (queued, closed) = deliveries(history);
    if queued != closed {
        return fail(&format!("deliveries queued {queued:?}, closed {closed:?}"));
    }
    Ok(())
}

/// How many journal rows have `name`.
fn rows_named(env: &TestEnv, name: &str) -> usize {
    let path = layout::journal_path(&env.state_dir);
    rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|conn| {
            conn.busy_timeout(Duration::from_secs(5))?;
            conn.query_row("SELECT COUNT(*) FROM files WHERE name = ?1", [name], |r| {
                r.get::<_, i64>(0)
            })
        })
        .map_or(0, |n| n as usize)
}

fn names_of(history: &[(String, Value)]) -> Vec<&str> {
    history.iter().map(|(t, _)| t.as_str()).collect()
}

/// The delivery ids queued and closed in `history`.
fn deliveries(history: &[(String, Value)]) -> (BTreeSet<i64>, BTreeSet<i64>) {
    let ids = |which: &str| {
        history
            .iter()
            .filter(|(t, _)| t == which)
            .filter_map(|(_, d)| d["delivery_id"].as_i64())
            .collect()
    };
    (
        ids(transition::DELIVERY_QUEUED),
        ids(transition::DELIVERY_CLOSED),
    )
}

/// The history (transition, details) of the newest journal row named `name`, read-only.
fn history_of(env: &TestEnv, name: &str) -> Vec<(String, Value)> {
    let path = layout::journal_path(&env.state_dir);
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return Vec::new();
    };
    let _ = conn.busy_timeout(Duration::from_secs(5));
    let Ok(mut stmt) = conn.prepare(
        "SELECT transition, details FROM history WHERE file_id =
            (SELECT MAX(id) FROM files WHERE name = ?1) ORDER BY id",
    ) else {
        return Vec::new();
    };
    let rows = stmt.query_map([name], |r| {
        let details: String = r.get(1)?;
        Ok((
            r.get::<_, String>(0)?,
            serde_json::from_str(&details).unwrap_or(Value::Null),
        ))
    });
    rows.map(|rows| rows.flatten().collect())
        .unwrap_or_default()
}

/// The names in `dir`, files and folders, hidden ones left out (the work folder's own).
fn entries_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| !name.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The content hash a sidecar states: a file's SHA-256, or a set folder's (the SHA-256 of
/// its files' sorted lines `<sha256>  <name>\n`).
fn content_sha256(path: &std::path::Path) -> Result<String, String> {
    if !path.is_dir() {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(sha256_hex(&bytes));
    }
    let mut lines = Vec::new();
    for name in files_in(path) {
        let bytes = std::fs::read(path.join(&name)).map_err(|e| e.to_string())?;
        lines.push(format!("{}  {name}\n", sha256_hex(&bytes)));
    }
    lines.sort();
    Ok(sha256_hex(lines.concat().as_bytes()))
}
