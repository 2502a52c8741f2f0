//! An inbox's delivery settings (`webhook`, `webhook_secret_file`, `exec`, `exec_timeout`,
//! `ledger`, `delivery_retry`, each per inbox or in `[defaults]`): parsed, checked with the
//! key named, and the webhook secret read and decoded at start. A webhook URL may carry
//! credentials, so no message (and no `Debug`) ever shows it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;

use super::folders::normalize;
use super::inbox_keys::InboxKeys;
use super::{ConfigError, InboxConfig, Secret, TokenRule, key_error};

/// The built-in retry schedule: the wait before each try of a delivery (the first right
/// away), as Standard Webhooks senders use; after the last try fails the delivery is given up.
pub const DEFAULT_DELIVERY_RETRY: [Duration; 8] = [
    Duration::ZERO,
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// How long a delivery command may run before it is killed (and retried).
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(60);

/// The prefix of a Standard Webhooks secret; base64 of the key bytes follows.
const SECRET_PREFIX: &str = "whsec_";

/// Where an inbox's outcomes are delivered, and how persistently.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// POST each outcome here (Standard Webhooks); `None`: no webhook.
    pub webhook: Option<Webhook>,
    /// Run this command (no shell) for each outcome, placeholders replaced; `None`: none.
    pub exec: Option<Vec<String>>,
    /// The command is killed after this long and the try counts as failed.
    pub exec_timeout: Duration,
    /// Append one JSON line per outcome to this file; `None`: no ledger.
    pub ledger: Option<PathBuf>,
    /// The wait before each try (the first usually zero); given up after the last.
    pub retry: Vec<Duration>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            webhook: None,
            exec: None,
            exec_timeout: DEFAULT_EXEC_TIMEOUT,
            ledger: None,
            retry: DEFAULT_DELIVERY_RETRY.to_vec(),
        }
    }
}

/// A webhook receiver: its URL and, when `webhook_secret_file` is set, the signing key.
#[derive(Clone)]
pub struct Webhook {
    /// The receiver's URL; it may carry credentials, so it is kept as a secret.
    pub url: Secret,
    /// `webhook_secret_file` as configured (relative names are taken from the config's folder).
    pub secret_file: Option<PathBuf>,
    /// The decoded secret, read at start; `None` without `webhook_secret_file` (unsigned), or
    /// for a command that never delivers (`status`).
    pub key: Option<SigningKey>,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .field("secret_file", &self.secret_file)
            .field("key", &self.key)
            .finish()
    }
}

/// The HMAC key a webhook is signed with. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    /// A key from its decoded bytes (what follows `whsec_`, base64-decoded).
    pub fn new(bytes: Vec<u8>) -> SigningKey {
        SigningKey(bytes)
    }

    /// The key bytes, for the HMAC. Never log what this returns.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(***)")
    }
}

/// The delivery settings of inbox `key("…")`, from its own keys over `[defaults]` (`s`).
pub(super) fn resolve(
    s: &InboxKeys,
    key: &dyn Fn(&str) -> String,
) -> Result<DeliveryConfig, ConfigError> {
    let webhook = match s.webhook.as_deref().map(str::trim) {
        None => None,
        Some(url) => Some(Webhook {
            url: Secret::new(check_webhook_url(url, &key("webhook"))?),
            secret_file: s.webhook_secret_file.clone(),
            key: None,
        }),
    };
    if webhook.is_none() && s.webhook_secret_file.is_some() {
        return Err(key_error(
            key("webhook_secret_file"),
            "is set but `webhook` is not; set the receiver's URL in `webhook`, or remove the key",
        ));
    }
    let exec = match &s.exec {
        None => None,
        Some(argv) if argv.first().is_none_or(|p| p.trim().is_empty()) => {
            return Err(key_error(
                key("exec"),
                "needs the program first, e.g. exec = [\"/usr/local/bin/import-to-1c\", \"{sidecar}\"]",
            ));
        }
        Some(argv) => Some(argv.clone()),
    };
    let exec_timeout = s.exec_timeout.unwrap_or(DEFAULT_EXEC_TIMEOUT);
    super::check_range(
        exec_timeout,
        &key("exec_timeout"),
        (super::MS_100, super::HOUR),
        "60s",
    )?;
    let ledger = match &s.ledger {
        Some(path) if path.as_os_str().is_empty() => {
            return Err(key_error(
                key("ledger"),
                "is empty; give the file to append to, e.g. \"/srv/scans/ledger/kyc.jsonl\"",
            ));
        }
        Some(path) => Some(normalize(path)),
        None => None,
    };
    let retry = match &s.delivery_retry {
        None => DEFAULT_DELIVERY_RETRY.to_vec(),
        Some(list) => parse_schedule(list, &key("delivery_retry"))?,
    };
    Ok(DeliveryConfig {
        webhook,
        exec,
        exec_timeout,
        ledger,
        retry,
    })
}

/// Checks an `http(s)` URL with a host; the message never quotes it (it may carry a password).
fn check_webhook_url(url: &str, key: &str) -> Result<String, ConfigError> {
    let refuse = |why: &str| {
        Err(key_error(
            key,
            format!(
                "{why} (not shown: it may carry credentials); give e.g. \"https://crm.example/hooks/beorg\""
            ),
        ))
    };
    match reqwest::Url::parse(url) {
        Err(e) => refuse(&format!("is not a valid URL ({e})")),
        Ok(u) if !matches!(u.scheme(), "http" | "https") => refuse("is not an http(s) URL"),
        Ok(u) if u.host_str().is_none_or(str::is_empty) => refuse("has no host"),
        Ok(_) => Ok(url.to_string()),
    }
}

/// `delivery_retry`: one to 100 durations, each at most 7 days.
fn parse_schedule(list: &[String], key: &str) -> Result<Vec<Duration>, ConfigError> {
    const MAX_WAIT: Duration = Duration::from_secs(7 * 24 * 3600);
    if list.is_empty() || list.len() > 100 {
        return Err(key_error(
            key,
            "needs 1 to 100 waits, one per try, e.g. [\"0s\", \"5s\", \"5m\", \"30m\", \"2h\", \"5h\", \"10h\", \"10h\"] (the default)",
        ));
    }
    list.iter()
        .map(|text| match humantime::parse_duration(text.trim()) {
            Ok(wait) if wait <= MAX_WAIT => Ok(wait),
            Ok(_) => Err(key_error(
                key,
                format!("\"{text}\" is longer than the 7 days a wait may be"),
            )),
            Err(e) => Err(key_error(
                key,
                format!("\"{text}\" is not a duration ({e}); write waits like \"0s\", \"5s\", \"5m\", \"2h\""),
            )),
        })
        .collect()
}

/// Reads every inbox's webhook secret (relative names from the config file's folder) and
/// refuses a ledger inside an inbox (intake would take it for a scan). A command that never
/// delivers (`status`, [`TokenRule::Optional`]) does not read the secrets.
pub(super) fn complete(
    inboxes: &mut [InboxConfig],
    origin: &Path,
    rule: TokenRule,
) -> Result<(), ConfigError> {
    for i in 0..inboxes.len() {
        check_ledger_outside_inboxes(i, inboxes)?;
        let Some(webhook) = inboxes[i].delivery.webhook.as_mut() else {
            continue;
        };
        let Some(file) = webhook.secret_file.clone() else {
            continue;
        };
        let file = origin.parent().unwrap_or(Path::new(".")).join(file);
        webhook.secret_file = Some(file.clone());
        if rule == TokenRule::Required {
            webhook.key = Some(read_secret(
                &file,
                &format!("inbox[{i}].webhook_secret_file"),
            )?);
        }
    }
    Ok(())
}

fn check_ledger_outside_inboxes(i: usize, inboxes: &[InboxConfig]) -> Result<(), ConfigError> {
    let Some(ledger) = &inboxes[i].delivery.ledger else {
        return Ok(());
    };
    match inboxes
        .iter()
        .position(|other| ledger.starts_with(&other.path))
    {
        Some(j) => Err(key_error(
            format!("inbox[{i}].ledger"),
            format!(
                "\"{}\" is inside inbox[{j}].path, where it would be taken for a scan; keep the ledger outside every inbox",
                ledger.display()
            ),
        )),
        None => Ok(()),
    }
}

/// A Standard Webhooks secret: `whsec_` + base64 of the key, on one line. The message names
/// the file, never its content.
fn read_secret(file: &Path, key: &str) -> Result<SigningKey, ConfigError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| key_error(key, format!("cannot read {}: {e}", file.display())))?;
    let bad = |why: &str| {
        key_error(
            key,
            format!(
                "{} {why}; put one line \"whsec_\" + base64 of 24 to 64 random bytes in it (e.g. echo \"whsec_$(head -c 32 /dev/urandom | base64)\"), the same secret the receiver verifies with",
                file.display()
            ),
        )
    };
    let encoded = text
        .trim()
        .strip_prefix(SECRET_PREFIX)
        .ok_or_else(|| bad("does not start with \"whsec_\""))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| bad("is not \"whsec_\" followed by base64"))?;
    if bytes.is_empty() {
        return Err(bad("holds an empty secret"));
    }
    Ok(SigningKey(bytes))
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    /// A config with `defaults` in `[defaults]` and `inbox` in the one inbox.
    fn config(
        defaults: &str,
        inbox: &str,
        origin: &Path,
        rule: TokenRule,
    ) -> Result<Config, ConfigError> {
        let text = format!(
            "[api]\nproject_id = \"P\"\nmachine_uid = \"m\"\ntoken = \"t\"\n[defaults]\n{defaults}\n[[inbox]]\npath = \"/srv/in/a\"\ntype = \"PASSPORT\"\ndone = \"/srv/done/a\"\nfailed = \"/srv/failed/a\"\n{inbox}\n"
        );
        Config::parse(&text, origin, None, rule)
    }

    fn parse(defaults: &str, inbox: &str) -> Result<DeliveryConfig, ConfigError> {
        config(
            defaults,
            inbox,
            Path::new("/etc/b/config.toml"),
            TokenRule::Required,
        )
        .map(|c| c.inboxes[0].delivery.clone())
    }

    fn refusal(defaults: &str, inbox: &str) -> String {
        parse(defaults, inbox).unwrap_err().to_string()
    }

    #[test]
    fn delivery_keys_apply_per_inbox_over_defaults_with_their_defaults() {
        let d = parse("", "").unwrap();
        assert!(d.webhook.is_none() && d.exec.is_none() && d.ledger.is_none());
        assert_eq!(d.exec_timeout, Duration::from_secs(60));
        assert_eq!(d.retry, DEFAULT_DELIVERY_RETRY);
        let d = parse(
            "webhook = \"https://crm.example/hooks/beorg\"\nexec = [\"/bin/a\"]\nexec_timeout = \"5s\"\ndelivery_retry = [\"0s\", \"1m\"]",
            "exec = [\"/bin/b\", \"{sidecar}\"]\nledger = \"/srv/ledger/a.jsonl\"",
        )
        .unwrap();
        assert_eq!(
            d.webhook.unwrap().url.expose(),
            "https://crm.example/hooks/beorg"
        );
        assert_eq!(d.exec.unwrap(), ["/bin/b", "{sidecar}"]);
        assert_eq!(d.exec_timeout, Duration::from_secs(5));
        assert_eq!(d.ledger.unwrap(), Path::new("/srv/ledger/a.jsonl"));
        assert_eq!(d.retry, [Duration::ZERO, Duration::from_secs(60)]);
    }

    #[test]
    fn bad_delivery_values_are_refused_naming_the_key_and_never_quoting_the_url() {
        let text = refusal("", "webhook = \"ftp://user:pa55@crm.example/hook\"");
        assert!(
            text.contains("inbox[0].webhook") && text.contains("http(s)"),
            "{text}"
        );
        assert!(!text.contains("pa55"), "{text}");
        let text = refusal("", "webhook = \"https://user:pa55@/hook\"");
        assert!(
            text.contains("inbox[0].webhook") && !text.contains("pa55"),
            "{text}"
        );
        let text = refusal("webhook_secret_file = \"/etc/b/secret\"", "");
        assert!(text.contains("inbox[0].webhook_secret_file"), "{text}");
        assert!(refusal("", "exec = []").contains("inbox[0].exec"));
        assert!(refusal("", "exec = [\" \"]").contains("inbox[0].exec"));
        assert!(refusal("", "exec_timeout = \"0s\"").contains("inbox[0].exec_timeout"));
        assert!(refusal("", "delivery_retry = []").contains("inbox[0].delivery_retry"));
        let text = refusal("", "delivery_retry = [\"0s\", \"soon\"]");
        assert!(
            text.contains("inbox[0].delivery_retry") && text.contains("soon"),
            "{text}"
        );
        assert!(refusal("", "delivery_retry = [\"8d\"]").contains("7 days"));
        let text = refusal("", "ledger = \"/srv/in/a/ledger.jsonl\"");
        assert!(
            text.contains("inbox[0].ledger") && text.contains("inbox[0].path"),
            "{text}"
        );
    }

    #[test]
    fn the_webhook_secret_is_read_from_the_config_folder_and_a_bad_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let origin = dir.path().join("config.toml");
        let hook = "webhook = \"https://crm.example/hook\"\nwebhook_secret_file = \"secret\"";
        let read = |rule| config("", hook, &origin, rule);
        let text = read(TokenRule::Required).unwrap_err().to_string();
        assert!(
            text.contains("inbox[0].webhook_secret_file") && text.contains("cannot read"),
            "{text}"
        );
        // `status` never delivers: it does not need (or read) the secret.
        assert!(read(TokenRule::Optional).is_ok());
        for bad in ["c2VjcmV0", "whsec_!!!", "whsec_"] {
            std::fs::write(dir.path().join("secret"), bad).unwrap();
            let text = read(TokenRule::Required).unwrap_err().to_string();
            assert!(
                text.contains("inbox[0].webhook_secret_file") && text.contains("whsec_"),
                "{text}"
            );
            assert!(!text.contains("c2VjcmV0"), "{text}");
        }
        std::fs::write(dir.path().join("secret"), "whsec_c2VjcmV0\n").unwrap();
        let config = read(TokenRule::Required).unwrap();
        let webhook = config.inboxes[0].delivery.webhook.clone().unwrap();
        assert_eq!(webhook.key.unwrap().expose(), b"secret");
        assert_eq!(webhook.secret_file.unwrap(), dir.path().join("secret"));
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("crm.example") && !debug.contains("c2VjcmV0"),
            "{debug}"
        );
    }
}
