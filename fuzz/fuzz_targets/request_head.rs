//! The HTTP request-head path through zoo's own listener: arbitrary bytes are written to a
//! loopback connection served by `zoo::proxy::serve` (protocol sniffing, hyper's HTTP/1.1 and
//! h2c parsers, path normalisation, routing, header rewriting, respond/redirect templates and
//! forwarding to a loopback upstream). zoo's per-connection service is private, so the public
//! accept loop on a real 127.0.0.1 socket is the narrowest way in.
//!
//! Fails on a panic anywhere in zoo (libfuzzer-sys aborts on any panic, in any task) and on a
//! connection zoo does not finish within 5 s of the client's half-close.
#![no_main]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zoo_fuzz::RUNTIME;

/// zoo's listening address, with a trivial upstream behind its `proxy` routes.
static ZOO: LazyLock<SocketAddr> = LazyLock::new(|| RUNTIME.block_on(start()));

async fn start() -> SocketAddr {
    let upstream_addr = zoo_fuzz::start_upstream(|stream| async move {
        let service = service_fn(|_req| async {
            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"up"))))
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    })
    .await;
    let source = format!(
        r#"
client_header_timeout = "2s"
[routes]
"/"      = {{ proxy = "http://{upstream_addr}" }}
"/strip" = {{ proxy = "http://{upstream_addr}/base", strip_prefix = true }}
"/go"    = {{ respond = "{{method}} {{host}} {{path}}?{{query}}", headers = {{ "x-a" = "b" }} }}
"/old*"  = {{ redirect = "https://example.com{{path}}?{{query}}", status = 308 }}
"/healthz" = {{ builtin = "health" }}
"/metrics" = {{ builtin = "metrics" }}
"#
    );
    zoo_fuzz::start_zoo(&source).await
}

fuzz_target!(|data: &[u8]| {
    let addr = *ZOO;
    RUNTIME.block_on(async {
        let mut stream = TcpStream::connect(addr).await.expect("connect to zoo");
        // zoo may answer and close before reading everything: write errors are fine.
        let _ = stream.write_all(data).await;
        let _ = stream.shutdown().await;
        let mut response = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response));
        match read.await {
            Ok(_) => {}
            Err(_) => panic!(
                "zoo kept the connection open 5 s after the client's half-close; sent {:?}, got {:?}",
                String::from_utf8_lossy(data),
                String::from_utf8_lossy(&response)
            ),
        }
    });
});
