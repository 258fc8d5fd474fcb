//! The shape of every line zoo writes: its own `tracing` events and the apps' output lines.
//! In `text` format, `name | message` in one padded column (docker compose's look), the level
//! shown when it is not INFO; in `json` format, one object per line for log shippers, with the
//! source (`zoo` or the app's name) as a field.

// Input (the config, /proc, what apps print) drives the arithmetic here: no silent overflow,
// no lossy `as` (docs/design.md, "Arithmetic on input, and the fuzz suite").
#![deny(clippy::arithmetic_side_effects, clippy::as_conversions)]

use std::fmt;
use std::sync::OnceLock;
use std::time::SystemTime;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

mod access;
mod prefix;

pub use access::{AccessEntry, AccessLog};
use prefix::prefix as output_prefix;
pub use prefix::reserve_name_width;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `name | message`, for people.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

static FORMAT: OnceLock<Format> = OnceLock::new();

/// The format chosen at start; `text` until [`init`] ran (unit tests, `zoo check`).
#[must_use]
pub fn format() -> Format {
    FORMAT.get().copied().unwrap_or(Format::Text)
}

/// The libraries whose own log lines are shown only at `error` unless `RUST_LOG` says
/// otherwise: they log per handshake or per connection (rustls warns on every ClientHello that
/// names an IP address, as wrk and many health checkers send: 278,000 lines in one benchmark),
/// and zoo reports what matters of their errors itself, once per request at most.
const QUIET_LIBRARIES: &str =
    "rustls=error,tokio_rustls=error,hyper=error,hyper_util=error,h2=error";

/// The filter used without `RUST_LOG`: zoo's lines from `level` up, the libraries' errors.
fn default_filter(level: &str) -> EnvFilter {
    EnvFilter::new(format!("{level},{QUIET_LIBRARIES}"))
}

/// Installs the subscriber; `level` is the default filter, `RUST_LOG` overrides it.
pub fn init(level: &str, format: Format) {
    let _ = FORMAT.set(format);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .event_format(ZooFormat)
        .init();
}

/// One output line of an app (without its newline) as zoo writes it, newline included.
#[must_use]
pub fn app_line(app: &str, stream: &'static str, line: &[u8]) -> Vec<u8> {
    match format() {
        Format::Text => {
            let prefix = output_prefix(app);
            let mut record =
                Vec::with_capacity(prefix.len().saturating_add(line.len()).saturating_add(1));
            record.extend_from_slice(prefix.as_bytes());
            record.extend_from_slice(line);
            record.push(b'\n');
            record
        }
        Format::Json => {
            let mut object = Map::new();
            object.insert("ts".into(), timestamp());
            object.insert("source".into(), app.into());
            object.insert("stream".into(), stream.into());
            object.insert("message".into(), String::from_utf8_lossy(line).into());
            json_line(object).into_bytes()
        }
    }
}

pub(crate) fn timestamp() -> Value {
    humantime::format_rfc3339_millis(SystemTime::now())
        .to_string()
        .into()
}

fn json_line(object: Map<String, Value>) -> String {
    let mut line = Value::Object(object).to_string();
    line.push('\n');
    line
}

struct ZooFormat;

impl<S, N> FormatEvent<S, N> for ZooFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = *event.metadata().level();
        match format() {
            Format::Text => {
                writer.write_str(&output_prefix("zoo"))?;
                if level != Level::INFO {
                    write!(writer, "{level}: ")?;
                }
                ctx.field_format().format_fields(writer.by_ref(), event)?;
                writeln!(writer)
            }
            Format::Json => {
                let mut object = Map::new();
                object.insert("ts".into(), timestamp());
                object.insert("source".into(), "zoo".into());
                object.insert("level".into(), level.as_str().into());
                event.record(&mut JsonFields(&mut object));
                writer.write_str(&json_line(object))
            }
        }
    }
}

/// Collects an event's fields (`message` among them) into a JSON object.
struct JsonFields<'a>(&'a mut Map<String, Value>);

impl Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer the test reads back: what a subscriber wrote, shared.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn library_lines_below_error_are_off_by_default() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(default_filter("info"))
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "rustls::server::hs", "Illegal SNI extension");
            tracing::warn!(target: "hyper::proto::h1", "library warning");
            tracing::info!(target: "h2::codec", "library info");
            tracing::error!(target: "rustls::conn", "library error");
            tracing::info!(target: "zoo::proxy", "zoo info");
            tracing::debug!(target: "zoo::proxy", "zoo debug");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let kept: Vec<&str> = [
            "Illegal SNI",
            "library warning",
            "library info",
            "library error",
        ]
        .into_iter()
        .chain(["zoo info", "zoo debug"])
        .filter(|message| text.contains(message))
        .collect();
        assert_eq!(kept, ["library error", "zoo info"], "{text}");
    }

    #[test]
    fn text_app_lines_carry_the_padded_prefix() {
        let line = String::from_utf8(app_line("web", "stdout", b"hello")).unwrap();
        assert!(line.starts_with("web"), "{line:?}");
        assert!(line.ends_with(" | hello\n"), "{line:?}");
    }
}
