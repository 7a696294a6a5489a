//! The upgrade report (design §5 step 7): each hop's steps and each
//! rotation's run report. `kubesurge upgrade -o json` writes it; the
//! Terraform module (`terraform/modules/upgrade`) and scripts read it, so
//! its field names are an interface.

use std::fmt;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::Serialize;

use crate::controlplane::phase::HopReport;
use crate::plan::{Plan, Step};
use crate::rotation::RunReport;
use crate::version::KubeVersion;

/// How an upgrade ended. In the JSON, `result` names the variant:
/// `succeeded`, `failed`, `aborted`, `partial` or `deferred`.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", tag = "result")]
pub enum UpgradeOutcome {
    Succeeded,
    /// A hop or a rotation failed; the cluster was left safe.
    Failed {
        reason: String,
    },
    /// `kubesurge abort`, or the lock was taken over.
    Aborted,
    /// Not finished, nothing wrong: the maintenance window ended with
    /// `remaining` work; it opens again at `opens_at` (when known) and a
    /// rerun then continues.
    #[serde(rename_all = "camelCase")]
    Partial {
        reason: String,
        remaining: Remaining,
        #[serde(skip_serializing_if = "Option::is_none")]
        opens_at: Option<Timestamp>,
    },
    /// Outside the maintenance window: nothing started. `remaining` waits
    /// for the window to open at `opens_at`.
    #[serde(rename_all = "camelCase")]
    Deferred {
        reason: String,
        opens_at: Timestamp,
        remaining: Remaining,
    },
}

impl UpgradeOutcome {
    /// Not finished with nothing wrong: a rerun in the maintenance window
    /// continues.
    pub fn is_unfinished(&self) -> bool {
        matches!(
            self,
            UpgradeOutcome::Partial { .. } | UpgradeOutcome::Deferred { .. }
        )
    }
}

/// What an unfinished upgrade has left to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Remaining {
    /// Control-plane hops (minor versions) not run yet.
    pub hops: usize,
    /// Worker replacements not started yet, over every rotation left.
    pub nodes: usize,
}

impl Remaining {
    /// What `steps` of `plan` (the ones not run yet) have to do.
    pub fn of_steps(plan: &Plan, steps: &[Step]) -> Remaining {
        let mut remaining = Remaining::default();
        for step in steps {
            match step {
                Step::Hop { .. } => remaining.hops += 1,
                Step::Rotate { pool, rotation } => {
                    remaining.nodes += plan
                        .pools
                        .iter()
                        .find(|p| &p.name == pool)
                        .and_then(|p| p.rotations.get(rotation.checked_sub(1)?))
                        .map_or(0, |r| r.slots.len());
                }
            }
        }
        remaining
    }
}

impl fmt::Display for Remaining {
    /// `1 control-plane hop and 3 worker(s) left`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hops = match self.hops {
            0 => None,
            1 => Some("1 control-plane hop".to_string()),
            n => Some(format!("{n} control-plane hops")),
        };
        let nodes = (self.nodes > 0).then(|| format!("{} worker(s)", self.nodes));
        match (hops, nodes) {
            (Some(h), Some(n)) => write!(f, "{h} and {n} left"),
            (Some(one), None) | (None, Some(one)) => write!(f, "{one} left"),
            (None, None) => write!(f, "nothing left"),
        }
    }
}

/// The upgrade report: `-o json`.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeReport {
    pub target: KubeVersion,
    pub started: Timestamp,
    pub finished: Timestamp,
    pub outcome: UpgradeOutcome,
    pub hops: Vec<HopReport>,
    pub rotations: Vec<RunReport>,
}

impl UpgradeReport {
    /// A report with nothing done yet (and nothing failed). Also what a
    /// cluster already at `target` gets, so that readers find the same
    /// document whether or not anything ran.
    pub fn starting(target: KubeVersion, at: Timestamp) -> UpgradeReport {
        UpgradeReport {
            target,
            started: at,
            finished: at,
            outcome: UpgradeOutcome::Succeeded,
            hops: Vec::new(),
            rotations: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The field names the Terraform module and scripts read.
    #[test]
    fn the_json_keeps_its_field_names() {
        let at: Timestamp = "2026-01-02T03:04:05Z".parse().unwrap();
        let mut report = UpgradeReport::starting(KubeVersion::new(1, 34, 2), at);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "target": "v1.34.2",
                "started": "2026-01-02T03:04:05Z",
                "finished": "2026-01-02T03:04:05Z",
                "outcome": {"result": "succeeded"},
                "hops": [],
                "rotations": [],
            })
        );
        for (outcome, expected) in [
            (
                UpgradeOutcome::Failed { reason: "r".into() },
                serde_json::json!({"result": "failed", "reason": "r"}),
            ),
            (
                UpgradeOutcome::Aborted,
                serde_json::json!({"result": "aborted"}),
            ),
            (
                UpgradeOutcome::Partial {
                    reason: "w".into(),
                    remaining: Remaining { hops: 1, nodes: 3 },
                    opens_at: Some("2026-01-03T02:00:00Z".parse().unwrap()),
                },
                serde_json::json!({
                    "result": "partial",
                    "reason": "w",
                    "remaining": {"hops": 1, "nodes": 3},
                    "opensAt": "2026-01-03T02:00:00Z",
                }),
            ),
            (
                UpgradeOutcome::Deferred {
                    reason: "outside".into(),
                    opens_at: "2026-01-03T02:00:00Z".parse().unwrap(),
                    remaining: Remaining { hops: 0, nodes: 2 },
                },
                serde_json::json!({
                    "result": "deferred",
                    "reason": "outside",
                    "opensAt": "2026-01-03T02:00:00Z",
                    "remaining": {"hops": 0, "nodes": 2},
                }),
            ),
        ] {
            report.outcome = outcome;
            assert_eq!(serde_json::to_value(&report).unwrap()["outcome"], expected);
        }
    }

    #[test]
    fn what_is_left_reads_as_a_sentence() {
        assert_eq!(
            Remaining { hops: 2, nodes: 3 }.to_string(),
            "2 control-plane hops and 3 worker(s) left"
        );
        assert_eq!(
            Remaining { hops: 1, nodes: 0 }.to_string(),
            "1 control-plane hop left"
        );
        assert_eq!(
            Remaining { hops: 0, nodes: 1 }.to_string(),
            "1 worker(s) left"
        );
    }
}
