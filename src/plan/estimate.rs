//! How long a rotation takes, roughly. The numbers are assumptions for a
//! typical cloud pool, stated here so the estimate can be judged; the
//! rotation engine does not use them (it waits on what it observes).

use super::types::Estimate;

/// Launch to Ready: the VM boots, runs `kubeadm join` and its kubelet
/// reports Ready (2–4 minutes on EC2 with an image that has the packages).
pub const BOOT_SECS: u64 = 3 * 60;
/// Drain of the old node: evictions through PDBs and the pods' graceful
/// termination (30 s default grace, replicas rescheduled one PDB step at a
/// time); 5 minutes for ordinary stateless workloads.
pub const DRAIN_SECS: u64 = 5 * 60;
/// Volume detach, instance termination and deletion of the Node object.
pub const TERMINATE_SECS: u64 = 60;
/// One slot: its new node boots, then the old node is drained, then
/// terminated, one after the other.
pub const SLOT_SECS: u64 = BOOT_SECS + DRAIN_SECS + TERMINATE_SECS;

/// Slots that run at once: `surge` (new nodes above the pool's size); with
/// no surge, `unavailable` (old nodes taken out before their replacement
/// exists). Never more than there are slots, never less than one.
pub fn parallel_slots(slots: u32, surge: u32, unavailable: u32) -> u32 {
    let budget = if surge > 0 { surge } else { unavailable };
    budget.min(slots).max(1)
}

/// The estimate for `slots` slots run `parallel_slots` at a time, in waves.
pub fn estimate(slots: u32, surge: u32, unavailable: u32) -> Estimate {
    if slots == 0 {
        return Estimate::default();
    }
    let parallel = parallel_slots(slots, surge, unavailable);
    let waves = slots.div_ceil(parallel);
    Estimate {
        slots,
        parallel_slots: parallel,
        waves,
        seconds: u64::from(waves) * SLOT_SECS,
    }
}

/// Several estimates run one after the other.
pub fn sum(estimates: impl IntoIterator<Item = Estimate>) -> Estimate {
    estimates
        .into_iter()
        .fold(Estimate::default(), |acc, e| Estimate {
            slots: acc.slots + e.slots,
            parallel_slots: acc.parallel_slots.max(e.parallel_slots),
            waves: acc.waves + e.waves,
            seconds: acc.seconds + e.seconds,
        })
}

/// `seconds` as `1h05m` / `27m`.
pub fn human(seconds: u64) -> String {
    let minutes = seconds.div_ceil(60);
    if minutes >= 60 {
        format!("{}h{:02}m", minutes / 60, minutes % 60)
    } else {
        format!("{minutes}m")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_run_surge_at_a_time_in_waves() {
        let e = estimate(10, 3, 0);
        assert_eq!((e.parallel_slots, e.waves), (3, 4));
        assert_eq!(e.seconds, 4 * SLOT_SECS);
        assert_eq!(SLOT_SECS, 9 * 60);
    }

    #[test]
    fn without_surge_unavailable_sets_the_pace() {
        assert_eq!(estimate(4, 0, 2).waves, 2);
        assert_eq!(estimate(2, 50, 0).parallel_slots, 2);
        assert_eq!(estimate(0, 1, 0), Estimate::default());
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(9 * 60), "9m");
        assert_eq!(human(65 * 60), "1h05m");
        assert_eq!(human(1), "1m");
    }
}
