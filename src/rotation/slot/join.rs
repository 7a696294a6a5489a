//! The join side of a slot: launch (or adopt) the replacement, wait until
//! it is a Ready node at the target, and discard one that never is.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod, Secret, Taint};
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use kubesurge_provider::{Instance, LaunchRequest, PoolRef, ProviderError, SlotKey, tags};
use tokio::time::Instant;

use super::{Executor, RunContext, SlotError, label_value};
use crate::kube::cache::{BY_NAME, WatchCache};
use crate::kube::drain::{self, DrainError, DrainOutcome};
use crate::kube::errors::{is_conflict, is_not_found};
use crate::kube::events::EventType;
use crate::kube::join::{BootstrapToken, JoinSpec, render_user_data};
use crate::kube::nodes;
use crate::kube::pods;
use crate::kube::retry::with_retry;
use crate::kube::write;
use crate::rotation::annotations as ann;
use crate::rotation::autoscaler;
use crate::rotation::instances::provider_retry;
use crate::rotation::machine::{Phase, Replacement, SlotState};
use crate::rotation::report::SlotReport;
use crate::rotation::watched;

impl Executor<'_> {
    /// [`crate::rotation::machine::Action::Launch`]: adopt the instance an
    /// earlier invocation launched for this attempt, else mint a token and
    /// launch one.
    pub(super) async fn launch(
        &mut self,
        attempt: u32,
        state: &mut SlotState,
        report: &mut SlotReport,
    ) -> Result<(), SlotError> {
        let key = SlotKey {
            run_id: self.ctx.run_id.clone(),
            old_node: self.old_name().to_string(),
            attempt,
        };
        report.attempts = attempt;
        state.attempt = attempt;
        let instance = match super::adopted_for(self.input, &key) {
            Some(adopted) => {
                self.ctx.progress.phase(
                    &self.input.pool.name,
                    self.old_name(),
                    Phase::Launching,
                    &format!("adopting {} launched earlier", adopted.id),
                );
                adopted.clone()
            }
            None => match self.launch_new(&key).await {
                Ok(instance) => instance,
                // An earlier invocation launched for this attempt and its
                // instance is gone (terminated by hand or by `gc`, or given
                // up): the attempt is over, the next one has a key of its
                // own. The token minted for the refused launch goes at once.
                Err(SlotError::Provider(ProviderError::LaunchKeySpent { message })) => {
                    self.delete_tokens().await?;
                    let reason = format!("attempt {attempt}'s instance is gone: {message}");
                    self.ctx.progress.phase(
                        &self.input.pool.name,
                        self.old_name(),
                        Phase::Launching,
                        &reason,
                    );
                    state.replacement = Replacement::Discarded { reason };
                    return Ok(());
                }
                Err(e) => return Err(e),
            },
        };
        self.launched_at = Some(Instant::now());
        report.new_instance = Some(instance.id.0.clone());
        state.replacement = Replacement::Launched {
            instance: instance.id.0.clone(),
        };
        self.replacements.insert(instance.id.0.clone(), instance);
        Ok(())
    }

    /// Mint the slot's token and ask the provider for the instance.
    async fn launch_new(&mut self, key: &SlotKey) -> Result<Instance, SlotError> {
        let ctx = self.ctx;
        let pool = &self.input.pool;
        let config = &ctx.config;
        let zone = self.zone.clone().unwrap_or_default();
        let token = mint_token(ctx, key, &mut self.tokens).await?;
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
            kubelet_extra_args: &pool.kubelet_extra_args,
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
            image: self.input.image.id.clone(),
            zone: zone.clone(),
            subnet: self.old_instance.as_ref().and_then(|i| i.subnet.clone()),
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
        Ok(provider_retry("launch", || pool.provider.launch(&request)).await?)
    }

    /// [`crate::rotation::machine::Action::AwaitJoin`]: wait until the
    /// replacement is Ready at the target and settled, its DaemonSet pods
    /// up; past its deadline, ask the API server afresh before giving up.
    pub(super) async fn await_join(
        &mut self,
        instance_id: &str,
        state: &mut SlotState,
        report: &mut SlotReport,
    ) -> Result<(), SlotError> {
        let ctx = self.ctx;
        let Some(instance) = self.replacements.get(instance_id).cloned() else {
            return Err(SlotError::Failed(format!(
                "replacement {instance_id} is not among the slot's instances"
            )));
        };
        report.attempts = report.attempts.max(state.attempt);
        report.new_instance = Some(instance.id.0.clone());
        ctx.progress.phase(
            &self.input.pool.name,
            self.old_name(),
            Phase::Joining,
            &format!("instance {}", instance.id),
        );
        let launched_at = *self.launched_at.get_or_insert_with(Instant::now);
        // The deadline counts from the launch, also across a crash.
        let elapsed = instance
            .launched_at
            .map(|t| Timestamp::now().duration_since(t))
            .and_then(|d| Duration::try_from(d).ok())
            .unwrap_or(Duration::ZERO);
        let deadline = Instant::now() + ctx.deadlines.join.saturating_sub(elapsed);
        // The token has done its work once the machine registered its Node:
        // delete it at once. Until then anyone who read the user data could
        // use it to get a node client certificate for any node name.
        let registered_seen = ctx
            .nodes
            .wait_for_keys(&watched::node_of_instance(&instance), deadline, |cache| {
                ctx.cached_node_of(cache, &instance).map(|_| ())
            })
            .await
            .is_some();
        if registered_seen {
            self.delete_tokens().await?;
        }
        let allowed = &self.input.pool.node_taints;
        let ready = match wait_ready(ctx, &instance, allowed, deadline).await {
            Some(node) => Ok(node),
            // The node watch may have been cut off (an API server outage)
            // while the machine joined: a replacement is given up only on
            // a fresh read, never on a view that may lag.
            None => join_now(ctx, &instance, allowed).await?,
        };
        match ready {
            Ok(new_node) => {
                if !registered_seen {
                    // Seen Ready only on the fresh read (the watch was cut).
                    self.delete_tokens().await?;
                }
                wait_daemon_pods(ctx, &new_node, deadline).await;
                report.timings.launch_to_ready = Some(launched_at.elapsed().as_secs_f64());
                self.protect_from_scale_down(&new_node).await?;
                self.record_joined(&new_node).await;
                report.new_node = Some(new_node.clone());
                state.replacement = Replacement::Ready { node: new_node };
            }
            Err(registered) => {
                let registered_name = registered.as_ref().map(|n| nodes::name(n).to_string());
                self.given_up_node = registered;
                let reason = format!(
                    "instance {} did not become a Ready, initialized, untainted node at {} within {:?}",
                    instance.id, ctx.target, ctx.deadlines.join
                );
                tracing::warn!(
                    node = self.old_name(),
                    attempt = state.attempt,
                    "{reason}; terminating it"
                );
                ctx.progress
                    .blocked(&self.input.pool.name, self.old_name(), &reason);
                state.replacement = Replacement::GivenUp {
                    instance: instance.id.0.clone(),
                    registered: registered_name,
                    reason,
                };
            }
        }
        Ok(())
    }

    /// Keep the cluster autoscaler from removing the new node while the
    /// run lasts (see [`crate::rotation::autoscaler`]); an operator's own
    /// annotation is left as it is.
    async fn protect_from_scale_down(&self, new_node: &str) -> Result<(), kube::Error> {
        let ctx = self.ctx;
        if ctx
            .nodes
            .get(new_node)
            .is_some_and(|n| autoscaler::protected_by_operator(&n))
        {
            return Ok(());
        }
        ctx.node_ops
            .annotate(new_node, &autoscaler::protect(&ctx.run_id))
            .await
    }

    async fn record_joined(&self, new_node: &str) {
        let ctx = self.ctx;
        let old_name = self.old_name();
        if let Some(node) = ctx.nodes.get(new_node) {
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
        if let Some(old) = &self.old {
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
        }
    }

    /// [`crate::rotation::machine::Action::Discard`]: a replacement that
    /// never joined is terminated and any Node it registered removed, so the
    /// next attempt starts clean and nothing is orphaned. A Node it did
    /// register may have been Ready for a while (a flap, or a join the run
    /// could not see): it is cordoned and drained first, like any node
    /// leaving, so no pod that landed on it is lost.
    pub(super) async fn discard(
        &mut self,
        instance_id: &str,
        registered: Option<String>,
        state: &mut SlotState,
    ) -> Result<(), SlotError> {
        let ctx = self.ctx;
        let reason = match &state.replacement {
            Replacement::GivenUp { reason, .. } => reason.clone(),
            _ => format!("replacement {instance_id} was given up"),
        };
        let Some(instance) = self.replacements.get(instance_id).cloned() else {
            return Err(SlotError::Failed(format!(
                "replacement {instance_id} is not among the slot's instances"
            )));
        };
        // The Node as the fresh read that gave the replacement up saw it:
        // the watch cache may lag behind an outage.
        let registered: Option<Node> = match registered {
            Some(name) => match self.given_up_node.take() {
                Some(node) if nodes::name(&node) == name => Some(node),
                _ => {
                    ctx.node_ops
                        .find_now(|n| ctx.is_node_of(n, &instance))
                        .await?
                }
            },
            None => None,
        };
        if let Some(node) = &registered {
            let name = nodes::name(node);
            ctx.node_ops.cordon(name).await?;
            let deadline = Instant::now() + ctx.deadlines.drain;
            let left = match drain::drain(
                &ctx.drain_client,
                name,
                deadline,
                &ctx.config.drain,
                &(),
                &ctx.streaming_lists,
            )
            .await
            {
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
            .insert(instance.id.0.clone());
        self.input
            .instances
            .terminate(&instance.id, ctx.deadlines.terminate)
            .await?;
        if let Some(node) = registered {
            ctx.node_ops
                .delete(nodes::name(&node), node.metadata.uid.as_deref())
                .await?;
        }
        self.delete_tokens().await?;
        state.replacement = Replacement::Discarded {
            reason: format!("{reason}; {} keeps serving", self.old_name()),
        };
        Ok(())
    }
}

async fn mint_token(
    ctx: &RunContext,
    key: &SlotKey,
    tokens: &mut SlotTokens,
) -> Result<BootstrapToken, SlotError> {
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
        let mut sent = 0u32;
        // The Secret the server answers with is not decoded.
        let create = || {
            sent += 1;
            write::create(&ctx.client, Some("kube-system"), &secret)
        };
        let created = with_retry("create bootstrap token", create).await;
        if sent > 1 {
            // A create sent again after an answer that never came may have
            // made a token of its own: only a list finds it.
            tokens.unknown = true;
        }
        match created {
            Ok(_) => {
                tokens.minted.push(token.secret_name());
                return Ok(token);
            }
            // A token id collision (1 in 2 billion): draw another.
            Err(e) if is_conflict(&e) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The bootstrap tokens of a slot that may be in the cluster, for deleting
/// them as soon as its machine has registered (or is given up).
#[derive(Debug, Default)]
pub(super) struct SlotTokens {
    /// Minted by this invocation and not deleted yet.
    minted: Vec<String>,
    /// Tokens may exist that `minted` does not name: an earlier run marked
    /// the old node (and may have minted for it), or a create was sent
    /// again. Deleting them then lists the slot's tokens by label.
    unknown: bool,
}

impl SlotTokens {
    /// For a slot that starts with `old_node` as the cache shows it and
    /// `adopted` instances launched earlier. A run marks the old node
    /// ([`ann::RUN`]) before it mints a token for it: an unmarked node has
    /// none yet; a node not in view may.
    pub(super) fn at_start(old_node: Option<&Node>, adopted: usize) -> SlotTokens {
        let marked = old_node.is_none_or(|n| nodes::annotation(n, ann::RUN).is_some());
        SlotTokens {
            minted: Vec::new(),
            unknown: marked || adopted > 0,
        }
    }

    /// The names to delete: those minted, unless only a list can tell.
    fn known(&self) -> Option<&[String]> {
        (!self.unknown).then_some(self.minted.as_slice())
    }
}

impl Executor<'_> {
    /// Delete the bootstrap tokens minted to replace the old node: this
    /// invocation's by name, and when an earlier run (whose replacement this
    /// slot may have adopted) or a resent create may have left others, all
    /// the slot's tokens found by label. The tokens of a run that never
    /// finished also go at the end of the next run that does.
    async fn delete_tokens(&mut self) -> Result<(), SlotError> {
        let ctx = self.ctx;
        let names = match self.tokens.known() {
            Some(names) => names.to_vec(),
            None => slot_token_names(ctx, self.old_name()).await?,
        };
        for name in names {
            let dp = DeleteParams::default();
            let delete = || write::delete::<Secret>(&ctx.client, Some("kube-system"), &name, &dp);
            match with_retry("delete token", delete).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.tokens = SlotTokens::default();
        Ok(())
    }
}

/// The names of the bootstrap tokens minted to replace `old_node`, by any
/// run.
async fn slot_token_names(ctx: &RunContext, old_node: &str) -> Result<Vec<String>, SlotError> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), "kube-system");
    let selector = format!(
        "{},{}={}",
        ann::TOKEN_RUN_LABEL,
        tags::REPLACES,
        label_value(old_node)
    );
    let params = ListParams::default().labels(&selector);
    // Names are all this needs: the tokens' metadata, not their secrets.
    let list = with_retry("list tokens", || secrets.list_metadata(&params)).await?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect())
}

/// Wait until a Node with the instance's providerID may receive pods
/// ([`nodes::ready_for_pods`]) and stays so for `settle`. Returns its name.
async fn wait_ready(
    ctx: &RunContext,
    instance: &Instance,
    allowed: &[Taint],
    deadline: Instant,
) -> Option<String> {
    let target = ctx.target;
    let keys = watched::node_of_instance(instance);
    loop {
        let name = ctx
            .nodes
            .wait_for_keys(&keys, deadline, |cache| {
                ctx.cached_node_of(cache, instance)
                    .filter(|n| nodes::ready_for_pods(n, target, allowed))
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
            .wait_for_keys(
                &[(BY_NAME, name.clone())],
                settle_end.min(deadline),
                |cache| {
                    cache
                        .get(&name)
                        .filter(|n| !nodes::ready_for_pods(n, target, allowed))
                        .map(|_| ())
                },
            )
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
            .by_key(watched::ON_NODE, node)
            .into_iter()
            .find(|pod| {
                pod.metadata.deletion_timestamp.is_none()
                    && pods::is_daemon_pod(pod)
                    && !pods::is_finished(pod)
                    && !pods::is_ready(pod)
            })
            .map(|pod| pod.metadata.name.clone().unwrap_or_default())
    };
    let all_ready = ctx
        .kube_system
        .wait_for_keys(&[(watched::ON_NODE, node.to_string())], deadline, |cache| {
            starting(cache).is_none().then_some(())
        })
        .await;
    if all_ready.is_none()
        && let Some(pod) = starting(&ctx.kube_system)
    {
        tracing::warn!(node, pod = %pod, "DaemonSet pod on the replacement is not Ready yet; draining onto it anyway");
    }
}

/// What the API server says, now, of a replacement past its deadline:
/// `Ok(node)` when it is Ready at the target after all, else the Node it
/// registered, if any.
async fn join_now(
    ctx: &RunContext,
    instance: &Instance,
    allowed: &[Taint],
) -> Result<Result<String, Option<Node>>, SlotError> {
    Ok(
        match ctx
            .node_ops
            .find_now(|n| ctx.is_node_of(n, instance))
            .await?
        {
            Some(node) if nodes::ready_for_pods(&node, ctx.target, allowed) => {
                Ok(nodes::name(&node).to_string())
            }
            registered => Err(registered),
        },
    )
}

fn short_random() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}
