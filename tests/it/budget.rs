//! Issue 13: several daemons on one Beorg account share the request budget and the account
//! pause through a real `redis-server` on loopback. Each daemon is the real binary with its
//! own state folder and inboxes; all of them talk to one emulator, whose log is the judge.

use std::time::Duration;

use beorg_emulator::Endpoint;

use crate::helpers::*;

const REQUESTS_PER_SECOND: f64 = 5.0;
const DOCUMENTS_PER_MINUTE: f64 = 120.0;

/// `n` test environments whose daemons share `redis` and the first one's emulator.
async fn daemons_on_one_account(n: usize, redis: &RedisServer, extra_api: &[&str]) -> Vec<TestEnv> {
    let mut envs = Vec::new();
    for i in 0..n {
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
        let _ = i;
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
async fn issue_13_three_daemons_on_one_redis_never_exceed_either_limit_together() {
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
