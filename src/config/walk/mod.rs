//! The validating walk over the spanned TOML tree: turns `toml::de::DeTable` into a typed
//! [`Config`], expanding `${VAR}` in string values on the way. It walks by hand (rather than
//! through serde) so that it can report every problem at once, each at its own span, with a
//! "did you mean" for misspelt keys and app names. No I/O but one: relative paths are only
//! joined to the config's directory, except that a `static` root and its `fallback` are
//! looked at (files.rs), so that a typo in them is an error at its line.

mod apps;
mod auth;
mod files;
mod front;
mod headers;
mod kinds;
mod probes;
mod read;
mod replicas;
mod routes;

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use super::split::RoutesRegion;
use super::{AccessLog, AppKind, Config, Engine, HeaderRules, Network, Tls};
use read::{Value, Walker, join, list, optional};
pub use replicas::MAX_REPLICAS;

/// One problem, located by a byte span of the source; [`super::parse`] turns it into a
/// diagnostic.
pub(super) struct Problem {
    pub(super) span: Range<usize>,
    pub(super) message: String,
}

const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8000);
/// Docker's own stop timeout, so `docker stop` and zoo agree.
const DEFAULT_GRACE: Duration = Duration::from_secs(10);
const ROOT_KEYS: &[&str] = &[
    "listen",
    "access_log",
    "admin",
    "admin_token",
    "grace",
    "shutdown_delay",
    "client_header_timeout",
    "keepalive_timeout",
    "client_body_timeout",
    "engine",
    "trust_forwarded",
    "tls",
    "apps",
    "routes",
    "compress",
    "request_id",
    "request_id_header",
    "headers",
];
const TLS_KEYS: &[&str] = &["cert", "key"];
/// Time a client has to send a complete request head (slowloris guard, DESIGN.md).
const DEFAULT_CLIENT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle time between two requests on a kept-alive connection: nginx's default, longer than
/// the 60 s idle timeout of the load balancers in front (AWS ALB, GCP), so that they, not
/// zoo, close idle connections and never send on one zoo just closed.
/// Longest pause between two reads of a request body (nginx's default).
const DEFAULT_CLIENT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(75);

/// Validates the whole document; `path` is the config file (its directory anchors relative
/// paths).
pub(super) fn walk(
    root: &DeTable<'_>,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<Problem>> {
    let mut walker = Walker::new(path, env);
    let config = walker.config(root, path, None);
    walker.finish(config)
}

/// Validates a document read in two parts: `root`, the tree of `source` without
/// `region.cut`, and the routes of `region`, parsed a batch at a time. `None` when a batch
/// is not valid TOML on its own: then only the whole-tree parse can say what is wrong.
pub(super) fn walk_batched(
    root: &DeTable<'_>,
    source: &str,
    region: &RoutesRegion,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Result<Config, Vec<Problem>>> {
    let mut walker = Walker::new(path, env);
    let config = walker.config(root, path, Some((source, region)));
    if walker.unbatchable {
        return None;
    }
    Some(walker.finish(config))
}

impl<'e> Walker<'e> {
    fn new(path: &Path, env: &'e dyn Fn(&str) -> Option<String>) -> Self {
        Walker {
            env,
            base: path.parent().unwrap_or(Path::new("")).to_path_buf(),
            problems: Vec::new(),
            unbatchable: false,
            proxy_targets: HashSet::new(),
        }
    }

    fn finish(self, config: Option<Config>) -> Result<Config, Vec<Problem>> {
        match config {
            Some(config) if self.problems.is_empty() => Ok(config),
            _ => Err(self.problems),
        }
    }
}

impl Walker<'_> {
    /// `batched`: the source and its plain `[routes]` table, cut out of `root` (whose spans
    /// are then those of the source without it).
    fn config(
        &mut self,
        root: &DeTable<'_>,
        path: &Path,
        batched: Option<(&str, &RoutesRegion)>,
    ) -> Option<Config> {
        let fields = self.fields("", root, ROOT_KEYS);
        let listen = match fields.get("listen") {
            Some(value) => self.listen(value),
            None => Some(vec![DEFAULT_LISTEN]),
        };
        let admin = optional(fields.get("admin"), |value| {
            self.listen_address("admin", value)
        });
        let admin_token = optional(fields.get("admin_token"), |value| {
            self.non_empty_string("admin_token", value)
        });
        let access_log = fields
            .get("access_log")
            .map_or(Some(AccessLog::Off), |value| self.access_log(value));
        let grace = fields
            .get("grace")
            .map_or(Some(DEFAULT_GRACE), |value| self.duration("grace", value));
        let shutdown_delay = fields
            .get("shutdown_delay")
            .map_or(Some(Duration::ZERO), |value| {
                self.duration("shutdown_delay", value)
            });
        let client_header_timeout = fields
            .get("client_header_timeout")
            .map_or(Some(DEFAULT_CLIENT_HEADER_TIMEOUT), |value| {
                self.positive_duration("client_header_timeout", value)
            });
        let keepalive_timeout = fields
            .get("keepalive_timeout")
            .map_or(Some(DEFAULT_KEEPALIVE_TIMEOUT), |value| {
                self.duration("keepalive_timeout", value)
            });
        let client_body_timeout = fields
            .get("client_body_timeout")
            .map_or(Some(DEFAULT_CLIENT_BODY_TIMEOUT), |value| {
                self.positive_duration("client_body_timeout", value)
            });
        let engine = fields
            .get("engine")
            .map_or(Some(Engine::default()), |value| self.engine(value));
        let trust_forwarded = optional(fields.get("trust_forwarded"), |value| {
            self.networks("trust_forwarded", value)
        });
        let tls = optional(fields.get("tls"), |value| self.tls(value));
        let (apps, names) = match fields.get("apps") {
            Some(value) => self.apps(value, listen.as_deref().unwrap_or_default()),
            None => (Some(Vec::new()), Vec::new()),
        };
        let compress = fields
            .get("compress")
            .map_or(Some(Vec::new()), |value| self.compress("compress", value));
        let request_id = self.request_id(&fields);
        let headers = fields
            .get("headers")
            .map_or(Some(HeaderRules::default()), |value| {
                self.header_rules("headers", value)
            });
        // Routes may only name apps that listen; when the apps are invalid, that is not known.
        let portless: Vec<(&str, AppKind)> = apps
            .iter()
            .flatten()
            .filter(|app| !app.listens())
            .map(|app| (app.name.as_str(), app.kind))
            .collect();
        let routes = match batched {
            None => fields.get("routes").map_or(Some(Vec::new()), |value| {
                self.routes(value, &names, &portless)
            }),
            Some((source, region)) => {
                // Every problem so far was found in the rest, and the routes come last.
                for problem in &mut self.problems {
                    problem.span = region.unshift(problem.span.clone());
                }
                self.batched_routes(source, region, &names, &portless)
            }
        };
        Some(Config {
            path: path.to_path_buf(),
            listen: listen?,
            admin: admin?,
            admin_token: admin_token?,
            access_log: access_log?,
            grace: grace?,
            shutdown_delay: shutdown_delay?,
            client_header_timeout: client_header_timeout?,
            keepalive_timeout: keepalive_timeout?,
            client_body_timeout: client_body_timeout?,
            engine: engine?,
            trust_forwarded: trust_forwarded?.unwrap_or_default(),
            tls: tls?,
            apps: apps?,
            routes: routes?,
            compress: compress?,
            request_id: request_id?,
            headers: headers?,
        })
    }

    fn engine(&mut self, value: &Value<'_>) -> Option<Engine> {
        self.keyword("engine", value, Engine::from_name, |other| {
            format!(
                "unknown engine \"{other}\"; expected one of {}",
                list(Engine::NAMES)
            )
        })
    }

    fn access_log(&mut self, value: &Value<'_>) -> Option<AccessLog> {
        self.keyword("access_log", value, AccessLog::from_name, |other| {
            format!(
                "unknown access log format \"{other}\"; expected one of {}",
                list(AccessLog::NAMES)
            )
        })
    }

    fn listen(&mut self, value: &Value<'_>) -> Option<Vec<SocketAddr>> {
        match value.get_ref() {
            DeValue::String(_) => self
                .listen_address("listen", value)
                .map(|address| vec![address]),
            DeValue::Array(items) if items.is_empty() => {
                self.error(value.span(), "listen", "expected at least one address");
                None
            }
            DeValue::Array(items) => {
                let addresses: Vec<_> = items
                    .iter()
                    .enumerate()
                    .map(|(index, item)| self.listen_address(&format!("listen[{index}]"), item))
                    .collect();
                addresses.into_iter().collect()
            }
            _ => {
                self.mismatch("listen", value, "a string or an array of strings");
                None
            }
        }
    }

    fn listen_address(&mut self, at: &str, value: &Value<'_>) -> Option<SocketAddr> {
        let text = self.string(at, value)?;
        let address = text.parse().ok();
        if address.is_none() {
            self.error(
                value.span(),
                at,
                format!("expected IP:PORT, like 0.0.0.0:8000 or [::]:8000, found \"{text}\""),
            );
        }
        address
    }

    /// An array of networks, `["10.0.0.0/8", "::1"]`.
    pub(super) fn networks(&mut self, at: &str, value: &Value<'_>) -> Option<Vec<Network>> {
        let DeValue::Array(items) = value.get_ref() else {
            self.mismatch(at, value, "an array of networks like \"10.0.0.0/8\"");
            return None;
        };
        let networks: Vec<_> = items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                let at = format!("{at}[{index}]");
                let text = self.string(&at, item)?;
                Network::parse(&text)
                    .map_err(|message| self.error(item.span(), &at, message))
                    .ok()
            })
            .collect();
        networks.into_iter().collect()
    }

    /// `tls = { cert, key }`: PEM files, relative to the config file's directory.
    fn tls(&mut self, value: &Value<'_>) -> Option<Tls> {
        let table = self.table("tls", value)?;
        let fields = self.fields("tls", table, TLS_KEYS);
        let mut file = |key: &str| {
            let Some(file) = fields.get(key) else {
                let message = format!("missing `{key}` (a PEM file)");
                self.error(value.span(), "tls", message);
                return None;
            };
            let path = self.non_empty_string(&join("tls", key), file)?;
            Some(self.base.join(path))
        };
        let cert = file("cert");
        let key = file("key");
        Some(Tls {
            cert: cert?,
            key: key?,
        })
    }
}
