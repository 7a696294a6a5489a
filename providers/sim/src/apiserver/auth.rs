//! Authentication (the admin bearer token; bootstrap tokens checked against
//! their Secrets exactly as reference §3) and a simplified authorizer.
//!
//! Authorization is not general RBAC; it hard-codes what a kubeadm cluster
//! grants the identities that reach this server:
//! - the admin token: everything (`cluster-admin`);
//! - everyone, anonymous included: `GET /version`, `/healthz`, `/livez`,
//!   `/readyz` (`system:public-info-viewer`) and `GET
//!   kube-public/configmaps/cluster-info`
//!   (`kubeadm:bootstrap-signer-clusterinfo`);
//! - bootstrap-token users additionally: discovery documents
//!   (`system:discovery`), `GET kube-system/configmaps/{kubeadm-config,
//!   kubelet-config}` and `GET nodes` (what `kubeadm join` reads).
//!
//! Anything else is 403 with the message real servers write.

use base64::Engine;
use http::HeaderMap;
use jiff::Timestamp;
use serde_json::Value;

use super::route::{ResourceRequest, Route, Special};
use super::status::{ApiError, Details};
use crate::resources::{CONFIGMAPS, NODES, SECRETS};
use crate::store::Store;

/// Who is asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum User {
    Admin,
    Anonymous,
    /// `system:bootstrap:<id>` with its groups.
    Bootstrap {
        token_id: String,
        groups: Vec<String>,
    },
}

impl User {
    pub fn name(&self) -> String {
        match self {
            User::Admin => "kubernetes-admin".into(),
            User::Anonymous => "system:anonymous".into(),
            User::Bootstrap { token_id, .. } => format!("system:bootstrap:{token_id}"),
        }
    }
}

/// Byte-wise comparison whose time does not depend on where the inputs
/// differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn is_token_part(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// `\Asystem:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]\z`.
fn valid_extra_group(g: &str) -> bool {
    let Some(rest) = g.strip_prefix("system:bootstrappers:") else {
        return false;
    };
    !rest.is_empty()
        && rest.len() <= 256
        && rest
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b':' || b == b'-')
        && rest.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
}

fn secret_data(secret: &Value, key: &str) -> Option<String> {
    if let Some(encoded) = secret
        .pointer(&format!("/data/{key}"))
        .and_then(Value::as_str)
    {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        return String::from_utf8(bytes).ok();
    }
    secret
        .pointer(&format!("/stringData/{key}"))
        .and_then(Value::as_str)
        .map(String::from)
}

/// Check a bootstrap token `<id>.<secret>` against its Secret. `None`
/// means not authenticated.
pub fn authenticate_bootstrap_token(store: &Store, token: &str, now: Timestamp) -> Option<User> {
    let (id, secret) = token.split_once('.')?;
    if !is_token_part(id, 6) || !is_token_part(secret, 16) {
        return None;
    }
    let object = store.get(&SECRETS, "kube-system", &format!("bootstrap-token-{id}"))?;
    if object.pointer("/metadata/deletionTimestamp").is_some() {
        return None;
    }
    if object.get("type").and_then(Value::as_str) != Some("bootstrap.kubernetes.io/token") {
        return None;
    }
    let has_data = object
        .get("data")
        .and_then(Value::as_object)
        .is_some_and(|d| !d.is_empty())
        || object
            .get("stringData")
            .and_then(Value::as_object)
            .is_some_and(|d| !d.is_empty());
    if !has_data {
        return None;
    }
    let stored_secret = secret_data(&object, "token-secret")?;
    if !constant_time_eq(stored_secret.as_bytes(), secret.as_bytes()) {
        return None;
    }
    if secret_data(&object, "token-id").as_deref() != Some(id) {
        return None;
    }
    if let Some(expiration) = secret_data(&object, "expiration") {
        // An unparseable expiration counts as expired.
        match expiration.parse::<Timestamp>() {
            Ok(at) if now <= at => {}
            _ => return None,
        }
    }
    if secret_data(&object, "usage-bootstrap-authentication").as_deref() != Some("true") {
        return None;
    }
    let mut groups = vec!["system:bootstrappers".to_string()];
    if let Some(extra) = secret_data(&object, "auth-extra-groups") {
        for g in extra.split(',') {
            if !valid_extra_group(g) {
                return None;
            }
            groups.push(g.to_string());
        }
    }
    Some(User::Bootstrap {
        token_id: id.to_string(),
        groups,
    })
}

/// Who sent these headers; an invalid credential is 401.
pub fn authenticate(
    store: &Store,
    admin_token: &str,
    headers: &HeaderMap,
) -> Result<User, ApiError> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(User::Anonymous);
    };
    let value = value.to_str().map_err(|_| ApiError::unauthorized())?;
    let Some((scheme, token)) = value.split_once(' ') else {
        return Err(ApiError::unauthorized());
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::unauthorized());
    }
    let token = token.trim();
    if constant_time_eq(token.as_bytes(), admin_token.as_bytes()) {
        return Ok(User::Admin);
    }
    authenticate_bootstrap_token(store, token, Timestamp::now()).ok_or_else(ApiError::unauthorized)
}

fn public_path(special: &Special) -> bool {
    matches!(special, Special::Version | Special::Health(..))
}

/// May `user` do `verb` on `route`?
pub fn authorize(user: &User, verb: &str, route: &Route, path: &str) -> Result<(), ApiError> {
    if *user == User::Admin {
        return Ok(());
    }
    let bootstrap = matches!(user, User::Bootstrap { .. });
    match route {
        Route::Special(special) if verb == "get" && (public_path(special) || bootstrap) => Ok(()),
        Route::Special(_) | Route::NotFound => Err(ApiError::new(
            403,
            "Forbidden",
            format!(
                "forbidden: User {:?} cannot {} path {:?}",
                user.name(),
                verb,
                path
            ),
        )
        .with_details(Details::default())),
        Route::Resource(request) => {
            if allowed(user, verb, request) {
                Ok(())
            } else {
                Err(forbidden(user, verb, request))
            }
        }
    }
}

fn allowed(user: &User, verb: &str, r: &ResourceRequest) -> bool {
    let get_configmap = |ns: &str, name: &str| {
        verb == "get"
            && r.resource == &CONFIGMAPS
            && r.subresource.is_none()
            && r.namespace.as_deref() == Some(ns)
            && r.name.as_deref() == Some(name)
    };
    if get_configmap("kube-public", "cluster-info") {
        return true;
    }
    match user {
        User::Admin => true,
        User::Anonymous => false,
        User::Bootstrap { .. } => {
            get_configmap("kube-system", "kubeadm-config")
                || get_configmap("kube-system", "kubelet-config")
                || (verb == "get" && r.resource == &NODES && r.subresource.is_none())
        }
    }
}

fn forbidden(user: &User, verb: &str, r: &ResourceRequest) -> ApiError {
    let mut resource = r.resource.plural.to_string();
    if let Some(sub) = &r.subresource {
        resource = format!("{resource}/{sub}");
    }
    let scope = match &r.namespace {
        Some(ns) => format!("in the namespace {ns:?}"),
        None => "at the cluster scope".into(),
    };
    let reason = format!(
        "User {:?} cannot {verb} resource {resource:?} in API group {:?} {scope}",
        user.name(),
        r.resource.group
    );
    let qualified = r.resource.qualified_plural();
    let message = match &r.name {
        Some(name) => format!("{qualified} {name:?} is forbidden: {reason}"),
        None => format!("{qualified} is forbidden: {reason}"),
    };
    ApiError::new(403, "Forbidden", message)
        .with_details(Details::of(r.resource, r.name.as_deref().unwrap_or("")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::PODS;
    use serde_json::json;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn token_secret(store: &Store, id: &str, secret: &str, extra: &[(&str, &str)]) {
        let mut data = serde_json::Map::new();
        data.insert("token-id".into(), json!(b64(id)));
        data.insert("token-secret".into(), json!(b64(secret)));
        data.insert("usage-bootstrap-authentication".into(), json!(b64("true")));
        for (k, v) in extra {
            if v.is_empty() {
                data.remove(*k);
            } else {
                data.insert(k.to_string(), json!(b64(v)));
            }
        }
        store
            .create(
                &SECRETS,
                "kube-system",
                json!({"metadata": {"name": format!("bootstrap-token-{id}")},
                       "type": "bootstrap.kubernetes.io/token", "data": data}),
            )
            .unwrap();
    }

    #[test]
    fn bootstrap_token_rules() {
        let store = Store::new();
        let now: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        token_secret(
            &store,
            "abcdef",
            "0123456789abcdef",
            &[(
                "auth-extra-groups",
                "system:bootstrappers:kubeadm:default-node-token",
            )],
        );
        let user = authenticate_bootstrap_token(&store, "abcdef.0123456789abcdef", now).unwrap();
        assert_eq!(user.name(), "system:bootstrap:abcdef");
        assert_eq!(
            user,
            User::Bootstrap {
                token_id: "abcdef".into(),
                groups: vec![
                    "system:bootstrappers".to_string(),
                    "system:bootstrappers:kubeadm:default-node-token".to_string()
                ]
            }
        );
        assert!(authenticate_bootstrap_token(&store, "abcdef.0123456789abcdee", now).is_none());
        assert!(authenticate_bootstrap_token(&store, "zzzzzz.0123456789abcdef", now).is_none());
        assert!(authenticate_bootstrap_token(&store, "ABCDEF.0123456789abcdef", now).is_none());

        token_secret(
            &store,
            "expire",
            "0123456789abcdef",
            &[("expiration", "2029-12-31T23:59:59Z")],
        );
        assert!(authenticate_bootstrap_token(&store, "expire.0123456789abcdef", now).is_none());
        token_secret(
            &store,
            "future",
            "0123456789abcdef",
            &[("expiration", "2030-01-02T00:00:00Z")],
        );
        assert!(authenticate_bootstrap_token(&store, "future.0123456789abcdef", now).is_some());
        token_secret(
            &store,
            "unpars",
            "0123456789abcdef",
            &[("expiration", "tomorrow")],
        );
        assert!(authenticate_bootstrap_token(&store, "unpars.0123456789abcdef", now).is_none());
        token_secret(
            &store,
            "nousag",
            "0123456789abcdef",
            &[("usage-bootstrap-authentication", "")],
        );
        assert!(authenticate_bootstrap_token(&store, "nousag.0123456789abcdef", now).is_none());
        token_secret(
            &store,
            "badgrp",
            "0123456789abcdef",
            &[("auth-extra-groups", "system:masters")],
        );
        assert!(authenticate_bootstrap_token(&store, "badgrp.0123456789abcdef", now).is_none());
        token_secret(
            &store,
            "wrngid",
            "0123456789abcdef",
            &[("token-id", "other1")],
        );
        assert!(authenticate_bootstrap_token(&store, "wrngid.0123456789abcdef", now).is_none());
    }

    #[test]
    fn forbidden_messages_match_real_servers() {
        let r = ResourceRequest {
            resource: &PODS,
            namespace: Some("default".into()),
            name: None,
            subresource: None,
            watch_path: false,
        };
        let e = authorize(&User::Anonymous, "list", &Route::Resource(r.clone()), "/").unwrap_err();
        assert_eq!(
            e.message,
            "pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        assert_eq!(e.code, 403);
        let cm = ResourceRequest {
            resource: &CONFIGMAPS,
            namespace: Some("kube-public".into()),
            name: Some("cluster-info".into()),
            ..r.clone()
        };
        assert!(authorize(&User::Anonymous, "get", &Route::Resource(cm.clone()), "/").is_ok());
        assert!(authorize(&User::Anonymous, "update", &Route::Resource(cm), "/").is_err());
        assert!(
            authorize(
                &User::Anonymous,
                "get",
                &Route::Special(Special::Version),
                "/version"
            )
            .is_ok()
        );
        let e = authorize(
            &User::Anonymous,
            "get",
            &Route::Special(Special::CoreVersions),
            "/api",
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "forbidden: User \"system:anonymous\" cannot get path \"/api\""
        );
    }
}
