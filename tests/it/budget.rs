//! Issue 13: several daemons on one Beorg account share the request budget and the account
//! pause through a real `redis-server` on loopback. Each daemon is the real binary with its
//! own state folder and inboxes; all of them talk to one emulator, whose log is the judge.

use std::time::Duration;

use beorg_emulator::Endpoint;
use beorg_hotfolder::scheduler::Limits;

use crate::helpers::*;

const REQUESTS_PER_SECOND: f64 = 5.0;
const DOCUMENTS_PER_MINUTE: f64 = 120.0;

/// The tests that judge the spacing of several daemons' requests at the emulator run one at
/// a time. Each runs two or three daemons; side by side on the project's 2-core machine they
/// delay the emulator's reading of an arrival by more than the 5 ms slack the daemons keep
/// (one request recorded late, the next on time: 196.9 ms apart at 5 a second), which
/// measures the machine, not the budget.
static SPACING_JUDGED: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `n` test environments whose daemons share `redis` and the first one's emulator.
async fn daemons_on_one_account(n: usize, redis: &RedisServer, extra_api: &[&str]) -> Vec<TestEnv> {
    let mut envs = Vec::new();
    for _ in 0..n {
        let mut env = TestEnv::new(&["PASSPORT"]).await;
        if let Some(first) = envs.first() {
            let first: &TestEnv = first;
            env.base_url = first.base_url.clone();
        }
        env.api(&format!("requests_per_second = {REQUESTS_PER_SECOND}"));
        env.api(&format!("documents_per_minute = {DOCUMENTS_PER_MINUTE}"));
        for line in extra_api {
            env.api(line);
        }
        env.extra_tables = shared_budget(redis);
        envs.push(env);
    }
    envs
}

/// The `[budget]` table for `redis`.
fn shared_budget(redis: &RedisServer) -> String {
    format!(
        "\n[budget]\nredis = \"{}\"\nkey = \"beorg:test\"\n",
        redis.url()
    )
}

/// Every request the one emulator saw (all daemons together).
fn all_requests(envs: &[TestEnv]) -> Vec<beorg_emulator::RequestRecord> {
    envs[0].emulator.requests()
}

#[tokio::test]
async fn three_daemons_on_one_redis_never_exceed_either_limit_together() {
    let _one_at_a_time = SPACING_JUDGED.lock().await;
    let redis = RedisServer::start(&[]);
    let envs = daemons_on_one_account(3, &redis, &[]).await;
    let mut daemons: Vec<_> = envs.iter().map(|e| e.spawn_binary(&[])).collect();
    for (d, env) in envs.iter().enumerate() {
        for n in 0..4u64 {
            env.drop_scan(0, &format!("d{d}-{n}.png"), 1300 + 10 * d as u64 + n, None);
        }
    }
    for (d, env) in envs.iter().enumerate() {
        for n in 0..4 {
            let sidecar = env.sidecar(0, &format!("d{d}-{n}.png")).await;
            assert!(sidecar.document_id.is_some(), "d{d}-{n}: {sidecar:?}");
        }
    }
    for daemon in &mut daemons {
        daemon.signal(rustix::process::Signal::TERM);
        daemon.wait(Duration::from_secs(10)).await;
    }
    let records = all_requests(&envs);
    assert_eq!(
        records
            .iter()
            .filter(|r| r.endpoint == Endpoint::Submit)
            .count(),
        12
    );
    assert_within_limits(&records, REQUESTS_PER_SECOND, DOCUMENTS_PER_MINUTE);
}

/// The daemon's last status snapshot, read from its state folder.
fn snapshot(env: &TestEnv) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(env.state_dir.join("status.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn submits_with(envs: &[TestEnv], status: u16) -> Vec<beorg_emulator::RequestRecord> {
    all_requests(envs)
        .into_iter()
        .filter(|r| r.endpoint == Endpoint::Submit && r.status == status)
        .collect()
}

#[tokio::test]
async fn a_402_on_one_daemon_pauses_submits_on_all_and_one_probe_follows() {
    let _one_at_a_time = SPACING_JUDGED.lock().await;
    const RETRY: Duration = Duration::from_millis(1500);
    let redis = RedisServer::start(&[]);
    let envs = daemons_on_one_account(3, &redis, &["account_retry = \"1500ms\""]).await;
    envs[0].emulator.set_no_money(true);
    let mut daemons: Vec<_> = envs.iter().map(|e| e.spawn_binary(&[])).collect();
    for (d, env) in envs.iter().enumerate() {
        env.drop_scan(0, &format!("d{d}.png"), 1400 + d as u64, None);
    }
    // The first refusal; then the one try when its pause ends (refused too: still no money),
    // answered slowly, so the other daemons would have time to try as well.
    wait_until("a submit refused with 402", || {
        !submits_with(&envs, 402).is_empty()
    })
    .await;
    envs[0]
        .emulator
        .delay_next(Endpoint::Submit, Duration::from_millis(900), 1);
    wait_until("two submits refused with 402", || {
        submits_with(&envs, 402).len() >= 2
    })
    .await;
    let submits: Vec<_> = all_requests(&envs)
        .into_iter()
        .filter(|r| r.endpoint == Endpoint::Submit)
        .collect();
    assert!(
        submits[1].at - submits[0].at >= RETRY - Duration::from_millis(50),
        "the second submit came {:?} after the first 402: the others did not pause",
        submits[1].at - submits[0].at
    );
    // Every daemon shows the pause, also those that never saw a 402 themselves.
    for env in &envs {
        wait_until("every daemon's status shows the account paused", || {
            snapshot(env).is_some_and(|s| s["account"]["paused"] == true)
        })
        .await;
    }
    // One try per pause, not one per daemon.
    holds_for(
        "no other daemon tries while the probe's pause holds",
        RETRY * 2 / 3,
        || {
            all_requests(&envs)
                .iter()
                .filter(|r| r.endpoint == Endpoint::Submit)
                .count()
                == 2
        },
    )
    .await;
    envs[0].emulator.set_no_money(false);
    for (d, env) in envs.iter().enumerate() {
        let sidecar = env.sidecar(0, &format!("d{d}.png")).await;
        assert!(sidecar.document_id.is_some(), "d{d}: {sidecar:?}");
    }
    for env in &envs {
        wait_until("every daemon's status shows the account ok again", || {
            snapshot(env).is_some_and(|s| s["account"]["paused"] == false)
        })
        .await;
    }
    for daemon in &mut daemons {
        daemon.signal(rustix::process::Signal::TERM);
        daemon.wait(Duration::from_secs(10)).await;
    }
    assert_within_limits(
        &all_requests(&envs),
        REQUESTS_PER_SECOND,
        DOCUMENTS_PER_MINUTE,
    );
}

#[tokio::test]
async fn redis_killed_mid_run_and_restarted_sends_no_request_over_the_limits_and_finishes_all_files()
 {
    let _one_at_a_time = SPACING_JUDGED.lock().await;
    let mut redis = RedisServer::start(&[]);
    let envs = daemons_on_one_account(3, &redis, &[]).await;
    let mut daemons: Vec<_> = envs.iter().map(|e| e.spawn_binary(&[])).collect();
    for (d, env) in envs.iter().enumerate() {
        for n in 0..3u64 {
            env.drop_scan(0, &format!("d{d}-{n}.png"), 1500 + 10 * d as u64 + n, None);
        }
    }
    wait_until("three submits", || {
        all_requests(&envs)
            .iter()
            .filter(|r| r.endpoint == Endpoint::Submit)
            .count()
            >= 3
    })
    .await;
    redis.kill();
    // Every daemon with work waiting notices, and says so in its status.
    wait_until("a daemon's status shows the budget unavailable", || {
        envs.iter()
            .any(|env| snapshot(env).is_some_and(|s| s["budget"]["unavailable_since"].is_string()))
    })
    .await;
    let sent = all_requests(&envs).len();
    holds_for(
        "no request while Redis is down",
        Duration::from_secs(1),
        || all_requests(&envs).len() == sent,
    )
    .await;
    redis.restart();
    for (d, env) in envs.iter().enumerate() {
        for n in 0..3 {
            let sidecar = env.sidecar(0, &format!("d{d}-{n}.png")).await;
            assert!(sidecar.document_id.is_some(), "d{d}-{n}: {sidecar:?}");
        }
    }
    for env in &envs {
        wait_until("the status shows the budget available again", || {
            snapshot(env).is_some_and(|s| s["budget"]["unavailable_since"].is_null())
        })
        .await;
    }
    for daemon in &mut daemons {
        daemon.signal(rustix::process::Signal::TERM);
        daemon.wait(Duration::from_secs(10)).await;
    }
    let records = all_requests(&envs);
    assert_eq!(
        records
            .iter()
            .filter(|r| r.endpoint == Endpoint::Submit)
            .count(),
        9,
        "each file paid for once"
    );
    assert_within_limits(&records, REQUESTS_PER_SECOND, DOCUMENTS_PER_MINUTE);
}

#[tokio::test]
async fn a_daemon_started_while_redis_is_down_attaches_waits_and_sends_once_it_is_up() {
    let mut redis = RedisServer::not_started(&[]);
    let mut envs = daemons_on_one_account(1, &redis, &[]).await;
    let port = free_port();
    envs[0]
        .extra_tables
        .push_str(&format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    let env = &envs[0];
    let mut daemon = env.spawn_binary(&[]);
    env.drop_scan(0, "a.png", 1600, None);
    // Claimed (it left the inbox) and waiting for a turn, with no request sent.
    wait_until("the file is claimed", || {
        files_in(&env.inboxes[0].path).is_empty()
    })
    .await;
    wait_until("the status shows the budget unavailable", || {
        snapshot(env).is_some_and(|s| s["budget"]["unavailable_since"].is_string())
    })
    .await;
    let gauge = metric_value(
        &scrape_metrics(port).await,
        "beorg_budget_unavailable_since_seconds",
        &[],
    );
    assert!(gauge.is_some_and(|v| v > 0.0), "{gauge:?}");
    holds_for("no request without a turn", Duration::from_secs(1), || {
        env.emulator.requests().is_empty()
    })
    .await;
    let status = env.status();
    assert!(
        status["budget"]["unavailable_since"].is_string(),
        "{status}"
    );
    redis.restart();
    let sidecar = env.sidecar(0, "a.png").await;
    assert!(sidecar.document_id.is_some(), "{sidecar:?}");
    wait_until("the status shows the budget available", || {
        snapshot(env).is_some_and(|s| s["budget"]["unavailable_since"].is_null())
    })
    .await;
    let gauge = metric_value(
        &scrape_metrics(port).await,
        "beorg_budget_unavailable_since_seconds",
        &[],
    );
    assert_eq!(gauge, Some(0.0));
    daemon.signal(rustix::process::Signal::TERM);
    daemon.wait(Duration::from_secs(10)).await;
}

/// A Redis that restarts loses the budget's state (here: no persistence). Without care the
/// next request would go at once, however recently the last one went.
#[tokio::test]
async fn after_a_redis_restart_the_next_turn_waits_a_full_period() {
    use beorg_hotfolder::budget::{SharedBudget, TurnKind};
    use beorg_hotfolder::config::SharedBudgetConfig;
    let mut redis = RedisServer::start(&[]);
    let config = SharedBudgetConfig {
        url: redis.url(),
        key: "beorg:restart".into(),
        password: None,
    };
    let budget = SharedBudget::new(&config, std::path::Path::new("/test/a")).unwrap();
    let limits = Limits {
        requests_per_second: 2.0,
        documents_per_minute: 60.0,
    };
    let periods = limits.for_shared_budget().periods;
    let turn = async |kind| {
        let asked = std::time::Instant::now();
        loop {
            match budget.turn(kind, limits.for_shared_budget(), false).await {
                Ok(reply) if reply.granted => return std::time::Instant::now(),
                // Not a wait on a condition: the pause the budget asks for, obeyed as a daemon does.
                Ok(reply) => tokio::time::sleep(reply.wait).await,
                // Redis does not answer yet after its restart: the poll step of a wait for it.
                Err(e) => {
                    assert!(asked.elapsed() < DEADLINE, "redis never answered: {e:?}");
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
            }
        }
    };
    let started = std::time::Instant::now();
    let first = turn(TurnKind::Submit).await;
    // First use: the budget does not know what went before, so it waits a full period.
    assert!(first - started >= periods.submit, "{:?}", first - started);
    redis.kill();
    redis.restart();
    let request = turn(TurnKind::Poll).await;
    assert!(
        request - first >= periods.request,
        "a request {:?} after the last one",
        request - first
    );
    let submit = turn(TurnKind::Submit).await;
    assert!(
        submit - first >= periods.submit,
        "a submit {:?} after the last one",
        submit - first
    );
}

#[tokio::test]
async fn check_online_says_whether_redis_answers_and_who_shares_the_key() {
    // An ACL user with exactly the rights the README lists, and a password from a file.
    let mut redis = RedisServer::start(&[
        "--user",
        "default",
        "off",
        "--user",
        "beorg",
        "on",
        ">S3CRET-redis-pw",
        "~beorg:*",
        "&*",
        "-@all",
        "+evalsha",
        "+eval",
        "+script|load",
        "+script|exists",
        "+time",
        "+info",
        "+ping",
        "+hset",
        "+hmget",
        "+hget",
        "+hdel",
        "+zadd",
        "+zrangebyscore",
        "+zremrangebyscore",
        "+zrem",
        "+zcount",
        "+zcard",
        "+expire",
    ]);
    let mut envs = daemons_on_one_account(2, &redis, &[]).await;
    let url = format!("redis://beorg@127.0.0.1:{}/0", redis.port);
    // As shown: the user name is hidden too (redact::url).
    let shown = format!("redis://***@127.0.0.1:{}/0", redis.port);
    for env in &mut envs {
        std::fs::write(env.dir.path().join("redis-pw"), "S3CRET-redis-pw\n").unwrap();
        env.extra_tables = format!(
            "\n[budget]\nredis = \"{url}\"\nkey = \"beorg:test\"\nredis_password_file = \"redis-pw\"\n"
        );
    }
    let mut daemons: Vec<_> = envs.iter().map(|e| e.spawn_binary(&[])).collect();
    for (d, env) in envs.iter().enumerate() {
        env.drop_scan(0, &format!("d{d}.png"), 1700 + d as u64, None);
    }
    for (d, env) in envs.iter().enumerate() {
        let sidecar = env.sidecar(0, &format!("d{d}.png")).await;
        assert!(sidecar.document_id.is_some(), "{sidecar:?}");
    }
    for daemon in &mut daemons {
        daemon.signal(rustix::process::Signal::TERM);
        daemon.wait(Duration::from_secs(10)).await;
        assert!(!daemon.stderr().contains("S3CRET"), "{}", daemon.stderr());
    }
    let config = envs[0].write_config();
    let (code, out) = run_bin(&["check", "--online"], &config, &[]);
    assert!(!out.contains("S3CRET"), "{out}");
    assert!(
        out.contains(&format!(
            "Redis at {shown} answers; 2 daemons share key beorg:test"
        )),
        "{out}"
    );
    assert_eq!(code, Some(0), "{out}");
    // A wrong password: the same error, the password not shown.
    for env in &envs {
        std::fs::write(env.dir.path().join("redis-pw"), "wrong-pw\n").unwrap();
    }
    let (code, out) = run_bin(&["check", "--online"], &config, &[]);
    assert!(
        out.contains(&format!("Redis at {shown} does not answer")),
        "{out}"
    );
    assert!(!out.contains("wrong-pw"), "{out}");
    assert_eq!(code, Some(1), "{out}");
    // Redis gone: an error naming what to check, and no request to the API outside the budget.
    redis.kill();
    let before = envs[0].emulator.requests().len();
    let (code, out) = run_bin(&["check", "--online"], &config, &[]);
    assert!(
        out.contains(&format!("Redis at {shown} does not answer")),
        "{out}"
    );
    assert!(out.contains("the credentials were not checked"), "{out}");
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(envs[0].emulator.requests().len(), before);
}

/// Daemons that all wait for submits take turns: the one served least recently goes first,
/// so none starves (whoever reaches Redis first would win every race otherwise).
#[tokio::test]
async fn daemons_waiting_for_submits_take_turns() {
    use beorg_hotfolder::budget::{SharedBudget, TurnKind};
    use beorg_hotfolder::config::SharedBudgetConfig;
    let redis = RedisServer::start(&[]);
    let config = SharedBudgetConfig {
        url: redis.url(),
        key: "beorg:turns".into(),
        password: None,
    };
    // Periods of about 25 ms and 86 ms.
    let limits = Limits {
        requests_per_second: 50.0,
        documents_per_minute: 750.0,
    };
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    // Daemon 0 asks again at once; the others a little later each time.
    for (d, lag) in [(0usize, 0u64), (1, 3), (2, 6)] {
        let budget =
            SharedBudget::new(&config, std::path::Path::new(&format!("/test/{d}"))).unwrap();
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                if order.lock().unwrap().len() >= 15 {
                    return;
                }
                match budget
                    .turn(TurnKind::Submit, limits.for_shared_budget(), true)
                    .await
                {
                    Ok(reply) if reply.granted => order.lock().unwrap().push(d),
                    // Not a wait on a condition: the pause the budget asks for, plus this
                    // daemon's lag, obeyed as a daemon does.
                    Ok(reply) => tokio::time::sleep(reply.wait + Duration::from_millis(lag)).await,
                    Err(_) => panic!("redis answers"),
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let order = order.lock().unwrap().clone();
    for d in 0..3 {
        let turns = order.iter().filter(|&&x| x == d).count();
        assert!(turns >= 4, "daemon {d} got {turns} of the turns: {order:?}");
    }
}

/// When documents are the scarcer budget, a poll (of any daemon) does not take the request
/// slot just before a submit that is due: that delay would be lost for good.
#[tokio::test]
async fn a_poll_leaves_the_slot_of_a_due_submit_to_it() {
    use beorg_hotfolder::budget::{SharedBudget, TurnKind};
    use beorg_hotfolder::config::SharedBudgetConfig;
    let redis = RedisServer::start(&[]);
    let config = SharedBudgetConfig {
        url: redis.url(),
        key: "beorg:slots".into(),
        password: None,
    };
    let a = SharedBudget::new(&config, std::path::Path::new("/test/a")).unwrap();
    let b = SharedBudget::new(&config, std::path::Path::new("/test/b")).unwrap();
    // Periods of about 409 ms and 2.025 s.
    let limits = Limits {
        requests_per_second: 2.5,
        documents_per_minute: 30.0,
    };
    let periods = limits.for_shared_budget().periods;
    // Daemon a's submit, asked until granted; when it was.
    let submit_of_a = async || loop {
        let reply = a
            .turn(TurnKind::Submit, limits.for_shared_budget(), true)
            .await
            .unwrap();
        if reply.granted {
            break std::time::Instant::now();
        }
        // Not a wait on a condition: the pause the budget asks for, obeyed as a daemon does.
        tokio::time::sleep(reply.wait).await;
    };
    let granted_submit = submit_of_a().await;
    // Daemon a polls while its next submit waits (far from due): granted, and its claim on
    // the next submit slot is known.
    tokio::time::sleep_until((granted_submit + Duration::from_millis(500)).into()).await;
    assert!(
        a.turn(TurnKind::Poll, limits.for_shared_budget(), true)
            .await
            .unwrap()
            .granted
    );
    // Daemon b polls 200 ms before a's submit is due: the slot stays free for the submit.
    tokio::time::sleep_until((granted_submit + Duration::from_millis(1800)).into()).await;
    let poll = b
        .turn(TurnKind::Poll, limits.for_shared_budget(), false)
        .await
        .unwrap();
    assert!(!poll.granted, "{poll:?}");
    assert!(poll.wait >= periods.request, "{poll:?}");
    // The submit goes when due, not a request period later.
    let submit = submit_of_a().await;
    assert!(
        submit - granted_submit < periods.submit + periods.request / 2,
        "{:?}",
        submit - granted_submit
    );
}

/// A 401 seen by one daemon holds polls on all of them too (a 402 holds only submits); a
/// result that then comes back fine (the token works again) ends it for all.
#[tokio::test]
async fn a_401_on_one_daemon_holds_polls_on_all_until_one_succeeds() {
    use beorg_hotfolder::budget::{SharedBudget, TurnKind};
    use beorg_hotfolder::config::SharedBudgetConfig;
    let redis = RedisServer::start(&[]);
    let config = SharedBudgetConfig {
        url: redis.url(),
        key: "beorg:401".into(),
        password: None,
    };
    let a = SharedBudget::new(&config, std::path::Path::new("/test/a")).unwrap();
    let b = SharedBudget::new(&config, std::path::Path::new("/test/b")).unwrap();
    // Periods of about 15 ms.
    let limits = Limits {
        requests_per_second: 100.0,
        documents_per_minute: 6000.0,
    };
    // Not a wait on a condition: one period passes, so a turn refused below is refused by the
    // pause, never by the rate.
    let one_period = || tokio::time::sleep(Duration::from_millis(20));
    a.account_refused(401, "token not accepted", Duration::from_secs(60));
    assert!(a.has_news());
    a.sync(limits.for_shared_budget(), false).await.unwrap();
    assert!(!a.has_news(), "the news reached Redis");
    one_period().await;
    for kind in [TurnKind::Poll, TurnKind::Submit] {
        let reply = b
            .turn(kind, limits.for_shared_budget(), false)
            .await
            .unwrap();
        assert!(!reply.granted, "{kind:?}: {reply:?}");
        let pause = reply.pause.expect("b sees the pause");
        assert_eq!(
            (pause.status, pause.message.as_str()),
            (401, "token not accepted")
        );
        assert!(pause.left > Duration::from_secs(50), "{pause:?}");
    }
    // A 402 instead: polls go, submits wait.
    a.account_refused(402, "no money", Duration::from_secs(60));
    a.sync(limits.for_shared_budget(), false).await.unwrap();
    one_period().await;
    assert!(
        b.turn(TurnKind::Poll, limits.for_shared_budget(), false)
            .await
            .unwrap()
            .granted
    );
    one_period().await;
    assert!(
        !b.turn(TurnKind::Submit, limits.for_shared_budget(), false)
            .await
            .unwrap()
            .granted
    );
    // A result read fine clears a 401, not a 402; a submit that went through clears both.
    a.account_ok(false);
    a.sync(limits.for_shared_budget(), false).await.unwrap();
    one_period().await;
    assert!(
        !b.turn(TurnKind::Submit, limits.for_shared_budget(), false)
            .await
            .unwrap()
            .granted
    );
    a.account_ok(true);
    let reply = a.sync(limits.for_shared_budget(), false).await.unwrap();
    assert!(reply.pause.is_none(), "{reply:?}");
    one_period().await;
    assert!(
        b.turn(TurnKind::Submit, limits.for_shared_budget(), false)
            .await
            .unwrap()
            .granted
    );
}

/// Limits of the stricter daemon (A) and of the looser one (B) in the tests of daemons with
/// different limits on one key: ten times apart, as in the review (60 and 600 a minute).
const STRICT: Limits = Limits {
    requests_per_second: 5.0,
    documents_per_minute: 120.0,
};
const LOOSE: Limits = Limits {
    requests_per_second: 20.0,
    documents_per_minute: 1200.0,
};

/// Two daemons on one key and one emulator: the first with [`STRICT`] limits, the second
/// with [`LOOSE`] ones and `/metrics` on the returned port.
async fn strict_and_loose_daemons(redis: &RedisServer) -> (Vec<TestEnv>, u16) {
    let mut envs = daemons_on_one_account(2, redis, &[]).await;
    for (env, limits) in envs.iter_mut().zip([STRICT, LOOSE]) {
        env.api(&format!(
            "requests_per_second = {}",
            limits.requests_per_second
        ));
        env.api(&format!(
            "documents_per_minute = {}",
            limits.documents_per_minute
        ));
    }
    let port = free_port();
    envs[1]
        .extra_tables
        .push_str(&format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    (envs, port)
}

/// The submits the emulator saw, in order of arrival.
fn submit_times(envs: &[TestEnv]) -> Vec<std::time::Instant> {
    let mut times: Vec<_> = all_requests(envs)
        .iter()
        .filter(|r| r.endpoint == Endpoint::Submit)
        .map(|r| r.at)
        .collect();
    times.sort();
    times
}

#[tokio::test]
async fn daemons_with_different_limits_on_one_key_keep_the_stricter_ones_together_and_say_so() {
    let _one_at_a_time = SPACING_JUDGED.lock().await;
    let redis = RedisServer::start(&[]);
    let (envs, metrics_port) = strict_and_loose_daemons(&redis).await;
    let mut daemons: Vec<_> = envs.iter().map(|e| e.spawn_binary(&[])).collect();
    for (d, env) in envs.iter().enumerate() {
        for n in 0..3u64 {
            env.drop_scan(0, &format!("d{d}-{n}.png"), 1800 + 10 * d as u64 + n, None);
        }
    }
    for (d, env) in envs.iter().enumerate() {
        for n in 0..3 {
            let sidecar = env.sidecar(0, &format!("d{d}-{n}.png")).await;
            assert!(sidecar.document_id.is_some(), "d{d}-{n}: {sidecar:?}");
        }
    }
    // Together, never over the stricter limits.
    assert_within_limits(
        &all_requests(&envs),
        STRICT.requests_per_second,
        STRICT.documents_per_minute,
    );
    assert_eq!(submit_times(&envs).len(), 6, "each file paid for once");
    // The looser daemon says what differs, naming both, and shows the limits it keeps.
    wait_until(
        "the looser daemon's status shows the stricter limits",
        || {
            snapshot(&envs[1]).is_some_and(|s| {
                s["budget"]["stricter_limits"]["in_use"]["documents_per_minute"] == 120.0
            })
        },
    )
    .await;
    let gauge = metric_value(
        &scrape_metrics(metrics_port).await,
        "beorg_budget_limits_stricter",
        &[],
    );
    assert_eq!(gauge, Some(1.0));
    assert!(
        snapshot(&envs[0]).is_some_and(|s| s["budget"]["stricter_limits"].is_null()),
        "the stricter daemon keeps its own limits"
    );
    for daemon in &mut daemons {
        daemon.signal(rustix::process::Signal::TERM);
        daemon.wait(Duration::from_secs(10)).await;
    }
    let log = daemons[1].stderr();
    let error = log
        .lines()
        .find(|l| l.contains("ERROR") && l.contains("differ from those stored"))
        .unwrap_or_else(|| panic!("no ERROR about the limits:\n{log}"));
    assert!(
        error.contains(
            "the [api] limits of this daemon (1200 documents/min, 20 requests/s) differ from those stored with the shared budget beorg:test (120 documents/min"
        ) && error.contains("keeps the stricter of each: 120 documents/min, 5 requests/s"),
        "{error}"
    );
    // `check --online` says it for the looser config, with how to raise them for all.
    let (code, out) = run_bin(&["check", "--online"], &envs[1].write_config(), &[]);
    assert!(
        out.contains(
            "but the limits stored with the key (120 documents/min, 5 requests/s) differ from this config's [api] (1200 documents/min, 20 requests/s)"
        ),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "redis-cli -u {} DEL beorg:test:state",
            redis.url()
        )),
        "{out}"
    );
    assert_eq!(code, Some(0), "a warning, not an error: {out}");
    let (_, out) = run_bin(&["check", "--online"], &envs[0].write_config(), &[]);
    assert!(!out.contains("differ from this config"), "{out}");
}

/// A Redis that restarts forgets the key's limits; the looser daemon, the only one with work
/// then, asks with the stricter limits it learned, so they still hold.
#[tokio::test]
async fn after_a_redis_restart_the_looser_daemon_keeps_the_stricter_limits_it_learned() {
    let _one_at_a_time = SPACING_JUDGED.lock().await;
    let mut redis = RedisServer::start(&[]);
    let (envs, _) = strict_and_loose_daemons(&redis).await;
    let mut daemons: Vec<_> = envs.iter().map(|e| e.spawn_binary(&[])).collect();
    for (d, env) in envs.iter().enumerate() {
        env.drop_scan(0, &format!("d{d}.png"), 1900 + d as u64, None);
    }
    for (d, env) in envs.iter().enumerate() {
        let sidecar = env.sidecar(0, &format!("d{d}.png")).await;
        assert!(sidecar.document_id.is_some(), "d{d}: {sidecar:?}");
    }
    wait_until("the looser daemon learned the stricter limits", || {
        snapshot(&envs[1]).is_some_and(|s| s["budget"]["stricter_limits"].is_object())
    })
    .await;
    redis.kill();
    redis.restart();
    let before = submit_times(&envs).len();
    for n in 0..4u64 {
        envs[1].drop_scan(0, &format!("after-{n}.png"), 1910 + n, None);
    }
    for n in 0..4 {
        let sidecar = envs[1].sidecar(0, &format!("after-{n}.png")).await;
        assert!(sidecar.document_id.is_some(), "after-{n}: {sidecar:?}");
    }
    for daemon in &mut daemons {
        daemon.signal(rustix::process::Signal::TERM);
        daemon.wait(Duration::from_secs(10)).await;
    }
    let after = &submit_times(&envs)[before..];
    assert_eq!(after.len(), 4, "each file paid for once");
    // The emulator stamps arrivals, and on a loaded 2-core machine one request of a pair can
    // arrive tens of milliseconds after its grant (seen: 463 ms for a 500 ms period, with
    // other builds running). What this test pins is which period the looser daemon keeps
    // after the restart: the stricter one (500 ms), not its own (50 ms, which is what
    // arrives without the fix). So a gap counts from 80 % of the stricter period; the
    // vendor's limit itself is judged exactly by the tests of the spacing.
    let stricter = Duration::from_secs_f64(60.0 / STRICT.documents_per_minute);
    for pair in after.windows(2) {
        assert!(
            pair[1] - pair[0] >= stricter.mul_f64(0.8),
            "two submits {:?} apart after Redis restarted (the stricter period is {stricter:?})",
            pair[1] - pair[0]
        );
    }
}

/// The key stores the limits of its first turn; a daemon with stricter ones tightens them,
/// each limit on its own; every turn, whoever asks, is measured with the stricter; `check`'s
/// turn uses them but stores none of its own.
#[tokio::test]
async fn a_shared_budget_keeps_the_stricter_of_each_limit_and_a_check_stores_none() {
    use beorg_hotfolder::budget::{SharedBudget, TurnKind, probe};
    use beorg_hotfolder::config::SharedBudgetConfig;
    let redis = RedisServer::start(&[]);
    let config = SharedBudgetConfig {
        url: redis.url(),
        key: "beorg:limits".into(),
        password: None,
    };
    let budget = |name: &str| SharedBudget::new(&config, std::path::Path::new(name)).unwrap();
    let (loose, strict, check) = (budget("/test/loose"), budget("/test/strict"), budget("/c"));
    let first = loose
        .turn(TurnKind::Poll, LOOSE.for_shared_budget(), false)
        .await
        .unwrap();
    assert_eq!(
        (first.key_limits, first.limits),
        (None, Some(LOOSE)),
        "stored at the first turn"
    );
    // A draft config's check: measured with its stricter limits, stored nowhere.
    let draft = Limits {
        requests_per_second: 0.5,
        documents_per_minute: 1.0,
    };
    let checked = check
        .turn_without_storing_limits(TurnKind::Poll, draft.for_shared_budget())
        .await
        .unwrap();
    assert_eq!(
        (checked.key_limits, checked.limits),
        (Some(LOOSE), Some(draft))
    );
    assert_eq!(probe(&config).await.unwrap().limits, Some(LOOSE));
    // Stricter requests, looser documents: the key tightens the one, keeps the other.
    let mixed = Limits {
        requests_per_second: STRICT.requests_per_second,
        documents_per_minute: 2400.0,
    };
    let kept = Limits {
        requests_per_second: STRICT.requests_per_second,
        documents_per_minute: LOOSE.documents_per_minute,
    };
    let tightened = strict
        .turn(TurnKind::Poll, mixed.for_shared_budget(), false)
        .await
        .unwrap();
    assert_eq!(
        (tightened.key_limits, tightened.limits),
        (Some(LOOSE), Some(kept))
    );
    assert_eq!(probe(&config).await.unwrap().limits, Some(kept));
    // The looser daemon's turns are measured with the key's stricter request limit.
    let mut grants = Vec::new();
    while grants.len() < 3 {
        let reply = loose
            .turn(TurnKind::Poll, LOOSE.for_shared_budget(), false)
            .await
            .unwrap();
        assert_eq!((reply.key_limits, reply.limits), (Some(kept), Some(kept)));
        if reply.granted {
            grants.push(std::time::Instant::now());
        } else {
            // Not a wait on a condition: the pause the budget asks for, obeyed as a daemon does.
            tokio::time::sleep(reply.wait).await;
        }
    }
    let period = Duration::from_secs_f64(1.0 / STRICT.requests_per_second);
    for pair in grants.windows(2) {
        assert!(pair[1] - pair[0] >= period, "{:?}", pair[1] - pair[0]);
    }
    // Raising them for all, as the README says: the stored ones deleted, the next daemon to
    // ask stores its own.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("DEL")
        .arg("beorg:limits:state")
        .query_async(&mut connection)
        .await
        .unwrap();
    let raised = loose
        .turn(TurnKind::Poll, LOOSE.for_shared_budget(), false)
        .await
        .unwrap();
    assert_eq!((raised.key_limits, raised.limits), (None, Some(LOOSE)));
}
