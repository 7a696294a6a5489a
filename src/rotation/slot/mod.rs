//! One slot: the replacement of one old worker (design §8), driven by the
//! pure state machine in [`super::machine`].
//!
//! [`observe`] builds the slot's state from the world (annotations on the
//! old node, instances tagged for the slot), [`super::machine::next`]
//! decides, one executor per action acts and folds what it found back into
//! the state, and the loop repeats. The old node's phase annotation is
//! written in one place, [`mark`], as each action starts. A rerun after a
//! crash anywhere observes again and continues; the provider's launch is
//! idempotent on the slot key, so no second instance is ever started for
//! the same attempt.

mod drain;
mod join;
mod terminate;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::Client;
use kubesurge_provider::{Image, Instance, ProviderError, SlotKey, tags};
use tokio::time::Instant;
use tracing::Instrument;

use super::annotations as ann;
use super::config::{EngineConfig, PoolConfig};
use super::deadlines::Deadlines;
use super::machine::{self, Action, Drain, End, OldNode, Replacement, SlotState};
use super::pool_instances::PoolInstances;
use super::progress::Progress;
use super::report::{SlotOutcome, SlotReport};
use super::watched;
use crate::kube::cache::WatchCache;
use crate::kube::drain::StreamingLists;
use crate::kube::events::Recorder;
use crate::kube::join::ClusterInfo;
use crate::kube::nodes::{self, NodeOps};
use crate::version::KubeVersion;

pub use super::machine::Phase;

/// What every slot of a run shares.
pub struct RunContext {
    pub run_id: String,
    pub target: KubeVersion,
    pub config: Arc<EngineConfig>,
    pub deadlines: Deadlines,
    pub client: Client,
    /// A client without kube's own 429 retries: a PDB's 429 must reach
    /// the drain.
    pub drain_client: Client,
    /// Whether the API server refused a drain's streaming list.
    pub streaming_lists: StreamingLists,
    pub nodes: WatchCache<Node>,
    /// The kube-system pods: the health gate's and the replacements'
    /// DaemonSet pods.
    pub kube_system: WatchCache<Pod>,
    /// The VolumeAttachments, by node: a slot terminates its old node
    /// once none is attached there.
    pub volume_attachments: WatchCache<VolumeAttachment>,
    pub node_ops: NodeOps,
    pub recorder: Recorder,
    pub progress: Arc<dyn Progress>,
    pub cluster_info: ClusterInfo,
    /// Instance ids of replacements this run terminated because they never
    /// became Ready. A machine can still register its Node while it shuts
    /// down; such Nodes are deleted on sight (see [`sweep_discarded`]) and
    /// never hold the health gate.
    pub discarded: Arc<Mutex<BTreeSet<String>>>,
    /// Reads the instance id from a Node's providerID, in every form the
    /// pools' providers know; also the key of the node cache's index.
    pub instance_id: InstanceIdOf,
}

/// The instance id a Node's providerID names, by the first of the pools'
/// providers that recognises its form.
#[derive(Clone)]
pub struct InstanceIdOf(pub Vec<fn(&str) -> Option<&str>>);

impl InstanceIdOf {
    pub fn of(&self, node: &Node) -> Option<String> {
        let provider_id = nodes::provider_id(node).filter(|p| !p.is_empty())?;
        self.0
            .iter()
            .find_map(|parse| parse(provider_id))
            .map(str::to_string)
    }
}

impl RunContext {
    /// True when `node` belongs to a replacement this run gave up on.
    pub fn is_discarded(&self, node: &Node) -> bool {
        self.instance_id.of(node).is_some_and(|id| {
            self.discarded
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&id)
        })
    }

    /// True when `node` is the Node of `instance`: its providerID names the
    /// instance (in any form), or — while it has no providerID yet, as
    /// before a cloud controller sets it — it carries the name the slot
    /// gave the machine. A Node whose providerID names another instance is
    /// never taken for this one by its name.
    pub fn is_node_of(&self, node: &Node, instance: &Instance) -> bool {
        match nodes::provider_id(node).filter(|p| !p.is_empty()) {
            Some(_) => self.instance_id.of(node).as_deref() == Some(instance.id.0.as_str()),
            None => instance
                .tag(tags::NAME)
                .is_some_and(|name| name == nodes::name(node)),
        }
    }

    /// The Node of `instance` in the watch cache (see [`Self::is_node_of`]).
    /// Should two Nodes name the instance (its kubelet registered again
    /// under another name), the one created last is its live registration.
    pub fn cached_node_of(
        &self,
        cache: &WatchCache<Node>,
        instance: &Instance,
    ) -> Option<Arc<Node>> {
        let candidates = cache
            .by_key(watched::INSTANCE_ID, &instance.id.0)
            .into_iter()
            .chain(instance.tag(tags::NAME).and_then(|name| cache.get(name)))
            .filter(|node| self.is_node_of(node, instance));
        live_registration(candidates)
    }
}

/// Of the Nodes one instance registered, the one created last.
fn live_registration(nodes: impl Iterator<Item = Arc<Node>>) -> Option<Arc<Node>> {
    nodes.max_by_key(|node| node.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Delete, as they appear, the Nodes of replacements the run terminated:
/// no cloud controller does it in a kubeadm cluster, and a NotReady node
/// left behind would hold every health gate. Runs until aborted.
pub async fn sweep_discarded(
    nodes_cache: WatchCache<Node>,
    node_ops: NodeOps,
    discarded: Arc<Mutex<BTreeSet<String>>>,
) {
    loop {
        let ghosts: Vec<(String, Option<String>)> = {
            let discarded = discarded.lock().unwrap_or_else(|e| e.into_inner());
            discarded
                .iter()
                .flat_map(|instance_id| nodes_cache.by_key(watched::INSTANCE_ID, instance_id))
                .map(|n| (nodes::name(&n).to_string(), n.metadata.uid.clone()))
                .collect()
        };
        for (name, uid) in ghosts {
            tracing::warn!(
                node = %name,
                "deleting the Node of a replacement that was terminated because it never became Ready"
            );
            if let Err(e) = node_ops.delete(&name, uid.as_deref()).await {
                tracing::warn!(node = %name, error = %e, "could not delete the Node");
            }
        }
        nodes_cache
            .next_change(Instant::now() + Duration::from_secs(3600))
            .await;
    }
}

/// One slot's inputs.
pub struct SlotInput {
    pub pool: Arc<PoolConfig>,
    pub image: Image,
    pub old_node: String,
    /// The old node's instance, mapped before the run started (`None`: it
    /// was terminated by an earlier invocation).
    pub old_instance: Option<Instance>,
    /// Live replacements of the old node launched earlier: by this run (a
    /// rerun adopts the one of its attempt instead of launching) or by a run
    /// that never finished.
    pub adopted: Vec<Instance>,
    /// The pool's instances, described in batches for all its slots.
    pub instances: Arc<PoolInstances>,
}

/// Why a slot failed, in the user's terms.
#[derive(Debug, thiserror::Error)]
enum SlotError {
    #[error("{0}")]
    Failed(String),
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("provider: {0}")]
    Provider(#[from] ProviderError),
}

impl From<crate::rotation::instances::DeleteError> for SlotError {
    fn from(e: crate::rotation::instances::DeleteError) -> Self {
        use crate::rotation::instances::DeleteError;
        match e {
            DeleteError::Provider(source) => SlotError::Provider(source),
            timeout @ DeleteError::Timeout { .. } => SlotError::Failed(timeout.to_string()),
        }
    }
}

/// A slot's result: its report, and whether the failure must stop the
/// whole run at once (a missing permission affects every slot).
pub struct SlotResult {
    pub report: SlotReport,
    pub fatal: bool,
}

/// The slot's state as observed from the world, with the facts the
/// executors need beside it.
pub struct Observed {
    pub state: SlotState,
    /// The old node's instance, when the provider knows it.
    pub old_instance: Option<Instance>,
    /// The zone replacements launch in: the old instance's, else the old
    /// node's zone label.
    pub zone: Option<String>,
}

/// Observe a slot from the world: the old node (from the watch cache), its
/// annotations if this run wrote them, its instance, and the instance an
/// earlier invocation launched for the current attempt. Read-only.
pub fn observe(
    nodes_cache: &WatchCache<Node>,
    run_id: &str,
    max_attempts: u32,
    input: &SlotInput,
) -> Observed {
    let Some(old) = nodes_cache.get(&input.old_node) else {
        return Observed {
            state: SlotState {
                old: None,
                ..SlotState::fresh(false, max_attempts)
            },
            old_instance: None,
            zone: None,
        };
    };
    let ours = nodes::annotation(&old, ann::RUN) == Some(run_id);
    let recorded = |key| {
        if ours {
            nodes::annotation(&old, key)
        } else {
            None
        }
    };
    let old_instance = input.old_instance.clone();
    let zone = old_instance
        .as_ref()
        .map(|i| i.zone.clone())
        .or_else(|| nodes::label(&old, nodes::ZONE_LABEL).map(str::to_string));
    let attempt: u32 = recorded(ann::ATTEMPT)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    let key = SlotKey {
        run_id: run_id.to_string(),
        old_node: input.old_node.clone(),
        attempt,
    };
    let replacement = match adopted_for(input, &key).or_else(|| left_by_another_run(input, run_id))
    {
        Some(instance) => Replacement::Launched {
            instance: instance.id.0.clone(),
        },
        None => Replacement::None,
    };
    Observed {
        state: SlotState {
            old: Some(OldNode {
                ours,
                phase: recorded(ann::PHASE).and_then(Phase::parse),
                replaced_by: recorded(ann::REPLACED_BY).map(str::to_string),
                zone_known: zone.is_some(),
                instance_gone: false,
            }),
            attempt,
            first_attempt: attempt,
            max_attempts,
            replacement,
            drain: Drain::NotStarted,
            terminated: false,
        },
        old_instance,
        zone,
    }
}

/// The instance an earlier invocation launched for `key`, still running.
fn adopted_for<'a>(input: &'a SlotInput, key: &SlotKey) -> Option<&'a Instance> {
    input
        .adopted
        .iter()
        .find(|i| i.tag(tags::SLOT) == Some(key.tag_value().as_str()) && !i.state.is_going_away())
}

/// A live replacement of the old node launched by an earlier run that
/// never finished (crashed, then abandoned with `kubesurge abort`): it is
/// adopted rather than left serving as a surplus node for ever. The newest
/// one when there are several.
fn left_by_another_run<'a>(input: &'a SlotInput, run_id: &str) -> Option<&'a Instance> {
    input
        .adopted
        .iter()
        .filter(|i| {
            i.tag(tags::RUN).is_some_and(|run| run != run_id)
                && i.tag(tags::REPLACES) == Some(input.old_node.as_str())
                && !i.state.is_going_away()
        })
        .max_by_key(|i| i.launched_at)
}

/// Drive one slot to its end. Its log events carry the run, the pool and
/// the old node (fields of the `slot` span), however many slots run at
/// once.
pub async fn run_slot(ctx: &RunContext, input: SlotInput) -> SlotResult {
    let span = tracing::info_span!(
        "slot",
        run_id = %ctx.run_id,
        pool = %input.pool.name,
        old_node = %input.old_node,
    );
    run_slot_to_end(ctx, input).instrument(span).await
}

async fn run_slot_to_end(ctx: &RunContext, input: SlotInput) -> SlotResult {
    let mut report = SlotReport::not_started(&input.pool.name, &input.old_node);
    let result = drive(ctx, &input, &mut report).await;
    let fatal = matches!(
        result,
        Err(SlotError::Provider(ProviderError::Unauthorized { .. }))
    );
    match result {
        Ok(outcome) => report.outcome = outcome,
        Err(e) => {
            let reason = format!("{}: {e}", input.old_node);
            ctx.progress
                .phase(&input.pool.name, &input.old_node, Phase::Failed, &reason);
            let fail = Action::Fail {
                reason: reason.clone(),
            };
            report.actions.push(fail.kind().to_string());
            // Best effort: the node may be gone, the API server down.
            let _ = mark(ctx, &input, &fail, None, None).await;
            report.outcome = SlotOutcome::Failed { reason };
        }
    }
    SlotResult { report, fatal }
}

/// Observe, then act until the machine says the slot is over.
async fn drive(
    ctx: &RunContext,
    input: &SlotInput,
    report: &mut SlotReport,
) -> Result<SlotOutcome, SlotError> {
    let observed = observe(
        &ctx.nodes,
        &ctx.run_id,
        ctx.config.max_launch_attempts,
        input,
    );
    report.old_instance = observed.old_instance.as_ref().map(|i| i.id.0.clone());
    report.zone = observed.zone.clone();
    let old = ctx.nodes.get(&input.old_node);
    let mut slot = Executor {
        ctx,
        input,
        old: old.clone(),
        old_instance: observed.old_instance,
        zone: observed.zone,
        // A drain's deadline counts from its start in this invocation: a
        // rerun that resumes a drain later than `drain.timeout` after a
        // crash gets the whole timeout again, as a first drain would.
        drain_started: None,
        replacements: input
            .adopted
            .iter()
            .map(|i| (i.id.0.clone(), i.clone()))
            .collect(),
        launched_at: None,
        given_up_node: None,
        old_instance_seen: None,
        checked_for_drain: false,
        tokens: join::SlotTokens::at_start(old.as_deref(), input.adopted.len()),
    };
    let mut state = observed.state;
    loop {
        let mut action = machine::next(&state);
        if slot.old_instance_gone(&action, &mut state).await? {
            action = machine::next(&state);
        }
        report.actions.push(action.kind().to_string());
        if let Action::Drain { .. } = action {
            slot.drain_started.get_or_insert_with(Timestamp::now);
        }
        let phase = phase_annotations(
            &action,
            &ctx.run_id,
            slot.drain_started,
            slot.cordoned_before_to_record(),
        );
        match (&action, &phase) {
            // The drain writes its mark with its cordon, in one patch.
            (Action::Drain { .. }, _) | (_, None) => {}
            (_, Some(annotations)) => ctx.node_ops.annotate(&input.old_node, annotations).await?,
        }
        match action {
            Action::Finish(End::Replaced) => {
                let detail = match &report.new_node {
                    Some(new) => format!("replaced by {new}"),
                    None => "already replaced".to_string(),
                };
                ctx.progress
                    .phase(&input.pool.name, &input.old_node, Phase::Done, &detail);
                return Ok(SlotOutcome::Replaced);
            }
            Action::Finish(End::Skipped { reason }) => {
                ctx.progress
                    .phase(&input.pool.name, &input.old_node, Phase::Skipped, &reason);
                return Ok(SlotOutcome::Skipped { reason });
            }
            Action::Fail { reason } => return Err(SlotError::Failed(reason)),
            Action::Launch { attempt } => slot.launch(attempt, &mut state, report).await?,
            Action::AwaitJoin { instance } => {
                slot.await_join(&instance, &mut state, report).await?
            }
            Action::Discard {
                instance,
                registered,
            } => slot.discard(&instance, registered, &mut state).await?,
            Action::CheckDrain => slot.check_drain(&mut state, report).await?,
            Action::Drain { onto } => {
                let mark = phase.unwrap_or_default();
                slot.drain(&onto, &mark, &mut state, report).await?
            }
            Action::Terminate => slot.terminate(&mut state, report).await?,
            Action::Forget => slot.forget(&mut state, report).await?,
        }
    }
}

/// The executors of one slot's actions, with what they share.
struct Executor<'a> {
    ctx: &'a RunContext,
    input: &'a SlotInput,
    /// The old node as observed at the slot's start.
    old: Option<Arc<Node>>,
    old_instance: Option<Instance>,
    zone: Option<String>,
    /// When the drain started; set by [`mark`]'s caller as the drain begins.
    drain_started: Option<Timestamp>,
    /// The slot's replacement instances by id (adopted and launched).
    replacements: BTreeMap<String, Instance>,
    /// When this invocation launched or adopted the current replacement.
    launched_at: Option<Instant>,
    /// The Node of a replacement given up, as the fresh read saw it.
    given_up_node: Option<Node>,
    /// When the describe that last answered about the old instance was
    /// made: each check wants a newer one.
    old_instance_seen: Option<Instant>,
    /// The old instance was checked before the drain's precheck, moments
    /// before the drain itself.
    checked_for_drain: bool,
    /// The bootstrap tokens the slot may have in the cluster.
    tokens: join::SlotTokens,
}

impl Executor<'_> {
    /// Whether an operator had cordoned the old node: what the node records,
    /// else its state when this slot first observed it.
    fn cordoned_before(&self) -> bool {
        self.old
            .as_ref()
            .is_some_and(|old| match nodes::annotation(old, ann::CORDONED_BEFORE) {
                Some(recorded) => recorded == "true",
                None => nodes::is_unschedulable(old),
            })
    }

    /// The operator's cordon state to record with the drain mark, unless
    /// the node records it already (a resumed drain: the node is cordoned
    /// by the run by then).
    fn cordoned_before_to_record(&self) -> Option<bool> {
        let old = self.old.as_ref()?;
        nodes::annotation(old, ann::CORDONED_BEFORE)
            .is_none()
            .then(|| nodes::is_unschedulable(old))
    }

    /// Before an action that needs the old instance (a launch beside it, a
    /// drain, its termination): is it still there? A scale-in of its group
    /// or a cluster autoscaler may have taken it during the run. Folds the
    /// answer into `state`; true when it changed.
    async fn old_instance_gone(
        &mut self,
        action: &Action,
        state: &mut SlotState,
    ) -> Result<bool, SlotError> {
        // The drain follows its precheck at once: the check made for the
        // precheck serves it.
        let needs_old = match action {
            Action::Launch { .. } | Action::CheckDrain | Action::Terminate => true,
            Action::Drain { .. } => !self.checked_for_drain,
            _ => false,
        };
        let Some(old) = state.old.as_mut().filter(|o| needs_old && !o.instance_gone) else {
            return Ok(false);
        };
        let Some(id) = self.old_instance.as_ref().map(|i| i.id.clone()) else {
            return Ok(false);
        };
        let (now, seen) = self
            .input
            .instances
            .check(&id, self.old_instance_seen)
            .await?;
        self.old_instance_seen = Some(seen);
        self.checked_for_drain = matches!(action, Action::CheckDrain);
        if now.is_some_and(|i| !i.state.is_going_away()) {
            return Ok(false);
        }
        tracing::warn!(
            node = %self.input.old_node,
            instance = %id,
            "the old instance is gone (a scale-in during the run); the slot ends without a drain"
        );
        old.instance_gone = true;
        Ok(true)
    }

    fn old_name(&self) -> &str {
        &self.input.old_node
    }
}

/// The annotations a slot writes on its old node as `action` starts: the
/// one place a slot's phase reaches the world. `None`: nothing to write
/// (waiting and checking change nothing a rerun needs).
/// `cordoned_before` is recorded with the drain when the node does not
/// carry it yet (see [`ann::CORDONED_BEFORE`]).
pub fn phase_annotations(
    action: &Action,
    run_id: &str,
    drain_started: Option<Timestamp>,
    cordoned_before: Option<bool>,
) -> Option<BTreeMap<String, Option<String>>> {
    let phase = Some(action.phase().as_str().to_string());
    let pairs: Vec<(&str, Option<String>)> = match action {
        Action::Launch { attempt } => vec![
            (ann::RUN, Some(run_id.to_string())),
            (ann::PHASE, phase),
            (ann::ATTEMPT, Some(attempt.to_string())),
        ],
        Action::Drain { onto } => {
            let mut pairs = vec![
                (ann::RUN, Some(run_id.to_string())),
                (ann::PHASE, phase),
                (ann::REPLACED_BY, Some(onto.clone())),
                (
                    ann::DRAIN_STARTED,
                    Some(drain_started.unwrap_or_else(Timestamp::now).to_string()),
                ),
            ];
            if let Some(before) = cordoned_before {
                pairs.push((ann::CORDONED_BEFORE, Some(before.to_string())));
            }
            pairs
        }
        Action::Terminate => vec![(ann::PHASE, phase), (ann::BLOCKED, None)],
        Action::Finish(End::Skipped { .. }) | Action::Fail { .. } => vec![(ann::PHASE, phase)],
        Action::AwaitJoin { .. }
        | Action::Discard { .. }
        | Action::CheckDrain
        | Action::Forget
        | Action::Finish(End::Replaced) => return None,
    };
    Some(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// Write the phase `action` starts on the old node (see
/// [`phase_annotations`]).
async fn mark(
    ctx: &RunContext,
    input: &SlotInput,
    action: &Action,
    drain_started: Option<Timestamp>,
    cordoned_before: Option<bool>,
) -> Result<(), kube::Error> {
    match phase_annotations(action, &ctx.run_id, drain_started, cordoned_before) {
        Some(annotations) => ctx.node_ops.annotate(&input.old_node, &annotations).await,
        None => Ok(()),
    }
}

fn set(pairs: &[(&str, Option<String>)]) -> BTreeMap<String, Option<String>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// A label value for `s` (63 characters at most; longer names are cut and
/// suffixed with a hash so they stay distinct).
pub fn label_value(s: &str) -> String {
    if s.len() <= 63 {
        return s.to_string();
    }
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(s.as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{}-{hash}", s[..54].trim_end_matches(['-', '.', '_']))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn of_two_registrations_of_one_instance_the_newer_is_live() {
        let node = |name: &str, created: &str| {
            Arc::new(
                serde_json::from_value::<Node>(serde_json::json!({
                    "metadata": {"name": name, "creationTimestamp": created}
                }))
                .unwrap(),
            )
        };
        let stale = node("a-old", "2026-01-01T00:00:00Z");
        let live = node("b-new", "2026-01-01T00:05:00Z");
        let found = live_registration([live.clone(), stale.clone()].into_iter()).unwrap();
        assert_eq!(nodes::name(&found), "b-new");
        let found = live_registration([stale, live].into_iter()).unwrap();
        assert_eq!(nodes::name(&found), "b-new");
        assert!(live_registration(std::iter::empty()).is_none());
    }

    #[test]
    fn phases_round_trip_through_their_annotation_value() {
        for p in Phase::ALL {
            assert_eq!(Phase::parse(p.as_str()), Some(p));
        }
        assert_eq!(Phase::parse("nonsense"), None);
    }

    #[test]
    fn long_names_become_valid_distinct_label_values() {
        let a = format!("{}a", "x".repeat(70));
        let b = format!("{}b", "x".repeat(70));
        assert!(label_value(&a).len() <= 63);
        assert_ne!(label_value(&a), label_value(&b));
        assert_eq!(label_value("short"), "short");
    }

    #[test]
    fn the_phase_reaches_the_node_with_what_a_rerun_needs() {
        let started: Timestamp = "2026-12-01T02:00:00Z".parse().unwrap();
        let launch = phase_annotations(&Action::Launch { attempt: 2 }, "r1", None, None).unwrap();
        assert_eq!(launch[ann::RUN].as_deref(), Some("r1"));
        assert_eq!(launch[ann::PHASE].as_deref(), Some("launching"));
        assert_eq!(launch[ann::ATTEMPT].as_deref(), Some("2"));

        let drain = phase_annotations(
            &Action::Drain {
                onto: "general-abcde".into(),
            },
            "r1",
            Some(started),
            Some(true),
        )
        .unwrap();
        assert_eq!(drain[ann::CORDONED_BEFORE].as_deref(), Some("true"));
        assert_eq!(drain[ann::PHASE].as_deref(), Some("draining"));
        assert_eq!(drain[ann::REPLACED_BY].as_deref(), Some("general-abcde"));
        assert_eq!(
            drain[ann::DRAIN_STARTED].as_deref(),
            Some("2026-12-01T02:00:00Z"),
            "a resumed drain keeps its start"
        );

        let terminate = phase_annotations(&Action::Terminate, "r1", None, None).unwrap();
        assert_eq!(terminate[ann::PHASE].as_deref(), Some("terminating"));
        assert_eq!(terminate[ann::BLOCKED], None, "the blocker is cleared");

        let fail =
            phase_annotations(&Action::Fail { reason: "x".into() }, "r1", None, None).unwrap();
        assert_eq!(fail[ann::PHASE].as_deref(), Some("failed"));

        for quiet in [
            Action::AwaitJoin {
                instance: "i-1".into(),
            },
            Action::CheckDrain,
            Action::Finish(End::Replaced),
        ] {
            assert_eq!(
                phase_annotations(&quiet, "r1", None, None),
                None,
                "{quiet:?}"
            );
        }
    }
}
