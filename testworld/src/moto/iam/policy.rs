//! IAM policy documents and their evaluation, after AWS's logic
//! (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html):
//! pure, no I/O.

use std::collections::BTreeMap;

use serde_json::Value;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("not an IAM policy document: {0}")]
    Malformed(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Effect {
    Allow,
    Deny,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Condition {
    operator: String,
    key: String,
    values: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Statement {
    sid: String,
    effect: Effect,
    actions: Vec<String>,
    resources: Vec<String>,
    conditions: Vec<Condition>,
}

/// An identity-based policy document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    statements: Vec<Statement>,
}

/// One authorization AWS makes for a request: `action` on `resource` (an
/// ARN, or `*` for actions without resource-level permissions), with the
/// request's context keys (`aws:RequestTag/K`, `aws:ResourceTag/K`,
/// `aws:TagKeys`, `ec2:LaunchTemplate`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorization {
    pub action: String,
    pub resource: String,
    pub context: BTreeMap<String, Vec<String>>,
}

impl Authorization {
    pub(super) fn new(action: &str, resource: String) -> Authorization {
        Authorization {
            action: action.to_string(),
            resource,
            context: BTreeMap::new(),
        }
    }

    pub(super) fn with(mut self, key: &str, values: Vec<String>) -> Authorization {
        self.context.insert(key.to_string(), values);
        self
    }
}

/// The outcome of an evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// No Allow statement matched.
    ImplicitDeny,
    /// This Deny statement matched.
    ExplicitDeny(String),
}

pub(super) fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

impl Policy {
    /// A policy document as JSON (`{"Version": ..., "Statement": [...]}`).
    pub fn from_json(document: &Value) -> Result<Policy, PolicyError> {
        let statements = match &document["Statement"] {
            Value::Array(items) => items.clone(),
            single @ Value::Object(_) => vec![single.clone()],
            _ => return Err(PolicyError::Malformed("no Statement".into())),
        };
        let statements = statements
            .iter()
            .enumerate()
            .map(|(n, s)| {
                let effect = match s["Effect"].as_str() {
                    Some("Allow") => Effect::Allow,
                    Some("Deny") => Effect::Deny,
                    other => {
                        return Err(PolicyError::Malformed(format!(
                            "statement {n}: Effect {other:?}"
                        )));
                    }
                };
                let mut conditions = Vec::new();
                if let Some(operators) = s["Condition"].as_object() {
                    for (operator, keys) in operators {
                        for (key, values) in keys.as_object().into_iter().flatten() {
                            conditions.push(Condition {
                                operator: operator.clone(),
                                key: key.clone(),
                                values: strings(values),
                            });
                        }
                    }
                }
                Ok(Statement {
                    sid: s["Sid"].as_str().unwrap_or_default().to_string(),
                    effect,
                    actions: strings(&s["Action"]),
                    resources: strings(&s["Resource"]),
                    conditions,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Policy { statements })
    }

    /// The same policy without the statement `sid`.
    pub fn without(&self, sid: &str) -> Policy {
        Policy {
            statements: self
                .statements
                .iter()
                .filter(|s| s.sid != sid)
                .cloned()
                .collect(),
        }
    }

    pub fn evaluate(&self, request: &Authorization) -> Decision {
        let matching = |s: &&Statement| {
            // Action names are case-insensitive, resource ARNs are not
            // (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_action.html).
            s.actions.iter().any(|a| {
                glob(
                    &a.to_ascii_lowercase(),
                    &request.action.to_ascii_lowercase(),
                )
            }) && s.resources.iter().any(|r| glob(r, &request.resource))
                && s.conditions.iter().all(|c| c.holds(&request.context))
        };
        if let Some(deny) = self
            .statements
            .iter()
            .filter(|s| s.effect == Effect::Deny)
            .find(matching)
        {
            return Decision::ExplicitDeny(deny.sid.clone());
        }
        if self
            .statements
            .iter()
            .filter(|s| s.effect == Effect::Allow)
            .any(|s| matching(&s))
        {
            Decision::Allowed
        } else {
            Decision::ImplicitDeny
        }
    }
}

impl Condition {
    /// The condition operators the iam module uses
    /// (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html,
    /// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-single-vs-multi-valued-context-keys.html).
    /// Any other operator does not hold: a policy that needs one fails
    /// loudly here rather than passing unchecked.
    fn holds(&self, context: &BTreeMap<String, Vec<String>>) -> bool {
        let present = context.get(&self.key).filter(|v| !v.is_empty());
        let equals = |v: &String| self.values.iter().any(|p| p == v);
        let like = |v: &String| self.values.iter().any(|p| glob(p, v));
        match self.operator.as_str() {
            // A single-valued key: absent, the condition does not hold.
            "StringEquals" | "ArnEquals" => present.is_some_and(|vs| vs.iter().any(equals)),
            "StringLike" | "ArnLike" => present.is_some_and(|vs| vs.iter().any(like)),
            "Null" => {
                let absent = present.is_none();
                self.values.iter().any(|v| (v == "true") == absent)
            }
            "ForAnyValue:StringEquals" => present.is_some_and(|vs| vs.iter().any(equals)),
            "ForAnyValue:StringLike" => present.is_some_and(|vs| vs.iter().any(like)),
            // True for an absent key or an empty set, as AWS documents.
            "ForAllValues:StringEquals" => present.is_none_or(|vs| vs.iter().all(equals)),
            "ForAllValues:StringLike" => present.is_none_or(|vs| vs.iter().all(like)),
            _ => false,
        }
    }
}

/// IAM's wildcards: `*` any run of characters, `?` any one.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            backtrack = Some((pi, ti));
            pi += 1;
        } else if let Some((star, from)) = backtrack {
            pi = star + 1;
            ti = from + 1;
            backtrack = Some((star, from + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// `aws:RequestTag/K` for each tag and `aws:TagKeys`
/// (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html).
pub(super) fn request_tags(mut a: Authorization, tags: &BTreeMap<String, String>) -> Authorization {
    for (k, v) in tags {
        a = a.with(&format!("aws:RequestTag/{k}"), vec![v.clone()]);
    }
    a.with("aws:TagKeys", tags.keys().cloned().collect())
}

/// `aws:ResourceTag/K` (and the service's own `PREFIX:ResourceTag/K`) for
/// each tag the resource carries.
pub(super) fn resource_tags(
    mut a: Authorization,
    service_prefix: &str,
    tags: &BTreeMap<String, String>,
) -> Authorization {
    for (k, v) in tags {
        a = a.with(&format!("aws:ResourceTag/{k}"), vec![v.clone()]);
        a = a.with(
            &format!("{service_prefix}:ResourceTag/{k}"),
            vec![v.clone()],
        );
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::from_json(&serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "Launch",
                    "Effect": "Allow",
                    "Action": ["ec2:RunInstances"],
                    "Resource": ["arn:aws:ec2:us-east-1:123456789012:instance/*"],
                    "Condition": {"StringEquals": {"aws:RequestTag/kubesurge.io/cluster": ["c1"]}}
                },
                {
                    "Sid": "Terminate",
                    "Effect": "Allow",
                    "Action": "ec2:TerminateInstances",
                    "Resource": "arn:aws:ec2:us-east-1:123456789012:instance/*",
                    "Condition": {
                        "StringEquals": {"aws:ResourceTag/kubesurge.io/cluster": ["c1"]},
                        "Null": {"aws:ResourceTag/kubesurge.io/pool": ["false"]}
                    }
                },
                {
                    "Sid": "Tags",
                    "Effect": "Allow",
                    "Action": ["autoscaling:CreateOrUpdateTags"],
                    "Resource": ["*"],
                    "Condition": {"ForAllValues:StringLike": {"aws:TagKeys": ["kubesurge.io/*"]}}
                },
                {
                    "Sid": "Never",
                    "Effect": "Deny",
                    "Action": ["ec2:RunInstances", "autoscaling:CreateOrUpdateTags"],
                    "Resource": ["*"],
                    "Condition": {"ForAnyValue:StringEquals": {"aws:TagKeys": ["kubesurge.io/control-plane"]}}
                }
            ]
        }))
        .unwrap()
    }

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const INSTANCES: &str = "arn:aws:ec2:us-east-1:123456789012:instance/*";

    #[test]
    fn a_launch_needs_the_cluster_tag_in_the_request() {
        let launch = |t: &[(&str, &str)]| {
            policy().evaluate(&request_tags(
                Authorization::new("ec2:RunInstances", INSTANCES.into()),
                &tags(t),
            ))
        };
        assert_eq!(launch(&[("kubesurge.io/cluster", "c1")]), Decision::Allowed);
        assert_eq!(
            launch(&[("kubesurge.io/cluster", "c2")]),
            Decision::ImplicitDeny
        );
        assert_eq!(launch(&[]), Decision::ImplicitDeny);
        assert_eq!(
            launch(&[
                ("kubesurge.io/cluster", "c1"),
                ("kubesurge.io/control-plane", "c1")
            ]),
            Decision::ExplicitDeny("Never".into())
        );
        // Actions are case-insensitive, resources are not.
        let other_case = Authorization::new("EC2:runinstances", INSTANCES.into())
            .with("aws:RequestTag/kubesurge.io/cluster", vec!["c1".into()]);
        assert_eq!(policy().evaluate(&other_case), Decision::Allowed);
        let elsewhere = Authorization::new(
            "ec2:RunInstances",
            "arn:aws:ec2:eu-west-1:123456789012:instance/*".into(),
        )
        .with("aws:RequestTag/kubesurge.io/cluster", vec!["c1".into()]);
        assert_eq!(policy().evaluate(&elsewhere), Decision::ImplicitDeny);
    }

    #[test]
    fn a_termination_needs_both_tags_on_the_instance() {
        let terminate = |t: &[(&str, &str)]| {
            policy().evaluate(&resource_tags(
                Authorization::new(
                    "ec2:TerminateInstances",
                    "arn:aws:ec2:us-east-1:123456789012:instance/i-1".into(),
                ),
                "ec2",
                &tags(t),
            ))
        };
        assert_eq!(
            terminate(&[("kubesurge.io/cluster", "c1"), ("kubesurge.io/pool", "a")]),
            Decision::Allowed
        );
        assert_eq!(
            terminate(&[("kubesurge.io/cluster", "c1")]),
            Decision::ImplicitDeny
        );
        assert_eq!(
            terminate(&[("kubesurge.io/pool", "a")]),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn for_all_values_holds_for_every_key_or_none() {
        let tag = |t: &[(&str, &str)]| {
            policy().evaluate(&request_tags(
                Authorization::new("autoscaling:CreateOrUpdateTags", "*".into()),
                &tags(t),
            ))
        };
        assert_eq!(tag(&[("kubesurge.io/group-run", "r")]), Decision::Allowed);
        assert_eq!(
            tag(&[("kubesurge.io/group-run", "r"), ("owner", "x")]),
            Decision::ImplicitDeny
        );
        assert_eq!(tag(&[]), Decision::Allowed);
        assert_eq!(
            policy().without("Tags").evaluate(&request_tags(
                Authorization::new("autoscaling:CreateOrUpdateTags", "*".into()),
                &tags(&[("kubesurge.io/group-run", "r")]),
            )),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn wildcards_match_runs_and_single_characters() {
        assert!(glob(
            "arn:aws:ec2:*:instance/*",
            "arn:aws:ec2:us-east-1:1:instance/i-1"
        ));
        assert!(glob("kubesurge.io/*", "kubesurge.io/"));
        assert!(glob("i-?", "i-1"));
        assert!(!glob("i-?", "i-12"));
        assert!(!glob("arn:*:subnet/*", "arn:aws:ec2:r:1:instance/i-1"));
        assert!(glob("*", "*"));
    }
}
