//! The crash suite of a whole `kubesurge upgrade` (issue 14): the control
//! plane in place (components, kubelets, drains), then the workers by
//! surge (tokens, launches, joins, drains, terminations), with the run
//! record written throughout. Each test kills the upgrade with SIGKILL at
//! one moment of the run's own trace and reruns the same command: the
//! rerun converges, with every §8.3 invariant held at every write of both
//! invocations, no kubeadm run twice on a node, and no orphan.
//!
//! The moments are listed once ([`POINTS`]); `every_kill_point_occurs_in_a_whole_upgrade`
//! proves each of them happens in an uninterrupted upgrade of the same
//! world, so no test waits for a moment that never comes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::rotation::{KillPoint, Spec, control_plane_versions, kill_at, start, text, trace};

const FROM: &str = "v1.34.3";
const TO: &str = "v1.35.3";
const CONTROL_PLANES: [&str; 3] = ["cp-1", "cp-2", "cp-3"];

/// Three control-plane nodes at FROM and a pool of three workers.
fn spec() -> Spec {
    let spec = super::upgrade::control_plane_spec();
    assert_eq!(spec.version, FROM);
    spec
}

const UPGRADE: [&str; 4] = ["upgrade", "--to", TO, "--yes"];

/// Kill the upgrade at `point`, rerun it, and check the end.
async fn crash_then_rerun(point: KillPoint) {
    let h = start(spec()).await;
    kill_at(&h, point, &UPGRADE).await;
    let output = h.run(&UPGRADE).await;
    let all = text(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "rerun after {point:?}: {all}"
    );
    for (pod, version) in control_plane_versions(&h.world) {
        assert_eq!(version, TO, "{pod} after {point:?}");
    }
    // Each control-plane node ran its kubeadm command once: its API server
    // manifest changed once and its kubelet restarted once.
    let events = h.world.cloud.control_events();
    for cp in CONTROL_PLANES {
        for change in ["kube-apiserver", "kubelet restarted"] {
            let times = events
                .iter()
                .filter(|e| e.node == cp && e.change.starts_with(change))
                .count();
            assert_eq!(times, 1, "{cp}: {change} after {point:?}: {events:?}");
        }
    }
    h.assert_converged();
}

macro_rules! crash_points {
    ($($name:ident: $point:expr,)*) => {
        /// Every kill point of the suite.
        const POINTS: &[KillPoint] = &[$($point,)*];
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                crash_then_rerun($point).await;
            }
        )*
    };
}

crash_points! {
    at_the_first_record_write: KillPoint::RecordWrite(1),
    at_the_second_record_write: KillPoint::RecordWrite(2),
    at_the_first_apiserver: KillPoint::StaticPodUpgraded("kube-apiserver", 1),
    at_the_second_apiserver: KillPoint::StaticPodUpgraded("kube-apiserver", 2),
    at_the_third_apiserver: KillPoint::StaticPodUpgraded("kube-apiserver", 3),
    at_the_first_controller_manager: KillPoint::StaticPodUpgraded("kube-controller-manager", 1),
    at_the_second_controller_manager: KillPoint::StaticPodUpgraded("kube-controller-manager", 2),
    at_the_third_controller_manager: KillPoint::StaticPodUpgraded("kube-controller-manager", 3),
    at_the_first_scheduler: KillPoint::StaticPodUpgraded("kube-scheduler", 1),
    at_the_second_scheduler: KillPoint::StaticPodUpgraded("kube-scheduler", 2),
    at_the_third_scheduler: KillPoint::StaticPodUpgraded("kube-scheduler", 3),
    at_the_first_control_plane_cordon: KillPoint::Cordoned(1),
    at_the_second_control_plane_cordon: KillPoint::Cordoned(2),
    at_the_third_control_plane_cordon: KillPoint::Cordoned(3),
    at_the_first_kubelet: KillPoint::KubeletUpgraded(1),
    at_the_second_kubelet: KillPoint::KubeletUpgraded(2),
    at_the_third_kubelet: KillPoint::KubeletUpgraded(3),
    at_the_first_token: KillPoint::TokenMinted(1),
    at_the_second_token: KillPoint::TokenMinted(2),
    at_the_third_token: KillPoint::TokenMinted(3),
    at_the_first_launching_mark: KillPoint::Phase("launching", 1),
    at_the_second_launching_mark: KillPoint::Phase("launching", 2),
    at_the_third_launching_mark: KillPoint::Phase("launching", 3),
    at_the_first_launch: KillPoint::Launched(1),
    at_the_second_launch: KillPoint::Launched(2),
    at_the_third_launch: KillPoint::Launched(3),
    at_the_first_join: KillPoint::NodeJoined(1),
    at_the_second_join: KillPoint::NodeJoined(2),
    at_the_third_join: KillPoint::NodeJoined(3),
    at_the_first_draining_mark: KillPoint::Phase("draining", 1),
    at_the_second_draining_mark: KillPoint::Phase("draining", 2),
    at_the_third_draining_mark: KillPoint::Phase("draining", 3),
    at_the_first_worker_cordon: KillPoint::Cordoned(4),
    at_the_second_worker_cordon: KillPoint::Cordoned(5),
    at_the_third_worker_cordon: KillPoint::Cordoned(6),
    at_the_first_eviction: KillPoint::Evicted(1),
    at_the_second_eviction: KillPoint::Evicted(2),
    at_the_third_eviction: KillPoint::Evicted(3),
    at_the_fourth_eviction: KillPoint::Evicted(4),
    at_the_fifth_eviction: KillPoint::Evicted(5),
    at_the_sixth_eviction: KillPoint::Evicted(6),
    at_the_eighth_eviction: KillPoint::Evicted(8),
    at_the_tenth_eviction: KillPoint::Evicted(10),
    at_the_twelfth_eviction: KillPoint::Evicted(12),
    at_the_fourteenth_eviction: KillPoint::Evicted(14),
    at_the_sixteenth_eviction: KillPoint::Evicted(16),
    at_the_first_terminating_mark: KillPoint::Phase("terminating", 1),
    at_the_second_terminating_mark: KillPoint::Phase("terminating", 2),
    at_the_third_terminating_mark: KillPoint::Phase("terminating", 3),
    at_the_first_node_deleted: KillPoint::NodeDeleted(1),
    at_the_second_node_deleted: KillPoint::NodeDeleted(2),
    at_the_third_node_deleted: KillPoint::NodeDeleted(3),
}

/// An uninterrupted upgrade of the suite's world reaches every kill point:
/// the suite's moments come from the run's own trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kill_point_occurs_in_a_whole_upgrade() {
    assert!(POINTS.len() >= 50, "{} kill points", POINTS.len());
    let h = start(spec()).await;
    let seen: Arc<Mutex<Vec<(KillPoint, usize)>>> = Arc::default();
    let record = seen.clone();
    trace(&h, move |moment, n| {
        record.lock().unwrap().push((moment, n))
    });
    let instances_before = h.world.cloud.instances().len();
    let output = h.run(&UPGRADE).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let launched = h.world.cloud.instances().len() - instances_before;
    let seen = seen.lock().unwrap().clone();
    let mut most: BTreeMap<String, usize> = BTreeMap::new();
    for (moment, n) in &seen {
        let kind = format!("{moment:?}");
        let entry = most.entry(kind).or_default();
        *entry = (*entry).max(*n);
    }
    for point in POINTS {
        let reached = match point {
            KillPoint::Launched(n) => *n <= launched,
            _ => seen
                .iter()
                .any(|(moment, n)| point.same_kind(moment) && *n == point.nth()),
        };
        assert!(
            reached,
            "{point:?} never happens: {most:#?}, {launched} launched"
        );
    }
}
