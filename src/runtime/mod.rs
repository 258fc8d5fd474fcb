//! The runtime: everything a running zoo acts on, made from one validated config in one place
//! ([`Runtime::build`], used by `run`, `check`, reload and the fuzz targets): the route table
//! with each route's resolved action, the upstream pools, the apps' handles, the listeners'
//! TLS, and the settings the request path reads. [`Serving`] holds the one now in use; a
//! reload builds a new one and stores it in one swap, so a request sees all of the old runtime
//! or all of the new, never half.

mod action;
mod header_steps;
mod template;
mod tls;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::{ArcSwap, Guard};

use crate::access::{AccessError, BasicAuthGate};
use http::header;

use crate::config::{Config, HeaderEdits, Protocol, Route};
use crate::files::FilesError;
use crate::log::AccessLog;
use crate::route::{HostPattern, HostRoutes};
use crate::supervise::{self, AppHandle, SuperviseError};
use crate::telemetry::{Health, Metrics};
use crate::upstream::{Pool, UpstreamError};
pub(crate) use action::{Forward, RouteAction, RouteEntry, RouteOptions, RouteStats, Upstream};
pub(crate) use header_steps::HeaderSteps;
pub(crate) use template::Values;
pub use tls::{ServerTls, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Plan(#[from] SuperviseError),
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
    Tls(#[from] TlsError),
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error("route `{route}`: {source}")]
    Access {
        route: String,
        #[source]
        source: AccessError,
    },
}

/// Everything the request path and the control plane read, immutable once built.
pub struct Runtime {
    /// The config this runtime was made from, without its routes (they are in `routes`):
    /// the settings read at the time they apply
    /// (`client_header_timeout` per connection, `trust_forwarded` and `access_log` per request,
    /// `grace` and `shutdown_delay` at shutdown).
    pub config: Config,
    /// When the config was loaded, for `zoo status`.
    pub loaded_at: SystemTime,
    /// The supervised apps, in config order.
    pub apps: Vec<Arc<AppHandle>>,
    /// The routes by host, each host's by path.
    pub(crate) routes: HostRoutes<RouteEntry>,
    /// Each host routes name, with the first route key naming it, in order: for the
    /// warnings of [`Self::uncovered_hosts`] (the config's routes are not kept).
    route_hosts: Vec<(HostPattern, String)>,
    /// Where requests that matched no route (or had a bad path) are counted.
    pub(crate) unrouted: Arc<RouteStats>,
    /// The top-level response rules, for answers to requests that matched no route (each
    /// route has its own list, which starts with these).
    pub(crate) response_headers: Option<Arc<HeaderSteps>>,
    /// Whether some response rule reads `{path}`, `{query}` or `{host}`: only then does a
    /// request keep a copy of them for its response.
    pub(crate) response_headers_read_target: bool,
    /// The listeners' TLS, read at each handshake.
    pub tls: Option<ServerTls>,
}

impl Runtime {
    /// The runtime of a zoo starting with `config`: its apps' handles planned (ports picked),
    /// then everything else built against them.
    pub fn plan(config: Config, metrics: &Metrics) -> Result<Self, BuildError> {
        let apps = supervise::plan(&config.apps, &config.path)?;
        Self::build(config, apps, metrics)
    }

    /// Resolves every route of `config` against `apps`. Fails on what the config check cannot
    /// see: an unreadable `ca_file` or certificate, say.
    pub fn build(
        mut config: Config,
        apps: Vec<Arc<AppHandle>>,
        metrics: &Metrics,
    ) -> Result<Self, BuildError> {
        // Taken, so that each route's config is dropped once its entry is made: a runtime
        // keeps the routes only in its table.
        let taken = TakenRoutes::new(std::mem::take(&mut config.routes));
        let by_name: HashMap<&str, &Arc<AppHandle>> =
            apps.iter().map(|app| (app.name.as_str(), app)).collect();
        let h2c: Vec<&str> = config
            .apps
            .iter()
            .filter(|app| app.protocol == Protocol::H2c)
            .map(|app| app.name.as_str())
            .collect();
        let pools: HashMap<&str, Arc<Pool>> = by_name
            .keys()
            .map(|name| (*name, Pool::app(h2c.contains(name))))
            .collect();
        let response_headers = HeaderSteps::compile(&[&config.headers.response]).map(Arc::new);
        let mut response_headers_read_target = response_headers
            .as_ref()
            .is_some_and(|steps| steps.reads_target());
        let mut route_hosts: HashMap<HostPattern, String> = HashMap::new();
        let mut labels: HashMap<String, Arc<str>> = HashMap::new();
        let mut resolver = action::Resolver::new(&by_name, &pools, &h2c);
        let mut shared_options = SharedOptions::default();
        let mut failed = None;
        let entries = taken.map_while(|route| {
            if let Some(host) = &route.host {
                route_hosts
                    .entry(HostPattern::clone(host))
                    .or_insert_with(|| route.key.clone());
            }
            let key: Arc<str> = Arc::from(route.key.as_str());
            // A route of any host is matched by its whole key: one string for both.
            let path = match route.host {
                None => Arc::clone(&key),
                Some(_) => Arc::from(route.path()),
            };
            let entry = route_entry(
                &route,
                key,
                &mut labels,
                &config,
                &mut Resolved {
                    actions: &mut resolver,
                    options: &mut shared_options,
                    response_headers: response_headers.as_ref(),
                },
                metrics,
            );
            match entry {
                Ok(entry) => {
                    response_headers_read_target |= entry
                        .options
                        .response_headers
                        .as_ref()
                        .is_some_and(|steps| steps.reads_target());
                    Some((route.host.map(|host| *host), path, entry))
                }
                Err(error) => {
                    failed = Some(error);
                    None
                }
            }
        });
        let routes = HostRoutes::new(entries);
        if let Some(error) = failed {
            return Err(error);
        }
        let mut route_hosts: Vec<(HostPattern, String)> = route_hosts.into_iter().collect();
        route_hosts.sort();
        let tls = config.tls.as_ref().map(ServerTls::load).transpose()?;
        Ok(Self {
            routes,
            route_hosts,
            unrouted: RouteStats::new(Arc::from(""), Arc::from("-"), metrics),
            response_headers,
            response_headers_read_target,
            tls,
            apps,
            config,
            loaded_at: SystemTime::now(),
        })
    }

    /// One line per route, in match-priority order, for `zoo check` and `zoo status`; with
    /// host routes, grouped under a line per host (exact hosts, wildcards, then any host).
    #[must_use]
    pub fn describe(&self) -> Vec<String> {
        self.describe_lines().collect()
    }

    /// The lines of [`Self::describe`], made one at a time: `zoo check` of 300,000 routes
    /// writes them out without holding them all twice.
    pub fn describe_lines(&self) -> impl Iterator<Item = String> + '_ {
        let grouped = self.routes.has_hosts();
        let indent = if grouped { "  " } else { "" };
        self.routes.groups().flat_map(move |(host, table)| {
            let heading = (grouped && !table.is_empty()).then(|| match host {
                Some(host) => format!("host {host}:"),
                None => "any other host:".to_owned(),
            });
            let routes = table.iter().flat_map(move |(key, entry)| {
                let action = format!("{indent}{key:<16} {}", describe_action(&entry.action));
                let guards = describe_guards(entry)
                    .into_iter()
                    .map(move |line| format!("{indent}{:<16}   {line}", ""));
                std::iter::once(action).chain(guards)
            });
            heading.into_iter().chain(routes)
        })
    }
}

impl Runtime {
    /// With TLS, one warning per route host the certificate does not name (a wildcard
    /// route is checked with one name under it): such requests get a certificate error.
    #[must_use]
    pub fn uncovered_hosts(&self) -> Vec<String> {
        let Some(tls) = &self.tls else {
            return Vec::new();
        };
        self.route_hosts
            .iter()
            .filter(|(host, _)| !tls.covers(&host.example()))
            .map(|(host, key)| {
                format!(
                    "route `{key}`: the certificate in {} does not name {host}",
                    self.config
                        .tls
                        .as_ref()
                        .map_or_else(String::new, |tls| tls.cert.display().to_string()),
                )
            })
            .collect()
    }
}

/// The config's routes, in order, each freed as it is taken, and their list shrunk as it
/// empties: so the ~200 bytes of each go as the table grows (60 MB less at the peak of
/// 300,000 routes) instead of all at the end. Shrunk every [`SHRINK_EVERY`] routes rather
/// than at each halving (which kept the whole list until half the table was made): the
/// list is taken from its end, and a large allocation gives back its tail in place.
struct TakenRoutes(Vec<Route>);

/// How many routes are taken between two shrinks of [`TakenRoutes`]' list: ~1 MB of them.
const SHRINK_EVERY: usize = 4096;

impl TakenRoutes {
    fn new(mut routes: Vec<Route>) -> Self {
        // Taken from the end.
        routes.reverse();
        Self(routes)
    }
}

impl Iterator for TakenRoutes {
    type Item = Route;

    fn next(&mut self) -> Option<Route> {
        let route = self.0.pop()?;
        if self.0.capacity() - self.0.len() >= SHRINK_EVERY {
            self.0.shrink_to_fit();
        }
        Some(route)
    }

    /// Exact, so that the table is sized once.
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.0.len(), Some(self.0.len()))
    }
}

/// What every route's entry is resolved against.
struct Resolved<'r, 'a> {
    actions: &'r mut action::Resolver<'a>,
    options: &'r mut SharedOptions,
    /// The top-level response rules, shared by the routes without rules of their own.
    response_headers: Option<&'r Arc<HeaderSteps>>,
}

/// The options of the routes that set none of their own, made once for the forwarding
/// routes and once for the others (their request rules differ): the ~60 bytes and the
/// `compress` list that every entry carried (issue 13).
#[derive(Default)]
struct SharedOptions {
    forwarding: Option<Arc<RouteOptions>>,
    answered: Option<Arc<RouteOptions>>,
}

/// The table entry of `route`, a route of `config`, counted under `key` (its key); the
/// upstreams' labels are shared through `labels`.
fn route_entry(
    route: &Route,
    key: Arc<str>,
    labels: &mut HashMap<String, Arc<str>>,
    config: &Config,
    resolved: &mut Resolved<'_, '_>,
    metrics: &Metrics,
) -> Result<RouteEntry, BuildError> {
    let action = resolved.actions.resolve(route)?;
    let upstream = match &action {
        RouteAction::Forward(forward) => forward.upstream.label(),
        _ => "-",
    };
    let upstream = match labels.get(upstream) {
        Some(label) => Arc::clone(label),
        None => {
            let label: Arc<str> = Arc::from(upstream);
            labels.insert(upstream.to_owned(), Arc::clone(&label));
            label
        }
    };
    let stats = RouteStats::new(key, upstream, metrics);
    let forwarding = matches!(action, RouteAction::Forward(_));
    let own_options = route.compress.is_some()
        || route.access.is_some()
        || route.headers.is_some()
        || route.basic_auth.is_some();
    let options = if own_options {
        Arc::new(route_options(
            route,
            forwarding,
            config,
            resolved.response_headers,
        )?)
    } else {
        let shared = if forwarding {
            &mut resolved.options.forwarding
        } else {
            &mut resolved.options.answered
        };
        match shared {
            Some(options) => Arc::clone(options),
            None => Arc::clone(shared.insert(Arc::new(route_options(
                route,
                forwarding,
                config,
                resolved.response_headers,
            )?))),
        }
    };
    Ok(RouteEntry {
        action,
        stats,
        options,
    })
}

/// The options of `route`, a route of `config` (`forwarding` when its action forwards);
/// `response_headers` are the top-level response rules.
fn route_options(
    route: &Route,
    forwarding: bool,
    config: &Config,
    response_headers: Option<&Arc<HeaderSteps>>,
) -> Result<RouteOptions, BuildError> {
    let compress = route.compress.as_ref().unwrap_or(&config.compress).clone();
    // Only forwarded requests go anywhere for request rules to matter. The credentials
    // `basic_auth` checked go first, so that a rule may still set an `Authorization` of the
    // upstream's own.
    let checked_credentials = HeaderEdits {
        remove: route
            .basic_auth
            .as_ref()
            .filter(|auth| !auth.forward_auth_header)
            .map(|_| header::AUTHORIZATION)
            .into_iter()
            .collect(),
        ..HeaderEdits::default()
    };
    let request_headers = if forwarding {
        HeaderSteps::compile(&[
            &checked_credentials,
            &config.headers.request,
            &route.header_rules().request,
        ])
        .map(Box::new)
    } else {
        None
    };
    let rules = route.header_rules();
    let response_headers = if rules.response.is_empty() {
        response_headers.cloned()
    } else {
        HeaderSteps::compile(&[&config.headers.response, &rules.response]).map(Arc::new)
    };
    let basic_auth = route
        .basic_auth
        .as_ref()
        .map(|users| BasicAuthGate::new(users).map(Box::new))
        .transpose()
        .map_err(|source| BuildError::Access {
            route: route.key.clone(),
            source,
        })?;
    Ok(RouteOptions {
        compress,
        access: route.access.clone(),
        request_headers,
        response_headers,
        basic_auth,
    })
}

/// The lines under a route for what it checks and rewrites besides its action.
fn describe_guards(entry: &RouteEntry) -> Vec<String> {
    let entry = &*entry.options;
    let mut lines = Vec::new();
    if let Some(access) = &entry.access {
        let networks = |list: &[crate::config::Network]| {
            let shown: Vec<String> = list
                .iter()
                .map(|network| format!("{}/{}", network.addr, network.prefix))
                .collect();
            shown.join(", ")
        };
        if !access.allow.is_empty() {
            lines.push(format!("allow {}", networks(&access.allow)));
        }
        if !access.deny.is_empty() {
            lines.push(format!("deny {}", networks(&access.deny)));
        }
    }
    if let Some(gate) = &entry.basic_auth {
        lines.push(gate.describe());
    }
    if let Some(steps) = &entry.request_headers {
        lines.push(format!("request headers: {}", steps.describe()));
    }
    if let Some(steps) = &entry.response_headers {
        lines.push(format!("response headers: {}", steps.describe()));
    }
    lines
}

/// What a route does, as `zoo check` shows it.
fn describe_action(action: &RouteAction) -> String {
    match action {
        RouteAction::Forward(forward) => {
            let strip = if forward.strip_prefix {
                " (strip prefix)"
            } else {
                ""
            };
            format!("-> {}{strip}", forward.upstream.describe())
        }
        RouteAction::Respond { status, body, .. } => {
            format!("respond {} {:?}", status.as_u16(), body.source())
        }
        RouteAction::Redirect { status, location } => {
            format!("redirect {} {:?}", status.as_u16(), location.source())
        }
        RouteAction::Health => "builtin health".to_owned(),
        RouteAction::Metrics => "builtin metrics".to_owned(),
        RouteAction::Static(files) => files.describe(),
    }
}

/// The runtime in use and what outlives every runtime: the readiness and draining state,
/// the metrics registry and the access log writer. Shared by the listeners, the control
/// plane and the admin endpoints.
pub struct Serving {
    current: ArcSwap<Runtime>,
    pub health: Health,
    pub metrics: Arc<Metrics>,
    pub access_log: AccessLog,
}

impl Serving {
    #[must_use]
    pub fn new(runtime: Runtime, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwap::from_pointee(runtime),
            health: Health::default(),
            access_log: AccessLog::start(metrics.access_log_dropped.clone()),
            metrics,
        })
    }

    /// The runtime in use, for a short read.
    #[must_use]
    pub fn load(&self) -> Guard<Arc<Runtime>> {
        self.current.load()
    }

    /// The runtime in use, kept for as long as a request or a connection needs it.
    #[must_use]
    pub fn load_full(&self) -> Arc<Runtime> {
        self.current.load_full()
    }

    /// Makes `runtime` the one in use: the next request, connection and handshake use it;
    /// those already running keep the one they loaded.
    pub fn store(&self, runtime: Runtime) {
        self.current.store(Arc::new(runtime));
    }

    /// `/readyz` and the `health` built-in: every app of the runtime in use ready, zoo not
    /// draining.
    #[must_use]
    pub fn health_answer(&self) -> (http::StatusCode, String) {
        self.health.answer(&self.load().apps)
    }
}
