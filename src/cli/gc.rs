//! `kubesurge gc`: terminate instances that kubesurge launched for this
//! cluster and that never became (or no longer are) a node
//! (`crate::rotation::gc`). It takes the run lock, so no live run's
//! instances are touched.

use clap::Args;

use super::args::{GlobalArgs, SettingsFlags};
use super::run::{lock, release};
use super::{CommandError, output};
use crate::ExitStatus;
use crate::kube::client;
use crate::rotation::gc::{self, Collected, Leftover};
use crate::settings;
use crate::wiring;

/// Arguments of `kubesurge gc`.
#[derive(Debug, Clone, Args)]
pub struct GcArgs {
    /// List what would be terminated; terminate nothing
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub settings: SettingsFlags,
}

pub async fn run(global: &GlobalArgs, args: GcArgs) -> Result<ExitStatus, CommandError> {
    let settings = settings::load(
        global.config.as_deref(),
        &args.settings.overrides(),
        wiring::PROVIDERS,
    )?;
    let config = wiring::engine_config(&settings, "collect")?;
    let client = client::client(&global.client_options()).await?;
    if args.dry_run {
        let leftovers = gc::find(&client, &config).await?;
        print(&lines("would terminate", &leftovers))?;
        return Ok(ExitStatus::Success);
    }
    let held = lock(&client, "gc").await?;
    let collected = match gc::find(&client, &config).await {
        Ok(leftovers) => Ok(gc::terminate(&config, leftovers).await),
        Err(e) => Err(e),
    };
    release(held).await;
    let Collected { terminated, failed } = collected?;
    // When every leftover failed, the error says it all: "nothing to
    // collect" would be false.
    if !terminated.is_empty() || failed.is_empty() {
        print(&lines("terminated", &terminated))?;
    }
    if failed.is_empty() {
        Ok(ExitStatus::Success)
    } else {
        Err(CommandError::GcIncomplete(failed))
    }
}

fn lines(verb: &str, leftovers: &[Leftover]) -> Vec<String> {
    leftovers.iter().map(|l| format!("{verb} {l}")).collect()
}

/// One line per instance, or the sentence for none.
fn print(lines: &[String]) -> Result<(), CommandError> {
    if lines.is_empty() {
        output::print("nothing to collect: every instance kubesurge launched is a node\n")
    } else {
        output::print(&(lines.join("\n") + "\n"))
    }
}
