//! zoo: one binary that supervises a container's web apps and serves them all on one port
//! through a path-routing reverse proxy.
//!
//! Data flows one way: [`config`] (parse and validate) -> runtime tables ([`route`],
//! [`proxy::RuntimeTable`], [`supervise::AppHandle`]) -> request handling ([`proxy`]).

pub mod admin;
pub mod config;
pub mod control;
pub mod log;
pub mod proxy;
pub mod route;
pub mod supervise;

use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use admin::{Health, Metrics};
use config::Config;
use control::Control;
use proxy::{BuildError, RuntimeTable, Shared};
use supervise::{AppList, SuperviseError, Supervisor};

/// Why zoo could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot watch SIGHUP: {0}")]
    Signal(#[source] io::Error),
    #[error(transparent)]
    Supervise(#[from] SuperviseError),
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// Runs zoo until `shutdown` resolves or an app exits for good, then drains connections and
/// stops the apps within the config's grace period. Returns zoo's exit code: 0 after a clean
/// stop, the app's status (128+N for signal N) when an app took the container down, 1 when
/// an app had to be killed.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<i32, RunError> {
    let handles = supervise::plan(&config.apps)?;
    let app_list = AppList::new(handles.clone());
    let health = Health::new(Arc::clone(&app_list));
    let metrics = Metrics::new();
    let access_log = log::AccessLog::start(config.access_log, metrics.access_log_dropped.clone());
    let shared = Shared::new(
        RuntimeTable::build(&config, &handles, &health, &metrics)?,
        Arc::clone(&metrics),
        access_log,
    );

    // Everything is bound before the first "listening on" line, so whoever waits for that line
    // can use the admin endpoints and the control socket at once.
    let admin_listener = match config.admin {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let socket_path = admin::socket::default_path(&config.path);
    let control_socket = admin::socket::bind(&socket_path)
        .inspect_err(|error| {
            tracing::warn!("{error}: `zoo status` and `zoo reload` will not reach this zoo");
        })
        .ok();
    let mut listeners = Vec::with_capacity(config.listen.len());
    for &addr in &config.listen {
        listeners.push(bind(addr).await?);
    }
    if let (Some(listener), Some(addr)) = (&admin_listener, config.admin) {
        tracing::info!("admin endpoints on http://{}", local_addr(listener, addr)?);
    }
    if control_socket.is_some() {
        tracing::info!("control socket {}", socket_path.display());
    }
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    for (listener, &addr) in listeners.iter().zip(&config.listen) {
        tracing::info!("listening on {scheme}://{}", local_addr(listener, addr)?);
    }

    // Watched before any app starts, so that an early SIGHUP cannot take zoo down (its default
    // action) and orphan the apps.
    let hangups = signal(SignalKind::hangup()).map_err(RunError::Signal)?;
    let mut supervisor = Supervisor::start(&config.apps, &handles)?;
    let (grace, shutdown_delay) = (config.grace, config.shutdown_delay);
    let admin_token = config.admin_token.clone();
    let control = Arc::new(Control::new(
        config,
        Arc::clone(&shared),
        Arc::clone(&health),
        Arc::clone(&metrics),
        supervisor.controller(),
    ));
    metrics.watch_apps(supervisor.controller());
    let admin_shutdown = CancellationToken::new();
    let socket_file = control_socket
        .as_ref()
        .map(admin::socket::ControlSocket::file);
    if let Some(listener) = control_socket {
        tokio::spawn(admin::serve(
            listener,
            Arc::clone(&control),
            admin::auth::Policy::Socket,
            admin_shutdown.clone(),
        ));
    }
    if let Some(listener) = admin_listener {
        tokio::spawn(admin::serve(
            listener,
            Arc::clone(&control),
            admin::auth::Policy::Tcp { token: admin_token },
            admin_shutdown.clone(),
        ));
    }
    tokio::spawn(reload_on_sighup(hangups, Arc::clone(&control)));

    let stop_accepting = CancellationToken::new();
    let connections = TaskTracker::new();
    let requests = TaskTracker::new();
    let acceptors = TaskTracker::new();
    for listener in listeners {
        acceptors.spawn(proxy::serve(
            listener,
            Arc::clone(&shared),
            stop_accepting.clone(),
            connections.clone(),
            requests.clone(),
        ));
    }
    acceptors.close();

    let final_exit = tokio::select! {
        () = shutdown => None,
        exit = supervisor.final_exit() => Some(exit),
    };
    health.start_draining();
    if final_exit.is_none() && !shutdown_delay.is_zero() {
        tracing::info!(
            "still serving for {shutdown_delay:?} (shutdown_delay) while /readyz answers 503"
        );
        tokio::time::sleep(shutdown_delay).await;
    }
    tracing::info!("shutting down: draining requests, then stopping apps");
    let deadline = Instant::now() + grace;
    stop_accepting.cancel();
    acceptors.wait().await;
    // Requests in flight finish before their apps stop. Open WebSockets do not count: they
    // never end by themselves, and the app is the one that can close them properly, at a
    // frame boundary and with its own close code, through the tunnel that is still open.
    drain(&requests, deadline, "requests still in flight").await;
    let clean = supervisor.stop_all(deadline).await;
    // What the apps closed finishes its close handshake; a tunnel still open at the deadline
    // (an external target, an app that ignored its stop signal) is cut at the TCP level.
    drain(
        &connections,
        deadline,
        "connections still open: closing them",
    )
    .await;
    admin_shutdown.cancel();
    if let Some(file) = socket_file {
        file.remove();
    }
    Ok(match final_exit {
        Some(exit) => exit.status.as_code(),
        None if clean => 0,
        None => 1,
    })
}

/// Closes `tracker` and waits for it to empty until `deadline`; logs how many were left.
async fn drain(tracker: &TaskTracker, deadline: Instant, left: &str) {
    tracker.close();
    if tokio::time::timeout_at(deadline, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("at the deadline, {} {left}", tracker.len());
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { addr, source })
}

/// The address actually bound (port 0 becomes the port the kernel chose).
fn local_addr(listener: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, RunError> {
    listener
        .local_addr()
        .map_err(|source| RunError::Bind { addr, source })
}

/// SIGHUP re-reads the config, like `zoo reload` (a reload that fails keeps the old one).
async fn reload_on_sighup(mut hangups: Signal, control: Arc<Control>) {
    while hangups.recv().await.is_some() {
        tracing::info!("received SIGHUP: reloading");
        if let Err(error) = control.reload().await {
            tracing::error!("reload rejected, the running config is kept:\n{error}");
        }
    }
}

/// Builds everything `run` would build except processes and listeners, and describes the
/// result for `zoo check`.
pub fn check(config: &Config) -> Result<String, RunError> {
    let handles = supervise::plan(&config.apps)?;
    let app_list = AppList::new(handles.clone());
    let table = RuntimeTable::build(config, &handles, &Health::new(app_list), &Metrics::new())?;
    let mut out = String::new();
    let _ = writeln!(out, "{}: ok", config.path.display());
    for addr in &config.listen {
        let _ = writeln!(out, "listen  {addr}");
    }
    let _ = writeln!(out, "routes (longest match first):");
    for line in table.describe() {
        let _ = writeln!(out, "  {line}");
    }
    let _ = writeln!(out, "apps:");
    for app in &config.apps {
        let port = app
            .port
            .map_or_else(|| "auto".to_owned(), |port| port.to_string());
        let command = match &app.command {
            config::Command::Shell(line) => line.clone(),
            config::Command::Argv(argv) => format!("{argv:?}"),
        };
        let _ = writeln!(
            out,
            "  {:<12} port {port:<5}  restart {:<10}  {command}",
            app.name,
            format!("{:?}", app.restart).to_lowercase()
        );
    }
    Ok(out)
}
