//! The drain loop: watch the node's pods, evict what must leave with a
//! bounded concurrency, retry what a PDB blocks, and stop at the deadline
//! with the policy the user chose.
//!
//! Waiting is done on one watch of the node's pods (a pod is gone when it
//! is deleted or comes back with another UID), never by polling each pod.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::pin::Pin;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{Future, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Preconditions};
use kube::runtime::watcher;
use kube::{Api, Client};
use schemars::JsonSchema;
use serde::Serialize;
use thiserror::Error;
use tokio::time::Instant;

use super::evict::{EvictionAnswer, PodKey, evict};
use super::filter::{Decision, EvictReason, PodRules, SkipReason, decide};
use super::local::{self, NodeLocalClaims};
use super::pods_on_node::{self, StreamingLists};
use super::policy::{LocalStorage, OnDrainTimeout, UnmanagedPods};
use crate::kube::errors;
use crate::kube::retry::with_retry;

/// How a drain behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrainPolicy {
    pub on_timeout: OnDrainTimeout,
    pub unmanaged: UnmanagedPods,
    pub local_storage: LocalStorage,
    /// Evictions in flight at once for one node.
    pub concurrency: usize,
}

/// Default eviction concurrency per node: enough to drain a full node in a
/// few round trips without stampeding the API server during a wide surge.
pub const DEFAULT_EVICTION_CONCURRENCY: usize = 16;
/// First retry of a blocked eviction; doubles up to [`MAX_RETRY_DELAY`].
/// Short, because a PDB usually unblocks as soon as a replacement pod is
/// Ready, and a late retry is dead time in the rotation.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(250);
/// Longest wait between two evictions of the same pod (kubectl waits 5 s).
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);
/// Longest wait before asking again for a pod a PodDisruptionBudget
/// protects (unless the server asks for longer): the budget frees the
/// moment another of its pods becomes Ready, and every second waited past
/// that is a second the whole wave waits. One request a second per blocked
/// pod is little next to what the pods' own controllers send.
const MAX_BLOCKED_RETRY_DELAY: Duration = Duration::from_secs(1);
/// After `force` deletes the remaining pods, how long beyond their longest
/// grace period to wait for them to go.
const FORCE_EXTRA_WAIT: Duration = Duration::from_secs(30);

/// A pod still on the node at the deadline, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Blocker {
    pub pod: String,
    pub reason: String,
}

/// One pod the drain removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvictedPod {
    pub pod: String,
    pub reason: EvictReason,
    /// Eviction requests it took (more than one when a PDB blocked).
    pub attempts: u32,
}

/// How the drain ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", tag = "result")]
pub enum DrainOutcome {
    /// Every pod that had to leave left through the Eviction API.
    Drained,
    /// The deadline passed and `force` deleted these pods, PDBs ignored.
    Forced { pods: Vec<String> },
    /// The deadline passed and `skip` left these pods (the node stays).
    Skipped { blockers: Vec<Blocker> },
}

/// What a drain did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrainReport {
    pub node: String,
    pub evicted: Vec<EvictedPod>,
    pub skipped: Vec<(String, SkipReason)>,
    /// Eviction requests a PodDisruptionBudget refused (HTTP 429), retried
    /// later: how long the budgets held the drain back.
    pub evictions_refused: u32,
    pub outcome: DrainOutcome,
}

/// Why a drain failed.
#[derive(Debug, Error)]
pub enum DrainError {
    /// A pod the policy does not allow to remove; nothing was evicted.
    #[error("cannot drain {node}: {}", messages.join("; "))]
    Refused { node: String, messages: Vec<String> },
    /// `onTimeout: fail` and pods are still there.
    #[error(
        "drain of {node} did not finish in time; still on the node: {}",
        describe_blockers(blockers)
    )]
    TimedOut {
        node: String,
        blockers: Vec<Blocker>,
    },
    /// The API server refused an eviction for good.
    #[error("eviction of {pod} was rejected: {reason}")]
    Rejected { pod: String, reason: String },
    #[error("drain of {node}: {source}")]
    Api {
        node: String,
        #[source]
        source: kube::Error,
    },
}

/// `pod (reason), …` for messages.
pub fn describe_blockers(blockers: &[Blocker]) -> String {
    blockers
        .iter()
        .map(|b| format!("{} ({})", b.pod, b.reason))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Receives what a drain is doing, for progress views and status.
pub trait DrainProgress: Send + Sync {
    /// An eviction was refused for now; the drain retries.
    fn blocked(&self, node: &str, pod: &str, reason: &str);
    /// A pod left the node.
    fn evicted(&self, node: &str, pod: &str);
}

impl DrainPolicy {
    /// The rules [`decide`] applies on a node whose node-local claims are
    /// `local_claims`.
    fn rules<'a>(&self, local_claims: &'a NodeLocalClaims) -> PodRules<'a> {
        PodRules {
            unmanaged: self.unmanaged,
            local_storage: self.local_storage,
            local_claims,
        }
    }
}

impl DrainProgress for () {
    fn blocked(&self, _: &str, _: &str, _: &str) {}
    fn evicted(&self, _: &str, _: &str) {}
}

/// Every decision for the pods on `node` now, failing when any pod must
/// not be removed. Call before cordoning so a refusal changes nothing.
pub async fn precheck(client: &Client, node: &str, policy: &DrainPolicy) -> Result<(), DrainError> {
    let api_error = |source| DrainError::Api {
        node: node.to_string(),
        source,
    };
    let pods = pods_on_node::list(client, node).await.map_err(api_error)?;
    let local_claims = local_claims_of(client, node, &pods)
        .await
        .map_err(api_error)?;
    let rules = policy.rules(&local_claims);
    let refusals: Vec<String> = pods
        .iter()
        .filter_map(|p| match decide(p, &rules) {
            Decision::Refuse { message } => Some(message),
            _ => None,
        })
        .collect();
    if refusals.is_empty() {
        Ok(())
    } else {
        Err(DrainError::Refused {
            node: node.to_string(),
            messages: refusals,
        })
    }
}

/// The claims of `pods` whose data lives on `node` (no request when none
/// of them uses a claim).
async fn local_claims_of(
    client: &Client,
    node: &str,
    pods: &[Pod],
) -> Result<NodeLocalClaims, kube::Error> {
    with_retry("read the node's volumes", || {
        local::resolve(client, node, pods)
    })
    .await
}

type EvictionFuture =
    Pin<Box<dyn Future<Output = (PodKey, Result<EvictionAnswer, kube::Error>)> + Send>>;
type TimerFuture = Pin<Box<dyn Future<Output = PodKey> + Send>>;

struct Pending {
    key: PodKey,
    reason: EvictReason,
    attempts: u32,
    forced: bool,
}

/// Drain `node` (already cordoned) until every pod that must leave is gone
/// or `deadline` passes. `client` must not retry 429s on its own: a PDB's
/// 429 has to reach this loop. The pods are read after the cordon, as
/// kubectl's drain reads them: a pod bound before it is among them.
/// `streaming`: whether the run's API server refused a streaming list.
pub async fn drain(
    client: &Client,
    node: &str,
    deadline: Instant,
    policy: &DrainPolicy,
    progress: &dyn DrainProgress,
    streaming: &StreamingLists,
) -> Result<DrainReport, DrainError> {
    let mut pod_events = pods_on_node::events(client, node, streaming);

    let mut initialized = false;
    let mut init_buffer: Vec<Pod> = Vec::new();
    // Pods that must be gone (by UID) before the drain is done.
    let mut must_leave: BTreeMap<String, Pending> = BTreeMap::new();
    let mut skipped: BTreeMap<String, SkipReason> = BTreeMap::new();
    let mut evicted: Vec<EvictedPod> = Vec::new();
    let mut blocked: HashMap<String, String> = HashMap::new();
    let mut evictions_refused: u32 = 0;
    let mut queue: VecDeque<PodKey> = VecDeque::new();
    let mut queued: BTreeSet<String> = BTreeSet::new();
    let mut in_flight: FuturesUnordered<EvictionFuture> = FuturesUnordered::new();
    let mut timers: FuturesUnordered<TimerFuture> = FuturesUnordered::new();
    let mut forced: Option<Vec<String>> = None;
    // The node-local claims of the pods seen so far (by UID): read when a
    // pod first shows up, so a pod that appears after the check (the node
    // is cordoned, but a pod may tolerate it) is judged the same way.
    let mut local_claims = NodeLocalClaims::default();
    let mut claims_read: BTreeSet<String> = BTreeSet::new();
    let mut deadline = deadline;
    let concurrency = policy.concurrency.max(1);

    loop {
        // Consider new pods, start queued evictions within the bound.
        while in_flight.len() < concurrency {
            let Some(key) = queue.pop_front() else { break };
            queued.remove(&key.uid);
            if !must_leave.contains_key(&key.uid) {
                continue;
            }
            let client = client.clone();
            in_flight.push(Box::pin(async move {
                let answer = evict(&client, &key).await;
                (key, answer)
            }));
        }
        if initialized && must_leave.is_empty() && in_flight.is_empty() {
            let outcome = match forced {
                Some(pods) => DrainOutcome::Forced { pods },
                None => DrainOutcome::Drained,
            };
            return Ok(DrainReport {
                node: node.to_string(),
                evicted,
                skipped: skipped.into_iter().collect(),
                evictions_refused,
                outcome,
            });
        }

        tokio::select! {
            event = pod_events.next() => {
                let Some(event) = event else { continue };
                let event = match event {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::debug!(node, error = %e, "pod watch interrupted; resuming");
                        continue;
                    }
                };
                match event {
                    watcher::Event::Init => init_buffer.clear(),
                    watcher::Event::InitApply(pod) => init_buffer.push(pod),
                    watcher::Event::InitDone => {
                        let present: BTreeSet<String> = init_buffer
                            .iter()
                            .filter_map(|p| p.metadata.uid.clone())
                            .collect();
                        // Pods that vanished while the watch was down are gone.
                        must_leave.retain(|uid, _| present.contains(uid));
                        let pods = std::mem::take(&mut init_buffer);
                        read_local_claims(client, node, &pods, &mut local_claims, &mut claims_read).await?;
                        let rules = policy.rules(&local_claims);
                        for pod in pods {
                            consider(&pod, &rules, &mut must_leave, &mut skipped, &mut queue, &mut queued, node)?;
                        }
                        initialized = true;
                    }
                    watcher::Event::Apply(pod) => {
                        if initialized {
                            read_local_claims(client, node, std::slice::from_ref(&pod), &mut local_claims, &mut claims_read).await?;
                            let rules = policy.rules(&local_claims);
                            consider(&pod, &rules, &mut must_leave, &mut skipped, &mut queue, &mut queued, node)?;
                        }
                    }
                    watcher::Event::Delete(pod) => {
                        let key = PodKey::of(&pod);
                        if let Some(done) = must_leave.remove(&key.uid) {
                            blocked.remove(&key.uid);
                            progress.evicted(node, &key.to_string());
                            if !done.forced && done.attempts > 0 {
                                evicted.push(EvictedPod { pod: key.to_string(), reason: done.reason, attempts: done.attempts });
                            }
                        }
                    }
                }
            }
            Some((key, answer)) = in_flight.next(), if !in_flight.is_empty() => {
                let Some(pending) = must_leave.get_mut(&key.uid) else { continue };
                pending.attempts += 1;
                let attempts = pending.attempts;
                match answer {
                    Ok(EvictionAnswer::Accepted) | Ok(EvictionAnswer::Gone) => {
                        blocked.remove(&key.uid);
                    }
                    Ok(EvictionAnswer::Blocked { reason, retry_after_secs }) => {
                        evictions_refused = evictions_refused.saturating_add(1);
                        progress.blocked(node, &key.to_string(), &reason);
                        blocked.insert(key.uid.clone(), reason);
                        let hint = retry_after_secs.map(|s| Duration::from_secs(u64::from(s)));
                        timers.push(retry_timer(key, attempts, hint, MAX_BLOCKED_RETRY_DELAY));
                    }
                    Ok(EvictionAnswer::Retry { reason }) => {
                        blocked.insert(key.uid.clone(), reason);
                        timers.push(retry_timer(key, attempts, None, MAX_RETRY_DELAY));
                    }
                    Ok(EvictionAnswer::Rejected { reason }) => {
                        return Err(DrainError::Rejected { pod: key.to_string(), reason });
                    }
                    Err(e) if crate::kube::fence::fenced_by(&e).is_some() => {
                        // This run lost its lock: no further eviction.
                        return Err(DrainError::Api { node: node.to_string(), source: e });
                    }
                    Err(e) => {
                        // The API server may be restarting: retry within the deadline.
                        blocked.insert(key.uid.clone(), format!("API error: {e}"));
                        timers.push(retry_timer(key, attempts, None, MAX_RETRY_DELAY));
                    }
                }
            }
            Some(key) = timers.next(), if !timers.is_empty() => {
                if must_leave.contains_key(&key.uid) && queued.insert(key.uid.clone()) {
                    queue.push_back(key);
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                let blockers: Vec<Blocker> = must_leave
                    .values()
                    .map(|p| Blocker {
                        pod: p.key.to_string(),
                        reason: blocked
                            .get(&p.key.uid)
                            .cloned()
                            .unwrap_or_else(|| "still terminating".into()),
                    })
                    .collect();
                if forced.is_some() || !initialized && policy.on_timeout != OnDrainTimeout::Skip {
                    return Err(DrainError::TimedOut { node: node.to_string(), blockers });
                }
                match policy.on_timeout {
                    OnDrainTimeout::Fail => {
                        return Err(DrainError::TimedOut { node: node.to_string(), blockers });
                    }
                    OnDrainTimeout::Skip => {
                        return Ok(DrainReport {
                            node: node.to_string(),
                            evicted,
                            skipped: skipped.into_iter().collect(),
                evictions_refused,
                            outcome: DrainOutcome::Skipped { blockers },
                        });
                    }
                    OnDrainTimeout::Force => {
                        let mut names = Vec::new();
                        let mut longest_grace = Duration::ZERO;
                        for pending in must_leave.values_mut() {
                            tracing::warn!(
                                node,
                                pod = %pending.key,
                                "drain timed out: deleting the pod without its PodDisruptionBudget's consent (drain.onTimeout: force)"
                            );
                            let params = DeleteParams {
                                preconditions: Some(Preconditions { uid: Some(pending.key.uid.clone()), resource_version: None }),
                                ..DeleteParams::default()
                            };
                            let ns_api: Api<Pod> = Api::namespaced(client.clone(), &pending.key.namespace);
                            match ns_api.delete(&pending.key.name, &params).await {
                                Ok(either) => {
                                    if let Some(pod) = either.left() {
                                        let grace = pod.spec.and_then(|s| s.termination_grace_period_seconds).unwrap_or(30);
                                        longest_grace = longest_grace.max(Duration::from_secs(grace.max(0) as u64));
                                    }
                                }
                                Err(e) if errors::is_not_found(&e) || errors::is_conflict(&e) => {}
                                Err(source) => return Err(DrainError::Api { node: node.to_string(), source }),
                            }
                            pending.forced = true;
                            names.push(pending.key.to_string());
                        }
                        forced = Some(names);
                        deadline = Instant::now() + longest_grace + FORCE_EXTRA_WAIT;
                    }
                }
            }
        }
    }
}

/// Add to `known` the node-local claims of those of `pods` not read yet.
async fn read_local_claims(
    client: &Client,
    node: &str,
    pods: &[Pod],
    known: &mut NodeLocalClaims,
    read: &mut BTreeSet<String>,
) -> Result<(), DrainError> {
    let unread: Vec<Pod> = pods
        .iter()
        .filter(|p| {
            p.metadata
                .uid
                .as_ref()
                .is_some_and(|uid| !read.contains(uid))
        })
        .cloned()
        .collect();
    if unread.is_empty() {
        return Ok(());
    }
    let found = local_claims_of(client, node, &unread)
        .await
        .map_err(|source| DrainError::Api {
            node: node.to_string(),
            source,
        })?;
    known.extend(found);
    read.extend(unread.into_iter().filter_map(|p| p.metadata.uid));
    Ok(())
}

fn consider(
    pod: &Pod,
    rules: &PodRules<'_>,
    must_leave: &mut BTreeMap<String, Pending>,
    skipped: &mut BTreeMap<String, SkipReason>,
    queue: &mut VecDeque<PodKey>,
    queued: &mut BTreeSet<String>,
    node: &str,
) -> Result<(), DrainError> {
    let key = PodKey::of(pod);
    match decide(pod, rules) {
        Decision::Evict { reason } => {
            if !must_leave.contains_key(&key.uid) {
                must_leave.insert(
                    key.uid.clone(),
                    Pending {
                        key: key.clone(),
                        reason,
                        attempts: 0,
                        forced: false,
                    },
                );
                if queued.insert(key.uid.clone()) {
                    queue.push_back(key);
                }
            }
        }
        Decision::AwaitDeletion => {
            must_leave.entry(key.uid.clone()).or_insert(Pending {
                key,
                reason: EvictReason::Managed,
                attempts: 0,
                forced: false,
            });
        }
        Decision::Skip { reason } => {
            skipped.insert(key.to_string(), reason);
        }
        Decision::Refuse { message } => {
            return Err(DrainError::Refused {
                node: node.to_string(),
                messages: vec![message],
            });
        }
    }
    Ok(())
}

fn retry_timer(key: PodKey, attempts: u32, hint: Option<Duration>, cap: Duration) -> TimerFuture {
    let exponential = FIRST_RETRY_DELAY
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(8))
        .min(cap);
    let delay = hint.map_or(exponential, |h| h.min(MAX_RETRY_DELAY).max(exponential));
    // Jitter spreads the retries of many pods blocked by the same budget.
    let jitter = Duration::from_millis(rand::random_range(0..=delay.as_millis() as u64 / 4));
    Box::pin(async move {
        tokio::time::sleep(delay + jitter).await;
        key
    })
}
