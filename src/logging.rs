//! Log setup: tracing to stderr, `RUST_LOG` honoured, shaped for journald.
//!
//! Under journald (`JOURNAL_STREAM` set) lines carry no timestamp of their own (journald adds
//! one); colours only when stderr is a terminal; `--log-format json` for log shippers. The
//! HTTP stack is held at `info` whatever `RUST_LOG` says: its debug lines print URLs, and the
//! result URL carries the token. The last ERROR line is also kept for `status`.
//!
//! Text lines escape control characters in every field and message ([`escape_controls`]):
//! a file name (or a message from the API) with a newline cannot forge a log line. JSON
//! lines are escaped by JSON itself.
//!
//! [`exit_on_panic`] makes any panic outside a [`contained`] region log and end the process
//! with a non-zero status, so no task can die while the daemon goes on looking healthy.

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
        (LogFormat::Text, true) => Box::new(fmt.fmt_fields(escaped_fields()).without_time()),
        (LogFormat::Text, false) => Box::new(fmt.fmt_fields(escaped_fields())),
    };
    let _ = tracing_subscriber::registry()
        .with(filter())
        .with(fmt)
        .with(LastError)
        .try_init();
}

/// Text-log fields as the default formatter writes them (`message`, then `name=value`), with
/// control characters escaped.
fn escaped_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        let raw = format!("{value:?}");
        let text = escape_controls(&raw);
        if field.name() == "message" {
            writer.write_str(&text)
        } else {
            write!(writer, "{}={text}", field.name())
        }
    })
    .delimited(" ")
}

/// `text` with every control character (newline, carriage return, escape, tab, C1 controls)
/// and the Unicode line and paragraph separators written as Rust escapes (`\n`, `\u{1b}`),
/// so that it stays on one line and cannot drive a terminal.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    let needs = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    if !text.contains(needs) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
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
        let line = escape_controls(&line).into_owned();
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

// ---------------------------------------------------------------------------------------
// Panics

/// Exit status of a process ended by a panic (the same as Rust's own).
pub const PANIC_EXIT_CODE: i32 = 101;

thread_local! {
    /// Set while this thread runs code whose panic is caught and handled (see [`contained`]).
    static CONTAINED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` as a region whose panic the caller catches and handles itself (a
/// `spawn_blocking` whose `JoinError` is looked at, a `catch_unwind`): the panic hook of
/// [`exit_on_panic`] logs such a panic but does not end the process.
pub fn contained<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            CONTAINED.with(|c| c.set(self.0));
        }
    }
    let _reset = Reset(CONTAINED.with(|c| c.replace(true)));
    f()
}

/// Installs the process-wide panic hook of the binary: a panic anywhere (any task, any
/// thread) is logged at ERROR with where it happened, then the process exits with status
/// [`PANIC_EXIT_CODE`] (systemd restarts it; the journal resumes every file). A task that
/// died would otherwise leave its files stuck while the process looks healthy. Panics inside
/// [`contained`] are only logged. Not for the library's in-process users (tests, the demo
/// running inside another program): they keep Rust's default behaviour.
pub fn exit_on_panic() {
    static EXITING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    std::panic::set_hook(Box::new(|info| {
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        let payload = redact_token(&payload);
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_string();
        if CONTAINED.with(|c| c.get()) {
            tracing::error!(
                "a check panicked at {location} (thread {thread}): {payload}; it is handled, the daemon carries on"
            );
            return;
        }
        if EXITING.swap(true, std::sync::atomic::Ordering::SeqCst) {
            // Another thread is already ending the process.
            loop {
                std::thread::park();
            }
        }
        tracing::error!(
            "panicked at {location} (thread {thread}): {payload}; stopping with status {PANIC_EXIT_CODE} so that the service is restarted and the journal resumes every file"
        );
        eprintln!(
            "beorg-hotfolder: panicked at {location}: {}; exiting with status {PANIC_EXIT_CODE}",
            escape_controls(&payload)
        );
        std::process::exit(PANIC_EXIT_CODE);
    }));
}

/// A panic message is text nobody vetted: every URL in it is shown as
/// [`crate::redact::urls_in`] shows it, and a `token=` outside one is cut out too.
fn redact_token(text: &str) -> String {
    let text = crate::redact::urls_in(text);
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("token=") {
        let (head, tail) = rest.split_at(at + "token=".len());
        out.push_str(head);
        out.push_str("***");
        let end = tail
            .find(|c: char| c == '&' || c == '"' || c == '\'' || c.is_whitespace() || c == ')')
            .unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finding 12 (issue 8): a name with a newline printed a forged line of its own.
    #[test]
    fn control_characters_are_escaped() {
        let forged =
            "a.png\n2026-01-01T00:00:00Z ERROR forged (HTTP 402)\r\u{1b}[31m\u{85}\u{2028}";
        let escaped = escape_controls(forged);
        assert!(
            !escaped.chars().any(|c| c.is_control() || c == '\u{2028}'),
            "{escaped}"
        );
        assert!(escaped.contains("a.png\\n2026"), "{escaped}");
        assert!(escaped.contains("\\u{1b}"), "{escaped}");
        assert_eq!(escape_controls("Паспорт 1.png"), "Паспорт 1.png");
    }

    #[test]
    fn a_token_in_a_panic_message_is_cut_out() {
        assert_eq!(
            redact_token("GET http://h/api/document/result/1?token=SECRET&x=1 failed"),
            "GET http://h/api/document/result/1?token=***&x=1 failed"
        );
        assert_eq!(redact_token("no secret"), "no secret");
        assert_eq!(
            redact_token("cannot connect to redis://beorg:S3CRET@r:6379/0?password=S3CRET"),
            "cannot connect to redis://***@r:6379/0?password=***"
        );
    }
}
