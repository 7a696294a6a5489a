//! kubesurge: upgrade and rotate self-managed (kubeadm) Kubernetes clusters
//! on cloud VMs — control plane in place, one minor at a time, then workers
//! replaced by surge.
//!
//! The library never prints; `cli` is the only writer to stdout.

pub mod check;
pub mod cli;
pub mod controlplane;
pub mod duration;
pub mod exec;
pub mod exit;
pub mod init;
pub mod inventory;
pub mod kube;
pub mod plan;
pub mod report_metrics;
pub mod rotation;
pub mod run_control;
pub mod settings;
pub mod upgrade;
pub mod version;
pub mod window;
pub mod wiring;

pub use exit::ExitStatus;
