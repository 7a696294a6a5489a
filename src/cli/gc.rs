//! `kubesurge gc`: terminate instances that kubesurge launched for this
//! cluster and that never became (or no longer are) a node
//! (`crate::rotation::gc`). It takes the run lock, so no live run's
//! instances are touched.

use clap::Args;

use super::args::{GlobalArgs, SettingsFlags};
use super::run::{Connection, confirm, lock, release};
use super::{CommandError, output};
use crate::ExitStatus;
use crate::rotation::EngineConfig;
use crate::rotation::gc::{self, Collected, Leftover};
use crate::settings;
use crate::wiring;

/// Arguments of `kubesurge gc`.
#[derive(Debug, Clone, Args)]
pub struct GcArgs {
    /// List what would be terminated; terminate nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Do not ask for confirmation (required without a terminal)
    #[arg(long, short = 'y')]
    pub yes: bool,

    #[command(flatten)]
    pub settings: SettingsFlags,
}

pub async fn run(global: &GlobalArgs, args: GcArgs) -> Result<ExitStatus, CommandError> {
    let settings = settings::load(
        global.config.as_deref(),
        &args.settings.overrides(),
        wiring::PROVIDERS,
    )?;
    let connection = super::run::connect(global).await?;
    let config = crate::rotation::fenced::behind_fence(
        wiring::engine_config(&settings, "collect")?,
        &connection.fence,
    );
    let client = connection.client.clone();
    let found = gc::find(&client, &config).await?;
    if args.dry_run {
        print(&lines("would terminate", &found))?;
        return Ok(ExitStatus::Success);
    }
    if found.is_empty() {
        print(&lines("would terminate", &found))?;
        // Nothing to terminate; what a crashed or abandoned run changed at
        // the providers is still given back.
        restore_under_lock(&connection, &config, "gc").await?;
        return Ok(ExitStatus::Success);
    }
    if !args.yes {
        output::eprint_line(&lines("would terminate", &found).join("\n"));
    }
    confirm(&format!("Terminate {} instance(s)?", found.len()), args.yes)?;
    let held = lock(&connection, "gc").await?;
    // Under the lock, only what was confirmed and is still a leftover: an
    // instance that became a node meanwhile is no leftover any more.
    let collected = match gc::find(&client, &config).await {
        Ok(now) => Ok(gc::terminate(&config, confirmed(&found, now), &connection.fence).await),
        Err(e) => Err(e),
    };
    let restored = gc::restore_pools(&config).await;
    release(held).await;
    let Collected { terminated, failed } = collected?;
    restored?;
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

/// Give back what runs changed at the providers
/// ([`gc::restore_pools`]), under the run lock: no other run may be
/// changing the same groups meanwhile.
pub(super) async fn restore_under_lock(
    connection: &Connection,
    config: &EngineConfig,
    run_label: &str,
) -> Result<(), CommandError> {
    let held = lock(connection, run_label).await?;
    let restored = gc::restore_pools(config).await;
    release(held).await;
    Ok(restored?)
}

/// The leftovers found `now` that were among those `confirmed`. Pure.
fn confirmed(confirmed: &[Leftover], now: Vec<Leftover>) -> Vec<Leftover> {
    now.into_iter()
        .filter(|l| confirmed.iter().any(|c| c.instance == l.instance))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn leftover(id: &str) -> Leftover {
        Leftover {
            pool: "general".into(),
            instance: id.into(),
            run: "r-1".into(),
            replaces: None,
        }
    }

    #[test]
    fn only_what_was_confirmed_is_terminated() {
        let shown = [leftover("i-1"), leftover("i-2")];
        let now = vec![leftover("i-2"), leftover("i-3")];
        assert_eq!(confirmed(&shown, now), [leftover("i-2")]);
    }
}
