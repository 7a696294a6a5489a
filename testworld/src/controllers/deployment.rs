//! The Deployment controller, reduced: one ReplicaSet per template hash
//! (`<name>-<pod-template-hash>`), the current one scaled to
//! `spec.replicas` and every older one to 0 (no gradual rollout), and the
//! status `kubectl rollout status` reads. Deleting a Deployment deletes
//! its ReplicaSets.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::informer::{At, Change, Key, Reconciler, Slice, WorkQueue, str_at, work_off};
use super::objects::{
    controller_owner, controller_uid, int_at, is_terminating, template_hash, uid_of,
};
use crate::resources::{DEPLOYMENTS, REPLICASETS};
use crate::store::{Preconditions, Store, StoreError, rfc3339};

const HASH_LABEL: &str = "pod-template-hash";
const REVISION: &str = "deployment.kubernetes.io/revision";

/// The revision annotation of a Deployment or ReplicaSet, 0 when absent.
fn revision_of(object: &Value) -> i64 {
    object
        .at("/metadata/annotations")
        .and_then(|a| a.get(REVISION))
        .and_then(Value::as_str)
        .and_then(|r| r.parse::<i64>().ok())
        .unwrap_or(0)
}

pub(crate) struct Deployments {
    store: Arc<Store>,
    deployments: HashMap<Key, Arc<Value>>,
    by_uid: HashMap<String, Key>,
    /// ReplicaSets controlled by a Deployment.
    sets: HashMap<Key, Arc<Value>>,
    owned: HashMap<String, HashSet<Key>>,
    dirty: WorkQueue<Key>,
    orphans: Vec<Arc<Value>>,
}

/// `maxUnavailable` of a rolling update against `replicas` (rounded down,
/// default 25%); 0 for other strategies.
fn max_unavailable(deployment: &Value, replicas: i64) -> i64 {
    if str_at(deployment, "/spec/strategy/type") == "Recreate" || replicas == 0 {
        return 0;
    }
    match deployment.at("/spec/strategy/rollingUpdate/maxUnavailable") {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .map(|p| p * replicas / 100)
            .unwrap_or(0),
        _ => replicas / 4,
    }
}

impl Deployments {
    pub fn new(store: Arc<Store>) -> Self {
        Deployments {
            store,
            deployments: HashMap::new(),
            by_uid: HashMap::new(),
            sets: HashMap::new(),
            owned: HashMap::new(),
            dirty: WorkQueue::new(),
            orphans: Vec::new(),
        }
    }

    fn apply_set(&mut self, change: &Change) {
        let key = change.key();
        if let Some(old) = self.sets.remove(&key)
            && let Some(uid) = controller_uid(&old, "Deployment").map(str::to_string)
        {
            if let Some(s) = self.owned.get_mut(&uid) {
                s.remove(&key);
            }
            if let Some(d) = self.by_uid.get(&uid) {
                self.dirty.push(d.clone());
            }
        }
        if let Some(rs) = change.current()
            && let Some(uid) = controller_uid(rs, "Deployment").map(str::to_string)
        {
            self.sets.insert(key.clone(), rs.clone());
            self.owned.entry(uid.clone()).or_default().insert(key);
            if let Some(d) = self.by_uid.get(&uid) {
                self.dirty.push(d.clone());
            }
        }
    }

    fn apply_deployment(&mut self, change: &Change) {
        let key = change.key();
        match change.current() {
            Some(d) => {
                self.by_uid.insert(uid_of(d).to_string(), key.clone());
                self.deployments.insert(key.clone(), d.clone());
                self.dirty.push(key);
            }
            None => {
                self.deployments.remove(&key);
                let uid = uid_of(&change.object).to_string();
                self.by_uid.remove(&uid);
                for k in self.owned.get(&uid).into_iter().flatten() {
                    if let Some(rs) = self.sets.get(k) {
                        self.orphans.push(rs.clone());
                    }
                }
            }
        }
    }

    fn new_replica_set(&self, d: &Value, hash: &str, revision: i64) -> Value {
        let mut template = d.at("/spec/template").cloned().unwrap_or_else(|| json!({}));
        template["metadata"]["labels"][HASH_LABEL] = json!(hash);
        let mut selector = d.at("/spec/selector").cloned().unwrap_or_else(|| json!({}));
        selector["matchLabels"][HASH_LABEL] = json!(hash);
        let labels = template["metadata"]["labels"].clone();
        json!({
            "metadata": {
                "name": format!("{}-{hash}", str_at(d, "/metadata/name")),
                "namespace": str_at(d, "/metadata/namespace"),
                "labels": labels,
                "annotations": {REVISION: revision.to_string()},
                "ownerReferences": [controller_owner("apps/v1", "Deployment", d)],
            },
            "spec": {
                "replicas": int_at(d, "/spec/replicas", 1),
                "minReadySeconds": int_at(d, "/spec/minReadySeconds", 0),
                "selector": selector,
                "template": template,
            },
        })
    }

    fn scale(&self, rs: &Value, replicas: i64) {
        if int_at(rs, "/spec/replicas", 1) == replicas {
            return;
        }
        let (ns, name) = (
            str_at(rs, "/metadata/namespace"),
            str_at(rs, "/metadata/name"),
        );
        // Scale on the latest object: only `spec.replicas` changes.
        let result = self.store.modify(&REPLICASETS, ns, name, |o| {
            if uid_of(o) == uid_of(rs) {
                o["spec"]["replicas"] = json!(replicas);
            }
            Ok(())
        });
        if let Err(e) = result
            && !matches!(e, StoreError::NotFound { .. })
        {
            tracing::warn!(error = %e, "deployment controller could not scale {name}");
        }
    }

    /// Set the revision annotation of `object`; the stored object after,
    /// or `object` when the write failed (the next change retries).
    fn set_revision(
        &self,
        resource: &'static crate::resources::Resource,
        namespace: &str,
        object: &Arc<Value>,
        revision: i64,
    ) -> Arc<Value> {
        let uid = uid_of(object).to_string();
        let result =
            self.store
                .modify(resource, namespace, str_at(object, "/metadata/name"), |o| {
                    if uid_of(o) != uid {
                        return Ok(());
                    }
                    if !o.at("/metadata/annotations").is_some_and(Value::is_object) {
                        o["metadata"]["annotations"] = json!({});
                    }
                    o["metadata"]["annotations"][REVISION] = json!(revision.to_string());
                    Ok(())
                });
        result.unwrap_or_else(|_| object.clone())
    }

    fn sync(&mut self, key: &Key) {
        let Some(d) = self.deployments.get(key).cloned() else {
            return;
        };
        if is_terminating(&d) {
            return;
        }
        let uid = uid_of(&d).to_string();
        let template = d.at("/spec/template").cloned().unwrap_or_else(|| json!({}));
        let hash = template_hash(&template);
        let replicas = int_at(&d, "/spec/replicas", 1).max(0);
        let owned: Vec<Arc<Value>> = self
            .owned
            .get(&uid)
            .into_iter()
            .flatten()
            .filter_map(|k| self.sets.get(k).cloned())
            .collect();
        let current = owned
            .iter()
            .find(|rs| str_at(rs, &format!("/metadata/labels/{HASH_LABEL}")) == hash)
            .cloned();
        let max_revision = owned.iter().map(|rs| revision_of(rs)).max().unwrap_or(0);
        let current = match current {
            Some(rs) => {
                // A template rolled back to is the newest revision again
                // (`deploymentutil.SetNewReplicaSetAnnotations`).
                let rs = if revision_of(&rs) < max_revision {
                    self.set_revision(&REPLICASETS, &key.0, &rs, max_revision + 1)
                } else {
                    rs
                };
                self.scale(&rs, replicas);
                Some(rs)
            }
            None => match self.store.create(
                &REPLICASETS,
                &key.0,
                self.new_replica_set(&d, &hash, max_revision + 1),
            ) {
                Ok(rs) => Some(rs),
                Err(e) => {
                    tracing::warn!(error = %e, "deployment controller could not create a replicaset");
                    None
                }
            },
        };
        for rs in &owned {
            if current.as_ref().is_none_or(|c| uid_of(c) != uid_of(rs)) {
                self.scale(rs, 0);
            }
        }
        // The Deployment carries its current revision
        // (`deploymentutil.SetDeploymentRevision`); `kubectl rollout undo`
        // patches this annotation.
        if let Some(rs) = &current
            && revision_of(rs) != revision_of(&d)
        {
            self.set_revision(&DEPLOYMENTS, &key.0, &d, revision_of(rs));
        }
        self.write_status(key, &d, current.as_deref(), &owned, replicas);
    }

    fn write_status(
        &self,
        key: &Key,
        d: &Value,
        current: Option<&Value>,
        owned: &[Arc<Value>],
        replicas: i64,
    ) {
        let sum = |field: &str| -> i64 {
            owned
                .iter()
                .map(|rs| int_at(rs, &format!("/status/{field}"), 0))
                .sum()
        };
        let updated = current.map_or(0, |rs| {
            owned
                .iter()
                .find(|o| uid_of(o) == uid_of(rs))
                .map_or(0, |o| int_at(o, "/status/replicas", 0))
        });
        let (total, ready, available) = (
            sum("replicas"),
            sum("readyReplicas"),
            sum("availableReplicas"),
        );
        let unavailable = (replicas - available).max(0);
        let minimum = available >= replicas - max_unavailable(d, replicas);
        let complete = updated == replicas && total == replicas && available == replicas;
        let rs_name = current
            .map_or("", |rs| str_at(rs, "/metadata/name"))
            .to_string();
        let old = d.get("status").cloned().unwrap_or_else(|| json!({}));
        let now = json!(rfc3339(jiff::Timestamp::now()));
        let condition = |kind: &str, status: &str, reason: &str, message: String| {
            let previous = old
                .get("conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c["type"] == kind));
            let same = previous.is_some_and(|c| c["status"] == status && c["reason"] == reason);
            let keep = |f: &str| match previous {
                Some(c) if same => c[f].clone(),
                _ => now.clone(),
            };
            json!({
                "type": kind, "status": status, "reason": reason, "message": message,
                "lastUpdateTime": keep("lastUpdateTime"), "lastTransitionTime": keep("lastTransitionTime"),
            })
        };
        let available_condition = if minimum {
            condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
            )
        } else {
            condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
            )
        };
        let progressing = if complete {
            condition(
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
            )
        } else {
            condition(
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                format!("ReplicaSet \"{rs_name}\" is progressing."),
            )
        };
        let mut status = json!({
            "observedGeneration": int_at(d, "/metadata/generation", 1),
            "replicas": total,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available,
            "unavailableReplicas": unavailable,
            "conditions": [available_condition, progressing],
        });
        if let Some(m) = status.as_object_mut() {
            // The API omits zero counts.
            m.retain(|k, v| {
                k == "observedGeneration" || k == "conditions" || v.as_i64() != Some(0)
            });
        }
        if status == old {
            return;
        }
        let result = self.store.modify(&DEPLOYMENTS, &key.0, &key.1, |o| {
            if uid_of(o) == uid_of(d) {
                o["status"] = status;
            }
            Ok(())
        });
        if let Err(e) = result
            && !matches!(e, StoreError::NotFound { .. })
        {
            tracing::warn!(error = %e, "deployment controller could not write status");
        }
    }
}

impl Reconciler for Deployments {
    fn apply(&mut self, change: Change) {
        if change.is(&REPLICASETS) {
            self.apply_set(&change);
        } else if change.is(&DEPLOYMENTS) {
            self.apply_deployment(&change);
        }
    }

    fn reconcile(&mut self, slice: &Slice) -> Option<Instant> {
        for rs in std::mem::take(&mut self.orphans) {
            let pre = Preconditions {
                uid: Some(uid_of(&rs).to_string()),
                resource_version: None,
            };
            let (ns, name) = (
                str_at(&rs, "/metadata/namespace"),
                str_at(&rs, "/metadata/name"),
            );
            // Gone already or replaced: nothing to collect.
            let _ = self.store.delete(&REPLICASETS, ns, name, &pre);
        }
        work_off(self, |c| &mut c.dirty, slice, |c, key| c.sync(key))
    }
}
