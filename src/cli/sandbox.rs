//! `kubesurge sandbox`: the emulated world, for a first look and for demos.
//!
//! (Interface fixed; filled by the sandbox work.)

use crate::ExitStatus;
use crate::cli::CommandError;

/// Arguments of `kubesurge sandbox`.
#[derive(Debug, Clone, clap::Args)]
pub struct SandboxArgs {}

/// Run `kubesurge sandbox`.
pub async fn run(_args: SandboxArgs) -> Result<ExitStatus, CommandError> {
    Ok(ExitStatus::Success)
}
