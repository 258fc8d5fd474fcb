//! Restart delays: exponential backoff that forgives an app once it has stayed up long enough.

use std::time::Duration;

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
    pub fn new(first: Duration, max: Duration, reset_after: Duration) -> Self {
        Self {
            first,
            max,
            reset_after,
            next: first,
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

impl Default for Backoff {
    /// 1 s doubling to 30 s, reset after 60 s up (DESIGN.md).
    fn default() -> Self {
        Self::new(
            Duration::from_secs(1),
            Duration::from_secs(30),
            Duration::from_secs(60),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_millis(10);

    #[test]
    fn delays_double_up_to_the_max() {
        let mut backoff = Backoff::default();
        let delays: Vec<u64> = (0..7)
            .map(|_| backoff.delay_after(SHORT).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn a_long_run_resets_the_delay() {
        let mut backoff = Backoff::default();
        backoff.delay_after(SHORT);
        backoff.delay_after(SHORT);
        assert_eq!(
            backoff.delay_after(Duration::from_secs(61)),
            Duration::from_secs(1)
        );
        assert_eq!(backoff.delay_after(SHORT), Duration::from_secs(2));
    }
}
