//! The `sim` provider: [`CloudProvider`] and [`NodeExec`] over the
//! simulated cloud's HTTP API, so the tool crosses a process boundary as it
//! does with a real cloud. Like a cloud SDK, it retries throttling and
//! server errors a few times before it reports them (scripts are never
//! retried: whether to run one again is the caller's decision).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kubesurge_provider::{
    CloudProvider, DeleteStatus, ExecError, ExecOutput, ExecRequest, ExecTarget, Image, Instance,
    InstanceId, InstanceState, LaunchRequest, NodeExec, NodeRef, OutputSink, PoolRef,
    ProviderError, tags,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{self, Action, ErrorResponse, VERSION_TAG, code};
use crate::provider_id::PROVIDER_ID;

/// Attempts per call, as the AWS SDK's standard retry mode makes.
pub const ATTEMPTS: u32 = 3;
/// First pause between attempts; doubled each time. Short, since the sim
/// is local and tests are fast.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(20);
/// Bound of one HTTP exchange.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How much longer than a script's timeout `Exec` waits for the cloud to
/// report that timeout.
pub const EXEC_GRACE: Duration = Duration::from_secs(10);

/// States `list` reports: everything but terminated.
const LIVE_STATES: [InstanceState; 5] = [
    InstanceState::Pending,
    InstanceState::Running,
    InstanceState::Stopping,
    InstanceState::Stopped,
    InstanceState::ShuttingDown,
];

/// The `sim` provider for one cluster.
pub struct SimProvider {
    endpoint: String,
    cluster: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl SimProvider {
    /// A provider for the cloud at `endpoint_url` (`http://127.0.0.1:port`)
    /// acting for `cluster`: it only ever terminates instances tagged
    /// `kubesurge.io/cluster=<cluster>`.
    pub fn new(endpoint_url: &str, cluster: &str) -> SimProvider {
        SimProvider {
            endpoint: endpoint_url.trim_end_matches('/').to_string(),
            cluster: cluster.to_string(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        action: Action,
        request: &Req,
    ) -> Result<Resp, ProviderError> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            match self.call_once(action, request).await {
                Err(e) if e.is_retryable() && attempt < ATTEMPTS => {
                    tracing::debug!(action = action.as_str(), attempt, error = %e, "retrying cloud call");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    async fn call_once<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        action: Action,
        request: &Req,
    ) -> Result<Resp, ProviderError> {
        let body = serde_json::to_vec(request).map_err(|e| ProviderError::Other {
            message: format!("cannot encode {}: {e}", action.as_str()),
        })?;
        let http_request = http::Request::post(format!("{}{}", self.endpoint, action.path()))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ProviderError::InvalidConfig {
                message: format!("sim endpoint {:?}: {e}", self.endpoint),
            })?;
        let transient = |message: String| ProviderError::Transient {
            message: format!("{}: {message}", action.as_str()),
        };
        let exchange = async {
            let response = self
                .client
                .request(http_request)
                .await
                .map_err(|e| transient(e.to_string()))?;
            let status = response.status().as_u16();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| transient(e.to_string()))?
                .to_bytes();
            Ok::<_, ProviderError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| transient(format!("no answer within {REQUEST_TIMEOUT:?}")))??;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes).map_err(|e| ProviderError::Other {
                message: format!("{}: unreadable answer: {e}", action.as_str()),
            });
        }
        Err(map_error(action, status, &bytes))
    }

    async fn describe_all(
        &self,
        mut request: api::DescribeInstancesRequest,
    ) -> Result<Vec<Instance>, ProviderError> {
        let mut instances = Vec::new();
        loop {
            let page: api::DescribeInstancesResponse =
                self.call(Action::DescribeInstances, &request).await?;
            instances.extend(page.instances.into_iter().map(Instance::from));
            match page.next_token {
                Some(token) => request.next_token = Some(token),
                None => return Ok(instances),
            }
        }
    }

    fn cluster_tag(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(tags::CLUSTER.to_string(), self.cluster.clone())])
    }
}

/// A typed error from an error answer of the API.
fn map_error(action: Action, status: u16, body: &[u8]) -> ProviderError {
    let (error_code, message, zone) = match serde_json::from_slice::<ErrorResponse>(body) {
        Ok(e) => (e.error.code, e.error.message, e.error.zone),
        Err(_) => (
            String::new(),
            format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ),
            None,
        ),
    };
    let message = format!("{}: {message}", action.as_str());
    match error_code.as_str() {
        code::INSUFFICIENT_CAPACITY => ProviderError::InsufficientCapacity {
            zone: zone.unwrap_or_default(),
            message,
        },
        code::THROTTLED => ProviderError::Throttled { message },
        code::IMAGE_NOT_FOUND | code::INSTANCE_NOT_FOUND => {
            ProviderError::NotFound { what: message }
        }
        code::INCORRECT_OWNER | code::INVALID_PARAMETER | code::INVALID_ACTION => {
            ProviderError::InvalidConfig { message }
        }
        code::IDEMPOTENT_PARAMETER_MISMATCH => ProviderError::LaunchKeySpent { message },
        _ if status == 429 => ProviderError::Throttled { message },
        _ if status >= 500 => ProviderError::Transient { message },
        _ => ProviderError::Other { message },
    }
}

/// `v1.35.3` from `1.35.3` or `v1.35.3`.
fn normalize_version(version: &str) -> String {
    let v = version.trim();
    if v.starts_with('v') {
        v.to_string()
    } else {
        format!("v{v}")
    }
}

#[async_trait]
impl CloudProvider for SimProvider {
    fn name(&self) -> &str {
        "sim"
    }

    async fn list(&self, pool: &PoolRef) -> Result<Vec<Instance>, ProviderError> {
        self.describe_all(api::DescribeInstancesRequest {
            tags: BTreeMap::from([
                (tags::CLUSTER.to_string(), pool.cluster.clone()),
                (tags::POOL.to_string(), pool.pool.clone()),
            ]),
            states: LIVE_STATES.to_vec(),
            ..Default::default()
        })
        .await
    }

    async fn launch(&self, request: &LaunchRequest) -> Result<Instance, ProviderError> {
        let body = api::RunInstancesRequest {
            image_id: request.image.clone(),
            zone: request.zone.clone(),
            subnet_id: request.subnet.clone(),
            user_data: request.user_data.expose().clone(),
            tags: request.tags(),
        };
        let view: api::InstanceView =
            self.call(Action::RunInstances, &body)
                .await
                .map_err(|e| match e {
                    // The zone of a capacity error is the requested one.
                    ProviderError::InsufficientCapacity { zone, message } if zone.is_empty() => {
                        ProviderError::InsufficientCapacity {
                            zone: request.zone.clone(),
                            message,
                        }
                    }
                    other => other,
                })?;
        Ok(view.into())
    }

    async fn get(&self, id: &InstanceId) -> Result<Option<Instance>, ProviderError> {
        let request = api::DescribeInstancesRequest {
            instance_ids: vec![id.0.clone()],
            ..Default::default()
        };
        match self
            .call::<_, api::DescribeInstancesResponse>(Action::DescribeInstances, &request)
            .await
        {
            Ok(page) => Ok(page
                .instances
                .into_iter()
                .map(Instance::from)
                .find(|i| i.id == *id && i.state != InstanceState::Terminated)),
            Err(ProviderError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One `DescribeInstances` naming every id (the cloud answers named ids
    /// in one page, as EC2 does). Naming an id the cloud never knew fails
    /// the whole call, as on EC2; then each id is asked on its own.
    async fn get_many(&self, ids: &[InstanceId]) -> Result<Vec<Instance>, ProviderError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let request = api::DescribeInstancesRequest {
            instance_ids: ids.iter().map(|id| id.0.clone()).collect(),
            ..Default::default()
        };
        match self.describe_all(request).await {
            Ok(found) => Ok(found
                .into_iter()
                .filter(|i| i.state != InstanceState::Terminated)
                .collect()),
            Err(ProviderError::NotFound { .. }) => {
                let mut found = Vec::new();
                for id in ids {
                    found.extend(self.get(id).await?);
                }
                Ok(found)
            }
            Err(e) => Err(e),
        }
    }

    async fn delete(&self, id: &InstanceId) -> Result<DeleteStatus, ProviderError> {
        let request = api::TerminateInstancesRequest {
            instance_id: id.0.clone(),
            required_tags: self.cluster_tag(),
        };
        match self
            .call::<_, api::TerminateInstancesResponse>(Action::TerminateInstances, &request)
            .await
        {
            Ok(r) if r.current_state == InstanceState::Terminated => Ok(DeleteStatus::Gone),
            Ok(_) => Ok(DeleteStatus::InProgress),
            Err(ProviderError::NotFound { .. }) => Ok(DeleteStatus::Gone),
            Err(e) => Err(e),
        }
    }

    async fn instance_for(&self, node: &NodeRef) -> Result<Option<Instance>, ProviderError> {
        if let Some(id) = node
            .provider_id
            .as_deref()
            .and_then(PROVIDER_ID.instance_id)
        {
            return self.get(&InstanceId(id.to_string())).await;
        }
        let Some(ip) = node.internal_ip.as_ref().filter(|ip| !ip.is_empty()) else {
            return Ok(None);
        };
        // Addresses are only unique within one network: look among this
        // cluster's instances, and refuse to guess between several (as the
        // aws provider does: two VPCs of one account may reuse a range).
        let mut found = self
            .describe_all(api::DescribeInstancesRequest {
                tags: self.cluster_tag(),
                states: LIVE_STATES.to_vec(),
                private_ip_address: Some(ip.clone()),
                ..Default::default()
            })
            .await?;
        match found.len() {
            0 | 1 => Ok(found.pop()),
            n => Err(ProviderError::InvalidConfig {
                message: format!(
                    "node {} has no usable providerID and {n} instances of cluster {} have its address {ip}",
                    node.name, self.cluster
                ),
            }),
        }
    }

    async fn resolve_image(&self, pool: &PoolRef, version: &str) -> Result<Image, ProviderError> {
        let version = normalize_version(version);
        let request = api::DescribeImagesRequest {
            tags: BTreeMap::from([(VERSION_TAG.to_string(), version.clone())]),
            ..Default::default()
        };
        let answer: api::DescribeImagesResponse =
            self.call(Action::DescribeImages, &request).await?;
        answer
            .images
            .into_iter()
            .max_by_key(|i| i.creation_date)
            .map(|i| Image {
                id: i.image_id,
                name: Some(i.name),
                created: Some(i.creation_date),
            })
            .ok_or_else(|| ProviderError::NotFound {
                what: format!("an image of Kubernetes {version} for pool {}", pool.pool),
            })
    }
}

#[async_trait]
impl NodeExec for SimProvider {
    /// Runs the script on the machine of `target.instance` (or, without
    /// one, the machine whose kubelet registered `target.node`) through
    /// `POST /v1/Exec`, streaming its output lines to `sink`.
    async fn run(
        &self,
        target: &ExecTarget,
        request: &ExecRequest,
        sink: &dyn OutputSink,
    ) -> Result<ExecOutput, ExecError> {
        let node = target.node.clone();
        let unreachable = |message: String| ExecError::Unreachable {
            node: node.clone(),
            message,
        };
        let transport = |message: String| ExecError::Transport {
            node: node.clone(),
            message,
        };
        let body = api::ExecRequest {
            instance_id: target.instance.as_ref().map(|i| i.0.clone()),
            node: target.node.clone(),
            script: request.script.clone(),
            timeout_ms: u64::try_from(request.timeout.as_millis()).unwrap_or(u64::MAX),
        };
        let bytes = serde_json::to_vec(&body).map_err(|e| transport(e.to_string()))?;
        let http_request = http::Request::post(format!("{}{}", self.endpoint, Action::Exec.path()))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| transport(format!("sim endpoint {:?}: {e}", self.endpoint)))?;
        let deadline = tokio::time::Instant::now() + request.timeout + EXEC_GRACE;
        let timed_out = || ExecError::Timeout {
            node: node.clone(),
            after: request.timeout,
        };
        let response = tokio::time::timeout_at(deadline, self.client.request(http_request))
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        if status != 200 {
            let bytes = tokio::time::timeout_at(deadline, body.collect())
                .await
                .map_err(|_| timed_out())?
                .map_err(|e| transport(e.to_string()))?
                .to_bytes();
            let message = match serde_json::from_slice::<ErrorResponse>(&bytes) {
                Ok(e) => format!("{}: {}", e.error.code, e.error.message),
                Err(_) => format!("HTTP {status}"),
            };
            return Err(unreachable(message));
        }
        let mut output = ExecOutput {
            exit_code: -1,
            stdout: String::new(),
            stderr: String::new(),
        };
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
                Err(_) => return Err(timed_out()),
                Ok(None) => {
                    return Err(transport(
                        "the connection closed before the script finished".into(),
                    ));
                }
                Ok(Some(Err(e))) => return Err(transport(e.to_string())),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            pending.extend_from_slice(&data);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let event: api::ExecEvent = serde_json::from_slice(&line)
                    .map_err(|e| transport(format!("unreadable answer: {e}")))?;
                match event {
                    api::ExecEvent::Stdout(line) => {
                        sink.line(&node, &line);
                        output.stdout.push_str(&line);
                        output.stdout.push('\n');
                    }
                    api::ExecEvent::Stderr(line) => {
                        sink.line(&node, &line);
                        output.stderr.push_str(&line);
                        output.stderr.push('\n');
                    }
                    api::ExecEvent::ExitCode(code) => {
                        output.exit_code = code;
                        return Ok(output);
                    }
                    api::ExecEvent::TimedOut => return Err(timed_out()),
                    api::ExecEvent::Failed(message) => return Err(unreachable(message)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(code: &str, zone: Option<&str>) -> Vec<u8> {
        serde_json::to_vec(&ErrorResponse {
            error: api::ErrorDetail {
                code: code.into(),
                message: "m".into(),
                zone: zone.map(str::to_string),
            },
        })
        .unwrap()
    }

    #[test]
    fn error_codes_map_to_typed_errors() {
        let a = Action::RunInstances;
        assert!(matches!(
            map_error(a, 503, &body(code::INSUFFICIENT_CAPACITY, Some("zone-b"))),
            ProviderError::InsufficientCapacity { zone, .. } if zone == "zone-b"
        ));
        assert!(matches!(
            map_error(a, 429, &body(code::THROTTLED, None)),
            ProviderError::Throttled { .. }
        ));
        assert!(matches!(
            map_error(a, 429, b"slow down"),
            ProviderError::Throttled { .. }
        ));
        assert!(matches!(
            map_error(a, 500, &body(code::INTERNAL, None)),
            ProviderError::Transient { .. }
        ));
        assert!(matches!(
            map_error(a, 502, b"<html>"),
            ProviderError::Transient { .. }
        ));
        assert!(matches!(
            map_error(a, 400, &body(code::IMAGE_NOT_FOUND, None)),
            ProviderError::NotFound { .. }
        ));
        assert!(matches!(
            map_error(a, 400, &body(code::INCORRECT_OWNER, None)),
            ProviderError::InvalidConfig { .. }
        ));
        assert!(matches!(
            map_error(a, 400, &body(code::IDEMPOTENT_PARAMETER_MISMATCH, None)),
            ProviderError::LaunchKeySpent { .. }
        ));
        assert!(matches!(
            map_error(a, 418, b"?"),
            ProviderError::Other { .. }
        ));
    }

    #[test]
    fn versions_gain_their_v() {
        assert_eq!(normalize_version("1.35.3"), "v1.35.3");
        assert_eq!(normalize_version("v1.35.3"), "v1.35.3");
    }
}
