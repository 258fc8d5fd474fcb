//! Durations as written in the config: `"250ms"`, `"10s"`, `"2m"`, `"1h"`, combinations such as
//! `"1m30s"`, or a bare integer meaning seconds. Pure; knows nothing of TOML.
//!
//! Every duration is at most [`MAX`], so that the time arithmetic done with it later (a
//! deadline `Instant::now() + grace`) can never overflow: a config that passes `zoo check`
//! does not panic at run time.

// Input (the config, /proc, what apps print) drives the arithmetic here: no silent overflow,
// no lossy `as` (docs/design.md, "Arithmetic on input, and the fuzz suite").
#![deny(clippy::arithmetic_side_effects, clippy::as_conversions)]

use std::time::Duration;

/// The longest duration a config may give: one year (8760 hours). Longer than any sensible
/// timeout or grace, and far from where `Instant + Duration` overflows.
pub const MAX: Duration = Duration::from_secs(8760 * 3600);

/// Parses a duration string; the error says what was expected.
///
/// # Errors
/// A message naming the text and the accepted forms.
pub fn parse(text: &str) -> Result<Duration, String> {
    let expected = || {
        format!("expected a duration like \"250ms\", \"10s\", \"2m\" or \"1h\", found \"{text}\"")
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(expected());
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return from_secs(seconds);
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let amount: u64 = rest[..digits].parse().map_err(|_| expected())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(expected()),
        };
        rest = &rest[unit_len..];
        let part = u32::try_from(amount)
            .ok()
            .and_then(|amount| unit.checked_mul(amount))
            .ok_or_else(too_long)?;
        total = total.checked_add(part).ok_or_else(too_long)?;
    }
    if total > MAX {
        return Err(too_long());
    }
    Ok(total)
}

/// A whole number of seconds as a duration, at most [`MAX`].
///
/// # Errors
/// A message giving the limit.
pub fn from_secs(seconds: u64) -> Result<Duration, String> {
    let duration = Duration::from_secs(seconds);
    if duration > MAX {
        return Err(too_long());
    }
    Ok(duration)
}

fn too_long() -> String {
    format!(
        "a duration may be at most {}h (one year)",
        MAX.as_secs() / 3600
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_each_unit() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn parse_bare_integer_is_seconds() {
        assert_eq!(parse("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn parse_bounds_every_form_at_one_year() {
        let limit = "a duration may be at most 8760h (one year)";
        for text in [
            "9223372036854775807",
            "18446744073709551615",
            "31536001",
            "8761h",
            "8760h1ms",
            "4294967295h",
            "8760h8760h",
            "99999999999h",
        ] {
            assert_eq!(parse(text), Err(limit.to_owned()), "{text}");
        }
        assert_eq!(parse("8760h"), Ok(MAX));
        assert_eq!(parse("31536000"), Ok(MAX));
        assert_eq!(from_secs(u64::MAX), Err(limit.to_owned()));
        assert_eq!(from_secs(31_536_000), Ok(MAX));
    }

    #[test]
    fn parse_accepts_combinations() {
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1s500ms"), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn parse_rejects_garbage() {
        let message =
            "expected a duration like \"250ms\", \"10s\", \"2m\" or \"1h\", found \"ten\"";
        assert_eq!(parse("ten"), Err(message.to_owned()));
        assert!(parse("").is_err());
        assert!(parse("10").is_ok());
        assert!(parse("10d").is_err());
        assert!(parse("s").is_err());
        assert!(parse("-1s").is_err());
        assert!(parse("1.5s").is_err());
    }
}
