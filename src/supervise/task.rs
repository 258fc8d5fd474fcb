//! The life of a one-shot task (`kind = "task"`): wait for its dependencies, run it to
//! completion within its `timeout`, then keep it as done (its handle reads as ready, which is
//! what its dependents wait for), retry it under `on-failure` with the backoff and restart
//! budget, or end the container when it fails under `never` (see [`super::policy`]).
//! `zoo run` (and `restart`) runs it again; a run under way when zoo stops gets the app's stop
//! signal and its grace, like any app.

use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::backoff::{Backoff, RestartBudget};
use super::instance::Instance;
use super::policy::AfterExit;
use super::runner::{AppRunner, RunnerMessage, Waited, wait_or_obey};
use super::{AppCommand, AppState, ExitStatus, Stopped};

/// The status a run that outlived its `timeout` counts as, whatever it exited with after
/// its stop signal: GNU `timeout`'s, so that zoo's own exit code says what happened.
pub(super) const TIMED_OUT: ExitStatus = ExitStatus::Code(124);

/// What ended the wait for a running instance.
enum Until {
    Exited(ExitStatus),
    /// It outlived its `timeout`, this long.
    TimedOut(Duration),
    /// A command or the shutdown came in.
    Message(RunnerMessage),
}

/// How one run ended.
enum RunEnded {
    /// It exited by itself (or was stopped at its timeout) with this status.
    Exited(ExitStatus),
    /// `Stop` was requested: it was stopped and stays so.
    Stopped,
    /// `Restart` was requested: it was stopped and runs again at once.
    Again,
    /// zoo is stopping.
    Shutdown(Stopped),
}

impl AppRunner {
    pub(super) async fn run_task(
        self,
        mut inbox: mpsc::UnboundedReceiver<RunnerMessage>,
    ) -> Stopped {
        let mut backoff = Backoff::new(&self.app.restarts);
        let mut budget = RestartBudget::new(&self.app.restarts);
        loop {
            if !self.app.depends_on.is_empty() {
                self.set_state(AppState::Waiting);
                match wait_or_obey(&mut inbox, self.wait_for_dependencies()).await {
                    Waited::Proceed => {}
                    Waited::Park => {
                        if !self.park(&mut inbox, AppState::Stopped).await {
                            return Stopped::Cleanly;
                        }
                        continue;
                    }
                    Waited::Shutdown => return Stopped::Cleanly,
                }
            }
            let started = Instant::now();
            let status = match self.run_once(&mut inbox).await {
                RunEnded::Exited(status) => status,
                RunEnded::Again => continue,
                RunEnded::Stopped => {
                    if !self.park(&mut inbox, AppState::Stopped).await {
                        return Stopped::Cleanly;
                    }
                    continue;
                }
                RunEnded::Shutdown(stopped) => return stopped,
            };
            match self.after_exit(status, started.elapsed(), &mut backoff, &mut budget) {
                AfterExit::Delay(delay) => {
                    self.set_state(AppState::Backoff);
                    match wait_or_obey(&mut inbox, tokio::time::sleep(delay)).await {
                        Waited::Proceed => {}
                        Waited::Park => {
                            if !self.park(&mut inbox, AppState::Stopped).await {
                                return Stopped::Cleanly;
                            }
                        }
                        Waited::Shutdown => return Stopped::Cleanly,
                    }
                }
                AfterExit::Done => {
                    self.tracked.instance.set_ready(true);
                    if !self.park(&mut inbox, AppState::Done).await {
                        return Stopped::Cleanly;
                    }
                }
                AfterExit::Fail => return self.fail(status),
            }
        }
    }

    /// Waits in `state` until the task is to run again (`true`: `Run`, `Start` or `Restart`)
    /// or zoo stops (`false`).
    async fn park(
        &self,
        inbox: &mut mpsc::UnboundedReceiver<RunnerMessage>,
        state: AppState,
    ) -> bool {
        self.set_state(state);
        loop {
            match inbox.recv().await {
                None | Some(RunnerMessage::Shutdown(_)) => return false,
                Some(RunnerMessage::App(AppCommand::Stop)) => self.set_state(AppState::Stopped),
                // A task has no `watch`.
                Some(RunnerMessage::FilesChanged) => {}
                Some(RunnerMessage::App(
                    AppCommand::Run | AppCommand::Start | AppCommand::Restart,
                )) => return true,
            }
        }
    }

    /// Runs the task once: until it exits, its `timeout` passes, or a command or the shutdown
    /// stops it. Its dependents see it as not ready meanwhile.
    async fn run_once(&self, inbox: &mut mpsc::UnboundedReceiver<RunnerMessage>) -> RunEnded {
        self.tracked.instance.set_ready(false);
        let started = Instant::now();
        let mut instance = match self.spawn(None) {
            Ok(instance) => instance,
            Err(status) => {
                self.book_run(started, status);
                return RunEnded::Exited(status);
            }
        };
        self.serving(&instance, AppState::Running);
        let ended = match self.until_ended(&mut instance, inbox).await {
            Until::Exited(status) => {
                self.exited(&mut instance, status).await;
                RunEnded::Exited(status)
            }
            Until::TimedOut(timeout) => {
                tracing::error!(
                    "{} still running after its timeout of {timeout:?}: stopping it",
                    self.app.name
                );
                let deadline = crate::deadline::after(self.command_grace());
                let (_, status) = self.terminate(instance, deadline).await;
                let status = status.unwrap_or(ExitStatus::Signal(Signal::SIGKILL as i32));
                self.book_exit(status);
                tracing::error!("{} timed out: counted as {TIMED_OUT}", self.app.name);
                RunEnded::Exited(TIMED_OUT)
            }
            Until::Message(message) => self.interrupted(instance, message).await,
        };
        let status = match ended {
            RunEnded::Exited(status) => status,
            // Stopped by zoo: counted by how it exited (killed, when that was not seen).
            _ => self
                .tracked
                .progress()
                .last_exit
                .unwrap_or(ExitStatus::Signal(Signal::SIGKILL as i32)),
        };
        self.book_run(started, status);
        ended
    }

    /// Waits for the instance to exit, its timeout, or a message that stops it.
    async fn until_ended(
        &self,
        instance: &mut Instance,
        inbox: &mut mpsc::UnboundedReceiver<RunnerMessage>,
    ) -> Until {
        let timeout = self.run_timeout();
        tokio::pin!(timeout);
        loop {
            tokio::select! {
                status = &mut instance.exit => {
                    return Until::Exited(status.unwrap_or(ExitStatus::Code(1)));
                }
                timeout = &mut timeout => return Until::TimedOut(timeout),
                message = inbox.recv() => match message {
                    // Already running: nothing to start.
                    Some(
                        RunnerMessage::App(AppCommand::Start | AppCommand::Run)
                        | RunnerMessage::FilesChanged,
                    ) => {}
                    Some(message) => return Until::Message(message),
                    None => return Until::Message(RunnerMessage::Shutdown(Instant::now())),
                },
            }
        }
    }

    /// Carries out the message that interrupted a run (a task has no `watch`, so a changed
    /// file never asks; were it, a rerun is what it would ask for).
    async fn interrupted(&self, instance: Instance, message: RunnerMessage) -> RunEnded {
        match self.stop_for(instance, message).await {
            Err(stopped) => RunEnded::Shutdown(stopped),
            Ok(AppCommand::Stop) => RunEnded::Stopped,
            Ok(AppCommand::Restart | AppCommand::Run | AppCommand::Start) => RunEnded::Again,
        }
    }
}
