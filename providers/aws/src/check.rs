//! Room for a run's surge, asked of EC2 and Auto Scaling for `kubesurge
//! check` (`CloudProvider::check_room`). Every call is a Describe.
//!
//! - Free addresses: each subnet a replacement launches into (the old
//!   node's, or the pool's subnet in its zone, as a launch chooses it) needs
//!   one free private address per replacement in flight there — at most the
//!   surge, at most the replaced nodes in that subnet. A launch into a full
//!   subnet fails with `InsufficientFreeAddressesInSubnet` (EC2 API
//!   reference, "Error codes"); `AvailableIpAddressCount` is "the number of
//!   unused private IPv4 addresses in the subnet"
//!   (<https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_Subnet.html>).
//! - An Auto Scaling group's headroom: the run raises `MaxSize` by the
//!   surge and restores it (`asg::record`); a record of a run in the
//!   group's tags that cannot be read stops a run, one of another run is
//!   restored first.
//!
//! - Reachability of a control-plane node through SSM: its agent's
//!   `PingStatus` (`DescribeInstanceInformation`; "Online", else
//!   "ConnectionLost" or "Inactive",
//!   <https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_InstanceInformation.html>),
//!   a read where a no-op command would be a `SendCommand`.
//!
//! - The account's On-Demand vCPU quota for the launch template's
//!   instance type against what runs and the surge (`crate::quota`).
//!
//! (The group's Auto Scaling permissions are asked of IAM's policy
//! simulator, `crate::simulate`, beside EC2's dry runs.)
//!
//! Not checked, and why: instance refreshes in progress
//! (`DescribeInstanceRefreshes` is not served by moto, the emulator the
//! provider is proven against; a run suspends `InstanceRefresh` for its
//! length anyway).

use std::collections::BTreeMap;

use aws_sdk_ssm::error::DisplayErrorContext;
use aws_sdk_ssm::types::{InstanceInformationStringFilter, PingStatus};
use kubesurge_provider::{
    ExecError, ExecTarget, ProviderError, RoomFinding, RoomOutcome, RoomProbe,
};

use crate::asg::record::{self, GroupState};
use crate::convert;
use crate::errors::{Call, from_sdk};
use crate::provider::AwsProvider;

/// A subnet as `DescribeSubnets` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubnetRoom {
    pub zone: String,
    pub free: i64,
}

/// Free addresses each subnet needs: one per replacement in flight in it,
/// never more than `surge` at once (`launches` lists the subnet of each
/// replacement).
pub fn addresses_needed(launches: &[String], surge: u32) -> BTreeMap<String, u32> {
    let mut per_subnet: BTreeMap<String, u32> = BTreeMap::new();
    for subnet in launches {
        *per_subnet.entry(subnet.clone()).or_default() += 1;
    }
    per_subnet
        .into_iter()
        .map(|(subnet, n)| (subnet, n.min(surge.max(1))))
        .collect()
}

/// One finding per subnet: enough free addresses for what it needs, or
/// short of them.
pub fn subnet_findings(
    needed: &BTreeMap<String, u32>,
    found: &BTreeMap<String, SubnetRoom>,
) -> Vec<RoomFinding> {
    needed
        .iter()
        .map(|(subnet, need)| match found.get(subnet) {
            None => RoomFinding {
                subject: format!("subnet {subnet}"),
                outcome: RoomOutcome::Unknown {
                    message: format!("EC2 does not show subnet {subnet}"),
                },
            },
            Some(room) => {
                let subject = format!("subnet {subnet} ({})", room.zone);
                let outcome = if room.free >= i64::from(*need) {
                    RoomOutcome::Enough {
                        message: format!(
                            "{} free address(es), {need} needed by the replacements in flight there",
                            room.free
                        ),
                    }
                } else {
                    RoomOutcome::Short {
                        message: format!(
                            "subnet {subnet} has {} free address(es); the run launches up to {need} replacement(s) into it at once",
                            room.free
                        ),
                        fix: format!(
                            "free addresses in subnet {subnet} (release unused network interfaces), or list a subnet of zone {} with room in the pool's aws.subnets",
                            room.zone
                        ),
                    }
                };
                RoomFinding { subject, outcome }
            }
        })
        .collect()
}

/// The group's headroom for a run with `surge`: what the run will do to
/// its `MaxSize`, or the record in its tags that stops it.
pub fn group_finding(group: &GroupState, surge: u32) -> RoomFinding {
    let subject = format!("Auto Scaling group {}", group.name);
    let raised = |from: i32| from.saturating_add(i32::try_from(surge).unwrap_or(i32::MAX));
    let outcome = match record::record_of(&group.tags) {
        Err(why) => RoomOutcome::Short {
            message: format!(
                "its tags hold a record of a run that cannot be read ({why}): a run changes nothing on a guess"
            ),
            fix: format!(
                "fix or delete the kubesurge.io/ tags of Auto Scaling group {} ({} holds its MaxSize before that run)",
                group.name,
                record::ORIGINAL_MAX_TAG
            ),
        },
        Ok(Some(r)) => RoomOutcome::Enough {
            message: format!(
                "carries run {}'s record (MaxSize {} raised to {}): a run restores it first, then raises MaxSize {} to {} for its surge of {surge}",
                r.run_id,
                r.original_max,
                r.raised_max,
                r.original_max,
                raised(r.original_max)
            ),
        },
        Ok(None) => RoomOutcome::Enough {
            message: format!(
                "MaxSize {} (desired {}): raised to {} for the run's surge of {surge}, restored after",
                group.max_size,
                group.desired,
                raised(group.max_size)
            ),
        },
    };
    RoomFinding { subject, outcome }
}

fn unknown(subject: &str, error: &ProviderError) -> RoomFinding {
    RoomFinding {
        subject: subject.to_string(),
        outcome: RoomOutcome::Unknown {
            message: error.to_string(),
        },
    }
}

/// Every room finding of `provider`'s pool.
pub(crate) async fn room(provider: &AwsProvider, probe: &RoomProbe) -> Vec<RoomFinding> {
    let mut findings = Vec::new();
    match launch_subnets(provider, probe).await {
        Ok(launches) => {
            let needed = addresses_needed(&launches, probe.surge);
            if !needed.is_empty() {
                match describe_subnets(provider, needed.keys().cloned().collect()).await {
                    Ok(found) => findings.extend(subnet_findings(&needed, &found)),
                    Err(e) => findings.push(unknown("subnets", &e)),
                }
            }
        }
        Err(e) => findings.push(unknown("subnets", &e)),
    }
    if !probe.replaced.is_empty() {
        let surge = probe
            .surge
            .clamp(1, u32::try_from(probe.replaced.len()).unwrap_or(u32::MAX));
        match provider.template_instance_type().await {
            Ok(Some(instance_type)) => {
                findings.extend(crate::quota::room(provider, &instance_type, surge).await);
            }
            Ok(None) => findings.push(unknown(
                "vCPU quota",
                &ProviderError::InvalidConfig {
                    message: "the pool's launch template version names no instance type".into(),
                },
            )),
            Err(e) => findings.push(unknown("vCPU quota", &e)),
        }
    }
    if let Some(group) = provider.group().await {
        findings.push(match group.describe().await {
            Ok(described) => group_finding(&described.state, probe.surge),
            Err(ProviderError::InvalidConfig { message }) => RoomFinding {
                subject: format!("Auto Scaling group {}", group.group_name()),
                outcome: RoomOutcome::Short {
                    message,
                    fix: "name an existing group in the pool's aws.autoScalingGroup".into(),
                },
            },
            Err(e) => unknown(&format!("Auto Scaling group {}", group.group_name()), &e),
        });
    }
    findings
}

/// The subnet each replacement launches into, chosen as a launch chooses
/// it; a replacement placed by zone alone (EC2 picks the subnet) is left
/// out.
async fn launch_subnets(
    provider: &AwsProvider,
    probe: &RoomProbe,
) -> Result<Vec<String>, ProviderError> {
    let allowed = provider.allowed_subnets().await?;
    let mut launches = Vec::new();
    for old in &probe.replaced {
        let chosen = convert::choose_subnet(old.subnet.as_deref(), &old.zone, allowed)
            .map_err(|message| ProviderError::InvalidConfig { message })?;
        launches.extend(chosen);
    }
    Ok(launches)
}

async fn describe_subnets(
    provider: &AwsProvider,
    ids: Vec<String>,
) -> Result<BTreeMap<String, SubnetRoom>, ProviderError> {
    let out = provider
        .ec2()
        .await
        .describe_subnets()
        .set_subnet_ids(Some(ids))
        .send()
        .await
        .map_err(|e| from_sdk(Call::DescribeSubnets, &e, None))?;
    Ok(out
        .subnets()
        .iter()
        .filter_map(|s| {
            Some((
                s.subnet_id()?.to_string(),
                SubnetRoom {
                    zone: s.availability_zone().unwrap_or_default().to_string(),
                    free: i64::from(s.available_ip_address_count()?),
                },
            ))
        })
        .collect())
}

/// Whether the SSM agent of `instance` answers, from its `PingStatus`
/// (`None`: SSM does not know the instance).
pub fn ping_verdict(
    node: &str,
    instance: &str,
    status: Option<&PingStatus>,
) -> Result<(), ExecError> {
    let unreachable = |message: String| ExecError::Unreachable {
        node: node.to_string(),
        message,
    };
    match status {
        Some(PingStatus::Online) => Ok(()),
        Some(other) => Err(unreachable(format!(
            "the SSM agent of instance {instance} is {}",
            other.as_str()
        ))),
        None => Err(unreachable(format!(
            "no SSM agent is registered for instance {instance} (is the agent running, and does its instance profile allow Systems Manager?)"
        ))),
    }
}

/// `SsmExec::reach`: the agent's status, asked with
/// `DescribeInstanceInformation`.
pub(crate) async fn ssm_reach(
    client: &aws_sdk_ssm::Client,
    target: &ExecTarget,
) -> Result<(), ExecError> {
    let node = target.node.as_str();
    let instance = target
        .instance
        .as_ref()
        .ok_or_else(|| ExecError::Unreachable {
            node: node.to_string(),
            message: "SSM needs the node's instance id, and none is known".into(),
        })?;
    let transport = |message: String| ExecError::Transport {
        node: node.to_string(),
        message,
    };
    let filter = InstanceInformationStringFilter::builder()
        .key("InstanceIds")
        .values(instance.0.clone())
        .build()
        .map_err(|e| transport(e.to_string()))?;
    let out = client
        .describe_instance_information()
        .filters(filter)
        .send()
        .await
        .map_err(|e| {
            transport(format!(
                "ssm:DescribeInstanceInformation: {}",
                DisplayErrorContext(&e)
            ))
        })?;
    let status = out
        .instance_information_list()
        .iter()
        .find(|i| i.instance_id() == Some(instance.0.as_str()))
        .and_then(|i| i.ping_status());
    ping_verdict(node, &instance.0, status)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn subnets(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_subnet_needs_one_address_per_replacement_in_flight_at_most_the_surge() {
        let needed = addresses_needed(&subnets(&["a", "a", "a", "b"]), 2);
        assert_eq!(needed, BTreeMap::from([("a".into(), 2), ("b".into(), 1)]));
        // A zero surge still launches one at a time.
        let needed = addresses_needed(&subnets(&["a", "a"]), 0);
        assert_eq!(needed, BTreeMap::from([("a".into(), 1)]));
    }

    #[test]
    fn a_full_subnet_is_short_and_names_its_fix() {
        let needed = BTreeMap::from([("subnet-1".to_string(), 2), ("subnet-2".to_string(), 1)]);
        let found = BTreeMap::from([
            (
                "subnet-1".to_string(),
                SubnetRoom {
                    zone: "us-east-1a".into(),
                    free: 1,
                },
            ),
            (
                "subnet-2".to_string(),
                SubnetRoom {
                    zone: "us-east-1b".into(),
                    free: 4000,
                },
            ),
        ]);
        let findings = subnet_findings(&needed, &found);
        assert_eq!(findings.len(), 2);
        assert_eq!(findings[0].subject, "subnet subnet-1 (us-east-1a)");
        let RoomOutcome::Short { message, fix } = &findings[0].outcome else {
            panic!("{findings:?}")
        };
        assert!(message.contains("1 free address"), "{message}");
        assert!(fix.contains("zone us-east-1a"), "{fix}");
        assert!(matches!(findings[1].outcome, RoomOutcome::Enough { .. }));
        // A subnet EC2 does not show is never taken for room.
        let findings = subnet_findings(&needed, &BTreeMap::new());
        assert!(
            findings
                .iter()
                .all(|f| matches!(f.outcome, RoomOutcome::Unknown { .. }))
        );
    }

    #[test]
    fn only_an_online_agent_is_reachable() {
        assert_eq!(
            ping_verdict("cp-1", "i-1", Some(&PingStatus::Online)),
            Ok(())
        );
        let Err(ExecError::Unreachable { node, message }) =
            ping_verdict("cp-1", "i-1", Some(&PingStatus::ConnectionLost))
        else {
            panic!()
        };
        assert_eq!(node, "cp-1");
        assert!(message.contains("ConnectionLost"), "{message}");
        let Err(ExecError::Unreachable { message, .. }) = ping_verdict("cp-1", "i-1", None) else {
            panic!()
        };
        assert!(
            message.contains("no SSM agent is registered for instance i-1"),
            "{message}"
        );
    }

    fn group(tags: &[(&str, &str)]) -> GroupState {
        GroupState {
            name: "workers".into(),
            min_size: 3,
            max_size: 3,
            desired: 3,
            suspended: BTreeSet::new(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn a_group_says_how_its_max_size_is_raised_or_which_record_stops_the_run() {
        let RoomOutcome::Enough { message } = group_finding(&group(&[]), 2).outcome else {
            panic!()
        };
        assert!(
            message.contains("MaxSize 3") && message.contains("raised to 5"),
            "{message}"
        );
        let other = group(&[
            (record::RUN_TAG, "run-0"),
            (record::ORIGINAL_MAX_TAG, "3"),
            (record::RAISED_MAX_TAG, "4"),
            (record::SUSPENDED_TAG, "AZRebalance"),
        ]);
        let RoomOutcome::Enough { message } = group_finding(&other, 1).outcome else {
            panic!()
        };
        assert!(
            message.contains("run-0") && message.contains("restores it first"),
            "{message}"
        );
        let bad = group(&[(record::RUN_TAG, "run-0")]);
        let RoomOutcome::Short { fix, .. } = group_finding(&bad, 1).outcome else {
            panic!()
        };
        assert!(
            fix.contains("kubesurge.io/ tags of Auto Scaling group workers"),
            "{fix}"
        );
    }
}
