//! `kubesurge rotate`: replace the workers of the selected pools that do
//! not match the desired state — a kubelet not at the control plane's
//! version, older than `--max-age`, on a stale image, or `--all`.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use jiff::Timestamp;
use tokio::sync::watch;

use super::args::{GlobalArgs, MutationFlags};
use super::run::{
    self, announce_unfinished, confirm, connect, deferred_report, exit_status, print_report,
    read_cluster, release, render_report, reopening, window_gate,
};
use super::{CommandError, metrics_file, output, progress};
use crate::ExitStatus;
use crate::report_metrics::RunMetrics;
use crate::rotation::{Criteria, Engine, RotationRequest, RunOutcome};
use crate::run_control::{StopRequests, WindowGate};
use crate::settings::{self, HumanDuration, parse_duration};
use crate::wiring;

/// Arguments of `kubesurge rotate`.
#[derive(Debug, Clone, Args)]
pub struct RotateArgs {
    /// Only this pool (repeatable) [default: every pool]
    #[arg(long = "pool", value_name = "NAME")]
    pub pools: Vec<String>,

    /// Also replace workers older than this (30d, 12h)
    #[arg(long, value_name = "DURATION", value_parser = parse_max_age)]
    pub max_age: Option<Duration>,

    /// Also replace workers whose image is not the pool's current one
    #[arg(long)]
    pub stale_image: bool,

    /// Replace every worker of the selected pools
    #[arg(long)]
    pub all: bool,

    #[command(flatten)]
    pub flags: MutationFlags,
}

fn parse_max_age(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

impl RotateArgs {
    /// The command in canonical form: the same selection always reads the
    /// same, whatever order or spelling the flags had.
    pub fn canonical(&self) -> String {
        let mut pools = self.pools.clone();
        pools.sort();
        pools.dedup();
        let mut words = vec!["rotate".to_string()];
        for pool in pools {
            words.push(format!("--pool {pool}"));
        }
        if let Some(age) = self.max_age {
            words.push(format!("--max-age {}", HumanDuration(age)));
        }
        if self.stale_image {
            words.push("--stale-image".into());
        }
        if self.all {
            words.push("--all".into());
        }
        words.join(" ")
    }

    fn criteria(&self) -> Criteria {
        Criteria {
            outdated: true,
            max_age: self.max_age,
            stale_image: self.stale_image,
            all: self.all,
        }
    }
}

pub async fn run(global: &GlobalArgs, args: RotateArgs) -> Result<ExitStatus, CommandError> {
    let flags = &args.flags;
    let settings = settings::load(
        global.config.as_deref(),
        &flags.settings.overrides(),
        wiring::PROVIDERS,
    )?;
    let engine_config = wiring::engine_config(&settings, "rotate")?;
    // A dry run changes nothing, so the window does not confine it.
    let gate = if flags.dry_run {
        None
    } else {
        Some(window_gate(&settings)?)
    };

    let connection = connect(global).await?;
    // Replacements get the control plane's version.
    let target = read_cluster(&connection, &settings)
        .await?
        .control_plane_version();
    let engine = Engine::new(
        connection.client.clone(),
        connection.drain_client.clone(),
        crate::rotation::fenced::behind_fence(engine_config, &connection.fence),
        Arc::from(progress::for_stderr(global)),
    );
    let request = RotationRequest {
        command: args.canonical(),
        target,
        pools: args.pools.clone(),
        criteria: args.criteria(),
        dry_run: true,
    };

    // Show what will happen before anything does.
    let preview = engine.run(&request, watch::channel(None).1).await?;
    if flags.dry_run {
        print_report(&preview, &flags.output)?;
        return Ok(ExitStatus::Success);
    }
    if preview.slots.is_empty() {
        output::eprint_line("nothing to replace: every selected worker matches the desired state");
        print_report(&preview, &flags.output)?;
        metrics_file::write_if_asked(
            flags.metrics_file.as_deref(),
            &RunMetrics::of_rotation(&preview),
        );
        return Ok(ExitStatus::Success);
    }
    let (window_end, reopens_at) = match gate {
        Some(WindowGate::Closed { sentence, opens_at }) => {
            // Outside the window: say what is left and when it opens.
            let report = deferred_report(preview, &sentence, opens_at);
            print_report(&report, &flags.output)?;
            metrics_file::write_if_asked(
                flags.metrics_file.as_deref(),
                &RunMetrics::of_rotation(&report),
            );
            announce_unfinished(&format!(
                "{sentence}; nothing changed; {} worker(s) left",
                report.slots.len()
            ));
            return Ok(exit_status(&report));
        }
        Some(WindowGate::Open {
            closes_at,
            reopens_at,
        }) => (closes_at, reopens_at),
        None => (None, None),
    };
    if !flags.yes {
        output::eprint_line(&render_report(&preview));
    }
    confirm(
        &format!("Replace {} worker(s) at {target}?", preview.slots.len()),
        flags.yes,
    )?;

    let held = run::lock(&connection, &preview.run_id).await?;
    let stops = StopRequests::watch(&held, window_end);
    let real = RotationRequest {
        dry_run: false,
        ..request
    };
    let started = Timestamp::now();
    let result = engine.run(&real, stops.receiver()).await;
    release(held).await;
    let mut report = result?;
    tracing::debug!(elapsed = %Timestamp::now().duration_since(started), "run finished");
    if let RunOutcome::Stopped { opens_at, .. } = &mut report.outcome {
        *opens_at = reopens_at;
    }
    print_report(&report, &flags.output)?;
    metrics_file::write_if_asked(
        flags.metrics_file.as_deref(),
        &RunMetrics::of_rotation(&report),
    );
    if let RunOutcome::Stopped {
        reason, remaining, ..
    } = &report.outcome
    {
        let next = reopens_at.map_or(String::new(), |at| {
            format!("; {}", reopening(&settings, at))
        });
        announce_unfinished(&format!("{reason} with {remaining} worker(s) left{next}"));
    }
    Ok(exit_status(&report))
}
