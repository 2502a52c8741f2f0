//! The one place where the order of the stages is written: a claimed file is hashed,
//! preflighted, submitted and polled, and finished with whatever outcome a stage decided.

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use crate::lifecycle::Event;
use crate::pipeline::{Context, Job, Step};
use crate::pipeline::{claim, finish, poll, preflight, submit};

/// One file's way from claimed to finished. `permit` is its prepared-submit slot (none for a
/// file resumed at start); it is given back once the file is sent or refused, never held
/// while a file waits to be finished.
pub(super) async fn drive(cx: Arc<Context>, mut job: Job, permit: Option<OwnedSemaphorePermit>) {
    let step = if job.document_id.is_some() {
        // Sent before (the journal has its document): only the result is missing.
        Step::Next
    } else {
        send(&cx, &mut job, permit).await
    };
    let step = match step {
        Step::Next => poll::poll(&cx, &mut job).await,
        decided => decided,
    };
    match step {
        Step::Finish(outcome) => finish::finish(&cx, &mut job, outcome).await,
        Step::Vanished => finish::vanished(&cx, &mut job).await,
        Step::Next | Step::Stopped => {}
    }
}

/// A file not sent yet: its content hash, preflight, submit. From here until it is sent (or
/// refused), no later file's submit goes before it.
async fn send(cx: &Context, job: &mut Job, permit: Option<OwnedSemaphorePermit>) -> Step {
    let expected = cx.scheduler.expect_submit(job.id);
    match claim::hash(cx, job).await {
        Step::Next => {}
        decided => return decided,
    }
    let verdict = preflight::preflight(job).await;
    if let Some(reported) = preflight_event(&verdict)
        && let Err(not_recorded) = cx.recorder.record(job, reported).await
    {
        return not_recorded.into();
    }
    match verdict {
        Step::Next => submit::submit(cx, job, permit, expected).await,
        decided => decided,
    }
}

/// Preflight's verdict as the lifecycle's event (none when the file vanished or the daemon
/// is stopping).
fn preflight_event(verdict: &Step) -> Option<Event> {
    let refused = match verdict {
        Step::Next => None,
        Step::Finish(outcome) => outcome
            .error
            .as_ref()
            .map(|e| (e.kind.as_str().to_string(), e.message.clone())),
        Step::Vanished | Step::Stopped => return None,
    };
    Some(Event::Preflight { refused })
}
