//! What a scenario is: how N workers and a total surge S are laid out over
//! the pools, the scaled delays of the world, and the workloads. Pure data
//! and arithmetic; the world is built from it elsewhere.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use kubesurge_testworld::Timing;
use serde::{Deserialize, Serialize};

/// The three pools every scenario has (design §12: three pools over three
/// zones).
pub const POOLS: [&str; 3] = ["general", "compute", "memory"];
/// Zones the workers are spread over.
pub const ZONES: usize = 3;
/// `health.settle` in every scenario: none, the smallest the settings
/// allow (the join wait already proves the node Ready, untainted, zoned,
/// with its kube-system pods Ready). Counted as engine time, not in the
/// bound.
pub const SETTLE_SECONDS: u64 = 0;

/// `NxS`: N workers, S replacements in flight in total.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Shape {
    pub nodes: usize,
    pub surge: usize,
}

impl FromStr for Shape {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{text:?} is not NxS (workers x total surge), such as 1000x100");
        let (n, s) = text.split_once(['x', 'X']).ok_or_else(bad)?;
        let nodes: usize = n.trim().parse().map_err(|_| bad())?;
        let surge: usize = s.trim().parse().map_err(|_| bad())?;
        if nodes < POOLS.len() {
            return Err(format!(
                "{text:?}: at least {} workers (one per pool)",
                POOLS.len()
            ));
        }
        if surge == 0 {
            return Err(format!("{text:?}: the surge must be at least 1"));
        }
        Ok(Shape { nodes, surge })
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.nodes, self.surge)
    }
}

/// One pool of a scenario.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolPlan {
    pub name: String,
    pub workers: usize,
    /// The pool's `maxSurge`.
    pub max_surge: usize,
}

/// How a shape is laid out over the pools.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    pub pools: Vec<PoolPlan>,
    /// The pools are rotated one after another (one `kubesurge rotate
    /// --pool` each) because S is smaller than the number of pools: the
    /// engine rotates pools concurrently, each with at least one slot.
    pub sequential: bool,
}

impl Layout {
    /// S is the total in flight. Per pool `maxSurge` is S split as evenly
    /// as possible (the remainder to the first pools), and the workers are
    /// split in proportion to it, so that every pool needs the same number
    /// of waves and the layout's bound is ⌈N/S⌉ waves. When S is smaller
    /// than the number of pools, each pool gets `maxSurge` S, the workers
    /// are split evenly and the pools run one after another.
    pub fn of(shape: Shape) -> Layout {
        let sequential = shape.surge < POOLS.len();
        let (surges, workers) = if sequential {
            let workers = split(shape.nodes, &[1; POOLS.len()]);
            ([shape.surge; POOLS.len()].to_vec(), workers)
        } else {
            let surges = split(shape.surge, &[1; POOLS.len()]);
            let workers = split(shape.nodes, &surges);
            (surges, workers)
        };
        let pools = POOLS
            .iter()
            .zip(surges)
            .zip(workers)
            .map(|((name, max_surge), workers)| PoolPlan {
                name: name.to_string(),
                workers,
                max_surge,
            })
            .collect();
        Layout { pools, sequential }
    }

    /// Waves this layout needs at least: the pools' waves, added up when
    /// the pools run one after another, else the largest.
    pub fn waves(&self) -> usize {
        let per_pool = self
            .pools
            .iter()
            .map(|p| p.workers.div_ceil(p.max_surge.max(1)));
        if self.sequential {
            per_pool.sum()
        } else {
            per_pool.max().unwrap_or(0)
        }
    }

    pub fn workers(&self) -> usize {
        self.pools.iter().map(|p| p.workers).sum()
    }

    /// `general 340/34, compute 330/33, …` (workers/maxSurge).
    pub fn describe(&self) -> String {
        let pools: Vec<String> = self
            .pools
            .iter()
            .map(|p| format!("{} {}/{}", p.name, p.workers, p.max_surge))
            .collect();
        let order = if self.sequential {
            "one pool after another"
        } else {
            "pools concurrently"
        };
        format!("{} (workers/maxSurge), {order}", pools.join(", "))
    }
}

/// `total` split in proportion to `weights` (largest remainder, ties to
/// the first), every part at least 1 when `total` allows it.
pub fn split(total: usize, weights: &[usize]) -> Vec<usize> {
    let sum: usize = weights.iter().sum();
    if sum == 0 || weights.is_empty() {
        return vec![0; weights.len()];
    }
    let mut parts: Vec<usize> = weights.iter().map(|w| total * w / sum).collect();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    // Largest fractional part first; a stable sort keeps ties in order.
    order.sort_by_key(|&i| std::cmp::Reverse(total * weights[i] % sum));
    let mut left = total - parts.iter().sum::<usize>();
    for &i in order.iter().cycle() {
        if left == 0 {
            break;
        }
        parts[i] += 1;
        left -= 1;
    }
    // No empty part while another has more than one.
    while let Some(empty) = parts.iter().position(|&p| p == 0) {
        let Some((largest, _)) = parts
            .iter()
            .enumerate()
            .filter(|(_, p)| **p > 1)
            .max_by_key(|(_, p)| **p)
        else {
            break;
        };
        parts[largest] -= 1;
        parts[empty] += 1;
    }
    parts
}

/// The real-world durations the scaled delays stand for.
pub mod real {
    use std::time::Duration;

    /// Launch to a Ready kubelet: VM boot, cloud-init, `kubeadm join`.
    pub const BOOT: Duration = Duration::from_secs(90);
    /// A pod from bound to Running and Ready (image cached).
    pub const POD_START: Duration = Duration::from_secs(5);
    /// The pods' `terminationGracePeriodSeconds` (the default): a drain
    /// takes this long when the pods use all of it.
    pub const DRAIN: Duration = Duration::from_secs(30);
    /// An instance from terminate request to terminated.
    pub const TERMINATE: Duration = Duration::from_secs(30);
    /// Kubelet lease renewal.
    pub const HEARTBEAT: Duration = Duration::from_secs(10);
    /// `--node-monitor-grace-period` (v1.32+).
    pub const NODE_MONITOR_GRACE: Duration = Duration::from_secs(50);
    /// The validation pause between nodes of one-at-a-time tools.
    pub const SEQUENTIAL_PAUSE: Duration = Duration::from_secs(15);
}

/// Floors that keep a loaded 2-core machine from missing heartbeats: a
/// node that goes NotReady for lack of CPU would measure the machine, not
/// the tool.
const MIN_HEARTBEAT: Duration = Duration::from_millis(500);
const MIN_NODE_MONITOR_GRACE: Duration = Duration::from_secs(5);

/// The world's delays, scaled from [`real`] by one factor. Seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delays {
    pub scale: f64,
    /// B: launch until the machine runs `kubeadm join`.
    pub boot: f64,
    pub pod_start: f64,
    /// D: the pods' grace period as the world plays it.
    pub drain: f64,
    /// T: terminate request until terminated.
    pub terminate: f64,
    pub heartbeat: f64,
    pub node_monitor_grace: f64,
    /// The sequential tools' 15 s validation pause, scaled.
    pub sequential_pause: f64,
    pub settle: f64,
}

impl Delays {
    pub fn scaled(scale: f64) -> Delays {
        let s = |d: Duration| round_ms(d.as_secs_f64() * scale);
        Delays {
            scale,
            boot: s(real::BOOT),
            pod_start: s(real::POD_START),
            drain: s(real::DRAIN),
            terminate: s(real::TERMINATE),
            heartbeat: s(real::HEARTBEAT).max(MIN_HEARTBEAT.as_secs_f64()),
            node_monitor_grace: s(real::NODE_MONITOR_GRACE)
                .max(MIN_NODE_MONITOR_GRACE.as_secs_f64()),
            sequential_pause: s(real::SEQUENTIAL_PAUSE),
            settle: SETTLE_SECONDS as f64,
        }
    }

    /// B + D + T: one slot at the physical limit.
    pub fn per_slot(&self) -> f64 {
        self.boot + self.drain + self.terminate
    }

    pub fn timing(&self) -> Timing {
        let d = Duration::from_secs_f64;
        Timing {
            boot: d(self.boot),
            pod_start: d(self.pod_start),
            pod_termination: d(self.drain),
            terminate: d(self.terminate),
            heartbeat: d(self.heartbeat),
            node_monitor_grace: d(self.node_monitor_grace),
            ..Timing::fast()
        }
    }
}

fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

/// The workloads every scenario carries besides kube-system's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSpec {
    /// Deployment pods per worker, on average.
    pub pods_per_node: usize,
    /// Replicas of each Deployment (each has a PDB allowing one
    /// disruption).
    pub replicas: usize,
}

impl WorkloadSpec {
    pub fn deployments(&self, workers: usize) -> usize {
        (workers * self.pods_per_node).div_ceil(self.replicas.max(1))
    }
}

/// Everything a scenario process needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScenarioSpec {
    pub shape: Shape,
    pub layout: Layout,
    pub delays: Delays,
    pub workload: WorkloadSpec,
    /// The `kubesurge` binary to run.
    pub kubesurge: PathBuf,
    /// Where the config files, the report and the tool's log go.
    pub workdir: PathBuf,
    /// The sequential reference run (S=1 on a sample).
    pub reference: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse_and_refuse_nonsense() {
        assert_eq!(
            "1000x100".parse::<Shape>(),
            Ok(Shape {
                nodes: 1000,
                surge: 100
            })
        );
        assert!("1000".parse::<Shape>().is_err());
        assert!("2x1".parse::<Shape>().is_err());
        assert!("10x0".parse::<Shape>().is_err());
        assert!("ax3".parse::<Shape>().is_err());
    }

    #[test]
    fn surge_splits_over_pools_and_workers_follow_it_so_waves_are_the_ideal() {
        for (text, waves) in [
            ("1000x100", 10),
            ("100x100", 1),
            ("100x10", 10),
            ("50x10", 5),
            ("1000x10", 100),
        ] {
            let shape: Shape = text.parse().unwrap();
            let layout = Layout::of(shape);
            assert!(!layout.sequential);
            assert_eq!(layout.workers(), shape.nodes, "{text}");
            assert_eq!(
                layout.pools.iter().map(|p| p.max_surge).sum::<usize>(),
                shape.surge
            );
            assert_eq!(layout.waves(), waves, "{text}");
            assert_eq!(layout.waves(), shape.nodes.div_ceil(shape.surge));
        }
        let l = Layout::of("1000x100".parse().unwrap());
        let sizes: Vec<(usize, usize)> = l.pools.iter().map(|p| (p.workers, p.max_surge)).collect();
        assert_eq!(sizes, vec![(340, 34), (330, 33), (330, 33)]);
    }

    #[test]
    fn a_surge_below_the_pool_count_rotates_pools_one_after_another() {
        let l = Layout::of("12x1".parse().unwrap());
        assert!(l.sequential);
        assert!(l.pools.iter().all(|p| p.max_surge == 1 && p.workers == 4));
        assert_eq!(l.waves(), 12);
        let l = Layout::of("100x1".parse().unwrap());
        assert_eq!(l.workers(), 100);
        assert_eq!(l.waves(), 100);
    }

    #[test]
    fn split_keeps_the_total_and_leaves_no_part_empty() {
        assert_eq!(split(10, &[1, 1, 1]), vec![4, 3, 3]);
        assert_eq!(split(3, &[34, 33, 33]), vec![1, 1, 1]);
        assert_eq!(split(5, &[10, 0, 0]), vec![3, 1, 1]);
        assert_eq!(split(0, &[1, 1]), vec![0, 0]);
    }

    #[test]
    fn delays_scale_the_real_ones_with_floors_for_heartbeats() {
        let d = Delays::scaled(0.1);
        assert_eq!(
            (d.boot, d.drain, d.terminate, d.sequential_pause),
            (9.0, 3.0, 3.0, 1.5)
        );
        assert_eq!(d.per_slot(), 15.0);
        assert_eq!(d.heartbeat, 1.0);
        let tiny = Delays::scaled(0.001);
        assert_eq!(tiny.heartbeat, 0.5);
        assert_eq!(tiny.node_monitor_grace, 5.0);
        assert_eq!(d.timing().pod_termination, Duration::from_secs(3));
    }
}
