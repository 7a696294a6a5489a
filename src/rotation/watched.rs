//! What a rotation watches: every Node and the kube-system pods, each in
//! one cache that serves all slots and the health gates, filed by what they
//! look up and trimmed to what they read.
//!
//! Trimming matters on real clusters more than on the test world: a real
//! Node carries `status.images` (up to 50 image names and sizes, the
//! kubelet's `nodeStatusMaxImages`) and every object its `managedFields`,
//! often most of its size; a cache of a thousand of them is kept for the
//! whole run.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, PodSpec, PodStatus};
use kube::runtime::watcher;
use kube::{Api, Client};

use super::slot::InstanceIdOf;
use crate::kube::cache::{BY_NAME, WakeKey, WatchCache};
use crate::kube::{nodes, pods};

/// Index of Nodes by the instance their providerID names (in any form the
/// pools' providers know).
pub const INSTANCE_ID: &str = "instance-id";
/// Index of kube-system pods by the node they are bound to.
pub const ON_NODE: &str = "node";
/// Index of what may hold a health gate: Nodes that are schedulable but
/// not Ready, pods that are not Ready, not finished and not leaving. Filed
/// under [`NOT_READY`] alone, so the gate reads a handful of objects, not
/// the cluster.
pub const HEALTH: &str = "health";
pub const NOT_READY: &str = "not-ready";

/// Every Node, by name, instance and health.
pub async fn nodes(
    client: Client,
    instance_id: InstanceIdOf,
) -> Result<WatchCache<Node>, kube::Error> {
    WatchCache::builder(Api::all(client), watcher::Config::default())
        .index(
            INSTANCE_ID,
            Arc::new(move |node: &Node| instance_id.of(node)),
        )
        .index(
            HEALTH,
            Arc::new(|node: &Node| {
                (!nodes::is_unschedulable(node) && !nodes::is_ready(node))
                    .then(|| NOT_READY.to_string())
            }),
        )
        .trim(trim_node)
        .start()
        .await
}

/// The kube-system pods, by name, node and health.
pub async fn kube_system(client: Client) -> Result<WatchCache<Pod>, kube::Error> {
    WatchCache::builder(
        Api::namespaced(client, "kube-system"),
        watcher::Config::default(),
    )
    .index(
        ON_NODE,
        Arc::new(|pod: &Pod| pods::node_name(pod).map(str::to_string)),
    )
    .index(
        HEALTH,
        Arc::new(|pod: &Pod| {
            (pod.metadata.deletion_timestamp.is_none()
                && !pods::is_finished(pod)
                && !pods::is_ready(pod))
            .then(|| NOT_READY.to_string())
        }),
    )
    .trim(trim_pod)
    .start()
    .await
}

/// What a waiter for `instance`'s Node wakes on: Nodes that name the
/// instance, and the Node named as the slot named the machine (before a
/// providerID is set).
pub fn node_of_instance(instance: &kubesurge_provider::Instance) -> Vec<WakeKey> {
    let mut keys = vec![(INSTANCE_ID, instance.id.0.clone())];
    if let Some(name) = instance.tag(kubesurge_provider::tags::NAME) {
        keys.push((BY_NAME, name.to_string()));
    }
    keys
}

/// Drop what no reader of the node cache uses.
fn trim_node(node: &mut Node) {
    node.metadata.managed_fields = None;
    if let Some(status) = node.status.as_mut() {
        status.images = None;
        status.config = None;
        status.volumes_attached = None;
        status.volumes_in_use = None;
    }
}

/// Keep of a kube-system pod what the gate and the slots read: its
/// metadata (owners, deletion, age), its node, its phase and conditions.
fn trim_pod(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    pod.metadata.annotations = None;
    pod.spec = pod.spec.take().map(|spec| PodSpec {
        node_name: spec.node_name,
        ..PodSpec::default()
    });
    pod.status = pod.status.take().map(|status| PodStatus {
        phase: status.phase,
        conditions: status.conditions,
        ..PodStatus::default()
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_trimmed_pod_keeps_what_the_gate_decides_on() {
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {
                "name": "kube-proxy-x",
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "annotations": {"big": "x"},
                "managedFields": [{"manager": "kubelet"}],
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet",
                    "name": "kube-proxy", "uid": "u", "controller": true}]
            },
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1",
                "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        let facts = |pod: &Pod| {
            (
                pods::is_daemon_pod(pod),
                pods::is_ready(pod),
                pods::is_finished(pod),
                pods::node_name(pod).map(str::to_string),
                pod.metadata.creation_timestamp.clone(),
            )
        };
        let before = facts(&pod);
        trim_pod(&mut pod);
        let after = facts(&pod);
        assert_eq!(before, after);
        assert!(pod.spec.unwrap().containers.is_empty());
        assert!(pod.metadata.managed_fields.is_none());
    }

    #[test]
    fn a_trimmed_node_keeps_what_slots_decide_on() {
        let mut node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1", "labels": {"pool": "a"},
                "annotations": {"kubesurge.io/x": "y"},
                "managedFields": [{"manager": "kubelet"}]},
            "spec": {"providerID": "aws:///us-east-1a/i-1", "unschedulable": true,
                "taints": [{"key": "k", "effect": "NoSchedule"}]},
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "nodeInfo": {"kubeletVersion": "v1.36.0", "architecture": "amd64",
                    "bootID": "", "containerRuntimeVersion": "", "kernelVersion": "",
                    "kubeProxyVersion": "", "machineID": "", "operatingSystem": "linux",
                    "osImage": "", "systemUUID": ""},
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                "images": [{"names": ["registry.k8s.io/pause:3.10"], "sizeBytes": 1}]
            }
        }))
        .unwrap();
        let mut trimmed = node.clone();
        trim_node(&mut trimmed);
        node.metadata.managed_fields = None;
        node.status.as_mut().unwrap().images = None;
        assert_eq!(trimmed, node);
        assert_eq!(nodes::internal_ip(&trimmed), Some("10.0.0.1"));
    }
}
