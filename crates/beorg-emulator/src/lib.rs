//! A faithful local stand-in for the Beorg recognition API described in
//! `shared/beorg-api.md`, quirks included; the tests and the demo run the daemon against it.
//!
//! This module owns everything on the server side of the wire: the two routes (submit and
//! result, plus the `/api/bescan/result` alias), the vendor's checks and status codes in the
//! vendor's order, the processing times from the vendor's table (scaled by
//! [`EmulatorConfig::time_scale`]), and fake but plausible result bodies for every document type
//! the seeds show, with their oddities: confidences as strings or numbers, SNILS confidence keys
//! cased unlike the data keys, FPRN answered as `PASSPORT_FPRN` with fields under `data.data`,
//! `broken: null` for OTPR, and an OTPR-style body that is not JSON at all.
//!
//! Tests steer it from outside ([`Emulator::set_no_money`], [`Emulator::fail_next`],
//! [`Emulator::delay_next`]) and from inside the files: a decoded image containing
//! `BEORG-EMU:broken`, `BEORG-EMU:invalid-json`, `BEORG-EMU:lost` or `BEORG-EMU:never` gets a
//! broken document, an unparsable body, a 404 or an endless 425. Results a person must check
//! are asked for the same way: `BEORG-EMU:verification=N` (passport verification status N, 0
//! to 7, with the seed's text), `BEORG-EMU:not-live` (the liveness check ran and failed),
//! `BEORG-EMU:other-face` (the face match ran and failed, on every document of the set that
//! has a match) and `BEORG-EMU:low-confidence` (the `LastName` confidence, or the first one,
//! is 0.42). Several markers may share an image.
//!
//! A submit names its project as `project_id` or, like the OTPR seed, `campaign_id`; a
//! document belongs to its project (the same picture sent to another project is not a
//! duplicate). Without `process_info` ("Passport Auto") the result is the flat shape.
//!
//! The token never reaches a log line or the request log ([`RequestRecord`] has no place for
//! it, and query strings are not recorded; it does keep the project field and value, and
//! whether `process_info` came).
//!
//! The modules, in the order a request meets them:
//! - `server`: the [`Emulator`] handle (start, steer, stop) and [`serve_forever`];
//!   `config`: its settings; `state`: what the handle and the handlers share;
//! - `connection`: the listener and connections that die on shutdown; `routes`: which path
//!   goes to which handler; `reply`: the status and body every handler answers with;
//! - `faults`: the forced statuses and delays the harness queued, taken first;
//! - `submit`: the submit handler and admission (money, duplicates, the new id), reading the
//!   body with `body`, judging it with `checks` (the vendor's checks, in order) and `markers`
//!   (what an image asks for), and storing a `documents` set with its ready time;
//! - `result`: the result handler's checks, then `render` (the result body) with `fake`
//!   (plausible recognised data);
//! - `records`: the request log tests read; `samples`: generated page scans.

mod body;
mod checks;
mod config;
mod connection;
mod documents;
mod fake;
mod faults;
mod markers;
mod records;
mod render;
mod reply;
mod result;
mod routes;
pub mod samples;
mod server;
mod state;
mod submit;

pub use config::EmulatorConfig;
pub use records::{Endpoint, RequestRecord};
pub use server::{Emulator, serve_forever};
