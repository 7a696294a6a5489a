//! A slot's state machine (design §8), pure: what the slot knows of the
//! world ([`SlotState`]) goes in, the next safe action ([`Action`]) comes
//! out. The executors in [`super::slot`] carry actions out and fold what
//! they find back into the state; the dry run feeds [`assume_done`] instead,
//! so it prints exactly the actions a real run takes.
//!
//! The shape is Cluster API's and brupop's: level-triggered, every decision
//! made from observed facts, never from where the code happens to be. A
//! rerun after a crash builds the state from the world (the old node's
//! annotations, the instances tagged for the slot) and continues.

use schemars::JsonSchema;
use serde::Serialize;

/// Where a slot is. Written on the old node as `kubesurge.io/phase`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    /// Selected, not started (the run record lists the node).
    Pending,
    Launching,
    Joining,
    Draining,
    Terminating,
    Done,
    Skipped,
    Failed,
}

impl Phase {
    pub const ALL: [Phase; 8] = [
        Phase::Pending,
        Phase::Launching,
        Phase::Joining,
        Phase::Draining,
        Phase::Terminating,
        Phase::Done,
        Phase::Skipped,
        Phase::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Launching => "launching",
            Phase::Joining => "joining",
            Phase::Draining => "draining",
            Phase::Terminating => "terminating",
            Phase::Done => "done",
            Phase::Skipped => "skipped",
            Phase::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// The old node as the API server has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OldNode {
    /// It carries this run's `kubesurge.io/run` annotation: the phase,
    /// attempt and replacement below were written by this run.
    pub ours: bool,
    /// `kubesurge.io/phase`, when ours.
    pub phase: Option<Phase>,
    /// `kubesurge.io/replaced-by`, when ours.
    pub replaced_by: Option<String>,
    /// Its zone is known (from its instance, else its zone label): a
    /// replacement can only be launched where the old node's volumes are.
    pub zone_known: bool,
    /// Its instance is terminated or terminating and this slot did not ask
    /// for it: a scale-in of its Auto Scaling group or a cluster autoscaler
    /// took it during the run (or, on a rerun, an earlier invocation's
    /// termination finished). Nothing is left to drain or terminate.
    pub instance_gone: bool,
}

/// The slot's replacement for the current attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Replacement {
    /// No instance for this attempt yet.
    None,
    /// An instance for this attempt exists (launched now or by an earlier
    /// invocation) and has not yet proved a Ready node at the target.
    Launched { instance: String },
    /// Its Node is Ready at the target, settled, and its DaemonSet pods
    /// are up: pods may be drained onto it.
    Ready { node: String },
    /// Past its deadline and not Ready on a fresh read; `registered` is the
    /// Node it did register, if any.
    GivenUp {
        instance: String,
        registered: Option<String>,
        reason: String,
    },
    /// Given up and removed (drained if it had a Node, terminated): the
    /// next attempt may start.
    Discarded { reason: String },
}

/// The old node's drain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Drain {
    NotStarted,
    /// Every pod it runs may be evicted under the pool's policies (checked
    /// before cordoning, so a refusal changes nothing).
    Checked,
    /// Every evictable pod is gone (`forced`: some were deleted past the
    /// timeout under `onTimeout: force`).
    Done {
        forced: bool,
    },
    /// Timed out under `onTimeout: skip`: uncordoned, serving on.
    Skipped {
        reason: String,
    },
}

/// What the slot knows: observed from the world at its start, then kept
/// current by its executors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotState {
    /// `None` once the old Node is gone.
    pub old: Option<OldNode>,
    /// The launch attempt the replacement belongs to (1-based; from the
    /// `kubesurge.io/attempt` annotation on a rerun).
    pub attempt: u32,
    /// The attempt this invocation started from: the attempts it may make
    /// count from here, so a rerun (after the image was fixed, say) gets
    /// the whole budget again rather than failing on the one it spent.
    pub first_attempt: u32,
    /// Launch attempts allowed in one invocation (a replacement that never
    /// joins is discarded and the next attempt launched, up to this).
    pub max_attempts: u32,
    pub replacement: Replacement,
    pub drain: Drain,
    /// The old instance is gone and its Node deleted.
    pub terminated: bool,
}

impl SlotState {
    /// The state of a slot whose old node was just selected.
    pub fn fresh(zone_known: bool, max_attempts: u32) -> SlotState {
        SlotState {
            old: Some(OldNode {
                ours: false,
                phase: None,
                replaced_by: None,
                zone_known,
                instance_gone: false,
            }),
            attempt: 1,
            first_attempt: 1,
            max_attempts,
            replacement: Replacement::None,
            drain: Drain::NotStarted,
            terminated: false,
        }
    }

    /// Attempts this invocation has made, the current one included.
    pub fn attempts_made(&self) -> u32 {
        self.attempt.saturating_sub(self.first_attempt) + 1
    }

    /// The phase a run that crashed left on the old node, if it was this
    /// run's.
    fn recorded_phase(&self) -> Option<Phase> {
        self.old.as_ref().filter(|o| o.ours).and_then(|o| o.phase)
    }
}

/// How a slot ends well.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// The old node is gone (now, or by an earlier invocation).
    Replaced,
    /// The drain timed out under `onTimeout: skip`; the old node serves on.
    Skipped { reason: String },
}

/// The next thing a slot does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Mint the slot's bootstrap token and launch its replacement for
    /// `attempt` in the old node's zone (or adopt the instance an earlier
    /// invocation launched for that attempt).
    Launch { attempt: u32 },
    /// Wait until the replacement is a Ready node at the target, or give it
    /// up at its deadline on a fresh read.
    AwaitJoin { instance: String },
    /// Drain a replacement that never became Ready (if it registered a
    /// Node), terminate it, and delete its Node.
    Discard {
        instance: String,
        registered: Option<String>,
    },
    /// Check that every pod on the old node may be evicted; read-only.
    CheckDrain,
    /// Label the old node out of load balancers, cordon it, evict its pods
    /// onto the replacement.
    Drain { onto: String },
    /// Wait for the old node's volumes to detach, terminate its instance
    /// until the provider reports it gone, delete its Node.
    Terminate,
    /// The old node's instance is already gone (a scale-in during the run):
    /// delete its Node; nothing to drain, wait for or terminate.
    Forget,
    /// The slot is over.
    Finish(End),
    /// Stop the slot: nothing further is safe. The cluster is left as it
    /// is (an old node not yet drained stays schedulable).
    Fail { reason: String },
}

impl Action {
    /// The phase the slot is in while this action runs.
    pub fn phase(&self) -> Phase {
        match self {
            Action::Launch { .. } => Phase::Launching,
            Action::AwaitJoin { .. } | Action::Discard { .. } | Action::CheckDrain => {
                Phase::Joining
            }
            Action::Drain { .. } => Phase::Draining,
            Action::Terminate | Action::Forget => Phase::Terminating,
            Action::Finish(End::Replaced) => Phase::Done,
            Action::Finish(End::Skipped { .. }) => Phase::Skipped,
            Action::Fail { .. } => Phase::Failed,
        }
    }

    /// A short, stable name (reports, tests).
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Launch { .. } => "launch",
            Action::AwaitJoin { .. } => "await-join",
            Action::Discard { .. } => "discard",
            Action::CheckDrain => "check-drain",
            Action::Drain { .. } => "drain",
            Action::Terminate => "terminate",
            Action::Forget => "forget",
            Action::Finish(End::Replaced) => "finish",
            Action::Finish(End::Skipped { .. }) => "skip",
            Action::Fail { .. } => "fail",
        }
    }

    /// True for actions that change the world (cluster or cloud).
    pub fn mutates(&self) -> bool {
        matches!(
            self,
            Action::Launch { .. }
                | Action::Discard { .. }
                | Action::Drain { .. }
                | Action::Terminate
                | Action::Forget
        )
    }
}

/// The next safe action for a slot in `state`. Total: every state yields
/// an action, and a state no run can produce yields [`Action::Fail`] with
/// the reason, never a guess.
pub fn next(state: &SlotState) -> Action {
    let Some(old) = &state.old else {
        // The old node is gone: this invocation terminated it, or an
        // earlier one did.
        return Action::Finish(End::Replaced);
    };
    if state.terminated {
        return Action::Fail {
            reason: "the old instance was terminated but its Node is still there".into(),
        };
    }
    if old.instance_gone {
        // A scale-in took the old instance: its pods are gone with it, so
        // there is nothing to drain and no instance to terminate. A
        // replacement already launched ends as a Ready node or discarded
        // (§8.3 (4)); none is launched any more: the group shrank.
        return match &state.replacement {
            Replacement::Launched { instance } => Action::AwaitJoin {
                instance: instance.clone(),
            },
            Replacement::GivenUp {
                instance,
                registered,
                ..
            } => Action::Discard {
                instance: instance.clone(),
                registered: registered.clone(),
            },
            _ => Action::Forget,
        };
    }
    match &state.drain {
        Drain::Done { .. } => return Action::Terminate,
        Drain::Skipped { reason } => {
            return Action::Finish(End::Skipped {
                reason: reason.clone(),
            });
        }
        Drain::Checked => {
            return match drain_target(state, old) {
                Some(onto) => Action::Drain { onto },
                None => Action::Fail {
                    reason: "the drain was checked without a Ready replacement".into(),
                },
            };
        }
        Drain::NotStarted => {}
    }
    // A run that crashed while draining or terminating left the
    // replacement's name on the node: continue from there.
    match state.recorded_phase() {
        Some(Phase::Terminating) => {
            return match &old.replaced_by {
                Some(_) => Action::Terminate,
                None => Action::Fail {
                    reason: "the node is marked terminating but names no replacement; \
                             check it and remove its kubesurge.io annotations to start the slot again"
                        .into(),
                },
            };
        }
        Some(Phase::Draining) if old.replaced_by.is_some() => return Action::CheckDrain,
        _ => {}
    }
    match &state.replacement {
        Replacement::Ready { .. } => Action::CheckDrain,
        Replacement::Launched { instance } => Action::AwaitJoin {
            instance: instance.clone(),
        },
        Replacement::GivenUp {
            instance,
            registered,
            ..
        } => Action::Discard {
            instance: instance.clone(),
            registered: registered.clone(),
        },
        Replacement::Discarded { reason } => {
            if state.attempts_made() >= state.max_attempts {
                Action::Fail {
                    reason: format!(
                        "no replacement joined after {} attempts; {reason}",
                        state.max_attempts
                    ),
                }
            } else {
                launch(old, state.attempt + 1)
            }
        }
        Replacement::None => launch(old, state.attempt),
    }
}

fn launch(old: &OldNode, attempt: u32) -> Action {
    if old.zone_known {
        Action::Launch { attempt }
    } else {
        Action::Fail {
            reason: format!(
                "cannot tell the zone of the node: no instance found and no {} label",
                crate::kube::nodes::ZONE_LABEL
            ),
        }
    }
}

/// The node pods are drained onto: the Ready replacement, else the one a
/// crashed invocation recorded on the old node.
fn drain_target(state: &SlotState, old: &OldNode) -> Option<String> {
    match &state.replacement {
        Replacement::Ready { node } => Some(node.clone()),
        _ if state.recorded_phase() == Some(Phase::Draining) => old.replaced_by.clone(),
        _ => None,
    }
}

/// The state after `action` succeeds as planned: what the dry run assumes
/// at each step. `instance` and `node` name a launched replacement.
pub fn assume_done(state: &SlotState, action: &Action) -> SlotState {
    let mut next = state.clone();
    match action {
        Action::Launch { attempt } => {
            next.attempt = *attempt;
            next.replacement = Replacement::Launched {
                instance: "(new instance)".into(),
            };
        }
        Action::AwaitJoin { .. } => {
            next.replacement = Replacement::Ready {
                node: "(new node)".into(),
            };
        }
        Action::Discard { .. } => {
            next.replacement = Replacement::Discarded {
                reason: "discarded".into(),
            };
        }
        Action::CheckDrain => next.drain = Drain::Checked,
        Action::Drain { .. } => next.drain = Drain::Done { forced: false },
        Action::Terminate | Action::Forget => {
            next.terminated = true;
            next.old = None;
        }
        Action::Finish(_) | Action::Fail { .. } => {}
    }
    next
}

/// The actions a slot in `state` takes when every one succeeds, ending
/// with its [`Action::Finish`] or [`Action::Fail`]. Bounded: a machine
/// that looped would be a bug, reported as a failure.
pub fn planned(state: &SlotState) -> Vec<Action> {
    let mut state = state.clone();
    let mut actions = Vec::new();
    for _ in 0..32 {
        let action = next(&state);
        let last = matches!(action, Action::Finish(_) | Action::Fail { .. });
        state = assume_done(&state, &action);
        actions.push(action);
        if last {
            return actions;
        }
    }
    actions.push(Action::Fail {
        reason: "the slot's plan does not end".into(),
    });
    actions
}

/// What the dry run shows for an action.
pub struct Describe<'a> {
    pub pool: &'a str,
    pub old_node: &'a str,
    pub zone: Option<&'a str>,
    pub image: &'a str,
    pub target: &'a str,
    pub token_ttl: std::time::Duration,
    pub drain_timeout: std::time::Duration,
    pub on_timeout: &'a str,
    pub old_instance: Option<&'a str>,
}

impl Describe<'_> {
    /// One line per action; `None` for the end of a slot that ends well.
    pub fn line(&self, action: &Action) -> Option<String> {
        let old = self.old_node;
        Some(match action {
            Action::Launch { attempt } => format!(
                "launch an instance for pool {} in {} from image {} at {} to replace {old} \
                 (attempt {attempt}), joining with a new bootstrap token Secret in kube-system (ttl {})",
                self.pool,
                self.zone.unwrap_or("its zone"),
                self.image,
                self.target,
                crate::duration::HumanDuration(self.token_ttl)
            ),
            Action::AwaitJoin { .. } => format!(
                "wait until the replacement of {old} is a Ready node at {}, then delete its bootstrap token",
                self.target
            ),
            Action::Discard { instance, .. } => {
                format!("drain and terminate replacement {instance}, which did not become Ready")
            }
            Action::CheckDrain => format!("check that every pod on {old} may be evicted"),
            Action::Drain { .. } => format!(
                "label {old} {}, cordon it and evict its pods (drain timeout {}, on timeout {})",
                crate::kube::nodes::EXCLUDE_LB_LABEL,
                crate::duration::HumanDuration(self.drain_timeout),
                self.on_timeout
            ),
            Action::Terminate => format!(
                "terminate the instance of {old}{} and delete its Node",
                self.old_instance
                    .map(|i| format!(" ({i})"))
                    .unwrap_or_default()
            ),
            Action::Forget => {
                format!("delete the Node of {old}, whose instance is already gone (a scale-in)")
            }
            Action::Finish(End::Replaced) => return None,
            Action::Finish(End::Skipped { reason }) => format!("leave {old} serving: {reason}"),
            Action::Fail { reason } => format!("stop: {old}: {reason}"),
        })
    }
}

#[cfg(test)]
mod tests;
