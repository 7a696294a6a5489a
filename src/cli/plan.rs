//! `kubesurge plan`: read-only. Settings, inventory, the planner, a table or
//! JSON on stdout.

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::args::{GlobalArgs, OutputFormat, PlanArgs};
use super::output::{Encoding, Kind};
use super::{CommandError, output};
use crate::ExitStatus;
use crate::inventory;
use crate::kube::client;
use crate::plan::{self, PlanRequest};
use crate::settings;
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

    let text = match args.output {
        OutputFormat::Table => plan::render_table(&plan),
        OutputFormat::Json => output::document(Kind::UpgradePlan, &plan, Encoding::Json)?,
        OutputFormat::Yaml => output::document(Kind::UpgradePlan, &plan, Encoding::Yaml)?,
    };
    output::print(&text)?;
    Ok(ExitStatus::Success)
}
