//! Reading the inventory from the Kubernetes API: the API server's version,
//! every node, the control plane's static pods, CoreDNS and kube-proxy.
//!
//! `collect` fetches (paginated, concurrently); `assemble` turns what was
//! fetched into the model and is pure, so every rule is tested without a
//! server.

use std::collections::BTreeMap;
use std::time::Duration;

use ::kube::api::ListParams;
use ::kube::{Api, Client};
use backon::{ExponentialBuilder, Retryable};
use futures::try_join;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Node, Pod};
use thiserror::Error;

use super::model::{Addons, ControlPlaneNode, Inventory, WorkerNode};
use crate::kube::pages::list_all;
use crate::version::KubeVersion;

/// Label kubeadm puts on control-plane nodes.
pub const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";
/// The label before v1.24. A node carrying only it is still a control-plane
/// node: treating it as a worker would offer it for replacement.
pub const LEGACY_MASTER_LABEL: &str = "node-role.kubernetes.io/master";
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
const LEGACY_ZONE_LABEL: &str = "failure-domain.beta.kubernetes.io/zone";
const SYSTEM_NAMESPACE: &str = "kube-system";

const APISERVER: &str = "kube-apiserver";
const CONTROLLER_MANAGER: &str = "kube-controller-manager";
const SCHEDULER: &str = "kube-scheduler";
const ETCD: &str = "etcd";
/// Where kubeadm records the cluster's configuration; `kubeadm upgrade
/// apply` uploads it last (cmd/kubeadm/app/phases/uploadconfig).
const KUBEADM_CONFIG: &str = "kubeadm-config";

/// The inventory could not be read, or says something unusable.
#[derive(Debug, Error)]
pub enum InventoryError {
    /// A request failed: the server is unreachable, or refused it.
    #[error("cannot read {what}: {source}")]
    Api {
        what: &'static str,
        #[source]
        source: ::kube::Error,
    },
    /// A version field that must be a Kubernetes version is not one.
    #[error(
        "{object}: {field} is {value:?}, which is not a Kubernetes version (vMAJOR.MINOR.PATCH)"
    )]
    Version {
        /// `node worker-1`, `daemonset kube-system/kube-proxy`, `/version`.
        object: String,
        /// `status.nodeInfo.kubeletVersion`, …
        field: String,
        value: String,
    },
    /// A field the inventory needs is absent.
    #[error("{object}: {field} is missing")]
    Missing { object: String, field: String },
}

impl InventoryError {
    /// Whether the API server could not be reached at all (as opposed to
    /// answering with an error, or answering nonsense), for a reason that
    /// may pass (not a TLS failure, nor credentials that cannot be made).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, InventoryError::Api { source, .. }
            if !matches!(source, ::kube::Error::Api(_))
                && crate::kube::errors::connect_refusal(source).is_none())
    }
}

/// Everything `assemble` needs, as fetched.
#[derive(Clone, Debug, Default)]
pub struct RawInventory {
    /// `gitVersion` from `/version`.
    pub git_version: String,
    pub nodes: Vec<Node>,
    /// kube-system pods labelled with a control-plane `component`.
    pub static_pods: Vec<Pod>,
    /// Deployment `kube-system/coredns`, if any.
    pub coredns: Option<Deployment>,
    /// DaemonSet `kube-system/kube-proxy`, if any.
    pub kube_proxy: Option<DaemonSet>,
    /// ConfigMap `kube-system/kubeadm-config`, if any and readable.
    pub kubeadm_config: Option<ConfigMap>,
}

/// Read the inventory. `pools` are (name, selector) in config order; a node
/// belongs to the first pool whose selector it matches.
pub async fn collect(
    client: &Client,
    pools: &[(String, BTreeMap<String, String>)],
) -> Result<Inventory, InventoryError> {
    let raw = fetch(client).await?;
    assemble(&raw, pools)
}

/// How long a command about to change the cluster waits for an API server
/// that is restarting (a control-plane hop in progress) before giving up on
/// reading the cluster.
pub const STARTUP_OUTAGE_TOLERANCE: Duration = Duration::from_secs(120);

/// [`collect`], riding through an API server restart: a rerun right after a
/// crash in the middle of a hop finds the apiserver restarting. Only an
/// unreachable server is waited for; an answer, even an error, is final.
pub async fn collect_through_restart(
    client: &Client,
    pools: &[(String, BTreeMap<String, String>)],
) -> Result<Inventory, InventoryError> {
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .without_max_times()
        .with_total_delay(Some(STARTUP_OUTAGE_TOLERANCE));
    (|| collect(client, pools))
        .retry(backoff)
        .when(InventoryError::is_unreachable)
        .notify(|error, _| {
            let cause = crate::kube::errors::innermost(error);
            tracing::warn!("the API server is unreachable ({cause}); retrying");
        })
        .await
}

/// The requests, run concurrently.
pub async fn fetch(client: &Client) -> Result<RawInventory, InventoryError> {
    let api_error = |what| move |source| InventoryError::Api { what, source };
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), SYSTEM_NAMESPACE);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), SYSTEM_NAMESPACE);
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), SYSTEM_NAMESPACE);
    let static_pod_selector =
        format!("component in ({APISERVER},{CONTROLLER_MANAGER},{SCHEDULER},{ETCD})");

    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), SYSTEM_NAMESPACE);
    let (version, nodes, static_pods, coredns, kube_proxy, kubeadm_config) = try_join!(
        async {
            client
                .apiserver_version()
                .await
                .map_err(api_error("the API server version (/version)"))
        },
        async {
            list_all(&nodes, &ListParams::default())
                .await
                .map_err(api_error("nodes"))
        },
        async {
            list_all(&pods, &ListParams::default().labels(&static_pod_selector))
                .await
                .map_err(api_error("control-plane static pods in kube-system"))
        },
        async {
            deployments
                .get_opt("coredns")
                .await
                .map_err(api_error("deployment kube-system/coredns"))
        },
        async {
            daemonsets
                .get_opt("kube-proxy")
                .await
                .map_err(api_error("daemonset kube-system/kube-proxy"))
        },
        async {
            // A client allowed to rotate workers but not to read kubeadm's
            // configuration (the scheduled module's role) plans no hops
            // from it: hops then fall back to the static pods alone.
            match configmaps.get_opt(KUBEADM_CONFIG).await {
                Err(e) if crate::kube::errors::is_forbidden(&e) => Ok(None),
                other => other.map_err(api_error("configmap kube-system/kubeadm-config")),
            }
        },
    )?;
    Ok(RawInventory {
        git_version: version.git_version,
        nodes,
        static_pods,
        coredns,
        kube_proxy,
        kubeadm_config,
    })
}

/// The model from what was fetched. Pure.
pub fn assemble(
    raw: &RawInventory,
    pools: &[(String, BTreeMap<String, String>)],
) -> Result<Inventory, InventoryError> {
    let apiserver_version = parse_version(&raw.git_version, "/version", "gitVersion")?;
    let static_pods = StaticPods::index(&raw.static_pods);

    let mut control_plane = Vec::new();
    let mut workers = Vec::new();
    for node in &raw.nodes {
        let facts = NodeFacts::read(node)?;
        if is_control_plane(node) {
            control_plane.push(ControlPlaneNode {
                apiserver: static_pods.version(&facts.name, APISERVER),
                controller_manager: static_pods.version(&facts.name, CONTROLLER_MANAGER),
                scheduler: static_pods.version(&facts.name, SCHEDULER),
                etcd: static_pods.tag(&facts.name, ETCD),
                name: facts.name,
                kubelet: facts.kubelet,
                zone: facts.zone,
                provider_id: facts.provider_id,
                ready: facts.ready,
            });
        } else {
            workers.push(WorkerNode {
                pool: pool_of(node, pools),
                name: facts.name,
                kubelet: facts.kubelet,
                created: facts.created,
                zone: facts.zone,
                provider_id: facts.provider_id,
                internal_ip: facts.internal_ip,
                ready: facts.ready,
                unschedulable: facts.unschedulable,
            });
        }
    }
    control_plane.sort_by(|a, b| a.name.cmp(&b.name));
    workers.sort_by(|a, b| a.name.cmp(&b.name));

    Ok(Inventory {
        apiserver_version,
        control_plane,
        workers,
        addons: addons(raw)?,
        kubeadm_version: raw
            .kubeadm_config
            .as_ref()
            .map(recorded_kubernetes_version)
            .transpose()?
            .flatten(),
    })
}

/// The `kubernetesVersion` of the ClusterConfiguration kubeadm stored in
/// `kube-system/kubeadm-config`: what `kubeadm upgrade node` writes on every
/// other control-plane node (cmd/kubeadm/app/util/config/cluster.go
/// `FetchInitConfigurationFromCluster`). `None` when absent.
fn recorded_kubernetes_version(config: &ConfigMap) -> Result<Option<KubeVersion>, InventoryError> {
    #[derive(serde::Deserialize)]
    struct ClusterConfiguration {
        #[serde(rename = "kubernetesVersion")]
        kubernetes_version: Option<String>,
    }
    const OBJECT: &str = "configmap kube-system/kubeadm-config";
    const FIELD: &str = "data.ClusterConfiguration.kubernetesVersion";
    let Some(text) = config
        .data
        .as_ref()
        .and_then(|d| d.get("ClusterConfiguration"))
    else {
        return Ok(None);
    };
    let parsed: ClusterConfiguration =
        serde_saphyr::from_str(text).map_err(|e| InventoryError::Missing {
            object: OBJECT.to_string(),
            field: format!("data.ClusterConfiguration (not YAML: {e})"),
        })?;
    parsed
        .kubernetes_version
        .map(|v| parse_version(&v, OBJECT, FIELD))
        .transpose()
}

fn parse_version(value: &str, object: &str, field: &str) -> Result<KubeVersion, InventoryError> {
    value.parse().map_err(|_| InventoryError::Version {
        object: object.to_string(),
        field: field.to_string(),
        value: value.to_string(),
    })
}

/// Carries `node-role.kubernetes.io/control-plane` (or the legacy
/// `…/master`), whatever the value.
pub fn is_control_plane(node: &Node) -> bool {
    node.metadata.labels.as_ref().is_some_and(|labels| {
        labels.contains_key(CONTROL_PLANE_LABEL) || labels.contains_key(LEGACY_MASTER_LABEL)
    })
}

/// The first pool whose selector the node's labels satisfy (every pair).
pub fn pool_of(node: &Node, pools: &[(String, BTreeMap<String, String>)]) -> Option<String> {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    pools
        .iter()
        .find(|(_, selector)| {
            selector
                .iter()
                .all(|(key, value)| labels.get(key) == Some(value))
        })
        .map(|(name, _)| name.clone())
}

/// What the model needs of any node.
struct NodeFacts {
    name: String,
    kubelet: KubeVersion,
    created: jiff::Timestamp,
    zone: Option<String>,
    provider_id: Option<String>,
    internal_ip: Option<String>,
    ready: bool,
    unschedulable: bool,
}

impl NodeFacts {
    fn read(node: &Node) -> Result<NodeFacts, InventoryError> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let object = format!("node {name}");
        let missing = |field: &str| InventoryError::Missing {
            object: object.clone(),
            field: field.to_string(),
        };
        let status = node.status.as_ref();
        let kubelet_field = "status.nodeInfo.kubeletVersion";
        let kubelet = status
            .and_then(|s| s.node_info.as_ref())
            .map(|info| info.kubelet_version.as_str())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| missing(kubelet_field))?;
        let kubelet = parse_version(kubelet, &object, kubelet_field)?;
        let created = node
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|time| time.0)
            .ok_or_else(|| missing("metadata.creationTimestamp"))?;
        let labels = node.metadata.labels.as_ref();
        let zone = labels
            .and_then(|l| l.get(ZONE_LABEL).or_else(|| l.get(LEGACY_ZONE_LABEL)))
            .cloned();
        let spec = node.spec.as_ref();
        let provider_id = spec
            .and_then(|s| s.provider_id.clone())
            .filter(|id| !id.is_empty());
        let unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        let internal_ip = status
            .and_then(|s| s.addresses.as_ref())
            .and_then(|addresses| addresses.iter().find(|a| a.type_ == "InternalIP"))
            .map(|a| a.address.clone());
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|conditions| conditions.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.status == "True");
        Ok(NodeFacts {
            name,
            kubelet,
            created,
            zone,
            provider_id,
            internal_ip,
            ready,
            unschedulable,
        })
    }
}

/// Static pod image tags by (node, component).
struct StaticPods {
    tags: BTreeMap<(String, String), Vec<String>>,
}

impl StaticPods {
    fn index(pods: &[Pod]) -> StaticPods {
        let mut tags: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for pod in pods {
            let component = pod
                .metadata
                .labels
                .as_ref()
                .and_then(|labels| labels.get("component"));
            let node = pod.spec.as_ref().and_then(|spec| spec.node_name.as_ref());
            let (Some(component), Some(node)) = (component, node) else {
                continue;
            };
            let containers = pod
                .spec
                .as_ref()
                .map(|s| s.containers.as_slice())
                .unwrap_or(&[]);
            if let Some(tag) = container_image_tag(containers, component) {
                tags.entry((node.clone(), component.clone()))
                    .or_default()
                    .push(tag.to_string());
            }
        }
        StaticPods { tags }
    }

    /// The version of `component` on `node`. `None` when its pod is missing
    /// or its tag is not a version (a digest-only image). With several pods
    /// (mid-upgrade), the oldest: skew checks must see the worst case.
    fn version(&self, node: &str, component: &str) -> Option<KubeVersion> {
        let tags = self.tags.get(&(node.to_string(), component.to_string()))?;
        let versions = tags
            .iter()
            .filter_map(|tag| match tag.parse::<KubeVersion>() {
                Ok(version) => Some(version),
                Err(_) => {
                    tracing::warn!(
                        node,
                        component,
                        tag,
                        "static pod image tag is not a Kubernetes version"
                    );
                    None
                }
            });
        versions.min()
    }

    /// The raw tag of `component` on `node` (etcd has its own versions).
    fn tag(&self, node: &str, component: &str) -> Option<String> {
        self.tags
            .get(&(node.to_string(), component.to_string()))
            .and_then(|tags| tags.iter().min().cloned())
    }
}

fn addons(raw: &RawInventory) -> Result<Addons, InventoryError> {
    let coredns = raw.coredns.as_ref().and_then(|deployment| {
        let containers = deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .map(|s| s.containers.as_slice())
            .unwrap_or(&[]);
        container_image_tag(containers, "coredns").map(str::to_string)
    });
    let kube_proxy = match &raw.kube_proxy {
        None => None,
        Some(daemonset) => {
            let object = "daemonset kube-system/kube-proxy";
            let field = "spec.template.spec.containers[kube-proxy].image";
            let containers = daemonset
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .map(|s| s.containers.as_slice())
                .unwrap_or(&[]);
            // kube-proxy's skew is checked like a kubelet's: a version that
            // cannot be read is an error, not an absence.
            let tag = container_image_tag(containers, "kube-proxy").ok_or_else(|| {
                InventoryError::Missing {
                    object: object.to_string(),
                    field: format!("{field} tag"),
                }
            })?;
            Some(parse_version(tag, object, field)?)
        }
    };
    Ok(Addons {
        coredns,
        kube_proxy,
    })
}

/// The image tag of the container named `name`, else of the first one.
fn container_image_tag<'a>(containers: &'a [Container], name: &str) -> Option<&'a str> {
    containers
        .iter()
        .find(|c| c.name == name)
        .or_else(|| containers.first())
        .and_then(|c| c.image.as_deref())
        .and_then(image_tag)
}

/// `registry.k8s.io/kube-apiserver:v1.34.2` → `v1.34.2`. Handles registry
/// ports (`host:5000/x:tag`) and digests (`x:tag@sha256:…`); `None` for an
/// image without a tag.
pub fn image_tag(image: &str) -> Option<&str> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_segment = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last_segment
        .split_once(':')
        .map(|(_, tag)| tag)
        .filter(|tag| !tag.is_empty())
}

#[cfg(test)]
mod tests {
    use ::kube::Config;
    use ::kube::config::Kubeconfig;
    use serde::de::DeserializeOwned;
    use serde_json::json;

    use super::*;
    use crate::kube::pages::PAGE_SIZE;

    fn node(name: &str, labels: serde_json::Value, kubelet: &str, ready: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels, "creationTimestamp": "2025-01-02T03:04:05Z"},
            "spec": {"providerID": format!("aws:///eu-west-1a/i-{name}")},
            "status": {
                "nodeInfo": {
                    "kubeletVersion": kubelet, "machineID": "", "systemUUID": "", "bootID": "",
                    "kernelVersion": "", "osImage": "", "containerRuntimeVersion": "",
                    "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"
                },
                "addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": "10.0.0.7"}],
                "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": ready}]
            }
        }))
        .unwrap()
    }

    fn static_pod(component: &str, node: &str, image: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("{component}-{node}"), "namespace": "kube-system",
                         "labels": {"component": component, "tier": "control-plane"}},
            "spec": {"nodeName": node, "containers": [{"name": component, "image": image}]}
        }))
        .unwrap()
    }

    fn workload<T: DeserializeOwned>(name: &str, image: &str) -> T {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "kube-system"},
            "spec": {
                "selector": {"matchLabels": {"k8s-app": name}},
                "template": {"spec": {"containers": [{"name": name, "image": image}]}}
            }
        }))
        .unwrap()
    }

    fn pools() -> Vec<(String, BTreeMap<String, String>)> {
        vec![
            (
                "gpu".to_string(),
                BTreeMap::from([
                    ("pool".to_string(), "general".to_string()),
                    ("gpu".to_string(), "true".to_string()),
                ]),
            ),
            (
                "general".to_string(),
                BTreeMap::from([("pool".to_string(), "general".to_string())]),
            ),
        ]
    }

    fn cluster() -> RawInventory {
        RawInventory {
            git_version: "v1.33.4".into(),
            nodes: vec![
                node(
                    "w2",
                    json!({"pool": "general", ZONE_LABEL: "eu-west-1b"}),
                    "v1.32.9",
                    "True",
                ),
                node("cp1", json!({CONTROL_PLANE_LABEL: ""}), "v1.33.4", "True"),
                node(
                    "w1",
                    json!({"pool": "general", "gpu": "true"}),
                    "v1.31.0",
                    "False",
                ),
                node(
                    "old-master",
                    json!({LEGACY_MASTER_LABEL: ""}),
                    "v1.33.4",
                    "True",
                ),
                node("stray", json!({}), "v1.33.4", "True"),
            ],
            static_pods: vec![
                static_pod(APISERVER, "cp1", "registry.k8s.io/kube-apiserver:v1.33.4"),
                static_pod(
                    CONTROLLER_MANAGER,
                    "cp1",
                    "registry.k8s.io/kube-controller-manager:v1.33.4",
                ),
                static_pod(
                    SCHEDULER,
                    "cp1",
                    "my-registry:5000/kube-scheduler:v1.33.3@sha256:abc",
                ),
                static_pod(ETCD, "cp1", "registry.k8s.io/etcd:3.5.21-0"),
                static_pod(
                    APISERVER,
                    "old-master",
                    "registry.k8s.io/kube-apiserver@sha256:abc",
                ),
            ],
            coredns: Some(workload(
                "coredns",
                "registry.k8s.io/coredns/coredns:v1.12.0",
            )),
            kube_proxy: Some(workload("kube-proxy", "registry.k8s.io/kube-proxy:v1.33.4")),
            kubeadm_config: Some(kubeadm_config("v1.33.4")),
        }
    }

    fn kubeadm_config(version: &str) -> ConfigMap {
        serde_json::from_value(json!({
            "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
            "data": {"ClusterConfiguration": format!(
                "apiServer: {{}}\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: {version}\n"
            )},
        }))
        .unwrap()
    }

    #[test]
    fn the_version_kubeadm_recorded_is_read_from_its_configuration() {
        let inventory = assemble(&cluster(), &pools()).unwrap();
        assert_eq!(inventory.kubeadm_version, Some(KubeVersion::new(1, 33, 4)));

        let raw = RawInventory {
            kubeadm_config: None,
            ..cluster()
        };
        assert_eq!(assemble(&raw, &pools()).unwrap().kubeadm_version, None);

        let raw = RawInventory {
            kubeadm_config: Some(kubeadm_config("1.x")),
            ..cluster()
        };
        let error = assemble(&raw, &pools()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "configmap kube-system/kubeadm-config: data.ClusterConfiguration.kubernetesVersion is \"1.x\", which is not a Kubernetes version (vMAJOR.MINOR.PATCH)"
        );
    }

    #[test]
    fn assembles_control_plane_workers_and_addons() {
        let inventory = assemble(&cluster(), &pools()).unwrap();
        assert_eq!(inventory.apiserver_version, KubeVersion::new(1, 33, 4));

        let names: Vec<&str> = inventory
            .control_plane
            .iter()
            .map(|n| n.name.as_str())
            .collect();
        assert_eq!(
            names,
            ["cp1", "old-master"],
            "the legacy master label counts"
        );
        let cp1 = &inventory.control_plane[0];
        assert_eq!(cp1.kubelet, KubeVersion::new(1, 33, 4));
        assert_eq!(cp1.apiserver, Some(KubeVersion::new(1, 33, 4)));
        assert_eq!(cp1.controller_manager, Some(KubeVersion::new(1, 33, 4)));
        assert_eq!(
            cp1.scheduler,
            Some(KubeVersion::new(1, 33, 3)),
            "registry port and digest"
        );
        assert_eq!(cp1.etcd.as_deref(), Some("3.5.21-0"));
        assert!(cp1.ready);
        let master = &inventory.control_plane[1];
        assert_eq!(master.apiserver, None, "digest-only image: unreadable");
        assert_eq!(master.scheduler, None, "no pod");

        let workers: Vec<(&str, Option<&str>)> = inventory
            .workers
            .iter()
            .map(|w| (w.name.as_str(), w.pool.as_deref()))
            .collect();
        assert_eq!(
            workers,
            [
                ("stray", None),
                ("w1", Some("gpu")),
                ("w2", Some("general"))
            ],
            "first matching pool wins; every pair of a selector must match"
        );
        let w1 = &inventory.workers[1];
        assert_eq!(w1.kubelet, KubeVersion::new(1, 31, 0));
        assert!(!w1.ready);
        assert!(!w1.unschedulable);
        assert_eq!(w1.internal_ip.as_deref(), Some("10.0.0.7"));
        assert_eq!(w1.provider_id.as_deref(), Some("aws:///eu-west-1a/i-w1"));
        assert_eq!(w1.created, "2025-01-02T03:04:05Z".parse().unwrap());
        assert_eq!(inventory.workers[2].zone.as_deref(), Some("eu-west-1b"));

        assert_eq!(inventory.addons.coredns.as_deref(), Some("v1.12.0"));
        assert_eq!(
            inventory.addons.kube_proxy,
            Some(KubeVersion::new(1, 33, 4))
        );
    }

    #[test]
    fn absent_addons_are_none() {
        let raw = RawInventory {
            coredns: None,
            kube_proxy: None,
            ..cluster()
        };
        assert_eq!(assemble(&raw, &pools()).unwrap().addons, Addons::default());
    }

    #[test]
    fn unreadable_versions_name_the_object_and_field() {
        let mut raw = cluster();
        raw.nodes.push(node("w3", json!({}), "1.x", "True"));
        let error = assemble(&raw, &pools()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "node w3: status.nodeInfo.kubeletVersion is \"1.x\", which is not a Kubernetes version (vMAJOR.MINOR.PATCH)"
        );

        let raw = RawInventory {
            git_version: "nonsense".into(),
            ..cluster()
        };
        let error = assemble(&raw, &pools()).unwrap_err();
        assert!(
            matches!(&error, InventoryError::Version { object, field, .. } if object == "/version" && field == "gitVersion"),
            "{error}"
        );

        let raw = RawInventory {
            kube_proxy: Some(workload("kube-proxy", "registry.k8s.io/kube-proxy:latest")),
            ..cluster()
        };
        let error = assemble(&raw, &pools()).unwrap_err();
        assert!(error.to_string().starts_with("daemonset kube-system/kube-proxy: spec.template.spec.containers[kube-proxy].image is \"latest\""), "{error}");
    }

    #[test]
    fn image_tags() {
        assert_eq!(
            image_tag("registry.k8s.io/kube-apiserver:v1.34.2"),
            Some("v1.34.2")
        );
        assert_eq!(
            image_tag("host:5000/kube-apiserver:v1.34.2"),
            Some("v1.34.2")
        );
        assert_eq!(image_tag("host:5000/kube-apiserver"), None);
        assert_eq!(
            image_tag("kube-apiserver:v1.34.2@sha256:0f"),
            Some("v1.34.2")
        );
        assert_eq!(image_tag("kube-apiserver@sha256:0f"), None);
        assert_eq!(image_tag("etcd:3.5.15-0"), Some("3.5.15-0"));
    }

    /// Against the emulator over HTTPS: more nodes than fit in one page.
    #[tokio::test]
    async fn collect_follows_every_page() {
        use kubesurge_testworld::apiserver::{self, ApiServerConfig, ClusterCa};
        use kubesurge_testworld::resources::NODES;
        use kubesurge_testworld::store::Store;

        let store = Store::new();
        let ca = std::sync::Arc::new(ClusterCa::generate().unwrap());
        let server = apiserver::start(store.clone(), ca, ApiServerConfig::default())
            .await
            .unwrap();
        let workers = 2 * PAGE_SIZE as usize + 7;
        for i in 0..workers {
            let mut worker = serde_json::to_value(node(
                &format!("w{i:04}"),
                json!({"pool": "general"}),
                "v1.33.4",
                "True",
            ))
            .unwrap();
            worker["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("creationTimestamp");
            store.create(&NODES, "", worker).unwrap();
        }
        let kubeconfig = Kubeconfig::from_yaml(&server.kubeconfig_yaml()).unwrap();
        let config = Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        let client = Client::try_from(config).unwrap();

        let inventory = collect(&client, &pools()).await.unwrap();
        assert_eq!(inventory.workers.len(), workers);
        assert!(
            inventory
                .workers
                .iter()
                .all(|w| w.pool.as_deref() == Some("general"))
        );
        assert_eq!(inventory.apiserver_version, KubeVersion::new(1, 33, 4));
        assert_eq!(inventory.addons, Addons::default(), "no add-ons installed");
        assert_eq!(
            server.request_counts().get("list", "nodes"),
            3,
            "{} nodes in pages of {PAGE_SIZE}",
            workers
        );
    }
}
