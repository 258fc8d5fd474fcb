//! What zoo tells about itself and how it is driven while running: the admin HTTP endpoints,
//! served on the control socket (always) and on the optional `admin` TCP listener, never on
//! the public port unless a route names a built-in. Who may call which is [`auth`]'s policy.
//!
//! | endpoint | answer | control socket | `admin` TCP |
//! | --- | --- | --- | --- |
//! | `GET /livez` | 200 while zoo serves | yes | yes |
//! | `GET /readyz` | 200 when every app is ready and zoo is not draining, else 503 | yes | yes |
//! | `GET /metrics` | Prometheus text | yes | yes |
//! | `GET /status` | JSON: config, load time, listeners, apps, routes | yes | yes |
//! | `POST /reload` | re-reads the config; 200, or 422 with the errors (old config kept) | yes | with `admin_token` |
//! | `POST /apps/NAME/restart`, `stop`, `start` | 200 once done (ready again, or stopped) | yes | with `admin_token` |
//! | `POST /apps/NAME/scale/N` | runs N instances: 200 once the new ones are ready and the removed ones stopped | yes | with `admin_token` |
//! | `POST /apps/NAME/run` | runs a task or cron job now: 200 once it succeeded, 409 when it failed | yes | with `admin_token` |
//! | `GET /apps/NAME/logs` | the app's last output lines | yes | with `admin_token` |
//!
//! A request that names a config ([`CONFIG_HEADER`], sent by the CLI) is answered 409 unless
//! it is the config this zoo runs, so that a CLI verb never acts on another zoo.

pub mod auth;
pub mod client;
pub mod socket;

use std::convert::Infallible;
use std::ffi::OsStr;
use std::future::Future;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::control::{CommandError, ControlPlane};
use crate::supervise::{AppCommand, SuperviseError};
use auth::{Policy, Refusal};
use socket::ControlSocket;

/// `POST /apps/NAME/VERB`: the verbs and what they ask of the app's supervisor.
const APP_COMMANDS: [(&str, AppCommand); 4] = [
    ("restart", AppCommand::Restart),
    ("stop", AppCommand::Stop),
    ("start", AppCommand::Start),
    ("run", AppCommand::Run),
];
/// The config file the CLI was given (canonical path); a zoo running another one answers 409.
pub const CONFIG_HEADER: &str = "zoo-config";

/// A listener the admin endpoints can be served on: the control socket or a TCP address.
pub trait Listener: Send + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// The next connection, with its peer's uid where the transport tells it (Unix sockets).
    fn accept_stream(&self)
    -> impl Future<Output = io::Result<(Self::Stream, Option<u32>)>> + Send;
}

impl Listener for ControlSocket {
    type Stream = UnixStream;
    async fn accept_stream(&self) -> io::Result<(UnixStream, Option<u32>)> {
        self.accept().await.map(|(stream, uid)| (stream, Some(uid)))
    }
}

impl Listener for TcpListener {
    type Stream = TcpStream;
    async fn accept_stream(&self) -> io::Result<(TcpStream, Option<u32>)> {
        self.accept().await.map(|(stream, _)| (stream, None))
    }
}

/// Accepts admin connections until `shutdown`; each is served over HTTP/1.1 under `policy`.
/// On the control socket a peer that is neither root nor zoo's own uid gets 403 to every
/// request (and a warning in the log), whatever it asks.
pub async fn serve(
    listener: impl Listener,
    control: Arc<ControlPlane>,
    policy: Policy,
    shutdown: CancellationToken,
) {
    let own_uid = nix::unistd::geteuid().as_raw();
    let own_config = Arc::new(crate::rundir::canonical_config(control.config_path()));
    loop {
        let (stream, peer_uid) = tokio::select! {
            accepted = listener.accept_stream() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!("admin accept failed: {error}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        // The control socket's listener always reports the peer's uid (SO_PEERCRED).
        let stranger = match (&policy, peer_uid) {
            (Policy::Socket, Some(uid)) if !auth::peer_allowed(uid, own_uid) => {
                tracing::warn!(
                    "control socket: refused a connection from uid {uid} (only root and uid \
                     {own_uid} may drive zoo)"
                );
                Some(Refusal::Peer { uid, own: own_uid })
            }
            _ => None,
        };
        let (control, policy, own_config) = (
            Arc::clone(&control),
            policy.clone(),
            Arc::clone(&own_config),
        );
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let control = Arc::clone(&control);
                let refused = match &stranger {
                    Some(refusal) => Err(refusal.clone()),
                    None => policy
                        .check(
                            &request,
                            control.serving().load().config.admin_token.as_deref(),
                        )
                        .and_then(|()| other_config(&own_config, &request)),
                };
                async move {
                    Ok::<_, Infallible>(match refused {
                        Ok(()) => answer(&control, &request).await,
                        Err(refusal) => refusal_response(&refusal),
                    })
                }
            });
            // A client that hangs up mid-request is its own problem, not zoo's.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Refuses a request that names a config other than the one this zoo runs.
fn other_config<B>(own: &std::path::Path, request: &Request<B>) -> Result<(), Refusal> {
    let Some(named) = request.headers().get(CONFIG_HEADER) else {
        return Ok(());
    };
    let named =
        crate::rundir::canonical_config(&PathBuf::from(OsStr::from_bytes(named.as_bytes())));
    if named == own {
        Ok(())
    } else {
        Err(Refusal::OtherConfig {
            runs: own.to_owned(),
            named,
        })
    }
}

fn refusal_response(refusal: &Refusal) -> Response<Full<Bytes>> {
    let mut response = text(refusal.status(), format!("{refusal}\n"));
    if refusal.status() == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"zoo admin\""),
        );
    }
    response
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
    if let (&Method::POST, Some(count)) = (method, verb.strip_prefix("scale/")) {
        let Ok(replicas) = count.parse::<usize>() else {
            return text(
                StatusCode::BAD_REQUEST,
                format!("scale: expected a number of instances, found `{count}`\n"),
            );
        };
        return command_answer(control.scale(app, replicas).await);
    }
    let command = APP_COMMANDS.iter().find(|(name, _)| *name == verb);
    let (true, Some(&(_, command))) = (*method == Method::POST, command) else {
        return not_found(method, &format!("/apps/{app}/{verb}"));
    };
    command_answer(control.command(app, command).await)
}

/// 200 with what a command did, 404 for an unknown app, 409 when it could not be done.
fn command_answer(done: Result<String, CommandError>) -> Response<Full<Bytes>> {
    match done {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_naming_another_config_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (own, other) = (dir.path().join("a.toml"), dir.path().join("b.toml"));
        std::fs::write(&own, "").unwrap();
        std::fs::write(&other, "").unwrap();
        let own = crate::rundir::canonical_config(&own);
        let naming = |config: Option<&std::path::Path>| {
            let mut request = Request::builder().uri("/status");
            if let Some(config) = config {
                request = request.header(CONFIG_HEADER, config.as_os_str().as_bytes());
            }
            other_config(&own, &request.body(()).unwrap())
        };
        assert_eq!(naming(None), Ok(()));
        assert_eq!(naming(Some(&own)), Ok(()));
        // Spelt differently, the same file.
        assert_eq!(naming(Some(&dir.path().join(".").join("a.toml"))), Ok(()));
        assert_eq!(
            naming(Some(&other)),
            Err(Refusal::OtherConfig {
                runs: own.clone(),
                named: crate::rundir::canonical_config(&other),
            })
        );
    }
}
