//! Nodes: reading their state and the changes the engine makes to them.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use k8s_openapi::api::core::v1::Node;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::{Api, Client};
use serde_json::{Value, json};

use super::pages::visit_pages;
use super::retry::with_retry;
use crate::version::KubeVersion;

/// Label that takes a node out of cloud load balancers at once (cordoning
/// does not since v1.19; k8s-mechanics §7).
pub const EXCLUDE_LB_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
/// Label of control-plane nodes.
pub const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";
/// Zone label.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// True when the node's Ready condition is `True`.
pub fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
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

/// The changes the engine makes to nodes; each is idempotent and rides
/// through API server outages.
#[derive(Clone)]
pub struct NodeOps {
    api: Api<Node>,
}

impl NodeOps {
    pub fn new(client: Client) -> NodeOps {
        NodeOps {
            api: Api::all(client),
        }
    }

    async fn merge(&self, node: &str, patch: Value) -> Result<(), kube::Error> {
        let params = PatchParams::default();
        let patch = Patch::Merge(&patch);
        with_retry("patch node", || self.api.patch(node, &params, &patch))
            .await
            .map(|_| ())
    }

    /// Cordon: what `kubectl cordon` sends (k8s-mechanics §4).
    pub async fn cordon(&self, node: &str) -> Result<(), kube::Error> {
        let patch = json!({"spec": {"unschedulable": true}});
        let params = PatchParams::default();
        let patch = Patch::Strategic(&patch);
        with_retry("cordon", || self.api.patch(node, &params, &patch))
            .await
            .map(|_| ())
    }

    pub async fn uncordon(&self, node: &str) -> Result<(), kube::Error> {
        let patch = json!({"spec": {"unschedulable": null}});
        let params = PatchParams::default();
        let patch = Patch::Strategic(&patch);
        with_retry("uncordon", || self.api.patch(node, &params, &patch))
            .await
            .map(|_| ())
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
        let map: serde_json::Map<String, Value> = annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.as_ref().map_or(Value::Null, |v| json!(v))))
            .collect();
        self.merge(node, json!({"metadata": {"annotations": map}}))
            .await
    }

    /// The Node whose `spec.providerID` is `provider_id`, read from the API
    /// server now (every page), not from a watch that may lag: for the
    /// decisions that must not rest on a stale view.
    pub async fn by_provider_id(&self, wanted: &str) -> Result<Option<Node>, kube::Error> {
        let params = ListParams::default();
        // A transient failure lists again from the first page: a continue
        // token need not survive the API server restart that caused it.
        with_retry("list nodes", || {
            visit_pages(&self.api, &params, |page: Vec<Node>| {
                match page.into_iter().find(|n| provider_id(n) == Some(wanted)) {
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
        match with_retry("delete node", || self.api.delete(node, &params)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }
}
