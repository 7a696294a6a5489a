//! Self-fencing (design §5 step 2): a run that cannot prove it still holds
//! the run lock changes nothing more.
//!
//! A contender takes the lease over once it has seen the record unchanged
//! for the lease's duration. The holder must stop mutating before that
//! moment, whatever it is doing, or two runs drain at once. client-go's
//! leader election does the same with its renew deadline (shorter than the
//! lease duration): a leader that has not renewed within it stops leading
//! (k8s.io/client-go/tools/leaderelection/leaderelection.go, `renew`).
//!
//! The fence is raised by the lock ([`super::lock`]) and enforced at the
//! edge every Kubernetes mutation passes: a tower layer on the run's
//! clients that refuses any POST, PUT, PATCH or DELETE once it is raised,
//! before the request leaves the process. Reads go on, so the run can say
//! what it left.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::{Method, Request};
use thiserror::Error;
use tower::{BoxError, Layer, Service};

/// Why this run stopped changing the cluster.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("this run no longer holds the run lock ({0}); it changes nothing more")]
pub struct Fenced(pub String);

/// Raised once, never lowered: shared by the lock that raises it and the
/// clients that obey it.
#[derive(Clone, Debug, Default)]
pub struct Fence {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    raised: AtomicBool,
    reason: Mutex<Option<String>>,
}

impl Fence {
    pub fn new() -> Fence {
        Fence::default()
    }

    /// Stop every further mutation. The first reason is kept.
    pub fn raise(&self, reason: impl Into<String>) {
        let mut current = self
            .inner
            .reason
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if current.is_none() {
            let reason = reason.into();
            tracing::error!("{}", Fenced(reason.clone()));
            *current = Some(reason);
        }
        self.inner.raised.store(true, Ordering::SeqCst);
    }

    pub fn is_raised(&self) -> bool {
        self.inner.raised.load(Ordering::SeqCst)
    }

    /// `Err` once raised: call before any mutation that does not go
    /// through a fenced client (a cloud call, a script on a node).
    pub fn check(&self) -> Result<(), Fenced> {
        if !self.is_raised() {
            return Ok(());
        }
        let reason = self
            .inner
            .reason
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
            .unwrap_or_default();
        Err(Fenced(reason))
    }
}

/// The fence as a layer of a kube client's service stack.
#[derive(Clone, Debug)]
pub struct FenceLayer {
    fence: Fence,
}

impl FenceLayer {
    pub fn new(fence: Fence) -> FenceLayer {
        FenceLayer { fence }
    }
}

impl<S> Layer<S> for FenceLayer {
    type Service = FencedService<S>;

    fn layer(&self, inner: S) -> FencedService<S> {
        FencedService {
            inner,
            fence: self.fence.clone(),
        }
    }
}

/// Passes reads, and writes until the fence is raised.
#[derive(Clone, Debug)]
pub struct FencedService<S> {
    inner: S,
    fence: Fence,
}

/// Whether a request can change the cluster. A SelfSubjectAccessReview or
/// an eviction is a POST too: both count (an eviction is the mutation the
/// fence exists for).
fn is_mutation(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl<S, B> Service<Request<B>> for FencedService<S>
where
    S: Service<Request<B>>,
    S::Response: Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if is_mutation(request.method())
            && let Err(fenced) = self.fence.check()
        {
            return Box::pin(std::future::ready(Err(Box::new(fenced) as BoxError)));
        }
        let response = self.inner.call(request);
        Box::pin(async move { response.await.map_err(Into::into) })
    }
}

/// The fence behind a failed request, if that is why it failed.
pub fn fenced_by(error: &kube::Error) -> Option<&Fenced> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = next {
        if let Some(fenced) = current.downcast_ref::<Fenced>() {
            return Some(fenced);
        }
        next = current.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers every request with its method.
    #[derive(Clone)]
    struct Echo;

    impl Service<Request<()>> for Echo {
        type Response = String;
        type Error = BoxError;
        type Future = std::future::Ready<Result<String, BoxError>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: Request<()>) -> Self::Future {
            std::future::ready(Ok(request.method().to_string()))
        }
    }

    async fn send(service: &mut FencedService<Echo>, method: Method) -> Result<String, String> {
        let request = Request::builder().method(method).body(()).unwrap();
        service.call(request).await.map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn once_raised_only_reads_pass() {
        let fence = Fence::new();
        let mut service = FenceLayer::new(fence.clone()).layer(Echo);
        assert_eq!(send(&mut service, Method::PATCH).await.unwrap(), "PATCH");

        fence.raise("not renewed for 20s");
        fence.raise("a later reason is not kept");
        assert_eq!(send(&mut service, Method::GET).await.unwrap(), "GET");
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert_eq!(
                send(&mut service, method).await.unwrap_err(),
                "this run no longer holds the run lock (not renewed for 20s); it changes nothing more"
            );
        }
        assert!(fence.check().is_err());
    }
}
