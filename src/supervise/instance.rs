//! One started instance of an app: how it is spawned (through the [`Reaper`], its output
//! forwarded line by line), and how it ends: stopped with its stop signal and killed at its
//! grace, killed outright, or drained after it exited by itself. The runners decide when;
//! this is the how, shared by services, workers and tasks.

use std::io;
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::runner::{AppRunner, RunnerMessage};
use super::{
    AppCommand, AppState, ExitStatus, Stopped, command, output, ports, signal_group, sockets,
};

/// How long to wait, after an app exited, for its last output to be written out.
const OUTPUT_DRAIN: Duration = Duration::from_millis(200);
/// How long a killed instance's exit status is waited for.
const KILL_WAIT: Duration = Duration::from_secs(1);

/// One started instance of an app.
pub(super) struct Instance {
    /// Its pid, which is also its process group id.
    pub(super) pid: Pid,
    /// The port it was started with (its `PORT`); none for an app without a port.
    pub(super) port: Option<u16>,
    pub(super) exit: oneshot::Receiver<ExitStatus>,
    /// The tasks copying its stdout and stderr, awaited briefly after it exits so that its
    /// last lines (a partial one too) are written before zoo reports the exit.
    pub(super) output: [JoinHandle<()>; 2],
}

impl AppRunner {
    /// Starts the app, or returns the status a shell would report for a program that cannot
    /// be executed (127 not found, 126 for anything else that prevents the start).
    pub(super) fn spawn(&self, port: Option<u16>) -> Result<Instance, ExitStatus> {
        let app = &self.app;
        let cannot_start = |cause: String, code: i32| {
            tracing::error!("{}: cannot start: {cause}", app.name);
            self.tracked.progress().last_exit = Some(ExitStatus::Code(code));
            ExitStatus::Code(code)
        };
        // A port held by another process would let a TCP probe pass against the wrong one.
        match port.and_then(ports::holder) {
            None => {}
            Some(Ok(holder)) => {
                let port = port.unwrap_or_default();
                return Err(cannot_start(
                    format!("port {port} is already taken by {holder}"),
                    126,
                ));
            }
            Some(Err(addr)) => {
                return Err(cannot_start(
                    format!(
                        "port {} is already taken ({addr}, by a process zoo cannot see)",
                        addr.port()
                    ),
                    126,
                ));
            }
        }
        let socket = self.tracked.instance.socket();
        if let Some(socket) = socket {
            sockets::make_way(socket).map_err(|cause| cannot_start(cause, 126))?;
        }
        let listening = command::Listening {
            port,
            socket,
            replica: self.tracked.instance.index,
        };
        let mut command =
            command::app_command(app, listening).map_err(|cause| cannot_start(cause, 126))?;
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
                Arc::clone(&self.tracked.app.recent),
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
        match port {
            Some(port) => tracing::info!("{} started (pid {pid}, port {port})", app.name),
            None => tracing::info!("{} started (pid {pid})", app.name),
        }
        Ok(Instance {
            pid,
            port,
            exit,
            output,
        })
    }

    /// Books the exit of the serving instance: it is gone, its output written, its status
    /// recorded.
    pub(super) async fn exited(&self, instance: &mut Instance, status: ExitStatus) {
        self.drain(instance).await;
        self.book_exit(status);
    }

    /// Records that the serving instance is gone, with `status`.
    pub(super) fn book_exit(&self, status: ExitStatus) {
        let mut progress = self.tracked.progress();
        progress.pid = None;
        progress.started = None;
        progress.last_exit = Some(status);
    }

    /// After the instance exited: kills what it left in its group and lets its output drain.
    pub(super) async fn drain(&self, instance: &mut Instance) {
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
    pub(super) async fn kill(&self, mut instance: Instance) -> Option<ExitStatus> {
        signal_group(instance.pid, Signal::SIGKILL);
        let status = tokio::time::timeout(KILL_WAIT, &mut instance.exit)
            .await
            .ok()?
            .ok()?;
        self.drain(&mut instance).await;
        Some(status)
    }

    /// Stops the serving instance (see [`Self::terminate`]) and books its exit.
    pub(super) async fn stop(&self, instance: Instance, deadline: Instant) -> Stopped {
        self.tracked.instance.set_ready(false);
        self.set_state(AppState::Stopping);
        let (stopped, status) = self.terminate(instance, deadline).await;
        if let Some(status) = status {
            self.book_exit(status);
        }
        self.set_state(AppState::Stopped);
        stopped
    }

    /// Stops the running instance for `message`, which interrupted it: at the shutdown's
    /// deadline (`Err`, with how it stopped), or within the app's own grace for a command
    /// (`Ok`, the command; a changed watched file asks for a restart).
    pub(super) async fn stop_for(
        &self,
        instance: Instance,
        message: RunnerMessage,
    ) -> Result<AppCommand, Stopped> {
        let command = match message {
            RunnerMessage::Shutdown(deadline) => return Err(self.stop(instance, deadline).await),
            RunnerMessage::App(command) => command,
            RunnerMessage::FilesChanged => AppCommand::Restart,
        };
        tracing::info!("{}: {command:?} requested", self.app.name);
        self.stop(instance, crate::deadline::after(self.command_grace()))
            .await;
        Ok(command)
    }

    /// Sends the stop signal to the instance's group and waits until its grace or `deadline`
    /// (whichever comes first) ends, then kills the group. Returns how it ended and its
    /// status, when seen.
    pub(super) async fn terminate(
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

    /// Counts a finished run of a task or cron job: how long it took and how it ended.
    pub(super) fn book_run(&self, started: Instant, status: ExitStatus) {
        let mut progress = self.tracked.progress();
        progress.runs += 1;
        progress.last_run = Some(started.elapsed());
        if status.success() {
            progress.last_success = Some(std::time::SystemTime::now());
        } else {
            progress.failures += 1;
        }
    }

    /// Resolves with the `timeout` of a task or cron job once a run has taken that long;
    /// never without one.
    pub(super) async fn run_timeout(&self) -> Duration {
        match self.app.timeout {
            Some(timeout) => {
                tokio::time::sleep(timeout).await;
                timeout
            }
            None => std::future::pending().await,
        }
    }
}
