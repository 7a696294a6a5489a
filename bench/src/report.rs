//! From measurements to figures: the lower bound and the efficiency, the
//! economy per replaced node, the footprint per node, the comparison with
//! one-at-a-time rotation, the targets; and their Markdown tables.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::scenario::ScenarioResult;
use super::spec::{Delays, Shape, WorkloadSpec};

/// Targets of design §12 and the benchmark issue.
pub const TARGET_EFFICIENCY: f64 = 1.10;
/// Kubernetes requests per replaced node, watches counted once.
pub const TARGET_K8S_REQUESTS_PER_NODE: f64 = 25.0;
/// Provider calls per replaced node.
pub const TARGET_PROVIDER_CALLS_PER_NODE: f64 = 3.0;
/// The shape the efficiency target is set for.
pub const TARGET_SHAPE: Shape = Shape {
    nodes: 1000,
    surge: 100,
};
pub const TARGET_RSS_MIB: f64 = 64.0;
pub const TARGET_CPU_MS_PER_NODE: f64 = 5.0;

/// The Kubernetes requests the joining machines make themselves
/// (`kubeadm join` discovery reads `cluster-info` and `kubeadm-config`):
/// the cluster's cost of a new node, not the tool's.
const JOIN_DISCOVERY: (&str, &str) = ("get", "configmaps");

/// How the one-at-a-time makespan was obtained.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sequential {
    /// Seconds.
    pub makespan: f64,
    /// `makespan` spelled out.
    pub how: String,
    /// `makespan` ÷ the scenario's makespan.
    pub speedup: f64,
}

/// The S=1 run the sequential figures come from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SequentialBase {
    pub nodes: usize,
    pub makespan: f64,
}

/// One-at-a-time makespan for `nodes`: the S=1 makespan (measured at this
/// N, or per node from a smaller S=1 run times N — a one-at-a-time run is
/// a sequence of equal slots) plus the tools' validation pause between
/// consecutive nodes, scaled like every other delay.
pub fn sequential(
    nodes: usize,
    base: SequentialBase,
    delays: &Delays,
    makespan: f64,
) -> Sequential {
    let pauses = nodes.saturating_sub(1) as f64 * delays.sequential_pause;
    let pause_text = format!(
        "{} × {:.2} s (the 15 s validation pause × {})",
        nodes.saturating_sub(1),
        delays.sequential_pause,
        delays.scale
    );
    let (rotation, how) = if base.nodes == nodes {
        (
            base.makespan,
            format!(
                "measured S=1 makespan {:.1} s + {pause_text}",
                base.makespan
            ),
        )
    } else {
        let per_node = base.makespan / base.nodes.max(1) as f64;
        (
            per_node * nodes as f64,
            format!(
                "{nodes} × {per_node:.2} s per node (S=1 measured on {} nodes in {:.1} s) + {pause_text}",
                base.nodes, base.makespan
            ),
        )
    };
    let total = rotation + pauses;
    Sequential {
        makespan: total,
        how,
        speedup: if makespan > 0.0 {
            total / makespan
        } else {
            0.0
        },
    }
}

/// An S=1 cell of the matrix that is not measured (at N=1000 it would take
/// hours): the one-at-a-time reference run's time per node times N. A
/// one-at-a-time rotation is a sequence of equal slots, so this is what
/// the run would measure, without its wall time.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtrapolatedS1 {
    pub nodes: usize,
    /// The reference run it comes from.
    pub from_nodes: usize,
    /// Seconds, without validation pauses.
    pub makespan: f64,
    /// N · (B + D + T).
    pub bound: f64,
    pub efficiency: f64,
    /// With the one-at-a-time tools' validation pause between nodes.
    pub with_pauses: f64,
}

/// The S=1 cells for every N of `runs` that has no S=1 run of its own,
/// from the reference run (none without one).
pub fn extrapolated_s1(runs: &[(ScenarioResult, Figures)], delays: &Delays) -> Vec<ExtrapolatedS1> {
    let Some((reference, _)) = runs.iter().find(|(r, _)| r.reference) else {
        return Vec::new();
    };
    let mut sizes: Vec<usize> = runs
        .iter()
        .filter(|(r, _)| !r.reference)
        .map(|(r, _)| r.shape.nodes)
        .filter(|&n| {
            !runs
                .iter()
                .any(|(r, _)| r.shape.nodes == n && r.shape.surge == 1)
        })
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let per_node = reference.makespan / reference.replaced.max(1) as f64;
    sizes
        .into_iter()
        .map(|nodes| {
            let makespan = per_node * nodes as f64;
            let bound = nodes as f64 * delays.per_slot();
            ExtrapolatedS1 {
                nodes,
                from_nodes: reference.replaced,
                makespan,
                bound,
                efficiency: if bound > 0.0 { makespan / bound } else { 0.0 },
                with_pauses: makespan + nodes.saturating_sub(1) as f64 * delays.sequential_pause,
            }
        })
        .collect()
}

/// A target and whether it was met.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Target {
    pub name: String,
    pub value: f64,
    pub limit: f64,
    pub met: bool,
}

/// Figures derived from one scenario's measurements.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    pub label: String,
    pub waves: usize,
    /// ⌈N/S⌉ (differs from `waves` only when the layout cannot reach it).
    pub nominal_waves: usize,
    /// waves · (B + D + T), seconds.
    pub bound: f64,
    pub efficiency: f64,
    /// Efficiency with the settle time (one per slot on the longest lane)
    /// taken out of the makespan: what the engine's own overhead is.
    pub efficiency_without_settle: f64,
    pub requests_per_node: BTreeMap<String, f64>,
    pub requests_total_per_node: f64,
    /// Without the joining machines' discovery reads.
    pub tool_requests_per_node: f64,
    pub provider_calls_per_node: BTreeMap<String, f64>,
    pub kib_sent_per_node: f64,
    pub tool_peak_rss_mib: f64,
    pub tool_cpu_s: f64,
    pub tool_cpu_ms_per_node: f64,
    pub tool_cpu_s_per_1000_nodes: f64,
    pub world_cpu_s: f64,
    pub world_peak_rss_mib: f64,
    pub sequential: Option<Sequential>,
    pub targets: Vec<Target>,
}

pub fn figures(r: &ScenarioResult, delays: &Delays, base: Option<SequentialBase>) -> Figures {
    let nodes = r.replaced.max(1) as f64;
    let waves = r.layout.waves();
    let bound = waves as f64 * delays.per_slot();
    let ratio = |m: f64| if bound > 0.0 { m / bound } else { 0.0 };
    let mut by_verb: BTreeMap<String, f64> = BTreeMap::new();
    let mut join_reads = 0;
    for c in &r.requests {
        *by_verb.entry(c.verb.clone()).or_default() += c.count as f64 / nodes;
        if (c.verb.as_str(), c.resource.as_str()) == JOIN_DISCOVERY {
            join_reads += c.count;
        }
    }
    let total: u64 = r.requests.iter().map(|c| c.count).sum();
    let tool_cpu_s = r.tool.cpu_s();
    let tool_peak_rss_mib = r.tool.max_rss_kib as f64 / 1024.0;
    let tool_cpu_ms_per_node = tool_cpu_s * 1000.0 / nodes;
    let efficiency = ratio(r.makespan);
    let requests_total_per_node = total as f64 / nodes;
    let provider_calls_total_per_node = r.provider_calls.values().sum::<u64>() as f64 / nodes;
    let mut targets = Vec::new();
    if !r.reference {
        if r.shape == TARGET_SHAPE {
            targets.push(Target {
                name: format!("efficiency at N={}, S={}", r.shape.nodes, r.shape.surge),
                value: efficiency,
                limit: TARGET_EFFICIENCY,
                met: efficiency <= TARGET_EFFICIENCY,
            });
        }
        targets.push(Target {
            name: "K8s requests per node".into(),
            value: requests_total_per_node,
            limit: TARGET_K8S_REQUESTS_PER_NODE,
            met: requests_total_per_node <= TARGET_K8S_REQUESTS_PER_NODE,
        });
        targets.push(Target {
            name: "provider calls per node".into(),
            value: provider_calls_total_per_node,
            limit: TARGET_PROVIDER_CALLS_PER_NODE,
            met: provider_calls_total_per_node <= TARGET_PROVIDER_CALLS_PER_NODE,
        });
        targets.push(Target {
            name: "tool peak RSS, MiB".into(),
            value: tool_peak_rss_mib,
            limit: TARGET_RSS_MIB,
            met: tool_peak_rss_mib <= TARGET_RSS_MIB,
        });
        targets.push(Target {
            name: "tool CPU per node, ms".into(),
            value: tool_cpu_ms_per_node,
            limit: TARGET_CPU_MS_PER_NODE,
            met: tool_cpu_ms_per_node <= TARGET_CPU_MS_PER_NODE,
        });
    }
    Figures {
        label: r.shape.to_string(),
        waves,
        nominal_waves: r.shape.nodes.div_ceil(r.shape.surge),
        bound,
        efficiency,
        efficiency_without_settle: ratio(r.makespan - waves as f64 * delays.settle),
        requests_per_node: by_verb,
        requests_total_per_node,
        tool_requests_per_node: (total - join_reads) as f64 / nodes,
        provider_calls_per_node: r
            .provider_calls
            .iter()
            .map(|(k, v)| (k.clone(), *v as f64 / nodes))
            .collect(),
        kib_sent_per_node: r.bytes_sent as f64 / 1024.0 / nodes,
        tool_peak_rss_mib,
        tool_cpu_s,
        tool_cpu_ms_per_node,
        tool_cpu_s_per_1000_nodes: tool_cpu_s * 1000.0 / nodes,
        world_cpu_s: r.world.run.cpu_s(),
        world_peak_rss_mib: r.world.peak_rss_kib as f64 / 1024.0,
        sequential: base.map(|b| sequential(r.shape.nodes, b, delays, r.makespan)),
        targets,
    }
}

/// What the whole Markdown report says before the scenarios.
pub struct Header<'a> {
    pub date: &'a str,
    pub cores: usize,
    pub load_before: Option<f64>,
    pub delays: &'a Delays,
    pub workload: WorkloadSpec,
}

fn secs(s: f64) -> String {
    format!("{s:.1} s")
}

fn load(l: Option<f64>) -> String {
    l.map_or_else(|| "?".into(), |l| format!("{l:.1}"))
}

pub fn markdown(header: &Header<'_>, runs: &[(ScenarioResult, Figures)]) -> String {
    let d = header.delays;
    let mut out = String::new();
    let _ = writeln!(out, "# kubesurge-bench, {}\n", header.date);
    let _ = writeln!(
        out,
        "Machine: {} cores, load average {} before the first run (shared: figures are ratios, not absolutes).  ",
        header.cores,
        load(header.load_before)
    );
    let _ = writeln!(
        out,
        "Delays (real ones × {}): boot B = {} s, drain D = {} s (pods' 30 s grace), terminate T = {} s, pod start {} s, heartbeat {} s, node monitor grace {} s; health.settle {} s (the smallest allowed); one-at-a-time pause {} s (15 s × {}).  ",
        d.scale,
        d.boot,
        d.drain,
        d.terminate,
        d.pod_start,
        d.heartbeat,
        d.node_monitor_grace,
        d.settle,
        d.sequential_pause,
        d.scale
    );
    let _ = writeln!(
        out,
        "Workloads: about {} Deployment pods per worker ({} replicas each, a PDB with maxUnavailable 1 per Deployment), a DaemonSet pod per worker, kube-proxy, CoreDNS with its PDB. S is the total in flight: each pool's maxSurge is S/3 (remainder to the first pools) and the workers are split in the same proportion; below 3, the pools run one after another at maxSurge S.\n",
        header.workload.pods_per_node, header.workload.replicas
    );
    out.push_str(&summary(runs));
    let cells = extrapolated_s1(runs, d);
    if !cells.is_empty() {
        out.push_str("\nS=1 at the scenarios' N, from the one-at-a-time reference run's time per node (a one-at-a-time rotation is a sequence of equal slots; measuring it at N=1000 would take hours):\n\n| N | S | makespan | bound N·(B+D+T) | efficiency | with the validation pauses |\n|---:|---:|---:|---:|---:|---:|\n");
        for c in &cells {
            let _ = writeln!(
                out,
                "| {} | 1 (from {} nodes) | {} | {} | {:.3} | {} |",
                c.nodes,
                c.from_nodes,
                secs(c.makespan),
                secs(c.bound),
                c.efficiency,
                secs(c.with_pauses)
            );
        }
    }
    for (r, f) in runs {
        out.push('\n');
        out.push_str(&scenario(r, f, d));
    }
    out
}

/// One line per scenario.
pub fn summary(runs: &[(ScenarioResult, Figures)]) -> String {
    let mut out = String::new();
    out.push_str("| N | S | makespan | bound ⌈N/S⌉·(B+D+T) | efficiency | one-at-a-time | speed-up | K8s requests/node | provider calls/node | KiB sent/node | tool peak RSS | tool CPU/node | world CPU | world peak RSS |\n");
    out.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (r, f) in runs {
        let (seq, speedup) = match &f.sequential {
            Some(s) => (secs(s.makespan), format!("{:.1}×", s.speedup)),
            None => ("–".into(), "–".into()),
        };
        let provider: f64 = f.provider_calls_per_node.values().sum();
        let _ = writeln!(
            out,
            "| {}{} | {} | {} | {} | {:.3} | {seq} | {speedup} | {:.1} | {:.2} | {:.1} | {:.1} MiB | {:.2} ms | {:.1} s | {:.0} MiB |",
            r.shape.nodes,
            if r.reference { " (reference)" } else { "" },
            r.shape.surge,
            secs(r.makespan),
            secs(f.bound),
            f.efficiency,
            f.requests_total_per_node,
            provider,
            f.kib_sent_per_node,
            f.tool_peak_rss_mib,
            f.tool_cpu_ms_per_node,
            f.world_cpu_s,
            f.world_peak_rss_mib,
        );
    }
    out
}

fn scenario(r: &ScenarioResult, f: &Figures, d: &Delays) -> String {
    let b = &r.breakdown;
    let mut out = String::new();
    let title = if r.reference {
        "one-at-a-time reference"
    } else {
        "scenario"
    };
    let _ = writeln!(
        out,
        "## N={}, S={} ({title})\n",
        r.shape.nodes, r.shape.surge
    );
    let _ = writeln!(
        out,
        "Pools: {}. {} pods; world ready in {}; load average {} → {}.\n",
        r.layout.describe(),
        r.pods,
        secs(r.setup),
        load(r.load_before),
        load(r.load_after)
    );
    out.push_str("| measure | value |\n|---|---:|\n");
    let row = |out: &mut String, k: &str, v: String| {
        let _ = writeln!(out, "| {k} | {v} |");
    };
    row(&mut out, "replaced nodes", r.replaced.to_string());
    row(
        &mut out,
        "makespan, first kubesurge start → last exit",
        secs(r.makespan),
    );
    row(
        &mut out,
        &format!(
            "makespan, report started → finished ({} process{})",
            r.processes,
            if r.processes == 1 { "" } else { "es" }
        ),
        secs(r.makespan_report),
    );
    let waves_note = if f.waves == f.nominal_waves {
        String::new()
    } else {
        format!(
            " (⌈N/S⌉ = {}, this layout needs {})",
            f.nominal_waves, f.waves
        )
    };
    row(
        &mut out,
        "lower bound waves · (B+D+T)",
        format!(
            "{} × {:.1} s = {}{waves_note}",
            f.waves,
            d.per_slot(),
            secs(f.bound)
        ),
    );
    row(
        &mut out,
        "**efficiency** (makespan ÷ bound)",
        format!("**{:.3}**", f.efficiency),
    );
    row(
        &mut out,
        "efficiency without the settle time (waves × settle)",
        format!("{:.3}", f.efficiency_without_settle),
    );
    if let Some(s) = &f.sequential {
        row(
            &mut out,
            "one-at-a-time makespan",
            format!("{} = {}", secs(s.makespan), s.how),
        );
        row(
            &mut out,
            "**speed-up** over one-at-a-time",
            format!("**{:.1}×**", s.speedup),
        );
    }
    out.push_str("\nWhere the time goes (per slot, from the world's view of the nodes):\n\n");
    out.push_str("| phase | mean | max | the world's delay |\n|---|---:|---:|---|\n");
    let phase = |out: &mut String, name: &str, s: &super::timeline::Stat, world: String| {
        let _ = writeln!(
            out,
            "| {name} | {:.2} s | {:.2} s | {world} |",
            s.mean, s.max
        );
    };
    phase(
        &mut out,
        "slot start → new Node registered (token, launch, boot, join)",
        &b.launch_to_registered,
        format!("B = {} s", d.boot),
    );
    phase(
        &mut out,
        "registered → Ready",
        &b.registered_to_ready,
        "first heartbeat".into(),
    );
    phase(
        &mut out,
        "Ready → drain starts (settle, precheck)",
        &b.ready_to_drain,
        format!("settle {} s", d.settle),
    );
    phase(
        &mut out,
        "drain (cordon, evict, pods gone)",
        &b.drain,
        format!("D = {} s", d.drain),
    );
    phase(
        &mut out,
        "terminate → old Node deleted",
        &b.terminate,
        format!("T = {} s", d.terminate),
    );
    phase(
        &mut out,
        "whole slot",
        &b.slot,
        format!("B+D+T = {:.1} s", d.per_slot()),
    );
    phase(
        &mut out,
        &format!(
            "window gap: a slot's end → the next start in its place ({} gaps, {} in all)",
            b.window_gap.count,
            secs(b.window_gap.total)
        ),
        &b.window_gap,
        "0".into(),
    );
    let _ = writeln!(
        out,
        "\nStartup (process start → first slot) {}, tail (last Node deleted → exit) {}, slots in flight on average {:.1}. Evictions: {} pods, {} requests ({} refused by a PDB and retried).\n",
        secs(b.startup),
        secs(b.tail),
        b.mean_in_flight,
        r.evictions.pods,
        r.evictions.requests,
        r.evictions.requests.saturating_sub(r.evictions.pods)
    );
    out.push_str("Economy per replaced node:\n\n| Kubernetes verb | requests/node |\n|---|---:|\n");
    for (verb, n) in &f.requests_per_node {
        let _ = writeln!(out, "| {verb} | {n:.2} |");
    }
    let _ = writeln!(
        out,
        "| all (watches counted once) | {:.2} |\n| all but the joining machines' `get configmaps` (kubeadm discovery) | {:.2} |",
        f.requests_total_per_node, f.tool_requests_per_node
    );
    out.push_str("\n| provider call | calls/node |\n|---|---:|\n");
    for (call, n) in &f.provider_calls_per_node {
        let _ = writeln!(out, "| {call} | {n:.2} |");
    }
    let _ = writeln!(
        out,
        "\nBytes sent by the API server: {:.1} KiB per node ({:.1} MiB in all).\n",
        f.kib_sent_per_node,
        r.bytes_sent as f64 / 1024.0 / 1024.0
    );
    out.push_str("Footprint:\n\n| process | peak RSS | CPU (user + sys) | CPU per node | CPU per 1000 nodes |\n|---|---:|---:|---:|---:|\n");
    let _ = writeln!(
        out,
        "| kubesurge (child) | {:.1} MiB | {:.2} s ({:.2} + {:.2}) | {:.2} ms | {:.2} s |",
        f.tool_peak_rss_mib,
        f.tool_cpu_s,
        r.tool.user_s,
        r.tool.sys_s,
        f.tool_cpu_ms_per_node,
        f.tool_cpu_s_per_1000_nodes
    );
    let _ = writeln!(
        out,
        "| the world (during the run) | {:.0} MiB | {:.2} s ({:.2} + {:.2}) | {:.2} ms | {:.2} s |",
        f.world_peak_rss_mib,
        f.world_cpu_s,
        r.world.run.user_s,
        r.world.run.sys_s,
        f.world_cpu_s * 1000.0 / r.replaced.max(1) as f64,
        f.world_cpu_s * 1000.0 / r.replaced.max(1) as f64,
    );
    if !f.targets.is_empty() {
        out.push_str("\n| target | value | limit | |\n|---|---:|---:|---|\n");
        for t in &f.targets {
            let _ = writeln!(
                out,
                "| {} | {:.3} | {} | {} |",
                t.name,
                t.value,
                t.limit,
                if t.met { "met" } else { "**missed**" }
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Usage;
    use crate::scenario::{Evictions, RequestCount, WorldCost};
    use crate::spec::Layout;
    use crate::timeline::Breakdown;

    fn result(shape: &str, makespan: f64) -> ScenarioResult {
        let shape: Shape = shape.parse().unwrap();
        ScenarioResult {
            shape,
            layout: Layout::of(shape),
            reference: false,
            workload: WorkloadSpec {
                pods_per_node: 3,
                replicas: 6,
            },
            pods: 0,
            replaced: shape.nodes,
            makespan,
            makespan_report: makespan,
            processes: 1,
            setup: 0.0,
            breakdown: Breakdown::default(),
            requests: vec![
                RequestCount {
                    verb: "get".into(),
                    resource: "configmaps".into(),
                    count: 3 * shape.nodes as u64,
                },
                RequestCount {
                    verb: "patch".into(),
                    resource: "nodes".into(),
                    count: 5 * shape.nodes as u64,
                },
            ],
            bytes_sent: 0,
            provider_calls: BTreeMap::from([("RunInstances".into(), shape.nodes as u64)]),
            evictions: Evictions::default(),
            tool: Usage {
                user_s: 2.0,
                sys_s: 1.0,
                max_rss_kib: 50 * 1024,
            },
            world: WorldCost::default(),
            load_before: None,
            load_after: None,
        }
    }

    #[test]
    fn efficiency_is_the_makespan_over_waves_of_the_physical_slot() {
        // A settle of 1 s per wave (the bench itself now runs with none).
        let d = Delays {
            settle: 1.0,
            ..Delays::scaled(0.1)
        };
        let f = figures(&result("1000x100", 165.0), &d, None);
        assert_eq!(f.waves, 10);
        assert_eq!(f.bound, 150.0);
        assert!((f.efficiency - 1.1).abs() < 1e-9);
        assert!((f.efficiency_without_settle - 155.0 / 150.0).abs() < 1e-9);
        assert!(f.targets[0].met, "1.10 is within the target");
        assert!((f.tool_cpu_ms_per_node - 3.0).abs() < 1e-9);
        assert!((f.tool_requests_per_node - 5.0).abs() < 1e-9);
        assert!((f.requests_total_per_node - 8.0).abs() < 1e-9);
        assert!(f.targets.iter().all(|t| t.met));
    }

    #[test]
    fn the_efficiency_target_applies_only_at_its_shape() {
        let d = Delays::scaled(0.1);
        let f = figures(&result("100x10", 500.0), &d, None);
        assert!(f.targets.iter().all(|t| !t.name.starts_with("efficiency")));
        let f = figures(&result("1000x100", 200.0), &d, None);
        assert!(!f.targets[0].met);
    }

    #[test]
    fn one_at_a_time_adds_the_scaled_pause_between_nodes() {
        let d = Delays::scaled(0.1);
        let measured = sequential(
            100,
            SequentialBase {
                nodes: 100,
                makespan: 1600.0,
            },
            &d,
            160.0,
        );
        assert!((measured.makespan - (1600.0 + 99.0 * 1.5)).abs() < 1e-9);
        assert!((measured.speedup - measured.makespan / 160.0).abs() < 1e-9);
        assert!(measured.how.contains("measured S=1"));
        let extrapolated = sequential(
            1000,
            SequentialBase {
                nodes: 12,
                makespan: 192.0,
            },
            &d,
            160.0,
        );
        assert!((extrapolated.makespan - (16.0 * 1000.0 + 999.0 * 1.5)).abs() < 1e-9);
        assert!(extrapolated.how.contains("measured on 12 nodes"));
    }

    #[test]
    fn s1_cells_without_a_run_come_from_the_reference_per_node() {
        let d = Delays::scaled(0.1);
        let mut reference = result("12x1", 192.0);
        reference.reference = true;
        let runs: Vec<(ScenarioResult, Figures)> = [
            result("100x10", 170.0),
            result("100x1", 1600.0),
            result("1000x100", 160.0),
            reference,
        ]
        .into_iter()
        .map(|r| {
            let f = figures(&r, &d, None);
            (r, f)
        })
        .collect();
        let cells = extrapolated_s1(&runs, &d);
        assert_eq!(cells.len(), 1, "100 has a run of its own: {cells:?}");
        let c = &cells[0];
        assert_eq!((c.nodes, c.from_nodes), (1000, 12));
        assert!((c.makespan - 16_000.0).abs() < 1e-9);
        assert!((c.bound - 15_000.0).abs() < 1e-9);
        assert!((c.with_pauses - (16_000.0 + 999.0 * 1.5)).abs() < 1e-9);
        assert!(
            extrapolated_s1(&runs[..3], &d).is_empty(),
            "no reference, no cells"
        );
    }

    #[test]
    fn the_markdown_has_a_summary_row_and_a_section_per_scenario() {
        let d = Delays::scaled(0.1);
        let r = result("100x10", 170.0);
        let f = figures(&r, &d, None);
        let text = markdown(
            &Header {
                date: "2026-01-01",
                cores: 2,
                load_before: Some(1.0),
                delays: &d,
                workload: r.workload,
            },
            &[(r.clone(), f)],
        );
        assert!(
            text.contains("| 100 | 10 | 170.0 s | 150.0 s | 1.133 |"),
            "{text}"
        );
        assert!(text.contains("## N=100, S=10 (scenario)"));
        assert!(text.contains("| patch | 5.00 |"));
    }
}
