//! The one place settings are read and checked.
//!
//! The TOML file is parsed into raw structs that mirror it (unknown keys refused), then
//! resolved into [`Config`]: per-inbox settings merged with `[defaults]`, the token looked up
//! (`BEORG_TOKEN`, then `token`, then `token_file`, then the systemd credential) and kept with
//! where it was found ([`TokenSource`]), and the folder layout checked so that no inbox can
//! feed on another's output. Every error names the key and says how to fix it. A config
//! loaded for a command that never calls the API may say "no token" (`api.token == None`).
//!
//! Settings only: what the daemon creates inside the configured folders (the work folder,
//! sidecar names) is [`crate::store::layout`]'s, and storage reads settings, never the
//! reverse.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub mod sets;
pub use sets::DocumentRule;
mod budget;
pub use budget::{BudgetConfig, REDIS_PASSWORD_CREDENTIAL, SharedBudgetConfig};
mod delivery;
pub use delivery::{
    DEFAULT_DELIVERY_RETRY, DEFAULT_EXEC_TIMEOUT, DeliveryConfig, SigningKey, Webhook,
};

/// Environment variable that overrides `api.token` and `api.token_file`.
pub const TOKEN_ENV: &str = "BEORG_TOKEN";

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

/// The API token. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The real value, for building a request. Never log what this returns.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The API token and where the loader found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub secret: Secret,
    pub source: TokenSource,
}

/// Where the token came from, in the order the loader looks (the first one found wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// The `BEORG_TOKEN` environment variable.
    Env,
    /// `api.token` in this config file.
    Inline(PathBuf),
    /// The file `api.token_file` names (relative names resolved against the config's folder).
    File(PathBuf),
    /// The systemd credential `token` (`LoadCredential=token:...`): this file in
    /// `$CREDENTIALS_DIRECTORY`.
    Credential(PathBuf),
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
}

/// The two ceilings, from `[api]` (the scheduler paces by them).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    pub requests_per_second: f64,
    pub documents_per_minute: f64,
}

impl Limits {
    /// The stricter (the lower rate) of each limit of these and `other`.
    pub fn stricter_of_each(&self, other: &Limits) -> Limits {
        Limits {
            requests_per_second: self.requests_per_second.min(other.requests_per_second),
            documents_per_minute: self.documents_per_minute.min(other.documents_per_minute),
        }
    }
}

/// As a person reads them: `60 documents/min, 1 request/s`.
impl std::fmt::Display for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = |rate: f64| if rate == 1.0 { "" } else { "s" };
        write!(
            f,
            "{} document{}/min, {} request{}/s",
            self.documents_per_minute,
            plural(self.documents_per_minute),
            self.requests_per_second,
            plural(self.requests_per_second)
        )
    }
}

/// How to reach the Beorg API and how hard we may use it.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Scheme and host, e.g. `https://api.beorg.ru`; a staging host or the emulator works too.
    pub base_url: String,
    /// The processing scenario from the account page (`U_RATE_2`).
    pub project_id: String,
    /// Device id issued together with the token.
    pub machine_uid: String,
    /// Access token and its source; travels in the submit body and in the result URL's query
    /// string. `None` only from [`Config::load_without_token`], when no token can be had.
    pub token: Option<Token>,
    /// Ceiling for every request to the API, submits and polls together.
    pub requests_per_second: f64,
    /// Ceiling for submits alone.
    pub documents_per_minute: f64,
    /// Deadline for one request (submits get extra time for the upload, see [`crate::api`]).
    pub request_timeout: Duration,
    /// Deadline for opening a connection.
    pub connect_timeout: Duration,
    /// After a 401/402, how long submits stay paused before the next try.
    pub account_retry: Duration,
    /// Tries for one submit that keeps meeting server errors, before the file goes to failed.
    pub submit_attempts: u32,
    /// First wait before retrying after a server or network error; doubles up to `retry_max`.
    pub retry_base: Duration,
    /// Longest wait between retries.
    pub retry_max: Duration,
}

impl ApiConfig {
    /// `requests_per_second` and `documents_per_minute`.
    pub fn limits(&self) -> Limits {
        Limits {
            requests_per_second: self.requests_per_second,
            documents_per_minute: self.documents_per_minute,
        }
    }
}

/// Settings of the process itself.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Where the journal lives (`journal.sqlite`).
    pub state_dir: PathBuf,
    /// How often every inbox is listed again as a safety net for missed events.
    pub rescan_interval: Duration,
    /// Finished files' journal rows (and so their content hashes, for the duplicate rule)
    /// are kept this long.
    pub keep_history: Duration,
    /// Mode of originals moved to done/failed and of sidecars (never world-readable).
    pub file_mode: u32,
    /// How long intake holds a settled file that looks unfinished (open for writing, end
    /// missing or still zeros) without a change before it takes it anyway, with a WARN.
    pub hold_limit: Duration,
}

/// The Prometheus endpoint.
#[derive(Debug, Clone, Default)]
pub struct MetricsConfig {
    /// Where `/metrics` and `/healthz` are served; off when None.
    pub listen: Option<std::net::SocketAddr>,
}

/// The per-inbox preflight policy, from the config key `preflight = "strict" | "warn" | "off"`.
///
/// - `strict` (default): a refused file goes to failed/ with the message, no request is made;
/// - `warn`: the refusal is logged and the file is sent anyway (the service has the last word);
/// - `off`: no preflight at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    #[default]
    Strict,
    Warn,
    Off,
}

/// The name the project travels under in a submit, from the config key
/// `project_field = "project_id" | "campaign_id"`: the vendor's pages call the same field
/// `project_id` (passport pages) and `campaign_id` (the OTPR page).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectField {
    #[default]
    ProjectId,
    CampaignId,
}

impl ProjectField {
    /// The JSON field name, as sent.
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectField::ProjectId => "project_id",
            ProjectField::CampaignId => "campaign_id",
        }
    }
}

/// The account's tariff an inbox's files are sent under, from the config key
/// `tariff = "universal" | "passport_auto"`.
///
/// - `universal` (default): each image goes with its `process_info`; the result lists
///   `documents`;
/// - `passport_auto`: no `process_info` at all (passport pages 2-3 only); the result is one
///   flat document (`data`, `metadata`, `verifications` at the top).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tariff {
    #[default]
    Universal,
    PassportAuto,
}

impl Tariff {
    /// The config value.
    pub fn as_str(self) -> &'static str {
        match self {
            Tariff::Universal => "universal",
            Tariff::PassportAuto => "passport_auto",
        }
    }
}

/// One watched folder and what to do with its files.
#[derive(Debug, Clone)]
pub struct InboxConfig {
    /// The folder the scanner writes into.
    pub path: PathBuf,
    /// Document type sent in `process_info` (`PASSPORT`, `SNILS`, ...).
    pub doc_type: String,
    /// Optional `process_info.key`; the API uses the type when absent.
    pub key: Option<String>,
    /// Optional `process_info.options.stages` (`verification`, `biometry_liveness`, ...).
    pub stages: Vec<String>,
    /// Where originals and sidecars of recognised files go.
    pub done: PathBuf,
    /// Where originals and sidecars of files that could not be recognised go.
    pub failed: PathBuf,
    /// A file is taken once its size and mtime stayed unchanged this long.
    pub settle: Duration,
    /// The shortest wait between the submit and the first result request (the learned ready
    /// time, `pipeline::ready_times`, is used when it is later).
    pub first_poll: Duration,
    /// Result requests back off up to this interval; the first comes at most
    /// `first_poll + max_poll_interval` after the submit.
    pub max_poll_interval: Duration,
    /// No result by then: the file goes to failed with kind `timeout`.
    pub result_timeout: Duration,
    /// How new files are noticed: folder events, polling, or chosen by filesystem.
    pub watch: WatchMode,
    /// How often the inbox is listed when polled.
    pub poll_interval: Duration,
    /// Take files in subfolders too, keeping the subfolder path under done/ and failed/.
    pub recursive: bool,
    /// Extra name patterns intake leaves alone, on top of the built-in list.
    pub ignore: Vec<String>,
    /// What preflight does with a file the service would refuse.
    pub preflight: Policy,
    /// This inbox's project: its own `project_id`, else `[defaults]`, else `[api].project_id`.
    pub project_id: String,
    /// The name `project_id` travels under in a submit.
    pub project_field: ProjectField,
    /// Whether `process_info` is sent, and which result shape comes back.
    pub tariff: Tariff,
    /// Where results a person must check go (with `status: "review"`); without it they go to
    /// done/ with the reasons listed.
    pub review: Option<PathBuf>,
    /// A field read with a lower confidence than this sends the result to review.
    pub min_confidence: Option<f64>,
    /// Outcomes in done/, review/ and failed/ whose sidecar is older than this are deleted.
    pub retention: Option<Duration>,
    /// Every direct subfolder of the inbox is one document set, sent as one request.
    pub sets: bool,
    /// In a `sets` inbox: a set is taken only once a file of this name is in it.
    pub ready_file: Option<String>,
    /// In a `sets` inbox: `process_info` for the files of a set, first match wins.
    pub documents: Vec<DocumentRule>,
    /// Where each outcome is delivered (webhook, command, ledger), and the retry schedule.
    pub delivery: DeliveryConfig,
}

/// How an inbox notices new files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchMode {
    /// Events on local filesystems, polling on network ones (NFS, SMB/CIFS, FUSE, ...).
    #[default]
    Auto,
    /// inotify events (plus the periodic rescan).
    Events,
    /// List the folder every `poll_interval`.
    Poll,
}

// ---------------------------------------------------------------------------------------
// Raw file format. Field names are the documented keys; serde refuses anything else.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    api: RawApi,
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    defaults: RawInboxSettings,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    inbox: Vec<RawInbox>,
    #[serde(default)]
    budget: budget::RawBudget,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    #[serde(default = "default_base_url")]
    base_url: String,
    project_id: Option<String>,
    machine_uid: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    #[serde(default = "default_rps")]
    requests_per_second: f64,
    #[serde(default = "default_dpm")]
    documents_per_minute: f64,
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    request_timeout: Duration,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    connect_timeout: Duration,
    #[serde(default = "default_account_retry", with = "humantime_serde")]
    account_retry: Duration,
    #[serde(default = "default_submit_attempts")]
    submit_attempts: u32,
    #[serde(default = "default_retry_base", with = "humantime_serde")]
    retry_base: Duration,
    #[serde(default = "default_retry_max", with = "humantime_serde")]
    retry_max: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    #[serde(default = "default_state_dir")]
    state_dir: PathBuf,
    #[serde(default = "default_rescan_interval", with = "humantime_serde")]
    rescan_interval: Duration,
    #[serde(default = "default_keep_history", with = "humantime_serde")]
    keep_history: Duration,
    #[serde(default = "default_file_mode")]
    file_mode: String,
    #[serde(default = "default_hold_limit", with = "humantime_serde")]
    hold_limit: Duration,
}

impl Default for RawDaemon {
    fn default() -> Self {
        RawDaemon {
            state_dir: default_state_dir(),
            rescan_interval: default_rescan_interval(),
            keep_history: default_keep_history(),
            file_mode: default_file_mode(),
            hold_limit: default_hold_limit(),
        }
    }
}

fn default_file_mode() -> String {
    "0640".into()
}

/// Keys allowed both in `[defaults]` and in each `[[inbox]]`; the inbox value wins.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInboxSettings {
    key: Option<String>,
    stages: Option<Vec<String>>,
    #[serde(default, with = "humantime_serde")]
    settle: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    first_poll: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    max_poll_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    result_timeout: Option<Duration>,
    watch: Option<WatchMode>,
    #[serde(default, with = "humantime_serde")]
    poll_interval: Option<Duration>,
    recursive: Option<bool>,
    ignore: Option<Vec<String>>,
    preflight: Option<Policy>,
    project_id: Option<String>,
    project_field: Option<ProjectField>,
    tariff: Option<Tariff>,
    review: Option<PathBuf>,
    min_confidence: Option<f64>,
    #[serde(default, with = "humantime_serde")]
    retention: Option<Duration>,
    // Delivery of outcomes (see `delivery`).
    webhook: Option<String>,
    webhook_secret_file: Option<PathBuf>,
    exec: Option<Vec<String>>,
    #[serde(default, with = "humantime_serde")]
    exec_timeout: Option<Duration>,
    ledger: Option<PathBuf>,
    delivery_retry: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInbox {
    path: Option<PathBuf>,
    #[serde(rename = "type")]
    doc_type: Option<String>,
    done: Option<PathBuf>,
    failed: Option<PathBuf>,
    // The same keys as `RawInboxSettings`, spelled out: serde's `flatten` cannot be combined
    // with `deny_unknown_fields`, and a misspelt inbox key must be refused.
    key: Option<String>,
    stages: Option<Vec<String>>,
    #[serde(default, with = "humantime_serde")]
    settle: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    first_poll: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    max_poll_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    result_timeout: Option<Duration>,
    watch: Option<WatchMode>,
    #[serde(default, with = "humantime_serde")]
    poll_interval: Option<Duration>,
    recursive: Option<bool>,
    ignore: Option<Vec<String>>,
    preflight: Option<Policy>,
    project_id: Option<String>,
    project_field: Option<ProjectField>,
    tariff: Option<Tariff>,
    review: Option<PathBuf>,
    min_confidence: Option<f64>,
    #[serde(default, with = "humantime_serde")]
    retention: Option<Duration>,
    // Delivery of outcomes (see `delivery`).
    webhook: Option<String>,
    webhook_secret_file: Option<PathBuf>,
    exec: Option<Vec<String>>,
    #[serde(default, with = "humantime_serde")]
    exec_timeout: Option<Duration>,
    ledger: Option<PathBuf>,
    delivery_retry: Option<Vec<String>>,
    // Document sets: per inbox only.
    sets: Option<bool>,
    ready_file: Option<String>,
    #[serde(default)]
    documents: Vec<RawDocumentRule>,
}

/// `[[inbox.documents]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocumentRule {
    #[serde(rename = "match")]
    pattern: Option<String>,
    #[serde(rename = "type")]
    doc_type: Option<String>,
    key: Option<String>,
    #[serde(default)]
    stages: Vec<String>,
    #[serde(default)]
    relation: std::collections::BTreeMap<String, String>,
}

impl RawInbox {
    /// The `[[inbox.documents]]` rules as plain values, for [`crate::config_sets`].
    fn documents_as_rules(&self) -> Vec<sets::RuleText> {
        self.documents
            .iter()
            .map(|d| sets::RuleText {
                pattern: d.pattern.clone(),
                doc_type: d.doc_type.clone(),
                key: d.key.clone(),
                stages: d.stages.clone(),
                relation: d.relation.clone(),
            })
            .collect()
    }

    /// This inbox's own values, each falling back to `[defaults]`.
    fn settings_over(&self, defaults: &RawInboxSettings) -> RawInboxSettings {
        RawInboxSettings {
            key: self.key.clone().or_else(|| defaults.key.clone()),
            stages: self.stages.clone().or_else(|| defaults.stages.clone()),
            settle: self.settle.or(defaults.settle),
            first_poll: self.first_poll.or(defaults.first_poll),
            max_poll_interval: self.max_poll_interval.or(defaults.max_poll_interval),
            result_timeout: self.result_timeout.or(defaults.result_timeout),
            watch: self.watch.or(defaults.watch),
            poll_interval: self.poll_interval.or(defaults.poll_interval),
            recursive: self.recursive.or(defaults.recursive),
            // Both lists apply: the defaults' patterns and the inbox's own.
            ignore: match (&defaults.ignore, &self.ignore) {
                (None, None) => None,
                (a, b) => Some(a.iter().chain(b.iter()).flatten().cloned().collect()),
            },
            preflight: self.preflight.or(defaults.preflight),
            project_id: self
                .project_id
                .clone()
                .or_else(|| defaults.project_id.clone()),
            project_field: self.project_field.or(defaults.project_field),
            tariff: self.tariff.or(defaults.tariff),
            review: self.review.clone().or_else(|| defaults.review.clone()),
            min_confidence: self.min_confidence.or(defaults.min_confidence),
            retention: self.retention.or(defaults.retention),
            webhook: self.webhook.clone().or_else(|| defaults.webhook.clone()),
            webhook_secret_file: (self.webhook_secret_file.clone())
                .or_else(|| defaults.webhook_secret_file.clone()),
            exec: self.exec.clone().or_else(|| defaults.exec.clone()),
            exec_timeout: self.exec_timeout.or(defaults.exec_timeout),
            ledger: self.ledger.clone().or_else(|| defaults.ledger.clone()),
            delivery_retry: (self.delivery_retry.clone())
                .or_else(|| defaults.delivery_retry.clone()),
        }
    }
}

fn default_base_url() -> String {
    "https://api.beorg.ru".into()
}
fn default_rps() -> f64 {
    1.0
}
fn default_dpm() -> f64 {
    10.0
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_account_retry() -> Duration {
    Duration::from_secs(300)
}
fn default_submit_attempts() -> u32 {
    5
}
fn default_retry_base() -> Duration {
    Duration::from_secs(2)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(300)
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/beorg-hotfolder")
}
fn default_rescan_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_keep_history() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}
fn default_hold_limit() -> Duration {
    Duration::from_secs(5 * 60)
}

/// Defaults of the per-inbox durations, used when neither `[defaults]` nor the inbox sets them.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(2);
pub const DEFAULT_FIRST_POLL: Duration = Duration::from_secs(3);
pub const DEFAULT_MAX_POLL_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_RESULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);

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
            message: parse_error_message(&e, text),
        })?;
        let api = resolve_api(raw.api, origin, env_token, rule)?;
        let daemon = resolve_daemon(raw.daemon)?;
        let metrics = resolve_metrics(raw.metrics)?;
        let mut inboxes = raw
            .inbox
            .into_iter()
            .enumerate()
            .map(|(i, inbox)| resolve_inbox(i, inbox, &raw.defaults, &api.project_id))
            .collect::<Result<Vec<_>, _>>()?;
        if inboxes.is_empty() {
            return Err(key_error(
                "inbox",
                "no [[inbox]] is configured; add one with path, type, done and failed",
            ));
        }
        check_folders(&inboxes, &daemon.state_dir)?;
        delivery::complete(&mut inboxes, origin, rule)?;
        let budget = budget::resolve(raw.budget, &api.project_id, origin, rule)?;
        Ok(Config {
            api,
            daemon,
            metrics,
            inboxes,
            budget,
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

/// Keys whose values are secrets: no message ever quotes their value.
const SECRET_KEYS: [&str; 1] = ["token"];

/// toml's error text quotes the offending line of the file (and serde's part may quote the
/// value, e.g. "invalid type: integer `123`"): on a `token` line that is the token. The
/// message here gives the line and column and toml's reason, never the file's text, and on a
/// line that sets a secret key it does not give toml's reason either.
fn parse_error_message(e: &toml::de::Error, text: &str) -> String {
    let Some(span) = e.span() else {
        return with_suggestion(e.message());
    };
    let start = span.start.min(text.len());
    let before = text.get(..start).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .unwrap_or_default()
        .chars()
        .count()
        + 1;
    let line_text = text.lines().nth(line - 1).unwrap_or_default();
    // The key set on that line, if it is a `key = value` line.
    let key = line_text
        .split_once('=')
        .map(|(k, _)| k.trim())
        .and_then(|k| k.rsplit('.').next())
        .map(|k| k.trim().trim_matches(|c| c == '"' || c == '\''))
        .filter(|k| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    match key {
        Some(key) if SECRET_KEYS.contains(&key) => format!(
            "line {line}, column {column}: the value of `{key}` is refused (not shown: it is a secret); it must be a string in double quotes, e.g. {key} = \"...\""
        ),
        Some(key) => with_suggestion(&format!(
            "line {line}, column {column}, key `{key}`: {}",
            e.message()
        )),
        None => with_suggestion(&format!("line {line}, column {column}: {}", e.message())),
    }
}

/// toml reports an unknown key as "unknown field `setle`, expected one of `settle`, ...":
/// add the nearest known key.
fn with_suggestion(message: &str) -> String {
    let Some(rest) = message.split("unknown field `").nth(1) else {
        return message.to_string();
    };
    let unknown = rest.split('`').next().unwrap_or_default();
    let known: Vec<&str> = rest
        .split("expected one of ")
        .nth(1)
        .or_else(|| rest.split("expected ").nth(1))
        .unwrap_or_default()
        .split('`')
        .skip(1)
        .step_by(2)
        .collect();
    let nearest = known
        .iter()
        .map(|k| (edit_distance(unknown, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min();
    match nearest {
        Some((_, k)) => format!("{}\ndid you mean `{k}`?", message.trim_end()),
        None => message.to_string(),
    }
}

/// Levenshtein distance between two short strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

fn resolve_api(
    raw: RawApi,
    origin: &Path,
    env_token: Option<String>,
    rule: TokenRule,
) -> Result<ApiConfig, ConfigError> {
    let base_url = raw.base_url.trim().trim_end_matches('/').to_string();
    check_base_url(&base_url)?;
    let project_id = required_string(raw.project_id, "api.project_id", "U_RATE_2")?;
    let machine_uid = required_string(raw.machine_uid, "api.machine_uid", "the device id")?;
    let token = match resolve_token(raw.token, raw.token_file, origin, env_token) {
        Ok(token) => Some(token),
        Err(_) if rule == TokenRule::Optional => None,
        Err(e) => return Err(e),
    };
    check_rate(
        raw.requests_per_second,
        "api.requests_per_second",
        0.001,
        1000.0,
        "1.0",
    )?;
    check_rate(
        raw.documents_per_minute,
        "api.documents_per_minute",
        0.01,
        60_000.0,
        "10",
    )?;
    check_range(
        raw.request_timeout,
        "api.request_timeout",
        (MS_100, HOUR),
        "60s",
    )?;
    check_range(
        raw.connect_timeout,
        "api.connect_timeout",
        (MS_100, 10 * MINUTE),
        "10s",
    )?;
    check_range(raw.account_retry, "api.account_retry", (MS_100, DAY), "5m")?;
    check_range(raw.retry_base, "api.retry_base", (MS_10, HOUR), "2s")?;
    if !(1..=100).contains(&raw.submit_attempts) {
        return Err(key_error(
            "api.submit_attempts",
            format!(
                "{} is out of range: allowed 1 to 100; the default is 5",
                raw.submit_attempts
            ),
        ));
    }
    if raw.retry_max < raw.retry_base {
        return Err(key_error(
            "api.retry_max",
            "must not be shorter than api.retry_base",
        ));
    }
    check_range(raw.retry_max, "api.retry_max", (MS_10, DAY), "5m")?;
    Ok(ApiConfig {
        base_url,
        project_id,
        machine_uid,
        token,
        requests_per_second: raw.requests_per_second,
        documents_per_minute: raw.documents_per_minute,
        request_timeout: raw.request_timeout,
        connect_timeout: raw.connect_timeout,
        account_retry: raw.account_retry,
        submit_attempts: raw.submit_attempts,
        retry_base: raw.retry_base,
        retry_max: raw.retry_max,
    })
}

fn required_string(value: Option<String>, key: &str, example: &str) -> Result<String, ConfigError> {
    match value.map(|v| v.trim().to_string()) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(key_error(
            key,
            format!("is missing; copy it from the Beorg account page (e.g. {example})"),
        )),
    }
}

/// `api.base_url` parsed the way the HTTP client will parse it (scheme, host, port), so a
/// URL the client cannot use is refused here, naming the key, and never reaches a request.
fn check_base_url(base_url: &str) -> Result<(), ConfigError> {
    let shown = crate::redact::url(base_url, crate::redact::Show::Whole);
    let refuse = |why: String| {
        Err(key_error(
            "api.base_url",
            format!("\"{shown}\" {why}; use e.g. \"https://api.beorg.ru\""),
        ))
    };
    let url = match reqwest::Url::parse(base_url) {
        Ok(url) => url,
        Err(e) => return refuse(format!("is not a valid URL ({e})")),
    };
    if !matches!(url.scheme(), "http" | "https") {
        return refuse("is not an http(s) URL".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return refuse("has no host".into());
    }
    if url.port() == Some(0) {
        return refuse("has port 0".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Not quoted: the password would be.
        return Err(key_error(
            "api.base_url",
            "carries a user name or password; give only scheme, host, port and path",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return refuse("has a query or fragment; give only scheme, host, port and path".into());
    }
    Ok(())
}

const MS_10: Duration = Duration::from_millis(10);
const MS_100: Duration = Duration::from_millis(100);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// A rate must be a number in `[min, max]`: a tiny one would mean a wait of centuries (and
/// overflow the arithmetic on instants), a huge one no pacing at all.
fn check_rate(value: f64, key: &str, min: f64, max: f64, default: &str) -> Result<(), ConfigError> {
    if value.is_finite() && (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(key_error(
            key,
            format!("{value:?} is out of range: allowed {min} to {max} (default {default})"),
        ))
    }
}

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

/// `BEORG_TOKEN` wins, then `token`, then `token_file`, then the systemd credential `token`.
/// `origin` is the config file: where an inline token lives, and the folder relative
/// `token_file` names start from.
fn resolve_token(
    token: Option<String>,
    token_file: Option<PathBuf>,
    origin: &Path,
    env_token: Option<String>,
) -> Result<Token, ConfigError> {
    let found = |value: &str, source| {
        Ok(Token {
            secret: Secret::new(value.trim()),
            source,
        })
    };
    if let Some(t) = env_token {
        return found(&t, TokenSource::Env);
    }
    if token.is_some() && token_file.is_some() {
        return Err(key_error(
            "api.token",
            "both token and token_file are set; keep one of them",
        ));
    }
    if let Some(t) = token.filter(|t| !t.trim().is_empty()) {
        return found(&t, TokenSource::Inline(origin.to_path_buf()));
    }
    if let Some(file) = token_file {
        let file = origin.parent().unwrap_or(Path::new(".")).join(file);
        let text = std::fs::read_to_string(&file).map_err(|e| {
            key_error(
                "api.token_file",
                format!("cannot read {}: {e}", file.display()),
            )
        })?;
        if text.trim().is_empty() {
            return Err(key_error(
                "api.token_file",
                format!("{} is empty; put the API token in it", file.display()),
            ));
        }
        return found(&text, TokenSource::File(file));
    }
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let file = Path::new(&dir).join("token");
        if let Ok(text) = std::fs::read_to_string(&file)
            && !text.trim().is_empty()
        {
            return found(&text, TokenSource::Credential(file));
        }
    }
    Err(key_error(
        "api.token",
        format!(
            "no API token: set api.token or api.token_file in the config, or the {TOKEN_ENV} environment variable"
        ),
    ))
}

fn resolve_daemon(raw: RawDaemon) -> Result<DaemonConfig, ConfigError> {
    check_absolute_or_relative(&raw.state_dir, "daemon.state_dir")?;
    check_range(
        raw.rescan_interval,
        "daemon.rescan_interval",
        (MS_100, DAY),
        "60s",
    )?;
    check_range(
        raw.keep_history,
        "daemon.keep_history",
        (HOUR, 3650 * DAY),
        "30d",
    )?;
    check_range(raw.hold_limit, "daemon.hold_limit", (MS_100, DAY), "5m")?;
    let file_mode = parse_file_mode(&raw.file_mode)?;
    Ok(DaemonConfig {
        state_dir: normalize(&raw.state_dir),
        rescan_interval: raw.rescan_interval,
        keep_history: raw.keep_history,
        file_mode,
        hold_limit: raw.hold_limit,
    })
}

/// An octal mode like "0640"; anything readable or writable by others is refused.
fn parse_file_mode(text: &str) -> Result<u32, ConfigError> {
    let mode = u32::from_str_radix(text.trim().trim_start_matches("0o"), 8).map_err(|_| {
        key_error(
            "daemon.file_mode",
            format!("\"{text}\" is not an octal mode; write it like \"0640\""),
        )
    })?;
    if mode > 0o777 || mode & 0o007 != 0 || mode & 0o600 != 0o600 {
        return Err(key_error(
            "daemon.file_mode",
            format!(
                "\"{text}\" must let the owner read and write and give others nothing (scans are personal data); e.g. \"0640\" or \"0600\""
            ),
        ));
    }
    Ok(mode)
}

fn resolve_metrics(raw: RawMetrics) -> Result<MetricsConfig, ConfigError> {
    let listen = match raw.listen {
        None => None,
        Some(text) if text.trim().is_empty() => None,
        Some(text) => Some(text.trim().parse().map_err(|_| {
            key_error(
                "metrics.listen",
                format!("\"{text}\" is not an address:port; e.g. \"127.0.0.1:9187\""),
            )
        })?),
    };
    Ok(MetricsConfig { listen })
}

fn check_absolute_or_relative(path: &Path, key: &str) -> Result<(), ConfigError> {
    if path.as_os_str().is_empty() {
        Err(key_error(key, "is empty; give a folder path"))
    } else {
        Ok(())
    }
}

fn resolve_inbox(
    index: usize,
    raw: RawInbox,
    defaults: &RawInboxSettings,
    api_project_id: &str,
) -> Result<InboxConfig, ConfigError> {
    let key = |name: &str| format!("inbox[{index}].{name}");
    let s = raw.settings_over(defaults);
    let rules = raw.documents_as_rules();
    let path = raw.path.ok_or_else(|| {
        key_error(
            key("path"),
            "is missing: the folder the scanner writes into",
        )
    })?;
    let doc_type = raw
        .doc_type
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            key_error(
                key("type"),
                "is missing: the document type, e.g. \"PASSPORT\", \"SNILS\", \"VNG\"",
            )
        })?;
    let done = raw
        .done
        .ok_or_else(|| key_error(key("done"), "is missing: where recognised files go"))?;
    let failed = raw.failed.ok_or_else(|| {
        key_error(
            key("failed"),
            "is missing: where files that could not be recognised go",
        )
    })?;
    for (name, p) in [("path", &path), ("done", &done), ("failed", &failed)] {
        check_absolute_or_relative(p, &key(name))?;
    }
    let settle = s.settle.unwrap_or(DEFAULT_SETTLE);
    let first_poll = s.first_poll.unwrap_or(DEFAULT_FIRST_POLL);
    let max_poll_interval = s.max_poll_interval.unwrap_or(DEFAULT_MAX_POLL_INTERVAL);
    let result_timeout = s.result_timeout.unwrap_or(DEFAULT_RESULT_TIMEOUT);
    check_range(settle, &key("settle"), (Duration::ZERO, DAY), "2s")?;
    check_range(first_poll, &key("first_poll"), (Duration::ZERO, DAY), "3s")?;
    check_range(
        max_poll_interval,
        &key("max_poll_interval"),
        (MS_10, DAY),
        "30s",
    )?;
    check_range(
        result_timeout,
        &key("result_timeout"),
        (MS_100, 30 * DAY),
        "30m",
    )?;
    if max_poll_interval < first_poll {
        return Err(key_error(
            key("max_poll_interval"),
            "must not be shorter than first_poll",
        ));
    }
    let tariff = s.tariff.unwrap_or_default();
    let sets_asked = (raw.sets == Some(true), !rules.is_empty());
    check_tariff(tariff, &s, sets_asked, &key("tariff"))?;
    let delivery = delivery::resolve(&s, &key)?;
    let set_settings = sets::resolve(
        index,
        raw.sets,
        raw.ready_file,
        &rules,
        s.recursive.unwrap_or(false),
    )?;
    let project_id = match s.project_id.as_deref().map(str::trim) {
        None => api_project_id.to_string(),
        Some("") => {
            return Err(key_error(
                key("project_id"),
                "is empty; give this inbox's project from the Beorg account page (e.g. \"U_RATE_3\"), or leave the key out to use api.project_id",
            ));
        }
        Some(project) => project.to_string(),
    };
    let stages = s.stages.unwrap_or_default();
    let poll_interval = s.poll_interval.unwrap_or(DEFAULT_POLL_INTERVAL);
    check_range(poll_interval, &key("poll_interval"), (MS_10, DAY), "5s")?;
    let ignore = s.ignore.unwrap_or_default();
    for pattern in &ignore {
        globset::Glob::new(pattern).map_err(|e| {
            key_error(
                key("ignore"),
                format!("pattern \"{pattern}\" is not a valid glob ({e}); e.g. \"*.bak\""),
            )
        })?;
    }
    let review = s.review.as_deref().map(|review| {
        check_absolute_or_relative(review, &key("review")).map(|()| normalize(review))
    });
    let review = review.transpose()?;
    check_min_confidence(s.min_confidence, &key("min_confidence"))?;
    if let Some(retention) = s.retention {
        check_range(retention, &key("retention"), (HOUR, 100 * 365 * DAY), "off")?;
    }
    Ok(InboxConfig {
        path: normalize(&path),
        doc_type,
        key: s.key,
        stages,
        done: normalize(&done),
        failed: normalize(&failed),
        settle,
        first_poll,
        max_poll_interval,
        result_timeout,
        watch: s.watch.unwrap_or_default(),
        poll_interval,
        recursive: s.recursive.unwrap_or(false),
        ignore,
        preflight: s.preflight.unwrap_or_default(),
        project_id,
        project_field: s.project_field.unwrap_or_default(),
        tariff,
        review,
        min_confidence: s.min_confidence,
        retention: s.retention,
        sets: set_settings.sets,
        ready_file: set_settings.ready_file,
        documents: set_settings.documents,
        delivery,
    })
}

/// `min_confidence` compares with the API's confidences, which run from 0 to 1.
fn check_min_confidence(value: Option<f64>, key: &str) -> Result<(), ConfigError> {
    match value {
        Some(v) if !(v.is_finite() && (0.0..=1.0).contains(&v)) => Err(key_error(
            key,
            format!(
                "{v} is out of range: allowed 0 to 1 (the API's confidences run from 0 to 0.9999; e.g. 0.9), or leave it out"
            ),
        )),
        _ => Ok(()),
    }
}

/// Refuses settings the inbox's tariff cannot send: "Passport Auto" sends no `process_info`,
/// so nothing that would go into it may be configured (an inbox's own value or one from
/// `[defaults]`). `key` names the tariff key in the error.
fn check_tariff(
    tariff: Tariff,
    s: &RawInboxSettings,
    (sets, documents): (bool, bool),
    key: &str,
) -> Result<(), ConfigError> {
    if tariff != Tariff::PassportAuto {
        return Ok(());
    }
    // Document sets too are sent as process_info.
    let stages = s.stages.as_ref().is_some_and(|stages| !stages.is_empty());
    let refused = [
        ("key", s.key.is_some()),
        ("stages", stages),
        ("sets", sets),
        ("[[inbox.documents]]", documents),
    ];
    match refused.iter().find(|(_, set)| *set) {
        Some((name, _)) => Err(key_error(
            key,
            format!(
                "\"passport_auto\" sends no process_info, so `{name}` (set on this inbox or in [defaults]) cannot be sent; remove `{name}`, or use tariff = \"universal\""
            ),
        )),
        None => Ok(()),
    }
}

/// Makes a path absolute (relative to the working directory) and removes `.` and `..`
/// without touching the filesystem, so nesting checks compare like with like.
fn normalize(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(path)
    };
    let mut out = PathBuf::new();
    for c in absolute.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Refuses layouts where one inbox would take another's (or its own) output as input, or
/// where two roles share a folder.
fn check_folders(inboxes: &[InboxConfig], state_dir: &Path) -> Result<(), ConfigError> {
    let mut folders: Vec<(String, &Path)> = Vec::new();
    for (i, inbox) in inboxes.iter().enumerate() {
        folders.push((format!("inbox[{i}].path"), &inbox.path));
        folders.push((format!("inbox[{i}].done"), &inbox.done));
        folders.push((format!("inbox[{i}].failed"), &inbox.failed));
        if let Some(review) = &inbox.review {
            folders.push((format!("inbox[{i}].review"), review));
        }
    }
    // Several inboxes may share one review folder (`review` in [defaults]: one pile for a
    // person to check); every other pair must stay apart.
    let both_review = |a: &str, b: &str| a.ends_with(".review") && b.ends_with(".review");
    for (a, (key_a, path_a)) in folders.iter().enumerate() {
        for (key_b, path_b) in folders.iter().skip(a + 1) {
            if path_a == path_b && both_review(key_a, key_b) {
                continue;
            }
            if path_a == path_b {
                return Err(key_error(
                    key_b.clone(),
                    format!(
                        "\"{}\" is the same folder as {key_a}; every inbox needs its own path, done and failed folders",
                        path_b.display()
                    ),
                ));
            }
            if let Some((inner, outer)) = nesting(key_a, path_a, key_b, path_b) {
                return Err(key_error(
                    inner.0.to_string(),
                    format!(
                        "\"{}\" is inside {} (\"{}\"); move it out so that no folder is watched as another's output",
                        inner.1.display(),
                        outer.0,
                        outer.1.display()
                    ),
                ));
            }
        }
        if path_a.starts_with(state_dir) || state_dir.starts_with(path_a) {
            return Err(key_error(
                "daemon.state_dir",
                format!(
                    "\"{}\" overlaps {key_a} (\"{}\"); keep the state folder apart from scan folders",
                    state_dir.display(),
                    path_a.display()
                ),
            ));
        }
    }
    Ok(())
}

type Named<'a> = (&'a str, &'a Path);

fn nesting<'a>(
    key_a: &'a str,
    path_a: &'a Path,
    key_b: &'a str,
    path_b: &'a Path,
) -> Option<(Named<'a>, Named<'a>)> {
    if path_a.starts_with(path_b) {
        Some(((key_a, path_a), (key_b, path_b)))
    } else if path_b.starts_with(path_a) {
        Some(((key_b, path_b), (key_a, path_a)))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
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

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("/etc/bh/config.toml"), None)
    }

    fn err_text(text: &str) -> String {
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

    #[test]
    fn token_never_shows_in_debug_output() {
        let c = parse(GOOD).unwrap();
        assert!(!format!("{c:?}").contains("t0k3n"));
    }

    #[test]
    fn env_token_overrides_the_file() {
        let c = Config::from_toml(GOOD, Path::new("c.toml"), Some("from-env".into())).unwrap();
        assert_eq!(c.api.token.as_ref().unwrap().secret.expose(), "from-env");
    }

    #[test]
    fn unknown_key_is_named() {
        let text = GOOD.replace("settle = \"500ms\"", "setle = \"500ms\"");
        let e = err_text(&text);
        assert!(e.contains("setle"), "{e}");
    }

    #[test]
    fn unknown_key_gets_the_nearest_known_key_suggested() {
        let text = GOOD.replace("settle = \"500ms\"", "setle = \"500ms\"");
        let e = err_text(&text);
        assert!(e.contains("did you mean `settle`?"), "{e}");
        let text = GOOD.replace("first_poll = \"1s\"", "zzz = 1");
        assert!(!err_text(&text).contains("did you mean"));
    }

    #[test]
    fn parse_errors_carry_line_and_column() {
        let text = GOOD.replace("settle = \"500ms\"", "settle = ");
        let e = err_text(&text);
        assert!(e.contains("line") && e.contains("column"), "{e}");
    }

    #[test]
    fn watch_poll_recursive_ignore_and_preflight_per_inbox() {
        let text = GOOD.replace(
            "first_poll = \"1s\"",
            "first_poll = \"1s\"\nwatch = \"poll\"\npoll_interval = \"250ms\"\nrecursive = true\nignore = [\"*.bak\"]\npreflight = \"warn\"",
        );
        let c = parse(&text).unwrap();
        let i = &c.inboxes[0];
        assert_eq!(i.watch, WatchMode::Poll);
        assert_eq!(i.poll_interval, Duration::from_millis(250));
        assert!(i.recursive);
        assert_eq!(i.ignore, vec!["*.bak".to_string()]);
        assert_eq!(i.preflight, Policy::Warn);
        let d = parse(GOOD).unwrap();
        assert_eq!(d.inboxes[0].watch, WatchMode::Auto);
        assert_eq!(d.inboxes[0].preflight, Policy::Strict);
    }

    #[test]
    fn a_bad_glob_or_watch_mode_is_named() {
        let text = GOOD.replace("first_poll = \"1s\"", "ignore = [\"[oops\"]");
        assert!(err_text(&text).contains("inbox[0].ignore"));
        let text = GOOD.replace("first_poll = \"1s\"", "watch = \"sometimes\"");
        let e = err_text(&text);
        assert!(e.contains("watch") && e.contains("poll"), "{e}");
    }

    /// Issue 10: a project per inbox (own, else `[defaults]`, else `[api]`), the name it
    /// travels under, and the tariff.
    #[test]
    fn project_field_and_tariff_are_taken_per_inbox_else_from_defaults() {
        let d = parse(GOOD).unwrap();
        let i = &d.inboxes[0];
        assert_eq!(i.project_id, "U_RATE_2", "[api].project_id by default");
        assert_eq!(i.project_field, ProjectField::ProjectId);
        assert_eq!(i.tariff, Tariff::Universal);
        let text = GOOD
            .replace(
                "[defaults]\n",
                "[defaults]\nproject_id = \"U_RATE_9\"\nproject_field = \"campaign_id\"\ntariff = \"passport_auto\"\n",
            )
            .replace(
                "first_poll = \"1s\"",
                "first_poll = \"1s\"\n\n[[inbox]]\npath = \"/srv/in/otpr\"\ntype = \"OTPR\"\ndone = \"/srv/done/otpr\"\nfailed = \"/srv/failed/otpr\"\nproject_id = \"U_RATE_3\"\nproject_field = \"project_id\"\ntariff = \"universal\"",
            );
        let c = parse(&text).unwrap();
        let (a, b) = (&c.inboxes[0], &c.inboxes[1]);
        assert_eq!(
            (a.project_id.as_str(), a.project_field, a.tariff),
            ("U_RATE_9", ProjectField::CampaignId, Tariff::PassportAuto)
        );
        assert_eq!(
            (b.project_id.as_str(), b.project_field, b.tariff),
            ("U_RATE_3", ProjectField::ProjectId, Tariff::Universal)
        );
    }

    /// Issue 10: "Passport Auto" sends no process_info, so `key` and `stages` (the inbox's
    /// or `[defaults]`') are refused with it, and bad values are refused naming the key and
    /// the allowed values.
    #[test]
    fn project_field_and_tariff_refusals_name_the_key() {
        let inbox = |extra: &str| GOOD.replace("first_poll = \"1s\"", extra);
        for extra in [
            "tariff = \"passport_auto\"\nkey = \"PASSPORT1\"",
            "tariff = \"passport_auto\"\nstages = [\"verification\"]",
        ] {
            let e = err_text(&inbox(extra));
            assert!(e.contains("inbox[0].tariff"), "{e}");
            assert!(e.contains("process_info"), "{e}");
            let named = if extra.contains("key =") {
                "`key`"
            } else {
                "`stages`"
            };
            assert!(e.contains(named), "{e}");
        }
        let from_defaults = GOOD
            .replace("[defaults]\n", "[defaults]\nstages = [\"verification\"]\n")
            .replace("first_poll = \"1s\"", "tariff = \"passport_auto\"");
        assert!(err_text(&from_defaults).contains("`stages`"));
        // An empty list asks for nothing: no conflict.
        parse(&inbox("tariff = \"passport_auto\"\nstages = []")).unwrap();
        let e = err_text(&inbox("tariff = \"auto\""));
        assert!(
            e.contains("tariff") && e.contains("universal") && e.contains("passport_auto"),
            "{e}"
        );
        let e = err_text(&inbox("project_field = \"project\""));
        assert!(
            e.contains("project_field") && e.contains("campaign_id") && e.contains("project_id"),
            "{e}"
        );
        let e = err_text(&inbox("project_id = \" \""));
        assert!(e.contains("inbox[0].project_id"), "{e}");
    }

    #[test]
    fn file_mode_must_keep_others_out() {
        let with =
            |mode: &str| GOOD.replace("[daemon]\n", &format!("[daemon]\nfile_mode = \"{mode}\"\n"));
        assert_eq!(parse(&with("0600")).unwrap().daemon.file_mode, 0o600);
        assert_eq!(parse(GOOD).unwrap().daemon.file_mode, 0o640);
        assert!(err_text(&with("0644")).contains("daemon.file_mode"));
        assert!(err_text(&with("rw-r")).contains("daemon.file_mode"));
    }

    #[test]
    fn metrics_listen_is_an_address() {
        let text = format!("{GOOD}\n[metrics]\nlisten = \"127.0.0.1:9187\"\n");
        let c = parse(&text).unwrap();
        assert_eq!(c.metrics.listen, Some("127.0.0.1:9187".parse().unwrap()));
        assert!(parse(GOOD).unwrap().metrics.listen.is_none());
        let text = format!("{GOOD}\n[metrics]\nlisten = \"localhost\"\n");
        assert!(err_text(&text).contains("metrics.listen"));
    }

    #[test]
    fn unknown_key_in_inbox_is_named() {
        let text = GOOD.replace("first_poll = \"1s\"", "frist_poll = \"1s\"");
        let e = err_text(&text);
        assert!(e.contains("frist_poll"), "{e}");
    }

    #[test]
    fn bad_duration_is_refused_with_its_key() {
        let text = GOOD.replace("settle = \"500ms\"", "settle = \"soon\"");
        let e = err_text(&text);
        assert!(e.contains("settle"), "{e}");
    }

    #[test]
    fn missing_token_names_the_key_and_the_fix() {
        let text = GOOD.replace("token = \"t0k3n\"", "");
        let e = err_text(&text);
        assert!(e.contains("api.token") && e.contains("BEORG_TOKEN"), "{e}");
    }

    /// Issue 9: `load_without_token` injected a fake token string, and `check` re-parsed the
    /// TOML to learn where the token came from. The model now says both.
    #[test]
    fn config_can_say_no_token_and_where_the_token_came_from() {
        let dir = tempfile::tempdir().unwrap();
        let origin = dir.path().join("config.toml");
        let load = |text: &str, env: Option<&str>, rule| {
            Config::parse(text, &origin, env.map(String::from), rule)
        };
        let source = |text: &str, env: Option<&str>| {
            let c = load(text, env, TokenRule::Required).unwrap();
            c.api.token.unwrap().source
        };
        // Where it came from, in the loader's order.
        assert_eq!(source(GOOD, None), TokenSource::Inline(origin.clone()));
        assert_eq!(source(GOOD, Some("e")), TokenSource::Env);
        std::fs::write(dir.path().join("tok"), "abc\n").unwrap();
        let in_file = GOOD.replace("token = \"t0k3n\"", "token_file = \"tok\"");
        assert_eq!(
            source(&in_file, None),
            TokenSource::File(dir.path().join("tok"))
        );
        // No token (or none that can be read): `status` gets a config that says so, `run`
        // and `check` get today's refusal, word for word.
        let without = GOOD.replace("token = \"t0k3n\"", "");
        let unreadable = GOOD.replace("token = \"t0k3n\"", "token_file = \"missing\"");
        let both = GOOD.replace("token = \"t0k3n\"", "token = \"a\"\ntoken_file = \"tok\"");
        for text in [&without, &unreadable, &both] {
            let c = load(text, None, TokenRule::Optional).unwrap();
            assert_eq!(c.api.token, None, "{text}");
            assert!(
                !format!("{c:?}").contains("not-needed"),
                "no stand-in token"
            );
            let e = crate::api::ApiClient::new(&c.api).err().expect("no client");
            assert!(e.to_string().contains("no API token"), "{e}");
        }
        let e = load(&without, None, TokenRule::Required).unwrap_err();
        assert_eq!(
            e.to_string(),
            "config key `api.token`: no API token: set api.token or api.token_file in the config, or the BEORG_TOKEN environment variable"
        );
        let e = load(&unreadable, None, TokenRule::Required).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("config key `api.token_file`: cannot read")
        );
        // Other mistakes are still refused without a token.
        let bad = without.replace("machine_uid = \"m\"", "");
        let e = load(&bad, None, TokenRule::Optional).unwrap_err();
        assert!(e.to_string().contains("api.machine_uid"), "{e}");
    }

    #[test]
    fn token_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tok"), "  abc \n").unwrap();
        let text = GOOD.replace("token = \"t0k3n\"", "token_file = \"tok\"");
        let c = Config::from_toml(&text, &dir.path().join("config.toml"), None).unwrap();
        assert_eq!(c.api.token.as_ref().unwrap().secret.expose(), "abc");
    }

    #[test]
    fn done_inside_inbox_is_refused() {
        let text = GOOD.replace("/srv/done/passport", "/srv/in/passport/done");
        let e = err_text(&text);
        assert!(e.contains("inbox[0].done") && e.contains("inside"), "{e}");
    }

    #[test]
    fn two_inboxes_sharing_a_folder_are_refused() {
        let text = format!(
            "{GOOD}\n[[inbox]]\npath = \"/srv/in/snils\"\ntype = \"SNILS\"\ndone = \"/srv/done/passport\"\nfailed = \"/srv/failed/snils\"\n"
        );
        let e = err_text(&text);
        assert!(
            e.contains("inbox[1].done") && e.contains("same folder"),
            "{e}"
        );
    }

    #[test]
    fn inbox_nested_in_another_inbox_is_refused() {
        let text = format!(
            "{GOOD}\n[[inbox]]\npath = \"/srv/in/passport/sub\"\ntype = \"SNILS\"\ndone = \"/srv/done/snils\"\nfailed = \"/srv/failed/snils\"\n"
        );
        let e = err_text(&text);
        assert!(e.contains("inbox[1].path"), "{e}");
    }

    #[test]
    fn missing_type_is_named() {
        let text = GOOD.replace("type = \"PASSPORT\"", "");
        assert!(err_text(&text).contains("inbox[0].type"));
    }

    #[test]
    fn zero_rate_is_refused() {
        let text = GOOD.replace(
            "token = \"t0k3n\"",
            "token = \"t\"\nrequests_per_second = 0",
        );
        assert!(err_text(&text).contains("api.requests_per_second"));
    }

    /// Finding 5 (issue 8): toml's error quoted the line (and serde the value) of a bad
    /// `token`: unquoted, a number, an unterminated string.
    #[test]
    fn config_errors_never_show_the_token() {
        for (line, secret) in [
            ("token = SECRET-abc", "SECRET-abc"),
            ("token = 987654321987", "987654321987"),
            ("token = \"SECRET-abc", "SECRET-abc"),
            ("token = 'SECRET-abc", "SECRET-abc"),
            ("token = [\"SECRET-abc\"]", "SECRET-abc"),
            ("\"token\" = SECRET-abc", "SECRET-abc"),
        ] {
            let text = GOOD.replace("token = \"t0k3n\"", line);
            let e = err_text(&text);
            assert!(!e.contains(secret), "{line}: {e}");
            assert!(e.contains("token") && e.contains("line 6"), "{line}: {e}");
        }
        // Other keys keep toml's reason, still with line and column.
        let e = err_text(&GOOD.replace("machine_uid = \"m\"", "machine_uid = m"));
        assert!(e.contains("line 5, column"), "{e}");
    }

    /// Finding 8 (issue 8): `http://127.0.0.1:99999` was accepted, then panicked a task.
    #[test]
    fn base_url_is_parsed_fully_and_a_bad_one_names_the_key() {
        for bad in [
            "http://127.0.0.1:99999",
            "http://",
            "http://exa mple.com",
            "ftp://api.beorg.ru",
            "api.beorg.ru",
            "http://127.0.0.1:0",
            "https://user:pw@api.beorg.ru",
            "https://api.beorg.ru/?token=x",
        ] {
            let text = GOOD.replace("http://127.0.0.1:9", bad);
            let e = err_text(&text);
            assert!(e.contains("api.base_url"), "{bad}: {e}");
            assert!(!e.contains(":pw@"), "{e}");
        }
        for good in [
            "https://api.beorg.ru",
            "http://[::1]:8089",
            "https://staging.example/beorg/",
        ] {
            let text = GOOD.replace("http://127.0.0.1:9", good);
            let c = parse(&text).unwrap_or_else(|e| panic!("{good}: {e}"));
            crate::api::ApiClient::new(&c.api).unwrap();
        }
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
    const ALL_KEYS: [&str; 50] = [
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
    ];

    #[test]
    fn example_config_is_valid_documents_every_key_and_shows_the_defaults() {
        let text = include_str!("../config.example.toml");
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

    /// Issue 11: `review`, `min_confidence` and `retention` per inbox or in [defaults]; a bad
    /// value is refused naming the key; a review folder is apart from every other folder,
    /// though inboxes may share one.
    #[test]
    fn review_min_confidence_and_retention_are_taken_per_inbox_and_refused_naming_the_key() {
        let c = parse(GOOD).unwrap();
        let i = &c.inboxes[0];
        assert_eq!(
            (&i.review, i.min_confidence, i.retention),
            (&None, None, None)
        );
        let text = GOOD.replace(
            "[defaults]\n",
            "[defaults]\nreview = \"/srv/review\"\nmin_confidence = 0.9\nretention = \"90d\"\n",
        );
        let text = format!(
            "{text}\n[[inbox]]\npath = \"/srv/in/snils\"\ntype = \"SNILS\"\ndone = \"/srv/done/snils\"\nfailed = \"/srv/failed/snils\"\nmin_confidence = 0.5\nretention = \"2h\"\n"
        );
        let c = parse(&text).unwrap();
        let (a, b) = (&c.inboxes[0], &c.inboxes[1]);
        assert_eq!(a.review.as_deref(), Some(Path::new("/srv/review")));
        assert_eq!(b.review, a.review, "a shared review folder is allowed");
        assert_eq!((a.min_confidence, b.min_confidence), (Some(0.9), Some(0.5)));
        assert_eq!(a.retention, Some(Duration::from_secs(90 * 24 * 3600)));
        assert_eq!(b.retention, Some(Duration::from_secs(2 * 3600)));
        let inbox = |line: &str| GOOD.replace("first_poll = \"1s\"", line);
        for (line, key, words) in [
            ("min_confidence = 1.5", "inbox[0].min_confidence", "0 to 1"),
            ("min_confidence = -0.1", "inbox[0].min_confidence", "0 to 1"),
            ("retention = \"5m\"", "inbox[0].retention", "allowed"),
            ("retention = \"soon\"", "retention", ""),
            ("review = \"\"", "inbox[0].review", "empty"),
            (
                "review = \"/srv/done/passport\"",
                "inbox[0].review",
                "same folder",
            ),
            (
                "review = \"/srv/in/passport/review\"",
                "inbox[0].review",
                "inside",
            ),
        ] {
            let e = err_text(&inbox(line));
            assert!(e.contains(key) && e.contains(words), "{line}: {e}");
        }
    }

    #[test]
    fn no_inbox_is_refused() {
        let text = GOOD.split("[[inbox]]").next().unwrap().to_string();
        assert!(err_text(&text).contains("inbox"));
    }
}
