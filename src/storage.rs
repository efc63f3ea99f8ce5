//! Opens the storage backends a config names, behind the one `Backend` trait, and the series
//! catalogue that is always kept beside them.

use anyhow::Context;
use perfpipe_backend::Backend;
use perfpipe_sqlite::Catalogue;

use crate::config::{BackendKind, Config};

/// The configured backends, in config order.
pub fn open_backends(config: &Config) -> anyhow::Result<Vec<Box<dyn Backend>>> {
    open_backends_with_files(config, perfpipe_whisper::MAX_OPEN_FILES)
}

/// The configured backends, Whisper keeping at most `max_open_files` files open. With rollups,
/// the file backends keep aggregates in the aggregate store, written by the first of them.
pub fn open_backends_with_files(
    config: &Config,
    max_open_files: usize,
) -> anyhow::Result<Vec<Box<dyn Backend>>> {
    let mut aggregates_written = false;
    config
        .backends
        .iter()
        .map(|&kind| {
            let writes_aggregates = kind != BackendKind::Influxdb && !aggregates_written;
            aggregates_written |= writes_aggregates;
            open_backend_writing(kind, config, max_open_files, writes_aggregates)
        })
        .collect()
}

/// One backend alone (it writes aggregates to the aggregate store itself, when it keeps them
/// there).
pub(crate) fn open_backend(
    kind: BackendKind,
    config: &Config,
    max_open_files: usize,
) -> anyhow::Result<Box<dyn Backend>> {
    open_backend_writing(kind, config, max_open_files, true)
}

fn open_backend_writing(
    kind: BackendKind,
    config: &Config,
    max_open_files: usize,
    writes_aggregates: bool,
) -> anyhow::Result<Box<dyn Backend>> {
    let backend: Box<dyn Backend> = match kind {
        BackendKind::Whisper => Box::new(open_whisper(config, max_open_files)?),
        BackendKind::Influxdb => {
            return Ok(Box::new(
                perfpipe_influxdb::InfluxBackend::new(config.influxdb.clone())
                    .context("influxdb settings")?,
            ))
        }
        BackendKind::Rrd => open_rrd(config)?,
    };
    if config.rollups.is_empty() {
        return Ok(backend);
    }
    let rules = crate::rollup::RollupRules::new(config.rollups.clone())?;
    Ok(Box::new(crate::aggregate_store::WithAggregateStore::new(
        backend,
        perfpipe_sqlite::aggregates::AggregateStore::new(&config.aggregates_path()),
        std::sync::Arc::new(rules),
        writes_aggregates,
    )))
}

fn open_whisper(
    config: &Config,
    max_open_files: usize,
) -> anyhow::Result<perfpipe_whisper::WhisperBackend> {
    let settings = &config.whisper;
    let mut whisper = perfpipe_whisper::WhisperConfig::new(config.whisper_dir());
    whisper.archives = perfpipe_whisper::parse_retentions(&settings.retentions)
        .with_context(|| format!("whisper.retentions = {:?}", settings.retentions))?;
    whisper.aggregation = settings
        .aggregation
        .parse()
        .with_context(|| format!("whisper.aggregation = {:?}", settings.aggregation))?;
    whisper.x_files_factor = settings.xff;
    whisper.max_open_files = max_open_files;
    if settings.sparse {
        whisper.preallocation = perfpipe_whisper::Preallocation::Sparse;
    }
    Ok(perfpipe_whisper::WhisperBackend::new(whisper)?)
}

#[cfg(not(feature = "rrd"))]
fn open_rrd(_config: &Config) -> anyhow::Result<Box<dyn Backend>> {
    anyhow::bail!(
        "this perfpipe was built without RRD support (cargo feature `rrd`, which needs librrd)"
    )
}

/// Raises this process's open-file limit to its hard limit and returns how many Whisper files
/// each of `shards` shards may keep open: what the limit leaves after 512 descriptors for
/// sockets, SQLite and RRD, shared out, at most `wanted` (`whisper.max_open_files`).
pub fn open_files_per_shard(shards: usize, wanted: usize) -> usize {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let spare = usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .saturating_sub(512);
    (spare / shards.max(1)).min(wanted)
}

/// The series catalogue under `data_dir`.
pub fn open_catalogue(config: &Config) -> anyhow::Result<Catalogue> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    Ok(Catalogue::open(&config.catalogue_path())?)
}

#[cfg(feature = "rrd")]
fn open_rrd(config: &Config) -> anyhow::Result<Box<dyn Backend>> {
    let settings = &config.rrd;
    let rras = settings
        .rras
        .iter()
        .map(|rra| rra.parse().with_context(|| format!("rrd.rras: {rra:?}")))
        .collect::<anyhow::Result<_>>()?;
    let rrd = perfpipe_rrd::RrdConfig {
        step: settings.step,
        heartbeat: settings.heartbeat,
        rras,
    };
    rrd.validate().context("rrd settings")?;
    Ok(Box::new(perfpipe_rrd::RrdBackend::new(
        config.rrd_dir(),
        rrd,
    )?))
}
