//! Validated settings: plain data, every default filled in. Only the
//! validator in `schema` builds these from a file, so holding a `Settings`
//! means every rule of the configuration holds.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;

use super::Budget;

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
/// Default `controlPlane.ssh.port`.
pub const DEFAULT_SSH_PORT: u16 = 22;

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

    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|pool| pool.name == name)
    }
}

/// How commands reach control-plane nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControlPlane {
    /// `controlPlane.exec`; `None` when not configured (only `plan` works).
    pub exec: Option<ExecMethod>,
    pub ssh: Ssh,
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

/// `controlPlane.ssh`. Paths are kept as written (`~` is expanded where the
/// connection is made, not here: settings do no I/O).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ssh {
    pub user: Option<String>,
    pub identity_file: Option<String>,
    pub known_hosts: Option<String>,
    pub port: u16,
}

impl Default for Ssh {
    fn default() -> Self {
        Ssh {
            user: None,
            identity_file: None,
            known_hosts: None,
            port: DEFAULT_SSH_PORT,
        }
    }
}

/// A pool of workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    /// DNS label, unique among pools.
    pub name: String,
    /// Node labels that make a node a member (all must match). Never empty.
    pub selector: BTreeMap<String, String>,
    pub provider: PoolProvider,
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

/// How a pool launches instances.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolProvider {
    Aws(AwsPool),
    Sim(SimPool),
}

impl PoolProvider {
    /// `aws` or `sim`, as in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            PoolProvider::Aws(_) => "aws",
            PoolProvider::Sim(_) => "sim",
        }
    }
}

/// `pools[].aws`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsPool {
    pub region: String,
    pub launch_template: LaunchTemplate,
    pub image: ImageSource,
    /// Subnets a replacement may use; `None` = the old node's subnet.
    pub subnets: Option<Vec<String>>,
}

/// `pools[].aws.launchTemplate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchTemplate {
    pub template: LaunchTemplateRef,
    pub version: LaunchTemplateVersion,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LaunchTemplateRef {
    Name(String),
    /// `lt-…`
    Id(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaunchTemplateVersion {
    /// `$Default` (the default).
    Default,
    /// `$Latest`.
    Latest,
    Number(u64),
}

impl LaunchTemplateVersion {
    /// As EC2 spells it: `$Default`, `$Latest`, `3`.
    pub fn as_ec2(self) -> String {
        match self {
            LaunchTemplateVersion::Default => "$Default".to_string(),
            LaunchTemplateVersion::Latest => "$Latest".to_string(),
            LaunchTemplateVersion::Number(n) => n.to_string(),
        }
    }
}

/// `pools[].aws.image`: how to find the image for a Kubernetes version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageSource {
    /// One fixed image for every version (`id: ami-…`).
    Id(String),
    /// DescribeImages by owners and filters; the newest match wins. Filter
    /// values may contain [`VERSION_PLACEHOLDER`].
    Lookup {
        owners: Vec<String>,
        /// Filter name → values (EC2 takes several values per filter).
        filters: BTreeMap<String, Vec<String>>,
    },
}

/// Replaced in image filter values by the target version.
pub const VERSION_PLACEHOLDER: &str = "{version}";

/// `pools[].sim`: the simulated cloud.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimPool {
    /// `http(s)://host:port` of the simulated cloud.
    pub endpoint: String,
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
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            timeout: DEFAULT_DRAIN_TIMEOUT,
            on_timeout: OnDrainTimeout::Fail,
            unmanaged_pods: UnmanagedPods::Fail,
        }
    }
}

/// `drain.onTimeout`: what happens to a node whose drain ran out of time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDrainTimeout {
    /// Leave it cordoned and fail the slot, naming the blocking pods and PDBs.
    Fail,
    /// Delete the remaining pods, ignoring PDBs (logged loudly, reported).
    Force,
    /// Uncordon it and leave it in place.
    Skip,
}

/// `drain.unmanagedPods`: pods without a controller would not come back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnmanagedPods {
    /// Refuse to drain a node that runs one.
    Fail,
    /// Evict them anyway.
    Delete,
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

/// `window`: a weekly maintenance window in a time zone. The window opens
/// at `start` on each of `days`; when `end` is not after `start` it closes
/// at `end` the next day (`22:00`–`04:00`).
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// Sorted Monday first, no duplicates, never empty.
    pub days: Vec<Weekday>,
    pub start: Time,
    pub end: Time,
    pub time_zone: TimeZone,
    /// The IANA name as written (`Europe/Berlin`).
    pub time_zone_name: String,
}

impl Window {
    /// Whether `at` falls inside the window, as [`crate::window::position`]
    /// decides it (daylight-saving gaps and folds included), so that the
    /// settings and the run never disagree. A window whose position cannot
    /// be computed (no days, never opens) contains nothing.
    pub fn contains(&self, at: Timestamp) -> bool {
        matches!(
            crate::window::position(self, at),
            Ok(crate::window::Position::Inside { .. })
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(days: &[Weekday], start: Time, end: Time) -> Window {
        Window {
            days: days.to_vec(),
            start,
            end,
            time_zone: TimeZone::get("Europe/Berlin").unwrap(),
            time_zone_name: "Europe/Berlin".into(),
        }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn window_is_read_in_its_time_zone() {
        let w = window(
            &[Weekday::Saturday, Weekday::Sunday],
            Time::constant(2, 0, 0, 0),
            Time::constant(6, 0, 0, 0),
        );
        // 2025-06-07 is a Saturday; Berlin is UTC+2 in summer.
        assert!(w.contains(at("2025-06-07T00:00:00Z")), "02:00 Berlin");
        assert!(w.contains(at("2025-06-07T03:59:59Z")), "05:59:59 Berlin");
        assert!(
            !w.contains(at("2025-06-07T04:00:00Z")),
            "06:00 Berlin is the end"
        );
        assert!(!w.contains(at("2025-06-06T23:59:59Z")), "01:59:59 Berlin");
        assert!(!w.contains(at("2025-06-09T01:00:00Z")), "Monday 03:00");
    }

    #[test]
    fn overnight_window_closes_the_next_day() {
        let w = window(
            &[Weekday::Friday],
            Time::constant(22, 0, 0, 0),
            Time::constant(4, 0, 0, 0),
        );
        // 2025-01-10 is a Friday; Berlin is UTC+1 in winter.
        assert!(w.contains(at("2025-01-10T21:30:00Z")), "Friday 22:30");
        assert!(w.contains(at("2025-01-11T02:00:00Z")), "Saturday 03:00");
        assert!(!w.contains(at("2025-01-11T03:00:00Z")), "Saturday 04:00");
        assert!(
            !w.contains(at("2025-01-10T02:00:00Z")),
            "Friday 03:00: Thursday did not open"
        );
    }
}
