//! One pool's sliding window of slots (design §8): when one slot ends the
//! next starts, never more than the budget in flight, and only while the
//! health gate is open.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::watch;
use tokio::time::Instant;

use super::config::PoolConfig;
use super::instances::provider_retry;
use super::pool_instances::PoolInstances;
use super::report::{SlotOutcome, SlotReport};
use super::slot::{RunContext, SlotInput, SlotResult, run_slot};
use super::watched;
use crate::kube::{nodes, pods};
use jiff::Timestamp;
use kubesurge_provider::{Image, Instance, PoolRef};
use std::time::Duration;

/// Why a run stops starting slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// `kubesurge abort`.
    Abort,
    /// The maintenance window ended.
    WindowEnd,
    /// Another slot failed.
    Failure,
    /// The process was asked to end (`signal`: SIGTERM from a CronJob's
    /// evicted pod, Terraform or systemd; SIGINT from Ctrl-C). Unlike the
    /// others it does not wait for the slots in flight: their work stops
    /// where it is, as in a crash, and a rerun continues it.
    Interrupted { signal: &'static str },
}

impl StopReason {
    /// Resolves when `requests` carries [`StopReason::Interrupted`], with
    /// the signal's name; never otherwise.
    pub async fn interrupted(mut requests: watch::Receiver<Option<StopReason>>) -> &'static str {
        loop {
            if let Some(StopReason::Interrupted { signal }) = *requests.borrow_and_update() {
                return signal;
            }
            if requests.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}

/// What a pool's window needs besides the run context.
pub struct PoolWork {
    pub pool: Arc<PoolConfig>,
    pub image: Image,
    /// Old nodes to replace, in order.
    pub nodes: Vec<String>,
    /// Pool size the budgets are computed against.
    pub size: u32,
    /// Live replacements runs launched earlier for the pool's nodes.
    pub adopted: Vec<Instance>,
    /// Each old node's instance (checked: this run may terminate it).
    pub old_instances: std::collections::BTreeMap<String, Instance>,
    /// The pool's instances, described in batches for all its slots.
    pub instances: Arc<PoolInstances>,
}

impl PoolWork {
    /// The same work for `node` alone.
    pub fn for_node(&self, node: &str) -> PoolWork {
        PoolWork {
            pool: self.pool.clone(),
            image: self.image.clone(),
            nodes: vec![node.to_string()],
            size: self.size,
            adopted: adopted_for_node(&self.adopted, node),
            old_instances: self
                .old_instances
                .iter()
                .filter(|(n, _)| *n == node)
                .map(|(n, i)| (n.clone(), i.clone()))
                .collect(),
            instances: self.instances.clone(),
        }
    }

    /// The inputs of the slot that replaces `node`.
    pub fn slot_input(&self, node: &str) -> SlotInput {
        SlotInput {
            pool: self.pool.clone(),
            image: self.image.clone(),
            old_node: node.to_string(),
            old_instance: self.old_instances.get(node).cloned(),
            adopted: adopted_for_node(&self.adopted, node),
            instances: self.instances.clone(),
        }
    }

    /// Include the old instance of `node` in the pool's describes (see
    /// [`PoolInstances::watch`]), or stop including it.
    fn watch_old_instance(&self, node: &str, watch: bool) {
        if let Some(instance) = self.old_instances.get(node) {
            if watch {
                self.instances.watch(&instance.id);
            } else {
                self.instances.unwatch(&instance.id);
            }
        }
    }
}

/// Run the pool's slots. Stops starting new ones as soon as `stop` carries
/// a reason; slots in flight always finish (each is bounded by its own
/// deadlines), so nothing is left half-done.
pub async fn run_pool(
    ctx: &RunContext,
    mut work: PoolWork,
    stop: watch::Receiver<Option<StopReason>>,
    stop_tx: &watch::Sender<Option<StopReason>>,
) -> Vec<SlotReport> {
    let window = work.pool.max_surge.surge_for(work.size).max(1) as usize;
    let pool_ref = PoolRef {
        cluster: ctx.config.cluster.clone(),
        pool: work.pool.name.clone(),
    };
    // Before the pool's first launch: what the provider changes for the
    // run (an Auto Scaling group's MaxSize and processes) is recorded and
    // made; a rerun of the same run finds it done.
    let prepared = provider_retry("prepare pool", || {
        work.pool
            .provider
            .prepare_pool(&pool_ref, window as u32, &ctx.run_id)
    })
    .await;
    if let Err(e) = prepared {
        let reason = format!("cannot prepare pool {} for the run: {e}", work.pool.name);
        ctx.progress.note(&reason);
        let _ = stop_tx.send(Some(StopReason::Failure));
        return work
            .nodes
            .iter()
            .map(|node| not_started(&work.pool.name, node, Some(reason.clone())))
            .collect();
    }
    // The pool's describes run beside its slots, for as long as they do.
    let instances = work.instances.clone();
    let reports = tokio::select! {
        reports = run_slots(ctx, &mut work, window, stop, stop_tx) => reports,
        never = instances.drive() => match never {},
    };
    // After its last slot (none is in flight any more): undone, whatever
    // the outcome; a rerun prepares again.
    if let Err(e) = provider_retry("restore pool", || {
        work.pool.provider.restore_pool(&pool_ref)
    })
    .await
    {
        ctx.progress.note(&format!(
            "pool {}: cannot restore what the run changed at the provider: {e}",
            work.pool.name
        ));
    }
    reports
}

async fn run_slots(
    ctx: &RunContext,
    work: &mut PoolWork,
    window: usize,
    stop: watch::Receiver<Option<StopReason>>,
    stop_tx: &watch::Sender<Option<StopReason>>,
) -> Vec<SlotReport> {
    let mut queue: VecDeque<String> = std::mem::take(&mut work.nodes).into();
    // Old instances of the next `window` queued slots are described with
    // those in flight: a slot that starts finds a recent answer about its
    // old instance instead of asking for one of its own.
    let mut watched_ahead = 0;
    let mut in_flight = FuturesUnordered::new();
    let mut reports = Vec::new();
    let pool = work.pool.clone();
    loop {
        while watched_ahead < window.min(queue.len()) {
            work.watch_old_instance(&queue[watched_ahead], true);
            watched_ahead += 1;
        }
        while in_flight.len() < window && stop.borrow().is_none() {
            let Some(node) = queue.pop_front() else { break };
            match watched_ahead.checked_sub(1) {
                Some(ahead) => watched_ahead = ahead,
                None => work.watch_old_instance(&node, true),
            }
            // The gate holds between slots, not before the first one.
            let first = in_flight.is_empty() && reports.is_empty();
            if !first && let Err(reason) = health_gate(ctx, &pool, &stop).await {
                if stop.borrow().is_none() {
                    ctx.progress.note(&reason);
                    let _ = stop_tx.send(Some(StopReason::Failure));
                    reports.push(not_started(&pool.name, &node, Some(reason)));
                } else {
                    reports.push(not_started(&pool.name, &node, None));
                }
                work.watch_old_instance(&node, false);
                continue;
            }
            let input = work.slot_input(&node);
            in_flight.push(run_slot(ctx, input));
        }
        let Some(SlotResult { report, fatal }) = in_flight.next().await else {
            break;
        };
        work.watch_old_instance(&report.old_node, false);
        if matches!(report.outcome, SlotOutcome::Failed { .. }) && stop.borrow().is_none() {
            let _ = stop_tx.send(Some(StopReason::Failure));
        }
        if fatal {
            let _ = stop_tx.send(Some(StopReason::Failure));
        }
        reports.push(report);
    }
    for node in queue {
        reports.push(not_started(&pool.name, &node, None));
    }
    reports
}

/// The instances a run launched earlier to replace `node`.
pub fn adopted_for_node(adopted: &[Instance], node: &str) -> Vec<Instance> {
    adopted
        .iter()
        .filter(|i| i.tag(kubesurge_provider::tags::REPLACES) == Some(node))
        .cloned()
        .collect()
}

fn not_started(pool: &str, node: &str, reason: Option<String>) -> SlotReport {
    SlotReport {
        outcome: match reason {
            Some(reason) => SlotOutcome::Failed { reason },
            None => SlotOutcome::NotStarted,
        },
        ..SlotReport::not_started(pool, node)
    }
}

/// Hold until every schedulable node of the pool is Ready and every
/// kube-system pod is Ready (or finished), or fail after the configured
/// time naming what is unhealthy. Woken by the watches, never polling.
async fn health_gate(
    ctx: &RunContext,
    pool: &PoolConfig,
    stop: &watch::Receiver<Option<StopReason>>,
) -> Result<(), String> {
    let deadline = Instant::now() + ctx.config.health_gate_timeout;
    let mut last_noted = String::new();
    loop {
        let problem = unhealthy(ctx, pool);
        let Some(problem) = problem else {
            return Ok(());
        };
        if stop.borrow().is_some() {
            return Err(problem);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "health gate held for {:?}: {problem}",
                ctx.config.health_gate_timeout
            ));
        }
        if problem != last_noted {
            ctx.progress
                .note(&format!("health gate: waiting, {problem}"));
            last_noted = problem;
        }
        // Wake on any node or kube-system pod change.
        tokio::select! {
            _ = ctx.nodes.next_change(deadline) => {}
            _ = ctx.kube_system.next_change(deadline) => {}
        }
    }
}

/// What keeps the gate shut, if anything.
fn unhealthy(ctx: &RunContext, pool: &PoolConfig) -> Option<String> {
    // From the caches' health index: this runs on every node and
    // kube-system change while a gate waits, and a scan of the whole
    // cluster each time was a tenth of the tool's CPU at a thousand nodes.
    if let Some(node) = ctx
        .nodes
        .by_key(watched::HEALTH, watched::NOT_READY)
        .into_iter()
        .find(|node| {
            node.metadata
                .labels
                .as_ref()
                .is_some_and(|labels| pool.selects(labels))
                && !ctx.is_discarded(node)
        })
    {
        return Some(format!("node {} is not Ready", nodes::name(&node)));
    }
    let grace = ctx.config.new_node_timeout;
    if let Some(pod) = ctx
        .kube_system
        .by_key(watched::HEALTH, watched::NOT_READY)
        .into_iter()
        .find(|pod| !daemon_pod_starting(pod, grace) && !daemon_pod_leaving(ctx, pod))
    {
        return Some(format!(
            "pod kube-system/{} is not Ready",
            pod.metadata.name.as_deref().unwrap_or("")
        ));
    }
    None
}

/// A DaemonSet pod on a node that is leaving (cordoned, or already gone):
/// it stops being Ready when its node is drained and terminated, which is
/// the rotation itself, not a sign of an unhealthy cluster.
fn daemon_pod_leaving(ctx: &RunContext, pod: &Pod) -> bool {
    pods::is_daemon_pod(pod)
        && pods::node_name(pod).is_some_and(|node| {
            ctx.nodes
                .get(node)
                .is_none_or(|n| nodes::is_unschedulable(&n))
        })
}

/// A DaemonSet pod that has not started yet and is younger than the time a
/// new node is given to join: every node that joins — another slot's
/// replacement, in any pool — starts its own (kube-proxy, CNI), and the
/// gate must not wait for those (the slot that launched the node waits for
/// them before draining onto it). One still pending after that holds it.
fn daemon_pod_starting(pod: &Pod, grace: Duration) -> bool {
    let age = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| Duration::try_from(Timestamp::now().duration_since(t.0)).ok());
    pods::is_daemon_pod(pod) && pods::phase(pod) == "Pending" && age.is_some_and(|age| age < grace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn daemon_pod(phase: &str, age: Duration) -> Pod {
        let created = Timestamp::now() - jiff::SignedDuration::try_from(age).unwrap();
        serde_json::from_value(json!({
            "metadata": {
                "name": "kube-proxy-abcde",
                "namespace": "kube-system",
                "creationTimestamp": created.to_string(),
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet",
                    "name": "kube-proxy", "uid": "u", "controller": true}]
            },
            "spec": {"nodeName": "new-1", "containers": []},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    #[test]
    fn only_a_young_pending_daemon_pod_is_still_starting() {
        let grace = Duration::from_secs(600);
        assert!(daemon_pod_starting(
            &daemon_pod("Pending", Duration::from_secs(5)),
            grace
        ));
        // Pending for longer than a node is given to join: it holds the gate.
        assert!(!daemon_pod_starting(
            &daemon_pod("Pending", Duration::from_secs(900)),
            grace
        ));
        // Started but not Ready (crash-looping, failing its probe): it holds.
        assert!(!daemon_pod_starting(
            &daemon_pod("Running", Duration::from_secs(5)),
            grace
        ));
        // Not a DaemonSet's: CoreDNS pending is a problem at any age.
        let mut coredns = daemon_pod("Pending", Duration::from_secs(5));
        coredns.metadata.owner_references = None;
        assert!(!daemon_pod_starting(&coredns, grace));
    }
}
