//! What a run changes on an Auto Scaling group, and how it is undone:
//! pure decisions over the group as described, with the run's record kept
//! in tags on the group itself.
//!
//! The record is written before anything it describes is changed (one
//! `CreateOrUpdateTags` call), so a crash at any point leaves either
//! nothing changed or a record that says what to undo: a rerun of the same
//! run finds its own record and only completes it (the `MaxSize` it sets
//! is absolute, never raised twice); another run, `abort` or `gc` restores
//! from it.

use std::collections::{BTreeMap, BTreeSet};

/// Tag: the run that changed the group.
pub const RUN_TAG: &str = "kubesurge.io/group-run";
/// Tag: the group's `MaxSize` before the run.
pub const ORIGINAL_MAX_TAG: &str = "kubesurge.io/original-max-size";
/// Tag: the `MaxSize` the run set.
pub const RAISED_MAX_TAG: &str = "kubesurge.io/raised-max-size";
/// Tag: the processes the run suspended (comma-separated, possibly none);
/// processes suspended before the run are not in it and stay suspended.
pub const SUSPENDED_TAG: &str = "kubesurge.io/suspended-processes";

/// Every tag of the record.
pub const RECORD_TAGS: [&str; 4] = [RUN_TAG, ORIGINAL_MAX_TAG, RAISED_MAX_TAG, SUSPENDED_TAG];

/// The processes a run suspends, each because it would fight the run
/// ("Types of processes", Amazon EC2 Auto Scaling User Guide,
/// <https://docs.aws.amazon.com/autoscaling/ec2/userguide/as-suspend-resume-processes.html>):
///
/// - `AZRebalance`: a replacement attached in its old node's zone leaves
///   that zone one instance heavier until the old one goes; rebalancing
///   would terminate instances (perhaps a fresh replacement) without a
///   drain and launch others from the group's template.
/// - `ReplaceUnhealthy`: a replacement still joining, or an old node being
///   drained behind a load balancer, may fail ELB health checks; the group
///   would terminate it without a drain and launch from its own template.
/// - `InstanceRefresh`: a refresh started mid-run replaces instances on
///   its own, without a drain.
///
/// `Launch` and `Terminate` stay active: suspending them would stop the
/// cluster autoscaler's scale-outs and scale-ins for the whole run, and a
/// scale-in during the run is handled by the slot whose old instance it
/// took ("How suspended processes affect other processes",
/// <https://docs.aws.amazon.com/autoscaling/ec2/userguide/understand-how-suspending-processes-affects-other-processes.html>).
pub const RUN_PROCESSES: [&str; 3] = ["AZRebalance", "ReplaceUnhealthy", "InstanceRefresh"];

/// A group as the bookkeeping needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupState {
    pub name: String,
    pub min_size: i32,
    pub max_size: i32,
    pub desired: i32,
    pub suspended: BTreeSet<String>,
    pub tags: BTreeMap<String, String>,
}

/// What a run recorded on a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRecord {
    pub run_id: String,
    pub original_max: i32,
    pub raised_max: i32,
    pub suspended_by_run: BTreeSet<String>,
}

impl GroupRecord {
    /// The tags that hold it.
    pub fn tags(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (RUN_TAG.to_string(), self.run_id.clone()),
            (ORIGINAL_MAX_TAG.to_string(), self.original_max.to_string()),
            (RAISED_MAX_TAG.to_string(), self.raised_max.to_string()),
            (
                SUSPENDED_TAG.to_string(),
                self.suspended_by_run
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        ])
    }
}

/// The record in `tags`, `Ok(None)` without one, or what is wrong with it
/// (edited by hand: nothing is changed on a guess).
pub fn record_of(tags: &BTreeMap<String, String>) -> Result<Option<GroupRecord>, String> {
    let Some(run_id) = tags.get(RUN_TAG) else {
        return Ok(None);
    };
    let number = |key: &str| {
        tags.get(key)
            .and_then(|v| v.trim().parse::<i32>().ok())
            .ok_or_else(|| format!("tag {key} is missing or not a number"))
    };
    Ok(Some(GroupRecord {
        run_id: run_id.clone(),
        original_max: number(ORIGINAL_MAX_TAG)?,
        raised_max: number(RAISED_MAX_TAG)?,
        suspended_by_run: tags
            .get(SUSPENDED_TAG)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
    }))
}

/// One change to a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Write the record (before anything it describes).
    Record(GroupRecord),
    SetMaxSize(i32),
    Suspend(Vec<String>),
    Resume(Vec<String>),
    /// Delete the record's tags (last).
    DeleteRecord,
}

/// Why a group cannot be prepared or restored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The record was edited by hand.
    BadRecord(String),
    /// Another run's record: restore it first.
    OtherRun(String),
    /// More instances are in the group than its original `MaxSize` allows:
    /// the raised size stays (recorded) until they are gone.
    AboveOriginalMax { desired: i32, original_max: i32 },
}

/// The changes that get `group` ready for run `run_id` with `surge`
/// instances above its size, in order. Empty when it is ready.
pub fn prepare(group: &GroupState, run_id: &str, surge: u32) -> Result<Vec<Step>, Refusal> {
    let surge = i32::try_from(surge).unwrap_or(i32::MAX);
    let (record, mut steps) = match record_of(&group.tags).map_err(Refusal::BadRecord)? {
        Some(r) if r.run_id == run_id => (r, Vec::new()),
        Some(r) => return Err(Refusal::OtherRun(r.run_id)),
        None => {
            let record = GroupRecord {
                run_id: run_id.to_string(),
                original_max: group.max_size,
                raised_max: group.max_size.saturating_add(surge),
                suspended_by_run: RUN_PROCESSES
                    .iter()
                    .filter(|p| !group.suspended.contains(**p))
                    .map(|p| p.to_string())
                    .collect(),
            };
            (record.clone(), vec![Step::Record(record)])
        }
    };
    if group.max_size != record.raised_max {
        steps.push(Step::SetMaxSize(record.raised_max));
    }
    let to_suspend: Vec<String> = record
        .suspended_by_run
        .iter()
        .filter(|p| !group.suspended.contains(*p))
        .cloned()
        .collect();
    if !to_suspend.is_empty() {
        steps.push(Step::Suspend(to_suspend));
    }
    Ok(steps)
}

/// The changes that undo the record on `group`, in order; empty without
/// one.
pub fn restore(group: &GroupState) -> Result<Vec<Step>, Refusal> {
    let Some(record) = record_of(&group.tags).map_err(Refusal::BadRecord)? else {
        return Ok(Vec::new());
    };
    if group.desired > record.original_max {
        return Err(Refusal::AboveOriginalMax {
            desired: group.desired,
            original_max: record.original_max,
        });
    }
    let mut steps = Vec::new();
    if group.max_size != record.original_max {
        steps.push(Step::SetMaxSize(record.original_max));
    }
    let to_resume: Vec<String> = record
        .suspended_by_run
        .iter()
        .filter(|p| group.suspended.contains(*p))
        .cloned()
        .collect();
    if !to_resume.is_empty() {
        steps.push(Step::Resume(to_resume));
    }
    steps.push(Step::DeleteRecord);
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(max: i32, desired: i32, suspended: &[&str]) -> GroupState {
        GroupState {
            name: "workers".into(),
            min_size: 1,
            max_size: max,
            desired,
            suspended: suspended.iter().map(|p| p.to_string()).collect(),
            tags: BTreeMap::from([("team".to_string(), "a".to_string())]),
        }
    }

    /// `group` after `steps`, as the group would answer a describe.
    fn apply(mut group: GroupState, steps: &[Step]) -> GroupState {
        for step in steps {
            match step {
                Step::Record(r) => group.tags.extend(r.tags()),
                Step::SetMaxSize(n) => group.max_size = *n,
                Step::Suspend(p) => group.suspended.extend(p.iter().cloned()),
                Step::Resume(p) => {
                    for p in p {
                        group.suspended.remove(p);
                    }
                }
                Step::DeleteRecord => {
                    for key in RECORD_TAGS {
                        group.tags.remove(key);
                    }
                }
            }
        }
        group
    }

    #[test]
    fn a_run_records_first_then_raises_and_suspends_what_was_running() {
        let before = group(3, 3, &["ScheduledActions", "AZRebalance"]);
        let steps = prepare(&before, "run-1", 2).expect("prepared");
        let Step::Record(record) = &steps[0] else {
            panic!("the record comes first: {steps:?}");
        };
        assert_eq!(record.original_max, 3);
        assert_eq!(record.raised_max, 5);
        assert_eq!(
            steps[1..],
            [
                Step::SetMaxSize(5),
                Step::Suspend(vec!["InstanceRefresh".into(), "ReplaceUnhealthy".into()]),
            ]
        );
        let during = apply(before.clone(), &steps);
        assert_eq!(prepare(&during, "run-1", 2), Ok(Vec::new()), "ready");
        let after = apply(during.clone(), &restore(&during).expect("restorable"));
        assert_eq!(after, before, "exactly as before, already-suspended kept");
    }

    #[test]
    fn a_rerun_after_a_crash_at_any_step_completes_without_raising_twice() {
        let before = group(4, 4, &[]);
        let steps = prepare(&before, "run-1", 1).expect("prepared");
        for done in 1..=steps.len() {
            let crashed = apply(before.clone(), &steps[..done]);
            let rerun = prepare(&crashed, "run-1", 1).expect("rerun");
            let ready = apply(crashed.clone(), &rerun);
            assert_eq!(ready.max_size, 5, "after {done} step(s)");
            assert_eq!(ready.suspended.len(), RUN_PROCESSES.len());
            assert!(!rerun.iter().any(|s| matches!(s, Step::Record(_))));
            // And a restore from any crash point gives the group back.
            let restored = apply(crashed.clone(), &restore(&crashed).expect("restorable"));
            assert_eq!(restored, before, "restore after {done} step(s)");
        }
        // A crash in the middle of a restore: the rest is done by the next.
        let during = apply(before.clone(), &steps);
        let undo = restore(&during).expect("restorable");
        for done in 1..undo.len() {
            let crashed = apply(during.clone(), &undo[..done]);
            let again = apply(crashed.clone(), &restore(&crashed).expect("restorable"));
            assert_eq!(again, before, "restore crashed after {done} step(s)");
        }
    }

    #[test]
    fn another_runs_record_is_restored_first_and_a_group_too_big_keeps_its_size() {
        let during = apply(
            group(3, 3, &[]),
            &prepare(&group(3, 3, &[]), "run-1", 1).expect("prepared"),
        );
        assert_eq!(
            prepare(&during, "run-2", 1),
            Err(Refusal::OtherRun("run-1".into()))
        );
        let crowded = GroupState {
            desired: 4,
            ..during.clone()
        };
        assert_eq!(
            restore(&crowded),
            Err(Refusal::AboveOriginalMax {
                desired: 4,
                original_max: 3
            })
        );
        assert_eq!(restore(&group(3, 3, &[])), Ok(Vec::new()), "no record");
    }

    #[test]
    fn a_record_edited_by_hand_is_refused() {
        let mut g = group(3, 3, &[]);
        g.tags.insert(RUN_TAG.into(), "run-1".into());
        g.tags.insert(ORIGINAL_MAX_TAG.into(), "three".into());
        assert!(
            matches!(prepare(&g, "run-1", 1), Err(Refusal::BadRecord(m)) if m.contains(ORIGINAL_MAX_TAG))
        );
        assert!(matches!(restore(&g), Err(Refusal::BadRecord(_))));
    }
}
