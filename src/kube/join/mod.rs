//! Joining new nodes (design §8.1): one short-lived bootstrap token per
//! slot, the API server endpoint and CA hash from `kube-public/cluster-info`,
//! and user data that writes a kubeadm `JoinConfiguration` and runs
//! `kubeadm join`.
//!
//! The token is a [`Sensitive`](kubesurge_provider::Sensitive) from the
//! moment it is minted: nothing here can format it into a log line.

mod discovery;
mod token;
mod userdata;

pub use discovery::{ClusterInfo, ca_cert_hash};
pub use token::{BootstrapToken, TOKEN_GROUP, TOKEN_SECRET_TYPE};
pub use userdata::{JOIN_CONFIG_MARKER, JoinSpec, PROVIDER_ID_PLACEHOLDER, render_user_data};

use thiserror::Error;

/// Why a join could not be prepared.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum JoinError {
    /// `kube-public/cluster-info` is missing or malformed.
    #[error("kube-public/cluster-info: {0}")]
    ClusterInfo(String),
    /// The CA certificate cannot be read.
    #[error("cluster CA certificate: {0}")]
    Certificate(String),
}
