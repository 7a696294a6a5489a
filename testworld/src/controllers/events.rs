//! Events the simulated components record, shaped as client-go's event
//! recorder writes them (`client-go/tools/record/event.go`,
//! `events_cache.go`): a core/v1 Event in the involved object's namespace
//! (`default` for Nodes), named `<object name>.<hex Unix nanoseconds>`,
//! with `source`, `reportingComponent`/`reportingInstance`, first and last
//! time stamps and a count of 1. The scheduler records through the
//! events.k8s.io API instead, which shows in core/v1 as an `eventTime` and
//! an `action` without `source` or time stamps
//! (`pkg/apis/core/v1/conversion` of events).
//!
//! A real API server drops Events after `--event-ttl` (1 h); the recorder
//! keeps the newest [`MAX_EVENTS`] instead, so that long runs stay small.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::informer::str_at;
use super::objects::uid_of;
use crate::resources::EVENTS;
use crate::store::{Preconditions, Store, rfc3339};

/// How many Events are kept at most.
pub const MAX_EVENTS: usize = 2000;

/// Who records an Event.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Source<'a> {
    pub component: &'a str,
    /// The node, for kubelets.
    pub host: &'a str,
}

/// Records Events into the store, keeping the newest [`MAX_EVENTS`].
pub(crate) struct EventRecorder {
    store: Arc<Store>,
    state: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    events: VecDeque<(String, String)>,
    /// The last name stamp handed out: names stay unique even for events
    /// of one object recorded within the same nanosecond.
    last_stamp: i128,
}

impl std::fmt::Debug for EventRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRecorder").finish_non_exhaustive()
    }
}

/// The `involvedObject` of a Pod.
pub(crate) fn pod_ref(pod: &Value) -> Value {
    json!({
        "kind": "Pod",
        "namespace": str_at(pod, "/metadata/namespace"),
        "name": str_at(pod, "/metadata/name"),
        "uid": uid_of(pod),
        "apiVersion": "v1",
        "resourceVersion": str_at(pod, "/metadata/resourceVersion"),
    })
}

/// The `involvedObject` of a Node. Kubelets use the node's name as its
/// uid, controllers the real uid; `kubectl describe node` looks for both
/// (`kubectl/pkg/describe` `NodeDescriber`).
pub(crate) fn node_ref(name: &str, uid: &str) -> Value {
    json!({"kind": "Node", "name": name, "uid": uid, "apiVersion": "v1"})
}

impl EventRecorder {
    pub fn new(store: Arc<Store>) -> Arc<EventRecorder> {
        Arc::new(EventRecorder {
            store,
            state: Mutex::new(Kept::default()),
        })
    }

    /// `<object name>.<hex nanoseconds>`, unique.
    fn event_name(&self, involved: &Value, now: Timestamp) -> String {
        let stamp = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.last_stamp = now.as_nanosecond().max(state.last_stamp + 1);
            state.last_stamp
        };
        format!("{}.{stamp:x}", str_at(involved, "/name"))
    }

    /// Record a `Normal` (or `Warning`) event about `involved`.
    pub fn record(
        &self,
        source: Source<'_>,
        involved: Value,
        event_type: &str,
        reason: &str,
        message: &str,
    ) {
        let now = Timestamp::now();
        let stamp = rfc3339(now);
        let namespace = match str_at(&involved, "/namespace") {
            "" => "default".to_string(),
            ns => ns.to_string(),
        };
        let name = self.event_name(&involved, now);
        let mut source_json = Map::new();
        source_json.insert("component".into(), json!(source.component));
        if !source.host.is_empty() {
            source_json.insert("host".into(), json!(source.host));
        }
        let event = json!({
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "source": source_json,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "type": event_type,
            "eventTime": null,
            "reportingComponent": source.component,
            "reportingInstance": source.host,
        });
        self.store_event(&namespace, &name, event);
    }

    /// Record an event through the events.k8s.io API (the scheduler's
    /// way): `eventTime` and `action`, no `source` or time stamps.
    #[allow(clippy::too_many_arguments)]
    pub fn record_v1(
        &self,
        component: &str,
        instance: &str,
        involved: Value,
        event_type: &str,
        action: &str,
        reason: &str,
        message: &str,
    ) {
        let now = Timestamp::now();
        let namespace = match str_at(&involved, "/namespace") {
            "" => "default".to_string(),
            ns => ns.to_string(),
        };
        let name = self.event_name(&involved, now);
        let event = json!({
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "source": {},
            "firstTimestamp": null,
            "lastTimestamp": null,
            "type": event_type,
            "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string(),
            "action": action,
            "reportingComponent": component,
            "reportingInstance": instance,
        });
        self.store_event(&namespace, &name, event);
    }

    fn store_event(&self, namespace: &str, name: &str, event: Value) {
        if let Err(e) = self.store.create(&EVENTS, namespace, event) {
            tracing::debug!(error = %e, "could not record event {namespace}/{name}");
            return;
        }
        let evicted = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state
                .events
                .push_back((namespace.to_string(), name.to_string()));
            let over = state.events.len().saturating_sub(MAX_EVENTS);
            state.events.drain(..over).collect::<Vec<_>>()
        };
        for (ns, old) in evicted {
            // Deleted already (a namespace went away) is fine.
            let _ = self
                .store
                .delete(&EVENTS, &ns, &old, &Preconditions::default());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_are_named_by_object_and_bounded() {
        let store = Store::new();
        let recorder = EventRecorder::new(store.clone());
        let node = node_ref("n1", "n1");
        for _ in 0..(MAX_EVENTS + 5) {
            recorder.record(
                Source {
                    component: "kubelet",
                    host: "n1",
                },
                node.clone(),
                "Normal",
                "NodeReady",
                "Node n1 status is now: NodeReady",
            );
        }
        let (events, _) = store.list(&EVENTS, Some("default"), |_| true);
        assert_eq!(events.len(), MAX_EVENTS);
        let e = &events[0];
        assert!(str_at(e, "/metadata/name").starts_with("n1."));
        assert_eq!(e["source"], json!({"component": "kubelet", "host": "n1"}));
        assert_eq!(e["involvedObject"]["kind"], "Node");
        assert_eq!(e["count"], 1);
    }
}
