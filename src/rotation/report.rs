//! The run report (design §5 step 7): what each slot did, with timings and
//! eviction outcomes. Serialized as the `-o json` output; never holds a
//! token.

use jiff::Timestamp;
use serde::Serialize;

use crate::kube::drain::DrainReport;
use crate::version::KubeVersion;

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "result")]
pub enum RunOutcome {
    Succeeded,
    /// Some slot failed; the others that were in flight finished.
    Failed {
        reason: String,
    },
    /// `kubesurge abort`.
    Aborted,
    /// The maintenance window ended; `remaining` slots were not started.
    Stopped {
        reason: String,
        remaining: usize,
    },
}

/// What one slot did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
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
#[derive(Clone, Debug, PartialEq, Serialize)]
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
#[derive(Clone, Debug, PartialEq, Serialize)]
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
    pub fn replaced(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.outcome == SlotOutcome::Replaced)
            .count()
    }
}
