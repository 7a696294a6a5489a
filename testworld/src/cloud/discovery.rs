//! kubeadm's token discovery and the checks `kubeadm join` makes before the
//! kubelet starts, performed for real against the API server over HTTPS
//! (reference §3):
//!
//! 1. insecure GET of `kube-public/cluster-info`, polled until it carries
//!    `jws-kubeconfig-<token id>`;
//! 2. the detached JWS (HS256 keyed with the token secret) must match the
//!    kubeconfig bytes;
//! 3. the CA in that kubeconfig must match a `caCertHashes` pin (SHA-256 of
//!    its DER SubjectPublicKeyInfo);
//! 4. a second GET, verified against that CA, must return the same bytes;
//! 5. the bootstrap token must authenticate (GET `kube-system/kubeadm-config`);
//! 6. the kubelet must fit the control plane's version (preflight).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde_json::Value;
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::time::Instant;

use super::userdata::{BootstrapToken, JoinSpec, UserDataError};

/// How patient discovery is. kubeadm polls every 5s for up to 5 minutes;
/// the world scales both down with its timing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// Give up on discovery (and on reaching the API server) after this.
    pub timeout: Duration,
    /// Pause between polls of cluster-info.
    pub poll: Duration,
    /// Bound of one HTTP request.
    pub request_timeout: Duration,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            timeout: Duration::from_secs(300),
            poll: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a join failed, in kubeadm's words where kubeadm has them.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum JoinFailure {
    #[error(transparent)]
    UserData(#[from] UserDataError),
    #[error("the image {image} carries no kubernetes-version tag")]
    ImageWithoutVersion { image: String },
    #[error(
        "discovery.bootstrapToken: Invalid value: using token-based discovery without caCertHashes can be unsafe; set unsafeSkipCAVerification to continue"
    )]
    NoCaPins,
    #[error("invalid caCertHashes entry {0:?}: expected sha256:<64 hex digits>")]
    BadCaPin(String),
    #[error("could not reach the API server at {endpoint}: {message}")]
    Unreachable { endpoint: String, message: String },
    #[error(
        "there is no JWS signed token in the cluster-info ConfigMap. This token id {token_id:?} is invalid for this cluster, or it has expired"
    )]
    NoSignedToken { token_id: String },
    #[error(
        "failed to verify JWS signature of received cluster info object, can't trust this API Server"
    )]
    JwsMismatch,
    #[error("the cluster-info ConfigMap is malformed: {0}")]
    BadClusterInfo(String),
    #[error(
        "cluster CA found in cluster-info ConfigMap is invalid: none of the public keys {found:?} are pinned"
    )]
    CaNotPinned { found: String },
    #[error("cluster-info fetched over the CA-verified channel failed: {0}")]
    SecureFetch(String),
    #[error("cluster-info changed between the insecure and the CA-verified fetch")]
    ClusterInfoChanged,
    #[error("the bootstrap token was not accepted by the API server (401 Unauthorized)")]
    Unauthorized,
    #[error("the API server answered {status} for {what}: {message}")]
    Api {
        what: String,
        status: u16,
        message: String,
    },
    #[error(
        "the kubelet version is higher than the control plane version. This is not a supported version skew and may lead to a malfunctional cluster. Kubelet version: {kubelet:?} Control plane version: {control_plane:?}"
    )]
    KubeletTooNew {
        kubelet: String,
        control_plane: String,
    },
    #[error(
        "Kubelet version {kubelet:?} is lower than kubeadm can support (minimum {minimum}). Please upgrade kubelet"
    )]
    KubeletTooOld { kubelet: String, minimum: String },
    #[error("invalid version {0:?}")]
    BadVersion(String),
}

/// What discovery learns about the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterFacts {
    /// `kubernetesVersion` of the ClusterConfiguration.
    pub kubernetes_version: String,
    /// DER of the cluster CA.
    pub ca_der: Vec<u8>,
}

/// The detached JWS the bootstrap signer stores for a token:
/// `<header>..<signature>` with `{"alg":"HS256","kid":"<id>"}` and an HMAC
/// keyed by the token secret (not `id.secret`; reference §0.1).
pub fn detached_jws(payload: &[u8], token_id: &str, token_secret: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"HS256","kid":"{token_id}"}}"#));
    let body = URL_SAFE_NO_PAD.encode(payload);
    // HMAC takes keys of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(token_secret.as_bytes()) else {
        return String::new();
    };
    mac.update(format!("{header}.{body}").as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{header}..{signature}")
}

/// `sha256:<hex>` of a certificate's DER SubjectPublicKeyInfo: kubeadm's
/// `--discovery-token-ca-cert-hash`.
pub fn ca_cert_hash(cert_der: &[u8]) -> Result<String, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).map_err(|e| e.to_string())?;
    let digest = Sha256::digest(cert.tbs_certificate.subject_pki.raw);
    Ok(format!("sha256:{}", hex(&digest)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Check a pin's format; returns it lower-cased.
fn normalize_pin(pin: &str) -> Result<String, JoinFailure> {
    let lower = pin.to_ascii_lowercase();
    match lower.strip_prefix("sha256:") {
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(lower),
        _ => Err(JoinFailure::BadCaPin(pin.to_string())),
    }
}

/// `(major, minor, patch)` of `v1.34.2`.
pub fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.trim().trim_start_matches('v');
    let core = core.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    let version = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(version)
}

/// kubeadm's preflight `KubeletVersion` check on join: the kubelet's minor
/// may not be newer than the control plane's, nor more than three minors
/// older (the N-3 skew of v1.28+).
pub fn check_kubelet_version(kubelet: &str, control_plane: &str) -> Result<(), JoinFailure> {
    let k = parse_version(kubelet).ok_or_else(|| JoinFailure::BadVersion(kubelet.to_string()))?;
    let cp = parse_version(control_plane)
        .ok_or_else(|| JoinFailure::BadVersion(control_plane.to_string()))?;
    if (k.0, k.1) > (cp.0, cp.1) {
        return Err(JoinFailure::KubeletTooNew {
            kubelet: kubelet.to_string(),
            control_plane: control_plane.to_string(),
        });
    }
    let minimum = (cp.0, cp.1.saturating_sub(3));
    if (k.0, k.1) < minimum {
        return Err(JoinFailure::KubeletTooOld {
            kubelet: kubelet.to_string(),
            minimum: format!("v{}.{}.0", minimum.0, minimum.1),
        });
    }
    Ok(())
}

/// The CA certificate (DER) of the only cluster in a cluster-info
/// kubeconfig.
fn kubeconfig_ca(kubeconfig: &str) -> Result<Vec<u8>, JoinFailure> {
    let bad = |m: String| JoinFailure::BadClusterInfo(m);
    let doc: Value =
        serde_saphyr::from_str(kubeconfig).map_err(|e| bad(format!("kubeconfig: {e}")))?;
    let ca_b64 = doc
        .pointer("/clusters/0/cluster/certificate-authority-data")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("kubeconfig has no certificate-authority-data".into()))?;
    let pem = STANDARD
        .decode(ca_b64.trim())
        .map_err(|e| bad(format!("certificate-authority-data: {e}")))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).map_err(|e| {
        bad(format!(
            "certificate-authority-data is not a PEM certificate: {e}"
        ))
    })?;
    Ok(pem.contents)
}

/// Accepts any server certificate (kubeadm's first, insecure fetch), while
/// still checking the handshake signatures so the TLS session is sound.
#[derive(Debug)]
struct AcceptAnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

fn https_client(ca_der: Option<&[u8]>) -> Result<HttpsClient, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = match ca_der {
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServer(provider)))
            .with_no_client_auth(),
        Some(der) => {
            let mut roots = RootCertStore::empty();
            roots
                .add(CertificateDer::from(der.to_vec()))
                .map_err(|e| format!("cluster CA: {e}"))?;
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// One GET; `Err` for anything that never produced an HTTP answer.
async fn get(
    client: &HttpsClient,
    url: &str,
    bearer: Option<&str>,
    timeout: Duration,
) -> Result<(u16, Bytes), String> {
    let mut request = http::Request::get(url).header(http::header::ACCEPT, "application/json");
    if let Some(token) = bearer {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request.body(Empty::new()).map_err(|e| e.to_string())?;
    let exchange = async {
        let response = client.request(request).await.map_err(|e| error_chain(&e))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}

/// An error with its sources, so TLS failures say what failed.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

const CLUSTER_INFO: &str = "/api/v1/namespaces/kube-public/configmaps/cluster-info";
const KUBEADM_CONFIG: &str = "/api/v1/namespaces/kube-system/configmaps/kubeadm-config";

/// The kubeconfig and the JWS for `token_id` from a cluster-info body.
fn read_cluster_info(body: &[u8], token_id: &str) -> Result<(String, Option<String>), JoinFailure> {
    let cm: Value = serde_json::from_slice(body)
        .map_err(|e| JoinFailure::BadClusterInfo(format!("not a ConfigMap: {e}")))?;
    let kubeconfig = cm
        .pointer("/data/kubeconfig")
        .and_then(Value::as_str)
        .ok_or_else(|| JoinFailure::BadClusterInfo("no data.kubeconfig".into()))?
        .to_string();
    let jws = cm
        .get("data")
        .and_then(|d| d.get(format!("jws-kubeconfig-{token_id}")))
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok((kubeconfig, jws))
}

/// Run discovery and the bootstrap-token authentication of `spec`, and
/// return what the join needs from the cluster.
pub async fn discover(
    spec: &JoinSpec,
    config: &DiscoveryConfig,
) -> Result<ClusterFacts, JoinFailure> {
    let pins = spec
        .ca_cert_hashes
        .iter()
        .map(|p| normalize_pin(p))
        .collect::<Result<Vec<_>, _>>()?;
    if pins.is_empty() && !spec.unsafe_skip_ca_verification {
        return Err(JoinFailure::NoCaPins);
    }
    let deadline = Instant::now() + config.timeout;
    let base = format!("https://{}", spec.api_server_endpoint);
    let unreachable = |message: String| JoinFailure::Unreachable {
        endpoint: spec.api_server_endpoint.clone(),
        message,
    };
    let token: &BootstrapToken = &spec.token;

    // 1. Insecure fetch until the token's signature shows up.
    let insecure = https_client(None).map_err(unreachable)?;
    let (kubeconfig, jws) = loop {
        let problem = match get(
            &insecure,
            &format!("{base}{CLUSTER_INFO}"),
            None,
            config.request_timeout,
        )
        .await
        {
            Ok((200, body)) => match read_cluster_info(&body, &token.id)? {
                (kubeconfig, Some(jws)) => break (kubeconfig, jws),
                (_, None) => JoinFailure::NoSignedToken {
                    token_id: token.id.clone(),
                },
            },
            Ok((status, body)) => JoinFailure::Api {
                what: "cluster-info".into(),
                status,
                message: String::from_utf8_lossy(&body).chars().take(200).collect(),
            },
            Err(e) => unreachable(e),
        };
        if Instant::now() + config.poll > deadline {
            return Err(problem);
        }
        tokio::time::sleep(config.poll).await;
    };

    // 2. The signature must be the token's.
    if detached_jws(kubeconfig.as_bytes(), &token.id, &token.secret) != jws {
        return Err(JoinFailure::JwsMismatch);
    }

    // 3. The CA must be pinned.
    let ca_der = kubeconfig_ca(&kubeconfig)?;
    let secure = https_client(Some(&ca_der)).map_err(JoinFailure::SecureFetch)?;
    if !pins.is_empty() {
        let found = ca_cert_hash(&ca_der).map_err(JoinFailure::BadClusterInfo)?;
        if !pins.contains(&found) {
            return Err(JoinFailure::CaNotPinned { found });
        }
        // 4. Fetch again over a channel verified against that CA.
        let (status, body) = get(
            &secure,
            &format!("{base}{CLUSTER_INFO}"),
            None,
            config.request_timeout,
        )
        .await
        .map_err(JoinFailure::SecureFetch)?;
        if status != 200 {
            return Err(JoinFailure::SecureFetch(format!("HTTP {status}")));
        }
        let (again, _) = read_cluster_info(&body, &token.id)?;
        if again != kubeconfig {
            return Err(JoinFailure::ClusterInfoChanged);
        }
    }

    // 5. Authenticate with the token and read the cluster's configuration,
    //    riding out an API server that is briefly away.
    let bearer = token.bearer();
    let body = loop {
        let problem = match get(
            &secure,
            &format!("{base}{KUBEADM_CONFIG}"),
            Some(&bearer),
            config.request_timeout,
        )
        .await
        {
            Ok((200, body)) => break body,
            Ok((401, _)) => return Err(JoinFailure::Unauthorized),
            Ok((status, body)) if status < 500 => {
                return Err(JoinFailure::Api {
                    what: "kubeadm-config".into(),
                    status,
                    message: String::from_utf8_lossy(&body).chars().take(200).collect(),
                });
            }
            Ok((status, _)) => unreachable(format!("HTTP {status}")),
            Err(e) => unreachable(e),
        };
        if Instant::now() + config.poll > deadline {
            return Err(problem);
        }
        tokio::time::sleep(config.poll).await;
    };
    let cm: Value = serde_json::from_slice(&body).map_err(|e| {
        JoinFailure::BadClusterInfo(format!("kubeadm-config is not a ConfigMap: {e}"))
    })?;
    let cluster_config = cm
        .pointer("/data/ClusterConfiguration")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            JoinFailure::BadClusterInfo("kubeadm-config has no ClusterConfiguration".into())
        })?;
    let cluster_config: Value = serde_saphyr::from_str(cluster_config)
        .map_err(|e| JoinFailure::BadClusterInfo(format!("ClusterConfiguration: {e}")))?;
    let kubernetes_version = cluster_config
        .get("kubernetesVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            JoinFailure::BadClusterInfo("ClusterConfiguration has no kubernetesVersion".into())
        })?
        .to_string();
    Ok(ClusterFacts {
        kubernetes_version,
        ca_der,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jws_matches_the_reference_header_and_is_keyed_by_the_secret() {
        let jws = detached_jws(b"kubeconfig", "07401b", "f395accd246ae52d");
        let (header, signature) = jws.split_once("..").unwrap();
        assert_eq!(header, "eyJhbGciOiJIUzI1NiIsImtpZCI6IjA3NDAxYiJ9");
        assert_eq!(signature.len(), 43);
        assert_ne!(
            jws,
            detached_jws(b"kubeconfig", "07401b", "0000000000000000")
        );
        assert_ne!(
            jws,
            detached_jws(b"kubeconfig2", "07401b", "f395accd246ae52d")
        );
        // Computed independently (Python hmac/base64) over the payload of
        // cluster-bootstrap's jws_test.go.
        assert_eq!(
            detached_jws(
                b"Hello from the other side. I must have called a thousand times.",
                "abc123",
                "abcdef0123456789"
            ),
            "eyJhbGciOiJIUzI1NiIsImtpZCI6ImFiYzEyMyJ9..v_DbLImIbvCPkCP8H_LNIlrd-5mZqHSlAEEJVahiBEE"
        );
    }

    #[test]
    fn kubelet_version_skew_follows_kubeadm_preflight() {
        assert!(check_kubelet_version("v1.35.9", "v1.35.3").is_ok());
        assert!(check_kubelet_version("v1.32.0", "v1.35.3").is_ok());
        assert!(matches!(
            check_kubelet_version("v1.36.0", "v1.35.3"),
            Err(JoinFailure::KubeletTooNew { .. })
        ));
        assert!(matches!(
            check_kubelet_version("v1.31.30", "v1.35.3"),
            Err(JoinFailure::KubeletTooOld { .. })
        ));
        assert_eq!(parse_version("v1.34.2+k3s1"), Some((1, 34, 2)));
        assert_eq!(parse_version("1.34"), None);
    }

    #[test]
    fn pins_are_checked_for_format_and_case() {
        let good = format!("SHA256:{}", "AB".repeat(32));
        assert_eq!(
            normalize_pin(&good).unwrap(),
            format!("sha256:{}", "ab".repeat(32))
        );
        assert!(normalize_pin("sha256:abc").is_err());
        assert!(normalize_pin(&format!("md5:{}", "ab".repeat(32))).is_err());
    }

    #[test]
    fn ca_hash_is_over_the_spki() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["ca".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let hash = ca_cert_hash(cert.der()).unwrap();
        // rcgen serializes the DER SubjectPublicKeyInfo itself,
        // independently of x509-parser.
        let expected = hex(&Sha256::digest(
            rcgen::PublicKeyData::subject_public_key_info(&key),
        ));
        assert_eq!(hash, format!("sha256:{expected}"));
        // The whole certificate hashes differently: the pin is the key's.
        assert_ne!(expected, hex(&Sha256::digest(cert.der())));
    }
}
