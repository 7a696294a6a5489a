//! kube-scheduler, reduced to its filters and a spreading score.
//!
//! A pending pod (no `spec.nodeName`, not terminating) is bound to a node
//! that passes every filter: room for another pod, not cordoned (unless the
//! pod tolerates `node.kubernetes.io/unschedulable`), every NoSchedule /
//! NoExecute taint tolerated — a node whose Ready condition is not True
//! counts as tainted `not-ready` / `unreachable`, as TaintNodesByCondition
//! makes it in a real cluster — and `nodeSelector` plus required node
//! affinity admitting it. Among those it prefers the node with the fewest
//! pods. A pod nothing fits gets `PodScheduled=False/Unschedulable` and
//! waits until a node changes or frees room.
//!
//! Nodes are kept in two sets ordered by pod count (open: Ready and not
//! cordoned; closed: the rest), so the usual pod is placed in O(log n).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::events::{EventRecorder, pod_ref};
use super::informer::{At, Change, Key, Reconciler, Slice, WorkQueue, str_at};
use super::matching::{SCHEDULING_EFFECTS, node_admits, pinned_node, tolerations_of, untolerated};
use super::objects::{
    condition_status, is_terminal, is_terminating, node_name_of, set_condition, uid_of,
};
use crate::resources::{NODES, PODS};
use crate::store::Store;

const DEFAULT_SCHEDULER: &str = "default-scheduler";
const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

#[derive(Clone, Debug, PartialEq)]
struct NodeEntry {
    labels: Map<String, Value>,
    /// `spec.taints` plus the taint the Ready condition implies.
    taints: Vec<Value>,
    ready: bool,
    unschedulable: bool,
    capacity: u32,
}

impl NodeEntry {
    fn from_node(node: &Value) -> NodeEntry {
        let mut taints: Vec<Value> = node
            .at("/spec/taints")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let ready = condition_status(node, "Ready");
        match ready {
            Some("True") => {}
            Some("Unknown") => taints
                .push(json!({"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"})),
            _ => {
                taints.push(json!({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}))
            }
        }
        NodeEntry {
            labels: node
                .at("/metadata/labels")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            taints,
            ready: ready == Some("True"),
            unschedulable: node.at("/spec/unschedulable").and_then(Value::as_bool) == Some(true),
            capacity: node
                .at("/status/allocatable/pods")
                .and_then(|v| match v {
                    Value::String(s) => s.parse().ok(),
                    other => other.as_u64().and_then(|n| u32::try_from(n).ok()),
                })
                .unwrap_or(110),
        }
    }

    fn open(&self) -> bool {
        self.ready && !self.unschedulable
    }
}

/// Why a node was filtered out, worded as the real scheduler does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Misfit {
    TooManyPods,
    Unschedulable,
    Taint,
    Affinity,
}

impl Misfit {
    fn text(self) -> &'static str {
        match self {
            Misfit::TooManyPods => "Too many pods",
            Misfit::Unschedulable => "node(s) were unschedulable",
            Misfit::Taint => "node(s) had untolerated taint(s)",
            Misfit::Affinity => "node(s) didn't match Pod's node affinity/selector",
        }
    }
}

pub(crate) struct Scheduler {
    store: Arc<Store>,
    events: Arc<EventRecorder>,
    nodes: HashMap<String, NodeEntry>,
    /// Pods counted per node name (bound, not finished), whether or not the
    /// node exists.
    counts: HashMap<String, u32>,
    open: BTreeSet<(u32, String)>,
    closed: BTreeSet<(u32, String)>,
    /// Where each counted pod is bound.
    assigned: HashMap<Key, String>,
    /// Pods waiting for a node.
    waiting: HashMap<Key, Arc<Value>>,
    queue: WorkQueue<Key>,
    /// Pods nothing fitted, until the cluster changes.
    parked: HashSet<Key>,
    retry_parked: bool,
}

impl Scheduler {
    pub fn new(store: Arc<Store>, events: Arc<EventRecorder>) -> Self {
        Scheduler {
            store,
            events,
            nodes: HashMap::new(),
            counts: HashMap::new(),
            open: BTreeSet::new(),
            closed: BTreeSet::new(),
            assigned: HashMap::new(),
            waiting: HashMap::new(),
            queue: WorkQueue::new(),
            parked: HashSet::new(),
            retry_parked: false,
        }
    }

    fn count(&self, node: &str) -> u32 {
        self.counts.get(node).copied().unwrap_or(0)
    }

    fn unindex(&mut self, node: &str) {
        let entry = (self.count(node), node.to_string());
        self.open.remove(&entry);
        self.closed.remove(&entry);
    }

    fn index(&mut self, node: &str) {
        let entry = (self.count(node), node.to_string());
        match self.nodes.get(node) {
            Some(n) if n.open() => self.open.insert(entry),
            Some(_) => self.closed.insert(entry),
            None => false,
        };
    }

    fn add_to_count(&mut self, node: &str, delta: i64) {
        self.unindex(node);
        let before = self.count(node);
        let after = u32::try_from((i64::from(before) + delta).max(0)).unwrap_or(0);
        if after == 0 {
            self.counts.remove(node);
        } else {
            self.counts.insert(node.to_string(), after);
        }
        self.index(node);
        if delta < 0 && self.nodes.get(node).is_some_and(|n| before >= n.capacity) {
            // A full node has room again.
            self.retry_parked = true;
        }
    }

    fn assign(&mut self, key: &Key, node: &str) {
        if self.assigned.get(key).is_some_and(|n| n == node) {
            return;
        }
        self.unassign(key);
        self.assigned.insert(key.clone(), node.to_string());
        self.add_to_count(node, 1);
    }

    fn unassign(&mut self, key: &Key) {
        if let Some(node) = self.assigned.remove(key) {
            self.add_to_count(&node, -1);
        }
    }

    fn forget_waiting(&mut self, key: &Key) {
        self.waiting.remove(key);
        self.parked.remove(key);
    }

    fn enqueue(&mut self, key: Key) {
        self.queue.push(key);
    }

    fn apply_pod(&mut self, change: &Change) {
        let key = change.key();
        let Some(pod) = change.current() else {
            self.unassign(&key);
            self.forget_waiting(&key);
            return;
        };
        let node = node_name_of(pod);
        if !node.is_empty() {
            self.forget_waiting(&key);
            if is_terminal(pod) {
                self.unassign(&key);
            } else {
                self.assign(&key, node);
            }
            return;
        }
        let scheduler = str_at(pod, "/spec/schedulerName");
        let gated = pod
            .at("/spec/schedulingGates")
            .and_then(Value::as_array)
            .is_some_and(|g| !g.is_empty());
        if is_terminating(pod)
            || is_terminal(pod)
            || gated
            || !(scheduler.is_empty() || scheduler == DEFAULT_SCHEDULER)
        {
            self.forget_waiting(&key);
            return;
        }
        let spec_changed = change
            .previous
            .as_ref()
            .is_none_or(|p| p.get("spec") != pod.get("spec"));
        self.waiting.insert(key.clone(), pod.clone());
        if !self.parked.contains(&key) || spec_changed {
            self.parked.remove(&key);
            self.enqueue(key);
        }
    }

    fn apply_node(&mut self, change: &Change) {
        let name = change.name.clone();
        let next = change.current().map(|n| NodeEntry::from_node(n));
        let previous = self.nodes.get(&name).cloned();
        if next == previous {
            return;
        }
        self.unindex(&name);
        match next {
            Some(entry) => {
                self.nodes.insert(name.clone(), entry);
                self.index(&name);
                self.retry_parked = true;
            }
            None => {
                self.nodes.remove(&name);
            }
        }
    }

    fn misfit(&self, pod: &Value, name: &str, node: &NodeEntry) -> Option<Misfit> {
        let spec = pod.get("spec").unwrap_or(&Value::Null);
        let tolerations = tolerations_of(spec);
        if self.count(name) >= node.capacity {
            return Some(Misfit::TooManyPods);
        }
        if node.unschedulable {
            let taint = json!({"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"});
            if untolerated(
                tolerations,
                std::slice::from_ref(&taint),
                SCHEDULING_EFFECTS,
            )
            .is_some()
            {
                return Some(Misfit::Unschedulable);
            }
        }
        if untolerated(tolerations, &node.taints, SCHEDULING_EFFECTS).is_some() {
            return Some(Misfit::Taint);
        }
        if !node_admits(spec, name, Some(&node.labels)) {
            return Some(Misfit::Affinity);
        }
        None
    }

    /// The node for `pod`, or why none fits.
    fn pick(&self, pod: &Value) -> Result<String, BTreeMap<Misfit, usize>> {
        let spec = pod.get("spec").unwrap_or(&Value::Null);
        if let Some(only) = pinned_node(spec) {
            return match self.nodes.get(only) {
                Some(node) => match self.misfit(pod, only, node) {
                    None => Ok(only.to_string()),
                    Some(m) => Err(self.reasons(pod, Some(m))),
                },
                None => Err(self.reasons(pod, None)),
            };
        }
        for (_, name) in self.open.iter().chain(self.closed.iter()) {
            if let Some(node) = self.nodes.get(name)
                && self.misfit(pod, name, node).is_none()
            {
                return Ok(name.clone());
            }
        }
        Err(self.reasons(pod, None))
    }

    /// Why every node was filtered out. A pinned pod's other nodes fail its
    /// node affinity.
    fn reasons(&self, pod: &Value, pinned_misfit: Option<Misfit>) -> BTreeMap<Misfit, usize> {
        let mut reasons = BTreeMap::new();
        if let Some(m) = pinned_misfit {
            reasons.insert(m, 1);
            if self.nodes.len() > 1 {
                reasons.insert(Misfit::Affinity, self.nodes.len() - 1);
            }
            return reasons;
        }
        for (name, node) in &self.nodes {
            if let Some(m) = self.misfit(pod, name, node) {
                *reasons.entry(m).or_insert(0) += 1;
            }
        }
        reasons
    }

    fn bind(&mut self, key: &Key, pod: &Value, node: &str) {
        let uid = uid_of(pod).to_string();
        let result = self.store.modify(&PODS, &key.0, &key.1, |p| {
            if uid_of(p) != uid || !node_name_of(p).is_empty() || is_terminating(p) {
                return Ok(());
            }
            p["spec"]["nodeName"] = json!(node);
            set_condition(
                p,
                "PodScheduled",
                "True",
                "",
                "",
                &[("lastProbeTime", Value::Null)],
            );
            Ok(())
        });
        match result {
            Ok(bound) if node_name_of(&bound) == node => {
                self.forget_waiting(key);
                self.assign(key, node);
                // `pkg/scheduler/schedule_one.go` (events.k8s.io, action Binding).
                self.events.record_v1(
                    SCHEDULER_NAME,
                    SCHEDULER_NAME,
                    pod_ref(&bound),
                    "Normal",
                    "Binding",
                    "Scheduled",
                    &format!("Successfully assigned {}/{} to {node}", key.0, key.1),
                );
            }
            // Changed under us (deleted, bound elsewhere): its change event
            // tells the rest.
            Ok(_) | Err(_) => {}
        }
    }

    fn mark_unschedulable(&mut self, key: &Key, pod: &Value, reasons: &BTreeMap<Misfit, usize>) {
        let detail: Vec<String> = reasons
            .iter()
            .map(|(m, n)| format!("{n} {}", m.text()))
            .collect();
        let message = format!(
            "0/{} nodes are available: {}.",
            self.nodes.len(),
            if detail.is_empty() {
                "no nodes".to_string()
            } else {
                detail.join(", ")
            }
        );
        let uid = uid_of(pod).to_string();
        let mut failed = false;
        // Failures mean the pod changed; its change event requeues it.
        let marked = self.store.modify(&PODS, &key.0, &key.1, |p| {
            if uid_of(p) != uid || !node_name_of(p).is_empty() {
                return Ok(());
            }
            let same = p
                .at("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled"))
                .is_some_and(|c| c["status"] == "False" && c["message"] == json!(message));
            if !same {
                failed = true;
                set_condition(
                    p,
                    "PodScheduled",
                    "False",
                    "Unschedulable",
                    &message,
                    &[("lastProbeTime", Value::Null)],
                );
                p["status"]["phase"] = json!("Pending");
            }
            Ok(())
        });
        if failed && let Ok(pod) = marked {
            self.events.record_v1(
                SCHEDULER_NAME,
                SCHEDULER_NAME,
                pod_ref(&pod),
                "Warning",
                "Scheduling",
                "FailedScheduling",
                &message,
            );
        }
        self.parked.insert(key.clone());
    }
}

/// The scheduler's name, as its Events report it.
const SCHEDULER_NAME: &str = "default-scheduler";

impl Reconciler for Scheduler {
    fn apply(&mut self, change: Change) {
        if change.is(&PODS) {
            self.apply_pod(&change);
        } else if change.is(&NODES) {
            self.apply_node(&change);
        }
    }

    fn reconcile(&mut self, slice: &Slice) -> Option<Instant> {
        if self.retry_parked {
            self.retry_parked = false;
            let parked: Vec<Key> = self.parked.drain().collect();
            for key in parked {
                self.enqueue(key);
            }
        }
        while let Some(key) = self.queue.pop() {
            let Some(pod) = self.waiting.get(&key).cloned() else {
                continue;
            };
            match self.pick(&pod) {
                Ok(node) => self.bind(&key, &pod, &node),
                Err(reasons) => self.mark_unschedulable(&key, &pod, &reasons),
            }
            if slice.spent() {
                return (!self.queue.is_empty()).then_some(slice.now);
            }
        }
        None
    }
}
