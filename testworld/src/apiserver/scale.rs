//! The `scale` subresource of Deployments and ReplicaSets: an
//! `autoscaling/v1` Scale read from and written to the object's
//! `spec.replicas` (`pkg/registry/apps/deployment/storage/storage.go`
//! `ScaleREST`, `scaleFromDeployment`). `kubectl scale` merge-patches it.

use std::sync::Arc;

use http::{Method, Response};
use serde_json::{Value, json};

use super::body::body_as;
use super::context::Ctx;
use super::patch::{apply_patch, patch_kind};
use super::respond::{Body, json as json_response, protobuf_bytes};
use super::status::ApiError;
use super::strategy::modify_object;
use crate::resources::Resource;

const SCALE_API_VERSION: &str = "autoscaling/v1";

/// `metav1.LabelSelectorAsSelector(...).String()`: requirements sorted by
/// key, `k=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`.
fn selector_text(selector: &Value) -> String {
    let mut requirements: Vec<(String, String)> = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in labels {
            requirements.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or(""))));
        }
    }
    if let Some(expressions) = selector.get("matchExpressions").and_then(Value::as_array) {
        for e in expressions {
            let key = e.get("key").and_then(Value::as_str).unwrap_or("");
            let mut values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            values.sort_unstable();
            let text = match e.get("operator").and_then(Value::as_str).unwrap_or("") {
                "In" => format!("{key} in ({})", values.join(",")),
                "NotIn" => format!("{key} notin ({})", values.join(",")),
                "Exists" => key.to_string(),
                "DoesNotExist" => format!("!{key}"),
                _ => continue,
            };
            requirements.push((key.to_string(), text));
        }
    }
    requirements.sort();
    requirements
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",")
}

/// The Scale of a Deployment or ReplicaSet.
fn scale_of(object: &Value) -> Value {
    let meta = &object["metadata"];
    let mut metadata = serde_json::Map::new();
    for field in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta.get(field) {
            metadata.insert(field.into(), v.clone());
        }
    }
    json!({
        "kind": "Scale",
        "apiVersion": SCALE_API_VERSION,
        "metadata": metadata,
        "spec": {"replicas": object.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)},
        "status": {
            "replicas": object.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector_text(object.pointer("/spec/selector").unwrap_or(&Value::Null)),
        },
    })
}

fn respond(ctx: &Ctx<'_>, scale: &Value) -> Response<Body> {
    if ctx.protobuf
        && let Ok(bytes) = super::protobuf::encode(scale)
    {
        return protobuf_bytes(ctx.shared, 200, bytes);
    }
    json_response(ctx.shared, 200, scale)
}

/// Write `scale`'s `spec.replicas` to the object, honouring the
/// resourceVersion it carries.
fn write(ctx: &Ctx<'_>, resource: &'static Resource, scale: &Value) -> Result<Value, ApiError> {
    let name = ctx.name().to_string();
    let replicas = scale
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if replicas < 0 {
        return Err(ApiError::new(
            422,
            "Invalid",
            format!(
                "Scale.autoscaling {name:?} is invalid: spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"
            ),
        ));
    }
    let rv = scale
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(String::from);
    if ctx.query.dry_run() {
        let current = ctx
            .store()
            .get(resource, ctx.namespace(), &name)
            .ok_or_else(|| ApiError::not_found(resource, &name))?;
        let mut next = current.as_ref().clone();
        next["spec"]["replicas"] = json!(replicas);
        return Ok(scale_of(&next));
    }
    let updated = modify_object(ctx.store(), resource, ctx.namespace(), &name, |current| {
        let mut next = current.clone();
        next["spec"]["replicas"] = json!(replicas);
        if let Some(rv) = &rv {
            next["metadata"]["resourceVersion"] = json!(rv);
        }
        Ok(next)
    })?;
    Ok(scale_of(&updated))
}

pub(crate) fn scale(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let resource = ctx.req.resource;
    let name = ctx.name().to_string();
    let current: Arc<Value> = ctx
        .store()
        .get(resource, ctx.namespace(), &name)
        .ok_or_else(|| ApiError::not_found(resource, &name))?;
    match *ctx.method {
        Method::GET | Method::HEAD => Ok(respond(ctx, &scale_of(&current))),
        Method::PUT => {
            let body = body_as(ctx, (SCALE_API_VERSION, "Scale"))?;
            if let Some(n) = body.pointer("/metadata/name").and_then(Value::as_str)
                && !n.is_empty()
                && n != name
            {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
            let scale = write(ctx, resource, &body)?;
            Ok(respond(ctx, &scale))
        }
        Method::PATCH => {
            let content_type = ctx.content_type();
            let kind = patch_kind(&content_type)
                .ok_or_else(|| ApiError::unsupported_media_type(&content_type))?;
            let patch: Value = serde_json::from_slice(&ctx.body)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            let mut patched = scale_of(&current);
            apply_patch(kind, resource, &mut patched, &patch)?;
            // A resourceVersion only the patch sets is a precondition; the
            // one copied from the current object is not.
            if patch.pointer("/metadata/resourceVersion").is_none()
                && let Some(meta) = patched.get_mut("metadata").and_then(Value::as_object_mut)
            {
                meta.remove("resourceVersion");
            }
            let scale = write(ctx, resource, &patched)?;
            Ok(respond(ctx, &scale))
        }
        ref m => Err(ApiError::method_not_allowed(m.as_str())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_reports_replicas_and_the_selector_text() {
        let d = json!({"metadata": {"name": "web", "namespace": "default", "resourceVersion": "9"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "tier": "fe"},
                "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]},
                                     {"key": "canary", "operator": "DoesNotExist"}]}},
            "status": {"replicas": 2}});
        let s = scale_of(&d);
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"]["replicas"], 2);
        assert_eq!(
            s["status"]["selector"],
            "app=web,!canary,env in (dev,prod),tier=fe"
        );
        assert_eq!(s["metadata"]["resourceVersion"], "9");
    }
}
