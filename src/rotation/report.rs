//! The run report (design §5 step 7): what each slot did, with timings and
//! eviction outcomes. Serialized as the `-o json` output; never holds a
//! token.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::Serialize;

use crate::kube::drain::DrainReport;
use crate::version::KubeVersion;

/// How a run ended. In the JSON, `result` names the variant: `succeeded`,
/// `failed`, `aborted`, `partial` or `deferred`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", tag = "result")]
pub enum RunOutcome {
    Succeeded,
    /// Some slot failed; the others that were in flight finished.
    Failed {
        reason: String,
    },
    /// `kubesurge abort`.
    Aborted,
    /// `partial`: not finished, nothing wrong. The maintenance window ended
    /// with `remaining` slots not started; the window opens again at
    /// `opens_at` (when known) and a rerun then continues.
    #[serde(rename = "partial", rename_all = "camelCase")]
    Stopped {
        reason: String,
        remaining: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        opens_at: Option<Timestamp>,
    },
    /// Outside the maintenance window: nothing started. `remaining` slots
    /// wait for the window to open at `opens_at`.
    #[serde(rename_all = "camelCase")]
    Deferred {
        reason: String,
        opens_at: Timestamp,
        remaining: usize,
    },
}

impl RunOutcome {
    /// Not finished with nothing wrong: a rerun in the maintenance window
    /// continues.
    pub fn is_unfinished(&self) -> bool {
        matches!(
            self,
            RunOutcome::Stopped { .. } | RunOutcome::Deferred { .. }
        )
    }
}

/// What one slot did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", tag = "result")]
pub enum SlotOutcome {
    /// The old node was replaced and is gone.
    Replaced,
    /// The drain timed out under `onTimeout: skip`: the old node serves on.
    Skipped {
        reason: String,
    },
    Failed {
        reason: String,
    },
    /// Not started (the run stopped first).
    NotStarted,
}

/// Seconds each phase took (absent when the phase did not run in this
/// invocation, e.g. done by an earlier, crashed one).
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhaseTimings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launch_to_ready: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminate: Option<f64>,
}

/// One slot of the report.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlotReport {
    pub pool: String,
    pub old_node: String,
    pub old_instance: Option<String>,
    pub new_node: Option<String>,
    pub new_instance: Option<String>,
    pub zone: Option<String>,
    pub attempts: u32,
    pub timings: PhaseTimings,
    pub drain: Option<DrainReport>,
    pub outcome: SlotOutcome,
    /// The state machine's actions, in order (`launch`, `await-join`,
    /// `check-drain`, `drain`, `terminate`, `finish`, …); in a dry run,
    /// the ones a run would take.
    pub actions: Vec<String>,
}

impl SlotReport {
    /// A slot that has not done anything yet.
    pub fn not_started(pool: &str, old_node: &str) -> SlotReport {
        SlotReport {
            pool: pool.to_string(),
            old_node: old_node.to_string(),
            old_instance: None,
            new_node: None,
            new_instance: None,
            zone: None,
            attempts: 0,
            timings: PhaseTimings::default(),
            drain: None,
            outcome: SlotOutcome::NotStarted,
            actions: Vec::new(),
        }
    }
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    pub run_id: String,
    pub command: String,
    pub target: KubeVersion,
    pub started: Timestamp,
    pub finished: Timestamp,
    pub dry_run: bool,
    pub outcome: RunOutcome,
    pub slots: Vec<SlotReport>,
    /// In a dry run: every mutation the run would have made, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub would: Vec<String>,
}

impl RunReport {
    /// The report of a real run of `request`'s command, finished now, with
    /// what `would` happen left empty.
    pub fn of_run(
        run_id: String,
        command: &str,
        target: KubeVersion,
        started: Timestamp,
        outcome: RunOutcome,
        slots: Vec<SlotReport>,
    ) -> RunReport {
        RunReport {
            run_id,
            command: command.to_string(),
            target,
            started,
            finished: Timestamp::now(),
            dry_run: false,
            outcome,
            slots,
            would: Vec::new(),
        }
    }

    pub fn replaced(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.outcome == SlotOutcome::Replaced)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The outcome's JSON is read by scripts and the Terraform module.
    #[test]
    fn unfinished_outcomes_say_what_is_left_and_when_the_window_opens() {
        let opens: Timestamp = "2026-01-03T02:00:00Z".parse().unwrap();
        for (outcome, expected) in [
            (
                RunOutcome::Stopped {
                    reason: "the maintenance window ended".into(),
                    remaining: 2,
                    opens_at: Some(opens),
                },
                serde_json::json!({
                    "result": "partial",
                    "reason": "the maintenance window ended",
                    "remaining": 2,
                    "opensAt": "2026-01-03T02:00:00Z",
                }),
            ),
            (
                RunOutcome::Stopped {
                    reason: "w".into(),
                    remaining: 1,
                    opens_at: None,
                },
                serde_json::json!({"result": "partial", "reason": "w", "remaining": 1}),
            ),
            (
                RunOutcome::Deferred {
                    reason: "outside the maintenance window".into(),
                    opens_at: opens,
                    remaining: 3,
                },
                serde_json::json!({
                    "result": "deferred",
                    "reason": "outside the maintenance window",
                    "opensAt": "2026-01-03T02:00:00Z",
                    "remaining": 3,
                }),
            ),
        ] {
            assert!(outcome.is_unfinished());
            assert_eq!(serde_json::to_value(&outcome).unwrap(), expected);
        }
        assert!(!RunOutcome::Succeeded.is_unfinished());
        assert!(!RunOutcome::Aborted.is_unfinished());
    }
}
