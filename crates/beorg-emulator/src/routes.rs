//! The API's routes: submit, result and the result alias; everything else is a JSON 404
//! (or 405 for a wrong method).

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};

use crate::reply::Reply;
use crate::result::result_handler;
use crate::state::Shared;
use crate::submit::submit_handler;

/// The submit route.
const SUBMIT_PATH: &str = "/api/bescan/add_document";
/// The result route every seed example uses.
const RESULT_PATH: &str = "/api/document/result/{document_id}";
/// The result route the overview names once.
const RESULT_ALIAS_PATH: &str = "/api/bescan/result/{document_id}";

/// The API's routes; everything else is a JSON 404 (or 405 for a wrong method).
pub(crate) fn router(shared: Arc<Shared>) -> Router {
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
