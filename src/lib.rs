//! beorg-hotfolder turns scanner hot folders into structured data.
//!
//! How a scan flows through the modules (the folders of `src/` follow the same order):
//!
//! 1. [`pipeline::intake`] watches each inbox (events plus a periodic rescan) and decides when
//!    a file is ready: settled, closed by its writer, complete; ready files join one
//!    oldest-first [`pipeline::intake::ReadyQueue`].
//! 2. [`pipeline::claim`] moves a ready file into the inbox's work folder and records it in
//!    the [`store::journal`] before anything is sent, so from then on it is in exactly one
//!    place; then, in the file's own task, it hashes the content.
//! 3. [`pipeline::preflight`] checks the file against the vendor's limits and its format's
//!    rules before any request is paid for.
//! 4. [`pipeline::submit`] uploads it through the [`api`] client when the [`scheduler`] (the
//!    single owner of the request budget; with `[budget] redis`, its share of a [`budget`]
//!    several daemons use) grants a turn, and stores the `document_id` at once.
//! 5. [`pipeline::poll`] asks for the result with growing intervals until it is ready or
//!    times out.
//! 6. [`pipeline::finish`] moves the original to done/, review/ or failed/, writes the
//!    [`sidecar`] beside it (with the normalised view and the review reasons of [`results`]),
//!    and records the outcome's deliveries with the finish.
//! 7. [`deliver`] (the stage after finish) delivers each outcome by webhook, command or
//!    ledger line, retried on a schedule until it is delivered or given up.
//!
//! 8. [`review_station`] (with `[review_station]`): a web page where a person approves
//!    (with corrections) or rejects each result in the review folders; the decision moves it
//!    to done/ or failed/ and is delivered as `file.reviewed`.
//!
//! What state a claimed file is in is decided by one pure state machine, [`lifecycle`]
//! (state, event, now → next state and effects), and stored at one write point,
//! [`pipeline::recorder`]: the stages report events to it, and it alone names the journal
//! under `pipeline`. Every stage answers with a [`pipeline::Step`]; the order is written
//! once, in the [`daemon`]'s drive, and [`daemon::run`] (what the binary, the demo and the tests call)
//! runs sessions of the pipeline: resume from the journal, intake, the feeder, reloads.
//! Beside the stages: [`config`] (every setting, read and checked in one place), [`store`]
//! (the journal, the on-disk [`store::layout`], the state-folder lock, careful file
//! operations), [`retry`] (the one "retry until it works" loop), [`metrics`], [`systemd`],
//! [`logging`], [`redact`] (what of a URL may be shown, wherever one is printed). [`cli`]
//! holds the commands run beside the daemon: `check`, `status`, `demo`. The API's stand-in
//! is the `beorg-emulator` crate.
//!
//! Dependencies point one way: `cli` → `daemon` → `pipeline` → (`store`, `api`, `scheduler`,
//! `sidecar`, ...) → `lifecycle` → `api` → `config`, which names only [`redact`] (storage reads settings, settings
//! never read storage). Inside `pipeline`, the stages name [`pipeline::set`] and
//! [`pipeline::entries`] (which entries of a folder are taken); those two name no stage. A
//! test (`tests/it/architecture.rs`) takes each module with its descendants and fails on any
//! import cycle between siblings, at every level.

pub mod api;
pub mod budget;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod deliver;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod pipeline;
pub mod redact;
pub mod results;
pub mod retry;
pub mod review_station;
pub mod scheduler;
pub mod sidecar;
pub mod store;
pub mod systemd;

pub use config::Config;
pub use daemon::run;
