//! Protocols through zoo with real clients and servers: h2c with prior knowledge on the
//! HTTP/1.1 port, gRPC to a grpcio server over `protocol = "h2c"`, trailers both ways with
//! `Expect: 100-continue`, and a TLS listener that offers h2 and http/1.1 by ALPN.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use crate::util::raw::{IO_TIMEOUT, connect, read_head};
use crate::util::recorder::{Recorder, Reply, raw_zoo};
use crate::util::{self, READY_DEADLINE, Zoo};

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

/// zoo serving `config` (whose `tls` names `cert.pem` and `key.pem`) with `certified`'s
/// certificate, and a runtime for the test's TLS client.
fn start_tls_zoo(
    config: &str,
    certified: &rcgen::CertifiedKey<rcgen::KeyPair>,
) -> (Zoo, tokio::runtime::Runtime) {
    let zoo = Zoo::start(
        config,
        &[
            ("cert.pem", &certified.cert.pem()),
            ("key.pem", &certified.signing_key.serialize_pem()),
        ],
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (zoo, runtime)
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
    let (zoo, runtime) = start_tls_zoo(&config, &certified);
    let ca = certified.cert.der().clone();
    let addr = zoo.addr();
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

/// Reads one response (head and a `Content-Length` body) off `stream`; its status line and body.
pub(super) async fn read_response<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
) -> (String, String) {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    let mut byte = [0u8; 1];
    while !bytes.ends_with(b"\r\n\r\n") {
        let read = stream.read(&mut byte).await.unwrap();
        assert_eq!(
            read,
            1,
            "closed inside a head: {:?}",
            String::from_utf8_lossy(&bytes)
        );
        bytes.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&bytes).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .map_or(0, |value| value.trim().parse().unwrap());
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.unwrap();
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// An upstream that answers one WebSocket handshake per connection with a `101`, then echoes
/// the bytes that follow (zoo tunnels bytes: frames are the peers' business).
fn start_echo_after_upgrade() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            let Ok(mut stream) = stream else { continue };
            thread::spawn(move || {
                stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                read_head(&mut stream);
                let _ = stream.write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                      Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
                );
                let mut buf = [0u8; 4096];
                while let Ok(read @ 1..) = stream.read(&mut buf) {
                    if stream.write_all(&buf[..read]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn tls_http1_and_websocket_are_served_by_the_configured_engine() {
    let ok = Recorder::start(Reply::Ok);
    let echo = start_echo_after_upgrade();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    // Which engine served the TLS connection shows in the one answer where they differ:
    // Content-Length with Transfer-Encoding (hyper lets chunked win; zoo's engine answers 400).
    for (engine, cl_te_status) in [
        ("hyper", "http/1.1 200 ok"),
        ("zoo", "http/1.1 400 bad request"),
    ] {
        let config = format!(
            "listen = \"127.0.0.1:0\"\n\
             engine = \"{engine}\"\n\
             tls = {{ cert = \"cert.pem\", key = \"key.pem\" }}\n\
             \n\
             [routes]\n\
             \"/rec\" = {{ proxy = \"http://127.0.0.1:{}\" }}\n\
             \"/ws\" = {{ proxy = \"http://127.0.0.1:{echo}\" }}\n",
            ok.port
        );
        let (zoo, runtime) = start_tls_zoo(&config, &certified);
        let ca = certified.cert.der().clone();
        let addr = zoo.addr();
        let (answers, echoed) = runtime.block_on(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let exchange = async {
                // Two kept-alive requests (ALPN http/1.1), then the framing that tells.
                let mut tls = util::https::connect_tls(addr, ca.clone(), &[b"http/1.1"]).await;
                let mut answers = Vec::new();
                for _ in 0..2 {
                    tls.write_all(b"GET /rec HTTP/1.1\r\nHost: localhost\r\n\r\n")
                        .await
                        .unwrap();
                    answers.push(read_response(&mut tls).await);
                }
                tls.write_all(
                    b"POST /rec HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\
                      Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                )
                .await
                .unwrap();
                answers.push(read_response(&mut tls).await);
                // A WebSocket over TLS without ALPN: the tunnel copies both ways.
                let mut ws = util::https::connect_tls(addr, ca, &[]).await;
                ws.write_all(
                    b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
                      Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                      Sec-WebSocket-Version: 13\r\n\r\n",
                )
                .await
                .unwrap();
                let (status, _) = read_response(&mut ws).await;
                answers.push((status, String::new()));
                ws.write_all(b"through the tunnel").await.unwrap();
                let mut echoed = [0u8; 18];
                ws.read_exact(&mut echoed).await.unwrap();
                (answers, String::from_utf8_lossy(&echoed).into_owned())
            };
            tokio::time::timeout(Duration::from_secs(10), exchange)
                .await
                .expect("the TLS exchanges took over 10 s")
        });
        let ok_answer = ("http/1.1 200 ok".to_owned(), "ok".to_owned());
        assert_eq!(
            answers[..2],
            [ok_answer.clone(), ok_answer],
            "{engine}\n{}",
            zoo.output()
        );
        assert_eq!(
            answers[2].0,
            cl_te_status,
            "{engine}: {:?}\n{}",
            answers[2],
            zoo.output()
        );
        assert_eq!(answers[3].0, "http/1.1 101 switching protocols", "{engine}");
        assert_eq!(echoed, "through the tunnel", "{engine}\n{}", zoo.output());
    }
}
