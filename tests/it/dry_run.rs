//! `kubesurge upgrade --dry-run` through the binary: every mutation the
//! upgrade would make, control-plane steps node by node and each worker's
//! slot actions, as `rotate --dry-run` shows them — and none made.

use serde_json::Value;

use super::rotation::{Spec, control_plane_versions, mutations, start, text, workers};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_dry_run_lists_every_mutation_and_makes_none() {
    let h = start(Spec {
        pools: vec![("general", 2)],
        workloads: false,
        ..Spec::default()
    })
    .await;
    let control_plane: Vec<String> = control_plane_versions(&h.world)
        .into_iter()
        .map(|(pod, _)| pod)
        .collect();
    let before = mutations(&h);

    let output = h.run(&["upgrade", "--to", "v1.36.0", "--dry-run"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        stdout.starts_with("DRY RUN of upgrade to v1.36.0: 1 control-plane hop and 2 worker(s) left to do; nothing was changed."),
        "{stdout}"
    );
    let would: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_once(". would ").map(|(_, rest)| rest))
        .collect();
    let position = |needle: &str| {
        would
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} among\n{stdout}"))
    };
    // The control plane first, components then kubelet, then the workers.
    let apply = position("kubeadm upgrade apply v1.36.0");
    let cordon = position("cordon ");
    let kubelet = position("install kubelet and kubectl v1.36.0");
    assert!(apply < cordon && cordon < kubelet, "{stdout}");
    for worker in h.original_workers.keys() {
        let launch = position(&format!("to replace {worker}"));
        let terminate = position(&format!("terminate the instance of {worker}"));
        assert!(kubelet < launch && launch < terminate, "{stdout}");
    }

    // The same as JSON: the plan, every mutation, each slot's actions.
    let output = h
        .run(&["upgrade", "--to", "v1.36.0", "--dry-run", "-o", "json"])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let document: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(
        document["apiVersion"], "kubesurge.io/v1alpha1",
        "{document:#}"
    );
    assert_eq!(document["kind"], "UpgradePlan", "{document:#}");
    assert_eq!(
        document["hops"].as_array().map(Vec::len),
        Some(1),
        "{document:#}"
    );
    assert_eq!(
        document["would"].as_array().map(Vec::len),
        Some(would.len()),
        "{document:#}"
    );
    let slots = document["rotations"][0]["slots"].as_array().expect("slots");
    assert_eq!(slots.len(), 2, "{document:#}");
    for slot in slots {
        let actions: Vec<&str> = slot["actions"]
            .as_array()
            .expect("actions")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            actions.contains(&"launch") && actions.contains(&"terminate"),
            "{slot:#}"
        );
    }

    // -o name: the workers the upgrade would replace.
    let output = h
        .run(&["upgrade", "--to", "v1.36.0", "--dry-run", "-o", "name"])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let mut names: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    names.sort();
    let expected: Vec<String> = h
        .original_workers
        .keys()
        .map(|w| format!("node/{w}"))
        .collect();
    assert_eq!(names, expected);

    // Nothing changed.
    assert_eq!(mutations(&h), before, "a dry run changed the cluster");
    assert_eq!(workers(&h.world), h.original_workers);
    for (pod, version) in control_plane_versions(&h.world) {
        assert_eq!(version, "v1.35.3", "{pod}");
    }
    assert!(!control_plane.is_empty());
}
