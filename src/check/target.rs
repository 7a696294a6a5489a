//! "The target exists": before anything changes, every piece an upgrade
//! will install or boot must exist — for every hop, the kubeadm, kubelet
//! and kubectl packages of that hop's version for each control-plane node's
//! package manager (a read-only query run on the node, `controlplane::
//! packages`), and the worker image of every rotation's version in its
//! pool (`resolve_image`).
//!
//! A control-plane hop cannot be undone: a target whose later hop cannot
//! install must be refused before the first one runs, naming the first
//! missing piece.
//!
//! What each hop needs and which piece is first missing are pure
//! functions of the plan and the answers; [`verify`] asks the nodes and
//! the providers.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::Api;
use kubesurge_provider::{ExecRequest, NodeExec, PoolRef, ProviderError};
use thiserror::Error;

use crate::controlplane::packages::{self, Availability, KUBEADM, KUBECTL, KUBELET};
use crate::controlplane::phase::exec_target;
use crate::kube::retry::with_retry;
use crate::plan::Plan;
use crate::rotation::EngineConfig;
use crate::version::KubeVersion;

/// How long the package query may run on a node: it reads one index per
/// hop.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(120);

/// One package a hop installs on one control-plane node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageNeed {
    pub hop: usize,
    pub node: String,
    pub package: &'static str,
    pub version: KubeVersion,
}

/// The image a rotation of a pool boots its new nodes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageNeed {
    pub pool: String,
    pub version: KubeVersion,
}

/// Everything the plan will install or boot, in the order the run needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetNeeds {
    pub packages: Vec<PackageNeed>,
    pub images: Vec<ImageNeed>,
}

impl TargetNeeds {
    /// From the plan: kubeadm on the nodes whose components a hop upgrades,
    /// kubelet and kubectl on those whose kubelet it upgrades; an image per
    /// pool and rotation version.
    pub fn of(plan: &Plan) -> TargetNeeds {
        let mut needs = TargetNeeds::default();
        for hop in &plan.hops {
            for node in &hop.nodes {
                let mut wanted = Vec::new();
                if node.upgrade_components {
                    wanted.push(KUBEADM);
                }
                if node.upgrade_kubelet {
                    wanted.extend([KUBELET, KUBECTL]);
                }
                needs
                    .packages
                    .extend(wanted.into_iter().map(|package| PackageNeed {
                        hop: hop.number,
                        node: node.node.clone(),
                        package,
                        version: hop.to,
                    }));
            }
        }
        for pool in &plan.pools {
            for rotation in &pool.rotations {
                let need = ImageNeed {
                    pool: pool.name.clone(),
                    version: rotation.version,
                };
                if !needs.images.contains(&need) {
                    needs.images.push(need);
                }
            }
        }
        needs
    }

    /// Per node, the packages wanted at each version (the query's input).
    pub fn queries(&self) -> BTreeMap<String, BTreeMap<KubeVersion, Vec<&'static str>>> {
        let mut queries: BTreeMap<String, BTreeMap<KubeVersion, Vec<&'static str>>> =
            BTreeMap::new();
        for need in &self.packages {
            let packages = queries
                .entry(need.node.clone())
                .or_default()
                .entry(need.version)
                .or_default();
            if !packages.contains(&need.package) {
                packages.push(need.package);
            }
        }
        queries
    }
}

/// A piece of the target that does not exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MissingPiece {
    Package { need: PackageNeed, detail: String },
    Image { need: ImageNeed, detail: String },
}

impl fmt::Display for MissingPiece {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MissingPiece::Package { need, detail } => write!(
                f,
                "hop {} (to {}): the package manager of control-plane node {} has no {} {} ({detail})",
                need.hop,
                need.version,
                need.node,
                need.package,
                need.version.bare()
            ),
            MissingPiece::Image { need, detail } => write!(
                f,
                "pool {}: no worker image for {} ({detail})",
                need.pool, need.version
            ),
        }
    }
}

/// Why the target was not found to exist. Nothing was changed.
#[derive(Debug, Error)]
pub enum TargetError {
    /// A piece does not exist: the run would fail at it, after every
    /// irreversible step before it.
    #[error(
        "refused before any change: {0}; choose a target whose packages and images exist (see kubesurge check --to)"
    )]
    Missing(MissingPiece),
    /// A piece could not be looked for; nothing was changed.
    #[error("cannot verify, so nothing was changed: {0}")]
    Unverified(String),
}

/// The first need, in run order, that an answer says is not available:
/// `Missing` where the answer is missing, `Unverified` where unknown.
pub fn first_unavailable_package(
    needs: &TargetNeeds,
    answers: &BTreeMap<String, BTreeMap<(KubeVersion, &'static str), Availability>>,
) -> Option<TargetError> {
    needs.packages.iter().find_map(|need| {
        let answer = answers
            .get(&need.node)
            .and_then(|a| a.get(&(need.version, need.package)));
        match answer {
            Some(Availability::Available) => None,
            Some(Availability::Missing { detail }) => {
                Some(TargetError::Missing(MissingPiece::Package {
                    need: need.clone(),
                    detail: detail.clone(),
                }))
            }
            Some(Availability::Unknown { detail }) => Some(TargetError::Unverified(format!(
                "whether control-plane node {} can install {} {} (hop {}): {detail}",
                need.node,
                need.package,
                need.version.bare(),
                need.hop
            ))),
            None => Some(TargetError::Unverified(format!(
                "control-plane node {} was not asked for {} {}",
                need.node,
                need.package,
                need.version.bare()
            ))),
        }
    })
}

/// What [`verify`] could not look at, for the user to know.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotChecked(pub Vec<String>);

/// Ask each control-plane node (through `exec`) and each pool's provider
/// (from `engine`) for every piece of the plan, in run order. `None`, or a
/// pool the engine does not know: that part is not checked, and said so.
pub async fn verify(
    plan: &Plan,
    client: &Client,
    exec: Option<&dyn NodeExec>,
    engine: Option<&EngineConfig>,
) -> Result<NotChecked, TargetError> {
    let needs = TargetNeeds::of(plan);
    let mut not_checked = NotChecked::default();
    match exec {
        Some(exec) => verify_packages(&needs, client, exec).await?,
        None if needs.packages.is_empty() => {}
        None => not_checked.0.push(
            "the control-plane packages of each hop (no way to reach the control-plane nodes: set controlPlane.exec)"
                .into(),
        ),
    }
    for need in &needs.images {
        match engine {
            Some(engine) if engine.pools.iter().any(|p| p.name == need.pool) => {
                verify_image(need, engine).await?
            }
            _ => not_checked.0.push(format!(
                "the worker image of pool {} at {}",
                need.pool, need.version
            )),
        }
    }
    Ok(not_checked)
}

/// Every package of `needs`, asked of each node through `exec`.
pub async fn verify_packages(
    needs: &TargetNeeds,
    client: &Client,
    exec: &dyn NodeExec,
) -> Result<(), TargetError> {
    let queries = needs.queries();
    if queries.is_empty() {
        return Ok(());
    }
    let answers = query_nodes(client, exec, &queries).await?;
    match first_unavailable_package(needs, &answers) {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// The image of `need` in its pool, asked of the pool's provider.
pub async fn verify_image(need: &ImageNeed, engine: &EngineConfig) -> Result<(), TargetError> {
    let Some(provider) = engine
        .pools
        .iter()
        .find(|p| p.name == need.pool)
        .map(|p| &p.provider)
    else {
        return Err(TargetError::Unverified(format!(
            "pool {} is not in the configuration",
            need.pool
        )));
    };
    let pool = PoolRef {
        cluster: engine.cluster.clone(),
        pool: need.pool.clone(),
    };
    match provider
        .resolve_image(&pool, &need.version.to_string())
        .await
    {
        Ok(_) => Ok(()),
        Err(ProviderError::NotFound { what }) => Err(TargetError::Missing(MissingPiece::Image {
            need: need.clone(),
            detail: format!("not found: {what}"),
        })),
        Err(error) => Err(TargetError::Unverified(format!(
            "the worker image of pool {} at {}: {error}",
            need.pool, need.version
        ))),
    }
}

/// Run the read-only query on each node of `queries`.
async fn query_nodes(
    client: &Client,
    exec: &dyn NodeExec,
    queries: &BTreeMap<String, BTreeMap<KubeVersion, Vec<&'static str>>>,
) -> Result<BTreeMap<String, BTreeMap<(KubeVersion, &'static str), Availability>>, TargetError> {
    let api: Api<Node> = Api::all(client.clone());
    let mut answers = BTreeMap::new();
    for (name, wanted) in queries {
        let node = with_retry("get node", || api.get_opt(name))
            .await
            .map_err(|e| TargetError::Unverified(format!("reading node {name}: {e}")))?;
        let request = ExecRequest {
            script: packages::render_query(wanted),
            description: "query the Kubernetes packages the upgrade installs (read-only)".into(),
            timeout: QUERY_TIMEOUT,
        };
        let output = exec
            .run(&exec_target(name, node.as_ref()), &request, &())
            .await
            .map_err(|e| {
                TargetError::Unverified(format!("the packages of control-plane node {name}: {e}"))
            })?;
        if !output.success() {
            return Err(TargetError::Unverified(format!(
                "the package query failed on control-plane node {name} (exit {}): {}",
                output.exit_code,
                output.tail(5)
            )));
        }
        answers.insert(name.clone(), packages::read_answers(&output.stdout, wanted));
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(hop: usize, node: &str, package: &'static str, version: KubeVersion) -> PackageNeed {
        PackageNeed {
            hop,
            node: node.into(),
            package,
            version,
        }
    }

    #[test]
    fn the_first_missing_piece_in_run_order_is_named() {
        let v36 = KubeVersion::new(1, 36, 0);
        let v37 = KubeVersion::new(1, 37, 31);
        let needs = TargetNeeds {
            packages: vec![
                need(1, "cp-1", KUBEADM, v36),
                need(1, "cp-1", KUBELET, v36),
                need(2, "cp-1", KUBEADM, v37),
                need(2, "cp-2", KUBEADM, v37),
            ],
            images: Vec::new(),
        };
        let queries = needs.queries();
        assert_eq!(queries["cp-1"][&v36], vec![KUBEADM, KUBELET]);
        assert_eq!(queries["cp-2"][&v37], vec![KUBEADM]);
        let missing = || Availability::Missing {
            detail: "no such version".into(),
        };
        let answers = BTreeMap::from([
            (
                "cp-1".to_string(),
                BTreeMap::from([
                    ((v36, KUBEADM), Availability::Available),
                    ((v36, KUBELET), Availability::Available),
                    ((v37, KUBEADM), missing()),
                ]),
            ),
            (
                "cp-2".to_string(),
                BTreeMap::from([((v37, KUBEADM), missing())]),
            ),
        ]);
        let error = first_unavailable_package(&needs, &answers).expect("missing");
        let TargetError::Missing(piece) = &error else {
            panic!("{error:?}")
        };
        assert_eq!(
            piece,
            &MissingPiece::Package {
                need: need(2, "cp-1", KUBEADM, v37),
                detail: "no such version".into()
            }
        );
        let text = error.to_string();
        for part in [
            "hop 2",
            "v1.37.31",
            "cp-1",
            "kubeadm 1.37.31",
            "before any change",
        ] {
            assert!(text.contains(part), "{part:?} in {text}");
        }
    }

    #[test]
    fn an_unknown_answer_is_never_taken_for_available() {
        let v = KubeVersion::new(1, 36, 0);
        let needs = TargetNeeds {
            packages: vec![need(1, "cp-1", KUBEADM, v)],
            images: Vec::new(),
        };
        let unknown = BTreeMap::from([(
            "cp-1".to_string(),
            BTreeMap::from([(
                (v, KUBEADM),
                Availability::Unknown {
                    detail: "curl exit 6".into(),
                },
            )]),
        )]);
        assert!(matches!(
            first_unavailable_package(&needs, &unknown),
            Some(TargetError::Unverified(m)) if m.contains("curl exit 6")
        ));
        assert!(matches!(
            first_unavailable_package(&needs, &BTreeMap::new()),
            Some(TargetError::Unverified(_))
        ));
        let available = BTreeMap::from([(
            "cp-1".to_string(),
            BTreeMap::from([((v, KUBEADM), Availability::Available)]),
        )]);
        assert!(first_unavailable_package(&needs, &available).is_none());
    }
}
