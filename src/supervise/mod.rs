//! Supervision: starts each app in its own process group (with `PORT` set when it is a
//! service), once the apps it depends on are ready; forwards its output; probes it until
//! ready (and for liveness); decides what its exit means by its kind and policy (restart with
//! backoff and a restart budget, done, or the end of the container: `policy.rs`); runs tasks
//! once (`task.rs`) and cron jobs at their ticks (`cron.rs`); restarts apps whose watched
//! files changed (`watch.rs`); says where an app that does not get ready listens
//! (`ports.rs`); forwards SIGUSR1, SIGUSR2 and SIGWINCH to every app's group; and stops the
//! apps in reverse dependency order (stop signal to the whole group, SIGKILL at the app's
//! grace or the global deadline). Exit statuses come only from the [`Reaper`].
//!
//! The proxy sees an app only through its [`AppHandle`]: its instances (one unless
//! `replicas`), where each listens (a port, or a Unix socket), whether it is ready, and a
//! [`Lease`] on the one chosen for a request; for an on-demand app, a way to start it. The admin side sees it through a [`SupervisorHandle`]: a status snapshot per app and
//! restart/stop/start/run commands. Nothing here knows about HTTP routing.

mod backoff;
mod command;
mod cron;
mod dotenv;
mod instance;
mod output;
mod policy;
mod ports;
mod probe;
mod reaper;
mod reload;
mod runner;
mod scale;
mod sockets;
mod state;
mod task;
mod watch;

use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{self, AppKind};
pub use reaper::{ExitStatus, Reaper};
use runner::{AppRunner, RunnerMessage};
pub use state::{
    AppCommand, AppHandle, AppState, AppStatus, Dial, FinalExit, InstanceHandle, Lease,
};
use state::{Progress, Tracked, instance_label};

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
    #[error(transparent)]
    SocketPath(#[from] sockets::SocketPathTooLong),
    #[error(
        "app `{app}`: {replicas} instances: expected 1 to {}",
        config::MAX_REPLICAS
    )]
    BadScale { app: String, replicas: usize },
    #[error("app `{app}` is a {}: only services and workers run several instances", kind.as_str())]
    NotScalable { app: String, kind: AppKind },
    #[error("app `{app}` is a {}: only tasks and cron jobs can be run (use `zoo restart` or `zoo start`)", kind.as_str())]
    NotRunnable { app: String, kind: AppKind },
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

/// The runner of one instance of an app.
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

impl Apps {
    /// The runners of the newest app named `name` (a reload's replacement, when it has one),
    /// by instance index.
    fn instances_of(&self, name: &str) -> Vec<&Running> {
        let Some(newest) = self
            .running
            .iter()
            .rfind(|running| running.config.name == name)
        else {
            return Vec::new();
        };
        let mut instances: Vec<&Running> = self
            .running
            .iter()
            .filter(|running| Arc::ptr_eq(&running.tracked.app, &newest.tracked.app))
            .collect();
        instances.sort_by_key(|running| running.tracked.instance.index);
        instances
    }
}

impl Running {
    /// Whether its app runs (or is configured to run) more than one instance, so that its
    /// rows and lines are named `web#INDEX`.
    fn one_of_several(&self) -> bool {
        self.config.replicas > 1 || self.tracked.app.instances().len() > 1
    }
}

impl SupervisorHandle {
    /// Every app's status, in config order.
    #[must_use]
    pub fn status(&self) -> Vec<AppStatus> {
        let apps = self.registry.lock();
        apps.running
            .iter()
            .map(|running| {
                running
                    .tracked
                    .status(&running.config, running.one_of_several())
            })
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
        let instances = apps.instances_of(app);
        let Some(first) = instances.first() else {
            return Err(SuperviseError::UnknownApp {
                app: app.to_owned(),
            });
        };
        let runnable = matches!(first.config.kind, AppKind::Task | AppKind::Cron);
        if command == AppCommand::Run && !runnable {
            return Err(SuperviseError::NotRunnable {
                app: app.to_owned(),
                kind: first.config.kind,
            });
        }
        if command == AppCommand::Restart && instances.len() > 1 {
            let tracked = instances
                .iter()
                .map(|running| Arc::clone(&running.tracked))
                .collect();
            tokio::spawn(scale::roll(first.config.clone(), tracked));
            return Ok(());
        }
        let mut sent = false;
        for running in instances {
            sent |= running
                .tracked
                .controls
                .send(RunnerMessage::App(command))
                .is_ok();
        }
        if sent {
            Ok(())
        } else {
            Err(SuperviseError::Gone {
                app: app.to_owned(),
            })
        }
    }

    /// For an instance stuck in `starting` (the row `status` of [`Self::status`]): where its
    /// process group listens, against its `PORT` (see [`ports::diagnose`]); `None` for any
    /// other.
    #[must_use]
    pub fn diagnosis(&self, status: &AppStatus) -> Option<String> {
        let (pid, port) = {
            let apps = self.registry.lock();
            let instances = apps.instances_of(&status.app);
            let running = instances
                .iter()
                .find(|running| running.tracked.instance.index == status.instance.unwrap_or(0))?;
            let progress = running.tracked.progress();
            let starting = progress.state == AppState::Starting
                && running.config.listens()
                && !running.config.socket;
            (
                progress.pid.filter(|_| starting)?,
                running.tracked.instance.addr().port(),
            )
        };
        Some(ports::diagnose(&status.name, pid, port))
    }

    /// The handle of the newest app named `name`.
    fn handle(&self, name: &str) -> Option<Arc<AppHandle>> {
        let apps = self.registry.lock();
        apps.running
            .iter()
            .rfind(|running| running.config.name == name)
            .map(|running| Arc::clone(&running.tracked.app))
    }

    /// Whether an app that depends on the app `name` has a process now.
    fn dependent_runs(&self, name: &str) -> bool {
        self.registry.lock().running.iter().any(|running| {
            running
                .config
                .depends_on
                .iter()
                .any(|dependency| dependency == name)
                && running.tracked.progress().pid.is_some()
        })
    }

    /// Sends `signal` to the process group of every running app.
    fn signal_all(&self, signal: Signal) {
        for running in &self.registry.lock().running {
            if let Some(pid) = running.tracked.progress().pid {
                signal_group(pid, signal);
            }
        }
    }

    /// Starts a runner for each instance of each app on its handle and lists them last; fails once zoo is
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
            for instance in handle.instances().iter() {
                self.launch_one(&mut apps.running, app, &handle, Arc::clone(instance));
            }
        }
        Ok(())
    }

    /// Starts the runner of one instance of `app`.
    fn launch_one(
        &self,
        running: &mut Vec<Running>,
        app: &config::App,
        handle: &Arc<AppHandle>,
        instance: Arc<InstanceHandle>,
    ) {
        let (controls, inbox) = mpsc::unbounded_channel();
        let several = app.replicas > 1 || handle.instances().len() > 1;
        // The runner's lines and its output prefix name the instance (`web#1`); the registry
        // keeps the app's own config, by which commands find it.
        let mut runner_app = app.clone();
        runner_app.name = instance_label(&app.name, several.then_some(instance.index));
        crate::log::reserve_name_width(&runner_app.name);
        let tracked = Arc::new(Tracked {
            app: Arc::clone(handle),
            instance,
            progress: Mutex::new(Progress::default()),
            controls,
        });
        let task = tokio::spawn(
            AppRunner {
                app: runner_app,
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
/// [`SuperviseError::NoFreePort`] when no ephemeral port can be bound,
/// [`SuperviseError::SocketPath`] when an app's socket path would be too long.
pub fn plan(
    apps: &[config::App],
    config_path: &Path,
) -> Result<Vec<Arc<AppHandle>>, SuperviseError> {
    let sockets_base = crate::rundir::app_sockets_base(config_path);
    apps.iter()
        .map(|app| new_handle(app, &sockets_base))
        .collect()
}

/// The handle of a new app (at start, or added by a reload), with its `replicas` instances;
/// a socket app's sockets go under `sockets_base` (made at each start, not here).
fn new_handle(app: &config::App, sockets_base: &Path) -> Result<Arc<AppHandle>, SuperviseError> {
    crate::log::reserve_name_width(&app.name);
    // Kept for every app: a reload may turn `socket` on.
    let sockets_base: Option<Arc<Path>> = Some(Arc::from(sockets_base));
    let places = (0..app.replicas)
        .map(|index| instance_place(app, index, sockets_base.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AppHandle::with_instances(
        app.name.clone(),
        app.balance,
        app.start == config::StartMode::OnDemand,
        sockets_base,
        places,
    ))
}

/// Where instance `index` of `app` listens: the config's port, else a free one; or, with
/// `socket = true`, its socket under `sockets_base` (port 0, never dialled).
fn instance_place(
    app: &config::App,
    index: usize,
    sockets_base: Option<&Path>,
) -> Result<(u16, Option<Arc<Path>>), SuperviseError> {
    if let Some(base) = sockets_base.filter(|_| app.socket) {
        let path = sockets::socket_path(base, &app.name, index, app.replicas)?;
        return Ok((0, Some(Arc::from(path))));
    }
    let port = match app.port_of(index) {
        Some(port) => Ok(port),
        // Nothing connects to an app without a port: 0 is never dialled.
        None if !app.listens() => Ok(0),
        None => free_port().map_err(|source| SuperviseError::NoFreePort {
            app: app.name.clone(),
            source,
        }),
    }?;
    Ok((port, None))
}

/// Ports [`free_port`] handed out lately, which an app may not have bound yet.
const RECENT_PICKS: usize = 1024;
/// Tries at a port not handed out lately before one is taken anyway.
const PICK_TRIES: usize = 64;

/// Binds an ephemeral loopback port and releases it for the app to take. The kernel may give
/// a port just released again (127 repeats in 2,000 binds of port 0 here), and two apps
/// started together must not be handed one port: one handed out lately is picked again.
fn free_port() -> io::Result<u16> {
    static RECENT: Mutex<std::collections::VecDeque<u16>> =
        Mutex::new(std::collections::VecDeque::new());
    let mut recent = RECENT.lock().unwrap_or_else(PoisonError::into_inner);
    let mut port = 0;
    for _ in 0..PICK_TRIES {
        port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        if !recent.contains(&port) {
            break;
        }
    }
    if recent.len() == RECENT_PICKS {
        recent.pop_front();
    }
    recent.push_back(port);
    Ok(port)
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
    use std::time::Duration;

    use super::*;

    #[test]
    fn free_ports_handed_out_together_are_distinct() {
        // Half the memory of recent picks, as other tests pick too; without it, 512 binds of
        // port 0 repeat one in about 99 runs of 100.
        let picks: Vec<u16> = (0..RECENT_PICKS / 2)
            .map(|_| free_port().expect("a free port"))
            .collect();
        let distinct: std::collections::HashSet<_> = picks.iter().collect();
        assert_eq!(distinct.len(), picks.len(), "a port was handed out twice");
    }

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

    /// Polls `found` until it gives a value (5 s at most).
    async fn poll_for<T>(mut found: impl FnMut() -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(value) = found() {
                return Some(value);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The pids of this process's `sleep` children (the test apps) whose environment has
    /// `PORT=port`.
    fn processes_with_port(port: u16) -> Vec<u32> {
        let me = std::process::id().to_string();
        let wanted = format!("PORT={port}");
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let read =
                    |file: &str| std::fs::read(format!("/proc/{pid}/{file}")).unwrap_or_default();
                let stat = String::from_utf8_lossy(&read("stat")).into_owned();
                let parent = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1).map(str::to_owned));
                parent.as_deref() == Some(me.as_str())
                    && read("cmdline").starts_with(b"sleep\0")
                    && read("environ")
                        .split(|byte| *byte == 0)
                        .any(|var| var == wanted.as_bytes())
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_replacement_that_does_not_get_ready_leaves_the_old_instance_serving() {
        let _alone = ONE_SUPERVISOR.lock().await;
        let dir = tempfile::tempdir().unwrap();
        // `mkdir` passes once: for the first instance, not for its replacement. Each probe
        // records the port of the instance it checks, so the test sees the replacement's.
        let ready = format!(
            "restart_strategy = \"replace\"\n\
             ready = {{ exec = \"echo $PORT >> {dir}/probed; mkdir {dir}/once\", interval = \"20ms\", deadline = \"300ms\" }}\n",
            dir = dir.path().display()
        );
        let apps = [app_with("idle", &ready)];
        let handles = plan(&apps, Path::new("zoo.toml")).unwrap();
        let supervisor = Supervisor::start(&apps, &handles).unwrap();
        let controller = supervisor.handle();
        let first = until(&controller, |status| status.ready).await;
        assert_eq!(first.state, AppState::Ready, "{first:?}");
        let first_port = first.port.expect("a service has a port");

        // The process check below sees a running instance (else its "gone" proves nothing).
        assert_eq!(
            processes_with_port(first_port),
            [first.pid.unwrap()],
            "{first:?}"
        );
        controller.send("idle", AppCommand::Restart).unwrap();
        // Evidence first: the replacement was started (a probe ran on its port), then failed
        // (after its deadline no process of it is left); only then is the old one checked.
        let probed = dir.path().join("probed");
        let replacement_port = poll_for(|| {
            std::fs::read_to_string(&probed)
                .unwrap_or_default()
                .lines()
                .filter_map(|line| line.trim().parse::<u16>().ok())
                .find(|port| *port != first_port)
        })
        .await
        .expect("the replacement was never probed");
        poll_for(|| {
            processes_with_port(replacement_port)
                .is_empty()
                .then_some(())
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "the replacement is still running: {:?}",
                processes_with_port(replacement_port)
            )
        });
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
        let handles = plan(&apps, Path::new("zoo.toml")).unwrap();
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
