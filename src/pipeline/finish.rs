//! Putting a finished file in its place: the original into done/, review/ or failed/, then its
//! sidecar. A recognised result goes to the inbox's review folder instead of done/ when a
//! person must check it ([`crate::results::review_reasons`]) and the inbox has one.
//!
//! Order matters, and each step is recorded first: the journal gets the outcome and the chosen
//! name (`finishing`), the original is moved without overwriting anything, the sidecar is
//! written atomically beside it, and only then does the journal say done/failed. A restart at
//! any point completes the same steps, so the journal never says "done" for a file that is not
//! in done/ with its sidecar.
//!
//! A fault on our side (folder missing, disk full, permission denied, a share unmounted) keeps
//! the file claimed and retries with backoff; it is logged once per distinct error, not once
//! per try. An unmounted share is noticed by its folder's filesystem changing ([`MountGuard`](crate::store::mounts::MountGuard)):
//! its empty mount point is still a folder, and filling it would put passports on the
//! server's own disk.
//!
//! Nothing paid for is lost with its file: a file, a file of a set, or a set's folder deleted
//! from the work folder after it was sent goes to failed/ as kind `deleted`, with what is left
//! of it and a sidecar holding the result, the `document_id` and any `superseded` documents
//! (the sidecar alone when nothing is left). Only a file nothing was paid for is recorded as
//! `lost`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::config::InboxConfig;
use crate::lifecycle::{Event, Payload, Stage};
use crate::pipeline::recorder::{Record, Superseded};
use crate::pipeline::{Context, Job, NotRecorded};
use crate::results;
use crate::sidecar::{
    ErrorKind, Outcome, SIDECAR_VERSION, Sidecar, Source, SourceFile, Status, Timestamps, rfc3339,
};
use crate::store::fsutil;

/// Longest wait between two tries of a move or write that keeps failing.
const MAX_FINISH_BACKOFF: Duration = Duration::from_secs(60);

/// Waits between tries of placing a file: from a second up to [`MAX_FINISH_BACKOFF`].
const FINISH_BACKOFF: crate::retry::Backoff =
    crate::retry::Backoff::exponential(Duration::from_secs(1), MAX_FINISH_BACKOFF);

/// What one try of placing a file achieved.
enum Placed {
    At(PathBuf),
    /// The daemon stopped before the journal took it (it resumes from what is stored).
    NotRecorded,
    /// The work file is gone and was never placed: deleted by hand.
    Vanished,
}

/// Moves `job`'s original to done/ or failed/ and writes its sidecar, retrying until it can
/// (a missing, full or unmounted folder); a stop leaves the decision in the journal for the
/// next start. A file (or a file of a set) deleted from the work folder after it was sent is
/// not lost: what was paid for (the result, the document ids) goes to failed/ in its sidecar,
/// with kind `deleted` (see [`deleted`]).
pub async fn finish(p: &Context, job: &mut Job, outcome: Outcome) {
    let inbox = job.inbox.clone();
    let Some(superseded) = p.recorder.superseded_of(job).await else {
        return;
    };
    let paid = job.document_id.is_some() || !superseded.is_empty();
    let mut outcome = match missing_after_send(job, paid).await {
        Some(missing) => deleted(job, outcome, &missing),
        None => reviewed(job, outcome),
    };
    let mut retry = crate::retry::Retry::new(&p.stop, FINISH_BACKOFF);
    // Kept across tries: once the original has moved, a retry must finish at the same name.
    let mut chosen: Option<PathBuf> = None;
    loop {
        let dest_dir = destination(&inbox, &outcome);
        let sidecar_alone = is_deleted(&outcome);
        let placing = Placing {
            outcome: &outcome,
            dest_dir: &dest_dir,
            superseded: &superseded,
            sidecar_alone,
        };
        match place(p, job, &placing, &mut chosen).await {
            Ok(Placed::At(final_path)) => {
                log_finished(inbox.path.as_path(), job, &outcome, &final_path);
                return;
            }
            Ok(Placed::NotRecorded) => return,
            Ok(Placed::Vanished) if paid && !sidecar_alone => {
                // Deleted between the look above and the move: only the sidecar is left.
                outcome = deleted(job, outcome, &Missing::All);
                chosen = None;
            }
            Ok(Placed::Vanished) => {
                lost(p, job).await;
                return;
            }
            Err(e) => {
                let going_on = retry.failed(&e, |text| {
                    tracing::error!(
                        file = %job.name, folder = %dest_dir.display(),
                        "cannot put the file in place ({text}); it stays in the work folder and is tried again until this is fixed"
                    )
                });
                if !going_on.await {
                    return;
                }
            }
        }
    }
}

/// Where an outcome sends the original: done/, the review folder, or failed/.
fn destination(inbox: &InboxConfig, outcome: &Outcome) -> PathBuf {
    match (outcome.status, &inbox.review) {
        (Status::Review, Some(review)) => review.clone(),
        (Status::Done | Status::Review, _) => inbox.done.clone(),
        (Status::Failed, _) => inbox.failed.clone(),
    }
}

/// What of a sent file is no longer in the work folder.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Missing {
    /// The file, or the set's whole folder.
    All,
    /// These files of the set (by name).
    Members(Vec<String>),
}

/// What of `job` was deleted from the work folder since it was sent (`paid`: it has a
/// document, its own or superseded); `None` when nothing is missing or nothing was paid.
async fn missing_after_send(job: &Job, paid: bool) -> Option<Missing> {
    if !paid {
        return None;
    }
    let work = job.work_path.clone();
    let names: Vec<String> = job
        .payload
        .members()
        .iter()
        .map(|m| m.name.clone())
        .collect();
    tokio::task::spawn_blocking(move || {
        if !fsutil::exists(&work) {
            return Some(Missing::All);
        }
        let gone: Vec<String> = names
            .into_iter()
            .filter(|name| !fsutil::exists(&work.join(name)))
            .collect();
        (!gone.is_empty()).then_some(Missing::Members(gone))
    })
    .await
    .ok()
    .flatten()
}

fn is_deleted(outcome: &Outcome) -> bool {
    outcome
        .error
        .as_ref()
        .is_some_and(|e| e.kind == ErrorKind::Deleted)
}

/// The outcome of a file (or set) deleted from the work folder after it was sent: failed,
/// kind `deleted`, with the result and the reason it had kept, and a message that says
/// where what was paid for is (this sidecar) and that nothing was sent again.
fn deleted(job: &Job, outcome: Outcome, missing: &Missing) -> Outcome {
    if is_deleted(&outcome) {
        return outcome;
    }
    let what = match (missing, job.payload.is_set()) {
        (Missing::All, false) => {
            "The file was deleted from the daemon's work folder after it was sent, so it is not here.".to_string()
        }
        (Missing::All, true) => {
            "The set was deleted from the daemon's work folder after it was sent, so its files are not here.".to_string()
        }
        (Missing::Members(names), _) => format!(
            "{} deleted from this set's work folder after the set was sent; the other files are here.",
            match names.as_slice() {
                [one] => format!("{one} was"),
                many => format!("{} were", many.join(", ")),
            }
        ),
    };
    let kept = match (&job.document_id, &outcome.result, &outcome.result_raw) {
        (Some(id), Some(_), _) | (Some(id), _, Some(_)) => format!(
            " The service's result (document {id}, already paid for) is in this sidecar; nothing was sent again."
        ),
        (Some(id), None, None) => format!(
            " The service has it as document {id} (already paid for); nothing was sent again."
        ),
        (None, _, _) => {
            " The documents the service made of it are listed under superseded.".to_string()
        }
    };
    let before = match &outcome.error {
        Some(e) => format!(" Before that: {}", e.message),
        None => String::new(),
    };
    let http_status = outcome.error.as_ref().and_then(|e| e.http_status);
    let mut failed = Outcome::failed(
        ErrorKind::Deleted,
        http_status,
        format!("{what}{kept}{before}"),
    );
    failed.result = outcome.result;
    failed.result_raw = outcome.result_raw;
    failed
}

/// What one try of [`place`] puts where.
struct Placing<'a> {
    outcome: &'a Outcome,
    dest_dir: &'a Path,
    /// Documents paid for this file and not used, for the sidecar.
    superseded: &'a [Superseded],
    /// The original is gone (kind `deleted`): the sidecar is written alone.
    sidecar_alone: bool,
}

/// One try: check the folders, choose a free name (or keep the one chosen before, if the
/// original already moved there), record the decision, move, write the sidecar, record done.
/// A sidecar written alone (the original deleted after it was sent) gets the name the
/// original would have had.
async fn place(
    p: &Context,
    job: &mut Job,
    placing: &Placing<'_>,
    chosen: &mut Option<PathBuf>,
) -> anyhow::Result<Placed> {
    let (outcome, dest_dir) = (placing.outcome, placing.dest_dir);
    let inbox = job.inbox.clone();
    p.mounts.check(dest_dir)?;
    p.mounts.check(&inbox.path)?;
    // A file from a subfolder of a recursive inbox keeps that subfolder below done/failed.
    let (sub_dir, base_name) = match job.name.rsplit_once('/') {
        Some((dirs, name)) => (dest_dir.join(dirs), name.to_string()),
        None => (dest_dir.to_path_buf(), job.name.clone()),
    };
    let (work, previous) = (job.work_path.clone(), chosen.clone());
    let alone = placing.sidecar_alone;
    let final_path = blocking(move || {
        if !alone && !work.exists() && previous.as_ref().is_none_or(|p| !p.exists()) {
            return Ok(None);
        }
        // A name chosen by an earlier try is kept while it is still free or holds this very
        // file (the move got that far before failing): a retry never makes a second copy.
        if let Some(path) = previous.filter(|p| still_ours(&work, p)) {
            return Ok(Some(path));
        }
        std::fs::create_dir_all(&sub_dir)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", sub_dir.display()))?;
        Ok(Some(fsutil::free_name(&sub_dir, &base_name)))
    })
    .await?;
    let Some(final_path) = final_path else {
        return Ok(Placed::Vanished);
    };
    *chosen = Some(final_path.clone());
    let outcome = &told_where(job, outcome, &final_path).await;
    let file_name = file_name_of(&final_path);
    let sidecar = sidecar_of(job, &inbox, outcome, &file_name, placing.superseded).to_json();
    let finishing = Event::Finishing {
        final_path: final_path.clone(),
        sidecar_path: crate::store::layout::sidecar_path(&final_path),
        sidecar: sidecar.clone(),
    };
    if let Err(not_recorded) = p.recorder.record(job, finishing).await {
        return match not_recorded {
            NotRecorded::Stopped => Ok(Placed::NotRecorded),
            NotRecorded::Illegal(e) => Err(e.into()),
        };
    }
    let stage = match outcome.status {
        Status::Done => Stage::Done,
        Status::Review => Stage::Review,
        Status::Failed => Stage::Failed,
    };
    put_in_place(p, job, &sidecar, alone, stage, label_of(outcome)).await?;
    Ok(Placed::At(final_path))
}

/// The finish's tail, the same for a new finish and for one resumed after a crash: the
/// original moved beside its sidecar (or the sidecar written alone, `alone`: the original
/// was deleted after it was sent), then the file recorded as finished in `stage`, with its
/// deliveries. Each step is safe to repeat.
async fn put_in_place(
    p: &Context,
    job: &mut Job,
    sidecar: &str,
    alone: bool,
    stage: Stage,
    label: String,
) -> anyhow::Result<()> {
    let Some(final_path) = job.final_path.clone() else {
        anyhow::bail!("the journal does not say where this file goes");
    };
    let (from, to, text) = (
        job.work_path.clone(),
        final_path.clone(),
        sidecar.to_string(),
    );
    let mode = p.config.daemon.file_mode;
    blocking(move || {
        if alone && !from.exists() {
            return write_sidecar(&to, &text, mode);
        }
        move_and_write(&from, &to, &text, mode)
    })
    .await?;
    let sidecar_path = crate::store::layout::sidecar_path(&final_path);
    let delivery =
        crate::deliver::message::outcome(&job.inbox, sidecar, &final_path, &sidecar_path);
    let finished = Event::Finished {
        stage,
        label,
        delivery,
    };
    match p.recorder.record(job, finished).await {
        Ok(()) | Err(NotRecorded::Stopped) => Ok(()),
        Err(NotRecorded::Illegal(e)) => Err(e.into()),
    }
}

/// An outcome's label in the metrics: its error kind, or `review`, or `done`.
fn label_of(outcome: &Outcome) -> String {
    match (&outcome.error, outcome.status) {
        (Some(e), _) => e.kind.as_str(),
        (None, Status::Review) => "review",
        (None, _) => "done",
    }
    .to_string()
}

/// Whether the name chosen before for the work file `work` can still be used: it is free
/// (nor its sidecar taken), or it already holds the file (moved, or copied before a failure).
fn still_ours(work: &Path, chosen: &Path) -> bool {
    if !fsutil::exists(chosen) {
        return !fsutil::exists(&crate::store::layout::sidecar_path(chosen));
    }
    // Unsure (unreadable): keep the name; the move then reports what is wrong and retries.
    if work.is_dir() {
        return crate::store::tree::same_tree(work, chosen).unwrap_or(true);
    }
    !work.exists() || fsutil::same_content(work, chosen).unwrap_or(true)
}

/// A set with entries the daemon leaves exactly as they were put in (symlinks, files with
/// other hard links, special files): a failed set's message says where the set went and that
/// those were not changed; any set logs it.
async fn told_where(job: &Job, outcome: &Outcome, final_path: &Path) -> Outcome {
    let mut outcome = outcome.clone();
    if let Payload::File = job.payload {
        return outcome;
    }
    let (work, placed) = (job.work_path.clone(), final_path.to_path_buf());
    let surveyed = blocking(move || {
        if !work.is_dir() {
            // Placed by an earlier try: listed where it is now.
            return Ok((crate::store::tree::left_as_is_below(&placed)?, false));
        }
        let crosses = crosses_filesystems(&work, placed.parent().unwrap_or(Path::new("/")));
        Ok((crate::store::tree::left_as_is_below(&work)?, crosses))
    })
    .await;
    let Ok((left, crosses)) = surveyed else {
        return outcome;
    };
    if left.is_empty() {
        return outcome;
    }
    let sentence = where_left(final_path, &left, crosses);
    tracing::warn!(file = %job.name, to = %final_path.display(), "{sentence}");
    if let Some(error) = outcome.error.as_mut() {
        error.message = format!("{} {sentence}", error.message);
    }
    outcome
}

/// Whether moving `from` into the folder `to_dir` is a copy to another filesystem.
fn crosses_filesystems(from: &Path, to_dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).ok();
    dev(from) != dev(to_dir)
}

/// "The set was moved to /srv/failed/kyc/seth2/ as it was; in it, selfie.png (a hard link to
/// a file elsewhere) was not changed: its mode and owner are as they were." On another
/// filesystem the links cannot move: they are copied (a symlink as a symlink).
fn where_left(final_path: &Path, left: &[(String, &'static str)], crosses: bool) -> String {
    let named: Vec<String> = left
        .iter()
        .map(|(name, what)| format!("{name} ({what})"))
        .collect();
    let one = left.len() == 1;
    let (folder, named) = (final_path.display(), and_list(&named));
    if crosses {
        let (is, a_copy) = if one {
            ("is", "a copy with the same mode")
        } else {
            ("are", "copies with the same modes")
        };
        return format!(
            "The set was copied to {folder}/ (another filesystem) as it was; in it, {named} {is} {a_copy}, and the files they point to were not changed."
        );
    }
    let (were, their) = if one {
        ("was", "its mode and owner are")
    } else {
        ("were", "their modes and owners are")
    };
    format!(
        "The set was moved to {folder}/ as it was; in it, {named} {were} not changed: {their} as they were."
    )
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// The two filesystem steps, each safe to repeat: a moved original is not moved again, an
/// existing sidecar is not rewritten.
fn move_and_write(from: &Path, to: &Path, sidecar: &str, mode: u32) -> anyhow::Result<()> {
    let moving = |e: std::io::Error| anyhow::anyhow!("moving to {}: {e}", to.display());
    // The scanner's mode is often world-readable; a passport must not be. Set in the work
    // folder, where a link is still seen as one; a move (rename or copy) keeps modes.
    // (Repeated on a retry: a failure here must not leave the file as it was.)
    let private =
        |e: std::io::Error| anyhow::anyhow!("setting the mode of {}: {e}", from.display());
    if from.is_dir() {
        crate::store::tree::make_tree_private(from, mode).map_err(private)?;
        crate::store::tree::move_dir_noclobber(from, to).map_err(moving)?;
    } else if fsutil::exists(from) {
        if let fsutil::Privacy::LeftAsIs(what) =
            fsutil::make_private(from, mode).map_err(private)?
        {
            tracing::warn!(file = %from.display(), to = %to.display(), "the file is {what}: its mode and owner are left as they are (not made {mode:04o})");
        }
        fsutil::move_file_noclobber(from, to).map_err(moving)?;
    } else if !to.exists() {
        anyhow::bail!(
            "the file is neither in the work folder nor at {}",
            to.display()
        );
    }
    write_sidecar(to, sidecar, mode)
}

/// Writes the sidecar of the original at `to` (which may be absent: deleted after it was
/// sent), unless it is there already.
fn write_sidecar(to: &Path, sidecar: &str, mode: u32) -> anyhow::Result<()> {
    let sidecar_path = crate::store::layout::sidecar_path(to);
    if !sidecar_path.exists() {
        fsutil::write_new_file_atomic(&sidecar_path, sidecar.as_bytes(), mode)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", sidecar_path.display()))?;
    }
    Ok(())
}

/// Completes a finish interrupted by a crash, from the decision stored in the journal.
pub async fn resume(p: &Context, job: &mut Job, record: &Record) {
    let (Some(final_path), Some(sidecar)) = (record.final_path.clone(), record.sidecar.clone())
    else {
        // Never written so (the name and the sidecar are stored with the stage), but say so
        // rather than leave the file unexplained.
        tracing::error!(file = %job.name, work_path = %job.work_path.display(), "the journal says this file was being finished but not where to; it stays in the work folder");
        return;
    };
    let stored: Option<Sidecar> = serde_json::from_str(&sidecar).ok();
    let alone = stored.as_ref().is_some_and(|s| {
        s.error
            .as_ref()
            .is_some_and(|e| e.kind == ErrorKind::Deleted)
    });
    if !alone && !job.work_path.exists() && !final_path.exists() {
        // Deleted by hand meanwhile: what was paid for still goes to failed/.
        match stored.filter(|s| s.document_id.is_some() || !s.superseded.is_empty()) {
            Some(stored) => finish(p, job, outcome_of(stored)).await,
            None => lost(p, job).await,
        }
        return;
    }
    let in_review = |review: &PathBuf| final_path.starts_with(review);
    let stage = if final_path.starts_with(&job.inbox.done) {
        Stage::Done
    } else if job.inbox.review.as_ref().is_some_and(in_review) {
        Stage::Review
    } else {
        Stage::Failed
    };
    let label = stored
        .map(|stored| label_of(&outcome_of(stored)))
        .unwrap_or_else(|| stage.as_str().to_string());
    let mut retry =
        crate::retry::Retry::new(&p.stop, crate::retry::Backoff::every(MAX_FINISH_BACKOFF));
    loop {
        let dir = final_path.parent().unwrap_or(Path::new("/")).to_path_buf();
        let attempt = match p.mounts.check(&dir) {
            Ok(()) => put_in_place(p, job, &sidecar, alone, stage, label.clone()).await,
            Err(e) => Err(e),
        };
        match attempt {
            Ok(()) => {
                tracing::info!(file = %job.name, to = %final_path.display(), "finished after restart");
                return;
            }
            Err(e) => {
                let going_on = retry.failed(&e, |text| {
                    tracing::error!(file = %job.name, "cannot complete the interrupted finish ({text}); trying again every minute")
                });
                if !going_on.await {
                    return;
                }
            }
        }
    }
}

/// A claimed file's work copy is gone before it had an answer of its own (a stage said
/// [`Step::Vanished`](crate::pipeline::Step::Vanished)): if documents were paid for it
/// anyway (answers superseded while it changed), they go to failed/ in a sidecar of kind
/// `deleted`; otherwise it is recorded as lost.
pub async fn vanished(p: &Context, job: &mut Job) {
    let Some(superseded) = p.recorder.superseded_of(job).await else {
        return;
    };
    if superseded.is_empty() && job.document_id.is_none() {
        lost(p, job).await;
        return;
    }
    let nothing = Outcome {
        status: Status::Failed,
        result: None,
        result_raw: None,
        error: None,
        review: Vec::new(),
    };
    finish(p, job, nothing).await;
}

/// The outcome a stored sidecar records (to finish it again elsewhere).
fn outcome_of(sidecar: Sidecar) -> Outcome {
    Outcome {
        status: sidecar.status,
        result: sidecar.result,
        result_raw: sidecar.result_raw,
        error: sidecar.error,
        review: sidecar.review,
    }
}

/// A claimed file's work copy is gone (deleted by hand): report it, close its record as lost.
pub async fn lost(p: &Context, job: &mut Job) {
    tracing::error!(
        file = %job.name, work_path = %job.work_path.display(),
        document_id = job.document_id.as_deref().unwrap_or("-"),
        "the claimed file disappeared from the work folder (deleted by hand?); nothing to send or move"
    );
    let _ = p.recorder.record(job, Event::Lost).await;
}

fn log_finished(inbox: &Path, job: &Job, outcome: &Outcome, final_path: &Path) {
    let to = final_path.display();
    let document_id = job.document_id.as_deref().unwrap_or("-");
    let review = outcome.review.join(" ");
    match &outcome.error {
        None if outcome.status == Status::Review => {
            tracing::info!(inbox = %inbox.display(), file = %job.name, document_id, to = %to, "to review: {review}")
        }
        None if !review.is_empty() => {
            tracing::info!(inbox = %inbox.display(), file = %job.name, document_id, to = %to, "done; a person should check it (no review folder set): {review}")
        }
        None => {
            tracing::info!(inbox = %inbox.display(), file = %job.name, document_id, to = %to, "done")
        }
        Some(e) => tracing::info!(
            inbox = %inbox.display(), file = %job.name, document_id, to = %to,
            kind = e.kind.as_str(), http_status = e.http_status,
            "failed: {}", e.message
        ),
    }
}

/// The sidecar for `job` ending with `outcome`, its original named `file` in done/failed.
fn sidecar_of(
    job: &Job,
    inbox: &InboxConfig,
    outcome: &Outcome,
    file: &str,
    superseded: &[Superseded],
) -> Sidecar {
    Sidecar {
        sidecar_version: SIDECAR_VERSION,
        status: outcome.status,
        doc_type: inbox.doc_type.clone(),
        document_id: job.document_id.clone(),
        duplicate_of: job.duplicate_of.clone(),
        superseded: superseded
            .iter()
            .map(|s| crate::sidecar::Superseded {
                document_id: s.document_id.clone(),
                why: s.why.clone(),
            })
            .collect(),
        file: file.to_string(),
        source: Source {
            name: job.name.clone(),
            inbox: inbox.path.display().to_string(),
            sha256: job.sha256.clone(),
            size: job.size,
            files: job.payload.is_set().then(|| source_files(job)),
        },
        result: outcome.result.clone(),
        result_raw: outcome.result_raw.clone(),
        documents: outcome
            .result
            .as_ref()
            .map(|result| documents_of(job, result, file))
            .unwrap_or_default(),
        review: outcome.review.clone(),
        reviewed: None,
        error: outcome.error.clone(),
        timestamps: Timestamps {
            detected: rfc3339(job.detected_at),
            claimed: rfc3339(job.claimed_at),
            submitted: job.submitted_at.map(rfc3339),
            finished: rfc3339(SystemTime::now()),
        },
        written_by: concat!("beorg-hotfolder ", env!("CARGO_PKG_VERSION")).to_string(),
    }
}

/// A recognised result with reasons for a person to check it: status `review` when the
/// inbox has a review folder (else it stays `done`), the reasons kept for the sidecar.
fn reviewed(job: &Job, mut outcome: Outcome) -> Outcome {
    let Some(result) = outcome
        .result
        .as_ref()
        .filter(|_| outcome.status == Status::Done)
    else {
        return outcome;
    };
    let base_name = job.name.rsplit('/').next().unwrap_or(&job.name);
    let documents = documents_of(job, result, base_name);
    outcome.review = results::review_reasons(&documents, job.inbox.min_confidence);
    if !outcome.review.is_empty() && job.inbox.review.is_some() {
        outcome.status = Status::Review;
    }
    outcome
}

/// The normalised documents of `result`, each named by the file it belongs to: the set
/// member sent under its key, else `file` (a single file's own name).
fn documents_of(job: &Job, result: &serde_json::Value, file: &str) -> Vec<results::Document> {
    let members: Vec<(String, String)> = job
        .payload
        .members()
        .iter()
        .map(|m| (m.key.clone(), m.name.clone()))
        .collect();
    let naming = results::Naming {
        files: &members,
        file,
        doc_type: &job.inbox.doc_type,
    };
    results::documents(result, &naming)
}

/// A set's files for its sidecar, in the order sent.
fn source_files(job: &Job) -> Vec<SourceFile> {
    job.payload
        .members()
        .iter()
        .map(|m| SourceFile {
            name: m.name.clone(),
            sha256: m.sha256.clone(),
            size: m.size,
            doc_type: m.doc_type.clone(),
            key: m.key.clone(),
        })
        .collect()
}

fn file_name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f).await?
}
