//! The `kubesurge` binary as a user runs it: help, exit codes, every kind
//! of bad input refused with exit 2 before anything is contacted, an
//! unreachable API server, and `plan` against the emulated cluster.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use kubesurge_testworld::apiserver::{self, ApiServerConfig, ApiServerHandle, ClusterCa};
use kubesurge_testworld::resources::{DAEMONSETS, DEPLOYMENTS, NODES, PODS};
use kubesurge_testworld::store::Store;
use serde_json::{Value, json};
use tempfile::TempDir;

/// The binary with an environment that cannot leak the developer's own
/// cluster or config into a test.
fn kubesurge(home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kubesurge"));
    command
        .env_remove("KUBECONFIG")
        .env_remove("KUBESURGE_CONFIG")
        .env_remove("RUST_LOG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env("HOME", home)
        .stdin(Stdio::null());
    command
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn new(output: Output) -> Run {
        let run = Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        assert!(
            !run.stderr.contains("panicked") && !run.stdout.contains("panicked"),
            "the binary panicked:\n{}",
            run.stderr
        );
        run
    }

    fn of(command: &mut Command) -> Run {
        Run::new(command.output().expect("run kubesurge"))
    }
}

/// A kubeconfig whose only cluster is `server`.
fn kubeconfig_for(dir: &Path, server: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\n\
             clusters:\n- name: test\n  cluster: {{server: \"{server}\", insecure-skip-tls-verify: true}}\n\
             contexts:\n- name: test\n  context: {{cluster: test, user: test}}\n\
             users:\n- name: test\n  user: {{token: not-a-real-token}}\n"
        ),
    )
    .expect("write kubeconfig");
    path
}

/// A port on 127.0.0.1 with nothing listening.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

const EXIT_CODE_LINES: [&str; 6] = [
    "0  done",
    "1  failed; the cluster was left safe and a rerun resumes",
    "2  invalid input, or refused before any change",
    "3  another run holds the lock",
    "4  aborted on request",
    "5  deferred or not finished, nothing wrong: outside the maintenance window,",
];

/// The commands `--help` lists (without clap's own `help`).
fn listed_commands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn help_documents_every_exit_code_for_every_command() {
    let home = TempDir::new().unwrap();
    let top = Run::of(kubesurge(home.path()).arg("--help"));
    assert_eq!(top.code, Some(0), "{}", top.stderr);
    let commands = listed_commands(&top.stdout);
    assert!(commands.iter().any(|c| c == "plan"), "{commands:?}");

    let mut helps = vec![("kubesurge".to_string(), top.stdout.clone())];
    for command in &commands {
        let run = Run::of(kubesurge(home.path()).args([command.as_str(), "--help"]));
        assert_eq!(run.code, Some(0), "{command} --help: {}", run.stderr);
        helps.push((command.clone(), run.stdout));
    }
    for (command, help) in helps {
        assert!(help.contains("Exit codes:"), "{command}:\n{help}");
        // Examples come first, and show the command itself.
        let examples = help
            .split_once("Examples:\n")
            .map(|(_, rest)| rest)
            .unwrap_or_else(|| panic!("{command} has no Examples:\n{help}"));
        let examples = examples.split("Exit codes:").next().unwrap_or_default();
        let shown = if command == "kubesurge" {
            "kubesurge ".to_string()
        } else {
            format!("kubesurge {command}")
        };
        assert!(examples.contains(&shown), "{command}:\n{help}");
        for line in EXIT_CODE_LINES {
            assert!(help.contains(line), "{command} lacks {line:?}:\n{help}");
        }
    }
}

/// Each case: a file name, its content, what stderr must say.
fn invalid_configs() -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
    const HEAD: &str =
        "apiVersion: kubesurge.io/v1alpha1\nkind: RotationConfig\ncluster: {name: test}\n";
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let pool = |extra: &str| {
        leak(format!(
            "{HEAD}pools:\n  - name: general\n    selector: {{kubesurge.io/pool: general}}\n    \
             provider: sim\n    sim: {{endpoint: \"http://127.0.0.1:9\"}}\n{extra}"
        ))
    };
    vec![
        (
            "unknown-field.yaml",
            pool("    maxSurgee: 2\n"),
            vec!["pools[0].maxSurgee: unknown field; did you mean \"maxSurge\"?"],
        ),
        (
            "bad-duration.yaml",
            leak(format!("{HEAD}drain:\n  timeout: 15\n")),
            vec!["drain.timeout: \"15\" has no unit"],
        ),
        (
            "bad-budget.yaml",
            pool("    maxSurge: abc\n"),
            vec!["pools[0].maxSurge: \"abc\" is neither an integer nor a percentage"],
        ),
        (
            "zero-budgets.yaml",
            pool("    maxSurge: 0\n    maxUnavailable: 0%\n"),
            vec!["pools[0].maxSurge: maxSurge and maxUnavailable are both zero"],
        ),
        (
            "duplicate-pools.yaml",
            leak(format!(
                "{HEAD}pools:\n  - {{name: a, selector: {{p: a}}, provider: sim, sim: {{endpoint: \"http://h:1\"}}}}\n  \
                 - {{name: a, selector: {{p: b}}, provider: sim, sim: {{endpoint: \"http://h:1\"}}}}\n"
            )),
            vec!["pools[1].name: \"a\" is already the name of pools[0]"],
        ),
        (
            "empty-selector.yaml",
            leak(format!(
                "{HEAD}pools:\n  - {{name: a, selector: {{}}, provider: sim, sim: {{endpoint: \"http://h:1\"}}}}\n"
            )),
            vec!["pools[0].selector: must not be empty"],
        ),
        (
            "bad-time-zone.yaml",
            leak(format!(
                "{HEAD}window: {{days: [Sat], start: \"02:00\", end: \"06:00\", timeZone: Europe/Atlantis}}\n"
            )),
            vec!["window.timeZone: \"Europe/Atlantis\" is not a time zone"],
        ),
        (
            "bad-window-time.yaml",
            leak(format!(
                "{HEAD}window: {{days: [Sat], start: \"02:00\", end: \"6pm\", timeZone: UTC}}\n"
            )),
            vec!["window.end: \"6pm\" is not a time of day (expected \"HH:MM\""],
        ),
        (
            "wrong-kind.yaml",
            "apiVersion: kubesurge.io/v1alpha1\nkind: Deployment\ncluster: {name: test}\n",
            vec!["kind: \"Deployment\" is not a kind this file can be (expected RotationConfig)"],
        ),
        (
            "wrong-api-version.yaml",
            "apiVersion: kubesurge.io/v1\nkind: RotationConfig\ncluster: {name: test}\n",
            vec![
                "apiVersion: \"kubesurge.io/v1\" is not supported (expected kubesurge.io/v1alpha1)",
            ],
        ),
        (
            "syntax-error.yaml",
            "apiVersion: kubesurge.io/v1alpha1\ncluster:\n  name: a\n nope: 2\n",
            vec!["is not valid YAML", "line 4, column 2"],
        ),
        (
            "many-problems.yaml",
            pool(
                "    maxSurge: 200%\n    nodeTaints: [{key: x, effect: Never}]\ndrain: {onTimeout: forse}\n",
            ),
            vec![
                "has 3 problems",
                "pools[0].maxSurge: \"200%\" is more than 100%",
                "pools[0].nodeTaints[0].effect: \"Never\" is not one of NoSchedule, PreferNoSchedule, NoExecute",
                "drain.onTimeout: \"forse\" is not one of fail, force, skip; did you mean \"force\"?",
            ],
        ),
    ]
}

#[test]
fn invalid_config_files_exit_2_naming_the_field_and_contact_nothing() {
    let dir = TempDir::new().unwrap();
    // A server that must never be called: settings come first.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let kubeconfig = kubeconfig_for(
        dir.path(),
        &format!("https://{}", listener.local_addr().unwrap()),
    );
    for (name, content, expected) in invalid_configs() {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let run = Run::of(
            kubesurge(dir.path())
                .arg("plan")
                .arg("--config")
                .arg(&path)
                .arg("--kubeconfig")
                .arg(&kubeconfig),
        );
        assert_eq!(run.code, Some(2), "{name}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{name}: stdout {:?}", run.stdout);
        assert!(
            run.stderr.contains(&path.display().to_string()),
            "{name} is not named:\n{}",
            run.stderr
        );
        for fragment in expected {
            assert!(
                run.stderr.contains(fragment),
                "{name}: expected {fragment:?} in\n{}",
                run.stderr
            );
        }
    }
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_err(),
        "the API server was contacted although the settings were invalid"
    );
}

#[test]
fn a_missing_config_file_exits_2_with_its_path() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("nowhere.yaml");
    // Through the environment variable this time.
    let run = Run::of(
        kubesurge(dir.path())
            .arg("plan")
            .env("KUBESURGE_CONFIG", &missing),
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("cannot read config file"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("nowhere.yaml"), "{}", run.stderr);
}

#[test]
fn bad_flags_exit_2_naming_the_flag() {
    let dir = TempDir::new().unwrap();
    let cases: [(&[&str], &[&str]); 5] = [
        (
            &["plan", "--to", "garbage"],
            &["--to", "garbage", "not a Kubernetes version"],
        ),
        (
            &["plan", "-o", "xml"],
            &["--output", "xml", "table, json, yaml"],
        ),
        (&["plan", "--log-format", "xml"], &["--log-format", "xml"]),
        (
            &["plan", "--drain-timeout", "30"],
            &["drain.timeout (--drain-timeout)", "has no unit"],
        ),
        (
            &["plan", "--on-drain-timeout", "later"],
            &["drain.onTimeout (--on-drain-timeout)", "\"later\""],
        ),
    ];
    for (args, fragments) in cases {
        let run = Run::of(kubesurge(dir.path()).args(args));
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        for fragment in fragments {
            assert!(
                run.stderr.contains(fragment),
                "{args:?}: expected {fragment:?} in\n{}",
                run.stderr
            );
        }
    }
}

#[test]
fn kubeconfig_problems_exit_2_naming_the_flag() {
    let dir = TempDir::new().unwrap();
    let kubeconfig = kubeconfig_for(dir.path(), "https://127.0.0.1:1");

    let missing = dir.path().join("no-such-kubeconfig");
    let run = Run::of(
        kubesurge(dir.path())
            .arg("plan")
            .arg("--kubeconfig")
            .arg(&missing),
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("no-such-kubeconfig"), "{}", run.stderr);
    assert!(run.stderr.contains("--kubeconfig"), "{}", run.stderr);

    let run = Run::of(
        kubesurge(dir.path())
            .args(["plan", "--context", "elsewhere"])
            .env("KUBECONFIG", &kubeconfig),
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "context \"elsewhere\" (from --context) is not in the kubeconfig; contexts there: test"
        ),
        "{}",
        run.stderr
    );

    // No kubeconfig anywhere and not in a cluster.
    let run = Run::of(kubesurge(dir.path()).arg("plan"));
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("no kubeconfig: pass --kubeconfig"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_unreachable_api_server_exits_1_naming_its_url() {
    let dir = TempDir::new().unwrap();
    let server = format!("https://127.0.0.1:{}", closed_port());
    let kubeconfig = kubeconfig_for(dir.path(), &server);
    let run = Run::of(
        kubesurge(dir.path())
            .arg("plan")
            .arg("--kubeconfig")
            .arg(&kubeconfig),
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "error: cannot reach the Kubernetes API server at {server}: "
        )),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("Connection refused"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

/// `version -o json` names the release, the commit the binary was built
/// from (the checkout's HEAD here) and the release table's month.
#[test]
fn version_names_the_release_and_the_commit_it_was_built_from() {
    let dir = TempDir::new().unwrap();
    let run = Run::of(kubesurge(dir.path()).args(["version", "-o", "json"]));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let doc: Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(doc["kind"], "Version");
    assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"));
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(head) = head {
        assert_eq!(doc["commit"], head.as_str(), "built from HEAD");
    }
    assert!(
        doc["releaseTableAsOf"]
            .as_str()
            .is_some_and(|m| m.len() == 7),
        "{doc}"
    );
    let text = Run::of(kubesurge(dir.path()).arg("version"));
    assert!(text.stdout.starts_with("kubesurge "), "{}", text.stdout);
}

/// `-o jsonpath=TEMPLATE` prints exactly what the template makes of the
/// JSON document (no newline added, as kubectl); a template that cannot
/// be read is refused before anything runs (exit 2), naming the formats;
/// a missing key prints nothing, as with `kubectl get`.
#[test]
fn jsonpath_output_prints_what_the_template_makes_of_the_document() {
    let dir = TempDir::new().unwrap();
    let run = Run::of(kubesurge(dir.path()).args([
        "version",
        "-o",
        r#"jsonpath={.apiVersion} {.kind} {.version}{"\n"}"#,
    ]));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        run.stdout,
        format!(
            "kubesurge.io/v1alpha1 Version {}\n",
            env!("CARGO_PKG_VERSION")
        )
    );
    for (format, says) in [
        ("jsonpath={.kind", "unclosed action"),
        ("jsonpath", "jsonpath needs a template"),
        ("xml", "one of table, json, yaml, jsonpath=TEMPLATE"),
    ] {
        let run = Run::of(kubesurge(dir.path()).args(["version", "-o", format]));
        assert_eq!(run.code, Some(2), "{format}: {}", run.stderr);
        assert!(run.stderr.contains(says), "{format}: {}", run.stderr);
    }
    let run = Run::of(kubesurge(dir.path()).args(["version", "-o", "jsonpath={.kind[3]}"]));
    assert_eq!(
        run.code,
        Some(0),
        "not an array: nothing printed: {}",
        run.stderr
    );
    assert_eq!(run.stdout, "");
}

#[test]
fn logs_can_be_json_on_stderr() {
    let dir = TempDir::new().unwrap();
    let kubeconfig = kubeconfig_for(dir.path(), &format!("https://127.0.0.1:{}", closed_port()));
    let run = Run::of(
        kubesurge(dir.path())
            .args(["plan", "--log-format", "json", "-v", "--kubeconfig"])
            .arg(&kubeconfig),
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let log_lines: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with('{')).collect();
    assert!(!log_lines.is_empty(), "{}", run.stderr);
    for line in log_lines {
        let record: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(record.get("level").is_some(), "{line}");
    }
    assert!(
        run.stdout.is_empty(),
        "logs must not reach stdout: {}",
        run.stdout
    );
}

#[test]
fn log_level_follows_quiet_verbose_and_rust_log() {
    let dir = TempDir::new().unwrap();
    let kubeconfig = kubeconfig_for(dir.path(), &format!("https://127.0.0.1:{}", closed_port()));
    let stderr_of = |args: &[&str], rust_log: Option<&str>| {
        let mut command = kubesurge(dir.path());
        command
            .arg("plan")
            .args(args)
            .arg("--kubeconfig")
            .arg(&kubeconfig);
        if let Some(directives) = rust_log {
            command.env("RUST_LOG", directives);
        }
        let run = Run::of(&mut command);
        assert_eq!(run.code, Some(1), "{}", run.stderr);
        run.stderr
    };
    let info = "reading the cluster";
    let debug = "settings loaded";

    let default = stderr_of(&[], None);
    assert!(
        default.contains(info) && !default.contains(debug),
        "{default}"
    );
    let quiet = stderr_of(&["-q"], None);
    assert!(!quiet.contains(info), "{quiet}");
    assert!(
        quiet.contains("error: cannot reach"),
        "errors are never hidden: {quiet}"
    );
    let verbose = stderr_of(&["-v"], None);
    assert!(verbose.contains(debug), "{verbose}");
    let from_env = stderr_of(&["-q"], Some("kubesurge=debug"));
    assert!(from_env.contains(debug), "RUST_LOG wins: {from_env}");
}

// ---------------------------------------------------------------------------
// `plan` against the emulated cluster.

const VERSION: &str = "v1.35.1";

struct Emulated {
    server: ApiServerHandle,
    dir: TempDir,
    kubeconfig: PathBuf,
    config: PathBuf,
}

fn node(name: &str, labels: Value, kubelet: &str) -> Value {
    json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"providerID": format!("sim:///zone-a/{name}")},
        "status": {
            "nodeInfo": {
                "kubeletVersion": kubelet, "kubeProxyVersion": "", "machineID": name,
                "systemUUID": name, "bootID": name, "kernelVersion": "6.8.0",
                "osImage": "Ubuntu 24.04", "containerRuntimeVersion": "containerd://2.0.0",
                "operatingSystem": "linux", "architecture": "amd64"
            },
            "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]
        }
    })
}

fn workload(name: &str, image: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "kube-system"},
        "spec": {
            "selector": {"matchLabels": {"k8s-app": name}},
            "template": {
                "metadata": {"labels": {"k8s-app": name}},
                "spec": {"containers": [{"name": name, "image": image}]}
            }
        }
    })
}

/// One control-plane node and three workers of pool `general`, all at
/// [`VERSION`], with the static pods and add-ons kubeadm installs.
async fn emulated_cluster() -> Emulated {
    let store = Store::new();
    let ca = Arc::new(ClusterCa::generate().expect("CA"));
    let server = apiserver::start(
        store.clone(),
        ca,
        ApiServerConfig {
            version: VERSION.to_string(),
            ..ApiServerConfig::default()
        },
    )
    .await
    .expect("start the API server emulator");

    store
        .create(
            &NODES,
            "",
            node(
                "cp-1",
                json!({"node-role.kubernetes.io/control-plane": ""}),
                VERSION,
            ),
        )
        .unwrap();
    for i in 1..=3 {
        store
            .create(
                &NODES,
                "",
                node(
                    &format!("worker-{i}"),
                    json!({"kubesurge.io/pool": "general"}),
                    VERSION,
                ),
            )
            .unwrap();
    }
    for component in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "etcd",
    ] {
        let tag = if component == "etcd" {
            "3.5.24-0"
        } else {
            VERSION
        };
        store
            .create(
                &PODS,
                "kube-system",
                json!({
                    "metadata": {"name": format!("{component}-cp-1"), "namespace": "kube-system",
                                 "labels": {"component": component, "tier": "control-plane"}},
                    "spec": {"nodeName": "cp-1",
                             "containers": [{"name": component, "image": format!("registry.k8s.io/{component}:{tag}")}]}
                }),
            )
            .unwrap();
    }
    store
        .create(
            &DEPLOYMENTS,
            "kube-system",
            workload("coredns", "registry.k8s.io/coredns/coredns:v1.12.1"),
        )
        .unwrap();
    store
        .create(
            &DAEMONSETS,
            "kube-system",
            workload(
                "kube-proxy",
                &format!("registry.k8s.io/kube-proxy:{VERSION}"),
            ),
        )
        .unwrap();

    let dir = TempDir::new().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig_yaml()).unwrap();
    let config = dir.path().join("rotation.yaml");
    std::fs::write(
        &config,
        "apiVersion: kubesurge.io/v1alpha1\nkind: RotationConfig\ncluster: {name: e2e}\n\
         pools:\n  - name: general\n    selector: {kubesurge.io/pool: general}\n    provider: sim\n    \
         sim: {endpoint: \"http://127.0.0.1:9\"}\n    maxSurge: 1\n",
    )
    .unwrap();
    Emulated {
        server,
        dir,
        kubeconfig,
        config,
    }
}

impl Emulated {
    fn plan(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::from(kubesurge(self.dir.path()));
        command
            .arg("plan")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--config")
            .arg(&self.config);
        command
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_reads_the_cluster_and_prints_json_or_a_table() {
    let cluster = emulated_cluster().await;

    let run = Run::new(cluster.plan().args(["-o", "json"]).output().await.unwrap());
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let plan: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", run.stdout));
    assert!(plan.is_object(), "{plan}");
    assert!(
        run.stdout.contains(VERSION),
        "the plan names the cluster's version:\n{}",
        run.stdout
    );

    let run = Run::new(cluster.plan().output().await.unwrap());
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(!run.stdout.trim().is_empty(), "no table printed");

    // Read-only: only gets, lists and the version.
    let counts = cluster.server.request_counts();
    for verb in ["create", "update", "patch", "delete"] {
        assert_eq!(counts.verb(verb), 0, "plan sent a {verb}: {counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_refuses_a_downgrade_with_exit_2() {
    let cluster = emulated_cluster().await;
    let run = Run::new(
        cluster
            .plan()
            .args(["--to", "v1.34.0"])
            .output()
            .await
            .unwrap(),
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("refused"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_is_not_a_crash() {
    let cluster = emulated_cluster().await;
    let mut child = cluster
        .plan()
        .args(["-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the plan is written.
    drop(child.stdout.take());
    let output = child.wait_with_output().await.unwrap();
    let run = Run::new(output);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
}

/// A TLS failure or rejected credentials never pass by waiting: a command
/// that rides through API server restarts (`rotate`, `upgrade`) fails at
/// once with exit 1 and a sentence about the kubeconfig, not after minutes
/// of retries, and no library's wording.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_credential_failures_fail_at_once_naming_the_kubeconfig() {
    use base64::Engine as _;
    let cluster = emulated_cluster().await;
    let good = std::fs::read_to_string(&cluster.kubeconfig).unwrap();
    let other_ca = ClusterCa::generate().expect("CA");
    let other_ca_data = base64::engine::general_purpose::STANDARD.encode(&other_ca.cert_pem);
    let replace_line = |prefix: &str, value: &str| {
        good.lines()
            .map(|l| match l.split_once(prefix) {
                Some((indent, _)) if indent.trim().is_empty() => {
                    format!("{indent}{prefix} {value}")
                }
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let cases = [
        (
            "wrong-ca",
            replace_line("certificate-authority-data:", &other_ca_data),
            "cannot connect to the Kubernetes API server at ",
            "the API server's certificate is not signed by the certificate authority the kubeconfig trusts",
        ),
        (
            // The admin's client certificate swapped for a token the server
            // never issued.
            "wrong-token",
            good.lines()
                .filter(|l| !l.trim_start().starts_with("client-key-data:"))
                .map(|l| match l.split_once("client-certificate-data:") {
                    Some((indent, _)) => format!("{indent}token: not-the-admin-token"),
                    None => l.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n"),
            "from the Kubernetes API server at ",
            "the API server rejected the kubeconfig's credentials (401 Unauthorized)",
        ),
    ];
    for (name, kubeconfig, context, sentence) in cases {
        assert_ne!(kubeconfig, good, "{name}: the kubeconfig was changed");
        let path = cluster.dir.path().join(name);
        std::fs::write(&path, kubeconfig).unwrap();
        for command in [
            &["rotate", "--all", "--yes"][..],
            &["upgrade", "--to", "v1.35.2", "--yes"],
        ] {
            let started = std::time::Instant::now();
            let run = Run::new(
                tokio::process::Command::from(kubesurge(cluster.dir.path()))
                    .args(command)
                    .arg("--kubeconfig")
                    .arg(&path)
                    .arg("--config")
                    .arg(&cluster.config)
                    .output()
                    .await
                    .unwrap(),
            );
            let took = started.elapsed();
            assert_eq!(run.code, Some(1), "{name} {command:?}: {}", run.stderr);
            assert!(
                took < std::time::Duration::from_secs(20),
                "{name} {command:?} took {took:?}: {}",
                run.stderr
            );
            for expected in [context, sentence] {
                assert!(
                    run.stderr.contains(expected),
                    "{name} {command:?}: {expected:?} in {}",
                    run.stderr
                );
            }
            for internal in [
                "ApiError",
                "Status {",
                "ServiceError",
                "UnknownIssuer",
                "retrying",
            ] {
                assert!(
                    !run.stderr.contains(internal),
                    "{name} {command:?}: {internal:?} in {}",
                    run.stderr
                );
            }
        }
    }
}

#[test]
fn the_bash_completion_script_loads_in_bash_and_every_shell_gets_one() {
    let home = TempDir::new().unwrap();
    let bin = env!("CARGO_BIN_EXE_kubesurge");
    let loaded = Run::of(
        Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source <('{bin}' completion bash) && complete -p kubesurge"
            ))
            .env("HOME", home.path())
            .stdin(Stdio::null()),
    );
    assert_eq!(loaded.code, Some(0), "{}", loaded.stderr);
    assert!(
        loaded.stdout.contains("-F _kubesurge kubesurge"),
        "{}",
        loaded.stdout
    );
    for shell in ["zsh", "fish", "powershell"] {
        let run = Run::of(kubesurge(home.path()).args(["completion", shell]));
        assert_eq!(run.code, Some(0), "{shell}: {}", run.stderr);
        for command in ["upgrade", "rotate", "dry-run"] {
            assert!(run.stdout.contains(command), "{shell} lacks {command}");
        }
    }
    let bad = Run::of(kubesurge(home.path()).args(["completion", "tcsh"]));
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert!(bad.stderr.contains("possible values"), "{}", bad.stderr);
}

#[test]
fn manual_pages_are_written_for_every_command() {
    let home = TempDir::new().unwrap();
    let top = Run::of(kubesurge(home.path()).arg("--help"));
    let dir = home.path().join("man1");
    std::fs::create_dir_all(&dir).unwrap();
    let run = Run::of(kubesurge(home.path()).arg("man").arg("--dir").arg(&dir));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let main = std::fs::read_to_string(dir.join("kubesurge.1")).expect("kubesurge.1");
    assert!(
        main.starts_with(".ie") || main.contains(".TH kubesurge"),
        "{main}"
    );
    assert!(main.contains("Exit codes:"), "{main}");
    for command in listed_commands(&top.stdout) {
        let page = dir.join(format!("kubesurge-{command}.1"));
        let text =
            std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        assert!(text.contains("Examples:"), "{command}:\n{text}");
    }
    // The hidden command has no page and is not listed.
    assert!(!dir.join("kubesurge-man.1").exists());
    assert!(!listed_commands(&top.stdout).contains(&"man".to_string()));
}

/// `-o json` and `-o yaml` print the same document, which names its
/// apiVersion and kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_documents_carry_api_version_and_kind_as_json_or_yaml() {
    let cluster = emulated_cluster().await;
    let json = Run::new(cluster.plan().args(["-o", "json"]).output().await.unwrap());
    assert_eq!(json.code, Some(0), "{}", json.stderr);
    let json: Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(json["apiVersion"], "kubesurge.io/v1alpha1", "{json:#}");
    assert_eq!(json["kind"], "UpgradePlan", "{json:#}");
    let yaml = Run::new(cluster.plan().args(["-o", "yaml"]).output().await.unwrap());
    assert_eq!(yaml.code, Some(0), "{}", yaml.stderr);
    assert!(
        yaml.stdout
            .starts_with("apiVersion: kubesurge.io/v1alpha1\nkind: UpgradePlan\n"),
        "{}",
        yaml.stdout
    );
    let from_yaml: Value = serde_saphyr::from_str(&yaml.stdout).expect("YAML");
    assert_eq!(from_yaml, json, "the YAML and the JSON say the same");
}

/// `--request-timeout` bounds how long a silent API server is waited for.
#[test]
fn request_timeout_bounds_the_wait_for_a_silent_api_server() {
    let dir = TempDir::new().unwrap();
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let server = format!("https://{}", listener.local_addr().unwrap());
    let held = std::thread::spawn(move || {
        let mut connections = Vec::new();
        for stream in listener.incoming().take(8) {
            connections.push(stream);
        }
    });
    let kubeconfig = kubeconfig_for(dir.path(), &server);
    let started = std::time::Instant::now();
    let run = Run::of(
        kubesurge(dir.path())
            .args(["plan", "--request-timeout", "1s", "--kubeconfig"])
            .arg(&kubeconfig),
    );
    let took = started.elapsed();
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(took < std::time::Duration::from_secs(15), "took {took:?}");
    assert!(
        run.stderr.contains(&format!(
            "cannot reach the Kubernetes API server at {server}: it did not answer in time"
        )),
        "{}",
        run.stderr
    );
    drop(held);

    let bad = Run::of(kubesurge(dir.path()).args(["plan", "--request-timeout", "soon"]));
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert!(bad.stderr.contains("--request-timeout"), "{}", bad.stderr);
}
