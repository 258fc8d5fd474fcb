//! zoo's own HTTP/1.1 engine (`engine = "zoo"`, src/proxy/engine/) on arbitrary client bytes:
//! the input is everything a client sends on one connection, written to the engine's
//! connection loop over an in-memory stream (`tokio::io::duplex`, through
//! `zoo::serve_http1_stream`), then the client's write side closes. The service is zoo's own,
//! with routes that need no upstream: `respond` at `/`, a `redirect`, and a `proxy` route to a
//! closed port (zoo's 502). Heads, pipelining, bodies of both framings, `Expect`, upgrades,
//! refusals and the drain of unread bodies all run as on a socket.
//!
//! Fails on a panic anywhere in zoo, a connection not done within 10 s of its client's end,
//! output past a bound linear in the input (each request gets at most one answer of bounded
//! size), and output that does not start with a status line.
#![no_main]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zoo::{Metrics, Serving};
use zoo_fuzz::RUNTIME;

/// How long one input may take once its bytes are written.
const DEADLINE: Duration = Duration::from_secs(10);
/// The bytes one answer may take at most: zoo's own answers are a head and one line; a head
/// the engine cannot parse is answered once and closes the connection.
const ANSWER_BYTES: usize = 4 * 1024;

static SERVING: LazyLock<Arc<Serving>> = LazyLock::new(|| {
    // A port nothing listens on: the `proxy` route's connect fails at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let source = format!(
        "listen = \"127.0.0.1:0\"\n\
         request_id = false\n\
         client_header_timeout = \"2s\"\n\
         \n\
         [routes]\n\
         \"/\" = {{ respond = \"ok\\n\" }}\n\
         \"/r\" = {{ redirect = \"/\" }}\n\
         \"/p\" = {{ proxy = \"http://127.0.0.1:{closed}\", max_body = 64 }}\n"
    );
    let config = zoo::config::parse(&source, Path::new("zoo.toml"), &|_| None)
        .expect("the fuzz target's config is valid");
    let metrics = Metrics::new();
    let runtime = zoo::Runtime::plan(config, &metrics).expect("the fuzz target's runtime builds");
    Serving::new(runtime, metrics)
});

fuzz_target!(|input: &[u8]| {
    let output = RUNTIME.block_on(async {
        let serving = Arc::clone(&SERVING);
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let client_addr = SocketAddr::from(([127, 0, 0, 1], 40000));
        let connection = tokio::spawn(zoo::serve_http1_stream(server, serving, client_addr));
        let exchange = async {
            let (mut reader, mut writer) = tokio::io::split(&mut client);
            let write = async {
                // The engine may close early (a refused head): what it did not read is lost.
                let _ = writer.write_all(input).await;
                let _ = writer.shutdown().await;
            };
            let mut output = Vec::new();
            let read = reader.read_to_end(&mut output);
            let (_, read) = tokio::join!(write, read);
            read.expect("reading the engine's answers");
            output
        };
        let output = tokio::time::timeout(DEADLINE, exchange)
            .await
            .expect("the engine did not finish within 10 s of the client's end");
        tokio::time::timeout(DEADLINE, connection)
            .await
            .expect("the connection's task did not end")
            .expect("the connection's task panicked");
        output
    });
    let requests = input.windows(2).filter(|pair| pair == b"\n\n").count()
        + input.windows(3).filter(|three| three == b"\n\r\n").count()
        + 1;
    assert!(
        output.len() <= requests.saturating_mul(ANSWER_BYTES),
        "{} bytes of output for {} bytes of input ({requests} heads at most)",
        output.len(),
        input.len()
    );
    assert!(
        output.is_empty() || output.starts_with(b"HTTP/1."),
        "output does not start with a status line: {:?}",
        String::from_utf8_lossy(&output[..output.len().min(200)])
    );
});
