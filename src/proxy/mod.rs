//! The proxy: the hyper service that normalises each request's path, finds its route in the
//! runtime table and acts (forward to an app or an external target, respond, redirect), plus
//! the accept loops that serve it on the public listeners with graceful shutdown.
//!
//! Everything a request reads sits in one [`RuntimeTable`] behind one `ArcSwap`, built from a
//! validated config; a request loads it once. Bodies stream both ways, never buffered whole.

mod drain;
mod error;
mod h2_websocket;
mod headers;
mod listener;
mod template;
mod tunnel;
mod upstream;

use std::borrow::Cow;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme as UriScheme};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use http_body_util::{Either, Empty, Full, Limited};
use hyper::body::{Body, Incoming};
use tokio_util::task::TaskTracker;

use crate::config::{self, Action, Builtin, Config, Protocol, ProxyTarget, Scheme};
use crate::log::{AccessEntry, AccessLog};
use crate::route::{self, RouteTable};
use crate::supervise::AppHandle;
use crate::telemetry::{Health, Metrics, RouteMetrics};
use error::BodyFault;
pub use error::ProxyError;
pub use listener::serve;
use template::{Template, Values};
pub use upstream::UpstreamError;
use upstream::{Pool, ResponseBody, UpstreamBody};

/// Every response zoo sends: an upstream's streamed body or one zoo made.
pub type ZooBody = Either<ResponseBody, Full<Bytes>>;

/// Pause before asking again whether an app that refused a connection is ready: the reaper
/// may not have seen it die yet.
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// How many times a replayable request whose app connection broke after writing is sent
/// again (each after waiting for the app to be ready).
const APP_RESENDS: u32 = 3;
/// Longest request target accepted (nginx's default large header buffer); longer is 414.
const MAX_URI_BYTES: usize = 8 * 1024;

/// What one route does, resolved from the config.
enum RouteAction {
    Forward {
        upstream: Upstream,
        strip_prefix: bool,
        /// The route's `max_body`: a larger request body is answered 413.
        max_body: Option<u64>,
        /// The route's `timeout` to response headers: then 504.
        timeout: Duration,
        /// The route's `wait` for an app that is not ready: then 503.
        wait: Duration,
    },
    Respond {
        status: StatusCode,
        headers: HeaderMap,
        body: Template,
    },
    Redirect {
        status: StatusCode,
        location: Template,
    },
    /// The `health` built-in.
    Health(Arc<Health>),
    /// The `metrics` built-in.
    Metrics(Arc<Metrics>),
}

enum Upstream {
    /// A supervised app; `h2c` when its port speaks HTTP/2 with prior knowledge.
    App {
        app: Arc<AppHandle>,
        /// Keep-alive connections to the app, shared by every route to it.
        pool: Arc<Pool>,
        h2c: bool,
        /// The app's port and its `127.0.0.1:PORT` authority, so that a request clones a
        /// shared one instead of formatting and parsing it; rebuilt when a replace moves the
        /// app to another port.
        authority: ArcSwap<(u16, Authority)>,
    },
    External(Box<External>),
}

/// `addr` as a request URI's authority.
fn authority_of(addr: SocketAddr) -> Authority {
    Authority::try_from(addr.to_string()).expect("a socket address is a valid authority")
}

impl Upstream {
    /// The authority of the app's current address, from the cache unless its port moved.
    fn app_authority(app: &AppHandle, cached: &ArcSwap<(u16, Authority)>) -> Authority {
        let addr = app.addr();
        let current = cached.load();
        if current.0 == addr.port() {
            return current.1.clone();
        }
        let authority = authority_of(addr);
        cached.store(Arc::new((addr.port(), authority.clone())));
        authority
    }
}

/// An external `proxy` target with everything a request needs already parsed.
struct External {
    target: ProxyTarget,
    /// The `Host` header sent: the target's authority, which TLS SNI matches.
    host: HeaderValue,
    pool: Arc<Pool>,
}

impl Upstream {
    /// The app's name or the target's authority: the label of metrics and access log lines.
    fn label(&self) -> &str {
        match self {
            Self::App { app, .. } => &app.name,
            Self::External(external) => &external.target.authority,
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::App { app, .. } => format!("app `{}` at {}", app.name, app.addr()),
            Self::External(external) => {
                format!(
                    "{}://{}",
                    scheme_str(external.target.scheme),
                    external.target.authority
                )
            }
        }
    }
}

fn scheme_str(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::Http => "http",
        Scheme::Https => "https",
    }
}

/// A route's action and what its requests are counted under.
struct RouteEntry {
    action: RouteAction,
    stats: Arc<RouteStats>,
}

/// What a request is recorded under once answered: the route it matched and its upstream.
pub struct RouteStats {
    key: String,
    /// The upstream's label, `-` for routes zoo answers itself.
    upstream: String,
    metrics: RouteMetrics,
}

impl RouteStats {
    fn new(key: &str, upstream: &str, metrics: &Metrics) -> Arc<Self> {
        Arc::new(Self {
            key: key.to_owned(),
            upstream: upstream.to_owned(),
            metrics: metrics.route(key),
        })
    }
}

/// Everything the request path reads, immutable once built.
pub struct RuntimeTable {
    routes: RouteTable<RouteEntry>,
    /// Read by the listeners when they start (a reload does not change it).
    client_header_timeout: Duration,
    /// Clients whose `X-Forwarded-*` are kept and appended to (`trust_forwarded`).
    trust_forwarded: Vec<config::Network>,
    /// The listeners' TLS, read when they start like `client_header_timeout`.
    tls: Option<tokio_rustls::TlsAcceptor>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("route `{route}`: {source}")]
    Upstream {
        route: String,
        #[source]
        source: UpstreamError,
    },
    #[error("route `{route}`: proxy target `{target}` is not a valid URI authority")]
    BadAuthority { route: String, target: String },
    #[error("route `{route}`: app `{app}` is not supervised")]
    UnknownApp { route: String, app: String },
    #[error(transparent)]
    Tls(#[from] listener::TlsError),
}

impl RuntimeTable {
    /// Resolves every route of `config` against the running apps. Fails on what the config
    /// check cannot see: an unreadable `ca_file`, say.
    pub fn build(
        config: &Config,
        apps: &[Arc<AppHandle>],
        health: &Arc<Health>,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, BuildError> {
        let apps: HashMap<&str, &Arc<AppHandle>> =
            apps.iter().map(|app| (app.name.as_str(), app)).collect();
        let h2c: Vec<&str> = config
            .apps
            .iter()
            .filter(|app| app.protocol == Protocol::H2c)
            .map(|app| app.name.as_str())
            .collect();
        let pools: HashMap<&str, Arc<Pool>> = apps
            .keys()
            .map(|name| (*name, Pool::app(h2c.contains(name))))
            .collect();
        let mut routes = Vec::with_capacity(config.routes.len());
        for route in &config.routes {
            let action = resolve(route, &apps, &pools, &h2c, health, metrics)?;
            let upstream = match &action {
                RouteAction::Forward { upstream, .. } => upstream.label(),
                _ => "-",
            };
            let stats = RouteStats::new(&route.key, upstream, metrics);
            routes.push((route.key.clone(), RouteEntry { action, stats }));
        }
        Ok(Self {
            routes: RouteTable::new(routes),
            client_header_timeout: config.client_header_timeout,
            trust_forwarded: config.trust_forwarded.clone(),
            tls: config.tls.as_ref().map(listener::acceptor).transpose()?,
        })
    }

    /// One line per route, in match-priority order, for `zoo check`.
    #[must_use]
    pub fn describe(&self) -> Vec<String> {
        self.routes
            .iter()
            .map(|(key, entry)| {
                let what = match &entry.action {
                    RouteAction::Forward {
                        upstream,
                        strip_prefix,
                        ..
                    } => {
                        let strip = if *strip_prefix { " (strip prefix)" } else { "" };
                        format!("-> {}{strip}", upstream.describe())
                    }
                    RouteAction::Respond { status, body, .. } => {
                        format!("respond {} {:?}", status.as_u16(), body.source())
                    }
                    RouteAction::Redirect { status, location } => {
                        format!("redirect {} {:?}", status.as_u16(), location.source())
                    }
                    RouteAction::Health(_) => "builtin health".to_owned(),
                    RouteAction::Metrics(_) => "builtin metrics".to_owned(),
                };
                format!("{key:<16} {what}")
            })
            .collect()
    }
}

fn resolve(
    route: &config::Route,
    apps: &HashMap<&str, &Arc<AppHandle>>,
    pools: &HashMap<&str, Arc<Pool>>,
    h2c: &[&str],
    health: &Arc<Health>,
    metrics: &Arc<Metrics>,
) -> Result<RouteAction, BuildError> {
    Ok(match &route.action {
        Action::App { name } => RouteAction::Forward {
            upstream: Upstream::App {
                app: Arc::clone(
                    apps.get(name.as_str())
                        .ok_or_else(|| BuildError::UnknownApp {
                            route: route.key.clone(),
                            app: name.clone(),
                        })?,
                ),
                pool: Arc::clone(&pools[name.as_str()]),
                h2c: h2c.contains(&name.as_str()),
                authority: {
                    let addr = apps[name.as_str()].addr();
                    ArcSwap::from_pointee((addr.port(), authority_of(addr)))
                },
            },
            strip_prefix: route.strip_prefix,
            max_body: route.max_body,
            timeout: route.timeout,
            wait: route.wait,
        },
        Action::Proxy { target, ca_file } => {
            let pool = Pool::remote(
                &target.host,
                target.port,
                target.scheme == Scheme::Https,
                ca_file.as_deref(),
            )
            .map_err(|source| BuildError::Upstream {
                route: route.key.clone(),
                source,
            })?;
            let bad_authority = || BuildError::BadAuthority {
                route: route.key.clone(),
                target: target.authority.clone(),
            };
            RouteAction::Forward {
                upstream: Upstream::External(Box::new(External {
                    host: HeaderValue::from_str(&target.authority).map_err(|_| bad_authority())?,
                    target: target.clone(),
                    pool,
                })),
                strip_prefix: route.strip_prefix,
                max_body: route.max_body,
                timeout: route.timeout,
                wait: route.wait,
            }
        }
        Action::Respond {
            status,
            headers,
            body,
        } => RouteAction::Respond {
            status: *status,
            headers: headers.iter().cloned().collect(),
            body: Template::parse(body),
        },
        Action::Redirect { status, location } => RouteAction::Redirect {
            status: *status,
            location: Template::parse(location),
        },
        Action::Builtin(Builtin::Health) => RouteAction::Health(Arc::clone(health)),
        Action::Builtin(Builtin::Metrics) => RouteAction::Metrics(Arc::clone(metrics)),
    })
}

/// State shared by every connection of the public listeners.
pub struct Shared {
    /// The current runtime table; a reload stores a new one, requests in flight keep theirs.
    pub table: ArcSwap<RuntimeTable>,
    metrics: Arc<Metrics>,
    /// Where requests that matched no route (or had a bad path) are counted.
    unrouted: Arc<RouteStats>,
    access_log: Option<AccessLog>,
}

/// What handling a request found out, for its metrics and access log line.
#[derive(Default)]
struct Trace {
    route: Option<Arc<RouteStats>>,
    upstream_time: Option<Duration>,
}

impl Shared {
    #[must_use]
    pub fn new(
        table: RuntimeTable,
        metrics: Arc<Metrics>,
        access_log: Option<AccessLog>,
    ) -> Arc<Self> {
        Arc::new(Self {
            table: ArcSwap::from_pointee(table),
            unrouted: RouteStats::new("", "-", &metrics),
            metrics,
            access_log,
        })
    }
}

/// The per-connection service: shared state plus who the client is.
#[derive(Clone)]
struct ProxyService {
    shared: Arc<Shared>,
    client_addr: SocketAddr,
    /// `X-Forwarded-For` for this client, made once per connection rather than per request.
    forwarded_for: HeaderValue,
    /// Where upgraded tunnels are tracked, so graceful shutdown waits for them.
    tunnels: TaskTracker,
    /// `http` or `https`: what the client connected with, for `X-Forwarded-Proto`.
    scheme: &'static str,
}

impl hyper::service::Service<Request<Incoming>> for ProxyService {
    type Response = Response<ZooBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        let service = self.clone();
        Box::pin(async move {
            let started = Instant::now();
            let shared = Arc::clone(&service.shared);
            shared.metrics.in_flight.inc();
            let method = request.method().clone();
            // Copied only when an access log wants it.
            let logged = shared.access_log.as_ref().map(|_| {
                let target = request
                    .uri()
                    .path_and_query()
                    .map_or("", PathAndQuery::as_str);
                (target.to_owned(), request.version())
            });
            let mut trace = Trace::default();
            // RFC 8441: an h2 extended CONNECT goes to the app as an HTTP/1.1 WebSocket upgrade.
            let handled = match h2_websocket::translate_request(&mut request) {
                Ok(handshake) => service
                    .handle(request, &mut trace)
                    .await
                    .and_then(|response| h2_websocket::finish(response, handshake)),
                Err(error) => Err(error),
            };
            let response = match handled {
                Ok(response) => response,
                Err(error) => {
                    if let Some(kind) = error.upstream_kind() {
                        let label = trace
                            .route
                            .as_ref()
                            .map_or("-", |route| route.upstream.as_str());
                        shared.metrics.upstream_error(label, kind);
                    }
                    error.into_response()
                }
            };
            let duration = started.elapsed();
            shared.metrics.in_flight.dec();
            let route = trace.route.as_ref().unwrap_or(&shared.unrouted);
            route.metrics.observe(&method, response.status(), duration);
            if let (Some(log), Some((target, version))) = (&shared.access_log, logged) {
                log.record(&AccessEntry {
                    client: service.client_addr.ip(),
                    method: method.as_str(),
                    target: &target,
                    version,
                    status: response.status().as_u16(),
                    bytes: response.body().size_hint().exact(),
                    duration,
                    route: &route.key,
                    upstream: &route.upstream,
                    upstream_time: trace.upstream_time,
                });
            }
            Ok(response)
        })
    }
}

impl ProxyService {
    async fn handle(
        &self,
        request: Request<Incoming>,
        trace: &mut Trace,
    ) -> Result<Response<ZooBody>, ProxyError> {
        if request
            .uri()
            .path_and_query()
            .is_some_and(|target| target.as_str().len() > MAX_URI_BYTES)
        {
            return Err(ProxyError::UriTooLong {
                limit: MAX_URI_BYTES,
            });
        }
        // hyper decodes `chunked` and nothing else; another coding would reach the app
        // without its name (Transfer-Encoding is hop-by-hop). nginx answers 501 as well.
        let mut codings = request.headers().get_all(header::TRANSFER_ENCODING).iter();
        if let Some(first) = codings.next()
            && (codings.next().is_some() || !first.as_bytes().eq_ignore_ascii_case(b"chunked"))
        {
            return Err(ProxyError::TransferCoding);
        }
        // RFC 9112 3.2: an HTTP/1.1 request names exactly one host; two could route one way
        // here and another way at the app.
        let mut hosts = request.headers().get_all(header::HOST).iter();
        match (hosts.next(), hosts.next()) {
            (None, _) if request.version() == Version::HTTP_11 => {
                return Err(ProxyError::Host("no Host header"));
            }
            (Some(_), Some(_)) => return Err(ProxyError::Host("more than one Host header")),
            _ => {}
        }
        let path = route::normalize(request.uri().path())?;
        let table = self.shared.table.load_full();
        let Some(matched) = table.routes.lookup(&path) else {
            return Err(ProxyError::NoRoute {
                path: path.into_owned(),
            });
        };
        trace.route = Some(Arc::clone(&matched.value.stats));
        match &matched.value.action {
            RouteAction::Forward {
                upstream,
                strip_prefix,
                max_body,
                timeout,
                wait,
            } => {
                let forwarded_path = if *strip_prefix {
                    route::strip_prefix(&path, matched.prefix_len)
                } else {
                    Cow::Borrowed(&*path)
                };
                // The common case, a normal path forwarded as it came, reuses the request's
                // own target (no allocation); anything else is rebuilt around the query.
                let target = match (&forwarded_path, request.uri().path_and_query()) {
                    (Cow::Borrowed(forwarded), Some(original))
                        if matches!(path, Cow::Borrowed(_))
                            && forwarded.len() == original.path().len() =>
                    {
                        original.clone()
                    }
                    _ => with_query(&forwarded_path, request.uri().query())?,
                };
                let limits = Limits {
                    max_body: *max_body,
                    timeout: *timeout,
                    wait: *wait,
                    route: matched.key,
                };
                let trusted = table
                    .trust_forwarded
                    .iter()
                    .any(|network| network.contains(self.client_addr.ip()));
                self.forward(request, upstream, target, &limits, trusted, trace)
                    .await
            }
            RouteAction::Respond {
                status,
                headers,
                body,
            } => {
                let body = body.render(&template_values(&request, &path));
                let mut response = full_response(*status, headers.clone(), body);
                response
                    .headers_mut()
                    .entry(header::CONTENT_TYPE)
                    .or_insert(HeaderValue::from_static("text/plain; charset=utf-8"));
                Ok(response)
            }
            RouteAction::Redirect { status, location } => {
                let location = location.render(&template_values(&request, &path));
                let mut headers = HeaderMap::new();
                // Validated at load time; a placeholder could still bring in a bad byte.
                if let Ok(location) = HeaderValue::try_from(location) {
                    headers.insert(header::LOCATION, location);
                }
                Ok(full_response(*status, headers, String::new()))
            }
            RouteAction::Health(health) => {
                let (status, body) = health.answer();
                let mut headers = HeaderMap::new();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                Ok(full_response(status, headers, body))
            }
            RouteAction::Metrics(metrics) => {
                Ok(crate::telemetry::metrics_response(metrics).map(Either::Right))
            }
        }
    }

    async fn forward(
        &self,
        mut request: Request<Incoming>,
        upstream: &Upstream,
        path_and_query: PathAndQuery,
        limits: &Limits<'_>,
        trusted: bool,
        trace: &mut Trace,
    ) -> Result<Response<ZooBody>, ProxyError> {
        // An absolute-form target's (or HTTP/2's `:authority`) host wins over the Host header
        // (RFC 9112 3.2.2).
        let client_host = match request.uri().authority() {
            Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
            None => request.headers().get(header::HOST).cloned(),
        };
        let websocket = tunnel::wants_websocket(request.headers());
        let headers = request.headers_mut();
        headers::remove_hop_by_hop(headers);
        headers::set_forwarded(
            headers,
            self.forwarded_for.clone(),
            self.scheme,
            client_host.clone(),
            trusted,
        );
        let client_upgrade = websocket.then(|| {
            tunnel::mark_websocket(request.headers_mut());
            hyper::upgrade::on(&mut request)
        });

        match upstream {
            Upstream::App {
                app,
                h2c,
                authority,
                ..
            } => {
                if !app.is_ready() && !app.wait_ready(limits.wait).await {
                    return Err(ProxyError::NotReady {
                        upstream: upstream.describe(),
                        waited: limits.wait,
                    });
                }
                let host = match client_host {
                    Some(host) => Some(host),
                    None if *h2c => None,
                    // HTTP/1.1 requires a Host; an HTTP/1.0 client may not have sent one.
                    None => {
                        HeaderValue::from_str(Upstream::app_authority(app, authority).as_str()).ok()
                    }
                };
                if let Some(host) = host {
                    request.headers_mut().insert(header::HOST, host);
                }
                if *h2c {
                    let authority = Upstream::app_authority(app, authority);
                    *request.uri_mut() = uri(UriScheme::HTTP, authority, path_and_query);
                    *request.version_mut() = Version::HTTP_2;
                } else {
                    *request.uri_mut() = Uri::from(path_and_query);
                    *request.version_mut() = Version::HTTP_11;
                }
            }
            Upstream::External(external) => {
                request
                    .headers_mut()
                    .insert(header::HOST, external.host.clone());
                let target = match route::join_path(&external.target.path, path_and_query.as_str())
                {
                    Cow::Borrowed(_) => path_and_query,
                    Cow::Owned(joined) => PathAndQuery::from_maybe_shared(Bytes::from(joined))
                        .map_err(|_| ProxyError::BadTarget)?,
                };
                *request.uri_mut() = Uri::from(target);
                *request.version_mut() = Version::HTTP_11;
            }
        }
        let request = limit_body(request, limits)?;
        let sent = Instant::now();
        let mut response = send(request, upstream, limits, &self.shared.metrics).await?;
        trace.upstream_time = Some(sent.elapsed());

        let headers = response.headers_mut();
        headers::remove_hop_by_hop(headers);
        if let Some(client_upgrade) = client_upgrade
            && response.status() == StatusCode::SWITCHING_PROTOCOLS
        {
            tunnel::mark_websocket(response.headers_mut());
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            let open_tunnels = self.shared.metrics.open_tunnels.clone();
            self.tunnels.spawn(async move {
                if let (Ok(client), Ok(upstream)) = tokio::join!(client_upgrade, upstream_upgrade) {
                    open_tunnels.inc();
                    // A reset either way just ends the tunnel: nobody is left to tell.
                    let _ = tunnel::run(client, upstream).await;
                    open_tunnels.dec();
                }
            });
        }
        let (parts, body) = response.into_parts();
        Ok(Response::from_parts(parts, Either::Left(body)))
    }
}

/// The per-route limits a forwarded request is held to.
struct Limits<'a> {
    max_body: Option<u64>,
    timeout: Duration,
    /// How long to wait for an app that is not ready (or refused a connection).
    wait: Duration,
    route: &'a str,
}

/// The request with its body as sent upstream: none at all when it has none (so it can be
/// sent again), cut at the route's `max_body` otherwise. A declared length over the limit is
/// refused before any of the body is read.
fn limit_body(
    request: Request<Incoming>,
    limits: &Limits<'_>,
) -> Result<Request<UpstreamBody>, ProxyError> {
    let (parts, body) = request.into_parts();
    let body = if body.is_end_stream() {
        Either::Right(Either::Right(Empty::new()))
    } else if let Some(limit) = limits.max_body {
        if body.size_hint().lower() > limit {
            return Err(ProxyError::BodyTooLarge {
                route: limits.route.to_owned(),
                limit,
            });
        }
        Either::Right(Either::Left(Limited::new(
            body,
            usize::try_from(limit).unwrap_or(usize::MAX),
        )))
    } else {
        Either::Left(body)
    };
    Ok(Request::from_parts(parts, body))
}

/// A copy of a request that may be sent a second time: an idempotent method and no body.
fn replayable(request: &Request<UpstreamBody>) -> Option<Request<UpstreamBody>> {
    let no_body = matches!(request.body(), Either::Right(Either::Right(_)));
    if !(no_body && request.method().is_idempotent()) {
        return None;
    }
    let mut copy = Request::new(Either::Right(Either::Right(Empty::new())));
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    copy.headers_mut().clone_from(request.headers());
    Some(copy)
}

/// Sends `request` to its upstream's pool and waits for the response headers up to the
/// route's timeout.
///
/// A request a reused pooled connection could not take (nothing of it written) goes on
/// another connection inside the pool, for any method. Here, a request whose connection broke
/// after it was written is sent once more on another connection only when doing it twice is
/// harmless: an idempotent method without a body. Never a POST.
async fn send(
    request: Request<UpstreamBody>,
    upstream: &Upstream,
    limits: &Limits<'_>,
    metrics: &Metrics,
) -> Result<Response<ResponseBody>, ProxyError> {
    let attempt = async {
        let waiting_until = Instant::now() + limits.wait;
        let mut request = request;
        let mut resent_after_writing = 0;
        loop {
            let again = replayable(&request);
            let (pool, app_addr) = match upstream {
                // The app's address is read at each attempt: a replace may have moved it.
                Upstream::App { app, pool, .. } => (pool, Some(app.addr())),
                Upstream::External(external) => (&external.pool, None),
            };
            let sent = pool.send(app_addr, request).await;
            match (sent, again) {
                (Err(error), Some(again)) => {
                    // Refused means nothing was sent; otherwise the request may have been
                    // written, so it goes again only a few times (it is idempotent).
                    let refused = error.is_connect();
                    match upstream {
                        // An app whose connections fail is most likely dying or restarting
                        // (the reaper may not have seen it yet): wait for it to be ready.
                        Upstream::App { app, .. }
                            if refused || resent_after_writing < APP_RESENDS =>
                        {
                            resent_after_writing += u32::from(!refused);
                            tokio::time::sleep(RETRY_PAUSE).await;
                            let left = waiting_until.saturating_duration_since(Instant::now());
                            if left.is_zero() || !app.wait_ready(left).await {
                                return Err(error);
                            }
                        }
                        Upstream::External(_) if !refused && resent_after_writing == 0 => {
                            resent_after_writing = 1;
                        }
                        _ => return Err(error),
                    }
                    metrics.upstream_retry(upstream.label());
                    request = again;
                }
                (result, _) => return result,
            }
        }
    };
    match tokio::time::timeout(limits.timeout, attempt).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(source)) => Err(match error::body_fault(&source) {
            Some(BodyFault::TooLarge) => ProxyError::BodyTooLarge {
                route: limits.route.to_owned(),
                limit: limits.max_body.unwrap_or_default(),
            },
            Some(BodyFault::Unreadable) => ProxyError::BadBody {
                upstream: upstream.describe(),
                source,
            },
            None => ProxyError::Upstream {
                upstream: upstream.describe(),
                source,
            },
        }),
        Err(_) => Err(ProxyError::Timeout {
            upstream: upstream.describe(),
            after: limits.timeout,
        }),
    }
}

/// `path?query` as a request target; `path` is a normalised path, so only a byte that was
/// already invalid in the request can fail it (answered as a bad target, 400).
fn with_query(path: &str, query: Option<&str>) -> Result<PathAndQuery, ProxyError> {
    let target = match query {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    PathAndQuery::from_maybe_shared(Bytes::from(target)).map_err(|_| ProxyError::BadTarget)
}

/// The upstream request URI.
fn uri(scheme: UriScheme, authority: Authority, path_and_query: PathAndQuery) -> Uri {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(scheme);
    parts.authority = Some(authority);
    parts.path_and_query = Some(path_and_query);
    Uri::from_parts(parts).expect("scheme, authority and path are all set")
}

fn full_response(status: StatusCode, headers: HeaderMap, body: String) -> Response<ZooBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

fn template_values<'a>(request: &'a Request<Incoming>, path: &'a str) -> Values<'a> {
    Values {
        path,
        query: request.uri().query().unwrap_or(""),
        method: request.method().as_str(),
        host: request
            .headers()
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .or_else(|| request.uri().authority().map(Authority::as_str))
            .unwrap_or(""),
    }
}
