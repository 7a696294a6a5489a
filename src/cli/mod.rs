//! Command line (filled by the CLI work).

mod error;
#[cfg(feature = "sandbox")]
pub mod sandbox;

pub use error::CommandError;
