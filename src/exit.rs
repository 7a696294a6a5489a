//! Exit codes, documented in `--help` and the README.

use std::process::ExitCode;

/// How a command ended. The numbers are part of the interface: scripts and
/// Terraform branch on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: done.
    Success,
    /// 1: failed; the cluster was left safe and a rerun resumes.
    Failed,
    /// 2: invalid input, or refused before any change.
    Invalid,
    /// 3: another run holds the lock.
    Locked,
    /// 4: aborted on request.
    Aborted,
    /// 5: deferred or not finished, with nothing wrong: outside the
    /// maintenance window, or stopped at its end with work left. Never 0,
    /// so that a scheduler or Terraform runs the command again.
    Deferred,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failed => 1,
            ExitStatus::Invalid => 2,
            ExitStatus::Locked => 3,
            ExitStatus::Aborted => 4,
            ExitStatus::Deferred => 5,
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        ExitCode::from(status.code())
    }
}

/// The text `--help` shows after each command's examples, as a literal so
/// that `concat!` can join it to them in clap's attributes.
macro_rules! exit_codes_help {
    () => {
        "Exit codes:
  0  done
  1  failed; the cluster was left safe and a rerun resumes
  2  invalid input, or refused before any change
  3  another run holds the lock
  4  aborted on request
  5  deferred or not finished, nothing wrong: outside the maintenance window,
     or stopped at its end with work left; rerun the same command in the window"
    };
}
pub(crate) use exit_codes_help;

/// The exit codes as `--help` shows them.
pub const EXIT_CODES_HELP: &str = exit_codes_help!();
