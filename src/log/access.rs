//! The access log: one line per answered request, in the common log format plus zoo's route
//! and timings, or as one JSON object. Lines go through a bounded queue to a writer task, so
//! a blocked stdout drops (and counts) lines instead of stalling requests.

use std::time::SystemTime;

use serde_json::Map;

use super::{json_line, timestamp};

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
    /// The request's ID; `None` with `request_id = false`.
    pub request_id: Option<&'a str>,
}

/// The access log writer: lines are formatted on the request path (in the format the
/// runtime in use names, so a reload switches it) and written by a thread of its own, so that
/// a slow stdout never holds a request; when the queue is full the line is dropped and
/// counted in `zoo_access_log_dropped_total`.
#[derive(Debug)]
pub struct AccessLog {
    lines: tokio::sync::mpsc::Sender<String>,
    dropped: prometheus_client::metrics::counter::Counter,
}

impl AccessLog {
    /// Starts the writer thread. It waits on an empty queue while the access log is off.
    #[must_use]
    pub fn start(dropped: prometheus_client::metrics::counter::Counter) -> Self {
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
        Self { lines, dropped }
    }

    /// Queues `entry` as a line of `format`; nothing when the access log is off.
    pub fn record(&self, format: crate::config::AccessLog, entry: &AccessEntry<'_>) {
        let line = match format {
            crate::config::AccessLog::Off => return,
            crate::config::AccessLog::Common => access_common(entry),
            crate::config::AccessLog::Json => access_json(entry),
        };
        if self.lines.try_send(line).is_err() {
            self.dropped.inc();
        }
    }
}

fn seconds(duration: std::time::Duration) -> String {
    format!("{:.6}", duration.as_secs_f64())
}

/// Text as nginx writes it into a log line: `"`, `\`, control bytes and every byte outside
/// printable ASCII as `\xHH`, so that what a client sent (a target with `"` in it) cannot end
/// a field and forge the ones after it, nor a line.
struct Escaped<'a>(&'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.bytes().position(needs_escape) {
            let (plain, from) = rest.split_at(at);
            out.write_str(plain)?;
            // The byte may start a multi-byte character: each byte of it is written escaped.
            let width = from.chars().next().map_or(1, char::len_utf8);
            let (escaped, after) = from.split_at(width);
            for byte in escaped.bytes() {
                write!(out, "\\x{byte:02X}")?;
            }
            rest = after;
        }
        out.write_str(rest)
    }
}

fn needs_escape(byte: u8) -> bool {
    byte == b'"' || byte == b'\\' || !(0x20..0x7f).contains(&byte)
}

/// The Common Log Format (`client - - [time] "request" status bytes`), then the route, the
/// upstream and the timings in seconds. Every text field is [`Escaped`].
fn access_common(entry: &AccessEntry<'_>) -> String {
    format!(
        "{} - - [{}] \"{} {} {:?}\" {} {} route={} upstream={} duration={} upstream_time={} \
         request_id={}\n",
        entry.client,
        humantime::format_rfc3339_millis(SystemTime::now()),
        Escaped(entry.method),
        Escaped(entry.target),
        entry.version,
        entry.status,
        entry
            .bytes
            .map_or_else(|| "-".to_owned(), |bytes| bytes.to_string()),
        Escaped(entry.route),
        Escaped(entry.upstream),
        seconds(entry.duration),
        entry.upstream_time.map_or_else(|| "-".to_owned(), seconds),
        entry.request_id.unwrap_or("-"),
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
    object.insert("request_id".into(), entry.request_id.into());
    json_line(object)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

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
            request_id: Some("0190b5d2-7c41-7abc-9def-0123456789ab"),
        }
    }

    #[test]
    fn common_line_has_the_request_route_and_timings() {
        let line = access_common(&entry());
        assert!(line.starts_with("10.0.0.7 - - ["), "{line}");
        assert!(
            line.ends_with("] \"GET /node/a?x=1 HTTP/1.1\" 200 26 route=/node upstream=node duration=0.001500 upstream_time=0.001200 request_id=0190b5d2-7c41-7abc-9def-0123456789ab\n"),
            "{line}"
        );
    }

    #[test]
    fn common_line_escapes_what_could_forge_a_field_as_nginx_does() {
        for (target, written) in [
            ("/r/x\"_200_route=/admin", "/r/x\\x22_200_route=/admin"),
            ("/a\\b", "/a\\x5Cb"),
            ("/a\nb\r\tc\u{7f}", "/a\\x0Ab\\x0D\\x09c\\x7F"),
            ("/caf\u{e9}", "/caf\\xC3\\xA9"),
            ("/\u{1F600}!", "/\\xF0\\x9F\\x98\\x80!"),
        ] {
            let line = access_common(&AccessEntry { target, ..entry() });
            assert!(
                line.contains(&format!("\"GET {written} HTTP/1.1\" 200 ")),
                "{target:?}: {line}"
            );
            assert_eq!(line.matches('"').count(), 2, "{line}");
            assert_eq!(line.lines().count(), 1, "{line}");
        }
        let route = access_common(&AccessEntry {
            route: "/\"x",
            upstream: "a b\"",
            ..entry()
        });
        assert!(
            route.contains("route=/\\x22x upstream=a b\\x22 "),
            "{route}"
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
        assert_eq!(value["request_id"], "0190b5d2-7c41-7abc-9def-0123456789ab");
        assert!(line.ends_with("}\n"));
    }
}
