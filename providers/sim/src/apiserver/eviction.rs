//! Eviction (stub).
use super::handler::{Body, Ctx};
use super::status::ApiError;
use http::Response;

pub(crate) fn evict(_ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    Err(ApiError::no_such_path())
}
