//! The vendor's checks on a submit that need no server state, in the vendor's order (steps 2
//! to 7 of beorg-api.md): a JSON object, the credentials, a project, 1 to 10 base64 images,
//! a `process_info` that matches them, and the size limit. What passes is a [`Submission`].

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::EmulatorConfig;
use crate::markers::Markers;
use crate::reply::{Reply, bad_request, message_for};

/// The vendor's "basic scenario" allows 1 to 10 documents in a request.
const MAX_IMAGES: usize = 10;

/// The 413 reply, naming the configured limit.
pub(crate) fn too_large(config: &EmulatorConfig) -> Reply {
    let message = format!(
        "file too large: do not send files whose sizes sum to more than {} bytes",
        config.max_total_bytes
    );
    Reply::error(StatusCode::PAYLOAD_TOO_LARGE, &message)
}

/// The project a submit names, and the field it came under: `project_id`, or `campaign_id`
/// as the OTPR seed calls it (`project_id` wins when both are there).
pub(crate) fn project_of(object: &Map<String, Value>) -> Option<(String, String)> {
    ["project_id", "campaign_id"].iter().find_map(|field| {
        object
            .get(*field)
            .and_then(Value::as_str)
            .filter(|value| !value.is_empty())
            .map(|value| ((*field).to_owned(), value.to_owned()))
    })
}

/// A submit that passed every check that needs no server state.
pub(crate) struct Submission {
    /// The field the project came under, and its value: a document belongs to its project.
    pub(crate) project: (String, String),
    pub(crate) images: Vec<ImageInfo>,
    /// `None` for the "Passport Auto" tariff (no `process_info` sent).
    pub(crate) process_info: Option<Vec<ProcessEntry>>,
    /// `process_info` as sent, for the request log.
    pub(crate) process_info_sent: Option<Value>,
}

/// What is kept of one decoded image.
pub(crate) struct ImageInfo {
    pub(crate) sha256: [u8; 32],
    pub(crate) len: u64,
    pub(crate) markers: Markers,
}

/// One `process_info` entry.
#[derive(Clone)]
pub(crate) struct ProcessEntry {
    pub(crate) key: Option<String>,
    pub(crate) doc_type: String,
    pub(crate) stages: Vec<String>,
    /// `options.relation.biometry_match`: the key of the image to match faces against.
    pub(crate) match_with: Option<String>,
}

/// The vendor's checks that need no server state, in the vendor's order (steps 2 to 7).
pub(crate) fn parse_submission(body: &[u8], config: &EmulatorConfig) -> Result<Submission, Reply> {
    let object = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => object,
        Ok(_) => return Err(bad_request("request body must be a JSON object")),
        Err(_) => return Err(bad_request("request body is not valid JSON")),
    };
    check_credentials(&object, config)?;
    let project = check_project(&object)?;
    let images = decode_images(&object)?;
    let process_info = parse_process_info(&object, images.len())?;
    check_total_size(&images, config)?;
    Ok(Submission {
        project,
        images,
        process_info,
        process_info_sent: object.get("process_info").cloned(),
    })
}

/// Step 3: `token` and `machine_uid` must be the configured ones.
fn check_credentials(object: &Map<String, Value>, config: &EmulatorConfig) -> Result<(), Reply> {
    let token_ok = object.get("token").and_then(Value::as_str) == Some(config.token.as_str());
    let machine_ok =
        object.get("machine_uid").and_then(Value::as_str) == Some(config.machine_uid.as_str());
    if token_ok && machine_ok {
        Ok(())
    } else {
        Err(Reply::error(
            StatusCode::UNAUTHORIZED,
            message_for(StatusCode::UNAUTHORIZED),
        ))
    }
}

/// Step 4: a non-empty `project_id`, or `campaign_id` as the OTPR seed calls it.
fn check_project(object: &Map<String, Value>) -> Result<(String, String), Reply> {
    project_of(object).ok_or_else(|| bad_request("project_id (or campaign_id) is missing"))
}

/// Step 5: 1 to 10 base64 strings, each decoded, hashed and scanned for markers.
fn decode_images(object: &Map<String, Value>) -> Result<Vec<ImageInfo>, Reply> {
    let Some(Value::Array(images)) = object.get("images") else {
        return Err(bad_request("images must be an array of base64 strings"));
    };
    if images.is_empty() || images.len() > MAX_IMAGES {
        return Err(bad_request(format!(
            "images must hold 1 to {MAX_IMAGES} files, got {}",
            images.len()
        )));
    }
    let texts: Vec<&str> = images.iter().filter_map(Value::as_str).collect();
    if texts.len() != images.len() {
        return Err(bad_request("images must be an array of base64 strings"));
    }
    texts
        .iter()
        .enumerate()
        .map(|(index, text)| decode_image(index, text))
        .collect()
}

/// Decodes one image; the bytes themselves are not kept.
fn decode_image(index: usize, text: &str) -> Result<ImageInfo, Reply> {
    let bytes = BASE64
        .decode(text)
        .map_err(|_| bad_request(format!("images[{index}] is not valid base64")))?;
    Ok(ImageInfo {
        sha256: Sha256::digest(&bytes).into(),
        len: bytes.len() as u64,
        markers: Markers::scan(&bytes),
    })
}

/// Step 6: `process_info`, when present, is one object with a string `type` per image.
/// `null` counts as absent.
fn parse_process_info(
    object: &Map<String, Value>,
    image_count: usize,
) -> Result<Option<Vec<ProcessEntry>>, Reply> {
    let entries = match object.get("process_info") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err(bad_request("process_info must be an array")),
    };
    if entries.len() != image_count {
        return Err(bad_request(format!(
            "process_info has {} entries for {image_count} images: order and length must match",
            entries.len()
        )));
    }
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| parse_process_entry(index, entry))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// One `process_info` entry; unknown or mistyped optional fields are ignored.
fn parse_process_entry(index: usize, entry: &Value) -> Result<ProcessEntry, Reply> {
    let Value::Object(entry) = entry else {
        return Err(bad_request(format!(
            "process_info[{index}] must be an object"
        )));
    };
    let Some(doc_type) = entry.get("type").and_then(Value::as_str) else {
        return Err(bad_request(format!(
            "process_info[{index}].type is missing"
        )));
    };
    let options = entry.get("options");
    let stages = options
        .and_then(|options| options.get("stages"))
        .and_then(Value::as_array)
        .map(|stages| {
            stages
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let match_with = options
        .and_then(|options| options.get("relation"))
        .and_then(|relation| relation.get("biometry_match"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(ProcessEntry {
        key: entry.get("key").and_then(Value::as_str).map(str::to_owned),
        doc_type: doc_type.to_owned(),
        stages,
        match_with,
    })
}

/// Step 7: the decoded sizes must not sum to more than the limit.
fn check_total_size(images: &[ImageInfo], config: &EmulatorConfig) -> Result<(), Reply> {
    let total = images
        .iter()
        .fold(0u64, |sum, image| sum.saturating_add(image.len));
    if total > config.max_total_bytes {
        Err(too_large(config))
    } else {
        Ok(())
    }
}
