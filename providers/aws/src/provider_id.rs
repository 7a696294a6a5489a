//! EC2's `spec.providerID` convention: what a new node's kubelet is told to
//! register with, and how an instance id is read back from one.

use kubesurge_provider::ProviderIdRule;

/// The rule the core is handed (see `KIND`).
pub const RULE: ProviderIdRule = ProviderIdRule {
    script: SCRIPT,
    instance_id: instance_id_of,
};

/// Bash that prints the machine's providerID, `aws:///<zone>/<id>` (what
/// cloud-provider-aws writes), read from the instance metadata service
/// with an IMDSv2 session token: launches require IMDSv2.
const SCRIPT: &str = r#"  local token
  token="$(curl -sS --retry 5 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' http://169.254.169.254/latest/api/token)"
  printf 'aws:///%s/%s' \
    "$(curl -sS --retry 5 -H "X-aws-ec2-metadata-token: ${token}" http://169.254.169.254/latest/meta-data/placement/availability-zone)" \
    "$(curl -sS --retry 5 -H "X-aws-ec2-metadata-token: ${token}" http://169.254.169.254/latest/meta-data/instance-id)""#;

/// `aws:///<zone>/<id>`: what the kubelet of an EC2 node reports.
pub fn provider_id(zone: &str, id: &str) -> String {
    format!("aws:///{zone}/{id}")
}

/// The instance id in a node's `spec.providerID`, in each form
/// cloud-provider-aws accepts (`KubernetesInstanceID.MapToAWSInstanceID`,
/// kubernetes/cloud-provider-aws `pkg/providers/v1/instances.go`):
/// `aws:///<zone>/<id>`, `aws:////<id>` (no zone) and a bare `i-…`.
pub fn instance_id_of(provider_id: &str) -> Option<&str> {
    let p = provider_id.trim();
    let id = match p.strip_prefix("aws://") {
        Some(rest) => rest.rsplit('/').next()?,
        None => p,
    };
    let valid = id
        .strip_prefix("i-")
        .is_some_and(|hex| !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_alphanumeric()));
    valid.then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_ids_in_every_form_kubelets_write() {
        assert_eq!(
            instance_id_of("aws:///us-east-1a/i-0abc123"),
            Some("i-0abc123")
        );
        assert_eq!(instance_id_of("aws:////i-0abc123"), Some("i-0abc123"));
        assert_eq!(instance_id_of("i-0abc123"), Some("i-0abc123"));
        assert_eq!(instance_id_of("aws:///us-east-1a/"), None);
        assert_eq!(instance_id_of("gce://p/z/vm-1"), None);
        assert_eq!(instance_id_of("sim:///zone-a/i-1"), None);
        assert_eq!(instance_id_of(""), None);
    }

    #[test]
    fn what_is_written_reads_back() {
        let written = provider_id("eu-west-1a", "i-0123456789abcdef0");
        assert_eq!(written, "aws:///eu-west-1a/i-0123456789abcdef0");
        assert_eq!((RULE.instance_id)(&written), Some("i-0123456789abcdef0"));
        assert!(RULE.script.contains("printf 'aws:///%s/%s'"));
    }
}
