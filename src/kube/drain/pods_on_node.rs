//! The pods on a node, as a drain reads them: one list (the precheck), and
//! the events of a drain — the node's pods now, then their changes.
//!
//! A drain's events start with a **streaming list** where the API server
//! serves one: a single watch whose first events are the pods now
//! (`sendInitialEvents=true`, `resourceVersionMatch=NotOlderThan`), ending
//! with a bookmark annotated `k8s.io/initial-events-end` (k8s-mechanics
//! "Watch"; KEP-3157). It is one request where a list and a watch are two.
//! kube-apiserver serves it where its `WatchList` feature gate is on (by
//! default 1.32, and 1.34 on; not 1.33 or before 1.32) and refuses it with a
//! 422 elsewhere; after one refusal the run's drains list and then watch,
//! as client-go's reflector falls back to a list.
//!
//! The streaming list is asked with no resourceVersion: a consistent read,
//! as fresh as the moment of the request (the API reference's
//! `sendInitialEvents`), so it holds every pod bound before the drain's
//! cordon. kube's watcher asks its streaming lists at resourceVersion "0",
//! which the API server may answer from a cache that lags, hence the
//! stream of our own here.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, WatchEvent, WatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use crate::kube::decoded::{DrainPod, map_event};
use crate::kube::errors;
use crate::kube::pages::list_all;

/// The annotation on the bookmark that ends a streaming list's first state.
const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// Whether the API server refused a streaming list. Shared by the drains of
/// a run: the first refusal makes every later drain list and watch.
#[derive(Clone, Debug, Default)]
pub struct StreamingLists {
    refused: Arc<AtomicBool>,
}

impl StreamingLists {
    fn refused(&self) -> bool {
        self.refused.load(Ordering::Relaxed)
    }

    fn refuse(&self) {
        self.refused.store(true, Ordering::Relaxed);
    }
}

/// A 422 to a streaming list: the server does not take its parameters (the
/// `WatchList` gate is off, or the server predates it), and will not within
/// the run.
fn refuses_streaming_lists(error: &kube::Error) -> bool {
    errors::status_code(error) == Some(http::StatusCode::UNPROCESSABLE_ENTITY)
}

/// The field selector of the pods on `node`.
fn on_node(node: &str) -> String {
    format!("spec.nodeName={node}")
}

/// The pods on `node` now (every page), decoded as far as a drain reads
/// them ([`DrainPod`]).
pub async fn list(client: &Client, node: &str) -> Result<Vec<Pod>, kube::Error> {
    let api: Api<DrainPod> = Api::all(client.clone());
    let params = ListParams::default().fields(&on_node(node));
    let pods = list_all(&api, &params).await?;
    Ok(pods.into_iter().map(Pod::from).collect())
}

pub type PodEvents = BoxStream<'static, Result<watcher::Event<Pod>, watcher::Error>>;

/// The events of the pods on `node`, as kube's watcher gives them: the pods
/// now (`Init`, `InitApply`…, `InitDone`), then their changes, the pods now
/// again after a break. First from a streaming list unless `streaming`
/// learned that the server refuses them; when that stream ends for any
/// reason (a refusal, an error, the server's timeout, a 410), kube's
/// watcher takes over and lists.
pub fn events(client: &Client, node: &str, streaming: &StreamingLists) -> PodEvents {
    let api = Api::<DrainPod>::all(client.clone());
    let fields = on_node(node);
    let listing = watcher(api.clone(), watcher::Config::default().fields(&fields))
        .default_backoff()
        .map_ok(|event| map_event(event, Pod::from));
    if streaming.refused() {
        return listing.boxed();
    }
    let params = WatchParams::streaming_lists().fields(&fields);
    streaming_list(api, params, streaming.clone(), node.to_string())
        .map(Ok)
        .chain(listing)
        .boxed()
}

type RawEvents = BoxStream<'static, kube::Result<WatchEvent<DrainPod>>>;

/// What starts a streaming list.
struct Ask {
    api: Api<DrainPod>,
    params: WatchParams,
    refusals: StreamingLists,
    node: String,
}

enum Streaming {
    Start(Box<Ask>),
    /// Before the bookmark that ends the first state.
    Initial(RawEvents),
    Changes(RawEvents),
}

/// One streaming list and its changes, as watcher events; ends (without an
/// error: the watcher after it lists again) when the server refuses it or
/// the stream breaks.
fn streaming_list(
    api: Api<DrainPod>,
    params: WatchParams,
    refusals: StreamingLists,
    node: String,
) -> impl futures::Stream<Item = watcher::Event<Pod>> + Send {
    let start = Streaming::Start(Box::new(Ask {
        api,
        params,
        refusals,
        node,
    }));
    stream::unfold(Some(start), |state| async move {
        let mut state = state?;
        loop {
            state = match state {
                Streaming::Start(ask) => match ask.api.watch(&ask.params, "").await {
                    Ok(events) => {
                        return Some((
                            watcher::Event::Init,
                            Some(Streaming::Initial(events.boxed())),
                        ));
                    }
                    Err(e) => {
                        if refuses_streaming_lists(&e) {
                            ask.refusals.refuse();
                        }
                        tracing::debug!(node = %ask.node, error = %e, "streaming list of the node's pods refused; listing");
                        return None;
                    }
                },
                Streaming::Initial(mut events) => match events.next().await {
                    Some(Ok(WatchEvent::Added(pod) | WatchEvent::Modified(pod))) => {
                        let next = Some(Streaming::Initial(events));
                        return Some((watcher::Event::InitApply(Pod::from(pod)), next));
                    }
                    Some(Ok(WatchEvent::Bookmark(bookmark)))
                        if bookmark.metadata.annotations.get(INITIAL_EVENTS_END)
                            == Some(&"true".to_string()) =>
                    {
                        return Some((watcher::Event::InitDone, Some(Streaming::Changes(events))));
                    }
                    Some(Ok(WatchEvent::Bookmark(_))) => Streaming::Initial(events),
                    // A deletion before the first state is whole, an error
                    // event, a broken stream: the state is not known whole.
                    _ => return None,
                },
                Streaming::Changes(mut events) => match events.next().await {
                    Some(Ok(WatchEvent::Added(pod) | WatchEvent::Modified(pod))) => {
                        let next = Some(Streaming::Changes(events));
                        return Some((watcher::Event::Apply(Pod::from(pod)), next));
                    }
                    Some(Ok(WatchEvent::Deleted(pod))) => {
                        let next = Some(Streaming::Changes(events));
                        return Some((watcher::Event::Delete(Pod::from(pod)), next));
                    }
                    Some(Ok(WatchEvent::Bookmark(_))) => Streaming::Changes(events),
                    _ => return None,
                },
            }
        }
    })
}
