//! Delivering a message to a ledger: one compact JSON line per outcome, appended (O_APPEND,
//! one write) and fsync'd, in a file created with `[daemon] file_mode`; an existing file
//! looser than that mode (a 0644 ledger made by hand) is given it before anything is
//! appended, and one whose mode cannot be changed gets nothing (the try fails). A crash between the
//! append and recording it repeats the line at the next try, with the same `id`: a reader
//! keeps the first line of each `id`. A line cut by a power failure is closed with a newline
//! before the next one is appended, so one torn line never spoils the next.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::Tried;

/// One try of appending `line` (ending in a newline) to `path`.
pub async fn append(path: PathBuf, line: String, mode: u32) -> Tried {
    let shown = path.display().to_string();
    match tokio::task::spawn_blocking(move || append_line(&path, &line, mode)).await {
        Ok(Ok(())) => Tried::Delivered(format!("appended to {shown}")),
        Ok(Err(e)) => Tried::Failed(format!("cannot append to {shown}: {e}")),
        Err(e) => Tried::Failed(format!("appending to {shown} stopped: {e}")),
    }
}

fn append_line(path: &Path, line: &str, mode: u32) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .read(true)
        .mode(mode)
        .open(path)?;
    if let Some(had) = crate::store::fsutil::restrict_open_file(&file, mode).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "{e}; nothing is appended to a ledger other users may read (it holds passport fields). Fix: chmod {mode:04o} {} (as its owner), or remove the file and let the daemon create it",
                path.display()
            ),
        )
    })? {
        tracing::warn!(
            "the ledger {} had mode {had:04o}, looser than [daemon] file_mode; changed to {:04o}",
            path.display(),
            had & mode & 0o777
        );
    }
    let length = file.metadata()?.len();
    let mut bytes = Vec::with_capacity(line.len() + 1);
    if length > 0 && !ends_with_newline(&file, length)? {
        bytes.push(b'\n');
    }
    bytes.extend_from_slice(line.as_bytes());
    file.write_all(&bytes)?;
    file.sync_all()?;
    if length == 0 {
        // A new file's name must survive a power cut too.
        crate::store::fsutil::sync_dir(path.parent().unwrap_or(Path::new("/")))?;
    }
    Ok(())
}

fn ends_with_newline(file: &std::fs::File, length: u64) -> std::io::Result<bool> {
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
        append_line(&path, "{\"id\":1}\n", 0o640).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o007, 0, "{mode:o}");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"id\":2,\"cut")
            .unwrap();
        append_line(&path, "{\"id\":3}\n", 0o640).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"id\":1}\n{\"id\":2,\"cut\n{\"id\":3}\n");
    }

    #[test]
    fn an_existing_world_readable_ledger_is_made_private_before_a_line_is_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        std::fs::write(&path, "{\"id\":1}\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        append_line(&path, "{\"id\":2}\n", 0o640).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640);
        // A stricter file stays as strict.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        append_line(&path, "{\"id\":3}\n", 0o640).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
    }
}
