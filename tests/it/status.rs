//! `kubesurge status` through the binary after a run: plain words (no Rust
//! debug values), and for every finished slot the node that replaced it.

use serde_json::Value;

use super::rotation::{Spec, start, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_each_replacement_of_a_finished_run_in_plain_words() {
    let h = start(Spec {
        pools: vec![("general", 2)],
        workloads: false,
        ..Spec::default()
    })
    .await;
    let run = h.run(&["rotate", "--all", "--yes", "-o", "json"]).await;
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let report: Value = serde_json::from_slice(&run.stdout).expect("JSON report");
    assert_eq!(report["apiVersion"], "kubesurge.io/v1alpha1", "{report:#}");
    assert_eq!(report["kind"], "RotationReport", "{report:#}");
    let replaced: Vec<(String, String)> = report["slots"]
        .as_array()
        .expect("slots")
        .iter()
        .map(|s| {
            (
                s["oldNode"].as_str().unwrap().to_string(),
                s["newNode"].as_str().expect("a new node").to_string(),
            )
        })
        .collect();
    assert_eq!(replaced.len(), 2, "{report:#}");

    let status = h.run(&["status"]).await;
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    let table = String::from_utf8_lossy(&status.stdout).into_owned();
    let run_id = report["runId"].as_str().unwrap();
    assert!(
        table.contains(&format!(
            "run {run_id}: rotate --all (target v1.35.3), succeeded,"
        )),
        "{table}"
    );
    for debug in ["Succeeded", "Some(", "None"] {
        assert!(!table.contains(debug), "{debug:?} in\n{table}");
    }
    for (old, new) in &replaced {
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("general/{old} ")))
            .unwrap_or_else(|| panic!("no line for {old}:\n{table}"));
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[1..3], ["done", new.as_str()], "{table}");
    }

    let status = h.run(&["status", "-o", "json"]).await;
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    let json: Value = serde_json::from_slice(&status.stdout).expect("JSON status");
    assert_eq!(json["kind"], "RunStatus", "{json:#}");
    let yaml = h.run(&["status", "-o", "yaml"]).await;
    assert_eq!(yaml.status.code(), Some(0), "{}", text(&yaml));
    let from_yaml: Value =
        serde_saphyr::from_str(&String::from_utf8_lossy(&yaml.stdout)).expect("YAML status");
    assert_eq!(from_yaml, json);
    for (old, new) in &replaced {
        let slot = json["slots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["node"] == old.as_str())
            .unwrap_or_else(|| panic!("no slot for {old}: {json:#}"));
        assert_eq!(slot["phase"], "done", "{json:#}");
        assert_eq!(slot["replacedBy"], new.as_str(), "{json:#}");
    }

    // -o name: the nodes a dry run would replace are the new ones.
    let names = h.run(&["rotate", "--all", "--dry-run", "-o", "name"]).await;
    assert_eq!(names.status.code(), Some(0), "{}", text(&names));
    let mut listed: Vec<String> = String::from_utf8_lossy(&names.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    listed.sort();
    let mut expected: Vec<String> = replaced
        .iter()
        .map(|(_, new)| format!("node/{new}"))
        .collect();
    expected.sort();
    assert_eq!(listed, expected);
}

/// `status -w -o json` started beside a run prints a document each time
/// the status changes — slots moving through their phases — and ends by
/// itself once the run has released the lock, its last document the
/// finished run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_follows_a_run_until_it_ends() {
    let h = start(Spec {
        pools: vec![("general", 3)],
        max_surge: 1,
        ..Spec::default()
    })
    .await;
    let run = h
        .command(&["rotate", "--all", "--yes"])
        .spawn()
        .expect("the run starts");
    // The watch starts once the run holds the lock.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let status = h.run(&["status", "-o", "json"]).await;
        let json: Value = serde_json::from_slice(&status.stdout).expect("JSON status");
        if json["holder"].is_string() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run never took the lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let watch = tokio::time::timeout(
        std::time::Duration::from_secs(240),
        h.command(&["status", "-w", "-o", "json"]).output(),
    )
    .await
    .expect("status -w ends when the run does")
    .expect("status runs");
    let finished = run.wait_with_output().await.expect("the run ends");
    assert_eq!(finished.status.code(), Some(0), "{}", text(&finished));
    assert_eq!(watch.status.code(), Some(0), "{}", text(&watch));
    let documents: Vec<Value> = serde_json::Deserializer::from_slice(&watch.stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .expect("a stream of JSON documents");
    assert!(
        documents.len() >= 3,
        "a document per change: {documents:#?}"
    );
    assert!(documents.iter().all(|d| d["kind"] == "RunStatus"));
    for pair in documents.windows(2) {
        assert_ne!(pair[0], pair[1], "a document only when something changed");
    }
    let phases: std::collections::BTreeSet<String> = documents
        .iter()
        .flat_map(|d| d["slots"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s["phase"].as_str().map(str::to_string))
        .collect();
    assert!(
        phases.len() >= 3,
        "the slots were seen in several phases: {phases:?}"
    );
    let last = documents.last().unwrap();
    assert!(last["holder"].is_null(), "{last:#}");
    assert_eq!(last["run"]["state"], "succeeded", "{last:#}");
    assert!(
        last["slots"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["phase"] == "done"),
        "{last:#}"
    );
}
