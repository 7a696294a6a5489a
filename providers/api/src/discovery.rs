//! What a provider can find out about machines it did not launch, for
//! `kubesurge init`: the instance behind each existing node (without
//! requiring kubesurge's tags), how the cloud groups it (an Auto Scaling
//! group, a launch template), the pool section that would launch more of
//! a group, and tagging what was found.
//!
//! The core composes the answers (which nodes, which pools, the config);
//! the provider alone knows its cloud's shapes.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::Value;

use crate::{Instance, InstanceId, NodeRef, ProviderError};

/// How the cloud groups a machine, in the order `init` prefers to make
/// pools of them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupKind {
    /// A group that keeps its own size (an AWS Auto Scaling group).
    ScalingGroup,
    /// The template the machine was launched from (an EC2 launch template).
    LaunchTemplate,
}

impl GroupKind {
    /// How a person reads it.
    pub fn describe(&self) -> &'static str {
        match self {
            GroupKind::ScalingGroup => "Auto Scaling group",
            GroupKind::LaunchTemplate => "launch template",
        }
    }
}

/// One group of machines as the cloud knows it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MachineGroup {
    pub kind: GroupKind,
    /// Its identity in the cloud (group name, template id).
    pub id: String,
    /// What people call it (group name, template name); pools are named
    /// after it.
    pub name: String,
}

/// The instance behind a node, and its group if the cloud has one.
#[derive(Clone, Debug, PartialEq)]
pub struct Machine {
    pub instance: Instance,
    pub group: Option<MachineGroup>,
}

/// What was found for one node: its machine, or why there is none.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeMachine {
    pub node: String,
    pub found: Result<Machine, String>,
}

/// A machine of a proposed pool with the Kubernetes version its node runs
/// (`v1.35.3`): the image rule is read from the two together.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolMachine {
    pub machine: Machine,
    pub kubelet_version: String,
}

/// The provider's section of a proposed pool (`pools[].aws`), and what the
/// user should know about how it was found.
#[derive(Clone, Debug, PartialEq)]
pub struct SectionProposal {
    /// Config data, as the provider's pool section reads it.
    pub section: Value,
    /// How each value was found; written as comments above the pool.
    pub notes: Vec<String>,
    /// What the user must check or fix before a run (an image rule that
    /// could not be found, machines from several templates); written as
    /// comments and printed.
    pub warnings: Vec<String>,
}

/// One resource to tag, and with what.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TagTarget {
    Instance(InstanceId),
    Group(MachineGroup),
}

impl std::fmt::Display for TagTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TagTarget::Instance(id) => write!(f, "instance {id}"),
            TagTarget::Group(group) => write!(f, "{} {}", group.kind.describe(), group.name),
        }
    }
}

/// Tags to add to one resource (existing tags of other keys are kept).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagChange {
    pub target: TagTarget,
    pub tags: BTreeMap<String, String>,
}

/// Discovery of an existing fleet (`kubesurge init`). Read-only except
/// [`Discovery::tag`].
#[async_trait]
pub trait Discovery: Send + Sync {
    /// The provider's name, as in the config (`aws`).
    fn name(&self) -> &str;

    /// The machine behind each node: by its providerID, else by its
    /// internal address where the provider can tell (the rules of
    /// [`crate::CloudProvider::instance_for`], without requiring any tag).
    /// A node with no machine, or several, gets the reason; nothing is
    /// guessed. One answer per node, in order.
    async fn machines(&self, nodes: &[NodeRef]) -> Result<Vec<NodeMachine>, ProviderError>;

    /// The provider's section for a pool of `machines` (all of one group,
    /// or sharing labels): where to launch more of them and the rule that
    /// finds their image for any Kubernetes version. `InvalidConfig` when
    /// no pool can launch more of them (its message says why): their nodes
    /// are then left out, with that reason.
    async fn propose(&self, machines: &[PoolMachine]) -> Result<SectionProposal, ProviderError>;

    /// Add `changes`' tags. Callers list the changes to the user first.
    async fn tag(&self, changes: &[TagChange]) -> Result<(), ProviderError>;
}
