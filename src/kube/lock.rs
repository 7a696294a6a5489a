//! The run lock: Lease `kube-system/kubesurge` (design §5 step 2; protocol in
//! k8s-mechanics §6). At most one run mutates a cluster at a time
//! (invariant 5). The holder renews it; a crashed holder's lease expires.
//! `kubesurge abort` marks the lease; the holder sees the mark when it
//! renews and stops at its next safe point.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde::Serialize;
use serde_json::json;
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::errors;
use super::retry::with_retry;

pub const LEASE_NAMESPACE: &str = "kube-system";
pub const LEASE_NAME: &str = "kubesurge";
/// Annotation `kubesurge abort` sets on the lease.
pub const ABORT_ANNOTATION: &str = "kubesurge.io/abort-requested";
/// How long a lease lives without renewal. A crashed run blocks others for
/// at most this long (a rerun on the same host takes over at once).
pub const LEASE_DURATION: Duration = Duration::from_secs(30);
/// How often the holder renews (a third of the duration, like leader
/// election, so two missed renewals still keep it).
pub const RENEW_EVERY: Duration = Duration::from_secs(10);

/// Who holds the lock: `<host>/<pid>/<run id>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    pub run_id: String,
}

impl Holder {
    /// This process, for `run_id`.
    pub fn this_process(run_id: &str) -> Holder {
        Holder {
            host: hostname(),
            pid: std::process::id(),
            run_id: run_id.to_string(),
        }
    }

    pub fn identity(&self) -> String {
        format!("{}/{}/{}", self.host, self.pid, self.run_id)
    }

    pub fn parse(identity: &str) -> Option<Holder> {
        let mut parts = identity.splitn(3, '/');
        let host = parts.next()?.to_string();
        let pid = parts.next()?.parse().ok()?;
        let run_id = parts.next()?.to_string();
        Some(Holder { host, pid, run_id })
    }

    /// A holder on this host whose process is gone (a crashed earlier run):
    /// its lease may be taken over without waiting for expiry.
    fn is_dead_local_process(&self) -> bool {
        self.host == hostname()
            && self.pid != std::process::id()
            && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

/// This machine's name, as holders and events name it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

/// Why the lock could not be taken or used.
#[derive(Debug, Error)]
pub enum LockError {
    /// Another run holds it (exit 3).
    #[error(
        "another run holds the lock (lease {LEASE_NAMESPACE}/{LEASE_NAME}): {holder} since {since}"
    )]
    Held { holder: String, since: String },
    /// Nobody holds it (for `abort`).
    #[error("no run holds the lock (lease {LEASE_NAMESPACE}/{LEASE_NAME})")]
    NotHeld,
    #[error("lock lease {LEASE_NAMESPACE}/{LEASE_NAME}: {0}")]
    Api(#[from] kube::Error),
}

/// Signals from the lock to the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockState {
    /// `kubesurge abort` asked this run to stop.
    pub abort_requested: bool,
    /// Someone else took the lease (this process stalled past its expiry):
    /// stop mutating at once.
    pub lost: bool,
}

/// A held lock, renewed in the background until released or dropped.
pub struct RunLock {
    api: Api<Lease>,
    holder: Holder,
    state: watch::Receiver<LockState>,
    renewer: JoinHandle<()>,
}

fn expired(lease: &Lease, now: Timestamp) -> bool {
    let Some(spec) = &lease.spec else { return true };
    let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return true;
    };
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    renewed.0 + SignedDuration::from_secs(duration) < now
}

fn lease_for(holder: &Holder, now: Timestamp, transitions: i32) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(holder.identity()),
        lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    }
}

impl RunLock {
    /// Take the lock for `holder`, or say who has it.
    pub async fn acquire(client: Client, holder: Holder) -> Result<RunLock, LockError> {
        let api: Api<Lease> = Api::namespaced(client, LEASE_NAMESPACE);
        let now = Timestamp::now();
        let fresh = Lease {
            metadata: ObjectMeta {
                name: Some(LEASE_NAME.into()),
                namespace: Some(LEASE_NAMESPACE.into()),
                ..ObjectMeta::default()
            },
            spec: Some(lease_for(&holder, now, 0)),
        };
        let post = PostParams::default();
        match with_retry("create lease", || api.create(&post, &fresh)).await {
            Ok(_) => return Ok(RunLock::start(api, holder)),
            Err(e) if errors::is_already_exists(&e) => {}
            Err(e) => return Err(e.into()),
        }
        let current = with_retry("get lease", || api.get(LEASE_NAME)).await?;
        let spec = current.spec.clone().unwrap_or_default();
        let current_holder = spec.holder_identity.clone().unwrap_or_default();
        let ours = current_holder == holder.identity();
        let vacant = current_holder.is_empty()
            || expired(&current, now)
            || Holder::parse(&current_holder).is_some_and(|h| h.is_dead_local_process());
        if !ours && !vacant {
            return Err(LockError::Held {
                holder: current_holder,
                since: spec
                    .acquire_time
                    .map(|t| t.0.to_string())
                    .unwrap_or_else(|| "an unknown time".into()),
            });
        }
        let mut taken = current.clone();
        taken.spec = Some(lease_for(
            &holder,
            now,
            spec.lease_transitions.unwrap_or(0) + i32::from(!ours),
        ));
        if let Some(annotations) = taken.metadata.annotations.as_mut() {
            annotations.remove(ABORT_ANNOTATION);
        }
        // The replace carries the resourceVersion we read: if another run
        // took the lease in between, this fails with 409 and we report it.
        match with_retry("take over lease", || api.replace(LEASE_NAME, &post, &taken)).await {
            Ok(_) => Ok(RunLock::start(api, holder)),
            Err(e) if errors::is_conflict(&e) => {
                let now_held = api.get(LEASE_NAME).await?;
                let spec = now_held.spec.unwrap_or_default();
                Err(LockError::Held {
                    holder: spec.holder_identity.unwrap_or_default(),
                    since: spec
                        .acquire_time
                        .map(|t| t.0.to_string())
                        .unwrap_or_default(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    fn start(api: Api<Lease>, holder: Holder) -> RunLock {
        let (tx, state) = watch::channel(LockState::default());
        let identity = holder.identity();
        let renew = renew_loop(api.clone(), identity.clone(), tx.clone());
        let marks = watch_marks(api.clone(), identity, tx);
        // One task: dropping or releasing the lock stops both.
        let renewer = tokio::spawn(async move {
            tokio::join!(renew, marks);
        });
        RunLock {
            api,
            holder,
            state,
            renewer,
        }
    }

    pub fn holder(&self) -> &Holder {
        &self.holder
    }

    /// Abort requests and loss of the lease, as they are noticed.
    pub fn state(&self) -> watch::Receiver<LockState> {
        self.state.clone()
    }

    /// Give the lock up (the run is over).
    pub async fn release(self) -> Result<(), LockError> {
        self.renewer.abort();
        let current = with_retry("get lease", || self.api.get(LEASE_NAME)).await?;
        let held_by_us = current
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            == Some(self.holder.identity().as_str());
        if !held_by_us {
            return Ok(());
        }
        let mut released = current.clone();
        if let Some(spec) = released.spec.as_mut() {
            spec.holder_identity = None;
            spec.renew_time = None;
            spec.acquire_time = None;
        }
        if let Some(annotations) = released.metadata.annotations.as_mut() {
            annotations.remove(ABORT_ANNOTATION);
        }
        match self
            .api
            .replace(LEASE_NAME, &PostParams::default(), &released)
            .await
        {
            Ok(_) | Err(kube::Error::Api(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// See an abort mark or a takeover the moment it is written: one watch on
/// the lease, so `kubesurge abort` takes effect at the next safe point, not
/// at the next renewal.
async fn watch_marks(api: Api<Lease>, identity: String, tx: watch::Sender<LockState>) {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let config = watcher::Config::default().fields(&format!("metadata.name={LEASE_NAME}"));
    let mut leases = watcher(api, config)
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(lease) = leases.next().await {
        let Ok(lease) = lease else { continue };
        let holder = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            .unwrap_or_default();
        if holder != identity {
            tx.send_modify(|s| s.lost = true);
            return;
        }
        let abort = lease
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(ABORT_ANNOTATION));
        if abort && !tx.borrow().abort_requested {
            tx.send_modify(|s| s.abort_requested = true);
        }
    }
}

async fn renew_loop(api: Api<Lease>, identity: String, tx: watch::Sender<LockState>) {
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        let Ok(mut lease) = with_retry("get lease", || api.get(LEASE_NAME)).await else {
            continue;
        };
        let holder = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .unwrap_or_default();
        if holder != identity {
            tx.send_modify(|s| s.lost = true);
            return;
        }
        let abort = lease
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(ABORT_ANNOTATION));
        if abort {
            tx.send_modify(|s| s.abort_requested = true);
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.renew_time = Some(MicroTime(Timestamp::now()));
        }
        match api
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {}
            Err(e) if errors::is_conflict(&e) => {
                // Changed under us (an abort mark, or a takeover): look again
                // at once on the next round.
                tracing::debug!("lease changed while renewing");
            }
            Err(e) => tracing::warn!(error = %e, "could not renew the run lock"),
        }
    }
}

/// What `kubesurge abort` found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AbortRequest {
    pub holder: String,
}

/// Ask the run holding the lock to stop at its next safe point.
pub async fn request_abort(client: Client) -> Result<AbortRequest, LockError> {
    let api: Api<Lease> = Api::namespaced(client, LEASE_NAMESPACE);
    let lease = match with_retry("get lease", || api.get(LEASE_NAME)).await {
        Ok(l) => l,
        Err(e) if errors::is_not_found(&e) => return Err(LockError::NotHeld),
        Err(e) => return Err(e.into()),
    };
    let holder = lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.clone())
        .unwrap_or_default();
    if holder.is_empty() || expired(&lease, Timestamp::now()) {
        return Err(LockError::NotHeld);
    }
    let patch = json!({"metadata": {"annotations": BTreeMap::from([(ABORT_ANNOTATION, Timestamp::now().to_string())])}});
    let params = PatchParams::default();
    let patch = Patch::Merge(&patch);
    with_retry("mark lease", || api.patch(LEASE_NAME, &params, &patch)).await?;
    Ok(AbortRequest { holder })
}

/// The current holder, if the lock is held (for `status`).
pub async fn current_holder(client: Client) -> Result<Option<(Holder, Timestamp)>, LockError> {
    let api: Api<Lease> = Api::namespaced(client, LEASE_NAMESPACE);
    let lease = match with_retry("get lease", || api.get(LEASE_NAME)).await {
        Ok(l) => l,
        Err(e) if errors::is_not_found(&e) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if expired(&lease, Timestamp::now()) {
        return Ok(None);
    }
    let spec = lease.spec.unwrap_or_default();
    Ok(spec
        .holder_identity
        .as_deref()
        .and_then(Holder::parse)
        .map(|h| (h, spec.acquire_time.map(|t| t.0).unwrap_or_default())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_identity_round_trips() {
        let h = Holder {
            host: "ops-1".into(),
            pid: 42,
            run_id: "r-abc".into(),
        };
        assert_eq!(Holder::parse(&h.identity()), Some(h));
        assert_eq!(Holder::parse("garbage"), None);
    }

    #[test]
    fn expiry_follows_renew_time_and_duration() {
        let now: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let mut lease = Lease::default();
        assert!(expired(&lease, now));
        lease.spec = Some(LeaseSpec {
            renew_time: Some(MicroTime("2026-01-01T00:00:45Z".parse().unwrap())),
            lease_duration_seconds: Some(30),
            ..LeaseSpec::default()
        });
        assert!(!expired(&lease, now));
        lease.spec.as_mut().unwrap().renew_time =
            Some(MicroTime("2026-01-01T00:00:20Z".parse().unwrap()));
        assert!(expired(&lease, now));
    }

    #[test]
    fn a_live_process_is_not_dead() {
        let me = Holder::this_process("r");
        assert!(!me.is_dead_local_process());
        let other_host = Holder {
            host: "elsewhere".into(),
            pid: 1,
            run_id: "r".into(),
        };
        assert!(!other_host.is_dead_local_process());
    }
}
