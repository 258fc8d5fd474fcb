//! The shape of every line zoo writes: its own `tracing` events and the apps' output lines.
//! In `text` format, `name | message` in one padded column (docker compose's look), the level
//! shown when it is not INFO; in `json` format, one object per line for log shippers, with the
//! source (`zoo` or the app's name) as a field.

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

use crate::supervise::output_prefix;

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

/// Installs the subscriber; `level` is the default filter, `RUST_LOG` overrides it.
pub fn init(level: &str, format: Format) {
    let _ = FORMAT.set(format);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
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
            let mut record = Vec::with_capacity(prefix.len() + line.len() + 1);
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

fn timestamp() -> Value {
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

    #[test]
    fn text_app_lines_carry_the_padded_prefix() {
        let line = String::from_utf8(app_line("web", "stdout", b"hello")).unwrap();
        assert!(line.starts_with("web"), "{line:?}");
        assert!(line.ends_with(" | hello\n"), "{line:?}");
    }
}

/// Lines queued for the access log writer before new ones are dropped (and counted).
const ACCESS_LOG_QUEUE: usize = 4096;

/// One answered request, as the access log shows it.
pub struct AccessEntry<'a> {
    pub client: std::net::IpAddr,
    pub method: &'a str,
    pub target: &'a str,
    pub version: http::Version,
    pub status: u16,
    /// The response body's length when known up front (`Content-Length`).
    pub bytes: Option<u64>,
    /// From request head to response head.
    pub duration: std::time::Duration,
    pub route: &'a str,
    /// The app's name or the target's authority; `-` when zoo answered itself.
    pub upstream: &'a str,
    /// Time the upstream took to send its response head.
    pub upstream_time: Option<std::time::Duration>,
}

/// The optional access log: formatted on the request path, written by its own task, so that
/// a slow stdout never holds a request; when the queue is full the line is dropped and
/// counted in `zoo_access_log_dropped_total`.
#[derive(Debug)]
pub struct AccessLog {
    json: bool,
    lines: tokio::sync::mpsc::Sender<String>,
    dropped: prometheus_client::metrics::counter::Counter,
}

impl AccessLog {
    /// Starts the writer thread; `None` when the access log is off.
    #[must_use]
    pub fn start(
        format: crate::config::AccessLog,
        dropped: prometheus_client::metrics::counter::Counter,
    ) -> Option<Self> {
        let json = match format {
            crate::config::AccessLog::Off => return None,
            crate::config::AccessLog::Common => false,
            crate::config::AccessLog::Json => true,
        };
        let (lines, mut queue) = tokio::sync::mpsc::channel::<String>(ACCESS_LOG_QUEUE);
        // A thread of its own: writing to a pipe that is full blocks it, and nothing else.
        std::thread::spawn(move || {
            use std::io::Write;
            while let Some(line) = queue.blocking_recv() {
                if std::io::stdout().lock().write_all(line.as_bytes()).is_err() {
                    return;
                }
            }
        });
        Some(Self {
            json,
            lines,
            dropped,
        })
    }

    pub fn record(&self, entry: &AccessEntry<'_>) {
        let line = if self.json {
            access_json(entry)
        } else {
            access_common(entry)
        };
        if self.lines.try_send(line).is_err() {
            self.dropped.inc();
        }
    }
}

fn seconds(duration: std::time::Duration) -> String {
    format!("{:.6}", duration.as_secs_f64())
}

/// The Common Log Format (`client - - [time] "request" status bytes`), then the route, the
/// upstream and the timings in seconds.
fn access_common(entry: &AccessEntry<'_>) -> String {
    format!(
        "{} - - [{}] \"{} {} {:?}\" {} {} route={} upstream={} duration={} upstream_time={}\n",
        entry.client,
        humantime::format_rfc3339_millis(SystemTime::now()),
        entry.method,
        entry.target,
        entry.version,
        entry.status,
        entry
            .bytes
            .map_or_else(|| "-".to_owned(), |bytes| bytes.to_string()),
        entry.route,
        entry.upstream,
        seconds(entry.duration),
        entry.upstream_time.map_or_else(|| "-".to_owned(), seconds),
    )
}

fn access_json(entry: &AccessEntry<'_>) -> String {
    let mut object = Map::new();
    object.insert("ts".into(), timestamp());
    object.insert("source".into(), "access".into());
    object.insert("client".into(), entry.client.to_string().into());
    object.insert("method".into(), entry.method.into());
    object.insert("target".into(), entry.target.into());
    object.insert("version".into(), format!("{:?}", entry.version).into());
    object.insert("status".into(), entry.status.into());
    object.insert("bytes".into(), entry.bytes.into());
    object.insert("duration".into(), entry.duration.as_secs_f64().into());
    object.insert("route".into(), entry.route.into());
    object.insert("upstream".into(), entry.upstream.into());
    object.insert(
        "upstream_time".into(),
        entry.upstream_time.map(|time| time.as_secs_f64()).into(),
    );
    json_line(object)
}

#[cfg(test)]
mod access_tests {
    use super::*;

    fn entry() -> AccessEntry<'static> {
        AccessEntry {
            client: "10.0.0.7".parse().unwrap(),
            method: "GET",
            target: "/node/a?x=1",
            version: http::Version::HTTP_11,
            status: 200,
            bytes: Some(26),
            duration: std::time::Duration::from_micros(1500),
            route: "/node",
            upstream: "node",
            upstream_time: Some(std::time::Duration::from_micros(1200)),
        }
    }

    #[test]
    fn common_line_has_the_request_route_and_timings() {
        let line = access_common(&entry());
        assert!(line.starts_with("10.0.0.7 - - ["), "{line}");
        assert!(
            line.ends_with("] \"GET /node/a?x=1 HTTP/1.1\" 200 26 route=/node upstream=node duration=0.001500 upstream_time=0.001200\n"),
            "{line}"
        );
    }

    #[test]
    fn json_line_is_one_object() {
        let line = access_json(&entry());
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["status"], 200);
        assert_eq!(value["route"], "/node");
        assert_eq!(value["upstream"], "node");
        assert_eq!(value["bytes"], 26);
        assert!(line.ends_with("}\n"));
    }
}
