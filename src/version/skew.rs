//! The Kubernetes version-skew policy, as code.
//!
//! Source: kubernetes/website `content/en/releases/version-skew-policy.md`
//! and KEP-3935 (kubelets may trail the control plane by three minors since
//! v1.28). Every rule compares *minor* versions, as the policy does: a kubelet
//! at v1.34.3 next to a kube-apiserver at v1.34.1 is within policy.
//!
//! [`check`] takes the versions of every component of a cluster
//! ([`ClusterVersions`]) and returns every violation, each naming the rule
//! it breaks ([`Rule::citation`]). It is pure; the planner runs it on every
//! state a plan passes through, and the engines can run it on what they
//! observe.

use std::fmt;

use schemars::JsonSchema;
use serde::Serialize;

use super::KubeVersion;

/// Minors a kubelet at v1.25 or later may trail the newest kube-apiserver
/// (N-3 since v1.28, KEP-3935).
pub const KUBELET_MAX_LAG: u64 = 3;
/// Minors a kubelet older than v1.25 may trail the newest kube-apiserver:
/// KEP-3935 widened the window only for kubelets from v1.25 on.
pub const LEGACY_KUBELET_MAX_LAG: u64 = 2;
/// Kubelets of this minor and later get [`KUBELET_MAX_LAG`].
pub const KUBELET_N3_FROM_MINOR: u64 = 25;
/// Minors kube-proxy may trail the newest kube-apiserver.
pub const KUBE_PROXY_MAX_LAG: u64 = 3;
/// Minors kube-proxy may differ from the kubelet on its node, either way.
pub const KUBE_PROXY_KUBELET_MAX_SKEW: u64 = 3;
/// Minors kube-controller-manager / kube-scheduler may trail their
/// kube-apiserver.
pub const CONTROL_PLANE_COMPONENT_MAX_LAG: u64 = 1;
/// Minors between the newest and the oldest kube-apiserver of an HA cluster.
pub const APISERVER_HA_MAX_SKEW: u64 = 1;
/// Minors kubectl may differ from kube-apiserver, either way.
pub const KUBECTL_MAX_SKEW: u64 = 1;

/// How many minors `kubelet` may trail the newest kube-apiserver.
pub fn kubelet_max_lag(kubelet: KubeVersion) -> u64 {
    if kubelet.minor >= KUBELET_N3_FROM_MINOR {
        KUBELET_MAX_LAG
    } else {
        LEGACY_KUBELET_MAX_LAG
    }
}

/// The newest kube-apiserver minor a kubelet at `kubelet` tolerates.
pub fn newest_apiserver_minor_for_kubelet(kubelet: KubeVersion) -> u64 {
    kubelet.minor + kubelet_max_lag(kubelet)
}

/// A Kubernetes component, named as kubeadm names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema)]
pub enum Component {
    #[serde(rename = "kube-apiserver")]
    Apiserver,
    #[serde(rename = "kube-controller-manager")]
    ControllerManager,
    #[serde(rename = "kube-scheduler")]
    Scheduler,
    #[serde(rename = "etcd")]
    Etcd,
    #[serde(rename = "kubelet")]
    Kubelet,
    #[serde(rename = "kube-proxy")]
    KubeProxy,
    #[serde(rename = "CoreDNS")]
    CoreDns,
    #[serde(rename = "kubectl")]
    Kubectl,
}

impl Component {
    pub fn name(self) -> &'static str {
        match self {
            Component::Apiserver => "kube-apiserver",
            Component::ControllerManager => "kube-controller-manager",
            Component::Scheduler => "kube-scheduler",
            Component::Etcd => "etcd",
            Component::Kubelet => "kubelet",
            Component::KubeProxy => "kube-proxy",
            Component::CoreDns => "CoreDNS",
            Component::Kubectl => "kubectl",
        }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A line of the version-skew policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    ApiserverHaSkew,
    KubeletNewerThanApiserver,
    KubeletTooOld,
    KubeProxyNewerThanApiserver,
    KubeProxyTooOld,
    KubeProxyKubeletSkew,
    ControlPlaneComponentNewerThanApiserver,
    ControlPlaneComponentTooOld,
    KubectlSkew,
    MajorMismatch,
}

impl Rule {
    /// The policy line, as the version-skew policy page words it.
    pub fn citation(self) -> &'static str {
        match self {
            Rule::ApiserverHaSkew => {
                "kube-apiserver: in highly-available clusters, the newest and oldest \
                 kube-apiserver instances must be within one minor version"
            }
            Rule::KubeletNewerThanApiserver => {
                "kubelet must not be newer than kube-apiserver (in HA clusters, than the \
                 oldest kube-apiserver)"
            }
            Rule::KubeletTooOld => {
                "kubelet may be up to three minor versions older than kube-apiserver \
                 (N-3 since v1.28, KEP-3935); kubelets older than v1.25 up to two (N-2)"
            }
            Rule::KubeProxyNewerThanApiserver => {
                "kube-proxy must not be newer than kube-apiserver (in HA clusters, than the \
                 oldest kube-apiserver)"
            }
            Rule::KubeProxyTooOld => {
                "kube-proxy may be up to three minor versions older than kube-apiserver"
            }
            Rule::KubeProxyKubeletSkew => {
                "kube-proxy may be up to three minor versions older or newer than the \
                 kubelet on its node"
            }
            Rule::ControlPlaneComponentNewerThanApiserver => {
                "kube-controller-manager and kube-scheduler must not be newer than the \
                 kube-apiserver instances they communicate with"
            }
            Rule::ControlPlaneComponentTooOld => {
                "kube-controller-manager and kube-scheduler may be up to one minor version \
                 older than the kube-apiserver they communicate with (N-1)"
            }
            Rule::KubectlSkew => {
                "kubectl is supported within one minor version (older or newer) of \
                 kube-apiserver"
            }
            Rule::MajorMismatch => "the skew policy compares versions of one major release",
        }
    }
}

/// One component version breaking one rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Violation {
    pub rule: Rule,
    pub component: Component,
    /// The node the component runs on (`None` for kubectl and cluster-wide
    /// comparisons).
    pub node: Option<String>,
    pub version: KubeVersion,
    /// What is wrong, naming versions and nodes, ending with the rule.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The control-plane components of one control-plane node. `None` = not
/// known (missing static pod); such a component is skipped by [`check`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlaneMember {
    pub node: String,
    pub apiserver: Option<KubeVersion>,
    pub controller_manager: Option<KubeVersion>,
    pub scheduler: Option<KubeVersion>,
}

/// The node components of one node (control-plane or worker).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeVersions {
    pub node: String,
    pub kubelet: KubeVersion,
    /// The kube-proxy pod on this node (`None`: no kube-proxy, e.g. a CNI
    /// that replaces it).
    pub kube_proxy: Option<KubeVersion>,
}

/// Every version the skew policy speaks of, at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterVersions {
    pub control_plane: Vec<ControlPlaneMember>,
    /// Every node, control-plane nodes included (their kubelets count).
    pub nodes: Vec<NodeVersions>,
    pub kubectl: Option<KubeVersion>,
}

impl ClusterVersions {
    /// The oldest and the newest kube-apiserver, if any is known.
    pub fn apiserver_range(&self) -> Option<(KubeVersion, KubeVersion)> {
        let mut versions = self.control_plane.iter().filter_map(|m| m.apiserver);
        let first = versions.next()?;
        Some(versions.fold((first, first), |(lo, hi), v| (lo.min(v), hi.max(v))))
    }
}

/// Every violation of the skew policy in `cluster`, in a stable order
/// (apiservers, control-plane components, kubelets, kube-proxy, kubectl).
pub fn check(cluster: &ClusterVersions) -> Vec<Violation> {
    let mut out = Vec::new();
    let Some((oldest, newest)) = cluster.apiserver_range() else {
        // Nothing to compare against: no kube-apiserver version is known.
        return out;
    };
    let major = oldest.major;
    let mut same_major = |component: Component, node: Option<&str>, v: KubeVersion| {
        if v.major == major {
            return true;
        }
        out.push(Violation {
            rule: Rule::MajorMismatch,
            component,
            node: node.map(str::to_string),
            version: v,
            message: format!(
                "{component}{} is {v}, another major version than kube-apiserver {oldest} ({})",
                on(node),
                Rule::MajorMismatch.citation()
            ),
        });
        false
    };

    let mut checks: Vec<(Component, Option<&str>, KubeVersion)> = Vec::new();
    for m in &cluster.control_plane {
        for (c, v) in [
            (Component::Apiserver, m.apiserver),
            (Component::ControllerManager, m.controller_manager),
            (Component::Scheduler, m.scheduler),
        ] {
            if let Some(v) = v
                && same_major(c, Some(&m.node), v)
            {
                checks.push((c, Some(&m.node), v));
            }
        }
    }
    for n in &cluster.nodes {
        if same_major(Component::Kubelet, Some(&n.node), n.kubelet) {
            checks.push((Component::Kubelet, Some(&n.node), n.kubelet));
        }
        if let Some(p) = n.kube_proxy
            && same_major(Component::KubeProxy, Some(&n.node), p)
        {
            checks.push((Component::KubeProxy, Some(&n.node), p));
        }
    }
    if let Some(k) = cluster.kubectl
        && same_major(Component::Kubectl, None, k)
    {
        checks.push((Component::Kubectl, None, k));
    }
    // Only versions of the apiservers' major are compared from here on.
    let comparable =
        |c: Component, node: &str| checks.iter().any(|(cc, n, _)| *cc == c && *n == Some(node));
    let (oldest, newest) = {
        let same: Vec<KubeVersion> = checks
            .iter()
            .filter(|(c, _, _)| *c == Component::Apiserver)
            .map(|(_, _, v)| *v)
            .collect();
        match (same.iter().min(), same.iter().max()) {
            (Some(lo), Some(hi)) => (*lo, *hi),
            _ => (oldest, newest),
        }
    };

    // kube-apiserver HA skew.
    if newest.minors_since(oldest) > APISERVER_HA_MAX_SKEW as i64 {
        let rule = Rule::ApiserverHaSkew;
        for m in &cluster.control_plane {
            if let Some(v) = m.apiserver
                && v.major == major
                && v.minor == oldest.minor
            {
                out.push(Violation {
                    rule,
                    component: Component::Apiserver,
                    node: Some(m.node.clone()),
                    version: v,
                    message: format!(
                        "kube-apiserver on {} is {v}, {} minors older than kube-apiserver {newest} \
                         ({})",
                        m.node,
                        newest.minors_since(v),
                        rule.citation()
                    ),
                });
            }
        }
    }

    // kube-controller-manager and kube-scheduler. In kubeadm clusters each
    // talks to the kube-apiserver on its own node: kubeadm writes
    // controller-manager.conf and scheduler.conf with the node's local
    // advertise address, not the load-balanced endpoint. That is what lets
    // `kubeadm upgrade` move one node's three components together while
    // other nodes still run the old minor. Where the local kube-apiserver's
    // version is unknown, every kube-apiserver is taken as a peer.
    for m in &cluster.control_plane {
        let local = m
            .apiserver
            .filter(|_| comparable(Component::Apiserver, &m.node));
        let (peer_oldest, peer_newest, peer) = match local {
            Some(v) => (v, v, format!("kube-apiserver {v} on its node")),
            None => (oldest, newest, "the kube-apiservers".to_string()),
        };
        for (c, v) in [
            (Component::ControllerManager, m.controller_manager),
            (Component::Scheduler, m.scheduler),
        ] {
            let Some(v) = v.filter(|_| comparable(c, &m.node)) else {
                continue;
            };
            if v.minors_since(peer_oldest) > 0 {
                let rule = Rule::ControlPlaneComponentNewerThanApiserver;
                out.push(Violation {
                    rule,
                    component: c,
                    node: Some(m.node.clone()),
                    version: v,
                    message: format!(
                        "{c} on {} is {v}, newer than {peer} ({})",
                        m.node,
                        rule.citation()
                    ),
                });
            } else if peer_newest.minors_since(v) > CONTROL_PLANE_COMPONENT_MAX_LAG as i64 {
                let rule = Rule::ControlPlaneComponentTooOld;
                out.push(Violation {
                    rule,
                    component: c,
                    node: Some(m.node.clone()),
                    version: v,
                    message: format!(
                        "{c} on {} is {v}, {} minors older than {peer} ({})",
                        m.node,
                        peer_newest.minors_since(v),
                        rule.citation()
                    ),
                });
            }
        }
    }

    // Kubelets.
    for n in &cluster.nodes {
        if !comparable(Component::Kubelet, &n.node) {
            continue;
        }
        let v = n.kubelet;
        if v.minors_since(oldest) > 0 {
            let rule = Rule::KubeletNewerThanApiserver;
            out.push(Violation {
                rule,
                component: Component::Kubelet,
                node: Some(n.node.clone()),
                version: v,
                message: format!(
                    "kubelet on {} is {v}, newer than the oldest kube-apiserver {oldest} ({})",
                    n.node,
                    rule.citation()
                ),
            });
        } else if newest.minors_since(v) > kubelet_max_lag(v) as i64 {
            let rule = Rule::KubeletTooOld;
            out.push(Violation {
                rule,
                component: Component::Kubelet,
                node: Some(n.node.clone()),
                version: v,
                message: format!(
                    "kubelet on {} is {v}, {} minors older than kube-apiserver {newest}; a kubelet \
                     at {} may trail it by at most {} ({})",
                    n.node,
                    newest.minors_since(v),
                    v.minor_string(),
                    kubelet_max_lag(v),
                    rule.citation()
                ),
            });
        }
    }

    // kube-proxy.
    for n in &cluster.nodes {
        let Some(p) = n.kube_proxy else { continue };
        if !comparable(Component::KubeProxy, &n.node) {
            continue;
        }
        if p.minors_since(oldest) > 0 {
            let rule = Rule::KubeProxyNewerThanApiserver;
            out.push(Violation {
                rule,
                component: Component::KubeProxy,
                node: Some(n.node.clone()),
                version: p,
                message: format!(
                    "kube-proxy on {} is {p}, newer than the oldest kube-apiserver {oldest} ({})",
                    n.node,
                    rule.citation()
                ),
            });
        } else if newest.minors_since(p) > KUBE_PROXY_MAX_LAG as i64 {
            let rule = Rule::KubeProxyTooOld;
            out.push(Violation {
                rule,
                component: Component::KubeProxy,
                node: Some(n.node.clone()),
                version: p,
                message: format!(
                    "kube-proxy on {} is {p}, {} minors older than kube-apiserver {newest} ({})",
                    n.node,
                    newest.minors_since(p),
                    rule.citation()
                ),
            });
        }
        if comparable(Component::Kubelet, &n.node)
            && p.minors_since(n.kubelet).unsigned_abs() > KUBE_PROXY_KUBELET_MAX_SKEW
        {
            let rule = Rule::KubeProxyKubeletSkew;
            out.push(Violation {
                rule,
                component: Component::KubeProxy,
                node: Some(n.node.clone()),
                version: p,
                message: format!(
                    "kube-proxy on {} is {p}, {} minors away from the node's kubelet {} ({})",
                    n.node,
                    p.minors_since(n.kubelet).unsigned_abs(),
                    n.kubelet,
                    rule.citation()
                ),
            });
        }
    }

    // kubectl: it may reach any kube-apiserver behind the load balancer.
    if let Some(k) = cluster.kubectl
        && k.major == major
        && (k.minors_since(oldest) > KUBECTL_MAX_SKEW as i64
            || newest.minors_since(k) > KUBECTL_MAX_SKEW as i64)
    {
        let rule = Rule::KubectlSkew;
        out.push(Violation {
            rule,
            component: Component::Kubectl,
            node: None,
            version: k,
            message: format!(
                "kubectl is {k}, more than one minor away from kube-apiserver {} ({})",
                if k > newest { oldest } else { newest },
                rule.citation()
            ),
        });
    }
    out
}

fn on(node: Option<&str>) -> String {
    node.map(|n| format!(" on {n}")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> KubeVersion {
        s.parse().unwrap()
    }

    /// A cluster: `(node, apiserver, controller-manager, scheduler)` per
    /// control-plane node; `(node, kubelet, kube-proxy)` per node.
    fn cluster(
        cp: &[(&str, &str, &str, &str)],
        nodes: &[(&str, &str, Option<&str>)],
        kubectl: Option<&str>,
    ) -> ClusterVersions {
        ClusterVersions {
            control_plane: cp
                .iter()
                .map(|(n, a, c, s)| ControlPlaneMember {
                    node: n.to_string(),
                    apiserver: Some(v(a)),
                    controller_manager: Some(v(c)),
                    scheduler: Some(v(s)),
                })
                .collect(),
            nodes: nodes
                .iter()
                .map(|(n, k, p)| NodeVersions {
                    node: n.to_string(),
                    kubelet: v(k),
                    kube_proxy: p.map(v),
                })
                .collect(),
            kubectl: kubectl.map(v),
        }
    }

    struct Row {
        /// The policy line this row checks.
        cites: &'static str,
        cluster: ClusterVersions,
        expect: &'static [(Rule, Option<&'static str>)],
    }

    const CP1_34: &[(&str, &str, &str, &str)] = &[("cp-1", "1.34.2", "1.34.2", "1.34.2")];

    fn rows() -> Vec<Row> {
        vec![
            Row {
                cites: "kubelet N-3 since v1.28 (KEP-3935): three minors behind is allowed",
                cluster: cluster(CP1_34, &[("w-1", "1.31.9", None)], None),
                expect: &[],
            },
            Row {
                cites: "kubelet N-3 since v1.28 (KEP-3935): four minors behind is not",
                cluster: cluster(CP1_34, &[("w-1", "1.30.14", None)], None),
                expect: &[(Rule::KubeletTooOld, Some("w-1"))],
            },
            Row {
                cites: "kubelet N-2 for kubelets < v1.25: v1.24 under v1.26 is allowed",
                cluster: cluster(
                    &[("cp-1", "1.26.1", "1.26.1", "1.26.1")],
                    &[("w-1", "1.24.17", None)],
                    None,
                ),
                expect: &[],
            },
            Row {
                cites: "kubelet N-2 for kubelets < v1.25: v1.24 under v1.27 is not",
                cluster: cluster(
                    &[("cp-1", "1.27.1", "1.27.1", "1.27.1")],
                    &[("w-1", "1.24.17", None)],
                    None,
                ),
                expect: &[(Rule::KubeletTooOld, Some("w-1"))],
            },
            Row {
                cites: "kubelet N-3 applies from kubelet v1.25: v1.25 under v1.28 is allowed",
                cluster: cluster(
                    &[("cp-1", "1.28.1", "1.28.1", "1.28.1")],
                    &[("w-1", "1.25.16", None)],
                    None,
                ),
                expect: &[],
            },
            Row {
                cites: "kubelet must not be newer than kube-apiserver",
                cluster: cluster(CP1_34, &[("w-1", "1.35.0", None)], None),
                expect: &[(Rule::KubeletNewerThanApiserver, Some("w-1"))],
            },
            Row {
                cites: "skew is by minor: a newer kubelet patch is allowed",
                cluster: cluster(CP1_34, &[("w-1", "1.34.9", None)], None),
                expect: &[],
            },
            Row {
                cites: "kubelet: HA skew narrows the range to the OLDEST kube-apiserver",
                cluster: cluster(
                    &[
                        ("cp-1", "1.34.2", "1.34.2", "1.34.2"),
                        ("cp-2", "1.33.5", "1.33.5", "1.33.5"),
                    ],
                    &[("w-1", "1.34.2", None)],
                    None,
                ),
                expect: &[(Rule::KubeletNewerThanApiserver, Some("w-1"))],
            },
            Row {
                cites: "kubelet: HA skew narrows the range — N-3 of the NEWEST kube-apiserver",
                cluster: cluster(
                    &[
                        ("cp-1", "1.34.2", "1.34.2", "1.34.2"),
                        ("cp-2", "1.33.5", "1.33.5", "1.33.5"),
                    ],
                    &[("w-1", "1.30.1", None), ("w-2", "1.31.0", None)],
                    None,
                ),
                expect: &[(Rule::KubeletTooOld, Some("w-1"))],
            },
            Row {
                cites: "apiserver HA ±1: one minor apart is allowed",
                cluster: cluster(
                    &[
                        ("cp-1", "1.34.2", "1.34.2", "1.34.2"),
                        ("cp-2", "1.33.5", "1.33.5", "1.33.5"),
                    ],
                    &[],
                    None,
                ),
                expect: &[],
            },
            Row {
                cites: "apiserver HA ±1: two minors apart is not",
                cluster: cluster(
                    &[
                        ("cp-1", "1.34.2", "1.34.2", "1.34.2"),
                        ("cp-2", "1.32.5", "1.32.5", "1.32.5"),
                    ],
                    &[],
                    None,
                ),
                expect: &[(Rule::ApiserverHaSkew, Some("cp-2"))],
            },
            Row {
                cites: "KCM/scheduler N-1: one minor older than the local apiserver is allowed",
                cluster: cluster(&[("cp-1", "1.34.2", "1.33.5", "1.33.5")], &[], None),
                expect: &[],
            },
            Row {
                cites: "KCM/scheduler N-1: two minors older is not",
                cluster: cluster(&[("cp-1", "1.34.2", "1.32.5", "1.34.2")], &[], None),
                expect: &[(Rule::ControlPlaneComponentTooOld, Some("cp-1"))],
            },
            Row {
                cites: "KCM/scheduler never newer than the apiserver they talk to",
                cluster: cluster(&[("cp-1", "1.33.5", "1.33.5", "1.34.0")], &[], None),
                expect: &[(Rule::ControlPlaneComponentNewerThanApiserver, Some("cp-1"))],
            },
            Row {
                cites: "KCM/scheduler talk to the LOCAL apiserver in kubeadm clusters: a \
                        node upgraded ahead of its peers is within policy",
                cluster: cluster(
                    &[
                        ("cp-1", "1.34.2", "1.34.2", "1.34.2"),
                        ("cp-2", "1.33.5", "1.33.5", "1.33.5"),
                    ],
                    &[],
                    None,
                ),
                expect: &[],
            },
            Row {
                cites: "kube-proxy never newer than the apiserver (the oldest, in HA)",
                cluster: cluster(
                    &[
                        ("cp-1", "1.34.2", "1.34.2", "1.34.2"),
                        ("cp-2", "1.33.5", "1.33.5", "1.33.5"),
                    ],
                    &[("w-1", "1.33.5", Some("1.34.2"))],
                    None,
                ),
                expect: &[(Rule::KubeProxyNewerThanApiserver, Some("w-1"))],
            },
            Row {
                cites: "kube-proxy at most three minors older than the apiserver",
                cluster: cluster(CP1_34, &[("w-1", "1.31.1", Some("1.30.1"))], None),
                expect: &[(Rule::KubeProxyTooOld, Some("w-1"))],
            },
            Row {
                cites: "kube-proxy ±3 of the kubelet on its node: kubelet N-3 next to kube-proxy N",
                cluster: cluster(CP1_34, &[("w-1", "1.31.1", Some("1.34.2"))], None),
                expect: &[],
            },
            Row {
                cites: "kube-proxy ±3 of the kubelet on its node: four apart is not",
                cluster: cluster(
                    &[("cp-1", "1.26.1", "1.26.1", "1.26.1")],
                    &[("w-1", "1.26.1", Some("1.22.1"))],
                    None,
                ),
                expect: &[
                    (Rule::KubeProxyTooOld, Some("w-1")),
                    (Rule::KubeProxyKubeletSkew, Some("w-1")),
                ],
            },
            Row {
                cites: "kubectl ±1: one minor newer is allowed",
                cluster: cluster(CP1_34, &[], Some("1.35.0")),
                expect: &[],
            },
            Row {
                cites: "kubectl ±1: two minors older is not",
                cluster: cluster(CP1_34, &[], Some("1.32.0")),
                expect: &[(Rule::KubectlSkew, None)],
            },
            Row {
                cites: "kubectl ±1 of every apiserver: newer than the oldest by two is not",
                cluster: cluster(
                    &[
                        ("cp-1", "1.34.2", "1.34.2", "1.34.2"),
                        ("cp-2", "1.33.5", "1.33.5", "1.33.5"),
                    ],
                    &[],
                    Some("1.35.0"),
                ),
                expect: &[(Rule::KubectlSkew, None)],
            },
            Row {
                cites: "one major release",
                cluster: {
                    // The parser accepts only major 1; the type allows others.
                    let mut c = cluster(CP1_34, &[("w-1", "1.34.0", None)], None);
                    c.nodes[0].kubelet = KubeVersion::new(2, 0, 0);
                    c
                },
                expect: &[(Rule::MajorMismatch, Some("w-1"))],
            },
        ]
    }

    #[test]
    fn policy_table() {
        for row in rows() {
            let got: Vec<(Rule, Option<String>)> = check(&row.cluster)
                .into_iter()
                .map(|v| (v.rule, v.node))
                .collect();
            let want: Vec<(Rule, Option<String>)> = row
                .expect
                .iter()
                .map(|(r, n)| (*r, n.map(str::to_string)))
                .collect();
            assert_eq!(got, want, "row: {}", row.cites);
        }
    }

    #[test]
    fn messages_name_versions_nodes_and_the_rule() {
        let c = cluster(CP1_34, &[("w-7", "1.30.14", None)], None);
        let found = check(&c);
        assert_eq!(found.len(), 1);
        let msg = &found[0].message;
        assert!(msg.contains("w-7"), "{msg}");
        assert!(msg.contains("v1.30.14"), "{msg}");
        assert!(msg.contains("v1.34.2"), "{msg}");
        assert!(msg.contains("KEP-3935"), "{msg}");
    }

    #[test]
    fn unknown_components_are_skipped_not_guessed() {
        let mut c = cluster(CP1_34, &[], None);
        c.control_plane[0].controller_manager = None;
        c.control_plane.push(ControlPlaneMember {
            node: "cp-2".into(),
            apiserver: None,
            controller_manager: Some(v("1.33.0")),
            scheduler: None,
        });
        // cp-2's controller-manager is compared with every apiserver: v1.33
        // is one behind v1.34, allowed.
        assert_eq!(check(&c), vec![]);
        assert_eq!(check(&ClusterVersions::default()), vec![]);
    }

    #[test]
    fn kubelet_lag_depends_on_the_kubelet_version() {
        assert_eq!(kubelet_max_lag(v("1.24.17")), 2);
        assert_eq!(kubelet_max_lag(v("1.25.0")), 3);
        assert_eq!(newest_apiserver_minor_for_kubelet(v("1.31.2")), 34);
        assert_eq!(newest_apiserver_minor_for_kubelet(v("1.24.0")), 26);
    }
}
