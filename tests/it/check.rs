//! `kubesurge check` (the real binary) on the emulated world: a line per
//! check, each failing line with its fix; exit 0 when all pass, 1 when one
//! does not; and no mutating call, to the cluster or the cloud. On the
//! simulated cloud, and on moto where EC2 itself answers.

use std::time::Duration;

use kubesurge_sim::api::Action;
use kubesurge_testworld::moto::ec2::Params;
use kubesurge_testworld::resources::{
    CLUSTERROLEBINDINGS, CLUSTERROLES, NODES, PDBS, SERVICEACCOUNTS,
};
use serde_json::{Value, json};

use super::moto_env::{self, MotoSpec};
use super::rotation::{Harness, Spec, kubesurge, run_to_end, start, text};

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
    for name in [
        "plan",
        "reachability",
        "packages",
        "image",
        "mapping",
        "disruption",
        "rbac",
    ] {
        assert!(
            lines.iter().any(|l| l["check"] == name),
            "a {name} line: {said}"
        );
    }
    // No mutating Kubernetes request, no mutating cloud call. A
    // SelfSubjectAccessReview is a create that answers and stores nothing
    // (the run's permissions are asked with them); nothing else is sent.
    let after = h.world.apiserver.request_counts();
    const REVIEWS: &str = "selfsubjectaccessreviews";
    assert!(
        after.get("create", REVIEWS) > before.get("create", REVIEWS),
        "the run's permissions are asked: {:?}",
        after.by_verb_resource
    );
    for verb in ["create", "update", "patch", "delete", "deletecollection"] {
        let reviews = |c: &kubesurge_testworld::apiserver::RequestCounts| {
            if verb == "create" {
                c.get(verb, REVIEWS)
            } else {
                0
            }
        };
        assert_eq!(
            after.verb(verb) - reviews(&after),
            before.verb(verb) - reviews(&before),
            "check sent a {verb} request: {:?}",
            after.by_verb_resource
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l["check"] == "rbac" && l["status"] == "pass"),
        "an rbac line: {said}"
    );
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

/// A subnet a replacement would launch into has no free address: the room
/// line fails naming it and its fix, and check changes nothing in the
/// cloud (the proxy's log holds only reads and dry runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_subnet_fails_the_room_line() {
    let env = moto_env::start(MotoSpec {
        cluster: "e2e-room",
        pools: &[("general", 3)],
        auto_scaling: &[],
        zones: 3,
        max_surge: 1,
        hook: None,
    })
    .await;
    let old = &env.world.seeded.workers["general-1"];
    let subnet = old.subnet.clone().expect("a subnet");
    // Every free address of the subnet taken by one network interface
    // (its primary address and secondaries), straight to moto.
    let described = env
        .world
        .ec2
        .call(
            "DescribeSubnets",
            Params::new().set("SubnetId.1", subnet.clone()),
        )
        .await
        .expect("describe subnet");
    let free: u32 = described.items("subnetSet")[0]
        .text_at("availableIpAddressCount")
        .and_then(|n| n.parse().ok())
        .expect("a count");
    env.world
        .ec2
        .call(
            "CreateNetworkInterface",
            Params::new()
                .set("SubnetId", subnet.clone())
                .set("SecondaryPrivateIpAddressCount", (free - 1).to_string()),
        )
        .await
        .expect("an interface filling the subnet");
    env.proxy.reset_calls();
    let output = env.run(Some(&env.config), &["check", "-o", "json"]).await;
    let said = moto_env::text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let lines = report["lines"].as_array().cloned().unwrap_or_default();
    let failed = failing(&lines);
    assert_eq!(failed.len(), 1, "only the full subnet fails: {said}");
    let line = failed[0];
    assert_eq!(line["check"], "room", "{said}");
    assert_eq!(
        line["subject"],
        format!("pool general: subnet {subnet} ({})", old.zone),
        "{said}"
    );
    assert!(
        line["message"]
            .as_str()
            .unwrap()
            .contains("has 0 free address(es)"),
        "{said}"
    );
    assert!(
        line["fix"]
            .as_str()
            .unwrap()
            .contains(&format!("free addresses in subnet {subnet}")),
        "{said}"
    );
    // The other subnets have room, and say so.
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["check"] == "room"
                && l["status"] == "pass"
                && l["subject"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(": subnet "))
            .count(),
        2,
        "{said}"
    );
    env.assert_no_mutating_call();
    assert!(env.proxy.count("DescribeSubnets") > 0);
    env.finish();
}

/// The account's On-Demand vCPU quota leaves no room for the surge: the
/// room line fails naming the quota, what runs, what the surge needs and
/// the value to ask for; with room, it passes saying so. Nothing changes
/// in the cloud.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vcpu_quota_without_room_for_the_surge_fails_the_room_line() {
    let env = moto_env::start(MotoSpec {
        cluster: "e2e-quota",
        pools: &[("general", 3)],
        auto_scaling: &[],
        zones: 1,
        max_surge: 2,
        hook: None,
    })
    .await;
    let quota_line = |lines: &[Value]| {
        lines
            .iter()
            .find(|l| {
                l["check"] == "room"
                    && l["subject"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("vCPU quota L-1216C47A")
            })
            .cloned()
    };
    // The world's workers (t3.medium, 2 vCPUs each) and its control
    // plane run in the account; moto counts its own instances too.
    let output = env.run(Some(&env.config), &["check", "-o", "json"]).await;
    let said = moto_env::text(&output);
    assert_eq!(output.status.code(), Some(0), "{said}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let line = quota_line(report["lines"].as_array().expect("lines"))
        .unwrap_or_else(|| panic!("a quota line: {said}"));
    assert_eq!(line["status"], "pass", "{line}");
    let message = line["message"].as_str().unwrap_or_default().to_string();
    let used: u64 = message
        .split(" of ")
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("what runs: {message}"));
    assert!(used >= 6, "the three workers count: {message}");
    assert!(
        message.contains("adds 4 (2 × t3.medium, 2 each)"),
        "{message}"
    );

    // Room for one more t3.medium, not two.
    env.proxy.set_quota("L-1216C47A", (used + 3) as f64);
    env.proxy.reset_calls();
    let output = env.run(Some(&env.config), &["check", "-o", "json"]).await;
    let said = moto_env::text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let lines = report["lines"].as_array().cloned().unwrap_or_default();
    let failed = failing(&lines);
    assert_eq!(failed.len(), 1, "only the quota fails: {said}");
    let line = quota_line(&lines).expect("a quota line");
    assert_eq!(line["status"], "fail", "{line}");
    assert!(
        line["message"]
            .as_str()
            .unwrap_or_default()
            .contains("needs 4 more"),
        "{line}"
    );
    assert!(
        line["fix"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("L-1216C47A (Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances) to at least {}", used + 4)),
        "{line}"
    );
    env.assert_no_mutating_call();
    assert!(env.proxy.count("GetServiceQuota") > 0);
    env.finish();
}

/// The credentials may not evict: the rbac line fails naming the request
/// and the fix, before any run would have stopped at its first drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_eviction_fails_the_rbac_line() {
    let h = world().await;
    let store = &h.world.store;
    store
        .create(
            &SERVICEACCOUNTS,
            "kube-system",
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": "narrow", "namespace": "kube-system"}}),
        )
        .expect("service account");
    // Everything a run touches, but the eviction subresource.
    store
        .create(
            &CLUSTERROLES,
            "",
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "narrow"},
            "rules": [{
                "apiGroups": ["", "apps", "policy", "storage.k8s.io", "coordination.k8s.io"],
                "resources": ["nodes", "pods", "secrets", "configmaps", "events", "daemonsets",
                              "deployments", "poddisruptionbudgets", "volumeattachments", "leases",
                              "persistentvolumeclaims", "persistentvolumes"],
                "verbs": ["*"]
            }]}),
        )
        .expect("cluster role");
    store
        .create(
            &CLUSTERROLEBINDINGS,
            "",
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                   "metadata": {"name": "narrow"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "narrow"},
                   "subjects": [{"kind": "ServiceAccount", "name": "narrow", "namespace": "kube-system"}]}),
        )
        .expect("binding");
    let account = h._dir.path().join("narrow.kubeconfig");
    std::fs::write(
        &account,
        h.world
            .apiserver
            .service_account_kubeconfig("kube-system", "narrow", 3600)
            .expect("a token"),
    )
    .expect("kubeconfig");
    let output = run_to_end(kubesurge(
        &account,
        &h.config,
        &["check", "--to", "v1.36.2", "-o", "json"],
    ))
    .await;
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let lines = report["lines"].as_array().cloned().unwrap_or_default();
    let failed = failing(&lines);
    assert_eq!(failed.len(), 1, "only the eviction is denied: {said}");
    assert_eq!(failed[0]["check"], "rbac", "{said}");
    assert!(
        failed[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("denied: create pods/eviction (cluster-wide)"),
        "{said}"
    );
    assert!(
        failed[0]["fix"]
            .as_str()
            .unwrap()
            .contains("grant the credentials kubesurge runs with `create pods/eviction"),
        "{said}"
    );
}

/// A control-plane node scripts cannot reach: its reachability line fails
/// naming it and the fix, before any hop would have started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_control_plane_node_fails_the_reachability_line() {
    let h = world().await;
    let (nodes, _) = h.world.store.list(&NODES, None, |n| {
        n.pointer("/metadata/labels")
            .and_then(|l| l.get("node-role.kubernetes.io/control-plane"))
            .is_some()
    });
    let cp = nodes[0]["metadata"]["name"]
        .as_str()
        .expect("a control-plane node")
        .to_string();
    // Its providerID names a machine that is not there.
    h.world
        .store
        .modify(&NODES, "", &cp, |node| {
            let id = node["spec"]["providerID"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let (prefix, _) = id.rsplit_once('/').unwrap_or(("", ""));
            node["spec"]["providerID"] = json!(format!("{prefix}/i-0gone"));
            Ok(())
        })
        .expect("edit the node");
    let (code, lines, said) = check(&h, &["--to", "v1.36.2"]).await;
    assert_eq!(code, Some(1), "{said}");
    let failed = failing(&lines);
    let line = failed
        .iter()
        .find(|l| l["check"] == "reachability")
        .unwrap_or_else(|| panic!("a failing reachability line: {said}"));
    assert_eq!(line["status"], "fail", "{said}");
    assert_eq!(line["subject"], format!("node {cp}"), "{said}");
    assert!(
        line["message"]
            .as_str()
            .unwrap()
            .contains(&format!("cannot reach {cp}")),
        "{said}"
    );
    assert!(
        line["fix"]
            .as_str()
            .unwrap()
            .contains(&format!("make {cp} reachable through controlPlane.exec")),
        "{said}"
    );
    // The packages could not be asked either; nothing else fails.
    for other in &failed {
        assert!(
            other["check"] == "reachability" || other["check"] == "packages",
            "{said}"
        );
    }
}
