//! The kubesurge test world.
//!
//! - [`store`]: objects, resourceVersions, watch events (the etcd of it).
//! - [`apiserver`]: a Kubernetes API server over HTTPS on loopback that
//!   speaks the real wire protocol to kube-rs and kubectl.
//! - [`controllers`]: what a real control plane and kubelets do — scheduler,
//!   workload controllers, disruption controller, node lifecycle,
//!   bootstrap signer and token cleaner, simulated kubelets.
//! - [`cloud`]: a simulated cloud over HTTP, machines that boot and join
//!   with kubeadm's discovery for real, and the `sim` provider.
//! - [`world`]: all of it assembled, as tests and `kubesurge sandbox` use it.

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
