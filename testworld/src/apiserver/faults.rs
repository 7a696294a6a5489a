//! Faults on demand: the API server away for a while (every connection
//! dropped, new ones refused), and bursts of 429/500/503 answers. They act
//! on HTTP clients only; in-process controllers use the store directly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::status::{ApiError, Details};

/// Which requests a `fail_next` burst hits. `None` fields match anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultFilter {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, …
    pub verb: Option<String>,
    /// The resource plural, with the subresource if any (`pods`,
    /// `pods/eviction`, `nodes/status`); for other URLs the path.
    pub resource: Option<String>,
}

impl FaultFilter {
    pub fn verb(verb: &str) -> FaultFilter {
        FaultFilter {
            verb: Some(verb.into()),
            resource: None,
        }
    }

    pub fn resource(resource: &str) -> FaultFilter {
        FaultFilter {
            verb: None,
            resource: Some(resource.into()),
        }
    }

    pub fn verb_resource(verb: &str, resource: &str) -> FaultFilter {
        FaultFilter {
            verb: Some(verb.into()),
            resource: Some(resource.into()),
        }
    }

    fn matches(&self, verb: &str, resource: &str) -> bool {
        self.verb.as_deref().is_none_or(|v| v == verb)
            && self.resource.as_deref().is_none_or(|r| r == resource)
    }
}

struct FailRule {
    remaining: usize,
    status: u16,
    filter: Option<FaultFilter>,
}

struct FaultState {
    unavailable_until: Mutex<Option<Instant>>,
    kill: watch::Sender<u64>,
    rules: Mutex<Vec<FailRule>>,
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

    /// Forget pending `fail_next` bursts and end an unavailability.
    pub fn clear(&self) {
        lock(&self.inner.rules).clear();
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
    pub(crate) fn take_failure(&self, verb: &str, resource: &str) -> Option<ApiError> {
        let mut rules = lock(&self.inner.rules);
        let index = rules.iter().position(|r| {
            r.remaining > 0 && r.filter.as_ref().is_none_or(|f| f.matches(verb, resource))
        })?;
        let rule = &mut rules[index];
        rule.remaining -= 1;
        let status = rule.status;
        if rule.remaining == 0 {
            rules.remove(index);
        }
        Some(injected(status))
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

    #[test]
    fn bursts_hit_only_matching_requests_and_run_out() {
        let f = Faults::default();
        f.fail_next(
            2,
            429,
            Some(FaultFilter::verb_resource("create", "pods/eviction")),
        );
        assert!(f.take_failure("get", "pods").is_none());
        let e = f.take_failure("create", "pods/eviction").unwrap();
        assert_eq!(e.code, 429);
        assert_eq!(e.retry_after(), Some(1));
        assert!(f.take_failure("create", "pods/eviction").is_some());
        assert!(f.take_failure("create", "pods/eviction").is_none());
        f.fail_next(1, 500, None);
        assert_eq!(f.take_failure("list", "nodes").unwrap().code, 500);
    }

    #[test]
    fn unavailability_expires_and_kills_connections() {
        let f = Faults::default();
        let mut kill = f.kill_signal();
        f.unavailable_for(Duration::from_millis(30));
        assert!(f.is_unavailable());
        assert!(kill.has_changed().unwrap());
        kill.mark_unchanged();
        std::thread::sleep(Duration::from_millis(40));
        assert!(!f.is_unavailable());
    }
}
