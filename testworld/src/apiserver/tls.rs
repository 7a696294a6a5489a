//! The cluster CA (made at start-up) and the serving certificate.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The names the serving certificate is valid for: what kube-rs, kubectl
/// and in-cluster clients dial.
pub const SERVING_SANS: &[&str] = &["127.0.0.1", "localhost", "kubernetes.default.svc"];

/// Failure to make or use a certificate.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot parse the CA certificate: {0}")]
    Parse(String),
    #[error("a client certificate can name at most one group (O), not {0}")]
    TooManyGroups(usize),
    #[error("cannot build the TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The cluster's certificate authority. Its certificate is what
/// `kube-public/cluster-info` and kubeconfigs carry.
pub struct ClusterCa {
    /// PEM of the CA certificate.
    pub cert_pem: String,
    /// DER of the CA certificate.
    pub cert_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate signed by the cluster CA with its private key.
#[derive(Clone, Debug)]
pub struct SignedCert {
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    /// PKCS#8 private key, PEM.
    pub key_pem: String,
    /// PKCS#8 private key, DER.
    pub key_der: Vec<u8>,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa")
            .field("spki_sha256", &self.spki_sha256_hex())
            .finish_non_exhaustive()
    }
}

impl ClusterCa {
    /// A fresh CA (ECDSA P-256), named like kubeadm's (`CN=kubernetes`).
    pub fn generate() -> Result<ClusterCa, TlsError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "kubernetes");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key)?;
        Ok(ClusterCa {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Lower-case hex SHA-256 of the CA certificate's DER
    /// SubjectPublicKeyInfo: what kubeadm's `--discovery-token-ca-cert-hash`
    /// pins (without the `sha256:` prefix).
    pub fn spki_sha256_hex(&self) -> String {
        // Our own certificate always parses; an empty hash would simply
        // never match.
        spki_sha256_hex_of(&self.cert_der).unwrap_or_default()
    }

    /// `sha256:<hex>`, the form kubeadm join takes.
    pub fn ca_cert_hash(&self) -> String {
        format!("sha256:{}", self.spki_sha256_hex())
    }

    /// A serving certificate for `sans` (IPs or DNS names).
    pub fn sign_serving_cert(&self, sans: &[&str]) -> Result<SignedCert, TlsError> {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "kube-apiserver");
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        self.sign(params)
    }

    /// A client certificate (`CN=<user>`, `O=<group>` per group), as the
    /// CSR signer issues to kubelets. rcgen keeps one value per attribute
    /// type, so at most one group can be written.
    pub fn sign_client_cert(&self, user: &str, groups: &[&str]) -> Result<SignedCert, TlsError> {
        if groups.len() > 1 {
            return Err(TlsError::TooManyGroups(groups.len()));
        }
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, user);
        for group in groups {
            dn.push(DnType::OrganizationName, *group);
        }
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Result<SignedCert, TlsError> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(SignedCert {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        })
    }
}

/// Hex SHA-256 of a DER certificate's SubjectPublicKeyInfo.
pub fn spki_sha256_hex_of(cert_der: &[u8]) -> Result<String, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| TlsError::Parse(e.to_string()))?;
    let digest = Sha256::digest(cert.tbs_certificate.subject_pki.raw);
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

/// The rustls configuration of the server: the serving certificate signed
/// by `ca`, HTTP/1.1 only; a client certificate is asked for and, when
/// given, must be signed by `ca` (Go's `VerifyClientCertIfGiven`, what
/// kube-apiserver's `--client-ca-file` sets up).
pub(crate) fn server_config(ca: &ClusterCa) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let serving = ca.sign_serving_cert(SERVING_SANS)?;
    let chain = vec![rustls::pki_types::CertificateDer::from(serving.cert_der)];
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(serving.key_der.into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from(ca.cert_der.clone()))?;
    let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| TlsError::Parse(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(clients)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_hash_is_sha256_of_the_spki_not_the_certificate() {
        let ca = ClusterCa::generate().unwrap();
        let hex = ca.spki_sha256_hex();
        assert_eq!(hex.len(), 64);
        assert!(
            hex.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        let whole: String = Sha256::digest(&ca.cert_der)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_ne!(hex, whole);
        assert_eq!(ca.ca_cert_hash(), format!("sha256:{hex}"));
    }

    #[test]
    fn serving_cert_names_loopback_and_service_and_is_issued_by_the_ca() {
        let ca = ClusterCa::generate().unwrap();
        let serving = ca.sign_serving_cert(SERVING_SANS).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&serving.cert_der).unwrap();
        let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca.cert_der).unwrap();
        assert_eq!(cert.issuer(), ca_cert.subject());
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| format!("{n}"))
            .collect();
        assert!(names.iter().any(|n| n.contains("7f:00:00:01")), "{names:?}");
        assert!(names.iter().any(|n| n.contains("localhost")), "{names:?}");
        assert!(
            names.iter().any(|n| n.contains("kubernetes.default.svc")),
            "{names:?}"
        );
    }
}
