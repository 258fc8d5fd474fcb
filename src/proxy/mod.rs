//! The proxy: the hyper service that normalises each request's path, finds its route in the
//! runtime table and acts (forward to an app or an external target, respond, redirect), plus
//! the accept loops that serve it on the public listeners with graceful shutdown.
//!
//! Everything a request reads sits in one [`RuntimeTable`] behind one `ArcSwap`, built from a
//! validated config; a request loads it once. Bodies stream both ways, never buffered whole.

mod error;
mod headers;
mod template;
mod upstream;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme as UriScheme};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{self, Action, Builtin, Config, ProxyTarget, Scheme};
use crate::route::{self, RouteTable};
use crate::supervise::AppHandle;
pub use error::ProxyError;
use template::{Template, Values};
pub use upstream::UpstreamError;
use upstream::{AppClient, ExternalClient};

/// Every response zoo sends: an upstream's streamed body or one zoo made.
pub type ZooBody = Either<Incoming, Full<Bytes>>;

/// How long a request for an app that is (re)starting waits for it (DESIGN.md: route `wait`).
const READY_WAIT: Duration = Duration::from_secs(10);
/// Time from sending a request upstream to its response headers (DESIGN.md).
const RESPONSE_HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// Time a client has to send a complete request head (slowloris guard).
const CLIENT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// What one route does, resolved from the config.
enum RouteAction {
    Forward {
        upstream: Upstream,
        strip_prefix: bool,
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
    /// The `health` built-in: readiness of these apps (every supervised app).
    Health { apps: Vec<Arc<AppHandle>> },
}

enum Upstream {
    App(Arc<AppHandle>),
    External(Box<External>),
}

/// An external `proxy` target with everything a request needs already parsed.
struct External {
    target: ProxyTarget,
    scheme: UriScheme,
    authority: Authority,
    /// The `Host` header sent: the target's authority, which TLS SNI matches.
    host: HeaderValue,
    client: ExternalClient,
}

impl Upstream {
    fn describe(&self) -> String {
        match self {
            Self::App(app) => format!("app `{}` at {}", app.name, app.addr),
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

/// Everything the request path reads, immutable once built.
pub struct RuntimeTable {
    routes: RouteTable<RouteAction>,
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
}

impl RuntimeTable {
    /// Resolves every route of `config` against the running apps. Fails on what the config
    /// check cannot see: an unreadable `ca_file`, say.
    pub fn build(config: &Config, all_apps: &[Arc<AppHandle>]) -> Result<Self, BuildError> {
        let apps: HashMap<&str, &Arc<AppHandle>> = all_apps
            .iter()
            .map(|app| (app.name.as_str(), app))
            .collect();
        let mut routes = Vec::with_capacity(config.routes.len());
        for route in &config.routes {
            routes.push((route.key.clone(), resolve(route, &apps, all_apps)?));
        }
        Ok(Self {
            routes: RouteTable::new(routes),
        })
    }

    /// One line per route, in match-priority order, for `zoo check`.
    #[must_use]
    pub fn describe(&self) -> Vec<String> {
        self.routes
            .iter()
            .map(|(key, action)| {
                let what = match action {
                    RouteAction::Forward {
                        upstream,
                        strip_prefix,
                    } => {
                        let strip = if *strip_prefix { " (strip prefix)" } else { "" };
                        format!("-> {}{strip}", upstream.describe())
                    }
                    RouteAction::Respond { status, body, .. } => {
                        format!("respond {} {body:?}", status.as_u16())
                    }
                    RouteAction::Redirect { status, location } => {
                        format!("redirect {} {location:?}", status.as_u16())
                    }
                    RouteAction::Health { .. } => "builtin health".to_owned(),
                };
                format!("{key:<16} {what}")
            })
            .collect()
    }
}

fn resolve(
    route: &config::Route,
    apps: &HashMap<&str, &Arc<AppHandle>>,
    all_apps: &[Arc<AppHandle>],
) -> Result<RouteAction, BuildError> {
    Ok(match &route.action {
        Action::App { name } => RouteAction::Forward {
            upstream: Upstream::App(Arc::clone(apps.get(name.as_str()).ok_or_else(|| {
                BuildError::UnknownApp {
                    route: route.key.clone(),
                    app: name.clone(),
                }
            })?)),
            strip_prefix: route.strip_prefix,
        },
        Action::Proxy { target, ca_file } => {
            let client = upstream::external_client(ca_file.as_deref()).map_err(|source| {
                BuildError::Upstream {
                    route: route.key.clone(),
                    source,
                }
            })?;
            let bad_authority = || BuildError::BadAuthority {
                route: route.key.clone(),
                target: target.authority.clone(),
            };
            RouteAction::Forward {
                upstream: Upstream::External(Box::new(External {
                    scheme: match target.scheme {
                        Scheme::Http => UriScheme::HTTP,
                        Scheme::Https => UriScheme::HTTPS,
                    },
                    authority: target.authority.parse().map_err(|_| bad_authority())?,
                    host: HeaderValue::from_str(&target.authority).map_err(|_| bad_authority())?,
                    target: target.clone(),
                    client,
                })),
                strip_prefix: route.strip_prefix,
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
        Action::Builtin(Builtin::Health) => RouteAction::Health {
            apps: all_apps.to_vec(),
        },
    })
}

/// State shared by every connection of the public listeners.
pub struct Shared {
    /// The current runtime table; a reload stores a new one, requests in flight keep theirs.
    pub table: ArcSwap<RuntimeTable>,
    /// Pooled keep-alive connections to the apps.
    app_client: AppClient,
}

impl Shared {
    #[must_use]
    pub fn new(table: RuntimeTable) -> Arc<Self> {
        Arc::new(Self {
            table: ArcSwap::from_pointee(table),
            app_client: upstream::app_client(),
        })
    }
}

/// The per-connection service: shared state plus who the client is.
#[derive(Clone)]
struct ProxyService {
    shared: Arc<Shared>,
    /// `X-Forwarded-For` for this client, formatted once per connection, not per request.
    forwarded_for: HeaderValue,
}

impl hyper::service::Service<Request<Incoming>> for ProxyService {
    type Response = Response<ZooBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let service = self.clone();
        Box::pin(async move {
            Ok(match service.handle(request).await {
                Ok(response) => response,
                Err(error) => error.into_response(),
            })
        })
    }
}

impl ProxyService {
    async fn handle(&self, request: Request<Incoming>) -> Result<Response<ZooBody>, ProxyError> {
        let path = route::normalize(request.uri().path())?.into_owned();
        let table = self.shared.table.load_full();
        let Some(matched) = table.routes.lookup(&path) else {
            return Err(ProxyError::NoRoute { path });
        };
        match matched.value {
            RouteAction::Forward {
                upstream,
                strip_prefix,
            } => {
                let forwarded_path = if *strip_prefix {
                    route::strip_prefix(&path, matched.prefix_len)
                } else {
                    path.as_str().into()
                };
                self.forward(request, upstream, &forwarded_path).await
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
            RouteAction::Health { apps } => {
                let (status, body) = crate::admin::health(apps);
                let mut headers = HeaderMap::new();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                Ok(full_response(status, headers, body))
            }
        }
    }

    async fn forward(
        &self,
        mut request: Request<Incoming>,
        upstream: &Upstream,
        path: &str,
    ) -> Result<Response<ZooBody>, ProxyError> {
        let path_and_query = match request.uri().query() {
            Some(query) => format!("{path}?{query}"),
            None => path.to_owned(),
        };
        let client_host = request.headers().get(header::HOST).cloned().or_else(|| {
            request
                .uri()
                .authority()
                .and_then(|authority| HeaderValue::from_str(authority.as_str()).ok())
        });
        let headers = request.headers_mut();
        headers::remove_hop_by_hop(headers);
        headers::set_forwarded(
            headers,
            self.forwarded_for.clone(),
            "http",
            client_host.clone(),
        );
        *request.version_mut() = Version::HTTP_11;

        let response = match upstream {
            Upstream::App(app) => {
                if !app.is_ready() && !app.wait_ready(READY_WAIT).await {
                    return Err(ProxyError::NotReady {
                        upstream: upstream.describe(),
                        waited: READY_WAIT,
                    });
                }
                if let Some(host) = client_host {
                    request.headers_mut().insert(header::HOST, host);
                }
                *request.uri_mut() = uri(
                    UriScheme::HTTP,
                    app.addr.to_string(),
                    &path_and_query,
                    upstream,
                )?;
                self.send(self.shared.app_client.request(request), upstream)
                    .await?
            }
            Upstream::External(external) => {
                request
                    .headers_mut()
                    .insert(header::HOST, external.host.clone());
                let joined = route::join_path(&external.target.path, &path_and_query);
                *request.uri_mut() = uri(
                    external.scheme.clone(),
                    external.authority.clone(),
                    &joined,
                    upstream,
                )?;
                self.send(external.client.request(request), upstream)
                    .await?
            }
        };
        let (mut parts, body) = response.into_parts();
        headers::remove_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, Either::Left(body)))
    }

    async fn send(
        &self,
        sending: impl Future<Output = Result<Response<Incoming>, hyper_util::client::legacy::Error>>,
        upstream: &Upstream,
    ) -> Result<Response<Incoming>, ProxyError> {
        match tokio::time::timeout(RESPONSE_HEADER_TIMEOUT, sending).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(source)) => Err(ProxyError::Upstream {
                upstream: upstream.describe(),
                source,
            }),
            Err(_) => Err(ProxyError::Timeout {
                upstream: upstream.describe(),
                after: RESPONSE_HEADER_TIMEOUT,
            }),
        }
    }
}

/// The upstream request URI; the parts were validated, so failure means a path that is not
/// a valid request target, answered as a bad path.
fn uri<A>(
    scheme: UriScheme,
    authority: A,
    path_and_query: &str,
    upstream: &Upstream,
) -> Result<Uri, ProxyError>
where
    Authority: TryFrom<A>,
{
    let path_and_query =
        PathAndQuery::try_from(path_and_query).map_err(|_| ProxyError::NoRoute {
            path: format!(
                "{path_and_query} (not a valid target for {})",
                upstream.describe()
            ),
        })?;
    let authority = Authority::try_from(authority).map_err(|_| ProxyError::NoRoute {
        path: format!(
            "{path_and_query} (bad authority for {})",
            upstream.describe()
        ),
    })?;
    Ok(Uri::from_parts({
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(scheme);
        parts.authority = Some(authority);
        parts.path_and_query = Some(path_and_query);
        parts
    })
    .expect("scheme, authority and path are all set"))
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

/// Serves `listener` until `shutdown` is cancelled; each connection is tracked by `tracker`
/// and, on shutdown, finishes its in-flight requests and closes.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(CLIENT_HEADER_TIMEOUT);
    let builder = Arc::new(builder);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => return,
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
        let service = ProxyService {
            shared: Arc::clone(&shared),
            forwarded_for: headers::forwarded_for(client_addr.ip()),
        };
        let builder = Arc::clone(&builder);
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
}
