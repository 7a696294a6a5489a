//! The drain side of a slot: check, then cordon and drain the old node
//! onto its replacement (design §8.2).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use tokio::time::Instant;

use super::{Executor, RunContext, SlotError, set};
use crate::kube::drain::{self, DrainError, DrainOutcome, DrainProgress, OnDrainTimeout};
use crate::kube::events::EventType;
use crate::kube::nodes::EXCLUDE_LB_LABEL;
use crate::rotation::annotations as ann;
use crate::rotation::machine::{Drain, Phase, SlotState};
use crate::rotation::report::SlotReport;

impl Executor<'_> {
    /// [`crate::rotation::machine::Action::CheckDrain`]: refuse before
    /// cordoning, so a refusal changes nothing.
    pub(super) async fn check_drain(
        &mut self,
        state: &mut SlotState,
        report: &mut SlotReport,
    ) -> Result<(), SlotError> {
        let ctx = self.ctx;
        let new_node = report
            .new_node
            .clone()
            .or_else(|| state.old.as_ref().and_then(|o| o.replaced_by.clone()));
        if report.new_node.is_none() {
            report.new_node = new_node.clone();
        }
        ctx.progress.phase(
            &self.input.pool.name,
            self.old_name(),
            Phase::Draining,
            &format!("replacement {} Ready", new_node.unwrap_or_default()),
        );
        drain::precheck(&ctx.drain_client, self.old_name(), &ctx.config.drain)
            .await
            .map_err(|e| SlotError::Failed(e.to_string()))?;
        state.drain = Drain::Checked;
        Ok(())
    }

    /// [`crate::rotation::machine::Action::Drain`]: write the drain's
    /// `mark` (its phase annotations), take the old node out of load
    /// balancers and cordon it, in one patch; evict its pods. The deadline
    /// counts from the drain's start, also across a crash.
    pub(super) async fn drain(
        &mut self,
        onto: &str,
        mark: &BTreeMap<String, Option<String>>,
        state: &mut SlotState,
        report: &mut SlotReport,
    ) -> Result<(), SlotError> {
        let ctx = self.ctx;
        let old_name = self.old_name().to_string();
        report.new_node = Some(onto.to_string());
        ctx.node_ops
            .cordon_marked(&old_name, &[(EXCLUDE_LB_LABEL, "true")], mark)
            .await?;
        let drain_started = self.drain_started.unwrap_or_else(Timestamp::now);
        let elapsed =
            Duration::try_from(Timestamp::now().duration_since(drain_started)).unwrap_or_default();
        let deadline = Instant::now() + ctx.deadlines.drain.saturating_sub(elapsed);
        let started = Instant::now();
        let watcher = BlockedReporter {
            ctx,
            pool: &self.input.pool.name,
            last: Mutex::new(String::new()),
        };
        let result = drain::drain(
            &ctx.drain_client,
            &old_name,
            deadline,
            &ctx.config.drain,
            &watcher,
            &ctx.streaming_lists,
        )
        .await;
        report.timings.drain = Some(started.elapsed().as_secs_f64());
        let drained = match result {
            Ok(r) => r,
            Err(DrainError::Refused { messages, .. }) => {
                // A pod that must not go appeared after the check: give the
                // node back.
                let given_back =
                    restore_schedulable(ctx, &old_name, self.cordoned_before()).await?;
                return Err(SlotError::Failed(format!(
                    "drain refused: {}; {old_name} {given_back}",
                    messages.join("; ")
                )));
            }
            Err(e @ DrainError::TimedOut { .. }) => {
                // onTimeout: fail — the node stays cordoned (design §8.2);
                // the error names what blocks.
                return Err(SlotError::Failed(format!("{e}; {old_name} left cordoned")));
            }
            Err(DrainError::Api { source, .. }) => return Err(source.into()),
            // An eviction refused for good (admission, a validation): the
            // drain can never finish. Under `onTimeout: skip` the node is
            // given back as it would be at the timeout; otherwise the slot
            // fails, the node left cordoned, naming the pod and the refusal.
            Err(DrainError::Rejected { pod, reason })
                if ctx.config.drain.on_timeout == OnDrainTimeout::Skip =>
            {
                let given_back =
                    restore_schedulable(ctx, &old_name, self.cordoned_before()).await?;
                state.drain = Drain::Skipped {
                    reason: format!(
                        "an eviction was refused and drain.onTimeout is skip: {old_name} {given_back} and left in place; {pod}: {reason}"
                    ),
                };
                return Ok(());
            }
            Err(e) => return Err(SlotError::Failed(e.to_string())),
        };
        let outcome = drained.outcome.clone();
        report.drain = Some(drained);
        state.drain = match outcome {
            DrainOutcome::Drained => Drain::Done { forced: false },
            DrainOutcome::Forced { pods } => {
                tracing::warn!(
                    node = %old_name,
                    ?pods,
                    "drain.onTimeout: force deleted pods without their disruption budgets' consent"
                );
                if let Some(node) = ctx.nodes.get(&old_name) {
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
                Drain::Done { forced: true }
            }
            DrainOutcome::Skipped { blockers } => {
                let given_back =
                    restore_schedulable(ctx, &old_name, self.cordoned_before()).await?;
                let reasons: Vec<String> = blockers
                    .iter()
                    .map(|b| format!("{} ({})", b.pod, b.reason))
                    .collect();
                Drain::Skipped {
                    reason: format!(
                        "drain timed out and drain.onTimeout is skip: {old_name} {given_back} and left in place; blocking: {}",
                        reasons.join(", ")
                    ),
                }
            }
        };
        Ok(())
    }
}

/// Give a node the drain did not empty back as the run found it: back in
/// load balancers, and uncordoned unless an operator had cordoned it
/// before the run. Says what it did.
async fn restore_schedulable(
    ctx: &RunContext,
    node: &str,
    cordoned_before: bool,
) -> Result<&'static str, SlotError> {
    if !cordoned_before {
        ctx.node_ops.uncordon(node).await?;
    }
    ctx.node_ops
        .label(node, &[(EXCLUDE_LB_LABEL, None)])
        .await?;
    ctx.node_ops
        .annotate(node, &set(&[(ann::CORDONED_BEFORE, None)]))
        .await?;
    Ok(if cordoned_before {
        "left cordoned as its operator had it"
    } else {
        "uncordoned"
    })
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
