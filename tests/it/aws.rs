//! End to end on moto: `kubesurge rotate` (the real binary) with the `aws`
//! provider, against an emulated cluster whose workers are EC2 instances in
//! moto, through the fault proxy, with the §8.3 observer attached.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use kubesurge_provider::tags;
use kubesurge_testworld::Timing;
use kubesurge_testworld::cloud::MachineStatus;
use kubesurge_testworld::moto::{
    Ec2, Ec2Fault, Ec2Instance, Fault, FaultProxy, MotoServer, MotoWorld, MotoWorldConfig,
};
use kubesurge_testworld::observer::{Observer, PoolFloor};
use kubesurge_testworld::resources::{NODES, SECRETS};
use kubesurge_testworld::world::{PoolSpec, WorldConfig};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::moto_env::{FAST_RUN_SETTINGS, kubesurge_on_moto, text};
use crate::rotation::workers;

const CLUSTER: &str = "e2e-aws";
const POOL: &str = "general";

struct Harness {
    moto: MotoServer,
    proxy: FaultProxy,
    world: MotoWorld,
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    config: PathBuf,
    observer: Arc<Observer>,
    /// The initial workers' instances, by node name.
    originals: BTreeMap<String, Ec2Instance>,
}

async fn start(workers: usize, max_surge: u32) -> Harness {
    let moto = MotoServer::start().await.expect("moto starts");
    let world = MotoWorld::start(
        moto.url(),
        MotoWorldConfig::new(WorldConfig {
            cluster_name: CLUSTER.into(),
            control_planes: 1,
            pools: vec![PoolSpec {
                name: POOL.into(),
                workers,
            }],
            zones: 3,
            version: "v1.35.3".into(),
            timing: Timing::fast(),
            workloads: true,
        }),
    )
    .await
    .expect("moto world starts");
    world
        .wait_ready(Duration::from_secs(60))
        .await
        .expect("moto world ready");
    let proxy = FaultProxy::start(world.endpoint())
        .await
        .expect("proxy starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let (kubeconfig, config, _) = world
        .write_config_files(dir.path(), proxy.url(), max_surge)
        .expect("files");
    let mut yaml = std::fs::read_to_string(&config).expect("config");
    yaml.push_str(FAST_RUN_SETTINGS);
    std::fs::write(&config, yaml).expect("config");
    let observer = Observer::attach(&world.world.store);
    observer.set_pool_floors(vec![PoolFloor {
        name: POOL.into(),
        selector: BTreeMap::from([("kubesurge.io/pool".to_string(), POOL.to_string())]),
        floor: workers,
    }]);
    let originals = world.seeded.workers.clone();
    Harness {
        moto,
        proxy,
        world,
        _dir: dir,
        kubeconfig,
        config,
        observer,
        originals,
    }
}

impl Harness {
    fn command(&self, args: &[&str], max_attempts: u32) -> Command {
        let mut cmd = kubesurge_on_moto(&self.world, self.proxy.url(), &self.kubeconfig);
        cmd.arg("--config")
            .arg(&self.config)
            .args(args)
            .env("AWS_MAX_ATTEMPTS", max_attempts.to_string());
        cmd
    }

    async fn run(&self, args: &[&str], max_attempts: u32) -> Output {
        tokio::time::timeout(
            Duration::from_secs(240),
            self.command(args, max_attempts).output(),
        )
        .await
        .expect("kubesurge finishes in time")
        .expect("kubesurge runs")
    }

    /// Pods and nodes as the store has them, for failure messages.
    fn diagnose(&self) -> String {
        use kubesurge_testworld::resources::PODS;
        let store = &self.world.world.store;
        let ready = |o: &Value| {
            o.pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                .and_then(|c| c["status"].as_str())
                .unwrap_or("-")
                .to_string()
        };
        let mut out = String::from("nodes:\n");
        let (nodes, _) = store.list(&NODES, None, |_| true);
        for n in &nodes {
            out.push_str(&format!(
                "  {} ready={} unschedulable={} taints={}\n",
                n["metadata"]["name"],
                ready(n),
                n["spec"]["unschedulable"],
                n["spec"]["taints"]
            ));
        }
        out.push_str("pods not ready:\n");
        let (pods, _) = store.list(&PODS, None, |_| true);
        for p in pods.iter().filter(|p| ready(p) != "True") {
            out.push_str(&format!(
                "  {}/{} node={} phase={} deleting={}\n",
                p["metadata"]["namespace"],
                p["metadata"]["name"],
                p["spec"]["nodeName"],
                p["status"]["phase"],
                p["metadata"]["deletionTimestamp"]
            ));
        }
        out
    }

    /// Every instance of the cluster in moto, in any state.
    async fn instances(&self) -> Vec<Ec2Instance> {
        self.world
            .ec2
            .describe_instances(&[("tag:kubesurge.io/cluster", vec![CLUSTER.into()])])
            .await
            .expect("describe")
    }

    fn subnet_of_zone(&self, zone: &str) -> String {
        self.world.seeded.subnets[zone].clone()
    }

    /// Stop everything; fail if moto met a call it does not implement.
    fn finish(self) {
        self.world.stop();
        drop(self.proxy);
        if let Err(e) = self.moto.stop() {
            panic!("{e}");
        }
    }

    /// The end state of a successful rotation: every original instance
    /// terminated and its node gone; one new instance per old node, tagged,
    /// in the old node's subnet, IMDSv2 only, joined as its Name; nothing
    /// else running; no token left; no §8.3 violation.
    async fn assert_rotated(&self) {
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
        assert_eq!(now.len(), self.originals.len(), "the pool keeps its size");
        let live: Vec<&Ec2Instance> = all.iter().filter(|i| i.state != "terminated").collect();
        assert_eq!(
            live.len(),
            self.originals.len(),
            "one live instance per node, no orphan: {live:#?}"
        );
        let mut replaced = BTreeSet::new();
        for new in &live {
            let old_name = new.tag(tags::REPLACES).expect("replaces tag");
            assert!(
                replaced.insert(old_name.to_string()),
                "{old_name} replaced twice"
            );
            let old = &self.originals[old_name];
            assert_eq!(new.tag(tags::CLUSTER), Some(CLUSTER));
            assert_eq!(new.tag(tags::POOL), Some(POOL));
            assert!(new.tag(tags::RUN).is_some_and(|r| !r.is_empty()));
            assert!(
                new.tag(tags::SLOT)
                    .is_some_and(|s| s.contains(&format!(".{old_name}."))),
                "{:?}",
                new.tags
            );
            assert_eq!(new.subnet, old.subnet, "{} in {old_name}'s subnet", new.id);
            assert_eq!(new.zone, old.zone);
            assert_eq!(new.http_tokens.as_deref(), Some("required"), "IMDSv2");
            let machine = self.world.machines.machine(&new.id).expect("a machine");
            assert_eq!(machine.status, MachineStatus::Joined, "{}", new.id);
            let name = new.tag(tags::NAME).expect("Name");
            assert_eq!(machine.node_name.as_deref(), Some(name));
            let node = self
                .world
                .world
                .store
                .get(&NODES, "", name)
                .expect("its node");
            assert_eq!(
                node.pointer("/spec/providerID").and_then(Value::as_str),
                Some(format!("aws:///{}/{}", new.zone, new.id).as_str())
            );
        }
        let (secrets, _) = self
            .world
            .world
            .store
            .list(&SECRETS, Some("kube-system"), |s| {
                s.pointer("/type") == Some(&json!("bootstrap.kubernetes.io/token"))
            });
        assert!(
            secrets.is_empty(),
            "bootstrap tokens left: {}",
            secrets.len()
        );
        let violations = self.observer.violations();
        assert!(
            violations.is_empty(),
            "invariant violations: {violations:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotates_nine_workers_in_three_zones_on_moto() {
    let h = start(9, 3).await;
    let output = h.run(&["rotate", "--all", "--yes", "-o", "json"], 5).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}\n{}", h.diagnose());
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    assert_eq!(report["outcome"]["result"], "succeeded", "{report}");
    assert_eq!(report["slots"].as_array().map(Vec::len), Some(9));
    h.assert_rotated().await;
    // Every zone kept its workers.
    let zones: BTreeSet<&str> = h.originals.values().map(|i| i.zone.as_str()).collect();
    assert_eq!(zones.len(), 3);
    println!(
        "EC2 calls for 9 replacements: {:?}",
        h.proxy
            .calls()
            .iter()
            .fold(BTreeMap::<String, usize>::new(), |mut m, c| {
                *m.entry(c.action.clone()).or_default() += 1;
                m
            })
    );
    h.finish();
}

impl Harness {
    /// Start `rotate --all` (maxSurge 1) and SIGKILL it as soon as EC2
    /// answered its first launch; the instance that launch made.
    async fn kill_after_first_launch(&self) -> Ec2Instance {
        let mut child = self
            .command(&["rotate", "--all", "--yes"], 5)
            .spawn()
            .expect("kubesurge starts");
        tokio::select! {
            reached = self.proxy.wait_until(Duration::from_secs(120), |calls| {
                calls.iter().any(|c| c.action == "RunInstances" && c.status == 200)
            }) => {
                assert!(reached, "no RunInstances within two minutes");
                child.start_kill().expect("SIGKILL");
                let _ = child.wait().await;
            }
            status = child.wait() => panic!("the run ended before any launch: {status:?}"),
        }
        let launched_before = self.proxy.succeeded("RunInstances");
        assert_eq!(launched_before, 1, "maxSurge 1: one launch in flight");
        self.instances()
            .await
            .into_iter()
            .find(|i| i.tag(tags::SLOT).is_some())
            .expect("the launched instance")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_right_after_run_instances_the_rerun_adopts_the_instance() {
    let h = start(3, 1).await;
    let orphan = h.kill_after_first_launch().await;

    let output = h.run(&["rotate", "--all", "--yes"], 5).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "rerun:\n{all}");
    h.assert_rotated().await;
    // The rerun adopted it: 3 replacements launched in all, and the one
    // launched before the kill is one of them.
    assert_eq!(h.proxy.succeeded("RunInstances"), 3, "{all}");
    let in_moto = h.instances().await;
    assert_eq!(in_moto.len(), 6, "3 old + 3 new instances, no duplicate");
    let adopted = in_moto.iter().find(|i| i.id == orphan.id).unwrap();
    assert_eq!(adopted.state, "running", "the orphan became a node");
    h.finish();
}

/// EC2 keeps a launch's `ClientToken` bound for at least 24 hours after
/// its instance is terminated, and answers the token with other parameters
/// `IdempotentParameterMismatch` (the world's EC2 does, see
/// `kubesurge_testworld::moto::idempotency`). A run killed after its launch,
/// whose instance is then terminated (by an operator, by `gc`, or given up
/// by an earlier invocation), is rerun: the rerun's launch for the same
/// attempt carries new user data (a new bootstrap token).
///
/// Before: the provider classed the mismatch as transient; the rerun
/// retried the same token until the provider retry gave up and the slot
/// failed, and every later rerun did the same — the slot was wedged.
/// Now the spent key ends the attempt and the next attempt launches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_whose_launch_was_terminated_meanwhile_launches_the_next_attempt() {
    let h = start(3, 1).await;
    let gone = h.kill_after_first_launch().await;
    let slot = gone.tag(tags::SLOT).expect("slot tag").to_string();
    let old_node = gone.tag(tags::REPLACES).expect("replaces tag").to_string();
    assert!(slot.ends_with(".1"), "attempt 1: {slot}");
    // Terminated through the world's EC2, so its machine stops as well.
    Ec2::new(h.world.endpoint(), h.world.ec2.region())
        .terminate(std::slice::from_ref(&gone.id))
        .await
        .expect("terminate");
    h.world
        .machines
        .wait_until(Duration::from_secs(30), |machines| {
            machines
                .iter()
                .filter(|m| m.instance_id == gone.id)
                .all(|m| m.status == MachineStatus::Terminated)
        })
        .await
        .expect("its machine stops");
    // Had it registered, the cloud's node lifecycle controller would
    // delete its Node once the instance is gone
    // (k8s.io/cloud-provider/controllers/nodelifecycle/node_lifecycle_controller.go).
    let store = &h.world.world.store;
    let (nodes, _) = store.list(&NODES, None, |n| {
        n.pointer("/spec/providerID").and_then(Value::as_str) == Some(&gone.provider_id())
    });
    for node in nodes {
        if let Some(name) = node.pointer("/metadata/name").and_then(Value::as_str) {
            let _ = store.delete(&NODES, "", name, &Default::default());
        }
    }

    let output = h.run(&["rotate", "--all", "--yes", "-o", "json"], 5).await;
    let all = text(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "rerun:\n{all}\n{}",
        h.diagnose()
    );
    h.assert_rotated().await;
    let refused: Vec<_> = h
        .proxy
        .calls()
        .into_iter()
        .filter(|c| c.action == "RunInstances" && c.status == 400)
        .collect();
    assert_eq!(refused.len(), 1, "one launch met the spent token: {all}");
    assert_eq!(h.proxy.succeeded("RunInstances"), 4, "3 + the first, gone");
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    let slot_report = report["slots"]
        .as_array()
        .and_then(|slots| slots.iter().find(|s| s["oldNode"] == old_node.as_str()))
        .expect("the slot's report");
    assert_eq!(slot_report["attempts"], 2, "{slot_report}");
    let replacement = h
        .instances()
        .await
        .into_iter()
        .find(|i| i.tag(tags::REPLACES) == Some(&old_node) && i.state != "terminated")
        .expect("the slot's replacement");
    assert!(
        replacement
            .tag(tags::SLOT)
            .is_some_and(|s| s.ends_with(".2")),
        "{:?}",
        replacement.tags
    );
    assert_eq!(
        h.world.ec2.instance(&gone.id).await.unwrap().unwrap().state,
        "terminated"
    );
    h.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_bursts_and_server_errors_are_ridden_through() {
    let h = start(3, 3).await;
    let p = &h.proxy;
    p.inject(
        "DescribeInstances",
        3,
        Fault::Fail(Ec2Fault::request_limit_exceeded()),
    );
    p.inject(
        "RunInstances",
        2,
        Fault::Fail(Ec2Fault::request_limit_exceeded()),
    );
    p.inject("RunInstances", 1, Fault::Fail(Ec2Fault::internal_error()));
    p.inject("TerminateInstances", 1, Fault::Fail(Ec2Fault::plain_500()));
    p.inject(
        "TerminateInstances",
        1,
        Fault::Fail(Ec2Fault::request_limit_exceeded()),
    );
    p.inject("DescribeImages", 1, Fault::Fail(Ec2Fault::internal_error()));
    let output = h.run(&["rotate", "--all", "--yes"], 5).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    h.assert_rotated().await;
    assert_eq!(
        p.calls().iter().filter(|c| c.injected).count(),
        9,
        "every injected error was met and ridden through"
    );
    h.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_capacity_in_one_zone_fails_those_slots_without_launching_elsewhere() {
    let h = start(3, 3).await;
    let full_zone = h.originals["general-2"].zone.clone();
    let full_subnet = h.subnet_of_zone(&full_zone);
    h.proxy.inject_matching(
        "RunInstances",
        &full_subnet,
        usize::MAX,
        Fault::Fail(Ec2Fault::insufficient_capacity()),
    );
    let output = h.run(&["rotate", "--all", "--yes", "-o", "json"], 2).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(all.contains("insufficient capacity"), "{all}");
    assert!(all.contains(&full_zone), "names the zone: {all}");
    let instances = h.instances().await;
    let new: Vec<&Ec2Instance> = instances
        .iter()
        .filter(|i| i.tag(tags::SLOT).is_some())
        .collect();
    for i in &new {
        let old = &h.originals[i.tag(tags::REPLACES).unwrap()];
        assert_eq!(
            i.zone, old.zone,
            "{} launched outside its old node's zone",
            i.id
        );
        assert_ne!(i.zone, full_zone);
    }
    // The node of the full zone keeps serving.
    let (nodes, _) = h.world.world.store.list(&NODES, None, |_| true);
    let names: BTreeSet<&str> = nodes
        .iter()
        .filter_map(|n| n.pointer("/metadata/name").and_then(Value::as_str))
        .collect();
    assert!(names.contains("general-2"), "{names:?}");
    assert_eq!(
        instances
            .iter()
            .find(|i| i.id == h.originals["general-2"].id)
            .map(|i| i.state.as_str()),
        Some("running")
    );
    let violations = h.observer.violations();
    assert!(
        violations.is_empty(),
        "invariant violations: {violations:#?}"
    );
    h.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_permission_stops_the_run_naming_the_action() {
    let h = start(3, 3).await;
    h.proxy.inject(
        "RunInstances",
        usize::MAX,
        Fault::Fail(Ec2Fault::unauthorized()),
    );
    let output = h.run(&["rotate", "--all", "--yes"], 5).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(all.contains("ec2:RunInstances"), "names the action: {all}");
    // Not retried: at most one attempt per slot that was in flight.
    assert!(h.proxy.count("RunInstances") <= 3, "{:?}", h.proxy.calls());
    let instances = h.instances().await;
    assert!(
        instances
            .iter()
            .all(|i| i.state == "running" && i.tag(tags::SLOT).is_none()),
        "nothing launched or terminated: {instances:#?}"
    );
    assert_eq!(workers(&h.world.world).len(), 3);
    let violations = h.observer.violations();
    assert!(
        violations.is_empty(),
        "invariant violations: {violations:#?}"
    );
    h.finish();
}

/// `sandbox up --cloud aws`: the world's workers live in moto, the written
/// config uses the `aws` provider and `aws.env` points at the world; a
/// rotation with them replaces every worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_up_on_moto_is_rotated_with_the_files_it_writes() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let moto = MotoServer::start().await.expect("moto starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sandbox = Command::new(env!("CARGO_BIN_EXE_kubesurge"))
        .args(["sandbox", "up", "--workers", "3", "--zones", "3"])
        .args(["--boot-delay", "150ms", "--pod-start-delay", "50ms"])
        .args(["--termination-delay", "100ms"])
        .args(["--cloud", "aws", "--aws-endpoint", moto.url()])
        .arg("--dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("sandbox starts");
    let stdout = sandbox.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(90), lines.next_line())
        .await
        .expect("a ready line in time")
        .expect("stdout readable")
        .expect("a line");
    let path = |name: &str| dir.path().join(name);
    assert_eq!(
        ready,
        format!(
            "ready: kubeconfig={} config={} env={}",
            path("kubeconfig").display(),
            path("kubesurge.yaml").display(),
            path("aws.env").display()
        )
    );
    let config = std::fs::read_to_string(path("kubesurge.yaml")).expect("config");
    assert!(config.contains("provider: aws"), "{config}");
    std::fs::write(
        path("kubesurge.yaml"),
        format!("{config}health: {{ newNodeTimeout: 60s, settle: 1s }}\n"),
    )
    .expect("config");
    let env: Vec<(String, String)> = std::fs::read_to_string(path("aws.env"))
        .expect("env file")
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert!(env.iter().any(|(k, _)| k == "AWS_ENDPOINT_URL"), "{env:?}");

    let output = tokio::time::timeout(
        Duration::from_secs(240),
        Command::new(env!("CARGO_BIN_EXE_kubesurge"))
            .arg("--kubeconfig")
            .arg(path("kubeconfig"))
            .arg("--config")
            .arg(path("kubesurge.yaml"))
            .args(["rotate", "--all", "--yes", "-o", "json"])
            .env_remove("AWS_PROFILE")
            .envs(env)
            .env("AWS_CONFIG_FILE", "/nonexistent/kubesurge-test-aws-config")
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/kubesurge-test-aws-credentials",
            )
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("rotation finishes in time")
    .expect("kubesurge runs");
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    assert_eq!(
        report["slots"].as_array().map(Vec::len),
        Some(3),
        "{report}"
    );
    let ec2 = kubesurge_testworld::moto::Ec2::new(moto.url(), "us-east-1");
    let instances = ec2.describe_instances(&[]).await.expect("describe");
    let running: Vec<&Ec2Instance> = instances.iter().filter(|i| i.state == "running").collect();
    assert_eq!(running.len(), 3, "{instances:#?}");
    assert!(running.iter().all(|i| i.tag(tags::SLOT).is_some()));
    assert_eq!(
        instances.iter().filter(|i| i.state == "terminated").count(),
        3
    );
    sandbox.start_kill().expect("stop the sandbox");
    let _ = sandbox.wait().await;
    if let Err(e) = moto.stop() {
        panic!("{e}");
    }
}

/// `kubesurge check` on moto asks EC2 whether the run's calls are allowed
/// with `DryRun=true` (RunInstances with the real launch request, its tags
/// included, and TerminateInstances on an old instance), names a denied
/// one with its fix, and makes no mutating call: the proxy's log holds only
/// Describe* calls and dry runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_asks_with_dry_runs_and_names_a_denied_run_instances() {
    let h = start(3, 3).await;
    h.proxy.reset_calls();
    let output = h.run(&["check", "-o", "json"], 1).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let permissions: Vec<&Value> = report["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter(|l| l["check"] == "permission")
        .collect();
    for action in ["ec2:RunInstances", "ec2:TerminateInstances"] {
        assert!(
            permissions.iter().any(|l| l["status"] == "pass"
                && l["message"].as_str().unwrap_or("").starts_with(action)),
            "{action} asked and allowed: {all}"
        );
    }
    let calls = h.proxy.calls();
    for call in &calls {
        assert!(
            call.changes_nothing(),
            "a mutating call: {call:?} in {calls:?}"
        );
    }
    for action in ["RunInstances", "TerminateInstances"] {
        assert!(
            calls
                .iter()
                .any(|c| c.action == action && c.dry_run && c.status == 412),
            "{action} asked as a dry run, answered 412 DryRunOperation: {calls:?}"
        );
    }

    h.proxy.inject(
        "RunInstances",
        usize::MAX,
        Fault::Fail(Ec2Fault::unauthorized()),
    );
    let output = h.run(&["check", "-o", "json"], 1).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let failed: Vec<&Value> = report["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter(|l| l["status"] != "pass")
        .collect();
    assert_eq!(failed.len(), 1, "only RunInstances fails: {all}");
    assert_eq!(failed[0]["check"], "permission", "{all}");
    assert!(
        failed[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("ec2:RunInstances denied"),
        "{all}"
    );
    assert!(
        failed[0]["fix"]
            .as_str()
            .unwrap()
            .contains("allow ec2:RunInstances"),
        "{all}"
    );
    let instances = h.instances().await;
    assert!(
        instances
            .iter()
            .all(|i| i.state == "running" && i.tag(tags::SLOT).is_none()),
        "nothing launched or terminated: {instances:#?}"
    );
    h.finish();
}
