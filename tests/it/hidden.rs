//! The hidden-behaviour suite (issue 13): one rotation with every way a
//! real cluster and cloud differ from a tidy test world switched on at
//! once, each imitated by the world with its source cited there:
//!
//! - kubelets registering the zone-less providerID form, or none until the
//!   cloud controller sets it (`cloud::faults::ProviderIdForm`);
//! - an external cloud controller that taints new Nodes `uninitialized`
//!   and labels them seconds later (`cloud::ccm`);
//! - launch keys bound to their launch after the instance is gone, as EC2
//!   binds a `ClientToken` (`cloud::state::check_launch`): the first run is
//!   killed after its first launch and that instance terminated before the
//!   rerun;
//! - strangers in the account: another team's instance carrying this
//!   pool's name, and an untagged one;
//! - an admission policy refusing one pod's eviction
//!   (`apiserver` `Faults::deny_evictions`);
//! - a node its operator cordoned before the run (cordoned with kubectl);
//! - hostPath pods.
//!
//! The §8.3 observer checks every write of both invocations; at the end no
//! instance is left beyond the nodes and the strangers, and no workload
//! lost a pod.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kubesurge_provider::{
    CloudProvider, DeleteStatus, InstanceId, InstanceState, LaunchRequest, PoolRef, Sensitive,
    SlotKey, tags,
};
use kubesurge_sim::SimProvider;
use kubesurge_testworld::cloud::faults::ProviderIdForm;
use kubesurge_testworld::observer::PoolFloor;
use kubesurge_testworld::resources::{DEPLOYMENTS, NODES, PODS, SECRETS};
use serde_json::{Value, json};

use crate::local_storage::evicted;
use crate::rotation::{Harness, KillPoint, Spec, kill_at, start, text, workers};

const POOL: &str = "general";
const WORKERS: usize = 4;

/// An instance someone else runs in the same account: launched with
/// `cluster`'s tags and user data that joins nothing.
async fn stranger(h: &Harness, cluster: &str, zone: &str) -> InstanceId {
    let request = LaunchRequest {
        pool: PoolRef {
            cluster: cluster.into(),
            pool: POOL.into(),
        },
        slot: SlotKey {
            run_id: "their-own".into(),
            old_node: "none".into(),
            attempt: 1,
        },
        image: h
            .world
            .cloud
            .image_for_version("v1.35.3")
            .expect("an image"),
        zone: zone.into(),
        subnet: None,
        user_data: Sensitive::new("#!/bin/bash\n# another team's batch machine\n".into()),
        node_name: format!("{cluster}-batch"),
        extra_tags: BTreeMap::new(),
    };
    SimProvider::new(h.world.cloud.url(), cluster)
        .launch(&request)
        .await
        .expect("a stranger launches")
        .id
}

/// A Deployment `shop/logs` whose pods write to a hostPath.
fn host_path_deployment(h: &Harness) {
    h.world
        .store
        .create(
            &DEPLOYMENTS,
            "shop",
            json!({
                "metadata": {"name": "logs"},
                "spec": {
                    "replicas": 3,
                    "selector": {"matchLabels": {"app": "logs"}},
                    "template": {
                        "metadata": {"labels": {"app": "logs"}},
                        "spec": {
                            "containers": [{
                                "name": "main",
                                "image": "registry.k8s.io/pause:3.10",
                                "volumeMounts": [{"name": "logs", "mountPath": "/logs"}]
                            }],
                            "volumes": [{"name": "logs", "hostPath":
                                {"path": "/var/log/app", "type": "DirectoryOrCreate"}}]
                        }
                    }
                }
            }),
        )
        .expect("Deployment");
}

/// Pods of `shop/<app>` running now, by name → node.
fn running(h: &Harness, app: &str) -> BTreeMap<String, String> {
    let (pods, _) = h.world.store.list(&PODS, Some("shop"), |p| {
        p.pointer("/metadata/labels/app") == Some(&json!(app))
            && p.pointer("/status/phase") == Some(&json!("Running"))
            && p.pointer("/metadata/deletionTimestamp").is_none()
    });
    pods.iter()
        .filter_map(|p| {
            Some((
                p["metadata"]["name"].as_str()?.to_string(),
                p["spec"]["nodeName"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// Wait until every Deployment has all its replicas ready; the ones that
/// do not, after `timeout`.
async fn unready_deployments(h: &Harness, timeout: Duration) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (deployments, _) = h.world.store.list(&DEPLOYMENTS, None, |_| true);
        let unready: Vec<String> = deployments
            .iter()
            .filter(|d| {
                let want = d.pointer("/spec/replicas").and_then(Value::as_u64);
                let ready = d.pointer("/status/readyReplicas").and_then(Value::as_u64);
                want.is_some_and(|w| w > 0) && want != ready
            })
            .map(|d| {
                format!(
                    "{}/{}: {} of {}",
                    d["metadata"]["namespace"],
                    d["metadata"]["name"],
                    d["status"]["readyReplicas"],
                    d["spec"]["replicas"]
                )
            })
            .collect();
        if unready.is_empty() || tokio::time::Instant::now() >= deadline {
            return unready;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn kubectl(h: &Harness, args: &[&str]) {
    let out = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&h.kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .await
        .expect("kubectl runs");
    assert!(out.status.success(), "kubectl {args:?}: {out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_with_every_real_world_divergence_at_once_loses_nothing() {
    let h = start(Spec {
        pools: vec![(POOL, WORKERS)],
        max_surge: 1,
        drain: "{ timeout: 10s, onTimeout: skip, unmanagedPods: delete }",
        cloud_controller: Some(Duration::from_secs(2)),
        pool_extra: "    kubeletExtraArgs: { cloud-provider: external }\n",
        ..Spec::default()
    })
    .await;
    let cluster_nodes_before = h.world.store.list(&NODES, None, |_| true).0.len();
    h.world.cloud.with_faults(|f| {
        f.register_provider_ids([
            ProviderIdForm::ZoneLess,
            ProviderIdForm::Empty,
            ProviderIdForm::ZoneLess,
            ProviderIdForm::Empty,
            ProviderIdForm::ZoneLess,
        ])
    });
    // Strangers: another cluster's machine with this pool's name, and one
    // with no tags at all.
    let zone = h.world.cloud.zones()[0].clone();
    let theirs = stranger(&h, "other-team", &zone).await;
    let untagged = stranger(&h, "nobody", &zone).await;
    h.world
        .cloud
        .edit_tags(&untagged.0, |t| t.clear())
        .expect("untag");
    let stranger_tags: BTreeMap<InstanceId, BTreeMap<String, String>> = [&theirs, &untagged]
        .into_iter()
        .map(|id| (id.clone(), h.world.cloud.instance(&id.0).unwrap().tags))
        .collect();

    host_path_deployment(&h);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while running(&h, "logs").len() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "logs never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // An admission policy pins one workload pod of a worker.
    let (pods, _) = h.world.store.list(&PODS, Some("shop"), |p| {
        p.pointer("/metadata/labels/app") != Some(&json!("logs"))
            && p.pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| h.original_workers.contains_key(n))
    });
    let guarded = pods.first().expect("a workload pod on a worker");
    let guarded_pod = guarded["metadata"]["name"].as_str().unwrap().to_string();
    let guarded_node = guarded["spec"]["nodeName"].as_str().unwrap().to_string();
    h.world.apiserver.faults().deny_evictions(
        "shop",
        &guarded_pod,
        "eviction-guard.example.com",
        "this pod is pinned by its owner",
    );
    // Its operator cordoned another worker before the run: the pool
    // serves with the others.
    h.observer.set_pool_floors(vec![PoolFloor {
        name: POOL.into(),
        selector: BTreeMap::from([("kubesurge.io/pool".to_string(), POOL.to_string())]),
        floor: WORKERS - 1,
    }]);
    let cordoned = h
        .original_workers
        .keys()
        .find(|n| **n != guarded_node)
        .unwrap()
        .clone();
    kubectl(&h, &["cordon", &cordoned]).await;

    // The first invocation dies right after its first launch; that
    // instance is then terminated (by an operator, or `gc`).
    let before: BTreeSet<InstanceId> = h
        .world
        .cloud
        .instances()
        .into_iter()
        .map(|i| i.id)
        .collect();
    kill_at(&h, KillPoint::Launched(1), &["rotate", "--all", "--yes"]).await;
    let gone = h
        .world
        .cloud
        .instances()
        .into_iter()
        .find(|i| !before.contains(&i.id))
        .expect("the first launch");
    let gone_slot_node = gone.tag(tags::REPLACES).expect("replaces").to_string();
    let provider = SimProvider::new(h.world.cloud.url(), "e2e");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while provider.delete(&gone.id).await.expect("terminate") != DeleteStatus::Gone {
        assert!(tokio::time::Instant::now() < deadline, "never terminated");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Had it registered, the cloud's node lifecycle controller would delete
    // its Node once the instance is gone
    // (k8s.io/cloud-provider/controllers/nodelifecycle/node_lifecycle_controller.go).
    if let Some(name) = gone.tag(tags::NAME) {
        let _ = h.world.store.delete(&NODES, "", name, &Default::default());
    }
    let host_path_pods = running(&h, "logs");

    let output = h.run(&["rotate", "--all", "--yes", "-o", "json"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    let slots = report["slots"].as_array().expect("slots");
    let slot_of = |node: &str| {
        slots
            .iter()
            .find(|s| s["oldNode"] == node)
            .unwrap_or_else(|| panic!("no slot for {node}: {report:#}"))
    };

    // §8.3 at every write of both invocations.
    let violations = h.observer.violations();
    assert!(
        violations.is_empty(),
        "invariant violations: {violations:#?}"
    );
    // The guarded node is given back, serving, with its pod.
    assert_eq!(slot_of(&guarded_node)["outcome"]["result"], "skipped");
    let node = h.world.store.get(&NODES, "", &guarded_node).expect("kept");
    assert_eq!(node["spec"].get("unschedulable"), None, "given back");
    assert!(h.world.store.get(&PODS, "shop", &guarded_pod).is_some());
    // Every other old node is replaced, the operator's cordoned one too.
    let now = workers(&h.world);
    for old in h.original_workers.keys().filter(|n| **n != guarded_node) {
        assert!(!now.contains_key(old), "{old} is still a node");
        assert_eq!(slot_of(old)["outcome"]["result"], "replaced", "{old}");
    }
    // The guarded node's replacement stays a Ready node of the pool, for
    // the run that replaces that node later to adopt: one node more.
    let kept = slot_of(&guarded_node)["newNode"]
        .as_str()
        .expect("the skipped slot's replacement")
        .to_string();
    assert!(now.contains_key(&kept), "{kept} serves on");
    assert_eq!(
        now.len(),
        WORKERS + 1,
        "the pool keeps its size, plus {kept}"
    );
    // The slot whose launch was terminated went on with its next attempt.
    assert_eq!(slot_of(&gone_slot_node)["attempts"], 2, "{report:#}");
    assert_eq!(
        h.world.cloud.instance(&gone.id.0).map(|i| i.state),
        Some(InstanceState::Terminated)
    );
    // Replacements: initialized by the cloud controller, each Node naming
    // its instance whatever form its kubelet registered.
    let instances = h.world.cloud.instances();
    for name in now.keys().filter(|n| !h.original_workers.contains_key(*n)) {
        let node = h.world.store.get(&NODES, "", name).unwrap();
        assert!(
            node.pointer("/metadata/labels/topology.kubernetes.io~1zone")
                .is_some(),
            "{name} initialized"
        );
        let provider_id = node["spec"]["providerID"].as_str().unwrap_or_default();
        assert!(
            instances
                .iter()
                .any(|i| !provider_id.is_empty() && provider_id.ends_with(&i.id.0)),
            "{name}: {provider_id}"
        );
    }
    // hostPath pods of the replaced nodes were evicted and listed.
    let listed: BTreeSet<String> = evicted(&report)
        .into_iter()
        .filter(|(_, reason)| reason == "hostPath")
        .map(|(pod, _)| pod)
        .collect();
    for (pod, node) in &host_path_pods {
        if *node != guarded_node && h.original_workers.contains_key(node) {
            assert!(listed.contains(&format!("shop/{pod}")), "{pod}: {listed:?}");
        }
    }
    // Nothing left: every live instance is a node's or a stranger's, the
    // strangers untouched; no token left; no workload short of a pod.
    let live: Vec<_> = instances
        .iter()
        .filter(|i| {
            !matches!(
                i.state,
                InstanceState::Terminated | InstanceState::ShuttingDown
            )
        })
        .collect();
    let nodes_now = h.world.store.list(&NODES, None, |_| true).0.len();
    assert_eq!(
        nodes_now,
        cluster_nodes_before + 1,
        "no node lost, only {kept} more"
    );
    assert_eq!(
        live.len(),
        nodes_now + stranger_tags.len(),
        "{:?}",
        live.iter().map(|i| &i.id.0).collect::<Vec<_>>()
    );
    for (id, tags) in &stranger_tags {
        let i = h.world.cloud.instance(&id.0).expect("stranger");
        assert_eq!(i.state, InstanceState::Running, "{id} untouched");
        assert_eq!(&i.tags, tags, "{id}'s tags untouched");
    }
    let (secrets, _) = h.world.store.list(&SECRETS, Some("kube-system"), |s| {
        s.pointer("/type") == Some(&json!("bootstrap.kubernetes.io/token"))
    });
    assert!(secrets.is_empty(), "bootstrap tokens left");
    let unready = unready_deployments(&h, Duration::from_secs(30)).await;
    assert!(unready.is_empty(), "workloads short of pods: {unready:?}");
}
