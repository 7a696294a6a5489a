//! IAM policy evaluation in front of moto, for the calls kubesurge makes:
//! actions, resource ARNs and the condition keys the iam module's policy
//! relies on. moto's own enforcement matches every EC2, Auto Scaling and
//! SSM call against the resource `*` and evaluates no condition (see
//! terraform/modules/iam/README.md), so it can prove neither.
//!
//! - [`Policy`] and [`Policy::evaluate`]: pure evaluation of one
//!   [`Authorization`] (an action on one resource, with the request's
//!   context keys), after AWS's evaluation logic
//!   (<https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html>):
//!   an explicit Deny wins, else an Allow must match, else the call is
//!   refused.
//! - [`IamGate`]: what AWS authorizes for one request (one authorization
//!   per resource it touches, with the tags it carries or sets, looked up
//!   in moto), used by the fault proxy to refuse what the policy does not
//!   allow.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use serde_json::Value;
use thiserror::Error;

use super::ec2::{Ec2, Params};
use super::strict::form;

/// moto's account.
pub const ACCOUNT: &str = "123456789012";

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
    fn new(action: &str, resource: String) -> Authorization {
        Authorization {
            action: action.to_string(),
            resource,
            context: BTreeMap::new(),
        }
    }

    fn with(mut self, key: &str, values: Vec<String>) -> Authorization {
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

fn strings(value: &Value) -> Vec<String> {
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

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub authorization: Authorization,
    pub decision: Decision,
}

/// Evaluates every request against a policy, resolving what the request
/// touches in moto.
pub struct IamGate {
    upstream: String,
    policy: Mutex<Policy>,
    refusals: Mutex<Vec<Refusal>>,
}

fn values(form: &[(String, String)], key: impl Fn(&str) -> bool) -> Vec<String> {
    form.iter()
        .filter(|(k, _)| key(k))
        .map(|(_, v)| v.clone())
        .collect()
}

fn value<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The tags of one `TagSpecification.N` of `resource_type` in a form.
fn tag_specification(form: &[(String, String)], resource_type: &str) -> BTreeMap<String, String> {
    let mut tags = BTreeMap::new();
    for (k, v) in form {
        let Some(rest) = k.strip_prefix("TagSpecification.") else {
            continue;
        };
        let Some((n, "ResourceType")) = rest.split_once('.') else {
            continue;
        };
        if v != resource_type {
            continue;
        }
        for m in 1.. {
            let Some(key) = value(form, &format!("TagSpecification.{n}.Tag.{m}.Key")) else {
                break;
            };
            let tag_value = value(form, &format!("TagSpecification.{n}.Tag.{m}.Value"));
            tags.insert(key.to_string(), tag_value.unwrap_or_default().to_string());
        }
    }
    tags
}

/// `aws:RequestTag/K` for each tag and `aws:TagKeys`
/// (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html).
fn request_tags(mut a: Authorization, tags: &BTreeMap<String, String>) -> Authorization {
    for (k, v) in tags {
        a = a.with(&format!("aws:RequestTag/{k}"), vec![v.clone()]);
    }
    a.with("aws:TagKeys", tags.keys().cloned().collect())
}

/// `aws:ResourceTag/K` (and the service's own `PREFIX:ResourceTag/K`) for
/// each tag the resource carries.
fn resource_tags(
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

impl IamGate {
    pub fn new(upstream: &str, policy: Policy) -> IamGate {
        IamGate {
            upstream: upstream.trim_end_matches('/').to_string(),
            policy: Mutex::new(policy),
            refusals: Mutex::new(Vec::new()),
        }
    }

    fn policy(&self) -> MutexGuard<'_, Policy> {
        self.policy.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Evaluate from now on against `policy`.
    pub fn set_policy(&self, policy: Policy) {
        *self.policy() = policy;
    }

    /// Every refusal so far.
    pub fn refusals(&self) -> Vec<Refusal> {
        self.refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `Ok` when the policy allows every authorization the request needs;
    /// the first refused one otherwise.
    pub async fn authorize(
        &self,
        service: &str,
        action: &str,
        region: &str,
        body: &[u8],
    ) -> Result<(), Refusal> {
        let authorizations = self.authorizations(service, action, region, body).await;
        let policy = self.policy().clone();
        for authorization in authorizations {
            let decision = policy.evaluate(&authorization);
            if decision != Decision::Allowed {
                let refusal = Refusal {
                    authorization,
                    decision,
                };
                self.refusals
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(refusal.clone());
                return Err(refusal);
            }
        }
        Ok(())
    }

    /// What AWS authorizes for one request. Resources and keys come from
    /// the Service Authorization Reference's tables for each action
    /// (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html,
    /// .../list_amazonec2autoscaling.html, .../list_awssystemsmanager.html);
    /// a lookup in moto that fails leaves the keys it would have given out,
    /// so a tag condition then does not hold.
    async fn authorizations(
        &self,
        service: &str,
        action: &str,
        region: &str,
        body: &[u8],
    ) -> Vec<Authorization> {
        let iam_action = format!("{service}:{action}");
        let ec2_arn = |rest: &str| format!("arn:aws:ec2:{region}:{ACCOUNT}:{rest}");
        let ec2 = Ec2::new(&self.upstream, region);
        if service == "ssm" {
            return self.ssm(&ec2, &iam_action, region, body).await;
        }
        let form = form(body);
        match (service, action) {
            ("ec2", "RunInstances") => {
                let mut all = Vec::new();
                let template = self.template_id(&ec2, &form).await;
                let from_template = |a: Authorization| match &template {
                    Some(id) => a.with(
                        "ec2:LaunchTemplate",
                        vec![ec2_arn(&format!("launch-template/{id}"))],
                    ),
                    None => a,
                };
                let instance_tags = tag_specification(&form, "instance");
                all.push(from_template(request_tags(
                    Authorization::new(&iam_action, ec2_arn("instance/*")),
                    &instance_tags,
                )));
                if let Some(id) = &template {
                    all.push(from_template(Authorization::new(
                        &iam_action,
                        ec2_arn(&format!("launch-template/{id}")),
                    )));
                }
                if let Some(image) = value(&form, "ImageId") {
                    all.push(from_template(Authorization::new(
                        &iam_action,
                        format!("arn:aws:ec2:{region}::image/{image}"),
                    )));
                }
                let subnets = values(&form, |k| {
                    k == "SubnetId"
                        || (k.starts_with("NetworkInterface.") && k.ends_with(".SubnetId"))
                });
                let groups = values(&form, |k| {
                    k.starts_with("SecurityGroupId.")
                        || (k.starts_with("NetworkInterface.") && k.contains(".SecurityGroupId."))
                });
                for subnet in subnets {
                    all.push(from_template(Authorization::new(
                        &iam_action,
                        ec2_arn(&format!("subnet/{subnet}")),
                    )));
                }
                for group in groups {
                    all.push(from_template(Authorization::new(
                        &iam_action,
                        ec2_arn(&format!("security-group/{group}")),
                    )));
                }
                // Every launch makes a network interface and a root volume.
                for made in ["network-interface/*", "volume/*"] {
                    all.push(from_template(Authorization::new(
                        &iam_action,
                        ec2_arn(made),
                    )));
                }
                // Tags in the request are authorized as ec2:CreateTags with
                // ec2:CreateAction (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/supported-iam-actions-tagging.html).
                for resource_type in ["instance", "volume", "network-interface"] {
                    let tags = tag_specification(&form, resource_type);
                    if tags.is_empty() {
                        continue;
                    }
                    all.push(
                        request_tags(
                            Authorization::new(
                                "ec2:CreateTags",
                                ec2_arn(&format!("{resource_type}/*")),
                            ),
                            &tags,
                        )
                        .with("ec2:CreateAction", vec!["RunInstances".to_string()]),
                    );
                }
                all
            }
            ("ec2", "TerminateInstances") => {
                let mut all = Vec::new();
                for id in values(&form, |k| k.starts_with("InstanceId.")) {
                    let tags = ec2
                        .instance(&id)
                        .await
                        .ok()
                        .flatten()
                        .map(|i| i.tags)
                        .unwrap_or_default();
                    all.push(resource_tags(
                        Authorization::new(&iam_action, ec2_arn(&format!("instance/{id}"))),
                        "ec2",
                        &tags,
                    ));
                }
                all
            }
            ("ec2", "CreateTags") => {
                let tags: BTreeMap<String, String> = (1..)
                    .map_while(|n| {
                        let key = value(&form, &format!("Tag.{n}.Key"))?;
                        Some((
                            key.to_string(),
                            value(&form, &format!("Tag.{n}.Value"))
                                .unwrap_or_default()
                                .to_string(),
                        ))
                    })
                    .collect();
                values(&form, |k| k.starts_with("ResourceId."))
                    .into_iter()
                    .map(|id| {
                        request_tags(
                            Authorization::new(&iam_action, ec2_arn(&format!("instance/{id}"))),
                            &tags,
                        )
                    })
                    .collect()
            }
            ("ec2", "CreateLaunchTemplateVersion") => match self.template_id(&ec2, &form).await {
                Some(id) => vec![Authorization::new(
                    &iam_action,
                    ec2_arn(&format!("launch-template/{id}")),
                )],
                None => vec![Authorization::new(&iam_action, "*".to_string())],
            },
            ("autoscaling", a) if !a.starts_with("Describe") => {
                self.auto_scaling(&iam_action, region, &form).await
            }
            // Describe* and anything else: the resource `*`.
            _ => vec![Authorization::new(&iam_action, "*".to_string())],
        }
    }

    /// The launch template a request names, by id or by name.
    async fn template_id(&self, ec2: &Ec2, form: &[(String, String)]) -> Option<String> {
        let (id, name) = (
            value(form, "LaunchTemplate.LaunchTemplateId").or(value(form, "LaunchTemplateId")),
            value(form, "LaunchTemplate.LaunchTemplateName").or(value(form, "LaunchTemplateName")),
        );
        if let Some(id) = id {
            return Some(id.to_string());
        }
        let root = ec2
            .call(
                "DescribeLaunchTemplates",
                Params::new().set("LaunchTemplateName.1", name?),
            )
            .await
            .ok()?;
        root.items("launchTemplates")
            .first()
            .and_then(|t| t.text_at("launchTemplateId"))
            .map(str::to_string)
    }

    /// A group action: the group's ARN and tags; for tag changes, the
    /// request's tags too.
    async fn auto_scaling(
        &self,
        iam_action: &str,
        region: &str,
        form: &[(String, String)],
    ) -> Vec<Authorization> {
        let api = Ec2::for_service(&self.upstream, region, "autoscaling", "2011-01-01");
        let name =
            match value(form, "AutoScalingGroupName").or(value(form, "Tags.member.1.ResourceId")) {
                Some(name) => Some(name.to_string()),
                None => match value(form, "InstanceId") {
                    Some(id) => api
                        .call(
                            "DescribeAutoScalingInstances",
                            Params::new().set("InstanceIds.member.1", id),
                        )
                        .await
                        .ok()
                        .and_then(|root| {
                            root.at("DescribeAutoScalingInstancesResult/AutoScalingInstances")
                                .and_then(|set| set.all("member").next())
                                .and_then(|m| m.text_at("AutoScalingGroupName"))
                                .map(str::to_string)
                        }),
                    None => None,
                },
            };
        let Some(name) = name else {
            return vec![Authorization::new(iam_action, "*".to_string())];
        };
        let group = super::autoscaling::AutoScalingApi::new(&self.upstream, region)
            .group(&name)
            .await
            .ok()
            .flatten();
        // The group's ARN carries a UUID; the policy matches any.
        let arn = format!(
            "arn:aws:autoscaling:{region}:{ACCOUNT}:autoScalingGroup:00000000-0000-0000-0000-000000000000:autoScalingGroupName/{name}"
        );
        let mut a = resource_tags(
            Authorization::new(iam_action, arn),
            "autoscaling",
            &group.map(|g| g.tags).unwrap_or_default(),
        );
        if iam_action.ends_with("Tags") {
            let tags: BTreeMap<String, String> = (1..)
                .map_while(|n| {
                    let key = value(form, &format!("Tags.member.{n}.Key"))?;
                    Some((
                        key.to_string(),
                        value(form, &format!("Tags.member.{n}.Value"))
                            .unwrap_or_default()
                            .to_string(),
                    ))
                })
                .collect();
            a = request_tags(a, &tags);
        }
        vec![a]
    }

    /// SSM (JSON): SendCommand on each instance (with its EC2 tags) and on
    /// the document; anything else on `*`.
    async fn ssm(
        &self,
        ec2: &Ec2,
        iam_action: &str,
        region: &str,
        body: &[u8],
    ) -> Vec<Authorization> {
        let request: Value = serde_json::from_slice(body).unwrap_or_default();
        if iam_action != "ssm:SendCommand" {
            return vec![Authorization::new(iam_action, "*".to_string())];
        }
        let mut all = Vec::new();
        for id in strings(&request["InstanceIds"]) {
            let tags = ec2
                .instance(&id)
                .await
                .ok()
                .flatten()
                .map(|i| i.tags)
                .unwrap_or_default();
            all.push(resource_tags(
                Authorization::new(
                    iam_action,
                    format!("arn:aws:ec2:{region}:{ACCOUNT}:instance/{id}"),
                ),
                "ssm",
                &tags,
            ));
        }
        if let Some(document) = request["DocumentName"].as_str() {
            all.push(Authorization::new(
                iam_action,
                format!("arn:aws:ssm:{region}::document/{document}"),
            ));
        }
        all
    }
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

    #[test]
    fn tag_specifications_are_read_per_resource_type() {
        let body = form(
            b"Action=RunInstances&TagSpecification.1.ResourceType=instance&TagSpecification.1.Tag.1.Key=kubesurge.io%2Fcluster&TagSpecification.1.Tag.1.Value=c1&TagSpecification.2.ResourceType=volume&TagSpecification.2.Tag.1.Key=Name&TagSpecification.2.Tag.1.Value=v",
        );
        assert_eq!(
            tag_specification(&body, "instance"),
            tags(&[("kubesurge.io/cluster", "c1")])
        );
        assert_eq!(tag_specification(&body, "volume"), tags(&[("Name", "v")]));
        assert!(tag_specification(&body, "network-interface").is_empty());
    }
}
