//! A decision interrupted by a crash: the journal transaction moves the original and writes
//! its new sidecar before it commits, and removes the old sidecar only after. A crash in
//! between leaves, in the review folder, an old sidecar whose original is gone, and in
//! done/ or failed/ the original with a new sidecar carrying `reviewed` and the same
//! `source`, while the journal still says review and no `file.reviewed` is queued. Each
//! time a session attaches, such pairs are found and recorded as the decision would have
//! been ([`crate::store::journal::Journal::review_interrupted`]), so the decision is in the
//! history and delivered, at least once.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{Config, InboxConfig};
use crate::sidecar::{Sidecar, Status};
use crate::store::journal::{InterruptedDecision, Journal, OutcomeOf, Stage};
use crate::store::layout;

/// Finds and records every interrupted decision of `config`'s review folders.
pub async fn finish_interrupted(config: Arc<Config>, journal: Journal) {
    let found = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || interrupted(&config))
            .await
            .unwrap_or_default()
    };
    for (inbox, decision) in found {
        let from = decision.from.clone();
        let outcome_of: OutcomeOf = Box::new(move |text, original, sidecar| {
            crate::deliver::message::reviewed_outcome(&inbox, text, original, sidecar)
        });
        match journal.review_interrupted(decision, outcome_of).await {
            Ok(true) => tracing::warn!(
                "a review decision on {} was interrupted (the daemon stopped between moving it and recording it): recorded now",
                from.display()
            ),
            Ok(false) => {}
            Err(e) => tracing::error!(
                "cannot record the interrupted review decision on {}: {e:#}",
                from.display()
            ),
        }
    }
}

/// Every (inbox, decision) found complete on disk and not recorded.
fn interrupted(config: &Config) -> Vec<(InboxConfig, InterruptedDecision)> {
    let mut found = Vec::new();
    for inbox in &config.inboxes {
        let Some(review) = &inbox.review else {
            continue;
        };
        for old in orphan_sidecars(review) {
            if let Some(decision) = decided_copy(inbox, &old) {
                found.push((inbox.clone(), decision));
            }
        }
    }
    found
}

/// `(original's path, its sidecar)` for each review sidecar whose original is gone.
fn orphan_sidecars(review: &Path) -> Vec<(PathBuf, Sidecar)> {
    let Ok(entries) = std::fs::read_dir(review) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let path = entry.path();
            let name = path.file_name()?.to_str()?;
            let original = review.join(name.strip_suffix(".json")?);
            if !layout::is_sidecar(&path) || original.symlink_metadata().is_ok() {
                return None;
            }
            let sidecar: Sidecar = serde_json::from_str(&read(&path)?).ok()?;
            (sidecar.status == Status::Review).then_some((original, sidecar))
        })
        .collect()
}

/// The decided copy of `old` in the inbox's done/ or failed/: a sidecar with `reviewed`
/// and the same `source`, beside its original.
fn decided_copy(
    inbox: &InboxConfig,
    (from, old): &(PathBuf, Sidecar),
) -> Option<InterruptedDecision> {
    for (dir, stage) in [(&inbox.done, Stage::Done), (&inbox.failed, Stage::Failed)] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !layout::is_sidecar(&path) {
                continue;
            }
            let Some(text) = read(&path) else { continue };
            let Ok(new) = serde_json::from_str::<Sidecar>(&text) else {
                continue;
            };
            let Some(reviewed) = &new.reviewed else {
                continue;
            };
            let to = dir.join(&new.file);
            if new.source != old.source || !to.exists() {
                continue;
            }
            return Some(InterruptedDecision {
                from: from.clone(),
                to,
                stage,
                decision: reviewed.decision.clone(),
                by: reviewed.by.clone(),
                corrected: reviewed.corrections.keys().cloned().collect(),
                sidecar_text: text,
            });
        }
    }
    None
}

fn read(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    crate::store::fsutil::open_no_follow(path)
        .ok()?
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}
