//! The planner: a pure function of (inventory, target, pools) → plan.
//!
//! (Interface fixed; the implementation is filled by the planner work.)

use serde::Serialize;
use thiserror::Error;

use crate::inventory::Inventory;
use crate::settings::Budget;
use crate::version::KubeVersion;

/// What the planner needs to know of a pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolInput {
    pub name: String,
    pub max_surge: Budget,
    pub max_unavailable: Budget,
}

/// The planner's input.
#[derive(Clone, Debug)]
pub struct PlanRequest<'a> {
    pub inventory: &'a Inventory,
    /// `None`: stay at the current control-plane version.
    pub target: Option<KubeVersion>,
    pub pools: &'a [PoolInput],
    /// For the support window.
    pub today: jiff::civil::Date,
}

/// The plan.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {}

/// Why no plan can be made.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("refused")]
pub struct PlanRefusal {}

/// Make the plan.
pub fn plan(_request: &PlanRequest<'_>) -> Result<Plan, PlanRefusal> {
    Err(PlanRefusal {})
}

/// The plan as the table `kubesurge plan` prints.
pub fn render_table(_plan: &Plan) -> String {
    String::new()
}
