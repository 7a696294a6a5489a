//! Command line (filled by the CLI work).

mod error;

pub use error::CommandError;
