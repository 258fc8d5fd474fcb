//! Connections to upstreams: one keep-alive [`Pool`] of hyper client connections per app and
//! per external target, made when the runtime table is built. An app's pool dials the
//! address of the instance each request was given (its idle connections are kept by
//! address, so each instance of an app with `replicas` has its own keep-alive set, and one
//! that moved or went away just stops being matched); an external target's resolves its host at each new connection
//! and speaks TLS (rustls, the webpki roots plus a route's `ca_file`) for `https`. An app
//! with `protocol = "h2c"` gets one multiplexed HTTP/2 connection instead.
//!
//! zoo keeps its own pools rather than hyper-util's generic client because the table already
//! knows each request's upstream: no pool key is hashed per request, and a connection goes
//! back to its pool when the response body ends, without a task per request.
//!
//! Two HTTP/1.1 clients, chosen per request ([`Http1Client`], from the top-level `engine`):
//! hyper's (a task and a channel per connection), or zoo's own (`exchange.rs`: the request's
//! future does the exchange on the connection it checked out). h2c apps use hyper's HTTP/2
//! client either way. The response body either client gives, and its errors, are `body.rs`'s.

mod body;
mod exchange;
mod sending;
mod upload;

use std::future::Future as _;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

pub use body::{BodyError, ResponseBody};
use body::{Reuse, Source};
use bytes::Bytes;
pub use exchange::{ExchangeBody, RawBody, RawSocket, UpgradedUpstream, UpstreamStream};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{Either, Empty, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsConnector;
pub use upload::{RequestSplice, UploadOffer};

use crate::supervise::Dial;

/// Time allowed to establish a TCP connection to an upstream (DESIGN.md).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// An idle pooled connection older than this is closed rather than reused; apps close theirs
/// on their own schedule too (uvicorn after 5 s), which a pool notices when it checks one out.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections kept per pool; more are closed when they come back.
const MAX_IDLE: usize = 256;
/// Largest message head (start line and fields) zoo reads, from clients (listener.rs) and
/// from upstreams, HTTP/1.1 and HTTP/2 (its header list) alike, limited by bytes as nginx and
/// Caddy limit them.
///
/// hyper's HTTP/1.1 parser also caps the field count at 100, and that cap stays: raising it
/// (`max_headers`) makes hyper fill a heap buffer of that many slots for every head it parses
/// (`SmallVec::from_elem`), measured at 78,000 instructions per proxied request with 4,096
/// slots, twice zoo's whole cost per request (bench/guard.sh).
pub const MAX_HEAD_BYTES: usize = 256 * 1024;
/// [`MAX_HEAD_BYTES`] as HTTP/2's `SETTINGS_MAX_HEADER_LIST_SIZE` (hyper's default is 16 KiB).
pub const MAX_HEADER_LIST_BYTES: u32 = 256 * 1024;

/// A request body as sent upstream: the client's stream as is, the same cut at a route's
/// `max_body`, or none (which a resend can send again); a stream fails once the client
/// leaves `client_body_timeout` between two of its reads.
pub type UpstreamBody = Either<ClientBody, Either<Limited<ClientBody>, Empty<Bytes>>>;

/// A client's request body as the public listener read it: hyper's (HTTP/2, and HTTP/1.1
/// with `engine = "hyper"`, [`Either::Left`]), or one fed by zoo's own HTTP/1.1 engine
/// ([`Either::Right`]). One type rather than a type parameter, so that the request path is
/// compiled once; the engine's body is boxed because it is made above this module (`proxy/`),
/// and only a request with a body has one. `Either`'s error is [`BoxError`].
pub type RequestBody = Either<Incoming, BoxBody<Bytes, BoxError>>;

/// The error of a body whose errors come from more than one source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The client's request body, failed with [`ClientBodyTimeout`] when the client sends nothing
/// of it for `timeout`, so that a client that stopped sending does not hold the app's
/// connection until the route's `timeout` (nginx's `client_body_timeout`). The timer is made
/// only when a read first has to wait.
pub struct ClientBody {
    body: RequestBody,
    timeout: Duration,
    idle: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// The client sent nothing of its request body for `client_body_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("the client sent nothing of its request body for {0:?}")]
pub struct ClientBodyTimeout(pub Duration);

impl ClientBody {
    #[must_use]
    pub fn new(body: RequestBody, timeout: Duration) -> Self {
        Self {
            body,
            timeout,
            idle: None,
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(idle) = &mut this.idle {
                    idle.as_mut().reset(crate::deadline::after(this.timeout));
                }
                Poll::Ready(frame)
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let idle = this.idle.get_or_insert_with(|| {
                    Box::pin(tokio::time::sleep_until(crate::deadline::after(timeout)))
                });
                match idle.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(ClientBodyTimeout(timeout).into()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("ca_file {}: {source}", path.display())]
    CaFileRead {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("ca_file {}: no certificate in it", path.display())]
    CaFileEmpty { path: PathBuf },
    #[error("ca_file {}: {source}", path.display())]
    CaFileInvalid {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    #[error("`{0}` is not a valid TLS server name")]
    ServerName(String),
}

/// A request that could not be exchanged: why, and the request itself when it may go again.
pub type SendFailure = (SendError, Option<Returned>);

/// A request a failed exchange gives back, and how far it got.
pub enum Returned {
    /// None of it was written: it may go to another instance whatever its method and body.
    Unsent(Request<UpstreamBody>),
    /// It had no body and was (or may have been) written, or its response's body failed
    /// before any of it was read: it may go again when doing it twice is harmless (the
    /// caller checks the method). zoo's client gives back the request it sent; hyper's
    /// clients, which keep it, give back a copy made before sending.
    Written(Request<UpstreamBody>),
}

impl Returned {
    /// The request, whichever way it came back.
    #[must_use]
    pub fn into_request(self) -> Request<UpstreamBody> {
        match self {
            Self::Unsent(request) | Self::Written(request) => request,
        }
    }
}

/// Why a request could not be exchanged with its upstream.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection: nothing of the request was sent.
    #[error("connect: {0}")]
    Connect(#[source] io::Error),
    /// The connection failed during the exchange; the request may have been written.
    #[error("{0}")]
    Exchange(#[from] hyper::Error),
    /// zoo's client: the connection failed during the exchange (the request may have been
    /// written), or closed before a response head.
    #[error("{0}")]
    Io(#[source] io::Error),
    /// zoo's client: the response head was malformed, too large, or framed as a proxy must
    /// not pass on.
    #[error("{0}")]
    Head(#[from] crate::h1::ResponseHeadError),
    /// The response body failed before any of it was passed on.
    #[error("{0}")]
    Body(#[source] BodyError),
    /// zoo's client: the client's request body failed while it was sent.
    #[error("request body: {0}")]
    RequestBody(#[source] BoxError),
}

/// Which HTTP/1.1 client exchanges a request with an app or a remote upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Http1Client {
    /// hyper's `http1` client connection (`engine = "hyper"`).
    Hyper,
    /// zoo's own (`engine = "zoo"`).
    Zoo,
}

impl SendError {
    /// Whether the upstream could not even be connected to (so the request was not sent).
    #[must_use]
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect(_))
    }
}

/// Where a pool's connections go.
enum Endpoint {
    /// An app on loopback, at the address each request passes (a replace moves it).
    App,
    /// An external target: its host is resolved for each new connection.
    Remote {
        host: String,
        port: u16,
        tls: Option<(TlsConnector, ServerName<'static>)>,
    },
}

/// A pool's connections, by protocol.
enum Connections {
    /// Idle HTTP/1.1 connections, the most recently used last.
    Http1(Mutex<Vec<Idle>>),
    /// The HTTP/2 connection every request to one address shares (one per instance of an
    /// app), by address.
    Http2(Mutex<Vec<(Dial, http2::SendRequest<UpstreamBody>)>>),
}

struct Idle {
    connection: IdleConnection,
    /// The address it is connected to, for an app's pool; `None` for a remote one.
    addr: Option<Dial>,
    since: Instant,
}

/// An idle HTTP/1.1 connection of either client.
enum IdleConnection {
    Hyper(http1::SendRequest<UpstreamBody>),
    Zoo(exchange::Connection),
}

/// Keep-alive connections to one upstream.
pub struct Pool {
    endpoint: Endpoint,
    connections: Connections,
}

impl Pool {
    /// A pool of HTTP/1.1 connections to an app (`h2c`: one HTTP/2 connection).
    #[must_use]
    pub fn app(h2c: bool) -> Arc<Self> {
        Arc::new(Self {
            endpoint: Endpoint::App,
            connections: if h2c {
                Connections::Http2(Mutex::new(Vec::new()))
            } else {
                Connections::Http1(Mutex::new(Vec::new()))
            },
        })
    }

    /// A pool of HTTP/1.1 connections to `host:port`, over TLS trusting the webpki roots
    /// plus the certificates in `ca_file` when `tls` is set.
    pub fn remote(
        host: &str,
        port: u16,
        tls: bool,
        ca_file: Option<&Path>,
    ) -> Result<Arc<Self>, UpstreamError> {
        let tls = if tls {
            let server_name = ServerName::try_from(host.to_owned())
                .map_err(|_| UpstreamError::ServerName(host.to_owned()))?;
            Some((
                TlsConnector::from(Arc::new(tls_config(ca_file)?)),
                server_name,
            ))
        } else {
            None
        };
        Ok(Arc::new(Self {
            endpoint: Endpoint::Remote {
                host: host.to_owned(),
                port,
                tls,
            },
            connections: Connections::Http1(Mutex::new(Vec::new())),
        }))
    }

    /// Sends `request` on a pooled connection (a new one when none is idle) to `app_addr`, the
    /// address of the app instance chosen for it, for an app's pool (`None` for a remote
    /// one), with `client` for HTTP/1.1, and waits for the response head and for what
    /// [`ResponseBody::take_ready_start`] checks. A request that a reused connection could not
    /// take (the upstream had closed it) goes on a fresh one, whatever its method: none of it
    /// was written. On failure the request comes back when it may go again ([`Returned`]).
    pub async fn send(
        self: &Arc<Self>,
        app_addr: Option<Dial>,
        request: Request<UpstreamBody>,
        client: Http1Client,
    ) -> Result<Response<ResponseBody>, SendFailure> {
        // hyper's clients keep the request they were given: a bodiless one that may need
        // sending again is copied first. zoo's gives back the one it sent. hyper's paths are
        // boxed: their futures (0.8k and 1.5k bytes) would otherwise be part of every
        // request's future on zoo's client, moved and copied with it.
        let (again, sent) = match &self.connections {
            Connections::Http1(idle) if client == Http1Client::Zoo => {
                return self.send_zoo_http1(idle, app_addr, request).await;
            }
            Connections::Http1(idle) => (
                copy_to_resend(&request),
                Box::pin(self.send_hyper_http1(idle, app_addr, request)).await,
            ),
            Connections::Http2(shared) => (
                copy_to_resend(&request),
                Box::pin(self.send_pooled_http2(shared, app_addr, request)).await,
            ),
        };
        match sent {
            Ok(mut response) => match response.body_mut().take_ready_start().await {
                Ok(()) => Ok(response),
                Err(source) => Err(failed_start(source, again)),
            },
            Err((error, Some(unsent))) => Err((error, Some(Returned::Unsent(unsent)))),
            Err((error, None)) => Err((error, again.map(Returned::Written))),
        }
    }

    async fn send_pooled_http2(
        self: &Arc<Self>,
        shared: &Mutex<Vec<(Dial, http2::SendRequest<UpstreamBody>)>>,
        app_addr: Option<Dial>,
        request: Request<UpstreamBody>,
    ) -> Result<Response<ResponseBody>, Unsent> {
        let current = lock(shared)
            .iter()
            .find(|(to, sender)| Some(to) == app_addr.as_ref() && !sender.is_closed())
            .map(|(_, sender)| sender.clone());
        let reused = current.is_some();
        let sender = match current {
            Some(sender) => sender,
            None => match Box::pin(self.connect_http2(shared, app_addr.as_ref())).await {
                Ok(sender) => sender,
                Err(error) => return Err((error, Some(request))),
            },
        };
        match send_http2(sender, request).await {
            Err((Some(unsent), _)) if reused => {
                match Box::pin(self.connect_http2(shared, app_addr.as_ref())).await {
                    Ok(sender) => send_http2(sender, unsent).await,
                    Err(error) => Err((Some(unsent), error)),
                }
            }
            sent => sent,
        }
        .map_err(|(unsent, error)| (error, unsent))
    }

    async fn send_hyper_http1(
        self: &Arc<Self>,
        idle: &Mutex<Vec<Idle>>,
        app_addr: Option<Dial>,
        mut request: Request<UpstreamBody>,
    ) -> Result<Response<ResponseBody>, Unsent> {
        loop {
            let (mut sender, reused) =
                match Self::checkout(idle, app_addr.as_ref(), Http1Client::Hyper) {
                    Some(IdleConnection::Hyper(sender)) => (sender, true),
                    // Boxed, here and for HTTP/2: a (TLS) connect is a large future, and
                    // every request's future would carry its space for the rare new connection.
                    _ => match Box::pin(self.connect_hyper_http1(app_addr.as_ref())).await {
                        Ok(sender) => (sender, false),
                        Err(error) => return Err((error, Some(request))),
                    },
                };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let reuse =
                        (response.status() != StatusCode::SWITCHING_PROTOCOLS).then(|| Reuse {
                            pool: Arc::clone(self),
                            sender,
                            addr: app_addr.clone(),
                            ended: false,
                        });
                    return Ok(response.map(|body| ResponseBody {
                        source: Source::Hyper { body, reuse },
                        first: None,
                        lease: None,
                    }));
                }
                Err(mut error) => match error.take_message() {
                    Some(unsent) if reused => request = unsent,
                    unsent => return Err((error.into_error().into(), unsent)),
                },
            }
        }
    }

    async fn send_zoo_http1(
        self: &Arc<Self>,
        idle: &Mutex<Vec<Idle>>,
        app_addr: Option<Dial>,
        mut request: Request<UpstreamBody>,
    ) -> Result<Response<ResponseBody>, SendFailure> {
        loop {
            let (connection, reused) =
                match Self::checkout(idle, app_addr.as_ref(), Http1Client::Zoo) {
                    Some(IdleConnection::Zoo(connection)) => (connection, true),
                    _ => match Box::pin(self.connect_stream(app_addr.as_ref())).await {
                        Ok(stream) => (exchange::Connection::new(stream), false),
                        Err(error) => return Err((error, Some(Returned::Unsent(request)))),
                    },
                };
            let home = exchange::Home {
                pool: Arc::clone(self),
                addr: app_addr.clone(),
            };
            // Boxed: the exchange's state (its connection, the request, the response being
            // read) would otherwise be part of every request's future, on either client, and
            // moved with it.
            match Box::pin(exchange::exchange(connection, request, reused, home)).await {
                Err((_, Some(Returned::Unsent(unsent)))) if reused => request = unsent,
                exchanged => return exchanged,
            }
        }
    }

    /// The most recently used idle connection of `client` to `addr` that can take a request
    /// now, if any. Connections to other addresses (an app's other instances) stay; closed or
    /// expired ones met on the way are dropped.
    fn checkout(
        idle: &Mutex<Vec<Idle>>,
        addr: Option<&Dial>,
        client: Http1Client,
    ) -> Option<IdleConnection> {
        let mut idle = lock(idle);
        let mut index = idle.len();
        while index > 0 {
            index -= 1;
            let entry = &mut idle[index];
            let expired = entry.since.elapsed() > POOL_IDLE_TIMEOUT;
            let wanted = entry.addr.as_ref() == addr;
            let usable = !expired
                && match &mut entry.connection {
                    IdleConnection::Hyper(sender) => sender.is_ready(),
                    // Probed only when it would be taken: the probe is a system call.
                    IdleConnection::Zoo(connection) => {
                        !wanted || client != Http1Client::Zoo || connection.is_open_and_quiet()
                    }
                };
            let kind = match entry.connection {
                IdleConnection::Hyper(_) => Http1Client::Hyper,
                IdleConnection::Zoo(_) => Http1Client::Zoo,
            };
            if !usable {
                idle.remove(index);
            } else if wanted && kind == client {
                return Some(idle.remove(index).connection);
            }
        }
        None
    }

    /// Returns a connection whose response has ended to the pool: at once when it can take
    /// the next request, else once it can (its connection task has not yet seen the end, or
    /// is still sending the request body to an upstream that answered early).
    fn put_back(self: Arc<Self>, sender: http1::SendRequest<UpstreamBody>, addr: Option<Dial>) {
        if sender.is_ready() {
            self.keep_idle(IdleConnection::Hyper(sender), addr);
        } else if !sender.is_closed()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let mut sender = sender;
                if sender.ready().await.is_ok() {
                    self.keep_idle(IdleConnection::Hyper(sender), addr);
                }
            });
        }
    }

    /// Keeps a connection of zoo's client whose exchange ended cleanly.
    fn keep_idle_connection(&self, connection: exchange::Connection, addr: Option<Dial>) {
        self.keep_idle(IdleConnection::Zoo(connection), addr);
    }

    fn keep_idle(&self, connection: IdleConnection, addr: Option<Dial>) {
        let Connections::Http1(idle) = &self.connections else {
            return;
        };
        let mut idle = lock(idle);
        if idle.len() < MAX_IDLE {
            idle.push(Idle {
                connection,
                addr,
                since: Instant::now(),
            });
        }
    }

    /// A new connection for hyper's HTTP/1.1 client, its task spawned. Each stream type is
    /// handed to hyper as itself, so that an upgrade can be taken apart again (tunnel.rs).
    async fn connect_hyper_http1(
        &self,
        addr: Option<&Dial>,
    ) -> Result<http1::SendRequest<UpstreamBody>, SendError> {
        match self.connect_stream(addr).await? {
            UpstreamStream::Tcp(tcp) => handshake_http1(tcp).await,
            UpstreamStream::Unix(unix) => handshake_http1(unix).await,
            UpstreamStream::Tls(tls) => handshake_http1(*tls).await,
        }
    }

    /// A new HTTP/1.1 connection's stream: TCP or Unix, then TLS for an `https` target.
    async fn connect_stream(&self, addr: Option<&Dial>) -> Result<UpstreamStream, SendError> {
        let tcp = match self.connect(addr).await? {
            Connected::Tcp(tcp) => tcp,
            Connected::Unix(unix) => return Ok(UpstreamStream::Unix(unix)),
        };
        match &self.endpoint {
            Endpoint::Remote {
                tls: Some((connector, server_name)),
                ..
            } => {
                let tls = connector
                    .connect(server_name.clone(), tcp)
                    .await
                    .map_err(SendError::Connect)?;
                Ok(UpstreamStream::Tls(Box::new(tls)))
            }
            _ => Ok(UpstreamStream::Tcp(tcp)),
        }
    }

    async fn connect_http2(
        &self,
        shared: &Mutex<Vec<(Dial, http2::SendRequest<UpstreamBody>)>>,
        addr: Option<&Dial>,
    ) -> Result<http2::SendRequest<UpstreamBody>, SendError> {
        let Some(addr) = addr else {
            return Err(no_address());
        };
        let sender = match self.connect(Some(addr)).await? {
            Connected::Tcp(tcp) => handshake_http2(tcp).await?,
            Connected::Unix(unix) => handshake_http2(unix).await?,
        };
        let mut shared = lock(shared);
        shared.retain(|(to, sender)| to != addr && !sender.is_closed());
        shared.push((addr.clone(), sender.clone()));
        Ok(sender)
    }

    /// A new connection to the app instance at `addr`, or to the remote host.
    async fn connect(&self, addr: Option<&Dial>) -> Result<Connected, SendError> {
        let connecting = async {
            let stream = match (&self.endpoint, addr) {
                (Endpoint::App, Some(Dial::Tcp(addr))) => TcpStream::connect(addr).await?,
                (Endpoint::App, Some(Dial::Unix(path))) => {
                    return Ok(Connected::Unix(UnixStream::connect(path).await?));
                }
                (Endpoint::Remote { host, port, .. }, _) => {
                    TcpStream::connect((host.as_str(), *port)).await?
                }
                (Endpoint::App, None) => {
                    return Err(io::Error::other("an app's pool was given no address"));
                }
            };
            stream.set_nodelay(true)?;
            Ok(Connected::Tcp(stream))
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(result) => result.map_err(SendError::Connect),
            Err(_) => Err(SendError::Connect(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no connection within {CONNECT_TIMEOUT:?}"),
            ))),
        }
    }
}

/// A new upstream connection: TCP (an app's port, or a remote host), or an app's Unix socket.
enum Connected {
    Tcp(TcpStream),
    Unix(UnixStream),
}

fn no_address() -> SendError {
    SendError::Connect(io::Error::other("an app's pool was given no address"))
}

/// Starts HTTP/2 with prior knowledge on a new connection and spawns the task driving it.
async fn handshake_http2<S>(stream: S) -> Result<http2::SendRequest<UpstreamBody>, SendError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_LIST_BYTES)
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// What hyper's clients give back on failure: the request when none of it was sent.
type Unsent = (SendError, Option<Request<UpstreamBody>>);

/// Whether `request` goes without a body (the proxy gave it none: `Empty`), so that it can be
/// sent again as it is.
#[must_use]
pub fn is_bodiless(request: &Request<UpstreamBody>) -> bool {
    matches!(request.body(), Either::Right(Either::Right(_)))
}

/// A copy of a request that may be sent a second time after it was written: an idempotent
/// method and no body.
fn copy_to_resend(request: &Request<UpstreamBody>) -> Option<Request<UpstreamBody>> {
    if !(is_bodiless(request) && request.method().is_idempotent()) {
        return None;
    }
    let mut copy = Request::new(Either::Right(Either::Right(Empty::new())));
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    copy.headers_mut().clone_from(request.headers());
    Some(copy)
}

/// A response whose body failed at once ([`ResponseBody::take_ready_start`]): its request
/// (`again`, when it may go twice) comes back as written if the connection went away before
/// any of the body was read, since the client has been sent nothing yet; a malformed body is
/// refused, not asked for again.
fn failed_start(source: BodyError, again: Option<Request<UpstreamBody>>) -> SendFailure {
    let again = again.filter(|_| source.is_connection_lost());
    (source.into(), again.map(Returned::Written))
}

/// Sends `request` on a shared HTTP/2 connection; on failure, gives the request back if none
/// of it was sent.
async fn send_http2(
    mut sender: http2::SendRequest<UpstreamBody>,
    request: Request<UpstreamBody>,
) -> Result<Response<ResponseBody>, (Option<Request<UpstreamBody>>, SendError)> {
    if let Err(error) = sender.ready().await {
        return Err((Some(request), error.into()));
    }
    match sender.try_send_request(request).await {
        Ok(response) => Ok(response.map(ResponseBody::unpooled)),
        Err(mut error) => Err((error.take_message(), error.into_error().into())),
    }
}

/// Starts HTTP/1.1 on a new connection and spawns the task that drives it; upgrades (a
/// WebSocket's 101) hand the connection over to the tunnel.
async fn handshake_http1<S>(stream: S) -> Result<http1::SendRequest<UpstreamBody>, SendError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::Builder::new()
        .max_header_size(MAX_HEAD_BYTES)
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(connection.with_upgrades());
    Ok(sender)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded data is a list of connections, valid whatever a panicking holder did.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// rustls trusting the webpki roots plus `ca_file`'s certificates, offering HTTP/1.1.
fn tls_config(ca_file: Option<&Path>) -> Result<ClientConfig, UpstreamError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        add_ca_file(&mut roots, path)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn add_ca_file(roots: &mut RootCertStore, path: &Path) -> Result<(), UpstreamError> {
    let read_error = |source| UpstreamError::CaFileRead {
        path: path.to_owned(),
        source,
    };
    let mut added = 0;
    for certificate in CertificateDer::pem_file_iter(path).map_err(read_error)? {
        roots
            .add(certificate.map_err(read_error)?)
            .map_err(|source| UpstreamError::CaFileInvalid {
                path: path.to_owned(),
                source,
            })?;
        added += 1;
    }
    if added == 0 {
        return Err(UpstreamError::CaFileEmpty {
            path: path.to_owned(),
        });
    }
    Ok(())
}
