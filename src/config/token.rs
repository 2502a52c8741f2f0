//! The API token: where the loader looks for it (`BEORG_TOKEN`, then `api.token`, then
//! `api.token_file`, then the systemd credential), where it was found, and a value whose
//! `Debug` and `Display` never show it.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{ConfigError, key_error};

/// Environment variable that overrides `api.token` and `api.token_file`.
pub const TOKEN_ENV: &str = "BEORG_TOKEN";

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

/// `BEORG_TOKEN` wins, then `token`, then `token_file`, then the systemd credential `token`.
/// `origin` is the config file: where an inline token lives, and the folder relative
/// `token_file` names start from.
pub(super) fn resolve_token(
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

#[cfg(test)]
mod tests {
    use super::super::tests::{GOOD, err_text, parse};
    use super::super::*;
    use super::*;

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
}
