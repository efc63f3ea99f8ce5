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

/// The configured backends, Whisper keeping at most `max_open_files` files open.
pub fn open_backends_with_files(
    config: &Config,
    max_open_files: usize,
) -> anyhow::Result<Vec<Box<dyn Backend>>> {
    config
        .backends
        .iter()
        .map(|kind| open_backend(*kind, config, max_open_files))
        .collect()
}

fn open_backend(
    kind: BackendKind,
    config: &Config,
    max_open_files: usize,
) -> anyhow::Result<Box<dyn Backend>> {
    Ok(match kind {
        BackendKind::Whisper => Box::new(open_whisper(config, max_open_files)?),
        BackendKind::Influxdb => Box::new(
            perfpipe_influxdb::InfluxBackend::new(config.influxdb.clone())
                .context("influxdb settings")?,
        ),
        BackendKind::Rrd => open_rrd(config)?,
    })
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
/// sockets, SQLite and RRD, shared out, at most [`perfpipe_whisper::MAX_OPEN_FILES`].
pub fn open_files_per_shard(shards: usize) -> usize {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let spare = usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .saturating_sub(512);
    (spare / shards.max(1)).min(perfpipe_whisper::MAX_OPEN_FILES)
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
