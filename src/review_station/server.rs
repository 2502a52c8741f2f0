//! The routes. Every path but `/login` needs a live session (else 303 to `/login`); every
//! POST of a session needs its CSRF token (else 403, nothing done). Items are reached only
//! by their opaque id ([`super::items`]). Every response carries the security headers
//! ([`security_headers`]).

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::IncomingStream;
use axum::{Form, Router};
use maud::Markup;

use super::audit::Entry;
use super::decision::{Choice, decided_sidecar};
use super::items::{self, Item};
use super::sessions::Session;
use super::texts::{self, Texts};
use super::{Attached, Station, csrf, templates};
use crate::store::journal::{Decided, ReviewDecision, Stage};

/// The session cookie's name.
pub const COOKIE: &str = "beorg_review";

/// After `stop`, how long open connections may take before the server returns anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

type Shared = Arc<Station>;
type Fields = Form<Vec<(String, String)>>;

pub fn router(station: Shared) -> Router {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/", get(queue))
        .route("/items/{id}", get(item_page))
        .route("/items/{id}/files/{n}", get(item_file))
        .route("/items/{id}/approve", post(approve))
        .route("/items/{id}/reject", post(reject))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            station.clone(),
            security_headers,
        ))
        .with_state(station)
}

/// The client's address, for the login limit.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::IpAddr);

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Peer {
        Peer(stream.remote_addr().ip())
    }
}

impl Connected<IncomingStream<'_, super::tls::TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, super::tls::TlsListener>) -> Peer {
        Peer(stream.remote_addr().ip())
    }
}

/// Serves `router` on `listener` (plain, or TLS streams) until `stop`.
pub async fn serve<L>(listener: L, station: Shared, stop: tokio_util::sync::CancellationToken)
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
    for<'a> Peer: Connected<IncomingStream<'a, L>>,
{
    let app = router(station).into_make_service_with_connect_info::<Peer>();
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(stop.clone().cancelled_owned())
        .into_future();
    tokio::select! {
        result = server => if let Err(e) = result {
            tracing::error!("the review station stopped: {e}");
        },
        () = async { stop.cancelled().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {}
    }
}

/// The headers of every answer: a strict CSP (scan files may be framed by our own page, for
/// a PDF), no sniffing, no caching (passport scans must not land in a shared cache), no
/// referrer to other sites, no framing by others. (`same-origin`, not `no-referrer`: under
/// `no-referrer` a browser sends `Origin: null` with our own forms, and the CSRF check
/// refuses them.)
async fn security_headers(State(station): State<Shared>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        if let Ok(csp) = HeaderValue::from_str(&station.csp) {
            h.insert(header::CONTENT_SECURITY_POLICY, csp);
        }
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// A request with a live session; without one the request answers 303 to `/login`.
struct Reviewer {
    id: String,
    session: Session,
    t: &'static Texts,
}

impl FromRequestParts<Shared> for Reviewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, station: &Shared) -> Result<Self, Response> {
        let t = texts::for_request(&parts.headers);
        let found =
            cookie(&parts.headers).and_then(|id| Some((id.clone(), station.sessions.touch(&id)?)));
        match found {
            Some((id, session)) => Ok(Reviewer { id, session, t }),
            None => Err(see_other("/login", None)),
        }
    }
}

impl Reviewer {
    fn user(&self) -> Option<(&str, &str)> {
        Some((&self.session.user, &self.session.csrf))
    }

    /// Whether a POST carries this session's token and comes from our own origin.
    fn allowed(&self, headers: &HeaderMap, form: &[(String, String)]) -> bool {
        let given = value(form, "csrf").unwrap_or_default();
        csrf::origin_is_ours(headers) && csrf::token_matches(&given, &self.session.csrf)
    }

    fn page(&self, status: StatusCode, heading: &str, text: &str) -> Response {
        html(
            status,
            templates::message(self.t, heading, text, self.user()),
        )
    }
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

fn value(form: &[(String, String)], key: &str) -> Option<String> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

fn html(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

fn see_other(to: &str, cookie: Option<String>) -> Response {
    let mut response =
        (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response();
    if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

async fn login_page(headers: HeaderMap) -> Response {
    html(
        StatusCode::OK,
        templates::login(texts::for_request(&headers), None),
    )
}

async fn login(
    State(station): State<Shared>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    Form(form): Fields,
) -> Response {
    let t = texts::for_request(&headers);
    let user = value(&form, "user").unwrap_or_default().trim().to_string();
    let password = value(&form, "password").unwrap_or_default();
    if !csrf::origin_is_ours(&headers) {
        return html(
            StatusCode::FORBIDDEN,
            templates::login(t, Some(t.forbidden)),
        );
    }
    let address = peer.0.to_string();
    if station.logins.shut_out(&user) || station.logins_from.shut_out(&address) {
        station.audit(Entry::new(&user, "login", "shut_out")).await;
        return html(
            StatusCode::TOO_MANY_REQUESTS,
            templates::login(t, Some(t.too_many_logins)),
        );
    }
    let users_file = station.settings.users_file.clone();
    let name = user.clone();
    let Ok(_turn) = station.hashing.acquire().await else {
        return html(
            StatusCode::SERVICE_UNAVAILABLE,
            templates::login(t, Some(t.not_ready)),
        );
    };
    let checked = tokio::task::spawn_blocking(move || {
        super::auth::check_password(&users_file, &name, &password)
    })
    .await;
    match checked {
        Ok(Ok(true)) => {
            station.logins.succeeded(&user);
            let id = station.sessions.open(&user);
            station.audit(Entry::new(&user, "login", "ok")).await;
            see_other("/", Some(station.cookie(&id)))
        }
        Ok(Ok(false)) => {
            station.logins.failed(&user);
            station.logins_from.failed(&address);
            station.audit(Entry::new(&user, "login", "failed")).await;
            html(
                StatusCode::UNAUTHORIZED,
                templates::login(t, Some(t.wrong_login)),
            )
        }
        Ok(Err(e)) => {
            tracing::error!(
                "cannot read the reviewers file {} (review_station.users_file): {e}",
                station.settings.users_file.display()
            );
            station.audit(Entry::new(&user, "login", "error")).await;
            html(
                StatusCode::SERVICE_UNAVAILABLE,
                templates::login(t, Some(t.not_ready)),
            )
        }
        Err(_) => html(
            StatusCode::INTERNAL_SERVER_ERROR,
            templates::login(t, Some(t.not_ready)),
        ),
    }
}

async fn logout(
    State(station): State<Shared>,
    r: Reviewer,
    headers: HeaderMap,
    Form(form): Fields,
) -> Response {
    if !r.allowed(&headers, &form) {
        return r.page(StatusCode::FORBIDDEN, r.t.forbidden, r.t.forbidden);
    }
    station.sessions.close(&r.id);
    station
        .audit(Entry::new(&r.session.user, "logout", "ok"))
        .await;
    see_other(
        "/login",
        Some(format!(
            "{COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict"
        )),
    )
}

async fn queue(State(station): State<Shared>, r: Reviewer) -> Response {
    let Some(attached) = station.attached() else {
        return r.page(StatusCode::SERVICE_UNAVAILABLE, r.t.title, r.t.not_ready);
    };
    let items = station.list(&attached).await;
    html(
        StatusCode::OK,
        templates::queue(r.t, &items, &r.session.user, &r.session.csrf),
    )
}

async fn item_page(State(station): State<Shared>, r: Reviewer, Path(id): Path<String>) -> Response {
    let Some(attached) = station.attached() else {
        return r.page(StatusCode::SERVICE_UNAVAILABLE, r.t.title, r.t.not_ready);
    };
    let Some(item) = station.find(&attached, &id).await else {
        return station.not_here(&r, &id);
    };
    station
        .audit(Entry::new(&r.session.user, "view", "ok").on(&item.name, &item.inbox))
        .await;
    let min_confidence = attached
        .config
        .inboxes
        .iter()
        .find(|i| i.path == item.inbox)
        .and_then(|i| i.min_confidence);
    html(
        StatusCode::OK,
        templates::item(r.t, &item, min_confidence, &r.session.user, &r.session.csrf),
    )
}

async fn item_file(
    State(station): State<Shared>,
    r: Reviewer,
    Path((id, n)): Path<(String, String)>,
) -> Response {
    let Some(attached) = station.attached() else {
        return r.page(StatusCode::SERVICE_UNAVAILABLE, r.t.title, r.t.not_ready);
    };
    let (Some(item), Ok(n)) = (station.find(&attached, &id).await, n.parse::<usize>()) else {
        return r.page(StatusCode::NOT_FOUND, r.t.not_found, r.t.not_found);
    };
    let read = tokio::task::spawn_blocking(move || {
        let (file, name) = items::open_page(&item, n)?;
        items::for_browser(file, items::shown_as(&name)?)
    })
    .await
    .ok()
    .flatten();
    let Some((kind, bytes)) = read else {
        return r.page(StatusCode::NOT_FOUND, r.t.not_found, r.t.not_found);
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; frame-ancestors 'self'",
            ),
            (header::CONTENT_DISPOSITION, "inline"),
        ],
        bytes,
    )
        .into_response()
}

async fn approve(
    State(station): State<Shared>,
    r: Reviewer,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Fields,
) -> Response {
    let fields = form
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("field.")?.to_string(), v.clone())))
        .collect();
    decide(
        &station,
        &r,
        &id,
        &headers,
        &form,
        Choice::Approve { fields },
    )
    .await
}

async fn reject(
    State(station): State<Shared>,
    r: Reviewer,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Fields,
) -> Response {
    let reason = value(&form, "reason")
        .unwrap_or_default()
        .trim()
        .to_string();
    decide(
        &station,
        &r,
        &id,
        &headers,
        &form,
        Choice::Reject { reason },
    )
    .await
}

/// Both decisions: CSRF, the item, the new sidecar, then the journal's one transaction.
async fn decide(
    station: &Shared,
    r: &Reviewer,
    id: &str,
    headers: &HeaderMap,
    form: &[(String, String)],
    choice: Choice,
) -> Response {
    let action = match choice {
        Choice::Approve { .. } => "approve",
        Choice::Reject { .. } => "reject",
    };
    let user = r.session.user.clone();
    if !r.allowed(headers, form) {
        station.audit(Entry::new(&user, action, "forbidden")).await;
        return r.page(StatusCode::FORBIDDEN, r.t.forbidden, r.t.forbidden);
    }
    let Some(attached) = station.attached() else {
        return r.page(StatusCode::SERVICE_UNAVAILABLE, r.t.title, r.t.not_ready);
    };
    let _one_at_a_time = station.deciding.lock().await;
    let Some(item) = station.find(&attached, id).await else {
        station.audit(Entry::new(&user, action, "not_found")).await;
        return station.not_here(r, id);
    };
    if let Choice::Reject { reason } = &choice
        && reason.is_empty()
    {
        return r.page(StatusCode::BAD_REQUEST, r.t.bad_request, r.t.reason_needed);
    }
    let at = SystemTime::now();
    let (sidecar, corrected) = match decided_sidecar(&item, &choice, &user, at) {
        Ok(decided) => decided,
        Err(field) => {
            let text = format!("{}: {field}", r.t.unknown_field);
            return r.page(StatusCode::BAD_REQUEST, r.t.bad_request, &text);
        }
    };
    let Some(inbox) = attached
        .config
        .inboxes
        .iter()
        .find(|i| i.path == item.inbox)
    else {
        return station.not_here(r, id);
    };
    let (stage, to_dir) = match choice {
        Choice::Approve { .. } => (Stage::Done, inbox.done.clone()),
        Choice::Reject { .. } => (Stage::Failed, inbox.failed.clone()),
    };
    let decision = ReviewDecision {
        from: item.path(),
        to_dir,
        stage,
        decision: choice.decision().to_string(),
        by: user.clone(),
        corrected,
        sidecar,
        mode: attached.config.daemon.file_mode,
    };
    let outcome_inbox = inbox.clone();
    let outcome_of: crate::store::journal::OutcomeOf = Box::new(move |text, original, sidecar| {
        crate::deliver::message::reviewed_outcome(&outcome_inbox, text, original, sidecar)
    });
    let entry = Entry::new(&user, action, "ok").on(&item.name, &item.inbox);
    match attached.journal.review_decision(decision, outcome_of).await {
        Ok(Decided::Moved(to)) => {
            tracing::info!(
                "{} {} by {user} at the review station: now {}",
                item.name,
                choice.decision(),
                to.display()
            );
            station.metrics.review_decision(choice.decision());
            station.remember_decision(id, &user, choice.decision(), at);
            station.audit(entry).await;
            let next = station.list(&attached).await.into_iter().next();
            let to = next.map_or("/".to_string(), |next| format!("/items/{}", next.id));
            see_other(&to, None)
        }
        Ok(Decided::AlreadyDecided {
            by,
            decision,
            at_ms,
        }) => {
            station
                .audit(Entry {
                    result: "conflict",
                    ..entry
                })
                .await;
            let at = SystemTime::UNIX_EPOCH + Duration::from_millis(at_ms.max(0) as u64);
            station.conflict(r, &by, &decision, at)
        }
        Ok(Decided::Gone) => {
            station
                .audit(Entry {
                    result: "not_found",
                    ..entry
                })
                .await;
            r.page(StatusCode::NOT_FOUND, r.t.not_found, r.t.not_found)
        }
        Ok(Decided::MoveFailed(e)) => {
            tracing::error!(
                "the review decision on {} could not move it: {e}",
                item.name
            );
            not_carried_out(station, r, entry, &e.to_string()).await
        }
        Err(e) => {
            tracing::error!(
                "the review decision on {} could not be recorded: {e:#}",
                item.name
            );
            not_carried_out(station, r, entry, &e.to_string()).await
        }
    }
}

async fn not_found(State(station): State<Shared>, headers: HeaderMap) -> Response {
    let t = texts::for_request(&headers);
    let live = cookie(&headers).and_then(|id| station.sessions.touch(&id));
    match live {
        Some(session) => html(
            StatusCode::NOT_FOUND,
            templates::message(
                t,
                t.not_found,
                t.not_found,
                Some((&session.user, &session.csrf)),
            ),
        ),
        None => see_other("/login", None),
    }
}

impl Station {
    fn attached(&self) -> Option<Attached> {
        self.attached
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn list(&self, attached: &Attached) -> Vec<Item> {
        let (config, key) = (attached.config.clone(), self.id_key.clone());
        tokio::task::spawn_blocking(move || items::list(&config, &key))
            .await
            .unwrap_or_default()
    }

    async fn find(&self, attached: &Attached, id: &str) -> Option<Item> {
        let (config, key, id) = (attached.config.clone(), self.id_key.clone(), id.to_string());
        tokio::task::spawn_blocking(move || items::find(&config, &key, &id))
            .await
            .ok()
            .flatten()
    }

    async fn audit(&self, entry: Entry) {
        let log = self.audit.clone();
        let _ = tokio::task::spawn_blocking(move || log.write(&entry)).await;
    }

    /// The session cookie for `id`: `Secure` under TLS.
    fn cookie(&self, id: &str) -> String {
        let secure = if self.settings.tls.is_some() {
            "; Secure"
        } else {
            ""
        };
        format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{secure}")
    }

    /// An id the listing does not find: 409 naming who decided it, if this station did;
    /// else 404.
    fn not_here(&self, r: &Reviewer, id: &str) -> Response {
        match self.decided_by(id) {
            Some((by, decision, at)) => self.conflict(r, &by, &decision, at),
            None => r.page(StatusCode::NOT_FOUND, r.t.not_found, r.t.not_found),
        }
    }

    fn conflict(&self, r: &Reviewer, by: &str, decision: &str, at: SystemTime) -> Response {
        let text = format!(
            "{}: {} — {}, {}",
            r.t.already_decided,
            by,
            r.t.decision(decision),
            crate::sidecar::rfc3339(at)
        );
        r.page(StatusCode::CONFLICT, r.t.already_decided, &text)
    }
}

/// A decision that could not be carried out (nothing moved, nothing recorded): audited as an
/// error, and said on a page.
async fn not_carried_out(station: &Shared, r: &Reviewer, entry: Entry, why: &str) -> Response {
    station
        .audit(Entry {
            result: "error",
            ..entry
        })
        .await;
    let text = format!("{} {why}", r.t.move_failed);
    r.page(StatusCode::INTERNAL_SERVER_ERROR, r.t.title, &text)
}
