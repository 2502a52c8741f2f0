//! `[api]`: how to reach the Beorg API and how hard it may be used (the two ceilings, the
//! timeouts, the retry schedule), each key with its default and its allowed range.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::token::{Token, resolve_token};
use super::{ConfigError, DAY, HOUR, MINUTE, MS_10, MS_100, TokenRule, check_range, key_error};

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
    /// string. `None` only from [`super::Config::load_without_token`], when no token can be had.
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApi {
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

pub(super) fn resolve_api(
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

#[cfg(test)]
mod tests {
    use super::super::tests::{GOOD, err_text, parse};

    #[test]
    fn zero_rate_is_refused() {
        let text = GOOD.replace(
            "token = \"t0k3n\"",
            "token = \"t\"\nrequests_per_second = 0",
        );
        assert!(err_text(&text).contains("api.requests_per_second"));
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
}
