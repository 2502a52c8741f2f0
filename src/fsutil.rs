//! File moves and writes that never overwrite and never leave a half-written file behind.
//!
//! Everything here is blocking; callers run it in `spawn_blocking`. The rules:
//! - a move never replaces an existing file (`renameat2(RENAME_NOREPLACE)`, falling back to
//!   `link` + `unlink` on filesystems without it);
//! - a move across filesystems (EXDEV) copies into a dot-named temp file beside the target,
//!   fsyncs it, links it into place, fsyncs the folder, and only then removes the source;
//! - a written file (sidecar) appears under its final name complete, or not at all.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, RenameFlags, renameat_with};

/// Prefix of every temp file the daemon creates; intake ignores dot-names.
pub const TEMP_PREFIX: &str = ".beorg-tmp-";

/// Permissions of files the daemon writes for itself (`status.json`), and the default of
/// `daemon.file_mode` for what it puts in done/failed: owner and group only.
pub const FILE_MODE: u32 = 0o640;

/// Renames `from` to `to` unless `to` exists (then `ErrorKind::AlreadyExists`). Crossing
/// filesystems gives `ErrorKind::CrossesDevices`.
pub fn rename_noclobber(from: &Path, to: &Path) -> io::Result<()> {
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        // EINVAL / ENOSYS / EOPNOTSUPP: the filesystem (some network mounts) lacks the flag.
        Err(e)
            if e == rustix::io::Errno::INVAL
                || e == rustix::io::Errno::NOSYS
                || e == rustix::io::Errno::OPNOTSUPP =>
        {
            link_then_unlink(from, to)
        }
        Err(e) => Err(e.into()),
    }
}

/// No-clobber move for filesystems without `RENAME_NOREPLACE`: `link` fails if `to` exists.
fn link_then_unlink(from: &Path, to: &Path) -> io::Result<()> {
    match fs::hard_link(from, to) {
        Ok(()) => fs::remove_file(from),
        // No hard links either (FAT, some FUSE mounts): check, then rename. Racy only against
        // another program creating the same name in that instant.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied || e.raw_os_error() == Some(1) => {
            if to.symlink_metadata().is_ok() {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            fs::rename(from, to)
        }
        Err(e) => Err(e),
    }
}

/// Moves a file to `to` without overwriting, copying when the target is on another
/// filesystem. After it returns Ok the file is durably at `to` and gone from `from`.
pub fn move_file_noclobber(from: &Path, to: &Path) -> io::Result<()> {
    match rename_noclobber(from, to) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => copy_across(from, to)?,
        Err(e) => return Err(e),
    }
    sync_parent(to)
}

/// EXDEV: copy into a temp file beside `to`, fsync, link into place, then drop the source.
fn copy_across(from: &Path, to: &Path) -> io::Result<()> {
    let dir = parent_of(to);
    let mut temp = temp_file_in(dir, FILE_MODE)?;
    let mut source = File::open(from)?;
    io::copy(&mut source, temp.as_file_mut())?;
    temp.as_file().sync_all()?;
    temp.persist_noclobber(to).map_err(|e| e.error)?;
    sync_dir(dir)?;
    fs::remove_file(from)?;
    sync_parent(from)
}

/// Writes `bytes` to `to` atomically: dot-named temp file in the same folder, write, fsync,
/// rename without clobbering, fsync the folder. Created with `mode`.
pub fn write_new_file_atomic(to: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = parent_of(to);
    let mut temp = temp_file_in(dir, mode)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist_noclobber(to).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// Replaces `to` atomically with `bytes` (temp file, fsync, rename over): for files the daemon
/// owns and rewrites, like `status.json`. Mode [`FILE_MODE`].
pub fn replace_file_atomic(to: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut temp = temp_file_in(parent_of(to), FILE_MODE)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(to).map_err(|e| e.error)?;
    Ok(())
}

/// Gives a file the daemon placed `mode` (a moved original keeps the scanner's mode, often
/// world-readable). Only a file's owner may change its mode; an original written by another
/// user (Samba, FTP) is therefore rewritten as the daemon's own file with `mode`.
pub fn ensure_mode(path: &Path, mode: u32) -> io::Result<()> {
    match fs::set_permissions(path, fs::Permissions::from_mode(mode)) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => rewrite_as_own(path, mode),
        other => other,
    }
}

/// Copies `path` into a temp file of ours with `mode`, fsyncs it and renames it over `path`.
fn rewrite_as_own(path: &Path, mode: u32) -> io::Result<()> {
    let dir = parent_of(path);
    let mut temp = temp_file_in(dir, mode)?;
    io::copy(&mut File::open(path)?, temp.as_file_mut())?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// A dot-named temp file (intake and downstream watchers ignore it; a start removes leftovers)
/// in `dir`, created with `mode`.
fn temp_file_in(dir: &Path, mode: u32) -> io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
}

/// fsync of a folder, so a rename in it survives a power cut.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn sync_parent(path: &Path) -> io::Result<()> {
    sync_dir(parent_of(path))
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The first free name for `name` in `dir`: `name` itself, then `stem (2).ext`,
/// `stem (3).ext`, ... A name is free when neither it nor its sidecar (`name.json`) exists.
pub fn free_name(dir: &Path, name: &str) -> PathBuf {
    let (stem, ext) = split_extension(name);
    (1u64..)
        .map(|n| {
            if n == 1 {
                name.to_string()
            } else {
                format!("{stem} ({n}){ext}")
            }
        })
        .map(|candidate| dir.join(candidate))
        .find(|candidate| !exists(candidate) && !exists(&sidecar_path(candidate)))
        .expect("an unbounded range always yields a free name")
}

fn exists(path: &Path) -> bool {
    path.symlink_metadata().is_ok()
}

/// `scan.jpg` → (`scan`, `.jpg`); `.hidden` and `noext` keep no extension.
fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    }
}

/// Where the sidecar of a file in done/ or failed/ lives: `<name>.json` beside it.
pub fn sidecar_path(file: &Path) -> PathBuf {
    let mut name: OsString = file.file_name().unwrap_or_default().to_os_string();
    name.push(".json");
    file.with_file_name(name)
}

/// Creates a folder (and parents) with the given mode for the ones it creates.
pub fn create_dir_all_mode(dir: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().recursive(true).mode(mode).create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_name_skips_taken_names_and_sidecars() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(free_name(d, "scan.jpg"), d.join("scan.jpg"));
        fs::write(d.join("scan.jpg"), b"x").unwrap();
        assert_eq!(free_name(d, "scan.jpg"), d.join("scan (2).jpg"));
        fs::write(d.join("scan (2).jpg.json"), b"{}").unwrap();
        assert_eq!(free_name(d, "scan.jpg"), d.join("scan (3).jpg"));
        assert_eq!(free_name(d, "README"), d.join("README"));
    }

    #[test]
    fn rename_noclobber_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::write(&a, b"new").unwrap();
        fs::write(&b, b"old").unwrap();
        let err = rename_noclobber(&a, &b).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&b).unwrap(), b"old");
        assert_eq!(fs::read(&a).unwrap(), b"new");
    }

    #[test]
    fn atomic_write_is_private_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        write_new_file_atomic(&p, b"{}", FILE_MODE).unwrap();
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, FILE_MODE);
        assert!(write_new_file_atomic(&p, b"[]", FILE_MODE).is_err());
        assert_eq!(fs::read(&p).unwrap(), b"{}");
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left behind");
    }

    #[test]
    fn copy_across_moves_content_and_removes_source() {
        // Same filesystem, but exercising the EXDEV path directly.
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::write(&a, b"payload").unwrap();
        copy_across(&a, &b).unwrap();
        assert_eq!(fs::read(&b).unwrap(), b"payload");
        assert!(!a.exists());
    }
}
