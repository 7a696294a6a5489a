//! `kubesurge completion SHELL` (a completion script on stdout) and the
//! hidden `kubesurge man --dir DIR` (manual pages), both generated from the
//! command line's own definition, so they never fall behind it.

use std::path::PathBuf;

use clap::{Args, CommandFactory, ValueEnum};
use thiserror::Error;

use super::args::Cli;
use super::{CommandError, output};
use crate::ExitStatus;

/// Arguments of `kubesurge completion`.
#[derive(Debug, Clone, Args)]
pub struct CompletionArgs {
    /// The shell the script is for
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

/// The shells `kubesurge completion` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
    Powershell,
}

impl From<CompletionShell> for clap_complete::Shell {
    fn from(shell: CompletionShell) -> Self {
        match shell {
            CompletionShell::Bash => clap_complete::Shell::Bash,
            CompletionShell::Zsh => clap_complete::Shell::Zsh,
            CompletionShell::Fish => clap_complete::Shell::Fish,
            CompletionShell::Powershell => clap_complete::Shell::PowerShell,
        }
    }
}

/// Arguments of `kubesurge man`.
#[derive(Debug, Clone, Args)]
pub struct ManArgs {
    /// The directory the pages are written to (it must exist), e.g.
    /// /usr/local/share/man/man1
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
}

/// The manual pages could not be written.
#[derive(Debug, Error)]
#[error("cannot write the manual pages into {dir}: {source}")]
pub struct ManError {
    pub dir: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The completion script for `shell`, as text.
pub fn script(shell: CompletionShell) -> String {
    let mut script = Vec::new();
    clap_complete::generate(
        clap_complete::Shell::from(shell),
        &mut Cli::command(),
        "kubesurge",
        &mut script,
    );
    String::from_utf8_lossy(&script).into_owned()
}

pub fn run(args: CompletionArgs) -> Result<ExitStatus, CommandError> {
    output::print(&script(args.shell))?;
    Ok(ExitStatus::Success)
}

pub fn run_man(args: ManArgs) -> Result<ExitStatus, CommandError> {
    clap_mangen::generate_to(Cli::command(), &args.dir).map_err(|source| ManError {
        dir: args.dir.clone(),
        source,
    })?;
    output::print(&format!(
        "wrote the manual pages into {}\n",
        args.dir.display()
    ))?;
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_script_naming_the_commands() {
        for shell in CompletionShell::value_variants() {
            let script = script(*shell);
            for command in ["plan", "upgrade", "rotate", "gc"] {
                assert!(script.contains(command), "{shell:?} lacks {command}");
            }
        }
    }
}
