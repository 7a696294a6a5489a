//! Property tests of the planner over random clusters and targets.
//!
//! Clusters: 1–3 control-plane nodes, possibly mid-upgrade (kube-apiservers
//! a minor apart, controller-manager/scheduler a minor behind, kubelets
//! behind) but within the skew policy; 0–4 pools of workers at legal
//! kubelet versions from v1.24 to v1.37; workers in no pool; kube-proxy or
//! not. Targets: none, a v1 version from two minors below the control
//! plane to nine above (downgrades included, v1.22 to v1.39), or another
//! major.
//!
//! Properties:
//! - (a) every state of every plan is within the skew policy (apart from
//!   the kube-proxy order of kubeadm < v1.28, which only HA hops to minors
//!   below v1.28 may show), and the last state has everything at the final
//!   version;
//! - (b) each pool rotates the minimum number of times, each rotation but
//!   the last at the last point the pool could wait to. With `o` the pool's
//!   oldest kubelet minor and `t` the final minor, a rotation lifts the pool
//!   from minor `c` to at most `c + L(c)` (the policy's lag: 3, or 2 below
//!   v1.25), so the count is the number of such steps from `o` to `t`:
//!   `ceil((t - o) / 3)` for `o ≥ 25`, `ceil((t - o + 1) / 3)` for `o = 24`
//!   (its first step is one shorter), and for `t = o` one rotation if a
//!   kubelet is behind by a patch, else none;
//! - (c) the planner refuses exactly the refused cases, with the right
//!   reason.

use jiff::Timestamp;
use jiff::civil::date;
use proptest::prelude::*;

use super::*;
use crate::inventory::{Addons, ControlPlaneNode, Inventory, WorkerNode};
use crate::version::{Rule, kubelet_max_lag, newest_apiserver_minor_for_kubelet};

const LOWEST_KUBELET_MINOR: u64 = 24;

#[derive(Clone, Debug)]
struct RawCp {
    on_newest: bool,
    patch: u64,
    kcm_lag: bool,
    sched_lag: bool,
    component_patch: u64,
    kubelet_pick: usize,
    kubelet_patch: u64,
}

#[derive(Clone, Debug)]
struct RawWorker {
    pick: usize,
    patch: u64,
    zone: u8,
    age: i64,
}

#[derive(Clone, Debug)]
struct RawPool {
    workers: Vec<RawWorker>,
    budget: u8,
}

#[derive(Clone, Debug)]
struct Raw {
    m0: u64,
    mixed: bool,
    cp: Vec<RawCp>,
    pools: Vec<RawPool>,
    unpooled: Vec<RawWorker>,
    kube_proxy: bool,
    /// (another major, minor offset from the oldest kube-apiserver, patch)
    target: Option<(bool, i64, u64)>,
}

fn raw_worker() -> impl Strategy<Value = RawWorker> {
    (any::<usize>(), 0u64..20, 0u8..4, 0i64..100_000).prop_map(|(pick, patch, zone, age)| {
        RawWorker {
            pick,
            patch,
            zone,
            age,
        }
    })
}

fn raw() -> impl Strategy<Value = Raw> {
    let cp = (
        any::<bool>(),
        0u64..20,
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.2),
        0u64..20,
        any::<usize>(),
        0u64..20,
    )
        .prop_map(
            |(
                on_newest,
                patch,
                kcm_lag,
                sched_lag,
                component_patch,
                kubelet_pick,
                kubelet_patch,
            )| {
                RawCp {
                    on_newest,
                    patch,
                    kcm_lag,
                    sched_lag,
                    component_patch,
                    kubelet_pick,
                    kubelet_patch,
                }
            },
        );
    let pool = (prop::collection::vec(raw_worker(), 0..6), any::<u8>())
        .prop_map(|(workers, budget)| RawPool { workers, budget });
    let target = prop::option::weighted(0.85, (prop::bool::weighted(0.03), -2i64..=9, 0u64..20));
    (
        24u64..=37,
        prop::bool::weighted(0.3),
        prop::collection::vec(cp, 1..=3),
        prop::collection::vec(pool, 0..=4),
        prop::option::weighted(0.3, prop::collection::vec(raw_worker(), 1..=2))
            .prop_map(Option::unwrap_or_default),
        any::<bool>(),
        target,
    )
        .prop_map(|(m0, mixed, cp, pools, unpooled, kube_proxy, target)| Raw {
            m0,
            mixed,
            cp,
            pools,
            unpooled,
            kube_proxy,
            target,
        })
}

struct Case {
    inventory: Inventory,
    pools: Vec<PoolInput>,
    target: Option<KubeVersion>,
}

/// Kubelet minors within policy under kube-apiservers `m0` (oldest) and
/// `n0` (newest), from v1.24 on.
fn legal_kubelet_minors(m0: u64, n0: u64) -> Vec<u64> {
    (LOWEST_KUBELET_MINOR..=m0)
        .filter(|&k| newest_apiserver_minor_for_kubelet(KubeVersion::new(1, k, 0)) >= n0)
        .collect()
}

fn build_case(raw: &Raw) -> Case {
    let m0 = raw.m0;
    let n0 = if raw.mixed && m0 < 37 { m0 + 1 } else { m0 };
    let kubelet_minors = legal_kubelet_minors(m0, n0);
    let kubelet = |pick: usize, patch: u64| {
        KubeVersion::new(1, kubelet_minors[pick % kubelet_minors.len()], patch)
    };
    let control_plane: Vec<ControlPlaneNode> = raw
        .cp
        .iter()
        .enumerate()
        .map(|(i, c)| {
            // Node 0 holds the oldest minor, so the control plane's version is m0.
            let minor = if i > 0 && c.on_newest { n0 } else { m0 };
            let apiserver = KubeVersion::new(1, minor, c.patch);
            // A controller-manager or scheduler a minor behind its
            // kube-apiserver is what a run stopped mid-node leaves: only on
            // a node whose kube-apiserver is at the newest minor. (Behind a
            // kube-apiserver that is itself a minor behind another, it has
            // no legal path through kubeadm's order; see the unit tests.)
            let behind = |lag: bool| {
                if lag && minor == n0 {
                    KubeVersion::new(1, minor - 1, c.component_patch)
                } else {
                    KubeVersion::new(1, minor, c.component_patch.min(c.patch))
                }
            };
            ControlPlaneNode {
                name: format!("cp-{i}"),
                kubelet: kubelet(c.kubelet_pick, c.kubelet_patch),
                apiserver: Some(apiserver),
                controller_manager: Some(behind(c.kcm_lag)),
                scheduler: Some(behind(c.sched_lag)),
                etcd: Some("3.5.15-0".to_string()),
                zone: None,
                provider_id: None,
                ready: true,
            }
        })
        .collect();
    let oldest = control_plane
        .iter()
        .filter_map(|n| n.apiserver)
        .min()
        .unwrap_or(KubeVersion::new(1, m0, 0));
    let worker = |name: String, pool: Option<String>, w: &RawWorker| WorkerNode {
        name,
        kubelet: kubelet(w.pick, w.patch),
        pool,
        created: Timestamp::from_second(1_700_000_000 + w.age).unwrap_or(Timestamp::UNIX_EPOCH),
        zone: (w.zone < 3).then(|| format!("zone-{}", w.zone)),
        provider_id: None,
        internal_ip: None,
        ready: true,
        unschedulable: false,
    };
    let mut workers = Vec::new();
    let mut pools = Vec::new();
    for (p, rp) in raw.pools.iter().enumerate() {
        let name = format!("pool-{p}");
        for (i, w) in rp.workers.iter().enumerate() {
            workers.push(worker(format!("{name}-{i}"), Some(name.clone()), w));
        }
        let (max_surge, max_unavailable) = match rp.budget % 16 {
            0 => (Budget::Count(0), Budget::Count(0)),
            1 => (Budget::Count(0), Budget::Count(1)),
            2 => (Budget::Count(2), Budget::Count(1)),
            3 => (Budget::Percent(10), Budget::Count(0)),
            _ => (Budget::Percent(25), Budget::Count(0)),
        };
        pools.push(PoolInput {
            name,
            max_surge,
            max_unavailable,
        });
    }
    for (i, w) in raw.unpooled.iter().enumerate() {
        workers.push(worker(format!("loose-{i}"), None, w));
    }
    let target = raw.target.map(|(other_major, offset, patch)| {
        let minor = (m0 as i64 + offset).clamp(22, 39) as u64;
        KubeVersion::new(if other_major { 2 } else { 1 }, minor, patch)
    });
    Case {
        inventory: Inventory {
            apiserver_version: oldest,
            control_plane,
            workers,
            addons: Addons {
                coredns: Some("v1.11.3".to_string()),
                kube_proxy: raw.kube_proxy.then_some(oldest),
            },
            kubeadm_version: None,
        },
        pools,
        target,
    }
}

/// What the planner must answer, worked out independently of it.
#[derive(Debug, PartialEq, Eq)]
enum Expected {
    OtherMajor,
    Downgrade,
    UnpooledTooOld(Vec<String>),
    ZeroBudget(String),
    Plan,
}

fn expected(case: &Case) -> Expected {
    let inv = &case.inventory;
    let apiservers = || inv.control_plane.iter().filter_map(|n| n.apiserver);
    let (Some(oldest), Some(newest)) = (apiservers().min(), apiservers().max()) else {
        unreachable!("generated clusters have control planes");
    };
    if let Some(t) = case.target {
        if t.major != 1 {
            return Expected::OtherMajor;
        }
        let highest = inv
            .control_plane
            .iter()
            .flat_map(|n| {
                [
                    n.apiserver,
                    n.controller_manager,
                    n.scheduler,
                    Some(n.kubelet),
                ]
            })
            .flatten()
            .max();
        if highest.is_some_and(|h| h > t) {
            return Expected::Downgrade;
        }
    }
    let final_version = case.target.unwrap_or(oldest);
    let peak = newest.minor.max(final_version.minor);
    let too_old: Vec<String> = inv
        .workers
        .iter()
        .filter(|w| w.pool.is_none() && newest_apiserver_minor_for_kubelet(w.kubelet) < peak)
        .map(|w| w.name.clone())
        .collect();
    if !too_old.is_empty() {
        return Expected::UnpooledTooOld(too_old);
    }
    for p in &case.pools {
        let behind = inv
            .workers
            .iter()
            .any(|w| w.pool.as_deref() == Some(&p.name) && w.kubelet < final_version);
        if behind && p.max_surge.is_zero() && p.max_unavailable.is_zero() {
            return Expected::ZeroBudget(p.name.clone());
        }
    }
    Expected::Plan
}

/// The minimum number of rotations for a pool whose oldest kubelet is
/// `oldest` and whose kubelets must end at `final_version` (module doc).
fn minimal_rotations(oldest: KubeVersion, any_behind: bool, final_version: KubeVersion) -> usize {
    let gap = final_version.minor - oldest.minor;
    if gap == 0 {
        return usize::from(any_behind);
    }
    let shorter_first_step = u64::from(oldest.minor < 25);
    (gap + shorter_first_step).div_ceil(kubelet_max_lag(KubeVersion::new(1, 25, 0))) as usize
}

fn check_plan(case: &Case, plan: &Plan) -> Result<(), TestCaseError> {
    let inv = &case.inventory;
    let final_version = plan.final_version;

    // (a) every state within policy; the last one at the final version.
    let states = plan_states(plan);
    for s in &states {
        let (violations, tolerated) = s.split_violations();
        prop_assert!(
            violations.is_empty(),
            "state {:?} breaks the policy: {:?}",
            s.step,
            violations
        );
        if !tolerated.is_empty() {
            let hop = s.hop.and_then(|h| plan.hops.iter().find(|x| x.number == h));
            prop_assert!(
                hop.is_some_and(|h| h.to.minor < KUBEADM_LATE_ADDONS_FROM_MINOR)
                    && inv.control_plane.len() > 1
                    && tolerated
                        .iter()
                        .all(|v| v.rule == Rule::KubeProxyNewerThanApiserver),
                "tolerated outside an HA hop of kubeadm < v1.28: {tolerated:?}"
            );
        }
    }
    let last = states.last().expect("at least the current state");
    if case.target.is_some() {
        for m in &last.versions.control_plane {
            prop_assert_eq!(m.apiserver, Some(final_version));
            prop_assert_eq!(m.controller_manager, Some(final_version));
            prop_assert_eq!(m.scheduler, Some(final_version));
        }
    }
    for pool in &plan.pools {
        for n in &last.versions.nodes {
            if n.node.starts_with(&format!("{}-", pool.name)) {
                prop_assert!(
                    n.kubelet >= final_version,
                    "{} left at {}",
                    n.node,
                    n.kubelet
                );
            }
        }
    }

    // (b) minimal rotations, each as late as it can be.
    for pool in &plan.pools {
        let kubelets: Vec<KubeVersion> = pool.nodes.iter().map(|n| n.kubelet).collect();
        let Some(&oldest) = kubelets.iter().min() else {
            prop_assert!(pool.rotations.is_empty());
            continue;
        };
        let any_behind = kubelets.iter().any(|k| *k < final_version);
        prop_assert_eq!(
            pool.rotations.len(),
            minimal_rotations(oldest, any_behind, final_version),
            "pool {} from {} to {}: {:#?}",
            &pool.name,
            oldest,
            final_version,
            &pool.rotations
        );
        for r in &pool.rotations {
            prop_assert!(!r.slots.is_empty());
            if r.version == final_version {
                continue;
            }
            // An early rotation: waiting through the next hop was illegal.
            let next = r.after_hop.unwrap_or(0);
            let Some(hop) = plan.hops.get(next) else {
                return Err(TestCaseError::fail(format!(
                    "early rotation of {} with no hop after it",
                    pool.name
                )));
            };
            let tolerance = r
                .slots
                .iter()
                .map(|s| newest_apiserver_minor_for_kubelet(s.from))
                .min()
                .unwrap_or(u64::MAX);
            prop_assert!(
                tolerance < hop.to.minor,
                "pool {} rotated before hop {} though it could wait",
                &pool.name,
                hop.number
            );
        }
    }

    // The sequence runs every hop once, in order.
    let hops_in_sequence: Vec<usize> = plan
        .sequence
        .iter()
        .filter_map(|s| match s {
            Step::Hop { hop } => Some(*hop),
            Step::Rotate { .. } => None,
        })
        .collect();
    prop_assert_eq!(hops_in_sequence, (1..=plan.hops.len()).collect::<Vec<_>>());
    prop_assert!(
        plan.hops
            .windows(2)
            .all(|w| w[1].to.minor == w[0].to.minor + 1)
    );

    // Output never fails.
    prop_assert!(!render_table(plan).is_empty());
    prop_assert!(serde_json::to_string(plan).is_ok());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 4000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn plans_are_legal_minimal_and_refuse_exactly_the_refused(raw in raw()) {
        let case = build_case(&raw);
        let want = expected(&case);
        let got = plan(&PlanRequest {
            inventory: &case.inventory,
            target: case.target,
            pools: &case.pools,
            today: date(2026, 1, 10),
        });
        match (&want, &got) {
            (Expected::Plan, Ok(p)) => check_plan(&case, p)?,
            (Expected::OtherMajor, Err(PlanRefusal::OtherMajor { .. })) => {}
            (Expected::Downgrade, Err(PlanRefusal::Downgrade { target, running, .. })) => {
                prop_assert!(running > target);
            }
            (Expected::UnpooledTooOld(names), Err(PlanRefusal::UnpooledWorkersTooOld { nodes, .. })) => {
                let mut got: Vec<String> = nodes.iter().map(|n| n.node.clone()).collect();
                got.sort();
                let mut want = names.clone();
                want.sort();
                prop_assert_eq!(got, want);
            }
            (Expected::ZeroBudget(name), Err(PlanRefusal::ZeroBudget { pool, .. })) => {
                prop_assert_eq!(name, pool);
            }
            _ => {
                return Err(TestCaseError::fail(format!(
                    "expected {want:?}, got {got:?}"
                )));
            }
        }
    }
}
