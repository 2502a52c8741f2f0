//! `beorg-hotfolder explain <path | name | document id>`: what happened to a file, one line
//! per transition, from the journal's history ([`crate::store::journal::history`]).
//!
//! Read-only: the journal is opened with `SQLITE_OPEN_READ_ONLY` (WAL lets it read while
//! the daemon writes) and nothing is migrated or written. A file is found by a path it had
//! (its original in done/, review/ or failed/, its work copy, its place in the inbox), by its
//! name in the inbox (every match, newest first), or by a document id. A file the journal no
//! longer has, but whose sidecar is still in done/, review/ or failed/, is reported as pruned
//! after `keep_history`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::Serialize;
use serde_json::Value;

use crate::config::Config;
use crate::sidecar::Sidecar;
use crate::store::journal::history::{self, Line, transition};
use crate::store::layout;

/// One file's story: what `--json` prints, as an array of these (newest file first).
#[derive(Debug, Clone, Serialize)]
pub struct Story {
    /// The journal's row id; `null` when the row was pruned.
    pub file_id: Option<i64>,
    /// Its name in the inbox.
    pub name: String,
    pub inbox: String,
    /// Its stage in the journal (claimed, submitting, submitted, finishing, done, review,
    /// failed, lost); `null` when the row was pruned.
    pub stage: Option<String>,
    /// Where the original is (or goes) once finished.
    pub final_path: Option<String>,
    pub document_id: Option<String>,
    /// The journal no longer has this file (pruned after `keep_history`): what is known
    /// comes from its sidecar.
    pub pruned: bool,
    /// The sidecar a pruned file was found by.
    pub sidecar: Option<String>,
    /// Oldest first.
    pub history: Vec<Entry>,
}

/// One transition.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// RFC 3339, UTC.
    pub at: String,
    pub at_ms: i64,
    pub transition: String,
    /// The stored details (keys per transition: see the README).
    pub details: Value,
    /// The line `explain` prints for it, without the time.
    pub text: String,
}

/// The stories of every file `query` names; empty when it names none.
pub fn explain(config: &Config, query: &str) -> anyhow::Result<Vec<Story>> {
    let conn = open_read_only(&config.daemon.state_dir)?;
    let paths = candidate_paths(query);
    let mut stories = Vec::new();
    for id in matching_rows(&conn, query, &paths)? {
        stories.push(story_of_row(&conn, id)?);
    }
    if stories.is_empty() {
        stories = pruned_stories(&conn, config, query, &paths)?;
    }
    Ok(stories)
}

/// What `explain` prints for `stories`.
pub fn render(config: &Config, stories: &[Story]) -> String {
    let mut out = String::new();
    for (i, story) in stories.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&heading(config, story));
        for entry in &story.history {
            out.push_str(&format!(
                "{}  {:<15} {}\n",
                local_time(entry.at_ms, "%Y-%m-%d %H:%M:%S"),
                entry.transition,
                entry.text
            ));
        }
    }
    out
}

/// The message for a query that names no file.
pub fn unknown(config: &Config, query: &str) -> String {
    format!(
        "no file matches \"{query}\": the journal ({}) has no file by that path, name or document id, and no sidecar names it in a done/, review/ or failed/ folder. Give the name as the scanner wrote it (e.g. scan.jpg), the path of the original, or its document_id",
        layout::journal_path(&config.daemon.state_dir).display()
    )
}

fn heading(config: &Config, story: &Story) -> String {
    let place = story
        .final_path
        .as_deref()
        .map(|p| format!(", {p}"))
        .unwrap_or_default();
    if story.pruned {
        return format!(
            "{} (inbox {}){place}: its history was pruned after keep_history ({}): the journal no longer has it; its sidecar {} is all that is left\n",
            story.name,
            story.inbox,
            humantime::format_duration(config.daemon.keep_history),
            story.sidecar.as_deref().unwrap_or("?")
        );
    }
    format!(
        "{} (inbox {}): {}{place}\n",
        story.name,
        story.inbox,
        story.stage.as_deref().unwrap_or("?")
    )
}

fn open_read_only(state_dir: &Path) -> anyhow::Result<Connection> {
    let path = layout::journal_path(state_dir);
    if !path.exists() {
        anyhow::bail!(
            "no journal at {}: the daemon has not run with this config yet (or this user may not read daemon.state_dir: try sudo)",
            path.display()
        );
    }
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| anyhow::anyhow!("cannot open the journal {} ({e})", path.display()))?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

/// The paths a query may mean: as given (from the current folder) and with symlinks
/// resolved; a sidecar's path also means its original.
fn candidate_paths(query: &str) -> Vec<String> {
    let given = std::path::absolute(query).unwrap_or_else(|_| PathBuf::from(query));
    let mut paths = vec![given.clone()];
    if let Ok(real) = given.canonicalize() {
        paths.push(real);
    }
    for path in paths.clone() {
        if layout::is_sidecar(&path) {
            let text = path.to_string_lossy();
            let original = &text[..text.len() - layout::SIDECAR_SUFFIX.len()];
            paths.push(PathBuf::from(original));
        }
    }
    let mut texts: Vec<String> = paths
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    texts.dedup();
    texts
}

/// Row ids (newest first) of files that had one of `paths`, or whose name, final name or
/// document id is `query`. Each lookup goes through an index of the journal (a year of
/// files is a million rows): by final path, work path, name within its inbox folder, final
/// name (the last part of `final_path`) and document id.
fn matching_rows(conn: &Connection, query: &str, paths: &[String]) -> rusqlite::Result<Vec<i64>> {
    let mut ids = Vec::new();
    let mut by_path = conn.prepare(
        "SELECT id FROM files WHERE final_path = ?1 OR work_path = ?1
            OR (name = ?2 AND rtrim(inbox, '/') = ?3)",
    )?;
    for path in paths {
        // Its place in the inbox: an inbox folder, then the name below it (`scan.jpg`, or
        // `2026/11/scan.jpg` in a recursive inbox): every split at a slash.
        for (slash, _) in path.match_indices('/') {
            let (folder, name) = (path[..slash].trim_end_matches('/'), &path[slash + 1..]);
            let found = by_path.query_map(rusqlite::params![path, name, folder], |r| {
                r.get::<_, i64>(0)
            })?;
            for id in found {
                ids.push(id?);
            }
        }
    }
    // A final name, or a final path's tail (`2026/11/scan.jpg`): found by its last part,
    // which is the final name.
    let last = query.rsplit('/').next().unwrap_or(query);
    let mut by_name = conn.prepare(&format!(
        "SELECT id FROM files WHERE name = ?1 OR document_id = ?1
            OR ({} = ?2 AND substr(final_path, -length(?1) - 1) = '/' || ?1)
            OR id IN (SELECT file_id FROM documents WHERE document_id = ?1)",
        crate::store::journal::FINAL_NAME
    ))?;
    for id in by_name.query_map([query, last], |r| r.get::<_, i64>(0))? {
        ids.push(id?);
    }
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids.dedup();
    Ok(ids)
}

fn story_of_row(conn: &Connection, id: i64) -> rusqlite::Result<Story> {
    let (name, inbox, stage, final_path, document_id) = conn.query_row(
        "SELECT name, inbox, stage, final_path, document_id FROM files WHERE id = ?1",
        [id],
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        },
    )?;
    let history = history::of_file(conn, id)?.into_iter().map(entry).collect();
    Ok(Story {
        file_id: Some(id),
        name,
        inbox,
        stage: Some(stage),
        final_path,
        document_id,
        pruned: false,
        sidecar: None,
        history,
    })
}

/// Files the journal no longer has whose sidecars are still there: found by path, or by
/// name in every inbox's done/, review/ and failed/ folder.
fn pruned_stories(
    conn: &Connection,
    config: &Config,
    query: &str,
    paths: &[String],
) -> rusqlite::Result<Vec<Story>> {
    let mut originals: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
    if !query.contains('/') {
        for inbox in &config.inboxes {
            let folders = [
                Some(&inbox.done),
                Some(&inbox.failed),
                inbox.review.as_ref(),
            ];
            originals.extend(folders.into_iter().flatten().map(|f| f.join(query)));
        }
    }
    let mut stories = Vec::new();
    for original in originals {
        let sidecar_path = layout::sidecar_path(&original);
        // Only a sidecar that names this original (the daemon wrote both).
        let Some(sidecar) = read_sidecar(&sidecar_path)
            .filter(|s| original.file_name().is_some_and(|n| *n == *s.file))
        else {
            continue;
        };
        if stories
            .iter()
            .any(|s: &Story| s.sidecar.as_deref() == Some(&*sidecar_path.to_string_lossy()))
        {
            continue;
        }
        let original_text = original.to_string_lossy().into_owned();
        let history = history::requeues_without_row(conn, &original_text)?
            .into_iter()
            .map(entry)
            .collect();
        stories.push(Story {
            file_id: None,
            name: sidecar.source.name.clone(),
            inbox: sidecar.source.inbox.clone(),
            stage: None,
            final_path: Some(original_text),
            document_id: sidecar.document_id.clone(),
            pruned: true,
            sidecar: Some(sidecar_path.to_string_lossy().into_owned()),
            history: [sidecar_entries(&sidecar), history].concat(),
        });
    }
    Ok(stories)
}

fn read_sidecar(path: &Path) -> Option<Sidecar> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// What a pruned file's sidecar still tells: when it was seen, sent and finished.
fn sidecar_entries(sidecar: &Sidecar) -> Vec<Entry> {
    let t = &sidecar.timestamps;
    let mut entries = Vec::new();
    let mut add = |at: &str, what: &str, text: String| {
        if let Some(at_ms) = parse_rfc3339_ms(at) {
            entries.push(Entry {
                at: at.to_string(),
                at_ms,
                transition: what.to_string(),
                details: Value::Null,
                text,
            });
        }
    };
    add(
        &t.detected,
        "seen",
        format!("(from its sidecar) in {}", sidecar.source.inbox),
    );
    if let Some(submitted) = &t.submitted {
        let document = sidecar.document_id.as_deref().unwrap_or("none");
        add(
            submitted,
            transition::SUBMITTED,
            format!("(from its sidecar) document {document}"),
        );
    }
    let outcome = match &sidecar.error {
        Some(error) => format!("{:?}: {}", sidecar.status, error.kind.as_str()),
        None => format!("{:?}", sidecar.status),
    };
    add(
        &t.finished,
        transition::FINISHED,
        format!("(from its sidecar) {}", outcome.to_lowercase()),
    );
    entries
}

/// Milliseconds since the epoch of an RFC 3339 UTC time as the sidecar writes it.
fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let conn = Connection::open_in_memory().ok()?;
    conn.query_row(
        "SELECT CAST(round((julianday(?1) - 2440587.5) * 86400000) AS INTEGER)",
        [text],
        |r| r.get::<_, Option<i64>>(0),
    )
    .optional()
    .ok()
    .flatten()
    .flatten()
}

fn entry(line: Line) -> Entry {
    let text = describe(&line);
    Entry {
        at: crate::sidecar::rfc3339(
            std::time::UNIX_EPOCH + Duration::from_millis(line.at_ms.max(0) as u64),
        ),
        at_ms: line.at_ms,
        transition: line.transition,
        details: line.details,
        text,
    }
}

/// One transition in words.
fn describe(line: &Line) -> String {
    let d = &line.details;
    let s = |key: &str| match d.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let millis = |key: &str| {
        d.get(key)
            .and_then(Value::as_i64)
            .map(|ms| humantime::format_duration(Duration::from_millis(ms.max(0) as u64)))
    };
    match line.transition.as_str() {
        transition::CLAIMED => {
            let seen = d
                .get("seen_ms")
                .and_then(Value::as_i64)
                .map(|ms| format!("seen {}, ", local_time(ms, "%H:%M:%S")))
                .unwrap_or_default();
            let what = if d.get("set") == Some(&Value::Bool(true)) {
                "set "
            } else {
                ""
            };
            format!("{what}from {} ({seen}{} bytes)", s("from"), s("size"))
        }
        transition::HASHED => match d.get("files").and_then(Value::as_i64) {
            Some(files) => format!(
                "sha256 {} ({files} files, {} bytes)",
                s("sha256"),
                s("size")
            ),
            None => format!("sha256 {} ({} bytes)", s("sha256"), s("size")),
        },
        transition::PREFLIGHT if s("verdict") == "ok" => "ok".to_string(),
        transition::PREFLIGHT => format!("refused ({}): {}", s("kind"), s("message")),
        transition::SUBMITTING => format!("submit {} leaves", s("attempt")),
        transition::DOCUMENT => format!(
            "HTTP {}: the API gave document {}",
            s("http_status"),
            s("document_id")
        ),
        transition::NOT_SENT => format!("not sent: {}", s("reason")),
        transition::SUBMITTED => format!("document {} is its answer", s("document_id")),
        transition::ANSWERED_FROM => format!(
            "answered from document {} (same content sent before; nothing paid)",
            s("document_id")
        ),
        transition::SUPERSEDED => {
            format!("document {} not used: {}", s("document_id"), s("why"))
        }
        transition::POLLED => {
            let ready = match millis("ready_ms") {
                Some(ready) => format!("result ready {ready} after the submit; "),
                None => String::new(),
            };
            let asks = s("asks");
            let plural = if asks == "1" { "" } else { "s" };
            format!(
                "{ready}{asks} ask{plural}, {} answered 425 (still processing), {} spent asking",
                s("still_processing"),
                millis("asked_ms")
                    .map(|d| d.to_string())
                    .unwrap_or_default()
            )
        }
        transition::FINISHING => {
            let why = match d.get("kind").filter(|k| !k.is_null()) {
                Some(_) => {
                    let status = match s("http_status") {
                        status if status.is_empty() => String::new(),
                        status => format!(", HTTP {status}"),
                    };
                    format!(" ({}{status}): {}", s("kind"), s("message"))
                }
                None => String::new(),
            };
            format!("{}{why} -> {}", s("status"), s("final_path"))
        }
        transition::FINISHED => format!(
            "{}: original {}, sidecar {}",
            s("stage"),
            s("final_path"),
            s("sidecar")
        ),
        transition::LOST => "its file disappeared from the work folder".to_string(),
        transition::DELIVERY_QUEUED => format!("{} of the {} outcome", s("kind"), s("status")),
        transition::DELIVERY_RETRY => format!(
            "{} try {} failed ({}); next try at {}",
            s("kind"),
            s("attempts"),
            s("error"),
            d.get("next_at_ms")
                .and_then(Value::as_i64)
                .map(|ms| local_time(ms, "%H:%M:%S"))
                .unwrap_or_default()
        ),
        transition::DELIVERY_CLOSED => {
            let error = match s("error") {
                e if e.is_empty() => String::new(),
                e => format!(": {e}"),
            };
            format!(
                "{} {} after {} tries{error}",
                s("kind"),
                s("state").replace('_', " "),
                s("attempts")
            )
        }
        transition::REQUEUED => format!(
            "from {} back to {}; its sidecar {} was removed (kept here, see --json)",
            s("from"),
            s("to"),
            s("sidecar")
        ),
        transition::REVIEWED => format!(
            "{} by {} at the review station: from {} to {}{}",
            s("decision"),
            s("by"),
            s("from"),
            s("to"),
            match d.get("corrected").and_then(Value::as_array) {
                Some(names) if !names.is_empty() => format!(
                    ", corrected {}",
                    names
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                _ => String::new(),
            }
        ),
        _ => d.to_string(),
    }
}

/// `ms` (unix milliseconds) in local time, formatted by SQLite's `strftime` (the journal's
/// own clock rules; no time-zone crate needed).
fn local_time(ms: i64, format: &str) -> String {
    let formatted = Connection::open_in_memory().and_then(|conn| {
        conn.query_row(
            "SELECT strftime(?1, ?2 / 1000, 'unixepoch', 'localtime')",
            rusqlite::params![format, ms],
            |r| r.get::<_, String>(0),
        )
    });
    formatted.unwrap_or_else(|_| ms.to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::SystemTime;

    use super::*;
    use crate::store::journal::Journal;
    use crate::store::journal::bench_fill::{YearOfWork, fill};

    /// `explain` against a year of files (a million rows) finds a file by path, name, final
    /// name or document id through the journal's indexes: it reads a handful of rows, not
    /// every file (a read of every row takes at least one SQLite step per row).
    #[test]
    fn explain_finds_a_file_without_reading_every_file_of_the_year() {
        const FILES: usize = 2000;
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let work = YearOfWork {
            inbox: "/srv/in".into(),
            done: "/srv/done".into(),
            files: FILES,
            from: now - Duration::from_secs(365 * 24 * 3600),
            to: now,
        };
        fill(&Journal::open(dir.path()).unwrap(), &work).unwrap();
        let conn = open_read_only(dir.path()).unwrap();
        let steps = Arc::new(AtomicU64::new(0));
        let counter = steps.clone();
        conn.progress_handler(
            1,
            Some(move || {
                counter.fetch_add(1, Ordering::Relaxed);
                false
            }),
        );
        let work_path: String = conn
            .query_row(
                "SELECT work_path FROM files WHERE name = 'scan-0000700.jpg'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        for query in [
            "scan-0001234.jpg",
            "/srv/done/scan-0001234.jpg",
            "/srv/done/scan-0001234.jpg.json",
            "/srv/in/scan-0001234.jpg",
            "s-10001234",
            &work_path,
        ] {
            steps.store(0, Ordering::Relaxed);
            let ids = matching_rows(&conn, query, &candidate_paths(query)).unwrap();
            let taken = steps.load(Ordering::Relaxed);
            assert_eq!(ids.len(), 1, "{query}: {ids:?}");
            assert!(
                (taken as usize) < FILES,
                "{query}: {taken} steps for {FILES} files: the whole table was read"
            );
        }
    }
}
