//! The account's EC2 quotas in Service Quotas, answered by the fault
//! proxy: moto 5.2 serves Service Quotas for the `vpc` service only
//! (`GetServiceQuota` of an `ec2` quota answers `NoSuchResourceException`,
//! `GetAWSDefaultServiceQuota` an HTML 500).
//!
//! The world's account has an applied value for each quota in its map
//! (by default the On-Demand Standard vCPU quota, [`STANDARD_VCPUS`]);
//! `GetServiceQuota` answers it as Service Quotas does (JSON 1.1,
//! `{"Quota": {...}}`,
//! <https://docs.aws.amazon.com/servicequotas/2019-06-24/apireference/API_GetServiceQuota.html>),
//! and `NoSuchResourceException` for a quota without one, as does
//! `GetAWSDefaultServiceQuota` (the world keeps no defaults).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::iam::ACCOUNT;
use super::proxy::Canned;

/// "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances".
pub const STANDARD_CODE: &str = "L-1216C47A";

/// The world account's applied On-Demand Standard vCPU quota.
pub const STANDARD_VCPUS: f64 = 640.0;

/// The applied quotas of the world's account: quota code → value.
pub fn defaults() -> BTreeMap<String, f64> {
    BTreeMap::from([(STANDARD_CODE.to_string(), STANDARD_VCPUS)])
}

/// The answer to a Service Quotas call `action` with `body`, in `region`;
/// `None` for the calls moto answers itself (other services' quotas).
pub fn answer(
    action: &str,
    body: &[u8],
    region: &str,
    quotas: &BTreeMap<String, f64>,
) -> Option<Canned> {
    let request: Value = serde_json::from_slice(body).unwrap_or_default();
    let service = request["ServiceCode"].as_str().unwrap_or_default();
    let code = request["QuotaCode"].as_str().unwrap_or_default();
    if service != "ec2" {
        return None;
    }
    let applied = match action {
        "GetServiceQuota" => quotas.get(code).copied(),
        "GetAWSDefaultServiceQuota" => None,
        _ => return None,
    };
    Some(match applied {
        Some(value) => Canned::json(
            200,
            &json!({
                "Quota": {
                    "ServiceCode": "ec2",
                    "ServiceName": "Amazon Elastic Compute Cloud (Amazon EC2)",
                    "QuotaArn": format!("arn:aws:servicequotas:{region}:{ACCOUNT}:ec2/{code}"),
                    "QuotaCode": code,
                    "Value": value,
                    "Unit": "None",
                    "Adjustable": true,
                    "GlobalQuota": false,
                }
            })
            .to_string(),
        ),
        None => Canned::json_error(
            400,
            "NoSuchResourceException",
            &format!("The request failed because the specified quota {code} does not exist."),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_applied_quota_is_answered_and_others_do_not_exist() {
        let quotas = defaults();
        let body = br#"{"ServiceCode":"ec2","QuotaCode":"L-1216C47A"}"#;
        let found = answer("GetServiceQuota", body, "us-east-1", &quotas).expect("answered");
        assert_eq!(found.status, 200);
        let quota: Value = serde_json::from_str(&found.body).expect("json");
        assert_eq!(quota["Quota"]["Value"], STANDARD_VCPUS);
        assert_eq!(
            quota["Quota"]["QuotaArn"],
            "arn:aws:servicequotas:us-east-1:123456789012:ec2/L-1216C47A"
        );
        let other = br#"{"ServiceCode":"ec2","QuotaCode":"L-DB2E81BA"}"#;
        let missing = answer("GetServiceQuota", other, "us-east-1", &quotas).expect("answered");
        assert_eq!(missing.status, 400);
        assert!(missing.body.contains("NoSuchResourceException"));
        assert_eq!(
            answer("GetAWSDefaultServiceQuota", body, "us-east-1", &quotas).map(|c| c.status),
            Some(400)
        );
        // Other services' quotas are moto's.
        assert!(
            answer(
                "GetServiceQuota",
                br#"{"ServiceCode":"vpc","QuotaCode":"L-F678F1CE"}"#,
                "us-east-1",
                &quotas
            )
            .is_none()
        );
    }
}
