//! The differential test of issue 6: the same raw requests (ambiguous framing, odd whitespace and
//! line ends, duplicate and missing headers, long lines, odd paths, hop-by-hop and forwarding
//! headers) sent through zoo, nginx and caddy, each in front of its own recording upstream.
//! For every case it prints what each proxy answered the client and what reached the upstream,
//! and asserts zoo's side: what both peers refuse zoo refuses too, what zoo forwards is
//! unambiguous (one framing, the body the client meant, no hop-by-hop header), and where zoo's
//! outcome differs from both peers the case says why (the same reasons are in docs/proxy.md).
//!
//! The peers are configured as a user typically would: nginx with `proxy_http_version 1.1`, an
//! upstream keepalive pool and the usual `Host`/`X-Real-IP`/`X-Forwarded-*` lines; caddy with a
//! bare `reverse_proxy`. Each runs in its own temp dir (config, logs, pid, temp files, caddy's
//! XDG dirs) on a free port. Every socket read has a timeout; the three run in parallel.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::peers::{Daemon, require, temp_dir};
use crate::util::{self, READY_DEADLINE, Zoo};

/// How long a proxy may take to answer one case (none of them should need more than a few ms).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);
/// After an answer: how long to wait for the proxy to close the connection (or not).
const CLOSE_PROBE: Duration = Duration::from_millis(100);
/// The upstream counts as settled once nothing arrived for this long.
const QUIET: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------------------------
// The recording upstream: a raw TCP server that keeps the exact bytes of every request.

/// One request as it reached an upstream connection.
#[derive(Clone, Debug)]
struct Arrived {
    bytes: Vec<u8>,
    /// False when the connection ended (or the case ended) before the request was complete.
    complete: bool,
}

#[derive(Default)]
struct Log {
    arrived: Vec<Arrived>,
    /// Per connection: the bytes of the request still arriving, and how many were reported.
    pending: HashMap<usize, (Vec<u8>, usize)>,
    /// When a byte last arrived, so a case can wait for the upstream to go quiet.
    last_change: Option<Instant>,
}

/// Answers every complete request with a fixed `200 ok` on a kept-alive connection.
struct Recorder {
    port: u16,
    log: Arc<Mutex<Log>>,
}

impl Recorder {
    fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the recording upstream");
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Log::default()));
        let shared = Arc::clone(&log);
        thread::spawn(move || {
            for (id, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { return };
                let log = Arc::clone(&shared);
                thread::spawn(move || record_connection(id, stream, &log));
            }
        });
        Recorder { port, log }
    }

    /// Everything that arrived since the last call, once the upstream has been quiet for
    /// [`QUIET`] and `since` is that long ago (at most 1 s): a proxy may still be writing to
    /// its upstream after it answered the client. A request still arriving is reported as
    /// incomplete.
    fn take(&self, since: Instant) -> Vec<Arrived> {
        util::poll_until(Duration::from_secs(1), || {
            let log = self.log.lock().unwrap();
            since.elapsed() >= QUIET && log.last_change.is_none_or(|at| at.elapsed() >= QUIET)
        });
        let mut log = self.log.lock().unwrap();
        let mut arrived = std::mem::take(&mut log.arrived);
        for (bytes, reported) in log.pending.values_mut() {
            if bytes.len() > *reported {
                arrived.push(Arrived {
                    bytes: bytes.clone(),
                    complete: false,
                });
                *reported = bytes.len();
            }
        }
        arrived
    }
}

fn record_connection(id: usize, mut stream: TcpStream, log: &Mutex<Log>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => 0,
            Ok(n) => n,
        };
        let mut answers = 0;
        {
            let mut log = log.lock().unwrap();
            log.last_change = Some(Instant::now());
            let Log {
                arrived, pending, ..
            } = &mut *log;
            let (bytes, reported) = pending.entry(id).or_default();
            if n == 0 {
                if bytes.len() > *reported {
                    arrived.push(Arrived {
                        bytes: std::mem::take(bytes),
                        complete: false,
                    });
                }
                pending.remove(&id);
                return;
            }
            bytes.extend_from_slice(&buf[..n]);
            while let Some(len) = request_len(bytes) {
                arrived.push(Arrived {
                    bytes: bytes.drain(..len).collect(),
                    complete: true,
                });
                *reported = 0;
                answers += 1;
            }
        }
        for _ in 0..answers {
            if stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .is_err()
            {
                return;
            }
        }
    }
}

/// The length of the first complete request in `bytes` (head and body as its framing says),
/// or `None` while it is incomplete or its chunked body is malformed.
fn request_len(bytes: &[u8]) -> Option<usize> {
    let head_end = find(bytes, b"\r\n\r\n")? + 4;
    let head = Head::parse(&bytes[..head_end]);
    if head.te.iter().any(|te| te.eq_ignore_ascii_case("chunked")) {
        let (_, used) = dechunk(&bytes[head_end..])?;
        Some(head_end + used)
    } else {
        let length: usize = head.cl.first().map_or(Some(0), |cl| cl.parse().ok())?;
        (bytes.len() >= head_end + length).then_some(head_end + length)
    }
}

/// The body of a chunked message and how many bytes it took (trailers included), or `None`.
fn dechunk(mut rest: &[u8]) -> Option<(Vec<u8>, usize)> {
    let total = rest.len();
    let mut body = Vec::new();
    loop {
        let line_end = find(rest, b"\r\n")?;
        let size = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            // Trailer fields, then the empty line.
            loop {
                let line_end = find(rest, b"\r\n")?;
                rest = &rest[line_end + 2..];
                if line_end == 0 {
                    return Some((body, total - rest.len()));
                }
            }
        }
        if rest.len() < size + 2 || &rest[size..size + 2] != b"\r\n" {
            return None;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A request head as an upstream got it: the request line and the fields, in order.
struct Head {
    line: String,
    /// Names lower-cased, values as sent.
    fields: Vec<(String, String)>,
    cl: Vec<String>,
    te: Vec<String>,
}

impl Head {
    fn parse(head: &[u8]) -> Head {
        let text = String::from_utf8_lossy(head);
        let mut lines = text.split("\r\n");
        let line = lines.next().unwrap_or_default().to_owned();
        let fields: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        let values = |wanted: &str| -> Vec<String> {
            fields
                .iter()
                .filter(|(name, _)| name == wanted)
                .flat_map(|(_, value)| value.split(',').map(|v| v.trim().to_owned()))
                .collect()
        };
        Head {
            cl: values("content-length"),
            te: values("transfer-encoding"),
            line,
            fields,
        }
    }

    fn count(&self, name: &str) -> usize {
        self.fields.iter().filter(|(n, _)| n == name).count()
    }
}

/// A forwarded request, normalised for comparison between the proxies.
struct Forwarded {
    head: Head,
    complete: bool,
    /// `cl`, `chunked`, `none`, or the framing headers themselves when there is more than one.
    framing: String,
    /// The body as its framing delimits it (de-chunked).
    body: Vec<u8>,
}

/// Fields a proxy adds or rewrites by design (its own connection handling, addresses, version
/// names): left out of the comparison. `X-Forwarded-For`, `X-Forwarded-Host` and `Forwarded`
/// stay in: what happens to a client's claims in them is one of the cases.
const ADDED_BY_DESIGN: [&str; 6] = [
    "connection",
    "via",
    "x-forwarded-proto",
    "x-real-ip",
    "user-agent",
    "accept-encoding",
];

impl Forwarded {
    /// `upstream` is the recorder's `host:port`: a `Host` naming it is written `(upstream)`.
    /// zoo's route is a `proxy` route, which sends the target's authority by design
    /// (docs/config.md), where nginx (`proxy_set_header Host $host`) and caddy pass the client's.
    fn new(arrived: &Arrived, upstream: &str) -> Forwarded {
        let head_end = find(&arrived.bytes, b"\r\n\r\n").map_or(arrived.bytes.len(), |at| at + 4);
        let mut head = Head::parse(&arrived.bytes[..head_end]);
        for (name, value) in &mut head.fields {
            if name == "host" && value == upstream {
                "(upstream)".clone_into(value);
            }
        }
        let rest = &arrived.bytes[head_end..];
        let (framing, body) = match (head.cl.as_slice(), head.te.as_slice()) {
            ([], []) => ("none".to_owned(), Vec::new()),
            ([_], []) => ("cl".to_owned(), rest.to_vec()),
            ([], [te]) if te.eq_ignore_ascii_case("chunked") => (
                "chunked".to_owned(),
                dechunk(rest).map_or_else(|| rest.to_vec(), |(body, _)| body),
            ),
            (cl, te) => (format!("cl={cl:?} te={te:?}"), rest.to_vec()),
        };
        Forwarded {
            head,
            complete: arrived.complete,
            framing,
            body,
        }
    }

    fn unambiguous(&self) -> bool {
        matches!(self.framing.as_str(), "none" | "cl" | "chunked") && self.head.count("host") == 1
    }

    /// One line: request line, the fields that matter, framing and body.
    fn summary(&self) -> String {
        let fields: Vec<String> = self
            .head
            .fields
            .iter()
            .filter(|(name, _)| !ADDED_BY_DESIGN.contains(&name.as_str()))
            .map(|(name, value)| format!("{name}: {}", clip(value)))
            .collect();
        format!(
            "{}{} [{}] {} body={}",
            if self.complete { "" } else { "(cut) " },
            clip(&self.head.line),
            fields.join(" | "),
            self.framing,
            clip(&String::from_utf8_lossy(&self.body)),
        )
    }
}

/// `text` escaped, and shortened in the middle when long.
fn clip(text: &str) -> String {
    let escaped = text.escape_debug().to_string();
    if escaped.chars().count() <= 60 {
        return escaped;
    }
    let start: String = escaped.chars().take(30).collect();
    let end: String = escaped.chars().skip(escaped.chars().count() - 12).collect();
    format!("{start}…({} chars)…{end}", escaped.chars().count())
}

// ---------------------------------------------------------------------------------------------
// The client side: one raw request on a fresh connection.

/// What the client saw.
#[derive(Debug)]
struct Answer {
    /// The final status, or `None` when the proxy closed or timed out without one.
    status: Option<u16>,
    /// Interim (1xx) statuses before it.
    interim: Vec<u16>,
    /// What happened after the response: `close`, `open`, or `more` (bytes beyond it).
    after: &'static str,
}

fn exchange(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut answer = Answer {
        status: None,
        interim: Vec::new(),
        after: "open",
    };
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, ANSWER_TIMEOUT) else {
        answer.after = "refused";
        return answer;
    };
    let _ = stream.set_read_timeout(Some(ANSWER_TIMEOUT));
    let _ = stream.set_write_timeout(Some(ANSWER_TIMEOUT));
    // A proxy may answer and close before it has read a long request: read what it says anyway.
    let _ = stream.write_all(request);
    let mut buf = Vec::new();
    let mut eof = false;
    let read_more = |stream: &mut TcpStream, buf: &mut Vec<u8>| -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    };
    // The head, skipping interim responses.
    let (status, head) = loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = Head::parse(&buf[..end + 4]);
            buf.drain(..end + 4);
            let status: Option<u16> = head
                .line
                .split(' ')
                .nth(1)
                .and_then(|code| code.parse().ok());
            match status {
                Some(code) if (100..200).contains(&code) => answer.interim.push(code),
                Some(code) => break (code, head),
                None => return answer,
            }
        } else if !read_more(&mut stream, &mut buf) {
            answer.after = "close";
            return answer;
        }
    };
    answer.status = Some(status);
    // The body, as the response frames it; without framing it runs to the end of the connection.
    let done = |buf: &Vec<u8>| -> bool {
        if head.te.iter().any(|te| te.eq_ignore_ascii_case("chunked")) {
            dechunk(buf).is_some()
        } else if let Some(length) = head.cl.first().and_then(|cl| cl.parse::<usize>().ok()) {
            buf.len() >= length
        } else {
            status == 204 || status == 304
        }
    };
    while !done(&buf) {
        if !read_more(&mut stream, &mut buf) {
            eof = true;
            break;
        }
    }
    if eof {
        answer.after = "close";
        return answer;
    }
    let _ = stream.set_read_timeout(Some(CLOSE_PROBE));
    let mut probe = [0u8; 1024];
    answer.after = match stream.read(&mut probe) {
        Ok(0) => "close",
        Ok(_) => "more",
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            "open"
        }
        Err(_) => "close",
    };
    answer
}

// ---------------------------------------------------------------------------------------------
// The proxies.

fn start_nginx(upstream: u16) -> Daemon {
    util::peers::nginx("zoo-diff-nginx-", |_, port| {
        format!(
            "    upstream app {{
        server 127.0.0.1:{upstream};
        keepalive 8;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Host $host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
        }}
    }}
"
        )
    })
}

fn start_caddy(upstream: u16) -> Daemon {
    let caddy = require("caddy");
    let dir = temp_dir("zoo-diff-caddy-");
    let port = util::free_port();
    let caddyfile = format!(
        "{{\n\tadmin off\n\tauto_https off\n}}\n\n\
         http://:{port} {{\n\tbind 127.0.0.1\n\treverse_proxy 127.0.0.1:{upstream}\n}}\n"
    );
    let path = dir.path().join("Caddyfile");
    std::fs::write(&path, caddyfile).unwrap();
    let mut command = Command::new(caddy);
    command
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&path)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .env("XDG_DATA_HOME", dir.path().join("data"));
    Daemon::spawn("caddy", command, port, dir)
}

fn start_zoo(upstream: u16) -> Zoo {
    // Without request IDs: the forwarded heads are compared with nginx's and caddy's, which
    // add none (zoo's are tested in front_door.rs).
    let config = format!(
        "listen = \"127.0.0.1:0\"\nrequest_id = false\n\n[routes]\n\"/\" = {{ proxy = \"http://127.0.0.1:{upstream}\" }}\n"
    );
    let mut zoo = Zoo::start(&config, &[]);
    zoo.wait_ready("/", READY_DEADLINE);
    zoo
}

// ---------------------------------------------------------------------------------------------
// The cases.

struct Case {
    name: &'static str,
    raw: Vec<u8>,
    /// The body the client meant (RFC 9112's reading of the framing): if zoo forwards the
    /// request, the upstream must get exactly this.
    meant: &'static [u8],
    /// Why zoo deliberately differs from both peers here (docs/proxy.md says it too): marked
    /// `*` in the table.
    zoo_differs: Option<&'static str>,
}

fn case(name: &'static str, raw: impl Into<Vec<u8>>, meant: &'static [u8]) -> Case {
    Case {
        name,
        raw: raw.into(),
        meant,
        zoo_differs: None,
    }
}

impl Case {
    fn differs(mut self, why: &'static str) -> Case {
        self.zoo_differs = Some(why);
        self
    }
}

/// The case whose forwarded host is checked: RFC 9112 3.2.2 says the absolute-form target's
/// authority is used and the Host field ignored; nginx and caddy send `y` on, as zoo must.
const ABSOLUTE_FORM: &str = "absolute-form";
const CHUNKED_HELLO: &str = "5\r\nhello\r\n0\r\n\r\n";
const TE_CHUNKED: &str = "Transfer-Encoding: chunked\r\n";

/// `POST /d/NAME` with `fields` and `body`, meant to carry `hello`.
fn post(name: &'static str, fields: &str, body: &str) -> Case {
    let raw = format!("POST /d/{name} HTTP/1.1\r\nHost: z\r\n{fields}\r\n{body}");
    case(name, raw, b"hello")
}

/// A chunked `POST /d/NAME` whose chunked `body` is meant to carry `hello`.
fn chunked(name: &'static str, body: &str) -> Case {
    post(name, TE_CHUNKED, body)
}

/// `GET /d/PATH` named `name`, with `fields`.
fn get_path(name: &'static str, path: &str, fields: &str) -> Case {
    case(
        name,
        format!("GET /d/{path} HTTP/1.1\r\nHost: z\r\n{fields}\r\n"),
        b"",
    )
}

/// `GET /d/NAME` with `fields`.
fn get(name: &'static str, fields: &str) -> Case {
    get_path(name, name, fields)
}

/// A bodiless request written out whole.
fn raw(name: &'static str, raw: &str) -> Case {
    case(name, raw, b"")
}

fn cases() -> Vec<Case> {
    let te = TE_CHUNKED;
    vec![
        get("clean-get", ""),
        post("clean-cl", "Content-Length: 5\r\n", "hello"),
        chunked("clean-chunked", CHUNKED_HELLO),
        // Both framings, both orders; the Content-Length counts the chunked bytes, so either
        // reading ends at the same byte and only the body differs. RFC 9112 6.3: chunked wins
        // on hyper's engine (pinned in ZOO_FORWARDS); zoo's engine answers 400, as nginx does
        // ([`REFUSED_BY_ZOO_ENGINE`]).
        post(
            "cl+te",
            &format!("Content-Length: 15\r\n{te}"),
            CHUNKED_HELLO,
        ),
        post(
            "te+cl",
            &format!("{te}Content-Length: 15\r\n"),
            CHUNKED_HELLO,
        ),
        // The smuggling shape: by Content-Length the body is `5\r\nh` and `ello...` a second
        // request; by chunked it is `hello`.
        post(
            "cl+te-short",
            &format!("Content-Length: 4\r\n{te}"),
            CHUNKED_HELLO,
        ),
        post(
            "cl-dup-equal",
            "Content-Length: 5\r\nContent-Length: 5\r\n",
            "hello",
        ),
        post(
            "cl-dup-differ",
            "Content-Length: 5\r\nContent-Length: 6\r\n",
            "hello!",
        ),
        post("cl-list-equal", "Content-Length: 5, 5\r\n", "hello"),
        post("cl-plus-sign", "Content-Length: +5\r\n", "hello"),
        post(
            "te-chunked-identity",
            "Transfer-Encoding: chunked, identity\r\n",
            CHUNKED_HELLO,
        ),
        post(
            "te-identity-chunked",
            "Transfer-Encoding: identity, chunked\r\n",
            CHUNKED_HELLO,
        ),
        post(
            "te-xchunked",
            "Transfer-Encoding: xchunked\r\n",
            CHUNKED_HELLO,
        ),
        post(
            "te-Chunked-case",
            "Transfer-Encoding: Chunked\r\n",
            CHUNKED_HELLO,
        ),
        post("te-twice", &format!("{te}{te}"), CHUNKED_HELLO),
        post(
            "te-vtab",
            "Transfer-Encoding: \x0bchunked\r\n",
            CHUNKED_HELLO,
        ),
        post(
            "te-space-before-colon",
            "Transfer-Encoding : chunked\r\n",
            CHUNKED_HELLO,
        ),
        case(
            "te-http10",
            format!("POST /d/te-http10 HTTP/1.0\r\nHost: z\r\n{te}\r\n{CHUNKED_HELLO}"),
            b"hello",
        ),
        chunked("chunk-size-invalid", "zz\r\nhello\r\n0\r\n\r\n"),
        chunked(
            "chunk-size-overflow",
            "10000000000000005\r\nhello\r\n0\r\n\r\n",
        ),
        chunked("chunk-size-0x", "0x5\r\nhello\r\n0\r\n\r\n"),
        chunked("chunk-size-space", "5 \r\nhello\r\n0\r\n\r\n"),
        chunked("chunk-ext", "5;name=value\r\nhello\r\n0\r\n\r\n"),
        chunked("chunk-no-crlf", "5\r\nhelloXX0\r\n\r\n"),
        chunked("chunk-trailer", "5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n"),
        get("obs-fold", "X-Folded: a\r\n b\r\n"),
        raw("bare-lf", "GET /d/bare-lf HTTP/1.1\nHost: z\nX-A: 1\n\n"),
        get("bare-cr", "X-A: 1\rX-Bare: cr\r\n"),
        get("space-before-colon", "X-Sp : v\r\n"),
        get("tab-in-value", "X-Tab: a\tb\r\n"),
        get("nul-in-value", "X-Nul: a\0b\r\n"),
        get("bad-field-name", "X@Bad: v\r\n"),
        // RFC 9112 3.2: a server MUST answer 400 to more than one Host, and to an HTTP/1.1
        // request without one; both peers do.
        get("dup-host", "Host: y\r\n"),
        raw("no-host-1.1", "GET /d/no-host-1.1 HTTP/1.1\r\n\r\n"),
        raw("no-host-1.0", "GET /d/no-host-1.0 HTTP/1.0\r\n\r\n"),
        // RFC 9112 3.2.2: with an absolute-form target the Host field is ignored and the
        // target's authority used; nginx and caddy send `y` as Host and X-Forwarded-Host.
        raw(
            ABSOLUTE_FORM,
            "GET http://y/d/absolute-form HTTP/1.1\r\nHost: z\r\n\r\n",
        ),
        raw(
            "request-line-2-spaces",
            "GET  /d/request-line-2-spaces HTTP/1.1\r\nHost: z\r\n\r\n",
        ),
        get(
            "long-field-16k",
            &format!("X-Long: {}\r\n", "a".repeat(16 * 1024)),
        ),
        get_path(
            "long-uri-9k",
            &format!("long-uri-9k?{}", "a".repeat(9000)),
            "",
        ),
        get_path("path-%00", "%00", ""),
        raw("path-raw-space", "GET /d/a b HTTP/1.1\r\nHost: z\r\n\r\n"),
        // Deliberate: zoo routes on the normalised path and forwards what it matched, so an app
        // never sees a path that could climb out of its prefix; nginx (proxy_pass without a
        // URI part) and caddy forward the raw `/d/x/../path-dotdot`.
        get_path("path-dotdot", "x/../path-dotdot", "").differs(
            "forwards the normalised path /d/path-dotdot where both peers forward the dot-segments",
        ),
        raw(
            "path-above-root",
            "GET /../d/above HTTP/1.1\r\nHost: z\r\n\r\n",
        ),
        // Deliberate: h2c smuggling. zoo drops Upgrade and HTTP2-Settings (named in Connection);
        // nginx drops Upgrade but forwards HTTP2-Settings, caddy forwards `Upgrade: h2c`.
        get(
            "upgrade-h2c",
            "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
             HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n",
        )
        .differs("forwards neither Upgrade: h2c (caddy does) nor HTTP2-Settings (nginx does)"),
        // RFC 9110 7.6.1: what Connection names is hop-by-hop; nginx forwards it (and
        // Proxy-Connection), caddy drops it like zoo.
        get(
            "connection-named",
            "Connection: X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n\
             Proxy-Connection: keep-alive\r\nTE: gzip\r\n",
        ),
        // Deliberate (`trust_forwarded` unset): a client cannot claim an address. nginx appends
        // to its X-Forwarded-For and forwards Forwarded; caddy replaces X-Forwarded-For but
        // forwards Forwarded; zoo replaces the one and drops the other.
        get(
            "client-forwarded",
            "X-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\n",
        )
        .differs("drops the client's Forwarded, which both peers pass on"),
        post(
            "expect-100",
            "Expect: 100-continue\r\nContent-Length: 5\r\n",
            "hello",
        ),
    ]
}

/// The cases hyper's engine forwards (chunked winning over Content-Length, RFC 9112 6.3) and
/// zoo's own engine refuses with 400, as nginx does (issue 19): the pair is how requests are
/// smuggled.
const REFUSED_BY_ZOO_ENGINE: [&str; 3] = ["cl+te", "te+cl", "cl+te-short"];

/// What zoo forwards for each case it forwards ([`Forwarded::summary`]), pinned: the table of
/// outcomes shows where the proxies differ, this says what zoo's one must be. A case missing
/// here must not be forwarded at all.
const ZOO_FORWARDS: [(&str, &str); 22] = [
    (
        "clean-get",
        r"GET /d/clean-get HTTP/1.1 [host: (upstream) | x-forwarded-for: 127.0.0.1 | x-forwarded-host: z] none body=",
    ),
    (
        "clean-cl",
        r"POST /d/clean-cl HTTP/1.1 [host: (upstream) | content-length: 5 | x-forwarded-for: 127.0.0.1 | x-forwarded-host: z] cl body=hello",
    ),
    (
        "clean-chunked",
        r"POST /d/clean-chunked HTTP/1.1 [host: (upstream) | x-forwarded-for: 127.0.0.1 | x-forwarded-host: z | transfer-encoding: chunked] chunked body=hello",
    ),
    (
        "cl+te",
        r"POST /d/cl+te HTTP/1.1 [host: (upstream) | x-forwarded-for: 127.0.0.1 | x-forwarded-host: z | transfer-encoding: chunked] chunked body=hello",
    ),
    (
        "te+cl",
        r"POST /d/te+cl HTTP/1.1 [host: (upstream) | x-forwarded-for: 127.0.0.1 | x-forwarded-host: z | transfer-encoding: chunked] chunked body=hello",
    ),
    (
        "cl+te-short",
        r"POST /d/cl+te-short HTTP/1.1 [host: (upstream) | x-forwarded-for: 127.0.0.1 | x-forwarded-host: z | transfer-encoding: chunked] chunked body=hello",
    ),
    (
        "cl-dup-equal",
        r"POST /d/cl-dup-equal HTTP/1.1 [host: (upstream) | content-length: 5 | x-forwarded-for: 127.0.0.1 | x-forwarded-host: z] cl body=hello",
    ),
    (
        "te-Chunked-case",
        r"POST /d/te-Chunked-case HTTP/1.1 [host: (upstream) | x-forwarded-for: 127.0.0.1 | x-forwarded-host: z | transfer-encoding: chunked] chunked body=hello",
    ),
    (
        "chunk-size-space",
        r"POST /d/chunk-size-space HTTP/1.1 [host: (upstream) | x-forwarded-for: 127.0.0.1 | x-forwarded-host: z | transfer-encoding: chunked] chunked body=hello",
    ),
    (
        "chunk-ext",
        r"POST /d/chunk-ext HTTP/1.1 [host: (upstream) | x-forwarded-for: 127.0.0.1 | x-forwarded-host: z | transfer-encoding: chunked] chunked body=hello",
    ),
    (
        "chunk-no-crlf",
        r"(cut) POST /d/chunk-no-crlf HTTP/1.1 [host: (upstream) | x-forwarded-for: 127.0.0.1 | x-forwarded-host: z | transfer-encoding: chunked] chunked body=5\r\nhello\r\n",
    ),
    (
        "chunk-trailer",
        r"POST /d/chunk-trailer HTTP/1.1 [host: (upstream) | x-forwarded-for: 127.0.0.1 | x-forwarded-host: z | transfer-encoding: chunked] chunked body=hello",
    ),
    (
        "bare-lf",
        r"GET /d/bare-lf HTTP/1.1 [host: (upstream) | x-a: 1 | x-forwarded-for: 127.0.0.1 | x-forwarded-host: z] none body=",
    ),
    (
        "tab-in-value",
        r"GET /d/tab-in-value HTTP/1.1 [host: (upstream) | x-tab: a\tb | x-forwarded-for: 127.0.0.1 | x-forwarded-host: z] none body=",
    ),
    (
        "no-host-1.0",
        r"GET /d/no-host-1.0 HTTP/1.1 [x-forwarded-for: 127.0.0.1 | host: (upstream)] none body=",
    ),
    (
        "absolute-form",
        r"GET /d/absolute-form HTTP/1.1 [host: (upstream) | x-forwarded-for: 127.0.0.1 | x-forwarded-host: y] none body=",
    ),
    (
        "long-field-16k",
        r"GET /d/long-field-16k HTTP/1.1 [host: (upstream) | x-long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa…(16384 chars)…aaaaaaaaaaaa | x-forwarded-for: 127.0.0.1 | x-forwarded-host: z] none body=",
    ),
    (
        "path-dotdot",
        r"GET /d/path-dotdot HTTP/1.1 [host: (upstream) | x-forwarded-for: 127.0.0.1 | x-forwarded-host: z] none body=",
    ),
    (
        "upgrade-h2c",
        r"GET /d/upgrade-h2c HTTP/1.1 [host: (upstream) | x-forwarded-for: 127.0.0.1 | x-forwarded-host: z] none body=",
    ),
    (
        "connection-named",
        r"GET /d/connection-named HTTP/1.1 [host: (upstream) | x-forwarded-for: 127.0.0.1 | x-forwarded-host: z] none body=",
    ),
    (
        "client-forwarded",
        r"GET /d/client-forwarded HTTP/1.1 [host: (upstream) | x-forwarded-for: 127.0.0.1 | x-forwarded-host: z] none body=",
    ),
    (
        "expect-100",
        r"POST /d/expect-100 HTTP/1.1 [host: (upstream) | expect: 100-continue | content-length: 5 | x-forwarded-for: 127.0.0.1 | x-forwarded-host: z] cl body=hello",
    ),
];

// ---------------------------------------------------------------------------------------------
// Running them.

/// One proxy's result for one case.
struct Outcome {
    answer: Answer,
    forwarded: Vec<Forwarded>,
}

impl Outcome {
    /// Whether a complete request reached the upstream.
    fn passed(&self) -> bool {
        self.forwarded.iter().any(|f| f.complete)
    }

    /// Refused: nothing complete forwarded and the client got an error (or nothing).
    fn refused(&self) -> bool {
        !self.passed() && self.answer.status.is_none_or(|s| s >= 400)
    }

    /// True unless the client got a 4xx, or a 501 for an unknown transfer coding (nginx's).
    fn status_is_not_a_client_error(&self) -> bool {
        !self
            .answer
            .status
            .is_some_and(|s| (400..500).contains(&s) || s == 501)
    }

    fn cell(&self) -> String {
        let status = self
            .answer
            .status
            .map_or_else(|| "---".to_owned(), |s| s.to_string());
        let interim: String = self
            .answer
            .interim
            .iter()
            .map(|s| format!("{s}+"))
            .collect();
        let after = match self.answer.after {
            "open" => "",
            "close" => " cl",
            other => other,
        };
        let upstream = match self.forwarded.as_slice() {
            [] => "-".to_owned(),
            [one] if one.complete => format!("> {}", one.framing),
            [one] => format!("> cut {}", one.framing),
            many => format!("> {} reqs", many.len()),
        };
        format!("{interim}{status}{after} {upstream}")
    }
}

fn run_cases(addr: SocketAddr, recorder: &Recorder, cases: &[Case]) -> Vec<Outcome> {
    recorder.take(Instant::now());
    cases
        .iter()
        .map(|case| {
            let answer = exchange(addr, &case.raw);
            let upstream = format!("127.0.0.1:{}", recorder.port);
            let forwarded = recorder
                .take(Instant::now())
                .iter()
                .map(|arrived| Forwarded::new(arrived, &upstream))
                .collect();
            Outcome { answer, forwarded }
        })
        .collect()
}

#[test]
fn zoo_refuses_what_nginx_and_caddy_refuse_and_forwards_only_unambiguous_requests() {
    let started = Instant::now();
    let names = ["zoo", "nginx", "caddy"];
    let recorders: Vec<Recorder> = names.iter().map(|_| Recorder::start()).collect();
    let zoo = start_zoo(recorders[0].port);
    let nginx = start_nginx(recorders[1].port);
    let caddy = start_caddy(recorders[2].port);
    let addrs = [zoo.addr(), nginx.addr(), caddy.addr()];
    let cases = cases();

    let results: Vec<Vec<Outcome>> = thread::scope(|scope| {
        let runs: Vec<_> = addrs
            .iter()
            .zip(&recorders)
            .map(|(addr, recorder)| scope.spawn(|| run_cases(*addr, recorder, &cases)))
            .collect();
        runs.into_iter().map(|run| run.join().unwrap()).collect()
    });
    let [zoo_out, nginx_out, caddy_out] = [&results[0], &results[1], &results[2]];

    // The table, then the forwarded requests of every case where the three did not agree.
    let mut table = format!(
        "{:<24} {:<18} {:<18} {:<18}\n",
        "case", names[0], names[1], names[2]
    );
    let mut details = String::new();
    for (i, case) in cases.iter().enumerate() {
        let cells = [&zoo_out[i], &nginx_out[i], &caddy_out[i]].map(Outcome::cell);
        let marker = if case.zoo_differs.is_some() { " *" } else { "" };
        let _ = writeln!(
            table,
            "{:<24} {:<18} {:<18} {:<18}{marker}",
            case.name, cells[0], cells[1], cells[2]
        );
        let summaries = [&zoo_out[i], &nginx_out[i], &caddy_out[i]].map(|o| {
            o.forwarded
                .iter()
                .map(Forwarded::summary)
                .collect::<Vec<_>>()
        });
        if summaries.iter().any(|s| *s != summaries[0]) {
            let _ = writeln!(details, "{}:", case.name);
            for (name, summary) in names.iter().zip(&summaries) {
                for line in summary {
                    let _ = writeln!(details, "  {name:<6} {line}");
                }
            }
        }
    }
    let notes: String = cases
        .iter()
        .filter_map(|case| {
            let why = case.zoo_differs?;
            Some(format!("  {:<22} * by design: {why}\n", case.name))
        })
        .collect();
    println!(
        "status (+ `cl` when the proxy closed the connection after it) and what reached the \
         upstream (`-` nothing, `> framing`, `cut` incomplete); `*` a deliberate zoo divergence\n\
         {table}\nzoo's divergences:\n{notes}\nforwarded requests where the proxies differ \
         (without the fields they add by design: {ADDED_BY_DESIGN:?}):\n{details}"
    );

    let agree = |peer: &[Outcome]| {
        (0..cases.len())
            .filter(|&i| zoo_out[i].passed() == peer[i].passed())
            .count()
    };
    let forwarded = zoo_out.iter().filter(|o| o.passed()).count();
    println!(
        "{} cases: zoo forwards {forwarded}, refuses {}; it forwards or refuses as nginx does in \
         {}, as caddy does in {}",
        cases.len(),
        cases.len() - forwarded,
        agree(nginx_out),
        agree(caddy_out),
    );

    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let (z, n, c) = (&zoo_out[i], &nginx_out[i], &caddy_out[i]);
        let raw = String::from_utf8_lossy(&case.raw);
        let raw = clip(&raw);
        if n.refused() && c.refused() && !z.refused() {
            failures.push(format!(
                "{}: nginx and caddy refuse it but zoo answered {} and forwarded {} request(s): {raw}",
                case.name,
                z.cell(),
                z.forwarded.len()
            ));
        }
        if n.refused() && c.refused() && z.status_is_not_a_client_error() {
            failures.push(format!(
                "{}: refused by both peers; zoo should answer 4xx (or 501), got {}: {raw}",
                case.name,
                z.cell()
            ));
        }
        if z.passed() {
            let [forwarded] = z.forwarded.as_slice() else {
                failures.push(format!(
                    "{}: zoo forwarded {} requests for one: {raw}",
                    case.name,
                    z.forwarded.len()
                ));
                continue;
            };
            if !forwarded.unambiguous() || forwarded.body != case.meant {
                failures.push(format!(
                    "{}: zoo forwarded an ambiguous request or the wrong body (meant {:?}): {}",
                    case.name,
                    String::from_utf8_lossy(case.meant),
                    forwarded.summary()
                ));
            }
            let hop_by_hop = [
                "upgrade",
                "http2-settings",
                "x-secret",
                "keep-alive",
                "proxy-connection",
                "te",
            ];
            // `TE: trailers` is the one `TE` a proxy may pass on (RFC 9110 7.6.1).
            for (name, value) in &forwarded.head.fields {
                if hop_by_hop.contains(&name.as_str()) && !(name == "te" && value == "trailers") {
                    failures.push(format!(
                        "{}: zoo forwarded hop-by-hop `{name}`: {}",
                        case.name,
                        forwarded.summary()
                    ));
                }
            }
        }
        let summaries: Vec<String> = z.forwarded.iter().map(Forwarded::summary).collect();
        let zoo_engine_refuses =
            util::engine_under_test() == "zoo" && REFUSED_BY_ZOO_ENGINE.contains(&case.name);
        let pinned: Vec<String> = ZOO_FORWARDS
            .iter()
            .filter(|(name, _)| *name == case.name && !zoo_engine_refuses)
            .map(|(_, summary)| (*summary).to_owned())
            .collect();
        if summaries != pinned {
            failures.push(format!(
                "{}: zoo forwarded {summaries:#?}, pinned {pinned:#?}",
                case.name
            ));
        }
        let zoo_alone = z.passed() != n.passed() && z.passed() != c.passed();
        if zoo_alone && case.zoo_differs.is_none() {
            failures.push(format!(
                "{}: zoo {} where nginx and caddy {}; a bug, or a decision to explain in the case \
                 and docs/proxy.md",
                case.name,
                if z.passed() { "forwards" } else { "refuses" },
                if n.passed() { "forward" } else { "refuse" },
            ));
        }
    }
    if let Some(i) = cases.iter().position(|case| case.name == ABSOLUTE_FORM) {
        let hosts: Vec<&str> = zoo_out[i]
            .forwarded
            .iter()
            .flat_map(|forwarded| &forwarded.head.fields)
            .filter(|(name, _)| name == "x-forwarded-host")
            .map(|(_, value)| value.as_str())
            .collect();
        if hosts != ["y"] {
            failures.push(format!(
                "{ABSOLUTE_FORM}: zoo forwarded X-Forwarded-Host {hosts:?}, not the target's `y`"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} finding(s):\n{}\n\n{table}\n{}\n---- nginx ----\n{}\n---- caddy ----\n{}",
        failures.len(),
        failures.join("\n"),
        zoo.output(),
        nginx.output(),
        caddy.output()
    );
    // zoo still serves after all that.
    zoo.assert_body("/d/after", "ok");
    // Only a stall: the cases run in seconds, a busy machine may take several times that.
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "the differential test took {:?}",
        started.elapsed()
    );
}
