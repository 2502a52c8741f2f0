//! File moves and writes that never overwrite and never leave a half-written file behind.
//!
//! Everything here is blocking; callers run it in `spawn_blocking`. The rules:
//! - a move never replaces an existing file (`renameat2(RENAME_NOREPLACE)`, falling back to
//!   `link` + `unlink` on filesystems without it);
//! - a move across filesystems (EXDEV) copies into a dot-named temp file beside the target,
//!   fsyncs it, links it into place, fsyncs the folder, and only then removes the source;
//! - a move repeated after it failed part-way (or was killed) finishes the earlier one: a
//!   target already holding the same bytes is kept and only the source is removed;
//! - a written file (sidecar) appears under its final name complete, or not at all;
//! - a file's mode is changed only through a descriptor opened without following links, and
//!   only on a regular file with no other hard link ([`make_private`]): a symlink, or an
//!   inode shared with a file outside the inbox, is left exactly as it is;
//! - a copy (EXDEV) keeps the source's permission bits, so a move changes no mode.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, RenameFlags, renameat_with};

use crate::store::layout::TEMP_PREFIX;
use crate::store::layout::{SIDECAR_SUFFIX, sidecar_path};

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
        // No hard links either (FAT, some FUSE and CIFS mounts): check, then rename. Racy only
        // against another program creating the same name in that instant.
        Err(e) if links_unsupported(&e) => {
            if to.symlink_metadata().is_ok() {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            fs::rename(from, to)
        }
        Err(e) => Err(e),
    }
}

/// Whether a failed `link()` means "this filesystem (or its mount options) gives no hard
/// links", so a plain rename must do: EPERM (FAT, `fs.protected_hardlinks` on a file of
/// another owner), EACCES, ENOSYS and EOPNOTSUPP (some FUSE and CIFS mounts).
fn links_unsupported(e: &io::Error) -> bool {
    use rustix::io::Errno;
    let Some(code) = e.raw_os_error() else {
        return false;
    };
    [Errno::PERM, Errno::ACCESS, Errno::NOSYS, Errno::OPNOTSUPP]
        .iter()
        .any(|errno| errno.raw_os_error() == code)
}

/// Moves a file to `to` without overwriting, copying when the target is on another
/// filesystem. After it returns Ok the file is durably at `to` and gone from `from`.
///
/// Safe to repeat after any failure or crash part-way: if `to` already holds the same bytes
/// as `from` (a copy or a link placed by an earlier try whose removal of `from` failed or
/// never ran), only the removal of `from` is left to do, and nothing is copied again. A `to`
/// holding other bytes is never touched (`ErrorKind::AlreadyExists`).
pub fn move_file_noclobber(from: &Path, to: &Path) -> io::Result<()> {
    let placed_before = exists(to) && same_content(from, to)?;
    if !placed_before {
        match rename_noclobber(from, to) {
            Ok(()) => return sync_parent(to),
            Err(e) if e.kind() == io::ErrorKind::CrossesDevices => copy_into_place(from, to)?,
            Err(e) => return Err(e),
        }
    }
    fs::remove_file(from)?;
    sync_parent(from)?;
    sync_parent(to)
}

/// EXDEV: copy into a temp file beside `to` with the source's permission bits, fsync, link
/// into place, fsync the folder. The caller removes the source.
fn copy_into_place(from: &Path, to: &Path) -> io::Result<()> {
    let dir = parent_of(to);
    let source = open_no_follow(from)?;
    let temp = copy_keeping_mode(&source, dir)?;
    temp.persist_noclobber(to).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// A dot-named temp file in `dir` holding `source`'s bytes, with `source`'s permission bits
/// (never set-id bits) and, where the daemon may give it (as root), `source`'s owner and
/// group, as `mv` does across filesystems; fsync'd.
pub fn copy_keeping_mode(source: &File, dir: &Path) -> io::Result<tempfile::NamedTempFile> {
    use std::os::unix::fs::MetadataExt;
    let meta = source.metadata()?;
    let temp = copy_to_temp(source, dir, meta.mode() & 0o777)?;
    let (uid, gid) = (meta.uid(), meta.gid());
    let copy = temp.as_file().metadata()?;
    if (copy.uid(), copy.gid()) != (uid, gid) {
        // Best effort: only root may give a file away; otherwise the copy is ours.
        let (owner, group) = (
            rustix::fs::Uid::from_raw(uid),
            rustix::fs::Gid::from_raw(gid),
        );
        let _ = rustix::fs::fchown(temp.as_file(), Some(owner), Some(group));
    }
    Ok(temp)
}

/// A dot-named temp file in `dir` holding `source`'s bytes with exactly `mode`, fsync'd.
fn copy_to_temp(mut source: &File, dir: &Path, mode: u32) -> io::Result<tempfile::NamedTempFile> {
    let mut temp = temp_file_in(dir, mode)?;
    io::copy(&mut source, temp.as_file_mut())?;
    // Exactly `mode`, whatever the umask took away at creation.
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))?;
    temp.as_file().sync_all()?;
    Ok(temp)
}

/// Opens `path` for reading without following a symlink (ELOOP if it is one) and without
/// blocking on a FIFO or taking a terminal.
pub fn open_no_follow(path: &Path) -> io::Result<File> {
    use rustix::fs::OFlags;
    use std::os::unix::fs::OpenOptionsExt;
    let flags = OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
}

/// Whether two paths hold the same bytes: the same file (a hard link), or equal contents.
pub fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let (meta_a, meta_b) = (fs::metadata(a)?, fs::metadata(b)?);
    if meta_a.dev() == meta_b.dev() && meta_a.ino() == meta_b.ino() {
        return Ok(true);
    }
    if meta_a.len() != meta_b.len() {
        return Ok(false);
    }
    let (mut file_a, mut file_b) = (File::open(a)?, File::open(b)?);
    let (mut buf_a, mut buf_b) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = read_full(&mut file_a, &mut buf_a)?;
        if n != read_full(&mut file_b, &mut buf_b)? || buf_a[..n] != buf_b[..n] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }

    /// Fills `buf` unless the file ends first; returns how much was read.
    fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match file.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }
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

/// What [`make_private`] did with a file the daemon is putting in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privacy {
    /// It has `mode` now (changed on its descriptor, or replaced by a private copy of our own
    /// when another user owns it).
    Made,
    /// Left exactly as it is (mode, owner, content), and what it is: not a file the daemon
    /// may change.
    LeftAsIs(&'static str),
}

/// What a symlink is called when [`make_private`] leaves it alone.
pub const A_SYMLINK: &str = "a symbolic link";
/// What a file with other hard links is called when [`make_private`] leaves it alone.
pub const A_HARD_LINK: &str = "a hard link to a file elsewhere";
/// What anything but a regular file or a symlink is called when [`make_private`] leaves it.
pub const NOT_A_REGULAR_FILE: &str = "not a regular file";

/// Gives a file the daemon is putting in place `mode` (a moved original keeps the scanner's
/// mode, often world-readable) if, and only if, it is a regular file with no other hard link:
/// the mode is changed on a descriptor opened without following links, so a symlink's target
/// or an inode shared with a file elsewhere is never changed ([`Privacy::LeftAsIs`]). Only a
/// file's owner may change its mode; an original written by another user (Samba, FTP) is
/// therefore rewritten as the daemon's own file with `mode`.
pub fn make_private(path: &Path, mode: u32) -> io::Result<Privacy> {
    // Looked at first without opening: opening a device may do something.
    if let Some(what) = left_as_is(&fs::symlink_metadata(path)?) {
        return Ok(Privacy::LeftAsIs(what));
    }
    let file = match open_no_follow(path) {
        Ok(file) => file,
        // Swapped for a symlink since the look.
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Ok(Privacy::LeftAsIs(A_SYMLINK));
        }
        Err(e) => return Err(e),
    };
    if let Some(what) = left_as_is(&file.metadata()?) {
        return Ok(Privacy::LeftAsIs(what));
    }
    match file.set_permissions(fs::Permissions::from_mode(mode)) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            rewrite_as_own(&file, path, mode)?;
            Ok(Privacy::Made)
        }
        Err(e) => Err(e),
        Ok(()) => Ok(Privacy::Made),
    }
}

/// Takes from an open file every permission `mode` does not give (a 0644 file opened to
/// append with mode 0640 becomes 0640), so an existing file the daemon goes on writing is as
/// private as one it creates; never adds a permission, never changes a file already within
/// `mode`. Returns the mode it had when it was changed. Fails (naming both modes) when the
/// file is looser and cannot be changed (another user's file): the caller must not write
/// to it then.
pub fn restrict_open_file(file: &File, mode: u32) -> io::Result<Option<u32>> {
    let had = file.metadata()?.permissions().mode() & 0o7777;
    let wanted = had & mode & 0o777;
    if had == wanted {
        return Ok(None);
    }
    match file.set_permissions(fs::Permissions::from_mode(wanted)) {
        Ok(()) => Ok(Some(had)),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!(
                "it has mode {had:04o}, looser than {mode:04o}, and its mode cannot be changed ({e})"
            ),
        )),
    }
}

/// Why an entry is not the daemon's to change: a symlink, a file with other hard links (the
/// inode is shared with a name elsewhere), anything but a regular file.
pub fn left_as_is(meta: &fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::MetadataExt;
    let kind = meta.file_type();
    if kind.is_symlink() {
        Some(A_SYMLINK)
    } else if !kind.is_file() {
        Some(NOT_A_REGULAR_FILE)
    } else if meta.nlink() > 1 {
        Some(A_HARD_LINK)
    } else {
        None
    }
}

/// Copies the open `file` into a temp file of ours with `mode`, fsyncs it and renames it over
/// `path` (the name `file` was opened by).
fn rewrite_as_own(file: &File, path: &Path, mode: u32) -> io::Result<()> {
    let dir = parent_of(path);
    let temp = copy_to_temp(file, dir, mode)?;
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
/// Each candidate is shortened if needed (the end of its stem, on a character boundary) so
/// that it and its sidecar's name fit the folder's longest name.
pub fn free_name(dir: &Path, name: &str) -> PathBuf {
    let max = name_max(dir).saturating_sub(SIDECAR_SUFFIX.len());
    (1u64..)
        .map(|n| {
            let counter = if n == 1 {
                String::new()
            } else {
                format!(" ({n})")
            };
            fit_name(name, &counter, max)
        })
        .map(|candidate| dir.join(candidate))
        .find(|candidate| !exists(candidate) && !exists(&sidecar_path(candidate)))
        .expect("an unbounded range always yields a free name")
}

/// The longest file name (in bytes) the filesystem of `dir` accepts; Linux's NAME_MAX (255)
/// when it cannot be asked.
pub fn name_max(dir: &Path) -> usize {
    rustix::fs::statvfs(dir)
        .ok()
        .and_then(|s| usize::try_from(s.f_namemax).ok())
        .filter(|&n| n > 0)
        .unwrap_or(255)
        .min(255)
}

/// `name` with `counter` (`" (2)"`, or empty) put before its extension, cut to at most
/// `max` bytes by shortening the stem on a character boundary. The extension is kept unless
/// it is itself too long to leave room for a stem.
pub fn fit_name(name: &str, counter: &str, max: usize) -> String {
    /// Fewest bytes of the stem worth keeping an extension for.
    const MIN_STEM: usize = 16;
    let (stem, ext) = split_extension(name);
    let (stem, ext) = if ext.len() + counter.len() + MIN_STEM > max {
        (name, "")
    } else {
        (stem, ext)
    };
    let room = max.saturating_sub(counter.len() + ext.len());
    let mut cut = stem.len().min(room);
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{counter}{ext}", &stem[..cut])
}

/// Whether anything (a file, a folder, a dangling link) has this name.
pub fn exists(path: &Path) -> bool {
    path.symlink_metadata().is_ok()
}

/// When an entry arrived or last changed, in unix seconds: the kernel's change time (ctime),
/// set by a create, a write or a rename into the folder, which no writer can set back (a copy
/// that keeps the original's mtime may date a scan made today from 2019, or from 1970).
/// `None` for a time not after the epoch: such an age would be nonsense, not a wait.
pub fn changed_at_unix(meta: &fs::Metadata) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    u64::try_from(meta.ctime()).ok().filter(|secs| *secs > 0)
}

/// `scan.jpg` → (`scan`, `.jpg`); `.hidden` and `noext` keep no extension.
fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    }
}

/// A content hash as the journal, the sidecars and the duplicate rule carry it: lower-case
/// hex SHA-256 (the digest crate's own `{:x}` formatting; nothing here spells hex by hand).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// [`sha256_hex`] of a file's content, read in chunks (memory does not grow with the file).
pub fn sha256_hex_of_file(path: &Path) -> io::Result<String> {
    sha256_hex_of_reader(File::open(path)?).map(|(sha256, _)| sha256)
}

/// Bytes read at a time while hashing: one buffer per file being hashed, and many files
/// are hashed at once when a backlog is claimed (256 KiB added 3 MB to the peak of 200
/// files; `std::io::copy`'s 8 KiB made eight times the system calls).
const HASH_READ_BUFFER: usize = 64 * 1024;

/// [`sha256_hex`] of what `reader` gives until its end, and how many bytes that was.
pub fn sha256_hex_of_reader(mut reader: impl io::Read) -> io::Result<(String, u64)> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; HASH_READ_BUFFER];
    let mut read = 0u64;
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buffer[..n]);
                read += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((format!("{:x}", hasher.finalize()), read))
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
    fn content_hashes_are_lowercase_hex_and_agree_for_bytes_and_files() {
        // sha256("abc"), as `sha256sum` prints it.
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_hex(b"abc"), abc);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("abc");
        fs::write(&file, b"abc").unwrap();
        assert_eq!(sha256_hex_of_file(&file).unwrap(), abc);
    }

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

    /// Finding 9 (issue 8): a name as long as the filesystem allows lands in done/failed,
    /// shortened on a character boundary so that it and its sidecar fit, the `(2)` variant too.
    #[test]
    fn long_names_are_shortened_to_fit_with_their_sidecar() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // 125 Cyrillic letters and ".png": 254 bytes, which the inbox accepts, but not with
        // ".json" after it.
        let long = format!("{}.png", "ж".repeat(125));
        assert!(long.len() <= 255);
        let first = free_name(d, &long);
        let first_name = first.file_name().unwrap().to_str().unwrap().to_string();
        assert!(first_name.len() + 5 <= 255, "{}", first_name.len());
        assert!(first_name.ends_with(".png") && first_name.starts_with("жжж"));
        fs::write(&first, b"x").unwrap();
        fs::write(sidecar_path(&first), b"{}").unwrap();
        let second = free_name(d, &long);
        let second_name = second.file_name().unwrap().to_str().unwrap().to_string();
        assert!(second_name.ends_with(" (2).png"), "{second_name}");
        assert!(second_name.len() + 5 <= 255);
        fs::write(&second, b"x").unwrap();
        fs::write(sidecar_path(&second), b"{}").unwrap();
        // Short names are untouched.
        assert_eq!(free_name(d, "scan.jpg"), d.join("scan.jpg"));
        // Character boundaries, a too-long extension, an empty counter.
        assert_eq!(fit_name("ab.jpg", "", 250), "ab.jpg");
        assert_eq!(
            fit_name(&format!("{}.pdf", "я".repeat(10)), " (3)", 28),
            format!("{} (3).pdf", "я".repeat(10))
        );
        assert_eq!(
            fit_name(&format!("{}.pdf", "я".repeat(10)), " (3)", 27),
            format!("{} (3).pdf", "я".repeat(9))
        );
        let weird = format!("a.{}", "x".repeat(300));
        assert_eq!(fit_name(&weird, "", 250).len(), 250);
    }

    /// Suspected in issue 8: `link()` failing with ENOSYS or EOPNOTSUPP (some FUSE and CIFS
    /// mounts) made every claim on such a mount fail; it now falls back to a checked rename,
    /// like EPERM and EACCES. Real errors (the name exists, no space) still fail.
    #[test]
    fn suspected_link_enosys_eopnotsupp_fall_back_like_eperm() {
        for code in [
            libc_errno::EPERM,
            libc_errno::EACCES,
            libc_errno::ENOSYS,
            libc_errno::EOPNOTSUPP,
        ] {
            assert!(
                links_unsupported(&io::Error::from_raw_os_error(code)),
                "errno {code}"
            );
        }
        for code in [
            libc_errno::EEXIST,
            libc_errno::ENOSPC,
            libc_errno::EXDEV,
            libc_errno::EROFS,
        ] {
            assert!(
                !links_unsupported(&io::Error::from_raw_os_error(code)),
                "errno {code}"
            );
        }
        assert!(!links_unsupported(&io::Error::other("no errno")));
    }

    /// Linux errno values, spelled out so the test does not lean on the code under test.
    mod libc_errno {
        pub const EPERM: i32 = 1;
        pub const EACCES: i32 = 13;
        pub const EEXIST: i32 = 17;
        pub const EXDEV: i32 = 18;
        pub const ENOSPC: i32 = 28;
        pub const EROFS: i32 = 30;
        pub const ENOSYS: i32 = 38;
        pub const EOPNOTSUPP: i32 = 95;
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
    fn copy_into_place_copies_content_and_keeps_the_source() {
        // Same filesystem, but exercising the EXDEV path directly.
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::write(&a, b"payload").unwrap();
        copy_into_place(&a, &b).unwrap();
        assert_eq!(fs::read(&b).unwrap(), b"payload");
        assert!(
            a.exists(),
            "the caller removes the source once the copy is in place"
        );
    }

    /// Finding 3 (issue 8): a move interrupted after the target was placed (a copy across
    /// filesystems, or a hard link) and before the source was removed completes on the next
    /// try; it never fails with "File exists" and never makes a second copy.
    #[test]
    fn a_repeated_move_completes_a_half_done_one() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Interrupted copy: the target holds the same bytes in a file of its own.
        fs::write(d.join("a"), b"payload").unwrap();
        fs::write(d.join("b"), b"payload").unwrap();
        move_file_noclobber(&d.join("a"), &d.join("b")).unwrap();
        assert!(!d.join("a").exists());
        assert_eq!(fs::read(d.join("b")).unwrap(), b"payload");
        // Interrupted link + unlink: the target is the same file.
        fs::write(d.join("c"), b"other").unwrap();
        fs::hard_link(d.join("c"), d.join("e")).unwrap();
        move_file_noclobber(&d.join("c"), &d.join("e")).unwrap();
        assert!(!d.join("c").exists());
        assert_eq!(fs::read(d.join("e")).unwrap(), b"other");
        // A target holding other bytes (same size) is someone else's: left alone.
        fs::write(d.join("f"), b"mine").unwrap();
        fs::write(d.join("g"), b"them").unwrap();
        let err = move_file_noclobber(&d.join("f"), &d.join("g")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(d.join("f")).unwrap(), b"mine");
        assert_eq!(fs::read(d.join("g")).unwrap(), b"them");
        let names: Vec<_> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 4, "no copies or temp files left: {names:?}");
    }

    fn mode_of(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// Only a regular file with no other hard link gets the mode; a symlink (its target) and
    /// an inode shared with a file elsewhere are left exactly as they are, and named.
    #[test]
    fn make_private_changes_only_a_regular_file_with_no_other_link() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let private = |name: &str| {
            let path = d.join(name);
            fs::write(&path, name).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            path
        };
        let (outside, target, own) = (private("outside"), private("target"), private("own"));
        fs::set_permissions(&own, fs::Permissions::from_mode(0o644)).unwrap();
        fs::hard_link(&outside, d.join("linked")).unwrap();
        std::os::unix::fs::symlink(&target, d.join("symlink")).unwrap();
        assert_eq!(make_private(&own, 0o640).unwrap(), Privacy::Made);
        assert_eq!(mode_of(&own), 0o640);
        assert_eq!(
            make_private(&d.join("linked"), 0o640).unwrap(),
            Privacy::LeftAsIs(A_HARD_LINK)
        );
        assert_eq!(
            make_private(&d.join("symlink"), 0o640).unwrap(),
            Privacy::LeftAsIs(A_SYMLINK)
        );
        assert_eq!(mode_of(&outside), 0o600, "the shared inode");
        assert_eq!(mode_of(&target), 0o600, "the symlink's target");
        assert_eq!(
            make_private(d, 0o640).unwrap(),
            Privacy::LeftAsIs(NOT_A_REGULAR_FILE)
        );
    }

    /// A move across filesystems changes no mode: the copy has the source's bits, whatever
    /// they are (the caller made the file private before, or left it as it was on purpose).
    #[test]
    fn a_copy_keeps_the_sources_mode() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o600, 0o640, 0o644] {
            let (a, b) = (dir.path().join("a"), dir.path().join("b"));
            fs::write(&a, b"payload").unwrap();
            fs::set_permissions(&a, fs::Permissions::from_mode(mode)).unwrap();
            copy_into_place(&a, &b).unwrap();
            assert_eq!(mode_of(&b), mode, "{mode:o}");
            fs::remove_file(&b).unwrap();
        }
    }

    #[test]
    fn same_content_compares_bytes_beyond_one_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let mut bytes = vec![7u8; 200 * 1024];
        fs::write(&a, &bytes).unwrap();
        fs::write(&b, &bytes).unwrap();
        assert!(same_content(&a, &b).unwrap());
        bytes[150 * 1024] = 8;
        fs::write(&b, &bytes).unwrap();
        assert!(!same_content(&a, &b).unwrap());
    }
}
