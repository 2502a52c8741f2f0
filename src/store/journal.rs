//! The durable record of every claimed file: SQLite in WAL mode at `state_dir/journal.sqlite`.
//!
//! A file's row is written right after the claim and before its submit; the `document_id` is
//! stored the moment the submit returns, in the `documents` table (every document the API
//! gave us, with the content and request it answers, and why it was not used if it was not),
//! before anything else is decided about it. Each change of stage is one transaction, committed
//! with `synchronous=FULL`, so after a power cut the journal says exactly how far each file
//! got. Each such transaction also appends the file's history line ([`history`]), so the
//! history never disagrees with the row. Operators can read it with
//! `sqlite3 journal.sqlite 'select * from files'`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

#[doc(hidden)]
pub mod bench_fill;
mod deliveries;
pub mod fail_points;
pub mod history;
mod record;
mod review;
pub use deliveries::{Delivery, DeliveryCounts, DeliveryKind, DeliveryState, NewOutcome};
use history::transition;
pub use review::{Decided, InterruptedDecision, OutcomeOf, ReviewDecision};

/// Row id of a file in the journal.
pub type FileId = i64;

pub use crate::lifecycle::Stage;

/// A journal row whose stage this daemon does not know (written by another version, or
/// edited by hand). Reading the unfinished rows fails with it, so the daemon does not start:
/// it cannot tell whether the file was sent, and a guess could pay twice or lose the result.
#[derive(Debug, thiserror::Error)]
#[error(
    "journal row {id} ({name}, work file {work_path}) has the stage \"{stage}\", which this daemon does not know (written by another version, or edited by hand?); refusing to guess whether it was sent. Run the version that wrote it, or set the row's stage with sqlite3 (journal.sqlite in daemon.state_dir) to one of: claimed (not sent), submitted (has a document_id), done, failed"
)]
pub struct UnknownStage {
    pub id: FileId,
    pub name: String,
    pub work_path: PathBuf,
    pub stage: String,
}

/// One file's row.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: FileId,
    /// The inbox folder it came from (identifies the inbox in the config).
    pub inbox: PathBuf,
    /// Its name in the inbox, as the scanner wrote it.
    pub name: String,
    /// Where it waits while claimed.
    pub work_path: PathBuf,
    pub size: u64,
    pub sha256: Option<String>,
    pub stage: Stage,
    pub document_id: Option<String>,
    pub detected_at: SystemTime,
    pub claimed_at: SystemTime,
    pub submitted_at: Option<SystemTime>,
    pub submit_attempts: u32,
    /// Set once the outcome is decided: where the original goes.
    pub final_path: Option<PathBuf>,
    /// Set once the outcome is decided: the sidecar to write, as JSON text.
    pub sidecar: Option<String>,
    /// When this file's content was answered from an earlier document: that document's id.
    pub duplicate_of: Option<String>,
    /// A document set (a folder), not a file.
    pub is_set: bool,
    /// A set's files once hashed, as JSON (`pipeline::set::Member`s in the order sent).
    pub set_files: Option<String>,
}

/// What the claim stage knows when it records a file.
#[derive(Debug, Clone)]
pub struct NewClaim {
    pub inbox: PathBuf,
    pub name: String,
    pub work_path: PathBuf,
    pub size: u64,
    pub detected_at: SystemTime,
    pub claimed_at: SystemTime,
    /// A document set (a folder), not a file.
    pub set: bool,
}

/// Whether the API already has a document for the same request (same content, same
/// `process_info` and project). A request that may be on its way right now is not the
/// journal's business: the submit stage keeps those in memory, only for files it is driving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SameContent {
    /// The API has a document for this content, asked for the same way: answer from it.
    Document {
        document_id: String,
        name: String,
        /// The document was paid for by this very file (an answer recorded but not used, or
        /// not yet marked as its own): it is the file's own submit, not a duplicate.
        ours: bool,
    },
    None,
}

/// A document the API gave for a file whose answer was not used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superseded {
    pub document_id: String,
    pub why: String,
}

/// An original in failed/ or review/ that `requeue` puts back into its inbox.
#[derive(Debug, Clone)]
pub struct Requeue {
    /// Its path in failed/ or review/ (the row's `final_path`).
    pub from: PathBuf,
    /// Its path in the inbox.
    pub to: PathBuf,
    /// Its sidecar, removed once the requeue is recorded (its content kept in the history).
    pub sidecar: PathBuf,
    pub sidecar_json: String,
    /// The documents its sidecar names (`document_id`, `duplicate_of`, `superseded`).
    pub documents: Vec<String>,
}

/// What [`Journal::requeue`] did.
#[derive(Debug)]
pub enum Requeued {
    /// Recorded and moved; the file's row id, `None` when the journal no longer has it
    /// (pruned after keep_history).
    Moved(Option<FileId>),
    /// The journal's newest row for this original is not finished in failed/ or review/
    /// (its stage is given): nothing recorded, nothing moved.
    NotFinished(String),
    /// The move itself failed: nothing recorded.
    MoveFailed(std::io::Error),
}

/// One inbox's numbers for `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboxCounts {
    pub inbox: PathBuf,
    pub claimed: u64,
    pub submitting: u64,
    pub polling: u64,
    pub done_today: u64,
    pub failed_today: u64,
    pub lost: u64,
    pub oldest_claimed: Option<SystemTime>,
    pub review_today: u64,
}

/// Retries a journal write until it is stored or the daemon stops. A full or read-only
/// state_dir must not lose a file: the caller waits here, logged once per distinct error.
pub async fn until_stored<T, F, Fut>(
    stop: &tokio_util::sync::CancellationToken,
    what: &str,
    write: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    crate::retry::until_ok(
        stop,
        JOURNAL_BACKOFF,
        write,
        |text| {
            tracing::error!(
                "cannot write the journal ({what}): {text}; retrying until it works (is daemon.state_dir full or read-only?)"
            )
        },
        || tracing::info!("journal writable again ({what})"),
    )
    .await
}

/// Waits between tries of a journal write that keeps failing.
const JOURNAL_BACKOFF: crate::retry::Backoff =
    crate::retry::Backoff::exponential(Duration::from_millis(200), Duration::from_secs(30));

/// A handle to the journal; clones share one connection.
#[derive(Clone)]
pub struct Journal {
    conn: Arc<Mutex<Connection>>,
    /// Rung when a finish records deliveries, so the delivering task need not poll.
    deliveries_added: Arc<tokio::sync::Notify>,
    /// Pinged after every call that changed a row (see [`Journal::changed`]).
    changed: Arc<tokio::sync::Notify>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS files (
    id              INTEGER PRIMARY KEY,
    inbox           TEXT NOT NULL,
    name            TEXT NOT NULL,
    work_path       TEXT NOT NULL,
    size            INTEGER NOT NULL,
    sha256          TEXT,
    stage           TEXT NOT NULL,
    document_id     TEXT,
    detected_at     INTEGER NOT NULL,
    claimed_at      INTEGER NOT NULL,
    submitted_at    INTEGER,
    submit_attempts INTEGER NOT NULL DEFAULT 0,
    final_path      TEXT,
    sidecar         TEXT,
    finished_at     INTEGER,
    updated_at      INTEGER NOT NULL,
    duplicate_of    TEXT
);
CREATE INDEX IF NOT EXISTS files_stage ON files(stage);
CREATE INDEX IF NOT EXISTS files_sha256 ON files(sha256);
CREATE INDEX IF NOT EXISTS files_finished ON files(finished_at);
CREATE TABLE IF NOT EXISTS documents (
    document_id     TEXT PRIMARY KEY,
    file_id         INTEGER NOT NULL,
    sha256          TEXT NOT NULL,
    request         TEXT NOT NULL,
    received_at     INTEGER NOT NULL,
    superseded      TEXT
);
CREATE INDEX IF NOT EXISTS documents_content ON documents(sha256, request);
CREATE INDEX IF NOT EXISTS documents_file ON documents(file_id);
";

/// Indexes added for a journal of a year's files (a million rows and their history): every
/// query the daemon runs while pacing, at start, for `status` and for `explain` looks rows
/// up through one of these instead of reading the whole table. `IF NOT EXISTS`: a journal
/// from an older daemon gains them at its first open ([`add_missing_indexes`]: built once,
/// seconds per million rows); an older daemon opening a journal that has them simply
/// ignores them. Append to this list; never change an entry (its name is its identity).
const SCALE_INDEXES: &[(&str, &str)] = &[
    (
        "files_unfinished",
        "ON files(id) WHERE stage NOT IN ('done', 'review', 'failed', 'lost')",
    ),
    ("files_final_path", "ON files(final_path)"),
    (
        "files_final_name",
        "ON files(substr(final_path, length(rtrim(final_path, replace(final_path, '/', ''))) + 1))",
    ),
    ("files_name", "ON files(name)"),
    ("files_work_path", "ON files(work_path)"),
    ("files_document", "ON files(document_id)"),
    (
        "files_ready",
        "ON files(request, id) WHERE ready_ms IS NOT NULL",
    ),
    // An earlier review decision on a path (the reviewed lines only).
    (
        "history_reviews",
        "ON history(json_extract(details, '$.from'), id) WHERE transition = 'reviewed'",
    ),
    // Deliveries that are over, for their prune.
    (
        "deliveries_ended",
        "ON deliveries(updated_at) WHERE state != 'waiting'",
    ),
];

/// Creates each of [`SCALE_INDEXES`] the journal lacks, each in its own transaction (one
/// built before a kill is kept), saying so in the log and to systemd (whose start timeout is
/// extended meanwhile): a journal of a million rows takes seconds per index, once.
fn add_missing_indexes(conn: &mut Connection) -> rusqlite::Result<()> {
    for (name, definition) in SCALE_INDEXES {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let have: bool = tx.query_row(
            "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'index' AND name = ?1",
            [name],
            |r| r.get(0),
        )?;
        if !have {
            let started = std::time::Instant::now();
            tracing::info!("the journal gains the index {name} (once, after an upgrade)");
            crate::systemd::building(&format!("building the journal's index {name} (once)"));
            tx.execute_batch(&format!("CREATE INDEX IF NOT EXISTS {name} {definition};"))?;
            tracing::info!(
                "journal index {name} built in {}",
                humantime::format_duration(Duration::from_millis(
                    started.elapsed().as_millis() as u64
                ))
            );
        }
        tx.commit()?;
    }
    Ok(())
}

/// Rows not yet finished (the `files_unfinished` index's condition, written the same way
/// so that SQLite uses it).
const UNFINISHED: &str = "stage NOT IN ('done', 'review', 'failed', 'lost')";

/// A finished row's final name (the last part of `final_path`), as `files_final_name`
/// indexes it: built-in functions only, so `sqlite3` reads and writes the journal too.
pub const FINAL_NAME: &str =
    "substr(final_path, length(rtrim(final_path, replace(final_path, '/', ''))) + 1)";

/// Columns added after the first layout, as `(name, declaration)`: a journal written by an
/// older daemon gains them at open (`ALTER TABLE ... ADD COLUMN`), a new one has them at once.
/// Append to this list; never change or remove an entry.
const ADDED_COLUMNS: &[(&str, &str)] = &[
    // Time spent asking for the result (ms), so `result_timeout` survives a restart without
    // counting the downtime.
    ("poll_asked_ms", "INTEGER NOT NULL DEFAULT 0"),
    // What was asked for this content (canonical `process_info` and project, see
    // `submit::request_key`): the duplicate rule matches content *and* request.
    ("request", "TEXT"),
    // "set" for a document set (a folder sent as one request); NULL for a file.
    ("kind", "TEXT"),
    // A set's files once hashed: JSON [{name, sha256, size, type, key, stages, relation}].
    ("set_files", "TEXT"),
    // When the result was found ready, in ms after the submit (the first 200), and the last
    // ask before it that was still pending (425), if any: the service's time lies between.
    // The poll stage learns from them when to ask (see `pipeline::ready_times`).
    ("ready_ms", "INTEGER"),
    ("pending_ms", "INTEGER"),
    // How many times the result was asked for, and how many answers were 425 (still
    // processing): the history's one "polled" line is written from them when polling ends.
    ("polls", "INTEGER NOT NULL DEFAULT 0"),
    ("polls_pending", "INTEGER NOT NULL DEFAULT 0"),
];

/// Adds each of [`ADDED_COLUMNS`] that the `files` table lacks (inside [`migrate`]'s write
/// transaction).
fn add_missing_columns(conn: &Connection) -> rusqlite::Result<()> {
    let mut have = Vec::new();
    {
        let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('files')")?;
        let names = stmt.query_map([], |r| r.get::<_, String>(0))?;
        for name in names {
            have.push(name?);
        }
    }
    for (name, declaration) in ADDED_COLUMNS {
        if !have.iter().any(|h| h == name) {
            conn.execute_batch(&format!(
                "ALTER TABLE files ADD COLUMN {name} {declaration};"
            ))?;
        }
    }
    Ok(())
}

/// Creates the tables and adds [`ADDED_COLUMNS`] in one write transaction, taken before the
/// layout is read: two processes opening one journal at once (the daemon and `status`, or a
/// test's reader) take turns, so the second sees the first's columns instead of adding them
/// again ("duplicate column name"). Then the indexes of [`SCALE_INDEXES`] it lacks.
fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(SCHEMA)?;
    add_missing_columns(&tx)?;
    deliveries::create_table(&tx)?;
    history::create_table(&tx)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    add_missing_indexes(conn)
}

/// Layout version in `PRAGMA user_version`; a journal from a newer daemon is not touched.
const SCHEMA_VERSION: i64 = 1;

impl Journal {
    /// Opens (creating if needed) the journal in `state_dir`, which is created with mode 0700.
    pub fn open(state_dir: &Path) -> anyhow::Result<Journal> {
        crate::store::fsutil::create_dir_all_mode(state_dir, 0o700).map_err(|e| {
            anyhow::anyhow!(
                "cannot create state folder {} (daemon.state_dir): {e}",
                state_dir.display()
            )
        })?;
        // An existing folder keeps whatever mode it was made with: tighten it (it holds file
        // names and document ids).
        use std::os::unix::fs::PermissionsExt;
        if let Err(e) = std::fs::set_permissions(state_dir, std::fs::Permissions::from_mode(0o700))
        {
            tracing::warn!(
                "cannot make the state folder {} private (mode 0700): {e}",
                state_dir.display()
            );
        }
        let path = crate::store::layout::journal_path(state_dir);
        let mut conn = Connection::open(&path)
            .map_err(|e| anyhow::anyhow!("cannot open journal {}: {e}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(5))?;
        fail_points::install(&conn);
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            anyhow::bail!(
                "journal {} was written by a newer beorg-hotfolder (layout {version}); upgrade this one",
                path.display()
            );
        }
        migrate(&mut conn)?;
        restrict_journal_files(state_dir);
        Ok(Journal {
            conn: Arc::new(Mutex::new(conn)),
            deliveries_added: Arc::default(),
            changed: Default::default(),
        })
    }

    /// Runs `f` on the connection in the blocking pool.
    async fn with<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (conn, changed) = (self.conn.clone(), self.changed.clone());
        let out = tokio::task::spawn_blocking(move || {
            let guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            let before = guard.total_changes();
            let out = f(&guard);
            fail_points::committed();
            if guard.total_changes() != before {
                changed.notify_one();
            }
            out
        })
        .await?;
        out.map_err(|e| match e {
            // A row this daemon cannot read says so itself (which row, what to do).
            rusqlite::Error::FromSqlConversionFailure(_, _, inner)
                if inner.is::<UnknownStage>() =>
            {
                match inner.downcast::<UnknownStage>() {
                    Ok(unknown) => anyhow::Error::new(*unknown),
                    Err(inner) => anyhow::anyhow!(inner),
                }
            }
            e => e.into(),
        })
    }

    /// Resolves after a row was written (inserted, updated or deleted) through this journal,
    /// at once if one was since the last call: the status snapshot is rewritten only then.
    /// Meant for one listener.
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// Records a file (or, with `c.set`, a document set) just claimed into a work folder:
    /// the row and its "claimed" line, the birth of its lifecycle.
    pub async fn insert_claimed(&self, c: NewClaim) -> anyhow::Result<FileId> {
        let kind = c.set.then_some("set");
        self.insert(c, kind).await
    }

    async fn insert(&self, c: NewClaim, kind: Option<&'static str>) -> anyhow::Result<FileId> {
        self.with(move |conn| {
            let tx = conn.unchecked_transaction()?;
            let id = insert_row(&tx, &c, kind, SystemTime::now())?;
            tx.commit()?;
            Ok(id)
        })
        .await
    }

    /// The documents paid for file `id` that answer content `sha256` and are not superseded.
    pub async fn documents_answering(
        &self,
        id: FileId,
        sha256: String,
    ) -> anyhow::Result<Vec<String>> {
        self.with(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT document_id FROM documents
                 WHERE file_id = ?1 AND sha256 = ?2 AND superseded IS NULL
                 ORDER BY received_at, rowid",
            )?;
            let rows = stmt.query_map(params![id, sha256], |r| r.get(0))?;
            rows.collect()
        })
        .await
    }

    /// The documents paid for file `id` whose answers it does not use, oldest first.
    pub async fn superseded_of(&self, id: FileId) -> anyhow::Result<Vec<Superseded>> {
        self.with(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT document_id, superseded FROM documents
                 WHERE file_id = ?1 AND superseded IS NOT NULL ORDER BY received_at, rowid",
            )?;
            let rows = stmt.query_map([id], |r| {
                Ok(Superseded {
                    document_id: r.get(0)?,
                    why: r.get(1)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Records `r` and calls `make_move` (the move into the inbox and the sidecar's removal)
    /// inside one write transaction, so that once it is committed nothing is left to do: the
    /// requeue is stored only if the move happened, and a move whose record cannot be
    /// committed is undone (the original moved back, its sidecar written again from
    /// `r.sidecar_json`). Every document of the requeued outcome (the row's own
    /// and those its sidecar names) no longer answers the duplicate rule before a submit
    /// (the `requeued_documents` table): the file is sent again, as the operator asked.
    pub async fn requeue<M>(&self, r: Requeue, make_move: M) -> anyhow::Result<Requeued>
    where
        M: FnOnce() -> std::io::Result<()> + Send + 'static,
    {
        self.with(move |conn| {
            let tx = rusqlite::Transaction::new_unchecked(
                conn,
                rusqlite::TransactionBehavior::Immediate,
            )?;
            let newest = newest_row_at(&tx, &r.from)?;
            let may_go_back = |stage: &str| {
                Stage::parse(stage).is_some_and(|s| crate::lifecycle::requeue(s).is_ok())
            };
            if let Some((_, stage)) = newest.as_ref().filter(|(_, stage)| !may_go_back(stage)) {
                return Ok(Requeued::NotFinished(stage.clone()));
            }
            let row = newest.map(|(id, _)| id);
            let mut documents = r.documents.clone();
            if let Some(id) = row {
                let mut stmt = tx.prepare(
                    "SELECT document_id FROM files WHERE id = ?1 AND document_id IS NOT NULL
                     UNION SELECT document_id FROM documents WHERE file_id = ?1",
                )?;
                for document in stmt.query_map([id], |row| row.get::<_, String>(0))? {
                    documents.push(document?);
                }
            }
            documents.sort();
            documents.dedup();
            let now = ms(SystemTime::now());
            for document in &documents {
                tx.execute(
                    "INSERT OR IGNORE INTO requeued_documents (document_id, file_id, at) VALUES (?1, ?2, ?3)",
                    params![document, row, now],
                )?;
            }
            let details = serde_json::json!({
                "from": path_text(&r.from),
                "to": path_text(&r.to),
                "sidecar": path_text(&r.sidecar),
                "sidecar_json": serde_json::from_str::<serde_json::Value>(&r.sidecar_json)
                    .unwrap_or(serde_json::Value::String(r.sidecar_json.clone())),
                "documents": documents,
            });
            history::append(&tx, row, transition::REQUEUED, details)?;
            if let Err(e) = make_move() {
                return Ok(Requeued::MoveFailed(e));
            }
            if let Err(e) = tx.commit() {
                if let Err(undo) = crate::store::fsutil::rename_noclobber(&r.to, &r.from) {
                    tracing::error!(
                        "the requeue of {} could not be recorded ({e}) and moving it back failed ({undo}): it is in the inbox as {}",
                        r.from.display(),
                        r.to.display()
                    );
                } else if !crate::store::fsutil::exists(&r.sidecar) {
                    let written = crate::store::fsutil::write_new_file_atomic(
                        &r.sidecar,
                        r.sidecar_json.as_bytes(),
                        crate::store::fsutil::FILE_MODE,
                    );
                    if let Err(undo) = written {
                        tracing::error!(
                            "the requeue of {} could not be recorded ({e}); it was moved back, but its sidecar could not be written again ({undo}): its content is in the journal",
                            r.from.display()
                        );
                    }
                }
                return Err(e);
            }
            Ok(Requeued::Moved(row))
        })
        .await
    }

    /// Every file not yet done or failed, oldest claim first.
    pub async fn unfinished(&self) -> anyhow::Result<Vec<Record>> {
        self.with(|conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM files WHERE {UNFINISHED} ORDER BY id"
            ))?;
            let rows = stmt.query_map([], read_record)?;
            rows.collect()
        })
        .await
    }

    /// How long the daemon has been asking for this file's result, over all its runs.
    pub async fn poll_asked(&self, id: FileId) -> anyhow::Result<Duration> {
        self.with(move |conn| {
            let asked: Option<i64> = conn
                .query_row("SELECT poll_asked_ms FROM files WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .optional()?;
            Ok(Duration::from_millis(asked.unwrap_or(0).max(0) as u64))
        })
        .await
    }

    /// The ready times (pending, ready) of the last `limit` files sent as `request`, newest
    /// first: what the poll stage learns from.
    pub async fn ready_times(
        &self,
        request: String,
        limit: usize,
    ) -> anyhow::Result<Vec<(Option<Duration>, Duration)>> {
        let ms = |v: i64| Duration::from_millis(v.max(0) as u64);
        self.with(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT pending_ms, ready_ms FROM files WHERE request = ?1 AND ready_ms IS NOT NULL ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![request, limit as i64], |r| {
                Ok((r.get::<_, Option<i64>>(0)?.map(ms), ms(r.get(1)?)))
            })?;
            rows.collect()
        })
        .await
    }

    /// The earliest other file with the same content, asked for the same way (`request`),
    /// that the API has a document for: a duplicate is answered from it instead of paying
    /// again. A row written before requests were recorded counts as the same request when it
    /// came from the same inbox folder. Failing that, any document the API gave us for this
    /// content and request (see [`Journal::record_document`]), this file's own included: an
    /// answer that was not used when it came (the file was touched while it was sent, the
    /// daemon stopped before using it) still answers the same bytes.
    ///
    /// Documents of an outcome the operator requeued are skipped: the file is sent again
    /// (see [`Journal::requeue`]); [`Journal::same_content_after_conflict`] still uses them.
    pub async fn same_content(
        &self,
        id: FileId,
        sha256: String,
        request: String,
        inbox: PathBuf,
    ) -> anyhow::Result<SameContent> {
        self.with(move |conn| lookup_same_content(conn, id, &sha256, &request, &inbox, true))
            .await
    }

    /// Like [`Journal::same_content`], after the service answered 409 (it has this content
    /// and will not process it again): any document the journal has for it answers, a
    /// requeued outcome's included, rather than failing the file as a duplicate.
    pub async fn same_content_after_conflict(
        &self,
        id: FileId,
        sha256: String,
        request: String,
        inbox: PathBuf,
    ) -> anyhow::Result<SameContent> {
        self.with(move |conn| lookup_same_content(conn, id, &sha256, &request, &inbox, false))
            .await
    }

    /// What was asked when `document_id` was obtained, if the journal knows that document:
    /// `Some(None)` for a row from before requests were recorded.
    pub async fn request_of_document(
        &self,
        document_id: String,
    ) -> anyhow::Result<Option<Option<String>>> {
        self.with(move |conn| {
            let of_file: Option<Option<String>> = conn
                .query_row(
                    "SELECT request FROM files WHERE document_id = ?1 ORDER BY id LIMIT 1",
                    [&document_id],
                    |r| r.get(0),
                )
                .optional()?;
            if of_file.is_some() {
                return Ok(of_file);
            }
            conn.query_row(
                "SELECT request FROM documents WHERE document_id = ?1",
                [&document_id],
                |r| r.get::<_, String>(0).map(Some),
            )
            .optional()
        })
        .await
    }

    /// Forgets finished files older than `keep` (and with them their content hashes, their
    /// documents and their history), [`PRUNE_BATCH`] files per transaction: the journal is
    /// free between batches, so the pacer records its submits while a year is pruned.
    pub async fn prune(&self, keep: Duration) -> anyhow::Result<usize> {
        let cutoff = ms(SystemTime::now().checked_sub(keep).unwrap_or(UNIX_EPOCH));
        let mut forgotten = 0;
        loop {
            let batch = self
                .with(move |conn| prune_batch(conn, cutoff, PRUNE_BATCH))
                .await?;
            forgotten += batch;
            if batch < PRUNE_BATCH {
                break;
            }
            tokio::task::yield_now().await;
        }
        self.with(move |conn| prune_without_rows(conn, cutoff))
            .await?;
        Ok(forgotten)
    }

    /// Per inbox: how many files are at each stage, how many finished today (local time),
    /// and the oldest claimed-but-unsent file's detection time. Rewritten into the status
    /// snapshot after every change, so it reads only the rows it counts (the unfinished, the
    /// finished today, the lost) through their indexes, never the year behind them.
    pub async fn inbox_counts(&self) -> anyhow::Result<Vec<InboxCounts>> {
        self.with(|conn| {
            let mut counts: Vec<InboxCounts> = Vec::new();
            let mut rows: Vec<(String, String, u64, Option<i64>)> = Vec::new();
            for sql in [
                format!(
                    "SELECT inbox, stage, COUNT(*), MIN(detected_at) FROM files
                     WHERE {UNFINISHED} GROUP BY inbox, stage"
                ),
                // Today, local time: from this midnight to the next (as the local clock says),
                // through `files_finished` (`+stage`: not through every done file's stage).
                "SELECT inbox, stage, COUNT(*), NULL FROM files
                 WHERE finished_at >= CAST(strftime('%s', date('now', 'localtime'), 'utc') AS INTEGER) * 1000
                   AND finished_at < CAST(strftime('%s', date('now', 'localtime', '+1 day'), 'utc') AS INTEGER) * 1000
                   AND +stage IN ('done', 'failed', 'review')
                 GROUP BY inbox, stage"
                    .to_string(),
                "SELECT inbox, stage, COUNT(*), NULL FROM files WHERE stage = 'lost' GROUP BY inbox"
                    .to_string(),
            ] {
                let mut stmt = conn.prepare(&sql)?;
                let found = stmt.query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64, r.get(3)?))
                })?;
                for row in found {
                    rows.push(row?);
                }
            }
            for (inbox, stage, n, oldest) in rows {
                let c = counts_of(&mut counts, PathBuf::from(inbox));
                match stage.as_str() {
                    "claimed" | "submitting" => {
                        let oldest = oldest.map(from_ms);
                        c.oldest_claimed = [c.oldest_claimed, oldest].into_iter().flatten().min();
                        if stage == "claimed" {
                            c.claimed += n
                        } else {
                            c.submitting += n
                        }
                    }
                    "submitted" | "finishing" => c.polling += n,
                    "done" => c.done_today += n,
                    "failed" => c.failed_today += n,
                    "review" => c.review_today += n,
                    "lost" => c.lost += n,
                    _ => {}
                }
            }
            Ok(counts)
        })
        .await
    }
}

/// `inbox`'s entry in `counts`, added if it has none yet.
fn counts_of(counts: &mut Vec<InboxCounts>, inbox: PathBuf) -> &mut InboxCounts {
    let at = match counts.iter().position(|c| c.inbox == inbox) {
        Some(at) => at,
        None => {
            counts.push(InboxCounts {
                inbox,
                ..InboxCounts::default()
            });
            counts.len() - 1
        }
    };
    &mut counts[at]
}

/// How many finished files one prune transaction forgets (each with its documents and its
/// dozen history lines): a few milliseconds of the journal's time, so a submit waiting to be
/// recorded waits no longer than that.
pub(super) const PRUNE_BATCH: usize = 100;

/// Forgets up to `limit` of the finished files that finished before `cutoff` (oldest
/// first), with their documents and history, in one transaction; returns how many.
fn prune_batch(conn: &Connection, cutoff: i64, limit: usize) -> rusqlite::Result<usize> {
    let tx = conn.unchecked_transaction()?;
    let ids: Vec<FileId> = {
        // `+stage`: found through `files_finished` (the oldest finish times), not by stage.
        let mut stmt = tx.prepare_cached(
            "SELECT id FROM files WHERE finished_at < ?1
               AND +stage IN ('done', 'review', 'failed', 'lost')
             ORDER BY finished_at LIMIT ?2",
        )?;
        stmt.query_map(params![cutoff, limit as i64], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?
    };
    for id in &ids {
        for sql in [
            "DELETE FROM documents WHERE file_id = ?1",
            "DELETE FROM history WHERE file_id = ?1",
            "DELETE FROM files WHERE id = ?1",
        ] {
            tx.prepare_cached(sql)?.execute([id])?;
        }
    }
    tx.commit()?;
    Ok(ids.len())
}

/// After the rows: a requeue recorded without a row (its row was pruned before) goes after
/// keep_history like the rows, and a requeued document nothing names any more is forgotten.
fn prune_without_rows(conn: &Connection, cutoff: i64) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    tx.execute(
        "DELETE FROM history WHERE file_id IS NULL AND at < ?1",
        [cutoff],
    )?;
    tx.execute(
        "DELETE FROM requeued_documents WHERE
            NOT EXISTS (SELECT 1 FROM files f WHERE f.document_id = requeued_documents.document_id)
            AND NOT EXISTS (SELECT 1 FROM documents d WHERE d.document_id = requeued_documents.document_id)",
        [],
    )?;
    tx.commit()
}

/// Inserts a claimed file's row and its "claimed" line, written at `now` (inside the
/// caller's transaction).
fn insert_row(
    tx: &Connection,
    c: &NewClaim,
    kind: Option<&'static str>,
    now: SystemTime,
) -> rusqlite::Result<FileId> {
    tx.execute(
        "INSERT INTO files (inbox, name, work_path, size, stage, detected_at, claimed_at, updated_at, kind)
         VALUES (?1, ?2, ?3, ?4, 'claimed', ?5, ?6, ?7, ?8)",
        params![
            path_text(&c.inbox),
            c.name,
            path_text(&c.work_path),
            c.size as i64,
            ms(c.detected_at),
            ms(c.claimed_at),
            ms(now),
            kind,
        ],
    )?;
    let id = tx.last_insert_rowid();
    let details = serde_json::json!({
        "from": path_text(&c.inbox.join(&c.name)),
        "work_path": path_text(&c.work_path),
        "size": c.size,
        "seen_ms": ms(c.detected_at),
        "set": kind == Some("set"),
    });
    history::append_at(tx, Some(id), now, transition::CLAIMED, details)?;
    Ok(id)
}

/// The newest row whose original was finished at `final_path`, with its stage: the one a
/// `requeue` or a review decision on that original acts on.
fn newest_row_at(
    conn: &Connection,
    final_path: &Path,
) -> rusqlite::Result<Option<(FileId, String)>> {
    conn.query_row(
        "SELECT id, stage FROM files WHERE final_path = ?1 ORDER BY id DESC LIMIT 1",
        [path_text(final_path)],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .optional()
}

/// Sets the row's final stage at `at`; returns the stage it had (`None`: no such row).
fn finish_row(
    tx: &rusqlite::Transaction<'_>,
    id: FileId,
    stage: Stage,
    at: SystemTime,
) -> rusqlite::Result<Option<String>> {
    let was: Option<String> = tx
        .query_row("SELECT stage FROM files WHERE id = ?1", [id], |r| r.get(0))
        .optional()?;
    let at = ms(at);
    tx.execute(
        "UPDATE files SET stage = ?2, finished_at = ?3, updated_at = ?3 WHERE id = ?1",
        params![id, stage.as_str(), at],
    )?;
    Ok(was)
}

/// The duplicate rule's lookup (see [`Journal::same_content`]); `skip_requeued` leaves out
/// the documents of requeued outcomes.
fn lookup_same_content(
    conn: &Connection,
    id: FileId,
    sha256: &str,
    request: &str,
    inbox: &Path,
    skip_requeued: bool,
) -> rusqlite::Result<SameContent> {
    let with_document: Option<(String, String)> = conn
        .query_row(
            "SELECT document_id, name FROM files
             WHERE sha256 = ?1 AND id != ?2 AND document_id IS NOT NULL
               AND (request = ?3 OR (request IS NULL AND inbox = ?4))
               AND NOT (?5 AND document_id IN (SELECT document_id FROM requeued_documents))
             ORDER BY id LIMIT 1",
            params![sha256, id, request, path_text(inbox), skip_requeued],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((document_id, name)) = with_document {
        return Ok(SameContent::Document {
            document_id,
            name,
            ours: false,
        });
    }
    let recorded: Option<(String, String, FileId)> = conn
        .query_row(
            "SELECT d.document_id, COALESCE(f.name, '?'), d.file_id FROM documents d
             LEFT JOIN files f ON f.id = d.file_id
             WHERE d.sha256 = ?1 AND d.request = ?2
               AND NOT (?4 AND d.document_id IN (SELECT document_id FROM requeued_documents))
             ORDER BY d.file_id = ?3 DESC, d.received_at LIMIT 1",
            params![sha256, request, id, skip_requeued],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    Ok(match recorded {
        Some((document_id, name, file)) => SameContent::Document {
            document_id,
            name,
            ours: file == id,
        },
        None => SameContent::None,
    })
}

const COLUMNS: &str = "id, inbox, name, work_path, size, sha256, stage, document_id, detected_at,
    claimed_at, submitted_at, submit_attempts, final_path, sidecar, duplicate_of, kind, set_files";

fn read_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    let stage_text: String = row.get(6)?;
    let Some(stage) = Stage::parse(&stage_text) else {
        let unknown = UnknownStage {
            id: row.get(0)?,
            name: row.get(2)?,
            work_path: PathBuf::from(row.get::<_, String>(3)?),
            stage: stage_text,
        };
        return Err(rusqlite::Error::FromSqlConversionFailure(
            6,
            rusqlite::types::Type::Text,
            Box::new(unknown),
        ));
    };
    Ok(Record {
        id: row.get(0)?,
        inbox: PathBuf::from(row.get::<_, String>(1)?),
        name: row.get(2)?,
        work_path: PathBuf::from(row.get::<_, String>(3)?),
        size: row.get::<_, i64>(4)? as u64,
        sha256: row.get(5)?,
        stage,
        document_id: row.get(7)?,
        detected_at: from_ms(row.get(8)?),
        claimed_at: from_ms(row.get(9)?),
        submitted_at: row.get::<_, Option<i64>>(10)?.map(from_ms),
        submit_attempts: row.get::<_, i64>(11)? as u32,
        final_path: row.get::<_, Option<String>>(12)?.map(PathBuf::from),
        sidecar: row.get(13)?,
        duplicate_of: row.get(14)?,
        is_set: row.get::<_, Option<String>>(15)?.as_deref() == Some("set"),
        set_files: row.get(16)?,
    })
}

/// Journal and its WAL side files: owner only (they hold file names and document ids).
fn restrict_journal_files(state_dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for file in crate::store::layout::journal_files(state_dir) {
        match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
            // A side file SQLite has not created (yet) is created with the journal's mode.
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot make {} private (mode 0600): {e}", file.display()),
        }
    }
}

fn path_text(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn from_ms(v: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(v.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::record::testing::*;
    use super::*;
    use crate::lifecycle::Event;

    fn claim(name: &str) -> NewClaim {
        NewClaim {
            inbox: "/in".into(),
            name: name.into(),
            work_path: crate::store::layout::work_dir("/in".as_ref()).join(format!("1_{name}")),
            size: 10,
            detected_at: SystemTime::now(),
            claimed_at: SystemTime::now(),
            set: false,
        }
    }

    #[tokio::test]
    async fn stages_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let mut a = Driven::claim(&j, claim("a.jpg")).await;
        let mut b = Driven::claim(&j, claim("b.jpg")).await;
        a.on(&j, submitting("r")).await;
        a.on(&j, submitted("s-1")).await;
        b.on(&j, finishing("/done/b.jpg", "{}")).await;
        b.on(&j, finished(Stage::Done)).await;
        drop(j);

        let j = Journal::open(dir.path()).unwrap();
        let open = j.unfinished().await.unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].stage, Stage::Submitted);
        assert_eq!(open[0].document_id.as_deref(), Some("s-1"));
        assert_eq!(open[0].submit_attempts, 1);
    }

    #[tokio::test]
    async fn pruning_forgets_old_finished_files_but_never_unfinished_ones() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let mut old = Driven::claim(&j, claim("old.jpg")).await;
        old.on(&j, hashed("aa")).await;
        old.on(&j, submitting("r")).await;
        old.on(&j, submitted("s-1")).await;
        old.on(&j, finishing("/done/old.jpg", "{}")).await;
        old.on(&j, finished(Stage::Done)).await;
        let open = j.insert_claimed(claim("open.jpg")).await.unwrap();
        std::thread::sleep(Duration::from_millis(20));
        // Kept while younger than keep_history: still answers the duplicate rule.
        assert_eq!(j.prune(Duration::from_secs(3600)).await.unwrap(), 0);
        assert!(matches!(
            j.same_content(open, "aa".into(), "r".into(), "/in".into())
                .await
                .unwrap(),
            SameContent::Document { .. }
        ));
        assert_eq!(j.prune(Duration::from_millis(10)).await.unwrap(), 1);
        assert_eq!(
            j.same_content(open, "aa".into(), "r".into(), "/in".into())
                .await
                .unwrap(),
            SameContent::None
        );
        assert_eq!(
            j.unfinished().await.unwrap().len(),
            1,
            "the unfinished file stays"
        );
    }

    /// Finding 7: the same content asked for another way (another type, key, stages or
    /// project) is a new request; the same content asked the same way is answered from the
    /// journal; a row from before requests were recorded matches within its own inbox only.
    #[tokio::test]
    async fn the_duplicate_rule_matches_content_and_request() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let mut sent = Driven::claim(&j, claim("a.jpg")).await;
        sent.on(&j, submitting("PASSPORT")).await;
        sent.on(&j, submitted("s-1")).await;
        let later = j.insert_claimed(claim("b.jpg")).await.unwrap();
        let lookup = |request: &str, inbox: &str| {
            j.same_content(later, "aa".into(), request.into(), inbox.into())
        };
        // Content not hashed yet on the sent row: nothing matches.
        assert_eq!(lookup("PASSPORT", "/in").await.unwrap(), SameContent::None);
        // (Hashed after its submit: only a row written by hand has that order.)
        let mut resent = Driven::at(sent.id, Stage::Claimed);
        resent.on(&j, hashed("aa")).await;
        assert!(matches!(
            lookup("PASSPORT", "/in").await.unwrap(),
            SameContent::Document { document_id, .. } if document_id == "s-1"
        ));
        assert_eq!(lookup("SNILS", "/in").await.unwrap(), SameContent::None);
        assert_eq!(
            j.request_of_document("s-1".into()).await.unwrap(),
            Some(Some("PASSPORT".into()))
        );
        // An older daemon's row (no request recorded): the same inbox folder only.
        let mut old = Driven::claim(&j, claim("old.jpg")).await;
        old.on(&j, hashed("bb")).await;
        old.on(&j, submitted("s-0")).await;
        let other = |inbox: &str| j.same_content(later, "bb".into(), "X".into(), inbox.into());
        assert!(matches!(
            other("/in").await.unwrap(),
            SameContent::Document { .. }
        ));
        assert_eq!(other("/elsewhere").await.unwrap(), SameContent::None);
    }

    /// Every document the API gave is kept with the content and request it answers: it
    /// answers that content again (the file's own, as its own answer; another file's, as a
    /// duplicate), and a superseded one is listed with why until it is used after all.
    #[tokio::test]
    async fn recorded_documents_answer_their_content_and_keep_why_they_were_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let mut file_a = Driven::claim(&j, claim("a.jpg")).await;
        let a = file_a.id;
        file_a.on(&j, submitting("r")).await;
        file_a.on(&j, document("s-1", "aa", "r")).await;
        let superseded = Event::Superseded {
            document_id: "s-1".into(),
            why: "changed".into(),
        };
        file_a.on(&j, superseded).await;
        let why = j.superseded_of(a).await.unwrap();
        assert_eq!(why.len(), 1);
        assert_eq!(
            (why[0].document_id.as_str(), why[0].why.as_str()),
            ("s-1", "changed")
        );
        let own = j
            .same_content(a, "aa".into(), "r".into(), "/in".into())
            .await
            .unwrap();
        assert!(
            matches!(&own, SameContent::Document { document_id, ours: true, .. } if document_id == "s-1"),
            "{own:?}"
        );
        let b = j.insert_claimed(claim("b.jpg")).await.unwrap();
        let other = j
            .same_content(b, "aa".into(), "r".into(), "/in".into())
            .await
            .unwrap();
        assert!(
            matches!(&other, SameContent::Document { ours: false, name, .. } if name == "a.jpg"),
            "{other:?}"
        );
        assert_eq!(
            j.same_content(b, "aa".into(), "other".into(), "/in".into())
                .await
                .unwrap(),
            SameContent::None
        );
        assert_eq!(
            j.request_of_document("s-1".into()).await.unwrap(),
            Some(Some("r".into()))
        );
        // Used after all (its content came back): no longer superseded.
        file_a.on(&j, submitted("s-1")).await;
        assert!(j.superseded_of(a).await.unwrap().is_empty());
    }

    /// Two processes opening an older journal at once (the daemon starting, and `status` or
    /// a test) both find columns to add: only one adds them, neither fails.
    /// A journal written before the `request` column existed gains it at open.
    /// A folder with a journal of the first layout (no added column, no history).
    fn older_journal() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(crate::store::layout::journal_path(dir.path())).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        dir
    }

    #[tokio::test]
    async fn an_older_journal_gains_the_request_column() {
        let dir = older_journal();
        let j = Journal::open(dir.path()).unwrap();
        let mut file = Driven::claim(&j, claim("a.jpg")).await;
        file.on(&j, submitting("r")).await;
    }

    #[tokio::test]
    async fn poll_asking_time_survives_reopening_and_old_journals_gain_it() {
        let dir = tempfile::tempdir().unwrap();
        // A journal written before the column existed.
        {
            let conn = Connection::open(crate::store::layout::journal_path(dir.path())).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            conn.execute(
                "INSERT INTO files (inbox, name, work_path, size, stage, detected_at, claimed_at, updated_at)
                 VALUES ('/in', 'old.jpg', '/w', 1, 'submitted', 0, 0, 0)",
                [],
            )
            .unwrap();
        }
        let j = Journal::open(dir.path()).unwrap();
        let old = j.unfinished().await.unwrap()[0].id;
        assert_eq!(j.poll_asked(old).await.unwrap(), Duration::ZERO);
        let asked = Event::Asked {
            asked: Duration::from_millis(1500),
            still_processing: false,
        };
        Driven::at(old, Stage::Submitted).on(&j, asked).await;
        drop(j);
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(
            j.poll_asked(old).await.unwrap(),
            Duration::from_millis(1500)
        );
    }

    /// Issue 9, finding 9: a stage this daemon does not know is an error naming the row, never
    /// "claimed" (which would send the file again).
    #[tokio::test]
    async fn an_unknown_stage_is_an_error_naming_the_row() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let id = j.insert_claimed(claim("a.jpg")).await.unwrap();
        for stage in ["claimed", "submitting", "submitted", "finishing"] {
            j.with(move |conn| {
                conn.execute(
                    "UPDATE files SET stage = ?2 WHERE id = ?1",
                    params![id, stage],
                )
            })
            .await
            .unwrap();
            assert_eq!(j.unfinished().await.unwrap()[0].stage.as_str(), stage);
        }
        j.with(move |conn| conn.execute("UPDATE files SET stage = 'parked' WHERE id = ?1", [id]))
            .await
            .unwrap();
        let error = j.unfinished().await.unwrap_err();
        let unknown = error
            .downcast_ref::<UnknownStage>()
            .unwrap_or_else(|| panic!("not an UnknownStage: {error:#}"));
        assert_eq!((unknown.id, unknown.stage.as_str()), (id, "parked"));
        let text = format!("{error:#}");
        assert!(
            text.starts_with(&format!(
                "journal row {id} (a.jpg, work file /in/.beorg-work/1_a.jpg)"
            )),
            "{text}"
        );
    }

    /// Seen as a flaky test: a tool opening the journal while the daemon opened it failed
    /// with "duplicate column name" (both added the same missing column).
    #[test]
    fn journals_opened_at_the_same_moment_add_missing_columns_once() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            // A journal from before the added columns (written by a daemon: WAL mode).
            let old = Connection::open(crate::store::layout::journal_path(dir.path())).unwrap();
            old.pragma_update(None, "journal_mode", "WAL").unwrap();
            old.execute_batch(SCHEMA).unwrap();
            drop(old);
            let start = Arc::new(std::sync::Barrier::new(4));
            let openers: Vec<_> = (0..4)
                .map(|_| {
                    let (dir, start) = (dir.path().to_path_buf(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        Journal::open(&dir).map(|_| ()).map_err(|e| e.to_string())
                    })
                })
                .collect();
            for opener in openers {
                opener.join().unwrap().unwrap();
            }
        }
    }

    fn transitions(j: &Journal, id: FileId) -> Vec<String> {
        let conn = j.conn.lock().unwrap();
        history::of_file(&conn, id)
            .unwrap()
            .into_iter()
            .map(|l| l.transition)
            .collect()
    }

    /// Each change of a file's row appends its history line in the same transaction; a
    /// repeated finish adds none; pruning removes the lines with the row.
    #[tokio::test]
    async fn each_change_of_a_row_appends_its_history_line_and_pruning_removes_them() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let mut file = Driven::claim(&j, claim("a.jpg")).await;
        let id = file.id;
        file.on(&j, hashed("aa")).await;
        file.on(&j, Event::Preflight { refused: None }).await;
        file.on(&j, submitting("r")).await;
        let reason = "HTTP 503 (busy): try 2 of 4".into();
        file.on(&j, Event::NotSent { reason }).await;
        file.on(&j, submitting("r")).await;
        let paid = file.on(&j, document("s-1", "aa", "r")).await;
        // The same document stored again (a retry after an unclear commit): no second line.
        j.record(id, paid).await.unwrap();
        file.on(&j, submitted("s-1")).await;
        for (ms, still_processing) in [(100, true), (300, false)] {
            let asked = Duration::from_millis(ms);
            let event = Event::Asked {
                asked,
                still_processing,
            };
            file.on(&j, event).await;
        }
        let sidecar =
            r#"{"status":"failed","error":{"kind":"broken","http_status":null,"message":"m"}}"#;
        file.on(&j, finishing("/failed/a.jpg", sidecar)).await;
        let done = file.on(&j, finished(Stage::Failed)).await;
        j.record(id, done).await.unwrap();
        assert_eq!(
            transitions(&j, id),
            [
                "claimed",
                "hashed",
                "preflight",
                "submitting",
                "not_sent",
                "submitting",
                "document",
                "submitted",
                "polled",
                "finishing",
                "finished"
            ]
        );
        let lines = {
            let conn = j.conn.lock().unwrap();
            history::of_file(&conn, id).unwrap()
        };
        let polled = &lines[8].details;
        assert_eq!(
            (polled["asks"].as_i64(), polled["still_processing"].as_i64()),
            (Some(2), Some(1))
        );
        assert_eq!(lines[9].details["kind"], "broken");
        assert_eq!(lines[10].details["sidecar"], "/failed/a.jpg.json");
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(j.prune(Duration::from_millis(10)).await.unwrap(), 1);
        assert!(transitions(&j, id).is_empty(), "pruned with its row");
    }

    /// A requeued outcome's documents no longer answer its content before a submit (the
    /// file is sent again), but still do after the service's 409; the requeue is in the
    /// history, and only recorded when the move happened.
    #[tokio::test]
    async fn a_requeued_outcome_answers_its_content_only_after_a_409() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let mut file = Driven::claim(&j, claim("a.jpg")).await;
        let first = file.id;
        file.on(&j, hashed("aa")).await;
        file.on(&j, submitting("r")).await;
        file.on(&j, document("s-1", "aa", "r")).await;
        file.on(&j, submitted("s-1")).await;
        file.on(&j, finishing("/failed/a.jpg", "{}")).await;
        file.on(&j, finished(Stage::Failed)).await;
        let requeue = |moved: bool| Requeue {
            from: "/failed/a.jpg".into(),
            to: "/in/a.jpg".into(),
            sidecar: "/failed/a.jpg.json".into(),
            sidecar_json: format!("{{\"moved\": {moved}}}"),
            documents: Vec::new(),
        };
        let refused = j
            .requeue(requeue(false), || {
                Err(std::io::ErrorKind::AlreadyExists.into())
            })
            .await
            .unwrap();
        assert!(matches!(refused, Requeued::MoveFailed(_)), "{refused:?}");
        assert!(!transitions(&j, first).contains(&"requeued".to_string()));
        let again = j.insert_claimed(claim("a.jpg")).await.unwrap();
        let before = j
            .same_content(again, "aa".into(), "r".into(), "/in".into())
            .await
            .unwrap();
        assert!(
            matches!(before, SameContent::Document { .. }),
            "not requeued yet"
        );

        let done = j.requeue(requeue(true), || Ok(())).await.unwrap();
        assert!(
            matches!(done, Requeued::Moved(Some(id)) if id == first),
            "{done:?}"
        );
        assert_eq!(
            transitions(&j, first).last().map(String::as_str),
            Some("requeued")
        );
        assert_eq!(
            j.same_content(again, "aa".into(), "r".into(), "/in".into())
                .await
                .unwrap(),
            SameContent::None,
            "sent again"
        );
        let after_409 = j
            .same_content_after_conflict(again, "aa".into(), "r".into(), "/in".into())
            .await
            .unwrap();
        assert!(
            matches!(&after_409, SameContent::Document { document_id, .. } if document_id == "s-1"),
            "{after_409:?}"
        );
    }

    /// A journal written before the history existed gains its tables at open and keeps
    /// working.
    #[tokio::test]
    async fn an_older_journal_gains_the_history_table() {
        let dir = older_journal();
        let j = Journal::open(dir.path()).unwrap();
        let id = j.insert_claimed(claim("a.jpg")).await.unwrap();
        assert_eq!(transitions(&j, id), ["claimed"]);
    }

    /// A journal of `files` finished files and their history, through the journal's own code.
    fn year_of(j: &Journal, files: usize) {
        let now = SystemTime::now();
        let work = bench_fill::YearOfWork {
            inbox: "/in".into(),
            done: "/done".into(),
            files,
            from: now - Duration::from_secs(365 * 24 * 3600),
            to: now - Duration::from_secs(3600),
        };
        bench_fill::fill(j, &work).unwrap();
    }

    /// SQLite virtual-machine steps taken by the journal's connection while `run` runs: a
    /// read of every row of a table takes at least one step per row.
    async fn steps<T, F: std::future::Future<Output = T>>(j: &Journal, run: F) -> (T, u64) {
        let counted = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = counted.clone();
        j.conn.lock().unwrap().progress_handler(
            1,
            Some(move || {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                false
            }),
        );
        let out = run.await;
        j.conn
            .lock()
            .unwrap()
            .progress_handler(1, None::<fn() -> bool>);
        (out, counted.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// A year of history (a million rows) must not be read whole by what the daemon does at
    /// start (the unfinished files), after every change (the status snapshot's counts), for
    /// each submit (the duplicate rule, the ready times), for a requeue or a review decision
    /// (the newest row at a path), or by an hourly prune with nothing to forget: each reads
    /// the few rows it needs through an index, whatever the journal's size.
    #[tokio::test]
    async fn the_daemons_queries_read_the_rows_they_need_not_the_whole_year() {
        const FILES: usize = 2000;
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        year_of(&j, FILES);
        let open = Driven::claim(&j, claim("new.jpg")).await.id;
        let other = r#"{"type":"SNILS"}"#.to_string();
        let mut read = Vec::new();
        read.push(("unfinished", steps(&j, j.unfinished()).await.1));
        read.push(("inbox_counts", steps(&j, j.inbox_counts()).await.1));
        read.push(("delivery_counts", steps(&j, j.delivery_counts()).await.1));
        let same = j.same_content(open, "ff".into(), other.clone(), "/in".into());
        read.push(("same_content", steps(&j, same).await.1));
        let ready = j.ready_times(other.clone(), 20);
        read.push(("ready_times", steps(&j, ready).await.1));
        let document = j.request_of_document("s-none".into());
        read.push(("request_of_document", steps(&j, document).await.1));
        let newest = j.with(|conn| newest_row_at(conn, Path::new("/done/scan-0001000.jpg")));
        read.push(("newest_row_at", steps(&j, newest).await.1));
        let decided = j.with(|conn| {
            let tx = conn.unchecked_transaction()?;
            review::earlier_decision(&tx, Path::new("/review/scan-0001000.jpg")).map(|_| ())
        });
        read.push(("earlier review decision", steps(&j, decided).await.1));
        let prune = j.prune(Duration::from_secs(400 * 24 * 3600));
        read.push(("prune (nothing to forget)", steps(&j, prune).await.1));
        let deliveries = j.prune_deliveries(Duration::from_secs(400 * 24 * 3600));
        read.push(("prune_deliveries", steps(&j, deliveries).await.1));
        let whole: Vec<_> = read.iter().filter(|(_, n)| *n as usize >= FILES).collect();
        assert!(
            whole.is_empty(),
            "these read about every row of {FILES} files (steps): {whole:?}"
        );
        assert_eq!(j.inbox_counts().await.unwrap()[0].claimed, 1);
    }

    /// Pruning a year at once must not hold the journal until it is done: the pacer records
    /// its submits in between. Each batch is its own transaction; a write waiting for the
    /// journal gets it between two batches and sees part of the year already forgotten.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_prune_lets_other_writes_in_between_its_batches() {
        let files = PRUNE_BATCH * 6;
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        year_of(&j, files);
        let pruning = tokio::spawn({
            let j = j.clone();
            async move { j.prune(Duration::from_secs(3 * 24 * 3600)).await.unwrap() }
        });
        let mut seen = Vec::new();
        while !pruning.is_finished() {
            let id = j.insert_claimed(claim("meanwhile.jpg")).await.unwrap();
            let left: i64 = j
                .with(move |conn| {
                    conn.query_row(
                        "SELECT COUNT(*) FROM files WHERE id < ?1 AND stage = 'done'",
                        [id],
                        |r| r.get(0),
                    )
                })
                .await
                .unwrap();
            seen.push(left as usize);
        }
        let forgotten = pruning.await.unwrap();
        assert!(forgotten > files / 2, "{forgotten}");
        let between = seen
            .iter()
            .filter(|&&left| left > files - forgotten && left < files);
        assert!(
            between.count() > 0,
            "no write got in while {forgotten} files were pruned (rows left as each write saw them: {seen:?})"
        );
    }

    /// A journal from before the scale indexes gains them at open.
    #[tokio::test]
    async fn an_older_journal_gains_the_indexes_for_a_year_of_files() {
        let dir = older_journal();
        let j = Journal::open(dir.path()).unwrap();
        let names: Vec<String> = j
            .with(|conn| {
                let mut stmt = conn
                    .prepare("SELECT name FROM sqlite_master WHERE type = 'index' ORDER BY name")?;
                let names = stmt.query_map([], |r| r.get(0))?;
                names.collect()
            })
            .await
            .unwrap();
        for index in [
            "files_unfinished",
            "files_final_path",
            "files_final_name",
            "files_name",
        ] {
            assert!(names.iter().any(|n| n == index), "{index} not in {names:?}");
        }
    }

    #[tokio::test]
    async fn state_dir_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        Journal::open(&state).unwrap();
        let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
