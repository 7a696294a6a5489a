//! What an API error answer means, by its HTTP status code.
//!
//! kube-core has `Status::is_not_found()` and friends, but they decide by
//! the Status's `reason` and fall back on the code only for reasons they do
//! not know, which in kube-core 5.0 never happens (the check looks at the
//! wanted reason, not the answered one). An answer kube had to rebuild from
//! a non-JSON body (a proxy's `404 page not found`) carries the reason
//! "Failed to parse error data" and the right code, and would read as no
//! match. The code is what the API server's handlers set for each kind of
//! failure (k8s.io/apimachinery/pkg/api/errors: `NewNotFound` → 404,
//! `NewAlreadyExists` and `NewConflict` → 409, `NewTooManyRequests` → 429),
//! so it is what these helpers look at.

use http::StatusCode;
use kube::core::Status;

/// The HTTP status of an error answer from the API server; `None` when the
/// server did not answer (unreachable, TLS, a broken stream) or the answer
/// carries no valid code.
pub fn status_code(error: &kube::Error) -> Option<StatusCode> {
    match error {
        kube::Error::Api(status) => code_of(status),
        _ => None,
    }
}

/// The HTTP status a Status answer carries.
pub fn code_of(status: &Status) -> Option<StatusCode> {
    StatusCode::from_u16(status.code).ok()
}

/// 404: the object (or its namespace) does not exist.
pub fn is_not_found(error: &kube::Error) -> bool {
    status_code(error) == Some(StatusCode::NOT_FOUND)
}

/// 409: the object changed since it was read (an update carrying a stale
/// resourceVersion, a failed UID precondition), or, on a create, one with
/// that name exists already.
pub fn is_conflict(error: &kube::Error) -> bool {
    status_code(error) == Some(StatusCode::CONFLICT)
}

/// 409 answering a create: an object with that name exists already (reason
/// `AlreadyExists`; the API server sends it with the same code as
/// [`is_conflict`]).
pub fn is_already_exists(error: &kube::Error) -> bool {
    is_conflict(error)
}

/// 429: the server asks to come back later (overload, or an eviction a
/// PodDisruptionBudget does not allow now).
pub fn is_too_many_requests(error: &kube::Error) -> bool {
    status_code(error) == Some(StatusCode::TOO_MANY_REQUESTS)
}

/// 500, 502, 503, 504: the server or something in front of it failed and
/// may work again soon (an apiserver restarting, etcd leader election).
/// 501 (not implemented) never will, so it is not one.
pub fn is_server_unavailable(error: &kube::Error) -> bool {
    matches!(
        status_code(error),
        Some(
            StatusCode::INTERNAL_SERVER_ERROR
                | StatusCode::BAD_GATEWAY
                | StatusCode::SERVICE_UNAVAILABLE
                | StatusCode::GATEWAY_TIMEOUT
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An API error answer with `code`, as kube builds it.
    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(Status::failure("x", "y").with_code(code).boxed())
    }

    #[test]
    fn each_helper_names_its_code_and_no_other() {
        type Helper = fn(&kube::Error) -> bool;
        let helpers: [(&str, Helper, &[u16]); 5] = [
            ("not found", is_not_found, &[404]),
            ("conflict", is_conflict, &[409]),
            ("already exists", is_already_exists, &[409]),
            ("too many requests", is_too_many_requests, &[429]),
            (
                "server unavailable",
                is_server_unavailable,
                &[500, 502, 503, 504],
            ),
        ];
        let codes = [
            400, 401, 403, 404, 409, 410, 422, 429, 500, 501, 502, 503, 504,
        ];
        for (name, helper, matching) in helpers {
            for code in codes {
                assert_eq!(
                    helper(&api_error(code)),
                    matching.contains(&code),
                    "{name} on {code}"
                );
            }
        }
    }

    #[test]
    fn the_code_decides_whatever_the_reason_says() {
        // What kube builds from a proxy's plain-text 404.
        let rebuilt = Status::failure("404 page not found", "Failed to parse error data")
            .with_code(404)
            .boxed();
        assert!(is_not_found(&kube::Error::Api(rebuilt)));
        // A create's AlreadyExists and an update's Conflict are both 409.
        let exists = Status::failure("leases \"kubesurge\" already exists", "AlreadyExists")
            .with_code(409)
            .boxed();
        assert!(is_already_exists(&kube::Error::Api(exists)));
    }

    #[test]
    fn no_answer_is_no_code() {
        let error = kube::Error::Service("connection refused".into());
        assert_eq!(status_code(&error), None);
        assert!(!is_not_found(&error));
        assert_eq!(code_of(&Status::failure("x", "y").with_code(0)), None);
    }
}
