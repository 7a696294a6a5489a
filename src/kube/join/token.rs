//! Bootstrap tokens (k8s-mechanics §3).

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubesurge_provider::Sensitive;
use rand::Rng;

/// The group kubeadm's RBAC binds node bootstrap permissions to (create
/// CSRs, auto-approval, read kubeadm-config): tokens we mint must carry it.
pub const TOKEN_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
/// `type` of bootstrap token Secrets.
pub const TOKEN_SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A bootstrap token `<id>.<secret>`: id `[a-z0-9]{6}`, secret `[a-z0-9]{16}`.
pub struct BootstrapToken {
    id: String,
    secret: Sensitive<String>,
}

impl BootstrapToken {
    /// A fresh token from the thread's CSPRNG (ChaCha, seeded by the OS).
    pub fn generate() -> BootstrapToken {
        let mut rng = rand::rng();
        let mut pick = |n: usize| -> String {
            (0..n)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
                .collect()
        };
        let id = pick(6);
        let secret = pick(16);
        BootstrapToken {
            id,
            secret: Sensitive::new(secret),
        }
    }

    /// The public half; safe to log.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `bootstrap-token-<id>` in kube-system.
    pub fn secret_name(&self) -> String {
        format!("bootstrap-token-{}", self.id)
    }

    /// The full token, `<id>.<secret>`.
    pub fn token(&self) -> Sensitive<String> {
        Sensitive::new(format!("{}.{}", self.id, self.secret.expose()))
    }

    /// The Secret that makes the token valid until `now + ttl`, usable for
    /// authentication and for signing cluster-info, in kubeadm's node group.
    pub fn to_secret(
        &self,
        now: Timestamp,
        ttl: Duration,
        description: &str,
        labels: BTreeMap<String, String>,
    ) -> Secret {
        let expiration = now
            .checked_add(SignedDuration::try_from(ttl).unwrap_or(SignedDuration::MAX))
            .unwrap_or(Timestamp::MAX);
        let data: BTreeMap<String, ByteString> = [
            ("token-id", self.id.clone()),
            ("token-secret", self.secret.expose().clone()),
            (
                "expiration",
                expiration.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            ),
            ("usage-bootstrap-authentication", "true".into()),
            ("usage-bootstrap-signing", "true".into()),
            ("auth-extra-groups", TOKEN_GROUP.into()),
            ("description", description.into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
        .collect();
        Secret {
            metadata: ObjectMeta {
                name: Some(self.secret_name()),
                namespace: Some("kube-system".into()),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            type_: Some(TOKEN_SECRET_TYPE.into()),
            data: Some(data),
            ..Secret::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_token_part(s: &str, len: usize) -> bool {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    }

    #[test]
    fn generated_tokens_have_kubeadm_format_and_differ() {
        let a = BootstrapToken::generate();
        let b = BootstrapToken::generate();
        assert!(is_token_part(a.id(), 6));
        let full = a.token();
        let (id, secret) = full.expose().split_once('.').unwrap();
        assert_eq!(id, a.id());
        assert!(is_token_part(secret, 16));
        assert_ne!(a.token(), b.token());
    }

    #[test]
    fn secret_carries_usages_group_and_expiry() {
        let t = BootstrapToken::generate();
        let now: Timestamp = "2026-03-10T03:02:11Z".parse().unwrap();
        let s = t.to_secret(
            now,
            Duration::from_secs(20 * 60),
            "kubesurge run r1 slot w1",
            BTreeMap::new(),
        );
        assert_eq!(s.type_.as_deref(), Some(TOKEN_SECRET_TYPE));
        assert_eq!(
            s.metadata.name.unwrap(),
            format!("bootstrap-token-{}", t.id())
        );
        let data = s.data.unwrap();
        let get = |k: &str| String::from_utf8(data[k].0.clone()).unwrap();
        assert_eq!(get("expiration"), "2026-03-10T03:22:11Z");
        assert_eq!(get("usage-bootstrap-authentication"), "true");
        assert_eq!(get("usage-bootstrap-signing"), "true");
        assert_eq!(get("auth-extra-groups"), TOKEN_GROUP);
        assert_eq!(get("token-id"), t.id());
    }

    #[test]
    fn debug_of_token_is_redacted() {
        let t = BootstrapToken::generate();
        let shown = format!("{:?}", t.token());
        assert!(!shown.contains(t.id()));
    }
}
