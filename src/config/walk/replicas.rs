//! The keys that say how many processes of an app run, and when: `replicas` (how many
//! instances, each with its own `PORT` and `ZOO_REPLICA`), `port` as a list of one fixed port
//! per instance, `balance` (how its routes choose among the ready ones), and `start` with
//! `idle_stop` (started by the first request, stopped when idle).

use std::net::SocketAddr;
use std::time::Duration;

use toml::de::DeValue;

use super::read::{Fields, Value, Walker, join, list};
use crate::config::{AppKind, Balance, StartMode};

/// `idle_stop` of an on-demand app that does not set one.
const DEFAULT_IDLE_STOP: Duration = Duration::from_secs(15 * 60);

/// The most instances one app may have: each is a process and a pool, and the balancer scans
/// them all per request (a handful is the use; 64 is far past a container's cores).
pub const MAX_REPLICAS: usize = 64;

impl Walker<'_> {
    /// `replicas = N` (1 unless given): 1..=[`MAX_REPLICAS`], and only for services and
    /// workers (a task or cron job runs once per trigger).
    pub(super) fn replicas(
        &mut self,
        at: &str,
        kind: AppKind,
        fields: &Fields<'_, '_>,
    ) -> Option<usize> {
        let Some(value) = fields.get("replicas") else {
            return Some(1);
        };
        let at = join(at, "replicas");
        let number = self.integer(&at, value)?;
        let replicas = usize::try_from(number)
            .ok()
            .filter(|replicas| (1..=MAX_REPLICAS).contains(replicas));
        let Some(replicas) = replicas else {
            let message = format!("expected 1 to {MAX_REPLICAS} instances, found {number}");
            self.error(value.span(), &at, message);
            return None;
        };
        if replicas > 1 && matches!(kind, AppKind::Task | AppKind::Cron) {
            let message = format!(
                "a {} runs one process per trigger; `replicas` applies to services and workers",
                kind.as_str()
            );
            self.error(value.span(), &at, message);
            return None;
        }
        Some(replicas)
    }

    /// `balance = "least_requests" | "round_robin" | "client_ip"` (least_requests unless
    /// given).
    pub(super) fn balance(&mut self, at: &str, fields: &Fields<'_, '_>) -> Option<Balance> {
        let Some(value) = fields.get("balance") else {
            return Some(Balance::LeastRequests);
        };
        self.keyword(&join(at, "balance"), value, Balance::from_name, |other| {
            format!(
                "unknown balance \"{other}\"; expected one of {}",
                list(Balance::NAMES)
            )
        })
    }

    /// `start = "boot" | "on-demand"` (boot unless given; on-demand only for a service, the
    /// kind a request can reach) and its `idle_stop` (15 minutes unless given; only with
    /// on-demand).
    pub(super) fn start_mode(
        &mut self,
        at: &str,
        kind: AppKind,
        fields: &Fields<'_, '_>,
    ) -> Option<(StartMode, Option<Duration>)> {
        let start = match fields.get("start") {
            None => StartMode::Boot,
            Some(value) => {
                let start =
                    self.keyword(&join(at, "start"), value, StartMode::from_name, |other| {
                        format!(
                            "unknown start \"{other}\"; expected one of {}",
                            list(StartMode::NAMES)
                        )
                    })?;
                if start == StartMode::OnDemand && kind != AppKind::Service {
                    let message = format!(
                        "a {} is not reached by requests, so nothing would start it: \
                         `start = \"on-demand\"` is for services",
                        kind.as_str()
                    );
                    self.error(value.span(), &join(at, "start"), message);
                    return None;
                }
                start
            }
        };
        let idle_stop = match (fields.get("idle_stop"), start) {
            (None, StartMode::Boot) => None,
            (None, StartMode::OnDemand) => Some(DEFAULT_IDLE_STOP),
            (Some(value), StartMode::Boot) => {
                let message = "`idle_stop` stops an app started on demand: add \
                               `start = \"on-demand\"` or remove it";
                self.error(value.span(), &join(at, "idle_stop"), message);
                return None;
            }
            (Some(value), StartMode::OnDemand) => {
                Some(self.positive_duration(&join(at, "idle_stop"), value)?)
            }
        };
        Some((start, idle_stop))
    }

    /// `socket = true`: a service listening on a Unix socket, so with no `port` and no
    /// `restart_strategy = "replace"` (whose new instance needs a second address).
    pub(super) fn socket(
        &mut self,
        at: &str,
        kind: AppKind,
        fields: &Fields<'_, '_>,
    ) -> Option<bool> {
        let Some(value) = fields.get("socket") else {
            return Some(false);
        };
        let at = join(at, "socket");
        let socket = self.boolean(&at, value)?;
        let problem = if !socket {
            None
        } else if kind != AppKind::Service {
            Some(format!(
                "a {} has no listener to put on a socket",
                kind.as_str()
            ))
        } else if fields.get("port").is_some() {
            Some("an app on a Unix socket has no port: remove `port`".to_owned())
        } else if fields
            .get("restart_strategy")
            .and_then(|value| value.get_ref().as_str())
            == Some("replace")
        {
            Some(
                "`restart_strategy = \"replace\"` needs a second address: use \"stop-start\""
                    .to_owned(),
            )
        } else {
            None
        };
        if let Some(problem) = problem {
            self.error(value.span(), &at, problem);
            return None;
        }
        Some(socket)
    }

    /// An app's fixed ports: one (`port = 9000`) or one per instance (`port = [9001, 9002]`,
    /// as many as `replicas`), none clashing with a `listen` port or another app's (`taken`
    /// records them).
    pub(super) fn app_ports(
        &mut self,
        at: &str,
        value: &Value<'_>,
        replicas: Option<usize>,
        listen: &[SocketAddr],
        taken: &mut Vec<(u16, String)>,
        name: &str,
    ) -> Option<Vec<u16>> {
        let at = join(at, "port");
        let items: Vec<(String, &Value<'_>)> = match value.get_ref() {
            DeValue::Array(items) => items
                .iter()
                .enumerate()
                .map(|(index, item)| (format!("{at}[{index}]"), item))
                .collect(),
            _ => vec![(at.clone(), value)],
        };
        let mut ports = Some(Vec::with_capacity(items.len()));
        for (item_at, item) in items {
            let port = self.app_port(&item_at, item, listen, taken, name);
            match (port, ports.as_mut()) {
                (Some(port), Some(ports)) => ports.push(port),
                _ => ports = None,
            }
        }
        let ports = ports?;
        let expected = replicas.unwrap_or(1);
        let listed = matches!(value.get_ref(), DeValue::Array(_));
        if listed && ports.len() != expected {
            let message = format!(
                "a list of ports gives one per instance: expected {expected} (`replicas`), \
                 found {}",
                ports.len()
            );
            self.error(value.span(), &at, message);
            return None;
        }
        if !listed && expected > 1 {
            let message = format!(
                "{expected} instances cannot share one port: give a list of {expected} ports, \
                 or remove `port` and zoo picks them"
            );
            self.error(value.span(), &at, message);
            return None;
        }
        Some(ports)
    }

    fn app_port(
        &mut self,
        at: &str,
        value: &Value<'_>,
        listen: &[SocketAddr],
        taken: &mut Vec<(u16, String)>,
        name: &str,
    ) -> Option<u16> {
        let port = self.port(at, value)?;
        if listen.iter().any(|address| address.port() == port) {
            self.error(
                value.span(),
                at,
                format!("port {port} is also a `listen` port; give the app another one"),
            );
            return None;
        }
        if let Some((_, owner)) = taken.iter().find(|(used, _)| *used == port) {
            let message = format!("port {port} is already used by app `{owner}`");
            self.error(value.span(), at, message);
            return None;
        }
        taken.push((port, name.to_owned()));
        Some(port)
    }
}
