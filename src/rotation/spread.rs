//! Queue order that keeps nodes whose pods share a PodDisruptionBudget out
//! of the same wave. Two such nodes drained at once make the second wait:
//! a PDB that allows one disruption refuses the second eviction (429)
//! until the first evicted pod's replacement is Ready
//! (https://kubernetes.io/docs/concepts/scheduling-eviction/api-eviction/),
//! which the bound B+D+T per wave does not count. Pure.

use std::collections::{BTreeMap, VecDeque};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use crate::kube::drain::{Decision, PodRules, UnmanagedPods, decide};
use crate::kube::selector::selects;

/// One pool's queue, in the order selection chose, and how many of its
/// slots run at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolQueue {
    pub nodes: Vec<String>,
    pub window: usize,
}

/// The PDBs (`namespace/name`) each node's evictable pods count against,
/// once per pod: from the pods and PDBs as listed at selection time.
pub fn budgets_by_node(
    pods: &[Pod],
    pdbs: &[PodDisruptionBudget],
    unmanaged: UnmanagedPods,
) -> BTreeMap<String, Vec<String>> {
    let mut by_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let rules = PodRules::without_local_claims(unmanaged);
    for pod in pods {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
            continue;
        };
        if !matches!(decide(pod, &rules), Decision::Evict { .. }) {
            continue;
        }
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        for pdb in pdbs {
            // A PDB without a selector selects no pod (policy/v1).
            let Some(selector) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
                continue;
            };
            if pdb.metadata.namespace != pod.metadata.namespace || !selects(selector, &labels) {
                continue;
            }
            by_node.entry(node.to_string()).or_default().push(format!(
                "{}/{}",
                pdb.metadata.namespace.as_deref().unwrap_or_default(),
                pdb.metadata.name.as_deref().unwrap_or_default()
            ));
        }
    }
    by_node
}

/// Reorder every pool's queue so that the nodes in flight together — the
/// last `window` picks of every pool, since pools rotate side by side —
/// share as few PDBs as possible. Pools pick in turn, one node each; each
/// picks, among its remaining nodes, the one whose PDBs are least present
/// among the nodes in flight, the earliest in its selection order on a tie
/// (so without PDBs the order is selection's: oldest first, zones spread).
/// Greedy: O(nodes² × PDBs per node), a few million steps at 1000 nodes.
pub fn spread_budgets(
    queues: &[PoolQueue],
    budgets: &BTreeMap<String, Vec<String>>,
) -> Vec<Vec<String>> {
    // PDBs as small integers; each node's distinct ones.
    let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
    let pdbs_of: Vec<Vec<Vec<usize>>> = queues
        .iter()
        .map(|q| {
            q.nodes
                .iter()
                .map(|node| {
                    let mut of_node: Vec<usize> = budgets
                        .get(node)
                        .into_iter()
                        .flatten()
                        .map(|b| {
                            let next = ids.len();
                            *ids.entry(b.as_str()).or_insert(next)
                        })
                        .collect();
                    of_node.sort_unstable();
                    of_node.dedup();
                    of_node
                })
                .collect()
        })
        .collect();
    let in_flight_max: usize = queues.iter().map(|q| q.window.max(1)).sum();
    let mut present = vec![0usize; ids.len()];
    let mut in_flight: VecDeque<(usize, usize)> = VecDeque::new();
    let mut remaining: Vec<Vec<usize>> = queues
        .iter()
        .map(|q| (0..q.nodes.len()).collect())
        .collect();
    let mut ordered: Vec<Vec<String>> = queues.iter().map(|_| Vec::new()).collect();
    while remaining.iter().any(|left| !left.is_empty()) {
        for pool in 0..queues.len() {
            let left = &mut remaining[pool];
            let Some((at, _)) = left
                .iter()
                .enumerate()
                .map(|(at, &node)| {
                    let conflicts: usize = pdbs_of[pool][node].iter().map(|&b| present[b]).sum();
                    (at, conflicts)
                })
                .min_by_key(|&(at, conflicts)| (conflicts, at))
            else {
                continue;
            };
            let node = left.remove(at);
            ordered[pool].push(queues[pool].nodes[node].clone());
            for &b in &pdbs_of[pool][node] {
                present[b] += 1;
            }
            in_flight.push_back((pool, node));
            if in_flight.len() > in_flight_max
                && let Some((done_pool, done)) = in_flight.pop_front()
            {
                for &b in &pdbs_of[done_pool][done] {
                    present[b] -= 1;
                }
            }
        }
    }
    ordered
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn queue(nodes: &[&str], window: usize) -> PoolQueue {
        PoolQueue {
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            window,
        }
    }

    fn budgets(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(n, b)| (n.to_string(), b.iter().map(|b| b.to_string()).collect()))
            .collect()
    }

    /// Every window of `window` consecutive nodes of `order`: how many
    /// PDBs appear on two nodes of it.
    fn shared_in_windows(
        order: &[String],
        window: usize,
        b: &BTreeMap<String, Vec<String>>,
    ) -> usize {
        order
            .windows(window)
            .map(|w| {
                let mut count: BTreeMap<&str, usize> = BTreeMap::new();
                for node in w {
                    let unique: BTreeSet<&str> = b
                        .get(node)
                        .into_iter()
                        .flatten()
                        .map(String::as_str)
                        .collect();
                    for pdb in unique {
                        *count.entry(pdb).or_default() += 1;
                    }
                }
                count.values().filter(|c| **c > 1).count()
            })
            .sum()
    }

    #[test]
    fn without_budgets_the_selection_order_stays() {
        let order = spread_budgets(&[queue(&["a", "b", "c"], 2)], &BTreeMap::new());
        assert_eq!(order, vec![vec!["a", "b", "c"]]);
    }

    #[test]
    fn nodes_sharing_a_budget_go_to_different_waves() {
        // a and b hold the two pods of app-1, c and d those of app-2: in
        // selection order the first wave of two drains both of app-1's.
        let b = budgets(&[
            ("a", &["ns/app-1"]),
            ("b", &["ns/app-1"]),
            ("c", &["ns/app-2"]),
            ("d", &["ns/app-2"]),
        ]);
        let order = spread_budgets(&[queue(&["a", "b", "c", "d"], 2)], &b);
        assert_eq!(order, vec![vec!["a", "c", "b", "d"]]);
        assert_eq!(shared_in_windows(&order[0], 2, &b), 0);
    }

    #[test]
    fn pools_rotating_side_by_side_are_spread_together() {
        // One Deployment's pods on a node of each pool: the pools' first
        // slots start together, so they must not both take it first.
        let b = budgets(&[("blue-1", &["ns/web"]), ("green-1", &["ns/web"])]);
        let order = spread_budgets(
            &[
                queue(&["blue-1", "blue-2"], 1),
                queue(&["green-1", "green-2"], 1),
            ],
            &b,
        );
        assert_eq!(order[0], vec!["blue-1", "blue-2"]);
        assert_eq!(order[1], vec!["green-2", "green-1"]);
    }

    #[test]
    fn every_node_is_kept_once_and_conflicts_fall() {
        // 60 nodes, 3 pods each, Deployments of 6 replicas laid out as a
        // scheduler spreading them would: app k on nodes k..k+5 (mod 60).
        let nodes: Vec<String> = (0..60).map(|i| format!("n{i:02}")).collect();
        let mut b: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for app in 0..30 {
            for r in 0..6 {
                let node = &nodes[(app * 2 + r) % 60];
                b.entry(node.clone())
                    .or_default()
                    .push(format!("ns/app-{app}"));
            }
        }
        let refs: Vec<&str> = nodes.iter().map(String::as_str).collect();
        let before = shared_in_windows(&nodes, 6, &b);
        let order = spread_budgets(&[queue(&refs, 6)], &b);
        let mut sorted = order[0].clone();
        sorted.sort();
        assert_eq!(sorted, nodes);
        let after = shared_in_windows(&order[0], 6, &b);
        assert!(
            after * 2 < before,
            "{after} shared PDBs in windows, {before} before"
        );
    }
}
