//! The commands a sysadmin runs beside the daemon: [`check`] vets a config and its folders,
//! [`status`] reports what the running daemon is doing, [`demo`] runs it on the emulator.

pub mod check;
pub mod demo;
pub mod status;
