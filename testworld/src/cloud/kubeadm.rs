//! kubeadm's decisions during `kubeadm upgrade`, as pure functions: the
//! version policy of `upgrade apply` (`EnforceVersionPolicies` in
//! kubeadm's `phases/upgrade/policy.go`, with its messages), the
//! manifests it writes and the ClusterConfiguration it uploads.

use std::fmt;

use serde_json::Value;

use super::discovery::parse_version;

/// A Kubernetes version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl Version {
    pub fn parse(text: &str) -> Option<Version> {
        parse_version(text).map(|(major, minor, patch)| Version {
            major,
            minor,
            patch,
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// kubeadm can move the control plane one minor at a time.
const MAX_MINOR_UPGRADE_SKEW: u64 = 1;
const MAX_MINOR_DOWNGRADE_SKEW: u64 = 1;

/// Why `kubeadm upgrade apply <target>` refuses, as kubeadm prints it;
/// `None` when it proceeds. Mandatory errors win; skippable ones only
/// stop it without `--force`.
pub fn apply_refusal(
    kubeadm: Version,
    cluster: Version,
    target: Version,
    force: bool,
) -> Option<String> {
    let mut mandatory = Vec::new();
    let mut skippable = Vec::new();
    if target.minor > cluster.minor + MAX_MINOR_UPGRADE_SKEW {
        mandatory.push(format!(
            "Specified version to upgrade to \"{target}\" is too high; kubeadm can upgrade only {MAX_MINOR_UPGRADE_SKEW} minor version at a time"
        ));
    }
    if target.minor + MAX_MINOR_DOWNGRADE_SKEW < cluster.minor {
        mandatory.push(format!(
            "Specified version to downgrade to \"{target}\" is too low; kubeadm can downgrade only {MAX_MINOR_DOWNGRADE_SKEW} minor version at a time"
        ));
    }
    if kubeadm < target {
        if target.minor > kubeadm.minor {
            mandatory.push(format!(
                "Specified version to upgrade to \"{target}\" is at least one minor release higher than the kubeadm minor release ({}.{}). Such an upgrade is not supported",
                kubeadm.major, kubeadm.minor
            ));
        } else {
            skippable.push(format!(
                "Specified version to upgrade to \"{target}\" is higher than the kubeadm version \"{kubeadm}\". Upgrade kubeadm first using the tool you used to install kubeadm"
            ));
        }
    }
    if kubeadm.major > target.major || kubeadm.minor > target.minor {
        skippable.push(format!(
            "Kubeadm version {kubeadm} can only be used to upgrade to Kubernetes version {}.{}",
            kubeadm.major, kubeadm.minor
        ));
    }
    let list = |errors: &[String]| {
        errors
            .iter()
            .map(|e| format!("\t- {e}\n"))
            .collect::<String>()
    };
    if !mandatory.is_empty() {
        return Some(format!(
            "[upgrade/version] FATAL: the --version argument is invalid due to these fatal errors:\n\n{}\nPlease fix the misalignments highlighted above and try upgrading again",
            list(&mandatory)
        ));
    }
    if !skippable.is_empty() && !force {
        return Some(format!(
            "[upgrade/version] FATAL: the --version argument is invalid due to these errors:\n\n{}\nCan be bypassed if you pass the --force flag",
            list(&skippable)
        ));
    }
    None
}

/// The manifest kubeadm writes for `component` at `version`: the same pod
/// with the image tag moved (kubeadm keeps the image repository).
pub fn upgraded_manifest(manifest: &Value, version: Version) -> Value {
    let mut next = manifest.clone();
    if let Some(containers) = next
        .pointer_mut("/spec/containers")
        .and_then(Value::as_array_mut)
    {
        for container in containers {
            if let Some(image) = container.get("image").and_then(Value::as_str) {
                let repository = image.rsplit_once(':').map_or(image, |(r, _)| r);
                container["image"] = Value::String(format!("{repository}:{version}"));
            }
        }
    }
    next
}

/// The ClusterConfiguration kubeadm uploads after moving to `version`: the
/// same document with `kubernetesVersion` (and the config API of that
/// kubeadm) changed.
pub fn cluster_configuration_at(text: &str, version: Version) -> String {
    let api = if version.minor < 31 {
        "kubeadm.k8s.io/v1beta3"
    } else {
        "kubeadm.k8s.io/v1beta4"
    };
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("kubernetesVersion:") {
            out.push_str(&format!("kubernetesVersion: {version}"));
        } else if line.starts_with("apiVersion:") {
            out.push_str(&format!("apiVersion: {api}"));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// `kubernetesVersion` of a ClusterConfiguration.
pub fn cluster_version(text: &str) -> Option<Version> {
    text.lines()
        .find_map(|l| l.strip_prefix("kubernetesVersion:"))
        .and_then(|v| Version::parse(v.trim()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    #[test]
    fn apply_needs_kubeadm_at_the_target_and_one_minor_at_a_time() {
        assert_eq!(
            apply_refusal(v("v1.35.2"), v("v1.34.3"), v("v1.35.2"), false),
            None
        );
        let older_patch = apply_refusal(v("v1.35.0"), v("v1.34.3"), v("v1.35.2"), false).unwrap();
        assert!(older_patch.contains(
            "Specified version to upgrade to \"v1.35.2\" is higher than the kubeadm version \"v1.35.0\". Upgrade kubeadm first"
        ));
        assert!(older_patch.ends_with("Can be bypassed if you pass the --force flag"));
        assert_eq!(
            apply_refusal(v("v1.35.0"), v("v1.34.3"), v("v1.35.2"), true),
            None
        );
        let older_minor = apply_refusal(v("v1.34.3"), v("v1.34.3"), v("v1.35.2"), true).unwrap();
        assert!(older_minor.contains(
            "is at least one minor release higher than the kubeadm minor release (1.34)"
        ));
        let skip = apply_refusal(v("v1.36.0"), v("v1.34.3"), v("v1.36.0"), true).unwrap();
        assert!(skip.contains(
            "Specified version to upgrade to \"v1.36.0\" is too high; kubeadm can upgrade only 1 minor version at a time"
        ));
        assert!(skip.starts_with(
            "[upgrade/version] FATAL: the --version argument is invalid due to these fatal errors:\n\n\t- "
        ));
    }

    #[test]
    fn manifests_keep_their_repository_and_take_the_target_tag() {
        let m = json!({"spec": {"containers": [{"name": "a", "image": "my.registry:5000/kube-apiserver:v1.34.3"}]}});
        let next = upgraded_manifest(&m, v("v1.35.2"));
        assert_eq!(
            next["spec"]["containers"][0]["image"],
            "my.registry:5000/kube-apiserver:v1.35.2"
        );
    }

    #[test]
    fn the_uploaded_configuration_carries_the_new_version() {
        let text = "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\nkubernetesVersion: v1.30.4\nclusterName: x\n";
        let next = cluster_configuration_at(text, v("v1.31.0"));
        assert_eq!(
            next,
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: v1.31.0\nclusterName: x\n"
        );
        assert_eq!(cluster_version(&next), Some(v("v1.31.0")));
    }
}
