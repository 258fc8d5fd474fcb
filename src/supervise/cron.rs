//! The life of a cron job (`schedule = "*/15 * * * *"`): after its dependencies, it is
//! scheduled (and reads as ready); at each tick its command starts with the app's env, dir and
//! user, unless the previous run is still going: then the tick is skipped and counted (two at
//! once only with `overlap = true`). A run past its `timeout` is stopped and counts as failed.
//! Each run is counted: runs, failures, last success, last duration. `zoo run` starts one now;
//! `zoo stop` stops the running ones and the schedule until `zoo start`. At shutdown, running
//! jobs get their stop signal and grace like any app, and zoo waits for them.
//!
//! Each run is a tokio task of its own (a clone of the runner), so that ticks, commands and
//! the other runs are served while one is being stopped.

use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;

use super::runner::{AppRunner, RunnerMessage, Waited, wait_or_obey};
use super::task::TIMED_OUT;
use super::{AppCommand, AppState, ExitStatus, Stopped};

/// How one run of a cron job ended.
struct CronRun {
    /// `None` when it could not be started.
    pid: Option<Pid>,
    started: Instant,
    status: ExitStatus,
    /// Whether it exited by itself or on its stop signal (else it was killed).
    stopped: Stopped,
}

/// What ended the wait for a running job.
enum RunEnd {
    Exited(ExitStatus),
    /// It outlived its `timeout`, this long.
    TimedOut(Duration),
    /// It is to be stopped by this deadline (a `Stop`, or the shutdown).
    Stop(Instant),
}

/// Tells every run when it must be stopped by: `None` while it may run.
type StopRuns = watch::Sender<Option<Instant>>;

impl AppRunner {
    pub(super) async fn run_cron(
        self,
        mut inbox: mpsc::UnboundedReceiver<RunnerMessage>,
    ) -> Stopped {
        // Validated: a cron job has a schedule.
        let Some(schedule) = self.app.schedule.clone() else {
            return Stopped::Cleanly;
        };
        let mut parked = false;
        if !self.app.depends_on.is_empty() {
            self.set_state(AppState::Waiting);
            match wait_or_obey(&mut inbox, self.wait_for_dependencies()).await {
                Waited::Proceed => {}
                Waited::Park => parked = true,
                Waited::Shutdown => return Stopped::Cleanly,
            }
        }
        // Ready while scheduled: it never holds `/readyz` back.
        self.tracked.instance.set_ready(!parked);
        let (stop_runs, _) = watch::channel(None);
        let mut runs: JoinSet<CronRun> = JoinSet::new();
        // A tick is fired once: the next one is looked for after it, even should the clock
        // read a little earlier when the timer fires.
        let mut last_tick = SystemTime::UNIX_EPOCH;
        loop {
            let next = if parked {
                None
            } else {
                schedule.next_after(SystemTime::now().max(last_tick))
            };
            self.show(next, parked, runs.len());
            let until_tick = async move {
                match next {
                    Some(at) => {
                        let left = at.duration_since(SystemTime::now()).unwrap_or_default();
                        tokio::time::sleep(left).await;
                        at
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                tick = until_tick => {
                    last_tick = tick;
                    self.start_run(&mut runs, &stop_runs, false);
                }
                Some(ended) = runs.join_next() => {
                    self.book_cron_run(ended);
                }
                message = inbox.recv() => match message {
                    Some(RunnerMessage::App(AppCommand::Run)) => {
                        self.start_run(&mut runs, &stop_runs, true);
                    }
                    Some(RunnerMessage::App(AppCommand::Stop)) => {
                        tracing::info!("{}: Stop requested: stopping its runs and its schedule", self.app.name);
                        parked = true;
                        self.tracked.instance.set_ready(false);
                        let deadline = crate::deadline::after(self.command_grace());
                        self.stop_runs(&mut runs, &stop_runs, deadline).await;
                    }
                    Some(RunnerMessage::App(AppCommand::Start | AppCommand::Restart)) => {
                        parked = false;
                        self.tracked.instance.set_ready(true);
                    }
                    Some(RunnerMessage::Shutdown(deadline)) => {
                        return self.stop_runs(&mut runs, &stop_runs, deadline).await;
                    }
                    None => return self.stop_runs(&mut runs, &stop_runs, Instant::now()).await,
                    // A cron job has no `watch`.
                    Some(RunnerMessage::FilesChanged) => {}
                },
            }
        }
    }

    /// Shows where the job is: its next tick, and whether it runs or is stopped.
    fn show(&self, next: Option<SystemTime>, parked: bool, running: usize) {
        let mut progress = self.tracked.progress();
        progress.next_run = next;
        progress.state = match (parked, running) {
            (true, 0) => AppState::Stopped,
            (_, 0) => AppState::Scheduled,
            _ => AppState::Running,
        };
    }

    /// Starts a run for a tick (or `zoo run`, when `requested`), unless one is going and
    /// `overlap` is off: then it is skipped and counted.
    fn start_run(&self, runs: &mut JoinSet<CronRun>, stop_runs: &StopRuns, requested: bool) {
        let why = if requested {
            "`zoo run`"
        } else {
            "its schedule"
        };
        let name = &self.app.name;
        if !runs.is_empty() && !self.app.overlap {
            let (skipped, pid) = {
                let mut progress = self.tracked.progress();
                progress.skipped += 1;
                (progress.skipped, progress.pid)
            };
            let pid = pid.map_or_else(String::new, |pid| format!(" (pid {pid})"));
            tracing::warn!(
                "{name}: run for {why} skipped: the previous run{pid} is still going \
                 ({skipped} skipped so far; `overlap = true` would start it)"
            );
            return;
        }
        // Not at every tick: the start line that follows is enough.
        if requested {
            tracing::info!("{name}: starting a run for {why}");
        } else {
            tracing::debug!("{name}: starting a run for {why}");
        }
        runs.spawn(self.clone().one_run(stop_runs.subscribe()));
    }

    /// One run: until it exits, its timeout passes, or it is to be stopped.
    async fn one_run(self, mut stop: watch::Receiver<Option<Instant>>) -> CronRun {
        let started = Instant::now();
        let mut instance = match self.spawn(None) {
            Ok(instance) => instance,
            Err(status) => {
                return CronRun {
                    pid: None,
                    started,
                    status,
                    stopped: Stopped::Cleanly,
                };
            }
        };
        let pid = instance.pid;
        {
            let mut progress = self.tracked.progress();
            progress.pid = Some(pid);
            progress.started = Some(std::time::Instant::now());
        }
        let timeout = self.run_timeout();
        let end = tokio::select! {
            status = &mut instance.exit => RunEnd::Exited(status.unwrap_or(ExitStatus::Code(1))),
            timeout = timeout => RunEnd::TimedOut(timeout),
            deadline = stop.wait_for(Option::is_some) => match deadline {
                Ok(deadline) => RunEnd::Stop(deadline.unwrap_or_else(Instant::now)),
                // The runner is gone: nothing will stop this run but zoo's exit.
                Err(_) => RunEnd::Stop(Instant::now()),
            },
        };
        let killed = ExitStatus::Signal(Signal::SIGKILL as i32);
        let (status, stopped) = match end {
            RunEnd::Exited(status) => {
                self.drain(&mut instance).await;
                (status, Stopped::Cleanly)
            }
            RunEnd::TimedOut(timeout) => {
                let name = &self.app.name;
                tracing::error!(
                    "{name} run (pid {pid}) still going after its timeout of {timeout:?}: stopping it"
                );
                let deadline = crate::deadline::after(self.command_grace());
                let (_, status) = self.terminate(instance, deadline).await;
                tracing::error!(
                    "{name} run timed out ({}): counted as {TIMED_OUT}",
                    status.unwrap_or(killed)
                );
                (TIMED_OUT, Stopped::Cleanly)
            }
            RunEnd::Stop(deadline) => {
                let (stopped, status) = self.terminate(instance, deadline).await;
                (status.unwrap_or(killed), stopped)
            }
        };
        CronRun {
            pid: Some(pid),
            started,
            status,
            stopped,
        }
    }

    /// Counts a run that ended and logs how.
    fn book_cron_run(&self, ended: Result<CronRun, JoinError>) -> Stopped {
        let name = &self.app.name;
        let run = match ended {
            Ok(run) => run,
            Err(error) => {
                tracing::error!("{name}: a run's supervision failed: {error}");
                return Stopped::Forcibly;
            }
        };
        {
            let mut progress = self.tracked.progress();
            // With `overlap`, a newer run may be the one shown.
            if run.pid.is_some() && progress.pid == run.pid {
                progress.pid = None;
                progress.started = None;
            }
            progress.last_exit = Some(run.status);
        }
        self.book_run(run.started, run.status);
        let took = run.started.elapsed();
        if run.status.success() {
            tracing::info!("{name} run done ({} after {took:.1?})", run.status);
        } else {
            tracing::warn!("{name} run failed ({} after {took:.1?})", run.status);
        }
        run.stopped
    }

    /// Stops every run by `deadline` and waits for them; whether all stopped cleanly.
    async fn stop_runs(
        &self,
        runs: &mut JoinSet<CronRun>,
        stop_runs: &StopRuns,
        deadline: Instant,
    ) -> Stopped {
        stop_runs.send_replace(Some(deadline));
        let mut all = Stopped::Cleanly;
        while let Some(ended) = runs.join_next().await {
            if self.book_cron_run(ended) == Stopped::Forcibly {
                all = Stopped::Forcibly;
            }
        }
        // Later runs (after a `Start`) may run again.
        stop_runs.send_replace(None);
        self.set_state(AppState::Stopped);
        all
    }
}
