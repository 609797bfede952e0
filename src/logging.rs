//! Diagnostics: `tracing` to the log pane in the TUI and to stderr headless,
//! never to stdout, which carries data. `RUST_LOG` overrides the default filter.
//!
//! The log pane reads the project's own ring of lines ([`LogBuffer`]): the
//! newest [`LOG_CAP`] records of at most [`LOG_LINE_MAX`] characters each,
//! so however long a run and however chatty a feed, the pane holds at most
//! about 4 MiB (1,000 × 1,024 characters × 4 bytes). tui-logger's widget,
//! used before, could not scroll to its oldest line.
//!
//! Log messages quote feed text (error bodies, close reasons, notices), so
//! every event's fields are written through [`crate::sanitize::for_terminal`]
//! on both paths ([`event_text`]); the formatter's own colours, which are not
//! feed text, survive on a terminal.

use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};

use tracing::field::{Field, Visit};
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::sanitize;

/// Records the log pane keeps; older ones are dropped as new ones come.
pub const LOG_CAP: usize = 1_000;
/// Characters of one record kept; a longer one is cut and ends in `…`.
pub const LOG_LINE_MAX: usize = 1_024;

/// One line of the log pane: already sanitised text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub at: DateTime<Utc>,
    pub level: Level,
    pub text: String,
}

/// The records kept, oldest first, numbered: `first` is the number of the
/// oldest one, so a number keeps naming the same record while new ones
/// arrive (a scrolled view holds on to one) until it is dropped.
#[derive(Debug, Default)]
pub struct LogRing {
    records: VecDeque<LogRecord>,
    first: u64,
}

impl LogRing {
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The number of the oldest record kept.
    pub fn first_seq(&self) -> u64 {
        self.first
    }

    /// The number of the newest record (`None` when empty).
    pub fn last_seq(&self) -> Option<u64> {
        (self.first + self.records.len() as u64).checked_sub(1).filter(|_| !self.is_empty())
    }

    /// The record numbered `seq`, if still kept.
    pub fn get(&self, seq: u64) -> Option<&LogRecord> {
        let i = usize::try_from(seq.checked_sub(self.first)?).ok()?;
        self.records.get(i)
    }

    pub fn push(&mut self, mut record: LogRecord) {
        if let Some((cut, _)) = record.text.char_indices().nth(LOG_LINE_MAX - 1) {
            record.text.truncate(cut);
            record.text.push('…');
        }
        if self.records.len() == LOG_CAP {
            self.records.pop_front();
            self.first += 1;
        }
        self.records.push_back(record);
    }
}

/// The log pane's ring, shared by the tracing layer that fills it and the
/// view that draws it. A fresh one is empty (the tests fill their own).
#[derive(Debug, Clone, Default)]
pub struct LogBuffer(Arc<Mutex<LogRing>>);

impl LogBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// The ring, for one frame or one key press. A panic elsewhere while it
    /// was held leaves whole records: the lines are still worth showing.
    pub fn lock(&self) -> MutexGuard<'_, LogRing> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn push(&self, at: DateTime<Utc>, level: Level, text: impl Into<String>) {
        let text = text.into();
        let text = match sanitize::for_terminal(&text) {
            std::borrow::Cow::Borrowed(_) => text,
            std::borrow::Cow::Owned(safe) => safe,
        };
        self.lock().push(LogRecord { at, level, text });
    }

    /// The number the next record will get: a change means new lines.
    pub fn next_seq(&self) -> u64 {
        let ring = self.lock();
        ring.first + ring.records.len() as u64
    }
}

/// How stderr's lines are written in a headless run (`--log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Readable lines: time, level, message.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields.message`, …),
    /// for a log collector.
    Json,
}

/// The JSON layer for stderr: one object per event, feed text escaped
/// ([`EscapedWriter`]).
fn json_layer<S, W>(writer: W) -> impl Layer<S>
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + 'static,
{
    tracing_subscriber::fmt::layer().json().with_writer(EscapedMakeWriter(writer)).with_target(false)
}

/// The line that ends a run with an error, for `--log-format json`: shaped
/// like the layer's own lines, feed text escaped.
pub fn json_error_line(message: &str) -> String {
    let line = serde_json::json!({
        "timestamp": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "level": "ERROR",
        "fields": { "message": message },
    });
    sanitize::json_line(&line).expect("a JSON value serialises")
}

/// Installs the global subscriber. `color`: colours wanted (no `--no-color`,
/// no `NO_COLOR`); stderr gets them only when it is also a terminal. Returns
/// the log pane's buffer (empty and unused headless).
pub fn init(headless: bool, color: bool, format: LogFormat) -> LogBuffer {
    let buffer = LogBuffer::new();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,feedtop=info"));
    let quiet = tracing_subscriber::filter::filter_fn(quiet_dependencies);
    if headless && format == LogFormat::Json {
        tracing_subscriber::registry().with(filter).with(quiet).with(json_layer(std::io::stderr)).init();
    } else if headless {
        use std::io::IsTerminal;
        let ansi = color && std::io::stderr().is_terminal();
        let stderr = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_ansi(ansi)
            .fmt_fields(SafeFields);
        tracing_subscriber::registry().with(filter).with(quiet).with(stderr).init();
    } else {
        // `init` also makes the `log` bridge the `log` crate's logger, so
        // the WebSocket library's records reach the pane too.
        tracing_subscriber::registry().with(filter).with(quiet).with(TuiLog(buffer.clone())).init();
    }
    buffer
}

/// A writer for JSON lines that escapes what `serde_json` leaves raw and a
/// terminal would act on (C1 controls, DEL, bidi overrides: the characters
/// [`sanitize::is_unsafe`] names, apart from the line's own newline) as
/// `\uXXXX`. Those can only sit inside JSON strings, so the line stays the
/// same JSON. Each event is written in one call (the formatter buffers it).
pub struct EscapedWriter<W>(W);

impl<W: std::io::Write> std::io::Write for EscapedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) if text.chars().any(|c| c != '\n' && sanitize::is_unsafe(c)) => {
                let mut out = String::with_capacity(text.len() + 16);
                for c in text.chars() {
                    if c != '\n' && sanitize::is_unsafe(c) {
                        let _ = write!(out, "\\u{:04x}", c as u32);
                    } else {
                        out.push(c);
                    }
                }
                self.0.write_all(out.as_bytes())?;
            }
            _ => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// [`EscapedWriter`] for each event.
pub struct EscapedMakeWriter<M>(M);

impl<'a, M: tracing_subscriber::fmt::MakeWriter<'a>> tracing_subscriber::fmt::MakeWriter<'a> for EscapedMakeWriter<M> {
    type Writer = EscapedWriter<M::Writer>;
    fn make_writer(&'a self) -> Self::Writer {
        EscapedWriter(self.0.make_writer())
    }
}

/// The WebSocket library logs (through the `log` bridge) every handshake at
/// DEBUG with its source path, and traces the request line, which carries
/// carbon's `?token=`; the NATS client logs each server address (a user and
/// password in the URL included) at DEBUG and its CONNECT (the password or
/// token) at TRACE. Only the WebSocket library's warnings and errors are let
/// through, and none of the NATS client's (feedtop says what it reports:
/// `relay::nats`), whatever
/// `RUST_LOG` asks for: a filter layer of its own, because an `EnvFilter`
/// directive can be out-ranked by a more specific one from `RUST_LOG`.
pub fn quiet_dependencies(meta: &Metadata<'_>) -> bool {
    let target = meta.target();
    let from = |crates: &[&str]| {
        crates.iter().any(|t| target.strip_prefix(t).is_some_and(|rest| rest.is_empty() || rest.starts_with("::")))
    };
    if from(&["async_nats"]) {
        // Even its errors quote server addresses; relay::nats says them.
        return false;
    }
    !from(&["tungstenite", "tokio_tungstenite"]) || *meta.level() <= Level::WARN
}

/// An event's fields as one line of text safe for a terminal: the message as
/// written, other fields as `name=value`; the `log` bridge's own metadata
/// fields (`log.file` and so on) are left out.
pub fn event_text(fields: impl RecordFields) -> String {
    let mut text = String::new();
    fields.record(&mut FieldText(&mut text));
    match sanitize::for_terminal(&text) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(safe) => safe,
    }
}

struct FieldText<'a>(&'a mut String);

impl Visit for FieldText<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        if name.starts_with("log.") {
            return;
        }
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        let _ = if name == "message" { write!(self.0, "{value:?}") } else { write!(self.0, "{name}={value:?}") };
    }
}

/// Field formatting for the stderr layer: [`event_text`].
pub struct SafeFields;

impl<'w> FormatFields<'w> for SafeFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        writer.write_str(&event_text(fields))
    }
}

/// The log pane's layer: each event's [`event_text`] (without the `log`
/// bridge's metadata, a build machine's source paths) into the ring,
/// stamped with the time it was logged.
pub struct TuiLog(pub LogBuffer);

impl<S: Subscriber> Layer<S> for TuiLog {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        self.0.push(Utc::now(), *event.metadata().level(), event_text(event));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::fmt::MakeWriter;

    /// A `MakeWriter` that keeps what is written.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Self;
        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    const HOSTILE: &str = "HTTP 503: \x1b]0;pwned\x07\x1b[2J\u{9b}1m\r\x08\x7f\u{202E}\nWARN forged line";

    fn stderr_layer_output(ansi: bool) -> String {
        let out = Captured::default();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(out.clone())
            .with_ansi(ansi)
            .with_target(false)
            .fmt_fields(SafeFields);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!("ch/companies: {HOSTILE}");
            tracing::warn!(error = HOSTILE, "with a field");
        });
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn stderr_lines_carry_no_feed_controls_and_one_line_per_event() {
        let text = stderr_layer_output(false);
        assert_eq!(text.lines().count(), 2, "a newline in feed text does not forge a line: {text:?}");
        assert!(!text.chars().any(|c| c != '\n' && sanitize::is_unsafe(c)), "{text:?}");
        assert!(text.contains("HTTP 503: \u{FFFD}]0;pwned\u{FFFD}"), "{text:?}");
        assert!(text.contains("error="), "{text:?}");
    }

    #[test]
    fn colours_survive_on_a_terminal_but_feed_escapes_do_not() {
        let text = stderr_layer_output(true);
        assert!(text.contains("\x1b["), "the level is coloured: {text:?}");
        assert!(!text.contains("\x1b]") && !text.contains("\x1b[2J"), "{text:?}");
        assert!(!text.chars().any(|c| c == '\u{9b}' || c == '\x7f' || c == '\u{202E}' || c == '\r'), "{text:?}");
    }

    #[test]
    fn json_lines_are_json_one_per_event_with_feed_controls_escaped() {
        let out = Captured::default();
        let subscriber = tracing_subscriber::registry().with(json_layer(out.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!("ch/companies: {HOSTILE}");
            tracing::info!(feed = "carbon", "live");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text:?}");
        assert!(!text.chars().any(|c| c != '\n' && sanitize::is_unsafe(c)), "{text:?}");
        let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(first["level"], "WARN");
        assert_eq!(first["fields"]["message"], format!("ch/companies: {HOSTILE}"), "lossless");
        let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(
            (second["fields"]["message"].as_str(), second["fields"]["feed"].as_str()),
            (Some("live"), Some("carbon"))
        );
        assert!(second["timestamp"].is_string(), "{second}");
    }

    #[test]
    fn tungstenite_is_capped_at_warn() {
        use tracing::callsite::{Callsite, Identifier};
        use tracing::metadata::Kind;
        struct Cs;
        impl Callsite for Cs {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                unreachable!()
            }
        }
        static CS: Cs = Cs;
        let meta = |target: &'static str, level: Level| {
            Metadata::new(
                "e",
                target,
                level,
                None,
                None,
                None,
                tracing::field::FieldSet::new(&[], Identifier(&CS)),
                Kind::EVENT,
            )
        };
        assert!(!quiet_dependencies(&meta("tungstenite::handshake::client", Level::DEBUG)));
        assert!(!quiet_dependencies(&meta("tungstenite::handshake::client", Level::TRACE)));
        assert!(!quiet_dependencies(&meta("tokio_tungstenite", Level::INFO)));
        assert!(quiet_dependencies(&meta("tungstenite::protocol", Level::WARN)));
        assert!(quiet_dependencies(&meta("feedtop::app", Level::TRACE)));
        assert!(quiet_dependencies(&meta("tungstenitelike", Level::DEBUG)), "a prefix of a name is not the crate");
    }

    #[test]
    fn the_log_pane_gets_safe_text() {
        use ratatui::backend::TestBackend;
        use ratatui::Terminal;
        let buffer = LogBuffer::new();
        let subscriber = tracing_subscriber::registry().with(TuiLog(buffer.clone()));
        tracing::subscriber::with_default(subscriber, || tracing::error!("carbon: closed: {HOSTILE}"));
        let theme = crate::ui::Theme::new(false);
        let clock = crate::ui::clock::Clock::default();
        let args = crate::ui::panes::log::Args { buffer: &buffer, top: None, focused: false, clock: &clock };
        let mut terminal = Terminal::new(TestBackend::new(120, 8)).unwrap();
        terminal.draw(|f| crate::ui::panes::log::render(f, f.area(), args, &theme)).unwrap();
        let buf = terminal.backend().buffer();
        let text: String = buf.content().iter().map(|c| c.symbol()).collect();
        assert!(text.contains("carbon: closed: HTTP 503: \u{FFFD}]0;pwned\u{FFFD}"), "{text}");
        assert!(text.contains("\u{FFFD}WARN forged line"), "no second log line: {text}");
        assert!(!text.chars().any(sanitize::is_unsafe), "{text:?}");
    }

    #[test]
    fn the_ring_is_bounded_and_keeps_numbering() {
        let buffer = LogBuffer::new();
        let at = DateTime::<Utc>::UNIX_EPOCH;
        for i in 0..LOG_CAP + 5 {
            buffer.push(at, Level::INFO, format!("line {i}"));
        }
        buffer.push(at, Level::WARN, "x".repeat(LOG_LINE_MAX * 3));
        let ring = buffer.lock();
        assert_eq!(ring.len(), LOG_CAP);
        assert_eq!(ring.first_seq(), 6);
        assert_eq!(ring.last_seq(), Some(LOG_CAP as u64 + 5));
        assert_eq!(ring.get(6).unwrap().text, "line 6");
        assert!(ring.get(5).is_none(), "dropped");
        let long = &ring.get(LOG_CAP as u64 + 5).unwrap().text;
        assert_eq!(long.chars().count(), LOG_LINE_MAX);
        assert!(long.ends_with('…'));
        assert_eq!(LogRing::default().last_seq(), None);
    }
}
