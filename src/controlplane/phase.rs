//! The control-plane phase of an upgrade (design §7): one hop at a time,
//! in two passes so that the skew policy holds at every moment.
//!
//! 1. Control-plane components, node by node: the rendered kubeadm script,
//!    then a gate — that node's static pods at the target and `/readyz` ok.
//! 2. Once every apiserver is at the target: each CP node's kubelet — drain
//!    (the same drain as workers), kubelet and kubectl, restart, Node Ready
//!    at the target, uncordon. A kubelet is never newer than the oldest
//!    apiserver, which the kubeadm docs' order breaks in HA clusters.
//!
//! Every step is decided from what the node reports (static pod images,
//! kubelet version), so a rerun after a crash resumes where the world is and
//! upgrades nothing twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::Api;
use kubesurge_provider::{ExecRequest, ExecTarget, NodeExec, OutputSink};
use schemars::JsonSchema;
use serde::Serialize;
use thiserror::Error;
use tokio::time::Instant;

use super::detach;
use super::script::{self, NodeFacts};
use crate::kube::cache::WatchCache;
use crate::kube::drain::{self, DrainOutcome, DrainPolicy, StreamingLists};
use crate::kube::events::{EventType, Recorder};
use crate::kube::lock::LeaseHold;
use crate::kube::nodes::{self, NodeOps};
use crate::kube::retry::with_retry;
use crate::plan::{Hop, HopNode, KubeadmCommand};
use crate::rotation::Progress;
use crate::version::KubeVersion;

/// How long one script may run: `kubeadm upgrade apply` waits up to 5
/// minutes per component and pulls images first.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long a node's components may take to report the target after the
/// script, and a kubelet to come back Ready.
/// Lines of a failed script's output quoted in the error.
const TAIL_LINES: usize = 20;
/// Marks a CP node cordoned by kubesurge for its kubelet upgrade, so a
/// rerun uncordons it even if the crash came after the upgrade.
pub const CP_UPGRADE_ANNOTATION: &str = "kubesurge.io/control-plane-upgrade";

const COMPONENTS: [&str; 3] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

/// Uncordon a control-plane node cordoned for its kubelet upgrade, and
/// remove the mark that says so.
async fn give_back(node_ops: &NodeOps, name: &str) -> Result<(), ControlPlaneError> {
    node_ops.uncordon(name).await?;
    node_ops
        .annotate(
            name,
            &BTreeMap::from([(CP_UPGRADE_ANNOTATION.to_string(), None)]),
        )
        .await?;
    Ok(())
}

/// Give back the control-plane nodes an earlier invocation cordoned for a
/// kubelet upgrade and stopped before uncordoning, once that kubelet is
/// Ready at the version the node records (it may still be restarting). The
/// plan no longer lists such a node — its kubelet is at the version — so
/// no hop visits it, and when it was the last one the plan has no hop at
/// all. A node whose kubelet is not there yet is left to its hop. Returns
/// the nodes given back.
pub async fn give_back_interrupted_kubelets(
    client: &Client,
    progress: &dyn Progress,
    gate_timeout: Duration,
) -> Result<Vec<String>, ControlPlaneError> {
    let api: Api<Node> = Api::all(client.clone());
    let params = kube::api::ListParams::default();
    let listed = with_retry("list nodes", || api.list(&params)).await?;
    let node_ops = NodeOps::new(client.clone());
    let mut given_back = Vec::new();
    for node in listed.items {
        let Some(version) = nodes::annotation(&node, CP_UPGRADE_ANNOTATION)
            .and_then(|v| v.parse::<KubeVersion>().ok())
        else {
            continue;
        };
        if nodes::kubelet_version(&node) != Some(version) {
            continue;
        }
        let name = node.metadata.name.clone().unwrap_or_default();
        let ready =
            kube::runtime::wait::await_condition(api.clone(), &name, move |n: Option<&Node>| {
                n.is_some_and(|n| nodes::is_ready(n) && nodes::kubelet_version(n) == Some(version))
            });
        match tokio::time::timeout(gate_timeout, ready).await {
            Ok(Ok(_)) => {}
            _ => {
                return Err(ControlPlaneError::Gate {
                    node: name,
                    what: format!("the Node Ready with kubelet {version} (left cordoned)"),
                    after: gate_timeout,
                });
            }
        }
        give_back(&node_ops, &name).await?;
        progress.note(&format!(
            "{name}: kubelet at {version}; uncordoned (an earlier run upgraded it and stopped before)"
        ));
        given_back.push(name);
    }
    Ok(given_back)
}

/// Default `controlPlane.gateTimeout`: kubeadm itself waits up to 5
/// minutes for each component; twice that for the whole node.
pub const DEFAULT_GATE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// What, of `node`'s control-plane static pods and of every etcd member
/// (stacked etcd: a static pod per control-plane node), is not Ready, as
/// "kube-apiserver on cp-2". Readiness is the kubelet's probe on the node
/// itself: kubeadm gives kube-apiserver a readiness probe on the node's own
/// `/readyz` (its advertise address, not the load balancer) and etcd one on
/// its member's health, which needs quorum
/// (`cmd/kubeadm/app/phases/controlplane/manifests.go`,
/// `cmd/kubeadm/app/phases/etcd/local.go`). An external etcd has no static
/// pods here and is not checked.
fn not_ready(pods: &[Arc<Pod>], node: &str) -> Vec<String> {
    let mut missing: Vec<String> = pods
        .iter()
        .filter_map(|pod| {
            let component = pod.metadata.labels.as_ref()?.get("component")?.as_str();
            let on = pod.spec.as_ref()?.node_name.as_deref()?;
            let checked = component == "etcd" || (on == node && COMPONENTS.contains(&component));
            (checked && !crate::kube::pods::is_ready(pod)).then(|| format!("{component} on {on}"))
        })
        .collect();
    missing.sort();
    missing
}

/// Why the control-plane phase stopped.
#[derive(Debug, Error)]
pub enum ControlPlaneError {
    #[error("{description} failed on {node} (exit {code}); last output:\n{tail}")]
    Script {
        node: String,
        description: String,
        code: i32,
        tail: String,
    },
    #[error("running {description} on {node}: {source}")]
    Exec {
        node: String,
        description: String,
        #[source]
        source: kubesurge_provider::ExecError,
    },
    #[error("{node}: {what} did not happen within {after:?}")]
    Gate {
        node: String,
        what: String,
        after: Duration,
    },
    #[error("draining control-plane node {node}: {message}")]
    Drain { node: String, message: String },
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    /// The run lost its lock: no further command is sent to a node.
    #[error("{0}")]
    Fenced(String),
}

/// What happened to one node in a hop.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeStep {
    pub node: String,
    pub step: String,
    /// `false`: the node already reported the target (an earlier run did it).
    pub ran: bool,
    /// The scripts this step ran on the node, in order.
    pub commands: Vec<CommandRecord>,
}

/// One script run on a control-plane node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommandRecord {
    /// What it did (`kubeadm upgrade apply v1.35.3`).
    pub description: String,
    pub started: jiff::Timestamp,
    pub exit_code: i32,
    pub duration_ms: u64,
}

/// What a hop did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HopReport {
    pub number: usize,
    pub from: KubeVersion,
    pub to: KubeVersion,
    pub steps: Vec<NodeStep>,
}

/// Runs hops on the control plane.
pub struct ControlPlaneDriver {
    pub client: Client,
    pub drain_client: Client,
    /// Whether the API server refused a drain's streaming list.
    pub streaming_lists: StreamingLists,
    pub exec: Arc<dyn NodeExec>,
    pub nodes: WatchCache<Node>,
    pub static_pods: WatchCache<Pod>,
    pub node_ops: NodeOps,
    pub progress: Arc<dyn Progress>,
    pub drain: DrainPolicy,
    pub drain_timeout: Duration,
    /// How long a node may take to prove itself after its command
    /// (`controlPlane.gateTimeout`).
    pub gate_timeout: Duration,
    /// The run lock: held through each component upgrade (the node's
    /// kube-apiserver restarts), and its fence checked before every script.
    pub lease: Option<LeaseHold>,
    /// Events on the control-plane nodes, as workers get them.
    pub recorder: Recorder,
    /// The scripts run since the last step was reported.
    commands: std::sync::Mutex<Vec<CommandRecord>>,
}

impl ControlPlaneDriver {
    fn take_commands(&self) -> Vec<CommandRecord> {
        std::mem::take(&mut *self.commands.lock().unwrap_or_else(|p| p.into_inner()))
    }

    async fn node_event(&self, name: &str, kind: EventType, reason: &str, message: &str) {
        if let Some(node) = self.nodes.get(name) {
            self.recorder.node_event(&node, kind, reason, message).await;
        }
    }

    /// The driver of a run that holds `lease`.
    pub fn holding(mut self, lease: Option<LeaseHold>) -> ControlPlaneDriver {
        self.lease = lease;
        self
    }

    /// With `gate_timeout` for each node to prove itself.
    pub fn gating(mut self, gate_timeout: Duration) -> ControlPlaneDriver {
        self.gate_timeout = gate_timeout;
        self
    }

    /// Start the watches the driver waits on.
    pub async fn new(
        client: Client,
        drain_client: Client,
        exec: Arc<dyn NodeExec>,
        progress: Arc<dyn Progress>,
        drain: DrainPolicy,
        drain_timeout: Duration,
    ) -> Result<ControlPlaneDriver, kube::Error> {
        let nodes = WatchCache::start(Api::all(client.clone()), Default::default()).await?;
        let static_pods = WatchCache::start(
            Api::namespaced(client.clone(), "kube-system"),
            kube::runtime::watcher::Config::default().labels("tier=control-plane"),
        )
        .await?;
        let client_for_events = client.clone();
        Ok(ControlPlaneDriver {
            node_ops: NodeOps::new(client.clone()),
            client,
            drain_client,
            streaming_lists: StreamingLists::default(),
            exec,
            nodes,
            static_pods,
            progress,
            drain,
            drain_timeout,
            gate_timeout: DEFAULT_GATE_TIMEOUT,
            lease: None,
            recorder: Recorder::new(client_for_events, crate::kube::lock::hostname()),
            commands: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Wait until `name` is Ready with its kubelet at `version`, up to the
    /// gate's timeout (the node stays cordoned if it never is).
    async fn await_kubelet_ready(
        &self,
        name: &str,
        version: KubeVersion,
    ) -> Result<(), ControlPlaneError> {
        let deadline = Instant::now() + self.gate_timeout;
        let ready = self
            .nodes
            .wait_for(deadline, |cache| {
                cache
                    .get(name)
                    .filter(|n| nodes::is_ready(n) && nodes::kubelet_version(n) == Some(version))
                    .map(|_| ())
            })
            .await;
        match ready {
            Some(()) => Ok(()),
            None => Err(ControlPlaneError::Gate {
                node: name.to_string(),
                what: format!("the Node Ready with kubelet {version} (left cordoned)"),
                after: self.gate_timeout,
            }),
        }
    }

    /// Run one hop: pass 1 (components, node by node), then pass 2
    /// (kubelets, node by node).
    pub async fn run_hop(&self, hop: &Hop) -> Result<HopReport, ControlPlaneError> {
        let mut report = HopReport {
            number: hop.number,
            from: hop.from,
            to: hop.to,
            steps: Vec::new(),
        };
        for node in hop.nodes.iter().filter(|n| n.upgrade_components) {
            let ran = self.upgrade_components(hop, node).await?;
            report.steps.push(NodeStep {
                node: node.node.clone(),
                step: format!("control plane to {}", hop.to),
                ran,
                commands: self.take_commands(),
            });
        }
        for node in hop.nodes.iter().filter(|n| n.upgrade_kubelet) {
            let ran = self.upgrade_kubelet(hop.to, &node.node).await?;
            report.steps.push(NodeStep {
                node: node.node.clone(),
                step: format!("kubelet to {}", hop.to),
                ran,
                commands: self.take_commands(),
            });
        }
        Ok(report)
    }

    /// The versions of `node`'s control-plane static pods, by component.
    fn component_versions(&self, node: &str) -> BTreeMap<String, Option<KubeVersion>> {
        COMPONENTS
            .iter()
            .map(|component| {
                let version = self
                    .static_pods
                    .find(|p| {
                        p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
                            && p.metadata
                                .labels
                                .as_ref()
                                .and_then(|l| l.get("component"))
                                .map(String::as_str)
                                == Some(*component)
                    })
                    .and_then(|p| {
                        let image = p.spec.as_ref()?.containers.first()?.image.clone()?;
                        image.rsplit(':').next()?.parse::<KubeVersion>().ok()
                    });
                (component.to_string(), version)
            })
            .collect()
    }

    fn components_at(&self, node: &str, version: KubeVersion) -> bool {
        self.component_versions(node)
            .values()
            .all(|v| *v == Some(version))
    }

    async fn upgrade_components(
        &self,
        hop: &Hop,
        node: &HopNode,
    ) -> Result<bool, ControlPlaneError> {
        let name = node.node.as_str();
        let apply = node.kubeadm == Some(KubeadmCommand::Apply);
        // The plan gives `upgrade apply` to a node whose components run the
        // target only to finish an apply that never recorded its version:
        // that node runs it (its script skips what is done).
        if !apply && self.components_at(name, hop.to) {
            self.progress
                .note(&format!("{name}: control plane already at {}", hop.to));
            return Ok(false);
        }
        let step = script::Step::UpgradeControlPlane {
            version: hop.to,
            first: apply,
        };
        self.progress
            .note(&format!("{name}: {}", step.description()));
        // Before: restarting this node's etcd member while another is
        // down loses quorum (a 3-member cluster with 2 down stops), and an
        // unready component here is not ours to restart blindly.
        self.wait_ready_static_pods(name, "before its upgrade")
            .await?;
        self.run_script(name, step).await?;
        // Gate: the node's static pods report the target and are Ready,
        // every etcd member is Ready, and the API server answers /readyz.
        let deadline = Instant::now() + self.gate_timeout;
        let at_target = self
            .static_pods
            .wait_for(deadline, |_| self.components_at(name, hop.to).then_some(()))
            .await;
        if at_target.is_none() {
            return Err(ControlPlaneError::Gate {
                node: name.to_string(),
                what: format!(
                    "control-plane static pods at {} (they report {:?})",
                    hop.to,
                    self.component_versions(name)
                ),
                after: self.gate_timeout,
            });
        }
        self.wait_ready_static_pods(name, "after its upgrade")
            .await?;
        self.wait_readyz(name, deadline).await?;
        Ok(true)
    }

    /// Wait up to the gate timeout for [`not_ready`] to be empty for
    /// `name`; `when` says which side of its command this is.
    async fn wait_ready_static_pods(
        &self,
        name: &str,
        when: &str,
    ) -> Result<(), ControlPlaneError> {
        let deadline = Instant::now() + self.gate_timeout;
        let ready = self
            .static_pods
            .wait_for(deadline, |cache| {
                not_ready(&cache.all(), name).is_empty().then_some(())
            })
            .await;
        if ready.is_some() {
            return Ok(());
        }
        Err(ControlPlaneError::Gate {
            node: name.to_string(),
            what: format!(
                "Ready {when}: {} (a static pod's readiness probe is what proves it: \
                 kube-apiserver's checks this node's own API server's /readyz, \
                 etcd's its member's health with quorum)",
                not_ready(&self.static_pods.all(), name).join(", ")
            ),
            after: self.gate_timeout,
        })
    }

    async fn wait_readyz(&self, node: &str, deadline: Instant) -> Result<(), ControlPlaneError> {
        let mut delay = Duration::from_millis(100);
        loop {
            let request = http::Request::get("/readyz")
                .body(Vec::new())
                .map_err(kube::Error::HttpError)?;
            if let Ok(body) = self.client.request_text(request).await
                && body.trim() == "ok"
            {
                return Ok(());
            }
            // /readyz has no watch: ask again, backing off, until the deadline.
            if Instant::now() + delay > deadline {
                return Err(ControlPlaneError::Gate {
                    node: node.to_string(),
                    what: "the API server's /readyz".into(),
                    after: self.gate_timeout,
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    async fn upgrade_kubelet(
        &self,
        version: KubeVersion,
        name: &str,
    ) -> Result<bool, ControlPlaneError> {
        let node = self.nodes.get(name);
        let marked = node
            .as_ref()
            .and_then(|n| nodes::annotation(n, CP_UPGRADE_ANNOTATION))
            .is_some();
        if node.as_ref().and_then(|n| nodes::kubelet_version(n)) == Some(version) {
            if marked {
                // An earlier run upgraded it and stopped before uncordoning.
                self.finish_kubelet(name).await?;
            }
            self.progress
                .note(&format!("{name}: kubelet already at {version}"));
            return Ok(false);
        }
        // Refuse before cordoning, so a refusal changes nothing.
        drain::precheck(&self.drain_client, name, &self.drain)
            .await
            .map_err(|e| ControlPlaneError::Drain {
                node: name.to_string(),
                message: e.to_string(),
            })?;
        // The upgrade's mark and the cordon in one patch.
        self.node_ops
            .cordon_marked(
                name,
                &[],
                &BTreeMap::from([(CP_UPGRADE_ANNOTATION.to_string(), Some(version.to_string()))]),
            )
            .await?;
        self.progress
            .note(&format!("{name}: draining for the kubelet upgrade"));
        let drained = drain::drain(
            &self.drain_client,
            name,
            Instant::now() + self.drain_timeout,
            &self.drain,
            &(),
            &self.streaming_lists,
        )
        .await;
        match drained {
            Ok(report) if !matches!(report.outcome, DrainOutcome::Skipped { .. }) => {}
            Ok(_) | Err(_) => {
                // Not drained: give the node back, untouched.
                self.finish_kubelet(name).await?;
                let message = match drained {
                    Err(e) => e.to_string(),
                    Ok(_) => "the drain timed out (drain.onTimeout: skip)".into(),
                };
                return Err(ControlPlaneError::Drain {
                    node: name.to_string(),
                    message: format!("{message}; {name} uncordoned, its kubelet not upgraded"),
                });
            }
        }
        let step = script::Step::UpgradeKubelet { version };
        self.progress
            .note(&format!("{name}: {}", step.description()));
        self.run_script(name, step).await?;
        self.await_kubelet_ready(name, version).await?;
        self.finish_kubelet(name).await?;
        Ok(true)
    }

    async fn finish_kubelet(&self, name: &str) -> Result<(), ControlPlaneError> {
        give_back(&self.node_ops, name).await
    }

    async fn run_script(&self, name: &str, step: script::Step) -> Result<(), ControlPlaneError> {
        let node = self.nodes.get(name);
        let facts = NodeFacts {
            name: name.to_string(),
        };
        let request = ExecRequest {
            // Detached from this process on the node: interrupting kubesurge
            // never kills kubeadm half-way, and a rerun re-attaches.
            script: detach::wrap(&script::render(step, &facts), SCRIPT_TIMEOUT),
            description: step.description(),
            timeout: SCRIPT_TIMEOUT,
        };
        let target = exec_target(name, node.as_deref());
        // No new command on a node once the run lost its lock; a command
        // that makes the API server go away runs with the lease held
        // through the outage (kubeadm waits up to 5 minutes per
        // component), so that neither this run fences itself nor another
        // takes over while the API cannot be reached.
        let restarts_apiserver = matches!(step, script::Step::UpgradeControlPlane { .. });
        if let Some(lease) = &self.lease {
            lease
                .fence()
                .check()
                .map_err(|f| ControlPlaneError::Fenced(f.to_string()))?;
            if restarts_apiserver {
                lease
                    .hold_through(
                        &format!("{} on {name}", request.description),
                        SCRIPT_TIMEOUT,
                    )
                    .await
                    .map_err(|e| ControlPlaneError::Fenced(e.to_string()))?;
            }
        }
        self.node_event(
            name,
            EventType::Normal,
            "KubesurgeCommandStarted",
            &format!("Running {}", request.description),
        )
        .await;
        let started = jiff::Timestamp::now();
        let clock = Instant::now();
        let ran = self.exec.run(&target, &request, &LogSink).await;
        let exit_code = ran.as_ref().map_or(-1, |o| o.exit_code);
        self.commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(CommandRecord {
                description: request.description.clone(),
                started,
                exit_code,
                duration_ms: u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX),
            });
        let (kind, reason, outcome) = if exit_code == 0 {
            (
                EventType::Normal,
                "KubesurgeCommandSucceeded",
                "finished".to_string(),
            )
        } else {
            (
                EventType::Warning,
                "KubesurgeCommandFailed",
                format!("failed (exit {exit_code})"),
            )
        };
        self.node_event(
            name,
            kind,
            reason,
            &format!(
                "{} {outcome} after {}s",
                request.description,
                clock.elapsed().as_secs()
            ),
        )
        .await;
        if restarts_apiserver && let Some(lease) = &self.lease {
            // Back to the usual duration; a failure here leaves the longer
            // one, which only makes a contender wait longer.
            if let Err(e) = lease.end_hold().await {
                tracing::warn!(error = %e, "could not shorten the run lock's lease after {}", request.description);
            }
        }
        let output = ran.map_err(|source| ControlPlaneError::Exec {
            node: name.to_string(),
            description: request.description.clone(),
            source,
        })?;
        if output.success() {
            Ok(())
        } else {
            Err(ControlPlaneError::Script {
                node: name.to_string(),
                description: request.description,
                code: output.exit_code,
                tail: output.tail(TAIL_LINES),
            })
        }
    }

    /// Read the kubelet version of a node from the API (for callers that
    /// have no cache).
    pub async fn kubelet_of(&self, name: &str) -> Result<Option<KubeVersion>, kube::Error> {
        let api: Api<Node> = Api::all(self.client.clone());
        let node = with_retry("get node", || api.get_opt(name)).await?;
        Ok(node.as_ref().and_then(nodes::kubelet_version))
    }
}

/// Where a script for node `name` runs: its instance (from the Node's
/// providerID) for transports that address instances, its internal IP for
/// those that connect to hosts.
pub fn exec_target(name: &str, node: Option<&Node>) -> ExecTarget {
    ExecTarget {
        node: name.to_string(),
        instance: node
            .and_then(nodes::provider_id)
            .and_then(|p| p.rsplit('/').next())
            .filter(|id| !id.is_empty())
            .map(|id| id.into()),
        address: node.and_then(nodes::internal_ip).map(str::to_string),
    }
}

/// Script output goes to the run's log.
struct LogSink;

impl OutputSink for LogSink {
    fn line(&self, node: &str, line: &str) {
        tracing::info!(target: "kubesurge::node", node, "{line}");
    }
}
