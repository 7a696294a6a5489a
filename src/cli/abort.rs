//! `kubesurge abort`: ask the run holding the lock to stop at its next safe
//! point (it finishes the slots in flight, gives back what it changed at
//! the providers and exits 4). With no run holding the lock, an unfinished
//! run is abandoned so another command may start
//! (`crate::run_control::abort`); with `--config`, what it changed at the
//! providers (an Auto Scaling group's raised `MaxSize` and suspended
//! processes) is given back at once, under the lock, as `gc` does.

use clap::Args;

use super::args::GlobalArgs;
use super::{CommandError, output};
use crate::ExitStatus;
use crate::run_control::{self, AbortOutcome};
use crate::settings;
use crate::wiring;

/// Arguments of `kubesurge abort`.
#[derive(Debug, Clone, Args)]
pub struct AbortArgs {}

pub async fn run(global: &GlobalArgs, _args: AbortArgs) -> Result<ExitStatus, CommandError> {
    let connection = super::run::connect(global).await?;
    output::print(&match run_control::abort(&connection.client).await? {
        AbortOutcome::Requested { holder } => {
            format!("asked the run held by {holder} to stop at its next safe point\n")
        }
        AbortOutcome::Abandoned { id, command } => {
            let abandoned =
                format!("no run holds the lock; abandoned unfinished run {id} ({command})");
            if global.config.is_some() {
                restore_pools(global, &connection).await?;
                format!(
                    "{abandoned}; gave back what it changed at the providers. Instances it \
                     launched that never became nodes are removed by `kubesurge gc`\n"
                )
            } else {
                format!(
                    "{abandoned}. What it changed at the providers (Auto Scaling groups) is given \
                     back, and instances it launched that never became nodes are removed, by \
                     `kubesurge gc --config FILE`\n"
                )
            }
        }
        AbortOutcome::Nothing => {
            "nothing to abort: no run in progress and none unfinished\n".to_string()
        }
    })?;
    Ok(ExitStatus::Success)
}

/// The providers' changes given back as `gc` gives them back.
async fn restore_pools(
    global: &GlobalArgs,
    connection: &super::run::Connection,
) -> Result<(), CommandError> {
    let settings = settings::load(
        global.config.as_deref(),
        &settings::Overrides::default(),
        wiring::PROVIDERS,
    )?;
    let config = crate::rotation::fenced::behind_fence(
        wiring::engine_config(&settings, "abort")?,
        &connection.fence,
    );
    super::gc::restore_under_lock(connection, &config, "abort").await
}
