//! The assembled world: the API server emulator, the controllers and
//! kubelets, the simulated cloud with its machines, and a kubeadm cluster
//! in it — control-plane nodes with their static pods, worker pools that
//! joined long ago, the kube-system objects kubeadm leaves behind, and
//! (optionally) sample workloads with PodDisruptionBudgets. Tests and
//! `kubesurge sandbox` start it with [`World::start`] (or
//! [`World::start_with`] for [`WorldOptions`]). The control-plane machines
//! run scripts through [`World::node_exec`], against stand-ins for the
//! commands a kubeadm node has (see [`crate::cloud::standins`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jiff::{SignedDuration, Timestamp};
use kubesurge_provider::{CloudProvider, NodeExec, tags};
use kubesurge_sim::SimProvider;
use serde_json::{Value, json};
use thiserror::Error;

use crate::Timing;
use crate::apiserver::{self, ApiServerConfig, ApiServerHandle, ClusterCa};
use crate::cloud::discovery::parse_version;
use crate::cloud::{
    CloudConfig, ClusterLink, MachineRole, PackageManager, PrejoinedMachine, SimCloud,
};
use crate::controllers::Controllers;
use crate::resources::{
    CONFIGMAPS, DAEMONSETS, DEPLOYMENTS, NAMESPACES, NODES, PDBS, PODS, Resource, SERVICEACCOUNTS,
};
use crate::store::{Store, StoreError};

/// The CoreDNS image kubeadm v1.31 and v1.32 deploy.
pub const COREDNS_IMAGE: &str = "registry.k8s.io/coredns/coredns:v1.11.3";
/// The etcd image of the control-plane static pods.
pub const ETCD_IMAGE: &str = "registry.k8s.io/etcd:3.5.16-0";
/// Tag that marks control-plane instances in the cloud.
pub const ROLE_TAG: &str = "kubesurge.io/role";
/// Label that puts a worker in a pool (the pools' selector).
pub const POOL_LABEL: &str = "kubesurge.io/pool";
/// The taint kubeadm puts on control-plane nodes.
pub const CONTROL_PLANE_TAINT: &str = "node-role.kubernetes.io/control-plane";
/// How far apart the initial machines were launched, so that "oldest
/// first" has an order to follow.
pub const LAUNCH_SPACING: Duration = Duration::from_secs(5);

/// Least time between two readiness checks of [`World::wait_ready`].
const READY_CHECK_INTERVAL: Duration = Duration::from_millis(20);

/// A pool of workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSpec {
    pub name: String,
    pub workers: usize,
}

/// What world to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorldConfig {
    /// `cluster.name`: the instances' cluster tag.
    pub cluster_name: String,
    pub control_planes: usize,
    pub pools: Vec<PoolSpec>,
    pub zones: usize,
    /// Kubernetes version of every component and node (`v1.35.3`).
    pub version: String,
    pub timing: Timing,
    /// Sample Deployments with PDBs, a DaemonSet and an emptyDir user.
    pub workloads: bool,
}

impl Default for WorldConfig {
    fn default() -> Self {
        WorldConfig {
            cluster_name: "sandbox".into(),
            control_planes: 1,
            pools: vec![PoolSpec {
                name: "general".into(),
                workers: 3,
            }],
            zones: 3,
            version: "v1.35.3".into(),
            timing: Timing::sandbox(),
            workloads: true,
        }
    }
}

/// How the world's machines differ from the defaults, beyond
/// [`WorldConfig`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorldOptions {
    /// The last control-plane machine installs packages with dnf from the
    /// rpm repository; the others stay apt machines.
    pub package_manager_mix: bool,
    /// The cluster runs an external cloud controller manager (a DaemonSet
    /// `cloud-controller-manager` in kube-system) that initializes new
    /// Nodes this long after they register; see `cloud::ccm`. `None`: the
    /// kubelets label their Nodes themselves.
    pub cloud_controller: Option<std::time::Duration>,
}

/// Why the world could not start or settle.
#[derive(Debug, Error)]
pub enum WorldError {
    #[error("invalid world: {0}")]
    Config(String),
    #[error("cannot make the cluster CA: {0}")]
    Ca(String),
    #[error(transparent)]
    ApiServer(#[from] apiserver::StartError),
    #[error(transparent)]
    Cloud(#[from] crate::cloud::CloudStartError),
    #[error("cannot put a machine in the cloud: {0}")]
    Machine(#[from] crate::cloud::CloudError),
    #[error("cannot create {what}: {source}")]
    Seed {
        what: String,
        #[source]
        source: StoreError,
    },
    #[error("the world is not ready after {after:?}: {waiting_for}")]
    NotReady {
        after: Duration,
        waiting_for: String,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Token(#[from] apiserver::TokenError),
}

/// A running world.
pub struct World {
    pub store: Arc<Store>,
    pub apiserver: ApiServerHandle,
    pub cloud: SimCloud,
    pub controllers: Controllers,
    pub ca: Arc<ClusterCa>,
    config: WorldConfig,
    options: WorldOptions,
}

impl World {
    /// Build and start everything. Returns once every object and machine
    /// exists; [`World::wait_ready`] waits for them to settle.
    pub async fn start(config: WorldConfig) -> Result<World, WorldError> {
        World::start_with(config, WorldOptions::default()).await
    }

    /// [`World::start`] with machines set up as `options` say.
    pub async fn start_with(
        config: WorldConfig,
        options: WorldOptions,
    ) -> Result<World, WorldError> {
        validate(&config)?;
        let store = Store::new();
        let ca = Arc::new(ClusterCa::generate().map_err(|e| WorldError::Ca(e.to_string()))?);
        let apiserver = apiserver::start(
            store.clone(),
            ca.clone(),
            ApiServerConfig {
                version: config.version.clone(),
                bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            },
        )
        .await?;
        let controllers = Controllers::start(store.clone(), config.timing.clone());
        let endpoint = endpoint_of(&apiserver.url());
        seed_cluster(&store, &config, &apiserver.url(), &endpoint, &ca.cert_pem)?;
        let cloud = SimCloud::start(
            CloudConfig::new(config.zones, config.timing.clone())
                .with_cloud_controller(options.cloud_controller)
                .with_kubelets(controllers.kubelets.clone())
                .with_cluster(ClusterLink {
                    store: store.clone(),
                    apiserver: apiserver.clone(),
                }),
        )
        .await?;
        let world = World {
            store,
            apiserver,
            cloud,
            controllers,
            ca,
            config,
            options,
        };
        if world.options.cloud_controller.is_some() {
            create(
                &world.store,
                &DAEMONSETS,
                "kube-system",
                cloud_controller_manager(),
            )?;
        }
        world.add_machines()?;
        if world.config.workloads {
            seed_workloads(&world.store)?;
        }
        Ok(world)
    }

    pub fn config(&self) -> &WorldConfig {
        &self.config
    }

    pub fn options(&self) -> &WorldOptions {
        &self.options
    }

    /// `127.0.0.1:<port>`: the `apiServerEndpoint` joins use.
    pub fn api_endpoint(&self) -> String {
        endpoint_of(&self.apiserver.url())
    }

    /// `sha256:<hex>` of the cluster CA's public key, for `caCertHashes`.
    pub fn ca_cert_hash(&self) -> String {
        self.ca.ca_cert_hash()
    }

    /// The admin kubeconfig (YAML).
    pub fn kubeconfig_yaml(&self) -> String {
        self.apiserver.kubeconfig_yaml()
    }

    /// The `sim` provider for this world's cluster, as the tool builds it
    /// from the config.
    pub fn provider(&self) -> Arc<dyn CloudProvider> {
        Arc::new(SimProvider::new(
            self.cloud.url(),
            &self.config.cluster_name,
        ))
    }

    /// How the tool reaches the control-plane machines: the `sim`
    /// provider's `NodeExec`, over the cloud's HTTP API.
    pub fn node_exec(&self) -> Arc<dyn NodeExec> {
        Arc::new(SimProvider::new(
            self.cloud.url(),
            &self.config.cluster_name,
        ))
    }

    /// Write `dir/kubeconfig` (admin) and `dir/kubesurge.yaml` (a
    /// `RotationConfig` whose pools launch through the `sim` provider).
    pub fn write_config_files(&self, dir: &Path) -> Result<(PathBuf, PathBuf), WorldError> {
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            write_private(&path, text).map_err(|source| WorldError::Write {
                path: path.clone(),
                source,
            })?;
            Ok::<_, WorldError>(path)
        };
        std::fs::create_dir_all(dir).map_err(|source| WorldError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let kubeconfig = write("kubeconfig", &self.kubeconfig_yaml())?;
        let config = write(
            "kubesurge.yaml",
            &rotation_config(&self.config, self.cloud.url()),
        )?;
        Ok((kubeconfig, config))
    }

    /// Write `dir/kubeconfig-<namespace>-<name>`: a kubeconfig of the
    /// ServiceAccount `namespace/name` (created, without any role, when it
    /// does not exist) with a token valid for a day. What the account may
    /// do is what RBAC grants it, as on a cluster.
    pub fn write_service_account_kubeconfig(
        &self,
        dir: &Path,
        namespace: &str,
        name: &str,
    ) -> Result<PathBuf, WorldError> {
        const DAY_SECONDS: i64 = 24 * 3600;
        if self.store.get(&SERVICEACCOUNTS, namespace, name).is_none() {
            self.store
                .create(
                    &SERVICEACCOUNTS,
                    namespace,
                    serde_json::json!({"metadata": {"name": name}}),
                )
                .map_err(|source| WorldError::Seed {
                    what: format!("ServiceAccount {namespace}/{name}"),
                    source,
                })?;
        }
        let kubeconfig = self
            .apiserver
            .service_account_kubeconfig(namespace, name, DAY_SECONDS)?;
        let path = dir.join(format!("kubeconfig-{namespace}-{name}"));
        write_private(&path, &kubeconfig).map_err(|source| WorldError::Write {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }

    /// Wait until every node is Ready, every Deployment and DaemonSet has
    /// its pods, and every pod is Running and Ready.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), WorldError> {
        let mut changes = self.store.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        let expected_nodes =
            self.config.control_planes + self.config.pools.iter().map(|p| p.workers).sum::<usize>();
        loop {
            let waiting_for = match readiness(&self.store, expected_nodes) {
                None => return Ok(()),
                Some(w) => w,
            };
            // Wake on the next change, or re-check now and then in case the
            // change feed lagged.
            tokio::select! {
                _ = changes.recv() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(WorldError::NotReady { after: timeout, waiting_for });
                }
            }
            // A busy world changes constantly (heartbeats): look at most
            // every READY_CHECK_INTERVAL, taking every change in between.
            tokio::time::sleep(READY_CHECK_INTERVAL).await;
            use tokio::sync::broadcast::error::TryRecvError;
            while matches!(changes.try_recv(), Ok(_) | Err(TryRecvError::Lagged(_))) {}
        }
    }

    /// Stop the cloud, the controllers and kubelets, and the API server.
    pub fn stop(&self) {
        self.cloud.stop();
        self.controllers.stop();
        self.apiserver.stop();
    }

    /// The control-plane machines, then the workers of every pool, spread
    /// over the zones and launched `LAUNCH_SPACING` apart (oldest first).
    fn add_machines(&self) -> Result<(), WorldError> {
        let c = &self.config;
        let zones = self.cloud.zones();
        let image = self.cloud.image_for_version(&c.version).ok_or_else(|| {
            WorldError::Config(format!("the cloud has no image for {}", c.version))
        })?;
        let total = c.control_planes + c.pools.iter().map(|p| p.workers).sum::<usize>();
        let now = Timestamp::now();
        let launched_at = |n: usize| {
            let back = LAUNCH_SPACING.as_secs() as i64 * (total - n) as i64;
            now - SignedDuration::from_secs(back)
        };
        let mut n = 0;
        for i in 0..c.control_planes {
            let name = format!("cp-{}", i + 1);
            let instance = self.cloud.insert_prejoined(PrejoinedMachine {
                zone: zones[i % zones.len()].clone(),
                image_id: image.clone(),
                tags: BTreeMap::from([
                    (tags::CLUSTER.to_string(), c.cluster_name.clone()),
                    (tags::NAME.to_string(), name.clone()),
                    (ROLE_TAG.to_string(), "control-plane".to_string()),
                ]),
                role: MachineRole::ControlPlane,
                launched_at: launched_at(n),
                node_name: Some(name),
                labels: BTreeMap::new(),
                taints: vec![json!({"key": CONTROL_PLANE_TAINT, "effect": "NoSchedule"})],
                static_pods: control_plane_static_pods(&c.version, &self.api_endpoint()),
            })?;
            if self.options.package_manager_mix && i + 1 == c.control_planes {
                self.cloud
                    .set_package_manager(&instance.id.0, PackageManager::Dnf)?;
            }
            n += 1;
        }
        for pool in &c.pools {
            for i in 0..pool.workers {
                let name = format!("{}-{}", pool.name, i + 1);
                self.cloud.insert_prejoined(PrejoinedMachine {
                    zone: zones[i % zones.len()].clone(),
                    image_id: image.clone(),
                    tags: BTreeMap::from([
                        (tags::CLUSTER.to_string(), c.cluster_name.clone()),
                        (tags::POOL.to_string(), pool.name.clone()),
                        (tags::NAME.to_string(), name.clone()),
                    ]),
                    role: MachineRole::Worker,
                    launched_at: launched_at(n),
                    node_name: Some(name),
                    labels: BTreeMap::from([(POOL_LABEL.to_string(), pool.name.clone())]),
                    taints: Vec::new(),
                    static_pods: Vec::new(),
                })?;
                n += 1;
            }
        }
        Ok(())
    }
}

/// A dropped world stops: the cloud holds the API server (its machines'
/// `kubeadm` acts on it), so without this its server would outlive it.
impl Drop for World {
    fn drop(&mut self) {
        self.stop();
    }
}

fn validate(c: &WorldConfig) -> Result<(), WorldError> {
    let bad = |m: String| Err(WorldError::Config(m));
    if parse_version(&c.version).is_none() || !c.version.starts_with('v') {
        return bad(format!("version {:?} is not vMAJOR.MINOR.PATCH", c.version));
    }
    if c.control_planes == 0 {
        return bad("a cluster needs at least one control-plane node".into());
    }
    if c.zones == 0 || c.zones > 26 {
        return bad(format!("zones must be 1..=26, not {}", c.zones));
    }
    if c.cluster_name.is_empty() {
        return bad("the cluster needs a name".into());
    }
    let mut names: Vec<&str> = c.pools.iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return bad("pool names must be unique".into());
    }
    Ok(())
}

/// `127.0.0.1:6443` from `https://127.0.0.1:6443`.
fn endpoint_of(url: &str) -> String {
    url.trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string()
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

/// The `RotationConfig` (design §4) for this world.
pub fn rotation_config(c: &WorldConfig, cloud_url: &str) -> String {
    let mut yaml = format!(
        "apiVersion: kubesurge.io/v1alpha1\n\
         kind: RotationConfig\n\
         cluster:\n  name: {}\n\
         controlPlane:\n  exec: sim\n\
         pools:\n",
        c.cluster_name
    );
    for pool in &c.pools {
        yaml.push_str(&format!(
            "  - name: {name}\n\
             \x20   selector:\n      {POOL_LABEL}: {name}\n\
             \x20   provider: sim\n\
             \x20   sim:\n      endpoint: {cloud_url}\n\
             \x20   maxSurge: 1\n\
             \x20   maxUnavailable: 0\n\
             \x20   nodeLabels:\n      {POOL_LABEL}: {name}\n",
            name = pool.name
        ));
    }
    yaml
}

fn create(
    store: &Store,
    resource: &'static Resource,
    namespace: &str,
    object: Value,
) -> Result<(), WorldError> {
    let what = format!(
        "{} {namespace}/{}",
        resource.kind,
        object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("?")
    );
    match store.create(resource, namespace, object) {
        Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
        Err(source) => Err(WorldError::Seed { what, source }),
    }
}

/// The kubeadm config API of a version's ClusterConfiguration.
fn kubeadm_api(version: &str) -> &'static str {
    match parse_version(version) {
        Some((1, minor, _)) if minor < 31 => "kubeadm.k8s.io/v1beta3",
        _ => "kubeadm.k8s.io/v1beta4",
    }
}

/// What `kubeadm init` leaves in kube-system and kube-public.
fn seed_cluster(
    store: &Store,
    c: &WorldConfig,
    url: &str,
    endpoint: &str,
    ca_pem: &str,
) -> Result<(), WorldError> {
    for ns in ["kube-system", "kube-public", "kube-node-lease", "default"] {
        create(
            store,
            &NAMESPACES,
            "",
            json!({"metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}}),
        )?;
    }
    let cluster_configuration = format!(
        "apiVersion: {api}\n\
         kind: ClusterConfiguration\n\
         clusterName: {name}\n\
         kubernetesVersion: {version}\n\
         controlPlaneEndpoint: {endpoint}\n\
         certificatesDir: /etc/kubernetes/pki\n\
         imageRepository: registry.k8s.io\n\
         apiServer: {{}}\n\
         controllerManager: {{}}\n\
         scheduler: {{}}\n\
         dns: {{}}\n\
         etcd:\n  local:\n    dataDir: /var/lib/etcd\n\
         networking:\n  dnsDomain: cluster.local\n  podSubnet: 10.244.0.0/16\n  serviceSubnet: 10.96.0.0/12\n",
        api = kubeadm_api(&c.version),
        name = c.cluster_name,
        version = c.version,
    );
    create(
        store,
        &CONFIGMAPS,
        "kube-system",
        json!({
            "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
            "data": {"ClusterConfiguration": cluster_configuration}
        }),
    )?;
    let kubelet_configuration = "apiVersion: kubelet.config.k8s.io/v1beta1\n\
        kind: KubeletConfiguration\n\
        cgroupDriver: systemd\n\
        clusterDNS:\n- 10.96.0.10\n\
        clusterDomain: cluster.local\n\
        rotateCertificates: true\n\
        staticPodPath: /etc/kubernetes/manifests\n";
    create(
        store,
        &CONFIGMAPS,
        "kube-system",
        json!({
            "metadata": {"name": "kubelet-config", "namespace": "kube-system"},
            "data": {"kubelet": kubelet_configuration}
        }),
    )?;
    // The exact shape kubeadm writes: one cluster, no users or contexts.
    let cluster_info = format!(
        "apiVersion: v1\n\
         clusters:\n\
         - cluster:\n    certificate-authority-data: {ca}\n    server: {url}\n  name: \"\"\n\
         contexts: null\n\
         current-context: \"\"\n\
         kind: Config\n\
         preferences: {{}}\n\
         users: null\n",
        ca = STANDARD.encode(ca_pem),
    );
    create(
        store,
        &CONFIGMAPS,
        "kube-public",
        json!({
            "metadata": {"name": "cluster-info", "namespace": "kube-public"},
            "data": {"kubeconfig": cluster_info}
        }),
    )?;
    create(store, &DAEMONSETS, "kube-system", kube_proxy(&c.version))?;
    let minor = parse_version(&c.version).map_or(0, |(_, minor, _)| minor);
    create(store, &DEPLOYMENTS, "kube-system", coredns(minor))?;
    create(
        store,
        &PDBS,
        "kube-system",
        pdb(
            "coredns",
            "kube-system",
            json!({"k8s-app": "kube-dns"}),
            json!({"maxUnavailable": 1}),
        ),
    )?;
    Ok(())
}

fn kube_proxy(version: &str) -> Value {
    let labels = json!({"k8s-app": "kube-proxy"});
    json!({
        "metadata": {"name": "kube-proxy", "namespace": "kube-system", "labels": labels},
        "spec": {
            "selector": {"matchLabels": labels},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "priorityClassName": "system-node-critical",
                    "hostNetwork": true,
                    "serviceAccountName": "kube-proxy",
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [{
                        "name": "kube-proxy",
                        "image": format!("registry.k8s.io/kube-proxy:{version}"),
                        "command": ["/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf", "--hostname-override=$(NODE_NAME)"],
                    }],
                }
            }
        }
    })
}

/// The cloud controller manager as the cloud-provider-aws manifests run
/// it: a DaemonSet on the control-plane nodes in kube-system, tolerating
/// the taint of the Nodes it initializes.
fn cloud_controller_manager() -> Value {
    let labels = json!({"k8s-app": "cloud-controller-manager"});
    json!({
        "metadata": {"name": "cloud-controller-manager", "namespace": "kube-system", "labels": labels},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {"node-role.kubernetes.io/control-plane": ""},
                    "hostNetwork": true,
                    "tolerations": [
                        {"key": "node.cloudprovider.kubernetes.io/uninitialized", "value": "true", "effect": "NoSchedule"},
                        {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
                    ],
                    "containers": [{
                        "name": "cloud-controller-manager",
                        "image": "registry.k8s.io/provider-aws/cloud-controller-manager:v1.35.0",
                        "args": ["--v=2", "--cloud-provider=aws"],
                    }],
                }
            }
        }
    })
}

/// The CoreDNS image kubeadm of a minor deploys (its pinned
/// `CoreDNSVersion`).
pub fn coredns_image(minor: u64) -> String {
    let version = match minor {
        ..=28 => "v1.10.1",
        29 | 30 => "v1.11.1",
        31 | 32 => "v1.11.3",
        33 => "v1.12.0",
        34 => "v1.12.1",
        _ => "v1.13.1",
    };
    format!("registry.k8s.io/coredns/coredns:{version}")
}

fn coredns(minor: u64) -> Value {
    let labels = json!({"k8s-app": "kube-dns"});
    json!({
        "metadata": {"name": "coredns", "namespace": "kube-system", "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "25%"}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "priorityClassName": "system-cluster-critical",
                    "serviceAccountName": "coredns",
                    "tolerations": [
                        {"key": "CriticalAddonsOnly", "operator": "Exists"},
                        {"key": CONTROL_PLANE_TAINT, "effect": "NoSchedule"},
                    ],
                    "containers": [{
                        "name": "coredns",
                        "image": coredns_image(minor),
                        "args": ["-conf", "/etc/coredns/Corefile"],
                        "ports": [{"containerPort": 53, "name": "dns", "protocol": "UDP"}],
                    }],
                }
            }
        }
    })
}

fn pdb(name: &str, namespace: &str, match_labels: Value, budget: Value) -> Value {
    let mut spec = json!({"selector": {"matchLabels": match_labels}});
    if let (Some(spec), Some(budget)) = (spec.as_object_mut(), budget.as_object()) {
        spec.extend(budget.clone());
    }
    json!({"metadata": {"name": name, "namespace": namespace}, "spec": spec})
}

fn deployment(name: &str, namespace: &str, replicas: u32, image: &str, extra_spec: Value) -> Value {
    let labels = json!({"app": name});
    let mut pod_spec = json!({
        "terminationGracePeriodSeconds": 30,
        "containers": [{"name": name, "image": image}],
    });
    if let (Some(spec), Some(extra)) = (pod_spec.as_object_mut(), extra_spec.as_object()) {
        spec.extend(extra.clone());
    }
    json!({
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        }
    })
}

/// Sample workloads: what a drain has to respect.
fn seed_workloads(store: &Store) -> Result<(), WorldError> {
    for ns in ["shop", "monitoring"] {
        create(
            store,
            &NAMESPACES,
            "",
            json!({"metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}}),
        )?;
    }
    create(
        store,
        &DEPLOYMENTS,
        "shop",
        deployment(
            "web",
            "shop",
            6,
            "registry.example/shop/web:1.4.2",
            json!({}),
        ),
    )?;
    create(
        store,
        &PDBS,
        "shop",
        pdb(
            "web",
            "shop",
            json!({"app": "web"}),
            json!({"maxUnavailable": 1}),
        ),
    )?;
    create(
        store,
        &DEPLOYMENTS,
        "shop",
        deployment(
            "api",
            "shop",
            4,
            "registry.example/shop/api:2.0.1",
            json!({}),
        ),
    )?;
    create(
        store,
        &PDBS,
        "shop",
        pdb(
            "api",
            "shop",
            json!({"app": "api"}),
            json!({"minAvailable": "50%"}),
        ),
    )?;
    create(
        store,
        &DEPLOYMENTS,
        "shop",
        deployment(
            "cache",
            "shop",
            2,
            "registry.example/shop/cache:7.2",
            json!({"volumes": [{"name": "scratch", "emptyDir": {}}]}),
        ),
    )?;
    let agent = json!({"app": "node-agent"});
    create(
        store,
        &DAEMONSETS,
        "monitoring",
        json!({
            "metadata": {"name": "node-agent", "namespace": "monitoring", "labels": agent},
            "spec": {
                "selector": {"matchLabels": agent},
                "template": {
                    "metadata": {"labels": agent},
                    "spec": {
                        "tolerations": [{"operator": "Exists"}],
                        "containers": [{"name": "agent", "image": "registry.example/monitoring/node-agent:0.9"}],
                    }
                }
            }
        }),
    )?;
    Ok(())
}

/// The static pods kubeadm writes on a control-plane node.
fn control_plane_static_pods(version: &str, endpoint: &str) -> Vec<Value> {
    let pod = |component: &str, image: String, command: Vec<String>| {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": component,
                "namespace": "kube-system",
                "labels": {"component": component, "tier": "control-plane"},
            },
            "spec": {
                "hostNetwork": true,
                "priorityClassName": "system-node-critical",
                "containers": [{"name": component, "image": image, "command": command}],
            }
        })
    };
    let advertise = endpoint
        .split(':')
        .next()
        .unwrap_or("127.0.0.1")
        .to_string();
    vec![
        pod(
            "etcd",
            ETCD_IMAGE.to_string(),
            vec!["etcd".into(), "--data-dir=/var/lib/etcd".into()],
        ),
        pod(
            "kube-apiserver",
            format!("registry.k8s.io/kube-apiserver:{version}"),
            vec![
                "kube-apiserver".into(),
                format!("--advertise-address={advertise}"),
                "--enable-bootstrap-token-auth=true".into(),
            ],
        ),
        pod(
            "kube-controller-manager",
            format!("registry.k8s.io/kube-controller-manager:{version}"),
            vec![
                "kube-controller-manager".into(),
                "--controllers=*,bootstrapsigner,tokencleaner".into(),
            ],
        ),
        pod(
            "kube-scheduler",
            format!("registry.k8s.io/kube-scheduler:{version}"),
            vec!["kube-scheduler".into()],
        ),
    ]
}

/// What the world still waits for, or `None` when it is ready.
fn readiness(store: &Store, expected_nodes: usize) -> Option<String> {
    let (nodes, _) = store.list(&NODES, None, |_| true);
    if nodes.len() < expected_nodes {
        return Some(format!(
            "{} of {expected_nodes} nodes registered",
            nodes.len()
        ));
    }
    if let Some(node) = nodes.iter().find(|n| condition(n, "Ready") != Some("True")) {
        return Some(format!("node {} is not Ready", name_of(node)));
    }
    let (pods, _) = store.list(&PODS, None, |p| {
        p.pointer("/metadata/deletionTimestamp").is_none()
    });
    if let Some(pod) = pods.iter().find(|p| !pod_ready(p)) {
        return Some(format!(
            "pod {}/{} is not Running and Ready",
            namespace_of(pod),
            name_of(pod)
        ));
    }
    let (deployments, _) = store.list(&DEPLOYMENTS, None, |_| true);
    for d in &deployments {
        let want = d
            .pointer("/spec/replicas")
            .and_then(Value::as_u64)
            .unwrap_or(1) as usize;
        let have = matching_pods(&pods, d).count();
        if have < want {
            return Some(format!(
                "deployment {}/{} has {have} of {want} pods ready",
                namespace_of(d),
                name_of(d)
            ));
        }
    }
    let (daemonsets, _) = store.list(&DAEMONSETS, None, |_| true);
    for ds in &daemonsets {
        let tolerations = ds
            .pointer("/spec/template/spec/tolerations")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let selector = ds
            .pointer("/spec/template/spec/nodeSelector")
            .and_then(Value::as_object);
        let selected = |n: &Value| {
            selector.is_none_or(|sel| {
                sel.iter()
                    .all(|(k, v)| n.pointer("/metadata/labels").and_then(|l| l.get(k)) == Some(v))
            })
        };
        let want = nodes
            .iter()
            .filter(|n| tolerates_node(&tolerations, n) && selected(n))
            .count();
        let have = matching_pods(&pods, ds).count();
        if have < want {
            return Some(format!(
                "daemonset {}/{} has {have} of {want} pods ready",
                namespace_of(ds),
                name_of(ds)
            ));
        }
    }
    None
}

fn name_of(o: &Value) -> &str {
    o.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn namespace_of(o: &Value) -> &str {
    o.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn condition<'a>(o: &'a Value, kind: &str) -> Option<&'a str> {
    o.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))?
        .get("status")?
        .as_str()
}

fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/phase").and_then(Value::as_str) == Some("Running")
        && condition(pod, "Ready") == Some("True")
}

/// Pods in the workload's namespace matching its `matchLabels`.
fn matching_pods<'a>(
    pods: &'a [Arc<Value>],
    workload: &'a Value,
) -> impl Iterator<Item = &'a Arc<Value>> {
    let selector = workload
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object);
    let namespace = namespace_of(workload);
    pods.iter().filter(move |p| {
        namespace_of(p) == namespace
            && selector.is_some_and(|sel| {
                sel.iter()
                    .all(|(k, v)| p.pointer("/metadata/labels").and_then(|l| l.get(k)) == Some(v))
            })
    })
}

/// Whether pods with `tolerations` may run on `node` despite its
/// NoSchedule/NoExecute taints.
fn tolerates_node(tolerations: &[Value], node: &Value) -> bool {
    let taints = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    taints
        .iter()
        .filter(|t| {
            matches!(
                t.get("effect").and_then(Value::as_str),
                Some("NoSchedule" | "NoExecute")
            )
        })
        .all(|taint| {
            tolerations.iter().any(|tol| {
                let key = tol.get("key").and_then(Value::as_str).unwrap_or("");
                let exists = tol.get("operator").and_then(Value::as_str) == Some("Exists");
                let effect = tol.get("effect").and_then(Value::as_str).unwrap_or("");
                let key_ok = (key.is_empty() && exists)
                    || Some(key) == taint.get("key").and_then(Value::as_str);
                let value_ok = exists
                    || tol.get("value").and_then(Value::as_str).unwrap_or("")
                        == taint.get("value").and_then(Value::as_str).unwrap_or("");
                let effect_ok = effect.is_empty()
                    || Some(effect) == taint.get("effect").and_then(Value::as_str);
                key_ok && value_ok && effect_ok
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_config_names_every_pool_with_the_sim_endpoint() {
        let mut c = WorldConfig::default();
        c.pools.push(PoolSpec {
            name: "batch".into(),
            workers: 2,
        });
        let yaml = rotation_config(&c, "http://127.0.0.1:9");
        let doc: Value = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(doc["kind"], "RotationConfig");
        assert_eq!(doc["cluster"]["name"], "sandbox");
        assert_eq!(doc["pools"][1]["name"], "batch");
        assert_eq!(doc["pools"][1]["provider"], "sim");
        assert_eq!(doc["pools"][1]["sim"]["endpoint"], "http://127.0.0.1:9");
        assert_eq!(doc["pools"][1]["selector"][POOL_LABEL], "batch");
    }

    #[test]
    fn daemonset_placement_follows_tolerations() {
        let cp =
            json!({"spec": {"taints": [{"key": CONTROL_PLANE_TAINT, "effect": "NoSchedule"}]}});
        let worker = json!({"spec": {}});
        let all = vec![json!({"operator": "Exists"})];
        let cp_only = vec![json!({"key": CONTROL_PLANE_TAINT, "effect": "NoSchedule"})];
        assert!(tolerates_node(&all, &cp));
        assert!(tolerates_node(&cp_only, &cp));
        assert!(!tolerates_node(&[], &cp));
        assert!(tolerates_node(&[], &worker));
    }

    #[test]
    fn world_config_is_checked() {
        let bad_version = WorldConfig {
            version: "1.35".into(),
            ..Default::default()
        };
        assert!(matches!(validate(&bad_version), Err(WorldError::Config(_))));
        let no_cp = WorldConfig {
            control_planes: 0,
            ..Default::default()
        };
        assert!(validate(&no_cp).is_err());
        assert!(validate(&WorldConfig::default()).is_ok());
        assert_eq!(kubeadm_api("v1.30.2"), "kubeadm.k8s.io/v1beta3");
        assert_eq!(kubeadm_api("v1.35.3"), "kubeadm.k8s.io/v1beta4");
    }
}
