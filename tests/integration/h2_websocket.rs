//! WebSocket over HTTP/2 (RFC 8441) through zoo: a hyper h2 client sends an extended CONNECT
//! with `:protocol = websocket`, over h2c with prior knowledge and over TLS with ALPN h2; zoo
//! opens an HTTP/1.1 WebSocket to the FastAPI echo app and tunnels real frames both ways.
//! Another `:protocol` is 501, and an app's refusal reaches the client with its own status.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::ext::Protocol;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::util::fastapi::{SERVICE_RESTART, fastapi_zoo, fastapi_zoo_with};
use crate::util::websocket::{read_frame, ws_frame};
use crate::util::{self, http};

const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// What an extended CONNECT got back: status, the headers the test looks at, and the body
/// (for a refusal) or the upgraded stream (for a 200).
struct Opened {
    status: u16,
    extensions: Option<String>,
    content_type: Option<String>,
    body: String,
    stream: Option<TokioIo<hyper::upgrade::Upgraded>>,
}

/// Sends `CONNECT https://zoo.test{path}` with `:protocol` over an h2 connection on `io`.
async fn extended_connect<I>(io: I, protocol: &'static str, path: &str, deflate: bool) -> Opened
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .expect("h2 handshake with zoo");
    tokio::spawn(connection);
    let mut request = hyper::Request::connect(format!("http://zoo.test{path}"))
        .header("sec-websocket-version", "13")
        .header("origin", "http://zoo.test");
    if deflate {
        request = request.header("sec-websocket-extensions", "permessage-deflate");
    }
    let mut request = request.body(Empty::<Bytes>::new()).unwrap();
    request
        .extensions_mut()
        .insert(Protocol::from_static(protocol));
    let mut response = tokio::time::timeout(IO_TIMEOUT, sender.send_request(request))
        .await
        .expect("response in time")
        .expect("response to the extended CONNECT");
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    };
    let (extensions, content_type) = (header("sec-websocket-extensions"), header("content-type"));
    let status = response.status().as_u16();
    if status != 200 {
        let body = response.into_body().collect().await.unwrap().to_bytes();
        return Opened {
            status,
            extensions,
            content_type,
            body: String::from_utf8_lossy(&body).into_owned(),
            stream: None,
        };
    }
    let upgraded = hyper::upgrade::on(&mut response)
        .await
        .expect("the h2 stream opens");
    // The connection task owns the stream's flow control; the sender must stay alive too.
    tokio::spawn(async move {
        let _sender = sender;
        std::future::pending::<()>().await;
    });
    Opened {
        status,
        extensions,
        content_type,
        body: String::new(),
        stream: Some(TokioIo::new(upgraded)),
    }
}

/// Echoes of a text, a 70,000-byte binary (64-bit length) and a ping, then the close
/// handshake and EOF. Returns the frames summarised and whether the stream ended cleanly.
async fn conversation(stream: &mut TokioIo<hyper::upgrade::Upgraded>) -> (Vec<String>, bool) {
    let binary: Vec<u8> = (0..70_000).map(|i| (i % 251) as u8).collect();
    let mut seen = Vec::new();
    for (opcode, payload) in [
        (0x1, "héllo".as_bytes().to_vec()),
        (0x2, binary),
        (0x9, b"are you there".to_vec()),
        (0x8, vec![0x03, 0xe8]),
    ] {
        stream
            .write_all(&ws_frame(0x80 | opcode, &payload))
            .await
            .unwrap();
        let (back, echoed) = next_frame(stream).await.expect("a frame back");
        let same = if opcode == 0x8 {
            echoed[..2] == [0x03, 0xe8]
        } else {
            echoed == payload
        };
        seen.push(format!("{opcode:#x}->{back:#x} {} {same}", echoed.len()));
    }
    let eof = next_frame(stream).await.is_none();
    (seen, eof)
}

/// The next frame, `None` at EOF; fails the test after [`IO_TIMEOUT`].
async fn next_frame(stream: &mut TokioIo<hyper::upgrade::Upgraded>) -> Option<(u8, Vec<u8>)> {
    tokio::time::timeout(IO_TIMEOUT, read_frame(stream))
        .await
        .expect("a frame or EOF in time")
}

const EXPECTED: [&str; 4] = [
    "0x1->0x1 6 true",
    "0x2->0x2 70000 true",
    "0x9->0xa 13 true",
    "0x8->0x8 2 true",
];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn websocket_over_h2c_echoes_and_closes() {
    let (zoo, _) = fastapi_zoo("");
    let addr = zoo.addr();
    let (status, seen, eof) = runtime().block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut opened = extended_connect(tcp, "websocket", "/ws", false).await;
        let mut stream = opened.stream.take().expect("a stream");
        let (seen, eof) = conversation(&mut stream).await;
        (opened.status, seen, eof)
    });
    assert_eq!(status, 200, "{}", zoo.output());
    assert_eq!(seen, EXPECTED, "{}", zoo.output());
    assert!(eof, "the stream ends after the close\n{}", zoo.output());
}

#[test]
fn websocket_over_tls_alpn_h2_echoes_and_closes() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (zoo, _) = fastapi_zoo_with(
        "tls = { cert = \"cert.pem\", key = \"key.pem\" }",
        &[
            ("cert.pem", &certified.cert.pem()),
            ("key.pem", &certified.signing_key.serialize_pem()),
        ],
    );
    let ca = certified.cert.der().clone();
    let addr = zoo.addr();
    let (alpn, status, seen, eof) = runtime().block_on(async move {
        let tls = util::https::connect_tls(addr, ca, &[b"h2"]).await;
        let alpn = tls.get_ref().1.alpn_protocol().unwrap_or_default().to_vec();
        let mut opened = extended_connect(tls, "websocket", "/ws", false).await;
        let mut stream = opened.stream.take().expect("a stream");
        let (seen, eof) = conversation(&mut stream).await;
        (alpn, opened.status, seen, eof)
    });
    assert_eq!(
        (alpn.as_slice(), status),
        (&b"h2"[..], 200),
        "{}",
        zoo.output()
    );
    assert_eq!(seen, EXPECTED, "{}", zoo.output());
    assert!(eof, "the stream ends after the close\n{}", zoo.output());
}

#[test]
fn h2_extended_connect_negotiates_refuses_and_rejects_like_the_app() {
    let (zoo, port) = fastapi_zoo("");
    let addr = zoo.addr();
    let open = |protocol: &'static str, path: &'static str, deflate: bool| async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        extended_connect(tcp, protocol, path, deflate).await
    };
    let (deflate, other, refused) = runtime().block_on(async move {
        (
            open("websocket", "/ws", true).await,
            open("connect-udp", "/ws", false).await,
            open("websocket", "/ping", false).await,
        )
    });
    assert_eq!(deflate.status, 200, "{}", zoo.output());
    assert!(
        deflate
            .extensions
            .as_deref()
            .is_some_and(|value| value.starts_with("permessage-deflate")),
        "the app's negotiated extension reaches the client: {:?}\n{}",
        deflate.extensions,
        zoo.output()
    );
    assert_eq!(
        (
            other.status,
            other.content_type.as_deref(),
            other.body.as_str()
        ),
        (
            501,
            Some("text/plain; charset=utf-8"),
            "501 Not Implemented: extended CONNECT for `:protocol` `connect-udp` is not \
             supported (only websocket)\n"
        ),
        "{}",
        zoo.output()
    );
    // The same handshake straight to the app over HTTP/1.1: its refusal is what zoo forwards.
    let direct = http::exchange(
        SocketAddr::from(([127, 0, 0, 1], port)),
        b"GET /ping HTTP/1.1\r\nHost: zoo.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        IO_TIMEOUT,
    )
    .unwrap();
    let direct = http::parse(&direct).unwrap();
    assert!(
        !(200..300).contains(&direct.status) && direct.status != 101,
        "the app refuses a WebSocket on /ping: {}",
        direct.status
    );
    assert_eq!(refused.status, direct.status, "{}", zoo.output());
}

#[test]
fn shutdown_lets_the_app_close_a_websocket_over_h2_with_its_close_frame() {
    use nix::sys::signal::{Signal, kill};

    // A grace well above the stop's 12 s bound below: a stop held until the grace fails,
    // and a busy machine has room under the bound.
    let (mut zoo, _) = fastapi_zoo("grace = \"20s\"");
    let (addr, pid) = (zoo.addr(), zoo.pid());
    let stopping = Instant::now();
    let (echo, close, eof) = runtime().block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut stream = extended_connect(tcp, "websocket", "/ws", false)
            .await
            .stream
            .expect("a stream");
        stream.write_all(&ws_frame(0x81, b"hi")).await.unwrap();
        let echo = next_frame(&mut stream).await;
        kill(pid, Signal::SIGTERM).unwrap();
        // No request is in flight, so the app is stopped at once. The h2 connection got
        // GOAWAY, but its open WebSocket stream carries the app's close frame to the client.
        let close = next_frame(&mut stream).await;
        let eof = next_frame(&mut stream).await.is_none();
        (echo, close, eof)
    });
    assert_eq!(echo, Some((0x1, b"hi".to_vec())), "{}", zoo.output());
    assert_eq!(
        close,
        Some((0x8, SERVICE_RESTART.to_vec())),
        "the app's close frame\n{}",
        zoo.output()
    );
    assert!(eof, "{}", zoo.output());
    let status = zoo.wait_exit(util::STOP_DEADLINE);
    let took = stopping.elapsed();
    assert_eq!(
        status.and_then(|status| status.code()),
        Some(0),
        "{}",
        zoo.output()
    );
    assert!(took < Duration::from_secs(12), "{took:?}\n{}", zoo.output());
}
