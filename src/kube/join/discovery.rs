//! What a joining node needs to find and trust the API server, read from
//! `kube-public/cluster-info` (k8s-mechanics §3).

use base64::Engine;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::config::Kubeconfig;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::JoinError;

/// The API server endpoint and CA that cluster-info publishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterInfo {
    /// `https://host:port`.
    pub server: String,
    /// DER of the cluster CA certificate.
    pub ca_der: Vec<u8>,
}

impl ClusterInfo {
    /// Parse the ConfigMap's `data.kubeconfig` (one cluster, CA inline).
    pub fn from_config_map(cm: &ConfigMap) -> Result<ClusterInfo, JoinError> {
        let raw = cm
            .data
            .as_ref()
            .and_then(|d| d.get("kubeconfig"))
            .ok_or_else(|| JoinError::ClusterInfo("data.kubeconfig is missing".into()))?;
        let kubeconfig = Kubeconfig::from_yaml(raw).map_err(|e| {
            JoinError::ClusterInfo(format!("data.kubeconfig is not a kubeconfig: {e}"))
        })?;
        let cluster = kubeconfig
            .clusters
            .first()
            .and_then(|c| c.cluster.as_ref())
            .ok_or_else(|| JoinError::ClusterInfo("data.kubeconfig has no cluster".into()))?;
        let server = cluster
            .server
            .clone()
            .ok_or_else(|| JoinError::ClusterInfo("the cluster has no server".into()))?;
        let ca_b64 = cluster.certificate_authority_data.as_ref().ok_or_else(|| {
            JoinError::ClusterInfo("the cluster has no certificate-authority-data".into())
        })?;
        let pem = base64::engine::general_purpose::STANDARD
            .decode(ca_b64.trim())
            .map_err(|e| {
                JoinError::Certificate(format!("certificate-authority-data is not base64: {e}"))
            })?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(&pem)
            .map_err(|e| JoinError::Certificate(format!("not a PEM certificate: {e}")))?;
        Ok(ClusterInfo {
            server,
            ca_der: pem.contents,
        })
    }

    /// `host:port` as kubeadm's `apiServerEndpoint` wants it.
    pub fn endpoint(&self) -> String {
        let rest = self
            .server
            .strip_prefix("https://")
            .or_else(|| self.server.strip_prefix("http://"))
            .unwrap_or(&self.server);
        rest.trim_end_matches('/').to_string()
    }

    /// The CA pin for `caCertHashes`.
    pub fn ca_cert_hash(&self) -> Result<String, JoinError> {
        ca_cert_hash(&self.ca_der)
    }
}

/// `sha256:<hex>` of the certificate's DER SubjectPublicKeyInfo — kubeadm's
/// public-key pin (not a hash of the whole certificate).
pub fn ca_cert_hash(cert_der: &[u8]) -> Result<String, JoinError> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| JoinError::Certificate(format!("not an X.509 certificate: {e}")))?;
    let digest = Sha256::digest(cert.public_key().raw);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("sha256:{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    // A self-signed CA made with openssl (EC P-256), and its pin as kubeadm's
    // documented recipe computes it:
    // `openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | sha256sum`.
    const CA_PEM: &str = include_str!("testdata/ca.crt");

    fn cluster_info(server: &str, pem: &str) -> ConfigMap {
        let b64 = base64::engine::general_purpose::STANDARD.encode(pem);
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: \"\"\n  cluster:\n    certificate-authority-data: {b64}\n    server: {server}\ncontexts: []\nusers: []\n"
        );
        ConfigMap {
            data: Some(BTreeMap::from([("kubeconfig".to_string(), kubeconfig)])),
            ..ConfigMap::default()
        }
    }

    #[test]
    fn reads_endpoint_and_pins_the_public_key() {
        let info =
            ClusterInfo::from_config_map(&cluster_info("https://127.0.0.1:6443", CA_PEM)).unwrap();
        assert_eq!(info.endpoint(), "127.0.0.1:6443");
        let pin = info.ca_cert_hash().unwrap();
        assert!(pin.starts_with("sha256:"));
        assert_eq!(pin.len(), "sha256:".len() + 64);
        assert_eq!(pin, EXPECTED_PIN);
    }

    const EXPECTED_PIN: &str =
        "sha256:36528ddc7c8eaf0eb7668d0c50cf67e9437edb15546beb42989aa2af6866d720";

    #[test]
    fn malformed_cluster_info_is_a_clear_error() {
        let empty = ConfigMap::default();
        assert!(matches!(
            ClusterInfo::from_config_map(&empty),
            Err(JoinError::ClusterInfo(m)) if m.contains("data.kubeconfig")
        ));
        let bad = cluster_info("https://x:1", "not a pem");
        assert!(matches!(
            ClusterInfo::from_config_map(&bad),
            Err(JoinError::Certificate(_))
        ));
    }
}
