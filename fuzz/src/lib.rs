//! What the network fuzz targets share: one tokio runtime for every input, and zoo itself
//! started from a config on a loopback listener through the same public calls the binary
//! makes (`config::parse`, `Runtime::plan`, `Serving::new`, `serve`), so an input reaches
//! zoo's real accept loop, service and forwarding code.

pub mod framing;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::LazyLock;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use zoo::{Metrics, Serving};

/// The one runtime every input runs on: zoo's tasks outlive each input.
pub static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
});

/// Starts an upstream on 127.0.0.1 that hands each accepted connection to `serve` in a task
/// of its own, and returns its address. Call it inside [`RUNTIME`].
pub async fn start_upstream<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("upstream addr");
    tokio::spawn(async move {
        loop {
            if let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream));
            }
        }
    });
    addr
}

/// Starts zoo serving `source` (a zoo.toml) on 127.0.0.1 and returns its address. Call it
/// inside [`RUNTIME`].
pub async fn start_zoo(source: &str) -> SocketAddr {
    let config = zoo::config::parse(source, Path::new("zoo.toml"), &|_| None)
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
