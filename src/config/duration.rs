//! Durations as written in the config: `"250ms"`, `"10s"`, `"2m"`, `"1h"`, combinations such as
//! `"1m30s"`, or a bare integer meaning seconds. Pure; knows nothing of TOML.

use std::time::Duration;

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
        return Ok(Duration::from_secs(seconds));
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
            .ok_or_else(|| format!("duration \"{text}\" is too long"))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("duration \"{text}\" is too long"))?;
    }
    Ok(total)
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

    #[test]
    fn parse_rejects_overflow() {
        assert_eq!(
            parse("99999999999h"),
            Err("duration \"99999999999h\" is too long".to_owned())
        );
    }
}
