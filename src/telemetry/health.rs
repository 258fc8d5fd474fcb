//! Health: 200 when every supervised app is ready and 503 otherwise, with a JSON body naming
//! each app's state, so a Docker `HEALTHCHECK` or a Kubernetes probe can point at it. Served by
//! the `health` built-in route and by `/readyz` on the admin endpoints.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::StatusCode;

use crate::supervise::AppHandle;

/// Whether zoo is shutting down; with the apps of the runtime in use, the readiness of the
/// container as a whole.
#[derive(Debug, Default)]
pub struct Health {
    /// Set at the start of shutdown, so that load balancers stop sending before zoo stops
    /// accepting (`shutdown_delay`).
    draining: AtomicBool,
}

impl Health {
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// 200 with `"status":"ok"` when every app is ready and zoo is not draining, else 503;
    /// the JSON body names each app's state.
    #[must_use]
    pub fn answer(&self, apps: &[Arc<AppHandle>]) -> (StatusCode, String) {
        let draining = self.draining.load(Ordering::Acquire);
        // An app that starts on demand serves while idle: its first request starts it.
        let all_ready = apps
            .iter()
            .all(|app| app.is_ready() || app.starts_on_demand());
        let overall = match (draining, all_ready) {
            (true, _) => "draining",
            (false, true) => "ok",
            (false, false) => "unavailable",
        };
        let mut body = format!("{{\"status\":\"{overall}\",\"apps\":{{");
        for (index, app) in apps.iter().enumerate() {
            if index > 0 {
                body.push(',');
            }
            let state = match (app.is_ready(), app.starts_on_demand()) {
                (true, _) => "ready",
                (false, true) => "idle",
                (false, false) => "not ready",
            };
            // App names are ASCII letters, digits, '-' and '_' (config validation), so they
            // need no JSON escaping.
            let _ = write!(body, "\"{}\":\"{state}\"", app.name);
        }
        body.push_str("}}\n");
        let status = if overall == "ok" {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (status, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_ok_only_when_every_app_is_ready() {
        let python = AppHandle::new("python".into(), 9000);
        let node = AppHandle::new("node".into(), 9100);
        python.set_ready(true);
        let health = Health::default();
        let apps = [python, Arc::clone(&node)];
        assert_eq!(
            health.answer(&apps),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "{\"status\":\"unavailable\",\"apps\":{\"python\":\"ready\",\"node\":\"not ready\"}}\n"
                    .to_owned()
            )
        );
        node.set_ready(true);
        assert_eq!(health.answer(&apps).0, StatusCode::OK);
    }

    #[test]
    fn health_without_apps_is_ok() {
        assert_eq!(
            Health::default().answer(&[]),
            (
                StatusCode::OK,
                "{\"status\":\"ok\",\"apps\":{}}\n".to_owned()
            )
        );
    }

    #[test]
    fn draining_is_unavailable_even_when_every_app_is_ready() {
        let app = AppHandle::new("web".into(), 9000);
        app.set_ready(true);
        let health = Health::default();
        health.start_draining();
        assert_eq!(
            health.answer(&[app]),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "{\"status\":\"draining\",\"apps\":{\"web\":\"ready\"}}\n".to_owned()
            )
        );
    }
}
