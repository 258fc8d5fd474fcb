//! zoo: one binary that supervises a container's web apps and serves them all on one port
//! through a path-routing reverse proxy.
//!
//! Data flows one way: [`config`] (parse and validate) -> runtime tables ([`route`],
//! [`proxy::RuntimeTable`], [`supervise::AppHandle`]) -> request handling ([`proxy`]).

pub mod admin;
pub mod config;
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
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use config::Config;
use proxy::{BuildError, RuntimeTable, Shared};
use supervise::{SuperviseError, Supervisor};

/// Why zoo could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
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
    let shared = Shared::new(RuntimeTable::build(&config, &handles)?);
    let mut listeners = Vec::with_capacity(config.listen.len());
    for &addr in &config.listen {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| RunError::Bind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| RunError::Bind { addr, source })?;
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        tracing::info!("listening on {scheme}://{bound}");
        listeners.push(listener);
    }

    let mut supervisor = Supervisor::start(&config.apps, &handles)?;

    let stop_accepting = CancellationToken::new();
    let connections = TaskTracker::new();
    let acceptors = TaskTracker::new();
    for listener in listeners {
        acceptors.spawn(proxy::serve(
            listener,
            Arc::clone(&shared),
            stop_accepting.clone(),
            connections.clone(),
        ));
    }
    acceptors.close();

    let final_exit = tokio::select! {
        () = shutdown => None,
        exit = supervisor.final_exit() => Some(exit),
    };
    tracing::info!("shutting down: draining connections, then stopping apps");
    let deadline = Instant::now() + config.grace;
    stop_accepting.cancel();
    acceptors.wait().await;
    connections.close();
    if tokio::time::timeout_at(deadline, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "{} connections still open at the deadline: closing them",
            connections.len()
        );
    }
    let clean = supervisor.stop_all(deadline).await;
    Ok(match final_exit {
        Some(exit) => exit.status.as_code(),
        None if clean => 0,
        None => 1,
    })
}

/// Builds everything `run` would build except processes and listeners, and describes the
/// result for `zoo check`.
pub fn check(config: &Config) -> Result<String, RunError> {
    let handles = supervise::plan(&config.apps)?;
    let table = RuntimeTable::build(config, &handles)?;
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
