//! `kubesurge upgrade --to VERSION`: plan, show, confirm, then run the
//! upgrade (`crate::upgrade`) under the lock, with progress on stderr and
//! the report on stdout.

use std::sync::Arc;

use clap::Args;
use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::args::{GlobalArgs, MutationFlags, OutputFormat, parse_version};
use super::run::{self, confirm, connect, read_cluster, release, render_report, window_gate};
use super::{CommandError, output, progress};
use crate::ExitStatus;
use crate::plan::{self, PlanRequest};
use crate::run_control::{StopRequests, WindowGate};
use crate::settings;
use crate::upgrade::{Clients, Upgrade, UpgradeOutcome, UpgradeReport};
use crate::version::KubeVersion;
use crate::wiring;

/// Arguments of `kubesurge upgrade`.
#[derive(Debug, Clone, Args)]
pub struct UpgradeArgs {
    /// Target Kubernetes version (v1.34.2)
    #[arg(long, value_name = "VERSION", value_parser = parse_version)]
    pub to: KubeVersion,

    #[command(flatten)]
    pub flags: MutationFlags,
}

pub async fn run(global: &GlobalArgs, args: UpgradeArgs) -> Result<ExitStatus, CommandError> {
    let flags = &args.flags;
    let settings = settings::load(
        global.config.as_deref(),
        &flags.settings.overrides(),
        wiring::PROVIDERS,
    )?;
    let connection = connect(global).await?;
    let inventory = read_cluster(&connection, &settings).await?;
    let plan = plan::plan(&PlanRequest {
        inventory: &inventory,
        target: Some(args.to),
        pools: &settings.pool_inputs(),
        today: Timestamp::now().to_zoned(TimeZone::UTC).date(),
    })?;

    if plan.nothing_to_do {
        output::eprint_line(&format!("nothing to do: the cluster is at {}", args.to));
        // A report all the same, so that scripts and the Terraform module
        // read the same document whether or not anything ran.
        print(
            &UpgradeReport::starting(args.to, Timestamp::now()),
            flags.output,
        )?;
        return Ok(ExitStatus::Success);
    }
    if flags.dry_run || !flags.yes {
        output::eprint_line(&plan::render_table(&plan));
    }
    if flags.dry_run {
        match flags.output {
            OutputFormat::Json => output::print(&output::json(&plan, "the plan")?)?,
            OutputFormat::Table => output::print("DRY RUN: nothing was changed.\n")?,
        }
        return Ok(ExitStatus::Success);
    }
    // Everything a run needs is checked before anything changes.
    let upgrade = Upgrade::prepare(plan, args.to, &settings)?;
    let WindowGate::Open { closes_at } = window_gate(&settings)? else {
        return Ok(ExitStatus::Success);
    };
    confirm(&format!("Upgrade the cluster to {}?", args.to), flags.yes)?;

    let held = run::lock(&connection.client, &format!("upgrade-{}", args.to)).await?;
    let stops = StopRequests::watch(&held, closes_at);
    let clients = Clients {
        client: connection.client,
        drain_client: connection.drain_client,
    };
    let progress = Arc::from(progress::for_stderr(global.quiet > 0));
    let result = upgrade.run(clients, progress, stops.receiver()).await;
    release(held).await;
    let report = result?;
    print(&report, flags.output)?;
    Ok(match report.outcome {
        UpgradeOutcome::Succeeded | UpgradeOutcome::Stopped { .. } => ExitStatus::Success,
        UpgradeOutcome::Failed { .. } => ExitStatus::Failed,
        UpgradeOutcome::Aborted => ExitStatus::Aborted,
    })
}

fn print(report: &UpgradeReport, format: OutputFormat) -> Result<(), CommandError> {
    let text = match format {
        OutputFormat::Json => output::json(report, "the report")?,
        OutputFormat::Table => render(report),
    };
    output::print(&text)
}

/// The summary table.
fn render(report: &UpgradeReport) -> String {
    let mut out = format!("upgrade to {}\n\n", report.target);
    for hop in &report.hops {
        out.push_str(&format!("hop {}: {} → {}\n", hop.number, hop.from, hop.to));
        for step in &hop.steps {
            out.push_str(&format!(
                "  {:<24} {:<28} {}\n",
                step.node,
                step.step,
                if step.ran { "done" } else { "already done" }
            ));
        }
    }
    for run in &report.rotations {
        out.push('\n');
        out.push_str(&render_report(run));
    }
    out.push('\n');
    out.push_str(&match &report.outcome {
        UpgradeOutcome::Succeeded => format!("done: the cluster is at {}\n", report.target),
        UpgradeOutcome::Failed { reason } => format!(
            "FAILED: {reason}\nthe cluster was left safe; rerun the same command to resume\n"
        ),
        UpgradeOutcome::Aborted => "aborted; rerun the same command to resume\n".to_string(),
        UpgradeOutcome::Stopped { reason } => format!("stopped: {reason}\n"),
    });
    out
}
