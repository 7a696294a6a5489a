//! The checks of `kubesurge check`, asked of the cluster, the control-plane
//! nodes and the pools' providers. Every call is a read: Kubernetes lists
//! and gets, SelfSubjectAccessReviews (which answer and change nothing),
//! the read-only package query, provider lists, lookups and dry runs.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Client;
use kube::api::{Api, ListParams};
use kubesurge_provider::{
    Instance, LaunchRequest, NodeExec, PermissionOutcome, PermissionProbe, PoolRef, RoomOutcome,
    RoomProbe, Sensitive, SlotKey,
};

use super::report::{Check, CheckLine, CheckReport};
use super::target::{self, ImageNeed, TargetError, TargetNeeds};
use super::{pdb, rbac};
use crate::controlplane::phase::exec_target;
use crate::inventory::is_control_plane;
use crate::kube::drain::UnmanagedPods;
use crate::kube::retry::with_retry;
use crate::plan::{Plan, PlanRefusal};
use crate::rotation::mapping::{self, Unmappable};
use crate::rotation::{EngineConfig, PoolConfig};
use crate::version::KubeVersion;

/// What the checks work from; the settings' wiring failures are kept to be
/// reported on the lines they prevent.
pub struct CheckInputs {
    pub client: Client,
    pub target: Option<KubeVersion>,
    pub plan: Result<Plan, PlanRefusal>,
    /// How scripts reach the control-plane nodes, or why they cannot.
    pub exec: Result<Arc<dyn NodeExec>, String>,
    /// The pools and their providers, or why there are none.
    pub engine: Result<EngineConfig, String>,
    pub unmanaged: UnmanagedPods,
}

/// Run every check; the report has a line per check.
pub async fn run(inputs: &CheckInputs) -> CheckReport {
    let mut report = CheckReport {
        target: inputs.target,
        lines: Vec::new(),
    };
    let plan = match &inputs.plan {
        Ok(plan) => {
            report.lines.push(plan_line(plan));
            Some(plan)
        }
        Err(refusal) => {
            report.lines.push(CheckLine::fail(
                Check::Plan,
                "cluster",
                format!("the planner refuses: {refusal}"),
                "see kubesurge plan; choose another --to or bring the cluster within the skew policy first",
            ));
            None
        }
    };
    if let Some(plan) = plan {
        report.lines.extend(reachability_lines(inputs, plan).await);
        let needs = TargetNeeds::of(plan);
        report.lines.push(packages_line(inputs, &needs).await);
        report.lines.extend(image_lines(inputs, plan).await);
    }
    report.lines.extend(rbac::check(&inputs.client).await);
    report.lines.extend(mapping_lines(inputs, plan).await);
    if let Some(plan) = plan {
        report.lines.extend(disruption_lines(inputs, plan).await);
    }
    report
}

fn plan_line(plan: &Plan) -> CheckLine {
    let rotations: usize = plan.pools.iter().map(|p| p.rotations.len()).sum();
    CheckLine::pass(
        Check::Plan,
        "cluster",
        format!(
            "{} → {}: {} control-plane hop(s), {rotations} pool rotation(s), within the skew policy at every step",
            plan.current.control_plane_version,
            plan.final_version,
            plan.hops.len()
        ),
    )
}

/// Each control-plane node a hop reaches answers through
/// `controlPlane.exec` (`NodeExec::reach`, which changes nothing). Without
/// a hop no node is reached; without an exec the packages line says why.
async fn reachability_lines(inputs: &CheckInputs, plan: &Plan) -> Vec<CheckLine> {
    let Ok(exec) = &inputs.exec else {
        return Vec::new();
    };
    let mut nodes: Vec<&str> = Vec::new();
    for hop in &plan.hops {
        for node in &hop.nodes {
            if !nodes.contains(&node.node.as_str()) {
                nodes.push(&node.node);
            }
        }
    }
    let api: Api<Node> = Api::all(inputs.client.clone());
    let mut lines = Vec::new();
    for name in nodes {
        let subject = format!("node {name}");
        let node = match with_retry("get node", || api.get_opt(name)).await {
            Ok(node) => node,
            Err(e) => {
                lines.push(CheckLine::cannot_verify(
                    Check::Reachability,
                    subject,
                    format!("cannot read node {name}: {e}"),
                    "check the kubeconfig's access, then rerun",
                ));
                continue;
            }
        };
        lines.push(match exec.reach(&exec_target(name, node.as_ref())).await {
            Ok(()) => CheckLine::pass(
                Check::Reachability,
                subject,
                format!("control-plane node {name} answers through controlPlane.exec"),
            ),
            Err(e) => CheckLine::fail(
                Check::Reachability,
                subject,
                e.to_string(),
                format!(
                    "make {name} reachable through controlPlane.exec (ssm: its agent online and allowed by its instance profile; ssh: its host key known, the key authorized, sudo without a password)"
                ),
            ),
        });
    }
    lines
}

async fn packages_line(inputs: &CheckInputs, needs: &TargetNeeds) -> CheckLine {
    let subject = "control plane";
    if needs.packages.is_empty() {
        return CheckLine::pass(Check::Packages, subject, "no hop: no package to install");
    }
    let exec = match &inputs.exec {
        Ok(exec) => exec,
        Err(why) => {
            return CheckLine::cannot_verify(
                Check::Packages,
                subject,
                format!("cannot reach the control-plane nodes: {why}"),
                "set controlPlane.exec (ssm, ssh or local) in the config",
            );
        }
    };
    match target::verify_packages(needs, &inputs.client, exec.as_ref()).await {
        Ok(()) => {
            let versions: BTreeSet<String> =
                needs.packages.iter().map(|n| n.version.bare()).collect();
            let nodes: BTreeSet<&str> = needs.packages.iter().map(|n| n.node.as_str()).collect();
            CheckLine::pass(
                Check::Packages,
                subject,
                format!(
                    "every control-plane node ({}) can install the packages of {}",
                    nodes.into_iter().collect::<Vec<_>>().join(", "),
                    versions.into_iter().collect::<Vec<_>>().join(", ")
                ),
            )
        }
        Err(TargetError::Missing(piece)) => CheckLine::fail(
            Check::Packages,
            subject,
            piece.to_string(),
            "choose a --to whose packages pkgs.k8s.io publishes for every hop",
        ),
        Err(TargetError::Unverified(why)) => CheckLine::cannot_verify(
            Check::Packages,
            subject,
            why,
            "make the control-plane nodes reachable and their package manager able to read pkgs.k8s.io, then rerun",
        ),
    }
}

/// Per pool: the image of every version it will boot (its rotations', else
/// the plan's final version).
async fn image_lines(inputs: &CheckInputs, plan: &Plan) -> Vec<CheckLine> {
    let engine = match &inputs.engine {
        Ok(engine) => engine,
        Err(why) => {
            return vec![CheckLine::cannot_verify(
                Check::Image,
                "pools",
                why.clone(),
                "fix the pools' configuration",
            )];
        }
    };
    let mut lines = Vec::new();
    for pool in &engine.pools {
        let mut versions: Vec<KubeVersion> = plan
            .pools
            .iter()
            .filter(|p| p.name == pool.name)
            .flat_map(|p| p.rotations.iter().map(|r| r.version))
            .collect();
        if versions.is_empty() {
            versions.push(plan.final_version);
        }
        versions.dedup();
        let subject = format!("pool {}", pool.name);
        let mut line = None;
        for version in &versions {
            let need = ImageNeed {
                pool: pool.name.clone(),
                version: *version,
            };
            match target::verify_image(&need, engine).await {
                Ok(()) => {}
                Err(TargetError::Missing(piece)) => {
                    line = Some(CheckLine::fail(
                        Check::Image,
                        subject.clone(),
                        piece.to_string(),
                        format!(
                            "publish an image for {version} that the pool's image rule finds, or fix the rule"
                        ),
                    ));
                    break;
                }
                Err(TargetError::Unverified(why)) => {
                    line = Some(CheckLine::cannot_verify(
                        Check::Image,
                        subject.clone(),
                        why,
                        "check the provider's credentials and endpoint, then rerun",
                    ));
                    break;
                }
            }
        }
        lines.push(line.unwrap_or_else(|| {
            CheckLine::pass(
                Check::Image,
                subject,
                format!(
                    "an image resolves for {}",
                    versions
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        }));
    }
    lines
}

/// Per pool: every worker node it selects maps to exactly one instance the
/// run may terminate (`rotation::mapping`, as the engine maps them).
async fn mapping_lines(inputs: &CheckInputs, plan: Option<&Plan>) -> Vec<CheckLine> {
    let engine = match &inputs.engine {
        Ok(engine) => engine,
        Err(why) => {
            return vec![CheckLine::cannot_verify(
                Check::Mapping,
                "pools",
                why.clone(),
                "fix the pools' configuration",
            )];
        }
    };
    let api: Api<Node> = Api::all(inputs.client.clone());
    let all = ListParams::default();
    let nodes = match with_retry("list nodes", || api.list(&all)).await {
        Ok(list) => list.items,
        Err(e) => {
            return vec![CheckLine::cannot_verify(
                Check::Mapping,
                "pools",
                format!("cannot list the nodes: {e}"),
                "check the kubeconfig's access, then rerun",
            )];
        }
    };
    let mut lines = Vec::new();
    for pool in &engine.pools {
        let subject = format!("pool {}", pool.name);
        let members: Vec<Arc<Node>> = nodes
            .iter()
            .filter(|n| {
                !is_control_plane(n) && pool.selects(&n.metadata.labels.clone().unwrap_or_default())
            })
            .cloned()
            .map(Arc::new)
            .collect();
        let pool_ref = PoolRef {
            cluster: engine.cluster.clone(),
            pool: pool.name.clone(),
        };
        let listed = match pool.provider.list(&pool_ref).await {
            Ok(listed) => listed,
            Err(e) => {
                lines.push(CheckLine::cannot_verify(
                    Check::Mapping,
                    subject,
                    format!("cannot list the pool's instances: {e}"),
                    "check the provider's credentials and endpoint, then rerun",
                ));
                continue;
            }
        };
        let (mapped, refused) =
            mapping::map_old_instances(pool, &engine.cluster, &members, &listed, |_| false).await;
        if refused.is_empty() {
            lines.push(CheckLine::pass(
                Check::Mapping,
                subject,
                format!(
                    "{} node(s), each on one instance tagged for this cluster and pool",
                    mapped.len()
                ),
            ));
        }
        for (node, problem) in refused {
            lines.push(CheckLine::fail(
                Check::Mapping,
                format!("node {node}"),
                format!("node {node} of pool {}: {problem}", pool.name),
                mapping_fix(&problem, &pool.name, &engine.cluster),
            ));
        }
        if let (Some(plan), Some((node, instance))) = (plan, mapped.iter().next()) {
            lines.extend(permission_lines(plan, pool, &pool_ref, node, instance).await);
        }
        if !mapped.is_empty() {
            // The window of slots a run keeps open in the pool
            // (`rotation::pool`): its maxSurge for its size, at least one.
            let size = u32::try_from(members.len()).unwrap_or(u32::MAX);
            let probe = RoomProbe {
                pool: pool_ref.clone(),
                surge: pool.max_surge.surge_for(size).max(1),
                replaced: mapped.into_values().collect(),
            };
            lines.extend(room_lines(pool, &probe).await);
        }
    }
    lines
}

/// The pool's provider asked whether the run's calls are allowed
/// (`CloudProvider::check_permissions`): the launch a slot replacing
/// `node` would request, terminating and tagging its `instance`.
async fn permission_lines(
    plan: &Plan,
    pool: &PoolConfig,
    pool_ref: &PoolRef,
    node: &str,
    instance: &Instance,
) -> Vec<CheckLine> {
    let subject = format!("pool {}", pool.name);
    let version = plan
        .pools
        .iter()
        .find(|p| p.name == pool.name)
        .and_then(|p| p.rotations.first())
        .map_or(plan.final_version, |r| r.version);
    let image = match pool
        .provider
        .resolve_image(pool_ref, &version.to_string())
        .await
    {
        // The image line says why there is none.
        Err(_) => return Vec::new(),
        Ok(image) => image,
    };
    let probe = PermissionProbe {
        launch: LaunchRequest {
            pool: pool_ref.clone(),
            slot: SlotKey {
                run_id: "check".into(),
                old_node: node.to_string(),
                attempt: 1,
            },
            image: image.id,
            zone: instance.zone.clone(),
            subnet: instance.subnet.clone(),
            // No token is minted to check: the launch is a dry run.
            user_data: Sensitive::new("#!/bin/bash\n# kubesurge check: a dry run\n".into()),
            node_name: format!("{node}-check"),
            extra_tags: Default::default(),
        },
        terminate: Some(instance.id.clone()),
    };
    pool.provider
        .check_permissions(&probe)
        .await
        .into_iter()
        .map(|check| match check.outcome {
            PermissionOutcome::Granted => CheckLine::pass(
                Check::Permission,
                subject.clone(),
                format!("{} allowed ({} says it would succeed)", check.action, check.asked),
            ),
            PermissionOutcome::Denied { message } => CheckLine::fail(
                Check::Permission,
                subject.clone(),
                format!("{} denied: {message}", check.action),
                format!(
                    "allow {} to the credentials kubesurge runs with (terraform/modules/iam has the policy)",
                    check.action
                ),
            ),
            PermissionOutcome::Unknown { message } => CheckLine::cannot_verify(
                Check::Permission,
                subject.clone(),
                format!("{}: {message}", check.action),
                "check the provider's endpoint and credentials, then rerun",
            ),
        })
        .collect()
}

/// The pool's provider asked whether there is room for the surge
/// (`CloudProvider::check_room`).
async fn room_lines(pool: &PoolConfig, probe: &RoomProbe) -> Vec<CheckLine> {
    pool.provider
        .check_room(probe)
        .await
        .into_iter()
        .map(|finding| {
            let subject = format!("pool {}: {}", pool.name, finding.subject);
            match finding.outcome {
                RoomOutcome::Enough { message } => CheckLine::pass(Check::Room, subject, message),
                RoomOutcome::Short { message, fix } => {
                    CheckLine::fail(Check::Room, subject, message, fix)
                }
                RoomOutcome::Unknown { message } => CheckLine::cannot_verify(
                    Check::Room,
                    subject,
                    message,
                    "check the provider's endpoint and credentials, then rerun",
                ),
            }
        })
        .collect()
}

fn mapping_fix(problem: &Unmappable, pool: &str, cluster: &str) -> String {
    match problem {
        Unmappable::NoInstance { .. } => format!(
            "give the node a providerID of an instance of pool {pool} (kubelet --provider-id, or the cloud controller), or take it out of the pool's selector"
        ),
        Unmappable::Tag {
            instance,
            key,
            wanted,
            ..
        } => format!(
            "tag instance {instance} {key}={wanted} (kubesurge init --tag does it for the nodes it maps), or take the node out of the pool's selector"
        ),
        Unmappable::Lookup(_) => format!(
            "check that the provider can look up this cluster's ({cluster}) instances, then rerun"
        ),
    }
}

/// The PDBs that would block a drain of a node the plan drains, now.
async fn disruption_lines(inputs: &CheckInputs, plan: &Plan) -> Vec<CheckLine> {
    let drained: BTreeSet<String> = plan
        .pools
        .iter()
        .filter(|p| !p.rotations.is_empty())
        .flat_map(|p| p.nodes.iter().map(|n| n.name.clone()))
        .chain(
            plan.hops
                .iter()
                .flat_map(|h| h.nodes.iter().filter(|n| n.upgrade_kubelet))
                .map(|n| n.node.clone()),
        )
        .collect();
    let subject = "disruption budgets";
    if drained.is_empty() {
        return vec![CheckLine::pass(
            Check::Disruption,
            subject,
            "the plan drains no node",
        )];
    }
    let pdbs: Api<PodDisruptionBudget> = Api::all(inputs.client.clone());
    let pods: Api<Pod> = Api::all(inputs.client.clone());
    let all = ListParams::default();
    let listed = async {
        let pdbs = with_retry("list poddisruptionbudgets", || pdbs.list(&all)).await?;
        let pods = with_retry("list pods", || pods.list(&all)).await?;
        Ok::<_, kube::Error>((pdbs.items, pods.items))
    }
    .await;
    let (pdbs, pods) = match listed {
        Ok(found) => found,
        Err(e) => {
            return vec![CheckLine::cannot_verify(
                Check::Disruption,
                subject,
                format!("cannot list the PodDisruptionBudgets and pods: {e}"),
                "check the kubeconfig's access, then rerun",
            )];
        }
    };
    let blocked = pdb::blocking(&pdbs, &pods, &drained, inputs.unmanaged);
    if blocked.is_empty() {
        return vec![CheckLine::pass(
            Check::Disruption,
            subject,
            format!(
                "no PodDisruptionBudget blocks a drain of the {} node(s) the run drains",
                drained.len()
            ),
        )];
    }
    blocked
        .into_iter()
        .map(|b| {
            CheckLine::fail(
                Check::Disruption,
                format!("pdb {}", b.pdb),
                format!(
                    "PodDisruptionBudget {} allows no disruption now and covers pod {} on node {}, which the run drains",
                    b.pdb, b.pod, b.node
                ),
                format!(
                    "scale up what {} protects, or relax its minAvailable/maxUnavailable, before the run; else the drain waits drain.timeout, then does what drain.onTimeout says",
                    b.pdb
                ),
            )
        })
        .collect()
}
