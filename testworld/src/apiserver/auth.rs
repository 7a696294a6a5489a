//! Authentication, as kube-apiserver's union of authenticators
//! (`pkg/kubeapiserver/authenticator/config.go`): a client certificate
//! signed by the cluster CA (`CN` = user, each `O` a group;
//! `staging/src/k8s.io/apiserver/pkg/authentication/request/x509`), else a
//! bearer token — the static admin token (like `--token-auth-file`), a
//! ServiceAccount token this server issued ([`super::tokens`]) or a
//! bootstrap token checked against its Secret exactly as reference §3.
//! No credential at all is `system:anonymous`; a credential that fails is
//! 401. Every authenticated user is also in `system:authenticated`
//! (`group.NewAuthenticatedGroupAdder`).
//!
//! Authorization is [`super::rbac`].

use base64::Engine;
use http::HeaderMap;
use jiff::Timestamp;
use serde_json::Value;

use super::rbac::UserInfo;
use super::shared::Shared;
use super::status::ApiError;
use crate::resources::SECRETS;
use crate::store::Store;

/// The user of a verified client certificate: `CN` is the name, each `O`
/// a group (`x509.CommonNameUserConversion`). A certificate without a
/// common name authenticates no one.
pub fn certificate_user(cert_der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    if name.is_empty() {
        return None;
    }
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(String::from))
        .collect();
    Some(UserInfo::authenticated(name, groups))
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
pub fn authenticate_bootstrap_token(
    store: &Store,
    token: &str,
    now: Timestamp,
) -> Option<UserInfo> {
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
    Some(UserInfo::authenticated(
        format!("system:bootstrap:{id}"),
        groups,
    ))
}

/// The user of the static admin token.
pub fn admin_token_user() -> UserInfo {
    UserInfo::authenticated(
        "kubernetes-admin".into(),
        vec![super::rbac::rules::PRIVILEGED_GROUP.into()],
    )
}

/// Who sent this request: the verified client certificate's user, else
/// the bearer token's; none of them is anonymous, a bad token 401.
pub fn authenticate(
    shared: &Shared,
    client_certificate: Option<&UserInfo>,
    headers: &HeaderMap,
) -> Result<UserInfo, ApiError> {
    if let Some(user) = client_certificate {
        return Ok(user.clone());
    }
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(UserInfo::anonymous());
    };
    let value = value.to_str().map_err(|_| ApiError::unauthorized())?;
    let Some((scheme, token)) = value.split_once(' ') else {
        return Err(ApiError::unauthorized());
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::unauthorized());
    }
    let token = token.trim();
    if constant_time_eq(token.as_bytes(), shared.admin_token.as_bytes()) {
        return Ok(admin_token_user());
    }
    let now = Timestamp::now();
    shared
        .tokens
        .authenticate(&shared.store, token, now)
        .or_else(|| authenticate_bootstrap_token(&shared.store, token, now))
        .ok_or_else(ApiError::unauthorized)
}

#[cfg(test)]
mod tests {
    use super::*;
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
        assert_eq!(
            user,
            UserInfo {
                name: "system:bootstrap:abcdef".into(),
                groups: vec![
                    "system:bootstrappers".to_string(),
                    "system:bootstrappers:kubeadm:default-node-token".to_string(),
                    "system:authenticated".to_string(),
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
}

#[cfg(test)]
mod certificate_tests {
    use super::*;
    use crate::apiserver::ClusterCa;

    #[test]
    fn a_client_certificate_names_its_user_and_groups() {
        let ca = ClusterCa::generate().unwrap();
        let cert = ca
            .sign_client_cert("kubernetes-admin", &["system:masters"])
            .unwrap();
        assert_eq!(
            certificate_user(&cert.cert_der),
            Some(UserInfo {
                name: "kubernetes-admin".into(),
                groups: vec!["system:masters".into(), "system:authenticated".into()],
            })
        );
    }
}
