//! The bootstrap signer and token cleaner of kube-controller-manager
//! (`kubernetes:pkg/controller/bootstrap`), as kubeadm enables them.
//!
//! - Signer: keeps `kube-public/cluster-info` `data["jws-kubeconfig-<id>"]`
//!   equal to the detached JWS of `data.kubeconfig` for every token Secret
//!   valid for signing, and drops the entries of every other token.
//! - Cleaner: deletes token Secrets once expired (an unparseable expiration
//!   counts as expired), with a uid precondition, at their expiry.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jiff::Timestamp;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::informer::{At, Change, Reconciler, Slice, str_at};
use super::jws;
use super::objects::uid_of;
use crate::resources::{CONFIGMAPS, SECRETS};
use crate::store::{Preconditions, Store, StoreError};

pub const TOKEN_SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
const TOKEN_NAMESPACE: &str = "kube-system";
const CLUSTER_INFO_NAMESPACE: &str = "kube-public";
const CLUSTER_INFO: &str = "cluster-info";
const JWS_KEY_PREFIX: &str = "jws-kubeconfig-";

/// Which objects the bootstrap controllers watch.
pub(crate) fn interest(resource: &'static crate::resources::Resource, object: &Value) -> bool {
    if std::ptr::eq(resource, &SECRETS) {
        str_at(object, "/metadata/namespace") == TOKEN_NAMESPACE
            && str_at(object, "/type") == TOKEN_SECRET_TYPE
    } else {
        str_at(object, "/metadata/namespace") == CLUSTER_INFO_NAMESPACE
            && str_at(object, "/metadata/name") == CLUSTER_INFO
    }
}

/// A field of a token Secret: `data` (base64) or, if absent, `stringData`.
pub fn token_field(secret: &Value, key: &str) -> Option<String> {
    if let Some(encoded) = secret.at(&format!("/data/{key}")).and_then(Value::as_str) {
        return STANDARD
            .decode(encoded)
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
    }
    secret
        .at(&format!("/stringData/{key}"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// When the token expires: `Ok(None)` never, `Err(())` unparseable (which
/// counts as already expired).
fn expiration(secret: &Value) -> Result<Option<Timestamp>, ()> {
    match token_field(secret, "expiration") {
        None => Ok(None),
        Some(s) => s.parse::<Timestamp>().map(Some).map_err(|_| ()),
    }
}

fn is_expired(secret: &Value, now: Timestamp) -> bool {
    match expiration(secret) {
        Ok(Some(at)) => now >= at,
        Ok(None) => false,
        Err(()) => true,
    }
}

/// The `(id, secret)` of a token Secret valid for signing: the name is
/// `bootstrap-token-<id>` with a 6-character id, `token-id` matches it, the
/// secret is non-empty, it is not expired and `usage-bootstrap-signing` is
/// exactly `"true"`.
pub fn signing_token(secret: &Value, now: Timestamp) -> Option<(String, String)> {
    let name = str_at(secret, "/metadata/name");
    let id = name.strip_prefix("bootstrap-token-")?;
    let id_ok = id.len() == 6
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !id_ok || token_field(secret, "token-id").as_deref() != Some(id) {
        return None;
    }
    let token_secret = token_field(secret, "token-secret").filter(|s| !s.is_empty())?;
    if is_expired(secret, now)
        || token_field(secret, "usage-bootstrap-signing").as_deref() != Some("true")
    {
        return None;
    }
    Some((id.to_string(), token_secret))
}

/// The cluster-info `data` after signing: stale `jws-kubeconfig-*` entries
/// removed, one entry per token in `tokens` (id → secret).
pub fn signed_data(
    data: &serde_json::Map<String, Value>,
    tokens: &BTreeMap<String, String>,
) -> serde_json::Map<String, Value> {
    let mut out = data.clone();
    out.retain(|k, _| match k.strip_prefix(JWS_KEY_PREFIX) {
        Some(id) => tokens.contains_key(id),
        None => true,
    });
    if let Some(kubeconfig) = data.get("kubeconfig").and_then(Value::as_str) {
        for (id, secret) in tokens {
            out.insert(
                format!("{JWS_KEY_PREFIX}{id}"),
                json!(jws::sign(kubeconfig, id, secret)),
            );
        }
    }
    out
}

pub(crate) struct Bootstrap {
    store: Arc<Store>,
    tokens: HashMap<String, Arc<Value>>,
    cluster_info: Option<Arc<Value>>,
    dirty: bool,
    /// The next token expiry, when signing and cleaning must run again.
    next_expiry: Option<Instant>,
}

impl Bootstrap {
    pub fn new(store: Arc<Store>) -> Self {
        Bootstrap {
            store,
            tokens: HashMap::new(),
            cluster_info: None,
            dirty: true,
            next_expiry: None,
        }
    }

    fn clean(&mut self, now: Timestamp) {
        let expired: Vec<Arc<Value>> = self
            .tokens
            .values()
            .filter(|s| is_expired(s, now))
            .cloned()
            .collect();
        for secret in expired {
            let pre = Preconditions {
                uid: Some(uid_of(&secret).to_string()),
                resource_version: None,
            };
            let name = str_at(&secret, "/metadata/name");
            match self.store.delete(&SECRETS, TOKEN_NAMESPACE, name, &pre) {
                Ok(_) | Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => {}
                Err(e) => tracing::warn!(error = %e, "token cleaner could not delete {name}"),
            }
        }
    }

    fn sign(&mut self, now: Timestamp) {
        let Some(cm) = &self.cluster_info else {
            return;
        };
        if cm.at("/data/kubeconfig").and_then(Value::as_str).is_none() {
            return;
        }
        let tokens: BTreeMap<String, String> = self
            .tokens
            .values()
            .filter_map(|s| signing_token(s, now))
            .collect();
        let result = self
            .store
            .modify(&CONFIGMAPS, CLUSTER_INFO_NAMESPACE, CLUSTER_INFO, |cm| {
                let data = cm
                    .get("data")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                cm["data"] = Value::Object(signed_data(&data, &tokens));
                Ok(())
            });
        match result {
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => tracing::warn!(error = %e, "bootstrap signer could not update cluster-info"),
        }
    }

    fn next_expiry(&self, now: Timestamp, now_instant: Instant) -> Option<Instant> {
        self.tokens
            .values()
            .filter_map(|s| expiration(s).ok().flatten())
            .filter(|at| *at > now)
            .min()
            .map(|at| {
                let wait = Duration::try_from(at.duration_since(now)).unwrap_or_default();
                now_instant + wait
            })
    }
}

impl Reconciler for Bootstrap {
    fn apply(&mut self, change: Change) {
        if change.is(&SECRETS) {
            match change.current() {
                Some(s) => self.tokens.insert(change.name.clone(), s.clone()),
                None => self.tokens.remove(&change.name),
            };
        } else {
            self.cluster_info = change.current().cloned();
        }
        self.dirty = true;
    }

    fn reconcile(&mut self, slice: &Slice) -> Option<Instant> {
        let now_instant = slice.now;
        let due = self.next_expiry.is_some_and(|at| at <= now_instant);
        if !self.dirty && !due {
            return self.next_expiry;
        }
        self.dirty = false;
        let now = Timestamp::now();
        self.clean(now);
        self.sign(now);
        self.next_expiry = self.next_expiry(now, now_instant);
        self.next_expiry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(name: &str, fields: &[(&str, &str)]) -> Value {
        let data: serde_json::Map<String, Value> = fields
            .iter()
            .map(|(k, v)| ((*k).to_string(), json!(STANDARD.encode(v))))
            .collect();
        json!({"metadata": {"name": name, "namespace": "kube-system"}, "type": TOKEN_SECRET_TYPE, "data": data})
    }

    #[test]
    fn signing_validity_follows_the_signer() {
        let now = Timestamp::now();
        let good = [
            ("token-id", "abcdef"),
            ("token-secret", "0123456789abcdef"),
            ("usage-bootstrap-signing", "true"),
        ];
        assert_eq!(
            signing_token(&secret("bootstrap-token-abcdef", &good), now),
            Some(("abcdef".into(), "0123456789abcdef".into()))
        );
        assert!(signing_token(&secret("bootstrap-token-zzzzzz", &good), now).is_none());
        assert!(signing_token(&secret("bootstrap-token-abcdefg", &good), now).is_none());
        let mut no_usage = good.to_vec();
        no_usage[2] = ("usage-bootstrap-signing", "yes");
        assert!(signing_token(&secret("bootstrap-token-abcdef", &no_usage), now).is_none());
        let mut expired = good.to_vec();
        expired.push(("expiration", "2000-01-01T00:00:00Z"));
        assert!(signing_token(&secret("bootstrap-token-abcdef", &expired), now).is_none());
        let mut garbage = good.to_vec();
        garbage.push(("expiration", "tomorrow"));
        assert!(signing_token(&secret("bootstrap-token-abcdef", &garbage), now).is_none());
        let mut future = good.to_vec();
        future.push(("expiration", "2999-01-01T00:00:00Z"));
        assert!(signing_token(&secret("bootstrap-token-abcdef", &future), now).is_some());
    }

    #[test]
    fn signed_data_replaces_stale_entries() {
        let data = json!({"kubeconfig": "kc", "jws-kubeconfig-old000": "x", "other": "y"});
        let tokens = BTreeMap::from([("abcdef".to_string(), "0123456789abcdef".to_string())]);
        let out = signed_data(data.as_object().unwrap(), &tokens);
        assert!(out.get("jws-kubeconfig-old000").is_none());
        assert_eq!(out["other"], "y");
        assert_eq!(
            out["jws-kubeconfig-abcdef"],
            json!(jws::sign("kc", "abcdef", "0123456789abcdef"))
        );
    }
}
