//! An upgrade, run (design §5 steps 5–7): the plan's steps in order —
//! control-plane hops in place, worker rotations through the surge engine
//! at the points the plan chose — into one report.
//!
//! Every step starts from what the world reports: a rerun after a failure
//! or a crash plans again from the versions the nodes report and continues.
//! The caller holds the run lock and passes its stop requests.

pub mod dry_run;
pub mod report;

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, ListParams};
use kubesurge_provider::NodeExec;
use thiserror::Error;
use tokio::sync::watch;

pub use dry_run::DryRun;
pub use report::{Remaining, UpgradeOutcome, UpgradeReport};

use crate::check::target::{self, NotChecked, TargetError};
use crate::controlplane::local_node::{self, LocalNodeError, MachineIdentity};
use crate::controlplane::phase::ControlPlaneDriver;
use crate::kube::drain::{DEFAULT_EVICTION_CONCURRENCY, DrainPolicy, LocalStorage};
use crate::kube::lock::LeaseHold;
use crate::kube::retry::with_retry;
use crate::plan::{Hop, Plan, Rotation, Step};
use crate::rotation::{
    Criteria, Engine, EngineConfig, Progress, RotationRequest, RunOutcome, StopReason,
};
use crate::settings::{ExecMethod, Settings};
use crate::version::KubeVersion;
use crate::wiring::{self, WiringError};

/// Why an upgrade could not start its steps. Once they run, a failure is
/// the report's outcome instead: the report says what was done before it.
#[derive(Debug, Error)]
pub enum UpgradeError {
    /// The watches the control-plane steps wait on could not start.
    #[error("watching the control plane: {0}")]
    WatchControlPlane(#[source] kube::Error),
    /// A dry run could not preview a rotation.
    #[error("previewing the rotation of pool {pool}: {source}")]
    Preview {
        pool: String,
        #[source]
        source: crate::rotation::EngineError,
    },
}

/// An upgrade whose every need was checked against the settings before
/// anything changes: how scripts reach the control-plane nodes when the
/// plan has hops, the engine's pools and providers when it has rotations.
pub struct Upgrade {
    target: KubeVersion,
    plan: Plan,
    exec: Option<Arc<dyn NodeExec>>,
    /// With `controlPlane.exec: local` and hops to run: the node this
    /// machine must be (`controlPlane.node`).
    local_node: Option<String>,
    engine: Option<EngineConfig>,
    drain: DrainPolicy,
    drain_timeout: Duration,
    gate_timeout: Duration,
}

/// Why this machine cannot run the control-plane commands locally.
#[derive(Debug, Error)]
pub enum LocalExecError {
    #[error(transparent)]
    Refused(#[from] LocalNodeError),
    #[error("reading the Nodes to check controlPlane.node: {0}")]
    Api(#[source] kube::Error),
}

/// The clients a run talks to the cluster with.
pub struct Clients {
    pub client: Client,
    /// Without kube's own 429 retries: a PDB's 429 must reach the drain.
    pub drain_client: Client,
    /// The held run lock, for control-plane steps that make the API server
    /// go away on purpose (`None` for a dry run, which holds no lock).
    pub lease: Option<LeaseHold>,
}

impl Upgrade {
    /// Wire what `plan`'s steps need from `settings`. Fails, changing
    /// nothing, when the settings cannot drive them.
    pub fn prepare(
        plan: Plan,
        target: KubeVersion,
        settings: &Settings,
    ) -> Result<Upgrade, WiringError> {
        let exec = if plan.hops.is_empty() {
            None
        } else {
            Some(wiring::node_exec(settings)?)
        };
        let engine = if plan.pools.iter().any(|p| !p.rotations.is_empty()) {
            Some(wiring::engine_config(settings, "upgrade")?)
        } else {
            None
        };
        let local_node = match (&exec, settings.control_plane.exec) {
            (Some(_), Some(ExecMethod::Local)) => settings.control_plane.node.clone(),
            _ => None,
        };
        Ok(Upgrade {
            target,
            plan,
            exec,
            local_node,
            engine,
            drain: DrainPolicy {
                on_timeout: settings.drain.on_timeout,
                unmanaged: settings.drain.unmanaged_pods,
                // A control-plane node is drained for a kubelet upgrade
                // in place: it keeps its disks, and a pod on a volume local
                // to it comes back to it, data intact, once it is
                // uncordoned. `drain.localStorage` guards the workers,
                // whose machines go away.
                local_storage: LocalStorage::Delete,
                concurrency: DEFAULT_EVICTION_CONCURRENCY,
            },
            drain_timeout: settings.drain.timeout,
            gate_timeout: settings.control_plane.gate_timeout,
        })
    }

    /// The plan this upgrade runs.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Prove that the target exists before anything changes: every hop's
    /// packages for each control-plane node's package manager, every
    /// rotation's worker image (`check::target`). Read-only.
    pub async fn verify_target(&self, client: &Client) -> Result<NotChecked, TargetError> {
        target::verify(
            &self.plan,
            client,
            self.exec.as_deref(),
            self.engine.as_ref(),
        )
        .await
    }

    /// With `controlPlane.exec: local`, prove that this machine is the
    /// named control-plane node and that it is the cluster's only one
    /// (`controlplane::local_node`). Read-only.
    pub async fn verify_local_exec(&self, client: &Client) -> Result<(), LocalExecError> {
        let Some(named) = &self.local_node else {
            return Ok(());
        };
        let this = MachineIdentity::of_this_machine()?;
        let api: Api<Node> = Api::all(client.clone());
        let params = ListParams::default();
        let nodes = with_retry("list nodes", || api.list(&params))
            .await
            .map_err(LocalExecError::Api)?;
        local_node::verify(named, &this, &nodes.items)?;
        Ok(())
    }

    /// Run the plan's steps in order until one fails or a stop is
    /// requested (checked before each step; a rotation also stops starting
    /// slots when one comes).
    pub async fn run(
        self,
        clients: Clients,
        progress: Arc<dyn Progress>,
        requests: watch::Receiver<Option<StopReason>>,
    ) -> Result<UpgradeReport, UpgradeError> {
        let driver = match self.exec.clone() {
            Some(exec) => Some(
                ControlPlaneDriver::new(
                    clients.client.clone(),
                    clients.drain_client.clone(),
                    exec,
                    progress.clone(),
                    self.drain.clone(),
                    self.drain_timeout,
                )
                .await
                .map_err(UpgradeError::WatchControlPlane)?
                .holding(clients.lease.clone())
                .gating(self.gate_timeout),
            ),
            None => None,
        };
        let engine = self.engine.clone().map(|config| {
            let config = match &clients.lease {
                Some(lease) => crate::rotation::fenced::behind_fence(config, lease.fence()),
                None => config,
            };
            Engine::new(
                clients.client.clone(),
                clients.drain_client.clone(),
                config,
                progress.clone(),
            )
        });

        let mut report = UpgradeReport::starting(self.target, Timestamp::now());
        if let Err(e) = crate::controlplane::phase::give_back_interrupted_kubelets(
            &clients.client,
            progress.as_ref(),
            self.gate_timeout,
        )
        .await
        {
            report.outcome = UpgradeOutcome::Failed {
                reason: e.to_string(),
            };
            report.finished = Timestamp::now();
            return Ok(report);
        }
        for (index, step) in self.plan.sequence.iter().enumerate() {
            if let Some(reason) = requests.borrow().clone() {
                report.outcome = stopped(&reason, self.remaining(index));
                break;
            }
            let ended = match step {
                Step::Hop { hop } => {
                    let Some(driver) = &driver else { continue };
                    self.run_hop(*hop, driver, &mut report).await
                }
                Step::Rotate { pool, rotation } => {
                    let Some(engine) = &engine else { continue };
                    let later = self.remaining(index + 1);
                    self.run_rotation(pool, *rotation, engine, &requests, later, &mut report)
                        .await
                }
            };
            if let Some(outcome) = ended {
                report.outcome = outcome;
                break;
            }
        }
        report.finished = Timestamp::now();
        Ok(report)
    }

    /// Hop `number` of the plan, into `report`; `Some`: the upgrade ends.
    async fn run_hop(
        &self,
        number: usize,
        driver: &ControlPlaneDriver,
        report: &mut UpgradeReport,
    ) -> Option<UpgradeOutcome> {
        let hop = self.hop(number)?;
        driver.progress.note(&format!(
            "control plane hop {}: {} → {}",
            hop.number, hop.from, hop.to
        ));
        match driver.run_hop(hop).await {
            Ok(done) => {
                report.hops.push(done);
                None
            }
            Err(e) => Some(UpgradeOutcome::Failed {
                reason: e.to_string(),
            }),
        }
    }

    /// What the plan's steps from `index` (in `sequence`) have to do.
    fn remaining(&self, index: usize) -> Remaining {
        let steps = self.plan.sequence.get(index..).unwrap_or_default();
        Remaining::of_steps(&self.plan, steps)
    }

    /// Rotation `number` of `pool`, into `report`; `Some`: the upgrade ends.
    /// `later` is what the steps after it have to do.
    async fn run_rotation(
        &self,
        pool: &str,
        number: usize,
        engine: &Engine,
        requests: &watch::Receiver<Option<StopReason>>,
        later: Remaining,
        report: &mut UpgradeReport,
    ) -> Option<UpgradeOutcome> {
        let rotation = self.rotation(pool, number)?;
        engine.progress.note(&format!(
            "rotating pool {pool} to {} ({})",
            rotation.version, rotation.reason
        ));
        let request = self.rotation_request(pool, rotation);
        match engine.run(&request, requests.clone()).await {
            Ok(run) => {
                let ended = rotation_ended(&run.outcome, later);
                report.rotations.push(run);
                ended
            }
            Err(e) => Some(UpgradeOutcome::Failed {
                reason: e.to_string(),
            }),
        }
    }

    /// Hop `number` (1-based) of the plan.
    fn hop(&self, number: usize) -> Option<&Hop> {
        self.plan.hops.get(number.checked_sub(1)?)
    }

    /// Rotation `number` (1-based) of `pool` in the plan.
    fn rotation(&self, pool: &str, number: usize) -> Option<&Rotation> {
        self.plan
            .pools
            .iter()
            .find(|p| p.name == pool)?
            .rotations
            .get(number.checked_sub(1)?)
    }

    fn rotation_request(&self, pool: &str, rotation: &Rotation) -> RotationRequest {
        RotationRequest {
            // One record per rotation point: a rerun of the same upgrade
            // continues exactly this rotation.
            command: format!(
                "upgrade --to {}: pool {pool} at {}",
                self.target, rotation.version
            ),
            target: rotation.version,
            pools: vec![pool.to_string()],
            criteria: Criteria {
                outdated: true,
                ..Criteria::default()
            },
            dry_run: false,
        }
    }
}

/// The upgrade's outcome when a stop was requested before a step, with
/// `remaining` left to do.
fn stopped(reason: &StopReason, remaining: Remaining) -> UpgradeOutcome {
    match reason {
        StopReason::WindowEnd => UpgradeOutcome::Partial {
            reason: "the maintenance window ended".into(),
            remaining,
            opens_at: None,
        },
        StopReason::Interrupted { signal } => UpgradeOutcome::Partial {
            reason: format!("interrupted by {signal}"),
            remaining,
            opens_at: None,
        },
        _ => UpgradeOutcome::Aborted,
    }
}

/// How a rotation's end ends the upgrade; `None`: it goes on. `later` is
/// what the steps after the rotation have to do.
fn rotation_ended(outcome: &RunOutcome, later: Remaining) -> Option<UpgradeOutcome> {
    match outcome {
        RunOutcome::Succeeded => None,
        RunOutcome::Failed { reason } => Some(UpgradeOutcome::Failed {
            reason: reason.clone(),
        }),
        RunOutcome::Aborted => Some(UpgradeOutcome::Aborted),
        RunOutcome::Stopped {
            reason,
            remaining,
            opens_at,
        } => Some(UpgradeOutcome::Partial {
            reason: reason.clone(),
            remaining: Remaining {
                nodes: later.nodes + remaining,
                ..later
            },
            opens_at: *opens_at,
        }),
        RunOutcome::Deferred {
            reason,
            opens_at,
            remaining,
        } => Some(UpgradeOutcome::Deferred {
            reason: reason.clone(),
            opens_at: *opens_at,
            remaining: Remaining {
                nodes: later.nodes + remaining,
                ..later
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_before_a_step_says_why_and_what_is_left() {
        let left = Remaining { hops: 1, nodes: 3 };
        assert_eq!(stopped(&StopReason::Abort, left), UpgradeOutcome::Aborted);
        assert!(matches!(
            stopped(&StopReason::WindowEnd, left),
            UpgradeOutcome::Partial { reason, remaining, opens_at: None }
                if reason.contains("maintenance window ended") && remaining == left
        ));
    }

    #[test]
    fn only_a_successful_rotation_lets_the_upgrade_go_on() {
        let later = Remaining { hops: 1, nodes: 4 };
        assert_eq!(rotation_ended(&RunOutcome::Succeeded, later), None);
        assert_eq!(
            rotation_ended(&RunOutcome::Failed { reason: "r".into() }, later),
            Some(UpgradeOutcome::Failed { reason: "r".into() })
        );
        assert_eq!(
            rotation_ended(&RunOutcome::Aborted, later),
            Some(UpgradeOutcome::Aborted)
        );
        // The rotation's own slots left count with the later steps'.
        assert_eq!(
            rotation_ended(
                &RunOutcome::Stopped {
                    reason: "w".into(),
                    remaining: 2,
                    opens_at: None,
                },
                later
            ),
            Some(UpgradeOutcome::Partial {
                reason: "w".into(),
                remaining: Remaining { hops: 1, nodes: 6 },
                opens_at: None,
            })
        );
    }
}
