//! The audit log: one JSON line per login (ok or failed), item viewed and decision,
//! `{"at", "user", "action", "item", "inbox", "result"}`. Each line is appended with
//! `O_APPEND` to a file opened anew (so logrotate's `create` is safe), mode 0640, and synced
//! before the answer goes out. It names items by their file name; it never holds a password
//! or a field value.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Where the lines go (`review_station.audit_log`).
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
}

/// One line.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    pub at: String,
    pub user: String,
    /// `login`, `logout`, `view`, `approve`, `reject`.
    pub action: &'static str,
    /// The item's name in its review folder (null for a login).
    pub item: Option<String>,
    /// The inbox it came from (null for a login).
    pub inbox: Option<String>,
    /// `ok`, `failed`, `shut_out`, `conflict`, `not_found`, `forbidden`, `error`.
    pub result: &'static str,
}

impl Entry {
    pub fn new(user: &str, action: &'static str, result: &'static str) -> Entry {
        Entry {
            at: crate::sidecar::rfc3339(SystemTime::now()),
            user: user.chars().take(64).collect(),
            action,
            item: None,
            inbox: None,
            result,
        }
    }

    pub fn on(mut self, item: &str, inbox: &Path) -> Entry {
        self.item = Some(item.to_string());
        self.inbox = Some(inbox.to_string_lossy().into_owned());
        self
    }
}

impl AuditLog {
    /// Opens (creating) the file once, so a folder that is missing or not writable stops the
    /// start with the key named.
    pub fn open(path: &Path) -> anyhow::Result<AuditLog> {
        open_append(path).map_err(|e| {
            anyhow::anyhow!(
                "cannot open the review station's audit log {} (review_station.audit_log): {e}; create its folder, writable by the daemon's user",
                path.display()
            )
        })?;
        Ok(AuditLog {
            path: path.to_path_buf(),
        })
    }

    /// Appends `entry` durably (blocking; a failure is logged, the request goes on).
    pub fn write(&self, entry: &Entry) {
        let mut line = serde_json::to_string(entry).unwrap_or_default();
        line.push('\n');
        let written = open_append(&self.path).and_then(|mut file| {
            file.write_all(line.as_bytes())?;
            file.sync_data()
        });
        if let Err(e) = written {
            tracing::error!(
                "cannot write the review station's audit log {}: {e}",
                self.path.display()
            );
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Rotation (logrotate renames the file, `nocreate`): the next line starts a new audit
    /// log, mode 0640, and the renamed one keeps what it had; no line is lost or doubled.
    #[test]
    fn after_a_rename_the_next_line_starts_a_new_audit_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("review-audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        log.write(&Entry::new("anna", "login", "ok"));
        let rotated = dir.path().join("review-audit.jsonl.1");
        std::fs::rename(&path, &rotated).unwrap();
        log.write(&Entry::new("anna", "logout", "ok"));
        let lines = |p: &Path| std::fs::read_to_string(p).unwrap().lines().count();
        assert_eq!((lines(&rotated), lines(&path)), (1, 1));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }
}
