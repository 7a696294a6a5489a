//! What a rotation watches: every Node, the kube-system pods and the
//! VolumeAttachments, each in one cache that serves all slots and the
//! health gates, filed by what they look up, and decoded only as far as
//! they read.
//!
//! Each watch event is decoded into a type that declares the fields the
//! engine reads; the JSON decoder skips the rest without allocating it.
//! That is most of a pod (containers, volumes, container statuses), and
//! on real clusters most of a Node too: `status.images` (up to 50 image
//! names and sizes, the kubelet's `nodeStatusMaxImages`), and every
//! object's `managedFields`, dropped before it is kept. A cache of a
//! thousand Nodes lives for the whole run, and its events are decoded
//! thousands of times.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo, Pod, PodCondition,
    PodSpec, PodStatus,
};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher;
use kube::{Api, Client};
use serde::Deserialize;
use tokio::time::Instant;

use super::slot::InstanceIdOf;
use crate::kube::cache::{BY_NAME, WakeKey, WatchCache};
use crate::kube::decoded::resource_as;
use crate::kube::{nodes, pods};

/// Index of Nodes by the instance their providerID names (in any form the
/// pools' providers know).
pub const INSTANCE_ID: &str = "instance-id";
/// Index of kube-system pods by the node they are bound to, and of
/// VolumeAttachments by the node they attach to.
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
    WatchCache::builder_decoding(
        Api::<WatchedNode>::all(client),
        watcher::Config::default(),
        into_node,
    )
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
    .start()
    .await
}

/// The kube-system pods, by name, node and health.
pub async fn kube_system(client: Client) -> Result<WatchCache<Pod>, kube::Error> {
    WatchCache::builder_decoding(
        Api::<WatchedPod>::namespaced(client, "kube-system"),
        watcher::Config::default(),
        into_pod,
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
    .start()
    .await
}

/// Every VolumeAttachment, by the node it attaches to: what a slot waits
/// on before it terminates its old node (k8s-mechanics §7). One watch for
/// the run instead of a list per slot; there are few of them.
pub async fn volume_attachments(
    client: Client,
) -> Result<WatchCache<VolumeAttachment>, kube::Error> {
    WatchCache::builder(Api::all(client), watcher::Config::default())
        .index(
            ON_NODE,
            Arc::new(|va: &VolumeAttachment| Some(va.spec.node_name.clone())),
        )
        .start()
        .await
}

/// Wait until no VolumeAttachment on `node` is attached, as `attachments`
/// ([`volume_attachments`]) shows them: a drained node's volumes detach
/// before its VM goes away, so the attach/detach controller never has to
/// force-detach after 6 minutes (k8s-mechanics §7).
/// `false` when the deadline passes first; the names still attached are
/// logged.
pub async fn volumes_detached(
    attachments: &WatchCache<VolumeAttachment>,
    node: &str,
    deadline: Instant,
) -> bool {
    let attached = |cache: &WatchCache<VolumeAttachment>| -> Vec<String> {
        cache
            .by_key(ON_NODE, node)
            .iter()
            .filter(|va| va.status.as_ref().is_none_or(|s| s.attached))
            .map(|va| va.metadata.name.clone().unwrap_or_default())
            .collect()
    };
    let keys = [(ON_NODE, node.to_string())];
    let detached = attachments
        .wait_for_keys(&keys, deadline, |cache| {
            attached(cache).is_empty().then_some(())
        })
        .await
        .is_some();
    if !detached {
        tracing::warn!(node, still_attached = ?attached(attachments), "volumes did not detach in time");
    }
    detached
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

/// A Node as the cache decodes it: the fields the engine reads (labels,
/// annotations and owners in `metadata`; taints, providerID and
/// `unschedulable` in `spec`; conditions, addresses and the kubelet's
/// version in `status`). The decoder skips the rest of each object — on a
/// real Node `status.images` (up to 50 image names and sizes, the
/// kubelet's `nodeStatusMaxImages`), capacity, allocatable — instead of
/// allocating it to drop it.
#[derive(Clone, Debug, Deserialize)]
struct WatchedNode {
    metadata: ObjectMeta,
    spec: Option<NodeSpec>,
    status: Option<WatchedNodeStatus>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WatchedNodeStatus {
    addresses: Option<Vec<NodeAddress>>,
    conditions: Option<Vec<NodeCondition>>,
    node_info: Option<NodeSystemInfo>,
}

fn into_node(node: WatchedNode) -> Node {
    let mut metadata = node.metadata;
    metadata.managed_fields = None;
    Node {
        metadata,
        spec: node.spec,
        status: node.status.map(|status| NodeStatus {
            addresses: status.addresses,
            conditions: status.conditions,
            node_info: status.node_info,
            ..NodeStatus::default()
        }),
    }
}

/// A kube-system pod as the cache decodes it: what the gate and the slots
/// read — its metadata (owners, deletion, age), its node, its phase and
/// conditions. Containers, volumes and container statuses, most of a pod,
/// are skipped by the decoder.
#[derive(Clone, Debug, Deserialize)]
struct WatchedPod {
    metadata: ObjectMeta,
    spec: Option<WatchedPodSpec>,
    status: Option<WatchedPodStatus>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WatchedPodSpec {
    node_name: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
struct WatchedPodStatus {
    phase: Option<String>,
    conditions: Option<Vec<PodCondition>>,
}

fn into_pod(pod: WatchedPod) -> Pod {
    let mut metadata = pod.metadata;
    metadata.managed_fields = None;
    metadata.annotations = None;
    Pod {
        metadata,
        spec: pod.spec.map(|spec| PodSpec {
            node_name: spec.node_name,
            ..PodSpec::default()
        }),
        status: pod.status.map(|status| PodStatus {
            phase: status.phase,
            conditions: status.conditions,
            ..PodStatus::default()
        }),
    }
}

resource_as!(WatchedNode, Node);
resource_as!(WatchedPod, Pod);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_watched_pod_keeps_what_the_gate_decides_on() {
        let object = json!({
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
        });
        let pod: Pod = serde_json::from_value(object.clone()).unwrap();
        let facts = |pod: &Pod| {
            (
                pods::is_daemon_pod(pod),
                pods::is_ready(pod),
                pods::is_finished(pod),
                pods::node_name(pod).map(str::to_string),
                pod.metadata.creation_timestamp.clone(),
            )
        };
        let watched = into_pod(serde_json::from_value(object).unwrap());
        assert_eq!(facts(&pod), facts(&watched));
        assert!(watched.spec.unwrap().containers.is_empty());
        assert!(watched.status.unwrap().pod_ip.is_none());
        assert!(watched.metadata.managed_fields.is_none());
    }

    #[test]
    fn a_watched_node_keeps_what_slots_decide_on() {
        let object = json!({
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
                "images": [{"names": ["registry.k8s.io/pause:3.10"], "sizeBytes": 1}],
                "capacity": {"cpu": "2"}
            }
        });
        let mut node: Node = serde_json::from_value(object.clone()).unwrap();
        let watched = into_node(serde_json::from_value(object).unwrap());
        node.metadata.managed_fields = None;
        let status = node.status.as_mut().unwrap();
        status.images = None;
        status.capacity = None;
        assert_eq!(watched, node);
        assert_eq!(nodes::internal_ip(&watched), Some("10.0.0.1"));
        assert_eq!(
            nodes::kubelet_version(&watched),
            Some(crate::version::KubeVersion::new(1, 36, 0))
        );
    }
}
