//! The walk of `[routes]`: each route key (a path, `*` only at its end), its one action
//! (`app`, `proxy`, `respond`, `redirect`, `builtin` or `static`, the last in files.rs) and
//! the options that only some actions accept ([`ACTION_KEYS`]).

use std::collections::hash_map::{Entry, RandomState};
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};

use toml::de::DeTable;

use super::kinds::article;
use super::read::{Fields, Value, Walker, join, list, optional};
use crate::config::split::RoutesRegion;
use crate::config::{Access, Action, AppKind, Builtin, ProxyTarget, Route, Scheme, suggest, url};
use crate::route::{self, HostPattern};

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
    "static",
    "fallback",
    "cache",
    "dotfiles",
    "follow_symlinks",
    "compress",
    "allow",
    "deny",
    "basic_auth",
];
const ACTIONS: &[&str] = &["app", "proxy", "respond", "redirect", "builtin", "static"];
/// Route keys that only some actions accept: (key, actions that accept it, how to say so).
const ACTION_KEYS: &[(&str, &[&str], &str)] = &[
    (
        "strip_prefix",
        &["app", "proxy", "static"],
        "`app`, `proxy` and `static` routes",
    ),
    ("ca_file", &["proxy"], "`proxy` routes"),
    (
        "status",
        &["respond", "redirect"],
        "`respond` and `redirect` routes",
    ),
    ("max_body", &["app", "proxy"], "`app` and `proxy` routes"),
    ("timeout", &["app", "proxy"], "`app` and `proxy` routes"),
    ("wait", &["app"], "`app` routes"),
    ("fallback", &["static"], "`static` routes"),
    ("cache", &["static"], "`static` routes"),
    ("dotfiles", &["static"], "`static` routes"),
    ("follow_symlinks", &["static"], "`static` routes"),
];
/// Time from sending a request upstream to its response headers (DESIGN.md).
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a request for an app that is (re)starting waits for it (DESIGN.md).
const DEFAULT_READY_WAIT: Duration = Duration::from_secs(10);
/// Routes parsed into one tree at a time by [`Walker::batched_routes`]: enough that the
/// parser's fixed costs are spread, few enough that the tree stays small (~200 KB).
const BATCH: usize = 128;
const REDIRECT_STATUSES: &[u16] = &[301, 302, 303, 307, 308];

impl Walker<'_> {
    /// `apps` are every app's name, `portless` those of the apps that cannot be routed to.
    pub(super) fn routes(
        &mut self,
        value: &Value<'_>,
        apps: &[String],
        portless: &[(&str, AppKind)],
    ) -> Option<Vec<Route>> {
        let table = self.table("routes", value)?;
        let mut routes = Some(Vec::with_capacity(table.len()));
        // Each route's host and path (borrowed from its key) -> the key first written for
        // them: one lookup per route keeps the walk linear (a scan of the routes before made
        // 300,000 routes take minutes).
        let mut seen: HashMap<(Option<HostPattern>, &str), &str> =
            HashMap::with_capacity(table.len());
        for (key, value) in table {
            let written: &str = key.get_ref();
            let at = join("routes", written);
            let split = self.route_key(key.span(), &at, written);
            if let Some((host, path)) = &split {
                match seen.entry((host.clone(), path)) {
                    Entry::Occupied(first) => {
                        let message = format!(
                            "the same route as `{}`: hosts match case-insensitively, without \
                             a trailing dot, international names in their ASCII form",
                            first.get()
                        );
                        self.error(key.span(), &at, message);
                        routes = None;
                    }
                    Entry::Vacant(vacant) => {
                        vacant.insert(written);
                    }
                }
            }
            let route = self.route(&at, written, split, value, apps, portless);
            push(&mut routes, route);
        }
        routes
    }

    /// The routes of a plain `[routes]` table ([`RoutesRegion`]), parsed [`BATCH`] entries
    /// at a time, each batch's tree dropped once walked. Sets [`Walker::unbatchable`] (and
    /// gives up) when a batch is not valid TOML alone or a route's host and path come again
    /// (in the whole tree that is a duplicate key, or two spellings of one host, which
    /// [`Self::routes`] words).
    pub(super) fn batched_routes(
        &mut self,
        source: &str,
        region: &RoutesRegion,
        apps: &[String],
        portless: &[(&str, AppKind)],
    ) -> Option<Vec<Route>> {
        let mut routes = Some(Vec::with_capacity(region.entries.len()));
        // Hashes only (8 bytes a route, not a copy of every key): a repeat, or the rare
        // collision, sends the document to the whole-tree walk, which tells them apart.
        let mut seen: HashSet<u64> = HashSet::with_capacity(region.entries.len());
        let hasher = RandomState::new();
        for first in (0..region.entries.len()).step_by(BATCH) {
            let span = region.span_of(first..(first + BATCH).min(region.entries.len()));
            let (table, syntax_errors) = DeTable::parse_recoverable(&source[span.clone()]);
            if !syntax_errors.is_empty() {
                self.unbatchable = true;
                return None;
            }
            let found = self.problems.len();
            for (key, value) in table.get_ref() {
                let written: &str = key.get_ref();
                let at = join("routes", written);
                let split = self.route_key(key.span(), &at, written);
                if let Some(split) = &split
                    && !seen.insert(hasher.hash_one(split))
                {
                    self.unbatchable = true;
                    return None;
                }
                let route = self.route(&at, written, split, value, apps, portless);
                push(&mut routes, route);
            }
            for problem in &mut self.problems[found..] {
                problem.span = problem.span.start + span.start..problem.span.end + span.start;
            }
        }
        routes
    }

    /// Checks a route key and splits it into its host (if any) and path.
    fn route_key<'k>(
        &mut self,
        span: Range<usize>,
        at: &str,
        key: &'k str,
    ) -> Option<(Option<HostPattern>, &'k str)> {
        let (host, path) = match route::split_key(key) {
            Ok(split) => split,
            Err(error) => {
                self.error(span, at, error.to_string());
                return None;
            }
        };
        let message = if path.find('*').is_some_and(|star| star + 1 != path.len()) {
            "`*` may only end a route key, as in \"/node*\""
        } else if path
            .contains(|c: char| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
        {
            "a route key is a path: it cannot contain whitespace, `?` or `#`"
        } else {
            return Some((host, path));
        };
        self.error(span, at, message);
        None
    }

    /// The route under `key`, `split` into host and path by [`Self::route_key`] (`None` when
    /// the key is bad: the value is still checked, so that all its problems are reported).
    fn route(
        &mut self,
        at: &str,
        key: &str,
        split: Option<(Option<HostPattern>, &str)>,
        value: &Value<'_>,
        apps: &[String],
        portless: &[(&str, AppKind)],
    ) -> Option<Route> {
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
        let compress = optional(fields.get("compress"), |value| {
            self.compress(&join(at, "compress"), value)
        });
        let allow = optional(fields.get("allow"), |value| {
            self.networks(&join(at, "allow"), value)
        });
        let deny = optional(fields.get("deny"), |value| {
            self.networks(&join(at, "deny"), value)
        });
        let headers = optional(fields.get("headers"), |value| {
            self.route_headers(&join(at, "headers"), value, action == "respond")
        });
        let headers = headers.map(|headers| headers.unwrap_or_default());
        let request_rules = headers
            .as_ref()
            .is_some_and(|headers| !headers.rules.request.is_empty());
        if request_rules && !matches!(action, "app" | "proxy") {
            let span = fields.key_span("headers").unwrap_or_else(|| value.span());
            let message = format!(
                "`headers.request` applies only to `app` and `proxy` routes, which send the \
                 request on; a `{action}` route answers it itself"
            );
            self.error(span, at, message);
            misplaced = true;
        }
        let basic_auth = optional(fields.get("basic_auth"), |value| {
            self.basic_auth(&join(at, "basic_auth"), value)
        });
        let action_value = fields.get(action)?;
        let action_at = join(at, action);
        let built = match action {
            "app" => self.app_action(&action_at, action_value, apps, portless),
            "proxy" => self.proxy_action(at, action_value, &fields),
            "respond" => self.respond_action(
                at,
                action_value,
                &fields,
                headers.as_ref().map(|headers| headers.respond.clone()),
            ),
            "builtin" => self.builtin_action(&action_at, action_value),
            "static" => self.static_action(at, action_value, &fields),
            _ => self.redirect_action(at, action_value, &fields),
        };
        if misplaced {
            return None;
        }
        let (host, _) = split?;
        let headers = headers?;
        Some(Route {
            key: key.to_owned(),
            host: host.map(Box::new),
            action: built?,
            // A `static` route names files below its key unless told otherwise (nginx's `alias`).
            strip_prefix: strip_prefix?.unwrap_or(action == "static"),
            max_body: max_body?,
            timeout: timeout?,
            wait: wait?,
            compress: compress?,
            access: match (allow?, deny?) {
                (None, None) => None,
                (allow, deny) => Some(Box::new(Access {
                    allow: allow.unwrap_or_default(),
                    deny: deny.unwrap_or_default(),
                })),
            },
            headers: (!headers.rules.is_empty()).then(|| Box::new(headers.rules)),
            basic_auth: basic_auth?.map(Box::new),
        })
    }

    fn app_action(
        &mut self,
        at: &str,
        value: &Value<'_>,
        apps: &[String],
        portless: &[(&str, AppKind)],
    ) -> Option<Action> {
        let name = self.string(at, value)?;
        if let Some((_, kind)) = portless.iter().find(|(app, _)| *app == name) {
            let message = format!(
                "app `{name}` is {}: it has no port, so nothing can be routed to it",
                article(*kind)
            );
            self.error(value.span(), at, message);
            return None;
        }
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
        let builtin = self.keyword(at, value, Builtin::from_name, |other| {
            format!(
                "no built-in named `{other}`; expected one of {}",
                list(Builtin::NAMES)
            )
        })?;
        Some(Action::Builtin(builtin))
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
        let target = target?;
        let target = match self.proxy_targets.get(&target) {
            Some(shared) => Arc::clone(shared),
            None => {
                let target = Arc::new(target);
                self.proxy_targets.insert(Arc::clone(&target));
                target
            }
        };
        Some(Action::Proxy {
            target,
            ca_file: ca_file?,
        })
    }

    fn respond_action(
        &mut self,
        at: &str,
        value: &Value<'_>,
        fields: &Fields<'_, '_>,
        headers: Option<Vec<(HeaderName, HeaderValue)>>,
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
        Some(Action::Respond {
            status: status?.unwrap_or(StatusCode::OK),
            headers: headers?.into_boxed_slice(),
            body: body?.into_boxed_str(),
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
            location: location?.into_boxed_str(),
        })
    }
}

/// Adds a valid route to the routes read so far; an invalid one leaves none (the walk goes
/// on only to report every problem).
fn push(routes: &mut Option<Vec<Route>>, route: Option<Route>) {
    match (route, routes.as_mut()) {
        (Some(route), Some(routes)) => routes.push(route),
        _ => *routes = None,
    }
}
