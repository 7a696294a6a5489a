//! Faults a test injects into the cloud: capacity shortages per zone,
//! throttling and 5xx bursts, latency, machines that never join or join
//! late, and `kubeadm upgrade` runs that fail on a control-plane machine.
//! Decisions only; the server, the machines and the stand-ins' control
//! endpoint consult them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How long a fault lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Times {
    /// The next `n` occasions.
    Next(u32),
    /// Until cleared.
    UntilCleared,
}

/// How an API call must fail before it is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallFault {
    Throttle,
    InternalError,
}

/// What a new machine does instead of joining normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct JoinFault {
    /// The machine boots but its join never completes.
    pub never: bool,
    /// Extra time before the machine starts its join.
    pub delay: Duration,
    /// The form of providerID its kubelet registers with.
    pub provider_id_form: ProviderIdForm,
}

/// The providerID a joining machine's kubelet registers with. Real nodes
/// carry more than one form: cloud-provider-aws accepts `aws:///<zone>/<id>`
/// and the zone-less `aws:////<id>` (`KubernetesInstanceID.MapToAWSInstanceID`,
/// kubernetes/cloud-provider-aws `pkg/providers/v1/instances.go`), and a
/// kubelet whose `--provider-id` could not be computed registers none until
/// a cloud controller sets it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProviderIdForm {
    /// What the join configuration says (`sim:///<zone>/<id>`).
    #[default]
    AsConfigured,
    /// `sim:////<id>`: the same instance, without the zone.
    ZoneLess,
    /// None at all.
    Empty,
}

/// The fault settings of one cloud.
#[derive(Debug, Default)]
pub struct Faults {
    capacity: BTreeMap<String, Times>,
    throttle_next: u32,
    error_next: u32,
    latency: Duration,
    never_join_pools: BTreeSet<String>,
    never_join_next: u32,
    late_join_pools: BTreeMap<String, Duration>,
    late_join_next: Vec<Duration>,
    /// Failing `kubeadm upgrade` runs, by node (`None`: any node).
    kubeadm_failures: BTreeMap<Option<String>, u32>,
    /// Nodes whose next `kubeadm upgrade apply` dies after writing the
    /// static pod manifests and before recording the version.
    kubeadm_upload_failures: BTreeSet<String>,
    /// The providerID forms the next launched machines register with.
    provider_id_forms: std::collections::VecDeque<ProviderIdForm>,
}

impl Faults {
    pub fn set_capacity_shortage(&mut self, zone: &str, times: Times) {
        self.capacity.insert(zone.to_string(), times);
    }

    pub fn clear_capacity_shortage(&mut self, zone: &str) {
        self.capacity.remove(zone);
    }

    /// Whether a launch into `zone` fails for capacity; consumes one
    /// occasion of a counted shortage.
    pub fn take_capacity_shortage(&mut self, zone: &str) -> bool {
        match self.capacity.get_mut(zone) {
            None => false,
            Some(Times::UntilCleared) => true,
            Some(Times::Next(n)) => {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.capacity.remove(zone);
                }
                true
            }
        }
    }

    pub fn throttle_next(&mut self, calls: u32) {
        self.throttle_next = calls;
    }

    pub fn fail_next(&mut self, calls: u32) {
        self.error_next = calls;
    }

    pub fn set_latency(&mut self, latency: Duration) {
        self.latency = latency;
    }

    pub fn latency(&self) -> Duration {
        self.latency
    }

    /// How the next call must fail, if it must; consumes the fault.
    /// Throttling comes first, as a rate limiter sits in front of services.
    pub fn take_call_fault(&mut self) -> Option<CallFault> {
        if self.throttle_next > 0 {
            self.throttle_next -= 1;
            Some(CallFault::Throttle)
        } else if self.error_next > 0 {
            self.error_next -= 1;
            Some(CallFault::InternalError)
        } else {
            None
        }
    }

    pub fn never_join_pool(&mut self, pool: &str) {
        self.never_join_pools.insert(pool.to_string());
    }

    pub fn never_join_next(&mut self, launches: u32) {
        self.never_join_next = launches;
    }

    /// The next launched machines' kubelets register with these providerID
    /// forms, one each, in order.
    pub fn register_provider_ids(&mut self, forms: impl IntoIterator<Item = ProviderIdForm>) {
        self.provider_id_forms.extend(forms);
    }

    pub fn late_join_pool(&mut self, pool: &str, delay: Duration) {
        self.late_join_pools.insert(pool.to_string(), delay);
    }

    pub fn late_join_next(&mut self, launches: u32, delay: Duration) {
        self.late_join_next = vec![delay; launches as usize];
    }

    /// Make the next `runs` of `kubeadm upgrade apply` or `kubeadm upgrade
    /// node` on `node` (on any node when `None`) fail in their
    /// control-plane phase, as when a new apiserver never becomes healthy:
    /// kubeadm rolls the manifests back and exits 1.
    pub fn fail_kubeadm_upgrade(&mut self, node: Option<&str>, runs: u32) {
        self.kubeadm_failures.insert(node.map(str::to_string), runs);
    }

    /// Whether this `kubeadm upgrade` on `node` must fail; consumes one
    /// run (of the node's own fault first).
    pub fn take_kubeadm_failure(&mut self, node: &str) -> bool {
        for key in [Some(node.to_string()), None] {
            if let Some(n) = self.kubeadm_failures.get_mut(&key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.kubeadm_failures.remove(&key);
                }
                return true;
            }
        }
        false
    }

    /// Make the next `kubeadm upgrade apply` on `node` die between its
    /// phases: after the new static pod manifests are in place and before
    /// the version is recorded in kubeadm-config (apply's `upload-config`
    /// phase runs after `control-plane`:
    /// cmd/kubeadm/app/cmd/upgrade/apply.go, its phase list), as when the
    /// process is killed or the API server is unreachable then.
    pub fn fail_kubeadm_upload(&mut self, node: &str) {
        self.kubeadm_upload_failures.insert(node.to_string());
    }

    /// Whether this apply on `node` must die before recording; consumes
    /// the fault.
    pub fn take_kubeadm_upload_failure(&mut self, node: &str) -> bool {
        self.kubeadm_upload_failures.remove(node)
    }

    /// Remove every machine fault (join faults of pools and launches).
    pub fn clear_join_faults(&mut self) {
        self.never_join_pools.clear();
        self.never_join_next = 0;
        self.late_join_pools.clear();
        self.late_join_next.clear();
    }

    /// The join fault of a machine launched now into `pool`; consumes
    /// counted faults.
    pub fn take_join_fault(&mut self, pool: Option<&str>) -> JoinFault {
        let mut fault = JoinFault::default();
        if self.never_join_next > 0 {
            self.never_join_next -= 1;
            fault.never = true;
        }
        if let Some(delay) = self.late_join_next.pop() {
            fault.delay = delay;
        }
        if let Some(form) = self.provider_id_forms.pop_front() {
            fault.provider_id_form = form;
        }
        if let Some(pool) = pool {
            fault.never |= self.never_join_pools.contains(pool);
            if let Some(delay) = self.late_join_pools.get(pool) {
                fault.delay = fault.delay.max(*delay);
            }
        }
        fault
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_faults_run_out_and_standing_ones_wait_to_be_cleared() {
        let mut f = Faults::default();
        f.set_capacity_shortage("zone-a", Times::Next(2));
        f.set_capacity_shortage("zone-b", Times::UntilCleared);
        assert!(f.take_capacity_shortage("zone-a"));
        assert!(f.take_capacity_shortage("zone-a"));
        assert!(!f.take_capacity_shortage("zone-a"));
        for _ in 0..5 {
            assert!(f.take_capacity_shortage("zone-b"));
        }
        f.clear_capacity_shortage("zone-b");
        assert!(!f.take_capacity_shortage("zone-b"));
        assert!(!f.take_capacity_shortage("zone-c"));
    }

    #[test]
    fn throttling_comes_before_errors() {
        let mut f = Faults::default();
        f.throttle_next(1);
        f.fail_next(1);
        assert_eq!(f.take_call_fault(), Some(CallFault::Throttle));
        assert_eq!(f.take_call_fault(), Some(CallFault::InternalError));
        assert_eq!(f.take_call_fault(), None);
    }

    #[test]
    fn kubeadm_failures_per_node_then_anywhere() {
        let mut f = Faults::default();
        f.fail_kubeadm_upgrade(Some("cp-2"), 1);
        f.fail_kubeadm_upgrade(None, 1);
        assert!(f.take_kubeadm_failure("cp-2"));
        assert!(f.take_kubeadm_failure("cp-2"));
        assert!(!f.take_kubeadm_failure("cp-2"));
        assert!(!f.take_kubeadm_failure("cp-1"));
    }

    #[test]
    fn join_faults_by_pool_and_by_launch() {
        let mut f = Faults::default();
        f.never_join_pool("gpu");
        f.late_join_next(1, Duration::from_secs(2));
        let first = f.take_join_fault(Some("general"));
        assert_eq!(
            first,
            JoinFault {
                never: false,
                delay: Duration::from_secs(2),
                provider_id_form: ProviderIdForm::AsConfigured,
            }
        );
        assert_eq!(f.take_join_fault(Some("general")), JoinFault::default());
        assert!(f.take_join_fault(Some("gpu")).never);
        f.never_join_next(1);
        assert!(f.take_join_fault(None).never);
        assert!(!f.take_join_fault(None).never);
    }
}
