//! `kubesurge init`: propose a config for an existing cluster
//! (`crate::init`); read-only unless `--write` or `--tag`.

use std::io::Write as _;
use std::path::PathBuf;

use clap::Args;

use super::args::GlobalArgs;
use super::run::confirm;
use super::{CommandError, output};
use crate::ExitStatus;
use crate::init::{self, Proposal};
use crate::kube::client;
use crate::wiring;

/// Arguments of `kubesurge init`.
#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// Write the proposed config to FILE (it must not exist) instead of
    /// printing it
    #[arg(long, value_name = "FILE")]
    pub write: Option<PathBuf>,

    /// Tag the mapped instances (and Auto Scaling groups)
    /// kubesurge.io/cluster and kubesurge.io/pool, and label the nodes of
    /// pools selected by kubesurge.io/pool, after listing every change
    #[arg(long)]
    pub tag: bool,

    /// Do not ask before tagging (required without a terminal)
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// The cluster's name in the config and the tags [default: kubeadm's
    /// clusterName from kube-system/kubeadm-config]
    #[arg(long, value_name = "NAME")]
    pub cluster_name: Option<String>,
}

pub async fn run(global: &GlobalArgs, args: InitArgs) -> Result<ExitStatus, CommandError> {
    if let Some(path) = &args.write
        && path.exists()
    {
        return Err(CommandError::InitFileExists(path.clone()));
    }
    let config = client::config(&global.client_options()).await?;
    let server = client::server_url(&config);
    let client = client::client_from_config(config, client::Retry::Default)?;
    let providers = wiring::discoveries();
    let proposal = init::discover(&client, &server, &providers, args.cluster_name.clone()).await?;
    let text = proposal.config(wiring::PROVIDERS)?;
    summarize(&proposal);
    match &args.write {
        Some(path) => {
            write_new(path, &text).map_err(|source| CommandError::InitWrite {
                path: path.clone(),
                source,
            })?;
            output::eprint_line(&format!("wrote {}", path.display()));
        }
        None => output::print(&text)?,
    }
    if args.tag {
        let listing = tag_listing(&proposal);
        if listing.is_empty() {
            output::eprint_line("nothing to tag: every mapped instance carries its tags");
            return Ok(ExitStatus::Success);
        }
        output::eprint_line(&format!("--tag will change:\n{}", listing.join("\n")));
        confirm(
            &format!("Make these {} change(s)?", listing.len()),
            args.yes,
        )?;
        init::apply_tags(&client, &providers, &proposal).await?;
        output::eprint_line(&format!("tagged: {} change(s) made", listing.len()));
    }
    Ok(ExitStatus::Success)
}

/// Pools, warnings and unmapped nodes, on stderr (the config goes to
/// stdout or the file).
fn summarize(proposal: &Proposal) {
    for pool in &proposal.pools {
        output::eprint_line(&format!(
            "pool {}: {} node(s), {}",
            pool.draft.name,
            pool.draft.members.len(),
            pool.origin
        ));
        for warning in &pool.section.warnings {
            output::eprint_line(&format!("  warning: {warning}"));
        }
    }
    for (node, reason) in &proposal.unmapped {
        output::eprint_line(&format!("not mapped: node {node}: {reason}"));
    }
}

/// One line per change `--tag` makes.
fn tag_listing(proposal: &Proposal) -> Vec<String> {
    let mut lines = Vec::new();
    for (provider, changes) in init::tag_plan(proposal) {
        for change in changes {
            let tags: Vec<String> = change
                .tags
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            lines.push(format!(
                "  {provider} {}: tag {}",
                change.target,
                tags.join(" ")
            ));
        }
    }
    for (node, key, value) in init::label_plan(proposal) {
        lines.push(format!("  node {node}: label {key}={value}"));
    }
    lines
}

/// Create `path` (never overwrite) with `text`.
fn write_new(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(text.as_bytes())
}
