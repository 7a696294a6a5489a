//! The official Python client (`kubernetes` on PyPI) against a running
//! world: its models refuse an object that lacks a field the API
//! reference marks required (`ValueError: Invalid value for ... must not
//! be None`), so reading every served kind through it checks that the
//! emulator's objects carry them.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use kubesurge_testworld::Timing;
use kubesurge_testworld::world::{PoolSpec, World, WorldConfig};

use crate::python_venv::python_with;

/// A Python with the `kubernetes` package (see [`python_with`]).
pub(crate) fn python_with_kubernetes() -> PathBuf {
    python_with("python-kubernetes", "kubernetes", "kubernetes")
}

const SCRIPT: &str = r#"
import sys
from kubernetes import client, config

config.load_kube_config(sys.argv[1])
core = client.CoreV1Api()
apps = client.AppsV1Api()

nodes = core.list_node()
for n in nodes.items:
    ready = [c.status for c in n.status.conditions if c.type == "Ready"]
    print("node", n.metadata.name, n.status.node_info.kubelet_version, ready[0])
# What eks-rolling-update reads of the list: every Node's providerID and
# labels, and the required nodeInfo field real kubelets send empty.
print("provider ids", all(n.spec.provider_id for n in nodes.items))
print("labelled", all(n.metadata.labels for n in nodes.items))
print("kube-proxy versions", sorted({repr(n.status.node_info.kube_proxy_version) for n in nodes.items}))
print("pods", len(core.list_pod_for_all_namespaces().items))
print("namespaces", len(core.list_namespace().items))
print("deployments", len(apps.list_deployment_for_all_namespaces().items))
print("replicasets", len(apps.list_replica_set_for_all_namespaces().items))
print("daemonsets", len(apps.list_daemon_set_for_all_namespaces().items))
print("pdbs", len(client.PolicyV1Api().list_pod_disruption_budget_for_all_namespaces().items))
print("leases", len(client.CoordinationV1Api().list_lease_for_all_namespaces().items))
reasons = sorted({e.reason for e in core.list_event_for_all_namespaces().items})
print("event reasons", " ".join(reasons))
name = nodes.items[0].metadata.name
core.patch_node(name, {"metadata": {"labels": {"checked-by": "python"}}})
print("label", core.read_node(name).metadata.labels["checked-by"])
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_reads_every_kind() {
    let python = python_with_kubernetes();
    let world = World::start(WorldConfig {
        cluster_name: "py".into(),
        control_planes: 1,
        pools: vec![PoolSpec {
            name: "general".into(),
            workers: 2,
        }],
        zones: 2,
        version: "v1.33.4".into(),
        timing: Timing::fast(),
        workloads: true,
    })
    .await
    .expect("world starts");
    world
        .wait_ready(Duration::from_secs(60))
        .await
        .expect("world settles");
    let dir = tempfile::TempDir::new().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, world.kubeconfig_yaml()).unwrap();
    let script = dir.path().join("check.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(&script)
            .arg(&kubeconfig)
            .output()
            .expect("python runs")
    })
    .await
    .unwrap();
    world.stop();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let nodes: Vec<&str> = stdout.lines().filter(|l| l.starts_with("node ")).collect();
    assert_eq!(nodes.len(), 3, "{stdout}");
    assert!(
        nodes.iter().all(|l| l.ends_with(" v1.33.4 True")),
        "{stdout}"
    );
    // The Node list as a group roller reads it (eks-rolling-update matches
    // instances by providerID): every required field present.
    assert!(stdout.contains("provider ids True"), "{stdout}");
    assert!(stdout.contains("labelled True"), "{stdout}");
    assert!(stdout.contains("kube-proxy versions [\"''\"]"), "{stdout}");
    assert!(stdout.contains("label python"), "{stdout}");
    let reasons = stdout
        .lines()
        .find_map(|l| l.strip_prefix("event reasons "))
        .unwrap_or_default();
    for reason in ["RegisteredNode", "NodeReady", "Scheduled", "Started"] {
        assert!(reasons.split(' ').any(|r| r == reason), "{stdout}");
    }
}
