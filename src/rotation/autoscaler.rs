//! Keeping a cluster autoscaler's scale-down away from a run's new nodes:
//! while the run lasts, each replacement carries
//! `cluster-autoscaler.kubernetes.io/scale-down-disabled: "true"` ("How
//! can I prevent Cluster Autoscaler from scaling down a particular node?",
//! cluster-autoscaler FAQ,
//! <https://github.com/kubernetes/autoscaler/blob/master/cluster-autoscaler/FAQ.md>),
//! with a marker of ours so that the end of the run (or of a rerun)
//! removes only what a run set, never an operator's own annotation.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;

use crate::kube::nodes;

/// The cluster autoscaler's annotation.
pub const SCALE_DOWN_DISABLED: &str = "cluster-autoscaler.kubernetes.io/scale-down-disabled";
/// Our marker: the run that set [`SCALE_DOWN_DISABLED`].
pub const SET_BY: &str = "kubesurge.io/scale-down-disabled-by";

/// The annotations that protect a new node for run `run_id`.
pub fn protect(run_id: &str) -> BTreeMap<String, Option<String>> {
    BTreeMap::from([
        (SCALE_DOWN_DISABLED.to_string(), Some("true".to_string())),
        (SET_BY.to_string(), Some(run_id.to_string())),
    ])
}

/// The patch that lifts a run's protection.
pub fn release() -> BTreeMap<String, Option<String>> {
    BTreeMap::from([
        (SCALE_DOWN_DISABLED.to_string(), None),
        (SET_BY.to_string(), None),
    ])
}

/// True when a run protected `node` (whichever run: a crashed one's too).
pub fn protected_by_a_run(node: &Node) -> bool {
    nodes::annotation(node, SET_BY).is_some()
}

/// A node that already carries the autoscaler's annotation without our
/// marker was protected by its operator: the run leaves it alone.
pub fn protected_by_operator(node: &Node) -> bool {
    nodes::annotation(node, SCALE_DOWN_DISABLED).is_some() && !protected_by_a_run(node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn node(annotations: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("n".into()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn only_what_a_run_set_is_released() {
        let ours = node(&[(SCALE_DOWN_DISABLED, "true"), (SET_BY, "run-1")]);
        assert!(protected_by_a_run(&ours));
        assert!(!protected_by_operator(&ours));
        let operator = node(&[(SCALE_DOWN_DISABLED, "true")]);
        assert!(!protected_by_a_run(&operator));
        assert!(protected_by_operator(&operator));
        assert!(!protected_by_a_run(&node(&[])));
        assert_eq!(
            protect("run-1")[SCALE_DOWN_DISABLED].as_deref(),
            Some("true")
        );
        assert!(release().values().all(Option::is_none));
    }
}
