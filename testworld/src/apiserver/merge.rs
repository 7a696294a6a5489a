//! Strategic merge patch (pure): how each list merges (the
//! `patchStrategy`/`patchMergeKey` tags of the built-in types, by field
//! name and, where a field merges differently, by context) and the merge
//! itself, with its `$patch` directives. Patches and server-side apply
//! use it; the OpenAPI schemas publish the same list strategies.

use serde_json::{Map, Value};

use super::status::ApiError;
use crate::resources::{PDBS, Resource, SERVICES};

/// How a list field merges in a strategic merge patch (the
/// `patchStrategy`/`patchMergeKey` tags of the built-in types).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListStrategy {
    /// Elements are matched by this key and merged.
    MergeKey(&'static str),
    /// A set of scalars (`finalizers`).
    Set,
    /// The whole list is replaced (no merge key: taints, tolerations, …).
    Atomic,
}

pub(crate) fn list_strategy(field: &str) -> ListStrategy {
    match field {
        "conditions" | "addresses" => ListStrategy::MergeKey("type"),
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims"
        | "secrets" => ListStrategy::MergeKey("name"),
        "volumeMounts" => ListStrategy::MergeKey("mountPath"),
        "volumeDevices" => ListStrategy::MergeKey("devicePath"),
        "ports" => ListStrategy::MergeKey("containerPort"),
        "ownerReferences" => ListStrategy::MergeKey("uid"),
        "podIPs" | "hostIPs" | "hostAliases" => ListStrategy::MergeKey("ip"),
        "topologySpreadConstraints" => ListStrategy::MergeKey("topologyKey"),
        "finalizers" => ListStrategy::Set,
        _ => ListStrategy::Atomic,
    }
}

/// Lists whose merge key is not the one their field name has elsewhere:
/// `(resource, path to the list's parent, definition of the parent, field,
/// key)`. A Service's `spec.ports` merge by `port` (`k8s.io/api/core/v1`
/// `ServiceSpec.Ports`, `patchMergeKey:"port"`), not `containerPort`.
const MERGE_KEYS_IN_CONTEXT: &[(&Resource, &[&str], &str, &str, &str)] = &[(
    &SERVICES,
    &["spec"],
    "io.k8s.api.core.v1.ServiceSpec",
    "ports",
    "port",
)];

/// [`list_strategy`] of `field` in the object at `path` of `resource`.
fn list_strategy_at(resource: &Resource, path: &[String], field: &str) -> ListStrategy {
    MERGE_KEYS_IN_CONTEXT
        .iter()
        .find(|(r, p, _, f, _)| *r == resource && *f == field && p.iter().eq(path.iter()))
        .map_or_else(
            || list_strategy(field),
            |(.., key)| ListStrategy::MergeKey(key),
        )
}

/// [`list_strategy`] of `field` in the OpenAPI definition `definition`.
pub(crate) fn list_strategy_in(definition: &str, field: &str) -> ListStrategy {
    MERGE_KEYS_IN_CONTEXT
        .iter()
        .find(|(_, _, d, f, _)| *d == definition && *f == field)
        .map_or_else(
            || list_strategy(field),
            |(.., key)| ListStrategy::MergeKey(key),
        )
}

/// Map fields a strategic merge replaces instead of merging (the PDB
/// selector is `patchStrategy:"replace"`).
fn replaces_map(resource: &Resource, path: &[String], field: &str) -> bool {
    resource == &PDBS && path.len() == 1 && path[0] == "spec" && field == "selector"
}

fn bad_directive(d: &Value) -> ApiError {
    ApiError::bad_request(format!("Unknown patch directive: {d}"))
}

/// Drop `$patch`-style directives from a value inserted as a whole.
fn without_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), without_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .filter(|e| e.get("$patch").is_none())
                .map(without_directives)
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Strategic merge of `patch` into `orig` (a map at `path`).
pub(crate) fn strategic_merge_map(
    resource: &Resource,
    orig: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    path: &mut Vec<String>,
) -> Result<(), ApiError> {
    if let Some(d) = patch.get("$patch") {
        match d.as_str() {
            Some("replace") => {
                *orig = match without_directives(&Value::Object(patch.clone())) {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                return Ok(());
            }
            Some("delete") => {
                orig.clear();
                return Ok(());
            }
            Some("merge") => {}
            _ => return Err(bad_directive(d)),
        }
    }
    for (k, v) in patch {
        if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(remove)) = (orig.get_mut(field), v.as_array()) {
                list.retain(|x| !remove.contains(x));
            }
            continue;
        }
        match v {
            Value::Null => {
                orig.remove(k);
            }
            Value::Object(pm) => {
                if pm.get("$patch").and_then(Value::as_str) == Some("delete") {
                    orig.remove(k);
                    continue;
                }
                if replaces_map(resource, path, k) {
                    orig.insert(k.clone(), without_directives(v));
                    continue;
                }
                path.push(k.clone());
                let slot = orig
                    .entry(k.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(om) = slot {
                    strategic_merge_map(resource, om, pm, path)?;
                }
                path.pop();
            }
            Value::Array(pa) => {
                let merged = match list_strategy_at(resource, path, k) {
                    ListStrategy::Atomic => without_directives(v),
                    ListStrategy::Set => {
                        let mut list = orig
                            .get(k)
                            .and_then(Value::as_array)
                            .cloned()
                            .unwrap_or_default();
                        for item in pa {
                            if !list.contains(item) {
                                list.push(item.clone());
                            }
                        }
                        Value::Array(list)
                    }
                    ListStrategy::MergeKey(key) => {
                        let current = orig
                            .get(k)
                            .and_then(Value::as_array)
                            .cloned()
                            .unwrap_or_default();
                        path.push(k.clone());
                        let merged = merge_keyed_list(resource, current, pa, key, path)?;
                        path.pop();
                        Value::Array(merged)
                    }
                };
                orig.insert(k.clone(), merged);
            }
            scalar => {
                orig.insert(k.clone(), scalar.clone());
            }
        }
    }
    Ok(())
}

fn merge_keyed_list(
    resource: &Resource,
    mut list: Vec<Value>,
    patch: &[Value],
    key: &str,
    path: &mut Vec<String>,
) -> Result<Vec<Value>, ApiError> {
    if patch
        .iter()
        .any(|e| e.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return match without_directives(&Value::Array(patch.to_vec())) {
            Value::Array(a) => Ok(a),
            _ => Ok(Vec::new()),
        };
    }
    for element in patch {
        let Some(pm) = element.as_object() else {
            if !list.contains(element) {
                list.push(element.clone());
            }
            continue;
        };
        let key_value = pm.get(key);
        if let Some(d) = pm.get("$patch") {
            match d.as_str() {
                Some("delete") => {
                    list.retain(|e| key_value.is_none() || e.get(key) != key_value);
                    continue;
                }
                Some("merge") | Some("replace") => {}
                _ => return Err(bad_directive(d)),
            }
        }
        match list
            .iter_mut()
            .find(|e| key_value.is_some() && e.get(key) == key_value)
        {
            Some(Value::Object(existing)) => strategic_merge_map(resource, existing, pm, path)?,
            _ => {
                let mut fresh = Map::new();
                strategic_merge_map(resource, &mut fresh, pm, path)?;
                list.push(Value::Object(fresh));
            }
        }
    }
    Ok(list)
}

/// Apply a strategic merge patch to a whole object.
pub(crate) fn strategic_merge(
    resource: &Resource,
    object: &mut Value,
    patch: &Value,
) -> Result<(), ApiError> {
    let Value::Object(pm) = patch else {
        return Err(ApiError::bad_request(
            "a strategic merge patch must be a JSON object",
        ));
    };
    if !object.is_object() {
        *object = Value::Object(Map::new());
    }
    if let Value::Object(om) = object {
        strategic_merge_map(resource, om, pm, &mut Vec::new())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{NODES, PODS};
    use serde_json::json;

    fn smp(resource: &Resource, mut object: Value, patch: Value) -> Value {
        strategic_merge(resource, &mut object, &patch).unwrap();
        object
    }

    #[test]
    fn service_ports_merge_by_port() {
        let svc = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}});
        let patched = smp(
            &SERVICES,
            svc,
            json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
        );
        assert_eq!(
            patched["spec"]["ports"],
            json!([{"port": 80, "targetPort": 9090}, {"port": 443}])
        );
        assert_eq!(
            list_strategy_in("io.k8s.api.core.v1.ServiceSpec", "ports"),
            ListStrategy::MergeKey("port")
        );
        assert_eq!(
            list_strategy_in("io.k8s.api.core.v1.Container", "ports"),
            ListStrategy::MergeKey("containerPort")
        );
    }

    #[test]
    fn conditions_merge_by_type() {
        let node = json!({"status": {"conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady"},
            {"type": "DiskPressure", "status": "False"}]}});
        let out = smp(
            &NODES,
            node,
            json!({"status": {"conditions": [{"type": "Ready", "status": "False", "reason": null},
                                             {"type": "PIDPressure", "status": "False"}]}}),
        );
        let c = out["status"]["conditions"].as_array().unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c[0], json!({"type": "Ready", "status": "False"}));
        assert_eq!(c[1]["type"], "DiskPressure");
        assert_eq!(c[2]["type"], "PIDPressure");
    }

    #[test]
    fn taints_are_replaced_and_null_deletes() {
        let node = json!({"spec": {"unschedulable": true, "taints": [{"key": "a", "effect": "NoSchedule"}]}});
        let out = smp(
            &NODES,
            node.clone(),
            json!({"spec": {"taints": [{"key": "b", "effect": "NoExecute"}]}}),
        );
        assert_eq!(
            out["spec"]["taints"],
            json!([{"key": "b", "effect": "NoExecute"}])
        );
        let out = smp(&NODES, node, json!({"spec": {"unschedulable": null}}));
        assert!(out["spec"].get("unschedulable").is_none());
    }

    #[test]
    fn containers_by_name_with_delete_directive_and_finalizers_as_a_set() {
        let pod = json!({"metadata": {"finalizers": ["a"]}, "spec": {"containers": [
            {"name": "app", "image": "x:1"}, {"name": "side", "image": "y:1"}]}});
        let out = smp(
            &PODS,
            pod,
            json!({"metadata": {"finalizers": ["b", "a"]},
                   "spec": {"containers": [{"name": "app", "image": "x:2"}, {"name": "side", "$patch": "delete"}]}}),
        );
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "app", "image": "x:2"}])
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b"]));
    }

    #[test]
    fn pdb_selector_is_replaced_maps_are_merged() {
        let pdb = json!({"metadata": {"labels": {"a": "1"}},
                         "spec": {"selector": {"matchLabels": {"app": "x", "tier": "y"}}}});
        let out = smp(
            &PDBS,
            pdb,
            json!({"metadata": {"labels": {"b": "2"}}, "spec": {"selector": {"matchLabels": {"app": "z"}}}}),
        );
        assert_eq!(
            out["spec"]["selector"],
            json!({"matchLabels": {"app": "z"}})
        );
        assert_eq!(out["metadata"]["labels"], json!({"a": "1", "b": "2"}));
    }

    #[test]
    fn owner_references_merge_by_uid_and_replace_directive() {
        let obj = json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]}});
        let out = smp(
            &PODS,
            obj.clone(),
            json!({"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]}}),
        );
        assert_eq!(
            out["metadata"]["ownerReferences"].as_array().unwrap().len(),
            2
        );
        let out = smp(
            &PODS,
            obj,
            json!({"metadata": {"ownerReferences": [{"$patch": "replace"}, {"uid": "3", "name": "c"}]}}),
        );
        assert_eq!(
            out["metadata"]["ownerReferences"],
            json!([{"uid": "3", "name": "c"}])
        );
        let mut o = json!({});
        assert!(strategic_merge(&PODS, &mut o, &json!({"spec": {"$patch": "bogus"}})).is_err());
    }
}
