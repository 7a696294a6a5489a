//! The pod garbage collector's orphan rule (`kubernetes:pkg/controller/podgc`):
//! a pod bound to a node that does not exist is deleted at once (force,
//! with a uid precondition) — no kubelet will ever finish it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;
use tokio::time::Instant;

use super::informer::{Change, Key, Reconciler, Slice};
use super::objects::{node_name_of, uid_of};
use crate::resources::{NODES, PODS};
use crate::store::{Preconditions, Store, StoreError};

/// Which objects the collector watches: nodes and bound pods.
pub(crate) fn interest(resource: &'static crate::resources::Resource, object: &Value) -> bool {
    !std::ptr::eq(resource, &PODS) || !node_name_of(object).is_empty()
}

pub(crate) struct PodGc {
    store: Arc<Store>,
    nodes: HashSet<String>,
    /// Bound pods: node and uid.
    pods: HashMap<Key, (String, String)>,
    pods_on: HashMap<String, HashSet<Key>>,
    check: HashSet<Key>,
}

impl PodGc {
    pub fn new(store: Arc<Store>) -> Self {
        PodGc {
            store,
            nodes: HashSet::new(),
            pods: HashMap::new(),
            pods_on: HashMap::new(),
            check: HashSet::new(),
        }
    }

    fn apply_pod(&mut self, change: &Change) {
        let key = change.key();
        if let Some((node, _)) = self.pods.remove(&key)
            && let Some(s) = self.pods_on.get_mut(&node)
        {
            s.remove(&key);
        }
        if let Some(pod) = change.current() {
            let node = node_name_of(pod).to_string();
            if !node.is_empty() {
                self.pods_on
                    .entry(node.clone())
                    .or_default()
                    .insert(key.clone());
                self.pods
                    .insert(key.clone(), (node, uid_of(pod).to_string()));
                self.check.insert(key);
            }
        }
    }

    fn apply_node(&mut self, change: &Change) {
        match change.current() {
            Some(_) => {
                self.nodes.insert(change.name.clone());
            }
            None => {
                self.nodes.remove(&change.name);
                self.check.extend(
                    self.pods_on
                        .get(&change.name)
                        .into_iter()
                        .flatten()
                        .cloned(),
                );
            }
        }
    }
}

impl Reconciler for PodGc {
    fn apply(&mut self, change: Change) {
        if change.is(&PODS) {
            self.apply_pod(&change);
        } else if change.is(&NODES) {
            self.apply_node(&change);
        }
    }

    fn reconcile(&mut self, _slice: &Slice) -> Option<Instant> {
        for key in std::mem::take(&mut self.check) {
            let Some((node, uid)) = self.pods.get(&key) else {
                continue;
            };
            if self.nodes.contains(node) {
                continue;
            }
            let pre = Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            };
            match self.store.delete(&PODS, &key.0, &key.1, &pre) {
                Ok(_) | Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => {}
                Err(e) => tracing::warn!(error = %e, "pod GC could not delete {}/{}", key.0, key.1),
            }
        }
        None
    }
}
