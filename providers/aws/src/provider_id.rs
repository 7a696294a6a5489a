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
/// with an IMDSv2 session token: launches require IMDSv2. It fails loudly
/// rather than print an error page: without `-f` curl prints an IMDS 401
/// or 404 body and exits 0, and a command substitution inside `printf`'s
/// arguments is not checked by `set -e` — the body would become the
/// kubelet's providerID. Every call is checked and the result validated.
const SCRIPT: &str = r#"  local token zone id
  token="$(curl -fsS --retry 5 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' http://169.254.169.254/latest/api/token)" || return 1
  zone="$(curl -fsS --retry 5 -H "X-aws-ec2-metadata-token: ${token}" http://169.254.169.254/latest/meta-data/placement/availability-zone)" || return 1
  id="$(curl -fsS --retry 5 -H "X-aws-ec2-metadata-token: ${token}" http://169.254.169.254/latest/meta-data/instance-id)" || return 1
  if [[ ! "${id}" =~ ^i-[0-9a-f]+$ || ! "${zone}" =~ ^[a-z0-9-]+$ ]]; then
    echo "kubesurge: the instance metadata service gave no instance id and zone" >&2
    return 1
  fi
  printf 'aws:///%s/%s' "${zone}" "${id}""#;

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

    /// The script under bash with a `curl` stand-in on PATH: answers the
    /// way IMDS does (`ok`), or refuses as IMDS does an expired token — 401,
    /// which `curl -f` turns into exit 22 — or answers an error page.
    fn run_script(curl: &str) -> std::process::Output {
        let dir = tempfile::tempdir().unwrap();
        let stub = dir.path().join("curl");
        std::fs::write(&stub, format!("#!/bin/bash\n{curl}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!(
            "{}:{}",
            dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        std::process::Command::new("bash")
            .arg("-c")
            .arg(format!("set -euo pipefail\nprovider_id() {{\n{SCRIPT}\n}}\nP=\"$(provider_id)\"\necho \"$P\""))
            .env("PATH", path)
            .output()
            .unwrap()
    }

    #[test]
    fn the_script_prints_the_provider_id_or_fails_loudly() {
        let ok = run_script(
            r#"case "$*" in *api/token*) echo TOKEN;; *availability-zone*) echo -n eu-west-1a;; *instance-id*) echo -n i-0123456789abcdef0;; esac"#,
        );
        assert!(ok.status.success(), "{ok:?}");
        assert_eq!(
            String::from_utf8_lossy(&ok.stdout).trim(),
            "aws:///eu-west-1a/i-0123456789abcdef0"
        );

        // The token is refused (IMDSv2 401 with -f): no providerID at all.
        let refused = run_script(
            r#"case "$*" in *api/token*) echo TOKEN;; *) echo "curl: (22) The requested URL returned error: 401" >&2; exit 22;; esac"#,
        );
        assert!(!refused.status.success(), "{refused:?}");
        assert!(
            String::from_utf8_lossy(&refused.stdout).trim().is_empty(),
            "{refused:?}"
        );

        // An answer that is not an instance id (an error page served 200).
        let page = run_script(
            r#"case "$*" in *api/token*) echo TOKEN;; *) echo '<html>404 - Not Found</html>';; esac"#,
        );
        assert!(!page.status.success(), "{page:?}");
        assert!(
            String::from_utf8_lossy(&page.stderr).contains("gave no instance id"),
            "{page:?}"
        );
    }

    #[test]
    fn what_is_written_reads_back() {
        let written = provider_id("eu-west-1a", "i-0123456789abcdef0");
        assert_eq!(written, "aws:///eu-west-1a/i-0123456789abcdef0");
        assert_eq!((RULE.instance_id)(&written), Some("i-0123456789abcdef0"));
        assert!(RULE.script.contains("printf 'aws:///%s/%s'"));
        assert!(
            !RULE.script.contains("curl -sS"),
            "every curl fails on HTTP errors"
        );
    }
}
