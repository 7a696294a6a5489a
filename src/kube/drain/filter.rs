//! Which pods a drain evicts, skips or refuses: a pure decision per pod,
//! with the reason, in kubectl's filter order (k8s-mechanics §4).

use crate::kube::pods;
use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;

use super::policy::UnmanagedPods;

/// Why a pod is evicted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
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
}

/// Why a pod stays on the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SkipReason {
    /// DaemonSet pods run on every node and die with this one.
    DaemonSet,
    /// Static pods belong to the node's kubelet.
    Mirror,
}

/// The drain's decision for one pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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

/// Decide what the drain does with `pod`.
pub fn decide(pod: &Pod, unmanaged: UnmanagedPods) -> Decision {
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
    if controller.is_none() {
        return match unmanaged {
            UnmanagedPods::Delete => Decision::Evict {
                reason: EvictReason::Unmanaged,
            },
            UnmanagedPods::Fail => Decision::Refuse {
                message: format!(
                    "pod {}/{} has no controller and would be lost; set drain.unmanagedPods: delete to evict it anyway",
                    pod.metadata.namespace.as_deref().unwrap_or(""),
                    pod.metadata.name.as_deref().unwrap_or("")
                ),
            },
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
            assert_eq!(decide(&p, policy), expected, "{what}");
        }
    }

    #[test]
    fn unmanaged_pod_under_fail_policy_refuses_and_says_how_to_fix() {
        match decide(&pod(json!({})), UnmanagedPods::Fail) {
            Decision::Refuse { message } => {
                assert!(message.contains("ns/p"));
                assert!(message.contains("drain.unmanagedPods: delete"));
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
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
