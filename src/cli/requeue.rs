//! `beorg-hotfolder requeue <path>...`: puts an original (a file, or a set's folder) from an
//! inbox's failed/ or review/ folder back into that inbox, to be processed as new.
//!
//! Only what the daemon finished there is taken: the path must be in a failed/ or review/
//! folder of the inbox its sidecar names, and that sidecar must name it. The move is one
//! no-clobber rename into the inbox (the daemon never sees a half-moved file; a name already
//! in the inbox is refused, never overwritten or renumbered), made inside the journal
//! transaction that records it ([`Journal::requeue`]), and so is the sidecar's removal (its
//! content stays in the history): a crash after the commit leaves nothing to do, never the
//! old sidecar beside a file sent again. Each refusal says why, and nothing is moved.

use std::path::{Path, PathBuf};

use crate::config::{Config, InboxConfig};
use crate::sidecar::Sidecar;
use crate::store::fsutil;
use crate::store::journal::{Journal, Requeue, Requeued};
use crate::store::layout;

/// One path's answer: where it went, or why not.
pub type Answer = Result<String, String>;

/// Requeues each of `paths`; one answer per path, in order.
pub async fn requeue(config: &Config, paths: &[PathBuf]) -> anyhow::Result<Vec<Answer>> {
    refuse_another_users_journal(&config.daemon.state_dir)?;
    let journal = Journal::open(&config.daemon.state_dir)?;
    let mut answers = Vec::new();
    for path in paths {
        let answer = match plan(config, path) {
            Ok(plan) => carry_out(&journal, plan).await?,
            Err(why) => Err(why),
        };
        answers.push(answer.map_err(|why| format!("{}: not requeued: {why}", path.display())));
    }
    Ok(answers)
}

/// The journal is written by requeue: run as anyone but its owner (root, typically), SQLite
/// could leave side files (`-wal`, `-shm`) the daemon's user cannot open. Refused instead.
fn refuse_another_users_journal(state_dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let journal = layout::journal_path(state_dir);
    let Ok(meta) = journal.metadata() else {
        anyhow::bail!(
            "no journal at {}: the daemon has not run with this config yet (or this user may not read daemon.state_dir)",
            journal.display()
        );
    };
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        anyhow::bail!(
            "the journal {} belongs to user id {}, not to this user ({me}): run requeue as the daemon's user (e.g. sudo -u beorg-hotfolder beorg-hotfolder requeue ...), so the journal's files stay its own",
            journal.display(),
            meta.uid()
        );
    }
    Ok(())
}

/// What one requeue moves, once every check passed.
struct Plan {
    from: PathBuf,
    to: PathBuf,
    sidecar: PathBuf,
    sidecar_json: String,
    documents: Vec<String>,
}

/// The checks: every refusal in plain words, before anything is touched.
fn plan(config: &Config, path: &Path) -> Result<Plan, String> {
    let from = std::path::absolute(path).map_err(|e| format!("cannot resolve the path ({e})"))?;
    let meta = from
        .symlink_metadata()
        .map_err(|e| format!("cannot find it ({e})"))?;
    if layout::is_sidecar(&from) && !meta.is_dir() {
        return Err(
            "this is a sidecar; give the original it describes (the same name without .json)"
                .into(),
        );
    }
    let folder = finished_folder(config, &from)?;
    let sidecar_path = layout::sidecar_path(&from);
    let sidecar_json = std::fs::read_to_string(&sidecar_path).map_err(|e| {
        format!(
            "it has no sidecar ({}: {e}), so the daemon did not put it there",
            sidecar_path.display()
        )
    })?;
    let sidecar: Sidecar = serde_json::from_str(&sidecar_json).map_err(|e| {
        format!(
            "{} is not a sidecar of this daemon ({e}), so the daemon did not put it there",
            sidecar_path.display()
        )
    })?;
    let name = from.file_name().unwrap_or_default().to_string_lossy();
    if sidecar.file != name {
        return Err(format!(
            "its sidecar {} names another file ({}), so the daemon did not put this one there",
            sidecar_path.display(),
            sidecar.file
        ));
    }
    let inbox = inbox_of(config, &sidecar, &folder)?;
    if sidecar.source.files.is_some() != meta.is_dir() {
        return Err(format!(
            "its sidecar describes a {} but this is a {}",
            kind(sidecar.source.files.is_some()),
            kind(meta.is_dir())
        ));
    }
    let to = inbox.path.join(&sidecar.source.name);
    let parent = to.parent().unwrap_or(&inbox.path);
    if !parent.is_dir() {
        return Err(format!(
            "the folder it came from, {}, no longer exists",
            parent.display()
        ));
    }
    let documents = sidecar
        .document_id
        .iter()
        .chain(sidecar.duplicate_of.iter())
        .cloned()
        .chain(sidecar.superseded.iter().map(|s| s.document_id.clone()))
        .collect();
    Ok(Plan {
        from,
        to,
        sidecar: sidecar_path,
        sidecar_json,
        documents,
    })
}

fn kind(set: bool) -> &'static str {
    if set { "document set (folder)" } else { "file" }
}

/// The failed/ or review/ folder `path` is in (resolved), or why it is none.
fn finished_folder(config: &Config, path: &Path) -> Result<PathBuf, String> {
    let real = resolved(path.parent().unwrap_or(path));
    let under = |folder: &Path| real.starts_with(resolved(folder));
    for inbox in &config.inboxes {
        for folder in [Some(&inbox.failed), inbox.review.as_ref()]
            .into_iter()
            .flatten()
        {
            if under(folder) {
                return Ok(resolved(folder));
            }
        }
    }
    if let Some(inbox) = config.inboxes.iter().find(|i| under(&i.done)) {
        return Err(format!(
            "it is in done/ ({}): its result was good; requeue takes originals from failed/ or review/ only",
            inbox.done.display()
        ));
    }
    Err("it is not in any inbox's failed/ or review/ folder: requeue only puts back what the daemon finished there".into())
}

/// The inbox the sidecar names, if `folder` is one of its failed/ or review/ folders.
fn inbox_of<'c>(
    config: &'c Config,
    sidecar: &Sidecar,
    folder: &Path,
) -> Result<&'c InboxConfig, String> {
    let named = Path::new(&sidecar.source.inbox);
    let Some(inbox) = config
        .inboxes
        .iter()
        .find(|i| i.path == named || resolved(&i.path) == resolved(named))
    else {
        return Err(format!(
            "its sidecar says it came from {}, which this config has no inbox for",
            named.display()
        ));
    };
    let own = [Some(&inbox.failed), inbox.review.as_ref()]
        .into_iter()
        .flatten()
        .any(|f| resolved(f) == folder);
    if !own {
        return Err(format!(
            "its sidecar says it came from {}, whose failed/ and review/ folders are elsewhere: it was moved here from another inbox's folder",
            named.display()
        ));
    }
    Ok(inbox)
}

fn resolved(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

/// Records and moves (one journal transaction), then removes the sidecar.
async fn carry_out(journal: &Journal, plan: Plan) -> anyhow::Result<Answer> {
    let (from, to) = (plan.from.clone(), plan.to.clone());
    let record = Requeue {
        from: plan.from,
        to: plan.to,
        sidecar: plan.sidecar.clone(),
        sidecar_json: plan.sidecar_json,
        documents: plan.documents,
    };
    let moving = (from.clone(), to.clone(), plan.sidecar.clone());
    let sidecar_left = std::sync::Arc::new(std::sync::Mutex::new(None));
    let left = sidecar_left.clone();
    let done = journal
        .requeue(record, move || {
            fsutil::rename_noclobber(&moving.0, &moving.1)?;
            if let Some(dir) = moving.1.parent() {
                let _ = fsutil::sync_dir(dir);
            }
            if let Err(e) = std::fs::remove_file(&moving.2) {
                *left.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            }
            Ok(())
        })
        .await?;
    Ok(match done {
        Requeued::Moved(_) => {
            let left = sidecar_left
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            let note = match left {
                None => String::new(),
                Some(e) => format!(
                    " (its sidecar {} could not be removed: {e}; remove it by hand)",
                    plan.sidecar.display()
                ),
            };
            Ok(format!(
                "{} -> {}: requeued, it is sent again as a new file{note}",
                from.display(),
                to.display()
            ))
        }
        Requeued::NotFinished(stage) => Err(format!(
            "the journal says it is {stage}, not finished in failed/ or review/ (is the daemon still finishing it? try again in a moment)"
        )),
        Requeued::MoveFailed(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(format!(
            "{} already exists in the inbox; move or rename that one first",
            to.display()
        )),
        Requeued::MoveFailed(e) => Err(format!(
            "it could not be moved to {} ({e}); copy it there by hand if the folders are on different filesystems",
            to.display()
        )),
    })
}
