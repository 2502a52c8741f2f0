//! One daemon per state folder.
//!
//! Two daemons on one `state_dir` would run two schedulers (twice the account's request
//! budget) and resume each other's files in flight, paying for them again. [`InstanceLock`]
//! is an exclusive `flock` on `state_dir/daemon.lock`, taken before the journal is opened and
//! held for the life of the process: the kernel releases it when the process ends, however
//! it ends (kill -9 included), so a stale lock file never blocks a restart. The file holds
//! the holder's pid for the message the second daemon prints. `status` and `check` do not
//! take it.

use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;
use rustix::io::Errno;

/// Held while this process is the daemon of its state folder; dropping it releases the lock.
#[derive(Debug)]
pub struct InstanceLock {
    _file: std::fs::File,
    path: PathBuf,
}

impl InstanceLock {
    /// Takes the state folder's lock, or says which process holds it and how to stop it.
    /// Creates the folder (mode 0700) if needed. Never waits.
    pub fn acquire(state_dir: &Path) -> anyhow::Result<InstanceLock> {
        crate::store::fsutil::create_dir_all_mode(state_dir, 0o700).map_err(|e| {
            anyhow::anyhow!(
                "cannot create state folder {} (daemon.state_dir): {e}",
                state_dir.display()
            )
        })?;
        let path = crate::store::layout::lock_path(state_dir);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("cannot open lock file {}: {e}", path.display()))?;
        // One left by an older run keeps the mode it was made with: owner only, like the
        // journal beside it.
        if let Err(e) = crate::store::fsutil::restrict_open_file(&file, 0o600) {
            tracing::warn!("cannot make {} private: {e}", path.display());
        }
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let pid = text.trim();
                let (pid, kill) = if pid.parse::<u32>().is_ok() {
                    (format!("pid {pid}"), format!("kill {pid}"))
                } else {
                    ("pid not written yet".to_string(), "kill it".to_string())
                };
                anyhow::bail!(
                    "another beorg-hotfolder ({pid}) is already running with daemon.state_dir {}; only one daemon may use a state folder (two would pay for files twice). Stop the other one first (systemctl stop beorg-hotfolder, or {kill}), or give this one its own state_dir",
                    state_dir.display()
                );
            }
            Err(e) => anyhow::bail!(
                "cannot lock {} ({e}); daemon.state_dir must be on a filesystem with file locks (a local one)",
                path.display()
            ),
        }
        // Ours now: record who holds it (a failure here only makes the message vaguer).
        let pid = format!("{}\n", std::process::id());
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(pid.as_bytes()));
        if let Err(e) = written {
            tracing::warn!("cannot write the pid into {}: {e}", path.display());
        }
        Ok(InstanceLock { _file: file, path })
    }

    /// Where the lock lives.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_folder_is_refused_with_the_pid_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = InstanceLock::acquire(dir.path()).unwrap();
        let e = InstanceLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains(&format!("pid {}", std::process::id())) && e.contains("systemctl stop"),
            "{e}"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(first.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
        drop(first);
        InstanceLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn a_lock_file_left_with_a_looser_mode_is_made_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = crate::store::layout::lock_path(dir.path());
        std::fs::write(&path, "1\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let lock = InstanceLock::acquire(dir.path()).unwrap();
        let mode = std::fs::metadata(lock.path()).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600, "{mode:o}");
    }
}
