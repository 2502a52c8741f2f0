//! The review station's decision on a result in a review folder: one transaction that is the
//! arbiter between reviewers (the first decision wins), moves the original (a file or a set's
//! folder) to done/ or failed/ under a free name, writes its rewritten sidecar there and
//! removes the old one, sets the row's stage, appends the `reviewed` history line and queues
//! the `file.reviewed` deliveries through the durable outbox (`deliveries`). Once committed
//! nothing is left to do; a move whose record cannot be committed is undone.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rusqlite::{OptionalExtension, params};

use super::deliveries::{NewOutcome, insert_outcome};
use super::history::{self, transition};
use super::{FileId, Journal, Stage, ms, newest_row_at, path_text};
use crate::store::fsutil;
use crate::store::layout;

/// A reviewer's decision on one original in a review folder.
#[derive(Debug, Clone)]
pub struct ReviewDecision {
    /// The original in the review folder (a file, or a set's folder).
    pub from: PathBuf,
    /// The folder it goes to: the inbox's done/ (approved) or failed/ (rejected).
    pub to_dir: PathBuf,
    /// [`Stage::Done`] or [`Stage::Failed`].
    pub stage: Stage,
    /// "approved" or "rejected".
    pub decision: String,
    /// The reviewer's name.
    pub by: String,
    /// The names of the fields corrected (never their values: the history is shown by
    /// `explain`, and logged names are enough to find the sidecar).
    pub corrected: Vec<String>,
    /// The new sidecar; its `file` is set here to the name the original gets.
    pub sidecar: serde_json::Value,
    /// The mode of the new sidecar (`daemon.file_mode`).
    pub mode: u32,
}

/// What [`Journal::review_decision`] did.
#[derive(Debug)]
pub enum Decided {
    /// Recorded and moved: the original's new path.
    Moved(PathBuf),
    /// Someone decided it first: who, what, and when (RFC 3339), as the history says.
    AlreadyDecided {
        by: String,
        decision: String,
        at_ms: i64,
    },
    /// It is no longer in the review folder, and no decision of the station moved it.
    Gone,
    /// The move or the sidecar's write failed: nothing recorded, nothing moved.
    MoveFailed(std::io::Error),
}

/// The closure that builds the outcome to deliver from the sidecar as written, the original's
/// and the sidecar's new paths (`None` when the inbox delivers nowhere).
pub type OutcomeOf = Box<dyn FnOnce(&str, &Path, &Path) -> Option<NewOutcome> + Send>;

impl Journal {
    /// Records and carries out `d` in one write transaction (see the module's doc). The row
    /// decided is the newest whose `final_path` is `d.from`; an original whose row was pruned
    /// (keep_history) is decided all the same, recorded in the history without a row.
    pub async fn review_decision(
        &self,
        d: ReviewDecision,
        outcome_of: OutcomeOf,
    ) -> anyhow::Result<Decided> {
        // Only from review/, only to done/ or failed/: the lifecycle's rule.
        crate::lifecycle::review(Stage::Review, d.stage)?;
        let (decided, queued) = self
            .with(move |conn| {
                let tx = rusqlite::Transaction::new_unchecked(
                    conn,
                    rusqlite::TransactionBehavior::Immediate,
                )?;
                let row = newest_row_at(&tx, &d.from)?;
                let waiting = row.as_ref().is_none_or(|(_, stage)| {
                    Stage::parse(stage)
                        .is_some_and(|s| crate::lifecycle::review(s, d.stage).is_ok())
                });
                if !waiting || !fsutil::exists(&d.from) {
                    return Ok((earlier_decision(&tx, &d.from)?, false));
                }
                let file_id = row.map(|(id, _)| id);
                let name = d.from.file_name().unwrap_or_default().to_string_lossy();
                let to = fsutil::free_name(&d.to_dir, &name);
                let mut sidecar = d.sidecar.clone();
                let final_name = to.file_name().unwrap_or_default().to_string_lossy();
                sidecar["file"] = serde_json::Value::String(final_name.into_owned());
                let mut text = serde_json::to_string_pretty(&sidecar).unwrap_or_default();
                text.push('\n');
                let recorded = Recorded {
                    from: &d.from,
                    to: &to,
                    stage: d.stage,
                    decision: &d.decision,
                    by: &d.by,
                    corrected: &d.corrected,
                    text: &text,
                    recovered: false,
                };
                let queued = record(&tx, file_id, &recorded, outcome_of)?;
                if let Err(e) = move_with_sidecar(&d.from, &to, &text, d.mode) {
                    return Ok((Decided::MoveFailed(e), false));
                }
                if let Err(e) = tx.commit() {
                    undo(&d.from, &to);
                    return Err(e);
                }
                remove_old_sidecar(&d.from);
                Ok((Decided::Moved(to), queued))
            })
            .await?;
        if queued {
            self.deliveries_added.notify_one();
        }
        Ok(decided)
    }
}

/// A decision as it is recorded.
struct Recorded<'a> {
    from: &'a Path,
    to: &'a Path,
    stage: Stage,
    decision: &'a str,
    by: &'a str,
    corrected: &'a [String],
    /// The new sidecar's text.
    text: &'a str,
    /// Found complete on disk at start, after a crash before its record was committed.
    recovered: bool,
}

/// Sets the row (if any) to the decision's stage and place, appends the `reviewed` line and
/// queues the deliveries; true when any was queued.
fn record(
    tx: &rusqlite::Transaction<'_>,
    file_id: Option<FileId>,
    r: &Recorded<'_>,
    outcome_of: OutcomeOf,
) -> rusqlite::Result<bool> {
    let sidecar_path = layout::sidecar_path(r.to);
    let now = ms(SystemTime::now());
    if let Some(id) = file_id {
        tx.execute(
            "UPDATE files SET stage = ?2, final_path = ?3, sidecar = ?4,
             finished_at = ?5, updated_at = ?5 WHERE id = ?1",
            params![id, r.stage.as_str(), path_text(r.to), r.text, now],
        )?;
    }
    let mut details = serde_json::json!({
        "decision": r.decision,
        "by": r.by,
        "from": path_text(r.from),
        "to": path_text(r.to),
        "sidecar": path_text(&sidecar_path),
        "stage": r.stage.as_str(),
        "corrected": r.corrected,
    });
    if r.recovered {
        details["recovered"] = serde_json::Value::Bool(true);
    }
    history::append(tx, file_id, transition::REVIEWED, details)?;
    let outcome = outcome_of(r.text, r.to, &sidecar_path);
    if let Some(outcome) = &outcome {
        insert_outcome(tx, file_id.unwrap_or(0), outcome)?;
    }
    Ok(outcome.is_some_and(|o| !o.kinds.is_empty()))
}

/// A decision whose files were moved but whose record a crash kept from being committed:
/// the original and its new sidecar (with `reviewed`) at `to`, the old sidecar still at
/// `from`'s place.
#[derive(Debug, Clone)]
pub struct InterruptedDecision {
    pub from: PathBuf,
    pub to: PathBuf,
    /// [`Stage::Done`] or [`Stage::Failed`], as the new sidecar says.
    pub stage: Stage,
    pub decision: String,
    pub by: String,
    pub corrected: Vec<String>,
    /// The new sidecar's text, as found.
    pub sidecar_text: String,
}

impl Journal {
    /// Records `d`, found complete on disk, as [`Journal::review_decision`] would have (the
    /// history line says `recovered`), and removes the old sidecar; false (nothing done)
    /// when the journal already has a decision for it or its row is not in review.
    pub async fn review_interrupted(
        &self,
        d: InterruptedDecision,
        outcome_of: OutcomeOf,
    ) -> anyhow::Result<bool> {
        let queued = self
            .with(move |conn| {
                let tx = rusqlite::Transaction::new_unchecked(
                    conn,
                    rusqlite::TransactionBehavior::Immediate,
                )?;
                let row = newest_row_at(&tx, &d.from)?;
                let in_review = row
                    .as_ref()
                    .is_some_and(|(_, stage)| stage == Stage::Review.as_str());
                if !in_review {
                    return Ok(None);
                }
                let recorded = Recorded {
                    from: &d.from,
                    to: &d.to,
                    stage: d.stage,
                    decision: &d.decision,
                    by: &d.by,
                    corrected: &d.corrected,
                    text: &d.sidecar_text,
                    recovered: true,
                };
                let queued = record(&tx, row.map(|(id, _)| id), &recorded, outcome_of)?;
                tx.commit()?;
                remove_old_sidecar(&d.from);
                Ok(Some(queued))
            })
            .await?;
        if queued == Some(true) {
            self.deliveries_added.notify_one();
        }
        Ok(queued.is_some())
    }
}

/// Who decided `from` first, from the newest `reviewed` line that moved it; [`Decided::Gone`]
/// when none did (removed or requeued by hand).
pub(super) fn earlier_decision(
    tx: &rusqlite::Transaction<'_>,
    from: &Path,
) -> rusqlite::Result<Decided> {
    let line: Option<(i64, String)> = tx
        .query_row(
            // The transition written out (not bound): the `history_reviews` index holds
            // just these lines, so a year of history is not read for one decision.
            "SELECT at, details FROM history WHERE transition = 'reviewed'
               AND json_extract(details, '$.from') = ?1 ORDER BY id DESC LIMIT 1",
            params![path_text(from)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((at_ms, details)) = line else {
        return Ok(Decided::Gone);
    };
    let details: serde_json::Value = serde_json::from_str(&details).unwrap_or_default();
    let text = |key: &str| details[key].as_str().unwrap_or("?").to_string();
    Ok(Decided::AlreadyDecided {
        by: text("by"),
        decision: text("decision"),
        at_ms,
    })
}

/// Moves the original without clobbering (a file, or a set's folder whole; across
/// filesystems too) and writes its new sidecar beside it. A failure leaves things as they
/// were.
fn move_with_sidecar(from: &Path, to: &Path, sidecar: &str, mode: u32) -> std::io::Result<()> {
    let is_dir = from.symlink_metadata()?.is_dir();
    if is_dir {
        crate::store::tree::move_dir_noclobber(from, to)?;
    } else {
        fsutil::move_file_noclobber(from, to)?;
    }
    if let Err(e) =
        fsutil::write_new_file_atomic(&layout::sidecar_path(to), sidecar.as_bytes(), mode)
    {
        undo_move(from, to, is_dir);
        return Err(e);
    }
    Ok(())
}

/// Once the decision is recorded: the old sidecar describes a file no longer there. A failure
/// to remove it is only noise (the station lists originals, not sidecars).
fn remove_old_sidecar(from: &Path) {
    let old = layout::sidecar_path(from);
    if let Err(e) = std::fs::remove_file(&old) {
        tracing::warn!("cannot remove the old sidecar {}: {e}", old.display());
    }
    if let Some(dir) = from.parent() {
        let _ = fsutil::sync_dir(dir);
    }
}

fn undo_move(from: &Path, to: &Path, is_dir: bool) {
    let back = if is_dir {
        crate::store::tree::move_dir_noclobber(to, from)
    } else {
        fsutil::move_file_noclobber(to, from)
    };
    if let Err(e) = back {
        tracing::error!(
            "a review decision could not be completed and moving {} back to {} failed ({e}): it is at {}",
            to.display(),
            from.display(),
            to.display()
        );
    }
}

/// The decision could not be recorded: the new sidecar goes and the original goes back
/// beside its old sidecar (removed only after the commit).
fn undo(from: &Path, to: &Path) {
    let is_dir = to.symlink_metadata().is_ok_and(|m| m.is_dir());
    let _ = std::fs::remove_file(layout::sidecar_path(to));
    undo_move(from, to, is_dir);
}

#[cfg(test)]
mod tests {
    use super::super::record::testing::*;
    use super::*;
    use crate::store::journal::NewClaim;

    /// A row finished into `review/a.png` with its original and sidecar there.
    async fn in_review(j: &Journal, dir: &Path) -> (FileId, PathBuf) {
        let review = dir.join("review");
        std::fs::create_dir_all(&review).unwrap();
        let original = review.join("a.png");
        std::fs::write(&original, b"scan").unwrap();
        std::fs::write(layout::sidecar_path(&original), b"{\"status\": \"review\"}").unwrap();
        let claim = NewClaim {
            inbox: dir.join("in"),
            name: "a.png".into(),
            work_path: dir.join("in/.beorg-work/1_a.png"),
            size: 4,
            detected_at: SystemTime::now(),
            claimed_at: SystemTime::now(),
            set: false,
        };
        let mut file = Driven::claim(j, claim).await;
        let to = original.to_string_lossy().into_owned();
        file.on(j, finishing(&to, "{}")).await;
        file.on(j, finished(Stage::Review)).await;
        (file.id, original)
    }

    fn decision(from: &Path, to_dir: &Path, by: &str) -> ReviewDecision {
        ReviewDecision {
            from: from.to_path_buf(),
            to_dir: to_dir.to_path_buf(),
            stage: Stage::Done,
            decision: "approved".into(),
            by: by.into(),
            corrected: vec!["LastName".into()],
            sidecar: serde_json::json!({"status": "done", "file": "?"}),
            mode: fsutil::FILE_MODE,
        }
    }

    fn no_outcome() -> OutcomeOf {
        Box::new(|_, _, _| None)
    }

    #[tokio::test]
    async fn the_first_decision_moves_and_records_and_a_second_is_told_who_was_first() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("state")).unwrap();
        let (id, original) = in_review(&j, dir.path()).await;
        let done = dir.path().join("done");
        std::fs::create_dir_all(&done).unwrap();
        // A name already taken in done/ gets a free variant, and the sidecar says so.
        std::fs::write(done.join("a.png"), b"older").unwrap();
        let first = j
            .review_decision(decision(&original, &done, "anna"), no_outcome())
            .await
            .unwrap();
        let to = done.join("a (2).png");
        assert!(matches!(&first, Decided::Moved(p) if *p == to), "{first:?}");
        assert_eq!(std::fs::read(&to).unwrap(), b"scan");
        let sidecar: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout::sidecar_path(&to)).unwrap()).unwrap();
        assert_eq!(sidecar["file"], "a (2).png");
        assert!(!original.exists() && !layout::sidecar_path(&original).exists());
        let second = j
            .review_decision(decision(&original, &done, "boris"), no_outcome())
            .await
            .unwrap();
        assert!(
            matches!(&second, Decided::AlreadyDecided { by, decision, .. } if by == "anna" && decision == "approved"),
            "{second:?}"
        );
        let conn = j.conn.lock().unwrap();
        let stage: String = conn
            .query_row("SELECT stage FROM files WHERE id = ?1", [id], |r| r.get(0))
            .unwrap();
        assert_eq!(stage, "done");
        let lines = history::of_file(&conn, id).unwrap();
        let reviewed: Vec<_> = lines
            .iter()
            .filter(|l| l.transition == transition::REVIEWED)
            .collect();
        assert_eq!(
            reviewed.len(),
            1,
            "one line: the second decision recorded nothing"
        );
        assert_eq!(
            reviewed[0].details["corrected"],
            serde_json::json!(["LastName"])
        );
    }

    #[tokio::test]
    async fn an_original_removed_by_hand_is_gone_and_nothing_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("state")).unwrap();
        let (id, original) = in_review(&j, dir.path()).await;
        std::fs::remove_file(&original).unwrap();
        let done = dir.path().join("done");
        std::fs::create_dir_all(&done).unwrap();
        let answer = j
            .review_decision(decision(&original, &done, "anna"), no_outcome())
            .await
            .unwrap();
        assert!(matches!(answer, Decided::Gone), "{answer:?}");
        assert!(files(&done).is_empty());
        let conn = j.conn.lock().unwrap();
        let stage: String = conn
            .query_row("SELECT stage FROM files WHERE id = ?1", [id], |r| r.get(0))
            .unwrap();
        assert_eq!(stage, "review");
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }
}
