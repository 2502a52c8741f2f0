//! What the daemon keeps on disk and how it writes it: the [`layout`] (every name and folder
//! it creates), the [`journal`] (every claimed file's row), the one-daemon-per-state-folder
//! lock ([`instance`]), the mount check that keeps an unmounted share from being filled
//! ([`mounts`]), and the careful file operations ([`fsutil`]: no-clobber moves, atomic
//! writes, private modes, content hashes) and their folder-sized twins for document sets
//! ([`tree`]), [`retention`] (deleting outcomes older than an inbox's `retention`), and
//! [`append_log`] (append-only files a record at a time, safe to rotate: the ledger).

pub mod append_log;
pub mod fsutil;
pub mod instance;
pub mod journal;
pub mod layout;
pub mod mounts;
pub mod retention;
pub mod tree;
