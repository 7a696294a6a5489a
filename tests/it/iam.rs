//! The iam module's policy proven by running under it: `kubesurge rotate`
//! of a plain pool and an Auto Scaling group pool (with
//! `updateLaunchTemplate`) on moto, every call evaluated against the
//! rendered policy (actions, resource ARNs and the condition keys it
//! uses, `kubesurge_testworld::moto::iam`), succeeds, calls only actions the
//! policy grants and uses every grant such a rotation needs; without any
//! one of those statements the run fails, naming the refused action. The
//! same for `kubesurge upgrade` with `controlPlane.exec: ssm`, its
//! control-plane scripts run on the machine by the moto world's SSM agent
//! (`kubesurge_testworld::moto::ssm_agent`), and the SSM statements.
//!
//! The world's launch templates name an instance profile, so every launch
//! passes its role (`iam:PassRole`); its images are its own account's, so
//! `image_owner_account_ids` binds (`ec2:Owner`).
//!
//! Why the evaluation is the fault proxy's and not moto's own IAM
//! (`INITIAL_NO_AUTH_ACTION_COUNT`): see terraform/modules/iam/README.md.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use kubesurge_sim::api::VERSION_TAG;
use kubesurge_testworld::Timing;
use kubesurge_testworld::moto::ec2::Params;
use kubesurge_testworld::moto::iam::{PRINCIPAL, Refusal};
use kubesurge_testworld::moto::world::{LAUNCH_TEMPLATE, NODE_ROLE};
use kubesurge_testworld::moto::{
    Canned, Decision, Ec2, Fault, FaultProxy, IamGate, MotoServer, MotoWorld, MotoWorldConfig,
    Policy,
};
use kubesurge_testworld::world::{PoolSpec, WorldConfig};
use tokio::process::Command;

use serde_json::Value;

use crate::terraform::render_iam_policy;

const CLUSTER: &str = "e2e-iam";
const VERSION: &str = "v1.35.3";
/// The next minor, what the upgrades go to.
const TO: &str = "v1.36.0";
const PLAIN: &str = "plain";
const GROUPED: &str = "grouped";
/// moto's account.
const ACCOUNT: &str = "123456789012";

/// The iam module's policy for this cluster, rendered, with these launch
/// template ids.
fn rendered_policy(region: &str, template_ids: &[String]) -> Value {
    rendered_policy_with_image_owner(region, template_ids, ACCOUNT)
}

/// [`rendered_policy`] allowing only images of `image_owner`.
fn rendered_policy_with_image_owner(
    region: &str,
    template_ids: &[String],
    image_owner: &str,
) -> Value {
    let arns: Vec<String> = template_ids
        .iter()
        .map(|id| format!("arn:aws:ec2:{region}:{ACCOUNT}:launch-template/{id}"))
        .collect();
    render_iam_policy(&serde_json::json!({
        "cluster_name": CLUSTER,
        "region": region,
        "account_id": ACCOUNT,
        "launch_template_arns": arns,
        // The world's credentials, which `check` simulates.
        "principal_arns": [PRINCIPAL],
        // The role of the instance profile the world's templates name.
        "node_role_arn": format!("arn:aws:iam::{ACCOUNT}:role/{NODE_ROLE}"),
        // The world registers its images in its own account.
        "image_owner_account_ids": [image_owner],
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
/// group pool, the tool pointed at it through a proxy that evaluates every
/// call against the rendered policy.
struct Run {
    moto: MotoServer,
    proxy: FaultProxy,
    gate: Arc<IamGate>,
    /// The rendered policy, with the world's launch templates.
    policy: Value,
    world: MotoWorld,
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    config: PathBuf,
}

impl Run {
    /// A world whose group is tagged for the cluster.
    async fn start() -> Run {
        Run::start_with(Some(CLUSTER)).await
    }

    /// A world whose group carries `kubesurge.io/cluster = group_cluster`
    /// (no such tag for `None`).
    async fn start_with(group_cluster: Option<&str>) -> Run {
        Run::start_for(group_cluster, Purpose::Rotation).await
    }

    /// A world for `purpose` whose group carries `kubesurge.io/cluster =
    /// group_cluster` (no such tag for `None`).
    async fn start_for(group_cluster: Option<&str>, purpose: Purpose) -> Run {
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
        if purpose == Purpose::Upgrade {
            config.extra_versions = vec![TO.to_string()];
            config.control_plane_instances = true;
        }
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
        // The group tagged for the cluster, as `kubesurge init --tag` does.
        let group = &world.seeded.groups[GROUPED];
        if let Some(cluster) = group_cluster {
            Ec2::for_service(
                moto.url(),
                &world.config().region,
                "autoscaling",
                "2011-01-01",
            )
            .call(
                "CreateOrUpdateTags",
                Params::new()
                    .set("Tags.member.1.ResourceId", group.as_str())
                    .set("Tags.member.1.ResourceType", "auto-scaling-group")
                    .set("Tags.member.1.Key", "kubesurge.io/cluster")
                    .set("Tags.member.1.Value", cluster)
                    .set("Tags.member.1.PropagateAtLaunch", "false"),
            )
            .await
            .expect("tag the group");
        }
        let mut templates = vec![world.seeded.launch_template_id.clone()];
        let seeded_group = world
            .autoscaling
            .group(group)
            .await
            .expect("describe")
            .expect("group");
        templates.extend(seeded_group.launch_template.map(|(id, _)| id));
        let policy = rendered_policy(&world.config().region, &templates);
        let gate = Arc::new(IamGate::new(
            moto.url(),
            Policy::from_json(&policy).expect("the rendered policy"),
        ));
        let proxy = FaultProxy::start_gated(world.endpoint(), gate.clone())
            .await
            .expect("proxy starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let (kubeconfig, config, _) = world
            .write_config_files(dir.path(), proxy.url(), 1)
            .expect("files");
        let config_text = match purpose {
            Purpose::Rotation => rotation_config(&world, &format!("{{ id: {rebuilt} }}"), ""),
            // Both pools find the target's image by its tag; the control
            // plane is reached through SSM.
            Purpose::Upgrade => rotation_config(
                &world,
                &format!(
                    "{{ owners: [self], filters: {{ \"tag:{VERSION_TAG}\": \"{{version}}\" }} }}"
                ),
                "controlPlane:\n  exec: ssm\n",
            ),
        };
        std::fs::write(&config, config_text).expect("config");
        Run {
            moto,
            proxy,
            gate,
            policy,
            world,
            _dir: dir,
            kubeconfig,
            config,
        }
    }

    /// `kubesurge upgrade --to TO`: whether it succeeded, and what it said.
    async fn upgrade(&self) -> (bool, String) {
        self.kubesurge(&["upgrade", "--to", TO, "--yes"]).await
    }

    /// `kubesurge rotate --all`: whether it succeeded, and what it said.
    async fn rotate(&self) -> (bool, String) {
        self.kubesurge(&["rotate", "--all", "--yes"]).await
    }

    /// `kubesurge ARGS` against the world through the gate.
    async fn kubesurge(&self, args: &[&str]) -> (bool, String) {
        let output = tokio::time::timeout(
            Duration::from_secs(120),
            Command::new(env!("CARGO_BIN_EXE_kubesurge"))
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .arg("--config")
                .arg(&self.config)
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

    /// Evaluate from now on against the policy without statement `sid`.
    fn remove_statement(&self, sid: &str) {
        let policy = Policy::from_json(&self.policy).expect("the rendered policy");
        self.gate.set_policy(policy.without(sid));
    }

    fn finish(self) {
        self.world.stop();
        drop(self.proxy);
        if let Err(e) = self.moto.stop() {
            panic!("{e}");
        }
    }
}

/// What a world is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    /// `kubesurge rotate`: the control plane stays out of reach.
    Rotation,
    /// `kubesurge upgrade --to TO`: the control-plane machines are EC2
    /// instances (tagged for the cluster's control plane) whose SSM agent
    /// runs the upgrade's scripts; images of TO exist.
    Upgrade,
}

/// The plain pool launches from the world's template into the subnets it
/// names and finds its image by tag; the group's pool launches from the
/// group's template, with `grouped_image` (a YAML flow mapping), and makes
/// it the group's (`updateLaunchTemplate`). `control_plane`: the
/// `controlPlane` section, if any.
fn rotation_config(world: &MotoWorld, grouped_image: &str, control_plane: &str) -> String {
    let region = &world.config().region;
    let group = &world.seeded.groups[GROUPED];
    let subnets: Vec<&str> = world.seeded.subnets.values().map(String::as_str).collect();
    let subnets = subnets.join(", ");
    format!(
        "apiVersion: kubesurge.io/v1alpha1\nkind: RotationConfig\ncluster:\n  name: {CLUSTER}\n{control_plane}pools:\n\
         - name: {PLAIN}\n    selector: {{ kubesurge.io/pool: {PLAIN} }}\n    provider: aws\n    aws:\n      region: {region}\n      launchTemplate: {{ name: {LAUNCH_TEMPLATE} }}\n      subnets: [{subnets}]\n      image:\n        owners: [self]\n        filters: {{ \"tag:{VERSION_TAG}\": \"{{version}}\" }}\n    maxSurge: 1\n    maxUnavailable: 0\n    nodeLabels: {{ kubesurge.io/pool: {PLAIN} }}\n\
         - name: {GROUPED}\n    selector: {{ kubesurge.io/pool: {GROUPED} }}\n    provider: aws\n    aws:\n      region: {region}\n      autoScalingGroup: {group}\n      updateLaunchTemplate: true\n      image: {grouped_image}\n    maxSurge: 1\n    maxUnavailable: 0\n    nodeLabels: {{ kubesurge.io/pool: {GROUPED} }}\n\
         drain: {{ timeout: 60s, onTimeout: fail, unmanagedPods: delete }}\njoin: {{ tokenTTL: 2m }}\nhealth: {{ newNodeTimeout: 30s, settle: 1s }}\n"
    )
    .replace("\n- name:", "\n  - name:")
}

/// Actions AWS authorizes inside another call, never called on their own:
/// kubesurge tags in the RunInstances request, which AWS authorizes as
/// ec2:CreateTags with ec2:CreateAction=RunInstances
/// (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/supported-iam-actions-tagging.html).
/// Likewise iam:PassRole, for the role of the instance profile a launch
/// template names (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/iam-roles-for-amazon-ec2.html#permission-to-pass-iam-roles).
const IMPLIED: &[&str] = &["ec2:CreateTags", "iam:PassRole"];

/// Actions only `kubesurge check` makes: the policy simulator, the EC2
/// quotas and the instance types' vCPUs.
const CHECK_ONLY: &[&str] = &[
    "iam:SimulatePrincipalPolicy",
    "servicequotas:GetServiceQuota",
    "servicequotas:GetAWSDefaultServiceQuota",
    "ec2:DescribeInstanceTypes",
];

/// The statements a rotation needs: every Allow statement but SSM's (a
/// rotation reaches no control plane; the upgrade through SSM proves
/// them) and those of actions only `check` makes.
fn rotation_statements(policy: &Value) -> Vec<(String, BTreeSet<String>)> {
    statements(policy)
        .into_iter()
        .filter(|s| s.effect == "Allow")
        .filter(|s| {
            !s.actions.iter().any(|a| a.starts_with("ssm:"))
                && !s.actions.iter().all(|a| CHECK_ONLY.contains(&a.as_str()))
        })
        .map(|s| (s.sid, s.actions.into_iter().collect()))
        .collect()
}

/// Actions AWS allows every principal: "No permissions are required to
/// perform this operation" (GetCallerIdentity, AWS STS API Reference).
const NEEDS_NO_PERMISSION: &[&str] = &["sts:GetCallerIdentity"];

/// Every action `called` is one an Allow statement of `policy` grants.
fn assert_only_granted(policy: &Value, called: &BTreeSet<String>) {
    let granted: BTreeSet<String> = statements(policy)
        .into_iter()
        .filter(|s| s.effect == "Allow")
        .flat_map(|s| s.actions)
        .chain(NEEDS_NO_PERMISSION.iter().map(|a| a.to_string()))
        .collect();
    let ungranted: Vec<&String> = called.difference(&granted).collect();
    assert!(
        ungranted.is_empty(),
        "the run called actions the policy does not grant: {ungranted:?}"
    );
}

/// The first refusal of a run made without statement `sid`: one of the
/// statement's `actions`, which the statement alone (`alone`: its
/// decision on that request) would have allowed — its resources and
/// conditions are what the refused request needed.
fn first_refusal_is_the_statements<'r>(
    sid: &str,
    actions: &BTreeSet<String>,
    refusals: &'r [Refusal],
    alone: Option<Decision>,
    text: &str,
) -> &'r Refusal {
    let first = refusals
        .first()
        .unwrap_or_else(|| panic!("without {sid} nothing was refused:\n{text}"));
    assert!(
        actions.contains(&first.authorization.action),
        "without {sid} ({actions:?}) the first refusal was {first:?}"
    );
    assert_eq!(
        alone,
        Some(Decision::Allowed),
        "without {sid} the first refusal was {first:?}, which {sid} does not allow"
    );
    first
}

/// A policy of statement `sid` alone.
fn statement_alone(policy: &Value, sid: &str) -> Policy {
    let statement = policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .find(|s| s["Sid"] == sid)
        .expect("the statement")
        .clone();
    Policy::from_json(&serde_json::json!({"Version": "2012-10-17", "Statement": [statement]}))
        .expect("a policy")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_rendered_policy_a_rotation_succeeds_and_uses_every_grant_it_needs() {
    let run = Run::start().await;
    let (ok, text) = run.rotate().await;
    assert!(
        ok,
        "the rotation under the policy failed ({:?}):\n{text}",
        run.gate.refusals()
    );
    assert_eq!(run.gate.refusals(), [], "nothing was refused");
    let called = run.called();

    assert_only_granted(&run.policy, &called);

    // Every action of the statements a rotation needs was called, but the
    // implied ones and ec2:DescribeLaunchTemplates: that one is called for
    // a group whose launch template is named by name (the world's groups
    // name theirs by id).
    let needed: BTreeSet<String> = rotation_statements(&run.policy)
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
        kubesurge_testworld::moto::world::DEFAULT_REGION,
        &["lt-0123456789abcdef0".to_string()],
    );
    let cases = rotation_statements(&policy);
    let sids: BTreeSet<&str> = cases.iter().map(|(sid, _)| sid.as_str()).collect();
    assert_eq!(
        sids,
        BTreeSet::from([
            "LaunchTaggedInstancesFromPoolTemplates",
            "UseOnlyPoolLaunchTemplates",
            "LaunchIntoTemplateResources",
            "LaunchFromPoolImages",
            "TagOnlyWhileLaunching",
            "TerminateOnlyThisClustersPoolInstances",
            "VersionOnlyPoolLaunchTemplates",
            "DescribeOnlyAllowsAnyResource",
            "RotateOnlyThisClustersGroups",
            "RecordRunsInKubesurgeTagsOfThisClustersGroups",
            "PassOnlyTheNodeRoleToEc2",
        ])
    );

    // Three worlds at a time: the machine has two cores, and a run spends
    // most of its time waiting.
    for batch in cases.chunks(3) {
        let runs = batch.iter().map(|(sid, actions)| async move {
            let run = Run::start().await;
            run.remove_statement(sid);
            let (ok, text) = run.rotate().await;
            let refusals = run.gate.refusals();
            // What the removed statement alone (with this world's
            // templates) says of the first refusal.
            let alone = refusals
                .first()
                .map(|f| statement_alone(&run.policy, sid).evaluate(&f.authorization));
            let refused_calls: Vec<String> = run
                .proxy
                .calls()
                .iter()
                .filter(|c| c.injected)
                .map(|c| format!("{}:{}", c.service, c.action))
                .collect();
            run.finish();
            (
                sid.clone(),
                actions.clone(),
                ok,
                text,
                refusals,
                refused_calls,
                alone,
            )
        });
        for (sid, actions, ok, text, refusals, refused_calls, alone) in
            futures::future::join_all(runs).await
        {
            assert!(!ok, "without {sid} the rotation succeeded:\n{text}");
            // What was refused is what the statement granted: one of its
            // actions (for ec2:CreateTags, inside the RunInstances that
            // carries the tags).
            first_refusal_is_the_statements(&sid, &actions, &refusals, alone, &text);
            assert!(
                refused_calls
                    .iter()
                    .any(|call| text.contains(call.as_str())),
                "without {sid} the run's failure names none of the refused calls {refused_calls:?}:\n{text}"
            );
        }
    }
}

/// The policy's tag scoping at work: a group tagged for another cluster is
/// out of reach, and the run says which call was refused before it changed
/// the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_another_cluster_is_refused() {
    let run = Run::start_with(Some("another-cluster")).await;
    let before = run
        .world
        .autoscaling
        .group(&run.world.seeded.groups[GROUPED])
        .await
        .expect("describe")
        .expect("group");
    let (ok, text) = run.rotate().await;
    assert!(
        !ok,
        "the rotation of another cluster's group succeeded:\n{text}"
    );
    let refusals = run.gate.refusals();
    let first = refusals.first().expect("a refusal");
    assert!(
        first.authorization.action.starts_with("autoscaling:")
            && first.authorization.resource.ends_with(&format!(
                "autoScalingGroupName/{}",
                run.world.seeded.groups[GROUPED]
            )),
        "{refusals:?}"
    );
    assert!(
        text.contains(&first.authorization.action),
        "the failure names {}:\n{text}",
        first.authorization.action
    );
    let after = run
        .world
        .autoscaling
        .group(&run.world.seeded.groups[GROUPED])
        .await
        .expect("describe")
        .expect("group");
    assert_eq!(
        after.settings(),
        before.settings(),
        "the group was not changed"
    );
    run.finish();
}

/// Without the statements of the quota line, `check` cannot verify the
/// vCPU quota and says which call was refused (a rotation does not need
/// them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_quota_statements_check_names_the_refused_call() {
    let cases = [
        ("ReadTheEc2Quotas", "servicequotas:GetServiceQuota"),
        (
            "ReadInstanceTypesAndDefaultQuotas",
            "ec2:DescribeInstanceTypes",
        ),
    ];
    let runs = cases.iter().map(|(sid, action)| async move {
        let run = Run::start().await;
        run.remove_statement(sid);
        let (ok, text) = run.kubesurge(&["check"]).await;
        let refused: BTreeSet<String> = run
            .gate
            .refusals()
            .iter()
            .map(|r| r.authorization.action.clone())
            .collect();
        run.finish();
        (*sid, *action, ok, text, refused)
    });
    for (sid, action, ok, text, refused) in futures::future::join_all(runs).await {
        assert!(!ok, "without {sid} check passed:\n{text}");
        assert_eq!(
            refused,
            BTreeSet::from([action.to_string()]),
            "without {sid}"
        );
        assert!(
            text.contains("cannot verify") && text.contains(action),
            "without {sid} check does not name {action}:\n{text}"
        );
    }
}

/// `image_owner_account_ids` binds: under the policy allowing only
/// another account's images, the first launch is refused on the image
/// (its `ec2:Owner` is the world's account), the run fails naming
/// ec2:RunInstances and no instance is launched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_of_an_owner_the_policy_does_not_name_are_refused() {
    let run = Run::start().await;
    let templates: Vec<String> = run.policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .find(|s| s["Sid"] == "UseOnlyPoolLaunchTemplates")
        .and_then(|s| s["Resource"].as_array())
        .expect("the templates")
        .iter()
        .filter_map(|arn| arn.as_str()?.rsplit('/').next().map(str::to_string))
        .collect();
    let elsewhere =
        rendered_policy_with_image_owner(&run.world.config().region, &templates, "111111111111");
    run.gate
        .set_policy(Policy::from_json(&elsewhere).expect("the rendered policy"));
    let (ok, text) = run.rotate().await;
    assert!(
        !ok,
        "a launch of an unlisted owner's image succeeded:\n{text}"
    );
    let refusals = run.gate.refusals();
    let first = refusals.first().expect("a refusal");
    assert_eq!(first.authorization.action, "ec2:RunInstances", "{first:?}");
    assert!(
        first.authorization.resource.contains(":image/"),
        "{first:?}"
    );
    assert_eq!(
        first.authorization.context.get("ec2:Owner"),
        Some(&vec![ACCOUNT.to_string()]),
        "{first:?}"
    );
    assert!(text.contains("ec2:RunInstances"), "{text}");
    assert_eq!(
        run.proxy.succeeded("RunInstances"),
        0,
        "nothing was launched"
    );
    run.finish();
}

/// The SSM statements, with kubesurge's own SSM client (`SsmExec`, what
/// `controlPlane.exec: ssm` runs the upgrade scripts through) against
/// moto's SSM behind the policy: a script is sent to an instance carrying
/// the control-plane tag, and is refused, naming ssm:SendCommand, on a
/// worker. These instances are moto's alone, with no simulated machine or
/// agent behind them: moto's invocations succeed at once and nothing runs.
/// Scripts that run on a control-plane machine through its agent, and the
/// upgrade through them, are proven below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_run_through_ssm_only_on_the_control_plane() {
    use kubesurge_aws::{ClientOptions, SsmExec};
    use kubesurge_provider::{ExecError, ExecRequest, ExecTarget, InstanceId, NodeExec};

    let region = kubesurge_testworld::moto::world::DEFAULT_REGION;
    let moto = MotoServer::start().await.expect("moto starts");
    let ec2 = Ec2::new(moto.url(), region);
    let subnets = ec2.default_subnets().await.expect("subnets");
    let subnet = subnets.values().next().expect("a subnet");
    let image = ec2
        .register_image("kubesurge-node", &BTreeMap::new())
        .await
        .expect("image");
    let launch = |tags: BTreeMap<String, String>| {
        let ec2 = ec2.clone();
        let (image, subnet) = (image.clone(), subnet.clone());
        async move {
            ec2.run_instances(&image, &subnet, 1, &tags)
                .await
                .expect("instance")
                .remove(0)
                .id
        }
    };
    let control_plane = launch(BTreeMap::from([(
        "kubesurge.io/control-plane".to_string(),
        CLUSTER.to_string(),
    )]))
    .await;
    let worker = launch(BTreeMap::from([
        ("kubesurge.io/cluster".to_string(), CLUSTER.to_string()),
        ("kubesurge.io/pool".to_string(), PLAIN.to_string()),
    ]))
    .await;

    let policy = rendered_policy(region, &["lt-0123456789abcdef0".to_string()]);
    let gate = Arc::new(IamGate::new(
        moto.url(),
        Policy::from_json(&policy).expect("the rendered policy"),
    ));
    let proxy = FaultProxy::start_gated(moto.url(), gate.clone())
        .await
        .expect("proxy starts");
    let exec = SsmExec::new(
        Some(region),
        ClientOptions {
            endpoint_url: Some(proxy.url().to_string()),
            static_credentials: Some(("testing".into(), "testing".into())),
            max_attempts: 1,
            ..ClientOptions::default()
        },
    )
    .with_timing(Duration::from_millis(50), Duration::from_secs(5));
    let request = ExecRequest {
        script: "#!/bin/bash\nkubeadm version\n".into(),
        description: "kubeadm version".into(),
        timeout: Duration::from_secs(5),
    };
    let target = |node: &str, id: &str| ExecTarget {
        node: node.to_string(),
        instance: Some(InstanceId(id.to_string())),
        address: None,
    };

    let ran = exec
        .run(&target("cp-1", &control_plane), &request, &())
        .await
        .expect("the script runs on the control plane");
    assert_eq!(ran.exit_code, 0);
    assert_eq!(gate.refusals(), []);
    let called = proxy.calls();
    assert!(
        called.iter().any(|c| c.action == "SendCommand")
            && called.iter().any(|c| c.action == "GetCommandInvocation"),
        "{called:?}"
    );

    let refused = exec
        .run(&target("worker-1", &worker), &request, &())
        .await
        .expect_err("no script runs on a worker");
    assert!(
        matches!(
            &refused,
            ExecError::Transport { .. } | ExecError::Unreachable { .. }
        ) && refused.to_string().contains("SendCommand"),
        "{refused}"
    );
    let refusals = gate.refusals();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(refusals[0].authorization.action, "ssm:SendCommand");
    assert!(
        refusals[0]
            .authorization
            .resource
            .ends_with(&format!("instance/{worker}")),
        "{refusals:?}"
    );

    // A script that outlives its timeout is cancelled (ssm:CancelCommand),
    // and that is allowed too. (moto implements no CancelCommand: the
    // proxy answers it, after the policy allowed it.)
    proxy.inject(
        "CancelCommand",
        usize::MAX,
        Fault::Respond(Canned::json(200, "{}")),
    );
    proxy.inject(
        "GetCommandInvocation",
        usize::MAX,
        Fault::Respond(Canned::json(
            200,
            r#"{"Status":"InProgress","StatusDetails":"InProgress","ResponseCode":-1}"#,
        )),
    );
    let slow = ExecRequest {
        timeout: Duration::from_secs(1),
        ..request.clone()
    };
    let exec_fast = SsmExec::new(
        Some(region),
        ClientOptions {
            endpoint_url: Some(proxy.url().to_string()),
            static_credentials: Some(("testing".into(), "testing".into())),
            max_attempts: 1,
            ..ClientOptions::default()
        },
    )
    .with_timing(Duration::from_millis(50), Duration::from_millis(200));
    let timed_out = exec_fast
        .run(&target("cp-1", &control_plane), &slow, &())
        .await
        .expect_err("the script outlives its timeout");
    assert!(
        matches!(timed_out, ExecError::Timeout { .. }),
        "{timed_out}"
    );
    assert_eq!(proxy.count("CancelCommand"), 1, "{:?}", proxy.calls());
    assert_eq!(gate.refusals().len(), 1, "nothing more was refused");
    proxy.clear();

    // `check` asks the agent whether it is Online (moto implements no
    // DescribeInstanceInformation: the proxy answers it, after the policy
    // allowed it); without that statement it is refused, naming the call.
    proxy.inject(
        "DescribeInstanceInformation",
        usize::MAX,
        Fault::Respond(Canned::json(
            200,
            &format!(
                r#"{{"InstanceInformationList":[{{"InstanceId":"{control_plane}","PingStatus":"Online"}}]}}"#
            ),
        )),
    );
    exec.reach(&target("cp-1", &control_plane))
        .await
        .expect("the agent answers, and asking is allowed");
    assert_eq!(gate.refusals().len(), 1, "nothing more was refused");
    gate.set_policy(
        Policy::from_json(&policy)
            .expect("policy")
            .without("SeeWhetherAgentsAreOnline"),
    );
    let refused = exec
        .reach(&target("cp-1", &control_plane))
        .await
        .expect_err("refused");
    assert!(
        refused.to_string().contains("DescribeInstanceInformation"),
        "{refused}"
    );
    let last = gate.refusals().pop().expect("a refusal");
    assert_eq!(last.authorization.action, "ssm:DescribeInstanceInformation");
    proxy.clear();

    // Without any one SSM statement, a script on the control plane is
    // refused, naming the call.
    for (sid, call) in [
        ("RunCommandsOnThisClustersControlPlane", "SendCommand"),
        ("RunOnlyTheShellScriptDocument", "SendCommand"),
        ("FollowSentCommands", "GetCommandInvocation"),
    ] {
        gate.set_policy(Policy::from_json(&policy).expect("policy").without(sid));
        let refused = exec
            .run(&target("cp-1", &control_plane), &request, &())
            .await
            .expect_err("refused");
        assert!(
            refused.to_string().contains(call),
            "without {sid}: {refused}"
        );
        let last = gate.refusals().pop().expect("a refusal");
        assert_eq!(last.authorization.action, format!("ssm:{call}"));
        assert_eq!(
            statement_alone(&policy, sid).evaluate(&last.authorization),
            Decision::Allowed,
            "without {sid}: {last:?}"
        );
    }
    drop(proxy);
    moto.stop().expect("moto implemented every call");
}

/// `kubesurge check` under the rendered policy: every permission it asks
/// about is one the policy grants as a run uses it. It asked for a bare
/// `ec2:CreateTags` on an old instance, which no run makes (tags go on at
/// launch, `ec2:CreateAction = RunInstances`) and the policy rightly
/// refuses: check failed under the very policy the module ships.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_rendered_policy_check_passes() {
    let run = Run::start().await;
    let (ok, text) = run.kubesurge(&["check"]).await;
    assert!(
        ok,
        "check under the policy failed ({:?}):\n{text}",
        run.gate.refusals()
    );
    assert_eq!(run.gate.refusals(), [], "nothing was refused");
    // The group's calls were asked of IAM's policy simulator, each one.
    for action in GROUP_ACTIONS {
        assert!(
            text.contains(&format!(
                "{action} allowed (IAM's policy simulator says it would succeed)"
            )),
            "a line for {action}:\n{text}"
        );
    }
    // The account's vCPU quota was read, and there is room.
    assert!(
        text.contains("vCPU quota L-1216C47A"),
        "a quota line:\n{text}"
    );
    let called = run.called();
    for action in [
        "iam:SimulatePrincipalPolicy",
        "servicequotas:GetServiceQuota",
        "ec2:DescribeInstanceTypes",
    ] {
        assert!(called.contains(action), "{action}: {called:?}");
    }
    assert_only_granted(&run.policy, &called);
    run.finish();
}

/// The Auto Scaling calls a run makes on a group, which `check` asks IAM's
/// policy simulator about (that API has no dry run).
const GROUP_ACTIONS: [&str; 7] = [
    "autoscaling:UpdateAutoScalingGroup",
    "autoscaling:SuspendProcesses",
    "autoscaling:ResumeProcesses",
    "autoscaling:AttachInstances",
    "autoscaling:TerminateInstanceInAutoScalingGroup",
    "autoscaling:CreateOrUpdateTags",
    "autoscaling:DeleteTags",
];

/// `check -o json` in `run`: whether it passed, and its permission lines
/// for the group's actions, by action.
async fn group_permission_lines(run: &Run) -> (bool, BTreeMap<String, Value>, String) {
    let (ok, text) = run.kubesurge(&["check", "-o", "json"]).await;
    let start = text
        .find('{')
        .unwrap_or_else(|| panic!("a report:\n{text}"));
    let report: Value = serde_json::Deserializer::from_str(&text[start..])
        .into_iter::<Value>()
        .next()
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("a JSON report:\n{text}"));
    let lines = report["lines"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|l| l["check"] == "permission")
        .filter_map(|l| {
            let action = GROUP_ACTIONS
                .iter()
                .find(|a| l["message"].as_str().unwrap_or_default().starts_with(*a))?;
            Some((action.to_string(), l))
        })
        .collect();
    (ok, lines, text)
}

/// `check` proves the group's calls without making one: under the policy
/// without the statement that grants them, each of them fails its line
/// with the fix naming it, and the run's own calls are never made; a
/// group tagged for another cluster fails them the same (the simulation
/// carries the group's tags, as AWS authorizes the calls); without the
/// simulator's own statement the lines say they cannot verify, naming
/// `iam:SimulatePrincipalPolicy`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_proves_the_groups_calls_with_the_policy_simulator() {
    let cases: [(Option<&str>, Option<&str>, &[&str]); 3] = [
        (
            Some(CLUSTER),
            Some("RotateOnlyThisClustersGroups"),
            &GROUP_ACTIONS[..5],
        ),
        (
            Some(CLUSTER),
            Some("RecordRunsInKubesurgeTagsOfThisClustersGroups"),
            &GROUP_ACTIONS[5..],
        ),
        (Some("another-cluster"), None, &GROUP_ACTIONS),
    ];
    let runs = cases
        .iter()
        .map(|(group_cluster, without, denied)| async move {
            let run = Run::start_with(*group_cluster).await;
            if let Some(sid) = without {
                run.remove_statement(sid);
            }
            let (ok, lines, text) = group_permission_lines(&run).await;
            let refusals = run.gate.refusals();
            let called = run.called();
            run.finish();
            (*without, *denied, ok, lines, text, refusals, called)
        });
    for (without, denied, ok, lines, text, refusals, called) in
        futures::future::join_all(runs).await
    {
        let case = without.unwrap_or("a group of another cluster");
        assert!(!ok, "{case}: check passed:\n{text}");
        for action in GROUP_ACTIONS {
            let line = lines
                .get(action)
                .unwrap_or_else(|| panic!("{case}: a line for {action}:\n{text}"));
            if denied.contains(&action) {
                assert_eq!(line["status"], "fail", "{case}: {line}");
                assert!(
                    line["fix"].as_str().unwrap_or_default().contains(action),
                    "{case}: the fix names {action}: {line}"
                );
            } else {
                assert_eq!(line["status"], "pass", "{case}: {line}");
            }
        }
        assert_eq!(refusals, [], "{case}: check made no refused call");
        let group_calls: Vec<&String> = called
            .iter()
            .filter(|c| c.starts_with("autoscaling:") && !c.contains(":Describe"))
            .collect();
        assert!(
            group_calls.is_empty(),
            "{case}: check changed the group: {group_calls:?}"
        );
    }

    let run = Run::start().await;
    run.remove_statement("AskThePolicySimulatorAboutItself");
    let (ok, lines, text) = group_permission_lines(&run).await;
    assert!(!ok, "check passed without the simulator:\n{text}");
    for action in GROUP_ACTIONS {
        let line = &lines[action];
        assert_eq!(line["status"], "cannotVerify", "{line}");
        assert!(
            line["message"].as_str().unwrap_or_default().contains(
                "allow iam:SimulatePrincipalPolicy on arn:aws:iam::123456789012:user/kubesurge"
            ),
            "{line}"
        );
    }
    let refused: Vec<String> = run
        .gate
        .refusals()
        .iter()
        .map(|r| r.authorization.action.clone())
        .collect();
    assert!(
        !refused.is_empty() && refused.iter().all(|a| a == "iam:SimulatePrincipalPolicy"),
        "{refused:?}"
    );
    run.finish();
}

/// The statements of the policy that grant SSM actions, with those
/// actions.
fn ssm_statements(policy: &Value) -> Vec<(String, BTreeSet<String>)> {
    statements(policy)
        .into_iter()
        .filter(|s| s.effect == "Allow" && s.actions.iter().any(|a| a.starts_with("ssm:")))
        .map(|s| (s.sid, s.actions))
        .collect()
}

/// The image tag of every control-plane component but etcd, and the
/// control-plane nodes' kubelet versions.
fn control_plane_at(run: &Run) -> Vec<(String, String)> {
    let mut versions = crate::rotation::control_plane_versions(&run.world.world);
    for node in run.world.seeded.control_planes.keys() {
        let kubelet = run
            .world
            .world
            .store
            .get(&kubesurge_testworld::resources::NODES, "", node)
            .and_then(|n| {
                n.pointer("/status/nodeInfo/kubeletVersion")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_default();
        versions.push((format!("kubelet on {node}"), kubelet));
    }
    versions
}

/// The workers' node names and kubelet versions.
fn workers(run: &Run) -> BTreeMap<String, String> {
    let (nodes, _) =
        run.world
            .world
            .store
            .list(&kubesurge_testworld::resources::NODES, None, |_| true);
    nodes
        .iter()
        .filter(|n| {
            n.pointer(&format!(
                "/metadata/labels/{}",
                kubesurge_testworld::world::POOL_LABEL.replace('/', "~1")
            ))
            .is_some()
        })
        .map(|n| {
            (
                n["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                n["status"]["nodeInfo"]["kubeletVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// `controlPlane.exec: ssm` under the rendered policy: `kubesurge check`
/// finds the control plane's agent Online and its packages through a
/// script; `kubesurge upgrade` runs its control-plane scripts through SSM
/// on the control-plane instance (the world's SSM agent runs them on the
/// machine, and the run follows them with GetCommandInvocation), every
/// component reaches the target, and the workers of both pools are
/// replaced, with nothing refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_rendered_policy_an_upgrade_through_ssm_succeeds() {
    let run = Run::start_for(Some(CLUSTER), Purpose::Upgrade).await;
    assert_eq!(run.world.seeded.control_planes.len(), 1);
    let before = workers(&run);

    let (ok, text) = run.kubesurge(&["check", "--to", TO]).await;
    assert!(
        ok,
        "check under the policy failed ({:?}):\n{text}",
        run.gate.refusals()
    );
    let called = run.called();
    for action in ["ssm:DescribeInstanceInformation", "ssm:SendCommand"] {
        assert!(called.contains(action), "check called {called:?}");
    }

    let (ok, text) = run.upgrade().await;
    assert!(
        ok,
        "the upgrade under the policy failed ({:?}):\n{text}",
        run.gate.refusals()
    );
    assert_eq!(run.gate.refusals(), [], "nothing was refused");
    for (component, version) in control_plane_at(&run) {
        assert_eq!(version, TO, "{component}");
    }
    let after = workers(&run);
    assert_eq!(after.len(), before.len(), "the pools keep their size");
    for (name, version) in &after {
        assert!(!before.contains_key(name), "{name} is an old worker");
        assert_eq!(version, TO, "{name}");
    }

    let called = run.called();
    for action in ["ssm:SendCommand", "ssm:GetCommandInvocation"] {
        assert!(called.contains(action), "the upgrade called {called:?}");
    }
    assert_only_granted(&run.policy, &called);
    run.finish();
}

/// Without any one SSM statement, the run that needs it fails, naming the
/// refused `ssm:` action, which the statement alone allows: the upgrade
/// for the statements of SendCommand and GetCommandInvocation (without
/// SendCommand, before any hop: the control plane is unchanged), `check`
/// for DescribeInstanceInformation's (only `check` asks whether agents
/// are Online).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_any_one_ssm_statement_the_run_fails_naming_the_refused_action() {
    let policy = rendered_policy(
        kubesurge_testworld::moto::world::DEFAULT_REGION,
        &["lt-0123456789abcdef0".to_string()],
    );
    let cases = ssm_statements(&policy);
    let sids: BTreeSet<&str> = cases.iter().map(|(sid, _)| sid.as_str()).collect();
    assert_eq!(
        sids,
        BTreeSet::from([
            "RunCommandsOnThisClustersControlPlane",
            "RunOnlyTheShellScriptDocument",
            "FollowSentCommands",
            "SeeWhetherAgentsAreOnline",
        ])
    );

    for batch in cases.chunks(2) {
        let runs = batch.iter().map(|(sid, actions)| async move {
            let run = Run::start_for(Some(CLUSTER), Purpose::Upgrade).await;
            run.remove_statement(sid);
            let (ok, text) = if actions.contains("ssm:DescribeInstanceInformation") {
                run.kubesurge(&["check", "--to", TO]).await
            } else {
                run.upgrade().await
            };
            let refusals = run.gate.refusals();
            let alone = refusals
                .first()
                .map(|f| statement_alone(&run.policy, sid).evaluate(&f.authorization));
            let control_plane = control_plane_at(&run);
            run.finish();
            (
                sid.clone(),
                actions.clone(),
                ok,
                text,
                refusals,
                alone,
                control_plane,
            )
        });
        for (sid, actions, ok, text, refusals, alone, control_plane) in
            futures::future::join_all(runs).await
        {
            assert!(!ok, "without {sid} the run succeeded:\n{text}");
            let first = first_refusal_is_the_statements(&sid, &actions, &refusals, alone, &text);
            let action = &first.authorization.action;
            assert!(
                action.starts_with("ssm:"),
                "without {sid} the first refusal was {first:?}, not an SSM action"
            );
            assert!(
                text.contains(action.as_str()),
                "without {sid} the run's failure does not name {action}:\n{text}"
            );
            if action == "ssm:SendCommand" {
                for (component, version) in control_plane {
                    assert_eq!(version, VERSION, "without {sid}: {component} changed");
                }
            }
        }
    }
}

/// The world's SSM agent, through kubesurge's own SSM client under the
/// policy: a script sent to the control-plane instance runs on its
/// machine and the invocation reports its exit code and output (cut as
/// SSM cuts it: the first 24,000 characters of stdout, 8,000 of stderr);
/// a script that outlives its timeout is cancelled (ssm:CancelCommand) and
/// stops there; the agent is Online.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_planes_ssm_agent_runs_scripts_on_its_machine() {
    use kubesurge_aws::{ClientOptions, SsmExec};
    use kubesurge_provider::{ExecError, ExecRequest, ExecTarget, InstanceId, NodeExec};

    let run = Run::start_for(Some(CLUSTER), Purpose::Upgrade).await;
    let (node, instance) = run
        .world
        .seeded
        .control_planes
        .iter()
        .next()
        .expect("a control-plane instance");
    let machine = run
        .world
        .world
        .cloud
        .machine_of_node(node)
        .expect("the node's machine");
    let root = run
        .world
        .world
        .cloud
        .node_root(&machine.instance_id)
        .expect("the machine runs scripts");
    let exec = SsmExec::new(
        Some(run.world.config().region.as_str()),
        ClientOptions {
            endpoint_url: Some(run.proxy.url().to_string()),
            static_credentials: Some(("testing".into(), "testing".into())),
            max_attempts: 1,
            ..ClientOptions::default()
        },
    )
    .with_timing(Duration::from_millis(50), Duration::from_millis(100));
    let target = ExecTarget {
        node: node.clone(),
        instance: Some(InstanceId(instance.id.clone())),
        address: None,
    };
    let request = |script: &str, timeout: Duration| ExecRequest {
        script: script.to_string(),
        description: "a script".into(),
        timeout,
    };

    exec.reach(&target).await.expect("the agent is Online");

    // On the machine: its filesystem, its exit code, its output.
    let ran = exec
        .run(
            &target,
            &request(
                "#!/bin/bash\necho out\necho err >&2\ntouch \"$KUBESURGE_ROOT/ran\"\nexit 3\n",
                Duration::from_secs(10),
            ),
            &(),
        )
        .await
        .expect("the script runs");
    assert_eq!(ran.exit_code, 3);
    assert_eq!(ran.stdout, "out\n");
    assert_eq!(ran.stderr, "err\n");
    assert!(root.join("ran").exists(), "the script ran on the machine");

    let long = exec
        .run(
            &target,
            &request(
                "#!/bin/bash\nhead -c 30000 /dev/zero | tr '\\0' x\necho\nhead -c 10000 /dev/zero | tr '\\0' y >&2\necho >&2\n",
                Duration::from_secs(10),
            ),
            &(),
        )
        .await
        .expect("the script runs");
    assert_eq!(long.exit_code, 0);
    assert_eq!(long.stdout.chars().count(), 24_000);
    assert!(long.stdout.chars().all(|c| c == 'x'));
    assert_eq!(long.stderr.chars().count(), 8_000);
    assert!(long.stderr.chars().all(|c| c == 'y'));

    // SSM's own timeout is whole seconds (at least one): the client gives
    // up first and cancels, and the script stops before its end.
    let cut = exec
        .run(
            &target,
            &request(
                "#!/bin/bash\nsleep 0.85\ntouch \"$KUBESURGE_ROOT/finished\"\n",
                Duration::from_millis(100),
            ),
            &(),
        )
        .await
        .expect_err("the script outlives its timeout");
    assert!(matches!(cut, ExecError::Timeout { .. }), "{cut}");
    assert_eq!(
        run.proxy.succeeded("CancelCommand"),
        1,
        "{:?}",
        run.proxy.calls()
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !root.join("finished").exists(),
        "the cancelled script was stopped"
    );
    assert_eq!(run.gate.refusals(), [], "nothing was refused");
    run.finish();
}
