//! Tag keys kubesurge puts on the instances it launches. Resuming after a
//! crash and `gc` depend on them: they are part of the contract.

/// `cluster.name` of the config. Providers only ever touch instances with it.
pub const CLUSTER: &str = "kubesurge.io/cluster";
/// The pool the instance belongs to.
pub const POOL: &str = "kubesurge.io/pool";
/// The run that launched it.
pub const RUN: &str = "kubesurge.io/run";
/// The name of the node it replaces.
pub const REPLACES: &str = "kubesurge.io/replaces";
/// The idempotency key of the launch, [`crate::SlotKey::tag_value`].
pub const SLOT: &str = "kubesurge.io/slot";
/// The conventional display name.
pub const NAME: &str = "Name";
