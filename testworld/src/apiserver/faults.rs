//! Faults on demand: the API server away for a while (every connection
//! dropped, new ones refused), bursts of 429/500/503 answers, and requests
//! held before they are served. They act on HTTP clients only; in-process
//! controllers use the store directly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::status::{ApiError, Details};

/// Which requests a `fail_next` burst (or a `delay_next` hold) hits.
/// `None` fields match anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultFilter {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, …
    pub verb: Option<String>,
    /// The resource plural, with the subresource if any (`pods`,
    /// `pods/eviction`, `nodes/status`); for other URLs the path.
    pub resource: Option<String>,
    /// Text the request's query string contains, as sent (URL-encoded):
    /// `fieldSelector=spec.nodeName` picks the requests of one node's pods.
    pub query: Option<String>,
}

impl FaultFilter {
    pub fn verb(verb: &str) -> FaultFilter {
        FaultFilter {
            verb: Some(verb.into()),
            ..FaultFilter::default()
        }
    }

    pub fn resource(resource: &str) -> FaultFilter {
        FaultFilter {
            resource: Some(resource.into()),
            ..FaultFilter::default()
        }
    }

    pub fn verb_resource(verb: &str, resource: &str) -> FaultFilter {
        FaultFilter {
            verb: Some(verb.into()),
            resource: Some(resource.into()),
            ..FaultFilter::default()
        }
    }

    /// Only requests whose query string contains `text`.
    pub fn with_query(self, text: &str) -> FaultFilter {
        FaultFilter {
            query: Some(text.into()),
            ..self
        }
    }

    fn matches(&self, request: &RequestFacts<'_>) -> bool {
        self.verb.as_deref().is_none_or(|v| v == request.verb)
            && self
                .resource
                .as_deref()
                .is_none_or(|r| r == request.resource)
            && self
                .query
                .as_deref()
                .is_none_or(|q| request.query.contains(q))
    }
}

/// What a fault's filter looks at in a request.
pub(crate) struct RequestFacts<'a> {
    pub verb: &'a str,
    pub resource: &'a str,
    pub query: &'a str,
}

struct FailRule {
    remaining: usize,
    status: u16,
    filter: Option<FaultFilter>,
}

struct DelayRule {
    remaining: usize,
    delay: Duration,
    filter: FaultFilter,
}

struct FaultState {
    unavailable_until: Mutex<Option<Instant>>,
    kill: watch::Sender<u64>,
    rules: Mutex<Vec<FailRule>>,
    delays: Mutex<Vec<DelayRule>>,
    served: AtomicU64,
    /// Evictions a validating admission webhook denies, by
    /// `namespace/pod`: (webhook name, its message).
    denied_evictions: Mutex<std::collections::BTreeMap<String, (String, String)>>,
}

/// A cheap shared handle on the server's faults.
#[derive(Clone)]
pub struct Faults {
    inner: Arc<FaultState>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            inner: Arc::new(FaultState {
                unavailable_until: Mutex::new(None),
                kill: watch::Sender::new(0),
                rules: Mutex::new(Vec::new()),
                delays: Mutex::new(Vec::new()),
                served: AtomicU64::new(0),
                denied_evictions: Mutex::new(std::collections::BTreeMap::new()),
            }),
        }
    }
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("unavailable", &self.is_unavailable())
            .field("served", &self.requests_served())
            .finish()
    }
}

impl Faults {
    /// Go away for `duration` as a restarting API server does: every open
    /// connection (watches included) is cut now, and new connections are
    /// closed at once until the time is up.
    pub fn unavailable_for(&self, duration: Duration) {
        {
            let mut until = lock(&self.inner.unavailable_until);
            *until = Some(Instant::now() + duration);
        }
        self.inner.kill.send_modify(|epoch| *epoch += 1);
    }

    /// Is the server away right now?
    pub fn is_unavailable(&self) -> bool {
        lock(&self.inner.unavailable_until).is_some_and(|t| Instant::now() < t)
    }

    /// Answer the next `n` matching requests with `status` (429, 500 or
    /// 503; anything else is sent as a generic failure) and a proper
    /// Status body; 429 and 503 carry `Retry-After: 1`.
    pub fn fail_next(&self, n: usize, status: u16, filter: Option<FaultFilter>) {
        lock(&self.inner.rules).push(FailRule {
            remaining: n,
            status,
            filter,
        });
    }

    /// Hold each of the next `n` requests `filter` matches for `delay`
    /// before serving it, as an overloaded API server queues a request
    /// (API Priority and Fairness) and answers it late.
    pub fn delay_next(&self, n: usize, delay: Duration, filter: FaultFilter) {
        lock(&self.inner.delays).push(DelayRule {
            remaining: n,
            delay,
            filter,
        });
    }

    /// A validating admission webhook `webhook` (a policy on
    /// `pods/eviction`, as PDB-less guards like Gatekeeper rules are
    /// written) denies every eviction of `namespace/pod` with `message`.
    pub fn deny_evictions(&self, namespace: &str, pod: &str, webhook: &str, message: &str) {
        lock(&self.inner.denied_evictions).insert(
            format!("{namespace}/{pod}"),
            (webhook.to_string(), message.to_string()),
        );
    }

    /// The webhook and message that deny evicting `namespace/pod`, if any.
    pub(crate) fn eviction_denial(&self, namespace: &str, pod: &str) -> Option<(String, String)> {
        lock(&self.inner.denied_evictions)
            .get(&format!("{namespace}/{pod}"))
            .cloned()
    }

    /// Forget pending `fail_next` bursts and `delay_next` holds, and end an
    /// unavailability.
    pub fn clear(&self) {
        lock(&self.inner.rules).clear();
        lock(&self.inner.delays).clear();
        *lock(&self.inner.unavailable_until) = None;
    }

    /// How many HTTP requests the server has answered or failed (faults
    /// included; connections dropped while away are not requests).
    pub fn requests_served(&self) -> u64 {
        self.inner.served.load(Ordering::Relaxed)
    }

    pub(crate) fn note_request(&self) {
        self.inner.served.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn kill_signal(&self) -> watch::Receiver<u64> {
        self.inner.kill.subscribe()
    }

    /// The injected failure for this request, if a burst applies.
    pub(crate) fn take_failure(&self, request: &RequestFacts<'_>) -> Option<ApiError> {
        let mut rules = lock(&self.inner.rules);
        let index = rules.iter().position(|r| {
            r.remaining > 0 && r.filter.as_ref().is_none_or(|f| f.matches(request))
        })?;
        let rule = &mut rules[index];
        rule.remaining -= 1;
        let status = rule.status;
        if rule.remaining == 0 {
            rules.remove(index);
        }
        Some(injected(status))
    }

    /// How long to hold this request before serving it, if a hold applies.
    pub(crate) fn take_delay(&self, request: &RequestFacts<'_>) -> Option<Duration> {
        let mut delays = lock(&self.inner.delays);
        let index = delays
            .iter()
            .position(|d| d.remaining > 0 && d.filter.matches(request))?;
        let rule = &mut delays[index];
        rule.remaining -= 1;
        let delay = rule.delay;
        if rule.remaining == 0 {
            delays.remove(index);
        }
        Some(delay)
    }
}

fn injected(status: u16) -> ApiError {
    match status {
        429 => ApiError::too_many_requests("Too many requests, please try again later.", 1),
        500 => ApiError::internal("injected fault"),
        503 => ApiError::service_unavailable(),
        504 => ApiError::new(
            504,
            "Timeout",
            "Timeout: request did not complete within the allotted timeout",
        )
        .with_details(Details {
            retry_after_seconds: 1,
            ..Details::default()
        }),
        other => ApiError::new(other, "InternalError", format!("injected failure {other}"))
            .with_details(Details::default()),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(verb: &'a str, resource: &'a str, query: &'a str) -> RequestFacts<'a> {
        RequestFacts {
            verb,
            resource,
            query,
        }
    }

    #[test]
    fn bursts_hit_only_matching_requests_and_run_out() {
        let f = Faults::default();
        f.fail_next(
            2,
            429,
            Some(FaultFilter::verb_resource("create", "pods/eviction")),
        );
        assert!(f.take_failure(&request("get", "pods", "")).is_none());
        let e = f
            .take_failure(&request("create", "pods/eviction", ""))
            .unwrap();
        assert_eq!(e.code, 429);
        assert_eq!(e.retry_after(), Some(1));
        assert!(
            f.take_failure(&request("create", "pods/eviction", ""))
                .is_some()
        );
        assert!(
            f.take_failure(&request("create", "pods/eviction", ""))
                .is_none()
        );
        f.fail_next(1, 500, None);
        assert_eq!(
            f.take_failure(&request("list", "nodes", "")).unwrap().code,
            500
        );
    }

    #[test]
    fn holds_hit_only_requests_whose_query_matches_and_run_out() {
        let f = Faults::default();
        let hold = Duration::from_secs(2);
        f.delay_next(
            1,
            hold,
            FaultFilter::verb_resource("watch", "pods").with_query("fieldSelector=spec.nodeName"),
        );
        let kube_system = request("watch", "pods", "watch=true&resourceVersion=7");
        let on_node = request(
            "watch",
            "pods",
            "fieldSelector=spec.nodeName%3Dw-1&watch=true&resourceVersion=7",
        );
        assert_eq!(f.take_delay(&kube_system), None);
        assert_eq!(f.take_delay(&on_node), Some(hold));
        assert_eq!(f.take_delay(&on_node), None);
    }
}
