//! Adversarial inputs and misbehaving upstreams (issue 13), each answered as careful proxies
//! (nginx) answer it: upstream framing zoo cannot pass on as it decoded it is a 502 naming the
//! upstream, requests zoo will not forward (CONNECT, TRACE, a bad Host) get 4xx without an
//! upstream seeing them, and config values that would overflow time arithmetic are refused by
//! `zoo check`. Each class is tried with two or more members. The upstreams are tiny TCP
//! servers in the test that send exact bytes; everything is on loopback and bounded.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::util::{self, READY_DEADLINE, Zoo, http};

/// How long `zoo check` may take.
const CHECK_DEADLINE: Duration = Duration::from_secs(20);
/// Connections a [`FakeUpstream`] answers before its thread ends.
const FAKE_CONNECTIONS: usize = 16;
/// How long a fake upstream waits for a request head.
const FAKE_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head a fake upstream reads.
const FAKE_HEAD_LIMIT: usize = 256 * 1024;

/// A TCP server that answers every request with the same bytes, written in `parts` with a
/// pause between them, then closes; it keeps each request head it read.
struct FakeUpstream {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
}

/// Whether a fake upstream reads the whole request (to EOF) before it answers.
#[derive(Clone, Copy)]
enum Answers {
    AfterHead,
    AfterEof,
}

impl FakeUpstream {
    fn start(parts: &'static [&'static [u8]]) -> FakeUpstream {
        FakeUpstream::start_answering(parts, Answers::AfterHead)
    }

    fn start_answering(parts: &'static [&'static [u8]], answers: Answers) -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a fake upstream");
        let port = listener.local_addr().expect("local_addr").port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&heads);
        thread::spawn(move || {
            for stream in listener.incoming().take(FAKE_CONNECTIONS) {
                let Ok(stream) = stream else { continue };
                let seen = Arc::clone(&seen);
                thread::spawn(move || answer(stream, parts, answers, &seen));
            }
        });
        FakeUpstream { port, heads }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

fn answer(mut stream: TcpStream, parts: &[&[u8]], answers: Answers, seen: &Mutex<Vec<String>>) {
    let _ = stream.set_read_timeout(Some(FAKE_READ_TIMEOUT));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < FAKE_HEAD_LIMIT {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    seen.lock()
        .unwrap()
        .push(String::from_utf8_lossy(&head).into_owned());
    if let Answers::AfterEof = answers {
        let _ = stream.read_to_end(&mut Vec::new());
    }
    for (index, part) in parts.iter().enumerate() {
        if index > 0 {
            // The upstream's own pacing, not a synchronisation: zoo must have passed the
            // part before on by the time the next one fails.
            thread::sleep(Duration::from_millis(300));
        }
        if stream.write_all(part).is_err() {
            return;
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
    // Drain until zoo closes, so the close is not a reset that could lose the response.
    let _ = stream.read_to_end(&mut Vec::new());
}

/// A zoo with one `proxy` route per fake upstream, `/0`, `/1`, ... in order, plus `/ok`.
fn zoo_in_front_of(upstreams: &[&FakeUpstream], extra: &str) -> Zoo {
    let mut config = format!("listen = \"127.0.0.1:0\"\n{extra}\n[routes]\n");
    for (index, upstream) in upstreams.iter().enumerate() {
        config.push_str(&format!(
            "\"/{index}\" = {{ proxy = \"http://127.0.0.1:{}\", strip_prefix = true }}\n",
            upstream.port
        ));
    }
    config.push_str("\"/ok\" = { respond = \"ok\\n\" }\n");
    let mut zoo = Zoo::start(&config, &[]);
    zoo.wait_ready("/ok", READY_DEADLINE);
    zoo
}

fn raw_text(zoo: &Zoo, request: &str) -> String {
    String::from_utf8_lossy(&zoo.send_raw(request.as_bytes())).into_owned()
}

#[test]
fn upstream_framing_zoo_cannot_pass_on_gets_502_naming_the_upstream() {
    let cases: [(&str, &'static [&'static [u8]]); 4] = [
        (
            "Content-Length beside chunked",
            &[
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
                5\r\nhello\r\n0\r\n\r\n",
            ],
        ),
        (
            "chunked beside Content-Length, the other order",
            &[
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 100\r\n\r\n\
                5\r\nhello\r\n0\r\n\r\n",
            ],
        ),
        (
            "gzip then chunked",
            &[
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
                5\r\nhello\r\n0\r\n\r\n",
            ],
        ),
        (
            "a coding hyper reads to EOF",
            &[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\nhello"],
        ),
    ];
    let upstreams: Vec<FakeUpstream> = cases
        .iter()
        .map(|(_, parts)| FakeUpstream::start(parts))
        .collect();
    let zoo = zoo_in_front_of(&upstreams.iter().collect::<Vec<_>>(), "");
    for (index, (case, _)) in cases.iter().enumerate() {
        let response = zoo.get(&format!("/{index}/x"));
        let body = response.text();
        assert_eq!(
            response.status,
            502,
            "{case}: {:?} {body:?}\n{}",
            response.headers,
            zoo.output()
        );
        let port = upstreams[index].port;
        assert!(
            body.contains(&format!("127.0.0.1:{port}")) && body.trim_end().lines().count() == 1,
            "{case}: the 502 names the upstream in one line: {body:?}\n{}",
            zoo.output()
        );
    }
}

/// An app (the real process zoo supervises, on its `PORT`) that answers every request with
/// `Content-Length: 3` beside a 5-byte chunked body.
const LIAR_APP: &str = r#"
import os, socket
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", int(os.environ["PORT"])))
listener.listen(16)
while True:
    connection, _ = listener.accept()
    connection.recv(65536)
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"5\r\nhello\r\n0\r\n\r\n")
    connection.close()
"#;

#[test]
fn misframed_app_response_gets_502_naming_the_app() {
    let config = "listen = \"127.0.0.1:0\"\n\
                  [apps.liar]\ncommand = [\"python3\", \"liar.py\"]\n\
                  [routes]\n\"/\" = { app = \"liar\" }\n";
    let mut zoo = Zoo::start(config, &[("liar.py", LIAR_APP)]);
    let response = poll_response(&mut zoo);
    let body = response.text();
    assert_eq!(
        (
            response.status,
            body.contains("app `liar`")
                && body.contains("both Content-Length and Transfer-Encoding")
        ),
        (502, true),
        "{:?} {:?}\n{}",
        response.headers,
        response.text(),
        zoo.output()
    );
}

/// `GET /x` once the app is ready (a 503 while it starts is retried, within the deadline).
fn poll_response(zoo: &mut Zoo) -> crate::util::http::Response {
    let until = std::time::Instant::now() + READY_DEADLINE;
    loop {
        let response = zoo.get("/x");
        if response.status != 503 || std::time::Instant::now() >= until {
            return response;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn unsolicited_switching_protocols_gets_502() {
    let plain: &'static [&'static [u8]] = &[
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    ];
    let other_protocol: &'static [&'static [u8]] =
        &[b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"];
    let to_plain = FakeUpstream::start(plain);
    let to_other = FakeUpstream::start(other_protocol);
    let zoo = zoo_in_front_of(&[&to_plain, &to_other], "");
    // A request that asked for nothing, and a WebSocket request answered with another protocol.
    let cases = [
        "GET /0/ HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".to_owned(),
        "GET /1/ HTTP/1.1\r\nHost: a\r\nConnection: upgrade, close\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            .to_owned(),
    ];
    for request in cases {
        let raw = raw_text(&zoo, &request);
        assert!(
            raw.starts_with("HTTP/1.1 502"),
            "{request:?} answered 101 by the upstream: {raw:?}\n{}",
            zoo.output()
        );
    }
}

#[test]
fn upstream_body_failing_before_anything_was_sent_gets_502() {
    let bad_size: &'static [&'static [u8]] =
        &[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n"];
    let size_overflow: &'static [&'static [u8]] =
        &[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\n"];
    let late: &'static [&'static [u8]] = &[
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"ZZ\r\n",
    ];
    let upstreams = [
        FakeUpstream::start(bad_size),
        FakeUpstream::start(size_overflow),
        FakeUpstream::start(late),
    ];
    let zoo = zoo_in_front_of(&upstreams.iter().collect::<Vec<_>>(), "");
    for index in 0..2 {
        let response = zoo.get(&format!("/{index}/"));
        assert_eq!(
            response.status,
            502,
            "/{index}: {:?}\n{}",
            response.text(),
            zoo.output()
        );
    }
    // Once the head is out, the response ends without its last chunk: visibly incomplete.
    let raw = zoo.send_raw(b"GET /2/ HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.contains("hello") && !text.ends_with("0\r\n\r\n"),
        "{text:?}\n{}",
        zoo.output()
    );
    assert!(
        http::parse(&raw).is_err(),
        "a cut response must not parse as complete: {text:?}"
    );
    assert!(!upstreams[2].heads().is_empty());
}

#[test]
fn durations_past_a_year_fail_zoo_check_at_their_place() {
    const HUGE: &str = "9223372036854775807";
    let config = format!(
        "listen = \"127.0.0.1:0\"\n\
         grace = {HUGE}\n\
         client_header_timeout = \"{HUGE}\"\n\
         [apps.web]\n\
         command = \"sleep 600\"\n\
         grace = \"8761h\"\n\
         ready = {{ deadline = {HUGE} }}\n\
         [routes]\n\
         \"/\" = {{ app = \"web\", wait = \"4294967295h\", timeout = {HUGE} }}\n"
    );
    let dir = util::prepare_dir(&config, &[]);
    let checked = util::run_to_end(
        dir.path(),
        &["--config", "zoo.toml", "check"],
        CHECK_DEADLINE,
    );
    assert_eq!(checked.code(), Some(2), "{}", checked.output);
    for (place, key) in [
        ("zoo.toml:2:9:", "grace"),
        ("zoo.toml:3:25:", "client_header_timeout"),
        ("zoo.toml:6:9:", "apps.web.grace"),
        ("zoo.toml:7:22:", "apps.web.ready.deadline"),
        ("zoo.toml:9:29:", "routes.\"/\".wait"),
        ("zoo.toml:9:54:", "routes.\"/\".timeout"),
    ] {
        assert!(
            checked
                .output
                .lines()
                .any(|line| line.contains(place) && line.contains(key) && line.contains("8760h")),
            "{key} should be refused at {place}\n{}",
            checked.output
        );
    }
    assert!(!checked.output.contains("panicked"), "{}", checked.output);
}

const OK_RESPONSE: &[&[u8]] = &[b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"];

#[test]
fn connect_and_trace_get_405_with_allow_and_reach_no_app() {
    let upstream = FakeUpstream::start(OK_RESPONSE);
    let zoo = zoo_in_front_of(&[&upstream], "");
    let port = upstream.port;
    let requests = [
        format!(
            "CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        ),
        "TRACE /0/ HTTP/1.1\r\nHost: a\r\nCookie: session=secret\r\nConnection: close\r\n\r\n"
            .to_owned(),
        "TRACE /0/x HTTP/1.1\r\nHost: a\r\nMax-Forwards: 0\r\nConnection: close\r\n\r\n".to_owned(),
    ];
    for request in requests {
        let raw = zoo.send_raw(request.as_bytes());
        let response = http::parse(&raw).unwrap_or_else(|e| panic!("{e}: {raw:?}"));
        assert_eq!(
            (response.status, response.header("allow").is_some()),
            (405, true),
            "{request:?}: {:?} {:?}\n{}",
            response.headers,
            response.text(),
            zoo.output()
        );
    }
    assert_eq!(upstream.heads(), Vec::<String>::new(), "{}", zoo.output());
}

#[test]
fn hosts_that_are_not_host_and_port_get_400_and_reach_no_app() {
    let upstream = FakeUpstream::start(OK_RESPONSE);
    let zoo = zoo_in_front_of(&[&upstream], "");
    let port = upstream.port;
    let bad = [
        format!("GET http://u:p@127.0.0.1:{port}/0/x HTTP/1.1\r\nHost: 127.0.0.1\r\n"),
        "GET /0/x HTTP/1.1\r\nHost: a/b@c:99999\r\n".to_owned(),
        "GET /0/x HTTP/1.1\r\nHost: example.com:65536\r\n".to_owned(),
        "GET /0/x HTTP/1.1\r\nHost: user@example.com\r\n".to_owned(),
        "GET /0/x HTTP/1.1\r\nHost: \r\n".to_owned(),
    ];
    for head in bad {
        let raw = raw_text(&zoo, &format!("{head}Connection: close\r\n\r\n"));
        assert!(
            raw.starts_with("HTTP/1.1 400"),
            "{head:?}: {raw:?}\n{}",
            zoo.output()
        );
    }
    assert_eq!(upstream.heads(), Vec::<String>::new(), "{}", zoo.output());
    let raw = raw_text(
        &zoo,
        "GET /0/x HTTP/1.1\r\nHost: example.com:8080\r\nConnection: close\r\n\r\n",
    );
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw:?}\n{}", zoo.output());
}

/// Headers of the forwarded family a client might send to pose as someone else.
const SPOOFED: [&str; 7] = [
    "X-Real-IP: 6.6.6.6",
    "X-Forwarded-Port: 1",
    "X-Forwarded-Prefix: /admin",
    "X-Original-URL: /admin",
    "X-Rewrite-URL: /admin",
    "True-Client-IP: 6.6.6.6",
    "X-Forwarded-Server: evil",
];

fn head_seen_for_spoofed_request(trust: &str) -> (String, String) {
    let upstream = FakeUpstream::start(OK_RESPONSE);
    let zoo = zoo_in_front_of(&[&upstream], trust);
    let request = format!(
        "GET /0/x HTTP/1.1\r\nHost: a\r\n{}\r\nConnection: close\r\n\r\n",
        SPOOFED.join("\r\n")
    );
    let raw = raw_text(&zoo, &request);
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw:?}\n{}", zoo.output());
    let heads = upstream.heads();
    assert_eq!(heads.len(), 1, "{heads:?}\n{}", zoo.output());
    (heads[0].to_ascii_lowercase(), zoo.output())
}

#[test]
fn forwarded_family_from_an_untrusted_client_is_dropped_and_x_real_ip_set() {
    let (head, output) = head_seen_for_spoofed_request("");
    for spoofed in SPOOFED {
        assert!(
            !head.contains(&spoofed.to_ascii_lowercase()),
            "{spoofed} reached the app: {head:?}\n{output}"
        );
    }
    assert!(
        head.contains("x-real-ip: 127.0.0.1\r\n"),
        "{head:?}\n{output}"
    );
}

#[test]
fn forwarded_family_from_a_trusted_client_passes() {
    let (head, output) = head_seen_for_spoofed_request("trust_forwarded = [\"127.0.0.1\"]\n");
    for spoofed in SPOOFED {
        assert!(
            head.contains(&spoofed.to_ascii_lowercase()),
            "{spoofed} from a trusted client should pass: {head:?}\n{output}"
        );
    }
}

#[test]
fn common_access_log_escapes_what_a_client_sent_as_nginx_does() {
    let zoo = zoo_in_front_of(&[], "access_log = \"common\"\n");
    for (target, logged) in [
        (
            &b"/ok/x\"_200_route=/admin"[..],
            "/ok/x\\x22_200_route=/admin",
        ),
        (&b"/ok/caf\xc3\xa9\"\""[..], "/ok/caf\\xC3\\xA9\\x22\\x22"),
        (&b"/ok/a\\b"[..], "/ok/a\\x5Cb"),
    ] {
        let mut request = b"GET ".to_vec();
        request.extend_from_slice(target);
        request.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        let raw = zoo.send_raw(&request);
        assert!(
            raw.starts_with(b"HTTP/1.1 200"),
            "{:?}\n{}",
            String::from_utf8_lossy(&raw),
            zoo.output()
        );
        let line = format!("\"GET {logged} HTTP/1.1\" 200 ");
        assert!(
            zoo.wait_for_line(Duration::from_secs(5), |_, text| text.contains(&line)),
            "expected {line:?} in the access log\n{}",
            zoo.output()
        );
    }
}

/// Runs `zoo --config FILE check` in `dir` with stdout or stderr (`closed`) a pipe whose
/// reader is already gone, and returns its exit status and what it wrote on the other stream.
fn check_with_closed(
    dir: &std::path::Path,
    closed: util::Stream,
) -> (std::process::ExitStatus, String) {
    use std::process::{Command, Stdio};
    let mut command = Command::new(env!("CARGO_BIN_EXE_zoo"));
    command
        .args(["--config", "zoo.toml", "check"])
        .current_dir(dir)
        .env_clear()
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn zoo check");
    let mut open_stream: Box<dyn Read + Send> = match closed {
        util::Stream::Stdout => {
            drop(child.stdout.take());
            Box::new(child.stderr.take().unwrap())
        }
        util::Stream::Stderr => {
            drop(child.stderr.take());
            Box::new(child.stdout.take().unwrap())
        }
    };
    let reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = open_stream.read_to_string(&mut text);
        text
    });
    let exited = util::poll_until(CHECK_DEADLINE, || child.try_wait().ok().flatten().is_some());
    if !exited {
        let _ = child.kill();
        panic!("zoo check still running after {CHECK_DEADLINE:?}");
    }
    let status = child.wait().expect("wait for zoo check");
    (status, reader.join().unwrap())
}

#[test]
fn a_closed_output_ends_zoo_check_quietly() {
    let routes: String = (0..2000)
        .map(|index| format!("\"/r{index}\" = {{ respond = \"x\" }}\n"))
        .collect();
    let valid = util::prepare_dir(&format!("[routes]\n{routes}"), &[]);
    let (status, stderr) = check_with_closed(valid.path(), util::Stream::Stdout);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let invalid = util::prepare_dir("[routes]\n\"/\" = { app = \"missing\" }\n", &[]);
    let (status, stdout) = check_with_closed(invalid.path(), util::Stream::Stderr);
    assert_eq!(status.code(), Some(2), "{stdout}");
}

#[test]
fn a_huge_invalid_line_is_shown_as_a_window_around_the_column() {
    for (config, column) in [
        (
            format!("a = \"{}\" junk\n", "x".repeat(2_000_000)),
            2_000_008,
        ),
        (format!("listen = \"{}\"\n", "9".repeat(2_000_000)), 10),
    ] {
        let dir = util::prepare_dir(&config, &[]);
        let checked = util::run_to_end(
            dir.path(),
            &["--config", "zoo.toml", "check"],
            CHECK_DEADLINE,
        );
        assert_eq!(checked.code(), Some(2));
        assert!(
            checked.stderr.len() < 2_000
                && checked.stderr.contains(&format!("zoo.toml:1:{column}:")),
            "{} bytes: {:?}",
            checked.stderr.len(),
            checked.stderr.get(..2_000)
        );
    }
}

/// Reads one response with a `Content-Length` body from a kept-alive connection.
fn read_one_response(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length: "))
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return Ok(String::from_utf8_lossy(&got).into_owned());
            }
        }
        match stream.read(&mut buf)? {
            0 => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("closed after {:?}", String::from_utf8_lossy(&got)),
                ));
            }
            n => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Whether zoo closes `stream` within `within` (EOF or reset), without sending anything.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

/// A connection to `zoo` that has had one `GET /ok` answered, and that request's bytes.
fn kept_alive_after_one_request(zoo: &Zoo) -> (TcpStream, &'static [u8]) {
    let request: &'static [u8] = b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut stream = TcpStream::connect(zoo.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    read_one_response(&mut stream).unwrap();
    (stream, request)
}

#[test]
fn idle_keepalive_and_a_started_head_are_timed_apart() {
    let zoo = zoo_in_front_of(
        &[],
        "client_header_timeout = \"1s\"\nkeepalive_timeout = \"4s\"\n",
    );
    let (mut stream, request) = kept_alive_after_one_request(&zoo);
    // Idle twice the header timeout: still kept alive.
    thread::sleep(Duration::from_secs(2));
    stream.write_all(request).unwrap();
    let second = read_one_response(&mut stream);
    assert!(
        second
            .as_ref()
            .is_ok_and(|text| text.starts_with("HTTP/1.1 200")),
        "a request after 2 s idle (header timeout 1 s): {second:?}\n{}",
        zoo.output()
    );
    // Then a head that starts arriving and stalls gets the header timeout, not the idle one.
    thread::sleep(Duration::from_millis(500));
    stream.write_all(b"GET /ok HTTP/1.1\r\n").unwrap();
    assert!(
        closed_within(&mut stream, Duration::from_secs(3)),
        "a stalled head should be cut after 1 s\n{}",
        zoo.output()
    );
    // An idle connection is closed once the keep-alive time has passed.
    let (mut idle, _) = kept_alive_after_one_request(&zoo);
    assert!(
        !closed_within(&mut idle, Duration::from_secs(3)),
        "closed before keepalive_timeout\n{}",
        zoo.output()
    );
    assert!(
        closed_within(&mut idle, Duration::from_secs(4)),
        "still open after keepalive_timeout\n{}",
        zoo.output()
    );
}

#[test]
fn an_idle_connection_with_the_defaults_outlives_30_seconds() {
    // hyper's server has a head timeout of its own, 30 s once it has a timer, counted from
    // when it starts waiting for a head, so idle time too: zoo must turn it off for its
    // `keepalive_timeout` (75 s by default) to hold.
    let zoo = zoo_in_front_of(&[], "");
    let (mut stream, request) = kept_alive_after_one_request(&zoo);
    thread::sleep(Duration::from_secs(32));
    let again = stream
        .write_all(request)
        .and_then(|()| read_one_response(&mut stream));
    assert!(
        again
            .as_ref()
            .is_ok_and(|text| text.starts_with("HTTP/1.1 200")),
        "a request after 32 s idle (keepalive_timeout 75 s): {again:?}\n{}",
        zoo.output()
    );
}

#[test]
fn keepalive_timeout_zero_closes_after_each_response() {
    let zoo = zoo_in_front_of(&[], "keepalive_timeout = 0\n");
    let mut stream = TcpStream::connect(zoo.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let response = read_one_response(&mut stream).unwrap();
    assert!(
        response.to_ascii_lowercase().contains("connection: close"),
        "{response:?}"
    );
    assert!(closed_within(&mut stream, Duration::from_secs(3)));
}

/// Sends `GET /ok` over h2c with `cookies` cookies of 100 bytes each; the status zoo answered
/// (0 when it refused the stream).
fn h2c_status_with_cookies(zoo: &Zoo, cookies: usize) -> u16 {
    let fields: Vec<(String, String)> = (0..cookies)
        .map(|index| {
            (
                "cookie".to_owned(),
                format!("c{index:03}={}", "v".repeat(95)),
            )
        })
        .collect();
    crate::util::h2c::get(zoo.addr(), "/ok", &fields).map_or(0, |(status, _, _)| status)
}

#[test]
fn http2_header_lists_are_limited_by_the_same_bytes_as_http1_heads() {
    let zoo = zoo_in_front_of(&[], "");
    // 150 cookies of 100 bytes: 15 KiB, over h2's 16 KiB default once counted with overhead.
    for cookies in [150, 1000] {
        assert_eq!(
            h2c_status_with_cookies(&zoo, cookies),
            200,
            "{cookies} cookies over h2c\n{}",
            zoo.output()
        );
    }
    // Over 256 KiB is still refused, on HTTP/1.1 too.
    assert_ne!(h2c_status_with_cookies(&zoo, 3000), 200);
    let huge = format!(
        "GET /ok HTTP/1.1\r\nHost: a\r\nx-big: {}\r\nConnection: close\r\n\r\n",
        "v".repeat(300 * 1024)
    );
    let raw = raw_text(&zoo, &huge);
    assert!(raw.starts_with("HTTP/1.1 431"), "{:?}", raw.get(..100));
}

#[test]
fn cookies_sent_as_separate_http2_fields_reach_the_app_as_one() {
    let upstream = FakeUpstream::start(OK_RESPONSE);
    let zoo = zoo_in_front_of(&[&upstream], "");
    let fields: Vec<(String, String)> = (0..120)
        .map(|index| ("cookie".to_owned(), format!("c{index}=v{index}")))
        .collect();
    let answer = crate::util::h2c::get(zoo.addr(), "/0/x", &fields);
    assert_eq!(
        answer.as_ref().map(|(status, _, _)| *status),
        Some(200),
        "{}",
        zoo.output()
    );
    let heads = upstream.heads();
    let head = heads.first().expect("the upstream got the request");
    let cookie_lines: Vec<&str> = head
        .lines()
        .filter(|line| line.to_ascii_lowercase().starts_with("cookie:"))
        .collect();
    let expected = (0..120)
        .map(|index| format!("c{index}=v{index}"))
        .collect::<Vec<_>>()
        .join("; ");
    assert_eq!(cookie_lines.len(), 1, "{head}");
    assert_eq!(
        cookie_lines[0]
            .split_once(':')
            .map(|(_, value)| value.trim()),
        Some(expected.as_str()),
        "RFC 9113 8.2.3: joined with `; ` in their order"
    );
}

#[test]
fn a_client_that_stops_sending_its_body_gets_408() {
    let upstream = FakeUpstream::start_answering(OK_RESPONSE, Answers::AfterEof);
    let zoo = zoo_in_front_of(&[&upstream], "client_body_timeout = \"1s\"\n");
    for (what, start) in [
        (
            "a sized body",
            "POST /0/ HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789",
        ),
        (
            "a chunked body",
            "POST /0/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        ),
    ] {
        let mut stream = TcpStream::connect(zoo.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let began = std::time::Instant::now();
        stream.write_all(start.as_bytes()).unwrap();
        let response = read_one_response(&mut stream);
        assert!(
            response
                .as_ref()
                .is_ok_and(|text| text.starts_with("HTTP/1.1 408")),
            "{what}: {response:?}\n{}",
            zoo.output()
        );
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "{what}: {:?}",
            began.elapsed()
        );
    }
}
