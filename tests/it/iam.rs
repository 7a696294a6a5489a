//! The iam module's policy proven by running under it, at the level of
//! actions: `kubesurge rotate` of a plain pool and an Auto Scaling group
//! pool (with `updateLaunchTemplate`) on moto calls only actions the
//! policy grants and uses every grant of the statements such a rotation
//! needs; and with the actions of any one of those statements refused (as
//! AWS refuses an action no statement allows) the run fails, naming the
//! refused action.
//!
//! Why the refusal comes from the fault proxy and not from moto's own IAM
//! (`INITIAL_NO_AUTH_ACTION_COUNT`), and what is not proven here (resources
//! and conditions, SSM): see terraform/modules/iam/README.md.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use kubesurge_sim::Timing;
use kubesurge_sim::cloud::state::VERSION_TAG;
use kubesurge_sim::moto::world::LAUNCH_TEMPLATE;
use kubesurge_sim::moto::{Fault, FaultProxy, MotoServer, MotoWorld, MotoWorldConfig};
use kubesurge_sim::world::{PoolSpec, WorldConfig};
use tokio::process::Command;

use serde_json::Value;

use crate::terraform::render_iam_policy;

const CLUSTER: &str = "e2e-iam";
const VERSION: &str = "v1.35.3";
const PLAIN: &str = "plain";
const GROUPED: &str = "grouped";
/// moto's account.
const ACCOUNT: &str = "123456789012";

/// The iam module's policy for this cluster, rendered, with these launch
/// template ids.
fn rendered_policy(region: &str, template_ids: &[String]) -> Value {
    let arns: Vec<String> = template_ids
        .iter()
        .map(|id| format!("arn:aws:ec2:{region}:{ACCOUNT}:launch-template/{id}"))
        .collect();
    render_iam_policy(&serde_json::json!({
        "cluster_name": CLUSTER,
        "region": region,
        "account_id": ACCOUNT,
        "launch_template_arns": arns,
    }))
}

/// One rendered statement: its sid, effect and actions.
struct Granted {
    sid: String,
    effect: String,
    actions: BTreeSet<String>,
}

fn statements(policy: &Value) -> Vec<Granted> {
    policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .map(|s| Granted {
            sid: s["Sid"].as_str().expect("sid").to_string(),
            effect: s["Effect"].as_str().expect("effect").to_string(),
            actions: s["Action"]
                .as_array()
                .expect("actions")
                .iter()
                .map(|a| a.as_str().expect("action").to_string())
                .collect(),
        })
        .collect()
}

/// A world with one worker in a plain pool and one in an Auto Scaling
/// group pool, the tool pointed at it through a proxy that can refuse
/// actions.
struct Run {
    moto: MotoServer,
    proxy: FaultProxy,
    world: MotoWorld,
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    config: PathBuf,
}

impl Run {
    async fn start() -> Run {
        let moto = MotoServer::start().await.expect("moto starts");
        let mut config = MotoWorldConfig::new(WorldConfig {
            cluster_name: CLUSTER.into(),
            control_planes: 1,
            pools: [PLAIN, GROUPED]
                .iter()
                .map(|name| PoolSpec {
                    name: name.to_string(),
                    workers: 1,
                })
                .collect(),
            zones: 1,
            version: VERSION.into(),
            timing: Timing::fast(),
            workloads: true,
        });
        config.auto_scaling_pools = vec![GROUPED.to_string()];
        let world = MotoWorld::start(moto.url(), config)
            .await
            .expect("moto world starts");
        world
            .wait_ready(Duration::from_secs(60))
            .await
            .expect("moto world ready");
        // A rebuilt image of the same Kubernetes version for the group's
        // pool: its launch template still names the old one, so
        // `updateLaunchTemplate` makes a new template version.
        let rebuilt = world
            .ec2
            .register_image(
                &format!("kubesurge-node-{VERSION}-rebuilt"),
                &BTreeMap::from([(VERSION_TAG.to_string(), VERSION.to_string())]),
            )
            .await
            .expect("image");
        let proxy = FaultProxy::start(world.endpoint())
            .await
            .expect("proxy starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let (kubeconfig, config, _) = world
            .write_config_files(dir.path(), proxy.url(), 1)
            .expect("files");
        std::fs::write(&config, rotation_config(&world, &rebuilt)).expect("config");
        Run {
            moto,
            proxy,
            world,
            _dir: dir,
            kubeconfig,
            config,
        }
    }

    /// `kubesurge rotate --all`: whether it succeeded, and what it said.
    async fn rotate(&self) -> (bool, String) {
        let output = tokio::time::timeout(
            Duration::from_secs(120),
            Command::new(env!("CARGO_BIN_EXE_kubesurge"))
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .arg("--config")
                .arg(&self.config)
                .args(["rotate", "--all", "--yes"])
                .env_remove("KUBECONFIG")
                .env_remove("KUBESURGE_CONFIG")
                .env_remove("AWS_PROFILE")
                .envs(self.world.aws_env(self.proxy.url()))
                .env("AWS_CONFIG_FILE", "/nonexistent/kubesurge-test-aws-config")
                .env(
                    "AWS_SHARED_CREDENTIALS_FILE",
                    "/nonexistent/kubesurge-test-aws-credentials",
                )
                .env("AWS_MAX_ATTEMPTS", "2")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("kubesurge finishes in time")
        .expect("kubesurge runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    }

    /// Every action the tool called, as `service:Action`.
    fn called(&self) -> BTreeSet<String> {
        self.proxy
            .calls()
            .iter()
            .map(|c| format!("{}:{}", c.service, c.action))
            .collect()
    }

    /// Refuse every call of these `service:Action`s.
    fn refuse(&self, actions: &BTreeSet<String>) {
        for action in actions {
            let name = action.split(':').nth(1).unwrap_or(action);
            self.proxy.inject(name, usize::MAX, Fault::Deny);
        }
    }

    fn finish(self) {
        self.world.stop();
        drop(self.proxy);
        if let Err(e) = self.moto.stop() {
            panic!("{e}");
        }
    }
}

/// The plain pool launches from the world's template into the subnets it
/// names and finds its image by tag; the group's pool launches from the group's template, with the
/// rebuilt image, and makes it the group's (`updateLaunchTemplate`).
fn rotation_config(world: &MotoWorld, rebuilt_image: &str) -> String {
    let region = &world.config().region;
    let group = &world.seeded.groups[GROUPED];
    let subnets: Vec<&str> = world.seeded.subnets.values().map(String::as_str).collect();
    let subnets = subnets.join(", ");
    format!(
        "apiVersion: kubesurge.io/v1alpha1\nkind: RotationConfig\ncluster:\n  name: {CLUSTER}\npools:\n\
         - name: {PLAIN}\n    selector: {{ kubesurge.io/pool: {PLAIN} }}\n    provider: aws\n    aws:\n      region: {region}\n      launchTemplate: {{ name: {LAUNCH_TEMPLATE} }}\n      subnets: [{subnets}]\n      image:\n        owners: [self]\n        filters: {{ \"tag:{VERSION_TAG}\": \"{{version}}\" }}\n    maxSurge: 1\n    maxUnavailable: 0\n    nodeLabels: {{ kubesurge.io/pool: {PLAIN} }}\n\
         - name: {GROUPED}\n    selector: {{ kubesurge.io/pool: {GROUPED} }}\n    provider: aws\n    aws:\n      region: {region}\n      autoScalingGroup: {group}\n      updateLaunchTemplate: true\n      image: {{ id: {rebuilt_image} }}\n    maxSurge: 1\n    maxUnavailable: 0\n    nodeLabels: {{ kubesurge.io/pool: {GROUPED} }}\n\
         drain: {{ timeout: 60s, onTimeout: fail, unmanagedPods: delete }}\njoin: {{ tokenTTL: 2m }}\nhealth: {{ newNodeTimeout: 30s, settle: 1s }}\n"
    )
    .replace("\n- name:", "\n  - name:")
}

/// Actions AWS authorizes inside another call, never called on their own:
/// kubesurge tags in the RunInstances request, which AWS authorizes as
/// ec2:CreateTags with ec2:CreateAction=RunInstances
/// (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/supported-iam-actions-tagging.html).
const IMPLIED: &[&str] = &["ec2:CreateTags"];

/// The statements a rotation needs: every Allow statement but SSM's (no
/// control plane in moto: see the README) and PassRole's (the world's
/// templates name no instance profile).
fn rotation_statements(policy: &Value) -> Vec<(String, BTreeSet<String>)> {
    statements(policy)
        .into_iter()
        .filter(|s| s.effect == "Allow")
        .filter(|s| {
            !s.actions
                .iter()
                .any(|a| a.starts_with("ssm:") || a.starts_with("iam:"))
        })
        .map(|s| (s.sid, s.actions.into_iter().collect()))
        .collect()
}

/// The statements whose actions no other statement grants and that are
/// called on their own: refusing those actions is removing the statement.
/// The other statements grant `ec2:RunInstances` on one kind of resource
/// each (at the level of actions, removing one of them cannot be told from
/// removing all of them), or `ec2:CreateTags` inside the launch
/// ([`IMPLIED`]).
fn statements_with_own_actions(policy: &Value) -> Vec<(String, BTreeSet<String>)> {
    let all = rotation_statements(policy);
    all.iter()
        .filter_map(|(sid, actions)| {
            let own: BTreeSet<String> = actions
                .iter()
                .filter(|a| !IMPLIED.contains(&a.as_str()))
                .filter(|a| {
                    all.iter()
                        .all(|(other, theirs)| other == sid || !theirs.contains(*a))
                })
                .cloned()
                .collect();
            (!own.is_empty()).then(|| (sid.clone(), own))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_calls_only_what_the_policy_grants_and_every_grant_it_needs() {
    let run = Run::start().await;
    let (ok, text) = run.rotate().await;
    assert!(
        ok,
        "the rotation under the policy's actions failed:\n{text}"
    );
    let called = run.called();

    // The policy with the world's templates: the plain pool's and the
    // group's.
    let mut templates = vec![run.world.seeded.launch_template_id.clone()];
    let group = run
        .world
        .autoscaling
        .group(&run.world.seeded.groups[GROUPED])
        .await
        .expect("describe")
        .expect("group");
    templates.extend(group.launch_template.map(|(id, _)| id));
    let policy = rendered_policy(&run.world.config().region, &templates);
    let granted: BTreeSet<String> = statements(&policy)
        .into_iter()
        .filter(|s| s.effect == "Allow")
        .flat_map(|s| s.actions)
        .collect();
    let ungranted: Vec<&String> = called.difference(&granted).collect();
    assert!(
        ungranted.is_empty(),
        "the rotation called actions the policy does not grant: {ungranted:?}"
    );

    // Every action of the statements a rotation needs was called, but the
    // implied ones and ec2:DescribeLaunchTemplates: that one is called for
    // a group whose launch template is named by name (the world's groups
    // name theirs by id).
    let needed: BTreeSet<String> = rotation_statements(&policy)
        .into_iter()
        .flat_map(|(_, actions)| actions)
        .filter(|a| !IMPLIED.contains(&a.as_str()) && a != "ec2:DescribeLaunchTemplates")
        .collect();
    let unused: Vec<&String> = needed.difference(&called).collect();
    assert!(
        unused.is_empty(),
        "the policy grants what no rotation calls: {unused:?} (called: {called:?})"
    );
    run.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_any_one_statement_a_rotation_fails_naming_the_refused_action() {
    // Which statements there are does not depend on the template ids.
    let policy = rendered_policy(
        kubesurge_sim::moto::world::DEFAULT_REGION,
        &["lt-0123456789abcdef0".to_string()],
    );
    let removable = statements_with_own_actions(&policy);
    let sids: BTreeSet<&str> = removable.iter().map(|(sid, _)| sid.as_str()).collect();
    assert_eq!(
        sids,
        BTreeSet::from([
            "DescribeOnlyAllowsAnyResource",
            "RecordRunsInKubesurgeTagsOfThisClustersGroups",
            "RotateOnlyThisClustersGroups",
            "TerminateOnlyThisClustersPoolInstances",
            "VersionOnlyPoolLaunchTemplates",
        ]),
        "{removable:#?}"
    );
    // The four statements that grant ec2:RunInstances, removed together.
    let launch: BTreeSet<String> = BTreeSet::from(["ec2:RunInstances".to_string()]);
    let mut cases = removable;
    cases.push(("every RunInstances statement".to_string(), launch));

    // Two worlds at a time: the machine has two cores.
    for pair in cases.chunks(2) {
        let runs = pair.iter().map(|(sid, refused)| async move {
            let run = Run::start().await;
            run.refuse(refused);
            let (ok, text) = run.rotate().await;
            let refused_calls: Vec<String> = run
                .proxy
                .calls()
                .iter()
                .filter(|c| c.injected)
                .map(|c| format!("{}:{}", c.service, c.action))
                .collect();
            run.finish();
            (sid.clone(), refused.clone(), ok, text, refused_calls)
        });
        for (sid, refused, ok, text, refused_calls) in futures::future::join_all(runs).await {
            assert!(
                !refused_calls.is_empty(),
                "without {sid} ({refused:?}) the rotation never called them:\n{text}"
            );
            assert!(
                !ok,
                "without {sid} ({refused:?}) the rotation succeeded:\n{text}"
            );
            assert!(
                refused.iter().any(|action| text.contains(action.as_str())),
                "without {sid} the run's failure names none of {refused:?}:\n{text}"
            );
        }
    }
}
