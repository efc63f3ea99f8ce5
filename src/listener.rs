//! The node's accept loops, plain HTTP and HTTPS alike: each accepted connection gets
//! `TCP_NODELAY`, a permit of `limits.max_connections` (or the 429 of `connections`), its TLS
//! handshake when the listener has an acceptor (a failed one ends that connection only), and
//! is then served by `fastpath`, which answers the plugins' hottest calls itself and gives
//! everything else to hyper and the axum router.
//!
//! Shutdown: once `shutdown` resolves the listener stops accepting, idle connections are
//! closed, requests in progress are answered; after [`DRAIN`] what is left is dropped.

use std::future::Future;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info};

use crate::connections::{ConnectionLimit, Limited};
use crate::fastpath::{serve_connection, ConnectionContext};

/// How long a stopping listener waits for requests in progress to be answered.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves `listener` until `shutdown` resolves (see the module).
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    context: ConnectionContext,
    shutdown: impl Future<Output = ()>,
    limit: ConnectionLimit,
) {
    let scheme = if tls.is_some() { "HTTPS" } else { "HTTP" };
    if let (Some(_), Ok(address)) = (&tls, listener.local_addr()) {
        info!(%address, "listening (HTTPS)");
    }
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Each connection's task holds a sender; the receiver ends once all are dropped.
    let (open, mut all_closed) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    debug!(%error, "accept failed");
                    continue;
                }
            },
        };
        crate::connections::no_delay(&stream);
        let permit = limit.try_take();
        let limit = limit.clone();
        let tls = tls.clone();
        let context = context.clone();
        let watcher = graceful.watcher();
        let open = open.clone();
        tokio::spawn(async move {
            let _open = open;
            match tls {
                None => {
                    let Some(permit) = permit else {
                        debug!(%peer, "connection over limits.max_connections refused");
                        return limit.refuse(stream).await;
                    };
                    serve_connection(Limited::new(stream, permit), context, watcher).await
                }
                Some(acceptor) => {
                    let stream = match acceptor.accept(stream).await {
                        Ok(stream) => stream,
                        Err(error) => {
                            debug!(%peer, %error, "TLS handshake refused");
                            return;
                        }
                    };
                    let Some(permit) = permit else {
                        debug!(%peer, "connection over limits.max_connections refused");
                        return limit.refuse(stream).await;
                    };
                    serve_connection(Limited::new(stream, permit), context, watcher).await
                }
            }
        });
    }
    drop(listener);
    drop(open);
    let hyper_open = graceful.count();
    let drained = async {
        // The direct path's connections see the same signal through `context.stopping`.
        graceful.shutdown().await;
        let _ = all_closed.recv().await;
    };
    tokio::select! {
        () = drained => debug!(scheme, hyper_open, "connections drained"),
        () = tokio::time::sleep(DRAIN) => {
            tracing::warn!(scheme, "requests still in progress after 30 s: dropped")
        }
    }
}
