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
    /// Act on everything dirty; return when to be woken up without a
    /// change (a timer), if ever.
    fn reconcile(&mut self, now: Instant) -> Option<Instant>;
}

/// Run `reconciler` until `cancel` fires: apply the initial list, then
/// repeatedly drain every queued change and reconcile once per batch.
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
        let wake = reconciler.reconcile(Instant::now());
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

/// The string at a JSON pointer, or `""`.
pub(crate) fn str_at<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `d` scaled by `num / den`, saturating.
pub(crate) fn scale(d: Duration, num: u64, den: u64) -> Duration {
    if den == 0 {
        return d;
    }
    let nanos = d.as_nanos().saturating_mul(u128::from(num)) / u128::from(den);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}
