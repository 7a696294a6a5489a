//! One tool rotating one fresh world, in a scenario process of its own:
//! moto with an Auto Scaling group per pool (the members are the pool's
//! workers; the group's own template joins the cluster, so a roller that
//! scales the group out gets nodes), the bench's workloads and PDBs, the
//! §8.3 observer attached, and the tool started by the launcher with only
//! loopback endpoints in its environment.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kubesurge_testworld::cloud::MachineStatus;
use kubesurge_testworld::moto::{
    FaultProxy, GroupUserData, MotoServer, MotoWorld, MotoWorldConfig,
};
use kubesurge_testworld::observer::{Invariant, Observer, PoolFloor};
use kubesurge_testworld::resources::NODES;
use kubesurge_testworld::store::{EventType, Store};
use kubesurge_testworld::world::{POOL_LABEL, PoolSpec, WorldConfig};
use serde_json::Value;
use tokio::time::Instant;

use super::{Contender, Findings, PeerResult, PeerSpec};
use crate::launcher::{Launch, Launcher};
use crate::scenario::{
    CLUSTER, RUN_TIMEOUT_FLOOR, SETUP_TIMEOUT, requests_between, seed_workloads, wait_for_budgets,
    workers,
};
use crate::spec::ZONES;

/// How many messages the findings keep.
const EXAMPLES: usize = 5;
/// Environment no tool run may inherit: it would send the tool elsewhere
/// than the world.
const ENV_REMOVED: [&str; 10] = [
    "KUBECONFIG",
    "KUBESURGE_CONFIG",
    "RUST_LOG",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
];

/// Why a run could not be measured (the tool failing is measured, not an
/// error).
#[derive(Debug, thiserror::Error)]
pub enum PeerRunError {
    #[error(transparent)]
    Moto(#[from] kubesurge_testworld::moto::MotoError),
    #[error(transparent)]
    World(#[from] kubesurge_testworld::moto::MotoWorldError),
    #[error(transparent)]
    Scenario(#[from] crate::scenario::ScenarioError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PeerRunError {
    let what = what.into();
    move |source| PeerRunError::Io { what, source }
}

/// Build the world, let the contender rotate it, measure.
pub async fn run(spec: &PeerSpec) -> Result<PeerResult, PeerRunError> {
    std::fs::create_dir_all(&spec.workdir)
        .map_err(io(format!("cannot create {}", spec.workdir.display())))?;
    // Before the world exists: see the launcher.
    let mut launcher = Launcher::start().map_err(io("cannot start the launcher"))?;
    let setup_started = Instant::now();
    let moto = MotoServer::start().await?;
    let pools: Vec<PoolSpec> = spec
        .layout
        .pools
        .iter()
        .map(|p| PoolSpec {
            name: p.name.clone(),
            workers: p.workers,
        })
        .collect();
    let mut config = MotoWorldConfig::new(WorldConfig {
        cluster_name: CLUSTER.into(),
        control_planes: 1,
        pools: pools.clone(),
        zones: ZONES,
        timing: spec.delays.timing(),
        workloads: false,
        ..WorldConfig::default()
    });
    config.auto_scaling_pools = pools.iter().map(|p| p.name.clone()).collect();
    config.group_user_data = GroupUserData::Joins;
    let world = MotoWorld::start(moto.url(), config).await?;
    let result = measure(spec, &world, &mut launcher, setup_started).await;
    world.stop();
    result
}

async fn measure(
    spec: &PeerSpec,
    world: &MotoWorld,
    launcher: &mut Launcher,
    setup_started: Instant,
) -> Result<PeerResult, PeerRunError> {
    let store = &world.world.store;
    seed_workloads(store, spec.workload, spec.layout.workers())?;
    world.wait_ready(SETUP_TIMEOUT).await?;
    wait_for_budgets(store, Instant::now() + SETUP_TIMEOUT).await?;
    let setup = setup_started.elapsed().as_secs_f64();

    // The tool's AWS calls, counted on their way to the world's endpoint.
    let proxy = FaultProxy::start(world.endpoint())
        .await
        .map_err(io("cannot start the AWS call counter"))?;
    let (kubeconfig, _, _) = world.write_config_files(&spec.workdir, proxy.url(), 1)?;
    let originals = workers(store);
    let original_instances: BTreeSet<String> = world
        .seeded
        .workers
        .values()
        .map(|i| i.id.clone())
        .collect();
    let observer = Observer::attach(store);
    observer.set_pool_floors(
        spec.layout
            .pools
            .iter()
            .map(|p| PoolFloor {
                name: p.name.clone(),
                selector: BTreeMap::from([(POOL_LABEL.to_string(), p.name.clone())]),
                floor: p.workers,
            })
            .collect(),
    );
    let reregistered = track_reregistrations(store);

    let launch = launch_for(spec, world, &kubeconfig, proxy.url())?;
    let requests_before = world.world.apiserver.request_counts();
    let outcome = launcher.run(&launch).await.map_err(io("the launcher"))?;
    let requests_after = world.world.apiserver.request_counts();

    let mut aws_calls: BTreeMap<String, u64> = BTreeMap::new();
    for call in proxy.calls() {
        *aws_calls.entry(call.action).or_default() += 1;
    }
    let requests = requests_between(&requests_before, &requests_after);
    let remaining = workers(store).intersection(&originals).count();
    let mut findings = findings_of(&observer, &reregistered);
    let left = instances_left(world, store, &original_instances);
    findings.instances_left = left.len();
    findings.examples.extend(left.into_iter().take(EXAMPLES));
    Ok(PeerResult {
        tool: spec.contender.name().to_string(),
        shape: spec.shape,
        layout: spec.layout.clone(),
        succeeded: outcome.success,
        status: outcome.status,
        workers: originals.len(),
        replaced: originals.len() - remaining,
        makespan: outcome.wall_s,
        setup,
        requests,
        aws_calls,
        usage: outcome.children,
        tree_peak_rss_kib: outcome.tree_peak_rss_kib,
        findings,
    })
}

/// Whole seconds, rounded up: the peer reads its waits with `int()`.
fn whole_seconds(seconds: f64) -> String {
    (seconds.ceil().max(1.0) as u64).to_string()
}

/// How the contender is started.
fn launch_for(
    spec: &PeerSpec,
    world: &MotoWorld,
    kubeconfig: &std::path::Path,
    aws_endpoint: &str,
) -> Result<Launch, PeerRunError> {
    let dir = &spec.workdir;
    let timeout_s = peer_timeout(spec).as_secs_f64();
    let mut env = world.aws_env(aws_endpoint);
    env.push(("AWS_DEFAULT_REGION".into(), world.config().region.clone()));
    env.push(("NO_PROXY".into(), "127.0.0.1,localhost".into()));
    let mut env_remove: Vec<String> = ENV_REMOVED.map(String::from).to_vec();
    match &spec.contender {
        Contender::Kubesurge { binary } => {
            let config = dir.join("kubesurge.yaml");
            let surges: BTreeMap<&str, u32> = spec
                .layout
                .pools
                .iter()
                .map(|p| (p.name.as_str(), p.max_surge as u32))
                .collect();
            let mut yaml =
                world.rotation_config_with(|pool| surges.get(pool).copied().unwrap_or(1));
            // As the bench's other scenarios: drains that fail rather
            // than force, the smallest settle, a join timeout only a
            // broken world trips.
            let new_node_timeout = (spec.delays.boot * 20.0).ceil().max(120.0) as u64;
            yaml.push_str(&format!(
                "drain: {{ timeout: 30m, onTimeout: fail, unmanagedPods: delete }}\nhealth: {{ newNodeTimeout: {new_node_timeout}s, settle: {}s }}\n",
                spec.delays.settle as u64
            ));
            std::fs::write(&config, yaml)
                .map_err(io(format!("cannot write {}", config.display())))?;
            Ok(Launch {
                program: binary.clone(),
                args: [
                    "--kubeconfig",
                    &kubeconfig.display().to_string(),
                    "--config",
                    &config.display().to_string(),
                    "rotate",
                    "--all",
                    "--yes",
                    "-o",
                    "json",
                ]
                .map(String::from)
                .to_vec(),
                env,
                env_remove,
                stdout: dir.join("report.json"),
                stderr: dir.join("kubesurge.log"),
                timeout_s,
            })
        }
        Contender::EksRollingUpdate { install } => {
            env_remove.push("PATH".into());
            let path = std::env::join_paths([
                install.shim_dir.clone(),
                install.venv_bin.clone(),
                "/usr/local/bin".into(),
                "/usr/bin".into(),
                "/bin".into(),
            ])
            .map_err(|e| io("PATH")(std::io::Error::other(e)))?;
            let d = &spec.delays;
            env.extend(
                [
                    ("PATH", path.to_string_lossy().into_owned()),
                    ("HOME", dir.display().to_string()),
                    ("KUBECONFIG", kubeconfig.display().to_string()),
                    // moto's Auto Scaling cannot launch from a template
                    // version made later with user data, so the rollout
                    // is by age: every instance older than 0 days.
                    ("RUN_MODE", "4".into()),
                    ("MAX_ALLOWABLE_NODE_AGE", "0".into()),
                    // It counts every Node against the groups' instances:
                    // the control plane is no member.
                    (
                        "EXCLUDE_NODE_LABEL_KEYS",
                        "node-role.kubernetes.io/control-plane".into(),
                    ),
                    // Its waits, scaled like the world's delays (90 s and
                    // 20 s by default), whole seconds.
                    ("CLUSTER_HEALTH_WAIT", whole_seconds(90.0 * d.scale)),
                    ("GLOBAL_HEALTH_WAIT", whole_seconds(20.0 * d.scale)),
                    ("PYTHONUNBUFFERED", "1".into()),
                ]
                .map(|(k, v)| (k.to_string(), v)),
            );
            Ok(Launch {
                program: install.program.clone(),
                args: vec!["--cluster_name".into(), CLUSTER.into()],
                env,
                env_remove,
                stdout: dir.join("peer.out"),
                stderr: dir.join("peer.log"),
                timeout_s,
            })
        }
    }
}

/// The one asked for, else generous: a one-at-a-time tool needs about
/// N·(B+D+T) and its polls.
fn peer_timeout(spec: &PeerSpec) -> Duration {
    if let Some(seconds) = spec.timeout_s.filter(|s| *s > 0.0) {
        return Duration::from_secs_f64(seconds);
    }
    let n = spec.layout.workers() as f64;
    let d = &spec.delays;
    RUN_TIMEOUT_FLOOR.max(Duration::from_secs_f64(
        4.0 * n * (d.per_slot() + 20.0 * d.scale.max(0.05) + 10.0) + 300.0,
    ))
}

/// Names of Nodes added again after they were deleted.
type Reregistered = Arc<Mutex<Vec<String>>>;

fn track_reregistrations(store: &Store) -> Reregistered {
    let found: Reregistered = Arc::default();
    let deleted: Mutex<BTreeSet<String>> = Mutex::default();
    let out = found.clone();
    store.observe(move |event| {
        if !std::ptr::eq(event.resource, &NODES) {
            return;
        }
        let mut deleted = deleted.lock().unwrap_or_else(|p| p.into_inner());
        match event.event_type {
            EventType::Deleted => {
                deleted.insert(event.name.clone());
            }
            EventType::Added if deleted.contains(&event.name) => {
                out.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(event.name.clone());
            }
            _ => {}
        }
    });
    found
}

fn findings_of(observer: &Observer, reregistered: &Reregistered) -> Findings {
    let mut f = Findings::default();
    for v in observer.violations() {
        match v.invariant {
            Invariant::CapacityFloor => f.capacity_below_pool_size += 1,
            Invariant::DisruptionBudget => f.pdb_violations += 1,
            Invariant::PodLost => f.nodes_deleted_with_pods += 1,
            Invariant::Skew => {}
        }
        if f.examples.len() < EXAMPLES {
            f.examples.push(v.message);
        }
    }
    let names = reregistered
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    f.stale_nodes_reregistered = names.len();
    if let Some(first) = names.first() {
        f.examples.push(format!(
            "node {first} registered again after it was deleted"
        ));
    }
    f
}

/// Instances still running that are not a Ready node of the cluster: old
/// workers the tool did not terminate, and new ones that never joined.
fn instances_left(world: &MotoWorld, store: &Store, originals: &BTreeSet<String>) -> Vec<String> {
    let ready: HashMap<String, bool> = store
        .list(&NODES, None, |_| true)
        .0
        .iter()
        .filter_map(|n| {
            let name = n.pointer("/metadata/name")?.as_str()?.to_string();
            let ready = n
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                });
            Some((name, ready))
        })
        .collect();
    let mut left = Vec::new();
    for m in world.machines.machines() {
        if m.status == MachineStatus::Terminated {
            continue;
        }
        let node_ready = m
            .node_name
            .as_ref()
            .and_then(|n| ready.get(n))
            .copied()
            .unwrap_or(false);
        if originals.contains(&m.instance_id) {
            left.push(format!(
                "old instance {} ({}) not terminated",
                m.instance_id,
                m.node_name.as_deref().unwrap_or("no node")
            ));
        } else if !node_ready {
            left.push(format!(
                "instance {} is {:?}, not a Ready node",
                m.instance_id, m.status
            ));
        }
    }
    left
}
