//! The emulator's storage: every object as JSON, one global resourceVersion
//! counter, an event log for watches, and synchronous observers.
//!
//! This is the equivalent of etcd plus the registry's generic store: it
//! assigns uid, resourceVersion, generation and creationTimestamp, enforces
//! preconditions, and records every change as a watch event. It knows
//! nothing of HTTP, selectors or controllers.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use jiff::Timestamp;
use serde_json::{Map, Value, json};
use thiserror::Error;
use tokio::sync::broadcast;

use crate::resources::Resource;

/// How many events the log keeps for watches that resume from an older
/// resourceVersion. Older starting points get 410 Expired, as after an etcd
/// compaction.
pub const DEFAULT_EVENT_LOG: usize = 100_000;
/// Events buffered per live watch before it is considered too slow and cut
/// off (the HTTP layer then sends 410, and kube-rs relists).
pub const WATCH_BUFFER: usize = 65_536;

/// The type of a watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change. `object` is the object after the change (for DELETED: its
/// last state, at the delete's resourceVersion); `previous` the object
/// before (absent for ADDED). Watches with selectors need both to send
/// DELETED when an object leaves the selection.
#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub event_type: EventType,
    pub resource: &'static Resource,
    pub namespace: String,
    pub name: String,
    pub object: Arc<Value>,
    pub previous: Option<Arc<Value>>,
    /// The authenticated user whose API request made the change, as an
    /// audit event's `user.username` names it
    /// (`k8s.io/apiserver/pkg/apis/audit/types.go`, `Event.User`); `None`
    /// for changes the world's own controllers make in process.
    pub writer: Option<Arc<str>>,
}

tokio::task_local! {
    /// The user of the API request being served (see [`as_writer`]).
    static WRITER: Arc<str>;
}

/// Run `request` with every store change it makes attributed to `user`.
pub async fn as_writer<F: std::future::Future>(user: &str, request: F) -> F::Output {
    WRITER.scope(Arc::from(user), request).await
}

/// Why a store operation failed. The HTTP layer maps each to its Status.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    #[error("{resource} {name:?} not found")]
    NotFound { resource: String, name: String },
    #[error("{resource} {name:?} already exists")]
    AlreadyExists { resource: String, name: String },
    /// Stale resourceVersion or a failed uid/resourceVersion precondition.
    #[error("Operation cannot be fulfilled on {resource} {name:?}: {message}")]
    Conflict {
        resource: String,
        name: String,
        message: String,
    },
    #[error("{resource} {name:?} is invalid: {message}")]
    Invalid {
        resource: String,
        name: String,
        message: String,
    },
    /// The resourceVersion asked for is older than the event log keeps.
    #[error("too old resource version: {requested} ({oldest})")]
    Expired { requested: u64, oldest: u64 },
}

/// The conflict message real servers use for a stale resourceVersion.
pub const STALE_RV_MESSAGE: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

/// Preconditions of an update or delete.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

type Observer = Arc<dyn Fn(&Event) + Send + Sync>;

/// What [`Store::watch_from`] returns: the logged events to replay, then a
/// receiver for the live ones.
pub type WatchStart = (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>);
type Key = (String, String);

struct Inner {
    rv: u64,
    objects: HashMap<String, BTreeMap<Key, Arc<Value>>>,
    log: VecDeque<Arc<Event>>,
    log_capacity: usize,
    observers: Vec<Observer>,
}

/// The object store. Share it as `Arc<Store>`.
pub struct Store {
    inner: Mutex<Inner>,
    events: broadcast::Sender<Arc<Event>>,
}

impl Default for Store {
    fn default() -> Self {
        Store::with_log_capacity(DEFAULT_EVENT_LOG)
    }
}

impl Store {
    pub fn new() -> Arc<Store> {
        Arc::new(Store::default())
    }

    pub fn with_log_capacity(log_capacity: usize) -> Store {
        let (events, _) = broadcast::channel(WATCH_BUFFER);
        Store {
            inner: Mutex::new(Inner {
                rv: 1,
                objects: HashMap::new(),
                log: VecDeque::new(),
                log_capacity,
                observers: Vec::new(),
            }),
            events,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every
        // mutation is applied at once), so poisoning is not fatal.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current store revision (the resourceVersion of the last write).
    pub fn revision(&self) -> u64 {
        self.lock().rv
    }

    /// The oldest resourceVersion a watch can resume from.
    pub fn oldest_watchable(&self) -> u64 {
        let inner = self.lock();
        inner.log.front().map(|e| e.rv - 1).unwrap_or(inner.rv)
    }

    /// Register a callback that sees every change, synchronously and in
    /// order, while the store is locked. It must not call the store.
    pub fn observe(&self, observer: impl Fn(&Event) + Send + Sync + 'static) {
        self.lock().observers.push(Arc::new(observer));
    }

    /// Like [`Store::observe`], but first feeds the observer a synthetic
    /// ADDED event for every existing object of `resources`, atomically with
    /// its registration: it sees the whole state and every change after it.
    pub fn observe_seeded(
        &self,
        resources: &[&'static Resource],
        observer: impl Fn(&Event) + Send + Sync + 'static,
    ) {
        let mut inner = self.lock();
        let rv = inner.rv;
        for resource in resources {
            if let Some(table) = inner.objects.get(&table(resource)) {
                for ((namespace, name), object) in table {
                    observer(&Event {
                        rv,
                        event_type: EventType::Added,
                        resource,
                        namespace: namespace.clone(),
                        name: name.clone(),
                        object: object.clone(),
                        previous: None,
                        writer: None,
                    });
                }
            }
        }
        inner.observers.push(Arc::new(observer));
    }

    /// One object.
    pub fn get(
        &self,
        resource: &'static Resource,
        namespace: &str,
        name: &str,
    ) -> Option<Arc<Value>> {
        let inner = self.lock();
        inner
            .objects
            .get(&table(resource))
            .and_then(|t| t.get(&(ns_of(resource, namespace), name.to_string())))
            .cloned()
    }

    /// Objects of a type, in one namespace (`Some`) or all (`None`), that
    /// pass `filter`, sorted by namespace then name, with the revision they
    /// were read at.
    pub fn list(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        filter: impl Fn(&Value) -> bool,
    ) -> (Vec<Arc<Value>>, u64) {
        let inner = self.lock();
        let items = match inner.objects.get(&table(resource)) {
            None => Vec::new(),
            Some(t) => match namespace {
                Some(ns) => {
                    let ns = ns_of(resource, ns);
                    t.range((ns.clone(), String::new())..)
                        .take_while(|((n, _), _)| *n == ns)
                        .map(|(_, v)| v)
                        .filter(|v| filter(v))
                        .cloned()
                        .collect()
                }
                None => t.values().filter(|v| filter(v)).cloned().collect(),
            },
        };
        (items, inner.rv)
    }

    /// Create an object. Fills in kind, apiVersion, namespace, uid,
    /// resourceVersion, generation and creationTimestamp; a `generateName`
    /// without a name gets a random suffix.
    pub fn create(
        &self,
        resource: &'static Resource,
        namespace: &str,
        object: Value,
    ) -> Result<Arc<Value>, StoreError> {
        self.create_with_uid(resource, namespace, object, new_uid())
    }

    /// [`Store::create`] with the uid the API server chose before storing:
    /// a Job's generated selector names its own uid
    /// (`pkg/registry/batch/job/strategy.go` generateSelector).
    pub fn create_with_uid(
        &self,
        resource: &'static Resource,
        namespace: &str,
        mut object: Value,
        uid: String,
    ) -> Result<Arc<Value>, StoreError> {
        let ns = ns_of(resource, namespace);
        let mut inner = self.lock();
        let meta = metadata_mut(&mut object);
        let name = match meta.get("name").and_then(Value::as_str) {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => format!("{prefix}{}", random_suffix()),
                _ => {
                    return Err(StoreError::Invalid {
                        resource: resource.qualified_plural(),
                        name: String::new(),
                        message: "metadata.name: Required value: name or generateName is required"
                            .into(),
                    });
                }
            },
        };
        let key = (ns.clone(), name.clone());
        if inner
            .objects
            .get(&table(resource))
            .is_some_and(|t| t.contains_key(&key))
        {
            return Err(StoreError::AlreadyExists {
                resource: resource.qualified_plural(),
                name,
            });
        }
        inner.rv += 1;
        let rv = inner.rv;
        meta.insert("name".into(), json!(name));
        if resource.namespaced {
            meta.insert("namespace".into(), json!(ns));
        } else {
            meta.remove("namespace");
        }
        meta.insert("uid".into(), json!(uid));
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        meta.insert("generation".into(), json!(1));
        meta.insert("creationTimestamp".into(), json!(rfc3339(Timestamp::now())));
        meta.remove("deletionTimestamp");
        meta.remove("deletionGracePeriodSeconds");
        set_type_meta(resource, &mut object);
        let object = Arc::new(object);
        inner
            .objects
            .entry(table(resource))
            .or_default()
            .insert(key, object.clone());
        self.record(
            &mut inner,
            rv,
            EventType::Added,
            resource,
            ns,
            name,
            object.clone(),
            None,
        );
        Ok(object)
    }

    /// Replace an object (PUT semantics). A non-empty `metadata.resourceVersion`
    /// in `object` must match the stored one. uid, creationTimestamp and the
    /// deletion fields are kept from the stored object; generation is bumped
    /// when anything outside metadata and status changed.
    pub fn update(
        &self,
        resource: &'static Resource,
        namespace: &str,
        name: &str,
        object: Value,
        preconditions: &Preconditions,
    ) -> Result<Arc<Value>, StoreError> {
        self.write(resource, namespace, name, preconditions, |_| Ok(object))
    }

    /// Read-modify-write under the store's lock: `change` gets a copy of the
    /// current object and edits it. A change that leaves the object equal
    /// writes nothing and returns the current object.
    pub fn modify(
        &self,
        resource: &'static Resource,
        namespace: &str,
        name: &str,
        change: impl FnOnce(&mut Value) -> Result<(), StoreError>,
    ) -> Result<Arc<Value>, StoreError> {
        self.write(
            resource,
            namespace,
            name,
            &Preconditions::default(),
            |current| {
                let mut next = current.clone();
                change(&mut next)?;
                Ok(next)
            },
        )
    }

    fn write(
        &self,
        resource: &'static Resource,
        namespace: &str,
        name: &str,
        preconditions: &Preconditions,
        produce: impl FnOnce(&Value) -> Result<Value, StoreError>,
    ) -> Result<Arc<Value>, StoreError> {
        let ns = ns_of(resource, namespace);
        let key = (ns.clone(), name.to_string());
        let mut inner = self.lock();
        let current = inner
            .objects
            .get(&table(resource))
            .and_then(|t| t.get(&key))
            .cloned()
            .ok_or_else(|| not_found(resource, name))?;
        check_preconditions(resource, name, &current, preconditions)?;
        let mut next = produce(&current)?;
        if let Some(rv) = next
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .filter(|rv| !rv.is_empty())
            && rv != resource_version(&current)
        {
            return Err(conflict(resource, name));
        }
        let cur_meta = current.get("metadata").cloned().unwrap_or_default();
        let meta = metadata_mut(&mut next);
        meta.insert("name".into(), json!(name));
        for kept in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match cur_meta.get(kept) {
                Some(v) => meta.insert(kept.into(), v.clone()),
                None => meta.remove(kept),
            };
        }
        if resource.namespaced {
            meta.insert("namespace".into(), json!(ns));
        }
        meta.insert(
            "resourceVersion".into(),
            cur_meta["resourceVersion"].clone(),
        );
        set_type_meta(resource, &mut next);
        if next == *current {
            return Ok(current);
        }
        if spec_changed(&current, &next) {
            let generation = cur_meta["generation"].as_i64().unwrap_or(1) + 1;
            metadata_mut(&mut next).insert("generation".into(), json!(generation));
        }
        inner.rv += 1;
        let rv = inner.rv;
        metadata_mut(&mut next).insert("resourceVersion".into(), json!(rv.to_string()));
        let next = Arc::new(next);
        inner
            .objects
            .entry(table(resource))
            .or_default()
            .insert(key, next.clone());
        self.record(
            &mut inner,
            rv,
            EventType::Modified,
            resource,
            ns,
            name.to_string(),
            next.clone(),
            Some(current),
        );
        Ok(next)
    }

    /// Set the fields only the server may set on an existing object
    /// (`deletionTimestamp`, `deletionGracePeriodSeconds`): graceful deletion
    /// in the API server uses this before the kubelet finishes the delete.
    pub fn mark_deleting(
        &self,
        resource: &'static Resource,
        namespace: &str,
        name: &str,
        grace_period_seconds: i64,
        preconditions: &Preconditions,
    ) -> Result<Arc<Value>, StoreError> {
        let ns = ns_of(resource, namespace);
        let key = (ns.clone(), name.to_string());
        let mut inner = self.lock();
        let current = inner
            .objects
            .get(&table(resource))
            .and_then(|t| t.get(&key))
            .cloned()
            .ok_or_else(|| not_found(resource, name))?;
        check_preconditions(resource, name, &current, preconditions)?;
        if current.pointer("/metadata/deletionTimestamp").is_some() {
            return Ok(current);
        }
        let mut next = (*current).clone();
        inner.rv += 1;
        let rv = inner.rv;
        let meta = metadata_mut(&mut next);
        let at = Timestamp::now() + jiff::SignedDuration::from_secs(grace_period_seconds);
        meta.insert("deletionTimestamp".into(), json!(rfc3339(at)));
        meta.insert(
            "deletionGracePeriodSeconds".into(),
            json!(grace_period_seconds),
        );
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        let next = Arc::new(next);
        inner
            .objects
            .entry(table(resource))
            .or_default()
            .insert(key, next.clone());
        self.record(
            &mut inner,
            rv,
            EventType::Modified,
            resource,
            ns,
            name.to_string(),
            next.clone(),
            Some(current),
        );
        Ok(next)
    }

    /// Remove an object now. Returns its last state (at the delete's
    /// resourceVersion).
    pub fn delete(
        &self,
        resource: &'static Resource,
        namespace: &str,
        name: &str,
        preconditions: &Preconditions,
    ) -> Result<Arc<Value>, StoreError> {
        let ns = ns_of(resource, namespace);
        let key = (ns.clone(), name.to_string());
        let mut inner = self.lock();
        let current = inner
            .objects
            .get(&table(resource))
            .and_then(|t| t.get(&key))
            .cloned()
            .ok_or_else(|| not_found(resource, name))?;
        check_preconditions(resource, name, &current, preconditions)?;
        inner.rv += 1;
        let rv = inner.rv;
        if let Some(t) = inner.objects.get_mut(&table(resource)) {
            t.remove(&key);
        }
        let mut last = (*current).clone();
        metadata_mut(&mut last).insert("resourceVersion".into(), json!(rv.to_string()));
        let last = Arc::new(last);
        self.record(
            &mut inner,
            rv,
            EventType::Deleted,
            resource,
            ns,
            name.to_string(),
            last.clone(),
            Some(current),
        );
        Ok(last)
    }

    /// Start watching: the logged events after `since` (every type; the
    /// caller filters) and a receiver for what comes next, taken atomically
    /// so nothing is missed or seen twice. `since` older than the log keeps
    /// → [`StoreError::Expired`].
    pub fn watch_from(&self, since: u64) -> Result<WatchStart, StoreError> {
        let inner = self.lock();
        let oldest = inner.log.front().map(|e| e.rv - 1).unwrap_or(inner.rv);
        if since < oldest {
            return Err(StoreError::Expired {
                requested: since,
                oldest,
            });
        }
        let backlog = inner.log.iter().filter(|e| e.rv > since).cloned().collect();
        Ok((backlog, self.events.subscribe()))
    }

    /// A receiver for every change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        let _inner = self.lock();
        self.events.subscribe()
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        inner: &mut Inner,
        rv: u64,
        event_type: EventType,
        resource: &'static Resource,
        namespace: String,
        name: String,
        object: Arc<Value>,
        previous: Option<Arc<Value>>,
    ) {
        let event = Arc::new(Event {
            rv,
            event_type,
            resource,
            namespace,
            name,
            object,
            previous,
            writer: WRITER.try_with(Arc::clone).ok(),
        });
        for observer in &inner.observers {
            observer(&event);
        }
        if inner.log.len() >= inner.log_capacity {
            inner.log.pop_front();
        }
        inner.log.push_back(event.clone());
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(event);
    }
}

fn table(resource: &Resource) -> String {
    resource.qualified_plural()
}

fn ns_of(resource: &Resource, namespace: &str) -> String {
    if resource.namespaced {
        namespace.to_string()
    } else {
        String::new()
    }
}

fn not_found(resource: &Resource, name: &str) -> StoreError {
    StoreError::NotFound {
        resource: resource.qualified_plural(),
        name: name.to_string(),
    }
}

fn conflict(resource: &Resource, name: &str) -> StoreError {
    StoreError::Conflict {
        resource: resource.qualified_plural(),
        name: name.to_string(),
        message: STALE_RV_MESSAGE.into(),
    }
}

fn check_preconditions(
    resource: &Resource,
    name: &str,
    current: &Value,
    preconditions: &Preconditions,
) -> Result<(), StoreError> {
    if let Some(uid) = &preconditions.uid
        && current.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid.as_str())
    {
        return Err(StoreError::Conflict {
            resource: resource.qualified_plural(),
            name: name.to_string(),
            message: format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                current
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .unwrap_or("")
            ),
        });
    }
    if let Some(rv) = &preconditions.resource_version
        && rv != resource_version(current)
    {
        return Err(StoreError::Conflict {
            resource: resource.qualified_plural(),
            name: name.to_string(),
            message: format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                resource_version(current)
            ),
        });
    }
    Ok(())
}

/// The object's `metadata.resourceVersion`, or `""`.
pub fn resource_version(object: &Value) -> &str {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `metadata` as a mutable map, created if missing.
pub fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.is_object() {
        *object = json!({});
    }
    let map = object.as_object_mut().expect("object");
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta.as_object_mut().expect("metadata object")
}

fn set_type_meta(resource: &Resource, object: &mut Value) {
    if let Some(map) = object.as_object_mut() {
        map.insert("apiVersion".into(), json!(resource.api_version()));
        map.insert("kind".into(), json!(resource.kind));
    }
}

/// True when anything besides `metadata` and `status` differs: the
/// condition under which real servers bump `metadata.generation`.
fn spec_changed(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut m = v.as_object().cloned().unwrap_or_default();
        m.remove("metadata");
        m.remove("status");
        m
    };
    strip(a) != strip(b)
}

/// Kubernetes `Time`: RFC 3339 in UTC with whole seconds.
pub fn rfc3339(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Kubernetes `MicroTime`: RFC 3339 in UTC with six fraction digits.
pub fn micro_time(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// A random RFC 4122 version-4 UUID, as real servers assign to uid.
pub fn new_uid() -> String {
    let b: [u8; 16] = rand::random();
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-4{:x}{:02x}-{:x}{:x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[0],
        b[1],
        b[2],
        b[3],
        b[4],
        b[5],
        b[6] & 0x0f,
        b[7],
        8 | (b[8] & 0x03),
        b[8] >> 4,
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    )
}

/// Five characters from the alphabet real `generateName` suffixes use.
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{NODES, PODS};

    #[test]
    fn create_assigns_server_fields_and_rejects_duplicates() {
        let store = Store::new();
        let pod = store
            .create(
                &PODS,
                "default",
                json!({"metadata": {"name": "a"}, "spec": {}}),
            )
            .unwrap();
        assert_eq!(pod["kind"], "Pod");
        assert_eq!(pod["metadata"]["namespace"], "default");
        assert_eq!(pod["metadata"]["generation"], 1);
        assert!(pod["metadata"]["uid"].as_str().unwrap().len() == 36);
        let again = store.create(&PODS, "default", json!({"metadata": {"name": "a"}}));
        assert!(matches!(again, Err(StoreError::AlreadyExists { .. })));
        // Same name in another namespace is another object.
        store
            .create(&PODS, "other", json!({"metadata": {"name": "a"}}))
            .unwrap();
        let (all, _) = store.list(&PODS, None, |_| true);
        assert_eq!(all.len(), 2);
        let (one, _) = store.list(&PODS, Some("other"), |_| true);
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn stale_resource_version_conflicts_and_generation_follows_spec() {
        let store = Store::new();
        let n = store
            .create(&NODES, "", json!({"metadata": {"name": "n1"}, "spec": {}}))
            .unwrap();
        let rv = resource_version(&n).to_string();
        let mut changed = (*n).clone();
        changed["spec"]["unschedulable"] = json!(true);
        let updated = store
            .update(&NODES, "", "n1", changed.clone(), &Preconditions::default())
            .unwrap();
        assert_eq!(updated["metadata"]["generation"], 2);
        assert_ne!(resource_version(&updated), rv);
        // The same body again carries the old resourceVersion: conflict.
        let stale = store.update(&NODES, "", "n1", changed, &Preconditions::default());
        assert!(matches!(stale, Err(StoreError::Conflict { .. })));
        // A status-only change keeps the generation.
        let after = store
            .modify(&NODES, "", "n1", |o| {
                o["status"] = json!({"phase": "x"});
                Ok(())
            })
            .unwrap();
        assert_eq!(after["metadata"]["generation"], 2);
    }

    #[test]
    fn no_op_modify_writes_nothing() {
        let store = Store::new();
        store
            .create(&NODES, "", json!({"metadata": {"name": "n1"}}))
            .unwrap();
        let before = store.revision();
        store.modify(&NODES, "", "n1", |_| Ok(())).unwrap();
        assert_eq!(store.revision(), before);
    }

    #[test]
    fn watch_from_replays_after_rv_and_expires_old_ones() {
        let store = Arc::new(Store::with_log_capacity(3));
        for i in 0..5 {
            store
                .create(&NODES, "", json!({"metadata": {"name": format!("n{i}")}}))
                .unwrap();
        }
        let rev = store.revision();
        let (backlog, _rx) = store.watch_from(rev - 2).unwrap();
        assert_eq!(backlog.len(), 2);
        assert!(matches!(
            store.watch_from(1),
            Err(StoreError::Expired { .. })
        ));
    }

    #[test]
    fn delete_honours_uid_precondition() {
        let store = Store::new();
        store
            .create(&PODS, "ns", json!({"metadata": {"name": "p"}}))
            .unwrap();
        let wrong = Preconditions {
            uid: Some("nope".into()),
            resource_version: None,
        };
        assert!(matches!(
            store.delete(&PODS, "ns", "p", &wrong),
            Err(StoreError::Conflict { .. })
        ));
        let gone = store
            .delete(&PODS, "ns", "p", &Preconditions::default())
            .unwrap();
        assert_eq!(gone["metadata"]["name"], "p");
        assert!(store.get(&PODS, "ns", "p").is_none());
    }

    #[tokio::test]
    async fn a_change_made_for_a_request_names_its_user() {
        let store = Store::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        store.observe(move |e| {
            s.lock()
                .unwrap()
                .push(e.writer.as_deref().map(String::from))
        });
        as_writer("alice", async {
            store
                .create(&NODES, "", json!({"metadata": {"name": "a"}}))
                .unwrap();
        })
        .await;
        store
            .create(&NODES, "", json!({"metadata": {"name": "b"}}))
            .unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![Some("alice".to_string()), None]);
    }

    #[test]
    fn observers_see_every_change_in_order() {
        let store = Store::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        store.observe(move |e| s.lock().unwrap().push((e.rv, e.event_type)));
        store
            .create(&NODES, "", json!({"metadata": {"name": "n"}}))
            .unwrap();
        store
            .delete(&NODES, "", "n", &Preconditions::default())
            .unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert!(seen[0].0 < seen[1].0);
        assert_eq!(seen[1].1, EventType::Deleted);
    }

    #[test]
    fn uid_is_a_v4_uuid() {
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
