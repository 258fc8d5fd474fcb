//! Prometheus metrics, served as text at `/metrics` (admin endpoints, or a route naming the
//! `metrics` built-in). Label values come from the config (route keys, app names) and from
//! fixed classes (method, status), never from the request path, so cardinality is bounded by
//! the config.
//!
//! The request path pays one `OnceLock` read and a few atomic adds per request: each route's
//! counters are looked up in their family once, on first use, and cached in [`RouteMetrics`].

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{Method, StatusCode};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::supervise::SupervisorHandle;

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(clippy::upper_case_acronyms)] // the variant names are the exported label values
enum MethodClass {
    GET,
    HEAD,
    POST,
    PUT,
    DELETE,
    OTHER,
}

const METHOD_CLASS_COUNT: usize = MethodClass::OTHER as usize + 1;

impl MethodClass {
    fn of(method: &Method) -> Self {
        match *method {
            Method::GET => Self::GET,
            Method::HEAD => Self::HEAD,
            Method::POST => Self::POST,
            Method::PUT => Self::PUT,
            Method::DELETE => Self::DELETE,
            _ => Self::OTHER,
        }
    }
}

/// `1xx` .. `5xx`; anything else HTTP allows (up to 999) counts as `5xx`.
fn status_class(status: StatusCode) -> usize {
    usize::from(status.as_u16() / 100).clamp(1, 5) - 1
}

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Arc<str>,
    method: MethodClass,
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Arc<str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RetryLabels {
    upstream: Arc<str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: Arc<str>,
    kind: &'static str,
}

type DurationFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 1 ms .. ~32 s, doubling.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Every metric zoo exports, registered once at start.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Shared with every route's [`RouteMetrics`].
    routes: Arc<RouteFamilies>,
    upstream_errors: Family<UpstreamLabels, Counter>,
    upstream_retries: Family<RetryLabels, Counter>,
    /// Requests being handled now (from head received to response head sent).
    pub in_flight: Gauge,
    /// Upgraded connections (WebSocket and other tunnels) open now.
    pub open_tunnels: Gauge,
    /// Access log lines dropped because the writer fell behind.
    pub access_log_dropped: Counter,
    /// Where the app metrics are read from, once the supervisor runs.
    apps: Arc<OnceLock<SupervisorHandle>>,
}

impl Metrics {
    #[must_use]
    pub fn new() -> Arc<Self> {
        // No registry prefix: the `process_*` names are the standard ones every dashboard knows.
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "zoo_requests",
            "Requests answered, by route, method class and status class",
            requests.clone(),
        );
        let durations: DurationFamily = Family::new_with_constructor(duration_histogram);
        registry.register(
            "zoo_request_duration_seconds",
            "Time from request head to response head, by route",
            durations.clone(),
        );
        let upstream_errors = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "zoo_upstream_errors",
            "Failed upstream exchanges, by upstream and kind (connect, timeout, not_ready)",
            upstream_errors.clone(),
        );
        let upstream_retries = Family::<RetryLabels, Counter>::default();
        registry.register(
            "zoo_upstream_retries",
            "Requests sent again to an upstream whose connection failed (never one with a body)",
            upstream_retries.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "zoo_requests_in_flight",
            "Requests being handled",
            in_flight.clone(),
        );
        let open_tunnels = Gauge::default();
        registry.register(
            "zoo_open_tunnels",
            "Upgraded connections open",
            open_tunnels.clone(),
        );
        let access_log_dropped = Counter::default();
        registry.register(
            "zoo_access_log_dropped",
            "Access log lines dropped because the writer fell behind",
            access_log_dropped.clone(),
        );
        let apps = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(collect::Apps(Arc::clone(&apps))));
        registry.register_collector(Box::new(collect::Process));
        Arc::new(Self {
            registry,
            routes: Arc::new(RouteFamilies {
                requests,
                durations,
            }),
            upstream_errors,
            upstream_retries,
            in_flight,
            open_tunnels,
            access_log_dropped,
            apps,
        })
    }

    /// Exports the supervised apps' state from now on.
    pub fn watch_apps(&self, controller: SupervisorHandle) {
        let _ = self.apps.set(controller);
    }

    /// The handles one route records into; built with the runtime table.
    #[must_use]
    pub fn route(&self, route: impl Into<Arc<str>>) -> RouteMetrics {
        RouteMetrics {
            route: route.into(),
            families: Arc::clone(&self.routes),
            recorders: OnceLock::new(),
        }
    }

    /// Counts one failed exchange with `upstream` (an app name or a target authority).
    pub fn upstream_error(&self, upstream: &str, kind: &'static str) {
        self.upstream_errors
            .get_or_create(&UpstreamLabels {
                upstream: Arc::from(upstream),
                kind,
            })
            .inc();
    }

    /// Counts one request sent again to `upstream`.
    pub fn upstream_retry(&self, upstream: &str) {
        self.upstream_retries
            .get_or_create(&RetryLabels {
                upstream: Arc::from(upstream),
            })
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            let _ = writeln!(out, "# encoding failed");
        }
        out
    }
}

/// The families every route's series are in.
#[derive(Debug)]
struct RouteFamilies {
    requests: Family<RequestLabels, Counter>,
    durations: DurationFamily,
}

/// One route's request counters and duration histogram.
#[derive(Debug)]
pub struct RouteMetrics {
    route: Arc<str>,
    /// One pointer to the families rather than a clone of each in every route: 300,000
    /// routes carried 9 MB of them.
    families: Arc<RouteFamilies>,
    /// Made at the route's first request: the ~1.25 KB of counter slots and histogram
    /// buckets that every route held from the start cost a table of 300,000 routes ~375 MB
    /// (issue 13). A route that served nothing exports no series, as counters did already.
    recorders: OnceLock<Box<RouteRecorders>>,
}

#[derive(Debug)]
struct RouteRecorders {
    /// Indexed by method class x status class; filled on first use so that only series that
    /// happened are exported.
    counters: [OnceLock<Counter>; METHOD_CLASS_COUNT * STATUS_CLASSES.len()],
    duration: Histogram,
}

impl RouteMetrics {
    /// The route key the series are labelled with.
    #[must_use]
    pub fn route_key(&self) -> &Arc<str> {
        &self.route
    }

    pub fn observe(&self, method: &Method, status: StatusCode, elapsed: Duration) {
        let method = MethodClass::of(method);
        let class = status_class(status);
        let index = method as usize * STATUS_CLASSES.len() + class;
        let recorders = self.recorders.get_or_init(|| {
            Box::new(RouteRecorders {
                counters: std::array::from_fn(|_| OnceLock::new()),
                // Shared with the runtimes before and after a reload: the series goes on.
                duration: self
                    .families
                    .durations
                    .get_or_create(&RouteLabels {
                        route: Arc::clone(&self.route),
                    })
                    .clone(),
            })
        });
        recorders.counters[index]
            .get_or_init(|| {
                self.families
                    .requests
                    .get_or_create(&RequestLabels {
                        route: Arc::clone(&self.route),
                        method,
                        status: STATUS_CLASSES[class],
                    })
                    .clone()
            })
            .inc();
        recorders.duration.observe(elapsed.as_secs_f64());
    }
}

/// Metrics read at scrape time rather than counted on the way.
mod collect {
    use std::sync::{Arc, OnceLock};

    use prometheus_client::collector::Collector;
    use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
    use prometheus_client::metrics::MetricType;
    use prometheus_client::metrics::counter::ConstCounter;
    use prometheus_client::metrics::gauge::ConstGauge;

    use std::time::SystemTime;

    use crate::config::AppKind;
    use crate::supervise::{AppStatus, SupervisorHandle};

    /// One per-app gauge: its value for an app, if it has one.
    type AppGauge = fn(&AppStatus) -> Option<i64>;
    /// One per-app counter.
    type AppCounter = fn(&AppStatus) -> u64;

    /// Each app's state, read from the supervisor at scrape time; empty until the supervisor
    /// has started.
    #[derive(Debug, Default)]
    pub struct Apps(pub Arc<OnceLock<SupervisorHandle>>);

    impl Collector for Apps {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            let Some(controller) = self.0.get() else {
                return Ok(());
            };
            let apps = controller.status();
            let gauges: [(&str, &str, AppGauge); 4] = [
                (
                    "zoo_app_up",
                    "1 while an instance of the app is running",
                    |app| Some(i64::from(app.pid.is_some())),
                ),
                (
                    "zoo_app_ready",
                    "1 when the app passed its readiness check and has not exited since",
                    |app| Some(i64::from(app.ready)),
                ),
                (
                    "zoo_app_in_flight",
                    "Requests and tunnels in flight to the app (to the instance)",
                    |app| i64::try_from(app.in_flight).ok(),
                ),
                (
                    "zoo_app_last_exit_code",
                    "How the app's last instance ended: its exit code, or 128+N for signal N",
                    |app| app.last_exit.map(|exit| i64::from(exit.as_code())),
                ),
            ];
            // An app with `replicas` has one series per instance, labelled by its index (never
            // its pid, which changes at each restart: the label set stays bounded).
            let indices: Vec<String> = apps
                .iter()
                .map(|app| {
                    app.instance
                        .map(|index| index.to_string())
                        .unwrap_or_default()
                })
                .collect();
            let labels = |at: usize| -> Vec<(&str, &str)> {
                let app = &apps[at];
                let mut labels = vec![("app", app.app.as_str())];
                if app.instance.is_some() {
                    labels.push(("instance", indices[at].as_str()));
                }
                labels
            };
            for (name, help, value) in gauges {
                let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
                for (at, app) in apps.iter().enumerate() {
                    if let Some(value) = value(app) {
                        ConstGauge::new(value).encode(family.encode_family(&labels(at))?)?;
                    }
                }
            }
            let counters: [(&str, &str, AppCounter); 2] = [
                (
                    "zoo_app_restarts",
                    "Automatic restarts of the app (of the instance) since zoo started",
                    |app| u64::from(app.restarts),
                ),
                (
                    "zoo_app_requests",
                    "Requests sent to the app (to the instance) since zoo started",
                    |app| app.requests,
                ),
            ];
            for (name, help, value) in counters {
                let mut family =
                    encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
                for (at, app) in apps.iter().enumerate() {
                    ConstCounter::new(value(app)).encode(family.encode_family(&labels(at))?)?;
                }
            }
            encode_jobs(&mut encoder, &apps)
        }
    }

    /// One per-job counter: its value for a task or cron job, if it has one.
    type JobCounter = fn(&AppStatus) -> Option<u64>;
    /// One per-job gauge, in seconds.
    type JobGauge = fn(&AppStatus) -> Option<f64>;

    /// The runs of tasks and cron jobs: how many, how many failed or were skipped, when one
    /// last succeeded and how long the last one took.
    fn encode_jobs(
        encoder: &mut DescriptorEncoder,
        apps: &[AppStatus],
    ) -> Result<(), std::fmt::Error> {
        let jobs: Vec<&AppStatus> = apps
            .iter()
            .filter(|app| matches!(app.kind, AppKind::Task | AppKind::Cron))
            .collect();
        let counters: [(&str, &str, JobCounter); 3] = [
            (
                "zoo_job_runs",
                "Runs of the task or cron job that ended, since zoo started",
                |app| Some(app.runs),
            ),
            (
                "zoo_job_failures",
                "Runs that failed: a non-zero exit, a signal or a timeout",
                |app| Some(app.failures),
            ),
            (
                "zoo_job_skipped",
                "Ticks of the cron job skipped because its previous run was still going",
                |app| (app.kind == AppKind::Cron).then_some(app.skipped),
            ),
        ];
        for (name, help, value) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for app in &jobs {
                if let Some(value) = value(app) {
                    ConstCounter::new(value)
                        .encode(family.encode_family(&[("app", app.name.as_str())])?)?;
                }
            }
        }
        let gauges: [(&str, &str, JobGauge); 2] = [
            (
                "zoo_job_last_success_timestamp_seconds",
                "When a run of the task or cron job last succeeded, in seconds since the epoch",
                |app| {
                    let since = app
                        .last_success?
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .ok()?;
                    Some(since.as_secs_f64())
                },
            ),
            (
                "zoo_job_last_duration_seconds",
                "How long the last run of the task or cron job took",
                |app| app.last_run.map(|took| took.as_secs_f64()),
            ),
        ];
        for (name, help, value) in gauges {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for app in &jobs {
                if let Some(value) = value(app) {
                    ConstGauge::new(value)
                        .encode(family.encode_family(&[("app", app.name.as_str())])?)?;
                }
            }
        }
        Ok(())
    }

    /// zoo's own process, the standard `process_*` names.
    #[derive(Debug)]
    pub struct Process;

    impl Collector for Process {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            let Some(sample) = super::process::sample() else {
                return Ok(());
            };
            let metric = encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time of zoo itself",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            ConstCounter::new(sample.cpu_seconds).encode(metric)?;
            for (name, help, value) in [
                (
                    "process_resident_memory_bytes",
                    "Resident memory of zoo itself",
                    sample.resident_bytes,
                ),
                (
                    "process_open_fds",
                    "Open file descriptors of zoo itself",
                    sample.open_fds,
                ),
                (
                    "process_start_time_seconds",
                    "Start of zoo since the Unix epoch",
                    sample.start_time_seconds,
                ),
            ] {
                let metric = encoder.encode_descriptor(
                    name,
                    help,
                    None,
                    prometheus_client::metrics::MetricType::Gauge,
                )?;
                ConstGauge::new(value).encode(metric)?;
            }
            Ok(())
        }
    }
}

/// Reads zoo's own figures from /proc.
mod process {
    pub struct Sample {
        pub cpu_seconds: f64,
        pub resident_bytes: i64,
        pub open_fds: i64,
        pub start_time_seconds: i64,
    }

    pub fn sample() -> Option<Sample> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name, which is in parentheses and may contain spaces.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let field = |number: usize| fields.get(number - 3)?.parse::<u64>().ok();
        let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok()??;
        let ticks = u64::try_from(ticks).ok()?;
        #[allow(clippy::cast_precision_loss)]
        let cpu_seconds = (field(14)? + field(15)?) as f64 / ticks as f64;
        let resident_bytes =
            i64::try_from(field(24)?.checked_mul(u64::try_from(page).ok()?)?).ok()?;
        let open_fds = i64::try_from(std::fs::read_dir("/proc/self/fd").ok()?.count()).ok()?;
        let boot_time = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|line| line.strip_prefix("btime ")?.trim().parse::<u64>().ok())?;
        let start_time_seconds = i64::try_from(boot_time + field(22)? / ticks).ok()?;
        Some(Sample {
            cpu_seconds,
            resident_bytes,
            open_fds,
            start_time_seconds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_requests_are_counted_by_class_with_bounded_labels() {
        let metrics = Metrics::new();
        let node = metrics.route("/node");
        node.observe(&Method::GET, StatusCode::OK, Duration::from_millis(3));
        node.observe(
            &Method::GET,
            StatusCode::NO_CONTENT,
            Duration::from_millis(3),
        );
        node.observe(
            &Method::PATCH,
            StatusCode::BAD_GATEWAY,
            Duration::from_millis(3),
        );
        let text = metrics.render();
        assert!(
            text.contains("zoo_requests_total{route=\"/node\",method=\"GET\",status=\"2xx\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "zoo_requests_total{route=\"/node\",method=\"OTHER\",status=\"5xx\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("zoo_request_duration_seconds_count{route=\"/node\"} 3\n"),
            "{text}"
        );
        assert!(
            !text.contains("method=\"POST\""),
            "only series that happened: {text}"
        );
    }

    #[test]
    fn upstream_errors_and_process_figures_are_exported() {
        let metrics = Metrics::new();
        metrics.upstream_error("python", "connect");
        metrics.upstream_retry("python");
        let text = metrics.render();
        assert!(
            text.contains("zoo_upstream_retries_total{upstream=\"python\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("zoo_upstream_errors_total{upstream=\"python\",kind=\"connect\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
        assert!(text.contains("\nprocess_open_fds "), "{text}");
    }

    #[test]
    fn status_classes_cover_every_status() {
        assert_eq!(status_class(StatusCode::CONTINUE), 0);
        assert_eq!(status_class(StatusCode::OK), 1);
        assert_eq!(status_class(StatusCode::NOT_FOUND), 3);
        assert_eq!(status_class(StatusCode::from_u16(599).unwrap()), 4);
        assert_eq!(status_class(StatusCode::from_u16(999).unwrap()), 4);
    }
}
