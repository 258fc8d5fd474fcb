//! The validating walk over the spanned TOML tree: turns `toml::de::DeTable` into a typed
//! [`Config`], expanding `${VAR}` in string values on the way. It walks by hand (rather than
//! through serde) so that it can report every problem at once, each at its own span, with a
//! "did you mean" for misspelt keys and app names. No I/O: relative paths are only joined to
//! the config's directory, never checked on disk.

use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{
    AccessLog, Action, App, Builtin, Command, Config, Live, Network, Probe, Protocol, ProxyTarget,
    Ready, RestartPolicy, RestartStrategy, Restarts, Route, Scheme, Stop, Tls,
};
use super::{duration, expand, suggest, url};

type Value<'i> = Spanned<DeValue<'i>>;

/// One problem, located by a byte span of the source; `mod.rs` turns it into a diagnostic.
pub(super) struct Problem {
    pub(super) span: Range<usize>,
    pub(super) message: String,
}

const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8000);
/// Docker's own stop timeout, so `docker stop` and zoo agree.
const DEFAULT_GRACE: Duration = Duration::from_secs(10);
const DEFAULT_INTERVAL: Duration = Duration::from_millis(100);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);

const ROOT_KEYS: &[&str] = &[
    "listen",
    "access_log",
    "admin",
    "admin_token",
    "grace",
    "shutdown_delay",
    "client_header_timeout",
    "trust_forwarded",
    "tls",
    "apps",
    "routes",
];
const APP_KEYS: &[&str] = &[
    "command",
    "port",
    "dir",
    "env",
    "env_file",
    "user",
    "ready",
    "live",
    "restart",
    "restart_strategy",
    "backoff",
    "max_restarts",
    "restart_window",
    "depends_on",
    "stop_signal",
    "grace",
    "protocol",
];
const TLS_KEYS: &[&str] = &["cert", "key"];
const READY_KEYS: &[&str] = &["tcp", "http", "exec", "interval", "timeout", "deadline"];
const LIVE_KEYS: &[&str] = &["tcp", "http", "exec", "interval", "timeout", "failures"];
const BACKOFF_KEYS: &[&str] = &["first", "max", "reset_after"];
/// Consecutive failed liveness probes before a restart, unless `failures` says otherwise.
const DEFAULT_LIVE_FAILURES: u32 = 3;
/// Signals an app may ask to be stopped with (`stop_signal`), without the `SIG` prefix.
const STOP_SIGNALS: &[&str] = &[
    "TERM", "INT", "QUIT", "HUP", "KILL", "USR1", "USR2", "WINCH",
];
const ROUTE_KEYS: &[&str] = &[
    "app",
    "proxy",
    "respond",
    "redirect",
    "builtin",
    "strip_prefix",
    "ca_file",
    "status",
    "headers",
    "max_body",
    "timeout",
    "wait",
];
const ACTIONS: &[&str] = &["app", "proxy", "respond", "redirect", "builtin"];
const BUILTINS: &[&str] = &["health", "metrics"];
/// Route keys that only some actions accept: (key, actions that accept it, how to say so).
const ACTION_KEYS: &[(&str, &[&str], &str)] = &[
    (
        "strip_prefix",
        &["app", "proxy"],
        "`app` and `proxy` routes",
    ),
    ("ca_file", &["proxy"], "`proxy` routes"),
    (
        "status",
        &["respond", "redirect"],
        "`respond` and `redirect` routes",
    ),
    ("headers", &["respond"], "`respond` routes"),
    ("max_body", &["app", "proxy"], "`app` and `proxy` routes"),
    ("timeout", &["app", "proxy"], "`app` and `proxy` routes"),
    ("wait", &["app"], "`app` routes"),
];
const PROTOCOLS: &[&str] = &["http1", "h2c"];
/// Time a client has to send a complete request head (slowloris guard, DESIGN.md).
const DEFAULT_CLIENT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Time from sending a request upstream to its response headers (DESIGN.md).
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a request for an app that is (re)starting waits for it (DESIGN.md).
const DEFAULT_READY_WAIT: Duration = Duration::from_secs(10);
const RESTART_POLICIES: &[&str] = &["always", "on-failure", "never"];
const RESTART_STRATEGIES: &[&str] = &["stop-start", "replace"];
const REDIRECT_STATUSES: &[u16] = &[301, 302, 303, 307, 308];

/// Validates the whole document; `path` is the config file (its directory anchors relative
/// paths).
pub(super) fn walk(
    root: &DeTable<'_>,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<Problem>> {
    let mut walker = Walker {
        env,
        base: path.parent().unwrap_or(Path::new("")).to_path_buf(),
        problems: Vec::new(),
    };
    let config = walker.config(root, path);
    match config {
        Some(config) if walker.problems.is_empty() => Ok(config),
        _ => Err(walker.problems),
    }
}

struct Walker<'e> {
    env: &'e dyn Fn(&str) -> Option<String>,
    /// The config file's directory, which relative `dir` and `ca_file` are joined to.
    base: PathBuf,
    problems: Vec<Problem>,
}

/// The entries of one table whose keys were all checked against an allowed list.
struct Fields<'t, 'i> {
    entries: Vec<(&'t str, Range<usize>, &'t Value<'i>)>,
    /// The keys offered as "did you mean" for unknown ones: a "missing `command`" error after
    /// "unknown key `comand`; did you mean `command`?" would report the same typo twice.
    suggested: Vec<&'static str>,
}

impl<'t, 'i> Fields<'t, 'i> {
    fn get(&self, name: &str) -> Option<&'t Value<'i>> {
        self.entries
            .iter()
            .find(|(key, _, _)| *key == name)
            .map(|(_, _, value)| *value)
    }

    fn key_span(&self, name: &str) -> Option<Range<usize>> {
        self.entries
            .iter()
            .find(|(key, _, _)| *key == name)
            .map(|(_, span, _)| span.clone())
    }
}

impl Walker<'_> {
    fn error(&mut self, span: Range<usize>, at: &str, message: impl Into<String>) {
        let message = message.into();
        let message = if at.is_empty() {
            message
        } else {
            format!("{at}: {message}")
        };
        self.problems.push(Problem { span, message });
    }

    fn mismatch(&mut self, at: &str, value: &Value<'_>, expected: &str) {
        let found = found(value.get_ref());
        self.error(
            value.span(),
            at,
            format!("expected {expected}, found {found}"),
        );
    }

    /// Checks the keys of `table` against `allowed`, reporting each unknown one.
    fn fields<'t, 'i>(
        &mut self,
        at: &str,
        table: &'t DeTable<'i>,
        allowed: &[&'static str],
    ) -> Fields<'t, 'i> {
        let mut entries = Vec::with_capacity(table.len());
        let mut suggested = Vec::new();
        for (key, value) in table {
            let name: &str = key.get_ref();
            if allowed.contains(&name) {
                entries.push((name, key.span(), value));
                continue;
            }
            let hint = match suggest::closest(name, allowed.iter().copied()) {
                Some(close) => {
                    suggested.push(close);
                    format!("did you mean `{close}`?")
                }
                None => format!("expected one of {}", list(allowed)),
            };
            self.error(key.span(), at, format!("unknown key `{name}`; {hint}"));
        }
        Fields { entries, suggested }
    }

    fn table<'t, 'i>(&mut self, at: &str, value: &'t Value<'i>) -> Option<&'t DeTable<'i>> {
        if let DeValue::Table(table) = value.get_ref() {
            Some(table)
        } else {
            self.mismatch(at, value, "a table");
            None
        }
    }

    fn expand(&mut self, at: &str, span: Range<usize>, text: &str) -> Option<String> {
        match expand::expand(text, self.env) {
            Ok(expanded) => Some(expanded),
            Err(message) => {
                self.error(span, at, message);
                None
            }
        }
    }

    /// A string value, `${VAR}`-expanded.
    fn string(&mut self, at: &str, value: &Value<'_>) -> Option<String> {
        if let DeValue::String(text) = value.get_ref() {
            self.expand(at, value.span(), text)
        } else {
            self.mismatch(at, value, "a string");
            None
        }
    }

    fn non_empty_string(&mut self, at: &str, value: &Value<'_>) -> Option<String> {
        let text = self.string(at, value)?;
        if text.is_empty() {
            self.error(value.span(), at, "must not be empty");
            return None;
        }
        Some(text)
    }

    fn integer(&mut self, at: &str, value: &Value<'_>) -> Option<i64> {
        let DeValue::Integer(integer) = value.get_ref() else {
            self.mismatch(at, value, "an integer");
            return None;
        };
        let parsed = i64::from_str_radix(integer.as_str(), integer.radix()).ok();
        if parsed.is_none() {
            self.error(value.span(), at, "integer out of range");
        }
        parsed
    }

    fn boolean(&mut self, at: &str, value: &Value<'_>) -> Option<bool> {
        if let DeValue::Boolean(boolean) = value.get_ref() {
            Some(*boolean)
        } else {
            self.mismatch(at, value, "a boolean (true or false)");
            None
        }
    }

    /// `"250ms"`, `"1m30s"`, or an integer number of seconds.
    fn duration(&mut self, at: &str, value: &Value<'_>) -> Option<Duration> {
        match value.get_ref() {
            DeValue::String(text) => {
                let text = self.expand(at, value.span(), text)?;
                duration::parse(&text)
                    .map_err(|message| self.error(value.span(), at, message))
                    .ok()
            }
            DeValue::Integer(_) => {
                let seconds = self.integer(at, value)?;
                let seconds = u64::try_from(seconds)
                    .map_err(|_| self.error(value.span(), at, "a duration cannot be negative"))
                    .ok()?;
                Some(Duration::from_secs(seconds))
            }
            _ => {
                self.mismatch(at, value, "a duration like \"10s\" or \"250ms\"");
                None
            }
        }
    }

    /// A duration that must not be zero (a zero probe interval would spin).
    fn positive_duration(&mut self, at: &str, value: &Value<'_>) -> Option<Duration> {
        let duration = self.duration(at, value)?;
        if duration.is_zero() {
            self.error(value.span(), at, "must be greater than zero");
            return None;
        }
        Some(duration)
    }

    /// An app port: an integer, or a string that is one after expansion (`"${P:-9100}"`).
    fn port(&mut self, at: &str, value: &Value<'_>) -> Option<u16> {
        let number = match value.get_ref() {
            DeValue::Integer(_) => self.integer(at, value)?,
            DeValue::String(text) => {
                let text = self.expand(at, value.span(), text)?;
                if let Ok(number) = text.trim().parse::<i64>() {
                    number
                } else {
                    self.error(
                        value.span(),
                        at,
                        format!("expected an integer port, found \"{text}\""),
                    );
                    return None;
                }
            }
            _ => {
                self.mismatch(at, value, "an integer");
                return None;
            }
        };
        match u16::try_from(number) {
            Ok(port) if port > 0 => Some(port),
            _ => {
                self.error(
                    value.span(),
                    at,
                    format!("port must be between 1 and 65535, found {number}"),
                );
                None
            }
        }
    }

    fn config(&mut self, root: &DeTable<'_>, path: &Path) -> Option<Config> {
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
        let trust_forwarded = optional(fields.get("trust_forwarded"), |value| {
            self.networks("trust_forwarded", value)
        });
        let tls = optional(fields.get("tls"), |value| self.tls(value));
        let (apps, names) = match fields.get("apps") {
            Some(value) => self.apps(value, listen.as_deref().unwrap_or_default()),
            None => (Some(Vec::new()), Vec::new()),
        };
        let routes = fields
            .get("routes")
            .map_or(Some(Vec::new()), |value| self.routes(value, &names));
        Some(Config {
            path: path.to_path_buf(),
            listen: listen?,
            admin: admin?,
            admin_token: admin_token?,
            access_log: access_log?,
            grace: grace?,
            shutdown_delay: shutdown_delay?,
            client_header_timeout: client_header_timeout?,
            trust_forwarded: trust_forwarded?.unwrap_or_default(),
            tls: tls?,
            apps: apps?,
            routes: routes?,
        })
    }

    fn access_log(&mut self, value: &Value<'_>) -> Option<AccessLog> {
        match self.string("access_log", value)?.as_str() {
            "off" => Some(AccessLog::Off),
            "common" => Some(AccessLog::Common),
            "json" => Some(AccessLog::Json),
            other => {
                let message = format!(
                    "unknown access log format \"{other}\"; expected one of `off`, `common`, `json`"
                );
                self.error(value.span(), "access_log", message);
                None
            }
        }
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

    /// Returns the apps (if all are valid) and every name under `[apps]`, valid or not, so that
    /// routes to a broken app are not also reported as routes to a missing one.
    fn apps(
        &mut self,
        value: &Value<'_>,
        listen: &[SocketAddr],
    ) -> (Option<Vec<App>>, Vec<String>) {
        let Some(table) = self.table("apps", value) else {
            return (None, Vec::new());
        };
        let names: Vec<String> = table.keys().map(|key| key.get_ref().to_string()).collect();
        let mut apps = Some(Vec::with_capacity(table.len()));
        // Where each app's `depends_on` entries are, to point at the one closing a cycle.
        let mut dependency_spans = Vec::with_capacity(table.len());
        // Which app took which port first, to name it when a later one collides.
        let mut taken: Vec<(u16, String)> = Vec::new();
        for (key, value) in table {
            let name: &str = key.get_ref();
            let valid_name = self.app_name(key.span(), name);
            let app = self.app(name, value, listen, &mut taken, &names);
            match (app, valid_name, apps.as_mut()) {
                (Some((app, spans)), true, Some(apps)) => {
                    apps.push(app);
                    dependency_spans.push(spans);
                }
                _ => apps = None,
            }
        }
        if let Some(valid) = &apps {
            let graph: Vec<(&str, &[String])> = valid
                .iter()
                .map(|app| (app.name.as_str(), app.depends_on.as_slice()))
                .collect();
            if let Some(cycle) = find_cycle(&graph) {
                let (first, second) = (cycle[0], cycle[1]);
                let edge = valid[first]
                    .depends_on
                    .iter()
                    .position(|dependency| *dependency == valid[second].name)
                    .unwrap_or(0);
                let path: Vec<&str> = cycle.iter().map(|&index| graph[index].0).collect();
                let span = dependency_spans[first]
                    .get(edge)
                    .cloned()
                    .unwrap_or_else(|| value.span());
                let at = join(&join("apps", &valid[first].name), "depends_on");
                let message = format!("dependency cycle: {}", path.join(" -> "));
                self.error(span, &at, message);
                apps = None;
            }
        }
        (apps, names)
    }

    fn app_name(&mut self, span: Range<usize>, name: &str) -> bool {
        let valid = name
            .chars()
            .next()
            .is_some_and(|first| first.is_ascii_alphanumeric())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            self.error(
                span,
                "apps",
                format!(
                    "invalid app name \"{name}\": use ASCII letters, digits, `-` and `_`, \
                     starting with a letter or digit"
                ),
            );
        }
        valid
    }

    fn app(
        &mut self,
        name: &str,
        value: &Value<'_>,
        listen: &[SocketAddr],
        taken: &mut Vec<(u16, String)>,
        names: &[String],
    ) -> Option<(App, Vec<Range<usize>>)> {
        let at = join("apps", name);
        let table = self.table(&at, value)?;
        let fields = self.fields(&at, table, APP_KEYS);
        let command = if let Some(value) = fields.get("command") {
            self.command(&join(&at, "command"), value)
        } else if fields.suggested.contains(&"command") {
            None
        } else {
            self.error(
                value.span(),
                &at,
                "missing `command` (a string run by `sh -c`, or an array of arguments)",
            );
            None
        };
        let port = optional(fields.get("port"), |value| {
            let at = join(&at, "port");
            let port = self.port(&at, value)?;
            if listen.iter().any(|address| address.port() == port) {
                self.error(
                    value.span(),
                    &at,
                    format!("port {port} is also a `listen` port; give the app another one"),
                );
                return None;
            }
            if let Some((_, owner)) = taken.iter().find(|(used, _)| *used == port) {
                let message = format!("port {port} is already used by app `{owner}`");
                self.error(value.span(), &at, message);
                return None;
            }
            taken.push((port, name.to_owned()));
            Some(port)
        });
        let dir = optional(fields.get("dir"), |value| {
            let dir = self.non_empty_string(&join(&at, "dir"), value)?;
            Some(self.base.join(dir))
        });
        let env = optional(fields.get("env"), |value| {
            self.env(&join(&at, "env"), value)
        });
        let ready = fields.get("ready").map_or(Some(default_ready()), |value| {
            self.ready(&join(&at, "ready"), value)
        });
        let restart = fields
            .get("restart")
            .map_or(Some(RestartPolicy::Always), |value| {
                self.restart(&join(&at, "restart"), value)
            });
        let restart_strategy =
            fields
                .get("restart_strategy")
                .map_or(Some(RestartStrategy::StopStart), |value| {
                    self.restart_strategy(&join(&at, "restart_strategy"), value, fields.get("port"))
                });
        let env_file = optional(fields.get("env_file"), |value| {
            let file = self.non_empty_string(&join(&at, "env_file"), value)?;
            Some(self.base.join(file))
        });
        let user = optional(fields.get("user"), |value| {
            self.non_empty_string(&join(&at, "user"), value)
        });
        let live = optional(fields.get("live"), |value| {
            self.live(&join(&at, "live"), value)
        });
        let restarts = self.restarts(&at, &fields);
        let stop = self.stop(&at, &fields);
        let depends_on = fields.get("depends_on").map_or(Some(Vec::new()), |value| {
            self.depends_on(&join(&at, "depends_on"), value, name, names)
        });
        let (depends_on, spans): (Vec<String>, Vec<Range<usize>>) = depends_on?.into_iter().unzip();
        let protocol = fields
            .get("protocol")
            .map_or(Some(Protocol::Http1), |value| {
                self.protocol(&join(&at, "protocol"), value)
            });
        let app = App {
            name: name.to_owned(),
            command: command?,
            port: port?,
            // Like docker compose: an app runs next to its config file unless told otherwise,
            // so `command = "node main.js"` finds main.js wherever zoo was started from.
            dir: dir?.or_else(|| (!self.base.as_os_str().is_empty()).then(|| self.base.clone())),
            env: env?.unwrap_or_default(),
            ready: ready?,
            restart: restart?,
            restart_strategy: restart_strategy?,
            restarts: restarts?,
            live: live?,
            depends_on,
            stop: stop?,
            user: user?,
            env_file: env_file?,
            protocol: protocol?,
        };
        Some((app, spans))
    }

    /// `depends_on = ["db"]`: known names other than the app itself, each with its span.
    fn depends_on(
        &mut self,
        at: &str,
        value: &Value<'_>,
        app: &str,
        names: &[String],
    ) -> Option<Vec<(String, Range<usize>)>> {
        let DeValue::Array(items) = value.get_ref() else {
            self.mismatch(at, value, "an array of app names");
            return None;
        };
        let mut dependencies = Some(Vec::with_capacity(items.len()));
        for (index, item) in items.iter().enumerate() {
            let item_at = format!("{at}[{index}]");
            let Some(name) = self.string(&item_at, item) else {
                dependencies = None;
                continue;
            };
            let problem = if name == app {
                Some("an app cannot depend on itself".to_owned())
            } else if names.contains(&name) {
                None
            } else if let Some(close) = suggest::closest(&name, names.iter().map(String::as_str)) {
                Some(format!("unknown app `{name}`; did you mean `{close}`?"))
            } else {
                Some(format!("unknown app `{name}`"))
            };
            match (problem, dependencies.as_mut()) {
                (Some(message), _) => {
                    self.error(item.span(), &item_at, message);
                    dependencies = None;
                }
                (None, Some(dependencies)) => dependencies.push((name, item.span())),
                (None, None) => {}
            }
        }
        dependencies
    }

    /// `backoff = { first, max, reset_after }`, `max_restarts` and `restart_window`.
    fn restarts(&mut self, at: &str, fields: &Fields<'_, '_>) -> Option<Restarts> {
        let defaults = Restarts::default();
        let backoff = optional(fields.get("backoff"), |value| {
            let at = join(at, "backoff");
            let table = self.table(&at, value)?;
            let backoff = self.fields(&at, table, BACKOFF_KEYS);
            let mut duration = |key: &str, default: Duration| {
                backoff
                    .get(key)
                    .map_or(Some(default), |value| self.duration(&join(&at, key), value))
            };
            let first = duration("first", defaults.first);
            let max = duration("max", defaults.max);
            let reset_after = duration("reset_after", defaults.reset_after);
            let (first, max) = (first?, max?);
            if max < first {
                let span = backoff.key_span("max").unwrap_or_else(|| value.span());
                self.error(span, &at, "`max` must not be shorter than `first`");
                return None;
            }
            Some((first, max, reset_after?))
        });
        let max_restarts = optional(fields.get("max_restarts"), |value| {
            let at = join(at, "max_restarts");
            let count = self.integer(&at, value)?;
            u32::try_from(count)
                .map_err(|_| self.error(value.span(), &at, "must be between 0 and 4294967295"))
                .ok()
        });
        let window = fields
            .get("restart_window")
            .map_or(Some(defaults.window), |value| {
                self.positive_duration(&join(at, "restart_window"), value)
            });
        let (first, max, reset_after) =
            backoff?.unwrap_or((defaults.first, defaults.max, defaults.reset_after));
        Some(Restarts {
            first,
            max,
            reset_after,
            max_restarts: max_restarts?,
            window: window?,
        })
    }

    /// `stop_signal = "SIGTERM"` (or `"TERM"`) and per-app `grace`.
    fn stop(&mut self, at: &str, fields: &Fields<'_, '_>) -> Option<Stop> {
        let signal = optional(fields.get("stop_signal"), |value| {
            let at = join(at, "stop_signal");
            let text = self.string(&at, value)?;
            let bare = text.strip_prefix("SIG").unwrap_or(&text);
            if !STOP_SIGNALS.contains(&bare) {
                let message = format!(
                    "unknown stop signal \"{text}\"; expected one of {}",
                    list(STOP_SIGNALS)
                );
                self.error(value.span(), &at, message);
                return None;
            }
            format!("SIG{bare}")
                .parse::<nix::sys::signal::Signal>()
                .ok()
        });
        let grace = optional(fields.get("grace"), |value| {
            self.duration(&join(at, "grace"), value)
        });
        Some(Stop {
            signal: signal?.unwrap_or(nix::sys::signal::Signal::SIGTERM),
            grace: grace?,
        })
    }

    /// `live = { http = "/", interval, timeout, failures }`.
    fn live(&mut self, at: &str, value: &Value<'_>) -> Option<Live> {
        let table = self.table(at, value)?;
        let fields = self.fields(at, table, LIVE_KEYS);
        let probe = self.probe(at, value, &fields);
        let mut duration = |key: &str, default: Duration| {
            fields.get(key).map_or(Some(default), |value| {
                self.positive_duration(&join(at, key), value)
            })
        };
        let interval = duration("interval", Duration::from_secs(1));
        let timeout = duration("timeout", DEFAULT_TIMEOUT);
        let failures = optional(fields.get("failures"), |value| {
            let at = join(at, "failures");
            let count = self.integer(&at, value)?;
            match u32::try_from(count) {
                Ok(count) if count > 0 => Some(count),
                _ => {
                    self.error(value.span(), &at, "must be a positive integer");
                    None
                }
            }
        });
        Some(Live {
            probe: probe?,
            interval: interval?,
            timeout: timeout?,
            failures: failures?.unwrap_or(DEFAULT_LIVE_FAILURES),
        })
    }

    fn protocol(&mut self, at: &str, value: &Value<'_>) -> Option<Protocol> {
        match self.string(at, value)?.as_str() {
            "http1" => Some(Protocol::Http1),
            "h2c" => Some(Protocol::H2c),
            other => {
                let message = format!(
                    "unknown protocol \"{other}\"; expected one of {}",
                    list(PROTOCOLS)
                );
                self.error(value.span(), at, message);
                None
            }
        }
    }

    fn command(&mut self, at: &str, value: &Value<'_>) -> Option<Command> {
        match value.get_ref() {
            DeValue::String(_) => {
                let line = self.string(at, value)?;
                if line.trim().is_empty() {
                    self.error(value.span(), at, "command is empty");
                    return None;
                }
                Some(Command::Shell(line))
            }
            DeValue::Array(items) if items.is_empty() => {
                self.error(
                    value.span(),
                    at,
                    "command is empty: expected at least the program",
                );
                None
            }
            DeValue::Array(items) => {
                let argv: Vec<_> = items
                    .iter()
                    .enumerate()
                    .map(|(index, item)| self.string(&format!("{at}[{index}]"), item))
                    .collect();
                let argv: Vec<String> = argv.into_iter().collect::<Option<_>>()?;
                if argv[0].is_empty() {
                    self.error(
                        items[0].span(),
                        &format!("{at}[0]"),
                        "the program name is empty",
                    );
                    return None;
                }
                Some(Command::Argv(argv))
            }
            _ => {
                self.mismatch(at, value, "a string or an array of strings");
                None
            }
        }
    }

    fn env(&mut self, at: &str, value: &Value<'_>) -> Option<Vec<(String, String)>> {
        let table = self.table(at, value)?;
        let mut vars = Some(Vec::with_capacity(table.len()));
        for (key, value) in table {
            let name: &str = key.get_ref();
            let var_at = join(at, name);
            let valid = if name.is_empty() || name.contains(['=', '\0']) {
                let message = format!("invalid environment variable name \"{name}\"");
                self.error(key.span(), at, message);
                false
            } else if name == "PORT" {
                let message = "zoo sets `PORT` itself from the app's `port`; set `port` instead";
                self.error(key.span(), &var_at, message);
                false
            } else {
                true
            };
            let text = self.string(&var_at, value).and_then(|text| {
                if text.contains('\0') {
                    self.error(value.span(), &var_at, "a NUL character cannot be passed");
                    None
                } else {
                    Some(text)
                }
            });
            match (text, valid, vars.as_mut()) {
                (Some(text), true, Some(vars)) => vars.push((name.to_owned(), text)),
                _ => vars = None,
            }
        }
        vars
    }

    /// An array of networks, `["10.0.0.0/8", "::1"]`.
    fn networks(&mut self, at: &str, value: &Value<'_>) -> Option<Vec<Network>> {
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

    fn ready(&mut self, at: &str, value: &Value<'_>) -> Option<Ready> {
        let table = self.table(at, value)?;
        let fields = self.fields(at, table, READY_KEYS);
        let probe = self.probe(at, value, &fields);
        let mut duration = |key: &str, default: Duration| {
            fields.get(key).map_or(Some(default), |value| {
                self.positive_duration(&join(at, key), value)
            })
        };
        let interval = duration("interval", DEFAULT_INTERVAL);
        let timeout = duration("timeout", DEFAULT_TIMEOUT);
        let deadline = duration("deadline", DEFAULT_DEADLINE);
        Some(Ready {
            probe: probe?,
            interval: interval?,
            timeout: timeout?,
            deadline: deadline?,
        })
    }

    /// The probe of a `ready` or `live` table: `tcp = true` (the default), `http = "/path"` or
    /// `exec = "command"`, at most one of them.
    fn probe(&mut self, at: &str, value: &Value<'_>, fields: &Fields<'_, '_>) -> Option<Probe> {
        let tcp = optional(fields.get("tcp"), |value| {
            let at = join(at, "tcp");
            let tcp = self.boolean(&at, value)?;
            if !tcp {
                let message = "`tcp = false` is not a probe: write `tcp = true`, or use `http`";
                self.error(value.span(), &at, message);
                return None;
            }
            Some(Probe::Tcp)
        });
        let http = optional(fields.get("http"), |value| {
            let at = join(at, "http");
            let path = self.string(&at, value)?;
            if !path.starts_with('/') || path.contains(char::is_whitespace) {
                let message = format!("expected a path starting with `/`, found \"{path}\"");
                self.error(value.span(), &at, message);
                return None;
            }
            Some(Probe::Http { path })
        });
        let exec = optional(fields.get("exec"), |value| {
            let command = self.non_empty_string(&join(at, "exec"), value)?;
            Some(Probe::Exec { command })
        });
        let chosen: Vec<(&str, Probe)> = [("tcp", tcp?), ("http", http?), ("exec", exec?)]
            .into_iter()
            .filter_map(|(key, probe)| probe.map(|probe| (key, probe)))
            .collect();
        match chosen.as_slice() {
            [] => Some(Probe::Tcp),
            [(_, probe)] => Some(probe.clone()),
            [_, (second, _), ..] => {
                let span = fields.key_span(second).unwrap_or_else(|| value.span());
                let message = "`tcp`, `http` and `exec` cannot be combined: choose one probe";
                self.error(span, at, message);
                None
            }
        }
    }

    fn restart(&mut self, at: &str, value: &Value<'_>) -> Option<RestartPolicy> {
        let text = self.string(at, value)?;
        match text.as_str() {
            "always" => Some(RestartPolicy::Always),
            "on-failure" => Some(RestartPolicy::OnFailure),
            "never" => Some(RestartPolicy::Never),
            _ => {
                let hint = match suggest::closest(&text, RESTART_POLICIES.iter().copied()) {
                    Some(close) => format!("did you mean `{close}`?"),
                    None => format!("expected one of {}", list(RESTART_POLICIES)),
                };
                let message = format!("unknown restart policy \"{text}\"; {hint}");
                self.error(value.span(), at, message);
                None
            }
        }
    }

    /// `"replace"` needs a port zoo picks: a fixed one cannot be held by two instances.
    fn restart_strategy(
        &mut self,
        at: &str,
        value: &Value<'_>,
        port: Option<&Value<'_>>,
    ) -> Option<RestartStrategy> {
        let strategy = match self.string(at, value)?.as_str() {
            "stop-start" => RestartStrategy::StopStart,
            "replace" => RestartStrategy::Replace,
            other => {
                let message = format!(
                    "unknown restart strategy \"{other}\"; expected one of {}",
                    list(RESTART_STRATEGIES)
                );
                self.error(value.span(), at, message);
                return None;
            }
        };
        if strategy == RestartStrategy::Replace && port.is_some() {
            let message = "`restart_strategy = \"replace\"` starts the new instance on a fresh \
                           port, so the app may not have a fixed `port`; remove `port` or use \
                           \"stop-start\"";
            self.error(value.span(), at, message);
            return None;
        }
        Some(strategy)
    }

    fn routes(&mut self, value: &Value<'_>, apps: &[String]) -> Option<Vec<Route>> {
        let table = self.table("routes", value)?;
        let mut routes = Some(Vec::with_capacity(table.len()));
        for (key, value) in table {
            let path: &str = key.get_ref();
            let at = join("routes", path);
            let valid_key = self.route_key(key.span(), &at, path);
            let route = self.route(&at, path, value, apps);
            match (route, valid_key, routes.as_mut()) {
                (Some(route), true, Some(routes)) => routes.push(route),
                _ => routes = None,
            }
        }
        routes
    }

    fn route_key(&mut self, span: Range<usize>, at: &str, key: &str) -> bool {
        let message = if !key.starts_with('/') {
            "a route key is a path and must start with `/`"
        } else if key.find('*').is_some_and(|star| star + 1 != key.len()) {
            "`*` may only end a route key, as in \"/node*\""
        } else if key
            .contains(|c: char| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
        {
            "a route key is a path: it cannot contain whitespace, `?` or `#`"
        } else {
            return true;
        };
        self.error(span, at, message);
        false
    }

    fn route(&mut self, at: &str, key: &str, value: &Value<'_>, apps: &[String]) -> Option<Route> {
        let table = self.table(at, value)?;
        let fields = self.fields(at, table, ROUTE_KEYS);
        let actions: Vec<&str> = fields
            .entries
            .iter()
            .map(|(name, _, _)| *name)
            .filter(|name| ACTIONS.contains(name))
            .collect();
        let action = match actions.as_slice() {
            [] => {
                if !ACTIONS
                    .iter()
                    .any(|action| fields.suggested.contains(action))
                {
                    let message = format!("expected one of {}", list(ACTIONS));
                    self.error(value.span(), at, message);
                }
                return None;
            }
            [action] => *action,
            [first, second, ..] => {
                let span = fields.key_span(second).unwrap_or_else(|| value.span());
                let message = format!(
                    "`{first}` and `{second}` cannot be combined: a route has exactly one action"
                );
                self.error(span, at, message);
                return None;
            }
        };
        let mut misplaced = false;
        for (option, accepted_by, description) in ACTION_KEYS {
            if let Some(span) = fields.key_span(option)
                && !accepted_by.contains(&action)
            {
                let message = format!("`{option}` applies only to {description}, not `{action}`");
                self.error(span, at, message);
                misplaced = true;
            }
        }
        let strip_prefix = optional(fields.get("strip_prefix"), |value| {
            self.boolean(&join(at, "strip_prefix"), value)
        });
        let max_body = optional(fields.get("max_body"), |value| {
            let at = join(at, "max_body");
            let bytes = self.integer(&at, value)?;
            u64::try_from(bytes)
                .map_err(|_| self.error(value.span(), &at, "a size in bytes cannot be negative"))
                .ok()
        });
        let timeout = fields
            .get("timeout")
            .map_or(Some(DEFAULT_RESPONSE_TIMEOUT), |value| {
                self.positive_duration(&join(at, "timeout"), value)
            });
        let wait = fields
            .get("wait")
            .map_or(Some(DEFAULT_READY_WAIT), |value| {
                self.duration(&join(at, "wait"), value)
            });
        let action_value = fields.get(action)?;
        let action_at = join(at, action);
        let built = match action {
            "app" => self.app_action(&action_at, action_value, apps),
            "proxy" => self.proxy_action(at, action_value, &fields),
            "respond" => self.respond_action(at, action_value, &fields),
            "builtin" => self.builtin_action(&action_at, action_value),
            _ => self.redirect_action(at, action_value, &fields),
        };
        if misplaced {
            return None;
        }
        Some(Route {
            key: key.to_owned(),
            action: built?,
            strip_prefix: strip_prefix?.unwrap_or(false),
            max_body: max_body?,
            timeout: timeout?,
            wait: wait?,
        })
    }

    fn app_action(&mut self, at: &str, value: &Value<'_>, apps: &[String]) -> Option<Action> {
        let name = self.string(at, value)?;
        if apps.contains(&name) {
            return Some(Action::App { name });
        }
        let hint = if apps.is_empty() {
            format!("define it as [apps.{name}]")
        } else if let Some(close) = suggest::closest(&name, apps.iter().map(String::as_str)) {
            format!("did you mean `{close}`?")
        } else {
            let names: Vec<&str> = apps.iter().map(String::as_str).collect();
            format!("the apps are {}", list(&names))
        };
        self.error(value.span(), at, format!("no app named `{name}`; {hint}"));
        None
    }

    fn builtin_action(&mut self, at: &str, value: &Value<'_>) -> Option<Action> {
        match self.string(at, value)?.as_str() {
            "health" => Some(Action::Builtin(Builtin::Health)),
            "metrics" => Some(Action::Builtin(Builtin::Metrics)),
            other => {
                let message = format!(
                    "no built-in named `{other}`; expected one of {}",
                    list(BUILTINS)
                );
                self.error(value.span(), at, message);
                None
            }
        }
    }

    fn proxy_action(
        &mut self,
        at: &str,
        value: &Value<'_>,
        fields: &Fields<'_, '_>,
    ) -> Option<Action> {
        let proxy_at = join(at, "proxy");
        let url = self.string(&proxy_at, value)?;
        let target = url::parse(&url)
            .map_err(|message| self.error(value.span(), &proxy_at, message))
            .ok();
        let ca_file = optional(fields.get("ca_file"), |ca_value| {
            let ca_at = join(at, "ca_file");
            let file = self.non_empty_string(&ca_at, ca_value)?;
            if let Some(ProxyTarget {
                scheme: Scheme::Http,
                ..
            }) = &target
            {
                let span = fields
                    .key_span("ca_file")
                    .unwrap_or_else(|| ca_value.span());
                self.error(span, &ca_at, "`ca_file` needs an https:// proxy URL");
                return None;
            }
            Some(self.base.join(file))
        });
        Some(Action::Proxy {
            target: target?,
            ca_file: ca_file?,
        })
    }

    fn respond_action(
        &mut self,
        at: &str,
        value: &Value<'_>,
        fields: &Fields<'_, '_>,
    ) -> Option<Action> {
        let body = self.string(&join(at, "respond"), value);
        let status = optional(fields.get("status"), |value| {
            let at = join(at, "status");
            let code = self.integer(&at, value)?;
            let status = u16::try_from(code)
                .ok()
                .filter(|code| (100..=599).contains(code))
                .and_then(|code| StatusCode::from_u16(code).ok());
            if status.is_none() {
                let message = format!("expected an HTTP status from 100 to 599, found {code}");
                self.error(value.span(), &at, message);
            }
            status
        });
        let headers = optional(fields.get("headers"), |value| {
            self.headers(&join(at, "headers"), value)
        });
        Some(Action::Respond {
            status: status?.unwrap_or(StatusCode::OK),
            headers: headers?.unwrap_or_default(),
            body: body?,
        })
    }

    fn redirect_action(
        &mut self,
        at: &str,
        value: &Value<'_>,
        fields: &Fields<'_, '_>,
    ) -> Option<Action> {
        let location_at = join(at, "redirect");
        let location = self
            .non_empty_string(&location_at, value)
            .and_then(|location| {
                if HeaderValue::from_bytes(location.as_bytes()).is_err() {
                    let message = "a `Location` cannot contain control characters";
                    self.error(value.span(), &location_at, message);
                    return None;
                }
                Some(location)
            });
        let status = optional(fields.get("status"), |value| {
            let at = join(at, "status");
            let code = self.integer(&at, value)?;
            let status = u16::try_from(code)
                .ok()
                .filter(|code| REDIRECT_STATUSES.contains(code))
                .and_then(|code| StatusCode::from_u16(code).ok());
            if status.is_none() {
                let message =
                    format!("expected a redirect status (301, 302, 303, 307 or 308), found {code}");
                self.error(value.span(), &at, message);
            }
            status
        });
        Some(Action::Redirect {
            status: status?.unwrap_or(StatusCode::FOUND),
            location: location?,
        })
    }

    fn headers(&mut self, at: &str, value: &Value<'_>) -> Option<Vec<(HeaderName, HeaderValue)>> {
        let table = self.table(at, value)?;
        let mut headers = Some(Vec::with_capacity(table.len()));
        for (key, value) in table {
            let name: &str = key.get_ref();
            let header_at = join(at, name);
            let header_name = HeaderName::from_bytes(name.as_bytes()).ok();
            if header_name.is_none() {
                self.error(key.span(), at, format!("invalid header name \"{name}\""));
            }
            let header_value = self.string(&header_at, value).and_then(|text| {
                let header_value = HeaderValue::from_bytes(text.as_bytes()).ok();
                if header_value.is_none() {
                    let message = "invalid header value: control characters are not allowed";
                    self.error(value.span(), &header_at, message);
                }
                header_value
            });
            match (header_name, header_value, headers.as_mut()) {
                (Some(name), Some(value), Some(headers)) => headers.push((name, value)),
                _ => headers = None,
            }
        }
        headers
    }
}

/// The indices of one dependency cycle (`a -> b -> a`, first index repeated at the end), or
/// `None` when `graph` (name, names it depends on) has none. Unknown names are ignored.
fn find_cycle(graph: &[(&str, &[String])]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    fn visit(
        graph: &[(&str, &[String])],
        node: usize,
        marks: &mut [Mark],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        marks[node] = Mark::OnPath;
        path.push(node);
        for dependency in graph[node].1 {
            let Some(next) = graph.iter().position(|(name, _)| name == dependency) else {
                continue;
            };
            match marks[next] {
                Mark::OnPath => {
                    let start = path.iter().position(|&index| index == next).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next);
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(cycle) = visit(graph, next, marks, path) {
                        return Some(cycle);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks[node] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; graph.len()];
    (0..graph.len()).find_map(|node| {
        if marks[node] == Mark::New {
            visit(graph, node, &mut marks, &mut Vec::new())
        } else {
            None
        }
    })
}

fn default_ready() -> Ready {
    Ready {
        probe: Probe::Tcp,
        interval: DEFAULT_INTERVAL,
        timeout: DEFAULT_TIMEOUT,
        deadline: DEFAULT_DEADLINE,
    }
}

/// `Some(None)` when the key is absent, `None` when it is present but invalid.
fn optional<'t, 'i, T>(
    value: Option<&'t Value<'i>>,
    check: impl FnOnce(&'t Value<'i>) -> Option<T>,
) -> Option<Option<T>> {
    match value {
        None => Some(None),
        Some(value) => check(value).map(Some),
    }
}

/// The dotted path of `key` under `parent`, quoting keys that are not bare TOML keys.
fn join(parent: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

fn list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|name| format!("`{name}`")).collect();
    quoted.join(", ")
}

fn found(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

#[cfg(test)]
mod cycle_tests {
    use super::find_cycle;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn acyclic_graph_has_no_cycle() {
        let (a, b) = (names(&[]), names(&["a"]));
        let c = names(&["a", "b"]);
        assert_eq!(find_cycle(&[("a", &a), ("b", &b), ("c", &c)]), None);
    }

    #[test]
    fn cycle_is_reported_as_a_path_back_to_its_start() {
        let (a, b, c) = (names(&["b"]), names(&["c"]), names(&["a"]));
        assert_eq!(
            find_cycle(&[("a", &a), ("b", &b), ("c", &c)]),
            Some(vec![0, 1, 2, 0])
        );
        let (x, y) = (names(&[]), names(&["y"]));
        assert_eq!(find_cycle(&[("x", &x), ("y", &y)]), Some(vec![1, 1]));
    }
}
