//! `[budget]`: where the account's request budget lives. Without `redis` it is this process's
//! own (as before); with it, every daemon that names the same Redis and `key` shares both
//! limits and the account pause. The Redis password comes from `redis_password_file` or the
//! systemd credential `redis_password`, never from the URL, and no message shows it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ConfigError, Secret, TokenRule, key_error};

/// The systemd credential (`LoadCredential=redis_password:...`) read when
/// `redis_password_file` is not set.
pub const REDIS_PASSWORD_CREDENTIAL: &str = "redis_password";

/// The budget's home: this process, or a Redis shared with other daemons.
#[derive(Debug, Clone, Default)]
pub struct BudgetConfig {
    /// `None`: the budget is this process's own.
    pub redis: Option<SharedBudgetConfig>,
}

/// A budget shared through Redis (or Valkey).
#[derive(Debug, Clone)]
pub struct SharedBudgetConfig {
    /// `budget.redis` as written (it carries no password, so it may be shown).
    pub url: String,
    /// The name of the shared budget: daemons with the same key share it. Redis keys start
    /// with it.
    pub key: String,
    /// From `redis_password_file` or the `redis_password` credential.
    pub password: Option<Secret>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBudget {
    redis: Option<String>,
    key: Option<String>,
    redis_password_file: Option<PathBuf>,
}

/// The default budget name: one per processing scenario (`beorg:U_RATE_2`).
pub fn default_key(project_id: &str) -> String {
    format!("beorg:{project_id}")
}

/// `rule`: a command that never sends (`status`) does not need the password, and may run as a
/// user who cannot read it.
pub(super) fn resolve(
    raw: RawBudget,
    project_id: &str,
    origin: &Path,
    rule: TokenRule,
) -> Result<BudgetConfig, ConfigError> {
    let Some(url) = raw.redis.map(|u| u.trim().to_string()) else {
        return Ok(BudgetConfig::default());
    };
    check_url(&url)?;
    let key = raw
        .key
        .map(|k| k.trim().to_string())
        .unwrap_or_else(|| default_key(project_id));
    if key.is_empty() || key.len() > 200 || key.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(key_error(
            "budget.key",
            "must be 1 to 200 characters without spaces, e.g. \"beorg:U_RATE_2\"",
        ));
    }
    let password = match raw.redis_password_file {
        Some(file) => match read_password(&origin.parent().unwrap_or(Path::new(".")).join(file)) {
            Ok(password) => Some(password),
            Err(_) if rule == TokenRule::Optional => None,
            Err(e) => return Err(e),
        },
        None => credential_password(),
    };
    Ok(BudgetConfig {
        redis: Some(SharedBudgetConfig { url, key, password }),
    })
}

/// `budget.redis` must be a `redis://host[:port][/db]` (or `redis+unix:///path`) URL the
/// client accepts, with no password in it.
fn check_url(url: &str) -> Result<(), ConfigError> {
    let refuse = |why: &str| {
        Err(key_error(
            "budget.redis",
            format!("{why}; write it like \"redis://redis.office.lan:6379/0\""),
        ))
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return refuse("is not a URL");
    };
    // The part before '@', if any, is user[:password]; never quoted in a message.
    let userinfo = rest.split('/').next().unwrap_or_default().rsplit_once('@');
    if userinfo.is_some_and(|(user, _)| user.contains(':')) {
        return Err(key_error(
            "budget.redis",
            "carries a password; keep only the user name in the URL and put the password in \
             budget.redis_password_file or the systemd credential redis_password",
        ));
    }
    match scheme {
        "redis" | "redis+unix" | "unix" => {}
        "rediss" => {
            return refuse(
                "uses TLS (rediss://), which this build does not speak; reach Redis over the \
                 office VPN or a local TLS tunnel (stunnel) and use redis://",
            );
        }
        _ => return refuse(&format!("has the scheme {scheme:?}, not redis://")),
    }
    if scheme == "redis" && rest.split(['/', '?']).next().is_none_or(str::is_empty) {
        return refuse("has no host");
    }
    match redis::Client::open(url) {
        Ok(_) => Ok(()),
        // The error's category only: its text may quote the URL.
        Err(e) => refuse(&format!("is not a valid Redis URL ({:?})", e.kind())),
    }
}

fn read_password(file: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        key_error(
            "budget.redis_password_file",
            format!("cannot read {}: {e}", file.display()),
        )
    })?;
    let password = text.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(key_error(
            "budget.redis_password_file",
            format!("{} is empty; put the Redis password in it", file.display()),
        ));
    }
    Ok(Secret::new(password))
}

/// The systemd credential `redis_password`, when the service has one.
fn credential_password() -> Option<Secret> {
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY")?;
    let text = std::fs::read_to_string(Path::new(&dir).join(REDIS_PASSWORD_CREDENTIAL)).ok()?;
    let password = text.trim_end_matches(['\n', '\r']);
    (!password.is_empty()).then(|| Secret::new(password))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_text(text: &str) -> Result<BudgetConfig, ConfigError> {
        let raw: RawBudget = toml::from_str(text).unwrap();
        resolve(
            raw,
            "U_RATE_2",
            Path::new("/nonexistent/config.toml"),
            TokenRule::Required,
        )
    }

    fn refused(text: &str) -> String {
        resolve_text(text).unwrap_err().to_string()
    }

    #[test]
    fn absent_redis_means_the_budget_is_this_processs_own() {
        assert!(resolve_text("").unwrap().redis.is_none());
        assert!(resolve_text("key = \"x\"").unwrap().redis.is_none());
    }

    #[test]
    fn the_key_defaults_to_the_scenario() {
        let b = resolve_text("redis = \"redis://127.0.0.1:6379/0\"").unwrap();
        let shared = b.redis.unwrap();
        assert_eq!(shared.key, "beorg:U_RATE_2");
        assert!(shared.password.is_none());
    }

    #[test]
    fn bad_urls_are_refused_naming_the_key_and_never_quoting_a_password() {
        for (text, why) in [
            ("redis = \"http://x\"", "not redis://"),
            ("redis = \"redis.office.lan:6379\"", "not a URL"),
            ("redis = \"redis://\"", "no host"),
            ("redis = \"rediss://x:6380\"", "TLS"),
            ("redis = \"redis://x:99999\"", "not a valid Redis URL"),
        ] {
            let message = refused(text);
            assert!(
                message.starts_with("config key `budget.redis`"),
                "{message}"
            );
            assert!(message.contains(why), "{text}: {message}");
        }
        let message = refused("redis = \"redis://beorg:S3CRET-pw@x:6379\"");
        assert!(message.contains("redis_password_file"), "{message}");
        assert!(!message.contains("S3CRET"), "{message}");
        // A user name alone (an ACL user) is fine.
        assert!(resolve_text("redis = \"redis://beorg@x:6379\"").is_ok());
    }

    #[test]
    fn a_key_with_spaces_is_refused() {
        let message = refused("redis = \"redis://x\"\nkey = \"a b\"");
        assert!(message.starts_with("config key `budget.key`"), "{message}");
    }

    #[test]
    fn the_password_file_is_read_and_a_missing_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "S3CRET-pw\n").unwrap();
        let raw: RawBudget =
            toml::from_str("redis = \"redis://x\"\nredis_password_file = \"pw\"").unwrap();
        let b = resolve(
            raw,
            "P",
            &dir.path().join("config.toml"),
            TokenRule::Required,
        )
        .unwrap();
        let shared = b.redis.unwrap();
        assert_eq!(shared.password.unwrap().expose(), "S3CRET-pw");
        assert_eq!(shared.key, "beorg:P");
        let message = refused("redis = \"redis://x\"\nredis_password_file = \"missing\"");
        assert!(
            message.starts_with("config key `budget.redis_password_file`: cannot read"),
            "{message}"
        );
    }
}
