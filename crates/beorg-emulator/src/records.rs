//! The request log: every request as the emulator saw and answered it, for tests to read.
//! It holds no token and no query string.

use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::checks::project_of;

/// Which of the two API calls a request was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /api/bescan/add_document`.
    Submit,
    /// `GET`/`POST /api/document/result/{id}` (or the `/api/bescan/result/{id}` alias).
    Result,
}

/// One request as the emulator saw and answered it. Holds no token and no query string.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// When the request arrived.
    pub at: Instant,
    /// Which call it was.
    pub endpoint: Endpoint,
    /// The status code answered.
    pub status: u16,
    /// The id assigned (submit answered 200) or asked for (result).
    pub document_id: Option<String>,
    /// Hex sha256 of each image that could be decoded (submit only).
    pub image_sha256: Vec<String>,
    /// The `process_info` types sent (submit only).
    pub types: Vec<String>,
    /// Whether the submit carried a `process_info` array (absent for "Passport Auto").
    pub process_info: bool,
    /// The field the project arrived under (`project_id` or `campaign_id`) and its value
    /// (submit only, when it was a string).
    pub project: Option<(String, String)>,
    /// The `process_info` array exactly as sent (submit only; keys, stages and relations).
    pub process_info_sent: Option<Value>,
}

/// A request-log entry for a submit.
pub(crate) fn submit_record(
    at: Instant,
    status: u16,
    document_id: Option<String>,
    described: Described,
) -> RequestRecord {
    RequestRecord {
        at,
        endpoint: Endpoint::Submit,
        status,
        document_id,
        image_sha256: described.image_sha256,
        types: described.types,
        process_info: described.process_info,
        project: described.project,
        process_info_sent: described.process_info_sent,
    }
}

/// What the request log says about a submit body.
#[derive(Default)]
pub(crate) struct Described {
    pub(crate) image_sha256: Vec<String>,
    pub(crate) types: Vec<String>,
    pub(crate) process_info: bool,
    pub(crate) project: Option<(String, String)>,
    pub(crate) process_info_sent: Option<Value>,
}

/// Best effort: the hashes of the images that decode and the types sent, for any body.
pub(crate) fn describe(body: &[u8]) -> Described {
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
        return Described::default();
    };
    let image_sha256 = match object.get("images") {
        Some(Value::Array(images)) => images
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|text| BASE64.decode(text).ok())
            .map(|bytes| format!("{:x}", Sha256::digest(&bytes)))
            .collect(),
        _ => Vec::new(),
    };
    let types = match object.get("process_info") {
        Some(Value::Array(entries)) => entries
            .iter()
            .filter_map(|entry| entry.get("type").and_then(Value::as_str))
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    Described {
        image_sha256,
        types,
        process_info: matches!(object.get("process_info"), Some(Value::Array(_))),
        project: project_of(&object),
        process_info_sent: object.get("process_info").cloned(),
    }
}
