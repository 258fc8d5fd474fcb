//! WebSocket through zoo, with raw frames so close codes and lengths are exactly what a test
//! says, and with Python's `websockets` client: echo of boundary lengths to 16 MiB, 10,000
//! messages, permessage-deflate, edge-case frames and close codes, each compared with the same
//! conversation direct to the FastAPI app; open WebSockets across a shutdown and a reload.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::fastapi::{SERVICE_RESTART, fastapi_zoo};
use crate::util::raw::{IO_TIMEOUT, connect, read_head};
use crate::util::websocket::ws_frame;
use crate::util::{self, http};

/// A WebSocket frame as the test sees it: opcode and payload (FIN is always set here).
pub(super) type Frame = (u8, Vec<u8>);

pub(super) fn ws_open(addr: SocketAddr) -> TcpStream {
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

pub(super) fn ws_send(stream: &mut TcpStream, opcode: u8, payload: &[u8]) {
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

pub(super) fn ws_recv(stream: &mut TcpStream) -> Frame {
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

/// How a case's connection ended, after its last frame.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Ending {
    /// The server closed the connection (EOF).
    Closed,
    /// The server reset the connection.
    Reset,
    /// Nothing more came for the quiet spell: the connection is still open.
    Quiet,
}

/// Frames no well-behaved client sends, or sends split: each case on a fresh connection, then
/// what came back until the server closed (or a 2 s quiet spell), and how it ended. Raw bytes
/// are masked by [`ws_frame`] except where a case builds its own.
fn ws_edge_cases(addr: SocketAddr) -> Vec<(&'static str, Vec<Frame>, Ending)> {
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
            let ending = loop {
                match ws_try_recv(&mut stream) {
                    Ok(frame) => frames.push(frame),
                    Err(ending) => break ending,
                }
            };
            (name, frames, ending)
        })
        .collect()
}

/// The next frame, or how the connection ended instead.
fn ws_try_recv(stream: &mut TcpStream) -> Result<Frame, Ending> {
    let ending = |error: std::io::Error| match error.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Ending::Quiet,
        std::io::ErrorKind::UnexpectedEof => Ending::Closed,
        _ => Ending::Reset,
    };
    let mut first = [0u8; 1];
    match stream.read(&mut first) {
        Ok(0) => return Err(Ending::Closed),
        Ok(_) => {}
        Err(error) => return Err(ending(error)),
    }
    let mut rest = [0u8; 1];
    stream.read_exact(&mut rest).map_err(ending)?;
    let len = usize::from(rest[0] & 0x7f);
    assert!(len < 126, "edge cases get short answers");
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).map_err(ending)?;
    Ok((first[0] & 0x0f, payload))
}

#[test]
fn websocket_edge_cases_through_zoo_equal_direct() {
    let (zoo, port) = fastapi_zoo("");
    let direct = ws_edge_cases(SocketAddr::from(([127, 0, 0, 1], port)));
    let through = ws_edge_cases(zoo.addr());
    let summary: Vec<String> = through
        .iter()
        .map(|(name, frames, ending)| format!("{name}: {frames:?} {ending:?}"))
        .collect();
    eprintln!(
        "WebSocket edge cases through zoo:\n  {}",
        summary.join("\n  ")
    );
    for (direct, through) in direct.iter().zip(&through) {
        assert_eq!(
            through,
            direct,
            "case `{}`: through zoo vs direct\n{}",
            direct.0,
            zoo.output()
        );
    }
    // What the app (uvicorn with wsproto) does, pinned: two sides that both timed out with
    // nothing would be equal too. On a protocol error it drops the connection without a close
    // frame; a close gets its code echoed; a fragmented message is joined and the socket stays.
    let close = |code: u16| vec![(0x8, code.to_be_bytes().to_vec())];
    let dropped = || (Vec::new(), Ending::Closed);
    let expected: Vec<(&str, Vec<Frame>, Ending)> = [
        ("rsv1 without extension", dropped()),
        ("reserved opcode 0x3", dropped()),
        ("invalid utf-8 text", dropped()),
        (
            "fragmented text",
            (vec![(0x1, b"fragmented".to_vec())], Ending::Quiet),
        ),
        ("close 1001", (close(1001), Ending::Closed)),
        (
            "close without code",
            (vec![(0x8, Vec::new())], Ending::Closed),
        ),
        ("close code 999", dropped()),
        ("unmasked frame", dropped()),
    ]
    .into_iter()
    .map(|(name, (frames, ending))| (name, frames, ending))
    .collect();
    assert_eq!(through, expected, "{}", zoo.output());
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

#[test]
fn shutdown_drains_requests_then_the_app_closes_open_websockets_through_zoo() {
    use nix::sys::signal::{Signal, kill};

    // A grace well above the stop's 12 s bound below: a stop held until the grace fails,
    // and a busy machine has room under the bound.
    let (mut zoo, port) = fastapi_zoo("grace = \"20s\"");
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
        took < Duration::from_secs(12),
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

const WS_CLIENT_PY: &str = include_str!("websocket/ws_client.py");

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
