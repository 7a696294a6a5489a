//! User impersonation: a request carrying `Impersonate-User` (with
//! `Impersonate-Group`, `Impersonate-Uid`, `Impersonate-Extra-<key>`) is
//! served as that user once the real one is allowed to `impersonate` each
//! part, as k8s.io/apiserver/pkg/endpoints/filters/impersonation.go does:
//! a service account's name is checked as `serviceaccounts` in its
//! namespace, another user as `users`, groups as `groups`, the uid as
//! `uids.authentication.k8s.io`, extras as
//! `userextras.authentication.k8s.io/<key>` named by the value. A refusal
//! is RBAC's 403 for that check (`users "bob" is forbidden: User "alice"
//! cannot impersonate resource "users" in API group "" at the cluster
//! scope`).
//! https://kubernetes.io/docs/reference/access-authn-authz/authentication/#user-impersonation

use http::HeaderMap;

use super::rbac::{self, Attributes, Target, UserInfo};
use super::route::percent_decode;
use super::status::ApiError;
use crate::store::Store;

const AUTHENTICATION_GROUP: &str = "authentication.k8s.io";

fn values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect()
}

/// `Impersonate-Extra-<key>` headers: the key unescaped (it travels
/// percent-encoded in the header name), with its values.
fn extras(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(name, value)| {
            let key = name.as_str().strip_prefix("impersonate-extra-")?;
            Some((percent_decode(key, false), value.to_str().ok()?.to_string()))
        })
        .collect()
}

fn may_impersonate(
    store: &Store,
    requester: &UserInfo,
    group: &str,
    resource: &str,
    subresource: &str,
    namespace: &str,
    name: &str,
) -> Result<(), ApiError> {
    rbac::authorize(
        store,
        requester,
        &Attributes {
            verb: "impersonate".into(),
            target: Target::Resource {
                group: group.into(),
                resource: resource.into(),
                subresource: subresource.into(),
                namespace: namespace.into(),
                name: name.into(),
            },
        },
    )
}

/// The user a request is served as: `requester`, or whom it impersonates.
pub fn effective_user(
    store: &Store,
    requester: UserInfo,
    headers: &HeaderMap,
) -> Result<UserInfo, ApiError> {
    let users = values(headers, "impersonate-user");
    let groups = values(headers, "impersonate-group");
    let uids = values(headers, "impersonate-uid");
    let extras = extras(headers);
    let Some(user) = users.first() else {
        if groups.is_empty() && uids.is_empty() && extras.is_empty() {
            return Ok(requester);
        }
        return Err(ApiError::internal(
            "requested impersonation of groups, uid or extras without impersonating a user",
        ));
    };
    let service_account = user
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'));
    match service_account {
        Some((namespace, name)) => may_impersonate(
            store,
            &requester,
            "",
            "serviceaccounts",
            "",
            namespace,
            name,
        )?,
        None => may_impersonate(store, &requester, "", "users", "", "", user)?,
    }
    for group in &groups {
        may_impersonate(store, &requester, "", "groups", "", "", group)?;
    }
    for uid in &uids {
        may_impersonate(store, &requester, AUTHENTICATION_GROUP, "uids", "", "", uid)?;
    }
    for (key, value) in &extras {
        may_impersonate(
            store,
            &requester,
            AUTHENTICATION_GROUP,
            "userextras",
            key,
            "",
            value,
        )?;
    }
    // A service account impersonated without groups is in its own groups.
    let mut impersonated_groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    if impersonated_groups.is_empty()
        && let Some((namespace, _)) = service_account
    {
        impersonated_groups = vec![
            "system:serviceaccounts".to_string(),
            format!("system:serviceaccounts:{namespace}"),
        ];
    }
    if *user == UserInfo::anonymous().name {
        return Ok(UserInfo {
            name: user.to_string(),
            groups: impersonated_groups,
        });
    }
    Ok(UserInfo::authenticated(
        user.to_string(),
        impersonated_groups,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_keys_are_unescaped() {
        assert_eq!(
            percent_decode("scopes.example.com%2fx%20y", false),
            "scopes.example.com/x y"
        );
        assert_eq!(percent_decode("plain", false), "plain");
        assert_eq!(percent_decode("bad%zz", false), "bad%zz");
    }
}
