//! A bound on the requests a run has in flight at once, watches aside.
//!
//! Over HTTP/1.1 every request in flight holds a connection of its own, and
//! hyper's pool keeps every connection it ever opened for 90 s (it also
//! opens one in the background whenever a request finds none idle, and
//! pools it). At a thousand nodes a hundred drains evicting at once sent
//! hundreds of requests together: the pools grew to some 850 TLS
//! connections, a third of the tool's memory, each one a handshake. With
//! the bound, bursts wait a moment for a connection instead of opening
//! one. client-go bounds a client too, by rate rather than by count
//! (`QPS`/`Burst`), over one HTTP/2 connection
//! (k8s.io/client-go/rest/config.go, `DefaultQPS`, `DefaultBurst`).
//!
//! A watch holds its connection for as long as it lasts, so it holds no
//! permit while it streams, or a hundred drains' pod watches would hold
//! every one: like any request it takes one to be sent (the permit is
//! taken when the service is made ready, before the request is seen) and
//! gives it back the moment it is sent.
//! A permit is given back when the response body is dropped: kube drops
//! it as soon as it has read it, which is when hyper hands its connection
//! to the next request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::PollSemaphore;
use tower::{BoxError, Layer, Service};

/// How many requests other than watches a run has in flight at most, over
/// all its clients but the run lock's (which has a connection of its own).
pub const MAX_IN_FLIGHT: usize = 32;

/// The bound, shared by every client built with a clone of it.
#[derive(Clone, Debug)]
pub struct InFlightLayer {
    /// `None`: no bound.
    permits: Option<Arc<Semaphore>>,
}

impl InFlightLayer {
    pub fn new(limit: usize) -> InFlightLayer {
        InFlightLayer {
            permits: Some(Arc::new(Semaphore::new(limit.max(1)))),
        }
    }

    /// No bound: for a client that makes few requests of its own.
    pub fn unbounded() -> InFlightLayer {
        InFlightLayer { permits: None }
    }
}

impl<S> Layer<S> for InFlightLayer {
    type Service = InFlight<S>;

    fn layer(&self, inner: S) -> InFlight<S> {
        InFlight {
            inner,
            permits: self.permits.clone().map(PollSemaphore::new),
            ready: None,
        }
    }
}

/// See the module. The permit is taken when the service is made ready, as
/// tower's `ConcurrencyLimit` does (the service it wraps is not `Clone`, so
/// it cannot be called later from a future that waits for one); a watch
/// gives it back at once.
#[derive(Debug)]
pub struct InFlight<S> {
    inner: S,
    permits: Option<PollSemaphore>,
    ready: Option<OwnedSemaphorePermit>,
}

/// Whether a request is a watch (`?watch=true`, or `watch=1`): it streams
/// for as long as it lasts.
fn is_watch<B>(request: &Request<B>) -> bool {
    request.uri().query().is_some_and(|query| {
        query
            .split('&')
            .any(|pair| matches!(pair, "watch=true" | "watch=1"))
    })
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for InFlight<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + Unpin + 'static,
{
    type Response = Response<Permitted<ResBody>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.ready.is_none()
            && let Some(permits) = self.permits.as_mut()
        {
            match permits.poll_acquire(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(permit)) => self.ready = Some(permit),
                Poll::Ready(None) => {
                    return Poll::Ready(Err("the request bound was closed".into()));
                }
            }
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let permit = self.ready.take().filter(|_| !is_watch(&request));
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await.map_err(Into::into)?;
            Ok(response.map(|body| Permitted {
                body,
                _permit: permit,
            }))
        })
    }
}

/// A response body that gives its request's permit back when it is
/// dropped: read to its end, or given up.
#[derive(Debug)]
pub struct Permitted<B> {
    body: B,
    _permit: Option<OwnedSemaphorePermit>,
}

impl<B> Body for Permitted<B>
where
    B: Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::ServiceExt;

    /// Answers at once and counts the requests it has seen.
    #[derive(Clone, Default)]
    struct Counting {
        seen: Arc<AtomicUsize>,
    }

    impl Service<Request<()>> for Counting {
        type Response = Response<Full<Bytes>>;
        type Error = BoxError;
        type Future = std::future::Ready<Result<Self::Response, BoxError>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<()>) -> Self::Future {
            self.seen.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(b"{}")))))
        }
    }

    fn get(uri: &str) -> Request<()> {
        Request::builder().uri(uri).body(()).unwrap()
    }

    #[test]
    fn only_watches_are_watches() {
        assert!(is_watch(&get("/api/v1/pods?watch=true&resourceVersion=1")));
        assert!(is_watch(&get("/api/v1/pods?fieldSelector=x&watch=1")));
        assert!(!is_watch(&get("/api/v1/pods?watch=false")));
        assert!(!is_watch(&get("/api/v1/pods?labelSelector=watch%3Dtrue")));
        assert!(!is_watch(&get("/api/v1/namespaces/watch/pods")));
    }

    async fn send(service: &mut InFlight<Counting>, uri: &str) -> Response<Permitted<Full<Bytes>>> {
        service.ready().await.unwrap().call(get(uri)).await.unwrap()
    }

    /// Whether the service is ready now, without waiting.
    fn ready_now(service: &mut InFlight<Counting>) -> bool {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        matches!(service.poll_ready(&mut cx), Poll::Ready(Ok(())))
    }

    #[tokio::test]
    async fn past_the_bound_a_request_waits_until_a_body_is_given_back() {
        let backend = Counting::default();
        let seen = backend.seen.clone();
        let mut service = InFlightLayer::new(2).layer(backend);
        let first = send(&mut service, "/api/v1/nodes").await;
        let second = send(&mut service, "/api/v1/nodes").await;
        // Two bodies not yet read: a third request waits.
        assert!(!ready_now(&mut service));
        assert_eq!(seen.load(Ordering::SeqCst), 2);
        // Reading a body to its end (kube then drops it) gives its permit back.
        let body = first.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"{}");
        let third = send(&mut service, "/api/v1/nodes").await;
        assert_eq!(seen.load(Ordering::SeqCst), 3);
        assert!(!ready_now(&mut service));
        // A body dropped unread gives its permit back too.
        drop(second);
        drop(third);
        assert!(ready_now(&mut service));
    }

    #[tokio::test]
    async fn a_watch_holds_no_permit_while_it_streams() {
        let mut service = InFlightLayer::new(1).layer(Counting::default());
        let mut watches = Vec::new();
        for _ in 0..3 {
            watches.push(send(&mut service, "/api/v1/pods?watch=true").await);
        }
        let request = send(&mut service, "/api/v1/nodes").await;
        assert!(!ready_now(&mut service), "the one permit is the request's");
        drop(request);
        assert!(ready_now(&mut service));
        assert_eq!(watches.len(), 3);
    }

    #[tokio::test]
    async fn unbounded_never_waits() {
        let mut service = InFlightLayer::unbounded().layer(Counting::default());
        let mut held = Vec::new();
        for _ in 0..100 {
            held.push(send(&mut service, "/api/v1/nodes").await);
        }
        assert!(ready_now(&mut service));
    }
}
