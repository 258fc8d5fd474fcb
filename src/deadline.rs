//! Deadlines made from durations without overflow: `Instant + Duration` panics when the sum
//! does not fit, and durations come from the config (a `grace`, a route's `wait`), so every
//! deadline zoo computes is made here. The config bounds each duration (config/duration.rs);
//! this is the second wall, for what a future key or caller forgets.

// Input (the config, /proc, what apps print) drives the arithmetic here: no silent overflow,
// no lossy `as` (docs/design.md, "Arithmetic on input, and the fuzz suite").
#![deny(clippy::arithmetic_side_effects, clippy::as_conversions)]

use std::time::Duration;

use tokio::time::Instant;

/// `duration` from now.
#[must_use]
pub fn after(duration: Duration) -> Instant {
    from(Instant::now(), duration)
}

/// `duration` after `start`; when that does not fit in an `Instant`, the latest deadline the
/// config could give (a year away), which no process outlives in practice.
#[must_use]
pub fn from(start: Instant, duration: Duration) -> Instant {
    start
        .checked_add(duration)
        .or_else(|| start.checked_add(crate::config::MAX_DURATION))
        .unwrap_or(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_durations_give_a_far_deadline_instead_of_panicking() {
        let now = Instant::now();
        for huge in [
            Duration::MAX,
            Duration::from_secs(u64::MAX / 2),
            Duration::from_secs(i64::MAX.unsigned_abs()),
        ] {
            assert!(
                from(now, huge) >= now + Duration::from_secs(3600),
                "{huge:?}"
            );
            assert!(after(huge) > now);
        }
        assert_eq!(
            from(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
    }
}
