//! ServiceAccount tokens: issued by the TokenRequest API
//! (`serviceaccounts/<name>/token`, what `kubectl create token` and the
//! kubelet's projected volumes use) or by the test world directly, and
//! authenticated as `system:serviceaccount:<ns>:<name>` in the groups
//! `system:serviceaccounts` and `system:serviceaccounts:<ns>`
//! (`pkg/serviceaccount/util.go`). As the real authenticator
//! (`pkg/serviceaccount/claims.go` `Validate`), a token stops working when
//! it expires or when its ServiceAccount is deleted or replaced by one with
//! another uid.
//!
//! Real tokens are JWTs signed by the service-account key; clients treat
//! them as opaque, so these are random strings remembered by the server.

use std::collections::HashMap;
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use super::rbac::UserInfo;
use super::status::ApiError;
use crate::resources::SERVICEACCOUNTS;
use crate::store::Store;

/// `TokenRequest` default and minimum lifetimes
/// (`pkg/registry/core/serviceaccount/storage/token.go`: 1 hour default,
/// 10 minutes minimum).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
pub const MIN_EXPIRATION_SECONDS: i64 = 600;

struct Issued {
    namespace: String,
    name: String,
    uid: String,
    expires: Timestamp,
}

/// The tokens this server issued.
#[derive(Default)]
pub(crate) struct ServiceAccountTokens {
    issued: Mutex<HashMap<String, Issued>>,
}

fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn uid_of(object: &Value) -> String {
    object
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

impl ServiceAccountTokens {
    /// A token for an existing ServiceAccount, valid for `seconds`; 404
    /// when there is no such ServiceAccount.
    pub fn issue(
        &self,
        store: &Store,
        namespace: &str,
        name: &str,
        seconds: i64,
        now: Timestamp,
    ) -> Result<(String, Timestamp), ApiError> {
        let account = store
            .get(&SERVICEACCOUNTS, namespace, name)
            .ok_or_else(|| ApiError::not_found(&SERVICEACCOUNTS, name))?;
        let expires = now
            .checked_add(SignedDuration::from_secs(seconds))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let token = random_token();
        self.issued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                token.clone(),
                Issued {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    uid: uid_of(&account),
                    expires,
                },
            );
        Ok((token, expires))
    }

    /// The ServiceAccount user of `token`, if it is one of ours and still
    /// valid.
    pub fn authenticate(&self, store: &Store, token: &str, now: Timestamp) -> Option<UserInfo> {
        let issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        let entry = issued.get(token)?;
        if now > entry.expires {
            return None;
        }
        let account = store.get(&SERVICEACCOUNTS, &entry.namespace, &entry.name)?;
        if uid_of(&account) != entry.uid || account.pointer("/metadata/deletionTimestamp").is_some()
        {
            return None;
        }
        Some(UserInfo::authenticated(
            format!("system:serviceaccount:{}:{}", entry.namespace, entry.name),
            vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{}", entry.namespace),
            ],
        ))
    }
}
