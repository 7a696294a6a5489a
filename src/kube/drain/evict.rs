//! One eviction request and what its answer means (k8s-mechanics §4).
//!
//! kube-rs's `Api::evict` drops `deleteOptions` (it posts a snake_case key
//! the server ignores), so the body is built here: the UID precondition is
//! what pins the eviction to the exact pod the drain decided about.

use http::{Request, StatusCode};
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::json;

use crate::kube::errors::code_of;

/// The pod an eviction is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema)]
pub struct PodKey {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl PodKey {
    pub fn of(pod: &Pod) -> PodKey {
        PodKey {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for PodKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What the API server said to one eviction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EvictionAnswer {
    /// Accepted: the pod is being deleted.
    Accepted,
    /// The pod (with this UID) no longer exists.
    Gone,
    /// A PodDisruptionBudget forbids it now; `reason` says which and why.
    Blocked {
        reason: String,
        retry_after_secs: Option<u32>,
    },
    /// Rejected in a way that retrying may fix (namespace terminating, a
    /// conflict, a server error, a pod under two PDBs).
    Retry { reason: String },
    /// Rejected for good (forbidden, invalid).
    Rejected { reason: String },
}

/// POST `pods/<name>/eviction` with a UID precondition.
pub async fn evict(client: &Client, pod: &PodKey) -> Result<EvictionAnswer, kube::Error> {
    let body = json!({
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": pod.name, "namespace": pod.namespace},
        "deleteOptions": {"preconditions": {"uid": pod.uid}},
    });
    let url = format!(
        "/api/v1/namespaces/{}/pods/{}/eviction",
        pod.namespace, pod.name
    );
    let request = Request::post(url)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap_or_default())
        .map_err(kube::Error::HttpError)?;
    // Only success or failure matters: the answer is not decoded.
    match client.request_text(request).await {
        Ok(_) => Ok(EvictionAnswer::Accepted),
        Err(kube::Error::Api(status)) => Ok(classify(&status)),
        Err(other) => Err(other),
    }
}

/// Turn an error Status into what the drain does next.
pub fn classify(status: &kube::core::Status) -> EvictionAnswer {
    let causes: Vec<&str> = status
        .details
        .as_ref()
        .map(|d| d.causes.iter().map(|c| c.message.as_str()).collect())
        .unwrap_or_default();
    match code_of(status) {
        Some(StatusCode::NOT_FOUND) => EvictionAnswer::Gone,
        // A failed UID precondition: the pod we meant is gone (a new one
        // with the same name is another pod, decided about separately).
        // The pod the eviction was pinned to is gone (its name may already
        // be a new pod's): the real API server says so from
        // `rest.BeforeDelete` ("the UID in the precondition … does not
        // match the UID in record …"), or from the storage layer in a race
        // ("Precondition failed: UID in precondition …").
        Some(StatusCode::CONFLICT)
            if status.message.contains("does not match the UID in record")
                || status.message.contains("Precondition failed: UID") =>
        {
            EvictionAnswer::Gone
        }
        Some(StatusCode::TOO_MANY_REQUESTS) => EvictionAnswer::Blocked {
            reason: blocked_reason(&status.message, &causes),
            retry_after_secs: status.details.as_ref().map(|d| d.retry_after_seconds),
        },
        Some(StatusCode::FORBIDDEN)
            if status.reason == "Forbidden" && !status.message.contains("being terminated") =>
        {
            EvictionAnswer::Rejected {
                reason: status.message.clone(),
            }
        }
        Some(StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY) => {
            EvictionAnswer::Rejected {
                reason: status.message.clone(),
            }
        }
        _ => EvictionAnswer::Retry {
            reason: status.message.clone(),
        },
    }
}

/// "blocked by PDB web: needs 5 healthy, has 5" from the 429's cause
/// `The disruption budget web needs 5 healthy pods and has 5 currently`;
/// the server's own words when the cause has another shape.
pub fn blocked_reason(message: &str, causes: &[&str]) -> String {
    for cause in causes {
        if let Some(parsed) = parse_budget_cause(cause) {
            return parsed;
        }
        if let Some(name) = cause
            .strip_prefix("The disruption budget ")
            .and_then(|rest| rest.strip_suffix(" is still being processed by the server."))
        {
            return format!("blocked by PDB {name}: its status is still being processed");
        }
    }
    message.to_string()
}

fn parse_budget_cause(cause: &str) -> Option<String> {
    let rest = cause.strip_prefix("The disruption budget ")?;
    let (name, rest) = rest.split_once(" needs ")?;
    let (desired, rest) = rest.split_once(" healthy pods and has ")?;
    let current = rest.strip_suffix(" currently")?;
    Some(format!(
        "blocked by PDB {name}: needs {desired} healthy, has {current}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::response::{StatusCause, StatusDetails};

    fn status(code: u16, reason: &str, message: &str, causes: &[&str]) -> kube::core::Status {
        let mut s = kube::core::Status::failure(message, reason);
        s.code = code;
        s.details = Some(StatusDetails {
            causes: causes
                .iter()
                .map(|m| StatusCause {
                    reason: "DisruptionBudget".into(),
                    message: m.to_string(),
                    field: String::new(),
                })
                .collect(),
            retry_after_seconds: if code == StatusCode::TOO_MANY_REQUESTS.as_u16() {
                10
            } else {
                0
            },
            name: String::new(),
            group: String::new(),
            kind: "pods".into(),
            uid: String::new(),
        });
        s
    }

    #[test]
    fn pdb_429_names_the_budget_and_its_numbers() {
        let s = status(
            429,
            "TooManyRequests",
            "Cannot evict pod as it would violate the pod's disruption budget.",
            &["The disruption budget web needs 5 healthy pods and has 5 currently"],
        );
        assert_eq!(
            classify(&s),
            EvictionAnswer::Blocked {
                reason: "blocked by PDB web: needs 5 healthy, has 5".into(),
                retry_after_secs: Some(10),
            }
        );
    }

    #[test]
    fn other_answers() {
        assert_eq!(
            classify(&status(404, "NotFound", "pods \"p\" not found", &[])),
            EvictionAnswer::Gone
        );
        assert_eq!(
            classify(&status(
                409,
                "Conflict",
                "Precondition failed: UID in precondition: a, UID in object meta: b",
                &[]
            )),
            EvictionAnswer::Gone
        );
        assert_eq!(
            classify(&status(
                409,
                "Conflict",
                "Operation cannot be fulfilled on Pod \"web-0\": the UID in the precondition (a) does not match the UID in record (b). The object might have been deleted and then recreated",
                &[]
            )),
            EvictionAnswer::Gone
        );
        assert!(matches!(
            classify(&status(
                500,
                "",
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                &[]
            )),
            EvictionAnswer::Retry { .. }
        ));
        assert!(matches!(
            classify(&status(
                403,
                "Forbidden",
                "pods \"p\" is forbidden: unable to create new content in namespace x because it is being terminated",
                &[]
            )),
            EvictionAnswer::Retry { .. }
        ));
        assert!(matches!(
            classify(&status(403, "Forbidden", "forbidden", &[])),
            EvictionAnswer::Rejected { .. }
        ));
    }

    #[test]
    fn stale_pdb_status_is_explained() {
        assert_eq!(
            blocked_reason(
                "x",
                &["The disruption budget web is still being processed by the server."]
            ),
            "blocked by PDB web: its status is still being processed"
        );
    }
}
