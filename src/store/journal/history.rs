//! The journal's `history` table: one line per thing that happened to a file, for `explain`.
//!
//! Each line is appended by the journal call that changes the file's row (or its documents
//! or deliveries), in the same SQLite transaction, so the history never disagrees with the
//! row: claimed, hashed, preflight, each submit and its answer, documents recorded and
//! superseded, the polls (one aggregate line when polling ends), finishing, finished or lost,
//! each delivery try, requeued, reviewed. `details` is a JSON object whose keys depend on the
//! transition ([`transition`] lists them). Pruning by `keep_history` removes a file's lines
//! with its row. `sqlite3 journal.sqlite 'select * from history where file_id = 7'` shows
//! them.

use std::time::SystemTime;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use super::{FileId, ms};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS history (
    id          INTEGER PRIMARY KEY,
    file_id     INTEGER,
    at          INTEGER NOT NULL,
    transition  TEXT NOT NULL,
    details     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_file ON history(file_id, id);
CREATE TABLE IF NOT EXISTS requeued_documents (
    document_id TEXT PRIMARY KEY,
    file_id     INTEGER,
    at          INTEGER NOT NULL
);
";

/// Creates the tables in a journal that lacks them (a new one, or one from an older daemon:
/// its files simply have no history before the upgrade).
pub(super) fn create_table(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}

/// The transitions' names as stored (a contract): the lifecycle's own.
pub use crate::lifecycle::transition;

/// Appends one line for `file_id` at the current time (inside the caller's transaction).
pub(super) fn append(
    conn: &Connection,
    file_id: Option<FileId>,
    transition: &str,
    details: Value,
) -> rusqlite::Result<()> {
    append_at(conn, file_id, SystemTime::now(), transition, details)
}

/// Appends one line for `file_id` at `at` (inside the caller's transaction).
pub(super) fn append_at(
    conn: &Connection,
    file_id: Option<FileId>,
    at: SystemTime,
    transition: &str,
    details: Value,
) -> rusqlite::Result<()> {
    super::fail_points::note(transition);
    conn.execute(
        "INSERT INTO history (file_id, at, transition, details) VALUES (?1, ?2, ?3, ?4)",
        params![file_id, ms(at), transition, details.to_string()],
    )?;
    Ok(())
}

/// The aggregate "polled" line from the row's poll counters, if it was asked for at all.
pub(super) fn append_polled(conn: &Connection, id: FileId, at: SystemTime) -> rusqlite::Result<()> {
    let details: Option<Value> = conn
        .query_row(
            "SELECT COALESCE(polls, 0), COALESCE(polls_pending, 0), poll_asked_ms, ready_ms,
                    pending_ms
             FROM files WHERE id = ?1",
            [id],
            |r| {
                Ok(serde_json::json!({
                    "asks": r.get::<_, i64>(0)?,
                    "still_processing": r.get::<_, i64>(1)?,
                    "asked_ms": r.get::<_, i64>(2)?,
                    "ready_ms": r.get::<_, Option<i64>>(3)?,
                    "pending_ms": r.get::<_, Option<i64>>(4)?,
                }))
            },
        )
        .optional()?;
    match details {
        Some(details) if details["asks"].as_i64().unwrap_or(0) > 0 => {
            append_at(conn, Some(id), at, transition::POLLED, details)
        }
        _ => Ok(()),
    }
}

/// The delivery row's file, kind and tries so far, for its history line.
pub(super) fn delivery_owner(
    conn: &Connection,
    delivery_id: i64,
) -> rusqlite::Result<Option<(FileId, String, u32)>> {
    conn.query_row(
        "SELECT file_id, kind, attempts FROM deliveries WHERE id = ?1",
        [delivery_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u32)),
    )
    .optional()
}

/// One line of a file's history, as `explain` shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Line {
    /// Unix milliseconds.
    pub at_ms: i64,
    pub transition: String,
    pub details: Value,
}

/// `file_id`'s lines, oldest first. A journal without the table (never opened by a daemon
/// that keeps history) has none.
pub fn of_file(conn: &Connection, file_id: FileId) -> rusqlite::Result<Vec<Line>> {
    if !has_table(conn, "history")? {
        return Ok(Vec::new());
    }
    let mut stmt =
        conn.prepare("SELECT at, transition, details FROM history WHERE file_id = ?1 ORDER BY id")?;
    let rows = stmt.query_map([file_id], line)?;
    rows.collect()
}

/// Requeue lines kept for an original whose row was pruned before it was requeued (they
/// have no file id), matching `path` as `from` or `to`.
pub fn requeues_without_row(conn: &Connection, path: &str) -> rusqlite::Result<Vec<Line>> {
    if !has_table(conn, "history")? {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare(
        "SELECT at, transition, details FROM history
         WHERE file_id IS NULL AND (json_extract(details, '$.from') = ?1
                                    OR json_extract(details, '$.to') = ?1)
         ORDER BY id",
    )?;
    let rows = stmt.query_map([path], line)?;
    rows.collect()
}

/// One history row (`at, transition, details`) as a [`Line`]; details that are not JSON
/// (never written so) are kept as their text.
fn line(r: &rusqlite::Row) -> rusqlite::Result<Line> {
    let details: String = r.get(2)?;
    Ok(Line {
        at_ms: r.get(0)?,
        transition: r.get(1)?,
        details: serde_json::from_str(&details).unwrap_or(Value::String(details)),
    })
}

pub(super) fn has_table(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}
