//! End to end: `kubesurge upgrade --to` (the real binary) on the emulated
//! world — control plane in place through the kubeadm stand-ins, workers by
//! surge at the point the plan chose — with the §8.3 observer attached.

use kubesurge_provider::tags;
use kubesurge_testworld::resources::NODES;
use serde_json::Value;

use super::rotation::{Spec, control_plane_versions, start, text, workers};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hops_in_place_and_workers_replaced_once() {
    let h = start(Spec {
        version: "v1.33.4",
        control_planes: 3,
        pools: vec![("general", 5), ("batch", 4)],
        max_surge: 2,
        ..Spec::default()
    })
    .await;
    let (nodes_before, _) = h.world.store.list(&NODES, None, |_| true);
    let control_planes: Vec<String> = nodes_before
        .iter()
        .filter(|n| {
            n.pointer("/metadata/labels/node-role.kubernetes.io~1control-plane")
                .is_some()
        })
        .map(|n| n["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(control_planes.len(), 3);

    let output = h
        .run(&["upgrade", "--to", "v1.35.3", "--yes", "-o", "json"])
        .await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    // The API server restarts during the hops: kube-client's warnings about
    // the watches it closes are said in a sentence, not in its own words.
    for internal in ["eof in poll", "Custom {", "UnexpectedEof"] {
        assert!(!all.contains(internal), "{internal:?} in\n{all}");
    }
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    assert_eq!(report["outcome"]["result"], "succeeded", "{report}");
    assert_eq!(
        report["hops"].as_array().unwrap().len(),
        2,
        "two hops: {report}"
    );
    assert_eq!(
        report["rotations"].as_array().unwrap().len(),
        2,
        "one rotation per pool, after the last hop: {report}"
    );

    // Per node, the scripts each step ran, with their exit status and
    // duration; and on each node the Events a `kubectl describe` shows.
    for hop in report["hops"].as_array().unwrap() {
        for step in hop["steps"].as_array().unwrap() {
            let commands = step["commands"].as_array().expect("commands");
            assert_eq!(
                commands.len(),
                usize::from(step["ran"] == true),
                "one script per step that ran: {step}"
            );
            for command in commands {
                assert_eq!(command["exitCode"], 0, "{command}");
                assert!(command["durationMs"].is_u64(), "{command}");
                assert!(
                    command["description"].as_str().unwrap().contains("v1.3"),
                    "{command}"
                );
            }
        }
    }
    let (events, _) = h
        .world
        .store
        .list(&kubesurge_testworld::resources::EVENTS, None, |_| true);
    for cp in &control_planes {
        let reasons: Vec<&str> = events
            .iter()
            .filter(|e| e["involvedObject"]["name"] == cp.as_str())
            .filter_map(|e| e["reason"].as_str())
            .collect();
        for reason in ["KubesurgeCommandStarted", "KubesurgeCommandSucceeded"] {
            assert!(reasons.contains(&reason), "{cp}: {reason} in {reasons:?}");
        }
    }

    // Control plane: same nodes, every component and kubelet at the target.
    for (pod, version) in control_plane_versions(&h.world) {
        assert_eq!(version, "v1.35.3", "{pod}");
    }
    for cp in &control_planes {
        let node = h
            .world
            .store
            .get(&NODES, "", cp)
            .expect("CP node kept, upgraded in place");
        assert_eq!(
            node["status"]["nodeInfo"]["kubeletVersion"], "v1.35.3",
            "{cp}"
        );
        assert_eq!(node["spec"].get("unschedulable"), None, "{cp} uncordoned");
    }
    // Workers: replaced exactly once, at the target.
    let now = workers(&h.world);
    assert_eq!(now.len(), 9);
    for name in now.keys() {
        assert!(
            !h.original_workers.contains_key(name),
            "{name} is an old worker"
        );
        let node = h.world.store.get(&NODES, "", name).unwrap();
        assert_eq!(node["status"]["nodeInfo"]["kubeletVersion"], "v1.35.3");
    }
    let launched = h
        .world
        .cloud
        .instances()
        .into_iter()
        .filter(|i| i.tag(tags::RUN).is_some())
        .count();
    assert_eq!(launched, 9, "each worker replaced exactly once");
    h.assert_converged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_of_a_downgrade_is_refused_with_exit_2() {
    let h = start(Spec {
        pools: vec![("general", 2)],
        workloads: false,
        ..Spec::default()
    })
    .await;
    let output = h.run(&["upgrade", "--to", "v1.34.0", "--yes"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("refused"), "{}", text(&output));
}

/// Scripts and the Terraform module read stdout as JSON whatever happened:
/// a dry run prints the plan, a cluster already at the target a report with
/// nothing done. Neither changes anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_and_nothing_to_do_still_print_json() {
    let h = start(Spec {
        pools: vec![("general", 2)],
        workloads: false,
        ..Spec::default()
    })
    .await;
    let output = h
        .run(&["upgrade", "--to", "v1.36.0", "--dry-run", "-o", "json"])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let plan: Value = serde_json::from_slice(&output.stdout).expect("the plan as JSON");
    assert_eq!(plan["hops"].as_array().map(Vec::len), Some(1), "{plan}");
    assert_eq!(
        control_plane_versions(&h.world).len(),
        3,
        "one CP node's components"
    );
    for (pod, version) in control_plane_versions(&h.world) {
        assert_eq!(version, "v1.35.3", "{pod}: a dry run changes nothing");
    }
    assert_eq!(workers(&h.world), h.original_workers);

    let output = h
        .run(&["upgrade", "--to", "v1.35.3", "--yes", "-o", "json"])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let report: Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    assert_eq!(report["target"], "v1.35.3", "{report}");
    assert_eq!(report["outcome"]["result"], "succeeded", "{report}");
    assert_eq!(report["hops"], serde_json::json!([]), "{report}");
    assert_eq!(report["rotations"], serde_json::json!([]), "{report}");
    assert_eq!(workers(&h.world), h.original_workers);
}

pub(crate) fn control_plane_spec() -> Spec {
    Spec {
        version: "v1.34.3",
        control_planes: 3,
        pools: vec![("general", 3)],
        max_surge: 1,
        ..Spec::default()
    }
}

/// The run of an upgrade whose `kubeadm upgrade apply` failed (injected):
/// exit 1, naming the step and quoting kubeadm.
pub fn assert_stopped_by_kubeadm_apply(output: &std::process::Output) {
    let all = text(output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(
        all.contains("kubeadm upgrade apply"),
        "names the step: {all}"
    );
    assert!(
        all.contains("couldn't upgrade control plane"),
        "quotes kubeadm: {all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_kubeadm_apply_stops_with_exit_1_and_its_output_touching_nothing_else() {
    let h = start(control_plane_spec()).await;
    h.world
        .cloud
        .with_faults(|f| f.fail_kubeadm_upgrade(Some("cp-1"), 1));
    let output = h.run(&["upgrade", "--to", "v1.35.3", "--yes"]).await;
    assert_stopped_by_kubeadm_apply(&output);
    for (pod, version) in control_plane_versions(&h.world) {
        assert_eq!(version, "v1.34.3", "{pod} untouched");
    }
    assert_eq!(workers(&h.world), h.original_workers, "workers untouched");
    let (nodes, _) = h.world.store.list(&NODES, None, |_| true);
    for node in nodes.iter() {
        assert_eq!(
            node["spec"].get("unschedulable"),
            None,
            "{} cordoned",
            node["metadata"]["name"]
        );
    }
    assert!(
        h.observer.violations().is_empty(),
        "{:?}",
        h.observer.violations()
    );
}

/// The `kubernetesVersion` kubeadm recorded in `kube-system/kubeadm-config`.
fn recorded_version(world: &kubesurge_testworld::world::World) -> String {
    let config = world
        .store
        .get(
            &kubesurge_testworld::resources::CONFIGMAPS,
            "kube-system",
            "kubeadm-config",
        )
        .expect("kubeadm-config");
    let text = config["data"]["ClusterConfiguration"]
        .as_str()
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("kubernetesVersion:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// `kubeadm upgrade apply` on cp-1 wrote the new manifests and died before
/// recording the version in kubeadm-config; the rerun must finish the apply
/// instead of sending `kubeadm upgrade node` (which writes the recorded,
/// old version) or calling the hop done.
async fn rerun_after_an_apply_that_never_recorded(control_planes: usize) {
    let h = start(Spec {
        control_planes,
        ..control_plane_spec()
    })
    .await;
    h.world.cloud.with_faults(|f| f.fail_kubeadm_upload("cp-1"));
    let output = h.run(&["upgrade", "--to", "v1.35.3", "--yes"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(
        all.contains("[upload-config] FATAL"),
        "quotes kubeadm: {all}"
    );
    assert_eq!(recorded_version(&h.world), "v1.34.3");

    let output = h.run(&["upgrade", "--to", "v1.35.3", "--yes"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "rerun: {all}");
    for (pod, version) in control_plane_versions(&h.world) {
        assert_eq!(version, "v1.35.3", "{pod}");
    }
    assert_eq!(
        recorded_version(&h.world),
        "v1.35.3",
        "the rerun finished the apply: {all}"
    );
    h.assert_converged();
}

// Before kubesurge read kubeadm-config, the rerun sent `kubeadm upgrade
// node` to cp-2, which (writing the recorded v1.34.3) the world refuses:
// every rerun failed the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_that_died_before_recording_its_version_is_finished_by_the_rerun() {
    rerun_after_an_apply_that_never_recorded(3).await;
}

// Before kubesurge read kubeadm-config, the rerun saw the only apiserver at
// the target, upgraded the kubelet and reported success with the cluster
// still recording v1.34.3, so the next minor's apply would refuse the jump.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_control_plane_whose_apply_died_before_recording_is_finished() {
    rerun_after_an_apply_that_never_recorded(1).await;
}

/// Whose control-plane pods run `version`, by node (`cp-1` → true).
fn nodes_at(world: &kubesurge_testworld::world::World, version: &str) -> Vec<(String, bool)> {
    ["cp-1", "cp-2", "cp-3"]
        .iter()
        .map(|node| {
            let at = control_plane_versions(world)
                .iter()
                .filter(|(pod, _)| pod.ends_with(&format!("-{node}")))
                .all(|(_, v)| v == version);
            (node.to_string(), at)
        })
        .collect()
}

/// An upgrade with `controlPlane.gateTimeout: 3s`.
async fn gated_control_plane() -> super::rotation::Harness {
    let h = start(control_plane_spec()).await;
    let config = std::fs::read_to_string(&h.config).expect("config");
    let gated = config.replace(
        "controlPlane:\n  exec: sim\n",
        "controlPlane:\n  exec: sim\n  gateTimeout: 3s\n",
    );
    assert_ne!(config, gated);
    std::fs::write(&h.config, gated).expect("config");
    h
}

/// cp-2's kube-apiserver at the target never becomes Ready (its own
/// /readyz fails) while the load balancer's /readyz, served by the others,
/// says ok. Before the gate read the static pods' readiness, the run went
/// on to cp-3 and reported success; now it stops at cp-2 naming what is
/// not Ready, and cp-3 is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_new_apiserver_never_becomes_ready_stops_the_hop_there() {
    let h = gated_control_plane().await;
    h.world
        .controllers
        .kubelets
        .fail_readiness_after_next_manifest("cp-2", "kube-apiserver");
    let output = h.run(&["upgrade", "--to", "v1.35.3", "--yes"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(
        all.contains("Ready after its upgrade: kube-apiserver on cp-2"),
        "{all}"
    );
    assert_eq!(
        nodes_at(&h.world, "v1.35.3"),
        [
            ("cp-1".to_string(), true),
            ("cp-2".to_string(), true),
            ("cp-3".to_string(), false)
        ],
        "{all}"
    );
    // Healthy again: the rerun finishes.
    h.world
        .controllers
        .kubelets
        .fail_readiness("cp-2", "kube-apiserver", false);
    let output = h.run(&["upgrade", "--to", "v1.35.3", "--yes"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    h.assert_converged();
}

/// An etcd member (cp-3's) is unhealthy: upgrading any other node would
/// restart a second member and lose quorum. Before the gate read etcd's
/// readiness, all three nodes were upgraded; now nothing is touched and the
/// refusal names the member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_etcd_member_stops_the_hop_before_any_node_is_touched() {
    let h = gated_control_plane().await;
    h.world
        .controllers
        .kubelets
        .fail_readiness("cp-3", "etcd", true);
    let output = h.run(&["upgrade", "--to", "v1.35.3", "--yes"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(
        all.contains("Ready before its upgrade: etcd on cp-3"),
        "{all}"
    );
    assert_eq!(
        nodes_at(&h.world, "v1.35.3"),
        [
            ("cp-1".to_string(), false),
            ("cp-2".to_string(), false),
            ("cp-3".to_string(), false)
        ],
        "{all}"
    );
}
