//! Nodes: reading their state, the changes the engine makes to them, and a
//! watched cache that slots wait on.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

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

/// Every Node, kept current by one watch; waiters are woken on each change.
#[derive(Clone)]
pub struct NodeCache {
    store: Store<Node>,
    changed: watch::Receiver<u64>,
    _task: Arc<AbortOnDrop>,
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl NodeCache {
    /// Start watching nodes. Returns once the first list is in.
    pub async fn start(client: Client) -> Result<NodeCache, kube::Error> {
        let api: Api<Node> = Api::all(client);
        let (store, writer) = reflector::store();
        let (tx, changed) = watch::channel(0u64);
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .reflect(writer);
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            let mut n = 0u64;
            while let Some(event) = stream.next().await {
                if let Err(e) = event {
                    tracing::debug!(error = %e, "node watch interrupted; resuming");
                    continue;
                }
                n += 1;
                let _ = tx.send(n);
            }
        });
        let cache = NodeCache {
            store,
            changed,
            _task: Arc::new(AbortOnDrop(task)),
        };
        cache
            .store
            .wait_until_ready()
            .await
            .map_err(|e| kube::Error::Service(Box::new(e)))?;
        Ok(cache)
    }

    pub fn get(&self, name: &str) -> Option<Arc<Node>> {
        self.store
            .find(|n| n.metadata.name.as_deref() == Some(name))
    }

    pub fn all(&self) -> Vec<Arc<Node>> {
        self.store.state()
    }

    pub fn find(&self, predicate: impl Fn(&Node) -> bool) -> Option<Arc<Node>> {
        self.store.find(predicate)
    }

    /// Wait until `check` returns `Some` over the current nodes, or the
    /// deadline passes (`None`). Woken by the watch, never polling.
    pub async fn wait_for<T>(
        &self,
        deadline: Instant,
        mut check: impl FnMut(&NodeCache) -> Option<T>,
    ) -> Option<T> {
        let mut changed = self.changed.clone();
        loop {
            changed.borrow_and_update();
            if let Some(found) = check(self) {
                return Some(found);
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => continue,
                // The watch task ended (only on shutdown) or the deadline passed.
                _ => return check(self),
            }
        }
    }
}
