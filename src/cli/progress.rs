//! The live view of a run: on a terminal one line per slot (phase, old →
//! new node, elapsed, what blocks it) under an overall bar; otherwise plain
//! lines; under `--log-format json`, log events. All go to stderr: stdout
//! carries only results.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::rotation::{Phase, Progress};

use super::args::{GlobalArgs, LogFormat};
use super::output::eprint_line;

/// Chooses the view from the flags and whether stderr is a terminal.
pub fn for_stderr(global: &GlobalArgs) -> Box<dyn Progress> {
    if global.quiet > 0 {
        Box::new(crate::rotation::Silent)
    } else if global.log_format == LogFormat::Json {
        Box::new(JsonEvents::default())
    } else if std::io::stderr().is_terminal() {
        Box::new(LiveView::new())
    } else {
        Box::new(PlainLines::default())
    }
}

/// When each slot was first heard of: the elapsed time progress shows.
#[derive(Default)]
struct SlotClocks(Mutex<BTreeMap<String, Instant>>);

impl SlotClocks {
    fn elapsed(&self, pool: &str, node: &str) -> Duration {
        let mut started = self.0.lock().unwrap_or_else(|p| p.into_inner());
        started
            .entry(format!("{pool}/{node}"))
            .or_insert_with(Instant::now)
            .elapsed()
    }
}

/// Progress as log events (target `kubesurge::progress`), so that under
/// `--log-format json` every stderr line is JSON. The events are emitted
/// inside the engine's run and slot spans, whose fields (`run_id`, `pool`,
/// `old_node`) the JSON formatter adds.
#[derive(Default)]
pub struct JsonEvents {
    clocks: SlotClocks,
}

impl Progress for JsonEvents {
    fn start(&self, run_id: &str, total: usize) {
        tracing::info!(
            target: "kubesurge::progress",
            run_id,
            total,
            "run {run_id}: {total} node(s) to replace"
        );
    }

    fn phase(&self, pool: &str, node: &str, phase: Phase, detail: &str) {
        let elapsed_seconds = self.clocks.elapsed(pool, node).as_secs();
        let phase = phase.as_str();
        tracing::info!(
            target: "kubesurge::progress",
            pool,
            node,
            phase,
            detail,
            elapsed_seconds,
            "[{pool}/{node}] {phase} {detail}"
        );
    }

    fn blocked(&self, pool: &str, node: &str, reason: &str) {
        tracing::info!(
            target: "kubesurge::progress",
            pool,
            node,
            phase = "waiting",
            reason,
            "[{pool}/{node}] waiting {reason}"
        );
    }

    fn note(&self, message: &str) {
        tracing::info!(target: "kubesurge::progress", "{message}");
    }
}

/// One line per event, for logs and CI.
#[derive(Default)]
pub struct PlainLines {
    clocks: SlotClocks,
}

impl Progress for PlainLines {
    fn start(&self, run_id: &str, total: usize) {
        eprint_line(&format!("run {run_id}: {total} node(s) to replace"));
    }

    fn phase(&self, pool: &str, node: &str, phase: Phase, detail: &str) {
        let elapsed = self.clocks.elapsed(pool, node);
        eprint_line(&format!(
            "[{pool}/{node}] {:<11} {detail} ({:.0}s)",
            phase.as_str(),
            elapsed.as_secs_f64()
        ));
    }

    fn blocked(&self, pool: &str, node: &str, reason: &str) {
        eprint_line(&format!("[{pool}/{node}] waiting     {reason}"));
    }

    fn note(&self, message: &str) {
        eprint_line(message);
    }
}

/// The terminal view.
pub struct LiveView {
    multi: MultiProgress,
    overall: ProgressBar,
    slots: Mutex<BTreeMap<String, ProgressBar>>,
}

impl LiveView {
    fn new() -> LiveView {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} replaced  {elapsed_precise}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        LiveView {
            multi,
            overall,
            slots: Mutex::new(BTreeMap::new()),
        }
    }

    fn slot(&self, pool: &str, node: &str) -> ProgressBar {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .entry(format!("{pool}/{node}"))
            .or_insert_with(|| {
                let bar = self
                    .multi
                    .insert_before(&self.overall, ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {prefix:<28} {msg} [{elapsed}]")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(format!("{pool}/{node}"));
                bar.enable_steady_tick(Duration::from_millis(250));
                bar
            })
            .clone()
    }
}

impl Progress for LiveView {
    fn start(&self, _run_id: &str, total: usize) {
        self.overall.set_length(total as u64);
    }

    fn phase(&self, pool: &str, node: &str, phase: Phase, detail: &str) {
        let bar = self.slot(pool, node);
        bar.set_message(format!("{:<11} {detail}", phase.as_str()));
        if matches!(phase, Phase::Done | Phase::Skipped | Phase::Failed) {
            bar.finish();
            if phase == Phase::Done {
                self.overall.inc(1);
            }
        }
    }

    fn blocked(&self, pool: &str, node: &str, reason: &str) {
        self.slot(pool, node)
            .set_message(format!("waiting     {reason}"));
    }

    fn note(&self, message: &str) {
        let _ = self.multi.println(message);
    }
}
