//! Logs: to stderr, as text or JSON, level from -v/-q unless RUST_LOG says
//! otherwise. Results go to stdout, never logs.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::{Context, Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use super::args::{GlobalArgs, LogFormat};
use super::output;

/// The filter for `-v`/`-q` counts: our own crates one step more verbose
/// than the libraries underneath, which are noisy at debug. Without `-v`,
/// kube's per-request error log is off: every error reaches the user once,
/// through the command's own message.
pub fn filter_for(verbose: u8, quiet: u8) -> &'static str {
    match (verbose, quiet) {
        (0, 0) => {
            "warn,kube_client::client::builder=off,kubesurge=info,kubesurge_provider=info,\
             kubesurge_sim=info,kubesurge_testworld=info"
        }
        (1, _) => {
            "info,kubesurge=debug,kubesurge_provider=debug,kubesurge_sim=debug,\
             kubesurge_testworld=debug"
        }
        (2, _) => {
            "debug,kubesurge=trace,kubesurge_provider=trace,kubesurge_sim=trace,\
             kubesurge_testworld=trace"
        }
        (v, _) if v >= 3 => "trace",
        (_, 1) => "warn,kube_client::client::builder=off",
        (_, 2) => "error,kube_client::client::builder=off",
        _ => "off",
    }
}

/// Install the global subscriber. Call once, before anything logs; a second
/// call is ignored.
pub fn init_logging(args: &GlobalArgs) {
    let rust_log = std::env::var("RUST_LOG")
        .ok()
        .filter(|directives| !directives.trim().is_empty());
    let (filter, bad_rust_log) = match &rust_log {
        Some(directives) => match EnvFilter::try_new(directives) {
            Ok(filter) => (filter, None),
            Err(error) => (
                EnvFilter::new(filter_for(args.verbose, args.quiet)),
                Some((directives.clone(), error)),
            ),
        },
        None => (EnvFilter::new(filter_for(args.verbose, args.quiet)), None),
    };
    let fmt_layer: Box<dyn Layer<Layered<EnvFilter, Registry>> + Send + Sync> =
        match args.log_format {
            LogFormat::Text => tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_target(false)
                .boxed(),
            LogFormat::Json => {
                // The run and slot spans' fields (`run_id`, `pool`,
                // `old_node`) go on every event inside them: the innermost
                // span as `span`, all of them as `spans`.
                output::set_json_stderr();
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(true)
                    .with_writer(std::io::stderr)
                    .with_ansi(false)
                    .boxed()
            }
        };
    // Unless asked for detail (-v, RUST_LOG), kube-client's own warnings
    // are not shown as it words them (Rust debug values of I/O errors):
    // what they mean is said in a sentence instead.
    let reword = args.verbose == 0 && rust_log.is_none();
    let text = args.log_format == LogFormat::Text;
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer.with_filter(filter_fn(move |meta| {
            let kube_warning_reworded = reword && is_kube_client_warning(meta);
            let span_text_omits = text && is_own_span(meta);
            !kube_warning_reworded && !span_text_omits
        })))
        .with(reword.then(KubeClientWarnings::default))
        .try_init();
    if installed.is_ok()
        && let Some((directives, error)) = bad_rust_log
    {
        tracing::warn!(%directives, %error, "RUST_LOG is invalid; using the -v/-q level");
    }
}

/// kubesurge's own spans (a run, a slot) are for the JSON logs' fields:
/// text lines stay as they were, without a `run{…}:slot{…}:` prefix (the
/// progress lines already name the pool and node).
fn is_own_span(meta: &Metadata<'_>) -> bool {
    meta.is_span() && meta.target().starts_with("kubesurge")
}

/// The target kube-client logs its warnings under
/// (`kube_client::client::Client::request_events` and friends).
const KUBE_CLIENT_TARGET: &str = "kube_client::client";

fn is_kube_client_warning(meta: &Metadata<'_>) -> bool {
    meta.target() == KUBE_CLIENT_TARGET && *meta.level() == Level::WARN
}

/// How often at most the sentence for closed watches is logged: an API
/// server that restarts closes every watch at once.
const WATCHES_CLOSED_EVERY: Duration = Duration::from_secs(30);

/// Says in a sentence what kube-client's warnings mean. A watch the server
/// ended (`eof in poll`, `timeout in poll`: the API server restarting, or a
/// long watch timing out) is resumed by the watcher, so it is worth one
/// line at most per burst; a body kube could not parse becomes an error
/// the command reports itself, so its warning (the raw body) is dropped.
#[derive(Default)]
struct KubeClientWarnings {
    last_watches_closed: Mutex<Option<Instant>>,
}

impl KubeClientWarnings {
    /// Whether the closed-watches sentence is due (and note it if so).
    fn watches_closed_due(&self, now: Instant) -> bool {
        let mut last = self
            .last_watches_closed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let due = last.is_none_or(|at| now.duration_since(at) >= WATCHES_CLOSED_EVERY);
        if due {
            *last = Some(now);
        }
        due
    }
}

impl<S: Subscriber> Layer<S> for KubeClientWarnings {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if !is_kube_client_warning(event.metadata()) {
            return;
        }
        let mut message = Message::default();
        event.record(&mut message);
        if is_watch_closed(&message.0) && self.watches_closed_due(Instant::now()) {
            tracing::info!(
                "the API server closed kubesurge's watches (it may be restarting); they resume by themselves"
            );
        }
    }
}

/// kube-client's words for a watch that ended and is resumed.
fn is_watch_closed(message: &str) -> bool {
    message.starts_with("eof in poll") || message.starts_with("timeout in poll")
}

/// An event's `message` field, as text.
#[derive(Default)]
struct Message(String);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
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

    #[test]
    fn closed_watches_are_recognised_and_said_once_per_burst() {
        assert!(is_watch_closed(
            "eof in poll: Custom { kind: UnexpectedEof, error: \"peer closed connection\" }"
        ));
        assert!(is_watch_closed("timeout in poll: deadline has elapsed"));
        assert!(!is_watch_closed("{\"kind\":\"Status\"}, Error(\"EOF\")"));
        let warnings = KubeClientWarnings::default();
        let start = Instant::now();
        assert!(warnings.watches_closed_due(start));
        assert!(!warnings.watches_closed_due(start + Duration::from_secs(1)));
        assert!(warnings.watches_closed_due(start + WATCHES_CLOSED_EVERY));
    }
}
