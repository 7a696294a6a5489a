//! The inventory: plain data, no I/O.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::Serialize;

use crate::version::{ClusterVersions, ControlPlaneMember, KubeVersion, NodeVersions};

/// A snapshot of the cluster, as the planner sees it.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    /// `gitVersion` of the API server that answered `/version`.
    pub apiserver_version: KubeVersion,
    pub control_plane: Vec<ControlPlaneNode>,
    /// Every node that is not a control-plane node.
    pub workers: Vec<WorkerNode>,
    pub addons: Addons,
    /// The `kubernetesVersion` kubeadm recorded in `kube-system/kubeadm-config`
    /// (`None` when it cannot be read). `kubeadm upgrade apply` records it
    /// last: a kube-apiserver at a version this does not say yet means an
    /// apply that did not finish.
    pub kubeadm_version: Option<KubeVersion>,
}

impl Inventory {
    /// The control plane's version: the oldest kube-apiserver's, which is
    /// what new kubelets may run (a kubelet must never be newer than any
    /// apiserver). The answering apiserver's when no static pod tells.
    pub fn control_plane_version(&self) -> KubeVersion {
        self.control_plane
            .iter()
            .filter_map(|cp| cp.apiserver)
            .min()
            .unwrap_or(self.apiserver_version)
    }
}

/// A control-plane node and the versions of its static pods.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlaneNode {
    pub name: String,
    pub kubelet: KubeVersion,
    /// `None` when the static pod is missing or its image tag is unreadable.
    pub apiserver: Option<KubeVersion>,
    pub controller_manager: Option<KubeVersion>,
    pub scheduler: Option<KubeVersion>,
    /// etcd's image tag (`3.5.15-0`); etcd has its own version scheme.
    pub etcd: Option<String>,
    pub zone: Option<String>,
    pub provider_id: Option<String>,
    pub ready: bool,
}

/// A worker node.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerNode {
    pub name: String,
    pub kubelet: KubeVersion,
    /// The first pool whose selector matches; `None` = in no pool.
    pub pool: Option<String>,
    pub created: Timestamp,
    pub zone: Option<String>,
    pub provider_id: Option<String>,
    pub internal_ip: Option<String>,
    pub ready: bool,
    pub unschedulable: bool,
}

/// Cluster add-ons that kubeadm upgrades with the control plane.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Addons {
    /// CoreDNS image tag (`v1.11.3`).
    pub coredns: Option<String>,
    /// kube-proxy version from its DaemonSet image tag.
    pub kube_proxy: Option<KubeVersion>,
}

impl Inventory {
    /// The versions the skew policy speaks of, as this inventory shows
    /// them. kube-proxy is a DaemonSet, so every node gets its version.
    pub fn versions(&self) -> ClusterVersions {
        let kube_proxy = self.addons.kube_proxy;
        let control_plane = self
            .control_plane
            .iter()
            .map(|n| ControlPlaneMember {
                node: n.name.clone(),
                apiserver: n.apiserver,
                controller_manager: n.controller_manager,
                scheduler: n.scheduler,
            })
            .collect();
        let nodes = self
            .control_plane
            .iter()
            .map(|n| (n.name.clone(), n.kubelet))
            .chain(self.workers.iter().map(|w| (w.name.clone(), w.kubelet)))
            .map(|(node, kubelet)| NodeVersions {
                node,
                kubelet,
                kube_proxy,
            })
            .collect();
        ClusterVersions {
            control_plane,
            nodes,
            kubectl: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control_plane_node(name: &str, apiserver: Option<KubeVersion>) -> ControlPlaneNode {
        ControlPlaneNode {
            name: name.into(),
            kubelet: KubeVersion::new(1, 33, 0),
            apiserver,
            controller_manager: apiserver,
            scheduler: apiserver,
            etcd: None,
            zone: None,
            provider_id: None,
            ready: true,
        }
    }

    #[test]
    fn the_control_plane_is_at_its_oldest_apiserver() {
        let mut inventory = Inventory {
            apiserver_version: KubeVersion::new(1, 34, 1),
            control_plane: vec![
                control_plane_node("cp-1", Some(KubeVersion::new(1, 34, 1))),
                control_plane_node("cp-2", Some(KubeVersion::new(1, 33, 4))),
                control_plane_node("cp-3", None),
            ],
            workers: Vec::new(),
            addons: Addons::default(),
            kubeadm_version: None,
        };
        assert_eq!(
            inventory.control_plane_version(),
            KubeVersion::new(1, 33, 4)
        );
        inventory.control_plane.truncate(0);
        assert_eq!(
            inventory.control_plane_version(),
            KubeVersion::new(1, 34, 1)
        );
    }
}
