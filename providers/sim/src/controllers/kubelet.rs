//! Simulated kubelets.
//!
//! (Interface fixed; the implementation is filled by the controllers work.)

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::Timing;
use crate::store::Store;

/// What a kubelet registers its Node with.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeSpec {
    pub name: String,
    /// `v1.33.4`.
    pub kubelet_version: String,
    pub provider_id: String,
    pub zone: String,
    pub internal_ip: String,
    pub labels: BTreeMap<String, String>,
    /// `{"key","value","effect"}` objects, as in `spec.taints`.
    pub taints: Vec<Value>,
    /// Pods the node has room for (`status.allocatable.pods`).
    pub max_pods: u32,
    /// Marks a control-plane node (kubeadm's labels are added).
    pub control_plane: bool,
}

/// Every simulated kubelet of the world.
pub struct KubeletFleet {
    _store: Arc<Store>,
    _timing: Timing,
}

impl KubeletFleet {
    pub fn new(store: Arc<Store>, timing: Timing) -> Arc<KubeletFleet> {
        Arc::new(KubeletFleet {
            _store: store,
            _timing: timing,
        })
    }

    /// Start a kubelet: register the Node (self-registration, as after TLS
    /// bootstrap) if missing, then heartbeat and run the pods bound to it.
    pub fn start(&self, _node: NodeSpec) {}

    /// The machine is gone or its kubelet stopped: heartbeats stop, pods on
    /// it stay as they are (the node lifecycle controller notices).
    pub fn stop(&self, _node: &str) {}

    /// Restart the kubelet at another version (a package upgrade).
    pub fn restart_with_version(&self, _node: &str, _kubelet_version: &str) {}

    /// Create or replace a static pod on `node` (its mirror pod appears in
    /// the API with the `kubernetes.io/config.mirror` annotation).
    pub fn set_static_pod(&self, _node: &str, _pod: Value) {}

    /// True while the node's kubelet runs.
    pub fn is_running(&self, _node: &str) -> bool {
        false
    }
}
