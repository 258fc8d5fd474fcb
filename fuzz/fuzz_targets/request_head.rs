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
use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use zoo::{Metrics, Serving};

static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
});

/// zoo's listening address, with a trivial upstream behind its `proxy` routes.
static ZOO: LazyLock<SocketAddr> = LazyLock::new(|| RUNTIME.block_on(start()));

async fn start() -> SocketAddr {
    let upstream = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let upstream_addr = upstream.local_addr().expect("upstream addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = upstream.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"up"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
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
    let config = zoo::config::parse(&source, Path::new("zoo.toml"), &|_| None)
        .expect("the fuzz target's config is valid");
    let metrics = Metrics::new();
    let runtime = zoo::Runtime::plan(config, &metrics).expect("the fuzz target's runtime builds");
    let serving = Serving::new(runtime, metrics);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind zoo");
    let addr = listener.local_addr().expect("zoo addr");
    tokio::spawn(zoo::serve(
        listener,
        serving,
        CancellationToken::new(),
        TaskTracker::new(),
        TaskTracker::new(),
    ));
    addr
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
