//! The one integration-test binary: end-to-end tests against the real
//! binary, the emulator over real HTTP, and real kubectl.

mod asg;
mod aws;
mod check;
mod cli;
mod contention;
mod controlplane_scripts;
mod crash_suite;
mod deferred;
mod dry_run;
mod emulator;
mod gc;
mod hidden;
mod iam;
mod in_cluster;
mod init;
mod jobs;
mod join;
mod kubectl;
mod layering;
mod local_storage;
mod modules;
mod moto_env;
mod observability;
mod plan;
mod python_client;
mod python_parity;
mod rbac;
mod rotation;
mod scheduled_rbac;
mod ssh;
mod status;
mod target;
mod terraform;
mod upgrade;
mod world;
