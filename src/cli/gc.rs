//! `kubesurge gc`: terminate instances that kubesurge launched for this
//! cluster and that never became (or no longer are) a node. It takes the
//! run lock, so no live run's instances are touched.

use std::collections::BTreeSet;
use std::time::Duration;

use clap::Args;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kubesurge_provider::{DeleteStatus, PoolRef, tags};

use super::args::{GlobalArgs, SettingsFlags};
use super::run::lock;
use super::{CommandError, output};
use crate::ExitStatus;
use crate::kube::client;
use crate::kube::nodes;
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

/// How long gc waits for one instance to report gone.
const TERMINATE_WAIT: Duration = Duration::from_secs(300);

pub async fn run(global: &GlobalArgs, args: GcArgs) -> Result<ExitStatus, CommandError> {
    let settings = settings::load(
        global.config.as_deref(),
        &args.settings.overrides(),
        wiring::PROVIDERS,
    )?;
    let config = wiring::engine_config(&settings, "collect")
        .map_err(|e| CommandError::Invalid(e.to_string()))?;
    let client = client::client(&global.client_options()).await?;
    let held = if args.dry_run {
        None
    } else {
        Some(lock(&client, "gc").await?)
    };
    let node_list = Api::<Node>::all(client.clone())
        .list(&Default::default())
        .await
        .map_err(|e| CommandError::Failed(format!("listing nodes: {e}")))?;
    let provider_ids: BTreeSet<String> = node_list
        .items
        .iter()
        .filter_map(|n| nodes::provider_id(n).map(str::to_string))
        .collect();
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    for pool in &config.pools {
        let pool_ref = PoolRef {
            cluster: config.cluster.clone(),
            pool: pool.name.clone(),
        };
        let instances = pool
            .provider
            .list(&pool_ref)
            .await
            .map_err(|e| CommandError::Failed(format!("pool {}: {e}", pool.name)))?;
        for instance in instances {
            let launched_by_us = instance.tag(tags::RUN).is_some();
            if !launched_by_us
                || instance.state.is_going_away()
                || provider_ids.contains(&instance.provider_id)
            {
                continue;
            }
            let what = format!(
                "{} (pool {}, run {}, replacing {})",
                instance.id,
                pool.name,
                instance.tag(tags::RUN).unwrap_or("?"),
                instance.tag(tags::REPLACES).unwrap_or("?")
            );
            if args.dry_run {
                lines.push(format!("would terminate {what}"));
                continue;
            }
            let deadline = tokio::time::Instant::now() + TERMINATE_WAIT;
            loop {
                match pool.provider.delete(&instance.id).await {
                    Ok(DeleteStatus::Gone) => {
                        lines.push(format!("terminated {what}"));
                        break;
                    }
                    Ok(DeleteStatus::InProgress) if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Ok(DeleteStatus::InProgress) => {
                        failures.push(format!(
                            "{what}: still terminating after {TERMINATE_WAIT:?}"
                        ));
                        break;
                    }
                    Err(e) => {
                        failures.push(format!("{what}: {e}"));
                        break;
                    }
                }
            }
        }
    }
    if let Some(held) = held
        && let Err(e) = held.release().await
    {
        tracing::warn!(error = %e, "could not release the run lock; it expires by itself");
    }
    if lines.is_empty() && failures.is_empty() {
        output::print("nothing to collect: every instance kubesurge launched is a node\n")?;
    } else {
        output::print(&(lines.join("\n") + "\n"))?;
    }
    if failures.is_empty() {
        Ok(ExitStatus::Success)
    } else {
        Err(CommandError::Failed(format!(
            "could not terminate: {}",
            failures.join("; ")
        )))
    }
}
