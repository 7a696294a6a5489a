//! The run lock: Lease `kube-system/kubesurge` (design §5 step 2; protocol in
//! k8s-mechanics §6). At most one run mutates a cluster at a time
//! (invariant 5). The holder renews it; a crashed holder's lease expires.
//! `kubesurge abort` marks the lease; the holder sees the mark when it
//! renews and stops at its next safe point.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::json;
use thiserror::Error;
use tokio::sync::{oneshot, watch};

use super::client::{Retry, fenced_client_from_config};
use super::errors;
use super::fence::Fence;
use super::in_flight::InFlightLayer;
use super::retry::with_retry;

pub const LEASE_NAMESPACE: &str = "kube-system";
pub const LEASE_NAME: &str = "kubesurge";
/// Annotation `kubesurge abort` sets on the lease.
pub const ABORT_ANNOTATION: &str = "kubesurge.io/abort-requested";
/// How long a lease lives without renewal. A crashed run blocks others for
/// at most this long (a rerun on the same host takes over at once).
pub const LEASE_DURATION: Duration = Duration::from_secs(30);
/// How often the holder renews: every retry period, as client-go's leader
/// elector does (`renew` runs `tryAcquireOrRenew` under
/// `wait.Until(..., RetryPeriod, ...)`, k8s.io/client-go/tools/leaderelection),
/// so that when the API server goes away the last renewal is at most this
/// old and nearly the whole renew deadline is left to ride it out.
pub const RENEW_EVERY: Duration = RETRY_PERIOD;
/// How soon a failed renewal is tried again (client-go's RetryPeriod).
const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// A holder that has not renewed for this share of its lease duration
/// fences itself: two thirds, as client-go's defaults (renew deadline 10 s
/// of a 15 s lease), leaving a third of the duration for requests already
/// on their way before a contender can take over.
fn renew_deadline(lease_duration: Duration) -> Duration {
    lease_duration * 2 / 3
}

/// Who holds the lock: `<host>/<pid>/<run id>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
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

    /// A holder whose process is provably gone (a crashed earlier run on
    /// this very machine and PID namespace): its lease may be taken over
    /// without waiting for expiry. A hostname is not enough: two
    /// hostNetwork pods, or two containers, share one but not their PID
    /// namespace, and the other's process is invisible here. So the lease
    /// must record the holder's process (boot id, PID namespace, start
    /// time) and match this machine's boot and namespace.
    fn is_dead_local_process(&self, recorded: Option<&str>) -> bool {
        let Some(recorded) = recorded.and_then(ProcessIdentity::parse) else {
            return false;
        };
        let Some(here) = ProcessIdentity::of(std::process::id()) else {
            return false;
        };
        self.host == hostname()
            && self.pid != std::process::id()
            && recorded.boot_id == here.boot_id
            && recorded.pid_namespace == here.pid_namespace
            // Gone, or the number reused by a later process.
            && ProcessIdentity::of(self.pid).is_none_or(|now| now.start_time != recorded.start_time)
    }
}

/// Annotation on the lease: the holder's [`ProcessIdentity`].
pub const PROCESS_ANNOTATION: &str = "kubesurge.io/holder-process";

/// What makes a process the same one: the machine's boot, its PID
/// namespace and its start time (proc(5): `/proc/sys/kernel/random/boot_id`,
/// `/proc/<pid>/ns/pid`, field 22 of `/proc/<pid>/stat`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct ProcessIdentity {
    boot_id: String,
    pid_namespace: String,
    start_time: String,
}

impl ProcessIdentity {
    fn of(pid: u32) -> Option<ProcessIdentity> {
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let pid_namespace = std::fs::read_link("/proc/self/ns/pid").ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) may hold spaces: count after its ')'.
        let start_time = stat.rsplit_once(')')?.1.split_whitespace().nth(19)?;
        Some(ProcessIdentity {
            boot_id: boot_id.trim().to_string(),
            pid_namespace: pid_namespace.to_string_lossy().into_owned(),
            start_time: start_time.to_string(),
        })
    }

    fn render(&self) -> String {
        format!(
            "{} {} {}",
            self.boot_id, self.pid_namespace, self.start_time
        )
    }

    fn parse(text: &str) -> Option<ProcessIdentity> {
        let mut parts = text.split(' ');
        Some(ProcessIdentity {
            boot_id: parts.next()?.to_string(),
            pid_namespace: parts.next()?.to_string(),
            start_time: parts.next()?.to_string(),
        })
    }
}

/// This process's clock for the lease's timestamps. Tests shift it
/// (`KUBESURGE_TEST_CLOCK_OFFSET`, in seconds) to run two tools whose
/// clocks disagree; nothing judges expiry by comparing it with another
/// machine's.
fn lease_clock() -> Timestamp {
    let offset = std::env::var("KUBESURGE_TEST_CLOCK_OFFSET")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(0);
    Timestamp::now() + SignedDuration::from_secs(offset)
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
        "another run holds the lock (lease {LEASE_NAMESPACE}/{LEASE_NAME}): {holder} since {since}{}",
        through.as_ref().map(|what| format!(
            "; it holds it through {what}, during which its API server restarts on purpose: \
             wait for it to finish rather than take over"
        )).unwrap_or_default()
    )]
    Held {
        holder: String,
        since: String,
        /// What the holder is doing that makes the API server go away on
        /// purpose (the lease's `kubesurge.io/holding-through`).
        through: Option<String>,
    },
    /// Nobody holds it (for `abort`).
    #[error("no run holds the lock (lease {LEASE_NAMESPACE}/{LEASE_NAME})")]
    NotHeld,
    #[error("lock lease {LEASE_NAMESPACE}/{LEASE_NAME}: {0}")]
    Api(#[from] kube::Error),
    /// This run no longer holds the lock.
    #[error("this run no longer holds the run lock (lease {LEASE_NAMESPACE}/{LEASE_NAME}): {0}")]
    Fenced(String),
    /// The thread that renews the lease could not be started.
    #[error("cannot start the run lock's renewer: {0}")]
    Renewer(String),
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
    renewer: Renewer,
    hold: LeaseHold,
}

/// What the holder last proved: when it renewed (by its monotonic clock)
/// and for how long the lease it wrote lives.
#[derive(Debug)]
struct Tenure {
    renewed: Instant,
    duration: Duration,
}

/// A handle on the held lease for work that makes the API server go away
/// on purpose (a control-plane node's kube-apiserver restart): before it,
/// the lease is made to outlive the outage, so neither does this run fence
/// itself nor a contender take over while the API cannot be reached; after
/// it, the lease returns to its usual duration. Also the fence a caller
/// checks before a mutation that no fenced client carries (a script on a
/// node).
#[derive(Clone, Debug)]
pub struct LeaseHold {
    api: Api<Lease>,
    identity: String,
    tenure: Arc<Mutex<Tenure>>,
    fence: Fence,
}

/// The annotation on the lease while a run holds it through an outage it
/// causes, naming what it does: a contender's refusal says why it waits.
pub const OUTAGE_ANNOTATION: &str = "kubesurge.io/holding-through";

impl LeaseHold {
    fn tenure(&self) -> std::sync::MutexGuard<'_, Tenure> {
        self.tenure.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The fence this lock raises.
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// Make the lease last `outage` plus its usual duration from now,
    /// saying `what` is going on. Fails when this run no longer holds it.
    pub async fn hold_through(&self, what: &str, outage: Duration) -> Result<(), LockError> {
        self.write(LEASE_DURATION + outage, Some(what)).await
    }

    /// Back to the usual duration once the outage is over.
    pub async fn end_hold(&self) -> Result<(), LockError> {
        self.write(LEASE_DURATION, None).await
    }

    async fn write(&self, duration: Duration, what: Option<&str>) -> Result<(), LockError> {
        self.fence
            .check()
            .map_err(|f| LockError::Fenced(f.to_string()))?;
        let mut lease = with_retry("get lease", || self.api.get(LEASE_NAME)).await?;
        let holder = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .unwrap_or_default();
        if holder != self.identity {
            self.fence
                .raise(format!("another run took the lease over ({holder})"));
            return Err(LockError::Fenced(holder));
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.renew_time = Some(MicroTime(lease_clock()));
            spec.lease_duration_seconds =
                Some(i32::try_from(duration.as_secs()).unwrap_or(i32::MAX));
        }
        let annotations = lease.metadata.annotations.get_or_insert_with(BTreeMap::new);
        match what {
            Some(what) => {
                annotations.insert(OUTAGE_ANNOTATION.to_string(), what.to_string());
            }
            None => {
                annotations.remove(OUTAGE_ANNOTATION);
            }
        }
        // Guarded by the resourceVersion just read: a takeover in between
        // fails this write with 409.
        let sent = Instant::now();
        self.api
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await?;
        let mut tenure = self.tenure();
        tenure.renewed = sent;
        tenure.duration = duration;
        Ok(())
    }
}

/// Whether the lease looks expired by `now` (this process's clock). Only a
/// hint: a takeover also needs [`renewed_within_its_duration`] to say no.
fn looks_expired(lease: &Lease, now: Timestamp) -> bool {
    expired(lease, now)
}

/// Watch the lease for its own duration, by this process's monotonic
/// clock: true when its record changed (renewed, released, taken) in that
/// time, false when it stayed exactly as `observed`.
async fn renewed_within_its_duration(
    api: &Api<Lease>,
    observed: &Lease,
) -> Result<bool, LockError> {
    let version = observed.metadata.resource_version.clone();
    let duration = observed
        .spec
        .as_ref()
        .and_then(|s| s.lease_duration_seconds)
        .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)))
        .unwrap_or(LEASE_DURATION);
    tracing::info!(
        "the run lock's lease looks expired by this machine's clock; watching it for {duration:?} before taking it over"
    );
    let changed = kube::runtime::wait::await_condition(
        api.clone(),
        LEASE_NAME,
        move |lease: Option<&Lease>| lease.is_none_or(|l| l.metadata.resource_version != version),
    );
    match tokio::time::timeout(duration, changed).await {
        Ok(Ok(_)) => Ok(true),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not watch the run lock's lease");
            Ok(true)
        }
        Err(_) => Ok(false),
    }
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
    ///
    /// Expiry is judged as client-go's leader election judges it: by this
    /// process's own observation of an unchanged lease record for the lease
    /// duration, never by comparing the holder's `renewTime` with this
    /// machine's clock (two machines' clocks may be minutes apart). A lease
    /// that looks current by this clock is held (a clock behind the
    /// holder's only makes this more cautious); one that looks stale is
    /// watched for a lease duration, and taken over only if nobody renewed
    /// it meanwhile.
    ///
    /// Once held, `fence` is raised the moment this run can no longer prove
    /// it holds the lease (taken over, or not renewed within the renew
    /// deadline): the clients built with it then refuse every mutation.
    ///
    /// `renewals` is the config the renewer builds its own client from (see
    /// [`Renewer`]).
    pub async fn acquire(
        client: Client,
        renewals: kube::Config,
        holder: Holder,
        fence: Fence,
    ) -> Result<RunLock, LockError> {
        let api: Api<Lease> = Api::namespaced(client, LEASE_NAMESPACE);
        // The tenure counts from before the write that takes the lease.
        let sent = Instant::now();
        let now = lease_clock();
        let process = ProcessIdentity::of(std::process::id()).map(|p| p.render());
        let fresh = Lease {
            metadata: ObjectMeta {
                name: Some(LEASE_NAME.into()),
                namespace: Some(LEASE_NAMESPACE.into()),
                annotations: process
                    .clone()
                    .map(|p| BTreeMap::from([(PROCESS_ANNOTATION.to_string(), p)])),
                ..ObjectMeta::default()
            },
            spec: Some(lease_for(&holder, now, 0)),
        };
        let post = PostParams::default();
        match with_retry("create lease", || api.create(&post, &fresh)).await {
            Ok(_) => return RunLock::start(api, renewals, holder, fence, sent),
            Err(e) if errors::is_conflict(&e) || errors::is_already_exists(&e) => {}
            Err(e) => return Err(e.into()),
        }
        let current = with_retry("get lease", || api.get(LEASE_NAME)).await?;
        let spec = current.spec.clone().unwrap_or_default();
        let current_holder = spec.holder_identity.clone().unwrap_or_default();
        let held = |lease: &Lease| {
            let spec = lease.spec.clone().unwrap_or_default();
            LockError::Held {
                holder: spec.holder_identity.clone().unwrap_or_default(),
                since: spec
                    .acquire_time
                    .as_ref()
                    .map(|t| t.0.to_string())
                    .unwrap_or_else(|| "an unknown time".into()),
                through: lease
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(OUTAGE_ANNOTATION))
                    .cloned(),
            }
        };
        let ours = current_holder == holder.identity();
        let recorded_process = current
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PROCESS_ANNOTATION))
            .map(String::as_str);
        let vacant = current_holder.is_empty()
            || Holder::parse(&current_holder)
                .is_some_and(|h| h.is_dead_local_process(recorded_process));
        if !ours && !vacant {
            if !looks_expired(&current, now) {
                return Err(held(&current));
            }
            if renewed_within_its_duration(&api, &current).await? {
                let now_held = with_retry("get lease", || api.get(LEASE_NAME)).await?;
                return Err(held(&now_held));
            }
        }
        let mut taken = current.clone();
        taken.spec = Some(lease_for(
            &holder,
            lease_clock(),
            spec.lease_transitions.unwrap_or(0) + i32::from(!ours),
        ));
        let annotations = taken.metadata.annotations.get_or_insert_with(BTreeMap::new);
        annotations.remove(ABORT_ANNOTATION);
        match &process {
            Some(p) => annotations.insert(PROCESS_ANNOTATION.to_string(), p.clone()),
            None => annotations.remove(PROCESS_ANNOTATION),
        };
        // The tenure counts from before this write, not from before the
        // create above: a takeover first watches the lease for its whole
        // duration, and counting that wait made the new holder fence itself
        // the moment it took the lease.
        let sent = Instant::now();
        // The replace carries the resourceVersion we read: if another run
        // took the lease in between, this fails with 409 and we report it.
        match with_retry("take over lease", || api.replace(LEASE_NAME, &post, &taken)).await {
            Ok(_) => RunLock::start(api, renewals, holder, fence, sent),
            Err(e) if errors::is_conflict(&e) => {
                let now_held = api.get(LEASE_NAME).await?;
                Err(held(&now_held))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn start(
        api: Api<Lease>,
        renewals: kube::Config,
        holder: Holder,
        fence: Fence,
        sent: Instant,
    ) -> Result<RunLock, LockError> {
        let (tx, state) = watch::channel(LockState::default());
        let identity = holder.identity();
        let hold = LeaseHold {
            api: api.clone(),
            identity: identity.clone(),
            tenure: Arc::new(Mutex::new(Tenure {
                renewed: sent,
                duration: LEASE_DURATION,
            })),
            fence,
        };
        let renewer = match Renewer::start(renewals, hold.clone(), tx) {
            Ok(renewer) => renewer,
            Err(error) => {
                // Nobody would renew it: stop now rather than at the
                // renew deadline, and leave the lease to expire.
                hold.fence
                    .raise(format!("the run lock's renewer did not start: {error}"));
                return Err(error);
            }
        };
        Ok(RunLock {
            api,
            holder,
            state,
            renewer,
            hold,
        })
    }

    /// The handle for holding the lease through an outage, and the fence.
    pub fn hold(&self) -> LeaseHold {
        self.hold.clone()
    }

    pub fn holder(&self) -> &Holder {
        &self.holder
    }

    /// Abort requests and loss of the lease, as they are noticed.
    pub fn state(&self) -> watch::Receiver<LockState> {
        self.state.clone()
    }

    /// Give the lock up (the run is over).
    pub async fn release(mut self) -> Result<(), LockError> {
        // Its last renewal must not race the release's write.
        self.renewer.stop().await;
        if let Err(fenced) = self.hold.fence.check() {
            // The lease may be another run's by now: leave it alone.
            return Err(LockError::Fenced(fenced.0));
        }
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

/// The lease's renewals, the watch for abort marks and takeovers, and the
/// renew deadline, on a thread and a runtime of their own with a client of
/// their own. On the run's runtime, a busy moment (every watch relisting
/// after an API server outage, a thousand slots waking) delayed a renewal
/// past the renew deadline and the run fenced itself while holding the
/// lease; and the run's client's connections are driven by the run's
/// runtime, so a client shared with it would be delayed alike.
struct Renewer {
    stop: Option<oneshot::Sender<()>>,
    done: Option<oneshot::Receiver<()>>,
}

impl Renewer {
    fn start(
        config: kube::Config,
        hold: LeaseHold,
        tx: watch::Sender<LockState>,
    ) -> Result<Renewer, LockError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| LockError::Renewer(e.to_string()))?;
        // The client's background tasks go to the renewer's runtime: it
        // is built inside it. Without kube's own 429/5xx retries: the
        // renewals retry on their own short period, and a request held
        // back by the client's backoff must not eat the renew deadline.
        let client = {
            let _inside = runtime.enter();
            fenced_client_from_config(config, Retry::Off, &hold.fence, &InFlightLayer::unbounded())
                .map_err(|e| LockError::Renewer(e.to_string()))?
        };
        let own = LeaseHold {
            api: Api::namespaced(client, LEASE_NAMESPACE),
            ..hold
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let (finished, done) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("kubesurge-lock".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let renew = renew_loop(own.clone(), tx.clone());
                    let marks = watch_marks(own.api.clone(), own.clone(), tx.clone());
                    let deadline = fence_at_renew_deadline(own, tx);
                    // The first to end (the lease lost, not renewed in
                    // time, or the lock released or dropped) ends them all.
                    tokio::select! {
                        () = renew => {}
                        () = marks => {}
                        () = deadline => {}
                        _ = stopped => {}
                    }
                });
                // The runtime, its client and connections go first.
                drop(runtime);
                let _ = finished.send(());
            })
            .map_err(|e| LockError::Renewer(e.to_string()))?;
        Ok(Renewer {
            stop: Some(stop),
            done: Some(done),
        })
    }

    /// Stop and wait until nothing of it runs any more.
    async fn stop(&mut self) {
        self.stop.take();
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
    }
}

impl Drop for Renewer {
    fn drop(&mut self) {
        // Dropping the sender stops the thread; nobody waits for it here.
        self.stop.take();
    }
}

/// See an abort mark or a takeover the moment it is written: one watch on
/// the lease, so `kubesurge abort` takes effect at the next safe point, not
/// at the next renewal.
async fn watch_marks(api: Api<Lease>, hold: LeaseHold, tx: watch::Sender<LockState>) {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let config = watcher::Config::default().fields(&format!("metadata.name={LEASE_NAME}"));
    let mut leases = watcher(api, config)
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(lease) = leases.next().await {
        let Ok(lease) = lease else { continue };
        if !still_ours(&lease, &hold, &tx) {
            return;
        }
    }
}

/// Whether `lease` is still held by this run; raises the fence and says
/// so when not, and passes on an abort mark.
fn still_ours(lease: &Lease, hold: &LeaseHold, tx: &watch::Sender<LockState>) -> bool {
    let holder = lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        .unwrap_or_default();
    if holder != hold.identity {
        hold.fence
            .raise(format!("another run took the lease over ({holder})"));
        tx.send_modify(|s| s.lost = true);
        return false;
    }
    let abort = lease
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ABORT_ANNOTATION));
    if abort && !tx.borrow().abort_requested {
        tx.send_modify(|s| s.abort_requested = true);
    }
    true
}

/// Raise the fence when the last renewal is older than the renew deadline
/// of the duration it wrote, by this process's monotonic clock.
async fn fence_at_renew_deadline(hold: LeaseHold, tx: watch::Sender<LockState>) {
    loop {
        let (renewed, duration) = {
            let tenure = hold.tenure();
            (tenure.renewed, tenure.duration)
        };
        let deadline = renewed + renew_deadline(duration);
        if Instant::now() >= deadline {
            let since = renewed.elapsed().as_secs();
            hold.fence.raise(format!(
                "the lease was last renewed {since}s ago and lives {}s: another run may take it over",
                duration.as_secs()
            ));
            tx.send_modify(|s| s.lost = true);
            return;
        }
        // Look again at the deadline, or sooner if a renewal moved it.
        tokio::time::sleep((deadline - Instant::now()).min(Duration::from_secs(1))).await;
    }
}

async fn renew_loop(hold: LeaseHold, tx: watch::Sender<LockState>) {
    let mut wait = RENEW_EVERY;
    loop {
        tokio::time::sleep(wait).await;
        if hold.fence.is_raised() {
            return;
        }
        wait = RETRY_PERIOD;
        // One attempt, bounded by the renew deadline (as client-go bounds
        // its renewals): this loop is the retry. Not by a shorter timeout:
        // an API server slow after an outage (every client reconnecting at
        // once) answers late but answers, and an attempt cut short throws
        // its new connection away only to open another.
        let attempt = {
            let tenure = hold.tenure();
            (tenure.renewed + renew_deadline(tenure.duration))
                .saturating_duration_since(Instant::now())
                .max(RETRY_PERIOD)
        };
        let mut lease = match tokio::time::timeout(attempt, hold.api.get(LEASE_NAME)).await {
            Ok(Ok(lease)) => lease,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "could not read the run lock's lease to renew it");
                continue;
            }
            Err(_) => {
                tracing::debug!("no answer reading the run lock's lease to renew it");
                continue;
            }
        };
        if !still_ours(&lease, &hold, &tx) {
            return;
        }
        // The duration stays what the lease says (a hold through an outage
        // wrote it); the write is guarded by the resourceVersion just read.
        let written = lease
            .spec
            .as_ref()
            .and_then(|s| s.lease_duration_seconds)
            .map_or(LEASE_DURATION, |s| {
                Duration::from_secs(u64::try_from(s).unwrap_or(0))
            });
        if let Some(spec) = lease.spec.as_mut() {
            spec.renew_time = Some(MicroTime(lease_clock()));
        }
        let sent = Instant::now();
        let replaced = tokio::time::timeout(
            attempt,
            hold.api.replace(LEASE_NAME, &PostParams::default(), &lease),
        )
        .await;
        let Ok(replaced) = replaced else {
            tracing::debug!("no answer renewing the run lock's lease");
            continue;
        };
        match replaced {
            Ok(_) => {
                wait = RENEW_EVERY;
                let mut tenure = hold.tenure();
                // A hold written meanwhile counts from its own write.
                if sent >= tenure.renewed {
                    tenure.renewed = sent;
                    tenure.duration = written;
                }
            }
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
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
    if holder.is_empty() {
        return Err(LockError::NotHeld);
    }
    // A lease that looks expired by this machine's clock may only be behind
    // it: the holder counts as gone only once the lease stayed unchanged for
    // its duration, as `acquire` judges it. Abandoning the run of a live
    // holder would let another run start beside it.
    if looks_expired(&lease, lease_clock()) && !renewed_within_its_duration(&api, &lease).await? {
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
    if expired(&lease, lease_clock()) {
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
    fn only_a_gone_process_of_this_boot_and_pid_namespace_is_dead() {
        let me = Holder::this_process("r");
        let mine = ProcessIdentity::of(std::process::id()).unwrap().render();
        assert!(!me.is_dead_local_process(Some(&mine)), "this process lives");

        // A process of this machine and namespace that has exited.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let recorded = ProcessIdentity::of(pid).unwrap().render();
        child.kill().unwrap();
        child.wait().unwrap();
        let gone = Holder {
            pid,
            ..Holder::this_process("r")
        };
        assert!(gone.is_dead_local_process(Some(&recorded)));
        assert!(
            !gone.is_dead_local_process(None),
            "no recorded process: wait for expiry"
        );
        // The same PID number seen from another PID namespace proves nothing.
        let elsewhere = recorded.replace("pid:[", "pid:[9");
        assert!(!gone.is_dead_local_process(Some(&elsewhere)));
        // Another host.
        let other_host = Holder {
            host: "elsewhere".into(),
            ..gone
        };
        assert!(!other_host.is_dead_local_process(Some(&recorded)));
    }
}
