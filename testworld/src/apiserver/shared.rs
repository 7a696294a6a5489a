//! What every request handler shares: the store, the server's settings
//! and the state it keeps between requests (faults, metrics, paging,
//! watch lines, tokens).

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use super::faults::Faults;
use super::lines::LineCache;
use super::metrics::Metrics;
use super::paging::Pager;
use super::tokens::ServiceAccountTokens;
use crate::store::Store;

/// Everything request handlers share.
pub(crate) struct Shared {
    pub store: Arc<Store>,
    pub version: RwLock<String>,
    pub admin_token: String,
    pub addr: SocketAddr,
    pub faults: Faults,
    pub metrics: Metrics,
    pub pager: Pager,
    pub lines: LineCache,
    /// The ServiceAccount tokens issued.
    pub tokens: ServiceAccountTokens,
    /// Milliseconds between watch bookmarks.
    pub bookmark_interval_ms: AtomicU64,
    /// Closed (sender dropped) or set when the server stops.
    pub shutdown: watch::Receiver<bool>,
}
