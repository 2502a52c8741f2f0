//! Append-only files the daemon writes a record at a time (the delivery ledger; the review
//! station's audit log is meant to use it too): one line per record, opened **by path** for
//! each record with `O_APPEND`, written in one `write`, fsync'd, closed.
//!
//! Opening by path for each record is what makes these files rotatable (logrotate's `create`
//! or `nocreate`, never `copytruncate`): after the file is renamed the next record opens the
//! path again and so starts the new file; a record being written during the rename lands
//! whole in the renamed file. No descriptor is kept, so nothing needs reopening: no signal
//! is sent for a rotation, and no reload happens (a SIGHUP reload would pause intake).
//!
//! The file is created with `[daemon] file_mode`; an existing one looser than that is given
//! it before anything is appended, and one whose mode cannot be changed gets nothing (the
//! record fails). A line cut by a power failure is closed with a newline before the next one
//! is appended, so one torn line never spoils the next.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use super::fsutil;

/// Appends `line` (ending in a newline) to the file at `path`, created with `mode`.
/// `what` names the file in messages ("ledger", "audit log").
pub fn append_line(path: &Path, line: &str, mode: u32, what: &str) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .read(true)
        .mode(mode)
        .open(path)?;
    make_private(&file, path, mode, what)?;
    let length = file.metadata()?.len();
    let mut bytes = Vec::with_capacity(line.len() + 1);
    if length > 0 && !ends_with_newline(&file, length)? {
        bytes.push(b'\n');
    }
    bytes.extend_from_slice(line.as_bytes());
    file.write_all(&bytes)?;
    file.sync_all()?;
    if length == 0 {
        // A new file's name (the first one, or the one started after a rotation) must
        // survive a power cut too.
        fsutil::sync_dir(path.parent().unwrap_or(Path::new("/")))?;
    }
    Ok(())
}

/// Takes from an existing file the permissions `mode` does not give (with a WARN), or
/// refuses to append to it when that is impossible.
fn make_private(file: &File, path: &Path, mode: u32, what: &str) -> std::io::Result<()> {
    let had = fsutil::restrict_open_file(file, mode).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "{e}; nothing is appended to a {what} other users may read (it holds passport fields). Fix: chmod {mode:04o} {} (as its owner), or remove the file and let the daemon create it",
                path.display()
            ),
        )
    })?;
    if let Some(had) = had {
        tracing::warn!(
            "the {what} {} had mode {had:04o}, looser than [daemon] file_mode; changed to {:04o}",
            path.display(),
            had & mode & 0o777
        );
    }
    Ok(())
}

fn ends_with_newline(file: &File, length: u64) -> std::io::Result<bool> {
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, length - 1)?;
    Ok(last[0] == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn lines_are_appended_a_torn_line_is_closed_and_the_mode_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        append_line(&path, "{\"id\":1}\n", 0o640, "ledger").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o007, 0, "{mode:o}");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"id\":2,\"cut")
            .unwrap();
        append_line(&path, "{\"id\":3}\n", 0o640, "ledger").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"id\":1}\n{\"id\":2,\"cut\n{\"id\":3}\n");
    }

    #[test]
    fn an_existing_world_readable_file_is_made_private_before_a_line_is_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        std::fs::write(&path, "{\"id\":1}\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        append_line(&path, "{\"id\":2}\n", 0o640, "ledger").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640);
        // A stricter file stays as strict.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        append_line(&path, "{\"id\":3}\n", 0o640, "ledger").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn after_a_rename_the_next_line_starts_a_new_file_with_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        let rotated = dir.path().join("ledger.jsonl.1");
        append_line(&path, "{\"id\":1}\n", 0o640, "ledger").unwrap();
        std::fs::rename(&path, &rotated).unwrap();
        append_line(&path, "{\"id\":2}\n", 0o640, "ledger").unwrap();
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "{\"id\":1}\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"id\":2}\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }
}
