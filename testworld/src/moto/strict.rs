//! EC2 rules moto does not enforce, enforced by the fault proxy before a
//! call reaches moto, so that the world refuses what EC2 refuses.
//!
//! - A `RunInstances` from a launch template whose version defines network
//!   interfaces, with a top-level `SubnetId`: EC2 answers
//!   `InvalidParameterCombination` ("Network interfaces and an
//!   instance-level subnet ID may not be specified on the same request";
//!   "If you specify a network interface, you must specify any security
//!   groups and subnets as part of the network interface",
//!   <https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_RunInstances.html>,
//!   <https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/launch-templates.html>).
//!   moto 5 checks only interfaces given on the request itself
//!   (`moto/ec2/responses/instances.py`, `run_instances`) and ignores the
//!   template's interfaces altogether, so their security groups are lost
//!   without a word.

use super::ec2::Params;
use super::proxy::Ec2Fault;
use crate::apiserver::route::percent_decode;

/// The fields of a query-API form body, decoded, in order.
pub fn form(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

/// The first value of `key` in a form.
pub(crate) fn value<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// For a `RunInstances` form with both a launch template and a top-level
/// `SubnetId`: the `DescribeLaunchTemplateVersions` parameters that show
/// whether the template's version defines network interfaces.
pub fn template_lookup(form: &[(String, String)]) -> Option<Params> {
    value(form, "SubnetId")?;
    // EC2 launches the template's default version when none is named.
    let version = value(form, "LaunchTemplate.Version").unwrap_or("$Default");
    let params = if let Some(id) = value(form, "LaunchTemplate.LaunchTemplateId") {
        Params::new().set("LaunchTemplateId", id)
    } else {
        Params::new().set(
            "LaunchTemplateName",
            value(form, "LaunchTemplate.LaunchTemplateName")?,
        )
    };
    Some(params.set("LaunchTemplateVersion.1", version))
}

/// EC2's answer to a top-level subnet with a template's interfaces.
pub fn subnet_with_template_interfaces() -> Ec2Fault {
    Ec2Fault {
        status: 400,
        code: "InvalidParameterCombination".into(),
        message: "Network interfaces and an instance-level subnet ID may not be specified on \
                  the same request"
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_template_launch_with_a_top_level_subnet_is_looked_up() {
        let with = form(
            b"Action=RunInstances&LaunchTemplate.LaunchTemplateName=workers&LaunchTemplate.Version=%24Default&SubnetId=subnet-1",
        );
        assert!(template_lookup(&with).is_some());
        let by_id = form(b"Action=RunInstances&LaunchTemplate.LaunchTemplateId=lt-1&SubnetId=s");
        assert!(template_lookup(&by_id).is_some());
        let in_interface = form(
            b"Action=RunInstances&LaunchTemplate.LaunchTemplateName=workers&NetworkInterface.1.SubnetId=subnet-1",
        );
        assert!(template_lookup(&in_interface).is_none());
        let no_template = form(b"Action=RunInstances&SubnetId=subnet-1");
        assert!(template_lookup(&no_template).is_none());
    }
}
