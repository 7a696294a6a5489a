//! Plain data exchanged with providers.

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{Sensitive, tags};

/// A provider's instance id (`i-0abc…` on AWS).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InstanceId(pub String);

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for InstanceId {
    fn from(s: &str) -> Self {
        InstanceId(s.to_string())
    }
}

/// Which pool of which cluster an operation is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PoolRef {
    /// `cluster.name` from the config; every instance carries it as a tag.
    pub cluster: String,
    /// The pool's name.
    pub pool: String,
}

/// The idempotency key of one launch: one old node replaced by one run, in
/// a numbered attempt (a replacement that never joined is retried with the
/// next attempt number).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SlotKey {
    pub run_id: String,
    pub old_node: String,
    pub attempt: u32,
}

impl SlotKey {
    /// The value of the `kubesurge.io/slot` tag: `<run>.<old node>.<attempt>`.
    pub fn tag_value(&self) -> String {
        format!("{}.{}.{}", self.run_id, self.old_node, self.attempt)
    }
}

/// Everything a provider needs to launch one replacement instance.
#[derive(Clone, Debug, Serialize)]
pub struct LaunchRequest {
    pub pool: PoolRef,
    pub slot: SlotKey,
    /// Image id from [`crate::CloudProvider::resolve_image`].
    pub image: String,
    /// Zone of the node being replaced; the new instance goes there.
    pub zone: String,
    /// Subnet (or equivalent placement) of the node being replaced, if known.
    pub subnet: Option<String>,
    /// Cloud-init / user data. Holds a bootstrap token: never logged.
    pub user_data: Sensitive<String>,
    /// Name the instance carries (`Name` tag) and the node will register as.
    pub node_name: String,
    /// Extra tags beyond the ones derived from `pool` and `slot` (see
    /// [`LaunchRequest::tags`]).
    pub extra_tags: BTreeMap<String, String>,
}

impl LaunchRequest {
    /// Every tag the launched instance (and its volumes) carries: the extra
    /// tags, then the ones resuming and `gc` rely on, which win over an
    /// extra tag of the same key: cluster, pool, run, slot, the node it
    /// replaces, and its `Name`.
    pub fn tags(&self) -> BTreeMap<String, String> {
        let mut all = self.extra_tags.clone();
        all.extend([
            (tags::CLUSTER.to_string(), self.pool.cluster.clone()),
            (tags::POOL.to_string(), self.pool.pool.clone()),
            (tags::RUN.to_string(), self.slot.run_id.clone()),
            (tags::SLOT.to_string(), self.slot.tag_value()),
            (tags::REPLACES.to_string(), self.slot.old_node.clone()),
            (tags::NAME.to_string(), self.node_name.clone()),
        ]);
        all
    }
}

/// Lifecycle state, reduced to what callers branch on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    Pending,
    Running,
    Stopping,
    Stopped,
    ShuttingDown,
    Terminated,
}

impl InstanceState {
    /// True for states from which the instance will never serve again.
    pub fn is_going_away(self) -> bool {
        matches!(
            self,
            InstanceState::ShuttingDown | InstanceState::Terminated
        )
    }
}

/// An instance as the provider reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub id: InstanceId,
    pub state: InstanceState,
    pub zone: String,
    pub subnet: Option<String>,
    pub image: Option<String>,
    pub private_ip: Option<String>,
    /// What the node's kubelet reports as `spec.providerID`.
    pub provider_id: String,
    pub launched_at: Option<Timestamp>,
    pub tags: BTreeMap<String, String>,
}

impl Instance {
    /// The value of a tag, if present.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }
}

/// Answer of [`crate::CloudProvider::delete`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeleteStatus {
    /// Termination was requested or is running; call again.
    InProgress,
    /// The instance is terminated or does not exist.
    Gone,
}

/// A bootable image for a pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub id: String,
    pub name: Option<String>,
    pub created: Option<Timestamp>,
}

/// What the core knows of a node when it asks for its instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRef {
    pub name: String,
    pub provider_id: Option<String>,
    pub internal_ip: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(cluster: &str, slot: &str) -> LaunchRequest {
        LaunchRequest {
            pool: PoolRef {
                cluster: cluster.into(),
                pool: "general".into(),
            },
            slot: SlotKey {
                run_id: "run-1".into(),
                old_node: slot.into(),
                attempt: 1,
            },
            image: "ami-1".into(),
            zone: "us-east-1a".into(),
            subnet: None,
            user_data: Sensitive::new(String::new()),
            node_name: "general-x".into(),
            extra_tags: BTreeMap::from([
                (tags::CLUSTER.to_string(), "spoofed".to_string()),
                ("team".to_string(), "a".to_string()),
            ]),
        }
    }

    #[test]
    fn derived_tags_win_over_extra_tags() {
        let t = request("prod", "node-1").tags();
        assert_eq!(t[tags::CLUSTER], "prod");
        assert_eq!(t[tags::POOL], "general");
        assert_eq!(t[tags::RUN], "run-1");
        assert_eq!(t[tags::SLOT], "run-1.node-1.1");
        assert_eq!(t[tags::REPLACES], "node-1");
        assert_eq!(t[tags::NAME], "general-x");
        assert_eq!(t["team"], "a");
        assert_eq!(t.len(), 7);
    }
}

/// What a provider checks permissions with (`CloudProvider::check_permissions`):
/// the launch a run would request (its user data a placeholder: no token
/// is minted to check), and an instance the run would terminate.
#[derive(Clone, Debug)]
pub struct PermissionProbe {
    pub launch: LaunchRequest,
    pub terminate: Option<InstanceId>,
}

/// One permission a run needs, as the cloud answered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PermissionCheck {
    /// The provider's name for it (`ec2:RunInstances`).
    pub action: String,
    /// How the cloud was asked (`a dry run`, `IAM's policy simulator`).
    pub asked: String,
    pub outcome: PermissionOutcome,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PermissionOutcome {
    /// The call would have succeeded.
    Granted,
    /// The credentials may not make it; the cloud's words.
    Denied { message: String },
    /// The answer said neither (an error, an unreachable endpoint).
    Unknown { message: String },
}
