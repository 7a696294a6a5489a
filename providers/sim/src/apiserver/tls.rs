//! The cluster CA (made at start-up) and the serving certificate.

/// The cluster's certificate authority. Its certificate is what
/// `kube-public/cluster-info` and kubeconfigs carry.
pub struct ClusterCa {
    /// PEM of the CA certificate.
    pub cert_pem: String,
    /// DER of the CA certificate.
    pub cert_der: Vec<u8>,
}
