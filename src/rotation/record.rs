//! The run record: what a run set out to do, kept in the cluster
//! (ConfigMap `kube-system/kubesurge-run`) so that rerunning the same
//! command continues it — with the same node set, never the replacements
//! it made — and a different command is refused while it is unfinished.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::{Api, Client};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::report::{SlotOutcome, SlotReport};
use crate::kube::errors;
use crate::kube::retry::with_retry;
use crate::version::KubeVersion;

pub const RECORD_NAMESPACE: &str = "kube-system";
pub const RECORD_NAME: &str = "kubesurge-run";
const RECORD_KEY: &str = "run.json";

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RunState {
    Running,
    Succeeded,
    /// Failed; a rerun of the same command resumes it.
    Failed,
    /// Stopped by `kubesurge abort`; a rerun resumes it.
    Aborted,
    /// Stopped at the end of its maintenance window; a rerun resumes it.
    Stopped,
    /// Given up by the user; the next command starts afresh.
    Abandoned,
}

impl RunState {
    /// A run in one of these states is continued by the same command and
    /// blocks any other.
    pub fn is_unfinished(self) -> bool {
        matches!(
            self,
            RunState::Running | RunState::Failed | RunState::Aborted | RunState::Stopped
        )
    }
}

/// A node the run set out to replace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RecordedNode {
    pub name: String,
    pub pool: String,
    /// The node that replaced it, once the run has ended: the old Node is
    /// gone by then, and with it the `replaced-by` annotation `status`
    /// reads while the slot runs.
    #[serde(
        default,
        rename = "replacedBy",
        skip_serializing_if = "Option::is_none"
    )]
    pub replaced_by: Option<String>,
}

impl RunRecord {
    /// Note the replacement of every node a slot of `slots` replaced.
    pub fn note_replacements(&mut self, slots: &[SlotReport]) {
        for slot in slots {
            if slot.outcome != SlotOutcome::Replaced {
                continue;
            }
            let recorded = self
                .nodes
                .iter_mut()
                .find(|n| n.name == slot.old_node && n.pool == slot.pool);
            if let (Some(recorded), Some(new_node)) = (recorded, &slot.new_node) {
                recorded.replaced_by = Some(new_node.clone());
            }
        }
    }
}

impl fmt::Display for RunState {
    /// As in the JSON: `running`, `succeeded`, …
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Aborted => "aborted",
            RunState::Stopped => "stopped",
            RunState::Abandoned => "abandoned",
        })
    }
}

/// The record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub id: String,
    /// The command in a canonical form (`rotate --pool general --max-age
    /// 30d`): a rerun continues the run only when this is equal.
    pub command: String,
    /// The kubelet version replacements get.
    pub target: KubeVersion,
    pub started: Timestamp,
    pub state: RunState,
    /// In replacement order.
    pub nodes: Vec<RecordedNode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A fresh run id: `r-` and 8 random lowercase alphanumerics (it goes into
/// tags, labels and annotations).
pub fn new_run_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let suffix: String = (0..8)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("r-{suffix}")
}

/// Why the record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("run record {RECORD_NAMESPACE}/{RECORD_NAME}: {0}")]
    Api(#[from] kube::Error),
    #[error(
        "run record {RECORD_NAMESPACE}/{RECORD_NAME} is unreadable ({0}); delete it to start afresh"
    )]
    Corrupt(String),
    /// Someone wrote the record since this run last read or wrote it: only
    /// a run that lost its lock can be in that position, and its write
    /// must not replace the winner's.
    #[error(
        "run record {RECORD_NAMESPACE}/{RECORD_NAME} was changed by another run since this one wrote it; this run no longer owns it"
    )]
    Superseded,
}

/// Read and write the record. Every write is guarded by the
/// resourceVersion this store last read or wrote (optimistic concurrency,
/// k8s-mechanics §6): a write over someone else's fails instead of
/// replacing it.
#[derive(Clone)]
pub struct RecordStore {
    api: Api<ConfigMap>,
    version: Arc<Mutex<Option<String>>>,
}

impl RecordStore {
    pub fn new(client: Client) -> RecordStore {
        RecordStore {
            api: Api::namespaced(client, RECORD_NAMESPACE),
            version: Arc::new(Mutex::new(None)),
        }
    }

    fn version(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.version.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last run's record, if any.
    pub async fn load(&self) -> Result<Option<RunRecord>, RecordError> {
        let cm = match with_retry("get run record", || self.api.get(RECORD_NAME)).await {
            Ok(cm) => cm,
            Err(e) if errors::is_not_found(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        *self.version() = cm.metadata.resource_version.clone();
        let raw = cm
            .data
            .as_ref()
            .and_then(|d| d.get(RECORD_KEY))
            .ok_or_else(|| RecordError::Corrupt(format!("no {RECORD_KEY}")))?;
        serde_json::from_str(raw)
            .map(Some)
            .map_err(|e| RecordError::Corrupt(e.to_string()))
    }

    /// Write the record (create or replace).
    pub async fn save(&self, record: &RunRecord) -> Result<(), RecordError> {
        let body = serde_json::to_string_pretty(record)
            .map_err(|e| RecordError::Corrupt(e.to_string()))?;
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(RECORD_NAME.into()),
                namespace: Some(RECORD_NAMESPACE.into()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_string(),
                    "kubesurge".to_string(),
                )])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(RECORD_KEY.to_string(), body)])),
            ..ConfigMap::default()
        };
        let post = PostParams::default();
        let known = self.version().clone();
        let written = match known {
            Some(version) => self.replace(&post, cm, version).await?,
            None => match with_retry("create run record", || self.api.create(&post, &cm)).await {
                Ok(created) => created,
                Err(e) if errors::is_already_exists(&e) => {
                    // A record this store never read (a previous run's):
                    // replace the version just read, no other.
                    let current =
                        with_retry("get run record", || self.api.get(RECORD_NAME)).await?;
                    let version = current.metadata.resource_version.unwrap_or_default();
                    self.replace(&post, cm, version).await?
                }
                Err(e) => return Err(e.into()),
            },
        };
        *self.version() = written.metadata.resource_version;
        Ok(())
    }

    async fn replace(
        &self,
        post: &PostParams,
        mut cm: ConfigMap,
        version: String,
    ) -> Result<ConfigMap, RecordError> {
        cm.metadata.resource_version = Some(version);
        match with_retry("replace run record", || {
            self.api.replace(RECORD_NAME, post, &cm)
        })
        .await
        {
            Ok(written) => Ok(written),
            Err(e) if errors::is_conflict(&e) => Err(RecordError::Superseded),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfinished_states_block_other_commands() {
        assert!(RunState::Running.is_unfinished());
        assert!(RunState::Failed.is_unfinished());
        assert!(RunState::Aborted.is_unfinished());
        assert!(RunState::Stopped.is_unfinished());
        assert!(!RunState::Succeeded.is_unfinished());
        assert!(!RunState::Abandoned.is_unfinished());
    }

    #[test]
    fn run_ids_are_label_safe_and_distinct() {
        let a = new_run_id();
        assert_eq!(a.len(), 10);
        assert!(
            a.bytes()
                .all(|b| b == b'-' || b.is_ascii_lowercase() || b.is_ascii_digit())
        );
        assert_ne!(a, new_run_id());
    }

    #[test]
    fn record_round_trips_as_json() {
        let r = RunRecord {
            id: "r-1".into(),
            command: "rotate --all".into(),
            target: KubeVersion::new(1, 34, 2),
            started: "2026-01-01T00:00:00Z".parse().unwrap(),
            state: RunState::Running,
            nodes: vec![RecordedNode {
                name: "w1".into(),
                pool: "general".into(),
                replaced_by: Some("general-x1".into()),
            }],
            finished: None,
            message: None,
        };
        let back: RunRecord = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn replacements_are_noted_for_replaced_slots_only() {
        let recorded = |name: &str| RecordedNode {
            name: name.into(),
            pool: "general".into(),
            replaced_by: None,
        };
        let mut record = RunRecord {
            id: "r-1".into(),
            command: "rotate --all".into(),
            target: KubeVersion::new(1, 34, 2),
            started: "2026-01-01T00:00:00Z".parse().unwrap(),
            state: RunState::Running,
            nodes: vec![recorded("w1"), recorded("w2")],
            finished: None,
            message: None,
        };
        let mut replaced = SlotReport::not_started("general", "w1");
        replaced.new_node = Some("general-a".into());
        replaced.outcome = SlotOutcome::Replaced;
        let mut failed = SlotReport::not_started("general", "w2");
        failed.new_node = Some("general-b".into());
        failed.outcome = SlotOutcome::Failed { reason: "x".into() };
        record.note_replacements(&[replaced, failed]);
        assert_eq!(record.nodes[0].replaced_by.as_deref(), Some("general-a"));
        assert_eq!(record.nodes[1].replaced_by, None);
        assert_eq!(RunState::Stopped.to_string(), "stopped");
    }
}
