//! The test world on moto, the EC2 emulator (server mode): what the `aws`
//! provider is proven against.
//!
//! - [`server`]: start and stop a `moto_server` on loopback, and fail
//!   loudly when it logs `NotImplementedError`.
//! - [`proxy`]: a fault proxy in front of moto (throttling, capacity,
//!   permission and server errors, latency) that logs every call.
//! - [`strict`]: EC2 rules moto does not enforce, enforced by the proxy.
//! - [`idempotency`]: EC2's `ClientToken` semantics of `RunInstances`,
//!   kept by the proxy (moto launches again on every repeat).
//! - [`iam`]: IAM policy evaluation (actions, resources, the condition
//!   keys kubesurge's policy uses), enforced by the proxy when asked.
//! - [`ec2`] and [`xml`]: the world's own small EC2 query-API client;
//!   [`autoscaling`]: the same for Auto Scaling groups.
//! - [`machines`]: simulated machines behind moto's instances, joining the
//!   emulated cluster from their user data.
//! - [`ssm_agent`]: the SSM agent of the simulated machines behind moto's
//!   instances: the commands sent to them run there.
//! - [`world`]: an emulated cluster whose workers live in moto.

pub mod autoscaling;
pub mod ec2;
pub mod iam;
pub mod idempotency;
pub mod machines;
pub mod proxy;
pub mod quotas;
pub mod server;
pub mod ssm_agent;
pub mod strict;
pub mod world;
pub mod xml;

pub use autoscaling::{AsgGroup, AutoScalingApi};
pub use ec2::{Ec2, Ec2Error, Ec2Instance};
pub use iam::{Authorization, Decision, IamGate, Policy};
pub use machines::{MotoMachine, MotoMachines};
pub use proxy::{AfterSuccess, Canned, Ec2Fault, Fault, FaultProxy};
pub use server::{MotoError, MotoServer};
pub use ssm_agent::SsmAgent;
pub use world::{GroupUserData, MotoWorld, MotoWorldConfig, MotoWorldError, Seeded};
