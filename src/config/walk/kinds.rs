//! The walk of what kind of program an app is: `kind = "service" | "worker" | "task" |
//! "cron"` (or `port = false` for a worker, `schedule` for a cron job), and the keys that only
//! some kinds take ([`KIND_KEYS`]): a task or cron job has no port, probes or restart
//! strategy, but may have a `timeout`; a cron job has a `schedule` and no restart policy; a
//! worker has no port, so its probes can only be `exec`. The walk of most keys themselves is
//! in `apps.rs` and `probes.rs`; this decides which apply.

use std::ops::Range;
use std::time::Duration;

use toml::de::DeValue;

use super::read::{Fields, Value, Walker, join, list, optional};
use crate::config::{App, AppKind, Live, Probe, Ready, RestartPolicy, Schedule};

/// The zone a schedule is read in unless `timezone` says otherwise.
const DEFAULT_TIMEZONE: &str = "UTC";
/// Kinds that run until stopped, and the kinds with a restart policy.
const LONG_RUNNING: &[AppKind] = &[AppKind::Service, AppKind::Worker];
const RESTARTED: &[AppKind] = &[AppKind::Service, AppKind::Worker, AppKind::Task];

/// App keys that only some kinds accept: (key, kinds that accept it, how to say so).
const KIND_KEYS: &[(&str, &[AppKind], &str)] = &[
    (
        "ready",
        LONG_RUNNING,
        "services and workers (a task is done when it exits 0)",
    ),
    ("live", LONG_RUNNING, "services and workers"),
    ("restart_strategy", LONG_RUNNING, "services and workers"),
    ("protocol", &[AppKind::Service], "services"),
    (
        "timeout",
        &[AppKind::Task, AppKind::Cron],
        "tasks and cron jobs",
    ),
    ("schedule", &[AppKind::Cron], "cron jobs"),
    ("timezone", &[AppKind::Cron], "cron jobs"),
    ("overlap", &[AppKind::Cron], "cron jobs"),
    (
        "restart",
        RESTARTED,
        "services, workers and tasks (a cron job runs again at its next tick)",
    ),
    ("backoff", RESTARTED, "services, workers and tasks"),
    ("max_restarts", RESTARTED, "services, workers and tasks"),
    ("restart_window", RESTARTED, "services, workers and tasks"),
    ("watch", LONG_RUNNING, "services and workers"),
    ("watch_ignore", LONG_RUNNING, "services and workers"),
];

impl Walker<'_> {
    /// The app's kind: `kind` when given, else a worker for `port = false`, else a service;
    /// then every key the kind does not take is reported. `None` when `kind` is invalid.
    pub(super) fn app_kind(&mut self, at: &str, fields: &Fields<'_, '_>) -> Option<AppKind> {
        let no_port = fields
            .get("port")
            .is_some_and(|value| matches!(value.get_ref(), DeValue::Boolean(false)));
        let kind = match fields.get("kind") {
            Some(value) => self.keyword(&join(at, "kind"), value, AppKind::from_name, |other| {
                format!(
                    "unknown app kind \"{other}\"; expected one of {}",
                    list(AppKind::NAMES)
                )
            })?,
            None if fields.get("schedule").is_some() => AppKind::Cron,
            None if no_port => AppKind::Worker,
            None => AppKind::Service,
        };
        let what = article(kind);
        for (key, accepted_by, description) in KIND_KEYS {
            if let Some(span) = fields.key_span(key)
                && !accepted_by.contains(&kind)
            {
                let message = format!("`{key}` applies only to {description}, not to {what}");
                self.error(span, at, message);
            }
        }
        if let Some(value) = fields.get("port") {
            let port_at = join(at, "port");
            match (kind, no_port) {
                (AppKind::Service, true) => {
                    let message = "a service listens on its port: remove `port = false`, \
                                   or make it a worker (`kind = \"worker\"`)";
                    self.error(value.span(), &port_at, message);
                }
                (AppKind::Worker | AppKind::Task | AppKind::Cron, false) => {
                    let message = format!("{what} has no port: remove `port` (zoo sets no `PORT`)");
                    self.error(value.span(), &port_at, message);
                }
                _ => {}
            }
        }
        Some(kind)
    }

    /// `restart`, whose default and accepted values depend on the kind: a task is not
    /// restarted unless `on-failure` says so, and never `always` (that would be a worker).
    pub(super) fn kind_restart(
        &mut self,
        at: &str,
        kind: AppKind,
        fields: &Fields<'_, '_>,
    ) -> Option<RestartPolicy> {
        let default = match kind {
            // A cron job has no policy (`KIND_KEYS`): each run ends at its exit.
            AppKind::Task | AppKind::Cron => RestartPolicy::Never,
            AppKind::Service | AppKind::Worker => RestartPolicy::Always,
        };
        let Some(value) = fields.get("restart") else {
            return Some(default);
        };
        let at = join(at, "restart");
        let policy = self.restart(&at, value)?;
        if kind == AppKind::Task && policy == RestartPolicy::Always {
            let message = "a task runs to completion: `restart = \"always\"` would run it \
                           forever; use \"on-failure\" (retry until it succeeds), or make it \
                           a worker (`port = false`)";
            self.error(value.span(), &at, message);
            return None;
        }
        Some(policy)
    }

    /// `schedule` and `timezone` of a cron job, which must have them; `Some(None)` for the
    /// other kinds (`KIND_KEYS` reported a schedule given to one).
    pub(super) fn schedule(
        &mut self,
        at: &str,
        kind: AppKind,
        fields: &Fields<'_, '_>,
    ) -> Option<Option<Schedule>> {
        if kind != AppKind::Cron {
            return Some(None);
        }
        let Some(value) = fields.get("schedule") else {
            let span = fields.key_span("kind").unwrap_or(0..0);
            self.error(
                span,
                at,
                "a cron job needs a `schedule`, like \"*/15 * * * *\"",
            );
            return None;
        };
        let text = self.non_empty_string(&join(at, "schedule"), value)?;
        let timezone = match fields.get("timezone") {
            Some(zone) => (
                self.non_empty_string(&join(at, "timezone"), zone)?,
                zone.span(),
            ),
            None => (DEFAULT_TIMEZONE.to_owned(), value.span()),
        };
        match Schedule::parse(&text, &timezone.0) {
            Ok(schedule) => Some(Some(schedule)),
            Err(message) => {
                let (key, span) = if message.starts_with("unknown time zone") {
                    ("timezone", timezone.1)
                } else {
                    ("schedule", value.span())
                };
                self.error(span, &join(at, key), message);
                None
            }
        }
    }

    /// `depends_on` may not name a cron job: it is neither ready nor done, only scheduled.
    /// `spans` are each app's `depends_on` entries. Returns whether none does.
    pub(super) fn no_cron_dependency(&mut self, apps: &[App], spans: &[Vec<Range<usize>>]) -> bool {
        let mut none = true;
        for (app, spans) in apps.iter().zip(spans) {
            for (index, (dependency, span)) in app.depends_on.iter().zip(spans).enumerate() {
                if apps
                    .iter()
                    .any(|other| other.name == *dependency && other.kind == AppKind::Cron)
                {
                    let at = format!("apps.{}.depends_on[{index}]", app.name);
                    let message = format!(
                        "`{dependency}` is a cron job: it is never ready or done, only \
                         scheduled, so nothing can wait for it"
                    );
                    self.error(span.clone(), &at, message);
                    none = false;
                }
            }
        }
        none
    }

    /// `watch = ["src/**/*.py", "templates/"]`: globs, each checked to compile.
    pub(super) fn globs(&mut self, at: &str, value: &Value<'_>) -> Option<Vec<String>> {
        let DeValue::Array(items) = value.get_ref() else {
            self.mismatch(at, value, "an array of globs like \"src/**/*.py\"");
            return None;
        };
        let globs: Vec<Option<String>> = items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                let at = format!("{at}[{index}]");
                let glob = self.non_empty_string(&at, item)?;
                match globset::Glob::new(&glob) {
                    Ok(_) => Some(glob),
                    Err(error) => {
                        let message = format!("invalid glob \"{glob}\": {}", error.kind());
                        self.error(item.span(), &at, message);
                        None
                    }
                }
            })
            .collect();
        globs.into_iter().collect()
    }

    /// `timeout = "10m"` of a task or cron job: greater than zero.
    pub(super) fn task_timeout(
        &mut self,
        at: &str,
        fields: &Fields<'_, '_>,
    ) -> Option<Option<Duration>> {
        optional(fields.get("timeout"), |value| {
            self.positive_duration(&join(at, "timeout"), value)
        })
    }

    /// A worker's `ready`: only `exec` can probe it, and without one it is ready once
    /// started. Services keep the probe they were given (TCP by default).
    pub(super) fn kind_ready(
        &mut self,
        at: &str,
        kind: AppKind,
        ready: Ready,
        value: Option<&Value<'_>>,
    ) -> Option<Ready> {
        if kind != AppKind::Worker {
            return Some(ready);
        }
        let probe = self.portless_probe(&join(at, "ready"), ready.probe, value)?;
        Some(Ready { probe, ..ready })
    }

    /// A worker's `live`: it must name an `exec` probe, the only one that needs no port.
    pub(super) fn kind_live(
        &mut self,
        at: &str,
        kind: AppKind,
        live: Live,
        value: &Value<'_>,
    ) -> Option<Live> {
        if kind != AppKind::Worker {
            return Some(live);
        }
        let at = join(at, "live");
        match self.portless_probe(&at, live.probe, Some(value))? {
            Probe::Started => {
                let message = "a worker has no port to probe: give `live` an `exec` command";
                self.error(value.span(), &at, message);
                None
            }
            probe => Some(Live { probe, ..live }),
        }
    }

    /// The probe of an app without a port: `exec` as given, [`Probe::Started`] when no
    /// probe was named; `tcp` and `http` are errors.
    fn portless_probe(
        &mut self,
        at: &str,
        probe: Probe,
        value: Option<&Value<'_>>,
    ) -> Option<Probe> {
        let table = value.and_then(|value| match value.get_ref() {
            DeValue::Table(table) => Some(table),
            _ => None,
        });
        for (key, item) in table.into_iter().flatten() {
            let key: &str = key.get_ref();
            if key == "tcp" || key == "http" {
                let message = format!(
                    "a worker has no port to probe with `{key}`: use `exec`, or leave the \
                     probe out (a worker is ready once started)"
                );
                self.error(item.span(), at, message);
                return None;
            }
        }
        Some(match probe {
            // TCP is what the walk of `ready` and `live` gives when no probe is named.
            Probe::Tcp => Probe::Started,
            other => other,
        })
    }
}

/// "a task", "a cron job": how messages name the kind.
pub(super) fn article(kind: AppKind) -> String {
    match kind {
        AppKind::Cron => "a cron job".to_owned(),
        AppKind::Service | AppKind::Worker | AppKind::Task => format!("a {}", kind.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::{self, App, AppKind, ConfigError, Probe, RestartPolicy};

    fn parse(source: &str) -> Result<Vec<App>, Vec<(usize, usize, String)>> {
        match config::parse(source, Path::new("zoo.toml"), &|_| None) {
            Ok(config) => Ok(config.apps),
            Err(ConfigError::Invalid { diagnostics, .. }) => Err(diagnostics
                .into_iter()
                .map(|d| (d.line, d.column, d.message))
                .collect()),
            Err(error) => panic!("{error}"),
        }
    }

    fn one(extra: &str) -> App {
        parse(&format!("[apps.job]\ncommand = \"x\"\n{extra}"))
            .expect("valid")
            .remove(0)
    }

    fn errors(extra: &str) -> Vec<String> {
        parse(&format!("[apps.job]\ncommand = \"x\"\n{extra}"))
            .expect_err("invalid")
            .into_iter()
            .map(|(_, _, message)| message)
            .collect()
    }

    #[test]
    fn kinds_default_by_port_and_their_restart_policy() {
        let service = one("");
        assert_eq!(
            (service.kind, service.restart),
            (AppKind::Service, RestartPolicy::Always)
        );
        assert!(service.listens());
        let worker = one("port = false");
        assert_eq!((worker.kind, worker.port), (AppKind::Worker, None));
        assert_eq!(worker.ready.probe, Probe::Started);
        assert!(!worker.listens());
        let task = one("kind = \"task\"\ntimeout = \"5s\"");
        assert_eq!(
            (task.kind, task.restart),
            (AppKind::Task, RestartPolicy::Never)
        );
        assert_eq!(task.timeout, Some(Duration::from_secs(5)));
        let retried = one("kind = \"task\"\nrestart = \"on-failure\"");
        assert_eq!(retried.restart, RestartPolicy::OnFailure);
    }

    #[test]
    fn a_worker_is_probed_by_exec_only() {
        let worker = one("port = false\nready = { exec = \"test -f up\", deadline = \"5s\" }");
        assert_eq!(
            worker.ready.probe,
            Probe::Exec {
                command: "test -f up".into()
            }
        );
        assert_eq!(worker.ready.deadline, Duration::from_secs(5));
        assert_eq!(
            errors("port = false\nready = { tcp = true }"),
            [
                "apps.job.ready: a worker has no port to probe with `tcp`: use `exec`, or leave \
              the probe out (a worker is ready once started)"
            ]
        );
        assert_eq!(
            errors("kind = \"worker\"\nlive = { interval = \"1s\" }"),
            ["apps.job.live: a worker has no port to probe: give `live` an `exec` command"]
        );
        assert_eq!(
            errors("port = false\nrestart_strategy = \"replace\""),
            [
                "apps.job.restart_strategy: `restart_strategy = \"replace\"` switches requests to a \
              new instance's port, and a worker has none: use \"stop-start\""
            ]
        );
    }

    #[test]
    fn keys_a_kind_does_not_take_are_errors() {
        assert_eq!(
            errors("kind = \"task\"\nport = 9000\nready = { deadline = \"1s\" }"),
            [
                "apps.job.port: a task has no port: remove `port` (zoo sets no `PORT`)",
                "apps.job: `ready` applies only to services and workers (a task is done when \
                 it exits 0), not to a task",
            ]
        );
        assert_eq!(
            errors("timeout = \"1s\""),
            ["apps.job: `timeout` applies only to tasks and cron jobs, not to a service"]
        );
        assert_eq!(
            errors("kind = \"task\"\nrestart = \"always\""),
            [
                "apps.job.restart: a task runs to completion: `restart = \"always\"` would run it \
              forever; use \"on-failure\" (retry until it succeeds), or make it a worker \
              (`port = false`)"
            ]
        );
        assert_eq!(
            errors("kind = \"service\"\nport = false"),
            [
                "apps.job.port: a service listens on its port: remove `port = false`, or make it \
              a worker (`kind = \"worker\"`)"
            ]
        );
        assert_eq!(
            errors("kind = \"daemon\""),
            [
                "apps.job.kind: unknown app kind \"daemon\"; expected one of `service`, `worker`, \
              `task`, `cron`"
            ]
        );
    }

    #[test]
    fn a_schedule_makes_a_cron_job() {
        let job = one("schedule = \"*/2 * * * * *\"\noverlap = true\ntimeout = \"1s\"");
        assert_eq!((job.kind, job.overlap), (AppKind::Cron, true));
        assert!(job.schedule.is_some() && !job.listens());
        let zoned = one("schedule = \"@daily\"\ntimezone = \"Europe/Paris\"");
        assert_eq!(
            zoned.schedule.map(|schedule| schedule.to_string()),
            Some("\"@daily\" (Europe/Paris)".to_owned())
        );
        assert_eq!(
            errors("kind = \"cron\""),
            ["apps.job: a cron job needs a `schedule`, like \"*/15 * * * *\""]
        );
        assert_eq!(
            errors("schedule = \"@hourly\"\nrestart = \"always\"\nport = 9000"),
            [
                "apps.job: `restart` applies only to services, workers and tasks (a cron job \
                 runs again at its next tick), not to a cron job",
                "apps.job.port: a cron job has no port: remove `port` (zoo sets no `PORT`)",
            ]
        );
        assert_eq!(
            errors("kind = \"task\"\nschedule = \"@hourly\""),
            ["apps.job: `schedule` applies only to cron jobs, not to a task"]
        );
        assert_eq!(
            parse("[apps.job]\ncommand = \"x\"\nschedule = \"0 0 31 2 *\"\n").expect_err("never"),
            [(
                3,
                12,
                "apps.job.schedule: schedule \"0 0 31 2 *\" never fires: no date matches it"
                    .to_owned()
            )]
        );
        assert_eq!(
            errors("schedule = \"@daily\"\ntimezone = \"Paris\""),
            [
                "apps.job.timezone: unknown time zone \"Paris\"; expected an IANA name like \
              \"Europe/Paris\" or \"UTC\""
            ]
        );
        let source = "[apps.report]\ncommand = \"x\"\nschedule = \"@hourly\"\n\n\
                      [apps.web]\ncommand = \"x\"\ndepends_on = [\"report\"]\n";
        assert_eq!(
            parse(source).expect_err("invalid"),
            [(
                7,
                15,
                "apps.web.depends_on[0]: `report` is a cron job: it is never ready or done, \
                 only scheduled, so nothing can wait for it"
                    .to_owned()
            )]
        );
    }

    #[test]
    fn a_route_to_an_app_without_a_port_is_an_error_at_its_value() {
        let source = "[apps.migrate]\ncommand = \"x\"\nkind = \"task\"\n\n\
                      [routes]\n\"/\" = { app = \"migrate\" }\n";
        assert_eq!(
            parse(source).expect_err("invalid"),
            [(
                6,
                15,
                "routes.\"/\".app: app `migrate` is a task: it has no port, so nothing can be \
                 routed to it"
                    .to_owned()
            )]
        );
    }
}
