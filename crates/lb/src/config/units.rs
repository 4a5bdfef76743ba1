//! HAProxy's numeric units: time values (`5s`, `100ms`, `1m`, a bare number is milliseconds) and
//! plain bounded integers. Owns only the syntax; callers decide which range makes sense.

use std::time::Duration;

/// Parses an HAProxy time value. A bare number means milliseconds, as in HAProxy
/// (`inter 5000` is five seconds); suffixes `us`, `ms`, `s`, `m`, `h`, `d` are accepted.
pub fn parse_time(text: &str) -> Result<Duration, String> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if digits_end == 0 {
        return Err(format!(
            "'{text}' is not a time value (expected e.g. 5000, 100ms, 5s, 1m)"
        ));
    }
    let value: u64 = text[..digits_end]
        .parse()
        .map_err(|_| format!("time value '{text}' is too large"))?;
    let micros_per_unit: u64 = match &text[digits_end..] {
        "us" => 1,
        "" | "ms" => 1_000,
        "s" => 1_000_000,
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        unit => {
            return Err(format!(
                "unknown time unit '{unit}' in '{text}' (use us, ms, s, m, h or d)"
            ))
        }
    };
    let micros = value
        .checked_mul(micros_per_unit)
        .filter(|m| *m <= i32::MAX as u64 * 1_000)
        .ok_or_else(|| format!("time value '{text}' is too large"))?;
    Ok(Duration::from_micros(micros))
}

/// Parses an unsigned integer in `min..=max`, naming `what` in the error.
pub fn parse_int(text: &str, what: &str, min: u64, max: u64) -> Result<u64, String> {
    let value: u64 = text
        .parse()
        .map_err(|_| format!("{what} expects an integer, got '{text}'"))?;
    if value < min || value > max {
        return Err(format!(
            "{what} must be between {min} and {max}, got {value}"
        ));
    }
    Ok(value)
}

/// Formats a duration as HAProxy's stats page does: `5m3s`, `2h10m`, `4d3h`, `12s`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins, secs) = (s / 86_400, (s / 3_600) % 24, (s / 60) % 60, s % 60);
    if days > 0 {
        format!("{days}d{hours}h")
    } else if hours > 0 {
        format!("{hours}h{mins}m")
    } else if mins > 0 {
        format!("{mins}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_numbers_are_milliseconds() {
        assert_eq!(parse_time("5000").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_time("0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn suffixes() {
        assert_eq!(parse_time("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_time("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_time("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_time("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_time("1d").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse_time("250us").unwrap(), Duration::from_micros(250));
    }

    #[test]
    fn bad_times_are_refused() {
        assert!(parse_time("").is_err());
        assert!(parse_time("s").is_err());
        assert!(parse_time("5x").is_err());
        assert!(parse_time("-5s").is_err());
        assert!(parse_time("99999999999999999999").is_err());
        assert!(parse_time("100000d").is_err());
    }

    #[test]
    fn ints_are_bounded() {
        assert_eq!(parse_int("3", "rise", 1, 100).unwrap(), 3);
        assert!(parse_int("0", "rise", 1, 100).is_err());
        assert!(parse_int("x", "rise", 1, 100).is_err());
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(Duration::from_secs(303)), "5m3s");
        assert_eq!(human_duration(Duration::from_secs(12)), "12s");
        assert_eq!(human_duration(Duration::from_secs(7800)), "2h10m");
        assert_eq!(
            human_duration(Duration::from_secs(86400 * 4 + 3 * 3600)),
            "4d3h"
        );
    }
}
