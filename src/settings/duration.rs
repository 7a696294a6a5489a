//! Durations as the config file writes them: `30s`, `15m`, `2h`, `30d`, and
//! combinations from the largest unit to the smallest (`1h30m`, `2d12h`).

use std::fmt;
use std::time::Duration;

use thiserror::Error;

/// Why a text is not a usable duration. The message completes
/// "`<path>`: ".
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DurationError {
    #[error("is empty (expected a duration such as 30s, 15m, 2h or 30d)")]
    Empty,
    #[error("{0:?} cannot be negative (expected a duration such as 30s, 15m, 2h or 30d)")]
    Negative(String),
    #[error("{0:?} has no unit (expected a duration such as 30s, 15m, 2h or 30d)")]
    MissingUnit(String),
    #[error(
        "{0:?} is not a duration (expected a number followed by s, m, h or d, \
         such as 30s, 15m, 2h, 30d or 1h30m)"
    )]
    Malformed(String),
    #[error("{0:?} must go from the largest unit to the smallest, each once (such as 1h30m)")]
    UnitOrder(String),
    #[error("{0:?} must be longer than zero")]
    Zero(String),
    #[error("{0:?} is too long")]
    Overflow(String),
}

/// Seconds per unit, largest first: the order units must appear in.
const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];

/// Parse `30s`, `15m`, `2h`, `30d`, `1h30m`. Zero, negative, unit-less and
/// overflowing durations are errors: every duration in the config bounds a
/// wait, and a zero wait is always a mistake.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(DurationError::Empty);
    }
    let owned = || trimmed.to_string();
    if trimmed.starts_with('-') {
        return Err(DurationError::Negative(owned()));
    }
    if trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return if trimmed.bytes().all(|b| b == b'0') {
            Err(DurationError::Zero(owned()))
        } else {
            Err(DurationError::MissingUnit(owned()))
        };
    }

    let mut total: u64 = 0;
    // Index into UNITS of the next unit allowed; each unit at most once, in order.
    let mut next_unit = 0;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(DurationError::Malformed(owned()));
        }
        let (number, after) = rest.split_at(digits);
        let mut chars = after.chars();
        let Some(unit) = chars.next() else {
            return Err(DurationError::MissingUnit(owned()));
        };
        let Some(position) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(DurationError::Malformed(owned()));
        };
        if position < next_unit {
            return Err(DurationError::UnitOrder(owned()));
        }
        next_unit = position + 1;
        let value: u64 = number
            .parse()
            .map_err(|_| DurationError::Overflow(owned()))?;
        let seconds = value
            .checked_mul(UNITS[position].1)
            .ok_or_else(|| DurationError::Overflow(owned()))?;
        total = total
            .checked_add(seconds)
            .ok_or_else(|| DurationError::Overflow(owned()))?;
        rest = chars.as_str();
    }
    if total == 0 {
        return Err(DurationError::Zero(owned()));
    }
    Ok(Duration::from_secs(total))
}

/// A duration in the config's own notation (`1h30m`, `20m`, `0s`), whole
/// seconds.
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut seconds = self.0.as_secs();
        if seconds == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in UNITS {
            if seconds >= size {
                write!(f, "{}{unit}", seconds / size)?;
                seconds %= size;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_unit_and_combinations() {
        let cases = [
            ("30s", 30),
            ("15m", 900),
            ("2h", 7_200),
            ("30d", 2_592_000),
            ("1h30m", 5_400),
            ("2d12h", 216_000),
            ("1d1h1m1s", 90_061),
            ("90s", 90),
            (" 5m ", 300),
            ("0h5m", 300),
        ];
        for (text, seconds) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(seconds)),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_what_cannot_bound_a_wait() {
        use DurationError::*;
        let cases = [
            ("", Empty),
            ("0", Zero("0".into())),
            ("0s", Zero("0s".into())),
            ("0h0m", Zero("0h0m".into())),
            ("-5m", Negative("-5m".into())),
            ("30", MissingUnit("30".into())),
            ("1h30", MissingUnit("1h30".into())),
            ("15x", Malformed("15x".into())),
            ("m", Malformed("m".into())),
            ("1.5h", Malformed("1.5h".into())),
            ("1h 30m", Malformed("1h 30m".into())),
            ("30m1h", UnitOrder("30m1h".into())),
            ("1m1m", UnitOrder("1m1m".into())),
            (
                "99999999999999999999s",
                Overflow("99999999999999999999s".into()),
            ),
            (
                "999999999999999999d",
                Overflow("999999999999999999d".into()),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Err(expected), "{text:?}");
        }
    }

    #[test]
    fn formats_in_config_notation() {
        assert_eq!(
            HumanDuration(Duration::from_secs(5_400)).to_string(),
            "1h30m"
        );
        assert_eq!(HumanDuration(Duration::from_secs(1_200)).to_string(), "20m");
        assert_eq!(
            HumanDuration(Duration::from_secs(90_061)).to_string(),
            "1d1h1m1s"
        );
        assert_eq!(HumanDuration(Duration::ZERO).to_string(), "0s");
    }
}
