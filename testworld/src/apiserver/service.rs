//! What the Service registry does on create (`pkg/registry/core/service`,
//! `pkg/apis/core/v1/defaults.go`): defaults (`type: ClusterIP`, TCP ports
//! whose `targetPort` is the port, single-stack IPv4, `sessionAffinity:
//! None`), a cluster IP from the service range (10.96.0.0/12, as kubeadm
//! configures it; `.1` is the `kubernetes` Service's), node ports for
//! NodePort and LoadBalancer Services, and an empty load-balancer status.
//! No endpoints are kept: nothing in the test world routes traffic.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::status::ApiError;
use crate::resources::SERVICES;
use crate::store::Store;

/// The service range's first address; addresses are handed out upwards
/// from `.10` (the first ten are conventionally reserved: the API server,
/// DNS).
const RANGE_START: u32 = u32::from_be_bytes([10, 96, 0, 0]);
const RANGE_SIZE: u32 = 1 << 20;
const FIRST_DYNAMIC: u32 = 10;
const NODE_PORTS: std::ops::RangeInclusive<i64> = 30000..=32767;

fn used(store: &Store) -> (HashSet<String>, HashSet<i64>) {
    let (services, _) = store.list(&SERVICES, None, |_| true);
    let mut ips = HashSet::new();
    let mut node_ports = HashSet::new();
    for s in services {
        if let Some(ip) = s.pointer("/spec/clusterIP").and_then(Value::as_str) {
            ips.insert(ip.to_string());
        }
        for p in s
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(n) = p.get("nodePort").and_then(Value::as_i64).filter(|n| *n > 0) {
                node_ports.insert(n);
            }
        }
    }
    (ips, node_ports)
}

/// Defaults and allocations of a Service about to be created.
pub(crate) fn prepare(store: &Store, service: &mut Value) -> Result<(), ApiError> {
    if !service.get("spec").is_some_and(Value::is_object) {
        service["spec"] = json!({});
    }
    let spec = &mut service["spec"];
    let kind = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    spec["type"] = json!(kind);
    if kind == "ExternalName" {
        service["status"] = json!({"loadBalancer": {}});
        return Ok(());
    }
    let (ips, mut node_ports) = used(store);
    if spec.get("sessionAffinity").is_none() {
        spec["sessionAffinity"] = json!("None");
    }
    if spec.get("internalTrafficPolicy").is_none() {
        spec["internalTrafficPolicy"] = json!("Cluster");
    }
    let wants_node_ports = kind == "NodePort" || kind == "LoadBalancer";
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports.iter_mut() {
            if port.get("protocol").is_none() {
                port["protocol"] = json!("TCP");
            }
            if port.get("targetPort").is_none()
                && let Some(p) = port.get("port").cloned()
            {
                port["targetPort"] = p;
            }
            // 0 is Go's zero value: unset (a protobuf body carries it).
            if port.get("nodePort").and_then(Value::as_i64) == Some(0)
                && let Some(p) = port.as_object_mut()
            {
                p.remove("nodePort");
            }
            if wants_node_ports && port.get("nodePort").is_none() {
                let free = NODE_PORTS
                    .clone()
                    .find(|n| !node_ports.contains(n))
                    .ok_or_else(|| {
                        ApiError::new(
                            500,
                            "InternalError",
                            "failed to allocate a nodePort: range is full",
                        )
                    })?;
                node_ports.insert(free);
                port["nodePort"] = json!(free);
            }
        }
    }
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    if !headless
        && spec
            .get("clusterIP")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        let ip = (FIRST_DYNAMIC..RANGE_SIZE)
            .map(|offset| Ipv4Addr::from(RANGE_START + offset).to_string())
            .find(|ip| !ips.contains(ip))
            .ok_or_else(|| {
                ApiError::new(
                    500,
                    "InternalError",
                    "failed to allocate a serviceIP: range is full",
                )
            })?;
        spec["clusterIP"] = json!(ip);
    }
    let cluster_ip = spec["clusterIP"].clone();
    spec["clusterIPs"] = json!([cluster_ip]);
    spec["ipFamilies"] = json!(["IPv4"]);
    spec["ipFamilyPolicy"] = json!("SingleStack");
    service["status"] = json!({"loadBalancer": {}});
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cluster_ips_and_ports_are_allocated_and_defaulted() {
        let store = Store::new();
        let mut a = json!({"metadata": {"name": "a"},
            "spec": {"ports": [{"name": "80-80", "port": 80, "nodePort": 0}], "selector": {"app": "a"}}});
        prepare(&store, &mut a).unwrap();
        assert!(a["spec"]["ports"][0].get("nodePort").is_none());
        assert_eq!(a["spec"]["clusterIP"], "10.96.0.10");
        assert_eq!(a["spec"]["type"], "ClusterIP");
        assert_eq!(a["spec"]["ports"][0]["protocol"], "TCP");
        assert_eq!(a["spec"]["ports"][0]["targetPort"], 80);
        store.create(&SERVICES, "default", a).unwrap();
        let mut b = json!({"metadata": {"name": "b"},
            "spec": {"type": "NodePort", "ports": [{"port": 443, "targetPort": 8443}]}});
        prepare(&store, &mut b).unwrap();
        assert_eq!(b["spec"]["clusterIP"], "10.96.0.11");
        assert_eq!(b["spec"]["ports"][0]["nodePort"], 30000);
        assert_eq!(b["spec"]["ports"][0]["targetPort"], 8443);
        let mut headless = json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None"}});
        prepare(&store, &mut headless).unwrap();
        assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
    }
}
