//! The dispatch table of resource requests: which handler answers a
//! method on a collection, an object or a subresource. The handlers below
//! it never import it back: they are handed a [`Ctx`] and answer.

use http::{Method, Response};

use super::context::Ctx;
use super::negotiation::{accept, accepts_json};
use super::respond::Body;
use super::status::ApiError;
use super::{eviction, objects, patch, reviews, scale, watch};

/// Hand a resource request to the handler of its method, name and
/// subresource; what none handles is 405 (406 for a watch that cannot be
/// answered in JSON).
pub(crate) async fn dispatch(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let r = ctx.req;
    let watching = r.watch_path || ctx.query.flag("watch");
    let sub = r.subresource.as_deref();
    let named = r.name.is_some();
    let collection_needs_namespace = r.resource.namespaced && r.namespace.is_none();
    match (ctx.method.clone(), named, sub) {
        (Method::GET | Method::HEAD, _, None) if watching && !accepts_json(accept(ctx.headers)) => {
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
        (Method::GET | Method::HEAD, false, None) => objects::list(ctx),
        (Method::GET | Method::HEAD, true, None | Some("status")) => objects::get(ctx),
        (Method::POST, false, None) if r.resource.create_only() => reviews::review(ctx),
        (Method::POST, false, None) if !collection_needs_namespace => objects::create(ctx),
        (Method::POST, true, Some("token")) => reviews::token_request(ctx),
        (Method::POST, true, Some("eviction")) => eviction::evict(ctx),
        (Method::POST, true, Some("binding")) => objects::bind(ctx),
        (Method::PUT, true, None | Some("status")) => objects::update(ctx),
        (Method::PATCH, true, None | Some("status")) => patch::patch(ctx),
        (Method::DELETE, true, None) => objects::delete(ctx),
        (Method::DELETE, false, None) if !collection_needs_namespace => {
            objects::delete_collection(ctx)
        }
        (Method::GET | Method::HEAD | Method::PUT | Method::PATCH, true, Some("scale")) => {
            scale::scale(ctx)
        }
        (m, _, _) => Err(ApiError::method_not_allowed(m.as_str())),
    }
}
