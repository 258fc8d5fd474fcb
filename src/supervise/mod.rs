//! Supervision: starts each app in its own process group with `PORT` set, forwards its output,
//! probes it until ready, restarts it by its policy with backoff, and stops it (stop signal to
//! the whole group, SIGKILL at the deadline). Exit statuses come only from the [`Reaper`].
//!
//! The proxy sees an app only through its [`AppHandle`]: where it listens and whether it is
//! ready. Nothing here knows about HTTP routing.

mod backoff;
mod output;
mod probe;
mod reaper;

use std::convert::Infallible;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{self, RestartPolicy};
pub use backoff::Backoff;
pub use output::{prefix as output_prefix, reserve_name_width};
pub use reaper::{ExitStatus, Reaper};

#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error("cannot watch for exiting children (SIGCHLD): {0}")]
    Reaper(#[source] io::Error),
    #[error("app `{app}`: cannot find a free port: {source}")]
    NoFreePort {
        app: String,
        #[source]
        source: io::Error,
    },
}

/// What the request path needs to know about one app.
#[derive(Debug)]
pub struct AppHandle {
    pub name: String,
    /// Loopback address the app listens on (its `PORT`).
    pub addr: SocketAddr,
    /// Set while the current instance has passed its readiness probe and not exited since.
    ready: AtomicBool,
    /// Wakes requests waiting for the app to become ready.
    ready_changed: Notify,
}

impl AppHandle {
    pub(crate) fn new(name: String, port: u16) -> Self {
        Self {
            name,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            ready: AtomicBool::new(false),
            ready_changed: Notify::new(),
        }
    }

    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Waits until the app is ready or `timeout` passes; returns whether it is ready.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let changed = self.ready_changed.notified();
            if self.is_ready() {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.is_ready();
            }
        }
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
        self.ready_changed.notify_waiters();
    }
}

/// An app that exited and will not be restarted; it takes the container down.
#[derive(Debug, Clone)]
pub struct FinalExit {
    pub app: String,
    pub status: ExitStatus,
}

/// All supervised apps, in start order.
pub struct Supervisor {
    apps: Vec<Supervised>,
    final_exits: mpsc::UnboundedReceiver<FinalExit>,
}

struct Supervised {
    handle: Arc<AppHandle>,
    stop: oneshot::Sender<Instant>,
    task: JoinHandle<Stopped>,
}

/// How an app ended when zoo stopped it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopped {
    /// It exited by itself on the stop signal (or was not running).
    Cleanly,
    /// It had to be killed at the deadline, or exited with a failure.
    Forcibly,
}

impl Supervisor {
    /// Starts every app of `apps` with the handle [`plan`] made for it, in order. Must run
    /// inside a tokio runtime.
    pub fn start(apps: &[config::App], handles: &[Arc<AppHandle>]) -> Result<Self, SuperviseError> {
        let reaper = Reaper::start().map_err(SuperviseError::Reaper)?;
        let (final_sender, final_exits) = mpsc::unbounded_channel();
        let supervised = apps
            .iter()
            .zip(handles)
            .map(|(app, handle)| {
                let (stop, stop_requested) = oneshot::channel();
                let task = tokio::spawn(
                    AppRunner {
                        app: app.clone(),
                        handle: Arc::clone(handle),
                        reaper: Arc::clone(&reaper),
                        final_exits: final_sender.clone(),
                    }
                    .run(stop_requested),
                );
                Supervised {
                    handle: Arc::clone(handle),
                    stop,
                    task,
                }
            })
            .collect();
        Ok(Self {
            apps: supervised,
            final_exits,
        })
    }

    /// Resolves when an app has exited for good; pending forever when there are no apps.
    pub async fn final_exit(&mut self) -> FinalExit {
        match self.final_exits.recv().await {
            Some(exit) => exit,
            None => std::future::pending().await,
        }
    }

    /// Stops every app in reverse start order; whatever still runs at `deadline` is killed.
    /// Returns whether every app stopped cleanly.
    pub async fn stop_all(self, deadline: Instant) -> bool {
        let mut clean = true;
        for app in self.apps.into_iter().rev() {
            // A send error means the task already ended (the app exited for good).
            let _ = app.stop.send(deadline);
            match app.task.await {
                Ok(Stopped::Cleanly) => {}
                Ok(Stopped::Forcibly) => clean = false,
                Err(error) => {
                    tracing::error!("supervisor of {} failed: {error}", app.handle.name);
                    clean = false;
                }
            }
        }
        clean
    }
}

/// Gives every app its address (picking a free port for those without one) and widens the
/// output name column to fit them all. Starts nothing.
pub fn plan(apps: &[config::App]) -> Result<Vec<Arc<AppHandle>>, SuperviseError> {
    apps.iter()
        .map(|app| {
            reserve_name_width(&app.name);
            let port = match app.port {
                Some(port) => port,
                None => free_port().map_err(|source| SuperviseError::NoFreePort {
                    app: app.name.clone(),
                    source,
                })?,
            };
            Ok(Arc::new(AppHandle::new(app.name.clone(), port)))
        })
        .collect()
}

/// Binds an ephemeral loopback port and releases it for the app to take.
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// The life of one app: start, probe, watch, restart, stop.
struct AppRunner {
    app: config::App,
    handle: Arc<AppHandle>,
    reaper: Arc<Reaper>,
    final_exits: mpsc::UnboundedSender<FinalExit>,
}

/// One started instance of an app.
struct Instance {
    /// Its pid, which is also its process group id.
    pid: Pid,
    exit: oneshot::Receiver<ExitStatus>,
}

impl AppRunner {
    async fn run(self, mut stop_requested: oneshot::Receiver<Instant>) -> Stopped {
        let name = &self.app.name;
        let mut backoff = Backoff::default();
        loop {
            let started = Instant::now();
            let status = match self.spawn() {
                Ok(mut instance) => {
                    tracing::info!(
                        "{name} started (pid {}, port {})",
                        instance.pid,
                        self.handle.addr.port()
                    );
                    tokio::select! {
                        status = self.watch(&mut instance) => status,
                        deadline = &mut stop_requested => {
                            return self.stop(instance, deadline.unwrap_or_else(|_| Instant::now())).await;
                        }
                    }
                }
                Err(status) => status,
            };
            self.handle.set_ready(false);
            if !should_restart(self.app.restart, status) {
                tracing::error!(
                    "{name} exited with {status}; restart = {:?}: stopping zoo",
                    self.app.restart
                );
                let _ = self.final_exits.send(FinalExit {
                    app: name.clone(),
                    status,
                });
                return Stopped::Forcibly;
            }
            let delay = backoff.delay_after(started.elapsed());
            tracing::warn!("{name} exited with {status}; restarting in {delay:?}");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = &mut stop_requested => return Stopped::Cleanly,
            }
        }
    }

    /// Starts the app, or returns the status a shell would report for a program that cannot
    /// be executed (127 not found, 126 otherwise).
    fn spawn(&self) -> Result<Instance, ExitStatus> {
        let app = &self.app;
        let mut command = match &app.command {
            config::Command::Shell(line) => {
                let mut command = Command::new("/bin/sh");
                command.arg("-c").arg(format!("exec {line}"));
                command
            }
            config::Command::Argv(argv) => {
                let mut command = Command::new(&argv[0]);
                command.args(&argv[1..]);
                command
            }
        };
        command
            .process_group(0)
            .env("PORT", self.handle.addr.port().to_string())
            .envs(app.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = &app.dir {
            command.current_dir(dir);
        }
        let (mut child, exit) = self.reaper.spawn(&mut command).map_err(|error| {
            tracing::error!("{}: cannot start: {error}", app.name);
            ExitStatus::Code(if error.kind() == io::ErrorKind::NotFound {
                127
            } else {
                126
            })
        })?;
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(output::forward_lines(
                app.name.clone(),
                OwnedFd::from(stdout),
                output::Stream::Stdout,
            ));
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(output::forward_lines(
                app.name.clone(),
                OwnedFd::from(stderr),
                output::Stream::Stderr,
            ));
        }
        #[allow(clippy::cast_possible_wrap)]
        let pid = Pid::from_raw(child.id() as i32);
        Ok(Instance { pid, exit })
    }

    /// Probes the instance until ready, then waits for it to exit. An instance that is not
    /// ready by the deadline is killed and counts as a failed start.
    async fn watch(&self, instance: &mut Instance) -> ExitStatus {
        let ready = &self.app.ready;
        let probing = async {
            let deadline = Instant::now() + ready.deadline;
            while Instant::now() < deadline {
                if probe::passes(&ready.probe, self.handle.addr, ready.timeout).await {
                    tracing::info!("{} ready on {}", self.app.name, self.handle.addr);
                    self.handle.set_ready(true);
                    return std::future::pending::<Infallible>().await;
                }
                tokio::time::sleep(ready.interval).await;
            }
            tracing::error!(
                "{} not ready within {:?}: killing it",
                self.app.name,
                ready.deadline
            );
            signal_group(instance.pid, Signal::SIGKILL);
            std::future::pending::<Infallible>().await
        };
        tokio::select! {
            status = &mut instance.exit => status.unwrap_or(ExitStatus::Code(1)),
            never = probing => match never {},
        }
    }

    /// Sends the stop signal to the instance's group and waits until `deadline`, then kills it.
    async fn stop(&self, mut instance: Instance, deadline: Instant) -> Stopped {
        let name = &self.app.name;
        self.handle.set_ready(false);
        signal_group(instance.pid, Signal::SIGTERM);
        let outcome = match tokio::time::timeout_at(deadline, &mut instance.exit).await {
            Ok(Ok(status)) => {
                tracing::info!("{name} stopped ({status})");
                if status.success() || status == ExitStatus::Signal(Signal::SIGTERM as i32) {
                    Stopped::Cleanly
                } else {
                    Stopped::Forcibly
                }
            }
            Ok(Err(_)) => Stopped::Forcibly,
            Err(_) => {
                tracing::warn!("{name} did not stop in time: sending SIGKILL");
                signal_group(instance.pid, Signal::SIGKILL);
                let _ = tokio::time::timeout(Duration::from_secs(1), &mut instance.exit).await;
                Stopped::Forcibly
            }
        };
        // Whatever the leader left behind in its group (a grandchild holding its stdout, say)
        // must not outlive it.
        signal_group(instance.pid, Signal::SIGKILL);
        outcome
    }
}

fn should_restart(policy: RestartPolicy, status: ExitStatus) -> bool {
    match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => !status.success(),
        RestartPolicy::Never => false,
    }
}

/// Signals a whole process group; a group that is already gone is not an error.
fn signal_group(pgid: Pid, signal: Signal) {
    match killpg(pgid, signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(error) => tracing::warn!("cannot send {signal} to process group {pgid}: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policy_decides_by_exit_status() {
        let failed = ExitStatus::Code(3);
        let killed = ExitStatus::Signal(9);
        let clean = ExitStatus::Code(0);
        assert!(should_restart(RestartPolicy::Always, clean));
        assert!(should_restart(RestartPolicy::OnFailure, failed));
        assert!(should_restart(RestartPolicy::OnFailure, killed));
        assert!(!should_restart(RestartPolicy::OnFailure, clean));
        assert!(!should_restart(RestartPolicy::Never, failed));
    }

    #[test]
    fn exit_status_maps_signals_to_128_plus_n() {
        assert_eq!(ExitStatus::Signal(15).as_code(), 143);
        assert_eq!(ExitStatus::Code(7).as_code(), 7);
    }
}
