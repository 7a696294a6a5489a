//! The end of a slot: terminate the old instance until the provider
//! reports it gone, then delete its Node.

use tokio::time::Instant;

use super::{Executor, SlotError};
use crate::kube::events::EventType;
use crate::rotation::machine::{Phase, SlotState};
use crate::rotation::report::SlotReport;
use crate::rotation::watched;

impl Executor<'_> {
    /// [`crate::rotation::machine::Action::Terminate`].
    pub(super) async fn terminate(
        &mut self,
        state: &mut SlotState,
        report: &mut SlotReport,
    ) -> Result<(), SlotError> {
        let ctx = self.ctx;
        let old_name = self.old_name().to_string();
        if report.new_node.is_none() {
            report.new_node = state.old.as_ref().and_then(|o| o.replaced_by.clone());
        }
        ctx.progress.phase(
            &self.input.pool.name,
            &old_name,
            Phase::Terminating,
            &self
                .old_instance
                .as_ref()
                .map(|i| i.id.0.clone())
                .unwrap_or_default(),
        );
        let started = Instant::now();
        if !watched::volumes_detached(
            &ctx.volume_attachments,
            &old_name,
            Instant::now() + ctx.deadlines.volume_detach,
        )
        .await
        {
            tracing::warn!(node = %old_name, "terminating with volumes still attached");
        }
        let old = ctx.nodes.get(&old_name);
        match &self.old_instance {
            Some(instance) => {
                self.input
                    .instances
                    .terminate(&instance.id, ctx.deadlines.terminate)
                    .await?
            }
            None => tracing::warn!(
                node = %old_name,
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
                        self.old_instance
                            .as_ref()
                            .map(|i| i.id.0.as_str())
                            .unwrap_or("unknown"),
                        ctx.run_id
                    ),
                )
                .await;
        }
        ctx.node_ops
            .delete(
                &old_name,
                old.as_ref().and_then(|n| n.metadata.uid.as_deref()),
            )
            .await?;
        report.timings.terminate = Some(started.elapsed().as_secs_f64());
        state.terminated = true;
        state.old = None;
        Ok(())
    }

    /// [`crate::rotation::machine::Action::Forget`]: the old instance went
    /// away without this slot (a scale-in); its Node goes too.
    pub(super) async fn forget(
        &mut self,
        state: &mut SlotState,
        report: &mut SlotReport,
    ) -> Result<(), SlotError> {
        let ctx = self.ctx;
        let old_name = self.old_name().to_string();
        ctx.progress.phase(
            &self.input.pool.name,
            &old_name,
            Phase::Terminating,
            "its instance is already gone (a scale-in)",
        );
        // Already terminating: this waits until the provider reports it
        // gone (asking again only if it shows as not terminating), so that
        // no Node is deleted while its VM still runs.
        if let Some(instance) = &self.old_instance {
            self.input
                .instances
                .terminate(&instance.id, ctx.deadlines.terminate)
                .await?;
        }
        let old = ctx.nodes.get(&old_name);
        if let Some(node) = &old {
            ctx.recorder
                .node_event(
                    node,
                    EventType::Normal,
                    "KubesurgeInstanceGone",
                    &format!(
                        "Instance {} was terminated during the run (a scale-in); deleting the Node (run {})",
                        self.old_instance
                            .as_ref()
                            .map(|i| i.id.0.as_str())
                            .unwrap_or("unknown"),
                        ctx.run_id
                    ),
                )
                .await;
        }
        ctx.node_ops
            .delete(
                &old_name,
                old.as_ref().and_then(|n| n.metadata.uid.as_deref()),
            )
            .await?;
        if report.new_node.is_none() {
            report.new_node = state.old.as_ref().and_then(|o| o.replaced_by.clone());
        }
        state.terminated = true;
        state.old = None;
        Ok(())
    }
}
