//! Errors of commands, each mapped to an exit status.

use thiserror::Error;

use crate::ExitStatus;

/// A command that could not complete. `status()` says which exit code.
#[derive(Debug, Error)]
pub enum CommandError {
    /// Bad input or a refusal before any change (exit 2).
    #[error("{0}")]
    Invalid(String),
    /// A failure after which the cluster is safe and a rerun resumes (exit 1).
    #[error("{0}")]
    Failed(String),
}

impl CommandError {
    pub fn status(&self) -> ExitStatus {
        match self {
            CommandError::Invalid(_) => ExitStatus::Invalid,
            CommandError::Failed(_) => ExitStatus::Failed,
        }
    }
}
