//! The control-plane upgrade scripts against simulated control-plane
//! machines: real bash, through the sim's `NodeExec`, with stand-ins for
//! kubeadm, apt-get, dnf, systemctl and kubectl that change the world as the
//! real commands would — and refuse misuse with the real error text, which
//! the rendered scripts never trigger.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use kubesurge::controlplane::packages;
use kubesurge::controlplane::script::{NodeFacts, Step, render};
use kubesurge::version::KubeVersion;
use kubesurge_provider::{ExecError, ExecOutput, ExecRequest, ExecTarget, OutputSink};
use kubesurge_testworld::Timing;
use kubesurge_testworld::cloud::{PackageManager, standins};
use kubesurge_testworld::resources::{CONFIGMAPS, DAEMONSETS, DEPLOYMENTS, NODES, PODS};
use kubesurge_testworld::world::{PoolSpec, World, WorldConfig, WorldOptions, coredns_image};
use serde_json::Value;

const FROM: &str = "v1.34.3";
const TO: KubeVersion = KubeVersion::new(1, 35, 2);
const COMPONENTS: [&str; 3] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

async fn world_with(control_planes: usize, workers: usize, options: WorldOptions) -> World {
    let pools = if workers == 0 {
        Vec::new()
    } else {
        vec![PoolSpec {
            name: "general".into(),
            workers,
        }]
    };
    let world = World::start_with(
        WorldConfig {
            cluster_name: "cp".into(),
            control_planes,
            pools,
            zones: 3,
            version: FROM.into(),
            timing: Timing::fast(),
            workloads: false,
        },
        options,
    )
    .await
    .expect("world starts");
    world
        .wait_ready(Duration::from_secs(60))
        .await
        .expect("world ready");
    world
}

async fn world(control_planes: usize) -> World {
    world_with(control_planes, 0, WorldOptions::default()).await
}

fn target(node: &str) -> ExecTarget {
    ExecTarget {
        node: node.into(),
        instance: None,
        address: None,
    }
}

async fn exec(world: &World, node: &str, script: &str) -> Result<ExecOutput, ExecError> {
    world
        .node_exec()
        .run(
            &target(node),
            &ExecRequest {
                script: script.into(),
                description: "test".into(),
                timeout: Duration::from_secs(60),
            },
            &(),
        )
        .await
}

async fn run(world: &World, node: &str, script: &str) -> ExecOutput {
    exec(world, node, script)
        .await
        .unwrap_or_else(|e| panic!("no outcome on {node}: {e}"))
}

async fn run_ok(world: &World, node: &str, script: &str) -> ExecOutput {
    let out = run(world, node, script).await;
    assert!(
        out.success(),
        "script on {node} exited {}:\n{}",
        out.exit_code,
        out.tail(40)
    );
    out
}

async fn run_failing(world: &World, node: &str, script: &str) -> ExecOutput {
    let out = run(world, node, script).await;
    assert!(
        !out.success(),
        "script on {node} succeeded but should not have:\n{}",
        out.tail(40)
    );
    out
}

fn script(step: Step, node: &str) -> String {
    render(step, &NodeFacts { name: node.into() })
}

fn apply() -> Step {
    Step::UpgradeControlPlane {
        version: TO,
        first: true,
    }
}

fn node_step() -> Step {
    Step::UpgradeControlPlane {
        version: TO,
        first: false,
    }
}

fn kubelet_step() -> Step {
    Step::UpgradeKubelet { version: TO }
}

/// A raw script: the commands a person might type, with the output of the
/// failing one.
fn commands(lines: &[&str]) -> String {
    format!("set -euo pipefail\n{}\n", lines.join("\n"))
}

/// Point the node's apt source at a minor, as a hand edit would.
fn apt_repo(minor: u64) -> String {
    format!(
        "printf 'deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/v1.{minor}/deb/ /\\n' >\"$KUBESURGE_ROOT/etc/apt/sources.list.d/kubernetes.list\""
    )
}

fn image_version(image: &str) -> String {
    image.rsplit_once(':').map(|(_, t)| t).unwrap_or("").into()
}

/// The version of a static pod on `node`, from its mirror pod.
fn static_pod_version(world: &World, component: &str, node: &str) -> String {
    let pod = world
        .store
        .get(&PODS, "kube-system", &format!("{component}-{node}"))
        .unwrap_or_else(|| panic!("no mirror pod {component}-{node}"));
    image_version(
        pod.pointer("/spec/containers/0/image")
            .and_then(Value::as_str)
            .unwrap_or(""),
    )
}

fn control_plane_version(world: &World, node: &str) -> Vec<String> {
    COMPONENTS
        .iter()
        .map(|c| static_pod_version(world, c, node))
        .collect()
}

fn kubelet_version(world: &World, node: &str) -> String {
    world
        .store
        .get(&NODES, "", node)
        .and_then(|n| {
            n.pointer("/status/nodeInfo/kubeletVersion")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default()
}

fn cluster_configuration(world: &World) -> String {
    world
        .store
        .get(&CONFIGMAPS, "kube-system", "kubeadm-config")
        .and_then(|c| {
            c.pointer("/data/ClusterConfiguration")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default()
}

fn workload_image(world: &World, deployment: bool, name: &str) -> String {
    let resource = if deployment {
        &DEPLOYMENTS
    } else {
        &DAEMONSETS
    };
    world
        .store
        .get(resource, "kube-system", name)
        .and_then(|w| {
            w.pointer("/spec/template/spec/containers/0/image")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default()
}

/// `/version` over HTTP, as a client sees it.
async fn served_version(world: &World) -> String {
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(&world.kubeconfig_yaml()).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("client config");
    let client = kube::Client::try_from(config).expect("client");
    client
        .apiserver_version()
        .await
        .expect("/version")
        .git_version
}

fn instance_of(world: &World, node: &str) -> String {
    world
        .cloud
        .machine_of_node(node)
        .unwrap_or_else(|| panic!("no machine runs {node}"))
        .instance_id
}

fn files(world: &World, node: &str) -> BTreeMap<String, Vec<u8>> {
    world.cloud.node_files(&instance_of(world, node))
}

/// Mirror pods of the control plane by name, with their UIDs.
fn mirror_pod_uids(world: &World) -> BTreeMap<String, String> {
    let (pods, _) = world.store.list(&PODS, Some("kube-system"), |p| {
        p.pointer("/metadata/annotations/kubernetes.io~1config.mirror")
            .is_some()
    });
    pods.iter()
        .map(|p| {
            let field = |f: &str| {
                p.pointer(f)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            (field("/metadata/name"), field("/metadata/uid"))
        })
        .collect()
}

fn installed(world: &World, node: &str, package: &str) -> String {
    let root = world
        .cloud
        .node_root(&instance_of(world, node))
        .expect("a control-plane machine has a filesystem");
    std::fs::read_to_string(root.join("var/lib/kubesurge-sim/installed").join(package))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_control_plane_nodes_upgrade_in_place_and_a_rerun_changes_nothing() {
    let world = world(3).await;
    let from = FROM.to_string();
    let to = TO.to_string();

    // Pass 1: the control plane, node by node.
    let out = run_ok(&world, "cp-1", &script(apply(), "cp-1")).await;
    assert!(
        out.stdout
            .contains("kubesurge: running kubeadm upgrade apply v1.35.2")
    );
    assert!(out.stdout.contains(
        "[upgrade/addon] Skipping upgrade of addons because control plane instances [cp-2 cp-3] have not been upgraded"
    ));
    assert_eq!(control_plane_version(&world, "cp-1"), vec![to.clone(); 3]);
    assert_eq!(control_plane_version(&world, "cp-2"), vec![from.clone(); 3]);
    assert!(cluster_configuration(&world).contains("kubernetesVersion: v1.35.2\n"));
    // Clients are served by the oldest apiserver.
    assert_eq!(served_version(&world).await, from);
    assert_eq!(
        workload_image(&world, false, "kube-proxy"),
        format!("registry.k8s.io/kube-proxy:{from}")
    );

    run_ok(&world, "cp-2", &script(node_step(), "cp-2")).await;
    assert_eq!(control_plane_version(&world, "cp-2"), vec![to.clone(); 3]);
    assert_eq!(
        workload_image(&world, false, "kube-proxy"),
        format!("registry.k8s.io/kube-proxy:{from}"),
        "addons wait for the last control-plane node"
    );
    let out = run_ok(&world, "cp-3", &script(node_step(), "cp-3")).await;
    assert!(
        out.stdout
            .contains("[addons] Applied essential addon: kube-proxy")
    );
    assert_eq!(control_plane_version(&world, "cp-3"), vec![to.clone(); 3]);
    assert_eq!(
        workload_image(&world, false, "kube-proxy"),
        format!("registry.k8s.io/kube-proxy:{to}")
    );
    assert_eq!(workload_image(&world, true, "coredns"), coredns_image(35));
    assert_eq!(served_version(&world).await, to);
    // No kubelet moved while an apiserver was old.
    for node in ["cp-1", "cp-2", "cp-3"] {
        assert_eq!(kubelet_version(&world, node), from);
    }

    // Pass 2: the kubelets, node by node.
    for node in ["cp-1", "cp-2", "cp-3"] {
        let out = run_ok(&world, node, &script(kubelet_step(), node)).await;
        assert!(out.stdout.contains("kubesurge: restarting the kubelet"));
        assert_eq!(kubelet_version(&world, node), to);
        let machine = world.cloud.machine_of_node(node).expect("machine");
        assert_eq!(machine.kubelet_version.as_deref(), Some(to.as_str()));
        assert_eq!(machine.kubeadm_version.as_deref(), Some(to.as_str()));
        assert_eq!(installed(&world, node, "kubectl"), "1.35.2-1.1");
    }
    let etcd = static_pod_version(&world, "etcd", "cp-1");
    assert_eq!(etcd, "3.5.16-0", "kubeadm keeps etcd within these minors");

    // A second run of every script: exit 0, nothing changes.
    let names = ["cp-1", "cp-2", "cp-3"];
    let before_files: Vec<_> = names.iter().map(|n| files(&world, n)).collect();
    let before_pods = mirror_pod_uids(&world);
    let before_events = world.cloud.control_events();
    let before_config = cluster_configuration(&world);
    let out = run_ok(&world, "cp-1", &script(apply(), "cp-1")).await;
    assert!(
        out.stdout.contains("skipping kubeadm upgrade apply"),
        "{}",
        out.stdout
    );
    for node in ["cp-2", "cp-3"] {
        let out = run_ok(&world, node, &script(node_step(), node)).await;
        assert!(
            out.stdout.contains("skipping kubeadm upgrade node"),
            "{}",
            out.stdout
        );
    }
    for node in names {
        let out = run_ok(&world, node, &script(kubelet_step(), node)).await;
        assert!(out.stdout.contains("not restarting it"), "{}", out.stdout);
    }
    let after_files: Vec<_> = names.iter().map(|n| files(&world, n)).collect();
    for (i, node) in names.iter().enumerate() {
        assert!(
            before_files[i] == after_files[i],
            "the second run changed files on {node}"
        );
    }
    assert_eq!(mirror_pod_uids(&world), before_pods);
    assert_eq!(world.cloud.control_events(), before_events);
    assert_eq!(cluster_configuration(&world), before_config);
    assert_eq!(served_version(&world).await, to);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_at_the_wrong_minor_has_no_target_version_and_holds_are_kept() {
    let world = world(1).await;
    // The repository still serves v1.34.
    let out = run_failing(
        &world,
        "cp-1",
        &commands(&[
            "apt-mark unhold kubeadm",
            "apt-get update",
            "apt-get install -y kubeadm='1.35.2-*'",
        ]),
    )
    .await;
    assert_eq!(out.exit_code, 100);
    assert!(
        out.stderr
            .contains("E: Version '1.35.2-*' for 'kubeadm' was not found"),
        "{}",
        out.stderr
    );
    // At the right minor, a held package is not changed.
    let out = run_failing(
        &world,
        "cp-1",
        &commands(&[
            "apt-mark hold kubeadm",
            &apt_repo(35),
            "apt-get update",
            "apt-get install -y kubeadm='1.35.2-*'",
        ]),
    )
    .await;
    assert!(out.stderr.contains(
        "E: Held packages were changed and -y was used without --allow-change-held-packages."
    ));
    // A changed repository without apt-get update still offers the old one.
    let out = run_failing(
        &world,
        "cp-1",
        &commands(&[
            &apt_repo(36),
            "apt-mark unhold kubeadm",
            "apt-get install -y kubeadm='1.36.0-*'",
        ]),
    )
    .await;
    assert!(
        out.stderr
            .contains("E: Version '1.36.0-*' for 'kubeadm' was not found")
    );
    assert_eq!(installed(&world, "cp-1", "kubeadm"), "1.34.3-1.1");
    assert!(world.cloud.control_events().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeadm_older_than_the_target_is_refused() {
    let world = world(1).await;
    let out = run_failing(
        &world,
        "cp-1",
        &commands(&["kubeadm upgrade apply v1.35.2 -y"]),
    )
    .await;
    assert!(out.stderr.contains(
        "Specified version to upgrade to \"v1.35.2\" is at least one minor release higher than the kubeadm minor release (1.34). Such an upgrade is not supported"
    ), "{}", out.stderr);
    let out = run_failing(
        &world,
        "cp-1",
        &commands(&[
            &apt_repo(35),
            "apt-get update",
            "apt-mark unhold kubeadm",
            "apt-get install -y kubeadm='1.35.0-*'",
            "kubeadm version -o short",
            "kubeadm upgrade apply v1.35.2 -y",
        ]),
    )
    .await;
    assert!(out.stdout.contains("v1.35.0\n"));
    assert!(out.stderr.contains(
        "Specified version to upgrade to \"v1.35.2\" is higher than the kubeadm version \"v1.35.0\". Upgrade kubeadm first using the tool you used to install kubeadm"
    ), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("Can be bypassed if you pass the --force flag")
    );
    assert_eq!(
        control_plane_version(&world, "cp-1"),
        vec![FROM.to_string(); 3]
    );
    assert!(world.cloud.control_events().is_empty());
    assert!(cluster_configuration(&world).contains("kubernetesVersion: v1.34.3\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipping_a_minor_is_refused() {
    let world = world(1).await;
    let out = run_failing(
        &world,
        "cp-1",
        &commands(&[
            &apt_repo(36),
            "apt-get update",
            "apt-mark unhold kubeadm",
            "apt-get install -y kubeadm='1.36.0-*'",
            "kubeadm upgrade apply v1.36.0 -y",
        ]),
    )
    .await;
    assert!(out.stderr.contains(
        "Specified version to upgrade to \"v1.36.0\" is too high; kubeadm can upgrade only 1 minor version at a time"
    ), "{}", out.stderr);
    assert_eq!(
        control_plane_version(&world, "cp-1"),
        vec![FROM.to_string(); 3]
    );
    assert_eq!(served_version(&world).await, FROM);
    assert!(world.cloud.control_events().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubelet_before_its_nodes_control_plane_is_refused() {
    let world = world(1).await;
    // The rendered kubelet step refuses before touching a package...
    let out = run_failing(&world, "cp-1", &script(kubelet_step(), "cp-1")).await;
    assert!(out.stderr.contains(
        "kubesurge: error: the control plane of cp-1 runs v1.34.3: upgrade it to v1.35.2 before its kubelet"
    ), "{}", out.stderr);
    assert!(!out.stderr.contains("kubesurge-sim: refusing"));
    // ...and the world refuses the package itself when asked directly.
    let out = run_failing(
        &world,
        "cp-1",
        &commands(&[
            &apt_repo(35),
            "apt-get update",
            "apt-mark unhold kubelet",
            "apt-get install -y kubelet='1.35.2-*'",
        ]),
    )
    .await;
    assert!(out.stderr.contains(
        "refusing kubelet 1.35.2-1.1: kubelet upgraded before its node's control plane (kube-apiserver on this node runs v1.34.3)"
    ), "{}", out.stderr);
    assert_eq!(installed(&world, "cp-1", "kubelet"), "1.34.3-1.1");
    assert_eq!(kubelet_version(&world, "cp-1"), FROM);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_node_before_apply_is_refused() {
    let world = world(2).await;
    let out = run_failing(&world, "cp-2", &script(node_step(), "cp-2")).await;
    assert!(out.stderr.contains(
        "[upgrade/control-plane] FATAL: the cluster's kubernetesVersion is v1.34.3 but this kubeadm is v1.35.2"
    ), "{}", out.stderr);
    assert_eq!(
        control_plane_version(&world, "cp-2"),
        vec![FROM.to_string(); 3]
    );
    assert!(world.cloud.control_events().is_empty());
    // Once apply ran on the first node, the same script succeeds.
    run_ok(&world, "cp-1", &script(apply(), "cp-1")).await;
    run_ok(&world, "cp-2", &script(node_step(), "cp-2")).await;
    assert_eq!(
        control_plane_version(&world, "cp-2"),
        vec![TO.to_string(); 3]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_kubeadm_failure_fails_the_step_and_leaves_the_node_as_it_was() {
    let world = world(1).await;
    world
        .cloud
        .with_faults(|f| f.fail_kubeadm_upgrade(Some("cp-1"), 1));
    let out = run_failing(&world, "cp-1", &script(apply(), "cp-1")).await;
    assert!(out.stderr.contains(
        "[upgrade/apply] FATAL: couldn't upgrade control plane. kubeadm has tried to recover everything into the earlier state."
    ), "{}", out.stderr);
    assert_eq!(
        control_plane_version(&world, "cp-1"),
        vec![FROM.to_string(); 3]
    );
    assert!(cluster_configuration(&world).contains("kubernetesVersion: v1.34.3\n"));
    assert!(world.cloud.control_events().is_empty());
    // The rerun finishes the step.
    run_ok(&world, "cp-1", &script(apply(), "cp-1")).await;
    assert_eq!(
        control_plane_version(&world, "cp-1"),
        vec![TO.to_string(); 3]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dnf_machine_follows_the_rpm_path() {
    let world = world_with(
        2,
        0,
        WorldOptions {
            package_manager_mix: true,
            ..WorldOptions::default()
        },
    )
    .await;
    let cp2 = world.cloud.machine_of_node("cp-2").expect("cp-2");
    assert_eq!(cp2.package_manager, Some(PackageManager::Dnf));
    assert_eq!(
        world
            .cloud
            .machine_of_node("cp-1")
            .and_then(|m| m.package_manager),
        Some(PackageManager::Apt)
    );
    // cp-2 still uses the removed yum.kubernetes.io repository.
    let root = world.cloud.node_root(&cp2.instance_id).expect("root");
    std::fs::write(
        root.join("etc/yum.repos.d/kubernetes.repo"),
        "[kubernetes]\nname=Kubernetes\n\
         baseurl=https://packages.cloud.google.com/yum/repos/kubernetes-el7-x86_64\n\
         enabled=1\ngpgcheck=1\nexclude=kubelet kubeadm kubectl\n",
    )
    .expect("legacy repository");
    let out = run_failing(
        &world,
        "cp-2",
        &commands(&["dnf install -y 'kubeadm-1.34.3-*' --disableexcludes=kubernetes"]),
    )
    .await;
    assert!(
        out.stderr.contains(
            "Error: Failed to download metadata for repo 'kubernetes': Cannot download repomd.xml"
        ),
        "{}",
        out.stderr
    );
    run_ok(&world, "cp-1", &script(apply(), "cp-1")).await;
    let out = run_ok(&world, "cp-2", &script(node_step(), "cp-2")).await;
    assert!(
        out.stdout.contains("kubesurge: package manager: dnf"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(
        "kubesurge: migrating /etc/yum.repos.d/kubernetes.repo from the removed yum.kubernetes.io repository to pkgs.k8s.io"
    ), "{}", out.stdout);
    assert!(
        out.stdout.contains("  kubeadm-1.35.2-150500.1.1.x86_64"),
        "{}",
        out.stdout
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/yum.repos.d/kubernetes.repo")).expect("repo"),
        "[kubernetes]\n\
         name=Kubernetes\n\
         baseurl=https://pkgs.k8s.io/core:/stable:/v1.35/rpm/\n\
         enabled=1\n\
         gpgcheck=1\n\
         gpgkey=https://pkgs.k8s.io/core:/stable:/v1.35/rpm/repodata/repomd.xml.key\n\
         exclude=kubelet kubeadm kubectl cri-tools kubernetes-cni\n"
    );
    assert!(!root.join("etc/apt").exists());
    for node in ["cp-1", "cp-2"] {
        run_ok(&world, node, &script(kubelet_step(), node)).await;
        assert_eq!(kubelet_version(&world, node), TO.to_string());
    }
    assert_eq!(installed(&world, "cp-2", "kubelet"), "1.35.2-150500.1.1");
    // The exclude line keeps the packages away from a plain install.
    let out = run_failing(
        &world,
        "cp-2",
        &commands(&["dnf install -y 'kubelet-1.35.1-*'"]),
    )
    .await;
    assert!(out.stderr.contains(
        "All matches were filtered out by exclude filtering for argument: kubelet-1.35.1-*"
    ));
    assert!(
        out.stderr
            .contains("Error: Unable to find a match: kubelet-1.35.1-*")
    );
    // The rpm machine has no apt.
    let out = run_failing(&world, "cp-2", &commands(&["apt-get update"])).await;
    assert_eq!(out.exit_code, 127);
}

/// The read-only package query (`controlplane::packages`) on an apt and a
/// dnf machine: it finds what the repositories offer — the same contents
/// apt-get and dnf install from — says what they do not, and leaves every
/// file of the node (sources, package lists, installed packages) as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_package_query_reads_the_repositories_and_changes_nothing() {
    let world = world_with(
        2,
        0,
        WorldOptions {
            package_manager_mix: true,
            ..WorldOptions::default()
        },
    )
    .await;
    let v36 = KubeVersion::new(1, 36, 4);
    let v37_missing = KubeVersion::new(1, 37, 31);
    let v99 = KubeVersion::new(1, 99, 0);
    let wanted = BTreeMap::from([
        (
            v36,
            vec![packages::KUBEADM, packages::KUBELET, packages::KUBECTL],
        ),
        (v37_missing, vec![packages::KUBEADM]),
        (v99, vec![packages::KUBEADM]),
    ]);
    let query = packages::render_query(&wanted);
    for (node, manager) in [("cp-1", "apt-get"), ("cp-2", "dnf")] {
        let before = files(&world, node);
        let out = run_ok(&world, node, &query).await;
        assert!(
            out.stdout
                .contains(&format!("kubesurge: package manager: {manager}")),
            "{}",
            out.stdout
        );
        let answers = packages::read_answers(&out.stdout, &wanted);
        for package in [packages::KUBEADM, packages::KUBELET, packages::KUBECTL] {
            assert_eq!(
                answers[&(v36, package)],
                packages::Availability::Available,
                "{node}: {package}\n{}",
                out.stdout
            );
        }
        assert!(
            matches!(
                &answers[&(v37_missing, packages::KUBEADM)],
                packages::Availability::Missing { detail } if detail.contains("does not offer kubeadm 1.37.31")
            ),
            "{node}: {:?}",
            answers
        );
        assert!(
            matches!(
                &answers[&(v99, packages::KUBEADM)],
                packages::Availability::Missing { detail }
                    if detail.contains("pkgs.k8s.io has no repository for Kubernetes 1.99")
            ),
            "{node}: {:?}",
            answers
        );
        assert_eq!(
            files(&world, node),
            before,
            "{node}: the query changed a file"
        );
    }
    // dnf repoquery offers nothing for a version no repository has, and
    // fails as dnf does on a repository that does not exist.
    let out = run_ok(
        &world,
        "cp-2",
        &commands(&[
            "dnf repoquery --quiet --repofrompath=q,https://pkgs.k8s.io/core:/stable:/v1.37/rpm/ --repo=q 'kubeadm-1.37.31-*'",
        ]),
    )
    .await;
    assert_eq!(out.stdout, "", "{}", out.stderr);
    let out = run_failing(
        &world,
        "cp-2",
        &commands(&[
            "dnf repoquery --quiet --repofrompath=q,https://pkgs.k8s.io/core:/stable:/v1.99/rpm/ --repo=q kubeadm",
        ]),
    )
    .await;
    assert!(
        out.stderr
            .contains("Error: Failed to download metadata for repo 'q'"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_the_removed_apt_kubernetes_io_repository_is_migrated() {
    let world = world(1).await;
    let root = world
        .cloud
        .node_root(&instance_of(&world, "cp-1"))
        .expect("root");
    let apt = root.join("etc/apt");
    std::fs::write(
        apt.join("sources.list.d/kubernetes.list"),
        "deb https://apt.kubernetes.io/ kubernetes-xenial main\n",
    )
    .expect("legacy source");
    std::fs::write(
        apt.join("sources.list"),
        "deb http://deb.debian.org/debian bookworm main\n\
         deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/v1.33/deb/ /\n",
    )
    .expect("sources.list");
    std::fs::remove_file(apt.join("keyrings/kubernetes-apt-keyring.gpg")).expect("keyring");
    // apt itself fails on the removed repository.
    let out = run_failing(&world, "cp-1", &commands(&["apt-get update"])).await;
    assert_eq!(out.exit_code, 100);
    assert!(out.stderr.contains(
        "E: The repository 'https://apt.kubernetes.io/ kubernetes-xenial Release' does not have a Release file."
    ), "{}", out.stderr);

    let out = run_ok(&world, "cp-1", &script(apply(), "cp-1")).await;
    assert!(out.stdout.contains(
        "kubesurge: migrating /etc/apt/sources.list.d/kubernetes.list from the removed apt.kubernetes.io repository to pkgs.k8s.io"
    ), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("kubesurge: installing the signing key of pkgs.k8s.io")
    );
    assert_eq!(
        std::fs::read_to_string(apt.join("sources.list.d/kubernetes.list")).expect("list"),
        "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/v1.35/deb/ /\n"
    );
    assert_eq!(
        std::fs::read_to_string(apt.join("sources.list")).expect("sources.list"),
        "deb http://deb.debian.org/debian bookworm main\n\
         # disabled by kubesurge: deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/v1.33/deb/ /\n"
    );
    assert!(apt.join("keyrings/kubernetes-apt-keyring.gpg").is_file());
    assert_eq!(
        control_plane_version(&world, "cp-1"),
        vec![TO.to_string(); 3]
    );
}

/// Collects streamed lines.
#[derive(Default)]
struct Lines(Mutex<Vec<String>>);

impl OutputSink for Lines {
    fn line(&self, node: &str, line: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(format!("{node}: {line}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_exec_streams_output_reports_exit_codes_and_honours_timeouts() {
    let world = world_with(1, 1, WorldOptions::default()).await;
    let node_exec = world.node_exec();
    let sink = Lines::default();
    let instance = instance_of(&world, "cp-1");
    let out = node_exec
        .run(
            &ExecTarget {
                node: "cp-1".into(),
                instance: Some(kubesurge_provider::InstanceId(instance)),
                address: None,
            },
            &ExecRequest {
                script: "echo one\necho two >&2\ncommand -v dnf || echo no-dnf\ntest -n \"$KUBESURGE_ROOT\"\nexit 7\n".into(),
                description: "test".into(),
                timeout: Duration::from_secs(30),
            },
            &sink,
        )
        .await
        .expect("ran");
    assert_eq!(out.exit_code, 7);
    assert_eq!(out.stdout, "one\nno-dnf\n");
    assert_eq!(out.stderr, "two\n");
    let lines = sink.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(lines.contains(&"cp-1: one".to_string()));
    assert!(lines.contains(&"cp-1: two".to_string()));

    let started = std::time::Instant::now();
    let timed_out = node_exec
        .run(
            &target("cp-1"),
            &ExecRequest {
                script: "sleep 30\n".into(),
                description: "test".into(),
                timeout: Duration::from_millis(300),
            },
            &(),
        )
        .await;
    assert!(
        matches!(timed_out, Err(ExecError::Timeout { ref node, .. }) if node == "cp-1"),
        "{timed_out:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    for node in ["general-1", "nowhere"] {
        let refused = exec(&world, node, "true\n").await;
        assert!(
            matches!(refused, Err(ExecError::Unreachable { .. })),
            "{node}: {refused:?}"
        );
    }
}

/// shellcheck on every golden copy of the rendered scripts and on the
/// stand-ins' files, as they are in the tree (tests/run.sh installs
/// shellcheck from apt). A stand-in's file sources `prelude.sh` for
/// shellcheck, which follows it (`--external-sources`), so each file is
/// checked with the prelude's variables and functions in view.
#[test]
fn golden_scripts_and_stand_ins_pass_shellcheck() {
    let version = Command::new("shellcheck").arg("--version").output();
    assert!(
        version.as_ref().is_ok_and(|o| o.status.success()),
        "shellcheck is missing: install it (apt-get install shellcheck; tests/run.sh does) \
         to check the control-plane scripts"
    );
    let shell_files = crate::scripts::shell_files;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let golden_dir = root.join("src/controlplane/testdata");
    let golden = shell_files(&golden_dir);
    assert!(
        golden.len() >= 3,
        "expected a golden copy of every variant in {}",
        golden_dir.display()
    );
    let stand_ins_dir = root.join("testworld/src/cloud/standins");
    let stand_ins = shell_files(&stand_ins_dir);
    for file in
        std::iter::once("prelude.sh").chain(standins::all("/usr/bin/bash").iter().map(|s| s.file))
    {
        assert!(
            stand_ins.contains(&stand_ins_dir.join(file)),
            "{file} is not among the stand-ins checked in {}",
            stand_ins_dir.display()
        );
    }
    let checked: Vec<_> = golden.into_iter().chain(stand_ins).collect();
    let mut failures = Vec::new();
    for path in &checked {
        let out = Command::new("shellcheck")
            .args(["--shell=bash", "--severity=style", "--external-sources"])
            .arg(path)
            .output()
            .expect("shellcheck runs");
        if !out.status.success() {
            failures.push(format!(
                "{}:\n{}",
                path.display(),
                String::from_utf8_lossy(&out.stdout)
            ));
        }
    }
    assert!(failures.is_empty(), "shellcheck:\n{}", failures.join("\n"));
}
