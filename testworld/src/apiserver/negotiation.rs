//! What a client accepts: the `Accept` header, and whether it takes JSON.

use http::{HeaderMap, header};

/// The `Accept` header, `""` when absent.
pub(crate) fn accept(headers: &HeaderMap) -> &str {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Does an `Accept` header take JSON (`application/json`, `application/*`,
/// `*/*`, or no header at all)?
pub(crate) fn accepts_json(accept: &str) -> bool {
    accept.trim().is_empty()
        || accept.split(',').any(|clause| {
            matches!(
                clause.split(';').next().unwrap_or("").trim(),
                "application/json" | "application/*" | "*/*"
            )
        })
}
