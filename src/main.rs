//! The `kubesurge` binary: parse, set up logs, run, exit. Everything else
//! is in the library.

use std::process::ExitCode;

use clap::Parser;
use kubesurge::ExitStatus;
use kubesurge::cli::{self, Cli};

fn main() -> ExitCode {
    // Parse errors exit 2 (clap); --help and --version exit 0.
    let cli = Cli::parse();
    cli::init_logging(&cli.global);
    // One thread: the tool waits on the network almost all the time (a few
    // percent of one core at a thousand nodes), and a second worker only
    // added the cost of waking it: futex waits and wakes were a fifth of
    // the tool's CPU with the multi-threaded runtime, and each worker's
    // malloc arena added to the peak RSS (README, Performance). Blocking
    // work still goes to tokio's blocking pool.
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
