//! What of a URL may be shown. Every URL the daemon prints (the API's `base_url`, a webhook,
//! the shared budget's Redis; in logs, `check`, `status`, error messages and the telemetry
//! file `status` reads) passes through [`url`] first, so no credential written into a URL
//! reaches an output, whatever the config's checks let through.
//!
//! What is hidden (each replaced by `***`, so a reader sees that something was there):
//! - the user information (`user:password@`, `:password@`, `user@`): both the password and
//!   the user name, since some services take a key as the user name (`https://KEY@host`);
//! - the value of every query parameter whose name, in any case, contains `pass`, `pwd`,
//!   `token`, `secret`, `key`, `auth`, `sig`, `cred`, `session` or `user`, or is `code`
//!   (`password`, `pass`, `access_token`, `api_key`, `apikey`, `X-Amz-Signature`, ...);
//! - the fragment (`#...`).
//!
//! A webhook is shown as its origin only ([`Show::Origin`], `https://crm.example/…`): the
//! path of many webhook URLs is itself the secret (Slack, Teams, Discord). Text that is not a
//! URL at all is shown as its scheme and `…`: nothing of it can be told safe.

use reqwest::Url;

/// How much of a URL to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// Scheme, host, port, path and the harmless query parameters (the API, Redis).
    Whole,
    /// Scheme, host and port; the rest as `/…` (a webhook, whose path may be its secret).
    Origin,
}

/// What stands in for a hidden part.
const HIDDEN: &str = "***";

/// Parts of query parameter names that mark a secret (matched in lower case).
const SECRET_NAME_PARTS: [&str; 10] = [
    "pass", "pwd", "token", "secret", "key", "auth", "sig", "cred", "session", "user",
];

/// `text` (a URL as configured) as it may be shown: see the module's documentation.
pub fn url(text: &str, show: Show) -> String {
    let Ok(mut url) = Url::parse(text) else {
        return not_a_url(text);
    };
    let mut changed = hide_userinfo(&mut url);
    if show == Show::Origin {
        return origin(&url, text);
    }
    changed |= hide_secret_params(&mut url);
    if url.fragment().is_some_and(|f| !f.is_empty()) {
        url.set_fragment(Some(HIDDEN));
        changed = true;
    }
    // Unchanged: as written (parsing would add a trailing slash or lower the host's case).
    if changed {
        url.to_string()
    } else {
        text.to_string()
    }
}

/// `text` (a message nobody vetted, such as a panic's) with every URL in it shown as [`url`]
/// shows it: a URL runs from its scheme to the first space, quote or closing bracket.
pub fn urls_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let end = rest[at..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | ')' | '>' | ']'))
            .map_or(rest.len(), |i| at + i);
        out.push_str(&rest[..start]);
        out.push_str(&url(&rest[start..end], Show::Whole));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Whether a query parameter of this name is hidden by [`url`] (the Redis URL check refuses
/// the ones that would carry a password).
pub fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == "code" || SECRET_NAME_PARTS.iter().any(|part| name.contains(part))
}

/// Replaces `user:password@` by `***@`; whether there was one.
fn hide_userinfo(url: &mut Url) -> bool {
    if url.username().is_empty() && url.password().is_none() {
        return false;
    }
    // A URL that cannot have user information has none to hide.
    let _ = url.set_password(None);
    let _ = url.set_username(HIDDEN);
    true
}

/// Replaces the values of secret-like query parameters by `***`; whether there was one.
fn hide_secret_params(url: &mut Url) -> bool {
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    if !pairs.iter().any(|(name, _)| is_secret_param(name)) {
        return false;
    }
    url.query_pairs_mut()
        .clear()
        .extend_pairs(pairs.iter().map(|(name, value)| {
            let value = if is_secret_param(name) {
                HIDDEN
            } else {
                value.as_str()
            };
            (name.as_str(), value)
        }));
    true
}

/// `scheme://host[:port]`, and `/…` when the URL has more (user information is already
/// hidden by then).
fn origin(url: &Url, text: &str) -> String {
    let Some(host) = url.host_str() else {
        return not_a_url(text);
    };
    let mut shown = format!("{}://", url.scheme());
    if !url.username().is_empty() {
        shown.push_str(HIDDEN);
        shown.push('@');
    }
    shown.push_str(host);
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    let more = url.path() != "/" || url.query().is_some() || url.fragment().is_some();
    shown.push_str(if more { "/…" } else { "/" });
    shown
}

/// Text that does not parse as a URL: its scheme, if it has a plain one, and `…`.
fn not_a_url(text: &str) -> String {
    match text.split_once("://") {
        Some((scheme, _))
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) =>
        {
            format!("{scheme}://…")
        }
        _ => "…".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(text: &str) -> String {
        url(text, Show::Whole)
    }

    #[test]
    fn a_url_without_credentials_is_shown_as_written() {
        for text in [
            "https://api.beorg.ru",
            "redis://redis.office.lan:6379/0",
            "redis+unix:///run/redis/redis.sock?db=2",
            "redis://127.0.0.1:6379/0?protocol=resp3",
            "http://127.0.0.1:8080/api/v1",
        ] {
            assert_eq!(whole(text), text);
        }
    }

    #[test]
    fn user_information_is_hidden_whole() {
        for (text, shown) in [
            ("redis://beorg:S3CRET@x:6379/0", "redis://***@x:6379/0"),
            ("redis://:S3CRET@x:6379/0", "redis://***@x:6379/0"),
            ("redis://SECRETUSER@x:6379/0", "redis://***@x:6379/0"),
            (
                "https://u:S3CRET@crm.example/h",
                "https://***@crm.example/h",
            ),
            ("https://S3CRET:@crm.example/h", "https://***@crm.example/h"),
            (
                "unix://u:S3CRET@localhost/run/r.sock",
                "unix://***@localhost/run/r.sock",
            ),
        ] {
            assert_eq!(whole(text), shown, "{text}");
        }
    }

    #[test]
    fn secret_like_query_parameters_are_hidden_in_any_case() {
        assert_eq!(
            whole("redis://127.0.0.1:6390/0?password=S3CRET"),
            "redis://127.0.0.1:6390/0?password=***"
        );
        assert_eq!(
            whole("redis+unix:///run/r.sock?db=1&pass=S3CRET&user=SECRETUSER"),
            "redis+unix:///run/r.sock?db=1&pass=***&user=***"
        );
        for name in [
            "password",
            "Pass",
            "pwd",
            "token",
            "access_token",
            "key",
            "api_key",
            "APIKEY",
            "secret",
            "client_secret",
            "auth",
            "sig",
            "X-Amz-Signature",
            "X-Amz-Credential",
            "session",
            "code",
        ] {
            let shown = whole(&format!("https://h/p?a=1&{name}=S3CRET"));
            assert!(!shown.contains("S3CRET"), "{name}: {shown}");
            assert!(shown.contains("a=1"), "{name}: {shown}");
        }
        assert_eq!(
            whole("https://h/p?page=2&lang=ru"),
            "https://h/p?page=2&lang=ru"
        );
    }

    #[test]
    fn a_fragment_is_hidden() {
        assert_eq!(whole("https://h/p#access_token=S3CRET"), "https://h/p#***");
    }

    #[test]
    fn a_webhook_is_shown_as_its_origin() {
        for (text, shown) in [
            (
                "https://hooks.slack.com/services/T0/B0/S3CRET",
                "https://hooks.slack.com/…",
            ),
            (
                "https://u:S3CRET@crm.example:8443/hook?token=S3CRET",
                "https://***@crm.example:8443/…",
            ),
            ("http://crm.example", "http://crm.example/"),
        ] {
            assert_eq!(url(text, Show::Origin), shown, "{text}");
        }
    }

    #[test]
    fn every_url_in_a_message_is_shown_redacted() {
        assert_eq!(
            urls_in(
                "GET http://h/api/document/result/1?token=S3CRET&x=1 failed (redis://u:S3CRET@r:6379/0)"
            ),
            "GET http://h/api/document/result/1?token=***&x=1 failed (redis://***@r:6379/0)"
        );
        assert_eq!(urls_in("no URL :// here"), "no URL … here");
        assert_eq!(urls_in("plain"), "plain");
    }

    #[test]
    fn text_that_is_not_a_url_shows_only_its_scheme() {
        assert_eq!(whole("https://u:S3CRET@h:99999/"), "https://…");
        assert_eq!(whole("redis://u:p/S3CRET@h"), "redis://…");
        assert_eq!(whole("S3CRET"), "…");
        assert_eq!(url("a b://S3CRET", Show::Origin), "…");
    }
}
