//! Log setup: tracing to stderr, `RUST_LOG` honoured, shaped for journald.
//!
//! Under journald (`JOURNAL_STREAM` set) lines carry no timestamp of their own (journald adds
//! one); colours only when stderr is a terminal; `--log-format json` for log shippers. The
//! HTTP stack is held at `info` whatever `RUST_LOG` says: its debug lines print URLs, and the
//! result URL carries the token. The last ERROR line is also kept for `status`.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

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
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false);
    let fmt: Box<dyn Layer<_> + Send + Sync> = match (format, under_journald) {
        (LogFormat::Json, _) => Box::new(fmt.json()),
        (LogFormat::Text, true) => Box::new(fmt.without_time()),
        (LogFormat::Text, false) => Box::new(fmt),
    };
    let _ = tracing_subscriber::registry()
        .with(filter())
        .with(fmt)
        .with(LastError)
        .try_init();
}

static LAST_ERROR: Mutex<Option<(SystemTime, String)>> = Mutex::new(None);

/// The most recent ERROR log line and when it was logged.
pub fn last_error() -> Option<(SystemTime, String)> {
    LAST_ERROR.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Keeps the last ERROR event's text.
struct LastError;

impl<S: Subscriber> Layer<S> for LastError {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if *event.metadata().level() != Level::ERROR {
            return;
        }
        let mut text = EventText::default();
        event.record(&mut text);
        let line = if text.fields.is_empty() {
            text.message
        } else {
            format!("{}{}", text.message, text.fields)
        };
        *LAST_ERROR.lock().unwrap_or_else(|p| p.into_inner()) = Some((SystemTime::now(), line));
    }
}

#[derive(Default)]
struct EventText {
    message: String,
    fields: String,
}

impl Visit for EventText {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }
}
