//! What the run in progress, or the last one, is doing, read from the
//! world alone (design §3, `kubesurge status`): the lock's holder, the run
//! record, and per slot the phase and blocker its old node carries.

use std::time::Duration;

use futures::FutureExt;
use futures::stream::{self, BoxStream, Stream, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use kube::{Api, Client};
use schemars::JsonSchema;
use serde::Serialize;
use thiserror::Error;

use super::annotations as ann;
use super::record::{
    RECORD_NAME, RECORD_NAMESPACE, RecordError, RecordStore, RecordedNode, RunRecord,
};
use crate::kube::lock::{self, Holder, LockError};
use crate::kube::nodes;
use crate::kube::retry::with_retry;

/// One slot as the world shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
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
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
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

/// How long `follow` lets changes gather before it reads the status
/// again: a slot's step touches its Node, the record and the lease at
/// nearly the same time, and each read costs a GET per recorded node.
const SETTLE: Duration = Duration::from_millis(500);

/// The status now, then again each time it changes, until no run holds
/// the lock (`kubesurge status -w`). Changes are noticed by watching the
/// lease, the run record and the Nodes' metadata (a slot's phase is an
/// annotation on its old node); nothing is polled.
pub fn follow(client: Client) -> impl Stream<Item = Result<RunStatus, StatusError>> {
    struct Following {
        client: Client,
        changes: BoxStream<'static, ()>,
        last: Option<RunStatus>,
        ended: bool,
    }
    let changes = changes(&client);
    let start = Following {
        client,
        changes,
        last: None,
        ended: false,
    };
    stream::unfold(start, |mut f| async move {
        if f.ended {
            return None;
        }
        loop {
            if f.last.is_some() {
                f.changes.next().await?;
                tokio::time::sleep(SETTLE).await;
                while f.changes.next().now_or_never().flatten().is_some() {}
            }
            let status = match read(&f.client).await {
                Ok(status) => status,
                Err(e) => {
                    f.ended = true;
                    return Some((Err(e), f));
                }
            };
            f.ended = status.holder.is_none();
            if f.last.as_ref() != Some(&status) {
                f.last = Some(status.clone());
                return Some((Ok(status), f));
            }
            if f.ended {
                return None;
            }
        }
    })
}

/// One `()` per change of the lease, the run record or a Node, and one
/// per lease duration: a holder that died changes nothing, its lease only
/// runs out.
fn changes(client: &Client) -> BoxStream<'static, ()> {
    let by_name = |name: &str| watcher::Config::default().fields(&format!("metadata.name={name}"));
    let leases: Api<Lease> = Api::namespaced(client.clone(), lock::LEASE_NAMESPACE);
    let records: Api<ConfigMap> = Api::namespaced(client.clone(), RECORD_NAMESPACE);
    // Metadata only: the annotations are all the status reads of a Node
    // here, and a Node's status is most of its bytes.
    let nodes: Api<PartialObjectMeta<Node>> = Api::all(client.clone());
    stream::select_all([
        watcher(leases, by_name(lock::LEASE_NAME))
            .map(|_| ())
            .boxed(),
        watcher(records, by_name(RECORD_NAME)).map(|_| ()).boxed(),
        watcher(nodes, watcher::Config::default())
            .map(|_| ())
            .boxed(),
        stream::unfold((), |()| async {
            tokio::time::sleep(lock::LEASE_DURATION).await;
            Some(((), ()))
        })
        .boxed(),
    ])
    .boxed()
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
