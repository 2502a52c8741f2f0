//! The stages a scan goes through, in order: [`intake`] → [`claim`] → [`preflight`] →
//! [`submit`] → [`poll`] → [`finish`]. Each stage is a module of its own and can be read
//! alone; what they share (the claimed file, the context) is defined here, and the order in
//! which they run is written once, in `daemon::drive`.

pub mod claim;
pub mod finish;
pub mod intake;
pub mod poll;
pub mod preflight;
pub mod submit;
