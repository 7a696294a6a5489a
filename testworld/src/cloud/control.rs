//! The control endpoint: what the stand-ins on a machine ask the world to
//! do, as the real commands would do it to a cluster.
//!
//! `POST /v1/control/<instance>/<action>` with one argument per body line;
//! the answer is `1 <line>` (stdout), `2 <line>` (stderr) and `exit <code>`.
//!
//! - `kubeadm upgrade apply vX.Y.Z` and `kubeadm upgrade node`: kubeadm's
//!   version policy and preflight, then this node's static pods rewritten
//!   (apiserver, controller-manager, scheduler; etcd stays), its apiserver
//!   away for `timing.apiserver_restart` while it restarts (the world has
//!   one API endpoint, so the whole API goes away), `/version` at the
//!   oldest apiserver, `kubeadm-config` uploaded (apply), and kube-proxy
//!   and CoreDNS upgraded by whichever run finds every control-plane node
//!   at the target (kubeadm ≥ 1.28 waits for the last one).
//! - `restart-kubelet` (`systemctl restart kubelet`): the node's kubelet
//!   restarts at the installed kubelet package's version.
//! - `kubectl get`: configmaps and nodes from the store, failing as kubectl
//!   does while the apiserver is away.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::Shared;
use super::kubeadm::{self, Version};
use super::machine::MachineRole;
use super::noderoot::{self, CONTROL_PLANE_COMPONENTS};
use crate::apiserver::ApiServerHandle;
use crate::resources::{CONFIGMAPS, DAEMONSETS, DEPLOYMENTS, NODES, Resource};
use crate::store::{Store, StoreError};

/// The cluster the cloud's control-plane machines belong to.
#[derive(Clone)]
pub struct ClusterLink {
    pub store: Arc<Store>,
    pub apiserver: ApiServerHandle,
}

/// A change a command on a machine made to the world, in order. Tests use
/// the log to show that a second run of a script changes nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlEvent {
    pub instance_id: String,
    pub node: String,
    /// `kube-apiserver manifest → v1.35.2`, `kubelet restarted at v1.35.2`.
    pub change: String,
}

/// The answer to a control call.
#[derive(Debug, Default)]
pub(crate) struct Reply {
    lines: Vec<(u8, String)>,
    code: i32,
}

impl Reply {
    fn out(&mut self, text: impl AsRef<str>) {
        for line in text.as_ref().split('\n') {
            self.lines.push((1, line.to_string()));
        }
    }

    fn err(&mut self, text: impl AsRef<str>) {
        for line in text.as_ref().split('\n') {
            self.lines.push((2, line.to_string()));
        }
    }

    /// Fail with `code` after printing `text` on stderr.
    fn fail(mut self, code: i32, text: impl AsRef<str>) -> Reply {
        self.err(text);
        self.code = code;
        self
    }

    fn failure(code: i32, text: impl AsRef<str>) -> Reply {
        Reply::default().fail(code, text)
    }

    /// The wire form the stand-ins read.
    pub(crate) fn render(&self) -> String {
        let mut body = String::new();
        for (stream, line) in &self.lines {
            body.push_str(&format!("{stream} {line}\n"));
        }
        body.push_str(&format!("exit {}\n", self.code));
        body
    }
}

/// A machine with a filesystem, as the control endpoint sees it.
#[derive(Clone, Debug)]
struct Node {
    id: String,
    name: String,
    root: PathBuf,
}

fn node_of(shared: &Shared, id: &str) -> Option<Node> {
    let layout = shared.roots.existing()?;
    let inner = shared.lock();
    let machine = inner.machines.get(id)?;
    machine.package_manager?;
    Some(Node {
        id: id.to_string(),
        name: machine.node_name.clone()?,
        root: layout.root(id),
    })
}

/// The control-plane machines that are not terminated, in launch order.
fn control_plane_nodes(shared: &Shared) -> Vec<Node> {
    let Some(layout) = shared.roots.existing() else {
        return Vec::new();
    };
    let inner = shared.lock();
    inner
        .cloud
        .instances()
        .filter(|r| !r.state.is_going_away())
        .filter_map(|r| {
            let m = inner.machines.get(&r.id)?;
            (m.role == MachineRole::ControlPlane && m.package_manager.is_some()).then(|| Node {
                id: r.id.clone(),
                name: m.node_name.clone().unwrap_or_default(),
                root: layout.root(&r.id),
            })
        })
        .collect()
}

fn record(shared: &Shared, node: &Node, change: String) {
    tracing::debug!(node = %node.name, %change, "control-plane machine changed the world");
    shared.lock().control_log.push(ControlEvent {
        instance_id: node.id.clone(),
        node: node.name.clone(),
        change,
    });
}

/// Serve one control call from a stand-in on machine `id`.
pub(crate) async fn handle(shared: &Arc<Shared>, id: &str, action: &str, args: &[String]) -> Reply {
    let Some(node) = node_of(shared, id) else {
        return Reply::failure(1, format!("kubesurge-sim: no machine {id} runs scripts"));
    };
    match action {
        "kubeadm" => kubeadm_command(shared, &node, args).await,
        "kubectl" => kubectl(shared, &node, args),
        "restart-kubelet" => restart_kubelet(shared, &node),
        other => Reply::failure(1, format!("kubesurge-sim: unknown control action {other}")),
    }
}

enum Mode {
    Apply {
        target: Version,
        yes: bool,
        force: bool,
        ignore_preflight: Vec<String>,
    },
    Node,
}

async fn kubeadm_command(shared: &Arc<Shared>, node: &Node, args: &[String]) -> Reply {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["upgrade", "apply", rest @ ..] => match parse_apply(rest) {
            Ok(mode) => upgrade(shared, node, mode).await,
            Err(reply) => reply,
        },
        ["upgrade", "node", rest @ ..] => {
            if let Some(flag) = rest.iter().find(|f| !is_ignored_flag(f)) {
                return Reply::failure(1, format!("unknown flag: {flag}"));
            }
            upgrade(shared, node, Mode::Node).await
        }
        ["upgrade", other, ..] => Reply::failure(
            1,
            format!("kubesurge-sim: kubeadm upgrade {other} is not simulated"),
        ),
        [other, ..] => Reply::failure(
            1,
            format!("unknown command \"{other}\" for \"kubeadm\"\nRun 'kubeadm --help' for usage."),
        ),
        [] => Reply::failure(1, "kubesurge-sim: kubeadm without a command"),
    }
}

/// Flags that change nothing kubeadm does in the world.
fn is_ignored_flag(flag: &str) -> bool {
    ["--etcd-upgrade=", "--certificate-renewal=", "--v=", "-v="]
        .iter()
        .any(|p| flag.starts_with(p))
}

fn parse_apply(rest: &[&str]) -> Result<Mode, Reply> {
    let (mut yes, mut force, mut ignore, mut version) = (false, false, Vec::new(), None);
    for word in rest {
        match *word {
            "-y" | "--yes" => yes = true,
            // --force also implies the non-interactive mode.
            "-f" | "--force" => (force, yes) = (true, true),
            w if w.starts_with("--ignore-preflight-errors=") => ignore.extend(
                w["--ignore-preflight-errors=".len()..]
                    .split(',')
                    .map(|s| s.to_ascii_lowercase()),
            ),
            w if is_ignored_flag(w) => {}
            w if w.starts_with('-') => return Err(Reply::failure(1, format!("unknown flag: {w}"))),
            w if version.is_none() => version = Some(w),
            w => {
                return Err(Reply::failure(
                    1,
                    format!("unexpected argument {w:?}: kubeadm upgrade apply takes one version"),
                ));
            }
        }
    }
    let Some(text) = version else {
        return Err(Reply::failure(
            1,
            "[upgrade/version] FATAL: missing version argument",
        ));
    };
    let target = Version::parse(text).ok_or_else(|| {
        Reply::failure(
            1,
            format!("[upgrade/version] FATAL: unable to parse version {text:?}"),
        )
    })?;
    Ok(Mode::Apply {
        target,
        yes,
        force,
        ignore_preflight: ignore,
    })
}

fn connection_refused(apiserver: &ApiServerHandle, what: &str) -> String {
    let addr = apiserver.addr();
    format!(
        "{what}: Get \"https://{addr}/api/v1/namespaces/kube-system/configmaps/kubeadm-config?timeout=10s\": dial tcp {addr}: connect: connection refused"
    )
}

async fn upgrade(shared: &Arc<Shared>, node: &Node, mode: Mode) -> Reply {
    let Some(link) = shared.config.cluster.clone() else {
        return Reply::failure(
            1,
            "kubesurge-sim: this cloud has no cluster for kubeadm to upgrade",
        );
    };
    // kubeadm runs on one node at a time in this world: each run reads and
    // writes the cluster as a whole.
    let _one_at_a_time = shared.kubeadm_lock.lock().await;
    let mut r = Reply::default();
    let Some(kubeadm) =
        noderoot::installed_version(&node.root, "kubeadm").and_then(|v| Version::parse(&v))
    else {
        return r.fail(127, "bash: kubeadm: command not found");
    };
    r.out("[upgrade] Reading configuration from the cluster...");
    r.out("[upgrade] FYI: You can look at this config file with 'kubectl -n kube-system get cm kubeadm-config -o yaml'");
    if !node.root.join("etc/kubernetes/admin.conf").is_file() {
        return r.fail(1, "[upgrade/config] FATAL: failed to load admin kubeconfig: open /etc/kubernetes/admin.conf: no such file or directory");
    }
    if link.apiserver.faults().is_unavailable() {
        return r.fail(
            1,
            connection_refused(
                &link.apiserver,
                "[upgrade/config] FATAL: failed to get config map",
            ),
        );
    }
    let Some(configuration) = cluster_configuration(&link.store) else {
        return r.fail(
            1,
            "[upgrade/config] FATAL: configmaps \"kubeadm-config\" not found",
        );
    };
    let Some(cluster) = kubeadm::cluster_version(&configuration) else {
        return r.fail(
            1,
            "[upgrade/config] FATAL: the ClusterConfiguration in kubeadm-config has no valid kubernetesVersion",
        );
    };
    let target = match &mode {
        Mode::Apply {
            target,
            yes,
            force,
            ignore_preflight,
        } => {
            r.out("[preflight] Running pre-flight checks.");
            r.out("[upgrade] Running cluster health checks");
            let ignored = |check: &str| {
                ignore_preflight
                    .iter()
                    .any(|i| i == "all" || i == &check.to_ascii_lowercase())
            };
            let not_ready = not_ready_control_planes(&link.store);
            if !not_ready.is_empty() && !ignored("ControlPlaneNodesReady") {
                return r.fail(
                    1,
                    format!(
                        "[upgrade/health] FATAL: [preflight] Some fatal errors occurred:\n\t[ERROR ControlPlaneNodesReady]: there are NotReady control-planes in the cluster: [{}]\n[preflight] If you know what you are doing, you can make a check non-fatal with `--ignore-preflight-errors=...`",
                        not_ready.join(" ")
                    ),
                );
            }
            r.out(format!(
                "[upgrade/version] You have chosen to change the cluster version to \"{target}\""
            ));
            r.out(format!("[upgrade/versions] Cluster version: {cluster}"));
            r.out(format!("[upgrade/versions] kubeadm version: {kubeadm}"));
            if let Some(refusal) = kubeadm::apply_refusal(kubeadm, cluster, *target, *force) {
                r.err(refusal);
                return r.fail(
                    1,
                    "To see the stack trace of this error execute with --v=5 or higher",
                );
            }
            if !yes {
                r.out("[upgrade] Are you sure you want to proceed? [y/N]: ");
                return r.fail(
                    1,
                    "won't proceed; the user didn't answer (Y|n) in order to continue",
                );
            }
            r.out("[upgrade/prepull] Pulling images required for setting up a Kubernetes cluster");
            r.out(format!(
                "[upgrade/apply] Upgrading your Static Pod-hosted control plane to version \"{target}\" (timeout: 5m0s)..."
            ));
            *target
        }
        Mode::Node => {
            r.out("[upgrade/preflight] Running pre-flight checks");
            // Real kubeadm would write this node's manifests at the
            // cluster's version whatever its own is, so an `upgrade node`
            // before `upgrade apply` silently keeps the old version. The
            // world refuses loudly so that tests catch the misuse.
            if kubeadm != cluster {
                return r.fail(
                    1,
                    format!(
                        "[upgrade/control-plane] FATAL: the cluster's kubernetesVersion is {cluster} but this kubeadm is {kubeadm}: kubeadm upgrade node writes the version that kubeadm upgrade apply stored; run \"kubeadm upgrade apply {kubeadm}\" on the first control-plane node first"
                    ),
                );
            }
            r.out(
                "[upgrade/preflight] Pulling images required for setting up a Kubernetes cluster",
            );
            r.out(format!(
                "[upgrade/control-plane] Upgrading control plane instance with version \"{cluster}\"..."
            ));
            cluster
        }
    };
    if shared.lock().faults.take_kubeadm_failure(&node.name) {
        return failed_upgrade(shared, &link, node, r).await;
    }
    if let Err(failure) = rewrite_static_pods(shared, &link, node, target, &mut r).await {
        return r.fail(1, failure);
    }
    if matches!(mode, Mode::Apply { .. }) {
        if shared.lock().faults.take_kubeadm_upload_failure(&node.name) {
            set_oldest_apiserver_version(shared, &link);
            let addr = link.apiserver.addr();
            return r.fail(
                1,
                format!(
                    "[upload-config] FATAL: error uploading the kubeadm ClusterConfiguration: Put \"https://{addr}/api/v1/namespaces/kube-system/configmaps/kubeadm-config?timeout=10s\": context deadline exceeded\nTo see the stack trace of this error execute with --v=5 or higher"
                ),
            );
        }
        r.out("[upload-config] Storing the configuration used in ConfigMap \"kubeadm-config\" in the \"kube-system\" Namespace");
        match upload_configuration(&link.store, target) {
            Ok(true) => record(
                shared,
                node,
                format!("kubeadm-config kubernetesVersion → {target}"),
            ),
            Ok(false) => {}
            Err(e) => return r.fail(1, format!("[upload-config] FATAL: {e}")),
        }
    }
    set_oldest_apiserver_version(shared, &link);
    upgrade_addons(shared, &link, node, target, &mut r);
    match mode {
        Mode::Apply { .. } => r.out(format!(
            "\n[upgrade] SUCCESS! A control plane node of your cluster was upgraded to \"{target}\"."
        )),
        Mode::Node => {
            r.out("[upgrade] The control plane instance for this node was successfully upgraded!");
            r.out("[upgrade/kubelet-config] The kubelet configuration for this node was successfully upgraded!");
        }
    }
    r
}

/// An injected failure of the control-plane phase: the new apiserver
/// never reports healthy, kubeadm restores the old manifests (the
/// apiserver restarts twice) and gives up; nothing else changes.
async fn failed_upgrade(shared: &Shared, link: &ClusterLink, node: &Node, mut r: Reply) -> Reply {
    r.out("[upgrade/staticpods] Preparing for \"kube-apiserver\" upgrade");
    r.out("[upgrade/staticpods] Waiting for the kubelet to restart the component");
    r.out("[upgrade/staticpods] This can take up to 5m0s");
    let restart = shared.config.timing.apiserver_restart * 2;
    link.apiserver.faults().unavailable_for(restart);
    tokio::time::sleep(restart).await;
    let addr = link.apiserver.addr();
    r.fail(
        1,
        format!(
            "[upgrade/apply] FATAL: couldn't upgrade control plane. kubeadm has tried to recover everything into the earlier state. Errors faced: failed to obtain static Pod hash for component kube-apiserver on Node {node}: Get \"https://{addr}/api/v1/namespaces/kube-system/pods/kube-apiserver-{node}?timeout=10s\": context deadline exceeded\nTo see the stack trace of this error execute with --v=5 or higher",
            node = node.name,
        ),
    )
}

fn cluster_configuration(store: &Store) -> Option<String> {
    store
        .get(&CONFIGMAPS, "kube-system", "kubeadm-config")?
        .pointer("/data/ClusterConfiguration")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Control-plane nodes whose Ready condition is not True.
fn not_ready_control_planes(store: &Store) -> Vec<String> {
    let (nodes, _) = store.list(&NODES, None, |n| {
        n.pointer("/metadata/labels")
            .and_then(|l| l.get("node-role.kubernetes.io/control-plane"))
            .is_some()
    });
    nodes
        .iter()
        .filter(|n| {
            let ready = n
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| {
                    cs.iter()
                        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
                })
                .and_then(|c| c.get("status"))
                .and_then(Value::as_str);
            ready != Some("True")
        })
        .filter_map(|n| n.pointer("/metadata/name").and_then(Value::as_str))
        .map(str::to_string)
        .collect()
}

/// kubeadm's control-plane phase on this node: each component's manifest
/// moved to the target (old one backed up), the kubelet restarting it.
async fn rewrite_static_pods(
    shared: &Arc<Shared>,
    link: &ClusterLink,
    node: &Node,
    target: Version,
    r: &mut Reply,
) -> Result<(), String> {
    let stamp = jiff::Timestamp::now()
        .strftime("%Y-%m-%d-%H-%M-%S")
        .to_string();
    let backup_dir = format!("/etc/kubernetes/tmp/kubeadm-backup-manifests-{stamp}");
    for component in CONTROL_PLANE_COMPONENTS {
        r.out(format!(
            "[upgrade/staticpods] Preparing for \"{component}\" upgrade"
        ));
        let Some(current) = noderoot::read_manifest(&node.root, component) else {
            return Err(format!(
                "[upgrade/staticpods] FATAL: the static Pod manifest /etc/kubernetes/manifests/{component}.yaml does not exist or is not readable"
            ));
        };
        // etcd follows its own releases; within the minors the world
        // covers, kubeadm keeps it.
        let next = if component == "etcd" {
            current.clone()
        } else {
            kubeadm::upgraded_manifest(&current, target)
        };
        if next == current {
            r.out(format!(
                "[upgrade/staticpods] Current and new manifests of {component} are equal, skipping upgrade"
            ));
            continue;
        }
        let backup = node.root.join(backup_dir.trim_start_matches('/'));
        let written = std::fs::create_dir_all(&backup)
            .and_then(|()| {
                std::fs::copy(
                    node.root
                        .join("etc/kubernetes/manifests")
                        .join(format!("{component}.yaml")),
                    backup.join(format!("{component}.yaml")),
                )
            })
            .and_then(|_| noderoot::write_manifest(&node.root, component, &next));
        if let Err(e) = written {
            return Err(format!(
                "[upgrade/staticpods] FATAL: cannot write the manifest of {component}: {e}"
            ));
        }
        r.out(format!(
            "[upgrade/staticpods] Moved new manifest to \"/etc/kubernetes/manifests/{component}.yaml\" and backed up old manifest to \"{backup_dir}/{component}.yaml\""
        ));
        r.out("[upgrade/staticpods] Waiting for the kubelet to restart the component");
        if let Some(kubelets) = &shared.config.kubelets {
            kubelets.set_static_pod(&node.name, next);
        }
        if component == "kube-apiserver" {
            let restart = shared.config.timing.apiserver_restart;
            link.apiserver.faults().unavailable_for(restart);
            tokio::time::sleep(restart).await;
        }
        r.out(format!(
            "[upgrade/staticpods] Component \"{component}\" upgraded successfully!"
        ));
        record(shared, node, format!("{component} manifest → {target}"));
    }
    Ok(())
}

/// Store `target` as the cluster's kubernetesVersion; `true` if it
/// changed.
fn upload_configuration(store: &Store, target: Version) -> Result<bool, StoreError> {
    let before = cluster_configuration(store);
    store.modify(&CONFIGMAPS, "kube-system", "kubeadm-config", |cm| {
        let text = cm
            .pointer("/data/ClusterConfiguration")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        cm["data"]["ClusterConfiguration"] =
            Value::String(kubeadm::cluster_configuration_at(&text, target));
        Ok(())
    })?;
    Ok(before != cluster_configuration(store))
}

/// `/version` answers with the oldest apiserver of the control plane (the
/// one a client behind the load balancer must assume).
fn set_oldest_apiserver_version(shared: &Shared, link: &ClusterLink) {
    let oldest = control_plane_nodes(shared)
        .iter()
        .filter_map(|n| noderoot::manifest_version(&n.root, "kube-apiserver"))
        .filter_map(|v| Version::parse(&v))
        .min();
    if let Some(oldest) = oldest {
        link.apiserver.set_version(&oldest.to_string());
    }
}

/// kube-proxy and CoreDNS move only once every control-plane node runs the
/// target (kubeadm ≥ 1.28): the run on the last node upgrades them.
fn upgrade_addons(
    shared: &Shared,
    link: &ClusterLink,
    node: &Node,
    target: Version,
    r: &mut Reply,
) {
    let behind: Vec<String> = control_plane_nodes(shared)
        .into_iter()
        .filter(|n| {
            noderoot::manifest_version(&n.root, "kube-apiserver").and_then(|v| Version::parse(&v))
                != Some(target)
        })
        .map(|n| n.name)
        .collect();
    if !behind.is_empty() {
        r.out(format!(
            "[upgrade/addon] Skipping upgrade of addons because control plane instances [{}] have not been upgraded",
            behind.join(" ")
        ));
        return;
    }
    let coredns = crate::world::coredns_image(target.minor);
    for (resource, name, addon, image) in [
        (&DEPLOYMENTS, "coredns", "CoreDNS", coredns),
        (
            &DAEMONSETS,
            "kube-proxy",
            "kube-proxy",
            format!("registry.k8s.io/kube-proxy:{target}"),
        ),
    ] {
        match set_image(&link.store, resource, name, &image) {
            Ok(changed) => {
                r.out(format!("[addons] Applied essential addon: {addon}"));
                if changed {
                    record(shared, node, format!("{name} → {image}"));
                }
            }
            Err(e) => r.err(format!("[addons] cannot upgrade {addon}: {e}")),
        }
    }
}

/// Set the image of the first container of a workload's template; `true`
/// if it changed.
fn set_image(
    store: &Store,
    resource: &'static Resource,
    name: &str,
    image: &str,
) -> Result<bool, StoreError> {
    let mut changed = false;
    store.modify(resource, "kube-system", name, |w| {
        if let Some(container) = w.pointer_mut("/spec/template/spec/containers/0") {
            changed = container.get("image").and_then(Value::as_str) != Some(image);
            container["image"] = Value::String(image.to_string());
        }
        Ok(())
    })?;
    Ok(changed)
}

/// `systemctl restart kubelet`: the kubelet comes back at the version of
/// the installed package.
fn restart_kubelet(shared: &Shared, node: &Node) -> Reply {
    let Some(version) = noderoot::installed_version(&node.root, "kubelet") else {
        return Reply::failure(
            5,
            "Failed to restart kubelet.service: Unit kubelet.service not found.",
        );
    };
    if let Some(kubelets) = &shared.config.kubelets {
        kubelets.restart_with_version(&node.name, &version);
    }
    if let Some(machine) = shared.lock().machines.get_mut(&node.id) {
        machine.kubelet_version = Some(version.clone());
    }
    shared.changed();
    record(shared, node, format!("kubelet restarted at {version}"));
    Reply::default()
}

/// The part of kubectl the scripts use: `get configmap|node NAME` with
/// `-o jsonpath=…` or `-o json`.
fn kubectl(shared: &Shared, node: &Node, args: &[String]) -> Reply {
    let parsed = match KubectlArgs::parse(args) {
        Ok(p) => p,
        Err(message) => return Reply::failure(1, format!("error: {message}")),
    };
    let refused = |server: &str| {
        Reply::failure(
            1,
            format!(
                "The connection to the server {server} was refused - did you specify the right host or port?"
            ),
        )
    };
    let Some(kubeconfig) = parsed.kubeconfig.as_deref() else {
        return refused("localhost:8080");
    };
    let path = Path::new(kubeconfig);
    if !path.starts_with(&node.root) || !path.is_file() {
        return Reply::failure(
            1,
            format!(
                "error: stat {}: no such file or directory",
                path.strip_prefix(&node.root)
                    .map(|p| format!("/{}", p.display()))
                    .unwrap_or_else(|_| kubeconfig.to_string())
            ),
        );
    }
    let Some(link) = shared.config.cluster.as_ref() else {
        return refused("localhost:8080");
    };
    if link.apiserver.faults().is_unavailable() {
        return refused(&link.apiserver.addr().to_string());
    }
    let (resource, plural, namespace): (&'static Resource, &str, &str) =
        match parsed.resource.as_str() {
            "configmap" | "configmaps" | "cm" => (
                &CONFIGMAPS,
                "configmaps",
                parsed.namespace.as_deref().unwrap_or("default"),
            ),
            "node" | "nodes" | "no" => (&NODES, "nodes", ""),
            other => {
                return Reply::failure(
                    1,
                    format!("error: kubesurge-sim: kubectl get {other} is not simulated"),
                );
            }
        };
    let Some(object) = link.store.get(resource, namespace, &parsed.name) else {
        return Reply::failure(
            1,
            format!(
                "Error from server (NotFound): {plural} \"{}\" not found",
                parsed.name
            ),
        );
    };
    let mut r = Reply::default();
    match parsed.output.as_deref() {
        Some("json") => r.out(serde_json::to_string_pretty(&*object).unwrap_or_default()),
        Some(o) if o.starts_with("jsonpath=") => {
            let template = &o["jsonpath=".len()..];
            match jsonpath(&object, template) {
                // kubectl prints a jsonpath result without a newline.
                Some(text) => r.out(text),
                None => {
                    return Reply::failure(
                        1,
                        format!(
                            "error: error executing jsonpath {template:?}: Error executing template: {} is not found.",
                            template
                                .trim_matches(['{', '}'])
                                .rsplit('.')
                                .next()
                                .unwrap_or("")
                        ),
                    );
                }
            }
        }
        Some(other) => {
            return Reply::failure(
                1,
                format!("error: kubesurge-sim: kubectl output {other:?} is not simulated"),
            );
        }
        None => r.out(format!("NAME\n{}", parsed.name)),
    }
    r
}

#[derive(Debug, Default, PartialEq)]
struct KubectlArgs {
    kubeconfig: Option<String>,
    namespace: Option<String>,
    output: Option<String>,
    resource: String,
    name: String,
}

impl KubectlArgs {
    fn parse(args: &[String]) -> Result<KubectlArgs, String> {
        let mut parsed = KubectlArgs::default();
        let mut positional = Vec::new();
        let mut words = args.iter();
        while let Some(word) = words.next() {
            let (flag, inline) = match word.split_once('=') {
                Some((f, v)) if f.starts_with('-') => (f, Some(v.to_string())),
                _ => (word.as_str(), None),
            };
            let mut value = |name: &str| {
                inline
                    .clone()
                    .or_else(|| words.next().cloned())
                    .ok_or_else(|| format!("flag needs an argument: {name}"))
            };
            match flag {
                "--kubeconfig" => parsed.kubeconfig = Some(value(flag)?),
                "-n" | "--namespace" => parsed.namespace = Some(value(flag)?),
                "-o" | "--output" => parsed.output = Some(value(flag)?),
                "--request-timeout" => {
                    value(flag)?;
                }
                f if f.starts_with('-') => return Err(format!("unknown flag: {f}")),
                _ => positional.push(word.clone()),
            }
        }
        match positional.as_slice() {
            [verb, resource, name] if verb == "get" => {
                parsed.resource = resource.clone();
                parsed.name = name.clone();
                Ok(parsed)
            }
            _ => Err(format!(
                "kubesurge-sim: only `kubectl get <configmap|node> NAME` is simulated, not {positional:?}"
            )),
        }
    }
}

/// A `{.a.b.c}` JSONPath: strings raw, anything else as JSON.
fn jsonpath(object: &Value, template: &str) -> Option<String> {
    let path = template
        .trim()
        .strip_prefix('{')?
        .strip_suffix('}')?
        .trim()
        .strip_prefix('.')?;
    let mut at = object;
    if !path.is_empty() {
        for key in path.split('.') {
            at = at.get(key)?;
        }
    }
    Some(match at {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn kubectl_arguments_as_the_scripts_pass_them() {
        let parsed = KubectlArgs::parse(&strings(&[
            "--kubeconfig",
            "/r/etc/kubernetes/admin.conf",
            "--request-timeout=10s",
            "-n",
            "kube-system",
            "get",
            "configmap",
            "kubeadm-config",
            "-o",
            "jsonpath={.data.ClusterConfiguration}",
        ]))
        .unwrap();
        assert_eq!(
            parsed,
            KubectlArgs {
                kubeconfig: Some("/r/etc/kubernetes/admin.conf".into()),
                namespace: Some("kube-system".into()),
                output: Some("jsonpath={.data.ClusterConfiguration}".into()),
                resource: "configmap".into(),
                name: "kubeadm-config".into(),
            }
        );
        assert!(KubectlArgs::parse(&strings(&["delete", "node", "x"])).is_err());
        assert!(KubectlArgs::parse(&strings(&["get", "node", "x", "--bogus"])).is_err());
    }

    #[test]
    fn jsonpath_reads_nested_fields() {
        let node = json!({"status": {"nodeInfo": {"kubeletVersion": "v1.35.2"}}});
        assert_eq!(
            jsonpath(&node, "{.status.nodeInfo.kubeletVersion}").as_deref(),
            Some("v1.35.2")
        );
        assert_eq!(jsonpath(&node, "{.status.missing}"), None);
    }

    #[test]
    fn replies_have_the_wire_form_the_stand_ins_read() {
        let mut r = Reply::default();
        r.out("one\ntwo");
        let r = r.fail(3, "bad");
        assert_eq!(r.render(), "1 one\n1 two\n2 bad\nexit 3\n");
    }
}
