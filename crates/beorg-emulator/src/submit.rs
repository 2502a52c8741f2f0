//! `POST /api/bescan/add_document`: the forced failure, the vendor's checks ([`crate::checks`])
//! and admission (money, duplicates, a new document id), in the vendor's order, each answer
//! recorded in the request log.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::Sha256;

use crate::body::{BodyError, raw_body_limit, read_body};
use crate::checks::{Submission, parse_submission, too_large};
use crate::documents::DocumentSet;
use crate::records::{Described, Endpoint, RequestRecord, describe, submit_record};
use crate::reply::{Reply, message_for};
use crate::state::Shared;

/// `POST /api/bescan/add_document`.
pub(crate) async fn submit_handler(State(shared): State<Arc<Shared>>, body: Body) -> Response {
    let at = Instant::now();
    let plan = shared.take_plan(Endpoint::Submit);
    let read = read_body(body, raw_body_limit(shared.config.max_total_bytes)).await;
    let worker = Arc::clone(&shared);
    let fail = plan.fail;
    // Parsing and decoding hundreds of megabytes must not stall the runtime; a panic there
    // is answered as a server error. The answer is recorded where it is decided, in the
    // blocking task: a client that goes away meanwhile drops this handler, not the task, and
    // a document admitted for it must still be in the log.
    let handled = tokio::task::spawn_blocking(move || {
        let (reply, record) = handle_submit(&worker, read, fail, at);
        log_submit(&worker, record);
        reply
    })
    .await;
    let reply = handled.unwrap_or_else(|_| {
        log_submit(&shared, submit_record(at, 500, None, Described::default()));
        Reply::error(StatusCode::INTERNAL_SERVER_ERROR, "server error")
    });
    plan.sleep().await;
    reply.into_response()
}

/// Adds a submit's answer to the request log.
fn log_submit(shared: &Shared, record: RequestRecord) {
    tracing::debug!(status = record.status, document_id = ?record.document_id, "emulator submit");
    shared.record(record);
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
