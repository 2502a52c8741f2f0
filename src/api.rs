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
    /// `{"biometry_match": "<key of the selfie>"}` for a document of a set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relation: Option<std::collections::BTreeMap<String, String>>,
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

    /// The body of a submit, streamed: `files` (opened and measured by the caller) are read
    /// from disk and base64-encoded chunk by chunk while the request is sent, so no file's
    /// bytes or base64 are ever whole in memory. `asked.process_info`, when given, has one
    /// entry per file, in the same order. Each call reads the files anew (a retry builds a
    /// new body).
    pub fn submit_body(&self, files: Vec<BodyFile>, asked: &Asked) -> SubmitBody {
        SubmitBody::new(self.submit_prefix(asked), files, b"]}")
    }

    /// Sends a submit body (its files are read as it goes out). The deadline grows with the
    /// size of the files. A file that changes size while it is read fails the request: a
    /// transport failure, and nothing truncated or invalid reaches the server.
    pub async fn submit(&self, body: SubmitBody) -> Result<String, ApiFailure> {
        let url = format!("{}/api/bescan/add_document", self.base_url);
        let timeout = self.request_timeout
            + Duration::from_secs(body.files_size() / MIN_UPLOAD_BYTES_PER_SEC);
        let response = self
            .http
            .post(url)
            .header("Content-Type", "application/json")
            .timeout(timeout)
            // An `http_body::Body` with an exact size hint: hyper sets Content-Length itself.
            .body(reqwest::Body::wrap(body))
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

/// Raw bytes read and encoded per step: a multiple of 3, so no `=` padding appears before a
/// file's last chunk (192 KiB in, 256 KiB of base64 out). Each chunk is handed from the
/// reading thread to the connection's task, a wake-up on each side: at 64 KiB out those
/// wake-ups took a fifth of the daemon's CPU sending 5 MB files. A body in flight holds
/// about 1 MB (the read buffer and the queued chunks).
const CHUNK_BYTES: usize = 3 * 64 * 1024;

/// Encoded chunks queued between the reader thread and the connection.
const CHUNKS_QUEUED: usize = 2;

/// One file of a submit body: an open handle and the size measured when it was opened.
/// It is read at explicit offsets, so the handle's own position does not matter.
pub struct BodyFile {
    pub file: std::fs::File,
    pub size: u64,
}

/// A submit's JSON, streamed: `head`, then each file as a base64 string read from disk in
/// chunks, then `]}`. Its length is known exactly before the first byte is read.
pub struct SubmitBody {
    /// Bytes still to be produced; `size_hint` is exact.
    remaining: u64,
    files_size: u64,
    state: BodyState,
}

enum BodyState {
    /// Nothing read yet: the files are read only once the connection asks for the body.
    Waiting {
        head: Vec<u8>,
        files: Vec<BodyFile>,
        tail: &'static [u8],
    },
    /// A blocking-pool task reads and encodes; its chunks (or its error) arrive here.
    Sending(tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>),
    Done,
}

impl SubmitBody {
    /// A body of bytes already in memory (a small request with no files, as `check --online`
    /// sends).
    pub fn from_json(bytes: Vec<u8>) -> SubmitBody {
        SubmitBody::new(bytes, Vec::new(), b"")
    }

    /// `head`, the files as base64 strings separated by commas, `tail`.
    fn new(head: Vec<u8>, files: Vec<BodyFile>, tail: &'static [u8]) -> SubmitBody {
        let images: u64 = files
            .iter()
            .map(|f| 2 + f.size.div_ceil(3) * 4) // the quotes and the base64
            .sum();
        let commas = files.len().saturating_sub(1) as u64;
        SubmitBody {
            remaining: head.len() as u64 + images + commas + tail.len() as u64,
            files_size: files.iter().map(|f| f.size).sum(),
            state: BodyState::Waiting { head, files, tail },
        }
    }

    /// The exact length of the body in bytes (its Content-Length), before it is sent.
    pub fn len(&self) -> u64 {
        self.remaining
    }

    /// Whether nothing is left to send (never true for a fresh body: it has JSON around the
    /// images).
    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }

    /// The sum of the files' sizes, as measured.
    pub fn files_size(&self) -> u64 {
        self.files_size
    }
}

impl http_body::Body for SubmitBody {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
        use std::task::Poll;
        let this = self.get_mut();
        if let BodyState::Waiting { .. } = this.state {
            let BodyState::Waiting { head, files, tail } =
                std::mem::replace(&mut this.state, BodyState::Done)
            else {
                unreachable!("matched just above")
            };
            let (tx, rx) = tokio::sync::mpsc::channel(CHUNKS_QUEUED);
            tokio::task::spawn_blocking(move || produce(head, files, tail, tx));
            this.state = BodyState::Sending(rx);
        }
        let BodyState::Sending(rx) = &mut this.state else {
            return Poll::Ready(None);
        };
        match rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                let len = chunk.len() as u64;
                if len > this.remaining {
                    this.state = BodyState::Done;
                    return Poll::Ready(Some(Err(changed_while_sent())));
                }
                this.remaining -= len;
                Poll::Ready(Some(Ok(http_body::Frame::data(chunk))))
            }
            Poll::Ready(Some(Err(e))) => {
                this.state = BodyState::Done;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.state = BodyState::Done;
                if this.remaining == 0 {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(changed_while_sent())))
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

fn changed_while_sent() -> std::io::Error {
    std::io::Error::other("a file changed size while it was being sent; the request was broken off")
}

/// The reader behind a [`SubmitBody`], on the blocking pool: the head, each file's base64 in
/// quotes, the tail. Stops when the connection drops the body (the send fails).
fn produce(
    head: Vec<u8>,
    files: Vec<BodyFile>,
    tail: &'static [u8],
    tx: tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
) {
    let send = |chunk: Vec<u8>| tx.blocking_send(Ok(bytes::Bytes::from(chunk))).is_ok();
    if !send(head) {
        return;
    }
    for (i, file) in files.iter().enumerate() {
        let open = if i == 0 {
            b"\"".to_vec()
        } else {
            b",\"".to_vec()
        };
        if !send(open) {
            return;
        }
        match encode_file(file, &send) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
        if !send(b"\"".to_vec()) {
            return;
        }
    }
    if !tail.is_empty() {
        send(tail.to_vec());
    }
}

/// Sends one file's base64, read at offsets in [`CHUNK_BYTES`] steps. Fails if the file is
/// not exactly `size` bytes long from start to end of the reading. `Ok(false)`: the
/// connection no longer wants the body.
fn encode_file(file: &BodyFile, send: &dyn Fn(Vec<u8>) -> bool) -> std::io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let mut raw = vec![0u8; CHUNK_BYTES];
    let mut offset = 0u64;
    while offset < file.size {
        let want = (file.size - offset).min(CHUNK_BYTES as u64) as usize;
        let mut got = 0;
        while got < want {
            match file.file.read_at(&mut raw[got..want], offset + got as u64) {
                Ok(0) => return Err(changed_while_sent()),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let mut encoded = vec![0u8; want.div_ceil(3) * 4];
        let written = base64::engine::general_purpose::STANDARD
            .encode_slice(&raw[..want], &mut encoded)
            .expect("buffer sized for the encoding");
        encoded.truncate(written);
        if !send(encoded) {
            return Ok(false);
        }
        offset += want as u64;
    }
    // Nothing past the measured end, and the same length by fstat: a file that grew is not
    // sent cut short.
    let mut probe = [0u8; 1];
    if file.file.read_at(&mut probe, file.size)? != 0 || file.file.metadata()?.len() != file.size {
        return Err(changed_while_sent());
    }
    Ok(true)
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

    fn passport() -> ProcessInfo {
        ProcessInfo {
            doc_type: "PASSPORT".into(),
            key: Some("P1".into()),
            options: Some(ProcessOptions {
                stages: vec!["verification".into()],
                relation: None,
            }),
        }
    }

    /// What a universal-tariff inbox of project `U_RATE_2` asks (`None`: no process_info).
    fn asked(process_info: Option<Vec<ProcessInfo>>) -> Asked {
        Asked {
            project_id: "U_RATE_2".into(),
            project_field: ProjectField::ProjectId,
            process_info,
        }
    }

    /// The body as built before it was streamed (one buffer, the file base64-encoded in place):
    /// the reference the streamed body must equal byte for byte.
    fn old_submit_body(c: &ApiClient, file: &[u8], info: Option<&ProcessInfo>) -> Vec<u8> {
        let encoded_len = file.len().div_ceil(3) * 4;
        let mut body = Vec::with_capacity(encoded_len + 512);
        body.extend_from_slice(b"{\"project_id\":");
        push_json(&mut body, "U_RATE_2");
        body.extend_from_slice(b",\"token\":");
        push_json(&mut body, c.token.expose());
        body.extend_from_slice(b",\"machine_uid\":");
        push_json(&mut body, &c.machine_uid);
        if let Some(info) = info {
            body.extend_from_slice(b",\"process_info\":[");
            push_json(&mut body, info);
            body.push(b']');
        }
        body.extend_from_slice(b",\"images\":[\"");
        let start = body.len();
        body.resize(start + encoded_len, 0);
        let written = base64::engine::general_purpose::STANDARD
            .encode_slice(file, &mut body[start..])
            .expect("buffer sized for the encoding");
        body.truncate(start + written);
        body.extend_from_slice(b"\"]}");
        body
    }

    /// Files with these contents, open and measured, in a temp folder kept alive by the caller.
    fn body_files(dir: &tempfile::TempDir, contents: &[&[u8]]) -> Vec<BodyFile> {
        contents
            .iter()
            .enumerate()
            .map(|(i, bytes)| {
                let path = dir.path().join(format!("f{i}"));
                std::fs::write(&path, bytes).unwrap();
                BodyFile {
                    file: std::fs::File::open(&path).unwrap(),
                    size: bytes.len() as u64,
                }
            })
            .collect()
    }

    /// Everything the body gives, as a connection would take it; the first error ends it.
    async fn collect(mut body: SubmitBody) -> std::io::Result<Vec<u8>> {
        use http_body::Body as _;
        let mut out = Vec::new();
        while let Some(frame) =
            std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
        {
            if let Ok(data) = frame?.into_data() {
                out.extend_from_slice(&data);
            }
        }
        Ok(out)
    }

    /// Sizes around the 3-byte groups of base64 and around the read chunks.
    fn edge_sizes() -> Vec<usize> {
        let mut sizes: Vec<usize> = (0..=7).collect();
        for around in [CHUNK_BYTES, 2 * CHUNK_BYTES] {
            sizes.extend(around - 2..=around + 2);
        }
        sizes
    }

    fn content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    /// The streamed body is byte for byte what the one-buffer builder made, and parses as
    /// JSON with the file in base64.
    #[tokio::test]
    async fn streamed_body_equals_the_old_one_and_parses() {
        let c = client();
        let info = passport();
        let dir = tempfile::tempdir().unwrap();
        for len in edge_sizes() {
            let file = content(len);
            let body = c.submit_body(body_files(&dir, &[&file]), &asked(Some(vec![info.clone()])));
            let streamed = collect(body).await.unwrap();
            assert_eq!(
                streamed,
                old_submit_body(&c, &file, Some(&info)),
                "{len} bytes"
            );
            let v: serde_json::Value = serde_json::from_slice(&streamed).unwrap();
            let b64 = v["images"][0].as_str().unwrap();
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            assert_eq!(decoded, file);
            assert_eq!(v["token"], "tok\"en");
            assert_eq!(v["process_info"][0]["type"], "PASSPORT");
            assert_eq!(v["process_info"][0]["options"]["stages"][0], "verification");
        }
        // No process_info: the key is left out, as before.
        let body = c.submit_body(body_files(&dir, &[b"abcd"]), &asked(None));
        assert_eq!(
            collect(body).await.unwrap(),
            old_submit_body(&c, b"abcd", None)
        );
    }

    /// What the body says about the project and the tariff: the project under the field
    /// the inbox names, and no `process_info` key at all for "Passport Auto".
    #[tokio::test]
    async fn submit_body_names_the_project_field_and_omits_process_info_for_passport_auto() {
        let c = client();
        let dir = tempfile::tempdir().unwrap();
        let asked = Asked {
            project_id: "U_RATE_3".into(),
            project_field: ProjectField::CampaignId,
            process_info: None,
        };
        let body = collect(c.submit_body(body_files(&dir, &[b"scan"]), &asked))
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let object = v.as_object().unwrap();
        assert_eq!(v["campaign_id"], "U_RATE_3");
        assert!(!object.contains_key("project_id"), "{v}");
        assert!(!object.contains_key("process_info"), "{v}");
        assert_eq!(v["images"].as_array().unwrap().len(), 1);
    }

    /// The length announced before the first byte (Content-Length) is exactly what is sent,
    /// for one file and for several, at every padding and chunk edge.
    #[tokio::test]
    async fn streamed_body_has_its_exact_length() {
        let c = client();
        let info = passport();
        let dir = tempfile::tempdir().unwrap();
        for len in edge_sizes() {
            let one = content(len);
            let other = content(len + 1);
            let body = c.submit_body(body_files(&dir, &[&one]), &asked(Some(vec![info.clone()])));
            let announced = body.len();
            assert_eq!(http_body::Body::size_hint(&body).exact(), Some(announced));
            assert_eq!(
                collect(body).await.unwrap().len() as u64,
                announced,
                "{len}"
            );
            let infos = asked(Some(vec![info.clone(), info.clone()]));
            let body = c.submit_body(body_files(&dir, &[&one, &other]), &infos);
            let announced = body.len();
            let streamed = collect(body).await.unwrap();
            assert_eq!(streamed.len() as u64, announced, "{len} and {}", len + 1);
            let v: serde_json::Value = serde_json::from_slice(&streamed).unwrap();
            let images: Vec<Vec<u8>> = v["images"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| {
                    base64::engine::general_purpose::STANDARD
                        .decode(i.as_str().unwrap())
                        .unwrap()
                })
                .collect();
            assert_eq!(images, [one, other]);
            assert_eq!(v["process_info"].as_array().unwrap().len(), 2);
        }
    }

    /// A file that grows or shrinks after it was measured breaks the body off with an error:
    /// never a body cut short or run long (which would be invalid JSON, or another file).
    #[tokio::test]
    async fn a_file_that_changes_size_while_sent_fails_the_body() {
        use std::io::Write;
        let c = client();
        let dir = tempfile::tempdir().unwrap();
        let len = 2 * CHUNK_BYTES + 5;
        let file = content(len);
        let mut files = body_files(&dir, &[&file]);
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("f0"))
            .unwrap()
            .write_all(b"more")
            .unwrap();
        files[0].size = len as u64;
        let grown = collect(c.submit_body(files, &asked(None))).await;
        assert!(grown.is_err(), "a grown file was sent as measured");
        let files = body_files(&dir, &[&file]);
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("f0"))
            .unwrap()
            .set_len(CHUNK_BYTES as u64)
            .unwrap();
        let shrunk = collect(c.submit_body(files, &asked(None))).await;
        assert!(shrunk.is_err(), "a shrunk file was sent");
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
