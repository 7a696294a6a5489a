//! `kubesurge upgrade --dry-run`: every mutation the upgrade would make, in
//! the order it would make them, making none (design §3). Control-plane
//! hops are described from the plan (which was made from what each node
//! reports, so nodes already upgraded have no step); worker rotations come
//! from the surge engine's own dry run, as `rotate --dry-run` shows them.

use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Serialize;
use tokio::sync::watch;

use super::{Clients, Upgrade, UpgradeError};
use crate::controlplane::script;
use crate::duration::HumanDuration;
use crate::kube::drain::DrainPolicy;
use crate::kube::drain::OnDrainTimeout;
use crate::plan::{Hop, KubeadmCommand, Rotation, Step};
use crate::rotation::{Engine, EngineError, Progress, RunReport};

/// What a dry run found: every mutation in order, and each rotation's dry
/// run report (its slots with the actions each would take).
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    pub would: Vec<String>,
    pub rotations: Vec<RunReport>,
}

impl Upgrade {
    /// Describe every mutation of the upgrade, making none.
    pub async fn dry_run(
        &self,
        clients: Clients,
        progress: Arc<dyn Progress>,
    ) -> Result<DryRun, UpgradeError> {
        let engine = self
            .engine
            .clone()
            .map(|config| Engine::new(clients.client, clients.drain_client, config, progress));
        let mut dry = DryRun::default();
        for step in &self.plan.sequence {
            match step {
                Step::Hop { hop } => {
                    if let Some(hop) = self.hop(*hop) {
                        dry.would
                            .extend(hop_lines(hop, &self.drain, self.drain_timeout));
                    }
                }
                Step::Rotate { pool, rotation } => {
                    let (Some(engine), Some(planned)) = (&engine, self.rotation(pool, *rotation))
                    else {
                        continue;
                    };
                    if planned.slots.iter().any(|s| !s.existing) {
                        // It replaces nodes an earlier rotation will have
                        // made: nothing in the world to preview yet.
                        dry.would.push(later_rotation_line(pool, planned));
                        continue;
                    }
                    let mut request = self.rotation_request(pool, planned);
                    request.dry_run = true;
                    match engine.run(&request, watch::channel(None).1).await {
                        Ok(report) => {
                            dry.would.extend(report.would.iter().cloned());
                            dry.rotations.push(report);
                        }
                        // Another rotation of this upgrade is unfinished:
                        // the upgrade finishes that one first.
                        Err(EngineError::UnfinishedRun { id, .. }) => {
                            dry.would.push(format!(
                                "after run {id} finishes, {}",
                                rotation_summary(pool, planned)
                            ));
                        }
                        Err(source) => {
                            return Err(UpgradeError::Preview {
                                pool: pool.clone(),
                                source,
                            });
                        }
                    }
                }
            }
        }
        Ok(dry)
    }
}

/// The mutations of one hop, node by node, in the order the phase driver
/// makes them (`controlplane::phase`). Pure.
pub fn hop_lines(hop: &Hop, drain: &DrainPolicy, drain_timeout: Duration) -> Vec<String> {
    let mut lines = Vec::new();
    for node in hop.nodes.iter().filter(|n| n.upgrade_components) {
        let step = script::Step::UpgradeControlPlane {
            version: hop.to,
            first: node.kubeadm == Some(KubeadmCommand::Apply),
        };
        lines.push(format!(
            "run on {}: point the package repository at {}, install kubeadm {}, {}; then wait until its control-plane static pods report {} and /readyz is ok",
            node.node,
            minor(hop.to),
            hop.to,
            step.description(),
            hop.to
        ));
    }
    for node in hop.nodes.iter().filter(|n| n.upgrade_kubelet) {
        lines.push(format!(
            "cordon {} and evict its pods (drain timeout {}, on timeout {})",
            node.node,
            HumanDuration(drain_timeout),
            on_timeout_name(drain.on_timeout)
        ));
        lines.push(format!(
            "run on {}: install kubelet and kubectl {}, restart the kubelet; then wait until it is Ready at {} and uncordon it",
            node.node, hop.to, hop.to
        ));
    }
    lines
}

/// `v1.35` of `v1.35.2`: the pkgs.k8s.io repository is per minor.
fn minor(version: crate::version::KubeVersion) -> String {
    format!("v{}.{}", version.major, version.minor)
}

fn on_timeout_name(on_timeout: OnDrainTimeout) -> &'static str {
    match on_timeout {
        OnDrainTimeout::Fail => "fail",
        OnDrainTimeout::Force => "force",
        OnDrainTimeout::Skip => "skip",
    }
}

/// `replace 3 worker(s) of pool general at v1.35.2 (w-1, w-2, w-3)`.
fn rotation_summary(pool: &str, rotation: &Rotation) -> String {
    let nodes: Vec<&str> = rotation.slots.iter().map(|s| s.node.as_str()).collect();
    format!(
        "replace {} worker(s) of pool {pool} at {} ({})",
        rotation.slots.len(),
        rotation.version,
        nodes.join(", ")
    )
}

fn later_rotation_line(pool: &str, rotation: &Rotation) -> String {
    let nodes: Vec<&str> = rotation.slots.iter().map(|s| s.node.as_str()).collect();
    format!(
        "replace the replacements of {} (pool {pool}) at {}, each as above: launch, join, drain, terminate",
        nodes.join(", "),
        rotation.version
    )
}
