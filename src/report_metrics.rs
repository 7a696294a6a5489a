//! A run's report as Prometheus metrics, in the text exposition format
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/>), for a
//! node-exporter textfile collector or a push gateway: how the last run
//! ended, what it replaced, how long each phase took, how often
//! PodDisruptionBudgets refused an eviction.
//!
//! Pure: the report in, the text out. Writing the file is the CLI's job.

use std::collections::BTreeMap;
use std::fmt::Write;

use jiff::Timestamp;

use crate::rotation::{RunOutcome, RunReport, SlotOutcome};
use crate::upgrade::{UpgradeOutcome, UpgradeReport};

/// Every outcome a run can have: `kubesurge_run_last_outcome` has one
/// series for each, 1 for the outcome of the run and 0 for the others, so
/// an alert can compare against any of them without the series vanishing.
pub const OUTCOMES: [&str; 5] = ["succeeded", "failed", "aborted", "partial", "deferred"];

/// What the metrics are made of: one run of `rotate` or `upgrade`.
#[derive(Clone, Copy, Debug)]
pub struct RunMetrics<'a> {
    /// `rotate` or `upgrade`: the `command` label.
    pub command: &'static str,
    /// One of [`OUTCOMES`].
    pub outcome: &'static str,
    pub started: Timestamp,
    pub finished: Timestamp,
    /// The worker rotations the run made (one for `rotate`, one per
    /// rotation of an upgrade).
    pub rotations: &'a [RunReport],
}

impl<'a> RunMetrics<'a> {
    pub fn of_rotation(report: &'a RunReport) -> RunMetrics<'a> {
        RunMetrics {
            command: "rotate",
            outcome: rotation_outcome(&report.outcome),
            started: report.started,
            finished: report.finished,
            rotations: std::slice::from_ref(report),
        }
    }

    /// A run that ended in an error before it had a report (the API server
    /// unreachable, the config invalid, the lock held): `failed`, nothing
    /// replaced, so the outcome monitoring sees is never an older run's.
    pub fn of_error(
        command: &'static str,
        started: Timestamp,
        finished: Timestamp,
    ) -> RunMetrics<'static> {
        RunMetrics {
            command,
            outcome: "failed",
            started,
            finished,
            rotations: &[],
        }
    }

    pub fn of_upgrade(report: &'a UpgradeReport) -> RunMetrics<'a> {
        RunMetrics {
            command: "upgrade",
            outcome: upgrade_outcome(&report.outcome),
            started: report.started,
            finished: report.finished,
            rotations: &report.rotations,
        }
    }
}

/// The outcome's name, as the report's `result` field spells it.
fn rotation_outcome(outcome: &RunOutcome) -> &'static str {
    match outcome {
        RunOutcome::Succeeded => "succeeded",
        RunOutcome::Failed { .. } => "failed",
        RunOutcome::Aborted => "aborted",
        RunOutcome::Stopped { .. } => "partial",
        RunOutcome::Deferred { .. } => "deferred",
    }
}

/// The outcome's name, as the report's `result` field spells it.
fn upgrade_outcome(outcome: &UpgradeOutcome) -> &'static str {
    match outcome {
        UpgradeOutcome::Succeeded => "succeeded",
        UpgradeOutcome::Failed { .. } => "failed",
        UpgradeOutcome::Aborted => "aborted",
        UpgradeOutcome::Partial { .. } => "partial",
        UpgradeOutcome::Deferred { .. } => "deferred",
    }
}

/// The phases a slot's report times, by their `phase` label.
const PHASES: [&str; 3] = ["launch_to_ready", "drain", "terminate"];

/// Per pool: per phase the sum of seconds and the number of slots timed,
/// and the evictions PodDisruptionBudgets refused.
#[derive(Default)]
struct PoolTotals {
    phases: BTreeMap<&'static str, (f64, u64)>,
    evictions_refused: u64,
}

fn pool_totals(rotations: &[RunReport]) -> BTreeMap<&str, PoolTotals> {
    let mut pools: BTreeMap<&str, PoolTotals> = BTreeMap::new();
    for slot in rotations.iter().flat_map(|r| &r.slots) {
        let totals = pools.entry(slot.pool.as_str()).or_default();
        let timings = &slot.timings;
        for (phase, seconds) in
            PHASES
                .into_iter()
                .zip([timings.launch_to_ready, timings.drain, timings.terminate])
        {
            if let Some(seconds) = seconds {
                let (sum, count) = totals.phases.entry(phase).or_default();
                *sum += seconds;
                *count += 1;
            }
        }
        if let Some(drain) = &slot.drain {
            totals.evictions_refused += u64::from(drain.evictions_refused);
        }
    }
    pools
}

/// The run as Prometheus text: every family with its HELP and TYPE lines,
/// label values escaped, one final newline.
pub fn exposition(run: &RunMetrics<'_>) -> String {
    let command = [("command", run.command)];
    let slots = || run.rotations.iter().flat_map(|r| &r.slots);
    let mut text = Exposition::default();

    text.family(
        "kubesurge_run_last_outcome",
        "gauge",
        "How the last run ended: 1 for its outcome, 0 for the others.",
    );
    for outcome in OUTCOMES {
        let value = if outcome == run.outcome { 1.0 } else { 0.0 };
        text.sample(
            "kubesurge_run_last_outcome",
            &[("command", run.command), ("outcome", outcome)],
            value,
        );
    }

    text.family(
        "kubesurge_run_last_finished_timestamp_seconds",
        "gauge",
        "When the last run ended, in seconds since the Unix epoch.",
    );
    text.sample(
        "kubesurge_run_last_finished_timestamp_seconds",
        &command,
        run.finished.as_millisecond() as f64 / 1000.0,
    );

    text.family(
        "kubesurge_run_duration_seconds",
        "gauge",
        "How long the last run took.",
    );
    let duration = run.finished.duration_since(run.started).as_secs_f64();
    text.sample(
        "kubesurge_run_duration_seconds",
        &command,
        duration.max(0.0),
    );

    text.family(
        "kubesurge_run_nodes_replaced",
        "gauge",
        "Workers the last run replaced.",
    );
    let replaced = slots()
        .filter(|s| s.outcome == SlotOutcome::Replaced)
        .count();
    text.sample("kubesurge_run_nodes_replaced", &command, replaced as f64);

    text.family(
        "kubesurge_run_nodes_failed",
        "gauge",
        "Workers whose replacement failed in the last run.",
    );
    let failed = slots()
        .filter(|s| matches!(s.outcome, SlotOutcome::Failed { .. }))
        .count();
    text.sample("kubesurge_run_nodes_failed", &command, failed as f64);

    let pools = pool_totals(run.rotations);
    text.family(
        "kubesurge_slot_phase_seconds",
        "summary",
        "Seconds the last run's slots spent in each phase, per pool.",
    );
    for (pool, totals) in &pools {
        for (phase, (sum, count)) in &totals.phases {
            let labels = [("command", run.command), ("pool", pool), ("phase", phase)];
            text.sample("kubesurge_slot_phase_seconds_sum", &labels, *sum);
            text.sample("kubesurge_slot_phase_seconds_count", &labels, *count as f64);
        }
    }

    text.family(
        "kubesurge_drain_evictions_refused_total",
        "counter",
        "Evictions a PodDisruptionBudget refused (HTTP 429) during the last run's drains, per pool.",
    );
    for (pool, totals) in &pools {
        text.sample(
            "kubesurge_drain_evictions_refused_total",
            &[("command", run.command), ("pool", pool)],
            totals.evictions_refused as f64,
        );
    }
    text.0
}

/// The text being built.
#[derive(Default)]
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            let pairs: Vec<String> = labels
                .iter()
                .map(|(label, value)| format!("{label}=\"{}\"", escape_label_value(value)))
                .collect();
            let _ = write!(self.0, "{{{}}}", pairs.join(","));
        }
        let _ = writeln!(self.0, " {}", number(value));
    }
}

/// A sample value: Go's `ParseFloat` syntax, which the format uses.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        value.to_string()
    }
}

/// Label values escape backslash, double quote and line feed (the
/// exposition format's "label_value can be any sequence of UTF-8
/// characters, but the backslash, double-quote, and line feed characters
/// have to be escaped").
fn escape_label_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// HELP text escapes backslash and line feed only.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::drain::{DrainOutcome, DrainReport};
    use crate::rotation::SlotReport;

    fn slot(pool: &str, node: &str, drain: f64, refused: u32) -> SlotReport {
        let mut slot = SlotReport::not_started(pool, node);
        slot.outcome = SlotOutcome::Replaced;
        slot.timings.launch_to_ready = Some(40.0);
        slot.timings.drain = Some(drain);
        slot.timings.terminate = Some(1.5);
        slot.drain = Some(DrainReport {
            node: node.into(),
            evicted: Vec::new(),
            skipped: Vec::new(),
            evictions_refused: refused,
            outcome: DrainOutcome::Drained,
        });
        slot
    }

    fn report() -> RunReport {
        let mut failed = SlotReport::not_started("gpu", "gpu-1");
        failed.outcome = SlotOutcome::Failed {
            reason: "boom".into(),
        };
        failed.timings.launch_to_ready = Some(90.0);
        RunReport {
            run_id: "r-1".into(),
            command: "rotate --all".into(),
            target: "v1.35.3".parse().unwrap(),
            started: "2026-01-03T02:00:00Z".parse().unwrap(),
            finished: "2026-01-03T02:10:00.5Z".parse().unwrap(),
            dry_run: false,
            outcome: RunOutcome::Failed {
                reason: "gpu-1: boom".into(),
            },
            slots: vec![
                slot("general", "general-1", 10.0, 3),
                slot("general", "general-2", 20.0, 0),
                failed,
            ],
            would: Vec::new(),
        }
    }

    #[test]
    fn a_rotation_becomes_every_family_with_help_type_and_labels() {
        let report = report();
        let text = exposition(&RunMetrics::of_rotation(&report));
        for line in [
            "# HELP kubesurge_run_last_outcome How the last run ended: 1 for its outcome, 0 for the others.",
            "# TYPE kubesurge_run_last_outcome gauge",
            "kubesurge_run_last_outcome{command=\"rotate\",outcome=\"failed\"} 1",
            "kubesurge_run_last_outcome{command=\"rotate\",outcome=\"succeeded\"} 0",
            "kubesurge_run_last_outcome{command=\"rotate\",outcome=\"deferred\"} 0",
            "kubesurge_run_last_finished_timestamp_seconds{command=\"rotate\"} 1767406200.5",
            "kubesurge_run_duration_seconds{command=\"rotate\"} 600.5",
            "kubesurge_run_nodes_replaced{command=\"rotate\"} 2",
            "kubesurge_run_nodes_failed{command=\"rotate\"} 1",
            "# TYPE kubesurge_slot_phase_seconds summary",
            "kubesurge_slot_phase_seconds_sum{command=\"rotate\",pool=\"general\",phase=\"drain\"} 30",
            "kubesurge_slot_phase_seconds_count{command=\"rotate\",pool=\"general\",phase=\"drain\"} 2",
            "kubesurge_slot_phase_seconds_sum{command=\"rotate\",pool=\"general\",phase=\"terminate\"} 3",
            "kubesurge_slot_phase_seconds_sum{command=\"rotate\",pool=\"gpu\",phase=\"launch_to_ready\"} 90",
            "# TYPE kubesurge_drain_evictions_refused_total counter",
            "kubesurge_drain_evictions_refused_total{command=\"rotate\",pool=\"general\"} 3",
            "kubesurge_drain_evictions_refused_total{command=\"rotate\",pool=\"gpu\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // The failed slot never drained: no drain series for its pool.
        assert!(!text.contains("pool=\"gpu\",phase=\"drain\""), "{text}");
        assert!(text.ends_with("} 0\n"), "{text}");
    }

    #[test]
    fn an_upgrade_counts_every_rotation_and_names_its_outcome() {
        let rotation = report();
        let mut upgrade = UpgradeReport::starting(
            "v1.35.3".parse().unwrap(),
            "2026-01-03T01:00:00Z".parse().unwrap(),
        );
        upgrade.finished = "2026-01-03T03:00:00Z".parse().unwrap();
        upgrade.rotations = vec![rotation.clone(), rotation];
        let text = exposition(&RunMetrics::of_upgrade(&upgrade));
        assert!(
            text.contains(
                "kubesurge_run_last_outcome{command=\"upgrade\",outcome=\"succeeded\"} 1\n"
            )
        );
        assert!(text.contains("kubesurge_run_nodes_replaced{command=\"upgrade\"} 4\n"));
        assert!(text.contains("kubesurge_run_duration_seconds{command=\"upgrade\"} 7200\n"));
        assert!(text.contains(
            "kubesurge_drain_evictions_refused_total{command=\"upgrade\",pool=\"general\"} 6\n"
        ));
    }

    #[test]
    fn an_error_is_a_failed_run_that_replaced_nothing() {
        let at: Timestamp = "2026-01-03T02:00:00Z".parse().unwrap();
        let text = exposition(&RunMetrics::of_error("upgrade", at, at));
        assert!(
            text.contains("kubesurge_run_last_outcome{command=\"upgrade\",outcome=\"failed\"} 1\n")
        );
        assert!(text.contains("kubesurge_run_nodes_replaced{command=\"upgrade\"} 0\n"));
        assert!(text.contains(
            "kubesurge_run_last_finished_timestamp_seconds{command=\"upgrade\"} 1767405600\n"
        ));
        // Families without series still say what they are.
        assert!(text.contains("# TYPE kubesurge_slot_phase_seconds summary\n"));
        assert!(!text.contains("pool="), "{text}");
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut report = report();
        report.slots = vec![slot("a\"b\\c\nd", "n", 1.0, 1)];
        let text = exposition(&RunMetrics::of_rotation(&report));
        assert!(
            text.contains("pool=\"a\\\"b\\\\c\\nd\""),
            "label value not escaped:\n{text}"
        );
        assert_eq!(escape_help("a\\b\nc \"q\""), "a\\\\b\\nc \"q\"");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(0.25), "0.25");
    }
}
