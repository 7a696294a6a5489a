//! The account's On-Demand vCPU quota against a run's surge, for
//! `kubesurge check` (a room finding). A launch past the quota fails with
//! `VcpuLimitExceeded` mid-run; asked first, the run is never started.
//!
//! - On-Demand instances are limited per Region in vCPUs, one quota per
//!   group of instance families ("On-Demand Instance quotas", Amazon EC2
//!   User Guide, <https://docs.aws.amazon.com/ec2/latest/instancetypes/ec2-instance-quotas.html>):
//!   Standard (A, C, D, H, I, M, R, T, Z) `L-1216C47A`, F `L-74FC7D96`,
//!   G and VT `L-DB2E81BA`, Inf `L-1945791B`, P `L-417A185B`, X
//!   `L-7295265B`. Running and pending On-Demand instances count; Spot
//!   instances have quotas of their own. Other families (DL, Trn, HPC,
//!   High Memory, Mac) are not checked.
//! - The quota's value: Service Quotas `GetServiceQuota` (the applied
//!   value), else `GetAWSDefaultServiceQuota` ("For some quotas, only the
//!   default values are available", GetServiceQuota, Service Quotas API
//!   Reference).
//! - What runs: every pending or running On-Demand instance of the Region
//!   (`DescribeInstances`), each counted at its type's default vCPUs
//!   (`DescribeInstanceTypes`).
//! - What the run adds at once: its surge of the launch template's
//!   instance type.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{Filter, InstanceType};
use aws_sdk_servicequotas::error::{DisplayErrorContext, ProvideErrorMetadata};
use kubesurge_provider::{RoomFinding, RoomOutcome};

use crate::provider::AwsProvider;

/// One On-Demand vCPU quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuQuota {
    /// The Service Quotas code (`L-1216C47A`).
    pub code: &'static str,
    /// Its name in the Service Quotas console.
    pub name: &'static str,
}

const STANDARD: VcpuQuota = VcpuQuota {
    code: "L-1216C47A",
    name: "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances",
};
const F: VcpuQuota = VcpuQuota {
    code: "L-74FC7D96",
    name: "Running On-Demand F instances",
};
const G_AND_VT: VcpuQuota = VcpuQuota {
    code: "L-DB2E81BA",
    name: "Running On-Demand G and VT instances",
};
const INF: VcpuQuota = VcpuQuota {
    code: "L-1945791B",
    name: "Running On-Demand Inf instances",
};
const P: VcpuQuota = VcpuQuota {
    code: "L-417A185B",
    name: "Running On-Demand P instances",
};
const X: VcpuQuota = VcpuQuota {
    code: "L-7295265B",
    name: "Running On-Demand X instances",
};

/// The quota an On-Demand instance of `instance_type` counts against, by
/// the letters its family starts with (`m5.large` → M, `inf2.xlarge` →
/// Inf, `g4dn.xlarge` → G); `None` for the families not checked.
pub fn quota_of(instance_type: &str) -> Option<VcpuQuota> {
    let letters: String = instance_type
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_lowercase();
    match letters.as_str() {
        "a" | "c" | "d" | "h" | "i" | "im" | "is" | "m" | "r" | "t" | "z" => Some(STANDARD),
        "f" => Some(F),
        "g" | "gr" | "vt" => Some(G_AND_VT),
        "inf" => Some(INF),
        "p" => Some(P),
        "x" => Some(X),
        _ => None,
    }
}

/// The finding for a quota of `limit` vCPUs of which `used` run, when
/// the run adds `surge` instances of `per_instance` vCPUs at once.
pub fn finding(
    quota: VcpuQuota,
    instance_type: &str,
    limit: f64,
    used: u64,
    per_instance: u64,
    surge: u32,
) -> RoomFinding {
    let needed = per_instance * u64::from(surge);
    let subject = format!("vCPU quota {} ({})", quota.code, quota.name);
    // Quotas are whole vCPUs; a fraction would be rounded down by EC2.
    let limit = limit.max(0.0).floor() as u64;
    let free = limit.saturating_sub(used);
    let outcome = if free >= needed {
        RoomOutcome::Enough {
            message: format!(
                "{used} of {limit} vCPUs run; the run's surge adds {needed} ({surge} × {instance_type}, {per_instance} each)"
            ),
        }
    } else {
        RoomOutcome::Short {
            message: format!(
                "{used} of {limit} vCPUs run and the run's surge needs {needed} more ({surge} × {instance_type}, {per_instance} each): launches would fail with VcpuLimitExceeded"
            ),
            fix: format!(
                "request an increase of {} ({}) to at least {} vCPUs in Service Quotas, or lower the pool's maxSurge",
                quota.code,
                quota.name,
                used + needed
            ),
        }
    };
    RoomFinding { subject, outcome }
}

fn unknown(subject: String, message: String) -> RoomFinding {
    RoomFinding {
        subject,
        outcome: RoomOutcome::Unknown { message },
    }
}

/// The quota finding of a pool whose launches are of `instance_type`,
/// `surge` at once; `None` for a family whose quota is not checked.
pub(crate) async fn room(
    provider: &AwsProvider,
    instance_type: &str,
    surge: u32,
) -> Option<RoomFinding> {
    let quota = quota_of(instance_type)?;
    let subject = format!("vCPU quota {} ({})", quota.code, quota.name);
    let limit = match limit(provider, quota).await {
        Ok(limit) => limit,
        Err(message) => return Some(unknown(subject, message)),
    };
    let running = match running_types(provider).await {
        Ok(running) => running,
        Err(message) => return Some(unknown(subject, message)),
    };
    let counted: Vec<&String> = running
        .iter()
        .filter(|t| quota_of(t).map(|q| q.code) == Some(quota.code))
        .collect();
    let mut types: BTreeSet<&str> = counted.iter().map(|t| t.as_str()).collect();
    types.insert(instance_type);
    let vcpus = match vcpus_of(provider, &types).await {
        Ok(vcpus) => vcpus,
        Err(message) => return Some(unknown(subject, message)),
    };
    let Some(per_instance) = vcpus.get(instance_type).copied() else {
        return Some(unknown(
            subject,
            format!("EC2 does not describe instance type {instance_type}"),
        ));
    };
    let used = counted
        .iter()
        .map(|t| vcpus.get(t.as_str()).copied().unwrap_or(0))
        .sum();
    Some(finding(
        quota,
        instance_type,
        limit,
        used,
        per_instance,
        surge,
    ))
}

/// The quota's applied value, else its default.
async fn limit(provider: &AwsProvider, quota: VcpuQuota) -> Result<f64, String> {
    let client = aws_sdk_servicequotas::Client::new(provider.sdk_config().await);
    let value = match client
        .get_service_quota()
        .service_code("ec2")
        .quota_code(quota.code)
        .send()
        .await
    {
        Ok(out) => out.quota().and_then(|q| q.value()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_no_such_resource_exception()) =>
        {
            client
                .get_aws_default_service_quota()
                .service_code("ec2")
                .quota_code(quota.code)
                .send()
                .await
                .map_err(|e| refused("servicequotas:GetAWSDefaultServiceQuota", &e))?
                .quota()
                .and_then(|q| q.value())
        }
        Err(e) => return Err(refused("servicequotas:GetServiceQuota", &e)),
    };
    value.ok_or_else(|| format!("Service Quotas shows no value for {}", quota.code))
}

fn refused<E>(action: &str, e: &aws_sdk_servicequotas::error::SdkError<E>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match e.code() {
        Some("AccessDeniedException") => format!(
            "{action} denied ({}): allow it to the credentials kubesurge runs with (terraform/modules/iam has the policy)",
            e.message().unwrap_or("access denied")
        ),
        _ => format!("{action} failed: {}", DisplayErrorContext(e)),
    }
}

/// The instance type of every pending or running On-Demand instance of
/// the Region.
async fn running_types(provider: &AwsProvider) -> Result<Vec<String>, String> {
    let mut pages = provider
        .ec2()
        .await
        .describe_instances()
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .build(),
        )
        .max_results(1000)
        .into_paginator()
        .send();
    let mut types = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            format!(
                "ec2:DescribeInstances failed: {}",
                aws_sdk_ec2::error::DisplayErrorContext(&e)
            )
        })?;
        types.extend(
            page.reservations()
                .iter()
                .flat_map(|r| r.instances())
                // Spot and scheduled instances have quotas of their own.
                .filter(|i| i.instance_lifecycle().is_none())
                .filter_map(|i| i.instance_type().map(|t| t.as_str().to_string())),
        );
    }
    Ok(types)
}

/// The default vCPUs of each of `types`.
async fn vcpus_of(
    provider: &AwsProvider,
    types: &BTreeSet<&str>,
) -> Result<BTreeMap<String, u64>, String> {
    let mut vcpus = BTreeMap::new();
    // DescribeInstanceTypes takes at most 100 types per call.
    let all: Vec<&str> = types.iter().copied().collect();
    for chunk in all.chunks(100) {
        let mut pages = provider
            .ec2()
            .await
            .describe_instance_types()
            .set_instance_types(Some(chunk.iter().map(|t| InstanceType::from(*t)).collect()))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                format!(
                    "ec2:DescribeInstanceTypes failed: {}",
                    aws_sdk_ec2::error::DisplayErrorContext(&e)
                )
            })?;
            for info in page.instance_types() {
                if let (Some(t), Some(n)) = (
                    info.instance_type(),
                    info.v_cpu_info().and_then(|v| v.default_v_cpus()),
                ) {
                    vcpus.insert(t.as_str().to_string(), u64::try_from(n).unwrap_or(0));
                }
            }
        }
    }
    Ok(vcpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_map_to_their_quota() {
        for (t, code) in [
            ("m5.large", "L-1216C47A"),
            ("t3.medium", "L-1216C47A"),
            ("c7gn.xlarge", "L-1216C47A"),
            ("im4gn.large", "L-1216C47A"),
            ("r7iz.2xlarge", "L-1216C47A"),
            ("g4dn.xlarge", "L-DB2E81BA"),
            ("vt1.3xlarge", "L-DB2E81BA"),
            ("p4d.24xlarge", "L-417A185B"),
            ("inf2.xlarge", "L-1945791B"),
            ("x2idn.16xlarge", "L-7295265B"),
            ("f1.2xlarge", "L-74FC7D96"),
        ] {
            assert_eq!(quota_of(t).map(|q| q.code), Some(code), "{t}");
        }
        for t in [
            "dl1.24xlarge",
            "trn1.2xlarge",
            "hpc7g.4xlarge",
            "u-6tb1.metal",
            "mac1.metal",
        ] {
            assert_eq!(quota_of(t), None, "{t}");
        }
    }

    #[test]
    fn the_surge_fits_or_the_fix_names_the_quota_and_the_value() {
        let fits = finding(STANDARD, "t3.medium", 32.0, 24, 2, 4);
        assert!(
            matches!(&fits.outcome, RoomOutcome::Enough { message } if message.contains("24 of 32")),
            "{fits:?}"
        );
        let short = finding(STANDARD, "t3.medium", 32.0, 26, 2, 4);
        let RoomOutcome::Short { message, fix } = &short.outcome else {
            panic!("short: {short:?}");
        };
        assert!(message.contains("needs 8 more"), "{message}");
        assert!(
            fix.contains("L-1216C47A") && fix.contains("at least 34"),
            "{fix}"
        );
        assert!(short.subject.contains("L-1216C47A"));
    }
}
