//! Resource requests: get, list, create, update, delete, pod binding, and
//! the dispatch to watch, patch and eviction. What each type's registry
//! strategy does on create/update (status reset, defaults, status
//! subresource rules, graceful pod deletion) is here too.

use std::io::Write;
use std::sync::Arc;

use base64::Engine;
use http::Method;
use http::Response;
use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::handler::{Body, Ctx, json as json_response, json_bytes, protobuf_bytes};
use super::openapi::{
    self,
    fields::{self, Directive},
};
use super::paging::{ContinueToken, EXPIRED_CONTINUE, key_of};
use super::selector::{FieldSelector, LabelSelector};
use super::status::{ApiError, Details, delete_success};
use super::table;
use super::{eviction, patch, watch};
use crate::resources::{self, LEASES, NAMESPACES, NODES, PODS, Resource, SECRETS, SERVICES};
use crate::store::{Preconditions, Store, StoreError, metadata_mut, rfc3339};

pub(crate) async fn dispatch(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let r = ctx.req;
    let watching = r.watch_path || ctx.query.flag("watch");
    let sub = r.subresource.as_deref();
    let named = r.name.is_some();
    let collection_needs_namespace = r.resource.namespaced && r.namespace.is_none();
    match (ctx.method.clone(), named, sub) {
        (Method::GET | Method::HEAD, _, None)
            if watching && !super::handler::accepts_json(super::handler::accept(ctx.headers)) =>
        {
            Err(ApiError::new(
                406,
                "NotAcceptable",
                "only the following media types are accepted for watches: application/json",
            ))
        }
        (_, _, None) if r.resource.create_only() && ctx.method != Method::POST => {
            Err(ApiError::method_not_allowed(ctx.method.as_str()))
        }
        (Method::GET | Method::HEAD, _, None) if watching => watch::serve(ctx),
        (Method::GET | Method::HEAD, false, None) => list(ctx),
        (Method::GET | Method::HEAD, true, None | Some("status")) => get(ctx),
        (Method::POST, false, None) if r.resource.create_only() => super::reviews::review(ctx),
        (Method::POST, false, None) if !collection_needs_namespace => create(ctx),
        (Method::POST, true, Some("token")) => super::reviews::token_request(ctx),
        (Method::POST, true, Some("eviction")) => eviction::evict(ctx),
        (Method::POST, true, Some("binding")) => bind(ctx),
        (Method::PUT, true, None | Some("status")) => update(ctx),
        (Method::PATCH, true, None | Some("status")) => patch::patch(ctx),
        (Method::DELETE, true, None) => delete(ctx),
        (Method::DELETE, false, None) if !collection_needs_namespace => delete_collection(ctx),
        (Method::GET | Method::HEAD | Method::PUT | Method::PATCH, true, Some("scale")) => {
            super::scale::scale(ctx)
        }
        (m, _, _) => Err(ApiError::method_not_allowed(m.as_str())),
    }
}

/// Answer with one object, as a Table when kubectl asked for one.
pub(crate) fn respond_object(ctx: &Ctx<'_>, code: u16, object: &Arc<Value>) -> Response<Body> {
    match &ctx.table {
        Some(t) => json_response(
            ctx.shared,
            code,
            &table::table(ctx.req.resource, std::iter::once(object), None, t),
        ),
        None if ctx.partial => json_response(ctx.shared, code, &table::partial_metadata(object)),
        None if ctx.protobuf => protobuf_object(ctx, code, object),
        None => json_response(ctx.shared, code, object),
    }
}

/// An object answered in protobuf, its type taken from the resource.
fn protobuf_object(ctx: &Ctx<'_>, code: u16, object: &Value) -> Response<Body> {
    let resource = ctx.req.resource;
    let mut typed = object.clone();
    if let Some(map) = typed.as_object_mut() {
        map.insert("apiVersion".into(), json!(resource.api_version()));
        map.insert("kind".into(), json!(resource.kind));
    }
    match super::protobuf::encode(&typed) {
        Ok(bytes) => protobuf_bytes(ctx.shared, code, bytes),
        // Every served kind has a message; should one not encode, JSON is
        // what every client also accepts.
        Err(_) => json_response(ctx.shared, code, object),
    }
}

fn get(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let object = ctx
        .store()
        .get(ctx.req.resource, ctx.namespace(), ctx.name())
        .ok_or_else(|| ApiError::not_found(ctx.req.resource, ctx.name()))?;
    Ok(respond_object(ctx, 200, &object))
}

/// The selectors of a list or watch request; malformed ones are 400.
pub(crate) fn selectors(ctx: &Ctx<'_>) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(ctx.query.get("labelSelector").unwrap_or(""))
        .map_err(ApiError::bad_request)?;
    let fields = FieldSelector::parse(
        ctx.req.resource,
        ctx.query.get("fieldSelector").unwrap_or(""),
    )
    .map_err(ApiError::bad_request)?;
    Ok((labels, fields))
}

fn list(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let resource = ctx.req.resource;
    let store = ctx.store();
    let (labels, fields) = selectors(ctx)?;
    let selecting = !labels.is_empty() || !fields.is_empty();
    let select = |o: &Arc<Value>| labels.matches(o) && fields.matches(o);
    let limit: usize = match ctx.query.get("limit") {
        None | Some("") => 0,
        Some(l) => l
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?
            .max(0) as usize,
    };
    let ns = ctx.req.namespace.as_deref();
    let (items, rv, start, snapshot) = match ctx.query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let token = ContinueToken::decode(token).map_err(ApiError::bad_request)?;
            if token.rv < store.oldest_watchable() {
                return Err(ApiError::expired(EXPIRED_CONTINUE));
            }
            match ctx.shared.pager.get(token.id, token.rv) {
                Some(items) => (items, token.rv, token.pos, token.id),
                None => {
                    let after = token.start_key();
                    let (all, _) = store.list(resource, ns, |_| true);
                    let items: Vec<Arc<Value>> = all
                        .into_iter()
                        .filter(|o| key_of(o) > after && select(o))
                        .collect();
                    (Arc::new(items), token.rv, 0, 0)
                }
            }
        }
        None => {
            let (all, rv) = store.list(resource, ns, |_| true);
            let items = if selecting {
                all.into_iter().filter(|o| select(o)).collect()
            } else {
                all
            };
            (Arc::new(items), rv, 0, 0)
        }
    };
    let start = start.min(items.len());
    let end = if limit > 0 {
        (start + limit).min(items.len())
    } else {
        items.len()
    };
    let page = &items[start..end];
    let mut meta = Map::new();
    meta.insert("resourceVersion".into(), json!(rv.to_string()));
    if end < items.len() {
        let id = if snapshot != 0 {
            snapshot
        } else {
            ctx.shared.pager.keep(rv, items.clone())
        };
        let (last_ns, last_name) = page.last().map(|o| key_of(o)).unwrap_or_default();
        let token = ContinueToken {
            version: "meta.k8s.io/v1".into(),
            rv,
            start: format!("{last_ns}/{last_name}"),
            id,
            pos: end,
        };
        meta.insert("continue".into(), json!(token.encode()));
        if !selecting {
            meta.insert("remainingItemCount".into(), json!(items.len() - end));
        }
    }
    if let Some(t) = &ctx.table {
        let doc = table::table(resource, page.iter(), Some(Value::Object(meta)), t);
        return Ok(json_response(ctx.shared, 200, &doc));
    }
    if ctx.protobuf
        && !ctx.partial
        && let Ok(bytes) = super::protobuf::encode_list(resource, &meta, page)
    {
        return Ok(protobuf_bytes(ctx.shared, 200, bytes));
    }
    Ok(json_bytes(
        ctx.shared,
        200,
        if ctx.partial {
            serialize_partial_list(&meta, page)
        } else {
            serialize_list(resource, &meta, page)
        },
    ))
}

/// `{"kind":"<Kind>List","apiVersion":…,"metadata":…,"items":[…]}`,
/// serializing each item straight into the buffer.
pub(crate) fn serialize_list(
    resource: &Resource,
    meta: &Map<String, Value>,
    items: &[Arc<Value>],
) -> Vec<u8> {
    let mut buf = Vec::with_capacity(128 + items.len() * 1024);
    let _ = write!(
        buf,
        "{{\"kind\":\"{}\",\"apiVersion\":\"{}\",\"metadata\":",
        resource.list_kind,
        resource.api_version()
    );
    let _ = serde_json::to_writer(&mut buf, meta);
    buf.extend_from_slice(b",\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        let _ = serde_json::to_writer(&mut buf, item.as_ref());
    }
    buf.extend_from_slice(b"]}");
    buf
}

/// A `PartialObjectMetadataList`.
fn serialize_partial_list(meta: &Map<String, Value>, items: &[Arc<Value>]) -> Vec<u8> {
    let items: Vec<Value> = items.iter().map(|o| table::partial_metadata(o)).collect();
    serde_json::to_vec(&json!({
        "kind": "PartialObjectMetadataList",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "items": items,
    }))
    .unwrap_or_default()
}

/// The body of a create or update of the resource's own kind, with
/// server-side field validation (`fieldValidation`) applied to JSON and
/// YAML bodies: `options` names the verb's options for its errors
/// (`CreateOptions`, `UpdateOptions`). Protobuf bodies carry no unknown
/// fields (the decoder skips what the message does not declare).
fn kind_body(ctx: &Ctx<'_>, options: &str) -> Result<Value, ApiError> {
    let directive = Directive::parse(ctx.query.get("fieldValidation"), options)?;
    let mut body = body_object(ctx)?;
    if ctx.content_type() != PROTOBUF {
        check_fields(ctx, &mut body, directive)?;
    }
    Ok(body)
}

/// Drop the fields the kind does not declare, as decoding into the typed
/// object does; `Strict` refuses them and `Warn` names them.
fn check_fields(ctx: &Ctx<'_>, body: &mut Value, directive: Directive) -> Result<(), ApiError> {
    let resource = ctx.req.resource;
    let Some(definition) = openapi::kind_definition(resource) else {
        return Ok(());
    };
    let unknown = fields::prune_unknown(definition, body);
    if unknown.is_empty() {
        return Ok(());
    }
    match directive {
        Directive::Strict => Err(fields::strict_body_error(resource.kind, body, &unknown)),
        Directive::Warn => {
            ctx.warn(fields::warnings(&unknown));
            Ok(())
        }
        Directive::Ignore => Ok(()),
    }
}

/// The request body as a JSON object: JSON, YAML (hand-written clients
/// sometimes send it) or protobuf (kubectl's typed clients send it for
/// `create deployment`, `create pdb`, …). A protobuf body names its own
/// kind; one that does not is taken as the resource's.
pub(crate) fn body_object(ctx: &Ctx<'_>) -> Result<Value, ApiError> {
    let resource = ctx.req.resource;
    body_as(ctx, (&resource.api_version(), resource.kind))
}

/// The request body, `expected` being the `(apiVersion, kind)` a protobuf
/// body without type information holds.
pub(crate) fn body_as(ctx: &Ctx<'_>, expected: (&str, &str)) -> Result<Value, ApiError> {
    if ctx.content_type() == PROTOBUF {
        return super::protobuf::decode(&ctx.body, expected).map_err(ApiError::bad_request);
    }
    check_body_type(ctx)?;
    parse_object(&ctx.body)
}

const PROTOBUF: &str = super::protobuf::MEDIA_TYPE;

/// Bodies are JSON, YAML or protobuf; anything else is 415.
pub(crate) fn check_body_type(ctx: &Ctx<'_>) -> Result<(), ApiError> {
    match ctx.content_type().as_str() {
        "" | "application/json" | "application/yaml" | "*/*" | PROTOBUF => Ok(()),
        other => Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {other:?})"
            ),
        )
        .with_details(super::status::Details::default())),
    }
}

pub(crate) fn parse_object(bytes: &[u8]) -> Result<Value, ApiError> {
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(json_err) => {
            let text = std::str::from_utf8(bytes).map_err(|_| {
                ApiError::bad_request(format!(
                    "the body of the request was in an unknown format: {json_err}"
                ))
            })?;
            serde_saphyr::from_str::<Value>(text).map_err(|_| {
                ApiError::bad_request(format!(
                    "the body of the request was in an unknown format: {json_err}"
                ))
            })?
        }
    };
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    }
    Ok(value)
}

/// `apiVersion`/`kind` in a body must be the resource's when present.
pub(crate) fn check_type_meta(resource: &Resource, object: &Value) -> Result<(), ApiError> {
    if let Some(av) = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        && av != resource.api_version()
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            resource.api_version()
        )));
    }
    if let Some(kind) = object
        .get("kind")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        && kind != resource.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            resource.kind
        )));
    }
    Ok(())
}

fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object
        .get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The namespace an object is written to: the URL's; a different one in
/// the body is 400.
fn check_namespace(ctx: &Ctx<'_>, object: &Value) -> Result<(), ApiError> {
    if ctx.req.resource.namespaced
        && let Some(ns) = meta_str(object, "namespace")
        && ns != ctx.namespace()
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}

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

fn create(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let resource = ctx.req.resource;
    let mut object = kind_body(ctx, "CreateOptions")?;
    check_type_meta(resource, &object)?;
    check_namespace(ctx, &object)?;
    ensure_namespace(ctx.store(), resource, ctx.namespace())?;
    if meta_str(&object, "resourceVersion").is_some() {
        return Err(ApiError::bad_request(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    validate_name(resource, &object)?;
    prepare_create(resource, &mut object);
    if resource == &SERVICES {
        super::service::prepare(ctx.store(), &mut object)?;
    }
    super::apply::record_update(&mut object, None, &ctx.field_manager(), resource, "");
    if ctx.query.dry_run() {
        return dry_run_create(ctx, object);
    }
    let created = store_new(ctx.store(), resource, ctx.namespace(), object)
        .map_err(|e| ApiError::from_store(e, resource))?;
    Ok(respond_object(ctx, 201, &created))
}

/// What a create would return, without storing anything.
fn dry_run_create(ctx: &Ctx<'_>, mut object: Value) -> Result<Response<Body>, ApiError> {
    let resource = ctx.req.resource;
    let name = meta_str(&object, "name").unwrap_or("").to_string();
    if !name.is_empty() && ctx.store().get(resource, ctx.namespace(), &name).is_some() {
        return Err(ApiError::already_exists(resource, &name));
    }
    let ns = ctx.namespace().to_string();
    let meta = metadata_mut(&mut object);
    if resource.namespaced {
        meta.insert("namespace".into(), json!(ns));
    }
    meta.entry("uid")
        .or_insert_with(|| json!(crate::store::new_uid()));
    meta.insert("creationTimestamp".into(), json!(rfc3339(Timestamp::now())));
    meta.insert("generation".into(), json!(1));
    if let Some(map) = object.as_object_mut() {
        map.insert("apiVersion".into(), json!(resource.api_version()));
        map.insert("kind".into(), json!(resource.kind));
    }
    Ok(respond_object(ctx, 201, &Arc::new(object)))
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

fn update(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let resource = ctx.req.resource;
    let name = ctx.name().to_string();
    let status_sub = ctx.req.subresource.as_deref() == Some("status");
    let mut body = kind_body(ctx, "UpdateOptions")?;
    check_type_meta(resource, &body)?;
    check_namespace(ctx, &body)?;
    match meta_str(&body, "name") {
        Some(n) if n != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        Some(_) => {}
        None => {
            metadata_mut(&mut body).insert("name".into(), json!(name));
        }
    }
    let store = ctx.store();
    let Some(current) = store.get(resource, ctx.namespace(), &name) else {
        // Leases are created by PUT (the registry allows create-on-update).
        if resource == &LEASES && !status_sub {
            ensure_namespace(store, resource, ctx.namespace())?;
            validate_name(resource, &body)?;
            prepare_create(resource, &mut body);
            super::apply::record_update(&mut body, None, &ctx.field_manager(), resource, "");
            if ctx.query.dry_run() {
                return dry_run_create(ctx, body);
            }
            let created = store
                .create(resource, ctx.namespace(), body)
                .map_err(|e| ApiError::from_store(e, resource))?;
            return Ok(respond_object(ctx, 201, &created));
        }
        return Err(ApiError::not_found(resource, &name));
    };
    if resource == &LEASES && meta_str(&body, "resourceVersion").is_none() {
        return Err(ApiError::invalid(
            resource,
            &name,
            &[(
                "metadata.resourceVersion",
                "FieldValueInvalid",
                "Invalid value: 0x0: must be specified for an update".into(),
            )],
        ));
    }
    let manager = ctx.field_manager();
    let change = |current: &Value| -> Result<Value, ApiError> {
        let mut next = merge_for_update(resource, status_sub, current, body.clone());
        validate_update(resource, current, &next)?;
        super::apply::record_update(
            &mut next,
            Some(current),
            &manager,
            resource,
            if status_sub { "status" } else { "" },
        );
        Ok(next)
    };
    if ctx.query.dry_run() {
        let next = change(&current)?;
        if let Some(rv) = meta_str(&next, "resourceVersion")
            && rv != meta_str(&current, "resourceVersion").unwrap_or("")
        {
            return Err(ApiError::conflict(
                resource,
                &name,
                crate::store::STALE_RV_MESSAGE,
            ));
        }
        return Ok(respond_object(ctx, 200, &Arc::new(next)));
    }
    let updated = modify_object(store, resource, ctx.namespace(), &name, change)?;
    let updated = finish_if_finalized(store, resource, updated);
    Ok(respond_object(ctx, 200, &updated))
}

/// DeleteOptions from the body (kube-rs always sends one) and the query.
#[derive(Clone, Debug, Default)]
pub(crate) struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub preconditions: Preconditions,
    pub dry_run: bool,
}

impl DeleteOptions {
    pub fn from_value(body: Option<&Value>) -> Result<DeleteOptions, ApiError> {
        let mut opts = DeleteOptions::default();
        let Some(body) = body.filter(|b| !b.is_null()) else {
            return Ok(opts);
        };
        if let Some(g) = body.get("gracePeriodSeconds").filter(|g| !g.is_null()) {
            opts.grace_period_seconds =
                Some(g.as_i64().ok_or_else(|| {
                    ApiError::bad_request("gracePeriodSeconds must be an integer")
                })?);
        }
        if let Some(p) = body.get("preconditions") {
            opts.preconditions.uid = p.get("uid").and_then(Value::as_str).map(String::from);
            opts.preconditions.resource_version = p
                .get("resourceVersion")
                .and_then(Value::as_str)
                .map(String::from);
        }
        if let Some(policy) = body.get("propagationPolicy").and_then(Value::as_str)
            && !matches!(policy, "Orphan" | "Background" | "Foreground")
        {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: {policy:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
            )));
        }
        opts.dry_run = body
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|v| v == "All"));
        Ok(opts)
    }

    fn from_request(ctx: &Ctx<'_>) -> Result<DeleteOptions, ApiError> {
        let body = if ctx.body.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            Some(body_as(ctx, ("v1", "DeleteOptions"))?)
        };
        let mut opts = DeleteOptions::from_value(body.as_ref())?;
        if let Some(g) = ctx.query.get("gracePeriodSeconds") {
            opts.grace_period_seconds =
                Some(g.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid gracePeriodSeconds {g:?}"))
                })?);
        }
        if let Some(policy) = ctx.query.get("propagationPolicy")
            && !matches!(policy, "Orphan" | "Background" | "Foreground")
        {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: {policy:?}"
            )));
        }
        opts.dry_run |= ctx.query.dry_run();
        Ok(opts)
    }
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

/// Types whose registry returns the deleted object rather than a Status.
fn returns_deleted_object(resource: &Resource) -> bool {
    resource == &PODS || resource == &NAMESPACES
}

fn delete(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let resource = ctx.req.resource;
    let opts = DeleteOptions::from_request(ctx)?;
    if resource == &NAMESPACES {
        return delete_namespace(ctx, &opts);
    }
    match delete_object(ctx.store(), resource, ctx.namespace(), ctx.name(), &opts)? {
        Deleted::Pending(object) => Ok(respond_object(ctx, 200, &object)),
        Deleted::Gone(object) if returns_deleted_object(resource) => {
            Ok(respond_object(ctx, 200, &object))
        }
        Deleted::Gone(object) => Ok(json_response(
            ctx.shared,
            200,
            &delete_success(resource, &object),
        )),
    }
}

/// Deleting a namespace removes everything in it, then the namespace (the
/// namespace controller's work, done at once).
fn delete_namespace(ctx: &Ctx<'_>, opts: &DeleteOptions) -> Result<Response<Body>, ApiError> {
    let name = ctx.name();
    let store = ctx.store();
    if ["default", "kube-system", "kube-public"].contains(&name) {
        return Err(ApiError::new(
            403,
            "Forbidden",
            format!("namespaces {name:?} is forbidden: this namespace may not be deleted"),
        )
        .with_details(super::status::Details::of(&NAMESPACES, name)));
    }
    let current = store
        .get(&NAMESPACES, "", name)
        .ok_or_else(|| ApiError::not_found(&NAMESPACES, name))?;
    if opts.dry_run {
        return Ok(respond_object(ctx, 200, &current));
    }
    for resource in resources::ALL.iter().filter(|r| r.namespaced) {
        let (items, _) = store.list(resource, Some(name), |_| true);
        for item in items {
            let (_, item_name) = key_of(&item);
            // Gone already (a controller raced us) is fine.
            let _ = store.delete(resource, name, &item_name, &Preconditions::default());
        }
    }
    let last = store
        .delete(&NAMESPACES, "", name, &opts.preconditions)
        .map_err(|e| ApiError::from_store(e, &NAMESPACES))?;
    Ok(respond_object(ctx, 200, &last))
}

fn delete_collection(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let resource = ctx.req.resource;
    let (labels, fields) = selectors(ctx)?;
    let opts = DeleteOptions::from_request(ctx)?;
    let (items, _) = ctx
        .store()
        .list(resource, ctx.req.namespace.as_deref(), |o| {
            labels.matches(o) && fields.matches(o)
        });
    let mut deleted = Vec::new();
    for item in items {
        let (ns, name) = key_of(&item);
        match delete_object(ctx.store(), resource, &ns, &name, &opts) {
            Ok(Deleted::Gone(o) | Deleted::Pending(o)) => deleted.push(o),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let mut meta = Map::new();
    meta.insert(
        "resourceVersion".into(),
        json!(ctx.store().revision().to_string()),
    );
    Ok(json_bytes(
        ctx.shared,
        200,
        serialize_list(resource, &meta, &deleted),
    ))
}

/// `POST pods/<name>/binding`: what the scheduler does to bind a pod.
fn bind(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let body = body_object(ctx)?;
    let name = ctx.name().to_string();
    if let Some(n) = meta_str(&body, "name")
        && n != name
    {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Binding object",
        ));
    }
    let node = body
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(
                &PODS,
                &name,
                &[("target.name", "FieldValueRequired", "Required value".into())],
            )
        })?
        .to_string();
    if ctx.query.dry_run() {
        return Ok(json_response(
            ctx.shared,
            201,
            &super::status::created_success(),
        ));
    }
    let now = rfc3339(Timestamp::now());
    modify_object(ctx.store(), &PODS, ctx.namespace(), &name, |pod| {
        if pod.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(ApiError::conflict(
                &PODS,
                &name,
                &format!("pod {name} is being deleted, cannot be assigned to a host"),
            ));
        }
        if let Some(existing) = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            return Err(ApiError::conflict(
                &PODS,
                &name,
                &format!("pod {name} is already assigned to node {existing:?}"),
            ));
        }
        let mut next = pod.clone();
        next["spec"]["nodeName"] = json!(node);
        set_condition(
            &mut next,
            json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}),
        );
        Ok(next)
    })?;
    Ok(json_response(
        ctx.shared,
        201,
        &super::status::created_success(),
    ))
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
