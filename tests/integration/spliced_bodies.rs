//! Response bodies of known length moved from the upstream's socket to the client's through a
//! pipe (splice(2), issue 19) on zoo's engine: they arrive whole and in order, over TCP and a
//! Unix socket, the upstream connection goes back to its pool after each, a small body is
//! still copied, and a body the upstream cuts short reaches the client cut, its connection
//! closed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::util::raw::{connect, read_head};
use crate::util::scripted::{Scripted, big_body};
use crate::util::{self, READY_DEADLINE, Zoo};

/// What zoo logs (at debug) for each spliced body.
const SPLICED: &str = "response body spliced";

/// zoo on its own engine (splicing is the engine's) with debug lines, `routes` its routes.
pub(super) fn start(routes: &str, wrapper: &[&str], files: &[(&str, &str)], apps: &str) -> Zoo {
    let config = format!(
        "listen = \"127.0.0.1:0\"\n\
         engine = \"zoo\"\n\
         {apps}\n\
         [routes]\n\
         \"/r\" = {{ respond = \"ready\\n\" }}\n\
         {routes}"
    );
    let wrapper = [&["/usr/bin/env", "RUST_LOG=zoo=debug"], wrapper].concat();
    let mut zoo = Zoo::start_wrapped(&wrapper, &config, files);
    zoo.wait_ready("/r", READY_DEADLINE);
    zoo
}

/// Sends `GET target` on `stream` and reads one response with a `Content-Length`: its head
/// and the body it got before the length was reached or the connection ended.
fn get(stream: &mut TcpStream, target: &str) -> (String, Vec<u8>) {
    write!(stream, "GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let head = read_head(stream);
    let length = content_length(&head);
    let mut body = vec![0; length];
    let mut got = 0;
    while got < length {
        match stream.read(&mut body[got..]) {
            Ok(0) | Err(_) => break,
            Ok(read) => got += read,
        }
    }
    body.truncate(got);
    (head, body)
}

/// The `Content-Length` of a response head.
pub(super) fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(str::to_owned)
        })
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no length in {head:?}"))
}

/// Whether zoo's count of `line` (a spliced body's) reaches `count`, and no more (its line
/// comes after the body's last byte, so it may trail the client's read a little).
pub(super) fn line_count_reaches(zoo: &Zoo, line: &str, count: usize) -> bool {
    let seen = || zoo.output().matches(line).count();
    util::poll_until(Duration::from_secs(5), || seen() >= count) && seen() == count
}

fn spliced_reaches(zoo: &Zoo, count: usize) -> bool {
    line_count_reaches(zoo, SPLICED, count)
}

/// A scripted upstream (tests/util/scripted.rs) and zoo proxying `/` to it.
fn scripted_zoo() -> (Scripted, Zoo) {
    let upstream = Scripted::start();
    let zoo = start(
        &format!(
            "\"/\" = {{ proxy = \"http://127.0.0.1:{}\" }}\n",
            upstream.port
        ),
        &[],
        &[],
        "",
    );
    (upstream, zoo)
}

#[test]
fn known_length_bodies_are_spliced_whole_and_their_upstream_connection_reused() {
    let (upstream, zoo) = scripted_zoo();
    let mut client = connect(zoo.addr());
    // Large, just over the threshold, small (copied), large again: one client connection.
    for (size, spliced) in [(1 << 20, 1), (70_000, 2), (1_000, 2), (3 << 20, 3)] {
        let (head, body) = get(&mut client, &format!("/big-{size}"));
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body.len(), size, "{head}");
        assert!(body == big_body(size), "the {size}-byte body differs");
        assert!(
            spliced_reaches(&zoo, spliced),
            "{spliced} spliced after {size} bytes\n{}",
            zoo.output()
        );
    }
    assert_eq!(
        upstream.accepts(),
        1,
        "each spliced body gave its upstream connection back for the next"
    );
}

#[test]
fn a_body_the_upstream_cuts_reaches_the_client_cut_and_closed() {
    let (_upstream, zoo) = scripted_zoo();
    let mut client = connect(zoo.addr());
    let size = 1 << 20;
    let (head, body) = get(&mut client, &format!("/big-cut-{size}"));
    assert!(head.contains(&format!("content-length: {size}")), "{head}");
    assert!(
        body.len() < size && body[..] == big_body(size)[..body.len()],
        "{} of {size} bytes, in order",
        body.len()
    );
    let mut rest = [0; 1];
    assert_eq!(
        client.read(&mut rest).unwrap(),
        0,
        "zoo closed the connection"
    );
    assert!(
        zoo.output().contains("spliced response body cut"),
        "{}",
        zoo.output()
    );
    // The next request gets a fresh upstream connection and its whole body.
    let mut client = connect(zoo.addr());
    let (_, body) = get(&mut client, "/big-200000");
    assert!(body == big_body(200_000));
}

/// A Node app that answers `/big?n=N` with N bytes of [`big_body`] and a length, on `SOCKET`.
const BIG_JS: &str = r#"
const http = require("http");
const server = http.createServer((req, res) => {
  const n = Number(new URL(req.url, "http://x").searchParams.get("n"));
  const body = Buffer.alloc(n);
  for (let i = 0; i < n; i++) body[i] = i % 251;
  res.writeHead(200, { "Content-Length": n });
  res.end(body);
});
server.listen(process.env.SOCKET);
"#;

#[test]
fn a_unix_socket_apps_body_is_spliced() {
    let run = tempfile::tempdir().unwrap();
    let zoo_run = format!("ZOO_RUN={}", run.path().display());
    let zoo = start(
        "\"/big\" = { app = \"node\" }\n",
        &[&zoo_run],
        &[("big.js", BIG_JS)],
        "[apps.node]\ncommand = \"node big.js\"\nsocket = true\n",
    );
    let mut client = connect(zoo.addr());
    // The app may still be starting: the route waits for it.
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    for round in 1..=2 {
        let (head, body) = get(&mut client, "/big?n=500000");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(body == big_body(500_000), "round {round}: the body differs");
        assert!(spliced_reaches(&zoo, round), "{}", zoo.output());
    }
}
