//! Waiting for a drained node's volumes to detach before its VM goes away,
//! so the attach/detach controller never has to force-detach after 6
//! minutes (k8s-mechanics §7).

use futures::StreamExt;
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use std::collections::BTreeMap;
use tokio::time::Instant;

/// Wait until no VolumeAttachment on `node` is attached. `Ok(false)` when
/// the deadline passes first; the names still attached are logged.
pub async fn wait_detached(
    client: &Client,
    node: &str,
    deadline: Instant,
) -> Result<bool, kube::Error> {
    let api: Api<VolumeAttachment> = Api::all(client.clone());
    // No field selector exists for spec.nodeName: watch them all (there are
    // few) and filter here.
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut attached: BTreeMap<String, bool> = BTreeMap::new();
    let mut buffer: BTreeMap<String, bool> = BTreeMap::new();
    let mut ready = false;
    let relevant = |va: &VolumeAttachment| va.spec.node_name == node;
    let is_attached = |va: &VolumeAttachment| va.status.as_ref().is_none_or(|s| s.attached);
    loop {
        if ready && attached.values().all(|a| !a) {
            return Ok(true);
        }
        let next = tokio::time::timeout_at(deadline, events.next()).await;
        let Ok(Some(event)) = next else {
            tracing::warn!(node, still_attached = ?attached.keys().collect::<Vec<_>>(), "volumes did not detach in time");
            return Ok(false);
        };
        match event {
            // A refusal (401/403: the credentials may not list or watch
            // VolumeAttachments) never passes by waiting: fail now, naming
            // it, instead of retrying until the deadline.
            Err(
                watcher::Error::InitialListFailed(e)
                | watcher::Error::WatchStartFailed(e)
                | watcher::Error::WatchFailed(e),
            ) if super::errors::is_refused(&e) => {
                return Err(e);
            }
            Err(e) => tracing::debug!(node, error = %e, "volume attachment watch interrupted"),
            Ok(watcher::Event::Init) => buffer.clear(),
            Ok(watcher::Event::InitApply(va)) => {
                if relevant(&va) {
                    buffer.insert(
                        va.metadata.name.clone().unwrap_or_default(),
                        is_attached(&va),
                    );
                }
            }
            Ok(watcher::Event::InitDone) => {
                attached = std::mem::take(&mut buffer);
                ready = true;
            }
            Ok(watcher::Event::Apply(va)) => {
                if relevant(&va) {
                    attached.insert(
                        va.metadata.name.clone().unwrap_or_default(),
                        is_attached(&va),
                    );
                }
            }
            Ok(watcher::Event::Delete(va)) => {
                attached.remove(va.metadata.name.as_deref().unwrap_or(""));
            }
        }
    }
}
