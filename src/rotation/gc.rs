//! Garbage collection (design §3, `kubesurge gc`): instances kubesurge
//! launched for this cluster that are no node — a crashed run's leftovers.
//! The caller holds the run lock while terminating, so no live run's
//! instance is touched.

use crate::kube::fence::Fence;
use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::ListParams;
use kube::{Api, Client};
use kubesurge_provider::{Instance, InstanceId, PoolRef, ProviderError, tags};
use thiserror::Error;

use super::config::EngineConfig;
use super::instances::{DeleteError, delete_until_gone, provider_retry};
use crate::kube::nodes;
use crate::kube::pages::list_all;
use crate::kube::retry::with_retry;

/// How long gc waits for one instance to report gone.
pub const TERMINATE_WAIT: Duration = Duration::from_secs(300);

/// An instance kubesurge launched that is no node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leftover {
    pub pool: String,
    pub instance: InstanceId,
    /// The run that launched it (tag `kubesurge.io/run`).
    pub run: String,
    /// The node it was to replace (tag `kubesurge.io/replaces`), if tagged.
    pub replaces: Option<String>,
}

impl fmt::Display for Leftover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (pool {}, run {}, replacing {})",
            self.instance,
            self.pool,
            self.run,
            self.replaces.as_deref().unwrap_or("?")
        )
    }
}

/// Why the leftovers could not be found.
#[derive(Debug, Error)]
pub enum GcError {
    #[error("listing nodes: {0}")]
    ListNodes(#[source] kube::Error),
    #[error("pool {pool}: {source}")]
    ListInstances {
        pool: String,
        #[source]
        source: ProviderError,
    },
    /// What a run changed at a pool's provider (an Auto Scaling group's
    /// `MaxSize` and processes) could not be given back.
    #[error("pool {pool}: cannot restore what a run changed at the provider: {source}")]
    Restore {
        pool: String,
        #[source]
        source: ProviderError,
    },
}

/// What a collection did.
#[derive(Debug, Default)]
pub struct Collected {
    pub terminated: Vec<Leftover>,
    pub failed: Vec<(Leftover, DeleteError)>,
}

/// The Nodes of the cluster as gc needs them: the instance ids their
/// providerIDs name (in any form the pools' providers know), and the names
/// of those without a providerID yet (matched by the instance's Name).
#[derive(Debug, Default)]
pub struct NodesSeen {
    pub instance_ids: BTreeSet<String>,
    pub unidentified_names: BTreeSet<String>,
}

impl NodesSeen {
    fn is_node(&self, instance: &Instance) -> bool {
        self.instance_ids.contains(&instance.id.0)
            || instance
                .tag(tags::NAME)
                .is_some_and(|name| self.unidentified_names.contains(name))
    }
}

/// The leftover among `pool`'s instances, or `None`: one that was not
/// launched by kubesurge (no run tag), is already going away, or is a node.
/// Pure.
pub fn leftover(pool: &str, instance: &Instance, nodes: &NodesSeen) -> Option<Leftover> {
    let run = instance.tag(tags::RUN)?;
    if instance.state.is_going_away() || nodes.is_node(instance) {
        return None;
    }
    Some(Leftover {
        pool: pool.to_string(),
        instance: instance.id.clone(),
        run: run.to_string(),
        replaces: instance.tag(tags::REPLACES).map(str::to_string),
    })
}

/// Every leftover of every pool in `config`, pool by pool.
pub async fn find(client: &Client, config: &EngineConfig) -> Result<Vec<Leftover>, GcError> {
    let api: Api<Node> = Api::all(client.clone());
    let params = ListParams::default();
    let mut seen = NodesSeen::default();
    for node in with_retry("list nodes", || list_all(&api, &params))
        .await
        .map_err(GcError::ListNodes)?
    {
        match nodes::provider_id(&node).filter(|p| !p.is_empty()) {
            Some(provider_id) => {
                if let Some(id) = config
                    .pools
                    .iter()
                    .find_map(|pool| (pool.instance_id_of)(provider_id))
                {
                    seen.instance_ids.insert(id.to_string());
                }
            }
            None => {
                seen.unidentified_names
                    .insert(nodes::name(&node).to_string());
            }
        }
    }
    let mut found = Vec::new();
    for pool in &config.pools {
        let pool_ref = PoolRef {
            cluster: config.cluster.clone(),
            pool: pool.name.clone(),
        };
        let instances = provider_retry("list", || pool.provider.list(&pool_ref))
            .await
            .map_err(|source| GcError::ListInstances {
                pool: pool.name.clone(),
                source,
            })?;
        found.extend(
            instances
                .iter()
                .filter_map(|i| leftover(&pool.name, i, &seen)),
        );
    }
    Ok(found)
}

/// Give back, pool by pool, what runs changed at the providers and
/// recorded there (an Auto Scaling group's `MaxSize` and suspended
/// processes, [`kubesurge_provider::CloudProvider::restore_pool`]): a run
/// that crashed or was abandoned may have left them. Call it under the run
/// lock. Stops at the first pool that cannot be restored.
pub async fn restore_pools(config: &EngineConfig) -> Result<(), GcError> {
    for pool in &config.pools {
        let pool_ref = PoolRef {
            cluster: config.cluster.clone(),
            pool: pool.name.clone(),
        };
        provider_retry("restore pool", || pool.provider.restore_pool(&pool_ref))
            .await
            .map_err(|source| GcError::Restore {
                pool: pool.name.clone(),
                source,
            })?;
    }
    Ok(())
}

/// Terminate `leftovers`, each until gone or [`TERMINATE_WAIT`]; one that
/// fails does not stop the others.
///
/// Stops at once when `fence` is raised (this command no longer holds the
/// run lock): what is left stays for the next collection.
pub async fn terminate(
    config: &EngineConfig,
    leftovers: Vec<Leftover>,
    fence: &Fence,
) -> Collected {
    let mut collected = Collected::default();
    for leftover in leftovers {
        if fence.is_raised() {
            break;
        }
        let Some(pool) = config.pools.iter().find(|p| p.name == leftover.pool) else {
            continue;
        };
        match delete_until_gone(pool.provider.as_ref(), &leftover.instance, TERMINATE_WAIT).await {
            Ok(()) => collected.terminated.push(leftover),
            Err(e) => collected.failed.push((leftover, e)),
        }
    }
    collected
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use kubesurge_provider::{DeleteStatus, InstanceState};

    use super::*;
    use crate::rotation::PoolConfig;
    use crate::rotation::instances::tests::Scripted;

    fn instance(id: &str, state: InstanceState, tags: &[(&str, &str)]) -> Instance {
        Instance {
            id: id.into(),
            state,
            zone: "z-a".into(),
            subnet: None,
            image: None,
            private_ip: None,
            provider_id: format!("sim:///z-a/{id}"),
            launched_at: None,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn only_running_instances_of_ours_that_are_no_node_are_leftovers() {
        let ours = [(tags::RUN, "r-1"), (tags::REPLACES, "w-1")];
        // A Node for i-node (whatever the form of its providerID), and one
        // without a providerID yet, named as instance i-5.
        let nodes = NodesSeen {
            instance_ids: BTreeSet::from(["i-node".to_string()]),
            unidentified_names: BTreeSet::from(["general-abcde".to_string()]),
        };
        let found = leftover(
            "general",
            &instance("i-1", InstanceState::Running, &ours),
            &nodes,
        );
        assert_eq!(
            found.map(|l| l.to_string()).as_deref(),
            Some("i-1 (pool general, run r-1, replacing w-1)")
        );
        for (name, i) in [
            ("not ours", instance("i-2", InstanceState::Running, &[])),
            (
                "going away",
                instance("i-3", InstanceState::ShuttingDown, &ours),
            ),
            ("a node", instance("i-node", InstanceState::Running, &ours)),
            (
                "a node without a providerID yet",
                instance(
                    "i-5",
                    InstanceState::Running,
                    &[(tags::RUN, "r-1"), (tags::NAME, "general-abcde")],
                ),
            ),
        ] {
            assert_eq!(leftover("general", &i, &nodes), None, "{name}");
        }
        let untagged = instance("i-4", InstanceState::Pending, &[(tags::RUN, "r-1")]);
        assert_eq!(
            leftover("general", &untagged, &nodes).unwrap().to_string(),
            "i-4 (pool general, run r-1, replacing ?)"
        );
    }

    fn engine_config(provider: Arc<Scripted>) -> EngineConfig {
        EngineConfig {
            cluster: "c".into(),
            pools: vec![PoolConfig {
                name: "general".into(),
                selector: BTreeMap::new(),
                max_surge: crate::plan::Budget::Count(1),
                max_unavailable: crate::plan::Budget::Count(0),
                node_labels: BTreeMap::new(),
                node_taints: Vec::new(),
                kubelet_extra_args: BTreeMap::new(),
                provider,
                provider_id_script: String::new(),
                instance_id_of: |p| p.rsplit('/').next(),
            }],
            drain: crate::kube::drain::DrainPolicy {
                on_timeout: crate::kube::drain::OnDrainTimeout::Fail,
                unmanaged: crate::kube::drain::UnmanagedPods::Fail,
                local_storage: crate::kube::drain::LocalStorage::Fail,
                concurrency: 1,
            },
            drain_timeout: Duration::from_secs(1),
            token_ttl: Duration::from_secs(1),
            new_node_timeout: Duration::from_secs(1),
            settle: Duration::from_secs(1),
            max_launch_attempts: 1,
            health_gate_timeout: Duration::from_secs(1),
            own_node: None,
        }
    }

    /// Against the emulator over HTTPS: the nodes come from the API server,
    /// the instances from the provider.
    #[tokio::test]
    async fn find_reports_only_our_instances_that_are_no_node() {
        use kube::Config;
        use kube::config::Kubeconfig;
        use kubesurge_testworld::apiserver::{self, ApiServerConfig, ClusterCa};
        use kubesurge_testworld::resources::NODES;
        use kubesurge_testworld::store::Store;

        let store = Store::new();
        let ca = Arc::new(ClusterCa::generate().unwrap());
        let server = apiserver::start(store.clone(), ca, ApiServerConfig::default())
            .await
            .unwrap();
        let node = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "general-1"},
            "spec": {"providerID": "sim:///z-a/i-node"},
        });
        store.create(&NODES, "", node).unwrap();
        let kubeconfig = Kubeconfig::from_yaml(&server.kubeconfig_yaml()).unwrap();
        let config = Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        let client = Client::try_from(config).unwrap();

        let ours = [(tags::RUN, "r-1"), (tags::REPLACES, "general-0")];
        let provider = Scripted {
            instances: vec![
                instance("i-node", InstanceState::Running, &ours),
                instance("i-left", InstanceState::Running, &ours),
                instance("i-foreign", InstanceState::Running, &[]),
            ],
            ..Scripted::default()
        };
        let found = find(&client, &engine_config(Arc::new(provider)))
            .await
            .unwrap();
        assert_eq!(
            found,
            [Leftover {
                pool: "general".into(),
                instance: "i-left".into(),
                run: "r-1".into(),
                replaces: Some("general-0".into()),
            }]
        );
    }

    #[tokio::test]
    async fn a_refused_termination_is_reported_and_the_others_go_on() {
        let provider = Arc::new(Scripted::answering([
            Err(ProviderError::Unauthorized {
                action: "ec2:TerminateInstances".into(),
                message: "denied".into(),
            }),
            Ok(DeleteStatus::InProgress),
            Ok(DeleteStatus::Gone),
        ]));
        let leftovers = ["i-1", "i-2"]
            .map(|id| Leftover {
                pool: "general".into(),
                instance: id.into(),
                run: "r-1".into(),
                replaces: None,
            })
            .to_vec();
        let collected = terminate(&engine_config(provider.clone()), leftovers, &Fence::new()).await;
        assert_eq!(collected.failed.len(), 1);
        assert_eq!(collected.failed[0].0.instance, "i-1".into());
        assert!(
            collected.failed[0]
                .1
                .to_string()
                .contains("ec2:TerminateInstances"),
            "{}",
            collected.failed[0].1
        );
        assert_eq!(
            collected
                .terminated
                .iter()
                .map(|l| l.instance.to_string())
                .collect::<Vec<_>>(),
            ["i-2"]
        );
        assert_eq!(provider.calls(), 3);
    }
}
