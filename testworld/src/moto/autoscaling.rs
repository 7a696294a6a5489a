//! The world's own small Auto Scaling client (the query protocol, as EC2's,
//! served by the same moto server): seeding groups and reading them back
//! in tests, sharing no code with the provider under test.
//!
//! What moto 5.2 serves of Auto Scaling, as tried: AttachInstances (adds
//! the members and tags them `aws:autoscaling:groupName`),
//! TerminateInstanceInAutoScalingGroup (detaches, decrements when asked,
//! terminates), Suspend/ResumeProcesses, CreateOrUpdateTags and DeleteTags,
//! DescribeAutoScalingInstances, UpdateAutoScalingGroup, and its own
//! scale-out from the group's launch template and user data whenever the
//! desired capacity is applied. Where it is lenient, nothing the tool does
//! depends on it, so the fault proxy corrects none of it: AttachInstances
//! checks the member count rather than the desired capacity against
//! `MaxSize` (the two are equal in every run), accepts instances that are
//! not yet running ("The instance must be in the running state", Attach
//! EC2 instances to your Auto Scaling group, User Guide; the provider
//! waits for it anyway) and would attach a member twice (the provider
//! looks first); suspended processes are recorded but not enforced; and a
//! termination in the group of a non-member answers a server error rather
//! than `ValidationError` (the provider only terminates members through
//! the group).

use std::collections::{BTreeMap, BTreeSet};

use super::ec2::{Ec2, Ec2Error, Params};
use super::xml::Element;

/// The Auto Scaling API version.
pub const API_VERSION: &str = "2011-01-01";

/// A group as tests compare it before and after a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AsgGroup {
    pub name: String,
    pub min_size: u32,
    pub max_size: u32,
    pub desired: u32,
    pub suspended: BTreeSet<String>,
    pub members: BTreeSet<String>,
    pub tags: BTreeMap<String, String>,
    /// The launch template id and version it launches from.
    pub launch_template: Option<(String, String)>,
}

impl AsgGroup {
    /// What a run must leave as it found: sizes and suspended processes.
    pub fn settings(&self) -> (u32, u32, u32, BTreeSet<String>) {
        (
            self.min_size,
            self.max_size,
            self.desired,
            self.suspended.clone(),
        )
    }
}

/// `member` children of the element at `path` (the query protocol's lists
/// in Auto Scaling answers).
fn members<'a>(root: &'a Element, path: &str) -> Vec<&'a Element> {
    root.at(path)
        .map(|e| e.all("member").collect())
        .unwrap_or_default()
}

fn number(e: &Element, path: &str) -> u32 {
    e.text_at(path)
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_default()
}

/// The client.
#[derive(Clone)]
pub struct AutoScalingApi {
    api: Ec2,
}

impl AutoScalingApi {
    pub fn new(url: &str, region: &str) -> AutoScalingApi {
        AutoScalingApi {
            api: Ec2::for_service(url, region, "autoscaling", API_VERSION),
        }
    }

    /// A group launching from `template_id` (its default version) in
    /// `subnets`, with no instance yet (`desired` 0).
    pub async fn create_group(
        &self,
        name: &str,
        template_id: &str,
        min_size: u32,
        max_size: u32,
        subnets: &[String],
    ) -> Result<(), Ec2Error> {
        self.api
            .call(
                "CreateAutoScalingGroup",
                Params::new()
                    .set("AutoScalingGroupName", name)
                    .set("LaunchTemplate.LaunchTemplateId", template_id)
                    .set("LaunchTemplate.Version", "$Default")
                    .set("MinSize", min_size.to_string())
                    .set("MaxSize", max_size.to_string())
                    .set("DesiredCapacity", "0")
                    .set("VPCZoneIdentifier", subnets.join(",")),
            )
            .await
            .map(|_| ())
    }

    pub async fn update_sizes(&self, name: &str, min: u32, max: u32) -> Result<(), Ec2Error> {
        self.api
            .call(
                "UpdateAutoScalingGroup",
                Params::new()
                    .set("AutoScalingGroupName", name)
                    .set("MinSize", min.to_string())
                    .set("MaxSize", max.to_string()),
            )
            .await
            .map(|_| ())
    }

    pub async fn attach(&self, name: &str, ids: &[String]) -> Result<(), Ec2Error> {
        let mut params = Params::new().set("AutoScalingGroupName", name);
        for (n, id) in ids.iter().enumerate() {
            params = params.set(format!("InstanceIds.member.{}", n + 1), id.clone());
        }
        self.api.call("AttachInstances", params).await.map(|_| ())
    }

    /// Tag the group (`PropagateAtLaunch` false), as its owner would.
    pub async fn tag_group(&self, name: &str, key: &str, value: &str) -> Result<(), Ec2Error> {
        self.api
            .call(
                "CreateOrUpdateTags",
                Params::new()
                    .set("Tags.member.1.ResourceId", name)
                    .set("Tags.member.1.ResourceType", "auto-scaling-group")
                    .set("Tags.member.1.Key", key)
                    .set("Tags.member.1.Value", value)
                    .set("Tags.member.1.PropagateAtLaunch", "false"),
            )
            .await
            .map(|_| ())
    }

    pub async fn suspend(&self, name: &str, processes: &[&str]) -> Result<(), Ec2Error> {
        let mut params = Params::new().set("AutoScalingGroupName", name);
        for (n, p) in processes.iter().enumerate() {
            params = params.set(format!("ScalingProcesses.member.{}", n + 1), *p);
        }
        self.api.call("SuspendProcesses", params).await.map(|_| ())
    }

    /// Terminate a member through its group, as a scale-in would.
    pub async fn terminate_member(&self, id: &str, decrement: bool) -> Result<(), Ec2Error> {
        self.api
            .call(
                "TerminateInstanceInAutoScalingGroup",
                Params::new()
                    .set("InstanceId", id)
                    .set("ShouldDecrementDesiredCapacity", decrement.to_string()),
            )
            .await
            .map(|_| ())
    }

    /// The group, or `None` when there is none of that name.
    pub async fn group(&self, name: &str) -> Result<Option<AsgGroup>, Ec2Error> {
        let root = self
            .api
            .call(
                "DescribeAutoScalingGroups",
                Params::new().set("AutoScalingGroupNames.member.1", name),
            )
            .await?;
        Ok(
            members(&root, "DescribeAutoScalingGroupsResult/AutoScalingGroups")
                .into_iter()
                .find(|g| g.text_at("AutoScalingGroupName") == Some(name))
                .map(|g| AsgGroup {
                    name: name.to_string(),
                    min_size: number(g, "MinSize"),
                    max_size: number(g, "MaxSize"),
                    desired: number(g, "DesiredCapacity"),
                    suspended: members(g, "SuspendedProcesses")
                        .into_iter()
                        .filter_map(|p| p.text_at("ProcessName").map(str::to_string))
                        .collect(),
                    members: members(g, "Instances")
                        .into_iter()
                        .filter_map(|i| i.text_at("InstanceId").map(str::to_string))
                        .collect(),
                    tags: members(g, "Tags")
                        .into_iter()
                        .filter_map(|t| {
                            Some((
                                t.text_at("Key")?.to_string(),
                                t.text_at("Value").unwrap_or_default().to_string(),
                            ))
                        })
                        .collect(),
                    launch_template: g.at("LaunchTemplate").and_then(|t| {
                        Some((
                            t.text_at("LaunchTemplateId")?.to_string(),
                            t.text_at("Version").unwrap_or("$Default").to_string(),
                        ))
                    }),
                }),
        )
    }
}
