//! Building Kubernetes clients from kubeconfig, kubectl's way: `--kubeconfig`
//! (or `KUBECONFIG`, a list of files), else `~/.kube/config`, else the
//! in-cluster service account; `--context` picks the context.
//!
//! Two kinds of client: [`Retry::Default`] keeps kube's retry of 429, 503
//! and 504 (right for reads and most writes); [`Retry::Off`] is for drains:
//! a PDB's 429 must reach the drain, which decides, reports and bounds its
//! own retries.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use ::kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use ::kube::{Client, Config};
use thiserror::Error;

use super::fence::{Fence, FenceLayer};
use super::impersonate::{ImpersonateLayer, Impersonation};
use super::in_flight::InFlightLayer;
use super::proxy::{ProxyEnv, ProxyError, proxy_for};

/// Where to find the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientOptions {
    /// `--kubeconfig` / `KUBECONFIG`: one file, or several joined like
    /// `PATH`. `None`: `KUBECONFIG` from the environment, else
    /// `~/.kube/config`, else in-cluster.
    pub kubeconfig: Option<OsString>,
    /// `--context`; `None` = the kubeconfig's current-context.
    pub context: Option<String>,
    /// `--request-timeout`: how long connecting, and each wait for the
    /// server to send or accept more, may take; zero for no limit. `None`:
    /// kube's defaults.
    pub request_timeout: Option<std::time::Duration>,
    /// `--as` / `--as-group`: each given part replaces the kubeconfig
    /// user's `as` / `as-groups`, as kubectl's flags do.
    pub impersonation: Impersonation,
}

/// Whether the client retries 429/503/504 by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// kube's default: up to 15 retries with backoff, honouring
    /// `Retry-After`.
    Default,
    /// No retry inside the client. For drains: a PDB's 429 must reach the
    /// drain, which reports the blocking PDB and bounds the wait by
    /// `drain.timeout`.
    Off,
}

/// No client could be built. Every variant is a problem with the input
/// (exit 2), named by the flag that gave it.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("kubeconfig {} (from --kubeconfig or KUBECONFIG) does not exist", path.display())]
    KubeconfigMissing { path: PathBuf },
    #[error(
        "none of the kubeconfig files in --kubeconfig or KUBECONFIG exists: {}",
        list_paths(paths)
    )]
    KubeconfigsMissing { paths: Vec<PathBuf> },
    #[error("cannot read kubeconfig {}: {source}", path.display())]
    KubeconfigUnreadable {
        path: PathBuf,
        #[source]
        source: KubeconfigError,
    },
    #[error("cannot combine the kubeconfig files in --kubeconfig or KUBECONFIG: {source}")]
    KubeconfigMerge {
        #[source]
        source: KubeconfigError,
    },
    #[error(
        "no kubeconfig: pass --kubeconfig, set KUBECONFIG or create ~/.kube/config \
         (not running in a cluster either: {in_cluster})"
    )]
    NoKubeconfig { in_cluster: String },
    #[error(
        "context {context:?} (from --context) is not in the kubeconfig; {}",
        available_contexts(available)
    )]
    UnknownContext {
        context: String,
        available: Vec<String>,
    },
    #[error(
        "the kubeconfig has no current-context; pass --context ({})",
        available_contexts(available)
    )]
    NoCurrentContext { available: Vec<String> },
    #[error(
        "the kubeconfig's current-context {context:?} is not in it; pass --context ({})",
        available_contexts(available)
    )]
    MissingCurrentContext {
        context: String,
        available: Vec<String>,
    },
    #[error("kubeconfig context {context:?} cannot be used: {source}")]
    Context {
        context: String,
        #[source]
        source: KubeconfigError,
    },
    #[error("cannot reach {server}: {source}")]
    Proxy {
        server: String,
        #[source]
        source: ProxyError,
    },
    #[error("cannot set up a client for {server}: {source}")]
    Build {
        server: String,
        #[source]
        source: ::kube::Error,
    },
}

fn list_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn available_contexts(available: &[String]) -> String {
    if available.is_empty() {
        "it has no contexts".to_string()
    } else {
        format!("contexts there: {}", available.join(", "))
    }
}

/// A client with kube's default retries.
pub async fn client(options: &ClientOptions) -> Result<Client, ClientError> {
    client_from_config(config(options).await?, Retry::Default)
}

/// A client with kube's 429/503/504 retry turned off, for drains: a PDB's
/// 429 must reach the drain.
pub async fn drain_client(options: &ClientOptions) -> Result<Client, ClientError> {
    client_from_config(config(options).await?, Retry::Off)
}

/// A client from an already loaded config.
pub fn client_from_config(mut config: Config, retry: Retry) -> Result<Client, ClientError> {
    config.default_retry = retry == Retry::Default;
    let server = server_url(&config);
    let impersonation = impersonation_of(&config);
    let builder = ::kube::client::ClientBuilder::try_from(config)
        .map_err(|source| ClientError::Build { server, source })?;
    Ok(builder
        .with_layer(&ImpersonateLayer::new(&impersonation))
        .build())
}

/// A client that makes no change to the cluster once `fence` is raised
/// (the run lost, or could not prove, its lock): mutating requests fail
/// before they leave the process; reads go on.
///
/// `in_flight` bounds the requests in flight over every client built with
/// a clone of it (see [`super::in_flight`]).
pub fn fenced_client_from_config(
    mut config: Config,
    retry: Retry,
    fence: &Fence,
    in_flight: &InFlightLayer,
) -> Result<Client, ClientError> {
    config.default_retry = retry == Retry::Default;
    let server = server_url(&config);
    let impersonation = impersonation_of(&config);
    let builder = ::kube::client::ClientBuilder::try_from(config)
        .map_err(|source| ClientError::Build { server, source })?;
    // A request the fence refuses takes no permit.
    Ok(builder
        .with_layer(in_flight)
        .with_layer(&FenceLayer::new(fence.clone()))
        .with_layer(&ImpersonateLayer::new(&impersonation))
        .build())
}

/// Who the config says requests act as (see [`super::impersonate`]).
pub fn impersonation_of(config: &Config) -> Impersonation {
    let auth = &config.auth_info;
    Impersonation {
        user: auth.impersonate.clone().filter(|u| !u.is_empty()),
        groups: auth.impersonate_groups.clone().unwrap_or_default(),
        uid: auth.impersonate_uid.clone().filter(|u| !u.is_empty()),
        extra: auth
            .impersonate_user_extra
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
    }
}

/// The API server's URL, for messages.
pub fn server_url(config: &Config) -> String {
    config
        .cluster_url
        .to_string()
        .trim_end_matches('/')
        .to_string()
}

/// The client configuration `options` point at. Reads files; contacts
/// nothing.
pub async fn config(options: &ClientOptions) -> Result<Config, ClientError> {
    let mut config = located_config(options).await?;
    if let Some(timeout) = options.request_timeout {
        apply_request_timeout(&mut config, timeout);
    }
    let flags = &options.impersonation;
    if let Some(user) = &flags.user {
        config.auth_info.impersonate = Some(user.clone());
    }
    if !flags.groups.is_empty() {
        config.auth_info.impersonate_groups = Some(flags.groups.clone());
    }
    Ok(config)
}

/// Bound connecting, writing and each read by `timeout` (zero: no bound).
/// The read bound is one of inactivity, counted from each request sent: a
/// watch quiet for longer is closed, and its watcher reopens it.
fn apply_request_timeout(config: &mut Config, timeout: std::time::Duration) {
    let bound = (!timeout.is_zero()).then_some(timeout);
    config.connect_timeout = bound;
    config.write_timeout = bound;
    config.read_timeout = bound;
    config.reset_reader_on_write = bound.is_some();
}

async fn located_config(options: &ClientOptions) -> Result<Config, ClientError> {
    let from_env = || std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty());
    let paths: Vec<PathBuf> = match options.kubeconfig.clone().or_else(from_env) {
        Some(value) => std::env::split_paths(&value)
            .filter(|p| !p.as_os_str().is_empty())
            .collect(),
        None => Vec::new(),
    };
    let kubeconfig = if paths.is_empty() {
        match default_kubeconfig_path().filter(|p| p.exists()) {
            Some(path) => read_one(&path)?,
            None => return in_cluster(options),
        }
    } else {
        read_all(&paths)?
    };
    let context = choose_context(&kubeconfig, options.context.as_deref())?;
    let cluster_proxy_url = cluster_proxy_url(&kubeconfig, &context);
    let kube_options = KubeConfigOptions {
        context: Some(context.clone()),
        ..KubeConfigOptions::default()
    };
    let config = Config::from_custom_kubeconfig(kubeconfig, &kube_options)
        .await
        .map_err(|source| ClientError::Context { context, source })?;
    with_proxy(config, cluster_proxy_url.as_deref())
}

/// The `proxy-url` of the cluster `context` points at.
fn cluster_proxy_url(kubeconfig: &Kubeconfig, context: &str) -> Option<String> {
    let cluster = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context)?
        .context
        .as_ref()?
        .cluster
        .clone();
    kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == cluster)?
        .cluster
        .as_ref()?
        .proxy_url
        .clone()
}

/// Set the proxy as kubectl would choose it (see [`super::proxy`]).
fn with_proxy(mut config: Config, cluster_proxy_url: Option<&str>) -> Result<Config, ClientError> {
    config.proxy_url = proxy_for(
        &config.cluster_url,
        cluster_proxy_url,
        &ProxyEnv::from_process(),
    )
    .map_err(|source| ClientError::Proxy {
        server: server_url(&config),
        source,
    })?;
    Ok(config)
}

fn default_kubeconfig_path() -> Option<PathBuf> {
    std::env::home_dir().map(|home| home.join(".kube").join("config"))
}

fn in_cluster(options: &ClientOptions) -> Result<Config, ClientError> {
    let no_kubeconfig = |in_cluster: String| ClientError::NoKubeconfig { in_cluster };
    if options.context.is_some() {
        // A context only exists in a kubeconfig.
        return Err(no_kubeconfig("--context needs a kubeconfig".to_string()));
    }
    let config = Config::incluster().map_err(|error| no_kubeconfig(error.to_string()))?;
    with_proxy(config, None)
}

fn read_one(path: &Path) -> Result<Kubeconfig, ClientError> {
    if !path.exists() {
        return Err(ClientError::KubeconfigMissing {
            path: path.to_path_buf(),
        });
    }
    Kubeconfig::read_from(path).map_err(|source| ClientError::KubeconfigUnreadable {
        path: path.to_path_buf(),
        source,
    })
}

/// One file must exist; in a list, missing files are skipped as kubectl
/// does, but at least one must exist.
fn read_all(paths: &[PathBuf]) -> Result<Kubeconfig, ClientError> {
    if let [path] = paths {
        return read_one(path);
    }
    let existing: Vec<&PathBuf> = paths.iter().filter(|p| p.exists()).collect();
    if existing.is_empty() {
        return Err(ClientError::KubeconfigsMissing {
            paths: paths.to_vec(),
        });
    }
    let mut merged = Kubeconfig::default();
    for path in existing {
        merged = merged
            .merge(read_one(path)?)
            .map_err(|source| ClientError::KubeconfigMerge { source })?;
    }
    Ok(merged)
}

fn choose_context(kubeconfig: &Kubeconfig, wanted: Option<&str>) -> Result<String, ClientError> {
    let available: Vec<String> = kubeconfig.contexts.iter().map(|c| c.name.clone()).collect();
    match wanted {
        Some(context) if available.iter().any(|c| c == context) => Ok(context.to_string()),
        Some(context) => Err(ClientError::UnknownContext {
            context: context.to_string(),
            available,
        }),
        None => match kubeconfig.current_context.as_deref() {
            None | Some("") => Err(ClientError::NoCurrentContext { available }),
            Some(current) if available.iter().any(|c| c == current) => Ok(current.to_string()),
            Some(current) => Err(ClientError::MissingCurrentContext {
                context: current.to_string(),
                available,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    fn kubeconfig(server: &str, current: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: {current}\n\
             clusters:\n- name: one\n  cluster: {{server: \"{server}\"}}\n\
             - name: two\n  cluster: {{server: \"http://127.0.0.1:2\"}}\n\
             contexts:\n- name: one\n  context: {{cluster: one, user: u}}\n\
             - name: two\n  context: {{cluster: two, user: u}}\n\
             users:\n- name: u\n  user: {{token: t}}\n"
        )
    }

    fn options(path: &Path, context: Option<&str>) -> ClientOptions {
        ClientOptions {
            kubeconfig: Some(path.as_os_str().to_owned()),
            context: context.map(str::to_string),
            request_timeout: None,
            impersonation: Impersonation::default(),
        }
    }

    #[tokio::test]
    async fn context_selects_the_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, kubeconfig("http://127.0.0.1:1", "one")).unwrap();

        let current = config(&options(&path, None)).await.unwrap();
        assert_eq!(server_url(&current), "http://127.0.0.1:1");
        let two = config(&options(&path, Some("two"))).await.unwrap();
        assert_eq!(server_url(&two), "http://127.0.0.1:2");
    }

    #[tokio::test]
    async fn problems_name_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, kubeconfig("http://127.0.0.1:1", "one")).unwrap();

        let error = config(&options(&path, Some("three"))).await.unwrap_err();
        assert!(
            matches!(error, ClientError::UnknownContext { .. }),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "context \"three\" (from --context) is not in the kubeconfig; contexts there: one, two"
        );

        let missing = dir.path().join("nope");
        let error = config(&options(&missing, None)).await.unwrap_err();
        assert!(
            error
                .to_string()
                .contains("(from --kubeconfig or KUBECONFIG) does not exist"),
            "{error}"
        );
        assert!(error.to_string().contains("nope"), "{error}");

        std::fs::write(&path, kubeconfig("http://127.0.0.1:1", "gone")).unwrap();
        let error = config(&options(&path, None)).await.unwrap_err();
        assert!(
            matches!(error, ClientError::MissingCurrentContext { .. }),
            "{error:?}"
        );

        std::fs::write(&path, "clusters: [: oops").unwrap();
        let error = config(&options(&path, None)).await.unwrap_err();
        assert!(
            matches!(error, ClientError::KubeconfigUnreadable { .. }),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_list_of_kubeconfigs_skips_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, kubeconfig("http://127.0.0.1:1", "one")).unwrap();
        let list = std::env::join_paths([dir.path().join("missing"), path.clone()]).unwrap();
        let options = ClientOptions {
            kubeconfig: Some(list),
            context: None,
            request_timeout: None,
            impersonation: Impersonation::default(),
        };
        assert_eq!(
            server_url(&config(&options).await.unwrap()),
            "http://127.0.0.1:1"
        );
    }

    /// A server whose first answer is 429 (a PDB blocking an eviction) and
    /// every later one a `/version` document. Returns its URL and the number
    /// of requests it has seen.
    async fn throttle_once_server() -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let (status, body) = if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                    (
                        "429 Too Many Requests",
                        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Cannot evict pod as it would violate the pod's disruption budget.","reason":"TooManyRequests","code":429}"#,
                    )
                } else {
                    (
                        "200 OK",
                        r#"{"major":"1","minor":"34","gitVersion":"v1.34.2","gitCommit":"","gitTreeState":"","buildDate":"","goVersion":"","compiler":"","platform":"linux/amd64"}"#,
                    )
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        (url, seen)
    }

    #[tokio::test]
    async fn the_drain_client_sees_the_first_429() {
        let (url, seen) = throttle_once_server().await;
        let config = Config::new(url.parse().unwrap());
        let client = client_from_config(config, Retry::Off).unwrap();
        let error = client.apiserver_version().await.unwrap_err();
        assert!(
            crate::kube::errors::is_too_many_requests(&error),
            "expected the 429, got {error:?}"
        );
        assert_eq!(seen.load(Ordering::SeqCst), 1, "no retry inside the client");
    }

    #[tokio::test]
    async fn the_default_client_retries_a_429() {
        let (url, seen) = throttle_once_server().await;
        let config = Config::new(url.parse().unwrap());
        let client = client_from_config(config, Retry::Default).unwrap();
        let version = client.apiserver_version().await.unwrap();
        assert_eq!(version.git_version, "v1.34.2");
        assert_eq!(
            seen.load(Ordering::SeqCst),
            2,
            "one retry inside the client"
        );
    }
}
