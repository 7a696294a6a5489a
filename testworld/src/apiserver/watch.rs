//! Watch streams (reference §6): chunked JSON lines of `{"type","object"}`,
//! the initial ADDED burst for RV unset/"0" (and `sendInitialEvents`),
//! resumption from a resourceVersion, ADDED/DELETED when objects enter or
//! leave a selection, bookmarks, 410 as an ERROR event, and the end at
//! `timeoutSeconds`.
//!
//! Each event's line is serialized once and shared by every watcher that
//! sends it unchanged (`lines::LineCache`); watchers filter events from the
//! store's broadcast without any global lock.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Response, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::context::Ctx;
use super::lines::event_line;
use super::objects::selectors;
use super::respond::Body;
use super::selector::{FieldSelector, LabelSelector};
use super::shared::Shared;
use super::status::{ApiError, Cause, Details};
use super::table::{self, TableRequest};
use crate::cloud::discovery::parse_version;
use crate::resources::Resource;
use crate::store::{Event, EventType, StoreError, metadata_mut};

/// Watches without `timeoutSeconds` (or with 0) end after this long, as
/// real servers end them after `--min-request-timeout` (30 minutes).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
/// Bytes gathered from ready events before a chunk is sent.
const CHUNK_TARGET: usize = 256 * 1024;

fn bookmark_line(kind: &str, api_version: &str, rv: u64, initial_events_end: bool) -> Bytes {
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if initial_events_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let object = json!({"kind": kind, "apiVersion": api_version, "metadata": metadata});
    event_line("BOOKMARK", &object)
}

fn error_line(err: &ApiError) -> Bytes {
    event_line("ERROR", &err.to_json())
}

/// Whether kube-apiserver `version` serves streaming lists (its `WatchList`
/// feature gate by default): alpha and off through 1.31, beta and on in 1.32,
/// off again in 1.33 (kubernetes/kubernetes#131359, "Stop exposing
/// list-via-watch from the server"), on from 1.34 (kubernetes/kubernetes#132704;
/// the feature-gate page's stages, kubernetes/website#50538 and #51680).
pub(crate) fn watch_list_enabled(version: &str) -> bool {
    matches!(parse_version(version), Some((1, minor, _)) if minor == 32 || minor >= 34)
}

/// The watch half of `ValidateListOptions`
/// (k8s.io/apiserver/pkg/apis/meta/internalversion/validation,
/// `validateWatchOptions`): `sendInitialEvents` needs
/// `resourceVersionMatch=NotOlderThan` and the `WatchList` feature gate;
/// `resourceVersionMatch` needs `sendInitialEvents`. Every violation in one
/// 422 about `ListOptions.meta.k8s.io`, before the watch starts — a client
/// that asked for a streaming list learns it must list instead.
fn validate_watch_list(
    send_initial: Option<&str>,
    rv_match: Option<&str>,
    gate_enabled: bool,
) -> Result<(), ApiError> {
    const NOT_OLDER_THAN: &str = "NotOlderThan";
    let mut errors: Vec<(&str, &str, String)> = Vec::new();
    let rv_match = rv_match.unwrap_or("");
    if send_initial.is_some() {
        if rv_match != NOT_OLDER_THAN {
            errors.push((
                "resourceVersionMatch",
                "FieldValueForbidden",
                format!("Forbidden: sendInitialEvents requires setting resourceVersionMatch to {NOT_OLDER_THAN}"),
            ));
        }
        if !gate_enabled {
            errors.push((
                "sendInitialEvents",
                "FieldValueForbidden",
                "Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled".into(),
            ));
        }
    }
    if !rv_match.is_empty() {
        if send_initial.is_none() {
            errors.push((
                "resourceVersionMatch",
                "FieldValueForbidden",
                "Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided".into(),
            ));
        }
        if rv_match != NOT_OLDER_THAN {
            errors.push((
                "resourceVersionMatch",
                "FieldValueNotSupported",
                format!("Unsupported value: {rv_match:?}: supported values: \"{NOT_OLDER_THAN}\""),
            ));
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    let each: Vec<String> = errors
        .iter()
        .map(|(field, _, message)| format!("{field}: {message}"))
        .collect();
    let joined = match each.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    let details = Details {
        group: "meta.k8s.io".into(),
        kind: "ListOptions".into(),
        causes: errors
            .into_iter()
            .map(|(field, reason, message)| Cause {
                reason: reason.into(),
                message,
                field: field.into(),
            })
            .collect(),
        ..Details::default()
    };
    Err(ApiError::new(
        422,
        "Invalid",
        format!("ListOptions.meta.k8s.io \"\" is invalid: {joined}"),
    )
    .with_details(details))
}

/// What one watch selects.
struct Selection {
    resource: &'static Resource,
    namespace: Option<String>,
    name: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Selection {
    fn selects(&self, object: &Value) -> bool {
        if let Some(name) = &self.name
            && object.pointer("/metadata/name").and_then(Value::as_str) != Some(name.as_str())
        {
            return false;
        }
        self.labels.matches(object) && self.fields.matches(object)
    }

    fn unfiltered(&self) -> bool {
        self.name.is_none() && self.labels.is_empty() && self.fields.is_empty()
    }

    fn concerns(&self, event: &Event) -> bool {
        (std::ptr::eq(event.resource, self.resource)
            || (event.resource.group == self.resource.group
                && event.resource.plural == self.resource.plural))
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| ns == event.namespace)
    }
}

struct Watcher {
    shared: Arc<Shared>,
    selection: Selection,
    table: Option<TableRequest>,
    partial: bool,
    /// The resourceVersion up to which every event has been considered.
    last_rv: u64,
    buf: BytesMut,
    tx: mpsc::Sender<Bytes>,
    /// `timeoutSeconds` from the start: the stream ends then, even while
    /// waiting on a client that does not read.
    deadline: tokio::time::Instant,
}

impl Watcher {
    /// A BOOKMARK at the resourceVersion reached so far.
    fn bookmark(&self, initial_events_end: bool) -> Bytes {
        let resource = self.selection.resource;
        if self.partial {
            bookmark_line(
                "PartialObjectMetadata",
                "meta.k8s.io/v1",
                self.last_rv,
                initial_events_end,
            )
        } else {
            bookmark_line(
                resource.kind,
                &resource.api_version(),
                self.last_rv,
                initial_events_end,
            )
        }
    }

    fn line_for(&self, event_type: &str, object: &Value) -> Bytes {
        if self.partial {
            return event_line(event_type, &table::partial_metadata(object));
        }
        match &self.table {
            Some(t) => {
                let object = Arc::new(object.clone());
                event_line(
                    event_type,
                    &table::table(self.selection.resource, std::iter::once(&object), None, t),
                )
            }
            None => event_line(event_type, object),
        }
    }

    fn process(&mut self, event: &Event) {
        if event.rv <= self.last_rv {
            return;
        }
        self.last_rv = event.rv;
        if !self.selection.concerns(event) {
            return;
        }
        let shared_line = |w: &Watcher| {
            if w.table.is_some() || w.partial {
                w.line_for(event.event_type.as_str(), &event.object)
            } else {
                w.shared.lines.line(event)
            }
        };
        if self.selection.unfiltered() {
            let line = shared_line(self);
            self.buf.extend_from_slice(&line);
            return;
        }
        let now = self.selection.selects(&event.object);
        let before = event
            .previous
            .as_ref()
            .is_some_and(|p| self.selection.selects(p));
        let line = match event.event_type {
            EventType::Added if now => Some(shared_line(self)),
            EventType::Modified => match (before, now) {
                (true, true) => Some(shared_line(self)),
                (false, true) => Some(self.line_for("ADDED", &event.object)),
                (true, false) => {
                    // Leaving the selection: DELETED with the previous
                    // content at the new resourceVersion.
                    let mut gone = event.previous.as_deref().cloned().unwrap_or(Value::Null);
                    metadata_mut(&mut gone)
                        .insert("resourceVersion".into(), json!(event.rv.to_string()));
                    Some(self.line_for("DELETED", &gone))
                }
                (false, false) => None,
            },
            EventType::Deleted if before || (event.previous.is_none() && now) => {
                Some(shared_line(self))
            }
            _ => None,
        };
        if let Some(line) = line {
            self.buf.extend_from_slice(&line);
        }
    }

    async fn flush(&mut self) -> bool {
        if self.buf.is_empty() {
            return true;
        }
        let chunk = self.buf.split().freeze();
        self.shared.metrics.sent(chunk.len());
        matches!(
            tokio::time::timeout_at(self.deadline, self.tx.send(chunk)).await,
            Ok(Ok(()))
        )
    }

    /// Take every event already broadcast (and ready) into the buffer.
    /// `false` when this watcher fell behind the broadcast buffer.
    fn drain(&mut self, rx: &mut broadcast::Receiver<Arc<Event>>) -> Result<(), ()> {
        loop {
            match rx.try_recv() {
                Ok(event) => {
                    self.process(&event);
                    if self.buf.len() >= CHUNK_TARGET {
                        return Ok(());
                    }
                }
                Err(broadcast::error::TryRecvError::Empty)
                | Err(broadcast::error::TryRecvError::Closed) => {
                    return Ok(());
                }
                Err(broadcast::error::TryRecvError::Lagged(_)) => return Err(()),
            }
        }
    }

    async fn expire(&mut self) {
        let oldest = self.shared.store.oldest_watchable();
        self.buf
            .extend_from_slice(&error_line(&ApiError::too_old_resource_version(
                self.last_rv,
                oldest,
            )));
        self.flush().await;
    }
}

fn stream_response(rx: mpsc::Receiver<Bytes>) -> Response<Body> {
    let stream = ReceiverStream::new(rx).map(|chunk| Ok::<_, Infallible>(Frame::data(chunk)));
    let mut response = Response::new(StreamBody::new(stream).boxed());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Start a watch: validate, take the starting point, and stream.
pub(crate) fn serve(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let resource = ctx.req.resource;
    let (labels, fields) = selectors(ctx)?;
    let selection = Selection {
        resource,
        namespace: ctx.req.namespace.clone(),
        name: ctx.req.name.clone(),
        labels,
        fields,
    };
    let rv_param = ctx.query.get("resourceVersion").unwrap_or("");
    let send_initial = ctx.query.get("sendInitialEvents");
    let version = ctx
        .shared
        .version
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let valid = validate_watch_list(
        send_initial,
        ctx.query.get("resourceVersionMatch"),
        watch_list_enabled(&version),
    );
    if send_initial == Some("true") {
        ctx.shared.metrics.streaming_list(valid.is_ok());
    }
    valid?;
    let streaming_list = send_initial == Some("true");
    let bookmarks = ctx.query.flag("allowWatchBookmarks");
    let timeout = match ctx.query.get("timeoutSeconds") {
        Some(t) if !t.is_empty() => match t
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {t:?}")))?
        {
            0 => DEFAULT_TIMEOUT,
            seconds => Duration::from_secs(seconds),
        },
        _ => DEFAULT_TIMEOUT,
    };
    let from_now = rv_param.is_empty() || rv_param == "0";
    let initial_burst = streaming_list || (from_now && send_initial != Some("false"));
    let store = ctx.shared.store.clone();
    let (initial, start_rv, backlog, rx) = if initial_burst {
        let rx = store.subscribe();
        let (items, rv) = store.list(resource, selection.namespace.as_deref(), |_| true);
        let items: Vec<Arc<Value>> = items.into_iter().filter(|o| selection.selects(o)).collect();
        (items, rv, Vec::new(), rx)
    } else if from_now {
        let rx = store.subscribe();
        (Vec::new(), store.revision(), Vec::new(), rx)
    } else {
        let since: u64 = rv_param.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "invalid resource version {rv_param:?}: must be an integer"
            ))
        })?;
        match store.watch_from(since) {
            Ok((backlog, rx)) => (Vec::new(), since, backlog, rx),
            Err(StoreError::Expired { requested, oldest }) => {
                // 200, then one ERROR event, then the end.
                let (tx, body_rx) = mpsc::channel(1);
                let line = error_line(&ApiError::too_old_resource_version(requested, oldest));
                ctx.shared.metrics.sent(line.len());
                let _ = tx.try_send(line);
                return Ok(stream_response(body_rx));
            }
            Err(e) => return Err(ApiError::from_store(e, resource)),
        }
    };
    let (tx, body_rx) = mpsc::channel::<Bytes>(16);
    let bookmark_every = Duration::from_millis(
        ctx.shared
            .bookmark_interval_ms
            .load(Ordering::Relaxed)
            .max(1),
    );
    let watcher = Watcher {
        shared: ctx.shared.clone(),
        selection,
        table: ctx.table,
        partial: ctx.partial,
        last_rv: start_rv,
        buf: BytesMut::with_capacity(64 * 1024),
        tx,
        deadline: tokio::time::Instant::now() + timeout,
    };
    tokio::spawn(run(
        watcher,
        WatchPlan {
            initial,
            initial_burst,
            streaming_list,
            bookmarks,
            bookmark_every,
            backlog,
        },
        rx,
    ));
    Ok(stream_response(body_rx))
}

struct WatchPlan {
    initial: Vec<Arc<Value>>,
    initial_burst: bool,
    streaming_list: bool,
    bookmarks: bool,
    bookmark_every: Duration,
    backlog: Vec<Arc<Event>>,
}

async fn run(mut w: Watcher, plan: WatchPlan, mut rx: broadcast::Receiver<Arc<Event>>) {
    let deadline = w.deadline;
    for object in &plan.initial {
        let line = w.line_for("ADDED", object);
        w.buf.extend_from_slice(&line);
        if w.buf.len() >= CHUNK_TARGET && !w.flush().await {
            return;
        }
    }
    if plan.initial_burst && (plan.bookmarks || plan.streaming_list) {
        let line = w.bookmark(plan.streaming_list);
        w.buf.extend_from_slice(&line);
    }
    for event in &plan.backlog {
        w.process(event);
        if w.buf.len() >= CHUNK_TARGET && !w.flush().await {
            return;
        }
    }
    if !w.flush().await {
        return;
    }
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + plan.bookmark_every,
        plan.bookmark_every,
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let tx = w.tx.clone();
    loop {
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep_until(deadline) => {
                w.flush().await;
                return;
            }
            received = rx.recv() => match received {
                Ok(event) => {
                    w.process(&event);
                    if w.drain(&mut rx).is_err() {
                        w.expire().await;
                        return;
                    }
                    if !w.flush().await {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    w.expire().await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = ticker.tick(), if plan.bookmarks => {
                // Everything up to the current revision has been broadcast;
                // take it in, then the bookmark can claim that revision.
                let revision = w.shared.store.revision();
                if w.drain(&mut rx).is_err() {
                    w.expire().await;
                    return;
                }
                if w.buf.len() < CHUNK_TARGET {
                    w.last_rv = w.last_rv.max(revision);
                }
                let line = w.bookmark(false);
                w.buf.extend_from_slice(&line);
                if !w.flush().await {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_lists_follow_the_watch_list_gate_of_each_minor() {
        let served: Vec<&str> = ["v1.31.9", "v1.32.4", "v1.33.4", "v1.34.1", "v1.36.0"]
            .into_iter()
            .filter(|v| watch_list_enabled(v))
            .collect();
        assert_eq!(served, ["v1.32.4", "v1.34.1", "v1.36.0"]);
    }

    #[test]
    fn a_streaming_list_the_gate_refuses_is_a_422_naming_the_parameter() {
        let err = validate_watch_list(Some("true"), Some("NotOlderThan"), false).unwrap_err();
        let body = err.to_json();
        assert_eq!(err.code, 422);
        assert_eq!(body["reason"], "Invalid");
        assert_eq!(
            body["message"],
            "ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: \
             sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled"
        );
        assert_eq!(body["details"]["kind"], "ListOptions");
        assert_eq!(body["details"]["group"], "meta.k8s.io");
        assert_eq!(body["details"]["causes"][0]["field"], "sendInitialEvents");
        assert_eq!(
            body["details"]["causes"][0]["reason"],
            "FieldValueForbidden"
        );
    }

    #[test]
    fn watch_options_are_checked_as_kube_apiserver_checks_them() {
        assert!(validate_watch_list(None, None, false).is_ok());
        assert!(validate_watch_list(Some("true"), Some("NotOlderThan"), true).is_ok());
        assert!(validate_watch_list(Some("false"), Some("NotOlderThan"), true).is_ok());
        let no_match = validate_watch_list(Some("true"), None, true).unwrap_err();
        assert_eq!(
            no_match.to_json()["details"]["causes"][0]["field"],
            "resourceVersionMatch"
        );
        let alone = validate_watch_list(None, Some("NotOlderThan"), true).unwrap_err();
        assert!(
            alone
                .message
                .contains("unless sendInitialEvents is provided"),
            "{}",
            alone.message
        );
        let exact = validate_watch_list(Some("true"), Some("Exact"), false).unwrap_err();
        assert_eq!(
            exact.to_json()["details"]["causes"]
                .as_array()
                .map(Vec::len),
            Some(3)
        );
        assert!(
            exact
                .message
                .starts_with("ListOptions.meta.k8s.io \"\" is invalid: [")
        );
    }
}
