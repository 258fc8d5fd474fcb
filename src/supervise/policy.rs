//! What an app's exit means: the kind x restart policy x exit status table
//! ([`verdict`], documented in docs/supervision.md), and the restart budget and backoff applied
//! to an exit that is to be restarted. Pure decisions plus their log lines; the runners act.

use std::time::Duration;

use super::ExitStatus;
use super::backoff::{Backoff, RestartBudget};
use super::runner::AppRunner;
use crate::config::{AppKind, RestartPolicy};

/// What the table says about one exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Start it again after the backoff delay, within the restart budget.
    Restart,
    /// It is finished: kept as done, the container goes on.
    Done,
    /// It exited for good: zoo stops everything and exits with its status.
    Fail,
}

/// The kind x policy x exit table. `on-failure` means "until it succeeds" for every kind, so
/// a clean exit under it is done, never the end of the container; `never` ends the container
/// when a service or worker exits at all (it was meant to run until stopped), and when a task
/// fails (a failed migration aborts the deploy, like a failed Heroku release).
pub(super) fn verdict(kind: AppKind, policy: RestartPolicy, status: ExitStatus) -> Verdict {
    match (kind, policy, status.success()) {
        // A cron job has no policy: a run ends at its exit either way, counted as a success
        // or a failure, and the next tick starts the next run.
        (AppKind::Cron, _, _) => Verdict::Done,
        // A task with `always` is a config error; were it let through, it would loop.
        (_, RestartPolicy::Always, _) | (_, RestartPolicy::OnFailure, false) => Verdict::Restart,
        (_, RestartPolicy::OnFailure, true) | (AppKind::Task, RestartPolicy::Never, true) => {
            Verdict::Done
        }
        (AppKind::Task, RestartPolicy::Never, false)
        | (AppKind::Service | AppKind::Worker, RestartPolicy::Never, _) => Verdict::Fail,
    }
}

/// What the runner does after an exit, the budget and backoff applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AfterExit {
    /// Restart after this delay.
    Delay(Duration),
    Done,
    /// Done for: zoo stops everything.
    Fail,
}

impl AppRunner {
    /// What follows an exit with `status` after `uptime`, logged: the delay before the
    /// restart (counted, within the budget), done, or the end of the container.
    pub(super) fn after_exit(
        &self,
        status: ExitStatus,
        uptime: Duration,
        backoff: &mut Backoff,
        budget: &mut RestartBudget,
    ) -> AfterExit {
        let name = &self.app.name;
        let policy = self.app.restart.as_str();
        match verdict(self.app.kind, self.app.restart, status) {
            Verdict::Restart => {}
            Verdict::Done => {
                tracing::info!("{name} done ({status} after {uptime:.1?}); restart = {policy}");
                return AfterExit::Done;
            }
            Verdict::Fail => {
                tracing::error!("{name} exited with {status}; restart = {policy}: stopping zoo");
                return AfterExit::Fail;
            }
        }
        let Some(count) = budget.take(std::time::Instant::now()) else {
            tracing::error!(
                "{name} exited with {status}; it was restarted {} times within {:?}: \
                 giving up, stopping zoo",
                budget.max().unwrap_or(0),
                self.app.restarts.window
            );
            return AfterExit::Fail;
        };
        self.tracked.progress().restarts += 1;
        let delay = backoff.delay_after(uptime);
        let limit = budget
            .max()
            .map_or_else(String::new, |max| format!(" ({count}/{max})"));
        tracing::warn!("{name} exited with {status}; restarting in {delay:?}{limit}");
        AfterExit::Delay(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every cell of the table in docs/supervision.md: (kind, policy, exit code, verdict);
    /// a signal counts as a failure like a non-zero code.
    #[test]
    fn every_kind_policy_and_exit_has_its_verdict() {
        use AppKind::{Cron, Service, Task, Worker};
        use RestartPolicy::{Always, Never, OnFailure};
        use Verdict::{Done, Fail, Restart};
        let table = [
            (Service, Always, 0, Restart),
            (Service, Always, 3, Restart),
            (Service, OnFailure, 0, Done),
            (Service, OnFailure, 3, Restart),
            (Service, Never, 0, Fail),
            (Service, Never, 3, Fail),
            (Worker, Always, 0, Restart),
            (Worker, Always, 3, Restart),
            (Worker, OnFailure, 0, Done),
            (Worker, OnFailure, 3, Restart),
            (Worker, Never, 0, Fail),
            (Worker, Never, 3, Fail),
            (Task, OnFailure, 0, Done),
            (Task, OnFailure, 3, Restart),
            (Task, Never, 0, Done),
            (Task, Never, 3, Fail),
            (Cron, Never, 0, Done),
            (Cron, Never, 3, Done),
        ];
        for (kind, policy, code, expected) in table {
            assert_eq!(
                verdict(kind, policy, ExitStatus::Code(code)),
                expected,
                "{kind:?} {policy:?} exit {code}"
            );
            if code != 0 {
                assert_eq!(verdict(kind, policy, ExitStatus::Signal(9)), expected);
            }
        }
    }
}
