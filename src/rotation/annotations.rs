//! What the engine writes on nodes so that any rerun, and `status`, can
//! tell where each slot is from the world alone (design §5).

/// The run replacing this node.
pub const RUN: &str = "kubesurge.io/run";
/// The slot's phase (see [`super::slot::Phase`]).
pub const PHASE: &str = "kubesurge.io/phase";
/// The node that replaces this one.
pub const REPLACED_BY: &str = "kubesurge.io/replaced-by";
/// The launch attempt in progress (a replacement that never joins is
/// terminated and the slot retried with the next attempt).
pub const ATTEMPT: &str = "kubesurge.io/attempt";
/// When the drain started (RFC 3339), so a rerun keeps the same deadline.
pub const DRAIN_STARTED: &str = "kubesurge.io/drain-started";
/// Whether the node was cordoned before the run drained it (`true`:
/// cordoned by an operator, so the run leaves it cordoned when it gives the
/// node back). Written once, with the first drain mark; removed when the
/// node is given back.
pub const CORDONED_BEFORE: &str = "kubesurge.io/cordoned-before";
/// What the slot waits on right now, for `status` (a PDB, a join).
pub const BLOCKED: &str = "kubesurge.io/blocked";
/// Label on the bootstrap token Secrets a run mints, for cleanup.
pub const TOKEN_RUN_LABEL: &str = "kubesurge.io/run";
