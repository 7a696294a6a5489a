//! `kubesurge check`: prove, changing nothing, that a run would work
//! (`crate::check`). A line per check on stdout; exit 0 when every check
//! passes, 1 when one does not.

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::args::{GlobalArgs, OutputFormat, PlanArgs};
use super::output::Kind;
use super::run::{connect, read_cluster};
use super::{CommandError, output, table};
use crate::ExitStatus;
use crate::check::runner::{self, CheckInputs};
use crate::check::{CheckReport, CheckStatus};
use crate::plan::{self, PlanRequest};
use crate::settings;
use crate::wiring;

/// `check` takes what `plan` takes.
pub type CheckArgs = PlanArgs;

pub async fn run(global: &GlobalArgs, args: CheckArgs) -> Result<ExitStatus, CommandError> {
    let settings = settings::load(
        global.config.as_deref(),
        &args.settings.overrides(),
        wiring::PROVIDERS,
    )?;
    let connection = connect(global).await?;
    let inventory = read_cluster(&connection, &settings).await?;
    let plan = plan::plan(&PlanRequest {
        inventory: &inventory,
        target: args.to,
        pools: &settings.pool_inputs(),
        today: Timestamp::now().to_zoned(TimeZone::UTC).date(),
    });
    let inputs = CheckInputs {
        client: connection.client.clone(),
        target: args.to,
        plan,
        exec: wiring::node_exec(&settings).map_err(|e| e.to_string()),
        engine: wiring::engine_config(&settings, "check").map_err(|e| e.to_string()),
        unmanaged: settings.drain.unmanaged_pods,
    };
    let report = runner::run(&inputs).await;
    let text = match &args.output {
        OutputFormat::Table => render(&report),
        OutputFormat::Document(encoding) => output::document(Kind::CheckReport, &report, encoding)?,
    };
    output::print(&text)?;
    Ok(if report.passed() {
        ExitStatus::Success
    } else {
        ExitStatus::Failed
    })
}

/// A line per check, its fix under a line that did not pass.
fn render(report: &CheckReport) -> String {
    let rows: Vec<Vec<String>> = report
        .lines
        .iter()
        .flat_map(|line| {
            let mut rows = vec![vec![
                line.status.word().to_string(),
                line.check.name().to_string(),
                line.subject.clone(),
                line.message.clone(),
            ]];
            if let Some(fix) = &line.fix {
                rows.push(vec![
                    String::new(),
                    String::new(),
                    String::new(),
                    format!("fix: {fix}"),
                ]);
            }
            rows
        })
        .collect();
    let failed = report
        .lines
        .iter()
        .filter(|l| l.status != CheckStatus::Pass)
        .count();
    format!(
        "{}\n{}\n",
        table::render(&["RESULT", "CHECK", "SUBJECT", "DETAIL"], &rows),
        if failed == 0 {
            "every check passed: a run would work".to_string()
        } else {
            format!("{failed} check(s) did not pass; nothing was changed")
        }
    )
}
