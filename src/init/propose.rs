//! From mapped workers to proposed pools (pure): group them (by Auto
//! Scaling group, else launch template, else labels), name each pool, and
//! choose a selector that selects exactly its nodes among every worker.

use std::collections::{BTreeMap, BTreeSet};

use kubesurge_provider::discovery::{GroupKind, Machine, MachineGroup};

use crate::settings::names::check_kubelet_may_set;

/// The label kubesurge proposes when no existing label tells a pool's
/// nodes from the others.
pub const POOL_LABEL: &str = "kubesurge.io/pool";

/// Labels that describe one node, never a pool of them.
const PER_NODE_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "node.kubernetes.io/instance-type",
    "beta.kubernetes.io/instance-type",
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "node.kubernetes.io/exclude-from-external-load-balancers",
];

/// Label keys that name a pool in common setups, preferred in this order
/// after [`POOL_LABEL`] itself.
const POOLISH: &[&str] = &["pool", "nodegroup", "node-group", "group", "role"];

/// One worker as `init` sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Worker {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub kubelet_version: String,
}

/// A worker with its machine and the provider that found it.
#[derive(Clone, Debug, PartialEq)]
pub struct Mapped {
    pub worker: Worker,
    pub provider: String,
    pub machine: Machine,
}

/// What makes workers one pool.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupingKey {
    /// The cloud's group (scaling group first, then template: see the
    /// order of [`GroupKind`]).
    Cloud(String, MachineGroup),
    /// No cloud group: the labels the nodes share (per-node labels left
    /// out).
    Labels(String, BTreeMap<String, String>),
}

/// A pool before its provider section.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolDraft {
    pub name: String,
    pub provider: String,
    pub key: GroupingKey,
    pub members: Vec<Mapped>,
    pub selector: BTreeMap<String, String>,
    /// The selector is [`POOL_LABEL`], which the nodes do not carry yet.
    pub needs_label: bool,
}

fn identity_labels(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels
        .iter()
        .filter(|(k, _)| !PER_NODE_LABELS.contains(&k.as_str()))
        .filter(|(k, _)| !k.starts_with("node-role.kubernetes.io/"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Group `mapped` workers into pools; `all_workers` (mapped or not) are
/// what each selector must not select besides its own nodes.
pub fn draft_pools(mapped: Vec<Mapped>, all_workers: &[Worker]) -> Vec<PoolDraft> {
    let mut groups: BTreeMap<GroupingKey, Vec<Mapped>> = BTreeMap::new();
    for m in mapped {
        let key = match &m.machine.group {
            Some(group) => GroupingKey::Cloud(m.provider.clone(), group.clone()),
            None => GroupingKey::Labels(m.provider.clone(), identity_labels(&m.worker.labels)),
        };
        groups.entry(key).or_default().push(m);
    }
    // Scaling groups first, then templates, then label groups.
    let mut keys: Vec<GroupingKey> = groups.keys().cloned().collect();
    keys.sort_by_key(|k| match k {
        GroupingKey::Cloud(_, g) => (0, g.kind.clone(), g.name.clone()),
        GroupingKey::Labels(..) => (1, GroupKind::LaunchTemplate, String::new()),
    });
    let mut taken = BTreeSet::new();
    let mut drafts = Vec::new();
    for key in keys {
        let Some(members) = groups.remove(&key) else {
            continue;
        };
        let names: BTreeSet<&str> = members.iter().map(|m| m.worker.name.as_str()).collect();
        let selector = distinguishing_label(&members, &names, all_workers);
        let base = match &key {
            GroupingKey::Cloud(_, group) => dns_label(&group.name),
            GroupingKey::Labels(_, _) => selector
                .as_ref()
                .map(|(_, v)| dns_label(v))
                .unwrap_or_else(|| "workers".to_string()),
        };
        let name = unique(&base, &mut taken);
        let provider = match &key {
            GroupingKey::Cloud(p, _) | GroupingKey::Labels(p, _) => p.clone(),
        };
        let (selector, needs_label) = match selector {
            Some((k, v)) => (BTreeMap::from([(k, v)]), false),
            None => (
                BTreeMap::from([(POOL_LABEL.to_string(), name.clone())]),
                true,
            ),
        };
        drafts.push(PoolDraft {
            name,
            provider,
            key,
            members,
            selector,
            needs_label,
        });
    }
    drafts
}

/// A label every member carries, that a kubelet may set, and that no
/// other worker carries with that value; [`POOL_LABEL`] first, then pool-like keys, then the rest by name.
fn distinguishing_label(
    members: &[Mapped],
    names: &BTreeSet<&str>,
    all_workers: &[Worker],
) -> Option<(String, String)> {
    let first = identity_labels(&members.first()?.worker.labels);
    let shared = first
        .into_iter()
        .filter(|(k, v)| members.iter().all(|m| m.worker.labels.get(k) == Some(v)));
    // New nodes register with the selector's label (`nodeLabels`): it must
    // be one a kubelet may set.
    let settable = shared.filter(|(k, _)| check_kubelet_may_set(k).is_ok());
    let distinct = settable.filter(|(k, v)| {
        all_workers
            .iter()
            .filter(|w| !names.contains(w.name.as_str()))
            .all(|w| w.labels.get(k) != Some(v))
    });
    distinct.min_by_key(|(k, _)| {
        let name = k.rsplit('/').next().unwrap_or(k);
        let rank = if k == POOL_LABEL {
            0
        } else {
            POOLISH
                .iter()
                .position(|p| name.contains(p))
                .map_or(POOLISH.len() + 1, |i| i + 1)
        };
        (rank, k.clone())
    })
}

/// A DNS label made of `text` (pool names are DNS labels).
pub fn dns_label(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed: String = out.trim_matches('-').chars().take(55).collect();
    let trimmed = trimmed.trim_end_matches('-').to_string();
    if trimmed.is_empty() {
        "workers".to_string()
    } else {
        trimmed
    }
}

fn unique(base: &str, taken: &mut BTreeSet<String>) -> String {
    let mut name = base.to_string();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    taken.insert(name.clone());
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubesurge_provider::{Instance, InstanceId, InstanceState};

    fn worker(name: &str, labels: &[(&str, &str)]) -> Worker {
        Worker {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .chain([("kubernetes.io/hostname".to_string(), name.to_string())])
                .collect(),
            kubelet_version: "v1.35.3".into(),
        }
    }

    fn mapped(w: &Worker, group: Option<(GroupKind, &str)>) -> Mapped {
        Mapped {
            worker: w.clone(),
            provider: "aws".into(),
            machine: Machine {
                instance: Instance {
                    id: InstanceId(format!("i-{}", w.name)),
                    state: InstanceState::Running,
                    zone: "z".into(),
                    subnet: None,
                    image: None,
                    private_ip: None,
                    provider_id: String::new(),
                    launched_at: None,
                    tags: BTreeMap::new(),
                },
                group: group.map(|(kind, name)| MachineGroup {
                    kind,
                    id: name.into(),
                    name: name.into(),
                }),
            },
        }
    }

    #[test]
    fn cloud_groups_make_pools_with_a_label_only_their_nodes_carry() {
        let a1 = worker("a1", &[("team", "x"), ("example.com/nodegroup", "batch")]);
        let a2 = worker("a2", &[("team", "x"), ("example.com/nodegroup", "batch")]);
        let b1 = worker("b1", &[("team", "x")]);
        let stray = worker("stray", &[("example.com/nodegroup", "batch")]);
        let all = [a1.clone(), a2.clone(), b1.clone(), stray.clone()];
        let drafts = draft_pools(
            vec![
                mapped(&b1, Some((GroupKind::LaunchTemplate, "LT_Web"))),
                mapped(&a1, Some((GroupKind::ScalingGroup, "batch-asg"))),
                mapped(&a2, Some((GroupKind::ScalingGroup, "batch-asg"))),
            ],
            &all,
        );
        assert_eq!(drafts.len(), 2);
        assert_eq!(drafts[0].name, "batch-asg", "scaling groups first");
        assert_eq!(drafts[0].members.len(), 2);
        // nodegroup=batch is shared with a node outside: not usable.
        assert_eq!(
            drafts[0].selector,
            BTreeMap::from([(POOL_LABEL.to_string(), "batch-asg".to_string())])
        );
        assert!(drafts[0].needs_label);
        assert_eq!(drafts[1].name, "lt-web");
        assert!(drafts[1].needs_label, "team=x is everyone's");
    }

    #[test]
    fn an_existing_pool_like_label_is_preferred() {
        let a = worker("a", &[("zeta", "1"), ("acme.io/pool", "gpu")]);
        let b = worker("b", &[("zeta", "2"), ("acme.io/pool", "cpu")]);
        let drafts = draft_pools(
            vec![
                mapped(&a, Some((GroupKind::LaunchTemplate, "gpu-template"))),
                mapped(&b, None),
            ],
            &[a.clone(), b.clone()],
        );
        assert_eq!(
            drafts[0].selector,
            BTreeMap::from([("acme.io/pool".to_string(), "gpu".to_string())])
        );
        assert!(!drafts[0].needs_label);
        assert_eq!(drafts[1].name, "cpu", "a label group is named by its label");
    }

    #[test]
    fn names_are_dns_labels_and_unique() {
        assert_eq!(dns_label("Workers_GPU.large"), "workers-gpu-large");
        assert_eq!(dns_label("--"), "workers");
        let mut taken = BTreeSet::new();
        assert_eq!(unique("a", &mut taken), "a");
        assert_eq!(unique("a", &mut taken), "a-2");
    }
}
