//! The PodDisruptionBudgets that would block a drain right now: a PDB
//! whose `status.disruptionsAllowed` is 0 covering a pod the drain would
//! evict from a node the run drains. The eviction API answers 429 for
//! such a pod until the PDB allows a disruption
//! (https://kubernetes.io/docs/concepts/scheduling-eviction/api-eviction/). Pure.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use crate::kube::drain::{Decision, PodRules, UnmanagedPods, decide};
use crate::kube::selector::selects;

/// One pod a PDB protects with no disruption allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    /// `namespace/name` of the PDB.
    pub pdb: String,
    /// `namespace/name` of the pod.
    pub pod: String,
    pub node: String,
}

/// Every pod on `drained` nodes that the drain would evict and that a PDB
/// with no disruption allowed covers, in PDB then pod order.
pub fn blocking(
    pdbs: &[PodDisruptionBudget],
    pods: &[Pod],
    drained: &BTreeSet<String>,
    unmanaged: UnmanagedPods,
) -> Vec<Blocked> {
    let mut found = Vec::new();
    for pdb in pdbs {
        let allowed = pdb.status.as_ref().map(|s| s.disruptions_allowed);
        // No status yet: the disruption controller has not counted; the
        // eviction API then refuses too.
        if allowed.is_some_and(|n| n > 0) {
            continue;
        }
        let namespace = pdb.metadata.namespace.clone().unwrap_or_default();
        // A PDB without a selector selects no pod (policy/v1).
        let Some(selector) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
            continue;
        };
        for pod in pods {
            let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
            let Some(node) = node.filter(|n| drained.contains(n)) else {
                continue;
            };
            if pod.metadata.namespace.as_deref() != Some(namespace.as_str())
                || !selects(selector, &pod.metadata.labels.clone().unwrap_or_default())
                || !matches!(
                    decide(pod, &PodRules::without_local_claims(unmanaged)),
                    Decision::Evict { .. }
                )
            {
                continue;
            }
            found.push(Blocked {
                pdb: format!(
                    "{namespace}/{}",
                    pdb.metadata.name.as_deref().unwrap_or_default()
                ),
                pod: format!(
                    "{namespace}/{}",
                    pod.metadata.name.as_deref().unwrap_or_default()
                ),
                node,
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pdb(allowed: i32) -> PodDisruptionBudget {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"disruptionsAllowed": allowed, "currentHealthy": 2,
                       "desiredHealthy": 2, "expectedPods": 2}
        }))
        .unwrap()
    }

    fn pod(name: &str, node: &str, app: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "shop", "labels": {"app": app},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                           "name": "web-1", "uid": "u", "controller": true}]},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]}
        }))
        .unwrap()
    }

    #[test]
    fn a_pdb_at_zero_names_the_pods_of_drained_nodes_it_covers() {
        let pods = [
            pod("web-a", "w-1", "web"),
            pod("web-b", "w-2", "web"),
            pod("db-a", "w-1", "db"),
        ];
        let drained = BTreeSet::from(["w-1".to_string()]);
        assert_eq!(
            blocking(&[pdb(0)], &pods, &drained, UnmanagedPods::Fail),
            vec![Blocked {
                pdb: "shop/web".into(),
                pod: "shop/web-a".into(),
                node: "w-1".into()
            }]
        );
        assert!(blocking(&[pdb(1)], &pods, &drained, UnmanagedPods::Fail).is_empty());
    }
}
