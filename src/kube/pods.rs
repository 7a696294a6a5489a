//! Facts about a pod that several parts of the engine decide on.

use k8s_openapi::api::core::v1::Pod;

/// The pod's phase; a pod without a status is `Pending`.
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Ran to completion or failed for good.
pub fn is_finished(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// The `Ready` condition is `True`.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Its controller is a DaemonSet (`apps/*`).
pub fn is_daemon_pod(pod: &Pod) -> bool {
    pod.metadata.owner_references.as_ref().is_some_and(|refs| {
        refs.iter().any(|r| {
            r.controller == Some(true)
                && r.kind == "DaemonSet"
                && r.api_version.starts_with("apps/")
        })
    })
}

/// The node it is bound to, if any.
pub fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn readiness_phase_and_owner_are_read_from_the_object() {
        let daemon = pod(json!({
            "metadata": {"name": "kube-proxy-x", "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "kube-proxy", "uid": "1", "controller": true}
            ]},
            "spec": {"nodeName": "n1", "containers": []},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        }));
        assert!(is_daemon_pod(&daemon));
        assert!(is_ready(&daemon));
        assert!(!is_finished(&daemon));
        assert_eq!(node_name(&daemon), Some("n1"));

        let bare = pod(json!({"metadata": {"name": "p"}}));
        assert_eq!(phase(&bare), "Pending");
        assert!(!is_ready(&bare));
        assert!(!is_daemon_pod(&bare));
        assert_eq!(node_name(&bare), None);

        let not_controller = pod(json!({
            "metadata": {"name": "p", "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "d", "uid": "1"}
            ]},
            "status": {"phase": "Succeeded"}
        }));
        assert!(!is_daemon_pod(&not_controller));
        assert!(is_finished(&not_controller));
    }
}
