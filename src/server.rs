//! `perfpipe serve`: the node's HTTP listener.
//!
//! For now the node answers `GET /health` (200 while it accepts writes) so a load balancer can
//! watch it; the write, query and cache APIs of ARCHITECTURE.md are added on this router. The
//! server stops cleanly on SIGINT or SIGTERM: it stops accepting, lets requests in flight
//! finish, and exits 0.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tracing::info;

use crate::config::Config;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// A TOML config file (keys of config/perfpipe.toml); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Directory for everything the node stores locally (default ./data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address of the HTTP API (default 127.0.0.1:8480; port 0 picks a free port).
    #[arg(long)]
    listen: Option<SocketAddr>,
}

pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref())?;
    let listen = match args.listen {
        Some(listen) => listen,
        None => config
            .listen
            .parse()
            .with_context(|| format!("listen = {:?} is not an address", config.listen))?,
    };
    let data_dir = args.data_dir.unwrap_or(config.data_dir);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(listen))
}

async fn run(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let address = listener.local_addr().context("reading the bound address")?;
    info!(%address, "listening");
    axum::serve(listener, router())
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")?;
    info!("stopped");
    Ok(())
}

fn router() -> Router {
    Router::new().route("/health", get(health))
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => info!("SIGINT: shutting down"),
        () = terminate => info!("SIGTERM: shutting down"),
    }
}
