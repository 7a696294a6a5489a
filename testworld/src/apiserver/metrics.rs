//! Request counters by verb and resource, and bytes sent: what the
//! benchmark's "API economy" figures are made of.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// `(verb, resource)` → requests. Resources are plurals with the
    /// subresource (`pods/eviction`); non-resource URLs count under their
    /// path with verb `get`. A watch counts once, when it starts.
    pub by_verb_resource: BTreeMap<(String, String), u64>,
    /// Bytes of response bodies sent (watch streams included).
    pub bytes_sent: u64,
    /// Watches that asked for a streaming list (`sendInitialEvents=true`;
    /// counted among the watches too): started, and refused with a 422.
    pub streaming_lists: u64,
    pub streaming_lists_refused: u64,
}

impl RequestCounts {
    /// Requests with this verb on this resource.
    pub fn get(&self, verb: &str, resource: &str) -> u64 {
        self.by_verb_resource
            .get(&(verb.to_string(), resource.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Requests with this verb, any resource.
    pub fn verb(&self, verb: &str) -> u64 {
        self.by_verb_resource
            .iter()
            .filter(|((v, _), _)| v == verb)
            .map(|(_, n)| n)
            .sum()
    }

    /// Every request counted.
    pub fn total(&self) -> u64 {
        self.by_verb_resource.values().sum()
    }
}

#[derive(Default)]
pub(crate) struct Metrics {
    counts: Mutex<HashMap<(&'static str, String), u64>>,
    bytes: AtomicU64,
    streaming_lists: AtomicU64,
    streaming_lists_refused: AtomicU64,
}

impl Metrics {
    pub fn count(&self, verb: &'static str, resource: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        match counts.get_mut(&(verb, resource.to_string())) {
            Some(n) => *n += 1,
            None => {
                counts.insert((verb, resource.to_string()), 1);
            }
        }
    }

    /// A streaming list started (`true`) or was refused.
    pub fn streaming_list(&self, started: bool) {
        let counter = if started {
            &self.streaming_lists
        } else {
            &self.streaming_lists_refused
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn sent(&self, bytes: usize) {
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> RequestCounts {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        RequestCounts {
            by_verb_resource: counts
                .iter()
                .map(|((v, r), n)| ((v.to_string(), r.clone()), *n))
                .collect(),
            bytes_sent: self.bytes.load(Ordering::Relaxed),
            streaming_lists: self.streaming_lists.load(Ordering::Relaxed),
            streaming_lists_refused: self.streaming_lists_refused.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up() {
        let m = Metrics::default();
        m.count("list", "pods");
        m.count("list", "pods");
        m.count("create", "pods/eviction");
        m.sent(10);
        let s = m.snapshot();
        assert_eq!(s.get("list", "pods"), 2);
        assert_eq!(s.verb("create"), 1);
        assert_eq!(s.total(), 3);
        assert_eq!(s.bytes_sent, 10);
    }
}
