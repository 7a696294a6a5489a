//! Riding through API server restarts and overload.
//!
//! During a control-plane hop the API server goes away for seconds to
//! minutes, and a busy one answers 429/5xx. Every call the engine makes
//! goes through [`with_retry`], which retries what may succeed later until a
//! deadline, and returns at once what never will (404, 409, 422, …).

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use super::errors;

/// How long a single call keeps retrying through an outage before the run
/// gives up on it. Long enough for an apiserver static pod restart
/// (kubeadm waits up to 5 minutes for one), short enough to fail visibly.
pub const API_OUTAGE_TOLERANCE: Duration = Duration::from_secs(300);

/// True for errors that may go away on their own: the server unreachable or
/// restarting, 429 (outside evictions), 5xx. A TLS failure or credentials
/// that cannot be produced never go away by waiting: not transient.
pub fn is_transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(_) => {
            errors::is_too_many_requests(error) || errors::is_server_unavailable(error)
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => {
            // A fenced run's refusal never passes: it holds no lock any more.
            errors::connect_refusal(error).is_none() && super::fence::fenced_by(error).is_none()
        }
        _ => false,
    }
}

/// Run `call` until it succeeds, fails for good, or `API_OUTAGE_TOLERANCE`
/// of retrying has passed. `what` names the call in logs.
pub async fn with_retry<T, F, Fut>(what: &str, call: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    with_retry_for(what, API_OUTAGE_TOLERANCE, call).await
}

/// [`with_retry`] with an explicit budget of retrying.
pub async fn with_retry_for<T, F, Fut>(
    what: &str,
    budget: Duration,
    call: F,
) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .with_total_delay(Some(budget));
    call.retry(backoff)
        .when(is_transient)
        .notify(|error, delay| {
            tracing::debug!(call = what, %error, ?delay, "API call failed; retrying");
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> kube::Error {
        let mut s = kube::core::Status::failure("x", "y");
        s.code = code;
        kube::Error::Api(Box::new(s))
    }

    #[test]
    fn only_passing_failures_are_retried() {
        for code in [429, 500, 502, 503, 504] {
            assert!(is_transient(&api(code)), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 410, 422] {
            assert!(!is_transient(&api(code)), "{code}");
        }
    }

    #[tokio::test]
    async fn retries_until_success() {
        let mut calls = 0;
        let got = with_retry_for("test", Duration::from_secs(5), || {
            calls += 1;
            let n = calls;
            async move { if n < 3 { Err(api(503)) } else { Ok(n) } }
        })
        .await
        .unwrap();
        assert_eq!(got, 3);
    }

    #[tokio::test]
    async fn permanent_errors_return_at_once() {
        let mut calls = 0;
        let got: Result<(), _> = with_retry_for("test", Duration::from_secs(5), || {
            calls += 1;
            async { Err(api(404)) }
        })
        .await;
        assert!(got.is_err());
        assert_eq!(calls, 1);
    }
}
