//! The one integration-test binary: end-to-end tests against the real
//! binary, the emulator over real HTTP, and real kubectl.

mod aws;
mod bench_smoke;
mod cli;
mod controlplane_scripts;
mod emulator;
mod join;
mod kubectl;
mod plan;
mod python_client;
mod rotation;
mod ssh;
mod terraform;
mod upgrade;
mod world;
