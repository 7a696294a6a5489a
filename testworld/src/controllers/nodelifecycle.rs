//! The node lifecycle controller (`kubernetes:pkg/controller/nodelifecycle`).
//!
//! - A node whose kubelet has not renewed its Lease (nor refreshed its
//!   Ready heartbeat) for `node_monitor_grace` gets its kubelet conditions
//!   set to Unknown (`NodeStatusUnknown`, "Kubelet stopped posting node
//!   status."), the `node.kubernetes.io/unreachable` NoSchedule and
//!   NoExecute taints, an Event `NodeNotReady`, and its pods marked not
//!   Ready (`MarkPodsNotReady`). Silence is measured from when this
//!   controller saw the last renewal, as the real one does.
//! - The unreachable taints stay exactly while Ready is Unknown, and the
//!   `node.kubernetes.io/unschedulable:NoSchedule` taint exactly while
//!   `spec.unschedulable` is true.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::events::{EventRecorder, Source, node_ref};
use super::informer::{At, Change, Key, Reconciler, Slice, WorkQueue, str_at};
use super::objects::{condition_status, node_name_of, uid_of};
use crate::Timing;
use crate::resources::{LEASES, NODES, PODS};
use crate::store::{Store, StoreError, rfc3339};

pub const LEASE_NAMESPACE: &str = "kube-node-lease";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// The conditions the kubelet owns and this controller sets to Unknown.
const KUBELET_CONDITIONS: &[&str] = &["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// Which objects the controller watches: nodes, node leases, bound pods.
pub(crate) fn interest(resource: &'static crate::resources::Resource, object: &Value) -> bool {
    if std::ptr::eq(resource, &LEASES) {
        str_at(object, "/metadata/namespace") == LEASE_NAMESPACE
    } else if std::ptr::eq(resource, &PODS) {
        !node_name_of(object).is_empty()
    } else {
        true
    }
}

/// The taints `node` should have: its own, with the unreachable taints
/// present exactly while Ready is Unknown and the unschedulable taint
/// exactly while cordoned. `None` when nothing changes.
pub fn desired_taints(node: &Value, now: Timestamp) -> Option<Vec<Value>> {
    let current: Vec<Value> = node
        .at("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let unreachable = condition_status(node, "Ready") == Some("Unknown");
    let cordoned = node.at("/spec/unschedulable").and_then(Value::as_bool) == Some(true);
    let has = |key: &str, effect: &str| {
        current
            .iter()
            .any(|t| t["key"] == key && t["effect"] == effect)
    };
    let wanted = [
        (UNREACHABLE, "NoSchedule", unreachable),
        (UNREACHABLE, "NoExecute", unreachable),
        (UNSCHEDULABLE, "NoSchedule", cordoned),
    ];
    if wanted.iter().all(|(k, e, want)| has(k, e) == *want) {
        return None;
    }
    let mut next: Vec<Value> = current
        .iter()
        .filter(|t| {
            !wanted
                .iter()
                .any(|(k, e, want)| !want && t["key"] == *k && t["effect"] == *e)
        })
        .cloned()
        .collect();
    for (k, e, want) in wanted {
        if want && !has(k, e) {
            next.push(json!({"key": k, "effect": e, "timeAdded": rfc3339(now)}));
        }
    }
    Some(next)
}

/// `node` with its kubelet conditions Unknown.
fn mark_unknown(node: &mut Value, now: &str) {
    let Some(conditions) = node
        .pointer_mut("/status/conditions")
        .and_then(Value::as_array_mut)
    else {
        node["status"]["conditions"] = json!([{
            "type": "Ready", "status": "Unknown", "reason": "NodeStatusNeverUpdated",
            "message": "Kubelet never posted node status.", "lastHeartbeatTime": null, "lastTransitionTime": now,
        }]);
        return;
    };
    for c in conditions.iter_mut() {
        let kind = c["type"].as_str().unwrap_or("");
        if !KUBELET_CONDITIONS.contains(&kind) || c["status"] == "Unknown" {
            continue;
        }
        c["status"] = json!("Unknown");
        c["reason"] = json!("NodeStatusUnknown");
        c["message"] = json!("Kubelet stopped posting node status.");
        c["lastTransitionTime"] = json!(now);
    }
}

struct Health {
    last_seen: Instant,
    /// The node's uid, to notice a re-registered node.
    uid: String,
}

pub(crate) struct NodeLifecycle {
    store: Arc<Store>,
    events: Arc<EventRecorder>,
    grace: Duration,
    period: Duration,
    nodes: HashMap<String, Arc<Value>>,
    health: HashMap<String, Health>,
    /// Lease renewals seen before the node itself.
    early_renewals: HashMap<String, Instant>,
    pods_on: HashMap<String, HashSet<Key>>,
    pod_node: HashMap<Key, String>,
    dirty: WorkQueue<String>,
    next_check: Option<Instant>,
}

impl NodeLifecycle {
    pub fn new(store: Arc<Store>, timing: &Timing, events: Arc<EventRecorder>) -> Self {
        NodeLifecycle {
            store,
            events,
            grace: timing.node_monitor_grace,
            // The real monitor period is a tenth of the grace (5 s of 50 s).
            period: (timing.node_monitor_grace / 10).max(Duration::from_millis(5)),
            nodes: HashMap::new(),
            health: HashMap::new(),
            early_renewals: HashMap::new(),
            pods_on: HashMap::new(),
            pod_node: HashMap::new(),
            dirty: WorkQueue::new(),
            next_check: None,
        }
    }

    fn seen(&mut self, node: &str, at: Instant) {
        match self.health.get_mut(node) {
            Some(h) => h.last_seen = at,
            None => {
                self.early_renewals.insert(node.to_string(), at);
            }
        }
    }

    fn apply_node(&mut self, change: &Change) {
        let name = change.name.clone();
        let now = Instant::now();
        match change.current() {
            None => {
                self.nodes.remove(&name);
                if let Some(h) = self.health.remove(&name) {
                    self.record(
                        &name,
                        &h.uid,
                        "RemovingNode",
                        &format!("Removing Node {name} from Controller"),
                    );
                }
                self.early_renewals.remove(&name);
            }
            Some(node) => {
                let uid = uid_of(node).to_string();
                let heartbeat = |n: &Value| ready_heartbeat(n).map(str::to_string);
                let beat_changed = self
                    .nodes
                    .get(&name)
                    .is_none_or(|old| heartbeat(old) != heartbeat(node));
                match self.health.get_mut(&name) {
                    Some(h) if h.uid == uid => {
                        if beat_changed {
                            h.last_seen = now;
                        }
                    }
                    _ => {
                        let last_seen = self
                            .early_renewals
                            .remove(&name)
                            .map_or(now, |t| t.max(now));
                        self.record(
                            &name,
                            &uid,
                            "RegisteredNode",
                            &format!("Registered Node {name} in Controller"),
                        );
                        self.health.insert(name.clone(), Health { last_seen, uid });
                    }
                }
                self.nodes.insert(name.clone(), node.clone());
                self.dirty.push(name);
            }
        }
    }

    fn apply_lease(&mut self, change: &Change) {
        let Some(lease) = change.current() else {
            return;
        };
        let renewed = change
            .previous
            .as_ref()
            .is_none_or(|p| p.at("/spec/renewTime") != lease.at("/spec/renewTime"));
        if renewed {
            self.seen(&change.name.clone(), Instant::now());
        }
    }

    fn apply_pod(&mut self, change: &Change) {
        let key = change.key();
        if let Some(old) = self.pod_node.remove(&key)
            && let Some(s) = self.pods_on.get_mut(&old)
        {
            s.remove(&key);
        }
        if let Some(pod) = change.current() {
            let node = node_name_of(pod);
            if !node.is_empty() {
                self.pod_node.insert(key.clone(), node.to_string());
                self.pods_on
                    .entry(node.to_string())
                    .or_default()
                    .insert(key);
            }
        }
    }

    /// Keep the lifecycle taints in line with the node's state.
    fn sync_taints(&self, name: &str) {
        let now = Timestamp::now();
        let needed = self
            .nodes
            .get(name)
            .is_some_and(|n| desired_taints(n, now).is_some());
        if !needed {
            return;
        }
        let result = self.store.modify(&NODES, "", name, |node| {
            if let Some(taints) = desired_taints(node, now) {
                node["spec"]["taints"] = json!(taints);
            }
            Ok(())
        });
        if let Err(e) = result
            && !matches!(e, StoreError::NotFound { .. })
        {
            tracing::warn!(error = %e, "node lifecycle controller could not update taints of {name}");
        }
    }

    /// The kubelet went silent: conditions Unknown, taints, event, pods.
    fn mark_silent(&self, name: &str) {
        let now = Timestamp::now();
        let stamp = rfc3339(now);
        let result = self.store.modify(&NODES, "", name, |node| {
            mark_unknown(node, &stamp);
            if let Some(taints) = desired_taints(node, now) {
                node["spec"]["taints"] = json!(taints);
            }
            Ok(())
        });
        let node = match result {
            Ok(node) => node,
            Err(e) => {
                if !matches!(e, StoreError::NotFound { .. }) {
                    tracing::warn!(error = %e, "node lifecycle controller could not mark {name} unknown");
                }
                return;
            }
        };
        self.record_not_ready(&node);
        for (ns, pod) in self.pods_on.get(name).into_iter().flatten() {
            // Pods that changed or vanished meanwhile are left alone.
            let _ = self.store.modify(&PODS, ns, pod, |p| {
                if node_name_of(p) != name {
                    return Ok(());
                }
                if let Some(conditions) = p
                    .pointer_mut("/status/conditions")
                    .and_then(Value::as_array_mut)
                {
                    for c in conditions
                        .iter_mut()
                        .filter(|c| c["type"] == "Ready" && c["status"] == "True")
                    {
                        c["status"] = json!("False");
                        c["lastTransitionTime"] = json!(stamp);
                    }
                }
                Ok(())
            });
        }
    }

    fn record_not_ready(&self, node: &Value) {
        let name = str_at(node, "/metadata/name");
        // `pkg/controller/nodelifecycle`: `RecordNodeStatusChange`.
        self.events.record(
            CONTROLLER,
            node_ref(name, uid_of(node)),
            "Normal",
            "NodeNotReady",
            &format!("Node {name} status is now: NodeNotReady"),
        );
    }

    /// `controller/util/node.RecordNodeEvent`: "Node <name> event: <what>".
    fn record(&self, name: &str, uid: &str, reason: &str, what: &str) {
        self.events.record(
            CONTROLLER,
            node_ref(name, uid),
            "Normal",
            reason,
            &format!("Node {name} event: {what}"),
        );
    }
}

/// Who the node lifecycle controller's Events come from.
const CONTROLLER: Source<'static> = Source {
    component: "node-controller",
    host: "",
};

/// The Ready condition's `lastHeartbeatTime`.
fn ready_heartbeat(node: &Value) -> Option<&str> {
    node.at("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["lastHeartbeatTime"].as_str())
}

impl Reconciler for NodeLifecycle {
    fn apply(&mut self, change: Change) {
        if change.is(&NODES) {
            self.apply_node(&change);
        } else if change.is(&LEASES) {
            self.apply_lease(&change);
        } else if change.is(&PODS) {
            self.apply_pod(&change);
        }
    }

    fn reconcile(&mut self, slice: &Slice) -> Option<Instant> {
        let now = slice.now;
        while let Some(name) = self.dirty.pop() {
            self.sync_taints(&name);
            if slice.spent() {
                return Some(now);
            }
        }
        if self.next_check.is_none_or(|at| at <= now) {
            let silent: Vec<String> = self
                .health
                .iter()
                .filter(|(name, h)| {
                    now.duration_since(h.last_seen) > self.grace
                        && self
                            .nodes
                            .get(*name)
                            .is_some_and(|n| condition_status(n, "Ready") != Some("Unknown"))
                })
                .map(|(name, _)| name.clone())
                .collect();
            for name in silent {
                self.mark_silent(&name);
            }
            self.next_check = Some(now + self.period);
        }
        self.next_check
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ready: &str, unschedulable: bool, taints: Value) -> Value {
        json!({"metadata": {"name": "n"}, "spec": {"unschedulable": unschedulable, "taints": taints},
               "status": {"conditions": [{"type": "Ready", "status": ready}]}})
    }

    #[test]
    fn taints_follow_ready_and_cordon() {
        let now = Timestamp::now();
        assert_eq!(desired_taints(&node("True", false, json!([])), now), None);
        let cordoned = desired_taints(
            &node("True", true, json!([{"key": "x", "effect": "NoSchedule"}])),
            now,
        )
        .unwrap();
        assert_eq!(cordoned.len(), 2);
        assert_eq!(cordoned[1]["key"], UNSCHEDULABLE);
        assert!(cordoned[1]["timeAdded"].is_string());
        let unknown = desired_taints(&node("Unknown", false, json!([])), now).unwrap();
        let effects: Vec<&str> = unknown
            .iter()
            .map(|t| t["effect"].as_str().unwrap())
            .collect();
        assert_eq!(effects, ["NoSchedule", "NoExecute"]);
        // Back to Ready and uncordoned: only foreign taints remain.
        let back = desired_taints(
            &node(
                "True",
                false,
                json!([{"key": UNREACHABLE, "effect": "NoSchedule"}, {"key": "x", "effect": "NoSchedule"},
                       {"key": UNSCHEDULABLE, "effect": "NoSchedule"}]),
            ),
            now,
        )
        .unwrap();
        assert_eq!(back, vec![json!({"key": "x", "effect": "NoSchedule"})]);
    }

    #[test]
    fn unknown_keeps_heartbeat_and_touches_only_kubelet_conditions() {
        let mut n = json!({"status": {"conditions": [
            {"type": "Ready", "status": "True", "lastHeartbeatTime": "t0", "lastTransitionTime": "t0"},
            {"type": "NetworkUnavailable", "status": "False"}]}});
        mark_unknown(&mut n, "t1");
        let c = &n["status"]["conditions"];
        assert_eq!(c[0]["status"], "Unknown");
        assert_eq!(c[0]["reason"], "NodeStatusUnknown");
        assert_eq!(c[0]["message"], "Kubelet stopped posting node status.");
        assert_eq!(c[0]["lastHeartbeatTime"], "t0");
        assert_eq!(c[0]["lastTransitionTime"], "t1");
        assert_eq!(c[1]["status"], "False");
    }
}
