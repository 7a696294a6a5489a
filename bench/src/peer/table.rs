//! The comparison as Markdown: one row per tool and scenario, the time
//! and cost figures beside what the observer found.

use std::fmt::Write;

use serde::Serialize;

use super::{Findings, PeerResult};
use crate::spec::Delays;

/// A row's derived figures (also in the JSON document).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerFigures {
    /// ⌈N/S⌉·(B+D+T), seconds.
    pub bound: f64,
    pub makespan_over_bound: f64,
    pub requests_per_node: f64,
    pub aws_calls_per_node: f64,
    pub cpu_s: f64,
    pub peak_rss_mib: f64,
    pub tree_peak_rss_mib: f64,
}

/// Per replaced node; per original worker when none was replaced, so a
/// failed run still shows what it cost.
pub fn figures(r: &PeerResult, delays: &Delays) -> PeerFigures {
    let bound = r.layout.waves() as f64 * delays.per_slot();
    let per = r.replaced.max(1) as f64;
    let requests: u64 = r.requests.iter().map(|c| c.count).sum();
    let calls: u64 = r.aws_calls.values().sum();
    PeerFigures {
        bound,
        makespan_over_bound: if bound > 0.0 { r.makespan / bound } else { 0.0 },
        requests_per_node: requests as f64 / per,
        aws_calls_per_node: calls as f64 / per,
        cpu_s: r.usage.cpu_s(),
        peak_rss_mib: r.usage.max_rss_kib as f64 / 1024.0,
        tree_peak_rss_mib: r.tree_peak_rss_kib as f64 / 1024.0,
    }
}

fn findings_cell(f: &Findings) -> String {
    if f.total() == 0 {
        return "none".into();
    }
    let parts: Vec<String> = [
        (f.capacity_below_pool_size, "capacity below the pool size"),
        (f.pdb_violations, "PDB violations"),
        (f.nodes_deleted_with_pods, "Nodes deleted with pods"),
        (f.stale_nodes_reregistered, "stale Nodes re-registered"),
        (f.instances_left, "instances left"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    parts.join("; ")
}

/// The table, then each row's first findings.
pub fn markdown(runs: &[(PeerResult, PeerFigures)], delays: &Delays) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Against a real peer: each tool on a fresh world of its own, the workers members of one Auto Scaling group per pool in moto; the same workloads, PDBs and delays (B {} s, D {} s, T {} s). The peer's waits scaled alike and rounded up to whole seconds (CLUSTER_HEALTH_WAIT {} s, GLOBAL_HEALTH_WAIT {} s); it rolls by age (RUN_MODE=4).\n",
        delays.boot,
        delays.drain,
        delays.terminate,
        (90.0 * delays.scale).ceil().max(1.0),
        (20.0 * delays.scale).ceil().max(1.0),
    );
    out.push_str("| tool | N | S | exit | replaced | makespan | bound ⌈N/S⌉·(B+D+T) | makespan ÷ bound | K8s requests/node | AWS calls/node | CPU (tree) | peak RSS (tree, sampled) | largest process | observer |\n");
    out.push_str("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for (r, f) in runs {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {}/{} | {:.1} s | {:.1} s | {:.2} | {:.1} | {:.1} | {:.1} s | {:.0} MiB | {:.0} MiB | {} |",
            r.tool,
            r.shape.nodes,
            r.shape.surge,
            if r.succeeded { "0" } else { r.status.as_str() },
            r.replaced,
            r.workers,
            r.makespan,
            f.bound,
            f.makespan_over_bound,
            f.requests_per_node,
            f.aws_calls_per_node,
            f.cpu_s,
            f.tree_peak_rss_mib,
            f.peak_rss_mib,
            findings_cell(&r.findings),
        );
    }
    for (r, _) in runs {
        if r.findings.examples.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{} at {}:", r.tool, r.shape);
        for e in &r.findings.examples {
            let _ = writeln!(out, "- {e}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Usage;
    use crate::spec::{Layout, Shape};

    fn result(tool: &str, makespan: f64, findings: Findings) -> PeerResult {
        let shape: Shape = "30x10".parse().unwrap();
        PeerResult {
            tool: tool.into(),
            shape,
            layout: Layout::of(shape),
            succeeded: true,
            status: "exit status: 0".into(),
            workers: 30,
            replaced: 30,
            makespan,
            setup: 1.0,
            requests: vec![crate::scenario::RequestCount {
                verb: "get".into(),
                resource: "nodes".into(),
                count: 300,
            }],
            aws_calls: [("DescribeInstances".to_string(), 60)].into(),
            usage: Usage {
                user_s: 2.0,
                sys_s: 1.0,
                max_rss_kib: 2048,
            },
            tree_peak_rss_kib: 4096,
            findings,
        }
    }

    #[test]
    fn both_tools_have_a_row_with_their_findings() {
        let delays = Delays::scaled(0.1);
        let safe = result("kubesurge", 60.0, Findings::default());
        let unsafe_ = result(
            "eks-rolling-update",
            300.0,
            Findings {
                pdb_violations: 2,
                instances_left: 1,
                examples: vec!["pod bench/app-1 left".into()],
                ..Findings::default()
            },
        );
        let runs: Vec<_> = [safe, unsafe_]
            .into_iter()
            .map(|r| {
                let f = figures(&r, &delays);
                (r, f)
            })
            .collect();
        let (_, f) = &runs[0];
        assert_eq!(f.bound, 3.0 * delays.per_slot());
        assert_eq!(f.requests_per_node, 10.0);
        assert_eq!(f.aws_calls_per_node, 2.0);
        assert_eq!(f.cpu_s, 3.0);
        let text = markdown(&runs, &delays);
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("| ")).collect();
        assert_eq!(rows.len(), 3, "{text}");
        assert!(rows[1].starts_with("| kubesurge | 30 | 10 |") && rows[1].ends_with("| none |"));
        assert!(
            rows[2].contains("2 PDB violations; 1 instances left"),
            "{}",
            rows[2]
        );
        assert!(text.contains("- pod bench/app-1 left"));
    }
}
