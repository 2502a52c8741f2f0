//! `GET`/`POST /api/document/result/{document_id}` and its alias: the forced failure, then
//! the query, the token, the document's existence and its readiness, in that order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::records::{Endpoint, RequestRecord};
use crate::render::render_result;
use crate::reply::{Reply, bad_request, message_for};
use crate::state::Shared;

/// `GET`/`POST /api/document/result/{document_id}?token=...` and its alias.
pub(crate) async fn result_handler(
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
