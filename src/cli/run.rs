//! What `rotate` and `upgrade` share: the maintenance window, the lock, the
//! confirmation, turning lock signals into stop requests, and printing the
//! report.

use std::io::{BufRead, IsTerminal, Write};

use jiff::Timestamp;
use kube::Client;
use tokio::sync::watch;

use super::args::OutputFormat;
use super::{CommandError, output};
use crate::ExitStatus;
use crate::kube::lock::{Holder, LockError, RunLock};
use crate::rotation::{RunOutcome, RunReport, SlotOutcome, StopReason};
use crate::settings::Settings;
use crate::window::{self, Position};

/// Whether a mutating command may start now. `Ok(Some(end))`: inside the
/// window, which closes at `end`; `Ok(None)`: no window; `Err(status)`:
/// outside it — the command says when it opens and ends with that status.
pub fn check_window(settings: &Settings) -> Result<Option<Timestamp>, ExitStatus> {
    let Some(w) = &settings.window else {
        return Ok(None);
    };
    let now = Timestamp::now();
    match window::position(w, now) {
        Ok(Position::Inside { ends_at }) => Ok(Some(ends_at)),
        Ok(outside @ Position::Outside { .. }) => {
            output::eprint_line(&format!("{}; nothing changed", outside.sentence(w, now)));
            Err(ExitStatus::Success)
        }
        Err(e) => {
            output::eprint_line(&format!("error: {e}"));
            Err(ExitStatus::Invalid)
        }
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
        return Err(CommandError::Invalid(
            "refusing to change the cluster without confirmation: stdin is not a terminal; pass --yes".into(),
        ));
    }
    let mut stderr = std::io::stderr().lock();
    let _ = write!(stderr, "{question} [y/N] ");
    let _ = stderr.flush();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CommandError::Failed(format!("cannot read the answer: {e}")))?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        Err(CommandError::Invalid(
            "not confirmed; nothing changed".into(),
        ))
    }
}

/// Take the run lock, or end with exit 3 naming the holder.
pub async fn lock(client: &Client, run_label: &str) -> Result<RunLock, CommandError> {
    match RunLock::acquire(client.clone(), Holder::this_process(run_label)).await {
        Ok(lock) => Ok(lock),
        Err(e @ LockError::Held { .. }) => Err(CommandError::Locked(e.to_string())),
        Err(e) => Err(CommandError::Failed(e.to_string())),
    }
}

/// Turn the lock's abort mark and the window's end into stop requests.
pub fn stop_requests(
    lock: &RunLock,
    window_end: Option<Timestamp>,
) -> (
    watch::Receiver<Option<StopReason>>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let (tx, rx) = watch::channel(None);
    let request = |tx: &watch::Sender<Option<StopReason>>, reason: StopReason| {
        tx.send_if_modified(|s| {
            let first = s.is_none();
            if first {
                *s = Some(reason);
            }
            first
        });
    };
    let mut tasks = Vec::new();
    let mut state = lock.state();
    let abort_tx = tx.clone();
    tasks.push(tokio::spawn(async move {
        while state.changed().await.is_ok() {
            let s = *state.borrow();
            if s.lost {
                tracing::error!("the run lock was taken over by another run; stopping");
            } else if s.abort_requested {
                tracing::warn!(
                    "abort requested; finishing the slots in flight, starting no new one"
                );
            } else {
                continue;
            }
            request(&abort_tx, StopReason::Abort);
            return;
        }
    }));
    if let Some(end) = window_end {
        let window_tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            let wait = Timestamp::now().duration_until(end);
            tokio::time::sleep(std::time::Duration::try_from(wait).unwrap_or_default()).await;
            tracing::warn!(
                "the maintenance window ends; finishing the slots in flight, starting no new one"
            );
            request(&window_tx, StopReason::WindowEnd);
        }));
    }
    (rx, tasks)
}

/// The exit status of a finished run.
pub fn exit_status(report: &RunReport) -> ExitStatus {
    match report.outcome {
        RunOutcome::Succeeded | RunOutcome::Stopped { .. } => ExitStatus::Success,
        RunOutcome::Failed { .. } => ExitStatus::Failed,
        RunOutcome::Aborted => ExitStatus::Aborted,
    }
}

/// Print the report: a summary table, or JSON.
pub fn print_report(report: &RunReport, format: OutputFormat) -> Result<(), CommandError> {
    let text = match format {
        OutputFormat::Json => {
            let mut json = serde_json::to_string_pretty(report).map_err(|e| {
                CommandError::Failed(format!("cannot write the report as JSON: {e}"))
            })?;
            json.push('\n');
            json
        }
        OutputFormat::Table => render_report(report),
    };
    output::print(&text)
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
        for (i, line) in report.would.iter().enumerate() {
            out.push_str(&format!("{:>4}. would {line}\n", i + 1));
        }
        return out;
    }
    out.push_str(&format!(
        "run {}: {} (target {})\n\n",
        report.run_id, report.command, report.target
    ));
    let rows: Vec<[String; 6]> = report
        .slots
        .iter()
        .map(|s| {
            [
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
    let header = [
        "POOL",
        "OLD NODE",
        "NEW NODE",
        "ZONE",
        "READY/DRAIN/TERM",
        "RESULT",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()).take(5) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: [&str; 6]| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i < 5 {
                l.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            } else {
                l.push_str(cell);
            }
        }
        l.trim_end().to_string() + "\n"
    };
    out.push_str(&line(header));
    for row in &rows {
        out.push_str(&line([
            &row[0], &row[1], &row[2], &row[3], &row[4], &row[5],
        ]));
    }
    out.push('\n');
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
        RunOutcome::Stopped { reason, remaining } => format!(
            "stopped: {reason}; {} node(s) replaced, {remaining} left for the next window (rerun the same command)",
            report.replaced()
        ),
    };
    out.push_str(&summary);
    out.push('\n');
    out
}

fn secs(v: Option<f64>) -> String {
    v.map_or("-".into(), |s| format!("{s:.0}s"))
}

/// How long a mutating command waits for an API server that is restarting
/// (a control-plane hop in progress) before giving up on reading the
/// cluster.
const STARTUP_OUTAGE_TOLERANCE: std::time::Duration = std::time::Duration::from_secs(120);

/// The inventory, riding through an API server restart: a rerun right
/// after a crash in the middle of a hop finds the apiserver restarting.
pub async fn collect_inventory(
    client: &kube::Client,
    settings: &Settings,
) -> Result<crate::inventory::Inventory, CommandError> {
    let deadline = tokio::time::Instant::now() + STARTUP_OUTAGE_TOLERANCE;
    let mut delay = std::time::Duration::from_millis(200);
    loop {
        match crate::inventory::collect(client, &settings.pool_selectors()).await {
            Ok(inventory) => return Ok(inventory),
            Err(source)
                if source.is_unreachable() && tokio::time::Instant::now() + delay < deadline =>
            {
                tracing::warn!(error = %source, "the API server is unreachable; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
            }
            Err(source) => {
                return Err(CommandError::Inventory {
                    server: String::new(),
                    source,
                });
            }
        }
    }
}
