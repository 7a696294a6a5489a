//! The Job controller, reduced to what a non-indexed Job does
//! (`pkg/controller/job/job_controller.go` syncJob): it keeps
//! `min(parallelism, completions - succeeded)` pods running from the
//! template, counts each finished pod once (`succeeded`, or `failed`
//! unless a `podFailurePolicy` rule says `Ignore`), and ends the Job with
//! `Complete` once `completions` pods succeeded or `Failed` past
//! `backoffLimit` failures or on a `FailJob` rule. Deleting a Job deletes
//! its pods (the garbage collector's background cascade).
//!
//! The real controller keeps a finalizer on every pod so that none is
//! lost before it is counted; here the controller remembers the last state
//! of a pod that vanished and counts it from that.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use jiff::Timestamp;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::events::{EventRecorder, Source, pod_ref};
use super::informer::{At, Change, Key, Reconciler, Slice, WorkQueue, str_at, work_off};
use super::objects::{
    condition_status, controller_owner, controller_uid, default_pod_spec, delete_pod, int_at,
    is_ready, is_terminal, is_terminating, key_of, uid_of,
};
use crate::resources::{JOBS, PODS};
use crate::store::{Store, StoreError, rfc3339};

const SOURCE: Source<'static> = Source {
    component: "job-controller",
    host: "",
};

/// How a finished pod counts for its Job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Succeeded,
    Failed,
    /// A failure a `podFailurePolicy` rule with action `Ignore` matches:
    /// not counted toward `backoffLimit`, the pod is replaced.
    Ignored,
    /// A failure a `FailJob` rule matches (the rule's index).
    FailJob(usize),
}

/// Whether a pod condition matches one of a rule's `onPodConditions`
/// (`status` defaults to `True`;
/// https://kubernetes.io/docs/concepts/workloads/controllers/job/#pod-failure-policy).
fn matches_conditions(rule: &Value, pod: &Value) -> bool {
    rule.get("onPodConditions")
        .and_then(Value::as_array)
        .is_some_and(|patterns| {
            patterns.iter().any(|p| {
                let want = p.get("status").and_then(Value::as_str).unwrap_or("True");
                condition_status(pod, str_at(p, "/type")) == Some(want)
            })
        })
}

/// How a pod that finished (terminal, or gone: the kubelet fails a pod it
/// kills) counts. The first `podFailurePolicy` rule that matches decides
/// a failure (`pkg/controller/job/pod_failure_policy.go`
/// matchPodFailurePolicy); rules on exit codes never match here, the
/// world's containers have none but 0.
pub(crate) fn outcome(job: &Value, pod: &Value) -> Outcome {
    if str_at(pod, "/status/phase") == "Succeeded" {
        return Outcome::Succeeded;
    }
    let rules = job
        .at("/spec/podFailurePolicy/rules")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (index, rule) in rules.iter().enumerate() {
        if !matches_conditions(rule, pod) {
            continue;
        }
        return match str_at(rule, "/action") {
            "Ignore" => Outcome::Ignored,
            "FailJob" => Outcome::FailJob(index),
            _ => Outcome::Failed,
        };
    }
    Outcome::Failed
}

/// Pods still working for the Job.
fn is_active(pod: &Value) -> bool {
    !is_terminating(pod) && !is_terminal(pod)
}

/// Whether the Job reached a terminal condition.
fn is_finished(job: &Value) -> bool {
    ["Complete", "Failed"]
        .iter()
        .any(|c| condition_status(job, c) == Some("True"))
}

/// A Job condition as the controller writes it
/// (`job_controller.go` newCondition).
fn condition(kind: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({
        "type": kind, "status": "True", "lastProbeTime": now,
        "lastTransitionTime": now, "reason": reason, "message": message,
    })
}

/// The pod a Job's template describes, with the labels that tie it to
/// the Job (`job_controller.go` and `pkg/registry/batch/job/strategy.go`:
/// `batch.kubernetes.io/job-name`, `job-name`,
/// `batch.kubernetes.io/controller-uid`, `controller-uid`).
pub fn pod_from_template(job: &Value) -> Value {
    let template = job
        .at("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let name = str_at(job, "/metadata/name");
    let uid = uid_of(job);
    let mut labels = template
        .at("/metadata/labels")
        .cloned()
        .unwrap_or_else(|| json!({}));
    for (k, v) in [
        ("batch.kubernetes.io/job-name", name),
        ("job-name", name),
        ("batch.kubernetes.io/controller-uid", uid),
        ("controller-uid", uid),
    ] {
        labels[k] = json!(v);
    }
    let mut metadata = json!({
        "generateName": format!("{name}-"),
        "namespace": str_at(job, "/metadata/namespace"),
        "labels": labels,
        "ownerReferences": [controller_owner("batch/v1", "Job", job)],
    });
    if let Some(a) = template.at("/metadata/annotations") {
        metadata["annotations"] = a.clone();
    }
    let mut spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
    default_pod_spec(&mut spec);
    json!({"metadata": metadata, "spec": spec, "status": {"phase": "Pending", "qosClass": "BestEffort"}})
}

pub(crate) struct Jobs {
    store: Arc<Store>,
    events: Arc<EventRecorder>,
    jobs: HashMap<Key, Arc<Value>>,
    by_uid: HashMap<String, Key>,
    /// Pods controlled by a Job.
    pods: HashMap<Key, Arc<Value>>,
    owned: HashMap<String, HashSet<Key>>,
    /// Per Job uid, the pods (by uid) already counted in its status.
    counted: HashMap<String, HashSet<String>>,
    /// Per Job uid, pods that vanished, as last seen.
    gone: HashMap<String, Vec<Arc<Value>>>,
    dirty: WorkQueue<Key>,
    /// Pods whose Job was deleted.
    orphans: Vec<Arc<Value>>,
}

impl Jobs {
    pub fn new(store: Arc<Store>, events: Arc<EventRecorder>) -> Self {
        Jobs {
            store,
            events,
            jobs: HashMap::new(),
            by_uid: HashMap::new(),
            pods: HashMap::new(),
            owned: HashMap::new(),
            counted: HashMap::new(),
            gone: HashMap::new(),
            dirty: WorkQueue::new(),
            orphans: Vec::new(),
        }
    }

    fn dirty_owner(&mut self, uid: &str) {
        if let Some(key) = self.by_uid.get(uid) {
            self.dirty.push(key.clone());
        }
    }

    fn apply_pod(&mut self, change: &Change) {
        let key = change.key();
        let old = self.pods.remove(&key);
        if let Some(old) = &old
            && let Some(uid) = controller_uid(old, "Job").map(str::to_string)
        {
            if let Some(set) = self.owned.get_mut(&uid) {
                set.remove(&key);
            }
            if change.current().is_none() {
                self.gone.entry(uid.clone()).or_default().push(old.clone());
            }
            self.dirty_owner(&uid);
        }
        if let Some(pod) = change.current()
            && let Some(uid) = controller_uid(pod, "Job").map(str::to_string)
        {
            self.pods.insert(key.clone(), pod.clone());
            self.owned.entry(uid.clone()).or_default().insert(key);
            self.dirty_owner(&uid);
        }
    }

    fn apply_job(&mut self, change: &Change) {
        let key = change.key();
        match change.current() {
            Some(job) => {
                self.by_uid.insert(uid_of(job).to_string(), key.clone());
                self.jobs.insert(key.clone(), job.clone());
                self.dirty.push(key);
            }
            None => {
                self.jobs.remove(&key);
                let uid = uid_of(&change.object).to_string();
                self.by_uid.remove(&uid);
                self.counted.remove(&uid);
                self.gone.remove(&uid);
                for pod_key in self.owned.get(&uid).into_iter().flatten() {
                    if let Some(pod) = self.pods.get(pod_key) {
                        self.orphans.push(pod.clone());
                    }
                }
            }
        }
    }

    fn sync(&mut self, key: &Key) {
        let Some(job) = self.jobs.get(key).cloned() else {
            return;
        };
        let uid = uid_of(&job).to_string();
        if is_terminating(&job) || is_finished(&job) {
            self.gone.remove(&uid);
            return;
        }
        let owned: Vec<Arc<Value>> = self
            .owned
            .get(&uid)
            .into_iter()
            .flatten()
            .filter_map(|k| self.pods.get(k).cloned())
            .collect();
        // Count every pod that finished since the last sync, once.
        let finished: Vec<Arc<Value>> = owned
            .iter()
            .filter(|p| is_terminal(p))
            .cloned()
            .chain(self.gone.remove(&uid).unwrap_or_default())
            .collect();
        let counted = self.counted.entry(uid.clone()).or_default();
        let mut succeeded = int_at(&job, "/status/succeeded", 0);
        let mut failed = int_at(&job, "/status/failed", 0);
        let mut fail_job = None;
        for pod in finished {
            if !counted.insert(uid_of(&pod).to_string()) {
                continue;
            }
            match outcome(&job, &pod) {
                Outcome::Succeeded => succeeded += 1,
                Outcome::Failed => failed += 1,
                Outcome::Ignored => {}
                Outcome::FailJob(index) => {
                    failed += 1;
                    fail_job = Some((index, pod));
                }
            }
        }
        let active: Vec<&Arc<Value>> = owned.iter().filter(|p| is_active(p)).collect();
        let terminating = owned.iter().filter(|p| is_terminating(p)).count();
        let completions = int_at(&job, "/spec/completions", 1);
        let parallelism = int_at(&job, "/spec/parallelism", 1);
        let now = rfc3339(Timestamp::now());
        let mut conditions: Vec<Value> = job
            .at("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let failure = match &fail_job {
            Some((index, pod)) => Some((
                "PodFailurePolicy",
                format!(
                    "Pod {}/{} has condition matching FailJob rule at index {index}",
                    str_at(pod, "/metadata/namespace"),
                    str_at(pod, "/metadata/name")
                ),
            )),
            None if failed > int_at(&job, "/spec/backoffLimit", 6) => Some((
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit".to_string(),
            )),
            None => None,
        };
        let done = succeeded >= completions;
        let mut completion_time = None;
        if failure.is_some() || done {
            // Pods deleted because the Job ended are counted (as failed
            // unless they succeeded) once gone, before the terminal
            // condition is written (`job_controller.go`
            // trackJobStatusAndRemoveFinalizers).
            for pod in &active {
                if let Err(e) = delete_pod(&self.store, pod) {
                    tracing::warn!(error = %e, "job controller could not delete a pod");
                }
            }
            // Since v1.31 the interim condition comes first and the terminal
            // one only once no pod is left running
            // (https://kubernetes.io/docs/concepts/workloads/controllers/job/#terminal-job-conditions).
            if active.is_empty() && terminating == 0 {
                match &failure {
                    Some((reason, message)) => {
                        conditions.push(condition("FailureTarget", reason, message, &now));
                        conditions.push(condition("Failed", reason, message, &now));
                    }
                    None => {
                        let message = "Reached expected number of succeeded pods";
                        conditions.push(condition(
                            "SuccessCriteriaMet",
                            "CompletionsReached",
                            message,
                            &now,
                        ));
                        conditions.push(condition("Complete", "CompletionsReached", message, &now));
                        completion_time = Some(now.clone());
                        self.events.record(
                            SOURCE,
                            job_ref(&job),
                            "Normal",
                            "Completed",
                            "Job completed",
                        );
                    }
                }
            }
        } else if job.at("/spec/suspend").and_then(Value::as_bool) != Some(true) {
            let want = parallelism.min(completions - succeeded).max(0);
            // `podReplacementPolicy: Failed` waits for a terminating pod to
            // be gone before replacing it.
            let blocking = if str_at(&job, "/spec/podReplacementPolicy") == "Failed" {
                terminating
            } else {
                0
            };
            let have = i64::try_from(active.len() + blocking).unwrap_or(i64::MAX);
            let pod = pod_from_template(&job);
            for _ in have..want {
                self.create_pod(&job, &pod);
            }
        }
        let still_active = if failure.is_some() || done {
            0
        } else {
            active.len()
        };
        let ready = active.iter().filter(|p| is_ready(p)).count();
        let mut status = json!({
            "startTime": job.at("/status/startTime").cloned().unwrap_or_else(|| json!(now)),
            "ready": ready,
            "terminating": terminating,
            "uncountedTerminatedPods": {},
        });
        for (field, n) in [
            ("active", i64::try_from(still_active).unwrap_or(0)),
            ("succeeded", succeeded),
            ("failed", failed),
        ] {
            if n > 0 {
                status[field] = json!(n);
            }
        }
        if !conditions.is_empty() {
            status["conditions"] = json!(conditions);
        }
        if let Some(t) = completion_time.or_else(|| {
            job.at("/status/completionTime")
                .and_then(Value::as_str)
                .map(String::from)
        }) {
            status["completionTime"] = json!(t);
        }
        if job.get("status") == Some(&status) {
            return;
        }
        let result = self.store.modify(&JOBS, &key.0, &key.1, |o| {
            if uid_of(o) == uid {
                o["status"] = status.clone();
            }
            Ok(())
        });
        if let Err(e) = result
            && !matches!(e, StoreError::NotFound { .. })
        {
            tracing::warn!(error = %e, "job controller could not write status");
        }
    }

    fn create_pod(&self, job: &Value, pod: &Value) {
        let namespace = str_at(job, "/metadata/namespace");
        // A generated name can collide; try again with another suffix.
        for _ in 0..3 {
            match self.store.create(&PODS, namespace, pod.clone()) {
                Err(StoreError::AlreadyExists { .. }) => continue,
                Err(e) => tracing::warn!(error = %e, "job controller could not create a pod"),
                Ok(created) => self.events.record(
                    SOURCE,
                    job_ref(job),
                    "Normal",
                    "SuccessfulCreate",
                    &format!("Created pod: {}", str_at(&created, "/metadata/name")),
                ),
            }
            return;
        }
    }
}

/// The `involvedObject` of a Job.
fn job_ref(job: &Value) -> Value {
    let mut r = pod_ref(job);
    r["kind"] = json!("Job");
    r["apiVersion"] = json!("batch/v1");
    r
}

impl Reconciler for Jobs {
    fn apply(&mut self, change: Change) {
        if change.is(&PODS) {
            self.apply_pod(&change);
        } else if change.is(&JOBS) {
            self.apply_job(&change);
        }
    }

    fn reconcile(&mut self, slice: &Slice) -> Option<Instant> {
        for pod in std::mem::take(&mut self.orphans) {
            if let Err(e) = delete_pod(&self.store, &pod) {
                tracing::warn!(error = %e, "could not delete pod {:?} of a deleted job", key_of(&pod));
            }
        }
        work_off(self, |c| &mut c.dirty, slice, |c, key| c.sync(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(rules: Value) -> Value {
        json!({"spec": {"podFailurePolicy": {"rules": rules}}})
    }

    fn pod(phase: &str, conditions: Value) -> Value {
        json!({"status": {"phase": phase, "conditions": conditions}})
    }

    #[test]
    fn an_evicted_pod_is_ignored_by_a_disruption_rule() {
        let j = job(json!([
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
        ]));
        let evicted = pod(
            "Running",
            json!([{"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}]),
        );
        assert_eq!(outcome(&j, &evicted), Outcome::Ignored);
        assert_eq!(outcome(&j, &pod("Failed", json!([]))), Outcome::Failed);
        assert_eq!(
            outcome(&j, &pod("Succeeded", json!([]))),
            Outcome::Succeeded
        );
        // Without a policy every failure counts.
        assert_eq!(outcome(&json!({}), &evicted), Outcome::Failed);
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let j = job(json!([
            {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "False"}]},
            {"action": "Count", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]));
        let p = pod(
            "Failed",
            json!([{"type": "DisruptionTarget", "status": "True"}]),
        );
        assert_eq!(outcome(&j, &p), Outcome::Failed);
        let q = pod(
            "Failed",
            json!([{"type": "DisruptionTarget", "status": "False"}]),
        );
        assert_eq!(outcome(&j, &q), Outcome::FailJob(0));
    }

    #[test]
    fn template_pods_carry_the_job_labels_and_owner() {
        let j = json!({"metadata": {"name": "backup", "namespace": "ops", "uid": "u1"},
            "spec": {"template": {"metadata": {"labels": {"app": "b"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}});
        let p = pod_from_template(&j);
        assert_eq!(p["metadata"]["generateName"], "backup-");
        assert_eq!(p["metadata"]["labels"]["job-name"], "backup");
        assert_eq!(
            p["metadata"]["labels"]["batch.kubernetes.io/job-name"],
            "backup"
        );
        assert_eq!(p["metadata"]["labels"]["controller-uid"], "u1");
        assert_eq!(p["metadata"]["labels"]["app"], "b");
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "Job");
        assert_eq!(p["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(p["spec"]["restartPolicy"], "Never");
    }
}
