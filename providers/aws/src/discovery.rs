//! [`AwsDiscovery`]: what `kubesurge init` learns of an existing EC2 fleet.
//!
//! - The instance of each node: by providerID (`aws:///<zone>/<id>`), else
//!   by private address, in the region of the AWS configuration; no tag is
//!   required (the fleet is not kubesurge's yet).
//! - Its group: the Auto Scaling group it belongs to
//!   (DescribeAutoScalingInstances), else the launch template EC2 recorded
//!   on it (the `aws:ec2launchtemplate:id` tag EC2 adds to instances
//!   launched from a template,
//!   <https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-launch-templates.html>).
//! - A pool section: the group's launch template and version, and the
//!   image rule read from the images the machines run ([`image_rule`]).
//! - Tags: `CreateTags` on instances, `CreateOrUpdateTags` on groups (with
//!   `PropagateAtLaunch`, so the group's own launches are kubesurge's too).
//!
//! [`image_rule`]: crate::image_rule

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_ec2::types::{Filter, Tag};
use kubesurge_provider::discovery::{
    Discovery, GroupKind, Machine, MachineGroup, NodeMachine, PoolMachine, SectionProposal,
    TagChange, TagTarget,
};
use kubesurge_provider::{Instance, InstanceId, InstanceState, NodeRef, ProviderError};
use serde_json::{Map, Value, json};
use tokio::sync::OnceCell;

use crate::client::load_sdk_config;
use crate::config::{ClientOptions, ImageSource};
use crate::convert;
use crate::errors::{Call, from_sdk};
use crate::image_rule::{ImageFacts, common_rule};
use crate::provider_id::instance_id_of;

/// The tag EC2 puts on an instance launched from a launch template.
pub const LAUNCH_TEMPLATE_TAG: &str = "aws:ec2launchtemplate:id";
/// EC2 takes at most 200 values per filter.
const FILTER_VALUES: usize = 200;
/// DescribeAutoScalingInstances takes at most 50 ids.
const ASG_INSTANCE_IDS: usize = 50;

/// Discovery in the region of the standard AWS configuration.
pub struct AwsDiscovery {
    options: ClientOptions,
    config: OnceCell<SdkConfig>,
}

/// An Auto Scaling group's launch template, as the group names it.
#[derive(Clone, Debug, Default)]
struct GroupTemplate {
    id: Option<String>,
    name: Option<String>,
    version: Option<String>,
}

impl AwsDiscovery {
    pub fn new(options: ClientOptions) -> AwsDiscovery {
        AwsDiscovery {
            options,
            config: OnceCell::new(),
        }
    }

    async fn sdk(&self) -> &SdkConfig {
        self.config
            .get_or_init(|| load_sdk_config(None, &self.options))
            .await
    }

    async fn ec2(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(self.sdk().await)
    }

    async fn autoscaling(&self) -> aws_sdk_autoscaling::Client {
        aws_sdk_autoscaling::Client::new(self.sdk().await)
    }

    async fn region(&self) -> Result<String, ProviderError> {
        self.sdk()
            .await
            .region()
            .map(|r| r.to_string())
            .ok_or_else(|| ProviderError::InvalidConfig {
                message: "no AWS region: set AWS_REGION (or a profile's region)".into(),
            })
    }

    /// Every instance matching one filter whose values are `values`, in
    /// batches EC2 accepts; terminated ones too unless `live_only` (so that
    /// a stale node's reason can say its instance is terminated).
    async fn instances_by(
        &self,
        filter: &str,
        values: &[String],
        live_only: bool,
    ) -> Result<Vec<Instance>, ProviderError> {
        let client = self.ec2().await;
        let mut found = Vec::new();
        for batch in values.chunks(FILTER_VALUES) {
            let mut call = client.describe_instances().filters(
                Filter::builder()
                    .name(filter)
                    .set_values(Some(batch.to_vec()))
                    .build(),
            );
            if live_only {
                call = call.filters(
                    Filter::builder()
                        .name("instance-state-name")
                        .set_values(Some(
                            convert::LIVE_STATES.iter().map(|s| s.to_string()).collect(),
                        ))
                        .build(),
                );
            }
            let mut pages = call.into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| from_sdk(Call::DescribeInstances, &e, None))?;
                found.extend(
                    page.reservations()
                        .iter()
                        .flat_map(|r| r.instances())
                        .filter_map(convert::instance),
                );
            }
        }
        Ok(found)
    }

    /// The Auto Scaling group of each instance that is in one.
    async fn groups_of(&self, ids: &[String]) -> Result<BTreeMap<String, String>, ProviderError> {
        let client = self.autoscaling().await;
        let mut groups = BTreeMap::new();
        for batch in ids.chunks(ASG_INSTANCE_IDS) {
            let out = client
                .describe_auto_scaling_instances()
                .set_instance_ids(Some(batch.to_vec()))
                .max_records(ASG_INSTANCE_IDS as i32)
                .send()
                .await
                .map_err(|e| from_sdk(Call::DescribeAutoScalingInstances, &e, None))?;
            for i in out.auto_scaling_instances() {
                if let (Some(id), Some(group)) = (i.instance_id(), i.auto_scaling_group_name()) {
                    groups.insert(id.to_string(), group.to_string());
                }
            }
        }
        Ok(groups)
    }

    /// The names of launch templates by id; a template EC2 no longer has
    /// keeps its id as name.
    async fn template_names(
        &self,
        ids: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, String>, ProviderError> {
        let mut names = BTreeMap::new();
        if ids.is_empty() {
            return Ok(names);
        }
        let client = self.ec2().await;
        // One call per template: a deleted one fails the whole call.
        for id in ids {
            let answer = client
                .describe_launch_templates()
                .launch_template_ids(id)
                .send()
                .await;
            match answer {
                Ok(out) => {
                    if let Some(name) = out
                        .launch_templates()
                        .iter()
                        .find_map(|t| t.launch_template_name())
                    {
                        names.insert(id.clone(), name.to_string());
                    }
                }
                Err(e) => {
                    let error = from_sdk(Call::DescribeLaunchTemplates, &e, None);
                    if !matches!(error, ProviderError::InvalidConfig { .. }) {
                        return Err(error);
                    }
                }
            }
        }
        Ok(names)
    }

    async fn group_template(&self, group: &str) -> Result<GroupTemplate, ProviderError> {
        let out = self
            .autoscaling()
            .await
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(group)
            .send()
            .await
            .map_err(|e| from_sdk(Call::DescribeAutoScalingGroups, &e, None))?;
        let Some(found) = out.auto_scaling_groups().first() else {
            return Err(ProviderError::NotFound {
                what: format!("Auto Scaling group {group}"),
            });
        };
        let spec = found.launch_template().or_else(|| {
            found
                .mixed_instances_policy()
                .and_then(|p| p.launch_template())
                .and_then(|t| t.launch_template_specification())
        });
        Ok(spec
            .map(|s| GroupTemplate {
                id: s.launch_template_id().map(str::to_string),
                name: s.launch_template_name().map(str::to_string),
                version: s.version().map(str::to_string),
            })
            .unwrap_or_default())
    }

    async fn image_facts(&self, ids: &[String]) -> Result<Vec<ImageFacts>, ProviderError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .ec2()
            .await
            .describe_images()
            .set_image_ids(Some(ids.to_vec()))
            .send()
            .await
            .map_err(|e| from_sdk(Call::DescribeImages, &e, None))?;
        Ok(out
            .images()
            .iter()
            .filter_map(|i| {
                Some(ImageFacts {
                    id: i.image_id()?.to_string(),
                    owner: i.owner_id().map(str::to_string),
                    name: i.name().map(str::to_string),
                    tags: i
                        .tags()
                        .iter()
                        .filter_map(|t| {
                            Some((t.key()?.to_string(), t.value().unwrap_or("").to_string()))
                        })
                        .collect(),
                })
            })
            .collect())
    }
}

/// Why a node maps to nothing, or to several instances.
fn match_node(
    node: &NodeRef,
    region: &str,
    by_id: &BTreeMap<String, Instance>,
    by_ip: &BTreeMap<String, Vec<Instance>>,
) -> Result<Instance, String> {
    if let Some(provider_id) = node.provider_id.as_deref().filter(|p| !p.is_empty()) {
        let Some(id) = instance_id_of(provider_id) else {
            return Err(format!("its providerID {provider_id} is not an EC2 one"));
        };
        if let Some(zone) = zone_of(provider_id)
            && !zone.starts_with(region)
        {
            return Err(format!(
                "its instance {id} is in zone {zone}, outside region {region} (run init with AWS_REGION set to its region)"
            ));
        }
        return match by_id.get(id) {
            Some(i) if i.state.is_going_away() => Err(format!(
                "its instance {id} is {} (the node is stale)",
                state_name(i.state)
            )),
            Some(i) => Ok(i.clone()),
            None => Err(format!(
                "no instance {id} (from its providerID) in region {region}"
            )),
        };
    }
    let Some(ip) = node.internal_ip.as_deref().filter(|ip| !ip.is_empty()) else {
        return Err("it has neither a providerID nor an internal address".into());
    };
    let live: Vec<&Instance> = by_ip
        .get(ip)
        .map(|found| found.iter().filter(|i| !i.state.is_going_away()).collect())
        .unwrap_or_default();
    match live.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(format!(
            "no providerID, and no instance in region {region} has its address {ip}"
        )),
        several => Err(format!(
            "no providerID, and {} instances have its address {ip} ({}): private addresses are unique per VPC only",
            several.len(),
            several
                .iter()
                .map(|i| i.id.0.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn state_name(state: InstanceState) -> &'static str {
    match state {
        InstanceState::ShuttingDown => "shutting down",
        InstanceState::Terminated => "terminated",
        InstanceState::Stopping => "stopping",
        InstanceState::Stopped => "stopped",
        InstanceState::Pending => "pending",
        InstanceState::Running => "running",
    }
}

/// `us-east-1a` from `aws:///us-east-1a/i-…`.
fn zone_of(provider_id: &str) -> Option<&str> {
    let rest = provider_id.strip_prefix("aws:///")?;
    let (zone, _) = rest.split_once('/')?;
    (!zone.is_empty()).then_some(zone)
}

/// `image:` of a pool section.
pub fn image_section(image: &ImageSource) -> Value {
    match image {
        ImageSource::Id(id) => json!({ "id": id }),
        ImageSource::Lookup { owners, filters } => {
            let filters: Map<String, Value> = filters
                .iter()
                .map(|(k, v)| {
                    let value = match v.as_slice() {
                        [one] => json!(one),
                        many => json!(many),
                    };
                    (k.clone(), value)
                })
                .collect();
            json!({ "owners": owners, "filters": filters })
        }
    }
}

/// The most common value, ties to the smallest (stable).
fn most_common<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    counts
        .iter()
        .max_by_key(|(v, n)| (**n, std::cmp::Reverse(**v)))
        .map(|(v, _)| *v)
}

#[async_trait]
impl Discovery for AwsDiscovery {
    fn name(&self) -> &str {
        "aws"
    }

    async fn machines(&self, nodes: &[NodeRef]) -> Result<Vec<NodeMachine>, ProviderError> {
        let region = self.region().await?;
        let ids: BTreeSet<String> = nodes
            .iter()
            .filter_map(|n| n.provider_id.as_deref().and_then(instance_id_of))
            .map(str::to_string)
            .collect();
        let ips: BTreeSet<String> = nodes
            .iter()
            .filter(|n| n.provider_id.as_deref().is_none_or(str::is_empty))
            .filter_map(|n| n.internal_ip.clone())
            .filter(|ip| !ip.is_empty())
            .collect();
        let ids: Vec<String> = ids.into_iter().collect();
        let ips: Vec<String> = ips.into_iter().collect();
        let by_id: BTreeMap<String, Instance> = self
            .instances_by("instance-id", &ids, false)
            .await?
            .into_iter()
            .map(|i| (i.id.0.clone(), i))
            .collect();
        let mut by_ip: BTreeMap<String, Vec<Instance>> = BTreeMap::new();
        for i in self.instances_by("private-ip-address", &ips, true).await? {
            if let Some(ip) = i.private_ip.clone() {
                by_ip.entry(ip).or_default().push(i);
            }
        }
        let matched: Vec<(String, Result<Instance, String>)> = nodes
            .iter()
            .map(|n| (n.name.clone(), match_node(n, &region, &by_id, &by_ip)))
            .collect();
        let found_ids: Vec<String> = matched
            .iter()
            .filter_map(|(_, m)| m.as_ref().ok().map(|i| i.id.0.clone()))
            .collect();
        let groups = self.groups_of(&found_ids).await?;
        let template_ids: BTreeSet<String> = matched
            .iter()
            .filter_map(|(_, m)| m.as_ref().ok())
            .filter(|i| !groups.contains_key(&i.id.0))
            .filter_map(|i| i.tag(LAUNCH_TEMPLATE_TAG).map(str::to_string))
            .collect();
        let template_names = self.template_names(&template_ids).await?;
        Ok(matched
            .into_iter()
            .map(|(node, found)| NodeMachine {
                node,
                found: found.map(|instance| {
                    let group = match groups.get(&instance.id.0) {
                        Some(asg) => Some(MachineGroup {
                            kind: GroupKind::ScalingGroup,
                            id: asg.clone(),
                            name: asg.clone(),
                        }),
                        None => instance.tag(LAUNCH_TEMPLATE_TAG).map(|id| MachineGroup {
                            kind: GroupKind::LaunchTemplate,
                            id: id.to_string(),
                            name: template_names
                                .get(id)
                                .cloned()
                                .unwrap_or_else(|| id.to_string()),
                        }),
                    };
                    Machine { instance, group }
                }),
            })
            .collect())
    }

    async fn propose(&self, machines: &[PoolMachine]) -> Result<SectionProposal, ProviderError> {
        let region = self.region().await?;
        let mut notes = Vec::new();
        let mut warnings = Vec::new();
        let mut section = Map::new();
        section.insert("region".into(), json!(region));

        // The launch template: the group's, else the one EC2 recorded on
        // the instances.
        let groups: BTreeSet<&MachineGroup> = machines
            .iter()
            .filter_map(|m| m.machine.group.as_ref())
            .collect();
        let asg = groups
            .iter()
            .find(|g| g.kind == GroupKind::ScalingGroup)
            .copied();
        let template = match asg {
            Some(group) => {
                let t = self.group_template(&group.name).await?;
                notes.push(format!(
                    "Auto Scaling group {}: its instances, launch template {} version {}",
                    group.name,
                    t.name.as_deref().or(t.id.as_deref()).unwrap_or("(none)"),
                    t.version.as_deref().unwrap_or("$Default")
                ));
                notes.push(format!(
                    "rotated as an Auto Scaling group pool: replacements are attached to {}, old members leave it with the desired capacity decremented, and the group is given back as it was",
                    group.name
                ));
                section.insert("autoScalingGroup".into(), json!(group.name));
                t
            }
            None => {
                let ids = machines
                    .iter()
                    .filter_map(|m| m.machine.instance.tag(LAUNCH_TEMPLATE_TAG));
                let id = most_common(ids).map(str::to_string);
                let name = groups
                    .iter()
                    .find(|g| Some(&g.id) == id.as_ref())
                    .map(|g| g.name.clone())
                    .filter(|n| Some(n) != id.as_ref());
                if let Some(id) = &id {
                    notes.push(format!(
                        "launch template {}: EC2's {LAUNCH_TEMPLATE_TAG} tag on the instances",
                        name.as_deref().unwrap_or(id)
                    ));
                }
                GroupTemplate {
                    id,
                    name,
                    version: None,
                }
            }
        };
        let mut lt = Map::new();
        match (&template.name, &template.id) {
            (Some(name), _) => {
                lt.insert("name".into(), json!(name));
            }
            (None, Some(id)) => {
                lt.insert("id".into(), json!(id));
            }
            (None, None) => {
                return Err(ProviderError::InvalidConfig {
                    message: "no launch template: the instances were not launched from one, so kubesurge cannot launch more like them (create a launch template and set aws.launchTemplate)".into(),
                });
            }
        }
        if let Some(version) = template.version.as_deref().filter(|v| *v != "$Default") {
            lt.insert(
                "version".into(),
                version
                    .parse::<u64>()
                    .map(|n| json!(n))
                    .unwrap_or_else(|_| json!(version)),
            );
        }
        // An Auto Scaling group's pool launches from the group's own
        // template and version unless the pool names another.
        if asg.is_none() {
            section.insert("launchTemplate".into(), Value::Object(lt));
        }

        // The image rule, from the images the machines run now.
        let image_ids: Vec<String> = machines
            .iter()
            .filter_map(|m| m.machine.instance.image.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let facts = self.image_facts(&image_ids).await?;
        let by_id: BTreeMap<&str, &ImageFacts> = facts.iter().map(|f| (f.id.as_str(), f)).collect();
        let pairs: Vec<(&ImageFacts, &str)> = machines
            .iter()
            .filter_map(|m| {
                let image = m.machine.instance.image.as_deref()?;
                Some((*by_id.get(image)?, m.kubelet_version.as_str()))
            })
            .collect();
        let (rule, others) = common_rule(pairs);
        match rule {
            Some((rule, how)) => {
                notes.push(format!("image rule: {how}"));
                if !others.is_empty() {
                    warnings.push(format!(
                        "some machines run images the rule would not find: {}",
                        others.join("; ")
                    ));
                }
                section.insert("image".into(), image_section(&rule));
            }
            None => {
                let current = most_common(
                    machines
                        .iter()
                        .filter_map(|m| m.machine.instance.image.as_deref()),
                );
                warnings.push(format!(
                    "no image rule found: no tag and no name of the current images ({}) carries the nodes' Kubernetes version as v1.2.3; the pool keeps one fixed image until aws.image is set to owners and filters",
                    if image_ids.is_empty() { "none".to_string() } else { image_ids.join(", ") }
                ));
                if let Some(current) = current {
                    section.insert("image".into(), json!({ "id": current }));
                }
            }
        }
        Ok(SectionProposal {
            section: Value::Object(section),
            notes,
            warnings,
        })
    }

    async fn tag(&self, changes: &[TagChange]) -> Result<(), ProviderError> {
        // Instances sharing a tag set are tagged in one call.
        let mut instances: BTreeMap<Vec<(String, String)>, Vec<String>> = BTreeMap::new();
        let mut groups = Vec::new();
        for change in changes {
            match &change.target {
                TagTarget::Instance(InstanceId(id)) => instances
                    .entry(change.tags.clone().into_iter().collect())
                    .or_default()
                    .push(id.clone()),
                TagTarget::Group(group) if group.kind == GroupKind::ScalingGroup => {
                    groups.push((group.name.clone(), &change.tags))
                }
                // A launch template carries no pool membership.
                TagTarget::Group(_) => {}
            }
        }
        let ec2 = self.ec2().await;
        for (tags, ids) in instances {
            let tags: Vec<Tag> = tags
                .iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect();
            for batch in ids.chunks(FILTER_VALUES) {
                ec2.create_tags()
                    .set_resources(Some(batch.to_vec()))
                    .set_tags(Some(tags.clone()))
                    .send()
                    .await
                    .map_err(|e| from_sdk(Call::CreateTags, &e, None))?;
            }
        }
        let autoscaling = self.autoscaling().await;
        for (group, tags) in groups {
            let tags: Vec<aws_sdk_autoscaling::types::Tag> = tags
                .iter()
                .map(|(k, v)| {
                    aws_sdk_autoscaling::types::Tag::builder()
                        .resource_id(&group)
                        .resource_type("auto-scaling-group")
                        .key(k)
                        .value(v)
                        // Members the group launches itself carry them too.
                        .propagate_at_launch(true)
                        .build()
                })
                .collect();
            autoscaling
                .create_or_update_tags()
                .set_tags(Some(tags))
                .send()
                .await
                .map_err(|e| from_sdk(Call::CreateOrUpdateTags, &e, None))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(id: &str, ip: &str, state: InstanceState) -> Instance {
        Instance {
            id: InstanceId(id.into()),
            state,
            zone: "us-east-1a".into(),
            subnet: None,
            image: None,
            private_ip: Some(ip.into()),
            provider_id: format!("aws:///us-east-1a/{id}"),
            launched_at: None,
            tags: BTreeMap::new(),
        }
    }

    fn node(provider_id: Option<&str>, ip: Option<&str>) -> NodeRef {
        NodeRef {
            name: "n".into(),
            provider_id: provider_id.map(str::to_string),
            internal_ip: ip.map(str::to_string),
        }
    }

    #[test]
    fn nodes_map_by_provider_id_else_by_a_unique_address_and_never_by_a_guess() {
        let by_id = BTreeMap::from([
            (
                "i-1".to_string(),
                instance("i-1", "10.0.0.1", InstanceState::Running),
            ),
            (
                "i-2".to_string(),
                instance("i-2", "10.0.0.2", InstanceState::Terminated),
            ),
        ]);
        let by_ip = BTreeMap::from([
            (
                "10.0.0.3".to_string(),
                vec![instance("i-3", "10.0.0.3", InstanceState::Running)],
            ),
            (
                "10.0.0.4".to_string(),
                vec![
                    instance("i-4", "10.0.0.4", InstanceState::Running),
                    instance("i-5", "10.0.0.4", InstanceState::Running),
                ],
            ),
        ]);
        let m = |n: NodeRef| match_node(&n, "us-east-1", &by_id, &by_ip);
        assert_eq!(
            m(node(Some("aws:///us-east-1a/i-1"), None)).unwrap().id.0,
            "i-1"
        );
        assert!(
            m(node(Some("aws:///us-east-1a/i-2"), None))
                .unwrap_err()
                .contains("terminated")
        );
        assert!(
            m(node(Some("aws:///us-east-1a/i-9"), None))
                .unwrap_err()
                .contains("no instance i-9")
        );
        assert!(
            m(node(Some("aws:///eu-west-1a/i-1"), None))
                .unwrap_err()
                .contains("outside region us-east-1")
        );
        assert!(
            m(node(Some("gce://p/z/n"), None))
                .unwrap_err()
                .contains("not an EC2 one")
        );
        assert_eq!(m(node(None, Some("10.0.0.3"))).unwrap().id.0, "i-3");
        assert!(
            m(node(None, Some("10.0.0.4")))
                .unwrap_err()
                .contains("2 instances")
        );
        assert!(
            m(node(None, Some("10.9.9.9")))
                .unwrap_err()
                .contains("no instance")
        );
        assert!(m(node(None, None)).unwrap_err().contains("neither"));
    }

    #[test]
    fn image_sections_read_as_the_pool_config_does() {
        let rule = ImageSource::Lookup {
            owners: vec!["self".into()],
            filters: BTreeMap::from([("tag:k".to_string(), vec!["{version}".to_string()])]),
        };
        assert_eq!(
            image_section(&rule),
            json!({"owners": ["self"], "filters": {"tag:k": "{version}"}})
        );
        assert_eq!(
            image_section(&ImageSource::Id("ami-1".into())),
            json!({"id": "ami-1"})
        );
    }
}
