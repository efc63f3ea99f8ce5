//! Renaming a host, or a service of a host, on the node that owns both names: files move,
//! catalogue rows and last values follow, and where the new name already has data the two
//! are merged.
//!
//! The shards are held still while it happens ([`crate::enqueuer::Enqueuer::pause`]): each
//! first writes what it has queued and closes the files of both hosts, so no point is written
//! into a file being moved, and points arriving meanwhile wait in the shards' channels (for the
//! old name they start the old series afresh afterwards). Whisper files are merged as
//! graphite's `whisper-merge` does (each archive's points written into the destination, the
//! source winning where both have a value), the source then goes to the trash. RRD files are
//! merged by librrd's prefill (the destination rewritten from both files, the source again
//! winning where both have a value; see `perfpipe_rrd::merge_into`). InfluxDB over the v1 API
//! rewrites the points under the new tags and drops the old series
//! (`perfpipe_influxdb::InfluxBackend`'s `rename_series`), before any file moves, so a failure
//! there leaves the series whole under its old name; over v2 there is no read to copy with, and
//! the points stay under the old tags (said in the answer's `kept`).
//!
//! Before calling this, the API logs the old names in the write-ahead log as deletions are
//! logged (`crate::api::rename`): their points logged before the rename are in the files it
//! moves, and a crash before those log segments are gone must not replay them under the old
//! names.

use std::path::Path;

use anyhow::Context;
use perfpipe_backend::{SeriesKey, SeriesRename};
use perfpipe_whisper::WhisperFile;
use serde::Serialize;

use crate::api::Node;

/// What a rename did.
#[derive(Debug, Default, Serialize)]
pub struct Renamed {
    /// Series that carry the new name now.
    pub series: u64,
    /// Files moved to the new name.
    pub moved: u64,
    /// Files merged into the new name's file.
    pub merged: u64,
    /// Points rewritten under the new name by stores without files (InfluxDB, the aggregate
    /// store).
    pub points_rewritten: u64,
    /// Series left whole under the old name (and why).
    pub kept: Vec<String>,
}

/// Renames on this node: host `from.0` → `to.0`, and with a service only that service
/// (`from.1` → `to.1`) of the host, with its rollup aggregates (`from.1/H/avg` → `to.1/H/avg`).
pub fn rename_here(
    node: &Node,
    from: (&str, Option<&str>),
    to: (&str, Option<&str>),
) -> anyhow::Result<Renamed> {
    // A series merged into itself would be moved onto itself and its old copy removed.
    anyhow::ensure!(
        from.0 != to.0 || from.1 != to.1,
        "nothing to rename: the new name of {:?} is the old one",
        from.0
    );
    let _paused = node.enqueuer.pause(&[from.0.to_owned(), to.0.to_owned()]);
    let mut catalogue = crate::storage::open_catalogue(&node.config)?;
    let series: Vec<SeriesKey> = catalogue
        .metrics(from.0)?
        .into_iter()
        .map(|info| info.key)
        .filter(|key| {
            from.1
                .is_none_or(|service| renamed_service(&key.service, service).is_some())
        })
        .collect();
    // Fresh backend values, for where each keeps a series (the shards' own are paused).
    let mut backends = crate::storage::open_backends(&node.config)?;
    let now = perfpipe_backend::unix_now();
    let mut renamed = Renamed::default();
    for old in &series {
        let service = match (from.1, to.1) {
            (Some(from), Some(to)) => renamed_service(&old.service, from)
                .map_or(old.service.clone(), |suffix| format!("{to}{suffix}").into()),
            _ => old.service.clone(),
        };
        let new = SeriesKey::new(to.0, service, &*old.metric);
        // Where each backend keeps the two names: (backend, source, target), source existing.
        let mut places = Vec::new();
        for backend in &backends {
            let place =
                |key: &SeriesKey| backend.stored_at(&key.host, Some((&key.service, &key.metric)));
            if let (Some(source), Some(target)) = (place(old)?, place(&new)?) {
                if source.exists() {
                    places.push((backend.name(), source, target));
                }
            }
        }
        // A series one backend cannot merge stays whole under its old name, so its files,
        // catalogue row and last values never disagree about its name.
        let unmergeable: Vec<&str> = places
            .iter()
            .filter(|(backend, _, target)| target.exists() && merger(backend).is_none())
            .map(|(backend, _, _)| *backend)
            .collect();
        if !unmergeable.is_empty() {
            renamed.kept.push(format!(
                "{old} stays: {new} already has {} files it cannot be merged into",
                unmergeable.join(", ")
            ));
            continue;
        }
        // Stores without files first: a failure there leaves the series whole.
        let mut failed = None;
        for backend in &mut backends {
            match backend.rename_series(old, &new) {
                Ok(SeriesRename::NothingHeld) => {}
                Ok(SeriesRename::Moved { points }) => renamed.points_rewritten += points,
                Ok(SeriesRename::Unsupported(why)) => renamed.kept.push(format!(
                    "{old}: its points in {} stay under the old name ({why})",
                    backend.name()
                )),
                Err(error) => {
                    failed = Some(format!(
                        "{old} stays: {} could not rename it: {error}",
                        backend.name()
                    ));
                    break;
                }
            }
        }
        if let Some(failed) = failed {
            tracing::warn!("{failed}");
            renamed.kept.push(failed);
            continue;
        }
        for (backend, source, target) in places {
            if let (true, Some(merge)) = (target.exists(), merger(backend)) {
                merge(&source, &target, now)?;
                crate::trash::move_to_trash(&node.config.data_dir, &[source])?;
                renamed.merged += 1;
                continue;
            }
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::rename(&source, &target)
                .with_context(|| format!("moving {} to {}", source.display(), target.display()))?;
            renamed.moved += 1;
        }
        catalogue.rename_series(old, &new)?;
        let values = node
            .last_values
            .with_values(old, |values| values.iter().copied().collect::<Vec<_>>());
        if let Some(values) = values {
            let points: Vec<perfpipe_backend::Point> = values
                .into_iter()
                .map(|(timestamp, value)| perfpipe_backend::Point { timestamp, value })
                .collect();
            node.last_values.record(&new, &points);
            node.last_values
                .forget(&old.host, Some((&old.service, &old.metric)));
        }
        renamed.series += 1;
    }
    Ok(renamed)
}

/// Whether `service` is `renamed` itself or one of its rollup aggregates (`renamed/H/avg`,
/// …), which follow it: the rest of the name after `renamed`, empty for the service itself.
fn renamed_service<'a>(service: &'a str, renamed: &str) -> Option<&'a str> {
    if service == renamed {
        return Some("");
    }
    let aggregate = crate::rollup::parse_aggregate_service(service)?;
    (aggregate.base == renamed).then(|| &service[renamed.len()..])
}

/// How a backend's file of the old name is merged into an existing file of the new name.
type Merge = fn(&Path, &Path, i64) -> anyhow::Result<()>;

fn merger(backend: &str) -> Option<Merge> {
    match backend {
        "whisper" => Some(merge_whisper),
        #[cfg(feature = "rrd")]
        "rrd" => Some(merge_rrd),
        _ => None,
    }
}

/// Merges the RRD series directory `source` (`<host>/<service>/<metric>/`, holding
/// `value.rrd`) into `target`: each RRD file of it merged into the file of the same name there,
/// or moved there when there is none.
#[cfg(feature = "rrd")]
fn merge_rrd(source: &Path, target: &Path, _now: i64) -> anyhow::Result<()> {
    let entries =
        std::fs::read_dir(source).with_context(|| format!("reading {}", source.display()))?;
    for entry in entries {
        let from = entry
            .with_context(|| format!("reading {}", source.display()))?
            .path();
        if from.extension().is_none_or(|extension| extension != "rrd") {
            continue;
        }
        let into = target.join(from.file_name().expect("a directory entry has a name"));
        if into.exists() {
            perfpipe_rrd::merge_into(&from, &into)
                .with_context(|| format!("merging {} into {}", from.display(), into.display()))?;
        } else {
            std::fs::rename(&from, &into)
                .with_context(|| format!("moving {} to {}", from.display(), into.display()))?;
        }
    }
    Ok(())
}

/// Writes every point of the Whisper file `source` into `target`, archive by archive: each
/// archive's span that no finer archive covers, so that coarse values never land on times a
/// finer archive holds.
fn merge_whisper(source: &Path, target: &Path, now: i64) -> anyhow::Result<()> {
    let from = WhisperFile::open_read_only(source)
        .with_context(|| format!("reading {}", source.display()))?;
    let mut into =
        WhisperFile::open(target).with_context(|| format!("opening {}", target.display()))?;
    let mut newest = now;
    for archive in from.info().archives.clone() {
        let oldest = now - archive.retention() as i64;
        if let Some(fetched) =
            from.fetch_archive(oldest, newest, now, Some(archive.seconds_per_point))?
        {
            let points: Vec<(i64, f64)> = fetched
                .values
                .iter()
                .enumerate()
                .filter_map(|(slot, value)| {
                    value.map(|value| (fetched.from + slot as i64 * i64::from(fetched.step), value))
                })
                .filter(|&(timestamp, _)| timestamp < newest || newest == now)
                .collect();
            into.update_many(&points, now)
                .with_context(|| format!("merging into {}", target.display()))?;
        }
        newest = oldest;
    }
    Ok(())
}

/// `perfpipe rename --host OLD NEW [--service OLD NEW] [--url URL]`.
#[derive(clap::Args)]
pub struct RenameArgs {
    /// The host's old and new name.
    #[arg(long, num_args = 2, value_names = ["OLD", "NEW"], required = true)]
    host: Vec<String>,
    /// Only this service of the host: its old and new name.
    #[arg(long, num_args = 2, value_names = ["OLD", "NEW"])]
    service: Option<Vec<String>>,
    /// The node to ask (any node; it passes the request to the owner).
    #[arg(long, default_value = "http://127.0.0.1:8480")]
    url: String,
}

/// Asks a running node to rename and prints what it did.
pub fn run(args: RenameArgs) -> anyhow::Result<()> {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("host", &args.host[0])
        .append_pair("to_host", &args.host[1]);
    if let Some(service) = &args.service {
        query
            .append_pair("service", &service[0])
            .append_pair("to_service", &service[1]);
    }
    let url = format!(
        "{}/api/v1/rename?{}",
        args.url.trim_end_matches('/'),
        query.finish()
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut answer = agent
        .post(&url)
        .send_empty()
        .with_context(|| format!("asking {}", args.url))?;
    let status = answer.status().as_u16();
    let text = answer.body_mut().read_to_string()?;
    anyhow::ensure!(
        status == 200,
        "{} refused the rename ({status}): {text}",
        args.url
    );
    println!("{text}");
    Ok(())
}
