//! What each route of the runtime does, resolved from its config entry once, when the
//! runtime is built: the upstream (an app's handle and pool, or an external target with its
//! pool and `Host`), the route's limits, a parsed template, a built-in, or a `static` root
//! opened once; the codings its responses may be compressed with; and the metrics it is
//! counted under.

use std::collections::HashMap;
use std::net::SocketAddr;
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
        /// Boxed: a `HeaderMap` is ~100 bytes, which every route's entry carried.
        headers: Box<HeaderMap>,
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

pub(crate) enum Upstream {
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
    pub(crate) target: ProxyTarget,
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
    /// `basic_auth`: the users the route admits; `None` asks for no credentials. Boxed: the
    /// gate is ~400 bytes and few routes have one (300,000 routes would carry 120 MB of it).
    pub(crate) basic_auth: Option<Box<BasicAuthGate>>,
}

/// What a request is recorded under once answered: the route it matched and its upstream.
pub(crate) struct RouteStats {
    /// The route's key, shared with its metrics' label (and, for a route of any host, with
    /// the table's key): one copy of each key.
    pub(crate) key: Arc<str>,
    /// The upstream's label, `-` for routes zoo answers itself; shared by the routes to it.
    pub(crate) upstream: Arc<str>,
    pub(crate) metrics: RouteMetrics,
}

impl RouteStats {
    pub(super) fn new(key: Arc<str>, upstream: Arc<str>, metrics: &Metrics) -> Arc<Self> {
        Arc::new(Self {
            metrics: metrics.route(Arc::clone(&key)),
            key,
            upstream,
        })
    }
}

pub(super) fn resolve(
    route: &config::Route,
    apps: &HashMap<&str, &Arc<AppHandle>>,
    pools: &HashMap<&str, Arc<Pool>>,
    h2c: &[&str],
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
                    target: (**target).clone(),
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
            headers: Box::new(headers.iter().cloned().collect()),
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
