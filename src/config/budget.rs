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
#[derive(Clone)]
pub struct SharedBudgetConfig {
    /// `budget.redis` as written, for connecting; shown only as [`Self::shown_url`].
    pub url: String,
    /// The name of the shared budget: daemons with the same key share it. Redis keys start
    /// with it.
    pub key: String,
    /// From `redis_password_file` or the `redis_password` credential.
    pub password: Option<Secret>,
}

/// Shows the URL as [`SharedBudgetConfig::shown_url`] does (a config may be printed whole).
impl std::fmt::Debug for SharedBudgetConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBudgetConfig")
            .field("url", &self.shown_url())
            .field("key", &self.key)
            .field("password", &self.password)
            .finish()
    }
}

impl SharedBudgetConfig {
    /// `budget.redis` as it may be shown (the user name hidden: [`crate::redact`]).
    pub fn shown_url(&self) -> String {
        crate::redact::url(&self.url, crate::redact::Show::Whole)
    }
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
/// client accepts, with no password in it, in any of the forms the client reads one from.
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
        return Err(carries_a_password("user:password@ (or :password@)"));
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
        Ok(_) => {}
        // The error's category only: its text may quote the URL.
        Err(e) => return refuse(&format!("is not a valid Redis URL ({:?})", e.kind())),
    }
    check_query(scheme, url)
}

/// The query parameters the client reads: `protocol`, and for a socket (`redis+unix://`)
/// `db` and `user` (and `pass`, a password: refused). A parameter named like a secret is
/// refused as a password (it would be one, or be taken for one); any other is refused
/// because the client ignores it (`?db=2` on a `redis://` URL would silently use db 0). A
/// fragment is ignored by the client too.
fn check_query(scheme: &str, url: &str) -> Result<(), ConfigError> {
    // `redis::Client::open` accepted it, so it parses.
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return Ok(());
    };
    let socket = scheme != "redis";
    for (name, _) in parsed.query_pairs() {
        let known = name == "protocol" || (socket && (name == "db" || name == "user"));
        if known {
            continue;
        }
        let user_name = matches!(name.to_ascii_lowercase().as_str(), "user" | "username");
        if crate::redact::is_secret_param(&name) && !user_name {
            return Err(carries_a_password(&format!("?{name}=")));
        }
        let hint = if socket {
            "the client reads only db, user and protocol there"
        } else {
            "the client reads only protocol there; the database is the path (redis://host:6379/2)"
        };
        return Err(key_error(
            "budget.redis",
            format!(
                "has the query parameter `{name}`, which the Redis client ignores ({hint}); remove it"
            ),
        ));
    }
    if parsed.fragment().is_some() {
        return Err(key_error(
            "budget.redis",
            "has a #fragment, which the Redis client ignores; remove it",
        ));
    }
    Ok(())
}

/// A password in `budget.redis` (in the form `form`), refused: the URL is shown in logs,
/// `check` and `status`. The password itself is never quoted.
fn carries_a_password(form: &str) -> ConfigError {
    key_error(
        "budget.redis",
        format!(
            "carries a password ({form}), which is refused: the URL is shown in logs, `check` \
             and `status`; keep only the host (and the user name) in the URL and put the \
             password in budget.redis_password_file or the systemd credential redis_password"
        ),
    )
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

    /// Every form the Redis client reads a password from (`user:password@`, `:password@`,
    /// `?pass=` on a socket), and the ones a person would write meaning one (`?password=`,
    /// `?token=`...), is refused naming the key and the fix, without quoting the password.
    #[test]
    fn every_password_form_of_the_redis_url_is_refused_naming_the_fix() {
        for url in [
            "redis://beorg:S3CRET-pw@x:6379/0",
            "redis://:S3CRET-pw@x:6379/0",
            "redis://beorg:@x:6379/0",
            "redis://127.0.0.1:6390/0?password=S3CRET-pw",
            "redis://127.0.0.1:6390/0?PASSWORD=S3CRET-pw",
            "redis://127.0.0.1:6390/0?pass=S3CRET-pw",
            "redis://127.0.0.1:6390/0?protocol=resp3&auth=S3CRET-pw",
            "redis://127.0.0.1:6390/0?token=S3CRET-pw",
            "redis+unix:///run/redis/redis.sock?pass=S3CRET-pw",
            "redis+unix:///run/redis/redis.sock?db=1&user=beorg&pass=S3CRET-pw",
            "unix:///run/redis/redis.sock?pass=S3CRET-pw",
            "unix:///run/redis/redis.sock?password=S3CRET-pw",
            "unix://beorg:S3CRET-pw@localhost/run/redis/redis.sock",
        ] {
            let message = refused(&format!("redis = \"{url}\""));
            assert!(
                message.starts_with("config key `budget.redis`: carries a password"),
                "{url}: {message}"
            );
            assert!(
                message.contains("budget.redis_password_file")
                    && message.contains("credential redis_password"),
                "{url}: {message}"
            );
            assert!(!message.contains("S3CRET"), "{url}: {message}");
        }
    }

    /// A query parameter or fragment the client ignores is refused too: it may be meant as a
    /// password, or as a database (`?db=2` on a TCP URL would use db 0).
    #[test]
    fn parameters_the_redis_client_ignores_are_refused() {
        for (url, why) in [
            ("redis://x:6379?db=2", "database is the path"),
            ("redis://x:6379/0?user=beorg", "ignores"),
            ("redis://x:6379/0?timeout=5", "ignores"),
            (
                "redis+unix:///run/r.sock?socket_timeout=5",
                "db, user and protocol",
            ),
            ("redis://x:6379/0#S3CRET-pw", "fragment"),
        ] {
            let message = refused(&format!("redis = \"{url}\""));
            assert!(
                message.starts_with("config key `budget.redis`"),
                "{message}"
            );
            assert!(message.contains(why), "{url}: {message}");
            assert!(!message.contains("S3CRET"), "{url}: {message}");
        }
        for url in [
            "redis://beorg@x:6379/0?protocol=resp3",
            "redis+unix:///run/redis/redis.sock?db=2&user=beorg",
            "unix:///run/redis/redis.sock",
        ] {
            assert!(resolve_text(&format!("redis = \"{url}\"")).is_ok(), "{url}");
        }
    }

    #[test]
    fn the_shown_url_hides_the_user_name() {
        let b = resolve_text("redis = \"redis://SECRETUSER@x:6379/0\"").unwrap();
        let shared = b.redis.unwrap();
        assert_eq!(shared.shown_url(), "redis://***@x:6379/0");
        assert!(!format!("{shared:?}").contains("SECRETUSER"));
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
