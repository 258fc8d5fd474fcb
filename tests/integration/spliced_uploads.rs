//! Request bodies of known length moved from the client's socket to the upstream's through a
//! pipe (splice(2), issue 19) on zoo's engine: they reach the upstream (TCP, or an app's Unix
//! socket) byte for byte, the bytes that came with the head first, a small body is still
//! copied, a stall is `client_body_timeout`'s 408, a pipelined request behind a spliced body
//! is not eaten, `max_body` and `Expect: 100-continue` hold as when copied, a client that
//! stops halfway cuts the upstream's request, and so does a client connection closed after an
//! early answer; a TLS client's body is copied.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::front_door::access_line;
use super::spliced_bodies::{content_length, line_count_reaches, start};
use crate::util::raw::{connect, read_head};
use crate::util::scripted::{Scripted, big_body};
use crate::util::{self, Zoo};

/// What zoo logs (at debug) for each spliced request body.
const SPLICED: &str = "request body spliced";
/// What zoo logs (at debug) for a spliced request body that failed midway.
const CUT: &str = "spliced request body cut";

/// A scripted upstream (tests/util/scripted.rs: it records each request's bytes and answers
/// `echo PATH LENGTH`) and zoo proxying `/` to it, `/small` with a `max_body` of 100 KB, its
/// access log in JSON.
fn scripted_zoo() -> (Scripted, Zoo) {
    scripted_zoo_with("")
}

/// [`scripted_zoo`] with more top-level settings.
fn scripted_zoo_with(settings: &str) -> (Scripted, Zoo) {
    let upstream = Scripted::start();
    let zoo = start(
        &format!(
            "\"/small\" = {{ proxy = \"http://127.0.0.1:{0}\", max_body = 100000 }}\n\
             \"/\" = {{ proxy = \"http://127.0.0.1:{0}\" }}\n",
            upstream.port
        ),
        &[],
        &[],
        &format!("access_log = \"json\"\n{settings}"),
    );
    (upstream, zoo)
}

fn post_head(path: &str, length: usize, extra: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {length}\r\n{extra}\r\n")
}

/// Reads a response with a `Content-Length` (the upstream's echo): head and body as text.
fn read_response(stream: &mut TcpStream) -> (String, String) {
    let head = read_head(stream);
    let mut body = vec![0; content_length(&head)];
    stream.read_exact(&mut body).unwrap();
    (head, String::from_utf8_lossy(&body).into_owned())
}

/// The body of a request as the upstream recorded it.
fn recorded_body(request: &[u8]) -> &[u8] {
    let end = request
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("a head");
    &request[end + 4..]
}

/// `size` bytes unlike [`big_body`]'s (shifted), so two bodies in a row cannot pass for each
/// other.
fn other_body(size: usize) -> Vec<u8> {
    big_body(size + 7)[7..].to_vec()
}

#[test]
fn large_uploads_are_spliced_byte_for_byte_and_small_ones_copied() {
    let (upstream, zoo) = scripted_zoo();
    let mut client = connect(zoo.addr());
    // Large (part of it comes with the head), small (copied), larger: one client connection.
    for (size, spliced) in [(1 << 20, 1), (1_000, 1), (3 << 20, 2)] {
        let body = big_body(size);
        let mut sent = post_head(&format!("/up-{size}"), size, "").into_bytes();
        sent.extend_from_slice(&body);
        let mut writer = client.try_clone().unwrap();
        let writing = std::thread::spawn(move || writer.write_all(&sent));
        let (head, echo) = read_response(&mut client);
        writing.join().unwrap().unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(echo, format!("echo /up-{size} {size}"));
        let requests = upstream.take();
        assert_eq!(requests.len(), 1);
        assert!(
            recorded_body(&requests[0]) == body,
            "the {size}-byte body reached the upstream changed"
        );
        assert!(
            line_count_reaches(&zoo, SPLICED, spliced),
            "{spliced} spliced after {size} bytes\n{}",
            zoo.output()
        );
    }
    assert_eq!(
        upstream.accepts(),
        1,
        "the upstream connection went back to its pool after each spliced body"
    );
}

#[test]
fn a_request_pipelined_behind_a_spliced_body_is_not_eaten() {
    let (upstream, zoo) = scripted_zoo();
    let mut client = connect(zoo.addr());
    let (first, second) = (big_body(1 << 20), other_body(700_000));
    let mut sent = post_head("/one", first.len(), "").into_bytes();
    sent.extend_from_slice(&first);
    sent.extend_from_slice(post_head("/two", second.len(), "").as_bytes());
    sent.extend_from_slice(&second);
    let mut writer = client.try_clone().unwrap();
    // Both requests in one stream of bytes, the second's head right behind the first's body.
    let writing = std::thread::spawn(move || writer.write_all(&sent));
    let answers = [read_response(&mut client), read_response(&mut client)];
    writing.join().unwrap().unwrap();
    assert_eq!(answers[0].1, "echo /one 1048576");
    assert_eq!(answers[1].1, "echo /two 700000");
    let requests = upstream.take();
    assert_eq!(requests.len(), 2);
    assert!(
        recorded_body(&requests[0]) == first,
        "the first body changed"
    );
    assert!(
        recorded_body(&requests[1]) == second,
        "the second body changed"
    );
    assert!(line_count_reaches(&zoo, SPLICED, 2), "{}", zoo.output());
}

#[test]
fn expect_100_continue_is_answered_when_a_spliced_body_is_wanted() {
    let (upstream, zoo) = scripted_zoo();
    let mut client = connect(zoo.addr());
    let size = 1 << 20;
    let body = big_body(size);
    client
        .write_all(post_head("/expect", size, "Expect: 100-continue\r\n").as_bytes())
        .unwrap();
    let interim = read_head(&mut client);
    assert!(interim.starts_with("HTTP/1.1 100 Continue"), "{interim}");
    let mut writer = client.try_clone().unwrap();
    let sent = body.clone();
    let writing = std::thread::spawn(move || writer.write_all(&sent));
    let (head, echo) = read_response(&mut client);
    writing.join().unwrap().unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(echo, format!("echo /expect {size}"));
    assert!(recorded_body(&upstream.take()[0]) == body);
    assert!(line_count_reaches(&zoo, SPLICED, 1), "{}", zoo.output());
}

#[test]
fn a_large_body_over_max_body_is_still_refused() {
    let (upstream, zoo) = scripted_zoo();
    let mut client = connect(zoo.addr());
    client
        .write_all(post_head("/small", 1 << 20, "").as_bytes())
        .unwrap();
    let head = read_head(&mut client);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(upstream.take().is_empty(), "nothing went upstream");
    assert!(line_count_reaches(&zoo, SPLICED, 0), "{}", zoo.output());
}

#[test]
fn a_client_that_stops_halfway_cuts_the_upstream_request() {
    let (upstream, zoo) = scripted_zoo();
    let size = 1 << 20;
    let body = big_body(size);
    let mut client = connect(zoo.addr());
    client
        .write_all(post_head("/cut", size, "").as_bytes())
        .unwrap();
    client.write_all(&body[..size / 2]).unwrap();
    drop(client);
    // zoo fails the upstream request as the copy path does (400: the client's body could not
    // be read) and closes its connection: the upstream saw the body end short (it records
    // only whole requests), and a new request takes a new connection.
    let logged = access_line(&zoo, "/cut");
    assert_eq!(logged["status"], 400, "{logged}");
    assert!(
        // Waited for: the line reaches zoo's output on its own way, after the answer may have.
        line_count_reaches(&zoo, CUT, 1),
        "{}",
        zoo.output()
    );
    assert!(
        upstream.take().is_empty(),
        "no whole request reached the upstream"
    );
    let mut client = connect(zoo.addr());
    let mut sent = post_head("/after", 200_000, "").into_bytes();
    sent.extend_from_slice(&big_body(200_000));
    client.write_all(&sent).unwrap();
    let (_, echo) = read_response(&mut client);
    assert_eq!(echo, "echo /after 200000");
    assert!(
        util::poll_until(Duration::from_secs(5), || upstream.accepts() == 2),
        "the cut connection was not reused: {} accepted",
        upstream.accepts()
    );
    assert!(line_count_reaches(&zoo, SPLICED, 1), "{}", zoo.output());
}

#[test]
fn a_client_that_stalls_in_a_spliced_body_gets_408() {
    let (upstream, zoo) = scripted_zoo_with("client_body_timeout = \"1s\"");
    let mut client = connect(zoo.addr());
    let mut sent = post_head("/stall", 1 << 20, "").into_bytes();
    sent.extend_from_slice(&big_body(100_000));
    let began = std::time::Instant::now();
    client.write_all(&sent).unwrap();
    let head = read_head(&mut client);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}\n{}", zoo.output());
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    assert!(
        // Waited for: the line reaches zoo's output on its own way, after the answer may have.
        line_count_reaches(&zoo, CUT, 1),
        "the stalled body was being spliced\n{}",
        zoo.output()
    );
    assert!(upstream.take().is_empty());
}

#[test]
fn an_upstream_that_answers_before_a_spliced_body_ends_is_let_go_at_once() {
    // The upstream answers `/early` after the head and goes on reading the body; zoo relays
    // the answer and closes the client's connection (the rest of the body is never read).
    // The splice must end with it, not wait out the 60 s `client_body_timeout` (the default)
    // for pieces nobody will send while holding the upstream connection and a pipe.
    let (upstream, zoo) = scripted_zoo();
    let size = 1 << 20;
    let mut client = connect(zoo.addr());
    let mut sent = post_head("/early", size, "").into_bytes();
    sent.extend_from_slice(&big_body(size)[..100_000]);
    client.write_all(&sent).unwrap();
    let (head, body) = read_response(&mut client);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "early");
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rest = [0; 64];
    assert_eq!(
        client.read(&mut rest).map_err(|error| error.kind()),
        Ok(0),
        "zoo kept the client's connection with its body unread\n{}",
        zoo.output()
    );
    assert!(
        util::poll_until(Duration::from_secs(10), || zoo.output().contains(CUT)),
        "the splice still waits for the client\n{}",
        zoo.output()
    );
    assert!(
        upstream.take().is_empty(),
        "no whole request reached the upstream"
    );
}

#[test]
fn an_upload_over_tls_is_copied_whole() {
    // splice(2) cannot read a TLS stream's plaintext: the body goes through zoo's buffers,
    // byte for byte, and nothing is spliced.
    let upstream = Scripted::start();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    // Debug lines, as `start` gives them, to show what was not spliced; a TLS listener
    // cannot take `start`'s plain-HTTP readiness check (Zoo::start waits for its listening).
    let zoo = Zoo::start_wrapped(
        &["/usr/bin/env", "RUST_LOG=zoo=debug"],
        &format!(
            "listen = \"127.0.0.1:0\"\n\
             engine = \"zoo\"\n\
             tls = {{ cert = \"cert.pem\", key = \"key.pem\" }}\n\
             [routes]\n\
             \"/\" = {{ proxy = \"http://127.0.0.1:{}\" }}\n",
            upstream.port
        ),
        &[
            ("cert.pem", &certified.cert.pem()),
            ("key.pem", &certified.signing_key.serialize_pem()),
        ],
    );
    let size = 1 << 20;
    let body = big_body(size);
    let mut sent = post_head("/tls-up", size, "").into_bytes();
    sent.extend_from_slice(&body);
    let ca = certified.cert.der().clone();
    let addr = zoo.addr();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, echo) = runtime.block_on(async move {
        use tokio::io::AsyncWriteExt;
        let exchange = async {
            let mut tls = util::https::connect_tls(addr, ca, &[b"http/1.1"]).await;
            tls.write_all(&sent).await.unwrap();
            super::protocols::read_response(&mut tls).await
        };
        tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .expect("the TLS upload was answered within 10 s")
    });
    assert_eq!(status, "http/1.1 200 ok", "{}", zoo.output());
    assert_eq!(echo, format!("echo /tls-up {size}"));
    let seen = upstream.take();
    assert_eq!(seen.len(), 1);
    assert!(recorded_body(&seen[0]) == body, "the body arrived changed");
    assert!(
        !zoo.output().contains("spliced"),
        "a TLS client's body was spliced\n{}",
        zoo.output()
    );
}

/// A Node app on `SOCKET` that answers each request with its body's length and digest
/// ([`digest`]), as it read them.
const DIGEST_JS: &str = r#"
const http = require("http");
const server = http.createServer((req, res) => {
  let length = 0;
  let sum = 0;
  req.on("data", (chunk) => {
    for (const byte of chunk) sum = (sum * 31 + byte) % 1000000007;
    length += chunk.length;
  });
  req.on("end", () => {
    const body = `${length} ${sum}`;
    res.writeHead(200, { "Content-Length": body.length });
    res.end(body);
  });
});
server.listen(process.env.SOCKET);
"#;

/// What [`DIGEST_JS`] answers for `body`: a digest in which a byte out of place shows.
fn digest(body: &[u8]) -> String {
    let sum = body.iter().fold(0_u64, |sum, &byte| {
        (sum * 31 + u64::from(byte)) % 1_000_000_007
    });
    format!("{} {sum}", body.len())
}

#[test]
fn an_upload_to_a_unix_socket_app_is_spliced() {
    let run = tempfile::tempdir().unwrap();
    let zoo_run = format!("ZOO_RUN={}", run.path().display());
    let zoo = start(
        "\"/digest\" = { app = \"node\" }\n",
        &[&zoo_run],
        &[("digest.js", DIGEST_JS)],
        "[apps.node]\ncommand = \"node digest.js\"\nsocket = true\n",
    );
    let mut client = connect(zoo.addr());
    // The app may still be starting: the route waits for it.
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    for round in 1..=2 {
        let body = other_body(1 << 20);
        let mut sent = post_head("/digest", body.len(), "").into_bytes();
        sent.extend_from_slice(&body);
        let mut writer = client.try_clone().unwrap();
        let writing = std::thread::spawn(move || writer.write_all(&sent));
        let (head, answer) = read_response(&mut client);
        writing.join().unwrap().unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(answer, digest(&body), "round {round}");
        assert!(line_count_reaches(&zoo, SPLICED, round), "{}", zoo.output());
    }
}
