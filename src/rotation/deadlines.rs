//! Every deadline a slot works under, in one table: each executor of the
//! state machine takes its bound from here, never from a constant of its
//! own.

use std::time::Duration;

use super::config::EngineConfig;
use crate::kube::retry::API_OUTAGE_TOLERANCE;

/// How long provider calls retry throttling and transient errors.
pub const PROVIDER_RETRY_BUDGET: Duration = Duration::from_secs(300);
/// How long a terminating instance may take before the slot fails.
pub const TERMINATE_TIMEOUT: Duration = Duration::from_secs(600);
/// How long to wait for a drained node's volumes to detach (the
/// attach/detach controller force-detaches after 6 minutes anyway:
/// `maxWaitForUnmountDuration` in kube-controller-manager's reconciler).
pub const VOLUME_DETACH_TIMEOUT: Duration = Duration::from_secs(360);

/// The deadlines of one run's slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// Each launch and terminate call retries throttling and 5xx for at most
/// [`PROVIDER_RETRY_BUDGET`] (`instances::provider_retry`).
pub struct Deadlines {
    /// Each Kubernetes API call through an outage (`kube::retry`).
    pub api_outage: Duration,
    /// A replacement must be a Ready node at the target within this of its
    /// launch (`health.newNodeTimeout`), also across a crash.
    pub join: Duration,
    /// A drain, from its start, also across a crash (`drain.timeout`); the
    /// same bound drains a replacement that is discarded.
    pub drain: Duration,
    /// The old node's volumes detaching before its instance is terminated.
    pub volume_detach: Duration,
    /// An instance reporting gone after its termination was asked.
    pub terminate: Duration,
}

impl Deadlines {
    pub fn from_config(config: &EngineConfig) -> Deadlines {
        Deadlines {
            api_outage: API_OUTAGE_TOLERANCE,
            join: config.new_node_timeout,
            drain: config.drain_timeout,
            volume_detach: VOLUME_DETACH_TIMEOUT,
            terminate: TERMINATE_TIMEOUT,
        }
    }
}
