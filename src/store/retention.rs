//! Retention of personal data: the outcomes in an inbox's done, review and failed folders
//! whose sidecar is older than the inbox's `retention` are deleted, each as a pair: the
//! sidecar first, then its original (a file, or a set folder), so a reader never sees a
//! sidecar without its original.
//!
//! Only pairs the daemon wrote are touched: `<name>` beside `<name>.json`, where the `.json`
//! is a regular file whose `written_by` names this program, whose `file` is `<name>` and whose
//! `source.inbox` is this inbox (several inboxes may share a review folder). Anything else
//! in those folders — a file without a sidecar, a sidecar without its original, someone
//! else's `.json`, links, dot-names — stays. Subfolders (a recursive inbox's) are searched
//! too, to a bounded depth.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::config::InboxConfig;
use crate::store::layout::SIDECAR_SUFFIX;

/// Subfolders deeper than this below done/review/failed are not searched.
const MAX_DEPTH: usize = 16;

/// A sidecar larger than this is not read (ours hold one result: far smaller).
const MAX_SIDECAR_BYTES: u64 = 64 * 1024 * 1024;

/// How the daemon signs its sidecars (`written_by`).
const WRITTEN_BY: &str = "beorg-hotfolder ";

/// Deletes `inbox`'s outcomes whose sidecar was last modified before `now - retention`;
/// returns how many pairs went. Nothing happens for an inbox without `retention`.
pub fn sweep(inbox: &InboxConfig, now: SystemTime) -> u64 {
    let Some(retention) = inbox.retention else {
        return 0;
    };
    let cutoff = now.checked_sub(retention).unwrap_or(SystemTime::UNIX_EPOCH);
    let owner = inbox.path.display().to_string();
    let mut folders = vec![&inbox.done, &inbox.failed];
    folders.extend(inbox.review.as_ref());
    folders
        .into_iter()
        .map(|folder| sweep_folder(folder, &owner, cutoff, 0))
        .sum()
}

/// One folder and its subfolders.
fn sweep_folder(dir: &Path, owner: &str, cutoff: SystemTime, depth: usize) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| !name.starts_with('.'))
        .collect();
    // Looked up once per folder met (a set's outcome is a folder): a set, not a scan of
    // every name, so 100,000 outcomes are not 100,000 × 100,000 comparisons.
    let lookup: HashSet<&str> = names.iter().map(String::as_str).collect();
    let mut deleted = 0;
    for name in &names {
        let path = dir.join(name);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if let Some(original) = name.strip_suffix(SIDECAR_SUFFIX)
            && meta.is_file()
            && expired_pair(&path, &meta, &dir.join(original), owner, cutoff)
        {
            deleted += u64::from(delete_pair(&path, &dir.join(original)));
        } else if meta.is_dir()
            && depth < MAX_DEPTH
            && !lookup.contains(format!("{name}{SIDECAR_SUFFIX}").as_str())
        {
            deleted += sweep_folder(&path, owner, cutoff, depth + 1);
        }
    }
    deleted
}

/// Whether `sidecar` is ours, for `original` of `owner`'s inbox, and older than `cutoff`.
fn expired_pair(
    sidecar: &Path,
    meta: &std::fs::Metadata,
    original: &Path,
    owner: &str,
    cutoff: SystemTime,
) -> bool {
    let old = meta.modified().is_ok_and(|t| t < cutoff);
    let original_ok =
        || std::fs::symlink_metadata(original).is_ok_and(|m| m.is_file() || m.is_dir());
    old && meta.len() <= MAX_SIDECAR_BYTES && original_ok() && ours(sidecar, original, owner)
}

/// The keys of a sidecar that say whose it is; the rest (the result) is skipped unread.
#[derive(serde::Deserialize)]
struct Signature<'a> {
    #[serde(borrow, default)]
    written_by: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    file: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    source: Option<Source<'a>>,
}

#[derive(serde::Deserialize)]
struct Source<'a> {
    #[serde(borrow, default)]
    inbox: Option<std::borrow::Cow<'a, str>>,
}

/// The sidecar names this program, the original beside it, and the inbox.
fn ours(sidecar: &Path, original: &Path, owner: &str) -> bool {
    let Ok(text) = std::fs::read(sidecar) else {
        return false;
    };
    // Not a JSON object with these keys as strings: not ours.
    let Ok(signed) = serde_json::from_slice::<Signature>(&text) else {
        return false;
    };
    let name = original.file_name().and_then(|n| n.to_str());
    let inbox = signed.source.and_then(|s| s.inbox);
    signed.written_by.is_some_and(|w| w.starts_with(WRITTEN_BY))
        && signed.file.is_some()
        && signed.file.as_deref() == name
        && inbox.as_deref() == Some(owner)
}

/// The sidecar, then the original; true when both went.
fn delete_pair(sidecar: &Path, original: &Path) -> bool {
    if let Err(e) = std::fs::remove_file(sidecar) {
        tracing::warn!(file = %sidecar.display(), "retention: cannot delete the sidecar ({e}); its original stays too, tried again at the next sweep");
        return false;
    }
    let removed = match std::fs::symlink_metadata(original) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(original),
        _ => std::fs::remove_file(original),
    };
    match removed {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(file = %original.display(), "retention: deleted the sidecar but cannot delete the original ({e}); delete it by hand");
            false
        }
    }
}

/// Sweeps every inbox with `retention` and logs a count per inbox; returns the counts.
pub fn sweep_all(inboxes: &[InboxConfig], now: SystemTime) -> Vec<(PathBuf, u64)> {
    let mut counts = Vec::new();
    for inbox in inboxes.iter().filter(|i| i.retention.is_some()) {
        let deleted = sweep(inbox, now);
        let retention = humantime::format_duration(inbox.retention.unwrap_or(Duration::ZERO));
        if deleted > 0 {
            tracing::info!(inbox = %inbox.path.display(), "retention: deleted {deleted} outcomes (original and sidecar) older than {retention}");
        }
        counts.push((inbox.path.clone(), deleted));
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    struct Folders {
        _dir: tempfile::TempDir,
        inbox: InboxConfig,
    }

    fn folders(retention: Option<&str>, review: bool) -> Folders {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let mut extra = String::new();
        if let Some(r) = retention {
            extra.push_str(&format!("retention = \"{r}\"\n"));
        }
        if review {
            extra.push_str(&format!("review = \"{d}/review\"\n"));
        }
        let text = format!(
            "[api]\nproject_id = \"P\"\nmachine_uid = \"m\"\ntoken = \"t\"\n[[inbox]]\npath = \"{d}/in\"\ntype = \"PASSPORT\"\ndone = \"{d}/done\"\nfailed = \"{d}/failed\"\n{extra}"
        );
        let config = crate::Config::from_toml(&text, Path::new("/etc/c.toml"), None).unwrap();
        let inbox = config.inboxes[0].clone();
        for f in [&inbox.path, &inbox.done, &inbox.failed] {
            fs::create_dir_all(f).unwrap();
        }
        if let Some(r) = &inbox.review {
            fs::create_dir_all(r).unwrap();
        }
        Folders { _dir: dir, inbox }
    }

    fn sidecar_text(file: &str, inbox: &Path) -> String {
        serde_json::json!({"sidecar_version": 2, "file": file,
            "source": {"inbox": inbox.display().to_string()},
            "written_by": "beorg-hotfolder 0.1.0"})
        .to_string()
    }

    /// Writes `name` and its sidecar in `dir`, both modified `age` ago.
    fn outcome(dir: &Path, name: &str, inbox: &Path, age: Duration) {
        fs::write(dir.join(name), b"scan").unwrap();
        let sidecar = dir.join(format!("{name}.json"));
        fs::write(&sidecar, sidecar_text(name, inbox)).unwrap();
        age_file(&sidecar, age);
    }

    fn age_file(path: &Path, age: Duration) {
        let t = SystemTime::now() - age;
        fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    #[test]
    fn old_pairs_go_young_ones_and_strangers_stay() {
        let f = folders(Some("30d"), true);
        let i = &f.inbox;
        let review = i.review.clone().unwrap();
        outcome(&i.done, "old.jpg", &i.path, 31 * DAY);
        outcome(&i.done, "young.jpg", &i.path, 29 * DAY);
        outcome(&i.failed, "old.txt", &i.path, 40 * DAY);
        outcome(&review, "old.png", &i.path, 40 * DAY);
        // A recursive inbox's subfolder, and a set folder beside its sidecar.
        fs::create_dir_all(i.done.join("2026/11")).unwrap();
        outcome(&i.done.join("2026/11"), "deep.jpg", &i.path, 31 * DAY);
        fs::create_dir_all(i.done.join("kyc-1")).unwrap();
        fs::write(i.done.join("kyc-1/passport.jpg"), b"p").unwrap();
        fs::write(i.done.join("kyc-1.json"), sidecar_text("kyc-1", &i.path)).unwrap();
        age_file(&i.done.join("kyc-1.json"), 31 * DAY);
        // Not ours: another inbox's pair (shared review), a foreign .json, a lone sidecar,
        // a lone old file, a sidecar naming another file, a link.
        outcome(&review, "other.jpg", Path::new("/srv/in/other"), 40 * DAY);
        fs::write(i.done.join("notes.txt"), b"n").unwrap();
        fs::write(i.done.join("notes.txt.json"), b"{\"mine\": true}").unwrap();
        age_file(&i.done.join("notes.txt.json"), 40 * DAY);
        fs::write(
            i.done.join("lone.jpg.json"),
            sidecar_text("lone.jpg", &i.path),
        )
        .unwrap();
        age_file(&i.done.join("lone.jpg.json"), 40 * DAY);
        fs::write(i.done.join("a.jpg"), b"a").unwrap();
        fs::write(i.done.join("a.jpg.json"), sidecar_text("b.jpg", &i.path)).unwrap();
        age_file(&i.done.join("a.jpg.json"), 40 * DAY);
        std::os::unix::fs::symlink("/etc/hostname", i.done.join("link.jpg")).unwrap();
        fs::write(
            i.done.join("link.jpg.json"),
            sidecar_text("link.jpg", &i.path),
        )
        .unwrap();
        age_file(&i.done.join("link.jpg.json"), 40 * DAY);

        assert_eq!(sweep(i, SystemTime::now()), 5);
        let left = |dir: &Path| {
            let mut names: Vec<String> = fs::read_dir(dir)
                .unwrap()
                .flatten()
                .map(|e| e.file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        };
        assert_eq!(
            left(&i.done),
            [
                "2026",
                "a.jpg",
                "a.jpg.json",
                "link.jpg",
                "link.jpg.json",
                "lone.jpg.json",
                "notes.txt",
                "notes.txt.json",
                "young.jpg",
                "young.jpg.json"
            ]
        );
        assert!(left(&i.done.join("2026/11")).is_empty());
        assert!(left(&i.failed).is_empty());
        assert_eq!(left(&review), ["other.jpg", "other.jpg.json"]);
    }

    #[test]
    fn without_retention_nothing_is_deleted() {
        let f = folders(None, false);
        outcome(&f.inbox.done, "old.jpg", &f.inbox.path, 3650 * DAY);
        assert_eq!(sweep(&f.inbox, SystemTime::now()), 0);
        assert!(f.inbox.done.join("old.jpg").exists());
    }
}
