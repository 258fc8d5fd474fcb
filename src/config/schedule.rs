//! A cron job's `schedule`: a standard 5-field cron line (minute hour day month weekday), a
//! 6-field one with seconds first, or `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`;
//! in a `timezone` (UTC by default). Parsed by croner; a schedule that never fires
//! (`0 0 31 2 *`) is refused. Pure: the next tick is computed after a time the caller passes.

// Input (the config, /proc, what apps print) drives the arithmetic here: no silent overflow,
// no lossy `as` (docs/design.md, "Arithmetic on input, and the fuzz suite").
#![deny(clippy::arithmetic_side_effects, clippy::as_conversions)]

use std::fmt;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A validated schedule and the time zone its fields are read in.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// As written, for messages, `zoo check` and comparing two configs.
    text: String,
    timezone: Tz,
    cron: Cron,
}

/// Two schedules are the same when written the same in the same zone (a reload keeps it).
impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.timezone == other.timezone
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\" ({})", self.text, self.timezone)
    }
}

impl Schedule {
    /// Parses `text` read in `timezone` (an IANA name such as `Europe/Paris`, or `UTC`).
    ///
    /// # Errors
    /// What is wrong, as a message for a config diagnostic.
    pub fn parse(text: &str, timezone: &str) -> Result<Self, String> {
        let timezone: Tz = timezone.parse().map_err(|_| {
            format!("unknown time zone \"{timezone}\"; expected an IANA name like \"Europe/Paris\" or \"UTC\"")
        })?;
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(text)
            .map_err(|error| {
                format!(
                    "invalid schedule \"{text}\" ({error}); expected 5 fields (minute hour day \
                     month weekday), 6 with seconds first, or @hourly, @daily, @weekly, \
                     @monthly, @yearly"
                )
            })?;
        let schedule = Self {
            text: text.to_owned(),
            timezone,
            cron,
        };
        // Without a year field a schedule repeats at least every 400 years (the Gregorian
        // cycle), and croner searches far beyond that: no tick from a fixed date means none ever.
        if schedule.next_after(SystemTime::UNIX_EPOCH).is_none() {
            return Err(format!(
                "schedule \"{text}\" never fires: no date matches it"
            ));
        }
        Ok(schedule)
    }

    /// The first tick strictly after `after`.
    #[must_use]
    pub fn next_after(&self, after: SystemTime) -> Option<SystemTime> {
        let after = DateTime::<Utc>::from(after).with_timezone(&self.timezone);
        let next = self.cron.find_next_occurrence(&after, false).ok()?;
        Some(SystemTime::from(next.with_timezone(&Utc)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Seconds since the epoch of an RFC 3339 UTC time.
    fn at(text: &str) -> SystemTime {
        SystemTime::from(DateTime::parse_from_rfc3339(text).unwrap())
    }

    fn next(text: &str, zone: &str, after: &str) -> SystemTime {
        Schedule::parse(text, zone)
            .unwrap()
            .next_after(at(after))
            .unwrap()
    }

    #[test]
    fn five_fields_six_with_seconds_and_nicknames() {
        let after = "2026-12-01T10:07:30Z";
        assert_eq!(
            next("*/15 * * * *", "UTC", after),
            at("2026-12-01T10:15:00Z")
        );
        assert_eq!(
            next("*/2 * * * * *", "UTC", after),
            at("2026-12-01T10:07:32Z")
        );
        assert_eq!(next("@hourly", "UTC", after), at("2026-12-01T11:00:00Z"));
        assert_eq!(next("@daily", "UTC", after), at("2026-12-02T00:00:00Z"));
        assert_eq!(
            next("0 9 * * MON", "UTC", after),
            at("2026-12-07T09:00:00Z")
        );
        // Strictly after: a tick exactly now is the next one's turn.
        let tick = at("2026-12-01T10:15:00Z");
        let schedule = Schedule::parse("*/15 * * * *", "UTC").unwrap();
        assert_eq!(
            schedule.next_after(tick),
            Some(tick + Duration::from_secs(15 * 60))
        );
    }

    #[test]
    fn fields_are_read_in_the_time_zone() {
        // 02:30 in Paris is 01:30 UTC in winter (CET, +1).
        let after = "2026-12-01T00:00:00Z";
        assert_eq!(
            next("30 2 * * *", "Europe/Paris", after),
            at("2026-12-01T01:30:00Z")
        );
    }

    #[test]
    fn bad_schedules_and_zones_are_refused_with_why() {
        assert_eq!(
            Schedule::parse("0 0 31 2 *", "UTC").unwrap_err(),
            "schedule \"0 0 31 2 *\" never fires: no date matches it"
        );
        let error = Schedule::parse("every minute", "UTC").unwrap_err();
        assert!(
            error.starts_with("invalid schedule \"every minute\" ("),
            "{error}"
        );
        assert!(Schedule::parse("* * * * * * 2030", "UTC").is_err());
        assert_eq!(
            Schedule::parse("@hourly", "Mars/Olympus").unwrap_err(),
            "unknown time zone \"Mars/Olympus\"; expected an IANA name like \"Europe/Paris\" \
             or \"UTC\""
        );
    }
}
