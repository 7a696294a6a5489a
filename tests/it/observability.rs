//! What a scheduled run leaves for machines to read: under
//! `--log-format json` every stderr line is a JSON object, progress
//! included, and a slot's lines name the run, the pool and the old node;
//! `--metrics-file` holds the report as Prometheus text, read here by the
//! official Python parser (`prometheus_client` on PyPI).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use super::python_venv::python_with;
use super::rotation::{Harness, Spec, start, text, window};

/// `args` with every stderr line as JSON and the metrics written to
/// `metrics`.
async fn run_observed(h: &Harness, args: &[&str], metrics: &Path) -> Output {
    let metrics = metrics.to_str().expect("a UTF-8 path");
    let mut args = args.to_vec();
    args.extend(["--log-format", "json", "--metrics-file", metrics]);
    h.run(&args).await
}

/// Every stderr line of `output`, each a JSON object (or the test fails).
fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("a stderr line is not JSON ({e}): {line}"))
        })
        .collect()
}

/// A Python with the `prometheus_client` package (see [`python_with`]).
fn python_with_prometheus_client() -> PathBuf {
    python_with(
        "python-prometheus-client",
        "prometheus_client",
        "prometheus_client.parser",
    )
}

/// Parses the file with `text_string_to_metric_families` (which raises on
/// anything the exposition format does not allow) and prints every family
/// with its type and samples as JSON.
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families

families = {}
for family in text_string_to_metric_families(open(sys.argv[1]).read()):
    families[family.name] = {
        "type": family.type,
        "help": family.documentation,
        "samples": [
            {"name": s.name, "labels": s.labels, "value": s.value}
            for s in family.samples
        ],
    }
print(json.dumps(families))
"#;

/// The metrics file's families, as the Python parser read them.
fn parse_metrics(path: &Path) -> Value {
    let python = python_with_prometheus_client();
    let output = Command::new(python)
        .args(["-c", PARSE])
        .arg(path)
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "the metrics file does not parse: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        std::fs::read_to_string(path).unwrap_or_default()
    );
    serde_json::from_slice(&output.stdout).expect("the parser prints JSON")
}

/// The value of the one sample named `name` whose labels include `labels`.
fn sample(families: &Value, family: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let samples = families[family]["samples"]
        .as_array()
        .unwrap_or_else(|| panic!("no family {family}: {families:#}"));
    let found: Vec<f64> = samples
        .iter()
        .filter(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .map(|s| s["value"].as_f64().unwrap())
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?} in {families:#}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_rotation_logs_json_lines_and_writes_prometheus_metrics() {
    let h = start(Spec {
        pools: vec![("general", 2), ("spot", 1)],
        ..Spec::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics = dir.path().join("kubesurge.prom");
    let output = run_observed(&h, &["rotate", "--all", "--yes", "-o", "json"], &metrics).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    h.assert_converged();
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    let run_id = report["runId"].as_str().unwrap();
    let slots = report["slots"].as_array().unwrap();
    assert_eq!(slots.len(), 3, "{report:#}");

    // Every stderr line is a JSON object with a level.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let events = json_lines(&output);
    assert!(!events.is_empty(), "no logs at all");
    for event in &events {
        assert!(event["level"].is_string(), "{event}");
        assert!(event["fields"]["message"].is_string(), "{event}");
    }
    // The start of the run, as a progress event naming the run.
    assert!(
        events.iter().any(|e| e["target"] == "kubesurge::progress"
            && e["fields"]["run_id"] == run_id
            && e["fields"]["total"] == 3),
        "{stderr}"
    );
    // Each slot's phase changes are events inside its span: the run id,
    // the pool and the old node are fields of it.
    for slot in slots {
        let pool = slot["pool"].as_str().unwrap();
        let old = slot["oldNode"].as_str().unwrap();
        let phases: Vec<&str> = events
            .iter()
            .filter(|e| e["target"] == "kubesurge::progress" && e["fields"]["node"] == old)
            .map(|e| {
                assert_eq!(e["span"]["name"], "slot", "{e}");
                assert_eq!(e["span"]["run_id"], run_id, "{e}");
                assert_eq!(e["span"]["pool"], pool, "{e}");
                assert_eq!(e["span"]["old_node"], old, "{e}");
                let names: Vec<&Value> = e["spans"]
                    .as_array()
                    .unwrap_or_else(|| panic!("no span list: {e}"))
                    .iter()
                    .map(|s| &s["name"])
                    .collect();
                assert_eq!(names, ["run", "slot"], "{e}");
                assert_eq!(e["spans"][0]["run_id"], run_id, "{e}");
                e["fields"]["phase"].as_str().unwrap()
            })
            .collect();
        for phase in ["launching", "draining", "terminating", "done"] {
            assert!(
                phases.contains(&phase),
                "{old}: no {phase} event in {phases:?}\n{stderr}"
            );
        }
    }

    // The metrics file, read by a real parser, says what the report says.
    let families = parse_metrics(&metrics);
    let rotate = [("command", "rotate")];
    for (outcome, value) in [("succeeded", 1.0), ("failed", 0.0), ("deferred", 0.0)] {
        assert_eq!(
            sample(
                &families,
                "kubesurge_run_last_outcome",
                "kubesurge_run_last_outcome",
                &[("command", "rotate"), ("outcome", outcome)],
            ),
            value
        );
    }
    assert_eq!(families["kubesurge_run_last_outcome"]["type"], "gauge");
    assert_eq!(
        sample(
            &families,
            "kubesurge_run_nodes_replaced",
            "kubesurge_run_nodes_replaced",
            &rotate
        ),
        3.0
    );
    let finished: jiff::Timestamp = report["finished"].as_str().unwrap().parse().unwrap();
    let started: jiff::Timestamp = report["started"].as_str().unwrap().parse().unwrap();
    let at = sample(
        &families,
        "kubesurge_run_last_finished_timestamp_seconds",
        "kubesurge_run_last_finished_timestamp_seconds",
        &rotate,
    );
    assert!((at - finished.as_millisecond() as f64 / 1000.0).abs() < 0.01);
    let duration = sample(
        &families,
        "kubesurge_run_duration_seconds",
        "kubesurge_run_duration_seconds",
        &rotate,
    );
    assert!(
        (duration - finished.duration_since(started).as_secs_f64()).abs() < 0.01,
        "{duration}"
    );

    // Per pool and phase: the sum and count of the slots' timings;
    // per pool: the PDB refusals the drain reports counted.
    assert_eq!(families["kubesurge_slot_phase_seconds"]["type"], "summary");
    let mut drains: BTreeMap<&str, (f64, f64, f64)> = BTreeMap::new();
    for slot in slots {
        let entry = drains.entry(slot["pool"].as_str().unwrap()).or_default();
        entry.0 += slot["timings"]["drain"].as_f64().expect("drain timed");
        entry.1 += 1.0;
        entry.2 += slot["drain"]["evictionsRefused"]
            .as_f64()
            .expect("the drain report counts refusals");
    }
    // The workloads' budgets allow no disruption until the replacements'
    // pods are Ready, so the first evictions are refused.
    assert!(
        drains.values().map(|d| d.2).sum::<f64>() > 0.0,
        "no PDB refusal counted: {report:#}"
    );
    for (pool, (sum, count, refused)) in drains {
        let labels = [("command", "rotate"), ("pool", pool), ("phase", "drain")];
        let got_sum = sample(
            &families,
            "kubesurge_slot_phase_seconds",
            "kubesurge_slot_phase_seconds_sum",
            &labels,
        );
        assert!((got_sum - sum).abs() < 1e-6, "{pool}: {got_sum} != {sum}");
        assert_eq!(
            sample(
                &families,
                "kubesurge_slot_phase_seconds",
                "kubesurge_slot_phase_seconds_count",
                &labels,
            ),
            count
        );
        assert_eq!(
            sample(
                &families,
                "kubesurge_drain_evictions_refused",
                "kubesurge_drain_evictions_refused_total",
                &[("command", "rotate"), ("pool", pool)],
            ),
            refused
        );
    }
    assert_eq!(
        families["kubesurge_drain_evictions_refused"]["type"],
        "counter"
    );
    // Written by rename: nothing but the file is left in the directory.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

/// Outside the window a scheduled run changes nothing, and the metrics
/// say `deferred`; the messages of the run are JSON too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_run_writes_deferred_metrics_and_json_messages() {
    let now = jiff::Timestamp::now();
    let h = start(Spec {
        pools: vec![("general", 1)],
        workloads: false,
        extra: window(
            now - jiff::SignedDuration::from_hours(2),
            now - jiff::SignedDuration::from_hours(1),
        ),
        ..Spec::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics = dir.path().join("kubesurge.prom");
    let output = run_observed(&h, &["rotate", "--all", "--yes"], &metrics).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(5), "{all}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let messages: Vec<String> = json_lines(&output)
        .iter()
        .map(|event| event["fields"]["message"].as_str().unwrap().to_string())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("not finished (exit 5)")),
        "{stderr}"
    );
    let families = parse_metrics(&metrics);
    for (outcome, value) in [("deferred", 1.0), ("succeeded", 0.0)] {
        assert_eq!(
            sample(
                &families,
                "kubesurge_run_last_outcome",
                "kubesurge_run_last_outcome",
                &[("command", "rotate"), ("outcome", outcome)],
            ),
            value
        );
    }
    assert_eq!(
        sample(
            &families,
            "kubesurge_run_nodes_replaced",
            "kubesurge_run_nodes_replaced",
            &[("command", "rotate")],
        ),
        0.0
    );
}

/// A run that ends in an error has no report; its metrics still say
/// `failed`, so monitoring never keeps showing an older run's success, and
/// its error line is JSON like the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_errors_writes_failed_metrics_and_a_json_error() {
    let h = start(Spec {
        pools: vec![("general", 1)],
        workloads: false,
        ..Spec::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics = dir.path().join("kubesurge.prom");
    std::fs::write(&metrics, "# an older run's metrics\n").expect("old file");
    let output = run_observed(&h, &["rotate", "--pool", "no-such-pool", "--yes"], &metrics).await;
    let all = text(&output);
    assert_ne!(output.status.code(), Some(0), "{all}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let events = json_lines(&output);
    let error = events
        .iter()
        .find(|e| e["level"] == "ERROR")
        .unwrap_or_else(|| panic!("no error event: {stderr}"));
    assert!(
        error["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("no-such-pool"),
        "{error}"
    );
    let families = parse_metrics(&metrics);
    assert_eq!(
        sample(
            &families,
            "kubesurge_run_last_outcome",
            "kubesurge_run_last_outcome",
            &[("command", "rotate"), ("outcome", "failed")],
        ),
        1.0
    );
    assert_eq!(
        sample(
            &families,
            "kubesurge_run_nodes_replaced",
            "kubesurge_run_nodes_replaced",
            &[("command", "rotate")],
        ),
        0.0
    );
}

/// An upgrade (a control-plane hop, then the workers) under the same
/// flags: the API server restarts while it runs, and still every stderr
/// line is JSON; the metrics are the upgrade's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_logs_json_lines_and_writes_its_metrics() {
    let h = start(Spec {
        version: "v1.34.4",
        pools: vec![("general", 2)],
        ..Spec::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics = dir.path().join("kubesurge.prom");
    let output = run_observed(
        &h,
        &["upgrade", "--to", "v1.35.3", "--yes", "-o", "json"],
        &metrics,
    )
    .await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let events = json_lines(&output);
    for rotation in report["rotations"].as_array().unwrap() {
        let run_id = rotation["runId"].as_str().unwrap();
        for slot in rotation["slots"].as_array().unwrap() {
            let old = slot["oldNode"].as_str().unwrap();
            assert!(
                events.iter().any(|e| e["fields"]["node"] == old
                    && e["fields"]["phase"] == "done"
                    && e["span"]["run_id"] == run_id
                    && e["span"]["old_node"] == old),
                "{old}: no done event in its slot's span\n{stderr}"
            );
        }
    }
    let families = parse_metrics(&metrics);
    let upgrade = [("command", "upgrade")];
    assert_eq!(
        sample(
            &families,
            "kubesurge_run_last_outcome",
            "kubesurge_run_last_outcome",
            &[("command", "upgrade"), ("outcome", "succeeded")],
        ),
        1.0
    );
    assert_eq!(
        sample(
            &families,
            "kubesurge_run_nodes_replaced",
            "kubesurge_run_nodes_replaced",
            &upgrade,
        ),
        2.0
    );
    assert_eq!(
        sample(
            &families,
            "kubesurge_slot_phase_seconds",
            "kubesurge_slot_phase_seconds_count",
            &[
                ("command", "upgrade"),
                ("pool", "general"),
                ("phase", "drain")
            ],
        ),
        2.0
    );
}

/// The run and slot spans are for the JSON logs: text logs, even at
/// trace level, keep their lines without a `run{…}:slot{…}:` prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_stay_without_span_prefixes() {
    let h = start(Spec {
        pools: vec![("general", 2)],
        ..Spec::default()
    })
    .await;
    let output = h.run(&["rotate", "--all", "--yes", "-vv"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.lines().any(|l| l.contains(" DEBUG ")),
        "-vv logs debug lines: {stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("[general/") && l.contains("draining")),
        "the plain progress lines are there: {stderr}"
    );
    for line in stderr.lines() {
        assert!(
            !line.contains("run{") && !line.contains("slot{"),
            "a text line with a span prefix: {line}"
        );
    }
}
