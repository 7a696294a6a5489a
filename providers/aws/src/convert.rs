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

/// The network interfaces a launch asks for when the pool's launch template
/// defines its own, with the primary one (device index 0) moved to
/// `subnet`; everything else the template says of its interfaces (security
/// groups, public address, deletion on termination, …) is kept.
///
/// EC2 refuses a top-level `SubnetId` with interfaces from the template
/// ("If you specify a network interface, you must specify any security
/// groups and subnets as part of the network interface",
/// <https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_RunInstances.html>;
/// "Network interfaces and an instance-level subnet ID may not be specified
/// on the same request"), so the subnet travels in an override of the
/// interface. Parameters given on the request replace the template's
/// (<https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/launch-templates.html>):
/// the override repeats every interface, not only the primary one.
///
/// Interfaces with fixed addresses or an existing interface id cannot serve
/// a second instance next to the one still running: refused, naming why.
pub fn interfaces_in_subnet(
    template: &[ec2::LaunchTemplateInstanceNetworkInterfaceSpecification],
    subnet: &str,
) -> Result<Vec<ec2::InstanceNetworkInterfaceSpecification>, String> {
    template
        .iter()
        .map(|nic| {
            let index = nic.device_index().unwrap_or(0);
            let fixed = if nic.network_interface_id().is_some() {
                Some("attaches an existing network interface")
            } else if nic.private_ip_address().is_some() || !nic.private_ip_addresses().is_empty() {
                Some("fixes a private IPv4 address")
            } else if !nic.ipv6_addresses().is_empty() {
                Some("fixes IPv6 addresses")
            } else {
                None
            };
            if let Some(why) = fixed {
                return Err(format!(
                    "the launch template's network interface {index} {why}: a replacement \
                     cannot run next to the node it replaces"
                ));
            }
            let subnet = if index == 0 {
                Some(subnet.to_string())
            } else {
                nic.subnet_id().map(str::to_string)
            };
            Ok(ec2::InstanceNetworkInterfaceSpecification::builder()
                .device_index(index)
                .set_subnet_id(subnet)
                .set_groups(Some(nic.groups().to_vec()).filter(|g| !g.is_empty()))
                .set_associate_public_ip_address(nic.associate_public_ip_address())
                .set_associate_carrier_ip_address(nic.associate_carrier_ip_address())
                .set_delete_on_termination(nic.delete_on_termination())
                .set_description(nic.description().map(str::to_string))
                .set_interface_type(nic.interface_type().map(str::to_string))
                .set_network_card_index(nic.network_card_index())
                .set_secondary_private_ip_address_count(nic.secondary_private_ip_address_count())
                .set_ipv6_address_count(nic.ipv6_address_count())
                .set_ipv4_prefix_count(nic.ipv4_prefix_count())
                .set_ipv6_prefix_count(nic.ipv6_prefix_count())
                .set_primary_ipv6(nic.primary_ipv6())
                .set_ena_queue_count(nic.ena_queue_count())
                .build())
        })
        .collect()
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

    #[test]
    fn template_interfaces_move_to_the_subnet_and_keep_their_groups() {
        let template = [
            ec2::LaunchTemplateInstanceNetworkInterfaceSpecification::builder()
                .device_index(0)
                .subnet_id("subnet-template")
                .groups("sg-1")
                .groups("sg-2")
                .delete_on_termination(true)
                .associate_public_ip_address(false)
                .build(),
            ec2::LaunchTemplateInstanceNetworkInterfaceSpecification::builder()
                .device_index(1)
                .subnet_id("subnet-storage")
                .groups("sg-3")
                .build(),
        ];
        let nics = interfaces_in_subnet(&template, "subnet-old").expect("overrides");
        assert_eq!(nics.len(), 2);
        assert_eq!(nics[0].device_index(), Some(0));
        assert_eq!(nics[0].subnet_id(), Some("subnet-old"));
        assert_eq!(nics[0].groups(), ["sg-1", "sg-2"]);
        assert_eq!(nics[0].delete_on_termination(), Some(true));
        assert_eq!(nics[0].associate_public_ip_address(), Some(false));
        assert_eq!(
            nics[1].subnet_id(),
            Some("subnet-storage"),
            "only the primary moves"
        );
        assert_eq!(nics[1].groups(), ["sg-3"]);
    }

    #[test]
    fn template_interfaces_with_fixed_addresses_are_refused() {
        let fixed = ec2::LaunchTemplateInstanceNetworkInterfaceSpecification::builder()
            .device_index(0)
            .private_ip_address("10.0.0.5")
            .build();
        let refused = interfaces_in_subnet(&[fixed], "subnet-old").expect_err("refused");
        assert!(
            refused.contains("fixes a private IPv4 address"),
            "{refused}"
        );
        let attached = ec2::LaunchTemplateInstanceNetworkInterfaceSpecification::builder()
            .network_interface_id("eni-1")
            .build();
        assert!(interfaces_in_subnet(&[attached], "subnet-old").is_err());
    }
}
