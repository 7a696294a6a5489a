//! `kubesurge upgrade --to VERSION`: plan, show, confirm, then run the
//! upgrade (`crate::upgrade`) under the lock, with progress on stderr and
//! the report on stdout.

use std::sync::Arc;

use clap::Args;
use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::args::{GlobalArgs, MutationFlags, ReportFormat, parse_target_version};
use super::output::Kind;
use super::run::{
    self, announce_unfinished, confirm, connect, numbered_would, read_cluster, release,
    render_report, reopening, window_gate,
};
use super::{CommandError, metrics_file, output, progress, table};
use crate::ExitStatus;
use crate::plan::{self, PlanRequest};
use crate::report_metrics::RunMetrics;
use crate::run_control::{StopRequests, WindowGate};
use crate::settings;
use crate::upgrade::{Clients, Remaining, Upgrade, UpgradeOutcome, UpgradeReport};
use crate::version::KubeVersion;
use crate::wiring;

/// Arguments of `kubesurge upgrade`.
#[derive(Debug, Clone, Args)]
pub struct UpgradeArgs {
    /// Target Kubernetes version (v1.34.2)
    #[arg(long, value_name = "VERSION", value_parser = parse_target_version)]
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
        let report = UpgradeReport::starting(args.to, Timestamp::now());
        print(&report, &flags.output)?;
        if !flags.dry_run {
            metrics_file::write_if_asked(
                flags.metrics_file.as_deref(),
                &RunMetrics::of_upgrade(&report),
            );
        }
        return Ok(ExitStatus::Success);
    }
    // Everything a run needs is checked before anything changes, and
    // before a dry run, which shows what the run would do.
    let remaining = Remaining::of_steps(&plan, &plan.sequence);
    let upgrade = Upgrade::prepare(plan, args.to, &settings)?;
    // The target must exist (every hop's packages, every rotation's image)
    // before the first, irreversible, hop.
    // `exec: local` runs even the read-only package query on this machine:
    // first prove that this machine is the control-plane node.
    upgrade.verify_local_exec(&connection.client).await?;
    let not_checked = upgrade.verify_target(&connection.client).await?;
    run::announce_not_checked(&not_checked);
    if flags.dry_run || !flags.yes {
        output::eprint_line(&plan::render_table(upgrade.plan()));
    }
    if flags.dry_run {
        let clients = Clients {
            client: connection.client.clone(),
            drain_client: connection.drain_client.clone(),
            lease: None,
        };
        let progress = Arc::from(progress::for_stderr(global));
        let dry = upgrade.dry_run(clients, progress).await?;
        let document = super::plan::PlanDocument {
            plan: upgrade.plan(),
            dry_run: Some(&dry),
        };
        let text = match &flags.output {
            ReportFormat::Document(encoding) => {
                output::document(Kind::UpgradePlan, &document, encoding)?
            }
            ReportFormat::Name => output::names(dry.rotations.iter().flat_map(run::report_nodes)),
            ReportFormat::Table => format!(
                "DRY RUN of upgrade to {}: {remaining} to do; nothing was changed.\n{}",
                args.to,
                numbered_would(&dry.would)
            ),
        };
        output::print(&text)?;
        return Ok(ExitStatus::Success);
    }
    let (closes_at, reopens_at) = match window_gate(&settings)? {
        WindowGate::Closed { sentence, opens_at } => {
            // Outside the window: say what is left and when it opens.
            let mut report = UpgradeReport::starting(args.to, Timestamp::now());
            report.outcome = UpgradeOutcome::Deferred {
                reason: sentence.clone(),
                opens_at,
                remaining,
            };
            print(&report, &flags.output)?;
            metrics_file::write_if_asked(
                flags.metrics_file.as_deref(),
                &RunMetrics::of_upgrade(&report),
            );
            announce_unfinished(&format!("{sentence}; nothing changed; {remaining}"));
            return Ok(exit_status(&report.outcome));
        }
        WindowGate::Open {
            closes_at,
            reopens_at,
        } => (closes_at, reopens_at),
    };
    confirm(&format!("Upgrade the cluster to {}?", args.to), flags.yes)?;

    let held = run::lock(&connection, &format!("upgrade-{}", args.to)).await?;
    let stops = StopRequests::watch(&held, closes_at);
    let clients = Clients {
        client: connection.client,
        drain_client: connection.drain_client,
        lease: Some(held.hold()),
    };
    let progress = Arc::from(progress::for_stderr(global));
    let result = upgrade.run(clients, progress, stops.receiver()).await;
    release(held).await;
    let mut report = result?;
    if let UpgradeOutcome::Partial { opens_at, .. } = &mut report.outcome {
        *opens_at = reopens_at;
    }
    print(&report, &flags.output)?;
    metrics_file::write_if_asked(
        flags.metrics_file.as_deref(),
        &RunMetrics::of_upgrade(&report),
    );
    if let UpgradeOutcome::Partial {
        reason, remaining, ..
    } = &report.outcome
    {
        let next = reopens_at.map_or(String::new(), |at| {
            format!("; {}", reopening(&settings, at))
        });
        announce_unfinished(&format!("{reason} with {remaining}{next}"));
    }
    Ok(exit_status(&report.outcome))
}

/// The exit status of a finished (or deferred) upgrade.
fn exit_status(outcome: &UpgradeOutcome) -> ExitStatus {
    match outcome {
        UpgradeOutcome::Succeeded => ExitStatus::Success,
        UpgradeOutcome::Failed { .. } => ExitStatus::Failed,
        UpgradeOutcome::Aborted => ExitStatus::Aborted,
        UpgradeOutcome::Partial { .. } | UpgradeOutcome::Deferred { .. } => ExitStatus::Deferred,
    }
}

fn print(report: &UpgradeReport, format: &ReportFormat) -> Result<(), CommandError> {
    let text = match format {
        ReportFormat::Document(encoding) => {
            output::document(Kind::UpgradeReport, report, encoding)?
        }
        ReportFormat::Name => output::names(report.rotations.iter().flat_map(run::report_nodes)),
        ReportFormat::Table => render(report),
    };
    output::print(&text)
}

/// The summary table.
fn render(report: &UpgradeReport) -> String {
    // Sections, one blank line apart: the title, each hop, each rotation,
    // the outcome.
    let mut sections = vec![format!("upgrade to {}\n", report.target)];
    for hop in &report.hops {
        let rows: Vec<Vec<String>> = hop
            .steps
            .iter()
            .map(|step| {
                vec![
                    step.node.clone(),
                    step.step.clone(),
                    if step.ran { "done" } else { "already done" }.to_string(),
                ]
            })
            .collect();
        sections.push(format!(
            "hop {}: {} → {}\n{}",
            hop.number,
            hop.from,
            hop.to,
            table::render(&["NODE", "STEP", "RESULT"], &rows)
        ));
    }
    for run in &report.rotations {
        sections.push(render_report(run));
    }
    let mut out = sections.join("\n");
    out.push('\n');
    out.push_str(&match &report.outcome {
        UpgradeOutcome::Succeeded => format!("done: the cluster is at {}\n", report.target),
        UpgradeOutcome::Failed { reason } => format!(
            "FAILED: {reason}\nthe cluster was left safe; rerun the same command to resume\n"
        ),
        UpgradeOutcome::Aborted => "aborted; rerun the same command to resume\n".to_string(),
        UpgradeOutcome::Partial {
            reason,
            remaining,
            opens_at,
        } => format!(
            "partial: {reason}; {remaining}{} (rerun the same command then)\n",
            opens_at.map_or(String::new(), |at| format!(
                " for the next window, which opens at {at}"
            ))
        ),
        UpgradeOutcome::Deferred {
            reason, remaining, ..
        } => format!(
            "deferred: {reason}; nothing changed; {remaining} (rerun the same command then)\n"
        ),
    });
    out
}
