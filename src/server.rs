//! `perfpipe serve`: a node. Opens the stores, starts the enqueuer's shard threads and the
//! HTTP API (see `api`), and runs until SIGINT or SIGTERM. Then it stops accepting, lets
//! requests in flight finish, flushes every queue to the backends, and exits 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::net::TcpListener;
use tracing::info;

use crate::api::Node;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::enqueuer::{Enqueuer, EnqueuerSettings};

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
    let mut config = Config::load(args.config.as_deref())?;
    let listen = match args.listen {
        Some(listen) => listen,
        None => config
            .listen
            .parse()
            .with_context(|| format!("listen = {:?} is not an address", config.listen))?,
    };
    if let Some(data_dir) = args.data_dir {
        config.data_dir = data_dir;
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;

    let settings = EnqueuerSettings {
        shards: config.enqueuer.shards,
        max_batch_points: config.enqueuer.max_batch_points,
        max_batch_age: config.enqueuer.max_batch_age,
        max_queued_points: config.enqueuer.max_queued_points,
    };
    let stores_config = config.clone();
    let enqueuer = Enqueuer::start(
        settings,
        Arc::new(move || {
            Ok((
                crate::storage::open_backends(&stores_config)?,
                crate::storage::open_catalogue(&stores_config)?,
            ))
        }),
    )?;
    let cluster = Cluster::new(&config)?;
    let node = Arc::new(Node {
        config,
        enqueuer,
        cluster,
        started: Instant::now(),
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(listen, node.clone()))?;
    drop(runtime);

    // Every request has finished; the node is ours alone again.
    let node = Arc::into_inner(node).context("requests still hold the node after shutdown")?;
    let queued = node.enqueuer.queued();
    info!(queued, "flushing queues");
    node.enqueuer.shutdown();
    info!("stopped");
    Ok(())
}

async fn run(listen: SocketAddr, node: Arc<Node>) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let address = listener.local_addr().context("reading the bound address")?;
    info!(%address, "listening");
    axum::serve(listener, crate::api::router(node))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")?;
    Ok(())
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
