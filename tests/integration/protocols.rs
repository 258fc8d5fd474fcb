//! Protocols through zoo, with real clients and servers: WebSocket echo (boundary lengths to
//! 16 MiB, 10,000 messages, permessage-deflate) and close frames to a
//! FastAPI app (through zoo and direct, compared), SSE flushed before the app ends the stream,
//! a 1 GiB upload streamed with zoo's peak RSS bounded, h2c with prior knowledge on the HTTP/1.1
//! port, gRPC to a grpcio server over `protocol = "h2c"`, and raw-socket cases for limits
//! (414/431/413/504/502, slowloris), request hygiene and the no-duplicate-POST retry rule.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::websocket::ws_frame;
use crate::util::{self, READY_DEADLINE, Zoo, http};

const APP_PY: &str = include_str!("protocols/app.py");
/// The page `app.py` serves at `/browser`, for the headless Chromium test (`browser.rs`).
const WS_PAGE_HTML: &str = include_str!("protocols/ws_page.html");
pub(super) const IO_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// Reads a response head (through the blank line) byte by byte, leaving the rest unread.
pub(super) fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!(
                "reading a head: {other:?} after {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

// ---------------------------------------------------------------------------------------------
// WebSocket, with raw frames so close codes and lengths are exactly what the test says.

/// A WebSocket frame as the test sees it: opcode and payload (FIN is always set here).
type Frame = (u8, Vec<u8>);

fn ws_open(addr: SocketAddr) -> TcpStream {
    let mut stream = connect(addr);
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: zoo.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101"), "handshake: {head}");
    // RFC 6455's worked example: this key's accept value.
    assert!(
        head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "handshake: {head}"
    );
    stream
}

fn ws_send(stream: &mut TcpStream, opcode: u8, payload: &[u8]) {
    stream.write_all(&ws_frame(0x80 | opcode, payload)).unwrap();
}

/// The next frame's first byte (FIN, RSV, opcode) and payload length, read from its head.
fn ws_frame_head(stream: &mut TcpStream) -> (u8, usize) {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).expect("frame head");
    let len = match head[1] & 0x7f {
        126 => {
            let mut ext = [0u8; 2];
            stream.read_exact(&mut ext).unwrap();
            usize::from(u16::from_be_bytes(ext))
        }
        127 => {
            let mut ext = [0u8; 8];
            stream.read_exact(&mut ext).unwrap();
            usize::try_from(u64::from_be_bytes(ext)).unwrap()
        }
        len => usize::from(len),
    };
    (head[0], len)
}

fn ws_recv(stream: &mut TcpStream) -> Frame {
    let (first, len) = ws_frame_head(stream);
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).unwrap();
    (first & 0x0f, payload)
}

/// One conversation: text and binary echoes of the boundary lengths, a ping, a clean close.
/// Returns what came back, frame by frame, then whether the server closed the socket.
fn ws_conversation(addr: SocketAddr) -> (Vec<Frame>, bool) {
    let mut stream = ws_open(addr);
    let mut seen = Vec::new();
    ws_send(&mut stream, 0x1, "héllo".as_bytes());
    seen.push(ws_recv(&mut stream));
    for len in [0, 125, 126, 65535, 65536, 1 << 20] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        ws_send(&mut stream, 0x2, &payload);
        let (opcode, echoed) = ws_recv(&mut stream);
        assert!(echoed == payload, "binary echo of {len} bytes differs");
        seen.push((opcode, echoed.len().to_be_bytes().to_vec()));
    }
    ws_send(&mut stream, 0x9, b"are you there");
    seen.push(ws_recv(&mut stream));
    ws_send(&mut stream, 0x8, &[0x03, 0xe8, b'b', b'y', b'e']);
    seen.push(ws_recv(&mut stream));
    let mut rest = Vec::new();
    let closed = stream.read_to_end(&mut rest).is_ok() && rest.is_empty();
    (seen, closed)
}

/// Frames no well-behaved client sends, or sends split: each case on a fresh connection, then
/// what came back until the server closed (or a 2 s quiet spell). Raw bytes are masked by
/// [`ws_frame`] except where a case builds its own.
fn ws_edge_cases(addr: SocketAddr) -> Vec<(&'static str, Vec<Frame>)> {
    let cases: [(&str, Vec<u8>); 8] = [
        ("rsv1 without extension", ws_frame(0xC1, b"x")),
        ("reserved opcode 0x3", ws_frame(0x83, b"x")),
        ("invalid utf-8 text", ws_frame(0x81, &[0xff, 0xfe])),
        (
            "fragmented text",
            [ws_frame(0x01, b"frag"), ws_frame(0x80, b"mented")].concat(),
        ),
        ("close 1001", ws_frame(0x88, &[0x03, 0xe9])),
        ("close without code", ws_frame(0x88, b"")),
        ("close code 999", ws_frame(0x88, &[0x03, 0xe7])),
        ("unmasked frame", vec![0x81, 0x01, b'x']),
    ];
    cases
        .into_iter()
        .map(|(name, bytes)| {
            let mut stream = ws_open(addr);
            stream
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            stream.write_all(&bytes).unwrap();
            let mut frames = Vec::new();
            while let Some(frame) = ws_try_recv(&mut stream) {
                frames.push(frame);
            }
            (name, frames)
        })
        .collect()
}

/// The next frame, or `None` at EOF, reset or a quiet read timeout.
fn ws_try_recv(stream: &mut TcpStream) -> Option<Frame> {
    let mut first = [0u8; 1];
    match stream.read(&mut first) {
        Ok(1) => {}
        _ => return None,
    }
    let mut rest = [0u8; 1];
    stream.read_exact(&mut rest).ok()?;
    let len = usize::from(rest[0] & 0x7f);
    assert!(len < 126, "edge cases get short answers");
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).ok()?;
    Some((first[0] & 0x0f, payload))
}

#[test]
fn websocket_edge_cases_through_zoo_equal_direct() {
    let (zoo, port) = fastapi_zoo("");
    let direct = ws_edge_cases(SocketAddr::from(([127, 0, 0, 1], port)));
    let through = ws_edge_cases(zoo.addr());
    for ((name, direct), (_, through)) in direct.iter().zip(&through) {
        assert_eq!(
            through,
            direct,
            "case `{name}`: through zoo vs direct\n{}",
            zoo.output()
        );
    }
    let summary: Vec<String> = through
        .iter()
        .map(|(name, frames)| format!("{name}: {frames:?}"))
        .collect();
    eprintln!(
        "WebSocket edge cases, {} equal through zoo and direct:\n  {}",
        through.len(),
        summary.join("\n  ")
    );
}

/// zoo in front of `app.py` on a known port; `root` adds top-level keys. The other suites that
/// need a real FastAPI app (`browser.rs`, `h2_clients.rs`, `sse.rs`, `h2_websocket.rs`) use this
/// one too.
pub(super) fn fastapi_zoo(root: &str) -> (Zoo, u16) {
    let (mut zoo, port) = fastapi_zoo_with(root, &[]);
    zoo.wait_ready("/ping", READY_DEADLINE);
    (zoo, port)
}

/// [`fastapi_zoo`] with `files` written next to `zoo.toml` (a certificate for `tls`, say);
/// returns once the app answers on its own port, whatever zoo's listener speaks.
pub(super) fn fastapi_zoo_with(root: &str, files: &[(&str, &str)]) -> (Zoo, u16) {
    util::require_uvicorn();
    let port = util::free_port();
    let config = format!(
        "listen = \"127.0.0.1:0\"\n\
         {root}\n\
         \n\
         [apps.py]\n\
         command = \"uvicorn app:app --host 127.0.0.1 --port $PORT --ws wsproto --log-level warning\"\n\
         port = {port}\n\
         \n\
         [routes]\n\
         \"/\" = {{ app = \"py\" }}\n"
    );
    let zoo = Zoo::start(
        &config,
        &[&[("app.py", APP_PY), ("ws_page.html", WS_PAGE_HTML)], files].concat(),
    );
    let app = SocketAddr::from(([127, 0, 0, 1], port));
    assert!(
        util::poll_until(READY_DEADLINE, || http::get(app, "/ping")
            .is_ok_and(|response| response.status == 200)),
        "the app did not answer on its port\n{}",
        zoo.output()
    );
    (zoo, port)
}

#[test]
fn websocket_echo_and_close_through_zoo_equal_direct() {
    let (zoo, port) = fastapi_zoo("");
    let direct = ws_conversation(SocketAddr::from(([127, 0, 0, 1], port)));
    let through = ws_conversation(zoo.addr());
    assert_eq!(
        through,
        direct,
        "through zoo vs direct differ\n{}",
        zoo.output()
    );
    let (frames, closed) = through;
    assert_eq!(frames[0], (0x1, "héllo".as_bytes().to_vec()));
    assert_eq!(
        frames[frames.len() - 2],
        (0xA, b"are you there".to_vec()),
        "pong"
    );
    assert_eq!(frames[frames.len() - 1].0, 0x8, "close frame back");
    assert_eq!(
        frames[frames.len() - 1].1[..2],
        [0x03, 0xe8],
        "close code 1000"
    );
    assert!(
        closed,
        "the tunnel should close after the close handshake\n{}",
        zoo.output()
    );
}

/// Opens a WebSocket with extra request header lines (each ending in `\r\n`); returns the
/// stream and the response head with its `Date` line dropped (the only part that varies).
fn ws_handshake(addr: SocketAddr, extra: &str) -> (TcpStream, String) {
    let mut stream = connect(addr);
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: zoo.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101"), "handshake: {head}");
    let head: Vec<&str> = head
        .split("\r\n")
        .filter(|line| !line.to_ascii_lowercase().starts_with("date:"))
        .collect();
    (stream, head.join("\r\n"))
}

/// A whole message: the first frame's opcode and RSV1 bit, then the payloads of it and its
/// continuation frames joined (a server may fragment what it sends).
fn ws_recv_message(stream: &mut TcpStream) -> (u8, bool, Vec<u8>) {
    let mut first: Option<(u8, bool)> = None;
    let mut message = Vec::new();
    loop {
        let (head, len) = ws_frame_head(stream);
        let start = message.len();
        message.resize(start + len, 0);
        stream.read_exact(&mut message[start..]).unwrap();
        first.get_or_insert((head & 0x0f, head & 0x40 != 0));
        if head & 0x80 != 0 {
            let (opcode, rsv1) = first.unwrap();
            return (opcode, rsv1, message);
        }
    }
}

/// Sends one frame with the given first byte (FIN, RSV and opcode), masked.
fn ws_send_raw(stream: &mut TcpStream, first: u8, payload: &[u8]) {
    stream.write_all(&ws_frame(first, payload)).unwrap();
}

/// One case's observable result, compared through zoo vs direct.
#[derive(Debug, PartialEq)]
struct WsCase {
    name: String,
    /// What came back, summarised: opcode, RSV1, length, and whether it equals what was sent
    /// (or, for compressed replies, their bytes).
    result: String,
    took: Duration,
}

const MIB: usize = 1 << 20;

/// Echo of every boundary length as text and as binary, each on a fresh connection, then the
/// clean close. Text payloads are ASCII (valid UTF-8 at any cut).
fn ws_length_cases(addr: SocketAddr) -> Vec<WsCase> {
    let mut cases = Vec::new();
    for len in [0, 125, 126, 65535, 65536, MIB, 16 * MIB] {
        for (kind, opcode) in [("text", 0x1u8), ("binary", 0x2)] {
            let payload: Vec<u8> = if opcode == 0x1 {
                (0..len).map(|i| b'a' + (i % 26) as u8).collect()
            } else {
                (0..len).map(|i| (i % 251) as u8).collect()
            };
            let started = Instant::now();
            let mut stream = ws_open(addr);
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            ws_send(&mut stream, opcode, &payload);
            let (op, rsv1, echoed) = ws_recv_message(&mut stream);
            let result = if op == 0x8 {
                // Refused (too big for the app, say): the close frame says why.
                format!("close {:?}", String::from_utf8_lossy(&echoed))
            } else {
                ws_send(&mut stream, 0x8, &[0x03, 0xe8]);
                let close = ws_recv_message(&mut stream);
                format!(
                    "opcode {op} rsv1 {rsv1} len {} same {} then close {:?}",
                    echoed.len(),
                    echoed == payload,
                    close.2
                )
            };
            cases.push(WsCase {
                name: format!("{kind} {len}"),
                result,
                took: started.elapsed(),
            });
        }
    }
    cases
}

/// 10,000 small messages on one connection, written by a thread while this one reads the
/// echoes: every echo in order and equal.
fn ws_many_messages(addr: SocketAddr) -> WsCase {
    const COUNT: usize = 10_000;
    let mut stream = ws_open(addr);
    let mut writer = stream.try_clone().unwrap();
    let started = Instant::now();
    let sending = thread::spawn(move || {
        let mut batch = Vec::new();
        for i in 0..COUNT {
            batch.extend(ws_frame(0x81, format!("message {i}").as_bytes()));
            if batch.len() > 16 * 1024 {
                writer.write_all(&batch).unwrap();
                batch.clear();
            }
        }
        writer.write_all(&batch).unwrap();
    });
    let mut in_order = 0;
    for i in 0..COUNT {
        let (op, _, echoed) = ws_recv_message(&mut stream);
        if op == 0x1 && echoed == format!("message {i}").as_bytes() {
            in_order += 1;
        }
    }
    sending.join().unwrap();
    ws_send(&mut stream, 0x8, &[0x03, 0xe8]);
    let close = ws_recv_message(&mut stream);
    WsCase {
        name: format!("{COUNT} small text messages on one connection"),
        result: format!("{in_order} echoed in order, then close {:?}", close.2),
        took: started.elapsed(),
    }
}

/// `permessage-deflate` negotiated end to end: the handshake's extension header, then a
/// compressed message (a deflate stored block, which needs no compressor here) and an
/// uncompressed one, whose echoes the app compresses. The compressed replies are compared byte
/// for byte (same zlib, same sequence), and inflated to check their content.
fn ws_deflate_cases(addr: SocketAddr) -> Vec<WsCase> {
    let started = Instant::now();
    let (mut stream, head) = ws_handshake(
        addr,
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
    );
    // Header names and the tokens of `Connection`/`Upgrade` are case-insensitive and their
    // order carries no meaning (hyper writes lowercase names in its own order): compare the
    // sorted, case-folded lines, values kept as sent otherwise.
    let mut lines: Vec<String> = head
        .split("\r\n")
        .filter(|line| !line.is_empty())
        .map(|line| match line.split_once(':') {
            Some((name, value)) => {
                let name = name.to_ascii_lowercase();
                let value = value.trim();
                if name == "connection" || name == "upgrade" {
                    format!("{name}: {}", value.to_ascii_lowercase())
                } else {
                    format!("{name}: {value}")
                }
            }
            None => line.to_owned(),
        })
        .collect();
    lines.sort();
    let mut cases = vec![WsCase {
        name: "permessage-deflate handshake".to_owned(),
        result: lines.join(" | "),
        took: started.elapsed(),
    }];
    let text: Vec<u8> = b"zoo zoo zoo ".repeat(5000);
    // RFC 7692 7.2.1: the deflate stream without its final empty stored block's 00 00 FF FF.
    let len = u16::try_from(text.len()).unwrap();
    let mut stored = vec![0x00];
    stored.extend_from_slice(&len.to_le_bytes());
    stored.extend_from_slice(&(!len).to_le_bytes());
    stored.extend_from_slice(&text);
    let mut replies = Vec::new();
    for (name, first, payload) in [
        ("compressed text (stored block)", 0xC1u8, &stored),
        ("uncompressed text on the deflate connection", 0x81, &text),
    ] {
        let started = Instant::now();
        ws_send_raw(&mut stream, first, payload);
        let (op, rsv1, echoed) = ws_recv_message(&mut stream);
        replies.push((name, op, rsv1, echoed, started.elapsed()));
    }
    // One inflater for the whole connection: the app may keep its window between messages.
    let compressed: Vec<&[u8]> = replies
        .iter()
        .filter(|r| r.2)
        .map(|r| r.3.as_slice())
        .collect();
    let mut inflated = inflate(&compressed).into_iter();
    for (name, op, rsv1, echoed, took) in replies {
        let content = if rsv1 {
            inflated.next().unwrap()
        } else {
            echoed.clone()
        };
        cases.push(WsCase {
            name: name.to_owned(),
            result: format!(
                "opcode {op} rsv1 {rsv1} wire len {} inflated same {} wire bytes {:02x?}",
                echoed.len(),
                content == text,
                echoed
            ),
            took,
        });
    }
    ws_send(&mut stream, 0x8, &[0x03, 0xe8]);
    let close = ws_recv_message(&mut stream);
    cases.push(WsCase {
        name: "close after deflate".to_owned(),
        result: format!("{:?}", close.2),
        took: started.elapsed(),
    });
    cases
}

/// Inflates the permessage-deflate payloads of one connection, in order, with one inflater
/// (context takeover), using the venv's Python zlib (no Rust inflater is a zoo dependency).
fn inflate(payloads: &[&[u8]]) -> Vec<Vec<u8>> {
    const SCRIPT: &str = "import sys, zlib\n\
        d = zlib.decompressobj(-15)\n\
        data = sys.stdin.buffer.read()\n\
        while data:\n\
        \x20   n = int.from_bytes(data[:4], 'big')\n\
        \x20   out = d.decompress(data[4:4 + n] + b'\\x00\\x00\\xff\\xff')\n\
        \x20   sys.stdout.buffer.write(len(out).to_bytes(4, 'big') + out)\n\
        \x20   data = data[4 + n:]\n";
    let mut input = Vec::new();
    for payload in payloads {
        input.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
        input.extend_from_slice(payload);
    }
    let mut child = std::process::Command::new(util::venv_bin().join("python"))
        .args(["-c", SCRIPT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python");
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "inflate failed");
    let mut rest = out.stdout.as_slice();
    let mut messages = Vec::new();
    while rest.len() >= 4 {
        let n = usize::try_from(u32::from_be_bytes(rest[..4].try_into().unwrap())).unwrap();
        messages.push(rest[4..4 + n].to_vec());
        rest = &rest[4 + n..];
    }
    messages
}

#[test]
fn websocket_lengths_deflate_and_many_messages_through_zoo_equal_direct() {
    // The handshake's headers are compared with the app's own: without zoo's request ID.
    let (zoo, port) = fastapi_zoo("request_id = false");
    let direct_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let run = |addr| {
        let mut cases = ws_length_cases(addr);
        cases.push(ws_many_messages(addr));
        cases.extend(ws_deflate_cases(addr));
        cases
    };
    let direct = run(direct_addr);
    let through = run(zoo.addr());
    assert_eq!(through.len(), direct.len());
    let mut report = Vec::new();
    for (d, t) in direct.iter().zip(&through) {
        assert_eq!(
            (&t.name, &t.result),
            (&d.name, &d.result),
            "through zoo vs direct\n{}",
            zoo.output()
        );
        let result: String = t.result.chars().take(100).collect();
        report.push(format!(
            "{}: {result}; direct {:?}, through zoo {:?}",
            t.name, d.took, t.took
        ));
    }
    eprintln!(
        "WebSocket cases, {} equal through zoo and direct:\n  {}",
        through.len(),
        report.join("\n  ")
    );
    // What the comparison alone cannot tell: the cases did what they are meant to.
    for case in &through {
        if case.name.starts_with("text") || case.name.starts_with("binary") {
            assert!(case.result.contains("same true"), "{case:?}");
        }
    }
    assert!(
        through
            .iter()
            .any(|c| c.result.starts_with("10000 echoed in order"))
    );
    let deflate: Vec<&WsCase> = through
        .iter()
        .filter(|c| c.name.contains("deflate") || c.name.contains("compressed"))
        .collect();
    assert!(
        deflate[0]
            .result
            .to_ascii_lowercase()
            .contains("sec-websocket-extensions: permessage-deflate"),
        "not negotiated: {}",
        deflate[0].result
    );
    for case in &deflate[1..3] {
        assert!(
            case.result.contains("rsv1 true") && case.result.contains("inflated same true"),
            "{case:?}"
        );
    }
}

/// uvicorn's close code when it shuts down (1012, service restart), as a close payload.
pub(super) const SERVICE_RESTART: [u8; 2] = [0x03, 0xf4];

#[test]
fn shutdown_drains_requests_then_the_app_closes_open_websockets_through_zoo() {
    use nix::sys::signal::{Signal, kill};

    let (mut zoo, port) = fastapi_zoo("grace = \"10s\"");
    let mut websocket = ws_open(zoo.addr());
    // An SSE stream in flight: zoo lets it finish before it stops the app.
    let mut sse = BufReader::new(connect(zoo.addr()));
    sse.get_mut()
        .write_all(b"GET /sse HTTP/1.1\r\nHost: zoo.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut seen = String::new();
    while !seen.contains("data: first") {
        assert!(sse.read_line(&mut seen).unwrap() > 0, "{seen:?}");
    }
    kill(zoo.pid(), Signal::SIGTERM).unwrap();
    let stopping = Instant::now();
    assert!(
        zoo.wait_for_line(IO_TIMEOUT, |_, line| line.contains("shutting down")),
        "{}",
        zoo.output()
    );
    // While the request drains, the tunnel works and the app is up.
    ws_send(&mut websocket, 0x1, b"still there?");
    assert_eq!(
        ws_recv(&mut websocket),
        (0x1, b"still there?".to_vec()),
        "{}",
        zoo.output()
    );
    // The stream ends (released at the app itself: zoo no longer accepts), the drain is over.
    let release = http::exchange(
        SocketAddr::from(([127, 0, 0, 1], port)),
        b"POST /release HTTP/1.1\r\nHost: app\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        IO_TIMEOUT,
    )
    .unwrap();
    assert!(release.starts_with(b"HTTP/1.1 200"));
    let mut rest = String::new();
    sse.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("data: last"), "{rest:?}\n{}", zoo.output());
    // Then the app is stopped and closes the WebSocket itself: its close frame reaches the
    // client through the tunnel, before the EOF.
    assert_eq!(
        ws_recv(&mut websocket),
        (0x8, SERVICE_RESTART.to_vec()),
        "the app's close frame\n{}",
        zoo.output()
    );
    let mut after = Vec::new();
    websocket.read_to_end(&mut after).unwrap();
    assert!(after.is_empty(), "EOF right after the close: {after:?}");
    drop(websocket);
    let status = zoo.wait_exit(util::STOP_DEADLINE);
    let took = stopping.elapsed();
    assert_eq!(
        status.and_then(|status| status.code()),
        Some(0),
        "the app stopped cleanly, nothing was killed\n{}",
        zoo.output()
    );
    assert!(
        took < Duration::from_secs(8),
        "zoo took {took:?}: the open WebSocket held up the stop\n{}",
        zoo.output()
    );
}

#[test]
fn reload_keeps_open_websockets_working() {
    let (zoo, _) = fastapi_zoo("");
    let mut open = ws_open(zoo.addr());
    ws_send(&mut open, 0x1, b"before");
    assert_eq!(ws_recv(&mut open), (0x1, b"before".to_vec()));
    // A reload that changes the routes swaps the table; the tunnel does not hold it.
    let config_path = zoo.dir().join("zoo.toml");
    let config = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(
        &config_path,
        config.replace("[routes]\n", "[routes]\n\"/new\" = { respond = \"new\" }\n"),
    )
    .unwrap();
    zoo.cli_ok(&["reload"], Duration::from_secs(10));
    zoo.assert_body("/new", "new");
    ws_send(&mut open, 0x1, b"after the reload");
    assert_eq!(
        ws_recv(&mut open),
        (0x1, b"after the reload".to_vec()),
        "{}",
        zoo.output()
    );
}

#[test]
fn sse_first_event_arrives_before_the_stream_ends_and_uploads_stream() {
    let (zoo, _) = fastapi_zoo("");
    let mut stream = connect(zoo.addr());
    stream
        .write_all(b"GET /sse HTTP/1.1\r\nHost: zoo.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{}", zoo.output());
    assert!(head.contains("text/event-stream"), "{head}");
    let mut reader = BufReader::new(stream);
    let mut seen = String::new();
    // The app cannot end the stream until /release: the first event must come through first.
    while !seen.contains("data: first") {
        let mut line = String::new();
        let read = reader
            .read_line(&mut line)
            .expect("first SSE event through zoo");
        assert!(read > 0, "stream ended before the first event: {seen:?}");
        seen.push_str(&line);
    }
    let release = http::exchange(
        zoo.addr(),
        b"POST /release HTTP/1.1\r\nHost: zoo.test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        IO_TIMEOUT,
    )
    .unwrap();
    assert!(release.starts_with(b"HTTP/1.1 200"));
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("data: last"), "{rest:?}");

    upload_streams_with_bounded_rss(&zoo);
}

/// `/proc/PID/status` VmHWM (peak resident set) in KiB.
fn peak_rss_kib(pid: nix::unistd::Pid) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.as_raw())).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

fn upload_streams_with_bounded_rss(zoo: &Zoo) {
    const SIZE: usize = 1 << 30;
    const CHUNK: usize = 1 << 20;
    let before = peak_rss_kib(zoo.pid());
    let started = Instant::now();
    let mut stream = connect(zoo.addr());
    write!(
        stream,
        "POST /upload HTTP/1.1\r\nHost: zoo.test\r\nContent-Length: {SIZE}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let chunk = vec![b'z'; CHUNK];
    for _ in 0..SIZE / CHUNK {
        stream.write_all(&chunk).unwrap();
    }
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = http::parse(&response).unwrap();
    let after = peak_rss_kib(zoo.pid());
    eprintln!(
        "upload of {} MiB through zoo: {:?}, zoo peak RSS {before} KiB -> {after} KiB",
        SIZE >> 20,
        started.elapsed()
    );
    assert_eq!(
        response.status,
        200,
        "{}\n{}",
        response.text(),
        zoo.output()
    );
    assert_eq!(response.text(), SIZE.to_string());
    assert!(
        after - before < 16 * 1024,
        "zoo's peak RSS grew by {} KiB during a {} MiB upload",
        after - before,
        SIZE >> 20
    );
}

// ---------------------------------------------------------------------------------------------
// An in-test upstream that records request heads and answers per a script.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// `200 ok`, with a hop-by-hop header the proxy must drop.
    Ok,
    /// Read the head, then close without answering.
    Drop,
    /// Read the head, then hold the connection open without answering.
    Silent,
}

struct Recorder {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
    /// How many of the next connections get `Reply::Drop` before the default reply.
    drops: Arc<AtomicUsize>,
}

impl Recorder {
    fn start(default: Reply) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let drops = Arc::new(AtomicUsize::new(0));
        let (seen, to_drop) = (Arc::clone(&heads), Arc::clone(&drops));
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let reply = if to_drop
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    Reply::Drop
                } else {
                    default
                };
                let seen = Arc::clone(&seen);
                thread::spawn(move || serve_one(&mut stream, reply, &seen));
            }
        });
        Recorder { port, heads, drops }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

fn serve_one(stream: &mut TcpStream, reply: Reply, seen: &Mutex<Vec<String>>) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        if !matches!(stream.read(&mut byte), Ok(1)) {
            return;
        }
        head.push(byte[0]);
    }
    seen.lock()
        .unwrap()
        .push(String::from_utf8_lossy(&head).into_owned());
    match reply {
        Reply::Ok => {
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nConnection: close, X-Resp-Secret\r\nX-Resp-Secret: 1\r\n\
                  Keep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok",
            );
        }
        Reply::Drop => {}
        Reply::Silent => {
            let mut sink = Vec::new();
            let _ = stream.read_to_end(&mut sink);
        }
    }
}

fn send(addr: SocketAddr, raw: &str) -> http::Response {
    let bytes =
        http::exchange(addr, raw.as_bytes(), IO_TIMEOUT).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
    http::parse(&bytes).unwrap_or_else(|e| panic!("{raw:?}: {e}: {bytes:?}"))
}

/// Sends `raw` and fails the test (with zoo's output) unless the answer has `status`.
fn expect_status(zoo: &Zoo, raw: &str, status: u16) -> http::Response {
    let response = send(zoo.addr(), raw);
    let start: String = raw.chars().take(60).collect();
    assert_eq!(
        response.status,
        status,
        "{start:?}: {}\n{}",
        response.text(),
        zoo.output()
    );
    response
}

/// zoo with routes to a recorder that answers `ok`, one that never answers, and a closed port.
fn raw_zoo() -> (Zoo, Recorder, Recorder) {
    raw_zoo_with("")
}

/// [`raw_zoo`] with `root` added to the top-level keys.
fn raw_zoo_with(root: &str) -> (Zoo, Recorder, Recorder) {
    let (ok, silent) = (Recorder::start(Reply::Ok), Recorder::start(Reply::Silent));
    let closed = util::free_port();
    let config = format!(
        "listen = \"127.0.0.1:0\"\n\
         client_header_timeout = \"1s\"\n\
         {root}\n\
         \n\
         [routes]\n\
         \"/ok\" = {{ respond = \"ok\\n\" }}\n\
         \"/rec\" = {{ proxy = \"http://127.0.0.1:{ok}\" }}\n\
         \"/small\" = {{ proxy = \"http://127.0.0.1:{silent}\", max_body = 10 }}\n\
         \"/slow\" = {{ proxy = \"http://127.0.0.1:{silent}\", timeout = \"300ms\" }}\n\
         \"/refused\" = {{ proxy = \"http://127.0.0.1:{closed}\" }}\n",
        ok = ok.port,
        silent = silent.port,
    );
    let mut zoo = Zoo::start(&config, &[]);
    zoo.wait_ready("/ok", READY_DEADLINE);
    (zoo, ok, silent)
}

#[test]
fn limits_and_upstream_failures_get_their_status() {
    let (zoo, _ok, silent) = raw_zoo();
    let long_target = format!("/ok?{}", "a".repeat(9000));
    let big_header = "b".repeat(300 * 1024);
    let cases = [
        (
            format!("GET {long_target} HTTP/1.1\r\nHost: z\r\n\r\n"),
            414,
        ),
        (
            format!("GET /ok HTTP/1.1\r\nHost: z\r\nX-Big: {big_header}\r\n\r\n"),
            431,
        ),
        (
            "POST /small HTTP/1.1\r\nHost: z\r\nContent-Length: 100\r\n\r\n".to_owned(),
            413,
        ),
        (
            "GET /slow HTTP/1.1\r\nHost: z\r\nConnection: close\r\n\r\n".to_owned(),
            504,
        ),
        (
            "GET /refused HTTP/1.1\r\nHost: z\r\nConnection: close\r\n\r\n".to_owned(),
            502,
        ),
    ];
    for (raw, status) in &cases {
        let response = expect_status(&zoo, raw, *status);
        let first_line: String = raw.chars().take(40).collect();
        // hyper answers an over-long head itself, before zoo sees it: no body to check.
        if *status != 431 {
            let body = response.text();
            assert_eq!(
                body.trim_end().lines().count(),
                1,
                "{first_line:?}: {body:?}"
            );
            assert!(body.starts_with(&status.to_string()), "{body:?}");
        }
    }
    assert!(
        silent
            .heads()
            .iter()
            .all(|head| !head.starts_with("POST /small"))
    );

    // Slowloris: half a head, then nothing; zoo closes after client_header_timeout (1 s).
    let mut slow = connect(zoo.addr());
    slow.write_all(b"GET /ok HTTP/1.1\r\nHost: z\r\n").unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let result = slow.read_to_end(&mut rest);
    assert!(
        result.is_ok() && started.elapsed() < Duration::from_secs(5),
        "a stalled head should be closed after 1 s: {result:?} after {:?}",
        started.elapsed()
    );
    zoo.assert_body("/ok", "ok\n");
}

#[test]
fn ambiguous_framing_is_rejected_and_never_forwarded() {
    let (zoo, ok, _silent) = raw_zoo();
    // Content-Length with Transfer-Encoding: hyper (>= 1.11) lets chunked win, drops the
    // Content-Length and closes the connection after (RFC 9112 6.3), so what zoo forwards is
    // unambiguous: chunked only.
    expect_status(
        &zoo,
        "POST /rec HTTP/1.1\r\nHost: z\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        200,
    );
    let forwarded = ok.heads().remove(0).to_ascii_lowercase();
    assert!(!forwarded.contains("content-length"), "{forwarded}");
    ok.heads.lock().unwrap().clear();

    let cases = [
        "POST /rec HTTP/1.1\r\nHost: z\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "GET /rec HTTP/1.1\r\nHost: z\r\nX-Folded: a\r\n b\r\n\r\n",
        "GET /rec HTTP/1.1\r\nHost: z\rX-Bare: cr\r\n\r\n",
        "GET /rec/%00 HTTP/1.1\r\nHost: z\r\n\r\n",
    ];
    for raw in cases {
        expect_status(&zoo, raw, 400);
    }
    // A coding hyper does not decode would reach the app unnamed: refused like nginx does.
    for coding in ["gzip, chunked", "chunked\r\nTransfer-Encoding: chunked"] {
        let raw = format!(
            "POST /rec HTTP/1.1\r\nHost: z\r\nTransfer-Encoding: {coding}\r\n\r\n0\r\n\r\n"
        );
        expect_status(&zoo, &raw, 501);
    }
    assert_eq!(
        ok.heads(),
        Vec::<String>::new(),
        "nothing ambiguous may be forwarded"
    );

    // A bad chunk size is found while the body streams, after the head went upstream: the
    // request is cut there (the app never sees a complete one) and the client gets 400.
    expect_status(
        &zoo,
        "POST /rec HTTP/1.1\r\nHost: z\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        400,
    );
    zoo.assert_body("/ok", "ok\n");
}

#[test]
fn hop_by_hop_headers_are_removed_both_ways_and_forwarded_is_replaced() {
    let (zoo, ok, _silent) = raw_zoo();
    let response = expect_status(
        &zoo,
        "GET /rec HTTP/1.1\r\nHost: z\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\n\
         Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\nX-Forwarded-For: 6.6.6.6\r\n\
         Forwarded: for=6.6.6.6\r\nX-Kept: 1\r\n\r\n",
        200,
    );
    assert_eq!(
        response.header("x-resp-secret"),
        None,
        "{:?}",
        response.headers
    );
    assert_eq!(
        response.header("keep-alive"),
        None,
        "{:?}",
        response.headers
    );
    let heads = ok.heads();
    let head = heads[0].to_ascii_lowercase();
    for gone in ["x-secret", "upgrade", "6.6.6.6", "forwarded: "] {
        assert!(!head.contains(gone), "`{gone}` was forwarded:\n{head}");
    }
    assert!(head.contains("x-kept: 1"), "{head}");
    assert!(head.contains("x-forwarded-for: 127.0.0.1"), "{head}");
}

#[test]
fn a_trusted_load_balancer_has_its_forwarded_chain_appended_to() {
    let (zoo, ok, _silent) = raw_zoo_with("trust_forwarded = [\"127.0.0.0/8\"]");
    expect_status(
        &zoo,
        "GET /rec HTTP/1.1\r\nHost: z\r\nX-Forwarded-For: 203.0.113.9\r\n\
         X-Forwarded-Proto: https\r\nConnection: close\r\n\r\n",
        200,
    );
    let head = ok.heads()[0].to_ascii_lowercase();
    assert!(
        head.contains("x-forwarded-for: 203.0.113.9, 127.0.0.1"),
        "{head}"
    );
    assert!(head.contains("x-forwarded-proto: https"), "{head}");
}

#[test]
fn a_broken_connection_retries_get_but_never_duplicates_post() {
    let (zoo, ok, _silent) = raw_zoo();

    ok.drops.store(1, Ordering::SeqCst);
    expect_status(
        &zoo,
        "POST /rec HTTP/1.1\r\nHost: z\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
        502,
    );
    let posts = ok.heads().iter().filter(|h| h.starts_with("POST")).count();
    assert_eq!(posts, 1, "the POST must reach the app exactly once");

    ok.drops.store(1, Ordering::SeqCst);
    expect_status(
        &zoo,
        "GET /rec HTTP/1.1\r\nHost: z\r\nConnection: close\r\n\r\n",
        200,
    );
    let gets = ok.heads().iter().filter(|h| h.starts_with("GET")).count();
    assert_eq!(gets, 2, "the GET is sent again once, on a fresh connection");
}

// ---------------------------------------------------------------------------------------------
// HTTP/2 with prior knowledge on the same port.

#[test]
fn h2c_prior_knowledge_is_served_on_the_http1_port() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let (zoo, ok, _silent) = raw_zoo();
    let addr = zoo.addr();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bodies = runtime.block_on(async move {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("h2 handshake with zoo");
        tokio::spawn(connection);
        let mut bodies = Vec::new();
        for target in ["/ok", "/rec"] {
            let request = hyper::Request::get(format!("http://zoo.test{target}"))
                .body(Empty::<bytes::Bytes>::new())
                .unwrap();
            let response = tokio::time::timeout(IO_TIMEOUT, sender.send_request(request))
                .await
                .expect("h2 response in time")
                .expect("h2 response");
            assert_eq!(response.version(), hyper::Version::HTTP_2);
            let status = response.status().as_u16();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            bodies.push((status, String::from_utf8_lossy(&body).into_owned()));
        }
        bodies
    });
    assert_eq!(
        bodies,
        [(200, "ok\n".to_owned()), (200, "ok".to_owned())],
        "{}",
        zoo.output()
    );
    assert!(
        ok.heads()[0].starts_with("GET /rec HTTP/1.1"),
        "{:?}",
        ok.heads()
    );
}

// ---------------------------------------------------------------------------------------------
// gRPC: grpcio client -> zoo (h2c prior knowledge) -> grpcio server (`protocol = "h2c"`).

const GRPC_APP_PY: &str = include_str!("protocols/grpc_app.py");

/// Runs the grpcio client against `target` and returns its lines (bounded by a deadline).
fn grpc_client(zoo: &Zoo, target: &str) -> String {
    let output = util::run_bounded(
        std::process::Command::new(util::venv_bin().join("python"))
            .arg(zoo.dir().join("grpc_app.py"))
            .args(["client", target])
            .env_clear(),
        Duration::from_secs(30),
    );
    assert!(
        output.status.success(),
        "grpcio client to {target}: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        zoo.output()
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn grpc_unary_streaming_and_status_through_zoo_equal_direct() {
    util::require_uvicorn();
    let port = util::free_port();
    let config = format!(
        "listen = \"127.0.0.1:0\"\n\
         \n\
         [apps.grpc]\n\
         command = \"python grpc_app.py\"\n\
         port = {port}\n\
         protocol = \"h2c\"\n\
         \n\
         [routes]\n\
         \"/zoo.Test\" = {{ app = \"grpc\" }}\n\
         \"/ok\" = {{ respond = \"ok\\n\" }}\n"
    );
    let mut zoo = Zoo::start(&config, &[("grpc_app.py", GRPC_APP_PY)]);
    zoo.wait_ready("/ok", READY_DEADLINE);
    let direct_addr = format!("127.0.0.1:{port}");
    assert!(
        util::poll_until(READY_DEADLINE, || TcpStream::connect(&direct_addr).is_ok()),
        "the gRPC app did not listen\n{}",
        zoo.output()
    );
    let direct = grpc_client(&zoo, &direct_addr);
    let through = grpc_client(&zoo, &zoo.addr().to_string());
    assert_eq!(
        direct,
        "unary echo:hi unary OK\nstream item 0|item 1|item 2 stream OK\nfail NOT_FOUND no such thing\n"
    );
    assert_eq!(through, direct, "through zoo vs direct\n{}", zoo.output());
}

// ---------------------------------------------------------------------------------------------
// Trailers both ways and `Expect: 100-continue`, with a hyper upstream that speaks them.

/// A body of one data frame, then trailers.
struct TrailerBody {
    data: Option<bytes::Bytes>,
    trailers: Option<hyper::HeaderMap>,
}

impl hyper::body::Body for TrailerBody {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        let frame = match self.data.take() {
            Some(data) => Some(hyper::body::Frame::data(data)),
            None => self.trailers.take().map(hyper::body::Frame::trailers),
        };
        std::task::Poll::Ready(frame.map(Ok))
    }
}

/// An HTTP/1.1 upstream that answers every request with a chunked body naming the request's
/// `x-req` trailer, followed by its own `x-checksum` trailer. Returns its port.
fn start_trailer_upstream() -> u16 {
    use http_body_util::BodyExt;
    use hyper_util::rt::TokioIo;

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((stream, _)) = listener.accept().await {
                let service = hyper::service::service_fn(
                    |request: hyper::Request<hyper::body::Incoming>| async {
                        let collected = request.into_body().collect().await?;
                        let seen = collected
                            .trailers()
                            .and_then(|trailers| trailers.get("x-req"))
                            .and_then(|value| value.to_str().ok())
                            .unwrap_or("none")
                            .to_owned();
                        let mut trailers = hyper::HeaderMap::new();
                        trailers
                            .insert("x-checksum", hyper::header::HeaderValue::from_static("abc"));
                        let body = TrailerBody {
                            data: Some(format!("req-trailer={seen}").into()),
                            trailers: Some(trailers),
                        };
                        let mut response = hyper::Response::new(body);
                        response.headers_mut().insert(
                            hyper::header::TRAILER,
                            hyper::header::HeaderValue::from_static("x-checksum"),
                        );
                        Ok::<_, hyper::Error>(response)
                    },
                );
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
    });
    port
}

#[test]
fn trailers_pass_both_ways_and_expect_continue_works() {
    let upstream = start_trailer_upstream();
    let config = format!(
        "listen = \"127.0.0.1:0\"\n\
         \n\
         [routes]\n\
         \"/trl\" = {{ proxy = \"http://127.0.0.1:{upstream}\" }}\n\
         \"/ok\" = {{ respond = \"ok\\n\" }}\n"
    );
    let mut zoo = Zoo::start(&config, &[]);
    zoo.wait_ready("/ok", READY_DEADLINE);

    let mut stream = connect(zoo.addr());
    stream
        .write_all(
            b"POST /trl HTTP/1.1\r\nHost: z\r\nTE: trailers\r\nTrailer: x-req\r\n\
              Transfer-Encoding: chunked\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    // The body goes only after zoo said 100 Continue (zoo asks for it when it forwards).
    let interim = read_head(&mut stream);
    assert!(
        interim.starts_with("HTTP/1.1 100"),
        "{interim}\n{}",
        zoo.output()
    );
    stream
        .write_all(b"5\r\nhello\r\n0\r\nx-req: 42\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}\n{}", zoo.output());
    assert!(
        text.contains("req-trailer=42"),
        "request trailer lost: {text}"
    );
    assert!(
        text.ends_with("0\r\nx-checksum: abc\r\n\r\n"),
        "response trailer lost: {text:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// HTTPS listener: ALPN picks h2 or http/1.1; the app is told the client used https.

/// One GET over TLS to zoo offering `alpn`; returns the negotiated protocol and the response.
async fn tls_get(
    addr: SocketAddr,
    ca: rustls::pki_types::CertificateDer<'static>,
    alpn: &[&[u8]],
) -> (Vec<u8>, u16, String) {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let tls = util::https::connect_tls(addr, ca, alpn).await;
    let negotiated = tls.get_ref().1.alpn_protocol().unwrap_or_default().to_vec();
    let io = TokioIo::new(tls);
    let request = hyper::Request::get("https://localhost/rec")
        .header("host", "localhost")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = if negotiated == b"h2" {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
        tokio::spawn(connection);
        sender.send_request(request).await.unwrap()
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(connection);
        sender.send_request(request).await.unwrap()
    };
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        negotiated,
        status,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[test]
fn tls_listener_offers_h2_and_http1_by_alpn() {
    let ok = Recorder::start(Reply::Ok);
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let config = format!(
        "listen = \"127.0.0.1:0\"\n\
         tls = {{ cert = \"cert.pem\", key = \"key.pem\" }}\n\
         \n\
         [routes]\n\
         \"/rec\" = {{ proxy = \"http://127.0.0.1:{}\" }}\n",
        ok.port
    );
    let zoo = Zoo::start(
        &config,
        &[
            ("cert.pem", &certified.cert.pem()),
            ("key.pem", &certified.signing_key.serialize_pem()),
        ],
    );
    let ca = certified.cert.der().clone();
    let addr = zoo.addr();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = runtime.block_on(async move {
        let h2 = tls_get(addr, ca.clone(), &[b"h2", b"http/1.1"]).await;
        let h1 = tls_get(addr, ca, &[b"http/1.1"]).await;
        [h2, h1]
    });
    assert_eq!(
        results,
        [
            (b"h2".to_vec(), 200, "ok".to_owned()),
            (b"http/1.1".to_vec(), 200, "ok".to_owned())
        ],
        "{}",
        zoo.output()
    );
    for head in ok.heads() {
        assert!(
            head.to_ascii_lowercase()
                .contains("x-forwarded-proto: https"),
            "{head}"
        );
    }
}

const WS_CLIENT_PY: &str = include_str!("protocols/ws_client.py");

/// Runs `ws_client.py` (Python `websockets`) against `url`: one JSON line per case.
fn python_ws_client(dir: &std::path::Path, url: &str) -> Vec<String> {
    let script = dir.join("ws_client.py");
    std::fs::write(&script, WS_CLIENT_PY).unwrap();
    let out = util::run_bounded(
        std::process::Command::new(util::venv_bin().join("python"))
            .arg(&script)
            .arg(url),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "ws_client.py against {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Drops the `"seconds": ...` field of a result line (the only part that may differ).
fn without_seconds(line: &str) -> &str {
    line.split(", \"seconds\"").next().unwrap()
}

#[test]
fn python_websockets_client_through_zoo_equals_direct() {
    let (zoo, port) = fastapi_zoo("");
    let has_websockets = std::process::Command::new(util::venv_bin().join("python"))
        .args(["-c", "import websockets"])
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        has_websockets,
        "the venv lacks `websockets`: run scripts/setup (scripts/requirements.txt)"
    );
    let dir = tempfile::tempdir().unwrap();
    let direct = python_ws_client(dir.path(), &format!("ws://127.0.0.1:{port}/ws"));
    let through = python_ws_client(dir.path(), &format!("ws://{}/ws", zoo.addr()));
    assert_eq!(through.len(), 5, "{through:?}");
    for (d, t) in direct.iter().zip(&through) {
        assert_eq!(
            without_seconds(t),
            without_seconds(d),
            "through zoo vs direct\n{}",
            zoo.output()
        );
    }
    eprintln!(
        "Python websockets client, {} cases equal through zoo and direct:\n  direct: {}\n  zoo:    {}",
        through.len(),
        direct.join("\n          "),
        through.join("\n          ")
    );
    assert!(
        through[0].contains("\"text\": true, \"binary\": true"),
        "{}",
        through[0]
    );
    assert!(through[0].contains("permessage-deflate"), "{}", through[0]);
    assert!(
        through[1].contains("\"echoed_in_order\": 10000"),
        "{}",
        through[1]
    );
    assert!(through[2].contains("[1000, "), "{}", through[2]);
}
