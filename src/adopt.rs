//! Bringing existing trees under perfpipe and copying series between backends.
//!
//! `perfpipe adopt --rrd DIR` scans an Opsview RRD tree
//! (`<enc host>/<enc service>/<enc metric>/value.rrd`), `perfpipe adopt --whisper DIR` a
//! Graphite tree of the same shape (`<enc host>/<enc service>/<enc metric>.wsp`), and records
//! every series found in the catalogue (names decoded from `%XX`, the unit from the metric's
//! `uom` file where Opsview left one, the data-source type from the RRD file, first and last
//! value time read from the data) without writing to any data file. The directory must be the
//! one the configuration stores that backend in, so that what the catalogue lists is what the
//! node reads. A file whose path is not three levels of names in perfpipe's encoding (a carbon
//! tree's `collectd/web-01/cpu-0/idle.wsp`) is listed as skipped with the reason, never guessed.
//!
//! `perfpipe export --to whisper|influxdb` copies every catalogued series from the first
//! configured backend into the other one, a day at a time in time order (each day read from
//! the finest archive that covers it), with a progress bar. It is resumable: each series copied
//! is appended to `<data_dir>/export-<target>.done` (synced), and a rerun skips those.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use perfpipe_backend::{
    Backend, Consolidation, DataSourceType, RangeQuery, SeriesBatch, SeriesKey,
};
use perfpipe_sqlite::SeriesUpdate;

use crate::config::{BackendKind, Config};
use crate::graphite::{decode_component, encode_component};

/// `perfpipe adopt`.
#[derive(clap::Args)]
pub struct AdoptArgs {
    /// An Opsview RRD tree (`<host>/<service>/<metric>/value.rrd`).
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with = "whisper",
        required_unless_present = "whisper"
    )]
    rrd: Option<PathBuf>,
    /// A Graphite Whisper tree (`<host>/<service>/<metric>.wsp`).
    #[arg(long, value_name = "DIR")]
    whisper: Option<PathBuf>,
    /// The node's configuration (where its catalogue and backends are).
    #[arg(long)]
    config: Option<PathBuf>,
}

/// `perfpipe export`.
#[derive(clap::Args)]
pub struct ExportArgs {
    /// The backend to copy into: `whisper` or `influxdb` (configured by its section).
    #[arg(long, value_name = "BACKEND")]
    to: String,
    /// The node's configuration; the source is its first backend.
    #[arg(long)]
    config: Option<PathBuf>,
}

/// What an adoption found.
#[derive(Debug, Default)]
pub struct Adopted {
    pub series: usize,
    /// Files left out, with why.
    pub skipped: Vec<(PathBuf, String)>,
}

/// A file of the tree and the series it holds.
struct Found {
    key: SeriesKey,
    file: PathBuf,
}

/// The series files of a tree: `depth` directory levels of names, then the file.
fn scan(
    root: &Path,
    rrd: bool,
    skipped: &mut Vec<(PathBuf, String)>,
) -> anyhow::Result<Vec<Found>> {
    let mut found = Vec::new();
    let mut pending = vec![(root.to_path_buf(), Vec::<String>::new())];
    while let Some((dir, names)) = pending.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("reading {}", dir.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = entry.file_type()?;
            let series_file = if rrd {
                kind.is_file() && name == "value.rrd"
            } else {
                kind.is_file() && name.ends_with(".wsp")
            };
            if kind.is_dir() {
                let mut deeper = names.clone();
                deeper.push(name);
                pending.push((path, deeper));
                continue;
            }
            if !series_file {
                continue;
            }
            let mut parts = names.clone();
            if !rrd {
                parts.push(name.trim_end_matches(".wsp").to_string());
            }
            if parts.len() != 3 {
                skipped.push((
                    path,
                    format!(
                        "{} levels of names where perfpipe's layout has host/service/metric",
                        parts.len()
                    ),
                ));
                continue;
            }
            let decoded: Vec<Option<String>> = parts.iter().map(|p| decode_component(p)).collect();
            match decoded.as_slice() {
                [Some(host), Some(service), Some(metric)]
                    if parts
                        .iter()
                        .zip([host, service, metric])
                        .all(|(part, name)| encode_component(name) == *part) =>
                {
                    found.push(Found {
                        key: SeriesKey::new(host.as_str(), service.as_str(), metric.as_str()),
                        file: path,
                    });
                }
                _ => skipped.push((
                    path,
                    "a name not in perfpipe's encoding (every byte outside [A-Za-z0-9_] as %XX), \
                     so the node would look for it under another file name"
                        .into(),
                )),
            }
        }
    }
    found.sort_by_key(|a| a.key.to_string());
    Ok(found)
}

/// First and last time with a value, and the last value, read through `backend` over ten
/// years, 400, 60 and 2 days back.
fn value_span(
    backend: &mut dyn Backend,
    key: &SeriesKey,
    until: i64,
) -> Result<(i64, i64, f64), String> {
    let mut read = |from: i64| -> Result<Option<(i64, i64, f64)>, String> {
        let range = RangeQuery {
            start: from,
            end: until,
            step: None,
            consolidation: Consolidation::Average,
        };
        let read = backend
            .read_as_of(key, &range, until)
            .map_err(|error| error.to_string())?;
        let at = |i: usize| read.start + i as i64 * i64::from(read.step);
        let (Some(first), Some(last)) = (
            read.values.iter().position(Option::is_some),
            read.values.iter().rposition(Option::is_some),
        ) else {
            return Ok(None);
        };
        Ok(read.values[last].map(|value| (at(first), at(last), value)))
    };
    // Shorter reads come from finer archives: the first value from whichever reaches
    // furthest back, the last one from the finest that holds any.
    let mut span: Option<(i64, i64, f64)> = None;
    for days in [3_660, 400, 60, 2] {
        if let Some((first, last, value)) = read(until - days * 86_400)? {
            span = Some(match span {
                Some((earliest, _, _)) => (earliest.min(first), last, value),
                None => (first, last, value),
            });
        }
    }
    span.ok_or_else(|| "no value stored".to_string())
}

/// Records the series of a tree in the catalogue.
pub fn adopt(config: &Config, kind: BackendKind, dir: &Path) -> anyhow::Result<Adopted> {
    let configured = match kind {
        BackendKind::Rrd => config.rrd_dir(),
        BackendKind::Whisper => config.whisper_dir(),
        BackendKind::Influxdb => bail!("InfluxDB has no tree to adopt"),
    };
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same(dir, &configured) {
        bail!(
            "{} is not the directory this configuration keeps {kind:?} files in ({}): set \
             `dir = {:?}` in its section so the node reads what the catalogue lists",
            dir.display(),
            configured.display(),
            dir.display().to_string()
        );
    }
    let mut adopted = Adopted::default();
    let found = scan(dir, kind == BackendKind::Rrd, &mut adopted.skipped)?;
    let mut backend = crate::storage::open_backend(kind, config, 64)?;
    let mut catalogue = crate::storage::open_catalogue(config)?;
    let bar = progress(found.len() as u64, "adopting");
    let now = perfpipe_backend::unix_now();
    let mut updates = Vec::new();
    for series in found {
        bar.inc(1);
        let (uom, ds_type, until) = match kind {
            BackendKind::Rrd => match rrd_facts(&series.file) {
                Ok(facts) => facts,
                Err(reason) => {
                    adopted.skipped.push((series.file, reason));
                    continue;
                }
            },
            _ => (String::new(), DataSourceType::Gauge, now),
        };
        let (first_seen, last_seen, last_value) =
            match value_span(backend.as_mut(), &series.key, until) {
                Ok(span) => span,
                Err(reason) => {
                    adopted.skipped.push((series.file, reason));
                    continue;
                }
            };
        updates.push(SeriesUpdate {
            key: std::borrow::Cow::Owned(series.key),
            uom: uom.into(),
            ds_type,
            first_seen,
            last_seen,
            last_value,
            // Neither layout keeps thresholds; the first written point brings them.
            warn: None,
            crit: None,
            may_lag: 0,
        });
        if updates.len() >= 1_000 {
            catalogue.record(&updates)?;
            adopted.series += updates.len();
            updates.clear();
        }
    }
    catalogue.record(&updates)?;
    adopted.series += updates.len();
    bar.finish_and_clear();
    Ok(adopted)
}

/// Unit (from the metric directory's `uom` file), data-source type and last update of an
/// Opsview RRD file.
#[cfg(feature = "rrd")]
fn rrd_facts(file: &Path) -> Result<(String, DataSourceType, i64), String> {
    let summary = perfpipe_rrd::describe(file).map_err(|e| e.to_string())?;
    let uom = file
        .parent()
        .map(|dir| dir.join("uom"))
        .and_then(|path| std::fs::read_to_string(path).ok())
        .map(|text| text.trim().to_string())
        .unwrap_or_default();
    let ds_type = match summary.value_type.as_deref() {
        Some("GAUGE") => DataSourceType::Gauge,
        Some("COUNTER" | "DERIVE" | "ABSOLUTE") => DataSourceType::Counter,
        Some(other) => return Err(format!("data source `value` of type {other}")),
        None => return Err("no data source named `value` (not Opsview's layout)".into()),
    };
    Ok((uom, ds_type, summary.last_update))
}

#[cfg(not(feature = "rrd"))]
fn rrd_facts(_file: &Path) -> Result<(String, DataSourceType, i64), String> {
    Err("this perfpipe was built without the `rrd` feature".into())
}

fn progress(total: u64, what: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr_with_hz(4),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} {bar:40} {pos}/{len} series, {per_sec}, eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar.set_message(what);
    bar
}

/// What an export did.
#[derive(Debug, Default)]
pub struct Exported {
    pub series: usize,
    pub points: u64,
    /// Series already copied by an earlier run.
    pub resumed: usize,
    pub failed: Vec<(SeriesKey, String)>,
}

/// Copies every catalogued series from the first configured backend into `target`.
pub fn export(config: &Config, target: BackendKind) -> anyhow::Result<Exported> {
    let source_kind = *config
        .backends
        .first()
        .context("no backend configured to export from")?;
    if source_kind == target {
        bail!("{target:?} is already the source (the first of `backends`): nothing to copy");
    }
    let mut source = crate::storage::open_backend(source_kind, config, 64)?;
    let mut into = crate::storage::open_backend(target, config, 64)?;
    let catalogue = crate::storage::open_catalogue(config)?;
    let mut series = Vec::new();
    for host in catalogue.hosts("")? {
        series.extend(catalogue.metrics(&host.host)?);
    }
    let done_path = config.data_dir.join(format!(
        "export-{}.done",
        format!("{target:?}").to_lowercase()
    ));
    let done: HashSet<String> = std::fs::read_to_string(&done_path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    let mut journal = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&done_path)
        .with_context(|| format!("opening {}", done_path.display()))?;
    let mut exported = Exported::default();
    let bar = progress(series.len() as u64, "exporting");
    for info in series {
        bar.inc(1);
        let name = info.key.to_string();
        if done.contains(&name) {
            exported.resumed += 1;
            continue;
        }
        match copy_series(source.as_mut(), into.as_mut(), &info) {
            Ok(points) => {
                exported.points += points;
                exported.series += 1;
                writeln!(journal, "{name}")?;
                journal.sync_data()?;
            }
            Err(reason) => exported.failed.push((info.key.clone(), reason)),
        }
    }
    bar.finish_and_clear();
    Ok(exported)
}

/// One series, a day at a time from its first value on; answers the points written.
fn copy_series(
    source: &mut dyn Backend,
    into: &mut dyn Backend,
    info: &perfpipe_sqlite::SeriesInfo,
) -> Result<u64, String> {
    const DAY: i64 = 86_400;
    let mut points = 0;
    let mut from = info.first_seen - 1;
    let now = perfpipe_backend::unix_now();
    while from < info.last_seen {
        let until = (from + DAY).min(info.last_seen);
        let range = RangeQuery {
            start: from,
            end: until,
            step: None,
            consolidation: Consolidation::Average,
        };
        let read = source
            .read_as_of(&info.key, &range, now)
            .map_err(|e| format!("reading {from}..{until}: {e}"))?;
        let values: Vec<(i64, f64)> = read
            .values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (read.start + i as i64 * i64::from(read.step), v)))
            .filter(|(at, _)| *at > from && *at <= until)
            .collect();
        if !values.is_empty() {
            let mut batch = SeriesBatch::new(info.key.clone(), info.uom.clone(), &values);
            batch.ds_type = info.ds_type;
            let report = into
                .write(&[batch])
                .map_err(|e| format!("writing {from}..{until}: {e}"))?;
            if let Some((_, error)) = report.failed.first() {
                return Err(format!("writing {from}..{until}: {error}"));
            }
            points += report.written;
        }
        from = until;
    }
    Ok(points)
}

/// `perfpipe adopt`: prints what was recorded and what was skipped.
pub fn run_adopt(args: AdoptArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref())?;
    let (kind, dir) = match (args.rrd, args.whisper) {
        (Some(dir), None) => (BackendKind::Rrd, dir),
        (None, Some(dir)) => (BackendKind::Whisper, dir),
        _ => bail!("give one of --rrd DIR or --whisper DIR"),
    };
    let adopted = adopt(&config, kind, &dir)?;
    for (file, why) in &adopted.skipped {
        eprintln!("skipped {}: {why}", file.display());
    }
    println!(
        "adopted {} series into the catalogue; skipped {} files",
        adopted.series,
        adopted.skipped.len()
    );
    Ok(())
}

/// `perfpipe export`: prints what was copied; fails when a series could not be.
pub fn run_export(args: ExportArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref())?;
    let target = match args.to.as_str() {
        "whisper" => BackendKind::Whisper,
        "influxdb" => BackendKind::Influxdb,
        other => bail!("--to {other:?}: whisper or influxdb"),
    };
    let exported = export(&config, target)?;
    for (key, why) in &exported.failed {
        eprintln!("not copied {key}: {why}");
    }
    println!(
        "copied {} series ({} points); {} already copied by an earlier run; {} failed",
        exported.series,
        exported.points,
        exported.resumed,
        exported.failed.len()
    );
    if !exported.failed.is_empty() {
        bail!(
            "{} series not copied (run again to retry them)",
            exported.failed.len()
        );
    }
    Ok(())
}
