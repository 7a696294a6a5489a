//! The proposed `RotationConfig` as commented YAML (pure): every value
//! says where it came from, every problem is a comment the user reads
//! before a run, and unmapped nodes are listed with their reason.

use std::fmt::Write as _;

use serde_json::Value;

use super::propose::POOL_LABEL;
use super::{Proposal, ProposedPool};
use crate::settings::{API_VERSION, KIND};

/// The config text.
pub fn render(proposal: &Proposal) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Proposed by `kubesurge init` from the cluster at {}.",
        proposal.server
    );
    out.push_str(
        "# Read it through, then check it with: kubesurge plan --config <this file>\n\
         # Nothing is rotated until a pool's selector matches its nodes and its\n\
         # instances carry kubesurge.io/cluster and kubesurge.io/pool (kubesurge init --tag).\n",
    );
    let _ = writeln!(out, "apiVersion: {API_VERSION}");
    let _ = writeln!(out, "kind: {KIND}");
    out.push_str("cluster:\n");
    let _ = writeln!(
        out,
        "  name: {}  # {}",
        scalar(&Value::String(proposal.cluster.clone())),
        proposal.cluster_source
    );
    out.push_str(
        "# controlPlane:\n#   exec: ssm   # how upgrades reach control-plane nodes: ssm | ssh | local\n",
    );
    if proposal.pools.is_empty() {
        out.push_str("pools: []  # no worker could be mapped to an instance\n");
    } else {
        out.push_str("pools:\n");
    }
    for pool in &proposal.pools {
        render_pool(&mut out, pool);
    }
    if !proposal.unmapped.is_empty() {
        out.push_str("# Nodes in no pool: their instance could not be told for sure.\n");
        for (node, reason) in &proposal.unmapped {
            let _ = writeln!(out, "#   {node}: {}", one_line(reason));
        }
    }
    out
}

fn render_pool(out: &mut String, pool: &ProposedPool) {
    let d = &pool.draft;
    let nodes: Vec<&str> = d.members.iter().map(|m| m.worker.name.as_str()).collect();
    let _ = writeln!(out, "  # {}: nodes {}", pool.origin, nodes.join(", "));
    for note in &pool.section.notes {
        let _ = writeln!(out, "  # {}", one_line(note));
    }
    for warning in &pool.section.warnings {
        let _ = writeln!(out, "  # WARNING: {}", one_line(warning));
    }
    if d.needs_label {
        let _ = writeln!(
            out,
            "  # Its nodes share no label of their own: they are selected by {POOL_LABEL}={} (kubesurge init --tag sets it).",
            d.name
        );
    }
    let _ = writeln!(out, "  - name: {}", scalar(&Value::String(d.name.clone())));
    let _ = writeln!(out, "    selector: {}", flow(&d.selector));
    let _ = writeln!(out, "    provider: {}", d.provider);
    let _ = writeln!(out, "    {}:", d.provider);
    block(out, &pool.section.section, 6);
    out.push_str("    maxSurge: 1\n    maxUnavailable: 0\n");
    let _ = writeln!(
        out,
        "    nodeLabels: {}  # what new nodes register with",
        flow(&d.selector)
    );
}

/// A mapping as one flow line.
fn flow(map: &std::collections::BTreeMap<String, String>) -> String {
    let entries: Vec<String> = map
        .iter()
        .map(|(k, v)| {
            format!(
                "{}: {}",
                scalar(&Value::String(k.clone())),
                scalar(&Value::String(v.clone()))
            )
        })
        .collect();
    format!("{{ {} }}", entries.join(", "))
}

/// Objects as block mappings; everything else as JSON (which YAML reads).
fn block(out: &mut String, value: &Value, indent: usize) {
    let Value::Object(map) = value else {
        let _ = writeln!(out, "{}{}", " ".repeat(indent), scalar(value));
        return;
    };
    for (k, v) in map {
        let key = scalar(&Value::String(k.clone()));
        match v {
            Value::Object(inner) if !inner.is_empty() => {
                let _ = writeln!(out, "{}{key}:", " ".repeat(indent));
                block(out, v, indent + 2);
            }
            _ => {
                let _ = writeln!(out, "{}{key}: {}", " ".repeat(indent), scalar(v));
            }
        }
    }
}

/// A scalar (or array, or empty mapping): plain when YAML reads it back as
/// the same string, else JSON.
fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) if is_plain(s) => s.clone(),
        other => other.to_string(),
    }
}

fn is_plain(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
        && s.as_bytes()[0].is_ascii_alphabetic()
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        )
}

fn one_line(text: &str) -> String {
    text.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalars_that_yaml_would_read_otherwise_are_quoted() {
        assert_eq!(scalar(&json!("us-east-1")), "us-east-1");
        assert_eq!(
            scalar(&json!("tag:kubernetes-version")),
            "\"tag:kubernetes-version\""
        );
        assert_eq!(scalar(&json!("{version}")), "\"{version}\"");
        assert_eq!(scalar(&json!("123456789012")), "\"123456789012\"");
        assert_eq!(scalar(&json!("yes")), "\"yes\"");
        assert_eq!(scalar(&json!(3)), "3");
        assert_eq!(scalar(&json!(["self"])), "[\"self\"]");
    }

    #[test]
    fn sections_are_block_mappings() {
        let mut out = String::new();
        block(
            &mut out,
            &json!({"region": "eu-west-1", "image": {"owners": ["self"], "filters": {"name": "k-{version}"}}}),
            2,
        );
        assert_eq!(
            out,
            "  image:\n    filters:\n      name: \"k-{version}\"\n    owners: [\"self\"]\n  region: eu-west-1\n"
        );
    }
}
