//! Outside the maintenance window `upgrade` changes nothing, and still
//! prints a report saying what is left and when the window opens; it ends
//! with exit 5, never 0, so that a scheduler or Terraform runs it again
//! (design §3, §10). (`rotate`'s window tests are in `rotation`.)

use serde_json::Value;

use super::rotation::{Spec, control_plane_versions, mutations, start, text, window, workers};

/// A config `window:` that opened two hours ago and closed an hour ago (or,
/// near midnight, one on another day): either way, not now.
fn closed_now() -> String {
    let now = jiff::Timestamp::now();
    window(
        now - jiff::SignedDuration::from_hours(2),
        now - jiff::SignedDuration::from_hours(1),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_outside_the_window_exits_5_with_what_is_left_and_the_opening() {
    let h = start(Spec {
        pools: vec![("general", 2)],
        workloads: false,
        extra: closed_now(),
        ..Spec::default()
    })
    .await;
    let before = mutations(&h);

    let output = h
        .run(&["upgrade", "--to", "v1.36.0", "--yes", "-o", "json"])
        .await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(5), "{all}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("outside the maintenance window") && stderr.contains("it opens at"),
        "stderr names the reason and the opening: {stderr}"
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    assert_eq!(report["kind"], "UpgradeReport", "{report:#}");
    assert_eq!(report["target"], "v1.36.0", "{report:#}");
    let outcome = &report["outcome"];
    assert_eq!(outcome["result"], "deferred", "{report:#}");
    assert_eq!(
        outcome["remaining"],
        serde_json::json!({"hops": 1, "nodes": 2}),
        "one hop and the pool's two workers: {report:#}"
    );
    let opens_at: jiff::Timestamp = outcome["opensAt"]
        .as_str()
        .expect("opensAt")
        .parse()
        .expect("an RFC 3339 instant");
    assert!(opens_at > jiff::Timestamp::now(), "{report:#}");
    assert!(
        outcome["reason"]
            .as_str()
            .is_some_and(|r| r.contains("outside the maintenance window")),
        "{report:#}"
    );
    assert_eq!(report["hops"], serde_json::json!([]), "{report:#}");
    assert_eq!(report["rotations"], serde_json::json!([]), "{report:#}");

    // The table says the same.
    let output = h.run(&["upgrade", "--to", "v1.36.0", "--yes"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(5), "{all}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("deferred: outside the maintenance window")
            && stdout.contains("1 control-plane hop and 2 worker(s) left"),
        "{stdout}"
    );

    // Nothing changed.
    assert_eq!(mutations(&h), before, "nothing changed outside the window");
    for (pod, version) in control_plane_versions(&h.world) {
        assert_eq!(version, "v1.35.3", "{pod}");
    }
    assert_eq!(workers(&h.world), h.original_workers);

    // A dry run changes nothing either, so the window does not confine it.
    let output = h
        .run(&["upgrade", "--to", "v1.36.0", "--dry-run", "-o", "json"])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    // And a cluster already at the target has nothing left: done, exit 0.
    let output = h
        .run(&["upgrade", "--to", "v1.35.3", "--yes", "-o", "json"])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let report: Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    assert_eq!(report["outcome"]["result"], "succeeded", "{report:#}");
}
