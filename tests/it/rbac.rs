//! RBAC in the emulator, through the real kubectl as users type it: who a
//! kubeconfig authenticates as, what `kubectl auth can-i` answers, and the
//! 403 a refused request gets.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use kubesurge_testworld::apiserver::{self, ApiServerConfig, ApiServerHandle, ClusterCa};
use kubesurge_testworld::resources::{CONFIGMAPS, NODES};
use kubesurge_testworld::store::Store;
use serde_json::json;
use tempfile::TempDir;

const KUBECTL: &str = "/usr/bin/kubectl";

struct Env {
    store: Arc<Store>,
    server: ApiServerHandle,
    home: TempDir,
}

impl Env {
    async fn new() -> Env {
        assert!(
            Path::new(KUBECTL).exists(),
            "kubectl is required for these tests and was not found at {KUBECTL}"
        );
        let store = Store::new();
        let ca = Arc::new(ClusterCa::generate().expect("CA"));
        let server = apiserver::start(store.clone(), ca, ApiServerConfig::default())
            .await
            .expect("server starts");
        let env = Env {
            store,
            server,
            home: TempDir::new().unwrap(),
        };
        env.write("admin", &env.server.kubeconfig_yaml());
        env
    }

    fn write(&self, name: &str, kubeconfig: &str) -> PathBuf {
        let path = self.home.path().join(name);
        std::fs::write(&path, kubeconfig).unwrap();
        path
    }

    /// kubectl with the kubeconfig `who` (`admin`, or one written before).
    async fn kubectl(&self, who: &str, args: &[&str], stdin: Option<&str>) -> Output {
        use tokio::io::AsyncWriteExt;
        let mut child = tokio::process::Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(self.home.path().join(who))
            .args(args)
            .env("HOME", self.home.path())
            .env_remove("KUBECONFIG")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("kubectl runs");
        let mut input = child.stdin.take().expect("stdin");
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).await.unwrap();
        }
        drop(input);
        tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("kubectl finishes within 60s")
            .expect("kubectl output")
    }

    async fn ok(&self, who: &str, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl(who, args, stdin).await;
        assert!(
            out.status.success(),
            "kubectl {args:?} as {who} failed:\nstdout:\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// `kubectl auth can-i ...` as `who`: its one-line answer and whether
    /// it exited 0 (kubectl exits 1 on `no`).
    async fn can_i(&self, who: &str, args: &[&str]) -> (String, bool) {
        let mut argv = vec!["auth", "can-i"];
        argv.extend_from_slice(args);
        let out = self.kubectl(who, &argv, None).await;
        (text(&out.stdout).trim().to_string(), out.status.success())
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const KUBESURGE_RBAC: &str = r#"
apiVersion: v1
kind: ServiceAccount
metadata:
  name: kubesurge
  namespace: kube-system
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: kubesurge
rules:
  - apiGroups: [""]
    resources: ["nodes"]
    verbs: ["get", "list", "watch"]
  - apiGroups: [""]
    resources: ["pods/eviction"]
    verbs: ["create"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: kubesurge
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: kubesurge
subjects:
  - kind: ServiceAccount
    name: kubesurge
    namespace: kube-system
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: kubesurge
  namespace: kube-system
rules:
  - apiGroups: ["coordination.k8s.io"]
    resources: ["leases"]
    resourceNames: ["kubesurge"]
    verbs: ["get", "update"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: kubesurge
  namespace: kube-system
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: kubesurge
subjects:
  - kind: ServiceAccount
    name: kubesurge
    namespace: kube-system
"#;

const AGGREGATED: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: node-status-editor
aggregationRule:
  clusterRoleSelectors:
    - matchLabels:
        example.com/aggregate-to-node-status-editor: "true"
rules: []
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: node-status-patch
  labels:
    example.com/aggregate-to-node-status-editor: "true"
rules:
  - apiGroups: [""]
    resources: ["nodes/status"]
    verbs: ["patch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: kubesurge-node-status
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: node-status-editor
subjects:
  - kind: ServiceAccount
    name: kubesurge
    namespace: kube-system
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_auth_can_i_and_refusals_answer_as_a_cluster_does() {
    let env = Env::new().await;
    env.store
        .create(
            &NODES,
            "",
            json!({"metadata": {"name": "x", "labels": {"kubernetes.io/hostname": "x"}}}),
        )
        .unwrap();

    // The admin kubeconfig's client certificate is in system:masters.
    assert_eq!(
        env.can_i("admin", &["patch", "nodes"]).await,
        ("yes".into(), true)
    );
    // The roles are applied as users apply them: OpenAPI validation on.
    env.ok("admin", &["apply", "-f", "-"], Some(KUBESURGE_RBAC))
        .await;
    env.ok(
        "admin",
        &["get", "clusterrole", "cluster-admin", "-o", "name"],
        None,
    )
    .await;

    // A ServiceAccount token from the TokenRequest API.
    let token = env
        .ok(
            "admin",
            &["create", "token", "kubesurge", "-n", "kube-system"],
            None,
        )
        .await;
    let sa = env.write(
        "sa",
        &env.server.kubeconfig_with_token("kubesurge", token.trim()),
    );
    assert!(sa.exists());

    assert_eq!(
        env.can_i("sa", &["get", "nodes"]).await,
        ("yes".into(), true)
    );
    assert_eq!(
        env.can_i("sa", &["patch", "nodes"]).await,
        ("no".into(), false)
    );
    assert_eq!(
        env.can_i(
            "sa",
            &["create", "pods", "--subresource=eviction", "-n", "default"]
        )
        .await,
        ("yes".into(), true)
    );
    assert_eq!(
        env.can_i("sa", &["create", "pods", "-n", "default"]).await,
        ("no".into(), false)
    );
    // resourceNames: the one Lease, not another, not in another namespace.
    assert_eq!(
        env.can_i("sa", &["update", "leases/kubesurge", "-n", "kube-system"])
            .await,
        ("yes".into(), true)
    );
    assert_eq!(
        env.can_i("sa", &["update", "leases/other", "-n", "kube-system"])
            .await,
        ("no".into(), false)
    );
    assert_eq!(
        env.can_i("sa", &["update", "leases/kubesurge", "-n", "default"])
            .await,
        ("no".into(), false)
    );

    // A refusal is the real 403 with the real message.
    // (kubectl cordon reports the refusal and still exits 0.)
    let out = env.kubectl("sa", &["cordon", "x"], None).await;
    assert!(
        text(&out.stderr).contains(
            "nodes \"x\" is forbidden: User \"system:serviceaccount:kube-system:kubesurge\" \
             cannot patch resource \"nodes\" in API group \"\" at the cluster scope"
        ),
        "{}",
        text(&out.stderr)
    );
    let out = env
        .kubectl("sa", &["get", "secrets", "-n", "kube-system"], None)
        .await;
    assert!(
        text(&out.stderr).contains(
            "Error from server (Forbidden): secrets is forbidden: User \
             \"system:serviceaccount:kube-system:kubesurge\" cannot list resource \"secrets\" \
             in API group \"\" in the namespace \"kube-system\""
        ),
        "{}",
        text(&out.stderr)
    );

    // Aggregated ClusterRoles carry the rules of the roles they select.
    assert_eq!(
        env.can_i("sa", &["patch", "nodes", "--subresource=status"])
            .await,
        ("no".into(), false)
    );
    env.ok("admin", &["apply", "-f", "-"], Some(AGGREGATED))
        .await;
    assert_eq!(
        env.can_i("sa", &["patch", "nodes", "--subresource=status"])
            .await,
        ("yes".into(), true)
    );
    assert_eq!(
        env.can_i("sa", &["patch", "nodes"]).await,
        ("no".into(), false)
    );

    // `--list` (SelfSubjectRulesReview) names what the account may do.
    let list = env
        .ok(
            "sa",
            &["auth", "can-i", "--list", "-n", "kube-system"],
            None,
        )
        .await;
    assert!(list.contains("nodes "), "{list}");
    assert!(list.contains("[kubesurge]"), "{list}");

    // Deleting the ServiceAccount invalidates its token: 401.
    env.ok(
        "admin",
        &["delete", "serviceaccount", "kubesurge", "-n", "kube-system"],
        None,
    )
    .await;
    let out = env.kubectl("sa", &["get", "nodes"], None).await;
    assert!(
        text(&out.stderr).contains("error: You must be logged in to the server"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_and_unknown_credentials() {
    let env = Env::new().await;
    env.write("bad", &env.server.kubeconfig_with_token("x", "not-a-token"));
    let out = env.kubectl("bad", &["get", "nodes"], None).await;
    assert!(
        text(&out.stderr).contains("error: You must be logged in to the server"),
        "{}",
        text(&out.stderr)
    );
    // No credentials at all: system:anonymous, who may read the version
    // and cluster-info and nothing else (kubectl would prompt for a
    // password without credentials, so curl asks).
    let ca = env.write("ca.crt", &env.server.ca_pem());
    env.store
        .create(
            &CONFIGMAPS,
            "kube-public",
            json!({"metadata": {"name": "cluster-info"}, "data": {}}),
        )
        .unwrap();
    let curl = |path: &str| {
        let url = format!("{}{path}", env.server.url());
        let ca = ca.clone();
        async move {
            let out = tokio::process::Command::new("curl")
                .args(["-sS", "--cacert"])
                .arg(&ca)
                .arg(&url)
                .output()
                .await
                .expect("curl runs");
            text(&out.stdout)
        }
    };
    assert!(curl("/version").await.contains("gitVersion"));
    assert!(
        curl("/api/v1/namespaces/kube-public/configmaps/cluster-info")
            .await
            .contains("\"kind\":\"ConfigMap\"")
    );
    let refused = curl("/api/v1/namespaces/default/pods").await;
    assert!(
        refused.contains(
            "pods is forbidden: User \\\"system:anonymous\\\" cannot list resource \\\"pods\\\" in API group \\\"\\\" in the namespace \\\"default\\\""
        ),
        "{refused}"
    );
    let refused = curl("/api").await;
    assert!(
        refused.contains("forbidden: User \\\"system:anonymous\\\" cannot get path \\\"/api\\\""),
        "{refused}"
    );
}
