//! Moving a whole folder (a document set) without overwriting anything, and safely across
//! filesystems: the folder-sized twin of [`fsutil::move_file_noclobber`].
//!
//! On one filesystem it is one rename. Across filesystems (EXDEV) the tree is copied to a
//! dot-named temp folder in the destination, every file and folder fsync'd, the temp folder
//! renamed into place, and only then the source removed. A retry after a crash finds the
//! destination already holding the same tree and only removes the source: never a second
//! copy. A dot-named leftover temp folder is removed at the next start.

use std::fs;
use std::io;
use std::path::Path;

use crate::store::fsutil;
use crate::store::layout::TEMP_PREFIX;

/// Moves the folder `from` to `to` unless `to` exists with other content
/// (`ErrorKind::AlreadyExists`). After Ok the tree is durably at `to` and gone from `from`.
pub fn move_dir_noclobber(from: &Path, to: &Path) -> io::Result<()> {
    if fsutil::exists(to) {
        if !same_tree(from, to)? {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
    } else {
        match fsutil::rename_noclobber(from, to) {
            Ok(()) => return sync_parents(from, to),
            Err(e) if e.kind() == io::ErrorKind::CrossesDevices => copy_into_place(from, to)?,
            Err(e) => return Err(e),
        }
    }
    fs::remove_dir_all(from)?;
    sync_parents(from, to)
}

fn sync_parents(from: &Path, to: &Path) -> io::Result<()> {
    for path in [from, to] {
        if let Some(parent) = path.parent() {
            fsutil::sync_dir(parent)?;
        }
    }
    Ok(())
}

/// EXDEV: the tree copied into a temp folder beside `to`, synced, renamed into place.
fn copy_into_place(from: &Path, to: &Path) -> io::Result<()> {
    let dir = to.parent().unwrap_or(Path::new("."));
    let temp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempdir_in(dir)?;
    copy_tree(from, temp.path())?;
    // Kept from here: renamed into place, or removed at the next start if we die first.
    let temp = temp.keep();
    fsutil::rename_noclobber(&temp, to)?;
    fsutil::sync_dir(dir)
}

/// Copies the entries of `from` into the existing folder `to`, fsyncing each file and folder.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            fs::create_dir(&target)?;
            copy_tree(&source, &target)?;
        } else if kind.is_file() {
            let mut out = fs::File::create(&target)?;
            io::copy(&mut fs::File::open(&source)?, &mut out)?;
            out.sync_all()?;
        }
        // Links and special files are not copied (a set with one never reaches done/).
    }
    fsutil::sync_dir(to)
}

/// Whether two folders hold the same names with the same bytes, recursively.
pub fn same_tree(a: &Path, b: &Path) -> io::Result<bool> {
    let names = |dir: &Path| -> io::Result<Vec<std::ffi::OsString>> {
        let mut names = fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<Vec<_>>>()?;
        names.sort();
        Ok(names)
    };
    let (names_a, names_b) = (names(a)?, names(b)?);
    if names_a != names_b {
        return Ok(false);
    }
    for name in names_a {
        let (x, y) = (a.join(&name), b.join(&name));
        let (mx, my) = (fs::symlink_metadata(&x)?, fs::symlink_metadata(&y)?);
        let same = match (mx.is_dir(), my.is_dir()) {
            (true, true) => same_tree(&x, &y)?,
            (false, false) if mx.is_file() && my.is_file() => fsutil::same_content(&x, &y)?,
            (false, false) => true,
            _ => false,
        };
        if !same {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Gives every file below `dir` `mode`, and `dir` and its folders `mode` plus the search
/// bit wherever it lets read (0640 → 0750): a set in done/ is as private as a file.
pub fn ensure_tree_mode(dir: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let folder_mode = mode | ((mode & 0o444) >> 2);
    fs::set_permissions(dir, fs::Permissions::from_mode(folder_mode))?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            ensure_tree_mode(&entry.path(), mode)?;
        } else if kind.is_file() {
            fsutil::ensure_mode(&entry.path(), mode)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &Path) {
        fs::create_dir_all(root.join("inner")).unwrap();
        fs::write(root.join("a.jpg"), b"a").unwrap();
        fs::write(root.join("inner/b.jpg"), b"b").unwrap();
    }

    #[test]
    fn a_folder_moves_whole_and_never_over_another() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("set"), dir.path().join("done-set"));
        tree(&from);
        move_dir_noclobber(&from, &to).unwrap();
        assert!(!from.exists());
        assert_eq!(fs::read(to.join("inner/b.jpg")).unwrap(), b"b");
        tree(&from);
        fs::write(from.join("a.jpg"), b"other").unwrap();
        let e = move_dir_noclobber(&from, &to).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(to.join("a.jpg")).unwrap(), b"a", "untouched");
    }

    /// A retry after a crash between the copy and the removal only removes the source.
    #[test]
    fn a_copy_placed_before_is_recognised_and_not_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("set"), dir.path().join("placed"));
        tree(&from);
        tree(&to);
        assert!(same_tree(&from, &to).unwrap());
        move_dir_noclobber(&from, &to).unwrap();
        assert!(!from.exists());
        assert!(to.join("a.jpg").exists());
    }

    #[test]
    fn modes_are_applied_to_the_whole_tree() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("set");
        tree(&root);
        ensure_tree_mode(&root, 0o640).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o750);
        assert_eq!(mode(&root.join("inner")), 0o750);
        assert_eq!(mode(&root.join("a.jpg")), 0o640);
        assert_eq!(mode(&root.join("inner/b.jpg")), 0o640);
    }
}
