//! The Kubernetes API server emulator: HTTPS on loopback, the real wire
//! protocol (reference §6), eviction with PDBs (§4), bootstrap-token
//! authentication (§3), discovery and kubectl's Table responses.
//!
//! Modules, from the top of a request down (none imports one above it):
//! - [`tls`]: the cluster CA and the serving certificate;
//! - `server`: listener and connections; `handler`: one request, from
//!   faults and authentication to the route; `dispatch`: the table that
//!   hands a resource request to its handler;
//! - the handlers: `objects` (get, list, create, update, delete, binding),
//!   `watch`, `patch` and `apply` (server-side apply), `eviction`,
//!   `scale`, `reviews` (access reviews and TokenRequests);
//! - what they share: `context` (the request as a handler sees it),
//!   `body` (request bodies), `strategy` (what the types' registry
//!   strategies do), `respond` (responses), `service` (what creating a
//!   Service allocates), `shared` (the server's state);
//! - `selector`, `paging`, `route`, `status`, `discovery`, `table`,
//!   `negotiation`, `auth`, `health`: pure pieces the handlers use;
//! - `rbac`: authorization of every request, with the default roles;
//!   `tokens`: the ServiceAccount tokens it issues;
//! - `openapi`: `/openapi/v2` and `/openapi/v3`, and the field validation
//!   they make possible; `kinds`: the Rust types of each served kind;
//! - `faults`, `metrics`: what tests and benchmarks drive and read.

mod apply;
mod auth;
mod body;
mod context;
mod discovery;
mod dispatch;
mod eviction;
mod faults;
mod handler;
mod health;
mod impersonation;
mod kinds;
mod lines;
mod merge;
mod metrics;
mod negotiation;
mod objects;
mod openapi;
mod paging;
mod patch;
mod protobuf;
mod rbac;
mod respond;
mod reviews;
pub(crate) mod route;
mod scale;
mod selector;
mod server;
mod service;
mod shared;
mod status;
mod strategy;
mod table;
mod tls;
mod tokens;
mod watch;

pub use faults::{FaultFilter, Faults};
pub use metrics::RequestCounts;
pub use tls::{ClusterCa, SERVING_SANS, SignedCert, TlsError, spki_sha256_hex_of};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use base64::Engine;
use serde_json::json;
use thiserror::Error;
use tokio::sync::watch as tokio_watch;
use tokio::task::JoinHandle;

use crate::resources::NAMESPACES;
use crate::store::Store;

/// How to start the server.
#[derive(Clone, Debug)]
pub struct ApiServerConfig {
    /// `gitVersion` that `/version` reports (`v1.33.4`); changeable at run
    /// time with [`ApiServerHandle::set_version`].
    pub version: String,
    /// Where to listen; port 0 picks a free one.
    pub bind: SocketAddr,
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        ApiServerConfig {
            version: "v1.33.4".into(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

/// A ServiceAccount token could not be issued (no such ServiceAccount).
#[derive(Debug, Error)]
#[error("cannot issue a ServiceAccount token: {0}")]
pub struct TokenError(pub String);

/// Failure to start the server.
#[derive(Debug, Error)]
#[error("cannot start the API server emulator: {0}")]
pub struct StartError(pub String);

/// The namespaces every cluster has from the start.
const INITIAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Default time between watch bookmarks.
const DEFAULT_BOOKMARK_INTERVAL: Duration = Duration::from_secs(5);

struct HandleInner {
    shared: Arc<shared::Shared>,
    url: String,
    ca_pem: String,
    /// The admin's client certificate (`CN=kubernetes-admin`,
    /// `O=system:masters`).
    admin_cert: SignedCert,
    shutdown: tokio_watch::Sender<bool>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for HandleInner {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.accept.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
    }
}

/// A running API server. Clones share it; dropping the last clone stops
/// it.
#[derive(Clone)]
pub struct ApiServerHandle {
    inner: Arc<HandleInner>,
}

impl std::fmt::Debug for ApiServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServerHandle")
            .field("url", &self.inner.url)
            .finish()
    }
}

impl ApiServerHandle {
    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.inner.url.clone()
    }

    /// PEM of the cluster CA the server's certificate is signed by.
    pub fn ca_pem(&self) -> String {
        self.inner.ca_pem.clone()
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.inner.shared.addr
    }

    /// The bearer token of the cluster-admin user in the kubeconfig.
    pub fn admin_token(&self) -> String {
        self.inner.shared.admin_token.clone()
    }

    /// A kubeconfig (YAML) for the admin user, with the CA inline: a
    /// client certificate in `system:masters`, as kubeadm writes.
    pub fn kubeconfig_yaml(&self) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let cert = &self.inner.admin_cert;
        self.kubeconfig_with_credentials(
            "kubernetes-admin",
            &format!(
                "client-certificate-data: {}\n    client-key-data: {}",
                b64(&cert.cert_pem),
                b64(&cert.key_pem)
            ),
        )
    }

    /// A kubeconfig (YAML) for any bearer token (a bootstrap token, or an
    /// invalid one in tests).
    pub fn kubeconfig_with_token(&self, user: &str, token: &str) -> String {
        self.kubeconfig_with_credentials(user, &format!("token: {token}"))
    }

    /// A token of the ServiceAccount `namespace/name`, valid for
    /// `seconds`, as the TokenRequest API issues (the ServiceAccount must
    /// exist).
    pub fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        seconds: i64,
    ) -> Result<String, TokenError> {
        let shared = &self.inner.shared;
        shared
            .tokens
            .issue(
                &shared.store,
                namespace,
                name,
                seconds,
                jiff::Timestamp::now(),
            )
            .map(|(token, _)| token)
            .map_err(|e| TokenError(e.message))
    }

    /// A kubeconfig (YAML) authenticating as the ServiceAccount
    /// `namespace/name` with a fresh token valid for `seconds`.
    pub fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
        seconds: i64,
    ) -> Result<String, TokenError> {
        let token = self.service_account_token(namespace, name, seconds)?;
        Ok(self.kubeconfig_with_token(name, &token))
    }

    /// A kubeconfig whose user entry holds `credentials` (YAML lines).
    fn kubeconfig_with_credentials(&self, user: &str, credentials: &str) -> String {
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.inner.ca_pem);
        format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: kubernetes\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\n\
             users:\n\
             - name: {user}\n  user:\n    {credentials}\n\
             contexts:\n\
             - name: {user}@kubernetes\n  context:\n    cluster: kubernetes\n    user: {user}\n\
             current-context: {user}@kubernetes\n\
             preferences: {{}}\n",
            url = self.inner.url,
        )
    }

    /// Change what `/version` reports (kubeadm upgrades do this).
    pub fn set_version(&self, git_version: &str) {
        *self
            .inner
            .shared
            .version
            .write()
            .unwrap_or_else(|p| p.into_inner()) = git_version.to_string();
    }

    /// What `/version` reports now.
    pub fn version(&self) -> String {
        self.inner
            .shared
            .version
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The fault switches of this server.
    pub fn faults(&self) -> Faults {
        self.inner.shared.faults.clone()
    }

    /// Requests so far, by verb and resource, and bytes sent.
    pub fn request_counts(&self) -> RequestCounts {
        self.inner.shared.metrics.snapshot()
    }

    /// How often watches with `allowWatchBookmarks=true` get a BOOKMARK.
    pub fn set_bookmark_interval(&self, interval: Duration) {
        let ms = interval.as_millis().clamp(1, u64::MAX as u128) as u64;
        self.inner
            .shared
            .bookmark_interval_ms
            .store(ms, Ordering::Relaxed);
    }

    /// Stop serving: the listener closes and every connection is cut.
    pub fn stop(&self) {
        let _ = self.inner.shutdown.send(true);
        if let Some(task) = self
            .inner
            .accept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

fn random_token() -> String {
    let bytes: [u8; 24] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn ensure_namespaces(store: &Store) {
    for ns in INITIAL_NAMESPACES {
        if store.get(&NAMESPACES, "", ns).is_none() {
            // AlreadyExists from a concurrent creator is fine.
            let _ = store.create(
                &NAMESPACES,
                "",
                json!({
                    "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}},
                    "spec": {"finalizers": ["kubernetes"]},
                    "status": {"phase": "Active"},
                }),
            );
        }
    }
}

/// Start serving `store` over HTTPS with a certificate signed by `ca`.
pub async fn start(
    store: Arc<Store>,
    ca: Arc<ClusterCa>,
    config: ApiServerConfig,
) -> Result<ApiServerHandle, StartError> {
    let tls = tls::server_config(&ca).map_err(|e| StartError(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|e| StartError(format!("bind {}: {e}", config.bind)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartError(format!("local address: {e}")))?;
    ensure_namespaces(&store);
    rbac::bootstrap::ensure(&store);
    // kubeadm's admin.conf identity. kubeadm ≥ 1.29 puts admin.conf in
    // `kubeadm:cluster-admins` (bound to cluster-admin) and keeps
    // `system:masters` for super-admin.conf; the sandbox's one admin
    // kubeconfig is the super-admin's.
    let admin_cert = ca
        .sign_client_cert("kubernetes-admin", &["system:masters"])
        .map_err(|e| StartError(e.to_string()))?;
    let (shutdown_tx, shutdown_rx) = tokio_watch::channel(false);
    let shared = Arc::new(shared::Shared {
        store,
        version: RwLock::new(config.version),
        admin_token: random_token(),
        addr,
        faults: Faults::default(),
        metrics: metrics::Metrics::default(),
        pager: paging::Pager::default(),
        lines: lines::LineCache::default(),
        tokens: tokens::ServiceAccountTokens::default(),
        bookmark_interval_ms: AtomicU64::new(DEFAULT_BOOKMARK_INTERVAL.as_millis() as u64),
        shutdown: shutdown_rx,
    });
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let task = tokio::spawn(server::accept_loop(listener, acceptor, shared.clone()));
    Ok(ApiServerHandle {
        inner: Arc::new(HandleInner {
            shared,
            url: format!("https://{addr}"),
            ca_pem: ca.cert_pem.clone(),
            admin_cert,
            shutdown: shutdown_tx,
            accept: Mutex::new(Some(task)),
        }),
    })
}
