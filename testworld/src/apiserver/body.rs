//! Request bodies: JSON, YAML or protobuf, read into a JSON object and
//! checked against the resource (type meta, namespace, server-side field
//! validation), and the DeleteOptions of a delete.

use serde_json::Value;

use super::context::Ctx;
use super::openapi::{
    self,
    fields::{self, Directive},
};
use super::status::{ApiError, Details};
use crate::resources::Resource;
use crate::store::Preconditions;

/// The body of a create or update of the resource's own kind, with
/// server-side field validation (`fieldValidation`) applied to JSON and
/// YAML bodies: `options` names the verb's options for its errors
/// (`CreateOptions`, `UpdateOptions`). Protobuf bodies carry no unknown
/// fields (the decoder skips what the message does not declare).
pub(crate) fn kind_body(ctx: &Ctx<'_>, options: &str) -> Result<Value, ApiError> {
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
        .with_details(Details::default())),
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

/// A string field of an object's metadata, `None` when absent or empty.
pub(crate) fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object
        .get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The namespace an object is written to: the URL's; a different one in
/// the body is 400.
pub(crate) fn check_namespace(ctx: &Ctx<'_>, object: &Value) -> Result<(), ApiError> {
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

    pub fn from_request(ctx: &Ctx<'_>) -> Result<DeleteOptions, ApiError> {
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
