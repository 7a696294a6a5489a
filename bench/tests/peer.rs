//! `kubesurge-bench --peer eks-rolling-update` end to end on the smallest
//! world (3 workers, one per pool and Auto Scaling group, delays × 0.05):
//! one invocation rotates a fresh world with each tool and reports both
//! rows, each with what the §8.3 observer saw. Needs moto and the peer in
//! `.tools/` (tests/run.sh provisions both) and kubectl.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

fn kubesurge_next_to_the_bench() -> Option<PathBuf> {
    let sibling = PathBuf::from(env!("CARGO_BIN_EXE_kubesurge-bench"))
        .with_file_name(format!("kubesurge{}", std::env::consts::EXE_SUFFIX));
    sibling.is_file().then_some(sibling)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_invocation_measures_kubesurge_and_the_peer_on_identical_worlds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("bench.json");
    let mut bench = Command::new(env!("CARGO_BIN_EXE_kubesurge-bench"));
    bench.args([
        "--peer",
        "eks-rolling-update",
        "--scenario",
        "3x3",
        "--scale",
        "0.05",
    ]);
    if let Some(kubesurge) = kubesurge_next_to_the_bench() {
        bench.arg("--kubesurge").arg(kubesurge);
    }
    let run = bench
        .arg("--json")
        .arg(&json)
        .arg("--workdir")
        .arg(dir.path().join("work"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(900), run)
        .await
        .expect("the benchmark finishes")
        .expect("the benchmark starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");

    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("| kubesurge |") || l.starts_with("| eks-rolling-update |"))
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    // kubesurge replaced all three workers and exited 0. The peer's row is
    // there whatever its outcome: it races its Node deletion against the
    // instance's termination, so a kubelet sometimes registers its Node
    // again and the peer's node count never matches (its row says so).
    assert!(rows[0].contains("| 3 | 3 | 0 | 3/3 |"), "{stdout}");

    let doc: Value =
        serde_json::from_slice(&std::fs::read(&json).expect("JSON written")).expect("JSON");
    let entries = doc["peer"].as_array().expect("peer entries");
    let tools: Vec<&str> = entries
        .iter()
        .map(|e| e["measured"]["tool"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(tools, ["kubesurge", "eks-rolling-update"]);
    assert_eq!(entries[0]["measured"]["replaced"], 3);
    for e in entries {
        let m = &e["measured"];
        let tool = m["tool"].as_str().unwrap_or("");
        assert!(m["makespan"].as_f64().unwrap_or(0.0) > 0.0, "{tool}");
        assert!(
            m["awsCalls"].as_object().is_some_and(|c| !c.is_empty()),
            "{tool} made AWS calls: {m}"
        );
        assert!(
            m["requests"].as_array().is_some_and(|r| !r.is_empty()),
            "{tool} made K8s requests"
        );
        assert!(
            m["usage"]["userS"].as_f64().unwrap_or(0.0) > 0.0
                && m["treePeakRssKib"].as_u64().unwrap_or(0) > 0,
            "{tool}'s process tree was measured: {m}"
        );
        for finding in [
            "capacityBelowPoolSize",
            "pdbViolations",
            "nodesDeletedWithPods",
            "staleNodesReregistered",
            "instancesLeft",
        ] {
            assert!(
                m["findings"][finding].is_u64(),
                "{tool}'s observer reports {finding}: {m}"
            );
        }
        assert!(e["figures"]["makespanOverBound"].as_f64().unwrap_or(0.0) > 0.0);
    }
    // kubesurge's own run keeps every invariant.
    let ours = &entries[0]["measured"]["findings"];
    for (key, value) in ours.as_object().expect("findings") {
        if key != "examples" {
            assert_eq!(value, 0, "kubesurge: {key}: {ours}");
        }
    }
    // The peer drained its first node with kubectl (through the shim).
    assert!(
        entries[1]["measured"]["requests"]
            .as_array()
            .is_some_and(|r| r
                .iter()
                .any(|c| c["resource"] == "pods/eviction" && c["count"].as_u64() > Some(0))),
        "the peer drained through kubectl's evictions: {}",
        entries[1]["measured"]
    );
}
