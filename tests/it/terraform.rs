//! The Terraform modules under `terraform/`, checked offline: formatting;
//! `terraform validate` where the providers can be had offline (null from
//! PyPI) and python-hcl2 parsing where they cannot (aws); the IAM policy's
//! grants and conditions; checkov; the scheduled module's manifests and
//! RBAC; the upgrade module's behaviour with a stand-in kubesurge; and the
//! upgrade module with the real kubesurge against a `kubesurge sandbox up`
//! cluster.
//!
//! The tools come from `tests/terraform.sh` (run by `tests/run.sh`), which
//! exports where they are. Terraform never contacts the network here: a
//! private HOME and CLI config, no checkpoint, providers from a plugin dir.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A provisioned tool: where `tests/terraform.sh` said (its environment
/// variable), else where it puts it, else a failure saying how to get it.
fn tool(variable: &str, under_tools: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(variable) {
        return PathBuf::from(path);
    }
    let provisioned = repo().join(".tools").join(under_tools);
    if provisioned.exists() {
        return provisioned;
    }
    panic!(
        "{variable} is not set and {} does not exist. Provision Terraform, the null provider, \
         checkov and python-hcl2 with `bash tests/terraform.sh` (tests/run.sh does it and \
         exports {variable}).",
        provisioned.display()
    );
}

fn terraform_bin() -> PathBuf {
    tool("KUBESURGE_TERRAFORM", "terraform-1.0.3/terraform")
}

fn plugin_dir() -> PathBuf {
    tool("KUBESURGE_TF_PLUGIN_DIR", "terraform-plugins")
}

fn checkov_bin() -> PathBuf {
    tool("KUBESURGE_CHECKOV", "checkov/bin/checkov")
}

fn hcl2_python() -> PathBuf {
    tool("KUBESURGE_HCL2_PYTHON", "hcl2/bin/python")
}

/// A private copy of `terraform/` with its own HOME and CLI config, so
/// that `init` writes nothing into the repository and no user setting,
/// credential or network mirror gets in.
struct Workspace {
    dir: TempDir,
}

impl Workspace {
    fn new() -> Workspace {
        let dir = tempfile::tempdir().expect("temp dir");
        copy_tree(&repo().join("terraform"), &dir.path().join("terraform"));
        fs::create_dir_all(dir.path().join("home")).expect("home");
        fs::write(dir.path().join("terraformrc"), "").expect("cli config");
        Workspace { dir }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// A command with only what the tools need in their environment.
    fn command(&self, program: &Path, cwd: &Path) -> Command {
        let mut command = Command::new(program);
        command
            .current_dir(cwd)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path("home"))
            .env("TF_CLI_CONFIG_FILE", self.path("terraformrc"))
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .stdin(Stdio::null());
        command
    }

    fn terraform(&self, cwd: &Path, args: &[&str]) -> Output {
        self.command(&terraform_bin(), cwd)
            .args(args)
            .output()
            .expect("terraform runs")
    }

    /// `terraform init` from the plugin dir only.
    fn init(&self, cwd: &Path) {
        let plugins = format!("-plugin-dir={}", plugin_dir().display());
        succeeded(
            &format!("terraform init in {}", cwd.display()),
            self.terraform(cwd, &["init", "-input=false", "-no-color", &plugins]),
        );
    }
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create dir");
    for entry in fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name();
        let name_text = name.to_string_lossy();
        // What a developer's own `terraform init` or apply left behind.
        if name_text == ".terraform"
            || name_text == ".terraform.lock.hcl"
            || name_text.ends_with(".tfstate")
            || name_text.ends_with(".tfstate.backup")
        {
            continue;
        }
        let source = entry.path();
        if source.is_dir() {
            copy_tree(&source, &to.join(&name));
        } else {
            fs::copy(&source, to.join(&name)).expect("copy file");
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The output of a command that must have succeeded; its whole output
/// otherwise.
fn succeeded(what: &str, output: Output) -> Output {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    output
}

fn tf_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != ".terraform") {
                tf_files(&path, found);
            }
        } else if path.extension().is_some_and(|e| e == "tf") {
            found.push(path);
        }
    }
}

#[test]
fn terraform_files_are_formatted() {
    let ws = Workspace::new();
    let dir = ws.path("terraform");
    succeeded(
        "terraform fmt -check -recursive terraform/ (run `terraform fmt -recursive terraform/`)",
        ws.terraform(
            &dir,
            &["fmt", "-check", "-recursive", "-diff", "-no-color", "."],
        ),
    );
}

/// Every module and example whose providers are obtainable offline: the
/// upgrade module (null) and the scheduled ones (no provider).
#[test]
fn modules_with_offline_providers_validate() {
    let ws = Workspace::new();
    for module in ["modules/upgrade", "modules/scheduled", "examples/scheduled"] {
        let dir = ws.path(&format!("terraform/{module}"));
        ws.init(&dir);
        succeeded(
            &format!("terraform validate {module}"),
            ws.terraform(&dir, &["validate", "-no-color"]),
        );
    }
}

/// The modules that use the AWS provider (no AWS provider can be had
/// offline) are at least parsed, like every other file, by python-hcl2.
#[test]
fn every_terraform_file_parses_with_python_hcl2() {
    const PARSE: &str = r#"
import json, sys, hcl2
parsed = []
for path in sys.argv[1:]:
    with open(path) as f:
        hcl2.load(f)
    parsed.append(path)
print(json.dumps(parsed))
"#;
    let mut files = Vec::new();
    tf_files(&repo().join("terraform"), &mut files);
    files.sort();
    assert!(
        files.len() >= 10,
        "expected the modules' .tf files, found {files:?}"
    );
    let ws = Workspace::new();
    let output = succeeded(
        "python-hcl2 parse",
        ws.command(&hcl2_python(), &repo())
            .arg("-c")
            .arg(PARSE)
            .args(&files)
            .output()
            .expect("python runs"),
    );
    let parsed: Vec<String> = serde_json::from_slice(&output.stdout).expect("json list");
    assert_eq!(parsed.len(), files.len(), "every file parsed: {parsed:?}");
}

/// One statement of the IAM policy document, as written in the module.
#[derive(Debug)]
pub(crate) struct Statement {
    pub(crate) sid: String,
    pub(crate) effect: String,
    pub(crate) actions: Vec<String>,
    resources: Vec<String>,
    /// (test, variable, values)
    conditions: Vec<(String, String, Vec<String>)>,
}

impl Statement {
    fn has_condition(&self, test: &str, variable: &str, values: &[&str]) -> bool {
        self.conditions
            .iter()
            .any(|(t, v, vals)| t == test && v == variable && vals == values)
    }
}

/// The statements of the iam module's `aws_iam_policy_document`, static and
/// dynamic, read by python-hcl2 (literals unquoted, expressions as
/// `${...}`).
pub(crate) fn iam_statements() -> Vec<Statement> {
    const EXTRACT: &str = r#"
import json, sys, hcl2

def unquote(v):
    if isinstance(v, str) and len(v) >= 2 and v[0] == '"' and v[-1] == '"':
        return v[1:-1]
    return v

def listed(v):
    return [unquote(x) for x in v] if isinstance(v, list) else [unquote(v)]

def blocks(body, label):
    found = list(body.get(label, []))
    for dynamic in body.get("dynamic", []):
        for name, block in dynamic.items():
            if unquote(name) == label:
                found.extend(block["content"])
    return found

with open(sys.argv[1]) as f:
    module = hcl2.load(f)
statements = []
for data in module.get("data", []):
    for kind, named in data.items():
        if unquote(kind) != "aws_iam_policy_document":
            continue
        for body in named.values():
            for s in blocks(body, "statement"):
                statements.append({
                    "sid": unquote(s["sid"]),
                    "effect": unquote(s["effect"]),
                    "actions": listed(s["actions"]),
                    "resources": listed(s["resources"]),
                    "conditions": [
                        [unquote(c["test"]), unquote(c["variable"]), listed(c["values"])]
                        for c in blocks(s, "condition")
                    ],
                })
print(json.dumps(statements))
"#;
    let ws = Workspace::new();
    let output = succeeded(
        "python-hcl2 reads the iam module",
        ws.command(&hcl2_python(), &repo())
            .arg("-c")
            .arg(EXTRACT)
            .arg(repo().join("terraform/modules/iam/main.tf"))
            .output()
            .expect("python runs"),
    );
    let value: Value = serde_json::from_slice(&output.stdout).expect("statements json");
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .expect("list")
            .iter()
            .map(|s| s.as_str().expect("string").to_string())
            .collect()
    };
    value
        .as_array()
        .expect("statement list")
        .iter()
        .map(|s| Statement {
            sid: s["sid"].as_str().expect("sid").to_string(),
            effect: s["effect"].as_str().expect("effect").to_string(),
            actions: strings(&s["actions"]),
            resources: strings(&s["resources"]),
            conditions: s["conditions"]
                .as_array()
                .expect("conditions")
                .iter()
                .map(|c| {
                    (
                        c[0].as_str().expect("test").to_string(),
                        c[1].as_str().expect("variable").to_string(),
                        strings(&c[2]),
                    )
                })
                .collect(),
        })
        .collect()
}

/// The iam module's policy document as AWS receives it, for `inputs` (the
/// module's variables as JSON), rendered by `iam_render/render.py`:
/// Terraform evaluates every expression, python-hcl2 reads the blocks.
pub(crate) fn render_iam_policy(inputs: &Value) -> Value {
    let ws = Workspace::new();
    let output = succeeded(
        "render the iam module's policy",
        ws.command(&hcl2_python(), &repo())
            .arg(repo().join("tests/it/iam_render/render.py"))
            .arg(repo().join("terraform/modules/iam"))
            .arg(inputs.to_string())
            .arg(terraform_bin())
            .arg(ws.path("render"))
            .output()
            .expect("python runs"),
    );
    serde_json::from_slice(&output.stdout).expect("policy json")
}

/// The rendered statement `sid`.
fn rendered<'a>(policy: &'a Value, sid: &str) -> Option<&'a Value> {
    policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .find(|s| s["Sid"] == sid)
}

#[test]
fn iam_policy_renders_with_the_inputs() {
    let template = "arn:aws:ec2:eu-west-1:123456789012:launch-template/lt-0123456789abcdef0";
    let base = serde_json::json!({
        "cluster_name": "prod-eu1",
        "region": "eu-west-1",
        "account_id": "123456789012",
        "launch_template_arns": [template],
    });
    let policy = render_iam_policy(&base);
    let launch = rendered(&policy, "LaunchTaggedInstancesFromPoolTemplates").expect("launch");
    assert_eq!(
        launch["Resource"],
        serde_json::json!(["arn:aws:ec2:eu-west-1:123456789012:instance/*"])
    );
    assert_eq!(
        launch["Condition"]["StringEquals"]["aws:RequestTag/kubesurge.io/cluster"],
        serde_json::json!(["prod-eu1"])
    );
    assert_eq!(
        launch["Condition"]["ArnEquals"]["ec2:LaunchTemplate"],
        serde_json::json!([template])
    );
    let send = rendered(&policy, "RunCommandsOnThisClustersControlPlane").expect("ssm");
    assert_eq!(
        send["Condition"]["StringEquals"],
        serde_json::json!({"aws:ResourceTag/kubesurge.io/control-plane": ["prod-eu1"]})
    );
    assert!(rendered(&policy, "PassOnlyTheNodeRoleToEc2").is_none());
    assert!(rendered(&policy, "AskThePolicySimulatorAboutItself").is_none());
    assert!(
        rendered(&policy, "LaunchFromPoolImages").expect("images")["Condition"]
            .get("StringEquals")
            .is_none(),
        "no owner condition without image_owner_account_ids"
    );
    let groups = rendered(&policy, "RotateOnlyThisClustersGroups").expect("groups");
    assert_eq!(
        groups["Resource"],
        serde_json::json!([
            "arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:*:autoScalingGroupName/*"
        ])
    );

    // The optional parts follow their inputs.
    let mut other = base.clone();
    other["enable_ssm"] = false.into();
    other["node_role_arn"] = "arn:aws:iam::123456789012:role/nodes".into();
    other["principal_arns"] = serde_json::json!(["arn:aws:iam::123456789012:role/kubesurge"]);
    other["image_owner_account_ids"] = serde_json::json!(["111111111111"]);
    other["subnet_ids"] = serde_json::json!(["subnet-0a"]);
    other["control_plane_tags"] = serde_json::json!({"role": "control-plane"});
    let policy = render_iam_policy(&other);
    let actions: BTreeSet<&str> = policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .flat_map(|s| s["Action"].as_array().expect("actions"))
        .filter_map(Value::as_str)
        .collect();
    assert!(
        !actions.iter().any(|a| a.starts_with("ssm:")),
        "{actions:?}"
    );
    assert_eq!(
        rendered(&policy, "AskThePolicySimulatorAboutItself").expect("simulator")["Resource"],
        serde_json::json!(["arn:aws:iam::123456789012:role/kubesurge"])
    );
    let pass = rendered(&policy, "PassOnlyTheNodeRoleToEc2").expect("pass role");
    assert_eq!(
        pass["Resource"],
        serde_json::json!(["arn:aws:iam::123456789012:role/nodes"])
    );
    assert_eq!(
        rendered(&policy, "LaunchFromPoolImages").expect("images")["Condition"]["StringEquals"]["ec2:Owner"],
        serde_json::json!(["111111111111"])
    );
    assert!(
        rendered(&policy, "LaunchIntoTemplateResources").expect("launch resources")["Resource"]
            .as_array()
            .expect("resources")
            .contains(&"arn:aws:ec2:eu-west-1:123456789012:subnet/subnet-0a".into())
    );
    assert_eq!(
        rendered(&policy, "NeverCreateControlPlaneTags").expect("deny")["Condition"],
        serde_json::json!({"ForAnyValue:StringEquals": {"aws:TagKeys": ["role"]}})
    );
}

#[test]
fn iam_policy_grants_only_what_kubesurge_needs() {
    let statements = iam_statements();
    let allows: Vec<&Statement> = statements.iter().filter(|s| s.effect == "Allow").collect();
    let with_action = |action: &str| -> Vec<&Statement> {
        allows
            .iter()
            .copied()
            .filter(|s| s.actions.iter().any(|a| a == action))
            .collect()
    };

    // Exactly the calls kubesurge makes, no wildcard actions.
    let granted: BTreeSet<&str> = allows
        .iter()
        .flat_map(|s| s.actions.iter().map(String::as_str))
        .collect();
    let expected: BTreeSet<&str> = [
        "ec2:RunInstances",
        "ec2:CreateTags",
        "ec2:TerminateInstances",
        "ec2:DescribeInstances",
        "ec2:DescribeImages",
        "ec2:DescribeLaunchTemplates",
        "ec2:DescribeLaunchTemplateVersions",
        "ec2:DescribeSubnets",
        "ec2:CreateLaunchTemplateVersion",
        "autoscaling:DescribeAutoScalingGroups",
        "autoscaling:DescribeAutoScalingInstances",
        "autoscaling:UpdateAutoScalingGroup",
        "autoscaling:SuspendProcesses",
        "autoscaling:ResumeProcesses",
        "autoscaling:AttachInstances",
        "autoscaling:TerminateInstanceInAutoScalingGroup",
        "autoscaling:CreateOrUpdateTags",
        "autoscaling:DeleteTags",
        "ssm:SendCommand",
        "ssm:GetCommandInvocation",
        "ssm:CancelCommand",
        "ssm:DescribeInstanceInformation",
        "iam:PassRole",
        "iam:SimulatePrincipalPolicy",
        "servicequotas:GetServiceQuota",
        "servicequotas:GetAWSDefaultServiceQuota",
        "ec2:DescribeInstanceTypes",
    ]
    .into_iter()
    .collect();
    assert_eq!(granted, expected);

    // "*" only for the actions that have no resource-level permissions.
    let resourceless: BTreeSet<&str> = [
        "ec2:DescribeInstances",
        "ec2:DescribeImages",
        "ec2:DescribeLaunchTemplates",
        "ec2:DescribeLaunchTemplateVersions",
        "ec2:DescribeSubnets",
        "autoscaling:DescribeAutoScalingGroups",
        "autoscaling:DescribeAutoScalingInstances",
        "ssm:GetCommandInvocation",
        "ssm:CancelCommand",
        "ssm:DescribeInstanceInformation",
        "ec2:DescribeInstanceTypes",
        "servicequotas:GetAWSDefaultServiceQuota",
    ]
    .into_iter()
    .collect();
    for s in &allows {
        if s.resources.iter().any(|r| r == "*") {
            for action in &s.actions {
                assert!(
                    resourceless.contains(action.as_str()),
                    "{}: {action} on \"*\" although it supports resource-level permissions",
                    s.sid
                );
            }
        }
    }

    // Every RunInstances grant is tied to the pools' launch templates:
    // either the templates themselves or a launch from one of them.
    let templates = "${var.launch_template_arns}";
    let run_instances = with_action("ec2:RunInstances");
    assert!(run_instances.len() >= 3, "{run_instances:#?}");
    for s in &run_instances {
        assert!(
            s.resources == [templates]
                || s.has_condition("ArnEquals", "ec2:LaunchTemplate", &[templates]),
            "{}: RunInstances not limited to the pools' launch templates",
            s.sid
        );
    }
    // The instance itself must carry this cluster's tag in the request.
    let instance_launch: Vec<&&Statement> = run_instances
        .iter()
        .filter(|s| s.resources.iter().any(|r| r.ends_with(":instance/*")))
        .collect();
    assert_eq!(instance_launch.len(), 1, "{instance_launch:#?}");
    assert!(instance_launch[0].has_condition(
        "StringEquals",
        "aws:RequestTag/kubesurge.io/cluster",
        &["${var.cluster_name}"]
    ));

    for s in with_action("ec2:CreateTags") {
        assert!(
            s.has_condition("StringEquals", "ec2:CreateAction", &["RunInstances"]),
            "{}: tags outside a launch",
            s.sid
        );
    }
    let terminate = with_action("ec2:TerminateInstances");
    assert_eq!(terminate.len(), 1);
    assert!(terminate[0].has_condition(
        "StringEquals",
        "aws:ResourceTag/kubesurge.io/cluster",
        &["${var.cluster_name}"]
    ));
    assert!(terminate[0].has_condition("Null", "aws:ResourceTag/kubesurge.io/pool", &["false"]));

    // SendCommand: instances only with the control-plane tags, documents
    // only AWS-RunShellScript.
    for s in with_action("ssm:SendCommand") {
        let on_instances = s.resources.iter().any(|r| r.ends_with(":instance/*"));
        if on_instances {
            assert!(
                s.conditions
                    .iter()
                    .any(|(test, variable, _)| test == "StringEquals"
                        && variable.starts_with("aws:ResourceTag/")),
                "{}: SendCommand to instances without a tag condition",
                s.sid
            );
        } else {
            assert_eq!(
                s.resources,
                ["arn:${var.partition}:ssm:${var.region}::document/AWS-RunShellScript"],
                "{}",
                s.sid
            );
        }
    }

    // Auto Scaling changes only in groups tagged for this cluster, and tags
    // only under kubesurge.io/.
    let group_arns = "${local.group_arns}";
    for action in [
        "autoscaling:UpdateAutoScalingGroup",
        "autoscaling:SuspendProcesses",
        "autoscaling:ResumeProcesses",
        "autoscaling:AttachInstances",
        "autoscaling:TerminateInstanceInAutoScalingGroup",
        "autoscaling:CreateOrUpdateTags",
        "autoscaling:DeleteTags",
    ] {
        let grants = with_action(action);
        assert_eq!(grants.len(), 1, "{action}: {grants:#?}");
        assert_eq!(grants[0].resources, [group_arns], "{}", grants[0].sid);
        assert!(
            grants[0].has_condition(
                "StringEquals",
                "autoscaling:ResourceTag/kubesurge.io/cluster",
                &["${var.cluster_name}"]
            ),
            "{}: {action} outside this cluster's groups",
            grants[0].sid
        );
    }
    for action in ["autoscaling:CreateOrUpdateTags", "autoscaling:DeleteTags"] {
        assert!(with_action(action)[0].has_condition(
            "ForAllValues:StringLike",
            "aws:TagKeys",
            &["kubesurge.io/*"]
        ));
    }
    // A new launch template version only of the pools' templates.
    let versions = with_action("ec2:CreateLaunchTemplateVersion");
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].resources, [templates]);

    // Only the EC2 quotas.
    let quotas = with_action("servicequotas:GetServiceQuota");
    assert_eq!(quotas.len(), 1);
    assert_eq!(
        quotas[0].resources,
        ["arn:${var.partition}:servicequotas:${var.region}:${var.account_id}:ec2/*"]
    );

    // The simulator only about the principals the runs use.
    let simulator = with_action("iam:SimulatePrincipalPolicy");
    assert_eq!(simulator.len(), 1);
    assert_eq!(simulator[0].resources, ["${var.principal_arns}"]);

    let pass_role = with_action("iam:PassRole");
    assert_eq!(pass_role.len(), 1);
    assert_eq!(pass_role[0].resources, ["${statement.value}"]);
    assert!(pass_role[0].has_condition(
        "StringEquals",
        "iam:PassedToService",
        &["ec2.amazonaws.com"]
    ));

    // No launch or tag may carry a control-plane tag key.
    let deny = statements
        .iter()
        .find(|s| s.effect == "Deny")
        .expect("a Deny statement");
    assert!(deny.actions.contains(&"ec2:RunInstances".to_string()));
    assert!(deny.actions.contains(&"ec2:CreateTags".to_string()));
    assert!(
        deny.actions
            .contains(&"autoscaling:CreateOrUpdateTags".to_string())
    );
    assert!(deny.has_condition(
        "ForAnyValue:StringEquals",
        "aws:TagKeys",
        &["${keys(local.control_plane_tags)}"]
    ));
}

/// The checkov checks skipped somewhere under `terraform/`, each with its
/// reason next to the resource: CKV_K8S_21 (node Events live in the default
/// namespace) and CKV_K8S_38 (kubesurge needs its ServiceAccount token).
const JUSTIFIED_SKIPS: &[&str] = &["CKV_K8S_21", "CKV_K8S_38"];

/// checkov over `terraform/` (Terraform and the rendered Kubernetes
/// manifests), offline: no failed check, and every skipped one says why.
#[test]
fn checkov_passes_and_every_skip_is_justified() {
    let ws = Workspace::new();
    let output = ws
        .command(&checkov_bin(), &ws.path("terraform"))
        .args([
            "--skip-download",
            "--directory",
            ".",
            "--framework",
            "terraform",
            "kubernetes",
            "secrets",
            "--output",
            "json",
        ])
        .env("CKV_SKIP_PACKAGE_UPDATE_CHECK", "true")
        .env("BC_SKIP_MAPPING", "TRUE")
        .output()
        .expect("checkov runs");
    let stdout = text(&output.stdout);
    let json: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "checkov printed no JSON ({e}):\n{stdout}\n{}",
            text(&output.stderr)
        )
    });
    // One report per framework with findings (an object when only one).
    let reports: Vec<&Value> = match &json {
        Value::Array(reports) => reports.iter().collect(),
        report => vec![report],
    };
    let mut passed_by_framework = Vec::new();
    for report in &reports {
        let framework = report["check_type"].as_str().unwrap_or("?");
        let failed = &report["results"]["failed_checks"];
        assert!(
            failed.as_array().is_none_or(|f| f.is_empty()),
            "checkov {framework} failures:\n{failed:#}"
        );
        assert_eq!(
            report["summary"]["parsing_errors"], 0,
            "checkov {framework} could not parse a file: {:#}",
            report["results"]["parsing_errors"]
        );
        let skipped: Vec<&Value> = report["results"]["skipped_checks"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(
            Some(skipped.len() as u64),
            report["summary"]["skipped"].as_u64(),
            "every skip is listed"
        );
        for skipped in skipped {
            let id = skipped["check_id"].as_str().unwrap_or_default();
            let reason = skipped["check_result"]["suppress_comment"]
                .as_str()
                .unwrap_or("");
            assert!(
                reason.trim().len() > 10,
                "{id} skipped on {} without a reason",
                skipped["resource"]
            );
            // A new skip is a decision: add it here with its reason in the
            // manifest or module.
            assert!(
                JUSTIFIED_SKIPS.contains(&id),
                "{id} skipped on {}: not one of the reviewed skips {JUSTIFIED_SKIPS:?}",
                skipped["resource"]
            );
        }
        passed_by_framework.push((framework.to_string(), report["summary"]["passed"].clone()));
    }
    assert!(
        output.status.success(),
        "checkov exit {}: {}",
        output.status,
        text(&output.stderr)
    );
    for framework in ["terraform", "kubernetes"] {
        assert!(
            passed_by_framework
                .iter()
                .any(|(f, passed)| f == framework && passed.as_u64().is_some_and(|n| n > 0)),
            "checkov ran no {framework} check: {passed_by_framework:?}"
        );
    }
}

/// Renders `terraform/examples/scheduled` (or a root with other inputs)
/// and returns the `manifests` output.
fn render_scheduled(ws: &Workspace, dir: &Path) -> String {
    ws.init(dir);
    succeeded(
        "terraform apply (render)",
        ws.terraform(
            dir,
            &["apply", "-auto-approve", "-input=false", "-no-color"],
        ),
    );
    let output = succeeded(
        "terraform output manifests",
        ws.terraform(dir, &["output", "-raw", "manifests"]),
    );
    text(&output.stdout)
}

fn documents(yaml: &str) -> Vec<Value> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(yaml).expect("manifests parse as YAML");
    documents.into_iter().filter(|d| !d.is_null()).collect()
}

/// Every RBAC rule as `kind namespace: apiGroup resource[names] verbs`.
fn rbac_rules(documents: &[Value]) -> BTreeSet<String> {
    let mut rules = BTreeSet::new();
    for doc in documents {
        let kind = doc["kind"].as_str().unwrap_or_default();
        if kind != "ClusterRole" && kind != "Role" {
            continue;
        }
        let namespace = doc["metadata"]["namespace"].as_str().unwrap_or("*");
        for rule in doc["rules"].as_array().expect("rules") {
            let join = |v: &Value| {
                v.as_array()
                    .map(|a| {
                        a.iter()
                            .map(|x| x.as_str().expect("string"))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default()
            };
            let names = join(&rule["resourceNames"]);
            let names = if names.is_empty() {
                String::new()
            } else {
                format!("[{names}]")
            };
            rules.insert(format!(
                "{kind} {namespace}: {}/{}{names} {}",
                join(&rule["apiGroups"]),
                join(&rule["resources"]),
                join(&rule["verbs"])
            ));
        }
    }
    rules
}

/// The scheduled example's rendered manifests (kept identical to the
/// module's output by `scheduled_manifests_are_current_and_least_privilege`).
const SCHEDULED_EXAMPLE: &str = "terraform/examples/scheduled/kubesurge-scheduled.yaml";

#[test]
fn scheduled_manifests_are_current_and_least_privilege() {
    let ws = Workspace::new();
    let rendered = render_scheduled(&ws, &ws.path("terraform/examples/scheduled"));

    // The kubectl-friendly file beside the example is this very output.
    let committed_path = repo().join(SCHEDULED_EXAMPLE);
    if std::env::var_os("KUBESURGE_BLESS").is_some() {
        fs::write(&committed_path, &rendered).expect("write rendered manifests");
    }
    let committed = fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        committed == rendered,
        "{} is not the example's output; regenerate it with \
         KUBESURGE_BLESS=1 cargo test --test it terraform::scheduled",
        committed_path.display()
    );

    let docs = documents(&rendered);
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "ConfigMap",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Role",
            "RoleBinding",
            "Role",
            "RoleBinding",
            "CronJob"
        ]
    );
    // That these rules are enough, and each of them needed, is proven by
    // running under them: `scheduled_rbac`.
    for doc in &docs {
        if doc["kind"].as_str().is_some_and(|k| k.ends_with("Binding")) {
            assert_eq!(
                doc["subjects"],
                serde_json::json!([{"kind": "ServiceAccount", "name": "kubesurge", "namespace": "kube-system"}]),
                "{}",
                doc["kind"]
            );
            assert_eq!(doc["roleRef"]["name"], "kubesurge");
        }
    }

    let config = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("config map");
    let example_config =
        fs::read_to_string(repo().join("terraform/examples/scheduled/kubesurge.yaml"))
            .expect("example config");
    assert_eq!(config["data"]["config.yaml"], example_config.as_str());

    let cron = docs
        .iter()
        .find(|d| d["kind"] == "CronJob")
        .expect("cron job");
    let spec = &cron["spec"];
    assert_eq!(spec["concurrencyPolicy"], "Forbid");
    assert_eq!(spec["startingDeadlineSeconds"], 600);
    assert_eq!(spec["timeZone"], "Europe/Berlin");
    let job = &spec["jobTemplate"]["spec"];
    assert_eq!(job["backoffLimit"], 0);
    // Its own eviction (its node drained last) does not end the Job: the
    // next pod continues the run.
    assert_eq!(
        job["podFailurePolicy"]["rules"],
        serde_json::json!([{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}])
    );
    let pod = &job["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "kubesurge");
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(
        pod["nodeSelector"]["node-role.kubernetes.io/control-plane"],
        ""
    );
    let container = &pod["containers"][0];
    assert_eq!(
        container["args"],
        serde_json::json!([
            "rotate",
            "--max-age",
            "30d",
            "--config",
            "/etc/kubesurge/config.yaml",
            "--yes",
            "-o",
            "json",
            "--log-format",
            "json"
        ])
    );
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        container["env"][0],
        serde_json::json!({"name": "KUBESURGE_NODE_NAME",
                           "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}),
        "the run knows its own node"
    );
}

/// Pods are deleted only under `drain.onTimeout: force`, and only then may
/// the ServiceAccount delete them; inputs cannot break the YAML.
#[test]
fn scheduled_module_grants_pod_deletion_only_for_forced_drains() {
    let ws = Workspace::new();
    let root = ws.path("root");
    fs::create_dir_all(&root).expect("root dir");
    fs::write(
        root.join("main.tf"),
        r#"
module "scheduled" {
  source                 = "../terraform/modules/scheduled"
  name                   = "rotator"
  namespace              = "ops"
  image                  = "registry.example.com/kubesurge@sha256:0000000000000000000000000000000000000000000000000000000000000000"
  config_yaml            = "cluster:\n  name: \"x: y\" # not a comment\n"
  drain_on_timeout_force = true
  stale_image            = true
  pool                   = "gpu"
  run_on_control_plane   = false
  environment            = { AWS_REGION = "eu-west-1", RUST_LOG = "kubesurge=debug: \"quoted\"" }
}

output "manifests" {
  value = module.scheduled.manifests
}
"#,
    )
    .expect("root module");
    let docs = documents(&render_scheduled(&ws, &root));

    let rules = rbac_rules(&docs);
    assert!(
        rules.contains("ClusterRole *: /pods delete"),
        "force drains need pods delete: {rules:#?}"
    );
    // Exactly the proven rules (`scheduled_rbac`) and that one more.
    let proven = rbac_rules(&documents(
        &fs::read_to_string(repo().join(SCHEDULED_EXAMPLE)).expect("rendered example"),
    ));
    let extra: Vec<&String> = rules.difference(&proven).collect();
    assert_eq!(extra, ["ClusterRole *: /pods delete"], "{rules:#?}");
    assert!(rules.is_superset(&proven), "{rules:#?}");

    let config = docs.iter().find(|d| d["kind"] == "ConfigMap").expect("cm");
    assert_eq!(config["metadata"]["name"], "rotator-config");
    assert_eq!(config["metadata"]["namespace"], "ops");
    assert_eq!(
        config["data"]["config.yaml"],
        "cluster:\n  name: \"x: y\" # not a comment\n"
    );
    let cron = docs.iter().find(|d| d["kind"] == "CronJob").expect("cron");
    let pod = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert!(pod.get("nodeSelector").is_none(), "{pod:#}");
    assert!(pod.get("tolerations").is_none(), "{pod:#}");
    let container = &pod["containers"][0];
    assert_eq!(
        container["args"],
        serde_json::json!([
            "rotate",
            "--max-age",
            "30d",
            "--stale-image",
            "--pool",
            "gpu",
            "--config",
            "/etc/kubesurge/config.yaml",
            "--yes",
            "-o",
            "json",
            "--log-format",
            "json"
        ])
    );
    assert_eq!(
        container["env"],
        serde_json::json!([
            {"name": "KUBESURGE_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "AWS_REGION", "value": "eu-west-1"},
            {"name": "RUST_LOG", "value": "kubesurge=debug: \"quoted\""}
        ])
    );
}

// --- The upgrade module with a stand-in kubesurge ------------------------

/// A root module using `terraform/modules/upgrade` with a fake kubesurge
/// that records each call (arguments and environment, one file per call)
/// and prints a report, or fails while `fail` exists.
struct UpgradeRoot {
    ws: Workspace,
    root: PathBuf,
    calls: PathBuf,
    kubeconfig: String,
}

const FAKE_KUBESURGE: &str = r#"#!/bin/sh
calls='@CALLS@'
n=$(ls "$calls" | grep -c '^args\.')
n=$((n + 1))
printf '%s\n' "$@" > "$calls/args.$n"
env > "$calls/env.$n"
echo "kubesurge (stand-in): run $n" >&2
if [ -e "$calls/../fail" ]; then
  echo "kubesurge (stand-in): injected failure" >&2
  printf '{"target":"v0.0.0","started":"2026-01-01T00:00:00Z","finished":"2026-01-01T00:00:01Z","outcome":{"result":"failed","reason":"injected"},"hops":[],"rotations":[]}\n'
  exit 1
fi
to=""
prev=""
for word in "$@"; do
  [ "$prev" = "--to" ] && to=$word
  prev=$word
done
# The shape of `kubesurge upgrade -o json` (src/cli/upgrade.rs UpgradeReport):
# one hop, one rotation whose run id counts the calls.
slot='{"pool":"general","oldNode":"old","oldInstance":null,"newNode":null,"newInstance":null,"zone":null,"attempts":1,"timings":{},"drain":null,"outcome":'
printf '{"target":"%s","started":"2026-01-01T00:00:00Z","finished":"2026-01-01T00:00:01Z","outcome":{"result":"succeeded"},"hops":[{"number":1,"from":"v1.34.0","to":"%s","steps":[]}],"rotations":[{"runId":"run-%s","command":"upgrade --to %s: pool general at %s","target":"%s","started":"2026-01-01T00:00:00Z","finished":"2026-01-01T00:00:01Z","dryRun":false,"outcome":{"result":"succeeded"},"slots":[%s{"result":"replaced"}},%s{"result":"replaced"}},%s{"result":"skipped","reason":"drain timed out"}}]}]}\n' "$to" "$to" "$n" "$to" "$to" "$to" "$slot" "$slot" "$slot"
"#;

impl UpgradeRoot {
    fn new() -> UpgradeRoot {
        let ws = Workspace::new();
        let root = ws.path("root");
        let calls = ws.path("calls");
        fs::create_dir_all(&root).expect("root");
        fs::create_dir_all(&calls).expect("calls");
        let fake = ws.path("fake-kubesurge");
        fs::write(
            &fake,
            FAKE_KUBESURGE.replace("@CALLS@", &calls.display().to_string()),
        )
        .expect("fake");
        make_executable(&fake);
        // A distinctive path, so any leak into arguments, logs or state is
        // found by a plain substring search.
        let kubeconfig = ws.path("kubeconfig-secret-7f3a9c").display().to_string();
        fs::write(ws.path("kubesurge.yaml"), "cluster: {name: prod}\n").expect("config");
        fs::write(
            root.join("main.tf"),
            format!(
                r#"
variable "kubernetes_version" {{
  type = string
}}

variable "rotation_epoch" {{
  type    = string
  default = "0"
}}

module "upgrade" {{
  source             = "../terraform/modules/upgrade"
  kubesurge_bin      = "{fake}"
  kubernetes_version = var.kubernetes_version
  config_path        = "{config}"
  pool_images        = {{ general = "tag:kubernetes-version=${{var.kubernetes_version}}" }}
  rotation_epoch     = var.rotation_epoch
  kubeconfig_path    = "{kubeconfig}"
  aws_region         = "eu-west-1"
}}

output "run_ids" {{
  value = module.upgrade.run_ids
}}

output "final_version" {{
  value = module.upgrade.final_version
}}

output "control_plane_hops" {{
  value = module.upgrade.control_plane_hops
}}

output "outcome" {{
  value = module.upgrade.outcome
}}

output "target_version" {{
  value = module.upgrade.target_version
}}

output "nodes_replaced" {{
  value = module.upgrade.nodes_replaced
}}
"#,
                fake = fake.display(),
                config = ws.path("kubesurge.yaml").display(),
            ),
        )
        .expect("root module");
        ws.init(&root);
        UpgradeRoot {
            ws,
            root,
            calls,
            kubeconfig,
        }
    }

    fn apply(&self, vars: &[&str]) -> Output {
        let mut args = vec!["apply", "-auto-approve", "-input=false", "-no-color"];
        let vars: Vec<String> = vars.iter().map(|v| format!("-var={v}")).collect();
        args.extend(vars.iter().map(String::as_str));
        self.ws.terraform(&self.root, &args)
    }

    fn runs(&self) -> usize {
        fs::read_dir(&self.calls)
            .expect("calls dir")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("args."))
            })
            .count()
    }

    fn args(&self, run: usize) -> Vec<String> {
        fs::read_to_string(self.calls.join(format!("args.{run}")))
            .expect("recorded args")
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn env(&self, run: usize) -> String {
        fs::read_to_string(self.calls.join(format!("env.{run}"))).expect("recorded env")
    }

    fn outputs(&self) -> Value {
        let output = succeeded(
            "terraform output -json",
            self.ws.terraform(&self.root, &["output", "-json"]),
        );
        let all: Value = serde_json::from_slice(&output.stdout).expect("outputs json");
        let mut values = serde_json::Map::new();
        for (name, output) in all.as_object().expect("outputs object") {
            values.insert(name.clone(), output["value"].clone());
        }
        Value::Object(values)
    }

    fn state(&self) -> String {
        fs::read_to_string(self.root.join("terraform.tfstate")).expect("state")
    }
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut permissions = fs::metadata(path).expect("metadata").permissions();
    permissions.set_mode(0o755);
    fs::set_permissions(path, permissions).expect("chmod");
}

#[test]
fn upgrade_module_runs_kubesurge_when_a_trigger_changes_and_resumes_after_a_failure() {
    let tf = UpgradeRoot::new();

    // First apply: one run, to the version asked, with the kubeconfig only
    // in the environment.
    let first = succeeded("first apply", tf.apply(&["kubernetes_version=v1.34.2"]));
    assert_eq!(tf.runs(), 1);
    let args = tf.args(1);
    assert_eq!(
        args,
        [
            "upgrade",
            "--to",
            "v1.34.2",
            "--config",
            &tf.ws.path("kubesurge.yaml").display().to_string(),
            "--yes",
            "-o",
            "json"
        ]
    );
    let env = tf.env(1);
    assert!(
        env.lines()
            .any(|l| l == format!("KUBECONFIG={}", tf.kubeconfig)),
        "{env}"
    );
    assert!(env.lines().any(|l| l == "AWS_REGION=eu-west-1"), "{env}");
    for (place, content) in [
        ("the arguments", args.join(" ")),
        ("terraform.tfstate", tf.state()),
        ("Terraform's output", text(&first.stdout)),
        ("Terraform's log", text(&first.stderr)),
    ] {
        assert!(
            !content.contains(&tf.kubeconfig),
            "the kubeconfig path leaked into {place}:\n{content}"
        );
    }
    // kubesurge's logs (stderr) reach Terraform's output.
    assert!(text(&first.stdout).contains("kubesurge (stand-in): run 1"));
    let outputs = tf.outputs();
    assert_eq!(outputs["run_ids"], serde_json::json!(["run-1"]));
    assert_eq!(outputs["outcome"], "succeeded");
    assert_eq!(outputs["target_version"], "v1.34.2");
    assert_eq!(outputs["final_version"], "v1.34.2");
    assert_eq!(outputs["nodes_replaced"], 2);
    assert_eq!(outputs["control_plane_hops"], 1);

    // The same inputs again: nothing runs.
    succeeded("unchanged apply", tf.apply(&["kubernetes_version=v1.34.2"]));
    assert_eq!(tf.runs(), 1, "an apply with unchanged inputs ran kubesurge");

    // A new version runs again, and the outputs follow the new report.
    succeeded("new version", tf.apply(&["kubernetes_version=v1.35.0"]));
    assert_eq!(tf.runs(), 2);
    assert_eq!(tf.args(2)[..3], ["upgrade", "--to", "v1.35.0"]);
    assert_eq!(tf.outputs()["run_ids"], serde_json::json!(["run-2"]));
    assert_eq!(tf.outputs()["target_version"], "v1.35.0");

    // Every other trigger: the config file's content and the epoch.
    fs::write(
        tf.ws.path("kubesurge.yaml"),
        "cluster: {name: prod}\n# edited\n",
    )
    .expect("edit");
    succeeded("edited config", tf.apply(&["kubernetes_version=v1.35.0"]));
    assert_eq!(tf.runs(), 3, "editing the config file runs kubesurge");
    succeeded(
        "new epoch",
        tf.apply(&["kubernetes_version=v1.35.0", "rotation_epoch=2026-12"]),
    );
    assert_eq!(tf.runs(), 4, "a new rotation_epoch runs kubesurge");

    // A failing run fails the apply ...
    fs::write(tf.ws.path("fail"), "").expect("inject failure");
    let failed = tf.apply(&["kubernetes_version=v1.35.1", "rotation_epoch=2026-12"]);
    assert!(
        !failed.status.success(),
        "a failed kubesurge run must fail the apply"
    );
    assert!(
        text(&failed.stderr).contains("injected failure")
            || text(&failed.stdout).contains("injected failure"),
        "kubesurge's own message is shown:\n{}",
        text(&failed.stderr)
    );
    assert_eq!(tf.runs(), 5);

    // ... and the next apply with the same inputs runs it again, to success.
    fs::remove_file(tf.ws.path("fail")).expect("heal");
    succeeded(
        "apply after the failure",
        tf.apply(&["kubernetes_version=v1.35.1", "rotation_epoch=2026-12"]),
    );
    assert_eq!(tf.runs(), 6, "the apply after a failure reruns kubesurge");
    assert_eq!(tf.args(6)[..3], ["upgrade", "--to", "v1.35.1"]);
    let outputs = tf.outputs();
    assert_eq!(outputs["run_ids"], serde_json::json!(["run-6"]));
    assert_eq!(outputs["outcome"], "succeeded");
    assert_eq!(outputs["final_version"], "v1.35.1");

    // Then it is done: nothing more runs.
    succeeded(
        "settled",
        tf.apply(&["kubernetes_version=v1.35.1", "rotation_epoch=2026-12"]),
    );
    assert_eq!(tf.runs(), 6);
}

#[test]
fn upgrade_module_refuses_malformed_inputs_before_running() {
    let tf = UpgradeRoot::new();
    for (vars, message) in [
        (&["kubernetes_version=1.35"][..], "must look like v1.34.2"),
        (&["kubernetes_version=v2.0.0"][..], "must look like v1.34.2"),
    ] {
        let output = tf.apply(vars);
        assert!(!output.status.success(), "{vars:?} was accepted");
        let stderr = text(&output.stderr).replace('\n', " ");
        assert!(
            stderr.contains(message),
            "{vars:?}: expected {message:?} in\n{stderr}"
        );
    }
    assert_eq!(tf.runs(), 0, "a refused input never runs kubesurge");
}

/// The `condition` of `variable "max_age"`'s validation in a module.
fn max_age_condition(module: &str) -> String {
    let text = fs::read_to_string(repo().join(format!("terraform/modules/{module}/variables.tf")))
        .expect("variables.tf");
    let block = text
        .split("variable \"")
        .find(|block| block.starts_with("max_age\""))
        .unwrap_or_else(|| panic!("{module}: no variable max_age"));
    block
        .lines()
        .find_map(|line| line.trim().strip_prefix("condition"))
        .and_then(|rest| rest.trim().strip_prefix('='))
        .unwrap_or_else(|| panic!("{module}: max_age has no validation condition"))
        .trim()
        .to_string()
}

#[test]
fn max_age_is_validated_with_kubesurges_duration_grammar() {
    // The same examples through kubesurge's parser and through each
    // module's validation, evaluated by Terraform itself. (A number too
    // large for kubesurge is beyond what a regex can refuse: kubesurge
    // refuses it with exit 2 before doing anything.)
    let examples = [
        "30s", "15m", "2h", "30d", "1h30m", "2d12h", "1d1h1m1s", "90s", "200ms", "1s500ms", " 5m ",
        "0h5m", "007s", "", "0", "0s", "0h0m", "-5m", "30", "1h30", "15x", "m", "ms", "1.5h",
        "1h 30m", "30m1h", "1m1m", "5ms1s", "1H",
    ];
    let ws = Workspace::new();
    let empty = ws.path("console");
    fs::create_dir_all(&empty).expect("dir");
    for module in ["scheduled", "upgrade"] {
        let condition = max_age_condition(module);
        // One expression: the console evaluates its input as one.
        let verdicts: Vec<String> = examples
            .iter()
            .map(|example| condition.replace("var.max_age", &format!("{example:?}")))
            .collect();
        let input = format!("jsonencode([{}])\n", verdicts.join(", "));
        let mut console = ws
            .command(&terraform_bin(), &empty)
            .args(["console", "-no-color"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("terraform console starts");
        {
            use std::io::Write;
            let mut stdin = console.stdin.take().expect("stdin");
            stdin
                .write_all(input.as_bytes())
                .expect("expression written");
        }
        let output = succeeded(
            "terraform console",
            console.wait_with_output().expect("runs"),
        );
        // The console prints the JSON as a quoted string: "[true,false]".
        let printed = text(&output.stdout);
        let json = printed.trim().trim_matches('"');
        let verdicts: Vec<bool> = serde_json::from_str(json)
            .unwrap_or_else(|e| panic!("{module}: console printed {printed:?}: {e}"));
        assert_eq!(verdicts.len(), examples.len(), "{module}: {verdicts:?}");
        for (example, terraform) in examples.iter().zip(verdicts) {
            let kubesurge = kubesurge::duration::parse_duration(example);
            assert_eq!(
                terraform,
                kubesurge.is_ok(),
                "{module}: max_age = {example:?}: kubesurge says {kubesurge:?}, Terraform {terraform}"
            );
        }
    }
}

// --- The upgrade module against a real world ----------------------------

/// `kubesurge sandbox up` as a child process: a small cluster (one
/// control-plane node, three workers) with the sim cloud behind it, and
/// the kubeconfig and RotationConfig it writes. Stopped when dropped.
struct Sandbox {
    child: Child,
    kubeconfig: PathBuf,
    config: PathBuf,
    log: PathBuf,
}

/// How long the sandbox may take to print its ready line.
const SANDBOX_READY_TIMEOUT: Duration = Duration::from_secs(60);

impl Sandbox {
    fn up(dir: &Path, version: &str) -> Sandbox {
        fs::create_dir_all(dir).expect("sandbox dir");
        let log = dir.join("sandbox.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_kubesurge"))
            .args(["sandbox", "up", "--control-planes", "1", "--workers", "3"])
            .args(["--version", version, "--boot-delay", "200ms"])
            .args(["--pod-start-delay", "100ms", "--termination-delay", "100ms"])
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&log).expect("sandbox log"))
            .spawn()
            .expect("kubesurge sandbox up starts");
        let stdout = child.stdout.take().expect("piped stdout");
        // From here on the guard stops the child whatever happens.
        let mut sandbox = Sandbox {
            child,
            kubeconfig: PathBuf::new(),
            config: PathBuf::new(),
            log,
        };
        let (lines, ready) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + SANDBOX_READY_TIMEOUT;
        loop {
            let line = ready.recv_timeout(deadline.saturating_duration_since(Instant::now()));
            match line {
                Ok(Ok(line)) => {
                    let Some(paths) = line.strip_prefix("ready: kubeconfig=") else {
                        continue;
                    };
                    let (kubeconfig, config) = paths
                        .split_once(" config=")
                        .unwrap_or_else(|| panic!("unexpected ready line {line:?}"));
                    sandbox.kubeconfig = PathBuf::from(kubeconfig);
                    sandbox.config = PathBuf::from(config);
                    return sandbox;
                }
                Ok(Err(e)) => panic!("reading the sandbox's stdout: {e}"),
                Err(_) => panic!(
                    "the sandbox printed no ready line within {SANDBOX_READY_TIMEOUT:?}:\n{}",
                    fs::read_to_string(&sandbox.log).unwrap_or_default()
                ),
            }
        }
    }
}

impl Drop for Sandbox {
    /// SIGTERM, which the sandbox answers by stopping its world (and
    /// removing the machines' directories); SIGKILL if it is still there
    /// after a while.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sandbox's cluster, seen through its kubeconfig.
struct Cluster {
    runtime: tokio::runtime::Runtime,
    client: kube::Client,
}

/// A node as the test looks at it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct NodeView {
    name: String,
    worker: bool,
    kubelet: String,
}

impl Cluster {
    fn connect(kubeconfig: &Path) -> Cluster {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let client = runtime.block_on(async {
            let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
            let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .expect("client config");
            kube::Client::try_from(config).expect("client")
        });
        Cluster { runtime, client }
    }

    fn apiserver_version(&self) -> String {
        self.runtime
            .block_on(self.client.apiserver_version())
            .expect("/version")
            .git_version
    }

    fn nodes(&self) -> Vec<NodeView> {
        use k8s_openapi::api::core::v1::Node;
        let api: kube::Api<Node> = kube::Api::all(self.client.clone());
        let list = self
            .runtime
            .block_on(api.list(&Default::default()))
            .expect("list nodes");
        let mut nodes: Vec<NodeView> = list
            .items
            .iter()
            .map(|node| NodeView {
                name: node.metadata.name.clone().unwrap_or_default(),
                worker: node
                    .metadata
                    .labels
                    .as_ref()
                    .is_some_and(|l| l.contains_key("kubesurge.io/pool")),
                kubelet: node
                    .status
                    .as_ref()
                    .and_then(|s| s.node_info.as_ref())
                    .map(|i| i.kubelet_version.clone())
                    .unwrap_or_default(),
            })
            .collect();
        nodes.sort();
        nodes
    }

    fn workers(&self) -> BTreeSet<String> {
        self.nodes()
            .into_iter()
            .filter(|n| n.worker)
            .map(|n| n.name)
            .collect()
    }

    /// A pod without a controller on `node`: a drain refuses to start on
    /// it (`drain.unmanagedPods: fail`, the default), so the rotation slot
    /// of that node fails.
    fn put_unmanaged_pod(&self, namespace: &str, name: &str, node: &str) {
        use k8s_openapi::api::core::v1::Pod;
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "nodeName": node,
                "containers": [{"name": "main", "image": "registry.example/hand-made:1"}]
            }
        }))
        .expect("pod");
        let api: kube::Api<Pod> = kube::Api::namespaced(self.client.clone(), namespace);
        self.runtime
            .block_on(api.create(&Default::default(), &pod))
            .expect("create the unmanaged pod");
    }

    fn delete_pod(&self, namespace: &str, name: &str) {
        use k8s_openapi::api::core::v1::Pod;
        let api: kube::Api<Pod> = kube::Api::namespaced(self.client.clone(), namespace);
        self.runtime
            .block_on(api.delete(name, &kube::api::DeleteParams::default().grace_period(0)))
            .expect("delete the unmanaged pod");
    }
}

/// The secret of a kubeconfig the sandbox wrote: its bearer token
/// (`token: ...`) or its client key (`client-key-data: ...`).
fn kubeconfig_secret(kubeconfig: &Path) -> String {
    let text = fs::read_to_string(kubeconfig).expect("kubeconfig");
    let secret = text
        .lines()
        .find_map(|l| {
            let l = l.trim();
            l.strip_prefix("token:")
                .or_else(|| l.strip_prefix("client-key-data:"))
        })
        .map(|t| t.trim().to_string())
        .unwrap_or_default();
    assert!(
        secret.len() >= 16,
        "the sandbox's kubeconfig has a credential:\n{text}"
    );
    secret
}

/// A root module driving `terraform/modules/upgrade` with the real
/// kubesurge against the sandbox. The kubeconfig path reaches Terraform
/// only as `TF_VAR_kubeconfig_path` in its environment.
struct RealRoot {
    ws: Workspace,
    root: PathBuf,
    /// The RotationConfig file the module passes to kubesurge.
    config: PathBuf,
    report: PathBuf,
    kubeconfig: PathBuf,
}

impl RealRoot {
    fn new(ws: Workspace, sandbox: &Sandbox) -> RealRoot {
        let root = ws.path("root");
        fs::create_dir_all(&root).expect("root");
        // The sandbox's config, with a short settle so that each apply is
        // quick; the file stays the same for every apply.
        let config = ws.path("kubesurge.yaml");
        let mut text = fs::read_to_string(&sandbox.config).expect("sandbox config");
        text.push_str("health: { newNodeTimeout: 20s, settle: 1s }\n");
        fs::write(&config, text).expect("config");
        let report = ws.path("report.json");
        let mut outputs = String::new();
        for name in [
            "outcome",
            "failure_reason",
            "target_version",
            "final_version",
            "nodes_replaced",
            "control_plane_hops",
            "run_ids",
        ] {
            outputs.push_str(&format!(
                "\noutput \"{name}\" {{\n  value = module.upgrade.{name}\n}}\n"
            ));
        }
        fs::write(
            root.join("main.tf"),
            format!(
                r#"
variable "kubernetes_version" {{
  type = string
}}

variable "kubeconfig_path" {{
  type = string
}}

module "upgrade" {{
  source             = "../terraform/modules/upgrade"
  kubesurge_bin      = "{bin}"
  kubernetes_version = var.kubernetes_version
  config_path        = "{config}"
  kubeconfig_path    = var.kubeconfig_path
  report_path        = "{report}"
}}
{outputs}"#,
                bin = env!("CARGO_BIN_EXE_kubesurge"),
                config = config.display(),
                report = report.display(),
            ),
        )
        .expect("root module");
        ws.init(&root);
        RealRoot {
            ws,
            root,
            config,
            report,
            kubeconfig: sandbox.kubeconfig.clone(),
        }
    }

    fn apply(&self, version: &str) -> Output {
        self.ws
            .command(&terraform_bin(), &self.root)
            .env("TF_VAR_kubeconfig_path", &self.kubeconfig)
            .args(["apply", "-auto-approve", "-input=false", "-no-color"])
            .arg(format!("-var=kubernetes_version={version}"))
            .output()
            .expect("terraform runs")
    }

    fn outputs(&self) -> Value {
        let output = succeeded(
            "terraform output -json",
            self.ws.terraform(&self.root, &["output", "-json"]),
        );
        let all: Value = serde_json::from_slice(&output.stdout).expect("outputs json");
        let mut values = serde_json::Map::new();
        for (name, output) in all.as_object().expect("outputs object") {
            values.insert(name.clone(), output["value"].clone());
        }
        Value::Object(values)
    }

    /// kubesurge's report as it wrote it (bytes: a run rewrites them).
    fn report_bytes(&self) -> Vec<u8> {
        fs::read(&self.report).expect("report file")
    }

    fn report(&self) -> Value {
        serde_json::from_slice(&self.report_bytes()).expect("report json")
    }

    fn state(&self) -> String {
        fs::read_to_string(self.root.join("terraform.tfstate")).expect("state")
    }

    /// `terraform plan -detailed-exitcode` for `version`: its exit code (0
    /// nothing to do, 2 changes) and what it printed.
    fn plan(&self, version: &str) -> (Option<i32>, String) {
        let output = self
            .ws
            .command(&terraform_bin(), &self.root)
            .env("TF_VAR_kubeconfig_path", &self.kubeconfig)
            .args(["plan", "-detailed-exitcode", "-input=false", "-no-color"])
            .arg(format!("-var=kubernetes_version={version}"))
            .output()
            .expect("terraform runs");
        (output.status.code(), all_output(&output))
    }

    /// The instances of the module's run resource in the state file:
    /// their `kubernetes_version` trigger and whether they are tainted.
    fn run_instances(&self) -> Vec<(String, bool)> {
        let state: Value = serde_json::from_str(&self.state()).expect("state json");
        let mut found = Vec::new();
        for resource in state["resources"].as_array().into_iter().flatten() {
            if resource["type"] != "null_resource" || resource["name"] != "run" {
                continue;
            }
            for instance in resource["instances"].as_array().into_iter().flatten() {
                found.push((
                    instance["attributes"]["triggers"]["kubernetes_version"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    instance["status"] == "tainted",
                ));
            }
        }
        found
    }

    /// Replace the config's `window:` line (or add one).
    fn set_window(&self, window: &str) {
        let text = fs::read_to_string(&self.config).expect("config");
        let mut lines: Vec<&str> = text.lines().filter(|l| !l.starts_with("window:")).collect();
        lines.push(window.trim_end());
        fs::write(&self.config, lines.join("\n") + "\n").expect("config");
    }
}

fn all_output(output: &Output) -> String {
    format!("{}{}", text(&output.stdout), text(&output.stderr))
}

/// The module's outputs after a successful upgrade to `version`.
fn assert_succeeded(outputs: &Value, version: &str, hops: u64, replaced: u64) {
    assert_eq!(outputs["outcome"], "succeeded", "{outputs:#}");
    assert_eq!(outputs["failure_reason"], Value::Null, "{outputs:#}");
    assert_eq!(outputs["target_version"], version, "{outputs:#}");
    assert_eq!(outputs["final_version"], version, "{outputs:#}");
    assert_eq!(outputs["control_plane_hops"], hops, "{outputs:#}");
    assert_eq!(outputs["nodes_replaced"], replaced, "{outputs:#}");
}

fn run_ids_of(report: &Value) -> Value {
    Value::Array(
        report["rotations"]
            .as_array()
            .expect("rotations")
            .iter()
            .map(|r| r["runId"].clone())
            .collect(),
    )
}

#[test]
fn upgrade_module_upgrades_a_sandbox_cluster_once_per_version_and_completes_a_failed_run() {
    let ws = Workspace::new();
    let sandbox = Sandbox::up(&ws.path("world"), "v1.33.2");
    let cluster = Cluster::connect(&sandbox.kubeconfig);
    let token = kubeconfig_secret(&sandbox.kubeconfig);
    let original_workers = cluster.workers();
    assert_eq!(original_workers.len(), 3, "{:?}", cluster.nodes());
    let tf = RealRoot::new(ws, &sandbox);
    let mut applies = Vec::new();

    // (1) The first apply upgrades the cluster: the control plane in place,
    // then every worker replaced, and the outputs say so.
    let first = succeeded("first apply", tf.apply("v1.34.0"));
    assert!(
        text(&first.stdout).contains("replaced by"),
        "kubesurge's progress appears in Terraform's output:\n{}",
        text(&first.stdout)
    );
    assert_eq!(cluster.apiserver_version(), "v1.34.0");
    for node in cluster.nodes() {
        assert_eq!(node.kubelet, "v1.34.0", "{node:?}");
    }
    let upgraded_workers = cluster.workers();
    assert_eq!(upgraded_workers.len(), 3);
    assert!(
        upgraded_workers.is_disjoint(&original_workers),
        "every worker replaced: {original_workers:?} → {upgraded_workers:?}"
    );
    let outputs = tf.outputs();
    assert_succeeded(&outputs, "v1.34.0", 1, 3);
    assert_eq!(outputs["run_ids"], run_ids_of(&tf.report()));
    assert_eq!(outputs["run_ids"].as_array().map(Vec::len), Some(1));
    applies.push(first);

    // (2) The same inputs again change nothing: kubesurge does not run (it
    // would rewrite its report, even with nothing to do).
    let report_after_first = tf.report_bytes();
    let unchanged = succeeded("unchanged apply", tf.apply("v1.34.0"));
    assert!(
        text(&unchanged.stdout).contains("0 added, 0 changed, 0 destroyed"),
        "{}",
        text(&unchanged.stdout)
    );
    assert_eq!(
        tf.report_bytes(),
        report_after_first,
        "an apply with unchanged inputs ran kubesurge"
    );
    assert_eq!(cluster.workers(), upgraded_workers);
    applies.push(unchanged);

    // (3) A new target version runs kubesurge again; (4) a pod without a
    // controller on a worker makes that worker's drain refuse, so the run
    // fails after the control plane moved, and so does the apply, with
    // kubesurge's reason shown.
    let blocked_node = upgraded_workers.iter().next().expect("a worker").clone();
    cluster.put_unmanaged_pod("shop", "hand-made", &blocked_node);
    let failed = tf.apply("v1.35.0");
    let failed_text = all_output(&failed);
    assert!(
        !failed.status.success(),
        "a failed kubesurge run must fail the apply:\n{failed_text}"
    );
    assert!(
        failed_text.contains("pod shop/hand-made has no controller"),
        "kubesurge's own reason is shown:\n{failed_text}"
    );
    let failed_report = tf.report();
    assert_eq!(failed_report["target"], "v1.35.0");
    assert_eq!(
        failed_report["outcome"]["result"], "failed",
        "{failed_report:#}"
    );
    assert_eq!(failed_report["hops"].as_array().map(Vec::len), Some(1));
    assert_eq!(cluster.apiserver_version(), "v1.35.0");
    assert!(
        cluster.workers().contains(&blocked_node),
        "the node whose drain was refused still serves"
    );
    applies.push(failed);

    // The next apply with the same inputs runs kubesurge again, which
    // continues the same rotation and completes the upgrade.
    cluster.delete_pod("shop", "hand-made");
    let completed = succeeded("apply after the failure", tf.apply("v1.35.0"));
    for node in cluster.nodes() {
        assert_eq!(node.kubelet, "v1.35.0", "{node:?}");
    }
    let final_workers = cluster.workers();
    assert_eq!(final_workers.len(), 3);
    assert!(
        final_workers.is_disjoint(&upgraded_workers),
        "{final_workers:?}"
    );
    let outputs = tf.outputs();
    // No hop: the control plane was already at v1.35.0.
    assert_succeeded(&outputs, "v1.35.0", 0, 3);
    assert_eq!(
        outputs["run_ids"],
        run_ids_of(&failed_report),
        "the completing run continues the failed run's rotation"
    );
    applies.push(completed);

    // Then it is settled: nothing runs.
    let report_after_completion = tf.report_bytes();
    let settled = succeeded("settled", tf.apply("v1.35.0"));
    assert_eq!(tf.report_bytes(), report_after_completion);
    applies.push(settled);

    // The kubeconfig's credentials and path are in neither the state nor
    // anything Terraform printed.
    let kubeconfig = sandbox.kubeconfig.display().to_string();
    let mut places = vec![("terraform.tfstate".to_string(), tf.state())];
    for (n, apply) in applies.iter().enumerate() {
        places.push((format!("apply {}", n + 1), all_output(apply)));
    }
    for (place, content) in &places {
        assert!(
            !content.contains(&token),
            "the kubeconfig's credential leaked into {place}"
        );
        assert!(
            !content.contains(&kubeconfig),
            "the kubeconfig path leaked into {place}"
        );
    }
}

/// Design §10: a deferred run (exit 5) fails `terraform apply`, naming why
/// and when the window opens; the state records no run that did not
/// happen (the resource is tainted, so the next apply runs kubesurge
/// again); the next apply inside the window completes the upgrade.
#[test]
fn upgrade_module_fails_the_apply_outside_the_window_and_completes_inside_it() {
    let ws = Workspace::new();
    let sandbox = Sandbox::up(&ws.path("world"), "v1.33.2");
    let cluster = Cluster::connect(&sandbox.kubeconfig);
    let original_workers = cluster.workers();
    assert_eq!(original_workers.len(), 3, "{:?}", cluster.nodes());
    let tf = RealRoot::new(ws, &sandbox);
    let now = jiff::Timestamp::now();
    // Opened two hours ago, closed an hour ago (near midnight, on another
    // day): either way, closed now.
    tf.set_window(&super::rotation::window(
        now - jiff::SignedDuration::from_hours(2),
        now - jiff::SignedDuration::from_hours(1),
    ));

    // (1) Outside the window the apply fails, and its error says why and
    // when the window opens.
    let deferred = tf.apply("v1.34.0");
    let deferred_text = all_output(&deferred);
    assert!(
        !deferred.status.success(),
        "a deferred run must fail the apply:\n{deferred_text}"
    );
    let error = deferred_text
        .split("Error: local-exec provisioner error")
        .nth(1)
        .unwrap_or_else(|| panic!("no provisioner error:\n{deferred_text}"))
        .replace('\n', " ");
    for expected in [
        "exit status 5",
        "outside the maintenance window",
        "it opens at",
        "1 control-plane hop and 3 worker(s) left",
    ] {
        assert!(
            error.contains(expected),
            "the apply's error names {expected:?}:\n{error}"
        );
    }
    let report = tf.report();
    assert_eq!(report["target"], "v1.34.0", "{report:#}");
    assert_eq!(report["outcome"]["result"], "deferred", "{report:#}");
    assert_eq!(
        report["outcome"]["remaining"],
        serde_json::json!({"hops": 1, "nodes": 3}),
        "{report:#}"
    );
    let opens_at: jiff::Timestamp = report["outcome"]["opensAt"]
        .as_str()
        .expect("opensAt")
        .parse()
        .expect("an RFC 3339 instant");
    assert!(opens_at > now, "{report:#}");
    // Nothing changed in the cluster.
    assert_eq!(cluster.apiserver_version(), "v1.33.2");
    assert_eq!(cluster.workers(), original_workers);

    // (2) The state records no run that did not happen: the resource with
    // the new trigger is absent or tainted, and the next plan runs it.
    for (version, tainted) in tf.run_instances() {
        assert!(
            tainted || version != "v1.34.0",
            "the state records a run to {version} that did not happen:\n{}",
            tf.state()
        );
    }
    let (code, plan) = tf.plan("v1.34.0");
    assert_eq!(code, Some(2), "the next apply must run kubesurge:\n{plan}");
    assert!(
        plan.contains("module.upgrade.null_resource.run is tainted, so must be replaced")
            || plan.contains("module.upgrade.null_resource.run will be created"),
        "the next apply must run kubesurge:\n{plan}"
    );

    // (3) Still outside the window: the next apply runs kubesurge again
    // and fails again.
    let first_report = tf.report_bytes();
    let again = tf.apply("v1.34.0");
    assert!(!again.status.success(), "{}", all_output(&again));
    assert!(
        all_output(&again).contains("outside the maintenance window"),
        "{}",
        all_output(&again)
    );
    assert_ne!(tf.report_bytes(), first_report, "kubesurge ran again");
    assert_eq!(cluster.workers(), original_workers);

    // (4) Inside the window the apply completes the upgrade.
    let now = jiff::Timestamp::now();
    tf.set_window(&super::rotation::window(
        now - jiff::SignedDuration::from_hours(1),
        now + jiff::SignedDuration::from_hours(1),
    ));
    succeeded("apply inside the window", tf.apply("v1.34.0"));
    assert_eq!(cluster.apiserver_version(), "v1.34.0");
    for node in cluster.nodes() {
        assert_eq!(node.kubelet, "v1.34.0", "{node:?}");
    }
    assert!(
        cluster.workers().is_disjoint(&original_workers),
        "every worker replaced"
    );
    assert_succeeded(&tf.outputs(), "v1.34.0", 1, 3);
    assert_eq!(
        tf.run_instances(),
        [("v1.34.0".to_string(), false)],
        "the state records the run that happened:\n{}",
        tf.state()
    );

    // (5) Then it is settled: nothing runs.
    let report_after_completion = tf.report_bytes();
    succeeded("settled", tf.apply("v1.34.0"));
    assert_eq!(tf.report_bytes(), report_after_completion);
}
