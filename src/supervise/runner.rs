//! The life of one app: wait for its dependencies, start, probe, watch, restart with backoff
//! within its budget, obey commands (restart, stop, start) and the final shutdown. One task
//! per app; it is the only writer of the app's [`Progress`], readiness and port.
//!
//! A `restart` of an app with `restart_strategy = "replace"` is a replace: for a while the
//! runner owns two instances, the serving one and its replacement on a fresh port, and
//! switches the app's port to the new one only once it is ready.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::backoff::{Backoff, RestartBudget};
use super::instance::Instance;
use super::policy::AfterExit;
use super::{
    AppCommand, AppState, ExitStatus, FinalExit, Reaper, Stopped, SupervisorHandle, Tracked,
    free_port, ports, probe, signal_group, watch,
};
use crate::config::{self, AppKind, RestartStrategy};

/// Grace of an app stopped by command (not by shutdown) that has no `grace` of its own;
/// Docker's stop timeout, like the global default.
pub(super) const COMMAND_GRACE: Duration = Duration::from_secs(10);
/// How often an app waiting for a dependency looks it up again.
const DEPENDENCY_RECHECK: Duration = Duration::from_secs(1);
/// Between switching an app to its replacement and stopping the old instance: requests that
/// read the old address just before the switch still get connected to the old instance,
/// which finishes them, instead of finding its listener closed.
const SWITCH_SETTLE: Duration = Duration::from_millis(100);

/// What a runner is told.
#[derive(Debug, Clone, Copy)]
pub(super) enum RunnerMessage {
    /// zoo is stopping: stop the app, killing it at this deadline at the latest, and end.
    Shutdown(Instant),
    App(AppCommand),
    /// Watched files changed (`watch`): restart it if it runs, or now if it waits to.
    FilesChanged,
}

/// Cloned for each run of a cron job, which runs in a task of its own.
#[derive(Clone)]
pub(super) struct AppRunner {
    pub(super) app: config::App,
    pub(super) tracked: Arc<Tracked>,
    /// Where the apps this one waits for before each start are looked up by name, at each
    /// start: a reload may have replaced them.
    pub(super) apps: SupervisorHandle,
    pub(super) reaper: Arc<Reaper>,
    pub(super) final_exits: mpsc::UnboundedSender<FinalExit>,
}

/// What the runner does next.
enum Next {
    Start,
    /// Restart after this delay.
    Delay(Duration),
    /// Stopped on request: wait for `Start`/`Restart`.
    Parked,
    /// Finished (see [`AfterExit::Done`]): wait for `Start`/`Restart`, as done.
    Done,
    /// Not started until a request wants it (`start = "on-demand"`), or `Start`/`Restart`.
    Idle,
}

/// How waiting for something (a restart delay, the dependencies) ended.
pub(super) enum Waited {
    /// It was over, or `Start`/`Restart` cut it short.
    Proceed,
    /// `Stop` was requested.
    Park,
    /// zoo is stopping.
    Shutdown,
}

/// How watching an instance ended.
enum Watched {
    Exited(ExitStatus),
    /// It failed its liveness probe too often; it still runs.
    Unhealthy,
    /// It had no request and no open tunnel for its `idle_stop`; it still runs.
    Idle,
}

/// How waiting for a replacement to get ready ended.
enum Replacing {
    Ready,
    NotReady,
    NewExited(ExitStatus),
    /// The serving instance exited meanwhile.
    OldExited(ExitStatus),
    /// A stop or the shutdown came in.
    Interrupted(RunnerMessage),
}

/// How a started instance ended.
enum Ended {
    /// It exited by itself with this status.
    Exited(ExitStatus),
    /// It was stopped by a command; the runner goes on with `Next`.
    Commanded(Next),
    /// It was stopped because zoo is stopping.
    Shutdown(Stopped),
}

impl AppRunner {
    pub(super) async fn run(self, inbox: mpsc::UnboundedReceiver<RunnerMessage>) -> Stopped {
        match self.app.kind {
            AppKind::Task => self.run_task(inbox).await,
            AppKind::Cron => self.run_cron(inbox).await,
            AppKind::Service | AppKind::Worker => self.run_until_stopped(inbox).await,
        }
    }

    /// The life of a service or worker: it runs until stopped, restarted by its policy.
    async fn run_until_stopped(self, mut inbox: mpsc::UnboundedReceiver<RunnerMessage>) -> Stopped {
        let name = &self.app.name;
        // Watching for as long as the app is supervised.
        let _watch =
            watch::start(&self.app, self.tracked.controls.clone()).unwrap_or_else(|error| {
                tracing::error!("{name}: file changes will not restart it: {error}");
                None
            });
        let mut backoff = Backoff::new(&self.app.restarts);
        let mut budget = RestartBudget::new(&self.app.restarts);
        let mut next = match self.app.start {
            config::StartMode::Boot => Next::Start,
            config::StartMode::OnDemand => Next::Idle,
        };
        loop {
            match next {
                Next::Start => {}
                Next::Idle => {
                    self.set_state(AppState::Idle);
                    match wait_or_obey(&mut inbox, self.tracked.app.demanded()).await {
                        Waited::Proceed => tracing::info!("{name}: starting on demand"),
                        Waited::Park => {
                            next = Next::Parked;
                            continue;
                        }
                        Waited::Shutdown => return Stopped::Cleanly,
                    }
                }
                Next::Delay(delay) => {
                    self.set_state(AppState::Backoff);
                    match wait_or_obey(&mut inbox, tokio::time::sleep(delay)).await {
                        Waited::Proceed => {}
                        Waited::Park => {
                            tracing::info!("{name} stopped on request (restart cancelled)");
                            next = Next::Parked;
                            continue;
                        }
                        Waited::Shutdown => {
                            tracing::info!("{name}: pending restart cancelled");
                            return Stopped::Cleanly;
                        }
                    }
                }
                Next::Parked | Next::Done => {
                    if matches!(next, Next::Parked) {
                        self.set_state(AppState::Stopped);
                    } else {
                        self.set_state(AppState::Done);
                    }
                    match inbox.recv().await {
                        None | Some(RunnerMessage::Shutdown(_)) => return Stopped::Cleanly,
                        Some(RunnerMessage::App(AppCommand::Stop)) => {
                            next = Next::Parked;
                            continue;
                        }
                        // Stopped or done on purpose: an edit does not start it.
                        Some(RunnerMessage::FilesChanged) => continue,
                        Some(RunnerMessage::App(
                            AppCommand::Start | AppCommand::Restart | AppCommand::Run,
                        )) => {}
                    }
                }
            }
            if !self.app.depends_on.is_empty() {
                self.set_state(AppState::Waiting);
                match wait_or_obey(&mut inbox, self.wait_for_dependencies()).await {
                    Waited::Proceed => {}
                    Waited::Park => {
                        next = Next::Parked;
                        continue;
                    }
                    Waited::Shutdown => return Stopped::Cleanly,
                }
            }
            let started = Instant::now();
            let status = match self.spawn(self.own_port()) {
                Ok(instance) => match self.supervise(instance, &mut inbox).await {
                    Ended::Exited(status) => status,
                    Ended::Commanded(then) => {
                        next = then;
                        continue;
                    }
                    Ended::Shutdown(stopped) => return stopped,
                },
                Err(status) => status,
            };
            self.tracked.instance.set_ready(false);
            match self.after_exit(status, started.elapsed(), &mut backoff, &mut budget) {
                AfterExit::Delay(delay) => next = Next::Delay(delay),
                AfterExit::Done => next = Next::Done,
                AfterExit::Fail => return self.fail(status),
            }
        }
    }

    /// Watches a started instance until it exits, or stops it when told to; a `Restart` of a
    /// replace app swaps in a new instance and goes on watching that one.
    async fn supervise(
        &self,
        mut instance: Instance,
        inbox: &mut mpsc::UnboundedReceiver<RunnerMessage>,
    ) -> Ended {
        self.serving(&instance, AppState::Starting);
        loop {
            let interrupted = {
                let watch = self.watch(instance.pid, instance.port, &mut instance.exit);
                tokio::pin!(watch);
                loop {
                    tokio::select! {
                        status = &mut watch => break Ok(status),
                        message = inbox.recv() => match message {
                            // Already running: nothing to start.
                            Some(RunnerMessage::App(AppCommand::Start | AppCommand::Run)) => {}
                            Some(RunnerMessage::FilesChanged) => {
                                break Err(RunnerMessage::App(AppCommand::Restart));
                            }
                            Some(message) => break Err(message),
                            None => break Err(RunnerMessage::Shutdown(Instant::now())),
                        },
                    }
                }
            };
            match interrupted {
                Ok(Watched::Exited(status)) => {
                    self.exited(&mut instance, status).await;
                    return Ended::Exited(status);
                }
                Ok(Watched::Idle) => {
                    // Cleared first: a request that comes while it stops starts it again.
                    self.tracked.app.forget_demand();
                    tracing::info!(
                        "{} had no request for {:?}: stopping it (the next request starts it)",
                        self.app.name,
                        self.app.idle_stop.unwrap_or_default()
                    );
                    self.stop(instance, crate::deadline::after(self.command_grace()))
                        .await;
                    return Ended::Commanded(Next::Idle);
                }
                Ok(Watched::Unhealthy) => {
                    let unhealthy = instance.pid;
                    if self.app.restart_strategy == RestartStrategy::Replace {
                        instance = match self.replace(instance, inbox).await {
                            Ok(serving) => serving,
                            Err(ended) => return ended,
                        };
                        if instance.pid != unhealthy {
                            self.tracked.progress().restarts += 1;
                            continue;
                        }
                    }
                    // Stopped, its exit counts as a failure: restarted by its policy.
                    self.tracked.instance.set_ready(false);
                    let deadline = crate::deadline::after(self.command_grace());
                    let (_, status) = self.terminate(instance, deadline).await;
                    let status = status.unwrap_or(ExitStatus::Signal(Signal::SIGKILL as i32));
                    self.book_exit(status);
                    return Ended::Exited(status);
                }
                Err(RunnerMessage::App(AppCommand::Restart))
                    if self.app.restart_strategy == RestartStrategy::Replace =>
                {
                    tracing::info!("{}: Restart requested: replacing it", self.app.name);
                    instance = match self.replace(instance, inbox).await {
                        Ok(serving) => serving,
                        Err(ended) => return ended,
                    };
                }
                Err(message) => return self.obey(instance, message).await,
            }
        }
    }

    /// Stops the instance for a command (within the app's grace) or the shutdown.
    async fn obey(&self, instance: Instance, message: RunnerMessage) -> Ended {
        match self.stop_for(instance, message).await {
            Err(stopped) => Ended::Shutdown(stopped),
            Ok(AppCommand::Stop) => Ended::Commanded(Next::Parked),
            Ok(_) => Ended::Commanded(Next::Start),
        }
    }

    /// Starts a second instance on a fresh port and, once it is ready, switches the app to it
    /// and stops `old`, which finishes its in-flight requests within its grace. When the new
    /// instance cannot start or get ready, `old` keeps serving. `old` exiting meanwhile is a
    /// crash (the normal restart path), and a stop or the shutdown stops both.
    async fn replace(
        &self,
        mut old: Instance,
        inbox: &mut mpsc::UnboundedReceiver<RunnerMessage>,
    ) -> Result<Instance, Ended> {
        let name = &self.app.name;
        let old_pid = old.pid;
        let keeping = |why: &dyn std::fmt::Display| {
            tracing::error!("{name}: cannot replace it ({why}); pid {old_pid} keeps serving");
        };
        let port = match free_port() {
            Ok(port) => port,
            Err(error) => {
                keeping(&format!("no free port: {error}"));
                return Ok(old);
            }
        };
        let Ok(mut new) = self.spawn(Some(port)) else {
            keeping(&"the new instance did not start");
            return Ok(old);
        };
        let outcome = {
            let ready = self.until_ready(port);
            tokio::pin!(ready);
            loop {
                tokio::select! {
                    ready = &mut ready => break if ready {
                        Replacing::Ready
                    } else {
                        Replacing::NotReady
                    },
                    // Its exit is consumed here: it must not be awaited again.
                    status = &mut new.exit => {
                        break Replacing::NewExited(status.unwrap_or(ExitStatus::Code(1)));
                    }
                    status = &mut old.exit => {
                        break Replacing::OldExited(status.unwrap_or(ExitStatus::Code(1)));
                    }
                    message = inbox.recv() => match message {
                        // Already being restarted.
                        Some(RunnerMessage::App(
                            AppCommand::Start | AppCommand::Restart | AppCommand::Run,
                        ) | RunnerMessage::FilesChanged) => {}
                        Some(message) => break Replacing::Interrupted(message),
                        None => break Replacing::Interrupted(RunnerMessage::Shutdown(Instant::now())),
                    },
                }
            }
        };
        match outcome {
            Replacing::Ready => {
                self.tracked.instance.switch_port(port);
                self.tracked.instance.set_ready(true);
                self.serving(&new, AppState::Ready);
                tracing::info!(
                    "{name} switched to pid {} on port {port}; stopping pid {}",
                    new.pid,
                    old.pid
                );
                tokio::time::sleep(SWITCH_SETTLE).await;
                let (_, status) = self
                    .terminate(old, crate::deadline::after(self.command_grace()))
                    .await;
                self.tracked.progress().last_exit = status;
                Ok(new)
            }
            Replacing::NewExited(status) => {
                self.drain(&mut new).await;
                keeping(&format!("the new instance exited with {status}"));
                Ok(old)
            }
            Replacing::NotReady => {
                self.kill(new).await;
                let deadline = self.app.ready.deadline;
                keeping(&format!(
                    "the new instance was not ready within {deadline:?}"
                ));
                Ok(old)
            }
            Replacing::OldExited(status) => {
                self.kill(new).await;
                self.exited(&mut old, status).await;
                Err(Ended::Exited(status))
            }
            Replacing::Interrupted(message) => {
                self.kill(new).await;
                Err(self.obey(old, message).await)
            }
        }
    }

    /// The port an instance is started with: the app's, unless it has none.
    pub(super) fn own_port(&self) -> Option<u16> {
        (self.app.listens() && !self.app.socket).then(|| self.tracked.instance.addr().port())
    }

    pub(super) fn command_grace(&self) -> Duration {
        self.app.stop.grace.unwrap_or(COMMAND_GRACE)
    }

    pub(super) fn set_state(&self, state: AppState) {
        self.tracked.progress().state = state;
    }

    pub(super) fn fail(&self, status: ExitStatus) -> Stopped {
        self.set_state(AppState::Failed);
        let _ = self.final_exits.send(FinalExit {
            app: self.app.name.clone(),
            status,
        });
        Stopped::Forcibly
    }

    pub(super) async fn wait_for_dependencies(&self) {
        for name in &self.app.depends_on {
            let mut logged = false;
            // A dependency a reload removed is not waited for (its dependents changed too).
            while let Some(dependency) = self.apps.handle(name) {
                if dependency.is_ready() {
                    break;
                }
                // An on-demand dependency is started by its dependent's start.
                dependency.demand();
                if !logged {
                    tracing::info!("{} waiting for {name} to be ready", self.app.name);
                    logged = true;
                }
                // Bounded, so that a reload's replacement of the dependency is seen.
                dependency.wait_ready(DEPENDENCY_RECHECK).await;
            }
        }
    }

    /// Books `instance` as the one serving the app.
    pub(super) fn serving(&self, instance: &Instance, state: AppState) {
        let mut progress = self.tracked.progress();
        progress.state = state;
        progress.pid = Some(instance.pid);
        progress.started = Some(std::time::Instant::now());
    }

    /// Probes the instance on `port` until ready (unless the app is ready already), then
    /// (with a `live` probe) keeps checking it; waits for it to exit or to fail its liveness
    /// probe too often. An instance not ready by the deadline is killed and counts as having
    /// failed.
    async fn watch(
        &self,
        pid: Pid,
        port: Option<u16>,
        exit: &mut oneshot::Receiver<ExitStatus>,
    ) -> Watched {
        let name = &self.app.name;
        let probing = async {
            // An instance a replace kept or swapped in has passed its readiness probe already.
            if !self.tracked.instance.is_ready() {
                // An app without a port is probed by `exec` or [`config::Probe::Started`]:
                // 0 is never dialled.
                if !self.until_ready(port.unwrap_or(0)).await {
                    // Before the kill: it is what the group listens on now that says why.
                    if let Some(port) = port {
                        tracing::error!("{}", ports::diagnose(name, pid, port));
                    }
                    tracing::error!(
                        "{name} not ready within {:?}: killing it",
                        self.app.ready.deadline
                    );
                    signal_group(pid, Signal::SIGKILL);
                    return std::future::pending().await;
                }
                match port {
                    Some(port) => tracing::info!("{name} ready on port {port}"),
                    None => tracing::info!("{name} ready"),
                }
                self.set_state(AppState::Ready);
                self.tracked.instance.set_ready(true);
            }
            let Some(live) = &self.app.live else {
                return std::future::pending().await;
            };
            let target = self.probe_target(port.unwrap_or(0));
            let mut failures = 0;
            while failures < live.failures {
                tokio::time::sleep(live.interval).await;
                if probe::passes(&live.probe, &target, live.timeout).await {
                    failures = 0;
                } else {
                    failures += 1;
                }
            }
            let action = match self.app.restart_strategy {
                RestartStrategy::Replace => "replacing it",
                RestartStrategy::StopStart => "stopping it",
            };
            tracing::error!("{name} failed {failures} liveness probes in a row: {action}");
        };
        tokio::select! {
            status = exit => Watched::Exited(status.unwrap_or(ExitStatus::Code(1))),
            () = probing => Watched::Unhealthy,
            () = self.until_idle() => Watched::Idle,
        }
    }

    /// Resolves once the instance has had no new request, nothing in flight and no running
    /// dependent for the app's `idle_stop`; never for an app without one. A dependent counts
    /// because it talks to the app directly, not through zoo's routes.
    async fn until_idle(&self) {
        let Some(idle_stop) = self.app.idle_stop else {
            return std::future::pending().await;
        };
        let instance = &self.tracked.instance;
        // Often enough that it stops close to its `idle_stop`, rarely enough to cost nothing.
        let look = (idle_stop / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let (mut seen, mut since) = (instance.requests(), Instant::now());
        loop {
            tokio::time::sleep(look).await;
            let requests = instance.requests();
            // Counted from when it is ready: the request that started it is not in yet.
            if requests != seen
                || instance.in_flight() > 0
                || !instance.is_ready()
                || self.apps.dependent_runs(&self.tracked.app.name)
            {
                (seen, since) = (requests, Instant::now());
            } else if since.elapsed() >= idle_stop {
                return;
            }
        }
    }

    /// Probes the instance on `port` until it passes its readiness probe (`true`) or the
    /// readiness deadline passes (`false`).
    async fn until_ready(&self, port: u16) -> bool {
        let ready = &self.app.ready;
        let target = self.probe_target(port);
        let deadline = crate::deadline::after(ready.deadline);
        loop {
            if probe::passes(&ready.probe, &target, ready.timeout).await {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(ready.interval).await;
        }
    }

    fn probe_target(&self, port: u16) -> probe::Target<'_> {
        probe::Target {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            socket: self.tracked.instance.socket(),
            app: &self.app,
            replica: self.tracked.instance.index,
            reaper: &self.reaper,
        }
    }
}

/// Waits for `work` unless a command or the shutdown comes first (a closed inbox counts as a
/// shutdown); `Start` and `Restart` end the wait early.
pub(super) async fn wait_or_obey(
    inbox: &mut mpsc::UnboundedReceiver<RunnerMessage>,
    work: impl Future<Output = ()>,
) -> Waited {
    tokio::select! {
        () = work => Waited::Proceed,
        message = inbox.recv() => match message {
            Some(
                RunnerMessage::App(AppCommand::Start | AppCommand::Restart | AppCommand::Run)
                | RunnerMessage::FilesChanged,
            ) => Waited::Proceed,
            Some(RunnerMessage::App(AppCommand::Stop)) => Waited::Park,
            None | Some(RunnerMessage::Shutdown(_)) => Waited::Shutdown,
        },
    }
}
