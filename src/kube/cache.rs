//! A watched, in-memory copy of a kind of object that waiters are woken on
//! at every change: one watch serves every slot of a run, so waiting for a
//! node to join or a pod to be Ready costs no request.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, RwLock};

use futures::StreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Objects of kind `K`, kept current by one watch.
pub struct WatchCache<K: Resource + Clone + 'static>
where
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    store: Store<K>,
    /// The namespace of a namespaced cache, for lookups by name.
    namespace: Option<String>,
    index: Option<Arc<Index<K>>>,
    changed: watch::Receiver<u64>,
    _task: Arc<AbortOnDrop>,
}

/// A second key of the cached objects (a Node's providerID) → the name of
/// the object that has it, kept by the watch task before waiters are woken.
/// The key function of an index.
pub type KeyOf<K> = Arc<dyn Fn(&K) -> Option<String> + Send + Sync>;

struct Index<K> {
    key_of: KeyOf<K>,
    names: RwLock<HashMap<String, String>>,
    /// The map being rebuilt while the watch relists.
    relisting: Mutex<HashMap<String, String>>,
}

impl<K: Resource> Index<K> {
    fn entry(&self, object: &K) -> Option<(String, String)> {
        Some(((self.key_of)(object)?, object.meta().name.clone()?))
    }

    fn apply(&self, event: &watcher::Event<K>) {
        let names = || self.names.write().unwrap_or_else(|e| e.into_inner());
        let relisting = || self.relisting.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            watcher::Event::Apply(object) => {
                if let Some((key, name)) = self.entry(object) {
                    names().insert(key, name);
                }
            }
            watcher::Event::Delete(object) => {
                if let Some((key, name)) = self.entry(object) {
                    let mut names = names();
                    if names.get(&key) == Some(&name) {
                        names.remove(&key);
                    }
                }
            }
            watcher::Event::Init => relisting().clear(),
            watcher::Event::InitApply(object) => {
                if let Some((key, name)) = self.entry(object) {
                    relisting().insert(key, name);
                }
            }
            watcher::Event::InitDone => *names() = std::mem::take(&mut *relisting()),
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
            index: self.index.clone(),
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

impl<K> WatchCache<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    /// Start watching `api` with `config`; returns once the first list is
    /// in. The watch resumes by itself after errors (API server restarts).
    pub async fn start(api: Api<K>, config: watcher::Config) -> Result<WatchCache<K>, kube::Error> {
        Self::start_with(api, config, None).await
    }

    /// [`WatchCache::start`] with a second key, looked up by
    /// [`WatchCache::get_by_key`] without a scan.
    pub async fn start_indexed(
        api: Api<K>,
        config: watcher::Config,
        key_of: KeyOf<K>,
    ) -> Result<WatchCache<K>, kube::Error> {
        let index = Index {
            key_of,
            names: RwLock::new(HashMap::new()),
            relisting: Mutex::new(HashMap::new()),
        };
        Self::start_with(api, config, Some(Arc::new(index))).await
    }

    async fn start_with(
        api: Api<K>,
        config: watcher::Config,
        index: Option<Arc<Index<K>>>,
    ) -> Result<WatchCache<K>, kube::Error> {
        let namespace = api.namespace().map(str::to_string);
        let (store, writer) = reflector::store();
        let (tx, changed) = watch::channel(0u64);
        let stream = watcher(api, config).default_backoff().reflect(writer);
        let task_index = index.clone();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            let mut n = 0u64;
            while let Some(event) = stream.next().await {
                let event = match event {
                    Ok(event) => event,
                    Err(e) => {
                        tracing::debug!(error = %e, "watch interrupted; resuming");
                        continue;
                    }
                };
                if let Some(index) = &task_index {
                    index.apply(&event);
                }
                n += 1;
                let _ = tx.send(n);
            }
        });
        let cache = WatchCache {
            store,
            namespace,
            index,
            changed,
            _task: Arc::new(AbortOnDrop(task)),
        };
        cache
            .store
            .wait_until_ready()
            .await
            .map_err(|e| kube::Error::Service(Box::new(e)))?;
        Ok(cache)
    }

    /// The object named `name` (cluster-scoped kinds, or a namespaced
    /// cache's namespace).
    pub fn get(&self, name: &str) -> Option<Arc<K>> {
        // A keyed lookup, not a scan: slots call this on every change.
        let mut key = ObjectRef::new(name);
        key.namespace = self.namespace.clone();
        self.store.get(&key)
    }

    /// The object whose second key (see [`WatchCache::start_indexed`]) is
    /// `key`; always `None` for a cache started without one.
    pub fn get_by_key(&self, key: &str) -> Option<Arc<K>> {
        let index = self.index.as_ref()?;
        let name = index
            .names
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()?;
        self.get(&name)
            .filter(|object| (index.key_of)(object).as_deref() == Some(key))
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
    /// last check's answer). Woken by the watch, never polling.
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

    fn node(name: &str, provider_id: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"providerID": provider_id}
        }))
        .unwrap()
    }

    fn index() -> Index<Node> {
        Index {
            key_of: Arc::new(|n: &Node| n.spec.as_ref()?.provider_id.clone()),
            names: RwLock::new(HashMap::new()),
            relisting: Mutex::new(HashMap::new()),
        }
    }

    fn name_of(index: &Index<Node>, key: &str) -> Option<String> {
        index.names.read().unwrap().get(key).cloned()
    }

    #[test]
    fn the_index_follows_changes_and_relists() {
        let index = index();
        index.apply(&watcher::Event::Init);
        index.apply(&watcher::Event::InitApply(node("a", "sim://a")));
        // Not visible before the relist is complete.
        assert_eq!(name_of(&index, "sim://a"), None);
        index.apply(&watcher::Event::InitDone);
        assert_eq!(name_of(&index, "sim://a").as_deref(), Some("a"));

        index.apply(&watcher::Event::Apply(node("b", "sim://b")));
        assert_eq!(name_of(&index, "sim://b").as_deref(), Some("b"));
        index.apply(&watcher::Event::Delete(node("b", "sim://b")));
        assert_eq!(name_of(&index, "sim://b"), None);

        // A relist drops what is gone and keeps what is there.
        index.apply(&watcher::Event::Init);
        index.apply(&watcher::Event::InitApply(node("c", "sim://c")));
        index.apply(&watcher::Event::InitDone);
        assert_eq!(name_of(&index, "sim://a"), None);
        assert_eq!(name_of(&index, "sim://c").as_deref(), Some("c"));

        // A Node without a providerID yet is not indexed.
        let bare: Node = serde_json::from_value(json!({"metadata": {"name": "d"}})).unwrap();
        index.apply(&watcher::Event::Apply(bare));
        assert_eq!(index.names.read().unwrap().len(), 1);
    }
}
