//! The walk of an app's `ready` and `live` tables: which probe (`tcp`, `http` or `exec`, at
//! most one), how often, how long each may take, and the readiness deadline or the failures
//! that count as dead.

use std::time::Duration;

use super::read::{Fields, Value, Walker, join, optional};
use crate::config::{Live, Probe, Ready};

const DEFAULT_INTERVAL: Duration = Duration::from_millis(100);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);
const READY_KEYS: &[&str] = &["tcp", "http", "exec", "interval", "timeout", "deadline"];
const LIVE_KEYS: &[&str] = &["tcp", "http", "exec", "interval", "timeout", "failures"];
/// Consecutive failed liveness probes before a restart, unless `failures` says otherwise.
const DEFAULT_LIVE_FAILURES: u32 = 3;

impl Walker<'_> {
    /// `live = { http = "/", interval, timeout, failures }`.
    pub(super) fn live(&mut self, at: &str, value: &Value<'_>) -> Option<Live> {
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

    pub(super) fn ready(&mut self, at: &str, value: &Value<'_>) -> Option<Ready> {
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
}

pub(super) fn default_ready() -> Ready {
    Ready {
        probe: Probe::Tcp,
        interval: DEFAULT_INTERVAL,
        timeout: DEFAULT_TIMEOUT,
        deadline: DEFAULT_DEADLINE,
    }
}
