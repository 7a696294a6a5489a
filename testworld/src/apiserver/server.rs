//! The listener: TLS on loopback, HTTP/1.1 connections, and the two ways
//! connections end early (an injected outage, the server stopping).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::auth;
use super::handler;
use super::rbac::UserInfo;
use super::shared::Shared;

/// TLS handshakes that take longer are abandoned.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => break,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly.
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if shared.faults.is_unavailable() {
            drop(tcp);
            continue;
        }
        let _ = tcp.set_nodelay(true);
        tokio::spawn(serve_connection(tcp, acceptor.clone(), shared.clone()));
    }
}

async fn serve_connection(tcp: TcpStream, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    // Subscribe before checking the outage flag: an outage that starts
    // after this point fires `kill`; one that started before is seen here.
    let mut kill = shared.faults.kill_signal();
    let mut shutdown = shared.shutdown.clone();
    if shared.faults.is_unavailable() || *shutdown.borrow() {
        return;
    }
    let work = async {
        let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => tls,
            _ => return,
        };
        // The TLS layer verified the certificate against the cluster CA;
        // it names the connection's user.
        let client: Option<Arc<UserInfo>> = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|cert| auth::certificate_user(cert))
            .map(Arc::new);
        let conn_shared = shared.clone();
        let service = service_fn(move |req| {
            let shared = conn_shared.clone();
            let client = client.clone();
            async move { Ok::<_, Infallible>(handler::handle(shared, client.as_deref(), req).await) }
        });
        if let Err(e) = http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(tls), service)
            .await
        {
            tracing::trace!(error = %e, "connection ended");
        }
    };
    tokio::select! {
        _ = work => {}
        _ = kill.changed() => {}
        _ = shutdown.changed() => {}
    }
}
