//! The Kubernetes API server emulator: HTTPS on loopback, the real wire
//! protocol (reference §6), eviction with PDBs (§4), bootstrap-token
//! authentication (§3), discovery and kubectl's Table responses.
//!
//! (Interface fixed; the implementation is filled by the emulator work.)

mod tls;

pub use tls::ClusterCa;

use std::net::SocketAddr;
use std::sync::Arc;

use thiserror::Error;

use crate::store::Store;

/// How to start the server.
#[derive(Clone, Debug)]
pub struct ApiServerConfig {
    /// `gitVersion` that `/version` reports (`v1.33.4`); changeable at run
    /// time with [`ApiServerHandle::set_version`].
    pub version: String,
    /// Where to listen; port 0 picks a free one.
    pub bind: SocketAddr,
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        ApiServerConfig {
            version: "v1.33.4".into(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

/// Failure to start the server.
#[derive(Debug, Error)]
#[error("cannot start the API server emulator: {0}")]
pub struct StartError(pub String);

/// A running API server.
#[derive(Clone)]
pub struct ApiServerHandle {
    inner: Arc<()>,
}

impl ApiServerHandle {
    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        let _ = &self.inner;
        String::new()
    }

    /// The bearer token of the cluster-admin user in the kubeconfig.
    pub fn admin_token(&self) -> String {
        String::new()
    }

    /// A kubeconfig (YAML) for the admin user, with the CA inline.
    pub fn kubeconfig_yaml(&self) -> String {
        String::new()
    }

    /// Change what `/version` reports (kubeadm upgrades do this).
    pub fn set_version(&self, _git_version: &str) {}
}

/// Start serving `store` over HTTPS with a certificate signed by `ca`.
pub async fn start(
    _store: Arc<Store>,
    _ca: Arc<ClusterCa>,
    _config: ApiServerConfig,
) -> Result<ApiServerHandle, StartError> {
    Err(StartError("not built yet".into()))
}
