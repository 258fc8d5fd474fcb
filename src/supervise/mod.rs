//! Supervision: starts each app in its own process group with `PORT` set, once the apps it
//! depends on are ready; forwards its output; probes it until ready (and for liveness);
//! restarts it by its policy with backoff and a restart budget; forwards SIGUSR1, SIGUSR2 and
//! SIGWINCH to every app's group; and stops the apps in reverse dependency order (stop signal
//! to the whole group, SIGKILL at the app's grace or the global deadline). Exit statuses come
//! only from the [`Reaper`].
//!
//! The proxy sees an app only through its [`AppHandle`]: where it listens and whether it is
//! ready. The admin side sees it through a [`SupervisorHandle`]: a status snapshot per app and
//! restart/stop/start commands. Nothing here knows about HTTP routing.

mod backoff;
mod command;
mod dotenv;
mod output;
mod probe;
mod reaper;
mod reload;
mod runner;

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config;
pub use output::RecentLines;
pub use reaper::{ExitStatus, Reaper};
use runner::{AppRunner, RunnerMessage};

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
    #[error("no app named `{app}`")]
    UnknownApp { app: String },
    #[error("app `{app}` is no longer supervised (zoo is stopping)")]
    Gone { app: String },
}

/// What the request path needs to know about one app.
#[derive(Debug)]
pub struct AppHandle {
    pub name: String,
    /// Loopback port the serving instance listens on (its `PORT`); a replace switches it to
    /// the new instance's in one store, and each request reads it once, lock-free.
    port: AtomicU16,
    /// Set while the current instance has passed its readiness probe and not exited since.
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppState {
    /// Waiting for the apps it depends on to be ready.
    Waiting,
    /// Started, not ready yet.
    Starting,
    /// Passed its readiness probe.
    Ready,
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
    /// The port of the serving instance.
    pub port: u16,
    pub state: AppState,
    /// The running instance's pid (also its process group id).
    pub pid: Option<u32>,
    pub ready: bool,
    /// Automatic restarts since zoo started.
    pub restarts: u32,
    /// How long the current instance has been running.
    pub uptime: Option<Duration>,
    pub last_exit: Option<ExitStatus>,
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
}

/// The part of one app's status only its runner writes; read for snapshots and signals.
#[derive(Debug)]
struct Progress {
    state: AppState,
    pid: Option<Pid>,
    started: Option<std::time::Instant>,
    restarts: u32,
    last_exit: Option<ExitStatus>,
}

/// Shared between an app's runner (writer) and the [`SupervisorHandle`] (readers).
#[derive(Debug)]
struct Tracked {
    handle: Arc<AppHandle>,
    progress: Mutex<Progress>,
    /// The runner's inbox; closed once the runner has ended.
    controls: mpsc::UnboundedSender<RunnerMessage>,
}

impl Tracked {
    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn status(&self) -> AppStatus {
        let progress = self.progress();
        AppStatus {
            name: self.handle.name.clone(),
            port: self.handle.addr().port(),
            state: progress.state,
            #[allow(clippy::cast_sign_loss)]
            pid: progress.pid.map(|pid| pid.as_raw() as u32),
            ready: self.handle.is_ready(),
            restarts: progress.restarts,
            uptime: progress.started.map(|started| started.elapsed()),
            last_exit: progress.last_exit,
        }
    }
}

/// A cheap, cloneable view of the supervised apps for the admin side: status, commands, and
/// the changes a reload makes to the set of apps.
#[derive(Debug, Clone)]
pub struct SupervisorHandle {
    registry: Arc<Registry>,
}

/// Everything supervised now, shared by the [`Supervisor`], its [`SupervisorHandle`]s and the
/// runners (which look up the apps they depend on here, so a reload's new handles count).
#[derive(Debug)]
struct Registry {
    reaper: Arc<Reaper>,
    final_exits: mpsc::UnboundedSender<FinalExit>,
    apps: Mutex<Apps>,
}

#[derive(Debug, Default)]
struct Apps {
    /// In config order; during a reload an app being replaced is listed twice, the old
    /// instance first.
    running: Vec<Running>,
    /// Set once zoo is stopping: no app is started after that.
    closed: bool,
}

/// One app's runner.
#[derive(Debug)]
struct Running {
    config: config::App,
    tracked: Arc<Tracked>,
    task: JoinHandle<Stopped>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Apps> {
        self.apps.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SupervisorHandle {
    /// Every app's status, in config order.
    #[must_use]
    pub fn status(&self) -> Vec<AppStatus> {
        let apps = self.registry.lock();
        apps.running
            .iter()
            .map(|running| running.tracked.status())
            .collect()
    }

    /// Sends `command` to the app named `app`; it is carried out asynchronously.
    ///
    /// # Errors
    /// [`SuperviseError::UnknownApp`] for a name not in the config, [`SuperviseError::Gone`]
    /// once the app's runner has ended (zoo is shutting down).
    pub fn send(&self, app: &str, command: AppCommand) -> Result<(), SuperviseError> {
        let apps = self.registry.lock();
        if apps.closed {
            return Err(SuperviseError::Gone {
                app: app.to_owned(),
            });
        }
        // The last one of a name is the newest (a reload's replacement).
        let running = apps
            .running
            .iter()
            .rfind(|running| running.config.name == app)
            .ok_or_else(|| SuperviseError::UnknownApp {
                app: app.to_owned(),
            })?;
        running
            .tracked
            .controls
            .send(RunnerMessage::App(command))
            .map_err(|_| SuperviseError::Gone {
                app: app.to_owned(),
            })
    }

    /// The handle of the newest app named `name`.
    fn handle(&self, name: &str) -> Option<Arc<AppHandle>> {
        let apps = self.registry.lock();
        apps.running
            .iter()
            .rfind(|running| running.config.name == name)
            .map(|running| Arc::clone(&running.tracked.handle))
    }

    /// Sends `signal` to the process group of every running app.
    fn signal_all(&self, signal: Signal) {
        for running in &self.registry.lock().running {
            if let Some(pid) = running.tracked.progress().pid {
                signal_group(pid, signal);
            }
        }
    }

    /// Starts a runner for each app on its handle and lists them last; fails once zoo is
    /// stopping. All are listed before any runner can look one up, so an app started with its
    /// dependencies always finds them (and waits for them to be ready).
    fn launch<'a>(
        &self,
        launched: impl IntoIterator<Item = (&'a config::App, Arc<AppHandle>)>,
    ) -> Result<(), SuperviseError> {
        let mut apps = self.registry.lock();
        for (app, handle) in launched {
            if apps.closed {
                return Err(SuperviseError::Gone {
                    app: app.name.clone(),
                });
            }
            self.launch_one(&mut apps.running, app, handle);
        }
        Ok(())
    }

    fn launch_one(&self, running: &mut Vec<Running>, app: &config::App, handle: Arc<AppHandle>) {
        let (controls, inbox) = mpsc::unbounded_channel();
        let tracked = Arc::new(Tracked {
            handle,
            progress: Mutex::new(Progress {
                state: AppState::Waiting,
                pid: None,
                started: None,
                restarts: 0,
                last_exit: None,
            }),
            controls,
        });
        let task = tokio::spawn(
            AppRunner {
                app: app.clone(),
                tracked: Arc::clone(&tracked),
                apps: self.clone(),
                reaper: Arc::clone(&self.registry.reaper),
                final_exits: self.registry.final_exits.clone(),
            }
            .run(inbox),
        );
        running.push(Running {
            config: app.clone(),
            tracked,
            task,
        });
    }
}

/// All supervised apps.
pub struct Supervisor {
    apps_handle: SupervisorHandle,
    final_exits: mpsc::UnboundedReceiver<FinalExit>,
    /// Forwards SIGUSR1, SIGUSR2 and SIGWINCH to the apps until zoo stops.
    forwarder: JoinHandle<()>,
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
    /// Starts every app of `apps` with the handle [`plan`] made for it; each waits for the
    /// apps it depends on to be ready. Must run inside a tokio runtime.
    ///
    /// # Errors
    /// [`SuperviseError::Reaper`] when SIGCHLD or the forwarded signals cannot be watched.
    pub fn start(apps: &[config::App], handles: &[Arc<AppHandle>]) -> Result<Self, SuperviseError> {
        let reaper = Reaper::start().map_err(SuperviseError::Reaper)?;
        let watch = |kind| signal(kind).map_err(SuperviseError::Reaper);
        let forwarded = ForwardedSignals {
            usr1: watch(SignalKind::user_defined1())?,
            usr2: watch(SignalKind::user_defined2())?,
            winch: watch(SignalKind::window_change())?,
        };
        let (final_sender, final_exits) = mpsc::unbounded_channel();
        let controller = SupervisorHandle {
            registry: Arc::new(Registry {
                reaper,
                final_exits: final_sender,
                apps: Mutex::default(),
            }),
        };
        controller.launch(apps.iter().zip(handles.iter().cloned()))?;
        let forwarder = tokio::spawn(forwarded.run(controller.clone()));
        Ok(Self {
            apps_handle: controller,
            final_exits,
            forwarder,
        })
    }

    /// A handle for status snapshots and per-app commands that outlives borrows of `self`.
    #[must_use]
    pub fn handle(&self) -> SupervisorHandle {
        self.apps_handle.clone()
    }

    /// Resolves when an app has exited for good; pending forever when there are no apps.
    pub async fn final_exit(&mut self) -> FinalExit {
        match self.final_exits.recv().await {
            Some(exit) => exit,
            None => std::future::pending().await,
        }
    }

    /// Stops every app (those a reload added too), dependents before what they depend on
    /// (apps on one level at once); whatever still runs at `deadline` (or its own `grace`) is
    /// killed. Returns whether every app stopped cleanly. No app starts after this began.
    pub async fn stop_all(self, deadline: Instant) -> bool {
        self.forwarder.abort();
        let running = {
            let mut apps = self.apps_handle.registry.lock();
            apps.closed = true;
            std::mem::take(&mut apps.running)
        };
        let configs: Vec<config::App> = running.iter().map(|app| app.config.clone()).collect();
        let levels = stop_levels(&configs);
        let mut running: Vec<Option<Running>> = running.into_iter().map(Some).collect();
        let mut clean = true;
        let deepest = levels.iter().copied().max().unwrap_or(0);
        for level in (0..=deepest).rev() {
            let mut stopping = Vec::new();
            for (index, app) in running.iter_mut().enumerate() {
                if levels[index] != level {
                    continue;
                }
                if let Some(app) = app.take() {
                    stopping.push(app);
                }
            }
            for app in &stopping {
                // A send error means the runner already ended (the app exited for good).
                let _ = app.tracked.controls.send(RunnerMessage::Shutdown(deadline));
            }
            for app in stopping {
                clean &= stopped(&app.config.name, app.task.await);
            }
        }
        clean
    }
}

/// Whether a runner that was told to stop ended cleanly; a runner that failed is logged.
fn stopped(name: &str, ended: Result<Stopped, tokio::task::JoinError>) -> bool {
    match ended {
        Ok(Stopped::Cleanly) => true,
        Ok(Stopped::Forcibly) => false,
        Err(error) => {
            tracing::error!("supervisor of {name} failed: {error}");
            false
        }
    }
}

/// The signals zoo relays to the apps (SIGHUP is zoo's own: it reloads the config).
struct ForwardedSignals {
    usr1: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
    winch: tokio::signal::unix::Signal,
}

impl ForwardedSignals {
    /// Relays log-reopening, reload and terminal-size signals to every app's process group,
    /// as tini does with its child.
    async fn run(mut self, controller: SupervisorHandle) {
        loop {
            let signal = tokio::select! {
                Some(()) = self.usr1.recv() => Signal::SIGUSR1,
                Some(()) = self.usr2.recv() => Signal::SIGUSR2,
                Some(()) = self.winch.recv() => Signal::SIGWINCH,
                else => return,
            };
            tracing::info!("forwarding {signal} to the apps");
            controller.signal_all(signal);
        }
    }
}

/// For each app, its depth in the dependency graph: 0 without dependencies, else one more than
/// its deepest dependency. Validated config has no cycle; a cycle would be cut, not looped.
fn stop_levels(apps: &[config::App]) -> Vec<usize> {
    fn level(apps: &[config::App], index: usize, seen: &mut Vec<usize>) -> usize {
        if seen.contains(&index) {
            return 0;
        }
        seen.push(index);
        let deepest = apps[index]
            .depends_on
            .iter()
            .filter_map(|name| apps.iter().position(|app| app.name == *name))
            .map(|dependency| level(apps, dependency, seen) + 1)
            .max()
            .unwrap_or(0);
        seen.pop();
        deepest
    }
    (0..apps.len())
        .map(|index| level(apps, index, &mut Vec::new()))
        .collect()
}

/// Gives every app its address (picking a free port for those without one) and widens the
/// output prefix column to fit every name.
///
/// # Errors
/// [`SuperviseError::NoFreePort`] when no ephemeral port can be bound.
pub fn plan(apps: &[config::App]) -> Result<Vec<Arc<AppHandle>>, SuperviseError> {
    apps.iter().map(new_handle).collect()
}

/// The handle of a new app (at start, or added by a reload).
fn new_handle(app: &config::App) -> Result<Arc<AppHandle>, SuperviseError> {
    crate::log::reserve_name_width(&app.name);
    let port = match app.port {
        Some(port) => port,
        None => free_port().map_err(|source| SuperviseError::NoFreePort {
            app: app.name.clone(),
            source,
        })?,
    };
    Ok(Arc::new(AppHandle::new(app.name.clone(), port)))
}

/// Binds an ephemeral loopback port and releases it for the app to take.
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
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
    fn exit_status_maps_signals_to_128_plus_n() {
        assert_eq!(ExitStatus::Signal(15).as_code(), 143);
        assert_eq!(ExitStatus::Code(7).as_code(), 7);
    }

    /// A `sleep 30` app with `extra` lines in its table.
    pub(super) fn app_with(name: &str, extra: &str) -> config::App {
        let source = format!("[apps.{name}]\ncommand = \"sleep 30\"\n{extra}");
        config::parse(&source, std::path::Path::new("zoo.toml"), &|_| None)
            .expect("valid config")
            .apps
            .remove(0)
    }

    fn app(name: &str, depends_on: &[&str]) -> config::App {
        let mut app = app_with(name, "");
        app.depends_on = depends_on.iter().map(|name| (*name).to_owned()).collect();
        app
    }

    #[test]
    fn dependents_stop_before_their_dependencies() {
        let apps = [
            app("web", &["api", "cache"]),
            app("db", &[]),
            app("api", &["db"]),
            app("cache", &[]),
        ];
        assert_eq!(stop_levels(&apps), [2, 0, 1, 0]);
    }

    /// A reaper collects every child of the process: two supervisors in parallel tests would
    /// take each other's exit statuses, so they run one at a time.
    static ONE_SUPERVISOR: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// Polls `controller`'s status of its first app until `check` holds (5 s at most).
    async fn until(controller: &SupervisorHandle, check: impl Fn(&AppStatus) -> bool) -> AppStatus {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let status = controller.status().remove(0);
            if check(&status) || Instant::now() >= deadline {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_replacement_that_does_not_get_ready_leaves_the_old_instance_serving() {
        let _alone = ONE_SUPERVISOR.lock().await;
        let dir = tempfile::tempdir().unwrap();
        // `mkdir` passes once: for the first instance, not for its replacement.
        let ready = format!(
            "restart_strategy = \"replace\"\n\
             ready = {{ exec = \"mkdir {}/once\", interval = \"20ms\", deadline = \"300ms\" }}\n",
            dir.path().display()
        );
        let apps = [app_with("idle", &ready)];
        let handles = plan(&apps).unwrap();
        let supervisor = Supervisor::start(&apps, &handles).unwrap();
        let controller = supervisor.handle();
        let first = until(&controller, |status| status.ready).await;
        assert_eq!(first.state, AppState::Ready, "{first:?}");

        controller.send("idle", AppCommand::Restart).unwrap();
        // The replacement gets its deadline; then the old one is still the one serving.
        tokio::time::sleep(Duration::from_millis(800)).await;
        let after = controller.status().remove(0);
        assert_eq!(
            (after.pid, after.port, after.state),
            (first.pid, first.port, AppState::Ready),
            "{after:?}"
        );
        assert!(
            supervisor
                .stop_all(Instant::now() + Duration::from_secs(5))
                .await
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn commands_restart_stop_and_start_one_app() {
        let _alone = ONE_SUPERVISOR.lock().await;
        let apps = [app("idle", &[])];
        let handles = plan(&apps).unwrap();
        let supervisor = Supervisor::start(&apps, &handles).unwrap();
        let controller = supervisor.handle();
        let first = until(&controller, |status| status.pid.is_some()).await;
        assert_eq!(first.state, AppState::Starting);

        controller.send("idle", AppCommand::Restart).unwrap();
        let restarted = until(&controller, |status| {
            status.pid.is_some() && status.pid != first.pid
        })
        .await;
        assert!(
            restarted.pid.is_some() && restarted.pid != first.pid,
            "{restarted:?}"
        );
        assert_eq!(restarted.last_exit, Some(ExitStatus::Signal(15)));
        assert_eq!(restarted.restarts, 0, "a requested restart is not counted");

        controller.send("idle", AppCommand::Stop).unwrap();
        let stopped = until(&controller, |status| status.state == AppState::Stopped).await;
        assert_eq!((stopped.state, stopped.pid), (AppState::Stopped, None));

        controller.send("idle", AppCommand::Start).unwrap();
        let started = until(&controller, |status| status.pid.is_some()).await;
        assert!(started.uptime.is_some(), "{started:?}");

        assert!(matches!(
            controller.send("nope", AppCommand::Start),
            Err(SuperviseError::UnknownApp { .. })
        ));
        assert!(
            supervisor
                .stop_all(Instant::now() + Duration::from_secs(5))
                .await
        );
        assert!(matches!(
            controller.send("idle", AppCommand::Start),
            Err(SuperviseError::Gone { .. })
        ));
    }
}
