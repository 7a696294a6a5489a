//! Server-side apply and field ownership (`metadata.managedFields`).
//!
//! A simplified model of the real field manager, at leaf granularity:
//! - a field set is a set of paths to leaves — scalars, atomic lists,
//!   empty maps, keyed list elements (`k:{"type":"Ready"}`) and set items
//!   (`v:"x"`); under `metadata` only labels, annotations, finalizers and
//!   ownerReferences are tracked; the status of types with a status
//!   subresource belongs to `/status` requests;
//! - an Update (PUT/PATCH/POST) gives its manager the leaves it changed and
//!   takes them from everyone else;
//! - an Apply owns exactly the leaves of its configuration; a leaf whose
//!   value it changes and that another manager owns is a conflict (409,
//!   cause `FieldManagerConflict`) unless `force=true` takes it over;
//!   leaves it applied before and dropped now are removed from the object
//!   when nobody else owns them.

use std::collections::BTreeSet;
use std::sync::Arc;

use http::Response;
use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::body::{check_type_meta, parse_object};
use super::context::Ctx;
use super::merge::{ListStrategy, list_strategy, strategic_merge};
use super::openapi::fields::{self, Directive};
use super::respond::{Body, respond_object};
use super::status::{ApiError, Cause, Details};
use super::strategy::{
    ensure_namespace, finish_if_finalized, merge_for_update, modify_object, prepare_create,
    validate_name, validate_update,
};
use crate::resources::Resource;
use crate::store::{metadata_mut, rfc3339};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Elem {
    /// `f:<name>`.
    Field(String),
    /// `k:<json object>`: the element of a keyed list with that key.
    Key(String),
    /// `v:<json>`: an item of a set.
    Item(String),
}

type Path = Vec<Elem>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    /// Everything (types without a status subresource).
    All,
    /// Everything but `status`.
    Main,
    /// Only `status`.
    Status,
}

fn scope(resource: &Resource, subresource: &str) -> Scope {
    if subresource == "status" {
        Scope::Status
    } else if resource.subresources.contains(&"status") {
        Scope::Main
    } else {
        Scope::All
    }
}

const TRACKED_METADATA: &[&str] = &["labels", "annotations", "finalizers", "ownerReferences"];

fn collect(value: &Value, field: &str, path: &mut Path, out: &mut BTreeSet<Path>) {
    match value {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                path.push(Elem::Field(k.clone()));
                collect(v, k, path, out);
                path.pop();
            }
        }
        Value::Array(items) => match list_strategy(field) {
            ListStrategy::MergeKey(key)
                if items.iter().all(|i| i.get(key).is_some()) && !items.is_empty() =>
            {
                for item in items {
                    let key_json = json!({ key: item[key] }).to_string();
                    path.push(Elem::Key(key_json));
                    out.insert(path.clone());
                    if let Some(m) = item.as_object() {
                        for (k, v) in m {
                            path.push(Elem::Field(k.clone()));
                            collect(v, k, path, out);
                            path.pop();
                        }
                    }
                    path.pop();
                }
            }
            ListStrategy::Set if !items.is_empty() => {
                for item in items {
                    path.push(Elem::Item(item.to_string()));
                    out.insert(path.clone());
                    path.pop();
                }
            }
            _ => {
                out.insert(path.clone());
            }
        },
        _ => {
            out.insert(path.clone());
        }
    }
}

/// The leaves of `object` within `scope`.
fn fields_of(object: &Value, scope: Scope) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    let Some(map) = object.as_object() else {
        return out;
    };
    for (k, v) in map {
        let wanted = match (k.as_str(), scope) {
            ("apiVersion" | "kind", _) => false,
            ("status", Scope::Status) => true,
            (_, Scope::Status) => false,
            ("status", Scope::Main) => false,
            _ => true,
        };
        if !wanted {
            continue;
        }
        let mut path = vec![Elem::Field(k.clone())];
        if k == "metadata" {
            if let Some(meta) = v.as_object() {
                for tracked in TRACKED_METADATA {
                    if let Some(tv) = meta.get(*tracked) {
                        path.push(Elem::Field(tracked.to_string()));
                        collect(tv, tracked, &mut path, &mut out);
                        path.pop();
                    }
                }
            }
            continue;
        }
        collect(v, k, &mut path, &mut out);
    }
    out
}

fn key_matches(element: &Value, key_json: &str) -> bool {
    let Ok(Value::Object(key)) = serde_json::from_str::<Value>(key_json) else {
        return false;
    };
    key.iter().all(|(k, v)| element.get(k) == Some(v))
}

fn value_at<'a>(object: &'a Value, path: &Path) -> Option<&'a Value> {
    let mut current = object;
    for elem in path {
        current = match elem {
            Elem::Field(f) => current.get(f)?,
            Elem::Key(k) => current.as_array()?.iter().find(|e| key_matches(e, k))?,
            Elem::Item(item) => {
                let wanted: Value = serde_json::from_str(item).ok()?;
                current.as_array()?.iter().find(|e| **e == wanted)?
            }
        };
    }
    Some(current)
}

fn remove_at(object: &mut Value, path: &Path) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let mut current = object;
    for elem in parent_path {
        let next = match elem {
            Elem::Field(f) => current.get_mut(f),
            Elem::Key(k) => current
                .as_array_mut()
                .and_then(|a| a.iter_mut().find(|e| key_matches(e, k))),
            Elem::Item(_) => None,
        };
        match next {
            Some(n) => current = n,
            None => return,
        }
    }
    match last {
        Elem::Field(f) => {
            if let Some(m) = current.as_object_mut() {
                m.remove(f);
            }
        }
        Elem::Key(k) => {
            if let Some(a) = current.as_array_mut() {
                a.retain(|e| !key_matches(e, k));
            }
        }
        Elem::Item(item) => {
            if let (Some(a), Ok(wanted)) =
                (current.as_array_mut(), serde_json::from_str::<Value>(item))
            {
                a.retain(|e| *e != wanted);
            }
        }
    }
}

fn elem_text(elem: &Elem) -> String {
    match elem {
        Elem::Field(f) => format!("f:{f}"),
        Elem::Key(k) => format!("k:{k}"),
        Elem::Item(i) => format!("v:{i}"),
    }
}

fn parse_elem(text: &str) -> Option<Elem> {
    let (kind, rest) = text.split_once(':')?;
    match kind {
        "f" => Some(Elem::Field(rest.to_string())),
        "k" => Some(Elem::Key(rest.to_string())),
        "v" => Some(Elem::Item(rest.to_string())),
        _ => None,
    }
}

/// The `fieldsV1` tree of a field set.
fn to_fields_v1(paths: &BTreeSet<Path>) -> Value {
    fn insert(node: &mut Map<String, Value>, path: &[Elem]) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let entry = node.entry(elem_text(first)).or_insert_with(|| json!({}));
        if !entry.is_object() {
            *entry = json!({});
        }
        if let Some(child) = entry.as_object_mut() {
            insert(child, rest);
        }
    }
    let mut root = Map::new();
    for path in paths {
        insert(&mut root, path);
    }
    // A path that is also a prefix of others is marked with ".".
    fn mark(node: &mut Map<String, Value>, paths: &BTreeSet<Path>, prefix: &mut Path) {
        let keys: Vec<String> = node.keys().cloned().collect();
        for k in keys {
            let Some(elem) = parse_elem(&k) else { continue };
            prefix.push(elem);
            if let Some(Value::Object(child)) = node.get_mut(&k)
                && !child.is_empty()
            {
                if paths.contains(prefix) {
                    child.insert(".".into(), json!({}));
                }
                mark(child, paths, prefix);
            }
            prefix.pop();
        }
    }
    mark(&mut root, paths, &mut Vec::new());
    Value::Object(root)
}

fn from_fields_v1(tree: &Value) -> BTreeSet<Path> {
    fn walk(node: &Map<String, Value>, prefix: &mut Path, out: &mut BTreeSet<Path>) {
        if (node.is_empty() || node.contains_key(".")) && !prefix.is_empty() {
            out.insert(prefix.clone());
        }
        for (k, v) in node {
            let Some(elem) = parse_elem(k) else { continue };
            prefix.push(elem);
            match v.as_object() {
                Some(child) => walk(child, prefix, out),
                None => {
                    out.insert(prefix.clone());
                }
            }
            prefix.pop();
        }
    }
    let mut out = BTreeSet::new();
    if let Some(m) = tree.as_object() {
        walk(m, &mut Vec::new(), &mut out);
    }
    out
}

/// One `managedFields` entry.
#[derive(Clone, Debug)]
struct Entry {
    manager: String,
    operation: String,
    subresource: String,
    api_version: String,
    time: String,
    fields: BTreeSet<Path>,
}

fn entries_of(object: &Value) -> Vec<Entry> {
    object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|e| {
                    let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    Entry {
                        manager: s("manager"),
                        operation: s("operation"),
                        subresource: s("subresource"),
                        api_version: s("apiVersion"),
                        time: s("time"),
                        fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

fn write_entries(object: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut m = Map::new();
            m.insert("manager".into(), json!(e.manager));
            m.insert("operation".into(), json!(e.operation));
            m.insert("apiVersion".into(), json!(e.api_version));
            m.insert("time".into(), json!(e.time));
            m.insert("fieldsType".into(), json!("FieldsV1"));
            m.insert("fieldsV1".into(), to_fields_v1(&e.fields));
            if !e.subresource.is_empty() {
                m.insert("subresource".into(), json!(e.subresource));
            }
            Value::Object(m)
        })
        .collect();
    let meta = metadata_mut(object);
    if list.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

fn entry_mut<'a>(
    entries: &'a mut Vec<Entry>,
    manager: &str,
    operation: &str,
    subresource: &str,
    api_version: &str,
) -> &'a mut Entry {
    let index = match entries.iter().position(|e| {
        e.manager == manager && e.operation == operation && e.subresource == subresource
    }) {
        Some(i) => i,
        None => {
            entries.push(Entry {
                manager: manager.to_string(),
                operation: operation.to_string(),
                subresource: subresource.to_string(),
                api_version: api_version.to_string(),
                time: String::new(),
                fields: BTreeSet::new(),
            });
            entries.len() - 1
        }
    };
    &mut entries[index]
}

/// Record an Update by `manager` that turns `current` (None: a create)
/// into `next`: the leaves it changed become its own.
pub(crate) fn record_update(
    next: &mut Value,
    current: Option<&Value>,
    manager: &str,
    resource: &Resource,
    subresource: &str,
) {
    let scope = scope(resource, subresource);
    let new_fields = fields_of(next, scope);
    let old_fields = current.map(|c| fields_of(c, scope)).unwrap_or_default();
    let changed: BTreeSet<Path> = new_fields
        .iter()
        .filter(|p| current.is_none_or(|c| value_at(c, p) != value_at(next, p)))
        .cloned()
        .collect();
    let removed: BTreeSet<Path> = old_fields.difference(&new_fields).cloned().collect();
    if changed.is_empty() && removed.is_empty() {
        return;
    }
    let mut entries = entries_of(next);
    for e in entries.iter_mut() {
        e.fields
            .retain(|p| !changed.contains(p) && !removed.contains(p));
    }
    let entry = entry_mut(
        &mut entries,
        manager,
        "Update",
        subresource,
        &resource.api_version(),
    );
    entry.fields.extend(changed);
    entry.time = rfc3339(Timestamp::now());
    write_entries(next, &entries);
}

fn path_text(path: &Path) -> String {
    let mut out = String::new();
    for elem in path {
        match elem {
            Elem::Field(f) => {
                out.push('.');
                out.push_str(f);
            }
            Elem::Key(k) => {
                let parsed: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
                let inner: Vec<String> = parsed.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push_str(&format!("[{}]", inner.join(",")));
            }
            Elem::Item(i) => out.push_str(&format!("[={i}]")),
        }
    }
    out
}

fn conflict_error(conflicts: &[(String, String, Path)]) -> ApiError {
    let causes: Vec<Cause> = conflicts
        .iter()
        .map(|(manager, api_version, path)| Cause {
            reason: "FieldManagerConflict".into(),
            message: format!("conflict with {manager:?} using {api_version}"),
            field: path_text(path),
        })
        .collect();
    let message = if conflicts.len() == 1 {
        format!(
            "Apply failed with 1 conflict: conflict with {:?} using {}: {}",
            conflicts[0].0,
            conflicts[0].1,
            path_text(&conflicts[0].2)
        )
    } else {
        let mut managers: Vec<&String> = conflicts.iter().map(|c| &c.0).collect();
        managers.dedup();
        let mut text = format!("Apply failed with {} conflicts:", conflicts.len());
        for m in managers {
            text.push_str(&format!(" conflicts with {m:?}:"));
            for (_, _, p) in conflicts.iter().filter(|c| &c.0 == m) {
                text.push_str(&format!("\n- {}", path_text(p)));
            }
        }
        text
    };
    ApiError::new(409, "Conflict", message).with_details(Details {
        causes,
        ..Details::default()
    })
}

fn missing_field_manager() -> ApiError {
    ApiError::new(
        422,
        "Invalid",
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
    )
    .with_details(Details {
        group: "meta.k8s.io".into(),
        kind: "PatchOptions".into(),
        causes: vec![Cause {
            reason: "FieldValueRequired".into(),
            message: "Required value: is required for apply patch".into(),
            field: "fieldManager".into(),
        }],
        ..Details::default()
    })
}

/// `PATCH` with `application/apply-patch+yaml`.
pub(crate) fn apply(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let resource = ctx.req.resource;
    let name = ctx.name().to_string();
    let Some(manager) = ctx.query.get("fieldManager").filter(|m| !m.is_empty()) else {
        return Err(missing_field_manager());
    };
    let manager = manager.to_string();
    let force = ctx.query.flag("force");
    let subresource = ctx.req.subresource.clone().unwrap_or_default();
    let status_sub = subresource == "status";
    let scope = scope(resource, &subresource);
    let mut config = parse_object(&ctx.body)?;
    check_type_meta(resource, &config)?;
    Directive::parse(ctx.query.get("fieldValidation"), "PatchOptions")?;
    if let Some(definition) = super::openapi::kind_definition(resource) {
        let mut typed = config.clone();
        let unknown = fields::prune_unknown(definition, &mut typed);
        if let Some(first) = unknown.first() {
            return Err(fields::apply_error(
                &resource.api_version(),
                resource.kind,
                ctx.namespace(),
                &name,
                &config,
                first,
            ));
        }
    }
    match config.pointer("/metadata/name").and_then(Value::as_str) {
        Some(n) if n != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        _ => {}
    }
    if resource.namespaced
        && let Some(ns) = config
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
        && ns != ctx.namespace()
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    metadata_mut(&mut config).remove("managedFields");
    metadata_mut(&mut config).insert("name".into(), json!(name));
    let applied = fields_of(&config, scope);
    let api_version = resource.api_version();
    let now = rfc3339(Timestamp::now());
    let store = ctx.store();

    let Some(_) = store.get(resource, ctx.namespace(), &name) else {
        if status_sub {
            return Err(ApiError::not_found(resource, &name));
        }
        ensure_namespace(store, resource, ctx.namespace())?;
        validate_name(resource, &config)?;
        let mut object = config.clone();
        prepare_create(resource, &mut object);
        if resource == &crate::resources::SERVICES {
            super::service::prepare(store, &mut object)?;
        }
        let mut entries = Vec::new();
        let entry = entry_mut(&mut entries, &manager, "Apply", "", &api_version);
        entry.fields = applied;
        entry.time = now;
        write_entries(&mut object, &entries);
        if ctx.query.dry_run() {
            return Ok(respond_object(ctx, 201, &Arc::new(object)));
        }
        let created = super::strategy::store_new(store, resource, ctx.namespace(), object)
            .map_err(|e| ApiError::from_store(e, resource))?;
        return Ok(respond_object(ctx, 201, &created));
    };

    let change = |current: &Value| -> Result<Value, ApiError> {
        let mut entries = entries_of(current);
        let mut conflicts: Vec<(String, String, Path)> = Vec::new();
        for path in &applied {
            // Keyed elements and set items are identities, not values.
            if matches!(path.last(), Some(Elem::Key(_) | Elem::Item(_))) {
                continue;
            }
            let old = value_at(current, path);
            if old.is_none() || old == value_at(&config, path) {
                continue;
            }
            for e in &entries {
                let mine = e.manager == manager && e.operation == "Apply";
                if !mine && e.subresource == subresource && e.fields.contains(path) {
                    conflicts.push((e.manager.clone(), e.api_version.clone(), path.clone()));
                }
            }
        }
        if !conflicts.is_empty() {
            if !force {
                return Err(conflict_error(&conflicts));
            }
            for e in entries.iter_mut() {
                e.fields
                    .retain(|p| !conflicts.iter().any(|(_, _, c)| c == p));
            }
        }
        let mut next = current.clone();
        strategic_merge(resource, &mut next, &config)?;
        let previously_mine: BTreeSet<Path> = entries
            .iter()
            .find(|e| {
                e.manager == manager && e.operation == "Apply" && e.subresource == subresource
            })
            .map(|e| e.fields.clone())
            .unwrap_or_default();
        for dropped in previously_mine.difference(&applied) {
            let owned_elsewhere = entries.iter().any(|e| {
                !(e.manager == manager && e.operation == "Apply") && e.fields.contains(dropped)
            });
            if !owned_elsewhere {
                remove_at(&mut next, dropped);
            }
        }
        let entry = entry_mut(&mut entries, &manager, "Apply", &subresource, &api_version);
        if entry.fields != applied || entry.time.is_empty() {
            entry.time = now.clone();
        }
        entry.fields = applied.clone();
        let mut next = merge_for_update(resource, status_sub, current, next);
        write_entries(&mut next, &entries);
        validate_update(resource, current, &next)?;
        Ok(next)
    };
    if ctx.query.dry_run() {
        let current = store
            .get(resource, ctx.namespace(), &name)
            .ok_or_else(|| ApiError::not_found(resource, &name))?;
        return Ok(respond_object(ctx, 200, &Arc::new(change(&current)?)));
    }
    let updated = modify_object(store, resource, ctx.namespace(), &name, change)?;
    let updated = finish_if_finalized(store, resource, updated);
    Ok(respond_object(ctx, 200, &updated))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{CONFIGMAPS, NODES};

    #[test]
    fn fields_round_trip_through_fields_v1() {
        let node = json!({"metadata": {"name": "n", "labels": {"a": "1"}, "finalizers": ["x"]},
                          "spec": {"taints": [{"key": "k"}], "unschedulable": true},
                          "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let main = fields_of(&node, Scope::Main);
        assert!(main.contains(&vec![
            Elem::Field("spec".into()),
            Elem::Field("taints".into())
        ]));
        assert!(!main.iter().any(|p| p[0] == Elem::Field("status".into())));
        let status = fields_of(&node, Scope::Status);
        assert!(status.contains(&vec![
            Elem::Field("status".into()),
            Elem::Field("conditions".into()),
            Elem::Key("{\"type\":\"Ready\"}".into()),
            Elem::Field("status".into()),
        ]));
        for set in [main, status] {
            let tree = to_fields_v1(&set);
            assert_eq!(from_fields_v1(&tree), set, "{tree}");
        }
    }

    #[test]
    fn updates_move_ownership() {
        let before = json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}});
        let mut after = before.clone();
        record_update(&mut after, None, "one", &CONFIGMAPS, "");
        let mut next = after.clone();
        next["data"]["a"] = json!("changed");
        record_update(&mut next, Some(&after), "two", &CONFIGMAPS, "");
        let entries = entries_of(&next);
        let one = entries.iter().find(|e| e.manager == "one").unwrap();
        let two = entries.iter().find(|e| e.manager == "two").unwrap();
        let a = vec![Elem::Field("data".into()), Elem::Field("a".into())];
        assert!(two.fields.contains(&a));
        assert!(!one.fields.contains(&a));
        assert_eq!(
            next["metadata"]["managedFields"][1]["fieldsV1"],
            json!({"f:data": {"f:a": {}}})
        );
    }

    #[test]
    fn path_text_is_readable() {
        let p = vec![
            Elem::Field("status".into()),
            Elem::Field("conditions".into()),
            Elem::Key("{\"type\":\"Ready\"}".into()),
            Elem::Field("status".into()),
        ];
        assert_eq!(path_text(&p), ".status.conditions[type=\"Ready\"].status");
        let _ = NODES.plural;
    }
}
