//! Errors of commands, each mapped to an exit status.

use thiserror::Error;

use crate::ExitStatus;
use crate::inventory::InventoryError;
use crate::kube::client::ClientError;
use crate::plan::PlanRefusal;
use crate::settings::SettingsError;

/// A command that could not complete. `status()` says which exit code.
#[derive(Debug, Error)]
pub enum CommandError {
    /// Bad input or a refusal before any change (exit 2).
    #[error("{0}")]
    Invalid(String),
    /// A failure after which the cluster is safe and a rerun resumes (exit 1).
    #[error("{0}")]
    Failed(String),
    /// The settings are unusable (exit 2); nothing was contacted.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// No client could be built from the kubeconfig and flags (exit 2).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The cluster could not be read (exit 1).
    #[error("{}", describe_inventory_error(server, source))]
    Inventory {
        /// The API server's URL.
        server: String,
        #[source]
        source: InventoryError,
    },
    /// The planner refused (exit 2): nothing was changed.
    #[error("refused: {0}")]
    Refused(#[from] PlanRefusal),
    /// Another run holds the lock (exit 3).
    #[error("{0}")]
    Locked(String),
}

fn describe_inventory_error(server: &str, error: &InventoryError) -> String {
    if error.is_unreachable() {
        // kube's error wraps hyper's, which wraps the OS or TLS error: the
        // innermost one ("Connection refused", "invalid peer certificate")
        // is what the user can act on.
        let mut innermost: &dyn std::error::Error = error;
        while let Some(inner) = innermost.source() {
            innermost = inner;
        }
        format!("cannot reach the Kubernetes API server at {server}: {innermost}")
    } else {
        format!("reading the cluster at {server} failed: {error}")
    }
}

impl CommandError {
    pub fn status(&self) -> ExitStatus {
        match self {
            CommandError::Invalid(_)
            | CommandError::Settings(_)
            | CommandError::Client(_)
            | CommandError::Refused(_) => ExitStatus::Invalid,
            CommandError::Failed(_) | CommandError::Inventory { .. } => ExitStatus::Failed,
            CommandError::Locked(_) => ExitStatus::Locked,
        }
    }
}
