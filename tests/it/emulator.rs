//! The Kubernetes API emulator over real HTTPS, driven by kube-rs as the
//! tool drives a real cluster: CRUD and conflicts, selectors, paging,
//! watches, every patch type, eviction with PDBs, authentication, faults.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Secret};
use kube::api::{
    Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, wait::await_condition, watcher};
use kube::{Client, Config, Error};
use kubesurge_testworld::apiserver::{
    self, ApiServerConfig, ApiServerHandle, ClusterCa, FaultFilter,
};
use kubesurge_testworld::resources::{NODES, PDBS, PODS, SECRETS};
use kubesurge_testworld::store::Store;
use serde_json::{Value, json};

/// A fresh store, CA and server, and an admin client.
struct Env {
    store: Arc<Store>,
    server: ApiServerHandle,
    client: Client,
}

async fn client_from(yaml: &str, retry: bool) -> Client {
    let kubeconfig = Kubeconfig::from_yaml(yaml).expect("kubeconfig parses");
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube config");
    config.default_retry = retry;
    Client::try_from(config).expect("client")
}

async fn env_with(store: Arc<Store>) -> Env {
    let ca = Arc::new(ClusterCa::generate().expect("CA"));
    let server = apiserver::start(store.clone(), ca, ApiServerConfig::default())
        .await
        .expect("server starts");
    // Retries off: tests look at each answer the server gives.
    let client = client_from(&server.kubeconfig_yaml(), false).await;
    Env {
        store,
        server,
        client,
    }
}

async fn env() -> Env {
    env_with(Store::new()).await
}

fn api_status(err: Error) -> Box<kube::core::Status> {
    match err {
        Error::Api(status) => status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn configmap(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "data": data.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
    }))
    .unwrap()
}

fn pod_json(name: &str, labels: Value, node: Option<&str>) -> Value {
    let mut pod = json!({
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    });
    if let Some(node) = node {
        pod["spec"]["nodeName"] = json!(node);
    }
    pod
}

/// Put a pod in the store as the scheduler and kubelet would have left it.
fn seed_pod(store: &Store, name: &str, labels: Value, node: Option<&str>) -> Arc<Value> {
    store
        .create(&PODS, "default", pod_json(name, labels, node))
        .unwrap()
}

fn seed_node(store: &Store, name: &str) -> Arc<Value> {
    store
        .create(
            &NODES,
            "",
            json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                   "spec": {},
                   "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                              "nodeInfo": {"kubeletVersion": "v1.32.4"}}}),
        )
        .unwrap()
}

#[tokio::test]
async fn crud_with_conflicts_and_status_errors() {
    let env = env().await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    let created = cms
        .create(&PostParams::default(), &configmap("a", &[("k", "v")]))
        .await
        .unwrap();
    let rv = created.metadata.resource_version.clone().unwrap();
    assert!(!rv.is_empty());
    assert_eq!(created.metadata.uid.as_ref().map(String::len), Some(36));
    assert!(created.metadata.creation_timestamp.is_some());

    let again = cms
        .create(&PostParams::default(), &configmap("a", &[]))
        .await
        .unwrap_err();
    let status = api_status(again);
    assert!(status.is_already_exists());
    assert_eq!(status.code, 409);
    assert_eq!(status.message, "configmaps \"a\" already exists");

    let mut changed = created.clone();
    changed.data = Some([("k".to_string(), "w".to_string())].into());
    let updated = cms
        .replace("a", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert_ne!(
        updated.metadata.resource_version.as_deref(),
        Some(rv.as_str())
    );
    // The same body again still carries the old resourceVersion.
    let stale = api_status(
        cms.replace("a", &PostParams::default(), &changed)
            .await
            .unwrap_err(),
    );
    assert!(stale.is_conflict());
    assert_eq!(
        stale.message,
        "Operation cannot be fulfilled on configmaps \"a\": the object has been modified; please apply your changes to the latest version and try again"
    );
    // PUT without a resourceVersion is unconditional for ConfigMaps.
    let mut blind = changed.clone();
    blind.metadata.resource_version = None;
    blind.data = Some([("k".to_string(), "x".to_string())].into());
    assert_eq!(
        cms.replace("a", &PostParams::default(), &blind)
            .await
            .unwrap()
            .data
            .unwrap()["k"],
        "x"
    );
    // The name in the body must be the URL's.
    let wrong = api_status(
        cms.replace("b", &PostParams::default(), &blind)
            .await
            .unwrap_err(),
    );
    assert_eq!(wrong.code, 400);
    let missing = api_status(cms.get("nope").await.unwrap_err());
    assert!(missing.is_not_found());
    assert_eq!(missing.message, "configmaps \"nope\" not found");
    assert_eq!(missing.details.as_ref().unwrap().kind, "configmaps");

    let deleted = cms.delete("a", &DeleteParams::default()).await.unwrap();
    let status = deleted.right().expect("configmaps answer a Status");
    assert!(status.is_success());
    assert_eq!(status.details.unwrap().name, "a");
    assert!(cms.get_opt("a").await.unwrap().is_none());
}

#[tokio::test]
async fn namespaces_must_exist_and_names_must_be_valid() {
    let env = env().await;
    let nss: Api<Namespace> = Api::all(env.client.clone());
    let names: Vec<String> = nss
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(names.contains(&ns.to_string()), "{names:?}");
    }
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "nope");
    let err = api_status(
        cms.create(&PostParams::default(), &configmap("a", &[]))
            .await
            .unwrap_err(),
    );
    assert!(err.is_not_found());
    assert_eq!(err.message, "namespaces \"nope\" not found");
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    let err = api_status(
        cms.create(&PostParams::default(), &configmap("Bad_Name", &[]))
            .await
            .unwrap_err(),
    );
    assert!(err.is_invalid());
    assert_eq!(err.code, 422);
}

#[tokio::test]
async fn dry_run_stores_nothing() {
    let env = env().await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    let pp = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let out = cms
        .create(&pp, &configmap("dry", &[("a", "b")]))
        .await
        .unwrap();
    assert_eq!(out.metadata.name.as_deref(), Some("dry"));
    assert!(cms.get_opt("dry").await.unwrap().is_none());
}

#[tokio::test]
async fn lease_put_requires_resource_version_and_creates_when_missing() {
    let env = env().await;
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), "kube-system");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "lock"},
        "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15},
    }))
    .unwrap();
    let missing = api_status(leases.get("lock").await.unwrap_err());
    assert_eq!(
        missing.message,
        "leases.coordination.k8s.io \"lock\" not found"
    );
    assert_eq!(
        missing.details.as_ref().unwrap().group,
        "coordination.k8s.io"
    );
    // Create on update.
    let created = leases
        .replace("lock", &PostParams::default(), &lease)
        .await
        .unwrap();
    assert!(created.metadata.resource_version.is_some());
    // Existing lease, no resourceVersion: 422.
    let err = api_status(
        leases
            .replace("lock", &PostParams::default(), &lease)
            .await
            .unwrap_err(),
    );
    assert!(err.is_invalid());
    assert!(
        err.message.contains("must be specified for an update"),
        "{}",
        err.message
    );
    // With the current one: fine; with a stale one: 409.
    let mut next = created.clone();
    next.spec.as_mut().unwrap().holder_identity = Some("other".into());
    leases
        .replace("lock", &PostParams::default(), &next)
        .await
        .unwrap();
    let err = api_status(
        leases
            .replace("lock", &PostParams::default(), &next)
            .await
            .unwrap_err(),
    );
    assert!(err.is_conflict());
    // POST of an existing lease: AlreadyExists (the lock protocol's "held").
    let err = api_status(
        leases
            .create(&PostParams::default(), &lease)
            .await
            .unwrap_err(),
    );
    assert!(err.is_already_exists());
}

#[tokio::test]
async fn status_subresource_splits_spec_and_status() {
    let env = env().await;
    seed_node(&env.store, "n1");
    let nodes: Api<Node> = Api::all(env.client.clone());
    let mut node = nodes.get("n1").await.unwrap();
    node.spec.as_mut().unwrap().unschedulable = Some(true);
    node.status.as_mut().unwrap().conditions = Some(vec![]);
    let after = nodes
        .replace("n1", &PostParams::default(), &node)
        .await
        .unwrap();
    assert_eq!(after.spec.unwrap().unschedulable, Some(true));
    // The main resource ignores .status.
    assert_eq!(after.status.unwrap().conditions.unwrap().len(), 1);
    let mut node = nodes.get("n1").await.unwrap();
    node.spec.as_mut().unwrap().unschedulable = Some(false);
    node.status.as_mut().unwrap().conditions = Some(vec![]);
    let after = nodes
        .replace_status("n1", &PostParams::default(), &node)
        .await
        .unwrap();
    // /status ignores everything else.
    assert_eq!(after.spec.unwrap().unschedulable, Some(true));
    assert_eq!(after.status.unwrap().conditions.unwrap().len(), 0);
}

#[tokio::test]
async fn label_selectors_with_every_operator() {
    let env = env().await;
    seed_pod(
        &env.store,
        "web-a",
        json!({"app": "web", "tier": "front"}),
        None,
    );
    seed_pod(
        &env.store,
        "web-b",
        json!({"app": "web", "tier": "back"}),
        None,
    );
    seed_pod(&env.store, "db", json!({"app": "db"}), None);
    seed_pod(&env.store, "bare", json!({}), None);
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let names = |selector: &'static str| {
        let pods = pods.clone();
        async move {
            let mut n: Vec<String> = pods
                .list(&ListParams::default().labels(selector))
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|p| p.metadata.name.unwrap())
                .collect();
            n.sort();
            n.join(",")
        }
    };
    assert_eq!(names("app=web").await, "web-a,web-b");
    assert_eq!(names("app==db").await, "db");
    assert_eq!(names("app!=web").await, "bare,db");
    assert_eq!(names("tier in (front,middle)").await, "web-a");
    assert_eq!(names("tier notin (front)").await, "bare,db,web-b");
    assert_eq!(names("tier").await, "web-a,web-b");
    assert_eq!(names("!app").await, "bare");
    assert_eq!(names("app=web,tier!=back").await, "web-a");
    let err = api_status(
        pods.list(&ListParams::default().labels("app in web"))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 400);
    assert_eq!(err.reason, "BadRequest");
}

#[tokio::test]
async fn field_selectors_and_unknown_fields() {
    let env = env().await;
    seed_pod(&env.store, "on-n1", json!({}), Some("n1"));
    seed_pod(&env.store, "on-n2", json!({}), Some("n2"));
    env.store
        .create(&PODS, "other", pod_json("elsewhere", json!({}), Some("n1")))
        .unwrap();
    let all: Api<Pod> = Api::all(env.client.clone());
    let on_n1 = all
        .list(&ListParams::default().fields("spec.nodeName=n1"))
        .await
        .unwrap();
    let mut names: Vec<String> = on_n1
        .items
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["elsewhere", "on-n1"]);
    let not_failed = all
        .list(
            &ListParams::default()
                .fields("spec.nodeName=n1,status.phase!=Failed,metadata.namespace=default"),
        )
        .await
        .unwrap();
    assert_eq!(not_failed.items.len(), 1);
    let by_name = all
        .list(&ListParams::default().fields("metadata.name==on-n2"))
        .await
        .unwrap();
    assert_eq!(
        by_name.items[0].spec.as_ref().unwrap().node_name.as_deref(),
        Some("n2")
    );
    let err = api_status(
        all.list(&ListParams::default().fields("spec.priorityClassName=x"))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 400);
    assert_eq!(
        err.message,
        "\"spec.priorityClassName\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
    );
    seed_node(&env.store, "n1");
    let nodes: Api<Node> = Api::all(env.client.clone());
    assert_eq!(
        nodes
            .list(&ListParams::default().fields("spec.unschedulable=false"))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "kube-system");
    env.store
        .create(
            &SECRETS,
            "kube-system",
            json!({"metadata": {"name": "s"}, "type": "bootstrap.kubernetes.io/token"}),
        )
        .unwrap();
    assert_eq!(
        secrets
            .list(&ListParams::default().fields("type=bootstrap.kubernetes.io/token"))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

#[tokio::test]
async fn paging_with_limit_and_continue() {
    let env = env().await;
    for i in 0..25 {
        seed_pod(&env.store, &format!("p{i:02}"), json!({"i": "x"}), None);
    }
    let pods: Api<Pod> = Api::all(env.client.clone());
    let first = pods.list(&ListParams::default().limit(10)).await.unwrap();
    assert_eq!(first.items.len(), 10);
    assert_eq!(first.metadata.remaining_item_count, Some(15));
    let list_rv = first.metadata.resource_version.clone().unwrap();
    // A write between pages does not change what the pages show.
    env.store
        .delete(&PODS, "default", "p15", &Default::default())
        .unwrap();
    let mut seen: Vec<String> = first
        .items
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    let mut token = first.metadata.continue_.clone();
    while let Some(t) = token.filter(|t| !t.is_empty()) {
        let page = pods
            .list(&ListParams::default().limit(10).continue_token(&t))
            .await
            .unwrap();
        assert_eq!(
            page.metadata.resource_version.as_deref(),
            Some(list_rv.as_str())
        );
        seen.extend(page.items.iter().map(|p| p.metadata.name.clone().unwrap()));
        token = page.metadata.continue_;
    }
    let expected: Vec<String> = (0..25).map(|i| format!("p{i:02}")).collect();
    assert_eq!(seen, expected);
    // With a selector, paging still works and remainingItemCount is absent.
    let sel = pods
        .list(&ListParams::default().labels("i=x").limit(20))
        .await
        .unwrap();
    assert_eq!(sel.items.len(), 20);
    assert_eq!(sel.metadata.remaining_item_count, None);
    assert!(sel.metadata.continue_.is_some());
}

#[tokio::test]
async fn continue_token_older_than_the_event_log_is_expired() {
    let env = env_with(Arc::new(Store::with_log_capacity(5))).await;
    for i in 0..6 {
        seed_pod(&env.store, &format!("p{i}"), json!({}), None);
    }
    let pods: Api<Pod> = Api::all(env.client.clone());
    let first = pods.list(&ListParams::default().limit(2)).await.unwrap();
    let token = first.metadata.continue_.clone().unwrap();
    for i in 0..10 {
        seed_pod(&env.store, &format!("q{i}"), json!({}), None);
    }
    let err = api_status(
        pods.list(&ListParams::default().limit(2).continue_token(&token))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 410);
    assert_eq!(err.reason, "Expired");
}

#[tokio::test]
async fn version_is_parsed_by_the_client_and_can_change() {
    let env = env().await;
    let info = env.client.apiserver_version().await.unwrap();
    assert_eq!(info.git_version, "v1.33.4");
    assert_eq!(info.major, "1");
    assert_eq!(info.minor, "33");
    env.server.set_version("v1.34.1");
    let info = env.client.apiserver_version().await.unwrap();
    assert_eq!(info.git_version, "v1.34.1");
    assert_eq!(info.minor, "34");
}

#[tokio::test]
async fn discovery_lists_eviction_for_drain() {
    let env = env().await;
    let discovery = kube::Discovery::new(env.client.clone())
        .run()
        .await
        .unwrap();
    let groups: Vec<String> = discovery.groups().map(|g| g.name().to_string()).collect();
    for g in [
        "",
        "apps",
        "policy",
        "coordination.k8s.io",
        "storage.k8s.io",
    ] {
        assert!(groups.contains(&g.to_string()), "{groups:?}");
    }
    let core: k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList = env
        .client
        .request(http::Request::get("/api/v1").body(vec![]).unwrap())
        .await
        .unwrap();
    let eviction = core
        .resources
        .iter()
        .find(|r| r.name == "pods/eviction")
        .expect("pods/eviction listed");
    assert_eq!(eviction.group.as_deref(), Some("policy"));
    assert_eq!(eviction.version.as_deref(), Some("v1"));
    assert_eq!(eviction.kind, "Eviction");
}

#[tokio::test]
async fn graceful_pod_deletion_keeps_the_pod_until_the_kubelet_finishes() {
    let env = env().await;
    seed_pod(&env.store, "bound", json!({}), Some("n1"));
    seed_pod(&env.store, "unbound", json!({}), None);
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let out = pods
        .delete("bound", &DeleteParams::default())
        .await
        .unwrap();
    let pod = out.left().expect("pods answer with the pod");
    assert!(pod.metadata.deletion_timestamp.is_some());
    assert_eq!(pod.metadata.deletion_grace_period_seconds, Some(30));
    let still = pods.get("bound").await.unwrap();
    assert!(still.metadata.deletion_timestamp.is_some());
    // Unbound pods go at once.
    let out = pods
        .delete("unbound", &DeleteParams::default())
        .await
        .unwrap();
    assert!(out.left().is_some());
    assert!(pods.get_opt("unbound").await.unwrap().is_none());
    // Grace 0 forces it.
    pods.delete("bound", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    assert!(pods.get_opt("bound").await.unwrap().is_none());
    // A uid precondition that does not match: 409.
    seed_pod(&env.store, "pinned", json!({}), None);
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some("not-the-uid".into()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    assert!(api_status(pods.delete("pinned", &dp).await.unwrap_err()).is_conflict());
}

type Events<K> = futures::stream::BoxStream<'static, Result<WatchEvent<K>, Error>>;

async fn watch_stream<K>(api: &Api<K>, wp: &WatchParams, rv: &str) -> Events<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    api.watch(wp, rv).await.expect("watch starts").boxed()
}

/// The next event that is not a bookmark, within a few seconds.
async fn next_change<K>(events: &mut Events<K>) -> WatchEvent<K> {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("an event within 5s")
            .expect("stream still open")
            .expect("event decodes");
        if !matches!(event, WatchEvent::Bookmark(_)) {
            return event;
        }
    }
}

fn event_name(event: &WatchEvent<ConfigMap>) -> (String, String) {
    match event {
        WatchEvent::Added(o) => ("ADDED".into(), o.metadata.name.clone().unwrap()),
        WatchEvent::Modified(o) => ("MODIFIED".into(), o.metadata.name.clone().unwrap()),
        WatchEvent::Deleted(o) => ("DELETED".into(), o.metadata.name.clone().unwrap()),
        WatchEvent::Bookmark(_) => ("BOOKMARK".into(), String::new()),
        WatchEvent::Error(e) => ("ERROR".into(), e.message.clone()),
    }
}

#[tokio::test]
async fn watch_from_zero_sends_current_state_then_changes() {
    let env = env().await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    cms.create(&PostParams::default(), &configmap("before", &[]))
        .await
        .unwrap();
    let mut events = watch_stream(&cms, &WatchParams::default(), "0").await;
    assert_eq!(
        event_name(&next_change(&mut events).await),
        ("ADDED".into(), "before".into())
    );
    let created = cms
        .create(&PostParams::default(), &configmap("new", &[]))
        .await
        .unwrap();
    let mut changed = created.clone();
    changed.data = Some([("a".to_string(), "b".to_string())].into());
    cms.replace("new", &PostParams::default(), &changed)
        .await
        .unwrap();
    cms.delete("new", &DeleteParams::default()).await.unwrap();
    // Another namespace is not this watch's business.
    let other: Api<ConfigMap> = Api::namespaced(env.client.clone(), "kube-system");
    other
        .create(&PostParams::default(), &configmap("x", &[]))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut last_rv = String::new();
    for _ in 0..3 {
        let event = next_change(&mut events).await;
        if let WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) = &event {
            let rv = o.metadata.resource_version.clone().unwrap();
            assert!(!rv.is_empty());
            last_rv = rv;
        }
        seen.push(event_name(&event));
    }
    assert_eq!(
        seen,
        [
            ("ADDED".to_string(), "new".to_string()),
            ("MODIFIED".to_string(), "new".to_string()),
            ("DELETED".to_string(), "new".to_string())
        ]
    );
    // DELETED carries the delete's resourceVersion: newer than the update.
    assert!(
        last_rv.parse::<u64>().unwrap()
            > changed
                .metadata
                .resource_version
                .unwrap()
                .parse::<u64>()
                .unwrap()
    );
}

#[tokio::test]
async fn watch_resumes_after_a_resource_version() {
    let env = env().await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    cms.create(&PostParams::default(), &configmap("old", &[]))
        .await
        .unwrap();
    let list = cms.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    cms.create(&PostParams::default(), &configmap("after", &[]))
        .await
        .unwrap();
    let mut events = watch_stream(&cms, &WatchParams::default(), &rv).await;
    // Only what happened after the list; "old" is not replayed.
    assert_eq!(
        event_name(&next_change(&mut events).await),
        ("ADDED".into(), "after".into())
    );
    cms.delete("old", &DeleteParams::default()).await.unwrap();
    assert_eq!(
        event_name(&next_change(&mut events).await),
        ("DELETED".into(), "old".into())
    );
}

#[tokio::test]
async fn watch_from_a_compacted_resource_version_gets_410() {
    let env = env_with(Arc::new(Store::with_log_capacity(3))).await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    let first = cms
        .create(&PostParams::default(), &configmap("a", &[]))
        .await
        .unwrap();
    for i in 0..5 {
        cms.create(&PostParams::default(), &configmap(&format!("b{i}"), &[]))
            .await
            .unwrap();
    }
    let mut events = watch_stream(
        &cms,
        &WatchParams::default(),
        first.metadata.resource_version.as_deref().unwrap(),
    )
    .await;
    match next_change(&mut events).await {
        WatchEvent::Error(status) => {
            assert_eq!(status.code, 410);
            assert_eq!(status.reason, "Expired");
            assert!(
                status.message.starts_with("too old resource version"),
                "{}",
                status.message
            );
        }
        other => panic!("expected ERROR, got {other:?}"),
    }
    let end = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("stream ends");
    assert!(end.is_none());
}

#[tokio::test]
async fn bookmarks_carry_kind_and_the_latest_resource_version() {
    let env = env().await;
    env.server.set_bookmark_interval(Duration::from_millis(50));
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    let list = cms.list(&ListParams::default()).await.unwrap();
    let mut events = watch_stream(
        &cms,
        &WatchParams::default(),
        list.metadata.resource_version.as_deref().unwrap(),
    )
    .await;
    // A write elsewhere moves the revision; the bookmark reports it.
    let other: Api<ConfigMap> = Api::namespaced(env.client.clone(), "kube-system");
    let x = other
        .create(&PostParams::default(), &configmap("x", &[]))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let WatchEvent::Bookmark(b) = event {
            assert_eq!(b.types.kind, "ConfigMap");
            assert_eq!(b.types.api_version, "v1");
            if b.metadata.resource_version == x.metadata.resource_version.clone().unwrap() {
                break;
            }
        }
    }
}

#[tokio::test]
async fn selector_watch_sees_objects_enter_and_leave() {
    let env = env().await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    let mut events = watch_stream(&cms, &WatchParams::default().labels("team=a"), "0").await;
    let mut cm = configmap("c", &[]);
    cm.metadata.labels = Some([("team".to_string(), "b".to_string())].into());
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let patch = |team: &str| json!({"metadata": {"labels": {"team": team}}});
    cms.patch("c", &PatchParams::default(), &Patch::Merge(patch("a")))
        .await
        .unwrap();
    assert_eq!(
        event_name(&next_change(&mut events).await),
        ("ADDED".into(), "c".into())
    );
    cms.patch("c", &PatchParams::default(), &Patch::Merge(patch("b")))
        .await
        .unwrap();
    match next_change(&mut events).await {
        WatchEvent::Deleted(o) => {
            // The last state that matched, at the new resourceVersion.
            assert_eq!(o.metadata.labels.unwrap()["team"], "a");
        }
        other => panic!("expected DELETED, got {other:?}"),
    }
    cms.patch("c", &PatchParams::default(), &Patch::Merge(patch("a")))
        .await
        .unwrap();
    assert_eq!(
        event_name(&next_change(&mut events).await),
        ("ADDED".into(), "c".into())
    );
}

#[tokio::test]
async fn watch_ends_at_timeout_seconds() {
    let env = env().await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    let mut events = watch_stream(&cms, &WatchParams::default().timeout(1), "0").await;
    let started = tokio::time::Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(e) = events.next().await {
            e.unwrap();
        }
    })
    .await;
    assert!(end.is_ok());
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn runtime_watcher_and_await_condition_work_end_to_end() {
    let env = env().await;
    seed_pod(&env.store, "p", json!({"app": "x"}), Some("n1"));
    env.store
        .modify(&PODS, "default", "p", |p| {
            p["status"]["phase"] = json!("Pending");
            Ok(())
        })
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let store = env.store.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        store
            .modify(&PODS, "default", "p", |p| {
                p["status"]["phase"] = json!("Running");
                Ok(())
            })
            .unwrap();
    });
    let running = |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref())
            .and_then(|s| s.phase.as_deref())
            == Some("Running")
    };
    let pod = tokio::time::timeout(
        Duration::from_secs(5),
        await_condition(pods.clone(), "p", running),
    )
    .await
    .expect("condition within 5s")
    .unwrap()
    .unwrap();
    assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Running"));

    // A streaming list is refused where the WatchList gate is off by
    // default (1.33: kubernetes/kubernetes#131359), as kube-apiserver
    // refuses it: a 422 before the watch starts.
    let refused = pods
        .watch(&WatchParams::streaming_lists(), "")
        .await
        .map(|_| ())
        .expect_err("a streaming list on 1.33");
    assert!(
        matches!(&refused, kube::Error::Api(s) if s.code == 422 && s.message.contains("WatchList feature gate")),
        "{refused}"
    );
    env.server.set_version("v1.34.1");

    // A watcher (list + watch, then the streaming-list variant) sees new pods.
    for config in [
        watcher::Config::default(),
        watcher::Config::default().streaming_lists(),
    ] {
        let mut applied = watcher(pods.clone(), config.labels("app=y"))
            .applied_objects()
            .boxed();
        let name = format!("y-{}", rand_suffix());
        seed_pod(&env.store, &name, json!({"app": "y"}), None);
        let found = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(p) = applied.try_next().await.unwrap() {
                if p.metadata.name.as_deref() == Some(name.as_str()) {
                    return p;
                }
            }
            panic!("watcher ended");
        })
        .await
        .expect("watcher sees the pod");
        assert_eq!(found.metadata.labels.unwrap()["app"], "y");
    }
}

fn rand_suffix() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            % 1_000_000
    )
}

/// A raw request through the admin client: status code and JSON body.
async fn raw(env: &Env, method: &str, path: &str, content_type: &str, body: Value) -> (u16, Value) {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", content_type)
        .body(kube::client::Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap();
    let response = env.client.send(request).await.expect("request sent");
    let code = response.status().as_u16();
    let bytes = response.into_body().collect_bytes().await.unwrap();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn merge_and_json_patches() {
    let env = env().await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &configmap("m", &[("a", "1"), ("b", "2")]),
    )
    .await
    .unwrap();
    let out = cms
        .patch(
            "m",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": null, "c": "3"}})),
        )
        .await
        .unwrap();
    let data = out.data.clone().unwrap();
    assert!(!data.contains_key("a"));
    assert_eq!(data["c"], "3");
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/b", "value": "2"},
        {"op": "add", "path": "/metadata/labels", "value": {"x": "y"}},
        {"op": "replace", "path": "/data/b", "value": "20"},
    ]))
    .unwrap();
    let out = cms
        .patch("m", &PatchParams::default(), &Patch::<()>::Json(ops))
        .await
        .unwrap();
    assert_eq!(out.data.unwrap()["b"], "20");
    assert_eq!(out.metadata.labels.unwrap()["x"], "y");
    // A failing test operation is the server rejecting the request.
    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/data/b", "value": "nope"}]))
            .unwrap();
    let err = api_status(
        cms.patch("m", &PatchParams::default(), &Patch::<()>::Json(failing))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    // A resourceVersion inside the patch is a precondition.
    let stale = json!({"metadata": {"resourceVersion": "1"}, "data": {"z": "1"}});
    let err = api_status(
        cms.patch("m", &PatchParams::default(), &Patch::Merge(stale))
            .await
            .unwrap_err(),
    );
    assert!(err.is_conflict());
    let current = cms
        .get("m")
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let fresh = json!({"metadata": {"resourceVersion": current}, "data": {"z": "1"}});
    cms.patch("m", &PatchParams::default(), &Patch::Merge(fresh))
        .await
        .unwrap();
    // Missing object: 404; unknown patch type: 415.
    let err = api_status(
        cms.patch("nope", &PatchParams::default(), &Patch::Merge(json!({})))
            .await
            .unwrap_err(),
    );
    assert!(err.is_not_found());
    let (code, body) = raw(
        &env,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/m",
        "application/xml",
        json!({}),
    )
    .await;
    assert_eq!(code, 415);
    assert_eq!(body["reason"], "UnsupportedMediaType");
    // A charset parameter is fine.
    let (code, _) = raw(
        &env,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/m",
        "application/merge-patch+json; charset=utf-8",
        json!({"data": {"q": "1"}}),
    )
    .await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn strategic_merge_on_node_conditions_taints_and_cordon() {
    let env = env().await;
    seed_node(&env.store, "n1");
    env.store
        .modify(&NODES, "", "n1", |n| {
            n["spec"]["taints"] = json!([{"key": "old", "effect": "NoSchedule"}]);
            n["status"]["conditions"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "DiskPressure", "status": "False"}));
            Ok(())
        })
        .unwrap();
    let nodes: Api<Node> = Api::all(env.client.clone());
    let out = nodes
        .patch_status(
            "n1",
            &PatchParams::default(),
            &Patch::Strategic(json!({"status": {"conditions": [
                {"type": "Ready", "status": "False", "reason": "KubeletNotReady"}]}})),
        )
        .await
        .unwrap();
    let conditions = out.status.unwrap().conditions.unwrap();
    assert_eq!(conditions.len(), 2, "merged by type, not replaced");
    let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_deref()),
        ("False", Some("KubeletNotReady"))
    );
    // Taints have no merge key: the list is replaced.
    let out = nodes
        .patch(
            "n1",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"taints": [{"key": "new", "effect": "NoExecute"}]}})),
        )
        .await
        .unwrap();
    let taints = out.spec.unwrap().taints.unwrap();
    assert_eq!(taints.len(), 1);
    assert_eq!(taints[0].key, "new");
    // Status changes through the main resource are ignored.
    let out = nodes
        .patch(
            "n1",
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
            ),
        )
        .await
        .unwrap();
    let ready = out
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "False");
    // kubectl's cordon and uncordon.
    let cordoned = nodes
        .patch(
            "n1",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"unschedulable": true}})),
        )
        .await
        .unwrap();
    assert_eq!(cordoned.spec.unwrap().unschedulable, Some(true));
    let uncordoned = nodes
        .patch(
            "n1",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"unschedulable": null}})),
        )
        .await
        .unwrap();
    assert_eq!(uncordoned.spec.unwrap().unschedulable, None);
    assert_eq!(
        nodes
            .cordon("n1")
            .await
            .unwrap()
            .spec
            .unwrap()
            .unschedulable,
        Some(true)
    );
}

#[tokio::test]
async fn server_side_apply_creates_merges_and_detects_conflicts() {
    let env = env().await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    let config = |data: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": data});
    // No fieldManager: 422.
    let err = api_status(
        cms.patch(
            "s",
            &PatchParams::default(),
            &Patch::Apply(config(json!({"a": "1"}))),
        )
        .await
        .unwrap_err(),
    );
    assert!(err.is_invalid());
    assert!(err.message.contains("fieldManager"), "{}", err.message);
    // Creates when missing: 201.
    let (code, body) = raw(
        &env,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/s?fieldManager=alpha",
        "application/apply-patch+yaml",
        config(json!({"a": "1", "b": "2"})),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["metadata"]["managedFields"][0]["manager"], "alpha");
    assert_eq!(body["metadata"]["managedFields"][0]["operation"], "Apply");
    // Another manager changing a field alpha owns: conflict.
    let beta = PatchParams::apply("beta");
    let err = api_status(
        cms.patch("s", &beta, &Patch::Apply(config(json!({"a": "9"}))))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 409);
    assert!(err.is_conflict());
    let cause = &err.details.as_ref().unwrap().causes[0];
    assert_eq!(cause.reason, "FieldManagerConflict");
    assert_eq!(cause.field, ".data.a");
    assert!(cause.message.contains("\"alpha\""), "{}", cause.message);
    // Agreeing on a value is no conflict; adding a new field is fine.
    let out = cms
        .patch(
            "s",
            &beta,
            &Patch::Apply(config(json!({"a": "1", "c": "3"}))),
        )
        .await
        .unwrap();
    assert_eq!(out.data.unwrap()["c"], "3");
    // force takes the field over.
    let out = cms
        .patch(
            "s",
            &beta.clone().force(),
            &Patch::Apply(config(json!({"a": "9", "c": "3"}))),
        )
        .await
        .unwrap();
    assert_eq!(out.data.unwrap()["a"], "9");
    // alpha stops applying b: b is removed (nobody else owns it).
    let out = cms
        .patch(
            "s",
            &PatchParams::apply("alpha"),
            &Patch::Apply(config(json!({}))),
        )
        .await
        .unwrap();
    let data = out.data.unwrap();
    assert!(!data.contains_key("b"), "{data:?}");
    assert_eq!(data["a"], "9");
    // A plain update by another manager takes ownership too.
    cms.patch(
        "s",
        &PatchParams {
            field_manager: Some("gamma".into()),
            ..PatchParams::default()
        },
        &Patch::Merge(json!({"data": {"c": "4"}})),
    )
    .await
    .unwrap();
    let err = api_status(
        cms.patch(
            "s",
            &beta,
            &Patch::Apply(config(json!({"a": "9", "c": "5"}))),
        )
        .await
        .unwrap_err(),
    );
    assert!(err.message.contains("\"gamma\""), "{}", err.message);
}

/// A PDB as the disruption controller leaves it.
fn seed_pdb(
    store: &Store,
    name: &str,
    selector: Value,
    allowed: i64,
    current: i64,
    desired: i64,
) -> Arc<Value> {
    let pdb = store
        .create(
            &PDBS,
            "default",
            json!({"metadata": {"name": name}, "spec": {"selector": selector, "minAvailable": desired}}),
        )
        .unwrap();
    let generation = pdb["metadata"]["generation"].clone();
    store
        .modify(&PDBS, "default", name, |p| {
            p["status"] = json!({"observedGeneration": generation, "disruptionsAllowed": allowed,
                                 "currentHealthy": current, "desiredHealthy": desired, "expectedPods": current});
            Ok(())
        })
        .unwrap()
}

fn pdb_status(store: &Store, name: &str) -> Value {
    store.get(&PDBS, "default", name).unwrap()["status"].clone()
}

async fn evict(env: &Env, pod: &str) -> Result<kube::core::Status, Error> {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    pods.evict(pod, &EvictParams::default()).await
}

#[tokio::test]
async fn eviction_without_a_budget_deletes_gracefully_with_201() {
    let env = env().await;
    seed_pod(&env.store, "p", json!({"app": "web"}), Some("n1"));
    let (code, body) = raw(
        &env,
        "POST",
        "/api/v1/namespaces/default/pods/p/eviction",
        "application/json",
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p", "namespace": "default"}}),
    )
    .await;
    assert_eq!(code, 201);
    assert_eq!(
        body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
    );
    let pod = env
        .store
        .get(&PODS, "default", "p")
        .expect("still terminating");
    assert!(pod["metadata"]["deletionTimestamp"].is_string());
    let target = pod["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "DisruptionTarget")
        .cloned()
        .unwrap();
    assert_eq!(target["reason"], "EvictionByEvictionAPI");
    assert_eq!(target["message"], "Eviction API: evicting");
    // Missing pod: 404; name mismatch: 400.
    assert!(api_status(evict(&env, "nope").await.unwrap_err()).is_not_found());
    let (code, body) = raw(
        &env,
        "POST",
        "/api/v1/namespaces/default/pods/p/eviction",
        "application/json",
        json!({"metadata": {"name": "other"}}),
    )
    .await;
    assert_eq!(code, 400);
    assert_eq!(
        body["message"],
        "name in URL does not match name in Eviction object"
    );
}

#[tokio::test]
async fn eviction_honours_the_budget() {
    let env = env().await;
    seed_pod(&env.store, "a", json!({"app": "web"}), Some("n1"));
    seed_pod(&env.store, "b", json!({"app": "web"}), Some("n1"));
    seed_pdb(
        &env.store,
        "web",
        json!({"matchLabels": {"app": "web"}}),
        1,
        2,
        1,
    );
    let status = evict(&env, "a").await.unwrap();
    assert!(status.is_success());
    let after = pdb_status(&env.store, "web");
    assert_eq!(after["disruptionsAllowed"], 0);
    assert!(after["disruptedPods"]["a"].is_string());
    let condition = &after["conditions"][0];
    assert_eq!(
        (condition["type"].as_str(), condition["reason"].as_str()),
        (Some("DisruptionAllowed"), Some("InsufficientPods"))
    );
    // The budget is spent: 429 with the real message and cause.
    let err = api_status(evict(&env, "b").await.unwrap_err());
    assert_eq!(err.code, 429);
    assert_eq!(err.reason, "TooManyRequests");
    assert_eq!(
        err.message,
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    let cause = &err.details.as_ref().unwrap().causes[0];
    assert_eq!(cause.reason, "DisruptionBudget");
    assert_eq!(
        cause.message,
        "The disruption budget web needs 1 healthy pods and has 2 currently"
    );
    assert!(
        env.store.get(&PODS, "default", "b").unwrap()["metadata"]["deletionTimestamp"].is_null()
    );
}

#[tokio::test]
async fn eviction_with_two_budgets_is_a_500() {
    let env = env().await;
    seed_pod(&env.store, "p", json!({"app": "web"}), Some("n1"));
    seed_pdb(
        &env.store,
        "one",
        json!({"matchLabels": {"app": "web"}}),
        5,
        5,
        0,
    );
    seed_pdb(&env.store, "all", json!({}), 5, 5, 0);
    let err = api_status(evict(&env, "p").await.unwrap_err());
    assert_eq!(err.code, 500);
    assert_eq!(
        err.message,
        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    );
    assert_eq!(err.reason, "");
}

#[tokio::test]
async fn pending_and_terminating_pods_skip_the_budget() {
    let env = env().await;
    seed_pod(&env.store, "pending", json!({"app": "web"}), None);
    env.store
        .modify(&PODS, "default", "pending", |p| {
            p["status"] = json!({"phase": "Pending"});
            Ok(())
        })
        .unwrap();
    seed_pdb(
        &env.store,
        "web",
        json!({"matchLabels": {"app": "web"}}),
        0,
        0,
        1,
    );
    evict(&env, "pending").await.unwrap();
    assert!(
        env.store.get(&PODS, "default", "pending").is_none(),
        "unbound: deleted at once"
    );
    assert_eq!(pdb_status(&env.store, "web")["disruptionsAllowed"], 0);
}

#[tokio::test]
async fn unhealthy_pod_eviction_policy() {
    let env = env().await;
    let not_ready = |store: &Store, name: &str| {
        seed_pod(store, name, json!({"app": "web"}), Some("n1"));
        store
            .modify(&PODS, "default", name, |p| {
                p["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]);
                Ok(())
            })
            .unwrap();
    };
    not_ready(&env.store, "sick");
    // IfHealthyBudget (the default) with too few healthy pods: blocked.
    seed_pdb(
        &env.store,
        "web",
        json!({"matchLabels": {"app": "web"}}),
        0,
        1,
        2,
    );
    assert_eq!(api_status(evict(&env, "sick").await.unwrap_err()).code, 429);
    // AlwaysAllow: evicted without spending the budget.
    env.store
        .modify(&PDBS, "default", "web", |p| {
            p["spec"]["unhealthyPodEvictionPolicy"] = json!("AlwaysAllow");
            p["status"]["observedGeneration"] = json!(2);
            Ok(())
        })
        .unwrap();
    evict(&env, "sick").await.unwrap();
    assert_eq!(pdb_status(&env.store, "web")["disruptionsAllowed"], 0);
    // IfHealthyBudget with enough healthy pods: the unhealthy one goes
    // without spending the budget.
    not_ready(&env.store, "sick2");
    env.store
        .modify(&PDBS, "default", "web", |p| {
            p["spec"]["unhealthyPodEvictionPolicy"] = json!("IfHealthyBudget");
            p["status"]["observedGeneration"] = json!(3);
            p["status"]["currentHealthy"] = json!(2);
            Ok(())
        })
        .unwrap();
    evict(&env, "sick2").await.unwrap();
    assert_eq!(pdb_status(&env.store, "web")["disruptionsAllowed"], 0);
}

#[tokio::test]
async fn eviction_waits_for_the_disruption_controller() {
    let env = env().await;
    seed_pod(&env.store, "p", json!({"app": "web"}), Some("n1"));
    seed_pdb(
        &env.store,
        "web",
        json!({"matchLabels": {"app": "web"}}),
        3,
        3,
        0,
    );
    // A spec change bumps the generation; the controller has not seen it.
    env.store
        .modify(&PDBS, "default", "web", |p| {
            p["spec"]["minAvailable"] = json!(1);
            Ok(())
        })
        .unwrap();
    let request = http::Request::builder()
        .method("POST")
        .uri("/api/v1/namespaces/default/pods/p/eviction")
        .header("Content-Type", "application/json")
        .body(kube::client::Body::from(
            serde_json::to_vec(&json!({"metadata": {"name": "p"}})).unwrap(),
        ))
        .unwrap();
    let response = env.client.send(request).await.unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(response.headers()["Retry-After"], "10");
    let body: Value =
        serde_json::from_slice(&response.into_body().collect_bytes().await.unwrap()).unwrap();
    assert_eq!(body["details"]["retryAfterSeconds"], 10);
    assert_eq!(
        body["details"]["causes"][0]["message"],
        "The disruption budget web is still being processed by the server."
    );
}

#[tokio::test]
async fn eviction_delete_options_follow_the_body_kube_rs_sends() {
    let env = env().await;
    seed_pod(&env.store, "a", json!({}), Some("n1"));
    seed_pod(&env.store, "b", json!({}), Some("n1"));
    // kube-rs posts `delete_options` (snake case): dropped, so the pod's
    // own grace period applies.
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let ep = EvictParams {
        delete_options: Some(DeleteParams::default().grace_period(0)),
        ..EvictParams::default()
    };
    pods.evict("a", &ep).await.unwrap();
    assert!(
        env.store.get(&PODS, "default", "a").unwrap()["metadata"]["deletionTimestamp"].is_string()
    );
    // kubectl's body (`deleteOptions`) is honoured.
    let (code, _) = raw(
        &env,
        "POST",
        "/api/v1/namespaces/default/pods/b/eviction",
        "application/json",
        json!({"apiVersion": "policy/v1beta1", "kind": "Eviction", "metadata": {"name": "b"},
               "deleteOptions": {"gracePeriodSeconds": 0}}),
    )
    .await;
    assert_eq!(code, 201);
    assert!(env.store.get(&PODS, "default", "b").is_none());
}

/// A client with another bearer token (or none: anonymous).
async fn client_with_token(env: &Env, token: Option<&str>) -> Client {
    let kubeconfig = Kubeconfig::from_yaml(&env.server.kubeconfig_yaml()).unwrap();
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    config.default_retry = false;
    config.auth_info = kube::config::AuthInfo::default();
    if let Some(token) = token {
        config.auth_info.token = Some(token.to_string().into());
    }
    Client::try_from(config).unwrap()
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A bootstrap token Secret as kubeadm writes it, with `changes` applied
/// to its data (an empty value removes the key).
fn seed_token(store: &Store, id: &str, secret: &str, changes: &[(&str, &str)]) {
    let mut data = serde_json::Map::new();
    for (k, v) in [
        ("token-id", id),
        ("token-secret", secret),
        ("usage-bootstrap-authentication", "true"),
        ("usage-bootstrap-signing", "true"),
        (
            "auth-extra-groups",
            "system:bootstrappers:kubeadm:default-node-token",
        ),
        ("expiration", "2099-01-01T00:00:00Z"),
    ] {
        data.insert(k.into(), json!(b64(v)));
    }
    for (k, v) in changes {
        if v.is_empty() {
            data.remove(*k);
        } else {
            data.insert(k.to_string(), json!(b64(v)));
        }
    }
    store
        .create(
            &SECRETS,
            "kube-system",
            json!({"metadata": {"name": format!("bootstrap-token-{id}")},
                   "type": "bootstrap.kubernetes.io/token", "data": data}),
        )
        .unwrap();
}

#[tokio::test]
async fn bootstrap_tokens_authenticate_exactly_as_kubeadm_expects() {
    let env = env().await;
    env.store
        .create(
            &kubesurge_testworld::resources::CONFIGMAPS,
            "kube-public",
            json!({"metadata": {"name": "cluster-info"}, "data": {"kubeconfig": "x"}}),
        )
        .unwrap();
    env.store
        .create(
            &kubesurge_testworld::resources::CONFIGMAPS,
            "kube-system",
            json!({"metadata": {"name": "kubeadm-config"}, "data": {"ClusterConfiguration": "x"}}),
        )
        .unwrap();
    seed_token(&env.store, "abcdef", "0123456789abcdef", &[]);
    seed_token(
        &env.store,
        "expird",
        "0123456789abcdef",
        &[("expiration", "2001-01-01T00:00:00Z")],
    );
    seed_token(
        &env.store,
        "unpars",
        "0123456789abcdef",
        &[("expiration", "next tuesday")],
    );
    seed_token(
        &env.store,
        "nouse0",
        "0123456789abcdef",
        &[("usage-bootstrap-authentication", "")],
    );
    seed_token(
        &env.store,
        "badgrp",
        "0123456789abcdef",
        &[("auth-extra-groups", "system:masters")],
    );

    let valid = client_with_token(&env, Some("abcdef.0123456789abcdef")).await;
    let kube_system: Api<ConfigMap> = Api::namespaced(valid.clone(), "kube-system");
    assert!(kube_system.get("kubeadm-config").await.is_ok());
    // Authenticated but not allowed: 403 naming the bootstrap user.
    let pods: Api<Pod> = Api::namespaced(valid.clone(), "default");
    let err = api_status(pods.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(err.code, 403);
    assert!(
        err.message.contains("User \"system:bootstrap:abcdef\""),
        "{}",
        err.message
    );

    for bad in [
        "abcdef.0123456789abcdee", // wrong secret
        "expird.0123456789abcdef", // expired
        "unpars.0123456789abcdef", // unparseable expiration
        "nouse0.0123456789abcdef", // not for authentication
        "badgrp.0123456789abcdef", // invalid extra group
        "nosuch.0123456789abcdef", // no Secret
        "garbage",
    ] {
        let client = client_with_token(&env, Some(bad)).await;
        let cms: Api<ConfigMap> = Api::namespaced(client, "kube-public");
        let err = api_status(cms.get("cluster-info").await.unwrap_err());
        assert_eq!(err.code, 401, "{bad}");
        assert_eq!(err.reason, "Unauthorized", "{bad}");
    }
}

#[tokio::test]
async fn anonymous_reads_cluster_info_and_version_only() {
    let env = env().await;
    env.store
        .create(
            &kubesurge_testworld::resources::CONFIGMAPS,
            "kube-public",
            json!({"metadata": {"name": "cluster-info"}, "data": {"kubeconfig": "x"}}),
        )
        .unwrap();
    let anonymous = client_with_token(&env, None).await;
    let public: Api<ConfigMap> = Api::namespaced(anonymous.clone(), "kube-public");
    assert_eq!(
        public.get("cluster-info").await.unwrap().data.unwrap()["kubeconfig"],
        "x"
    );
    assert_eq!(
        anonymous.apiserver_version().await.unwrap().git_version,
        "v1.33.4"
    );
    let pods: Api<Pod> = Api::namespaced(anonymous.clone(), "default");
    let err = api_status(pods.list(&ListParams::default()).await.unwrap_err());
    assert!(err.is_forbidden());
    assert_eq!(
        err.message,
        "pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
    );
    let err = api_status(public.get("other").await.unwrap_err());
    assert_eq!(err.code, 403);
    let nodes: Api<Node> = Api::all(anonymous);
    let err = api_status(nodes.list(&ListParams::default()).await.unwrap_err());
    assert!(
        err.message.ends_with("at the cluster scope"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn an_unavailable_server_drops_connections_then_recovers() {
    let env = env().await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    cms.list(&ListParams::default()).await.unwrap();
    let mut events = watch_stream(&cms, &WatchParams::default(), "0").await;
    let faults = env.server.faults();
    faults.unavailable_for(Duration::from_millis(300));
    assert!(faults.is_unavailable());
    // The open watch is cut.
    let cut = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(cut.is_ok(), "the watch ends when the server goes away");
    // New requests fail at the connection, not with an HTTP status.
    let err = cms.list(&ListParams::default()).await.unwrap_err();
    assert!(!matches!(err, Error::Api(_)), "{err:?}");
    // And come back.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match cms.list(&ListParams::default()).await {
            Ok(_) => break,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "server did not come back: {e:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert!(!faults.is_unavailable());
}

#[tokio::test]
async fn injected_failures_hit_matching_requests_with_real_status_bodies() {
    let env = env().await;
    seed_node(&env.store, "n1");
    let faults = env.server.faults();
    faults.fail_next(2, 429, Some(FaultFilter::verb_resource("list", "nodes")));
    let nodes: Api<Node> = Api::all(env.client.clone());
    // Other requests are not affected.
    nodes.get("n1").await.unwrap();
    let request = || {
        http::Request::get("/api/v1/nodes")
            .body(kube::client::Body::from(Vec::new()))
            .unwrap()
    };
    let response = env.client.send(request()).await.unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(response.headers()["Retry-After"], "1");
    let body: Value =
        serde_json::from_slice(&response.into_body().collect_bytes().await.unwrap()).unwrap();
    assert_eq!(
        (body["kind"].as_str(), body["reason"].as_str()),
        (Some("Status"), Some("TooManyRequests"))
    );
    assert_eq!(
        api_status(nodes.list(&ListParams::default()).await.unwrap_err()).code,
        429
    );
    assert_eq!(
        nodes
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    faults.fail_next(1, 500, None);
    let err = api_status(nodes.get("n1").await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (500, "InternalError"));
    // kube-rs retries 503 by itself when its retry policy is on.
    faults.fail_next(1, 503, Some(FaultFilter::resource("nodes")));
    let retrying = client_from(&env.server.kubeconfig_yaml(), true).await;
    let before = faults.requests_served();
    Api::<Node>::all(retrying).get("n1").await.unwrap();
    assert_eq!(faults.requests_served() - before, 2);
}

#[tokio::test]
async fn request_counts_by_verb_and_resource() {
    let env = env().await;
    seed_node(&env.store, "n1");
    let nodes: Api<Node> = Api::all(env.client.clone());
    nodes.list(&ListParams::default()).await.unwrap();
    nodes.list(&ListParams::default()).await.unwrap();
    nodes.get("n1").await.unwrap();
    let mut events = watch_stream(&nodes, &WatchParams::default(), "0").await;
    next_change(&mut events).await;
    seed_pod(&env.store, "p", json!({}), Some("n1"));
    Api::<Pod>::namespaced(env.client.clone(), "default")
        .evict("p", &EvictParams::default())
        .await
        .unwrap();
    let counts = env.server.request_counts();
    assert_eq!(counts.get("list", "nodes"), 2);
    assert_eq!(counts.get("get", "nodes"), 1);
    assert_eq!(counts.get("watch", "nodes"), 1);
    assert_eq!(counts.get("create", "pods/eviction"), 1);
    assert!(counts.bytes_sent > 1000, "{}", counts.bytes_sent);
}

/// Scale: 1000 nodes and 20000 pods served on the machine's two cores —
/// paged lists, a filtered list, and a watch keeping up with a burst of
/// writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_a_thousand_nodes_and_twenty_thousand_pods() {
    let env = env().await;
    for n in 0..1000 {
        seed_node(&env.store, &format!("node-{n:04}"));
    }
    for p in 0..20_000 {
        let node = format!("node-{:04}", p % 1000);
        seed_pod(
            &env.store,
            &format!("pod-{p:05}"),
            json!({"app": format!("app-{}", p % 50)}),
            Some(&node),
        );
    }
    let started = std::time::Instant::now();
    let pods: Api<Pod> = Api::all(env.client.clone());
    let mut total = 0;
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().limit(500);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = pods.list(&lp).await.unwrap();
        total += page.items.len();
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    assert_eq!(total, 20_000);
    let list_time = started.elapsed();
    let on_node = pods
        .list(&ListParams::default().fields("spec.nodeName=node-0007"))
        .await
        .unwrap();
    assert_eq!(on_node.items.len(), 20);
    let nodes: Api<Node> = Api::all(env.client.clone());
    assert_eq!(
        nodes
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1000
    );

    // A watch on every pod keeps up with 2000 writes.
    let rv = env.store.revision().to_string();
    let mut events = watch_stream(&pods, &WatchParams::default(), &rv).await;
    let store = env.store.clone();
    let writer = tokio::task::spawn_blocking(move || {
        for p in 0..2000 {
            store
                .modify(&PODS, "default", &format!("pod-{p:05}"), |pod| {
                    pod["metadata"]["labels"]["touched"] = json!("yes");
                    Ok(())
                })
                .unwrap();
        }
    });
    let watch_started = std::time::Instant::now();
    let mut seen = 0;
    while seen < 2000 {
        if let WatchEvent::Modified(_) = next_change(&mut events).await {
            seen += 1;
        }
    }
    writer.await.unwrap();
    let watch_time = watch_started.elapsed();
    eprintln!("paged list of 20000 pods: {list_time:?}; 2000 watch events: {watch_time:?}");
    assert!(list_time < Duration::from_secs(30), "{list_time:?}");
    assert!(watch_time < Duration::from_secs(30), "{watch_time:?}");
}

#[tokio::test]
async fn binding_deletecollection_namespaces_and_finalizers() {
    let env = env().await;
    // POST pods/<name>/binding sets spec.nodeName, once.
    seed_pod(&env.store, "p", json!({"app": "x"}), None);
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
                         "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}});
    let path = "/api/v1/namespaces/default/pods/p/binding";
    let (code, _) = raw(&env, "POST", path, "application/json", binding.clone()).await;
    assert_eq!(code, 201);
    assert_eq!(
        env.store.get(&PODS, "default", "p").unwrap()["spec"]["nodeName"],
        "n1"
    );
    let (code, body) = raw(&env, "POST", path, "application/json", binding).await;
    assert_eq!(code, 409, "{body}");

    // DELETE on a collection with a selector.
    seed_pod(&env.store, "q", json!({"app": "x"}), None);
    seed_pod(&env.store, "r", json!({"app": "y"}), None);
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    pods.delete_collection(
        &DeleteParams::default().grace_period(0),
        &ListParams::default().labels("app=x"),
    )
    .await
    .unwrap();
    let left: Vec<String> = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect();
    assert_eq!(left, ["r"]);

    // A finalizer holds a delete until it is removed.
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    let mut held = configmap("held", &[]);
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &held).await.unwrap();
    let out = cms.delete("held", &DeleteParams::default()).await.unwrap();
    assert!(out.left().unwrap().metadata.deletion_timestamp.is_some());
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(cms.get_opt("held").await.unwrap().is_none());

    // Deleting a namespace deletes what is in it; some may not be deleted.
    let nss: Api<Namespace> = Api::all(env.client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap();
    let created = nss.create(&PostParams::default(), &ns).await.unwrap();
    assert_eq!(created.status.unwrap().phase.as_deref(), Some("Active"));
    let team: Api<ConfigMap> = Api::namespaced(env.client.clone(), "team");
    team.create(&PostParams::default(), &configmap("c", &[]))
        .await
        .unwrap();
    nss.delete("team", &DeleteParams::default()).await.unwrap();
    assert!(nss.get_opt("team").await.unwrap().is_none());
    assert!(
        env.store
            .get(&kubesurge_testworld::resources::CONFIGMAPS, "team", "c")
            .is_none()
    );
    assert!(
        api_status(
            nss.delete("kube-system", &DeleteParams::default())
                .await
                .unwrap_err()
        )
        .is_forbidden()
    );
}

#[tokio::test]
async fn health_endpoints_and_stop() {
    let env = env().await;
    for path in ["/readyz", "/livez", "/healthz"] {
        let text = env
            .client
            .request_text(http::Request::get(path).body(vec![]).unwrap())
            .await
            .unwrap();
        assert_eq!(text, "ok");
    }
    env.server.stop();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let fresh = client_from(&env.server.kubeconfig_yaml(), false).await;
    loop {
        match fresh.apiserver_version().await {
            Err(e) => {
                assert!(!matches!(e, Error::Api(_)), "{e:?}");
                break;
            }
            Ok(_) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "server still answering"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// An eviction pinned to another uid (the pod was deleted and a new one
/// took its name, as a StatefulSet's does) is refused as a real API server
/// refuses it: the eviction path spends the budget first and the delete's
/// `BeforeDelete` check then answers 409 with its own words
/// (kubernetes `pkg/registry/core/pod/storage/eviction.go`,
/// k8s.io/apiserver `pkg/registry/rest/delete.go`). The emulator used to
/// check the uid first and spend nothing, unlike a cluster.
#[tokio::test]
async fn eviction_pinned_to_another_uid_is_refused_after_the_budget_is_spent() {
    let env = env().await;
    let pod = seed_pod(&env.store, "p", json!({"app": "web"}), Some("n1"));
    seed_pdb(
        &env.store,
        "web",
        json!({"matchLabels": {"app": "web"}}),
        1,
        2,
        1,
    );
    let body = |uid: &str| {
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p", "namespace": "default"},
               "deleteOptions": {"preconditions": {"uid": uid}}})
    };
    let path = "/api/v1/namespaces/default/pods/p/eviction";
    let (code, status) = raw(&env, "POST", path, "application/json", body("someone-else")).await;
    assert_eq!(code, 409);
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    assert_eq!(
        status["message"].as_str().unwrap(),
        format!(
            "Operation cannot be fulfilled on Pod \"p\": the UID in the precondition (someone-else) does not match the UID in record ({uid}). The object might have been deleted and then recreated"
        ),
        "{status}"
    );
    assert_eq!(
        pdb_status(&env.store, "web")["disruptionsAllowed"],
        0,
        "the budget was spent before the delete refused"
    );
    assert!(
        env.store.get(&PODS, "default", "p").is_some(),
        "the pod stays"
    );
}

#[tokio::test]
async fn metadata_only_gets_lists_and_watches() {
    let env = env().await;
    seed_node(&env.store, "n1");
    let nodes: Api<Node> = Api::all(env.client.clone());
    let meta = nodes.get_metadata("n1").await.unwrap();
    assert_eq!(meta.metadata.name.as_deref(), Some("n1"));
    assert_eq!(meta.types.unwrap().kind, "PartialObjectMetadata");
    let list = nodes.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.types.kind, "PartialObjectMetadataList");
    let metadata_api: Api<kube::core::PartialObjectMeta<Node>> = Api::all(env.client.clone());
    let mut stream = watcher(metadata_api, watcher::Config::default())
        .applied_objects()
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("n1"));
    seed_node(&env.store, "n2");
    let second = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(second.metadata.name.as_deref(), Some("n2"));
}
