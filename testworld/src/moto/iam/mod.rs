//! IAM policy evaluation in front of moto, for the calls kubesurge makes:
//! actions, resource ARNs and the condition keys the iam module's policy
//! relies on. moto's own enforcement matches every EC2, Auto Scaling and
//! SSM call against the resource `*` and evaluates no condition (see
//! terraform/modules/iam/README.md), so it can prove neither.
//!
//! - [`Policy`] and [`Policy::evaluate`]: pure evaluation of one
//!   [`Authorization`] (an action on one resource, with the request's
//!   context keys), after AWS's evaluation logic
//!   (<https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html>):
//!   an explicit Deny wins, else an Allow must match, else the call is
//!   refused.
//! - [`IamGate`]: what AWS authorizes for one request (one authorization
//!   per resource it touches, with the tags it carries or sets, looked up
//!   in moto), used by the fault proxy to refuse what the policy does not
//!   allow.
//! - [`simulator`]: who the credentials are, and IAM's policy simulator
//!   over the same policy, both answered by the fault proxy.

mod gate;
mod policy;
pub mod simulator;

pub use gate::{IamGate, Refusal};
pub use policy::{Authorization, Decision, Policy, PolicyError};

/// moto's account.
pub const ACCOUNT: &str = "123456789012";

/// Who the world's credentials are: the user every refusal names and
/// `sts:GetCallerIdentity` answers ([`simulator`]).
pub const PRINCIPAL: &str = "arn:aws:iam::123456789012:user/kubesurge";
