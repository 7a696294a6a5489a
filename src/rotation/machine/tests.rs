//! The state machine over every phase × observation, and random sequences
//! of what the executors may find, checked against design §8.3.

use proptest::prelude::*;

use super::*;

fn old(ours: bool, phase: Option<Phase>, replaced_by: Option<&str>) -> Option<OldNode> {
    Some(OldNode {
        ours,
        phase,
        replaced_by: replaced_by.map(str::to_string),
        zone_known: true,
        instance_gone: false,
    })
}

fn state(old: Option<OldNode>, replacement: Replacement, drain: Drain) -> SlotState {
    SlotState {
        old,
        attempt: 1,
        first_attempt: 1,
        max_attempts: 3,
        replacement,
        drain,
        terminated: false,
    }
}

fn launched() -> Replacement {
    Replacement::Launched {
        instance: "i-new".into(),
    }
}

fn ready() -> Replacement {
    Replacement::Ready {
        node: "general-new".into(),
    }
}

fn given_up(registered: Option<&str>) -> Replacement {
    Replacement::GivenUp {
        instance: "i-new".into(),
        registered: registered.map(str::to_string),
        reason: "did not become Ready".into(),
    }
}

fn kinds(actions: &[Action]) -> Vec<&'static str> {
    actions.iter().map(Action::kind).collect()
}

#[test]
fn a_fresh_slot_launches_joins_checks_drains_terminates() {
    assert_eq!(
        kinds(&planned(&SlotState::fresh(true, 3))),
        [
            "launch",
            "await-join",
            "check-drain",
            "drain",
            "terminate",
            "finish"
        ]
    );
}

#[test]
fn every_recorded_phase_resumes_where_the_world_says() {
    use Drain::NotStarted;
    let none = Replacement::None;
    // (what the old node says, the replacement found, expected next action)
    let rows: Vec<(Option<OldNode>, Replacement, &str)> = vec![
        // Not ours: annotations of another run (or none) are not read.
        (old(false, None, None), none.clone(), "launch"),
        (
            old(false, Some(Phase::Terminating), Some("x")),
            none.clone(),
            "launch",
        ),
        (
            old(false, Some(Phase::Draining), Some("x")),
            none.clone(),
            "launch",
        ),
        // Ours, every phase, no replacement instance found.
        (
            old(true, Some(Phase::Pending), None),
            none.clone(),
            "launch",
        ),
        (
            old(true, Some(Phase::Launching), None),
            none.clone(),
            "launch",
        ),
        (
            old(true, Some(Phase::Joining), None),
            none.clone(),
            "launch",
        ),
        (
            old(true, Some(Phase::Draining), Some("n")),
            none.clone(),
            "check-drain",
        ),
        (
            old(true, Some(Phase::Terminating), Some("n")),
            none.clone(),
            "terminate",
        ),
        (
            old(true, Some(Phase::Skipped), Some("n")),
            none.clone(),
            "launch",
        ),
        (old(true, Some(Phase::Failed), None), none.clone(), "launch"),
        (
            old(true, Some(Phase::Done), Some("n")),
            none.clone(),
            "launch",
        ),
        // Ours, the attempt's instance found (adopted): wait for it.
        (
            old(true, Some(Phase::Launching), None),
            launched(),
            "await-join",
        ),
        (
            old(true, Some(Phase::Failed), None),
            launched(),
            "await-join",
        ),
        (
            old(true, Some(Phase::Skipped), Some("n")),
            launched(),
            "await-join",
        ),
        (
            old(true, Some(Phase::Draining), Some("n")),
            launched(),
            "check-drain",
        ),
        (
            old(true, Some(Phase::Terminating), Some("n")),
            launched(),
            "terminate",
        ),
        // The replacement proved Ready / gave up.
        (
            old(true, Some(Phase::Launching), None),
            ready(),
            "check-drain",
        ),
        (
            old(true, Some(Phase::Launching), None),
            given_up(None),
            "discard",
        ),
        (
            old(true, Some(Phase::Launching), None),
            given_up(Some("n")),
            "discard",
        ),
        // The old node is gone: replaced (by this or an earlier invocation).
        (None, none.clone(), "finish"),
        (None, launched(), "finish"),
        (None, ready(), "finish"),
    ];
    for (old, replacement, expected) in rows {
        let s = state(old, replacement, NotStarted);
        assert_eq!(next(&s).kind(), expected, "{s:?}");
    }
}

#[test]
fn the_drain_decides_once_it_ran() {
    let s = |drain| state(old(true, Some(Phase::Draining), Some("n")), ready(), drain);
    assert_eq!(
        next(&s(Drain::Checked)),
        Action::Drain {
            onto: "general-new".into()
        }
    );
    assert_eq!(next(&s(Drain::Done { forced: false })), Action::Terminate);
    assert_eq!(next(&s(Drain::Done { forced: true })), Action::Terminate);
    assert_eq!(
        next(&s(Drain::Skipped {
            reason: "blocked".into()
        })),
        Action::Finish(End::Skipped {
            reason: "blocked".into()
        })
    );
    // A resumed drain goes onto the node the crashed run recorded.
    let resumed = state(
        old(true, Some(Phase::Draining), Some("recorded")),
        Replacement::None,
        Drain::Checked,
    );
    assert_eq!(
        next(&resumed),
        Action::Drain {
            onto: "recorded".into()
        }
    );
}

#[test]
fn attempts_are_bounded_and_each_follows_a_discard() {
    let mut s = state(
        old(true, Some(Phase::Launching), None),
        Replacement::Discarded {
            reason: "never joined".into(),
        },
        Drain::NotStarted,
    );
    assert_eq!(next(&s), Action::Launch { attempt: 2 });
    s.attempt = 3;
    match next(&s) {
        Action::Fail { reason } => {
            assert!(
                reason.contains("no replacement joined after 3 attempts"),
                "{reason}"
            );
            assert!(reason.contains("never joined"), "{reason}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    // A rerun whose recorded attempt is past the bound still tries once.
    let past = SlotState {
        attempt: 5,
        ..state(
            old(true, Some(Phase::Launching), None),
            Replacement::None,
            Drain::NotStarted,
        )
    };
    assert_eq!(next(&past), Action::Launch { attempt: 5 });
}

#[test]
fn a_rerun_gets_the_whole_attempt_budget_from_where_it_starts() {
    // The previous invocation spent attempts 1 to 3 (a bad image, since
    // fixed); this one starts at 3, whose key is spent.
    let rerun = SlotState {
        attempt: 3,
        first_attempt: 3,
        ..state(
            old(true, Some(Phase::Failed), None),
            Replacement::Discarded {
                reason: "attempt 3's instance is gone".into(),
            },
            Drain::NotStarted,
        )
    };
    assert_eq!(rerun.attempts_made(), 1);
    assert_eq!(next(&rerun), Action::Launch { attempt: 4 });
    let spent = SlotState {
        attempt: 5,
        ..rerun.clone()
    };
    assert!(
        matches!(next(&spent), Action::Fail { .. }),
        "bounded per invocation"
    );
}

#[test]
fn states_no_run_produces_stop_with_a_reason() {
    let impossible = [
        // Terminated, yet the old Node is still there.
        SlotState {
            terminated: true,
            ..state(
                old(true, Some(Phase::Terminating), Some("n")),
                ready(),
                Drain::NotStarted,
            )
        },
        // Marked terminating without the replacement's name.
        state(
            old(true, Some(Phase::Terminating), None),
            Replacement::None,
            Drain::NotStarted,
        ),
        // A checked drain with nothing to drain onto.
        state(
            old(true, Some(Phase::Launching), None),
            launched(),
            Drain::Checked,
        ),
        // No zone to launch in.
        state(
            Some(OldNode {
                ours: false,
                phase: None,
                replaced_by: None,
                zone_known: false,
                instance_gone: false,
            }),
            Replacement::None,
            Drain::NotStarted,
        ),
    ];
    for s in impossible {
        match next(&s) {
            Action::Fail { reason } => assert!(!reason.is_empty()),
            other => panic!("{s:?} gave {other:?}"),
        }
    }
}

#[test]
fn the_dry_run_describes_each_mutation_and_never_a_token() {
    let d = Describe {
        pool: "general",
        old_node: "w-1",
        zone: Some("zone-a"),
        image: "img-1",
        target: "v1.34.2",
        token_ttl: std::time::Duration::from_secs(1200),
        drain_timeout: std::time::Duration::from_secs(900),
        on_timeout: "fail",
        old_instance: Some("i-old"),
    };
    let lines: Vec<String> = planned(&SlotState::fresh(true, 3))
        .iter()
        .filter_map(|a| d.line(a))
        .collect();
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert!(lines[0].starts_with("launch an instance for pool general in zone-a"));
    assert!(lines[0].contains("(ttl 20m)"), "{}", lines[0]);
    assert!(lines[3].contains("cordon it and evict its pods"));
    assert!(lines[3].contains("drain timeout 15m"), "{}", lines[3]);
    assert!(lines[4].contains("terminate the instance of w-1 (i-old)"));
}

// Random sequences: an initial state a world could hold, then for each
// action one of the outcomes its executor can report, or the world moving
// under the slot (the old Node deleted by someone else).

fn arb_phase() -> impl Strategy<Value = Option<Phase>> {
    prop_oneof![
        Just(None),
        proptest::sample::select(Phase::ALL.to_vec()).prop_map(Some)
    ]
}

fn arb_state() -> impl Strategy<Value = SlotState> {
    (
        any::<bool>(),
        arb_phase(),
        proptest::option::of(Just("recorded".to_string())),
        any::<bool>(),
        1u32..5,
        1u32..4,
        any::<bool>(),
    )
        .prop_map(
            |(ours, phase, replaced_by, zone_known, attempt, max, adopted)| SlotState {
                old: Some(OldNode {
                    ours,
                    phase,
                    replaced_by,
                    zone_known,
                    instance_gone: false,
                }),
                attempt,
                first_attempt: attempt,
                max_attempts: max,
                replacement: if adopted {
                    Replacement::Launched {
                        instance: "i-adopted".into(),
                    }
                } else {
                    Replacement::None
                },
                drain: Drain::NotStarted,
                terminated: false,
            },
        )
}

/// What an executor may report after `action`, chosen by `pick`.
fn outcome(state: &SlotState, action: &Action, pick: u8) -> SlotState {
    let mut s = state.clone();
    if pick.is_multiple_of(11) {
        // Someone else deleted the old Node.
        s.old = None;
        return s;
    }
    if pick.is_multiple_of(13)
        && let Some(old) = s.old.as_mut()
    {
        // A scale-in took the old instance.
        old.instance_gone = true;
        return s;
    }
    match action {
        Action::Launch { attempt } => {
            s.attempt = *attempt;
            s.replacement = Replacement::Launched {
                instance: format!("i-{attempt}"),
            };
        }
        Action::AwaitJoin { instance } => {
            s.replacement = match pick % 3 {
                0 => Replacement::Ready {
                    node: format!("n-{instance}"),
                },
                1 => Replacement::GivenUp {
                    instance: instance.clone(),
                    registered: None,
                    reason: "late".into(),
                },
                _ => Replacement::GivenUp {
                    instance: instance.clone(),
                    registered: Some(format!("n-{instance}")),
                    reason: "flapped".into(),
                },
            }
        }
        Action::Discard { .. } => {
            s.replacement = Replacement::Discarded {
                reason: "given up".into(),
            }
        }
        Action::CheckDrain => s.drain = Drain::Checked,
        Action::Drain { .. } => {
            s.drain = match pick % 3 {
                0 => Drain::Done { forced: false },
                1 => Drain::Done { forced: true },
                _ => Drain::Skipped {
                    reason: "timed out".into(),
                },
            }
        }
        Action::Terminate | Action::Forget => {
            s.terminated = true;
            s.old = None;
        }
        Action::Finish(_) | Action::Fail { .. } => {}
    }
    s
}

/// Design §8.3, as it applies to one decision.
fn check_safe(s: &SlotState, action: &Action, drained_before: bool) -> Result<(), String> {
    let recorded = s.old.as_ref().filter(|o| o.ours).and_then(|o| o.phase);
    let resumed =
        |phase| recorded == Some(phase) && s.old.as_ref().is_some_and(|o| o.replaced_by.is_some());
    if s.old.as_ref().is_some_and(|o| o.instance_gone)
        && matches!(
            action,
            Action::Launch { .. } | Action::Drain { .. } | Action::Terminate
        )
    {
        return Err(format!("{} for an instance that is gone", action.kind()));
    }
    match action {
        // 1: no worker terminated while a pod the drain should have
        // evicted may be on it.
        Action::Terminate
            if !(drained_before
                || matches!(s.drain, Drain::Done { .. })
                || resumed(Phase::Terminating)) =>
        {
            Err("terminate before the drain completed".into())
        }
        // 3: cordon only with a Ready replacement (or the one a crashed
        // run had, proven Ready then), and only after the check.
        Action::Drain { .. }
            if s.drain != Drain::Checked
                || !(matches!(s.replacement, Replacement::Ready { .. })
                    || resumed(Phase::Draining)) =>
        {
            Err("drain without a checked, Ready replacement".into())
        }
        // 4: one instance per attempt; a replacement is discarded before
        // another is launched; attempts are bounded.
        Action::Launch { attempt } => {
            if !matches!(
                s.replacement,
                Replacement::None | Replacement::Discarded { .. }
            ) {
                return Err(format!(
                    "launch with a live replacement {:?}",
                    s.replacement
                ));
            }
            if *attempt < s.attempt {
                return Err("launch went back to an earlier attempt".into());
            }
            if matches!(s.replacement, Replacement::Discarded { .. })
                && *attempt >= s.first_attempt + s.max_attempts
            {
                return Err("launch past the attempt bound".into());
            }
            Ok(())
        }
        // A Node is forgotten only once its instance is gone; nothing is
        // drained onto, launched beside or terminated for an instance that
        // is gone.
        Action::Forget if !s.old.as_ref().is_some_and(|o| o.instance_gone) => {
            Err("forget with the old instance still there".into())
        }
        Action::Discard { .. } if !matches!(s.replacement, Replacement::GivenUp { .. }) => {
            Err("discard of a replacement not given up".into())
        }
        Action::Finish(End::Replaced) if s.old.is_some() => {
            Err("finished with the old node there".into())
        }
        _ => Ok(()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_action_on_every_path_keeps_the_invariants(
        start in arb_state(),
        picks in proptest::collection::vec(any::<u8>(), 40),
    ) {
        let mut s = start;
        let mut drained = false;
        let mut launches = 0;
        let mut ended = false;
        for pick in picks {
            let action = next(&s);
            if let Err(problem) = check_safe(&s, &action, drained) {
                prop_assert!(false, "{problem}: {s:?} -> {action:?}");
            }
            if matches!(action, Action::Launch { .. }) {
                launches += 1;
            }
            if matches!(action, Action::Finish(_) | Action::Fail { .. }) {
                ended = true;
                break;
            }
            s = outcome(&s, &action, pick);
            drained |= matches!(s.drain, Drain::Done { .. });
        }
        // Bounded: never more launches than attempts allow (a rerun past
        // the bound tries once).
        prop_assert!(launches <= 4, "{launches} launches");
        // Every path ends within the steps a slot can take (each attempt
        // is launch, await, discard; then check, drain, terminate, finish).
        prop_assert!(ended, "the slot did not end: {s:?}");
    }

    #[test]
    fn the_dry_run_plan_of_any_observed_state_ends_and_is_safe(start in arb_state()) {
        let actions = planned(&start);
        let last = actions.last().cloned();
        prop_assert!(matches!(last, Some(Action::Finish(_) | Action::Fail { .. })), "{actions:?}");
        let mut s = start;
        for action in &actions {
            if let Err(problem) = check_safe(&s, action, false) {
                prop_assert!(false, "{problem}: {s:?} -> {action:?}");
            }
            s = assume_done(&s, action);
        }
    }
}

#[test]
fn a_scale_in_during_the_run_ends_the_slot_without_drain_or_terminate() {
    let gone = |phase: Option<Phase>| {
        old(phase.is_some(), phase, phase.map(|_| "general-new")).map(|o| OldNode {
            instance_gone: true,
            ..o
        })
    };
    // (phase recorded, replacement, drain, expected plan)
    let rows: Vec<(Option<Phase>, Replacement, Drain, Vec<&str>)> = vec![
        // Not started: nothing launched, the group shrank.
        (
            None,
            Replacement::None,
            Drain::NotStarted,
            vec!["forget", "finish"],
        ),
        // Joining: the replacement ends as a Ready node, then the Node goes.
        (
            Some(Phase::Launching),
            launched(),
            Drain::NotStarted,
            vec!["await-join", "forget", "finish"],
        ),
        // Given up: discarded as always, no next attempt.
        (
            Some(Phase::Joining),
            given_up(Some("general-new")),
            Drain::NotStarted,
            vec!["discard", "forget", "finish"],
        ),
        // Ready, checked, mid-drain, drained, terminating: no eviction from
        // a node that is gone, no termination of an instance that is gone.
        (
            Some(Phase::Joining),
            ready(),
            Drain::NotStarted,
            vec!["forget", "finish"],
        ),
        (
            Some(Phase::Joining),
            ready(),
            Drain::Checked,
            vec!["forget", "finish"],
        ),
        (
            Some(Phase::Draining),
            ready(),
            Drain::NotStarted,
            vec!["forget", "finish"],
        ),
        (
            Some(Phase::Draining),
            ready(),
            Drain::Done { forced: false },
            vec!["forget", "finish"],
        ),
        (
            Some(Phase::Terminating),
            Replacement::None,
            Drain::NotStarted,
            vec!["forget", "finish"],
        ),
    ];
    for (phase, replacement, drain, expected) in rows {
        let s = state(gone(phase), replacement.clone(), drain.clone());
        assert_eq!(
            kinds(&planned(&s)),
            expected,
            "{phase:?} / {replacement:?} / {drain:?}"
        );
        assert!(
            !planned(&s).iter().any(|a| matches!(
                a,
                Action::Drain { .. } | Action::Terminate | Action::Launch { .. }
            )),
            "{phase:?} / {replacement:?}"
        );
    }
}
