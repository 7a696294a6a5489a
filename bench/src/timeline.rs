//! Where a run's time goes, seen from the world: when each old node
//! entered each slot phase (the engine's `kubesurge.io/phase` annotation),
//! when its replacement registered and became Ready, and when the old Node
//! was deleted. From these, per slot, the phases' durations, and per pool
//! the gaps between a slot ending and the next one starting.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use kubesurge_testworld::resources::NODES;
use kubesurge_testworld::store::{EventType, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

const PHASE_ANNOTATION: &str = "/metadata/annotations/kubesurge.io~1phase";

/// Something that happened to a node.
#[derive(Clone, Debug, PartialEq)]
pub enum MarkKind {
    /// An old node's slot entered this phase.
    Phase(String),
    /// An old node's Node object was deleted.
    Deleted,
    /// A new node registered.
    Registered,
    /// A new node became Ready (first time).
    Ready,
}

#[derive(Clone, Debug)]
pub struct Mark {
    pub node: String,
    pub kind: MarkKind,
    pub at: Instant,
}

/// The marks of one world, recorded as the store changes.
#[derive(Default)]
pub struct Recorder {
    marks: Mutex<Vec<Mark>>,
}

impl Recorder {
    /// Record node changes in `store`; `originals` are the workers the run
    /// replaces.
    pub fn attach(store: &Store, originals: HashSet<String>) -> Arc<Recorder> {
        let recorder = Arc::new(Recorder::default());
        let sink = recorder.clone();
        // Runs under the store's lock: keep it to a comparison and a push.
        store.observe(move |event| {
            if !std::ptr::eq(event.resource, &NODES) {
                return;
            }
            let original = originals.contains(&event.name);
            let kind = match (event.event_type, original) {
                (EventType::Deleted, true) => Some(MarkKind::Deleted),
                (EventType::Deleted, false) => None,
                (_, true) => {
                    let phase = phase_of(&event.object);
                    let before = event.previous.as_deref().and_then(phase_of);
                    match phase {
                        Some(p) if Some(p) != before => Some(MarkKind::Phase(p.to_string())),
                        _ => None,
                    }
                }
                (EventType::Added, false) => Some(MarkKind::Registered),
                (EventType::Modified, false) => {
                    let was = event.previous.as_deref().is_some_and(is_ready);
                    (is_ready(&event.object) && !was).then_some(MarkKind::Ready)
                }
            };
            let at = Instant::now();
            let mut marks = sink.marks.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(kind) = kind {
                marks.push(Mark {
                    node: event.name.clone(),
                    kind,
                    at,
                });
            }
            // A node may register Ready already.
            if event.event_type == EventType::Added && !original && is_ready(&event.object) {
                marks.push(Mark {
                    node: event.name.clone(),
                    kind: MarkKind::Ready,
                    at,
                });
            }
        });
        recorder
    }

    pub fn marks(&self) -> Vec<Mark> {
        self.marks.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn phase_of(node: &Value) -> Option<&str> {
    node.pointer(PHASE_ANNOTATION).and_then(Value::as_str)
}

fn is_ready(node: &Value) -> bool {
    node.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// One slot as the report names it.
#[derive(Clone, Debug, PartialEq)]
pub struct SlotNames {
    pub pool: String,
    pub old_node: String,
    pub new_node: Option<String>,
}

/// One `kubesurge` process: when it started and exited (seconds from the
/// first start) and which pools it rotated.
#[derive(Clone, Debug, PartialEq)]
pub struct Invocation {
    pub started: f64,
    pub exited: f64,
    pub pools: Vec<String>,
}

/// A slot's moments, seconds from the first start.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SlotTimes {
    pub pool: String,
    pub launching: Option<f64>,
    pub registered: Option<f64>,
    pub ready: Option<f64>,
    pub draining: Option<f64>,
    pub terminating: Option<f64>,
    pub deleted: Option<f64>,
}

/// Every slot's moments from the marks.
pub fn slot_times(marks: &[Mark], slots: &[SlotNames], origin: Instant) -> Vec<SlotTimes> {
    let secs = |at: Instant| at.saturating_duration_since(origin).as_secs_f64();
    let mut first: BTreeMap<(&str, String), f64> = BTreeMap::new();
    for m in marks {
        let key = match &m.kind {
            MarkKind::Phase(p) => p.clone(),
            MarkKind::Deleted => "deleted".into(),
            MarkKind::Registered => "registered".into(),
            MarkKind::Ready => "ready".into(),
        };
        first.entry((m.node.as_str(), key)).or_insert(secs(m.at));
    }
    slots
        .iter()
        .map(|s| {
            let old = |k: &str| first.get(&(s.old_node.as_str(), k.to_string())).copied();
            let new = |k: &str| {
                s.new_node
                    .as_deref()
                    .and_then(|n| first.get(&(n, k.to_string())).copied())
            };
            SlotTimes {
                pool: s.pool.clone(),
                launching: old("launching"),
                registered: new("registered"),
                ready: new("ready"),
                draining: old("draining"),
                terminating: old("terminating"),
                deleted: old("deleted"),
            }
        })
        .collect()
}

/// Mean and largest of some durations, seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    pub mean: f64,
    pub max: f64,
    pub count: usize,
    pub total: f64,
}

impl Stat {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Stat {
        let mut s = Stat::default();
        for v in values {
            s.count += 1;
            s.total += v;
            s.max = s.max.max(v);
        }
        if s.count > 0 {
            s.mean = s.total / s.count as f64;
        }
        s
    }
}

/// Where the time went.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Breakdown {
    /// Slot start (phase `launching`) → the new Node registered: token,
    /// launch call, boot (B), `kubeadm join`.
    pub launch_to_registered: Stat,
    /// Registered → Ready.
    pub registered_to_ready: Stat,
    /// Ready → phase `draining`: the settle time, the drain precheck.
    pub ready_to_drain: Stat,
    /// `draining` → `terminating`: label, cordon, evictions, pods gone (D).
    pub drain: Stat,
    /// `terminating` → old Node deleted: volumes, terminate until gone
    /// (T), delete the Node.
    pub terminate: Stat,
    /// Slot start → old Node deleted.
    pub slot: Stat,
    /// Per pool, a slot's end → the start of the slot that took its place
    /// in the window (health gate, scheduling of the next slot).
    pub window_gap: Stat,
    /// Process start → its first slot starts (added over processes).
    pub startup: f64,
    /// Last Node deleted → process exit (added over processes).
    pub tail: f64,
    /// Slots in flight on average between the first start and the last
    /// end (over all pools).
    pub mean_in_flight: f64,
}

/// The breakdown of a run: `windows` is each pool's `maxSurge`.
pub fn breakdown(
    slots: &[SlotTimes],
    windows: &BTreeMap<String, usize>,
    invocations: &[Invocation],
) -> Breakdown {
    let span = |a: Option<f64>, b: Option<f64>| Some(b? - a?);
    let stat = |f: &dyn Fn(&SlotTimes) -> Option<f64>| Stat::of(slots.iter().filter_map(f));
    let mut gaps = Vec::new();
    for (pool, &window) in windows {
        let mut starts: Vec<f64> = slots
            .iter()
            .filter(|s| &s.pool == pool)
            .filter_map(|s| s.launching)
            .collect();
        let mut ends: Vec<f64> = slots
            .iter()
            .filter(|s| &s.pool == pool)
            .filter_map(|s| s.deleted)
            .collect();
        starts.sort_by(f64::total_cmp);
        ends.sort_by(f64::total_cmp);
        // The k-th start (k ≥ window) waited for the (k − window)-th end.
        for (start, end) in starts.iter().skip(window).zip(&ends) {
            gaps.push((start - end).max(0.0));
        }
    }
    let mut startup = 0.0;
    let mut tail = 0.0;
    for inv in invocations {
        let mine = slots.iter().filter(|s| inv.pools.contains(&s.pool));
        let first = mine.clone().filter_map(|s| s.launching).reduce(f64::min);
        let last = mine.filter_map(|s| s.deleted).reduce(f64::max);
        if let Some(first) = first {
            startup += first - inv.started;
        }
        if let Some(last) = last {
            tail += inv.exited - last;
        }
    }
    let slot = stat(&|s| span(s.launching, s.deleted));
    let first = slots.iter().filter_map(|s| s.launching).reduce(f64::min);
    let last = slots.iter().filter_map(|s| s.deleted).reduce(f64::max);
    let mean_in_flight = match (first, last) {
        (Some(a), Some(b)) if b > a => slot.total / (b - a),
        _ => 0.0,
    };
    Breakdown {
        launch_to_registered: stat(&|s| span(s.launching, s.registered)),
        registered_to_ready: stat(&|s| span(s.registered, s.ready)),
        ready_to_drain: stat(&|s| span(s.ready, s.draining)),
        drain: stat(&|s| span(s.draining, s.terminating)),
        terminate: stat(&|s| span(s.terminating, s.deleted)),
        slot,
        window_gap: Stat::of(gaps),
        startup,
        tail,
        mean_in_flight,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn times(pool: &str, launching: f64, deleted: f64) -> SlotTimes {
        SlotTimes {
            pool: pool.into(),
            launching: Some(launching),
            registered: Some(launching + 9.0),
            ready: Some(launching + 9.1),
            draining: Some(launching + 10.1),
            terminating: Some(launching + 13.1),
            deleted: Some(deleted),
        }
    }

    #[test]
    fn slot_moments_come_from_the_first_mark_of_each_kind() {
        let origin = Instant::now();
        let at = |s: f64| origin + Duration::from_secs_f64(s);
        let mark = |node: &str, kind: MarkKind, s: f64| Mark {
            node: node.into(),
            kind,
            at: at(s),
        };
        let marks = vec![
            mark("a-1", MarkKind::Phase("launching".into()), 1.0),
            mark("a-1", MarkKind::Phase("joining".into()), 1.1),
            mark("new", MarkKind::Registered, 10.0),
            mark("new", MarkKind::Ready, 10.5),
            mark("new", MarkKind::Ready, 30.0),
            mark("a-1", MarkKind::Phase("draining".into()), 11.5),
            mark("a-1", MarkKind::Phase("terminating".into()), 14.5),
            mark("a-1", MarkKind::Deleted, 17.5),
        ];
        let slots = vec![SlotNames {
            pool: "a".into(),
            old_node: "a-1".into(),
            new_node: Some("new".into()),
        }];
        let t = &slot_times(&marks, &slots, origin)[0];
        let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-6;
        assert!(close(t.launching, 1.0));
        assert!(close(t.ready, 10.5), "the first Ready counts");
        assert!(close(t.deleted, 17.5));
    }

    #[test]
    fn gaps_measure_how_long_a_freed_window_place_stayed_empty() {
        // Window 2: slots 1 and 2 start at 0; slot 1 ends at 16 and the
        // third starts at 16.5; slot 2 ends at 17 and the fourth starts at
        // 17 (no gap).
        let slots = vec![
            times("a", 0.0, 16.0),
            times("a", 0.0, 17.0),
            times("a", 16.5, 33.0),
            times("a", 17.0, 34.0),
        ];
        let windows = BTreeMap::from([("a".to_string(), 2)]);
        let inv = [Invocation {
            started: -0.5,
            exited: 34.25,
            pools: vec!["a".into()],
        }];
        let b = breakdown(&slots, &windows, &inv);
        assert_eq!(b.window_gap.count, 2);
        assert!((b.window_gap.total - 0.5).abs() < 1e-9);
        assert!((b.startup - 0.5).abs() < 1e-9);
        assert!((b.tail - 0.25).abs() < 1e-9);
        assert!((b.drain.mean - 3.0).abs() < 1e-9);
        assert!((b.slot.max - 17.0).abs() < 1e-9);
        // 16 + 17 + 16.5 + 17 seconds of slots over 34 seconds.
        assert!((b.mean_in_flight - 66.5 / 34.0).abs() < 1e-9);
    }
}
