//! What a process costs: CPU time and peak memory of the tool (the waited
//! children of the launcher, from `getrusage(RUSAGE_CHILDREN)`) and of the
//! world (the scenario process, from `getrusage(RUSAGE_SELF)` and
//! `/proc/self/status`).

use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::time::TimeVal;
use serde::{Deserialize, Serialize};

/// CPU and peak memory, as the kernel accounts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub user_s: f64,
    pub sys_s: f64,
    /// Peak resident set size, KiB.
    pub max_rss_kib: u64,
}

impl Usage {
    pub fn cpu_s(&self) -> f64 {
        self.user_s + self.sys_s
    }

    /// CPU spent between `earlier` and this snapshot; the peak is this
    /// snapshot's (peaks do not subtract).
    pub fn since(&self, earlier: &Usage) -> Usage {
        Usage {
            user_s: (self.user_s - earlier.user_s).max(0.0),
            sys_s: (self.sys_s - earlier.sys_s).max(0.0),
            max_rss_kib: self.max_rss_kib,
        }
    }
}

fn seconds(t: TimeVal) -> f64 {
    t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6
}

fn usage(who: UsageWho) -> std::io::Result<Usage> {
    let u = getrusage(who).map_err(std::io::Error::from)?;
    Ok(Usage {
        user_s: seconds(u.user_time()),
        sys_s: seconds(u.system_time()),
        // Linux reports KiB.
        max_rss_kib: u64::try_from(u.max_rss()).unwrap_or(0),
    })
}

/// Every child this process has waited for: the peak is the largest
/// child's, the CPU their sum. The launcher waits for no other child than
/// `kubesurge`.
pub fn children() -> std::io::Result<Usage> {
    usage(UsageWho::RUSAGE_CHILDREN)
}

/// This process (the world).
pub fn this_process() -> std::io::Result<Usage> {
    usage(UsageWho::RUSAGE_SELF)
}

/// A `kB` field of `/proc/self/status` (`VmRSS`, `VmHWM`).
pub fn status_kib(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_kib(&text, field)
}

fn parse_status_kib(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// The resident memory of `root` and all its descendants now, KiB: the
/// whole process tree (a tool's `kubectl` children included), which
/// `getrusage` cannot give (its `maxrss` is the largest single process).
pub fn tree_rss_kib(root: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let parents: Vec<(u32, u32)> = entries
        .filter_map(|e| {
            let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some((pid, parent_in_stat(&stat)?))
        })
        .collect();
    descendants(root, &parents)
        .into_iter()
        .filter_map(|pid| {
            let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            parse_status_kib(&text, "VmRSS")
        })
        .sum()
}

/// The parent pid in a `/proc/<pid>/stat` line: the field after the state,
/// which follows the command name in parentheses (which may hold spaces).
fn parent_in_stat(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// `root` and every process whose chain of parents reaches it.
fn descendants(root: u32, parents: &[(u32, u32)]) -> Vec<u32> {
    let mut tree = vec![root];
    let mut next = 0;
    while next < tree.len() {
        let parent = tree[next];
        tree.extend(
            parents
                .iter()
                .filter(|(pid, ppid)| *ppid == parent && *pid != parent)
                .map(|(pid, _)| *pid),
        );
        next += 1;
    }
    tree
}

/// The 1-minute load average, to show how shared the machine was.
pub fn load_average() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_read_in_kib() {
        let text = "Name:\tx\nVmHWM:\t  123456 kB\nVmRSS:\t  1000 kB\n";
        assert_eq!(parse_status_kib(text, "VmHWM"), Some(123_456));
        assert_eq!(parse_status_kib(text, "VmRSS"), Some(1000));
        assert_eq!(parse_status_kib(text, "VmSwap"), None);
    }

    #[test]
    fn a_process_tree_is_its_root_and_the_descendants_of_it() {
        assert_eq!(parent_in_stat("42 (kube ctl) S 7 42 42 0"), Some(7));
        assert_eq!(parent_in_stat("garbage"), None);
        let parents = [(2, 1), (3, 2), (4, 3), (5, 1), (6, 9)];
        let mut tree = descendants(2, &parents);
        tree.sort();
        assert_eq!(tree, [2, 3, 4]);
    }

    #[test]
    fn this_process_tree_has_memory() {
        assert!(tree_rss_kib(std::process::id()) > 0);
    }

    #[test]
    fn cpu_differences_keep_the_later_peak() {
        let a = Usage {
            user_s: 1.0,
            sys_s: 0.5,
            max_rss_kib: 10,
        };
        let b = Usage {
            user_s: 3.0,
            sys_s: 1.0,
            max_rss_kib: 20,
        };
        let d = b.since(&a);
        assert_eq!((d.user_s, d.sys_s, d.max_rss_kib), (2.0, 0.5, 20));
        assert_eq!(d.cpu_s(), 2.5);
    }

    #[test]
    fn this_process_has_spent_some_cpu_and_memory() {
        let me = this_process().unwrap();
        assert!(me.max_rss_kib > 0);
        assert!(status_kib("VmRSS").unwrap_or(0) > 0);
    }
}
