//! The commands a sysadmin runs beside the daemon: [`check`] vets a config and its folders,
//! [`status`] reports what the running daemon is doing, [`explain`] tells what happened to a
//! file, [`requeue`] sends finished files again, [`reviewer`] manages the review station's users,
//! [`demo`] runs it on the emulator; [`docs`] writes the man pages and shell completions for the
//! package.

pub mod check;
pub mod demo;
pub mod docs;
pub mod explain;
pub mod requeue;
pub mod reviewer;
pub mod status;
