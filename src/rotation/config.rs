//! What the rotation engine is given: plain data plus the providers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Taint;
use kubesurge_provider::CloudProvider;

use crate::kube::drain::DrainPolicy;
use crate::plan::Budget;

/// How the engine behaves, from validated settings.
#[derive(Clone)]
pub struct EngineConfig {
    /// `cluster.name`: in tags and token descriptions.
    pub cluster: String,
    pub pools: Vec<PoolConfig>,
    pub drain: DrainPolicy,
    pub drain_timeout: Duration,
    pub token_ttl: Duration,
    /// A replacement must be Ready at the target version within this.
    pub new_node_timeout: Duration,
    /// A new node must stay Ready this long before its old node is drained.
    pub settle: Duration,
    /// Launches per slot before the run fails (a node that never joins is
    /// terminated and retried up to this many times in all).
    pub max_launch_attempts: u32,
    /// How long the health gate may hold the window before the run fails.
    pub health_gate_timeout: Duration,
    /// The node this process's own pod runs on (an in-cluster run): its
    /// slot goes last, alone (see `rotation::own_node`).
    pub own_node: Option<String>,
}

/// Default launch attempts per slot.
pub const DEFAULT_LAUNCH_ATTEMPTS: u32 = 3;

/// One pool.
#[derive(Clone)]
pub struct PoolConfig {
    pub name: String,
    /// Labels a node must carry to belong to the pool.
    pub selector: BTreeMap<String, String>,
    pub max_surge: Budget,
    pub max_unavailable: Budget,
    /// Labels and taints new nodes register with.
    pub node_labels: BTreeMap<String, String>,
    pub node_taints: Vec<Taint>,
    /// Flags of the new nodes' kubelets, into their JoinConfiguration.
    pub kubelet_extra_args: BTreeMap<String, String>,
    pub provider: Arc<dyn CloudProvider>,
    /// Bash that prints a new machine's providerID (see the join user data),
    /// from the provider's `ProviderIdRule`.
    pub provider_id_script: String,
    /// The instance id in a node's providerID, in every form the pool's
    /// provider knows (`aws:///<zone>/<id>`, `aws:////<id>`), from the same
    /// rule: to match nodes and instances by id rather than by the text.
    pub instance_id_of: fn(&str) -> Option<&str>,
}

impl PoolConfig {
    /// True when `labels` match the pool's selector.
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.selector.is_empty()
            && self
                .selector
                .iter()
                .all(|(k, v)| labels.get(k).is_some_and(|have| have == v))
    }
}

/// Which workers a run replaces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Criteria {
    /// Replace workers whose kubelet is not at the target version.
    pub outdated: bool,
    /// Replace workers older than this.
    pub max_age: Option<Duration>,
    /// Replace workers whose instance runs another image than the pool's
    /// current one.
    pub stale_image: bool,
    /// Replace every worker of the selected pools.
    pub all: bool,
}
