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

use crate::api::{Endpoint, Node};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::enqueuer::{EnqueueError, Enqueuer, EnqueuerSettings};

/// The last-values cache's file under the data dir.
const LAST_VALUES_FILE: &str = "last-values";

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
    /// Listen on a non-loopback address even with no `[auth]` tokens (anyone who can reach
    /// it may write, read and delete).
    #[arg(long)]
    insecure: bool,
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
    if !listen.ip().is_loopback() && !config.auth.any() && !args.insecure {
        anyhow::bail!(
            "refusing to listen on {listen} with no tokens: set [auth] write_tokens, \
             query_tokens and admin_tokens, or pass --insecure to serve it open"
        );
    }
    if let Some(data_dir) = args.data_dir {
        config.data_dir = data_dir;
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;

    let last_values = Arc::new(crate::lastvalues::LastValues::new(
        crate::lastvalues::LastValuesRules::new(&config.last_values)?,
    ));
    let last_values_path = config.data_dir.join(LAST_VALUES_FILE);
    let loaded = last_values
        .load(&last_values_path)
        .with_context(|| format!("loading {}", last_values_path.display()))?;
    tracing::debug!(series = loaded, "last values loaded");
    let rollup_rules = crate::rollup::RollupRules::new(config.rollups.clone())?;
    let settings = EnqueuerSettings {
        last_values: Some(last_values.clone()),
        rollups: (!rollup_rules.rules().is_empty()).then(|| crate::enqueuer::RollupSettings {
            rules: Arc::new(rollup_rules),
            state_dir: config.data_dir.clone(),
            checkpoint_every: config.enqueuer.rollup_checkpoint,
        }),
        shards: config.enqueuer.shards,
        max_batch_points: config.enqueuer.max_batch_points,
        max_batch_age: config.enqueuer.max_batch_age,
        max_queued_points: config.enqueuer.max_queued_points,
        handoff_hold: config.enqueuer.handoff_hold,
    };
    let stores_config = config.clone();
    let open_files =
        crate::storage::open_files_per_shard(settings.shards, config.whisper.max_open_files);
    if open_files < config.whisper.max_open_files {
        tracing::info!(
            open_files,
            wanted = config.whisper.max_open_files,
            "Whisper files kept open per shard: fewer than whisper.max_open_files, for the \
             process's open-file limit (raise it, e.g. LimitNOFILE, to keep more)"
        );
    } else {
        tracing::debug!(open_files, "Whisper files kept open per shard");
    }
    let enqueuer = Enqueuer::start(
        settings,
        Arc::new(move || {
            Ok((
                crate::storage::open_backends_with_files(&stores_config, open_files)?,
                crate::storage::open_catalogue(&stores_config)?,
            ))
        }),
    )?;
    let wal = if config.wal.enabled {
        Some(start_wal(&config, &enqueuer)?)
    } else {
        None
    };
    let handoff = if config.wal.enabled {
        Some(crate::handoff::Handoff::open(&config)?)
    } else {
        None
    };
    let cluster = Cluster::new(&config)?;
    let plugins = crate::cachemanager::CacheManager::open(&config)?;
    let config_limits = config.limits.clone();
    let node = Arc::new(Node {
        config,
        enqueuer,
        cluster,
        plugins,
        last_values,
        wal,
        handoff,
        query_slots: tokio::sync::Semaphore::new(config_limits.max_concurrent_queries),
        in_flight: std::sync::atomic::AtomicUsize::new(0),
        protocols: crate::protocols::Counters::default(),
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
    if let Some(handoff) = &node.handoff {
        handoff.stop();
    }
    if let Some(wal) = &node.wal {
        wal.stop();
    }
    let queued = node.enqueuer.queued();
    info!(queued, "flushing queues");
    let all_written = node.enqueuer.shutdown();
    if let Some(wal) = &node.wal {
        if all_written {
            wal.remove_all()?;
        } else {
            tracing::warn!("points not written are kept in the write-ahead log for the next start");
        }
    }
    let path = node.config.data_dir.join(LAST_VALUES_FILE);
    node.last_values
        .save(&path)
        .with_context(|| format!("saving {}", path.display()))?;
    info!("stopped");
    Ok(())
}

/// Replays what the write-ahead log holds into the queues, then starts logging.
fn start_wal(config: &Config, enqueuer: &Enqueuer) -> anyhow::Result<crate::wal::Wal> {
    let dir = config.wal_dir();
    let mut failure = None;
    let replayed = crate::wal::replay(&dir, |series, sequence| {
        if failure.is_none() {
            failure = enqueue_patiently(enqueuer, series, sequence).err();
        }
    })?;
    if let Some(failure) = failure {
        return Err(failure).context("replaying the write-ahead log");
    }
    let settings = crate::wal::WalSettings {
        dir,
        sync_interval: config.wal.sync_interval,
        segment_size: config.wal.segment_size.as_u64(),
        segment_age: config.wal.segment_age,
    };
    let barrier = enqueuer.barrier();
    Ok(crate::wal::Wal::start(
        settings,
        replayed,
        Box::new(move |_| barrier.wait()),
    )?)
}

/// Queues replayed points, waiting while the queues are full, and in smaller parts when they
/// are more than the queues hold at once (`max_queued_points` lowered since they were logged).
fn enqueue_patiently(
    enqueuer: &Enqueuer,
    series: Vec<crate::enqueuer::SeriesPoints>,
    sequence: Option<u64>,
) -> Result<(), EnqueueError> {
    loop {
        match enqueuer.enqueue_replayed(series.clone(), sequence) {
            Ok(_) => return Ok(()),
            Err(EnqueueError::Full { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(EnqueueError::TooLarge { limit, .. }) => {
                for mut one in series {
                    let levels = std::mem::take(&mut one.levels);
                    for points in one.points.chunks(limit.max(1)) {
                        let part = crate::enqueuer::SeriesPoints {
                            key: one.key.clone(),
                            uom: one.uom.clone(),
                            points: smallvec::SmallVec::from_slice(points),
                            levels: levels.clone(),
                        };
                        enqueue_patiently(enqueuer, vec![part], sequence)?;
                    }
                }
                return Ok(());
            }
            Err(gone) => return Err(gone),
        }
    }
}

async fn run(listen: SocketAddr, node: Arc<Node>) -> anyhow::Result<()> {
    let signal = shutdown_signal()?;
    // One signal stops both listeners.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        signal.await;
        let _ = stop.send(true);
    });
    let stopped = |mut stopping: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    };

    let https = &node.config.cache.https_server;
    let https = if https.listen.is_empty() {
        None
    } else {
        let acceptor = crate::https::acceptor(&https.cert, &https.key, https.client_ca.as_deref())
            .context("cache.https_server")?;
        let address: SocketAddr = https.listen.parse().context("cache.https_server.listen")?;
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("listening on {address} (HTTPS)"))?;
        let endpoint = Endpoint {
            encrypted_namespaces: https.encrypted_namespaces,
        };
        Some((listener, acceptor, endpoint))
    };
    let tls = &node.config.tls;
    let main_tls = if tls.enabled() {
        Some(crate::https::acceptor(&tls.cert, &tls.key, tls.client_ca.as_deref()).context("tls")?)
    } else {
        None
    };
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let address = listener.local_addr().context("reading the bound address")?;
    crate::carbon::start(node.clone(), stopping.clone()).await?;
    let connections = crate::connections::ConnectionLimit::new(node.config.limits.max_connections);
    info!(%address, "listening");
    let context = |endpoint| crate::fastpath::ConnectionContext {
        router: crate::api::router(node.clone(), endpoint),
        node: node.clone(),
        endpoint,
        stopping: stopping.clone(),
    };
    if let Some((listener, acceptor, endpoint)) = https {
        tokio::spawn(crate::listener::serve(
            listener,
            Some(acceptor),
            context(endpoint),
            stopped(stopping.clone()),
            connections.clone(),
        ));
    }
    tokio::spawn(purge_trash(node.clone()));
    tokio::spawn(purge_plugin_items(node.clone()));
    tokio::spawn(save_last_values(node.clone()));
    if node.config.purge_stale {
        tokio::spawn(purge_stale(node.clone()));
    }
    tokio::spawn(node.plugins.peers.clone().probe_forever());
    let endpoint = Endpoint {
        encrypted_namespaces: node.config.cache.http_server.encrypted_namespaces,
    };
    let context = context(endpoint);
    drop(node);
    crate::listener::serve(listener, main_tls, context, stopped(stopping), connections).await;
    Ok(())
}

/// Empties the trash of what is older than `trash_retention`, at start and then every
/// retention period (at most hourly).
async fn purge_trash(node: Arc<Node>) {
    let retention = node.config.trash_retention;
    let mut every = tokio::time::interval(retention.clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(3600),
    ));
    loop {
        every.tick().await;
        let data_dir = node.config.data_dir.clone();
        match tokio::task::spawn_blocking(move || crate::trash::purge(&data_dir, retention)).await {
            Ok(Ok(_)) => {}
            Ok(Err(failure)) => {
                tracing::warn!(failure = %format!("{failure:#}"), "trash purge failed")
            }
            Err(failure) => tracing::warn!(%failure, "trash purge failed"),
        }
    }
}

/// Removes expired cache and state items every `cache_purge_time` (an expired item is never
/// answered either way; this returns its memory and disk).
async fn purge_plugin_items(node: Arc<Node>) {
    let mut every = tokio::time::interval(
        node.config
            .cache
            .cache_purge_time
            .max(std::time::Duration::from_secs(1)),
    );
    loop {
        every.tick().await;
        let purged = node.plugins.cache.purge_expired();
        let state = node.plugins.state.clone();
        let now = crate::cachemanager::now_seconds();
        match tokio::task::spawn_blocking(move || state.purge_expired(now)).await {
            Ok(Ok(state_purged)) => {
                tracing::debug!(cache = purged, state = state_purged, "purged expired items")
            }
            Ok(Err(failure)) => tracing::warn!(%failure, "state purge failed"),
            Err(failure) => tracing::warn!(%failure, "state purge failed"),
        }
    }
}

/// Moves series not updated for `stale_after` to the trash, hourly (`purge_stale = true`).
async fn purge_stale(node: Arc<Node>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        every.tick().await;
        let node = node.clone();
        let purged = tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
            let before = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs()
                .saturating_sub(node.config.stale_after.as_secs()) as i64;
            let stale = crate::api::query::stale_series(&node, before)?;
            for series in &stale {
                let key = &series.key;
                crate::api::delete::forget_here(
                    &node,
                    &key.host,
                    Some((&key.service, &key.metric)),
                )?;
            }
            Ok(stale.len())
        })
        .await;
        match purged {
            Ok(Ok(0)) => {}
            Ok(Ok(count)) => info!(series = count, "stale series moved to the trash"),
            Ok(Err(failure)) => {
                tracing::warn!(failure = %format!("{failure:#}"), "stale purge failed")
            }
            Err(failure) => tracing::warn!(%failure, "stale purge failed"),
        }
    }
}

/// Saves the last-values cache every minute, so a crash loses at most a minute of it (the
/// points themselves are in the stores).
async fn save_last_values(node: Arc<Node>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
    every.tick().await;
    loop {
        every.tick().await;
        let node = node.clone();
        let saved = tokio::task::spawn_blocking(move || {
            node.last_values
                .save(&node.config.data_dir.join(LAST_VALUES_FILE))
        })
        .await;
        if let Ok(Err(failure)) = saved {
            tracing::warn!(%failure, "saving the last values failed");
        }
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled, so a signal that arrives right after start-up is already a
/// clean shutdown rather than the default (immediate) end.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => info!("SIGINT: shutting down"),
            _ = terminate.recv() => info!("SIGTERM: shutting down"),
        }
    })
}
