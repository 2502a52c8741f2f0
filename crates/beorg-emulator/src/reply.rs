//! What the emulator answers with: a status and a body that is JSON (or meant to look like
//! it), and the vendor's wording for each status it documents.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

/// A status and a body that is JSON, or meant to look like it.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) body: String,
}

impl Reply {
    /// A 200 with a JSON body.
    pub(crate) fn ok(value: &Value) -> Self {
        Self {
            status: StatusCode::OK,
            body: value.to_string(),
        }
    }

    /// An error with `{"message": ...}`.
    pub(crate) fn error(status: StatusCode, message: &str) -> Self {
        Self::error_with(status, message, None)
    }

    /// An error with `{"message": ...}` and, when given, the `document_id` it concerns.
    pub(crate) fn error_with(status: StatusCode, message: &str, document_id: Option<&str>) -> Self {
        let mut body = Map::new();
        body.insert("message".into(), Value::from(message));
        if let Some(id) = document_id {
            body.insert("document_id".into(), Value::from(id));
        }
        Self {
            status,
            body: Value::Object(body).to_string(),
        }
    }

    /// The answer to a request the harness told to fail with `status`.
    pub(crate) fn forced(status: u16) -> Self {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self::error(status, message_for(status))
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        (
            self.status,
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            self.body,
        )
            .into_response()
    }
}

/// The vendor's wording (in English) for each status it documents.
pub(crate) fn message_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad request: data is missing or malformed",
        401 => "authorization error: token or machine_uid missing or wrong",
        402 => "not enough money on the account",
        404 => "document not found",
        409 => "document already exists; do not send the same file several times",
        413 => "file too large: do not send files whose sizes sum to more than 800 MB",
        425 => "document is still being processed",
        500 => "server error",
        503 => "server error: the request took too long",
        _ => "emulated failure",
    }
}

/// A 400 reply.
pub(crate) fn bad_request(message: impl AsRef<str>) -> Reply {
    Reply::error(StatusCode::BAD_REQUEST, message.as_ref())
}
