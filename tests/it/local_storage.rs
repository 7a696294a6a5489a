//! Pods whose data lives on the machine (issue 13, case 6): a pod on a
//! local PersistentVolume loses that data with the instance, so the drain
//! refuses it before cordoning unless `drain.localStorage: delete`; a
//! hostPath pod is evicted as kubectl drain does, and listed.

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::Api;
use kube::api::PostParams;
use kubesurge_provider::InstanceState;
use kubesurge_testworld::resources::{
    DEPLOYMENTS, NODES, PERSISTENTVOLUMECLAIMS, PERSISTENTVOLUMES, PODS,
};
use kubesurge_testworld::world::World;
use serde_json::{Value, json};

use crate::rotation::{Harness, Spec, start, text};

/// A `local` PersistentVolume on `node`, pre-bound to the claim
/// `namespace/claim` and Bound, as the PersistentVolume controller leaves a
/// pre-bound pair (`pkg/controller/volume/persistentvolume/pv_controller.go`
/// syncUnboundClaim/syncVolume: `spec.volumeName` on the claim,
/// `spec.claimRef` on the volume, both phases Bound). A local volume must
/// carry a required node affinity naming its node by
/// `kubernetes.io/hostname`: https://kubernetes.io/docs/concepts/storage/volumes/#local
fn local_volume_bound_to(world: &World, node: &str, namespace: &str, claim: &str, volume: &str) {
    world
        .store
        .create(
            &PERSISTENTVOLUMES,
            "",
            json!({
                "metadata": {"name": volume},
                "spec": {
                    "capacity": {"storage": "100Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": "local-storage",
                    "volumeMode": "Filesystem",
                    "local": {"path": "/mnt/disks/ssd1"},
                    "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
                    ]}]}},
                    "claimRef": {"kind": "PersistentVolumeClaim", "namespace": namespace, "name": claim}
                },
                "status": {"phase": "Bound"}
            }),
        )
        .expect("PersistentVolume");
    world
        .store
        .create(
            &PERSISTENTVOLUMECLAIMS,
            namespace,
            json!({
                "metadata": {"name": claim},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "local-storage",
                    "resources": {"requests": {"storage": "100Gi"}},
                    "volumeName": volume
                },
                "status": {"phase": "Bound", "capacity": {"storage": "100Gi"}}
            }),
        )
        .expect("PersistentVolumeClaim");
}

/// A one-replica Deployment `shop/name` whose pod runs on `node` (a worker
/// or a control-plane node) and
/// mounts `volume` (a pod volume source, e.g. a claim or a hostPath).
fn deployment_on(world: &World, node: &str, name: &str, mut volume: Value) {
    volume["name"] = json!("data");
    world
        .store
        .create(
            &DEPLOYMENTS,
            "shop",
            json!({
                "metadata": {"name": name},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {"labels": {"app": name}},
                        "spec": {
                            "nodeSelector": {"kubernetes.io/hostname": node},
                            // So that it may run on a control-plane node too.
                            "tolerations": [{"key": "node-role.kubernetes.io/control-plane",
                                             "operator": "Exists", "effect": "NoSchedule"}],
                            "containers": [{
                                "name": "main",
                                "image": "registry.k8s.io/pause:3.10",
                                "volumeMounts": [{"name": "data", "mountPath": "/data"}]
                            }],
                            "volumes": [volume]
                        }
                    }
                }
            }),
        )
        .expect("Deployment");
}

/// The running pod of Deployment `shop/app` once it runs on `node`:
/// `(name, uid)`.
async fn running_pod(world: &World, app: &str, node: &str) -> (String, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (pods, _) = world.store.list(&PODS, Some("shop"), |p| {
            p.pointer("/metadata/labels/app") == Some(&json!(app))
                && p.pointer("/spec/nodeName") == Some(&json!(node))
                && p.pointer("/status/phase") == Some(&json!("Running"))
        });
        if let Some(p) = pods.first() {
            return (
                p["metadata"]["name"].as_str().unwrap().to_string(),
                p["metadata"]["uid"].as_str().unwrap().to_string(),
            );
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pod of {app} never ran on {node}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The instance behind `node` is still running.
fn instance_runs(h: &Harness, node: &str) -> bool {
    let node = h.world.store.get(&NODES, "", node).expect("node");
    let provider_id = node["spec"]["providerID"].as_str().unwrap_or_default();
    h.world.cloud.instances().into_iter().any(|i| {
        i.provider_id == provider_id
            && !matches!(
                i.state,
                InstanceState::Terminated | InstanceState::ShuttingDown
            )
    })
}

fn first_worker(h: &Harness) -> String {
    h.original_workers.keys().next().expect("a worker").clone()
}

/// `rotate --all` converges, and its report lists `shop/<pod>` as evicted
/// for `reason`.
async fn rotates_evicting(h: &Harness, pod: &str, reason: &str) {
    let output = h.run(&["rotate", "--all", "--yes", "-o", "json"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    h.assert_converged();
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    assert!(
        evicted(&report).contains(&(format!("shop/{pod}"), reason.to_string())),
        "the report lists {pod} as evicted for {reason}: {report:#}"
    );
}

/// The evicted pods of a JSON report with their reasons.
pub(crate) fn evicted(report: &Value) -> Vec<(String, String)> {
    report["slots"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| {
            s["drain"]["evicted"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|e| {
            (
                e["pod"].as_str().unwrap_or_default().to_string(),
                e["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_serves_persistent_volumes_and_claims() {
    let h = start(Spec {
        pools: vec![("general", 1)],
        workloads: false,
        ..Spec::default()
    })
    .await;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&h.world.kubeconfig_yaml()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let created = volumes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "pv-1"},
                "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                         "hostPath": {"path": "/data"}},
                "status": {"phase": "Bound"}
            }))
            .unwrap(),
        )
        .await
        .expect("create a PersistentVolume");
    // The status a client sends is dropped: a new volume is Pending.
    assert_eq!(
        created.status.and_then(|s| s.phase).as_deref(),
        Some("Pending")
    );
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    claims
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
            }))
            .unwrap(),
        )
        .await
        .expect("create a PersistentVolumeClaim");
    let listed = volumes.list(&Default::default()).await.expect("list");
    assert_eq!(listed.items.len(), 1);
    let all_claims: Api<PersistentVolumeClaim> = Api::all(client);
    let listed = all_claims.list(&Default::default()).await.expect("list");
    assert_eq!(listed.items.len(), 1);
    assert_eq!(
        listed.items[0].metadata.namespace.as_deref(),
        Some("default")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_on_a_local_volume_is_refused_before_its_node_is_cordoned() {
    // Before kubesurge knew about local volumes, this pod was evicted like
    // any Deployment's pod and the instance terminated with its disk: the
    // rotation succeeded and the data was gone.
    let h = start(Spec {
        pools: vec![("general", 2)],
        max_surge: 1,
        ..Spec::default()
    })
    .await;
    let node = first_worker(&h);
    local_volume_bound_to(&h.world, &node, "shop", "data-db", "local-pv-db");
    deployment_on(
        &h.world,
        &node,
        "db",
        json!({"persistentVolumeClaim": {"claimName": "data-db"}}),
    );
    let (pod, uid) = running_pod(&h.world, "db", &node).await;

    let output = h.run(&["rotate", "--all", "--yes", "-o", "json"]).await;
    let all = text(&output);
    // A refused drain fails the slot like `drain.unmanagedPods: fail`
    // does: the run fails (exit 1), the cluster left safe, and a rerun
    // resumes once the config or the pod changed.
    assert_eq!(output.status.code(), Some(1), "{all}");
    for part in [
        format!("pod shop/{pod}"),
        "data-db".to_string(),
        "local-pv-db".to_string(),
        "drain.localStorage: delete".to_string(),
    ] {
        assert!(all.contains(&part), "the refusal names {part}: {all}");
    }
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    let slot = report["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["oldNode"] == json!(node))
        .expect("the node's slot");
    assert_eq!(slot["outcome"]["result"], "failed", "{slot}");

    let old = h
        .world
        .store
        .get(&NODES, "", &node)
        .expect("the node stays");
    assert_ne!(
        old["spec"]["unschedulable"],
        json!(true),
        "the node was not cordoned: {old}"
    );
    let still = h
        .world
        .store
        .get(&PODS, "shop", &pod)
        .expect("the pod stays");
    assert_eq!(still["metadata"]["uid"], json!(uid), "the same pod");
    assert!(
        still["metadata"].get("deletionTimestamp").is_none(),
        "the pod was not evicted: {still}"
    );
    assert!(
        instance_runs(&h, &node),
        "the instance holding the data was not terminated"
    );
    assert!(
        h.observer.violations().is_empty(),
        "{:?}",
        h.observer.violations()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_delete_the_pod_on_a_local_volume_is_evicted_and_reported() {
    // Before `drain.localStorage` existed the config was refused (exit 2,
    // unknown field); the pod was evicted all the same under the defaults,
    // and the report did not say its data was lost.
    let h = start(Spec {
        pools: vec![("general", 2)],
        max_surge: 1,
        drain: "{ timeout: 60s, onTimeout: fail, unmanagedPods: delete, localStorage: delete }",
        ..Spec::default()
    })
    .await;
    let node = first_worker(&h);
    local_volume_bound_to(&h.world, &node, "shop", "data-db", "local-pv-db");
    deployment_on(
        &h.world,
        &node,
        "db",
        json!({"persistentVolumeClaim": {"claimName": "data-db"}}),
    );
    let (pod, _) = running_pod(&h.world, "db", &node).await;
    rotates_evicting(&h, &pod, "localVolume").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_path_pod_is_evicted_as_kubectl_does_and_listed() {
    // Default policies (`drain.localStorage: fail`): a hostPath is not a
    // PersistentVolume and does not stop the drain, as with kubectl
    // (`kubectl:pkg/drain/filters.go` only stops at emptyDir).
    // Before, the pod was evicted too, but reported as any managed pod
    // (`managed`), so nothing said its hostPath data stayed behind.
    let h = start(Spec {
        pools: vec![("general", 2)],
        max_surge: 1,
        ..Spec::default()
    })
    .await;
    let node = first_worker(&h);
    deployment_on(
        &h.world,
        &node,
        "logs",
        json!({"hostPath": {"path": "/var/log/app", "type": "DirectoryOrCreate"}}),
    );
    let (pod, _) = running_pod(&h.world, "logs", &node).await;
    rotates_evicting(&h, &pod, "hostPath").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_node_upgraded_in_place_keeps_its_local_volumes_and_is_drained() {
    // The kubelet upgrade drains the control-plane node but keeps the
    // machine: the pod comes back to its volume once the node is
    // uncordoned, so `drain.localStorage: fail` does not apply there.
    let h = start(Spec {
        version: "v1.34.3",
        pools: vec![("general", 1)],
        max_surge: 1,
        ..Spec::default()
    })
    .await;
    let node = "cp-1";
    local_volume_bound_to(&h.world, node, "shop", "data-etcd-backup", "local-pv-cp");
    deployment_on(
        &h.world,
        node,
        "backup",
        json!({"persistentVolumeClaim": {"claimName": "data-etcd-backup"}}),
    );
    let (_, before) = running_pod(&h.world, "backup", node).await;

    let output = h.run(&["upgrade", "--to", "v1.35.3", "--yes"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    assert!(
        instance_runs(&h, node),
        "the control-plane machine stays, with its disks"
    );
    let (_, after) = running_pod(&h.world, "backup", node).await;
    assert_ne!(
        after, before,
        "the pod was evicted for the kubelet upgrade and came back"
    );
}
