//! Maintenance windows: whether an instant is inside the configured
//! `window`, and when it ends or next opens. Pure: the caller supplies the
//! instant.
//!
//! # Semantics
//!
//! - `days` are the local days on which a window *starts*. A window whose
//!   `end` is not after its `start` crosses midnight and ends the next day:
//!   `Sat 22:00–02:00` runs from Saturday 22:00 to Sunday 02:00, and a
//!   Sunday 01:00 instant is inside it even when Sunday is not listed.
//! - `start` and `end` are wall-clock times in the window's time zone. Each
//!   occurrence opens at the first instant whose local wall clock reads
//!   `start` or later on its day, and closes at the first instant after that
//!   whose wall clock reads `end` or later (on the next day for a window
//!   that crosses midnight). The window is half-open: inside at `start`,
//!   outside at `end`.
//! - Daylight-saving changes follow from that rule:
//!   - a time skipped by a spring-forward gap is reached when the gap ends:
//!     a `02:30` start on 2026-03-29 in Europe/Berlin opens at 03:00 CEST,
//!     the first valid instant after the gap. (jiff's `compatible`
//!     disambiguation would instead shift it by the gap's length, to 03:30;
//!     we do not use it for gaps, so that a window never opens later than
//!     the wall clock says it should.)
//!   - a time repeated by a fall-back fold is taken at its first
//!     occurrence (what `compatible` does for folds), so the window's length
//!     follows the wall clock: `02:00–06:00` on 2026-10-25 in Europe/Berlin
//!     opens at 02:00 CEST and closes at 06:00 CET, five hours later; a
//!     window ending at `02:30` that day closes at the first 02:30 and does
//!     not reopen when the clock shows 02:00 again.
//!   - an occurrence left empty by a gap (`02:15–02:45` on a spring-forward
//!     day opens and closes at the same instant) is skipped.

use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{Timestamp, ToSpan, Zoned};

/// `window`: a weekly maintenance window in a time zone. The window opens
/// at `start` on each of `days`; when `end` is not after `start` it closes
/// at `end` the next day (`22:00`–`04:00`).
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// Sorted Monday first, no duplicates, never empty.
    pub days: Vec<Weekday>,
    pub start: Time,
    pub end: Time,
    pub time_zone: TimeZone,
    /// The IANA name as written (`Europe/Berlin`).
    pub time_zone_name: String,
}

impl Window {
    /// Whether `at` falls inside the window, as [`position`] decides it
    /// (daylight-saving gaps and folds included). A window whose position
    /// cannot be computed (no days, never opens) contains nothing.
    pub fn contains(&self, at: Timestamp) -> bool {
        matches!(position(self, at), Ok(Position::Inside { .. }))
    }
}

/// How many local days past the instant's own date are searched for the
/// next opening: a week, plus a week for an occurrence emptied by a
/// daylight-saving gap.
const SEARCH_DAYS: i64 = 14;

/// Where an instant stands relative to the maintenance window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// Inside an occurrence of the window, which closes at `ends_at`.
    Inside { ends_at: Timestamp },
    /// Outside the window; the next occurrence opens at `opens_at`.
    Outside { opens_at: Timestamp },
}

/// Why a window's position could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    /// `days` is empty (the settings validator never builds such a window).
    #[error("the maintenance window lists no days, so it never opens")]
    NoDays,
    /// No occurrence opens within two weeks, for example because every
    /// occurrence falls into a daylight-saving gap.
    #[error("the maintenance window does not open within {SEARCH_DAYS} days of {at}")]
    NeverOpens { at: Timestamp },
    /// Date arithmetic left the range jiff supports (years -9999 to 9999).
    #[error("the maintenance window cannot be computed around {at}: {source}")]
    OutOfRange {
        at: Timestamp,
        #[source]
        source: jiff::Error,
    },
}

/// Decides whether `at` is inside `window`, and when that occurrence ends
/// or the next one opens.
pub fn position(window: &Window, at: Timestamp) -> Result<Position, WindowError> {
    if window.days.is_empty() {
        return Err(WindowError::NoDays);
    }
    let out_of_range = |source| WindowError::OutOfRange { at, source };
    let today = at.to_zoned(window.time_zone.clone()).date();
    // Yesterday's occurrence may cross midnight into today.
    let mut day = today.checked_sub(1.day()).map_err(out_of_range)?;
    for _ in 0..=SEARCH_DAYS + 1 {
        if window.days.contains(&day.weekday()) {
            let (opens, closes) = occurrence(window, day).map_err(out_of_range)?;
            if opens < closes {
                if opens <= at && at < closes {
                    return Ok(Position::Inside { ends_at: closes });
                }
                if at < opens {
                    return Ok(Position::Outside { opens_at: opens });
                }
            }
        }
        day = day.checked_add(1.day()).map_err(out_of_range)?;
    }
    Err(WindowError::NeverOpens { at })
}

/// The occurrence of `window` that starts on local date `day`, as the
/// instants it opens and closes. Empty (`opens >= closes`) only when a
/// daylight-saving gap swallows it.
fn occurrence(window: &Window, day: Date) -> Result<(Timestamp, Timestamp), jiff::Error> {
    let end_day = if window.end <= window.start {
        day.checked_add(1.day())?
    } else {
        day
    };
    let opens = first_instant_at_or_after(&window.time_zone, day.to_datetime(window.start))?;
    let closes = first_instant_at_or_after(&window.time_zone, end_day.to_datetime(window.end))?;
    Ok((opens, closes))
}

/// The first instant at which the wall clock in `tz` reads `local` or
/// later: the instant itself when it exists once, its first occurrence in a
/// fold, and the end of the gap when a gap skips it.
fn first_instant_at_or_after(tz: &TimeZone, local: DateTime) -> Result<Timestamp, jiff::Error> {
    let ambiguous = tz.to_ambiguous_timestamp(local);
    match ambiguous.offset() {
        AmbiguousOffset::Unambiguous { .. } | AmbiguousOffset::Fold { .. } => ambiguous.earlier(),
        AmbiguousOffset::Gap { .. } => {
            // `earlier` reads the skipped time with the offset in force after
            // the gap, which lands before the transition; the transition that
            // follows it is where the gap ends.
            let before_gap = ambiguous.earlier()?;
            match tz.following(before_gap).next() {
                Some(transition) => Ok(transition.timestamp()),
                None => ambiguous.compatible(),
            }
        }
    }
}

impl Position {
    /// One sentence for the command line, for example
    /// `outside the maintenance window (Sat, Sun 02:00–06:00 Europe/Berlin);
    /// it opens at 2026-12-05T02:00:00+01:00 (in 3d 4h)`.
    pub fn sentence(&self, window: &Window, now: Timestamp) -> String {
        let (state, verb, at) = match *self {
            Position::Inside { ends_at } => ("inside", "ends", ends_at),
            Position::Outside { opens_at } => ("outside", "opens", opens_at),
        };
        format!(
            "{state} the maintenance window ({}); it {verb} at {} (in {})",
            describe(window),
            local_rfc3339(&at.to_zoned(window.time_zone.clone())),
            human_interval(now, at),
        )
    }
}

/// The window as written in the configuration, for messages:
/// `Sat, Sun 02:00–06:00 Europe/Berlin`, `every day 22:00–02:00 next day UTC`.
pub fn describe(window: &Window) -> String {
    let days = if window.days.len() == 7 {
        "every day".to_string()
    } else {
        window
            .days
            .iter()
            .map(|day| day_name(*day))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let next_day = if window.end <= window.start {
        " next day"
    } else {
        ""
    };
    format!(
        "{days} {}–{}{next_day} {}",
        clock(window.start),
        clock(window.end),
        window.time_zone_name
    )
}

fn day_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Monday => "Mon",
        Weekday::Tuesday => "Tue",
        Weekday::Wednesday => "Wed",
        Weekday::Thursday => "Thu",
        Weekday::Friday => "Fri",
        Weekday::Saturday => "Sat",
        Weekday::Sunday => "Sun",
    }
}

fn clock(time: Time) -> String {
    format!("{:02}:{:02}", time.hour(), time.minute())
}

/// `2026-12-05T02:00:00+01:00`: the local time with its offset, which a
/// reader can compare with their own clock.
fn local_rfc3339(zoned: &Zoned) -> String {
    zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// The time from `from` to `to` in at most two units, rounded up to the
/// minute so that a window a few seconds away does not read "0m":
/// `3d 4h`, `2h 5m`, `1m`, `45s`.
fn human_interval(from: Timestamp, to: Timestamp) -> String {
    let seconds = to.as_second().saturating_sub(from.as_second()).max(0);
    if seconds < 60 {
        return format!("{seconds}s");
    }
    let minutes = (seconds + 59) / 60;
    let units = [
        (minutes / (24 * 60), "d"),
        (minutes / 60 % 24, "h"),
        (minutes % 60, "m"),
    ];
    let parts: Vec<String> = units
        .iter()
        .skip_while(|(value, _)| *value == 0)
        .take(2)
        .filter(|(value, _)| *value != 0)
        .map(|(value, unit)| format!("{value}{unit}"))
        .collect();
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::Time;

    fn window(days: &[Weekday], start: &str, end: &str, zone: &str) -> Window {
        Window {
            days: days.to_vec(),
            start: start.parse().unwrap(),
            end: end.parse().unwrap(),
            time_zone: TimeZone::get(zone).unwrap(),
            time_zone_name: zone.to_string(),
        }
    }

    /// An instant written as local time with its offset, so each case
    /// reads the way a person checks it against a wall clock.
    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    const WEEKEND: &[Weekday] = &[Weekday::Saturday, Weekday::Sunday];
    const SATURDAY: &[Weekday] = &[Weekday::Saturday];
    const SUNDAY: &[Weekday] = &[Weekday::Sunday];
    const EVERY_DAY: &[Weekday] = &[
        Weekday::Monday,
        Weekday::Tuesday,
        Weekday::Wednesday,
        Weekday::Thursday,
        Weekday::Friday,
        Weekday::Saturday,
        Weekday::Sunday,
    ];

    enum Want {
        Inside(&'static str),
        Outside(&'static str),
    }
    use Want::{Inside, Outside};

    /// (name, days, start, end, time zone, instant, expected)
    type Case = (
        &'static str,
        &'static [Weekday],
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        Want,
    );

    #[test]
    fn position_table() {
        let cases: &[Case] = &[
            // 2026-12-05 is a Saturday; Berlin is +01:00 in winter.
            (
                "inside a weekend window",
                WEEKEND,
                "02:00",
                "06:00",
                "Europe/Berlin",
                "2026-12-05T03:00:00+01:00",
                Inside("2026-12-05T06:00:00+01:00"),
            ),
            (
                "before it on a weekday",
                WEEKEND,
                "02:00",
                "06:00",
                "Europe/Berlin",
                "2026-12-01T22:00:00+01:00",
                Outside("2026-12-05T02:00:00+01:00"),
            ),
            (
                "exactly at the start is inside",
                WEEKEND,
                "02:00",
                "06:00",
                "Europe/Berlin",
                "2026-12-05T02:00:00+01:00",
                Inside("2026-12-05T06:00:00+01:00"),
            ),
            (
                "one second before the start is outside",
                WEEKEND,
                "02:00",
                "06:00",
                "Europe/Berlin",
                "2026-12-05T01:59:59+01:00",
                Outside("2026-12-05T02:00:00+01:00"),
            ),
            (
                "exactly at the end is outside; Sunday opens next",
                WEEKEND,
                "02:00",
                "06:00",
                "Europe/Berlin",
                "2026-12-05T06:00:00+01:00",
                Outside("2026-12-06T02:00:00+01:00"),
            ),
            (
                "after Sunday's window the next is a week on",
                WEEKEND,
                "02:00",
                "06:00",
                "Europe/Berlin",
                "2026-12-06T07:00:00+01:00",
                Outside("2026-12-12T02:00:00+01:00"),
            ),
            (
                "the window is read in its own time zone, not UTC",
                WEEKEND,
                "02:00",
                "06:00",
                "Europe/Berlin",
                // Friday 23:30 UTC is Saturday 00:30 in Berlin.
                "2026-12-04T23:30:00Z",
                Outside("2026-12-05T02:00:00+01:00"),
            ),
            (
                "crossing midnight: inside on the following day",
                SATURDAY,
                "22:00",
                "02:00",
                "Europe/Berlin",
                "2026-12-06T01:00:00+01:00",
                Inside("2026-12-06T02:00:00+01:00"),
            ),
            (
                "crossing midnight: inside before midnight",
                SATURDAY,
                "22:00",
                "02:00",
                "Europe/Berlin",
                "2026-12-05T23:00:00+01:00",
                Inside("2026-12-06T02:00:00+01:00"),
            ),
            (
                "crossing midnight: Sunday night is not a Sunday start",
                SATURDAY,
                "22:00",
                "02:00",
                "Europe/Berlin",
                "2026-12-06T23:00:00+01:00",
                Outside("2026-12-12T22:00:00+01:00"),
            ),
            (
                "crossing midnight: the end is outside",
                SATURDAY,
                "22:00",
                "02:00",
                "Europe/Berlin",
                "2026-12-06T02:00:00+01:00",
                Outside("2026-12-12T22:00:00+01:00"),
            ),
            (
                "every day: after today's window, tomorrow's",
                EVERY_DAY,
                "02:00",
                "06:00",
                "UTC",
                "2026-12-02T12:00:00Z",
                Outside("2026-12-03T02:00:00Z"),
            ),
            (
                "every day, crossing midnight: early morning is yesterday's",
                EVERY_DAY,
                "23:00",
                "01:00",
                "UTC",
                "2026-12-02T00:30:00Z",
                Inside("2026-12-02T01:00:00Z"),
            ),
            (
                "a window ending at midnight ends the next day at 00:00",
                SATURDAY,
                "20:00",
                "00:00",
                "UTC",
                "2026-12-05T23:59:00Z",
                Inside("2026-12-06T00:00:00Z"),
            ),
            // Europe/Berlin springs forward on 2026-03-29 (a Sunday):
            // 02:00 CET becomes 03:00 CEST.
            (
                "spring forward: a window spanning the gap is an hour shorter",
                SUNDAY,
                "01:00",
                "05:00",
                "Europe/Berlin",
                "2026-03-29T03:30:00+02:00",
                Inside("2026-03-29T05:00:00+02:00"),
            ),
            (
                "spring forward: a start in the gap opens when the gap ends",
                SUNDAY,
                "02:30",
                "06:00",
                "Europe/Berlin",
                "2026-03-29T01:59:00+01:00",
                Outside("2026-03-29T03:00:00+02:00"),
            ),
            (
                "spring forward: the first instant after the gap is inside",
                SUNDAY,
                "02:30",
                "06:00",
                "Europe/Berlin",
                "2026-03-29T03:00:00+02:00",
                Inside("2026-03-29T06:00:00+02:00"),
            ),
            (
                "spring forward: an end in the gap closes when the gap ends",
                SUNDAY,
                "01:00",
                "02:30",
                "Europe/Berlin",
                "2026-03-29T01:30:00+01:00",
                Inside("2026-03-29T03:00:00+02:00"),
            ),
            (
                "spring forward: an occurrence inside the gap is skipped",
                SUNDAY,
                "02:15",
                "02:45",
                "Europe/Berlin",
                "2026-03-29T01:00:00+01:00",
                Outside("2026-04-05T02:15:00+02:00"),
            ),
            // Europe/Berlin falls back on 2026-10-25 (a Sunday): 03:00 CEST
            // becomes 02:00 CET, so 02:00–03:00 happens twice.
            (
                "fall back: the window follows the wall clock (five hours)",
                SUNDAY,
                "02:00",
                "06:00",
                "Europe/Berlin",
                "2026-10-25T02:00:00+02:00",
                Inside("2026-10-25T06:00:00+01:00"),
            ),
            (
                "fall back: the repeated hour is inside",
                SUNDAY,
                "02:00",
                "06:00",
                "Europe/Berlin",
                "2026-10-25T02:30:00+01:00",
                Inside("2026-10-25T06:00:00+01:00"),
            ),
            (
                "fall back: a start in the repeated hour opens at its first pass",
                SUNDAY,
                "02:30",
                "04:00",
                "Europe/Berlin",
                "2026-10-25T01:00:00+02:00",
                Outside("2026-10-25T02:30:00+02:00"),
            ),
            (
                "fall back: an end in the repeated hour closes at its first pass",
                SUNDAY,
                "01:00",
                "02:30",
                "Europe/Berlin",
                "2026-10-25T02:45:00+02:00",
                Outside("2026-11-01T01:00:00+01:00"),
            ),
            // America/New_York springs forward on 2026-03-08 (02:00 EST to
            // 03:00 EDT) and falls back on 2026-11-01 (02:00 EDT to 01:00 EST).
            (
                "New York spring forward: a 02:00 start opens at 03:00 EDT",
                SUNDAY,
                "02:00",
                "04:00",
                "America/New_York",
                "2026-03-08T06:00:00Z",
                Outside("2026-03-08T03:00:00-04:00"),
            ),
            (
                "New York spring forward: crossing midnight into the gap day",
                SATURDAY,
                "23:00",
                "03:00",
                "America/New_York",
                "2026-03-08T01:59:59-05:00",
                Inside("2026-03-08T03:00:00-04:00"),
            ),
            (
                "New York fall back: the window lasts an hour longer",
                SUNDAY,
                "00:00",
                "03:00",
                "America/New_York",
                "2026-11-01T01:30:00-05:00",
                Inside("2026-11-01T03:00:00-05:00"),
            ),
        ];
        for (name, days, start, end, zone, at, want) in cases {
            let w = window(days, start, end, zone);
            let got = position(&w, ts(at)).unwrap();
            let want = match want {
                Inside(ends) => Position::Inside { ends_at: ts(ends) },
                Outside(opens) => Position::Outside {
                    opens_at: ts(opens),
                },
            };
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn answers_agree_with_each_other_around_every_transition() {
        // Every 15 minutes across both 2026 DST weekends in Berlin, for
        // windows that start or end inside the gap and the fold: an inside
        // answer's end is in the future and is outside; an outside answer's
        // opening is in the future, is inside, and the second before it is
        // still outside.
        let windows = [
            window(SUNDAY, "02:30", "06:00", "Europe/Berlin"),
            window(SUNDAY, "01:00", "02:30", "Europe/Berlin"),
            window(SATURDAY, "22:00", "02:30", "Europe/Berlin"),
            window(EVERY_DAY, "01:00", "05:00", "Europe/Berlin"),
        ];
        for (from, to) in [
            ("2026-03-28T20:00:00Z", "2026-03-29T08:00:00Z"),
            ("2026-10-24T20:00:00Z", "2026-10-25T08:00:00Z"),
        ] {
            let mut at = ts(from);
            while at < ts(to) {
                for w in &windows {
                    let name = describe(w);
                    match position(w, at).unwrap() {
                        Position::Inside { ends_at } => {
                            assert!(ends_at > at, "{name} at {at}: ends at {ends_at}");
                            assert!(
                                matches!(position(w, ends_at).unwrap(), Position::Outside { .. }),
                                "{name}: inside at {at}, yet still inside at its end {ends_at}"
                            );
                        }
                        Position::Outside { opens_at } => {
                            assert!(opens_at > at, "{name} at {at}: opens at {opens_at}");
                            assert!(
                                matches!(position(w, opens_at).unwrap(), Position::Inside { .. }),
                                "{name}: outside at {at}, yet not inside when it opens at {opens_at}"
                            );
                            let before = opens_at.checked_sub(1.second()).unwrap();
                            assert!(
                                matches!(position(w, before).unwrap(), Position::Outside { .. }),
                                "{name}: already inside at {before}, before it opens at {opens_at}"
                            );
                        }
                    }
                }
                at = at.checked_add(15.minutes()).unwrap();
            }
        }
    }

    #[test]
    fn an_inside_answer_ends_where_the_next_outside_answer_starts() {
        // Walking the window edge: one second before the end is inside and
        // reports that end; at the end it is outside.
        let w = window(WEEKEND, "22:00", "04:00", "Europe/Berlin");
        let at = ts("2026-12-05T23:00:00+01:00");
        let Position::Inside { ends_at } = position(&w, at).unwrap() else {
            panic!("expected inside");
        };
        assert_eq!(ends_at, ts("2026-12-06T04:00:00+01:00"));
        let just_before = ends_at.checked_sub(1.second()).unwrap();
        assert_eq!(
            position(&w, just_before).unwrap(),
            Position::Inside { ends_at }
        );
        assert_eq!(
            position(&w, ends_at).unwrap(),
            Position::Outside {
                opens_at: ts("2026-12-06T22:00:00+01:00")
            }
        );
    }

    #[test]
    fn a_window_without_days_is_an_error_not_a_panic() {
        let w = window(&[], "02:00", "06:00", "UTC");
        let err = position(&w, ts("2026-12-05T00:00:00Z")).unwrap_err();
        assert!(matches!(err, WindowError::NoDays), "{err}");
    }

    #[test]
    fn the_last_representable_days_are_an_error_not_a_panic() {
        let w = window(SATURDAY, "02:00", "06:00", "UTC");
        let err = position(&w, ts("9999-12-30T00:00:00Z")).unwrap_err();
        assert!(matches!(err, WindowError::OutOfRange { .. }), "{err}");
    }

    #[test]
    fn sentences_for_the_command_line() {
        let w = window(WEEKEND, "02:00", "06:00", "Europe/Berlin");
        let now = ts("2026-12-01T22:00:00+01:00");
        let position = position(&w, now).unwrap();
        assert_eq!(
            position.sentence(&w, now),
            "outside the maintenance window (Sat, Sun 02:00–06:00 Europe/Berlin); \
             it opens at 2026-12-05T02:00:00+01:00 (in 3d 4h)"
        );

        let now = ts("2026-12-05T03:40:00+01:00");
        let position = super::position(&w, now).unwrap();
        assert_eq!(
            position.sentence(&w, now),
            "inside the maintenance window (Sat, Sun 02:00–06:00 Europe/Berlin); \
             it ends at 2026-12-05T06:00:00+01:00 (in 2h 20m)"
        );

        let overnight = window(EVERY_DAY, "22:00", "02:00", "America/New_York");
        assert_eq!(
            describe(&overnight),
            "every day 22:00–02:00 next day America/New_York"
        );
    }

    #[test]
    fn intervals_read_in_two_units_rounded_up_to_the_minute() {
        let base = ts("2026-12-01T00:00:00Z");
        let cases = [
            (45, "45s"),
            (60, "1m"),
            (61, "2m"),
            (3600, "1h"),
            (3600 + 5 * 60, "1h 5m"),
            (3 * 86400 + 4 * 3600, "3d 4h"),
            (3 * 86400 + 4 * 3600 + 59 * 60, "3d 4h"),
            (2 * 86400 + 30 * 60, "2d"),
        ];
        for (seconds, want) in cases {
            let to = base.checked_add(seconds.seconds()).unwrap();
            assert_eq!(human_interval(base, to), want, "{seconds}s");
        }
    }

    #[test]
    fn clock_shows_hours_and_minutes() {
        assert_eq!(clock(Time::constant(2, 5, 0, 0)), "02:05");
    }

    /// A window in Europe/Berlin, for the tests of [`Window::contains`].
    fn berlin(days: &[Weekday], start: Time, end: Time) -> Window {
        Window {
            days: days.to_vec(),
            start,
            end,
            time_zone: TimeZone::get("Europe/Berlin").unwrap(),
            time_zone_name: "Europe/Berlin".into(),
        }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn window_is_read_in_its_time_zone() {
        let w = berlin(
            &[Weekday::Saturday, Weekday::Sunday],
            Time::constant(2, 0, 0, 0),
            Time::constant(6, 0, 0, 0),
        );
        // 2025-06-07 is a Saturday; Berlin is UTC+2 in summer.
        assert!(w.contains(at("2025-06-07T00:00:00Z")), "02:00 Berlin");
        assert!(w.contains(at("2025-06-07T03:59:59Z")), "05:59:59 Berlin");
        assert!(
            !w.contains(at("2025-06-07T04:00:00Z")),
            "06:00 Berlin is the end"
        );
        assert!(!w.contains(at("2025-06-06T23:59:59Z")), "01:59:59 Berlin");
        assert!(!w.contains(at("2025-06-09T01:00:00Z")), "Monday 03:00");
    }

    #[test]
    fn overnight_window_closes_the_next_day() {
        let w = berlin(
            &[Weekday::Friday],
            Time::constant(22, 0, 0, 0),
            Time::constant(4, 0, 0, 0),
        );
        // 2025-01-10 is a Friday; Berlin is UTC+1 in winter.
        assert!(w.contains(at("2025-01-10T21:30:00Z")), "Friday 22:30");
        assert!(w.contains(at("2025-01-11T02:00:00Z")), "Saturday 03:00");
        assert!(!w.contains(at("2025-01-11T03:00:00Z")), "Saturday 04:00");
        assert!(
            !w.contains(at("2025-01-10T02:00:00Z")),
            "Friday 03:00: Thursday did not open"
        );
    }
}
