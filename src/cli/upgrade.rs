//! `kubesurge upgrade --to VERSION`: the plan, run — control-plane hops in
//! place, worker rotations at the points the plan chose, through the surge
//! engine — with the lock, confirmation, `--dry-run`, progress and report.
//!
//! Every step starts from what the world reports: a rerun after a failure
//! or a crash plans again from the versions the nodes report and continues.

use std::sync::Arc;

use clap::Args;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;

use super::args::{GlobalArgs, OutputFormat, SettingsFlags, parse_version};
use super::rotate::engine_error;
use super::run::{check_window, confirm, lock, render_report, stop_requests};
use super::{CommandError, output, progress};
use crate::ExitStatus;
use crate::controlplane::phase::{ControlPlaneDriver, HopReport};
use crate::kube::client;
use crate::plan::{self, PlanRequest, Step};
use crate::rotation::{Criteria, Engine, RotationRequest, RunOutcome, RunReport, StopReason};
use crate::settings;
use crate::version::KubeVersion;
use crate::wiring;

/// Arguments of `kubesurge upgrade`.
#[derive(Debug, Clone, Args)]
pub struct UpgradeArgs {
    /// Target Kubernetes version (v1.34.2)
    #[arg(long, value_name = "VERSION", value_parser = parse_version)]
    pub to: KubeVersion,

    /// Print the plan and every step it would take; change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Do not ask for confirmation
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Report format on stdout
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    #[command(flatten)]
    pub settings: SettingsFlags,
}

/// How an upgrade ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "result")]
pub enum UpgradeOutcome {
    Succeeded,
    Failed { reason: String },
    Aborted,
    Stopped { reason: String },
}

/// The upgrade report: `-o json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeReport {
    pub target: KubeVersion,
    pub started: Timestamp,
    pub finished: Timestamp,
    pub outcome: UpgradeOutcome,
    pub hops: Vec<HopReport>,
    pub rotations: Vec<RunReport>,
}

impl UpgradeReport {
    /// A report with nothing done yet (and nothing failed).
    fn starting(target: KubeVersion, at: Timestamp) -> UpgradeReport {
        UpgradeReport {
            target,
            started: at,
            finished: at,
            outcome: UpgradeOutcome::Succeeded,
            hops: Vec::new(),
            rotations: Vec::new(),
        }
    }
}

pub async fn run(global: &GlobalArgs, args: UpgradeArgs) -> Result<ExitStatus, CommandError> {
    let settings = settings::load(
        global.config.as_deref(),
        &args.settings.overrides(),
        wiring::PROVIDERS,
    )?;
    let options = global.client_options();
    let client = client::client(&options).await?;
    let inventory = super::run::collect_inventory(&client, &settings).await?;
    let pools = super::plan::pool_inputs(&settings);
    let plan = plan::plan(&PlanRequest {
        inventory: &inventory,
        target: Some(args.to),
        pools: &pools,
        today: Timestamp::now().to_zoned(TimeZone::UTC).date(),
    })?;

    if plan.nothing_to_do {
        output::eprint_line(&format!("nothing to do: the cluster is at {}", args.to));
        // A report all the same, so that scripts and the Terraform module
        // read the same document whether or not anything ran.
        print(
            &UpgradeReport::starting(args.to, Timestamp::now()),
            args.output,
        )?;
        return Ok(ExitStatus::Success);
    }
    if args.dry_run || !args.yes {
        output::eprint_line(&plan::render_table(&plan));
    }
    if args.dry_run {
        match args.output {
            OutputFormat::Json => output::print(&super::plan::plan_json(&plan)?)?,
            OutputFormat::Table => output::print("DRY RUN: nothing was changed.\n")?,
        }
        return Ok(ExitStatus::Success);
    }
    // Everything a run needs is checked before anything changes.
    let has_hops = !plan.hops.is_empty();
    let exec = if has_hops {
        Some(wiring::node_exec(&settings).map_err(|e| CommandError::Invalid(e.to_string()))?)
    } else {
        None
    };
    let has_rotations = plan.pools.iter().any(|p| !p.rotations.is_empty());
    let engine_config = if has_rotations {
        Some(
            wiring::engine_config(&settings, "upgrade")
                .map_err(|e| CommandError::Invalid(e.to_string()))?,
        )
    } else {
        None
    };
    let window_end = match check_window(&settings) {
        Ok(end) => end,
        Err(status) => return Ok(status),
    };
    confirm(&format!("Upgrade the cluster to {}?", args.to), args.yes)?;

    let held = lock(&client, &format!("upgrade-{}", args.to)).await?;
    let (requests, _watchers) = stop_requests(&held, window_end);
    let drain_client = client::drain_client(&options).await?;
    let progress: Arc<dyn crate::rotation::Progress> =
        Arc::from(progress::for_stderr(global.quiet > 0));
    let started = Timestamp::now();
    let mut report = UpgradeReport::starting(args.to, started);

    let driver = match &exec {
        Some(exec) => Some(
            ControlPlaneDriver::new(
                client.clone(),
                drain_client.clone(),
                exec.clone(),
                progress.clone(),
                crate::kube::drain::DrainPolicy {
                    on_timeout: settings.drain.on_timeout,
                    unmanaged: settings.drain.unmanaged_pods,
                    concurrency: crate::kube::drain::DEFAULT_EVICTION_CONCURRENCY,
                },
                settings.drain.timeout,
            )
            .await
            .map_err(|e| CommandError::Failed(format!("watching the control plane: {e}")))?,
        ),
        None => None,
    };
    let engine = engine_config.map(|config| Engine {
        client: client.clone(),
        drain_client: drain_client.clone(),
        config: Arc::new(config),
        progress: progress.clone(),
        instance: crate::kube::lock::Holder::this_process("-").host,
    });

    for step in &plan.sequence {
        if let Some(reason) = requests.borrow().clone() {
            report.outcome = match reason {
                StopReason::WindowEnd => UpgradeOutcome::Stopped {
                    reason: "the maintenance window ended; rerun the same command in the next one"
                        .into(),
                },
                _ => UpgradeOutcome::Aborted,
            };
            break;
        }
        match step {
            Step::Hop { hop } => {
                let Some(hop) = plan.hops.get(hop.saturating_sub(1)) else {
                    continue;
                };
                let Some(driver) = &driver else { continue };
                progress.note(&format!(
                    "control plane hop {}: {} → {}",
                    hop.number, hop.from, hop.to
                ));
                match driver.run_hop(hop).await {
                    Ok(done) => report.hops.push(done),
                    Err(e) => {
                        report.outcome = UpgradeOutcome::Failed {
                            reason: e.to_string(),
                        };
                        break;
                    }
                }
            }
            Step::Rotate { pool, rotation } => {
                let Some(rotation) = plan
                    .pools
                    .iter()
                    .find(|p| &p.name == pool)
                    .and_then(|p| p.rotations.get(rotation.saturating_sub(1)))
                else {
                    continue;
                };
                let Some(engine) = &engine else { continue };
                progress.note(&format!(
                    "rotating pool {pool} to {} ({})",
                    rotation.version, rotation.reason
                ));
                let request = RotationRequest {
                    // One record per rotation point: a rerun of the same
                    // upgrade continues exactly this rotation.
                    command: format!(
                        "upgrade --to {}: pool {pool} at {}",
                        args.to, rotation.version
                    ),
                    target: rotation.version,
                    pools: vec![pool.clone()],
                    criteria: Criteria {
                        outdated: true,
                        ..Criteria::default()
                    },
                    dry_run: false,
                };
                let run = engine
                    .run(&request, requests.clone())
                    .await
                    .map_err(engine_error);
                let run = match run {
                    Ok(run) => run,
                    Err(e) => {
                        report.outcome = UpgradeOutcome::Failed {
                            reason: e.to_string(),
                        };
                        break;
                    }
                };
                let outcome = run.outcome.clone();
                report.rotations.push(run);
                match outcome {
                    RunOutcome::Succeeded => {}
                    RunOutcome::Failed { reason } => {
                        report.outcome = UpgradeOutcome::Failed { reason };
                        break;
                    }
                    RunOutcome::Aborted => {
                        report.outcome = UpgradeOutcome::Aborted;
                        break;
                    }
                    RunOutcome::Stopped { reason, .. } => {
                        report.outcome = UpgradeOutcome::Stopped { reason };
                        break;
                    }
                }
            }
        }
    }
    report.finished = Timestamp::now();
    if let Err(e) = held.release().await {
        tracing::warn!(error = %e, "could not release the run lock; it expires by itself");
    }
    print(&report, args.output)?;
    Ok(match report.outcome {
        UpgradeOutcome::Succeeded | UpgradeOutcome::Stopped { .. } => ExitStatus::Success,
        UpgradeOutcome::Failed { .. } => ExitStatus::Failed,
        UpgradeOutcome::Aborted => ExitStatus::Aborted,
    })
}

fn print(report: &UpgradeReport, format: OutputFormat) -> Result<(), CommandError> {
    let text = match format {
        OutputFormat::Json => {
            let mut json = serde_json::to_string_pretty(report)
                .map_err(|e| CommandError::Failed(format!("cannot write the report: {e}")))?;
            json.push('\n');
            json
        }
        OutputFormat::Table => {
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
                UpgradeOutcome::Aborted => {
                    "aborted; rerun the same command to resume\n".to_string()
                }
                UpgradeOutcome::Stopped { reason } => format!("stopped: {reason}\n"),
            });
            out
        }
    };
    output::print(&text)
}
