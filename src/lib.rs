//! beorg-hotfolder turns scanner hot folders into structured data.
//!
//! How a scan flows through the modules:
//!
//! 1. [`intake`] watches each inbox (events plus a periodic rescan) and decides when a file
//!    has stopped changing; settled files join one oldest-first [`intake::ReadyQueue`].
//! 2. [`claim`] moves a settled file into the inbox's work folder and records it in the
//!    [`journal`] before anything is sent, so from then on it is in exactly one place.
//! 3. [`preflight`] checks the file before any request is paid for.
//! 4. [`submit`] uploads it through the [`api`] client when the [`scheduler`] (the single owner
//!    of the request budget) grants a turn, and stores the `document_id` at once.
//! 5. [`poll`] asks for the result with growing intervals until it is ready or times out.
//! 6. [`finish`] moves the original to done/ or failed/ and writes the [`sidecar`] beside it.
//!
//! [`daemon::run`] wires the stages together; the binary, the demo and the tests all call it.
//! The `beorg-emulator` crate is a local stand-in for the Beorg API; [`config`] is the one place settings
//! are read and checked; [`status`] reports what the daemon is doing while it runs.
//! [`check`] vets a config and its folders before `run`; [`systemd`] sends `Type=notify` messages.
//! [`instance`] keeps a second daemon off a state folder that one already uses.
//! [`store::layout`] names every file and folder the daemon creates; [`retry`] is the one
//! "retry until it works" loop (backoff, one report per distinct error, stop honoured).

pub mod api;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod logging;
pub mod metrics;
pub mod pipeline;
pub mod retry;
pub mod scheduler;
pub mod sidecar;
pub mod store;
pub mod systemd;

pub use config::Config;
pub use daemon::run;
