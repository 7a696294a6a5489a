//! Proving, without changing anything, that a run would work
//! (`kubesurge check`, design §3).
//!
//! - [`report`]: the report, one line per check, each failing line naming
//!   its fix. Pure.
//! - [`target`]: the target exists — every hop's packages for each
//!   control-plane node, every rotation's worker image. `plan`, `upgrade`
//!   and `upgrade --dry-run` run it before anything changes.
//! - [`pdb`]: the PodDisruptionBudgets that would block a drain now. Pure.
//! - [`rbac`]: the run's own Kubernetes permissions, by
//!   SelfSubjectAccessReview (a review changes nothing).
//! - [`runner`]: asks the cluster, the nodes and the providers; every call
//!   is a read.

pub mod pdb;
pub mod rbac;
pub mod report;
pub mod runner;
pub mod target;

pub use report::{Check, CheckLine, CheckReport, CheckStatus};
