//! The life of one app: wait for its dependencies, start, probe, watch, restart with backoff
//! within its budget, obey commands (restart, stop, start) and the final shutdown. One task
//! per app; it is the only writer of the app's [`Progress`], readiness and port.
//!
//! A `restart` of an app with `restart_strategy = "replace"` is a replace: for a while the
//! runner owns two instances, the serving one and its replacement on a fresh port, and
//! switches the app's port to the new one only once it is ready.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::backoff::{Backoff, RestartBudget};
use super::{
    AppCommand, AppState, ExitStatus, FinalExit, Reaper, Stopped, SupervisorHandle, Tracked,
    command, free_port, output, probe, signal_group,
};
use crate::config::{self, RestartPolicy, RestartStrategy};

/// Grace of an app stopped by command (not by shutdown) that has no `grace` of its own;
/// Docker's stop timeout, like the global default.
pub(super) const COMMAND_GRACE: Duration = Duration::from_secs(10);
/// How long to wait, after an app exited, for its last output to be written out.
const OUTPUT_DRAIN: Duration = Duration::from_millis(200);
/// How often an app waiting for a dependency looks it up again.
const DEPENDENCY_RECHECK: Duration = Duration::from_secs(1);
/// How long a killed instance's exit status is waited for.
const KILL_WAIT: Duration = Duration::from_secs(1);
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
}

pub(super) struct AppRunner {
    pub(super) app: config::App,
    pub(super) tracked: Arc<Tracked>,
    /// Where the apps this one waits for before each start are looked up by name, at each
    /// start: a reload may have replaced them.
    pub(super) apps: SupervisorHandle,
    pub(super) reaper: Arc<Reaper>,
    pub(super) final_exits: mpsc::UnboundedSender<FinalExit>,
}

/// One started instance of an app.
struct Instance {
    /// Its pid, which is also its process group id.
    pid: Pid,
    /// The port it was started with (its `PORT`).
    port: u16,
    exit: oneshot::Receiver<ExitStatus>,
    /// The tasks copying its stdout and stderr, awaited briefly after it exits so that its
    /// last lines (a partial one too) are written before zoo reports the exit.
    output: [JoinHandle<()>; 2],
}

/// What the runner does next.
enum Next {
    Start,
    /// Restart after this delay.
    Delay(Duration),
    /// Stopped on request: wait for `Start`/`Restart`.
    Parked,
}

/// How waiting for something (a restart delay, the dependencies) ended.
enum Waited {
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
    pub(super) async fn run(self, mut inbox: mpsc::UnboundedReceiver<RunnerMessage>) -> Stopped {
        let name = &self.app.name;
        let mut backoff = Backoff::new(&self.app.restarts);
        let mut budget = RestartBudget::new(&self.app.restarts);
        let mut next = Next::Start;
        loop {
            match next {
                Next::Start => {}
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
                Next::Parked => {
                    self.set_state(AppState::Stopped);
                    match inbox.recv().await {
                        None | Some(RunnerMessage::Shutdown(_)) => return Stopped::Cleanly,
                        Some(RunnerMessage::App(AppCommand::Stop)) => continue,
                        Some(RunnerMessage::App(AppCommand::Start | AppCommand::Restart)) => {}
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
            let status = match self.spawn(self.tracked.handle.addr().port()) {
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
            self.tracked.handle.set_ready(false);
            match self.restart_delay(status, started.elapsed(), &mut backoff, &mut budget) {
                Some(delay) => next = Next::Delay(delay),
                None => return self.fail(status),
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
                            Some(RunnerMessage::App(AppCommand::Start)) => {}
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
                    self.tracked.handle.set_ready(false);
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
        match message {
            RunnerMessage::Shutdown(deadline) => {
                Ended::Shutdown(self.stop(instance, deadline).await)
            }
            RunnerMessage::App(command) => {
                tracing::info!("{}: {command:?} requested", self.app.name);
                self.stop(instance, crate::deadline::after(self.command_grace()))
                    .await;
                Ended::Commanded(if command == AppCommand::Stop {
                    Next::Parked
                } else {
                    Next::Start
                })
            }
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
        let Ok(mut new) = self.spawn(port) else {
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
                        Some(RunnerMessage::App(AppCommand::Start | AppCommand::Restart)) => {}
                        Some(message) => break Replacing::Interrupted(message),
                        None => break Replacing::Interrupted(RunnerMessage::Shutdown(Instant::now())),
                    },
                }
            }
        };
        match outcome {
            Replacing::Ready => {
                self.tracked.handle.switch_port(port);
                self.tracked.handle.set_ready(true);
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

    fn command_grace(&self) -> Duration {
        self.app.stop.grace.unwrap_or(COMMAND_GRACE)
    }

    /// The delay before restarting after `status`, logged; `None` when the app is done for
    /// (its policy says so, or its restart budget is spent), also logged.
    fn restart_delay(
        &self,
        status: ExitStatus,
        uptime: Duration,
        backoff: &mut Backoff,
        budget: &mut RestartBudget,
    ) -> Option<Duration> {
        let name = &self.app.name;
        if !should_restart(self.app.restart, status) {
            tracing::error!(
                "{name} exited with {status}; restart = {}: stopping zoo",
                self.app.restart.as_str()
            );
            return None;
        }
        let Some(count) = budget.take(std::time::Instant::now()) else {
            tracing::error!(
                "{name} exited with {status}; it was restarted {} times within {:?}: \
                 giving up, stopping zoo",
                budget.max().unwrap_or(0),
                self.app.restarts.window
            );
            return None;
        };
        self.tracked.progress().restarts += 1;
        let delay = backoff.delay_after(uptime);
        let limit = budget
            .max()
            .map_or_else(String::new, |max| format!(" ({count}/{max})"));
        tracing::warn!("{name} exited with {status}; restarting in {delay:?}{limit}");
        Some(delay)
    }

    fn set_state(&self, state: AppState) {
        self.tracked.progress().state = state;
    }

    fn fail(&self, status: ExitStatus) -> Stopped {
        self.set_state(AppState::Failed);
        let _ = self.final_exits.send(FinalExit {
            app: self.app.name.clone(),
            status,
        });
        Stopped::Forcibly
    }

    async fn wait_for_dependencies(&self) {
        for name in &self.app.depends_on {
            let mut logged = false;
            // A dependency a reload removed is not waited for (its dependents changed too).
            while let Some(dependency) = self.apps.handle(name) {
                if dependency.is_ready() {
                    break;
                }
                if !logged {
                    tracing::info!("{} waiting for {name} to be ready", self.app.name);
                    logged = true;
                }
                // Bounded, so that a reload's replacement of the dependency is seen.
                dependency.wait_ready(DEPENDENCY_RECHECK).await;
            }
        }
    }

    /// Starts the app, or returns the status a shell would report for a program that cannot
    /// be executed (127 not found, 126 for anything else that prevents the start).
    fn spawn(&self, port: u16) -> Result<Instance, ExitStatus> {
        let app = &self.app;
        let cannot_start = |cause: String, code: i32| {
            tracing::error!("{}: cannot start: {cause}", app.name);
            self.tracked.progress().last_exit = Some(ExitStatus::Code(code));
            ExitStatus::Code(code)
        };
        let mut command =
            command::app_command(app, port).map_err(|cause| cannot_start(cause, 126))?;
        // Its output is forwarded line by line below.
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let (mut child, exit) = self.reaper.spawn(&mut command).map_err(|error| {
            let program = command.get_program().to_string_lossy().into_owned();
            let code = if error.kind() == io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            cannot_start(format!("{program}: {error} (status {code})"), code)
        })?;
        let forward = |fd: Option<OwnedFd>, stream| match fd {
            Some(fd) => tokio::spawn(output::forward_lines(
                app.name.clone(),
                fd,
                stream,
                Arc::clone(&self.tracked.handle.recent),
            )),
            None => tokio::spawn(async {}),
        };
        let output = [
            forward(
                child.stdout.take().map(OwnedFd::from),
                output::Stream::Stdout,
            ),
            forward(
                child.stderr.take().map(OwnedFd::from),
                output::Stream::Stderr,
            ),
        ];
        #[allow(clippy::cast_possible_wrap)]
        let pid = Pid::from_raw(child.id() as i32);
        tracing::info!("{} started (pid {pid}, port {port})", app.name);
        Ok(Instance {
            pid,
            port,
            exit,
            output,
        })
    }

    /// Books `instance` as the one serving the app.
    fn serving(&self, instance: &Instance, state: AppState) {
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
        port: u16,
        exit: &mut oneshot::Receiver<ExitStatus>,
    ) -> Watched {
        let name = &self.app.name;
        let probing = async {
            // An instance a replace kept or swapped in has passed its readiness probe already.
            if !self.tracked.handle.is_ready() {
                if !self.until_ready(port).await {
                    tracing::error!(
                        "{name} not ready within {:?}: killing it",
                        self.app.ready.deadline
                    );
                    signal_group(pid, Signal::SIGKILL);
                    return std::future::pending().await;
                }
                tracing::info!("{name} ready on port {port}");
                self.set_state(AppState::Ready);
                self.tracked.handle.set_ready(true);
            }
            let Some(live) = &self.app.live else {
                return std::future::pending().await;
            };
            let target = self.probe_target(port);
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
            app: &self.app,
            reaper: &self.reaper,
        }
    }

    /// Books the exit of the serving instance: it is gone, its output written, its status
    /// recorded.
    async fn exited(&self, instance: &mut Instance, status: ExitStatus) {
        self.drain(instance).await;
        self.book_exit(status);
    }

    /// Records that the serving instance is gone, with `status`.
    fn book_exit(&self, status: ExitStatus) {
        let mut progress = self.tracked.progress();
        progress.pid = None;
        progress.started = None;
        progress.last_exit = Some(status);
    }

    /// After the instance exited: kills what it left in its group and lets its output drain.
    async fn drain(&self, instance: &mut Instance) {
        // Whatever the leader left behind in its group must not outlive it (a child that
        // ignored the stop signal, say); a `setsid` grandchild has left the group and is
        // only reaped when it exits.
        signal_group(instance.pid, Signal::SIGKILL);
        let [stdout, stderr] = &mut instance.output;
        let _ = tokio::time::timeout(OUTPUT_DRAIN, async {
            let _ = stdout.await;
            let _ = stderr.await;
        })
        .await;
    }

    /// Kills the instance's group; its status, when the reaper reports it in time.
    async fn kill(&self, mut instance: Instance) -> Option<ExitStatus> {
        signal_group(instance.pid, Signal::SIGKILL);
        let status = tokio::time::timeout(KILL_WAIT, &mut instance.exit)
            .await
            .ok()?
            .ok()?;
        self.drain(&mut instance).await;
        Some(status)
    }

    /// Stops the serving instance (see [`Self::terminate`]) and books its exit.
    async fn stop(&self, instance: Instance, deadline: Instant) -> Stopped {
        self.tracked.handle.set_ready(false);
        self.set_state(AppState::Stopping);
        let (stopped, status) = self.terminate(instance, deadline).await;
        if let Some(status) = status {
            self.book_exit(status);
        }
        self.set_state(AppState::Stopped);
        stopped
    }

    /// Sends the stop signal to the instance's group and waits until its grace or `deadline`
    /// (whichever comes first) ends, then kills the group. Returns how it ended and its
    /// status, when seen.
    async fn terminate(
        &self,
        mut instance: Instance,
        deadline: Instant,
    ) -> (Stopped, Option<ExitStatus>) {
        let name = &self.app.name;
        let signal = self.app.stop.signal;
        let kill_at = self.app.stop.grace.map_or(deadline, |grace| {
            deadline.min(crate::deadline::after(grace))
        });
        signal_group(instance.pid, signal);
        match tokio::time::timeout_at(kill_at, &mut instance.exit).await {
            Ok(Ok(status)) => {
                let stopped = if status.success()
                    || status == ExitStatus::Signal(signal as i32)
                    || status == ExitStatus::Code(128 + signal as i32)
                {
                    Stopped::Cleanly
                } else {
                    Stopped::Forcibly
                };
                self.drain(&mut instance).await;
                tracing::info!("{name} stopped ({status})");
                (stopped, Some(status))
            }
            Ok(Err(_)) => (Stopped::Forcibly, None),
            Err(_) => {
                tracing::warn!("{name} did not stop in time: sending SIGKILL");
                (Stopped::Forcibly, self.kill(instance).await)
            }
        }
    }
}

/// Waits for `work` unless a command or the shutdown comes first (a closed inbox counts as a
/// shutdown); `Start` and `Restart` end the wait early.
async fn wait_or_obey(
    inbox: &mut mpsc::UnboundedReceiver<RunnerMessage>,
    work: impl Future<Output = ()>,
) -> Waited {
    tokio::select! {
        () = work => Waited::Proceed,
        message = inbox.recv() => match message {
            Some(RunnerMessage::App(AppCommand::Start | AppCommand::Restart)) => Waited::Proceed,
            Some(RunnerMessage::App(AppCommand::Stop)) => Waited::Park,
            None | Some(RunnerMessage::Shutdown(_)) => Waited::Shutdown,
        },
    }
}

fn should_restart(policy: RestartPolicy, status: ExitStatus) -> bool {
    match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => !status.success(),
        RestartPolicy::Never => false,
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
}
