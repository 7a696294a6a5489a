//! The `kubesurge` binary: parse, set up logs, run, exit. Everything else
//! is in the library.

use std::process::ExitCode;

use clap::Parser;
use kubesurge::ExitStatus;
use kubesurge::cli::{self, Cli};

/// jemalloc instead of glibc's malloc: at a thousand nodes a quarter of
/// the run's CPU was glibc's allocator (README, Performance).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // Parse errors exit 2 (clap); --help and --version exit 0.
    let cli = Cli::parse();
    cli::init_logging(&cli.global);
    // One thread: the run waits on the network almost all the time, and
    // at a thousand nodes a second worker thread cost more in wake-ups and
    // memory than it saved (README, Performance). The run lock's renewals
    // have a thread of their own (`kube::lock`), so a busy moment here
    // cannot delay them past their deadline.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitStatus::Failed.into();
        }
    };
    runtime.block_on(cli::run(cli)).into()
}
