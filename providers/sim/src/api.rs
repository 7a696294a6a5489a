//! The cloud's HTTP API, as both sides see it: JSON bodies, one `POST
//! /v1/<Action>` route per action (EC2-style action names, so request
//! counters read like CloudTrail), and error bodies with EC2-style codes.
//!
//! ```text
//! POST /v1/RunInstances       RunInstancesRequest      → InstanceView
//! POST /v1/DescribeInstances  DescribeInstancesRequest → DescribeInstancesResponse
//! POST /v1/TerminateInstances TerminateInstancesRequest → TerminateInstancesResponse
//! POST /v1/DescribeImages     DescribeImagesRequest    → DescribeImagesResponse
//! POST /v1/Exec               ExecRequest              → NDJSON stream of ExecEvent
//! GET  /v1/counters           (not counted)            → {"<Action>": n, …}
//! POST /v1/control/<instance>/<action> (not counted): the stand-ins'
//!      callback into the world (the test world's `cloud::control`)
//! errors: 4xx/5xx             ErrorResponse {"error": {"code", "message", "zone"?}}
//! ```

use std::collections::BTreeMap;

use jiff::Timestamp;
use kubesurge_provider::InstanceState;
use serde::{Deserialize, Serialize};

/// The tag every image carries with its Kubernetes version: how the
/// provider finds a version's images.
pub const VERSION_TAG: &str = "kubernetes-version";

/// The actions of the API, by route name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Action {
    RunInstances,
    DescribeInstances,
    TerminateInstances,
    DescribeImages,
    /// Run a script on a machine (the sim's SSM `SendCommand`).
    Exec,
}

impl Action {
    pub const ALL: [Action; 5] = [
        Action::RunInstances,
        Action::DescribeInstances,
        Action::TerminateInstances,
        Action::DescribeImages,
        Action::Exec,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::RunInstances => "RunInstances",
            Action::DescribeInstances => "DescribeInstances",
            Action::TerminateInstances => "TerminateInstances",
            Action::DescribeImages => "DescribeImages",
            Action::Exec => "Exec",
        }
    }

    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// The route of the action.
    pub fn path(self) -> String {
        format!("/v1/{}", self.as_str())
    }
}

/// Error codes on the wire. The provider maps them to typed errors.
pub mod code {
    /// The zone has no capacity now (HTTP 503).
    pub const INSUFFICIENT_CAPACITY: &str = "InsufficientInstanceCapacity";
    /// Rate limited (HTTP 429).
    pub const THROTTLED: &str = "RequestLimitExceeded";
    /// Server-side failure (HTTP 500).
    pub const INTERNAL: &str = "InternalError";
    /// No such image (HTTP 400).
    pub const IMAGE_NOT_FOUND: &str = "InvalidAMIID.NotFound";
    /// No such instance (HTTP 404).
    pub const INSTANCE_NOT_FOUND: &str = "InvalidInstanceID.NotFound";
    /// A bad zone, subnet, token or body (HTTP 400).
    pub const INVALID_PARAMETER: &str = "InvalidParameterValue";
    /// Terminate of an instance without the caller-stated tags (HTTP 400).
    pub const INCORRECT_OWNER: &str = "IncorrectInstanceOwner";
    /// No such route (HTTP 404).
    pub const INVALID_ACTION: &str = "InvalidAction";
    /// A launch whose slot key an earlier launch used, whose instance is
    /// gone (HTTP 400): EC2's answer to a `ClientToken` it keeps bound.
    pub const IDEMPOTENT_PARAMETER_MISMATCH: &str = "IdempotentParameterMismatch";
    /// The machine cannot run scripts now: not running, or not a machine
    /// the sim simulates a node agent on (HTTP 409).
    pub const EXEC_UNAVAILABLE: &str = "InvalidInstanceId";
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunInstancesRequest {
    pub image_id: String,
    pub zone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    #[serde(default)]
    pub user_data: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// An instance as the API describes it (user data is not part of it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceView {
    pub instance_id: String,
    pub state: InstanceState,
    pub zone: String,
    pub subnet_id: String,
    pub image_id: String,
    pub private_ip_address: String,
    pub provider_id: String,
    pub launch_time: Timestamp,
    pub tags: BTreeMap<String, String>,
}

impl From<InstanceView> for kubesurge_provider::Instance {
    fn from(v: InstanceView) -> Self {
        kubesurge_provider::Instance {
            id: kubesurge_provider::InstanceId(v.instance_id),
            state: v.state,
            zone: v.zone,
            subnet: Some(v.subnet_id),
            image: Some(v.image_id),
            private_ip: Some(v.private_ip_address),
            provider_id: v.provider_id,
            launched_at: Some(v.launch_time),
            tags: v.tags,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeInstancesRequest {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instance_ids: Vec<String>,
    /// Every pair must match exactly.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Any of these states; empty = all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub states: Vec<InstanceState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_ip_address: Option<String>,
    /// At most the cloud's page size (50, the largest page EC2 answers for
    /// tag-filtered describes in practice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_results: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeInstancesResponse {
    pub instances: Vec<InstanceView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TerminateInstancesRequest {
    pub instance_id: String,
    /// The instance must carry every one of these tags, or the call fails
    /// with `IncorrectInstanceOwner` (the sim's stand-in for an IAM policy
    /// conditioned on the cluster tag).
    #[serde(default)]
    pub required_tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TerminateInstancesResponse {
    pub instance_id: String,
    pub previous_state: InstanceState,
    pub current_state: InstanceState,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeImagesRequest {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageView {
    pub image_id: String,
    pub name: String,
    pub creation_date: Timestamp,
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeImagesResponse {
    pub images: Vec<ImageView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    /// The zone of a capacity error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

/// A script to run on a machine, named by instance id or, failing that, by
/// the node its kubelet registered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(default)]
    pub node: String,
    pub script: String,
    /// The script is killed after this long.
    pub timeout_ms: u64,
}

/// One line of the answer to `Exec`: output lines as they come, then one
/// final event (`exitCode`, `timedOut` or `failed`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ExecEvent {
    Stdout(String),
    Stderr(String),
    ExitCode(i32),
    /// Killed at the timeout.
    TimedOut,
    /// The script could not be started.
    Failed(String),
}
