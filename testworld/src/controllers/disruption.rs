//! The disruption controller (`kubernetes:pkg/controller/disruption`):
//! PodDisruptionBudget status, which the eviction subresource reads.
//!
//! For each PDB: the pods of its namespace its selector matches (null
//! selects none, `{}` all); `expectedPods` and `desiredHealthy` from
//! `minAvailable` / `maxUnavailable` (percentages rounded up, scales from
//! the pods' controllers when a percentage or `maxUnavailable` is used);
//! `currentHealthy` = Ready pods neither terminating nor recently evicted
//! (`disruptedPods`); `disruptionsAllowed = max(0, current - desired)` (0
//! when no pods are expected). `disruptedPods` entries are dropped once the
//! pod is terminating or gone, or after [`disrupted_pod_timeout`].
//!
//! The status is computed inside the store's read-modify-write so that
//! `disruptedPods` entries the eviction path just added are never lost.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::informer::{At, Change, Key, Reconciler, Slice, WorkQueue, earliest, str_at, work_off};
use super::matching::selector_matches;
use super::objects::{controller_ref, int_at, is_ready, is_terminating, labels_of};
use crate::Timing;
use crate::resources::{DEPLOYMENTS, PDBS, PODS, REPLICASETS};
use crate::store::{Store, StoreError, rfc3339};

/// How long an admitted eviction keeps its pod out of `currentHealthy`
/// while the pod has not started terminating. The real controller's
/// `DeletionTimeout` is 2 minutes, four times the default 30 s grace
/// period; the world keeps that ratio to `pod_termination`, but never
/// less than 3 s, because the entries carry whole-second timestamps and a
/// shorter window could expire before the eviction's delete lands.
pub fn disrupted_pod_timeout(timing: &Timing) -> Duration {
    (timing.pod_termination * 4).max(Duration::from_secs(3))
}

/// How a PDB's numbers come out, or why they could not be computed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Budget {
    Counted { expected: i64, desired: i64 },
    Failed(String),
}

/// `intstr.GetScaledValueFromIntOrPercent(v, total, roundUp=true)`.
fn scaled(v: &Value, total: i64) -> Result<i64, String> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("invalid value for IntOrString: {n}")),
        Value::String(s) => {
            let pct = s
                .strip_suffix('%')
                .and_then(|p| p.parse::<i64>().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid type: string is not a percentage: {s:?}"))?;
            Ok((pct * total + 99).div_euclid(100))
        }
        other => Err(format!("invalid value for IntOrString: {other}")),
    }
}

/// `expectedPods` and `desiredHealthy` of a PDB over its pods. `scale`
/// sums the scales of the pods' controllers (only called when needed).
pub fn budget(
    pdb: &Value,
    pods: &[&Value],
    scale: impl Fn(&[&Value]) -> Result<i64, String>,
) -> Budget {
    let spec = pdb.get("spec").unwrap_or(&Value::Null);
    let result = if let Some(max) = spec.get("maxUnavailable").filter(|v| !v.is_null()) {
        scale(pods).and_then(|expected| {
            let max = scaled(max, expected)?;
            Ok((expected, (expected - max).max(0)))
        })
    } else if let Some(min) = spec.get("minAvailable").filter(|v| !v.is_null()) {
        match min {
            Value::Number(_) => scaled(min, 0).map(|desired| (pods.len() as i64, desired)),
            _ => scale(pods).and_then(|expected| Ok((expected, scaled(min, expected)?))),
        }
    } else {
        Ok((0, 0))
    };
    match result {
        Ok((expected, desired)) => Budget::Counted { expected, desired },
        Err(e) => Budget::Failed(e),
    }
}

/// The new status of `pdb` (as currently stored) over `pods`, and when
/// it must be recomputed because a `disruptedPods` entry runs out.
pub fn status(
    pdb: &Value,
    pods: &[&Value],
    budget: &Budget,
    now: Timestamp,
    timeout: Duration,
) -> (Value, Option<Timestamp>) {
    let old = pdb.get("status").cloned().unwrap_or_else(|| json!({}));
    let generation = int_at(pdb, "/metadata/generation", 1);
    let (expected, desired) = match budget {
        Budget::Counted { expected, desired } => (*expected, *desired),
        Budget::Failed(message) => {
            let mut status = old.clone();
            status["disruptionsAllowed"] = json!(0);
            let observed = int_at(&old, "/observedGeneration", 0);
            status["conditions"] =
                json!([condition(&old, "False", "SyncFailed", message, observed)]);
            return (status, None);
        }
    };
    let timeout = jiff::SignedDuration::try_from(timeout).unwrap_or(jiff::SignedDuration::MAX);
    let recorded = old.get("disruptedPods").and_then(Value::as_object);
    let mut disrupted = Map::new();
    let mut recheck: Option<Timestamp> = None;
    for pod in pods {
        if is_terminating(pod) {
            continue;
        }
        let name = str_at(pod, "/metadata/name");
        let Some(at) = recorded.and_then(|r| r.get(name)) else {
            continue;
        };
        let Some(expires) = at
            .as_str()
            .and_then(|s| s.parse::<Timestamp>().ok())
            .and_then(|t| t.checked_add(timeout).ok())
        else {
            continue;
        };
        if expires > now {
            recheck = Some(recheck.map_or(expires, |r| r.min(expires)));
            disrupted.insert(name.to_string(), at.clone());
        }
    }
    let healthy = pods
        .iter()
        .filter(|p| {
            !is_terminating(p)
                && !disrupted.contains_key(str_at(p, "/metadata/name"))
                && is_ready(p)
        })
        .count() as i64;
    let allowed = if expected <= 0 {
        0
    } else {
        (healthy - desired).max(0)
    };
    let (cond_status, reason) = if allowed > 0 {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    let mut status = json!({
        "observedGeneration": generation,
        "disruptionsAllowed": allowed,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "conditions": [condition(&old, cond_status, reason, "", generation)],
    });
    if !disrupted.is_empty() {
        status["disruptedPods"] = Value::Object(disrupted);
    }
    (status, recheck)
}

/// The `DisruptionAllowed` condition, keeping its transition time while
/// the status holds (`meta.SetStatusCondition`).
fn condition(
    old_status: &Value,
    status: &str,
    reason: &str,
    message: &str,
    observed: i64,
) -> Value {
    let previous = old_status
        .get("conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "DisruptionAllowed"));
    let transition = match previous {
        Some(c) if c["status"] == status => c["lastTransitionTime"].clone(),
        _ => json!(rfc3339(Timestamp::now())),
    };
    json!({
        "type": "DisruptionAllowed",
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": observed,
        "lastTransitionTime": transition,
    })
}

pub(crate) struct Disruption {
    store: Arc<Store>,
    timeout: Duration,
    pdbs: HashMap<Key, Arc<Value>>,
    pdbs_in: HashMap<String, HashSet<String>>,
    pods: HashMap<Key, Arc<Value>>,
    pods_in: HashMap<String, HashSet<String>>,
    /// The pod names each PDB selects.
    members: HashMap<Key, HashSet<String>>,
    sets: HashMap<Key, Arc<Value>>,
    deployments: HashMap<Key, Arc<Value>>,
    dirty: WorkQueue<Key>,
    rechecks: BTreeMap<Instant, HashSet<Key>>,
}

fn selects(pdb: &Value, pod: &Value) -> bool {
    match pdb.at("/spec/selector") {
        None | Some(Value::Null) => false,
        Some(selector) => selector_matches(selector, labels_of(pod)),
    }
}

impl Disruption {
    pub fn new(store: Arc<Store>, timing: &Timing) -> Self {
        Disruption {
            store,
            timeout: disrupted_pod_timeout(timing),
            pdbs: HashMap::new(),
            pdbs_in: HashMap::new(),
            pods: HashMap::new(),
            pods_in: HashMap::new(),
            members: HashMap::new(),
            sets: HashMap::new(),
            deployments: HashMap::new(),
            dirty: WorkQueue::new(),
            rechecks: BTreeMap::new(),
        }
    }

    fn apply_pod(&mut self, change: &Change) {
        let (ns, name) = change.key();
        match change.current() {
            Some(p) => {
                self.pods.insert((ns.clone(), name.clone()), p.clone());
                self.pods_in
                    .entry(ns.clone())
                    .or_default()
                    .insert(name.clone());
            }
            None => {
                self.pods.remove(&(ns.clone(), name.clone()));
                if let Some(s) = self.pods_in.get_mut(&ns) {
                    s.remove(&name);
                }
            }
        }
        for pdb_name in self.pdbs_in.get(&ns).into_iter().flatten() {
            let pdb_key = (ns.clone(), pdb_name.clone());
            let Some(pdb) = self.pdbs.get(&pdb_key) else {
                continue;
            };
            let now = change.current().is_some_and(|p| selects(pdb, p));
            let members = self.members.entry(pdb_key.clone()).or_default();
            let was = if now {
                !members.insert(name.clone())
            } else {
                members.remove(&name)
            };
            if was || now {
                self.dirty.push(pdb_key);
            }
        }
    }

    fn apply_pdb(&mut self, change: &Change) {
        let key = change.key();
        let (ns, name) = key.clone();
        match change.current() {
            Some(pdb) => {
                let selector_changed = self
                    .pdbs
                    .get(&key)
                    .is_none_or(|old| old.at("/spec/selector") != pdb.at("/spec/selector"));
                self.pdbs.insert(key.clone(), pdb.clone());
                self.pdbs_in.entry(ns.clone()).or_default().insert(name);
                if selector_changed {
                    let members: HashSet<String> = self
                        .pods_in
                        .get(&ns)
                        .into_iter()
                        .flatten()
                        .filter(|p| {
                            self.pods
                                .get(&(ns.clone(), (*p).clone()))
                                .is_some_and(|pod| selects(pdb, pod))
                        })
                        .cloned()
                        .collect();
                    self.members.insert(key.clone(), members);
                }
                self.dirty.push(key);
            }
            None => {
                self.pdbs.remove(&key);
                self.members.remove(&key);
                if let Some(s) = self.pdbs_in.get_mut(&ns) {
                    s.remove(&name);
                }
            }
        }
    }

    /// A controller's scale changed: every PDB of its namespace may count
    /// it.
    fn apply_scale_owner(&mut self, change: &Change) {
        let key = change.key();
        let map = if change.is(&REPLICASETS) {
            &mut self.sets
        } else {
            &mut self.deployments
        };
        let before = map.get(&key).map(|o| o.at("/spec/replicas").cloned());
        match change.current() {
            Some(o) => map.insert(key.clone(), o.clone()),
            None => map.remove(&key),
        };
        let after = change.current().map(|o| o.at("/spec/replicas").cloned());
        if before != after {
            for name in self.pdbs_in.get(&key.0).into_iter().flatten() {
                self.dirty.push((key.0.clone(), name.clone()));
            }
        }
    }

    /// The summed scale of the pods' controllers (the real finders:
    /// ReplicaSet, or its Deployment when it has one). Pods without a
    /// controller are ignored; a controller of another kind is an error.
    fn expected_scale(&self, namespace: &str, pods: &[&Value]) -> Result<i64, String> {
        let mut scales: HashMap<String, i64> = HashMap::new();
        for pod in pods {
            let Some(r) = controller_ref(pod) else {
                continue;
            };
            let uid = str_at(r, "/uid");
            if scales.contains_key(uid) {
                continue;
            }
            let found = (str_at(r, "/kind") == "ReplicaSet")
                .then(|| {
                    self.sets
                        .get(&(namespace.to_string(), str_at(r, "/name").to_string()))
                })
                .flatten()
                .filter(|rs| str_at(rs, "/metadata/uid") == uid);
            let Some(rs) = found else {
                return Err(format!(
                    "found no controllers for pod {:?}",
                    str_at(pod, "/metadata/name")
                ));
            };
            let deployment = controller_ref(rs)
                .filter(|d| str_at(d, "/kind") == "Deployment")
                .and_then(|d| {
                    self.deployments
                        .get(&(namespace.to_string(), str_at(d, "/name").to_string()))
                        .filter(|o| str_at(o, "/metadata/uid") == str_at(d, "/uid"))
                });
            match deployment {
                Some(d) => scales.insert(
                    str_at(d, "/metadata/uid").to_string(),
                    int_at(d, "/spec/replicas", 1),
                ),
                None => scales.insert(uid.to_string(), int_at(rs, "/spec/replicas", 1)),
            };
        }
        Ok(scales.values().sum())
    }

    fn sync(&mut self, key: &Key, now_instant: Instant) {
        let Some(pdb) = self.pdbs.get(key).cloned() else {
            return;
        };
        let pods: Vec<&Value> = self
            .members
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|n| {
                self.pods
                    .get(&(key.0.clone(), n.clone()))
                    .map(|p| p.as_ref())
            })
            .collect();
        let budget = budget(&pdb, &pods, |ps| self.expected_scale(&key.0, ps));
        let now = Timestamp::now();
        let mut recheck = None;
        let result = self.store.modify(&PDBS, &key.0, &key.1, |current| {
            if str_at(current, "/metadata/uid") != str_at(&pdb, "/metadata/uid") {
                return Ok(());
            }
            let (status, at) = status(current, &pods, &budget, now, self.timeout);
            current["status"] = status;
            recheck = at;
            Ok(())
        });
        if let Err(e) = result
            && !matches!(e, StoreError::NotFound { .. })
        {
            tracing::warn!(error = %e, "disruption controller could not write status");
        }
        if let Some(at) = recheck {
            let wait = Duration::try_from(at.duration_since(now)).unwrap_or_default();
            self.rechecks
                .entry(now_instant + wait)
                .or_default()
                .insert(key.clone());
        }
    }
}

impl Reconciler for Disruption {
    fn apply(&mut self, change: Change) {
        if change.is(&PODS) {
            self.apply_pod(&change);
        } else if change.is(&PDBS) {
            self.apply_pdb(&change);
        } else if change.is(&REPLICASETS) || change.is(&DEPLOYMENTS) {
            self.apply_scale_owner(&change);
        }
    }

    fn reconcile(&mut self, slice: &Slice) -> Option<Instant> {
        while let Some(entry) = self.rechecks.first_entry() {
            if *entry.key() > slice.now {
                break;
            }
            for key in entry.remove() {
                self.dirty.push(key);
            }
        }
        let wake = work_off(
            self,
            |c| &mut c.dirty,
            slice,
            |c, key| c.sync(key, slice.now),
        );
        earliest(wake, self.rechecks.keys().next().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ready: bool) -> Value {
        json!({"metadata": {"name": name}, "status": {"conditions": [
            {"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    }

    fn pdb(spec: Value) -> Value {
        json!({"metadata": {"name": "b", "generation": 3}, "spec": spec})
    }

    #[test]
    fn budgets_follow_the_controller_arithmetic() {
        let pods = [pod("a", true), pod("b", true), pod("c", true)];
        let refs: Vec<&Value> = pods.iter().collect();
        let scale = |_: &[&Value]| Ok(4);
        let b = |spec| budget(&pdb(spec), &refs, scale);
        assert_eq!(
            b(json!({"minAvailable": 2})),
            Budget::Counted {
                expected: 3,
                desired: 2
            }
        );
        // Percentages round up and use the controllers' scale.
        assert_eq!(
            b(json!({"minAvailable": "50%"})),
            Budget::Counted {
                expected: 4,
                desired: 2
            }
        );
        assert_eq!(
            b(json!({"minAvailable": "30%"})),
            Budget::Counted {
                expected: 4,
                desired: 2
            }
        );
        assert_eq!(
            b(json!({"maxUnavailable": 1})),
            Budget::Counted {
                expected: 4,
                desired: 3
            }
        );
        assert_eq!(
            b(json!({"maxUnavailable": "30%"})),
            Budget::Counted {
                expected: 4,
                desired: 2
            }
        );
        assert_eq!(
            b(json!({"maxUnavailable": 9})),
            Budget::Counted {
                expected: 4,
                desired: 0
            }
        );
        assert!(matches!(
            b(json!({"minAvailable": "half"})),
            Budget::Failed(_)
        ));
        let failing = budget(&pdb(json!({"maxUnavailable": 1})), &refs, |_| {
            Err("found no controllers".into())
        });
        assert!(matches!(failing, Budget::Failed(_)));
    }

    #[test]
    fn status_counts_healthy_pods_and_keeps_fresh_disruptions() {
        let now = Timestamp::now();
        let recent = rfc3339(now);
        let old = rfc3339(now - jiff::SignedDuration::from_secs(600));
        let mut stored = pdb(json!({"minAvailable": 1}));
        stored["status"] = json!({"disruptedPods": {"a": recent, "b": old, "gone": recent}});
        let mut terminating = pod("d", true);
        terminating["metadata"]["deletionTimestamp"] = json!(recent);
        let pods = [pod("a", true), pod("b", true), pod("c", false), terminating];
        let refs: Vec<&Value> = pods.iter().collect();
        let budget = Budget::Counted {
            expected: 4,
            desired: 1,
        };
        let (s, recheck) = status(&stored, &refs, &budget, now, Duration::from_secs(120));
        // a is disrupted (fresh entry), b's entry expired, c not ready, d terminating.
        assert_eq!(s["currentHealthy"], 1);
        assert_eq!(s["disruptionsAllowed"], 0);
        assert_eq!(s["observedGeneration"], 3);
        assert_eq!(s["disruptedPods"], json!({"a": recent}));
        assert_eq!(s["conditions"][0]["reason"], "InsufficientPods");
        assert!(recheck.is_some());
        let budget = Budget::Counted {
            expected: 4,
            desired: 0,
        };
        let (s, _) = status(&stored, &refs, &budget, now, Duration::from_secs(120));
        assert_eq!(s["disruptionsAllowed"], 1);
        assert_eq!(s["conditions"][0]["status"], "True");
        assert_eq!(s["conditions"][0]["reason"], "SufficientPods");
        // No pods expected: nothing may be disrupted.
        let (s, _) = status(
            &stored,
            &[],
            &Budget::Counted {
                expected: 0,
                desired: 0,
            },
            now,
            Duration::from_secs(1),
        );
        assert_eq!(s["disruptionsAllowed"], 0);
    }

    #[test]
    fn failed_budget_fails_safe_without_advancing_observed_generation() {
        let mut stored = pdb(json!({"maxUnavailable": 1}));
        stored["status"] = json!({"observedGeneration": 2, "disruptionsAllowed": 5});
        let (s, _) = status(
            &stored,
            &[],
            &Budget::Failed("no".into()),
            Timestamp::now(),
            Duration::from_secs(1),
        );
        assert_eq!(s["disruptionsAllowed"], 0);
        assert_eq!(s["observedGeneration"], 2);
        assert_eq!(s["conditions"][0]["reason"], "SyncFailed");
        assert_eq!(s["conditions"][0]["message"], "no");
    }
}
