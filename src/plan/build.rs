//! The planner proper: hops, rotations, warnings, then a check of every
//! state the plan passes through.

use std::collections::{BTreeMap, BTreeSet};

use super::estimate;
use super::order::replacement_order;
use super::states::{KUBEADM_LATE_ADDONS_FROM_MINOR, plan_states};
use super::types::*;
use super::{PlanRequest, PoolInput};
use crate::inventory::{Inventory, WorkerNode};
use crate::version::{
    Component, KubeVersion, LEGACY_KUBELET_MAX_LAG, Rule, Violation, check, kubelet_max_lag,
    latest_known_patch, newest_apiserver_minor_for_kubelet, support_warnings,
};

/// Violations of the current cluster that no plan repairs: the planner only
/// moves versions forward, one minor at a time, and these need a component
/// to go back (or a kube-apiserver to jump two minors).
fn is_irreparable(v: &Violation) -> bool {
    matches!(
        v.rule,
        Rule::ApiserverHaSkew
            | Rule::KubeletNewerThanApiserver
            | Rule::ControlPlaneComponentNewerThanApiserver
            | Rule::MajorMismatch
    )
}

type ViolationKey = (Rule, Component, Option<String>);

fn key(v: &Violation) -> ViolationKey {
    (v.rule, v.component, v.node.clone())
}

pub(super) fn build(req: &PlanRequest<'_>) -> Result<Plan, PlanRefusal> {
    let inv = req.inventory;
    let cp = control_plane_versions(inv)?;
    let (oldest, newest) = apiserver_range(&cp)?;

    if let Some(t) = req.target {
        if t.major != oldest.major {
            return Err(PlanRefusal::OtherMajor {
                target: t,
                current: oldest,
            });
        }
        if let Some((node, component, running)) = highest_control_plane_version(&cp)
            && running > t
        {
            return Err(PlanRefusal::Downgrade {
                target: t,
                running,
                node,
                component,
            });
        }
    }

    let current_violations = check(&inv.versions());
    let irreparable: Vec<String> = current_violations
        .iter()
        .filter(|v| is_irreparable(v))
        .map(|v| v.message.clone())
        .collect();
    if !irreparable.is_empty() {
        return Err(PlanRefusal::IrreparableSkew {
            violations: irreparable,
        });
    }

    let mut warnings = Vec::new();
    let hop_versions = hop_versions(
        &cp,
        oldest,
        newest,
        inv.kubeadm_version,
        req.target,
        &mut warnings,
    );
    let final_version = req.target.unwrap_or(oldest);
    // The newest kube-apiserver minor at any moment of the plan.
    let peak_minor = newest.minor.max(final_version.minor);
    // Newest kube-apiserver before hop i (0-based) raises it.
    let newest_before = |i: usize| {
        if i == 0 { newest } else { hop_versions[i - 1] }
    };
    // The control plane's version once hop i (1-based; 0 = none yet) is done.
    let cp_after = |i: usize| {
        if i == 0 { oldest } else { hop_versions[i - 1] }
    };

    // Workers: by configured pool, or unpooled.
    let configured: BTreeSet<&str> = req.pools.iter().map(|p| p.name.as_str()).collect();
    let mut pooled: BTreeMap<&str, Vec<&WorkerNode>> = BTreeMap::new();
    let mut unpooled: Vec<UnpooledWorker> = Vec::new();
    let mut unconfigured: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for w in &inv.workers {
        match w.pool.as_deref() {
            Some(p) if configured.contains(p) => pooled.entry(p).or_default().push(w),
            other => {
                if let Some(p) = other {
                    unconfigured.entry(p).or_default().push(&w.name);
                }
                unpooled.push(UnpooledWorker {
                    name: w.name.clone(),
                    kubelet: w.kubelet,
                    pool: w.pool.clone(),
                });
            }
        }
    }
    unpooled.sort_by(|a, b| a.name.cmp(&b.name));

    // Unpooled workers cannot be replaced: they must stay within policy up
    // to the newest kube-apiserver the plan reaches.
    let too_old: Vec<NodeKubelet> = unpooled
        .iter()
        .filter(|w| newest_apiserver_minor_for_kubelet(w.kubelet) < peak_minor)
        .map(|w| NodeKubelet {
            node: w.name.clone(),
            kubelet: w.kubelet,
        })
        .collect();
    if let Some(tolerance) = too_old
        .iter()
        .map(|w| newest_apiserver_minor_for_kubelet(w.kubelet))
        .min()
    {
        let limit_reached_at = std::iter::once(newest)
            .chain(hop_versions.iter().copied())
            .find(|v| v.minor > tolerance)
            .unwrap_or(final_version);
        return Err(PlanRefusal::UnpooledWorkersTooOld {
            nodes: too_old,
            limit_reached_at,
        });
    }

    // Pools.
    let mut pools = Vec::with_capacity(req.pools.len());
    for input in req.pools {
        let nodes = pooled.remove(input.name.as_str()).unwrap_or_default();
        let pool = plan_pool(
            input,
            nodes,
            &hop_versions,
            oldest,
            newest,
            final_version,
            &newest_before,
            &cp_after,
            &mut warnings,
        );
        if !pool.rotations.is_empty() && pool.surge == 0 && pool.unavailable == 0 {
            return Err(PlanRefusal::ZeroBudget {
                pool: pool.name.clone(),
                max_surge: pool.max_surge,
                max_unavailable: pool.max_unavailable,
                size: pool.size,
            });
        }
        pools.push(pool);
    }

    // Hops.
    let hops = plan_hops(
        &cp,
        inv.kubeadm_version,
        inv.addons.kube_proxy,
        &inv.addons.coredns,
        &hop_versions,
    );

    // Unpooled workers: within policy (checked above), maybe behind.
    for (i, v) in hop_versions.iter().enumerate() {
        let before = newest_before(i);
        let at_limit: Vec<String> = unpooled
            .iter()
            .filter(|w| newest_apiserver_minor_for_kubelet(w.kubelet) == v.minor)
            .map(|w| format!("{} ({})", w.name, w.kubelet))
            .collect();
        if v.minor > before.minor && !at_limit.is_empty() {
            warnings.push(Warning {
                kind: WarningKind::KubeletAtSkewLimit,
                message: format!(
                    "hop {} (to {v}): workers in no pool go through the hop at the widest skew \
                     the policy allows; upgrade them before the control plane's next minor: {}",
                    i + 1,
                    at_limit.join(", ")
                ),
            });
        }
    }
    let behind: Vec<String> = unpooled
        .iter()
        .filter(|w| w.kubelet < final_version)
        .map(|w| format!("{} ({})", w.name, w.kubelet))
        .collect();
    if !behind.is_empty() {
        warnings.push(Warning {
            kind: WarningKind::WorkersLeftBehind,
            message: format!(
                "workers in no pool stay behind the control plane ({final_version}); kubesurge \
                 does not replace them: {}",
                behind.join(", ")
            ),
        });
    }
    for (pool, nodes) in &unconfigured {
        warnings.push(Warning {
            kind: WarningKind::PoolNotConfigured,
            message: format!(
                "nodes labelled for pool {pool} have no pool settings, so they are treated as \
                 workers in no pool: {}",
                nodes.join(", ")
            ),
        });
    }

    // The control plane as found.
    if oldest != newest
        || cp
            .iter()
            .any(|n| n.controller_manager != n.apiserver || n.scheduler != n.apiserver)
    {
        let detail = cp
            .iter()
            .map(|n| format!("{} {}", n.name, n.apiserver))
            .collect::<Vec<_>>()
            .join(", ");
        let what_next = match hop_versions.first() {
            Some(v) => format!("hop 1 (to {v}) completes it"),
            None => format!(
                "upgrading to {} (`kubesurge upgrade --to {}`) completes it",
                newest, newest
            ),
        };
        warnings.push(Warning {
            kind: WarningKind::ControlPlaneMidUpgrade,
            message: format!(
                "the control plane is part-way through an upgrade (kube-apiserver: {detail}); \
                 {what_next}"
            ),
        });
    }
    if !hop_versions.is_empty() {
        for n in inv.control_plane.iter().filter(|n| !n.ready) {
            warnings.push(Warning {
                kind: WarningKind::ControlPlaneNotReady,
                message: format!(
                    "control-plane node {} is NotReady; kubeadm upgrade refuses to run until \
                     every control-plane node is Ready",
                    n.name
                ),
            });
        }
    }
    for w in support_warnings(oldest, req.target, req.today) {
        warnings.push(Warning {
            kind: WarningKind::SupportWindow,
            message: w.message,
        });
    }

    // The order: rotations that cannot wait, then each hop followed by the
    // rotations due after it.
    let mut sequence = Vec::new();
    let rotations_at = |after: Option<usize>, sequence: &mut Vec<Step>| {
        for p in &pools {
            for r in p.rotations.iter().filter(|r| r.after_hop == after) {
                sequence.push(Step::Rotate {
                    pool: p.name.clone(),
                    rotation: r.number,
                });
            }
        }
    };
    rotations_at(None, &mut sequence);
    for h in &hops {
        sequence.push(Step::Hop { hop: h.number });
        rotations_at(Some(h.number), &mut sequence);
    }

    let nothing_to_do = hops.is_empty() && pools.iter().all(|p| p.rotations.is_empty());
    let mut plan = Plan {
        current: CurrentVersions {
            control_plane_version: oldest,
            newest_apiserver: newest,
            control_plane: cp,
            kube_proxy: inv.addons.kube_proxy,
            coredns: inv.addons.coredns.clone(),
        },
        requested_target: req.target,
        final_version,
        nothing_to_do,
        hops,
        pools,
        unpooled_workers: unpooled,
        sequence,
        warnings,
    };

    // Every state must be within policy, apart from what is broken now and
    // being repaired.
    let existing: BTreeSet<ViolationKey> = current_violations.iter().map(key).collect();
    let states = plan_states(&plan);
    let mut kube_proxy_ahead_warned = BTreeSet::new();
    for state in states.iter().skip(1) {
        let (violations, tolerated) = state.split_violations();
        let new: Vec<String> = violations
            .iter()
            .filter(|v| !existing.contains(&key(v)))
            .map(|v| v.message.clone())
            .collect();
        if !new.is_empty() {
            return Err(PlanRefusal::NoLegalPath {
                step: state.step.clone(),
                violations: new,
            });
        }
        if let Some(hop) = state.hop
            && !tolerated.is_empty()
            && kube_proxy_ahead_warned.insert(hop)
        {
            plan.warnings.push(Warning {
                kind: WarningKind::KubeProxyAheadDuringHop,
                message: format!(
                    "hop {hop}: kubeadm before v1.28 upgrades kube-proxy in `kubeadm upgrade \
                     apply` on the first control-plane node, so kube-proxy runs one minor ahead of \
                     the kube-apiservers not yet upgraded until the hop's first pass ends (the \
                     order the Kubernetes project shipped until v1.28)"
                ),
            });
        }
    }
    let remaining: BTreeSet<ViolationKey> = states
        .last()
        .map(|s| s.violations().iter().map(key).collect())
        .unwrap_or_default();
    for v in &current_violations {
        let outcome = if remaining.contains(&key(v)) {
            "this plan does not repair it"
        } else {
            "the plan repairs it"
        };
        plan.warnings.push(Warning {
            kind: WarningKind::CurrentSkew,
            message: format!(
                "the cluster breaks the skew policy now: {}; {outcome}",
                v.message
            ),
        });
    }
    Ok(plan)
}

fn control_plane_versions(inv: &Inventory) -> Result<Vec<ControlPlaneNodeVersions>, PlanRefusal> {
    let mut out = Vec::with_capacity(inv.control_plane.len());
    for n in &inv.control_plane {
        let need = |v: Option<KubeVersion>, component| {
            v.ok_or_else(|| PlanRefusal::UnknownComponentVersion {
                node: n.name.clone(),
                component,
            })
        };
        out.push(ControlPlaneNodeVersions {
            name: n.name.clone(),
            apiserver: need(n.apiserver, Component::Apiserver)?,
            controller_manager: need(n.controller_manager, Component::ControllerManager)?,
            scheduler: need(n.scheduler, Component::Scheduler)?,
            etcd: n.etcd.clone(),
            kubelet: n.kubelet,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn apiserver_range(
    cp: &[ControlPlaneNodeVersions],
) -> Result<(KubeVersion, KubeVersion), PlanRefusal> {
    let oldest = cp.iter().map(|n| n.apiserver).min();
    let newest = cp.iter().map(|n| n.apiserver).max();
    match (oldest, newest) {
        (Some(o), Some(n)) => Ok((o, n)),
        _ => Err(PlanRefusal::NoControlPlane),
    }
}

/// The newest version any control-plane component or kubelet runs.
fn highest_control_plane_version(
    cp: &[ControlPlaneNodeVersions],
) -> Option<(String, Component, KubeVersion)> {
    cp.iter()
        .flat_map(|n| {
            [
                (Component::Apiserver, n.apiserver),
                (Component::ControllerManager, n.controller_manager),
                (Component::Scheduler, n.scheduler),
                (Component::Kubelet, n.kubelet),
            ]
            .map(|(c, v)| (n.name.clone(), c, v))
        })
        // The first of equals: name the kube-apiserver of the first node.
        .rev()
        .max_by(|a, b| a.2.cmp(&b.2))
}

fn running_versions(cp: &[ControlPlaneNodeVersions]) -> impl Iterator<Item = KubeVersion> + '_ {
    cp.iter()
        .flat_map(|n| [n.apiserver, n.controller_manager, n.scheduler, n.kubelet])
}

/// The version of every hop, in order. One minor per hop; intermediate
/// minors go to their newest known patch; the last hop goes to the target.
fn hop_versions(
    cp: &[ControlPlaneNodeVersions],
    oldest: KubeVersion,
    newest: KubeVersion,
    recorded: Option<KubeVersion>,
    target: Option<KubeVersion>,
    warnings: &mut Vec<Warning>,
) -> Vec<KubeVersion> {
    let Some(t) = target else {
        return Vec::new();
    };
    if t.minor <= newest.minor {
        // Same minor as the newest kube-apiserver (older targets were
        // refused): one hop brings every straggler to the target.
        // An apply that stopped before recording the version (kubeadm-config
        // behind the newest kube-apiserver) is finished by a hop too.
        return if running_versions(cp).any(|v| v < t) || recorded.is_some_and(|r| r < t) {
            vec![t]
        } else {
            Vec::new()
        };
    }
    // Before the next minor, finish the current one when something lags:
    // kube-apiservers a minor apart (a hop in progress), a controller-manager
    // or scheduler a minor behind its kube-apiserver, or a kubelet that
    // could not stay within policy through the next minor.
    let lagging = newest.minor > oldest.minor
        || recorded.is_some_and(|r| r < newest)
        || cp
            .iter()
            .any(|n| n.controller_manager.minor < newest.minor || n.scheduler.minor < newest.minor)
        || cp
            .iter()
            .any(|n| newest_apiserver_minor_for_kubelet(n.kubelet) <= newest.minor);
    let first = if lagging {
        newest.minor
    } else {
        newest.minor + 1
    };
    (first..=t.minor)
        .map(|m| {
            if m == t.minor {
                t
            } else {
                intermediate_version(cp, t.major, m, warnings)
            }
        })
        .collect()
}

/// The version an intermediate hop through `major.minor` goes to: the
/// newest patch the release table knows, or one already running if newer.
fn intermediate_version(
    cp: &[ControlPlaneNodeVersions],
    major: u64,
    minor: u64,
    warnings: &mut Vec<Warning>,
) -> KubeVersion {
    let running = running_versions(cp)
        .filter(|v| v.major == major && v.minor == minor)
        .max();
    let known = latest_known_patch(major, minor);
    match (known, running) {
        (Some(k), Some(r)) => k.max(r),
        (Some(k), None) => k,
        (None, found) => {
            let v = found.unwrap_or(KubeVersion::new(major, minor, 0));
            warnings.push(Warning {
                kind: WarningKind::UnknownIntermediateVersion,
                message: format!(
                    "v{major}.{minor} is not in kubesurge's release table; the hop through it \
                     goes to {v}{}",
                    if found.is_some() {
                        " (the newest patch running)"
                    } else {
                        ", the minor's first release; upgrade in steps with --to to pick a newer \
                         patch"
                    }
                ),
            });
            v
        }
    }
}

fn plan_hops(
    cp: &[ControlPlaneNodeVersions],
    mut recorded: Option<KubeVersion>,
    kube_proxy: Option<KubeVersion>,
    coredns: &Option<String>,
    hop_versions: &[KubeVersion],
) -> Vec<Hop> {
    let mut sim = cp.to_vec();
    let mut kube_proxy = kube_proxy;
    let mut hops = Vec::with_capacity(hop_versions.len());
    for (i, &to) in hop_versions.iter().enumerate() {
        let from = sim.iter().map(|n| n.apiserver).min().unwrap_or(to);
        let last = i + 1 == hop_versions.len();
        let kind = if to.minor > from.minor {
            HopKind::Minor
        } else if last && to > from {
            HopKind::Patch
        } else {
            HopKind::Completion
        };
        // `kubeadm upgrade apply` runs once per hop, on the first node to
        // change, and records the version in kubeadm-config last; the other
        // nodes take `kubeadm upgrade node`, which writes the *recorded*
        // version. So the apply is done when kubeadm-config says so — a
        // kube-apiserver at `to` alone may be an apply that died before
        // recording it, and `upgrade node` would then write the old version
        // back. Without a readable kubeadm-config, a kube-apiserver at `to`
        // is the only sign.
        let mut applied = match recorded {
            Some(r) => r >= to,
            None => sim.iter().any(|n| n.apiserver == to),
        };
        // An unfinished apply whose every node already runs `to` (a single
        // control-plane node, or every node done by hand) is finished by an
        // apply on the first node: kubeadm skips the equal manifests
        // ("Current and new manifests … are equal, skipping upgrade") and
        // records the version.
        let finish_apply_on = (!applied
            && sim
                .iter()
                .all(|n| n.apiserver == to && n.controller_manager == to && n.scheduler == to))
        .then(|| sim.first().map(|n| n.name.clone()))
        .flatten();
        let mut apply_node = None;
        let nodes: Vec<HopNode> = sim
            .iter()
            .map(|n| {
                let upgrade_components = n.apiserver != to
                    || n.controller_manager != to
                    || n.scheduler != to
                    || finish_apply_on.as_deref() == Some(n.name.as_str());
                let kubeadm = upgrade_components.then(|| {
                    if applied {
                        KubeadmCommand::Node
                    } else {
                        applied = true;
                        apply_node = Some(n.name.clone());
                        KubeadmCommand::Apply
                    }
                });
                HopNode {
                    node: n.name.clone(),
                    kubeadm,
                    upgrade_components,
                    upgrade_kubelet: n.kubelet != to,
                }
            })
            .collect();
        let last_changing = nodes
            .iter()
            .rev()
            .find(|n| n.upgrade_components)
            .map(|n| n.node.clone());
        let addons_after_node = if to.minor < KUBEADM_LATE_ADDONS_FROM_MINOR {
            apply_node.or(last_changing)
        } else {
            last_changing
        };
        let kube_proxy_change = kube_proxy.map(|p| {
            let to = if addons_after_node.is_some() && p < to {
                to
            } else {
                p
            };
            VersionChange { from: p, to }
        });

        let mut components = Vec::new();
        for n in &sim {
            for (c, v) in [
                (Component::Apiserver, n.apiserver),
                (Component::ControllerManager, n.controller_manager),
                (Component::Scheduler, n.scheduler),
            ] {
                components.push(ComponentChange {
                    name: c,
                    node_name: Some(n.name.clone()),
                    current_version: v.to_string(),
                    new_version: to.to_string(),
                });
            }
            components.push(ComponentChange {
                name: Component::Etcd,
                node_name: Some(n.name.clone()),
                current_version: n.etcd.clone().unwrap_or_else(|| "external".to_string()),
                new_version: if n.etcd.is_some() {
                    "managed by kubeadm".to_string()
                } else {
                    "unchanged".to_string()
                },
            });
        }
        for n in &sim {
            components.push(ComponentChange {
                name: Component::Kubelet,
                node_name: Some(n.name.clone()),
                current_version: n.kubelet.to_string(),
                new_version: to.to_string(),
            });
        }
        if let Some(change) = kube_proxy_change {
            components.push(ComponentChange {
                name: Component::KubeProxy,
                node_name: None,
                current_version: change.from.to_string(),
                new_version: change.to.to_string(),
            });
        }
        components.push(ComponentChange {
            name: Component::CoreDns,
            node_name: None,
            current_version: coredns.clone().unwrap_or_else(|| "unknown".to_string()),
            new_version: if addons_after_node.is_some() {
                "upgraded by kubeadm".to_string()
            } else {
                "unchanged".to_string()
            },
        });

        for n in &mut sim {
            n.apiserver = to;
            n.controller_manager = to;
            n.scheduler = to;
            n.kubelet = to;
        }
        kube_proxy = kube_proxy_change.map(|c| c.to);
        recorded = recorded.map(|_| to);
        hops.push(Hop {
            number: i + 1,
            kind,
            from,
            to,
            nodes,
            addons_after_node,
            kube_proxy: kube_proxy_change,
            components,
        });
    }
    hops
}

/// One lineage of a pool: a node seen now, then its replacements.
struct Lineage {
    original: String,
    zone: Option<String>,
    kubelet: KubeVersion,
    existing: bool,
}

fn tolerance(lineages: &[Lineage]) -> Option<u64> {
    lineages
        .iter()
        .map(|l| newest_apiserver_minor_for_kubelet(l.kubelet))
        .min()
}

fn oldest_kubelet(lineages: &[Lineage]) -> Option<KubeVersion> {
    lineages.iter().map(|l| l.kubelet).min()
}

/// The policy line that limits a kubelet at `kubelet`.
fn skew_rule_words(kubelet: KubeVersion) -> &'static str {
    if kubelet_max_lag(kubelet) == LEGACY_KUBELET_MAX_LAG {
        "kubelets older than v1.25 may trail kube-apiserver by two minors (N-2)"
    } else {
        "kubelets may trail kube-apiserver by three minors (N-3 since v1.28, KEP-3935)"
    }
}

#[allow(clippy::too_many_arguments)]
fn plan_pool(
    input: &PoolInput,
    nodes: Vec<&WorkerNode>,
    hop_versions: &[KubeVersion],
    oldest: KubeVersion,
    newest: KubeVersion,
    final_version: KubeVersion,
    newest_before: &dyn Fn(usize) -> KubeVersion,
    cp_after: &dyn Fn(usize) -> KubeVersion,
    warnings: &mut Vec<Warning>,
) -> PoolPlan {
    let ordered = replacement_order(nodes);
    let size = ordered.len() as u32;
    let surge = input.max_surge.surge_for(size);
    let unavailable = input.max_unavailable.unavailable_for(size);
    let mut lineages: Vec<Lineage> = ordered
        .iter()
        .map(|n| Lineage {
            original: n.name.clone(),
            zone: n.zone.clone(),
            kubelet: n.kubelet,
            existing: true,
        })
        .collect();
    let mut rotations: Vec<Rotation> = Vec::new();
    let mut rotate = |lineages: &mut Vec<Lineage>,
                      after_hop: Option<usize>,
                      version: KubeVersion,
                      reason: String| {
        let mut slots = Vec::new();
        for l in lineages.iter_mut().filter(|l| l.kubelet < version) {
            slots.push(Slot {
                node: l.original.clone(),
                existing: l.existing,
                zone: l.zone.clone(),
                from: l.kubelet,
                to: version,
            });
            l.kubelet = version;
            l.existing = false;
        }
        if slots.is_empty() {
            return;
        }
        let estimate = estimate::estimate(slots.len() as u32, surge, unavailable);
        rotations.push(Rotation {
            number: rotations.len() + 1,
            after_hop,
            version,
            reason,
            slots,
            estimate,
        });
    };

    if let (Some(tol), Some(k)) = (tolerance(&lineages), oldest_kubelet(&lineages))
        && tol < newest.minor
    {
        rotate(
            &mut lineages,
            None,
            oldest,
            format!(
                "kubelets at {k} are already {} minors behind kube-apiserver {newest}, more than \
                 the policy allows ({})",
                newest.minors_since(k),
                skew_rule_words(k)
            ),
        );
    }
    for (i, &v) in hop_versions.iter().enumerate() {
        if let (Some(tol), Some(k)) = (tolerance(&lineages), oldest_kubelet(&lineages))
            && tol < v.minor
        {
            let now = cp_after(i);
            rotate(
                &mut lineages,
                (i > 0).then_some(i),
                now,
                format!(
                    "kubelets at {k} would be {} minors behind kube-apiserver {v} during hop {} \
                     ({}), so the pool is replaced at {now}, as late as the policy allows",
                    v.minors_since(k),
                    i + 1,
                    skew_rule_words(k)
                ),
            );
        }
        if let (Some(tol), Some(k)) = (tolerance(&lineages), oldest_kubelet(&lineages))
            && tol == v.minor
            && v.minor > newest_before(i).minor
        {
            warnings.push(Warning {
                kind: WarningKind::KubeletAtSkewLimit,
                message: format!(
                    "hop {} (to {v}): pool {} keeps kubelets at {k} through the hop, {} minors \
                     behind kube-apiserver {v}: the widest skew the policy allows ({}); the pool \
                     is replaced right after this hop",
                    i + 1,
                    input.name,
                    v.minors_since(k),
                    skew_rule_words(k)
                ),
            });
        }
    }
    if lineages.iter().any(|l| l.kubelet < final_version) {
        let k = oldest_kubelet(&lineages).unwrap_or(final_version);
        let after = (!hop_versions.is_empty()).then_some(hop_versions.len());
        rotate(
            &mut lineages,
            after,
            final_version,
            format!(
                "kubelets at {k} are older than the control plane's {} version {final_version}",
                if hop_versions.is_empty() {
                    "current"
                } else {
                    "final"
                }
            ),
        );
    }

    let estimate = estimate::sum(rotations.iter().map(|r| r.estimate));
    PoolPlan {
        name: input.name.clone(),
        size,
        nodes: ordered
            .iter()
            .map(|n| PoolNode {
                name: n.name.clone(),
                zone: n.zone.clone(),
                kubelet: n.kubelet,
                created: n.created,
            })
            .collect(),
        max_surge: input.max_surge,
        max_unavailable: input.max_unavailable,
        surge,
        unavailable,
        rotations,
        estimate,
    }
}
