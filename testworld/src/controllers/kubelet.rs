//! Simulated kubelets.
//!
//! One task runs every kubelet of the world off a single timer queue:
//!
//! - Registration: `start` creates the Node (or refreshes an existing one's
//!   default labels and status) and its Lease, as a kubelet does after TLS
//!   bootstrap.
//! - Heartbeats every `timing.heartbeat`: the Lease `kube-node-lease/<node>`
//!   is renewed; the Node status is written only when something changed
//!   (Ready not True, another kubelet version) or every
//!   [`STATUS_REPORT_HEARTBEATS`] heartbeats, as real kubelets report
//!   status every 5 minutes against a 10-second lease renewal.
//! - Pods bound to a running kubelet's node become Running and Ready
//!   `timing.pod_start` after the kubelet sees them (and Ready again after
//!   the node lifecycle controller marked them not Ready); a terminating
//!   pod is deleted (uid precondition) after its grace period scaled into
//!   `[0, timing.pod_termination]`, plus the wall-clock time of the
//!   annotation [`IGNORE_TERMINATION`] if present (`never` keeps it).
//! - A pod whose `restartPolicy` is not `Always` runs to completion: its
//!   containers exit 0 after [`RUN_FOR`] (default `timing.pod_start`) and
//!   the pod is `Succeeded`.
//! - Static pods appear as mirror pods `<name>-<node>` and are recreated
//!   if deleted while the kubelet runs.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::events::{EventRecorder, Source, node_ref, pod_ref};
use super::informer::{At, Change, Feed, Key, Slice, earliest, scale, sleep_until, str_at};
use super::objects::{
    DEFAULT_GRACE_SECONDS, default_pod_spec, is_ready, is_terminal, is_terminating, node_name_of,
    set_condition, template_hash, uid_of,
};
use crate::Timing;
use crate::resources::{LEASES, NODES, PODS};
use crate::store::{Preconditions, Store, StoreError, micro_time, new_uid, rfc3339};

/// Pod annotation: keep a terminating pod this much longer than its grace
/// period (Go duration syntax, e.g. `500ms`, `2s`, `1m30s`; `never` keeps
/// it until the kubelet stops). A fault for drain tests.
pub const IGNORE_TERMINATION: &str = "sim.kubesurge.io/ignore-termination";
/// Pod annotation: how long the containers of a pod that is not restarted
/// (`restartPolicy` `Never` or `OnFailure`, a Job's pods) run before they
/// exit 0 (Go duration syntax; `never` keeps them running). Without it they
/// run for `timing.pod_start`. The world runs no images: every container
/// is taken to succeed.
pub const RUN_FOR: &str = "sim.kubesurge.io/run-for";
/// A Node status report happens at least every this many heartbeats.
pub const STATUS_REPORT_HEARTBEATS: u32 = 30;
const LEASE_NAMESPACE: &str = "kube-node-lease";
const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";
const EXCLUDE_LB_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
const DEFAULT_MAX_PODS: u32 = 110;

/// What a kubelet registers its Node with.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeSpec {
    pub name: String,
    /// `v1.33.4`.
    pub kubelet_version: String,
    pub provider_id: String,
    pub zone: String,
    pub internal_ip: String,
    pub labels: BTreeMap<String, String>,
    /// `{"key","value","effect"}` objects, as in `spec.taints`.
    pub taints: Vec<Value>,
    /// Pods the node has room for (`status.allocatable.pods`).
    pub max_pods: u32,
    /// Marks a control-plane node (kubeadm's labels are added).
    pub control_plane: bool,
    /// How the node gets its cloud facts (zone, instance type, providerID).
    pub cloud: NodeCloud,
}

/// How a kubelet's Node gets its cloud facts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NodeCloud {
    /// The kubelet labels its Node itself (zone, region, instance type), as
    /// kubelets with an in-tree cloud provider did until v1.29.
    #[default]
    InTree,
    /// `--cloud-provider=external`: the Node registers with the taint
    /// `node.cloudprovider.kubernetes.io/uninitialized` and without cloud
    /// labels; the cloud controller manager initializes it (kubelet
    /// `kubelet_node_status.go` `initialNode`; `crate::cloud::ccm`).
    External,
    /// No cloud provider: no cloud labels, no taint, and the cloud
    /// controller never initializes the Node.
    None,
}

/// Machine identity a kubelet reports (`status.nodeInfo`).
#[derive(Clone, Debug)]
struct Identity {
    machine_id: String,
    system_uuid: String,
    boot_id: String,
    /// Position in the fleet: picks the node's pod CIDR.
    index: u32,
}

struct Kubelet {
    spec: NodeSpec,
    identity: Identity,
    running: bool,
    /// Bumped on every start, stop and restart: timers of an older epoch
    /// are void.
    epoch: u64,
    next_pod_ip: u32,
    /// Static pod manifests by name.
    static_pods: BTreeMap<String, Value>,
    /// Static pods (by name) whose readiness probe fails on this node: a
    /// kube-apiserver whose own /readyz never answers ok, an etcd member
    /// without quorum.
    failing_readiness: BTreeSet<String>,
    /// Static pods whose readiness probe will fail from their next
    /// manifest on (a new version that never becomes ready).
    failing_readiness_next: BTreeSet<String>,
}

struct Shared {
    store: Arc<Store>,
    events: Arc<EventRecorder>,
    timing: Timing,
    kubelets: Mutex<HashMap<String, Kubelet>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Kubelet>> {
        self.kubelets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `pod`, a mirror pod on `node`, is a static pod whose
    /// readiness probe fails there ([`KubeletFleet::fail_readiness`]).
    fn readiness_fails(&self, node: &str, pod: &Value) -> bool {
        let is_mirror = pod
            .at("/metadata/annotations")
            .and_then(|a| a.get("kubernetes.io/config.mirror"))
            .is_some();
        let Some(name) = str_at(pod, "/metadata/name").strip_suffix(&format!("-{node}")) else {
            return false;
        };
        is_mirror
            && self
                .lock()
                .get(node)
                .is_some_and(|k| k.failing_readiness.contains(name))
    }

    /// The epoch of `node`'s kubelet if it runs.
    fn running_epoch(&self, node: &str) -> Option<u64> {
        self.lock().get(node).filter(|k| k.running).map(|k| k.epoch)
    }
}

enum Command {
    /// The kubelet of `node` (re)started at `epoch`.
    Run {
        node: String,
        epoch: u64,
        fresh_boot: bool,
    },
}

/// Every simulated kubelet of the world.
pub struct KubeletFleet {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
    cancel: CancellationToken,
}

impl KubeletFleet {
    /// Must be called within a Tokio runtime: the kubelets run as a task
    /// on it.
    pub(crate) fn new(
        store: Arc<Store>,
        timing: Timing,
        events: Arc<EventRecorder>,
    ) -> Arc<KubeletFleet> {
        let shared = Arc::new(Shared {
            store: store.clone(),
            events,
            timing,
            kubelets: Mutex::new(HashMap::new()),
        });
        let (commands, rx) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let (feed, initial) = Feed::start(
            &store,
            &[&PODS],
            Arc::new(|_, pod: &Value| !node_name_of(pod).is_empty()),
        );
        let task = FleetTask {
            shared: shared.clone(),
            pods: HashMap::new(),
            pods_on: HashMap::new(),
            beats: BTreeMap::new(),
            timers: BTreeMap::new(),
            seq: 0,
            pending: HashMap::new(),
            heartbeats: HashMap::new(),
            reported: HashMap::new(),
        };
        tokio::spawn(task.run(feed, initial, rx, cancel.clone()));
        Arc::new(KubeletFleet {
            shared,
            commands,
            cancel,
        })
    }

    /// Start a kubelet: register the Node (self-registration, as after TLS
    /// bootstrap) if missing, then heartbeat and run the pods bound to it.
    pub fn start(&self, node: NodeSpec) {
        let name = node.name.clone();
        let (epoch, identity) = {
            let mut kubelets = self.shared.lock();
            let index = u32::try_from(kubelets.len()).unwrap_or(u32::MAX);
            let k = kubelets.entry(name.clone()).or_insert_with(|| Kubelet {
                spec: node.clone(),
                identity: Identity {
                    machine_id: new_uid().replace('-', ""),
                    system_uuid: new_uid(),
                    boot_id: new_uid(),
                    index,
                },
                running: false,
                epoch: 0,
                next_pod_ip: 0,
                static_pods: BTreeMap::new(),
                failing_readiness: BTreeSet::new(),
                failing_readiness_next: BTreeSet::new(),
            });
            k.spec = node;
            k.running = true;
            k.epoch += 1;
            k.identity.boot_id = new_uid();
            (k.epoch, k.identity.clone())
        };
        let spec = self.spec_of(&name);
        if let Some(spec) = spec {
            record_start(&self.shared, &name);
            register(&self.shared.store, &spec, &identity);
            // `pkg/kubelet/nodestatus/setters.go`: a starting kubelet
            // reports its conditions' first states.
            for (reason, condition) in [
                ("NodeHasSufficientMemory", "NodeHasSufficientMemory"),
                ("NodeHasNoDiskPressure", "NodeHasNoDiskPressure"),
                ("NodeHasSufficientPID", "NodeHasSufficientPID"),
                ("NodeReady", "NodeReady"),
            ] {
                record_node(
                    &self.shared,
                    &name,
                    reason,
                    &format!("Node {name} status is now: {condition}"),
                );
            }
        }
        self.ensure_static_pods(&name, true);
        // The task is gone only when the fleet is shutting down.
        let _ = self.commands.send(Command::Run {
            node: name,
            epoch,
            fresh_boot: true,
        });
    }

    /// The machine is gone or its kubelet stopped: heartbeats stop, pods on
    /// it stay as they are (the node lifecycle controller notices).
    pub fn stop(&self, node: &str) {
        if let Some(k) = self.shared.lock().get_mut(node) {
            k.running = false;
            k.epoch += 1;
        }
    }

    /// Restart the kubelet at another version (a package upgrade): the Node
    /// reports the new version and is NotReady until the next heartbeat.
    /// A kubelet never started here is left alone.
    pub fn restart_with_version(&self, node: &str, kubelet_version: &str) {
        let epoch = {
            let mut kubelets = self.shared.lock();
            let Some(k) = kubelets.get_mut(node) else {
                tracing::warn!("restart of unknown kubelet {node}");
                return;
            };
            k.spec.kubelet_version = kubelet_version.to_string();
            k.running = true;
            k.epoch += 1;
            k.epoch
        };
        record_start(&self.shared, node);
        let stamp = json!(rfc3339(Timestamp::now()));
        let result = self.shared.store.modify(&NODES, "", node, |n| {
            n["status"]["nodeInfo"]["kubeletVersion"] = json!(kubelet_version);
            set_condition(
                n,
                "Ready",
                "False",
                "KubeletNotReady",
                "container runtime status check may not have completed yet",
                &[("lastHeartbeatTime", stamp.clone())],
            );
            Ok(())
        });
        if let Err(e) = result {
            tracing::warn!(error = %e, "kubelet restart could not update node {node}");
        }
        let _ = self.commands.send(Command::Run {
            node: node.to_string(),
            epoch,
            fresh_boot: false,
        });
    }

    /// The machine's address changed: the Node reports `address` as its
    /// `InternalIP` from the next heartbeat on. Only heartbeats write it,
    /// so once the Node shows it, no report of the old address follows.
    pub fn set_internal_ip(&self, node: &str, address: &str) {
        match self.shared.lock().get_mut(node) {
            Some(k) => k.spec.internal_ip = address.to_string(),
            None => tracing::warn!("new address for unknown kubelet {node}"),
        }
    }

    /// Create or replace a static pod on `node` (its mirror pod appears in
    /// the API with the `kubernetes.io/config.mirror` annotation). While the
    /// kubelet is stopped the manifest waits for its next start.
    pub fn set_static_pod(&self, node: &str, pod: Value) {
        let name = str_at(&pod, "/metadata/name").to_string();
        if name.is_empty() {
            tracing::warn!("static pod without a name for {node}");
            return;
        }
        {
            let mut kubelets = self.shared.lock();
            let Some(k) = kubelets.get_mut(node) else {
                tracing::warn!("static pod {name} for unknown kubelet {node}");
                return;
            };
            if k.failing_readiness_next.remove(&name) {
                k.failing_readiness.insert(name.clone());
            }
            k.static_pods.insert(name, pod);
        }
        self.ensure_static_pods(node, true);
    }

    /// Make the readiness probe of static pod `name` on `node` fail (or
    /// pass again), for its current mirror pod and the next ones: the pod
    /// keeps running, its Ready and ContainersReady conditions turn False.
    pub fn fail_readiness(&self, node: &str, name: &str, failing: bool) {
        {
            let mut kubelets = self.shared.lock();
            let Some(k) = kubelets.get_mut(node) else {
                tracing::warn!("readiness of {name} for unknown kubelet {node}");
                return;
            };
            if failing {
                k.failing_readiness.insert(name.to_string());
            } else {
                k.failing_readiness.remove(name);
            }
        }
        let _ = self
            .shared
            .store
            .modify(&PODS, "kube-system", &format!("{name}-{node}"), |pod| {
                set_readiness(pod, !failing);
                Ok(())
            });
    }

    /// Make the readiness probe of static pod `name` on `node` fail from
    /// its next manifest on: the running one stays Ready, the upgraded one
    /// never becomes Ready.
    pub fn fail_readiness_after_next_manifest(&self, node: &str, name: &str) {
        match self.shared.lock().get_mut(node) {
            Some(k) => {
                k.failing_readiness_next.insert(name.to_string());
            }
            None => tracing::warn!("readiness of {name} for unknown kubelet {node}"),
        }
    }

    /// True while the node's kubelet runs.
    pub fn is_running(&self, node: &str) -> bool {
        self.shared.running_epoch(node).is_some()
    }

    /// Stop every kubelet for good (the world is shutting down).
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }

    fn spec_of(&self, node: &str) -> Option<NodeSpec> {
        self.shared.lock().get(node).map(|k| k.spec.clone())
    }

    fn ensure_static_pods(&self, node: &str, replace: bool) {
        ensure_static_pods(&self.shared, node, replace);
    }
}

impl Drop for KubeletFleet {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Who a kubelet's Events come from.
fn source(node: &str) -> Source<'_> {
    Source {
        component: "kubelet",
        host: node,
    }
}

/// An Event about the kubelet's own Node (kubelets use the node's name as
/// its uid: `pkg/kubelet/kubelet.go` `nodeRef`).
fn record_node(shared: &Shared, node: &str, reason: &str, message: &str) {
    shared.events.record(
        source(node),
        node_ref(node, node),
        "Normal",
        reason,
        message,
    );
}

fn record_start(shared: &Shared, node: &str) {
    record_node(shared, node, "Starting", "Starting kubelet.");
}

/// One Event per container of `pod` (`pkg/kubelet/events`).
fn record_containers(
    shared: &Shared,
    pod: &Value,
    reason: &str,
    message: impl Fn(&Value) -> String,
) {
    let node = node_name_of(pod);
    for container in pod
        .at("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mut involved = pod_ref(pod);
        involved["fieldPath"] = json!(format!("spec.containers{{{}}}", str_at(container, "/name")));
        shared.events.record(
            source(node),
            involved,
            "Normal",
            reason,
            &message(container),
        );
    }
}

/// The Node object a kubelet registers.
pub fn node_object(
    spec: &NodeSpec,
    machine_id: &str,
    system_uuid: &str,
    boot_id: &str,
    index: u32,
) -> Value {
    let mut labels = serde_json::Map::new();
    let mut label = |k: &str, v: &str| {
        labels.insert(k.to_string(), json!(v));
    };
    label("kubernetes.io/hostname", &spec.name);
    label("kubernetes.io/os", "linux");
    label("kubernetes.io/arch", "amd64");
    label("beta.kubernetes.io/os", "linux");
    label("beta.kubernetes.io/arch", "amd64");
    let in_tree = spec.cloud == NodeCloud::InTree;
    if in_tree {
        label("node.kubernetes.io/instance-type", "sim.large");
    }
    if in_tree && !spec.zone.is_empty() {
        label("topology.kubernetes.io/zone", &spec.zone);
        if let Some(region) = spec.zone.strip_suffix(|c: char| c.is_ascii_lowercase())
            && region.ends_with(|c: char| c.is_ascii_digit())
        {
            label("topology.kubernetes.io/region", region);
        }
    }
    if spec.control_plane {
        label(CONTROL_PLANE_LABEL, "");
        label(EXCLUDE_LB_LABEL, "");
    }
    for (k, v) in &spec.labels {
        label(k, v);
    }
    let mut taints = spec.taints.clone();
    if spec.control_plane && taints.is_empty() {
        taints.push(json!({"key": CONTROL_PLANE_LABEL, "effect": "NoSchedule"}));
    }
    if spec.cloud == NodeCloud::External {
        taints.push(json!({
            "key": "node.cloudprovider.kubernetes.io/uninitialized",
            "value": "true",
            "effect": "NoSchedule",
        }));
    }
    let mut node_spec = json!({
        "podCIDR": pod_cidr(index),
        "podCIDRs": [pod_cidr(index)],
    });
    if !spec.provider_id.is_empty() {
        node_spec["providerID"] = json!(spec.provider_id);
    }
    if !taints.is_empty() {
        node_spec["taints"] = json!(taints);
    }
    json!({
        "metadata": {
            "name": spec.name,
            "labels": labels,
            "annotations": {
                "kubeadm.alpha.kubernetes.io/cri-socket": "unix:///var/run/containerd/containerd.sock",
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": node_spec,
        "status": node_status(spec, machine_id, system_uuid, boot_id, index, None),
    })
}

/// A kubelet's status report; transition times are kept from `previous`
/// where a condition's status did not change.
fn node_status(
    spec: &NodeSpec,
    machine_id: &str,
    system_uuid: &str,
    boot_id: &str,
    index: u32,
    previous: Option<&Value>,
) -> Value {
    let pods = if spec.max_pods == 0 {
        DEFAULT_MAX_PODS
    } else {
        spec.max_pods
    };
    let resources = json!({
        "cpu": "4",
        "memory": "16Gi",
        "pods": pods.to_string(),
        "ephemeral-storage": "100Gi",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
    });
    let mut holder = json!({"status": {"conditions": previous
        .and_then(|p| p.at("/status/conditions"))
        .cloned()
        .unwrap_or_else(|| json!([]))}});
    let beat = json!(rfc3339(Timestamp::now()));
    for (kind, status, reason, message) in [
        (
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        (
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        (
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        (
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
        ),
    ] {
        set_condition(
            &mut holder,
            kind,
            status,
            reason,
            message,
            &[("lastHeartbeatTime", beat.clone())],
        );
    }
    json!({
        "capacity": resources,
        "allocatable": resources,
        "conditions": holder["status"]["conditions"],
        "addresses": [
            {"type": "InternalIP", "address": internal_ip(spec, index)},
            {"type": "Hostname", "address": spec.name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": machine_id,
            "systemUUID": system_uuid,
            "bootID": boot_id,
            "kernelVersion": "6.8.0-1021-aws",
            "osImage": "Ubuntu 24.04.2 LTS",
            "containerRuntimeVersion": "containerd://1.7.27",
            "kubeletVersion": spec.kubelet_version,
            // Kubelets no longer report kube-proxy's version (feature
            // DisableNodeKubeProxyVersion, on since v1.31), but the field
            // has no `omitempty` (`k8s.io/api/core/v1/types.go`
            // NodeSystemInfo), so a real server sends it empty; clients
            // that check required fields (the Python client) need it.
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    })
}

fn pod_cidr(index: u32) -> String {
    format!("100.{}.{}.0/24", 64 + (index / 256) % 64, index % 256)
}

/// Whether `node` reports the address its spec gives (a spec without one
/// keeps the address it was registered with).
fn reports_address(node: &Value, spec: &NodeSpec) -> bool {
    spec.internal_ip.is_empty()
        || node
            .pointer("/status/addresses")
            .and_then(Value::as_array)
            .is_some_and(|addresses| {
                addresses.iter().any(|a| {
                    str_at(a, "/type") == "InternalIP" && str_at(a, "/address") == spec.internal_ip
                })
            })
}

fn internal_ip(spec: &NodeSpec, index: u32) -> String {
    if spec.internal_ip.is_empty() {
        format!("10.0.{}.{}", (index / 250) % 256, index % 250 + 2)
    } else {
        spec.internal_ip.clone()
    }
}

/// Register `spec`'s Node, or bring an existing one up to date (default
/// labels, providerID if unset, a fresh status), and make sure its Lease
/// exists.
fn register(store: &Store, spec: &NodeSpec, id: &Identity) {
    let fresh = node_object(spec, &id.machine_id, &id.system_uuid, &id.boot_id, id.index);
    let node = match store.create(&NODES, "", fresh.clone()) {
        Ok(node) => Some(node),
        Err(StoreError::AlreadyExists { .. }) => store
            .modify(&NODES, "", &spec.name, |n| {
                if let (Some(labels), Some(defaults)) = (
                    n.pointer_mut("/metadata/labels")
                        .and_then(Value::as_object_mut),
                    fresh.at("/metadata/labels").and_then(Value::as_object),
                ) {
                    for (k, v) in defaults {
                        labels.insert(k.clone(), v.clone());
                    }
                } else {
                    n["metadata"]["labels"] = fresh["metadata"]["labels"].clone();
                }
                if str_at(n, "/spec/providerID").is_empty() && !spec.provider_id.is_empty() {
                    n["spec"]["providerID"] = json!(spec.provider_id);
                }
                let previous = n.clone();
                let status = node_status(
                    spec,
                    &id.machine_id,
                    &id.system_uuid,
                    &id.boot_id,
                    id.index,
                    Some(&previous),
                );
                n["status"] = status;
                Ok(())
            })
            .ok(),
        Err(e) => {
            tracing::warn!(error = %e, "kubelet could not register node {}", spec.name);
            None
        }
    };
    if let Some(node) = node {
        renew_lease(store, &spec.name, uid_of(&node));
    }
}

/// Renew (or create) the node's Lease.
fn renew_lease(store: &Store, node: &str, node_uid: &str) {
    let now = json!(micro_time(Timestamp::now()));
    let renewed = store.modify(&LEASES, LEASE_NAMESPACE, node, |lease| {
        lease["spec"]["renewTime"] = now.clone();
        lease["spec"]["holderIdentity"] = json!(node);
        Ok(())
    });
    if let Err(StoreError::NotFound { .. }) = renewed {
        let lease = json!({
            "metadata": {
                "name": node,
                "namespace": LEASE_NAMESPACE,
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid}],
            },
            "spec": {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": now},
        });
        if let Err(e) = store.create(&LEASES, LEASE_NAMESPACE, lease) {
            tracing::debug!(error = %e, "kubelet could not create lease of {node}");
        }
    }
}

/// Make sure every static pod of a running kubelet has its mirror pod;
/// with `replace`, a mirror pod of an older manifest is replaced.
fn ensure_static_pods(shared: &Shared, node: &str, replace: bool) {
    let (manifests, host_ip, failing) = {
        let kubelets = shared.lock();
        let Some(k) = kubelets.get(node).filter(|k| k.running) else {
            return;
        };
        (
            k.static_pods.clone(),
            internal_ip(&k.spec, k.identity.index),
            k.failing_readiness.clone(),
        )
    };
    if manifests.is_empty() {
        return;
    }
    let Some(node_obj) = shared.store.get(&NODES, "", node) else {
        return;
    };
    for (name, manifest) in manifests {
        let mut mirror = mirror_pod(&manifest, node, uid_of(&node_obj), &host_ip);
        if failing.contains(&name) {
            set_readiness(&mut mirror, false);
        }
        let ns = str_at(&mirror, "/metadata/namespace").to_string();
        let mirror_name = format!("{name}-{node}");
        if let Some(existing) = shared.store.get(&PODS, &ns, &mirror_name) {
            let hash = |p: &Value| {
                p.at("/metadata/annotations")
                    .and_then(|a| a.get("kubernetes.io/config.hash"))
                    .cloned()
            };
            let same = hash(&existing) == hash(&mirror);
            if same || !replace {
                continue;
            }
            let pre = Preconditions {
                uid: Some(uid_of(&existing).to_string()),
                resource_version: None,
            };
            // Lost races leave the other writer's pod in place.
            let _ = shared.store.delete(&PODS, &ns, &mirror_name, &pre);
        }
        if let Err(e) = shared.store.create(&PODS, &ns, mirror) {
            tracing::debug!(error = %e, "kubelet could not create mirror pod {mirror_name}");
        }
    }
}

/// The mirror pod of a static pod manifest, Running and Ready.
pub fn mirror_pod(manifest: &Value, node: &str, node_uid: &str, host_ip: &str) -> Value {
    let name = str_at(manifest, "/metadata/name");
    let ns = match str_at(manifest, "/metadata/namespace") {
        "" => "kube-system",
        ns => ns,
    };
    let hash = template_hash(manifest);
    let mut annotations = manifest
        .at("/metadata/annotations")
        .cloned()
        .unwrap_or_else(|| json!({}));
    annotations["kubernetes.io/config.hash"] = json!(hash);
    annotations["kubernetes.io/config.mirror"] = json!(hash);
    annotations["kubernetes.io/config.seen"] = json!(micro_time(Timestamp::now()));
    annotations["kubernetes.io/config.source"] = json!("file");
    let mut spec = manifest.get("spec").cloned().unwrap_or_else(|| json!({}));
    default_pod_spec(&mut spec);
    spec["nodeName"] = json!(node);
    let mut pod = json!({
        "metadata": {
            "name": format!("{name}-{node}"),
            "namespace": ns,
            "labels": manifest.at("/metadata/labels").cloned().unwrap_or_else(|| json!({})),
            "annotations": annotations,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid, "controller": true}],
        },
        "spec": spec,
        "status": {"phase": "Pending"},
    });
    mark_running(&mut pod, host_ip, host_ip);
    pod
}

/// Pod status as a kubelet reports a pod whose containers all run and
/// pass readiness.
fn mark_running(pod: &mut Value, host_ip: &str, pod_ip: &str) {
    let now = rfc3339(Timestamp::now());
    let pod_ip = match str_at(pod, "/status/podIP") {
        "" => pod_ip.to_string(),
        existing => existing.to_string(),
    };
    let started = match str_at(pod, "/status/startTime") {
        "" => now.clone(),
        existing => existing.to_string(),
    };
    let containers: Vec<Value> = pod
        .at("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let previous: Vec<Value> = pod
        .at("/status/containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let statuses: Vec<Value> = containers
        .iter()
        .map(|c| {
            let name = str_at(c, "/name");
            let old = previous.iter().find(|s| str_at(s, "/name") == name);
            let id = old
                .map(|s| str_at(s, "/containerID").to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| format!("containerd://{}{}", new_uid().replace('-', ""), new_uid().replace('-', "")));
            let since = old
                .and_then(|s| s.at("/state/running/startedAt").cloned())
                .unwrap_or_else(|| json!(now));
            json!({
                "name": name,
                "image": str_at(c, "/image"),
                "imageID": format!("{}@sha256:{}", str_at(c, "/image").split(':').next().unwrap_or(""), "0".repeat(64)),
                "containerID": id,
                "ready": true,
                "started": true,
                "restartCount": 0,
                "state": {"running": {"startedAt": since}},
            })
        })
        .collect();
    for kind in [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ] {
        set_condition(pod, kind, "True", "", "", &[("lastProbeTime", Value::Null)]);
    }
    let status = &mut pod["status"];
    status["phase"] = json!("Running");
    status["hostIP"] = json!(host_ip);
    status["hostIPs"] = json!([{"ip": host_ip}]);
    status["podIP"] = json!(pod_ip);
    status["podIPs"] = json!([{"ip": pod_ip}]);
    status["startTime"] = json!(started);
    status["containerStatuses"] = json!(statuses);
    if status.get("qosClass").is_none() {
        status["qosClass"] = json!("BestEffort");
    }
}

/// A running pod's readiness as the kubelet reports it from its probes:
/// `Ready` and `ContainersReady` False with reason `ContainersNotReady`
/// naming the unready containers, each container status `ready: false`
/// (`pkg/kubelet/status/generate.go`, `GeneratePodReadyCondition` and
/// `GenerateContainersReadyCondition`).
fn set_readiness(pod: &mut Value, ready: bool) {
    let names: Vec<String> = pod
        .at("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| cs.iter().map(|c| str_at(c, "/name").to_string()).collect())
        .unwrap_or_default();
    if let Some(statuses) = pod
        .pointer_mut("/status/containerStatuses")
        .and_then(Value::as_array_mut)
    {
        for status in statuses {
            status["ready"] = json!(ready);
        }
    }
    let (status, reason, message) = if ready {
        ("True", String::new(), String::new())
    } else {
        (
            "False",
            "ContainersNotReady".to_string(),
            format!("containers with unready status: [{}]", names.join(" ")),
        )
    };
    for kind in ["Ready", "ContainersReady"] {
        set_condition(
            pod,
            kind,
            status,
            &reason,
            &message,
            &[("lastProbeTime", Value::Null)],
        );
    }
}

/// How long the containers of a pod that is not restarted run before they
/// exit; `None` for pods that run until deleted (`restartPolicy: Always`,
/// the default, or [`RUN_FOR`] `never`).
fn run_time(pod: &Value, timing: &Timing) -> Option<Duration> {
    if matches!(str_at(pod, "/spec/restartPolicy"), "Always" | "") {
        return None;
    }
    match pod
        .at("/metadata/annotations")
        .and_then(|a| a.get(RUN_FOR))
        .and_then(Value::as_str)
    {
        None => Some(timing.pod_start),
        Some("never") => None,
        Some(text) => Some(parse_go_duration(text).unwrap_or_else(|| {
            tracing::warn!("unparseable {RUN_FOR} {text:?} ignored");
            timing.pod_start
        })),
    }
}

/// Pod status once every container exited 0: phase `Succeeded`, each
/// container `terminated` with reason `Completed`, and `Ready` and
/// `ContainersReady` False with reason `PodCompleted`
/// (`pkg/kubelet/kubelet_pods.go` getPhase, `pkg/kubelet/status/generate.go`
/// GeneratePodReadyCondition).
fn mark_succeeded(pod: &mut Value) {
    let now = rfc3339(Timestamp::now());
    if let Some(statuses) = pod
        .pointer_mut("/status/containerStatuses")
        .and_then(Value::as_array_mut)
    {
        for s in statuses {
            let started = s
                .at("/state/running/startedAt")
                .cloned()
                .unwrap_or_else(|| json!(now));
            let id = s.get("containerID").cloned().unwrap_or(Value::Null);
            s["ready"] = json!(false);
            s["started"] = json!(false);
            s["state"] = json!({"terminated": {
                "exitCode": 0, "reason": "Completed", "startedAt": started,
                "finishedAt": now, "containerID": id,
            }});
        }
    }
    for kind in ["Ready", "ContainersReady"] {
        set_condition(
            pod,
            kind,
            "False",
            "PodCompleted",
            "",
            &[("lastProbeTime", Value::Null)],
        );
    }
    pod["status"]["phase"] = json!("Succeeded");
}

/// How long a terminating pod takes on a kubelet: its grace period scaled
/// so that 30 s (the default) is `pod_termination` and nothing exceeds it,
/// plus the [`IGNORE_TERMINATION`] delay. `None`: it never finishes.
pub fn termination_delay(pod: &Value, timing: &Timing) -> Option<Duration> {
    let grace = pod
        .at("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .or_else(|| {
            pod.at("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(DEFAULT_GRACE_SECONDS)
        .clamp(0, DEFAULT_GRACE_SECONDS);
    let base = scale(
        timing.pod_termination,
        grace.unsigned_abs(),
        DEFAULT_GRACE_SECONDS.unsigned_abs(),
    );
    let linger = match pod
        .at("/metadata/annotations")
        .and_then(|a| a.get(IGNORE_TERMINATION))
        .and_then(Value::as_str)
    {
        None => Duration::ZERO,
        Some("never") => return None,
        Some(text) => parse_go_duration(text).unwrap_or_else(|| {
            tracing::warn!("unparseable {IGNORE_TERMINATION} {text:?} ignored");
            Duration::ZERO
        }),
    };
    Some(base + linger)
}

/// A Go `time.ParseDuration` string without sign (`1m30s`, `250ms`).
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(number * seconds).ok()?;
    }
    Some(total)
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Action {
    Heartbeat { node: String, epoch: u64, beat: u32 },
    Start { key: Key, uid: String, epoch: u64 },
    Finish { key: Key, uid: String, epoch: u64 },
    Complete { key: Key, uid: String, epoch: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PodWork {
    Start,
    Finish,
    Complete,
}

struct FleetTask {
    shared: Arc<Shared>,
    /// Bound pods.
    pods: HashMap<Key, Arc<Value>>,
    pods_on: HashMap<String, HashSet<Key>>,
    /// Heartbeats, kept apart so that a backlog of pod work never delays
    /// them.
    beats: BTreeMap<(Instant, u64), Action>,
    /// Pod starts and finishes.
    timers: BTreeMap<(Instant, u64), Action>,
    seq: u64,
    /// The work scheduled per pod, with the timer's sequence number.
    pending: HashMap<Key, (PodWork, u64)>,
    /// Per node, the sequence number of its live heartbeat chain.
    heartbeats: HashMap<String, u64>,
    /// Per node, what its kubelet last reported in Events: Ready, and
    /// whether the node was schedulable.
    reported: HashMap<String, (bool, bool)>,
}

impl FleetTask {
    async fn run(
        mut self,
        mut feed: Feed,
        initial: Vec<Change>,
        mut commands: mpsc::UnboundedReceiver<Command>,
        cancel: CancellationToken,
    ) {
        for change in initial {
            self.apply(change);
        }
        loop {
            while let Some(change) = feed.try_recv() {
                self.apply(change);
            }
            while let Ok(command) = commands.try_recv() {
                self.command(command);
            }
            let wake = self.fire(&Slice::new(Instant::now()));
            tokio::task::yield_now().await;
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                command = commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => return,
                },
                change = feed.recv() => match change {
                    Some(change) => self.apply(change),
                    None => return,
                },
                _ = sleep_until(wake) => {}
            }
        }
    }

    fn schedule(&mut self, at: Instant, action: Action) -> u64 {
        self.seq += 1;
        match action {
            Action::Heartbeat { .. } => self.beats.insert((at, self.seq), action),
            _ => self.timers.insert((at, self.seq), action),
        };
        self.seq
    }

    fn command(&mut self, command: Command) {
        let Command::Run {
            node,
            epoch,
            fresh_boot,
        } = command;
        let timing = &self.shared.timing;
        // Spread the first heartbeats of a fleet started at once.
        let first = if fresh_boot {
            scale(timing.heartbeat, rand::random_range(50..=100), 100)
        } else {
            timing.heartbeat
        };
        let seq = self.schedule(
            Instant::now() + first,
            Action::Heartbeat {
                node: node.clone(),
                epoch,
                beat: 0,
            },
        );
        self.heartbeats.insert(node.clone(), seq);
        let keys: Vec<Key> = self
            .pods_on
            .get(&node)
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        for key in keys {
            self.pending.remove(&key);
            self.consider(&key);
        }
    }

    fn apply(&mut self, change: Change) {
        let key = change.key();
        let old_node = self.pods.remove(&key).map(|p| node_name_of(&p).to_string());
        if let Some(old) = old_node
            && let Some(s) = self.pods_on.get_mut(&old)
        {
            s.remove(&key);
        }
        match change.current() {
            Some(pod) if !node_name_of(pod).is_empty() => {
                self.pods_on
                    .entry(node_name_of(pod).to_string())
                    .or_default()
                    .insert(key.clone());
                self.pods.insert(key.clone(), pod.clone());
                self.consider(&key);
            }
            _ => {
                self.pending.remove(&key);
            }
        }
    }

    /// Schedule what the kubelet does next with this pod, if anything.
    fn consider(&mut self, key: &Key) {
        let Some(pod) = self.pods.get(key).cloned() else {
            return;
        };
        let Some(epoch) = self.shared.running_epoch(node_name_of(&pod)) else {
            return;
        };
        let uid = uid_of(&pod).to_string();
        let now = Instant::now();
        if is_terminating(&pod) {
            if self
                .pending
                .get(key)
                .is_some_and(|(w, _)| *w == PodWork::Finish)
            {
                return;
            }
            match termination_delay(&pod, &self.shared.timing) {
                Some(delay) => {
                    record_containers(&self.shared, &pod, "Killing", |c| {
                        format!("Stopping container {}", str_at(c, "/name"))
                    });
                    let seq = self.schedule(
                        now + delay,
                        Action::Finish {
                            key: key.clone(),
                            uid,
                            epoch,
                        },
                    );
                    self.pending.insert(key.clone(), (PodWork::Finish, seq));
                }
                None => {
                    self.pending.remove(key);
                }
            }
            return;
        }
        let running = str_at(&pod, "/status/phase") == "Running" && is_ready(&pod);
        if is_terminal(&pod) || self.pending.contains_key(key) {
            return;
        }
        if running {
            if let Some(run) = run_time(&pod, &self.shared.timing) {
                let seq = self.schedule(
                    now + run,
                    Action::Complete {
                        key: key.clone(),
                        uid,
                        epoch,
                    },
                );
                self.pending.insert(key.clone(), (PodWork::Complete, seq));
            }
            return;
        }
        let seq = self.schedule(
            now + self.shared.timing.pod_start,
            Action::Start {
                key: key.clone(),
                uid,
                epoch,
            },
        );
        self.pending.insert(key.clone(), (PodWork::Start, seq));
    }

    /// Run what is due: every heartbeat, then pod work until the slice is
    /// spent. Returns when to run again.
    fn fire(&mut self, slice: &Slice) -> Option<Instant> {
        let now = slice.now;
        while let Some(entry) = self.beats.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((_, seq), action) = entry.remove_entry();
            if let Action::Heartbeat { node, epoch, beat } = action {
                self.heartbeat(&node, epoch, beat, seq);
            }
        }
        let next_beat = self.beats.keys().next().map(|(at, _)| *at);
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            if slice.spent() {
                return Some(now);
            }
            let ((_, seq), action) = entry.remove_entry();
            match action {
                Action::Heartbeat { .. } => {}
                Action::Start { key, uid, epoch } => {
                    if self.take_pending(&key, PodWork::Start, seq) {
                        self.start_pod(&key, &uid, epoch);
                    }
                }
                Action::Finish { key, uid, epoch } => {
                    if self.take_pending(&key, PodWork::Finish, seq) {
                        self.finish_pod(&key, &uid, epoch);
                    }
                }
                Action::Complete { key, uid, epoch } => {
                    if self.take_pending(&key, PodWork::Complete, seq) {
                        self.complete_pod(&key, &uid, epoch);
                    }
                }
            }
        }
        earliest(next_beat, self.timers.keys().next().map(|(at, _)| *at))
    }

    fn take_pending(&mut self, key: &Key, work: PodWork, seq: u64) -> bool {
        if self.pending.get(key) == Some(&(work, seq)) {
            self.pending.remove(key);
            true
        } else {
            false
        }
    }

    fn pod_ips(&self, node: &str, host_network: bool) -> Option<(String, String)> {
        let mut kubelets = self.shared.lock();
        let k = kubelets.get_mut(node)?;
        let host = internal_ip(&k.spec, k.identity.index);
        if host_network {
            return Some((host.clone(), host));
        }
        k.next_pod_ip = k.next_pod_ip % 253 + 1;
        let index = k.identity.index;
        Some((
            host,
            format!(
                "100.{}.{}.{}",
                64 + (index / 256) % 64,
                index % 256,
                k.next_pod_ip + 1
            ),
        ))
    }

    fn start_pod(&mut self, key: &Key, uid: &str, epoch: u64) {
        let Some(pod) = self.pods.get(key).cloned() else {
            return;
        };
        let node = node_name_of(&pod).to_string();
        if self.shared.running_epoch(&node) != Some(epoch) {
            return;
        }
        let host_network = pod.at("/spec/hostNetwork").and_then(Value::as_bool) == Some(true);
        let Some((host_ip, pod_ip)) = self.pod_ips(&node, host_network) else {
            return;
        };
        let probe_fails = self.shared.readiness_fails(&node, &pod);
        // A pod that changed meanwhile (deleted, rebound) is left alone.
        let mut started = false;
        let _ = self.shared.store.modify(&PODS, &key.0, &key.1, |p| {
            if uid_of(p) != uid || node_name_of(p) != node || is_terminating(p) || is_terminal(p) {
                return Ok(());
            }
            mark_running(p, &host_ip, &pod_ip);
            if probe_fails {
                set_readiness(p, false);
            }
            started = true;
            Ok(())
        });
        if started {
            record_containers(&self.shared, &pod, "Pulled", |c| {
                format!(
                    "Container image {:?} already present on machine",
                    str_at(c, "/image")
                )
            });
            record_containers(&self.shared, &pod, "Created", |c| {
                format!("Created container: {}", str_at(c, "/name"))
            });
            record_containers(&self.shared, &pod, "Started", |c| {
                format!("Started container {}", str_at(c, "/name"))
            });
        }
    }

    /// The containers of a pod that is not restarted exited 0: the pod is
    /// `Succeeded`.
    fn complete_pod(&mut self, key: &Key, uid: &str, epoch: u64) {
        let Some(pod) = self.pods.get(key) else {
            return;
        };
        let node = node_name_of(pod).to_string();
        if self.shared.running_epoch(&node) != Some(epoch) {
            return;
        }
        let _ = self.shared.store.modify(&PODS, &key.0, &key.1, |p| {
            if uid_of(p) == uid && node_name_of(p) == node && !is_terminating(p) && !is_terminal(p)
            {
                mark_succeeded(p);
            }
            Ok(())
        });
    }

    fn finish_pod(&mut self, key: &Key, uid: &str, epoch: u64) {
        let Some(pod) = self.pods.get(key) else {
            return;
        };
        if self.shared.running_epoch(node_name_of(pod)) != Some(epoch) {
            return;
        }
        let pre = Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        };
        match self.shared.store.delete(&PODS, &key.0, &key.1, &pre) {
            Ok(_) | Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => {}
            Err(e) => {
                tracing::warn!(error = %e, "kubelet could not delete pod {}/{}", key.0, key.1)
            }
        }
    }

    /// The Events a kubelet records when its node's state changes
    /// (`pkg/kubelet/nodestatus/setters.go`: `NodeReady` when Ready turns
    /// True, `NodeNotSchedulable`/`NodeSchedulable` when a cordon comes or
    /// goes). A kubelet starts out having reported a Ready, schedulable
    /// node.
    fn report_changes(&mut self, node: &str, before: &Value, current: &Value) {
        let ready = is_ready(current);
        let schedulable = current.at("/spec/unschedulable").and_then(Value::as_bool) != Some(true);
        let (was_ready, was_schedulable) = self
            .reported
            .insert(node.to_string(), (ready, schedulable))
            .unwrap_or((true, true));
        if ready && !(was_ready && is_ready(before)) {
            record_node(
                &self.shared,
                node,
                "NodeReady",
                &format!("Node {node} status is now: NodeReady"),
            );
        }
        if schedulable != was_schedulable {
            let state = if schedulable {
                "NodeSchedulable"
            } else {
                "NodeNotSchedulable"
            };
            record_node(
                &self.shared,
                node,
                state,
                &format!("Node {node} status is now: {state}"),
            );
        }
    }

    fn heartbeat(&mut self, node: &str, epoch: u64, beat: u32, seq: u64) {
        if self.heartbeats.get(node) != Some(&seq) {
            return;
        }
        let store = self.shared.store.clone();
        let current = store.get(&NODES, "", node);
        let report_due = beat > 0 && beat.is_multiple_of(STATUS_REPORT_HEARTBEATS);
        // What the heartbeat must write besides the lease: the whole Node
        // when it is gone, its status when due or out of date.
        let (write, has_static_pods) = {
            let kubelets = self.shared.lock();
            let Some(k) = kubelets.get(node).filter(|k| k.running && k.epoch == epoch) else {
                drop(kubelets);
                self.heartbeats.remove(node);
                return;
            };
            let stale = current.as_ref().is_none_or(|n| {
                report_due
                    || !is_ready(n)
                    || str_at(n, "/status/nodeInfo/kubeletVersion") != k.spec.kubelet_version
                    || !reports_address(n, &k.spec)
            });
            let write = stale.then(|| (k.spec.clone(), k.identity.clone()));
            (write, !k.static_pods.is_empty())
        };
        match (current, write) {
            // A running kubelet whose Node was deleted registers it again.
            (None, Some((spec, identity))) => register(&store, &spec, &identity),
            (Some(current), write) => {
                renew_lease(&store, node, uid_of(&current));
                let mut latest = current.clone();
                if let Some((spec, id)) = write {
                    let written = store.modify(&NODES, "", node, |n| {
                        let previous = n.clone();
                        n["status"] = node_status(
                            &spec,
                            &id.machine_id,
                            &id.system_uuid,
                            &id.boot_id,
                            id.index,
                            Some(&previous),
                        );
                        Ok(())
                    });
                    if let Ok(n) = written {
                        latest = n;
                    }
                }
                self.report_changes(node, &current, &latest);
            }
            (None, None) => {}
        }
        if has_static_pods {
            ensure_static_pods(&self.shared, node, false);
        }
        let next = self.schedule(
            Instant::now() + self.shared.timing.heartbeat,
            Action::Heartbeat {
                node: node.to_string(),
                epoch,
                beat: beat.wrapping_add(1),
            },
        );
        self.heartbeats.insert(node.to_string(), next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_go_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("soon"), None);
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(parse_go_duration(""), None);
    }

    #[test]
    fn termination_scales_grace_and_adds_linger() {
        let timing = Timing::fast();
        let pod = |grace: Value, annotations: Value| json!({"metadata": {"deletionGracePeriodSeconds": grace, "annotations": annotations}});
        assert_eq!(
            termination_delay(&pod(json!(30), json!({})), &timing),
            Some(timing.pod_termination)
        );
        assert_eq!(
            termination_delay(&pod(json!(600), json!({})), &timing),
            Some(timing.pod_termination)
        );
        assert_eq!(
            termination_delay(&pod(json!(0), json!({})), &timing),
            Some(Duration::ZERO)
        );
        assert_eq!(
            termination_delay(&pod(json!(15), json!({})), &timing),
            Some(timing.pod_termination / 2)
        );
        assert_eq!(
            termination_delay(
                &pod(json!(0), json!({IGNORE_TERMINATION: "300ms"})),
                &timing
            ),
            Some(Duration::from_millis(300))
        );
        assert_eq!(
            termination_delay(
                &pod(json!(0), json!({IGNORE_TERMINATION: "never"})),
                &timing
            ),
            None
        );
    }

    #[test]
    fn registered_node_has_the_kubelet_shape() {
        let spec = NodeSpec {
            name: "cp-1".into(),
            kubelet_version: "v1.33.4".into(),
            provider_id: "aws:///us-east-1a/i-0abc".into(),
            zone: "us-east-1a".into(),
            internal_ip: "10.0.0.5".into(),
            labels: BTreeMap::from([("team".to_string(), "a".to_string())]),
            taints: vec![],
            max_pods: 0,
            control_plane: true,
            cloud: NodeCloud::InTree,
        };
        let n = node_object(&spec, "m", "s", "b", 0);
        let labels = &n["metadata"]["labels"];
        assert_eq!(labels["kubernetes.io/hostname"], "cp-1");
        assert_eq!(labels["topology.kubernetes.io/zone"], "us-east-1a");
        assert_eq!(labels["topology.kubernetes.io/region"], "us-east-1");
        assert_eq!(labels[CONTROL_PLANE_LABEL], "");
        assert_eq!(labels[EXCLUDE_LB_LABEL], "");
        assert_eq!(labels["team"], "a");
        assert_eq!(
            n["spec"]["taints"],
            json!([{"key": CONTROL_PLANE_LABEL, "effect": "NoSchedule"}])
        );
        assert_eq!(n["spec"]["providerID"], "aws:///us-east-1a/i-0abc");
        assert_eq!(n["status"]["allocatable"]["pods"], "110");
        assert_eq!(n["status"]["nodeInfo"]["kubeletVersion"], "v1.33.4");
        assert_eq!(n["status"]["nodeInfo"]["kubeProxyVersion"], "");
        let ready = n["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["reason"], "KubeletReady");
        // A worker with explicit taints keeps just those.
        let worker = NodeSpec {
            control_plane: false,
            taints: vec![json!({"key": "x", "effect": "NoSchedule"})],
            ..spec
        };
        let n = node_object(&worker, "m", "s", "b", 1);
        assert_eq!(
            n["spec"]["taints"],
            json!([{"key": "x", "effect": "NoSchedule"}])
        );
        assert!(n["metadata"]["labels"].get(CONTROL_PLANE_LABEL).is_none());
    }
}
