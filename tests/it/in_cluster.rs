//! An in-cluster run (the scheduled CronJob) on a worker it replaces
//! (issue 13, case 6): its own node goes last, alone, and its own eviction
//! stops it cleanly so that the Job's next pod continues the run.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kubesurge_testworld::resources::{DEPLOYMENTS, NODES, PODS};
use kubesurge_testworld::store::EventType;
use serde_json::{Value, json};

use crate::rotation::{Spec, lock_holder, run_record, run_to_end, start, text, workers};

/// What the store saw, in order: an old node's first phase mark, an old
/// node deleted, the run's own pod being deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Started(String),
    Deleted(String),
    OwnPodLeaving,
}

/// The run's own pod: one replica of `kube-system/kubesurge`, as the
/// CronJob's Job runs it (a Deployment stands for the Job here: only the
/// pod's eviction matters; `jobs.rs` covers a Job's evicted pod).
fn own_pod_deployment(h: &crate::rotation::Harness) {
    h.world
        .store
        .create(
            &DEPLOYMENTS,
            "kube-system",
            json!({
                "metadata": {"name": "kubesurge"},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "kubesurge"}},
                    "template": {
                        "metadata": {"labels": {"app": "kubesurge"}},
                        "spec": {"containers": [{"name": "kubesurge", "image": "kubesurge:test"}]}
                    }
                }
            }),
        )
        .expect("Deployment");
}

/// The node the own pod runs on, once it runs.
async fn own_pod_node(h: &crate::rotation::Harness, not: Option<&str>) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (pods, _) = h.world.store.list(&PODS, Some("kube-system"), |p| {
            p.pointer("/metadata/labels/app") == Some(&json!("kubesurge"))
                && p.pointer("/status/phase") == Some(&json!("Running"))
                && p.pointer("/metadata/deletionTimestamp").is_none()
        });
        if let Some(node) = pods
            .iter()
            .filter_map(|p| p["spec"]["nodeName"].as_str())
            .find(|n| Some(*n) != not)
        {
            return node.to_string();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the own pod never ran"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The run in a pod on a worker it replaces: every other old node is
/// replaced before its own node's slot starts; when that drain evicts the
/// run's pod the kubelet sends SIGTERM
/// (https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#pod-termination),
/// the run stops at once recording where it is, releases the lock and
/// exits 5; the Job's next pod, on another node, continues it to the end.
///
/// Before: the own node was queued like any other (drained while other
/// slots were still in flight), and SIGTERM killed the process where it
/// stood, leaving the lock held until it expired and the run recorded as
/// running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_cluster_run_replaces_its_own_node_last_and_survives_its_eviction() {
    let h = start(Spec {
        pools: vec![("general", 4)],
        max_surge: 2,
        ..Spec::default()
    })
    .await;
    own_pod_deployment(&h);
    let own = own_pod_node(&h, None).await;
    assert!(h.original_workers.contains_key(&own), "{own} is a worker");

    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let leaving = Arc::new(tokio::sync::Notify::new());
    {
        let seen = seen.clone();
        let leaving = leaving.clone();
        let originals = h.original_workers.clone();
        h.world.store.observe(move |e| {
            let mut seen = seen.lock().unwrap();
            if std::ptr::eq(e.resource, &NODES) && originals.contains_key(&e.name) {
                let phase = |v: &Value| {
                    v.pointer("/metadata/annotations/kubesurge.io~1phase")
                        .is_some()
                };
                if e.event_type == EventType::Deleted {
                    seen.push(Seen::Deleted(e.name.clone()));
                } else if phase(&e.object) && !e.previous.as_ref().is_some_and(|p| phase(p)) {
                    seen.push(Seen::Started(e.name.clone()));
                }
            }
            if std::ptr::eq(e.resource, &PODS)
                && e.object.pointer("/metadata/labels/app") == Some(&json!("kubesurge"))
                && e.object.pointer("/spec/nodeName").is_some()
                && (e.event_type == EventType::Deleted
                    || e.object.pointer("/metadata/deletionTimestamp").is_some())
                && !seen.contains(&Seen::OwnPodLeaving)
            {
                seen.push(Seen::OwnPodLeaving);
                leaving.notify_one();
            }
        });
    }

    let mut first = h.command(&["rotate", "--all", "--yes", "-o", "json"]);
    first.env("KUBESURGE_NODE_NAME", &own);
    let child = first.spawn().expect("the run starts");
    let pid = child.id().expect("pid");
    let output = tokio::select! {
        _ = leaving.notified() => {
            // The kubelet stops the evicted pod's container.
            let kill = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .expect("kill runs");
            assert!(kill.success());
            tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
                .await
                .expect("the run ends within the pod's grace period")
                .expect("output")
        }
        _ = tokio::time::sleep(Duration::from_secs(150)) => panic!("the own pod was never evicted"),
    };
    let all = text(&output);
    assert_eq!(output.status.code(), Some(5), "{all}");
    assert!(all.contains("interrupted by SIGTERM"), "{all}");
    assert_eq!(lock_holder(&h), None, "the lock is released on the way out");
    let run = run_record(&h);
    assert_eq!(run["state"], "stopped", "{run}");
    // Every other old node was gone before the own node's slot started.
    let order = seen.lock().unwrap().clone();
    let own_started = order
        .iter()
        .position(|s| *s == Seen::Started(own.clone()))
        .unwrap_or_else(|| panic!("{own} never started: {order:?}"));
    for other in h.original_workers.keys().filter(|n| **n != own) {
        let deleted = order
            .iter()
            .position(|s| *s == Seen::Deleted(other.clone()))
            .unwrap_or_else(|| panic!("{other} was not replaced first: {order:?}"));
        assert!(deleted < own_started, "{other} after {own}: {order:?}");
    }

    // The Job's next pod, on another node, runs the same command.
    let next = own_pod_node(&h, Some(&own)).await;
    let mut second = h.command(&["rotate", "--all", "--yes"]);
    second.env("KUBESURGE_NODE_NAME", &next);
    let output = run_to_end(second).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    assert!(!workers(&h.world).contains_key(&own), "{own} replaced");
    h.assert_converged();
    let pods: BTreeMap<String, String> = h
        .world
        .store
        .list(&PODS, Some("kube-system"), |p| {
            p.pointer("/metadata/labels/app") == Some(&json!("kubesurge"))
        })
        .0
        .iter()
        .filter_map(|p| {
            Some((
                p["metadata"]["name"].as_str()?.to_string(),
                p["spec"]["nodeName"].as_str()?.to_string(),
            ))
        })
        .collect();
    assert!(
        pods.values().all(|n| *n != own),
        "the run's pod left its node: {pods:?}"
    );
}
