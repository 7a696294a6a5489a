//! Nodes: reading their state and the changes the engine makes to them.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use k8s_openapi::api::core::v1::{Node, Taint};
use kube::api::{DeleteParams, ListParams, Patch, Preconditions};
use kube::{Api, Client};
use serde_json::{Value, json};

use super::errors;
use super::pages::visit_pages;
use super::retry::with_retry;
use super::write;
use crate::version::KubeVersion;

/// Label that takes a node out of cloud load balancers at once (cordoning
/// does not since v1.19; k8s-mechanics §7).
pub const EXCLUDE_LB_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
/// Label of control-plane nodes.
pub const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";
/// The taint kubelets with `--cloud-provider=external` register with,
/// until the cloud controller manager initializes the Node
/// (k8s.io/cloud-provider `api/well_known_taints.go`).
pub const UNINITIALIZED_TAINT: &str = "node.cloudprovider.kubernetes.io/uninitialized";
/// Zone label.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// True when the node's Ready condition is `True`.
pub fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// True when the node may receive the pods drained onto it: Ready at the
/// `target` kubelet version, carrying its zone label (pods with zone
/// affinity or zone spread constraints need it), and without a NoSchedule
/// or NoExecute taint other than the pool's own `allowed` ones — a cloud
/// controller's `node.cloudprovider.kubernetes.io/uninitialized`, a
/// `not-ready` or `unreachable` taint keep pods away however Ready the
/// node says it is.
pub fn ready_for_pods(node: &Node, target: KubeVersion, allowed: &[Taint]) -> bool {
    let blocking_taint = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|taints| {
            taints.iter().any(|t| {
                matches!(t.effect.as_str(), "NoSchedule" | "NoExecute")
                    && !allowed
                        .iter()
                        .any(|a| a.key == t.key && a.effect == t.effect)
            })
        });
    is_ready(node)
        && kubelet_version(node) == Some(target)
        && label(node, ZONE_LABEL).is_some_and(|z| !z.is_empty())
        && !blocking_taint
}

/// True when the node is cordoned.
pub fn is_unschedulable(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
}

/// The kubelet version the node reports.
pub fn kubelet_version(node: &Node) -> Option<KubeVersion> {
    node.status
        .as_ref()
        .and_then(|s| s.node_info.as_ref())
        .and_then(|i| i.kubelet_version.parse().ok())
}

pub fn provider_id(node: &Node) -> Option<&str> {
    node.spec.as_ref().and_then(|s| s.provider_id.as_deref())
}

pub fn label<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map(String::as_str)
}

pub fn annotation<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.metadata
        .annotations
        .as_ref()
        .and_then(|l| l.get(key))
        .map(String::as_str)
}

pub fn name(node: &Node) -> &str {
    node.metadata.name.as_deref().unwrap_or("")
}

pub fn internal_ip(node: &Node) -> Option<&str> {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
        .map(|a| a.address.as_str())
}

/// The patch of [`NodeOps::cordon_marked`].
fn cordon_patch(labels: &[(&str, &str)], annotations: &BTreeMap<String, Option<String>>) -> Value {
    let mut patch = json!({"spec": {"unschedulable": true}});
    if !labels.is_empty() {
        let map: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        patch["metadata"]["labels"] = Value::Object(map);
    }
    if !annotations.is_empty() {
        patch["metadata"]["annotations"] = Value::Object(annotation_map(annotations));
    }
    patch
}

/// Annotations to set (Some) or remove (None), as a merge patch writes them.
fn annotation_map(
    annotations: &BTreeMap<String, Option<String>>,
) -> serde_json::Map<String, Value> {
    annotations
        .iter()
        .map(|(k, v)| (k.clone(), v.as_ref().map_or(Value::Null, |v| json!(v))))
        .collect()
}

/// The changes the engine makes to nodes; each is idempotent and rides
/// through API server outages.
#[derive(Clone)]
pub struct NodeOps {
    api: Api<Node>,
    client: Client,
}

impl NodeOps {
    pub fn new(client: Client) -> NodeOps {
        NodeOps {
            api: Api::all(client.clone()),
            client,
        }
    }

    /// Send `patch` to `node` until it succeeds or fails for good. The
    /// Node the server answers with is not decoded (see [`super::write`]).
    async fn patch(&self, what: &str, node: &str, patch: &Patch<Value>) -> Result<(), kube::Error> {
        with_retry(what, || {
            write::patch::<Node, _>(&self.client, None, node, patch)
        })
        .await
    }

    async fn merge(&self, node: &str, patch: Value) -> Result<(), kube::Error> {
        self.patch("patch node", node, &Patch::Merge(patch)).await
    }

    /// Cordon: what `kubectl cordon` sends (k8s-mechanics §4).
    pub async fn cordon(&self, node: &str) -> Result<(), kube::Error> {
        self.cordon_marked(node, &[], &BTreeMap::new()).await
    }

    /// Set `labels` and `annotations` (None removes one) and cordon in one
    /// patch: one request where a drain used three, and no moment where the
    /// node carries one change without the others. A strategic merge patch
    /// merges `metadata.labels` and `metadata.annotations` key by key, a
    /// null removing the key, as a JSON merge patch does
    /// (https://kubernetes.io/docs/tasks/manage-kubernetes-objects/update-api-object-kubectl-patch/).
    pub async fn cordon_marked(
        &self,
        node: &str,
        labels: &[(&str, &str)],
        annotations: &BTreeMap<String, Option<String>>,
    ) -> Result<(), kube::Error> {
        self.patch(
            "cordon",
            node,
            &Patch::Strategic(cordon_patch(labels, annotations)),
        )
        .await
    }

    pub async fn uncordon(&self, node: &str) -> Result<(), kube::Error> {
        let patch = json!({"spec": {"unschedulable": null}});
        self.patch("uncordon", node, &Patch::Strategic(patch)).await
    }

    /// Set (Some) or remove (None) labels.
    pub async fn label(
        &self,
        node: &str,
        labels: &[(&str, Option<&str>)],
    ) -> Result<(), kube::Error> {
        let map: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.map_or(Value::Null, |v| json!(v))))
            .collect();
        self.merge(node, json!({"metadata": {"labels": map}})).await
    }

    /// Set (Some) or remove (None) annotations.
    pub async fn annotate(
        &self,
        node: &str,
        annotations: &BTreeMap<String, Option<String>>,
    ) -> Result<(), kube::Error> {
        self.merge(
            node,
            json!({"metadata": {"annotations": annotation_map(annotations)}}),
        )
        .await
    }

    /// The first Node `wanted` accepts, read from the API server now (every
    /// page), not from a watch that may lag: for the decisions that must not
    /// rest on a stale view.
    pub async fn find_now(
        &self,
        wanted: impl Fn(&Node) -> bool,
    ) -> Result<Option<Node>, kube::Error> {
        let params = ListParams::default();
        // A transient failure lists again from the first page: a continue
        // token need not survive the API server restart that caused it.
        with_retry("list nodes", || {
            visit_pages(&self.api, &params, |page: Vec<Node>| {
                match page.into_iter().find(|n| wanted(n)) {
                    Some(node) => ControlFlow::Break(node),
                    None => ControlFlow::Continue(()),
                }
            })
        })
        .await
    }

    /// Delete the Node object (only that node: pinned to its UID). Absent
    /// already is success.
    pub async fn delete(&self, node: &str, uid: Option<&str>) -> Result<(), kube::Error> {
        let params = DeleteParams {
            preconditions: uid.map(|u| Preconditions {
                uid: Some(u.to_string()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match with_retry("delete node", || {
            write::delete::<Node>(&self.client, None, node, &params)
        })
        .await
        {
            Ok(_) => Ok(()),
            Err(e) if errors::is_not_found(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_plain_cordon_is_kubectls_patch_and_a_marked_one_adds_only_its_keys() {
        assert_eq!(
            cordon_patch(&[], &BTreeMap::new()),
            json!({"spec": {"unschedulable": true}})
        );
        let annotations = BTreeMap::from([
            ("a/phase".to_string(), Some("draining".to_string())),
            ("a/blocked".to_string(), None),
        ]);
        assert_eq!(
            cordon_patch(&[("l/lb", "true")], &annotations),
            json!({
                "spec": {"unschedulable": true},
                "metadata": {
                    "labels": {"l/lb": "true"},
                    "annotations": {"a/phase": "draining", "a/blocked": null},
                },
            })
        );
    }

    fn node(taints: serde_json::Value, zone: Option<&str>) -> Node {
        let mut labels = json!({});
        if let Some(zone) = zone {
            labels[ZONE_LABEL] = json!(zone);
        }
        serde_json::from_value(json!({
            "metadata": {"name": "n", "labels": labels},
            "spec": {"taints": taints},
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "nodeInfo": {"kubeletVersion": "v1.35.3", "machineID": "", "systemUUID": "", "bootID": "",
                    "kernelVersion": "", "osImage": "", "containerRuntimeVersion": "", "kubeProxyVersion": "",
                    "operatingSystem": "linux", "architecture": "amd64"},
            },
        }))
        .unwrap()
    }

    #[test]
    fn a_node_receives_pods_only_initialized_untainted_and_in_a_zone() {
        let target = KubeVersion::new(1, 35, 3);
        let dedicated = Taint {
            key: "dedicated".into(),
            value: Some("batch".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        };
        assert!(ready_for_pods(
            &node(json!([]), Some("zone-a")),
            target,
            &[]
        ));
        assert!(
            !ready_for_pods(&node(json!([]), None), target, &[]),
            "no zone label yet"
        );
        let uninitialized = json!([{"key": "node.cloudprovider.kubernetes.io/uninitialized", "value": "true", "effect": "NoSchedule"}]);
        assert!(!ready_for_pods(
            &node(uninitialized, Some("zone-a")),
            target,
            &[]
        ));
        let own = json!([{"key": "dedicated", "value": "batch", "effect": "NoSchedule"}]);
        assert!(ready_for_pods(
            &node(own.clone(), Some("zone-a")),
            target,
            std::slice::from_ref(&dedicated)
        ));
        assert!(!ready_for_pods(&node(own, Some("zone-a")), target, &[]));
        let soft = json!([{"key": "x", "effect": "PreferNoSchedule"}]);
        assert!(ready_for_pods(&node(soft, Some("zone-a")), target, &[]));
        assert!(!ready_for_pods(
            &node(json!([]), Some("zone-a")),
            KubeVersion::new(1, 34, 0),
            &[]
        ));
    }
}
