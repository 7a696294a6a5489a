//! Typed provider errors: callers branch on the kind, never on the text.

use std::time::Duration;

use thiserror::Error;

/// What went wrong talking to a cloud.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProviderError {
    /// The thing asked for does not exist (an image for a version, an id).
    #[error("not found: {what}")]
    NotFound { what: String },
    /// The zone has no capacity for the instance type right now. Callers
    /// must not move the slot to another zone: zonal volumes cannot follow.
    #[error("insufficient capacity in zone {zone}: {message}")]
    InsufficientCapacity { zone: String, message: String },
    /// The provider rate-limited us beyond its own retries.
    #[error("throttled by the provider: {message}")]
    Throttled { message: String },
    /// The caller lacks a permission; `action` names it (`ec2:RunInstances`).
    #[error("not authorized to perform {action}: {message}")]
    Unauthorized { action: String, message: String },
    /// The request cannot succeed as configured (a missing launch template,
    /// an instance not owned by this cluster, a malformed id).
    #[error("invalid configuration: {message}")]
    InvalidConfig { message: String },
    /// A failure that may go away on its own (5xx, connection reset).
    #[error("transient provider error: {message}")]
    Transient { message: String },
    /// The slot's launch key (its [`crate::SlotKey`]) is spent: the
    /// provider keeps it bound to an earlier launch whose instance is gone,
    /// or to one with other parameters (EC2 keeps a `ClientToken` bound for
    /// at least 24 hours after its instance is terminated). Repeating the
    /// launch cannot succeed; a new attempt (another key) can.
    #[error("the slot's launch key is spent: {message}")]
    LaunchKeySpent { message: String },
    /// Anything else, with the provider's words.
    #[error("provider error: {message}")]
    Other { message: String },
}

impl ProviderError {
    /// True when repeating the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ProviderError::Throttled { .. } | ProviderError::Transient { .. }
        )
    }
}

/// What went wrong running a script on a node.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ExecError {
    /// The script did not finish within its timeout.
    #[error("command on {node} did not finish within {after:?}")]
    Timeout { node: String, after: Duration },
    /// The node could not be reached (SSH refused, SSM agent offline).
    #[error("cannot reach {node}: {message}")]
    Unreachable { node: String, message: String },
    /// The transport rejected the request (authentication, host key).
    #[error("exec transport error on {node}: {message}")]
    Transport { node: String, message: String },
}
