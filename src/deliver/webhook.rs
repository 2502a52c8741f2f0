//! Delivering a message to a webhook receiver as Standard Webhooks says: a POST of the body
//! with `webhook-id`, `webhook-timestamp` and (with a secret) `webhook-signature: v1,<base64
//! HMAC-SHA256 of "id.timestamp.body">`, signed afresh at each try. 2xx is delivered, 410
//! stops, anything else is tried again. No redirects are followed. The secret never reaches
//! a message, and the URL (it may carry credentials, in its path too) only as its origin
//! ([`crate::redact`], `https://crm.example/…`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Tried;
use crate::config::{SigningKey, Webhook};

/// A try that gets no answer within this is counted as failed.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(15);

/// Deadline for opening the connection, within [`WEBHOOK_TIMEOUT`].
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP client for webhooks: no redirects, the 15 s deadline.
pub fn client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(WEBHOOK_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("beorg-hotfolder/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| anyhow::anyhow!("cannot build the webhook HTTP client: {}", e.without_url()))
}

/// One try of POSTing `body` as message `message_id`.
pub async fn send(
    client: &reqwest::Client,
    webhook: &Webhook,
    message_id: &str,
    body: &str,
) -> Tried {
    let url = webhook.url.expose();
    let shown = crate::redact::url(url, crate::redact::Show::Origin);
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        .to_string();
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", message_id)
        .header("webhook-timestamp", &timestamp);
    if let Some(key) = &webhook.key {
        request = request.header(
            "webhook-signature",
            signature(key, message_id, &timestamp, body),
        );
    }
    match request.body(body.to_string()).send().await {
        Ok(answer) => judge(answer.status(), &shown),
        Err(e) => Tried::Failed(format!(
            "the receiver at {shown}: {}",
            describe(e, url, &shown)
        )),
    }
}

/// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
pub fn signature(key: &SigningKey, message_id: &str, timestamp: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.expose()).expect("HMAC takes any key length");
    mac.update(format!("{message_id}.{timestamp}.{body}").as_bytes());
    let digest = mac.finalize().into_bytes();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

fn judge(status: reqwest::StatusCode, shown: &str) -> Tried {
    match status.as_u16() {
        200..=299 => Tried::Delivered(format!("HTTP {}", status.as_u16())),
        410 => Tried::Gone(format!("the receiver at {shown} answered 410 Gone")),
        code => Tried::Failed(format!("the receiver at {shown} answered HTTP {code}")),
    }
}

/// What went wrong, without the URL: reqwest prints it in `Display`, and hyper's causes are
/// walked by hand (`without_url` only strips the top). Should a cause quote the URL anyway
/// (as written, or as parsed), it is replaced by `shown`.
fn describe(e: reqwest::Error, url: &str, shown: &str) -> String {
    let timed_out = e.is_timeout();
    let e = e.without_url();
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    if timed_out {
        text = format!("no answer within {}s ({text})", WEBHOOK_TIMEOUT.as_secs());
    }
    let parsed = reqwest::Url::parse(url)
        .map(String::from)
        .unwrap_or_default();
    for form in [url, parsed.as_str()] {
        if !form.is_empty() {
            text = text.replace(form, shown);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification (its reference libraries' tests).
    #[test]
    fn the_signature_matches_the_specification_example() {
        let encoded = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let key = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        let key = SigningKey::new(key);
        let signature = signature(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
