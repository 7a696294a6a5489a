//! The report of `kubesurge check`: a line per check. Pure.

use schemars::JsonSchema;
use serde::Serialize;

use crate::version::KubeVersion;

/// What a line checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Check {
    /// The skew plan, as `plan` builds it.
    Plan,
    /// The target's packages for each control-plane node.
    Packages,
    /// The worker image of the target in a pool.
    Image,
    /// Every node a run would select maps to one instance it may terminate.
    Mapping,
    /// The cloud allows a call the run makes (asked with dry runs).
    Permission,
    /// A PodDisruptionBudget that would block a drain now.
    Disruption,
    /// Room for the surge: free addresses where replacements launch, a
    /// group's size limits.
    Room,
    /// The Kubernetes API allows the requests a run makes
    /// (SelfSubjectAccessReview).
    Rbac,
    /// The control-plane nodes answer through `controlPlane.exec`.
    Reachability,
}

impl Check {
    pub fn name(self) -> &'static str {
        match self {
            Check::Plan => "plan",
            Check::Packages => "packages",
            Check::Image => "image",
            Check::Mapping => "mapping",
            Check::Permission => "permission",
            Check::Disruption => "disruption",
            Check::Room => "room",
            Check::Rbac => "rbac",
            Check::Reachability => "reachability",
        }
    }
}

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CheckStatus {
    Pass,
    Fail,
    /// The check could not be made: never a pass.
    CannotVerify,
}

impl CheckStatus {
    pub fn word(self) -> &'static str {
        match self {
            CheckStatus::Pass => "ok",
            CheckStatus::Fail => "FAIL",
            CheckStatus::CannotVerify => "cannot verify",
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckLine {
    pub check: Check,
    /// What was checked: a pool, a node, `control plane`.
    pub subject: String,
    pub status: CheckStatus,
    pub message: String,
    /// What to do about a line that did not pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl CheckLine {
    pub fn pass(check: Check, subject: impl Into<String>, message: impl Into<String>) -> Self {
        CheckLine {
            check,
            subject: subject.into(),
            status: CheckStatus::Pass,
            message: message.into(),
            fix: None,
        }
    }

    pub fn fail(
        check: Check,
        subject: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        CheckLine {
            check,
            subject: subject.into(),
            status: CheckStatus::Fail,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn cannot_verify(
        check: Check,
        subject: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        CheckLine {
            status: CheckStatus::CannotVerify,
            ..CheckLine::fail(check, subject, message, fix)
        }
    }
}

/// Every check of one `kubesurge check`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport {
    /// `--to`; `None`: the cluster's current version.
    pub target: Option<KubeVersion>,
    pub lines: Vec<CheckLine>,
}

impl CheckReport {
    /// Whether a run would work: every line passed.
    pub fn passed(&self) -> bool {
        self.lines.iter().all(|l| l.status == CheckStatus::Pass)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_passes_pass() {
        let mut report = CheckReport {
            target: None,
            lines: vec![CheckLine::pass(Check::Plan, "cluster", "ok")],
        };
        assert!(report.passed());
        report.lines.push(CheckLine::cannot_verify(
            Check::Mapping,
            "pool a",
            "the provider did not answer",
            "rerun",
        ));
        assert!(!report.passed(), "cannot verify is never a pass");
        assert_eq!(report.lines[1].fix.as_deref(), Some("rerun"));
    }
}
