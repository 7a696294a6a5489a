//! `kubesurge init` (the real binary) on moto: a cluster whose workers
//! were made outside kubesurge — an Auto Scaling group and a set launched
//! from a launch template, none tagged for kubesurge — and one node whose
//! instance is gone. And the path a team takes with such a fleet: `init
//! --write --tag`, then `check`, then `rotate --all`.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use kubesurge_aws::ClientOptions;
use kubesurge_aws::client::load_sdk_config;
use kubesurge_provider::tags;
use kubesurge_testworld::Timing;
use kubesurge_testworld::cloud::MachineStatus;
use kubesurge_testworld::controllers::NodeSpec;
use kubesurge_testworld::moto::ec2::Params;
use kubesurge_testworld::moto::{Ec2Instance, FaultProxy, MotoServer, MotoWorld, MotoWorldConfig};
use kubesurge_testworld::observer::{Observer, PoolFloor};
use kubesurge_testworld::resources::NODES;
use kubesurge_testworld::world::WorldConfig;
use serde_json::Value;

use crate::moto_env::{FAST_RUN_SETTINGS, kubesurge_on_moto, text};

const CLUSTER: &str = "e2e-init";
const VERSION: &str = "v1.35.3";
const ASG: &str = "batch-asg";
const WEB_TEMPLATE: &str = "web-template";
const NODEGROUP_LABEL: &str = "example.com/nodegroup";

struct Harness {
    moto: MotoServer,
    proxy: FaultProxy,
    world: MotoWorld,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    /// Instances by node name.
    nodes: BTreeMap<String, Ec2Instance>,
    asg_instances: Vec<String>,
}

/// A launch template with the world's image for VERSION.
async fn template(world: &MotoWorld, name: &str) {
    world
        .ec2
        .call(
            "CreateLaunchTemplate",
            Params::new()
                .set("LaunchTemplateName", name)
                .set("LaunchTemplateData.InstanceType", "t3.medium")
                .set(
                    "LaunchTemplateData.ImageId",
                    world.seeded.images[VERSION].clone(),
                ),
        )
        .await
        .expect("launch template");
}

async fn start() -> Harness {
    start_with(true).await
}

/// The fleet, with a node whose instance is gone when `with_ghost`.
async fn start_with(with_ghost: bool) -> Harness {
    let moto = MotoServer::start().await.expect("moto starts");
    let world = MotoWorld::start(
        moto.url(),
        MotoWorldConfig::new(WorldConfig {
            cluster_name: CLUSTER.into(),
            control_planes: 1,
            pools: Vec::new(),
            zones: 2,
            version: VERSION.into(),
            timing: Timing::fast(),
            workloads: false,
        }),
    )
    .await
    .expect("moto world starts");
    let subnets: Vec<String> = world.seeded.subnets.values().cloned().collect();
    let mut nodes = BTreeMap::new();

    // Two web nodes launched from a template, untagged.
    template(&world, WEB_TEMPLATE).await;
    for (i, subnet) in subnets.iter().enumerate() {
        let root = world
            .ec2
            .call(
                "RunInstances",
                Params::new()
                    .set("LaunchTemplate.LaunchTemplateName", WEB_TEMPLATE)
                    .set("SubnetId", subnet.clone())
                    .set("MinCount", "1")
                    .set("MaxCount", "1"),
            )
            .await
            .expect("web instance");
        let id = root.items("instancesSet")[0]
            .text_at("instanceId")
            .expect("id")
            .to_string();
        let instance = world.ec2.instance(&id).await.unwrap().expect("in moto");
        nodes.insert(format!("web-{}", i + 1), instance);
    }

    // An Auto Scaling group of two, from its own template.
    template(&world, "batch-template").await;
    let sdk = load_sdk_config(
        Some(&world.config().region),
        &ClientOptions {
            endpoint_url: Some(world.ec2.url().to_string()),
            static_credentials: Some(("testing".into(), "testing".into())),
            ..ClientOptions::default()
        },
    )
    .await;
    let autoscaling = aws_sdk_autoscaling::Client::new(&sdk);
    autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name(ASG)
        .launch_template(
            aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                .launch_template_name("batch-template")
                .version("$Default")
                .build(),
        )
        .min_size(2)
        .max_size(4)
        .desired_capacity(2)
        .vpc_zone_identifier(subnets.join(","))
        .send()
        .await
        .expect("Auto Scaling group");
    let group = autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(ASG)
        .send()
        .await
        .expect("describe group");
    let asg_instances: Vec<String> = group.auto_scaling_groups()[0]
        .instances()
        .iter()
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect();
    assert_eq!(asg_instances.len(), 2, "{group:?}");
    for (i, id) in asg_instances.iter().enumerate() {
        let instance = world.ec2.instance(id).await.unwrap().expect("in moto");
        nodes.insert(format!("batch-{}", i + 1), instance);
    }

    // A node whose instance is gone.
    let mut ghost = None;
    if with_ghost {
        let launched = world
            .ec2
            .run_instances(
                &world.seeded.images[VERSION],
                &subnets[0],
                1,
                &BTreeMap::from([("Name".to_string(), "ghost-1".to_string())]),
            )
            .await
            .expect("ghost instance")
            .remove(0);
        ghost = Some(launched);
    }
    if let Some(ghost) = &ghost {
        nodes.insert("ghost-1".into(), ghost.clone());
    }

    for (name, instance) in &nodes {
        let mut labels = BTreeMap::new();
        if name.starts_with("web-") {
            labels.insert(NODEGROUP_LABEL.to_string(), "web".to_string());
        }
        world.machines.add_prejoined(
            instance,
            NodeSpec {
                name: name.clone(),
                kubelet_version: VERSION.into(),
                provider_id: instance.provider_id(),
                zone: instance.zone.clone(),
                internal_ip: instance.private_ip.clone().unwrap_or_default(),
                labels,
                taints: Vec::new(),
                max_pods: 110,
                control_plane: false,
                cloud: Default::default(),
            },
        );
    }
    // Straight to moto: the ghost's kubelet is not told.
    if let Some(ghost) = &ghost {
        world
            .ec2
            .terminate(std::slice::from_ref(&ghost.id))
            .await
            .expect("terminate");
    }
    world.machines.watch(Duration::from_millis(200));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (registered, _) = world.world.store.list(&NODES, None, |_| true);
        if registered.len() == 1 + nodes.len() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} nodes registered",
            registered.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let proxy = FaultProxy::start(world.endpoint())
        .await
        .expect("proxy starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, world.world.kubeconfig_yaml()).expect("kubeconfig");
    Harness {
        moto,
        proxy,
        world,
        dir,
        kubeconfig,
        nodes,
        asg_instances,
    }
}

impl Harness {
    async fn run(&self, args: &[&str]) -> Output {
        tokio::time::timeout(
            Duration::from_secs(240),
            kubesurge_on_moto(&self.world, self.proxy.url(), &self.kubeconfig)
                .args(args)
                .output(),
        )
        .await
        .expect("kubesurge finishes in time")
        .expect("kubesurge runs")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Actions the tool called that change something.
    fn mutations(&self) -> Vec<String> {
        self.proxy
            .calls()
            .into_iter()
            .filter(|c| !c.changes_nothing())
            .map(|c| c.action)
            .collect()
    }

    fn finish(self) {
        self.world.stop();
        drop(self.proxy);
        if let Err(e) = self.moto.stop() {
            panic!("{e}");
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).expect("written")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_proposes_pools_and_image_rules_then_tags_what_it_listed() {
    let h = start().await;

    // Read-only: the proposal on stdout.
    let output = h.run(&["init"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    let config = String::from_utf8_lossy(&output.stdout).to_string();
    for expected in [
        "kind: RotationConfig",
        &format!("name: {CLUSTER}"),
        &format!("- name: {ASG}"),
        "- name: web-template",
        "provider: aws",
        "region: us-east-1",
        "\"tag:kubernetes-version\": \"{version}\"",
        "Auto Scaling group batch-asg",
        &format!("autoScalingGroup: {ASG}"),
    ] {
        assert!(config.contains(expected), "{expected:?} in:\n{config}");
    }
    // The web nodes keep their own label; the group's nodes share none.
    assert!(
        config.contains(&format!("selector: {{ {NODEGROUP_LABEL}: web }}")),
        "{config}"
    );
    assert!(
        config.contains(&format!("selector: {{ kubesurge.io/pool: {ASG} }}")),
        "{config}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("not mapped: node ghost-1") && stderr.contains("terminated"),
        "the unmappable node and why: {stderr}"
    );
    assert!(!config.contains("- name: ghost"), "never guessed: {config}");
    assert_eq!(h.mutations(), Vec::<String>::new(), "read-only");

    // Written, then accepted by plan as is.
    let written = h.path("kubesurge.yaml");
    let output = h.run(&["init", "--write", written.to_str().unwrap()]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(read(&written), config, "the same proposal");
    let output = h
        .run(&["plan", "--config", written.to_str().unwrap()])
        .await;
    assert_eq!(output.status.code(), Some(0), "plan: {}", text(&output));
    // --write never overwrites.
    let output = h.run(&["init", "--write", written.to_str().unwrap()]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert_eq!(h.mutations(), Vec::<String>::new(), "still read-only");

    // Before tagging, a run refuses the untagged instances.
    let output = h
        .run(&[
            "--config",
            written.to_str().unwrap(),
            "rotate",
            "--all",
            "--dry-run",
            "--yes",
        ])
        .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("has no kubesurge.io/cluster tag"),
        "{}",
        text(&output)
    );

    // --tag: exactly what it lists.
    let tagged_config = h.path("tagged.yaml");
    let output = h
        .run(&[
            "init",
            "--write",
            tagged_config.to_str().unwrap(),
            "--tag",
            "--yes",
        ])
        .await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    let listed: Vec<&str> = all
        .lines()
        .filter(|l| l.starts_with("  aws ") || l.starts_with("  node "))
        .collect();
    assert_eq!(
        listed.len(),
        4 + 1 + 2,
        "4 instances, 1 group, 2 node labels: {all}"
    );
    let creates = h.mutations();
    assert_eq!(
        creates.iter().filter(|a| *a == "CreateTags").count(),
        2,
        "one call per tag set (a pool): {creates:?}"
    );
    assert_eq!(
        creates
            .iter()
            .filter(|a| *a == "CreateOrUpdateTags")
            .count(),
        1,
        "{creates:?}"
    );
    assert_eq!(creates.len(), 3, "nothing else changed: {creates:?}");
    for (node, instance) in &h.nodes {
        let now = h.world.ec2.instance(&instance.id).await.unwrap().unwrap();
        if node == "ghost-1" {
            assert_eq!(now.tag(tags::CLUSTER), None, "the ghost is left alone");
            continue;
        }
        let pool = if node.starts_with("web-") {
            "web-template"
        } else {
            ASG
        };
        assert!(
            listed.iter().any(|l| l.contains(&instance.id)),
            "{} listed: {listed:?}",
            instance.id
        );
        assert_eq!(now.tag(tags::CLUSTER), Some(CLUSTER), "{node}");
        assert_eq!(now.tag(tags::POOL), Some(pool), "{node}");
    }
    assert!(
        h.asg_instances
            .iter()
            .all(|id| listed.iter().any(|l| l.contains(id)))
    );
    let (nodes, _) = h.world.world.store.list(&NODES, None, |_| true);
    for n in nodes {
        let name = n["metadata"]["name"].as_str().unwrap_or_default();
        let label = n
            .pointer("/metadata/labels/kubesurge.io~1pool")
            .and_then(Value::as_str);
        if name.starts_with("batch-") {
            assert_eq!(label, Some(ASG), "{name} labelled");
        } else {
            assert_eq!(label, None, "{name} not labelled");
        }
    }

    // Now a run's mapping preflight accepts every node.
    let output = h
        .run(&[
            "--config",
            tagged_config.to_str().unwrap(),
            "rotate",
            "--all",
            "--dry-run",
            "--yes",
            "-o",
            "json",
        ])
        .await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    assert_eq!(
        report["slots"].as_array().map(Vec::len),
        Some(4),
        "{report}"
    );
    h.finish();
}

/// The path a team takes with a fleet made outside kubesurge: `init
/// --write --tag`, then `check` (which passes, changing nothing), then
/// `rotate --all`, which replaces every worker of the plain pool and of the
/// Auto Scaling group pool; the group's sizes and suspended processes end
/// as they were, every instance of its pool is its member and no other is,
/// and the observer sees no §8.3 violation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untagged_fleet_is_initialised_checked_and_rotated() {
    let h = start_with(false).await;
    let group = |h: &Harness| {
        let autoscaling = h.world.autoscaling.clone();
        async move {
            autoscaling
                .group(ASG)
                .await
                .expect("describe")
                .expect("the group")
        }
    };
    let before = group(&h).await;
    let config = h.path("kubesurge.yaml");
    let output = h
        .run(&[
            "init",
            "--write",
            config.to_str().unwrap(),
            "--tag",
            "--yes",
        ])
        .await;
    assert_eq!(output.status.code(), Some(0), "init: {}", text(&output));
    let mut yaml = read(&config);
    yaml.push_str(FAST_RUN_SETTINGS);
    std::fs::write(&config, yaml).expect("config");
    let tagged = group(&h).await;
    assert_eq!(tagged.settings(), before.settings(), "init changes no size");

    let observer = Observer::attach(&h.world.world.store);
    observer.set_pool_floors(vec![
        PoolFloor {
            name: WEB_TEMPLATE.into(),
            selector: BTreeMap::from([(NODEGROUP_LABEL.to_string(), "web".to_string())]),
            floor: 2,
        },
        PoolFloor {
            name: ASG.into(),
            selector: BTreeMap::from([(tags::POOL.to_string(), ASG.to_string())]),
            floor: 2,
        },
    ]);

    // check: every line passes, and it changes nothing in the cloud.
    h.proxy.reset_calls();
    let output = h
        .run(&["--config", config.to_str().unwrap(), "check", "-o", "json"])
        .await;
    let said = text(&output);
    assert_eq!(output.status.code(), Some(0), "check: {said}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let lines = report["lines"].as_array().cloned().unwrap_or_default();
    assert!(lines.iter().all(|l| l["status"] == "pass"), "{said}");
    for check in ["mapping", "permission", "room", "rbac"] {
        assert!(
            lines.iter().any(|l| l["check"] == check),
            "a {check} line: {said}"
        );
    }
    assert!(
        lines.iter().any(|l| l["check"] == "room"
            && l["subject"] == format!("pool {ASG}: Auto Scaling group {ASG}")),
        "the group's headroom: {said}"
    );
    let calls = h.proxy.calls();
    for call in &calls {
        assert!(
            call.changes_nothing(),
            "check made a mutating call: {call:?} in {calls:?}"
        );
    }

    let output = h
        .run(&[
            "--config",
            config.to_str().unwrap(),
            "rotate",
            "--all",
            "--yes",
            "-o",
            "json",
        ])
        .await;
    assert_eq!(output.status.code(), Some(0), "rotate: {}", text(&output));

    // Every worker replaced.
    let all = h.world.ec2.describe_instances(&[]).await.expect("describe");
    for (node, old) in &h.nodes {
        let now = all.iter().find(|i| i.id == old.id).expect("still listed");
        assert_eq!(now.state, "terminated", "{node}'s instance");
    }
    let live: Vec<&Ec2Instance> = all.iter().filter(|i| i.state != "terminated").collect();
    assert_eq!(
        live.len(),
        h.nodes.len(),
        "one live instance per worker: {live:#?}"
    );
    for new in &live {
        assert_eq!(new.tag(tags::CLUSTER), Some(CLUSTER), "{}", new.id);
        let old = new.tag(tags::REPLACES).expect("launched by kubesurge");
        assert!(h.nodes.contains_key(old), "{} replaces {old}", new.id);
        let machine = h.world.machines.machine(&new.id).expect("a machine");
        assert_eq!(machine.status, MachineStatus::Joined, "{}", new.id);
    }
    let (nodes, _) = h.world.world.store.list(&NODES, None, |_| true);
    let names: BTreeSet<&str> = nodes
        .iter()
        .filter_map(|n| n.pointer("/metadata/name").and_then(Value::as_str))
        .collect();
    for old in h.nodes.keys() {
        assert!(
            !names.contains(old.as_str()),
            "old worker {old} is still a node"
        );
    }

    // The group as it was; its members exactly the live workers of its
    // pool, and no other instance in it.
    let after = group(&h).await;
    assert_eq!(after.settings(), before.settings(), "the group's sizes");
    assert_eq!(after.tags, tagged.tags, "no record left on the group");
    let of_group: BTreeSet<String> = live
        .iter()
        .filter(|i| i.tag(tags::POOL) == Some(ASG))
        .map(|i| i.id.clone())
        .collect();
    assert_eq!(of_group.len(), 2, "{live:#?}");
    assert_eq!(
        after.members, of_group,
        "the group holds its pool's workers"
    );

    let violations = observer.violations();
    assert!(
        violations.is_empty(),
        "invariant violations: {violations:#?}"
    );
    h.finish();
}
