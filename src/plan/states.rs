//! Every cluster state a plan passes through, replayed from the plan alone.
//!
//! The planner checks each of these states against the skew policy before
//! it hands out a plan; the engines and tests can do the same. A state is
//! recorded after every single version change that can be observed from
//! outside:
//!
//! - pass 1 of a hop, per control-plane node in order: after its
//!   kube-apiserver, after its kube-controller-manager, after its
//!   kube-scheduler (kubeadm rewrites the static pods in that order), and
//!   after the kube-proxy DaemonSet when this node's kubeadm run upgrades
//!   the add-ons;
//! - pass 2 of a hop, per control-plane node in order: after its kubelet.
//!   Kubelets come only after every kube-apiserver, because a kubelet must
//!   never be newer than the *oldest* kube-apiserver (design §7);
//! - per slot of a worker rotation: the moment both the old node and its
//!   new replacement run (new nodes join before old ones leave), then the
//!   pool with every slot done. Any moment of a rotation — whatever slots
//!   run in parallel — has kubelets of only these two versions, so these
//!   states cover every combination the skew policy can tell apart.
//!
//! New nodes have no name yet; their states call them
//! `"<replaced node> (replacement <rotation>)"`.

use std::collections::BTreeMap;

use super::types::{ControlPlaneNodeVersions, Hop, Plan, Rotation, Step};
use crate::version::{
    ClusterVersions, ControlPlaneMember, KubeVersion, NodeVersions, Rule, Violation, check,
};

/// From this kubeadm minor on, kubeadm upgrades the kube-proxy and CoreDNS
/// add-ons only once every control-plane node is upgraded (by the last
/// one). Older kubeadm did it in `kubeadm upgrade apply` on the first node,
/// so kube-proxy ran one minor ahead of the other kube-apiservers until
/// they were upgraded.
pub const KUBEADM_LATE_ADDONS_FROM_MINOR: u64 = 28;

/// One moment of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanState {
    /// What has just happened ("current cluster" for the first state).
    pub step: String,
    /// The hop this state is part of (1-based).
    pub hop: Option<usize>,
    pub versions: ClusterVersions,
    /// Set during hops run by kubeadm older than v1.28: kube-proxy at this
    /// version may be newer than the kube-apiservers not yet upgraded. The
    /// Kubernetes project shipped that order until v1.28; it is reported as
    /// a warning, not treated as a violation.
    pub kube_proxy_ahead: Option<KubeVersion>,
}

impl PlanState {
    /// Every violation of the skew policy in this state, except the
    /// kube-proxy ordering of kubeadm < v1.28 (see [`Self::tolerated`]).
    pub fn violations(&self) -> Vec<Violation> {
        self.split_violations().0
    }

    /// The violations that kubeadm < v1.28's add-on order causes in this
    /// state.
    pub fn tolerated(&self) -> Vec<Violation> {
        self.split_violations().1
    }

    /// `(violations, tolerated)` with one run of the policy check.
    pub fn split_violations(&self) -> (Vec<Violation>, Vec<Violation>) {
        let (tolerated, violations) = check(&self.versions)
            .into_iter()
            .partition(|v| self.is_tolerated(v));
        (violations, tolerated)
    }

    fn is_tolerated(&self, v: &Violation) -> bool {
        self.kube_proxy_ahead.is_some_and(|ahead| {
            v.rule == Rule::KubeProxyNewerThanApiserver && v.version.minor == ahead.minor
        })
    }
}

#[derive(Clone)]
struct SimWorker {
    /// The node first seen in the pool whose place this node holds.
    lineage: String,
    name: String,
    kubelet: KubeVersion,
}

struct Sim<'p> {
    plan: &'p Plan,
    control_plane: Vec<ControlPlaneNodeVersions>,
    kube_proxy: Option<KubeVersion>,
    pools: BTreeMap<String, Vec<SimWorker>>,
    states: Vec<PlanState>,
    hop: Option<usize>,
    kube_proxy_ahead: Option<KubeVersion>,
}

impl Sim<'_> {
    fn versions(&self) -> ClusterVersions {
        let kube_proxy = self.kube_proxy;
        let mut nodes: Vec<NodeVersions> = self
            .control_plane
            .iter()
            .map(|n| NodeVersions {
                node: n.name.clone(),
                kubelet: n.kubelet,
                kube_proxy,
            })
            .collect();
        for pool in &self.plan.pools {
            for w in self.pools.get(&pool.name).into_iter().flatten() {
                nodes.push(NodeVersions {
                    node: w.name.clone(),
                    kubelet: w.kubelet,
                    kube_proxy,
                });
            }
        }
        for w in &self.plan.unpooled_workers {
            nodes.push(NodeVersions {
                node: w.name.clone(),
                kubelet: w.kubelet,
                kube_proxy,
            });
        }
        ClusterVersions {
            control_plane: self
                .control_plane
                .iter()
                .map(|n| ControlPlaneMember {
                    node: n.name.clone(),
                    apiserver: Some(n.apiserver),
                    controller_manager: Some(n.controller_manager),
                    scheduler: Some(n.scheduler),
                })
                .collect(),
            nodes,
            kubectl: None,
        }
    }

    fn record(&mut self, step: String) {
        let versions = self.versions();
        self.states.push(PlanState {
            step,
            hop: self.hop,
            versions,
            kube_proxy_ahead: self.kube_proxy_ahead,
        });
    }

    fn hop(&mut self, hop: &Hop) {
        let n = hop.number;
        let to = hop.to;
        self.hop = Some(n);
        self.kube_proxy_ahead = (to.minor < KUBEADM_LATE_ADDONS_FROM_MINOR).then_some(to);
        // Pass 1: control-plane components, node by node.
        for hn in hop.nodes.iter().filter(|hn| hn.upgrade_components) {
            let Some(i) = self.control_plane.iter().position(|c| c.name == hn.node) else {
                continue;
            };
            self.control_plane[i].apiserver = to;
            self.record(format!("hop {n}: kube-apiserver on {} at {to}", hn.node));
            self.control_plane[i].controller_manager = to;
            self.record(format!(
                "hop {n}: kube-controller-manager on {} at {to}",
                hn.node
            ));
            self.control_plane[i].scheduler = to;
            self.record(format!("hop {n}: kube-scheduler on {} at {to}", hn.node));
            if hop.addons_after_node.as_deref() == Some(hn.node.as_str())
                && let Some(change) = hop.kube_proxy
                && change.from != change.to
            {
                self.kube_proxy = Some(change.to);
                self.record(format!(
                    "hop {n}: kube-proxy at {} (kubeadm on {})",
                    change.to, hn.node
                ));
            }
        }
        // Pass 2: kubelets, once every kube-apiserver is at `to`.
        for hn in hop.nodes.iter().filter(|hn| hn.upgrade_kubelet) {
            let Some(i) = self.control_plane.iter().position(|c| c.name == hn.node) else {
                continue;
            };
            self.control_plane[i].kubelet = to;
            self.record(format!("hop {n}: kubelet on {} at {to}", hn.node));
        }
        self.hop = None;
        self.kube_proxy_ahead = None;
    }

    fn rotate(&mut self, pool: &str, rotation: &Rotation) {
        let r = rotation.number;
        for slot in &rotation.slots {
            let Some(workers) = self.pools.get_mut(pool) else {
                return;
            };
            let Some(i) = workers.iter().position(|w| w.lineage == slot.node) else {
                continue;
            };
            let old = workers[i].clone();
            let new = SimWorker {
                lineage: old.lineage.clone(),
                name: format!("{} (replacement {r})", old.lineage),
                kubelet: rotation.version,
            };
            workers.insert(i + 1, new);
            self.record(format!(
                "pool {pool} rotation {r}: replacement of {} joined at {} while {} runs {}",
                old.lineage, rotation.version, old.name, old.kubelet
            ));
            if let Some(workers) = self.pools.get_mut(pool) {
                workers.remove(i);
            }
        }
        self.record(format!(
            "pool {pool} rotation {r}: done, kubelets at {}",
            rotation.version
        ));
    }
}

/// Every state `plan` passes through, starting with the current cluster.
pub fn plan_states(plan: &Plan) -> Vec<PlanState> {
    let pools = plan
        .pools
        .iter()
        .map(|p| {
            let workers = p
                .nodes
                .iter()
                .map(|n| SimWorker {
                    lineage: n.name.clone(),
                    name: n.name.clone(),
                    kubelet: n.kubelet,
                })
                .collect();
            (p.name.clone(), workers)
        })
        .collect();
    let mut sim = Sim {
        plan,
        control_plane: plan.current.control_plane.clone(),
        kube_proxy: plan.current.kube_proxy,
        pools,
        states: Vec::new(),
        hop: None,
        kube_proxy_ahead: None,
    };
    sim.record("current cluster".to_string());
    for step in &plan.sequence {
        match step {
            Step::Hop { hop } => {
                if let Some(h) = plan.hops.iter().find(|h| h.number == *hop) {
                    sim.hop(h);
                }
            }
            Step::Rotate { pool, rotation } => {
                let found = plan
                    .pools
                    .iter()
                    .find(|p| &p.name == pool)
                    .and_then(|p| p.rotations.iter().find(|r| r.number == *rotation));
                if let Some(r) = found {
                    sim.rotate(pool, r);
                }
            }
        }
    }
    sim.states
}
