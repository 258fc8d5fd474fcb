//! The walk of `[apps]`: each app's keys (command, port, env, user, restart policy and
//! strategy, backoff and restart budget, stop signal and grace, protocol; `replicas.rs` the
//! instance count, port lists and balance), and the checks that
//! span apps: unique ports, `depends_on` naming known apps, and no dependency cycle.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use toml::de::DeValue;

use super::probes::default_ready;
use super::read::{Fields, Value, Walker, join, list, optional};
use crate::config::{
    App, AppKind, Command, Protocol, RestartPolicy, RestartStrategy, Restarts, Stop, suggest,
};

const APP_KEYS: &[&str] = &[
    "command",
    "kind",
    "port",
    "timeout",
    "schedule",
    "timezone",
    "overlap",
    "watch",
    "watch_ignore",
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
    "replicas",
    "balance",
    "start",
    "idle_stop",
    "socket",
];
const BACKOFF_KEYS: &[&str] = &["first", "max", "reset_after"];
/// Signals an app may ask to be stopped with (`stop_signal`), without the `SIG` prefix.
const STOP_SIGNALS: &[&str] = &[
    "TERM", "INT", "QUIT", "HUP", "KILL", "USR1", "USR2", "WINCH",
];

impl Walker<'_> {
    /// Returns the apps (if all are valid) and every name under `[apps]`, valid or not, so that
    /// routes to a broken app are not also reported as routes to a missing one.
    pub(super) fn apps(
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
        if let Some(valid) = &apps
            && !self.no_cron_dependency(valid, &dependency_spans)
        {
            apps = None;
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
        let kind = self.app_kind(&at, &fields);
        let kind_or_service = kind.unwrap_or(AppKind::Service);
        // Other kinds have no port, and `port = false` says so: `app_kind` reported a port
        // given to one, and `port = false` given to a service.
        let port_value = fields.get("port").filter(|value| {
            kind_or_service == AppKind::Service
                && !matches!(value.get_ref(), DeValue::Boolean(false))
        });
        let replicas = self.replicas(&at, kind_or_service, &fields);
        let balance = self.balance(&at, &fields);
        let start = self.start_mode(&at, kind_or_service, &fields);
        let socket = self.socket(&at, kind_or_service, &fields);
        let ports = optional(port_value, |value| {
            self.app_ports(&at, value, replicas, listen, taken, name)
        });
        let dir = optional(fields.get("dir"), |value| {
            let dir = self.non_empty_string(&join(&at, "dir"), value)?;
            Some(self.base.join(dir))
        });
        let env = optional(fields.get("env"), |value| {
            self.env(&join(&at, "env"), value)
        });
        let ready = fields
            .get("ready")
            .map_or(Some(default_ready()), |value| {
                self.ready(&join(&at, "ready"), value)
            })
            .and_then(|ready| self.kind_ready(&at, kind_or_service, ready, fields.get("ready")));
        let restart = self.kind_restart(&at, kind_or_service, &fields);
        let timeout = self.task_timeout(&at, &fields);
        let schedule = self.schedule(&at, kind_or_service, &fields);
        let watch = optional(fields.get("watch"), |value| {
            self.globs(&join(&at, "watch"), value)
        });
        let watch_ignore = optional(fields.get("watch_ignore"), |value| {
            self.globs(&join(&at, "watch_ignore"), value)
        });
        let overlap = optional(fields.get("overlap"), |value| {
            self.boolean(&join(&at, "overlap"), value)
        });
        let restart_strategy =
            fields
                .get("restart_strategy")
                .map_or(Some(RestartStrategy::StopStart), |value| {
                    self.restart_strategy(
                        &join(&at, "restart_strategy"),
                        value,
                        port_value,
                        kind_or_service,
                    )
                });
        let env_file = optional(fields.get("env_file"), |value| {
            let file = self.non_empty_string(&join(&at, "env_file"), value)?;
            Some(self.base.join(file))
        });
        let user = optional(fields.get("user"), |value| {
            self.non_empty_string(&join(&at, "user"), value)
        });
        let live = optional(fields.get("live"), |value| {
            let live = self.live(&join(&at, "live"), value)?;
            self.kind_live(&at, kind_or_service, live, value)
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
            kind: kind?,
            port: ports.as_ref()?.as_ref().map(|ports| ports[0]),
            replica_ports: ports?.map(|ports| ports[1..].to_vec()).unwrap_or_default(),
            replicas: replicas?,
            balance: balance?,
            socket: socket?,
            start: start?.0,
            idle_stop: start?.1,
            timeout: timeout?,
            schedule: schedule?,
            overlap: overlap?.unwrap_or(false),
            watch: watch?.unwrap_or_default(),
            watch_ignore: watch_ignore?.unwrap_or_default(),
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

    fn protocol(&mut self, at: &str, value: &Value<'_>) -> Option<Protocol> {
        self.keyword(at, value, Protocol::from_name, |other| {
            format!(
                "unknown protocol \"{other}\"; expected one of {}",
                list(Protocol::NAMES)
            )
        })
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

    pub(super) fn restart(&mut self, at: &str, value: &Value<'_>) -> Option<RestartPolicy> {
        self.keyword(at, value, RestartPolicy::from_name, |text| {
            let names = RestartPolicy::NAMES;
            let hint = match suggest::closest(text, names.iter().copied()) {
                Some(close) => format!("did you mean `{close}`?"),
                None => format!("expected one of {}", list(names)),
            };
            format!("unknown restart policy \"{text}\"; {hint}")
        })
    }

    /// `"replace"` needs a port zoo picks: a fixed one cannot be held by two instances, and
    /// a worker has none to switch to.
    fn restart_strategy(
        &mut self,
        at: &str,
        value: &Value<'_>,
        port: Option<&Value<'_>>,
        kind: AppKind,
    ) -> Option<RestartStrategy> {
        let strategy = self.keyword(at, value, RestartStrategy::from_name, |other| {
            format!(
                "unknown restart strategy \"{other}\"; expected one of {}",
                list(RestartStrategy::NAMES)
            )
        })?;
        if strategy == RestartStrategy::Replace && port.is_some() {
            let message = "`restart_strategy = \"replace\"` starts the new instance on a fresh \
                           port, so the app may not have a fixed `port`; remove `port` or use \
                           \"stop-start\"";
            self.error(value.span(), at, message);
            return None;
        }
        if strategy == RestartStrategy::Replace && kind == AppKind::Worker {
            let message = "`restart_strategy = \"replace\"` switches requests to a new \
                           instance's port, and a worker has none: use \"stop-start\"";
            self.error(value.span(), at, message);
            return None;
        }
        Some(strategy)
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
