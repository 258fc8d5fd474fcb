//! Configuration: reads `zoo.toml`, expands `${VAR}`, validates, and yields an immutable
//! [`Config`]. Nothing here binds a port, starts a process or touches the network; every
//! error points at the file, line and column it came from.

mod diagnostic;
mod duration;
mod expand;
mod keyword;
mod schedule;
mod split;
mod suggest;
mod url;
mod walk;

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};

use crate::route::HostPattern;

pub use diagnostic::Diagnostic;
pub use duration::{MAX as MAX_DURATION, parse as parse_duration};
use keyword::keyword_enum;
pub use schedule::Schedule;
pub use walk::MAX_REPLICAS;

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file was read but is not a valid config; every problem found is listed.
    #[error("{}", Rendered { path, diagnostics })]
    Invalid {
        path: PathBuf,
        diagnostics: Vec<Diagnostic>,
    },
}

/// Renders every diagnostic, separated by a blank line like rustc does.
struct Rendered<'a> {
    path: &'a Path,
    diagnostics: &'a [Diagnostic],
}

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, diagnostic) in self.diagnostics.iter().enumerate() {
            if index > 0 {
                f.write_str("\n\n")?;
            }
            write!(f, "{}", diagnostic.display(self.path))?;
        }
        Ok(())
    }
}

/// Reads and validates the config file at `path`, expanding `${VAR}` from the process
/// environment.
///
/// # Errors
/// [`ConfigError::Read`] when the file cannot be read, [`ConfigError::Invalid`] listing every
/// problem otherwise.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let source = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&source, path, &|name| std::env::var(name).ok())
}

/// Parses and validates config `source`. Pure: `path` only names the file in messages and
/// anchors relative `dir` and `ca_file`; variables are looked up through `env` alone.
///
/// # Errors
/// [`ConfigError::Invalid`] with one diagnostic per problem found, in source order.
pub fn parse(
    source: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    parse_in_batches(source, path, env).unwrap_or_else(|| parse_whole(source, path, env))
}

/// [`parse`] through toml's tree of the whole document.
fn parse_whole(
    source: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let (root, syntax_errors) = toml::de::DeTable::parse_recoverable(source);
    let problems = if syntax_errors.is_empty() {
        match walk::walk(root.get_ref(), path, env) {
            Ok(config) => return Ok(config),
            Err(problems) => problems,
        }
    } else {
        // A tree recovered from broken syntax would only add confusing follow-on errors.
        syntax_errors
            .into_iter()
            .map(|error| walk::Problem {
                span: error.span().unwrap_or(0..0),
                message: format!("invalid TOML: {}", error.message()),
            })
            .collect()
    };
    Err(invalid(source, path, problems))
}

/// Parses a config whose `[routes]` table is plain ([`split`]) without building toml's tree
/// of it: the rest of the document in one tree, the routes a batch at a time. `None` when
/// the document is not of that shape or has a TOML error: its whole-tree parse says which.
fn parse_in_batches(
    source: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Result<Config, ConfigError>> {
    let region = split::find(source)?;
    let rest = [&source[..region.cut.start], &source[region.cut.end..]].concat();
    let (root, syntax_errors) = toml::de::DeTable::parse_recoverable(&rest);
    if !syntax_errors.is_empty() {
        return None;
    }
    Some(
        walk::walk_batched(root.get_ref(), source, &region, path, env)?
            .map_err(|problems| invalid(source, path, problems)),
    )
}

fn invalid(source: &str, path: &Path, problems: Vec<walk::Problem>) -> ConfigError {
    let problems = problems
        .into_iter()
        .map(|problem| (problem.span, problem.message))
        .collect();
    ConfigError::Invalid {
        path: path.to_path_buf(),
        diagnostics: Diagnostic::locate_all(source, problems),
    }
}

/// A validated configuration. Holds no runtime state: the runtime tables are built from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from, for messages and `zoo check`.
    pub path: PathBuf,
    /// Addresses the public proxy listens on (at least one).
    pub listen: Vec<SocketAddr>,
    /// Optional TCP address of the admin endpoints (probes, status, reload), off the public
    /// port; the control socket serves them in any case.
    pub admin: Option<SocketAddr>,
    /// Bearer token that opens the state-changing admin endpoints on the `admin` listener;
    /// without it that listener is read-only.
    pub admin_token: Option<String>,
    /// One line per request on stdout, or none.
    pub access_log: AccessLog,
    /// Time allowed for the whole shutdown (drain + apps stopping) before SIGKILL.
    pub grace: Duration,
    /// Time zoo keeps serving after SIGTERM while `/readyz` answers 503, so that a load
    /// balancer stops sending before zoo stops accepting; `grace` counts after it.
    pub shutdown_delay: Duration,
    /// Time a client has to send a complete request head before zoo closes the connection.
    pub client_header_timeout: Duration,
    /// Idle time allowed between two requests on a kept-alive HTTP/1.1 connection; zero
    /// turns keep-alive off (each response closes its connection).
    pub keepalive_timeout: Duration,
    /// Longest pause allowed between two reads of a request body being forwarded.
    pub client_body_timeout: Duration,
    /// What serves public HTTP/1.1 connections: hyper's server or zoo's own engine.
    pub engine: Engine,
    /// Client networks whose `Forwarded`/`X-Forwarded-*` zoo keeps and appends to (a load
    /// balancer in front); from anyone else they are replaced.
    pub trust_forwarded: Vec<Network>,
    /// Certificate and key when the listeners speak HTTPS (ALPN h2 and http/1.1).
    pub tls: Option<Tls>,
    /// Apps in file order; start order follows it.
    pub apps: Vec<App>,
    /// Routes in file order (matching does not depend on the order).
    pub routes: Vec<Route>,
    /// `compress`: the codings responses may be compressed with, in zoo's order of
    /// preference; empty is off (the default). A route's own `compress` replaces it.
    pub compress: Vec<Coding>,
    /// The header that carries each request's ID (`request_id_header`, `X-Request-ID` by
    /// default) to the app and back to the client; `None` with `request_id = false`.
    pub request_id: Option<HeaderName>,
    /// The top-level `headers`: applied on every route, before the route's own.
    pub headers: HeaderRules,
}

impl Config {
    /// What the public listeners speak: `https` with `tls`, else `http`.
    #[must_use]
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            Scheme::Https.as_str()
        } else {
            Scheme::Http.as_str()
        }
    }
}

keyword_enum! {
    /// `engine = "zoo" | "hyper"`: the HTTP/1.1 server of the public listeners and the
    /// HTTP/1.1 client to upstreams (HTTP/2 is hyper's either way).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum Engine {
        /// hyper's `http1` server connection and client: the fallback, kept so that the two
        /// can be compared (tests/integration/engines.rs).
        Hyper => "hyper",
        /// zoo's own one-task-per-connection engine (`proxy/engine/`) and its client
        /// (`upstream/exchange.rs`): the default, cheaper per request and limited by bytes
        /// only.
        #[default]
        Zoo => "zoo",
    }
}

keyword_enum! {
    /// `access_log = "off" | "common" | "json"`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum AccessLog {
        Off => "off",
        /// Common Log Format plus route, upstream and timings.
        Common => "common",
        /// One JSON object per request.
        Json => "json",
    }
}

/// One supervised program.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub name: String,
    pub command: Command,
    /// What the program is (`kind`, or `port = false` for a worker); decides which of the keys
    /// below apply and what its exit means.
    pub kind: AppKind,
    /// Fixed port; `None` means zoo picks a free one at start (a service), or that the app
    /// has no port at all (any other kind, see [`App::listens`]).
    pub port: Option<u16>,
    /// With `port` a list of one port per instance: the ports of instances 1.. (instance 0's
    /// is `port`); empty otherwise.
    pub replica_ports: Vec<u16>,
    /// How many instances run (`replicas`, 1 to 64): each its own process, `PORT` and
    /// `ZOO_REPLICA`, supervised on its own.
    pub replicas: usize,
    /// How the app's routes choose among its ready instances.
    pub balance: Balance,
    /// `socket = true`: the app listens on a Unix socket zoo names in `SOCKET` (one per
    /// instance), not on a port.
    pub socket: bool,
    /// When the app is started: at boot, or by the first request to one of its routes.
    pub start: StartMode,
    /// With `start = "on-demand"`: how long without requests or open tunnels before it is
    /// stopped again (it starts at the next request).
    pub idle_stop: Option<Duration>,
    /// Time one run of a task or cron job may take; past it, it is stopped and counts as
    /// failed. `None` for services and workers, which run until stopped.
    pub timeout: Option<Duration>,
    /// When a cron job runs; `Some` exactly for [`AppKind::Cron`].
    pub schedule: Option<Schedule>,
    /// Whether a cron job's tick starts a run while the previous one still runs (else the
    /// tick is skipped and counted).
    pub overlap: bool,
    /// Globs (relative to `dir`) of files whose change restarts the app; empty: none.
    pub watch: Vec<String>,
    /// Globs of files whose change does not count, besides `.git`, `node_modules`,
    /// `__pycache__` and `.venv`.
    pub watch_ignore: Vec<String>,
    /// Working directory, already resolved against the config file's directory.
    pub dir: Option<PathBuf>,
    /// Extra environment, in file order (zoo also sets `PORT`).
    pub env: Vec<(String, String)>,
    pub ready: Ready,
    pub restart: RestartPolicy,
    /// How `zoo restart` (and a reload that changes the app) replaces a running instance.
    pub restart_strategy: RestartStrategy,
    /// Delays between restarts and the limit after which the app counts as failed.
    pub restarts: Restarts,
    /// Optional liveness probe, run once the app is ready.
    pub live: Option<Live>,
    /// Apps that must be ready before this one starts (validated: known names, no cycle).
    pub depends_on: Vec<String>,
    /// How the app is asked to stop.
    pub stop: Stop,
    /// User (name or uid) to run as; zoo must be root for this to work.
    pub user: Option<String>,
    /// dotenv file read at each start, resolved against the config file's directory.
    pub env_file: Option<PathBuf>,
    /// What the app's port speaks: HTTP/1.1, or HTTP/2 with prior knowledge (gRPC).
    pub protocol: Protocol,
}

impl App {
    /// The fixed port of instance `index`, if the config gives one.
    #[must_use]
    pub fn port_of(&self, index: usize) -> Option<u16> {
        match index {
            0 => self.port,
            _ => self.replica_ports.get(index - 1).copied(),
        }
    }

    /// Whether the app listens on a port of its own: gets `PORT`, can be routed to and probed
    /// over TCP or HTTP. Only services do.
    #[must_use]
    pub fn listens(&self) -> bool {
        self.kind == AppKind::Service
    }
}

keyword_enum! {
    /// `kind = "service" | "worker" | "task" | "cron"`: what a supervised program is.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum AppKind {
        /// Listens on its port, is routed to, runs until stopped (the default).
        Service => "service",
        /// Runs until stopped without a port (`port = false`): a queue consumer.
        Worker => "worker",
        /// Runs once to completion; its dependents wait for its success (a migration).
        Task => "task",
        /// Runs to completion at each tick of its `schedule` (a report every 15 minutes).
        Cron => "cron",
    }
}

/// `backoff = { first, max, reset_after }`, `max_restarts` and `restart_window`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restarts {
    /// Delay before the first restart; it doubles after each quick crash.
    pub first: Duration,
    /// Cap of the doubling delay.
    pub max: Duration,
    /// A run at least this long resets the delay to `first`.
    pub reset_after: Duration,
    /// Restarts allowed within `window` before the app is failed; `None` is no limit.
    pub max_restarts: Option<u32>,
    pub window: Duration,
}

impl Default for Restarts {
    /// 1 s doubling to 30 s, reset after 60 s up, no limit (DESIGN.md).
    fn default() -> Self {
        Self {
            first: Duration::from_secs(1),
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(60),
            max_restarts: None,
            window: Duration::from_secs(60),
        }
    }
}

/// `stop_signal` and per-app `grace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop {
    /// Sent to the app's whole process group first.
    pub signal: nix::sys::signal::Signal,
    /// Time between the stop signal and SIGKILL; `None` means until the global deadline.
    pub grace: Option<Duration>,
}

impl Default for Stop {
    fn default() -> Self {
        Self {
            signal: nix::sys::signal::Signal::SIGTERM,
            grace: None,
        }
    }
}

/// `live = { http = "/", interval, timeout, failures }`: restart an app that stops answering.
#[derive(Debug, Clone, PartialEq)]
pub struct Live {
    pub probe: Probe,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive failures after which the app is stopped (and restarted by its policy).
    pub failures: u32,
}

/// An IP network, `10.0.0.0/8` or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    pub addr: IpAddr,
    /// Leading bits that must match, at most 32 (IPv4) or 128 (IPv6).
    pub prefix: u8,
}

impl Network {
    /// Parses `ADDR` or `ADDR/PREFIX`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = text.split_once('/').unwrap_or((text, ""));
        let addr: IpAddr = addr.parse().map_err(|_| {
            format!("expected an IP address or network like \"10.0.0.0/8\", found \"{text}\"")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            prefix
                .parse::<u8>()
                .ok()
                .filter(|prefix| *prefix <= max)
                .ok_or_else(|| format!("prefix length must be 0 to {max}, found \"{prefix}\""))?
        };
        Ok(Self { addr, prefix })
    }

    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts as IPv4).
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        };
        let (network, ip, bits) = match (self.addr, ip) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                (u128::from(network.to_bits()), u128::from(ip.to_bits()), 32)
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => (network.to_bits(), ip.to_bits(), 128),
            _ => return false,
        };
        let ignored = bits - u32::from(self.prefix);
        ignored >= 128 || (network ^ ip) >> ignored == 0
    }
}

/// `tls = { cert, key }`: PEM files, already resolved against the config file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    pub key: PathBuf,
}

keyword_enum! {
    /// `protocol = "http1" | "h2c"`: what an app's port speaks.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Protocol {
        Http1 => "http1",
        /// HTTP/2 with prior knowledge (gRPC servers).
        H2c => "h2c",
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run by `sh -c`, as `exec LINE` when it is a simple command (supervise decides).
    Shell(String),
    /// Run directly, `argv[0]` looked up in `PATH`.
    Argv(Vec<String>),
}

/// How zoo decides an app is ready to receive requests.
#[derive(Debug, Clone, PartialEq)]
pub struct Ready {
    pub probe: Probe,
    /// Time between two probes.
    pub interval: Duration,
    /// Time one probe may take.
    pub timeout: Duration,
    /// Time after start within which the app must become ready.
    pub deadline: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The port accepts a TCP connection.
    Tcp,
    /// `GET path` on the app's port answers with a status below 500.
    Http { path: String },
    /// `sh -c COMMAND` (with `PORT` set, for a service) exits 0.
    Exec { command: String },
    /// Passes as soon as the process was started: the readiness of a worker without an `exec`
    /// probe (it has no port to probe).
    Started,
}

keyword_enum! {
    /// `restart = "always" | "on-failure" | "never"`: whether an app that exited is started
    /// again.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum RestartPolicy {
        Always => "always",
        /// Only after a non-zero exit or a signal.
        OnFailure => "on-failure",
        Never => "never",
    }
}

keyword_enum! {
    /// `restart_strategy = "stop-start" | "replace"`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum RestartStrategy {
        /// Stop the running instance, then start a new one; requests wait for it (gating).
        StopStart => "stop-start",
        /// Start a new instance on a fresh port, switch to it once ready, then stop the old
        /// one; requests never wait. Only for apps whose port zoo picks.
        Replace => "replace",
    }
}

keyword_enum! {
    /// `balance = "least_requests" | "round_robin" | "client_ip"`: which ready instance of
    /// an app with `replicas` takes the next request.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Balance {
        /// The one with the fewest requests in flight (open tunnels count); ties go round.
        LeastRequests => "least_requests",
        /// Each in turn.
        RoundRobin => "round_robin",
        /// The same one for each client address (sticky sessions), by rendezvous hashing.
        ClientIp => "client_ip",
    }
}

keyword_enum! {
    /// `start = "boot" | "on-demand"`: when a service is started.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum StartMode {
        /// With zoo, as every app (the default).
        Boot => "boot",
        /// By the first request routed to it; stopped again after `idle_stop`.
        OnDemand => "on-demand",
    }
}

/// One entry of `[routes]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// The key as written: `/node`, `/node*`, `/`, or with a host, `api.example.com/`; the
    /// route's label in metrics and the access log.
    pub key: String,
    /// The host part of the key in its compared form; `None` answers any host. Boxed: most
    /// routes have none, and each carried 24 bytes more (issue 13).
    pub host: Option<Box<HostPattern>>,
    pub action: Action,
    /// Remove the matched key before forwarding (`app` and `proxy`, default false), or before
    /// naming a file (`static`, default true: nginx's `alias`; false is nginx's `root`).
    pub strip_prefix: bool,
    /// Largest request body accepted (`app` and `proxy` only); larger gets 413.
    pub max_body: Option<u64>,
    /// Time from sending the request upstream to its response headers; then 504.
    pub timeout: Duration,
    /// How long a request waits for its app to be ready (starting, restarting); then 503.
    pub wait: Duration,
    /// The route's own `compress`; `None` follows the top-level one.
    pub compress: Option<Vec<Coding>>,
    /// `allow` / `deny`: which client addresses the route answers; `None` answers all.
    /// Boxed, as the rules and users below: few routes have them, and a config of 300,000
    /// routes carried ~300 bytes a route of empty ones (issue 13).
    pub access: Option<Box<Access>>,
    /// The route's `headers` rules, applied after the top-level ones; `None` has none.
    pub headers: Option<Box<HeaderRules>>,
    /// `basic_auth`: the users who may use the route; `None` asks for no credentials.
    pub basic_auth: Option<Box<BasicAuth>>,
}

/// The rules of a route without `headers`.
static NO_HEADER_RULES: HeaderRules = HeaderRules {
    request: HeaderEdits::NONE,
    response: HeaderEdits::NONE,
};

impl Route {
    /// The path part of the key (`/node`, `/node*`, `/`): always starts with `/`.
    #[must_use]
    pub fn path(&self) -> &str {
        self.key.find('/').map_or("/", |slash| &self.key[slash..])
    }

    /// The route's `headers` rules (empty without any).
    #[must_use]
    pub fn header_rules(&self) -> &HeaderRules {
        self.headers.as_deref().unwrap_or(&NO_HEADER_RULES)
    }
}

/// `headers = { request = {...}, response = {...} }`: header edits on the way to the
/// upstream and on the way back to the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderRules {
    pub request: HeaderEdits,
    pub response: HeaderEdits,
}

impl HeaderRules {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response.is_empty()
    }
}

/// One side's `set`, `add` and `remove`, applied in that order. Values are templates
/// (`{host}`, `{path}`, `{query}`, `{method}`, `{client_ip}`, `{request_id}`) whose literal
/// text was checked to be a valid header value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    /// Replaces every value of the name.
    pub set: Vec<(HeaderName, String)>,
    /// Appends one more value.
    pub add: Vec<(HeaderName, String)>,
    pub remove: Vec<HeaderName>,
}

impl HeaderEdits {
    const NONE: Self = Self {
        set: Vec::new(),
        add: Vec::new(),
        remove: Vec::new(),
    };

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// `basic_auth = { users_file, realm, forward_auth_header }`, with the users file already
/// read and checked (bcrypt or argon2 hashes only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    /// The htpasswd file, resolved against the config file's directory (re-read on reload).
    pub users_file: PathBuf,
    /// Named in `WWW-Authenticate: Basic realm="..."`.
    pub realm: String,
    /// Pass `Authorization` on to the upstream (default: removed once checked).
    pub forward_auth_header: bool,
    /// `(user, hash)` in file order.
    pub users: Vec<(String, String)>,
}

/// A route's `allow` and `deny` networks, matched against the client's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// When not empty, only these networks are admitted.
    pub allow: Vec<Network>,
    /// Never admitted, even when also in `allow`.
    pub deny: Vec<Network>,
}

impl Access {
    /// Whether a request from `client` may reach the route: not denied, and allowed (when
    /// `allow` lists anything).
    #[must_use]
    pub fn admits(&self, client: IpAddr) -> bool {
        let listed = |networks: &[Network]| networks.iter().any(|n| n.contains(client));
        !listed(&self.deny) && (self.allow.is_empty() || listed(&self.allow))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Forward to a supervised app, by name (validated to exist).
    App { name: String },
    /// Forward to an external HTTP(S) server.
    Proxy {
        /// Shared by the routes to the same target (and boxed: the largest variant by far,
        /// and routes of other kinds paid for it).
        target: Arc<ProxyTarget>,
        /// PEM file of extra trusted CA certificates (resolved against the config's directory).
        ca_file: Option<PathBuf>,
    },
    /// Answer directly; `body` is a template with `{path}` `{query}` `{method}` `{host}`.
    /// Boxed slices, not `Vec`s and `String`s: this was the largest variant, and every
    /// route paid for its 16 bytes of capacities (issue 13).
    Respond {
        status: StatusCode,
        headers: Box<[(HeaderName, HeaderValue)]>,
        body: Box<str>,
    },
    /// Answer with a 3xx and a `Location` built from the same template syntax.
    Redirect {
        status: StatusCode,
        location: Box<str>,
    },
    /// Answered by zoo itself; exists only where a route names it.
    Builtin(Builtin),
    /// Files under a directory (`static = "dist"`), answered by zoo (`crate::files`).
    Static(Box<StaticFiles>),
}

/// `static = "DIR"` and its options, checked on disk when the config was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticFiles {
    /// The directory, resolved against the config file's directory.
    pub root: PathBuf,
    /// `fallback = "index.html"`: answers a missing extension-less path (an SPA's client-side
    /// route), relative to `root`.
    pub fallback: Option<String>,
    /// `cache`: the `Cache-Control` of every file but the fallback (always `no-cache`);
    /// `None` sends none.
    pub cache: Option<CachePolicy>,
    /// `dotfiles = true` serves names starting with `.`; by default they are 404.
    pub dotfiles: bool,
    /// `follow_symlinks = true` serves symlinks that resolve outside `root`.
    pub follow_symlinks: bool,
}

/// `cache = "immutable" | "no-cache" | DURATION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachePolicy {
    /// `public, max-age=31536000, immutable`: for content-hashed assets.
    Immutable,
    /// `no-cache`: stored but revalidated on every use (the ETag makes that a 304).
    NoCache,
    /// `public, max-age=SECONDS`.
    MaxAge(Duration),
}

keyword_enum! {
    /// A content coding zoo compresses with (`compress = ["zstd", "br", "gzip"]`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Coding {
        Zstd => "zstd",
        /// Brotli.
        Br => "br",
        Gzip => "gzip",
    }
}

keyword_enum! {
    /// `builtin = "health" | "metrics"`: what zoo can answer about itself on a route.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Builtin {
        /// 200 when every app is ready, 503 otherwise, with a JSON body of each app's state.
        Health => "health",
        /// Prometheus text of zoo's metrics.
        Metrics => "metrics",
    }
}

keyword_enum! {
    /// The scheme of a `proxy` URL (matched case-insensitively there, as URLs are).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum Scheme {
        Http => "http",
        Https => "https",
    }
}

/// A parsed `proxy = "https://host:port/base"` URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProxyTarget {
    pub scheme: Scheme,
    /// Host name or IP literal without brackets (used for SNI and connecting).
    pub host: String,
    /// Explicit port or the scheme's default.
    pub port: u16,
    /// `host[:port]` as written, used for the `Host` header.
    pub authority: String,
    /// Base path, empty or starting with `/`, joined with the request path like Go's
    /// `singleJoiningSlash`.
    pub path: String,
}

#[cfg(test)]
mod tests;
