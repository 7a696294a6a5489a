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

/// 403: the credentials may not do this (RBAC, an admission refusal).
pub fn is_forbidden(error: &kube::Error) -> bool {
    status_code(error) == Some(StatusCode::FORBIDDEN)
}

/// 401 or 403: the server refused the credentials or what they asked;
/// waiting never changes that.
pub fn is_refused(error: &kube::Error) -> bool {
    is_forbidden(error) || status_code(error) == Some(StatusCode::UNAUTHORIZED)
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

/// Why requests can never reach the API server as configured, whatever
/// the wait: a retry cannot fix these, so nothing retries them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectRefusal {
    /// The TLS handshake failed; the sentence says which side is at fault.
    Tls(String),
    /// The kubeconfig's credentials could not be produced (an exec plugin
    /// failed, a token file is missing).
    Credentials(String),
}

impl std::fmt::Display for ConnectRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectRefusal::Tls(sentence) => f.write_str(sentence),
            ConnectRefusal::Credentials(reason) => {
                write!(f, "the kubeconfig's credentials cannot be used: {reason}")
            }
        }
    }
}

/// The refusal behind `error`, if the request failed for a reason no retry
/// fixes: a TLS failure (certificate, handshake) or credentials that
/// cannot be produced. Looks through the whole chain of sources, into the
/// payloads of I/O errors, which carry the TLS failures.
pub fn connect_refusal(error: &kube::Error) -> Option<ConnectRefusal> {
    if let kube::Error::Auth(auth) = error {
        return Some(ConnectRefusal::Credentials(auth.to_string()));
    }
    if matches!(error, kube::Error::Api(_)) {
        return None;
    }
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = next {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(ConnectRefusal::Tls(tls_sentence(tls)));
        }
        if let Some(auth) = current.downcast_ref::<kube::client::AuthError>() {
            return Some(ConnectRefusal::Credentials(auth.to_string()));
        }
        next = match current.downcast_ref::<std::io::Error>() {
            // An I/O error's `source()` is its payload's source, skipping
            // the payload: hyper-rustls wraps tokio-rustls's I/O error,
            // which wraps the rustls error.
            Some(io) => match io.get_ref() {
                Some(payload) => Some(payload as &(dyn std::error::Error + 'static)),
                None => current.source(),
            },
            None => current.source(),
        };
    }
    None
}

/// A TLS failure as a sentence about the kubeconfig or the API server.
fn tls_sentence(error: &rustls::Error) -> String {
    use rustls::{AlertDescription as Alert, CertificateError as Cert};
    match error {
        rustls::Error::InvalidCertificate(problem) => match problem {
            Cert::UnknownIssuer | Cert::BadSignature => "the API server's certificate is not \
                 signed by the certificate authority the kubeconfig trusts for this cluster \
                 (certificate-authority-data or certificate-authority)"
                .into(),
            Cert::NotValidForName | Cert::NotValidForNameContext { .. } => {
                "the API server's certificate is not valid for the host in the kubeconfig's \
                 server URL"
                    .into()
            }
            Cert::Expired | Cert::ExpiredContext { .. } => {
                "the API server's certificate has expired".into()
            }
            Cert::NotValidYet | Cert::NotValidYetContext { .. } => {
                "the API server's certificate is not valid yet (is this machine's clock right?)"
                    .into()
            }
            Cert::Revoked => "the API server's certificate has been revoked".into(),
            other => format!("the API server's certificate was refused ({other})"),
        },
        rustls::Error::AlertReceived(
            Alert::BadCertificate
            | Alert::CertificateRequired
            | Alert::CertificateUnknown
            | Alert::UnknownCA
            | Alert::CertificateExpired
            | Alert::CertificateRevoked,
        ) => "the API server refused the kubeconfig's client certificate (client-certificate-data)"
            .into(),
        rustls::Error::InvalidMessage(_) => {
            "the server at the kubeconfig's server URL does not speak TLS (is it an http:// \
             address, or another service?)"
                .into()
        }
        other => format!("the TLS handshake with the API server failed ({other})"),
    }
}

/// An error answer of the API server as a sentence: `401 Unauthorized`
/// names the credentials, `403` the server's own explanation, others the
/// code, reason and message; `None` for errors that are no answer.
pub fn answer_sentence(error: &kube::Error) -> Option<String> {
    let kube::Error::Api(status) = error else {
        return None;
    };
    Some(match code_of(status) {
        Some(StatusCode::UNAUTHORIZED) => "the API server rejected the kubeconfig's credentials \
             (401 Unauthorized): the user's token or client certificate is wrong or has expired"
            .into(),
        Some(StatusCode::FORBIDDEN) => format!(
            "the kubeconfig's user is not allowed to do this (403 Forbidden): {}",
            status.message
        ),
        _ => format!(
            "the API server answered {} {}: {}",
            status.code, status.reason, status.message
        ),
    })
}

/// Whether `error` is a request that took too long: the connection or an
/// answer did not come within the client's timeouts.
pub fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(current) = next {
        if current.is::<tokio::time::error::Elapsed>() {
            return true;
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
            if let Some(payload) = io.get_ref() {
                next = Some(payload as &(dyn std::error::Error + 'static));
                continue;
            }
        }
        next = current.source();
    }
    false
}

/// The innermost cause of `error`, which is what a user can act on: kube's
/// error wraps hyper's, which wraps the OS error ("Connection refused").
pub fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = error;
    while let Some(inner) = innermost.source() {
        innermost = inner;
    }
    innermost.to_string()
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

    #[test]
    fn a_tls_failure_is_found_inside_nested_io_errors() {
        // hyper-rustls wraps tokio-rustls's I/O error, which wraps rustls's.
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let nested =
            std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, tls));
        let error = kube::Error::Service(Box::new(nested));
        let Some(ConnectRefusal::Tls(sentence)) = connect_refusal(&error) else {
            panic!("not recognised as TLS")
        };
        assert!(
            sentence.contains("not signed by the certificate authority the kubeconfig trusts"),
            "{sentence}"
        );
        let refused = kube::Error::Service(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert_eq!(connect_refusal(&refused), None);
        assert_eq!(connect_refusal(&api_error(401)), None);
    }

    #[test]
    fn answers_read_as_sentences() {
        assert!(
            answer_sentence(&api_error(401))
                .unwrap()
                .contains("rejected the kubeconfig's credentials (401 Unauthorized)")
        );
        assert!(
            answer_sentence(&api_error(403))
                .unwrap()
                .starts_with("the kubeconfig's user is not allowed to do this (403 Forbidden)")
        );
        let other = answer_sentence(&api_error(500)).unwrap();
        assert!(other.starts_with("the API server answered 500"), "{other}");
        assert!(!other.contains("Status {"), "{other}");
        assert_eq!(
            answer_sentence(&kube::Error::LinesCodecMaxLineLengthExceeded),
            None
        );
    }
}
