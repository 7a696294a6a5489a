//! Which of a node's pods keep their data on the node itself through a
//! PersistentVolume: that data is destroyed with the instance, and the
//! pod cannot come back anywhere else with it.
//!
//! A PersistentVolume is local to a node when it is a `local` volume, a
//! `hostPath` volume, or its required node affinity pins it to the node by
//! `kubernetes.io/hostname` (what local volumes and node-local CSI drivers
//! declare): <https://kubernetes.io/docs/concepts/storage/volumes/#local>.
//! The classification is pure; [`resolve`] does the reads, and only when
//! a pod on the node uses a claim.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, PersistentVolume, PersistentVolumeClaim, Pod,
};
use kube::api::ListParams;
use kube::{Api, Client};

use crate::kube::pages::list_all;

/// The label the kubelet sets to its hostname, which local volumes' node
/// affinity names (`kubernetes.io/hostname`, k8s.io/api/core/v1
/// `LabelHostname`).
const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// A claim whose volume lives on the drained node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalClaim {
    pub claim: String,
    pub volume: String,
}

/// The node-local claims of a node's pods: `(namespace, claim)` → volume.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeLocalClaims(BTreeMap<(String, String), String>);

impl Extend<((String, String), String)> for NodeLocalClaims {
    fn extend<I: IntoIterator<Item = ((String, String), String)>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

impl IntoIterator for NodeLocalClaims {
    type Item = ((String, String), String);
    type IntoIter = std::collections::btree_map::IntoIter<(String, String), String>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl FromIterator<((String, String), String)> for NodeLocalClaims {
    fn from_iter<I: IntoIterator<Item = ((String, String), String)>>(iter: I) -> Self {
        NodeLocalClaims(iter.into_iter().collect())
    }
}

impl NodeLocalClaims {
    /// No claim is known to be local.
    pub const fn none() -> Self {
        NodeLocalClaims(BTreeMap::new())
    }

    /// The first claim of `pod` whose volume is local to the node.
    pub fn used_by(&self, pod: &Pod) -> Option<LocalClaim> {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        claims_of(pod).find_map(|claim| {
            self.0
                .get(&(namespace.clone(), claim.to_string()))
                .map(|volume| LocalClaim {
                    claim: claim.to_string(),
                    volume: volume.clone(),
                })
        })
    }
}

/// The PersistentVolumeClaims `pod` mounts, by name.
fn claims_of(pod: &Pod) -> impl Iterator<Item = &str> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.as_str())
}

/// True when `pod` mounts a hostPath volume: kubectl drain evicts such
/// pods without a flag (its filters only stop at emptyDir,
/// `kubectl:pkg/drain/filters.go` `localStorageFilter`), and whatever the
/// pod wrote there stays on the node that goes away.
pub fn uses_host_path(pod: &Pod) -> bool {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .any(|v| v.host_path.is_some())
}

/// True when `volume`'s data lives on the node whose `kubernetes.io/hostname`
/// label (or, without one, its name) is in `hostnames`.
pub fn is_local_to(volume: &PersistentVolume, hostnames: &[&str]) -> bool {
    let Some(spec) = volume.spec.as_ref() else {
        return false;
    };
    if spec.local.is_some() || spec.host_path.is_some() {
        return true;
    }
    // Every required term must pin the hostname to this node: one term
    // that allows another node (or any node) means the data is reachable
    // elsewhere (terms are ORed, expressions within a term ANDed).
    let Some(terms) = spec
        .node_affinity
        .as_ref()
        .and_then(|a| a.required.as_ref())
        .map(|r| &r.node_selector_terms)
    else {
        return false;
    };
    // A term pins the node by its hostname label, or by its name through
    // `matchFields` (`metadata.name` is the one field a node selector may
    // name: k8s.io/api/core/v1 NodeSelectorTerm).
    let pins = |e: &NodeSelectorRequirement, key: &str| {
        e.key == key
            && e.operator == "In"
            && e.values
                .as_ref()
                .is_some_and(|v| !v.is_empty() && v.iter().all(|h| hostnames.contains(&h.as_str())))
    };
    !terms.is_empty()
        && terms.iter().all(|term| {
            term.match_expressions
                .iter()
                .flatten()
                .any(|e| pins(e, HOSTNAME_LABEL))
                || term
                    .match_fields
                    .iter()
                    .flatten()
                    .any(|e| pins(e, "metadata.name"))
        })
}

/// The claims of `pods` bound to a volume local to the node known by
/// `hostnames`.
pub fn classify(
    pods: &[Pod],
    claims: &[PersistentVolumeClaim],
    volumes: &[PersistentVolume],
    hostnames: &[&str],
) -> NodeLocalClaims {
    let used: BTreeSet<(String, String)> = pods
        .iter()
        .flat_map(|p| {
            let namespace = p.metadata.namespace.clone().unwrap_or_default();
            claims_of(p)
                .map(move |c| (namespace.clone(), c.to_string()))
                .collect::<Vec<_>>()
        })
        .collect();
    let local_volumes: BTreeSet<&str> = volumes
        .iter()
        .filter(|v| is_local_to(v, hostnames))
        .filter_map(|v| v.metadata.name.as_deref())
        .collect();
    let mut found = BTreeMap::new();
    for claim in claims {
        let key = (
            claim.metadata.namespace.clone().unwrap_or_default(),
            claim.metadata.name.clone().unwrap_or_default(),
        );
        // A claim is bound once `spec.volumeName` names its volume.
        let Some(volume) = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()) else {
            continue;
        };
        if used.contains(&key) && local_volumes.contains(volume) {
            found.insert(key, volume.to_string());
        }
    }
    NodeLocalClaims(found)
}

/// Read what [`classify`] needs for the pods on `node`: nothing when no pod
/// uses a claim; else the node (its hostname label), the claims of each
/// namespace involved (one list each) and the PersistentVolumes (one list).
pub async fn resolve(
    client: &Client,
    node: &str,
    pods: &[Pod],
) -> Result<NodeLocalClaims, kube::Error> {
    let namespaces: BTreeSet<String> = pods
        .iter()
        .filter(|p| claims_of(p).next().is_some())
        .map(|p| p.metadata.namespace.clone().unwrap_or_default())
        .collect();
    if namespaces.is_empty() {
        return Ok(NodeLocalClaims::default());
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let hostname = nodes
        .get_opt(node)
        .await?
        .and_then(|n| n.metadata.labels?.get(HOSTNAME_LABEL).cloned());
    let mut claims = Vec::new();
    for namespace in &namespaces {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
        claims.extend(list_all(&api, &ListParams::default()).await?);
    }
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let volumes = list_all(&volumes, &ListParams::default()).await?;
    let mut hostnames = vec![node];
    hostnames.extend(hostname.as_deref());
    Ok(classify(pods, &claims, &volumes, &hostnames))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn pod(namespace: &str, claims: &[&str]) -> Pod {
        let volumes: Vec<Value> = claims
            .iter()
            .map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}}))
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": "db-0", "namespace": namespace},
            "spec": {"containers": [{"name": "c"}], "volumes": volumes}
        }))
        .unwrap()
    }

    fn claim(namespace: &str, name: &str, volume: Option<&str>) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"volumeName": volume}
        }))
        .unwrap()
    }

    fn volume(name: &str, spec: Value) -> PersistentVolume {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
    }

    fn pinned(hosts: &[&str]) -> Value {
        json!({"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": hosts}
        ]}]}}})
    }

    #[test]
    fn local_and_host_path_volumes_and_hostname_pins_are_local() {
        let here = ["worker-1", "ip-10-0-0-1"];
        let cases = [
            (
                "local volume",
                json!({"local": {"path": "/mnt/disks/ssd1"}}),
                true,
            ),
            (
                "hostPath volume",
                json!({"hostPath": {"path": "/data"}}),
                true,
            ),
            ("pinned to this node by name", pinned(&["worker-1"]), true),
            (
                "pinned to this node's hostname",
                pinned(&["ip-10-0-0-1"]),
                true,
            ),
            ("pinned to another node", pinned(&["worker-2"]), false),
            (
                "pinned to this node by field",
                json!({"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchFields": [
                    {"key": "metadata.name", "operator": "In", "values": ["worker-1"]}
                ]}]}}}),
                true,
            ),
            (
                "kept off another node",
                json!({"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["worker-2"]}
                ]}]}}}),
                false,
            ),
            (
                "may also be on another node",
                pinned(&["worker-1", "worker-2"]),
                false,
            ),
            (
                "zonal (a cloud disk)",
                json!({"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}
                ]}]}}}),
                false,
            ),
            (
                "a second term allows any node in a zone",
                json!({"nodeAffinity": {"required": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["worker-1"]}]},
                    {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}]}
                ]}}}),
                false,
            ),
            (
                "a network volume",
                json!({"nfs": {"server": "nas", "path": "/x"}}),
                false,
            ),
        ];
        for (what, spec, local) in cases {
            assert_eq!(is_local_to(&volume("pv", spec), &here), local, "{what}");
        }
    }

    #[test]
    fn only_bound_claims_of_the_pods_on_local_volumes_are_named() {
        let pods = [pod("db", &["data", "cache"]), pod("web", &["assets"])];
        let claims = [
            claim("db", "data", Some("pv-local")),
            claim("db", "cache", Some("pv-nfs")),
            claim("web", "assets", None),
            // Same name in another namespace, not used by these pods.
            claim("other", "data", Some("pv-local-2")),
        ];
        let volumes = [
            volume("pv-local", json!({"local": {"path": "/mnt"}})),
            volume("pv-local-2", json!({"local": {"path": "/mnt2"}})),
            volume("pv-nfs", json!({"nfs": {"server": "nas", "path": "/x"}})),
        ];
        let found = classify(&pods, &claims, &volumes, &["worker-1"]);
        assert_eq!(
            found.used_by(&pods[0]),
            Some(LocalClaim {
                claim: "data".into(),
                volume: "pv-local".into()
            })
        );
        assert_eq!(
            found.used_by(&pods[1]),
            None,
            "an unbound claim is not local"
        );
        assert_eq!(found.0.len(), 1, "{found:?}");
    }

    #[test]
    fn host_path_pods_are_recognised() {
        let with: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c"}], "volumes": [{"name": "logs", "hostPath": {"path": "/var/log"}}]}
        }))
        .unwrap();
        assert!(uses_host_path(&with));
        assert!(!uses_host_path(&pod("ns", &["data"])));
    }
}
