//! Preflight of a document set: the set's own rules ([`set::refusal`]: 1 to 10 files, keys,
//! relations, 800 MB, no folder inside), then each file's format rules under the inbox's
//! policy. A set refused here goes whole to failed/; no request is made.

use std::path::{Path, PathBuf};

use super::{Policy, Refusal};
use crate::pipeline::set::{self, Member};
use crate::pipeline::{Job, Step};
use crate::sidecar::{ErrorKind, Outcome};

/// The set stage of preflight: the set's own rules, then each member's format rules under the
/// inbox's `preflight` policy. No request is made for a set refused here.
pub async fn preflight(job: &Job) -> Step {
    let (inbox, folder, name) = (job.inbox.clone(), job.work_path.clone(), job.name.clone());
    let members = job.members.clone();
    let checked = tokio::task::spawn_blocking(move || {
        let listing = match set::list(&inbox, &folder) {
            Ok(listing) => listing,
            Err(e) => return Err(e),
        };
        if let Some(refused) = set::refusal(&inbox, &name, &listing, &members) {
            return Ok(Some(refused));
        }
        if inbox.preflight == Policy::Off {
            return Ok(None);
        }
        Ok(first_refused_member(
            &folder,
            &members,
            inbox.preflight,
            &name,
        ))
    })
    .await;
    match checked {
        Ok(Ok(None)) => Step::Next,
        Ok(Ok(Some((kind, message)))) => {
            tracing::info!(file = %job.name, "set refused before sending: {message}");
            Step::Finish(Outcome::failed(kind, None, message))
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Step::Vanished,
        Ok(Err(e)) => Step::Finish(Outcome::failed(
            ErrorKind::Unreadable,
            None,
            format!(
                "The set could not be read ({e}). Check the folder's permissions and put it in again."
            ),
        )),
        Err(e) => {
            tracing::error!(file = %job.name, "set preflight crashed: {e}");
            Step::Next
        }
    }
}

/// The first member the format rules refuse (strict), naming the file; under `warn` each
/// refusal is logged and the set goes anyway.
fn first_refused_member(
    folder: &Path,
    members: &[Member],
    policy: Policy,
    set: &str,
) -> Option<(ErrorKind, String)> {
    for member in members {
        let path: PathBuf = folder.join(&member.name);
        let refusal = match crate::logging::contained(|| super::check(&path)) {
            Ok(Ok(_)) => continue,
            Ok(Err(Refusal(message))) => message,
            Err(e) => format!("It could not be read ({e})."),
        };
        if policy == Policy::Warn {
            tracing::warn!(file = %set, member = %member.name, "sending the set although the service will probably refuse this file (preflight = \"warn\"): {refusal}");
            continue;
        }
        return Some((
            ErrorKind::InvalidFile,
            format!("{} in the set {set}: {refusal}", member.name),
        ));
    }
    None
}
