//! The surge engine (design §8): replace workers by launching new-version
//! machines, joining them, draining the old ones and terminating them,
//! pool by pool in sliding windows, resumable after a crash at any point.

pub mod annotations;
pub mod autoscaler;
pub mod config;
pub mod deadlines;
pub mod fenced;
pub mod gc;
pub mod instances;
pub mod machine;
pub mod mapping;
pub mod own_node;
pub mod pool;
pub mod pool_instances;
pub mod progress;
pub mod record;
pub mod report;
pub mod select;
pub mod slot;
pub mod spread;
pub mod status;
pub mod watched;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::Arc;

use futures::future::join_all;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client};
use kubesurge_provider::{Instance, PoolRef, ProviderError, tags};
use thiserror::Error;
use tokio::sync::watch;
use tracing::Instrument;

pub use config::{Criteria, EngineConfig, PoolConfig};
pub use machine::Phase;
pub use pool::StopReason;
pub use progress::{Progress, Silent};
pub use record::{RecordError, RecordStore, RecordedNode, RunRecord, RunState};
pub use report::{RunOutcome, RunReport, SlotOutcome, SlotReport};

use crate::kube::cache::WatchCache;
use crate::kube::drain::StreamingLists;
use crate::kube::events::Recorder;
use crate::kube::join::{ClusterInfo, JoinError};
use crate::kube::nodes::{self, CONTROL_PLANE_LABEL, NodeOps};
use crate::kube::pages::{list_all, visit_pages};
use crate::kube::retry::with_retry;
use crate::version::KubeVersion;

/// The cloud controller manager the cluster runs in kube-system (a
/// DaemonSet or Deployment named after it, as cloud-provider-aws and the
/// other providers' manifests name them), as `kind/name`.
async fn cloud_controller(client: &Client) -> Result<Option<String>, kube::Error> {
    use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
    let is_ccm = |name: &Option<String>| {
        name.as_deref()
            .is_some_and(|n| n.contains("cloud-controller-manager"))
    };
    let params = ListParams::default();
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), "kube-system");
    let list = with_retry("list daemonsets", || daemonsets.list(&params)).await?;
    if let Some(ds) = list.items.iter().find(|d| is_ccm(&d.metadata.name)) {
        return Ok(Some(format!(
            "DaemonSet kube-system/{}",
            ds.metadata.name.as_deref().unwrap_or("")
        )));
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "kube-system");
    let list = with_retry("list deployments", || deployments.list(&params)).await?;
    Ok(list
        .items
        .iter()
        .find(|d| is_ccm(&d.metadata.name))
        .map(|d| {
            format!(
                "Deployment kube-system/{}",
                d.metadata.name.as_deref().unwrap_or("")
            )
        }))
}

/// What a run is asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationRequest {
    /// The command in canonical form: a rerun continues an unfinished run
    /// only when this matches (design §5, issue "rerun the same command").
    pub command: String,
    /// The kubelet version replacements get (the control plane's).
    pub target: KubeVersion,
    /// Pools to rotate; empty = all.
    pub pools: Vec<String>,
    pub criteria: Criteria,
    pub dry_run: bool,
}

/// Why a run could not go on.
#[derive(Debug, Error)]
pub enum EngineError {
    /// Another command's run is unfinished (exit 2).
    #[error(
        "run {id} ({command}) is unfinished ({state:?}); rerun `kubesurge {command}` to finish it, or `kubesurge abort` to abandon it"
    )]
    UnfinishedRun {
        id: String,
        command: String,
        state: RunState,
    },
    /// The configuration cannot work against this cluster (exit 2).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("pool {pool}: {source}")]
    Provider {
        pool: String,
        #[source]
        source: ProviderError,
    },
    #[error(transparent)]
    Join(#[from] JoinError),
}

/// The engine, wired to a cluster and its providers.
pub struct Engine {
    pub client: Client,
    pub drain_client: Client,
    pub config: Arc<EngineConfig>,
    pub progress: Arc<dyn Progress>,
    /// This machine's name, the source of the engine's Events.
    pub instance: String,
}

impl Engine {
    /// The engine on `client` (and the drain's `drain_client`, which must
    /// not retry 429s itself), reporting to `progress`.
    pub fn new(
        client: Client,
        drain_client: Client,
        config: EngineConfig,
        progress: Arc<dyn Progress>,
    ) -> Engine {
        Engine {
            client,
            drain_client,
            config: Arc::new(config),
            progress,
            instance: crate::kube::lock::hostname(),
        }
    }

    /// Run (or continue) a rotation. `requests` carries abort and
    /// window-end requests; the run stops starting slots when one comes.
    pub async fn run(
        &self,
        request: &RotationRequest,
        requests: watch::Receiver<Option<StopReason>>,
    ) -> Result<RunReport, EngineError> {
        let started = Timestamp::now();
        let records = RecordStore::new(self.client.clone());
        // Slots find their replacement's Node by the instance id its
        // providerID names (in any form) on every change.
        let instance_id =
            slot::InstanceIdOf(self.config.pools.iter().map(|p| p.instance_id_of).collect());
        let node_cache = watched::nodes(self.client.clone(), instance_id.clone()).await?;
        let pools = self.selected_pools(request)?;
        self.check_cloud_controller(&pools).await?;

        let previous = records.load().await?;
        let mut record = match previous {
            Some(r) if r.state.is_unfinished() && r.command == request.command => {
                self.progress.note(&format!(
                    "continuing unfinished run {} ({:?})",
                    r.id, r.state
                ));
                r
            }
            Some(r) if r.state.is_unfinished() => {
                return Err(EngineError::UnfinishedRun {
                    id: r.id,
                    command: r.command,
                    state: r.state,
                });
            }
            _ => {
                let nodes = self.select(request, &pools, &node_cache).await?;
                RunRecord {
                    id: record::new_run_id(),
                    command: request.command.clone(),
                    target: request.target,
                    started,
                    state: RunState::Running,
                    nodes,
                    finished: None,
                    message: None,
                }
            }
        };

        if request.dry_run {
            return self
                .dry_run(request, &record, &pools, &node_cache, started)
                .await;
        }
        if record.nodes.is_empty() {
            return Ok(RunReport::of_run(
                record.id,
                &request.command,
                record.target,
                started,
                RunOutcome::Succeeded,
                Vec::new(),
            ));
        }
        // Every old node maps to an instance this run may terminate, or
        // nothing changes.
        let works = self.pool_works(&pools, &record, &node_cache).await?;
        record.state = RunState::Running;
        record.finished = None;
        record.message = None;
        records.save(&record).await?;
        self.progress.start(&record.id, record.nodes.len());

        let cluster_info = self.cluster_info().await?;
        let kube_system = watched::kube_system(self.client.clone()).await?;
        let volume_attachments = watched::volume_attachments(self.client.clone()).await?;
        let ctx = slot::RunContext {
            run_id: record.id.clone(),
            target: record.target,
            config: self.config.clone(),
            deadlines: deadlines::Deadlines::from_config(&self.config),
            client: self.client.clone(),
            drain_client: self.drain_client.clone(),
            streaming_lists: StreamingLists::default(),
            nodes: node_cache.clone(),
            kube_system,
            volume_attachments,
            node_ops: NodeOps::new(self.client.clone()),
            recorder: Recorder::new(self.client.clone(), self.instance.clone()),
            progress: self.progress.clone(),
            cluster_info,
            discarded: Arc::new(std::sync::Mutex::new(Default::default())),
            instance_id,
        };
        let sweeper = tokio::spawn(slot::sweep_discarded(
            node_cache.clone(),
            NodeOps::new(self.client.clone()),
            ctx.discarded.clone(),
        ));

        // One stop signal for the run: outside requests, and the first
        // failing slot, both stop every pool from starting new slots.
        let (stop_tx, stop_rx) = watch::channel(requests.borrow().clone());
        let forward = {
            let mut requests = requests.clone();
            let stop_tx = stop_tx.clone();
            tokio::spawn(async move {
                while requests.changed().await.is_ok() {
                    let reason = requests.borrow().clone();
                    if reason.is_some() {
                        stop_tx.send_if_modified(|s| {
                            let first = s.is_none();
                            if first {
                                *s = reason.clone();
                            }
                            first
                        });
                    }
                }
            })
        };
        // An in-cluster run's own node goes last, alone.
        let (works, own) = own_node::hold_back(works, self.config.own_node.as_deref());
        // Every log event of the slots carries the run's id (the JSON logs
        // show span fields).
        let run_span = tracing::info_span!("run", run_id = %record.id);
        let every_slot = async {
            let runs = works
                .into_iter()
                .map(|work| pool::run_pool(&ctx, work, stop_rx.clone(), &stop_tx));
            let mut slots: Vec<SlotReport> = join_all(runs).await.into_iter().flatten().collect();
            if let Some(work) = own {
                if stop_tx.borrow().is_none() {
                    self.progress.note(&format!(
                        "replacing {}, the node this run's own pod runs on, last",
                        work.nodes.join(", ")
                    ));
                    slots.extend(pool::run_pool(&ctx, work, stop_rx.clone(), &stop_tx).await);
                } else {
                    slots.extend(
                        work.nodes
                            .iter()
                            .map(|n| SlotReport::not_started(&work.pool.name, n)),
                    );
                }
            }
            slots
        }
        .instrument(run_span);
        // SIGTERM or SIGINT: the slots stop where they are, as in a crash.
        let slots = tokio::select! {
            slots = every_slot => slots,
            signal = StopReason::interrupted(requests.clone()) => {
                forward.abort();
                sweeper.abort();
                return self
                    .stop_interrupted(signal, record, &records, &node_cache, request, started)
                    .await;
            }
        };

        forward.abort();
        sweeper.abort();
        self.release_scale_down(&node_cache).await;
        let stop_reason = stop_tx.borrow().clone();
        let failures: Vec<String> = slots
            .iter()
            .filter_map(|s| match &s.outcome {
                SlotOutcome::Failed { reason } => Some(reason.clone()),
                _ => None,
            })
            .collect();
        let remaining = slots
            .iter()
            .filter(|s| s.outcome == SlotOutcome::NotStarted)
            .count();
        let (outcome, state) = if !failures.is_empty() {
            (
                RunOutcome::Failed {
                    reason: failures.join("; "),
                },
                RunState::Failed,
            )
        } else {
            match stop_reason {
                Some(StopReason::Abort) if remaining > 0 => {
                    (RunOutcome::Aborted, RunState::Aborted)
                }
                Some(StopReason::WindowEnd) if remaining > 0 => (
                    RunOutcome::Stopped {
                        reason: "the maintenance window ended".into(),
                        remaining,
                        opens_at: None,
                    },
                    RunState::Stopped,
                ),
                _ => (RunOutcome::Succeeded, RunState::Succeeded),
            }
        };
        if state == RunState::Succeeded {
            self.delete_run_tokens().await?;
        }
        record.state = state;
        record.note_replacements(&slots);
        record.finished = Some(Timestamp::now());
        record.message = match &outcome {
            RunOutcome::Failed { reason } => Some(reason.clone()),
            _ => None,
        };
        records.save(&record).await?;
        Ok(RunReport::of_run(
            record.id,
            &request.command,
            record.target,
            started,
            outcome,
            slots,
        ))
    }

    /// End a run interrupted by `signal`: record it stopped (a rerun of the
    /// same command continues it) and report the old nodes still there.
    async fn stop_interrupted(
        &self,
        signal: &'static str,
        mut record: RunRecord,
        records: &RecordStore,
        node_cache: &WatchCache<Node>,
        request: &RotationRequest,
        started: Timestamp,
    ) -> Result<RunReport, EngineError> {
        let reason = format!("interrupted by {signal}");
        let slots: Vec<SlotReport> = record
            .nodes
            .iter()
            .filter(|n| node_cache.get(&n.name).is_some())
            .map(|n| SlotReport::not_started(&n.pool, &n.name))
            .collect();
        record.state = RunState::Stopped;
        record.finished = Some(Timestamp::now());
        record.message = Some(reason.clone());
        records.save(&record).await?;
        let outcome = RunOutcome::Stopped {
            reason,
            remaining: slots.len(),
            opens_at: None,
        };
        Ok(RunReport::of_run(
            record.id,
            &request.command,
            record.target,
            started,
            outcome,
            slots,
        ))
    }

    /// What a pool's window works on: its nodes of the run, in order, the
    /// image for the target, its size, each old node's instance, and the
    /// replacements runs launched for it earlier (this run's, and those of
    /// runs that never finished). `None` when the run has no node of the
    /// pool. Old nodes that map to no instance this run may terminate are
    /// returned as refused, with the reason.
    async fn pool_work(
        &self,
        pool: &PoolConfig,
        record: &RunRecord,
        node_cache: &WatchCache<Node>,
    ) -> Result<Option<(pool::PoolWork, Vec<(String, mapping::Unmappable)>)>, EngineError> {
        let nodes: Vec<String> = record
            .nodes
            .iter()
            .filter(|n| n.pool == pool.name)
            .map(|n| n.name.clone())
            .collect();
        if nodes.is_empty() {
            return Ok(None);
        }
        let provider_err = |source| EngineError::Provider {
            pool: pool.name.clone(),
            source,
        };
        let pool_ref = PoolRef {
            cluster: self.config.cluster.clone(),
            pool: pool.name.clone(),
        };
        let image = pool
            .provider
            .resolve_image(&pool_ref, &record.target.to_string())
            .await
            .map_err(provider_err)?;
        let listed = pool.provider.list(&pool_ref).await.map_err(provider_err)?;
        let present: Vec<Arc<Node>> = nodes.iter().filter_map(|n| node_cache.get(n)).collect();
        let resuming_termination = |name: &str| {
            node_cache.get(name).is_some_and(|n| {
                nodes::annotation(&n, annotations::RUN) == Some(record.id.as_str())
                    && nodes::annotation(&n, annotations::PHASE)
                        == Some(Phase::Terminating.as_str())
            })
        };
        let (old_instances, refused) = mapping::map_old_instances(
            pool,
            &self.config.cluster,
            &present,
            &listed,
            resuming_termination,
        )
        .await;
        let adopted: Vec<Instance> = listed
            .into_iter()
            .filter(|i| i.tag(tags::REPLACES).is_some())
            .collect();
        let size = node_cache
            .all()
            .iter()
            .filter(|n| pool.selects(&n.metadata.labels.clone().unwrap_or_default()))
            .count() as u32;
        Ok(Some((
            pool::PoolWork {
                instances: Arc::new(pool_instances::PoolInstances::new(pool.provider.clone())),
                pool: Arc::new(pool.clone()),
                image,
                nodes,
                size,
                adopted,
                old_instances,
            },
            refused,
        )))
    }

    /// Every pool's work, or the refusal naming each old node that maps to
    /// no instance this run may terminate (nothing has changed yet).
    async fn pool_works(
        &self,
        pools: &[PoolConfig],
        record: &RunRecord,
        node_cache: &WatchCache<Node>,
    ) -> Result<Vec<pool::PoolWork>, EngineError> {
        let mut works = Vec::new();
        let mut refused = Vec::new();
        for pool in pools {
            if let Some((work, problems)) = self.pool_work(pool, record, node_cache).await? {
                works.push(work);
                refused.extend(
                    problems
                        .into_iter()
                        .map(|(node, why)| format!("{node}: {why}")),
                );
            }
        }
        if refused.is_empty() {
            Ok(works)
        } else {
            Err(EngineError::Invalid(format!(
                "refusing to start: {} selected node(s) map to no instance this run may terminate; nothing was changed:\n  {}",
                refused.len(),
                refused.join("\n  ")
            )))
        }
    }

    /// Lift the cluster autoscaler protection from every node a run (this
    /// one, or one that crashed) gave it: the run is over. Best effort: a
    /// node left protected is named in the log.
    async fn release_scale_down(&self, node_cache: &WatchCache<Node>) {
        let ops = NodeOps::new(self.client.clone());
        for node in node_cache.all() {
            if !autoscaler::protected_by_a_run(&node) {
                continue;
            }
            let name = nodes::name(&node).to_string();
            if let Err(e) = ops.annotate(&name, &autoscaler::release()).await {
                tracing::warn!(node = %name, error = %e, "cannot lift the scale-down protection");
            }
        }
    }

    /// A cluster that runs an external cloud controller manager needs new
    /// kubelets with `--cloud-provider=external`: without it the controller
    /// never initializes their Nodes (no zone label, no instance type, no
    /// addresses), and pods with zone affinity or zone spread constraints
    /// could not follow their old node's. Refused before anything changes.
    async fn check_cloud_controller(&self, pools: &[PoolConfig]) -> Result<(), EngineError> {
        let Some(controller) = cloud_controller(&self.client).await? else {
            return Ok(());
        };
        let lacking: Vec<&str> = pools
            .iter()
            .filter(|p| {
                p.kubelet_extra_args
                    .get("cloud-provider")
                    .map(String::as_str)
                    != Some("external")
            })
            .map(|p| p.name.as_str())
            .collect();
        if lacking.is_empty() {
            return Ok(());
        }
        Err(EngineError::Invalid(format!(
            "the cluster runs an external cloud controller ({controller}), and new nodes of pool(s) {} \
             would join without --cloud-provider=external: it would never initialize them (no zone \
             label, no providerID, tainted {}). Add `kubeletExtraArgs: {{ cloud-provider: external }}` \
             to pools[{}] in the config",
            lacking.join(", "),
            nodes::UNINITIALIZED_TAINT,
            lacking.join("], pools["),
        )))
    }

    fn selected_pools(&self, request: &RotationRequest) -> Result<Vec<PoolConfig>, EngineError> {
        for name in &request.pools {
            if !self.config.pools.iter().any(|p| &p.name == name) {
                let known: Vec<&str> = self.config.pools.iter().map(|p| p.name.as_str()).collect();
                return Err(EngineError::Invalid(format!(
                    "--pool {name}: no such pool in the config (pools: {})",
                    known.join(", ")
                )));
            }
        }
        let pools: Vec<PoolConfig> = self
            .config
            .pools
            .iter()
            .filter(|p| request.pools.is_empty() || request.pools.contains(&p.name))
            .cloned()
            .collect();
        for pool in &pools {
            if pool.max_surge.is_zero() {
                return Err(EngineError::Invalid(format!(
                    "pools[{}].maxSurge is 0: terminate-first rotation is not supported; set maxSurge to 1 or more",
                    pool.name
                )));
            }
        }
        Ok(pools)
    }

    /// The workers this run replaces, in order.
    async fn select(
        &self,
        request: &RotationRequest,
        pools: &[PoolConfig],
        nodes: &WatchCache<Node>,
    ) -> Result<Vec<RecordedNode>, EngineError> {
        let now = Timestamp::now();
        let mut queues = Vec::new();
        let mut tails = Vec::new();
        for pool in pools {
            let pool_ref = PoolRef {
                cluster: self.config.cluster.clone(),
                pool: pool.name.clone(),
            };
            let provider_err = |source| EngineError::Provider {
                pool: pool.name.clone(),
                source,
            };
            let instances = pool.provider.list(&pool_ref).await.map_err(provider_err)?;
            // Nodes of replacements earlier runs launched (the newest, last
            // in selection order): never moved ahead of the nodes they
            // replace, which a slot may still adopt them for.
            let replacements: BTreeSet<String> = instances
                .iter()
                .filter(|i| i.tag(tags::REPLACES).is_some())
                .map(|i| i.provider_id.clone())
                .collect();
            let (images, current_image) = if request.criteria.stale_image {
                let images: BTreeMap<String, String> = instances
                    .into_iter()
                    .filter_map(|i| i.image.map(|img| (i.provider_id, img)))
                    .collect();
                let current = pool
                    .provider
                    .resolve_image(&pool_ref, &request.target.to_string())
                    .await
                    .map_err(provider_err)?;
                (images, Some(current.id))
            } else {
                (BTreeMap::new(), None)
            };
            let candidates: Vec<select::Candidate> = nodes
                .all()
                .iter()
                .filter(|n| {
                    let labels = n.metadata.labels.clone().unwrap_or_default();
                    !labels.contains_key(CONTROL_PLANE_LABEL) && pool.selects(&labels)
                })
                .filter_map(|n| {
                    Some(select::Candidate {
                        name: nodes::name(n).to_string(),
                        pool: pool.name.clone(),
                        created: n.metadata.creation_timestamp.as_ref()?.0,
                        zone: nodes::label(n, nodes::ZONE_LABEL).map(str::to_string),
                        kubelet: nodes::kubelet_version(n)?,
                        image: nodes::provider_id(n).and_then(|p| images.get(p).cloned()),
                    })
                })
                .filter(|c| {
                    select::reason(
                        c,
                        &request.criteria,
                        request.target,
                        now,
                        current_image.as_deref(),
                    )
                    .is_some()
                })
                .collect();
            let size = nodes
                .all()
                .iter()
                .filter(|n| pool.selects(&n.metadata.labels.clone().unwrap_or_default()))
                .count() as u32;
            let (kept_last, movable): (Vec<String>, Vec<String>) = select::order(candidates)
                .into_iter()
                .map(|c| c.name)
                .partition(|name| {
                    nodes
                        .get(name)
                        .and_then(|n| nodes::provider_id(&n).map(str::to_string))
                        .is_some_and(|p| replacements.contains(&p))
                });
            queues.push(spread::PoolQueue {
                nodes: movable,
                window: pool.max_surge.surge_for(size).max(1) as usize,
            });
            tails.push(kept_last);
        }
        // The order is an optimisation: without the pods or PDBs (an API
        // refusal), the selection's order stands.
        let budgets = self
            .disruption_budgets_by_node()
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot read pods and PDBs; nodes are replaced in selection order");
                BTreeMap::new()
            });
        let ordered = spread::spread_budgets(&queues, &budgets);
        Ok(pools
            .iter()
            .zip(ordered)
            .zip(tails)
            .flat_map(|((pool, names), tail)| {
                names.into_iter().chain(tail).map(|name| RecordedNode {
                    name,
                    pool: pool.name.clone(),
                    replaced_by: None,
                })
            })
            .collect())
    }

    /// The PDBs each node's evictable pods count against, as the cluster
    /// has them now: what [`spread::spread_budgets`] orders the queues by.
    async fn disruption_budgets_by_node(
        &self,
    ) -> Result<BTreeMap<String, Vec<String>>, kube::Error> {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let pdbs: Api<PodDisruptionBudget> = Api::all(self.client.clone());
        let params = ListParams::default();
        let pdbs = with_retry("list PodDisruptionBudgets", || list_all(&pdbs, &params)).await?;
        if pdbs.is_empty() {
            return Ok(BTreeMap::new());
        }
        // Page by page, keeping only the answer: the cluster's pods are
        // never all in memory at once.
        let unmanaged = self.config.drain.unmanaged;
        let (pods, params, pdbs) = (&pods, &params, &pdbs);
        with_retry("list pods", || {
            let mut budgets: BTreeMap<String, Vec<String>> = BTreeMap::new();
            async move {
                visit_pages(pods, params, |page: Vec<Pod>| {
                    for (node, found) in spread::budgets_by_node(&page, pdbs, unmanaged) {
                        budgets.entry(node).or_default().extend(found);
                    }
                    ControlFlow::<()>::Continue(())
                })
                .await?;
                Ok(budgets)
            }
        })
        .await
    }

    async fn cluster_info(&self) -> Result<ClusterInfo, EngineError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), "kube-public");
        let cm = with_retry("get cluster-info", || api.get("cluster-info")).await?;
        Ok(ClusterInfo::from_config_map(&cm)?)
    }

    /// Delete every bootstrap token kubesurge minted, at the end of a run
    /// that succeeded: this run's (slots already delete theirs as soon as
    /// their node registers) and those of runs that never finished. The lock
    /// says no other run is minting any.
    async fn delete_run_tokens(&self) -> Result<(), EngineError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), "kube-system");
        let params = ListParams::default().labels(annotations::TOKEN_RUN_LABEL);
        let list = with_retry("list tokens", || api.list(&params)).await?;
        for s in list.items {
            let name = s.metadata.name.unwrap_or_default();
            let dp = DeleteParams::default();
            match with_retry("delete token", || api.delete(&name, &dp)).await {
                Ok(_) => {}
                Err(e) if crate::kube::errors::is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Describe every mutation the run would make, making none: each slot
    /// is observed from the world as a real run observes it, and the state
    /// machine's actions are listed as if each succeeded.
    async fn dry_run(
        &self,
        request: &RotationRequest,
        record: &RunRecord,
        pools: &[PoolConfig],
        nodes: &WatchCache<Node>,
        started: Timestamp,
    ) -> Result<RunReport, EngineError> {
        let mut would = Vec::new();
        let mut slots = Vec::new();
        let target = record.target.to_string();
        let on_timeout = format!("{:?}", self.config.drain.on_timeout).to_lowercase();
        // In the order a run takes them: an in-cluster run's own node last.
        let (works, own) = own_node::hold_back(
            self.pool_works(pools, record, nodes).await?,
            self.config.own_node.as_deref(),
        );
        for work in works.into_iter().chain(own) {
            let pool = &work.pool;
            for old_node in &work.nodes {
                let input = work.slot_input(old_node);
                let observed =
                    slot::observe(nodes, &record.id, self.config.max_launch_attempts, &input);
                let describe = machine::Describe {
                    pool: &pool.name,
                    old_node,
                    zone: observed.zone.as_deref(),
                    image: &work.image.id,
                    target: &target,
                    token_ttl: self.config.token_ttl,
                    drain_timeout: self.config.drain_timeout,
                    on_timeout: &on_timeout,
                    old_instance: observed.old_instance.as_ref().map(|i| i.id.0.as_str()),
                };
                let mut report = SlotReport::not_started(&pool.name, old_node);
                report.zone = observed.zone.clone();
                report.old_instance = observed.old_instance.as_ref().map(|i| i.id.0.clone());
                for action in machine::planned(&observed.state) {
                    report.actions.push(action.kind().to_string());
                    would.extend(describe.line(&action));
                }
                slots.push(report);
            }
        }
        Ok(RunReport {
            run_id: record.id.clone(),
            command: request.command.clone(),
            target: record.target,
            started,
            finished: Timestamp::now(),
            dry_run: true,
            outcome: RunOutcome::Succeeded,
            slots,
            would,
        })
    }
}
