//! What each route of the runtime does, resolved from its config entry once, when the
//! runtime is built: the upstream (an app's handle and pool, or an external target with its
//! pool and `Host`), the route's limits, a parsed template, a built-in, or a `static` root
//! opened once; the codings its responses may be compressed with; and the metrics it is
//! counted under.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::uri::Authority;
use http::{HeaderMap, HeaderValue, StatusCode};

use super::BuildError;
use super::header_steps::HeaderSteps;
use super::template::Template;
use crate::access::BasicAuthGate;
use crate::config::{self, Action, Builtin, Coding, ProxyTarget, Scheme};
use crate::files::FileServer;
use crate::supervise::AppHandle;
use crate::telemetry::{Metrics, RouteMetrics};
use crate::upstream::Pool;

/// What one route does, resolved from the config.
pub(crate) enum RouteAction {
    /// Shared by the routes with the same upstream and limits (most routes to an app): a
    /// table of 300,000 routes carried 56 bytes of it in each (issue 13).
    Forward(Arc<Forward>),
    Respond {
        status: StatusCode,
        /// Shared: one empty map for the routes without `headers` (most of them).
        headers: Arc<HeaderMap>,
        body: Template,
    },
    Redirect {
        status: StatusCode,
        location: Template,
    },
    /// The `health` built-in.
    Health,
    /// The `metrics` built-in.
    Metrics,
    /// A `static` route: files under its root.
    Static(Arc<FileServer>),
}

/// Where a forwarding route sends its requests, and its limits.
pub(crate) struct Forward {
    /// Shared by every route to the same app or target, with its pool.
    pub(crate) upstream: Arc<Upstream>,
    pub(crate) strip_prefix: bool,
    /// The route's `max_body`: a larger request body is answered 413.
    pub(crate) max_body: Option<u64>,
    /// The route's `timeout` to response headers: then 504.
    pub(crate) timeout: Duration,
    /// The route's `wait` for an app that is not ready: then 503.
    pub(crate) wait: Duration,
}

/// An app or an external target, made once for all the routes to it: the pool of
/// keep-alive connections and the authority cache are per upstream, not per route.
pub(crate) enum Upstream {
    /// A supervised app; `h2c` when its port speaks HTTP/2 with prior knowledge.
    App {
        app: Arc<AppHandle>,
        /// Keep-alive connections to the app.
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
    pub(crate) fn app_authority(app: &AppHandle, cached: &ArcSwap<(u16, Authority)>) -> Authority {
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
pub(crate) struct External {
    /// Shared with the config's routes to it.
    pub(crate) target: Arc<ProxyTarget>,
    /// The `Host` header sent: the target's authority, which TLS SNI matches.
    pub(crate) host: HeaderValue,
    pub(crate) pool: Arc<Pool>,
}

impl Upstream {
    /// The app's name or the target's authority: the label of metrics and access log lines.
    pub(crate) fn label(&self) -> &str {
        match self {
            Self::App { app, .. } => &app.name,
            Self::External(external) => &external.target.authority,
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Self::App { app, .. } => format!("app `{}` {}", app.name, app.describe_addresses()),
            Self::External(external) => {
                format!(
                    "{}://{}",
                    external.target.scheme.as_str(),
                    external.target.authority
                )
            }
        }
    }
}

/// A route's action and what its requests are counted under.
pub(crate) struct RouteEntry {
    pub(crate) action: RouteAction,
    pub(crate) stats: Arc<RouteStats>,
    /// Shared by the routes without options of their own (most of them).
    pub(crate) options: Arc<RouteOptions>,
}

/// What a route checks and rewrites besides its action.
pub(crate) struct RouteOptions {
    /// The codings its responses may be compressed with (the route's `compress`, else the
    /// top-level one), in zoo's order of preference; empty compresses nothing.
    pub(crate) compress: Vec<Coding>,
    /// The route's `allow`/`deny`; `None` (the default) admits every client unchecked.
    pub(crate) access: Option<Box<config::Access>>,
    /// The top-level and the route's request rules, for what is forwarded; `None` edits
    /// nothing (and on a route zoo answers itself).
    pub(crate) request_headers: Option<Box<HeaderSteps>>,
    /// The top-level and the route's response rules, shared with the top level's list when
    /// the route has none of its own; `None` edits nothing.
    pub(crate) response_headers: Option<Arc<HeaderSteps>>,
    /// `basic_auth`: the users the route admits; `None` asks for no credentials.
    pub(crate) basic_auth: Option<Box<BasicAuthGate>>,
}

/// What a request is recorded under once answered: the route it matched and its upstream.
pub(crate) struct RouteStats {
    /// The upstream's label, `-` for routes zoo answers itself; shared by the routes to it.
    pub(crate) upstream: Arc<str>,
    pub(crate) metrics: RouteMetrics,
}

impl RouteStats {
    pub(super) fn new(key: Arc<str>, upstream: Arc<str>, metrics: &Metrics) -> Arc<Self> {
        Arc::new(Self {
            metrics: metrics.route(key),
            upstream,
        })
    }

    /// The route's key: its metrics' label, shared (for a route of any host) with the
    /// table's key, one copy of each key.
    pub(crate) fn key(&self) -> &Arc<str> {
        self.metrics.route_key()
    }
}

/// What makes two [`Forward`]s alike: the upstream's address, `strip_prefix`, `max_body`,
/// `timeout` and `wait`.
type ForwardKey = (usize, bool, Option<u64>, Duration, Duration);

/// Resolves route actions, sharing what routes have in common: one [`Upstream`] per app
/// and per external target (a target's pool, with its TLS roots, was made per route), one
/// [`Forward`] per distinct upstream and limits, one empty `respond` header map.
pub(super) struct Resolver<'a> {
    /// Each app's upstream, by name.
    app_upstreams: HashMap<&'a str, Arc<Upstream>>,
    /// By target and `ca_file`.
    externals: HashMap<(Arc<ProxyTarget>, Option<PathBuf>), Arc<Upstream>>,
    /// By host, port, TLS and `ca_file`: targets that differ only in their path share one.
    remote_pools: HashMap<(String, u16, bool, Option<PathBuf>), Arc<Pool>>,
    forwards: HashMap<ForwardKey, Arc<Forward>>,
    no_headers: Arc<HeaderMap>,
}

impl<'a> Resolver<'a> {
    /// `apps` by name; `pools`, one per app; `h2c`, the apps whose port speaks HTTP/2.
    pub(super) fn new(
        apps: &HashMap<&'a str, &Arc<AppHandle>>,
        pools: &HashMap<&'a str, Arc<Pool>>,
        h2c: &[&str],
    ) -> Self {
        let app_upstreams = apps
            .iter()
            .map(|(name, app)| {
                let addr = app.addr();
                let upstream = Upstream::App {
                    app: Arc::clone(app),
                    pool: Arc::clone(&pools[name]),
                    h2c: h2c.contains(name),
                    authority: ArcSwap::from_pointee((addr.port(), authority_of(addr))),
                };
                (*name, Arc::new(upstream))
            })
            .collect();
        Self {
            app_upstreams,
            externals: HashMap::new(),
            remote_pools: HashMap::new(),
            forwards: HashMap::new(),
            no_headers: Arc::new(HeaderMap::new()),
        }
    }

    pub(super) fn resolve(&mut self, route: &config::Route) -> Result<RouteAction, BuildError> {
        Ok(match &route.action {
            Action::App { name } => {
                let upstream = self.app_upstreams.get(name.as_str()).ok_or_else(|| {
                    BuildError::UnknownApp {
                        route: route.key.clone(),
                        app: name.clone(),
                    }
                })?;
                let upstream = Arc::clone(upstream);
                self.forward(upstream, route)
            }
            Action::Proxy { target, ca_file } => {
                let upstream = self.external(route, target, ca_file.as_ref())?;
                self.forward(upstream, route)
            }
            Action::Respond {
                status,
                headers,
                body,
            } => RouteAction::Respond {
                status: *status,
                headers: if headers.is_empty() {
                    Arc::clone(&self.no_headers)
                } else {
                    Arc::new(headers.iter().cloned().collect())
                },
                body: Template::parse(body),
            },
            Action::Redirect { status, location } => RouteAction::Redirect {
                status: *status,
                location: Template::parse(location),
            },
            Action::Builtin(Builtin::Health) => RouteAction::Health,
            Action::Builtin(Builtin::Metrics) => RouteAction::Metrics,
            Action::Static(files) => {
                RouteAction::Static(Arc::new(FileServer::new(files, route.strip_prefix)?))
            }
        })
    }

    /// The action forwarding to `upstream` with `route`'s limits.
    fn forward(&mut self, upstream: Arc<Upstream>, route: &config::Route) -> RouteAction {
        let key = (
            Arc::as_ptr(&upstream).addr(),
            route.strip_prefix,
            route.max_body,
            route.timeout,
            route.wait,
        );
        let forward = self.forwards.entry(key).or_insert_with(|| {
            Arc::new(Forward {
                upstream,
                strip_prefix: route.strip_prefix,
                max_body: route.max_body,
                timeout: route.timeout,
                wait: route.wait,
            })
        });
        RouteAction::Forward(Arc::clone(forward))
    }

    /// The upstream of `route`'s `proxy` target.
    fn external(
        &mut self,
        route: &config::Route,
        target: &Arc<ProxyTarget>,
        ca_file: Option<&PathBuf>,
    ) -> Result<Arc<Upstream>, BuildError> {
        let key = (Arc::clone(target), ca_file.cloned());
        if let Some(upstream) = self.externals.get(&key) {
            return Ok(Arc::clone(upstream));
        }
        let tls = target.scheme == Scheme::Https;
        let pool_key = (target.host.clone(), target.port, tls, ca_file.cloned());
        let pool = match self.remote_pools.get(&pool_key) {
            Some(pool) => Arc::clone(pool),
            None => {
                let pool = Pool::remote(
                    &target.host,
                    target.port,
                    tls,
                    ca_file.map(PathBuf::as_path),
                )
                .map_err(|source| BuildError::Upstream {
                    route: route.key.clone(),
                    source,
                })?;
                self.remote_pools.insert(pool_key, Arc::clone(&pool));
                pool
            }
        };
        let host =
            HeaderValue::from_str(&target.authority).map_err(|_| BuildError::BadAuthority {
                route: route.key.clone(),
                target: target.authority.clone(),
            })?;
        let upstream = Arc::new(Upstream::External(Box::new(External {
            host,
            target: Arc::clone(target),
            pool,
        })));
        self.externals.insert(key, Arc::clone(&upstream));
        Ok(upstream)
    }
}
