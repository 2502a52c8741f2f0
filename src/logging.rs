//! Log setup: tracing to stderr, `RUST_LOG` honoured, shaped for journald.
//!
//! Under journald (`JOURNAL_STREAM` set) lines carry no timestamp of their own (journald adds
//! one); colours only when stderr is a terminal; `--log-format json` for log shippers. The
//! HTTP stack is held at `info` whatever `RUST_LOG` says: its debug lines print URLs, and the
//! result URL carries the token.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Output shape of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Targets never allowed below `info`: they would print request URLs.
const QUIET_TARGETS: [&str; 5] = ["reqwest", "hyper", "hyper_util", "h2", "rustls"];

/// The filter from `RUST_LOG` (default `info`), with the HTTP stack capped.
pub fn filter() -> EnvFilter {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    for target in QUIET_TARGETS {
        filter = filter.add_directive(format!("{target}=info").parse().expect("valid directive"));
    }
    filter
}

/// Installs the global subscriber. Safe to call twice (the second call does nothing).
pub fn init(format: LogFormat) {
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let ansi = std::io::stderr().is_terminal() && !under_journald;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false);
    let _ = match (format, under_journald) {
        (LogFormat::Json, _) => builder.json().try_init(),
        (LogFormat::Text, true) => builder.without_time().try_init(),
        (LogFormat::Text, false) => builder.try_init(),
    };
}
