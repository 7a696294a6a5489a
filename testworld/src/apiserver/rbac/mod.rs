//! Authorization: every request is authorized with RBAC, as a kubeadm
//! cluster's `--authorization-mode=Node,RBAC` does, over the Roles,
//! ClusterRoles and bindings stored like any other kind. The Node
//! authorizer has nothing to decide here: the simulated kubelets write
//! the store in-process and never send a request.
//!
//! - [`rules`]: the pure decision (rule matching, bindings, aggregation,
//!   messages);
//! - [`bootstrap`]: the roles and bindings a kubeadm cluster starts with.

pub(crate) mod bootstrap;
pub(crate) mod rules;

use serde_json::Value;

use super::route::{Query, ResourceRequest, Route};
use super::status::{ApiError, Details};
use crate::resources::{CLUSTERROLEBINDINGS, CLUSTERROLES, ROLEBINDINGS, ROLES};
use crate::store::Store;
pub use rules::{Attributes, Decision, Policy, Target, UserInfo};

/// The RBAC objects a decision in `namespace` reads, from the store.
pub fn policy(store: &Store, namespace: &str) -> Policy {
    let list = |resource, ns: &str| {
        store
            .list(resource, Some(ns), |o| {
                o.pointer("/metadata/deletionTimestamp").is_none()
            })
            .0
    };
    Policy {
        cluster_roles: list(&CLUSTERROLES, ""),
        cluster_role_bindings: list(&CLUSTERROLEBINDINGS, ""),
        roles: if namespace.is_empty() {
            Vec::new()
        } else {
            list(&ROLES, namespace)
        },
        role_bindings: if namespace.is_empty() {
            Vec::new()
        } else {
            list(&ROLEBINDINGS, namespace)
        },
    }
}

/// Is `user` allowed `attributes`?
pub fn decide(store: &Store, user: &UserInfo, attributes: &Attributes) -> Decision {
    if user.groups.iter().any(|g| g == rules::PRIVILEGED_GROUP) {
        // No need to read the policy.
        return rules::authorize(&Policy::default(), user, attributes);
    }
    let namespace = match &attributes.target {
        Target::Resource { namespace, .. } => namespace.as_str(),
        Target::NonResource { .. } => "",
    };
    rules::authorize(&policy(store, namespace), user, attributes)
}

/// `metadata.name` of a list or watch limited to one object by its field
/// selector: real servers authorize such a request on that name
/// (`RequestInfoFactory.NewRequestInfo`,
/// `staging/src/k8s.io/apiserver/pkg/endpoints/request/requestinfo.go`).
fn name_from_field_selector(query: &Query) -> Option<String> {
    let selector = query.get("fieldSelector")?;
    if selector.contains(',') {
        return None;
    }
    let (key, value) = selector
        .split_once("==")
        .or_else(|| selector.split_once('='))?;
    (key.trim() == "metadata.name" && !value.is_empty() && !value.contains(['/', '%']))
        .then(|| value.trim().to_string())
}

/// The attributes of a request: a resource request by its route, any
/// other path by its lower-case HTTP method.
pub fn attributes(
    verb: &str,
    method: &http::Method,
    route: &Route,
    path: &str,
    query: &Query,
) -> Attributes {
    match route {
        Route::Resource(r) => resource_attributes(verb, r, query),
        _ => Attributes {
            verb: method.as_str().to_ascii_lowercase(),
            target: Target::NonResource {
                path: path.to_string(),
            },
        },
    }
}

fn resource_attributes(verb: &str, r: &ResourceRequest, query: &Query) -> Attributes {
    let name = match (&r.name, verb) {
        (Some(name), _) => name.clone(),
        (None, "list" | "watch") => name_from_field_selector(query).unwrap_or_default(),
        (None, _) => String::new(),
    };
    Attributes {
        verb: verb.to_string(),
        target: Target::Resource {
            group: r.resource.group.to_string(),
            resource: r.resource.plural.to_string(),
            subresource: r.subresource.clone().unwrap_or_default(),
            namespace: r.namespace.clone().unwrap_or_default(),
            name,
        },
    }
}

/// Authorize a request: `Ok` or the 403 a real server answers.
pub fn authorize(store: &Store, user: &UserInfo, attributes: &Attributes) -> Result<(), ApiError> {
    let decision = decide(store, user, attributes);
    if decision.allowed {
        return Ok(());
    }
    let message = rules::forbidden_message(user, attributes, &decision.reason);
    let details = match &attributes.target {
        Target::Resource {
            group,
            resource,
            name,
            ..
        } => Details {
            name: name.clone(),
            group: group.clone(),
            kind: resource.clone(),
            ..Details::default()
        },
        Target::NonResource { .. } => Details::default(),
    };
    Err(ApiError::new(403, "Forbidden", message).with_details(details))
}

/// The `resourceAttributes` or `nonResourceAttributes` of an access
/// review's spec as request attributes.
pub fn review_attributes(spec: &Value) -> Option<Attributes> {
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    if let Some(r) = spec.get("resourceAttributes") {
        return Some(Attributes {
            verb: text(r, "verb"),
            target: Target::Resource {
                group: text(r, "group"),
                resource: text(r, "resource"),
                subresource: text(r, "subresource"),
                namespace: text(r, "namespace"),
                name: text(r, "name"),
            },
        });
    }
    let n = spec.get("nonResourceAttributes")?;
    Some(Attributes {
        verb: text(n, "verb"),
        target: Target::NonResource {
            path: text(n, "path"),
        },
    })
}
