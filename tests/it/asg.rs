//! Auto Scaling group pools end to end on moto: `kubesurge rotate` (the
//! real binary) replaces every member of each group by one it launches and
//! attaches, terminates the old ones through the group, and leaves each
//! group's sizes and suspended processes as it found them — also when it
//! is killed inside its bookkeeping and run again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kubesurge_provider::tags;
use kubesurge_testworld::cloud::MachineStatus;
use kubesurge_testworld::moto::machines::GROUP_NAME_TAG;
use kubesurge_testworld::moto::{
    AsgGroup, AutoScalingApi, Ec2Instance, FaultProxy, MotoServer, MotoWorld,
};
use kubesurge_testworld::observer::{Invariant, Observer, PoolFloor};
use kubesurge_testworld::resources::NODES;
use tokio::process::Command;

use crate::moto_env::{self, MotoEnv, MotoSpec, kubesurge_on_moto, text};
use crate::rotation::workers;

/// The cluster autoscaler's annotation a run puts on its new nodes.
const SCALE_DOWN_DISABLED: &str = "cluster-autoscaler.kubernetes.io/scale-down-disabled";

const CLUSTER: &str = "e2e-asg";

/// The proxy's view of one Auto Scaling or EC2 call, for kill points.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

struct Harness {
    moto: MotoServer,
    proxy: FaultProxy,
    world: MotoWorld,
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    config: PathBuf,
    observer: Arc<Observer>,
    /// Every call the tool made (action, body) through the proxy.
    seen: Seen,
    /// Set by a kill point when its call succeeded.
    kill: Arc<tokio::sync::Notify>,
    kill_at: Arc<Mutex<Option<(String, usize)>>>,
    originals: BTreeMap<String, Ec2Instance>,
    /// Each group as seeded, by pool.
    groups_before: BTreeMap<String, AsgGroup>,
}

async fn start(pools: &[(&str, usize)], max_surge: u32) -> Harness {
    let seen: Seen = Arc::default();
    let kill = Arc::new(tokio::sync::Notify::new());
    let kill_at: Arc<Mutex<Option<(String, usize)>>> = Arc::default();
    let hook = {
        let seen = seen.clone();
        let kill = kill.clone();
        let kill_at = kill_at.clone();
        Arc::new(move |action: &str, body: &[u8]| {
            let body = String::from_utf8_lossy(body).into_owned();
            let mut seen = seen.lock().unwrap();
            seen.push((action.to_string(), body));
            let mut armed = kill_at.lock().unwrap();
            let hit = armed.as_ref().is_some_and(|(wanted, n)| {
                wanted == action && seen.iter().filter(|(a, _)| a == wanted).count() == *n
            });
            if hit {
                *armed = None;
                kill.notify_one();
                // Hold the answer until the tool is killed: it never
                // learns that the call succeeded.
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    let names: Vec<&str> = pools.iter().map(|(name, _)| *name).collect();
    let MotoEnv {
        moto,
        proxy,
        world,
        _dir: dir,
        kubeconfig,
        config,
    } = moto_env::start(MotoSpec {
        cluster: CLUSTER,
        pools,
        auto_scaling: &names,
        zones: 3,
        max_surge,
        hook: Some(hook),
    })
    .await;
    let observer = Observer::attach(&world.world.store);
    observer.set_pool_floors(
        pools
            .iter()
            .map(|(name, workers)| PoolFloor {
                name: name.to_string(),
                selector: BTreeMap::from([("kubesurge.io/pool".to_string(), name.to_string())]),
                floor: *workers,
            })
            .collect(),
    );
    let mut groups_before = BTreeMap::new();
    for (pool, group) in &world.seeded.groups {
        let g = world
            .autoscaling
            .group(group)
            .await
            .expect("describe")
            .expect("group");
        groups_before.insert(pool.clone(), g);
    }
    let originals = world.seeded.workers.clone();
    Harness {
        moto,
        proxy,
        world,
        _dir: dir,
        kubeconfig,
        config,
        observer,
        seen,
        kill,
        kill_at,
        originals,
        groups_before,
    }
}

/// `MaxSize=N` of an UpdateAutoScalingGroup body.
fn max_size_of(body: &str) -> Option<u32> {
    body.split('&')
        .find_map(|pair| pair.strip_prefix("MaxSize="))
        .and_then(|v| v.parse().ok())
}

impl Harness {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = kubesurge_on_moto(&self.world, self.proxy.url(), &self.kubeconfig);
        cmd.arg("--config")
            .arg(&self.config)
            .args(args)
            .env("AWS_MAX_ATTEMPTS", "5");
        cmd
    }

    async fn rotate(&self) -> Output {
        tokio::time::timeout(
            Duration::from_secs(240),
            self.command(&["rotate", "--all", "--yes", "-o", "json"])
                .output(),
        )
        .await
        .expect("kubesurge finishes in time")
        .expect("kubesurge runs")
    }

    /// Run `rotate --all` and SIGKILL it right after the `n`-th successful
    /// call of `action` (before the tool reads the answer).
    async fn rotate_killed_after(&self, action: &str, n: usize) {
        *self.kill_at.lock().unwrap() = Some((action.to_string(), n));
        let mut child = self
            .command(&["rotate", "--all", "--yes"])
            .spawn()
            .expect("kubesurge starts");
        tokio::select! {
            _ = self.kill.notified() => {
                child.start_kill().expect("SIGKILL");
                let _ = child.wait().await;
            }
            status = child.wait() => {
                panic!("the run ended before {action} #{n}: {status:?}")
            }
            _ = tokio::time::sleep(Duration::from_secs(180)) => {
                panic!("no {action} #{n} within three minutes")
            }
        }
    }

    async fn group(&self, pool: &str) -> AsgGroup {
        self.world
            .autoscaling
            .group(&self.world.seeded.groups[pool])
            .await
            .expect("describe")
            .expect("group")
    }

    /// Every instance in moto, in any state.
    async fn instances(&self) -> Vec<Ec2Instance> {
        self.world
            .ec2
            .describe_instances(&[])
            .await
            .expect("describe")
    }

    /// The end state: every worker replaced by an instance kubesurge
    /// launched and attached to its pool's group; each group's sizes and
    /// suspended processes exactly as seeded, its members exactly the
    /// live replacements, no record left in its tags; no instance launched
    /// by a group; `MaxSize` never above its seeded value plus the surge;
    /// no §8.3 violation.
    async fn assert_rotated(&self, surge: u32) {
        self.assert_rotated_but_for(surge, None).await
    }

    /// [`Harness::assert_rotated`], where the pods of `scaled_in` went
    /// down with its instance: the group took it mid-run, the run only
    /// removed its Node object afterwards.
    async fn assert_rotated_but_for(&self, surge: u32, scaled_in: Option<&str>) {
        let all = self.instances().await;
        let by_id: BTreeMap<&str, &Ec2Instance> = all.iter().map(|i| (i.id.as_str(), i)).collect();
        for (node, old) in &self.originals {
            assert_eq!(
                by_id[old.id.as_str()].state,
                "terminated",
                "{node}'s instance"
            );
        }
        let now = workers(&self.world.world);
        for old in self.originals.keys() {
            assert!(!now.contains_key(old), "old worker {old} is still a node");
        }
        assert_eq!(now.len(), self.originals.len(), "the pools keep their size");
        let live: Vec<&Ec2Instance> = all.iter().filter(|i| i.state != "terminated").collect();
        assert_eq!(
            live.len(),
            self.originals.len(),
            "one live instance per node, none launched by a group: {live:#?}"
        );
        for (pool, before) in &self.groups_before {
            let after = self.group(pool).await;
            assert_eq!(after.settings(), before.settings(), "group of {pool}");
            assert_eq!(
                after.tags, before.tags,
                "no record left on the group of {pool}"
            );
            let ours: BTreeSet<String> = live
                .iter()
                .filter(|i| i.tag(tags::POOL) == Some(pool.as_str()))
                .map(|i| i.id.clone())
                .collect();
            assert_eq!(
                after.members, ours,
                "the group of {pool} holds its live workers"
            );
        }
        for new in &live {
            assert!(
                new.tag(tags::REPLACES).is_some(),
                "{} launched by kubesurge",
                new.id
            );
            assert!(
                new.tags.contains_key(GROUP_NAME_TAG),
                "{} in its group",
                new.id
            );
            let machine = self.world.machines.machine(&new.id).expect("a machine");
            assert_eq!(machine.status, MachineStatus::Joined, "{}", new.id);
        }
        // No machine the groups launched on their own.
        for machine in self.world.machines.machines() {
            assert!(
                by_id
                    .get(machine.instance_id.as_str())
                    .is_none_or(|i| i.tag(tags::CLUSTER).is_some()),
                "instance {} launched by a group",
                machine.instance_id
            );
        }
        let raised: Vec<u32> = self
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(a, _)| a == "UpdateAutoScalingGroup")
            .filter_map(|(_, body)| max_size_of(body))
            .collect();
        let ceiling = self
            .groups_before
            .values()
            .map(|g| g.max_size + surge)
            .max()
            .unwrap_or_default();
        assert!(
            raised.iter().all(|m| *m <= ceiling),
            "MaxSize raised twice: {raised:?} (ceiling {ceiling})"
        );
        assert_eq!(
            self.protected_nodes(),
            Vec::<String>::new(),
            "the scale-down protection is lifted at the end of the run"
        );
        let violations: Vec<_> = self
            .observer
            .violations()
            .into_iter()
            .filter(|v| {
                !(v.invariant == Invariant::PodLost
                    && scaled_in.is_some_and(|node| v.message.contains(&format!("node {node} "))))
            })
            .collect();
        assert!(
            violations.is_empty(),
            "invariant violations: {violations:#?}"
        );
    }

    /// Nodes carrying the cluster autoscaler's scale-down protection.
    fn protected_nodes(&self) -> Vec<String> {
        let (nodes, _) = self.world.world.store.list(&NODES, None, |n| {
            n.pointer("/metadata/annotations")
                .and_then(|a| a.get(SCALE_DOWN_DISABLED))
                .is_some()
        });
        nodes
            .iter()
            .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
            .collect()
    }

    fn calls_by_action(&self) -> BTreeMap<String, usize> {
        self.proxy.calls().iter().fold(BTreeMap::new(), |mut m, c| {
            *m.entry(c.action.clone()).or_default() += 1;
            m
        })
    }

    fn finish(self) {
        self.world.stop();
        drop(self.proxy);
        if let Err(e) = self.moto.stop() {
            panic!("{e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotates_two_auto_scaling_group_pools_and_leaves_the_groups_as_found() {
    let h = start(&[("blue", 3), ("green", 3)], 1).await;
    let output = h.rotate().await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    h.assert_rotated(1).await;
    let calls = h.calls_by_action();
    println!("calls: {calls:?}");
    assert_eq!(calls.get("AttachInstances"), Some(&6), "{calls:?}");
    assert_eq!(
        calls.get("TerminateInstanceInAutoScalingGroup"),
        Some(&6),
        "{calls:?}"
    );
    assert_eq!(calls.get("TerminateInstances"), None, "{calls:?}");
    h.finish();
}

/// Killed right after `action` #`n` succeeded, then run again: the same
/// end state, nothing raised twice, nothing left suspended.
async fn killed_then_rerun(action: &str, n: usize) {
    let h = start(&[("blue", 3)], 1).await;
    h.rotate_killed_after(action, n).await;
    if action == "TerminateInstanceInAutoScalingGroup" {
        // Killed mid-run: the first replacement, Ready by then, is still
        // protected from a cluster autoscaler's scale-down.
        assert_eq!(h.protected_nodes().len(), 1, "{:?}", h.protected_nodes());
    }
    let output = h.rotate().await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    h.assert_rotated(1).await;
    // One attach and one termination in the group per worker, across both
    // invocations: the rerun found what the first had done.
    assert_eq!(
        h.proxy.succeeded("AttachInstances"),
        3,
        "{:?}",
        h.calls_by_action()
    );
    assert_eq!(
        h.proxy.succeeded("TerminateInstanceInAutoScalingGroup"),
        3,
        "{:?}",
        h.calls_by_action()
    );
    h.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_raising_max_size_the_rerun_restores_the_group() {
    killed_then_rerun("UpdateAutoScalingGroup", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_attaching_a_replacement_the_rerun_attaches_nothing_twice() {
    killed_then_rerun("AttachInstances", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_terminating_in_the_group_the_rerun_finishes_the_slot() {
    killed_then_rerun("TerminateInstanceInAutoScalingGroup", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_before_resuming_processes_the_rerun_resumes_them() {
    // The second MaxSize change is the restore's, right before the resume.
    killed_then_rerun("UpdateAutoScalingGroup", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_in_during_the_run_ends_that_slot_and_the_run_finishes() {
    let h = start(&[("blue", 3)], 1).await;
    // The scale-in takes one old node below the pool's size until its
    // replacement is Ready: that is the group's doing, not the run's.
    h.observer.set_pool_floors(vec![PoolFloor {
        name: "blue".into(),
        selector: BTreeMap::from([("kubesurge.io/pool".to_string(), "blue".to_string())]),
        floor: 2,
    }]);
    *h.kill_at.lock().unwrap() = Some(("AttachInstances".to_string(), 1));
    let child = h
        .command(&["rotate", "--all", "--yes", "-o", "json"])
        .spawn()
        .expect("kubesurge starts");
    tokio::time::timeout(Duration::from_secs(120), h.kill.notified())
        .await
        .expect("a first attach");
    // The old member whose replacement was just attached leaves through
    // its group, as a scale-in (or a cluster autoscaler) would take it.
    let attached = h
        .instances()
        .await
        .into_iter()
        .find(|i| i.tag(tags::REPLACES).is_some())
        .expect("the attached replacement");
    let old_node = attached.tag(tags::REPLACES).expect("replaces").to_string();
    let old_id = h.originals[&old_node].id.clone();
    AutoScalingApi::new(h.world.endpoint(), h.world.ec2.region())
        .terminate_member(&old_id, true)
        .await
        .expect("scale-in");
    let output = tokio::time::timeout(Duration::from_secs(240), child.wait_with_output())
        .await
        .expect("kubesurge finishes in time")
        .expect("kubesurge runs");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    h.assert_rotated_but_for(1, Some(&old_node)).await;
    // Its slot ended without a drain or a termination of its own.
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    let slot = report["slots"]
        .as_array()
        .and_then(|slots| slots.iter().find(|s| s["oldNode"] == old_node.as_str()))
        .unwrap_or_else(|| panic!("a slot for {old_node}: {report}"));
    let actions: Vec<&str> = slot["actions"]
        .as_array()
        .map(|a| a.iter().filter_map(|a| a.as_str()).collect())
        .unwrap_or_default();
    assert!(actions.contains(&"forget"), "{slot}");
    assert!(
        !actions.contains(&"drain") && !actions.contains(&"terminate"),
        "{slot}"
    );
    assert_eq!(h.proxy.succeeded("TerminateInstanceInAutoScalingGroup"), 2);
    h.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_and_gc_restore_a_group_an_abandoned_run_left_raised() {
    let h = start(&[("blue", 3)], 1).await;
    h.rotate_killed_after("UpdateAutoScalingGroup", 1).await;
    let raised = h.group("blue").await;
    assert_eq!(raised.max_size, h.groups_before["blue"].max_size + 1);
    assert!(
        raised.tags.contains_key("kubesurge.io/group-run"),
        "{raised:?}"
    );
    // The killed run's lease runs out by itself (30 s); until then `abort`
    // can only ask the holder to stop.
    tokio::time::sleep(kubesurge::kube::lock::LEASE_DURATION).await;
    // `abort` (with the run's --config) abandons the run and gives the
    // group back at once; `gc` then finds it as it was.
    for args in [&["abort"][..], &["gc", "--yes"][..]] {
        let output = tokio::time::timeout(Duration::from_secs(120), h.command(args).output())
            .await
            .expect("in time")
            .expect("runs");
        assert_eq!(output.status.code(), Some(0), "{args:?}: {}", text(&output));
        if args == ["abort"] {
            assert!(
                text(&output).contains("gave back what it changed at the providers"),
                "{}",
                text(&output)
            );
        }
        let after = h.group("blue").await;
        assert_eq!(
            after.settings(),
            h.groups_before["blue"].settings(),
            "after {args:?}"
        );
        assert_eq!(after.tags, h.groups_before["blue"].tags, "after {args:?}");
    }
    h.finish();
}
