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
