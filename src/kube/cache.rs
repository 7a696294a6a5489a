//! A watched, in-memory copy of a kind of object that waiters are woken on
//! at every change: one watch serves every slot of a run, so waiting for a
//! node to join or a pod to be Ready costs no request.

use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
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
    changed: watch::Receiver<u64>,
    _task: Arc<AbortOnDrop>,
}

impl<K: Resource + Clone + 'static> Clone for WatchCache<K>
where
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    fn clone(&self) -> Self {
        WatchCache {
            store: self.store.clone(),
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
        let (store, writer) = reflector::store();
        let (tx, changed) = watch::channel(0u64);
        let stream = watcher(api, config).default_backoff().reflect(writer);
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            let mut n = 0u64;
            while let Some(event) = stream.next().await {
                if let Err(e) = event {
                    tracing::debug!(error = %e, "watch interrupted; resuming");
                    continue;
                }
                n += 1;
                let _ = tx.send(n);
            }
        });
        let cache = WatchCache {
            store,
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
        self.store.find(|o| o.meta().name.as_deref() == Some(name))
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
