//! The benchmark binary end to end on a small world (N=50, S=10, and its
//! one-at-a-time reference on 3 nodes), with delays scaled to 1/100: CI
//! checks that the benchmark runs and reports, not how fast the run is.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

/// The `kubesurge` binary in the same target directory, where `cargo test
/// --workspace` has just built it (the root package's tests need it).
/// Without one, the benchmark builds it itself: cargo runs this test, and
/// the benchmark builds kubesurge first when cargo runs it.
fn kubesurge_next_to_the_bench() -> Option<PathBuf> {
    let sibling = PathBuf::from(env!("CARGO_BIN_EXE_kubesurge-bench"))
        .with_file_name(format!("kubesurge{}", std::env::consts::EXE_SUFFIX));
    sibling.is_file().then_some(sibling)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmark_rotates_a_small_world_and_reports_every_figure() {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("bench.json");
    let mut bench = Command::new(env!("CARGO_BIN_EXE_kubesurge-bench"));
    bench.args([
        "--scenario",
        "50x10",
        "--sequential-nodes",
        "3",
        "--scale",
        "0.01",
    ]);
    if let Some(kubesurge) = kubesurge_next_to_the_bench() {
        bench.arg("--kubesurge").arg(kubesurge);
    }
    let run = bench
        .arg("--json")
        .arg(&json)
        .arg("--workdir")
        .arg(dir.path().join("work"))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("the benchmark finishes")
        .expect("the benchmark starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");

    let doc: Value =
        serde_json::from_slice(&std::fs::read(&json).expect("JSON written")).expect("JSON");
    let scenarios = doc["scenarios"].as_array().expect("scenarios");
    let shapes: Vec<String> = scenarios
        .iter()
        .map(|s| {
            format!(
                "{}x{}",
                s["measured"]["shape"]["nodes"], s["measured"]["shape"]["surge"]
            )
        })
        .collect();
    assert_eq!(shapes, ["50x10", "3x1"]);
    for s in scenarios {
        let m = &s["measured"];
        assert_eq!(
            m["replaced"], m["shape"]["nodes"],
            "every worker replaced: {m}"
        );
        assert!(m["makespan"].as_f64().unwrap_or(0.0) > 0.0);
        assert!(
            m["tool"]["maxRssKib"].as_u64().unwrap_or(0) > 0,
            "the child was measured: {m}"
        );
    }
    let main = &scenarios[0]["figures"];
    assert!(main["efficiency"].as_f64().unwrap_or(0.0) > 0.0, "{main}");
    assert!(main["sequential"]["speedup"].as_f64().is_some(), "{main}");
    assert!(doc["machine"]["cores"].as_u64().unwrap_or(0) >= 1);
    assert!(doc["delays"]["boot"].as_f64().is_some());
    assert!(
        stdout.contains("| 50 | 10 |"),
        "the summary table: {stdout}"
    );
}
