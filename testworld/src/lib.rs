//! The kubesurge test world: what a real cluster, its cloud and its
//! machines do, run in-process on loopback for the tests, the benchmark
//! and `kubesurge sandbox`.
//!
//! - [`store`]: objects, resourceVersions, watch events (the etcd of it).
//! - [`apiserver`]: a Kubernetes API server over HTTPS on loopback that
//!   speaks the real wire protocol to kube-rs and kubectl.
//! - [`controllers`]: what a real control plane and kubelets do — scheduler,
//!   workload controllers, disruption controller, node lifecycle,
//!   bootstrap signer and token cleaner, simulated kubelets.
//! - [`cloud`]: a simulated cloud over HTTP (the API the `sim` provider
//!   of `kubesurge-sim` calls), machines that boot and join with
//!   kubeadm's discovery for real.
//! - [`moto`]: the same machines behind moto's EC2 and Auto Scaling, for
//!   the `aws` provider, with a fault proxy in front.
//! - [`observer`]: invariants watched while a rotation runs.
//! - [`world`]: all of it assembled, as tests and `kubesurge sandbox` use
//!   it, with a [`SimProvider`] per pool.
//!
//! [`SimProvider`]: kubesurge_sim::SimProvider

pub mod apiserver;
pub mod cloud;
pub mod controllers;
pub mod moto;
pub mod observer;
pub mod resources;
pub mod store;
mod timing;
pub mod world;

pub use timing::Timing;
