//! `[review_station]`: the web page where a person decides the results in the review
//! folders. The section's absence turns it off.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, key_error};

/// `listen` when the section gives none.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8091";
/// `users_file` when the section gives none.
pub const DEFAULT_USERS_FILE: &str = "/etc/beorg-hotfolder/reviewers";
/// `audit_log` when the section gives none.
pub const DEFAULT_AUDIT_LOG: &str = "/var/log/beorg-hotfolder/review-audit.jsonl";
/// `session_timeout` when the section gives none.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The review station, resolved and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewStationConfig {
    /// Where the pages are served.
    pub listen: SocketAddr,
    /// One reviewer a line, `name:<argon2id PHC string>`; read again at each login, so
    /// `reviewer add` needs no restart.
    pub users_file: PathBuf,
    /// One JSON line per login, item viewed and decision (mode 0640).
    pub audit_log: PathBuf,
    /// Idle time after which a reviewer must log in again.
    pub session_timeout: Duration,
    /// HTTPS with this certificate chain and key (PEM); plain HTTP when `None`.
    pub tls: Option<TlsFiles>,
}

/// `tls_cert` and `tls_key`.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReviewStation {
    listen: Option<String>,
    users_file: Option<PathBuf>,
    audit_log: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    session_timeout: Option<Duration>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    #[serde(default)]
    allow_plain_http: bool,
}

pub(super) fn resolve(
    raw: Option<RawReviewStation>,
    origin: &Path,
) -> Result<Option<ReviewStationConfig>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let text = raw.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let listen: SocketAddr = text.trim().parse().map_err(|_| {
        key_error(
            "review_station.listen",
            format!("\"{text}\" is not an address:port; e.g. \"{DEFAULT_LISTEN}\""),
        )
    })?;
    let session_timeout = raw.session_timeout.unwrap_or(DEFAULT_SESSION_TIMEOUT);
    super::check_range(
        session_timeout,
        "review_station.session_timeout",
        (super::MINUTE, super::DAY),
        "30m",
    )?;
    let relative = |p: PathBuf| match origin.parent() {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p,
    };
    let tls = match (raw.tls_cert, raw.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: relative(cert),
            key: relative(key),
        }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(key_error(
                "review_station.tls_key",
                "tls_cert is set but tls_key is not: give both (the certificate chain and its private key, PEM)",
            ));
        }
        (None, Some(_)) => {
            return Err(key_error(
                "review_station.tls_cert",
                "tls_key is set but tls_cert is not: give both (the certificate chain and its private key, PEM)",
            ));
        }
    };
    if tls.is_none() && !listen.ip().is_loopback() && !raw.allow_plain_http {
        return Err(key_error(
            "review_station.listen",
            format!(
                "\"{listen}\" is reachable from other machines, and reviewers' passwords and passport scans must not cross the network unencrypted: set tls_cert and tls_key (HTTPS), or listen on 127.0.0.1 behind a TLS-terminating proxy, or set allow_plain_http = true if such a proxy reaches this address"
            ),
        ));
    }
    Ok(Some(ReviewStationConfig {
        listen,
        users_file: relative(raw.users_file.unwrap_or_else(|| DEFAULT_USERS_FILE.into())),
        audit_log: relative(raw.audit_log.unwrap_or_else(|| DEFAULT_AUDIT_LOG.into())),
        session_timeout,
        tls,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{GOOD, err_text, parse};
    use super::*;

    fn with(section: &str) -> String {
        format!("{GOOD}\n[review_station]\n{section}\n")
    }

    #[test]
    fn the_section_turns_the_station_on_with_the_documented_defaults() {
        assert!(parse(GOOD).unwrap().review_station.is_none());
        let station = parse(&with("")).unwrap().review_station.unwrap();
        assert_eq!(station.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(station.users_file, Path::new(DEFAULT_USERS_FILE));
        assert_eq!(station.audit_log, Path::new(DEFAULT_AUDIT_LOG));
        assert_eq!(station.session_timeout, DEFAULT_SESSION_TIMEOUT);
        assert!(station.tls.is_none());
    }

    /// config.example.toml shows the section commented out; uncommented, it is the defaults.
    #[test]
    fn the_example_section_uncommented_is_the_defaults() {
        let example = include_str!("../../config.example.toml");
        let start = example.find("# [review_station]").unwrap();
        let section: String = example[start..]
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with('#'))
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| {
                l.split_once(" = ").is_some_and(|(key, _)| {
                    !key.starts_with("tls_")
                        && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                })
            })
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(section.contains("session_timeout"), "{section}");
        let shown = parse(&with(&section)).unwrap().review_station.unwrap();
        let default = parse(&with("")).unwrap().review_station.unwrap();
        assert_eq!(shown, default);
    }

    #[test]
    fn a_listen_address_off_this_machine_needs_tls_or_the_proxys_word() {
        let e = err_text(&with("listen = \"0.0.0.0:8091\""));
        assert!(
            e.contains("review_station.listen")
                && e.contains("tls_cert")
                && e.contains("allow_plain_http"),
            "{e}"
        );
        parse(&with("listen = \"0.0.0.0:8091\"\nallow_plain_http = true")).unwrap();
        let tls = parse(&with(
            "listen = \"0.0.0.0:8091\"\ntls_cert = \"tls/cert.pem\"\ntls_key = \"/k.pem\"",
        ))
        .unwrap()
        .review_station
        .unwrap()
        .tls
        .unwrap();
        assert_eq!(tls.cert, Path::new("/etc/bh/tls/cert.pem"));
        let e = err_text(&with("tls_cert = \"/c.pem\""));
        assert!(e.contains("review_station.tls_key"), "{e}");
        let e = err_text(&with("session_timeout = \"1s\""));
        assert!(e.contains("review_station.session_timeout"), "{e}");
        let e = err_text(&with("listen = \"localhost\""));
        assert!(e.contains("review_station.listen"), "{e}");
    }
}
