//! PATCH: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic
//! merge patch for the built-in types served here, and server-side apply
//! (in `apply`). Every patch is applied to the current object under the
//! store's lock, so a patch without a resourceVersion never conflicts and
//! one with a resourceVersion is checked.

use std::sync::Arc;

use http::Response;
use serde_json::Value;

use super::context::Ctx;
use super::merge::strategic_merge;
use super::openapi::fields::{self, Directive};
use super::respond::{Body, respond_object};
use super::status::ApiError;
use super::strategy::{finish_if_finalized, merge_for_update, modify_object, validate_update};
use crate::resources::Resource;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PatchKind {
    Merge,
    Json,
    Strategic,
    Apply,
}

pub(crate) fn patch_kind(content_type: &str) -> Option<PatchKind> {
    match content_type {
        "application/merge-patch+json" => Some(PatchKind::Merge),
        "application/json-patch+json" => Some(PatchKind::Json),
        "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
        "application/apply-patch+yaml" => Some(PatchKind::Apply),
        _ => None,
    }
}

pub(crate) fn apply_patch(
    kind: PatchKind,
    resource: &Resource,
    object: &mut Value,
    patch: &Value,
) -> Result<(), ApiError> {
    match kind {
        PatchKind::Merge => {
            json_patch::merge(object, patch);
            Ok(())
        }
        PatchKind::Strategic => strategic_merge(resource, object, patch),
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            json_patch::patch(object, &ops).map_err(|e| {
                ApiError::new(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                )
                .with_details(super::status::Details::default())
            })
        }
        PatchKind::Apply => Err(ApiError::unsupported_media_type(
            "application/apply-patch+yaml",
        )),
    }
}

pub(crate) fn patch(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let content_type = ctx.content_type();
    let Some(kind) = patch_kind(&content_type) else {
        return Err(ApiError::unsupported_media_type(&content_type));
    };
    if kind == PatchKind::Apply {
        return super::apply::apply(ctx);
    }
    let resource = ctx.req.resource;
    let name = ctx.name().to_string();
    let directive = Directive::parse(ctx.query.get("fieldValidation"), "PatchOptions")?;
    let definition = super::openapi::kind_definition(resource);
    let patch_doc: Value =
        serde_json::from_slice(&ctx.body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    match kind {
        PatchKind::Json if !patch_doc.is_array() => {
            return Err(ApiError::bad_request(
                "a JSON patch must be a list of operations",
            ));
        }
        PatchKind::Merge | PatchKind::Strategic if !patch_doc.is_object() => {
            return Err(ApiError::bad_request("a merge patch must be a JSON object"));
        }
        _ => {}
    }
    let status_sub = ctx.req.subresource.as_deref() == Some("status");
    let manager = ctx.field_manager();
    let change = |current: &Value| -> Result<Value, ApiError> {
        let mut patched = current.clone();
        apply_patch(kind, resource, &mut patched, &patch_doc)?;
        // Fields the kind does not declare are dropped, as decoding the
        // patched object does (`handlers/patch.go`).
        let unknown = definition
            .map(|d| fields::prune_unknown(d, &mut patched))
            .unwrap_or_default();
        if !unknown.is_empty() {
            match directive {
                Directive::Strict => return Err(fields::strict_patch_error(&patch_doc, &unknown)),
                Directive::Warn => ctx.warn(fields::warnings(&unknown)),
                Directive::Ignore => {}
            }
        }
        for (field, expected) in [("name", name.as_str()), ("namespace", ctx.namespace())] {
            let got = patched
                .pointer(&format!("/metadata/{field}"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if (field == "name" || resource.namespaced) && got != expected {
                return Err(ApiError::bad_request(format!(
                    "the {field} of the object ({got}) does not match the {field} on the URL ({expected})"
                )));
            }
        }
        let mut next = merge_for_update(resource, status_sub, current, patched);
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
        let current = ctx
            .store()
            .get(resource, ctx.namespace(), &name)
            .ok_or_else(|| ApiError::not_found(resource, &name))?;
        let next = change(&current)?;
        let rv = |v: &Value| {
            v.pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .map(String::from)
        };
        if rv(&next).is_some_and(|r| !r.is_empty()) && rv(&next) != rv(&current) {
            return Err(ApiError::conflict(
                resource,
                &name,
                crate::store::STALE_RV_MESSAGE,
            ));
        }
        return Ok(respond_object(ctx, 200, &Arc::new(next)));
    }
    let updated = modify_object(ctx.store(), resource, ctx.namespace(), &name, change)?;
    let updated = finish_if_finalized(ctx.store(), resource, updated);
    Ok(respond_object(ctx, 200, &updated))
}
