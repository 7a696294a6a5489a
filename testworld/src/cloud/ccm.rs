//! The node controller of an external cloud controller manager, as a
//! cluster on a cloud runs it (`cloud-controller-manager`, for AWS
//! `aws-cloud-controller-manager` from kubernetes/cloud-provider-aws).
//!
//! What it imitates, from k8s.io/cloud-provider
//! `controllers/node/node_controller.go`:
//! - only Nodes carrying the taint `node.cloudprovider.kubernetes.io/uninitialized`
//!   are initialized (`syncNode` returns early for a Node without it). A
//!   kubelet adds that taint at registration when it runs with
//!   `--cloud-provider=external` (kubelet `kubelet_node_status.go`,
//!   `initialNode`); a kubelet without it gets neither the taint nor any
//!   cloud label, and the controller never touches its Node;
//! - `initializeNode` looks the instance up by `spec.providerID` or, when
//!   empty, by node name; sets the providerID when empty, the labels
//!   `node.kubernetes.io/instance-type`, `topology.kubernetes.io/zone` and
//!   `topology.kubernetes.io/region`, the node's addresses, and removes the
//!   taint — all in one update;
//! - a Node whose instance cannot be found stays tainted (the controller
//!   logs and retries).
//!
//! Initialization happens `delay` after the controller first sees the
//! Node: real controllers take a few seconds (an EC2 DescribeInstances per
//! node, its work queue).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::Shared;
use crate::resources::NODES;
use crate::store::Store;
use kubesurge_sim::provider_id::parse_provider_id;

/// The taint kubelets with `--cloud-provider=external` register with.
pub const UNINITIALIZED_TAINT: &str = "node.cloudprovider.kubernetes.io/uninitialized";

/// The instance type the simulated cloud reports for every machine.
pub const INSTANCE_TYPE: &str = "sim.large";

fn is_uninitialized(node: &Value) -> bool {
    node.pointer("/spec/taints")
        .and_then(Value::as_array)
        .is_some_and(|taints| taints.iter().any(|t| t["key"] == UNINITIALIZED_TAINT))
}

/// What the controller learns of a node's instance.
struct InstanceFacts {
    provider_id: String,
    zone: String,
    private_ip: String,
}

fn instance_of(shared: &Shared, node: &Value) -> Option<InstanceFacts> {
    let inner = shared.lock();
    let name = node["metadata"]["name"].as_str().unwrap_or("");
    let by_id = node
        .pointer("/spec/providerID")
        .and_then(Value::as_str)
        .and_then(parse_provider_id)
        .map(|(_, id)| id.to_string());
    inner
        .cloud
        .instances()
        .filter(|r| r.state != kubesurge_provider::InstanceState::Terminated)
        .find(|r| match &by_id {
            Some(id) => &r.id == id,
            // No providerID yet: the instance the node is named after.
            None => {
                r.tags
                    .get(kubesurge_provider::tags::NAME)
                    .map(String::as_str)
                    == Some(name)
            }
        })
        .map(|r| InstanceFacts {
            provider_id: r.provider_id.clone(),
            zone: r.zone.clone(),
            private_ip: r.private_ip.clone(),
        })
}

/// The region of a zone (`eu-west-1a` → `eu-west-1`), as the AWS
/// provider derives it; none for a zone without that shape.
fn region_of(zone: &str) -> Option<&str> {
    zone.strip_suffix(|c: char| c.is_ascii_lowercase())
        .filter(|r| r.ends_with(|c: char| c.is_ascii_digit()))
}

fn initialize(store: &Store, name: &str, facts: &InstanceFacts) {
    let result = store.modify(&NODES, "", name, |node| {
        if node
            .pointer("/spec/providerID")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            node["spec"]["providerID"] = json!(facts.provider_id);
        }
        let labels = &mut node["metadata"]["labels"];
        if !labels.is_object() {
            *labels = json!({});
        }
        labels["node.kubernetes.io/instance-type"] = json!(INSTANCE_TYPE);
        labels["topology.kubernetes.io/zone"] = json!(facts.zone);
        if let Some(region) = region_of(&facts.zone) {
            labels["topology.kubernetes.io/region"] = json!(region);
        }
        if let Some(taints) = node
            .pointer_mut("/spec/taints")
            .and_then(Value::as_array_mut)
        {
            taints.retain(|t| t["key"] != UNINITIALIZED_TAINT);
        }
        node["status"]["addresses"] = json!([
            {"type": "InternalIP", "address": facts.private_ip},
            {"type": "Hostname", "address": name},
        ]);
        Ok(())
    });
    if let Err(e) = result {
        tracing::debug!(node = name, error = %e, "cloud controller could not initialize the node");
    }
}

/// Run the controller until the cloud stops.
pub(crate) async fn run(shared: Arc<Shared>, store: Arc<Store>, delay: Duration) {
    let tick = (delay / 4).clamp(Duration::from_millis(20), Duration::from_millis(500));
    let mut first_seen: HashMap<String, Instant> = HashMap::new();
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        let (pending, _) = store.list(&NODES, None, is_uninitialized);
        let now = Instant::now();
        first_seen.retain(|name, _| {
            pending
                .iter()
                .any(|n| n["metadata"]["name"] == name.as_str())
        });
        for node in pending {
            let Some(name) = node["metadata"]["name"].as_str() else {
                continue;
            };
            let seen = *first_seen.entry(name.to_string()).or_insert(now);
            if now < seen + delay {
                continue;
            }
            if let Some(facts) = instance_of(&shared, &node) {
                initialize(&store, name, &facts);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_follow_the_zone_naming() {
        assert_eq!(region_of("eu-west-1a"), Some("eu-west-1"));
        assert_eq!(region_of("zone-a"), None);
    }
}
