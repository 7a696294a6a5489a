//! The verbs on objects: get, list, create, update, delete (one, a
//! collection, a namespace with everything in it) and pod binding. What
//! the types' registry strategies do on the way is in [`super::strategy`];
//! the request bodies are read by [`super::body`].

use std::io::Write;
use std::sync::Arc;

use http::Response;
use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::body::{
    DeleteOptions, body_object, check_namespace, check_type_meta, kind_body, meta_str,
};
use super::context::Ctx;
use super::paging::{ContinueToken, EXPIRED_CONTINUE, key_of};
use super::respond::{Body, json as json_response, json_bytes, protobuf_bytes, respond_object};
use super::selector::{FieldSelector, LabelSelector};
use super::status::{ApiError, delete_success};
use super::strategy::{
    Deleted, delete_object, ensure_namespace, finish_if_finalized, merge_for_update, modify_object,
    prepare_create, set_condition, store_new, validate_name, validate_update,
};
use super::table;
use crate::resources::{self, LEASES, NAMESPACES, PODS, Resource, SERVICES};
use crate::store::{Preconditions, metadata_mut, rfc3339};

pub(crate) fn get(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
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

pub(crate) fn list(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
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

pub(crate) fn create(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
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

pub(crate) fn update(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
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

/// Types whose registry returns the deleted object rather than a Status.
fn returns_deleted_object(resource: &Resource) -> bool {
    resource == &PODS || resource == &NAMESPACES
}

pub(crate) fn delete(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
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

pub(crate) fn delete_collection(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
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
pub(crate) fn bind(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
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
