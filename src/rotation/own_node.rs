//! An in-cluster run (the scheduled CronJob of `terraform/modules/scheduled`)
//! runs in a pod on one of the workers it may replace. Draining that node
//! evicts the run itself, so its node goes last, alone: every other slot of
//! the run has ended before its slot starts. When the eviction comes, the
//! process gets SIGTERM and stops at once (see `run_control`); the Job's
//! next pod, on another node, continues the run.
//!
//! The pod learns its node from the downward API (`spec.nodeName` into
//! [`NODE_ENV`]), as the module sets it:
//! https://kubernetes.io/docs/concepts/workloads/pods/downward-api/

use super::pool::PoolWork;

/// The environment variable naming the node the run's own pod runs on.
pub const NODE_ENV: &str = "KUBESURGE_NODE_NAME";

/// The node this process runs on, when it runs in a pod that was told.
pub fn from_env() -> Option<String> {
    std::env::var(NODE_ENV)
        .ok()
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
}

/// `works` without `own` node, and the work of its slot alone, to run once
/// every other slot has ended. Unchanged when the run does not replace
/// `own`.
pub fn hold_back(mut works: Vec<PoolWork>, own: Option<&str>) -> (Vec<PoolWork>, Option<PoolWork>) {
    let Some(own) = own else {
        return (works, None);
    };
    let Some(index) = works.iter().position(|w| w.nodes.iter().any(|n| n == own)) else {
        return (works, None);
    };
    let last = works[index].for_node(own);
    works[index].nodes.retain(|n| n != own);
    if works[index].nodes.is_empty() {
        works.remove(index);
    }
    (works, Some(last))
}
