//! A second real client against the emulator (issue 12 item 5): the
//! official Python `kubernetes` client (`tests/it/python/parity.py`) and
//! kube-rs do the same things on the same server — a paged list followed
//! to the end, a watch from a compacted resourceVersion (410 Gone, then a
//! relist), a watch from a list's resourceVersion with bookmarks, strategic
//! merge and JSON merge patches, evictions with and without a blocking
//! PodDisruptionBudget — and must see the same answers.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    Api, EvictParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kubesurge_testworld::apiserver::{self, ApiServerConfig, ClusterCa};
use kubesurge_testworld::resources::{NAMESPACES, PDBS, PODS};
use kubesurge_testworld::store::Store;
use serde_json::{Value, json};

use crate::python_client::python_with_kubernetes;

const NS: &str = "parity";
/// Events the server keeps for watches resuming from the past: small, so
/// that the seeding alone compacts resourceVersion 1 away.
const EVENT_LOG: usize = 8;

fn seed(store: &Store) {
    store
        .create(&NAMESPACES, "", json!({"metadata": {"name": NS}}))
        .unwrap();
    let pod = |name: &str, labels: Value, node: Option<&str>| {
        let mut pod = json!({
            "metadata": {"name": name, "namespace": NS, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
        });
        if let Some(node) = node {
            pod["spec"]["nodeName"] = json!(node);
        }
        store.create(&PODS, NS, pod).unwrap();
    };
    for i in 0..7 {
        pod(&format!("p{i:02}"), json!({}), None);
    }
    for client in ["py", "rs"] {
        pod(&format!("{client}-patched"), json!({}), None);
        pod(&format!("{client}-evicted"), json!({}), None);
        pod(
            &format!("{client}-guarded"),
            json!({"app": "guarded"}),
            Some("n1"),
        );
    }
    let pdb = store
        .create(
            &PDBS,
            NS,
            json!({"metadata": {"name": "guarded"},
                   "spec": {"selector": {"matchLabels": {"app": "guarded"}}, "minAvailable": 2}}),
        )
        .unwrap();
    let generation = pdb["metadata"]["generation"].clone();
    store
        .modify(&PDBS, NS, "guarded", |p| {
            p["status"] = json!({"observedGeneration": generation, "disruptionsAllowed": 0,
                                 "currentHealthy": 2, "desiredHealthy": 2, "expectedPods": 2});
            Ok(())
        })
        .unwrap();
}

fn python(script: &Path, kubeconfig: &Path, args: &[&str]) -> Value {
    let out = Command::new(python_with_kubernetes())
        .arg(script)
        .arg(kubeconfig)
        .arg(NS)
        .args(args)
        .output()
        .expect("python runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn names(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect()
}

/// kube-rs's side of `parity.py read`.
async fn read(pods: &Api<Pod>) -> Value {
    let (mut paged, mut pages, mut token) = (Vec::new(), 0, None::<String>);
    loop {
        let mut params = ListParams::default().limit(2);
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let page = pods.list(&params).await.unwrap();
        paged.extend(names(&page.items));
        pages += 1;
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    let expired = match pods.watch(&WatchParams::default().timeout(5), "1").await {
        Err(kube::Error::Api(status)) => Some(status.code),
        Err(e) => panic!("{e}"),
        Ok(stream) => {
            let first = stream.boxed().try_next().await;
            match first {
                Ok(Some(WatchEvent::Error(e))) => Some(e.code),
                Err(kube::Error::Api(status)) => Some(status.code),
                other => panic!("expected 410 Gone, got {other:?}"),
            }
        }
    };
    let relisted = names(&pods.list(&ListParams::default()).await.unwrap().items);
    json!({"paged": paged, "pages": pages, "expired": expired, "relisted": relisted})
}

/// kube-rs's side of `parity.py write PREFIX`.
async fn write(pods: &Api<Pod>, prefix: &str) -> Value {
    let rv = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let patched = format!("{prefix}-patched");
    let params = PatchParams::default();
    pods.patch(
        &patched,
        &params,
        &Patch::Strategic(json!({"metadata": {"labels": {"patched": "strategic"}}})),
    )
    .await
    .unwrap();
    pods.patch(
        &patched,
        &params,
        &Patch::Merge(json!({"metadata": {"labels": {"merged": "json"}}})),
    )
    .await
    .unwrap();
    let labels = pods.get(&patched).await.unwrap().metadata.labels.unwrap();
    let new: Pod = serde_json::from_value(json!({
        "metadata": {"name": format!("{prefix}-new")},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &new).await.unwrap();
    let (mut added, mut modified, mut bookmark) = (Vec::new(), Vec::new(), false);
    let mut stream = pods
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    while let Some(event) = stream.try_next().await.unwrap() {
        let seen = |list: &mut Vec<String>, pod: &Pod| {
            let name = pod.metadata.name.clone().unwrap_or_default();
            if name.starts_with(prefix) && !list.contains(&name) {
                list.push(name);
            }
        };
        match event {
            WatchEvent::Added(pod) => seen(&mut added, &pod),
            WatchEvent::Modified(pod) => seen(&mut modified, &pod),
            WatchEvent::Bookmark(_) => bookmark = true,
            _ => {}
        }
        if bookmark && !modified.is_empty() && added.contains(&format!("{prefix}-new")) {
            break;
        }
    }
    added.sort();
    modified.sort();
    let evict = |name: String| async move {
        match pods.evict(&name, &EvictParams::default()).await {
            Ok(_) => json!({"status": 201}),
            Err(kube::Error::Api(s)) => {
                json!({"status": s.code, "reason": s.reason, "message": s.message})
            }
            Err(e) => panic!("{e}"),
        }
    };
    let evicted = evict(format!("{prefix}-evicted")).await;
    let gone = matches!(
        pods.get(&format!("{prefix}-evicted")).await,
        Err(kube::Error::Api(s)) if s.code == 404
    );
    let blocked = evict(format!("{prefix}-guarded")).await;
    json!({
        "labels": {"patched": labels.get("patched"), "merged": labels.get("merged")},
        "watch": {"added": added, "modified": modified, "bookmark": bookmark},
        "evict": evicted,
        "gone": gone,
        "blocked": blocked,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_and_kube_rs_see_the_same_server() {
    let store = Arc::new(Store::with_log_capacity(EVENT_LOG));
    let ca = Arc::new(ClusterCa::generate().expect("CA"));
    let server = apiserver::start(store.clone(), ca, ApiServerConfig::default())
        .await
        .expect("server starts");
    server.set_bookmark_interval(Duration::from_millis(200));
    seed(&store);
    let dir = tempfile::TempDir::new().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig_yaml()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/python/parity.py");
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::from_yaml(&server.kubeconfig_yaml()).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    // Retries off: each client is compared on the server's first answer
    // (kube-rs would otherwise retry the 429 itself).
    let mut config = config;
    config.default_retry = false;
    let pods: Api<Pod> = Api::namespaced(kube::Client::try_from(config).unwrap(), NS);

    // Reads, before anything changes: the same pages, the same 410.
    let rs = read(&pods).await;
    let (s, k) = (script.clone(), kubeconfig.clone());
    let py = tokio::task::spawn_blocking(move || python(&s, &k, &["read"]))
        .await
        .unwrap();
    assert_eq!(py, rs, "python (left) and kube-rs (right) differ");
    assert_eq!(rs["expired"], 410, "{rs}");
    assert_eq!(rs["pages"], 7, "13 pods by 2: {rs}");
    assert_eq!(rs["paged"], rs["relisted"], "{rs}");

    // Writes, each client on its own pods: the same answers.
    let rs = write(&pods, "rs").await;
    let (s, k) = (script.clone(), kubeconfig.clone());
    let py = tokio::task::spawn_blocking(move || python(&s, &k, &["write", "py"]))
        .await
        .unwrap();
    let py: Value = serde_json::from_str(&py.to_string().replace("py-", "rs-")).unwrap();
    assert_eq!(py, rs, "python (left) and kube-rs (right) differ");
    assert_eq!(
        rs["labels"],
        json!({"patched": "strategic", "merged": "json"})
    );
    assert_eq!(
        rs["watch"],
        json!({"added": ["rs-new"], "modified": ["rs-patched"], "bookmark": true})
    );
    assert_eq!(rs["evict"]["status"], 201, "{rs}");
    assert_eq!(rs["gone"], true, "{rs}");
    assert_eq!(rs["blocked"]["status"], 429, "{rs}");
    assert_eq!(rs["blocked"]["reason"], "TooManyRequests", "{rs}");
}
