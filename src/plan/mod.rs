//! The planner: a pure function of (inventory, target, pools) → plan.
//!
//! # What it decides
//!
//! - **Control-plane hops**, one minor each, from the control plane's
//!   version — the *oldest* kube-apiserver, so a plan after a crashed run
//!   finishes the hop in progress — to the target. Intermediate hops go to
//!   the newest patch the release table knows for their minor (or a newer
//!   one already running); the last hop goes to the target. A target in the
//!   current minor is one patch hop. Before the next minor, a *completion*
//!   hop brings lagging control-plane components or kubelets to the current
//!   minor when they could not stay within policy through it.
//! - **Worker-pool rotations**, as few and as late as the skew policy
//!   allows. A pool waits while its oldest kubelet stays within policy
//!   through the next hop; just before the hop that would put the newest
//!   kube-apiserver more than 3 minors ahead of it (2 for kubelets older than
//!   v1.25) the pool is replaced at the control plane's version of that
//!   moment; every pool with kubelets older than the final version is
//!   replaced once after the last hop. For kubelets at v1.25 or later and a
//!   gap of `g` minors between the oldest kubelet and the target, that is
//!   `ceil(g / 3)` rotations (one when `g = 0` and a patch is behind).
//! - **Refusals** ([`PlanRefusal`]): downgrades, another major, a cluster
//!   that breaks the skew policy in a way no forward plan repairs, workers in
//!   no pool that would fall out of policy, a pool that must rotate with a
//!   zero budget, and any plan with a state outside the policy (the planner
//!   replays every state with [`plan_states`] and checks it).
//!
//! # JSON (`kubesurge plan -o json`): a stable interface
//!
//! Versions are strings `vMAJOR.MINOR.PATCH`; budgets are strings (`"25%"`,
//! `"1"`); timestamps RFC 3339. Field names are camelCase; new fields may be
//! added, existing ones keep their meaning.
//!
//! ```text
//! Plan
//!   current                      versions when planning
//!     controlPlaneVersion        oldest kube-apiserver: the control plane's version
//!     newestApiserver            newest kube-apiserver (≠ above when mid-upgrade)
//!     controlPlane[]             per control-plane node, by name:
//!       name, apiserver, controllerManager, scheduler, kubelet   versions
//!       etcd                     etcd image tag, or null (external etcd)
//!     kubeProxy                  kube-proxy DaemonSet version, or null
//!     coredns                    CoreDNS image tag, or null
//!   requestedTarget              the version asked for, or null (stay)
//!   finalVersion                 the control plane's version when done
//!   nothingToDo                  true: no hop, no rotation
//!   hops[]                       in order
//!     number                     1-based
//!     kind                       "minor" | "patch" | "completion"
//!     from                       control-plane version before (oldest apiserver)
//!     to                         every control-plane component and kubelet after
//!     nodes[]                    control-plane nodes in the order the hop works on them
//!       node
//!       kubeadm                  "apply" | "node" | null (components already at `to`)
//!       upgradeComponents        pass 1: kubeadm on this node
//!       upgradeKubelet           pass 2: drain, kubelet+kubectl, uncordon
//!     addonsAfterNode            node whose kubeadm run upgrades kube-proxy and
//!                                CoreDNS (kubeadm ≥ v1.28: the last, older: the
//!                                first), or null
//!     kubeProxy                  {from, to} or null (no kube-proxy)
//!     components[]               the kubeadm-style table, like kubeadm's own
//!                                UpgradePlan JSON:
//!       name                     "kube-apiserver" | "kube-controller-manager" |
//!                                "kube-scheduler" | "etcd" | "kubelet" |
//!                                "kube-proxy" | "CoreDNS"
//!       nodeName                 or null for cluster-wide add-ons
//!       currentVersion, newVersion   strings ("managed by kubeadm",
//!                                "upgraded by kubeadm", "unchanged" where
//!                                kubeadm decides or nothing changes)
//!   pools[]                      every configured pool, in configuration order
//!     name, size                 size = nodes now
//!     nodes[]                    in replacement order: {name, zone, kubelet, created}
//!     maxSurge, maxUnavailable   as configured
//!     surge, unavailable         resolved against size (surge rounds up,
//!                                unavailable down)
//!     rotations[]                in order; empty = the pool stays
//!       number                   1-based within the pool
//!       afterHop                 hop number, or null = before the first hop
//!                                (the only step when there are no hops)
//!       version                  kubelet version of the new nodes
//!       reason                   why here, in words
//!       slots[]                  in replacement order
//!         node                   node replaced; when existing = false, the node
//!                                whose replacement (from an earlier rotation)
//!                                is replaced in turn
//!         existing, zone, from, to
//!       estimate                 {slots, parallelSlots, waves, seconds}
//!     estimate                   all the pool's rotations together
//!   unpooledWorkers[]            {name, kubelet, pool}: pool = a pool label with
//!                                no pool settings, or null
//!   sequence[]                   the order things run in:
//!                                {"kind":"hop","hop":N} |
//!                                {"kind":"rotate","pool":P,"rotation":N}
//!   warnings[]                   {kind, message}; kind is one of
//!                                "support-window", "unknown-intermediate-version",
//!                                "kubelet-at-skew-limit", "workers-left-behind",
//!                                "pool-not-configured", "control-plane-mid-upgrade",
//!                                "current-skew", "kube-proxy-ahead-during-hop",
//!                                "control-plane-not-ready"
//! ```

mod budget;
mod build;
pub mod estimate;
mod order;
mod render;
mod states;
mod types;

pub use budget::Budget;
pub use order::{replacement_order, spread_oldest_first};
pub use states::{KUBEADM_LATE_ADDONS_FROM_MINOR, PlanState, plan_states};
pub use types::*;

use crate::inventory::Inventory;
use crate::version::KubeVersion;

/// What the planner needs to know of a pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolInput {
    pub name: String,
    pub max_surge: Budget,
    pub max_unavailable: Budget,
}

/// The planner's input.
#[derive(Clone, Debug)]
pub struct PlanRequest<'a> {
    pub inventory: &'a Inventory,
    /// `None`: stay at the current control-plane version.
    pub target: Option<KubeVersion>,
    pub pools: &'a [PoolInput],
    /// For the support window.
    pub today: jiff::civil::Date,
}

/// Make the plan.
pub fn plan(request: &PlanRequest<'_>) -> Result<Plan, PlanRefusal> {
    build::build(request)
}

/// The plan as the table `kubesurge plan` prints.
pub fn render_table(plan: &Plan) -> String {
    render::render(plan)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
