//! The simulated cloud behind the `sim` provider, the assembled world, and
//! `kubesurge sandbox up`: what every end-to-end test and a new user's
//! first run stand on.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Node;
use kube::api::ListParams;
use kubesurge_provider::conformance::{self, Fixture};
use kubesurge_provider::{
    CloudProvider, DeleteStatus, Image, Instance, InstanceId, LaunchRequest, NodeRef, PoolRef,
    ProviderError, Sensitive, SlotKey, tags,
};
use kubesurge_sim::SimProvider;
use kubesurge_sim::api::Action;
use kubesurge_sim::provider::ATTEMPTS;
use kubesurge_testworld::Timing;
use kubesurge_testworld::cloud::{CloudConfig, MachineRole, PrejoinedMachine, SimCloud, Times};
use kubesurge_testworld::world::{PoolSpec, World, WorldConfig};

const CLUSTER: &str = "c1";

async fn bare_cloud() -> SimCloud {
    SimCloud::start(CloudConfig::new(3, Timing::fast()))
        .await
        .expect("cloud starts")
}

fn pool(name: &str) -> PoolRef {
    PoolRef {
        cluster: CLUSTER.into(),
        pool: name.into(),
    }
}

fn launch_request(pool_name: &str, old_node: &str, image: &str, zone: &str) -> LaunchRequest {
    LaunchRequest {
        pool: pool(pool_name),
        slot: SlotKey {
            run_id: "run-1".into(),
            old_node: old_node.into(),
            attempt: 0,
        },
        image: image.into(),
        zone: zone.into(),
        subnet: None,
        user_data: Sensitive::new(String::new()),
        node_name: format!("{old_node}-new"),
        extra_tags: BTreeMap::new(),
    }
}

/// An instance of another cluster, in pool `pool_name`.
fn foreign_instance(cloud: &SimCloud, pool_name: &str) -> Instance {
    cloud
        .insert_prejoined(PrejoinedMachine {
            zone: "zone-a".into(),
            image_id: cloud.image_for_version("v1.35.3").expect("image"),
            tags: BTreeMap::from([
                (tags::CLUSTER.to_string(), "someone-else".to_string()),
                (tags::POOL.to_string(), pool_name.to_string()),
            ]),
            role: MachineRole::Worker,
            launched_at: jiff::Timestamp::now(),
            node_name: None,
            labels: BTreeMap::new(),
            taints: Vec::new(),
            static_pods: Vec::new(),
        })
        .expect("foreign instance")
}

fn fixture(cloud: &SimCloud, pool_name: &str) -> Fixture {
    let mut fx = Fixture::new(pool(pool_name), "zone-b", "v1.35.3");
    fx.subnet = Some("subnet-zone-b".into());
    fx.foreign_instance = Some(foreign_instance(cloud, pool_name).id);
    fx.poll_interval = Duration::from_millis(20);
    fx.timeout = Duration::from_secs(20);
    fx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_kit_passes_for_the_sim_provider() {
    let cloud = bare_cloud().await;
    let fx = fixture(&cloud, "conformance");
    let provider = SimProvider::new(cloud.url(), CLUSTER);
    if let Err(violations) = conformance::run_all(&provider, &fx).await {
        panic!("the sim provider violates its contract: {violations:#?}");
    }
    // The foreign instance survived every check.
    let foreign = fx.foreign_instance.expect("foreign instance");
    assert_eq!(
        cloud.instance(&foreign.0).map(|i| i.state),
        Some(kubesurge_provider::InstanceState::Running)
    );
}

/// A provider whose launches forget the slot: every call is a new attempt.
struct ForgetfulLaunch(SimProvider);

/// A provider whose listing stops after the first page.
struct FirstPageOnly(SimProvider, String);

#[async_trait]
impl CloudProvider for ForgetfulLaunch {
    fn name(&self) -> &str {
        "forgetful"
    }
    async fn list(&self, pool: &PoolRef) -> Result<Vec<Instance>, ProviderError> {
        self.0.list(pool).await
    }
    async fn launch(&self, request: &LaunchRequest) -> Result<Instance, ProviderError> {
        let mut request = request.clone();
        request.slot.attempt = rand::random_range(1..u32::MAX);
        self.0.launch(&request).await
    }
    async fn get(&self, id: &InstanceId) -> Result<Option<Instance>, ProviderError> {
        self.0.get(id).await
    }
    async fn delete(&self, id: &InstanceId) -> Result<DeleteStatus, ProviderError> {
        self.0.delete(id).await
    }
    async fn instance_for(&self, node: &NodeRef) -> Result<Option<Instance>, ProviderError> {
        self.0.instance_for(node).await
    }
    async fn resolve_image(&self, pool: &PoolRef, version: &str) -> Result<Image, ProviderError> {
        self.0.resolve_image(pool, version).await
    }
}

#[async_trait]
impl CloudProvider for FirstPageOnly {
    fn name(&self) -> &str {
        "first-page-only"
    }
    async fn list(&self, pool: &PoolRef) -> Result<Vec<Instance>, ProviderError> {
        // One DescribeInstances call, as a provider that ignores nextToken.
        let cloud = SimProvider::new(&self.1, &pool.cluster);
        let all = cloud.list(pool).await?;
        Ok(all.into_iter().take(50).collect())
    }
    async fn launch(&self, request: &LaunchRequest) -> Result<Instance, ProviderError> {
        self.0.launch(request).await
    }
    async fn get(&self, id: &InstanceId) -> Result<Option<Instance>, ProviderError> {
        self.0.get(id).await
    }
    async fn delete(&self, id: &InstanceId) -> Result<DeleteStatus, ProviderError> {
        self.0.delete(id).await
    }
    async fn instance_for(&self, node: &NodeRef) -> Result<Option<Instance>, ProviderError> {
        self.0.instance_for(node).await
    }
    async fn resolve_image(&self, pool: &PoolRef, version: &str) -> Result<Image, ProviderError> {
        self.0.resolve_image(pool, version).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_kit_catches_broken_providers() {
    let cloud = bare_cloud().await;
    let fx = fixture(&cloud, "broken");
    let forgetful = ForgetfulLaunch(SimProvider::new(cloud.url(), CLUSTER));
    let violation = conformance::idempotent_launch(&forgetful, &fx)
        .await
        .expect_err("a launch that ignores the slot is not idempotent");
    assert_eq!(violation.contract, "launch is idempotent per slot");

    let truncated = FirstPageOnly(
        SimProvider::new(cloud.url(), CLUSTER),
        cloud.url().to_string(),
    );
    let violation = conformance::list_filters_and_pages(&truncated, &fx)
        .await
        .expect_err("a list without paging misses instances");
    assert!(violation.message.contains("missed"), "{violation}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_errors_are_typed_from_cloud_faults() {
    let cloud = bare_cloud().await;
    let provider = SimProvider::new(cloud.url(), CLUSTER);
    let image = provider
        .resolve_image(&pool("general"), "1.35.3")
        .await
        .expect("image for v1.35.3")
        .id;

    // Capacity in one zone: that zone fails, the others launch.
    cloud.with_faults(|f| f.set_capacity_shortage("zone-b", Times::UntilCleared));
    let short = provider
        .launch(&launch_request("general", "n1", &image, "zone-b"))
        .await;
    assert!(
        matches!(&short, Err(ProviderError::InsufficientCapacity { zone, .. }) if zone == "zone-b"),
        "{short:?}"
    );
    provider
        .launch(&launch_request("general", "n2", &image, "zone-a"))
        .await
        .expect("zone-a has capacity");
    cloud.with_faults(|f| f.clear_capacity_shortage("zone-b"));
    provider
        .launch(&launch_request("general", "n1", &image, "zone-b"))
        .await
        .expect("capacity is back in zone-b");

    // Throttling beyond the provider's own retries surfaces as Throttled,
    // after exactly ATTEMPTS calls.
    cloud.reset_counters();
    cloud.with_faults(|f| f.throttle_next(ATTEMPTS));
    let throttled = provider.list(&pool("general")).await;
    assert!(
        matches!(throttled, Err(ProviderError::Throttled { .. })),
        "{throttled:?}"
    );
    assert_eq!(cloud.count(Action::DescribeInstances), u64::from(ATTEMPTS));
    // A shorter burst is absorbed by the retries.
    cloud.with_faults(|f| f.throttle_next(ATTEMPTS - 1));
    assert_eq!(
        provider
            .list(&pool("general"))
            .await
            .expect("retried")
            .len(),
        2
    );

    // Server errors are transient.
    cloud.with_faults(|f| f.fail_next(ATTEMPTS));
    let failed = provider
        .get(&InstanceId("i-00000000000000000".into()))
        .await;
    assert!(
        matches!(failed, Err(ProviderError::Transient { .. })),
        "{failed:?}"
    );
    assert!(failed.expect_err("transient").is_retryable());

    // An unknown image is NotFound, at launch and at resolution.
    let missing = provider
        .launch(&launch_request(
            "general",
            "n3",
            "ami-00000000000000000",
            "zone-a",
        ))
        .await;
    assert!(
        matches!(missing, Err(ProviderError::NotFound { .. })),
        "{missing:?}"
    );
    let none = provider.resolve_image(&pool("general"), "v1.99.0").await;
    assert!(
        matches!(none, Err(ProviderError::NotFound { .. })),
        "{none:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_follows_every_page_in_the_expected_number_of_calls() {
    let cloud = bare_cloud().await;
    let provider = SimProvider::new(cloud.url(), CLUSTER);
    let image = cloud.image_for_version("v1.34.2").expect("image");
    let zones = cloud.zones();
    let mut launched = BTreeSet::new();
    for n in 0..120 {
        let zone = &zones[n % zones.len()];
        let i = provider
            .launch(&launch_request("big", &format!("w{n}"), &image, zone))
            .await
            .expect("launch");
        launched.insert(i.id);
        // Instances of another pool interleave with the pool's.
        if n % 40 == 0 {
            provider
                .launch(&launch_request("small", &format!("s{n}"), &image, zone))
                .await
                .expect("launch");
        }
    }
    cloud.reset_counters();
    let listed = provider.list(&pool("big")).await.expect("list");
    let ids: BTreeSet<InstanceId> = listed.iter().map(|i| i.id.clone()).collect();
    assert_eq!(ids, launched);
    assert_eq!(listed.len(), 120, "no instance listed twice");
    // 120 instances at 50 a page: three DescribeInstances calls, nothing else.
    assert_eq!(cloud.count(Action::DescribeInstances), 3);
    assert_eq!(cloud.counters().values().sum::<u64>(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_for_uses_the_provider_id_then_the_internal_ip() {
    let cloud = bare_cloud().await;
    let provider = SimProvider::new(cloud.url(), CLUSTER);
    let image = cloud.image_for_version("v1.35.0").expect("image");
    let i = provider
        .launch(&launch_request("general", "n1", &image, "zone-c"))
        .await
        .expect("launch");
    assert_eq!(i.provider_id, format!("sim:///zone-c/{}", i.id));
    let by_id = provider
        .instance_for(&NodeRef {
            name: "x".into(),
            provider_id: Some(i.provider_id.clone()),
            internal_ip: None,
        })
        .await
        .expect("lookup");
    assert_eq!(by_id.map(|f| f.id), Some(i.id.clone()));
    let by_ip = provider
        .instance_for(&NodeRef {
            name: "x".into(),
            provider_id: None,
            internal_ip: i.private_ip.clone(),
        })
        .await
        .expect("lookup");
    assert_eq!(by_ip.map(|f| f.id), Some(i.id.clone()));
    // Another cluster's instance is not found by address.
    let foreign = foreign_instance(&cloud, "general");
    let other = provider
        .instance_for(&NodeRef {
            name: "y".into(),
            provider_id: None,
            internal_ip: foreign.private_ip.clone(),
        })
        .await
        .expect("lookup");
    assert_eq!(other, None);
}

fn small_world(workers: usize) -> WorldConfig {
    WorldConfig {
        cluster_name: "it".into(),
        control_planes: 1,
        pools: vec![PoolSpec {
            name: "general".into(),
            workers,
        }],
        zones: 3,
        version: "v1.35.3".into(),
        timing: Timing::fast(),
        workloads: true,
    }
}

async fn kube_client(world: &World) -> kube::Client {
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(&world.kubeconfig_yaml()).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("client config");
    kube::Client::try_from(config).expect("client")
}

fn ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn world_starts_ready_with_nodes_spread_over_zones() {
    let world = World::start(small_world(6)).await.expect("world starts");
    world
        .wait_ready(Duration::from_secs(60))
        .await
        .expect("world settles");

    let nodes = kube::Api::<Node>::all(kube_client(&world).await)
        .list(&ListParams::default())
        .await
        .expect("nodes over HTTPS");
    assert_eq!(nodes.items.len(), 7);
    assert!(nodes.items.iter().all(ready));
    let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
    for node in &nodes.items {
        let info = node
            .status
            .as_ref()
            .and_then(|s| s.node_info.as_ref())
            .expect("nodeInfo");
        assert_eq!(info.kubelet_version, "v1.35.3");
        let provider_id = node
            .spec
            .as_ref()
            .and_then(|s| s.provider_id.clone())
            .expect("providerID");
        let instance = world
            .provider()
            .instance_for(&NodeRef {
                name: node.metadata.name.clone().unwrap_or_default(),
                provider_id: Some(provider_id),
                internal_ip: None,
            })
            .await
            .expect("lookup")
            .expect("every node has an instance");
        let labels = node.metadata.labels.clone().unwrap_or_default();
        if labels.contains_key("node-role.kubernetes.io/control-plane") {
            continue;
        }
        assert_eq!(
            labels.get("kubesurge.io/pool").map(String::as_str),
            Some("general")
        );
        assert_eq!(instance.tag(tags::POOL), Some("general"));
        assert_eq!(instance.tag(tags::CLUSTER), Some("it"));
        *per_zone.entry(instance.zone).or_default() += 1;
    }
    assert_eq!(
        per_zone.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2]
    );

    // The pool's instances, oldest first, have distinct launch times.
    let mut listed = world
        .provider()
        .list(&pool_of(&world, "general"))
        .await
        .expect("list");
    assert_eq!(listed.len(), 6);
    listed.sort_by_key(|i| i.launched_at);
    let times: BTreeSet<_> = listed.iter().map(|i| i.launched_at).collect();
    assert_eq!(times.len(), 6);
    world.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminating_an_instance_stops_its_kubelet() {
    // Termination slow enough to see the kubelet still running during it.
    let timing = Timing {
        terminate: Duration::from_millis(800),
        ..Timing::fast()
    };
    let world = World::start(WorldConfig {
        workloads: false,
        timing,
        ..small_world(2)
    })
    .await
    .expect("world starts");
    world
        .wait_ready(Duration::from_secs(60))
        .await
        .expect("ready");
    let machine = world
        .cloud
        .machine_of_node("general-1")
        .expect("machine of general-1");
    assert!(world.controllers.kubelets.is_running("general-1"));
    let provider = world.provider();
    let id = InstanceId(machine.instance_id.clone());
    assert_eq!(
        provider.delete(&id).await.expect("delete"),
        DeleteStatus::InProgress
    );
    // Until termination completes, the kubelet keeps running.
    assert!(world.controllers.kubelets.is_running("general-1"));
    world
        .cloud
        .wait_for_machine(&id.0, Duration::from_secs(10), |s| {
            *s == kubesurge_testworld::cloud::MachineStatus::Terminated
        })
        .await
        .expect("terminated");
    assert_eq!(
        provider.delete(&id).await.expect("delete"),
        DeleteStatus::Gone
    );
    assert!(!world.controllers.kubelets.is_running("general-1"));
    assert!(world.controllers.kubelets.is_running("general-2"));
    assert_eq!(provider.get(&id).await.expect("get"), None);
    world.stop();
}

fn pool_of(world: &World, name: &str) -> PoolRef {
    PoolRef {
        cluster: world.config().cluster_name.clone(),
        pool: name.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn world_config_files_are_a_valid_rotation_config() {
    let world = World::start(WorldConfig {
        workloads: false,
        ..small_world(1)
    })
    .await
    .expect("world starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let (kubeconfig, config) = world.write_config_files(dir.path()).expect("files");
    assert_eq!(
        std::fs::read_to_string(&kubeconfig).expect("kubeconfig"),
        world.kubeconfig_yaml()
    );
    let settings = kubesurge::settings::load(
        Some(&config),
        &Default::default(),
        kubesurge::wiring::PROVIDERS,
    )
    .unwrap_or_else(|e| panic!("the world's config does not validate: {e}"));
    assert_eq!(settings.cluster_name.as_deref(), Some("it"));
    let general = settings.pool("general").expect("pool general");
    assert_eq!(general.provider.kind, "sim");
    assert_eq!(
        kubesurge_sim::parse_pool_config(&general.provider.config, &general.provider.path),
        Ok(kubesurge_sim::SimPoolConfig {
            endpoint: world.cloud.url().to_string()
        })
    );
    assert_eq!(
        general.selector,
        BTreeMap::from([("kubesurge.io/pool".to_string(), "general".to_string())])
    );
    world.stop();
}

/// Reads the child's stdout lines on a thread, so the test can time out.
fn stdout_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn sandbox_up_serves_kubectl_until_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubesurge"))
        .args(["sandbox", "up", "--workers", "3", "--zones", "3"])
        .args([
            "--boot-delay",
            "150ms",
            "--pod-start-delay",
            "50ms",
            "--termination-delay",
            "100ms",
        ])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubesurge runs");
    let lines = stdout_lines(&mut child);
    let ready = lines.recv_timeout(Duration::from_secs(90));
    let ready = match ready {
        Ok(line) => line,
        Err(e) => {
            let _ = child.kill();
            panic!("no ready line from `sandbox up`: {e}");
        }
    };
    let kubeconfig = dir.path().join("kubeconfig");
    let config = dir.path().join("kubesurge.yaml");
    assert_eq!(
        ready,
        format!(
            "ready: kubeconfig={} config={}",
            kubeconfig.display(),
            config.display()
        )
    );

    let output = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "nodes", "--no-headers"])
        .output()
        .expect("kubectl runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "kubectl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 4, "{text}");
    assert!(
        rows.iter()
            .all(|r| r.split_whitespace().nth(1) == Some("Ready")),
        "{text}"
    );

    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sandbox did not stop after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    // Nothing but the ready line on stdout.
    assert!(lines.try_recv().is_err());
}
