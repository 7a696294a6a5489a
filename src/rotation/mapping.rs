//! Before any launch, every old node a run selected must map to exactly one
//! instance this run may terminate: one carrying this cluster's and this
//! pool's tags. A node that does not is refused with its reason (exit 2,
//! nothing changed) instead of being surged and drained, and then either
//! failing at termination or — worse — having only its Node deleted while
//! its VM runs on and its kubelet registers it again.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use kubesurge_provider::{Instance, NodeRef, ProviderError, tags};

use super::config::PoolConfig;
use crate::kube::nodes;

/// Why an old node cannot be replaced by this run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unmappable {
    /// No instance has the node's providerID or, without one, its address.
    NoInstance {
        provider_id: Option<String>,
        address: Option<String>,
    },
    /// Its instance lacks a tag this run requires (or has another value).
    Tag {
        instance: String,
        key: &'static str,
        wanted: String,
        found: Option<String>,
    },
    /// The provider could not tell (several instances with its address, a
    /// denied lookup…).
    Lookup(String),
}

impl std::fmt::Display for Unmappable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unmappable::NoInstance {
                provider_id,
                address,
            } => write!(
                f,
                "no instance found (providerID {}, address {})",
                provider_id.as_deref().unwrap_or("none"),
                address.as_deref().unwrap_or("none")
            ),
            Unmappable::Tag {
                instance,
                key,
                wanted,
                found: None,
            } => write!(
                f,
                "its instance {instance} has no {key} tag; kubesurge terminates only instances tagged {key}={wanted} (tag it, or take the node out of the pool's selector)"
            ),
            Unmappable::Tag {
                instance,
                key,
                wanted,
                found: Some(found),
            } => write!(
                f,
                "its instance {instance} is tagged {key}={found}, not {wanted} (tag it {key}={wanted}, or take the node out of the pool's selector)"
            ),
            Unmappable::Lookup(message) => write!(f, "{message}"),
        }
    }
}

/// Whether this run may terminate `instance` as a member of `pool`.
pub fn may_terminate(instance: &Instance, cluster: &str, pool: &str) -> Result<(), Unmappable> {
    for (key, wanted) in [(tags::CLUSTER, cluster), (tags::POOL, pool)] {
        let found = instance.tag(key);
        if found != Some(wanted) {
            return Err(Unmappable::Tag {
                instance: instance.id.0.clone(),
                key,
                wanted: wanted.to_string(),
                found: found.map(str::to_string),
            });
        }
    }
    Ok(())
}

/// The instance of each of `old` nodes, found among the pool's tagged
/// instances (`listed`, one paged list) or, for a node not among them, by
/// asking the provider — whose answer then says why the node cannot be
/// replaced. `may_be_gone` names nodes whose instance a crashed run
/// already terminated (their slot resumes at termination): no instance is
/// fine for those.
pub async fn map_old_instances(
    pool: &PoolConfig,
    cluster: &str,
    old: &[std::sync::Arc<Node>],
    listed: &[Instance],
    may_be_gone: impl Fn(&str) -> bool,
) -> (BTreeMap<String, Instance>, Vec<(String, Unmappable)>) {
    let mut mapped = BTreeMap::new();
    let mut refused = Vec::new();
    for node in old {
        let name = nodes::name(node).to_string();
        let provider_id = nodes::provider_id(node).filter(|p| !p.is_empty());
        // The pool's provider reads the instance id from every providerID
        // form it knows.
        let instance_id = provider_id.and_then(pool.instance_id_of);
        if let Some(instance) = instance_id.and_then(|id| {
            listed
                .iter()
                .find(|i| i.id.0 == id && !i.state.is_going_away())
        }) {
            mapped.insert(name, instance.clone());
            continue;
        }
        let found = pool
            .provider
            .instance_for(&NodeRef {
                name: name.clone(),
                provider_id: provider_id.map(str::to_string),
                internal_ip: nodes::internal_ip(node).map(str::to_string),
            })
            .await;
        match found {
            Ok(Some(instance)) => match may_terminate(&instance, cluster, &pool.name) {
                Ok(()) => {
                    mapped.insert(name, instance);
                }
                Err(problem) => refused.push((name, problem)),
            },
            Ok(None) if may_be_gone(&name) => {}
            Ok(None) => refused.push((
                name,
                Unmappable::NoInstance {
                    provider_id: provider_id.map(str::to_string),
                    address: nodes::internal_ip(node).map(str::to_string),
                },
            )),
            Err(ProviderError::InvalidConfig { message }) => {
                refused.push((name, Unmappable::Lookup(message)))
            }
            Err(other) => refused.push((name, Unmappable::Lookup(other.to_string()))),
        }
    }
    (mapped, refused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubesurge_provider::{InstanceId, InstanceState};

    fn instance(tags: &[(&str, &str)]) -> Instance {
        Instance {
            id: InstanceId("i-0abc".into()),
            state: InstanceState::Running,
            zone: "eu-west-1a".into(),
            subnet: None,
            image: None,
            private_ip: Some("10.0.0.5".into()),
            provider_id: "aws:///eu-west-1a/i-0abc".into(),
            launched_at: None,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn only_instances_tagged_for_the_cluster_and_pool_may_be_terminated() {
        let ok = instance(&[(tags::CLUSTER, "prod"), (tags::POOL, "general")]);
        assert_eq!(may_terminate(&ok, "prod", "general"), Ok(()));

        let untagged = instance(&[]);
        let problem = may_terminate(&untagged, "prod", "general").unwrap_err();
        assert!(
            problem
                .to_string()
                .contains("has no kubesurge.io/cluster tag"),
            "{problem}"
        );

        let other_pool = instance(&[(tags::CLUSTER, "prod"), (tags::POOL, "gpu")]);
        let problem = may_terminate(&other_pool, "prod", "general").unwrap_err();
        assert!(
            problem
                .to_string()
                .contains("is tagged kubesurge.io/pool=gpu, not general"),
            "{problem}"
        );
    }
}
