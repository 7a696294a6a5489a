//! The support window: which minor releases the Kubernetes project
//! maintains on a given date.
//!
//! The project maintains the three newest minors (KEP-1498, yearly support
//! period): about twelve months of patches plus about two of maintenance
//! mode, so a minor's end of life is about fourteen months after its
//! release. The table below is built in; a minor it does not know yields a
//! warning, never a failure, so an old binary still plans against a newer
//! cluster.

use std::fmt;

use jiff::ToSpan;
use jiff::civil::{Date, date};
use schemars::JsonSchema;
use serde::Serialize;

use super::KubeVersion;

/// How many of the newest minors the project maintains.
pub const MAINTAINED_MINORS: usize = 3;
/// Months from a minor's release to its end of life (12 of patches + about
/// 2 of maintenance mode).
pub const SUPPORT_MONTHS: i32 = 14;

/// One minor release line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinorRelease {
    pub minor: u64,
    /// The vX.Y.0 release date.
    pub released: Date,
    /// The newest patch release known when this table was written (0 for
    /// minors not yet released then).
    pub latest_patch: u64,
    /// `released` is a scheduled date, not a past one.
    pub scheduled: bool,
}

const fn known(minor: u64, released: Date, latest_patch: u64) -> MinorRelease {
    MinorRelease {
        minor,
        released,
        latest_patch,
        scheduled: false,
    }
}

/// The month of the newest patch releases [`RELEASES`] lists.
pub const PATCHES_AS_OF: &str = "2026-02";

/// Kubernetes v1 minor releases, oldest first. Patches as published up to
/// the February 2026 patch releases (v1.35.1, v1.34.4, v1.33.8, v1.32.12).
pub static RELEASES: &[MinorRelease] = &[
    known(24, date(2022, 5, 3), 17),
    known(25, date(2022, 8, 23), 16),
    known(26, date(2022, 12, 8), 15),
    known(27, date(2023, 4, 11), 16),
    known(28, date(2023, 8, 15), 15),
    known(29, date(2023, 12, 13), 15),
    known(30, date(2024, 4, 17), 14),
    known(31, date(2024, 8, 13), 13),
    known(32, date(2024, 12, 11), 12),
    known(33, date(2025, 4, 23), 8),
    known(34, date(2025, 8, 27), 4),
    known(35, date(2025, 12, 17), 1),
    // Scheduled dates from the release team's calendar, not past releases.
    MinorRelease {
        minor: 36,
        released: date(2026, 4, 22),
        latest_patch: 0,
        scheduled: true,
    },
    MinorRelease {
        minor: 37,
        released: date(2026, 8, 19),
        latest_patch: 0,
        scheduled: true,
    },
];

/// The table's entry for `major.minor`.
pub fn release(major: u64, minor: u64) -> Option<&'static MinorRelease> {
    if major != 1 {
        return None;
    }
    RELEASES.iter().find(|r| r.minor == minor)
}

/// Whether the built-in table knows the minor of `version`.
pub fn is_known_minor(version: KubeVersion) -> bool {
    release(version.major, version.minor).is_some()
}

/// The newest patch of `major.minor` the table knows.
pub fn latest_known_patch(major: u64, minor: u64) -> Option<KubeVersion> {
    release(major, minor).map(|r| KubeVersion::new(major, minor, r.latest_patch))
}

/// About when `release` stops getting patches.
pub fn end_of_life(release: &MinorRelease) -> Date {
    release.released.saturating_add(SUPPORT_MONTHS.months())
}

/// The minors maintained on `today`: the three newest released on or
/// before it, newest first.
pub fn maintained_minors(today: Date) -> Vec<u64> {
    RELEASES
        .iter()
        .rev()
        .filter(|r| r.released <= today)
        .take(MAINTAINED_MINORS)
        .map(|r| r.minor)
        .collect()
}

/// Where a version stands in the support window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum SupportStatus {
    Supported,
    /// Older than the three maintained minors.
    OutOfSupport {
        end_of_life: Date,
    },
    /// In the table, with a release date after `today`.
    NotYetReleased {
        release: Date,
        scheduled: bool,
    },
    /// Not in the table at all.
    Unknown,
}

/// Whether `version`'s minor is maintained on `today`.
pub fn support_status(version: KubeVersion, today: Date) -> SupportStatus {
    let Some(r) = release(version.major, version.minor) else {
        return SupportStatus::Unknown;
    };
    if r.released > today {
        return SupportStatus::NotYetReleased {
            release: r.released,
            scheduled: r.scheduled,
        };
    }
    if maintained_minors(today).contains(&r.minor) {
        SupportStatus::Supported
    } else {
        SupportStatus::OutOfSupport {
            end_of_life: end_of_life(r),
        }
    }
}

/// Whether `version`'s minor is maintained on `today` (`false` for minors
/// the table does not know).
pub fn is_supported(version: KubeVersion, today: Date) -> bool {
    support_status(version, today) == SupportStatus::Supported
}

/// Which version a [`SupportWarning`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum VersionRole {
    Current,
    Target,
}

impl fmt::Display for VersionRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VersionRole::Current => "the current control-plane version",
            VersionRole::Target => "the target version",
        })
    }
}

/// A version outside the support window, or unknown to the table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SupportWarning {
    pub role: VersionRole,
    pub version: KubeVersion,
    pub status: SupportStatus,
    pub message: String,
}

/// Warnings for the current control-plane version and the target (when
/// there is one) on `today`. A supported version yields none.
pub fn support_warnings(
    current: KubeVersion,
    target: Option<KubeVersion>,
    today: Date,
) -> Vec<SupportWarning> {
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for (role, version) in [
        (VersionRole::Current, Some(current)),
        (VersionRole::Target, target),
    ] {
        let Some(version) = version else { continue };
        if role == VersionRole::Target && seen.contains(&version.minor_line()) {
            // Same minor as the current one: already said.
            continue;
        }
        seen.push(version.minor_line());
        let status = support_status(version, today);
        let Some(message) = warning_message(role, version, status, today) else {
            continue;
        };
        out.push(SupportWarning {
            role,
            version,
            status,
            message,
        });
    }
    out
}

fn warning_message(
    role: VersionRole,
    version: KubeVersion,
    status: SupportStatus,
    today: Date,
) -> Option<String> {
    let minor = format!("v{}", version.minor_string());
    let maintained = maintained_minors(today)
        .iter()
        .rev()
        .map(|m| format!("v1.{m}"))
        .collect::<Vec<_>>()
        .join(", ");
    match status {
        SupportStatus::Supported => None,
        SupportStatus::OutOfSupport { end_of_life } => Some(format!(
            "{role} {version} is out of support on {today}: the maintained minors are \
             {maintained}; {minor} reaches (or reached) its end of life around {end_of_life}"
        )),
        SupportStatus::NotYetReleased { release, scheduled } => Some(format!(
            "{role} {version}: {minor} is not released on {today} ({} for {release})",
            if scheduled { "scheduled" } else { "released" }
        )),
        SupportStatus::Unknown => {
            let (first, last) = match (RELEASES.first(), RELEASES.last()) {
                (Some(f), Some(l)) => (f.minor, l.minor),
                _ => (0, 0),
            };
            Some(format!(
                "{role} {version}: {minor} is not in kubesurge's release table (v1.{first}–\
                 v1.{last}); its support window is unknown{}",
                if version.major == 1 && version.minor < first {
                    ", and minors that old are long out of support"
                } else {
                    ""
                }
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> KubeVersion {
        s.parse().unwrap()
    }

    #[test]
    fn table_is_ordered_and_covers_v1_24_to_v1_37() {
        let minors: Vec<u64> = RELEASES.iter().map(|r| r.minor).collect();
        assert_eq!(minors, (24..=37).collect::<Vec<_>>());
        assert!(RELEASES.windows(2).all(|w| w[0].released < w[1].released));
        assert_eq!(release(1, 34).map(|r| r.released), Some(date(2025, 8, 27)));
        assert!(release(1, 36).is_some_and(|r| r.scheduled));
        assert!(release(1, 35).is_some_and(|r| !r.scheduled));
    }

    #[test]
    fn known_minors_and_latest_patches() {
        assert!(is_known_minor(v("1.24.0")));
        assert!(is_known_minor(v("1.37.3")));
        assert!(!is_known_minor(v("1.23.17")));
        assert!(!is_known_minor(v("1.38.0")));
        assert_eq!(latest_known_patch(1, 31), Some(v("1.31.13")));
        assert_eq!(latest_known_patch(1, 40), None);
        assert_eq!(latest_known_patch(2, 31), None);
    }

    #[test]
    fn three_newest_released_minors_are_supported() {
        // 1.35 was released 2025-12-17.
        assert_eq!(maintained_minors(date(2025, 12, 16)), vec![34, 33, 32]);
        assert_eq!(maintained_minors(date(2025, 12, 17)), vec![35, 34, 33]);
        let d = date(2026, 1, 10);
        assert!(is_supported(v("1.33.0"), d));
        assert!(!is_supported(v("1.32.12"), d));
        assert!(!is_supported(v("1.36.0"), d));
        assert!(!is_supported(v("1.50.0"), d));
    }

    #[test]
    fn end_of_life_is_about_fourteen_months_after_release() {
        let r = release(1, 35).unwrap();
        assert_eq!(end_of_life(r), date(2027, 2, 17));
        assert_eq!(
            support_status(v("1.31.4"), date(2026, 1, 10)),
            SupportStatus::OutOfSupport {
                end_of_life: date(2025, 10, 13)
            }
        );
    }

    #[test]
    fn warnings_for_current_and_target() {
        let today = date(2026, 1, 10);
        assert!(support_warnings(v("1.34.1"), Some(v("1.35.0")), today).is_empty());

        let w = support_warnings(v("1.31.4"), Some(v("1.36.0")), today);
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].role, VersionRole::Current);
        assert!(w[0].message.contains("out of support"), "{}", w[0].message);
        assert!(
            w[0].message.contains("v1.33, v1.34, v1.35"),
            "{}",
            w[0].message
        );
        assert_eq!(w[1].role, VersionRole::Target);
        assert!(
            w[1].message.contains("scheduled for 2026-04-22"),
            "{}",
            w[1].message
        );
    }

    #[test]
    fn unknown_minors_warn_and_never_fail() {
        let today = date(2026, 1, 10);
        let w = support_warnings(v("1.23.17"), Some(v("1.40.2")), today);
        assert_eq!(w.len(), 2);
        assert!(w.iter().all(|w| w.status == SupportStatus::Unknown));
        assert!(
            w[0].message.contains("long out of support"),
            "{}",
            w[0].message
        );
        assert!(w[1].message.contains("v1.40"), "{}", w[1].message);
    }

    #[test]
    fn same_minor_target_is_reported_once() {
        let w = support_warnings(v("1.30.1"), Some(v("1.30.14")), date(2026, 1, 10));
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].role, VersionRole::Current);
    }
}
