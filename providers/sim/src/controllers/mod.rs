//! What a real cluster runs besides the API server: scheduler, workload
//! controllers, disruption controller, node lifecycle, bootstrap signer and
//! token cleaner, and simulated kubelets. They act on the store directly,
//! the way kube-controller-manager acts through its informers.
//!
//! (Interface fixed; the implementation is filled by the controllers work.)

pub mod kubelet;

pub use kubelet::{KubeletFleet, NodeSpec};

use std::sync::Arc;

use crate::Timing;
use crate::store::Store;

/// The running controllers.
pub struct Controllers {
    pub kubelets: Arc<KubeletFleet>,
}

impl Controllers {
    /// Start every controller on `store`. They stop when the returned value
    /// (and every clone of `kubelets`) is dropped or [`Controllers::stop`]
    /// is called.
    pub fn start(store: Arc<Store>, timing: Timing) -> Controllers {
        Controllers {
            kubelets: KubeletFleet::new(store, timing),
        }
    }

    pub fn stop(&self) {}
}
