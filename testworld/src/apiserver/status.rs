//! `metav1.Status` errors with the codes, reasons and messages real API
//! servers send (reference §6), so clients classify them the same way.

use serde_json::{Map, Value, json};

use crate::resources::Resource;
use crate::store::StoreError;

/// One entry of `details.causes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

/// An error answer: HTTP code plus the Status body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    /// `""` when the server sends no reason (the multiple-PDB eviction case).
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Box<Details>>,
}

/// `details` of a Status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Details {
    pub name: String,
    pub group: String,
    /// The resource plural, as real servers put there.
    pub kind: String,
    pub causes: Vec<Cause>,
    pub retry_after_seconds: u64,
}

impl Details {
    pub fn of(resource: &Resource, name: &str) -> Details {
        Details {
            name: name.to_string(),
            group: resource.group.to_string(),
            kind: resource.plural.to_string(),
            ..Details::default()
        }
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        if !self.name.is_empty() {
            m.insert("name".into(), json!(self.name));
        }
        if !self.group.is_empty() {
            m.insert("group".into(), json!(self.group));
        }
        if !self.kind.is_empty() {
            m.insert("kind".into(), json!(self.kind));
        }
        if !self.causes.is_empty() {
            let causes: Vec<Value> = self
                .causes
                .iter()
                .map(|c| {
                    let mut cm = Map::new();
                    if !c.reason.is_empty() {
                        cm.insert("reason".into(), json!(c.reason));
                    }
                    if !c.message.is_empty() {
                        cm.insert("message".into(), json!(c.message));
                    }
                    if !c.field.is_empty() {
                        cm.insert("field".into(), json!(c.field));
                    }
                    Value::Object(cm)
                })
                .collect();
            m.insert("causes".into(), Value::Array(causes));
        }
        if self.retry_after_seconds > 0 {
            m.insert("retryAfterSeconds".into(), json!(self.retry_after_seconds));
        }
        Value::Object(m)
    }
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: Details) -> ApiError {
        self.details = Some(Box::new(details));
        self
    }

    /// The `Retry-After` header value real servers send with this error.
    pub fn retry_after(&self) -> Option<u64> {
        self.details
            .as_ref()
            .map(|d| d.retry_after_seconds)
            .filter(|s| *s > 0)
    }

    /// The Status body.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("kind".into(), json!("Status"));
        m.insert("apiVersion".into(), json!("v1"));
        m.insert("metadata".into(), json!({}));
        m.insert("status".into(), json!("Failure"));
        m.insert("message".into(), json!(self.message));
        if !self.reason.is_empty() {
            m.insert("reason".into(), json!(self.reason));
        }
        if let Some(d) = &self.details {
            m.insert("details".into(), d.to_json());
        }
        m.insert("code".into(), json!(self.code));
        Value::Object(m)
    }

    pub fn not_found(resource: &Resource, name: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("{} {:?} not found", resource.qualified_plural(), name),
        )
        .with_details(Details::of(resource, name))
    }

    pub fn namespace_not_found(namespace: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("namespaces {namespace:?} not found"),
        )
        .with_details(Details {
            name: namespace.to_string(),
            kind: "namespaces".into(),
            ..Details::default()
        })
    }

    /// An unknown URL: what real servers answer for a resource they do not
    /// serve.
    pub fn no_such_path() -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(Details::default())
    }

    pub fn already_exists(resource: &Resource, name: &str) -> ApiError {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} {:?} already exists", resource.qualified_plural(), name),
        )
        .with_details(Details::of(resource, name))
    }

    pub fn conflict(resource: &Resource, name: &str, message: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {:?}: {message}",
                resource.qualified_plural(),
                name
            ),
        )
        .with_details(Details::of(resource, name))
    }

    /// 422 with one cause per `(field, cause type, message)`.
    pub fn invalid(resource: &Resource, name: &str, errors: &[(&str, &str, String)]) -> ApiError {
        let list: Vec<String> = errors
            .iter()
            .map(|(field, _, msg)| format!("{field}: {msg}"))
            .collect();
        let joined = if list.len() == 1 {
            list[0].clone()
        } else {
            format!("[{}]", list.join(", "))
        };
        let mut details = Details::of(resource, name);
        details.causes = errors
            .iter()
            .map(|(field, reason, msg)| Cause {
                reason: reason.to_string(),
                message: msg.clone(),
                field: field.to_string(),
            })
            .collect();
        ApiError::new(
            422,
            "Invalid",
            format!(
                "{} {:?} is invalid: {joined}",
                resource.qualified_plural(),
                name
            ),
        )
        .with_details(details)
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn expired(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    pub fn too_old_resource_version(requested: u64, oldest: u64) -> ApiError {
        ApiError::expired(format!("too old resource version: {requested} ({oldest})"))
    }

    pub fn too_many_requests(message: impl Into<String>, retry_after_seconds: u64) -> ApiError {
        ApiError::new(429, "TooManyRequests", message).with_details(Details {
            retry_after_seconds,
            ..Details::default()
        })
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
        .with_details(Details::default())
    }

    pub fn service_unavailable() -> ApiError {
        ApiError::new(
            503,
            "ServiceUnavailable",
            "The server is currently unable to handle the request",
        )
        .with_details(Details {
            retry_after_seconds: 1,
            ..Details::default()
        })
    }

    pub fn method_not_allowed(method: &str) -> ApiError {
        ApiError::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
        )
        .with_details(Details::default())
    }

    pub fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: \
                 application/json-patch+json, application/merge-patch+json, \
                 application/apply-patch+yaml, application/strategic-merge-patch+json \
                 (got {content_type:?})"
            ),
        )
        .with_details(Details::default())
    }

    /// Map a store failure on `resource` to its Status.
    pub fn from_store(err: StoreError, resource: &Resource) -> ApiError {
        match err {
            StoreError::NotFound { name, .. } => ApiError::not_found(resource, &name),
            StoreError::AlreadyExists { name, .. } => ApiError::already_exists(resource, &name),
            StoreError::Conflict { name, message, .. } => {
                ApiError::conflict(resource, &name, &message)
            }
            StoreError::Invalid { name, message, .. } => {
                let (field, msg) = match message.split_once(": ") {
                    Some((f, m)) => (f.to_string(), m.to_string()),
                    None => (String::new(), message.clone()),
                };
                ApiError::invalid(
                    resource,
                    &name,
                    &[(field.as_str(), "FieldValueInvalid", msg)],
                )
            }
            StoreError::Expired { requested, oldest } => {
                ApiError::too_old_resource_version(requested, oldest)
            }
        }
    }
}

/// The success Status of deletes of types that do not return the object.
pub fn delete_success(resource: &Resource, object: &Value) -> Value {
    let mut details = Map::new();
    details.insert(
        "name".into(),
        object
            .pointer("/metadata/name")
            .cloned()
            .unwrap_or(json!("")),
    );
    if !resource.group.is_empty() {
        details.insert("group".into(), json!(resource.group));
    }
    details.insert("kind".into(), json!(resource.plural));
    if let Some(uid) = object.pointer("/metadata/uid") {
        details.insert("uid".into(), uid.clone());
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": Value::Object(details),
    })
}

/// The Status a successful subresource POST (eviction, binding) answers
/// with, at 201 (reference §0 item 2).
pub fn created_success() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{LEASES, NODES};

    #[test]
    fn not_found_names_the_qualified_plural_and_details_the_plural() {
        let e = ApiError::not_found(&LEASES, "x");
        let j = e.to_json();
        assert_eq!(j["message"], "leases.coordination.k8s.io \"x\" not found");
        assert_eq!(j["details"]["kind"], "leases");
        assert_eq!(j["details"]["group"], "coordination.k8s.io");
        assert_eq!(j["code"], 404);
        assert_eq!(j["reason"], "NotFound");
    }

    #[test]
    fn conflict_message_matches_real_servers() {
        let e = ApiError::conflict(&NODES, "n", crate::store::STALE_RV_MESSAGE);
        assert_eq!(
            e.message,
            "Operation cannot be fulfilled on nodes \"n\": the object has been modified; please apply your changes to the latest version and try again"
        );
        assert!(e.to_json()["details"].get("group").is_none());
    }

    #[test]
    fn empty_reason_is_omitted_and_retry_after_is_exposed() {
        let e = ApiError::new(500, "", "x");
        assert!(e.to_json().get("reason").is_none());
        let t = ApiError::too_many_requests("m", 10);
        assert_eq!(t.retry_after(), Some(10));
        assert_eq!(t.to_json()["details"]["retryAfterSeconds"], 10);
        assert_eq!(ApiError::too_many_requests("m", 0).retry_after(), None);
    }
}
