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
        perfpipe_sqlite::aggregates::AggregateStore::new(
            &config.aggregates_path(),
            crate::aggregate_store::group_of,
        ),
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

/// Runs `read` with this thread's connection to `config`'s catalogue, opened at its first use
/// and kept for the next call. Opening one parses the schema and checks its version, about
/// 0.4 ms, most of the time of a query of a few series; a connection kept costs nothing while
/// idle (in WAL mode it holds no lock between statements, and it sees every commit made since
/// its last read). For the API's blocking threads, which tokio ends after a while idle, and
/// their connections with them. A nested call (from within `read`) opens its own.
pub fn with_catalogue<T>(
    config: &Config,
    read: impl FnOnce(&Catalogue) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    thread_local! {
        static KEPT: std::cell::RefCell<Option<(std::path::PathBuf, Catalogue)>> =
            const { std::cell::RefCell::new(None) };
    }
    let path = config.catalogue_path();
    KEPT.with(|kept| {
        let Ok(mut kept) = kept.try_borrow_mut() else {
            return read(&open_catalogue(config)?);
        };
        if kept
            .as_ref()
            .is_none_or(|(kept_path, _)| *kept_path != path)
        {
            *kept = None;
            *kept = Some((path, open_catalogue(config)?));
        }
        let (_, catalogue) = kept.as_ref().expect("opened above");
        read(catalogue)
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use perfpipe_backend::{DataSourceType, SeriesKey};
    use perfpipe_sqlite::SeriesUpdate;

    fn config_in(dir: &std::path::Path) -> Config {
        Config {
            data_dir: dir.to_owned(),
            ..Config::default()
        }
    }

    #[test]
    fn a_kept_catalogue_sees_later_commits_and_each_data_dir_has_its_own() {
        let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (config, other) = (config_in(first.path()), config_in(second.path()));
        let count = |config: &Config| with_catalogue(config, |c| Ok(c.all()?.len())).unwrap();
        assert_eq!(count(&config), 0);

        let mut writer = open_catalogue(&config).unwrap();
        writer
            .record(&[SeriesUpdate {
                key: std::borrow::Cow::Owned(SeriesKey::new("web", "http", "time")),
                uom: "ms".into(),
                ds_type: DataSourceType::Gauge,
                first_seen: 60,
                last_seen: 120,
                last_value: 1.0,
                warn: None,
                crit: None,
                may_lag: 0,
            }])
            .unwrap();
        assert_eq!(
            count(&config),
            1,
            "the kept connection reads the new commit"
        );
        assert_eq!(count(&other), 0, "another data dir, another catalogue");
        assert_eq!(count(&config), 1);
        // A nested call opens its own connection rather than failing.
        let nested = with_catalogue(&config, |_| Ok(count(&config))).unwrap();
        assert_eq!(nested, 1);
    }
}
