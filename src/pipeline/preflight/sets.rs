//! Preflight of a document set: the set's own rules ([`refusal`]: no folder inside, no file
//! still arriving under a temporary name, no link, 1 to 10 files, one file per key, every
//! `relation` answered, 800 MB in all), then each file's format rules under the inbox's
//! policy. A set refused here goes whole to failed/; no request is made. What a set is (its
//! listing, members and hash) is [`set`]'s; what may be sent is decided here.

use std::path::{Path, PathBuf};

use super::{MAX_REQUEST_BYTES, MB, Policy, Refusal};
use crate::config::InboxConfig;
use crate::pipeline::set::{self, Listing, Member};
use crate::pipeline::{Job, Step};
use crate::sidecar::{ErrorKind, Outcome};

/// Most files in one request (the vendor's basic scenario: 1 to 10 documents).
const MAX_MEMBERS: usize = 10;

/// The set stage of preflight: the set's own rules, then each member's format rules under the
/// inbox's `preflight` policy. No request is made for a set refused here.
pub async fn preflight(job: &Job, members: &[Member]) -> Step {
    let (inbox, folder, name) = (job.inbox.clone(), job.work_path.clone(), job.name.clone());
    let members = members.to_vec();
    let checked = tokio::task::spawn_blocking(move || {
        let listing = match set::list(&inbox, &folder) {
            Ok(listing) => listing,
            Err(e) => return Err(e),
        };
        if let Some(refused) = refusal(&inbox, &name, &listing, &members) {
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

/// The set's own rules, checked before anything is paid: why it cannot be sent, if it
/// cannot (`listing` is the claimed folder as it is now).
fn refusal(
    inbox: &InboxConfig,
    set: &str,
    listing: &Listing,
    members: &[Member],
) -> Option<(ErrorKind, String)> {
    let invalid = |message: String| Some((ErrorKind::InvalidFile, message));
    if let Some(folder) = listing.folders.first() {
        return invalid(format!(
            "The set {set} has a folder inside it ({folder}); a set is the files directly in its folder. Move the files of {folder} up (or the folder out) and put the set in again."
        ));
    }
    if let Some(name) = listing.temporary().next() {
        return invalid(format!(
            "{name} in the set {set} has a temporary name: a file still being written or copied (or left over from a copy that stopped), and the set is never sent without it. Finish or remove {name} and put the set in again."
        ));
    }
    if !listing.refused.is_empty() {
        return invalid(links_refused(set, &listing.refused));
    }
    if members.is_empty() {
        return invalid(format!(
            "The set {set} has no files to send. Put its scans in the folder and put the set in again."
        ));
    }
    if members.len() > MAX_MEMBERS {
        return invalid(format!(
            "The set {set} has {} files; the service takes 1 to {MAX_MEMBERS} documents in one request. Split it into sets of at most {MAX_MEMBERS} files.",
            members.len()
        ));
    }
    if let Some(message) = key_clash(inbox, members) {
        return invalid(message);
    }
    if let Some(message) = missing_relation(inbox, members) {
        return invalid(message);
    }
    let total: u64 = members.iter().map(|m| m.size).sum();
    if total > MAX_REQUEST_BYTES {
        return Some((
            ErrorKind::TooLarge,
            format!(
                "The set {set} is {} MB in all; the service takes at most {} MB in one request. Scan with a lower resolution or split the set.",
                total / MB,
                MAX_REQUEST_BYTES / MB
            ),
        ));
    }
    None
}

/// Every entry of the set that can never be sent, and what it is: "In the set seth2,
/// selfie.png has other hard links (...), so it is not uploaded; ...".
fn links_refused(set: &str, refused: &[(String, &'static str)]) -> String {
    let each: Vec<String> = refused
        .iter()
        .map(|(name, why)| format!("{name} {why}"))
        .collect();
    let fix = if refused.len() == 1 {
        "Replace it with the file itself and put the set in again."
    } else {
        "Replace each with the file itself and put the set in again."
    };
    format!(
        "In the set {set}, {}. The set cannot be sent. {fix}",
        each.join("; ")
    )
}

/// Two files that claim one key.
fn key_clash(inbox: &InboxConfig, members: &[Member]) -> Option<String> {
    for (i, a) in members.iter().enumerate() {
        if let Some(b) = members[i + 1..].iter().find(|b| b.key == a.key) {
            let why = match inbox.documents.iter().find(|r| r.matcher.is_match(&a.name)) {
                Some(rule) => format!(
                    "the rule match = \"{}\" gives key {} to one file only",
                    rule.pattern, a.key
                ),
                None => format!("the inbox's key {} goes to one file only", a.key),
            };
            return Some(format!(
                "{} and {} both claim the key {} ({why}). Keep one of them in the set, or rename the other so another rule matches it.",
                a.name, b.name, a.key
            ));
        }
    }
    None
}

/// A `relation` pointing at a key no member has: "this set needs a selfie for the face match;
/// none of its files matches *selfie*".
fn missing_relation(inbox: &InboxConfig, members: &[Member]) -> Option<String> {
    for member in members {
        for (stage, target) in &member.relation {
            if members.iter().any(|m| &m.key == target) {
                continue;
            }
            let giver = inbox
                .documents
                .iter()
                .find(|r| r.key.as_deref() == Some(target));
            let (what, pattern) = match giver {
                Some(rule) => (rule.doc_type.to_lowercase(), rule.pattern.clone()),
                None => (target.to_lowercase(), target.clone()),
            };
            let check = match stage.as_str() {
                "biometry_match" => "the face match".to_string(),
                other => other.to_string(),
            };
            return Some(format!(
                "This set needs a {what} for {check} of {} ({}); none of its files matches {pattern}. Add the {what} to the set and put it in again.",
                member.name, member.key
            ));
        }
    }
    None
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::set::plan;
    use crate::pipeline::set::tests::{KYC, files, inbox};

    #[test]
    fn two_files_for_one_key_are_refused_naming_both() {
        let inbox = inbox(KYC);
        let members = plan(&inbox, files(&["a.jpg", "b.jpg", "selfie.jpg"]));
        let listing = Listing::default();
        let (kind, message) = refusal(&inbox, "kyc-1", &listing, &members).unwrap();
        assert_eq!(kind, ErrorKind::InvalidFile);
        assert!(
            message.contains("a.jpg and b.jpg both claim the key PASSPORT1"),
            "{message}"
        );
        assert!(message.contains("match = \"*\""), "{message}");
    }

    #[test]
    fn a_missing_selfie_is_refused_with_the_fix() {
        let inbox = inbox(KYC);
        let members = plan(&inbox, files(&["passport.jpg"]));
        let (_, message) = refusal(&inbox, "kyc-1", &Listing::default(), &members).unwrap();
        assert!(
            message.contains("This set needs a selfie for the face match"),
            "{message}"
        );
        assert!(
            message.contains("none of its files matches *selfie*"),
            "{message}"
        );
        let complete = plan(&inbox, files(&["passport.jpg", "selfie.jpg"]));
        assert_eq!(
            refusal(&inbox, "kyc-1", &Listing::default(), &complete),
            None
        );
    }

    #[test]
    fn one_to_ten_files_folders_inside_and_the_request_limit() {
        let inbox = inbox("");
        let none = refusal(&inbox, "s", &Listing::default(), &[]).unwrap();
        assert!(none.1.contains("no files"), "{}", none.1);
        let names: Vec<String> = (1..=11).map(|n| format!("p{n}.jpg")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let eleven = plan(&inbox, files(&names));
        let (_, message) = refusal(&inbox, "s", &Listing::default(), &eleven).unwrap();
        assert!(message.contains("11 files"), "{message}");
        assert_eq!(
            refusal(&inbox, "s", &Listing::default(), &eleven[..10]),
            None
        );
        let nested = Listing {
            folders: vec!["more".into()],
            ..Listing::default()
        };
        let (_, message) = refusal(&inbox, "s", &nested, &eleven[..2]).unwrap();
        assert!(message.contains("(more)"), "{message}");
        let mut big = plan(&inbox, files(&["a.tif", "b.tif"]));
        big[0].size = MAX_REQUEST_BYTES;
        big[1].size = 1;
        let (kind, _) = refusal(&inbox, "s", &Listing::default(), &big).unwrap();
        assert_eq!(kind, ErrorKind::TooLarge);
    }

    /// Every entry that can never be sent is named with what it is, and nothing claims it
    /// stays in the inbox (the set goes to failed/ with it).
    #[test]
    fn a_refusal_names_every_link_in_the_set() {
        let inbox = inbox("");
        let members = plan(&inbox, files(&["passport.jpg"]));
        let listing = Listing {
            refused: vec![
                (
                    "face.jpg".into(),
                    "is a symbolic link (links are never followed or uploaded)",
                ),
                (
                    "selfie.jpg".into(),
                    "has other hard links (possibly to a file outside the inbox), so it is not uploaded",
                ),
            ],
            ..Listing::default()
        };
        let (kind, message) = refusal(&inbox, "seth2", &listing, &members).unwrap();
        assert_eq!(kind, ErrorKind::InvalidFile);
        assert_eq!(
            message,
            "In the set seth2, face.jpg is a symbolic link (links are never followed or uploaded); selfie.jpg has other hard links (possibly to a file outside the inbox), so it is not uploaded. The set cannot be sent. Replace each with the file itself and put the set in again."
        );
    }
}
