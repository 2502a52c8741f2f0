//! The Beorg API client: request bodies on the wire, and every reply sorted into what the
//! pipeline does with it.
//!
//! Two endpoints: `POST /api/bescan/add_document` and `GET /api/document/result/{id}?token=`.
//! The token travels in the result URL, and `reqwest::Error` prints URLs, so every transport
//! error passes through [`describe_transport_error`] (`without_url`) and every message taken
//! from a response body has the token masked. Nothing in this module logs a URL.

use std::time::Duration;

use base64::Engine;
use reqwest::{StatusCode, Url};
use serde::Serialize;

use crate::config::{ApiConfig, ProjectField, Secret};

/// Lowest upload speed a submit's deadline allows for, on top of `request_timeout`
/// (about 1 Mbit/s): a 5 MB scan gets 50 s more.
const MIN_UPLOAD_BYTES_PER_SEC: u64 = 100_000;

/// Longest message kept from a response body.
const MAX_MESSAGE_CHARS: usize = 300;

/// `process_info[i]` of a submit.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessInfo {
    #[serde(rename = "type")]
    pub doc_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<ProcessOptions>,
}

/// `process_info[i].options`.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessOptions {
    pub stages: Vec<String>,
}

/// What one submit asks for, apart from its images: which project, under which field name,
/// and the `process_info` entries (one per image, in the images' order).
#[derive(Debug, Clone)]
pub struct Asked {
    /// The inbox's project (`U_RATE_2`).
    pub project_id: String,
    /// `project_id`, or `campaign_id` as the OTPR page spells the same field.
    pub project_field: ProjectField,
    /// `None` for the "Passport Auto" tariff: the request carries no `process_info` at all.
    pub process_info: Option<Vec<ProcessInfo>>,
}

/// Why a request did not give what was asked for, sorted by what the caller does next.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiFailure {
    /// This file will never be accepted as sent (400, 413; 400/404 on a result).
    Rejected { status: u16, message: String },
    /// 409: the API already has this content.
    Duplicate {
        document_id: Option<String>,
        message: String,
    },
    /// 401/402: the account, not the file. Pause; never fail a file for this.
    Account { status: u16, message: String },
    /// 5xx, a timeout, a connection error, an unreadable body: try again later.
    Transient {
        status: Option<u16>,
        message: String,
    },
}

impl ApiFailure {
    /// HTTP status, when the server answered.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            ApiFailure::Rejected { status, .. } | ApiFailure::Account { status, .. } => {
                Some(*status)
            }
            ApiFailure::Duplicate { .. } => Some(409),
            ApiFailure::Transient { status, .. } => *status,
        }
    }

    /// The server's (or the transport's) words, token masked.
    pub fn message(&self) -> &str {
        match self {
            ApiFailure::Rejected { message, .. }
            | ApiFailure::Duplicate { message, .. }
            | ApiFailure::Account { message, .. }
            | ApiFailure::Transient { message, .. } => message,
        }
    }
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.http_status() {
            Some(s) => write!(f, "HTTP {s}: {}", self.message()),
            None => f.write_str(self.message()),
        }
    }
}

/// What a result request gave.
#[derive(Debug, Clone)]
pub enum ResultReply {
    /// 200 with a JSON body, kept exactly as received.
    Ready(serde_json::Value),
    /// 200, but the body is not JSON (the vendor's own OTPR example is not): kept as text.
    Unparseable(String),
    /// 425: still processing.
    Pending,
}

/// The HTTP client for one account.
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base_url: String,
    /// `base_url` parsed once, here, so no request can meet an unparseable URL.
    base: Url,
    machine_uid: String,
    token: Secret,
    request_timeout: Duration,
}

impl ApiClient {
    /// Builds the client: rustls with the system's root store, no redirects (a redirect
    /// would replay the token to another host), connect and request deadlines from config.
    pub fn new(config: &ApiConfig) -> anyhow::Result<ApiClient> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("beorg-hotfolder/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build HTTP client: {}", e.without_url()))?;
        let base = Url::parse(&config.base_url)
            .ok()
            .filter(|u| !u.cannot_be_a_base())
            .ok_or_else(|| anyhow::anyhow!("api.base_url is not a usable http(s) URL"))?;
        // Only `status` loads a config without a token, and it builds no client.
        let token = config
            .token
            .as_ref()
            .map(|t| t.secret.clone())
            .ok_or_else(|| {
                anyhow::anyhow!("no API token: this config was loaded without one (api.token)")
            })?;
        Ok(ApiClient {
            http,
            base,
            base_url: config.base_url.clone(),
            machine_uid: config.machine_uid.clone(),
            token,
            request_timeout: config.request_timeout,
        })
    }

    /// Everything of a submit's JSON before the first image's opening quote:
    /// `{"<project field>":..,"token":..,"machine_uid":..[,"process_info":[..]],"images":[`.
    /// The images and the closing `]}` follow.
    pub fn submit_prefix(&self, asked: &Asked) -> Vec<u8> {
        let mut head = Vec::with_capacity(512);
        head.push(b'{');
        push_json(&mut head, asked.project_field.as_str());
        head.push(b':');
        push_json(&mut head, &asked.project_id);
        head.extend_from_slice(b",\"token\":");
        push_json(&mut head, self.token.expose());
        head.extend_from_slice(b",\"machine_uid\":");
        push_json(&mut head, &self.machine_uid);
        if let Some(info) = &asked.process_info {
            head.extend_from_slice(b",\"process_info\":");
            push_json(&mut head, info);
        }
        head.extend_from_slice(b",\"images\":[");
        head
    }

    /// The JSON body of a submit, written straight into one buffer: the file is base64-encoded
    /// in place rather than built as a string and copied again by a serializer.
    pub fn submit_body(&self, file: &[u8], asked: &Asked) -> Vec<u8> {
        let encoded_len = file.len().div_ceil(3) * 4;
        let mut body = self.submit_prefix(asked);
        body.reserve(encoded_len + 3);
        body.push(b'"');
        let start = body.len();
        body.resize(start + encoded_len, 0);
        let written = base64::engine::general_purpose::STANDARD
            .encode_slice(file, &mut body[start..])
            .expect("buffer sized for the encoding");
        body.truncate(start + written);
        body.extend_from_slice(b"\"]}");
        body
    }

    /// Sends a prepared submit body. `file_size` sizes the deadline for the upload.
    pub async fn submit(&self, body: Vec<u8>, file_size: u64) -> Result<String, ApiFailure> {
        let url = format!("{}/api/bescan/add_document", self.base_url);
        let timeout =
            self.request_timeout + Duration::from_secs(file_size / MIN_UPLOAD_BYTES_PER_SEC);
        let response = self
            .http
            .post(url)
            .header("Content-Type", "application/json")
            .timeout(timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport_failure(e))?;
        let status = response.status();
        let text = self.read_body(response).await?;
        if status == StatusCode::OK {
            return parse_document_id(&text).ok_or_else(|| ApiFailure::Transient {
                status: Some(200),
                message: format!("the submit answer has no document_id: {}", self.clip(&text)),
            });
        }
        Err(self.classify_submit_error(status, &text))
    }

    /// Asks for a document's result.
    pub async fn fetch_result(&self, document_id: &str) -> Result<ResultReply, ApiFailure> {
        let url = self.result_url(document_id);
        let response = self
            .http
            .get(url)
            .timeout(self.request_timeout)
            .send()
            .await
            .map_err(|e| self.transport_failure(e))?;
        let status = response.status();
        let text = self.read_body(response).await?;
        match status.as_u16() {
            200 => Ok(match serde_json::from_str(&text) {
                Ok(value) => ResultReply::Ready(value),
                Err(_) => ResultReply::Unparseable(self.mask(&text)),
            }),
            425 => Ok(ResultReply::Pending),
            400 | 404 => Err(ApiFailure::Rejected {
                status: status.as_u16(),
                message: self.server_message(&text, status),
            }),
            401 | 402 => Err(ApiFailure::Account {
                status: status.as_u16(),
                message: self.server_message(&text, status),
            }),
            other => Err(ApiFailure::Transient {
                status: Some(other),
                message: self.server_message(&text, status),
            }),
        }
    }

    /// `{base}/api/document/result/{id}?token=...`, with the id and token properly encoded.
    /// This string contains the token: it is handed to reqwest and nowhere else.
    fn result_url(&self, document_id: &str) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("checked in ApiClient::new: the URL can be a base")
            .pop_if_empty()
            .extend(["api", "document", "result", document_id]);
        url.query_pairs_mut()
            .append_pair("token", self.token.expose());
        url
    }

    fn classify_submit_error(&self, status: StatusCode, text: &str) -> ApiFailure {
        let message = self.server_message(text, status);
        match status.as_u16() {
            400 | 413 => ApiFailure::Rejected {
                status: status.as_u16(),
                message,
            },
            401 | 402 => ApiFailure::Account {
                status: status.as_u16(),
                message,
            },
            409 => ApiFailure::Duplicate {
                document_id: parse_document_id(text),
                message,
            },
            other => ApiFailure::Transient {
                status: Some(other),
                message,
            },
        }
    }

    async fn read_body(&self, response: reqwest::Response) -> Result<String, ApiFailure> {
        response.text().await.map_err(|e| self.transport_failure(e))
    }

    fn transport_failure(&self, e: reqwest::Error) -> ApiFailure {
        ApiFailure::Transient {
            status: None,
            message: self.mask(&describe_transport_error(e)),
        }
    }

    /// The API's own words from an error body (`message`, `detail` or `error`), or the body's
    /// start, or the status' reason phrase.
    fn server_message(&self, text: &str, status: StatusCode) -> String {
        let from_json = serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| {
                ["message", "detail", "error", "description"]
                    .iter()
                    .find_map(|k| v.get(k).and_then(|m| m.as_str()).map(str::to_string))
            });
        let message = match from_json {
            Some(m) => m,
            None if !text.trim().is_empty() => text.trim().to_string(),
            None => status
                .canonical_reason()
                .unwrap_or("no message")
                .to_string(),
        };
        self.clip(&message)
    }

    fn clip(&self, text: &str) -> String {
        let masked = self.mask(text);
        if masked.chars().count() > MAX_MESSAGE_CHARS {
            let mut s: String = masked.chars().take(MAX_MESSAGE_CHARS).collect();
            s.push('…');
            s
        } else {
            masked
        }
    }

    /// Defence in depth: whatever a server echoes back, the token never leaves this module.
    fn mask(&self, text: &str) -> String {
        let token = self.token.expose();
        if token.is_empty() {
            text.to_string()
        } else {
            text.replace(token, "***")
        }
    }
}

/// A transport error as text, without the URL (which may carry the token), with its causes.
pub fn describe_transport_error(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "connection broke while reading the answer"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn push_json<T: Serialize + ?Sized>(body: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(&mut *body, value).expect("strings and plain structs serialize");
}

/// `document_id` from a JSON body, as a string even when the server sends a number.
fn parse_document_id(text: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    match value.get("document_id")? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Secret, Token, TokenSource};

    fn client() -> ApiClient {
        let config = ApiConfig {
            base_url: "http://127.0.0.1:9".into(),
            project_id: "U_RATE_2".into(),
            machine_uid: "m-1".into(),
            token: Some(Token {
                secret: Secret::new("tok\"en"),
                source: TokenSource::Env,
            }),
            requests_per_second: 1.0,
            documents_per_minute: 10.0,
            request_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            account_retry: Duration::from_secs(1),
            submit_attempts: 1,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(1),
        };
        ApiClient::new(&config).unwrap()
    }

    #[test]
    fn submit_body_is_valid_json_with_the_file_in_base64() {
        let c = client();
        let info = ProcessInfo {
            doc_type: "PASSPORT".into(),
            key: Some("P1".into()),
            options: Some(ProcessOptions {
                stages: vec!["verification".into()],
            }),
        };
        let asked = Asked {
            project_id: "U_RATE_2".into(),
            project_field: ProjectField::ProjectId,
            process_info: Some(vec![info]),
        };
        for len in 0..5 {
            let file: Vec<u8> = (0..len as u8).collect();
            let body = c.submit_body(&file, &asked);
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let b64 = v["images"][0].as_str().unwrap();
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            assert_eq!(decoded, file);
            assert_eq!(v["token"], "tok\"en");
            assert_eq!(v["process_info"][0]["type"], "PASSPORT");
            assert_eq!(v["process_info"][0]["options"]["stages"][0], "verification");
            assert_eq!(v["project_id"], "U_RATE_2");
        }
    }

    /// What the body says about the project and the tariff: the project under the field
    /// the inbox names, and no `process_info` key at all for "Passport Auto".
    #[test]
    fn submit_body_names_the_project_field_and_omits_process_info_for_passport_auto() {
        let c = client();
        let asked = Asked {
            project_id: "U_RATE_3".into(),
            project_field: ProjectField::CampaignId,
            process_info: None,
        };
        let body = c.submit_body(b"scan", &asked);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let object = v.as_object().unwrap();
        assert_eq!(v["campaign_id"], "U_RATE_3");
        assert!(!object.contains_key("project_id"), "{v}");
        assert!(!object.contains_key("process_info"), "{v}");
        assert_eq!(v["images"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn result_url_encodes_id_and_token() {
        let url = client().result_url("s-1/2");
        assert_eq!(url.path(), "/api/document/result/s-1%2F2");
        assert_eq!(url.query(), Some("token=tok%22en"));
    }

    #[test]
    fn error_messages_mask_the_token() {
        let c = client();
        let m = c.server_message(
            r#"{"message":"bad token tok\"en"}"#,
            StatusCode::UNAUTHORIZED,
        );
        assert_eq!(m, "bad token ***");
    }

    /// The first layer on its own (without the masking): reqwest's error text carries the
    /// URL, query string included, unless `without_url` strips it.
    #[tokio::test]
    async fn transport_errors_do_not_carry_the_url() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/api/document/result/s-1?token=SECRET-T",
            closed.local_addr().unwrap()
        );
        drop(closed);
        let err = reqwest::get(&url).await.unwrap_err();
        assert!(format!("{err}").contains("SECRET-T"), "reqwest prints URLs");
        let text = describe_transport_error(err);
        assert!(!text.contains("SECRET-T"), "{text}");
        assert!(text.contains("could not connect"), "{text}");
    }

    #[test]
    fn document_id_may_be_a_number() {
        assert_eq!(
            parse_document_id(r#"{"document_id": 12}"#),
            Some("12".into())
        );
        assert_eq!(parse_document_id(r#"{"message": "x"}"#), None);
    }
}
