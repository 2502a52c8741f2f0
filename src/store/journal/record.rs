//! Storing one transition of a file's lifecycle: the one journal write the pipeline makes
//! after the claim. A [`Change`] (decided by [`crate::lifecycle::step`]) becomes one SQLite
//! transaction: the row takes the event's values and the stage, the history lines are
//! appended, a finish's deliveries are queued, and only then is it committed.

use rusqlite::{OptionalExtension, Transaction, params};

use super::deliveries::insert_outcome;
use super::{FileId, Journal, finish_row, history, ms, path_text};
use crate::lifecycle::{Change, Event, Line, Stage};

impl Journal {
    /// Stores `change` for file `id` in one transaction. A change stored before (tried again
    /// after a commit whose answer was lost) changes the row to the same values and appends
    /// no line and queues no delivery a second time.
    pub async fn record(&self, id: FileId, change: Change) -> anyhow::Result<()> {
        self.with(move |conn| {
            let tx = conn.unchecked_transaction()?;
            store(&tx, id, &change)?;
            tx.commit()
        })
        .await
    }

    /// Wakes the delivering task: a finish queued deliveries (a wake-up given while nobody
    /// waits is kept for the next wait).
    pub fn wake_deliveries(&self) {
        self.deliveries_added.notify_one();
    }
}

/// Stores `change` for file `id` inside the caller's transaction: the row, its lines, a
/// finish's deliveries.
pub(super) fn store(tx: &Transaction<'_>, id: FileId, change: &Change) -> rusqlite::Result<()> {
    let was = stage_of(tx, id)?;
    let new = update_row(tx, id, change)?;
    if new {
        append_lines(tx, id, change)?;
    }
    if let Event::Finished {
        delivery: Some(outcome),
        ..
    } = &change.event
        && was.as_deref() == Some(Stage::Finishing.as_str())
    {
        insert_outcome(tx, id, outcome)?;
    }
    Ok(())
}

fn stage_of(tx: &Transaction<'_>, id: FileId) -> rusqlite::Result<Option<String>> {
    tx.query_row("SELECT stage FROM files WHERE id = ?1", [id], |r| r.get(0))
        .optional()
}

/// The row's update for the change's event; false when the change was stored before (its
/// lines are not appended again).
fn update_row(tx: &Transaction<'_>, id: FileId, change: &Change) -> rusqlite::Result<bool> {
    let (at, stage) = (ms(change.at), change.stage.as_str());
    match &change.event {
        Event::Hashed {
            sha256,
            size,
            members,
        } => {
            let files = members
                .as_ref()
                .map(|m| serde_json::to_string(m).unwrap_or_default());
            tx.execute(
                "UPDATE files SET sha256 = ?2, size = ?3, set_files = COALESCE(?4, set_files),
                 updated_at = ?5 WHERE id = ?1",
                params![id, sha256, *size as i64, files, at],
            )?;
        }
        // A history line only: the row changes when a refusal is finished.
        Event::Preflight { .. } => {}
        Event::Submitting { request } => {
            tx.execute(
                "UPDATE files SET stage = ?2, submit_attempts = submit_attempts + 1,
                 request = ?3, updated_at = ?4 WHERE id = ?1",
                params![id, stage, request, at],
            )?;
        }
        Event::Document {
            document_id,
            sha256,
            request,
        } => {
            let added = tx.execute(
                "INSERT OR IGNORE INTO documents (document_id, file_id, sha256, request, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![document_id, id, sha256, request, at],
            )?;
            return Ok(added > 0);
        }
        Event::Superseded { document_id, why } => {
            tx.execute(
                "UPDATE documents SET superseded = ?2 WHERE document_id = ?1",
                params![document_id, why],
            )?;
        }
        Event::NotSent { .. } => set_stage(tx, id, stage, at)?,
        Event::Submitted { document_id } => {
            tx.execute(
                "UPDATE files SET stage = ?2, document_id = ?3, submitted_at = ?4,
                 updated_at = ?4 WHERE id = ?1",
                params![id, stage, document_id, at],
            )?;
            // The file's own answer, used after all (its content is back to what was sent).
            tx.execute(
                "UPDATE documents SET superseded = NULL WHERE document_id = ?1 AND file_id = ?2",
                params![document_id, id],
            )?;
        }
        Event::AnsweredFrom {
            document_id,
            request,
        } => {
            tx.execute(
                "UPDATE files SET stage = ?2, document_id = ?3, duplicate_of = ?3,
                 submitted_at = ?4, updated_at = ?4, request = ?5 WHERE id = ?1",
                params![id, stage, document_id, at, request],
            )?;
        }
        Event::Asked {
            asked,
            still_processing,
        } => {
            tx.execute(
                "UPDATE files SET poll_asked_ms = ?2, polls = polls + 1,
                 polls_pending = polls_pending + ?3, updated_at = ?4 WHERE id = ?1",
                params![id, millis(asked), *still_processing as i64, at],
            )?;
        }
        Event::ReadyAfter { pending, ready } => {
            tx.execute(
                "UPDATE files SET pending_ms = ?2, ready_ms = ?3 WHERE id = ?1",
                params![id, pending.as_ref().map(millis), millis(ready)],
            )?;
        }
        Event::Finishing {
            final_path,
            sidecar,
            ..
        } => {
            let was = stage_of(tx, id)?;
            tx.execute(
                "UPDATE files SET stage = ?2, final_path = ?3, sidecar = ?4, updated_at = ?5
                 WHERE id = ?1",
                params![id, stage, path_text(final_path), sidecar, at],
            )?;
            return Ok(was.as_deref() != Some(stage));
        }
        Event::Finished { .. } | Event::Lost => {
            let was = finish_row(tx, id, change.stage, change.at)?;
            return Ok(was.as_deref() != Some(stage));
        }
    }
    Ok(true)
}

fn set_stage(tx: &Transaction<'_>, id: FileId, stage: &str, at: i64) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE files SET stage = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, stage, at],
    )?;
    Ok(())
}

fn append_lines(tx: &Transaction<'_>, id: FileId, change: &Change) -> rusqlite::Result<()> {
    for line in &change.lines {
        match line {
            Line::Of {
                transition,
                details,
            } => history::append_at(tx, Some(id), change.at, transition, details.clone())?,
            Line::PollsSummary => history::append_polled(tx, id, change.at)?,
        }
    }
    Ok(())
}

fn millis(d: &std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Files driven through the lifecycle in the journal's unit tests as the recorder drives
/// them: each event stepped by the lifecycle, its change stored.
#[cfg(test)]
pub(crate) mod testing {
    use std::time::SystemTime;

    use super::super::{FileId, Journal, NewClaim};
    use crate::lifecycle::{Change, Effect, Event, FileState, Payload, Stage, step};

    pub(crate) struct Driven {
        pub id: FileId,
        pub state: FileState,
    }

    impl Driven {
        pub async fn claim(j: &Journal, c: NewClaim) -> Driven {
            let state = FileState::claimed(Payload::File, c.size, c.detected_at, c.claimed_at);
            Driven {
                id: j.insert_claimed(c).await.unwrap(),
                state,
            }
        }

        /// A row found in the journal (written by hand or by an older daemon) in `stage`.
        pub fn at(id: FileId, stage: Stage) -> Driven {
            let now = SystemTime::now();
            let mut state = FileState::claimed(Payload::File, 1, now, now);
            state.stage = stage;
            Driven { id, state }
        }

        /// Steps `event` and stores its change; the change, to store again if a test wants.
        pub async fn on(&mut self, j: &Journal, event: Event) -> Change {
            let (next, effects) = step(&self.state, event, SystemTime::now()).unwrap();
            let Some(Effect::Store(change)) = effects.into_iter().next() else {
                panic!("a transition stores its change first")
            };
            j.record(self.id, (*change).clone()).await.unwrap();
            self.state = next;
            *change
        }
    }

    pub fn hashed(sha256: &str) -> Event {
        Event::Hashed {
            sha256: sha256.into(),
            size: 10,
            members: None,
        }
    }

    pub fn submitting(request: &str) -> Event {
        Event::Submitting {
            request: request.into(),
        }
    }

    pub fn document(document_id: &str, sha256: &str, request: &str) -> Event {
        Event::Document {
            document_id: document_id.into(),
            sha256: sha256.into(),
            request: request.into(),
        }
    }

    pub fn submitted(document_id: &str) -> Event {
        Event::Submitted {
            document_id: document_id.into(),
        }
    }

    pub fn finishing(final_path: &str, sidecar: &str) -> Event {
        Event::Finishing {
            final_path: final_path.into(),
            sidecar_path: crate::store::layout::sidecar_path(final_path.as_ref()),
            sidecar: sidecar.into(),
        }
    }

    pub fn finished(stage: Stage) -> Event {
        Event::Finished {
            stage,
            label: stage.as_str().into(),
            delivery: None,
        }
    }
}
