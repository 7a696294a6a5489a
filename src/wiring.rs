//! From validated settings to a working engine: the one place that knows
//! the concrete providers.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Taint;
use kubesurge_provider::CloudProvider;
use thiserror::Error;

use crate::kube::drain::{DEFAULT_EVICTION_CONCURRENCY, DrainPolicy};
use crate::rotation::config::{AWS_PROVIDER_ID_SCRIPT, DEFAULT_LAUNCH_ATTEMPTS};
use crate::rotation::{EngineConfig, PoolConfig};
use crate::settings::{Pool, PoolProvider, Settings};

/// Why settings cannot drive a run.
#[derive(Debug, Error)]
pub enum WiringError {
    #[error(
        "cluster.name is required to {0} (it goes into tags and the lock); set it in the config or pass --cluster-name"
    )]
    NoClusterName(&'static str),
    #[error(
        "controlPlane.exec: sim reaches the simulated machines through a pool with provider: sim, and the config has none"
    )]
    SimExecWithoutSimPool,
    #[error("the config has no pools: nothing to {0}")]
    NoPools(&'static str),
    #[error("pools[{pool}]: provider {provider} is not available in this build of kubesurge")]
    ProviderUnavailable {
        pool: String,
        provider: &'static str,
    },
    /// `controlPlane.exec` / `controlPlane.ssh` give no way to reach the
    /// control-plane nodes.
    #[error(transparent)]
    NodeExec(#[from] crate::exec::ExecSettingsError),
}

/// How scripts reach the control-plane nodes (`controlPlane.exec`).
pub fn node_exec(
    settings: &Settings,
) -> Result<Arc<dyn kubesurge_provider::NodeExec>, WiringError> {
    use crate::exec::{ExecSettingsError, LocalExec, SshConfig, SshExec};
    use crate::settings::ExecMethod;
    match settings.control_plane.exec {
        Some(ExecMethod::Ssh) => Ok(Arc::new(SshExec::new(SshConfig::from_settings(
            &settings.control_plane.ssh,
        )?))),
        Some(ExecMethod::Local) => Ok(Arc::new(LocalExec::new())),
        Some(ExecMethod::Sim) => sim_exec(settings),
        #[cfg(feature = "aws")]
        Some(ExecMethod::Ssm) => Ok(Arc::new(kubesurge_aws::SsmExec::new(
            // The control plane runs where the cluster's aws pools do.
            settings.pools.iter().find_map(|pool| match &pool.provider {
                PoolProvider::Aws(aws) => Some(aws.region.as_str()),
                _ => None,
            }),
            kubesurge_aws::ClientOptions::from_env(),
        ))),
        #[cfg(not(feature = "aws"))]
        Some(ExecMethod::Ssm) => Err(ExecSettingsError::Unavailable { method: "ssm" }.into()),
        None => Err(ExecSettingsError::NoMethod.into()),
    }
}

/// The simulated machines are reached through the sim cloud the pools use.
#[cfg(feature = "sandbox")]
fn sim_exec(settings: &Settings) -> Result<Arc<dyn kubesurge_provider::NodeExec>, WiringError> {
    let endpoint = settings
        .pools
        .iter()
        .find_map(|pool| match &pool.provider {
            PoolProvider::Sim(sim) => Some(sim.endpoint.clone()),
            _ => None,
        })
        .ok_or(WiringError::SimExecWithoutSimPool)?;
    let cluster = settings.cluster_name.clone().unwrap_or_default();
    Ok(Arc::new(kubesurge_sim::cloud::SimProvider::new(
        &endpoint, &cluster,
    )))
}

#[cfg(not(feature = "sandbox"))]
fn sim_exec(_settings: &Settings) -> Result<Arc<dyn kubesurge_provider::NodeExec>, WiringError> {
    Err(WiringError::SimExecWithoutSimPool)
}

/// The engine's configuration and each pool's provider.
pub fn engine_config(
    settings: &Settings,
    purpose: &'static str,
) -> Result<EngineConfig, WiringError> {
    let cluster = settings
        .cluster_name
        .clone()
        .ok_or(WiringError::NoClusterName(purpose))?;
    if settings.pools.is_empty() {
        return Err(WiringError::NoPools(purpose));
    }
    let pools = settings
        .pools
        .iter()
        .map(|pool| pool_config(&cluster, pool))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(EngineConfig {
        cluster,
        pools,
        drain: DrainPolicy {
            on_timeout: settings.drain.on_timeout,
            unmanaged: settings.drain.unmanaged_pods,
            concurrency: DEFAULT_EVICTION_CONCURRENCY,
        },
        drain_timeout: settings.drain.timeout,
        token_ttl: settings.join.token_ttl,
        new_node_timeout: settings.health.new_node_timeout,
        settle: settings.health.settle,
        max_launch_attempts: DEFAULT_LAUNCH_ATTEMPTS,
        health_gate_timeout: settings
            .health
            .new_node_timeout
            .max(Duration::from_secs(60)),
    })
}

fn pool_config(cluster: &str, pool: &Pool) -> Result<PoolConfig, WiringError> {
    let (provider, provider_id_script) = provider_for(cluster, pool)?;
    Ok(PoolConfig {
        name: pool.name.clone(),
        selector: pool.selector.clone(),
        max_surge: pool.max_surge,
        max_unavailable: pool.max_unavailable,
        node_labels: pool.node_labels.clone(),
        kubelet_extra_args: pool.kubelet_extra_args.clone(),
        node_taints: pool
            .node_taints
            .iter()
            .map(|t| Taint {
                key: t.key.clone(),
                value: (!t.value.is_empty()).then(|| t.value.clone()),
                effect: t.effect.as_str().to_string(),
                time_added: None,
            })
            .collect(),
        provider,
        provider_id_script,
    })
}

fn provider_for(
    cluster: &str,
    pool: &Pool,
) -> Result<(Arc<dyn CloudProvider>, String), WiringError> {
    match &pool.provider {
        #[cfg(feature = "sandbox")]
        PoolProvider::Sim(sim) => Ok((
            Arc::new(kubesurge_sim::cloud::SimProvider::new(
                &sim.endpoint,
                cluster,
            )),
            SIM_PROVIDER_ID_SCRIPT.to_string(),
        )),
        #[cfg(not(feature = "sandbox"))]
        PoolProvider::Sim(_) => {
            let _ = cluster;
            Err(WiringError::ProviderUnavailable {
                pool: pool.name.clone(),
                provider: "sim",
            })
        }
        #[cfg(feature = "aws")]
        PoolProvider::Aws(aws) => Ok((
            Arc::new(kubesurge_aws::AwsProvider::new(
                cluster,
                aws_pool_config(aws),
                kubesurge_aws::ClientOptions::from_env(),
            )),
            AWS_PROVIDER_ID_SCRIPT.to_string(),
        )),
        #[cfg(not(feature = "aws"))]
        PoolProvider::Aws(_) => {
            let _ = AWS_PROVIDER_ID_SCRIPT;
            Err(WiringError::ProviderUnavailable {
                pool: pool.name.clone(),
                provider: "aws",
            })
        }
    }
}

/// The aws provider's view of `pools[].aws`.
#[cfg(feature = "aws")]
fn aws_pool_config(aws: &crate::settings::AwsPool) -> kubesurge_aws::AwsPoolConfig {
    use crate::settings::{ImageSource, LaunchTemplateRef};
    kubesurge_aws::AwsPoolConfig {
        region: Some(aws.region.clone()),
        launch_template: match &aws.launch_template.template {
            LaunchTemplateRef::Name(name) => kubesurge_aws::TemplateRef::Name(name.clone()),
            LaunchTemplateRef::Id(id) => kubesurge_aws::TemplateRef::Id(id.clone()),
        },
        template_version: aws.launch_template.version.as_ec2(),
        image: match &aws.image {
            ImageSource::Id(id) => kubesurge_aws::ImageSource::Id(id.clone()),
            ImageSource::Lookup { owners, filters } => kubesurge_aws::ImageSource::Lookup {
                owners: owners.clone(),
                filters: filters.clone(),
            },
        },
        subnets: aws.subnets.clone(),
    }
}

/// The simulated machines read their providerID from the simulated
/// metadata service the same way.
#[cfg(feature = "sandbox")]
const SIM_PROVIDER_ID_SCRIPT: &str = r#"  cat /run/kubesurge-sim/provider-id"#;
