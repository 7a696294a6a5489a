//! The simulated cloud: zones, subnets, images, instances with tags and
//! user data, served over HTTP on loopback; machines that boot, run
//! kubeadm's join discovery for real and start a kubelet. The `sim`
//! provider (crate `kubesurge-sim`) talks to it across the process
//! boundary, over the API its [`api`] module defines.
//!
//! - [`state`]: the bookkeeping and the API's decisions (pure).
//! - [`server`]: the HTTP server, request counters and injected faults.
//! - [`faults`]: what a test can break.
//! - [`userdata`]: the user-data contract with the rotation engine.
//! - [`discovery`]: kubeadm's join discovery and preflight checks.
//! - [`machine`]: one simulated VM from boot to termination.
//! - [`noderoot`]: the filesystems of the machines that run scripts (the
//!   control-plane machines): packages, repositories, static pods.
//! - [`standins`]: `kubeadm`, `apt-get`, `dnf`, `systemctl`, … as bash
//!   scripts that act on those filesystems and call back into the world.
//! - [`exec`]: running a script on a machine (the `Exec` action).
//! - [`control`]: what the stand-ins ask the world to do (`kubeadm
//!   upgrade`, kubelet restarts, `kubectl get`), and [`kubeadm`], its pure
//!   decisions.
//! - [`ccm`]: the external cloud controller manager that initializes Nodes.
//!
//! [`SimCloud`] is the Rust handle tests and the world hold: the URL, the
//! faults, machine status and the instance table.
//!
//! [`api`]: kubesurge_sim::api

pub mod ccm;
pub mod control;
pub mod discovery;
mod exec;
pub mod faults;
pub mod kubeadm;
pub mod machine;
pub mod noderoot;
mod server;
pub mod standins;
pub mod state;
pub mod userdata;

pub use control::{ClusterLink, ControlEvent};
pub use discovery::{DiscoveryConfig, JoinFailure};
pub use exec::MAX_TIMEOUT as MAX_EXEC_TIMEOUT;
pub use faults::{Faults, Times};
pub use machine::{Machine, MachineInfo, MachineRole, MachineStatus, PrejoinedMachine};
pub use noderoot::PackageManager;
pub use state::CloudError;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jiff::Timestamp;
use kubesurge_provider::Instance;
use kubesurge_sim::api::{Action, VERSION_TAG};
use thiserror::Error;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Timing;
use crate::controllers::KubeletFleet;
use state::CloudState;

/// How to start a cloud.
#[derive(Clone)]
pub struct CloudConfig {
    /// Number of zones (`zone-a`, `zone-b`, …).
    pub zones: usize,
    pub timing: Timing,
    /// Where machines start their kubelets; `None` for a cloud without a
    /// cluster (machines then stop after a successful handshake).
    pub kubelets: Option<Arc<KubeletFleet>>,
    /// How patient machines are in discovery.
    pub discovery: DiscoveryConfig,
    /// Where the API listens; port 0 picks a free one.
    pub bind: SocketAddr,
    /// The cluster that `kubeadm` and `kubectl` on control-plane machines
    /// act on; `None` for a cloud without one.
    pub cluster: Option<ClusterLink>,
    /// The cluster runs an external cloud controller manager that
    /// initializes new Nodes this long after they register ([`ccm`]).
    /// `None`: kubelets label their Nodes themselves, as kubelets with the
    /// in-tree cloud providers did before v1.29.
    pub cloud_controller: Option<Duration>,
}

impl CloudConfig {
    /// `zones` zones, discovery scaled to `timing` (kubeadm waits up to 5
    /// minutes; here twenty boots, at least two seconds).
    pub fn new(zones: usize, timing: Timing) -> CloudConfig {
        let timeout = (timing.boot * 20).clamp(Duration::from_secs(2), Duration::from_secs(300));
        let poll = (timeout / 50).clamp(Duration::from_millis(20), Duration::from_secs(5));
        CloudConfig {
            zones,
            timing,
            kubelets: None,
            discovery: DiscoveryConfig {
                timeout,
                poll,
                request_timeout: Duration::from_secs(10),
            },
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            cluster: None,
            cloud_controller: None,
        }
    }

    /// Run an external cloud controller manager (see [`ccm`]).
    pub fn with_cloud_controller(mut self, delay: Option<Duration>) -> CloudConfig {
        self.cloud_controller = delay;
        self
    }

    pub fn with_kubelets(mut self, kubelets: Arc<KubeletFleet>) -> CloudConfig {
        self.kubelets = Some(kubelets);
        self
    }

    pub fn with_cluster(mut self, cluster: ClusterLink) -> CloudConfig {
        self.cluster = Some(cluster);
        self
    }
}

/// Failure to start the cloud's API.
#[derive(Debug, Error)]
#[error("cannot start the simulated cloud: {0}")]
pub struct CloudStartError(pub String);

/// A wait for a machine that did not end as hoped.
#[derive(Debug, Error, PartialEq)]
pub enum WaitError {
    #[error("no machine {0}")]
    UnknownMachine(String),
    #[error("machine {id} still {status:?} after {after:?}")]
    Timeout {
        id: String,
        status: MachineStatus,
        after: Duration,
    },
}

/// Everything behind one lock: the API's answers and the machines' state
/// change together.
pub(crate) struct Inner {
    pub(crate) cloud: CloudState,
    pub(crate) machines: HashMap<String, Machine>,
    pub(crate) faults: Faults,
    pub(crate) counters: BTreeMap<Action, u64>,
    pub(crate) control_log: Vec<ControlEvent>,
}

pub(crate) struct Shared {
    inner: Mutex<Inner>,
    changes: watch::Sender<u64>,
    pub(crate) config: CloudConfig,
    pub(crate) cancel: CancellationToken,
    /// `http://127.0.0.1:<port>`, for the stand-ins' callbacks.
    pub(crate) url: String,
    pub(crate) roots: noderoot::NodeRoots,
    /// One `kubeadm upgrade` at a time in the world.
    pub(crate) kubeadm_lock: tokio::sync::Mutex<()>,
    exec_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every mutation is applied whole, so a poisoned lock holds
        // consistent data.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wake whoever waits for a machine or instance change.
    pub(crate) fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The lock that keeps scripts on one machine one at a time.
    pub(crate) fn exec_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.exec_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_string())
            .or_default()
            .clone()
    }
}

/// The handle on a running cloud. Cheap to clone.
#[derive(Clone)]
pub struct SimCloud {
    shared: Arc<Shared>,
    url: String,
}

impl SimCloud {
    /// Start the cloud's HTTP API on loopback.
    pub async fn start(config: CloudConfig) -> Result<SimCloud, CloudStartError> {
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|e| CloudStartError(format!("bind {}: {e}", config.bind)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| CloudStartError(e.to_string()))?;
        let url = format!("http://{addr}");
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                cloud: CloudState::new(config.zones),
                machines: HashMap::new(),
                faults: Faults::default(),
                counters: BTreeMap::new(),
                control_log: Vec::new(),
            }),
            changes: watch::channel(0).0,
            config,
            cancel: CancellationToken::new(),
            url: url.clone(),
            roots: noderoot::NodeRoots::default(),
            kubeadm_lock: tokio::sync::Mutex::new(()),
            exec_locks: Mutex::new(HashMap::new()),
        });
        tokio::spawn(server::serve(listener, shared.clone()));
        if let (Some(delay), Some(cluster)) = (
            shared.config.cloud_controller,
            shared.config.cluster.as_ref(),
        ) {
            tokio::spawn(ccm::run(shared.clone(), cluster.store.clone(), delay));
        }
        Ok(SimCloud { shared, url })
    }

    /// `http://127.0.0.1:<port>`: the `sim.endpoint` of a pool.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stop serving and stop every machine task and script. Kubelets
    /// already started keep running until the world stops them. The
    /// machines' filesystems go once nothing uses them.
    pub fn stop(&self) {
        self.shared.cancel.cancel();
        self.shared.roots.release();
    }

    /// Change the injected faults.
    pub fn with_faults<R>(&self, change: impl FnOnce(&mut Faults) -> R) -> R {
        change(&mut self.shared.lock().faults)
    }

    /// Calls served (or refused) per action since start or the last reset.
    pub fn counters(&self) -> BTreeMap<Action, u64> {
        self.shared.lock().counters.clone()
    }

    pub fn count(&self, action: Action) -> u64 {
        self.shared
            .lock()
            .counters
            .get(&action)
            .copied()
            .unwrap_or(0)
    }

    pub fn reset_counters(&self) {
        self.shared.lock().counters.clear();
    }

    /// Zone names, in order.
    pub fn zones(&self) -> Vec<String> {
        self.shared
            .lock()
            .cloud
            .zones()
            .iter()
            .map(|z| z.name.clone())
            .collect()
    }

    /// The subnet of a zone.
    pub fn subnet_of(&self, zone: &str) -> Option<String> {
        let inner = self.shared.lock();
        inner
            .cloud
            .zones()
            .iter()
            .find(|z| z.name == zone)
            .map(|z| z.subnet.clone())
    }

    /// The newest image tagged with `version` (`v1.35.3`).
    pub fn image_for_version(&self, version: &str) -> Option<String> {
        let inner = self.shared.lock();
        let tags = BTreeMap::from([(VERSION_TAG.to_string(), version.to_string())]);
        inner
            .cloud
            .find_images(&tags, &[])
            .into_iter()
            .max_by_key(|i| i.created)
            .map(|i| i.id.clone())
    }

    /// Publish another image for `version` (an image refresh); it is the
    /// newest when `created` is later than the others. Returns its id.
    pub fn add_image(&self, version: &str, created: Timestamp) -> String {
        self.shared.lock().cloud.add_image(version, created)
    }

    /// Deregister every image of `version` (`v1.36.2`); returns how many.
    pub fn remove_images(&self, version: &str) -> usize {
        self.shared.lock().cloud.remove_images(version)
    }

    /// Every instance, terminated ones included, in launch order.
    pub fn instances(&self) -> Vec<Instance> {
        let inner = self.shared.lock();
        inner.cloud.instances().map(|r| r.view().into()).collect()
    }

    pub fn instance(&self, id: &str) -> Option<Instance> {
        self.shared
            .lock()
            .cloud
            .instance(id)
            .map(|r| r.view().into())
    }

    /// The user data an instance was launched with.
    pub fn user_data(&self, id: &str) -> Option<String> {
        self.shared
            .lock()
            .cloud
            .instance(id)
            .map(|r| r.user_data.clone())
    }

    /// Where a machine is in its life.
    pub fn machine_status(&self, id: &str) -> Option<MachineStatus> {
        self.shared
            .lock()
            .machines
            .get(id)
            .map(|m| m.status.clone())
    }

    /// Everything known about a machine.
    pub fn machine(&self, id: &str) -> Option<MachineInfo> {
        let inner = self.shared.lock();
        let record = inner.cloud.instance(id)?;
        inner.machines.get(id).map(|m| m.info(record))
    }

    /// Change a machine's own state (what commands run on it install or
    /// restart). `None` when there is no such machine.
    pub fn with_machine<R>(&self, id: &str, change: impl FnOnce(&mut Machine) -> R) -> Option<R> {
        let outcome = self.shared.lock().machines.get_mut(id).map(change);
        self.shared.changed();
        outcome
    }

    /// The machine whose kubelet registered `node`.
    pub fn machine_of_node(&self, node: &str) -> Option<MachineInfo> {
        let inner = self.shared.lock();
        inner.cloud.instances().find_map(|r| {
            let m = inner.machines.get(&r.id)?;
            (m.node_name.as_deref() == Some(node)
                && r.state != kubesurge_provider::InstanceState::Terminated)
                .then(|| m.info(r))
        })
    }

    /// Every machine, in launch order.
    pub fn machines(&self) -> Vec<MachineInfo> {
        let inner = self.shared.lock();
        inner
            .cloud
            .instances()
            .filter_map(|r| inner.machines.get(&r.id).map(|m| m.info(r)))
            .collect()
    }

    /// Wait until the machine's status satisfies `done`, up to `timeout`.
    pub async fn wait_for_machine(
        &self,
        id: &str,
        timeout: Duration,
        done: impl Fn(&MachineStatus) -> bool,
    ) -> Result<MachineStatus, WaitError> {
        let mut changes = self.shared.changes.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let status = self
                .machine_status(id)
                .ok_or_else(|| WaitError::UnknownMachine(id.to_string()))?;
            if done(&status) {
                return Ok(status);
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                // The sender lives as long as `self`; a closed channel or
                // the deadline both end the wait.
                _ => {
                    return Err(WaitError::Timeout {
                        id: id.to_string(),
                        status,
                        after: timeout,
                    });
                }
            }
        }
    }

    /// Put a machine in the cloud that is already running and joined (the
    /// world's initial nodes): its instance is backdated to
    /// `machine.launched_at` and its kubelet starts now. A control-plane
    /// machine gets a filesystem (an apt node with the packages of its
    /// image's version, held, and its static pods as manifests) and runs
    /// scripts through `Exec`.
    pub fn insert_prejoined(&self, machine: PrejoinedMachine) -> Result<Instance, CloudError> {
        machine::insert_prejoined(&self.shared, machine)
    }

    /// Make a machine with a filesystem a dnf, yum or apt machine: its
    /// repository configuration, package state and `PATH` change; its
    /// packages stay at their version.
    pub fn set_package_manager(&self, id: &str, manager: PackageManager) -> Result<(), CloudError> {
        let (root, version) = {
            let inner = self.shared.lock();
            let machine = inner
                .machines
                .get(id)
                .ok_or_else(|| CloudError::UnknownInstance(id.to_string()))?;
            let layout = self
                .shared
                .roots
                .existing()
                .filter(|_| machine.package_manager.is_some())
                .ok_or_else(|| CloudError::NodeRoot(format!("machine {id} runs no scripts")))?;
            (layout.root(id), machine.kubeadm_version.clone())
        };
        let version = noderoot::installed_version(&root, "kubeadm")
            .or(version)
            .ok_or_else(|| CloudError::NodeRoot(format!("machine {id} has no kubeadm")))?;
        noderoot::set_package_manager(&root, manager, &version)
            .map_err(|e| CloudError::NodeRoot(e.to_string()))?;
        if let Some(m) = self.shared.lock().machines.get_mut(id) {
            m.package_manager = Some(manager);
        }
        self.shared.changed();
        Ok(())
    }

    /// The `/` of a machine that runs scripts (for tests that prepare or
    /// inspect a node), `None` for other machines.
    pub fn node_root(&self, id: &str) -> Option<PathBuf> {
        let has_root = self
            .shared
            .lock()
            .machines
            .get(id)
            .is_some_and(|m| m.package_manager.is_some());
        has_root
            .then(|| self.shared.roots.existing().map(|l| l.root(id)))
            .flatten()
    }

    /// The environment scripts run with on a machine that runs them
    /// (`PATH` of its stand-ins, `HOME`, `TMPDIR`, `KUBESURGE_ROOT`,
    /// `KUBESURGE_SIM_CONTROL`; nothing else), with its directories made,
    /// for tests that run the machine's scripts another way than `Exec`:
    /// through an sshd that stands in for the node's own. Such scripts
    /// skip what `Exec` adds: one script at a time per machine, and the
    /// machine's package versions read back after each.
    pub fn script_environment(&self, id: &str) -> Result<BTreeMap<String, String>, CloudError> {
        let (layout, manager) = {
            let inner = self.shared.lock();
            let manager = inner
                .machines
                .get(id)
                .ok_or_else(|| CloudError::UnknownInstance(id.to_string()))?
                .package_manager;
            (self.shared.roots.existing(), manager)
        };
        let (Some(layout), Some(manager)) = (layout, manager) else {
            return Err(CloudError::NodeRoot(format!(
                "machine {id} runs no scripts"
            )));
        };
        for dir in [layout.home(id), layout.run_dir(id)] {
            std::fs::create_dir_all(&dir)
                .map_err(|e| CloudError::NodeRoot(format!("{}: {e}", dir.display())))?;
        }
        Ok(exec::environment(&self.shared.url, &layout, id, manager)
            .into_iter()
            .map(|(name, value)| (name.to_string(), value))
            .collect())
    }

    /// Move a running machine to another private address, as when its
    /// network interface changes: its instance reports the address at once,
    /// its Node's `InternalIP` from the kubelet's next heartbeat. For tests
    /// that reach machines over the network: a loopback address for an sshd
    /// that stands in for the node's own.
    pub fn set_private_ip(&self, id: &str, address: std::net::IpAddr) -> Result<(), CloudError> {
        let node = {
            let mut inner = self.shared.lock();
            inner.cloud.set_private_ip(id, &address.to_string())?;
            inner.machines.get(id).and_then(|m| m.node_name.clone())
        };
        if let (Some(node), Some(kubelets)) = (node, &self.shared.config.kubelets) {
            kubelets.set_internal_ip(&node, &address.to_string());
        }
        self.shared.changed();
        Ok(())
    }

    /// Change an instance's tags in place, as `CreateTags`/`DeleteTags`
    /// (or a Terraform apply) would: `change` gets the current set.
    pub fn edit_tags(
        &self,
        id: &str,
        change: impl FnOnce(&mut BTreeMap<String, String>),
    ) -> Result<(), CloudError> {
        let mut inner = self.shared.lock();
        let mut tags = inner
            .cloud
            .instances()
            .find(|r| r.id == id)
            .map(|r| r.tags.clone())
            .ok_or_else(|| CloudError::UnknownInstance(id.to_string()))?;
        change(&mut tags);
        inner.cloud.set_tags(id, tags)?;
        drop(inner);
        self.shared.changed();
        Ok(())
    }

    /// Every file of a machine's filesystem with its content, by path
    /// under its `/` (empty for a machine without one).
    pub fn node_files(&self, id: &str) -> BTreeMap<String, Vec<u8>> {
        self.node_root(id)
            .map(|root| noderoot::files(&root))
            .unwrap_or_default()
    }

    /// Run `request` on its machine as the `Exec` action does (the same
    /// bash, stand-ins and filesystem, one script at a time per machine,
    /// the package versions read back after it), for another way of
    /// reaching machines (the moto world's SSM agent); `stop` kills it.
    /// The error says why it cannot start.
    pub fn exec(
        &self,
        request: kubesurge_sim::api::ExecRequest,
        stop: CancellationToken,
    ) -> Result<tokio::sync::mpsc::Receiver<kubesurge_sim::api::ExecEvent>, String> {
        exec::open_cancellable(&self.shared, request, stop)
            .map_err(|(_, code, message)| format!("{code}: {message}"))
    }

    /// What commands on machines changed in the world, in order.
    pub fn control_events(&self) -> Vec<ControlEvent> {
        self.shared.lock().control_log.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_patience_scales_with_boot_time() {
        let fast = CloudConfig::new(3, Timing::fast());
        assert_eq!(fast.discovery.timeout, Duration::from_secs(3));
        assert!(fast.discovery.poll < Duration::from_millis(100));
        let sandbox = CloudConfig::new(3, Timing::sandbox());
        assert_eq!(sandbox.discovery.timeout, Duration::from_secs(60));
    }
}
