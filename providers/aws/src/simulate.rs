//! The Auto Scaling permissions of a group pool, asked of IAM's policy
//! simulator for `kubesurge check`: the Auto Scaling API has no `DryRun`,
//! so the only way to learn without a change whether a run may raise the
//! group's `MaxSize`, suspend its processes, attach and terminate members
//! and record its run in the group's tags is to ask IAM what the
//! credentials' principal may do (`SimulatePrincipalPolicy`,
//! <https://docs.aws.amazon.com/IAM/latest/APIReference/API_SimulatePrincipalPolicy.html>).
//!
//! The simulator evaluates the principal's identity policies (and its
//! permissions boundary) against each action on the group's ARN with the
//! context keys given; it does not look the group's tags up itself, so
//! the request carries them (`aws:ResourceTag/K`, `autoscaling:ResourceTag/K`),
//! and the tags a run writes (`aws:RequestTag/K`, `aws:TagKeys`) for the tag
//! actions — the keys the Service Authorization Reference lists for each
//! action (<https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2autoscaling.html>).
//! A result that names missing context values "might be untrustworthy"
//! (EvaluationResult, IAM API Reference): it is reported as not verified.
//! The principal is the caller (`sts:GetCallerIdentity`, which needs no
//! permission); a role session is simulated as its role. The simulator
//! needs `iam:SimulatePrincipalPolicy` on that principal (the iam module's
//! `principal_arns`); without it every line says it cannot verify, and why.

use std::collections::BTreeMap;

use aws_sdk_iam::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_iam::types::{ContextEntry, ContextKeyTypeEnum, PolicyEvaluationDecisionType};
use kubesurge_provider::{PermissionCheck, PermissionOutcome};

use crate::asg::record::RECORD_TAGS;
use crate::errors::Call;

/// The group calls a run makes with the group's tags as context.
const GROUP_CALLS: [Call; 5] = [
    Call::UpdateAutoScalingGroup,
    Call::SuspendProcesses,
    Call::ResumeProcesses,
    Call::AttachInstances,
    Call::TerminateInstanceInAutoScalingGroup,
];

/// What one simulation asks: actions on the group with one set of context
/// keys (a simulation's context applies to every action in it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Simulation {
    pub calls: Vec<Call>,
    /// Context key → values.
    pub context: BTreeMap<String, Vec<String>>,
}

/// The principal the simulator evaluates for `caller` (an ARN from
/// `GetCallerIdentity`): a user as itself; an assumed-role session as its
/// role (`arn:aws:sts::A:assumed-role/R/S` → `arn:aws:iam::A:role/R`; a
/// role under a path other than `/` is not named by the session's ARN and
/// is then not found). The account's root and federated users cannot be
/// simulated: `None`.
pub fn principal_arn(caller: &str) -> Option<String> {
    let mut parts = caller.splitn(6, ':');
    let (Some("arn"), Some(partition), Some(service), Some(_), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    match service {
        "iam" if resource.starts_with("user/") || resource.starts_with("role/") => {
            Some(caller.to_string())
        }
        "sts" => {
            let role = resource.strip_prefix("assumed-role/")?.split('/').next()?;
            (!role.is_empty()).then(|| format!("arn:{partition}:iam::{account}:role/{role}"))
        }
        _ => None,
    }
}

/// The simulations for a group carrying `tags`, with the context AWS gives
/// each action: the group's tags for every call on it; for
/// `CreateOrUpdateTags` also the tags a run writes, for `DeleteTags` their
/// keys.
pub fn simulations(tags: &BTreeMap<String, String>) -> Vec<Simulation> {
    let mut on_group = BTreeMap::new();
    for (k, v) in tags {
        on_group.insert(format!("aws:ResourceTag/{k}"), vec![v.clone()]);
        on_group.insert(format!("autoscaling:ResourceTag/{k}"), vec![v.clone()]);
    }
    let keys: Vec<String> = RECORD_TAGS.iter().map(|k| k.to_string()).collect();
    let mut deleting = on_group.clone();
    deleting.insert("aws:TagKeys".into(), keys.clone());
    let mut writing = deleting.clone();
    for key in &keys {
        // The values are the run's; no condition of the iam module reads
        // them, and a simulation needs some.
        writing.insert(format!("aws:RequestTag/{key}"), vec!["check".into()]);
    }
    vec![
        Simulation {
            calls: GROUP_CALLS.to_vec(),
            context: on_group,
        },
        Simulation {
            calls: vec![Call::CreateOrUpdateTags],
            context: writing,
        },
        Simulation {
            calls: vec![Call::DeleteTags],
            context: deleting,
        },
    ]
}

/// One simulator result, as a permission line: `allowed` is granted,
/// either deny is denied (naming the denying statement), a result that
/// lacked context is not verified.
pub fn outcome(
    decision: &PolicyEvaluationDecisionType,
    denied_by: &[String],
    missing_context: &[String],
    group: &str,
) -> PermissionOutcome {
    if !missing_context.is_empty() {
        return PermissionOutcome::Unknown {
            message: format!(
                "IAM's policy simulator could not evaluate it without {} (not known before a run)",
                missing_context.join(", ")
            ),
        };
    }
    match decision {
        PolicyEvaluationDecisionType::Allowed => PermissionOutcome::Granted,
        PolicyEvaluationDecisionType::ExplicitDeny => PermissionOutcome::Denied {
            message: format!(
                "IAM's policy simulator says an explicit Deny refuses it on Auto Scaling group {group}{}",
                by(denied_by)
            ),
        },
        PolicyEvaluationDecisionType::ImplicitDeny => PermissionOutcome::Denied {
            message: format!(
                "IAM's policy simulator says no statement allows it on Auto Scaling group {group}"
            ),
        },
        other => PermissionOutcome::Unknown {
            message: format!("IAM's policy simulator answered {}", other.as_str()),
        },
    }
}

fn by(policies: &[String]) -> String {
    if policies.is_empty() {
        String::new()
    } else {
        format!(" ({})", policies.join(", "))
    }
}

fn unknown_for_all(message: &str) -> Vec<PermissionCheck> {
    simulations(&BTreeMap::new())
        .into_iter()
        .flat_map(|s| s.calls)
        .map(|call| PermissionCheck {
            action: call.iam_action().into(),
            asked: SIMULATOR.into(),
            outcome: PermissionOutcome::Unknown {
                message: message.to_string(),
            },
        })
        .collect()
}

/// How these lines were asked.
pub(crate) const SIMULATOR: &str = "IAM's policy simulator";

/// Ask the simulator about every group call a run makes on `group` (its
/// name, ARN and tags).
pub(crate) async fn group_permissions(
    sdk: &aws_config::SdkConfig,
    group: &str,
    group_arn: &str,
    tags: &BTreeMap<String, String>,
) -> Vec<PermissionCheck> {
    let caller = match aws_sdk_sts::Client::new(sdk)
        .get_caller_identity()
        .send()
        .await
    {
        Ok(identity) => identity.arn().unwrap_or_default().to_string(),
        Err(e) => {
            return unknown_for_all(&format!(
                "who the credentials are is unknown (sts:GetCallerIdentity: {})",
                DisplayErrorContext(&e)
            ));
        }
    };
    let Some(principal) = principal_arn(&caller) else {
        return unknown_for_all(&format!(
            "IAM's policy simulator cannot evaluate {caller} (only users and roles): run check as the user or role of the runs"
        ));
    };
    let iam = aws_sdk_iam::Client::new(sdk);
    let mut checks = Vec::new();
    for simulation in simulations(tags) {
        let mut request = iam
            .simulate_principal_policy()
            .policy_source_arn(&principal)
            .resource_arns(group_arn);
        for call in &simulation.calls {
            request = request.action_names(call.iam_action());
        }
        for (key, values) in &simulation.context {
            let kind = if key == "aws:TagKeys" {
                ContextKeyTypeEnum::StringList
            } else {
                ContextKeyTypeEnum::String
            };
            request = request.context_entries(
                ContextEntry::builder()
                    .context_key_name(key)
                    .set_context_key_values(Some(values.clone()))
                    .context_key_type(kind)
                    .build(),
            );
        }
        let mut pages = request.into_paginator().send();
        let mut answered = Vec::new();
        let mut failed = None;
        while let Some(page) = pages.next().await {
            match page {
                Ok(page) => answered.extend(page.evaluation_results().iter().cloned()),
                Err(e) => {
                    failed = Some(match e.code() {
                        Some("AccessDenied") => format!(
                            "IAM's policy simulator refused to answer ({}): allow iam:SimulatePrincipalPolicy on {principal} (the iam module's principal_arns)",
                            e.message().unwrap_or("access denied")
                        ),
                        Some("NoSuchEntity") => format!(
                            "IAM does not know principal {principal} (a role under a path is not named by its session's ARN)"
                        ),
                        _ => format!(
                            "iam:SimulatePrincipalPolicy failed: {}",
                            DisplayErrorContext(&e)
                        ),
                    });
                    break;
                }
            }
        }
        for call in &simulation.calls {
            let action = call.iam_action();
            let outcome = match (
                &failed,
                answered.iter().find(|r| r.eval_action_name() == action),
            ) {
                (Some(message), _) => PermissionOutcome::Unknown {
                    message: message.clone(),
                },
                (None, None) => PermissionOutcome::Unknown {
                    message: "IAM's policy simulator did not answer for it".into(),
                },
                (None, Some(result)) => {
                    let denied_by: Vec<String> = result
                        .matched_statements()
                        .iter()
                        .filter_map(|s| s.source_policy_id().map(str::to_string))
                        .collect();
                    outcome(
                        result.eval_decision(),
                        &denied_by,
                        result.missing_context_values(),
                        group,
                    )
                }
            };
            checks.push(PermissionCheck {
                action: action.into(),
                asked: SIMULATOR.into(),
                outcome,
            });
        }
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_roles_are_simulated_as_themselves_and_sessions_as_their_role() {
        assert_eq!(
            principal_arn("arn:aws:iam::123456789012:user/ops/kubesurge").as_deref(),
            Some("arn:aws:iam::123456789012:user/ops/kubesurge")
        );
        assert_eq!(
            principal_arn("arn:aws:sts::123456789012:assumed-role/kubesurge-runner/cron-1")
                .as_deref(),
            Some("arn:aws:iam::123456789012:role/kubesurge-runner")
        );
        assert_eq!(
            principal_arn("arn:aws-cn:sts::123456789012:assumed-role/r/s").as_deref(),
            Some("arn:aws-cn:iam::123456789012:role/r")
        );
        assert_eq!(principal_arn("arn:aws:iam::123456789012:root"), None);
        assert_eq!(
            principal_arn("arn:aws:sts::123456789012:federated-user/bob"),
            None
        );
        assert_eq!(principal_arn("not an arn"), None);
    }

    #[test]
    fn each_action_is_asked_with_the_keys_aws_gives_it() {
        let tags = BTreeMap::from([("kubesurge.io/cluster".to_string(), "prod".to_string())]);
        let all = simulations(&tags);
        let asked: Vec<&str> = all
            .iter()
            .flat_map(|s| s.calls.iter().map(|c| c.iam_action()))
            .collect();
        assert_eq!(
            asked,
            [
                "autoscaling:UpdateAutoScalingGroup",
                "autoscaling:SuspendProcesses",
                "autoscaling:ResumeProcesses",
                "autoscaling:AttachInstances",
                "autoscaling:TerminateInstanceInAutoScalingGroup",
                "autoscaling:CreateOrUpdateTags",
                "autoscaling:DeleteTags",
            ]
        );
        for s in &all {
            assert_eq!(
                s.context["autoscaling:ResourceTag/kubesurge.io/cluster"],
                ["prod"]
            );
            assert_eq!(s.context["aws:ResourceTag/kubesurge.io/cluster"], ["prod"]);
        }
        assert!(!all[0].context.contains_key("aws:TagKeys"));
        for tagging in &all[1..] {
            let keys = &tagging.context["aws:TagKeys"];
            assert_eq!(keys.len(), RECORD_TAGS.len());
            assert!(keys.iter().all(|k| k.starts_with("kubesurge.io/")));
        }
        assert!(
            all[1]
                .context
                .contains_key("aws:RequestTag/kubesurge.io/group-run")
        );
        assert!(
            !all[2]
                .context
                .contains_key("aws:RequestTag/kubesurge.io/group-run")
        );
    }

    #[test]
    fn decisions_become_lines() {
        let allowed = PolicyEvaluationDecisionType::Allowed;
        assert_eq!(outcome(&allowed, &[], &[], "g"), PermissionOutcome::Granted);
        let PermissionOutcome::Denied { message } = outcome(
            &PolicyEvaluationDecisionType::ExplicitDeny,
            &["kubesurge-guard".into()],
            &[],
            "g",
        ) else {
            panic!("an explicit deny is a denial");
        };
        assert!(message.contains("explicit Deny") && message.contains("kubesurge-guard"));
        assert!(matches!(
            outcome(&PolicyEvaluationDecisionType::ImplicitDeny, &[], &[], "g"),
            PermissionOutcome::Denied { .. }
        ));
        // A result without the context it needed is not a pass.
        assert!(matches!(
            outcome(&allowed, &[], &["aws:SourceIp".into()], "g"),
            PermissionOutcome::Unknown { message } if message.contains("aws:SourceIp")
        ));
    }
}
