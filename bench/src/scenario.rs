//! One scenario, in a process of its own (so the world's figures are this
//! scenario's alone): build the world, run the real `kubesurge rotate` as a
//! child against it, and measure the run from outside — wall time, the
//! emulator's and the cloud's counters, the child's CPU and peak memory,
//! and the world's own.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use kubesurge_testworld::apiserver::RequestCounts;
use kubesurge_testworld::resources::{DAEMONSETS, DEPLOYMENTS, NAMESPACES, NODES, PDBS};
use kubesurge_testworld::store::{Store, StoreError};
use kubesurge_testworld::world::{POOL_LABEL, PoolSpec, World, WorldConfig, WorldError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::launcher::{Launch, Launcher};
use super::measure::{self, Usage};
use super::spec::{Layout, ScenarioSpec, Shape, WorkloadSpec, ZONES};
use super::timeline::{self, Breakdown, Invocation, Recorder, SlotNames};

/// The cluster's name (instance tags, the lock).
pub(crate) const CLUSTER: &str = "bench";
/// Namespace of the benchmark's workloads.
const NAMESPACE: &str = "bench";
/// How long a world may take to start and settle.
pub(crate) const SETUP_TIMEOUT: Duration = Duration::from_secs(900);
/// Least time a run may take before it counts as hung.
pub(crate) const RUN_TIMEOUT_FLOOR: Duration = Duration::from_secs(600);

/// Why a scenario could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error(transparent)]
    World(#[from] WorldError),
    #[error("cannot create {what}: {source}")]
    Seed {
        what: String,
        #[source]
        source: StoreError,
    },
    #[error("the world did not settle: {0}")]
    Settle(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`kubesurge {args}` exited with {status}; the end of its log {log}:\n{tail}")]
    ToolFailed {
        args: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("`kubesurge {args}` did not finish within {after:?}; its log: {log}")]
    ToolHung {
        args: String,
        after: Duration,
        log: PathBuf,
    },
    #[error("the report of `kubesurge {args}` ({path}): {problem}")]
    Report {
        args: String,
        path: PathBuf,
        problem: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ScenarioError {
    let what = what.into();
    move |source| ScenarioError::Io { what, source }
}

/// A request count of the emulator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCount {
    pub verb: String,
    pub resource: String,
    pub count: u64,
}

/// The emulator's requests made between two of its counts, by verb and
/// resource (those with none left out).
pub fn requests_between(before: &RequestCounts, after: &RequestCounts) -> Vec<RequestCount> {
    after
        .by_verb_resource
        .iter()
        .filter_map(|((verb, resource), count)| {
            let earlier = before.get(verb, resource);
            (*count > earlier).then(|| RequestCount {
                verb: verb.clone(),
                resource: resource.clone(),
                count: count - earlier,
            })
        })
        .collect()
}

/// What the world itself cost.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorldCost {
    /// CPU of the scenario process while the tool ran (API server,
    /// controllers, kubelets, cloud, machines).
    pub run: Usage,
    /// CPU to build the world and let it settle.
    pub setup_cpu_s: f64,
    /// Peak resident memory of the scenario process (VmHWM), KiB.
    pub peak_rss_kib: u64,
    /// Resident memory when the run ended, KiB.
    pub rss_end_kib: u64,
}

/// Evictions the drains made.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Evictions {
    pub pods: u64,
    /// Eviction requests (more than pods when a PDB answered 429).
    pub requests: u64,
}

/// Everything measured in one scenario.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScenarioResult {
    pub shape: Shape,
    pub layout: Layout,
    pub reference: bool,
    pub workload: WorkloadSpec,
    /// Pods in the world when the run started.
    pub pods: usize,
    pub replaced: usize,
    /// First `kubesurge` start → last exit, seconds.
    pub makespan: f64,
    /// The reports' `finished − started`, added over processes.
    pub makespan_report: f64,
    pub processes: usize,
    /// World start → settled, seconds.
    pub setup: f64,
    pub breakdown: Breakdown,
    /// Requests the emulator served during the run.
    pub requests: Vec<RequestCount>,
    pub bytes_sent: u64,
    pub provider_calls: BTreeMap<String, u64>,
    pub evictions: Evictions,
    /// The `kubesurge` processes: CPU added up, the largest peak.
    pub tool: Usage,
    pub world: WorldCost,
    pub load_before: Option<f64>,
    pub load_after: Option<f64>,
}

/// Build the world, run the rotation, measure it.
pub async fn run(spec: &ScenarioSpec) -> Result<ScenarioResult, ScenarioError> {
    std::fs::create_dir_all(&spec.workdir)
        .map_err(io(format!("cannot create {}", spec.workdir.display())))?;
    // Before the world exists: see the launcher for why.
    let mut launcher = Launcher::start().map_err(io("cannot start the launcher"))?;
    let setup_started = Instant::now();
    let world = World::start(WorldConfig {
        cluster_name: CLUSTER.into(),
        control_planes: 1,
        pools: spec
            .layout
            .pools
            .iter()
            .map(|p| PoolSpec {
                name: p.name.clone(),
                workers: p.workers,
            })
            .collect(),
        zones: ZONES,
        timing: spec.delays.timing(),
        workloads: false,
        ..WorldConfig::default()
    })
    .await?;
    let result = measure_run(spec, &world, &mut launcher, setup_started).await;
    world.stop();
    result
}

async fn measure_run(
    spec: &ScenarioSpec,
    world: &World,
    launcher: &mut Launcher,
    setup_started: Instant,
) -> Result<ScenarioResult, ScenarioError> {
    seed_workloads(&world.store, spec.workload, spec.layout.workers())?;
    world.wait_ready(SETUP_TIMEOUT).await?;
    wait_for_budgets(&world.store, Instant::now() + SETUP_TIMEOUT).await?;
    let setup = setup_started.elapsed().as_secs_f64();
    let setup_cpu_s = measure::this_process().map_err(io("getrusage"))?.cpu_s();

    let (kubeconfig, _) = world.write_config_files(&spec.workdir)?;
    let config = spec.workdir.join("rotation.yaml");
    std::fs::write(&config, rotation_config(&spec.layout, world, spec))
        .map_err(io(format!("cannot write {}", config.display())))?;

    let originals: HashSet<String> = workers(&world.store);
    let pods = world
        .store
        .list(&kubesurge_testworld::resources::PODS, None, |_| true)
        .0
        .len();
    let recorder = Recorder::attach(&world.store, originals.clone());

    let load_before = measure::load_average();
    let requests_before = world.apiserver.request_counts();
    let cloud_before = world.cloud.counters();
    let world_before = measure::this_process().map_err(io("getrusage"))?;

    let origin = Instant::now();
    let mut runs = Vec::new();
    let timeout = RUN_TIMEOUT_FLOOR.max(Duration::from_secs_f64(
        4.0 * spec.layout.waves() as f64 * (spec.delays.per_slot() + spec.delays.settle) + 300.0,
    ));
    let selections: Vec<Option<&str>> = if spec.layout.sequential {
        spec.layout
            .pools
            .iter()
            .map(|p| Some(p.name.as_str()))
            .collect()
    } else {
        vec![None]
    };
    for (index, pool) in selections.into_iter().enumerate() {
        let tool = ToolFiles {
            binary: &spec.kubesurge,
            kubeconfig: &kubeconfig,
            config: &config,
            dir: &spec.workdir,
        };
        match run_tool(launcher, &tool, pool, index, origin, timeout).await {
            Ok(run) => runs.push(run),
            Err(e) => {
                // What the world looked like when the tool gave up, to tell
                // a stalled world from a tool that stopped seeing it.
                let path = spec.workdir.join("world-state.txt");
                let _ = std::fs::write(&path, world_state(world));
                return Err(e);
            }
        }
    }
    let makespan = origin.elapsed().as_secs_f64();

    // The launcher ran nothing else: its children are the tool's runs.
    let tool = runs.last().map(|r| r.children).unwrap_or_default();
    let world_after = measure::this_process().map_err(io("getrusage"))?;
    let requests_after = world.apiserver.request_counts();
    let cloud_after = world.cloud.counters();
    let load_after = measure::load_average();

    let mut slots = Vec::new();
    let mut evictions = Evictions::default();
    let mut makespan_report = 0.0;
    for run in &runs {
        makespan_report += run.report_seconds;
        for slot in run.report["slots"].as_array().into_iter().flatten() {
            slots.push(SlotNames {
                pool: slot["pool"].as_str().unwrap_or("").to_string(),
                old_node: slot["oldNode"].as_str().unwrap_or("").to_string(),
                new_node: slot["newNode"].as_str().map(str::to_string),
            });
            for pod in slot
                .pointer("/drain/evicted")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                evictions.pods += 1;
                evictions.requests += pod["attempts"].as_u64().unwrap_or(1);
            }
        }
    }
    let remaining: Vec<String> = workers(&world.store)
        .intersection(&originals)
        .cloned()
        .collect();
    if !remaining.is_empty() || slots.len() != originals.len() {
        return Err(ScenarioError::Settle(format!(
            "the run reported {} slots for {} workers; still there: {remaining:?}",
            slots.len(),
            originals.len()
        )));
    }

    let times = timeline::slot_times(&recorder.marks(), &slots, origin);
    let windows: BTreeMap<String, usize> = spec
        .layout
        .pools
        .iter()
        .map(|p| (p.name.clone(), p.max_surge))
        .collect();
    let invocations: Vec<Invocation> = runs.iter().map(|r| r.invocation.clone()).collect();
    let breakdown = timeline::breakdown(&times, &windows, &invocations);

    let requests = requests_between(&requests_before, &requests_after);
    let provider_calls = cloud_after
        .iter()
        .filter_map(|(action, after)| {
            let before = cloud_before.get(action).copied().unwrap_or(0);
            (*after > before).then(|| (action.as_str().to_string(), after - before))
        })
        .collect();

    Ok(ScenarioResult {
        shape: spec.shape,
        layout: spec.layout.clone(),
        reference: spec.reference,
        workload: spec.workload,
        pods,
        replaced: slots.len(),
        makespan,
        makespan_report,
        processes: runs.len(),
        setup,
        breakdown,
        requests,
        bytes_sent: requests_after
            .bytes_sent
            .saturating_sub(requests_before.bytes_sent),
        provider_calls,
        evictions,
        tool,
        world: WorldCost {
            run: world_after.since(&world_before),
            setup_cpu_s,
            peak_rss_kib: measure::status_kib("VmHWM").unwrap_or(world_after.max_rss_kib),
            rss_end_kib: measure::status_kib("VmRSS").unwrap_or(0),
        },
        load_before,
        load_after,
    })
}

/// The nodes that are not Ready and the kube-system pods that are not
/// Ready, as the world has them, with the API server's request counts.
fn world_state(world: &World) -> String {
    let ready = |o: &Value| {
        o.pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let mut out = String::new();
    let (nodes, rv) = world.store.list(&NODES, None, |_| true);
    out.push_str(&format!("resourceVersion {rv}; {} nodes\n", nodes.len()));
    for n in nodes.iter().filter(|n| ready(n)["status"] != "True") {
        out.push_str(&format!(
            "node {} not Ready: {}\n",
            n["metadata"]["name"],
            ready(n)
        ));
    }
    let (pods, _) = world.store.list(
        &kubesurge_testworld::resources::PODS,
        Some("kube-system"),
        |_| true,
    );
    for p in pods.iter().filter(|p| ready(p)["status"] != "True") {
        out.push_str(&format!(
            "pod kube-system/{} on {} phase {} deleting {}: {}\n",
            p["metadata"]["name"],
            p["spec"]["nodeName"],
            p["status"]["phase"],
            p["metadata"].get("deletionTimestamp").is_some(),
            ready(p)
        ));
    }
    let counts = world.apiserver.request_counts();
    for ((verb, resource), n) in &counts.by_verb_resource {
        out.push_str(&format!("requests {verb} {resource}: {n}\n"));
    }
    out
}

/// The workers of the pools, by name.
pub(crate) fn workers(store: &Store) -> HashSet<String> {
    let pointer = format!("/metadata/labels/{}", POOL_LABEL.replace('/', "~1"));
    store
        .list(&NODES, None, |n| n.pointer(&pointer).is_some())
        .0
        .iter()
        .filter_map(|n| n.pointer("/metadata/name").and_then(Value::as_str))
        .map(str::to_string)
        .collect()
}

/// The files a `kubesurge` run reads.
struct ToolFiles<'a> {
    binary: &'a Path,
    kubeconfig: &'a Path,
    config: &'a Path,
    dir: &'a Path,
}

/// One `kubesurge rotate` process.
struct ToolRun {
    invocation: Invocation,
    report: Value,
    report_seconds: f64,
    /// The launcher's children so far.
    children: Usage,
}

async fn run_tool(
    launcher: &mut Launcher,
    tool: &ToolFiles<'_>,
    pool: Option<&str>,
    index: usize,
    origin: Instant,
    timeout: Duration,
) -> Result<ToolRun, ScenarioError> {
    let mut args = vec!["rotate", "--all", "--yes", "-o", "json"];
    if let Some(pool) = pool {
        args.extend(["--pool", pool]);
    }
    let shown = args.join(" ");
    let report_path = tool.dir.join(format!("report-{index}.json"));
    let log_path = tool.dir.join(format!("kubesurge-{index}.log"));
    let mut argv: Vec<String> = vec![
        "--kubeconfig".into(),
        tool.kubeconfig.display().to_string(),
        "--config".into(),
        tool.config.display().to_string(),
    ];
    argv.extend(args.iter().map(|a| a.to_string()));
    let launch = Launch {
        program: tool.binary.to_path_buf(),
        args: argv,
        env: vec![("AWS_EC2_METADATA_DISABLED".into(), "true".into())],
        env_remove: ["KUBECONFIG", "KUBESURGE_CONFIG", "RUST_LOG"]
            .map(String::from)
            .to_vec(),
        stdout: report_path.clone(),
        stderr: log_path.clone(),
        timeout_s: timeout.as_secs_f64(),
    };
    let started = origin.elapsed().as_secs_f64();
    let outcome = launcher.run(&launch).await.map_err(io("the launcher"))?;
    let exited = origin.elapsed().as_secs_f64();
    if outcome.timed_out {
        return Err(ScenarioError::ToolHung {
            args: shown,
            after: timeout,
            log: log_path,
        });
    }
    if !outcome.success {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        return Err(ScenarioError::ToolFailed {
            args: shown,
            status: outcome.status,
            log: log_path,
            tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    let text = std::fs::read_to_string(&report_path)
        .map_err(io(format!("cannot read {}", report_path.display())))?;
    let bad = |problem: String| ScenarioError::Report {
        args: shown.clone(),
        path: report_path.clone(),
        problem,
    };
    let report: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if report.pointer("/outcome/result").and_then(Value::as_str) != Some("succeeded") {
        return Err(bad(format!(
            "the run did not succeed: {}",
            report["outcome"]
        )));
    }
    if let Some(slot) = report["slots"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s.pointer("/outcome/result").and_then(Value::as_str) != Some("replaced"))
    {
        return Err(bad(format!("a slot was not replaced: {slot}")));
    }
    let stamp = |key: &str| {
        report[key]
            .as_str()
            .and_then(|t| t.parse::<Timestamp>().ok())
            .ok_or_else(|| bad(format!("no {key} timestamp")))
    };
    let report_seconds = stamp("finished")?
        .duration_since(stamp("started")?)
        .as_secs_f64();
    let pools = match pool {
        Some(p) => vec![p.to_string()],
        None => report["slots"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["pool"].as_str().map(str::to_string))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
    };
    Ok(ToolRun {
        invocation: Invocation {
            started,
            exited,
            pools,
        },
        report,
        report_seconds,
        children: outcome.children,
    })
}

/// The `RotationConfig` of a scenario: each pool's `maxSurge` from the
/// layout, `maxUnavailable` 0, drains that fail rather than force, and the
/// smallest settle the settings allow.
fn rotation_config(layout: &Layout, world: &World, spec: &ScenarioSpec) -> String {
    let mut pools = String::new();
    for p in &layout.pools {
        pools.push_str(&format!(
            "  - name: {name}\n    selector: {{ {POOL_LABEL}: {name} }}\n    provider: sim\n    sim: {{ endpoint: \"{url}\" }}\n    maxSurge: {surge}\n    maxUnavailable: 0\n    nodeLabels: {{ {POOL_LABEL}: {name} }}\n",
            name = p.name,
            url = world.cloud.url(),
            surge = p.max_surge,
        ));
    }
    // Far beyond a healthy join, so only a broken world trips it.
    let new_node_timeout = (spec.delays.boot * 20.0).ceil().max(120.0) as u64;
    format!(
        "apiVersion: kubesurge.io/v1alpha1\nkind: RotationConfig\ncluster:\n  name: {CLUSTER}\npools:\n{pools}drain: {{ timeout: 30m, onTimeout: fail, unmanagedPods: delete }}\nhealth: {{ newNodeTimeout: {new_node_timeout}s, settle: {settle}s }}\n",
        settle = spec.delays.settle as u64,
    )
}

fn create(
    store: &Store,
    resource: &'static kubesurge_testworld::resources::Resource,
    namespace: &str,
    object: Value,
) -> Result<(), ScenarioError> {
    let what = format!(
        "{} {namespace}/{}",
        resource.kind,
        object["metadata"]["name"].as_str().unwrap_or("?")
    );
    store
        .create(resource, namespace, object)
        .map(|_| ())
        .map_err(|source| ScenarioError::Seed { what, source })
}

/// Deployments of `replicas` pods (about `pods_per_node` per worker), each
/// with a PDB allowing one disruption at a time, and a DaemonSet on every
/// worker. Pods take the default 30 s grace period, which the world plays
/// as the drain delay D.
pub(crate) fn seed_workloads(
    store: &Store,
    spec: WorkloadSpec,
    workers: usize,
) -> Result<(), ScenarioError> {
    create(
        store,
        &NAMESPACES,
        "",
        json!({"metadata": {"name": NAMESPACE, "labels": {"kubernetes.io/metadata.name": NAMESPACE}}}),
    )?;
    for i in 0..spec.deployments(workers) {
        let name = format!("app-{:04}", i + 1);
        let labels = json!({"app": name});
        create(
            store,
            &DEPLOYMENTS,
            NAMESPACE,
            json!({
                "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
                "spec": {
                    "replicas": spec.replicas,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "terminationGracePeriodSeconds": 30,
                            "containers": [{"name": "app", "image": format!("registry.example/bench/{name}:1.0")}],
                        }
                    }
                }
            }),
        )?;
        create(
            store,
            &PDBS,
            NAMESPACE,
            json!({
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {"selector": {"matchLabels": labels}, "maxUnavailable": 1}
            }),
        )?;
    }
    let agent = json!({"app": "node-agent"});
    create(
        store,
        &DAEMONSETS,
        NAMESPACE,
        json!({
            "metadata": {"name": "node-agent", "namespace": NAMESPACE, "labels": agent},
            "spec": {
                "selector": {"matchLabels": agent},
                "template": {
                    "metadata": {"labels": agent},
                    "spec": {
                        "terminationGracePeriodSeconds": 30,
                        "containers": [{"name": "agent", "image": "registry.example/bench/node-agent:1.0"}],
                    }
                }
            }
        }),
    )
}

/// Wait until every PDB's status allows the disruption it should, so the
/// first evictions are not refused for a status not computed yet. A
/// bounded poll: setup only, and the store changes too often (heartbeats)
/// for a change feed to be a cheaper wake-up.
pub(crate) async fn wait_for_budgets(
    store: &Store,
    deadline: Instant,
) -> Result<(), ScenarioError> {
    loop {
        let (pdbs, _) = store.list(&PDBS, None, |_| true);
        let waiting = pdbs.iter().find(|p| {
            p.pointer("/status/disruptionsAllowed")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                < 1
        });
        let Some(pdb) = waiting else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            return Err(ScenarioError::Settle(format!(
                "PDB {}/{} allows no disruption: {}",
                pdb["metadata"]["namespace"], pdb["metadata"]["name"], pdb["status"]
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
