//! The invariants of design §8.3, checked at every change of the world.
//!
//! The observer sees every write to the store synchronously and in order
//! (it is registered on the store itself), keeps its own copy of the nodes,
//! pods and PodDisruptionBudgets, and records a violation the moment one
//! happens — not only at the end of a run. Tests attach one before the run
//! and assert that `violations()` is empty afterwards.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;

use crate::resources::{NODES, PDBS, PODS};
use crate::store::{Event, EventType, Store};

/// Which invariant of design §8.3 a violation breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Invariant {
    /// 1: a worker went away while a pod the drain should have evicted was
    /// still on it.
    PodLost,
    /// 2: a pod left while its PodDisruptionBudget did not allow it.
    DisruptionBudget,
    /// 3: a pool's Ready, schedulable nodes dropped below its floor.
    CapacityFloor,
    /// 6: the version-skew policy was broken.
    Skew,
}

/// One violation, with the store revision it happened at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub invariant: Invariant,
    pub revision: u64,
    pub message: String,
}

/// A pool whose capacity floor the observer enforces (invariant 3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolFloor {
    pub name: String,
    /// Labels that select the pool's nodes.
    pub selector: BTreeMap<String, String>,
    /// Ready, schedulable nodes the pool must keep: size − maxUnavailable.
    pub floor: usize,
}

#[derive(Default)]
struct State {
    nodes: HashMap<String, Arc<Value>>,
    pods: HashMap<(String, String), Arc<Value>>,
    pdbs: HashMap<(String, String), Arc<Value>>,
    floors: Vec<PoolFloor>,
    violations: Vec<Violation>,
    /// Pool floors are checked only once a pool has reached its floor, so
    /// a world still starting up is not a violation.
    floor_armed: BTreeMap<String, bool>,
}

/// Watches the store for violations of the invariants.
pub struct Observer {
    state: Mutex<State>,
}

impl Observer {
    /// Attach to `store`: the observer sees the current nodes, pods and
    /// PDBs and every change from now on.
    pub fn attach(store: &Store) -> Arc<Observer> {
        let observer = Arc::new(Observer {
            state: Mutex::new(State::default()),
        });
        let o = observer.clone();
        store.observe_seeded(&[&NODES, &PODS, &PDBS], move |event| o.on_event(event));
        observer
    }

    /// Enforce capacity floors for these pools from now on.
    pub fn set_pool_floors(&self, floors: Vec<PoolFloor>) {
        let mut state = self.lock();
        state.floors = floors;
        state.floor_armed.clear();
        let revision = 0;
        check_floors(&mut state, revision);
    }

    /// Every violation seen so far.
    pub fn violations(&self) -> Vec<Violation> {
        self.lock().violations.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn on_event(&self, event: &Event) {
        let mut state = self.lock();
        let state = &mut *state;
        let key = (event.namespace.clone(), event.name.clone());
        if std::ptr::eq(event.resource, &NODES) {
            if event.event_type == EventType::Deleted {
                check_pods_gone_with_node(state, &event.name, event.rv);
                state.nodes.remove(&event.name);
            } else {
                state.nodes.insert(event.name.clone(), event.object.clone());
            }
            check_floors(state, event.rv);
            check_skew(state, event.rv);
        } else if std::ptr::eq(event.resource, &PODS) {
            let before = state.pods.get(&key).cloned();
            if event.event_type == EventType::Deleted {
                state.pods.remove(&key);
            } else {
                state.pods.insert(key.clone(), event.object.clone());
            }
            check_disruption(state, before.as_deref(), event);
            if is_static_control_plane(&event.object) {
                check_skew(state, event.rv);
            }
        } else if std::ptr::eq(event.resource, &PDBS) {
            if event.event_type == EventType::Deleted {
                state.pdbs.remove(&key);
            } else {
                state.pdbs.insert(key, event.object.clone());
            }
        }
    }
}

fn violate(state: &mut State, invariant: Invariant, revision: u64, message: String) {
    state.violations.push(Violation {
        invariant,
        revision,
        message,
    });
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    v.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn condition_true(v: &Value, kind: &str) -> bool {
    v.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == kind && c["status"] == "True")
        })
}

fn terminating(v: &Value) -> bool {
    v.pointer("/metadata/deletionTimestamp").is_some()
}

fn finished(pod: &Value) -> bool {
    matches!(
        str_at(pod, "/status/phase"),
        Some("Succeeded") | Some("Failed")
    )
}

/// A pod the drain must remove before its node goes: not a DaemonSet pod,
/// not a static (mirror) pod, not finished.
fn must_leave(pod: &Value) -> bool {
    let daemon = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter()
                .any(|r| r["kind"] == "DaemonSet" && r["controller"] == true)
        });
    let mirror = pod
        .pointer("/metadata/annotations/kubernetes.io~1config.mirror")
        .is_some();
    !daemon && !mirror && !finished(pod)
}

fn check_pods_gone_with_node(state: &mut State, node: &str, revision: u64) {
    let lost: Vec<String> = state
        .pods
        .iter()
        .filter(|(_, p)| str_at(p, "/spec/nodeName") == Some(node) && must_leave(p))
        .map(|((ns, name), _)| format!("{ns}/{name}"))
        .collect();
    if !lost.is_empty() {
        violate(
            state,
            Invariant::PodLost,
            revision,
            format!(
                "node {node} was deleted with pods still on it: {}",
                lost.join(", ")
            ),
        );
    }
}

fn selector_matches(selector: Option<&Value>, labels: &BTreeMap<String, String>) -> bool {
    // policy/v1: a null selector matches nothing, `{}` everything.
    let Some(selector) = selector.filter(|s| !s.is_null()) else {
        return false;
    };
    let match_labels_ok = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| {
            m.iter()
                .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str())
        });
    let expressions_ok = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .is_none_or(|exprs| {
            exprs.iter().all(|e| {
                let key = e["key"].as_str().unwrap_or("");
                let values: Vec<&str> = e["values"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let have = labels.get(key).map(String::as_str);
                match e["operator"].as_str().unwrap_or("") {
                    "In" => have.is_some_and(|h| values.contains(&h)),
                    "NotIn" => have.is_none_or(|h| !values.contains(&h)),
                    "Exists" => have.is_some(),
                    "DoesNotExist" => have.is_none(),
                    _ => false,
                }
            })
        });
    match_labels_ok && expressions_ok
}

fn healthy(pod: &Value) -> bool {
    !terminating(pod) && condition_true(pod, "Ready")
}

/// True when a pod is leaving through a drain: the Eviction API marked it
/// (`DisruptionTarget`), or it is deleted off a cordoned node. Controllers
/// replacing pods (a Deployment rollout, kubeadm's add-on upgrade) are not
/// disruptions that PDBs govern.
fn drained(state: &State, pod: &Value) -> bool {
    let evicted = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "DisruptionTarget"));
    let on_cordoned_node = str_at(pod, "/spec/nodeName")
        .and_then(|n| state.nodes.get(n))
        .is_some_and(|n| n.pointer("/spec/unschedulable") == Some(&Value::Bool(true)));
    evicted || on_cordoned_node
}

/// Invariant 2: when a healthy pod stops being healthy because a drain
/// removes it, the PDBs that cover it must still have their desired healthy
/// pods left. (A pod going unready on its own is no disruption.)
fn check_disruption(state: &mut State, before: Option<&Value>, event: &Event) {
    let Some(before) = before else { return };
    if !drained(state, before) && !drained(state, &event.object) {
        return;
    }
    let after_is_healthy = event.event_type != EventType::Deleted && healthy(&event.object);
    let left = healthy(before) && !after_is_healthy;
    let by_deletion = event.event_type == EventType::Deleted || terminating(&event.object);
    if !(left && by_deletion) {
        return;
    }
    let pod_labels = labels(before);
    let namespace = event.namespace.clone();
    let mut messages = Vec::new();
    for ((ns, name), pdb) in &state.pdbs {
        if *ns != namespace || !selector_matches(pdb.pointer("/spec/selector"), &pod_labels) {
            continue;
        }
        let Some(desired) = pdb
            .pointer("/status/desiredHealthy")
            .and_then(Value::as_i64)
        else {
            continue;
        };
        let remaining = state
            .pods
            .iter()
            .filter(|((pns, _), p)| {
                *pns == namespace
                    && healthy(p)
                    && selector_matches(pdb.pointer("/spec/selector"), &labels(p))
            })
            .count() as i64;
        if remaining < desired {
            messages.push(format!(
                "pod {namespace}/{} left while PDB {ns}/{name} needs {desired} healthy and {remaining} remain",
                event.name
            ));
        }
    }
    for m in messages {
        violate(state, Invariant::DisruptionBudget, event.rv, m);
    }
}

fn check_floors(state: &mut State, revision: u64) {
    let mut found = Vec::new();
    for pool in &state.floors {
        let serving = state
            .nodes
            .values()
            .filter(|n| {
                let l = labels(n);
                pool.selector.iter().all(|(k, v)| l.get(k) == Some(v))
                    && condition_true(n, "Ready")
                    && n.pointer("/spec/unschedulable") != Some(&Value::Bool(true))
            })
            .count();
        found.push((pool.name.clone(), pool.floor, serving));
    }
    for (name, floor, serving) in found {
        let armed = state.floor_armed.entry(name.clone()).or_insert(false);
        if serving >= floor {
            *armed = true;
        } else if *armed {
            violate(
                state,
                Invariant::CapacityFloor,
                revision,
                format!("pool {name} has {serving} Ready, schedulable nodes; its floor is {floor}"),
            );
        }
    }
}

/// `(minor, patch)` of `v1.34.2`; the sim only speaks major 1.
fn minor_of(version: &str) -> Option<u64> {
    let rest = version.strip_prefix('v').unwrap_or(version);
    let mut parts = rest.split(['.', '-', '+']);
    let major: u64 = parts.next()?.parse().ok()?;
    let minor: u64 = parts.next()?.parse().ok()?;
    (major == 1).then_some(minor)
}

fn is_static_control_plane(pod: &Value) -> bool {
    str_at(pod, "/metadata/namespace") == Some("kube-system")
        && matches!(
            str_at(pod, "/metadata/labels/component"),
            Some("kube-apiserver")
        )
}

/// Invariant 6, for kubelets against apiservers (k8s-mechanics §1):
/// apiservers within one minor of each other; no kubelet newer than the
/// oldest apiserver, nor more than 3 minors (2 below v1.25) older than the
/// newest.
fn check_skew(state: &mut State, revision: u64) {
    let apiservers: Vec<u64> = state
        .pods
        .values()
        .filter(|p| is_static_control_plane(p) && !terminating(p))
        .filter_map(|p| {
            let image = str_at(p, "/spec/containers/0/image")?;
            minor_of(image.rsplit(':').next()?)
        })
        .collect();
    let (Some(&oldest), Some(&newest)) = (apiservers.iter().min(), apiservers.iter().max()) else {
        return;
    };
    let mut messages = Vec::new();
    if newest > oldest + 1 {
        messages.push(format!(
            "apiservers span v1.{oldest} to v1.{newest}: more than one minor apart"
        ));
    }
    for (name, node) in &state.nodes {
        let Some(kubelet) = str_at(node, "/status/nodeInfo/kubeletVersion").and_then(minor_of)
        else {
            continue;
        };
        if kubelet > oldest {
            messages.push(format!(
                "kubelet of {name} is v1.{kubelet}, newer than the oldest apiserver v1.{oldest}"
            ));
        }
        let allowed = if kubelet < 25 { 2 } else { 3 };
        if newest > kubelet + allowed {
            messages.push(format!(
                "kubelet of {name} is v1.{kubelet}, more than {allowed} minors older than apiserver v1.{newest}"
            ));
        }
    }
    for m in messages {
        if !state.violations.iter().any(|v| v.message == m) {
            violate(state, Invariant::Skew, revision, m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Preconditions;
    use serde_json::json;

    fn node(name: &str, version: &str, ready: bool) -> Value {
        json!({
            "metadata": {"name": name, "labels": {"pool": "p"}},
            "spec": {},
            "status": {
                "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}],
                "nodeInfo": {"kubeletVersion": version}
            }
        })
    }

    fn pod(name: &str, node: &str, app: &str) -> Value {
        json!({
            "metadata": {"name": name, "labels": {"app": app},
                "ownerReferences": [{"kind": "ReplicaSet", "controller": true, "name": "rs", "uid": "x", "apiVersion": "apps/v1"}]},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        })
    }

    fn apiserver(version: &str) -> Value {
        json!({
            "metadata": {"name": "kube-apiserver-cp", "labels": {"component": "kube-apiserver"},
                "annotations": {"kubernetes.io/config.mirror": "x"}},
            "spec": {"nodeName": "cp", "containers": [{"name": "c", "image": format!("registry.k8s.io/kube-apiserver:{version}")}]},
            "status": {"phase": "Running"}
        })
    }

    #[test]
    fn deleting_a_node_with_pods_on_it_is_a_lost_pod() {
        let store = Store::new();
        store
            .create(&NODES, "", node("w1", "v1.33.0", true))
            .unwrap();
        store
            .create(&PODS, "shop", pod("web-1", "w1", "web"))
            .unwrap();
        let observer = Observer::attach(&store);
        store
            .delete(&NODES, "", "w1", &Preconditions::default())
            .unwrap();
        let v = observer.violations();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].invariant, Invariant::PodLost);
        assert!(v[0].message.contains("shop/web-1"));
    }

    #[test]
    fn a_pod_leaving_below_its_budget_is_a_violation() {
        let store = Store::new();
        store
            .create(&PODS, "shop", pod("web-1", "w1", "web"))
            .unwrap();
        store
            .create(&PODS, "shop", pod("web-2", "w2", "web"))
            .unwrap();
        store
            .create(
                &PDBS,
                "shop",
                json!({
                    "metadata": {"name": "web"},
                    "spec": {"selector": {"matchLabels": {"app": "web"}}, "minAvailable": 2},
                    "status": {"desiredHealthy": 2, "currentHealthy": 2, "disruptionsAllowed": 0}
                }),
            )
            .unwrap();
        store
            .create(&NODES, "", node("w1", "v1.33.0", true))
            .unwrap();
        let observer = Observer::attach(&store);
        // The drain cordons the node, then the pod goes.
        store
            .modify(&NODES, "", "w1", |n| {
                n["spec"]["unschedulable"] = json!(true);
                Ok(())
            })
            .unwrap();
        store
            .mark_deleting(&PODS, "shop", "web-1", 30, &Preconditions::default())
            .unwrap();
        let v = observer.violations();
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].invariant, Invariant::DisruptionBudget);
    }

    #[test]
    fn a_controller_replacing_pods_is_no_disruption() {
        let store = Store::new();
        store
            .create(&PODS, "shop", pod("web-1", "w1", "web"))
            .unwrap();
        store
            .create(
                &PDBS,
                "shop",
                json!({
                    "metadata": {"name": "web"},
                    "spec": {"selector": {"matchLabels": {"app": "web"}}, "minAvailable": 1},
                    "status": {"desiredHealthy": 1}
                }),
            )
            .unwrap();
        let observer = Observer::attach(&store);
        store
            .delete(&PODS, "shop", "web-1", &Preconditions::default())
            .unwrap();
        assert!(observer.violations().is_empty());
    }

    #[test]
    fn a_pod_leaving_within_its_budget_is_fine() {
        let store = Store::new();
        for i in 0..3 {
            store
                .create(&PODS, "shop", pod(&format!("web-{i}"), "w1", "web"))
                .unwrap();
        }
        store
            .create(
                &PDBS,
                "shop",
                json!({
                    "metadata": {"name": "web"},
                    "spec": {"selector": {"matchLabels": {"app": "web"}}, "minAvailable": 2},
                    "status": {"desiredHealthy": 2}
                }),
            )
            .unwrap();
        let observer = Observer::attach(&store);
        store
            .mark_deleting(&PODS, "shop", "web-0", 30, &Preconditions::default())
            .unwrap();
        assert!(observer.violations().is_empty());
    }

    #[test]
    fn capacity_floor_is_checked_once_reached() {
        let store = Store::new();
        store
            .create(&NODES, "", node("w1", "v1.33.0", true))
            .unwrap();
        store
            .create(&NODES, "", node("w2", "v1.33.0", true))
            .unwrap();
        let observer = Observer::attach(&store);
        observer.set_pool_floors(vec![PoolFloor {
            name: "p".into(),
            selector: BTreeMap::from([("pool".to_string(), "p".to_string())]),
            floor: 2,
        }]);
        store
            .modify(&NODES, "", "w1", |n| {
                n["spec"]["unschedulable"] = json!(true);
                Ok(())
            })
            .unwrap();
        let v = observer.violations();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].invariant, Invariant::CapacityFloor);
    }

    #[test]
    fn kubelet_newer_than_the_apiserver_breaks_skew() {
        let store = Store::new();
        store
            .create(&PODS, "kube-system", apiserver("v1.33.4"))
            .unwrap();
        let observer = Observer::attach(&store);
        store
            .create(&NODES, "", node("w1", "v1.33.4", true))
            .unwrap();
        assert!(observer.violations().is_empty());
        store
            .create(&NODES, "", node("w2", "v1.34.0", true))
            .unwrap();
        store
            .create(&NODES, "", node("w3", "v1.29.0", true))
            .unwrap();
        let v = observer.violations();
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v.iter().all(|v| v.invariant == Invariant::Skew));
    }
}
