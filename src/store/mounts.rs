//! Shares that come and go: a folder remembered with the filesystem it was on, so that an
//! unmounted share (its empty mount point left on the server's own disk) is noticed before
//! anything is written there.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Remembers, for each folder, what kind of filesystem it was on when first seen and whether
/// it was a mount point. A share that is unmounted leaves its mount point behind as an empty
/// folder on the server's own disk: the filesystem type changes, or the folder stops being a
/// mount point. A share mounted again passes (its device number may differ; its type does not).
#[derive(Default)]
pub struct MountGuard {
    seen: Mutex<HashMap<PathBuf, Mount>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mount {
    fs_type: i64,
    is_mount_point: bool,
}

impl Mount {
    fn of(dir: &Path) -> anyhow::Result<Mount> {
        let meta = std::fs::metadata(dir)
            .map_err(|e| anyhow::anyhow!("folder {} is not available: {e}", dir.display()))?;
        if !meta.is_dir() {
            anyhow::bail!("{} is not a folder", dir.display());
        }
        let fs_type = rustix::fs::statfs(dir)
            .map_err(|e| anyhow::anyhow!("cannot inspect folder {}: {e}", dir.display()))?
            .f_type;
        #[allow(clippy::unnecessary_cast)] // f_type's width differs between architectures
        let fs_type = fs_type as i64;
        let parent_dev = dir
            .parent()
            .and_then(|p| std::fs::metadata(p).ok())
            .map(|m| m.dev());
        Ok(Mount {
            fs_type,
            is_mount_point: parent_dev.is_some_and(|d| d != meta.dev()),
        })
    }
}

impl MountGuard {
    /// Notes each existing folder (call at start, while the shares are mounted).
    pub fn remember<'a>(&self, dirs: impl IntoIterator<Item = &'a Path>) {
        for dir in dirs {
            let _ = self.check(dir);
        }
    }

    /// Ok if `dir` exists and still looks like the filesystem it was on when first seen.
    pub fn check(&self, dir: &Path) -> anyhow::Result<()> {
        let now = Mount::of(dir)?;
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match seen.get(dir) {
            Some(then)
                if then.fs_type != now.fs_type || (then.is_mount_point && !now.is_mount_point) =>
            {
                anyhow::bail!(
                    "folder {} is no longer on the filesystem it was on at start (share unmounted?)",
                    dir.display()
                )
            }
            Some(_) => Ok(()),
            None => {
                seen.insert(dir.to_path_buf(), now);
                Ok(())
            }
        }
    }
}
