//! `kubesurge abort`: ask the run holding the lock to stop at its next safe
//! point (it finishes the slots in flight and exits 4). With no run holding
//! the lock, an unfinished run is abandoned so another command may start
//! (`crate::run_control::abort`).

use clap::Args;

use super::args::GlobalArgs;
use super::{CommandError, output};
use crate::ExitStatus;
use crate::kube::client;
use crate::run_control::{self, AbortOutcome};

/// Arguments of `kubesurge abort`.
#[derive(Debug, Clone, Args)]
pub struct AbortArgs {}

pub async fn run(global: &GlobalArgs, _args: AbortArgs) -> Result<ExitStatus, CommandError> {
    let client = client::client(&global.client_options()).await?;
    output::print(&match run_control::abort(&client).await? {
        AbortOutcome::Requested { holder } => {
            format!("asked the run held by {holder} to stop at its next safe point\n")
        }
        AbortOutcome::Abandoned { id, command } => format!(
            "no run holds the lock; abandoned unfinished run {id} ({command}). Instances it launched that never became nodes are removed by `kubesurge gc`\n"
        ),
        AbortOutcome::Nothing => {
            "nothing to abort: no run in progress and none unfinished\n".to_string()
        }
    })?;
    Ok(ExitStatus::Success)
}
