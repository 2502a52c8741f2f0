//! The outbox's message: what a finished file's transition queues for delivery, in the same
//! transaction that finishes it (the delivering task then sends it by webhook, command or
//! ledger line).

use std::path::PathBuf;
use std::time::Duration;

/// A way of delivering an outcome. Stored as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryKind {
    Webhook,
    Exec,
    Ledger,
}

impl DeliveryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryKind::Webhook => "webhook",
            DeliveryKind::Exec => "exec",
            DeliveryKind::Ledger => "ledger",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryKind> {
        Some(match text {
            "webhook" => DeliveryKind::Webhook,
            "exec" => DeliveryKind::Exec,
            "ledger" => DeliveryKind::Ledger,
            _ => return None,
        })
    }
}

/// One outcome to deliver, in the ways `kinds`: what the finish transaction records.
#[derive(Debug, Clone)]
pub struct NewOutcome {
    /// The `webhook-id`: the same for every kind and every try of this outcome.
    pub message_id: String,
    pub inbox: PathBuf,
    /// The sidecar's status (`done`, `failed`, ...).
    pub status: String,
    /// The original in done/failed.
    pub original: PathBuf,
    pub sidecar: PathBuf,
    /// The message (the webhook body, the ledger line without its `id`).
    pub body: String,
    pub kinds: Vec<DeliveryKind>,
    /// The wait before the first try.
    pub first_wait: Duration,
}
