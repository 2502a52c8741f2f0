//! A faithful local stand-in for the Beorg recognition API described in
//! `shared/beorg-api.md`, quirks included; the tests and the demo run the daemon against it.
//!
//! This module owns everything on the server side of the wire: the two routes (submit and
//! result, plus the `/api/bescan/result` alias), the vendor's checks and status codes in the
//! vendor's order, the processing times from the vendor's table (scaled by
//! [`EmulatorConfig::time_scale`]), and fake but plausible result bodies for every document type
//! the seeds show, with their oddities: confidences as strings or numbers, SNILS confidence keys
//! cased unlike the data keys, FPRN answered as `PASSPORT_FPRN` with fields under `data.data`,
//! `broken: null` for OTPR, and an OTPR-style body that is not JSON at all.
//!
//! Tests steer it from outside ([`Emulator::set_no_money`], [`Emulator::fail_next`],
//! [`Emulator::delay_next`]) and from inside the files: a decoded image containing
//! `BEORG-EMU:broken`, `BEORG-EMU:invalid-json`, `BEORG-EMU:lost` or `BEORG-EMU:never` gets a
//! broken document, an unparsable body, a 404 or an endless 425. Results a person must check
//! are asked for the same way: `BEORG-EMU:verification=N` (passport verification status N, 0
//! to 7, with the seed's text), `BEORG-EMU:not-live` (the liveness check ran and failed),
//! `BEORG-EMU:other-face` (the face match ran and failed, on every document of the set that
//! has a match) and `BEORG-EMU:low-confidence` (the `LastName` confidence, or the first one,
//! is 0.42). Several markers may share an image.
//!
//! A submit names its project as `project_id` or, like the OTPR seed, `campaign_id`; a
//! document belongs to its project (the same picture sent to another project is not a
//! duplicate). Without `process_info` ("Passport Auto") the result is the flat shape.
//!
//! The token never reaches a log line or the request log ([`RequestRecord`] has no place for
//! it, and query strings are not recorded; it does keep the project field and value, and
//! whether `process_info` came).

use std::collections::{HashMap, VecDeque};
use std::future::{Future, poll_fn};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub mod samples;

/// The submit route.
const SUBMIT_PATH: &str = "/api/bescan/add_document";
/// The result route every seed example uses.
const RESULT_PATH: &str = "/api/document/result/{document_id}";
/// The result route the overview names once.
const RESULT_ALIAS_PATH: &str = "/api/bescan/result/{document_id}";
/// The vendor's "basic scenario" allows 1 to 10 documents in a request.
const MAX_IMAGES: usize = 10;
/// Slack on top of the base64-inflated size limit for the JSON around the images.
const BODY_SLACK_BYTES: u64 = 64 * 1024;
/// Once a body is known to be too large, read and discard at most this many bytes more, so a
/// client still sending gets to read the 413 instead of a reset connection.
const MAX_DRAIN_BYTES: u64 = 64 * 1024 * 1024;
/// `status_text` for a passport that passed every check. The seed spells it in Cyrillic
/// ("ок", U+043E U+043A): it looks like "ok" and is not; clients should read `status`.
const STATUS_TEXT_OK: &str = "\u{43e}\u{43a}";
/// Stand-in for a `metadata` value that is replaced by the seed's literal `{ ... }`.
const METADATA_ELLIPSIS_SENTINEL: &str = "__BEORG_EMU_METADATA_ELLIPSIS__";
/// What every marker inside an image starts with.
const MARKER_PREFIX: &[u8] = b"BEORG-EMU:";

/// Settings of one emulator instance.
#[derive(Clone)]
pub struct EmulatorConfig {
    /// The only token accepted on both endpoints.
    pub token: String,
    /// The only `machine_uid` accepted on submit.
    pub machine_uid: String,
    /// Factor on the vendor's processing times: 1.0 is real time, tests use e.g. 0.01.
    pub time_scale: f64,
    /// Every document's processing time in seconds, uniform in `(min, max)` (fixed by the
    /// image's hash) instead of the vendor's table; `time_scale` still applies. For
    /// benchmarks that need a known spread (issue 12: "processing 1-3 s").
    pub processing: Option<(f64, f64)>,
    /// Largest accepted sum of decoded image sizes (the vendor says 800 MB).
    pub max_total_bytes: u64,
    /// Whether a 409 body also carries the `document_id` of the earlier document (one public
    /// client saw this on an older endpoint).
    pub duplicate_reports_id: bool,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            token: "emulator-token".to_owned(),
            machine_uid: "emulator-machine".to_owned(),
            time_scale: 1.0,
            processing: None,
            max_total_bytes: 800 * 1024 * 1024,
            duplicate_reports_id: false,
        }
    }
}

impl std::fmt::Debug for EmulatorConfig {
    /// Prints everything but the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorConfig")
            .field("token", &"<redacted>")
            .field("machine_uid", &self.machine_uid)
            .field("time_scale", &self.time_scale)
            .field("processing", &self.processing)
            .field("max_total_bytes", &self.max_total_bytes)
            .field("duplicate_reports_id", &self.duplicate_reports_id)
            .finish()
    }
}

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

/// A handle on a running emulator; clones share the same server.
#[derive(Clone)]
pub struct Emulator {
    /// Everything the server and the handle share.
    shared: Arc<Shared>,
}

impl Emulator {
    /// Binds `addr` (port 0 allowed) and serves in a spawned tokio task.
    ///
    /// The server keeps running until [`Emulator::shutdown`], even when every handle is dropped.
    pub async fn start(config: EmulatorConfig, addr: SocketAddr) -> io::Result<Emulator> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let (stop_tx, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            config,
            addr: local,
            state: Mutex::new(ServerState::new()),
            listener: Mutex::new(Some(listener)),
            stop_tx,
            task: Mutex::new(None),
        });
        let app = router(Arc::clone(&shared));
        let server_listener = ServerListener {
            shared: Arc::clone(&shared),
        };
        let task = tokio::spawn(async move {
            if let Err(err) = axum::serve(server_listener, app).await {
                tracing::warn!(error = %err, "emulator server stopped");
            }
        });
        *lock(&shared.task) = Some(task);
        tracing::debug!(addr = %local, "emulator listening");
        Ok(Emulator { shared })
    }

    /// The address actually bound (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `http://HOST:PORT` to put in a client's config; an unspecified bind address
    /// (`0.0.0.0`, `::`) is reached over loopback.
    pub fn base_url(&self) -> String {
        let addr = self.shared.addr;
        let ip = match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, addr.port()))
    }

    /// While on, every submit that passes validation is answered 402 (no money on the account).
    pub fn set_no_money(&self, on: bool) {
        self.shared.state().no_money = on;
    }

    /// The next `count` requests to `endpoint` answer `status` (with a JSON message) before any
    /// other check; they are recorded like any request. A `status` that is not a valid HTTP
    /// status code is answered as 500.
    pub fn fail_next(&self, endpoint: Endpoint, status: u16, count: usize) {
        if count > 0 {
            let mut state = self.shared.state();
            state.faults[slot(endpoint)].push_back((status, count));
        }
    }

    /// The next `count` requests to `endpoint` sleep `delay` before answering, to provoke client
    /// timeouts. The request itself is handled on arrival: a delayed submit is accepted (and
    /// counts for 409) even if the client gives up waiting for the answer.
    pub fn delay_next(&self, endpoint: Endpoint, delay: Duration, count: usize) {
        if count > 0 {
            let mut state = self.shared.state();
            state.delays[slot(endpoint)].push_back((delay, count));
        }
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        let mut records = self.shared.state().records.clone();
        records.sort_by_key(|record| record.at);
        records
    }

    /// How many distinct image contents, each with what was asked for it, were accepted
    /// (submit answered 200).
    pub fn accepted_images(&self) -> usize {
        self.shared.state().seen.len()
    }

    /// Stops serving: the listener is closed at once (later connections are refused), open
    /// connections are cut, and the server task is aborted. Idempotent.
    pub fn shutdown(&self) {
        self.shared.stop_tx.send_replace(true);
        drop(lock(&self.shared.listener).take());
        if let Some(task) = lock(&self.shared.task).take() {
            task.abort();
        }
        tracing::debug!(addr = %self.shared.addr, "emulator shut down");
    }
}

/// Runs the emulator until Ctrl-C: the `beorg-hotfolder emulator --listen ADDR` subcommand
/// calls this.
pub async fn serve_forever(config: EmulatorConfig, addr: SocketAddr) -> anyhow::Result<()> {
    let emulator = Emulator::start(config, addr)
        .await
        .map_err(|err| anyhow::anyhow!("cannot listen on {addr}: {err}"))?;
    tracing::info!(
        base_url = %emulator.base_url(),
        "Beorg API emulator running; press Ctrl-C to stop"
    );
    let signal = tokio::signal::ctrl_c().await;
    emulator.shutdown();
    signal.map_err(|err| anyhow::anyhow!("cannot wait for Ctrl-C: {err}"))
}

// ---------------------------------------------------------------------------------------------
// Server state and plumbing
// ---------------------------------------------------------------------------------------------

/// What the handle, the listener and the handlers share.
struct Shared {
    /// Fixed at start.
    config: EmulatorConfig,
    /// The bound address.
    addr: SocketAddr,
    /// Everything that changes while serving; a std mutex, never held across an await.
    state: Mutex<ServerState>,
    /// The listening socket; taken (and so closed) by shutdown.
    listener: Mutex<Option<TcpListener>>,
    /// Flips to true on shutdown; every open connection watches it and dies.
    stop_tx: watch::Sender<bool>,
    /// The server task, aborted by shutdown.
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Shared {
    /// Locks the mutable state (a poisoned lock is still usable: the state stays consistent).
    fn state(&self) -> MutexGuard<'_, ServerState> {
        lock(&self.state)
    }

    /// Takes what the test harness asked for this request (a forced status, a delay).
    fn take_plan(&self, endpoint: Endpoint) -> Plan {
        let mut state = self.state();
        let index = slot(endpoint);
        Plan {
            fail: take_one(&mut state.faults[index]),
            delay: take_one(&mut state.delays[index]),
        }
    }

    /// Appends to the request log.
    fn record(&self, record: RequestRecord) {
        self.state().records.push(record);
    }
}

/// Locks a std mutex, recovering from poisoning.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Index of an endpoint in the per-endpoint queues.
fn slot(endpoint: Endpoint) -> usize {
    match endpoint {
        Endpoint::Submit => 0,
        Endpoint::Result => 1,
    }
}

/// Pops one use off a queue of `(value, remaining uses)`.
fn take_one<T: Copy>(queue: &mut VecDeque<(T, usize)>) -> Option<T> {
    let (value, remaining) = queue.front_mut()?;
    let value = *value;
    *remaining -= 1;
    if *remaining == 0 {
        queue.pop_front();
    }
    Some(value)
}

/// The mutable side of the server.
struct ServerState {
    /// Number part of the next `s-<n>` id.
    next_id: u64,
    /// 402 on submits while set.
    no_money: bool,
    /// Forced statuses per endpoint, consumed in order.
    faults: [VecDeque<(u16, usize)>; 2],
    /// Forced delays per endpoint, consumed in order.
    delays: [VecDeque<(Duration, usize)>; 2],
    /// Accepted document sets by id.
    documents: HashMap<String, DocumentSet>,
    /// Accepted image contents (sha256) with what was asked for each (project, type, key,
    /// stages), and the document that first carried them. The same picture asked for as
    /// another document type, or sent to another project, is a new request, not a duplicate.
    seen: HashMap<([u8; 32], String), String>,
    /// The request log.
    records: Vec<RequestRecord>,
}

impl ServerState {
    fn new() -> Self {
        Self {
            next_id: 10_000 + fastrand::u64(0..90_000),
            no_money: false,
            faults: [VecDeque::new(), VecDeque::new()],
            delays: [VecDeque::new(), VecDeque::new()],
            documents: HashMap::new(),
            seen: HashMap::new(),
            records: Vec::new(),
        }
    }
}

/// What the harness asked for one request.
struct Plan {
    /// Answer this status before any check.
    fail: Option<u16>,
    /// Sleep this long before answering.
    delay: Option<Duration>,
}

impl Plan {
    /// Sleeps the planned delay, if any.
    async fn sleep(&self) {
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
    }
}

/// The listening socket as axum sees it: shared with the handle so shutdown can close it.
struct ServerListener {
    shared: Arc<Shared>,
}

impl ServerListener {
    /// Polls the shared socket; after shutdown there is none and this never completes.
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        match lock(&self.shared.listener).as_ref() {
            Some(listener) => listener.poll_accept(cx),
            None => Poll::Pending,
        }
    }
}

impl axum::serve::Listener for ServerListener {
    type Io = ServerStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (ServerStream, SocketAddr) {
        loop {
            match poll_fn(|cx| self.poll_accept(cx)).await {
                Ok((stream, peer)) => {
                    let stream = ServerStream::new(stream, self.shared.stop_tx.subscribe());
                    return (stream, peer);
                }
                Err(err) => {
                    // Out of file descriptors and the like: wait a little and try again.
                    tracing::debug!(error = %err, "emulator accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.shared.addr)
    }
}

/// A future that completes when the emulator shuts down.
type StopFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// An accepted connection that fails every read and write once the emulator shuts down, so
/// keep-alive connections in a client's pool stop being served too.
struct ServerStream {
    inner: TcpStream,
    /// `None` once shutdown was seen.
    stop: Option<StopFuture>,
}

impl ServerStream {
    fn new(inner: TcpStream, mut stop_rx: watch::Receiver<bool>) -> Self {
        // Best effort: small JSON answers should not wait for Nagle.
        let _ = inner.set_nodelay(true);
        let stop: StopFuture = Box::pin(async move {
            // An error means the sender is gone, which only happens when the server is gone.
            let _ = stop_rx.wait_for(|stopped| *stopped).await;
        });
        Self {
            inner,
            stop: Some(stop),
        }
    }

    /// Whether shutdown happened; registers the task's waker for it otherwise.
    fn stopped(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(stop) = self.stop.as_mut() else {
            return true;
        };
        if stop.as_mut().poll(cx).is_ready() {
            self.stop = None;
            return true;
        }
        false
    }
}

/// The error every I/O call returns after shutdown.
fn shut_down_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "emulator shut down")
}

impl AsyncRead for ServerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.stopped(cx) {
            return Poll::Ready(Err(shut_down_error()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ServerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.stopped(cx) {
            return Poll::Ready(Err(shut_down_error()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.stopped(cx) {
            return Poll::Ready(Err(shut_down_error()));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

// ---------------------------------------------------------------------------------------------
// Routes and replies
// ---------------------------------------------------------------------------------------------

/// The API's routes; everything else is a JSON 404 (or 405 for a wrong method).
fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(SUBMIT_PATH, post(submit_handler))
        .route(RESULT_PATH, get(result_handler).post(result_handler))
        .route(RESULT_ALIAS_PATH, get(result_handler).post(result_handler))
        .fallback(|| async { Reply::error(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            Reply::error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
        // The submit handler enforces its own limit and answers 413 itself.
        .layer(DefaultBodyLimit::disable())
        .with_state(shared)
}

/// A status and a body that is JSON, or meant to look like it.
struct Reply {
    status: StatusCode,
    body: String,
}

impl Reply {
    /// A 200 with a JSON body.
    fn ok(value: &Value) -> Self {
        Self {
            status: StatusCode::OK,
            body: value.to_string(),
        }
    }

    /// An error with `{"message": ...}`.
    fn error(status: StatusCode, message: &str) -> Self {
        Self::error_with(status, message, None)
    }

    /// An error with `{"message": ...}` and, when given, the `document_id` it concerns.
    fn error_with(status: StatusCode, message: &str, document_id: Option<&str>) -> Self {
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
    fn forced(status: u16) -> Self {
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
fn message_for(status: StatusCode) -> &'static str {
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

// ---------------------------------------------------------------------------------------------
// Submit
// ---------------------------------------------------------------------------------------------

/// `POST /api/bescan/add_document`.
async fn submit_handler(State(shared): State<Arc<Shared>>, body: Body) -> Response {
    let at = Instant::now();
    let plan = shared.take_plan(Endpoint::Submit);
    let read = read_body(body, raw_body_limit(shared.config.max_total_bytes)).await;
    let worker = Arc::clone(&shared);
    let fail = plan.fail;
    // Parsing and decoding hundreds of megabytes must not stall the runtime; a panic there
    // is answered as a server error.
    let handled = tokio::task::spawn_blocking(move || handle_submit(&worker, read, fail, at)).await;
    let (reply, record) = handled.unwrap_or_else(|_| {
        let reply = Reply::error(StatusCode::INTERNAL_SERVER_ERROR, "server error");
        (reply, submit_record(at, 500, None, Described::default()))
    });
    tracing::debug!(status = record.status, document_id = ?record.document_id, "emulator submit");
    shared.record(record);
    plan.sleep().await;
    reply.into_response()
}

/// Raw body limit: the decoded limit inflated by base64, plus room for the JSON around it.
fn raw_body_limit(max_total_bytes: u64) -> u64 {
    let inflated = u128::from(max_total_bytes) * 4 / 3 + u128::from(BODY_SLACK_BYTES);
    u64::try_from(inflated).unwrap_or(u64::MAX)
}

/// Why a body could not be had.
enum BodyError {
    /// Over the raw limit.
    TooLarge,
    /// The client broke off or sent garbage framing.
    Broken,
}

/// Reads a body up to `limit` bytes. A larger body is read on (and dropped) for a while, so a
/// client still uploading gets to see the 413.
async fn read_body(mut body: Body, limit: u64) -> Result<Vec<u8>, BodyError> {
    let mut data = Vec::new();
    let mut total: u64 = 0;
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let Ok(frame) = frame else {
            return Err(if total > limit {
                BodyError::TooLarge
            } else {
                BodyError::Broken
            });
        };
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers
        };
        total = total.saturating_add(chunk.len() as u64);
        if total > limit {
            data = Vec::new();
            if total - limit > MAX_DRAIN_BYTES {
                break;
            }
            continue;
        }
        data.extend_from_slice(&chunk);
    }
    if total > limit {
        Err(BodyError::TooLarge)
    } else {
        Ok(data)
    }
}

/// Runs a submit through the forced failure, the vendor's checks and admission, in that order.
fn handle_submit(
    shared: &Shared,
    read: Result<Vec<u8>, BodyError>,
    fail: Option<u16>,
    at: Instant,
) -> (Reply, RequestRecord) {
    if let Some(status) = fail {
        let reply = Reply::forced(status);
        let described = read.as_deref().map(describe).unwrap_or_default();
        let record = submit_record(at, reply.status.as_u16(), None, described);
        return (reply, record);
    }
    let body = match read {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            let reply = too_large(&shared.config);
            return (reply, submit_record(at, 413, None, Described::default()));
        }
        Err(BodyError::Broken) => {
            let reply = Reply::error(StatusCode::BAD_REQUEST, "request body could not be read");
            return (reply, submit_record(at, 400, None, Described::default()));
        }
    };
    match parse_submission(&body, &shared.config) {
        Ok(submission) => admit(shared, submission, at),
        Err(reply) => {
            let record = submit_record(at, reply.status.as_u16(), None, describe(&body));
            (reply, record)
        }
    }
}

/// The 413 reply, naming the configured limit.
fn too_large(config: &EmulatorConfig) -> Reply {
    let message = format!(
        "file too large: do not send files whose sizes sum to more than {} bytes",
        config.max_total_bytes
    );
    Reply::error(StatusCode::PAYLOAD_TOO_LARGE, &message)
}

/// A request-log entry for a submit.
fn submit_record(
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
struct Described {
    image_sha256: Vec<String>,
    types: Vec<String>,
    process_info: bool,
    project: Option<(String, String)>,
    process_info_sent: Option<Value>,
}

/// Best effort: the hashes of the images that decode and the types sent, for any body.
fn describe(body: &[u8]) -> Described {
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

/// The project a submit names, and the field it came under: `project_id`, or `campaign_id`
/// as the OTPR seed calls it (`project_id` wins when both are there).
fn project_of(object: &Map<String, Value>) -> Option<(String, String)> {
    ["project_id", "campaign_id"].iter().find_map(|field| {
        object
            .get(*field)
            .and_then(Value::as_str)
            .filter(|value| !value.is_empty())
            .map(|value| ((*field).to_owned(), value.to_owned()))
    })
}

/// A submit that passed every check that needs no server state.
struct Submission {
    /// The field the project came under, and its value: a document belongs to its project.
    project: (String, String),
    images: Vec<ImageInfo>,
    /// `None` for the "Passport Auto" tariff (no `process_info` sent).
    process_info: Option<Vec<ProcessEntry>>,
    /// `process_info` as sent, for the request log.
    process_info_sent: Option<Value>,
}

/// What is kept of one decoded image.
struct ImageInfo {
    sha256: [u8; 32],
    len: u64,
    markers: Markers,
}

/// One `process_info` entry.
#[derive(Clone)]
struct ProcessEntry {
    key: Option<String>,
    doc_type: String,
    stages: Vec<String>,
    /// `options.relation.biometry_match`: the key of the image to match faces against.
    match_with: Option<String>,
}

/// Behaviour requested from inside an image.
#[derive(Clone, Copy, Default)]
struct Markers {
    broken: bool,
    invalid_json: bool,
    lost: bool,
    never: bool,
    /// `verification=N`: the passport verification status to answer with.
    verification: Option<u8>,
    /// `not-live`: the liveness check runs and says "not live".
    not_live: bool,
    /// `other-face`: the face match runs and says "another person".
    other_face: bool,
    /// `low-confidence`: one field is read with confidence 0.42.
    low_confidence: bool,
}

impl Markers {
    /// Finds every `BEORG-EMU:<name>` in `bytes`.
    fn scan(bytes: &[u8]) -> Self {
        let mut markers = Markers::default();
        let mut rest = bytes;
        while let Some(at) = find(rest, MARKER_PREFIX) {
            rest = &rest[at + MARKER_PREFIX.len()..];
            markers.broken |= rest.starts_with(b"broken");
            markers.invalid_json |= rest.starts_with(b"invalid-json");
            markers.lost |= rest.starts_with(b"lost");
            markers.never |= rest.starts_with(b"never");
            markers.not_live |= rest.starts_with(b"not-live");
            markers.other_face |= rest.starts_with(b"other-face");
            markers.low_confidence |= rest.starts_with(b"low-confidence");
            if let Some(code) = rest.strip_prefix(b"verification=".as_slice()) {
                markers.verification = code
                    .first()
                    .filter(|c| c.is_ascii_digit())
                    .map(|c| c - b'0');
            }
        }
        markers
    }

    /// Markers of several images together.
    fn union(self, other: Markers) -> Markers {
        Markers {
            broken: self.broken || other.broken,
            invalid_json: self.invalid_json || other.invalid_json,
            lost: self.lost || other.lost,
            never: self.never || other.never,
            verification: self.verification.or(other.verification),
            not_live: self.not_live || other.not_live,
            other_face: self.other_face || other.other_face,
            low_confidence: self.low_confidence || other.low_confidence,
        }
    }
}

/// Position of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// A 400 reply.
fn bad_request(message: impl AsRef<str>) -> Reply {
    Reply::error(StatusCode::BAD_REQUEST, message.as_ref())
}

/// The vendor's checks that need no server state, in the vendor's order (steps 2 to 7).
fn parse_submission(body: &[u8], config: &EmulatorConfig) -> Result<Submission, Reply> {
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

/// Steps 8 to 10: money, duplicates, then a new document id.
fn admit(shared: &Shared, submission: Submission, at: Instant) -> (Reply, RequestRecord) {
    let described = Described {
        image_sha256: submission
            .images
            .iter()
            .map(|i| format!("{:x}", sha2::digest::Output::<Sha256>::from(i.sha256)))
            .collect(),
        types: submission
            .process_info
            .iter()
            .flatten()
            .map(|entry| entry.doc_type.clone())
            .collect(),
        process_info: submission.process_info.is_some(),
        project: Some(submission.project.clone()),
        process_info_sent: submission.process_info_sent.clone(),
    };
    let mut state = shared.state();
    if state.no_money {
        let reply = Reply::error(
            StatusCode::PAYMENT_REQUIRED,
            message_for(StatusCode::PAYMENT_REQUIRED),
        );
        return (reply, submit_record(at, 402, None, described));
    }
    let asked: Vec<([u8; 32], String)> = submission
        .images
        .iter()
        .enumerate()
        .map(|(i, image)| {
            let entry = submission.process_info.as_ref().and_then(|p| p.get(i));
            // The project is part of what is asked: the same picture sent to another
            // project is a document of that project, not a duplicate.
            let asked = entry.map_or(String::new(), |e| {
                format!("{}|{:?}|{:?}", e.doc_type, e.key, e.stages)
            });
            let asked = format!("{}|{asked}", submission.project.1);
            (image.sha256, asked)
        })
        .collect();
    let earlier = asked.iter().find_map(|key| state.seen.get(key));
    if let Some(earlier) = earlier {
        let reported = shared
            .config
            .duplicate_reports_id
            .then_some(earlier.as_str());
        let reply = Reply::error_with(
            StatusCode::CONFLICT,
            message_for(StatusCode::CONFLICT),
            reported,
        );
        return (reply, submit_record(at, 409, None, described));
    }
    let id = format!("s-{}", state.next_id);
    state.next_id = state.next_id.wrapping_add(1);
    for key in asked {
        state.seen.insert(key, id.clone());
    }
    let set = DocumentSet::new(
        submission,
        at,
        shared.config.time_scale,
        shared.config.processing,
    );
    state.documents.insert(id.clone(), set);
    let reply = Reply::ok(&json!({ "document_id": id }));
    (reply, submit_record(at, 200, Some(id), described))
}

// ---------------------------------------------------------------------------------------------
// Processing times
// ---------------------------------------------------------------------------------------------

/// An accepted document set.
struct DocumentSet {
    /// When the result becomes available; `None` when the scaled time does not fit an
    /// `Instant` (the set then stays in processing).
    ready_at: Option<Instant>,
    /// One per image, in order.
    entries: Vec<EntryPlan>,
    /// "Passport Auto" tariff: no `process_info` was sent.
    auto: bool,
    /// Markers of all images together.
    markers: Markers,
}

/// One image of a set and what was asked for it.
struct EntryPlan {
    sha256: [u8; 32],
    markers: Markers,
    info: ProcessEntry,
}

impl DocumentSet {
    fn new(
        submission: Submission,
        at: Instant,
        time_scale: f64,
        processing: Option<(f64, f64)>,
    ) -> Self {
        let auto = submission.process_info.is_none();
        let infos = submission.process_info.unwrap_or_else(|| {
            let passport = ProcessEntry {
                key: None,
                doc_type: "PASSPORT".to_owned(),
                stages: Vec::new(),
                match_with: None,
            };
            vec![passport; submission.images.len()]
        });
        let entries: Vec<EntryPlan> = submission
            .images
            .iter()
            .zip(infos)
            .map(|(image, info)| EntryPlan {
                sha256: image.sha256,
                markers: image.markers,
                info,
            })
            .collect();
        let markers = entries
            .iter()
            .fold(Markers::default(), |all, entry| all.union(entry.markers));
        let seconds = entries
            .iter()
            .map(|entry| processing_seconds(entry, processing))
            .fold(0.0_f64, f64::max);
        let ready_at = scaled(seconds, time_scale).and_then(|delay| at.checked_add(delay));
        Self {
            ready_at,
            entries,
            auto,
            markers,
        }
    }
}

/// The vendor's processing-time range in seconds for a type, automatic or with verifiers.
fn time_range(doc_type: &str, verified: bool) -> (f64, f64) {
    match (doc_type, verified) {
        (_, true) => (30.0, 120.0),
        ("PASSPORT_REG", false) => (6.0, 15.0),
        ("SELFIE", false) => (2.0, 5.0),
        _ => (3.0, 10.0),
    }
}

/// Unscaled processing time of one entry: uniform in its range, fixed by the image's hash.
fn processing_seconds(entry: &EntryPlan, processing: Option<(f64, f64)>) -> f64 {
    let verified = entry
        .info
        .stages
        .iter()
        .any(|stage| stage == "verification");
    let (min, max) = processing.unwrap_or_else(|| time_range(&entry.info.doc_type, verified));
    let mut head = [0u8; 8];
    head.copy_from_slice(&entry.sha256[..8]);
    let fraction = u64::from_be_bytes(head) as f64 / u64::MAX as f64;
    min + fraction * (max - min)
}

/// `seconds * time_scale` as a duration; nonsense scales count as 0, overflow as `None`.
fn scaled(seconds: f64, time_scale: f64) -> Option<Duration> {
    let value = seconds * time_scale;
    if value.is_nan() || value <= 0.0 {
        return Some(Duration::ZERO);
    }
    Duration::try_from_secs_f64(value).ok()
}

// ---------------------------------------------------------------------------------------------
// Result
// ---------------------------------------------------------------------------------------------

/// `GET`/`POST /api/document/result/{document_id}?token=...` and its alias.
async fn result_handler(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let at = Instant::now();
    let plan = shared.take_plan(Endpoint::Result);
    let document_id = path.ok().map(|Path(id)| id);
    let token = query.map(|Query(mut params)| params.remove("token"));
    let reply = match plan.fail {
        Some(status) => Reply::forced(status),
        None => answer_result(&shared, document_id.as_deref(), token),
    };
    tracing::debug!(status = reply.status.as_u16(), document_id = ?document_id, "emulator result");
    shared.record(RequestRecord {
        at,
        endpoint: Endpoint::Result,
        status: reply.status.as_u16(),
        document_id,
        image_sha256: Vec::new(),
        types: Vec::new(),
        process_info: false,
        project: None,
        process_info_sent: None,
    });
    plan.sleep().await;
    reply.into_response()
}

/// The result checks in order: query, token, existence, readiness.
fn answer_result(
    shared: &Shared,
    document_id: Option<&str>,
    token: Result<Option<String>, QueryRejection>,
) -> Reply {
    let Ok(token) = token else {
        return bad_request("malformed query string");
    };
    if token.as_deref() != Some(shared.config.token.as_str()) {
        return Reply::error(
            StatusCode::UNAUTHORIZED,
            "authorization error: token missing or wrong",
        );
    }
    let Some(document_id) = document_id else {
        return bad_request("malformed document id");
    };
    let state = shared.state();
    let Some(set) = state.documents.get(document_id) else {
        return Reply::error(StatusCode::NOT_FOUND, message_for(StatusCode::NOT_FOUND));
    };
    if set.markers.lost {
        return Reply::error(StatusCode::NOT_FOUND, message_for(StatusCode::NOT_FOUND));
    }
    let ready = set.ready_at.is_some_and(|ready| Instant::now() >= ready);
    if set.markers.never || !ready {
        return Reply::error(StatusCode::TOO_EARLY, message_for(StatusCode::TOO_EARLY));
    }
    Reply {
        status: StatusCode::OK,
        body: render_result(document_id, set),
    }
}

/// The result body for a ready set (deterministic: the same every time it is asked for).
fn render_result(document_id: &str, set: &DocumentSet) -> String {
    let value = if set.auto {
        auto_body(document_id, set)
    } else {
        universal_body(document_id, set)
    };
    let Ok(text) = serde_json::to_string_pretty(&value) else {
        return value.to_string();
    };
    // The OTPR seed's body literally says `"metadata": { ... }`.
    text.replace(&format!("\"{METADATA_ELLIPSIS_SENTINEL}\""), "{ ... }")
}

/// The "Passport Auto" shape: one passport, fields at the top level.
fn auto_body(document_id: &str, set: &DocumentSet) -> Value {
    let seed = set
        .entries
        .first()
        .map(|entry| entry.sha256)
        .unwrap_or([0; 32]);
    let mut rng = rng_for(&seed, 0);
    let document = fake::passport(&mut rng, false);
    let mut body = Map::new();
    body.insert("document_id".into(), Value::from(document_id));
    body.insert("data".into(), Value::Object(document.data));
    let mut confidences = document.confidences;
    if set.markers.low_confidence {
        lower_one_confidence(&mut confidences);
    }
    body.insert("metadata".into(), json!({ "confidences": confidences }));
    body.insert(
        "verifications".into(),
        verifications(set.markers.broken, set.markers.verification),
    );
    if set.markers.broken {
        blank_data(&mut body);
        insert_broken(
            &mut body,
            Some(true),
            &broken_reasons(set.markers.broken, false),
        );
    }
    if set.markers.invalid_json {
        body.insert("metadata".into(), Value::from(METADATA_ELLIPSIS_SENTINEL));
    }
    Value::Object(body)
}

/// The "Universal" shape: one entry in `documents` per `process_info` entry.
fn universal_body(document_id: &str, set: &DocumentSet) -> Value {
    let keys: Vec<&str> = set
        .entries
        .iter()
        .map(|entry| entry.info.key.as_deref().unwrap_or(&entry.info.doc_type))
        .collect();
    let documents: Vec<Value> = set
        .entries
        .iter()
        .enumerate()
        .map(|(index, entry)| render_document(entry, index, &keys, set.markers))
        .collect();
    json!({ "document_id": document_id, "documents": documents })
}

/// One entry of `documents`, in the seed's field order. `set_markers` are those of every image
/// of the set: a face match compares two images, so `other-face` on either fails it.
fn render_document(entry: &EntryPlan, index: usize, keys: &[&str], set_markers: Markers) -> Value {
    let mut rng = rng_for(&entry.sha256, index as u64);
    let info = &entry.info;
    let (key, doc_type) = reported_key_and_type(info);
    let match_failed = face_match_unpaired(info, keys);
    let broken = entry.markers.broken || match_failed;
    let mut document = Map::new();
    document.insert("key".into(), Value::from(key));
    document.insert("type".into(), Value::from(doc_type));
    let mut content = fake::content_for(&info.doc_type, &mut rng);
    if entry.markers.low_confidence
        && let Some(confidences) = content.metadata.get_mut("confidences")
    {
        lower_one_confidence(confidences);
    }
    document.insert("data".into(), content.data);
    document.insert("metadata".into(), content.metadata);
    if content.verified {
        let verification = verifications(broken, entry.markers.verification);
        document.insert("verifications".into(), verification);
    }
    let outcome = BiometricsOutcome {
        unpaired: match_failed,
        not_live: entry.markers.not_live,
        other_face: set_markers.other_face,
    };
    if let Some(biometrics) = biometrics(info, &mut rng, outcome) {
        document.insert("biometrics".into(), biometrics);
    }
    if broken {
        blank_data(&mut document);
        let reasons = broken_reasons(entry.markers.broken, match_failed);
        insert_broken(&mut document, Some(true), &reasons);
    } else {
        match content.broken_flag {
            fake::BrokenFlag::Absent => {}
            fake::BrokenFlag::Null => insert_broken(&mut document, None, &[]),
            fake::BrokenFlag::False => insert_broken(&mut document, Some(false), &[]),
        }
    }
    if entry.markers.invalid_json {
        document.insert("metadata".into(), Value::from(METADATA_ELLIPSIS_SENTINEL));
    }
    Value::Object(document)
}

/// The key and type the server answers with: FPRN comes back as `PASSPORT_FPRN`, its key with
/// the `FPRN` prefix replaced the same way.
fn reported_key_and_type(info: &ProcessEntry) -> (String, String) {
    if info.doc_type != "FPRN" {
        let key = info.key.clone().unwrap_or_else(|| info.doc_type.clone());
        return (key, info.doc_type.clone());
    }
    let key = match info.key.as_deref() {
        None => "PASSPORT_FPRN".to_owned(),
        Some(key) => match key.strip_prefix("FPRN") {
            Some(rest) => format!("PASSPORT_FPRN{rest}"),
            None => key.to_owned(),
        },
    };
    (key, "PASSPORT_FPRN".to_owned())
}

/// Whether an entry asks for a face match that has nothing to match against: the relation
/// names no other image of the set, or there is only one image.
fn face_match_unpaired(info: &ProcessEntry, keys: &[&str]) -> bool {
    let wants_match = info.match_with.is_some() || has_stage(info, "biometry_match");
    if !wants_match {
        return false;
    }
    let own_key = info.key.as_deref().unwrap_or(&info.doc_type);
    match info.match_with.as_deref() {
        Some(other) => other == own_key || !keys.contains(&other),
        None => keys.len() < 2,
    }
}

/// Whether `options.stages` lists `stage`.
fn has_stage(info: &ProcessEntry, stage: &str) -> bool {
    info.stages.iter().any(|s| s == stage)
}

/// How the biometric checks of one document come out.
#[derive(Clone, Copy)]
struct BiometricsOutcome {
    /// The match has nothing to compare against (the set is broken).
    unpaired: bool,
    /// The liveness check runs and fails.
    not_live: bool,
    /// The face match runs and fails.
    other_face: bool,
}

/// The biometrics block: both checks for a selfie, the requested ones for a document.
fn biometrics(
    info: &ProcessEntry,
    rng: &mut fastrand::Rng,
    outcome: BiometricsOutcome,
) -> Option<Value> {
    let selfie = info.doc_type == "SELFIE";
    let liveness = selfie || has_stage(info, "biometry_liveness");
    let matching = selfie || info.match_with.is_some() || has_stage(info, "biometry_match");
    if !liveness && !matching {
        return None;
    }
    let mut block = Map::new();
    if liveness {
        block.insert("liveness".into(), fake::liveness(rng, outcome.not_live));
    }
    if matching {
        let faces = fake::match_faces(rng, outcome.unpaired, outcome.other_face);
        block.insert("match_faces".into(), faces);
    }
    Some(Value::Object(block))
}

/// The passport verification block: status 1 for a broken document, else the status a
/// `verification=N` marker asks for, else 0.
fn verifications(broken: bool, asked: Option<u8>) -> Value {
    if broken {
        return json!({
            "status": 1,
            "status_text": VERIFICATION_TEXTS[1],
            "bad_fields": ["Series", "Number", "LastName", "FirstName", "BirthDate"],
        });
    }
    match asked.filter(|code| (1..=7).contains(code)) {
        None => json!({ "status": 0, "status_text": STATUS_TEXT_OK, "bad_fields": [] }),
        Some(code) => json!({
            "status": code,
            "status_text": VERIFICATION_TEXTS[usize::from(code)],
            "bad_fields": verification_bad_fields(code),
        }),
    }
}

/// The seed's text for each passport verification status, by code.
const VERIFICATION_TEXTS: [&str; 8] = [
    STATUS_TEXT_OK,
    "одно или несколько обязательных полей отсутствует или имеет неверный формат",
    "МЧЗ не согласуется со значением полей",
    "серия паспорта не согласуется с кодом подразделения",
    "место выдачи не согласуется с кодом подразделения",
    "паспорт выдан до 14-ти лет",
    "паспорт выдан до 1 октября 1997 года",
    "паспорт просрочен",
];

/// The fields a verification status (1 to 7) points at.
fn verification_bad_fields(code: u8) -> Vec<&'static str> {
    match code {
        1 => vec!["Series", "Number"],
        2 => vec!["MRZ1", "MRZ2"],
        3 => vec!["Series", "IssueId"],
        4 => vec!["IssuedBy", "IssueId"],
        5 | 7 => vec!["IssueDate", "BirthDate"],
        _ => vec!["IssueDate"],
    }
}

/// Sets the `LastName` confidence (any casing), or the first one, to 0.42, keeping whether it
/// was a string or a number.
fn lower_one_confidence(confidences: &mut Value) {
    let Value::Object(map) = confidences else {
        return;
    };
    let name = map
        .keys()
        .find(|k| k.eq_ignore_ascii_case("LastName"))
        .or_else(|| map.keys().next())
        .cloned();
    if let Some(value) = name.and_then(|name| map.get_mut(&name)) {
        *value = if value.is_string() {
            Value::from("0.4200")
        } else {
            Value::from(0.42)
        };
    }
}

/// English and Russian reasons for a broken document.
fn broken_reasons(unreadable: bool, match_failed: bool) -> Vec<(&'static str, &'static str)> {
    let mut reasons = Vec::new();
    if unreadable {
        reasons.push(("Document is not readable", "Документ не читается"));
    }
    if match_failed {
        reasons.push((
            "Face match needs both a document and a photo",
            "Для сверки лиц нужны и документ, и фотография",
        ));
    }
    reasons
}

/// Adds `broken`, `broken_reasons` and `broken_reasons_ru`.
fn insert_broken(object: &mut Map<String, Value>, broken: Option<bool>, reasons: &[(&str, &str)]) {
    let english: Vec<&str> = reasons.iter().map(|(en, _)| *en).collect();
    let russian: Vec<&str> = reasons.iter().map(|(_, ru)| *ru).collect();
    object.insert("broken".into(), broken.map_or(Value::Null, Value::Bool));
    object.insert("broken_reasons".into(), json!(english));
    object.insert("broken_reasons_ru".into(), json!(russian));
}

/// Empties the recognised fields of a broken document (nested `data.data` included) and drops
/// its confidences.
fn blank_data(object: &mut Map<String, Value>) {
    if let Some(data) = object.get_mut("data") {
        blank(data);
    }
    if let Some(Value::Object(metadata)) = object.get_mut("metadata") {
        metadata.insert("confidences".into(), Value::Null);
    }
}

/// Strings become `""`, booleans `false`, numbers `null`; objects recursively.
fn blank(value: &mut Value) {
    match value {
        Value::String(text) => text.clear(),
        Value::Bool(flag) => *flag = false,
        Value::Number(_) => *value = Value::Null,
        Value::Object(fields) => fields.values_mut().for_each(blank),
        Value::Array(items) => items.clear(),
        Value::Null => {}
    }
}

/// A generator seeded from an image's hash and its position in the set.
fn rng_for(sha256: &[u8; 32], index: u64) -> fastrand::Rng {
    let mut word = [0u8; 8];
    word.copy_from_slice(&sha256[8..16]);
    fastrand::Rng::with_seed(u64::from_le_bytes(word) ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

// ---------------------------------------------------------------------------------------------
// Fake recognised data
// ---------------------------------------------------------------------------------------------

/// Plausible Russian-looking documents, deterministic for a given generator.
mod fake {
    use serde_json::{Map, Value, json};

    /// Data and metadata of one document, plus how its type reports `broken` when fine.
    pub(super) struct Content {
        pub(super) data: Value,
        pub(super) metadata: Value,
        /// Whether the type carries the passport `verifications` block.
        pub(super) verified: bool,
        /// How the type reports `broken` when the document is fine.
        pub(super) broken_flag: BrokenFlag,
    }

    /// How a fine document of a type carries the `broken` fields.
    #[derive(Clone, Copy)]
    pub(super) enum BrokenFlag {
        /// Not at all (the FPRN seed shows none).
        Absent,
        /// `broken: null` (the OTPR seed).
        Null,
        /// `broken: false`.
        False,
    }

    /// A passport's fields and confidences.
    pub(super) struct Passport {
        pub(super) data: Map<String, Value>,
        pub(super) confidences: Value,
    }

    /// The fake content for a type; an unknown type gets an empty data object.
    pub(super) fn content_for(doc_type: &str, rng: &mut fastrand::Rng) -> Content {
        match doc_type {
            "PASSPORT" => passport_content(rng, false),
            "PASSPORT_REG" => passport_content(rng, true),
            "SELFIE" => plain(json!({}), Value::Null, BrokenFlag::False),
            "FPRN" => fprn(rng),
            "VNG" => vng(rng),
            "SNILS" => snils(rng),
            "OTPR" => otpr(rng),
            _ => plain(json!({}), json!({}), BrokenFlag::False),
        }
    }

    /// Content with the given data and confidences and no verification block.
    fn plain(data: Value, confidences: Value, broken_flag: BrokenFlag) -> Content {
        Content {
            data,
            metadata: json!({ "confidences": confidences, "verifications": {} }),
            verified: false,
            broken_flag,
        }
    }

    fn passport_content(rng: &mut fastrand::Rng, with_address: bool) -> Content {
        let passport = passport(rng, with_address);
        Content {
            data: Value::Object(passport.data),
            metadata: json!({ "confidences": passport.confidences }),
            verified: true,
            broken_flag: BrokenFlag::False,
        }
    }

    /// A person as printed in Russian documents.
    struct Person {
        last: String,
        first: &'static str,
        middle: &'static str,
        male: bool,
        birth: Date,
        region: &'static Region,
    }

    /// A region: where people are born, registered and issued documents.
    struct Region {
        birth_place: &'static str,
        city_latin: &'static str,
        issued_by: &'static str,
        office_code: &'static str,
        okato: &'static str,
        streets: [&'static str; 3],
    }

    const REGIONS: [Region; 5] = [
        Region {
            birth_place: "ГОР. МОСКВА",
            city_latin: "MOSKVA",
            issued_by: "ГУ МВД РОССИИ ПО Г. МОСКВЕ",
            office_code: "770",
            okato: "45",
            streets: ["УЛ. ТВЕРСКАЯ", "ПР-Т МИРА", "УЛ. ПРОФСОЮЗНАЯ"],
        },
        Region {
            birth_place: "ГОР. САНКТ-ПЕТЕРБУРГ",
            city_latin: "SANKT-PETERBURG",
            issued_by: "ГУ МВД РОССИИ ПО Г. САНКТ-ПЕТЕРБУРГУ И ЛЕНИНГРАДСКОЙ ОБЛ.",
            office_code: "780",
            okato: "40",
            streets: ["НЕВСКИЙ ПР-Т", "УЛ. САДОВАЯ", "ЛИТЕЙНЫЙ ПР-Т"],
        },
        Region {
            birth_place: "ГОР. НОВОСИБИРСК",
            city_latin: "NOVOSIBIRSK",
            issued_by: "ГУ МВД РОССИИ ПО НОВОСИБИРСКОЙ ОБЛ.",
            office_code: "540",
            okato: "50",
            streets: ["КРАСНЫЙ ПР-Т", "УЛ. ЛЕНИНА", "УЛ. ГОГОЛЯ"],
        },
        Region {
            birth_place: "ГОР. ЕКАТЕРИНБУРГ",
            city_latin: "EKATERINBURG",
            issued_by: "ГУ МВД РОССИИ ПО СВЕРДЛОВСКОЙ ОБЛ.",
            office_code: "660",
            okato: "65",
            streets: ["УЛ. МАЛЫШЕВА", "ПР-Т ЛЕНИНА", "УЛ. ВАЙНЕРА"],
        },
        Region {
            birth_place: "ГОР. КАЗАНЬ",
            city_latin: "KAZAN",
            issued_by: "МВД ПО РЕСПУБЛИКЕ ТАТАРСТАН",
            office_code: "160",
            okato: "92",
            streets: ["УЛ. БАУМАНА", "УЛ. ПУШКИНА", "ПР-Т ПОБЕДЫ"],
        },
    ];

    /// Surnames in the masculine form; the feminine adds "а".
    const SURNAMES: [&str; 12] = [
        "ИВАНОВ",
        "СМИРНОВ",
        "КУЗНЕЦОВ",
        "ПОПОВ",
        "СОКОЛОВ",
        "ЛЕБЕДЕВ",
        "КОЗЛОВ",
        "НОВИКОВ",
        "МОРОЗОВ",
        "ПЕТРОВ",
        "ВОЛКОВ",
        "ВАСИЛЬЕВ",
    ];
    const MALE_NAMES: [&str; 8] = [
        "ИВАН",
        "ПЕТР",
        "АЛЕКСЕЙ",
        "СЕРГЕЙ",
        "ДМИТРИЙ",
        "АНДРЕЙ",
        "МИХАИЛ",
        "НИКОЛАЙ",
    ];
    const FEMALE_NAMES: [&str; 8] = [
        "АННА",
        "МАРИЯ",
        "ЕЛЕНА",
        "ОЛЬГА",
        "НАТАЛЬЯ",
        "ТАТЬЯНА",
        "ИРИНА",
        "СВЕТЛАНА",
    ];
    /// Patronymics: (masculine, feminine).
    const PATRONYMICS: [(&str, &str); 8] = [
        ("ИВАНОВИЧ", "ИВАНОВНА"),
        ("ПЕТРОВИЧ", "ПЕТРОВНА"),
        ("АЛЕКСЕЕВИЧ", "АЛЕКСЕЕВНА"),
        ("СЕРГЕЕВИЧ", "СЕРГЕЕВНА"),
        ("ДМИТРИЕВИЧ", "ДМИТРИЕВНА"),
        ("АНДРЕЕВИЧ", "АНДРЕЕВНА"),
        ("МИХАЙЛОВИЧ", "МИХАЙЛОВНА"),
        ("НИКОЛАЕВИЧ", "НИКОЛАЕВНА"),
    ];
    const CITIZENSHIPS: [&str; 4] = ["УЗБЕКИСТАН", "ТАДЖИКИСТАН", "КАЗАХСТАН", "АРМЕНИЯ"];

    /// A calendar date (days 1 to 28, so every month has them).
    #[derive(Clone, Copy)]
    struct Date {
        day: u8,
        month: u8,
        year: u16,
    }

    impl Date {
        fn random(rng: &mut fastrand::Rng, years: std::ops::RangeInclusive<u16>) -> Self {
            Date {
                day: rng.u8(1..=28),
                month: rng.u8(1..=12),
                year: rng.u16(years),
            }
        }

        /// The same day `years` later.
        fn plus_years(self, years: u16) -> Self {
            Date {
                year: self.year + years,
                ..self
            }
        }

        /// `dd.mm.yyyy`.
        fn text(self) -> String {
            format!("{:02}.{:02}.{:04}", self.day, self.month, self.year)
        }
    }

    fn pick<T: Copy>(rng: &mut fastrand::Rng, items: &[T]) -> T {
        items[rng.usize(..items.len())]
    }

    fn person(rng: &mut fastrand::Rng) -> Person {
        let male = rng.bool();
        let surname = pick(rng, &SURNAMES);
        let (middle_m, middle_f) = pick(rng, &PATRONYMICS);
        Person {
            last: if male {
                surname.to_owned()
            } else {
                format!("{surname}А")
            },
            first: pick(rng, if male { &MALE_NAMES } else { &FEMALE_NAMES }),
            middle: if male { middle_m } else { middle_f },
            male,
            birth: Date::random(rng, 1960..=2003),
            region: &REGIONS[rng.usize(..REGIONS.len())],
        }
    }

    /// A confidence as the seeds print them, as a string with four decimals.
    fn conf_text(rng: &mut fastrand::Rng) -> Value {
        if rng.u8(..4) == 0 {
            Value::from(format!("{:.4}", 0.95 + rng.f64() * 0.0499))
        } else {
            Value::from("0.9999")
        }
    }

    /// A confidence as a float with full precision.
    fn conf_float(rng: &mut fastrand::Rng) -> Value {
        Value::from(0.95 + rng.f64() * 0.049_999)
    }

    /// Digits as text.
    fn digits(rng: &mut fastrand::Rng, count: usize) -> String {
        (0..count)
            .map(|_| char::from(b'0' + rng.u8(..10)))
            .collect()
    }

    fn address(rng: &mut fastrand::Rng, region: &Region) -> String {
        format!(
            "{}, {}, Д. {}, КВ. {}",
            region.birth_place,
            pick(rng, &region.streets),
            rng.u16(1..=120),
            rng.u16(1..=300)
        )
    }

    /// Data fields and their confidences, filled side by side in the seed's order.
    #[derive(Default)]
    struct Fields {
        data: Map<String, Value>,
        confidences: Map<String, Value>,
    }

    impl Fields {
        fn put(&mut self, name: &str, value: impl Into<Value>, confidence: Value) {
            self.data.insert(name.to_owned(), value.into());
            self.confidences.insert(name.to_owned(), confidence);
        }
    }

    /// Internal passport (pages 2-3), plus the registration address for `PASSPORT_REG`.
    pub(super) fn passport(rng: &mut fastrand::Rng, with_address: bool) -> Passport {
        let who = person(rng);
        let age = if who.birth.year >= 1982 { 20 } else { 45 };
        let issued = who.birth.plus_years(age).plus_years(rng.u16(0..=1));
        let mut f = Fields::default();
        f.put("IssuedBy", who.region.issued_by, conf_text(rng));
        f.put("IssueDate", issued.text(), conf_text(rng));
        let office = format!("{}-{:03}", who.region.office_code, rng.u16(1..=99));
        f.put("IssueId", office, conf_text(rng));
        let series = format!("{}{:02}", who.region.okato, issued.year % 100);
        f.put("Series", series, conf_text(rng));
        f.put("Number", digits(rng, 6), conf_float(rng));
        f.put(
            "Gender",
            if who.male { "МУЖ." } else { "ЖЕН." },
            conf_text(rng),
        );
        f.put("LastName", who.last.clone(), conf_text(rng));
        f.put("FirstName", who.first, conf_text(rng));
        f.put("MiddleName", who.middle, conf_text(rng));
        f.put("BirthDate", who.birth.text(), conf_text(rng));
        f.put("BirthPlace", who.region.birth_place, conf_text(rng));
        if with_address {
            f.put("Address", address(rng, who.region), conf_text(rng));
        }
        // The machine-readable zone is only ever mentioned in the confidences.
        f.confidences.insert("MRZ1".to_owned(), conf_text(rng));
        f.confidences.insert("MRZ2".to_owned(), conf_float(rng));
        // Booleans, sometimes as strings, as the seed's field table allows.
        let (photo, signature) = if with_address {
            (Value::from("true"), Value::from(true))
        } else {
            (Value::from(true), Value::from("true"))
        };
        f.put("HasPhoto", photo, Value::from("0.9999"));
        f.put("HasOwnerSignature", signature, Value::from("0.9999"));
        f.data.insert("HasStamp".to_owned(), Value::from(""));
        Passport {
            data: f.data,
            confidences: Value::Object(f.confidences),
        }
    }

    /// Russian to Latin as in passports for travel abroad.
    fn latin(text: &str) -> String {
        text.chars()
            .map(|c| match c {
                'А' => "A",
                'Б' => "B",
                'В' => "V",
                'Г' => "G",
                'Д' => "D",
                'Е' | 'Ё' | 'Э' => "E",
                'Ж' => "ZH",
                'З' => "Z",
                'И' | 'Й' => "I",
                'К' => "K",
                'Л' => "L",
                'М' => "M",
                'Н' => "N",
                'О' => "O",
                'П' => "P",
                'Р' => "R",
                'С' => "S",
                'Т' => "T",
                'У' => "U",
                'Ф' => "F",
                'Х' => "KH",
                'Ц' => "TS",
                'Ч' => "CH",
                'Ш' => "SH",
                'Щ' => "SHCH",
                'Ы' => "Y",
                'Ъ' => "IE",
                'Ь' => "",
                'Ю' => "IU",
                'Я' => "IA",
                ' ' => " ",
                '-' => "-",
                '.' => ".",
                _ => "",
            })
            .collect()
    }

    /// Passport for travel abroad: fields under `data.data`, no confidences (as in the seed).
    fn fprn(rng: &mut fastrand::Rng) -> Content {
        let who = person(rng);
        // Issued within the last ten years, so still valid.
        let issued = Date::random(rng, 2016..=2024);
        let inner = json!({
            "Series": format!("{}", rng.u8(70..=77)),
            "Number": digits(rng, 7),
            "Gender": if who.male { "M" } else { "F" },
            "LastNameRu": who.last,
            "FirstNameRu": who.first,
            "MiddleNameRu": who.middle,
            "LastName": latin(&who.last),
            "FirstName": latin(who.first),
            "BirthDate": who.birth.text(),
            "BirthPlaceRu": who.region.birth_place.trim_start_matches("ГОР. "),
            "BirthPlace": who.region.city_latin,
            "IssueDate": issued.text(),
            "ExpirationDate": issued.plus_years(10).text(),
            "IssuedBy": format!("МВД {}", rng.u16(1..=999)),
            "HasPhoto": "true",
        });
        plain(json!({ "data": inner }), Value::Null, BrokenFlag::Absent)
    }

    /// Residence permit, with the seed's nulls and one empty date.
    fn vng(rng: &mut fastrand::Rng) -> Content {
        let who = person(rng);
        let decided = Date::random(rng, 2015..=2023);
        let data = json!({
            "Series": "82",
            "Number": digits(rng, 7),
            "IssueId": format!("{}-{:03}", who.region.office_code, rng.u16(1..=99)),
            "Gender": if who.male { "M" } else { "F" },
            "LastName": who.last,
            "FirstName": who.first,
            "MiddleName": who.middle,
            "BirthDate": who.birth.text(),
            "BirthPlace": pick(rng, &CITIZENSHIPS),
            "Citizenship": pick(rng, &CITIZENSHIPS),
            "SolutionDate": decided.text(),
            "SolutionNumber": format!("{}/{}", rng.u16(100..=9999), decided.year),
            "IssuedBy": who.region.issued_by,
            "IssueDate": decided.plus_years(rng.u16(0..=1)).text(),
            "ExpiryDate": null,
            "Address": address(rng, who.region),
            "RegIssueDate": "",
            "RegExpiryDate": null,
        });
        plain(data, Value::Null, BrokenFlag::False)
    }

    /// SNILS number `XXX-XXX-XXX YY` with a correct check sum.
    fn snils_number(rng: &mut fastrand::Rng) -> String {
        let body = format!("{:09}", rng.u32(1_001_999..=999_999_999));
        let sum: u32 = body
            .bytes()
            .zip((1..=9).rev())
            .map(|(digit, weight)| u32::from(digit - b'0') * weight)
            .sum();
        let check = match sum {
            0..=99 => sum,
            100 | 101 => 0,
            _ => (sum % 101) % 100,
        };
        format!("{}-{}-{} {check:02}", &body[0..3], &body[3..6], &body[6..9])
    }

    /// SNILS: float confidences whose name keys are cased `Lastname`, unlike the data.
    fn snils(rng: &mut fastrand::Rng) -> Content {
        let who = person(rng);
        let data = json!({
            "Number": snils_number(rng),
            "LastName": who.last,
            "FirstName": who.first,
            "MiddleName": who.middle,
            "Gender": if who.male { "МУЖ" } else { "ЖЕН" },
            "BirthDate": who.birth.text(),
            "BirthPlace": who.region.birth_place,
            "RegistrationDate": null,
        });
        let confidences = json!({
            "Number": conf_float(rng),
            "Gender": conf_float(rng),
            "Lastname": conf_float(rng),
            "Firstname": conf_float(rng),
            "Middlename": conf_float(rng),
            "BirthDate": conf_float(rng),
            "BirthPlace": conf_float(rng),
        });
        plain(data, confidences, BrokenFlag::False)
    }

    /// Roubles and kopecks with a decimal comma, as the seed writes sums.
    fn rubles(kopecks: u64) -> String {
        format!("{},{:02}", kopecks / 100, kopecks % 100)
    }

    /// Court ruling cancelling a court order; `broken` is `null` here, as in the seed.
    fn otpr(rng: &mut fastrand::Rng) -> Content {
        let who = person(rng);
        let loan = Date::random(rng, 2018..=2023);
        let order = Date::random(rng, 2024..=2025);
        let owed = rng.u64(50_000..=50_000_000);
        let duties = (owed / 50).max(20_000);
        let data = json!({
            "LoanAgreementDate": loan.text(),
            "Gender": if who.male { "M" } else { "F" },
            "DebtorLastName": title_case(&who.last),
            "DebtorFirstName": title_case(who.first),
            "DebtorMiddleName": title_case(who.middle),
            "LoanAgreementNumber": format!("{}/{}", digits(rng, 3), digits(rng, 7)),
            "OrderNumber": format!("{}-{}/{}", rng.u8(1..=2), digits(rng, 4), rng.u16(100..=999)),
            "OrderDate": order.text(),
            "AmountOwed": rubles(owed),
            "Duties": rubles(duties),
            "TotalAmount": rubles(owed + duties),
        });
        let mut confidences = Map::new();
        if let Value::Object(fields) = &data {
            for (index, name) in fields.keys().enumerate() {
                let value = if index % 2 == 0 {
                    conf_text(rng)
                } else {
                    conf_float(rng)
                };
                confidences.insert(name.clone(), value);
            }
        }
        plain(data, Value::Object(confidences), BrokenFlag::Null)
    }

    /// "ИВАНОВ" → "Иванов".
    fn title_case(text: &str) -> String {
        let mut chars = text.chars();
        match chars.next() {
            Some(first) => first.to_string() + &chars.as_str().to_lowercase(),
            None => String::new(),
        }
    }

    /// A liveness check that ran ("Success" says it ran, not that it passed); `not_live`: it
    /// found no live person.
    pub(super) fn liveness(rng: &mut fastrand::Rng, not_live: bool) -> Value {
        if not_live {
            return json!({
                "liveness": 0,
                "probability": 0.05 + rng.f64() * 0.2,
                "error_code": 0,
                "comment": "Success",
            });
        }
        json!({
            "liveness": 1,
            "probability": 0.9 + rng.f64() * 0.0999,
            "error_code": 0,
            "comment": "Success",
        })
    }

    /// A face match that ran, or one that had nothing to compare; `other_face`: it ran and
    /// found another person.
    pub(super) fn match_faces(rng: &mut fastrand::Rng, unpaired: bool, other_face: bool) -> Value {
        if unpaired {
            return json!({
                "match_faces": 0,
                "similarity": 0,
                "error_code": 1,
                "comment": "Only one image",
            });
        }
        if other_face {
            return json!({
                "match_faces": 0,
                "similarity": 0.1 + rng.f64() * 0.3,
                "error_code": 0,
                "comment": "Success",
            });
        }
        json!({
            "match_faces": 1,
            "similarity": 0.85 + rng.f64() * 0.1499,
            "error_code": 0,
            "comment": "Success",
        })
    }
}
