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

impl KubeVersion {
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

impl<'de> Deserialize<'de> for KubeVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
