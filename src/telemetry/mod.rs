//! What the request path and the supervisor record about themselves, for probes and
//! monitoring: [`Health`] (is every app ready, is zoo draining) and [`Metrics`] (Prometheus).
//! It sits below the proxy and the admin server, which both read it; it reads nothing of
//! theirs.

mod health;
mod metrics;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

pub use health::Health;
pub use metrics::{Metrics, RouteMetrics};

/// The Prometheus text exposition, for the admin `/metrics` and the `metrics` built-in route.
#[must_use]
pub fn metrics_response(metrics: &Metrics) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(metrics.render())));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    *response.status_mut() = StatusCode::OK;
    response
}
