//! The responses every handler builds: JSON, protobuf and text bodies,
//! Status errors, and one object answered as the client asked (JSON,
//! Table, partial metadata or protobuf).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use super::context::Ctx;
use super::shared::Shared;
use super::status::ApiError;
use super::table;

/// Response bodies: whole JSON documents or watch streams.
pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// A response with this status, content type and body, its bytes
/// counted as sent.
pub(crate) fn build(
    shared: &Shared,
    code: u16,
    content_type: &'static str,
    bytes: impl Into<Bytes>,
) -> Response<Body> {
    let bytes: Bytes = bytes.into();
    shared.metrics.sent(bytes.len());
    let mut response = Response::new(Full::new(bytes).boxed());
    *response.status_mut() =
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A JSON document.
pub(crate) fn json(shared: &Shared, code: u16, value: &Value) -> Response<Body> {
    json_bytes(shared, code, serde_json::to_vec(value).unwrap_or_default())
}

/// A protobuf body (`k8s\0` + `runtime.Unknown`).
pub(crate) fn protobuf_bytes(shared: &Shared, code: u16, bytes: Vec<u8>) -> Response<Body> {
    build(shared, code, super::protobuf::MEDIA_TYPE, bytes)
}

/// Bytes already serialized as JSON.
pub(crate) fn json_bytes(shared: &Shared, code: u16, bytes: Vec<u8>) -> Response<Body> {
    build(shared, code, "application/json", bytes)
}

pub(crate) fn text(shared: &Shared, code: u16, body: &str) -> Response<Body> {
    build(
        shared,
        code,
        "text/plain; charset=utf-8",
        body.as_bytes().to_vec(),
    )
}

/// A Status error, with `Retry-After` when it says to retry.
pub(crate) fn error_response(shared: &Shared, err: &ApiError) -> Response<Body> {
    let mut response = json(shared, err.code, &err.to_json());
    if let Some(seconds) = err.retry_after() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// Answer with one object, as a Table when kubectl asked for one.
pub(crate) fn respond_object(ctx: &Ctx<'_>, code: u16, object: &Arc<Value>) -> Response<Body> {
    match &ctx.table {
        Some(t) => json(
            ctx.shared,
            code,
            &table::table(ctx.req.resource, std::iter::once(object), None, t),
        ),
        None if ctx.partial => json(ctx.shared, code, &table::partial_metadata(object)),
        None if ctx.protobuf => protobuf_object(ctx, code, object),
        None => json(ctx.shared, code, object),
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
        Err(_) => json(ctx.shared, code, object),
    }
}
