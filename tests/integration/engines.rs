//! zoo's two HTTP/1.1 engines side by side: the same raw requests (pipelined, chunked,
//! 100-continue, HEAD, HTTP/1.0, keep-alive and close, bad heads, CL+TE, oversized heads,
//! an upgrade) sent to a zoo with `engine = "hyper"` and one with `engine = "zoo"`, each in
//! front of its own scripted upstream (tests/util/scripted.rs). The bytes each upstream got
//! and the bytes each client got must be equal, modulo what docs/proxy.md ("Two HTTP/1.1
//! engines") lists: `Date`, and the cases marked otherwise below.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::scripted::Scripted;
use crate::util::{READY_DEADLINE, Zoo};

/// How long a client waits for more bytes before taking the answer as complete (a tunnel
/// stays open; everything else closes within the 300 ms `keepalive_timeout`).
const QUIET: Duration = Duration::from_millis(1500);

/// What the two engines are expected to do with a request.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// The same bytes to the upstream and to the client.
    Same,
    /// The zoo engine answers this status itself and forwards nothing; hyper's answers that.
    Refused { zoo: u16, hyper: u16 },
    /// The zoo engine forwards it (the app answers 200); hyper's answers that status.
    Forwarded { hyper: u16 },
    /// Both answer this status (the reasons' wording differs) and forward the same bytes.
    Status(u16),
    /// Both answer the same bytes; what reached the upstreams may differ.
    Answered(u16),
}

fn corpus() -> Vec<(&'static str, Vec<u8>, Expect)> {
    let many_fields: String = (0..1000)
        .map(|index| format!("x-f{index:04}: v\r\n"))
        .collect();
    vec![
        ("get", b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), Expect::Same),
        (
            "pipelined",
            b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                .to_vec(),
            Expect::Same,
        ),
        (
            "post-length",
            b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
            Expect::Same,
        ),
        (
            "post-chunked",
            b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
                .to_vec(),
            Expect::Same,
        ),
        (
            "post-then-get",
            b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nHost: x\r\n\r\n"
                .to_vec(),
            Expect::Same,
        ),
        (
            "expect-continue",
            b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello"
                .to_vec(),
            Expect::Same,
        ),
        (
            "expect-refused",
            b"POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\nExpect: 100-continue\r\n\r\n"
                .to_vec(),
            Expect::Same,
        ),
        (
            "unread-body",
            [
                &b"POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n"[..],
                &[b'x'; 50],
                b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
            ]
            .concat(),
            Expect::Same,
        ),
        ("head", b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), Expect::Same),
        ("head-respond", b"HEAD /r/a HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), Expect::Same),
        ("respond-close", b"GET /r/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(), Expect::Same),
        ("not-found", b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), Expect::Same),
        ("http10", b"GET /a HTTP/1.0\r\n\r\n".to_vec(), Expect::Same),
        (
            "http10-keep-alive",
            b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n".to_vec(),
            Expect::Same,
        ),
        ("close", b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(), Expect::Same),
        ("response-chunked", b"GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), Expect::Same),
        (
            "response-trailers",
            b"GET /chunked HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n".to_vec(),
            Expect::Same,
        ),
        (
            "response-chunked-to-http10",
            b"GET /chunked HTTP/1.0\r\n\r\n".to_vec(),
            Expect::Same,
        ),
        ("response-204", b"GET /204 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), Expect::Same),
        ("response-until-close", b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), Expect::Same),
        (
            "websocket",
            b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\nping"
                .to_vec(),
            Expect::Same,
        ),
        ("connect", b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n".to_vec(), Expect::Same),
        ("bad-field", b"GET / HTTP/1.1\r\nHost x\r\n\r\n".to_vec(), Expect::Refused { zoo: 400, hyper: 400 }),
        ("bad-version", b"GET / HTTP/2.5\r\nHost: x\r\n\r\n".to_vec(), Expect::Refused { zoo: 505, hyper: 400 }),
        (
            "length-and-chunked",
            b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                .to_vec(),
            Expect::Refused { zoo: 400, hyper: 200 },
        ),
        (
            "length-list",
            b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello".to_vec(),
            Expect::Refused { zoo: 400, hyper: 400 },
        ),
        (
            "head-over-256-KiB",
            format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(300_000)).into_bytes(),
            Expect::Refused { zoo: 431, hyper: 431 },
        ),
        ("no-host", b"GET /a HTTP/1.1\r\n\r\n".to_vec(), Expect::Refused { zoo: 400, hyper: 400 }),
        (
            "two-hosts",
            b"GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n".to_vec(),
            Expect::Refused { zoo: 400, hyper: 400 },
        ),
        (
            "gzip-coding",
            b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n".to_vec(),
            Expect::Refused { zoo: 501, hyper: 501 },
        ),
        (
            "bad-chunk-size",
            b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nhello\r\n0\r\n\r\n"
                .to_vec(),
            Expect::Refused { zoo: 400, hyper: 400 },
        ),
        // Upstream behaviours (tests/util/scripted.rs), for the two HTTP/1.1 clients.
        ("upstream-connection-close", b"GET /conn-close HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), Expect::Same),
        // hyper's server echoes the upstream's HTTP/1.0 in its status line, the zoo engine
        // answers in the client's version (docs/proxy.md lists it).
        ("upstream-http10", b"GET /http10 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), Expect::Status(200)),
        ("upstream-length-and-chunked", b"GET /cl-te HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), Expect::Same),
        (
            "upstream-bad-chunk-before-head",
            b"GET /bad-chunk-first HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            Expect::Status(502),
        ),
        (
            "upstream-bad-chunk-after-head",
            b"GET /bad-chunk-later HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            Expect::Same,
        ),
        ("upstream-unasked-101", b"GET /unasked-101 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), Expect::Same),
        // Both answer the early response whole; the upload behind it reaches the upstream
        // whole on hyper's server, and on the zoo engine only if it had all arrived when the
        // response ended (the engine then closes the client's connection: docs/proxy.md).
        (
            "upstream-answers-early",
            [
                &b"POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n"[..],
                &vec![b'u'; 1 << 20],
            ]
            .concat(),
            Expect::Answered(200),
        ),
        // The upstream closes this connection once it idles in zoo's pool; the next request
        // (the next case) goes on a fresh one.
        ("upstream-closes-idle", b"GET /idle-close HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), Expect::Same),
        ("after-idle-close", b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), Expect::Same),
        (
            "1000-fields",
            format!("GET /a HTTP/1.1\r\nHost: x\r\n{many_fields}\r\n").into_bytes(),
            Expect::Forwarded { hyper: 431 },
        ),
    ]
}

/// A zoo with `engine` in front of `upstream`.
fn zoo(engine: &str, upstream: &Scripted) -> Zoo {
    let config = format!(
        "listen = \"127.0.0.1:0\"\n\
         engine = \"{engine}\"\n\
         request_id = false\n\
         keepalive_timeout = \"300ms\"\n\
         [routes]\n\
         \"/\" = {{ proxy = \"http://127.0.0.1:{port}\" }}\n\
         \"/r\" = {{ respond = \"hi {{path}}\\n\" }}\n\
         \"/nothing\" = {{ respond = \"gone\\n\", status = 404 }}\n\
         \"/small\" = {{ proxy = \"http://127.0.0.1:{port}\", max_body = 10 }}\n",
        port = upstream.port
    );
    let mut zoo = Zoo::start(&config, &[]);
    zoo.wait_ready("/r", READY_DEADLINE);
    zoo
}

/// Sends `request` on a new connection; every byte back until zoo closes or goes quiet.
fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(QUIET)).unwrap();
    stream.set_write_timeout(Some(QUIET)).unwrap();
    // zoo may answer (431) and close before a long head is all written.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(read) => answer.extend_from_slice(&chunk[..read]),
        }
    }
    answer
}

/// The bytes with their `Date` lines taken out, and `upstream`'s address (in a 502's reason)
/// named `upstream`.
fn normalised(bytes: &[u8], upstream: &Scripted) -> String {
    let text =
        String::from_utf8_lossy(bytes).replace(&format!("127.0.0.1:{}", upstream.port), "upstream");
    text.split("\r\n")
        .filter(|line| !line.starts_with("date: "))
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// What `upstream` got since the last look, its own address (in `Host`) named `upstream`.
fn forwarded(upstream: &Scripted) -> Vec<String> {
    let address = format!("127.0.0.1:{}", upstream.port);
    upstream
        .take()
        .iter()
        .map(|request| String::from_utf8_lossy(request).replace(&address, "upstream"))
        .collect()
}

fn status(answer: &[u8]) -> Option<u16> {
    std::str::from_utf8(answer.get(9..12)?).ok()?.parse().ok()
}

#[test]
fn the_zoo_engine_forwards_and_answers_as_hypers_does() {
    let (hyper_upstream, zoo_upstream) = (Scripted::start(), Scripted::start());
    let (hyper, zoo) = (zoo("hyper", &hyper_upstream), zoo("zoo", &zoo_upstream));
    let mut table = String::from("case | hyper | zoo\n");
    let mut failures = Vec::new();
    for (name, request, expect) in corpus() {
        let (hyper_answer, zoo_answer) = thread::scope(|scope| {
            let hyper = scope.spawn(|| exchange(hyper.addr(), &request));
            let zoo = exchange(zoo.addr(), &request);
            (hyper.join().unwrap(), zoo)
        });
        // Both answered, so the upstreams have recorded all they will.
        let (hyper_forwarded, zoo_forwarded) =
            (forwarded(&hyper_upstream), forwarded(&zoo_upstream));
        table.push_str(&format!(
            "{name} | {:?} | {:?}\n",
            status(&hyper_answer),
            status(&zoo_answer)
        ));
        let fine = match expect {
            Expect::Same => {
                normalised(&zoo_answer, &zoo_upstream) == normalised(&hyper_answer, &hyper_upstream)
                    && hyper_forwarded == zoo_forwarded
            }
            Expect::Answered(both) => {
                status(&zoo_answer) == Some(both)
                    && normalised(&zoo_answer, &zoo_upstream)
                        == normalised(&hyper_answer, &hyper_upstream)
            }
            Expect::Status(both) => {
                status(&zoo_answer) == Some(both)
                    && status(&hyper_answer) == Some(both)
                    && hyper_forwarded == zoo_forwarded
            }
            Expect::Refused { zoo, hyper } => {
                status(&zoo_answer) == Some(zoo)
                    && status(&hyper_answer) == Some(hyper)
                    && zoo_forwarded.is_empty()
            }
            Expect::Forwarded { hyper } => {
                status(&zoo_answer) == Some(200)
                    && status(&hyper_answer) == Some(hyper)
                    && zoo_forwarded.len() == 1
            }
        };
        if !fine {
            failures.push(format!(
                "{name} ({expect:?}):\n  hyper: {:?}\n  zoo:   {:?}\n  hyper's upstream got {:?}\n  \
                 zoo's upstream got   {:?}",
                String::from_utf8_lossy(&hyper_answer[..hyper_answer.len().min(600)]),
                String::from_utf8_lossy(&zoo_answer[..zoo_answer.len().min(600)]),
                hyper_forwarded,
                zoo_forwarded,
            ));
        }
    }
    println!("{table}");
    assert!(
        failures.is_empty(),
        "{} cases differ:\n{}\n{table}\nhyper's zoo:\n{}\nzoo's zoo:\n{}",
        failures.len(),
        failures.join("\n"),
        hyper.output(),
        zoo.output()
    );
}

/// Both clients keep an upstream connection alive between requests: two requests, each on
/// a new client connection, reach the upstream on one connection.
#[test]
fn both_clients_reuse_an_upstream_connection() {
    for engine in ["hyper", "zoo"] {
        let upstream = Scripted::start();
        let zoo = zoo(engine, &upstream);
        for path in ["/a", "/b"] {
            let answer = exchange(
                zoo.addr(),
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            );
            assert_eq!(
                status(&answer),
                Some(200),
                "{engine}: {path}\n{}",
                zoo.output()
            );
        }
        assert_eq!(upstream.take().len(), 2, "{engine}");
        assert_eq!(
            upstream.accepts(),
            1,
            "{engine}: one upstream connection for both requests"
        );
    }
}

/// A bad request line whose head has not ended is answered when the line ends, not at the
/// header timeout: the zoo engine parses at the end of a head and at the end of the first
/// line. (hyper's engine waits for more here: a difference docs/proxy.md lists.)
#[test]
fn a_bad_request_line_is_answered_before_its_head_ends() {
    let upstream = Scripted::start();
    let zoo = zoo("zoo", &upstream);
    let mut stream = TcpStream::connect(zoo.addr()).expect("connect");
    stream.set_read_timeout(Some(QUIET)).unwrap();
    stream.write_all(b"GET /a HTTP/1.1").unwrap();
    // Apart, so that the line's end comes in a read of its own.
    thread::sleep(Duration::from_millis(200));
    stream.write_all(b"x\r\nHost: x\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert_eq!(
        status(&answer),
        Some(400),
        "{:?}\n{}",
        String::from_utf8_lossy(&answer),
        zoo.output()
    );
    assert!(upstream.take().is_empty(), "nothing is forwarded");
}
