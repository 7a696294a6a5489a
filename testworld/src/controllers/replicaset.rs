//! The ReplicaSet controller: keeps `spec.replicas` pods that are neither
//! terminating nor finished, replacing deleted or evicted ones and
//! deleting extras, and reports status. Deleting a ReplicaSet deletes its
//! pods (the garbage collector's background cascade).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::informer::{At, Change, Key, Reconciler, Slice, WorkQueue, str_at, work_off};
use super::matching::selector_matches;
use super::objects::{
    controller_owner, controller_uid, default_pod_spec, delete_pod, int_at, is_ready, is_terminal,
    is_terminating, key_of, labels_of, node_name_of, uid_of,
};
use crate::resources::{PODS, REPLICASETS};
use crate::store::{Store, StoreError};

pub(crate) struct ReplicaSets {
    store: Arc<Store>,
    sets: HashMap<Key, Arc<Value>>,
    by_uid: HashMap<String, Key>,
    /// Pods controlled by a ReplicaSet.
    pods: HashMap<Key, Arc<Value>>,
    owned: HashMap<String, HashSet<Key>>,
    dirty: WorkQueue<Key>,
    /// Pods whose ReplicaSet was deleted.
    orphans: Vec<Arc<Value>>,
}

/// A pod is active while it counts toward `replicas`.
fn is_active(pod: &Value) -> bool {
    !is_terminating(pod) && !is_terminal(pod)
}

/// The pod a ReplicaSet's template describes.
pub fn pod_from_template(rs: &Value) -> Value {
    let template = rs
        .at("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut metadata = json!({
        "generateName": format!("{}-", str_at(rs, "/metadata/name")),
        "namespace": str_at(rs, "/metadata/namespace"),
        "labels": template.at("/metadata/labels").cloned().unwrap_or_else(|| json!({})),
        "ownerReferences": [controller_owner("apps/v1", "ReplicaSet", rs)],
    });
    if let Some(a) = template.at("/metadata/annotations") {
        metadata["annotations"] = a.clone();
    }
    let mut spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
    default_pod_spec(&mut spec);
    json!({"metadata": metadata, "spec": spec, "status": {"phase": "Pending", "qosClass": "BestEffort"}})
}

/// Which extra pods to delete first: unbound, then not Ready, then newest
/// (the real controller's ranking, reduced).
fn deletion_rank(pod: &Value) -> (bool, bool, std::cmp::Reverse<String>) {
    (
        !node_name_of(pod).is_empty(),
        is_ready(pod),
        std::cmp::Reverse(str_at(pod, "/metadata/creationTimestamp").to_string()),
    )
}

impl ReplicaSets {
    pub fn new(store: Arc<Store>) -> Self {
        ReplicaSets {
            store,
            sets: HashMap::new(),
            by_uid: HashMap::new(),
            pods: HashMap::new(),
            owned: HashMap::new(),
            dirty: WorkQueue::new(),
            orphans: Vec::new(),
        }
    }

    fn dirty_owner(&mut self, uid: &str) {
        if let Some(key) = self.by_uid.get(uid) {
            self.dirty.push(key.clone());
        }
    }

    fn apply_pod(&mut self, change: &Change) {
        let key = change.key();
        if let Some(old) = self.pods.remove(&key)
            && let Some(uid) = controller_uid(&old, "ReplicaSet").map(str::to_string)
        {
            if let Some(set) = self.owned.get_mut(&uid) {
                set.remove(&key);
            }
            self.dirty_owner(&uid);
        }
        if let Some(pod) = change.current()
            && let Some(uid) = controller_uid(pod, "ReplicaSet").map(str::to_string)
        {
            self.pods.insert(key.clone(), pod.clone());
            self.owned.entry(uid.clone()).or_default().insert(key);
            self.dirty_owner(&uid);
        }
    }

    fn apply_set(&mut self, change: &Change) {
        let key = change.key();
        match change.current() {
            Some(rs) => {
                self.by_uid.insert(uid_of(rs).to_string(), key.clone());
                self.sets.insert(key.clone(), rs.clone());
                self.dirty.push(key);
            }
            None => {
                self.sets.remove(&key);
                let uid = uid_of(&change.object).to_string();
                self.by_uid.remove(&uid);
                for pod_key in self.owned.get(&uid).into_iter().flatten() {
                    if let Some(pod) = self.pods.get(pod_key) {
                        self.orphans.push(pod.clone());
                    }
                }
            }
        }
    }

    fn sync(&mut self, key: &Key) {
        let Some(rs) = self.sets.get(key).cloned() else {
            return;
        };
        if is_terminating(&rs) {
            return;
        }
        let uid = uid_of(&rs).to_string();
        let owned: Vec<Arc<Value>> = self
            .owned
            .get(&uid)
            .into_iter()
            .flatten()
            .filter_map(|k| self.pods.get(k).cloned())
            .collect();
        let mut active: Vec<&Arc<Value>> = owned.iter().filter(|p| is_active(p)).collect();
        let want = usize::try_from(int_at(&rs, "/spec/replicas", 1).max(0)).unwrap_or(0);
        if active.len() < want {
            let pod = pod_from_template(&rs);
            for _ in active.len()..want {
                self.create_pod(&key.0, &pod);
            }
        } else if active.len() > want {
            active.sort_by_key(|p| deletion_rank(p));
            for pod in &active[..active.len() - want] {
                if let Err(e) = delete_pod(&self.store, pod) {
                    tracing::warn!(error = %e, "replicaset controller could not delete a pod");
                }
            }
        }
        self.write_status(key, &rs, &owned);
    }

    fn create_pod(&self, namespace: &str, pod: &Value) {
        // A generated name can collide; try again with another suffix.
        for _ in 0..3 {
            match self.store.create(&PODS, namespace, pod.clone()) {
                Err(StoreError::AlreadyExists { .. }) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "replicaset controller could not create a pod")
                }
                Ok(_) => {}
            }
            return;
        }
    }

    fn write_status(&self, key: &Key, rs: &Value, owned: &[Arc<Value>]) {
        let active: Vec<&Arc<Value>> = owned.iter().filter(|p| is_active(p)).collect();
        let selector = rs
            .at("/spec/selector")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let template_labels = rs
            .at("/spec/template/metadata/labels")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let fully_labeled = active
            .iter()
            .filter(|p| {
                let labels = labels_of(p);
                selector_matches(&selector, labels)
                    && template_labels
                        .as_object()
                        .into_iter()
                        .flatten()
                        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
            })
            .count();
        let ready = active.iter().filter(|p| is_ready(p)).count();
        let status = replica_status(
            active.len(),
            fully_labeled,
            ready,
            ready,
            int_at(rs, "/metadata/generation", 1),
        );
        if rs.get("status") == Some(&status) {
            return;
        }
        let result = self.store.modify(&REPLICASETS, &key.0, &key.1, |o| {
            if uid_of(o) == uid_of(rs) {
                o["status"] = status.clone();
            }
            Ok(())
        });
        if let Err(e) = result
            && !matches!(e, StoreError::NotFound { .. })
        {
            tracing::warn!(error = %e, "replicaset controller could not write status");
        }
    }
}

/// ReplicaSet status as the API serializes it (zero counts omitted,
/// `replicas` always present).
fn replica_status(
    replicas: usize,
    fully_labeled: usize,
    ready: usize,
    available: usize,
    generation: i64,
) -> Value {
    let mut status = json!({"replicas": replicas, "observedGeneration": generation});
    for (k, v) in [
        ("fullyLabeledReplicas", fully_labeled),
        ("readyReplicas", ready),
        ("availableReplicas", available),
    ] {
        if v > 0 {
            status[k] = json!(v);
        }
    }
    status
}

impl Reconciler for ReplicaSets {
    fn apply(&mut self, change: Change) {
        if change.is(&PODS) {
            self.apply_pod(&change);
        } else if change.is(&REPLICASETS) {
            self.apply_set(&change);
        }
    }

    fn reconcile(&mut self, slice: &Slice) -> Option<Instant> {
        for pod in std::mem::take(&mut self.orphans) {
            if let Err(e) = delete_pod(&self.store, &pod) {
                tracing::warn!(error = %e, "could not delete pod {:?} of a deleted replicaset", key_of(&pod));
            }
        }
        work_off(self, |c| &mut c.dirty, slice, |c, key| c.sync(key))
    }
}
