//! Proving, without changing anything, that a run would work.
//!
//! - [`target`]: the target exists — every hop's packages for each
//!   control-plane node, every rotation's worker image. `plan`, `upgrade`
//!   and `upgrade --dry-run` run it before anything changes.

pub mod target;
