//! Against a real peer (design §12): the same scenario rotated by
//! kubesurge and by eks-rolling-update (PyPI, the most used open-source
//! Auto Scaling group roller), each on a fresh world of its own whose
//! workers are the members of Auto Scaling groups in moto, with the same
//! workloads, PDBs and delays.
//!
//! - [`setup`]: the peer installed from PyPI into `.tools/`, and the
//!   `kubectl` it runs.
//! - [`run`]: one tool on one world, in a scenario process of its own.
//! - [`table`]: both tools' rows side by side.

pub mod run;
pub mod setup;
pub mod table;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::measure::Usage;
use crate::scenario::RequestCount;
use crate::spec::{Delays, Layout, Shape, WorkloadSpec};

/// The peers the bench knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Peer {
    /// eks-rolling-update 1.1.8 (PyPI)
    EksRollingUpdate,
}

impl Peer {
    pub fn name(self) -> &'static str {
        match self {
            Peer::EksRollingUpdate => "eks-rolling-update",
        }
    }
}

/// Which tool rotates the world.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "tool")]
pub enum Contender {
    /// `kubesurge rotate --all`, the binary given.
    Kubesurge { binary: PathBuf },
    /// eks-rolling-update from its venv, `kubectl` through a shim.
    EksRollingUpdate { install: setup::PeerInstall },
}

impl Contender {
    pub fn name(&self) -> &'static str {
        match self {
            Contender::Kubesurge { .. } => "kubesurge",
            Contender::EksRollingUpdate { .. } => Peer::EksRollingUpdate.name(),
        }
    }
}

/// One tool's run on one fresh world.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerSpec {
    pub shape: Shape,
    pub layout: Layout,
    pub delays: Delays,
    pub workload: WorkloadSpec,
    pub contender: Contender,
    pub workdir: PathBuf,
    /// When to stop the tool; `None`: [`run`]'s generous default.
    #[serde(default)]
    pub timeout_s: Option<f64>,
}

/// What the §8.3 observer and the end state showed about a run's safety.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Findings {
    /// Times a pool's Ready, schedulable nodes fell below its size
    /// (invariant 3 with `maxUnavailable` 0).
    pub capacity_below_pool_size: usize,
    /// Pods that left while their PDB did not allow it (invariant 2).
    pub pdb_violations: usize,
    /// Nodes deleted (or gone) with pods a drain should have evicted still
    /// on them (invariant 1).
    pub nodes_deleted_with_pods: usize,
    /// Nodes that registered again after they were deleted: a kubelet
    /// still running on an instance not yet terminated.
    pub stale_nodes_reregistered: usize,
    /// Instances left after the run that are neither terminated nor a
    /// Ready node: old workers not terminated, new ones that never joined
    /// (invariant 4).
    pub instances_left: usize,
    /// The first few messages, to say what happened.
    pub examples: Vec<String>,
}

impl Findings {
    pub fn total(&self) -> usize {
        self.capacity_below_pool_size
            + self.pdb_violations
            + self.nodes_deleted_with_pods
            + self.stale_nodes_reregistered
            + self.instances_left
    }
}

/// Everything measured of one tool's run.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerResult {
    pub tool: String,
    pub shape: Shape,
    pub layout: Layout,
    /// The tool exited 0.
    pub succeeded: bool,
    pub status: String,
    /// Workers before the run.
    pub workers: usize,
    /// Original workers gone after the run.
    pub replaced: usize,
    /// The tool's start → exit, seconds.
    pub makespan: f64,
    /// World start → settled, seconds.
    pub setup: f64,
    /// Requests the emulator served during the run.
    pub requests: Vec<RequestCount>,
    /// AWS calls (EC2 and Auto Scaling) the tool made, by action.
    pub aws_calls: BTreeMap<String, u64>,
    /// The tool's process tree: CPU of every process in it (the kernel
    /// adds waited-for children up), the largest single process's peak.
    pub usage: Usage,
    /// The largest resident memory of the whole tree at once, sampled.
    pub tree_peak_rss_kib: u64,
    pub findings: Findings,
}
