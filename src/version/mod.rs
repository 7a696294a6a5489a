//! Kubernetes versions, the version-skew policy and the support window.

mod skew;
mod support;

pub use skew::*;
pub use support::*;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// A Kubernetes release version, `v1.34.2`. The leading `v` is optional on
/// input and always printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KubeVersion {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

/// A string that is not a Kubernetes version.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{input:?} is not a Kubernetes version (expected vMAJOR.MINOR.PATCH, e.g. v1.34.2)")]
pub struct VersionParseError {
    pub input: String,
}

/// A string that cannot be a version to upgrade to.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TargetVersionError {
    #[error(transparent)]
    NotAVersion(#[from] VersionParseError),
    /// `v1.36.0-rc.1`: [`KubeVersion`] keeps only `v1.36.0`, which is
    /// another version (the release, or one that does not exist yet).
    #[error(
        "{input:?} is a pre-release ({pre}); kubesurge upgrades to released versions only \
         (vMAJOR.MINOR.PATCH, e.g. v1.34.2)"
    )]
    PreRelease { input: String, pre: String },
    /// `v1.36.0+k3s1`: a distribution's build, not a Kubernetes release.
    #[error(
        "{input:?} carries build metadata ({build}); kubesurge upgrades to Kubernetes releases \
         (vMAJOR.MINOR.PATCH, e.g. v1.34.2)"
    )]
    Build { input: String, build: String },
}

impl KubeVersion {
    /// A version to upgrade to, as a user types it: a release only. Unlike
    /// [`FromStr`], which reads what running binaries report and drops
    /// their suffixes, a pre-release or build suffix is refused: dropping it
    /// would name another version.
    pub fn parse_target(input: &str) -> Result<KubeVersion, TargetVersionError> {
        let version: KubeVersion = input.parse()?;
        let trimmed = input.trim();
        let rest = trimmed.strip_prefix('v').unwrap_or(trimmed);
        // `parse` validated it as semver already.
        if let Ok(parsed) = semver::Version::parse(rest) {
            if !parsed.pre.is_empty() {
                return Err(TargetVersionError::PreRelease {
                    input: input.to_string(),
                    pre: parsed.pre.to_string(),
                });
            }
            if !parsed.build.is_empty() {
                return Err(TargetVersionError::Build {
                    input: input.to_string(),
                    build: parsed.build.to_string(),
                });
            }
        }
        Ok(version)
    }

    pub const fn new(major: u64, minor: u64, patch: u64) -> Self {
        KubeVersion {
            major,
            minor,
            patch,
        }
    }

    /// The same minor at patch 0.
    pub fn minor_line(self) -> KubeVersion {
        KubeVersion::new(self.major, self.minor, 0)
    }

    /// Minors from `other` to `self` (negative when `self` is older).
    pub fn minors_since(self, other: KubeVersion) -> i64 {
        debug_assert_eq!(self.major, other.major);
        self.minor as i64 - other.minor as i64
    }

    /// The `1.34` form used in package repositories.
    pub fn minor_string(self) -> String {
        format!("{}.{}", self.major, self.minor)
    }

    /// The version without the leading `v` (`1.34.2`), as packages spell it.
    pub fn bare(self) -> String {
        format!("{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for KubeVersion {
    type Err = VersionParseError;

    /// Accepts `v1.34.2` and `1.34.2`. Build metadata and pre-release parts
    /// that real binaries report (`v1.34.2-eks-1`, `v1.34.2+k3s1`) are
    /// dropped after validation; anything else is rejected.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = || VersionParseError {
            input: input.to_string(),
        };
        let trimmed = input.trim();
        let rest = trimmed.strip_prefix('v').unwrap_or(trimmed);
        let parsed = semver::Version::parse(rest).map_err(|_| err())?;
        if parsed.major != 1 {
            return Err(err());
        }
        Ok(KubeVersion::new(parsed.major, parsed.minor, parsed.patch))
    }
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl Serialize for KubeVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl schemars::JsonSchema for KubeVersion {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "KubeVersion".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A Kubernetes release, as Display writes it: vMAJOR.MINOR.PATCH.",
            "type": "string",
            "pattern": "^v[0-9]+\\.[0-9]+\\.[0-9]+$"
        })
    }
}

impl<'de> Deserialize<'de> for KubeVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_and_without_the_v() {
        assert_eq!("v1.34.2".parse(), Ok(KubeVersion::new(1, 34, 2)));
        assert_eq!("1.34.2".parse(), Ok(KubeVersion::new(1, 34, 2)));
        assert_eq!("  v1.31.0\n".parse(), Ok(KubeVersion::new(1, 31, 0)));
    }

    #[test]
    fn drops_pre_release_and_build_metadata() {
        assert_eq!("v1.34.2-eks-1".parse(), Ok(KubeVersion::new(1, 34, 2)));
        assert_eq!("v1.34.2+k3s1".parse(), Ok(KubeVersion::new(1, 34, 2)));
        assert_eq!("v1.35.0-rc.1".parse(), Ok(KubeVersion::new(1, 35, 0)));
    }

    #[test]
    fn a_target_is_a_release_never_a_pre_release_or_a_build() {
        assert_eq!(
            KubeVersion::parse_target("v1.36.0"),
            Ok(KubeVersion::new(1, 36, 0))
        );
        assert_eq!(
            KubeVersion::parse_target("1.36.2"),
            Ok(KubeVersion::new(1, 36, 2))
        );
        let rc = KubeVersion::parse_target("v1.36.0-rc.1").unwrap_err();
        assert!(
            matches!(&rc, TargetVersionError::PreRelease { pre, .. } if pre == "rc.1"),
            "{rc:?}"
        );
        assert!(rc.to_string().contains("pre-release"), "{rc}");
        assert!(matches!(
            KubeVersion::parse_target("v1.36.0+k3s1"),
            Err(TargetVersionError::Build { .. })
        ));
        assert!(matches!(
            KubeVersion::parse_target("v1.36"),
            Err(TargetVersionError::NotAVersion(_))
        ));
    }

    #[test]
    fn rejects_what_is_not_a_kubernetes_version() {
        for bad in [
            "",
            "v",
            "garbage",
            "1.34",
            "v1.34",
            "1",
            "v1.34.2.1",
            "v2.0.0",
            "0.34.1",
            "V1.34.2",
            "vv1.34.2",
            "v 1.34.2",
            "1.34.x",
            "-1.34.2",
            "v1.034.2",
            "1.34.2-",
        ] {
            let err = bad.parse::<KubeVersion>().unwrap_err();
            assert_eq!(err.input, bad);
            assert!(err.to_string().contains("vMAJOR.MINOR.PATCH"), "{err}");
        }
    }

    #[test]
    fn orders_by_major_minor_patch() {
        let v = |s: &str| s.parse::<KubeVersion>().unwrap();
        assert!(v("1.34.10") > v("1.34.9"));
        assert!(v("1.35.0") > v("1.34.99"));
        assert_eq!(v("1.34.2").minors_since(v("1.31.9")), 3);
        assert_eq!(v("1.31.9").minors_since(v("1.34.2")), -3);
        assert_eq!(v("1.34.2").minor_line(), v("1.34.0"));
    }

    #[test]
    fn prints_and_round_trips_through_json() {
        let v = KubeVersion::new(1, 34, 2);
        assert_eq!(v.to_string(), "v1.34.2");
        assert_eq!(v.bare(), "1.34.2");
        assert_eq!(v.minor_string(), "1.34");
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(json, "\"v1.34.2\"");
        assert_eq!(serde_json::from_str::<KubeVersion>(&json).unwrap(), v);
        assert!(serde_json::from_str::<KubeVersion>("\"1.34\"").is_err());
    }
}
