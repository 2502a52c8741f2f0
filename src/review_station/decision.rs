//! What a decision writes: the item's sidecar with `status`, the `reviewed` block, the
//! corrections carried into the normalised view (`documents[].fields`; `result`, the API's
//! answer, stays as received), and for a rejection the `error`. The move and its record are
//! [`crate::store::journal::Journal::review_decision`]'s.

use std::time::SystemTime;

use serde_json::{Map, Value, json};

use super::items::Item;
use crate::sidecar::SIDECAR_VERSION;

/// A reviewer's choice, from the form.
#[derive(Debug, Clone)]
pub enum Choice {
    /// `field.<Name>` values as the form sent them (unchanged ones are no corrections).
    Approve {
        fields: Vec<(String, String)>,
    },
    Reject {
        reason: String,
    },
}

impl Choice {
    /// "approved" or "rejected", as the sidecar and the history say.
    pub fn decision(&self) -> &'static str {
        match self {
            Choice::Approve { .. } => "approved",
            Choice::Reject { .. } => "rejected",
        }
    }
}

/// The sidecar after the decision, and the names of the fields corrected; or the name of a
/// field the item does not have.
pub fn decided_sidecar(
    item: &Item,
    choice: &Choice,
    by: &str,
    at: SystemTime,
) -> Result<(Value, Vec<String>), String> {
    let mut sidecar = item.sidecar_json.clone();
    let mut corrections = Map::new();
    if let Choice::Approve { fields } = choice {
        for (name, to) in fields {
            let Some(from) = current_value(&sidecar, name) else {
                return Err(name.clone());
            };
            if shown(&from) == *to {
                continue;
            }
            set_field(&mut sidecar, name, &from, to);
            corrections.insert(name.clone(), json!({"from": shown(&from), "to": to}));
        }
    }
    let corrected = corrections.keys().cloned().collect();
    let status = match choice {
        Choice::Approve { .. } => "done",
        Choice::Reject { .. } => "failed",
    };
    sidecar["sidecar_version"] = json!(SIDECAR_VERSION);
    sidecar["status"] = json!(status);
    sidecar["reviewed"] = json!({
        "decision": choice.decision(),
        "by": by,
        "at": crate::sidecar::rfc3339(at),
        "corrections": corrections,
    });
    if let Choice::Reject { reason } = choice {
        sidecar["error"] = json!({"kind": "rejected", "http_status": null, "message": reason});
    }
    Ok((sidecar, corrected))
}

/// A field's value as a person reads and types it.
pub fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The value of field `name` in the first document that has it.
fn current_value(sidecar: &Value, name: &str) -> Option<Value> {
    sidecar["documents"]
        .as_array()?
        .iter()
        .find_map(|d| d["fields"].get(name).cloned())
}

/// Sets `name` to `to` in every document that has it, keeping its JSON type where `to`
/// reads as one (a boolean stays a boolean, a number a number).
fn set_field(sidecar: &mut Value, name: &str, from: &Value, to: &str) {
    let value = match from {
        Value::Bool(_) if to == "true" || to == "false" => Value::Bool(to == "true"),
        Value::Number(_) => to
            .parse::<serde_json::Number>()
            .map(Value::Number)
            .unwrap_or_else(|_| Value::String(to.to_string())),
        _ => Value::String(to.to_string()),
    };
    if let Some(documents) = sidecar["documents"].as_array_mut() {
        for document in documents {
            if let Some(field) = document["fields"].get_mut(name) {
                *field = value.clone();
            }
        }
    }
}
