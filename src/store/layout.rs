//! The on-disk layout: every name and folder the daemon creates, spelled once.
//!
//! In each inbox:
//! - `.beorg-work/` ([`WORK_DIR`]): claimed files wait here (same filesystem as the inbox, so
//!   the claim is a rename; a dot-name, so intake never takes it for a scan).
//!
//! Beside each file put in done/ or failed/:
//! - `<name>.json` ([`sidecar_path`]): its sidecar.
//!
//! In `daemon.state_dir`:
//! - `journal.sqlite` ([`JOURNAL_FILE`], with SQLite's `-wal` and `-shm` side files:
//!   [`journal_files`]): the journal;
//! - `daemon.lock` ([`LOCK_FILE`]): one daemon per state folder;
//! - `status.json` ([`STATUS_FILE`]): the running daemon's snapshot for `status`.
//!
//! Anywhere the daemon writes atomically (work, done, failed, state):
//! - `.beorg-tmp-*` ([`TEMP_PREFIX`]): a file being written; what a kill leaves behind is
//!   removed at the next start. `check`'s write probes use [`CHECK_PROBE_PREFIX`], a name of
//!   the same family, so a leftover probe is removed the same way.
//!
//! These names are a contract with users and their tools (backups, `sqlite3`, monitoring):
//! add, never rename.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The folder inside each inbox where claimed files wait.
pub const WORK_DIR: &str = ".beorg-work";

/// Prefix of every temp file the daemon creates; intake ignores dot-names.
pub const TEMP_PREFIX: &str = ".beorg-tmp-";

/// Prefix of `check`'s write probes: a [`TEMP_PREFIX`] name.
pub const CHECK_PROBE_PREFIX: &str = ".beorg-tmp-check-";

/// The journal's file name inside `state_dir`.
pub const JOURNAL_FILE: &str = "journal.sqlite";

/// The status snapshot's file name inside `state_dir`.
pub const STATUS_FILE: &str = "status.json";

/// The instance lock's file name inside `state_dir`.
pub const LOCK_FILE: &str = "daemon.lock";

/// What [`sidecar_path`] appends to a file's name.
pub const SIDECAR_SUFFIX: &str = ".json";

/// SQLite's side files of a WAL-mode database, as suffixes of its name.
const JOURNAL_SIDE_SUFFIXES: [&str; 2] = ["-wal", "-shm"];

/// The work folder of the inbox at `inbox`.
pub fn work_dir(inbox: &Path) -> PathBuf {
    inbox.join(WORK_DIR)
}

/// The journal in `state_dir`.
pub fn journal_path(state_dir: &Path) -> PathBuf {
    state_dir.join(JOURNAL_FILE)
}

/// The journal and its side files in `state_dir` (the side files exist while it is open).
pub fn journal_files(state_dir: &Path) -> [PathBuf; 3] {
    let journal = journal_path(state_dir);
    let side = |suffix: &str| {
        let mut name = journal.as_os_str().to_os_string();
        name.push(suffix);
        PathBuf::from(name)
    };
    let [wal, shm] = JOURNAL_SIDE_SUFFIXES;
    let (wal, shm) = (side(wal), side(shm));
    [journal, wal, shm]
}

/// The status snapshot in `state_dir`.
pub fn status_path(state_dir: &Path) -> PathBuf {
    state_dir.join(STATUS_FILE)
}

/// The instance lock in `state_dir`.
pub fn lock_path(state_dir: &Path) -> PathBuf {
    state_dir.join(LOCK_FILE)
}

/// Where the sidecar of a file in done/ or failed/ lives: `<name>.json` beside it.
pub fn sidecar_path(file: &Path) -> PathBuf {
    let mut name: OsString = file.file_name().unwrap_or_default().to_os_string();
    name.push(SIDECAR_SUFFIX);
    file.with_file_name(name)
}

/// The sidecar's file name for a file named `name`.
pub fn sidecar_name(name: &str) -> String {
    format!("{name}{SIDECAR_SUFFIX}")
}

/// Whether `path` is named like a sidecar (`<name>.json`).
pub fn is_sidecar(path: &Path) -> bool {
    path.file_name().is_some_and(|n| {
        n.len() > SIDECAR_SUFFIX.len() && n.as_encoded_bytes().ends_with(SIDECAR_SUFFIX.as_bytes())
    })
}

/// Whether a file name is one of the daemon's temp files (debris if found at start).
pub fn is_temp_file(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_and_file_names_stay_as_documented() {
        // The README, the systemd unit and users' tools know these names: never rename.
        assert_eq!(work_dir(Path::new("/in")), Path::new("/in/.beorg-work"));
        assert_eq!(
            journal_files(Path::new("/s")),
            [
                PathBuf::from("/s/journal.sqlite"),
                PathBuf::from("/s/journal.sqlite-wal"),
                PathBuf::from("/s/journal.sqlite-shm"),
            ]
        );
        assert_eq!(status_path(Path::new("/s")), Path::new("/s/status.json"));
        assert_eq!(lock_path(Path::new("/s")), Path::new("/s/daemon.lock"));
        assert_eq!(
            sidecar_path(Path::new("/done/scan (2).jpg")),
            Path::new("/done/scan (2).jpg.json")
        );
        assert_eq!(sidecar_name("a.png"), "a.png.json");
        assert!(is_sidecar(&sidecar_path(Path::new("/done/a.png"))));
        assert!(!is_sidecar(Path::new("/done/a.png")) && !is_sidecar(Path::new("/done/.json")));
        assert!(is_temp_file(".beorg-tmp-x1y2"));
        assert!(is_temp_file(CHECK_PROBE_PREFIX));
        assert!(!is_temp_file("scan.jpg"));
        // Hidden from intake: dot-names.
        for name in [WORK_DIR, TEMP_PREFIX, CHECK_PROBE_PREFIX] {
            assert!(name.starts_with('.'), "{name}");
        }
    }
}
