//! The accept loop of a public listener: one task per connection, HTTP/1.1 or HTTP/2 with prior
//! knowledge (h2c) told apart by the first bytes, or with `tls` HTTPS with ALPN h2/http1.1,
//! served until it closes or shutdown asks it to finish its in-flight requests. Each
//! connection reads the runtime in use when it is accepted: its `client_header_timeout`,
//! `keepalive_timeout` (HTTP/1.1, timed apart by keepalive.rs) and TLS certificate are those
//! of the latest reload. An `Upgrade: h2c` request is served as
//! plain HTTP/1.1 (the upgrade is never performed nor forwarded). HTTP/1.1, plain or over TLS
//! (ALPN `http/1.1` or none), is served by hyper's server or, with `engine = "zoo"`, by zoo's
//! own engine (engine/); HTTP/2 (h2c, ALPN h2) by hyper either way.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::drain::Counted;
use super::engine::{self, ClientStream};
use super::heap;
use super::keepalive::{self, Activity, Expired, Watched};
use super::service::ProxyService;
use super::sniff::sniff;
use crate::config::Engine;
use crate::runtime::Serving;
use crate::upstream::{MAX_HEAD_BYTES, MAX_HEADER_LIST_BYTES};

/// hyper's read buffer: [`MAX_HEAD_BYTES`], so that a head of that size fits. It sizes the
/// reads of request bodies too: 64 KiB cost 1 MiB uploads about 15% more CPU per request than
/// 256 KiB (bench A/B, 2 rounds).
const READ_BUFFER_BYTES: usize = MAX_HEAD_BYTES;

/// Serves `listener` until `stop` is cancelled (shutdown, or a reload that removed its
/// address); each connection (and each tunnel an upgrade opens) is tracked by `tracker` and,
/// when `stop` is cancelled, finishes its in-flight requests and closes. Each request is
/// tracked by `requests` until its response body ends (drain.rs).
pub async fn serve(
    listener: TcpListener,
    serving: Arc<Serving>,
    stop: CancellationToken,
    tracker: TaskTracker,
    requests: TaskTracker,
) {
    heap::raise_mmap_threshold();
    heap::trim_when_connections_close(&tracker);
    let config = &serving.load().config;
    let mut builders = Builders::new(config.client_header_timeout, config.keepalive_timeout);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => return,
        };
        let (stream, client_addr) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!("accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let runtime = serving.load_full();
        let header_timeout = runtime.config.client_header_timeout;
        let keepalive = runtime.config.keepalive_timeout;
        let engine = runtime.config.engine;
        let accepted = tokio::time::Instant::now();
        if (builders.header_timeout, builders.keepalive) != (header_timeout, keepalive) {
            builders = Builders::new(header_timeout, keepalive);
        }
        let mut service = connection_service(&serving, client_addr, &tracker, &requests);
        let timeouts = engine::Timeouts {
            first_head_due: crate::deadline::from(accepted, header_timeout),
            header: header_timeout,
            keepalive,
        };
        let builders = Arc::clone(&builders);
        let stop = stop.clone();
        tracker.spawn(async move {
            // The sniff or handshake is part of the request head: the slowloris limit applies.
            // Each branch makes its connection's future in a block of its own, which ends
            // before the future is awaited: what the block binds (the TLS stream's 1.2 KiB,
            // the sniffed socket) then takes no room in the task while it serves.
            if let Some(tls) = &runtime.tls {
                let connection = {
                    let accept = tls.acceptor().accept(stream);
                    let accept = Box::pin(tokio::time::timeout(timeouts.header, accept));
                    let Ok(Ok(stream)) = accept.await else {
                        return;
                    };
                    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                    service.service.scheme = "https";
                    // Boxed either way: a TLS connection's future in the task would make every
                    // connection's task, plain ones included, as large.
                    let connection: Pin<Box<dyn Future<Output = ()> + Send + '_>> =
                        if !h2 && engine == Engine::Zoo {
                            Box::pin(engine::serve(
                                stream,
                                Bytes::new(),
                                &service,
                                &timeouts,
                                &stop,
                            ))
                        } else {
                            Box::pin(builders.serve(h2, stream, service, &stop))
                        };
                    connection
                };
                drop(runtime);
                connection.await;
            } else {
                drop(runtime);
                let connection = {
                    let sniffed = tokio::time::timeout(timeouts.header, sniff(stream)).await;
                    let Ok(Some((h2, io))) = sniffed else {
                        return;
                    };
                    if !h2 && engine == Engine::Zoo {
                        Either::Left(engine::serve(
                            io.stream, io.head, &service, &timeouts, &stop,
                        ))
                    } else {
                        // Boxed: the task then takes no more space than zoo's engine needs
                        // (a few hundred bytes while idle; hyper's connections several KiB).
                        Either::Right(Box::pin(builders.serve(h2, io, service, &stop)))
                    }
                };
                connection.await;
            }
        });
        heap::note_open(tracker.len());
    }
}

/// The proxy service for one connection from `client_addr` (plain HTTP until the TLS branch
/// says otherwise), its tunnels tracked by `tunnels` and its requests by `requests`.
fn connection_service(
    serving: &Arc<Serving>,
    client_addr: SocketAddr,
    tunnels: &TaskTracker,
    requests: &TaskTracker,
) -> Counted {
    Counted {
        service: ProxyService {
            serving: Arc::clone(serving),
            client_addr,
            forwarded_for: super::headers::forwarded_for(client_addr.ip()),
            tunnels: tunnels.clone(),
            scheme: "http",
        },
        requests: requests.clone(),
        activity: Activity::accepted(),
    }
}

/// Serves one HTTP/1.1 connection, `stream` from `client_addr`, on zoo's own engine with the
/// routes and timeouts `serving` holds, until it closes: what the accept loop does for a
/// connection with `engine = "zoo"`, for a stream that is not an accepted socket (the engine
/// fuzz target's in-memory one, fuzz/fuzz_targets/engine.rs).
pub async fn serve_http1_stream<S: ClientStream>(
    stream: S,
    serving: Arc<Serving>,
    client_addr: SocketAddr,
) {
    let (header, keepalive) = {
        let config = &serving.load().config;
        (config.client_header_timeout, config.keepalive_timeout)
    };
    let (tunnels, requests) = (TaskTracker::new(), TaskTracker::new());
    let service = connection_service(&serving, client_addr, &tunnels, &requests);
    let timeouts = engine::Timeouts {
        first_head_due: crate::deadline::after(header),
        header,
        keepalive,
    };
    engine::serve(
        stream,
        Bytes::new(),
        &service,
        &timeouts,
        &CancellationToken::new(),
    )
    .await;
}

/// The HTTP/1.1 and HTTP/2 connection settings the connections of a listener share; made
/// again when a reload changes `client_header_timeout` or `keepalive_timeout`.
struct Builders {
    header_timeout: Duration,
    keepalive: Duration,
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
}

impl Builders {
    fn new(header_timeout: Duration, keepalive: Duration) -> Arc<Self> {
        let mut h1 = http1::Builder::new();
        // No `header_read_timeout`: hyper would count the idle time between requests in it;
        // keepalive.rs times the two waits apart. It must be turned off, not left unset:
        // given a timer, hyper applies a default of 30 s.
        h1.timer(TokioTimer::new())
            .header_read_timeout(None)
            .keep_alive(!keepalive.is_zero())
            .max_buf_size(READ_BUFFER_BYTES)
            // Larger heads are answered 431.
            .max_header_size(MAX_HEAD_BYTES);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        // RFC 8441: lets h2 clients open WebSockets (h2_websocket.rs).
        h2.timer(TokioTimer::new())
            .enable_connect_protocol()
            .max_header_list_size(MAX_HEADER_LIST_BYTES);
        Arc::new(Self {
            header_timeout,
            keepalive,
            h1,
            h2,
        })
    }

    async fn serve<I>(&self, h2: bool, io: I, service: Counted, shutdown: &CancellationToken)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        if h2 {
            let connection = self.h2.serve_connection(TokioIo::new(io), service);
            let never = std::future::pending();
            drive(
                connection,
                shutdown,
                http2::Connection::graceful_shutdown,
                never,
            )
            .await;
        } else {
            let activity = Arc::clone(&service.activity);
            let io = TokioIo::new(Watched {
                io,
                activity: Arc::clone(&activity),
            });
            let connection = self.h1.serve_connection(io, service).with_upgrades();
            let expiry = keepalive::expiry(&activity, self.header_timeout, self.keepalive);
            drive(
                connection,
                shutdown,
                http1::UpgradeableConnection::graceful_shutdown,
                expiry,
            )
            .await;
        }
    }
}

/// Polls `connection` to its end; on shutdown, or once it stayed idle too long, asks it to
/// finish in-flight requests and close; a request head that took too long drops it.
async fn drive<C: Future>(
    connection: C,
    shutdown: &CancellationToken,
    graceful_shutdown: fn(Pin<&mut C>),
    expiry: impl Future<Output = Expired>,
) {
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        () = shutdown.cancelled() => {}
        expired = expiry => match expired {
            Expired::Head => return,
            Expired::Idle => {}
        },
    }
    graceful_shutdown(connection.as_mut());
    let _ = connection.await;
}
