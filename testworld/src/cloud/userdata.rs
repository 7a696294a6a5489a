//! The user-data contract between the rotation engine and a machine.
//!
//! User data is a bash script. Somewhere in it a heredoc writes the kubeadm
//! `JoinConfiguration`: it opens on a line that ends in
//! `<<'KUBESURGE_JOIN_CONFIG'` (quoted, so bash expands nothing inside) and
//! closes on a line that is exactly `KUBESURGE_JOIN_CONFIG`. Inside it, the
//! literal `@@PROVIDER_ID@@` stands for the provider id, which the script
//! computes from instance metadata (IMDSv2) and substitutes (with `sed`)
//! before it runs `kubeadm join --config <file>`:
//!
//! ```bash
//! #!/bin/bash
//! set -euo pipefail
//! cat >/etc/kubernetes/kubesurge-join.yaml <<'KUBESURGE_JOIN_CONFIG'
//! apiVersion: kubeadm.k8s.io/v1beta4
//! kind: JoinConfiguration
//! discovery:
//!   bootstrapToken:
//!     token: abcdef.0123456789abcdef
//!     apiServerEndpoint: 10.0.0.10:6443
//!     caCertHashes: ["sha256:…"]
//! nodeRegistration:
//!   name: general-7f3k2
//!   taints: []
//!   kubeletExtraArgs:
//!     - {name: provider-id, value: "@@PROVIDER_ID@@"}
//!     - {name: node-labels, value: "kubesurge.io/pool=general"}
//! KUBESURGE_JOIN_CONFIG
//! TOKEN=$(curl -sX PUT http://169.254.169.254/latest/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 60')
//! # … provider id from the metadata, then:
//! sed -i "s|@@PROVIDER_ID@@|${PROVIDER_ID}|" /etc/kubernetes/kubesurge-join.yaml
//! kubeadm join --config /etc/kubernetes/kubesurge-join.yaml
//! ```
//!
//! `apiVersion` is `kubeadm.k8s.io/v1beta3` (kubeadm < 1.31; extra args a
//! map) or `kubeadm.k8s.io/v1beta4` (extra args a list of `{name, value}`,
//! the last of duplicates winning). The file may hold several YAML
//! documents; the `JoinConfiguration` is the one used.

use std::collections::BTreeMap;
use std::fmt;

use crate::controllers::kubelet::NodeCloud;
use serde_json::Value;
use thiserror::Error;

/// The line that closes the join-configuration heredoc.
pub const HEREDOC_END: &str = "KUBESURGE_JOIN_CONFIG";
/// What the line opening the heredoc ends with.
pub const HEREDOC_OPEN: &str = "<<'KUBESURGE_JOIN_CONFIG'";
/// Placeholder for the provider id inside the join configuration.
pub const PROVIDER_ID_PLACEHOLDER: &str = "@@PROVIDER_ID@@";

/// The two kubeadm API versions of `JoinConfiguration` machines accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KubeadmApi {
    V1beta3,
    V1beta4,
}

/// A bootstrap token, `<id>.<secret>`. The secret never formats.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    pub id: String,
    pub secret: String,
}

impl fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BootstrapToken({}.<redacted>)", self.id)
    }
}

impl BootstrapToken {
    /// Parse `\A([a-z0-9]{6})\.([a-z0-9]{16})\z`.
    pub fn parse(token: &str) -> Option<BootstrapToken> {
        let (id, secret) = token.split_once('.')?;
        let valid = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        (valid(id, 6) && valid(secret, 16)).then(|| BootstrapToken {
            id: id.to_string(),
            secret: secret.to_string(),
        })
    }

    /// The `Authorization: Bearer` value.
    pub fn bearer(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }
}

/// What a machine takes from its join configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinSpec {
    pub api: KubeadmApi,
    pub token: BootstrapToken,
    /// `host:port` of the API server.
    pub api_server_endpoint: String,
    pub ca_cert_hashes: Vec<String>,
    pub unsafe_skip_ca_verification: bool,
    /// `nodeRegistration.name`; the hostname when absent.
    pub node_name: Option<String>,
    /// `nodeRegistration.taints`; `None` when absent (kubeadm then taints
    /// only control-plane nodes).
    pub taints: Option<Vec<Value>>,
    /// `nodeRegistration.kubeletExtraArgs`, flag name → value.
    pub kubelet_args: BTreeMap<String, String>,
}

impl JoinSpec {
    /// How the joining kubelet's Node gets its cloud facts: from the cloud
    /// controller when it runs with `--cloud-provider=external`; in a
    /// cluster with a cloud controller, not at all otherwise; by itself in
    /// a world of in-tree providers.
    pub fn node_cloud(&self, cluster_has_cloud_controller: bool) -> NodeCloud {
        if self.kubelet_args.get("cloud-provider").map(String::as_str) == Some("external") {
            NodeCloud::External
        } else if cluster_has_cloud_controller {
            NodeCloud::None
        } else {
            NodeCloud::InTree
        }
    }

    /// The `--provider-id` the kubelet runs with, if any.
    pub fn provider_id(&self) -> Option<&str> {
        self.kubelet_args.get("provider-id").map(String::as_str)
    }

    /// `--node-labels` (`k=v,k2=v2`) as a map.
    pub fn node_labels(&self) -> Result<BTreeMap<String, String>, UserDataError> {
        let Some(raw) = self.kubelet_args.get("node-labels") else {
            return Ok(BTreeMap::new());
        };
        raw.split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let k = k.trim();
                if k.is_empty() {
                    Err(UserDataError::Invalid(format!(
                        "invalid node label {pair:?}"
                    )))
                } else {
                    Ok((k.to_string(), v.trim().to_string()))
                }
            })
            .collect()
    }
}

/// User data a machine cannot join with.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum UserDataError {
    #[error("user data has no join configuration (no heredoc ending in {HEREDOC_OPEN})")]
    NoJoinConfig,
    #[error("the join configuration heredoc is not closed by a line {HEREDOC_END}")]
    Unterminated,
    #[error("the join configuration is not valid YAML: {0}")]
    Yaml(String),
    #[error("no JoinConfiguration of kubeadm.k8s.io/v1beta3 or v1beta4 in the join configuration")]
    NoJoinConfiguration,
    #[error("invalid join configuration: {0}")]
    Invalid(String),
}

/// The join configuration text between the heredoc markers.
pub fn extract_join_config(user_data: &str) -> Result<&str, UserDataError> {
    let mut offset = 0;
    let mut start = None;
    for line in user_data.split_inclusive('\n') {
        let end = offset + line.len();
        let text = line.trim_end_matches(['\n', '\r']);
        match start {
            None if text.trim_end().ends_with(HEREDOC_OPEN) => start = Some(end),
            Some(s) if text == HEREDOC_END => return Ok(&user_data[s..offset]),
            _ => {}
        }
        offset = end;
    }
    Err(if start.is_some() {
        UserDataError::Unterminated
    } else {
        UserDataError::NoJoinConfig
    })
}

/// Parse the user data of a machine whose provider id is `provider_id`.
pub fn parse_user_data(user_data: &str, provider_id: &str) -> Result<JoinSpec, UserDataError> {
    let text = extract_join_config(user_data)?.replace(PROVIDER_ID_PLACEHOLDER, provider_id);
    let docs: Vec<Value> =
        serde_saphyr::from_str_multiple(&text).map_err(|e| UserDataError::Yaml(e.to_string()))?;
    let doc = docs
        .iter()
        .find(|d| d.get("kind").and_then(Value::as_str) == Some("JoinConfiguration"))
        .ok_or(UserDataError::NoJoinConfiguration)?;
    parse_join_configuration(doc)
}

fn parse_join_configuration(doc: &Value) -> Result<JoinSpec, UserDataError> {
    let api = match doc.get("apiVersion").and_then(Value::as_str) {
        Some("kubeadm.k8s.io/v1beta3") => KubeadmApi::V1beta3,
        Some("kubeadm.k8s.io/v1beta4") => KubeadmApi::V1beta4,
        _ => return Err(UserDataError::NoJoinConfiguration),
    };
    let invalid = |m: &str| UserDataError::Invalid(m.to_string());
    let bt = doc
        .pointer("/discovery/bootstrapToken")
        .ok_or_else(|| invalid("discovery.bootstrapToken is required"))?;
    let token_text = bt
        .get("token")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("discovery.bootstrapToken.token is required"))?;
    let token = BootstrapToken::parse(token_text).ok_or_else(|| {
        invalid("discovery.bootstrapToken.token does not match [a-z0-9]{6}.[a-z0-9]{16}")
    })?;
    let api_server_endpoint = bt
        .get("apiServerEndpoint")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid("discovery.bootstrapToken.apiServerEndpoint is required"))?
        .to_string();
    let ca_cert_hashes = match bt.get("caCertHashes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid("discovery.bootstrapToken.caCertHashes must be strings"))?,
        Some(_) => {
            return Err(invalid(
                "discovery.bootstrapToken.caCertHashes must be a list",
            ));
        }
    };
    let unsafe_skip_ca_verification = bt
        .get("unsafeSkipCAVerification")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let registration = doc.get("nodeRegistration");
    let node_name = registration
        .and_then(|r| r.get("name"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let taints = match registration.and_then(|r| r.get("taints")) {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(items.clone()),
        Some(_) => return Err(invalid("nodeRegistration.taints must be a list")),
    };
    let kubelet_args = match (api, registration.and_then(|r| r.get("kubeletExtraArgs"))) {
        (_, None | Some(Value::Null)) => BTreeMap::new(),
        (KubeadmApi::V1beta3, Some(Value::Object(map))) => map
            .iter()
            .map(|(k, v)| {
                Ok((
                    k.clone(),
                    scalar(v).ok_or_else(|| invalid("kubeletExtraArgs values must be strings"))?,
                ))
            })
            .collect::<Result<_, UserDataError>>()?,
        (KubeadmApi::V1beta4, Some(Value::Array(items))) => {
            let mut args = BTreeMap::new();
            for item in items {
                let name = item.get("name").and_then(Value::as_str);
                let value = item.get("value").map(scalar).unwrap_or(Some(String::new()));
                match (name, value) {
                    (Some(n), Some(v)) => {
                        args.insert(n.to_string(), v);
                    }
                    _ => {
                        return Err(invalid(
                            "kubeletExtraArgs entries need a name and a string value",
                        ));
                    }
                }
            }
            args
        }
        (KubeadmApi::V1beta3, Some(_)) => {
            return Err(invalid(
                "kubeletExtraArgs must be a map in kubeadm.k8s.io/v1beta3",
            ));
        }
        (KubeadmApi::V1beta4, Some(_)) => {
            return Err(invalid(
                "kubeletExtraArgs must be a list of {name, value} in kubeadm.k8s.io/v1beta4",
            ));
        }
    };
    Ok(JoinSpec {
        api,
        token,
        api_server_endpoint,
        ca_cert_hashes,
        unsafe_skip_ca_verification,
        node_name,
        taints,
        kubelet_args,
    })
}

/// A YAML scalar as the string a flag would get.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1BETA4: &str = r#"#!/bin/bash
set -euo pipefail
cat >/etc/kubernetes/join.yaml <<'KUBESURGE_JOIN_CONFIG'
apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
discovery:
  bootstrapToken:
    token: abcdef.0123456789abcdef
    apiServerEndpoint: 127.0.0.1:6443
    caCertHashes: ["sha256:00"]
nodeRegistration:
  name: w-1
  taints: []
  kubeletExtraArgs:
    - name: provider-id
      value: "@@PROVIDER_ID@@"
    - name: node-labels
      value: "kubesurge.io/pool=general,tier=web"
    - name: node-labels
      value: "kubesurge.io/pool=gpu"
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
KUBESURGE_JOIN_CONFIG
kubeadm join --config /etc/kubernetes/join.yaml
"#;

    #[test]
    fn v1beta4_list_args_last_duplicate_wins_and_placeholder_is_substituted() {
        let spec = parse_user_data(V1BETA4, "sim:///zone-a/i-1").unwrap();
        assert_eq!(spec.api, KubeadmApi::V1beta4);
        assert_eq!(spec.token.id, "abcdef");
        assert_eq!(spec.token.secret, "0123456789abcdef");
        assert_eq!(spec.api_server_endpoint, "127.0.0.1:6443");
        assert_eq!(spec.ca_cert_hashes, vec!["sha256:00".to_string()]);
        assert_eq!(spec.node_name.as_deref(), Some("w-1"));
        assert_eq!(spec.taints, Some(vec![]));
        assert_eq!(spec.provider_id(), Some("sim:///zone-a/i-1"));
        assert_eq!(
            spec.node_labels().unwrap(),
            BTreeMap::from([("kubesurge.io/pool".to_string(), "gpu".to_string())])
        );
    }

    #[test]
    fn v1beta3_map_args() {
        let ud = "x <<'KUBESURGE_JOIN_CONFIG'\n\
            apiVersion: kubeadm.k8s.io/v1beta3\nkind: JoinConfiguration\n\
            discovery: {bootstrapToken: {token: abcdef.0123456789abcdef, apiServerEndpoint: 'h:1', unsafeSkipCAVerification: true}}\n\
            nodeRegistration: {kubeletExtraArgs: {provider-id: '@@PROVIDER_ID@@', node-labels: 'a=1,b=2'}}\n\
            KUBESURGE_JOIN_CONFIG\n";
        let spec = parse_user_data(ud, "sim:///z/i-2").unwrap();
        assert_eq!(spec.api, KubeadmApi::V1beta3);
        assert!(spec.unsafe_skip_ca_verification);
        assert_eq!(spec.taints, None);
        assert_eq!(spec.node_name, None);
        assert_eq!(spec.provider_id(), Some("sim:///z/i-2"));
        assert_eq!(spec.node_labels().unwrap().len(), 2);
    }

    #[test]
    fn wrong_shapes_and_missing_parts_are_refused() {
        assert_eq!(
            parse_user_data("#!/bin/bash\necho hi\n", "p"),
            Err(UserDataError::NoJoinConfig)
        );
        assert_eq!(
            parse_user_data(
                "cat <<'KUBESURGE_JOIN_CONFIG'\nkind: JoinConfiguration\n",
                "p"
            ),
            Err(UserDataError::Unterminated)
        );
        let v1beta3_with_list = V1BETA4.replace("v1beta4", "v1beta3");
        assert!(matches!(
            parse_user_data(&v1beta3_with_list, "p"),
            Err(UserDataError::Invalid(_))
        ));
        let bad_token = V1BETA4.replace("abcdef.0123456789abcdef", "ABCDEF.0123456789abcdef");
        assert!(matches!(
            parse_user_data(&bad_token, "p"),
            Err(UserDataError::Invalid(_))
        ));
        let old_api = V1BETA4.replace("v1beta4", "v1beta2");
        assert_eq!(
            parse_user_data(&old_api, "p"),
            Err(UserDataError::NoJoinConfiguration)
        );
    }

    #[test]
    fn token_never_formats_its_secret() {
        let t = BootstrapToken::parse("abcdef.0123456789abcdef").unwrap();
        assert!(!format!("{t:?}").contains("0123456789abcdef"));
        assert!(BootstrapToken::parse("abcdef.0123").is_none());
    }
}
