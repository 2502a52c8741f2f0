//! What a document set is: the files of one subfolder of a `sets` inbox, sent as one request.
//!
//! Its **members** are the regular files directly in the folder that intake would take
//! anyway (not hidden, not temporary, not matched by the inbox's `ignore`), minus the
//! `ready_file`, in **natural name order** (`page2` before `page10`). Each member gets its
//! `process_info` from the first `[[inbox.documents]]` rule whose `match` fits its name, else
//! from the inbox's `type`, `key` and `stages`. A rule's `key` goes to the files it matches
//! (two files with one key are refused by preflight); a file without a key gets
//! `<TYPE>1`, `<TYPE>2`, ... in name order, skipping keys already given.
//!
//! The set's SHA-256 is the SHA-256 of its members' lines `<file sha256>  <file name>\n`,
//! sorted (byte order) and concatenated: the same files under the same names give the same
//! hash wherever the folder is.
//!
//! This module owns the listing, the plan and the hash; the stages call into it for a job
//! that is a set (preflight's `sets` module holds the set's own checks before anything is
//! paid, poll names a broken set's files). It names no other stage: which entries count is
//! [`entries`](crate::pipeline::entries)' rule, shared with intake.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use crate::config::InboxConfig;
use crate::pipeline::entries::{EntryRules, Verdict, is_ignored_name, is_temporary_name};
use crate::pipeline::hashed::{self, Hashed};
use crate::store::fsutil;

pub use crate::lifecycle::Member;

/// A file of a set folder as listed (not read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub size: u64,
    pub mtime: SystemTime,
}

/// What a set folder holds, as far as the set is concerned.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Its members, in natural name order.
    pub files: Vec<Entry>,
    /// Whether the `ready_file` is there, as a regular file of its own.
    pub ready: bool,
    /// Why an entry named like the `ready_file` does not count as it (a link, a folder, a
    /// hard-linked file): only a regular file does.
    pub ready_refused: Option<&'static str>,
    /// Folders inside the set (not sent; the set is refused while they are there).
    pub folders: Vec<String>,
    /// Entries that can never be sent (links, odd files), and why.
    pub refused: Vec<(String, &'static str)>,
    /// Everything else in the folder, not sent: hidden and temporary names, the inbox's
    /// `ignore` patterns, the ready file, folders and refused entries, as `lstat` shows them.
    /// Their changes restart the settle time like a member's: a set holding a file still
    /// arriving under any name is not taken.
    pub others: Vec<Entry>,
}

impl Listing {
    /// Total size of the members.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The newest modification time of anything in the folder: with [`Listing::size`], what
    /// the claim compares to see that a queued set did not change. `UNIX_EPOCH` for a folder
    /// with nothing in it: an ordering key, never an age.
    pub fn newest(&self) -> SystemTime {
        self.files
            .iter()
            .chain(&self.others)
            .map(|f| f.mtime)
            .max()
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// The names left under a [temporary name](is_temporary_name): files still arriving (or
    /// left over from a copy that stopped). A set is never sent while one is there.
    pub fn temporary(&self) -> impl Iterator<Item = &str> {
        self.others
            .iter()
            .map(|f| f.name.as_str())
            .filter(|name| is_temporary_name(name))
    }

    /// Nothing intake would offer: no member, no folder, no refused entry, no temporary
    /// name and no ready file (hidden and ignored files alone do not make a set).
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
            && self.folders.is_empty()
            && self.refused.is_empty()
            && self.temporary().next().is_none()
            && !self.ready
    }
}

/// Lists the set folder `folder` of `inbox` (in the inbox, or claimed in the work folder).
/// Looks at each entry itself (`lstat`), never through a link.
pub fn list(inbox: &InboxConfig, folder: &Path) -> std::io::Result<Listing> {
    let rules = EntryRules::within(inbox, folder);
    let mut listing = Listing::default();
    for entry in std::fs::read_dir(folder)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            let shown = entry.file_name().to_string_lossy().into_owned();
            listing
                .refused
                .push((shown, "has a name that is not UTF-8"));
            continue;
        };
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue; // gone since the listing
        };
        let seen = Entry {
            name: name.clone(),
            size: meta.len(),
            mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        };
        if inbox.ready_file.as_deref() == Some(name.as_str()) {
            match ready_file_refusal(&meta) {
                None => listing.ready = true,
                Some(why) => listing.ready_refused = Some(why),
            }
            listing.others.push(seen);
            continue;
        }
        if is_ignored_name(&name) {
            listing.others.push(seen);
            continue;
        }
        if meta.is_dir() {
            listing.folders.push(name);
            listing.others.push(seen);
            continue;
        }
        match rules.judge(&path) {
            Verdict::Take { meta, .. } => listing.files.push(Entry {
                name,
                size: meta.len(),
                mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            }),
            Verdict::Refuse(why) => {
                listing.refused.push((name, why));
                listing.others.push(seen);
            }
            Verdict::Skip => listing.others.push(seen),
            Verdict::Gone | Verdict::Descend => {}
        }
    }
    listing.files.sort_by(|a, b| natural_cmp(&a.name, &b.name));
    listing.folders.sort();
    listing.others.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(listing)
}

/// Why an entry named like the `ready_file` does not count as it: only a regular file with
/// no other hard link does (a link to `/etc/passwd` or a folder is no signal, and would move
/// to done/ with the set).
fn ready_file_refusal(meta: &std::fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::MetadataExt;
    let kind = meta.file_type();
    if kind.is_symlink() {
        Some("is a symbolic link")
    } else if kind.is_dir() {
        Some("is a folder")
    } else if !kind.is_file() {
        Some("is not a regular file")
    } else if meta.nlink() > 1 {
        Some("has other hard links")
    } else {
        None
    }
}

/// The sets waiting in a sets inbox (each subfolder with something to offer counts as one,
/// as intake takes them; an empty folder is not waiting), and since when the oldest one
/// waits (unix seconds), for `status`.
pub fn waiting(inbox: &InboxConfig) -> (u64, Option<u64>) {
    let Ok(entries) = std::fs::read_dir(&inbox.path) else {
        return (0, None);
    };
    let mut count = 0;
    let mut oldest: Option<u64> = None;
    for entry in entries.flatten() {
        let hidden = is_ignored_name(&entry.file_name().to_string_lossy());
        if hidden || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let folder = entry.path();
        let Ok(listing) = list(inbox, &folder) else {
            continue;
        };
        if listing.is_empty() {
            continue;
        }
        count += 1;
        oldest = [oldest, waiting_since(&folder, &listing)]
            .into_iter()
            .flatten()
            .min();
    }
    (count, oldest)
}

/// Since when a set waits (unix seconds): the last time anything in it arrived or changed,
/// by the kernel's change time (ctime), which a copy that keeps old mtimes cannot set back.
fn waiting_since(folder: &Path, listing: &Listing) -> Option<u64> {
    listing
        .files
        .iter()
        .chain(&listing.others)
        .filter_map(|f| std::fs::symlink_metadata(folder.join(&f.name)).ok())
        .filter_map(|meta| fsutil::changed_at_unix(&meta))
        .max()
}

/// Natural order: runs of digits compare as numbers (`page2` < `page10`), the rest
/// character by character; names equal that way fall back to plain byte order.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a, b);
    loop {
        match (x.chars().next(), y.chars().next()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let (m, rest_x) = split_digits(x);
                let (n, rest_y) = split_digits(y);
                let order = compare_numbers(m, n);
                if order != Ordering::Equal {
                    return order;
                }
                (x, y) = (rest_x, rest_y);
            }
            (Some(c), Some(d)) => {
                if c != d {
                    return c.cmp(&d);
                }
                (x, y) = (&x[c.len_utf8()..], &y[d.len_utf8()..]);
            }
        }
    }
}

fn split_digits(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s.split_at(end)
}

/// Two runs of ASCII digits by value, of any length.
fn compare_numbers(m: &str, n: &str) -> Ordering {
    let (m, n) = (m.trim_start_matches('0'), n.trim_start_matches('0'));
    m.len().cmp(&n.len()).then_with(|| m.cmp(n))
}

/// What is asked for one file: from the first rule that matches its name, else the inbox's.
struct Asked {
    doc_type: String,
    key: Option<String>,
    stages: Vec<String>,
    relation: BTreeMap<String, String>,
}

fn asked_for(inbox: &InboxConfig, name: &str) -> Asked {
    match inbox.documents.iter().find(|r| r.matcher.is_match(name)) {
        Some(rule) => Asked {
            doc_type: rule.doc_type.clone(),
            key: rule.key.clone(),
            stages: rule.stages.clone(),
            relation: rule.relation.clone(),
        },
        None => Asked {
            doc_type: inbox.doc_type.clone(),
            key: inbox.key.clone(),
            stages: inbox.stages.clone(),
            relation: BTreeMap::new(),
        },
    }
}

/// The members with their `process_info`, from `(name, sha256, size)` in natural order.
pub fn plan(inbox: &InboxConfig, files: Vec<(String, String, u64)>) -> Vec<Member> {
    let asked: Vec<Asked> = files.iter().map(|f| asked_for(inbox, &f.0)).collect();
    let mut used: Vec<String> = asked.iter().filter_map(|a| a.key.clone()).collect();
    files
        .into_iter()
        .zip(asked)
        .map(|((name, sha256, size), asked)| {
            let key = asked.key.unwrap_or_else(|| {
                let made = (1..)
                    .map(|n| format!("{}{n}", asked.doc_type))
                    .find(|k| !used.contains(k))
                    .expect("an unused number exists");
                used.push(made.clone());
                made
            });
            Member {
                name,
                sha256,
                size,
                doc_type: asked.doc_type,
                key,
                stages: asked.stages,
                relation: asked.relation,
            }
        })
        .collect()
}

/// The set's hash: SHA-256 of the sorted lines `<file sha256>  <file name>\n`.
pub fn set_sha256(members: &[Member]) -> String {
    let mut lines: Vec<String> = members
        .iter()
        .map(|m| format!("{}  {}\n", m.sha256, m.name))
        .collect();
    lines.sort();
    fsutil::sha256_hex(lines.concat().as_bytes())
}

/// Lists and hashes the claimed set at `folder` and plans its `process_info` (blocking);
/// beside the members, each file as it was hashed (see [`hashed`](crate::pipeline::hashed)).
pub fn read_members(
    inbox: &InboxConfig,
    folder: &Path,
) -> std::io::Result<(Vec<Member>, Vec<Hashed>)> {
    let listing = list(inbox, folder)?;
    let mut files = Vec::with_capacity(listing.files.len());
    let mut hashed_files = Vec::with_capacity(listing.files.len());
    for entry in listing.files {
        let path = folder.join(&entry.name);
        let (sha, hashed) = hashed::hash_file(&path)?;
        let size = std::fs::metadata(&path)?.len();
        files.push((entry.name, sha, size));
        hashed_files.extend(hashed);
    }
    Ok((plan(inbox, files), hashed_files))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn inbox(extra: &str) -> InboxConfig {
        let text = format!(
            "[api]\nproject_id = \"U_RATE_2\"\nmachine_uid = \"m\"\ntoken = \"t\"\n[[inbox]]\npath = \"/srv/in\"\ntype = \"PASSPORT\"\ndone = \"/srv/done\"\nfailed = \"/srv/failed\"\nsets = true\n{extra}\n"
        );
        crate::config::Config::from_toml(&text, Path::new("/c.toml"), None)
            .unwrap()
            .inboxes[0]
            .clone()
    }

    pub(crate) const KYC: &str = "[[inbox.documents]]\nmatch = \"*selfie*\"\ntype = \"SELFIE\"\nkey = \"SELFIE1\"\nstages = [\"biometry_liveness\"]\n[[inbox.documents]]\nmatch = \"*\"\ntype = \"PASSPORT\"\nkey = \"PASSPORT1\"\nstages = [\"biometry_match\"]\nrelation = { biometry_match = \"SELFIE1\" }\n";

    pub(crate) fn files(names: &[&str]) -> Vec<(String, String, u64)> {
        names
            .iter()
            .map(|n| (n.to_string(), "00".repeat(32), 20_000))
            .collect()
    }

    #[test]
    fn natural_order_compares_numbers_as_numbers() {
        let mut names = vec![
            "page10.jpg",
            "page2.jpg",
            "page1.jpg",
            "Page3.jpg",
            "page02.jpg",
            "a",
            "page",
        ];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            names,
            [
                "Page3.jpg",
                "a",
                "page",
                "page1.jpg",
                "page02.jpg",
                "page2.jpg",
                "page10.jpg"
            ]
        );
        assert_eq!(
            natural_cmp("x99999999999999999999999", "x100000000000000000000000"),
            Ordering::Less
        );
        assert_eq!(natural_cmp("скан 2", "скан 10"), Ordering::Less);
    }

    #[test]
    fn the_first_matching_rule_gives_type_key_stages_and_relation() {
        let members = plan(&inbox(KYC), files(&["passport.jpg", "My SELFIE.jpg"]));
        assert_eq!(members[0].doc_type, "PASSPORT");
        assert_eq!(members[0].key, "PASSPORT1");
        assert_eq!(members[0].stages, ["biometry_match"]);
        assert_eq!(members[0].relation["biometry_match"], "SELFIE1");
        assert_eq!(members[1].doc_type, "SELFIE", "case-insensitive glob");
        assert_eq!(members[1].key, "SELFIE1");
        let info = serde_json::to_value(members[0].process_info()).unwrap();
        assert_eq!(
            info,
            serde_json::json!({"type": "PASSPORT", "key": "PASSPORT1", "options": {"stages": ["biometry_match"], "relation": {"biometry_match": "SELFIE1"}}})
        );
    }

    #[test]
    fn files_without_a_key_get_unique_keys_in_name_order() {
        let rules = "[[inbox.documents]]\nmatch = \"*reg*\"\ntype = \"PASSPORT_REG\"\n[[inbox.documents]]\nmatch = \"p1*\"\ntype = \"PASSPORT\"\nkey = \"PASSPORT1\"\n";
        let members = plan(
            &inbox(rules),
            files(&["p1.jpg", "p2.jpg", "p3.jpg", "reg1.jpg", "reg2.jpg"]),
        );
        let keys: Vec<&str> = members.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "PASSPORT1",
                "PASSPORT2",
                "PASSPORT3",
                "PASSPORT_REG1",
                "PASSPORT_REG2"
            ]
        );
    }

    #[test]
    fn the_set_hash_is_over_sorted_lines_of_hash_and_name() {
        let inbox = inbox("");
        let members = plan(
            &inbox,
            vec![
                ("b.jpg".into(), "11".repeat(32), 1),
                ("a.jpg".into(), "22".repeat(32), 2),
            ],
        );
        let expected = fsutil::sha256_hex(
            format!("{}  b.jpg\n{}  a.jpg\n", "11".repeat(32), "22".repeat(32)).as_bytes(),
        );
        assert_eq!(set_sha256(&members), expected);
        let mut reversed = members.clone();
        reversed.reverse();
        assert_eq!(set_sha256(&reversed), expected, "order does not matter");
        let mut renamed = members.clone();
        renamed[0].name = "c.jpg".into();
        assert_ne!(set_sha256(&renamed), expected, "names count");
    }

    #[test]
    fn members_are_the_files_intake_would_take_without_the_ready_file() {
        let dir = tempfile::tempdir().unwrap();
        let set = dir.path().join("kyc-1");
        std::fs::create_dir(&set).unwrap();
        for name in [
            "page10.jpg",
            "page2.jpg",
            ".hidden",
            "x.tmp",
            "READY",
            "skip.bak",
        ] {
            std::fs::write(set.join(name), name).unwrap();
        }
        std::fs::create_dir(set.join("inner")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", set.join("link.jpg")).unwrap();
        let inbox = inbox("ready_file = \"READY\"\nignore = [\"*.bak\"]");
        let listing = list(&inbox, &set).unwrap();
        let names: Vec<&str> = listing.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["page2.jpg", "page10.jpg"]);
        assert!(listing.ready);
        assert_eq!(listing.folders, ["inner"]);
        assert_eq!(listing.refused.len(), 1);
        assert_eq!(listing.refused[0].0, "link.jpg");
        let others: Vec<&str> = listing.others.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            others,
            [".hidden", "READY", "inner", "link.jpg", "skip.bak", "x.tmp"],
            "everything not sent is listed: its changes hold the set"
        );
        assert_eq!(listing.temporary().collect::<Vec<_>>(), ["x.tmp"]);
    }

    #[test]
    fn only_a_regular_file_of_its_own_is_the_ready_file() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = inbox("ready_file = \"READY\"");
        let set = dir.path().join("s");
        std::fs::create_dir(&set).unwrap();
        let ready = set.join("READY");
        std::os::unix::fs::symlink("/etc/passwd", &ready).unwrap();
        let listing = list(&inbox, &set).unwrap();
        assert!(!listing.ready);
        assert_eq!(listing.ready_refused, Some("is a symbolic link"));
        std::fs::remove_file(&ready).unwrap();
        std::fs::create_dir(&ready).unwrap();
        assert_eq!(
            list(&inbox, &set).unwrap().ready_refused,
            Some("is a folder")
        );
        std::fs::remove_dir(&ready).unwrap();
        std::fs::write(dir.path().join("outside"), b"").unwrap();
        std::fs::hard_link(dir.path().join("outside"), &ready).unwrap();
        assert!(!list(&inbox, &set).unwrap().ready);
        std::fs::remove_file(dir.path().join("outside")).unwrap();
        let listing = list(&inbox, &set).unwrap();
        assert!(listing.ready && listing.ready_refused.is_none());
    }

    #[test]
    fn a_folder_with_only_hidden_files_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = inbox("");
        std::fs::write(dir.path().join(".DS_Store"), b"x").unwrap();
        let listing = list(&inbox, dir.path()).unwrap();
        assert!(listing.is_empty());
        std::fs::write(dir.path().join("p2.png.part"), b"x").unwrap();
        assert!(
            !list(&inbox, dir.path()).unwrap().is_empty(),
            "a file arriving"
        );
    }
}
