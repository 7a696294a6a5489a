//! One pool's sliding window of slots (design §8): when one slot ends the
//! next starts, never more than the budget in flight, and only while the
//! health gate is open.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::watch;
use tokio::time::Instant;

use super::config::PoolConfig;
use super::report::{SlotOutcome, SlotReport};
use super::slot::{RunContext, SlotInput, SlotResult, run_slot};
use crate::kube::cache::WatchCache;
use crate::kube::nodes;
use kubesurge_provider::{Image, Instance};

/// Why a run stops starting slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// `kubesurge abort`.
    Abort,
    /// The maintenance window ended.
    WindowEnd,
    /// Another slot failed.
    Failure,
}

/// What a pool's window needs besides the run context.
pub struct PoolWork {
    pub pool: Arc<PoolConfig>,
    pub image: Image,
    /// Old nodes to replace, in order.
    pub nodes: Vec<String>,
    /// Pool size the budgets are computed against.
    pub size: u32,
    /// Instances this run launched earlier for the pool's slots.
    pub adopted: Vec<Instance>,
}

/// Run the pool's slots. Stops starting new ones as soon as `stop` carries
/// a reason; slots in flight always finish (each is bounded by its own
/// deadlines), so nothing is left half-done.
pub async fn run_pool(
    ctx: &RunContext,
    work: PoolWork,
    kube_system: &WatchCache<Pod>,
    stop: watch::Receiver<Option<StopReason>>,
    stop_tx: &watch::Sender<Option<StopReason>>,
) -> Vec<SlotReport> {
    let window = work.pool.max_surge.surge_for(work.size).max(1) as usize;
    let mut queue = work.nodes.into_iter();
    let mut in_flight = FuturesUnordered::new();
    let mut reports = Vec::new();
    let pool = work.pool.clone();
    loop {
        while in_flight.len() < window && stop.borrow().is_none() {
            let Some(node) = queue.next() else { break };
            // The gate holds between slots, not before the first one.
            let first = in_flight.is_empty() && reports.is_empty();
            if !first && let Err(reason) = health_gate(ctx, &pool, kube_system, &stop).await {
                if stop.borrow().is_none() {
                    ctx.progress.note(&reason);
                    let _ = stop_tx.send(Some(StopReason::Failure));
                    reports.push(not_started(&pool.name, &node, Some(reason)));
                } else {
                    reports.push(not_started(&pool.name, &node, None));
                }
                continue;
            }
            let adopted: Vec<Instance> = work
                .adopted
                .iter()
                .filter(|i| i.tag(kubesurge_provider::tags::REPLACES) == Some(node.as_str()))
                .cloned()
                .collect();
            let input = SlotInput {
                pool: pool.clone(),
                image: work.image.clone(),
                old_node: node,
                adopted,
            };
            in_flight.push(run_slot(ctx, input));
        }
        let Some(SlotResult { report, fatal }) = in_flight.next().await else {
            break;
        };
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

fn not_started(pool: &str, node: &str, reason: Option<String>) -> SlotReport {
    SlotReport {
        pool: pool.to_string(),
        old_node: node.to_string(),
        old_instance: None,
        new_node: None,
        new_instance: None,
        zone: None,
        attempts: 0,
        timings: Default::default(),
        drain: None,
        outcome: match reason {
            Some(reason) => SlotOutcome::Failed { reason },
            None => SlotOutcome::NotStarted,
        },
    }
}

/// Hold until every schedulable node of the pool is Ready and every
/// kube-system pod is Ready (or finished), or fail after the configured
/// time naming what is unhealthy. Woken by the watches, never polling.
async fn health_gate(
    ctx: &RunContext,
    pool: &PoolConfig,
    kube_system: &WatchCache<Pod>,
    stop: &watch::Receiver<Option<StopReason>>,
) -> Result<(), String> {
    let deadline = Instant::now() + ctx.config.health_gate_timeout;
    let mut last_noted = String::new();
    loop {
        let problem = unhealthy(ctx, pool, kube_system);
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
            _ = kube_system.next_change(deadline) => {}
        }
    }
}

/// What keeps the gate shut, if anything.
fn unhealthy(ctx: &RunContext, pool: &PoolConfig, kube_system: &WatchCache<Pod>) -> Option<String> {
    for node in ctx.nodes.all() {
        let labels = node.metadata.labels.clone().unwrap_or_default();
        if pool.selects(&labels)
            && !nodes::is_unschedulable(&node)
            && !nodes::is_ready(&node)
            && !ctx.is_discarded(&node)
        {
            return Some(format!("node {} is not Ready", nodes::name(&node)));
        }
    }
    for pod in kube_system.all() {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
        if phase == "Succeeded" || phase == "Failed" {
            continue;
        }
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if !ready {
            return Some(format!(
                "pod kube-system/{} is not Ready",
                pod.metadata.name.as_deref().unwrap_or("")
            ));
        }
    }
    None
}
