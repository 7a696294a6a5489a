//! The command line: clap types in `args`, one module per command, and
//! `run`, which turns a command's outcome into an exit status and its error
//! into a message on stderr.

pub mod abort;
pub mod args;
mod check;
pub mod completion;
mod error;
pub mod gc;
pub mod init;
pub mod jsonpath;
mod logging;
mod metrics_file;
mod output;
mod plan;
pub mod progress;
pub mod rotate;
pub mod run;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod schema;
pub mod status;
mod table;
pub mod upgrade;
mod version;

pub use args::{
    Cli, Command, GlobalArgs, LogFormat, MutationFlags, OutputFormat, PlanArgs, ReportFormat,
    SettingsFlags,
};
pub use error::CommandError;
pub use logging::init_logging;

use crate::ExitStatus;
use crate::report_metrics::RunMetrics;

/// Run a parsed command line. Errors are printed to stderr here; the exit
/// status says what kind of end it was.
pub async fn run(cli: Cli) -> ExitStatus {
    let started = jiff::Timestamp::now();
    let metrics_on_error = metrics_on_error(&cli.command);
    let result = match cli.command {
        Command::Plan(args) => plan::run(&cli.global, args).await,
        Command::Check(args) => check::run(&cli.global, args).await,
        Command::Rotate(args) => rotate::run(&cli.global, args).await,
        Command::Upgrade(args) => upgrade::run(&cli.global, args).await,
        Command::Status(args) => status::run(&cli.global, args).await,
        Command::Abort(args) => abort::run(&cli.global, args).await,
        Command::Gc(args) => gc::run(&cli.global, args).await,
        Command::Init(args) => init::run(&cli.global, args).await,
        #[cfg(feature = "sandbox")]
        Command::Sandbox(args) => sandbox::run(args).await,
        Command::Completion(args) => completion::run(args),
        Command::Man(args) => completion::run_man(args),
        Command::Schema(args) => schema::run(args),
        Command::Version(args) => version::run(args),
    };
    match result {
        Ok(status) => status,
        Err(error) => {
            tracing::debug!(?error, "command failed");
            output::eprint_error(&error.to_string());
            if let Some((command, path)) = metrics_on_error {
                let failed = RunMetrics::of_error(command, started, jiff::Timestamp::now());
                metrics_file::write_if_asked(Some(&path), &failed);
            }
            error.status()
        }
    }
}

/// Where a run that ends in an error writes its metrics: `rotate` and
/// `upgrade` with `--metrics-file`, unless a dry run.
fn metrics_on_error(command: &Command) -> Option<(&'static str, std::path::PathBuf)> {
    let (name, flags) = match command {
        Command::Rotate(args) => ("rotate", &args.flags),
        Command::Upgrade(args) => ("upgrade", &args.flags),
        _ => return None,
    };
    if flags.dry_run {
        return None;
    }
    Some((name, flags.metrics_file.clone()?))
}
