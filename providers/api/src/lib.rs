//! Contracts between kubesurge and the clouds it launches nodes in.
//!
//! The core depends on this crate only; every provider (`aws`, `sim`)
//! implements [`CloudProvider`] and, where it can reach nodes, [`NodeExec`],
//! and exports a [`ProviderKind`]: its pool configuration (read with
//! [`config`]), its providerID rule. Nothing in the core names a concrete
//! provider: the binary wires them.
//!
//! Every method documents its contract. The conformance kit (feature
//! `conformance`) checks those contracts against a live provider.

pub mod config;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod discovery;
mod error;
mod exec;
pub mod json_schema;
mod kind;
mod room;
mod sensitive;
pub mod tags;
mod types;

pub use discovery::Discovery;
pub use error::{ExecError, ProviderError};
pub use exec::{ExecOutput, ExecRequest, ExecTarget, NodeExec, OutputSink};
pub use kind::{PoolProviderFn, ProviderIdRule, ProviderKind};
pub use room::{RoomFinding, RoomOutcome, RoomProbe};
pub use sensitive::Sensitive;
pub use types::{
    DeleteStatus, Image, Instance, InstanceId, InstanceState, LaunchRequest, NodeRef,
    PermissionCheck, PermissionOutcome, PermissionProbe, PoolRef, SlotKey,
};

use async_trait::async_trait;

/// A cloud that can launch, find and terminate the VMs behind a pool.
///
/// Implementations are cheap to share (`Arc<dyn CloudProvider>`) and safe to
/// call concurrently.
#[async_trait]
pub trait CloudProvider: Send + Sync {
    /// Short provider name, as written in the config (`aws`, `sim`).
    fn name(&self) -> &str;

    /// Every instance this cluster owns in `pool` that is not terminated,
    /// found by the cluster and pool tags and following every page.
    ///
    /// Instances shutting down are included (callers decide what to do with
    /// them); terminated instances are not.
    async fn list(&self, pool: &PoolRef) -> Result<Vec<Instance>, ProviderError>;

    /// Launch one instance for `request.slot`.
    ///
    /// **Idempotent per slot key**: if an instance tagged with this slot
    /// already exists and is not terminated, it is returned and nothing is
    /// launched. A crashed caller that repeats the request after a launch
    /// that it never saw the answer of gets the same instance back.
    async fn launch(&self, request: &LaunchRequest) -> Result<Instance, ProviderError>;

    /// The instance with this id, or `None` once it is terminated or unknown.
    ///
    /// A provider with eventual consistency must not answer `None` for an
    /// instance it launched moments ago; it answers the instance as pending.
    async fn get(&self, id: &InstanceId) -> Result<Option<Instance>, ProviderError>;

    /// The instances among `ids` that are not terminated, as [`get`] would
    /// answer each, read in as few calls as the provider's API allows (one
    /// describe for many ids): what a caller watching many instances at
    /// once (a pool's terminating instances) asks instead of one `get` per
    /// instance. An id missing from the answer is terminated or unknown;
    /// the order of the answer is unspecified. The default asks `get` for
    /// each id.
    ///
    /// [`get`]: CloudProvider::get
    async fn get_many(&self, ids: &[InstanceId]) -> Result<Vec<Instance>, ProviderError> {
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            found.extend(self.get(id).await?);
        }
        Ok(found)
    }

    /// Ask for the instance to be terminated.
    ///
    /// Answers [`DeleteStatus::InProgress`] while termination runs and
    /// [`DeleteStatus::Gone`] once the instance is terminated or unknown.
    /// Callers wait for `Gone` by repeating the call, or — cheaper, for many
    /// instances at once — by watching [`CloudProvider::get_many`] until the
    /// instance is absent, asking again only if it shows as not terminating.
    /// The call is idempotent. An instance that is not tagged for this cluster
    /// is never terminated: the call fails with `InvalidConfig`.
    async fn delete(&self, id: &InstanceId) -> Result<DeleteStatus, ProviderError>;

    /// The instance behind a Kubernetes node, from its `spec.providerID`
    /// (with provider-specific fallbacks such as the node's internal IP).
    async fn instance_for(&self, node: &NodeRef) -> Result<Option<Instance>, ProviderError>;

    /// The image a new node of `pool` at Kubernetes `version` (`v1.34.2`)
    /// boots from. Fails with `NotFound` when the pool has no such image.
    async fn resolve_image(&self, pool: &PoolRef, version: &str) -> Result<Image, ProviderError>;

    /// Get `pool` ready for a run that launches up to `surge` instances
    /// above its size (an Auto Scaling group's `MaxSize`, the processes
    /// that would fight the run), before the run's first launch in it.
    ///
    /// **Idempotent per run**: whatever it changes is recorded with the
    /// provider first, so repeating it for the same `run_id` (a rerun after
    /// a crash) changes nothing twice, and a record left by another run is
    /// restored ([`CloudProvider::restore_pool`]) before this run's is
    /// made. Providers with nothing to prepare keep the default, which does
    /// nothing.
    async fn prepare_pool(
        &self,
        _pool: &PoolRef,
        _surge: u32,
        _run_id: &str,
    ) -> Result<(), ProviderError> {
        Ok(())
    }

    /// Undo what [`CloudProvider::prepare_pool`] recorded for `pool`, by
    /// whichever run: after the run's last slot in the pool, and by
    /// `abort` and `gc`. Idempotent; without a record it does nothing.
    async fn restore_pool(&self, _pool: &PoolRef) -> Result<(), ProviderError> {
        Ok(())
    }

    /// Ask the cloud, changing nothing, whether this run's credentials may
    /// make the calls a run makes: launch `probe.launch`, terminate
    /// `probe.terminate`, tag. One answer per permission. The default: a
    /// provider with nothing to check answers none.
    async fn check_permissions(&self, probe: &PermissionProbe) -> Vec<PermissionCheck> {
        let _ = probe;
        Vec::new()
    }

    /// Ask the cloud, changing nothing, whether there is room for the
    /// surge of a run replacing `probe.replaced`: free addresses where the
    /// replacements launch, a group's size limits. One finding per thing
    /// looked at. The default: a provider with nothing to check answers
    /// none.
    async fn check_room(&self, probe: &RoomProbe) -> Vec<RoomFinding> {
        let _ = probe;
        Vec::new()
    }
}
