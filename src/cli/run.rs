//! What `rotate` and `upgrade` share on the command line: connecting, the
//! maintenance window's verdict, the confirmation, the lock, and printing
//! the run report.

use std::io::{BufRead, IsTerminal, Write};

use jiff::Timestamp;
use kube::Client;

use super::args::{GlobalArgs, ReportFormat};
use super::output::Kind;
use super::{CommandError, output, table};
use crate::ExitStatus;
use crate::check::target::NotChecked;
use crate::inventory::{self, Inventory};
use crate::kube::client::{self, Retry};
use crate::kube::fence::Fence;
use crate::kube::in_flight::{InFlightLayer, MAX_IN_FLIGHT};
use crate::kube::lock::{Holder, LockError, RunLock};
use crate::rotation::{RunOutcome, RunReport, SlotOutcome, SlotReport};
use crate::run_control::{self, WindowGate};
use crate::settings::Settings;
use crate::window::Position;

/// The clients a command talks to the cluster with.
pub struct Connection {
    pub client: Client,
    /// Without kube's own 429 retries: a PDB's 429 must reach the drain.
    pub drain_client: Client,
    /// The API server's URL, for messages.
    pub server: String,
    /// What the clients were built from: the run lock's renewer builds
    /// its own.
    pub config: kube::Config,
    /// Raised by the run lock when this run can no longer prove it holds
    /// it; both clients then refuse every mutation.
    pub fence: Fence,
}

/// Connect as the global flags say. Reads files; contacts nothing.
pub async fn connect(global: &GlobalArgs) -> Result<Connection, CommandError> {
    let config = client::config(&global.client_options()).await?;
    let server = client::server_url(&config);
    let fence = Fence::new();
    // One bound over both clients: they share the run's connections' budget.
    let in_flight = InFlightLayer::new(MAX_IN_FLIGHT);
    Ok(Connection {
        client: client::fenced_client_from_config(
            config.clone(),
            Retry::Default,
            &fence,
            &in_flight,
        )?,
        drain_client: client::fenced_client_from_config(
            config.clone(),
            Retry::Off,
            &fence,
            &in_flight,
        )?,
        server,
        config,
        fence,
    })
}

/// The inventory, riding through an API server restart.
pub async fn read_cluster(
    connection: &Connection,
    settings: &Settings,
) -> Result<Inventory, CommandError> {
    inventory::collect_through_restart(&connection.client, &settings.pool_selectors())
        .await
        .map_err(|source| CommandError::Inventory {
            server: connection.server.clone(),
            source,
        })
}

/// Whether a mutating command may start now (outside the maintenance
/// window it may not; the command then reports what is left and ends with
/// exit 5).
pub fn window_gate(settings: &Settings) -> Result<WindowGate, CommandError> {
    Ok(run_control::window_gate(
        settings.window.as_ref(),
        Timestamp::now(),
    )?)
}

/// When the window opens again after a run stopped at its end: the
/// sentence naming the window and the opening, for stderr.
pub fn reopening(settings: &Settings, opens_at: Timestamp) -> String {
    match settings.window.as_ref() {
        Some(window) => Position::Outside { opens_at }.sentence(window, Timestamp::now()),
        None => format!("it opens at {opens_at}"),
    }
}

/// Say on stderr which pieces of the target could not be looked for.
pub fn announce_not_checked(not_checked: &NotChecked) {
    for what in &not_checked.0 {
        output::eprint_line(&format!("not checked: {what}"));
    }
}

/// Say on stderr why a command ends with exit 5 and when to rerun it:
/// the line a scheduler's or Terraform's log shows.
pub fn announce_unfinished(what: &str) {
    output::eprint_line(&format!(
        "not finished (exit 5): {what}; rerun the same command in the maintenance window to continue"
    ));
}

/// The report of a rotation that did not start because the window is
/// closed: the preview's slots, none started, with the opening.
pub fn deferred_report(preview: RunReport, sentence: &str, opens_at: Timestamp) -> RunReport {
    let slots: Vec<SlotReport> = preview
        .slots
        .into_iter()
        .map(|slot| SlotReport {
            actions: Vec::new(),
            outcome: SlotOutcome::NotStarted,
            ..slot
        })
        .collect();
    RunReport {
        dry_run: false,
        outcome: RunOutcome::Deferred {
            reason: sentence.to_string(),
            opens_at,
            remaining: slots.len(),
        },
        slots,
        would: Vec::new(),
        finished: Timestamp::now(),
        ..preview
    }
}

/// Ask on the terminal unless `--yes`. Without a terminal, refuse: a
/// mutation nobody confirmed is not made.
pub fn confirm(question: &str, yes: bool) -> Result<(), CommandError> {
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(CommandError::NoTerminal);
    }
    let mut stderr = std::io::stderr().lock();
    let _ = write!(stderr, "{question} [y/N] ");
    let _ = stderr.flush();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(CommandError::ReadAnswer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        Err(CommandError::NotConfirmed)
    }
}

/// Take the run lock (held by another run: exit 3, naming the holder).
pub async fn lock(connection: &Connection, run_label: &str) -> Result<RunLock, CommandError> {
    // Without kube's own 429/5xx retries: the lock's renewals retry on
    // their own short period, and a request held back by the client's
    // backoff must not eat the renew deadline.
    Ok(RunLock::acquire(
        connection.drain_client.clone(),
        connection.config.clone(),
        Holder::this_process(run_label),
        connection.fence.clone(),
    )
    .await?)
}

/// Give the lock up at the end of a command. A failure is only a warning:
/// the lease expires by itself.
pub async fn release(held: RunLock) {
    match held.release().await {
        Ok(()) => {}
        // Said when it was raised; the lease is not this run's to touch.
        Err(LockError::Fenced(_)) => {}
        Err(e) => {
            tracing::warn!(error = %e, "could not release the run lock; it expires by itself")
        }
    }
}

/// The exit status of a finished run.
pub fn exit_status(report: &RunReport) -> ExitStatus {
    match report.outcome {
        RunOutcome::Succeeded => ExitStatus::Success,
        RunOutcome::Failed { .. } => ExitStatus::Failed,
        RunOutcome::Aborted => ExitStatus::Aborted,
        RunOutcome::Stopped { .. } | RunOutcome::Deferred { .. } => ExitStatus::Deferred,
    }
}

/// Print the report: a summary table, or JSON.
pub fn print_report(report: &RunReport, format: &ReportFormat) -> Result<(), CommandError> {
    let text = match format {
        ReportFormat::Document(encoding) => {
            output::document(Kind::RotationReport, report, encoding)?
        }
        ReportFormat::Name => output::names(report_nodes(report)),
        ReportFormat::Table => render_report(report),
    };
    output::print(&text)
}

/// The nodes `-o name` lists for a report: the new nodes the run made; for
/// a dry run or a deferred run, the old nodes it would replace.
pub fn report_nodes(report: &RunReport) -> Vec<&str> {
    if report.dry_run || matches!(report.outcome, RunOutcome::Deferred { .. }) {
        report.slots.iter().map(|s| s.old_node.as_str()).collect()
    } else {
        report
            .slots
            .iter()
            .filter(|s| s.outcome == SlotOutcome::Replaced)
            .filter_map(|s| s.new_node.as_deref())
            .collect()
    }
}

/// The summary table.
pub fn render_report(report: &RunReport) -> String {
    let mut out = String::new();
    if report.dry_run {
        out.push_str(&format!(
            "DRY RUN of {} (target {}): {} node(s) would be replaced; nothing was changed.\n",
            report.command,
            report.target,
            report.slots.len()
        ));
        out.push_str(&numbered_would(&report.would));
        return out;
    }
    out.push_str(&format!(
        "run {}: {} (target {})\n\n",
        report.run_id, report.command, report.target
    ));
    let rows: Vec<Vec<String>> = report
        .slots
        .iter()
        .map(|s| {
            vec![
                s.pool.clone(),
                s.old_node.clone(),
                s.new_node.clone().unwrap_or_else(|| "-".into()),
                s.zone.clone().unwrap_or_else(|| "-".into()),
                match (
                    s.timings.launch_to_ready,
                    s.timings.drain,
                    s.timings.terminate,
                ) {
                    (None, None, None) => "-".into(),
                    (a, b, c) => format!("{}/{}/{}", secs(a), secs(b), secs(c)),
                },
                match &s.outcome {
                    SlotOutcome::Replaced => "replaced".into(),
                    SlotOutcome::Skipped { reason } => format!("skipped: {reason}"),
                    SlotOutcome::Failed { reason } => format!("FAILED: {reason}"),
                    SlotOutcome::NotStarted => "not started".into(),
                },
            ]
        })
        .collect();
    out.push_str(&table::render(
        &[
            "POOL",
            "OLD NODE",
            "NEW NODE",
            "ZONE",
            "READY/DRAIN/TERM",
            "RESULT",
        ],
        &rows,
    ));
    out.push('\n');
    out.push_str(&data_left_behind(&report.slots));
    let summary = match &report.outcome {
        RunOutcome::Succeeded => format!("done: {} node(s) replaced", report.replaced()),
        RunOutcome::Failed { reason } => format!(
            "FAILED after replacing {} node(s): {reason}\nthe cluster was left safe; rerun the same command to resume",
            report.replaced()
        ),
        RunOutcome::Aborted => format!(
            "aborted after replacing {} node(s); rerun the same command to resume",
            report.replaced()
        ),
        RunOutcome::Stopped {
            reason,
            remaining,
            opens_at,
        } => format!(
            "partial: {reason}; {} node(s) replaced, {remaining} left for the next window{} (rerun the same command then)",
            report.replaced(),
            opens_at.map_or(String::new(), |at| format!(", which opens at {at}"))
        ),
        RunOutcome::Deferred {
            reason, remaining, ..
        } => format!(
            "deferred: {reason}; nothing changed; {remaining} node(s) left (rerun the same command then)"
        ),
    };
    out.push_str(&summary);
    out.push('\n');
    out
}

/// The evicted pods whose data stayed on their old node (local
/// PersistentVolumes under `drain.localStorage: delete`, hostPath
/// volumes), one line each; empty when there are none.
fn data_left_behind(slots: &[SlotReport]) -> String {
    let lines: Vec<String> = slots
        .iter()
        .filter_map(|s| s.drain.as_ref())
        .flat_map(|d| {
            d.evicted.iter().filter_map(move |e| {
                e.reason
                    .data_left_behind()
                    .map(|what| format!("  {} on {}: {what}\n", e.pod, d.node))
            })
        })
        .collect();
    if lines.is_empty() {
        return String::new();
    }
    format!(
        "evicted with data left on the old node:\n{}\n",
        lines.concat()
    )
}

/// A dry run's mutations, numbered: `   1. would launch …`.
pub fn numbered_would(lines: &[String]) -> String {
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| format!("{:>4}. would {line}\n", i + 1))
        .collect()
}

fn secs(v: Option<f64>) -> String {
    v.map_or("-".into(), |s| format!("{s:.0}s"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::drain::{DrainOutcome, DrainReport, EvictReason, EvictedPod};

    #[test]
    fn pods_whose_data_stays_on_the_old_node_are_listed_after_the_table() {
        let evicted = |pod: &str, reason| EvictedPod {
            pod: pod.into(),
            reason,
            attempts: 1,
        };
        let mut slot = SlotReport::not_started("general", "general-1");
        slot.drain = Some(DrainReport {
            node: "general-1".into(),
            evicted: vec![
                evicted("shop/web-1", EvictReason::Managed),
                evicted("shop/db-0", EvictReason::LocalVolume),
                evicted("shop/logs-1", EvictReason::HostPath),
            ],
            skipped: Vec::new(),
            evictions_refused: 0,
            outcome: DrainOutcome::Drained,
        });
        let text = data_left_behind(&[slot]);
        assert!(
            text.contains("shop/db-0 on general-1: its local PersistentVolume's data is lost"),
            "{text}"
        );
        assert!(
            text.contains(
                "shop/logs-1 on general-1: what it wrote to its hostPath stays on the old node"
            ),
            "{text}"
        );
        assert!(!text.contains("web-1"), "{text}");
        assert_eq!(
            data_left_behind(&[SlotReport::not_started("general", "general-2")]),
            ""
        );
    }
}
