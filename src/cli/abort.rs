//! `kubesurge abort`: ask the run holding the lock to stop at its next safe
//! point (it finishes the slots in flight and exits 4). With no run holding
//! the lock, an unfinished run is abandoned so another command may start.

use clap::Args;

use super::args::GlobalArgs;
use super::{CommandError, output};
use crate::ExitStatus;
use crate::kube::client;
use crate::kube::lock::{self, LockError};
use crate::rotation::{RecordStore, RunState};

/// Arguments of `kubesurge abort`.
#[derive(Debug, Clone, Args)]
pub struct AbortArgs {}

pub async fn run(global: &GlobalArgs, _args: AbortArgs) -> Result<ExitStatus, CommandError> {
    let client = client::client(&global.client_options()).await?;
    match lock::request_abort(client.clone()).await {
        Ok(request) => {
            output::print(&format!(
                "asked the run held by {} to stop at its next safe point\n",
                request.holder
            ))?;
            return Ok(ExitStatus::Success);
        }
        Err(LockError::NotHeld) => {}
        Err(e) => return Err(CommandError::Failed(e.to_string())),
    }
    let records = RecordStore::new(client);
    let record = records
        .load()
        .await
        .map_err(|e| CommandError::Failed(e.to_string()))?;
    match record {
        Some(mut record) if record.state.is_unfinished() => {
            record.state = RunState::Abandoned;
            record.message = Some("abandoned by kubesurge abort".into());
            records
                .save(&record)
                .await
                .map_err(|e| CommandError::Failed(e.to_string()))?;
            output::print(&format!(
                "no run holds the lock; abandoned unfinished run {} ({}). Instances it launched that never became nodes are removed by `kubesurge gc`\n",
                record.id, record.command
            ))?;
        }
        _ => output::print("nothing to abort: no run in progress and none unfinished\n")?,
    }
    Ok(ExitStatus::Success)
}
