//! The one place settings are read and checked.
//!
//! The TOML file is parsed into raw structs that mirror it (unknown keys refused), then
//! resolved into [`Config`]: per-inbox settings merged with `[defaults]`, the token looked up
//! (`BEORG_TOKEN`, then `token`, then `token_file`, then the systemd credential) and kept with
//! where it was found ([`TokenSource`]), and the folder layout checked so that no inbox can
//! feed on another's output. Every error names the key and says how to fix it. A config
//! loaded for a command that never calls the API may say "no token" (`api.token == None`).
//!
//! This module owns the [`Config`] type, loading, and what every part shares (the error,
//! the range check); each table is its own file: `api.rs` (`[api]`), `token.rs` (the token),
//! `daemon.rs` (`[daemon]`), `metrics.rs` (`[metrics]`), `inbox_keys.rs` (the per-inbox keys,
//! each written once, as `[defaults]` and `[[inbox]]` write them), `inbox.rs` (one inbox
//! resolved), `delivery.rs` and `sets.rs` (an inbox's delivery and set keys), `budget.rs`
//! (`[budget]`), `review_station.rs` (`[review_station]`), `folders.rs` (the folder layout), `parse_error.rs` (a file that does not
//! parse, in words).
//!
//! Settings only: what the daemon creates inside the configured folders (the work folder,
//! sidecar names) is [`crate::store::layout`]'s, and storage reads settings, never the
//! reverse.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod api;
pub use api::{ApiConfig, Limits};
mod budget;
pub use budget::{BudgetConfig, REDIS_PASSWORD_CREDENTIAL, SharedBudgetConfig};
mod daemon;
pub use daemon::DaemonConfig;
mod delivery;
pub use delivery::{
    DEFAULT_DELIVERY_RETRY, DEFAULT_EXEC_TIMEOUT, DeliveryConfig, SigningKey, Webhook,
};
mod folders;
mod inbox;
pub use inbox::{
    DEFAULT_FIRST_POLL, DEFAULT_MAX_POLL_INTERVAL, DEFAULT_POLL_INTERVAL, DEFAULT_RESULT_TIMEOUT,
    DEFAULT_SETTLE, InboxConfig,
};
mod inbox_keys;
pub use inbox_keys::{Policy, ProjectField, Tariff, WatchMode};
mod metrics;
pub use metrics::MetricsConfig;
mod parse_error;
mod review_station;
pub use review_station::{ReviewStationConfig, TlsFiles};
pub mod sets;
pub use sets::DocumentRule;
mod token;
pub use token::{Secret, TOKEN_ENV, Token, TokenSource};

/// A config that cannot be used: which key, what is wrong, and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Key { key: String, message: String },
}

pub(crate) fn key_error(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.into(),
        message: message.into(),
    }
}

/// Everything the daemon needs, resolved and checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub api: ApiConfig,
    pub daemon: DaemonConfig,
    pub metrics: MetricsConfig,
    pub inboxes: Vec<InboxConfig>,
    /// `[budget]`: this process's own request budget, or one shared through Redis.
    pub budget: BudgetConfig,
    /// `[review_station]`: the web page for the review folders; off when `None`.
    pub review_station: Option<ReviewStationConfig>,
}

/// The file as written. Field names are the documented tables; serde refuses anything else.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    api: api::RawApi,
    #[serde(default)]
    daemon: daemon::RawDaemon,
    #[serde(default)]
    defaults: inbox_keys::InboxKeys,
    #[serde(default)]
    metrics: metrics::RawMetrics,
    #[serde(default)]
    inbox: Vec<inbox_keys::RawInbox>,
    #[serde(default)]
    budget: budget::RawBudget,
    review_station: Option<review_station::RawReviewStation>,
}

impl Config {
    /// Reads, parses and checks a config file. `BEORG_TOKEN` from the environment wins over
    /// the file's token.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::read(path, TokenRule::Required)
    }

    /// Like [`Config::load`] for commands that never call the API (`status`): no token is not
    /// an error (it may live in a systemd credential only the service can read), and gives
    /// `api.token == None`.
    pub fn load_without_token(path: &Path) -> Result<Config, ConfigError> {
        Config::read(path, TokenRule::Optional)
    }

    fn read(path: &Path, rule: TokenRule) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let env_token = std::env::var(TOKEN_ENV)
            .ok()
            .filter(|t| !t.trim().is_empty());
        Config::parse(&text, path, env_token, rule)
    }

    /// Parses and checks config text. `origin` is only used in messages; relative
    /// `token_file` paths are taken relative to the config file's folder.
    pub fn from_toml(
        text: &str,
        origin: &Path,
        env_token: Option<String>,
    ) -> Result<Config, ConfigError> {
        Config::parse(text, origin, env_token, TokenRule::Required)
    }

    fn parse(
        text: &str,
        origin: &Path,
        env_token: Option<String>,
        rule: TokenRule,
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_path_buf(),
            message: parse_error::parse_error_message(&e, text),
        })?;
        let api = api::resolve_api(raw.api, origin, env_token, rule)?;
        let daemon = daemon::resolve_daemon(raw.daemon)?;
        let metrics = metrics::resolve_metrics(raw.metrics)?;
        let mut inboxes = raw
            .inbox
            .into_iter()
            .enumerate()
            .map(|(i, inbox)| inbox::resolve_inbox(i, inbox, &raw.defaults, &api.project_id))
            .collect::<Result<Vec<_>, _>>()?;
        if inboxes.is_empty() {
            return Err(key_error(
                "inbox",
                "no [[inbox]] is configured; add one with path, type, done and failed",
            ));
        }
        folders::check_folders(&inboxes, &daemon.state_dir)?;
        delivery::complete(&mut inboxes, origin, rule)?;
        let budget = budget::resolve(raw.budget, &api.project_id, origin, rule)?;
        let review_station = review_station::resolve(raw.review_station, origin)?;
        Ok(Config {
            api,
            daemon,
            metrics,
            inboxes,
            budget,
            review_station,
        })
    }
}

/// Whether a config without a usable token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenRule {
    /// `run`, `check`, `demo`: the token is needed.
    Required,
    /// `status`: the API is never called.
    Optional,
}

const MS_10: Duration = Duration::from_millis(10);
const MS_100: Duration = Duration::from_millis(100);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// A duration must lie in `[min, max]`; every wait and deadline the daemon computes from
/// one then stays far from the limits of `Instant` arithmetic.
fn check_range(
    value: Duration,
    key: &str,
    (min, max): (Duration, Duration),
    default: &str,
) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        let show = |d: Duration| humantime::format_duration(d).to_string();
        let allowed = if min.is_zero() {
            format!("at most {}", show(max))
        } else {
            format!("{} to {}", show(min), show(max))
        };
        Err(key_error(
            key,
            format!(
                "\"{}\" is out of range: allowed {allowed} (default \"{default}\")",
                show(value)
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) const GOOD: &str = r#"
    [api]
    base_url = "http://127.0.0.1:9"
    project_id = "U_RATE_2"
    machine_uid = "m"
    token = "t0k3n"

    [daemon]
    state_dir = "/tmp/bh-state"

    [defaults]
    settle = "500ms"

    [[inbox]]
    path = "/srv/in/passport"
    type = "PASSPORT"
    done = "/srv/done/passport"
    failed = "/srv/failed/passport"
    first_poll = "1s"
    "#;

    pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("/etc/bh/config.toml"), None)
    }

    pub(super) fn err_text(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn good_config_merges_defaults_and_inbox_values() {
        let c = parse(GOOD).unwrap();
        let inbox = &c.inboxes[0];
        assert_eq!(inbox.settle, Duration::from_millis(500));
        assert_eq!(inbox.first_poll, Duration::from_secs(1));
        assert_eq!(inbox.max_poll_interval, DEFAULT_MAX_POLL_INTERVAL);
        assert_eq!(c.api.requests_per_second, 1.0);
        assert_eq!(c.api.documents_per_minute, 10.0);
        assert_eq!(c.api.token.as_ref().unwrap().secret.expose(), "t0k3n");
    }

    /// Finding 11 (issue 8): `requests_per_second = 1e-20` passed and panicked at start.
    #[test]
    fn out_of_range_rates_and_durations_are_refused_with_key_and_range() {
        let api = |line: &str| GOOD.replace("token = \"t0k3n\"", &format!("token = \"t\"\n{line}"));
        let daemon = |line: &str| GOOD.replace("[daemon]\n", &format!("[daemon]\n{line}\n"));
        let inbox = |line: &str| GOOD.replace("first_poll = \"1s\"", line);
        let cases = [
            (
                api("requests_per_second = 1e-20"),
                "api.requests_per_second",
            ),
            (api("requests_per_second = 1e9"), "api.requests_per_second"),
            (api("requests_per_second = nan"), "api.requests_per_second"),
            (api("requests_per_second = inf"), "api.requests_per_second"),
            (
                api("documents_per_minute = 1e-300"),
                "api.documents_per_minute",
            ),
            (api("documents_per_minute = -3"), "api.documents_per_minute"),
            (api("request_timeout = \"1ns\""), "api.request_timeout"),
            (api("request_timeout = \"100000y\""), "api.request_timeout"),
            (api("connect_timeout = \"5d\""), "api.connect_timeout"),
            (api("account_retry = \"500000y\""), "api.account_retry"),
            (api("retry_base = \"0s\""), "api.retry_base"),
            (api("retry_max = \"500000y\""), "api.retry_max"),
            (api("submit_attempts = 4000000000"), "api.submit_attempts"),
            (
                daemon("rescan_interval = \"1ns\""),
                "daemon.rescan_interval",
            ),
            (daemon("keep_history = \"500000y\""), "daemon.keep_history"),
            (daemon("hold_limit = \"0s\""), "daemon.hold_limit"),
            (daemon("hold_limit = \"500000y\""), "daemon.hold_limit"),
            (inbox("settle = \"500000y\""), "inbox[0].settle"),
            (inbox("first_poll = \"500000y\""), "inbox[0].first_poll"),
            (
                inbox("max_poll_interval = \"500000y\""),
                "inbox[0].max_poll_interval",
            ),
            (
                inbox("result_timeout = \"500000y\""),
                "inbox[0].result_timeout",
            ),
            (inbox("poll_interval = \"1ns\""), "inbox[0].poll_interval"),
        ];
        for (text, key) in cases {
            let e = err_text(&text);
            assert!(e.contains(key) && e.contains("allowed"), "{key}: {e}");
        }
        // The edges are accepted.
        parse(&api(
            "requests_per_second = 0.001\ndocuments_per_minute = 60000",
        ))
        .unwrap();
        parse(&inbox("settle = \"0s\"\nresult_timeout = \"30d\"")).unwrap();
    }

    /// Every key the config accepts. Adding a key? Add it here and to config.example.toml.
    const ALL_KEYS: [&str; 56] = [
        "base_url",
        "project_id",
        "machine_uid",
        "token",
        "token_file",
        "requests_per_second",
        "documents_per_minute",
        "request_timeout",
        "connect_timeout",
        "account_retry",
        "submit_attempts",
        "retry_base",
        "retry_max",
        "state_dir",
        "rescan_interval",
        "keep_history",
        "path",
        "type",
        "done",
        "failed",
        "settle",
        "first_poll",
        "max_poll_interval",
        "result_timeout",
        "stages",
        "watch",
        "poll_interval",
        "recursive",
        "ignore",
        "preflight",
        "file_mode",
        "listen",
        "hold_limit",
        "project_field",
        "tariff",
        "review",
        "min_confidence",
        "retention",
        "sets",
        "ready_file",
        "match",
        "relation",
        "webhook",
        "webhook_secret_file",
        "exec",
        "exec_timeout",
        "ledger",
        "delivery_retry",
        "redis",
        "redis_password_file",
        "users_file",
        "audit_log",
        "session_timeout",
        "tls_cert",
        "tls_key",
        "allow_plain_http",
    ];

    #[test]
    fn example_config_is_valid_documents_every_key_and_shows_the_defaults() {
        let text = include_str!("../../config.example.toml");
        let origin = Path::new("/etc/beorg-hotfolder/config.toml");
        let example = Config::from_toml(text, origin, Some("t".into())).unwrap();
        for key in ALL_KEYS.iter().chain(&["key"]) {
            assert!(
                text.contains(&format!("\n{key} = ")) || text.contains(&format!("# {key} = ")),
                "config.example.toml does not document `{key}`"
            );
        }
        // `project_id` is also an inbox key (shown commented: it has no default of its own).
        assert!(
            text.contains("\n# project_id = "),
            "config.example.toml does not document the inbox's `project_id`"
        );
        // The values written in the example are the built-in defaults.
        let minimal = "[api]\nproject_id = \"U_RATE_2\"\nmachine_uid = \"m\"\n\n[[inbox]]\npath = \"/srv/scans/in/passport\"\ntype = \"PASSPORT\"\ndone = \"/srv/scans/done/passport\"\nfailed = \"/srv/scans/failed/passport\"\n";
        let defaults = Config::from_toml(minimal, origin, Some("t".into())).unwrap();
        let (a, b) = (&example.api, &defaults.api);
        assert_eq!(a.base_url, b.base_url);
        assert_eq!(a.requests_per_second, b.requests_per_second);
        assert_eq!(a.documents_per_minute, b.documents_per_minute);
        assert_eq!(a.request_timeout, b.request_timeout);
        assert_eq!(a.connect_timeout, b.connect_timeout);
        assert_eq!(a.account_retry, b.account_retry);
        assert_eq!(a.submit_attempts, b.submit_attempts);
        assert_eq!(a.retry_base, b.retry_base);
        assert_eq!(a.retry_max, b.retry_max);
        assert_eq!(example.daemon.state_dir, defaults.daemon.state_dir);
        assert_eq!(
            example.daemon.rescan_interval,
            defaults.daemon.rescan_interval
        );
        assert_eq!(example.daemon.hold_limit, defaults.daemon.hold_limit);
        let (x, y) = (&example.inboxes[0], &defaults.inboxes[0]);
        assert_eq!(x.settle, y.settle);
        assert_eq!(x.first_poll, y.first_poll);
        assert_eq!(x.max_poll_interval, y.max_poll_interval);
        assert_eq!(x.result_timeout, y.result_timeout);
        assert_eq!(x.watch, y.watch);
        assert_eq!(x.poll_interval, y.poll_interval);
        assert_eq!(x.recursive, y.recursive);
        assert_eq!(x.preflight, y.preflight);
        assert_eq!(x.project_field, y.project_field);
        assert_eq!(x.tariff, y.tariff);
        assert_eq!((x.review.as_ref(), x.min_confidence), (None, None));
        assert_eq!(x.retention, y.retention);
        assert_eq!(x.sets, y.sets);
        assert_eq!(x.delivery.exec_timeout, y.delivery.exec_timeout);
        assert_eq!(x.delivery.retry, y.delivery.retry);
        assert_eq!(example.daemon.file_mode, defaults.daemon.file_mode);
        assert_eq!(example.metrics.listen, defaults.metrics.listen);
    }

    #[test]
    fn no_inbox_is_refused() {
        let text = GOOD.split("[[inbox]]").next().unwrap().to_string();
        assert!(err_text(&text).contains("inbox"));
    }
}
