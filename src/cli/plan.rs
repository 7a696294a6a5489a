//! `kubesurge plan`: read-only. Settings, inventory, the planner, a table or
//! JSON on stdout.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use schemars::JsonSchema;
use serde::Serialize;

use super::args::{GlobalArgs, OutputFormat, PlanArgs};
use super::output::Kind;
use super::run::announce_not_checked;
use super::{CommandError, output};
use crate::ExitStatus;
use crate::check::target::{self, NotChecked};
use crate::inventory;
use crate::kube::client;
use crate::plan::{self, Plan, PlanRequest};
use crate::settings::{self, Settings};
use crate::wiring;

pub async fn run(global: &GlobalArgs, args: PlanArgs) -> Result<ExitStatus, CommandError> {
    // Settings first: a bad file or flag exits 2 before anything is contacted.
    let settings = settings::load(
        global.config.as_deref(),
        &args.settings.overrides(),
        wiring::PROVIDERS,
    )?;
    tracing::debug!(pools = settings.pools.len(), "settings loaded");

    let config = client::config(&global.client_options()).await?;
    let server = client::server_url(&config);
    let client = client::client_from_config(config, client::Retry::Default)?;
    tracing::info!(%server, "reading the cluster");
    let inventory = inventory::collect(&client, &settings.pool_selectors())
        .await
        .map_err(|source| CommandError::Inventory {
            server: server.clone(),
            source,
        })?;
    tracing::debug!(
        control_plane = inventory.control_plane.len(),
        workers = inventory.workers.len(),
        apiserver = %inventory.apiserver_version,
        "inventory read"
    );

    let plan = plan::plan(&PlanRequest {
        inventory: &inventory,
        target: args.to,
        pools: &settings.pool_inputs(),
        today: Timestamp::now().to_zoned(TimeZone::UTC).date(),
    })?;

    // The target must exist: the same check as `upgrade` runs first,
    // with what the settings can reach.
    let not_checked = verify_target(&plan, &client, &settings).await?;
    announce_not_checked(&not_checked);

    let text = match &args.output {
        OutputFormat::Table => plan::render_table(&plan),
        OutputFormat::Document(encoding) => {
            let document = PlanDocument {
                plan: &plan,
                dry_run: None,
            };
            output::document(Kind::UpgradePlan, &document, encoding)?
        }
    };
    output::print(&text)?;
    Ok(ExitStatus::Success)
}

/// The `UpgradePlan` document: the plan, and under `upgrade --dry-run`
/// every mutation the run would make (`would`) and each rotation's dry run
/// (`rotations`).
#[derive(Serialize, JsonSchema)]
pub(super) struct PlanDocument<'a> {
    #[serde(flatten)]
    pub plan: &'a Plan,
    #[serde(flatten)]
    pub dry_run: Option<&'a crate::upgrade::DryRun>,
}

/// `check::target` for `plan`: through the control-plane exec and pool
/// providers the settings wire; what they cannot reach is not checked, and
/// said so (`plan` runs without `controlPlane.exec` or a cluster name).
async fn verify_target(
    plan: &Plan,
    client: &kube::Client,
    settings: &Settings,
) -> Result<NotChecked, CommandError> {
    let exec = if plan.hops.is_empty() {
        None
    } else {
        wiring::node_exec(settings).ok()
    };
    let engine = if plan.pools.iter().any(|p| !p.rotations.is_empty()) {
        wiring::engine_config(settings, "plan").ok()
    } else {
        None
    };
    Ok(target::verify(plan, client, exec.as_deref(), engine.as_ref()).await?)
}
