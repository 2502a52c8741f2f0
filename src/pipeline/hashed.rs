//! What this run knows about a file's bytes from having hashed them: the file's [`Stamp`]
//! (what `fstat` says about its content) and its SHA-256, taken together in one read.
//!
//! The claim hashes each file (every file of a set) and keeps a [`Hashed`] for it in the job;
//! the submit, which must know the hash of the bytes it sends, opens the file again and reads
//! it a second time only when its stamp is no longer the one it was hashed under. A write
//! moves the file's ctime (no program can set it back), so an equal stamp is the same bytes:
//! the rule the submit already applies to a file after its send.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::store::fsutil::sha256_hex_of_reader;

/// What `fstat` of a file says about its content: equal stamps, unchanged file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    pub fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// One file as this run hashed it: its path, its stamp while it was read, and the hash.
#[derive(Debug, Clone)]
pub struct Hashed {
    pub path: PathBuf,
    pub stamp: Stamp,
    pub sha256: String,
}

/// Reads the open `file` from its current position (a file just opened: all of it) and
/// hashes it (blocking). `None` for the stamp if the file changed while it was read (another
/// stamp after than before, or not as many bytes as it said): the hash then belongs to no
/// stamp.
pub fn hash_open_file(file: &std::fs::File) -> std::io::Result<(String, Option<Stamp>)> {
    let before = Stamp::of(&file.metadata()?);
    let (sha256, read) = sha256_hex_of_reader(file)?;
    let unchanged = Stamp::of(&file.metadata()?) == before && read == before.size;
    Ok((sha256, unchanged.then_some(before)))
}

/// Opens and hashes the file at `path` (blocking): its hash, and what to remember of it
/// (`None` if it changed while it was read).
pub fn hash_file(path: &Path) -> std::io::Result<(String, Option<Hashed>)> {
    let file = std::fs::File::open(path)?;
    let (sha256, stamp) = hash_open_file(&file)?;
    let hashed = stamp.map(|stamp| Hashed {
        path: path.to_path_buf(),
        stamp,
        sha256: sha256.clone(),
    });
    Ok((sha256, hashed))
}

/// The hash of the file at `path`, if this run hashed it under `stamp` (its stamp now).
pub fn known_hash<'a>(known: &'a [Hashed], path: &Path, stamp: Stamp) -> Option<&'a str> {
    known
        .iter()
        .find(|h| h.path == path && h.stamp == stamp)
        .map(|h| h.sha256.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_hashed_here_is_known_by_its_stamp_until_it_is_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scan.jpg");
        std::fs::write(&path, b"first bytes").unwrap();
        let (sha256, hashed) = hash_file(&path).unwrap();
        assert_eq!(sha256, crate::store::fsutil::sha256_hex(b"first bytes"));
        let hashed = hashed.expect("unchanged while read");
        let stamp = |p: &Path| Stamp::of(&std::fs::metadata(p).unwrap());
        assert_eq!(
            known_hash(std::slice::from_ref(&hashed), &path, stamp(&path)),
            Some(sha256.as_str())
        );
        // The same length written again, its mtime put back: the ctime still moved.
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::fs::write(&path, b"other bytes").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_eq!(known_hash(&[hashed], &path, stamp(&path)), None);
    }
}
