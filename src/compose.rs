//! Where zoo is put together: [`run`] builds the runtime, binds the listeners and the control
//! socket, starts the apps and the control plane, serves until shutdown, then drains and stops
//! everything in order; [`check`] builds the same runtime without processes or sockets and
//! describes it for `zoo check`. The only module that knows every other.

use std::future::Future;
use std::io;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, auth::Policy};
use crate::config::{self, Config};
use crate::control::ControlPlane;
use crate::listeners::{ListenError, ListenerSet, Staged};
use crate::proxy;
use crate::runtime::{BuildError, Runtime, Serving};
use crate::supervise::{SuperviseError, Supervisor};
use crate::telemetry::Metrics;

/// How often the TLS certificate and key files are looked at for a rotation.
const TLS_POLL: Duration = Duration::from_secs(2);

/// Why zoo could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error("cannot watch SIGHUP: {0}")]
    Signal(#[source] io::Error),
    #[error(transparent)]
    Supervise(#[from] SuperviseError),
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// Runs zoo until `shutdown` resolves or an app exits for good, then drains connections and
/// stops the apps within the grace period of the config in use. Returns zoo's exit code: 0
/// after a clean stop, the app's status (128+N for signal N) when an app took the container
/// down, 1 when an app had to be killed.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<i32, RunError> {
    let metrics = Metrics::new();
    let config_path = config.path.clone();
    let (listen, admin_addr, scheme) = (config.listen.clone(), config.admin, config.scheme());
    // Bound before the runtime is planned: planning picks the apps' free ports, and a
    // `listen` port 0 bound after could be given one of them.
    let staged_admin = Staged::bind("admin", &Vec::from_iter(admin_addr), &[]).await?;
    let staged_public = Staged::bind("listen", &listen, &[]).await?;
    let serving = Serving::new(Runtime::plan(config, &metrics)?, Arc::clone(&metrics));

    let connections = TaskTracker::new();
    let requests = TaskTracker::new();
    let acceptors = TaskTracker::new();
    let public = ListenerSet::new("listen", "listening on", {
        let (serving, connections, requests, acceptors) = (
            Arc::clone(&serving),
            connections.clone(),
            requests.clone(),
            acceptors.clone(),
        );
        Box::new(move |listener, stop| {
            acceptors.spawn(proxy::serve(
                listener,
                Arc::clone(&serving),
                stop,
                connections.clone(),
                requests.clone(),
            ));
        })
    });
    // The admin listener serves the control plane that owns it: it holds it weakly.
    let control_slot: Arc<std::sync::OnceLock<Weak<ControlPlane>>> = Arc::default();
    let admin = ListenerSet::new("admin", "admin endpoints on", {
        let control_slot = Arc::clone(&control_slot);
        Box::new(move |listener, stop| {
            if let Some(control) = control_slot.get().and_then(Weak::upgrade) {
                tokio::spawn(admin::serve(listener, control, Policy::Tcp, stop));
            }
        })
    });

    // Everything is bound before the first "listening on" line, so whoever waits for that line
    // can use the admin endpoints and the control socket at once.
    let socket_path = admin::socket::default_path(&config_path);
    let control_socket = admin::socket::bind(&socket_path)
        .inspect_err(|error| {
            tracing::warn!("{error}: `zoo status` and `zoo reload` will not reach this zoo");
        })
        .ok();

    // Watched before any app starts, so that an early SIGHUP cannot take zoo down (its default
    // action) and orphan the apps.
    let hangups = signal(SignalKind::hangup()).map_err(RunError::Signal)?;
    let (supervisor_apps, handles) = {
        let runtime = serving.load();
        (runtime.config.apps.clone(), runtime.apps.clone())
    };
    let mut supervisor = Supervisor::start(&supervisor_apps, &handles)?;
    let control = Arc::new(ControlPlane::new(
        config_path,
        Arc::clone(&serving),
        supervisor.handle(),
        public,
        admin,
    ));
    let _ = control_slot.set(Arc::downgrade(&control));
    metrics.watch_apps(supervisor.handle());
    let socket_shutdown = CancellationToken::new();
    let socket_file = control_socket
        .as_ref()
        .map(admin::socket::ControlSocket::file);
    if let Some(listener) = control_socket {
        // Logged before "listening on": whoever waits for that line can use the socket.
        tracing::info!("control socket {}", socket_path.display());
        tokio::spawn(admin::serve(
            listener,
            Arc::clone(&control),
            Policy::Socket,
            socket_shutdown.clone(),
        ));
    }
    control.commit_startup(staged_public, staged_admin, scheme);
    tokio::spawn(reload_on_sighup(hangups, Arc::clone(&control)));
    tokio::spawn(watch_certificate(Arc::clone(&serving)));

    let final_exit = tokio::select! {
        () = shutdown => None,
        exit = supervisor.final_exit() => Some(exit),
    };
    if let Some(exit) = &final_exit {
        tracing::error!(
            "{} exited for good ({}): stopping everything, then exiting with {}",
            exit.app,
            exit.status,
            exit.status.as_code()
        );
    }
    serving.health.start_draining();
    // The settings of the config in use now: a reload may have changed them.
    let (grace, shutdown_delay) = {
        let runtime = serving.load();
        (runtime.config.grace, runtime.config.shutdown_delay)
    };
    if final_exit.is_none() && !shutdown_delay.is_zero() {
        tracing::info!(
            "still serving for {shutdown_delay:?} (shutdown_delay) while /readyz answers 503"
        );
        tokio::time::sleep(shutdown_delay).await;
    }
    tracing::info!("shutting down: draining requests, then stopping apps");
    let deadline = crate::deadline::after(grace);
    control.stop_accepting();
    acceptors.close();
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
    socket_shutdown.cancel();
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

/// SIGHUP re-reads the config, like `zoo reload` (a reload that fails keeps the old one).
async fn reload_on_sighup(mut hangups: Signal, control: Arc<ControlPlane>) {
    while hangups.recv().await.is_some() {
        tracing::info!("received SIGHUP: reloading");
        if let Err(error) = control.reload().await {
            tracing::error!("reload rejected, the running config is kept:\n{error}");
        }
    }
}

/// Picks up a rotated TLS certificate (a renewed file, Kubernetes' secret swap) without a
/// reload: the runtime in use re-reads its pair when the files changed.
async fn watch_certificate(serving: Arc<Serving>) {
    let mut ticks = tokio::time::interval(TLS_POLL);
    loop {
        ticks.tick().await;
        if let Some(tls) = &serving.load().tls {
            tls.refresh();
        }
    }
}

/// Builds everything `run` would build except processes and sockets, and writes the
/// description of the result for `zoo check` to `out` as it goes (the lines of 300,000
/// routes are 13 MB, which were held whole). A failed write (a closed pipe: `zoo check |
/// head -1`) ends the description, not the check.
pub fn check(config: Config, out: &mut impl std::io::Write) -> Result<(), RunError> {
    let runtime = Runtime::plan(config, &Metrics::new())?;
    let _ = describe_check(&runtime, out);
    Ok(())
}

/// What [`check`] writes about `runtime`.
fn describe_check(runtime: &Runtime, out: &mut impl std::io::Write) -> std::io::Result<()> {
    let config = &runtime.config;
    writeln!(out, "{}: ok", config.path.display())?;
    for addr in &config.listen {
        writeln!(out, "listen  {addr}")?;
    }
    writeln!(out, "routes (longest match first):")?;
    for line in runtime.describe_lines() {
        writeln!(out, "  {line}")?;
    }
    for warning in runtime.uncovered_hosts() {
        writeln!(out, "warning: {warning}")?;
    }
    writeln!(out, "apps:")?;
    for app in &config.apps {
        let port = match app.port {
            Some(port) => port.to_string(),
            None if app.listens() => "auto".to_owned(),
            None => "-".to_owned(),
        };
        let command = match &app.command {
            config::Command::Shell(line) => line.clone(),
            config::Command::Argv(argv) => format!("{argv:?}"),
        };
        writeln!(
            out,
            "  {:<12} {:<7}  port {port:<5}  restart {:<10}  {command}",
            app.name,
            app.kind.as_str(),
            app.restart.as_str()
        )?;
    }
    out.flush()
}
