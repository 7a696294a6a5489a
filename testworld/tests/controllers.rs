//! The simulated cluster's controllers and kubelets, driven through the
//! store with millisecond timing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kubesurge_testworld::Timing;
use kubesurge_testworld::controllers::{Controllers, IGNORE_TERMINATION, NodeSpec, jws};
use kubesurge_testworld::resources::{
    CONFIGMAPS, DAEMONSETS, DEPLOYMENTS, EVENTS, LEASES, NODES, PDBS, PODS, REPLICASETS, SECRETS,
};
use kubesurge_testworld::store::{Preconditions, Store};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(5);

/// Poll the store until `pred` holds; fail after `deadline`.
async fn wait_until(store: &Store, what: &str, deadline: Duration, pred: impl Fn(&Store) -> bool) {
    let start = Instant::now();
    while !pred(store) {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait(store: &Store, what: &str, pred: impl Fn(&Store) -> bool) {
    wait_until(store, what, DEADLINE, pred).await;
}

fn world() -> (Arc<Store>, Controllers) {
    let store = Store::new();
    let controllers = Controllers::start(store.clone(), Timing::fast());
    (store, controllers)
}

fn worker(name: &str, zone: &str) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        kubelet_version: "v1.33.4".into(),
        provider_id: format!("sim:///{zone}/{name}"),
        zone: zone.into(),
        internal_ip: String::new(),
        labels: BTreeMap::new(),
        taints: vec![],
        max_pods: 0,
        control_plane: false,
        cloud: Default::default(),
    }
}

fn node(store: &Store, name: &str) -> Option<Arc<Value>> {
    store.get(&NODES, "", name)
}

fn condition<'a>(object: &'a Value, kind: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

fn condition_is(object: &Value, kind: &str, status: &str) -> bool {
    condition(object, kind).is_some_and(|c| c["status"] == status)
}

fn has_taint(node: &Value, key: &str, effect: &str) -> bool {
    node["spec"]["taints"]
        .as_array()
        .is_some_and(|ts| ts.iter().any(|t| t["key"] == key && t["effect"] == effect))
}

fn pod(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["containers"] = json!([{"name": "app", "image": "registry.example/app:1"}]);
    json!({"metadata": {"name": name, "namespace": "default", "labels": {"app": "x"}}, "spec": spec})
}

fn pod_node(store: &Store, name: &str) -> String {
    store
        .get(&PODS, "default", name)
        .and_then(|p| p["spec"]["nodeName"].as_str().map(str::to_string))
        .unwrap_or_default()
}

fn pod_running_ready(store: &Store, ns: &str, name: &str) -> bool {
    store
        .get(&PODS, ns, name)
        .is_some_and(|p| p["status"]["phase"] == "Running" && condition_is(&p, "Ready", "True"))
}

fn deployment(name: &str, replicas: i64) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
            },
        },
    })
}

fn pods_of(store: &Store, app: &str) -> Vec<Arc<Value>> {
    store
        .list(&PODS, Some("default"), |p| {
            p["metadata"]["labels"]["app"] == app
        })
        .0
}

fn ready_count(store: &Store, app: &str) -> usize {
    pods_of(store, app)
        .iter()
        .filter(|p| {
            p["metadata"]["deletionTimestamp"].is_null() && condition_is(p, "Ready", "True")
        })
        .count()
}

#[tokio::test]
async fn kubelet_registers_its_node_and_lease() {
    let (store, c) = world();
    let mut spec = worker("w1", "zone-a");
    spec.labels.insert("pool".into(), "blue".into());
    spec.max_pods = 50;
    c.kubelets.start(spec);
    assert!(c.kubelets.is_running("w1"));
    let n = node(&store, "w1").expect("node registered synchronously");
    let labels = &n["metadata"]["labels"];
    for (k, v) in [
        ("kubernetes.io/hostname", "w1"),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("topology.kubernetes.io/zone", "zone-a"),
        ("node.kubernetes.io/instance-type", "sim.large"),
        ("pool", "blue"),
    ] {
        assert_eq!(labels[k], v, "label {k}");
    }
    assert_eq!(n["spec"]["providerID"], "sim:///zone-a/w1");
    assert!(n["spec"]["taints"].is_null());
    assert_eq!(n["status"]["allocatable"]["pods"], "50");
    assert_eq!(n["status"]["capacity"]["cpu"], "4");
    assert_eq!(n["status"]["capacity"]["memory"], "16Gi");
    assert_eq!(n["status"]["nodeInfo"]["kubeletVersion"], "v1.33.4");
    assert!(
        n["status"]["nodeInfo"]["containerRuntimeVersion"]
            .as_str()
            .unwrap()
            .starts_with("containerd://")
    );
    // Not reported since v1.31, but present (empty): the field has no
    // `omitempty`.
    assert_eq!(n["status"]["nodeInfo"]["kubeProxyVersion"], "");
    let addresses = n["status"]["addresses"].as_array().unwrap();
    assert_eq!(addresses[0]["type"], "InternalIP");
    assert_eq!(addresses[1], json!({"type": "Hostname", "address": "w1"}));
    let ready = condition(&n, "Ready").unwrap();
    assert_eq!(ready["status"], "True");
    assert_eq!(ready["reason"], "KubeletReady");
    assert_eq!(ready["message"], "kubelet is posting ready status");
    for kind in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        assert!(condition_is(&n, kind, "False"), "{kind}");
    }
    let lease = store.get(&LEASES, "kube-node-lease", "w1").expect("lease");
    assert_eq!(lease["spec"]["holderIdentity"], "w1");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
    let renew = lease["spec"]["renewTime"].as_str().unwrap().to_string();
    assert_eq!(
        renew.len(),
        "2026-01-01T00:00:00.000000Z".len(),
        "MicroTime: {renew}"
    );

    // A control-plane node gets kubeadm's labels and taint.
    let mut cp = worker("cp1", "zone-a");
    cp.control_plane = true;
    c.kubelets.start(cp);
    let n = node(&store, "cp1").unwrap();
    assert_eq!(
        n["metadata"]["labels"]["node-role.kubernetes.io/control-plane"],
        ""
    );
    assert_eq!(
        n["metadata"]["labels"]["node.kubernetes.io/exclude-from-external-load-balancers"],
        ""
    );
    assert!(has_taint(
        &n,
        "node-role.kubernetes.io/control-plane",
        "NoSchedule"
    ));

    // Heartbeats renew the lease without rewriting the node each time.
    let node_rv = n["metadata"]["resourceVersion"].clone();
    wait(&store, "the lease is renewed", |s| {
        s.get(&LEASES, "kube-node-lease", "w1")
            .is_some_and(|l| l["spec"]["renewTime"] != json!(renew))
    })
    .await;
    assert_eq!(
        node(&store, "cp1").unwrap()["metadata"]["resourceVersion"],
        node_rv
    );
}

#[tokio::test]
async fn silent_kubelet_makes_node_unknown_and_tainted_until_it_returns() {
    let (store, c) = world();
    c.kubelets.start(worker("w1", "a"));
    store.create(&PODS, "default", pod("p", json!({}))).unwrap();
    wait(&store, "the pod runs", |s| {
        pod_running_ready(s, "default", "p")
    })
    .await;

    c.kubelets.stop("w1");
    assert!(!c.kubelets.is_running("w1"));
    wait(&store, "the node is Unknown and tainted", |s| {
        node(s, "w1").is_some_and(|n| {
            condition_is(&n, "Ready", "Unknown")
                && has_taint(&n, "node.kubernetes.io/unreachable", "NoSchedule")
                && has_taint(&n, "node.kubernetes.io/unreachable", "NoExecute")
        })
    })
    .await;
    let n = node(&store, "w1").unwrap();
    let ready = condition(&n, "Ready").unwrap();
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");
    assert!(condition_is(&n, "MemoryPressure", "Unknown"));
    for t in n["spec"]["taints"].as_array().unwrap() {
        assert!(t["timeAdded"].is_string(), "taint without timeAdded: {t}");
    }
    wait(&store, "the pod is marked not ready", |s| {
        s.get(&PODS, "default", "p")
            .is_some_and(|p| condition_is(&p, "Ready", "False"))
    })
    .await;
    let events = store
        .list(&EVENTS, Some("default"), |e| e["reason"] == "NodeNotReady")
        .0;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["involvedObject"]["name"], "w1");

    c.kubelets.start(worker("w1", "a"));
    wait(&store, "the node is Ready again without the taints", |s| {
        node(s, "w1").is_some_and(|n| {
            condition_is(&n, "Ready", "True")
                && !has_taint(&n, "node.kubernetes.io/unreachable", "NoSchedule")
                && !has_taint(&n, "node.kubernetes.io/unreachable", "NoExecute")
        })
    })
    .await;
    wait(&store, "the pod is ready again", |s| {
        pod_running_ready(s, "default", "p")
    })
    .await;
}

#[tokio::test]
async fn kubelet_restart_reports_the_new_version_after_a_not_ready_blip() {
    let (store, c) = world();
    c.kubelets.start(worker("w1", "a"));
    c.kubelets.restart_with_version("w1", "v1.34.1");
    let n = node(&store, "w1").unwrap();
    assert_eq!(n["status"]["nodeInfo"]["kubeletVersion"], "v1.34.1");
    assert!(condition_is(&n, "Ready", "False"));
    wait(&store, "the node is Ready again", |s| {
        node(s, "w1").is_some_and(|n| condition_is(&n, "Ready", "True"))
    })
    .await;
    let n = node(&store, "w1").unwrap();
    assert_eq!(n["status"]["nodeInfo"]["kubeletVersion"], "v1.34.1");
    assert!(c.kubelets.is_running("w1"));
}

#[tokio::test]
async fn cordon_follows_with_the_unschedulable_taint() {
    let (store, c) = world();
    c.kubelets.start(worker("w1", "a"));
    store
        .modify(&NODES, "", "w1", |n| {
            n["spec"]["unschedulable"] = json!(true);
            Ok(())
        })
        .unwrap();
    wait(&store, "the unschedulable taint appears", |s| {
        node(s, "w1")
            .is_some_and(|n| has_taint(&n, "node.kubernetes.io/unschedulable", "NoSchedule"))
    })
    .await;
    store
        .modify(&NODES, "", "w1", |n| {
            n["spec"].as_object_mut().unwrap().remove("unschedulable");
            Ok(())
        })
        .unwrap();
    wait(&store, "the unschedulable taint goes", |s| {
        node(s, "w1")
            .is_some_and(|n| !has_taint(&n, "node.kubernetes.io/unschedulable", "NoSchedule"))
    })
    .await;
}

#[tokio::test]
async fn scheduler_honours_taints_selectors_zones_and_cordons() {
    let (store, c) = world();
    c.kubelets.start(worker("a1", "zone-a"));
    c.kubelets.start(worker("b1", "zone-b"));
    let mut tainted = worker("t1", "zone-a");
    tainted.labels.insert("pool".into(), "gpu".into());
    tainted.taints = vec![json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"})];
    c.kubelets.start(tainted);

    let zone_b = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["zone-b"]}]}]}}}});
    store
        .create(&PODS, "default", pod("zoned", zone_b))
        .unwrap();
    store
        .create(&PODS, "default", pod("gpu-ok", json!({
            "nodeSelector": {"pool": "gpu"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
        })))
        .unwrap();
    store
        .create(
            &PODS,
            "default",
            pod("gpu-intolerant", json!({"nodeSelector": {"pool": "gpu"}})),
        )
        .unwrap();
    store
        .create(
            &PODS,
            "default",
            pod("nowhere", json!({"nodeSelector": {"pool": "none"}})),
        )
        .unwrap();
    wait(&store, "the placeable pods are bound", |s| {
        pod_node(s, "zoned") == "b1" && pod_node(s, "gpu-ok") == "t1"
    })
    .await;
    wait(&store, "the others are marked unschedulable", |s| {
        ["gpu-intolerant", "nowhere"].iter().all(|p| {
            s.get(&PODS, "default", p).is_some_and(|p| {
                condition(&p, "PodScheduled")
                    .is_some_and(|c| c["status"] == "False" && c["reason"] == "Unschedulable")
            })
        })
    })
    .await;
    let stuck = store.get(&PODS, "default", "gpu-intolerant").unwrap();
    let message = condition(&stuck, "PodScheduled").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.starts_with("0/3 nodes are available"), "{message}");
    assert!(message.contains("untolerated taint"), "{message}");
    assert_eq!(pod_node(&store, "gpu-intolerant"), "");

    // A node appearing that fits the waiting pod gets it.
    let mut fits = worker("n9", "zone-c");
    fits.labels.insert("pool".into(), "none".into());
    c.kubelets.start(fits);
    wait(&store, "the waiting pod lands on the new node", |s| {
        pod_node(s, "nowhere") == "n9"
    })
    .await;

    // Cordoned nodes get no new pods; uncordoning lets the waiting pod in.
    store
        .modify(&NODES, "", "n9", |n| {
            n["spec"]["unschedulable"] = json!(true);
            Ok(())
        })
        .unwrap();
    store
        .create(
            &PODS,
            "default",
            pod("to-n9", json!({"nodeSelector": {"pool": "none"}})),
        )
        .unwrap();
    wait(&store, "the pod for a cordoned node waits", |s| {
        s.get(&PODS, "default", "to-n9")
            .is_some_and(|p| condition_is(&p, "PodScheduled", "False"))
    })
    .await;
    let waiting = store.get(&PODS, "default", "to-n9").unwrap();
    assert!(
        condition(&waiting, "PodScheduled").unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("unschedulable")
    );
    store
        .modify(&NODES, "", "n9", |n| {
            n["spec"].as_object_mut().unwrap().remove("unschedulable");
            Ok(())
        })
        .unwrap();
    wait(&store, "uncordon lets it in", |s| {
        pod_node(s, "to-n9") == "n9"
    })
    .await;
    wait(&store, "it runs", |s| {
        pod_running_ready(s, "default", "to-n9")
    })
    .await;
}

#[tokio::test]
async fn scheduler_respects_capacity_readiness_and_spreads() {
    let (store, c) = world();
    let mut small = worker("s1", "a");
    small.max_pods = 2;
    c.kubelets.start(small);
    for i in 0..3 {
        store
            .create(&PODS, "default", pod(&format!("p{i}"), json!({})))
            .unwrap();
    }
    wait(&store, "two pods bound, one too many", |s| {
        let bound = (0..3)
            .filter(|i| !pod_node(s, &format!("p{i}")).is_empty())
            .count();
        let full = s.list(&PODS, Some("default"), |p| {
            condition(p, "PodScheduled").is_some_and(|c| {
                c["status"] == "False"
                    && c["message"]
                        .as_str()
                        .unwrap_or("")
                        .contains("Too many pods")
            })
        });
        bound == 2 && full.0.len() == 1
    })
    .await;
    let waiting = (0..3)
        .map(|i| format!("p{i}"))
        .find(|p| pod_node(&store, p).is_empty())
        .unwrap();
    let bound = (0..3)
        .map(|i| format!("p{i}"))
        .find(|p| !pod_node(&store, p).is_empty())
        .unwrap();
    store
        .delete(&PODS, "default", &bound, &Preconditions::default())
        .unwrap();
    wait(&store, "the freed slot is used", |s| {
        pod_node(s, &waiting) == "s1"
    })
    .await;

    // A node that is not Ready takes no pods; spreading prefers the emptiest.
    c.kubelets.start(worker("w2", "a"));
    c.kubelets.start(worker("w3", "a"));
    c.kubelets.restart_with_version("w3", "v1.33.4");
    store
        .create(&PODS, "default", pod("next", json!({})))
        .unwrap();
    wait(&store, "the new pod goes to the empty Ready node", |s| {
        pod_node(s, "next") == "w2"
    })
    .await;
    wait(&store, "w3 is Ready again", |s| {
        node(s, "w3").is_some_and(|n| condition_is(&n, "Ready", "True"))
    })
    .await;
    for i in 0..4 {
        store
            .create(&PODS, "default", pod(&format!("s{i}"), json!({})))
            .unwrap();
    }
    wait(&store, "all bound", |s| {
        (0..4).all(|i| !pod_node(s, &format!("s{i}")).is_empty())
    })
    .await;
    let on = |n: &str| {
        store
            .list(&PODS, Some("default"), |p| p["spec"]["nodeName"] == n)
            .0
            .len()
    };
    // s1 is full (2); w2 and w3 share the rest evenly.
    assert_eq!((on("s1"), on("w2"), on("w3")), (2, 3, 2));
}

#[tokio::test]
async fn deployment_keeps_three_ready_pods() {
    let (store, c) = world();
    c.kubelets.start(worker("w1", "a"));
    c.kubelets.start(worker("w2", "b"));
    store
        .create(&DEPLOYMENTS, "default", deployment("web", 3))
        .unwrap();
    wait(&store, "three ready pods", |s| ready_count(s, "web") == 3).await;
    wait(&store, "deployment status", |s| {
        s.get(&DEPLOYMENTS, "default", "web").is_some_and(|d| {
            d["status"]["availableReplicas"] == 3
                && d["status"]["readyReplicas"] == 3
                && d["status"]["updatedReplicas"] == 3
                && d["status"]["observedGeneration"] == 1
        })
    })
    .await;
    let sets = store.list(&REPLICASETS, Some("default"), |_| true).0;
    assert_eq!(sets.len(), 1);
    let rs = &sets[0];
    let hash = rs["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap();
    assert_eq!(rs["metadata"]["name"], format!("web-{hash}"));
    assert_eq!(rs["metadata"]["ownerReferences"][0]["kind"], "Deployment");
    assert_eq!(rs["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(rs["status"]["readyReplicas"], 3);
    for p in pods_of(&store, "web") {
        assert_eq!(p["metadata"]["labels"]["pod-template-hash"], hash);
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
        assert!(
            p["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with(&format!("web-{hash}-"))
        );
        assert!(p["status"]["podIP"].is_string());
    }

    // A deleted (terminating) pod is replaced at once.
    let victim = pods_of(&store, "web")[0].clone();
    let name = victim["metadata"]["name"].as_str().unwrap().to_string();
    store
        .mark_deleting(&PODS, "default", &name, 30, &Preconditions::default())
        .unwrap();
    wait(&store, "a replacement is ready and the old pod gone", |s| {
        ready_count(s, "web") == 3 && s.get(&PODS, "default", &name).is_none()
    })
    .await;

    // Scaling and a new template.
    store
        .modify(&DEPLOYMENTS, "default", "web", |d| {
            d["spec"]["replicas"] = json!(2);
            d["spec"]["template"]["spec"]["containers"][0]["image"] =
                json!("registry.example/app:2");
            Ok(())
        })
        .unwrap();
    wait(&store, "two new pods and nothing else", |s| {
        let pods = pods_of(s, "web");
        pods.len() == 2
            && pods.iter().all(|p| {
                p["spec"]["containers"][0]["image"] == "registry.example/app:2"
                    && condition_is(p, "Ready", "True")
            })
    })
    .await;
    wait(&store, "the old replicaset is scaled to zero", |s| {
        let sets = s.list(&REPLICASETS, Some("default"), |_| true).0;
        sets.len() == 2 && sets.iter().any(|rs| rs["spec"]["replicas"] == 0)
    })
    .await;

    // Deleting the deployment removes its replicasets and pods.
    store
        .delete(&DEPLOYMENTS, "default", "web", &Preconditions::default())
        .unwrap();
    wait(&store, "everything is collected", |s| {
        s.list(&REPLICASETS, Some("default"), |_| true).0.is_empty() && pods_of(s, "web").is_empty()
    })
    .await;
}

#[tokio::test]
async fn daemonset_runs_on_every_eligible_node() {
    let (store, c) = world();
    let mut cp = worker("cp1", "a");
    cp.control_plane = true;
    c.kubelets.start(cp);
    c.kubelets.start(worker("w1", "a"));
    c.kubelets.start(worker("w2", "b"));
    store
        .create(
            &DAEMONSETS,
            "kube-system",
            json!({
                "metadata": {"name": "agent", "namespace": "kube-system"},
                "spec": {
                    "selector": {"matchLabels": {"app": "agent"}},
                    "template": {"metadata": {"labels": {"app": "agent"}},
                                  "spec": {"containers": [{"name": "a", "image": "agent:1"}]}},
                },
            }),
        )
        .unwrap();
    let agents = |s: &Store| {
        s.list(&PODS, Some("kube-system"), |p| {
            p["metadata"]["labels"]["app"] == "agent"
        })
        .0
    };
    let on_nodes = |s: &Store| {
        let mut nodes: Vec<String> = agents(s)
            .iter()
            .filter(|p| condition_is(p, "Ready", "True"))
            .map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_string())
            .collect();
        nodes.sort();
        nodes
    };
    wait(
        &store,
        "an agent on each worker (not on the tainted control plane)",
        |s| on_nodes(s) == ["w1", "w2"],
    )
    .await;
    let p = agents(&store)[0].clone();
    let tolerations = p["spec"]["tolerations"].as_array().unwrap();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/unschedulable",
        "node.kubernetes.io/disk-pressure",
        "node.kubernetes.io/memory-pressure",
        "node.kubernetes.io/pid-pressure",
    ] {
        assert!(
            tolerations.iter().any(|t| t["key"] == key),
            "toleration {key}"
        );
    }
    let terms = &p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"];
    assert_eq!(terms[0]["matchFields"][0]["key"], "metadata.name");
    wait(&store, "daemonset status", |s| {
        s.get(&DAEMONSETS, "kube-system", "agent").is_some_and(|d| {
            d["status"]["desiredNumberScheduled"] == 2
                && d["status"]["numberReady"] == 2
                && d["status"]["currentNumberScheduled"] == 2
                && d["status"]["observedGeneration"] == 1
        })
    })
    .await;

    // A new node gets one; a deleted node's pod goes; cordoning keeps it.
    c.kubelets.start(worker("w3", "c"));
    wait(&store, "the new node gets an agent", |s| {
        on_nodes(s) == ["w1", "w2", "w3"]
    })
    .await;
    store
        .modify(&NODES, "", "w1", |n| {
            n["spec"]["unschedulable"] = json!(true);
            Ok(())
        })
        .unwrap();
    c.kubelets.stop("w2");
    store
        .delete(&NODES, "", "w2", &Preconditions::default())
        .unwrap();
    wait(&store, "the deleted node's agent is gone", |s| {
        agents(s).iter().all(|p| p["spec"]["nodeName"] != "w2") && on_nodes(s) == ["w1", "w3"]
    })
    .await;
    wait(&store, "status follows", |s| {
        s.get(&DAEMONSETS, "kube-system", "agent").is_some_and(|d| {
            d["status"]["desiredNumberScheduled"] == 2 && d["status"]["numberReady"] == 2
        })
    })
    .await;
}

fn pdb(name: &str, app: &str, budget: Value) -> Value {
    let mut spec = budget;
    spec["selector"] = json!({"matchLabels": {"app": app}});
    json!({"metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

fn pdb_status(store: &Store, name: &str) -> Value {
    store
        .get(&PDBS, "default", name)
        .map(|p| p["status"].clone())
        .unwrap_or(Value::Null)
}

fn status_is(
    store: &Store,
    name: &str,
    expected: i64,
    desired: i64,
    healthy: i64,
    allowed: i64,
) -> bool {
    let s = pdb_status(store, name);
    s["expectedPods"] == expected
        && s["desiredHealthy"] == desired
        && s["currentHealthy"] == healthy
        && s["disruptionsAllowed"] == allowed
}

#[tokio::test]
async fn pdb_status_follows_budgets_and_pods() {
    let (store, c) = world();
    c.kubelets.start(worker("w1", "a"));
    c.kubelets.start(worker("w2", "b"));
    store
        .create(&DEPLOYMENTS, "default", deployment("web", 4))
        .unwrap();
    wait(&store, "four ready pods", |s| ready_count(s, "web") == 4).await;
    store
        .create(
            &PDBS,
            "default",
            pdb("min-int", "web", json!({"minAvailable": 3})),
        )
        .unwrap();
    store
        .create(
            &PDBS,
            "default",
            pdb("min-pct", "web", json!({"minAvailable": "50%"})),
        )
        .unwrap();
    store
        .create(
            &PDBS,
            "default",
            pdb("max-int", "web", json!({"maxUnavailable": 1})),
        )
        .unwrap();
    store
        .create(
            &PDBS,
            "default",
            pdb("max-pct", "web", json!({"maxUnavailable": "30%"})),
        )
        .unwrap();
    store
        .create(&PDBS, "default", json!({"metadata": {"name": "none", "namespace": "default"}, "spec": {"minAvailable": 1}}))
        .unwrap();
    wait(&store, "every budget computed", |s| {
        status_is(s, "min-int", 4, 3, 4, 1)
            && status_is(s, "min-pct", 4, 2, 4, 2)
            && status_is(s, "max-int", 4, 3, 4, 1)
            && status_is(s, "max-pct", 4, 2, 4, 2)
            && status_is(s, "none", 0, 1, 0, 0)
    })
    .await;
    let s = pdb_status(&store, "min-int");
    assert_eq!(s["observedGeneration"], 1);
    assert_eq!(s["conditions"][0]["type"], "DisruptionAllowed");
    assert_eq!(s["conditions"][0]["status"], "True");
    assert_eq!(s["conditions"][0]["reason"], "SufficientPods");

    // A pod going away: one fewer healthy. Its replacement waits on the
    // cordoned nodes, and the terminating pod lingers.
    for n in ["w1", "w2"] {
        store
            .modify(&NODES, "", n, |n| {
                n["spec"]["unschedulable"] = json!(true);
                Ok(())
            })
            .unwrap();
    }
    let victim = pods_of(&store, "web")[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    store
        .modify(&PODS, "default", &victim, |p| {
            p["metadata"]["annotations"] = json!({IGNORE_TERMINATION: "never"});
            Ok(())
        })
        .unwrap();
    store
        .mark_deleting(&PODS, "default", &victim, 30, &Preconditions::default())
        .unwrap();
    wait(&store, "the terminating pod no longer counts", |s| {
        // minAvailable as a number expects the matching pods: 3 Ready, the
        // terminating one and the pending replacement.
        status_is(s, "min-int", 5, 3, 3, 0)
            && status_is(s, "max-int", 4, 3, 3, 0)
            && status_is(s, "min-pct", 4, 2, 3, 1)
    })
    .await;
    let s = pdb_status(&store, "min-int");
    assert_eq!(s["conditions"][0]["status"], "False");
    assert_eq!(s["conditions"][0]["reason"], "InsufficientPods");

    // The replacement becoming Ready restores the budget.
    for n in ["w1", "w2"] {
        store
            .modify(&NODES, "", n, |n| {
                n["spec"].as_object_mut().unwrap().remove("unschedulable");
                Ok(())
            })
            .unwrap();
    }
    wait(&store, "healthy again", |s| {
        status_is(s, "min-int", 5, 3, 4, 1) && status_is(s, "max-pct", 4, 2, 4, 2)
    })
    .await;
    store
        .delete(&PODS, "default", &victim, &Preconditions::default())
        .unwrap();
    wait(&store, "the gone pod is not expected", |s| {
        status_is(s, "min-int", 4, 3, 4, 1)
    })
    .await;

    // Scaling the deployment changes what percentage budgets expect.
    store
        .modify(&DEPLOYMENTS, "default", "web", |d| {
            d["spec"]["replicas"] = json!(6);
            Ok(())
        })
        .unwrap();
    wait(&store, "budgets follow the scale", |s| {
        status_is(s, "min-pct", 6, 3, 6, 3)
            && status_is(s, "max-int", 6, 5, 6, 1)
            && status_is(s, "min-int", 6, 3, 6, 3)
    })
    .await;

    // A spec change is observed.
    store
        .modify(&PDBS, "default", "min-int", |p| {
            p["spec"]["minAvailable"] = json!(5);
            Ok(())
        })
        .unwrap();
    wait(&store, "the new generation is observed", |s| {
        pdb_status(s, "min-int")["observedGeneration"] == 2 && status_is(s, "min-int", 6, 5, 6, 1)
    })
    .await;

    // An eviction's disruptedPods entry keeps its pod out of the count
    // until the pod terminates, and is then dropped.
    let pod = pods_of(&store, "web")[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    store
        .modify(&PDBS, "default", "min-int", |p| {
            p["status"]["disruptionsAllowed"] = json!(0);
            p["status"]["disruptedPods"] = json!({pod.clone(): now});
            Ok(())
        })
        .unwrap();
    wait(&store, "the disrupted pod is not counted", |s| {
        status_is(s, "min-int", 6, 5, 5, 0) && !pdb_status(s, "min-int")["disruptedPods"].is_null()
    })
    .await;
    store
        .mark_deleting(&PODS, "default", &pod, 30, &Preconditions::default())
        .unwrap();
    wait(
        &store,
        "the entry is dropped once the pod terminates",
        |s| pdb_status(s, "min-int")["disruptedPods"].is_null(),
    )
    .await;
}

#[tokio::test]
async fn pdb_over_pods_without_a_scalable_controller_fails_safe() {
    let (store, c) = world();
    c.kubelets.start(worker("w1", "a"));
    store
        .create(
            &DAEMONSETS,
            "default",
            json!({"metadata": {"name": "ds", "namespace": "default"},
                   "spec": {"selector": {"matchLabels": {"app": "ds"}},
                            "template": {"metadata": {"labels": {"app": "ds"}},
                                         "spec": {"containers": [{"name": "a", "image": "a:1"}]}}}}),
        )
        .unwrap();
    wait(&store, "the daemon pod runs", |s| ready_count(s, "ds") == 1).await;
    store
        .create(
            &PDBS,
            "default",
            pdb("ds", "ds", json!({"maxUnavailable": 1})),
        )
        .unwrap();
    wait(&store, "the sync failure is reported", |s| {
        pdb_status(s, "ds")["conditions"][0]["reason"] == "SyncFailed"
    })
    .await;
    assert_eq!(pdb_status(&store, "ds")["disruptionsAllowed"], 0);
}

#[tokio::test]
async fn graceful_deletion_honours_grace_and_ignore_termination() {
    let (store, c) = world();
    c.kubelets.start(worker("w1", "a"));
    let mut slow = pod("slow", json!({}));
    slow["metadata"]["annotations"] = json!({IGNORE_TERMINATION: "700ms"});
    store.create(&PODS, "default", slow).unwrap();
    store
        .create(&PODS, "default", pod("normal", json!({})))
        .unwrap();
    store
        .create(&PODS, "default", pod("stuck", json!({})))
        .unwrap();
    wait(&store, "pods run", |s| {
        ["slow", "normal", "stuck"]
            .iter()
            .all(|p| pod_running_ready(s, "default", p))
    })
    .await;
    store
        .modify(&PODS, "default", "stuck", |p| {
            p["metadata"]["annotations"] = json!({IGNORE_TERMINATION: "never"});
            Ok(())
        })
        .unwrap();
    let t0 = Instant::now();
    for p in ["slow", "normal", "stuck"] {
        store
            .mark_deleting(&PODS, "default", p, 30, &Preconditions::default())
            .unwrap();
    }
    wait(&store, "the normal pod finishes", |s| {
        s.get(&PODS, "default", "normal").is_none()
    })
    .await;
    let normal = t0.elapsed();
    assert!(
        normal >= Timing::fast().pod_termination,
        "finished early: {normal:?}"
    );
    assert!(
        store.get(&PODS, "default", "slow").is_some(),
        "the lingering pod went with the normal one"
    );
    wait(&store, "the lingering pod finishes", |s| {
        s.get(&PODS, "default", "slow").is_none()
    })
    .await;
    assert!(
        t0.elapsed() >= Duration::from_millis(800),
        "lingered only {:?}",
        t0.elapsed()
    );
    assert!(store.get(&PODS, "default", "stuck").is_some());

    // Grace 0 goes at once, before a pod that lingers.
    let mut paced = pod("paced", json!({}));
    paced["metadata"]["annotations"] = json!({IGNORE_TERMINATION: "1s"});
    store.create(&PODS, "default", paced).unwrap();
    store
        .create(&PODS, "default", pod("quick", json!({})))
        .unwrap();
    wait(&store, "both run", |s| {
        pod_running_ready(s, "default", "quick") && pod_running_ready(s, "default", "paced")
    })
    .await;
    for p in ["paced", "quick"] {
        store
            .mark_deleting(&PODS, "default", p, 0, &Preconditions::default())
            .unwrap();
    }
    wait(&store, "quick is gone", |s| {
        s.get(&PODS, "default", "quick").is_none()
    })
    .await;
    assert!(store.get(&PODS, "default", "paced").is_some());

    // A stopped kubelet finishes nothing, while a running one does.
    c.kubelets.start(worker("w2", "a"));
    let on = |n: &str| json!({"nodeSelector": {"kubernetes.io/hostname": n}});
    store
        .create(&PODS, "default", pod("orphan", on("w1")))
        .unwrap();
    store
        .create(&PODS, "default", pod("witness", on("w2")))
        .unwrap();
    wait(&store, "both run", |s| {
        pod_running_ready(s, "default", "orphan") && pod_running_ready(s, "default", "witness")
    })
    .await;
    c.kubelets.stop("w1");
    for p in ["orphan", "witness"] {
        store
            .mark_deleting(&PODS, "default", p, 0, &Preconditions::default())
            .unwrap();
    }
    wait(&store, "the running kubelet finishes its pod", |s| {
        s.get(&PODS, "default", "witness").is_none()
    })
    .await;
    assert!(
        store.get(&PODS, "default", "orphan").is_some(),
        "a stopped kubelet deleted a pod"
    );
}

#[tokio::test]
async fn pods_of_a_deleted_node_are_collected() {
    let (store, c) = world();
    c.kubelets.start(worker("w1", "a"));
    store.create(&PODS, "default", pod("p", json!({}))).unwrap();
    store
        .create(
            &PODS,
            "default",
            pod("pinned-elsewhere", json!({"nodeName": "no-such-node"})),
        )
        .unwrap();
    wait(&store, "p runs", |s| pod_running_ready(s, "default", "p")).await;
    wait(&store, "the pod of a missing node is collected", |s| {
        s.get(&PODS, "default", "pinned-elsewhere").is_none()
    })
    .await;
    c.kubelets.stop("w1");
    store
        .delete(&NODES, "", "w1", &Preconditions::default())
        .unwrap();
    wait(&store, "the node's pod is collected", |s| {
        s.get(&PODS, "default", "p").is_none()
    })
    .await;
}

#[tokio::test]
async fn static_pods_are_mirrored_and_restored() {
    let (store, c) = world();
    let mut cp = worker("cp1", "a");
    cp.control_plane = true;
    c.kubelets.start(cp);
    let manifest = |version: &str| {
        json!({
            "metadata": {"name": "kube-apiserver", "namespace": "kube-system",
                         "labels": {"component": "kube-apiserver", "tier": "control-plane"}},
            "spec": {"hostNetwork": true, "containers": [
                {"name": "kube-apiserver", "image": format!("registry.k8s.io/kube-apiserver:{version}")}]},
        })
    };
    c.kubelets.set_static_pod("cp1", manifest("v1.33.4"));
    let mirror = store
        .get(&PODS, "kube-system", "kube-apiserver-cp1")
        .expect("mirror pod");
    assert!(mirror["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string());
    assert_eq!(
        mirror["metadata"]["annotations"]["kubernetes.io/config.source"],
        "file"
    );
    assert_eq!(mirror["metadata"]["ownerReferences"][0]["kind"], "Node");
    assert_eq!(mirror["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(mirror["spec"]["nodeName"], "cp1");
    assert_eq!(mirror["metadata"]["labels"]["tier"], "control-plane");
    assert!(pod_running_ready(
        &store,
        "kube-system",
        "kube-apiserver-cp1"
    ));
    let node_ip = node(&store, "cp1").unwrap()["status"]["addresses"][0]["address"].clone();
    assert_eq!(mirror["status"]["podIP"], node_ip);

    c.kubelets.set_static_pod("cp1", manifest("v1.34.1"));
    let upgraded = store
        .get(&PODS, "kube-system", "kube-apiserver-cp1")
        .unwrap();
    assert_eq!(
        upgraded["spec"]["containers"][0]["image"],
        "registry.k8s.io/kube-apiserver:v1.34.1"
    );
    assert_ne!(upgraded["metadata"]["uid"], mirror["metadata"]["uid"]);

    store
        .delete(
            &PODS,
            "kube-system",
            "kube-apiserver-cp1",
            &Preconditions::default(),
        )
        .unwrap();
    wait(&store, "the kubelet recreates the mirror pod", |s| {
        pod_running_ready(s, "kube-system", "kube-apiserver-cp1")
    })
    .await;
}

fn token_secret(id: &str, secret: &str, extra: &[(&str, &str)]) -> Value {
    let mut data = serde_json::Map::new();
    for (k, v) in [
        ("token-id", id),
        ("token-secret", secret),
        ("usage-bootstrap-signing", "true"),
    ]
    .into_iter()
    .chain(extra.iter().copied())
    {
        data.insert(k.to_string(), json!(STANDARD.encode(v)));
    }
    json!({
        "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system"},
        "type": "bootstrap.kubernetes.io/token",
        "data": data,
    })
}

#[tokio::test]
async fn bootstrap_signer_and_token_cleaner() {
    let (store, _c) = world();
    let kubeconfig =
        "apiVersion: v1\nclusters:\n- cluster:\n    server: https://10.0.0.1:6443\n  name: \"\"\n";
    store
        .create(
            &CONFIGMAPS,
            "kube-public",
            json!({"metadata": {"name": "cluster-info", "namespace": "kube-public"},
                   "data": {"kubeconfig": kubeconfig, "jws-kubeconfig-stale0": "x"}}),
        )
        .unwrap();
    let soon = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(2))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    store
        .create(
            &SECRETS,
            "kube-system",
            token_secret("abcdef", "0123456789abcdef", &[]),
        )
        .unwrap();
    store
        .create(
            &SECRETS,
            "kube-system",
            token_secret("ghijkl", "fedcba9876543210", &[("expiration", &soon)]),
        )
        .unwrap();
    store
        .create(
            &SECRETS,
            "kube-system",
            token_secret(
                "mnopqr",
                "0000000000000000",
                &[("expiration", "not a time")],
            ),
        )
        .unwrap();
    let data = |s: &Store| {
        s.get(&CONFIGMAPS, "kube-public", "cluster-info")
            .map(|cm| cm["data"].clone())
            .unwrap_or(Value::Null)
    };
    wait(
        &store,
        "both valid tokens sign, the stale entry goes",
        |s| {
            let d = data(s);
            d.get("jws-kubeconfig-abcdef").is_some()
                && d.get("jws-kubeconfig-ghijkl").is_some()
                && d.get("jws-kubeconfig-stale0").is_none()
        },
    )
    .await;
    let d = data(&store);
    assert_eq!(
        d["jws-kubeconfig-abcdef"],
        json!(jws::sign(kubeconfig, "abcdef", "0123456789abcdef"))
    );
    assert!(jws::verify(
        d["jws-kubeconfig-ghijkl"].as_str().unwrap(),
        kubeconfig,
        "ghijkl",
        "fedcba9876543210"
    ));
    assert!(d.get("jws-kubeconfig-mnopqr").is_none());
    wait(&store, "the unparseable token is cleaned", |s| {
        s.get(&SECRETS, "kube-system", "bootstrap-token-mnopqr")
            .is_none()
    })
    .await;

    // At expiry the token is deleted and its signature removed.
    wait_until(
        &store,
        "the expiring token is cleaned",
        Duration::from_secs(6),
        |s| {
            s.get(&SECRETS, "kube-system", "bootstrap-token-ghijkl")
                .is_none()
                && data(s).get("jws-kubeconfig-ghijkl").is_none()
        },
    )
    .await;
    assert!(data(&store).get("jws-kubeconfig-abcdef").is_some());

    // A changed kubeconfig is re-signed; deleting a token drops its entry.
    let changed = kubeconfig.replace("10.0.0.1", "10.0.0.2");
    store
        .modify(&CONFIGMAPS, "kube-public", "cluster-info", |cm| {
            cm["data"]["kubeconfig"] = json!(changed);
            Ok(())
        })
        .unwrap();
    wait(&store, "re-signed", |s| {
        data(s)["jws-kubeconfig-abcdef"] == json!(jws::sign(&changed, "abcdef", "0123456789abcdef"))
    })
    .await;
    store
        .delete(
            &SECRETS,
            "kube-system",
            "bootstrap-token-abcdef",
            &Preconditions::default(),
        )
        .unwrap();
    wait(&store, "its entry goes", |s| {
        data(s).get("jws-kubeconfig-abcdef").is_none()
    })
    .await;
}

fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Bring up `nodes` kubelets and `deployments` × `replicas` pods; assert
/// everything is Running and Ready within `deadline`.
async fn converge(nodes: usize, deployments: usize, replicas: usize, deadline: Duration) {
    let (store, c) = world();
    let start = Instant::now();
    for i in 0..nodes {
        let mut spec = worker(&format!("node-{i:04}"), ["a", "b", "c"][i % 3]);
        spec.max_pods = 110;
        c.kubelets.start(spec);
    }
    for d in 0..deployments {
        store
            .create(
                &DEPLOYMENTS,
                "default",
                deployment(&format!("app-{d:03}"), replicas as i64),
            )
            .unwrap();
    }
    let all_available = |s: &Store| {
        let (ds, _) = s.list(&DEPLOYMENTS, Some("default"), |d| {
            d["status"]["availableReplicas"] == json!(replicas)
        });
        ds.len() == deployments
    };
    let mut next_report = Instant::now() + Duration::from_secs(5);
    while !all_available(&store) {
        assert!(
            start.elapsed() < deadline,
            "not converged after {deadline:?}"
        );
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(5);
            let (pods, _) = store.list(&PODS, None, |_| true);
            let bound = pods
                .iter()
                .filter(|p| p["spec"]["nodeName"].is_string())
                .count();
            let ready = pods
                .iter()
                .filter(|p| condition_is(p, "Ready", "True"))
                .count();
            let not_ready = store
                .list(&EVENTS, None, |e| e["reason"] == "NodeNotReady")
                .0
                .len();
            eprintln!(
                "scale: after {:.1?}: {} pods, {bound} bound, {ready} ready, {not_ready} NodeNotReady events",
                start.elapsed(),
                pods.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = start.elapsed();
    let (pods, _) = store.list(&PODS, None, |p| {
        p["status"]["phase"] == "Running" && condition_is(p, "Ready", "True")
    });
    assert_eq!(pods.len(), deployments * replicas);
    let (rss, peak) = rss_kib();
    let not_ready = store
        .list(&EVENTS, None, |e| e["reason"] == "NodeNotReady")
        .0
        .len();
    eprintln!(
        "scale: {nodes} nodes + {} pods Running and Ready in {elapsed:.2?}; RSS {} MiB (peak {} MiB), \
         store revision {}, NodeNotReady events {not_ready}",
        deployments * replicas,
        rss / 1024,
        peak / 1024,
        store.revision()
    );
    c.stop();
}

/// 300 nodes and 5000 pods (50 Deployments of 100) in the suite. The size
/// can be raised for a one-off measurement, e.g.
/// `SIM_SCALE_NODES=1000 SIM_SCALE_DEPLOYMENTS=200` for 1000 nodes and
/// 20000 pods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_nodes_and_pods_converge() {
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    converge(
        env("SIM_SCALE_NODES", 300),
        env("SIM_SCALE_DEPLOYMENTS", 50),
        100,
        Duration::from_secs(60),
    )
    .await;
}
