//! List paging: `limit` + `continue`. The token is opaque to clients; it
//! carries the list's resourceVersion, the key of the last item sent and
//! the id of a kept snapshot of the selected items, so later pages are
//! consistent with the first (as etcd reads at one revision are). When the
//! snapshot is gone the remaining items come from the current state after
//! the last key; a token older than the event log is 410 Expired.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How many list snapshots are kept, and for how long.
const SNAPSHOTS_KEPT: usize = 64;
const SNAPSHOT_TTL: Duration = Duration::from_secs(120);

/// What a continue token says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContinueToken {
    #[serde(rename = "v")]
    pub version: String,
    pub rv: u64,
    /// `<namespace>/<name>` of the last item sent.
    pub start: String,
    /// Snapshot id and the index of the next item in it.
    pub id: u64,
    pub pos: usize,
}

impl ContinueToken {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::STANDARD.encode(json)
    }

    pub fn decode(s: &str) -> Result<ContinueToken, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| format!("continue key is not valid: {e}"))?;
        let token: ContinueToken = serde_json::from_slice(&bytes)
            .map_err(|e| format!("continue key is not valid: {e}"))?;
        if token.version != "meta.k8s.io/v1" {
            return Err("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)".into());
        }
        Ok(token)
    }

    /// `(namespace, name)` of the last item sent.
    pub fn start_key(&self) -> (String, String) {
        match self.start.split_once('/') {
            Some((ns, name)) => (ns.to_string(), name.to_string()),
            None => (String::new(), self.start.clone()),
        }
    }
}

/// The message real servers send with 410 for an expired continue token.
pub const EXPIRED_CONTINUE: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

struct Snapshot {
    id: u64,
    rv: u64,
    created: Instant,
    items: Arc<Vec<Arc<Value>>>,
}

/// Kept snapshots of paged lists.
#[derive(Default)]
pub struct Pager {
    inner: Mutex<(u64, VecDeque<Snapshot>)>,
}

impl Pager {
    /// Keep `items` (selected at `rv`) for later pages; returns its id.
    pub fn keep(&self, rv: u64, items: Arc<Vec<Arc<Value>>>) -> u64 {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.0 += 1;
        let id = inner.0;
        let now = Instant::now();
        inner
            .1
            .retain(|s| now.duration_since(s.created) < SNAPSHOT_TTL);
        while inner.1.len() >= SNAPSHOTS_KEPT {
            inner.1.pop_front();
        }
        inner.1.push_back(Snapshot {
            id,
            rv,
            created: now,
            items,
        });
        id
    }

    /// The snapshot a token refers to, if still kept.
    pub fn get(&self, id: u64, rv: u64) -> Option<Arc<Vec<Arc<Value>>>> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .1
            .iter()
            .find(|s| s.id == id && s.rv == rv)
            .map(|s| s.items.clone())
    }
}

/// `(namespace, name)` of an object.
pub fn key_of(object: &Value) -> (String, String) {
    let s = |p: &str| {
        object
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    (s("/metadata/namespace"), s("/metadata/name"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let t = ContinueToken {
            version: "meta.k8s.io/v1".into(),
            rv: 42,
            start: "ns/p1".into(),
            id: 3,
            pos: 500,
        };
        let back = ContinueToken::decode(&t.encode()).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.start_key(), ("ns".to_string(), "p1".to_string()));
        assert!(ContinueToken::decode("!!!").is_err());
        assert!(ContinueToken::decode("e30=").is_err());
    }

    #[test]
    fn snapshots_are_found_by_id_and_rv() {
        let p = Pager::default();
        let id = p.keep(7, Arc::new(vec![Arc::new(json!({}))]));
        assert!(p.get(id, 7).is_some());
        assert!(p.get(id, 8).is_none());
    }
}
