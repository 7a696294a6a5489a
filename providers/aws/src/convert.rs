//! EC2 shapes to the provider contract's types, and the small decisions
//! made on them (all pure).

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{self as ec2, InstanceStateName};
use jiff::Timestamp;
use kubesurge_provider::{Image, Instance, InstanceId, InstanceState, LaunchRequest};
use sha2::{Digest, Sha256};

use crate::provider_id::provider_id;

/// EC2 states `list` asks for: every one but `terminated`.
pub const LIVE_STATES: [&str; 5] = ["pending", "running", "stopping", "stopped", "shutting-down"];

/// The contract's state of an EC2 state. An unknown state is taken for
/// pending: the instance exists and is not known to be going away.
pub fn state(name: Option<&InstanceStateName>) -> InstanceState {
    match name {
        Some(InstanceStateName::Running) => InstanceState::Running,
        Some(InstanceStateName::Stopping) => InstanceState::Stopping,
        Some(InstanceStateName::Stopped) => InstanceState::Stopped,
        Some(InstanceStateName::ShuttingDown) => InstanceState::ShuttingDown,
        Some(InstanceStateName::Terminated) => InstanceState::Terminated,
        _ => InstanceState::Pending,
    }
}

fn timestamp(t: &aws_sdk_ec2::primitives::DateTime) -> Option<Timestamp> {
    Timestamp::new(t.secs(), t.subsec_nanos() as i32).ok()
}

/// The contract's view of an EC2 instance; `None` without an id.
pub fn instance(i: &ec2::Instance) -> Option<Instance> {
    let id = i.instance_id()?.to_string();
    let zone = i
        .placement()
        .and_then(|p| p.availability_zone())
        .unwrap_or_default()
        .to_string();
    Some(Instance {
        provider_id: provider_id(&zone, &id),
        id: InstanceId(id),
        state: state(i.state().and_then(|s| s.name())),
        zone,
        subnet: i.subnet_id().map(str::to_string),
        image: i.image_id().map(str::to_string),
        private_ip: i.private_ip_address().map(str::to_string),
        launched_at: i.launch_time().and_then(timestamp),
        tags: i
            .tags()
            .iter()
            .filter_map(|t| {
                Some((
                    t.key()?.to_string(),
                    t.value().unwrap_or_default().to_string(),
                ))
            })
            .collect(),
    })
}

/// EC2's idempotency token of a launch: the same for the same slot of the
/// same pool and cluster, 64 ASCII characters (EC2's limit).
pub fn client_token(request: &LaunchRequest) -> String {
    let mut hash = Sha256::new();
    for part in [
        request.pool.cluster.as_str(),
        request.pool.pool.as_str(),
        &request.slot.tag_value(),
    ] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The newest image by creation date; images without a date come last.
pub fn newest_image(images: &[ec2::Image]) -> Option<Image> {
    images
        .iter()
        .filter_map(|i| {
            let id = i.image_id()?.to_string();
            let created = i.creation_date().and_then(|d| d.parse::<Timestamp>().ok());
            Some(Image {
                id,
                name: i.name().map(str::to_string),
                created,
            })
        })
        // Ties (same second) go to the larger id, so the choice is stable.
        .max_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)))
}

/// The subnet a launch uses: the old node's when allowed, else one of the
/// pool's subnets in the zone, else none (EC2 picks in the zone).
///
/// `allowed` maps each of the pool's configured subnets to its zone.
pub fn choose_subnet(
    old_subnet: Option<&str>,
    zone: &str,
    allowed: Option<&BTreeMap<String, String>>,
) -> Result<Option<String>, String> {
    let Some(allowed) = allowed else {
        return Ok(old_subnet.map(str::to_string));
    };
    if let Some(old) = old_subnet
        && allowed.contains_key(old)
    {
        return Ok(Some(old.to_string()));
    }
    allowed
        .iter()
        .find(|(_, z)| z.as_str() == zone)
        .map(|(s, _)| Some(s.clone()))
        .ok_or_else(|| {
            format!(
                "none of the pool's subnets ({}) is in zone {zone}, where the replaced node was",
                allowed.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubesurge_provider::{PoolRef, Sensitive, SlotKey, tags};

    fn request(cluster: &str, slot: &str) -> LaunchRequest {
        LaunchRequest {
            pool: PoolRef {
                cluster: cluster.into(),
                pool: "general".into(),
            },
            slot: SlotKey {
                run_id: "run-1".into(),
                old_node: slot.into(),
                attempt: 1,
            },
            image: "ami-1".into(),
            zone: "us-east-1a".into(),
            subnet: None,
            user_data: Sensitive::new(String::new()),
            node_name: "general-x".into(),
            extra_tags: BTreeMap::from([
                (tags::CLUSTER.to_string(), "spoofed".to_string()),
                ("team".to_string(), "a".to_string()),
            ]),
        }
    }

    #[test]
    fn client_tokens_are_per_slot_and_fit_ec2() {
        let a = client_token(&request("prod", "node-1"));
        assert_eq!(a.len(), 64);
        assert!(a.is_ascii());
        assert_eq!(a, client_token(&request("prod", "node-1")));
        assert_ne!(a, client_token(&request("prod", "node-2")));
        assert_ne!(a, client_token(&request("staging", "node-1")));
    }

    #[test]
    fn the_newest_image_wins() {
        let image = |id: &str, date: Option<&str>| {
            let mut b = ec2::Image::builder().image_id(id);
            if let Some(d) = date {
                b = b.creation_date(d);
            }
            b.build()
        };
        let images = [
            image("ami-old", Some("2025-01-01T00:00:00.000Z")),
            image("ami-new", Some("2026-03-01T10:00:00.000Z")),
            image("ami-undated", None),
            image("ami-mid", Some("2025-06-01T00:00:00Z")),
        ];
        assert_eq!(newest_image(&images).unwrap().id, "ami-new");
        assert_eq!(newest_image(&[]), None);
    }

    #[test]
    fn subnets_follow_the_old_node_within_what_the_pool_allows() {
        assert_eq!(
            choose_subnet(Some("subnet-a"), "z1", None),
            Ok(Some("subnet-a".into()))
        );
        assert_eq!(choose_subnet(None, "z1", None), Ok(None));
        let allowed = BTreeMap::from([
            ("subnet-b".to_string(), "z1".to_string()),
            ("subnet-c".to_string(), "z2".to_string()),
        ]);
        assert_eq!(
            choose_subnet(Some("subnet-c"), "z2", Some(&allowed)),
            Ok(Some("subnet-c".into()))
        );
        assert_eq!(
            choose_subnet(Some("subnet-a"), "z1", Some(&allowed)),
            Ok(Some("subnet-b".into()))
        );
        assert!(choose_subnet(Some("subnet-a"), "z3", Some(&allowed)).is_err());
    }

    #[test]
    fn states_map_and_unknown_is_pending() {
        assert_eq!(
            state(Some(&InstanceStateName::ShuttingDown)),
            InstanceState::ShuttingDown
        );
        assert_eq!(
            state(Some(&InstanceStateName::Terminated)),
            InstanceState::Terminated
        );
        assert_eq!(state(None), InstanceState::Pending);
    }
}
