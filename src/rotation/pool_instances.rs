//! One pool's instances as its provider reports them, read for every slot
//! of the pool at once: one batched describe ([`CloudProvider::get_many`])
//! answers every slot that waits for its old instance to terminate and
//! every slot that checks its old instance is still there, instead of one
//! call per slot and per look.
//!
//! Slots state what they need (an answer about an instance, newer than what
//! they knew, by some time); one driver per pool ([`PoolInstances::drive`])
//! describes every instance asked about or watched when the first of those
//! times comes, and publishes the answer to all. How often a terminating
//! instance is looked at follows how long the pool's terminations take
//! ([`next_look`]), so a cloud that takes 30 s per termination is not asked
//! ten times as often as one that takes 3 s.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kubesurge_provider::{CloudProvider, DeleteStatus, Instance, InstanceId, ProviderError};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::instances::{DeleteError, provider_retry};

/// The shortest pause between two looks at a terminating instance.
const MIN_STEP: Duration = Duration::from_millis(100);
/// The longest: EC2 terminations take tens of seconds.
const MAX_STEP: Duration = Duration::from_secs(5);
/// Terminations remembered to estimate the next one's duration.
const REMEMBERED: usize = 8;
/// How old an answer a slot's check of its old instance accepts (when it
/// is also newer than the slot's previous answer): another slot's describe
/// of a moment ago serves it as well as its own.
pub const CHECK_STALENESS: Duration = Duration::from_secs(10);

/// When a terminating instance is next looked at: not before it could
/// plausibly be gone (four fifths of the pool's typical termination, once
/// one was seen), then at a pace proportional to how long it has been
/// terminating (a tenth of that, within [`MIN_STEP`]..[`MAX_STEP`]), so
/// that looking costs the same number of calls whether terminations take
/// 3 s or 30 s, and the wait overshoots by about a tenth at most.
pub fn next_look(
    requested: Instant,
    last_look: Option<Instant>,
    typical: Option<Duration>,
) -> Instant {
    let first = requested + typical.map_or(MIN_STEP, |t| t.mul_f64(0.8).max(MIN_STEP));
    match last_look.filter(|l| *l >= requested) {
        None => first,
        Some(last) => {
            let step = ((last - requested) / 10).clamp(MIN_STEP, MAX_STEP);
            first.max(last + step)
        }
    }
}

/// Whether an answer taken at `taken` may serve a check made `now` by a
/// slot whose previous answer was taken at `known`: newer than what the
/// slot knew, and not older than [`CHECK_STALENESS`].
pub fn serves_check(taken: Instant, known: Option<Instant>, now: Instant) -> bool {
    known.is_none_or(|known| taken > known)
        && now.saturating_duration_since(taken) <= CHECK_STALENESS
}

/// One batched describe's answer.
#[derive(Debug)]
pub struct Snapshot {
    /// When the describe was sent: the answer is at least this fresh.
    pub taken: Instant,
    asked: BTreeSet<InstanceId>,
    answer: Result<BTreeMap<InstanceId, Instance>, ProviderError>,
}

impl Snapshot {
    fn empty() -> Snapshot {
        Snapshot {
            // It asked about nothing: it serves no demand.
            taken: Instant::now(),
            asked: BTreeSet::new(),
            answer: Ok(BTreeMap::new()),
        }
    }

    /// The instance `id` as this answer saw it: `None` when `id` was not
    /// asked; `Some(Ok(None))` when it is terminated or unknown.
    pub fn instance(&self, id: &InstanceId) -> Option<Result<Option<&Instance>, ProviderError>> {
        if !self.asked.contains(id) {
            return None;
        }
        Some(match &self.answer {
            Ok(found) => Ok(found.get(id)),
            Err(e) => Err(e.clone()),
        })
    }
}

/// A slot's wish for an answer about `id` by `due`.
struct Demand {
    id: InstanceId,
    /// `None` once a describe served it, until its slot asks again.
    due: Option<Instant>,
}

#[derive(Default)]
struct Inner {
    /// Ids every describe includes, with how many slots watch each: old
    /// instances of slots in flight and about to start, so that their
    /// checks find a recent answer without a call of their own.
    watched: BTreeMap<InstanceId, usize>,
    demands: BTreeMap<u64, Demand>,
    next_key: u64,
    /// How long the pool's latest terminations took, newest last.
    terminations: VecDeque<Duration>,
}

impl Inner {
    /// The pool's typical termination: the shortest remembered one, so that
    /// an estimate that came out long (a look that came late) does not keep
    /// the next looks late.
    fn typical_termination(&self) -> Option<Duration> {
        self.terminations.iter().min().copied()
    }
}

/// The instances of one pool, described in batches (see the module).
pub struct PoolInstances {
    provider: Arc<dyn CloudProvider>,
    inner: Mutex<Inner>,
    wake: Notify,
    latest: watch::Sender<Arc<Snapshot>>,
}

/// Removes its demand when the slot stops waiting, also when the wait is
/// dropped.
struct DemandGuard<'a> {
    owner: &'a PoolInstances,
    key: u64,
}

impl Drop for DemandGuard<'_> {
    fn drop(&mut self) {
        self.owner.lock().demands.remove(&self.key);
    }
}

impl PoolInstances {
    pub fn new(provider: Arc<dyn CloudProvider>) -> PoolInstances {
        PoolInstances {
            provider,
            inner: Mutex::new(Inner::default()),
            wake: Notify::new(),
            latest: watch::Sender::new(Arc::new(Snapshot::empty())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Include `id` in every describe until as many [`Self::unwatch`].
    pub fn watch(&self, id: &InstanceId) {
        *self.lock().watched.entry(id.clone()).or_default() += 1;
    }

    pub fn unwatch(&self, id: &InstanceId) {
        let mut inner = self.lock();
        if let Some(count) = inner.watched.get_mut(id) {
            *count -= 1;
            if *count == 0 {
                inner.watched.remove(id);
            }
        }
    }

    /// The pool's describes, for as long as the pool's slots run: sleeps
    /// until the earliest demand is due, then describes every demanded and
    /// watched instance in one batched call and publishes the answer.
    /// Never returns; drop it when the pool's last slot is done.
    pub async fn drive(&self) -> std::convert::Infallible {
        loop {
            let notified = self.wake.notified();
            let earliest = self.lock().demands.values().filter_map(|d| d.due).min();
            match earliest {
                None => {
                    notified.await;
                    continue;
                }
                Some(due) if due > Instant::now() => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(due) => {}
                    }
                    continue;
                }
                Some(_) => {}
            }
            let asked: BTreeSet<InstanceId> = {
                let inner = self.lock();
                inner
                    .watched
                    .keys()
                    .chain(inner.demands.values().map(|d| &d.id))
                    .cloned()
                    .collect()
            };
            let taken = Instant::now();
            let ids: Vec<InstanceId> = asked.iter().cloned().collect();
            let answer = provider_retry("describe", || self.provider.get_many(&ids))
                .await
                .map(|found| found.into_iter().map(|i| (i.id.clone(), i)).collect());
            {
                let mut inner = self.lock();
                for demand in inner.demands.values_mut() {
                    if demand.due.is_some_and(|due| due <= Instant::now())
                        && asked.contains(&demand.id)
                    {
                        demand.due = None;
                    }
                }
            }
            self.latest.send_replace(Arc::new(Snapshot {
                taken,
                asked,
                answer,
            }));
        }
    }

    /// The first answer about `id` that `accept` takes: the latest one if it
    /// does, else one of the describes that follow, the next one due at `due`.
    async fn answer(
        &self,
        id: &InstanceId,
        due: Instant,
        accept: impl Fn(&Snapshot) -> bool,
    ) -> Arc<Snapshot> {
        let mut latest = self.latest.subscribe();
        {
            let current = latest.borrow_and_update().clone();
            if current.asked.contains(id) && accept(&current) {
                return current;
            }
        }
        let key = {
            let mut inner = self.lock();
            let key = inner.next_key;
            inner.next_key += 1;
            inner.demands.insert(
                key,
                Demand {
                    id: id.clone(),
                    due: Some(due),
                },
            );
            key
        };
        let _guard = DemandGuard { owner: self, key };
        self.wake.notify_one();
        loop {
            if latest.changed().await.is_err() {
                // The sender lives as long as `self`: not reached.
                return latest.borrow().clone();
            }
            let snapshot = latest.borrow_and_update().clone();
            if snapshot.asked.contains(id) && accept(&snapshot) {
                return snapshot;
            }
            // Marked served by a describe that does not answer it (one sent
            // before the demand): keep it due.
            let mut inner = self.lock();
            if let Some(demand) = inner.demands.get_mut(&key)
                && demand.due.is_none()
            {
                demand.due = Some(due);
                drop(inner);
                self.wake.notify_one();
            }
        }
    }

    /// The old instance `id` as a describe newer than `known` (the slot's
    /// previous answer) and at most [`CHECK_STALENESS`] old saw it, with
    /// when that describe was made. `None`: terminated or unknown.
    pub async fn check(
        &self,
        id: &InstanceId,
        known: Option<Instant>,
    ) -> Result<(Option<Instance>, Instant), ProviderError> {
        let asked_at = Instant::now();
        let snapshot = self
            .answer(id, asked_at, |s| {
                // A describe sent since the check was asked is fresh by
                // definition.
                s.taken >= asked_at || serves_check(s.taken, known, Instant::now())
            })
            .await;
        let found = snapshot.instance(id).unwrap_or(Ok(None))?.cloned();
        Ok((found, snapshot.taken))
    }

    /// Terminate `id`: ask once, then watch the pool's describes until the
    /// instance is gone, asking again only when a describe shows it not
    /// terminating (a request the cloud lost, or made before a crash that
    /// never reached it). Already gone is success.
    pub async fn terminate(&self, id: &InstanceId, timeout: Duration) -> Result<(), DeleteError> {
        let requested = Instant::now();
        let deadline = requested + timeout;
        if provider_retry("terminate", || self.provider.delete(id)).await? == DeleteStatus::Gone {
            return Ok(());
        }
        self.watch(id);
        let outcome = self.await_gone(id, requested, deadline).await;
        self.unwatch(id);
        outcome.map_err(|e| match e {
            WaitError::Provider(p) => DeleteError::Provider(p),
            WaitError::Timeout => DeleteError::Timeout {
                id: id.clone(),
                after: timeout,
            },
        })
    }

    async fn await_gone(
        &self,
        id: &InstanceId,
        requested: Instant,
        deadline: Instant,
    ) -> Result<(), WaitError> {
        let mut last_look: Option<Instant> = None;
        loop {
            let typical = self.lock().typical_termination();
            let due = next_look(requested, last_look, typical).min(deadline);
            let after = last_look;
            let answer = tokio::time::timeout_at(
                deadline,
                self.answer(id, due, |s| {
                    after.is_none_or(|a| s.taken > a) && s.taken > requested
                }),
            )
            .await;
            let Ok(snapshot) = answer else {
                return Err(WaitError::Timeout);
            };
            last_look = Some(snapshot.taken);
            match snapshot.instance(id).unwrap_or(Ok(None)) {
                Err(e) => return Err(WaitError::Provider(e)),
                Ok(None) => {
                    let took = snapshot.taken.saturating_duration_since(requested);
                    let mut inner = self.lock();
                    inner.terminations.push_back(took);
                    if inner.terminations.len() > REMEMBERED {
                        inner.terminations.pop_front();
                    }
                    return Ok(());
                }
                Ok(Some(instance)) if !instance.state.is_going_away() => {
                    tracing::info!(instance = %id, state = ?instance.state, "not terminating; asking again");
                    if provider_retry("terminate", || self.provider.delete(id))
                        .await
                        .map_err(WaitError::Provider)?
                        == DeleteStatus::Gone
                    {
                        return Ok(());
                    }
                }
                Ok(Some(_)) => {}
            }
            if Instant::now() >= deadline {
                return Err(WaitError::Timeout);
            }
        }
    }
}

enum WaitError {
    Provider(ProviderError),
    Timeout,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use kubesurge_provider::{Image, InstanceState, LaunchRequest, NodeRef, PoolRef};

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn looks_follow_the_pools_terminations() {
        let t0 = Instant::now();
        // Nothing known yet: look soon, then at a tenth of the age.
        assert_eq!(next_look(t0, None, None), t0 + MIN_STEP);
        assert_eq!(
            next_look(t0, Some(t0 + 2 * SECOND), None),
            t0 + 2 * SECOND + Duration::from_millis(200)
        );
        // Terminations take 3 s: the first look at 2.4 s, the next a
        // tenth of the age later.
        let typical = Some(3 * SECOND);
        assert_eq!(
            next_look(t0, None, typical),
            t0 + Duration::from_millis(2400)
        );
        assert_eq!(
            next_look(t0, Some(t0 + Duration::from_millis(2400)), typical),
            t0 + Duration::from_millis(2640)
        );
        // Another slot's describe moments after the request does not
        // bring the first look forward.
        assert_eq!(
            next_look(t0, Some(t0 + Duration::from_millis(10)), typical),
            t0 + Duration::from_millis(2400)
        );
        // 30 s terminations: as many looks, ten times apart, capped.
        assert_eq!(next_look(t0, None, Some(30 * SECOND)), t0 + 24 * SECOND);
        assert_eq!(
            next_look(t0, Some(t0 + 24 * SECOND), Some(30 * SECOND)),
            t0 + 24 * SECOND + Duration::from_millis(2400)
        );
        assert_eq!(
            next_look(t0, Some(t0 + 300 * SECOND), Some(30 * SECOND)),
            t0 + 300 * SECOND + MAX_STEP
        );
    }

    #[test]
    fn a_check_takes_a_newer_recent_answer() {
        let t0 = Instant::now();
        let now = t0 + 5 * SECOND;
        assert!(serves_check(t0, None, now));
        assert!(serves_check(t0 + SECOND, Some(t0), now));
        // Not newer than what the slot knew: it learns nothing.
        assert!(!serves_check(t0, Some(t0), now));
        // Too old.
        assert!(!serves_check(t0, None, now + CHECK_STALENESS));
    }

    /// A cloud whose instances take `takes` to terminate once asked;
    /// `lost` names instances whose first terminate request is lost.
    struct SlowCloud {
        takes: Duration,
        asked: Mutex<BTreeMap<InstanceId, Instant>>,
        lost: Mutex<BTreeSet<InstanceId>>,
        deletes: AtomicUsize,
        describes: AtomicUsize,
    }

    impl SlowCloud {
        fn new(takes: Duration) -> SlowCloud {
            SlowCloud {
                takes,
                asked: Mutex::default(),
                lost: Mutex::default(),
                deletes: AtomicUsize::new(0),
                describes: AtomicUsize::new(0),
            }
        }

        fn instance(&self, id: &InstanceId) -> Option<Instance> {
            let state = match self.asked.lock().unwrap().get(id) {
                Some(at) if at.elapsed() >= self.takes => return None,
                Some(_) => InstanceState::ShuttingDown,
                None => InstanceState::Running,
            };
            Some(Instance {
                id: id.clone(),
                state,
                zone: "zone-a".into(),
                subnet: None,
                image: None,
                private_ip: None,
                provider_id: format!("sim:///zone-a/{id}"),
                launched_at: None,
                tags: BTreeMap::new(),
            })
        }
    }

    #[async_trait]
    impl CloudProvider for SlowCloud {
        fn name(&self) -> &str {
            "slow"
        }
        async fn list(&self, _: &PoolRef) -> Result<Vec<Instance>, ProviderError> {
            Ok(Vec::new())
        }
        async fn launch(&self, _: &LaunchRequest) -> Result<Instance, ProviderError> {
            Err(ProviderError::Other {
                message: "no launches".into(),
            })
        }
        async fn get(&self, id: &InstanceId) -> Result<Option<Instance>, ProviderError> {
            Ok(self.instance(id))
        }
        async fn get_many(&self, ids: &[InstanceId]) -> Result<Vec<Instance>, ProviderError> {
            self.describes.fetch_add(1, Ordering::SeqCst);
            Ok(ids.iter().filter_map(|id| self.instance(id)).collect())
        }
        async fn delete(&self, id: &InstanceId) -> Result<DeleteStatus, ProviderError> {
            self.deletes.fetch_add(1, Ordering::SeqCst);
            if self.lost.lock().unwrap().remove(id) {
                return Ok(DeleteStatus::InProgress);
            }
            self.asked
                .lock()
                .unwrap()
                .entry(id.clone())
                .or_insert_with(Instant::now);
            Ok(match self.instance(id) {
                None => DeleteStatus::Gone,
                Some(_) => DeleteStatus::InProgress,
            })
        }
        async fn instance_for(&self, _: &NodeRef) -> Result<Option<Instance>, ProviderError> {
            Ok(None)
        }
        async fn resolve_image(&self, _: &PoolRef, _: &str) -> Result<Image, ProviderError> {
            Err(ProviderError::NotFound {
                what: "image".into(),
            })
        }
    }

    /// Terminate `ids` at once through `pool`, its driver beside them.
    async fn terminate_all(pool: &PoolInstances, ids: &[InstanceId]) {
        let all = futures::future::join_all(ids.iter().map(|id| pool.terminate(id, 60 * SECOND)));
        tokio::select! {
            results = all => {
                for result in results {
                    result.unwrap();
                }
            }
            never = pool.drive() => match never {},
        }
    }

    fn ids(prefix: &str, n: usize) -> Vec<InstanceId> {
        (0..n)
            .map(|i| InstanceId(format!("i-{prefix}{i}")))
            .collect()
    }

    #[tokio::test]
    async fn a_wave_of_terminations_is_watched_with_a_few_batched_describes() {
        let takes = Duration::from_millis(300);
        let cloud = Arc::new(SlowCloud::new(takes));
        let pool = PoolInstances::new(cloud.clone());
        terminate_all(&pool, &ids("a", 30)).await;
        // One terminate per instance, never repeated; looks at 0.1, 0.2,
        // 0.3 s… shared by all thirty.
        assert_eq!(cloud.deletes.load(Ordering::SeqCst), 30);
        let first_wave = cloud.describes.load(Ordering::SeqCst);
        assert!(first_wave <= 8, "{first_wave} describes for the first wave");

        // The pool has seen how long its terminations take: the next wave
        // is first looked at around then.
        terminate_all(&pool, &ids("b", 30)).await;
        let second_wave = cloud.describes.load(Ordering::SeqCst) - first_wave;
        assert!(
            second_wave <= 4,
            "{second_wave} describes for the second wave"
        );
        assert_eq!(cloud.deletes.load(Ordering::SeqCst), 60);
    }

    #[tokio::test]
    async fn an_instance_seen_not_terminating_is_asked_again() {
        let cloud = Arc::new(SlowCloud::new(Duration::from_millis(200)));
        let lost = InstanceId("i-lost".into());
        cloud.lost.lock().unwrap().insert(lost.clone());
        let pool = PoolInstances::new(cloud.clone());
        terminate_all(&pool, std::slice::from_ref(&lost)).await;
        assert_eq!(cloud.deletes.load(Ordering::SeqCst), 2);
        assert!(cloud.instance(&lost).is_none());
    }

    #[tokio::test]
    async fn checks_share_the_describes_of_watched_instances() {
        let cloud = Arc::new(SlowCloud::new(SECOND));
        let pool = PoolInstances::new(cloud.clone());
        let watched = ids("w", 5);
        for id in &watched {
            pool.watch(id);
        }
        let checks = async {
            let mut seen = Vec::new();
            for id in &watched {
                let (found, taken) = pool.check(id, None).await.unwrap();
                assert_eq!(found.map(|i| i.state), Some(InstanceState::Running));
                seen.push(taken);
            }
            // A later check of the first wants a newer answer than its own.
            tokio::time::sleep(Duration::from_millis(10)).await;
            let (_, again) = pool.check(&watched[0], Some(seen[0])).await.unwrap();
            assert!(again > seen[0]);
        };
        tokio::select! {
            () = checks => {}
            never = pool.drive() => match never {},
        }
        // One describe answered the five first checks, one the last.
        assert_eq!(cloud.describes.load(Ordering::SeqCst), 2);
    }
}
