//! End to end: `kubesurge rotate` (the real binary, real HTTP) against the
//! emulated world, with the §8.3 observer attached for the whole run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use kubesurge_provider::InstanceState;
use kubesurge_testworld::Timing;
use kubesurge_testworld::apiserver::FaultFilter;
use kubesurge_testworld::observer::{Observer, PoolFloor};
use kubesurge_testworld::resources::{LEASES, NODES, PODS, SECRETS, VOLUMEATTACHMENTS};
use kubesurge_testworld::world::{PoolSpec, World, WorldConfig, WorldOptions};
use serde_json::{Value, json};
use tokio::process::Command;

/// How a test world is built.
pub struct Spec {
    pub version: &'static str,
    pub control_planes: usize,
    pub pools: Vec<(&'static str, usize)>,
    pub max_surge: u32,
    pub drain: &'static str,
    pub workloads: bool,
    /// More top-level YAML for the config (a `window:` section).
    pub extra: String,
    /// More YAML for every pool (indented as a pool's fields).
    pub pool_extra: &'static str,
    /// The cluster runs a cloud controller manager that initializes new
    /// Nodes this long after they register.
    pub cloud_controller: Option<Duration>,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            version: "v1.35.3",
            control_planes: 1,
            pools: vec![("general", 4)],
            max_surge: 2,
            drain: "{ timeout: 60s, onTimeout: fail, unmanagedPods: delete }",
            workloads: true,
            extra: String::new(),
            pool_extra: "",
            cloud_controller: None,
        }
    }
}

/// A world, its config files, an observer, and every bootstrap token
/// secret minted while it ran.
pub struct Harness {
    pub world: World,
    /// Holds the config files for the harness's lifetime.
    pub _dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub config: PathBuf,
    pub observer: Arc<Observer>,
    pub tokens: Arc<Mutex<BTreeSet<String>>>,
    pub original_workers: BTreeMap<String, String>,
}

pub async fn start(spec: Spec) -> Harness {
    let world = World::start_with(
        WorldConfig {
            cluster_name: "e2e".into(),
            control_planes: spec.control_planes,
            pools: spec
                .pools
                .iter()
                .map(|(name, workers)| PoolSpec {
                    name: name.to_string(),
                    workers: *workers,
                })
                .collect(),
            zones: 3,
            version: spec.version.into(),
            timing: Timing::fast(),
            workloads: spec.workloads,
        },
        WorldOptions {
            cloud_controller: spec.cloud_controller,
            ..WorldOptions::default()
        },
    )
    .await
    .expect("world starts");
    world
        .wait_ready(Duration::from_secs(30))
        .await
        .expect("world ready");
    let dir = tempfile::tempdir().expect("temp dir");
    let (kubeconfig, _) = world.write_config_files(dir.path()).expect("files");
    let config = dir.path().join("rotation.yaml");
    std::fs::write(&config, config_yaml(&world, &spec)).expect("config");

    let tokens = Arc::new(Mutex::new(BTreeSet::new()));
    let seen = tokens.clone();
    world.store.observe(move |event| {
        if std::ptr::eq(event.resource, &SECRETS)
            && event.object.pointer("/type") == Some(&json!("bootstrap.kubernetes.io/token"))
            && let Some(secret) = event
                .object
                .pointer("/data/token-secret")
                .and_then(Value::as_str)
            && let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(secret)
        {
            seen.lock()
                .unwrap()
                .insert(String::from_utf8_lossy(&raw).to_string());
        }
    });
    let observer = Observer::attach(&world.store);
    observer.set_pool_floors(
        spec.pools
            .iter()
            .map(|(name, workers)| PoolFloor {
                name: name.to_string(),
                selector: BTreeMap::from([("kubesurge.io/pool".to_string(), name.to_string())]),
                floor: *workers,
            })
            .collect(),
    );
    let original_workers = workers(&world);
    Harness {
        world,
        _dir: dir,
        kubeconfig,
        config,
        observer,
        tokens,
        original_workers,
    }
}

fn config_yaml(world: &World, spec: &Spec) -> String {
    let mut pools = String::new();
    for (name, _) in &spec.pools {
        pools.push_str(&format!(
            "  - name: {name}\n    selector: {{ kubesurge.io/pool: {name} }}\n    provider: sim\n    sim: {{ endpoint: \"{url}\" }}\n    maxSurge: {surge}\n    maxUnavailable: 0\n    nodeLabels: {{ kubesurge.io/pool: {name} }}\n{extra}",
            url = world.cloud.url(),
            surge = spec.max_surge,
            extra = spec.pool_extra,
        ));
    }
    format!(
        "apiVersion: kubesurge.io/v1alpha1\nkind: RotationConfig\ncluster:\n  name: e2e\ncontrolPlane:\n  exec: sim\npools:\n{pools}drain: {drain}\njoin: {{ tokenTTL: 2m }}\nhealth: {{ newNodeTimeout: 20s, settle: 1s }}\n{extra}",
        drain = spec.drain,
        extra = spec.extra
    )
}

/// Worker node name → pool, from the store.
pub fn workers(world: &World) -> BTreeMap<String, String> {
    let (nodes, _) = world.store.list(&NODES, None, |_| true);
    nodes
        .iter()
        .filter_map(|n| {
            let pool = n.pointer("/metadata/labels/kubesurge.io~1pool")?.as_str()?;
            Some((
                n["metadata"]["name"].as_str()?.to_string(),
                pool.to_string(),
            ))
        })
        .collect()
}

impl Harness {
    pub fn command(&self, args: &[&str]) -> Command {
        kubesurge(&self.kubeconfig, &self.config, args)
    }

    pub async fn run(&self, args: &[&str]) -> Output {
        run_to_end(self.command(args)).await
    }

    /// Every minted token secret must be absent from `text`.
    pub fn assert_no_token_in(&self, text: &str) {
        let tokens = self.tokens.lock().unwrap();
        assert!(!tokens.is_empty(), "the run minted tokens");
        for secret in tokens.iter() {
            assert!(
                !text.contains(secret.as_str()),
                "a bootstrap token secret leaked into the output"
            );
        }
    }

    /// The end state every successful rotation must reach: every original
    /// worker gone, each pool at its size with new nodes at the version, no
    /// instance beyond the nodes, no token left, no §8.3 violation.
    pub fn assert_converged(&self) {
        let now = workers(&self.world);
        for old in self.original_workers.keys() {
            assert!(!now.contains_key(old), "old worker {old} is still there");
        }
        let mut per_pool: BTreeMap<&str, usize> = BTreeMap::new();
        for pool in self.original_workers.values() {
            *per_pool.entry(pool).or_default() += 1;
        }
        let mut now_per_pool: BTreeMap<&str, usize> = BTreeMap::new();
        for pool in now.values() {
            *now_per_pool.entry(pool).or_default() += 1;
        }
        assert_eq!(now_per_pool, per_pool, "each pool keeps its size");
        let (nodes, _) = self.world.store.list(&NODES, None, |_| true);
        let live: Vec<_> = self
            .world
            .cloud
            .instances()
            .into_iter()
            .filter(|i| {
                !matches!(
                    i.state,
                    InstanceState::Terminated | InstanceState::ShuttingDown
                )
            })
            .collect();
        assert_eq!(
            live.len(),
            nodes.len(),
            "every live instance is a node and every node an instance (no orphan, no extra): {:?}",
            live.iter().map(|i| i.id.0.clone()).collect::<Vec<_>>()
        );
        for node in &nodes {
            assert_eq!(
                node["spec"].get("unschedulable"),
                None,
                "{} left cordoned",
                node["metadata"]["name"]
            );
        }
        let (secrets, _) = self.world.store.list(&SECRETS, Some("kube-system"), |s| {
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

/// The real binary with a kubeconfig and a config file, and nothing from
/// the environment that could point it elsewhere.
pub fn kubesurge(kubeconfig: &Path, config: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubesurge"));
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("KUBECONFIG")
        .env_remove("KUBESURGE_CONFIG")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Run `command` to its end (three minutes at most) and collect its output.
/// A kubesurge document it prints must hold its published JSON Schema.
pub async fn run_to_end(mut command: Command) -> Output {
    let output = tokio::time::timeout(Duration::from_secs(180), command.output())
        .await
        .expect("kubesurge finishes in time")
        .expect("kubesurge runs");
    crate::schemas::assert_valid_document(&output.stdout).await;
    output
}

/// Each control-plane static pod (etcd keeps its own version) → the
/// version of its image.
pub fn control_plane_versions(world: &World) -> Vec<(String, String)> {
    let (pods, _) = world.store.list(&PODS, Some("kube-system"), |p| {
        p.pointer("/metadata/labels/tier").and_then(Value::as_str) == Some("control-plane")
    });
    pods.iter()
        .filter_map(|p| {
            let image = p.pointer("/spec/containers/0/image")?.as_str()?;
            let component = p.pointer("/metadata/labels/component")?.as_str()?;
            (component != "etcd").then(|| {
                (
                    p["metadata"]["name"].as_str().unwrap_or("").to_string(),
                    image.rsplit(':').next().unwrap_or("").to_string(),
                )
            })
        })
        .collect()
}

/// The pods and nodes as the store has them, for failure messages.
fn world_state(h: &Harness) -> String {
    let (pods, _) = h.world.store.list(&PODS, Some("shop"), |_| true);
    let (nodes, _) = h.world.store.list(&NODES, None, |_| true);
    let mut out = String::from("nodes:\n");
    for n in nodes.iter() {
        out.push_str(&format!(
            "  {} unschedulable={} ready={}\n",
            n["metadata"]["name"],
            n["spec"].get("unschedulable").unwrap_or(&json!(false)),
            n.pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .map(|c| c["status"].clone())
                .unwrap_or_default()
        ));
    }
    let (pdbs, _) = h
        .world
        .store
        .list(&kubesurge_testworld::resources::PDBS, Some("shop"), |_| {
            true
        });
    for pdb in pdbs.iter() {
        out.push_str(&format!(
            "pdb {} status={}\n",
            pdb["metadata"]["name"], pdb["status"]
        ));
    }
    out.push_str("pods:\n");
    for p in pods.iter() {
        out.push_str(&format!(
            "  {} node={} phase={} ready={} deleting={}\n",
            p["metadata"]["name"],
            p["spec"]["nodeName"],
            p["status"]["phase"],
            p.pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .map(|c| c["status"].clone())
                .unwrap_or_default(),
            p["metadata"].get("deletionTimestamp").is_some()
        ));
    }
    out
}

pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A pod no controller owns, pinned to a pool.
fn unmanaged_pod(world: &World, pool: &str) {
    world
        .store
        .create(
            &PODS,
            "shop",
            json!({
                "metadata": {"name": "debug-shell", "labels": {"app": "debug"}},
                "spec": {
                    "nodeSelector": {"kubesurge.io/pool": pool},
                    "containers": [{"name": "sh", "image": "busybox"}]
                }
            }),
        )
        .expect("pod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotates_three_pools_keeping_every_invariant() {
    let h = start(Spec {
        pools: vec![("general", 4), ("batch", 4), ("edge", 4)],
        ..Spec::default()
    })
    .await;
    unmanaged_pod(&h.world, "batch");
    let zones_before: BTreeMap<String, String> = {
        let (nodes, _) = h.world.store.list(&NODES, None, |_| true);
        nodes
            .iter()
            .map(|n| {
                (
                    n["metadata"]["name"].as_str().unwrap().to_string(),
                    n.pointer("/metadata/labels/topology.kubernetes.io~1zone")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                )
            })
            .collect()
    };

    let output = h.run(&["rotate", "--all", "--yes", "-o", "json"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    h.assert_no_token_in(&all);
    h.assert_converged();

    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    assert_eq!(report["outcome"]["result"], "succeeded");
    let slots = report["slots"].as_array().unwrap();
    assert_eq!(slots.len(), 12);
    for slot in slots {
        assert_eq!(slot["outcome"]["result"], "replaced", "{slot}");
        let old = slot["oldNode"].as_str().unwrap();
        let new = slot["newNode"].as_str().unwrap();
        let new_zone = h
            .world
            .store
            .get(&NODES, "", new)
            .and_then(|n| {
                n.pointer("/metadata/labels/topology.kubernetes.io~1zone")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap();
        assert_eq!(
            zones_before[old], new_zone,
            "{new} replaced {old} in its zone"
        );
    }
    // The unmanaged pod was evicted (drain.unmanagedPods: delete).
    assert!(h.world.store.get(&PODS, "shop", "debug-shell").is_none());
}

/// A moment in a run at which the test kills `kubesurge` with SIGKILL,
/// read from the run's own trace (the store's changes, the cloud's
/// instances), never from a sleep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillPoint {
    /// The run record was written (the first time).
    RecordWritten,
    /// The n-th write of the run record.
    RecordWrite(usize),
    /// The n-th bootstrap token Secret was created.
    TokenMinted(usize),
    /// The n-th replacement instance was launched.
    Launched(usize),
    /// The n-th new node registered.
    NodeJoined(usize),
    /// The n-th time an old node got `kubesurge.io/phase` = this.
    Phase(&'static str, usize),
    /// The n-th old node was cordoned.
    Cordoned(usize),
    /// The n-th pod was evicted (got a deletionTimestamp or vanished).
    Evicted(usize),
    /// The n-th old Node object was deleted.
    NodeDeleted(usize),
    /// The n-th static pod of this control-plane component moved to a new
    /// image.
    StaticPodUpgraded(&'static str, usize),
    /// The n-th kubelet upgraded in place (a Node's kubeletVersion changed).
    KubeletUpgraded(usize),
}

impl KillPoint {
    /// The same kind of moment, whatever its count.
    pub(crate) fn same_kind(&self, other: &KillPoint) -> bool {
        use KillPoint::*;
        match (self, other) {
            (Phase(a, _), Phase(b, _)) | (StaticPodUpgraded(a, _), StaticPodUpgraded(b, _)) => {
                a == b
            }
            (RecordWritten | RecordWrite(_), RecordWritten | RecordWrite(_)) => true,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }

    /// How many of its kind make the moment.
    pub(crate) fn nth(&self) -> usize {
        match *self {
            KillPoint::RecordWritten => 1,
            KillPoint::RecordWrite(n)
            | KillPoint::TokenMinted(n)
            | KillPoint::Launched(n)
            | KillPoint::NodeJoined(n)
            | KillPoint::Phase(_, n)
            | KillPoint::Cordoned(n)
            | KillPoint::Evicted(n)
            | KillPoint::NodeDeleted(n)
            | KillPoint::StaticPodUpgraded(_, n)
            | KillPoint::KubeletUpgraded(n) => n,
        }
    }
}

/// The kinds of moment a store change is, for the kill points.
fn moments(
    e: &kubesurge_testworld::store::Event,
    originals: &BTreeSet<String>,
    static_pod_images: &Mutex<BTreeMap<String, String>>,
) -> Vec<KillPoint> {
    use kubesurge_testworld::store::EventType;
    let name = e.name.as_str();
    let annotation = |v: &Value, key: &str| {
        v.pointer(&format!("/metadata/annotations/{}", key.replace('/', "~1")))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let mut found = Vec::new();
    if e.resource.plural == "configmaps" && name == "kubesurge-run" {
        found.push(KillPoint::RecordWrite(0));
    }
    if std::ptr::eq(e.resource, &SECRETS)
        && e.event_type == EventType::Added
        && name.starts_with("bootstrap-token-")
    {
        found.push(KillPoint::TokenMinted(0));
    }
    if std::ptr::eq(e.resource, &NODES) {
        if e.event_type == EventType::Added && !originals.contains(name) {
            found.push(KillPoint::NodeJoined(0));
        }
        if e.event_type == EventType::Deleted && originals.contains(name) {
            found.push(KillPoint::NodeDeleted(0));
        }
        if let Some(phase) = annotation(&e.object, "kubesurge.io/phase")
            && e.previous
                .as_ref()
                .and_then(|p| annotation(p, "kubesurge.io/phase"))
                .as_deref()
                != Some(phase.as_str())
        {
            for known in ["launching", "joining", "draining", "terminating"] {
                if phase == known {
                    found.push(KillPoint::Phase(known, 0));
                }
            }
        }
        if e.object.pointer("/spec/unschedulable") == Some(&json!(true))
            && e.previous
                .as_ref()
                .and_then(|p| p.pointer("/spec/unschedulable"))
                != Some(&json!(true))
        {
            found.push(KillPoint::Cordoned(0));
        }
        let kubelet = |v: &Value| v.pointer("/status/nodeInfo/kubeletVersion").cloned();
        if e.event_type == EventType::Modified
            && let Some(previous) = &e.previous
            && kubelet(previous).is_some()
            && kubelet(previous) != kubelet(&e.object)
        {
            found.push(KillPoint::KubeletUpgraded(0));
        }
    }
    if std::ptr::eq(e.resource, &PODS) {
        if e.object.pointer("/metadata/deletionTimestamp").is_some()
            && e.previous
                .as_ref()
                .is_some_and(|p| p.pointer("/metadata/deletionTimestamp").is_none())
        {
            found.push(KillPoint::Evicted(0));
        }
        // Static pods may be replaced rather than updated: compare with the
        // last image seen under the same name.
        if e.event_type != EventType::Deleted
            && let Some(component) = e
                .object
                .pointer("/metadata/labels/component")
                .and_then(Value::as_str)
            && e.object.pointer("/metadata/labels/tier") == Some(&json!("control-plane"))
        {
            let image = e
                .object
                .pointer("/spec/containers/0/image")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let moved = static_pod_images
                .lock()
                .unwrap()
                .insert(name.to_string(), image.clone())
                .is_some_and(|before| before != image);
            if moved {
                for known in [
                    "kube-apiserver",
                    "kube-controller-manager",
                    "kube-scheduler",
                    "etcd",
                ] {
                    if component == known {
                        found.push(KillPoint::StaticPodUpgraded(known, 0));
                    }
                }
            }
        }
    }
    found
}

/// Counts the moments of a run as the store sees them: by kind, and calls
/// `on_moment` with each one and its running count.
pub fn trace(h: &Harness, on_moment: impl Fn(KillPoint, usize) + Send + Sync + 'static) {
    let originals: BTreeSet<String> = h.original_workers.keys().cloned().collect();
    let (pods, _) = h.world.store.list(&PODS, Some("kube-system"), |p| {
        p.pointer("/metadata/labels/tier") == Some(&json!("control-plane"))
    });
    let images: Mutex<BTreeMap<String, String>> = Mutex::new(
        pods.iter()
            .map(|p| {
                (
                    p["metadata"]["name"].as_str().unwrap_or("").to_string(),
                    p.pointer("/spec/containers/0/image")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                )
            })
            .collect(),
    );
    let counts: Mutex<Vec<(KillPoint, usize)>> = Mutex::new(Vec::new());
    h.world.store.observe(move |e| {
        for moment in moments(e, &originals, &images) {
            let n = {
                let mut counts = counts.lock().unwrap();
                match counts.iter_mut().find(|(k, _)| k.same_kind(&moment)) {
                    Some((_, n)) => {
                        *n += 1;
                        *n
                    }
                    None => {
                        counts.push((moment, 1));
                        1
                    }
                }
            };
            on_moment(moment, n);
        }
    });
}

/// Says when a kill point is reached.
pub fn arm(h: &Harness, point: KillPoint) -> Arc<tokio::sync::Notify> {
    let hit = Arc::new(tokio::sync::Notify::new());
    let signal = hit.clone();
    trace(h, move |moment, n| {
        if moment.same_kind(&point) && n == point.nth() {
            signal.notify_one();
        }
    });
    if let KillPoint::Launched(n) = point {
        let initial = h.world.cloud.instances().len();
        let cloud_instances = {
            let world_cloud = h.world.cloud.clone();
            move || world_cloud.instances().len()
        };
        let signal = hit.clone();
        tokio::spawn(async move {
            // The cloud has no change feed for tests; look often.
            while cloud_instances() < initial + n {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            signal.notify_one();
        });
    }
    hit
}

/// Run kubesurge with `args` and kill it (SIGKILL) the moment `point` is
/// reached; fails if it ends before, or the point never comes.
pub async fn kill_at(h: &Harness, point: KillPoint, args: &[&str]) {
    let hit = arm(h, point);
    let mut child = h.command(args).spawn().expect("kubesurge starts");
    tokio::select! {
        _ = hit.notified() => {
            child.start_kill().expect("SIGKILL");
            let _ = child.wait().await;
        }
        status = child.wait() => {
            panic!("the run ended before reaching {point:?}: {status:?}");
        }
        _ = tokio::time::sleep(Duration::from_secs(120)) => panic!("{point:?} never reached"),
    }
}

async fn crash_then_resume(point: KillPoint) {
    let h = start(Spec::default()).await;
    kill_at(&h, point, &["rotate", "--all", "--yes"]).await;
    // The same command again continues the run and converges.
    let output = h.run(&["rotate", "--all", "--yes"]).await;
    let all = text(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "rerun after a kill at {point:?}:\n{all}"
    );
    h.assert_no_token_in(&all);
    h.assert_converged();
}

macro_rules! crash_tests {
    ($($name:ident: $point:expr,)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            crash_then_resume($point).await;
        }
    )*};
}

crash_tests! {
    crash_after_run_record: KillPoint::RecordWritten,
    crash_after_first_token: KillPoint::TokenMinted(1),
    crash_after_first_launch: KillPoint::Launched(1),
    crash_after_third_launch: KillPoint::Launched(3),
    crash_after_first_join: KillPoint::NodeJoined(1),
    crash_after_second_join: KillPoint::NodeJoined(2),
    crash_at_first_draining_mark: KillPoint::Phase("draining", 1),
    crash_after_first_cordon: KillPoint::Cordoned(1),
    crash_after_first_eviction: KillPoint::Evicted(1),
    crash_after_fourth_eviction: KillPoint::Evicted(4),
    crash_at_first_terminating_mark: KillPoint::Phase("terminating", 1),
    crash_after_first_node_deleted: KillPoint::NodeDeleted(1),
    crash_after_third_token: KillPoint::TokenMinted(3),
    crash_at_third_launching_mark: KillPoint::Phase("launching", 3),
    crash_after_third_cordon: KillPoint::Cordoned(3),
    crash_after_eighth_eviction: KillPoint::Evicted(8),
    crash_at_third_terminating_mark: KillPoint::Phase("terminating", 3),
    crash_after_third_node_deleted: KillPoint::NodeDeleted(3),
    crash_after_fourth_join: KillPoint::NodeJoined(4),
    crash_after_last_node_deleted: KillPoint::NodeDeleted(4),
}

/// Requests that change something, as the emulator counted them.
pub fn mutations(h: &Harness) -> u64 {
    let counts = h.world.apiserver.request_counts();
    ["create", "update", "patch", "delete", "deletecollection"]
        .iter()
        .map(|v| counts.verb(v))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_changes_nothing_and_shows_no_token() {
    let h = start(Spec::default()).await;
    let before_mutations = mutations(&h);
    let instances_before = h.world.cloud.instances().len();
    let output = h.run(&["rotate", "--all", "--dry-run"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    assert_eq!(
        mutations(&h),
        before_mutations,
        "a dry run sent a mutating request"
    );
    assert_eq!(h.world.cloud.instances().len(), instances_before);
    assert!(all.contains("would launch an instance"), "{all}");
    assert!(
        h.tokens.lock().unwrap().is_empty(),
        "a dry run minted a token"
    );
    assert_eq!(workers(&h.world), h.original_workers);
}

/// A run killed while draining, resumed later than `drain.timeout`: the
/// resumed drain gets its own deadline. The engine before this test counted
/// the deadline from the crashed run's `drain-started` annotation, so the
/// rerun gave up at once and failed with the node left cordoned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_resumed_after_its_timeout_gets_a_fresh_deadline() {
    let h = start(Spec {
        pools: vec![("general", 2)],
        max_surge: 1,
        drain: "{ timeout: 3s, onTimeout: fail, unmanagedPods: delete }",
        ..Spec::default()
    })
    .await;
    kill_at(&h, KillPoint::Cordoned(1), &["rotate", "--all", "--yes"]).await;
    // Longer than drain.timeout before the same command runs again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let output = h.run(&["rotate", "--all", "--yes"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    h.assert_converged();
}

/// A slot's bootstrap token is deleted as soon as its machine registers a
/// Node: at most one kubelet heartbeat (a renewal of the node's Lease, as
/// real kubelets send) passes before the token's Secret is gone. The engine
/// before this test kept the token until the Node was Ready, settled and
/// ran its DaemonSet pods — several heartbeats during which a stolen token
/// still worked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_deleted_as_soon_as_its_node_registers() {
    let h = start(Spec {
        pools: vec![("general", 3)],
        ..Spec::default()
    })
    .await;
    // (kind, name, replaces label of a token) in store order.
    type Seen = Vec<(&'static str, String, String)>;
    let events: Arc<Mutex<Seen>> = Arc::default();
    let seen = events.clone();
    let originals: BTreeSet<String> = h.original_workers.keys().cloned().collect();
    h.world.store.observe(move |e| {
        use kubesurge_testworld::store::EventType;
        let entry = if std::ptr::eq(e.resource, &NODES)
            && !originals.contains(&e.name)
            && e.event_type == EventType::Added
        {
            Some(("node-added", String::new()))
        } else if std::ptr::eq(e.resource, &LEASES)
            && e.namespace == "kube-node-lease"
            && e.event_type == EventType::Modified
        {
            Some(("heartbeat", String::new()))
        } else if std::ptr::eq(e.resource, &SECRETS)
            && e.event_type == EventType::Deleted
            && e.name.starts_with("bootstrap-token-")
        {
            let replaces = e
                .object
                .pointer("/metadata/labels/kubesurge.io~1replaces")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            Some(("token-deleted", replaces))
        } else {
            None
        };
        if let Some((kind, extra)) = entry {
            seen.lock().unwrap().push((kind, e.name.clone(), extra));
        }
    });
    let output = h.run(&["rotate", "--all", "--yes", "-o", "json"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    h.assert_converged();
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let events = events.lock().unwrap().clone();
    for slot in report["slots"].as_array().unwrap() {
        let old = slot["oldNode"].as_str().unwrap();
        let new = slot["newNode"].as_str().unwrap();
        let added = events
            .iter()
            .position(|(k, n, _)| *k == "node-added" && n == new)
            .unwrap_or_else(|| panic!("{new} was never added"));
        let deleted = events
            .iter()
            .position(|(k, _, replaces)| *k == "token-deleted" && replaces == old)
            .unwrap_or_else(|| panic!("the token of {old}'s slot was never deleted"));
        assert!(
            added < deleted,
            "the token of {old} went before its node came"
        );
        let heartbeats = events[added..deleted]
            .iter()
            .filter(|(k, n, _)| *k == "heartbeat" && n == new)
            .count();
        assert!(
            heartbeats <= 1,
            "{new} sent {heartbeats} heartbeats before its token was deleted"
        );
    }
}

/// A run killed after its first replacement joined, abandoned with
/// `kubesurge abort`, then a new run: the new run adopts the Ready
/// replacement instead of launching another. The engine before this test
/// adopted only its own run's instances, so the first replacement stayed
/// as a surplus node for ever (the pool one node larger, an instance no run
/// owns).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_run_adopts_the_replacements_of_an_abandoned_one() {
    let h = start(Spec::default()).await;
    kill_at(&h, KillPoint::NodeJoined(1), &["rotate", "--all", "--yes"]).await;
    // The crashed run's lease expires (30 s later, here at once).
    let expired = (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60)).to_string();
    h.world
        .store
        .modify(&LEASES, "kube-system", "kubesurge", |lease| {
            lease["spec"]["renewTime"] = json!(expired.clone());
            lease["spec"]["acquireTime"] = json!(expired.clone());
            Ok(())
        })
        .expect("the run's lease");
    let abort = h.run(&["abort"]).await;
    assert_eq!(abort.status.code(), Some(0), "{}", text(&abort));
    assert!(text(&abort).contains("abandoned"), "{}", text(&abort));

    let output = h.run(&["rotate", "--all", "--yes"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    h.assert_converged();
    // One replacement per original worker across both runs: none was
    // launched twice for a node. (`--all` also replaces the nodes the first
    // run brought up.)
    let mut per_old: BTreeMap<String, usize> = BTreeMap::new();
    for instance in h.world.cloud.instances() {
        if let Some(old) = instance
            .tag(kubesurge_provider::tags::REPLACES)
            .filter(|old| h.original_workers.contains_key(*old))
        {
            *per_old.entry(old.to_string()).or_default() += 1;
        }
    }
    let expected: BTreeMap<String, usize> =
        h.original_workers.keys().map(|n| (n.clone(), 1)).collect();
    assert_eq!(per_old, expected, "replacements launched per old node");
}

/// Workers made by hand or by Terraform: one whose instance carries no
/// kubesurge tag, one tagged for another pool, one without a providerID
/// whose address two instances share. Before any launch the run refuses
/// (exit 2), naming each with its reason, and changes nothing. The engine
/// before this test surged and drained them all, then failed at
/// termination (the provider refuses untagged instances) after the drain,
/// or for a node it could not map deleted only the Node while the VM ran on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_without_an_instance_the_run_may_terminate_are_refused_before_any_launch() {
    let h = start(Spec {
        pools: vec![("general", 4)],
        ..Spec::default()
    })
    .await;
    let names: Vec<String> = h.original_workers.keys().cloned().collect();
    let machine = |node: &str| h.world.cloud.machine_of_node(node).expect("machine");
    let untagged = machine(&names[0]);
    h.world
        .cloud
        .edit_tags(&untagged.instance_id, |tags| {
            tags.retain(|k, _| !k.starts_with("kubesurge.io/"))
        })
        .unwrap();
    let other_pool = machine(&names[1]);
    h.world
        .cloud
        .edit_tags(&other_pool.instance_id, |tags| {
            tags.insert("kubesurge.io/pool".into(), "batch".into());
        })
        .unwrap();
    // No providerID yet (as before a cloud controller sets it), and its
    // address reused by another instance of the cluster.
    let ambiguous = machine(&names[2]);
    h.world
        .store
        .modify(&NODES, "", &names[2], |node| {
            node["spec"]["providerID"] = json!("");
            Ok(())
        })
        .unwrap();
    let twin = machine(&names[3]);
    h.world
        .cloud
        .set_private_ip(&twin.instance_id, ambiguous.private_ip.parse().unwrap())
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let instances_before = h.world.cloud.instances().len();

    let output = h.run(&["rotate", "--all", "--yes"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(2), "{all}");
    assert!(
        all.contains("map to no instance this run may terminate"),
        "{all}"
    );
    assert!(
        all.contains(&format!(
            "{}: its instance {} has no kubesurge.io/cluster tag",
            names[0], untagged.instance_id
        )),
        "{all}"
    );
    assert!(
        all.contains(&format!(
            "{}: its instance {} is tagged kubesurge.io/pool=batch, not general",
            names[1], other_pool.instance_id
        )),
        "{all}"
    );
    assert!(
        all.contains(&format!(
            "{}: node {} has no usable providerID and 2 instances",
            names[2], names[2]
        )),
        "{all}"
    );
    assert_eq!(
        h.world.cloud.instances().len(),
        instances_before,
        "nothing launched"
    );
    assert!(h.tokens.lock().unwrap().is_empty(), "no token minted");
    let (nodes, _) = h.world.store.list(&NODES, None, |_| true);
    for node in &nodes {
        assert_eq!(
            node["spec"].get("unschedulable"),
            None,
            "{} cordoned",
            node["metadata"]["name"]
        );
        assert!(
            node.pointer("/metadata/annotations/kubesurge.io~1phase")
                .is_none(),
            "{} marked",
            node["metadata"]["name"]
        );
    }
    // The dry run says the same.
    let dry = h.run(&["rotate", "--all", "--dry-run"]).await;
    assert_eq!(dry.status.code(), Some(2), "{}", text(&dry));
    assert!(text(&dry).contains(&names[0]), "{}", text(&dry));
}

/// A cluster with an external cloud controller manager: a pool whose new
/// kubelets would join without `--cloud-provider=external` is refused
/// before anything changes (the controller would never initialize them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_controller_cluster_refuses_pools_without_external_kubelets() {
    let h = start(Spec {
        cloud_controller: Some(Duration::from_millis(300)),
        ..Spec::default()
    })
    .await;
    let instances_before = h.world.cloud.instances().len();
    let output = h.run(&["rotate", "--all", "--yes"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(2), "{all}");
    assert!(
        all.contains("DaemonSet kube-system/cloud-controller-manager"),
        "{all}"
    );
    assert!(
        all.contains("kubeletExtraArgs: { cloud-provider: external }"),
        "{all}"
    );
    assert!(all.contains("pools[general]"), "{all}");
    assert_eq!(h.world.cloud.instances().len(), instances_before);
}

/// With a cloud controller that initializes new Nodes 3 s after they
/// register (longer than `health.settle`), every old node is cordoned only
/// once its replacement carries its zone label and no longer the
/// `uninitialized` taint. The engine before this test counted a node Ready
/// at the target as ready for pods, and joined kubelets without the pool's
/// kubelet flags, so it drained onto Nodes no pod with zone affinity could
/// land on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_nodes_are_drained_only_onto_initialized_replacements() {
    let h = start(Spec {
        pools: vec![("general", 3)],
        cloud_controller: Some(Duration::from_secs(3)),
        pool_extra: "    kubeletExtraArgs: { cloud-provider: external }\n",
        ..Spec::default()
    })
    .await;
    // Node events in order: (name, cordoned now, replaced-by, initialized).
    type Seen = Vec<(String, bool, Option<String>, bool)>;
    let events: Arc<Mutex<Seen>> = Arc::default();
    let seen = events.clone();
    h.world.store.observe(move |e| {
        if !std::ptr::eq(e.resource, &NODES) {
            return;
        }
        let cordoned_now = e.object.pointer("/spec/unschedulable") == Some(&json!(true))
            && e.previous
                .as_ref()
                .and_then(|p| p.pointer("/spec/unschedulable"))
                != Some(&json!(true));
        let replaced_by = e
            .object
            .pointer("/metadata/annotations/kubesurge.io~1replaced-by")
            .and_then(Value::as_str)
            .map(str::to_string);
        let tainted = e
            .object
            .pointer("/spec/taints")
            .and_then(Value::as_array)
            .is_some_and(|t| {
                t.iter()
                    .any(|t| t["key"] == "node.cloudprovider.kubernetes.io/uninitialized")
            });
        let zoned = e
            .object
            .pointer("/metadata/labels/topology.kubernetes.io~1zone")
            .is_some();
        seen.lock()
            .unwrap()
            .push((e.name.clone(), cordoned_now, replaced_by, zoned && !tainted));
    });
    let output = h.run(&["rotate", "--all", "--yes"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    h.assert_converged();
    let events = events.lock().unwrap().clone();
    let mut initialized: BTreeMap<String, bool> = BTreeMap::new();
    let mut cordons = 0;
    for (name, cordoned_now, replaced_by, is_initialized) in &events {
        initialized.insert(name.clone(), *is_initialized);
        if *cordoned_now && h.original_workers.contains_key(name) {
            cordons += 1;
            let replacement = replaced_by
                .as_deref()
                .expect("the drain names its replacement");
            assert_eq!(
                initialized.get(replacement),
                Some(&true),
                "{name} was cordoned while its replacement {replacement} was not initialized"
            );
        }
    }
    assert_eq!(cordons, 3, "every old node was drained");
    for name in workers(&h.world).keys() {
        let node = h.world.store.get(&NODES, "", name).unwrap();
        assert!(
            node.pointer("/metadata/labels/topology.kubernetes.io~1zone")
                .is_some(),
            "{name} has its zone"
        );
    }
}

/// Replacements whose kubelets register the zone-less providerID form, or
/// none at all (as a kubelet whose `--provider-id` was not computed, before
/// any cloud controller sets it), are found by the instance id in any form
/// or by the name the slot gave them. The engine before this test matched
/// only the exact providerID string: such a replacement, Ready and
/// schedulable, was given up at `newNodeTimeout`, drained and terminated,
/// and another launched in its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacements_registering_other_provider_id_forms_are_recognised() {
    use kubesurge_testworld::cloud::faults::ProviderIdForm;
    let h = start(Spec {
        pools: vec![("general", 3)],
        max_surge: 1,
        ..Spec::default()
    })
    .await;
    h.world.cloud.with_faults(|f| {
        f.register_provider_ids([
            ProviderIdForm::ZoneLess,
            ProviderIdForm::Empty,
            ProviderIdForm::ZoneLess,
        ])
    });
    let instances_before = h.world.cloud.instances().len();
    let output = h
        .run(&["rotate", "--all", "--yes", "--new-node-timeout", "5s"])
        .await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    assert!(!all.contains("did not become a Ready"), "{all}");
    assert_eq!(
        h.world.cloud.instances().len() - instances_before,
        3,
        "one launch per old node"
    );
    h.assert_converged();
    let forms: BTreeSet<String> = workers(&h.world)
        .keys()
        .map(|n| {
            let node = h.world.store.get(&NODES, "", n).unwrap();
            let id = node
                .pointer("/spec/providerID")
                .and_then(Value::as_str)
                .unwrap_or("");
            if id.is_empty() {
                "empty".to_string()
            } else if id.starts_with("sim:////") {
                "zone-less".to_string()
            } else {
                "zoned".to_string()
            }
        })
        .collect();
    assert_eq!(
        forms,
        BTreeSet::from(["empty".to_string(), "zone-less".to_string()]),
        "the replacements registered the forms asked for"
    );
}

/// Each slot's actions, by old node, from a `-o json` report.
fn actions_by_node(report: &Value) -> BTreeMap<String, Vec<String>> {
    report["slots"]
        .as_array()
        .expect("slots")
        .iter()
        .map(|slot| {
            let actions = slot["actions"]
                .as_array()
                .expect("actions")
                .iter()
                .map(|a| a.as_str().expect("action").to_string())
                .collect();
            (
                slot["oldNode"].as_str().expect("oldNode").to_string(),
                actions,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dry_run_shows_the_actions_the_real_run_takes() {
    let h = start(Spec {
        pools: vec![("general", 3), ("batch", 2)],
        ..Spec::default()
    })
    .await;
    let dry = h.run(&["rotate", "--all", "--dry-run", "-o", "json"]).await;
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    let dry: Value = serde_json::from_slice(&dry.stdout).expect("dry-run JSON");
    let planned = actions_by_node(&dry);
    assert_eq!(planned.len(), 5, "{dry}");
    for actions in planned.values() {
        assert_eq!(
            actions,
            &[
                "launch",
                "await-join",
                "check-drain",
                "drain",
                "terminate",
                "finish"
            ],
            "{dry}"
        );
    }
    // Every line the dry run prints is one of those actions' mutations.
    let would = dry["would"].as_array().expect("would");
    assert_eq!(would.len(), 5 * 5, "{dry}");

    let real = h.run(&["rotate", "--all", "--yes", "-o", "json"]).await;
    assert_eq!(real.status.code(), Some(0), "{}", text(&real));
    let real: Value = serde_json::from_slice(&real.stdout).expect("JSON report");
    assert_eq!(
        actions_by_node(&real),
        planned,
        "the real run took other actions than the dry run showed"
    );
    h.assert_converged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_that_never_joins_fails_the_run_and_the_old_node_keeps_serving() {
    let h = start(Spec {
        pools: vec![("general", 2)],
        max_surge: 1,
        ..Spec::default()
    })
    .await;
    h.world.cloud.with_faults(|f| f.never_join_pool("general"));
    let output = h
        .run(&[
            "rotate",
            "--all",
            "--yes",
            "--new-node-timeout",
            "2s",
            "--token-ttl",
            "1m",
        ])
        .await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    let first = h.original_workers.keys().next().unwrap().clone();
    assert!(
        all.contains("no replacement joined after 3 attempts"),
        "{all}"
    );
    assert!(all.contains(&first), "the failure names the node: {all}");
    // Every old node still there and schedulable; every replacement attempt
    // terminated; no token left behind.
    let (nodes, _) = h.world.store.list(&NODES, None, |_| true);
    for old in h.original_workers.keys() {
        let node = nodes
            .iter()
            .find(|n| n["metadata"]["name"] == old.as_str())
            .expect("old node kept");
        assert_eq!(
            node["spec"].get("unschedulable"),
            None,
            "{old} must stay schedulable"
        );
    }
    let live = h
        .world
        .cloud
        .instances()
        .into_iter()
        .filter(|i| {
            !matches!(
                i.state,
                InstanceState::Terminated | InstanceState::ShuttingDown
            )
        })
        .count();
    assert_eq!(live, nodes.len(), "failed replacements were terminated");
    assert!(
        h.observer.violations().is_empty(),
        "{:?}",
        h.observer.violations()
    );
}

/// A PDB that never allows a disruption: `shop/api` at minAvailable 100%.
pub(crate) fn block_everything(h: &Harness) {
    h.world
        .store
        .modify(
            &kubesurge_testworld::resources::PDBS,
            "shop",
            "api",
            |pdb| {
                pdb["spec"] =
                    json!({"selector": pdb["spec"]["selector"].clone(), "minAvailable": "100%"});
                Ok(())
            },
        )
        .expect("PDB api exists");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pdb_that_never_allows_fails_the_slot_under_fail_naming_it() {
    let h = start(Spec {
        max_surge: 1,
        drain: "{ timeout: 3s, onTimeout: fail, unmanagedPods: delete }",
        ..Spec::default()
    })
    .await;
    block_everything(&h);
    let output = h.run(&["rotate", "--all", "--yes"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(
        all.contains("blocked by PDB api"),
        "the PDB is named: {all}"
    );
    assert!(all.contains("left cordoned"), "{all}");
    assert!(
        h.observer.violations().is_empty(),
        "{:?}",
        h.observer.violations()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pdb_that_never_allows_is_overridden_under_force_and_reported() {
    let h = start(Spec {
        pools: vec![("general", 3)],
        max_surge: 1,
        drain: "{ timeout: 2s, onTimeout: force, unmanagedPods: delete }",
        ..Spec::default()
    })
    .await;
    block_everything(&h);
    let output = h.run(&["rotate", "--all", "--yes", "-o", "json"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let forced: Vec<&Value> = report["slots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["drain"]["outcome"]["result"] == "forced")
        .collect();
    assert!(!forced.is_empty(), "the report says force fired: {report}");
    // Force is the one case where budgets may be broken; the observer saw it.
    assert!(
        h.observer
            .violations()
            .iter()
            .all(|v| v.invariant == kubesurge_testworld::observer::Invariant::DisruptionBudget),
        "{:?}",
        h.observer.violations()
    );
    assert!(
        all.contains("without its PodDisruptionBudget's consent"),
        "force is logged loudly: {all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pdb_that_never_allows_leaves_the_node_serving_under_skip() {
    let h = start(Spec {
        pools: vec![("general", 3)],
        max_surge: 1,
        drain: "{ timeout: 2s, onTimeout: skip, unmanagedPods: delete }",
        ..Spec::default()
    })
    .await;
    block_everything(&h);
    let output = h.run(&["rotate", "--all", "--yes", "-o", "json"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let skipped: Vec<String> = report["slots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["outcome"]["result"] == "skipped")
        .map(|s| s["oldNode"].as_str().unwrap().to_string())
        .collect();
    assert!(!skipped.is_empty(), "{report}");
    for node in &skipped {
        let n = h
            .world
            .store
            .get(&NODES, "", node)
            .expect("skipped node stays");
        assert_eq!(
            n["spec"].get("unschedulable"),
            None,
            "{node} was uncordoned"
        );
        assert!(
            report.to_string().contains("blocked by PDB api"),
            "the skip names the PDB"
        );
    }
    assert!(
        h.observer.violations().is_empty(),
        "{:?}",
        h.observer.violations()
    );
}

/// A node an operator cordoned before the run (`kubectl cordon`, as they
/// type it) stays cordoned when the run gives it back. The engine before
/// this test uncordoned every node it gave back, putting a node its
/// operator had taken out of service back into scheduling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_its_operator_cordoned_is_given_back_cordoned() {
    let h = start(Spec {
        pools: vec![("general", 3)],
        max_surge: 1,
        drain: "{ timeout: 2s, onTimeout: skip, unmanagedPods: delete }",
        ..Spec::default()
    })
    .await;
    block_everything(&h);
    // The pool serves with the nodes its operator left schedulable.
    h.observer.set_pool_floors(vec![PoolFloor {
        name: "general".into(),
        selector: BTreeMap::from([("kubesurge.io/pool".to_string(), "general".to_string())]),
        floor: 2,
    }]);
    let cordoned = h.original_workers.keys().next().unwrap().clone();
    let kubectl = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&h.kubeconfig)
        .args(["cordon", &cordoned])
        .env_remove("KUBECONFIG")
        .output()
        .await
        .expect("kubectl runs");
    assert!(kubectl.status.success(), "{kubectl:?}");

    let output = h.run(&["rotate", "--all", "--yes", "-o", "json"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let skipped: Vec<String> = report["slots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["outcome"]["result"] == "skipped")
        .map(|s| s["oldNode"].as_str().unwrap().to_string())
        .collect();
    assert!(skipped.contains(&cordoned), "{report}");
    for node in &skipped {
        let n = h.world.store.get(&NODES, "", node).expect("node stays");
        let unschedulable = n["spec"].get("unschedulable") == Some(&json!(true));
        assert_eq!(
            unschedulable,
            node == &cordoned,
            "{node}: only the operator's cordon is kept"
        );
        assert!(
            n.pointer("/metadata/annotations/kubesurge.io~1cordoned-before")
                .is_none(),
            "{node}: the record is removed once the node is given back"
        );
    }
    assert!(
        h.observer.violations().is_empty(),
        "{:?}",
        h.observer.violations()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rides_through_429_and_5xx_bursts_and_an_apiserver_outage() {
    let h = start(Spec::default()).await;
    let faults = h.world.apiserver.faults();
    let cloud = h.world.cloud.clone();
    let joined = arm(&h, KillPoint::NodeJoined(1));
    let child = h
        .command(&["rotate", "--all", "--yes"])
        .spawn()
        .expect("starts");
    let disturb = tokio::spawn(async move {
        joined.notified().await;
        // Bursts a busy server gives, not a server refusing everything
        // for longer than the lock's renew deadline (that fences the run).
        faults.fail_next(6, 429, None);
        faults.fail_next(6, 503, None);
        tokio::time::sleep(Duration::from_millis(300)).await;
        faults.fail_next(4, 500, None);
        cloud.with_faults(|f| {
            f.throttle_next(2);
            f.fail_next(1);
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Shorter than the lock's renew deadline (20 s) even right before a
        // renewal was due: a longer outage fences the run (see
        // `a_run_that_cannot_renew_its_lease_stops_every_mutation`).
        faults.unavailable_for(Duration::from_secs(8));
    });
    let output = tokio::time::timeout(Duration::from_secs(240), child.wait_with_output())
        .await
        .expect("finishes")
        .expect("runs");
    disturb.await.expect("disturbances ran");
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}\n{}", world_state(&h));
    h.assert_converged();
}

/// A replacement joins while the run's node watch cannot reconnect (an API
/// server that keeps refusing node watches): the join deadline passes with
/// the node invisible to the watch. The run must ask the API server before
/// giving the replacement up — it is Ready, pods may already run on it — and
/// keep it, not terminate it and delete its Node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_that_joined_while_the_node_watch_was_cut_off_is_kept() {
    let h = start(Spec {
        pools: vec![("general", 2)],
        max_surge: 1,
        ..Spec::default()
    })
    .await;
    let originals = h.world.cloud.instances().len();
    let faults = h.world.apiserver.faults();
    let launched = arm(&h, KillPoint::Launched(1));
    let cordoned = arm(&h, KillPoint::Cordoned(1));
    let child = h
        .command(&["rotate", "--all", "--yes", "--new-node-timeout", "3s"])
        .spawn()
        .expect("starts");
    let disturb = tokio::spawn(async move {
        launched.notified().await;
        // Every node watch fails from now on; the open one is cut.
        faults.fail_next(
            1_000_000,
            503,
            Some(FaultFilter::verb_resource("watch", "nodes")),
        );
        faults.unavailable_for(Duration::from_millis(20));
        cordoned.notified().await;
        faults.clear();
    });
    let output = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .expect("finishes")
        .expect("runs");
    disturb.await.expect("disturbances ran");
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}\n{}", world_state(&h));
    assert_eq!(
        h.world.cloud.instances().len(),
        originals + 2,
        "one launch per replaced node: the replacement that joined unseen was kept\n{all}"
    );
    assert!(
        !all.contains("did not become a Ready"),
        "the joined replacement was given up:\n{all}"
    );
    h.assert_converged();
}

/// An admission webhook on `pods/eviction` refuses one pod's eviction (403,
/// "admission webhook … denied the request"). Under `onTimeout: skip` its
/// node is given back schedulable and the run goes on. The engine before
/// this test failed the slot at the refusal and left the node cordoned,
/// whatever `onTimeout` said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eviction_refused_by_admission_gives_the_node_back_under_skip() {
    let h = start(Spec {
        pools: vec![("general", 3)],
        max_surge: 1,
        drain: "{ timeout: 10s, onTimeout: skip, unmanagedPods: delete }",
        ..Spec::default()
    })
    .await;
    let (pods, _) = h.world.store.list(&PODS, Some("shop"), |p| {
        p.pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| h.original_workers.contains_key(n))
    });
    let guarded = pods.first().expect("a workload pod on a worker");
    let pod = guarded["metadata"]["name"].as_str().unwrap().to_string();
    let node = guarded["spec"]["nodeName"].as_str().unwrap().to_string();
    h.world.apiserver.faults().deny_evictions(
        "shop",
        &pod,
        "eviction-guard.example.com",
        "this pod is pinned by its owner",
    );
    let output = h.run(&["rotate", "--all", "--yes", "-o", "json"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let slot = report["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["oldNode"] == node.as_str())
        .expect("the guarded node's slot");
    assert_eq!(slot["outcome"]["result"], "skipped", "{slot}");
    assert!(
        slot["outcome"]["reason"]
            .as_str()
            .unwrap()
            .contains("admission webhook \"eviction-guard.example.com\" denied the request"),
        "{slot}"
    );
    let n = h
        .world
        .store
        .get(&NODES, "", &node)
        .expect("the node stays");
    assert_eq!(
        n["spec"].get("unschedulable"),
        None,
        "{node} was given back"
    );
    assert!(
        h.world.store.get(&PODS, "shop", &pod).is_some(),
        "the guarded pod stays"
    );
    assert!(
        h.observer.violations().is_empty(),
        "{:?}",
        h.observer.violations()
    );
}

/// A run holding the lock while every drain is blocked, on a clock 60 s
/// behind this one (its lease's `renewTime` reads a minute old here): the
/// process and its holder identity.
pub(crate) async fn hold_with_clock_behind(h: &Harness) -> (tokio::process::Child, String) {
    block_everything(h);
    let mut behind = h.command(&["rotate", "--all", "--yes"]);
    behind.env("KUBESURGE_TEST_CLOCK_OFFSET", "-60");
    let child = behind.spawn().expect("the holder starts");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(holder) = lock_holder(h) {
            return (child, holder);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run never took the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The run record (`kube-system/kubesurge-run`) as the store has it.
pub(crate) fn run_record(h: &Harness) -> Value {
    let record = h
        .world
        .store
        .get(
            &kubesurge_testworld::resources::CONFIGMAPS,
            "kube-system",
            "kubesurge-run",
        )
        .expect("run record");
    serde_json::from_str(
        record
            .pointer("/data/run.json")
            .and_then(Value::as_str)
            .expect("run.json"),
    )
    .expect("JSON")
}

/// The lock lease as the store has it: its holder identity.
pub(crate) fn lock_holder(h: &Harness) -> Option<String> {
    h.world
        .store
        .get(&LEASES, "kube-system", "kubesurge")
        .and_then(|l| {
            l.pointer("/spec/holderIdentity")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .filter(|holder| !holder.is_empty())
}

/// A run whose machine's clock is 60 s behind holds the lock; a second run
/// on a correct clock reads a `renewTime` a minute old. It must not take
/// the lock over: it watches the lease, sees it renewed, and exits 3. The
/// engine before this test compared the holder's `renewTime` with its own
/// clock, found the lease expired and took it at once — two runs draining
/// the same cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_with_a_clock_behind_keeps_the_lock() {
    let h = start(Spec {
        max_surge: 1,
        drain: "{ timeout: 60s, onTimeout: fail, unmanagedPods: delete }",
        ..Spec::default()
    })
    .await;
    let (mut first, holder) = hold_with_clock_behind(&h).await;
    let second = h.run(&["rotate", "--all", "--yes"]).await;
    let second_text = text(&second);
    assert_eq!(second.status.code(), Some(3), "{second_text}");
    assert!(
        second_text.contains("another run holds the lock"),
        "{second_text}"
    );
    assert_eq!(
        lock_holder(&h),
        Some(holder),
        "the first run still holds the lock"
    );
    first.start_kill().expect("stop the first run");
    let _ = first.wait().await;
}

/// A lease held, and renewed, by a process on a host of the same name but
/// in another PID namespace (a second hostNetwork pod, another container):
/// its PID does not exist here, yet it is alive. The engine before this
/// test took such a lease over at once ("a crashed holder on the same
/// host"); now only a holder proven to be this machine's boot and PID
/// namespace is taken over before expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_in_another_pid_namespace_is_not_taken_for_dead() {
    let h = start(Spec::default()).await;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    let now = jiff::Timestamp::now().to_string();
    h.world
        .store
        .create(
            &LEASES,
            "kube-system",
            json!({
                "metadata": {
                    "name": "kubesurge",
                    "namespace": "kube-system",
                    "annotations": {"kubesurge.io/holder-process": "0f0f0f0f-boot pid:[4026599999] 12345"},
                },
                "spec": {
                    "holderIdentity": format!("{host}/999999/r-elsewhere"),
                    "leaseDurationSeconds": 30,
                    "acquireTime": now.clone(),
                    "renewTime": now,
                },
            }),
        )
        .expect("the other run's lease");
    let output = h.run(&["rotate", "--all", "--yes"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(3), "{all}");
    assert!(all.contains("r-elsewhere"), "the holder is named: {all}");
    assert_eq!(workers(&h.world), h.original_workers, "nothing changed");
}

/// A run holding the lock through a control-plane command that restarts
/// its API server (the lease extended and annotated for it): a contender
/// exits 3 and says why to wait, instead of only naming the holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contender_says_the_holder_is_holding_through_a_hop() {
    let h = start(Spec::default()).await;
    let now = jiff::Timestamp::now().to_string();
    h.world
        .store
        .create(
            &LEASES,
            "kube-system",
            json!({
                "metadata": {
                    "name": "kubesurge",
                    "namespace": "kube-system",
                    "annotations": {
                        "kubesurge.io/holding-through": "kubeadm upgrade apply v1.36.2 on cp-1",
                    },
                },
                "spec": {
                    "holderIdentity": "ops-7/4242/r-upgrading",
                    "leaseDurationSeconds": 1830,
                    "acquireTime": now.clone(),
                    "renewTime": now,
                },
            }),
        )
        .expect("the upgrading run's lease");
    let output = h.run(&["rotate", "--all", "--yes"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(3), "{all}");
    assert!(
        all.contains("it holds it through kubeadm upgrade apply v1.36.2 on cp-1"),
        "{all}"
    );
    assert!(all.contains("wait for it to finish"), "{all}");
    assert_eq!(workers(&h.world), h.original_workers, "nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_runs_one_proceeds_the_other_exits_3() {
    let h = start(Spec::default()).await;
    let first = h
        .command(&["rotate", "--all", "--yes"])
        .spawn()
        .expect("first");
    // Wait until the first run holds the lock.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while h
        .world
        .store
        .get(
            &kubesurge_testworld::resources::LEASES,
            "kube-system",
            "kubesurge",
        )
        .is_none()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first run never took the lock"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let second = h.run(&["rotate", "--all", "--yes"]).await;
    let second_text = text(&second);
    assert_eq!(second.status.code(), Some(3), "{second_text}");
    assert!(
        second_text.contains("another run holds the lock"),
        "{second_text}"
    );
    let first = first.wait_with_output().await.expect("first ends");
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    h.assert_converged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_stops_at_a_safe_point_with_exit_4_and_a_rerun_finishes() {
    let h = start(Spec {
        pools: vec![("general", 4)],
        max_surge: 1,
        ..Spec::default()
    })
    .await;
    let joined = arm(&h, KillPoint::NodeJoined(1));
    let child = h
        .command(&["rotate", "--all", "--yes"])
        .spawn()
        .expect("starts");
    joined.notified().await;
    let abort = h.run(&["abort"]).await;
    assert_eq!(abort.status.code(), Some(0), "{}", text(&abort));
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("stops")
        .expect("runs");
    let all = text(&output);
    assert_eq!(output.status.code(), Some(4), "{all}");
    // Nothing half-done that a rerun cannot finish.
    let rerun = h.run(&["rotate", "--all", "--yes"]).await;
    assert_eq!(rerun.status.code(), Some(0), "{}", text(&rerun));
    h.assert_converged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_command_is_refused_while_a_run_is_unfinished() {
    let h = start(Spec {
        pools: vec![("general", 2)],
        max_surge: 1,
        ..Spec::default()
    })
    .await;
    let point = arm(&h, KillPoint::NodeJoined(1));
    let mut child = h
        .command(&["rotate", "--all", "--yes"])
        .spawn()
        .expect("starts");
    point.notified().await;
    child.start_kill().expect("kill");
    let _ = child.wait().await;
    let other = h.run(&["rotate", "--yes", "--max-age", "1d"]).await;
    let other_text = text(&other);
    assert_eq!(other.status.code(), Some(2), "{other_text}");
    assert!(other_text.contains("unfinished"), "{other_text}");
    assert!(
        other_text.contains("rotate --all"),
        "names the unfinished run: {other_text}"
    );
    let finish = h.run(&["rotate", "--all", "--yes"]).await;
    assert_eq!(finish.status.code(), Some(0), "{}", text(&finish));
    h.assert_converged();
}

/// A window on today's weekday (UTC) from `start` to `end`, `HH:MM`.
pub fn window(start: jiff::Timestamp, end: jiff::Timestamp) -> String {
    let day = start
        .to_zoned(jiff::tz::TimeZone::UTC)
        .strftime("%a")
        .to_string();
    format!(
        "window: {{ days: [{day}], start: \"{}\", end: \"{}\", timeZone: UTC }}\n",
        start.strftime("%H:%M"),
        end.strftime("%H:%M")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_the_window_nothing_changes_and_the_opening_is_named() {
    let now = jiff::Timestamp::now();
    // A window that opened two hours ago and closed an hour ago (or, near
    // midnight, one on another day): either way, not now.
    let h = start(Spec {
        pools: vec![("general", 2)],
        extra: window(
            now - jiff::SignedDuration::from_hours(2),
            now - jiff::SignedDuration::from_hours(1),
        ),
        ..Spec::default()
    })
    .await;
    let before = mutations(&h);
    let output = h.run(&["rotate", "--all", "--yes"]).await;
    let all = text(&output);
    // Deferred, nothing wrong: exit 5, never 0, so a scheduler runs it again.
    assert_eq!(output.status.code(), Some(5), "{all}");
    assert!(all.contains("outside the maintenance window"), "{all}");
    assert!(all.contains("it opens at"), "{all}");
    assert_eq!(mutations(&h), before, "nothing changed outside the window");
    assert_eq!(workers(&h.world), h.original_workers);

    // With -o json, the report says what is left and when the window opens.
    let output = h.run(&["rotate", "--all", "--yes", "-o", "json"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(5), "{all}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    assert_eq!(report["outcome"]["result"], "deferred", "{report:#}");
    assert_eq!(report["outcome"]["remaining"], 2, "{report:#}");
    assert_eq!(report["dryRun"], false, "{report:#}");
    let opens_at: jiff::Timestamp = report["outcome"]["opensAt"]
        .as_str()
        .expect("opensAt")
        .parse()
        .expect("an RFC 3339 instant");
    assert!(opens_at > now, "{report:#}");
    assert!(
        report["outcome"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("outside the maintenance window")),
        "{report:#}"
    );
    let slots = report["slots"].as_array().expect("slots");
    assert_eq!(slots.len(), 2, "{report:#}");
    for slot in slots {
        assert_eq!(slot["outcome"]["result"], "notStarted", "{report:#}");
    }
    assert_eq!(mutations(&h), before, "nothing changed outside the window");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_ending_mid_run_finishes_slots_in_flight_and_stops() {
    let now = jiff::Timestamp::now();
    // Ends at the next minute boundary at least 5 seconds away.
    let mut end = now + jiff::SignedDuration::from_secs(65);
    end = end
        .round(
            jiff::TimestampRound::new()
                .smallest(jiff::Unit::Minute)
                .mode(jiff::RoundMode::Trunc),
        )
        .unwrap();
    if end.duration_since(now) < jiff::SignedDuration::from_secs(5) {
        end += jiff::SignedDuration::from_mins(1);
    }
    let window_start = now - jiff::SignedDuration::from_mins(10);
    if window_start.to_zoned(jiff::tz::TimeZone::UTC).date()
        != end.to_zoned(jiff::tz::TimeZone::UTC).date()
    {
        // Too close to midnight for a same-day window; the other window
        // tests cover the arithmetic.
        return;
    }
    let h = start(Spec {
        pools: vec![("general", 6)],
        max_surge: 1,
        extra: window(window_start, end),
        ..Spec::default()
    })
    .await;
    // Slow every slot down so the window ends with slots left.
    let wait = end.duration_since(jiff::Timestamp::now());
    let per_slot = std::time::Duration::try_from(wait).unwrap() / 3;
    let settle = format!("{}s", per_slot.as_secs().max(1));
    let output = h
        .run(&[
            "rotate", "--all", "--yes", "-o", "json", "--settle", &settle,
        ])
        .await;
    let all = text(&output);
    // Not finished, nothing wrong: exit 5, never 0.
    assert_eq!(output.status.code(), Some(5), "{all}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["outcome"]["result"], "partial", "{report}");
    let remaining = report["outcome"]["remaining"].as_u64().unwrap();
    assert!(remaining > 0, "{report}");
    // When the window opens again: the same time tomorrow.
    let opens_at: jiff::Timestamp = report["outcome"]["opensAt"]
        .as_str()
        .expect("opensAt")
        .parse()
        .expect("an RFC 3339 instant");
    assert!(opens_at > end, "{report}");
    assert!(all.contains("it opens at"), "{all}");
    // Slots in flight finished: every node is either replaced or untouched.
    let (nodes, _) = h.world.store.list(&NODES, None, |_| true);
    for node in nodes.iter() {
        assert_eq!(
            node["spec"].get("unschedulable"),
            None,
            "{}",
            node["metadata"]["name"]
        );
    }
    assert!(
        h.observer.violations().is_empty(),
        "{:?}",
        h.observer.violations()
    );
    // The next window's run finishes the job.
    std::fs::write(
        &h.config,
        std::fs::read_to_string(&h.config)
            .unwrap()
            .replace(&window(window_start, end), ""),
    )
    .unwrap();
    let rest = h.run(&["rotate", "--all", "--yes"]).await;
    assert_eq!(rest.status.code(), Some(0), "{}", text(&rest));
    h.assert_converged();
}

/// Kubernetes mutations only kubesurge makes: a pod evicted, a node
/// cordoned or uncordoned or its `kubesurge.io/` annotations changed, a
/// Node deleted, a bootstrap token or the run record written.
fn is_kubesurge_mutation(e: &kubesurge_testworld::store::Event) -> bool {
    let field = |v: &Value, pointer: &str| v.pointer(pointer).cloned();
    let before = e.previous.as_deref().cloned().unwrap_or(Value::Null);
    if std::ptr::eq(e.resource, &PODS) {
        return e.event_type == kubesurge_testworld::store::EventType::Deleted
            || (field(&e.object, "/metadata/deletionTimestamp").is_some()
                && field(&before, "/metadata/deletionTimestamp").is_none());
    }
    if std::ptr::eq(e.resource, &NODES) {
        let ours = |v: &Value| {
            v.pointer("/metadata/annotations")
                .and_then(Value::as_object)
                .map(|a| {
                    a.iter()
                        .filter(|(k, _)| k.starts_with("kubesurge.io/"))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect::<BTreeMap<_, _>>()
                })
                .unwrap_or_default()
        };
        return e.event_type == kubesurge_testworld::store::EventType::Deleted
            || field(&e.object, "/spec/unschedulable") != field(&before, "/spec/unschedulable")
            || ours(&e.object) != ours(&before);
    }
    (std::ptr::eq(e.resource, &SECRETS) && e.name.starts_with("bootstrap-token-"))
        || (e.resource.plural == "configmaps" && e.name == "kubesurge-run")
}

// Before self-fencing, a run whose lease renewals failed only logged a
// warning and went on: once the PDB allowed it, it evicted the pods and
// finished (exit 0) although any other run could have taken the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_cannot_renew_its_lease_stops_every_mutation() {
    let h = start(Spec {
        pools: vec![("general", 2)],
        max_surge: 1,
        drain: "{ timeout: 5m, onTimeout: fail, unmanagedPods: delete }",
        ..Spec::default()
    })
    .await;
    let original_pdb = h
        .world
        .store
        .get(&kubesurge_testworld::resources::PDBS, "shop", "api")
        .expect("PDB api exists");
    block_everything(&h);
    let cordoned = arm(&h, KillPoint::Cordoned(1));
    let child = h
        .command(&["rotate", "--all", "--yes"])
        .spawn()
        .expect("starts");
    cordoned.notified().await;
    // Every renewal fails from now on: the lease is last renewed at most
    // RENEW_EVERY ago, so the run must fence itself within its renew
    // deadline (20 s) after that.
    h.world.apiserver.faults().fail_next(
        usize::MAX,
        500,
        Some(FaultFilter::verb_resource("update", "leases")),
    );
    tokio::time::sleep(Duration::from_secs(32)).await;
    let after_fence = Arc::new(Mutex::new(Vec::new()));
    let seen = after_fence.clone();
    h.world.store.observe(move |e| {
        if is_kubesurge_mutation(e) {
            seen.lock().unwrap().push(format!(
                "{:?} {} {}/{}",
                e.event_type, e.resource.plural, e.namespace, e.name
            ));
        }
    });
    // The drain would go through now.
    h.world
        .store
        .modify(
            &kubesurge_testworld::resources::PDBS,
            "shop",
            "api",
            |pdb| {
                pdb["spec"] = original_pdb["spec"].clone();
                Ok(())
            },
        )
        .expect("PDB api exists");
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("stops")
        .expect("runs");
    let all = text(&output);
    assert_ne!(output.status.code(), Some(0), "{all}");
    assert!(
        all.contains("no longer holds the run lock"),
        "says why it stopped: {all}"
    );
    assert_eq!(
        after_fence.lock().unwrap().clone(),
        Vec::<String>::new(),
        "mutations after the fence: {all}"
    );

    h.world.apiserver.faults().clear();
    let rerun = h.run(&["rotate", "--all", "--yes"]).await;
    assert_eq!(rerun.status.code(), Some(0), "{}", text(&rerun));
    h.assert_converged();
}

// Before the guard, a save replaced the record without a resourceVersion:
// a run that had lost its lock overwrote the winner's record with its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_record_written_by_another_run_is_never_overwritten() {
    use kubesurge::rotation::{RecordError, RecordStore};
    let h = start(Spec {
        pools: vec![("general", 1)],
        max_surge: 1,
        ..Spec::default()
    })
    .await;
    let output = h.run(&["rotate", "--all", "--yes"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let kubeconfig = kube::config::Kubeconfig::read_from(&h.kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("client config");
    let client = kube::Client::try_from(config).expect("client");

    let loser = RecordStore::new(client.clone());
    let winner = RecordStore::new(client);
    let mut record = loser.load().await.expect("loads").expect("a record");
    winner.load().await.expect("loads");
    record.message = Some("the winner's".into());
    winner.save(&record).await.expect("the winner writes");

    record.message = Some("the loser's".into());
    let refused = loser
        .save(&record)
        .await
        .expect_err("the loser may not write");
    assert!(matches!(refused, RecordError::Superseded), "{refused}");
    let kept = winner.load().await.expect("loads").expect("a record");
    assert_eq!(kept.message.as_deref(), Some("the winner's"));
}

/// A pod bound to the old node after the drain's precheck listed its pods
/// (here: the moment the node is cordoned, while the API server holds the
/// drain's watch of the node's pods) is evicted like the others: the drain
/// reads the node's pods after its cordon (a streaming list, read at the
/// moment it is asked), not from the precheck's list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_bound_between_the_precheck_and_the_drain_is_evicted() {
    let h = start(Spec {
        pools: vec![("general", 2)],
        max_surge: 1,
        drain: "{ timeout: 60s, onTimeout: fail, unmanagedPods: delete }",
        ..Spec::default()
    })
    .await;
    h.world.apiserver.faults().delay_next(
        1,
        Duration::from_secs(2),
        FaultFilter::verb_resource("watch", "pods").with_query("fieldSelector=spec.nodeName"),
    );
    let (cordoned_tx, mut cordoned) = tokio::sync::mpsc::unbounded_channel::<String>();
    h.world.store.observe(move |e| {
        let flipped = std::ptr::eq(e.resource, &NODES)
            && e.object.pointer("/spec/unschedulable") == Some(&json!(true))
            && e.previous
                .as_ref()
                .and_then(|p| p.pointer("/spec/unschedulable"))
                != Some(&json!(true));
        if flipped {
            let _ = cordoned_tx.send(e.name.clone());
        }
    });
    let store = h.world.store.clone();
    let bind = tokio::spawn(async move {
        let node = cordoned.recv().await.expect("a node is cordoned");
        store
            .create(
                &PODS,
                "shop",
                json!({
                    "metadata": {"name": "bound-late", "namespace": "shop"},
                    "spec": {
                        "nodeName": node,
                        "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}],
                    },
                    "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
                }),
            )
            .expect("the pod is bound");
        node
    });
    let output = h.run(&["rotate", "--all", "--yes"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}\n{}", world_state(&h));
    let node = bind.await.expect("the pod was bound");
    assert!(
        h.original_workers.contains_key(&node),
        "the first cordoned node is an old worker: {node}"
    );
    let (left, _) = h.world.store.list(&PODS, Some("shop"), |p| {
        p.pointer("/metadata/name") == Some(&json!("bound-late"))
    });
    assert!(left.is_empty(), "the late pod was not evicted: {left:?}");
    h.assert_converged();
}

/// The drain's streaming list refused with a 503 (an API server
/// restarting): the drain lists the node's pods and finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_whose_first_watch_is_refused_lists_again_and_finishes() {
    let h = start(Spec {
        pools: vec![("general", 2)],
        max_surge: 1,
        ..Spec::default()
    })
    .await;
    h.world.apiserver.faults().fail_next(
        1,
        503,
        Some(FaultFilter::verb_resource("watch", "pods").with_query("fieldSelector=spec.nodeName")),
    );
    let output = h.run(&["rotate", "--all", "--yes"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}\n{}", world_state(&h));
    h.assert_converged();
}

/// Where the API server serves streaming lists (the `WatchList` gate on by
/// default, 1.34 on), each drain reads its node's pods and their changes
/// with one request: a watch that starts with the pods now. No drain lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_drain_reads_its_pods_with_one_streaming_list_where_the_server_serves_them() {
    let h = start(Spec {
        version: "v1.35.3",
        ..Spec::default()
    })
    .await;
    let before = h.world.apiserver.request_counts();
    let output = h.run(&["rotate", "--all", "--yes"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}\n{}", world_state(&h));
    let after = h.world.apiserver.request_counts();
    let drained = h.original_workers.len() as u64;
    assert_eq!(after.streaming_lists - before.streaming_lists, drained);
    assert_eq!(after.streaming_lists_refused, 0);
    h.assert_converged();
}

/// On 1.33 kube-apiserver refuses streaming lists (its `WatchList` gate off
/// by default, kubernetes/kubernetes#131359) with a 422: the first drain
/// learns it, lists its node's pods and watches them, and the run's later
/// drains list without asking again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drains_list_after_the_server_refuses_one_streaming_list() {
    let h = start(Spec {
        version: "v1.33.4",
        max_surge: 1,
        ..Spec::default()
    })
    .await;
    let output = h.run(&["rotate", "--all", "--yes"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}\n{}", world_state(&h));
    let counts = h.world.apiserver.request_counts();
    assert_eq!(counts.streaming_lists, 0);
    assert_eq!(counts.streaming_lists_refused, 1, "asked once, then listed");
    h.assert_converged();
}

/// An old node with a volume still attached (a VolumeAttachment the CSI
/// attacher has not detached yet) is not terminated until the attachment
/// is detached: its VM going first would leave the attach/detach
/// controller to force-detach after 6 minutes (k8s-mechanics §7).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_node_is_terminated_only_after_its_volumes_detach() {
    let h = start(Spec {
        pools: vec![("general", 2)],
        max_surge: 1,
        ..Spec::default()
    })
    .await;
    let (node, _) = h.original_workers.iter().next().expect("a worker");
    let node = node.clone();
    let provider_id = h
        .world
        .store
        .get(&NODES, "", &node)
        .and_then(|n| n["spec"]["providerID"].as_str().map(str::to_string))
        .expect("the worker has a providerID");
    let instance = h
        .world
        .cloud
        .instances()
        .into_iter()
        .find(|i| i.provider_id == provider_id)
        .expect("the worker's instance")
        .id
        .0;
    h.world
        .store
        .create(
            &VOLUMEATTACHMENTS,
            "",
            json!({
                "metadata": {"name": "csi-0123"},
                "spec": {
                    "attacher": "ebs.csi.aws.com",
                    "nodeName": node,
                    "source": {"persistentVolumeName": "pv-data"},
                },
                "status": {"attached": true},
            }),
        )
        .expect("the attachment is made");
    let (terminating_tx, mut terminating) = tokio::sync::mpsc::unbounded_channel::<()>();
    let watched = node.clone();
    h.world.store.observe(move |e| {
        if std::ptr::eq(e.resource, &NODES)
            && e.name == watched
            && e.object
                .pointer("/metadata/annotations/kubesurge.io~1phase")
                .and_then(Value::as_str)
                == Some("terminating")
        {
            let _ = terminating_tx.send(());
        }
    });
    let store = h.world.store.clone();
    let cloud = h.world.cloud.clone();
    let detach = tokio::spawn(async move {
        terminating
            .recv()
            .await
            .expect("the node reaches its termination");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let running_at_detach = cloud.instance(&instance).map(|i| i.state);
        store
            .delete(
                &VOLUMEATTACHMENTS,
                "",
                "csi-0123",
                &kubesurge_testworld::store::Preconditions::default(),
            )
            .expect("the attachment is detached");
        (instance, running_at_detach)
    });
    let output = h.run(&["rotate", "--all", "--yes"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}\n{}", world_state(&h));
    let (instance, at_detach) = detach.await.expect("the attachment was detached");
    assert_eq!(
        at_detach,
        Some(InstanceState::Running),
        "{instance} was terminated before its volume detached"
    );
    assert!(
        !all.contains("terminating with volumes still attached"),
        "{all}"
    );
    h.assert_converged();
}
