//! Reading a submit body under the size limit. A body over it is read on (and dropped) for a
//! while, so a client still uploading gets to read the 413 instead of a reset connection.

use std::future::poll_fn;
use std::pin::Pin;

use axum::body::{Body, HttpBody};

/// Slack on top of the base64-inflated size limit for the JSON around the images.
const BODY_SLACK_BYTES: u64 = 64 * 1024;
/// Once a body is known to be too large, read and discard at most this many bytes more, so a
/// client still sending gets to read the 413 instead of a reset connection.
const MAX_DRAIN_BYTES: u64 = 64 * 1024 * 1024;

/// Raw body limit: the decoded limit inflated by base64, plus room for the JSON around it.
pub(crate) fn raw_body_limit(max_total_bytes: u64) -> u64 {
    let inflated = u128::from(max_total_bytes) * 4 / 3 + u128::from(BODY_SLACK_BYTES);
    u64::try_from(inflated).unwrap_or(u64::MAX)
}

/// Why a body could not be had.
pub(crate) enum BodyError {
    /// Over the raw limit.
    TooLarge,
    /// The client broke off or sent garbage framing.
    Broken,
}

/// Reads a body up to `limit` bytes. A larger body is read on (and dropped) for a while, so a
/// client still uploading gets to see the 413.
pub(crate) async fn read_body(mut body: Body, limit: u64) -> Result<Vec<u8>, BodyError> {
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
