//! The real kubectl against the emulator: what an operator types during a
//! rotation must work as against a real cluster.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use kubesurge_testworld::apiserver::{self, ApiServerConfig, ApiServerHandle, ClusterCa};
use kubesurge_testworld::resources::{DAEMONSETS, NODES, PDBS, PODS};
use kubesurge_testworld::store::{EventType, Preconditions, Store};
use serde_json::{Value, json};
use tempfile::TempDir;

const KUBECTL: &str = "/usr/bin/kubectl";

pub(crate) struct Env {
    pub(crate) store: Arc<Store>,
    _server: ApiServerHandle,
    home: TempDir,
    kubeconfig: PathBuf,
}

async fn env() -> Env {
    assert!(
        Path::new(KUBECTL).exists(),
        "kubectl is required for these tests and was not found at {KUBECTL}"
    );
    let store = Store::new();
    let ca = Arc::new(ClusterCa::generate().expect("CA"));
    let server = apiserver::start(store.clone(), ca, ApiServerConfig::default())
        .await
        .expect("server starts");
    let home = TempDir::new().unwrap();
    let kubeconfig = home.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig_yaml()).unwrap();
    Env {
        store,
        _server: server,
        home,
        kubeconfig,
    }
}

pub(crate) async fn kubectl(env: &Env, args: &[&str]) -> Output {
    let output = tokio::process::Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(args)
        .env("HOME", env.home.path())
        .env_remove("KUBECONFIG")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("kubectl finishes within 60s")
        .expect("kubectl runs")
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub(crate) async fn kubectl_ok(env: &Env, args: &[&str]) -> String {
    let out = kubectl(env, args).await;
    assert!(
        out.status.success(),
        "kubectl {args:?} failed:\nstdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

fn node(store: &Store, name: &str, ready: &str, control_plane: bool, unschedulable: bool) {
    let mut labels = json!({"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"});
    if control_plane {
        labels["node-role.kubernetes.io/control-plane"] = json!("");
        labels["node.kubernetes.io/exclude-from-external-load-balancers"] = json!("");
    }
    store
        .create(
            &NODES,
            "",
            json!({
                "metadata": {"name": name, "labels": labels},
                "spec": {"unschedulable": unschedulable, "providerID": format!("sim:///{name}")},
                "status": {
                    "conditions": [{"type": "Ready", "status": ready, "reason": "KubeletReady",
                                    "message": "kubelet is posting ready status",
                                    "lastHeartbeatTime": "2025-01-01T00:00:00Z",
                                    "lastTransitionTime": "2025-01-01T00:00:00Z"}],
                    "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": name}],
                    "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                    "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                    "nodeInfo": {"kubeletVersion": "v1.32.4", "kubeProxyVersion": "v1.32.4",
                                 "osImage": "Ubuntu 24.04 LTS", "kernelVersion": "6.8.0",
                                 "containerRuntimeVersion": "containerd://1.7.22",
                                 "operatingSystem": "linux", "architecture": "amd64",
                                 "machineID": "m", "systemUUID": "s", "bootID": "b"}
                }
            }),
        )
        .unwrap();
}

/// A running, ready pod on `node_name`, owned by `owner` (kind, name).
fn pod(
    store: &Store,
    ns: &str,
    name: &str,
    node_name: &str,
    labels: Value,
    owner: Option<(&str, &str)>,
) {
    let mut metadata = json!({"name": name, "namespace": ns, "labels": labels});
    if let Some((kind, owner_name)) = owner {
        let api_version = "apps/v1";
        metadata["ownerReferences"] = json!([{"apiVersion": api_version, "kind": kind, "name": owner_name,
            "uid": format!("uid-{owner_name}"), "controller": true, "blockOwnerDeletion": true}]);
    }
    store
        .create(
            &PODS,
            ns,
            json!({
                "metadata": metadata,
                "spec": {"nodeName": node_name, "terminationGracePeriodSeconds": 30,
                         "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]},
                "status": {"phase": "Running", "podIP": "10.244.0.5",
                           "conditions": [{"type": "Ready", "status": "True"}],
                           "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0,
                                                  "image": "registry.k8s.io/pause:3.10", "imageID": "",
                                                  "state": {"running": {"startedAt": "2025-01-01T00:00:00Z"}}}]}
            }),
        )
        .unwrap();
}

fn pdb(store: &Store, name: &str, app: &str, allowed: i64) {
    store
        .create(
            &PDBS,
            "default",
            json!({"metadata": {"name": name}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": app}}}}),
        )
        .unwrap();
    store
        .modify(&PDBS, "default", name, |p| {
            p["status"] = json!({"observedGeneration": 1, "disruptionsAllowed": allowed,
                                 "currentHealthy": 2, "desiredHealthy": 1, "expectedPods": 2});
            Ok(())
        })
        .unwrap();
}

/// Play the kubelet: finish the deletion of any pod marked for deletion.
fn fake_kubelet(store: Arc<Store>) -> tokio::task::JoinHandle<()> {
    let mut events = store.subscribe();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            if std::ptr::eq(event.resource, &PODS)
                && event.event_type == EventType::Modified
                && event
                    .object
                    .pointer("/metadata/deletionTimestamp")
                    .is_some()
            {
                let _ = store.delete(
                    &PODS,
                    &event.namespace,
                    &event.name,
                    &Preconditions::default(),
                );
            }
        }
    })
}

/// Whitespace-split rows of a kubectl table, header first.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_nodes_shows_status_roles_and_versions() {
    let env = env().await;
    node(&env.store, "cp1", "True", true, false);
    node(&env.store, "w1", "True", false, true);
    node(&env.store, "w2", "Unknown", false, false);
    let out = kubectl_ok(&env, &["get", "nodes"]).await;
    let rows = rows(&out);
    assert_eq!(
        rows[0],
        ["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
        "{out}"
    );
    assert_eq!(rows.len(), 4, "{out}");
    let row = |name: &str| rows.iter().find(|r| r[0] == name).cloned().unwrap();
    let cp1 = row("cp1");
    assert_eq!(
        (cp1[1].as_str(), cp1[2].as_str(), cp1[4].as_str()),
        ("Ready", "control-plane", "v1.32.4")
    );
    assert!(
        cp1[3].ends_with('s') || cp1[3].ends_with('m'),
        "age {}",
        cp1[3]
    );
    assert_eq!(row("w1")[1], "Ready,SchedulingDisabled");
    assert_eq!(row("w1")[2], "<none>");
    assert_eq!(row("w2")[1], "NotReady");
    let wide = kubectl_ok(&env, &["get", "node", "cp1", "-o", "wide"]).await;
    assert!(
        wide.contains("INTERNAL-IP")
            && wide.contains("10.0.0.1")
            && wide.contains("containerd://1.7.22"),
        "{wide}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_pods_in_all_namespaces_and_as_json() {
    let env = env().await;
    pod(
        &env.store,
        "default",
        "web-1",
        "w1",
        json!({"app": "web"}),
        None,
    );
    pod(
        &env.store,
        "kube-system",
        "coredns-1",
        "cp1",
        json!({"k8s-app": "kube-dns"}),
        None,
    );
    let out = kubectl_ok(&env, &["get", "pods", "-A"]).await;
    let rows = rows(&out);
    assert_eq!(
        rows[0],
        ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{out}"
    );
    let web = rows.iter().find(|r| r[1] == "web-1").unwrap();
    assert_eq!(&web[..5], ["default", "web-1", "1/1", "Running", "0"]);
    assert!(
        rows.iter()
            .any(|r| r[0] == "kube-system" && r[1] == "coredns-1")
    );
    let json_out = kubectl_ok(&env, &["get", "pods", "-o", "json"]).await;
    let list: Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["metadata"]["name"], "web-1");
    assert_eq!(list["items"][0]["kind"], "Pod");
    let wide = kubectl_ok(&env, &["get", "pods", "-o", "wide", "-l", "app=web"]).await;
    assert!(
        wide.contains("NODE") && wide.contains("w1") && wide.contains("10.244.0.5"),
        "{wide}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cordon_uncordon_and_describe_node() {
    let env = env().await;
    node(&env.store, "w1", "True", false, false);
    pod(
        &env.store,
        "default",
        "web-1",
        "w1",
        json!({"app": "web"}),
        None,
    );
    let out = kubectl_ok(&env, &["cordon", "w1"]).await;
    assert!(out.contains("node/w1 cordoned"), "{out}");
    let stored = env.store.get(&NODES, "", "w1").unwrap();
    assert_eq!(stored["spec"]["unschedulable"], true);
    let out = kubectl_ok(&env, &["get", "nodes"]).await;
    assert!(out.contains("Ready,SchedulingDisabled"), "{out}");
    let out = kubectl_ok(&env, &["uncordon", "w1"]).await;
    assert!(out.contains("node/w1 uncordoned"), "{out}");
    let stored = env.store.get(&NODES, "", "w1").unwrap();
    assert!(
        stored["spec"]
            .get("unschedulable")
            .is_none_or(|u| u == false),
        "{stored}"
    );
    let out = kubectl_ok(&env, &["describe", "node", "w1"]).await;
    assert!(out.contains("Name:") && out.contains("w1"), "{out}");
    assert!(
        out.contains("web-1"),
        "describe lists the node's pods:\n{out}"
    );
}

/// A node with two web pods under a PDB, a DaemonSet pod and a pod with an
/// emptyDir volume.
fn drain_world(store: &Store, allowed: i64) {
    node(store, "w1", "True", false, false);
    store
        .create(
            &DAEMONSETS,
            "kube-system",
            json!({"metadata": {"name": "kube-proxy"},
                   "spec": {"selector": {"matchLabels": {"k8s-app": "kube-proxy"}},
                            "template": {"metadata": {"labels": {"k8s-app": "kube-proxy"}},
                                         "spec": {"containers": [{"name": "p", "image": "x"}]}}}}),
        )
        .unwrap();
    pod(
        store,
        "kube-system",
        "kube-proxy-1",
        "w1",
        json!({"k8s-app": "kube-proxy"}),
        Some(("DaemonSet", "kube-proxy")),
    );
    pod(
        store,
        "default",
        "web-1",
        "w1",
        json!({"app": "web"}),
        Some(("ReplicaSet", "web-abc")),
    );
    pod(
        store,
        "default",
        "web-2",
        "w1",
        json!({"app": "web"}),
        Some(("ReplicaSet", "web-abc")),
    );
    pod(
        store,
        "default",
        "cache-1",
        "w1",
        json!({"app": "cache"}),
        Some(("ReplicaSet", "cache-abc")),
    );
    store
        .modify(&PODS, "default", "cache-1", |p| {
            p["spec"]["volumes"] = json!([{"name": "scratch", "emptyDir": {}}]);
            Ok(())
        })
        .unwrap();
    pdb(store, "web", "web", allowed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_evicts_under_a_budget_that_allows_it() {
    let env = env().await;
    drain_world(&env.store, 2);
    let kubelet = fake_kubelet(env.store.clone());
    let out = kubectl(
        &env,
        &[
            "drain",
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "w1",
            "--timeout=30s",
        ],
    )
    .await;
    kubelet.abort();
    let (o, e) = (stdout(&out), stderr(&out));
    assert!(out.status.success(), "stdout:\n{o}\nstderr:\n{e}");
    assert!(o.contains("node/w1 cordoned"), "{o}");
    assert!(
        o.contains("evicting pod default/web-1") || e.contains("evicting pod default/web-1"),
        "{o}{e}"
    );
    assert!(o.contains("node/w1 drained"), "{o}");
    assert!(e.contains("ignoring DaemonSet-managed Pods"), "{e}");
    for gone in ["web-1", "web-2", "cache-1"] {
        assert!(
            env.store.get(&PODS, "default", gone).is_none(),
            "{gone} still there"
        );
    }
    assert!(
        env.store
            .get(&PODS, "kube-system", "kube-proxy-1")
            .is_some()
    );
    assert_eq!(
        env.store.get(&PDBS, "default", "web").unwrap()["status"]["disruptionsAllowed"],
        0
    );
    assert_eq!(
        env.store.get(&NODES, "", "w1").unwrap()["spec"]["unschedulable"],
        true
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_under_a_blocking_budget_retries_then_times_out() {
    let env = env().await;
    drain_world(&env.store, 0);
    let kubelet = fake_kubelet(env.store.clone());
    let out = kubectl(
        &env,
        &[
            "drain",
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "w1",
            "--timeout=3s",
        ],
    )
    .await;
    kubelet.abort();
    let (o, e) = (stdout(&out), stderr(&out));
    assert!(
        !out.status.success(),
        "drain must fail:\nstdout:\n{o}\nstderr:\n{e}"
    );
    assert!(
        e.contains("(will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget."),
        "{e}"
    );
    assert!(e.contains("global timeout reached: 3s"), "{e}");
    // The budget held: the web pods are still there; the unprotected one went.
    assert!(env.store.get(&PODS, "default", "web-1").is_some());
    assert!(env.store.get(&PODS, "default", "web-2").is_some());
    assert!(env.store.get(&PODS, "default", "cache-1").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_and_delete_namespaces_configmaps_and_secrets() {
    let env = env().await;
    let out = kubectl_ok(&env, &["create", "namespace", "team"]).await;
    assert!(out.contains("namespace/team created"), "{out}");
    let out = kubectl_ok(
        &env,
        &[
            "-n",
            "team",
            "create",
            "configmap",
            "settings",
            "--from-literal=mode=fast",
        ],
    )
    .await;
    assert!(out.contains("configmap/settings created"), "{out}");
    let out = kubectl_ok(
        &env,
        &[
            "-n",
            "team",
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal=password=s3cret",
        ],
    )
    .await;
    assert!(out.contains("secret/creds created"), "{out}");
    let cm = env
        .store
        .get(
            &kubesurge_testworld::resources::CONFIGMAPS,
            "team",
            "settings",
        )
        .unwrap();
    assert_eq!(cm["data"]["mode"], "fast");
    let secret = env
        .store
        .get(&kubesurge_testworld::resources::SECRETS, "team", "creds")
        .unwrap();
    assert_eq!(secret["data"]["password"], "czNjcmV0");
    assert_eq!(secret["type"], "Opaque");
    let out = kubectl_ok(&env, &["-n", "team", "get", "configmaps,secrets"]).await;
    assert!(
        out.contains("configmap/settings") && out.contains("secret/creds"),
        "{out}"
    );
    let out = kubectl_ok(&env, &["delete", "namespace", "team"]).await;
    assert!(out.contains("namespace \"team\" deleted"), "{out}");
    assert!(
        env.store
            .get(
                &kubesurge_testworld::resources::CONFIGMAPS,
                "team",
                "settings"
            )
            .is_none()
    );
}

const DEPLOYMENT_YAML: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: 3
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
        ports:
        - containerPort: 80
";

fn write_manifest(env: &Env, name: &str, text: &str) -> String {
    let path = env.home.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// `kubectl apply -f` with kubectl's default validation: the server
/// advertises field validation in /openapi/v3, so kubectl leaves it to
/// the server, which accepts a valid object and refuses an unknown field
/// with a real server's wording.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_validates_fields_on_the_server() {
    let env = env().await;
    let manifest = write_manifest(&env, "deployment.yaml", DEPLOYMENT_YAML);
    let out = kubectl_ok(&env, &["apply", "-f", &manifest]).await;
    assert!(out.contains("deployment.apps/web created"), "{out}");
    let stored = env
        .store
        .get(
            &kubesurge_testworld::resources::DEPLOYMENTS,
            "default",
            "web",
        )
        .unwrap();
    assert_eq!(stored["spec"]["replicas"], 3);
    let out = kubectl_ok(&env, &["apply", "-f", &manifest]).await;
    assert!(out.contains("deployment.apps/web unchanged"), "{out}");
    // A changed image is patched in, the container list merged by name.
    let changed = DEPLOYMENT_YAML.replace("nginx:1.27", "nginx:1.28");
    let manifest2 = write_manifest(&env, "deployment2.yaml", &changed);
    let out = kubectl_ok(&env, &["apply", "-f", &manifest2]).await;
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    let stored = env
        .store
        .get(
            &kubesurge_testworld::resources::DEPLOYMENTS,
            "default",
            "web",
        )
        .unwrap();
    let containers = stored["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 1, "{stored}");
    assert_eq!(containers[0]["image"], "nginx:1.28");

    let typo = DEPLOYMENT_YAML
        .replace("name: web\n  labels", "name: typo\n  labels")
        .replace("replicas: 3", "replicaz: 3");
    let bad = write_manifest(&env, "typo.yaml", &typo);
    let out = kubectl(&env, &["apply", "-f", &bad]).await;
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains(&format!(
            "Error from server (BadRequest): error when creating \"{bad}\": Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: unknown field \"spec.replicaz\""
        )),
        "{}",
        stderr(&out)
    );
    assert!(
        env.store
            .get(
                &kubesurge_testworld::resources::DEPLOYMENTS,
                "default",
                "typo"
            )
            .is_none()
    );
    // The same typo in a change of an existing object.
    let typo_update = changed.replace("replicas: 3", "replicaz: 3");
    let bad_update = write_manifest(&env, "typo2.yaml", &typo_update);
    let out = kubectl(&env, &["apply", "-f", &bad_update]).await;
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("strict decoding error: unknown field \"spec.replicaz\""),
        "{}",
        stderr(&out)
    );

    // `create -f` and `replace -f` send the file as it is, with strict
    // field validation (kubectl's default `--validate=strict`); kubectl
    // names the file and the verb (`AddSourceToErr` in
    // staging/src/k8s.io/kubectl/pkg/cmd/util/helpers.go).
    let other = DEPLOYMENT_YAML.replace("name: web\n  labels", "name: other\n  labels");
    let created = write_manifest(&env, "other.yaml", &other);
    let out = kubectl_ok(&env, &["create", "-f", &created]).await;
    assert!(out.contains("deployment.apps/other created"), "{out}");
    let out = kubectl(&env, &["create", "-f", &created]).await;
    assert!(
        stderr(&out).contains(&format!(
            "Error from server (AlreadyExists): error when creating \"{created}\": deployments.apps \"other\" already exists"
        )),
        "{}",
        stderr(&out)
    );
    let replaced = write_manifest(
        &env,
        "other2.yaml",
        &other.replace("nginx:1.27", "nginx:1.28"),
    );
    let out = kubectl_ok(&env, &["replace", "-f", &replaced]).await;
    assert!(out.contains("deployment.apps/other replaced"), "{out}");
    let stored = env
        .store
        .get(
            &kubesurge_testworld::resources::DEPLOYMENTS,
            "default",
            "other",
        )
        .unwrap();
    assert_eq!(
        stored["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.28"
    );
    let bad_replace = write_manifest(
        &env,
        "other3.yaml",
        &other.replace("replicas: 3", "replicaz: 3"),
    );
    let out = kubectl(&env, &["replace", "-f", &bad_replace]).await;
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains(&format!(
            "Error from server (BadRequest): error when replacing \"{bad_replace}\": Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: unknown field \"spec.replicaz\""
        )),
        "{}",
        stderr(&out)
    );
    let typo_create = write_manifest(
        &env,
        "typo3.yaml",
        &typo.replace("name: typo\n", "name: typo3\n"),
    );
    let out = kubectl(&env, &["create", "-f", &typo_create]).await;
    assert!(
        stderr(&out).contains("error when creating")
            && stderr(&out).contains("strict decoding error: unknown field \"spec.replicaz\""),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_reads_the_openapi_documents() {
    let env = env().await;
    let out = kubectl_ok(&env, &["explain", "deployment.spec"]).await;
    assert!(out.contains("GROUP:      apps"), "{out}");
    assert!(out.contains("KIND:       Deployment"), "{out}");
    assert!(out.contains("FIELD: spec <DeploymentSpec>"), "{out}");
    assert!(out.contains("replicas\t<integer>"), "{out}");
    assert!(
        out.contains("template\t<PodTemplateSpec> -required-"),
        "{out}"
    );
    let out = kubectl_ok(&env, &["explain", "pods.spec.containers.image"]).await;
    assert!(out.contains("FIELD: image <string>"), "{out}");
    let out = kubectl_ok(&env, &["explain", "nodes", "--recursive"]).await;
    assert!(out.contains("unschedulable"), "{out}");
}

/// kubectl's typed `create` commands send protobuf bodies and ask for
/// protobuf answers; each works as against a real cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_creates_send_and_receive_protobuf() {
    use kubesurge_testworld::resources::DEPLOYMENTS;
    let env = env().await;
    let out = kubectl_ok(&env, &["create", "deployment", "web", "--image=nginx"]).await;
    assert!(out.contains("deployment.apps/web created"), "{out}");
    let d = env.store.get(&DEPLOYMENTS, "default", "web").unwrap();
    assert_eq!(d["spec"]["replicas"], 1, "{d}");
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "web");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx"
    );
    assert!(d["metadata"].get("generateName").is_none(), "{d}");
    let out = kubectl_ok(
        &env,
        &[
            "create",
            "deployment",
            "zero",
            "--image=nginx",
            "--replicas=0",
            "--port=80",
        ],
    )
    .await;
    assert!(out.contains("deployment.apps/zero created"), "{out}");
    let z = env.store.get(&DEPLOYMENTS, "default", "zero").unwrap();
    assert_eq!(z["spec"]["replicas"], 0, "{z}");
    assert_eq!(
        z["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        80
    );

    let out = kubectl_ok(
        &env,
        &[
            "create",
            "pdb",
            "web",
            "--selector=app=web",
            "--min-available=3",
        ],
    )
    .await;
    assert!(
        out.contains("poddisruptionbudget.policy/web created"),
        "{out}"
    );
    let p = env.store.get(&PDBS, "default", "web").unwrap();
    assert_eq!(p["spec"]["minAvailable"], 3, "{p}");
    assert_eq!(p["spec"]["selector"]["matchLabels"]["app"], "web");
    let out = kubectl_ok(
        &env,
        &[
            "create",
            "pdb",
            "half",
            "--selector=app=web",
            "--max-unavailable=50%",
        ],
    )
    .await;
    assert!(out.contains("created"), "{out}");
    let p = env.store.get(&PDBS, "default", "half").unwrap();
    assert_eq!(p["spec"]["maxUnavailable"], "50%", "{p}");

    // Reading them back through kubectl (tables, JSON) still works.
    let out = kubectl_ok(&env, &["get", "deployment", "web", "-o", "json"]).await;
    let back: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        back["spec"]["template"]["spec"]["containers"][0]["name"],
        "nginx"
    );
    let out = kubectl_ok(&env, &["get", "pdb"]).await;
    assert!(out.contains("web") && out.contains("half"), "{out}");
    // An already existing name is refused as a cluster refuses it.
    let out = kubectl(&env, &["create", "deployment", "web", "--image=nginx"]).await;
    assert!(
        stderr(&out).contains(
            "error: failed to create deployment: deployments.apps \"web\" already exists"
        ),
        "{}",
        stderr(&out)
    );
}

/// A running world (controllers and kubelets) and kubectl pointed at it.
pub(crate) async fn world_env() -> (kubesurge_testworld::world::World, Env) {
    use kubesurge_testworld::world::{PoolSpec, World, WorldConfig};
    let world = World::start(WorldConfig {
        cluster_name: "kubectl".into(),
        control_planes: 1,
        pools: vec![PoolSpec {
            name: "general".into(),
            workers: 2,
        }],
        zones: 2,
        version: "v1.33.4".into(),
        timing: kubesurge_testworld::Timing::fast(),
        workloads: false,
    })
    .await
    .expect("world starts");
    world
        .wait_ready(Duration::from_secs(60))
        .await
        .expect("world settles");
    let home = TempDir::new().unwrap();
    let kubeconfig = home.path().join("kubeconfig");
    std::fs::write(&kubeconfig, world.kubeconfig_yaml()).unwrap();
    let (store, server) = (world.store.clone(), world.apiserver.clone());
    (
        world,
        Env {
            store,
            _server: server,
            home,
            kubeconfig,
        },
    )
}

/// What an operator types while watching an upgrade, against a running
/// world: rollouts, scaling, waits, labels, annotations, health.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_an_operator_types_during_an_upgrade() {
    use kubesurge_testworld::resources::DEPLOYMENTS;
    let (world, env) = world_env().await;
    kubectl_ok(&env, &["create", "deployment", "web", "--image=nginx:1.27"]).await;
    let out = kubectl_ok(
        &env,
        &["rollout", "status", "deployment/web", "--timeout=60s"],
    )
    .await;
    assert!(
        out.contains("deployment \"web\" successfully rolled out"),
        "{out}"
    );
    let out = kubectl_ok(&env, &["scale", "deployment/web", "--replicas=3"]).await;
    assert!(out.contains("deployment.apps/web scaled"), "{out}");
    assert_eq!(
        env.store.get(&DEPLOYMENTS, "default", "web").unwrap()["spec"]["replicas"],
        3
    );
    let out = kubectl_ok(
        &env,
        &["rollout", "status", "deployment/web", "--timeout=60s"],
    )
    .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let out = kubectl_ok(&env, &["get", "deployment", "web"]).await;
    assert!(out.contains("3/3"), "{out}");
    let out = kubectl_ok(&env, &["rollout", "restart", "deployment/web"]).await;
    assert!(out.contains("deployment.apps/web restarted"), "{out}");
    let d = env.store.get(&DEPLOYMENTS, "default", "web").unwrap();
    assert!(
        d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_string(),
        "{d}"
    );
    let out = kubectl_ok(
        &env,
        &["rollout", "status", "deployment/web", "--timeout=60s"],
    )
    .await;
    assert!(out.contains("successfully rolled out"), "{out}");

    // Typed clients read lists and objects back in protobuf.
    let out = kubectl_ok(&env, &["rollout", "history", "deployment/web"]).await;
    assert!(out.contains("REVISION"), "{out}");
    let out = kubectl_ok(&env, &["rollout", "undo", "deployment/web"]).await;
    assert!(out.contains("deployment.apps/web rolled back"), "{out}");
    let d = env.store.get(&DEPLOYMENTS, "default", "web").unwrap();
    assert!(
        d.pointer("/spec/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt")
            .is_none(),
        "the template before the restart is back: {d}"
    );

    let out = kubectl_ok(
        &env,
        &["rollout", "status", "deployment/web", "--timeout=60s"],
    )
    .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    // The revision rolled back to is the newest one.
    let out = kubectl_ok(&env, &["rollout", "history", "deployment/web"]).await;
    let revisions: Vec<&str> = out
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, ["2", "3"], "{out}");
    let out = kubectl_ok(&env, &["describe", "deployment", "web"]).await;
    assert!(
        out.contains("Replicas:") && out.contains("NewReplicaSet:"),
        "{out}"
    );
    let pods = kubectl_ok(&env, &["get", "pods", "-l", "app=web", "-o", "name"]).await;
    let out = kubectl_ok(&env, &["describe", pods.lines().next().unwrap()]).await;
    assert!(out.contains("Status:") && out.contains("Running"), "{out}");

    // Nodes: wait for Ready, label, annotate.
    let nodes = kubectl_ok(&env, &["get", "nodes", "-o", "name"]).await;
    let node = nodes.lines().next().unwrap().to_string();
    let out = kubectl_ok(
        &env,
        &["wait", "--for=condition=Ready", &node, "--timeout=30s"],
    )
    .await;
    assert!(out.contains("condition met"), "{out}");
    kubectl_ok(&env, &["label", &node, "phase=old"]).await;
    let out = kubectl(&env, &["label", &node, "phase=new"]).await;
    assert!(
        stderr(&out).contains("already has a value (old), and --overwrite is false"),
        "{}",
        stderr(&out)
    );
    let out = kubectl_ok(&env, &["label", "--overwrite", &node, "phase=new"]).await;
    assert!(out.contains("labeled"), "{out}");
    let out = kubectl_ok(&env, &["annotate", &node, "upgrade/note=rotating"]).await;
    assert!(out.contains("annotated"), "{out}");
    let name = node.trim_start_matches("node/");
    let stored = env.store.get(&NODES, "", name).unwrap();
    assert_eq!(stored["metadata"]["labels"]["phase"], "new");
    assert_eq!(
        stored["metadata"]["annotations"]["upgrade/note"],
        "rotating"
    );

    // Deleting a pod waits until the kubelet has stopped it.
    let pods = kubectl_ok(&env, &["get", "pods", "-l", "app=web", "-o", "name"]).await;
    let pod = pods.lines().next().unwrap().to_string();
    let out = kubectl_ok(&env, &["delete", &pod, "--timeout=60s"]).await;
    assert!(out.contains("deleted"), "{out}");
    let out = kubectl_ok(&env, &["get", &pod, "--ignore-not-found"]).await;
    assert!(out.trim().is_empty(), "{out}");
    let other = kubectl_ok(&env, &["get", "pods", "-l", "app=web", "-o", "name"]).await;
    let other = other.lines().next().unwrap().to_string();
    let delete_args = ["delete", other.as_str(), "--wait=false"];
    let wait_args = ["wait", "--for=delete", other.as_str(), "--timeout=60s"];
    let (deleted, waited) = tokio::join!(kubectl(&env, &delete_args), kubectl(&env, &wait_args));
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    assert!(
        waited.status.success() || stderr(&waited).contains("not found"),
        "{}",
        stderr(&waited)
    );

    let out = kubectl_ok(&env, &["get", "--raw", "/readyz?verbose"]).await;
    assert!(out.contains("[+]etcd ok"), "{out}");
    assert!(out.trim_end().ends_with("readyz check passed"), "{out}");

    // Typos are refused, by kubectl or by the server, in their words.
    let out = kubectl(&env, &["scale", "deployment/web", "--replicaz=2"]).await;
    assert!(
        stderr(&out).contains("unknown flag: --replicaz"),
        "{}",
        stderr(&out)
    );
    // kubectl patch leaves field validation to the server's default
    // (Warn): the unknown field is dropped and named in a warning.
    let out = kubectl(
        &env,
        &[
            "patch",
            "deployment",
            "web",
            "-p",
            r#"{"spec":{"replicaz":2}}"#,
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Warning: unknown field \"spec.replicaz\""),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("deployment.apps/web patched (no change)"),
        "{}",
        stdout(&out)
    );
    world.stop();
}

/// Run a never-ending kubectl (a watch) until its output holds every one
/// of `needles`, or `deadline` passes; returns the output so far.
async fn watch_until(env: &Env, args: &[&str], needles: &[&str], deadline: Duration) -> String {
    use tokio::io::AsyncReadExt;
    let mut child = tokio::process::Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(args)
        .env("HOME", env.home.path())
        .env_remove("KUBECONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl runs");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(deadline, async {
        while !needles.iter().all(|n| seen.contains(n)) {
            match stdout.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    })
    .await;
    let _ = child.kill().await;
    let mut errors = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut errors).await;
    }
    if !errors.is_empty() {
        seen.push_str("\nstderr:\n");
        seen.push_str(&errors);
    }
    seen
}

/// Events from the scheduler, the kubelets and the node lifecycle
/// controller, with their real reasons, as `kubectl get events --watch`
/// and `kubectl describe node` show them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_tell_what_happened() {
    let (world, env) = world_env().await;
    let nodes = kubectl_ok(&env, &["get", "nodes", "-o", "name"]).await;
    let node = nodes
        .lines()
        .map(|l| l.trim_start_matches("node/").to_string())
        .find(|n| !n.contains("cp"))
        .unwrap_or_else(|| {
            nodes
                .lines()
                .last()
                .unwrap()
                .trim_start_matches("node/")
                .to_string()
        });
    let not_schedulable = format!("Node {node} status is now: NodeNotSchedulable");
    let needles = [
        not_schedulable.as_str(),
        "Successfully assigned default/web-",
        "Started container nginx",
    ];
    let watch = watch_until(
        &env,
        &["get", "events", "-A", "--watch"],
        &needles,
        Duration::from_secs(30),
    );
    let act = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        kubectl_ok(&env, &["cordon", &node]).await;
        kubectl_ok(&env, &["create", "deployment", "web", "--image=nginx:1.27"]).await;
    };
    let (seen, ()) = tokio::join!(watch, act);
    for reason in ["NodeNotSchedulable", "Scheduled", "Started"] {
        assert!(seen.contains(reason), "no {reason} in:\n{seen}");
    }
    let header = seen.lines().next().unwrap_or("");
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        [
            "NAMESPACE",
            "LAST",
            "SEEN",
            "TYPE",
            "REASON",
            "OBJECT",
            "MESSAGE"
        ],
        "{seen}"
    );
    assert!(
        seen.contains(&format!("Node {node} status is now: NodeNotSchedulable")),
        "{seen}"
    );
    assert!(
        seen.contains("Successfully assigned default/web-"),
        "{seen}"
    );

    let out = kubectl_ok(&env, &["describe", "node", &node]).await;
    let events = out.split("Events:").nth(1).unwrap_or("");
    for reason in [
        "Starting",
        "NodeReady",
        "RegisteredNode",
        "NodeNotSchedulable",
    ] {
        assert!(events.contains(reason), "no {reason} in:\n{out}");
    }
    assert!(
        events.contains("kubelet") && events.contains("node-controller"),
        "{out}"
    );

    let out = kubectl_ok(
        &env,
        &["get", "events", "--field-selector", "reason=Pulled"],
    )
    .await;
    assert!(
        out.contains("Container image \"nginx:1.27\" already present on machine"),
        "{out}"
    );
    let pods = kubectl_ok(&env, &["get", "pods", "-l", "app=web", "-o", "name"]).await;
    let pod = pods.lines().next().unwrap().to_string();
    kubectl_ok(&env, &["delete", &pod]).await;
    let out = kubectl_ok(
        &env,
        &["get", "events", "--field-selector", "reason=Killing"],
    )
    .await;
    assert!(out.contains("Stopping container nginx"), "{out}");
    kubectl_ok(&env, &["delete", "node", &node]).await;
    let out = kubectl_ok(
        &env,
        &["get", "events", "--field-selector", "reason=RemovingNode"],
    )
    .await;
    assert!(
        out.contains(&format!(
            "Node {node} event: Removing Node {node} from Controller"
        )),
        "{out}"
    );
    world.stop();
}

/// Server-side apply: a valid manifest is applied, an unknown field is
/// refused as the API server refuses it (the configuration cannot be
/// typed against the schema).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_refuses_unknown_fields() {
    let env = env().await;
    let manifest = write_manifest(&env, "deployment.yaml", DEPLOYMENT_YAML);
    let out = kubectl_ok(&env, &["apply", "--server-side", "-f", &manifest]).await;
    assert!(
        out.contains("deployment.apps/web serverside-applied"),
        "{out}"
    );
    let typo = DEPLOYMENT_YAML.replace("image: nginx:1.27", "imagez: nginx:1.27");
    let bad = write_manifest(&env, "typo.yaml", &typo);
    let out = kubectl(&env, &["apply", "--server-side", "-f", &bad]).await;
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains(
            "failed to create typed patch object (default/web; apps/v1, Kind=Deployment): .spec.template.spec.containers[name=\"nginx\"].imagez: field not declared in schema"
        ),
        "{}",
        stderr(&out)
    );
}

/// `kubectl create service` (protobuf): the server allocates the cluster
/// IP and node ports and `get` shows them as a cluster does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_get_cluster_ips_and_node_ports() {
    use kubesurge_testworld::resources::SERVICES;
    let env = env().await;
    let out = kubectl_ok(
        &env,
        &["create", "service", "clusterip", "web", "--tcp=80:8080"],
    )
    .await;
    assert!(out.contains("service/web created"), "{out}");
    let out = kubectl_ok(
        &env,
        &["create", "service", "nodeport", "edge", "--tcp=443"],
    )
    .await;
    assert!(out.contains("service/edge created"), "{out}");
    let web = env.store.get(&SERVICES, "default", "web").unwrap();
    assert_eq!(web["spec"]["clusterIP"], "10.96.0.10", "{web}");
    assert_eq!(web["spec"]["ports"][0]["targetPort"], 8080);
    let out = kubectl_ok(&env, &["get", "services"]).await;
    let rows = rows(&out);
    assert_eq!(
        rows[0],
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ],
        "{out}"
    );
    let web = rows.iter().find(|r| r[0] == "web").unwrap();
    assert_eq!(&web[1..5], ["ClusterIP", "10.96.0.10", "<none>", "80/TCP"]);
    let edge = rows.iter().find(|r| r[0] == "edge").unwrap();
    assert_eq!(&edge[1..3], ["NodePort", "10.96.0.11"]);
    assert_eq!(edge[4], "443:30000/TCP");
    let out = kubectl_ok(&env, &["delete", "service", "web"]).await;
    assert!(out.contains("service \"web\" deleted"), "{out}");

    // kubectl apply merges a Service's ports by port number.
    let manifest = "apiVersion: v1\nkind: Service\nmetadata:\n  name: api\nspec:\n  selector:\n    app: api\n  ports:\n  - port: 80\n    targetPort: 8080\n";
    let first = write_manifest(&env, "svc.yaml", manifest);
    let out = kubectl_ok(&env, &["apply", "-f", &first]).await;
    assert!(out.contains("service/api created"), "{out}");
    let second = write_manifest(&env, "svc2.yaml", &manifest.replace("8080", "9090"));
    let out = kubectl_ok(&env, &["apply", "-f", &second]).await;
    assert!(out.contains("service/api configured"), "{out}");
    let api = env.store.get(&SERVICES, "default", "api").unwrap();
    assert_eq!(
        api["spec"]["ports"],
        json!([{"port": 80, "protocol": "TCP", "targetPort": 9090}]),
        "{api}"
    );
}

/// `kubectl get pods -o wide -w`, as an operator leaves it running during
/// an upgrade: the wide table's header once, then a row per change — a new
/// pod going from Pending to Running on a node with an IP, and the pod
/// deleted after it showing Terminating. kubectl asks the watch for Table
/// rows (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`); each
/// event carries a one-row Table, as the real server sends it
/// (staging/src/k8s.io/apiserver/pkg/endpoints/handlers/watch.go, the
/// `TableConvertor` applied per event).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_pods_wide_watch_follows_pods_as_they_change() {
    let (world, env) = world_env().await;
    let watch = watch_until(
        &env,
        &["get", "pods", "-o", "wide", "-w"],
        &["Running", "Terminating"],
        Duration::from_secs(60),
    );
    let act = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        kubectl_ok(&env, &["create", "deployment", "web", "--image=nginx:1.27"]).await;
        kubectl_ok(
            &env,
            &["rollout", "status", "deployment/web", "--timeout=60s"],
        )
        .await;
        let pods = kubectl_ok(&env, &["get", "pods", "-l", "app=web", "-o", "name"]).await;
        let pod = pods.lines().next().unwrap().to_string();
        kubectl_ok(&env, &["delete", &pod, "--wait=false"]).await;
    };
    let (seen, ()) = tokio::join!(watch, act);
    let table = rows(&seen);
    assert_eq!(
        seen.lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect::<Vec<_>>(),
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED",
            "NODE",
            "READINESS",
            "GATES"
        ],
        "{seen}"
    );
    let headers = seen.lines().filter(|l| l.starts_with("NAME ")).count();
    assert_eq!(headers, 1, "the header is printed once:\n{seen}");
    let running = table
        .iter()
        .find(|r| {
            r.first().is_some_and(|n| n.starts_with("web-"))
                && r.get(2).is_some_and(|s| s == "Running")
        })
        .unwrap_or_else(|| panic!("no Running row for a web pod:\n{seen}"));
    assert_eq!(running[1], "1/1", "{seen}");
    let ip: std::net::IpAddr = running[5]
        .parse()
        .unwrap_or_else(|_| panic!("the IP column holds an address: {running:?}\n{seen}"));
    assert!(!ip.is_unspecified(), "{seen}");
    let node = &running[6];
    assert!(
        env.store.get(&NODES, "", node).is_some(),
        "the NODE column names a node: {running:?}"
    );
    let pod = &running[0];
    let states: Vec<&str> = table
        .iter()
        .filter(|r| r.first() == Some(pod))
        .map(|r| r[2].as_str())
        .collect();
    assert!(
        states
            .first()
            .is_some_and(|s| *s == "Pending" || *s == "ContainerCreating"),
        "the pod is first seen before it runs: {states:?}\n{seen}"
    );
    assert!(
        table
            .iter()
            .any(|r| r.first().is_some_and(|n| n.starts_with("web-")) && r[2] == "Terminating"),
        "{seen}"
    );
    world.stop();
}

/// kubesurge's `-o jsonpath=` reads templates as kubectl does: the same
/// templates over the same Node give what the real kubectl prints, and
/// fail where it fails. (`..name` is left out: kubectl gives its results
/// in Go's random map order, a different one from run to run.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonpath_templates_print_what_kubectl_prints() {
    use kubesurge::cli::jsonpath::Template;
    let env = env().await;
    node(&env.store, "cp1", "True", true, false);
    let json = kubectl_ok(&env, &["get", "node", "cp1", "-o", "json"]).await;
    let object: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let templates = [
        "{.metadata.name}",
        "name={.metadata.name}, kubelet={.status.nodeInfo.kubeletVersion}",
        "{.status.conditions[*].type}",
        "{.status.conditions[0].status}",
        "{.status.conditions[-1].type}",
        "{.status.conditions[0:1].type}",
        "{.status.conditions[0:2].type}",
        "{.status.conditions[5].type}",
        "{.status.conditions[-3].type}",
        "{.status.addresses[1:].type}",
        "{.status.addresses[:-1].type}",
        "{.status.conditions[0:5:2].type}",
        "{.status.conditions[1::2].type}",
        "{.status.conditions[1:0].type}",
        "{.status.conditions[4:4].type}",
        "{.status.conditions[*].nothere}",
        r#"{.status.addresses[?(@.type!="Hostname")].type}"#,
        "{.status.capacity.cpu}",
        r#"{.status.conditions[?(@.type=="Ready")].status}"#,
        r#"{range .status.addresses[*]}{.type}={.address}{"\n"}{end}"#,
        "{.metadata.labels}",
        "[{.metadata.labels['node-role.kubernetes.io/control-plane']}]",
        "{.metadata.labels.kubernetes\\.io/hostname}",
        "{.spec.unschedulable}",
        "[{.spec.taints[0].key}]",
        "{.status.nodeInfo}",
    ];
    for template in templates {
        let theirs = kubectl(
            &env,
            &["get", "node", "cp1", "-o", &format!("jsonpath={template}")],
        )
        .await;
        let ours = Template::parse(template)
            .unwrap_or_else(|e| panic!("{template}: {e}"))
            .render(&object);
        match ours {
            Ok(text) => {
                assert!(theirs.status.success(), "{template}: {}", stderr(&theirs));
                assert_eq!(text, stdout(&theirs), "template {template}");
            }
            // kubectl names the same index and length.
            Err(error) => {
                let reason = error.to_string();
                let reason = reason.split(": ").skip(1).collect::<Vec<_>>().join(": ");
                assert!(!theirs.status.success(), "{template}: {}", stdout(&theirs));
                assert!(
                    stderr(&theirs).contains(&reason),
                    "{template}: ours {reason:?}, kubectl {}",
                    stderr(&theirs)
                );
            }
        }
    }
}
