//! What informers are to real controllers: a consistent initial list plus
//! every later change, in store order, never lagging.
//!
//! A feed registers a store observer that forwards matching changes into an
//! unbounded channel, then lists the resources. Changes already contained in
//! the list (resourceVersion at or below the list's revision) are skipped,
//! so nothing is missed or seen twice. Because observers run inside the
//! store's write, a controller's own write is already queued in its feed
//! when the write returns: draining the feed before each reconcile gives a
//! view that includes everything the controller itself did.
//!
//! An observer rather than `Store::subscribe` is used because a broadcast
//! receiver that falls behind loses events (and would need a full relist),
//! which happens at 20000 pods when a controller is busy.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::resources::Resource;
use crate::store::{EventType, Store};

/// `(namespace, name)`; the namespace is `""` for cluster-scoped objects.
pub(crate) type Key = (String, String);

/// Which objects of the watched resources a feed forwards.
pub(crate) type Interest = dyn Fn(&'static Resource, &Value) -> bool + Send + Sync;

/// One change of a watched object.
pub(crate) struct Change {
    pub rv: u64,
    pub event_type: EventType,
    pub resource: &'static Resource,
    pub namespace: String,
    pub name: String,
    /// The object after the change (for DELETED: its last state).
    pub object: Arc<Value>,
    /// The object before the change (absent for ADDED and listed objects).
    pub previous: Option<Arc<Value>>,
}

impl Change {
    pub fn key(&self) -> Key {
        (self.namespace.clone(), self.name.clone())
    }

    pub fn is(&self, resource: &Resource) -> bool {
        std::ptr::eq(self.resource, resource)
    }

    /// The object as it is now, or `None` when it was deleted.
    pub fn current(&self) -> Option<&Arc<Value>> {
        match self.event_type {
            EventType::Deleted => None,
            _ => Some(&self.object),
        }
    }
}

/// The changes of some resources, after an initial list.
pub(crate) struct Feed {
    rx: mpsc::UnboundedReceiver<Change>,
    /// Per resource, the revision its initial list was read at.
    listed_at: Vec<(&'static Resource, u64)>,
}

impl Feed {
    /// Watch every object of `resources`.
    pub fn all(store: &Store, resources: &[&'static Resource]) -> (Feed, Vec<Change>) {
        Feed::start(store, resources, Arc::new(|_, _| true))
    }

    /// Watch the objects of `resources` that `interest` accepts (before or
    /// after a change). Returns the feed and the current objects, as ADDED
    /// changes.
    pub fn start(
        store: &Store,
        resources: &[&'static Resource],
        interest: Arc<Interest>,
    ) -> (Feed, Vec<Change>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let watched: Vec<&'static Resource> = resources.to_vec();
        let wanted = interest.clone();
        store.observe(move |e| {
            if tx.is_closed() || !watched.iter().any(|r| std::ptr::eq(*r, e.resource)) {
                return;
            }
            let relevant = wanted(e.resource, &e.object)
                || e.previous.as_ref().is_some_and(|p| wanted(e.resource, p));
            if relevant {
                // A closed channel means the controller stopped.
                let _ = tx.send(Change {
                    rv: e.rv,
                    event_type: e.event_type,
                    resource: e.resource,
                    namespace: e.namespace.clone(),
                    name: e.name.clone(),
                    object: e.object.clone(),
                    previous: e.previous.clone(),
                });
            }
        });
        let mut initial = Vec::new();
        let mut listed_at = Vec::new();
        for resource in resources {
            let (items, rev) = store.list(resource, None, |o| interest(resource, o));
            listed_at.push((*resource, rev));
            for object in items {
                initial.push(Change {
                    rv: rev,
                    event_type: EventType::Added,
                    resource,
                    namespace: str_at(&object, "/metadata/namespace").to_string(),
                    name: str_at(&object, "/metadata/name").to_string(),
                    object,
                    previous: None,
                });
            }
        }
        (Feed { rx, listed_at }, initial)
    }

    fn fresh(&self, change: &Change) -> bool {
        self.listed_at
            .iter()
            .find(|(r, _)| std::ptr::eq(*r, change.resource))
            .is_none_or(|(_, rev)| change.rv > *rev)
    }

    /// The next change; `None` once the store is gone.
    pub async fn recv(&mut self) -> Option<Change> {
        loop {
            let change = self.rx.recv().await?;
            if self.fresh(&change) {
                return Some(change);
            }
        }
    }

    /// The next change already queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Change> {
        while let Ok(change) = self.rx.try_recv() {
            if self.fresh(&change) {
                return Some(change);
            }
        }
        None
    }
}

/// A controller driven by a feed: it folds changes into its caches, then
/// reconciles what they made dirty.
pub(crate) trait Reconciler: Send + 'static {
    fn apply(&mut self, change: Change);
    /// Act on what is dirty until `slice` is spent; return when to be
    /// woken up without a change: at once if work is left, later for a
    /// timer, never (`None`) if idle.
    fn reconcile(&mut self, slice: &Slice) -> Option<Instant>;
}

/// How long one reconcile pass may hold a runtime thread before it yields:
/// every controller and all kubelets share the runtime's threads, and a
/// pass that creates thousands of pods at once would otherwise delay
/// heartbeats long enough for nodes to look dead.
pub(crate) const SLICE: Duration = Duration::from_millis(5);

/// The time one reconcile pass may take.
pub(crate) struct Slice {
    pub now: Instant,
    until: Instant,
}

impl Slice {
    pub fn new(now: Instant) -> Slice {
        Slice {
            now,
            until: now + SLICE,
        }
    }

    pub fn spent(&self) -> bool {
        Instant::now() >= self.until
    }
}

/// Keys to work on, each at most once, first come first served.
pub(crate) struct WorkQueue<K> {
    order: std::collections::VecDeque<K>,
    queued: std::collections::HashSet<K>,
}

impl<K: Clone + Eq + std::hash::Hash> WorkQueue<K> {
    pub fn new() -> Self {
        WorkQueue {
            order: std::collections::VecDeque::new(),
            queued: std::collections::HashSet::new(),
        }
    }

    pub fn push(&mut self, key: K) {
        if self.queued.insert(key.clone()) {
            self.order.push_back(key);
        }
    }

    pub fn pop(&mut self) -> Option<K> {
        let key = self.order.pop_front()?;
        self.queued.remove(&key);
        Some(key)
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// Sync `controller`'s queued keys (its `queue`) in order until none is
/// left or `slice` is spent; with keys left, when to come back (at once,
/// in the next slice).
pub(crate) fn work_off<C, K: Clone + Eq + std::hash::Hash>(
    controller: &mut C,
    queue: fn(&mut C) -> &mut WorkQueue<K>,
    slice: &Slice,
    mut sync: impl FnMut(&mut C, &K),
) -> Option<Instant> {
    while let Some(key) = queue(controller).pop() {
        sync(controller, &key);
        if slice.spent() {
            return (!queue(controller).is_empty()).then_some(slice.now);
        }
    }
    None
}

/// Run `reconciler` until `cancel` fires: apply the initial list, then
/// repeatedly drain every queued change (all of them, so the cache always
/// includes the controller's own writes) and reconcile once per batch,
/// yielding the thread between passes.
pub(crate) async fn run<R: Reconciler>(
    mut reconciler: R,
    mut feed: Feed,
    initial: Vec<Change>,
    cancel: CancellationToken,
) {
    for change in initial {
        reconciler.apply(change);
    }
    loop {
        while let Some(change) = feed.try_recv() {
            reconciler.apply(change);
        }
        let wake = reconciler.reconcile(&Slice::new(Instant::now()));
        tokio::task::yield_now().await;
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            change = feed.recv() => match change {
                Some(change) => reconciler.apply(change),
                None => return,
            },
            _ = sleep_until(wake) => {}
        }
    }
}

/// Sleep until `at`, or forever when `None`.
pub(crate) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending::<()>().await,
    }
}

/// JSON pointer lookup without allocating: `Value::pointer` builds two
/// strings per segment to unescape `~0`/`~1`, which matters at thousands of
/// events per second. Pointers with escapes fall back to it.
pub(crate) trait At {
    fn at(&self, pointer: &str) -> Option<&Value>;
}

impl At for Value {
    fn at(&self, pointer: &str) -> Option<&Value> {
        if pointer.contains('~') {
            return self.pointer(pointer);
        }
        if pointer.is_empty() {
            return Some(self);
        }
        let mut current = self;
        for segment in pointer.strip_prefix('/')?.split('/') {
            current = match current {
                Value::Object(m) => m.get(segment)?,
                Value::Array(a) => a.get(segment.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(current)
    }
}

/// The earlier of two optional deadlines.
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// The string at a JSON pointer, or `""`.
pub(crate) fn str_at<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object.at(pointer).and_then(Value::as_str).unwrap_or("")
}

/// `d` scaled by `num / den`, saturating.
pub(crate) fn scale(d: Duration, num: u64, den: u64) -> Duration {
    if den == 0 {
        return d;
    }
    let nanos = d.as_nanos().saturating_mul(u128::from(num)) / u128::from(den);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn at_agrees_with_json_pointer() {
        let v = json!({"a": {"b": [{"c": 1}, {"d/e": 2, "f~g": 3}]}, "": 4});
        for p in [
            "",
            "/a",
            "/a/b/0/c",
            "/a/b/1/d~1e",
            "/a/b/1/f~0g",
            "/a/b/2",
            "/a/x",
            "/a/b/x",
            "/",
            "a",
        ] {
            assert_eq!(v.at(p), v.pointer(p), "pointer {p:?}");
        }
    }
}
