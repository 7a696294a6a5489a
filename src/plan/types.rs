//! The plan's data: what `kubesurge plan -o json` prints and what the
//! engines execute. The JSON schema is documented on the `plan` module.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::Serialize;
use thiserror::Error;

use super::Budget;
use crate::version::{Component, KubeVersion};

/// The plan: control-plane hops, worker-pool rotations and the order they
/// run in.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// The versions the plan starts from.
    pub current: CurrentVersions,
    /// The version asked for (`None`: stay at the current control plane).
    pub requested_target: Option<KubeVersion>,
    /// The control-plane version when the plan is done.
    pub final_version: KubeVersion,
    /// No hop and no rotation: the cluster is already where it should be.
    pub nothing_to_do: bool,
    pub hops: Vec<Hop>,
    pub pools: Vec<PoolPlan>,
    /// Workers no configured pool covers: the plan never replaces them.
    pub unpooled_workers: Vec<UnpooledWorker>,
    /// Hops and rotations in the order they run.
    pub sequence: Vec<Step>,
    pub warnings: Vec<Warning>,
}

/// The versions observed when planning.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CurrentVersions {
    /// The oldest kube-apiserver: the control plane's version.
    pub control_plane_version: KubeVersion,
    /// The newest kube-apiserver (differs from `controlPlaneVersion` when
    /// an earlier run stopped mid-hop).
    pub newest_apiserver: KubeVersion,
    /// Control-plane nodes, by name.
    pub control_plane: Vec<ControlPlaneNodeVersions>,
    /// The kube-proxy DaemonSet's version (`None`: not installed or
    /// unreadable).
    pub kube_proxy: Option<KubeVersion>,
    /// CoreDNS image tag.
    pub coredns: Option<String>,
}

/// One control-plane node's component versions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlaneNodeVersions {
    pub name: String,
    pub apiserver: KubeVersion,
    pub controller_manager: KubeVersion,
    pub scheduler: KubeVersion,
    /// etcd image tag (its own version scheme); `None` when no etcd static
    /// pod runs on the node (external etcd).
    pub etcd: Option<String>,
    pub kubelet: KubeVersion,
}

/// What a hop is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum HopKind {
    /// To the next minor.
    Minor,
    /// To the target, within the control plane's minor.
    Patch,
    /// Within the control plane's minor, before the next minor: brings
    /// control-plane components and kubelets that lag (an earlier run
    /// stopped part-way, or a node was left behind) to the control plane's
    /// version, so that the next minor hop stays within the skew policy.
    Completion,
}

/// How kubeadm is invoked on a control-plane node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum KubeadmCommand {
    /// `kubeadm upgrade apply vX.Y.Z -y`: the first node of a hop.
    Apply,
    /// `kubeadm upgrade node`: every other node.
    Node,
}

impl KubeadmCommand {
    pub fn command_line(self, version: KubeVersion) -> String {
        match self {
            KubeadmCommand::Apply => format!("kubeadm upgrade apply {version} -y"),
            KubeadmCommand::Node => "kubeadm upgrade node".to_string(),
        }
    }
}

/// One control-plane hop.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Hop {
    /// 1-based position among the hops.
    pub number: usize,
    pub kind: HopKind,
    /// The control plane's version (oldest kube-apiserver) before the hop.
    pub from: KubeVersion,
    /// Every control-plane component and kubelet's version after the hop.
    pub to: KubeVersion,
    /// Control-plane nodes in the order the hop works on them. Pass 1 runs
    /// kubeadm on the nodes with `upgradeComponents`, in this order; pass 2
    /// then upgrades the kubelets of the nodes with `upgradeKubelet`, in
    /// this order, once every kube-apiserver is at `to`.
    pub nodes: Vec<HopNode>,
    /// The node whose kubeadm run upgrades the kube-proxy and CoreDNS
    /// add-ons: kubeadm from v1.28 does it on the last control-plane node,
    /// older kubeadm with `upgrade apply` on the first. `None`: no kubeadm
    /// run in this hop.
    pub addons_after_node: Option<String>,
    /// kube-proxy before and after (`None`: no kube-proxy DaemonSet).
    pub kube_proxy: Option<VersionChange>,
    /// The kubeadm-style table: every component, per node, current and new.
    pub components: Vec<ComponentChange>,
}

/// A control-plane node's part in a hop.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HopNode {
    pub node: String,
    /// `None` when the node's components are already at the hop's version.
    pub kubeadm: Option<KubeadmCommand>,
    pub upgrade_components: bool,
    pub upgrade_kubelet: bool,
}

/// A version before and after.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionChange {
    pub from: KubeVersion,
    pub to: KubeVersion,
}

/// A row of the kubeadm-style table, shaped like kubeadm's own
/// `UpgradePlan` JSON (`name`, `nodeName`, `currentVersion`, `newVersion`).
/// Versions are strings because etcd and CoreDNS carry image tags, and a
/// component kubeadm manages on its own reads "managed by kubeadm".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentChange {
    pub name: Component,
    pub node_name: Option<String>,
    pub current_version: String,
    pub new_version: String,
}

/// A worker pool's part of the plan.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolPlan {
    pub name: String,
    /// Nodes in the pool now.
    pub size: u32,
    /// The pool's nodes in replacement order (see `replacement_order`).
    pub nodes: Vec<PoolNode>,
    pub max_surge: Budget,
    pub max_unavailable: Budget,
    /// `maxSurge` resolved against `size` (rounded up).
    pub surge: u32,
    /// `maxUnavailable` resolved against `size` (rounded down).
    pub unavailable: u32,
    /// In the order they run; empty when the pool stays as it is.
    pub rotations: Vec<Rotation>,
    /// Every rotation of the pool together.
    pub estimate: Estimate,
}

/// A node of a pool as the plan saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolNode {
    pub name: String,
    pub zone: Option<String>,
    pub kubelet: KubeVersion,
    pub created: Timestamp,
}

/// One replacement of (part of) a pool.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rotation {
    /// 1-based among the pool's rotations.
    pub number: usize,
    /// The rotation runs after this hop (1-based); `None`: before the first
    /// hop (or, in a plan without hops, as its only step).
    pub after_hop: Option<usize>,
    /// The kubelet version the new nodes get: the control plane's version
    /// at that point, never newer than the oldest kube-apiserver.
    pub version: KubeVersion,
    /// Why the rotation happens here.
    pub reason: String,
    /// In replacement order.
    pub slots: Vec<Slot>,
    pub estimate: Estimate,
}

/// One node replaced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Slot {
    /// The node this slot replaces, when `existing`; otherwise the node an
    /// earlier rotation of this plan replaced, whose replacement this slot
    /// replaces in turn (it has no name yet).
    pub node: String,
    pub existing: bool,
    /// The new node is launched in this zone.
    pub zone: Option<String>,
    pub from: KubeVersion,
    pub to: KubeVersion,
}

/// How long rotations take, from the per-slot assumptions in
/// `plan::estimate`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Estimate {
    pub slots: u32,
    /// Slots that run at once.
    pub parallel_slots: u32,
    /// Rounds of `parallelSlots` slots.
    pub waves: u32,
    pub seconds: u64,
}

/// A worker no configured pool covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnpooledWorker {
    pub name: String,
    pub kubelet: KubeVersion,
    /// A pool label with no pool settings behind it, if the node has one.
    pub pool: Option<String>,
}

/// One step of the plan, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Step {
    /// Rotation `rotation` (1-based) of pool `pool`.
    #[serde(rename_all = "camelCase")]
    Rotate { pool: String, rotation: usize },
    /// Hop `hop` (1-based).
    #[serde(rename_all = "camelCase")]
    Hop { hop: usize },
}

/// What a warning is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum WarningKind {
    /// The current or target minor is out of support, unreleased or unknown.
    SupportWindow,
    /// An intermediate minor the release table does not know.
    UnknownIntermediateVersion,
    /// Kubelets go through a hop at the widest skew the policy allows.
    KubeletAtSkewLimit,
    /// Workers the plan cannot replace stay behind the control plane.
    WorkersLeftBehind,
    /// Workers whose pool label has no pool settings.
    PoolNotConfigured,
    /// An earlier run stopped mid-hop.
    ControlPlaneMidUpgrade,
    /// The cluster breaks the skew policy now, in a way the plan repairs
    /// (or cannot repair, when it says so).
    CurrentSkew,
    /// kubeadm before v1.28 upgrades kube-proxy with the first control-plane
    /// node, one minor ahead of the other kube-apiservers for a while.
    KubeProxyAheadDuringHop,
    /// A control-plane node is NotReady; kubeadm's preflight will refuse.
    ControlPlaneNotReady,
}

/// Something the operator should know; never blocks the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Warning {
    pub kind: WarningKind,
    pub message: String,
}

/// A node and its kubelet version, for refusals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeKubelet {
    pub node: String,
    pub kubelet: KubeVersion,
}

fn list_nodes(nodes: &[NodeKubelet]) -> String {
    nodes
        .iter()
        .map(|n| format!("{} (kubelet {})", n.node, n.kubelet))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why no plan can be made. Nothing has been touched when this is returned.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PlanRefusal {
    #[error(
        "the inventory has no control-plane node; kubesurge upgrades kubeadm clusters and needs \
         to see their control-plane nodes (labelled node-role.kubernetes.io/control-plane)"
    )]
    NoControlPlane,

    #[error(
        "the version of {component} on control-plane node {node} is unknown (static pod missing \
         or its image tag unreadable); kubesurge plans only from known versions"
    )]
    UnknownComponentVersion { node: String, component: Component },

    #[error(
        "target {target} is in another major version than the control plane ({current}); \
         kubesurge upgrades within major version 1 only"
    )]
    OtherMajor {
        target: KubeVersion,
        current: KubeVersion,
    },

    #[error(
        "target {target} is older than {component} {running} on {node}: downgrades are not \
         supported (kubeadm cannot roll a control plane back); pick a target of at least {running}"
    )]
    Downgrade {
        target: KubeVersion,
        running: KubeVersion,
        node: String,
        component: Component,
    },

    #[error(
        "the cluster already breaks the version-skew policy in a way no plan repairs: {}",
        violations.join("; ")
    )]
    IrreparableSkew { violations: Vec<String> },

    #[error(
        "workers in no pool would break the version-skew policy when the control plane reaches \
         {limit_reached_at}, and kubesurge cannot replace them: {}; put them in a pool (a pool \
         selector that matches them) or upgrade them first",
        list_nodes(nodes)
    )]
    UnpooledWorkersTooOld {
        nodes: Vec<NodeKubelet>,
        limit_reached_at: KubeVersion,
    },

    #[error(
        "pool {pool} must be rotated but its budget allows no slot: maxSurge {max_surge} and \
         maxUnavailable {max_unavailable} both resolve to 0 for its {size} nodes"
    )]
    ZeroBudget {
        pool: String,
        max_surge: Budget,
        max_unavailable: Budget,
        size: u32,
    },

    #[error("no legal path: at \"{step}\" the cluster would break the skew policy: {}", violations.join("; "))]
    NoLegalPath {
        step: String,
        violations: Vec<String>,
    },
}
