//! Watch lines: each event serialized once as `{"type":…,"object":…}`
//! and kept for a while, so every watcher that sends it unchanged shares
//! the bytes.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;
use serde_json::Value;

use crate::store::Event;

/// Lines cached (one per recent event).
const LINE_CACHE_SIZE: usize = 8192;

/// Serialized `{"type":…,"object":…}` lines of recent events, by
/// resourceVersion.
#[derive(Default)]
pub(crate) struct LineCache {
    inner: Mutex<(HashMap<u64, Bytes>, VecDeque<u64>)>,
}

impl LineCache {
    pub(crate) fn line(&self, event: &Event) -> Bytes {
        {
            let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(line) = inner.0.get(&event.rv) {
                return line.clone();
            }
        }
        let line = event_line(event.event_type.as_str(), &event.object);
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *guard;
        if let std::collections::hash_map::Entry::Vacant(slot) = inner.0.entry(event.rv) {
            slot.insert(line.clone());
            inner.1.push_back(event.rv);
            while inner.1.len() > LINE_CACHE_SIZE {
                if let Some(old) = inner.1.pop_front() {
                    inner.0.remove(&old);
                }
            }
        }
        line
    }
}

pub(crate) fn event_line(event_type: &str, object: &Value) -> Bytes {
    let mut buf = Vec::with_capacity(1024);
    buf.extend_from_slice(b"{\"type\":\"");
    buf.extend_from_slice(event_type.as_bytes());
    buf.extend_from_slice(b"\",\"object\":");
    let _ = serde_json::to_writer(&mut buf, object);
    buf.extend_from_slice(b"}\n");
    Bytes::from(buf)
}
