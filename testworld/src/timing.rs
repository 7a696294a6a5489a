//! Delays of the simulated world. Real clusters take minutes; tests and
//! benchmarks scale these down to milliseconds.

use std::time::Duration;

/// How long things take in the world.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timing {
    /// From launch until the machine runs `kubeadm join`.
    pub boot: Duration,
    /// From a pod bound to a node until it is Running and Ready.
    pub pod_start: Duration,
    /// Upper bound of a pod's graceful termination in the world; a pod's
    /// own `terminationGracePeriodSeconds` is scaled into `[0, this]`.
    pub pod_termination: Duration,
    /// From a terminate request until the instance is terminated.
    pub terminate: Duration,
    /// Kubelet heartbeat (node Lease renewal and Ready condition).
    pub heartbeat: Duration,
    /// Heartbeat silence after which the node lifecycle controller marks
    /// the node Unknown and taints it unreachable (50s on v1.32+).
    pub node_monitor_grace: Duration,
    /// How long a control-plane component restart takes the apiserver away.
    pub apiserver_restart: Duration,
}

impl Timing {
    /// Realistic but short: what `kubesurge sandbox` uses by default.
    pub fn sandbox() -> Self {
        Timing {
            boot: Duration::from_secs(3),
            pod_start: Duration::from_millis(800),
            pod_termination: Duration::from_secs(1),
            terminate: Duration::from_secs(1),
            heartbeat: Duration::from_secs(2),
            node_monitor_grace: Duration::from_secs(8),
            apiserver_restart: Duration::from_millis(500),
        }
    }

    /// Millisecond delays for tests.
    pub fn fast() -> Self {
        Timing {
            boot: Duration::from_millis(150),
            pod_start: Duration::from_millis(50),
            pod_termination: Duration::from_millis(100),
            terminate: Duration::from_millis(100),
            heartbeat: Duration::from_millis(200),
            node_monitor_grace: Duration::from_millis(1500),
            apiserver_restart: Duration::from_millis(100),
        }
    }
}

impl Default for Timing {
    fn default() -> Self {
        Timing::sandbox()
    }
}
