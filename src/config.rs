//! The one place settings are read and checked.
//!
//! The TOML file is parsed into raw structs that mirror it (unknown keys refused), then
//! resolved into [`Config`]: per-inbox settings merged with `[defaults]`, the token looked up
//! (`BEORG_TOKEN`, then `token`, then `token_file`), and the folder layout checked so that no
//! inbox can feed on another's output. Every error names the key and says how to fix it.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Environment variable that overrides `api.token` and `api.token_file`.
pub const TOKEN_ENV: &str = "BEORG_TOKEN";

/// Name of the folder inside each inbox that holds claimed files (intake ignores dot-names).
pub const WORK_DIR_NAME: &str = ".beorg-work";

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

fn key_error(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
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

/// Everything the daemon needs, resolved and checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub api: ApiConfig,
    pub daemon: DaemonConfig,
    pub inboxes: Vec<InboxConfig>,
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
    /// Access token; travels in the submit body and in the result URL's query string.
    pub token: Secret,
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
    /// Wait between the submit and the first result request.
    pub first_poll: Duration,
    /// Result requests back off up to this interval.
    pub max_poll_interval: Duration,
    /// No result by then: the file goes to failed with kind `timeout`.
    pub result_timeout: Duration,
}

impl InboxConfig {
    /// The folder claimed files wait in: inside the inbox, so the claim is a same-filesystem
    /// rename, and dot-named, so intake never takes it for a scan.
    pub fn work_dir(&self) -> PathBuf {
        self.path.join(WORK_DIR_NAME)
    }
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
    inbox: Vec<RawInbox>,
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
}

impl Default for RawDaemon {
    fn default() -> Self {
        RawDaemon {
            state_dir: default_state_dir(),
            rescan_interval: default_rescan_interval(),
            keep_history: default_keep_history(),
        }
    }
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
}

impl RawInbox {
    /// This inbox's own values, each falling back to `[defaults]`.
    fn settings_over(&self, defaults: &RawInboxSettings) -> RawInboxSettings {
        RawInboxSettings {
            key: self.key.clone().or_else(|| defaults.key.clone()),
            stages: self.stages.clone().or_else(|| defaults.stages.clone()),
            settle: self.settle.or(defaults.settle),
            first_poll: self.first_poll.or(defaults.first_poll),
            max_poll_interval: self.max_poll_interval.or(defaults.max_poll_interval),
            result_timeout: self.result_timeout.or(defaults.result_timeout),
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

/// Defaults of the per-inbox durations, used when neither `[defaults]` nor the inbox sets them.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(2);
pub const DEFAULT_FIRST_POLL: Duration = Duration::from_secs(3);
pub const DEFAULT_MAX_POLL_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_RESULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

impl Config {
    /// Reads, parses and checks a config file. `BEORG_TOKEN` from the environment wins over
    /// the file's token.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let env_token = std::env::var(TOKEN_ENV)
            .ok()
            .filter(|t| !t.trim().is_empty());
        Config::from_toml(&text, path, env_token)
    }

    /// Like [`Config::load`] for commands that never call the API (`status`): a missing token
    /// is not an error (it may live in a systemd credential only the service can read).
    pub fn load_without_token(path: &Path) -> Result<Config, ConfigError> {
        match Config::load(path) {
            Err(ConfigError::Key { key, .. }) if key.starts_with("api.token") => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                Config::from_toml(&text, path, Some("not-needed-for-this-command".into()))
            }
            other => other,
        }
    }

    /// Parses and checks config text. `origin` is only used in messages; relative
    /// `token_file` paths are taken relative to the config file's folder.
    pub fn from_toml(
        text: &str,
        origin: &Path,
        env_token: Option<String>,
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_path_buf(),
            message: e.to_string(),
        })?;
        let base_dir = origin.parent().unwrap_or(Path::new("."));
        let api = resolve_api(raw.api, base_dir, env_token)?;
        let daemon = resolve_daemon(raw.daemon)?;
        let inboxes = raw
            .inbox
            .into_iter()
            .enumerate()
            .map(|(i, inbox)| resolve_inbox(i, inbox, &raw.defaults))
            .collect::<Result<Vec<_>, _>>()?;
        if inboxes.is_empty() {
            return Err(key_error(
                "inbox",
                "no [[inbox]] is configured; add one with path, type, done and failed",
            ));
        }
        check_folders(&inboxes, &daemon.state_dir)?;
        Ok(Config {
            api,
            daemon,
            inboxes,
        })
    }
}

fn resolve_api(
    raw: RawApi,
    base_dir: &Path,
    env_token: Option<String>,
) -> Result<ApiConfig, ConfigError> {
    let base_url = raw.base_url.trim_end_matches('/').to_string();
    if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
        return Err(key_error(
            "api.base_url",
            format!("\"{base_url}\" is not an http(s) URL; use e.g. \"https://api.beorg.ru\""),
        ));
    }
    let project_id = required_string(raw.project_id, "api.project_id", "U_RATE_2")?;
    let machine_uid = required_string(raw.machine_uid, "api.machine_uid", "the device id")?;
    let token = resolve_token(raw.token, raw.token_file, base_dir, env_token)?;
    check_positive(raw.requests_per_second, "api.requests_per_second", "1.0")?;
    check_positive(raw.documents_per_minute, "api.documents_per_minute", "10")?;
    check_nonzero(raw.request_timeout, "api.request_timeout", "60s")?;
    check_nonzero(raw.connect_timeout, "api.connect_timeout", "10s")?;
    check_nonzero(raw.account_retry, "api.account_retry", "5m")?;
    check_nonzero(raw.retry_base, "api.retry_base", "2s")?;
    if raw.submit_attempts == 0 {
        return Err(key_error(
            "api.submit_attempts",
            "must be at least 1; the default is 5",
        ));
    }
    if raw.retry_max < raw.retry_base {
        return Err(key_error(
            "api.retry_max",
            "must not be shorter than api.retry_base",
        ));
    }
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

fn check_positive(value: f64, key: &str, example: &str) -> Result<(), ConfigError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(key_error(
            key,
            format!("must be a number above 0 (default {example})"),
        ))
    }
}

fn check_nonzero(value: Duration, key: &str, example: &str) -> Result<(), ConfigError> {
    if value.is_zero() {
        Err(key_error(
            key,
            format!("must be longer than 0 (default \"{example}\")"),
        ))
    } else {
        Ok(())
    }
}

/// `BEORG_TOKEN` wins, then `token`, then `token_file`, then the systemd credential `token`.
fn resolve_token(
    token: Option<String>,
    token_file: Option<PathBuf>,
    base_dir: &Path,
    env_token: Option<String>,
) -> Result<Secret, ConfigError> {
    if let Some(t) = env_token {
        return Ok(Secret::new(t.trim()));
    }
    if token.is_some() && token_file.is_some() {
        return Err(key_error(
            "api.token",
            "both token and token_file are set; keep one of them",
        ));
    }
    if let Some(t) = token.filter(|t| !t.trim().is_empty()) {
        return Ok(Secret::new(t.trim()));
    }
    if let Some(file) = token_file {
        let file = base_dir.join(file);
        let text = std::fs::read_to_string(&file).map_err(|e| {
            key_error(
                "api.token_file",
                format!("cannot read {}: {e}", file.display()),
            )
        })?;
        let t = text.trim();
        if t.is_empty() {
            return Err(key_error(
                "api.token_file",
                format!("{} is empty; put the API token in it", file.display()),
            ));
        }
        return Ok(Secret::new(t));
    }
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let file = Path::new(&dir).join("token");
        if let Ok(text) = std::fs::read_to_string(&file)
            && !text.trim().is_empty()
        {
            return Ok(Secret::new(text.trim()));
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
    check_nonzero(raw.rescan_interval, "daemon.rescan_interval", "60s")?;
    check_nonzero(raw.keep_history, "daemon.keep_history", "30d")?;
    Ok(DaemonConfig {
        state_dir: normalize(&raw.state_dir),
        rescan_interval: raw.rescan_interval,
        keep_history: raw.keep_history,
    })
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
) -> Result<InboxConfig, ConfigError> {
    let key = |name: &str| format!("inbox[{index}].{name}");
    let s = raw.settings_over(defaults);
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
    check_nonzero(max_poll_interval, &key("max_poll_interval"), "30s")?;
    check_nonzero(result_timeout, &key("result_timeout"), "30m")?;
    if max_poll_interval < first_poll {
        return Err(key_error(
            key("max_poll_interval"),
            "must not be shorter than first_poll",
        ));
    }
    let stages = s.stages.unwrap_or_default();
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
    })
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
    }
    for (a, (key_a, path_a)) in folders.iter().enumerate() {
        for (key_b, path_b) in folders.iter().skip(a + 1) {
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
        assert_eq!(c.api.token.expose(), "t0k3n");
    }

    #[test]
    fn token_never_shows_in_debug_output() {
        let c = parse(GOOD).unwrap();
        assert!(!format!("{c:?}").contains("t0k3n"));
    }

    #[test]
    fn env_token_overrides_the_file() {
        let c = Config::from_toml(GOOD, Path::new("c.toml"), Some("from-env".into())).unwrap();
        assert_eq!(c.api.token.expose(), "from-env");
    }

    #[test]
    fn unknown_key_is_named() {
        let text = GOOD.replace("settle = \"500ms\"", "setle = \"500ms\"");
        let e = err_text(&text);
        assert!(e.contains("setle"), "{e}");
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

    #[test]
    fn token_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tok"), "  abc \n").unwrap();
        let text = GOOD.replace("token = \"t0k3n\"", "token_file = \"tok\"");
        let c = Config::from_toml(&text, &dir.path().join("config.toml"), None).unwrap();
        assert_eq!(c.api.token.expose(), "abc");
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

    /// Every key the config accepts. Adding a key? Add it here and to config.example.toml.
    const ALL_KEYS: [&str; 25] = [
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
        let (x, y) = (&example.inboxes[0], &defaults.inboxes[0]);
        assert_eq!(x.settle, y.settle);
        assert_eq!(x.first_poll, y.first_poll);
        assert_eq!(x.max_poll_interval, y.max_poll_interval);
        assert_eq!(x.result_timeout, y.result_timeout);
    }

    #[test]
    fn no_inbox_is_refused() {
        let text = GOOD.split("[[inbox]]").next().unwrap().to_string();
        assert!(err_text(&text).contains("inbox"));
    }
}
