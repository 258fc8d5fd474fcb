//! What zoo tells about itself and how it is driven while running: the admin HTTP endpoints,
//! served on the control socket (always) and on the optional `admin` TCP listener, never on
//! the public port unless a route names a built-in.
//!
//! | endpoint | answer |
//! | --- | --- |
//! | `GET /livez` | 200 while zoo serves |
//! | `GET /readyz` | 200 when every app is ready and zoo is not draining, else 503 ([`Health`]) |
//! | `GET /metrics` | Prometheus text ([`Metrics`]) |
//! | `GET /status` | JSON: config, load time, listeners, apps, routes |
//! | `POST /reload` | re-reads the config; 200, or 422 with the errors (old config kept) |
//! | `POST /apps/NAME/restart`, `stop`, `start` | 200 once done (ready again, or stopped) |
//! | `POST /apps/NAME/run` | runs a task again: 200 once it succeeded, 409 when it failed |
//! | `GET /apps/NAME/logs` | the app's last output lines |

pub mod client;
pub mod socket;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::control::{CommandError, ControlPlane};
use crate::supervise::{AppCommand, SuperviseError};

/// `POST /apps/NAME/VERB`: the verbs and what they ask of the app's supervisor.
const APP_COMMANDS: [(&str, AppCommand); 4] = [
    ("restart", AppCommand::Restart),
    ("stop", AppCommand::Stop),
    ("start", AppCommand::Start),
    ("run", AppCommand::Run),
];

/// A listener the admin endpoints can be served on: the control socket or a TCP address.
pub trait Listener: Send + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept_stream(&self) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

impl Listener for UnixListener {
    type Stream = UnixStream;
    async fn accept_stream(&self) -> io::Result<UnixStream> {
        self.accept().await.map(|(stream, _)| stream)
    }
}

impl Listener for TcpListener {
    type Stream = TcpStream;
    async fn accept_stream(&self) -> io::Result<TcpStream> {
        self.accept().await.map(|(stream, _)| stream)
    }
}

/// Accepts admin connections until `shutdown`; each is served over HTTP/1.1.
pub async fn serve(
    listener: impl Listener,
    control: Arc<ControlPlane>,
    shutdown: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept_stream() => match accepted {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::warn!("admin accept failed: {error}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let control = Arc::clone(&control);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let control = Arc::clone(&control);
                async move { Ok::<_, Infallible>(answer(&control, &request).await) }
            });
            // A client that hangs up mid-request is its own problem, not zoo's.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(control: &ControlPlane, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/livez") => text(StatusCode::OK, "ok\n".to_owned()),
        (&Method::GET, "/readyz") => {
            let (status, body) = control.serving().health_answer();
            json(status, body)
        }
        (&Method::GET, "/metrics") => {
            crate::telemetry::metrics_response(&control.serving().metrics)
        }
        (&Method::GET, "/status") => match serde_json::to_string_pretty(&control.status()) {
            Ok(body) => json(StatusCode::OK, body + "\n"),
            Err(error) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")),
        },
        (&Method::POST, "/reload") => match control.reload().await {
            Ok(()) => text(StatusCode::OK, "reloaded\n".to_owned()),
            Err(error) => {
                tracing::error!("reload rejected, the running config is kept:\n{error}");
                text(StatusCode::UNPROCESSABLE_ENTITY, format!("{error}\n"))
            }
        },
        (method, path) => match path
            .strip_prefix("/apps/")
            .and_then(|rest| rest.split_once('/'))
        {
            Some((app, verb)) => app_endpoint(control, method, app, verb).await,
            None => not_found(method, path),
        },
    }
}

/// `/apps/NAME/VERB`: commands to one app, and its recent output.
async fn app_endpoint(
    control: &ControlPlane,
    method: &Method,
    app: &str,
    verb: &str,
) -> Response<Full<Bytes>> {
    if *method == Method::GET && verb == "logs" {
        return match control.recent_lines(app) {
            Ok(lines) => text(
                StatusCode::OK,
                lines.iter().map(|line| format!("{line}\n")).collect(),
            ),
            Err(error) => text(StatusCode::NOT_FOUND, format!("{error}\n")),
        };
    }
    let command = APP_COMMANDS.iter().find(|(name, _)| *name == verb);
    let (true, Some(&(_, command))) = (*method == Method::POST, command) else {
        return not_found(method, &format!("/apps/{app}/{verb}"));
    };
    match control.command(app, command).await {
        Ok(done) => text(StatusCode::OK, done),
        Err(error @ CommandError::Supervise(SuperviseError::UnknownApp { .. })) => {
            text(StatusCode::NOT_FOUND, format!("{error}\n"))
        }
        Err(error) => text(StatusCode::CONFLICT, format!("{error}\n")),
    }
}

fn not_found(method: &Method, path: &str) -> Response<Full<Bytes>> {
    text(
        StatusCode::NOT_FOUND,
        format!("no admin endpoint {method} {path}\n"),
    )
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    with_type(status, body, "text/plain; charset=utf-8")
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    with_type(status, body, "application/json")
}

fn with_type(
    status: StatusCode,
    body: String,
    content_type: &'static str,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
