//! Restart pacing: exponential backoff that forgives an app once it has stayed up long enough,
//! and the restart budget (`max_restarts` within `restart_window`) after which it is failed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::Restarts;

/// Delay before the next restart of one app.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    /// An app that stayed up this long is considered healthy again: the next delay is `first`.
    reset_after: Duration,
    next: Duration,
}

impl Backoff {
    #[must_use]
    pub fn new(restarts: &Restarts) -> Self {
        Self {
            first: restarts.first,
            max: restarts.max,
            reset_after: restarts.reset_after,
            next: restarts.first,
        }
    }

    /// The delay to wait after a run that lasted `uptime`, and the doubling for the next one.
    pub fn delay_after(&mut self, uptime: Duration) -> Duration {
        if uptime >= self.reset_after {
            self.next = self.first;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }
}

/// Counts restarts in a sliding window; an app that needs more than `max` of them within
/// `window` is failing, not flapping, and should take the container down.
#[derive(Debug, Clone)]
pub struct RestartBudget {
    max: Option<u32>,
    window: Duration,
    /// When the restarts still inside the window happened, oldest first.
    recent: VecDeque<Instant>,
}

impl RestartBudget {
    #[must_use]
    pub fn new(restarts: &Restarts) -> Self {
        Self {
            max: restarts.max_restarts,
            window: restarts.window,
            recent: VecDeque::new(),
        }
    }

    /// Records a restart at `now` if the budget allows one; returns how many restarts the
    /// window holds then, or `None` when the budget is spent.
    pub fn take(&mut self, now: Instant) -> Option<usize> {
        while let Some(&oldest) = self.recent.front() {
            if now.duration_since(oldest) < self.window {
                break;
            }
            self.recent.pop_front();
        }
        if let Some(max) = self.max
            && self.recent.len() >= max as usize
        {
            return None;
        }
        self.recent.push_back(now);
        Some(self.recent.len())
    }

    /// The limit, for log lines.
    #[must_use]
    pub fn max(&self) -> Option<u32> {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_millis(10);

    #[test]
    fn delays_double_up_to_the_max() {
        let mut backoff = Backoff::new(&Restarts::default());
        let delays: Vec<u64> = (0..7)
            .map(|_| backoff.delay_after(SHORT).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn a_long_run_resets_the_delay() {
        let mut backoff = Backoff::new(&Restarts::default());
        backoff.delay_after(SHORT);
        backoff.delay_after(SHORT);
        assert_eq!(
            backoff.delay_after(Duration::from_secs(61)),
            Duration::from_secs(1)
        );
        assert_eq!(backoff.delay_after(SHORT), Duration::from_secs(2));
    }

    fn budget_of(max: Option<u32>) -> RestartBudget {
        RestartBudget::new(&Restarts {
            max_restarts: max,
            window: Duration::from_secs(60),
            ..Restarts::default()
        })
    }

    #[test]
    fn budget_is_spent_after_max_restarts_within_the_window() {
        let mut budget = budget_of(Some(2));
        let start = Instant::now();
        assert_eq!(budget.take(start), Some(1));
        assert_eq!(budget.take(start + Duration::from_secs(1)), Some(2));
        assert_eq!(budget.take(start + Duration::from_secs(2)), None);
    }

    #[test]
    fn restarts_leave_the_window_as_time_passes() {
        let mut budget = budget_of(Some(2));
        let start = Instant::now();
        budget.take(start);
        budget.take(start + Duration::from_secs(30));
        assert_eq!(budget.take(start + Duration::from_secs(61)), Some(2));
        assert_eq!(budget_of(None).take(start), Some(1));
        assert_eq!(budget_of(Some(0)).take(start), None);
    }
}
