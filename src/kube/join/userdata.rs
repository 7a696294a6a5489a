//! User data that joins a new machine: a bash script that writes a kubeadm
//! `JoinConfiguration` and runs `kubeadm join --config`.
//!
//! Contract with the machines (the simulated ones parse it too): the
//! configuration sits in a heredoc opened by a line ending in
//! `<<'KUBESURGE_JOIN_CONFIG'` and closed by a line `KUBESURGE_JOIN_CONFIG`;
//! in it the literal `@@PROVIDER_ID@@` stands for the providerID the script
//! computes on the machine before it runs kubeadm.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Taint;
use kubesurge_provider::Sensitive;
use serde_json::{Value, json};

use super::{BootstrapToken, ClusterInfo, JoinError};
use crate::version::KubeVersion;

/// Delimiter of the heredoc that holds the JoinConfiguration.
pub const JOIN_CONFIG_MARKER: &str = "KUBESURGE_JOIN_CONFIG";
/// Stands for the machine's providerID in the rendered configuration.
pub const PROVIDER_ID_PLACEHOLDER: &str = "@@PROVIDER_ID@@";

/// The first kubeadm whose default config API is v1beta4.
const V1BETA4_SINCE: KubeVersion = KubeVersion::new(1, 31, 0);

/// What the user data of one new node says.
pub struct JoinSpec<'a> {
    pub token: &'a BootstrapToken,
    pub cluster: &'a ClusterInfo,
    /// The name the node registers as.
    pub node_name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub taints: &'a [Taint],
    /// More kubelet flags (`cloud-provider: external`), as the pool's
    /// `kubeletExtraArgs` says.
    pub kubelet_extra_args: &'a BTreeMap<String, String>,
    /// kubeadm on the new machine (the image's Kubernetes version).
    pub kubeadm_version: KubeVersion,
    /// Bash that prints this machine's providerID (provider-specific; for
    /// EC2 it reads the zone and instance id from IMDSv2).
    pub provider_id_script: &'a str,
    /// One line naming the cluster, run and slot, for whoever reads the
    /// user data on the machine.
    pub comment: &'a str,
}

/// Render the user data. The result holds the token: it stays `Sensitive`
/// until handed to the provider.
pub fn render_user_data(spec: &JoinSpec<'_>) -> Result<Sensitive<String>, JoinError> {
    let config = join_configuration(spec)?;
    let config_yaml = serde_saphyr::to_string(&config)
        .map_err(|e| JoinError::ClusterInfo(format!("cannot render JoinConfiguration: {e}")))?;
    let comment = spec.comment.replace('\n', " ");
    let script = format!(
        r#"#!/bin/bash
# {comment}
set -euo pipefail

provider_id() {{
{provider_id_script}
}}

install -d -m 0700 /etc/kubernetes/kubesurge
umask 077
# The configuration holds the bootstrap token: it goes however the script
# ends, a failed join included.
trap 'rm -f /etc/kubernetes/kubesurge/join.yaml' EXIT
cat > /etc/kubernetes/kubesurge/join.yaml <<'{marker}'
{config_yaml}{marker}
PROVIDER_ID="$(provider_id)"
sed -i "s|{placeholder}|${{PROVIDER_ID}}|" /etc/kubernetes/kubesurge/join.yaml
kubeadm join --config /etc/kubernetes/kubesurge/join.yaml
"#,
        provider_id_script = spec.provider_id_script.trim_end(),
        marker = JOIN_CONFIG_MARKER,
        placeholder = PROVIDER_ID_PLACEHOLDER,
    );
    Ok(Sensitive::new(script))
}

/// The JoinConfiguration for the target kubeadm: v1beta3 before 1.31,
/// v1beta4 from 1.31 (k8s-mechanics §3: kubelet extra args became a list).
fn join_configuration(spec: &JoinSpec<'_>) -> Result<Value, JoinError> {
    let token = spec.token.token();
    let mut extra: Vec<(&str, String)> = vec![("provider-id", PROVIDER_ID_PLACEHOLDER.into())];
    if !spec.labels.is_empty() {
        let labels: Vec<String> = spec
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        extra.push(("node-labels", labels.join(",")));
    }
    extra.extend(
        spec.kubelet_extra_args
            .iter()
            .map(|(name, value)| (name.as_str(), value.clone())),
    );
    let v1beta4 = spec.kubeadm_version >= V1BETA4_SINCE;
    let kubelet_extra_args = if v1beta4 {
        Value::Array(
            extra
                .iter()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect(),
        )
    } else {
        Value::Object(
            extra
                .iter()
                .map(|(name, value)| (name.to_string(), json!(value)))
                .collect(),
        )
    };
    let taints: Vec<Value> = spec
        .taints
        .iter()
        .map(|t| {
            let mut v = json!({"key": t.key, "effect": t.effect});
            if let Some(value) = &t.value {
                v["value"] = json!(value);
            }
            v
        })
        .collect();
    Ok(json!({
        "apiVersion": if v1beta4 { "kubeadm.k8s.io/v1beta4" } else { "kubeadm.k8s.io/v1beta3" },
        "kind": "JoinConfiguration",
        "discovery": {
            "bootstrapToken": {
                "token": token.expose(),
                "apiServerEndpoint": spec.cluster.endpoint(),
                "caCertHashes": [spec.cluster.ca_cert_hash()?],
            }
        },
        "nodeRegistration": {
            "name": spec.node_name,
            // An explicit empty list: workers get no default taints.
            "taints": taints,
            "kubeletExtraArgs": kubelet_extra_args,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> ClusterInfo {
        let pem = include_str!("testdata/ca.crt");
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        ClusterInfo {
            server: "https://127.0.0.1:6443".into(),
            ca_der: pem.contents,
        }
    }

    fn render(version: KubeVersion) -> (String, BootstrapToken) {
        let token = BootstrapToken::generate();
        let labels = BTreeMap::from([("kubesurge.io/pool".to_string(), "general".to_string())]);
        let taints = vec![Taint {
            key: "dedicated".into(),
            value: Some("batch".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        }];
        let info = cluster();
        let spec = JoinSpec {
            token: &token,
            cluster: &info,
            node_name: "general-abcde",
            labels: &labels,
            taints: &taints,
            kubelet_extra_args: &BTreeMap::from([(
                "cloud-provider".to_string(),
                "external".to_string(),
            )]),
            kubeadm_version: version,
            provider_id_script: "echo aws:///zone/i-1",
            comment: "kubesurge: cluster c1, run r1, replaces w1",
        };
        (render_user_data(&spec).unwrap().expose().clone(), token)
    }

    fn config_of(script: &str) -> Value {
        let start = script
            .lines()
            .position(|l| l.ends_with(&format!("<<'{JOIN_CONFIG_MARKER}'")))
            .unwrap();
        let lines: Vec<&str> = script.lines().collect();
        let end = lines
            .iter()
            .rposition(|l| *l == JOIN_CONFIG_MARKER)
            .unwrap();
        let yaml = lines[start + 1..end].join("\n");
        serde_saphyr::from_str(&yaml).unwrap()
    }

    #[test]
    fn v1beta4_from_kubeadm_1_31_with_list_extra_args() {
        let (script, token) = render(KubeVersion::new(1, 31, 2));
        let config = config_of(&script);
        assert_eq!(config["apiVersion"], "kubeadm.k8s.io/v1beta4");
        assert_eq!(
            config["discovery"]["bootstrapToken"]["token"],
            token.token().expose().as_str()
        );
        assert_eq!(
            config["discovery"]["bootstrapToken"]["apiServerEndpoint"],
            "127.0.0.1:6443"
        );
        let args = config["nodeRegistration"]["kubeletExtraArgs"]
            .as_array()
            .unwrap();
        assert!(args.contains(&json!({"name": "provider-id", "value": PROVIDER_ID_PLACEHOLDER})));
        assert!(
            args.contains(&json!({"name": "node-labels", "value": "kubesurge.io/pool=general"}))
        );
        assert!(args.contains(&json!({"name": "cloud-provider", "value": "external"})));
        assert_eq!(config["nodeRegistration"]["taints"][0]["key"], "dedicated");
        assert!(script.starts_with("#!/bin/bash\n"));
        assert!(script.contains("set -euo pipefail"));
        assert!(script.contains("kubeadm join --config /etc/kubernetes/kubesurge/join.yaml"));
    }

    #[test]
    fn v1beta3_before_kubeadm_1_31_with_map_extra_args() {
        let (script, _) = render(KubeVersion::new(1, 30, 9));
        let config = config_of(&script);
        assert_eq!(config["apiVersion"], "kubeadm.k8s.io/v1beta3");
        assert_eq!(
            config["nodeRegistration"]["kubeletExtraArgs"]["provider-id"],
            PROVIDER_ID_PLACEHOLDER
        );
        assert_eq!(
            config["nodeRegistration"]["kubeletExtraArgs"]["cloud-provider"],
            "external"
        );
        let hashes = config["discovery"]["bootstrapToken"]["caCertHashes"]
            .as_array()
            .unwrap();
        assert!(hashes[0].as_str().unwrap().starts_with("sha256:"));
    }

    /// The script run by bash, with its directory moved into a temporary
    /// one and a `kubeadm` on PATH that fails as a refused join does: the
    /// configuration with the token must not stay behind. (Before the
    /// trap, the script removed it only after a successful join.)
    #[test]
    fn a_failed_join_leaves_no_token_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("kubesurge");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let kubeadm = bin.join("kubeadm");
        std::fs::write(
            &kubeadm,
            "#!/bin/sh\necho 'error execution phase preflight: token id not found' >&2\nexit 1\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&kubeadm, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (script, _) = render(KubeVersion::new(1, 34, 0));
        let script = script.replace("/etc/kubernetes/kubesurge", root.to_str().unwrap());
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(&script)
            .env("PATH", path)
            .output()
            .unwrap();
        assert!(!out.status.success(), "the join failed");
        assert!(root.is_dir(), "the script ran up to the join");
        assert!(
            !root.join("join.yaml").exists(),
            "join.yaml with the token stayed on disk"
        );
    }

    #[test]
    fn no_taints_renders_an_explicit_empty_list() {
        let token = BootstrapToken::generate();
        let info = cluster();
        let spec = JoinSpec {
            token: &token,
            cluster: &info,
            node_name: "n",
            labels: &BTreeMap::new(),
            taints: &[],
            kubelet_extra_args: &BTreeMap::new(),
            kubeadm_version: KubeVersion::new(1, 34, 0),
            provider_id_script: "echo x",
            comment: "c",
        };
        let config = config_of(render_user_data(&spec).unwrap().expose());
        assert_eq!(config["nodeRegistration"]["taints"], json!([]));
    }
}
