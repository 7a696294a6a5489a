//! A watched, in-memory copy of a kind of object: one watch serves every
//! slot of a run, so waiting for a node to join or a pod to be Ready costs
//! no request.
//!
//! A change wakes only the waiters that asked about that object — by its
//! name or by one of the cache's index keys — not every task of the run:
//! with a hundred slots in flight, waking all of them on each of the
//! thousands of Node and Pod events of a rotation was most of the tool's
//! CPU time. The indexes (a second key, or a flag such as "not Ready") are
//! kept by the watch task before waiters are woken, so a lookup by key is
//! never a scan of the whole cluster.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, RwLock};

use futures::future::select_all;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::decoded::map_event;

/// The key an index files an object under, if any.
pub type KeyOf<K> = Arc<dyn Fn(&K) -> Option<String> + Send + Sync>;

/// What a waiter asks to be woken on: changes to the object named `.1`
/// ([`BY_NAME`]), or to objects filed under key `.1` of the index `.0`.
pub type WakeKey = (&'static str, String);

/// The pseudo-index of [`WakeKey`]s that name an object.
pub const BY_NAME: &str = "name";

/// Objects of kind `K`, kept current by one watch.
pub struct WatchCache<K: Resource + Clone + 'static>
where
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    store: Store<K>,
    /// The namespace of a namespaced cache, for lookups by name.
    namespace: Option<String>,
    kept: Arc<Kept<K>>,
    changed: watch::Receiver<u64>,
    _task: Arc<AbortOnDrop>,
}

/// What the watch task keeps beside the store.
struct Kept<K> {
    indexes: Vec<Index<K>>,
    wakers: Wakers,
}

/// How to start a [`WatchCache`]: its watch (with the type each object is
/// decoded as, see [`WatchCache::builder_decoding`]) and its indexes.
pub struct CacheBuilder<K: Resource> {
    /// The namespace watched (`None`: every namespace, or cluster-scoped).
    namespace: Option<String>,
    /// The watch, already decoded into `K`; polled once `start` is called.
    events: BoxStream<'static, watcher::Result<watcher::Event<K>>>,
    indexes: Vec<Index<K>>,
}

/// Objects filed by one key each (a Node by the instance its providerID
/// names; a Pod by its node): key → names, and name → key to refile an
/// object whose key changed.
struct Index<K> {
    name: &'static str,
    key_of: KeyOf<K>,
    state: RwLock<Filed>,
    /// The filing being rebuilt while the watch relists.
    relisting: Mutex<Filed>,
}

#[derive(Default)]
struct Filed {
    key_by_name: HashMap<String, String>,
    names_by_key: HashMap<String, BTreeSet<String>>,
}

impl Filed {
    /// File `name` under `key` (or nowhere); returns the key it was under
    /// before, when that changed.
    fn file(&mut self, name: &str, key: Option<String>) -> Option<String> {
        let previous = match &key {
            Some(key) => self.key_by_name.insert(name.to_string(), key.clone()),
            None => self.key_by_name.remove(name),
        };
        if previous == key {
            return None;
        }
        if let Some(old) = &previous
            && let Some(names) = self.names_by_key.get_mut(old)
        {
            names.remove(name);
            if names.is_empty() {
                self.names_by_key.remove(old);
            }
        }
        if let Some(key) = key {
            self.names_by_key
                .entry(key)
                .or_default()
                .insert(name.to_string());
        }
        previous
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<K: Resource> Index<K> {
    /// Refile the object of `event`; adds to `wake` the key it is filed
    /// under and, when it moved, the one it was filed under before.
    fn apply(&self, event: &watcher::Event<K>, wake: &mut Vec<WakeKey>) {
        let state = || self.state.write().unwrap_or_else(|e| e.into_inner());
        let name_of = |object: &K| object.meta().name.clone();
        match event {
            watcher::Event::Apply(object) | watcher::Event::Delete(object) => {
                let Some(name) = name_of(object) else { return };
                let key = (self.key_of)(object);
                let filed = match event {
                    watcher::Event::Apply(_) => key.clone(),
                    _ => None,
                };
                let old = state().file(&name, filed);
                for key in key.into_iter().chain(old) {
                    let key = (self.name, key);
                    if !wake.contains(&key) {
                        wake.push(key);
                    }
                }
            }
            watcher::Event::Init => *lock(&self.relisting) = Filed::default(),
            watcher::Event::InitApply(object) => {
                if let Some(name) = name_of(object) {
                    lock(&self.relisting).file(&name, (self.key_of)(object));
                }
            }
            watcher::Event::InitDone => *state() = std::mem::take(&mut *lock(&self.relisting)),
        }
    }

    fn names(&self, key: &str) -> Vec<String> {
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .names_by_key
            .get(key)
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Waiters by what they wait on. An entry lives while someone waits.
#[derive(Default)]
struct Wakers(Mutex<HashMap<WakeKey, watch::Sender<u64>>>);

impl Wakers {
    fn subscribe(&self, key: &WakeKey) -> watch::Receiver<u64> {
        lock(&self.0)
            .entry(key.clone())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Forget the entries nobody waits on any more.
    fn release(&self, keys: &[WakeKey]) {
        let mut wakers = lock(&self.0);
        for key in keys {
            if wakers.get(key).is_some_and(|tx| tx.receiver_count() == 0) {
                wakers.remove(key);
            }
        }
    }

    fn wake(&self, keys: &[WakeKey]) {
        let wakers = lock(&self.0);
        for key in keys {
            if let Some(tx) = wakers.get(key) {
                tx.send_modify(|n| *n += 1);
            }
        }
    }

    fn wake_all(&self) {
        for tx in lock(&self.0).values() {
            tx.send_modify(|n| *n += 1);
        }
    }
}

/// A waiter's subscriptions, released however its wait ends (also when
/// the waiting future is dropped).
struct Waiting<'a> {
    wakers: &'a Wakers,
    keys: &'a [WakeKey],
    receivers: Vec<watch::Receiver<u64>>,
}

impl<'a> Waiting<'a> {
    fn new(wakers: &'a Wakers, keys: &'a [WakeKey]) -> Self {
        let receivers = keys.iter().map(|key| wakers.subscribe(key)).collect();
        Waiting {
            wakers,
            keys,
            receivers,
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.receivers.clear();
        self.wakers.release(self.keys);
    }
}

impl<K: Resource> Kept<K> {
    /// Bring the indexes up to `event`, then wake whoever waits on the
    /// object it carries.
    fn apply(&self, event: &watcher::Event<K>) {
        let mut keys = Vec::new();
        for index in &self.indexes {
            index.apply(event, &mut keys);
        }
        match event {
            watcher::Event::Apply(object) | watcher::Event::Delete(object) => {
                if let Some(name) = object.meta().name.clone() {
                    keys.push((BY_NAME, name));
                }
                self.wakers.wake(&keys);
            }
            // A relist may have changed anything.
            watcher::Event::InitDone => self.wakers.wake_all(),
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
        }
    }
}

impl<K: Resource + Clone + 'static> Clone for WatchCache<K>
where
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    fn clone(&self) -> Self {
        WatchCache {
            store: self.store.clone(),
            namespace: self.namespace.clone(),
            kept: self.kept.clone(),
            changed: self.changed.clone(),
            _task: self._task.clone(),
        }
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<K> CacheBuilder<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    /// File objects under `key_of` in the index `name`, for
    /// [`WatchCache::by_key`] and keyed waits.
    pub fn index(mut self, name: &'static str, key_of: KeyOf<K>) -> Self {
        self.indexes.push(Index {
            name,
            key_of,
            state: RwLock::new(Filed::default()),
            relisting: Mutex::new(Filed::default()),
        });
        self
    }

    /// Start watching; returns once the first list is in. The watch
    /// resumes by itself after errors (API server restarts); a first list
    /// the server refuses (401, 403: the credentials may not list the
    /// kind) never passes by waiting, and fails the start naming it.
    pub async fn start(self) -> Result<WatchCache<K>, kube::Error> {
        let namespace = self.namespace;
        let (store, writer) = reflector::store();
        let (tx, changed) = watch::channel(0u64);
        let (refused_tx, refused) = oneshot::channel::<kube::Error>();
        let stream = self.events.reflect(writer);
        let kept = Arc::new(Kept {
            indexes: self.indexes,
            wakers: Wakers::default(),
        });
        let task_kept = kept.clone();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            let mut n = 0u64;
            // Until the first list is whole. (kube's watcher says `Init`
            // before it asks for the list: a refusal comes after an event.)
            let mut refused_tx = Some(refused_tx);
            while let Some(event) = stream.next().await {
                let event = match event {
                    Ok(event) => event,
                    Err(
                        watcher::Error::InitialListFailed(e) | watcher::Error::WatchStartFailed(e),
                    ) if refused_tx.is_some() && super::errors::is_refused(&e) => {
                        if let Some(refused) = refused_tx.take() {
                            let _ = refused.send(e);
                        }
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "watch interrupted; resuming");
                        continue;
                    }
                };
                if matches!(event, watcher::Event::InitDone) {
                    refused_tx = None;
                }
                task_kept.apply(&event);
                n += 1;
                let _ = tx.send(n);
            }
        });
        let cache = WatchCache {
            store,
            namespace,
            kept,
            changed,
            _task: Arc::new(AbortOnDrop(task)),
        };
        // The refusal first: the task sends it and then ends, dropping the
        // store's writer, so both are ready at once and an unbiased select
        // could answer "writer dropped" instead of the refusal.
        tokio::select! {
            biased;
            Ok(refusal) = refused => return Err(refusal),
            ready = cache.store.wait_until_ready() => {
                ready.map_err(|e| kube::Error::Service(Box::new(e)))?;
            }
        }
        Ok(cache)
    }
}

impl<K> WatchCache<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    /// A cache of `api`'s objects, watched with `config`.
    pub fn builder(api: Api<K>, config: watcher::Config) -> CacheBuilder<K> {
        Self::builder_decoding(api, config, |object| object)
    }

    /// A cache of `api`'s objects, watched with `config`, each decoded
    /// as `D` and kept as `into` makes it a `K`. With a `D` that declares
    /// only the fields the readers use, the decoder skips the rest of
    /// every object instead of allocating it and dropping it.
    pub fn builder_decoding<D>(
        api: Api<D>,
        config: watcher::Config,
        into: fn(D) -> K,
    ) -> CacheBuilder<K>
    where
        D: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
        D::DynamicType: Eq + std::hash::Hash + Clone + Default,
    {
        let namespace = api.namespace().map(str::to_string);
        let events = watcher(api, config)
            .default_backoff()
            .map_ok(move |event| map_event(event, into))
            .boxed();
        CacheBuilder {
            namespace,
            events,
            indexes: Vec::new(),
        }
    }

    /// Start watching `api` with `config`, without indexes.
    pub async fn start(api: Api<K>, config: watcher::Config) -> Result<WatchCache<K>, kube::Error> {
        Self::builder(api, config).start().await
    }

    /// The object named `name` (cluster-scoped kinds, or a namespaced
    /// cache's namespace).
    pub fn get(&self, name: &str) -> Option<Arc<K>> {
        // A keyed lookup, not a scan: slots call this on every change.
        let mut key = ObjectRef::new(name);
        key.namespace = self.namespace.clone();
        self.store.get(&key)
    }

    /// The objects the index `index` files under `key`, in name order
    /// (none for an index the cache does not have).
    pub fn by_key(&self, index: &str, key: &str) -> Vec<Arc<K>> {
        let Some(index) = self.kept.indexes.iter().find(|i| i.name == index) else {
            return Vec::new();
        };
        index
            .names(key)
            .iter()
            .filter_map(|name| self.get(name))
            // The store may be a change ahead of the index, never behind
            // what a waiter was woken for.
            .filter(|object| (index.key_of)(object).as_deref() == Some(key))
            .collect()
    }

    pub fn all(&self) -> Vec<Arc<K>> {
        self.store.state()
    }

    pub fn find(&self, predicate: impl Fn(&K) -> bool) -> Option<Arc<K>> {
        self.store.find(predicate)
    }

    pub fn filter(&self, predicate: impl Fn(&K) -> bool) -> Vec<Arc<K>> {
        self.store.state_filter(predicate)
    }

    /// Wait until `check` returns `Some`, or the deadline passes (then the
    /// last check's answer). Woken by every change to any object; prefer
    /// [`WatchCache::wait_for_keys`] where the objects are known.
    pub async fn wait_for<T>(
        &self,
        deadline: Instant,
        mut check: impl FnMut(&Self) -> Option<T>,
    ) -> Option<T> {
        let mut changed = self.changed.clone();
        loop {
            changed.borrow_and_update();
            if let Some(found) = check(self) {
                return Some(found);
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => continue,
                _ => return check(self),
            }
        }
    }

    /// [`WatchCache::wait_for`], woken only by changes to the objects
    /// `keys` name (and by relists): `check` must look at those alone.
    pub async fn wait_for_keys<T>(
        &self,
        keys: &[WakeKey],
        deadline: Instant,
        mut check: impl FnMut(&Self) -> Option<T>,
    ) -> Option<T> {
        if keys.is_empty() {
            return check(self);
        }
        let mut waiting = Waiting::new(&self.kept.wakers, keys);
        loop {
            for receiver in &mut waiting.receivers {
                receiver.borrow_and_update();
            }
            if let Some(found) = check(self) {
                return Some(found);
            }
            let any = select_all(waiting.receivers.iter_mut().map(|r| Box::pin(r.changed())));
            match tokio::time::timeout_at(deadline, any).await {
                Ok((Ok(()), _, _)) => continue,
                _ => return check(self),
            }
        }
    }

    /// Wait for the next change, or the deadline.
    pub async fn next_change(&self, deadline: Instant) {
        let mut changed = self.changed.clone();
        changed.borrow_and_update();
        let _ = tokio::time::timeout_at(deadline, changed.changed()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Node;
    use serde_json::json;
    use std::time::Duration;

    const INSTANCE: &str = "instance";

    fn node(name: &str, provider_id: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"providerID": provider_id}
        }))
        .unwrap()
    }

    fn kept() -> Kept<Node> {
        Kept {
            indexes: vec![Index {
                name: INSTANCE,
                key_of: Arc::new(|n: &Node| n.spec.as_ref()?.provider_id.clone()),
                state: RwLock::new(Filed::default()),
                relisting: Mutex::new(Filed::default()),
            }],
            wakers: Wakers::default(),
        }
    }

    fn names_of(kept: &Kept<Node>, key: &str) -> Vec<String> {
        kept.indexes[0].names(key)
    }

    #[test]
    fn the_index_follows_changes_and_relists() {
        let kept = kept();
        kept.apply(&watcher::Event::Init);
        kept.apply(&watcher::Event::InitApply(node("a", "sim://a")));
        // Not visible before the relist is complete.
        assert!(names_of(&kept, "sim://a").is_empty());
        kept.apply(&watcher::Event::InitDone);
        assert_eq!(names_of(&kept, "sim://a"), ["a"]);

        kept.apply(&watcher::Event::Apply(node("b", "sim://b")));
        assert_eq!(names_of(&kept, "sim://b"), ["b"]);
        // Two objects under one key, in name order.
        kept.apply(&watcher::Event::Apply(node("a2", "sim://b")));
        assert_eq!(names_of(&kept, "sim://b"), ["a2", "b"]);
        // A changed key refiles the object.
        kept.apply(&watcher::Event::Apply(node("a2", "sim://c")));
        assert_eq!(names_of(&kept, "sim://b"), ["b"]);
        assert_eq!(names_of(&kept, "sim://c"), ["a2"]);
        kept.apply(&watcher::Event::Delete(node("b", "sim://b")));
        assert!(names_of(&kept, "sim://b").is_empty());

        // A relist drops what is gone and keeps what is there.
        kept.apply(&watcher::Event::Init);
        kept.apply(&watcher::Event::InitApply(node("c", "sim://c")));
        kept.apply(&watcher::Event::InitDone);
        assert!(names_of(&kept, "sim://a").is_empty());
        assert_eq!(names_of(&kept, "sim://c"), ["c"]);

        // A Node without a providerID yet is not filed.
        let bare: Node = serde_json::from_value(json!({"metadata": {"name": "d"}})).unwrap();
        kept.apply(&watcher::Event::Apply(bare));
        let state = kept.indexes[0].state.read().unwrap();
        assert_eq!(state.key_by_name.len(), 1);
        assert_eq!(state.names_by_key.len(), 1);
    }

    #[test]
    fn a_change_wakes_only_who_waits_on_that_object() {
        let kept = kept();
        let by_name = (BY_NAME, "a".to_string());
        let by_instance = (INSTANCE, "sim://b".to_string());
        let other = (BY_NAME, "z".to_string());
        let mut on_name = kept.wakers.subscribe(&by_name);
        let mut on_instance = kept.wakers.subscribe(&by_instance);
        let on_other = kept.wakers.subscribe(&other);
        kept.apply(&watcher::Event::Apply(node("a", "sim://a")));
        assert!(on_name.has_changed().unwrap());
        assert!(!on_instance.has_changed().unwrap());
        assert!(!on_other.has_changed().unwrap());
        on_name.borrow_and_update();

        // Woken by the key the object is filed under, whatever its name.
        kept.apply(&watcher::Event::Apply(node("new", "sim://b")));
        assert!(on_instance.has_changed().unwrap());
        on_instance.borrow_and_update();
        // And by the key it leaves.
        kept.apply(&watcher::Event::Apply(node("new", "sim://c")));
        assert!(on_instance.has_changed().unwrap());
        assert!(!on_name.has_changed().unwrap());
        assert!(!on_other.has_changed().unwrap());

        // A relist wakes everyone.
        kept.apply(&watcher::Event::Init);
        kept.apply(&watcher::Event::InitDone);
        assert!(on_other.has_changed().unwrap());

        // Entries live while someone waits.
        drop(on_name);
        kept.wakers.release(std::slice::from_ref(&by_name));
        assert!(!lock(&kept.wakers.0).contains_key(&by_name));
        assert!(lock(&kept.wakers.0).contains_key(&by_instance));
    }

    fn builder_of(events: Vec<watcher::Result<watcher::Event<Node>>>) -> CacheBuilder<Node> {
        CacheBuilder {
            namespace: None,
            events: futures::stream::iter(events)
                .chain(futures::stream::pending())
                .boxed(),
            indexes: Vec::new(),
        }
    }

    fn refused(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("nodes is forbidden", "Forbidden")
                .with_code(code)
                .boxed(),
        )
    }

    /// kube's watcher says `Init` before it asks for the first list, so a
    /// refused list comes after an event: the start still fails naming it
    /// instead of waiting for a list the credentials may never make.
    #[tokio::test]
    async fn a_first_list_the_server_refuses_fails_the_start() {
        let start = builder_of(vec![
            Ok(watcher::Event::Init),
            Err(watcher::Error::InitialListFailed(refused(403))),
        ])
        .start();
        let outcome = tokio::time::timeout(Duration::from_secs(5), start)
            .await
            .expect("the start ends");
        let error = outcome.err().expect("the start fails");
        assert_eq!(
            crate::kube::errors::status_code(&error).map(|c| c.as_u16()),
            Some(403)
        );
    }

    /// A first list that fails for a while (the API server restarting)
    /// is waited for.
    #[tokio::test]
    async fn a_first_list_that_fails_for_a_while_is_waited_for() {
        let start = builder_of(vec![
            Ok(watcher::Event::Init),
            Err(watcher::Error::InitialListFailed(refused(503))),
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitApply(node("a", "sim://a"))),
            Ok(watcher::Event::InitDone),
        ])
        .start();
        let cache = tokio::time::timeout(Duration::from_secs(5), start)
            .await
            .expect("the start ends")
            .expect("the cache starts");
        assert!(cache.get("a").is_some());
    }
}
