//! Jobs (batch/v1) in the world: `kubectl create job` typed as a user
//! types it, the Job controller running its pod to completion, and a pod
//! failure policy that ignores evictions (what the scheduled module's
//! CronJob relies on to survive its own node's drain).

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, EvictParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

use crate::kubectl::{kubectl_ok, world_env};

fn job_pod_names(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_creates_a_job_that_completes() {
    let (world, env) = world_env().await;
    let out = kubectl_ok(&env, &["create", "job", "backup", "--image=busybox:1.36"]).await;
    assert_eq!(out.trim(), "job.batch/backup created");
    let out = kubectl_ok(
        &env,
        &[
            "wait",
            "--for=condition=complete",
            "job/backup",
            "--timeout=60s",
        ],
    )
    .await;
    assert_eq!(out.trim(), "job.batch/backup condition met");

    let out = kubectl_ok(&env, &["get", "jobs"]).await;
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"],
        "{out}"
    );
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["backup", "Complete", "1/1"], "{out}");

    // One pod, `<job>-<5 random>`, labelled with the Job's name, owned by
    // it, and Succeeded.
    let pods: serde_json::Value = serde_json::from_str(
        &kubectl_ok(
            &env,
            &["get", "pods", "-l", "job-name=backup", "-o", "json"],
        )
        .await,
    )
    .unwrap();
    let items = pods["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{pods}");
    let pod = &items[0];
    let name = pod["metadata"]["name"].as_str().unwrap();
    let suffix = name.strip_prefix("backup-").expect("named after the job");
    assert_eq!(suffix.len(), 5, "{name}");
    assert_eq!(
        pod["metadata"]["labels"]["batch.kubernetes.io/job-name"],
        "backup"
    );
    assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "Job");
    assert_eq!(pod["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(pod["status"]["phase"], "Succeeded");
    assert_eq!(
        pod["status"]["containerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );

    let job: serde_json::Value =
        serde_json::from_str(&kubectl_ok(&env, &["get", "job", "backup", "-o", "json"]).await)
            .unwrap();
    assert_eq!(job["status"]["succeeded"], 1, "{job}");
    assert!(job["status"]["failed"].is_null(), "{job}");
    assert!(job["status"]["startTime"].is_string(), "{job}");
    assert!(job["status"]["completionTime"].is_string(), "{job}");
    // The generated selector names the Job's own uid.
    assert_eq!(
        job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
        job["metadata"]["uid"]
    );

    let out = kubectl_ok(&env, &["describe", "job", "backup"]).await;
    for needle in [
        "Name:             backup",
        "Completions:      1",
        "Pods Statuses:    0 Active (0 Ready) / 1 Succeeded / 0 Failed",
        "SuccessfulCreate",
        "Completed",
    ] {
        assert!(out.contains(needle), "{needle:?} missing:\n{out}");
    }
    world.stop();
}

/// The pods of Job `name`, not terminating and Running.
fn running(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        })
        .filter_map(|p| p.metadata.name.clone())
        .collect()
}

/// Create Job `name` (backoffLimit 0, its pod running until deleted, the
/// given `podFailurePolicy`) with kube-rs, evict its first running pod
/// through the eviction API, and return the APIs, the evicted pod's name
/// and the pod as the eviction left it.
async fn evict_the_pod_of_a_job(
    world: &kubesurge_testworld::world::World,
    name: &str,
    policy: serde_json::Value,
) -> (Api<Job>, Api<Pod>, String, Pod) {
    let kubeconfig = Kubeconfig::from_yaml(&world.kubeconfig_yaml()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let mut spec = json!({
        "backoffLimit": 0,
        "template": {
            "metadata": {"annotations": {kubesurge_testworld::controllers::RUN_FOR: "never"}},
            "spec": {"restartPolicy": "Never",
                     "containers": [{"name": "kubesurge", "image": "kubesurge:test"}]}
        }
    });
    if !policy.is_null() {
        spec["podFailurePolicy"] = policy;
    }
    let job: Job =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    let selector = ListParams::default().labels(&format!("job-name={name}"));
    let first = wait_for(|| async {
        let list = pods.list(&selector).await.unwrap().items;
        running(&list).into_iter().next()
    })
    .await;
    pods.evict(&first, &EvictParams::default()).await.unwrap();
    let evicted = pods.get(&first).await.unwrap();
    (jobs, pods, first, evicted)
}

/// A Job whose `podFailurePolicy` ignores `DisruptionTarget`: its pod,
/// evicted through the eviction API, gets the condition, and a
/// replacement is created without a failure counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_job_pod_is_replaced_without_counting_a_failure() {
    let (world, _env) = world_env().await;
    let policy = json!({"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    ]});
    let (jobs, pods, first, evicted) = evict_the_pod_of_a_job(&world, "rotate", policy).await;
    let condition = evicted
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "DisruptionTarget")
        .expect("the evicted pod has the DisruptionTarget condition");
    assert_eq!(condition.status, "True");
    assert_eq!(condition.reason.as_deref(), Some("EvictionByEvictionAPI"));

    let selector = ListParams::default().labels("job-name=rotate");
    let replacement = wait_for(|| async {
        let list = pods.list(&selector).await.unwrap().items;
        running(&list).into_iter().find(|n| *n != first)
    })
    .await;
    assert_ne!(replacement, first);
    // The evicted pod is gone by now and was counted as ignored.
    let job = wait_for(|| async {
        let job = jobs.get("rotate").await.unwrap();
        let names = job_pod_names(&pods.list(&selector).await.unwrap().items);
        (!names.contains(&first)).then_some(job)
    })
    .await;
    let status = job.status.unwrap_or_default();
    assert_eq!(status.failed.unwrap_or(0), 0, "{status:?}");
    assert_eq!(status.active, Some(1), "{status:?}");
    assert!(
        status.conditions.unwrap_or_default().is_empty(),
        "the Job neither failed nor completed"
    );
    world.stop();
}

/// Without the policy the same eviction is a failure: past a backoffLimit
/// of 0 the Job fails and no pod of it is left running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_policy_an_evicted_job_pod_fails_the_job() {
    let (world, _env) = world_env().await;
    let (jobs, pods, _, _) = evict_the_pod_of_a_job(&world, "once", json!(null)).await;
    let job = wait_for(|| async {
        let job = jobs.get("once").await.unwrap();
        let failed = job
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Failed" && c.status == "True"));
        failed.then_some(job)
    })
    .await;
    let status = job.status.unwrap_or_default();
    // The evicted pod, and the replacement started while it terminated
    // (`podReplacementPolicy: TerminatingOrFailed`, the default without a
    // policy), deleted when the Job failed and counted as failed with it
    // (`job_controller.go` trackJobStatusAndRemoveFinalizers).
    assert_eq!(status.failed, Some(2), "{status:?}");
    let reasons: Vec<_> = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| c.reason)
        .collect();
    assert!(
        reasons.iter().all(|r| r == "BackoffLimitExceeded"),
        "{reasons:?}"
    );
    let left = pods
        .list(&ListParams::default().labels("job-name=once"))
        .await
        .unwrap()
        .items;
    assert!(
        running(&left).is_empty(),
        "no replacement: {:?}",
        job_pod_names(&left)
    );
    world.stop();
}

/// Poll `f` until it gives a value (30 s at most).
async fn wait_for<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
