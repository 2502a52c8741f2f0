//! What a candidate is to the settle rule: a single file or a document set, and all that
//! differs between the two kinds.
//!
//! The rule itself ([`settle`](super::settle)) is written once; it asks a candidate's
//! [`Stamp`] only what is the kind's own: how its stamp is taken (a file's size and mtime by
//! `lstat`; a set's [`Listing`]: names, sizes and mtimes of everything in its folder; its
//! record keeps a set's total size and newest mtime for the queue), whether it holds an
//! empty file (which settles for at least [`EMPTY_FILE_SETTLE`](super::settle::EMPTY_FILE_SETTLE)), whether a local writer's close
//! finishes it (a file's does; one file closed in a set says nothing of the others), what it
//! waits for before settling at all (a set: something to offer and its `ready_file`), which
//! of its names hold it (a set: a [temporary name](crate::pipeline::entries::is_temporary_name)),
//! and which files' content is checked for looking unfinished (the file; each member).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::config::InboxConfig;
/// What a file's content is judged by (size, mtime, ctime): the stamp the claim and the
/// submit use too.
pub(super) use crate::pipeline::hashed::Stamp as FileStamp;
use crate::pipeline::set::{self, Listing};

/// A candidate's stamp as taken from disk now: any difference from the one kept restarts its
/// settle time.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Stamp {
    /// A single file: its size and mtime.
    File { size: u64, mtime: SystemTime },
    /// A set folder: its listing.
    Set(Box<Listing>),
}

/// A candidate's stamp as its record keeps it (see [`Stamp`]); what the settle rule asks of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StampRef<'a> {
    File { size: u64, mtime: SystemTime },
    Set(&'a Listing),
}

/// Why a candidate is not even settling yet (before any hold): it is not there to be offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wait {
    /// Nothing in it to offer (an empty set folder, or one with only hidden files).
    Nothing,
    /// Its `ready_file` is not there yet.
    ReadyFile,
    /// An entry named like the `ready_file` is there but does not count as it, and why.
    ReadyFileRefused(&'static str),
}

/// A file whose content is checked for looking unfinished: what it is called in a hold
/// (`None` for the candidate itself, a member's name in a set), where it is, its size.
pub(super) type Checked = (Option<String>, PathBuf, u64);

impl Stamp {
    /// A single file's stamp from its metadata.
    pub(super) fn of_file(meta: &std::fs::Metadata) -> Stamp {
        Stamp::File {
            size: meta.len(),
            mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        }
    }

    /// A set folder's stamp: its listing. None when it cannot be listed (gone, not a folder).
    pub(super) fn of_set(inbox: &InboxConfig, folder: &Path) -> Option<Stamp> {
        set::list(inbox, folder)
            .ok()
            .map(|listing| Stamp::Set(Box::new(listing)))
    }

    /// The one it is kept as.
    pub(super) fn as_ref(&self) -> StampRef<'_> {
        match self {
            Stamp::File { size, mtime } => StampRef::File {
                size: *size,
                mtime: *mtime,
            },
            Stamp::Set(listing) => StampRef::Set(listing),
        }
    }
}

impl<'a> StampRef<'a> {
    /// The stamp of the same kind taken again at `path` now; None when it is gone (renamed
    /// away, deleted) or no longer of its kind.
    pub(super) fn take_again(self, inbox: &InboxConfig, path: &Path) -> Option<Stamp> {
        match self {
            StampRef::File { .. } => std::fs::symlink_metadata(path)
                .ok()
                .filter(|meta| meta.file_type().is_file())
                .map(|meta| Stamp::of_file(&meta)),
            StampRef::Set(_) => Stamp::of_set(inbox, path),
        }
    }

    /// Whether it is or holds an empty file: often a scanner that has created its output and
    /// not written yet.
    pub(super) fn holds_an_empty_file(self) -> bool {
        match self {
            StampRef::File { size, .. } => size == 0,
            StampRef::Set(listing) => listing.files.iter().any(|f| f.size == 0),
        }
    }

    /// Whether a local writer's close, with nothing changed since, means it is complete: for
    /// a file with something in it, yes; for a set, no (other files may still come).
    pub(super) fn finished_by_a_close(self) -> bool {
        match self {
            StampRef::File { size, .. } => size > 0,
            StampRef::Set(_) => false,
        }
    }

    /// What it waits for before it can settle at all, if anything.
    pub(super) fn wait(self, inbox: &InboxConfig) -> Option<Wait> {
        let StampRef::Set(listing) = self else {
            return None;
        };
        let wants_ready_file = inbox.ready_file.is_some() && !listing.ready;
        match listing.ready_refused {
            Some(why) if wants_ready_file => Some(Wait::ReadyFileRefused(why)),
            _ if listing.is_empty() => Some(Wait::Nothing),
            _ if wants_ready_file => Some(Wait::ReadyFile),
            _ => None,
        }
    }

    /// A name in it that holds it even when nothing changes: a set's temporary name.
    pub(super) fn temporary_name(self) -> Option<&'a str> {
        let StampRef::Set(listing) = self else {
            return None;
        };
        listing.temporary().next()
    }

    /// The files whose content may show it unfinished, in order: the file at `path` itself,
    /// or each member of the set folder at `path`.
    pub(super) fn checked_files(self, path: &Path) -> Vec<Checked> {
        match self {
            StampRef::File { size, .. } => vec![(None, path.to_path_buf(), size)],
            StampRef::Set(listing) => listing
                .files
                .iter()
                .map(|f| (Some(f.name.clone()), path.join(&f.name), f.size))
                .collect(),
        }
    }
}

/// A file's stamp now (what its content is judged by), if it is there.
pub(super) fn file_stamp(path: &Path) -> Option<FileStamp> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|meta| FileStamp::of(&meta))
}
