//! Scenario tests of the planner.

use jiff::Timestamp;
use jiff::civil::date;

use super::*;
use crate::inventory::{Addons, ControlPlaneNode, Inventory, WorkerNode};
use crate::version::{Component, Rule};

pub(super) fn v(s: &str) -> KubeVersion {
    s.parse().unwrap()
}

pub(super) fn cp_node(name: &str, version: &str) -> ControlPlaneNode {
    ControlPlaneNode {
        name: name.to_string(),
        kubelet: v(version),
        apiserver: Some(v(version)),
        controller_manager: Some(v(version)),
        scheduler: Some(v(version)),
        etcd: Some("3.5.15-0".to_string()),
        zone: Some("eu-west-1a".to_string()),
        provider_id: None,
        ready: true,
    }
}

pub(super) fn worker(
    name: &str,
    pool: Option<&str>,
    kubelet: &str,
    zone: &str,
    age: i64,
) -> WorkerNode {
    WorkerNode {
        name: name.to_string(),
        kubelet: v(kubelet),
        pool: pool.map(str::to_string),
        created: Timestamp::from_second(1_700_000_000 + age).unwrap(),
        zone: Some(zone.to_string()),
        provider_id: None,
        internal_ip: None,
        ready: true,
        unschedulable: false,
    }
}

fn inventory(control_plane: Vec<ControlPlaneNode>, workers: Vec<WorkerNode>) -> Inventory {
    let oldest = control_plane
        .iter()
        .filter_map(|n| n.apiserver)
        .min()
        .unwrap_or(v("1.34.0"));
    Inventory {
        apiserver_version: oldest,
        control_plane,
        workers,
        addons: Addons {
            coredns: Some("v1.11.3".to_string()),
            kube_proxy: Some(oldest),
        },
        kubeadm_version: None,
    }
}

fn pool(name: &str) -> PoolInput {
    PoolInput {
        name: name.to_string(),
        max_surge: Budget::Percent(25),
        max_unavailable: Budget::Count(0),
    }
}

fn run(inv: &Inventory, target: Option<&str>, pools: &[PoolInput]) -> Result<Plan, PlanRefusal> {
    plan(&PlanRequest {
        inventory: inv,
        target: target.map(v),
        pools,
        today: date(2026, 1, 10),
    })
}

fn three_cp(version: &str) -> Vec<ControlPlaneNode> {
    vec![
        cp_node("cp-1", version),
        cp_node("cp-2", version),
        cp_node("cp-3", version),
    ]
}

fn workers(pool: &str, kubelet: &str, n: usize) -> Vec<WorkerNode> {
    (0..n)
        .map(|i| {
            let zone = ["eu-west-1a", "eu-west-1b", "eu-west-1c"][i % 3];
            worker(&format!("{pool}-{i}"), Some(pool), kubelet, zone, i as i64)
        })
        .collect()
}

fn hop_targets(plan: &Plan) -> Vec<KubeVersion> {
    plan.hops.iter().map(|h| h.to).collect()
}

fn assert_every_state_legal(plan: &Plan) {
    for s in plan_states(plan) {
        assert_eq!(s.violations(), vec![], "state: {}", s.step);
    }
}

#[test]
fn one_hop_upgrade() {
    let inv = inventory(three_cp("1.33.5"), workers("general", "1.33.5", 4));
    let plan = run(&inv, Some("1.34.4"), &[pool("general")]).unwrap();

    assert_eq!(hop_targets(&plan), [v("1.34.4")]);
    let hop = &plan.hops[0];
    assert_eq!((hop.kind, hop.from), (HopKind::Minor, v("1.33.5")));
    let kubeadm: Vec<_> = hop.nodes.iter().map(|n| n.kubeadm).collect();
    assert_eq!(
        kubeadm,
        [
            Some(KubeadmCommand::Apply),
            Some(KubeadmCommand::Node),
            Some(KubeadmCommand::Node)
        ]
    );
    assert!(hop.nodes.iter().all(|n| n.upgrade_kubelet));
    // kubeadm ≥ v1.28 upgrades the add-ons with the last control-plane node.
    assert_eq!(hop.addons_after_node.as_deref(), Some("cp-3"));
    assert_eq!(
        hop.kube_proxy,
        Some(VersionChange {
            from: v("1.33.5"),
            to: v("1.34.4")
        })
    );
    let etcd = hop
        .components
        .iter()
        .find(|c| c.name == Component::Etcd)
        .unwrap();
    assert_eq!(etcd.new_version, "managed by kubeadm");
    let coredns = hop
        .components
        .iter()
        .find(|c| c.name == Component::CoreDns)
        .unwrap();
    assert_eq!(coredns.new_version, "upgraded by kubeadm");

    let pool = &plan.pools[0];
    assert_eq!(pool.rotations.len(), 1);
    let r = &pool.rotations[0];
    assert_eq!(
        (r.after_hop, r.version, r.slots.len()),
        (Some(1), v("1.34.4"), 4)
    );
    // 25% of 4 = 1 surge slot at a time.
    assert_eq!((pool.surge, pool.unavailable), (1, 0));
    assert_eq!(r.estimate.waves, 4);
    assert_eq!(r.estimate.seconds, 4 * estimate::SLOT_SECS);
    assert_eq!(
        plan.sequence,
        [
            Step::Hop { hop: 1 },
            Step::Rotate {
                pool: "general".into(),
                rotation: 1
            }
        ]
    );
    assert!(!plan.nothing_to_do);
    assert_every_state_legal(&plan);
}

#[test]
fn three_hops_rotate_v1_31_workers_once_after_the_last_hop() {
    let inv = inventory(three_cp("1.31.4"), workers("general", "1.31.4", 6));
    let plan = run(&inv, Some("1.34.2"), &[pool("general")]).unwrap();

    // Intermediate hops go to the newest patch the table knows.
    assert_eq!(hop_targets(&plan), [v("1.32.12"), v("1.33.8"), v("1.34.2")]);
    let rotations = &plan.pools[0].rotations;
    assert_eq!(rotations.len(), 1, "{rotations:#?}");
    assert_eq!(rotations[0].after_hop, Some(3));
    assert_eq!(rotations[0].version, v("1.34.2"));
    assert!(
        rotations[0]
            .slots
            .iter()
            .all(|s| s.existing && s.from == v("1.31.4"))
    );
    assert_eq!(
        plan.sequence,
        [
            Step::Hop { hop: 1 },
            Step::Hop { hop: 2 },
            Step::Hop { hop: 3 },
            Step::Rotate {
                pool: "general".into(),
                rotation: 1
            }
        ]
    );
    // Through hop 3 the workers are three minors behind: warned, not blocked.
    let at_limit: Vec<_> = plan
        .warnings
        .iter()
        .filter(|w| w.kind == WarningKind::KubeletAtSkewLimit)
        .collect();
    assert_eq!(at_limit.len(), 1, "{:#?}", plan.warnings);
    assert!(
        at_limit[0].message.starts_with("hop 3"),
        "{}",
        at_limit[0].message
    );
    assert!(at_limit[0].message.contains("KEP-3935"));
    assert_every_state_legal(&plan);
}

#[test]
fn workers_already_three_minors_behind_rotate_before_the_first_hop() {
    let inv = inventory(three_cp("1.34.2"), workers("general", "1.31.9", 3));
    let plan = run(&inv, Some("1.35.1"), &[pool("general")]).unwrap();

    assert_eq!(hop_targets(&plan), [v("1.35.1")]);
    let rotations = &plan.pools[0].rotations;
    assert_eq!(rotations.len(), 2);
    assert_eq!(
        (rotations[0].after_hop, rotations[0].version),
        (None, v("1.34.2"))
    );
    assert!(
        rotations[0].reason.contains("would be 4 minors behind"),
        "{}",
        rotations[0].reason
    );
    assert_eq!(
        (rotations[1].after_hop, rotations[1].version),
        (Some(1), v("1.35.1"))
    );
    // The second rotation replaces the first one's new nodes.
    assert!(
        rotations[1]
            .slots
            .iter()
            .all(|s| !s.existing && s.from == v("1.34.2"))
    );
    assert_eq!(
        plan.sequence[0],
        Step::Rotate {
            pool: "general".into(),
            rotation: 1
        }
    );
    assert_eq!(plan.sequence[1], Step::Hop { hop: 1 });
    assert_every_state_legal(&plan);
}

#[test]
fn downgrades_are_refused_even_by_one_patch() {
    let inv = inventory(three_cp("1.34.2"), workers("general", "1.34.2", 2));
    let err = run(&inv, Some("1.33.5"), &[pool("general")]).unwrap_err();
    assert_eq!(
        err,
        PlanRefusal::Downgrade {
            target: v("1.33.5"),
            running: v("1.34.2"),
            node: "cp-1".into(),
            component: Component::Apiserver,
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains("v1.33.5") && msg.contains("v1.34.2") && msg.contains("cp-1"),
        "{msg}"
    );

    let err = run(&inv, Some("1.34.1"), &[pool("general")]).unwrap_err();
    assert!(matches!(err, PlanRefusal::Downgrade { .. }), "{err}");
}

#[test]
fn mixed_ha_apiservers_resume_the_hop_in_progress() {
    // An earlier run upgraded cp-1's components to v1.34.2 and stopped.
    let mut cp = three_cp("1.33.5");
    cp[0].apiserver = Some(v("1.34.2"));
    cp[0].controller_manager = Some(v("1.34.2"));
    cp[0].scheduler = Some(v("1.34.2"));
    let inv = inventory(cp, workers("general", "1.33.5", 3));
    let plan = run(&inv, Some("1.34.2"), &[pool("general")]).unwrap();

    assert_eq!(plan.current.control_plane_version, v("1.33.5"));
    assert_eq!(plan.current.newest_apiserver, v("1.34.2"));
    assert_eq!(hop_targets(&plan), [v("1.34.2")]);
    let hop = &plan.hops[0];
    assert_eq!((hop.kind, hop.from), (HopKind::Minor, v("1.33.5")));
    // cp-1 is done with pass 1; `upgrade apply` already ran, so the others
    // take `upgrade node`; every kubelet still needs pass 2.
    let parts: Vec<_> = hop
        .nodes
        .iter()
        .map(|n| (n.node.as_str(), n.kubeadm, n.upgrade_kubelet))
        .collect();
    assert_eq!(
        parts,
        [
            ("cp-1", None, true),
            ("cp-2", Some(KubeadmCommand::Node), true),
            ("cp-3", Some(KubeadmCommand::Node), true)
        ]
    );
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.kind == WarningKind::ControlPlaneMidUpgrade),
        "{:#?}",
        plan.warnings
    );
    assert_every_state_legal(&plan);

    // Further targets finish the hop first, then go on one minor at a time.
    let plan = run(&inv, Some("1.36.0"), &[pool("general")]).unwrap();
    assert_eq!(hop_targets(&plan), [v("1.34.4"), v("1.35.1"), v("1.36.0")]);
    assert_eq!(plan.hops[0].from, v("1.33.5"));
    assert_every_state_legal(&plan);
}

/// `kubeadm upgrade apply` on cp-1 wrote its manifests and died before
/// uploading kubeadm-config: the cluster still records v1.33.5.
fn apply_died_before_recording(nodes: usize) -> Inventory {
    let mut cp = three_cp("1.33.5");
    cp.truncate(nodes);
    cp[0].apiserver = Some(v("1.34.2"));
    cp[0].controller_manager = Some(v("1.34.2"));
    cp[0].scheduler = Some(v("1.34.2"));
    let mut inv = inventory(cp, workers("general", "1.33.5", 3));
    inv.kubeadm_version = Some(v("1.33.5"));
    inv
}

#[test]
fn an_apply_that_never_recorded_its_version_is_run_again() {
    // `kubeadm upgrade node` writes the version kubeadm-config records:
    // sending it to cp-2 now would write v1.33.5 manifests back.
    let inv = apply_died_before_recording(3);
    let plan = run(&inv, Some("1.34.2"), &[pool("general")]).unwrap();
    let parts: Vec<_> = plan.hops[0]
        .nodes
        .iter()
        .map(|n| (n.node.as_str(), n.kubeadm))
        .collect();
    assert_eq!(
        parts,
        [
            ("cp-1", None),
            ("cp-2", Some(KubeadmCommand::Apply)),
            ("cp-3", Some(KubeadmCommand::Node))
        ]
    );
    assert_every_state_legal(&plan);

    // Once kubeadm-config records v1.34.2, the apply is done.
    let mut recorded = inv.clone();
    recorded.kubeadm_version = Some(v("1.34.2"));
    let plan = run(&recorded, Some("1.34.2"), &[pool("general")]).unwrap();
    let kubeadm: Vec<_> = plan.hops[0].nodes.iter().map(|n| n.kubeadm).collect();
    assert_eq!(
        kubeadm,
        [None, Some(KubeadmCommand::Node), Some(KubeadmCommand::Node)]
    );
}

#[test]
fn a_single_control_plane_whose_apply_never_recorded_its_version_runs_it_again() {
    // Every kube-apiserver runs v1.34.2, so the static pods alone say the
    // hop is done; kubeadm-config says it is not, and the next hop's apply
    // would refuse to jump from v1.33.5 to v1.35.
    let inv = apply_died_before_recording(1);
    let plan = run(&inv, Some("1.34.2"), &[pool("general")]).unwrap();
    assert_eq!(hop_targets(&plan), [v("1.34.2")]);
    let node = &plan.hops[0].nodes[0];
    assert_eq!(
        (node.node.as_str(), node.kubeadm, node.upgrade_components),
        ("cp-1", Some(KubeadmCommand::Apply), true)
    );

    let plan = run(&inv, Some("1.35.1"), &[pool("general")]).unwrap();
    assert_eq!(hop_targets(&plan), [v("1.34.4"), v("1.35.1")]);
    assert_eq!(plan.hops[0].nodes[0].kubeadm, Some(KubeadmCommand::Apply));
    assert_every_state_legal(&plan);
}

#[test]
fn hop_passes_upgrade_every_apiserver_before_any_kubelet() {
    let inv = inventory(three_cp("1.33.5"), vec![]);
    let plan = run(&inv, Some("1.34.4"), &[]).unwrap();
    let steps: Vec<String> = plan_states(&plan).into_iter().map(|s| s.step).collect();
    let last_component = steps
        .iter()
        .rposition(|s| s.contains("kube-scheduler on"))
        .unwrap();
    let first_kubelet = steps.iter().position(|s| s.contains("kubelet on")).unwrap();
    assert!(last_component < first_kubelet, "{steps:#?}");
    // 1 initial + 3 nodes × 3 components + kube-proxy + 3 kubelets.
    assert_eq!(steps.len(), 1 + 9 + 1 + 3, "{steps:#?}");
}

#[test]
fn rotation_states_show_old_and_new_kubelets_together() {
    let inv = inventory(three_cp("1.34.2"), workers("general", "1.33.5", 2));
    let plan = run(&inv, None, &[pool("general")]).unwrap();
    let states = plan_states(&plan);
    let mixed = states
        .iter()
        .find(|s| s.step.contains("joined"))
        .expect("a mixed state");
    let kubelets: Vec<KubeVersion> = mixed
        .versions
        .nodes
        .iter()
        .filter(|n| n.node.starts_with("general"))
        .map(|n| n.kubelet)
        .collect();
    assert!(kubelets.contains(&v("1.33.5")) && kubelets.contains(&v("1.34.2")));
    let last = states.last().unwrap();
    assert!(
        last.versions
            .nodes
            .iter()
            .filter(|n| n.node.starts_with("general"))
            .all(|n| n.kubelet == v("1.34.2"))
    );
}

#[test]
fn nothing_to_do_is_an_empty_plan_not_a_refusal() {
    let inv = inventory(three_cp("1.34.2"), workers("general", "1.34.2", 3));
    let plan = run(&inv, Some("1.34.2"), &[pool("general")]).unwrap();
    assert!(plan.nothing_to_do);
    assert!(plan.hops.is_empty() && plan.sequence.is_empty());
    assert!(plan.pools[0].rotations.is_empty());
    assert!(render_table(&plan).contains("Nothing to do"));
}

#[test]
fn without_a_target_pools_behind_the_control_plane_rotate_to_it() {
    let inv = inventory(
        three_cp("1.34.2"),
        [workers("old", "1.32.1", 2), workers("current", "1.34.2", 2)].concat(),
    );
    let plan = run(&inv, None, &[pool("old"), pool("current")]).unwrap();
    assert!(plan.hops.is_empty());
    assert_eq!(plan.final_version, v("1.34.2"));
    let old = &plan.pools[0];
    assert_eq!(old.rotations.len(), 1);
    assert_eq!(
        (old.rotations[0].after_hop, old.rotations[0].version),
        (None, v("1.34.2"))
    );
    assert!(plan.pools[1].rotations.is_empty());
    assert!(!plan.nothing_to_do);
}

#[test]
fn a_patch_target_is_one_hop_within_the_minor() {
    let inv = inventory(three_cp("1.34.2"), workers("general", "1.34.2", 2));
    let plan = run(&inv, Some("1.34.4"), &[pool("general")]).unwrap();
    assert_eq!(hop_targets(&plan), [v("1.34.4")]);
    assert_eq!(plan.hops[0].kind, HopKind::Patch);
    assert_eq!(plan.pools[0].rotations.len(), 1);
    assert_eq!(plan.pools[0].rotations[0].after_hop, Some(1));
}

#[test]
fn kubelets_older_than_v1_25_get_the_narrower_window() {
    let inv = inventory(three_cp("1.26.15"), workers("general", "1.24.17", 2));
    let plan = run(&inv, Some("1.28.15"), &[pool("general")]).unwrap();
    assert_eq!(hop_targets(&plan), [v("1.27.16"), v("1.28.15")]);
    let r = &plan.pools[0].rotations;
    // v1.24 may trail by only 2: it cannot go through the hop to v1.27.
    assert_eq!(r.len(), 2);
    assert_eq!((r[0].after_hop, r[0].version), (None, v("1.26.15")));
    assert_eq!((r[1].after_hop, r[1].version), (Some(2), v("1.28.15")));
    assert_every_state_legal(&plan);
}

#[test]
fn lagging_control_plane_kubelets_get_a_completion_hop_first() {
    let mut cp = vec![cp_node("cp-1", "1.34.2")];
    cp[0].kubelet = v("1.31.9");
    let inv = inventory(cp, vec![]);
    let plan = run(&inv, Some("1.35.1"), &[]).unwrap();
    assert_eq!(hop_targets(&plan), [v("1.34.4"), v("1.35.1")]);
    assert_eq!(plan.hops[0].kind, HopKind::Completion);
    assert_every_state_legal(&plan);
}

#[test]
fn workers_in_no_pool_block_only_when_they_would_break_the_policy() {
    let mut ws = workers("general", "1.31.4", 2);
    ws.push(worker("legacy-1", None, "1.31.4", "eu-west-1a", 0));
    ws.push(worker(
        "legacy-2",
        Some("retired"),
        "1.31.0",
        "eu-west-1a",
        0,
    ));
    let inv = inventory(three_cp("1.31.4"), ws);

    let err = run(&inv, Some("1.35.1"), &[pool("general")]).unwrap_err();
    match &err {
        PlanRefusal::UnpooledWorkersTooOld {
            nodes,
            limit_reached_at,
        } => {
            let names: Vec<&str> = nodes.iter().map(|n| n.node.as_str()).collect();
            assert_eq!(names, ["legacy-1", "legacy-2"]);
            assert_eq!(*limit_reached_at, v("1.35.1"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        err.to_string().contains("legacy-1 (kubelet v1.31.4)"),
        "{err}"
    );

    // To v1.34 they stay within policy: a plan, with warnings.
    let plan = run(&inv, Some("1.34.2"), &[pool("general")]).unwrap();
    assert_eq!(plan.unpooled_workers.len(), 2);
    let kinds: Vec<WarningKind> = plan.warnings.iter().map(|w| w.kind).collect();
    assert!(kinds.contains(&WarningKind::WorkersLeftBehind), "{kinds:?}");
    assert!(kinds.contains(&WarningKind::PoolNotConfigured), "{kinds:?}");
    assert_every_state_legal(&plan);
}

#[test]
fn irreparable_skew_is_refused() {
    // A worker newer than the oldest kube-apiserver.
    let mut cp = three_cp("1.33.5");
    cp[0].apiserver = Some(v("1.34.2"));
    let inv = inventory(cp, vec![worker("w-1", Some("general"), "1.34.2", "a", 0)]);
    let err = run(&inv, Some("1.34.2"), &[pool("general")]).unwrap_err();
    match &err {
        PlanRefusal::IrreparableSkew { violations } => {
            assert!(
                violations.iter().any(|m| m.contains("w-1")),
                "{violations:?}"
            )
        }
        other => panic!("unexpected {other:?}"),
    }

    // kube-apiservers two minors apart.
    let mut cp = three_cp("1.32.1");
    cp[1].apiserver = Some(v("1.34.2"));
    cp[1].controller_manager = Some(v("1.34.2"));
    cp[1].scheduler = Some(v("1.34.2"));
    let err = run(&inventory(cp, vec![]), Some("1.34.2"), &[]).unwrap_err();
    assert!(matches!(err, PlanRefusal::IrreparableSkew { .. }), "{err}");
    assert!(err.to_string().contains(Rule::ApiserverHaSkew.citation()));

    // A scheduler newer than its kube-apiserver.
    let mut cp = three_cp("1.33.5");
    cp[2].scheduler = Some(v("1.34.0"));
    let err = run(&inventory(cp, vec![]), Some("1.34.2"), &[]).unwrap_err();
    assert!(matches!(err, PlanRefusal::IrreparableSkew { .. }), "{err}");
}

#[test]
fn other_major_unknown_versions_and_zero_budgets_are_refused() {
    let inv = inventory(three_cp("1.34.2"), workers("general", "1.33.0", 2));
    let err = plan(&PlanRequest {
        inventory: &inv,
        target: Some(KubeVersion::new(2, 0, 0)),
        pools: &[pool("general")],
        today: date(2026, 1, 10),
    })
    .unwrap_err();
    assert!(matches!(err, PlanRefusal::OtherMajor { .. }), "{err}");

    let mut cp = three_cp("1.34.2");
    cp[1].controller_manager = None;
    let err = run(&inventory(cp, vec![]), Some("1.35.1"), &[]).unwrap_err();
    assert_eq!(
        err,
        PlanRefusal::UnknownComponentVersion {
            node: "cp-2".into(),
            component: Component::ControllerManager
        }
    );

    let err = run(&inventory(vec![], vec![]), None, &[]).unwrap_err();
    assert_eq!(err, PlanRefusal::NoControlPlane);

    let zero = PoolInput {
        name: "general".into(),
        max_surge: Budget::Count(0),
        max_unavailable: Budget::Percent(10),
    };
    let err = run(&inv, Some("1.35.1"), &[zero]).unwrap_err();
    assert!(
        matches!(err, PlanRefusal::ZeroBudget { ref pool, size: 2, .. } if pool == "general"),
        "{err}"
    );
}

#[test]
fn kube_proxy_that_cannot_follow_means_no_legal_path() {
    // kube-proxy pinned three minors behind: the next minor's kube-apiserver
    // would be four ahead of it before kubeadm upgrades it.
    let mut inv = inventory(three_cp("1.34.2"), vec![]);
    inv.addons.kube_proxy = Some(v("1.31.0"));
    let err = run(&inv, Some("1.35.1"), &[]).unwrap_err();
    match &err {
        PlanRefusal::NoLegalPath { step, violations } => {
            assert!(step.contains("kube-apiserver on cp-1"), "{step}");
            assert!(
                violations.iter().any(|m| m.contains("kube-proxy")),
                "{violations:?}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn kubeadm_before_v1_28_upgrades_kube_proxy_with_the_first_node() {
    let inv = inventory(three_cp("1.25.16"), workers("general", "1.25.16", 2));
    let plan = run(&inv, Some("1.26.15"), &[pool("general")]).unwrap();
    assert_eq!(plan.hops[0].addons_after_node.as_deref(), Some("cp-1"));
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.kind == WarningKind::KubeProxyAheadDuringHop)
    );
    let states = plan_states(&plan);
    assert!(states.iter().any(|s| !s.tolerated().is_empty()));
    assert_every_state_legal(&plan);
}

#[test]
fn unknown_minors_warn_and_plan_through_their_first_release() {
    let inv = inventory(three_cp("1.37.0"), vec![]);
    let plan = run(&inv, Some("1.39.2"), &[]).unwrap();
    assert_eq!(hop_targets(&plan), [v("1.38.0"), v("1.39.2")]);
    let kinds: Vec<WarningKind> = plan.warnings.iter().map(|w| w.kind).collect();
    assert!(
        kinds.contains(&WarningKind::UnknownIntermediateVersion),
        "{kinds:?}"
    );
    assert!(kinds.contains(&WarningKind::SupportWindow), "{kinds:?}");
}

#[test]
fn slots_follow_the_replacement_order() {
    let ws = vec![
        worker("w-a2", Some("general"), "1.33.0", "a", 20),
        worker("w-a1", Some("general"), "1.33.0", "a", 10),
        worker("w-b1", Some("general"), "1.33.0", "b", 15),
    ];
    let inv = inventory(three_cp("1.34.2"), ws);
    let plan = run(&inv, None, &[pool("general")]).unwrap();
    let slots: Vec<&str> = plan.pools[0].rotations[0]
        .slots
        .iter()
        .map(|s| s.node.as_str())
        .collect();
    assert_eq!(slots, ["w-a1", "w-b1", "w-a2"]);
    let nodes: Vec<&str> = plan.pools[0]
        .nodes
        .iter()
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(nodes, slots);
}

#[test]
fn json_is_camel_case_with_the_documented_fields() {
    let inv = inventory(three_cp("1.31.4"), workers("general", "1.31.4", 2));
    let plan = run(&inv, Some("1.34.2"), &[pool("general")]).unwrap();
    let json = serde_json::to_value(&plan).unwrap();
    assert_eq!(json["finalVersion"], "v1.34.2");
    assert_eq!(json["current"]["controlPlaneVersion"], "v1.31.4");
    assert_eq!(json["nothingToDo"], false);
    assert_eq!(json["hops"][0]["kind"], "minor");
    assert_eq!(json["hops"][0]["nodes"][0]["kubeadm"], "apply");
    assert_eq!(json["hops"][0]["components"][0]["name"], "kube-apiserver");
    assert_eq!(json["hops"][0]["components"][0]["nodeName"], "cp-1");
    assert_eq!(
        json["hops"][0]["components"][0]["currentVersion"],
        "v1.31.4"
    );
    assert_eq!(json["pools"][0]["maxSurge"], "25%");
    assert_eq!(json["pools"][0]["rotations"][0]["afterHop"], 3);
    assert_eq!(
        json["pools"][0]["rotations"][0]["slots"][0]["existing"],
        true
    );
    assert_eq!(
        json["sequence"][0],
        serde_json::json!({"kind": "hop", "hop": 1})
    );
    assert_eq!(
        json["sequence"][3],
        serde_json::json!({"kind": "rotate", "pool": "general", "rotation": 1})
    );
    assert_eq!(json["warnings"][0]["kind"], "kubelet-at-skew-limit");
}

#[test]
fn table_reads_like_kubeadm_upgrade_plan() {
    let mut ws = workers("general", "1.31.4", 3);
    ws.push(worker("legacy", None, "1.31.0", "a", 0));
    let inv = inventory(three_cp("1.31.4"), ws);
    let plan = run(&inv, Some("1.34.2"), &[pool("general")]).unwrap();
    let text = render_table(&plan);
    for needle in [
        "Control plane: v1.31.4, 3 node(s)",
        "Hop 1 of 3: v1.31.4 -> v1.32.12 (minor)",
        "kubeadm upgrade apply v1.32.12 -y on cp-1",
        "COMPONENT",
        "kube-apiserver           cp-1  v1.31.4",
        "CoreDNS",
        "upgraded by kubeadm",
        "after hop 3",
        "Replacement order",
        "general: general-0 (eu-west-1a), general-1 (eu-west-1b), general-2 (eu-west-1c)",
        "Workers in no pool",
        "Order: hop 1 (v1.32.12) -> hop 2 (v1.33.8) -> hop 3 (v1.34.2) -> rotate general #1",
        "Warnings:",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert!(!text.contains('\u{1b}'), "no colours");
    assert!(
        text.lines().all(|l| l == l.trim_end()),
        "no trailing blanks"
    );
}

#[test]
fn a_scheduler_behind_an_apiserver_that_is_itself_behind_has_no_legal_path() {
    // cp-2's scheduler trails its own kube-apiserver (v1.33) while cp-1 is
    // already at v1.34: kubeadm upgrades cp-2's kube-apiserver to v1.34
    // before its scheduler, two minors apart for a while.
    let mut cp = three_cp("1.33.5");
    cp[0].apiserver = Some(v("1.34.2"));
    cp[0].controller_manager = Some(v("1.34.2"));
    cp[0].scheduler = Some(v("1.34.2"));
    cp[1].scheduler = Some(v("1.32.9"));
    let err = run(&inventory(cp, vec![]), Some("1.34.2"), &[]).unwrap_err();
    match &err {
        PlanRefusal::NoLegalPath { step, violations } => {
            assert_eq!(step, "hop 1: kube-apiserver on cp-2 at v1.34.2");
            assert!(
                violations[0].contains("kube-scheduler on cp-2"),
                "{violations:?}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}
