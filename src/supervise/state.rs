//! What is known about one supervised app while it runs: the [`AppHandle`] the request path
//! reads (address, readiness), the [`Progress`] its runner writes (state, pid, restarts, last
//! exit and run), and the [`AppStatus`] snapshot `zoo status` and the metrics read. Nothing
//! here starts or stops a process.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use nix::unistd::Pid;
use tokio::sync::{Notify, mpsc};

use super::ExitStatus;
use super::output::RecentLines;
use super::runner::RunnerMessage;
use crate::config::{self, AppKind};

/// What the request path needs to know about one app.
#[derive(Debug)]
pub struct AppHandle {
    pub name: String,
    /// Loopback port the serving instance listens on (its `PORT`); a replace switches it to
    /// the new instance's in one store, and each request reads it once, lock-free. 0 for an
    /// app without a port (nothing routes to it).
    port: AtomicU16,
    /// Set while the current instance has passed its readiness probe and not exited since;
    /// for a task, while its last run succeeded (what its dependents wait for).
    ready: AtomicBool,
    /// Wakes requests waiting for the app to become ready.
    ready_changed: Notify,
    /// The app's last output lines, for `zoo logs`.
    pub recent: Arc<RecentLines>,
}

impl AppHandle {
    pub(crate) fn new(name: String, port: u16) -> Self {
        Self {
            name,
            port: AtomicU16::new(port),
            ready: AtomicBool::new(false),
            ready_changed: Notify::new(),
            recent: Arc::default(),
        }
    }

    /// Where the serving instance listens.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port.load(Ordering::Acquire)))
    }

    /// Routes new requests to the instance listening on `port`.
    pub(crate) fn switch_port(&self, port: u16) {
        self.port.store(port, Ordering::Release);
    }

    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Waits until the app is ready or `timeout` passes; returns whether it is ready.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = crate::deadline::after(timeout);
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

/// Where an app is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AppState {
    /// Waiting for the apps it depends on to be ready.
    #[default]
    Waiting,
    /// Started, not ready yet.
    Starting,
    /// Passed its readiness probe.
    Ready,
    /// A task's run (or a cron job's) is under way.
    Running,
    /// A cron job waiting for its next tick.
    Scheduled,
    /// Finished for now: a task that succeeded, or a service or worker that exited 0 under
    /// `restart = "on-failure"`; `zoo run`, `start` or `restart` starts it again.
    Done,
    /// Exited; restarting after a delay.
    Backoff,
    /// Stop signal sent, waiting for it to exit.
    Stopping,
    /// Stopped on request (`AppCommand::Stop`); starts again on `Start` or `Restart`.
    Stopped,
    /// Exited for good (restart policy or budget); zoo is going down.
    Failed,
}

impl AppState {
    /// The state's name in `zoo status`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Running => "running",
            Self::Scheduled => "scheduled",
            Self::Done => "done",
            Self::Backoff => "backoff",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
        }
    }
}

/// One app's status, as `zoo status` and the metrics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppStatus {
    pub name: String,
    pub kind: AppKind,
    /// The port of the serving instance; `None` for an app without one.
    pub port: Option<u16>,
    pub state: AppState,
    /// The running instance's pid (also its process group id).
    pub pid: Option<u32>,
    pub ready: bool,
    /// Automatic restarts since zoo started.
    pub restarts: u32,
    /// How long the current instance has been running.
    pub uptime: Option<Duration>,
    pub last_exit: Option<ExitStatus>,
    /// How long the last instance that exited had run.
    pub last_run: Option<Duration>,
    /// Instances that exited (runs of a task or cron job) since zoo started.
    pub runs: u64,
    /// Runs that failed (a non-zero exit, a signal, a timeout).
    pub failures: u64,
    /// When a run last succeeded.
    pub last_success: Option<SystemTime>,
    /// A cron job's ticks skipped because its previous run was still going.
    pub skipped: u64,
    /// A cron job's next tick, unless it is stopped.
    pub next_run: Option<SystemTime>,
}

/// A request to one app's runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppCommand {
    /// Stop the running instance (if any) and start a new one at once, without backoff.
    Restart,
    /// Stop it and keep it stopped; this does not take the container down.
    Stop,
    /// Start it if it is stopped or waiting out a backoff delay.
    Start,
    /// Run a task again now, or a cron job's command outside its schedule (only those:
    /// [`super::SupervisorHandle::send`] refuses the others).
    Run,
}

/// The part of one app's status only its runner writes; read for snapshots and signals.
#[derive(Debug, Default)]
pub(super) struct Progress {
    pub(super) state: AppState,
    pub(super) pid: Option<Pid>,
    pub(super) started: Option<std::time::Instant>,
    pub(super) restarts: u32,
    pub(super) last_exit: Option<ExitStatus>,
    pub(super) last_run: Option<Duration>,
    pub(super) runs: u64,
    pub(super) failures: u64,
    pub(super) last_success: Option<SystemTime>,
    pub(super) skipped: u64,
    pub(super) next_run: Option<SystemTime>,
}

/// Shared between an app's runner (writer) and the [`super::SupervisorHandle`] (readers).
#[derive(Debug)]
pub(super) struct Tracked {
    pub(super) handle: Arc<AppHandle>,
    pub(super) progress: Mutex<Progress>,
    /// The runner's inbox; closed once the runner has ended.
    pub(super) controls: mpsc::UnboundedSender<RunnerMessage>,
}

impl Tracked {
    pub(super) fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The status of the app configured as `app`, which this tracks.
    pub(super) fn status(&self, app: &config::App) -> AppStatus {
        let progress = self.progress();
        AppStatus {
            name: self.handle.name.clone(),
            kind: app.kind,
            port: app.listens().then(|| self.handle.addr().port()),
            state: progress.state,
            #[allow(clippy::cast_sign_loss)]
            pid: progress.pid.map(|pid| pid.as_raw() as u32),
            ready: self.handle.is_ready(),
            restarts: progress.restarts,
            uptime: progress.started.map(|started| started.elapsed()),
            last_exit: progress.last_exit,
            last_run: progress.last_run,
            runs: progress.runs,
            failures: progress.failures,
            last_success: progress.last_success,
            skipped: progress.skipped,
            next_run: progress.next_run,
        }
    }
}
