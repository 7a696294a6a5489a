//! The live view of a run: on a terminal one line per slot (phase, old →
//! new node, elapsed, what blocks it) under an overall bar; otherwise plain
//! lines. Both go to stderr: stdout carries only results.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::rotation::{Phase, Progress};

use super::output::eprint_line;

/// Chooses the view from whether stderr is a terminal.
pub fn for_stderr(quiet: bool) -> Box<dyn Progress> {
    if quiet {
        Box::new(crate::rotation::Silent)
    } else if std::io::stderr().is_terminal() {
        Box::new(LiveView::new())
    } else {
        Box::new(PlainLines::default())
    }
}

/// One line per event, for logs and CI.
#[derive(Default)]
pub struct PlainLines {
    started: Mutex<BTreeMap<String, Instant>>,
}

impl PlainLines {
    fn elapsed(&self, key: &str) -> Duration {
        let mut started = self.started.lock().unwrap_or_else(|p| p.into_inner());
        started
            .entry(key.to_string())
            .or_insert_with(Instant::now)
            .elapsed()
    }
}

impl Progress for PlainLines {
    fn start(&self, run_id: &str, total: usize) {
        eprint_line(&format!("run {run_id}: {total} node(s) to replace"));
    }

    fn phase(&self, pool: &str, node: &str, phase: Phase, detail: &str) {
        let elapsed = self.elapsed(&format!("{pool}/{node}"));
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
