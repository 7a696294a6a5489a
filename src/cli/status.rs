//! `kubesurge status`: what the run in progress, or the last one, is doing
//! (`crate::rotation::status`), as a table or JSON.

use clap::Args;
use futures::StreamExt;

use super::args::{GlobalArgs, OutputFormat};
use super::output::Kind;
use super::{CommandError, output, table};
use crate::ExitStatus;
use crate::kube::client;
use crate::rotation::status::{self, RunStatus};

/// Arguments of `kubesurge status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Format on stdout: table, json, yaml or jsonpath=TEMPLATE (kubectl's
    /// JSONPath, over the JSON document)
    #[arg(short = 'o', long, value_name = "FORMAT", default_value = "table", value_parser = super::args::parse_output_format)]
    pub output: OutputFormat,

    /// Follow the run in progress: print the status again each time it
    /// changes, until no run holds the lock (at once when none does)
    #[arg(short = 'w', long)]
    pub watch: bool,
}

pub async fn run(global: &GlobalArgs, args: StatusArgs) -> Result<ExitStatus, CommandError> {
    let client = client::client(&global.client_options()).await?;
    if !args.watch {
        return print(&status::read(&client).await?, &args.output);
    }
    let mut updates = std::pin::pin!(status::follow(client));
    let mut first = true;
    while let Some(status) = updates.next().await {
        if !first && args.output == OutputFormat::Table {
            output::print("\n")?;
        }
        first = false;
        print(&status?, &args.output)?;
    }
    Ok(ExitStatus::Success)
}

fn print(status: &RunStatus, format: &OutputFormat) -> Result<ExitStatus, CommandError> {
    let text = match format {
        OutputFormat::Document(encoding) => output::document(Kind::RunStatus, status, encoding)?,
        OutputFormat::Table => render(status),
    };
    output::print(&text)?;
    Ok(ExitStatus::Success)
}

fn render(status: &RunStatus) -> String {
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
        "run {}: {} (target {}), {}, started {}{}\n",
        run.id,
        run.command,
        run.target,
        run.state,
        run.started,
        run.finished
            .map_or(String::new(), |at| format!(", finished {at}"))
    ));
    if let Some(message) = &run.message {
        out.push_str(&format!("  {message}\n"));
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = status
        .slots
        .iter()
        .map(|s| {
            vec![
                format!("{}/{}", s.pool, s.node),
                s.phase.clone(),
                s.replaced_by.clone().unwrap_or_else(|| "-".into()),
                s.blocked.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    out.push_str(&table::render(
        &["SLOT", "PHASE", "REPLACED BY", "BLOCKED BY"],
        &rows,
    ));
    out
}
