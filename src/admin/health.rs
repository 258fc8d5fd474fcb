//! Health: 200 when every supervised app is ready and 503 otherwise, with a JSON body naming
//! each app's state, so a Docker `HEALTHCHECK` or a Kubernetes probe can point at it. Served by
//! the `health` built-in route and by `/readyz` on the admin endpoints.

use std::fmt::Write as _;
use std::sync::Arc;

use http::StatusCode;

use crate::supervise::AppHandle;

/// The status and JSON body of a health answer for `apps`.
#[must_use]
pub fn health(apps: &[Arc<AppHandle>]) -> (StatusCode, String) {
    let all_ready = apps.iter().all(|app| app.is_ready());
    let mut body = String::from("{\"status\":");
    body.push_str(if all_ready {
        "\"ok\""
    } else {
        "\"unavailable\""
    });
    body.push_str(",\"apps\":{");
    for (index, app) in apps.iter().enumerate() {
        if index > 0 {
            body.push(',');
        }
        let state = if app.is_ready() { "ready" } else { "not ready" };
        // App names are ASCII letters, digits, '-' and '_' (config validation), so they need
        // no JSON escaping.
        let _ = write!(body, "\"{}\":\"{state}\"", app.name);
    }
    body.push_str("}}\n");
    let status = if all_ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_ok_only_when_every_app_is_ready() {
        let python = Arc::new(AppHandle::new("python".into(), 9000));
        let node = Arc::new(AppHandle::new("node".into(), 9100));
        python.set_ready(true);
        let apps = [python, Arc::clone(&node)];
        assert_eq!(
            health(&apps),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "{\"status\":\"unavailable\",\"apps\":{\"python\":\"ready\",\"node\":\"not ready\"}}\n".to_owned()
            )
        );
        node.set_ready(true);
        assert_eq!(health(&apps).0, StatusCode::OK);
    }

    #[test]
    fn health_without_apps_is_ok() {
        assert_eq!(
            health(&[]),
            (
                StatusCode::OK,
                "{\"status\":\"ok\",\"apps\":{}}\n".to_owned()
            )
        );
    }
}
