//! What a real cluster runs besides the API server: scheduler, workload
//! controllers (ReplicaSet, Deployment, DaemonSet, Job), disruption controller, node lifecycle, pod GC, bootstrap
//! signer and token cleaner, and simulated kubelets. They act on the store
//! directly, the way kube-controller-manager acts through its informers:
//! each keeps its own cache fed by store changes ([`informer`]), reacts to
//! changes in batches, and uses timers only where time matters (kubelet
//! delays and heartbeats, node monitoring, token expiry, PDB rechecks).
//! The scheduler, the kubelets and the node lifecycle controller record
//! Events with their real reasons ([`events`]).

mod bootstrap;
mod daemonset;
mod deployment;
mod disruption;
mod events;
mod informer;
mod job;
pub mod jws;
pub mod kubelet;
pub(crate) mod matching;
mod nodelifecycle;
mod objects;
mod podgc;
mod replicaset;
mod scheduler;

pub use disruption::disrupted_pod_timeout;
pub use kubelet::{IGNORE_TERMINATION, KubeletFleet, NodeSpec, RUN_FOR};

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::Timing;
use crate::resources::{
    CONFIGMAPS, DAEMONSETS, DEPLOYMENTS, JOBS, LEASES, NODES, PDBS, PODS, REPLICASETS, SECRETS,
};
use crate::store::Store;
use informer::{Feed, Reconciler};

/// The running controllers.
pub struct Controllers {
    pub kubelets: Arc<KubeletFleet>,
    cancel: CancellationToken,
}

impl Controllers {
    /// Start every controller on `store`. They stop when the returned value
    /// (and every clone of `kubelets`) is dropped or [`Controllers::stop`]
    /// is called. Must be called within a Tokio runtime: each controller
    /// runs as a task on it.
    pub fn start(store: Arc<Store>, timing: Timing) -> Controllers {
        let cancel = CancellationToken::new();
        let events = events::EventRecorder::new(store.clone());
        start_one(
            scheduler::Scheduler::new(store.clone(), events.clone()),
            Feed::all(&store, &[&NODES, &PODS]),
            &cancel,
        );
        start_one(
            replicaset::ReplicaSets::new(store.clone()),
            Feed::all(&store, &[&REPLICASETS, &PODS]),
            &cancel,
        );
        start_one(
            job::Jobs::new(store.clone(), events.clone()),
            Feed::all(&store, &[&JOBS, &PODS]),
            &cancel,
        );
        start_one(
            deployment::Deployments::new(store.clone()),
            Feed::all(&store, &[&DEPLOYMENTS, &REPLICASETS]),
            &cancel,
        );
        start_one(
            daemonset::DaemonSets::new(store.clone()),
            Feed::all(&store, &[&DAEMONSETS, &NODES, &PODS]),
            &cancel,
        );
        start_one(
            disruption::Disruption::new(store.clone(), &timing),
            Feed::all(&store, &[&PDBS, &DEPLOYMENTS, &REPLICASETS, &PODS]),
            &cancel,
        );
        start_one(
            nodelifecycle::NodeLifecycle::new(store.clone(), &timing, events.clone()),
            Feed::start(
                &store,
                &[&NODES, &LEASES, &PODS],
                Arc::new(nodelifecycle::interest),
            ),
            &cancel,
        );
        start_one(
            podgc::PodGc::new(store.clone()),
            Feed::start(&store, &[&NODES, &PODS], Arc::new(podgc::interest)),
            &cancel,
        );
        start_one(
            bootstrap::Bootstrap::new(store.clone()),
            Feed::start(
                &store,
                &[&SECRETS, &CONFIGMAPS],
                Arc::new(bootstrap::interest),
            ),
            &cancel,
        );
        Controllers {
            kubelets: KubeletFleet::new(store, timing, events),
            cancel,
        }
    }

    /// Stop every controller and kubelet.
    pub fn stop(&self) {
        self.cancel.cancel();
        self.kubelets.shutdown();
    }
}

impl Drop for Controllers {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn start_one<R: Reconciler>(
    reconciler: R,
    (feed, initial): (Feed, Vec<informer::Change>),
    cancel: &CancellationToken,
) {
    tokio::spawn(informer::run(reconciler, feed, initial, cancel.clone()));
}
