//! The DaemonSet controller: one pod per eligible node (the template's
//! node selector and affinity admit it and its NoSchedule/NoExecute taints
//! are tolerated, counting the tolerations every DaemonSet pod gets), made
//! for new nodes and removed from ineligible or vanished ones. Pods are
//! pinned with node affinity `metadata.name In [node]` and bound by the
//! scheduler, as since Kubernetes 1.12. A changed template replaces pods
//! `maxUnavailable` at a time (RollingUpdate) or not at all (OnDelete).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::informer::{At, Change, Key, Reconciler, Slice, WorkQueue, str_at, work_off};
use super::matching::{SCHEDULING_EFFECTS, node_admits, pinned_node, untolerated};
use super::objects::{
    controller_owner, controller_uid, default_pod_spec, delete_pod, int_at, is_ready, is_terminal,
    is_terminating, template_hash, uid_of,
};
use crate::resources::{DAEMONSETS, NODES, PODS};
use crate::store::{Store, StoreError};

const REVISION_LABEL: &str = "controller-revision-hash";

/// Tolerations the DaemonSet controller adds to every pod it makes.
pub fn automatic_tolerations() -> Vec<Value> {
    let mut t = vec![
        json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}),
        json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}),
    ];
    for key in [
        "node.kubernetes.io/disk-pressure",
        "node.kubernetes.io/memory-pressure",
        "node.kubernetes.io/pid-pressure",
        "node.kubernetes.io/unschedulable",
    ] {
        t.push(json!({"key": key, "operator": "Exists", "effect": "NoSchedule"}));
    }
    t
}

/// The template's tolerations plus the automatic ones not already there.
fn pod_tolerations(template_spec: &Value) -> Vec<Value> {
    let mut t: Vec<Value> = template_spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for auto in automatic_tolerations() {
        if !t.contains(&auto) {
            t.push(auto);
        }
    }
    t
}

/// Should a pod of this template run on this node?
pub fn should_run(template_spec: &Value, tolerations: &[Value], node: &Value) -> bool {
    let name = str_at(node, "/metadata/name");
    let labels = node.at("/metadata/labels").and_then(Value::as_object);
    let taints: &[Value] = node
        .at("/spec/taints")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    node_admits(template_spec, name, labels)
        && untolerated(tolerations, taints, SCHEDULING_EFFECTS).is_none()
}

pub(crate) struct DaemonSets {
    store: Arc<Store>,
    sets: HashMap<Key, Arc<Value>>,
    by_uid: HashMap<String, Key>,
    nodes: HashMap<String, Arc<Value>>,
    /// Pods controlled by a DaemonSet.
    pods: HashMap<Key, Arc<Value>>,
    owned: HashMap<String, HashSet<Key>>,
    dirty: WorkQueue<Key>,
    all_dirty: bool,
    orphans: Vec<Arc<Value>>,
}

/// What decides a DaemonSet's eligibility on a node.
fn node_shape(node: &Value) -> (Option<&Value>, Option<&Value>) {
    (node.at("/metadata/labels"), node.at("/spec/taints"))
}

impl DaemonSets {
    pub fn new(store: Arc<Store>) -> Self {
        DaemonSets {
            store,
            sets: HashMap::new(),
            by_uid: HashMap::new(),
            nodes: HashMap::new(),
            pods: HashMap::new(),
            owned: HashMap::new(),
            dirty: WorkQueue::new(),
            all_dirty: false,
            orphans: Vec::new(),
        }
    }

    fn apply_pod(&mut self, change: &Change) {
        let key = change.key();
        let mut touched = Vec::new();
        if let Some(old) = self.pods.remove(&key)
            && let Some(uid) = controller_uid(&old, "DaemonSet").map(str::to_string)
        {
            if let Some(s) = self.owned.get_mut(&uid) {
                s.remove(&key);
            }
            touched.push(uid);
        }
        if let Some(pod) = change.current()
            && let Some(uid) = controller_uid(pod, "DaemonSet").map(str::to_string)
        {
            self.pods.insert(key.clone(), pod.clone());
            self.owned.entry(uid.clone()).or_default().insert(key);
            touched.push(uid);
        }
        for uid in touched {
            if let Some(k) = self.by_uid.get(&uid) {
                self.dirty.push(k.clone());
            }
        }
    }

    fn apply_node(&mut self, change: &Change) {
        let relevant = match (change.current(), self.nodes.get(&change.name)) {
            (Some(new), Some(old)) => node_shape(new) != node_shape(old),
            _ => true,
        };
        match change.current() {
            Some(n) => self.nodes.insert(change.name.clone(), n.clone()),
            None => self.nodes.remove(&change.name),
        };
        if relevant {
            self.all_dirty = true;
        }
    }

    fn apply_set(&mut self, change: &Change) {
        let key = change.key();
        match change.current() {
            Some(ds) => {
                self.by_uid.insert(uid_of(ds).to_string(), key.clone());
                self.sets.insert(key.clone(), ds.clone());
                self.dirty.push(key);
            }
            None => {
                self.sets.remove(&key);
                let uid = uid_of(&change.object).to_string();
                self.by_uid.remove(&uid);
                for k in self.owned.get(&uid).into_iter().flatten() {
                    if let Some(p) = self.pods.get(k) {
                        self.orphans.push(p.clone());
                    }
                }
            }
        }
    }

    fn new_pod(&self, ds: &Value, node: &str, hash: &str) -> Value {
        let template = ds
            .at("/spec/template")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let mut labels = template
            .at("/metadata/labels")
            .cloned()
            .unwrap_or_else(|| json!({}));
        labels[REVISION_LABEL] = json!(hash);
        labels["pod-template-generation"] =
            json!(int_at(ds, "/metadata/generation", 1).to_string());
        let mut spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
        default_pod_spec(&mut spec);
        spec["tolerations"] = json!(pod_tolerations(&spec));
        spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = json!({
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]
        });
        let mut metadata = json!({
            "generateName": format!("{}-", str_at(ds, "/metadata/name")),
            "namespace": str_at(ds, "/metadata/namespace"),
            "labels": labels,
            "ownerReferences": [controller_owner("apps/v1", "DaemonSet", ds)],
        });
        if let Some(a) = template.at("/metadata/annotations") {
            metadata["annotations"] = a.clone();
        }
        json!({"metadata": metadata, "spec": spec, "status": {"phase": "Pending", "qosClass": "BestEffort"}})
    }

    fn delete(&self, pod: &Value) {
        if let Err(e) = delete_pod(&self.store, pod) {
            tracing::warn!(error = %e, "daemonset controller could not delete a pod");
        }
    }

    fn sync(&mut self, key: &Key) {
        let Some(ds) = self.sets.get(key).cloned() else {
            return;
        };
        if is_terminating(&ds) {
            return;
        }
        let template_spec = ds
            .at("/spec/template/spec")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let tolerations = pod_tolerations(&template_spec);
        let hash = template_hash(ds.at("/spec/template").unwrap_or(&Value::Null));
        // Pods by the node they run on or are pinned to.
        let mut by_node: BTreeMap<String, Vec<Arc<Value>>> = BTreeMap::new();
        for k in self.owned.get(uid_of(&ds)).into_iter().flatten() {
            let Some(pod) = self.pods.get(k) else {
                continue;
            };
            let node = match str_at(pod, "/spec/nodeName") {
                "" => pod
                    .get("spec")
                    .and_then(pinned_node)
                    .unwrap_or("")
                    .to_string(),
                n => n.to_string(),
            };
            by_node.entry(node).or_default().push(pod.clone());
        }
        let mut counts = Counts::default();
        let mut outdated_ready = Vec::new();
        for (name, node) in &self.nodes {
            let wanted = should_run(&template_spec, &tolerations, node);
            let pods = by_node.remove(name).unwrap_or_default();
            let (finished, live): (Vec<_>, Vec<_>) = pods.into_iter().partition(|p| is_terminal(p));
            for pod in &finished {
                self.delete(pod);
            }
            let mut active: Vec<Arc<Value>> =
                live.into_iter().filter(|p| !is_terminating(p)).collect();
            if !wanted {
                if !active.is_empty() {
                    counts.misscheduled += 1;
                }
                for pod in &active {
                    self.delete(pod);
                }
                continue;
            }
            counts.desired += 1;
            if active.is_empty() {
                if let Err(e) = self
                    .store
                    .create(&PODS, &key.0, self.new_pod(&ds, name, &hash))
                {
                    tracing::warn!(error = %e, "daemonset controller could not create a pod");
                }
                continue;
            }
            // Keep the oldest pod on the node, delete the rest.
            active.sort_by(|a, b| {
                str_at(a, "/metadata/creationTimestamp")
                    .cmp(str_at(b, "/metadata/creationTimestamp"))
            });
            for extra in &active[1..] {
                self.delete(extra);
            }
            let pod = &active[0];
            counts.current += 1;
            let updated = str_at(pod, &format!("/metadata/labels/{REVISION_LABEL}")) == hash;
            if updated {
                counts.updated += 1;
            }
            if is_ready(pod) {
                counts.ready += 1;
                if !updated {
                    outdated_ready.push(pod.clone());
                }
            }
        }
        // Pods on nodes that no longer exist.
        for pods in by_node.into_values() {
            for pod in pods.iter().filter(|p| !is_terminating(p)) {
                self.delete(pod);
            }
        }
        self.roll(&ds, &counts, &outdated_ready);
        self.write_status(key, &ds, &counts);
    }

    /// RollingUpdate: delete outdated Ready pods while the number of
    /// unavailable nodes stays within `maxUnavailable` (default 1).
    fn roll(&self, ds: &Value, counts: &Counts, outdated_ready: &[Arc<Value>]) {
        if str_at(ds, "/spec/updateStrategy/type") == "OnDelete" || outdated_ready.is_empty() {
            return;
        }
        let max = match ds.at("/spec/updateStrategy/rollingUpdate/maxUnavailable") {
            Some(Value::Number(n)) => n.as_u64().unwrap_or(1) as usize,
            Some(Value::String(s)) => s
                .strip_suffix('%')
                .and_then(|p| p.parse::<usize>().ok())
                .map(|p| (p * counts.desired).div_ceil(100))
                .unwrap_or(1),
            _ => 1,
        };
        let unavailable = counts.desired - counts.ready;
        for pod in outdated_ready.iter().take(max.saturating_sub(unavailable)) {
            self.delete(pod);
        }
    }

    fn write_status(&self, key: &Key, ds: &Value, c: &Counts) {
        let status = json!({
            "currentNumberScheduled": c.current,
            "desiredNumberScheduled": c.desired,
            "numberMisscheduled": c.misscheduled,
            "numberReady": c.ready,
            "numberAvailable": c.ready,
            "numberUnavailable": c.desired - c.ready.min(c.desired),
            "updatedNumberScheduled": c.updated,
            "observedGeneration": int_at(ds, "/metadata/generation", 1),
        });
        if ds.get("status") == Some(&status) {
            return;
        }
        let result = self.store.modify(&DAEMONSETS, &key.0, &key.1, |o| {
            if uid_of(o) == uid_of(ds) {
                o["status"] = status.clone();
            }
            Ok(())
        });
        if let Err(e) = result
            && !matches!(e, StoreError::NotFound { .. })
        {
            tracing::warn!(error = %e, "daemonset controller could not write status");
        }
    }
}

#[derive(Default)]
struct Counts {
    desired: usize,
    current: usize,
    misscheduled: usize,
    ready: usize,
    updated: usize,
}

impl Reconciler for DaemonSets {
    fn apply(&mut self, change: Change) {
        if change.is(&PODS) {
            self.apply_pod(&change);
        } else if change.is(&NODES) {
            self.apply_node(&change);
        } else if change.is(&DAEMONSETS) {
            self.apply_set(&change);
        }
    }

    fn reconcile(&mut self, slice: &Slice) -> Option<Instant> {
        for pod in std::mem::take(&mut self.orphans) {
            self.delete(&pod);
        }
        if std::mem::take(&mut self.all_dirty) {
            let keys: Vec<Key> = self.sets.keys().cloned().collect();
            for key in keys {
                self.dirty.push(key);
            }
        }
        work_off(self, |c| &mut c.dirty, slice, |c, key| c.sync(key))
    }
}
