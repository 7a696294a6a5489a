//! `kubesurge init`: from a running cluster and the cloud behind it, a
//! proposed `RotationConfig`, and (when asked) the tags that make its
//! instances kubesurge's.
//!
//! - Every worker Node (control-plane nodes are left out) is mapped to its
//!   machine by the provider its providerID names ([`Discovery`]); a node
//!   that maps to nothing, or to several, is listed with the reason.
//! - [`propose`] groups the machines into pools and picks selectors;
//!   each provider writes its pool section (template, image rule).
//! - [`render`] writes the commented config, which the settings
//!   validation must accept as is.
//! - [`tag_plan`] lists exactly what `--tag` changes.

pub mod propose;
pub mod render;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::ListParams;
use kube::{Api, Client};
use kubesurge_provider::discovery::{
    Discovery, GroupKind, NodeMachine, PoolMachine, SectionProposal, TagChange, TagTarget,
};
use kubesurge_provider::{NodeRef, ProviderError, ProviderKind, tags};
use thiserror::Error;

use crate::inventory::is_control_plane;
use crate::kube::nodes;
use crate::settings::{self, Overrides, SettingsError, SettingsSource};
use propose::{Mapped, PoolDraft, Worker};

/// A provider this build can discover with, and its providerID rule.
pub struct DiscoveryProvider {
    pub kind: ProviderKind,
    pub discovery: Arc<dyn Discovery>,
}

#[derive(Debug, Error)]
pub enum InitError {
    #[error("cannot read the cluster's {what}: {source}")]
    Kube {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("{provider}: {source}")]
    Provider {
        provider: String,
        #[source]
        source: ProviderError,
    },
    #[error("no cluster name: kube-system/kubeadm-config has no clusterName; pass --cluster-name")]
    NoClusterName,
    #[error("cluster name {name:?}: {problem}")]
    BadClusterName { name: String, problem: String },
    /// The rendered config fails kubesurge's own validation: a bug of
    /// `init`, never written.
    #[error("the proposed config does not pass validation (a bug of kubesurge init): {0}")]
    Invalid(#[source] SettingsError),
    #[error("cannot label node {node}: {source}")]
    Label {
        node: String,
        #[source]
        source: kube::Error,
    },
}

/// One proposed pool: the draft and its provider's section.
#[derive(Clone, Debug, PartialEq)]
pub struct ProposedPool {
    pub draft: PoolDraft,
    /// What grouped it (`Auto Scaling group workers`), for people.
    pub origin: String,
    pub section: SectionProposal,
}

/// What `init` found.
#[derive(Clone, Debug, PartialEq)]
pub struct Proposal {
    pub server: String,
    pub cluster: String,
    /// Where the cluster name came from, for its comment.
    pub cluster_source: String,
    pub pools: Vec<ProposedPool>,
    /// Nodes in no pool, with the reason.
    pub unmapped: Vec<(String, String)>,
}

impl Proposal {
    /// The config text, checked by the settings validation.
    pub fn config(&self, providers: &[ProviderKind]) -> Result<String, InitError> {
        let text = render::render(self);
        settings::parse(
            &text,
            SettingsSource::File("kubesurge-init.yaml".into()),
            &Overrides::default(),
            providers,
        )
        .map_err(InitError::Invalid)?;
        Ok(text)
    }
}

/// `clusterName` of kubeadm's ClusterConfiguration in
/// `kube-system/kubeadm-config` (what kubeadm names the cluster).
async fn kubeadm_cluster_name(client: &Client) -> Result<Option<String>, InitError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    let config = api
        .get_opt("kubeadm-config")
        .await
        .map_err(|source| InitError::Kube {
            what: "kube-system/kubeadm-config",
            source,
        })?;
    let text = config
        .and_then(|c| c.data)
        .and_then(|d| d.get("ClusterConfiguration").cloned());
    Ok(text.and_then(|t| {
        t.lines().find_map(|l| {
            l.strip_prefix("clusterName:")
                .map(|v| v.trim().trim_matches('"').to_string())
                .filter(|v| !v.is_empty())
        })
    }))
}

fn worker(node: &Node) -> Worker {
    Worker {
        name: nodes::name(node).to_string(),
        labels: node.metadata.labels.clone().unwrap_or_default(),
        kubelet_version: node
            .status
            .as_ref()
            .and_then(|s| s.node_info.as_ref())
            .map(|i| i.kubelet_version.clone())
            .unwrap_or_default(),
    }
}

fn node_ref(node: &Node) -> NodeRef {
    NodeRef {
        name: nodes::name(node).to_string(),
        provider_id: nodes::provider_id(node)
            .filter(|p| !p.is_empty())
            .map(str::to_string),
        internal_ip: nodes::internal_ip(node).map(str::to_string),
    }
}

/// Which provider a node belongs to: the one whose providerID rule reads
/// its providerID; without one, the only provider there is.
fn provider_for<'p>(
    node: &NodeRef,
    providers: &'p [DiscoveryProvider],
) -> Result<&'p DiscoveryProvider, String> {
    match node.provider_id.as_deref() {
        Some(pid) => providers
            .iter()
            .find(|p| (p.kind.provider_id.instance_id)(pid).is_some())
            .ok_or_else(|| {
                format!("no provider of this build discovers instances of its providerID {pid}")
            }),
        None => match providers {
            [only] => Ok(only),
            _ => Err("it has no providerID, and more than one provider could own it".into()),
        },
    }
}

/// Read the cluster and the cloud; change nothing.
pub async fn discover(
    client: &Client,
    server: &str,
    providers: &[DiscoveryProvider],
    cluster_name: Option<String>,
) -> Result<Proposal, InitError> {
    let (cluster, cluster_source) = match cluster_name {
        Some(name) => (name, "from --cluster-name".to_string()),
        None => (
            kubeadm_cluster_name(client)
                .await?
                .ok_or(InitError::NoClusterName)?,
            "kubeadm's clusterName (kube-system/kubeadm-config)".to_string(),
        ),
    };
    settings::names::check_dns_label(&cluster).map_err(|problem| InitError::BadClusterName {
        name: cluster.clone(),
        problem,
    })?;
    let api: Api<Node> = Api::all(client.clone());
    let all = api
        .list(&ListParams::default())
        .await
        .map_err(|source| InitError::Kube {
            what: "nodes",
            source,
        })?;
    let workers: Vec<&Node> = all.items.iter().filter(|n| !is_control_plane(n)).collect();
    let all_workers: Vec<Worker> = workers.iter().map(|n| worker(n)).collect();

    let mut unmapped = Vec::new();
    let mut by_provider: BTreeMap<String, Vec<(NodeRef, Worker)>> = BTreeMap::new();
    for node in &workers {
        let r = node_ref(node);
        match provider_for(&r, providers) {
            Ok(p) => by_provider
                .entry(p.kind.name.to_string())
                .or_default()
                .push((r, worker(node))),
            Err(reason) => unmapped.push((r.name, reason)),
        }
    }
    let mut mapped = Vec::new();
    for (name, nodes) in &by_provider {
        let Some(p) = providers.iter().find(|p| p.kind.name == name) else {
            continue;
        };
        let refs: Vec<NodeRef> = nodes.iter().map(|(r, _)| r.clone()).collect();
        let found = p
            .discovery
            .machines(&refs)
            .await
            .map_err(|source| InitError::Provider {
                provider: name.clone(),
                source,
            })?;
        for (NodeMachine { node, found }, (_, w)) in found.into_iter().zip(nodes) {
            match found {
                Ok(machine) => mapped.push(Mapped {
                    worker: w.clone(),
                    provider: name.clone(),
                    machine,
                }),
                Err(reason) => unmapped.push((node, reason)),
            }
        }
    }

    let mut pools = Vec::new();
    for draft in propose::draft_pools(mapped, &all_workers) {
        let Some(p) = providers.iter().find(|p| p.kind.name == draft.provider) else {
            continue;
        };
        let machines: Vec<PoolMachine> = draft
            .members
            .iter()
            .map(|m| PoolMachine {
                machine: m.machine.clone(),
                kubelet_version: m.worker.kubelet_version.clone(),
            })
            .collect();
        let section = match p.discovery.propose(&machines).await {
            Ok(section) => section,
            Err(ProviderError::InvalidConfig { message }) => {
                unmapped.extend(
                    draft
                        .members
                        .iter()
                        .map(|m| (m.worker.name.clone(), message.clone())),
                );
                continue;
            }
            Err(source) => {
                return Err(InitError::Provider {
                    provider: draft.provider.clone(),
                    source,
                });
            }
        };
        let origin = match &draft.key {
            propose::GroupingKey::Cloud(_, g) => format!("{} {}", g.kind.describe(), g.name),
            propose::GroupingKey::Labels(..) => "nodes with no cloud group, by their labels".into(),
        };
        pools.push(ProposedPool {
            draft,
            origin,
            section,
        });
    }
    unmapped.sort();
    Ok(Proposal {
        server: server.to_string(),
        cluster,
        cluster_source,
        pools,
        unmapped,
    })
}

/// What `--tag` changes, per provider: every mapped instance gets the
/// cluster and pool tags, and so does each Auto Scaling group.
pub fn tag_plan(proposal: &Proposal) -> BTreeMap<String, Vec<TagChange>> {
    let mut plan: BTreeMap<String, Vec<TagChange>> = BTreeMap::new();
    for pool in &proposal.pools {
        let d = &pool.draft;
        let wanted = BTreeMap::from([
            (tags::CLUSTER.to_string(), proposal.cluster.clone()),
            (tags::POOL.to_string(), d.name.clone()),
        ]);
        let changes = plan.entry(d.provider.clone()).or_default();
        if let propose::GroupingKey::Cloud(_, group) = &d.key
            && group.kind == GroupKind::ScalingGroup
        {
            changes.push(TagChange {
                target: TagTarget::Group(group.clone()),
                tags: wanted.clone(),
            });
        }
        for m in &d.members {
            let missing: BTreeMap<String, String> = wanted
                .iter()
                .filter(|(k, v)| m.machine.instance.tag(k) != Some(v.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !missing.is_empty() {
                changes.push(TagChange {
                    target: TagTarget::Instance(m.machine.instance.id.clone()),
                    tags: missing,
                });
            }
        }
    }
    plan.retain(|_, changes| !changes.is_empty());
    plan
}

/// The nodes `--tag` labels: those of pools selected by the label
/// `init` proposed, which they do not carry yet.
pub fn label_plan(proposal: &Proposal) -> Vec<(String, String, String)> {
    proposal
        .pools
        .iter()
        .filter(|p| p.draft.needs_label)
        .flat_map(|p| {
            p.draft.members.iter().map(|m| {
                (
                    m.worker.name.clone(),
                    propose::POOL_LABEL.to_string(),
                    p.draft.name.clone(),
                )
            })
        })
        .collect()
}

/// Apply [`tag_plan`] and [`label_plan`].
pub async fn apply_tags(
    client: &Client,
    providers: &[DiscoveryProvider],
    proposal: &Proposal,
) -> Result<(), InitError> {
    for (name, changes) in tag_plan(proposal) {
        let Some(p) = providers.iter().find(|p| p.kind.name == name) else {
            continue;
        };
        p.discovery
            .tag(&changes)
            .await
            .map_err(|source| InitError::Provider {
                provider: name.clone(),
                source,
            })?;
    }
    let ops = nodes::NodeOps::new(client.clone());
    for (node, key, value) in label_plan(proposal) {
        ops.label(&node, &[(key.as_str(), Some(value.as_str()))])
            .await
            .map_err(|source| InitError::Label {
                node: node.clone(),
                source,
            })?;
    }
    Ok(())
}
