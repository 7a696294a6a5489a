//! PATCH (stub).
use super::handler::{Body, Ctx};
use super::status::ApiError;
use http::Response;

pub(crate) fn patch(_ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    Err(ApiError::unsupported_media_type(""))
}
