//! Simulated machines behind EC2 instances in moto. moto keeps instances as
//! records only; this watches it (DescribeInstances by the cluster tag,
//! every `poll`) and gives each new instance the life of a sim machine:
//! boot for `timing.boot`, read the user data (DescribeInstanceAttribute),
//! run kubeadm's join discovery for real against the emulated API server,
//! and start a kubelet that registers the Node with providerID
//! `aws:///<zone>/<id>` and the kubelet version of the instance's image
//! (its `kubernetes-version` tag). An instance that shuts down or is
//! terminated stops its kubelet.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kubesurge_provider::tags;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::ec2::{Ec2, Ec2Instance};
use crate::Timing;
use crate::cloud::discovery::{DiscoveryConfig, JoinFailure, check_kubelet_version, discover};
use crate::cloud::machine::{MAX_PODS, MachineStatus, hostname};
use crate::cloud::userdata::parse_user_data;
use crate::controllers::{KubeletFleet, NodeSpec};
use kubesurge_sim::api::VERSION_TAG;

/// Told the ids of instances EC2 accepted to terminate.
pub type Terminator = Arc<dyn Fn(&[String]) + Send + Sync>;

/// One machine as tests see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MotoMachine {
    pub instance_id: String,
    pub zone: String,
    pub status: MachineStatus,
    pub node_name: Option<String>,
}

struct Shared {
    ec2: Ec2,
    cluster: String,
    kubelets: Arc<KubeletFleet>,
    timing: Timing,
    discovery: DiscoveryConfig,
    machines: Mutex<HashMap<String, MotoMachine>>,
    /// Kubernetes version of each image, once looked up.
    image_versions: Mutex<HashMap<String, Option<String>>>,
    changes: watch::Sender<u64>,
    cancel: CancellationToken,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, MotoMachine>> {
        self.machines.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn set_status(&self, id: &str, status: MachineStatus) {
        if let Some(m) = self.lock().get_mut(id)
            && m.status != MachineStatus::Terminated
        {
            m.status = status;
        }
        self.changed();
    }
}

/// The watcher and its machines. Stops when dropped or [`stop`]ped.
///
/// [`stop`]: MotoMachines::stop
pub struct MotoMachines {
    shared: Arc<Shared>,
}

fn going_away(state: &str) -> bool {
    matches!(state, "shutting-down" | "terminated")
}

impl MotoMachines {
    /// Machines for the instances tagged with `cluster`; nothing is
    /// watched until [`MotoMachines::watch`].
    pub fn new(
        ec2: Ec2,
        cluster: &str,
        kubelets: Arc<KubeletFleet>,
        timing: Timing,
        discovery: DiscoveryConfig,
    ) -> MotoMachines {
        MotoMachines {
            shared: Arc::new(Shared {
                ec2,
                cluster: cluster.to_string(),
                kubelets,
                timing,
                discovery,
                machines: Mutex::new(HashMap::new()),
                image_versions: Mutex::new(HashMap::new()),
                changes: watch::channel(0).0,
                cancel: CancellationToken::new(),
            }),
        }
    }

    /// Look at moto every `poll` for new instances and instances going
    /// away. Start it after [`MotoMachines::add_prejoined`] of the initial
    /// machines, so that they are not booted a second time.
    pub fn watch(&self, poll: Duration) {
        let watcher = self.shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = watcher.cancel.cancelled() => return,
                    _ = tokio::time::sleep(poll) => {}
                }
                match watched_instances(&watcher).await {
                    Ok(instances) => reconcile(&watcher, instances),
                    Err(e) => tracing::debug!(error = %e, "moto world: cannot describe instances"),
                }
            }
        });
    }

    /// What to call when EC2 accepted the termination of instances: their
    /// kubelets stop before the caller learns of it, as a real machine is
    /// off once EC2 says terminated (moto terminates at once, faster than
    /// any poll). Unknown ids are remembered as terminated.
    pub fn terminator(&self) -> Terminator {
        let shared = self.shared.clone();
        Arc::new(move |ids: &[String]| {
            {
                let mut machines = shared.lock();
                for id in ids {
                    let m = machines.entry(id.clone()).or_insert_with(|| MotoMachine {
                        instance_id: id.clone(),
                        zone: String::new(),
                        status: MachineStatus::Booting,
                        node_name: None,
                    });
                    if m.status != MachineStatus::Terminated {
                        if let Some(node) = &m.node_name {
                            shared.kubelets.stop(node);
                        }
                        m.status = MachineStatus::Terminated;
                    }
                }
            }
            shared.changed();
        })
    }

    /// A machine that is part of the world from the start: its instance
    /// exists in moto and its kubelet starts now, without a join.
    pub fn add_prejoined(&self, instance: &Ec2Instance, node: NodeSpec) {
        {
            let mut machines = self.shared.lock();
            machines.insert(
                instance.id.clone(),
                MotoMachine {
                    instance_id: instance.id.clone(),
                    zone: instance.zone.clone(),
                    status: MachineStatus::Joined,
                    node_name: Some(node.name.clone()),
                },
            );
            self.shared.kubelets.start(node);
        }
        self.shared.changed();
    }

    /// Every machine, in no particular order.
    pub fn machines(&self) -> Vec<MotoMachine> {
        self.shared.lock().values().cloned().collect()
    }

    pub fn machine(&self, instance_id: &str) -> Option<MotoMachine> {
        self.shared.lock().get(instance_id).cloned()
    }

    /// Wait until `done` holds for the machines, up to `timeout`.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        done: impl Fn(&[MotoMachine]) -> bool,
    ) -> Result<(), Vec<MotoMachine>> {
        let mut changes = self.shared.changes.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let now = self.machines();
            if done(&now) {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                return Err(now);
            }
        }
    }

    /// Stop watching and stop every machine task (kubelets stay with the
    /// fleet, which the world stops).
    pub fn stop(&self) {
        self.shared.cancel.cancel();
    }
}

impl Drop for MotoMachines {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The instances that are machines of the world: those tagged for the
/// cluster, and those an Auto Scaling group launched on its own (EC2 Auto
/// Scaling tags every instance it launches `aws:autoscaling:groupName`,
/// "Tag Auto Scaling groups and instances", Amazon EC2 Auto Scaling User
/// Guide), which boot from the group's template and its user data.
async fn watched_instances(shared: &Shared) -> Result<Vec<Ec2Instance>, super::ec2::Ec2Error> {
    let mut instances = shared
        .ec2
        .describe_instances(&[("tag:kubesurge.io/cluster", vec![shared.cluster.clone()])])
        .await?;
    let launched_by_groups = shared
        .ec2
        .describe_instances(&[("tag-key", vec![GROUP_NAME_TAG.to_string()])])
        .await?;
    for instance in launched_by_groups {
        if !instances.iter().any(|i| i.id == instance.id) {
            instances.push(instance);
        }
    }
    Ok(instances)
}

/// The tag EC2 Auto Scaling puts on the instances of a group.
pub const GROUP_NAME_TAG: &str = "aws:autoscaling:groupName";

/// New instances boot; instances going away stop their kubelets.
fn reconcile(shared: &Arc<Shared>, instances: Vec<Ec2Instance>) {
    let mut changed = false;
    let mut boots = Vec::new();
    {
        let mut machines = shared.lock();
        for instance in instances {
            match machines.get_mut(&instance.id) {
                None => {
                    let status = if going_away(&instance.state) {
                        MachineStatus::Terminated
                    } else {
                        boots.push(instance.clone());
                        MachineStatus::Booting
                    };
                    machines.insert(
                        instance.id.clone(),
                        MotoMachine {
                            instance_id: instance.id.clone(),
                            zone: instance.zone.clone(),
                            status,
                            node_name: None,
                        },
                    );
                    changed = true;
                }
                Some(m) if going_away(&instance.state) && m.status != MachineStatus::Terminated => {
                    // Under the lock, so a join finishing now either sees
                    // Terminated or has a node name to stop.
                    if let Some(node) = &m.node_name {
                        shared.kubelets.stop(node);
                    }
                    m.status = MachineStatus::Terminated;
                    changed = true;
                }
                Some(_) => {}
            }
        }
    }
    if changed {
        shared.changed();
    }
    for instance in boots {
        let shared = shared.clone();
        tokio::spawn(async move {
            let cancel = shared.cancel.clone();
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = boot_and_join(&shared, instance) => {}
            }
        });
    }
}

async fn boot_and_join(shared: &Arc<Shared>, instance: Ec2Instance) {
    tokio::time::sleep(shared.timing.boot).await;
    shared.set_status(&instance.id, MachineStatus::Joining);
    let outcome = join(shared, &instance).await;
    {
        let mut machines = shared.lock();
        let Some(m) = machines.get_mut(&instance.id) else {
            return;
        };
        if m.status == MachineStatus::Terminated {
            // Terminated while it joined: the kubelet never starts.
            return;
        }
        match outcome {
            Ok(node) => {
                tracing::debug!(instance = %instance.id, node = %node.name, "moto machine joined");
                m.node_name = Some(node.name.clone());
                m.status = MachineStatus::Joined;
                shared.kubelets.start(node);
            }
            Err(failure) => {
                tracing::info!(instance = %instance.id, reason = %failure, "moto machine failed to join");
                m.status = MachineStatus::JoinFailed(failure);
            }
        }
    }
    shared.changed();
}

async fn image_version(shared: &Shared, image: &str) -> Option<String> {
    if let Some(known) = shared
        .image_versions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(image)
    {
        return known.clone();
    }
    let version = match shared.ec2.image_tags(image).await {
        Ok(tags) => tags.and_then(|t| t.get(VERSION_TAG).cloned()),
        // Unknown for now: ask again next time.
        Err(_) => return None,
    };
    shared
        .image_versions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(image.to_string(), version.clone());
    version
}

/// `kubeadm join` on the machine: the Node it would register.
async fn join(shared: &Shared, instance: &Ec2Instance) -> Result<NodeSpec, JoinFailure> {
    let image = instance.image_id.clone().unwrap_or_default();
    let kubelet_version =
        image_version(shared, &image)
            .await
            .ok_or(JoinFailure::ImageWithoutVersion {
                image: image.clone(),
            })?;
    let user_data = shared
        .ec2
        .user_data(&instance.id)
        .await
        .map_err(|e| JoinFailure::Unreachable {
            endpoint: shared.ec2.url().to_string(),
            message: format!("instance metadata: {e}"),
        })?
        .unwrap_or_default();
    let provider_id = instance.provider_id();
    let spec = parse_user_data(&user_data, &provider_id)?;
    let labels = spec.node_labels()?;
    let facts = discover(&spec, &shared.discovery).await?;
    check_kubelet_version(&kubelet_version, &facts.kubernetes_version)?;
    let private_ip = instance.private_ip.clone().unwrap_or_default();
    Ok(NodeSpec {
        name: spec
            .node_name
            .clone()
            .unwrap_or_else(|| hostname(&private_ip)),
        kubelet_version,
        provider_id: spec.provider_id().unwrap_or_default().to_string(),
        zone: instance.zone.clone(),
        internal_ip: spec
            .kubelet_args
            .get("node-ip")
            .cloned()
            .unwrap_or(private_ip),
        labels,
        taints: spec.taints.clone().unwrap_or_default(),
        max_pods: MAX_PODS,
        control_plane: false,
        // The moto world runs no cloud controller.
        cloud: spec.node_cloud(false),
    })
}

/// The tags of a world's initial worker.
pub fn worker_tags(cluster: &str, pool: &str, name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (tags::CLUSTER.to_string(), cluster.to_string()),
        (tags::POOL.to_string(), pool.to_string()),
        (tags::NAME.to_string(), name.to_string()),
    ])
}
