//! One slot: the replacement of one old worker (design §8).
//!
//! Launch → join → drain → terminate, each step idempotent. The slot's
//! phase is read back from the world when it starts (annotations on the old
//! node, tags on instances), so a rerun after a crash anywhere continues
//! where the world says it is and never launches a second instance for the
//! same attempt: the provider's launch is idempotent on the slot key.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use kubesurge_provider::{
    DeleteStatus, Image, Instance, InstanceId, LaunchRequest, NodeRef, PoolRef, ProviderError,
    SlotKey, tags,
};
use serde::Serialize;
use tokio::time::Instant;

use super::annotations as ann;
use super::config::{EngineConfig, PoolConfig};
use super::progress::Progress;
use super::report::{PhaseTimings, SlotOutcome, SlotReport};
use crate::kube::cache::WatchCache;
use crate::kube::drain::{self, DrainError, DrainOutcome, DrainProgress};
use crate::kube::events::{EventType, Recorder};
use crate::kube::join::{BootstrapToken, ClusterInfo, JoinSpec, render_user_data};
use crate::kube::nodes::{self, EXCLUDE_LB_LABEL, NodeOps};
use crate::kube::pods;
use crate::kube::retry::with_retry;
use crate::kube::volumes;
use crate::version::KubeVersion;

/// Where a slot is. Written on the old node as `kubesurge.io/phase`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    Pending,
    Launching,
    Joining,
    Draining,
    Terminating,
    Done,
    Skipped,
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Launching => "launching",
            Phase::Joining => "joining",
            Phase::Draining => "draining",
            Phase::Terminating => "terminating",
            Phase::Done => "done",
            Phase::Skipped => "skipped",
            Phase::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        [
            Phase::Pending,
            Phase::Launching,
            Phase::Joining,
            Phase::Draining,
            Phase::Terminating,
            Phase::Done,
            Phase::Skipped,
            Phase::Failed,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }
}

/// How long a terminating instance may take before the slot fails.
const TERMINATE_TIMEOUT: Duration = Duration::from_secs(600);
/// How long provider calls retry throttling and transient errors.
const PROVIDER_RETRY_BUDGET: Duration = Duration::from_secs(300);
/// How long to wait for a drained node's volumes to detach (the
/// attach/detach controller force-detaches after 6 minutes anyway).
const VOLUME_DETACH_TIMEOUT: Duration = Duration::from_secs(360);

/// What every slot of a run shares.
pub struct RunContext {
    pub run_id: String,
    pub target: KubeVersion,
    pub config: Arc<EngineConfig>,
    pub client: Client,
    /// A client without kube's own 429 retries: a PDB's 429 must reach
    /// the drain.
    pub drain_client: Client,
    pub nodes: WatchCache<Node>,
    /// The kube-system pods: the health gate's and the replacements'
    /// DaemonSet pods.
    pub kube_system: WatchCache<Pod>,
    pub node_ops: NodeOps,
    pub recorder: Recorder,
    pub progress: Arc<dyn Progress>,
    pub cluster_info: ClusterInfo,
    /// providerIDs of replacements this run terminated because they never
    /// became Ready. A machine can still register its Node while it shuts
    /// down; such Nodes are deleted on sight (see [`sweep_discarded`]) and
    /// never hold the health gate.
    pub discarded: Arc<Mutex<std::collections::BTreeSet<String>>>,
}

impl RunContext {
    /// True when `node` belongs to a replacement this run gave up on.
    pub fn is_discarded(&self, node: &Node) -> bool {
        nodes::provider_id(node).is_some_and(|p| {
            self.discarded
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(p)
        })
    }
}

/// Delete, as they appear, the Nodes of replacements the run terminated:
/// no cloud controller does it in a kubeadm cluster, and a NotReady node
/// left behind would hold every health gate. Runs until aborted.
pub async fn sweep_discarded(
    nodes_cache: WatchCache<Node>,
    node_ops: NodeOps,
    discarded: Arc<Mutex<std::collections::BTreeSet<String>>>,
) {
    loop {
        let ghosts: Vec<(String, Option<String>)> = {
            let discarded = discarded.lock().unwrap_or_else(|e| e.into_inner());
            discarded
                .iter()
                .filter_map(|provider_id| nodes_cache.get_by_key(provider_id))
                .map(|n| (nodes::name(&n).to_string(), n.metadata.uid.clone()))
                .collect()
        };
        for (name, uid) in ghosts {
            tracing::warn!(
                node = %name,
                "deleting the Node of a replacement that was terminated because it never became Ready"
            );
            if let Err(e) = node_ops.delete(&name, uid.as_deref()).await {
                tracing::warn!(node = %name, error = %e, "could not delete the Node");
            }
        }
        nodes_cache
            .next_change(Instant::now() + Duration::from_secs(3600))
            .await;
    }
}

/// One slot's inputs.
pub struct SlotInput {
    pub pool: Arc<PoolConfig>,
    pub image: Image,
    pub old_node: String,
    /// Instances already tagged for this slot by this run (a rerun adopts
    /// them instead of launching).
    pub adopted: Vec<Instance>,
}

/// Why a slot failed, in the user's terms.
#[derive(Debug, thiserror::Error)]
enum SlotError {
    #[error("{0}")]
    Failed(String),
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("provider: {0}")]
    Provider(#[from] ProviderError),
}

/// A slot's result: its report, and whether the failure must stop the
/// whole run at once (a missing permission affects every slot).
pub struct SlotResult {
    pub report: SlotReport,
    pub fatal: bool,
}

/// Drive one slot to its end.
pub async fn run_slot(ctx: &RunContext, input: SlotInput) -> SlotResult {
    let mut report = SlotReport {
        pool: input.pool.name.clone(),
        old_node: input.old_node.clone(),
        old_instance: None,
        new_node: None,
        new_instance: None,
        zone: None,
        attempts: 0,
        timings: PhaseTimings::default(),
        drain: None,
        outcome: SlotOutcome::NotStarted,
    };
    let result = drive(ctx, &input, &mut report).await;
    let fatal = matches!(
        result,
        Err(SlotError::Provider(ProviderError::Unauthorized { .. }))
    );
    match result {
        Ok(outcome) => report.outcome = outcome,
        Err(e) => {
            let reason = format!("{}: {e}", input.old_node);
            ctx.progress
                .phase(&input.pool.name, &input.old_node, Phase::Failed, &reason);
            let _ = ctx
                .node_ops
                .annotate(
                    &input.old_node,
                    &BTreeMap::from([(
                        ann::PHASE.to_string(),
                        Some(Phase::Failed.as_str().to_string()),
                    )]),
                )
                .await;
            report.outcome = SlotOutcome::Failed { reason };
        }
    }
    SlotResult { report, fatal }
}

fn set(pairs: &[(&str, Option<String>)]) -> BTreeMap<String, Option<String>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

async fn drive(
    ctx: &RunContext,
    input: &SlotInput,
    report: &mut SlotReport,
) -> Result<SlotOutcome, SlotError> {
    let pool = &input.pool;
    let old_name = input.old_node.as_str();
    let Some(old) = ctx.nodes.get(old_name) else {
        // Gone already: an earlier invocation finished this slot.
        ctx.progress
            .phase(&pool.name, old_name, Phase::Done, "already replaced");
        return Ok(SlotOutcome::Replaced);
    };
    let ours = nodes::annotation(&old, ann::RUN) == Some(ctx.run_id.as_str());
    let phase = if ours {
        nodes::annotation(&old, ann::PHASE).and_then(Phase::parse)
    } else {
        None
    };
    let old_instance = pool
        .provider
        .instance_for(&NodeRef {
            name: old_name.to_string(),
            provider_id: nodes::provider_id(&old).map(str::to_string),
            internal_ip: nodes::internal_ip(&old).map(str::to_string),
        })
        .await?;
    report.old_instance = old_instance.as_ref().map(|i| i.id.0.clone());
    let zone = old_instance
        .as_ref()
        .map(|i| i.zone.clone())
        .or_else(|| nodes::label(&old, nodes::ZONE_LABEL).map(str::to_string))
        .ok_or_else(|| {
            SlotError::Failed(format!(
                "cannot tell the zone of {old_name}: no instance found and no {} label",
                nodes::ZONE_LABEL
            ))
        })?;
    report.zone = Some(zone.clone());

    let resume_drain = matches!(phase, Some(Phase::Draining) | Some(Phase::Terminating))
        && nodes::annotation(&old, ann::REPLACED_BY).is_some();
    if resume_drain {
        report.new_node = nodes::annotation(&old, ann::REPLACED_BY).map(str::to_string);
    } else {
        let attempt: u32 = if ours {
            nodes::annotation(&old, ann::ATTEMPT)
                .and_then(|a| a.parse().ok())
                .unwrap_or(1)
        } else {
            1
        };
        let new_node = launch_and_join(
            ctx,
            input,
            &old,
            attempt,
            &zone,
            old_instance.as_ref(),
            report,
        )
        .await?;
        report.new_node = Some(new_node);
    }
    let new_node = report.new_node.clone().unwrap_or_default();

    if phase != Some(Phase::Terminating) {
        let drain_started = nodes::annotation(&old, ann::DRAIN_STARTED)
            .filter(|_| ours && resume_drain)
            .and_then(|t| t.parse::<Timestamp>().ok())
            .unwrap_or_else(Timestamp::now);
        if let Some(skipped) = drain_old(ctx, input, &new_node, drain_started, report).await? {
            return Ok(skipped);
        }
    }

    terminate_old(ctx, input, old_instance.as_ref(), report).await?;
    ctx.progress.phase(
        &pool.name,
        old_name,
        Phase::Done,
        &format!("replaced by {new_node}"),
    );
    Ok(SlotOutcome::Replaced)
}

/// Launch (or adopt) the replacement and wait until it is Ready at the
/// target version; retry with a new instance when it never joins.
async fn launch_and_join(
    ctx: &RunContext,
    input: &SlotInput,
    old: &Node,
    first_attempt: u32,
    zone: &str,
    old_instance: Option<&Instance>,
    report: &mut SlotReport,
) -> Result<String, SlotError> {
    let pool = &input.pool;
    let old_name = input.old_node.as_str();
    let config = &ctx.config;
    let mut last_failure = String::new();
    for attempt in first_attempt..=config.max_launch_attempts.max(first_attempt) {
        report.attempts = attempt;
        ctx.node_ops
            .annotate(
                old_name,
                &set(&[
                    (ann::RUN, Some(ctx.run_id.clone())),
                    (ann::PHASE, Some(Phase::Launching.as_str().into())),
                    (ann::ATTEMPT, Some(attempt.to_string())),
                ]),
            )
            .await?;
        let key = SlotKey {
            run_id: ctx.run_id.clone(),
            old_node: old_name.to_string(),
            attempt,
        };
        let launched_at = Instant::now();
        let instance = match input.adopted.iter().find(|i| {
            i.tag(tags::SLOT) == Some(key.tag_value().as_str()) && !i.state.is_going_away()
        }) {
            Some(adopted) => {
                ctx.progress.phase(
                    &pool.name,
                    old_name,
                    Phase::Launching,
                    &format!("adopting {} launched earlier", adopted.id),
                );
                adopted.clone()
            }
            None => launch(ctx, input, &key, zone, old_instance).await?,
        };
        report.new_instance = Some(instance.id.0.clone());
        ctx.progress.phase(
            &pool.name,
            old_name,
            Phase::Joining,
            &format!("instance {}", instance.id),
        );

        // The deadline counts from the launch, also across a crash.
        let elapsed = instance
            .launched_at
            .map(|t| Timestamp::now().duration_since(t))
            .and_then(|d| Duration::try_from(d).ok())
            .unwrap_or(Duration::ZERO);
        let deadline = Instant::now() + config.new_node_timeout.saturating_sub(elapsed);
        let join = match wait_ready(ctx, &instance, deadline).await {
            Some(new_node) => Join::Ready(new_node),
            // The node watch may have been cut off (an API server outage)
            // while the machine joined: a replacement is given up only on
            // a fresh read, never on a view that may lag.
            None => join_now(ctx, &instance).await?,
        };
        match join {
            Join::Ready(new_node) => {
                wait_daemon_pods(ctx, &new_node, deadline).await;
                report.timings.launch_to_ready = Some(launched_at.elapsed().as_secs_f64());
                delete_slot_tokens(ctx, old_name).await?;
                if let Some(node) = ctx.nodes.get(&new_node) {
                    ctx.recorder
                        .node_event(
                            &node,
                            EventType::Normal,
                            "KubesurgeJoined",
                            &format!(
                                "Joined as the replacement of {old_name} (run {})",
                                ctx.run_id
                            ),
                        )
                        .await;
                }
                ctx.recorder
                    .node_event(
                        old,
                        EventType::Normal,
                        "KubesurgeReplacementReady",
                        &format!(
                            "Replacement {new_node} is Ready; draining next (run {})",
                            ctx.run_id
                        ),
                    )
                    .await;
                return Ok(new_node);
            }
            Join::GivenUp { registered } => {
                last_failure = format!(
                    "instance {} did not become a Ready node at {} within {:?}",
                    instance.id, ctx.target, config.new_node_timeout
                );
                tracing::warn!(node = old_name, attempt, "{last_failure}; terminating it");
                ctx.progress.blocked(&pool.name, old_name, &last_failure);
                discard_replacement(ctx, input, &instance, registered).await?;
            }
        }
    }
    Err(SlotError::Failed(format!(
        "no replacement joined after {} attempts; {last_failure}; {old_name} keeps serving",
        config.max_launch_attempts
    )))
}

/// Mint the slot's token and ask the provider for the instance.
async fn launch(
    ctx: &RunContext,
    input: &SlotInput,
    key: &SlotKey,
    zone: &str,
    old_instance: Option<&Instance>,
) -> Result<Instance, SlotError> {
    let pool = &input.pool;
    let config = &ctx.config;
    let token = mint_token(ctx, key).await?;
    let node_name = format!("{}-{}", pool.name, short_random());
    let comment = format!(
        "kubesurge: cluster {}, run {}, replaces {} (attempt {})",
        config.cluster, key.run_id, key.old_node, key.attempt
    );
    let user_data = render_user_data(&JoinSpec {
        token: &token,
        cluster: &ctx.cluster_info,
        node_name: &node_name,
        labels: &pool.node_labels,
        taints: &pool.node_taints,
        kubeadm_version: ctx.target,
        provider_id_script: &pool.provider_id_script,
        comment: &comment,
    })
    .map_err(|e| SlotError::Failed(e.to_string()))?;
    let request = LaunchRequest {
        pool: PoolRef {
            cluster: config.cluster.clone(),
            pool: pool.name.clone(),
        },
        slot: key.clone(),
        image: input.image.id.clone(),
        zone: zone.to_string(),
        subnet: old_instance.and_then(|i| i.subnet.clone()),
        user_data,
        node_name: node_name.clone(),
        extra_tags: BTreeMap::new(),
    };
    ctx.progress.phase(
        &pool.name,
        &key.old_node,
        Phase::Launching,
        &format!("launching {node_name} in {zone}"),
    );
    let instance = provider_retry("launch", || pool.provider.launch(&request)).await?;
    Ok(instance)
}

async fn mint_token(ctx: &RunContext, key: &SlotKey) -> Result<BootstrapToken, SlotError> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), "kube-system");
    let labels = BTreeMap::from([
        (ann::TOKEN_RUN_LABEL.to_string(), ctx.run_id.clone()),
        (tags::REPLACES.to_string(), label_value(&key.old_node)),
    ]);
    loop {
        let token = BootstrapToken::generate();
        let secret = token.to_secret(
            Timestamp::now(),
            ctx.config.token_ttl,
            &format!(
                "kubesurge run {} slot {} attempt {}",
                key.run_id, key.old_node, key.attempt
            ),
            labels.clone(),
        );
        let post = PostParams::default();
        match with_retry("create bootstrap token", || secrets.create(&post, &secret)).await {
            Ok(_) => return Ok(token),
            // A token id collision (1 in 2 billion): draw another.
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Delete the bootstrap tokens minted for this slot.
async fn delete_slot_tokens(ctx: &RunContext, old_node: &str) -> Result<(), SlotError> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), "kube-system");
    let selector = format!(
        "{}={},{}={}",
        ann::TOKEN_RUN_LABEL,
        ctx.run_id,
        tags::REPLACES,
        label_value(old_node)
    );
    let params = ListParams::default().labels(&selector);
    let list = with_retry("list tokens", || secrets.list(&params)).await?;
    for secret in list.items {
        let name = secret.metadata.name.unwrap_or_default();
        let dp = DeleteParams::default();
        match with_retry("delete token", || secrets.delete(&name, &dp)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Wait until a Node with the instance's providerID is Ready at the target
/// kubelet version and stays Ready for `settle`. Returns its name.
async fn wait_ready(ctx: &RunContext, instance: &Instance, deadline: Instant) -> Option<String> {
    let target = ctx.target;
    let provider_id = instance.provider_id.as_str();
    loop {
        let name = ctx
            .nodes
            .wait_for(deadline, |cache| {
                cache
                    .get_by_key(provider_id)
                    .filter(|n| nodes::is_ready(n) && nodes::kubelet_version(n) == Some(target))
                    .map(|n| nodes::name(&n).to_string())
            })
            .await?;
        if ctx.config.settle.is_zero() {
            return Some(name);
        }
        // The node must stay Ready through the settle time: a node that
        // flaps right after joining is not a replacement to drain onto.
        let settle_end = Instant::now() + ctx.config.settle;
        let flapped = ctx
            .nodes
            .wait_for(settle_end.min(deadline), |cache| {
                cache.get(&name).filter(|n| !nodes::is_ready(n)).map(|_| ())
            })
            .await
            .is_some();
        if !flapped && Instant::now() >= settle_end {
            return Some(name);
        }
        if Instant::now() >= deadline {
            return None;
        }
    }
}

/// Wait until the kube-system DaemonSet pods on the new node (kube-proxy,
/// the CNI) run Ready before draining onto it: pods moved to a node whose
/// networking is not up yet would serve nothing. Past the join deadline the
/// slot goes on with a warning, and the health gate holds the pool's next
/// slot until they are Ready.
async fn wait_daemon_pods(ctx: &RunContext, node: &str, deadline: Instant) {
    let starting = |cache: &WatchCache<Pod>| {
        cache
            .find(|pod| {
                pods::node_name(pod) == Some(node)
                    && pod.metadata.deletion_timestamp.is_none()
                    && pods::is_daemon_pod(pod)
                    && !pods::is_finished(pod)
                    && !pods::is_ready(pod)
            })
            .map(|pod| pod.metadata.name.clone().unwrap_or_default())
    };
    let all_ready = ctx
        .kube_system
        .wait_for(deadline, |cache| starting(cache).is_none().then_some(()))
        .await;
    if all_ready.is_none()
        && let Some(pod) = starting(&ctx.kube_system)
    {
        tracing::warn!(node, pod = %pod, "DaemonSet pod on the replacement is not Ready yet; draining onto it anyway");
    }
}

/// Whether a replacement joined.
enum Join {
    /// Its Node, Ready at the target version.
    Ready(String),
    /// Past its deadline and not Ready at the target; the Node it
    /// registered, if any, as the API server has it.
    GivenUp { registered: Option<Box<Node>> },
}

/// What the API server says, now, of a replacement past its deadline.
async fn join_now(ctx: &RunContext, instance: &Instance) -> Result<Join, SlotError> {
    Ok(
        match ctx.node_ops.by_provider_id(&instance.provider_id).await? {
            Some(node)
                if nodes::is_ready(&node) && nodes::kubelet_version(&node) == Some(ctx.target) =>
            {
                Join::Ready(nodes::name(&node).to_string())
            }
            registered => Join::GivenUp {
                registered: registered.map(Box::new),
            },
        },
    )
}

/// A replacement that never joined: terminate it and remove any Node it
/// registered, so the next attempt starts clean and nothing is orphaned.
/// A Node it did register may have been Ready for a while (a flap, or a
/// join the run could not see): it is cordoned and drained first, like any
/// node leaving, so no pod that landed on it is lost.
async fn discard_replacement(
    ctx: &RunContext,
    input: &SlotInput,
    instance: &Instance,
    registered: Option<Box<Node>>,
) -> Result<(), SlotError> {
    if let Some(node) = &registered {
        let name = nodes::name(node);
        ctx.node_ops.cordon(name).await?;
        let deadline = Instant::now() + ctx.config.drain_timeout;
        let left =
            match drain::drain(&ctx.drain_client, name, deadline, &ctx.config.drain, &()).await {
                Ok(report) => match report.outcome {
                    DrainOutcome::Skipped { blockers } => Some(drain::describe_blockers(&blockers)),
                    DrainOutcome::Drained | DrainOutcome::Forced { .. } => None,
                },
                Err(DrainError::Api { source, .. }) => return Err(SlotError::Api(source)),
                Err(e) => Some(e.to_string()),
            };
        if let Some(left) = left {
            return Err(SlotError::Failed(format!(
                "replacement {name} did not become Ready and could not be drained before \
                 being terminated; it is left cordoned: {left}"
            )));
        }
    }
    // Only now may a Node of this machine be deleted on sight.
    ctx.discarded
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(instance.provider_id.clone());
    delete_until_gone(input, &instance.id).await?;
    if let Some(node) = registered {
        ctx.node_ops
            .delete(nodes::name(&node), node.metadata.uid.as_deref())
            .await?;
    }
    delete_slot_tokens(ctx, &input.old_node).await
}

/// Cordon and drain the old node. `Ok(Some(_))` when the drain was skipped
/// (the slot ends with the old node serving on).
async fn drain_old(
    ctx: &RunContext,
    input: &SlotInput,
    new_node: &str,
    drain_started: Timestamp,
    report: &mut SlotReport,
) -> Result<Option<SlotOutcome>, SlotError> {
    let pool = &input.pool;
    let old_name = input.old_node.as_str();
    let config = &ctx.config;
    ctx.progress.phase(
        &pool.name,
        old_name,
        Phase::Draining,
        &format!("replacement {new_node} Ready"),
    );
    // Refuse before cordoning, so a refusal changes nothing.
    if let Err(e) = drain::precheck(&ctx.drain_client, old_name, &config.drain).await {
        return Err(SlotError::Failed(e.to_string()));
    }
    ctx.node_ops
        .annotate(
            old_name,
            &set(&[
                (ann::RUN, Some(ctx.run_id.clone())),
                (ann::PHASE, Some(Phase::Draining.as_str().into())),
                (ann::REPLACED_BY, Some(new_node.to_string())),
                (ann::DRAIN_STARTED, Some(drain_started.to_string())),
            ]),
        )
        .await?;
    ctx.node_ops
        .label(old_name, &[(EXCLUDE_LB_LABEL, Some("true"))])
        .await?;
    ctx.node_ops.cordon(old_name).await?;
    let elapsed =
        Duration::try_from(Timestamp::now().duration_since(drain_started)).unwrap_or_default();
    let deadline = Instant::now() + config.drain_timeout.saturating_sub(elapsed);
    let started = Instant::now();
    let watcher = BlockedReporter {
        ctx,
        pool: &pool.name,
        last: Mutex::new(String::new()),
    };
    let result = drain::drain(
        &ctx.drain_client,
        old_name,
        deadline,
        &config.drain,
        &watcher,
    )
    .await;
    report.timings.drain = Some(started.elapsed().as_secs_f64());
    let drained = match result {
        Ok(r) => r,
        Err(DrainError::Refused { messages, .. }) => {
            // A pod that must not go appeared after the precheck: give the
            // node back.
            restore_schedulable(ctx, old_name).await?;
            return Err(SlotError::Failed(format!(
                "drain refused: {}; {old_name} uncordoned",
                messages.join("; ")
            )));
        }
        Err(e @ DrainError::TimedOut { .. }) => {
            // onTimeout: fail — the node stays cordoned (design §8.2); the
            // error names what blocks.
            return Err(SlotError::Failed(format!("{e}; {old_name} left cordoned")));
        }
        Err(DrainError::Api { source, .. }) => return Err(source.into()),
        Err(e) => return Err(SlotError::Failed(e.to_string())),
    };
    let outcome = drained.outcome.clone();
    report.drain = Some(drained);
    match outcome {
        DrainOutcome::Drained => Ok(None),
        DrainOutcome::Forced { pods } => {
            tracing::warn!(
                node = old_name,
                ?pods,
                "drain.onTimeout: force deleted pods without their disruption budgets' consent"
            );
            if let Some(node) = ctx.nodes.get(old_name) {
                ctx.recorder
                    .node_event(
                        &node,
                        EventType::Warning,
                        "KubesurgeForcedDrain",
                        &format!(
                            "Drain timed out; deleted {} pods ignoring their PDBs",
                            pods.len()
                        ),
                    )
                    .await;
            }
            Ok(None)
        }
        DrainOutcome::Skipped { blockers } => {
            restore_schedulable(ctx, old_name).await?;
            let reasons: Vec<String> = blockers
                .iter()
                .map(|b| format!("{} ({})", b.pod, b.reason))
                .collect();
            let reason = format!(
                "drain timed out and drain.onTimeout is skip: {old_name} uncordoned and left serving; blocking: {}",
                reasons.join(", ")
            );
            ctx.node_ops
                .annotate(
                    old_name,
                    &set(&[(ann::PHASE, Some(Phase::Skipped.as_str().into()))]),
                )
                .await?;
            ctx.progress
                .phase(&pool.name, old_name, Phase::Skipped, &reason);
            Ok(Some(SlotOutcome::Skipped { reason }))
        }
    }
}

async fn restore_schedulable(ctx: &RunContext, node: &str) -> Result<(), SlotError> {
    ctx.node_ops.uncordon(node).await?;
    ctx.node_ops
        .label(node, &[(EXCLUDE_LB_LABEL, None)])
        .await?;
    Ok(())
}

/// Terminate the old instance (until gone), then delete its Node.
async fn terminate_old(
    ctx: &RunContext,
    input: &SlotInput,
    old_instance: Option<&Instance>,
    report: &mut SlotReport,
) -> Result<(), SlotError> {
    let pool = &input.pool;
    let old_name = input.old_node.as_str();
    ctx.node_ops
        .annotate(
            old_name,
            &set(&[
                (ann::PHASE, Some(Phase::Terminating.as_str().into())),
                (ann::BLOCKED, None),
            ]),
        )
        .await?;
    ctx.progress.phase(
        &pool.name,
        old_name,
        Phase::Terminating,
        &old_instance.map(|i| i.id.0.clone()).unwrap_or_default(),
    );
    let started = Instant::now();
    if !volumes::wait_detached(
        &ctx.client,
        old_name,
        Instant::now() + VOLUME_DETACH_TIMEOUT,
    )
    .await?
    {
        tracing::warn!(node = old_name, "terminating with volumes still attached");
    }
    let old = ctx.nodes.get(old_name);
    match old_instance {
        Some(instance) => delete_until_gone(input, &instance.id).await?,
        None => tracing::warn!(
            node = old_name,
            "no instance found for the node; deleting the Node object only"
        ),
    }
    if let Some(node) = &old {
        ctx.recorder
            .node_event(
                node,
                EventType::Normal,
                "KubesurgeTerminated",
                &format!(
                    "Instance {} terminated (run {})",
                    old_instance.map(|i| i.id.0.as_str()).unwrap_or("unknown"),
                    ctx.run_id
                ),
            )
            .await;
    }
    ctx.node_ops
        .delete(
            old_name,
            old.as_ref().and_then(|n| n.metadata.uid.as_deref()),
        )
        .await?;
    report.timings.terminate = Some(started.elapsed().as_secs_f64());
    Ok(())
}

/// Delete until the provider reports the instance gone (design §9).
async fn delete_until_gone(input: &SlotInput, id: &InstanceId) -> Result<(), SlotError> {
    let deadline = Instant::now() + TERMINATE_TIMEOUT;
    let mut delay = Duration::from_millis(100);
    loop {
        match provider_retry("terminate", || input.pool.provider.delete(id)).await? {
            DeleteStatus::Gone => return Ok(()),
            DeleteStatus::InProgress => {}
        }
        if Instant::now() >= deadline {
            return Err(SlotError::Failed(format!(
                "instance {id} still not terminated after {TERMINATE_TIMEOUT:?}"
            )));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Retry a provider call through throttling and transient failures.
async fn provider_retry<T, F, Fut>(what: &str, call: F) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ProviderError>>,
{
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .without_max_times()
        .with_total_delay(Some(PROVIDER_RETRY_BUDGET));
    call.retry(backoff)
        .when(ProviderError::is_retryable)
        .notify(|e, d| tracing::debug!(call = what, error = %e, delay = ?d, "provider call failed; retrying"))
        .await
}

/// Reports what blocks a drain to the progress view and, when it changes,
/// on the node for `status`.
struct BlockedReporter<'a> {
    ctx: &'a RunContext,
    pool: &'a str,
    last: Mutex<String>,
}

impl DrainProgress for BlockedReporter<'_> {
    fn blocked(&self, node: &str, pod: &str, reason: &str) {
        let message = format!("{pod}: {reason}");
        self.ctx.progress.blocked(self.pool, node, &message);
        let changed = {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            if *last == message {
                false
            } else {
                *last = message.clone();
                true
            }
        };
        if changed {
            let ops = self.ctx.node_ops.clone();
            let node = node.to_string();
            tokio::spawn(async move {
                let _ = ops
                    .annotate(&node, &set(&[(ann::BLOCKED, Some(message))]))
                    .await;
            });
        }
    }

    fn evicted(&self, _node: &str, _pod: &str) {}
}

/// A label value for `s` (63 characters at most; longer names are cut and
/// suffixed with a hash so they stay distinct).
pub fn label_value(s: &str) -> String {
    if s.len() <= 63 {
        return s.to_string();
    }
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(s.as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{}-{hash}", s[..54].trim_end_matches(['-', '.', '_']))
}

fn short_random() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_round_trip_through_their_annotation_value() {
        for p in [
            Phase::Pending,
            Phase::Launching,
            Phase::Joining,
            Phase::Draining,
            Phase::Terminating,
            Phase::Done,
            Phase::Skipped,
            Phase::Failed,
        ] {
            assert_eq!(Phase::parse(p.as_str()), Some(p));
        }
        assert_eq!(Phase::parse("nonsense"), None);
    }

    #[test]
    fn long_names_become_valid_distinct_label_values() {
        let a = format!("{}a", "x".repeat(70));
        let b = format!("{}b", "x".repeat(70));
        assert!(label_value(&a).len() <= 63);
        assert_ne!(label_value(&a), label_value(&b));
        assert_eq!(label_value("short"), "short");
    }
}
