//! Durations as users write them, in one grammar for the config file, the
//! command line and the Terraform modules' variables (their validation
//! regex mirrors it, and a test checks both on the same examples):
//!
//! - numbers of whole units, from the largest unit to the smallest, each
//!   unit at most once: `d`, `h`, `m`, `s`, `ms` — `30s`, `15m`, `2h`,
//!   `30d`, `1h30m`, `200ms`;
//! - no sign, no fraction, no space inside; space around is ignored.
//!
//! A duration that bounds a wait ([`parse_duration`]) must be longer than
//! zero; a delay ([`parse_delay`]) may be zero.

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
        "{0:?} is not a duration (expected a number followed by d, h, m, s or ms, \
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

/// Milliseconds per unit, largest first: the order units must appear in.
/// `ms` comes before `m` where a unit is matched, so `5ms` is not `5m`
/// followed by garbage.
const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// A duration that bounds a wait: `30s`, `15m`, `2h`, `30d`, `1h30m`. Zero
/// is an error, since a zero wait is always a mistake.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let duration = parse(text)?;
    if duration.is_zero() {
        return Err(DurationError::Zero(text.trim().to_string()));
    }
    Ok(duration)
}

/// A delay, which may be zero (`0s`, or a bare `0`): `200ms`, `3s`.
pub fn parse_delay(text: &str) -> Result<Duration, DurationError> {
    parse(text)
}

/// The grammar, zero included.
fn parse(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(DurationError::Empty);
    }
    let owned = || trimmed.to_string();
    if trimmed.starts_with('-') {
        return Err(DurationError::Negative(owned()));
    }
    if trimmed.bytes().all(|b| b.is_ascii_digit()) {
        // A bare number has no unit, except zero, which is zero in any.
        return if trimmed.bytes().all(|b| b == b'0') {
            Ok(Duration::ZERO)
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
        if after.is_empty() {
            return Err(DurationError::MissingUnit(owned()));
        }
        let unit_len = after.bytes().take_while(|b| !b.is_ascii_digit()).count();
        let (unit, remainder) = after.split_at(unit_len);
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
        let millis = value
            .checked_mul(UNITS[position].1)
            .ok_or_else(|| DurationError::Overflow(owned()))?;
        total = total
            .checked_add(millis)
            .ok_or_else(|| DurationError::Overflow(owned()))?;
        rest = remainder;
    }
    Ok(Duration::from_millis(total))
}

/// A duration in the same notation (`1h30m`, `20m`, `1s500ms`, `0s`),
/// whole milliseconds.
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut millis = u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX);
        if millis == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in UNITS {
            if millis >= size {
                write!(f, "{}{unit}", millis / size)?;
                millis %= size;
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
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("1s500ms"), Ok(Duration::from_millis(1_500)));
        assert_eq!(parse_duration("1m5ms"), Ok(Duration::from_millis(60_005)));
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
            ("5ms1s", UnitOrder("5ms1s".into())),
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
    fn delays_may_be_zero_and_follow_the_same_grammar() {
        assert_eq!(parse_delay("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_delay("0"), Ok(Duration::ZERO));
        assert_eq!(parse_delay("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_delay("2m"), Ok(Duration::from_secs(120)));
        assert!(matches!(
            parse_delay("3"),
            Err(DurationError::MissingUnit(_))
        ));
        assert!(matches!(
            parse_delay("3x"),
            Err(DurationError::Malformed(_))
        ));
        assert!(matches!(
            parse_delay("ms"),
            Err(DurationError::Malformed(_))
        ));
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
        assert_eq!(
            HumanDuration(Duration::from_millis(1_500)).to_string(),
            "1s500ms"
        );
        for text in ["1h30m", "200ms", "2d12h", "1m5ms"] {
            let parsed = parse_duration(text).expect(text);
            assert_eq!(HumanDuration(parsed).to_string(), text);
        }
    }
}
