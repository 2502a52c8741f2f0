//! The message of one outcome, as delivered: `{"type": "file.<status>", "timestamp", "data":
//! <the sidecar plus the paths of the original and the sidecar>}` (the webhook body; the
//! ledger line adds the `id`). Built once, when the finish records the outcome, so every try
//! and every way of delivering sends the same bytes.

use std::path::Path;
use std::time::SystemTime;

use serde_json::{Map, Value};

use crate::config::InboxConfig;
use crate::store::journal::{DeliveryKind, NewOutcome};

/// The outcome to record with a finish, for the ways `inbox` delivers; `None` when it
/// delivers nowhere. `sidecar_text` is the sidecar as written at `sidecar`, beside `original`.
pub fn outcome(
    inbox: &InboxConfig,
    sidecar_text: &str,
    original: &Path,
    sidecar: &Path,
) -> Option<NewOutcome> {
    let d = &inbox.delivery;
    let kinds: Vec<DeliveryKind> = [
        (DeliveryKind::Webhook, d.webhook.is_some()),
        (DeliveryKind::Exec, d.exec.is_some()),
        (DeliveryKind::Ledger, d.ledger.is_some()),
    ]
    .into_iter()
    .filter_map(|(kind, on)| on.then_some(kind))
    .collect();
    if kinds.is_empty() {
        return None;
    }
    let sidecar_value: Value = serde_json::from_str(sidecar_text).unwrap_or(Value::Null);
    let status = sidecar_value
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("done")
        .to_string();
    Some(NewOutcome {
        message_id: new_message_id(),
        inbox: inbox.path.clone(),
        body: body(&format!("file.{status}"), sidecar_value, original, sidecar),
        status,
        original: original.to_path_buf(),
        sidecar: sidecar.to_path_buf(),
        kinds,
        first_wait: d.retry.first().copied().unwrap_or_default(),
    })
}

/// The `file.reviewed` outcome of a review station's decision, for the ways `inbox` delivers
/// (`None` when it delivers nowhere): the same message as [`outcome`]'s, of the new type, for
/// the same file; `status` is the sidecar's new one (done or failed).
pub fn reviewed_outcome(
    inbox: &InboxConfig,
    sidecar_text: &str,
    original: &Path,
    sidecar: &Path,
) -> Option<NewOutcome> {
    let mut outcome = outcome(inbox, sidecar_text, original, sidecar)?;
    let sidecar_value: Value = serde_json::from_str(sidecar_text).unwrap_or(Value::Null);
    outcome.body = body(REVIEWED_TYPE, sidecar_value, original, sidecar);
    Some(outcome)
}

/// The message type of a review station's decision.
pub const REVIEWED_TYPE: &str = "file.reviewed";

/// A `webhook-id`: `msg_` and 128 random bits, stored with the outcome so every try and
/// every restart sends the same one.
fn new_message_id() -> String {
    format!("msg_{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// The compact JSON body, of type `kind` (`file.done`, `file.reviewed`, ...).
fn body(kind: &str, sidecar: Value, original: &Path, sidecar_path: &Path) -> String {
    let mut data = match sidecar {
        Value::Object(map) => map,
        other => Map::from_iter([("sidecar".to_string(), other)]),
    };
    data.insert("original_path".into(), path_value(original));
    data.insert("sidecar_path".into(), path_value(sidecar_path));
    let message = serde_json::json!({
        "type": kind,
        "timestamp": crate::sidecar::rfc3339(SystemTime::now()),
        "data": data,
    });
    message.to_string()
}

fn path_value(path: &Path) -> Value {
    Value::String(path.to_string_lossy().into_owned())
}

/// The ledger line for a message: `{"id": <webhook-id>, "type", "timestamp", "data"}` and a
/// newline.
pub fn ledger_line(message_id: &str, body: &str) -> String {
    let mut line = Map::new();
    line.insert("id".into(), Value::String(message_id.to_string()));
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(fields)) => line.extend(fields),
        _ => {
            line.insert("body".into(), Value::String(body.to_string()));
        }
    }
    let mut text = Value::Object(line).to_string();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_carries_the_sidecar_its_paths_and_the_type_and_the_ledger_line_its_id() {
        let body = body(
            "file.review",
            serde_json::json!({"status": "review", "file": "a.jpg"}),
            Path::new("/srv/review/a.jpg"),
            Path::new("/srv/review/a.jpg.json"),
        );
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["type"], "file.review");
        assert_eq!(v["data"]["file"], "a.jpg");
        assert_eq!(v["data"]["original_path"], "/srv/review/a.jpg");
        assert_eq!(v["data"]["sidecar_path"], "/srv/review/a.jpg.json");
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
        let line = ledger_line("msg_1", &body);
        assert!(line.starts_with("{\"id\":\"msg_1\",\"type\":\"file.review\""));
        assert!(line.ends_with("}\n") && line.matches('\n').count() == 1);
    }
}
