//! Which pods a drain evicts, skips or refuses: a pure decision per pod,
//! with the reason, in kubectl's filter order (k8s-mechanics §4), plus
//! one rule kubectl lacks: a pod whose PersistentVolume lives on the node
//! is refused unless `drain.localStorage: delete` (its data would go with
//! the instance).

use crate::kube::pods;
use k8s_openapi::api::core::v1::Pod;
use schemars::JsonSchema;
use serde::Serialize;

use super::local::{NodeLocalClaims, uses_host_path};
use super::policy::{LocalStorage, UnmanagedPods};

/// Why a pod is evicted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum EvictReason {
    /// Owned by a controller that will recreate it elsewhere.
    Managed,
    /// Uses an emptyDir: its data goes with the node either way.
    LocalStorage,
    /// Succeeded or Failed: nothing runs, the eviction only cleans up.
    Finished,
    /// No controller; evicted because `drain.unmanagedPods: delete`.
    Unmanaged,
    /// Its PersistentVolume lives on the node: evicted because
    /// `drain.localStorage: delete`, and that data is lost with the node.
    LocalVolume,
    /// Mounts a hostPath: evicted as kubectl drain does; what it wrote on
    /// the node stays there and goes with it.
    HostPath,
}

impl EvictReason {
    /// What the eviction costs beyond moving the pod, for the report;
    /// `None` when nothing is lost that the pod's owner does not expect.
    pub fn data_left_behind(self) -> Option<&'static str> {
        match self {
            EvictReason::LocalVolume => Some("its local PersistentVolume's data is lost"),
            EvictReason::HostPath => Some("what it wrote to its hostPath stays on the old node"),
            _ => None,
        }
    }
}

/// Why a pod stays on the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SkipReason {
    /// DaemonSet pods run on every node and die with this one.
    DaemonSet,
    /// Static pods belong to the node's kubelet.
    Mirror,
}

/// The drain's decision for one pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", tag = "action")]
pub enum Decision {
    Evict {
        reason: EvictReason,
    },
    Skip {
        reason: SkipReason,
    },
    /// Already being deleted: nothing to send, but the drain waits for it.
    AwaitDeletion,
    /// The drain must not start: the message says why and how to fix it.
    Refuse {
        message: String,
    },
}

impl Decision {
    /// True for pods that must be gone before the node may be terminated.
    pub fn must_leave(&self) -> bool {
        matches!(self, Decision::Evict { .. } | Decision::AwaitDeletion)
    }
}

const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// What [`decide`] needs besides the pod: the user's choices, and which
/// claims on the node keep their data on it (read beforehand by
/// [`super::local::resolve`], so the decision stays pure).
#[derive(Clone, Copy, Debug)]
pub struct PodRules<'a> {
    pub unmanaged: UnmanagedPods,
    pub local_storage: LocalStorage,
    pub local_claims: &'a NodeLocalClaims,
}

static NO_LOCAL_CLAIMS: NodeLocalClaims = NodeLocalClaims::none();

impl PodRules<'static> {
    /// The rules for a caller that does not read volumes (planning which
    /// pods a drain would evict): every claim counts as movable.
    pub fn without_local_claims(unmanaged: UnmanagedPods) -> Self {
        PodRules {
            unmanaged,
            local_storage: LocalStorage::Fail,
            local_claims: &NO_LOCAL_CLAIMS,
        }
    }
}

/// Decide what the drain does with `pod`.
pub fn decide(pod: &Pod, rules: &PodRules<'_>) -> Decision {
    if pod.metadata.deletion_timestamp.is_some() {
        return Decision::AwaitDeletion;
    }
    let finished = pods::is_finished(pod);
    let controller = pod
        .metadata
        .owner_references
        .as_ref()
        .and_then(|refs| refs.iter().find(|r| r.controller == Some(true)));
    if pods::is_daemon_pod(pod) {
        return if finished {
            Decision::Evict {
                reason: EvictReason::Finished,
            }
        } else {
            Decision::Skip {
                reason: SkipReason::DaemonSet,
            }
        };
    }
    if pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION))
    {
        return Decision::Skip {
            reason: SkipReason::Mirror,
        };
    }
    if finished {
        return Decision::Evict {
            reason: EvictReason::Finished,
        };
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    // Not a kubectl filter: kubectl evicts such pods and the data is gone
    // with the instance (https://kubernetes.io/docs/concepts/storage/volumes/#local).
    let local_claim = rules.local_claims.used_by(pod);
    if let (Some(local), LocalStorage::Fail) = (&local_claim, rules.local_storage) {
        return Decision::Refuse {
            message: format!(
                "pod {namespace}/{name} keeps its data on the node (PersistentVolumeClaim {}, PersistentVolume {} is local to it) and that data would be destroyed with the instance; set drain.localStorage: delete to accept losing it",
                local.claim, local.volume
            ),
        };
    }
    if controller.is_none() && rules.unmanaged == UnmanagedPods::Fail {
        return Decision::Refuse {
            message: format!(
                "pod {namespace}/{name} has no controller and would be lost; set drain.unmanagedPods: delete to evict it anyway"
            ),
        };
    }
    if local_claim.is_some() {
        return Decision::Evict {
            reason: EvictReason::LocalVolume,
        };
    }
    if controller.is_none() {
        return Decision::Evict {
            reason: EvictReason::Unmanaged,
        };
    }
    if uses_host_path(pod) {
        return Decision::Evict {
            reason: EvictReason::HostPath,
        };
    }
    let uses_empty_dir = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|vols| vols.iter().any(|v| v.empty_dir.is_some()));
    if uses_empty_dir {
        return Decision::Evict {
            reason: EvictReason::LocalStorage,
        };
    }
    Decision::Evict {
        reason: EvictReason::Managed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(extra: serde_json::Value) -> Pod {
        let mut base = json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Running"}
        });
        merge(&mut base, extra);
        serde_json::from_value(base).unwrap()
    }

    fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn owned_by(kind: &str, api: &str) -> serde_json::Value {
        json!({"metadata": {"ownerReferences": [
            {"apiVersion": api, "kind": kind, "name": "o", "uid": "x", "controller": true}
        ]}})
    }

    #[test]
    fn decisions_follow_kubectl_filter_order() {
        let rs = owned_by("ReplicaSet", "apps/v1");
        let ds = owned_by("DaemonSet", "apps/v1");
        let cases: Vec<(&str, Pod, UnmanagedPods, Decision)> = vec![
            (
                "managed pod is evicted",
                pod(rs.clone()),
                UnmanagedPods::Fail,
                Decision::Evict {
                    reason: EvictReason::Managed,
                },
            ),
            (
                "DaemonSet pod stays",
                pod(ds.clone()),
                UnmanagedPods::Fail,
                Decision::Skip {
                    reason: SkipReason::DaemonSet,
                },
            ),
            (
                "finished DaemonSet pod is cleaned up",
                {
                    let mut p = pod(ds);
                    p.status.as_mut().unwrap().phase = Some("Succeeded".into());
                    p
                },
                UnmanagedPods::Fail,
                Decision::Evict {
                    reason: EvictReason::Finished,
                },
            ),
            (
                "mirror pod stays",
                pod(json!({"metadata": {"annotations": {"kubernetes.io/config.mirror": "abc"}}})),
                UnmanagedPods::Fail,
                Decision::Skip {
                    reason: SkipReason::Mirror,
                },
            ),
            (
                "emptyDir pod is evicted: its data goes with the node",
                {
                    let mut v = rs.clone();
                    merge(
                        &mut v,
                        json!({"spec": {"volumes": [{"name": "cache", "emptyDir": {}}]}}),
                    );
                    pod(v)
                },
                UnmanagedPods::Fail,
                Decision::Evict {
                    reason: EvictReason::LocalStorage,
                },
            ),
            (
                "terminating pod is awaited",
                pod(json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}})),
                UnmanagedPods::Fail,
                Decision::AwaitDeletion,
            ),
            (
                "finished unmanaged pod is cleaned up",
                pod(json!({"status": {"phase": "Failed"}})),
                UnmanagedPods::Fail,
                Decision::Evict {
                    reason: EvictReason::Finished,
                },
            ),
            (
                "unmanaged pod under delete policy is evicted",
                pod(json!({})),
                UnmanagedPods::Delete,
                Decision::Evict {
                    reason: EvictReason::Unmanaged,
                },
            ),
        ];
        for (what, p, policy, expected) in cases {
            assert_eq!(
                decide(&p, &PodRules::without_local_claims(policy)),
                expected,
                "{what}"
            );
        }
    }

    #[test]
    fn unmanaged_pod_under_fail_policy_refuses_and_says_how_to_fix() {
        match decide(
            &pod(json!({})),
            &PodRules::without_local_claims(UnmanagedPods::Fail),
        ) {
            Decision::Refuse { message } => {
                assert!(message.contains("ns/p"));
                assert!(message.contains("drain.unmanagedPods: delete"));
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn with_claim(extra: serde_json::Value) -> Pod {
        let mut v = extra;
        merge(
            &mut v,
            json!({"spec": {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}}]}}),
        );
        pod(v)
    }

    fn local_data() -> NodeLocalClaims {
        [(
            ("ns".to_string(), "data-db-0".to_string()),
            "local-pv-1".to_string(),
        )]
        .into_iter()
        .collect()
    }

    #[test]
    fn a_pod_on_a_local_volume_is_refused_under_fail_naming_claim_volume_and_fix() {
        let claims = local_data();
        let rules = PodRules {
            unmanaged: UnmanagedPods::Delete,
            local_storage: LocalStorage::Fail,
            local_claims: &claims,
        };
        match decide(&with_claim(owned_by("StatefulSet", "apps/v1")), &rules) {
            Decision::Refuse { message } => {
                for part in [
                    "ns/p",
                    "data-db-0",
                    "local-pv-1",
                    "drain.localStorage: delete",
                ] {
                    assert!(message.contains(part), "{part} missing in {message}");
                }
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // The same pod on a claim that is not local moves as any other.
        assert_eq!(
            decide(
                &with_claim(owned_by("StatefulSet", "apps/v1")),
                &PodRules::without_local_claims(UnmanagedPods::Delete)
            ),
            Decision::Evict {
                reason: EvictReason::Managed
            }
        );
    }

    #[test]
    fn a_pod_on_a_local_volume_is_evicted_and_marked_under_delete() {
        let claims = local_data();
        let rules = PodRules {
            unmanaged: UnmanagedPods::Fail,
            local_storage: LocalStorage::Delete,
            local_claims: &claims,
        };
        let decision = decide(&with_claim(owned_by("StatefulSet", "apps/v1")), &rules);
        assert_eq!(
            decision,
            Decision::Evict {
                reason: EvictReason::LocalVolume
            }
        );
        assert!(EvictReason::LocalVolume.data_left_behind().is_some());
        // Accepting the data loss does not accept losing the pod itself.
        assert!(matches!(
            decide(&with_claim(json!({})), &rules),
            Decision::Refuse { .. }
        ));
    }

    #[test]
    fn host_path_pods_are_evicted_as_kubectl_does_and_marked() {
        let mut v = owned_by("ReplicaSet", "apps/v1");
        merge(
            &mut v,
            json!({"spec": {"volumes": [{"name": "logs", "hostPath": {"path": "/var/log/app"}}]}}),
        );
        assert_eq!(
            decide(
                &pod(v),
                &PodRules::without_local_claims(UnmanagedPods::Fail)
            ),
            Decision::Evict {
                reason: EvictReason::HostPath
            }
        );
        assert!(EvictReason::HostPath.data_left_behind().is_some());
        assert!(EvictReason::Managed.data_left_behind().is_none());
    }

    #[test]
    fn only_evicted_and_terminating_pods_must_leave() {
        assert!(Decision::AwaitDeletion.must_leave());
        assert!(
            Decision::Evict {
                reason: EvictReason::Managed
            }
            .must_leave()
        );
        assert!(
            !Decision::Skip {
                reason: SkipReason::Mirror
            }
            .must_leave()
        );
    }
}
