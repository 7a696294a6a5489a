//! The run lock under contention (design §5 step 2, invariant 5): many runs
//! of the same command at once, and a contender waiting through an API
//! server outage. Each process runs as its own ServiceAccount, so every
//! change the store records names the process that made it (the writer an
//! audit log would name).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kubesurge::kube::lock::LEASE_DURATION;
use kubesurge_testworld::resources::{CLUSTERROLEBINDINGS, LEASES, NODES, PDBS, PODS};
use kubesurge_testworld::store::EventType;
use serde_json::{Value, json};

use crate::rotation::{
    Harness, KillPoint, Spec, arm, block_everything, hold_with_clock_behind, kubesurge,
    lock_holder, run_record, start, text,
};

/// A kubeconfig for the ServiceAccount `kube-system/<name>`, bound to
/// `cluster-admin`, and the user name the API server knows it by.
fn identity(h: &Harness, name: &str) -> (PathBuf, String) {
    h.world
        .store
        .create(
            &CLUSTERROLEBINDINGS,
            "",
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                   "metadata": {"name": format!("{name}-admin")},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                   "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": "kube-system"}]}),
        )
        .expect("binding");
    let path = h
        .world
        .write_service_account_kubeconfig(h._dir.path(), "kube-system", name)
        .expect("a kubeconfig");
    (path, format!("system:serviceaccount:kube-system:{name}"))
}

/// One change made through the API: who, when, what.
#[derive(Clone, Debug)]
struct Write {
    rv: u64,
    at: Instant,
    writer: String,
    event_type: EventType,
    resource: &'static str,
    key: String,
    object: Value,
    previous: Option<Value>,
}

impl Write {
    fn describe(&self) -> String {
        format!(
            "{} {:?} {} {}",
            self.writer, self.event_type, self.resource, self.key
        )
    }

    /// A node going from schedulable to cordoned.
    fn is_cordon(&self) -> bool {
        let unschedulable = |v: Option<&Value>| {
            v.and_then(|v| v.pointer("/spec/unschedulable"))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        self.resource == NODES.plural
            && unschedulable(Some(&self.object))
            && !unschedulable(self.previous.as_ref())
    }

    /// A pod evicted or deleted: it got its deletionTimestamp, or went.
    fn is_pod_removal(&self) -> bool {
        let deleting = |v: Option<&Value>| {
            v.and_then(|v| v.pointer("/metadata/deletionTimestamp"))
                .is_some()
        };
        self.resource == PODS.plural
            && (self.event_type == EventType::Deleted
                || (deleting(Some(&self.object)) && !deleting(self.previous.as_ref())))
    }
}

/// Every change an API request makes from now on, with its writer.
fn record_writes(h: &Harness) -> Arc<Mutex<Vec<Write>>> {
    let writes = Arc::new(Mutex::new(Vec::new()));
    let seen = writes.clone();
    h.world.store.observe(move |e| {
        let Some(writer) = &e.writer else { return };
        seen.lock().unwrap().push(Write {
            rv: e.rv,
            at: Instant::now(),
            writer: writer.to_string(),
            event_type: e.event_type,
            resource: e.resource.plural,
            key: format!("{}/{}", e.namespace, e.name),
            object: (*e.object).clone(),
            previous: e.previous.as_deref().cloned(),
        });
    });
    writes
}

/// The PDB `shop/api` as it is now, to give it back after
/// [`block_everything`].
fn pdb_spec(h: &Harness) -> Value {
    h.world
        .store
        .get(&PDBS, "shop", "api")
        .expect("PDB api exists")["spec"]
        .clone()
}

fn restore_pdb(h: &Harness, spec: &Value) {
    h.world
        .store
        .modify(&PDBS, "shop", "api", |pdb| {
            pdb["spec"] = spec.clone();
            Ok(())
        })
        .expect("PDB api exists");
}

/// Every instance the cloud knows, terminated ones included.
fn instance_ids(h: &Harness) -> BTreeSet<String> {
    h.world
        .cloud
        .instances()
        .into_iter()
        .map(|i| i.id.0)
        .collect()
}

const RUNS: usize = 10;

/// Ten `rotate --all --yes` of the same world started together. The PDB
/// blocks the first drain until every loser has exited, so the losers
/// meet a lock that is held, not one already released. A broken lock (a
/// check-then-write race on the lease, or a live lease taken for expired)
/// lets more than one run past it: each takes the lease from the last
/// (the runs then stop fenced, not with exit 3, and name different
/// holders — what this test reports when the engine's holder check is
/// removed), or two runs both go on, launch, cordon and evict, and block
/// in the drain together (fewer than nine runs exit), and the writes below
/// name more than one run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_concurrent_runs_one_proceeds_the_others_exit_3_and_nothing_is_done_twice() {
    let h = start(Spec {
        pools: vec![("general", 2)],
        max_surge: 1,
        drain: "{ timeout: 5m, onTimeout: fail, unmanagedPods: delete }",
        ..Spec::default()
    })
    .await;
    let identities: Vec<(PathBuf, String)> = (0..RUNS)
        .map(|i| identity(&h, &format!("run-{i}")))
        .collect();
    let open = pdb_spec(&h);
    block_everything(&h);
    let writes = record_writes(&h);
    let instances_before = instance_ids(&h);

    let mut runs = tokio::task::JoinSet::new();
    for (i, (kubeconfig, _)) in identities.iter().enumerate() {
        let child = kubesurge(kubeconfig, &h.config, &["rotate", "--all", "--yes"])
            .spawn()
            .expect("starts");
        let pid = child.id().expect("a pid");
        runs.spawn(async move { (i, pid, child.wait_with_output().await.expect("runs")) });
    }
    let mut losers: Vec<(usize, Output)> = Vec::new();
    while losers.len() < RUNS - 1 {
        let (i, _, output) = tokio::time::timeout(Duration::from_secs(120), runs.join_next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {} runs exited: more than one went past the lock",
                    losers.len()
                )
            })
            .expect("a run")
            .expect("the run's task");
        losers.push((i, output));
    }

    // Every loser has exited, and the winner still holds the lock: it
    // cannot finish before the PDB opens below (its drain waits up to 5
    // minutes), so each loser met the lock held, not released.
    let holder = lock_holder(&h).expect("the lock is held");
    let winner: usize = (0..RUNS)
        .find(|i| !losers.iter().any(|(l, _)| l == i))
        .expect("one run left");
    for (i, output) in &losers {
        let all = text(output);
        assert_eq!(output.status.code(), Some(3), "run {i}: {all}");
        assert!(
            all.contains("another run holds the lock") && all.contains(&holder),
            "run {i} names the holder {holder}: {all}"
        );
    }
    restore_pdb(&h, &open);
    let (last, pid, output) = tokio::time::timeout(Duration::from_secs(180), runs.join_next())
        .await
        .expect("the winner finishes")
        .expect("a run")
        .expect("the run's task");
    assert_eq!(last, winner);
    assert!(
        holder.split('/').nth(1) == Some(pid.to_string().as_str()),
        "the holder {holder} is the run that went on (pid {pid})"
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));

    let writes = writes.lock().unwrap().clone();
    let winner_user = &identities[winner].1;
    let others: Vec<String> = writes
        .iter()
        .filter(|w| {
            w.writer
                .starts_with("system:serviceaccount:kube-system:run-")
        })
        .filter(|w| &w.writer != winner_user)
        .map(Write::describe)
        .collect();
    assert_eq!(others, Vec::<String>::new(), "the losers changed nothing");
    let ours: Vec<&Write> = writes.iter().filter(|w| &w.writer == winner_user).collect();
    // Exactly one launch per old node, one run record, each old node
    // cordoned once, no pod evicted twice.
    assert_eq!(
        instance_ids(&h).difference(&instances_before).count(),
        h.original_workers.len(),
        "one replacement per old node"
    );
    let records: Vec<&&Write> = ours
        .iter()
        .filter(|w| w.resource == "configmaps" && w.key == "kube-system/kubesurge-run")
        .collect();
    assert_eq!(
        records
            .iter()
            .filter(|w| w.event_type == EventType::Added)
            .count(),
        1,
        "one run record"
    );
    let mut cordons: BTreeMap<&str, usize> = BTreeMap::new();
    let mut removals: BTreeMap<&str, usize> = BTreeMap::new();
    for w in &ours {
        if w.is_cordon() {
            *cordons.entry(&w.key).or_default() += 1;
        }
        if w.is_pod_removal() {
            *removals.entry(&w.key).or_default() += 1;
        }
    }
    let expected: BTreeMap<&str, usize> =
        h.original_workers.keys().map(|n| (n.as_str(), 1)).collect();
    let cordoned: BTreeMap<&str, usize> = cordons
        .iter()
        .map(|(k, v)| (k.trim_start_matches('/'), *v))
        .collect();
    assert_eq!(cordoned, expected, "each old node cordoned once");
    assert!(!removals.is_empty(), "the drains evicted pods");
    let twice: Vec<_> = removals.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "pods evicted twice: {twice:?}");
    h.assert_converged();
}

/// How long the API server refuses everything (issue 14): twice the lease
/// duration, so that when it is back the holder's last renewal looks
/// expired by any clock, and a contender that judged expiry by the
/// timestamps would take the lease at once.
const OUTAGE: Duration = Duration::from_secs(60);

/// A run holds the lock, cordoned and blocked in its drain, when the API
/// server goes away for [`OUTAGE`]; a second run of the same command starts
/// during it. The holder, unable to renew, fences itself; the contender
/// waits out the outage, then must watch the lease unchanged for the
/// lease's duration before it takes it over, and finishes the rotation.
/// The PDB opens when the server is back, so a holder that had not fenced
/// itself would evict right then: no change it makes after the takeover
/// (nor after the server is back) may reach the store.
///
/// The engine before this test counted the contender's tenure from before
/// its minute of waiting and watching: the contender took the lease and
/// fenced itself at once ("last renewed 30s ago"), exiting with an error
/// while holding a lease nobody renewed — after an outage no run could
/// finish until a rerun.
///
/// Takes about 60 s of outage + 30 s of watching + the rotation; the lease
/// duration is a constant of the engine (30 s), not a setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contender_waits_out_an_apiserver_outage_and_the_fenced_holder_writes_nothing_after() {
    let h = start(Spec {
        pools: vec![("general", 1)],
        max_surge: 1,
        drain: "{ timeout: 5m, onTimeout: fail, unmanagedPods: delete }",
        ..Spec::default()
    })
    .await;
    let (first_config, first_user) = identity(&h, "first");
    let (second_config, second_user) = identity(&h, "second");
    let open = pdb_spec(&h);
    block_everything(&h);
    let writes = record_writes(&h);
    let instances_before = instance_ids(&h);
    // When the lease changed hands, and to whom.
    let handovers = Arc::new(Mutex::new(Vec::<(u64, Instant, String)>::new()));
    let seen = handovers.clone();
    h.world.store.observe(move |e| {
        if !std::ptr::eq(e.resource, &LEASES) || e.name != "kubesurge" {
            return;
        }
        let holder = |v: Option<&Value>| {
            v.and_then(|v| v.pointer("/spec/holderIdentity"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let now = holder(Some(&e.object));
        if now != holder(e.previous.as_deref()) {
            seen.lock().unwrap().push((e.rv, Instant::now(), now));
        }
    });

    let cordoned = arm(&h, KillPoint::Cordoned(1));
    let first = kubesurge(&first_config, &h.config, &["rotate", "--all", "--yes"])
        .spawn()
        .expect("first run");
    tokio::time::timeout(Duration::from_secs(60), cordoned.notified())
        .await
        .expect("the first run cordons its node");
    let first_holder = lock_holder(&h).expect("the first run holds the lock");

    let outage_began = Instant::now();
    h.world.apiserver.faults().unavailable_for(OUTAGE);
    let server_back = outage_began + OUTAGE;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let second = kubesurge(&second_config, &h.config, &["rotate", "--all", "--yes"])
        .spawn()
        .expect("second run");
    tokio::time::sleep_until(server_back.into()).await;
    restore_pdb(&h, &open);

    let second = tokio::time::timeout(Duration::from_secs(180), second.wait_with_output())
        .await
        .expect("the second run finishes")
        .expect("runs");
    let first = tokio::time::timeout(Duration::from_secs(60), first.wait_with_output())
        .await
        .expect("the first run stops")
        .expect("runs");
    let first_text = text(&first);
    assert_ne!(first.status.code(), Some(0), "{first_text}");
    assert!(
        first_text.contains("no longer holds the run lock"),
        "the first run says why it stopped: {first_text}"
    );
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));

    let handovers = handovers.lock().unwrap().clone();
    let taken: Vec<&(u64, Instant, String)> = handovers
        .iter()
        .filter(|(_, _, to)| !to.is_empty() && *to != first_holder)
        .collect();
    assert_eq!(taken.len(), 1, "one takeover: {handovers:?}");
    let (taken_rv, taken_at, _) = taken[0];
    assert!(
        *taken_at >= server_back + LEASE_DURATION,
        "the lease was taken {:?} after the server came back, before the contender could have seen it unchanged for {LEASE_DURATION:?}",
        taken_at.saturating_duration_since(server_back)
    );

    let writes = writes.lock().unwrap().clone();
    let late: Vec<String> = writes
        .iter()
        .filter(|w| w.writer == first_user && (w.rv >= *taken_rv || w.at >= server_back))
        .map(Write::describe)
        .collect();
    assert_eq!(
        late,
        Vec::<String>::new(),
        "the first run wrote after it lost the lease"
    );
    let early: Vec<String> = writes
        .iter()
        .filter(|w| w.writer == second_user && w.rv < *taken_rv)
        .map(Write::describe)
        .collect();
    assert_eq!(
        early,
        Vec::<String>::new(),
        "the second run wrote before it held the lease"
    );
    assert_eq!(
        instance_ids(&h).difference(&instances_before).count(),
        h.original_workers.len(),
        "the second run adopted the first one's replacement instead of launching another"
    );
    h.assert_converged();
}

/// `kubesurge abort` on a machine whose clock is 60 s ahead of the holder's
/// reads a lease renewed "a minute ago". It must ask the holder to stop,
/// not take it for dead: the lease is watched for its duration first, and
/// it is renewed meanwhile. The engine before this test judged the lease
/// expired by comparing the two clocks and abandoned the run under the
/// live holder's feet (record `abandoned`, so the next command starts a
/// second run beside it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_from_a_clock_ahead_asks_the_live_holder_instead_of_abandoning_its_run() {
    let h = start(Spec {
        max_surge: 1,
        drain: "{ timeout: 60s, onTimeout: fail, unmanagedPods: delete }",
        ..Spec::default()
    })
    .await;
    let (mut holder, _) = hold_with_clock_behind(&h).await;
    let abort = h.run(&["abort"]).await;
    let said = text(&abort);
    assert_eq!(abort.status.code(), Some(0), "{said}");
    assert!(said.contains("asked the run held by"), "{said}");
    assert!(!said.contains("abandoned"), "{said}");
    let run = run_record(&h);
    assert_eq!(run["state"], "running", "{run}");
    let lease = h
        .world
        .store
        .get(&LEASES, "kube-system", "kubesurge")
        .expect("lease");
    assert!(
        lease
            .pointer("/metadata/annotations/kubesurge.io~1abort-requested")
            .is_some(),
        "{lease}"
    );
    holder.start_kill().expect("stop the holder");
    let _ = holder.wait().await;
}
