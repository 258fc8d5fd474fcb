//! The upstream response path: the fuzzer's bytes are what a fake upstream on 127.0.0.1
//! answers, through zoo's real listener, service and forwarding code (a `proxy` route to it),
//! to one request from a client that then reads zoo's reply to the close.
//!
//! The first input byte picks the request: bits 0-1 GET, HEAD, POST with a body, or GET
//! asking for a WebSocket; bit 2 HTTP/1.0; bit 3 a route with `compress = true` (and
//! `Accept-Encoding: gzip`). The rest is the upstream's response, served to every connection
//! zoo opens for the input.
//!
//! Fails on a panic anywhere in zoo, a reply not done within 10 s, a reply whose framing a
//! client could misread (`zoo_fuzz::framing::delivered`), and a reply whose framing says
//! complete while its body is not the one the upstream sent (read strictly by
//! `zoo_fuzz::framing::intended`; only where that reading is certain, and not for zoo's own
//! error answers, which replace the upstream's).
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zoo_fuzz::RUNTIME;
use zoo_fuzz::framing::{self, Asked, Intended};

/// What the fake upstream answers to every connection; set before each input.
static ANSWER: Mutex<Option<Arc<[u8]>>> = Mutex::new(None);

/// How long one input may take, any side.
const PATIENCE: Duration = Duration::from_secs(10);

/// zoo's listening address, with the fake upstream behind both routes.
static ZOO: LazyLock<SocketAddr> = LazyLock::new(|| RUNTIME.block_on(start()));

async fn start() -> SocketAddr {
    zoo_fuzz::framing::check_known_answers();
    let upstream_addr = zoo_fuzz::start_upstream(|stream| {
        let answer = ANSWER
            .lock()
            .expect("answer lock")
            .clone()
            .unwrap_or_default();
        fake_upstream(stream, answer)
    })
    .await;
    // No keep-alive: zoo closes the client's connection after the response, so the client
    // reads to the close and sees exactly what zoo sent.
    let source = format!(
        r#"
keepalive_timeout = "0"
client_header_timeout = "2s"
[routes]
"/"  = {{ proxy = "http://{upstream_addr}", timeout = "3s" }}
"/z" = {{ proxy = "http://{upstream_addr}", timeout = "3s", compress = true }}
"#
    );
    zoo_fuzz::start_zoo(&source).await
}

/// Reads the request head, writes `answer`, closes its side, and reads on until zoo closes
/// (closing with the request body unread would reset the connection under zoo's read).
async fn fake_upstream(stream: TcpStream, answer: Arc<[u8]>) {
    let (mut from_zoo, mut to_zoo) = stream.into_split();
    let _ = tokio::time::timeout(PATIENCE, async {
        let mut seen = Vec::new();
        let mut buffer = [0u8; 4096];
        while !seen.windows(4).any(|window| window == b"\r\n\r\n") {
            match from_zoo.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => seen.extend_from_slice(&buffer[..read]),
            }
        }
        let _ = to_zoo.write_all(&answer).await;
        let _ = to_zoo.shutdown().await;
        let _ = tokio::io::copy(&mut from_zoo, &mut tokio::io::sink()).await;
    })
    .await;
}

/// The request for selector byte `pick`, and what it asked.
fn request(pick: u8) -> (Vec<u8>, Asked) {
    let asked = Asked {
        head: pick & 3 == 1,
        http10: pick & 4 != 0,
        websocket: pick & 3 == 3,
    };
    let method = match pick & 3 {
        1 => "HEAD",
        2 => "POST",
        _ => "GET",
    };
    let path = if pick & 8 != 0 { "/z/x" } else { "/x" };
    let version = if asked.http10 { "1.0" } else { "1.1" };
    let mut head = format!("{method} {path} HTTP/{version}\r\nHost: fuzz\r\n");
    if pick & 8 != 0 {
        head.push_str("Accept-Encoding: gzip\r\n");
    }
    let body = if pick & 3 == 2 { "hello" } else { "" };
    if !body.is_empty() {
        head.push_str("Content-Length: 5\r\n");
    }
    if asked.websocket {
        head.push_str(
            "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        );
    }
    head.push_str("\r\n");
    head.push_str(body);
    (head.into_bytes(), asked)
}

/// Whether `reply` is one of zoo's own error answers (`STATUS REASON: cause`), which
/// replace what the upstream sent.
fn is_zoo_error(reply: &framing::Delivered) -> bool {
    let reason = http::StatusCode::from_u16(reply.status)
        .ok()
        .and_then(|status| status.canonical_reason())
        .unwrap_or("");
    reply.content_type.as_deref() == Some(b"text/plain; charset=utf-8")
        && reply
            .body
            .starts_with(format!("{} {reason}: ", reply.status).as_bytes())
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, answer)) = data.split_first() else {
        return;
    };
    let addr = *ZOO;
    *ANSWER.lock().expect("answer lock") = Some(answer.into());
    let (request, asked) = request(pick);
    let compressed = pick & 8 != 0;
    let shown = || {
        format!(
            "request {:?}, upstream answered {:?}",
            String::from_utf8_lossy(&request),
            String::from_utf8_lossy(answer)
        )
    };
    let reply = RUNTIME.block_on(async {
        let mut stream = TcpStream::connect(addr).await.expect("connect to zoo");
        let _ = stream.write_all(&request).await;
        let mut reply = Vec::new();
        match tokio::time::timeout(PATIENCE, stream.read_to_end(&mut reply)).await {
            Ok(_) => reply,
            Err(_) => panic!(
                "zoo did not end its reply within {PATIENCE:?}; {}; got {:?}",
                shown(),
                String::from_utf8_lossy(&reply)
            ),
        }
    });
    let delivered = match framing::delivered(asked, &reply) {
        Ok(Some(delivered)) => delivered,
        Ok(None) => return,
        Err(fault) => panic!(
            "zoo's reply is misframed: {fault}; {}; zoo sent {:?}",
            shown(),
            String::from_utf8_lossy(&reply)
        ),
    };
    if !delivered.complete || compressed || is_zoo_error(&delivered) {
        return;
    }
    match framing::intended(asked, answer) {
        Intended::Complete { status, body } if status == delivered.status => assert!(
            body == delivered.body,
            "zoo delivered a body other than the upstream's as complete; {}; zoo sent {:?}",
            shown(),
            String::from_utf8_lossy(&reply)
        ),
        Intended::Truncated { status } if status == delivered.status => panic!(
            "zoo delivered a truncated upstream body as complete; {}; zoo sent {:?}",
            shown(),
            String::from_utf8_lossy(&reply)
        ),
        _ => {}
    }
});
