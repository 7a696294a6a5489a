//! The `aws` provider: worker pools of EC2 instances launched from a launch
//! template, with the image chosen per Kubernetes version, and scripts run
//! on nodes through Systems Manager.
//!
//! - [`config`]: what a pool says about its launch template, images and
//!   subnets, and how the clients connect (region, endpoint, retries).
//! - [`client`]: SDK clients over rustls with ring, the standard retry.
//! - [`errors`]: the one allow-list from EC2 error codes to typed errors.
//! - [`convert`]: EC2 shapes to the provider contract's types (pure).
//! - [`provider`]: [`AwsProvider`], the `CloudProvider` over EC2.
//! - [`ssm`]: [`SsmExec`], the `NodeExec` over SSM `SendCommand`.
//!
//! Safety rules the provider keeps whatever its caller asks: it terminates
//! only instances tagged `kubesurge.io/cluster=<cluster>`, and a launch
//! first looks for an instance already tagged with the slot (EC2's
//! `ClientToken` covers a lost answer; the tag covers a crashed caller and
//! emulators that ignore the token).

pub mod client;
pub mod config;
pub mod convert;
pub mod errors;
pub mod provider;
pub mod ssm;

pub use config::{AwsPoolConfig, ClientOptions, ImageSource, TemplateRef};
pub use provider::AwsProvider;
pub use ssm::SsmExec;
