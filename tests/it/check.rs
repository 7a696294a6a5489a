//! `kubesurge check` (the real binary) on the emulated world: a line per
//! check, each failing line with its fix; exit 0 when all pass, 1 when one
//! does not; and no mutating call, to the cluster or the cloud.

use std::time::Duration;

use kubesurge_sim::cloud::api::Action;
use kubesurge_sim::resources::PDBS;
use serde_json::{Value, json};

use super::rotation::{Harness, Spec, start, text};

async fn world() -> Harness {
    start(Spec {
        pools: vec![("general", 3)],
        ..Spec::default()
    })
    .await
}

/// `check -o json` with `args`: its exit code and its lines.
async fn check(h: &Harness, args: &[&str]) -> (Option<i32>, Vec<Value>, String) {
    let mut all = vec!["check", "-o", "json"];
    all.extend_from_slice(args);
    let output = h.run(&all).await;
    let said = text(&output);
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("a JSON report ({e}): {said}"));
    assert_eq!(report["kind"], "CheckReport", "{report}");
    let lines = report["lines"].as_array().cloned().unwrap_or_default();
    (output.status.code(), lines, said)
}

/// The lines of `check` that did not pass.
fn failing(lines: &[Value]) -> Vec<&Value> {
    lines.iter().filter(|l| l["status"] != "pass").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_world_a_run_would_work_in_passes_every_check_and_changes_nothing() {
    let h = world().await;
    let before = h.world.apiserver.request_counts();
    let cloud_before = h.world.cloud.counters();
    let (code, lines, said) = check(&h, &["--to", "v1.36.2"]).await;
    assert_eq!(code, Some(0), "{said}");
    assert!(failing(&lines).is_empty(), "{said}");
    for name in ["plan", "packages", "image", "mapping", "disruption"] {
        assert!(
            lines.iter().any(|l| l["check"] == name),
            "a {name} line: {said}"
        );
    }
    // No mutating Kubernetes request, no mutating cloud call.
    let after = h.world.apiserver.request_counts();
    for verb in ["create", "update", "patch", "delete", "deletecollection"] {
        assert_eq!(
            after.verb(verb),
            before.verb(verb),
            "check sent a {verb} request: {:?}",
            after.by_verb_resource
        );
    }
    let cloud_after = h.world.cloud.counters();
    for action in [Action::RunInstances, Action::TerminateInstances] {
        assert_eq!(
            cloud_after.get(&action),
            cloud_before.get(&action),
            "check called {action:?}"
        );
    }
    // The table says the same.
    let output = h.run(&["check", "--to", "v1.36.2"]).await;
    let table = text(&output);
    assert_eq!(output.status.code(), Some(0), "{table}");
    assert!(table.contains("every check passed"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_without_packages_for_one_hop_fails_the_packages_line() {
    let h = world().await;
    let (code, lines, said) = check(&h, &["--to", "v1.37.31"]).await;
    assert_eq!(code, Some(1), "{said}");
    let failed = failing(&lines);
    let line = failed
        .iter()
        .find(|l| l["check"] == "packages")
        .unwrap_or_else(|| panic!("a failing packages line: {said}"));
    let message = line["message"].as_str().unwrap();
    assert!(message.contains("hop 2 (to v1.37.31)"), "{message}");
    assert!(message.contains("kubeadm 1.37.31"), "{message}");
    assert!(
        line["fix"]
            .as_str()
            .unwrap()
            .contains("choose a --to whose packages pkgs.k8s.io publishes"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_fails_the_image_line() {
    let h = world().await;
    assert!(h.world.cloud.remove_images("v1.36.2") > 0);
    let (code, lines, said) = check(&h, &["--to", "v1.36.2"]).await;
    assert_eq!(code, Some(1), "{said}");
    let failed = failing(&lines);
    assert_eq!(failed.len(), 1, "only the image line fails: {said}");
    assert_eq!(failed[0]["check"], "image", "{said}");
    assert_eq!(failed[0]["subject"], "pool general", "{said}");
    assert!(
        failed[0]["message"]
            .as_str()
            .unwrap()
            .contains("no worker image for v1.36.2"),
        "{said}"
    );
    assert!(
        failed[0]["fix"]
            .as_str()
            .unwrap()
            .contains("publish an image for v1.36.2"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmappable_node_fails_the_mapping_line() {
    let h = world().await;
    let node = h.original_workers.keys().next().expect("a worker").clone();
    let machine = h.world.cloud.machine_of_node(&node).expect("its machine");
    h.world
        .cloud
        .edit_tags(&machine.instance_id, |tags| {
            tags.remove("kubesurge.io/cluster");
        })
        .expect("untag");
    let (code, lines, said) = check(&h, &["--to", "v1.36.2"]).await;
    assert_eq!(code, Some(1), "{said}");
    let failed = failing(&lines);
    assert_eq!(failed.len(), 1, "only the mapping line fails: {said}");
    let line = failed[0];
    assert_eq!(line["check"], "mapping", "{said}");
    assert_eq!(line["subject"], format!("node {node}"), "{said}");
    assert!(
        line["message"]
            .as_str()
            .unwrap()
            .contains("has no kubesurge.io/cluster tag"),
        "{said}"
    );
    assert!(
        line["fix"].as_str().unwrap().contains(&format!(
            "tag instance {} kubesurge.io/cluster=e2e",
            machine.instance_id
        )),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pdb_that_blocks_a_drain_now_is_named() {
    let h = world().await;
    // cache runs 2 replicas: minAvailable 2 allows no disruption.
    h.world
        .store
        .create(
            &PDBS,
            "shop",
            json!({
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": {"name": "cache-guard", "namespace": "shop"},
                "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "cache"}}}
            }),
        )
        .expect("pdb");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let pdb = h.world.store.get(&PDBS, "shop", "cache-guard");
        if pdb
            .as_ref()
            .and_then(|p| p.pointer("/status/currentHealthy"))
            .and_then(Value::as_i64)
            == Some(2)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the disruption controller counts the PDB: {pdb:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, lines, said) = check(&h, &["--to", "v1.36.2"]).await;
    assert_eq!(code, Some(1), "{said}");
    let failed = failing(&lines);
    assert!(!failed.is_empty(), "{said}");
    for line in &failed {
        assert_eq!(line["check"], "disruption", "{said}");
        assert_eq!(line["subject"], "pdb shop/cache-guard", "{said}");
        let message = line["message"].as_str().unwrap();
        assert!(
            message.contains("allows no disruption now") && message.contains("pod shop/cache-"),
            "{message}"
        );
        assert!(
            line["fix"]
                .as_str()
                .unwrap()
                .contains("relax its minAvailable"),
            "{line}"
        );
    }
}
