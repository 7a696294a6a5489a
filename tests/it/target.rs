//! "The target exists" (issue 15): `plan`, `upgrade` and `upgrade
//! --dry-run` refuse a target whose packages do not exist for some hop, or
//! a pre-release, with exit 2 before anything changes — no hop runs, not
//! even the ones whose packages exist.

use kubesurge_testworld::resources::{LEASES, NODES};
use kubesurge_testworld::world::World;

use super::rotation::{Harness, Spec, control_plane_versions, start, text, workers};

/// Every node's kubelet version, by name.
fn kubelets(world: &World) -> Vec<(String, String)> {
    let (nodes, _) = world.store.list(&NODES, None, |_| true);
    nodes
        .iter()
        .map(|n| {
            (
                n["metadata"]["name"].as_str().unwrap_or("").to_string(),
                n["status"]["nodeInfo"]["kubeletVersion"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect()
}

async fn two_control_planes() -> Harness {
    start(Spec {
        control_planes: 2,
        pools: vec![("general", 2)],
        workloads: false,
        ..Spec::default()
    })
    .await
}

/// Nothing changed: every component and kubelet at the world's version,
/// the same workers, no lock taken.
fn assert_untouched(h: &Harness) {
    for (pod, version) in control_plane_versions(&h.world) {
        assert_eq!(version, "v1.35.3", "{pod} untouched");
    }
    for (node, version) in kubelets(&h.world) {
        assert_eq!(version, "v1.35.3", "{node}'s kubelet untouched");
    }
    assert_eq!(workers(&h.world), h.original_workers, "workers untouched");
    assert!(
        h.world
            .store
            .get(&LEASES, "kube-system", "kubesurge")
            .is_none(),
        "the run lock was never taken"
    );
}

/// The typo: v1.99.0 from v1.35.3 upgraded the control plane to
/// v1.36.0 and v1.37.0 before failing at v1.38.0. Now nothing runs, and
/// the refusal names the first missing piece: hop 3, its node, kubeadm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_without_packages_is_refused_before_the_first_hop() {
    let h = two_control_planes().await;
    for args in [
        &["upgrade", "--to", "v1.99.0", "--yes"][..],
        &["upgrade", "--to", "v1.99.0", "--dry-run"][..],
        &["plan", "--to", "v1.99.0"][..],
    ] {
        let output = h.run(args).await;
        let all = text(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {all}");
        for part in [
            "hop 3 (to v1.38.0)",
            "control-plane node cp-1",
            "kubeadm 1.38.0",
            "pkgs.k8s.io has no repository for Kubernetes 1.38",
            "before any change",
        ] {
            assert!(all.contains(part), "{args:?}: {part:?} in {all}");
        }
        assert_untouched(&h);
    }
}

/// v1.37.31 from v1.35.3: hop 1 (to v1.36) has its packages, hop 2 does
/// not (the repository of v1.37 has no patch 31). Refused before hop 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_missing_for_one_hop_only_is_refused_before_the_first() {
    let h = two_control_planes().await;
    let output = h.run(&["upgrade", "--to", "v1.37.31", "--yes"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(2), "{all}");
    assert!(all.contains("hop 2 (to v1.37.31)"), "{all}");
    assert!(all.contains("kubeadm 1.37.31"), "{all}");
    assert!(
        all.contains("core:/stable:/v1.37/deb/Packages does not offer kubeadm 1.37.31"),
        "{all}"
    );
    assert_untouched(&h);
}

/// `v1.36.0-rc.1` was read as v1.36.0 (another version): refused as a
/// pre-release, by every command that takes a target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_release_target_is_refused_as_such() {
    let h = two_control_planes().await;
    for args in [
        &["upgrade", "--to", "v1.36.0-rc.1", "--yes"][..],
        &["upgrade", "--to", "v1.36.0-rc.1", "--dry-run"][..],
        &["plan", "--to", "v1.36.0-rc.1"][..],
    ] {
        let output = h.run(args).await;
        let all = text(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {all}");
        assert!(all.contains("is a pre-release (rc.1)"), "{args:?}: {all}");
        assert_untouched(&h);
    }
}

/// A target that exists passes the check and the dry run shows the hop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_exists_passes() {
    let h = two_control_planes().await;
    let output = h.run(&["upgrade", "--to", "v1.36.2", "--dry-run"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    assert!(!all.contains("not checked"), "{all}");
    assert_untouched(&h);
}

/// `controlPlane.exec: local` ran every control-plane command on the
/// machine kubesurge runs on, whichever node it was meant for: nothing
/// checked that this machine is that node. Now the configuration names the
/// node, and its kubelet's report of its machine (machine id, boot id) must
/// be this machine's, and it must be the only control-plane node — else
/// exit 2 before anything changes (not even the package query runs here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_local_is_refused_unless_this_machine_is_the_only_control_plane_node() {
    let local = |h: &Harness| {
        let config = std::fs::read_to_string(&h.config).expect("config");
        let local = config.replace(
            "controlPlane:\n  exec: sim\n",
            "controlPlane:\n  exec: local\n  node: cp-1\n",
        );
        assert_ne!(config, local, "the harness's config names exec: sim");
        std::fs::write(&h.config, local).expect("write config");
    };
    // One control-plane node, a simulated machine: not this one.
    let h = start(Spec {
        control_planes: 1,
        pools: vec![("general", 2)],
        workloads: false,
        ..Spec::default()
    })
    .await;
    local(&h);
    let output = h.run(&["upgrade", "--to", "v1.36.2", "--yes"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(2), "{all}");
    let expected = if std::path::Path::new("/etc/machine-id").exists() {
        "controlPlane.exec: local: this machine is not control-plane node cp-1 (machine id"
    } else {
        "controlPlane.exec: local: this machine cannot be checked against controlPlane.node"
    };
    assert!(all.contains(expected), "{all}");
    assert!(all.contains("controlPlane.exec: ssh or ssm"), "{all}");
    assert_untouched(&h);

    // Two control-plane nodes: local cannot reach the other.
    let h = two_control_planes().await;
    local(&h);
    let output = h.run(&["upgrade", "--to", "v1.36.2", "--yes"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(2), "{all}");
    let this_machine_readable = std::path::Path::new("/etc/machine-id").exists();
    if this_machine_readable {
        assert!(
            all.contains("the cluster has other control-plane nodes (cp-2) besides cp-1"),
            "{all}"
        );
    }
    assert_untouched(&h);
}
