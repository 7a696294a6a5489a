//! The plan as `kubesurge plan` prints it: in the spirit of `kubeadm
//! upgrade plan`, for the whole cluster. Plain text, no colours.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::estimate::human;
use super::types::{Hop, KubeadmCommand, Plan, PoolPlan, Step};

/// Columns separated by two spaces, left-aligned, no trailing blanks.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let width = widths.get(i).copied().unwrap_or(0);
            let _ = write!(line, "{cell:<width$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn when(after_hop: Option<usize>, hops: usize) -> String {
    match after_hop {
        None if hops == 0 => "now".to_string(),
        None => "before any hop".to_string(),
        Some(h) => format!("after hop {h}"),
    }
}

fn hop_section(out: &mut String, hop: &Hop, total: usize) {
    let _ = writeln!(
        out,
        "Hop {} of {total}: {} -> {} ({})",
        hop.number,
        hop.from,
        hop.to,
        match hop.kind {
            super::types::HopKind::Minor => "minor",
            super::types::HopKind::Patch => "patch",
            super::types::HopKind::Completion => "completes the current minor",
        }
    );
    let commands: Vec<String> = hop
        .nodes
        .iter()
        .filter_map(|n| {
            n.kubeadm
                .map(|k: KubeadmCommand| format!("{} on {}", k.command_line(hop.to), n.node))
        })
        .collect();
    if !commands.is_empty() {
        let _ = writeln!(
            out,
            "  1. control plane, node by node: {}",
            commands.join("; ")
        );
    }
    let kubelets: Vec<&str> = hop
        .nodes
        .iter()
        .filter(|n| n.upgrade_kubelet)
        .map(|n| n.node.as_str())
        .collect();
    if !kubelets.is_empty() {
        let _ = writeln!(
            out,
            "  2. then kubelets (drain, upgrade, uncordon), node by node: {}",
            kubelets.join(", ")
        );
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = hop
        .components
        .iter()
        .map(|c| {
            vec![
                c.name.to_string(),
                c.node_name.clone().unwrap_or_default(),
                c.current_version.clone(),
                c.new_version.clone(),
            ]
        })
        .collect();
    out.push_str(&table(&["COMPONENT", "NODE", "CURRENT", "TARGET"], &rows));
    out.push('\n');
}

fn pool_rows(pool: &PoolPlan, hops: usize) -> Vec<Vec<String>> {
    let kubelets: BTreeSet<_> = pool.nodes.iter().map(|n| n.kubelet).collect();
    let kubelets = kubelets
        .iter()
        .map(|k| k.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let surge = format!("{} ({})", pool.surge, pool.max_surge);
    let unavailable = format!("{} ({})", pool.unavailable, pool.max_unavailable);
    if pool.rotations.is_empty() {
        return vec![vec![
            pool.name.clone(),
            pool.size.to_string(),
            if kubelets.is_empty() {
                "-".to_string()
            } else {
                kubelets
            },
            "-".to_string(),
            "stays".to_string(),
            "-".to_string(),
            "0".to_string(),
            surge,
            unavailable,
            "-".to_string(),
        ]];
    }
    pool.rotations
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let first = i == 0;
            let blank_unless_first = |s: &str| if first { s.to_string() } else { String::new() };
            vec![
                blank_unless_first(&pool.name),
                blank_unless_first(&pool.size.to_string()),
                blank_unless_first(&kubelets),
                r.number.to_string(),
                when(r.after_hop, hops),
                r.version.to_string(),
                r.slots.len().to_string(),
                blank_unless_first(&surge),
                blank_unless_first(&unavailable),
                human(r.estimate.seconds),
            ]
        })
        .collect()
}

/// The plan as the table `kubesurge plan` prints.
pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    let cur = &plan.current;
    let cp_nodes = cur.control_plane.len();
    if cur.newest_apiserver != cur.control_plane_version {
        let _ = writeln!(
            out,
            "Control plane: {} to {} (mid-upgrade), {cp_nodes} node(s)",
            cur.control_plane_version, cur.newest_apiserver
        );
    } else {
        let _ = writeln!(
            out,
            "Control plane: {}, {cp_nodes} node(s)",
            cur.control_plane_version
        );
    }
    match plan.requested_target {
        Some(t) => {
            let _ = writeln!(
                out,
                "Target: {t} ({} hop{})",
                plan.hops.len(),
                if plan.hops.len() == 1 { "" } else { "s" }
            );
        }
        None => {
            let _ = writeln!(out, "Target: none (stay at {})", plan.final_version);
        }
    }
    out.push('\n');

    if plan.nothing_to_do {
        let _ = writeln!(
            out,
            "Nothing to do: the control plane and every pool are at {}.",
            plan.final_version
        );
        out.push('\n');
    }

    for hop in &plan.hops {
        hop_section(&mut out, hop, plan.hops.len());
    }

    if !plan.pools.is_empty() {
        out.push_str("Worker pools\n");
        let rows: Vec<Vec<String>> = plan
            .pools
            .iter()
            .flat_map(|p| pool_rows(p, plan.hops.len()))
            .collect();
        out.push_str(&table(
            &[
                "POOL",
                "NODES",
                "KUBELETS",
                "ROTATION",
                "WHEN",
                "NEW VERSION",
                "SLOTS",
                "SURGE",
                "UNAVAILABLE",
                "ESTIMATE",
            ],
            &rows,
        ));
        out.push('\n');
        let rotating: Vec<&PoolPlan> = plan
            .pools
            .iter()
            .filter(|p| !p.rotations.is_empty())
            .collect();
        if !rotating.is_empty() {
            out.push_str("Replacement order (oldest first, spread across zones):\n");
            for p in rotating {
                let order: Vec<String> = p
                    .nodes
                    .iter()
                    .map(|n| match &n.zone {
                        Some(z) => format!("{} ({z})", n.name),
                        None => n.name.clone(),
                    })
                    .collect();
                let _ = writeln!(out, "  {}: {}", p.name, order.join(", "));
            }
            let total: u64 = plan.pools.iter().map(|p| p.estimate.seconds).sum();
            let _ = writeln!(
                out,
                "Estimated worker replacement time: {} (pools one after the other)",
                human(total)
            );
            out.push('\n');
        }
    }

    if !plan.unpooled_workers.is_empty() {
        out.push_str("Workers in no pool (never replaced by kubesurge):\n");
        let rows: Vec<Vec<String>> = plan
            .unpooled_workers
            .iter()
            .map(|w| {
                vec![
                    w.name.clone(),
                    w.kubelet.to_string(),
                    w.pool.clone().unwrap_or_else(|| "-".to_string()),
                ]
            })
            .collect();
        out.push_str(&table(&["NODE", "KUBELET", "POOL LABEL"], &rows));
        out.push('\n');
    }

    if !plan.sequence.is_empty() {
        let steps: Vec<String> = plan
            .sequence
            .iter()
            .map(|s| match s {
                Step::Hop { hop } => {
                    let to = plan
                        .hops
                        .iter()
                        .find(|h| h.number == *hop)
                        .map(|h| format!(" ({})", h.to))
                        .unwrap_or_default();
                    format!("hop {hop}{to}")
                }
                Step::Rotate { pool, rotation } => format!("rotate {pool} #{rotation}"),
            })
            .collect();
        let _ = writeln!(out, "Order: {}", steps.join(" -> "));
        out.push('\n');
    }

    if !plan.warnings.is_empty() {
        out.push_str("Warnings:\n");
        for w in &plan.warnings {
            let _ = writeln!(out, "  - {}", w.message);
        }
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}
