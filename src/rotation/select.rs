//! Which workers a run replaces, and in which order: pure functions.

use std::time::Duration;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::Serialize;

use super::config::Criteria;
use crate::plan::spread_oldest_first;
use crate::version::KubeVersion;

/// A worker as selection sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub pool: String,
    pub created: Timestamp,
    pub zone: Option<String>,
    pub kubelet: KubeVersion,
    /// The image its instance runs, when the provider told us.
    pub image: Option<String>,
}

/// Why a worker is replaced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", tag = "reason")]
pub enum Reason {
    /// Its kubelet is not at the target version.
    Outdated { kubelet: KubeVersion },
    /// Older than `--max-age`.
    Aged { age_seconds: u64 },
    /// Its image is not the pool's current one.
    StaleImage { image: String, current: String },
    /// `--all`.
    All,
}

/// Why `candidate` must be replaced under `criteria`, or `None`.
/// `current_image` is the image the pool resolves today.
pub fn reason(
    candidate: &Candidate,
    criteria: &Criteria,
    target: KubeVersion,
    now: Timestamp,
    current_image: Option<&str>,
) -> Option<Reason> {
    if criteria.all {
        return Some(Reason::All);
    }
    if criteria.outdated && candidate.kubelet != target {
        return Some(Reason::Outdated {
            kubelet: candidate.kubelet,
        });
    }
    if let Some(max_age) = criteria.max_age {
        let age = now.duration_since(candidate.created);
        let age = Duration::try_from(age).unwrap_or(Duration::ZERO);
        if age > max_age {
            return Some(Reason::Aged {
                age_seconds: age.as_secs(),
            });
        }
    }
    if criteria.stale_image
        && let (Some(image), Some(current)) = (&candidate.image, current_image)
        && image != current
    {
        return Some(Reason::StaleImage {
            image: image.clone(),
            current: current.to_string(),
        });
    }
    None
}

/// Replacement order: oldest first, spread across zones — the planner's
/// order, so what `plan` shows is what a run does.
pub fn order(candidates: Vec<Candidate>) -> Vec<Candidate> {
    spread_oldest_first(
        candidates,
        |c| c.zone.clone(),
        |c| (c.created, c.name.clone()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, zone: &str, minute: u32, kubelet: &str) -> Candidate {
        Candidate {
            name: name.into(),
            pool: "p".into(),
            created: format!("2026-01-01T00:{minute:02}:00Z").parse().unwrap(),
            zone: Some(zone.into()),
            kubelet: kubelet.parse().unwrap(),
            image: Some("ami-old".into()),
        }
    }

    #[test]
    fn oldest_first_spread_across_zones() {
        let nodes = vec![
            node("a1", "a", 1, "v1.33.0"),
            node("a2", "a", 2, "v1.33.0"),
            node("a3", "a", 3, "v1.33.0"),
            node("b1", "b", 4, "v1.33.0"),
            node("c1", "c", 5, "v1.33.0"),
            node("b2", "b", 6, "v1.33.0"),
        ];
        let names: Vec<String> = order(nodes).into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["a1", "b1", "c1", "a2", "b2", "a3"]);
    }

    #[test]
    fn reasons_follow_criteria() {
        let now: Timestamp = "2026-02-01T00:00:00Z".parse().unwrap();
        let target: KubeVersion = "v1.34.2".parse().unwrap();
        let old = node("w", "a", 0, "v1.33.4");
        let current = node("w", "a", 0, "v1.34.2");
        let outdated = Criteria {
            outdated: true,
            ..Criteria::default()
        };
        assert!(matches!(
            reason(&old, &outdated, target, now, None),
            Some(Reason::Outdated { .. })
        ));
        assert_eq!(reason(&current, &outdated, target, now, None), None);
        let aged = Criteria {
            max_age: Some(Duration::from_secs(30 * 86400)),
            ..Criteria::default()
        };
        assert!(matches!(
            reason(&current, &aged, target, now, None),
            Some(Reason::Aged { .. })
        ));
        let young = Criteria {
            max_age: Some(Duration::from_secs(40 * 86400)),
            ..Criteria::default()
        };
        assert_eq!(reason(&current, &young, target, now, None), None);
        let stale = Criteria {
            stale_image: true,
            ..Criteria::default()
        };
        assert!(matches!(
            reason(&current, &stale, target, now, Some("ami-new")),
            Some(Reason::StaleImage { .. })
        ));
        assert_eq!(reason(&current, &stale, target, now, Some("ami-old")), None);
        let all = Criteria {
            all: true,
            ..Criteria::default()
        };
        assert_eq!(reason(&current, &all, target, now, None), Some(Reason::All));
    }
}
