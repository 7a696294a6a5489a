//! The one integration-test binary: end-to-end tests against the real
//! binary, the emulator over real HTTP, and real kubectl.

mod cli;
mod emulator;
mod join;
mod kubectl;
mod plan;
mod rotation;
mod terraform;
mod world;
