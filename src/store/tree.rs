//! Moving a whole folder (a document set) without overwriting anything, and safely across
//! filesystems: the folder-sized twin of [`fsutil::move_file_noclobber`].
//!
//! On one filesystem it is one rename. Across filesystems (EXDEV) the tree is copied to a
//! dot-named temp folder in the destination, every file and folder fsync'd, the temp folder
//! renamed into place, and only then the source removed. A retry after a crash finds the
//! destination already holding the same tree and only removes the source: never a second
//! copy. A dot-named leftover temp folder is removed at the next start. A copy keeps every
//! file's and folder's permission bits and copies a symlink as a symlink (never its target).
//!
//! [`make_tree_private`] gives a set's folders and regular files `file_mode` before the move,
//! where what each entry is can still be seen: a symlink, a file with other hard links or a
//! special file is left exactly as it is, and named.

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
    use std::os::unix::fs::PermissionsExt;
    let dir = to.parent().unwrap_or(Path::new("."));
    let temp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempdir_in(dir)?;
    copy_tree(from, temp.path())?;
    // The folder's own mode too (a temp folder is made 0700).
    let mode = fs::symlink_metadata(from)?.permissions().mode() & 0o777;
    fs::set_permissions(temp.path(), fs::Permissions::from_mode(mode))?;
    // Kept from here: renamed into place, or removed at the next start if we die first.
    let temp = temp.keep();
    fsutil::rename_noclobber(&temp, to)?;
    fsutil::sync_dir(dir)
}

/// Copies the entries of `from` into the existing folder `to`, fsyncing each file and folder.
/// Files and folders keep their permission bits; a symlink is copied as a symlink.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            fs::create_dir(&target)?;
            copy_tree(&source, &target)?;
            let mode = fs::symlink_metadata(&source)?.permissions().mode() & 0o777;
            fs::set_permissions(&target, fs::Permissions::from_mode(mode))?;
        } else if kind.is_file() {
            let temp = fsutil::copy_keeping_mode(&fsutil::open_no_follow(&source)?, to)?;
            temp.persist_noclobber(&target).map_err(|e| e.error)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&source)?, &target)?;
        }
        // Special files (FIFOs, sockets, devices) are not copied (a set with one never
        // reaches done/, and they hold no data).
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

/// Gives every regular file below `dir` `mode`, and `dir` and its folders `mode` plus the
/// search bit wherever it lets read (0640 → 0750): a set in done/ is as private as a file.
/// Symlinks, files with other hard links and special files are left exactly as they are
/// ([`fsutil::make_private`]); they are returned, by their path below `dir`, with what they are.
pub fn make_tree_private(dir: &Path, mode: u32) -> io::Result<Vec<(String, &'static str)>> {
    let mut left = Vec::new();
    make_folder_private(dir, Path::new(""), mode, &mut left)?;
    Ok(left)
}

fn make_folder_private(
    dir: &Path,
    below: &Path,
    mode: u32,
    left: &mut Vec<(String, &'static str)>,
) -> io::Result<()> {
    set_folder_mode(dir, mode | ((mode & 0o444) >> 2))?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let rel = below.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            make_folder_private(&entry.path(), &rel, mode, left)?;
        } else if let fsutil::Privacy::LeftAsIs(what) = fsutil::make_private(&entry.path(), mode)? {
            left.push((rel.to_string_lossy().into_owned(), what));
        }
    }
    Ok(())
}

/// What [`make_tree_private`] leaves (or left) as it is below `dir`, changing nothing.
pub fn left_as_is_below(dir: &Path) -> io::Result<Vec<(String, &'static str)>> {
    fn walk(dir: &Path, below: &Path, left: &mut Vec<(String, &'static str)>) -> io::Result<()> {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let rel = below.join(entry.file_name());
            let meta = fs::symlink_metadata(entry.path())?;
            if meta.is_dir() {
                walk(&entry.path(), &rel, left)?;
            } else if let Some(what) = fsutil::left_as_is(&meta) {
                left.push((rel.to_string_lossy().into_owned(), what));
            }
        }
        Ok(())
    }
    let mut left = Vec::new();
    walk(dir, Path::new(""), &mut left)?;
    left.sort();
    Ok(left)
}

/// Changes a folder's mode on a descriptor opened without following a symlink.
fn set_folder_mode(dir: &Path, mode: u32) -> io::Result<()> {
    use rustix::fs::OFlags;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(dir)?
        .set_permissions(fs::Permissions::from_mode(mode))
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

    /// Links in a set keep their mode and target; a copy to another filesystem keeps every
    /// mode and copies a symlink as a symlink.
    #[test]
    fn links_are_left_as_they_are_and_copied_as_they_are() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (root, outside) = (dir.path().join("set"), dir.path().join("outside"));
        tree(&root);
        fs::write(&outside, b"secret").unwrap();
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o600)).unwrap();
        fs::hard_link(&outside, root.join("inner/linked.jpg")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("symlink.jpg")).unwrap();
        let left = make_tree_private(&root, 0o640).unwrap();
        let expected = [
            ("inner/linked.jpg".to_string(), fsutil::A_HARD_LINK),
            ("symlink.jpg".to_string(), fsutil::A_SYMLINK),
        ];
        let mut sorted = left.clone();
        sorted.sort();
        assert_eq!(sorted, expected);
        assert_eq!(left_as_is_below(&root).unwrap(), expected);
        let mode = |p: &Path| fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&outside), 0o600);
        assert_eq!(mode(&root.join("a.jpg")), 0o640);
        let copy = dir.path().join("copy");
        fs::create_dir(&copy).unwrap();
        copy_tree(&root, &copy).unwrap();
        assert_eq!(fs::read_link(copy.join("symlink.jpg")).unwrap(), outside);
        assert_eq!(mode(&copy.join("inner/linked.jpg")), 0o600);
        assert_eq!(mode(&copy.join("a.jpg")), 0o640);
        assert_eq!(mode(&copy.join("inner")), 0o750);
    }

    #[test]
    fn modes_are_applied_to_the_whole_tree() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("set");
        tree(&root);
        assert_eq!(make_tree_private(&root, 0o640).unwrap(), []);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o750);
        assert_eq!(mode(&root.join("inner")), 0o750);
        assert_eq!(mode(&root.join("a.jpg")), 0o640);
        assert_eq!(mode(&root.join("inner/b.jpg")), 0o640);
    }
}
