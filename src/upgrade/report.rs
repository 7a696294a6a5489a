//! The upgrade report (design §5 step 7): each hop's steps and each
//! rotation's run report. `kubesurge upgrade -o json` writes it; the
//! Terraform module (`terraform/modules/upgrade`) and scripts read it, so
//! its field names are an interface.

use jiff::Timestamp;
use serde::Serialize;

use crate::controlplane::phase::HopReport;
use crate::rotation::RunReport;
use crate::version::KubeVersion;

/// How an upgrade ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "result")]
pub enum UpgradeOutcome {
    Succeeded,
    /// A hop or a rotation failed; the cluster was left safe.
    Failed {
        reason: String,
    },
    /// `kubesurge abort`, or the lock was taken over.
    Aborted,
    /// The maintenance window ended; a rerun continues.
    Stopped {
        reason: String,
    },
}

/// The upgrade report: `-o json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
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
                UpgradeOutcome::Stopped { reason: "w".into() },
                serde_json::json!({"result": "stopped", "reason": "w"}),
            ),
        ] {
            report.outcome = outcome;
            assert_eq!(serde_json::to_value(&report).unwrap()["outcome"], expected);
        }
    }
}
