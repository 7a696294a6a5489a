//! Reading and shaping the JSON objects the controllers work with: pod
//! state, owner references, conditions, and the API server's graceful pod
//! deletion.

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::informer::{At, Key, str_at};
use crate::resources::PODS;
use crate::store::{Preconditions, Store, StoreError, rfc3339};

/// The default `terminationGracePeriodSeconds`.
pub const DEFAULT_GRACE_SECONDS: i64 = 30;

pub fn key_of(object: &Value) -> Key {
    (
        str_at(object, "/metadata/namespace").to_string(),
        str_at(object, "/metadata/name").to_string(),
    )
}

pub fn uid_of(object: &Value) -> &str {
    str_at(object, "/metadata/uid")
}

pub fn labels_of(object: &Value) -> Option<&Map<String, Value>> {
    object.at("/metadata/labels").and_then(Value::as_object)
}

pub fn node_name_of(pod: &Value) -> &str {
    str_at(pod, "/spec/nodeName")
}

/// A `deletionTimestamp` is set.
pub fn is_terminating(object: &Value) -> bool {
    object
        .at("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

/// Phase Succeeded or Failed.
pub fn is_terminal(pod: &Value) -> bool {
    matches!(str_at(pod, "/status/phase"), "Succeeded" | "Failed")
}

/// The status of the condition of `type` in `status.conditions`.
pub fn condition_status<'a>(object: &'a Value, kind: &str) -> Option<&'a str> {
    object
        .at("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
        .and_then(|c| c.get("status").and_then(Value::as_str))
}

/// Condition Ready is True.
pub fn is_ready(object: &Value) -> bool {
    condition_status(object, "Ready") == Some("True")
}

/// The owner reference with `controller: true`.
pub fn controller_ref(object: &Value) -> Option<&Value> {
    object
        .at("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
}

/// The uid of the controlling owner, if its kind is `kind`.
pub fn controller_uid<'a>(object: &'a Value, kind: &str) -> Option<&'a str> {
    let r = controller_ref(object)?;
    (r.get("kind").and_then(Value::as_str) == Some(kind))
        .then(|| r.get("uid").and_then(Value::as_str))
        .flatten()
}

/// An owner reference marking `owner` as the controller.
pub fn controller_owner(api_version: &str, kind: &str, owner: &Value) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "name": str_at(owner, "/metadata/name"),
        "uid": uid_of(owner),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// An integer field, or `default`.
pub fn int_at(object: &Value, pointer: &str, default: i64) -> i64 {
    object
        .at(pointer)
        .and_then(Value::as_i64)
        .unwrap_or(default)
}

/// Set a condition in `status.conditions`, keeping `lastTransitionTime`
/// when the status does not change. Extra fields (`lastHeartbeatTime`,
/// `lastProbeTime`) are given by the caller in `extra`.
pub fn set_condition(
    object: &mut Value,
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
    extra: &[(&str, Value)],
) {
    let now = json!(rfc3339(Timestamp::now()));
    let conditions = conditions_mut(object);
    let position = conditions
        .iter()
        .position(|c| c.get("type").and_then(Value::as_str) == Some(kind));
    let transition = match position {
        Some(i) if conditions[i].get("status").and_then(Value::as_str) == Some(status) => {
            conditions[i]
                .get("lastTransitionTime")
                .cloned()
                .unwrap_or_else(|| now.clone())
        }
        _ => now,
    };
    let mut condition = json!({"type": kind, "status": status, "lastTransitionTime": transition});
    if !reason.is_empty() {
        condition["reason"] = json!(reason);
    }
    if !message.is_empty() {
        condition["message"] = json!(message);
    }
    for (k, v) in extra {
        condition[*k] = v.clone();
    }
    match position {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
}

/// `status.conditions` as a mutable list, created if missing.
pub fn conditions_mut(object: &mut Value) -> &mut Vec<Value> {
    if !object.is_object() {
        *object = json!({});
    }
    if !object.get("status").is_some_and(Value::is_object) {
        object["status"] = json!({});
    }
    if !object["status"]
        .get("conditions")
        .is_some_and(Value::is_array)
    {
        object["status"]["conditions"] = json!([]);
    }
    match object["status"]["conditions"].as_array_mut() {
        Some(list) => list,
        None => unreachable!("conditions was just made an array"),
    }
}

/// Delete a pod as a client's DELETE with default options does: a pod
/// bound to a node and not finished gets a deletionTimestamp with its grace
/// period (the kubelet finishes the delete); any other pod goes at once.
pub fn delete_pod(store: &Store, pod: &Value) -> Result<(), StoreError> {
    let (ns, name) = key_of(pod);
    let pre = Preconditions {
        uid: Some(uid_of(pod).to_string()),
        resource_version: None,
    };
    let grace = int_at(
        pod,
        "/spec/terminationGracePeriodSeconds",
        DEFAULT_GRACE_SECONDS,
    );
    let result = if node_name_of(pod).is_empty() || is_terminal(pod) || grace <= 0 {
        store.delete(&PODS, &ns, &name, &pre).map(drop)
    } else {
        store
            .mark_deleting(&PODS, &ns, &name, grace, &pre)
            .map(drop)
    };
    match result {
        // Already gone or replaced by a pod of the same name: nothing to do.
        Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => Ok(()),
        other => other,
    }
}

/// Pod spec fields the API server defaults on create; controllers that
/// create pods straight in the store fill them the same way.
pub fn default_pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        *spec = json!({});
    }
    let defaults = [
        (
            "terminationGracePeriodSeconds",
            json!(DEFAULT_GRACE_SECONDS),
        ),
        ("restartPolicy", json!("Always")),
        ("dnsPolicy", json!("ClusterFirst")),
        ("schedulerName", json!("default-scheduler")),
        ("securityContext", json!({})),
    ];
    for (k, v) in defaults {
        if spec.get(k).is_none() {
            spec[k] = v;
        }
    }
}

/// 32-bit FNV-1a over the canonical form (sorted keys) of a JSON value,
/// encoded the way Kubernetes encodes `pod-template-hash` and
/// `controller-revision-hash` (decimal digits mapped onto a safe alphabet).
/// Fields holding a zero value (null, `""`, `0`, `false`, empty lists
/// and objects) count as absent: upstream hashes the Go struct, where an
/// absent field is its zero value, so a template that went through a Go
/// client keeps its hash (`kubectl rollout undo` sends back what it read,
/// `"creationTimestamp": null` and `"resources": {}` included, without the
/// `"stdin": false` its protobuf `create` wrote). Unlike upstream, an
/// explicit zero in a pointer field hashes as its absence.
pub fn template_hash(template: &Value) -> String {
    fn empty(v: &Value) -> bool {
        match v {
            Value::Null => true,
            Value::Bool(b) => !b,
            Value::Number(n) => n.as_f64() == Some(0.0),
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(m) => m.values().all(empty),
        }
    }
    fn feed(h: &mut u32, bytes: &[u8]) {
        for b in bytes {
            *h ^= u32::from(*b);
            *h = h.wrapping_mul(16_777_619);
        }
    }
    fn walk(h: &mut u32, v: &Value) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m
                    .iter()
                    .filter(|(_, v)| !empty(v))
                    .map(|(k, _)| k)
                    .collect();
                keys.sort();
                feed(h, b"{");
                for k in keys {
                    feed(h, k.as_bytes());
                    feed(h, b":");
                    walk(h, &m[k]);
                    feed(h, b",");
                }
                feed(h, b"}");
            }
            Value::Array(a) => {
                feed(h, b"[");
                for x in a {
                    walk(h, x);
                    feed(h, b",");
                }
                feed(h, b"]");
            }
            other => feed(h, other.to_string().as_bytes()),
        }
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h: u32 = 2_166_136_261;
    walk(&mut h, template);
    h.to_string()
        .bytes()
        .map(|d| ALPHABET[usize::from(d) % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_hash_ignores_key_order_and_follows_content() {
        let a = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"x": 1}});
        let b = json!({"spec": {"x": 1}, "metadata": {"labels": {"b": "2", "a": "1"}}});
        let c = json!({"spec": {"x": 2}, "metadata": {"labels": {"b": "2", "a": "1"}}});
        assert_eq!(template_hash(&a), template_hash(&b));
        assert_ne!(template_hash(&a), template_hash(&c));
        let through_go = json!({"spec": {"x": 1, "resources": {}, "stdin": false},
            "metadata": {"labels": {"b": "2", "a": "1"}, "creationTimestamp": null, "generation": 0}});
        assert_eq!(template_hash(&a), template_hash(&through_go));
        assert!(
            template_hash(&a)
                .chars()
                .all(|ch| "bcdfghjklmnpqrstvwxz2456789".contains(ch))
        );
    }

    #[test]
    fn set_condition_keeps_transition_time_while_status_holds() {
        let mut pod = json!({"status": {"conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}]}});
        set_condition(&mut pod, "Ready", "True", "", "", &[]);
        assert_eq!(
            pod["status"]["conditions"][0]["lastTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
        set_condition(&mut pod, "Ready", "False", "R", "m", &[]);
        assert_ne!(
            pod["status"]["conditions"][0]["lastTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
        assert_eq!(pod["status"]["conditions"][0]["reason"], "R");
        set_condition(&mut pod, "PodScheduled", "True", "", "", &[]);
        assert_eq!(
            pod["status"]["conditions"].as_array().map(Vec::len),
            Some(2)
        );
    }

    #[test]
    fn delete_pod_is_graceful_only_for_bound_running_pods() {
        let store = Store::new();
        let bound = store
            .create(
                &PODS,
                "ns",
                json!({"metadata": {"name": "b"}, "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 5}}),
            )
            .unwrap();
        let unbound = store
            .create(&PODS, "ns", json!({"metadata": {"name": "u"}, "spec": {}}))
            .unwrap();
        delete_pod(&store, &bound).unwrap();
        delete_pod(&store, &unbound).unwrap();
        let b = store.get(&PODS, "ns", "b").unwrap();
        assert_eq!(b["metadata"]["deletionGracePeriodSeconds"], 5);
        assert!(store.get(&PODS, "ns", "u").is_none());
        // Deleting what is already gone is fine.
        delete_pod(&store, &unbound).unwrap();
    }
}
