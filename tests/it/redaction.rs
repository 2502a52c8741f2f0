//! Issue 19, finding 4: a password in the Redis URL's query was accepted and printed, and
//! every URL the daemon prints must pass through one redaction (`beorg_hotfolder::redact`).
//! The real binary, a real `redis-server`, the emulator and a webhook receiver that is not
//! there; every output (log at trace level, `check`, `check --online`, `status`, the
//! status snapshot, the sidecar) is searched for each secret.

use std::time::Duration;

use rustix::process::Signal;

use crate::helpers::*;

/// `run`, `check` and `check --online` with `?password=` in `budget.redis` (and a socket
/// URL's `?pass=`, which the Redis client reads as a password): refused at start, naming
/// the key and the fix, the password not shown. Before: `check --online` printed the whole
/// URL and `run` logged it at INFO.
#[tokio::test]
async fn a_password_in_the_redis_urls_query_is_refused_at_start_naming_the_key() {
    let redis = RedisServer::start(&[]);
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    for url in [
        format!("{}?password=S3CRET-q", redis.url()),
        format!("{}?pass=S3CRET-q", redis.url()),
        format!("redis://:S3CRET-q@127.0.0.1:{}/0", redis.port),
        "redis+unix:///run/redis/redis.sock?pass=S3CRET-q".to_string(),
    ] {
        env.extra_tables = format!("\n[budget]\nredis = \"{url}\"\nkey = \"beorg:test\"\n");
        let config = env.write_config();
        for args in [&["check"][..], &["check", "--online"][..], &["run"][..]] {
            let (code, out) = run_bin(args, &config, &[("RUST_LOG", "trace")]);
            assert_ne!(code, Some(0), "{args:?} {url}: {out}");
            assert!(
                out.contains("budget.redis") && out.contains("carries a password"),
                "{args:?} {url}: {out}"
            );
            assert!(
                out.contains("budget.redis_password_file"),
                "{args:?} {url} does not say the fix: {out}"
            );
            assert!(!out.contains("S3CRET-q"), "{args:?} {url} leaks: {out}");
        }
    }
}

/// What a secret-bearing config may put in front of a reader: the Redis URL's user name, a
/// webhook's `user:password@`, its path and its `?token=`, and the API token; none of them
/// appears in the log at trace level, in `check`, `check --online`, `status` (text and
/// JSON), the status snapshot or the sidecar. The URLs are shown redacted instead. Before:
/// the Redis user was in the INFO line, `check` and `status`.
#[tokio::test]
async fn no_secret_of_a_configured_url_reaches_any_output() {
    const SECRETS: [&str; 5] = [
        "SECRETUSER",
        "hookuser",
        "HOOK-pa55",
        "HOOK-PATH-s3cret",
        "HOOK-TOKEN-s3cret",
    ];
    let redis = RedisServer::start(&[]);
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    let redis_url = format!("redis://SECRETUSER@127.0.0.1:{}/0", redis.port);
    // A receiver that is not there: every try fails, and its failure is logged.
    let hook_port = free_port();
    let webhook = format!(
        "http://hookuser:HOOK-pa55@127.0.0.1:{hook_port}/hooks/HOOK-PATH-s3cret?token=HOOK-TOKEN-s3cret"
    );
    env.inboxes[0].extra =
        format!("webhook = \"{webhook}\"\ndelivery_retry = [\"0s\", \"100ms\", \"100ms\"]\n");
    env.extra_tables = format!("\n[budget]\nredis = \"{redis_url}\"\nkey = \"beorg:test\"\n");

    let mut daemon = env.spawn_binary(&[("RUST_LOG", "trace")]);
    env.drop_scan(0, "scan.png", 19_004, None);
    let sidecar_path = layout::sidecar_path(&env.inboxes[0].done.join("scan.png"));
    wait_until("the sidecar", || sidecar_path.exists()).await;
    wait_until("a failed webhook try in the log", || {
        daemon.stderr().contains("delivery try failed")
    })
    .await;
    let (_, status_text) = run_bin(&["status"], &env.write_config(), &[]);
    let (_, status_json) = run_bin(&["status", "--json"], &env.write_config(), &[]);
    let snapshot = std::fs::read_to_string(env.state_dir.join("status.json")).unwrap();
    daemon.signal(Signal::TERM);
    assert!(daemon.wait(Duration::from_secs(10)).await.success());
    let log = daemon.stderr();
    let (_, check) = run_bin(&["check"], &env.write_config(), &[]);
    let (_, check_online) = run_bin(&["check", "--online"], &env.write_config(), &[]);
    let sidecar = std::fs::read_to_string(&sidecar_path).unwrap();

    let shown_redis = format!("redis://***@127.0.0.1:{}/0", redis.port);
    assert!(
        log.contains(&shown_redis),
        "the log names the budget: {log}"
    );
    assert!(
        log.contains(&format!("http://***@127.0.0.1:{hook_port}/…")),
        "the failed try names the receiver by its origin: {log}"
    );
    assert!(check.contains(&shown_redis), "{check}");
    assert!(
        check_online.contains(&format!("Redis at {shown_redis} answers")),
        "{check_online}"
    );
    assert!(status_text.contains(&shown_redis), "{status_text}");
    for (what, text) in [
        ("log", &log),
        ("status", &status_text),
        ("status --json", &status_json),
        ("status.json", &snapshot),
        ("check", &check),
        ("check --online", &check_online),
        ("sidecar", &sidecar),
    ] {
        for secret in SECRETS.iter().chain([&TOKEN]) {
            assert!(!text.contains(secret), "{what} shows {secret}:\n{text}");
        }
    }
}

/// An `api.base_url` with user information is refused, and no message quotes it, not even
/// the one for a URL that does not parse at all. Before: `"http://apiuser:API-pa55@...:99999"
/// is not a valid URL (invalid port number)`.
#[tokio::test]
async fn a_base_url_with_credentials_is_refused_without_showing_them() {
    let mut env = TestEnv::new(&["PASSPORT"]).await;
    let port = env
        .emulator
        .base_url()
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    for base_url in [
        format!("http://apiuser:API-pa55@127.0.0.1:{port}"),
        "http://apiuser:API-pa55@127.0.0.1:99999".to_string(),
        format!("http://127.0.0.1:{port}/?token=API-pa55"),
    ] {
        env.base_url = base_url.clone();
        let config = env.write_config();
        for args in [&["check"][..], &["check", "--online"][..], &["run"][..]] {
            let (code, out) = run_bin(args, &config, &[("RUST_LOG", "trace")]);
            assert_ne!(code, Some(0), "{args:?} {base_url}: {out}");
            assert!(out.contains("api.base_url"), "{args:?} {base_url}: {out}");
            for secret in ["apiuser", "API-pa55"] {
                assert!(!out.contains(secret), "{args:?} {base_url} leaks: {out}");
            }
        }
    }
}
