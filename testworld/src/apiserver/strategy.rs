//! What the types' registry strategies do to objects on the way to the
//! store: defaults and status resets on create, name validation, the rules
//! of updates and of the status subresource, graceful pod deletion and
//! finalizers, conditions.

use std::sync::Arc;

use base64::Engine;
use serde_json::{Value, json};

use super::body::{DeleteOptions, meta_str};
use super::status::{ApiError, Details};
use crate::resources::{NAMESPACES, NODES, PODS, Resource, SECRETS};
use crate::store::{Preconditions, Store, StoreError, metadata_mut};

/// A namespaced object is written to an existing namespace (404 when it
/// is not).
pub(crate) fn ensure_namespace(
    store: &Store,
    resource: &Resource,
    namespace: &str,
) -> Result<(), ApiError> {
    if resource.namespaced && store.get(&NAMESPACES, "", namespace).is_none() {
        return Err(ApiError::namespace_not_found(namespace));
    }
    Ok(())
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Object names: DNS subdomains (labels for namespaces), as validation
/// requires of the types served here.
pub(crate) fn validate_name(resource: &Resource, object: &Value) -> Result<(), ApiError> {
    let Some(name) = meta_str(object, "name") else {
        return Ok(());
    };
    let (ok, message) = if resource == &NAMESPACES {
        (
            is_dns_label(name),
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        )
    } else {
        (
            is_dns_subdomain(name),
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        )
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            resource,
            name,
            &[(
                "metadata.name",
                "FieldValueInvalid",
                format!("Invalid value: {name:?}: {message}"),
            )],
        ))
    }
}

/// Secrets: `stringData` is write-only and merged into `data`.
fn fold_string_data(object: &mut Value) {
    let Some(map) = object.as_object_mut() else {
        return;
    };
    let Some(Value::Object(string_data)) = map.remove("stringData") else {
        return;
    };
    let data = map.entry("data").or_insert_with(|| json!({}));
    if !data.is_object() {
        *data = json!({});
    }
    if let Some(data) = data.as_object_mut() {
        for (k, v) in string_data {
            let text = v.as_str().unwrap_or_default().to_string();
            data.insert(
                k,
                json!(base64::engine::general_purpose::STANDARD.encode(text)),
            );
        }
    }
}

fn pod_defaults(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    for (k, v) in [
        ("restartPolicy", json!("Always")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("dnsPolicy", json!("ClusterFirst")),
        ("schedulerName", json!("default-scheduler")),
        ("securityContext", json!({})),
        ("enableServiceLinks", json!(true)),
        ("priority", json!(0)),
    ] {
        spec.entry(k).or_insert(v);
    }
    // The DefaultTolerationSeconds admission plugin.
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    if let Some(list) = tolerations.as_array_mut() {
        for key in [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
        ] {
            if !list.iter().any(|t| t["key"] == key) {
                list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
            }
        }
    }
    for list in ["containers", "initContainers"] {
        if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in containers {
                let Some(c) = c.as_object_mut() else { continue };
                let latest = c.get("image").and_then(Value::as_str).is_some_and(|i| {
                    !i.rsplit('/').next().unwrap_or(i).contains(':') || i.ends_with(":latest")
                });
                c.entry("imagePullPolicy").or_insert(json!(if latest {
                    "Always"
                } else {
                    "IfNotPresent"
                }));
                c.entry("terminationMessagePath")
                    .or_insert(json!("/dev/termination-log"));
                c.entry("terminationMessagePolicy").or_insert(json!("File"));
                c.entry("resources").or_insert(json!({}));
            }
        }
    }
}

fn qos_class(pod: &Value) -> &'static str {
    let containers = pod.pointer("/spec/containers").and_then(Value::as_array);
    let any_resources = containers.is_some_and(|cs| {
        cs.iter().any(|c| {
            c.pointer("/resources/requests")
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty())
                || c.pointer("/resources/limits")
                    .and_then(Value::as_object)
                    .is_some_and(|m| !m.is_empty())
        })
    });
    if any_resources {
        "Burstable"
    } else {
        "BestEffort"
    }
}

/// What the type's strategy does before a create: status reset, defaults.
pub(crate) fn prepare_create(resource: &Resource, object: &mut Value) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for server_field in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "selfLink",
        ] {
            meta.remove(server_field);
        }
    }
    let Some(map) = object.as_object_mut() else {
        return;
    };
    match (resource.group, resource.plural) {
        ("", "pods") => {
            map.entry("spec").or_insert_with(|| json!({}));
            pod_defaults(object);
            let qos = qos_class(object);
            if let Some(map) = object.as_object_mut() {
                map.insert(
                    "status".into(),
                    json!({"phase": "Pending", "qosClass": qos}),
                );
            }
        }
        ("", "namespaces") => {
            map.insert("spec".into(), json!({"finalizers": ["kubernetes"]}));
            map.insert("status".into(), json!({"phase": "Active"}));
            let name = meta_str(object, "name").map(String::from);
            if let Some(name) = name {
                let meta = metadata_mut(object);
                let labels = meta.entry("labels").or_insert_with(|| json!({}));
                if let Some(l) = labels.as_object_mut() {
                    l.insert("kubernetes.io/metadata.name".into(), json!(name));
                }
            }
        }
        ("", "secrets") => {
            fold_string_data(object);
            if let Some(map) = object.as_object_mut() {
                map.entry("type").or_insert(json!("Opaque"));
            }
        }
        ("policy", "poddisruptionbudgets") => {
            map.insert(
                "status".into(),
                json!({"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}),
            );
        }
        // A new volume or claim starts Pending until the PersistentVolume
        // controller binds it; the status a client sends is dropped
        // (`pkg/registry/core/persistentvolume{,claim}/strategy.go`
        // PrepareForCreate, `pkg/apis/core/v1/defaults.go`
        // SetDefaults_PersistentVolume{,Claim}).
        ("", "persistentvolumes" | "persistentvolumeclaims") => {
            map.insert("status".into(), json!({"phase": "Pending"}));
        }
        ("batch", "jobs") => {
            map.remove("status");
            job_defaults(object);
        }
        ("apps", _) | ("storage.k8s.io", "volumeattachments")
            if resource.subresources.contains(&"status") =>
        {
            map.remove("status");
        }
        _ => {}
    }
}

/// A Job's defaults (`pkg/apis/batch/v1/defaults.go` SetDefaults_Job) and,
/// unless `manualSelector` is set, its generated selector: the template's
/// pods carry the Job's uid and name in four labels and the selector
/// matches the uid (`pkg/registry/batch/job/strategy.go` generateSelector).
/// The uid is chosen here; [`store_new`] stores the Job under it.
fn job_defaults(job: &mut Value) {
    let uid = crate::store::new_uid();
    let name = meta_str(job, "name").unwrap_or("").to_string();
    metadata_mut(job).insert("uid".into(), json!(uid));
    let Some(spec) = job.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let has_failure_policy = spec.contains_key("podFailurePolicy");
    // A pod condition pattern matches status `True` unless it says
    // otherwise (SetDefaults_PodFailurePolicyOnPodConditionsPattern).
    if let Some(rules) = spec
        .get_mut("podFailurePolicy")
        .and_then(|p| p.get_mut("rules"))
        .and_then(Value::as_array_mut)
    {
        for pattern in rules
            .iter_mut()
            .filter_map(|r| r.get_mut("onPodConditions"))
            .filter_map(Value::as_array_mut)
            .flatten()
        {
            if let Some(p) = pattern.as_object_mut()
                && p.get("status")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty()
            {
                p.insert("status".into(), json!("True"));
            }
        }
    }
    if !spec.contains_key("completions") && !spec.contains_key("parallelism") {
        spec.insert("completions".into(), json!(1));
    }
    for (k, v) in [
        ("parallelism", json!(1)),
        ("backoffLimit", json!(6)),
        ("completionMode", json!("NonIndexed")),
        ("suspend", json!(false)),
        // `Failed` when a pod failure policy is set, so that a pod still
        // terminating is not replaced early (JobPodReplacementPolicy).
        (
            "podReplacementPolicy",
            json!(if has_failure_policy {
                "Failed"
            } else {
                "TerminatingOrFailed"
            }),
        ),
    ] {
        spec.entry(k).or_insert(v);
    }
    if spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    // `generateName` Jobs have no name yet here; the real server names
    // them before validation. The labels then carry only the uid.
    let mut labels = vec![
        ("batch.kubernetes.io/controller-uid", uid.clone()),
        ("controller-uid", uid.clone()),
    ];
    if !name.is_empty() {
        labels.push(("batch.kubernetes.io/job-name", name.clone()));
        labels.push(("job-name", name));
    }
    spec.insert(
        "selector".into(),
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
    );
    let template = spec.entry("template").or_insert_with(|| json!({}));
    if let Some(t) = template.as_object_mut() {
        let meta = t.entry("metadata").or_insert_with(|| json!({}));
        if let Some(m) = meta.as_object_mut() {
            let l = m.entry("labels").or_insert_with(|| json!({}));
            if let Some(l) = l.as_object_mut() {
                for (k, v) in labels {
                    l.insert(k.into(), json!(v));
                }
            }
        }
    }
}

/// Store a newly created object, under the uid [`prepare_create`] chose
/// for it if it chose one.
pub(crate) fn store_new(
    store: &Store,
    resource: &'static Resource,
    namespace: &str,
    object: Value,
) -> Result<Arc<Value>, StoreError> {
    match meta_str(&object, "uid").map(str::to_string) {
        Some(uid) => store.create_with_uid(resource, namespace, object, uid),
        None => store.create(resource, namespace, object),
    }
}

/// Run `change` on the current object under the store's lock, keeping
/// `ApiError`s intact. A resourceVersion left in the result is checked.
pub(crate) fn modify_object(
    store: &Store,
    resource: &'static Resource,
    namespace: &str,
    name: &str,
    change: impl FnOnce(&Value) -> Result<Value, ApiError>,
) -> Result<Arc<Value>, ApiError> {
    let mut failure: Option<ApiError> = None;
    let result = store.modify(resource, namespace, name, |object| match change(object) {
        Ok(next) => {
            *object = next;
            Ok(())
        }
        Err(e) => {
            failure = Some(e);
            Err(StoreError::Invalid {
                resource: resource.qualified_plural(),
                name: name.to_string(),
                message: String::new(),
            })
        }
    });
    match result {
        Ok(object) => Ok(object),
        Err(e) => Err(failure.unwrap_or_else(|| ApiError::from_store(e, resource))),
    }
}

/// The object an update stores: for types with a status subresource the
/// main resource keeps the stored status and `/status` keeps everything
/// but the status (the body's resourceVersion still applies).
pub(crate) fn merge_for_update(
    resource: &Resource,
    status_sub: bool,
    current: &Value,
    body: Value,
) -> Value {
    let has_status_sub = resource.subresources.contains(&"status");
    let mut next = if status_sub {
        let mut next = current.clone();
        match body.get("status") {
            Some(status) => next["status"] = status.clone(),
            None => {
                if let Some(m) = next.as_object_mut() {
                    m.remove("status");
                }
            }
        }
        let rv = meta_str(&body, "resourceVersion").map(String::from);
        if let Some(rv) = rv {
            metadata_mut(&mut next).insert("resourceVersion".into(), json!(rv));
        }
        next
    } else if has_status_sub {
        let mut next = body;
        match current.get("status") {
            Some(status) => next["status"] = status.clone(),
            None => {
                if let Some(m) = next.as_object_mut() {
                    m.remove("status");
                }
            }
        }
        next
    } else {
        body
    };
    if next.pointer("/metadata/managedFields").is_none()
        && let Some(mf) = current.pointer("/metadata/managedFields")
    {
        metadata_mut(&mut next).insert("managedFields".into(), mf.clone());
    }
    if resource == &SECRETS {
        fold_string_data(&mut next);
    }
    next
}

/// Update rules the types' strategies enforce.
pub(crate) fn validate_update(
    resource: &Resource,
    current: &Value,
    next: &Value,
) -> Result<(), ApiError> {
    if resource == &NODES {
        let old = current
            .pointer("/spec/providerID")
            .and_then(Value::as_str)
            .unwrap_or("");
        let new = next
            .pointer("/spec/providerID")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !old.is_empty() && old != new {
            let name = meta_str(current, "name").unwrap_or("");
            return Err(ApiError::invalid(
                resource,
                name,
                &[(
                    "spec.providerID",
                    "FieldValueForbidden",
                    "Forbidden: node updates may not change providerID except from \"\" to valid"
                        .into(),
                )],
            ));
        }
    }
    if resource == &PODS {
        let old = current
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        let new = next
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !old.is_empty() && old != new {
            let name = meta_str(current, "name").unwrap_or("");
            return Err(ApiError::invalid(
                resource,
                name,
                &[("spec", "FieldValueForbidden", "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)".into())],
            ));
        }
    }
    Ok(())
}

/// After an update: an object being deleted whose last finalizer is gone
/// (and that waits for nothing else) is removed, as the registry does.
pub(crate) fn finish_if_finalized(
    store: &Store,
    resource: &'static Resource,
    object: Arc<Value>,
) -> Arc<Value> {
    let deleting = object.pointer("/metadata/deletionTimestamp").is_some();
    let finalizers_left = object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    let grace = object
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if deleting && !finalizers_left && grace == 0 {
        let ns = meta_str(&object, "namespace").unwrap_or("").to_string();
        let name = meta_str(&object, "name").unwrap_or("").to_string();
        let pre = Preconditions {
            uid: None,
            resource_version: meta_str(&object, "resourceVersion").map(String::from),
        };
        if let Ok(last) = store.delete(resource, &ns, &name, &pre) {
            return last;
        }
    }
    object
}

fn has_finalizers(object: &Value) -> bool {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

/// The grace period a pod delete gets: none for unbound or finished pods
/// (the pod strategy's `CheckGracefulDelete`), else the option's or the
/// pod's own.
fn pod_grace_period(pod: &Value, requested: Option<i64>) -> i64 {
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    let bound = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    if !bound || phase == "Succeeded" || phase == "Failed" {
        return 0;
    }
    let grace = requested
        .or_else(|| {
            pod.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(30);
    if grace < 0 { 1 } else { grace }
}

/// What a delete did, for the response.
pub(crate) enum Deleted {
    /// Removed now; its last state.
    Gone(Arc<Value>),
    /// Still there, being deleted (graceful pods, finalizers).
    Pending(Arc<Value>),
}

/// Delete one object as the registry does (graceful pods, finalizers).
pub(crate) fn delete_object(
    store: &Store,
    resource: &'static Resource,
    namespace: &str,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Deleted, ApiError> {
    let current = store
        .get(resource, namespace, name)
        .ok_or_else(|| ApiError::not_found(resource, name))?;
    let grace = if resource == &PODS {
        pod_grace_period(&current, opts.grace_period_seconds)
    } else {
        0
    };
    let map = |e| ApiError::from_store(e, resource);
    // Checked before anything else, with its own words, as
    // k8s.io/apiserver `pkg/registry/rest/delete.go` `BeforeDelete` does
    // ("to fail early"); the storage checks again at the write.
    if let Some(uid) = &opts.preconditions.uid
        && meta_str(&current, "uid") != Some(uid.as_str())
    {
        return Err(ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {name:?}: the UID in the precondition ({uid}) does not match the UID in record ({}). The object might have been deleted and then recreated",
                resource.kind,
                meta_str(&current, "uid").unwrap_or("")
            ),
        )
        .with_details(Details::of(resource, name)));
    }
    if opts.dry_run {
        return Ok(if grace > 0 || has_finalizers(&current) {
            Deleted::Pending(current)
        } else {
            Deleted::Gone(current)
        });
    }
    if grace > 0 || has_finalizers(&current) {
        let marked = store
            .mark_deleting(resource, namespace, name, grace, &opts.preconditions)
            .map_err(map)?;
        // A forced delete of a pod already terminating removes it now.
        if grace == 0 && !has_finalizers(&marked) {
            return store
                .delete(resource, namespace, name, &opts.preconditions)
                .map(Deleted::Gone)
                .map_err(map);
        }
        return Ok(Deleted::Pending(marked));
    }
    store
        .delete(resource, namespace, name, &opts.preconditions)
        .map(Deleted::Gone)
        .map_err(map)
}

/// Set `status.conditions[type]`, replacing one of the same type.
pub(crate) fn set_condition(object: &mut Value, condition: Value) {
    if !object.get("status").is_some_and(Value::is_object) {
        object["status"] = json!({});
    }
    let status = &mut object["status"];
    if !status.get("conditions").is_some_and(Value::is_array) {
        status["conditions"] = json!([]);
    }
    if let Some(list) = status["conditions"].as_array_mut() {
        match list.iter_mut().find(|c| c["type"] == condition["type"]) {
            Some(existing) => *existing = condition,
            None => list.push(condition),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated_like_the_registry() {
        assert!(validate_name(&PODS, &json!({"metadata": {"name": "web-1.a"}})).is_ok());
        let e = validate_name(&PODS, &json!({"metadata": {"name": "Web"}})).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(validate_name(&NAMESPACES, &json!({"metadata": {"name": "a.b"}})).is_err());
    }

    #[test]
    fn status_subresource_rules() {
        let current = json!({"metadata": {"name": "n", "resourceVersion": "5"}, "spec": {"a": 1}, "status": {"s": 1}});
        let body = json!({"metadata": {"name": "n", "resourceVersion": "4"}, "spec": {"a": 2}, "status": {"s": 2}});
        let main = merge_for_update(&NODES, false, &current, body.clone());
        assert_eq!(main["spec"]["a"], 2);
        assert_eq!(main["status"]["s"], 1);
        let status = merge_for_update(&NODES, true, &current, body.clone());
        assert_eq!(status["spec"]["a"], 1);
        assert_eq!(status["status"]["s"], 2);
        assert_eq!(status["metadata"]["resourceVersion"], "4");
        let plain = merge_for_update(&crate::resources::CONFIGMAPS, false, &current, body);
        assert_eq!(plain["status"]["s"], 2);
    }

    #[test]
    fn pod_grace_depends_on_binding_and_phase() {
        let bound = json!({"spec": {"nodeName": "n", "terminationGracePeriodSeconds": 7}, "status": {"phase": "Running"}});
        assert_eq!(pod_grace_period(&bound, None), 7);
        assert_eq!(pod_grace_period(&bound, Some(0)), 0);
        assert_eq!(pod_grace_period(&bound, Some(3)), 3);
        let unbound = json!({"spec": {}, "status": {"phase": "Pending"}});
        assert_eq!(pod_grace_period(&unbound, Some(30)), 0);
        let done = json!({"spec": {"nodeName": "n"}, "status": {"phase": "Succeeded"}});
        assert_eq!(pod_grace_period(&done, None), 0);
    }

    #[test]
    fn string_data_is_folded_into_data() {
        let mut s = json!({"stringData": {"a": "hi"}, "data": {"b": "eA=="}});
        fold_string_data(&mut s);
        assert_eq!(s["data"]["a"], "aGk=");
        assert_eq!(s["data"]["b"], "eA==");
        assert!(s.get("stringData").is_none());
    }
}
