//! Cross-site request forgery: every form of a session carries its token (hidden field
//! `csrf`), compared in constant time, and a request whose `Origin` (when the browser sends
//! one) is not this server is refused.

use axum::http::{HeaderMap, header};

/// Whether `given` is the session's token, in time independent of where they differ.
pub fn token_matches(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the request's `Origin`, if any, is the host it was sent to.
pub fn origin_is_ours(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin = origin.to_str().ok();
    match (origin, host) {
        (Some(origin), Some(host)) => {
            let authority = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            authority == Some(host)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_origins() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abd", "abc") && !token_matches("ab", "abc"));
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:8091".parse().unwrap());
        assert!(origin_is_ours(&h));
        h.insert(header::ORIGIN, "http://127.0.0.1:8091".parse().unwrap());
        assert!(origin_is_ours(&h));
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!origin_is_ours(&h));
        h.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(!origin_is_ours(&h));
    }
}
