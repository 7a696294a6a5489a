//! Validated settings: plain data, every default filled in. Only the
//! validator in `schema` builds these from a file, so holding a `Settings`
//! means every rule of the configuration holds.

use std::collections::BTreeMap;
use std::time::Duration;

use kubesurge_provider::config::FieldPath;
use serde_json::Value;

use crate::exec::SshSettings;
use crate::kube::drain::{LocalStorage, OnDrainTimeout, UnmanagedPods};
use crate::plan::Budget;
use crate::window::Window;

/// Default `drain.timeout`.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Default `join.tokenTTL`: longer than the default `health.newNodeTimeout`,
/// so the token outlives the whole wait for the node to join.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(20 * 60);
/// Default `health.newNodeTimeout`.
pub const DEFAULT_NEW_NODE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Default `health.settle`.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(30);
/// Default `maxSurge`: one new node at a time.
pub const DEFAULT_MAX_SURGE: Budget = Budget::Count(1);
/// Default `maxUnavailable`: never cordon before the replacement is Ready.
pub const DEFAULT_MAX_UNAVAILABLE: Budget = Budget::Count(0);

/// Everything a run needs to know that is not in the world.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// `cluster.name`. Required in a config file; `None` only when there is
    /// no file and no `--cluster-name`. Goes into tags, the lock and events.
    pub cluster_name: Option<String>,
    pub control_plane: ControlPlane,
    pub pools: Vec<Pool>,
    pub drain: Drain,
    pub join: Join,
    pub health: Health,
    /// Mutations only inside it; `None` = any time.
    pub window: Option<Window>,
}

impl Default for Settings {
    /// The settings without a config file.
    fn default() -> Self {
        Settings {
            cluster_name: None,
            control_plane: ControlPlane::default(),
            pools: Vec::new(),
            drain: Drain::default(),
            join: Join::default(),
            health: Health::default(),
            window: None,
        }
    }
}

impl Settings {
    /// Each pool's name and label selector, in config order: what the
    /// inventory needs to assign nodes to pools (first match wins).
    pub fn pool_selectors(&self) -> Vec<(String, BTreeMap<String, String>)> {
        self.pools
            .iter()
            .map(|pool| (pool.name.clone(), pool.selector.clone()))
            .collect()
    }

    /// What the planner needs of each pool, in config order.
    pub fn pool_inputs(&self) -> Vec<crate::plan::PoolInput> {
        self.pools
            .iter()
            .map(|pool| crate::plan::PoolInput {
                name: pool.name.clone(),
                max_surge: pool.max_surge,
                max_unavailable: pool.max_unavailable,
            })
            .collect()
    }

    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|pool| pool.name == name)
    }
}

/// How commands reach control-plane nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlPlane {
    /// `controlPlane.exec`; `None` when not configured (only `plan` works).
    pub exec: Option<ExecMethod>,
    pub ssh: SshSettings,
    /// `controlPlane.node`: with `exec: local`, the control-plane node
    /// kubesurge runs on (checked against this machine before any change).
    pub node: Option<String>,
    /// `controlPlane.gateTimeout`: how long a control-plane node may take,
    /// after its command, to prove itself (static pods at the target and
    /// Ready, every etcd member Ready, the API server ready).
    pub gate_timeout: Duration,
}

impl Default for ControlPlane {
    fn default() -> Self {
        ControlPlane {
            exec: None,
            ssh: SshSettings::default(),
            node: None,
            gate_timeout: crate::controlplane::phase::DEFAULT_GATE_TIMEOUT,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecMethod {
    /// AWS Systems Manager `SendCommand`.
    Ssm,
    Ssh,
    /// Run on this machine (the tool runs on the control-plane node).
    Local,
    /// The simulated machines of `kubesurge sandbox`, reached through the
    /// sim cloud of the pools (`provider: sim`).
    Sim,
}

/// A pool of workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    /// DNS label, unique among pools.
    pub name: String,
    /// Node labels that make a node a member (all must match). Never empty.
    pub selector: BTreeMap<String, String>,
    pub provider: ProviderSection,
    pub max_surge: Budget,
    pub max_unavailable: Budget,
    /// Labels new nodes register with. Always contains the selector (it
    /// defaults to the selector), so new nodes belong to the pool.
    pub node_labels: BTreeMap<String, String>,
    pub node_taints: Vec<Taint>,
    /// Flags of the new nodes' kubelets (`cloud-provider: external`), flag
    /// name without dashes → value, into the JoinConfiguration.
    pub kubelet_extra_args: BTreeMap<String, String>,
}

/// How a pool launches instances: `pools[].provider` and the section of
/// that name (`pools[N].<provider>`), kept as written. The provider's crate checked
/// it when the settings were validated, and reads it when the binary wires
/// the pool up (`src/wiring.rs`): settings know no provider's fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderSection {
    /// The provider's name as configured, also the section's key.
    pub kind: String,
    /// The section, as parsed from the YAML.
    pub config: Value,
    /// Where the section is (`pools[0].<provider>`), for the provider's
    /// messages.
    pub path: FieldPath,
}

/// A taint new nodes register with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    /// Empty when the taint has no value.
    pub value: String,
    pub effect: TaintEffect,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl TaintEffect {
    pub fn as_str(self) -> &'static str {
        match self {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        }
    }
}

/// `drain`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drain {
    pub timeout: Duration,
    pub on_timeout: OnDrainTimeout,
    pub unmanaged_pods: UnmanagedPods,
    pub local_storage: LocalStorage,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            timeout: DEFAULT_DRAIN_TIMEOUT,
            on_timeout: OnDrainTimeout::Fail,
            unmanaged_pods: UnmanagedPods::Fail,
            local_storage: LocalStorage::Fail,
        }
    }
}

/// `join`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Join {
    /// Lifetime of each slot's bootstrap token; longer than
    /// `health.newNodeTimeout`.
    pub token_ttl: Duration,
}

impl Default for Join {
    fn default() -> Self {
        Join {
            token_ttl: DEFAULT_TOKEN_TTL,
        }
    }
}

/// `health`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// How long a new node may take to be Ready at the target version.
    pub new_node_timeout: Duration,
    /// How long the cluster must stay healthy between slots.
    pub settle: Duration,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            new_node_timeout: DEFAULT_NEW_NODE_TIMEOUT,
            settle: DEFAULT_SETTLE,
        }
    }
}
