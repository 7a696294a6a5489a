//! From validated settings to a working engine: the one place that knows
//! the concrete providers. Adding a provider is one line of [`PROVIDERS`].

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Taint;
use kubesurge_provider::config::FieldError;
use kubesurge_provider::{CloudProvider, NodeExec, ProviderIdRule, ProviderKind};
use thiserror::Error;

use crate::exec::{ExecSettingsError, LocalExec, SshConfig, SshExec};
use crate::kube::drain::{DEFAULT_EVICTION_CONCURRENCY, DrainPolicy};
use crate::rotation::config::DEFAULT_LAUNCH_ATTEMPTS;
use crate::rotation::{EngineConfig, PoolConfig};
use crate::settings::{ExecMethod, Pool, ProviderSection, Settings};

/// Every provider this build of kubesurge has, in the order the
/// configuration's messages list them. Each provider crate exports its
/// [`ProviderKind`]: its pool section, its providerID rule.
pub const PROVIDERS: &[ProviderKind] = &[
    #[cfg(feature = "aws")]
    kubesurge_aws::KIND,
    #[cfg(feature = "sandbox")]
    kubesurge_sim::KIND,
];

/// Every provider this build can discover an existing fleet with
/// (`kubesurge init`), each with its providerID rule.
pub fn discoveries() -> Vec<crate::init::DiscoveryProvider> {
    vec![
        #[cfg(feature = "aws")]
        crate::init::DiscoveryProvider {
            kind: kubesurge_aws::KIND,
            discovery: Arc::new(kubesurge_aws::AwsDiscovery::new(
                kubesurge_aws::ClientOptions::from_env(),
            )),
        },
    ]
}

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
    /// A pool's provider is not one of [`PROVIDERS`] (settings validated
    /// with other providers than this build's).
    #[error("pools[{pool}]: provider {provider} is not available in this build of kubesurge")]
    ProviderUnavailable { pool: String, provider: String },
    /// A provider refused a section the settings validation accepted.
    #[error("{}", field_problems(.0))]
    InvalidSection(Vec<FieldError>),
    /// `controlPlane.exec` / `controlPlane.ssh` give no way to reach the
    /// control-plane nodes.
    #[error(transparent)]
    NodeExec(#[from] ExecSettingsError),
}

fn field_problems(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// How scripts reach the control-plane nodes (`controlPlane.exec`).
pub fn node_exec(settings: &Settings) -> Result<Arc<dyn NodeExec>, WiringError> {
    match settings.control_plane.exec {
        Some(ExecMethod::Ssh) => Ok(Arc::new(SshExec::new(SshConfig::from_settings(
            &settings.control_plane.ssh,
        )?))),
        Some(ExecMethod::Local) => match settings.control_plane.node {
            Some(_) => Ok(Arc::new(LocalExec::new())),
            None => Err(ExecSettingsError::NoLocalNode.into()),
        },
        Some(ExecMethod::Sim) => sim_exec(settings),
        Some(ExecMethod::Ssm) => ssm_exec(settings),
        None => Err(ExecSettingsError::NoMethod.into()),
    }
}

/// The first pool's section of provider `kind`.
fn first_section<'s>(settings: &'s Settings, kind: &str) -> Option<&'s ProviderSection> {
    settings
        .pools
        .iter()
        .map(|pool| &pool.provider)
        .find(|section| section.kind == kind)
}

/// SSM reaches the control plane in the region of the cluster's aws pools
/// (or the environment's, without one).
#[cfg(feature = "aws")]
fn ssm_exec(settings: &Settings) -> Result<Arc<dyn NodeExec>, WiringError> {
    let region = match first_section(settings, kubesurge_aws::KIND.name) {
        Some(section) => {
            kubesurge_aws::parse_pool_config(&section.config, &section.path)
                .map_err(WiringError::InvalidSection)?
                .region
        }
        None => None,
    };
    Ok(Arc::new(kubesurge_aws::SsmExec::new(
        region.as_deref(),
        kubesurge_aws::ClientOptions::from_env(),
    )))
}

#[cfg(not(feature = "aws"))]
fn ssm_exec(_settings: &Settings) -> Result<Arc<dyn NodeExec>, WiringError> {
    Err(ExecSettingsError::Unavailable { method: "ssm" }.into())
}

/// The simulated machines are reached through the sim cloud the pools use.
#[cfg(feature = "sandbox")]
fn sim_exec(settings: &Settings) -> Result<Arc<dyn NodeExec>, WiringError> {
    let section = first_section(settings, kubesurge_sim::KIND.name)
        .ok_or(WiringError::SimExecWithoutSimPool)?;
    let sim = kubesurge_sim::parse_pool_config(&section.config, &section.path)
        .map_err(WiringError::InvalidSection)?;
    let cluster = settings.cluster_name.clone().unwrap_or_default();
    Ok(Arc::new(kubesurge_sim::SimProvider::new(
        &sim.endpoint,
        &cluster,
    )))
}

#[cfg(not(feature = "sandbox"))]
fn sim_exec(_settings: &Settings) -> Result<Arc<dyn NodeExec>, WiringError> {
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
            local_storage: settings.drain.local_storage,
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
        own_node: crate::rotation::own_node::from_env(),
    })
}

fn pool_config(cluster: &str, pool: &Pool) -> Result<PoolConfig, WiringError> {
    let (provider, provider_id) = provider_for(cluster, pool)?;
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
        provider_id_script: provider_id.script.to_string(),
        instance_id_of: provider_id.instance_id,
    })
}

/// The pool's provider, handed its section, and its providerID rule.
fn provider_for(
    cluster: &str,
    pool: &Pool,
) -> Result<(Arc<dyn CloudProvider>, ProviderIdRule), WiringError> {
    let section = &pool.provider;
    let kind = PROVIDERS
        .iter()
        .find(|kind| kind.name == section.kind)
        .ok_or_else(|| WiringError::ProviderUnavailable {
            pool: pool.name.clone(),
            provider: section.kind.clone(),
        })?;
    let provider = (kind.pool_provider)(cluster, &section.config, &section.path)
        .map_err(WiringError::InvalidSection)?;
    Ok((provider, kind.provider_id))
}

#[cfg(all(test, feature = "aws", feature = "sandbox"))]
mod settings_tests;

#[cfg(all(test, feature = "aws", feature = "sandbox"))]
mod tests {
    use super::*;
    use crate::settings::{Overrides, SettingsSource, parse};

    #[test]
    fn each_pool_is_handed_to_its_provider_with_its_provider_id_rule() {
        let yaml = "apiVersion: kubesurge.io/v1alpha1\nkind: RotationConfig\ncluster: {name: c}\n\
                    pools:\n  - {name: a, selector: {pool: a}, provider: aws, aws: \
                    {region: eu-west-1, launchTemplate: {name: lt}, image: {id: ami-1}}}\n  \
                    - {name: b, selector: {pool: b}, provider: sim, sim: {endpoint: \"http://127.0.0.1:9\"}}\n";
        let settings =
            parse(yaml, SettingsSource::Text, &Overrides::default(), PROVIDERS).expect("valid");
        let config = engine_config(&settings, "test").expect("wired");
        let wired: Vec<(&str, &str, &str)> = config
            .pools
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.provider.name(),
                    p.provider_id_script.as_str(),
                )
            })
            .collect();
        assert_eq!(
            wired,
            [
                ("a", "aws", kubesurge_aws::KIND.provider_id.script),
                ("b", "sim", kubesurge_sim::KIND.provider_id.script),
            ]
        );
        let ids: Vec<Option<&str>> = config
            .pools
            .iter()
            .map(|p| (p.instance_id_of)("aws:////i-0abc"))
            .collect();
        assert_eq!(ids, [Some("i-0abc"), None]);
    }

    #[test]
    fn settings_of_another_build_name_the_missing_provider() {
        let yaml = "apiVersion: kubesurge.io/v1alpha1\nkind: RotationConfig\ncluster: {name: c}\n\
                    pools:\n  - {name: a, selector: {pool: a}, provider: sim, sim: {endpoint: \"http://h:1\"}}\n";
        let only_sim = [kubesurge_sim::KIND];
        let mut settings =
            parse(yaml, SettingsSource::Text, &Overrides::default(), &only_sim).expect("valid");
        settings.pools[0].provider.kind = "gcp".into();
        let error = engine_config(&settings, "test").err().expect("refused");
        assert_eq!(
            error.to_string(),
            "pools[a]: provider gcp is not available in this build of kubesurge"
        );
    }
}
