//! What the run in progress, or the last one, is doing, read from the
//! world alone (design §3, `kubesurge status`): the lock's holder, the run
//! record, and per slot the phase and blocker its old node carries.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client};
use serde::Serialize;
use thiserror::Error;

use super::annotations as ann;
use super::record::{RecordError, RecordStore, RecordedNode, RunRecord};
use crate::kube::lock::{self, Holder, LockError};
use crate::kube::nodes;
use crate::kube::retry::with_retry;

/// One slot as the world shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SlotStatus {
    pub pool: String,
    pub node: String,
    /// The phase on the old node; `done` once it is gone, `pending` before
    /// the run touched it.
    pub phase: String,
    pub replaced_by: Option<String>,
    pub blocked: Option<String>,
}

/// `kubesurge status -o json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunStatus {
    pub holder: Option<String>,
    pub holder_since: Option<String>,
    pub run: Option<RunRecord>,
    pub slots: Vec<SlotStatus>,
}

/// Why the status could not be read.
#[derive(Debug, Error)]
pub enum StatusError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("reading node {node}: {source}")]
    Node {
        node: String,
        #[source]
        source: kube::Error,
    },
}

/// Read the status from the cluster.
pub async fn read(client: &Client) -> Result<RunStatus, StatusError> {
    let holder = lock::current_holder(client.clone()).await?;
    let record = RecordStore::new(client.clone()).load().await?;
    let api: Api<Node> = Api::all(client.clone());
    let mut slots = Vec::new();
    if let Some(record) = &record {
        for recorded in &record.nodes {
            let node = with_retry("get node", || api.get_opt(&recorded.name))
                .await
                .map_err(|source| StatusError::Node {
                    node: recorded.name.clone(),
                    source,
                })?;
            slots.push(slot_status(record, recorded, node.as_ref()));
        }
    }
    Ok(assemble(holder, record, slots))
}

fn assemble(
    holder: Option<(Holder, Timestamp)>,
    run: Option<RunRecord>,
    slots: Vec<SlotStatus>,
) -> RunStatus {
    RunStatus {
        holder: holder.as_ref().map(|(h, _)| h.identity()),
        holder_since: holder.as_ref().map(|(_, since)| since.to_string()),
        run,
        slots,
    }
}

/// One recorded node's slot, from its Node (`None`: gone, so replaced).
/// Annotations of another run are not this run's; a finished slot's
/// replacement is in the record once the run has ended. Pure.
fn slot_status(record: &RunRecord, recorded: &RecordedNode, node: Option<&Node>) -> SlotStatus {
    let ours = node.is_some_and(|n| nodes::annotation(n, ann::RUN) == Some(record.id.as_str()));
    let get = |key: &str| {
        node.filter(|_| ours)
            .and_then(|n| nodes::annotation(n, key))
            .map(str::to_string)
    };
    SlotStatus {
        pool: recorded.pool.clone(),
        node: recorded.name.clone(),
        phase: match node {
            None => "done".into(),
            Some(_) => get(ann::PHASE).unwrap_or_else(|| "pending".into()),
        },
        replaced_by: get(ann::REPLACED_BY).or_else(|| recorded.replaced_by.clone()),
        blocked: get(ann::BLOCKED),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::rotation::RunState;

    fn record() -> RunRecord {
        RunRecord {
            id: "r-1".into(),
            command: "rotate --all".into(),
            target: crate::version::KubeVersion::new(1, 34, 2),
            started: "2026-01-02T03:04:05Z".parse().unwrap(),
            state: RunState::Running,
            nodes: Vec::new(),
            finished: None,
            message: None,
        }
    }

    fn node(annotations: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("w-1".into()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect::<BTreeMap<_, _>>(),
                ),
                ..ObjectMeta::default()
            },
            ..Node::default()
        }
    }

    #[test]
    fn a_slot_reads_its_own_runs_annotations_only() {
        let record = record();
        let ours = node(&[
            (ann::RUN, "r-1"),
            (ann::PHASE, "draining"),
            (ann::REPLACED_BY, "w-9"),
            (ann::BLOCKED, "blocked by PDB web"),
        ]);
        let w1 = RecordedNode {
            name: "w-1".into(),
            pool: "general".into(),
            replaced_by: None,
        };
        assert_eq!(
            slot_status(&record, &w1, Some(&ours)),
            SlotStatus {
                pool: "general".into(),
                node: "w-1".into(),
                phase: "draining".into(),
                replaced_by: Some("w-9".into()),
                blocked: Some("blocked by PDB web".into()),
            }
        );
        let other_run = node(&[(ann::RUN, "r-0"), (ann::PHASE, "failed")]);
        let slot = slot_status(&record, &w1, Some(&other_run));
        assert_eq!((slot.phase.as_str(), slot.blocked), ("pending", None));
        assert_eq!(slot_status(&record, &w1, None).phase, "done");
    }

    #[test]
    fn a_finished_slot_names_its_replacement_from_the_record() {
        let w1 = RecordedNode {
            name: "w-1".into(),
            pool: "general".into(),
            replaced_by: Some("general-a1".into()),
        };
        let slot = slot_status(&record(), &w1, None);
        assert_eq!(
            (slot.phase.as_str(), slot.replaced_by.as_deref()),
            ("done", Some("general-a1"))
        );
    }

    #[test]
    fn the_json_keeps_its_field_names() {
        let status = assemble(None, None, Vec::new());
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            serde_json::json!({"holder": null, "holderSince": null, "run": null, "slots": []})
        );
    }
}
