//! Events on nodes, so `kubectl describe node` tells what kubesurge did.
//! Best effort: a failed event never fails a slot.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, EventSource, Node, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::Client;

use super::write;

/// `source.component` and `reportingComponent` of our events.
pub const COMPONENT: &str = "kubesurge";

/// Whether an event reports normal progress or a problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// Records core/v1 Events (what `kubectl describe` lists).
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    instance: String,
}

impl Recorder {
    /// `instance` identifies this run (`host/pid`).
    pub fn new(client: Client, instance: String) -> Recorder {
        Recorder { client, instance }
    }

    /// Record an event on `node`.
    pub async fn node_event(&self, node: &Node, kind: EventType, reason: &str, message: &str) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let now = Timestamp::now();
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{name}.")),
                namespace: Some("default".into()),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(name.clone()),
                uid: node.metadata.uid.clone(),
                ..ObjectReference::default()
            },
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some(match kind {
                EventType::Normal => "Normal".into(),
                EventType::Warning => "Warning".into(),
            }),
            source: Some(EventSource {
                component: Some(COMPONENT.into()),
                host: None,
            }),
            reporting_component: Some(COMPONENT.into()),
            reporting_instance: Some(self.instance.clone()),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            action: Some(reason.into()),
            count: Some(1),
            ..Event::default()
        };
        // The Event the server answers with is not decoded.
        let sent = write::create(&self.client, Some("default"), &event);
        if let Err(e) = sent.await {
            tracing::debug!(node = %name, reason, error = %e, "could not record event");
        }
    }
}
