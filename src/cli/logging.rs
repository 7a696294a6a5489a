//! Logs: to stderr, as text or JSON, level from -v/-q unless RUST_LOG says
//! otherwise. Results go to stdout, never logs.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use super::args::{GlobalArgs, LogFormat};

/// The filter for `-v`/`-q` counts: our own crates one step more verbose
/// than the libraries underneath, which are noisy at debug. Without `-v`,
/// kube's per-request error log is off: every error reaches the user once,
/// through the command's own message.
pub fn filter_for(verbose: u8, quiet: u8) -> &'static str {
    match (verbose, quiet) {
        (0, 0) => {
            "warn,kube_client::client::builder=off,kubesurge=info,kubesurge_provider=info,\
             kubesurge_sim=info"
        }
        (1, _) => "info,kubesurge=debug,kubesurge_provider=debug,kubesurge_sim=debug",
        (2, _) => "debug,kubesurge=trace,kubesurge_provider=trace,kubesurge_sim=trace",
        (v, _) if v >= 3 => "trace",
        (_, 1) => "warn,kube_client::client::builder=off",
        (_, 2) => "error,kube_client::client::builder=off",
        _ => "off",
    }
}

/// Install the global subscriber. Call once, before anything logs; a second
/// call is ignored.
pub fn init_logging(args: &GlobalArgs) {
    let (filter, bad_rust_log) = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => match EnvFilter::try_new(&directives) {
            Ok(filter) => (filter, None),
            Err(error) => (
                EnvFilter::new(filter_for(args.verbose, args.quiet)),
                Some((directives, error)),
            ),
        },
        _ => (EnvFilter::new(filter_for(args.verbose, args.quiet)), None),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match args.log_format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
    if installed.is_ok()
        && let Some((directives, error)) = bad_rust_log
    {
        tracing::warn!(%directives, %error, "RUST_LOG is invalid; using the -v/-q level");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_verbosity_is_a_valid_filter() {
        for (verbose, quiet) in [
            (0, 0),
            (1, 0),
            (2, 0),
            (3, 0),
            (9, 0),
            (0, 1),
            (0, 2),
            (0, 3),
        ] {
            let directives = filter_for(verbose, quiet);
            assert!(EnvFilter::try_new(directives).is_ok(), "{directives}");
        }
        assert!(filter_for(0, 2).starts_with("error,"));
        assert_eq!(filter_for(0, 3), "off");
    }
}
