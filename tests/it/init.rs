//! `kubesurge init` (the real binary) on moto: a cluster whose workers
//! were made outside kubesurge — an Auto Scaling group and a set launched
//! from a launch template, none tagged for kubesurge — and one node whose
//! instance is gone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use kubesurge_aws::ClientOptions;
use kubesurge_aws::client::load_sdk_config;
use kubesurge_provider::tags;
use kubesurge_sim::Timing;
use kubesurge_sim::controllers::NodeSpec;
use kubesurge_sim::moto::ec2::Params;
use kubesurge_sim::moto::{Ec2Instance, FaultProxy, MotoServer, MotoWorld, MotoWorldConfig};
use kubesurge_sim::resources::NODES;
use kubesurge_sim::world::WorldConfig;
use serde_json::Value;
use tokio::process::Command;

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

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
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
    let ghost = world
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
    nodes.insert("ghost-1".into(), ghost.clone());

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
    world
        .ec2
        .terminate(std::slice::from_ref(&ghost.id))
        .await
        .expect("terminate");
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
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubesurge"));
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env_remove("KUBECONFIG")
            .env_remove("KUBESURGE_CONFIG")
            .env_remove("AWS_PROFILE")
            .envs(self.world.aws_env(self.proxy.url()))
            .env("AWS_CONFIG_FILE", "/nonexistent/kubesurge-test-aws-config")
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/kubesurge-test-aws-credentials",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        tokio::time::timeout(Duration::from_secs(120), cmd.output())
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
            .map(|c| c.action)
            .filter(|a| {
                !(a.starts_with("Describe") || a.starts_with("List") || a.starts_with("Get"))
            })
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
