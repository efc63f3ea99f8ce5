//! Opens the storage backends a config names, behind the one `Backend` trait, and the series
//! catalogue that is always kept beside them.

use anyhow::Context;
use perfpipe_backend::Backend;
use perfpipe_sqlite::Catalogue;

use crate::config::{BackendKind, Config};

/// The configured backends, in config order.
pub fn open_backends(config: &Config) -> anyhow::Result<Vec<Box<dyn Backend>>> {
    config
        .backends
        .iter()
        .map(|kind| open_backend(*kind, config))
        .collect()
}

fn open_backend(kind: BackendKind, config: &Config) -> anyhow::Result<Box<dyn Backend>> {
    Ok(match kind {
        BackendKind::Whisper => Box::new(open_whisper(config)?),
        BackendKind::Influxdb => Box::new(
            perfpipe_influxdb::InfluxBackend::new(config.influxdb.clone())
                .context("influxdb settings")?,
        ),
        BackendKind::Rrd => open_rrd(config)?,
    })
}

fn open_whisper(config: &Config) -> anyhow::Result<perfpipe_whisper::WhisperBackend> {
    let settings = &config.whisper;
    let mut whisper = perfpipe_whisper::WhisperConfig::new(config.whisper_dir());
    whisper.archives = perfpipe_whisper::parse_retentions(&settings.retentions)
        .with_context(|| format!("whisper.retentions = {:?}", settings.retentions))?;
    whisper.aggregation = settings
        .aggregation
        .parse()
        .with_context(|| format!("whisper.aggregation = {:?}", settings.aggregation))?;
    whisper.x_files_factor = settings.xff;
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
