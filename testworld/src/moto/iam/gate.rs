//! What AWS authorizes for one request, resolved in moto (the tags of the
//! instances, templates and groups it touches), evaluated against a
//! [`Policy`].

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use serde_json::Value;

use super::super::ec2::{Ec2, Params};
use super::super::strict::{form, value};
use super::ACCOUNT;
use super::policy::{Authorization, Decision, Policy, request_tags, resource_tags, strings};

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

    /// The policy evaluated now.
    pub fn current_policy(&self) -> Policy {
        self.policy().clone()
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
        if service == "servicequotas" {
            // GetServiceQuota on the quota (resource type `quota`,
            // Service Authorization Reference for Service Quotas); the
            // rest on `*`.
            let request: Value = serde_json::from_slice(body).unwrap_or_default();
            let resource = match (
                action,
                request["ServiceCode"].as_str(),
                request["QuotaCode"].as_str(),
            ) {
                ("GetServiceQuota", Some(service_code), Some(code)) => {
                    format!("arn:aws:servicequotas:{region}:{ACCOUNT}:{service_code}/{code}")
                }
                _ => "*".to_string(),
            };
            return vec![Authorization::new(&iam_action, resource)];
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
                    let mut a = from_template(Authorization::new(
                        &iam_action,
                        format!("arn:aws:ec2:{region}::image/{image}"),
                    ));
                    if let Some(owner) = image_owner(&ec2, image).await {
                        a = a.with("ec2:Owner", vec![owner]);
                    }
                    all.push(a);
                }
                if let Some(role) = self
                    .passed_role(&ec2, region, &form, template.as_deref())
                    .await
                {
                    all.push(
                        Authorization::new("iam:PassRole", role)
                            .with("iam:PassedToService", vec!["ec2.amazonaws.com".into()]),
                    );
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
            // "No permissions are required to perform this operation"
            // (GetCallerIdentity, AWS STS API Reference).
            ("sts", "GetCallerIdentity") => Vec::new(),
            // The simulator is authorized on the principal simulated
            // (SimulatePrincipalPolicy, Service Authorization Reference for
            // IAM: resource types user, role, group).
            ("iam", "SimulatePrincipalPolicy") => vec![Authorization::new(
                &iam_action,
                value(&form, "PolicySourceArn").unwrap_or("*").to_string(),
            )],
            ("autoscaling", a) if !a.starts_with("Describe") => {
                self.auto_scaling(&iam_action, region, &form).await
            }
            // Describe* and anything else: the resource `*`.
            _ => vec![Authorization::new(&iam_action, "*".to_string())],
        }
    }

    /// The role a `RunInstances` passes to EC2: that of the instance
    /// profile the request names, else of the one its launch template
    /// version names. "To launch an instance with an IAM role, a user
    /// must have permission to pass the role" (`iam:PassRole`, with
    /// `iam:PassedToService = ec2.amazonaws.com`:
    /// <https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/iam-roles-for-amazon-ec2.html#permission-to-pass-iam-roles>).
    /// moto itself ignores a template's instance profile at launch.
    async fn passed_role(
        &self,
        ec2: &Ec2,
        region: &str,
        form: &[(String, String)],
        template: Option<&str>,
    ) -> Option<String> {
        let named = |arn: Option<&str>, name: Option<&str>| -> Option<String> {
            name.map(str::to_string)
                .or_else(|| arn.and_then(|a| a.rsplit('/').next()).map(str::to_string))
        };
        let mut profile = named(
            value(form, "IamInstanceProfile.Arn"),
            value(form, "IamInstanceProfile.Name"),
        );
        if profile.is_none()
            && let Some(id) = template
        {
            // EC2 launches the template's default version when none is named.
            let version = value(form, "LaunchTemplate.Version").unwrap_or("$Default");
            let root = ec2
                .call(
                    "DescribeLaunchTemplateVersions",
                    Params::new()
                        .set("LaunchTemplateId", id)
                        .set("LaunchTemplateVersion.1", version),
                )
                .await
                .ok()?;
            let data = root.items("launchTemplateVersionSet").first().copied()?;
            profile = named(
                data.text_at("launchTemplateData/iamInstanceProfile/arn"),
                data.text_at("launchTemplateData/iamInstanceProfile/name"),
            );
        }
        let profile = profile?;
        let iam = Ec2::for_service(&self.upstream, region, "iam", "2010-05-08");
        let root = iam
            .call(
                "GetInstanceProfile",
                Params::new().set("InstanceProfileName", profile),
            )
            .await
            .ok()?;
        root.at("GetInstanceProfileResult/InstanceProfile/Roles")
            .and_then(|roles| roles.all("member").next())
            .and_then(|role| role.text_at("Arn"))
            .map(str::to_string)
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
        let group = super::super::autoscaling::AutoScalingApi::new(&self.upstream, region)
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

/// `ec2:Owner` of an image: "amazon" or "aws-marketplace" for the images
/// of those aliases, else the owner's account
/// (<https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html>,
/// `ec2:Owner`).
async fn image_owner(ec2: &Ec2, image: &str) -> Option<String> {
    let root = ec2
        .call("DescribeImages", Params::new().set("ImageId.1", image))
        .await
        .ok()?;
    let found = root.items("imagesSet").first().copied()?;
    match found.text_at("imageOwnerAlias") {
        Some(alias @ ("amazon" | "aws-marketplace")) => Some(alias.to_string()),
        _ => found.text_at("imageOwnerId").map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
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
