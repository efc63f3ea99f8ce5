//! The HTTPS listeners: the main one (`[tls]`, the whole API over TLS) and the plugins' extra
//! one (`cache.https_server`, for plugins that reach the cache manager across networks).
//!
//! Owns the TLS set-up (rustls with ring: the server's certificate chain and key from PEM
//! files, and, when `client_ca` is set, client certificates verified against that CA, so a
//! client without one it signed fails the handshake) and the accept loop, which serves each
//! connection with hyper and the same axum router as the plain listener. A failed handshake
//! ends that connection only.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info};

/// The TLS acceptor of a certificate chain and key (PEM files), verifying client certificates
/// against `client_ca` when given; errors name the file at fault.
pub fn acceptor(cert: &Path, key: &Path, client_ca: Option<&Path>) -> anyhow::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(cert)?;
    let key_path = key;
    let key = PrivateKeyDer::from_pem_file(key_path)
        .with_context(|| format!("reading the private key {}", key_path.display()))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for certificate in certificates(ca)? {
                roots
                    .add(certificate)
                    .with_context(|| format!("client CA {}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .with_context(|| format!("client CA {}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut server = builder
        .with_single_cert(chain, key)
        .with_context(|| format!("certificate {} and its key", cert.display()))?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

fn certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading certificates from {}", path.display()))?;
    anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", path.display());
    Ok(chain)
}

/// How long a stopping listener waits for requests in progress to be answered.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves `router` over TLS on `listener` until `shutdown` resolves, then stops accepting and
/// lets the requests in progress finish (idle keep-alive connections are closed), as the plain
/// HTTP listener's graceful shutdown does; after [`DRAIN`] what is left is dropped.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    shutdown: impl Future<Output = ()>,
    limit: crate::connections::ConnectionLimit,
) {
    if let Ok(address) = listener.local_addr() {
        info!(%address, "listening (HTTPS)");
    }
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
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
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        let permit = limit.try_take();
        let limit = limit.clone();
        tokio::spawn(async move {
            let stream = match acceptor.accept(stream).await {
                Ok(stream) => stream,
                Err(error) => {
                    debug!(%peer, %error, "TLS handshake refused");
                    return;
                }
            };
            let Some(permit) = permit else {
                debug!(%peer, "connection over limits.max_connections refused");
                limit.refuse(stream).await;
                return;
            };
            let stream = crate::connections::Limited::new(stream, permit);
            let builder = auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(error) = watcher.watch(connection.into_owned()).await {
                debug!(%peer, %error, "HTTPS connection ended with an error");
            }
        });
    }
    drop(listener);
    let open = graceful.count();
    tokio::select! {
        () = graceful.shutdown() => debug!(open, "HTTPS connections drained"),
        () = tokio::time::sleep(DRAIN) => {
            tracing::warn!(open, "HTTPS requests still in progress after 30 s: dropped")
        }
    }
}
