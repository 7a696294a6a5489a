//! The order in which a pool's nodes are replaced: oldest first, spread
//! across zones, so that a zone never loses more than its share of capacity
//! at once and the nodes most in need of replacement go first.

use std::collections::BTreeMap;

use crate::inventory::WorkerNode;

/// `nodes` in replacement order: round-robin over zones, each turn taking
/// that zone's oldest remaining node (by creation time, then name). Zones
/// take turns in the order of their oldest node, so the pool's oldest node
/// is always first. Nodes without a zone form a zone of their own.
pub fn replacement_order<'a>(
    nodes: impl IntoIterator<Item = &'a WorkerNode>,
) -> Vec<&'a WorkerNode> {
    spread_oldest_first(
        nodes.into_iter().collect(),
        |n| n.zone.clone(),
        |n| (n.created, n.name.clone()),
    )
}

/// The ordering behind [`replacement_order`], for any item with a zone and
/// an age key (smaller = older; make it total, e.g. `(created, name)`, for a
/// deterministic order).
pub fn spread_oldest_first<T, K: Ord>(
    items: Vec<T>,
    zone: impl Fn(&T) -> Option<String>,
    age: impl Fn(&T) -> K,
) -> Vec<T> {
    let total = items.len();
    let mut by_zone: BTreeMap<Option<String>, Vec<T>> = BTreeMap::new();
    for item in items {
        by_zone.entry(zone(&item)).or_default().push(item);
    }
    let mut queues: Vec<(Option<String>, std::vec::IntoIter<T>)> = by_zone
        .into_iter()
        .map(|(z, mut group)| {
            group.sort_by_key(|i| age(i));
            (z, group)
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|(z, group)| (z, group.into_iter()))
        .collect();
    // Zones take turns in the order of their oldest node; ties by zone name.
    queues.sort_by(|(za, a), (zb, b)| {
        let ka = a.as_slice().first().map(&age);
        let kb = b.as_slice().first().map(&age);
        ka.cmp(&kb).then_with(|| za.cmp(zb))
    });
    let mut out = Vec::with_capacity(total);
    while out.len() < total {
        for (_, queue) in queues.iter_mut() {
            if let Some(item) = queue.next() {
                out.push(item);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;

    fn node(name: &str, zone: Option<&str>, created_secs: i64) -> WorkerNode {
        WorkerNode {
            name: name.to_string(),
            kubelet: "v1.31.4".parse().unwrap(),
            pool: Some("general".into()),
            created: Timestamp::from_second(1_700_000_000 + created_secs).unwrap(),
            zone: zone.map(str::to_string),
            provider_id: None,
            internal_ip: None,
            ready: true,
            unschedulable: false,
        }
    }

    fn names(nodes: &[&WorkerNode]) -> Vec<String> {
        nodes.iter().map(|n| n.name.clone()).collect()
    }

    #[test]
    fn oldest_first_then_round_robin_over_zones() {
        let nodes = vec![
            node("a-new", Some("a"), 50),
            node("a-old", Some("a"), 10),
            node("a-mid", Some("a"), 30),
            node("b-old", Some("b"), 5),
            node("b-new", Some("b"), 60),
            node("c-only", Some("c"), 20),
        ];
        let order = replacement_order(&nodes);
        // b has the oldest node, then a (10), then c (20).
        assert_eq!(
            names(&order),
            ["b-old", "a-old", "c-only", "b-new", "a-mid", "a-new"]
        );
    }

    #[test]
    fn a_zone_never_gets_two_turns_in_a_row_while_others_have_nodes() {
        let nodes: Vec<WorkerNode> = (0..9)
            .map(|i| {
                let z = ["x", "y", "z"][i % 3];
                node(&format!("n{i}"), Some(z), i as i64)
            })
            .collect();
        let order = replacement_order(&nodes);
        let zones: Vec<_> = order.iter().map(|n| n.zone.clone().unwrap()).collect();
        assert_eq!(zones, ["x", "y", "z", "x", "y", "z", "x", "y", "z"]);
    }

    #[test]
    fn ties_break_by_name_and_zoneless_nodes_form_a_zone() {
        let nodes = vec![
            node("w-2", None, 0),
            node("w-1", None, 0),
            node("w-3", Some("a"), 1),
        ];
        assert_eq!(names(&replacement_order(&nodes)), ["w-1", "w-3", "w-2"]);
        assert!(replacement_order(&[]).is_empty());
    }
}
