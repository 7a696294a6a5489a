//! `kubesurge rotate`: replace the workers of the selected pools that do
//! not match the desired state — a kubelet not at the control plane's
//! version, older than `--max-age`, on a stale image, or `--all`.

use std::time::Duration;

use clap::Args;
use jiff::Timestamp;

use super::args::{GlobalArgs, OutputFormat, SettingsFlags};
use super::run::{check_window, confirm, exit_status, lock, print_report, stop_requests};
use super::{CommandError, progress};
use crate::ExitStatus;
use crate::kube::client;
use crate::rotation::{Criteria, Engine, EngineError, RotationRequest};
use crate::settings::{self, HumanDuration, parse_duration};
use crate::version::KubeVersion;
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

    /// Print every mutation the run would make, and make none
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
    let settings = settings::load(
        global.config.as_deref(),
        &args.settings.overrides(),
        wiring::PROVIDERS,
    )?;
    let engine_config = wiring::engine_config(&settings, "rotate")
        .map_err(|e| CommandError::Invalid(e.to_string()))?;
    let window_end = if args.dry_run {
        None
    } else {
        match check_window(&settings) {
            Ok(end) => end,
            Err(status) => return Ok(status),
        }
    };

    let options = global.client_options();
    let client = client::client(&options).await?;
    let drain_client = client::drain_client(&options).await?;
    let target = control_plane_version(&client, &settings).await?;

    let engine = Engine {
        client: client.clone(),
        drain_client,
        config: std::sync::Arc::new(engine_config),
        progress: std::sync::Arc::from(progress::for_stderr(global.quiet > 0)),
        instance: crate::kube::lock::Holder::this_process("-").host,
    };
    let request = RotationRequest {
        command: args.canonical(),
        target,
        pools: args.pools.clone(),
        criteria: args.criteria(),
        dry_run: true,
    };

    // Show what will happen before anything does.
    let preview = engine
        .run(&request, tokio::sync::watch::channel(None).1)
        .await
        .map_err(engine_error)?;
    if args.dry_run {
        print_report(&preview, args.output)?;
        return Ok(ExitStatus::Success);
    }
    if preview.slots.is_empty() {
        super::output::eprint_line(
            "nothing to replace: every selected worker matches the desired state",
        );
        print_report(&preview, args.output)?;
        return Ok(ExitStatus::Success);
    }
    if !args.yes {
        super::output::eprint_line(&super::run::render_report(&preview));
    }
    confirm(
        &format!("Replace {} worker(s) at {target}?", preview.slots.len()),
        args.yes,
    )?;

    let held = lock(&client, &preview.run_id).await?;
    let (requests, _watchers) = stop_requests(&held, window_end);
    let real = RotationRequest {
        dry_run: false,
        ..request
    };
    let started = Timestamp::now();
    let result = engine.run(&real, requests).await;
    let released = held.release().await;
    let report = result.map_err(engine_error)?;
    if let Err(e) = released {
        tracing::warn!(error = %e, "could not release the run lock; it expires by itself");
    }
    tracing::debug!(elapsed = %Timestamp::now().duration_since(started), "run finished");
    print_report(&report, args.output)?;
    Ok(exit_status(&report))
}

/// The version replacements get: the oldest apiserver's (a kubelet must
/// never be newer than any apiserver).
async fn control_plane_version(
    client: &kube::Client,
    settings: &settings::Settings,
) -> Result<KubeVersion, CommandError> {
    let inventory = super::run::collect_inventory(client, settings).await?;
    Ok(inventory
        .control_plane
        .iter()
        .filter_map(|cp| cp.apiserver)
        .min()
        .unwrap_or(inventory.apiserver_version))
}

pub(super) fn engine_error(e: EngineError) -> CommandError {
    match e {
        EngineError::UnfinishedRun { .. } | EngineError::Invalid(_) => {
            CommandError::Invalid(e.to_string())
        }
        other => CommandError::Failed(other.to_string()),
    }
}
