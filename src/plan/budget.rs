//! Surge and unavailability budgets: an integer or a percentage of a pool.

use std::fmt;

use serde::Serialize;

/// `maxSurge` / `maxUnavailable`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    Count(u32),
    /// 0–100.
    Percent(u32),
}

impl Budget {
    /// Nodes this budget allows above the pool's size. Percentages round
    /// up, as Deployments and CAPI do for surge.
    pub fn surge_for(self, pool_size: u32) -> u32 {
        match self {
            Budget::Count(n) => n,
            Budget::Percent(p) => (u64::from(pool_size) * u64::from(p)).div_ceil(100) as u32,
        }
    }

    /// Nodes of the pool this budget allows to be unavailable. Percentages
    /// round down, as Deployments and CAPI do for unavailability.
    pub fn unavailable_for(self, pool_size: u32) -> u32 {
        match self {
            Budget::Count(n) => n,
            Budget::Percent(p) => (u64::from(pool_size) * u64::from(p) / 100) as u32,
        }
    }

    pub fn is_zero(self) -> bool {
        matches!(self, Budget::Count(0) | Budget::Percent(0))
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Budget::Count(n) => write!(f, "{n}"),
            Budget::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for Budget {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl schemars::JsonSchema for Budget {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Budget".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A count of nodes (\"2\") or a percentage of the pool (\"25%\"), as Display writes it.",
            "type": "string",
            "pattern": "^[0-9]+%?$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_like_deployments() {
        assert_eq!(Budget::Percent(25).surge_for(10), 3);
        assert_eq!(Budget::Percent(25).unavailable_for(10), 2);
        assert_eq!(Budget::Percent(0).surge_for(10), 0);
        assert_eq!(Budget::Count(2).surge_for(10), 2);
        assert_eq!(Budget::Percent(100).unavailable_for(7), 7);
    }
}
