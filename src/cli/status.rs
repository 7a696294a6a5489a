//! `kubesurge status`: what the run in progress, or the last one, is doing,
//! read from the world alone — per slot its phase and what blocks it.

use clap::Args;
use serde::Serialize;

use super::args::{GlobalArgs, OutputFormat};
use super::{CommandError, output};
use crate::ExitStatus;
use crate::kube::client;
use crate::kube::lock;
use crate::kube::nodes;
use crate::rotation::annotations as ann;
use crate::rotation::{RecordStore, RunRecord};
use k8s_openapi::api::core::v1::Node;
use kube::Api;

/// Arguments of `kubesurge status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Format on stdout
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// One slot as the world shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SlotStatus {
    pool: String,
    node: String,
    phase: String,
    replaced_by: Option<String>,
    blocked: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    holder: Option<String>,
    holder_since: Option<String>,
    run: Option<RunRecord>,
    slots: Vec<SlotStatus>,
}

pub async fn run(global: &GlobalArgs, args: StatusArgs) -> Result<ExitStatus, CommandError> {
    let client = client::client(&global.client_options()).await?;
    let holder = lock::current_holder(client.clone())
        .await
        .map_err(|e| CommandError::Failed(e.to_string()))?;
    let record = RecordStore::new(client.clone())
        .load()
        .await
        .map_err(|e| CommandError::Failed(e.to_string()))?;
    let api: Api<Node> = Api::all(client);
    let mut slots = Vec::new();
    if let Some(record) = &record {
        for n in &record.nodes {
            let node = api
                .get_opt(&n.name)
                .await
                .map_err(|e| CommandError::Failed(format!("reading node {}: {e}", n.name)))?;
            let ours = node
                .as_ref()
                .is_some_and(|node| nodes::annotation(node, ann::RUN) == Some(record.id.as_str()));
            let get = |key: &str| {
                node.as_ref()
                    .filter(|_| ours)
                    .and_then(|node| nodes::annotation(node, key))
                    .map(str::to_string)
            };
            slots.push(SlotStatus {
                pool: n.pool.clone(),
                node: n.name.clone(),
                phase: match &node {
                    None => "done".into(),
                    Some(_) => get(ann::PHASE).unwrap_or_else(|| "pending".into()),
                },
                replaced_by: get(ann::REPLACED_BY),
                blocked: get(ann::BLOCKED),
            });
        }
    }
    let status = Status {
        holder: holder.as_ref().map(|(h, _)| h.identity()),
        holder_since: holder.as_ref().map(|(_, t)| t.to_string()),
        run: record,
        slots,
    };
    let text = match args.output {
        OutputFormat::Json => {
            let mut s = serde_json::to_string_pretty(&status)
                .map_err(|e| CommandError::Failed(e.to_string()))?;
            s.push('\n');
            s
        }
        OutputFormat::Table => render(&status),
    };
    output::print(&text)?;
    Ok(ExitStatus::Success)
}

fn render(status: &Status) -> String {
    let mut out = String::new();
    match (&status.holder, &status.holder_since) {
        (Some(h), Some(since)) => out.push_str(&format!("lock: held by {h} since {since}\n")),
        _ => out.push_str("lock: free (no run in progress)\n"),
    }
    let Some(run) = &status.run else {
        out.push_str("no run recorded in this cluster\n");
        return out;
    };
    out.push_str(&format!(
        "run {}: {} (target {}), {:?}, started {}\n",
        run.id, run.command, run.target, run.state, run.started
    ));
    if let Some(message) = &run.message {
        out.push_str(&format!("  {message}\n"));
    }
    out.push('\n');
    let width = status
        .slots
        .iter()
        .map(|s| s.pool.len() + s.node.len() + 1)
        .max()
        .unwrap_or(4)
        .max(4);
    out.push_str(&format!(
        "{:<width$}  {:<12} {:<24} BLOCKED BY\n",
        "SLOT", "PHASE", "REPLACED BY"
    ));
    for s in &status.slots {
        out.push_str(&format!(
            "{:<width$}  {:<12} {:<24} {}\n",
            format!("{}/{}", s.pool, s.node),
            s.phase,
            s.replaced_by.as_deref().unwrap_or("-"),
            s.blocked.as_deref().unwrap_or("-"),
        ));
    }
    out
}
