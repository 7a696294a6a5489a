//! One simulated VM. A launched machine boots for `timing.boot`, reads its
//! user data (the contract is in [`super::userdata`]), runs kubeadm's join
//! discovery for real ([`super::discovery`]) and, if every check passes,
//! starts its kubelet, which registers the Node. Any failure leaves the
//! instance running without a Node and records the reason on the machine.
//! Terminating an instance stops its kubelet once termination completes
//! (`timing.terminate`).
//!
//! The per-machine state (role, node name, installed kubelet and kubeadm
//! versions, status) lives in [`Machine`], in one place, so that commands
//! run on a machine can change it.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use kubesurge_provider::{Instance, InstanceState, tags};
use serde_json::Value;

use super::Shared;
use super::discovery::{JoinFailure, check_kubelet_version, discover};
use super::faults::{JoinFault, ProviderIdForm};
use super::noderoot::{self, PackageManager};
use super::state::{CloudError, ImageRecord, InstanceRecord, LaunchSpec};
use super::userdata::parse_user_data;
use crate::controllers::NodeSpec;
use crate::controllers::kubelet::NodeCloud;

/// Pods a simulated node has room for, kubelet's default `maxPods`.
pub const MAX_PODS: u32 = 110;

/// What a machine is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MachineRole {
    ControlPlane,
    Worker,
}

/// Where a machine is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MachineStatus {
    /// Launched, not yet booted.
    Booting,
    /// Booted and running `kubeadm join`.
    Joining,
    /// The kubelet runs and registered its Node.
    Joined,
    /// `kubeadm join` failed; the instance keeps running without a Node.
    JoinFailed(JoinFailure),
    /// Booted, but its join never completes (an injected fault).
    Stalled,
    /// The instance is terminated; its kubelet is stopped.
    Terminated,
}

/// The state of one machine beyond its instance record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    pub role: MachineRole,
    pub status: MachineStatus,
    /// The Node its kubelet registered, once joined.
    pub node_name: Option<String>,
    /// Installed package versions (`v1.35.3`), from the image at launch,
    /// then as the machine's package state says after each script.
    pub kubelet_version: Option<String>,
    pub kubeadm_version: Option<String>,
    /// How it installs packages, for a machine that runs scripts (has a
    /// filesystem); `None` for the others.
    pub package_manager: Option<PackageManager>,
}

/// A machine as tests see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineInfo {
    pub instance_id: String,
    pub zone: String,
    pub private_ip: String,
    pub provider_id: String,
    pub state: InstanceState,
    pub role: MachineRole,
    pub status: MachineStatus,
    pub node_name: Option<String>,
    pub kubelet_version: Option<String>,
    pub kubeadm_version: Option<String>,
    pub package_manager: Option<PackageManager>,
}

impl Machine {
    fn new(role: MachineRole, image: Option<&ImageRecord>) -> Machine {
        let version = image
            .and_then(|i| i.kubernetes_version())
            .map(str::to_string);
        Machine {
            role,
            status: MachineStatus::Booting,
            node_name: None,
            kubelet_version: version.clone(),
            kubeadm_version: version,
            package_manager: None,
        }
    }

    pub(crate) fn info(&self, record: &InstanceRecord) -> MachineInfo {
        MachineInfo {
            instance_id: record.id.clone(),
            zone: record.zone.clone(),
            private_ip: record.private_ip.clone(),
            provider_id: record.provider_id.clone(),
            state: record.state,
            role: self.role,
            status: self.status.clone(),
            node_name: self.node_name.clone(),
            kubelet_version: self.kubelet_version.clone(),
            kubeadm_version: self.kubeadm_version.clone(),
            package_manager: self.package_manager,
        }
    }
}

/// The default hostname of a machine (`ip-10-1-0-4`), the node name when
/// the join configuration names none.
pub fn hostname(private_ip: &str) -> String {
    format!("ip-{}", private_ip.replace('.', "-"))
}

/// Register a newly launched instance's machine and start its life.
pub(crate) fn on_launched(shared: &Arc<Shared>, record: &InstanceRecord, fault: JoinFault) {
    {
        let mut inner = shared.lock();
        let machine = Machine::new(MachineRole::Worker, inner.cloud.image(&record.image_id));
        inner.machines.insert(record.id.clone(), machine);
    }
    shared.changed();
    let shared = shared.clone();
    let id = record.id.clone();
    let cancel = shared.cancel.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = boot_and_join(&shared, &id, fault) => {}
        }
    });
}

async fn boot_and_join(shared: &Arc<Shared>, id: &str, fault: JoinFault) {
    tokio::time::sleep(shared.config.timing.boot).await;
    let (record, image) = {
        let mut inner = shared.lock();
        if !inner.cloud.mark_running(id) {
            return;
        }
        let Some(record) = inner.cloud.instance(id).cloned() else {
            return;
        };
        let image = inner.cloud.image(&record.image_id).cloned();
        if let Some(m) = inner.machines.get_mut(id) {
            m.status = if fault.never {
                MachineStatus::Stalled
            } else {
                MachineStatus::Joining
            };
        }
        (record, image)
    };
    shared.changed();
    if fault.never {
        return;
    }
    tokio::time::sleep(fault.delay).await;
    let outcome = join(shared, &record, image.as_ref(), fault.provider_id_form).await;
    {
        let mut inner = shared.lock();
        // A machine terminated while it joined never starts its kubelet.
        let running = inner
            .cloud
            .instance(id)
            .is_some_and(|r| r.state == InstanceState::Running);
        let Some(machine) = inner.machines.get_mut(id) else {
            return;
        };
        if !running {
            return;
        }
        match outcome {
            Ok(node) => {
                tracing::debug!(instance = id, node = %node.name, "machine joined");
                machine.node_name = Some(node.name.clone());
                machine.status = MachineStatus::Joined;
                // Under the lock, so a concurrent termination either sees the
                // node to stop or prevents the start.
                if let Some(kubelets) = &shared.config.kubelets {
                    kubelets.start(node);
                }
            }
            Err(failure) => {
                tracing::info!(instance = id, reason = %failure, "machine failed to join");
                machine.status = MachineStatus::JoinFailed(failure);
            }
        }
    }
    shared.changed();
}

/// `kubeadm join` on the machine: the Node it would register.
async fn join(
    shared: &Shared,
    record: &InstanceRecord,
    image: Option<&ImageRecord>,
    form: ProviderIdForm,
) -> Result<NodeSpec, JoinFailure> {
    let kubelet_version = image
        .and_then(|i| i.kubernetes_version())
        .ok_or_else(|| JoinFailure::ImageWithoutVersion {
            image: record.image_id.clone(),
        })?
        .to_string();
    let spec = parse_user_data(&record.user_data, &record.provider_id)?;
    let labels = spec.node_labels()?;
    let facts = discover(&spec, &shared.config.discovery).await?;
    check_kubelet_version(&kubelet_version, &facts.kubernetes_version)?;
    Ok(NodeSpec {
        name: spec
            .node_name
            .clone()
            .unwrap_or_else(|| hostname(&record.private_ip)),
        kubelet_version,
        provider_id: match form {
            ProviderIdForm::AsConfigured => spec.provider_id().unwrap_or_default().to_string(),
            ProviderIdForm::ZoneLess => format!("sim:////{}", record.id),
            ProviderIdForm::Empty => String::new(),
        },
        zone: record.zone.clone(),
        internal_ip: spec
            .kubelet_args
            .get("node-ip")
            .cloned()
            .unwrap_or_else(|| record.private_ip.clone()),
        labels,
        taints: spec.taints.clone().unwrap_or_default(),
        max_pods: MAX_PODS,
        control_plane: false,
        cloud: spec.node_cloud(shared.config.cloud_controller.is_some()),
    })
}

/// Start the termination of an instance whose state just became
/// shutting-down: after `timing.terminate` it is terminated and its
/// kubelet stops.
pub(crate) fn on_terminating(shared: &Arc<Shared>, id: &str) {
    let shared = shared.clone();
    let id = id.to_string();
    let cancel = shared.cancel.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = tokio::time::sleep(shared.config.timing.terminate) => finish_termination(&shared, &id),
        }
    });
}

fn finish_termination(shared: &Shared, id: &str) {
    {
        let mut inner = shared.lock();
        if !inner.cloud.mark_terminated(id) {
            return;
        }
        if let Some(machine) = inner.machines.get_mut(id) {
            if let (Some(node), Some(kubelets)) = (&machine.node_name, &shared.config.kubelets) {
                kubelets.stop(node);
            }
            machine.status = MachineStatus::Terminated;
        }
    }
    shared.changed();
}

/// A machine that is part of the world from the start: already running and
/// joined.
#[derive(Clone, Debug)]
pub struct PrejoinedMachine {
    pub zone: String,
    /// The image (its version tag is the kubelet's version).
    pub image_id: String,
    pub tags: BTreeMap<String, String>,
    pub role: MachineRole,
    /// Backdated launch time, so that "oldest first" is meaningful.
    pub launched_at: Timestamp,
    /// Node name; the hostname when `None`.
    pub node_name: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Value>,
    /// Static pods (manifests) the kubelet runs, e.g. the control plane's.
    pub static_pods: Vec<Value>,
}

pub(crate) fn insert_prejoined(
    shared: &Arc<Shared>,
    machine: PrejoinedMachine,
) -> Result<Instance, CloudError> {
    let control_plane = machine.role == MachineRole::ControlPlane;
    let static_pods = if control_plane {
        machine.static_pods.clone()
    } else {
        Vec::new()
    };
    let instance = {
        let mut inner = shared.lock();
        let mut tags = machine.tags;
        // A prejoined machine has no slot: nothing may adopt it by launch.
        tags.remove(tags::SLOT);
        let launched = inner.cloud.launch(
            LaunchSpec {
                image_id: machine.image_id.clone(),
                zone: machine.zone.clone(),
                subnet: None,
                user_data: String::new(),
                tags,
            },
            machine.launched_at,
        )?;
        let record = launched.record().clone();
        inner.cloud.mark_running(&record.id);
        let image = inner.cloud.image(&record.image_id).cloned();
        let mut state = Machine::new(machine.role, image.as_ref());
        let node = NodeSpec {
            name: machine
                .node_name
                .unwrap_or_else(|| hostname(&record.private_ip)),
            kubelet_version: state.kubelet_version.clone().unwrap_or_default(),
            provider_id: record.provider_id.clone(),
            zone: record.zone.clone(),
            internal_ip: record.private_ip.clone(),
            labels: machine.labels,
            taints: machine.taints,
            max_pods: MAX_PODS,
            control_plane: machine.role == MachineRole::ControlPlane,
            // Already initialized (by the kubelet or the cloud controller).
            cloud: NodeCloud::InTree,
        };
        state.node_name = Some(node.name.clone());
        state.status = MachineStatus::Joined;
        inner.machines.insert(record.id.clone(), state);
        if let Some(kubelets) = &shared.config.kubelets {
            let name = node.name.clone();
            kubelets.start(node);
            for pod in machine.static_pods {
                kubelets.set_static_pod(&name, pod);
            }
        }
        inner.cloud.instance(&record.id).map(|r| r.view().into())
    };
    let instance: Instance = instance.ok_or_else(|| CloudError::UnknownInstance(String::new()))?;
    // Without a filesystem (no bash on the host, say) the machine still
    // serves as a node; only scripts cannot run on it.
    if control_plane && let Err(e) = give_filesystem(shared, &instance.id.0, &static_pods) {
        tracing::warn!(instance = %instance.id.0, error = %e, "control-plane machine cannot run scripts");
    }
    shared.changed();
    Ok(instance)
}

/// Lay out a control-plane machine's filesystem: an apt node with the
/// packages of its image's version and its static pods as manifests.
fn give_filesystem(shared: &Shared, id: &str, static_pods: &[Value]) -> Result<(), CloudError> {
    let version = shared
        .lock()
        .machines
        .get(id)
        .and_then(|m| m.kubeadm_version.clone())
        .ok_or_else(|| CloudError::NodeRoot(format!("machine {id} has no Kubernetes version")))?;
    let server = shared
        .config
        .cluster
        .as_ref()
        .map(|c| c.apiserver.url())
        .unwrap_or_default();
    let layout = shared
        .roots
        .layout()
        .map_err(|e| CloudError::NodeRoot(e.to_string()))?;
    noderoot::seed(
        &layout.root(id),
        &layout.home(id),
        &noderoot::Seed {
            version: &version,
            package_manager: PackageManager::Apt,
            static_pods,
            server: &server,
        },
    )
    .map_err(|e| CloudError::NodeRoot(format!("machine {id}: {e}")))?;
    if let Some(m) = shared.lock().machines.get_mut(id) {
        m.package_manager = Some(PackageManager::Apt);
    }
    Ok(())
}
