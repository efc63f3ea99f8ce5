//! `GET /api/v1/query` (ranges of series) and the catalogue listings `GET /api/v1/hosts`,
//! `GET /api/v1/hosts/{host}/metrics` (with each series' unit, last value and the warning and
//! critical thresholds of that value, as the catalogue keeps them), `GET /api/v1/series` (the
//! catalogue's series whose names match `*` patterns, of the whole cluster), and the reading
//! of ranges that Opsview's graph API shares ([`read_series`]).
//!
//! A query names series as `hsm=host::service::metric` (repeatable; answered in request
//! order), a range with `start` and `end` (epoch seconds, `now`, or `-24h`-style offsets from
//! now; default the last 24 hours), optionally `step` (seconds) and `cf` (`average`, `min`,
//! `max`). Series are read from the first configured backend of their owner node, with the
//! unit from its catalogue: series of other owners are asked of them (one request per owner,
//! all at once) and the answers merged in request order. An owner that cannot be reached gives
//! its series an `error` and the answer `"partial": true`, never a hang. Points still queued
//! are answered from the queue, and the listings include series whose first points are still
//! queued (as the catalogue will list them once written).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use perfpipe_backend::{BackendError, Consolidation, RangeQuery, SeriesKey};
use perfpipe_sqlite::HostSummary;
use serde_json::{json, Value};

use super::{blocking, ApiError, Node};
use crate::cluster::path_segment;

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

pub(super) fn now() -> i64 {
    perfpipe_backend::unix_now()
}

/// `1700000000`, `now`, `-24h`, `-7d`, `-90m`.
pub fn parse_time(text: &str, now: i64) -> Result<i64, String> {
    if text == "now" {
        return Ok(now);
    }
    if let Some(ago) = text.strip_prefix('-') {
        let span = humantime::parse_duration(ago)
            .map_err(|error| format!("{text:?} is not a time: {error}"))?;
        return Ok(now - span.as_secs() as i64);
    }
    text.parse::<i64>()
        .map_err(|_| format!("{text:?} is not a time (epoch seconds, now, or -24h)"))
}

pub fn parse_hsm(text: &str) -> Result<SeriesKey, String> {
    let mut parts = text.splitn(3, "::");
    match (parts.next(), parts.next(), parts.next()) {
        (Some(host), Some(service), Some(metric))
            if !host.is_empty() && !service.is_empty() && !metric.is_empty() =>
        {
            Ok(SeriesKey::new(host, service, metric))
        }
        _ => Err(format!("hsm {text:?} is not host::service::metric")),
    }
}

fn too_many_points(points: u64, limit: usize) -> ApiError {
    bad_request(format!(
        "{points} values, more than limits.max_query_points ({limit}): ask for fewer series, \
         a shorter span or a larger step"
    ))
}

pub async fn query(
    State(node): State<Arc<Node>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let _slot = super::query_slot(&node)?;
    let raw = raw.unwrap_or_default();
    let mut keys = Vec::new();
    let (mut start, mut end, mut step, mut cf) = (None, None, None, Consolidation::Average);
    let mut local_only = false;
    // Read as at this second (Graphite renders pass their `now` so every node picks the same
    // Whisper archive); default the clock.
    let mut as_of = None;
    let now = now();
    for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
        match name.as_ref() {
            "hsm" => keys.push(parse_hsm(&value).map_err(bad_request)?),
            "start" => start = Some(parse_time(&value, now).map_err(bad_request)?),
            "end" => end = Some(parse_time(&value, now).map_err(bad_request)?),
            "step" => {
                step = Some(
                    value
                        .parse::<u32>()
                        .ok()
                        .filter(|&s| s > 0)
                        .ok_or_else(|| {
                            bad_request(format!(
                                "step {value:?} is not a positive number of seconds"
                            ))
                        })?,
                )
            }
            "local" => local_only = value == "true",
            "now" => as_of = Some(parse_time(&value, now).map_err(bad_request)?),
            "cf" => {
                cf = match value.as_ref() {
                    "average" => Consolidation::Average,
                    "min" => Consolidation::Min,
                    "max" => Consolidation::Max,
                    other => return Err(bad_request(format!("cf {other:?}: average, min or max"))),
                }
            }
            other => return Err(bad_request(format!("unknown parameter {other:?}"))),
        }
    }
    if keys.is_empty() {
        return Err(bad_request(
            "name at least one series: hsm=host::service::metric",
        ));
    }
    let range = RangeQuery {
        start: start.unwrap_or(now - 86_400),
        end: end.unwrap_or(now),
        step,
        consolidation: cf,
    };
    if range.start >= range.end {
        return Err(bad_request(format!(
            "start {} is not before end {}",
            range.start, range.end
        )));
    }
    check_range(&node, &range, keys.len())?;
    let (series, partial) = read_series(&node, &keys, range, local_only, as_of).await?;
    let mut answer = json!({ "series": series });
    if partial {
        answer["partial"] = json!(true);
    }
    Ok(Json(answer))
}

/// The name of a consolidation as the query API's `cf` parameter spells it.
fn cf_name(consolidation: Consolidation) -> &'static str {
    match consolidation {
        Consolidation::Average => "average",
        Consolidation::Min => "min",
        Consolidation::Max => "max",
    }
}

/// Refuses a range over `limits.max_query_span`, or, when its step is fixed, one whose
/// answer for `series` series would hold more than `limits.max_query_points` values.
pub(super) fn check_range(node: &Node, range: &RangeQuery, series: usize) -> Result<(), ApiError> {
    let limits = &node.config.limits;
    let span = (range.end - range.start) as u64;
    if span > limits.max_query_span.as_secs() {
        return Err(bad_request(format!(
            "a span of {span} s is more than limits.max_query_span ({} s)",
            limits.max_query_span.as_secs()
        )));
    }
    // With a step the answer's size is known now; without, it is checked once read.
    if let Some(step) = range.step {
        let points = (span / u64::from(step) + 1).saturating_mul(series as u64);
        if points > limits.max_query_points as u64 {
            return Err(too_many_points(points, limits.max_query_points));
        }
    }
    Ok(())
}

/// Reads `keys` over `range`: each from the first backend of its owner (this node for all of
/// them with `local_only`), asking the owners in parallel. Answers one JSON object per key in
/// the order of `keys` (`hsm`, `uom`, `start`, `step`, `values`, or `values: []` and `error`),
/// and whether an owner could not be reached (`partial`). Refuses an answer over
/// `limits.max_query_points`. `as_of`: read as at that second (see `Backend::read_as_of`).
pub(super) async fn read_series(
    node: &Arc<Node>,
    keys: &[SeriesKey],
    range: RangeQuery,
    local_only: bool,
    as_of: Option<i64>,
) -> Result<(Vec<Value>, bool), ApiError> {
    let cf_name = cf_name(range.consolidation);
    // Which node answers each series: this one (None) or a peer.
    let owners: Vec<Option<usize>> = keys
        .iter()
        .map(|key| {
            if local_only {
                None
            } else {
                node.cluster.owner(&key.host)
            }
        })
        .collect();
    let mut by_owner: HashMap<usize, Vec<usize>> = HashMap::new();
    for (position, owner) in owners.iter().enumerate() {
        if let Some(owner) = owner {
            by_owner.entry(*owner).or_default().push(position);
        }
    }
    let remote: Vec<_> = by_owner
        .into_iter()
        .map(|(owner, positions)| {
            let mut query = form_urlencoded::Serializer::new(String::new());
            for &position in &positions {
                query.append_pair("hsm", &keys[position].to_string());
            }
            query.append_pair("start", &range.start.to_string());
            query.append_pair("end", &range.end.to_string());
            if let Some(step) = range.step {
                query.append_pair("step", &step.to_string());
            }
            query.append_pair("cf", cf_name);
            if let Some(as_of) = as_of {
                query.append_pair("now", &as_of.to_string());
            }
            let raw = query.finish();
            let node = node.clone();
            let answer = tokio::task::spawn_blocking(move || node.cluster.query(owner, &raw));
            (owner, positions, answer)
        })
        .collect();

    let local_keys: Vec<(usize, SeriesKey)> = keys
        .iter()
        .zip(&owners)
        .enumerate()
        .filter(|(_, (_, owner))| owner.is_none())
        .map(|(position, (key, _))| (position, key.clone()))
        .collect();
    let here = node.clone();
    let local = blocking(move || {
        if local_keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut backends = crate::storage::open_backends(&here.config)?;
        let answers = crate::storage::with_catalogue(&here.config, |catalogue| {
            let backend = backends
                .first_mut()
                .ok_or_else(|| anyhow::anyhow!("no backend configured"))?;
            let queued = queued_points(&here, backend.name(), &local_keys);
            let mut answers = Vec::with_capacity(local_keys.len());
            for ((position, key), queued) in local_keys.into_iter().zip(queued) {
                let uom = catalogue
                    .series(&key)
                    .map_err(anyhow::Error::from)?
                    .map(|info| info.uom);
                let mut answer = json!({ "hsm": key.to_string(), "uom": uom });
                match read_with_queued(backend.as_mut(), &key, &range, as_of, &queued) {
                    Ok(read) => {
                        answer["start"] = json!(read.start);
                        answer["step"] = json!(read.step);
                        answer["values"] = json!(read.values);
                    }
                    Err(BackendError::NotFound(_)) => {
                        answer["values"] = json!([]);
                        answer["error"] = json!("no such series");
                    }
                    Err(error @ (BackendError::EmptyName | BackendError::NameTooLong { .. })) => {
                        answer["values"] = json!([]);
                        answer["error"] = json!(error.to_string());
                    }
                    Err(error) => {
                        // The text names files: logged, not answered.
                        tracing::error!(series = %key, %error, "read failed");
                        answer["values"] = json!([]);
                        answer["error"] =
                            json!("the store could not be read; the node's log has the details");
                    }
                }
                answers.push((position, answer));
            }
            Ok(answers)
        })?;
        Ok(answers)
    })
    .await?;

    let points: usize = local
        .iter()
        .filter_map(|(_, answer)| answer["values"].as_array().map(Vec::len))
        .sum();
    if points > node.config.limits.max_query_points {
        return Err(too_many_points(
            points as u64,
            node.config.limits.max_query_points,
        ));
    }
    let mut series: Vec<Value> = vec![Value::Null; keys.len()];
    for (position, answer) in local {
        series[position] = answer;
    }
    let mut partial = false;
    for (owner, positions, answer) in remote {
        let answer = answer
            .await
            .map_err(anyhow::Error::from)
            .and_then(|answer| answer);
        match answer {
            Ok(answers) if answers.len() == positions.len() => {
                for (position, answer) in positions.into_iter().zip(answers) {
                    series[position] = answer;
                }
            }
            outcome => {
                partial = true;
                let why = match outcome {
                    Err(error) => format!("{error:#}"),
                    Ok(answers) => {
                        format!("answered {} series for {}", answers.len(), positions.len())
                    }
                };
                for position in positions {
                    series[position] = json!({
                        "hsm": keys[position].to_string(),
                        "values": [],
                        "error": format!("owner {} unreachable: {why}", node.cluster.node_url(owner)),
                    });
                }
            }
        }
    }
    Ok((series, partial))
}

/// How long a query waits for the shards to say what they hold queued.
const QUEUED_POINTS_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// The points of `keys` queued on this node and not yet in `backend` (the first backend, which
/// queries read), per key. None for RRD, whose rows are the ends of intervals between
/// updates: a queued point cannot be placed in them without the update before it.
pub(super) fn queued_points(
    node: &Node,
    backend: &str,
    keys: &[(usize, SeriesKey)],
) -> Vec<Vec<perfpipe_backend::Point>> {
    if backend == "rrd" {
        return vec![Vec::new(); keys.len()];
    }
    let keys: Vec<SeriesKey> = keys.iter().map(|(_, key)| key.clone()).collect();
    node.enqueuer.queued_points(&keys, QUEUED_POINTS_WAIT)
}

/// Reads a series from `backend` (as of `as_of`, or now) with its `queued` points filling the
/// gaps; a series the store does not have yet but whose first points are queued is answered
/// with them, in the layout the store will give it (`Backend::read_unwritten`).
pub(super) fn read_with_queued(
    backend: &mut dyn perfpipe_backend::Backend,
    key: &SeriesKey,
    range: &RangeQuery,
    as_of: Option<i64>,
    queued: &[perfpipe_backend::Point],
) -> Result<perfpipe_backend::SeriesRange, BackendError> {
    let read = match as_of {
        Some(as_of) => backend.read_as_of(key, range, as_of),
        None => backend.read(key, range),
    };
    let mut read = match read {
        Err(BackendError::NotFound(missing)) if !queued.is_empty() => {
            let now = as_of.unwrap_or_else(perfpipe_backend::unix_now);
            backend
                .read_unwritten(key, range, now)
                .ok_or(BackendError::NotFound(missing))?
        }
        read => read?,
    };
    add_queued(&mut read, queued, range.consolidation);
    Ok(read)
}

/// Fills the gaps of `read` with the queued points that fall in them, consolidated per slot
/// with `consolidation` (a slot `[start + i * step, start + (i + 1) * step)`, as Whisper and
/// InfluxDB keep them). Slots the store already has a value for keep it: a queued point for
/// such a slot is the store's value until the flush that brings the newer one. Of points with
/// the same timestamp the first counts, as the flush keeps it. The value is what the store
/// will answer once the points are written when each slot gets at most one point (check
/// results against the store's finest step, the usual case); with several, Whisper keeps the
/// last of them per finest slot where this takes their mean.
pub(super) fn add_queued(
    read: &mut perfpipe_backend::SeriesRange,
    queued: &[perfpipe_backend::Point],
    consolidation: Consolidation,
) {
    if queued.is_empty() || read.step == 0 {
        return;
    }
    let step = i64::from(read.step);
    // Per gap: (sum, count, min, max) of the points falling in it.
    let mut gaps: HashMap<usize, (f64, u32, f64, f64)> = HashMap::new();
    let mut seen = std::collections::HashSet::with_capacity(queued.len());
    for point in queued {
        if !seen.insert(point.timestamp) || point.timestamp < read.start || point.value.is_nan() {
            continue;
        }
        let slot = ((point.timestamp - read.start) / step) as usize;
        if read.values.get(slot) != Some(&None) {
            continue;
        }
        let entry = gaps
            .entry(slot)
            .or_insert((0.0, 0, f64::INFINITY, f64::NEG_INFINITY));
        entry.0 += point.value;
        entry.1 += 1;
        entry.2 = entry.2.min(point.value);
        entry.3 = entry.3.max(point.value);
    }
    for (slot, (sum, count, min, max)) in gaps {
        read.values[slot] = Some(match consolidation {
            Consolidation::Average => sum / f64::from(count),
            Consolidation::Min => min,
            Consolidation::Max => max,
        });
    }
}

/// A `GET` of `path` sent to every peer at once, answered later by [`gather_from_peers`].
type PeerAsk = (usize, tokio::task::JoinHandle<anyhow::Result<(u16, Value)>>);

/// Sends `GET path` (a `local=true` listing) to every peer in parallel.
fn ask_peers(node: &Arc<Node>, path: &str) -> Vec<PeerAsk> {
    node.cluster
        .peers()
        .map(|peer| {
            let node = node.clone();
            let path = path.to_owned();
            let answer = tokio::task::spawn_blocking(move || node.cluster.get(peer, &path));
            (peer, answer)
        })
        .collect()
}

/// Appends the array `field` of each peer's answer to `into`; returns the URLs of the peers
/// that did not answer it (logged).
async fn gather_from_peers(
    node: &Node,
    asks: Vec<PeerAsk>,
    field: &str,
    into: &mut Vec<Value>,
) -> Vec<String> {
    let mut missing = Vec::new();
    for (peer, answer) in asks {
        let url = node.cluster.node_url(peer);
        match answer.await.map_err(anyhow::Error::from).and_then(|a| a) {
            Ok((200, json)) => into.extend(json[field].as_array().cloned().unwrap_or_default()),
            Ok((status, json)) => {
                tracing::warn!(peer = url, status, %json, field, "peer listing");
                missing.push(url.to_string());
            }
            Err(error) => {
                tracing::warn!(peer = url, error = %format!("{error:#}"), field, "peer listing");
                missing.push(url.to_string());
            }
        }
    }
    missing
}

/// Which catalogue series a listing keeps: each list holds patterns with `*` wildcards; a
/// series is kept when its host matches one of `hosts` (or `hosts` is empty), and likewise its
/// service and metric.
#[derive(Debug, Clone, Default)]
pub(super) struct SeriesFilter {
    pub hosts: Vec<String>,
    pub services: Vec<String>,
    pub metrics: Vec<String>,
}

impl SeriesFilter {
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.services.is_empty() && self.metrics.is_empty()
    }

    pub fn matches(&self, key: &SeriesKey) -> bool {
        let any = |patterns: &[String], name: &str| {
            patterns.is_empty()
                || patterns
                    .iter()
                    .any(|pattern| super::opsview::wildcard_match(pattern, name, '*'))
        };
        any(&self.hosts, &key.host)
            && any(&self.services, &key.service)
            && any(&self.metrics, &key.metric)
    }

    /// The filter as `host=…&service=…&metric=…` parameters.
    fn append_to(&self, query: &mut form_urlencoded::Serializer<'_, String>) {
        for (name, patterns) in [
            ("host", &self.hosts),
            ("service", &self.services),
            ("metric", &self.metrics),
        ] {
            for pattern in patterns {
                query.append_pair(name, pattern);
            }
        }
    }
}

/// A series of a catalogue listing.
#[derive(Debug, Clone)]
pub(super) struct SeriesEntry {
    pub key: SeriesKey,
    pub uom: String,
}

/// The live series that `filter` keeps, from this node's catalogue and (unless `local_only`)
/// every peer's (`GET /api/v1/series?local=true`, asked in parallel), by host, service and
/// metric; with the URLs of the nodes that could not be asked.
pub(super) async fn cluster_series(
    node: &Arc<Node>,
    filter: &SeriesFilter,
    local_only: bool,
) -> Result<(Vec<SeriesEntry>, Vec<String>), ApiError> {
    let asks = if local_only {
        Vec::new()
    } else {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("local", "true");
        filter.append_to(&mut query);
        ask_peers(node, &format!("/api/v1/series?{}", query.finish()))
    };
    let listed = node.clone();
    let kept = filter.clone();
    let local = blocking(move || {
        let mut all =
            crate::storage::with_catalogue(&listed.config, |catalogue| Ok(catalogue.all()?))?;
        // Series whose first points are still queued are listed too.
        all.extend(listed.enqueuer.queued_new_series(super::QUEUED_SERIES_WAIT));
        Ok(all
            .into_iter()
            .filter(|series| kept.matches(&series.key))
            .map(|series| SeriesEntry {
                key: series.key,
                uom: series.uom,
            })
            .collect::<Vec<_>>())
    })
    .await?;
    let mut remote = Vec::new();
    let missing = gather_from_peers(node, asks, "series", &mut remote).await;
    let mut entries = local;
    for series in remote {
        let name = |field: &str| series[field].as_str().map(perfpipe_backend::Name::from);
        if let (Some(host), Some(service), Some(metric)) =
            (name("host"), name("service"), name("metric"))
        {
            entries.push(SeriesEntry {
                key: SeriesKey {
                    host,
                    service,
                    metric,
                },
                uom: name("uom").map(String::from).unwrap_or_default(),
            });
        }
    }
    entries.sort_by(|a, b| a.key.cmp(&b.key));
    entries.dedup_by(|a, b| a.key == b.key);
    Ok((entries, missing))
}

/// `GET /api/v1/series[?host=…&service=…&metric=…][&local=true]`: the live series of the
/// cluster (of this node with `local=true`) whose names match the `*` patterns given.
pub async fn series(
    State(node): State<Arc<Node>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let raw = raw.unwrap_or_default();
    let mut filter = SeriesFilter::default();
    let mut local_only = false;
    for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
        match name.as_ref() {
            "host" => filter.hosts.push(value.into_owned()),
            "service" => filter.services.push(value.into_owned()),
            "metric" => filter.metrics.push(value.into_owned()),
            "local" => local_only = value == "true",
            other => {
                return Err(bad_request(format!(
                    "unknown parameter {other:?} (host, service, metric, local)"
                )))
            }
        }
    }
    let (entries, missing) = cluster_series(&node, &filter, local_only).await?;
    let series: Vec<Value> = entries
        .into_iter()
        .map(|entry| {
            json!({
                "hsm": entry.key.to_string(),
                "host": entry.key.host,
                "service": entry.key.service,
                "metric": entry.key.metric,
                "uom": entry.uom,
            })
        })
        .collect();
    let mut answer = json!({ "series": series });
    if !missing.is_empty() {
        answer["partial"] = json!(true);
        answer["missing"] = json!(missing);
    }
    Ok(Json(answer))
}

/// The hosts of the whole cluster (`local=true`: of this node only). A node that cannot be
/// asked makes the answer `"partial": true` with the node in `"missing"`.
pub async fn hosts(
    State(node): State<Arc<Node>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let local_only = form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .any(|(name, value)| name == "local" && value == "true");
    let asks = if local_only {
        Vec::new()
    } else {
        ask_peers(&node, "/api/v1/hosts?local=true")
    };
    let listed = node.clone();
    let local = blocking(move || {
        let mut hosts: std::collections::BTreeMap<String, HostSummary> =
            crate::storage::with_catalogue(&listed.config, |catalogue| Ok(catalogue.hosts("")?))?
                .into_iter()
                .map(|summary| (summary.host.clone(), summary))
                .collect();
        // Series whose first points are still queued count too.
        for series in listed.enqueuer.queued_new_series(super::QUEUED_SERIES_WAIT) {
            let host = String::from(series.key.host);
            let summary = hosts.entry(host.clone()).or_insert(HostSummary {
                host,
                series: 0,
                last_seen: series.last_seen,
            });
            summary.series += 1;
            summary.last_seen = summary.last_seen.max(series.last_seen);
        }
        Ok(hosts.into_values().collect::<Vec<_>>())
    })
    .await?;
    let mut hosts: Vec<Value> = local
        .into_iter()
        .map(|h| json!({ "host": h.host, "series": h.series, "last_seen": h.last_seen }))
        .collect();
    let missing = gather_from_peers(&node, asks, "hosts", &mut hosts).await;
    hosts.sort_by(|a, b| a["host"].as_str().cmp(&b["host"].as_str()));
    let mut answer = json!({ "hosts": hosts });
    if !missing.is_empty() {
        answer["partial"] = json!(true);
        answer["missing"] = json!(missing);
    }
    Ok(Json(answer))
}

/// This node's series last seen before `before`, least recently seen first. A rollup
/// aggregate's catalogue row trails its values (`enqueuer::AGGREGATE_ROW_LAG`): one whose last
/// values are newer is not stale.
pub(crate) fn stale_series(
    node: &Node,
    before: i64,
) -> anyhow::Result<Vec<perfpipe_sqlite::SeriesInfo>> {
    let mut stale =
        crate::storage::with_catalogue(&node.config, |catalogue| Ok(catalogue.stale(before)?))?;
    stale.retain(|series| {
        node.last_values
            .newest(&series.key)
            .is_none_or(|(timestamp, _)| timestamp < before)
    });
    Ok(stale)
}

/// `GET /api/v1/stale[?older_than=30days]`: series not updated for `older_than` (default
/// `stale_after`), least recently seen first, gathered from every node.
pub async fn stale(
    State(node): State<Arc<Node>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let raw = raw.unwrap_or_default();
    let mut local_only = false;
    let mut older_than = node.config.stale_after;
    for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
        match &*name {
            "local" => local_only = value == "true",
            "older_than" => {
                older_than = humantime::parse_duration(&value).map_err(|error| {
                    ApiError(
                        StatusCode::BAD_REQUEST,
                        format!("older_than {value:?}: {error} (e.g. 30days, 12h)"),
                    )
                })?
            }
            _ => {}
        }
    }
    let forwarded = format!(
        "/api/v1/stale?local=true&older_than={}s",
        older_than.as_secs()
    );
    let asks = if local_only {
        Vec::new()
    } else {
        ask_peers(&node, &forwarded)
    };
    let listed = node.clone();
    let before = now() - older_than.as_secs() as i64;
    let local = blocking(move || Ok(stale_series(&listed, before)?)).await?;
    let mut stale: Vec<Value> = local
        .into_iter()
        .map(|series| {
            json!({
                "hsm": format!("{}::{}::{}", series.key.host, series.key.service, series.key.metric),
                "host": series.key.host,
                "service": series.key.service,
                "metric": series.key.metric,
                "last_seen": series.last_seen,
            })
        })
        .collect();
    let missing = gather_from_peers(&node, asks, "stale", &mut stale).await;
    stale.sort_by_key(|series| series["last_seen"].as_i64());
    let mut answer = json!({ "older_than": older_than.as_secs(), "stale": stale });
    if !missing.is_empty() {
        answer["partial"] = json!(true);
        answer["missing"] = json!(missing);
    }
    Ok(Json(answer))
}

/// A threshold as the listing answers it: `{"start", "end", "inside"}`, an infinite bound
/// `null` (JSON has no infinity).
fn threshold_json(range: &perfpipe_backend::ThresholdRange) -> Value {
    let finite = |bound: f64| bound.is_finite().then_some(bound);
    json!({ "start": finite(range.start), "end": finite(range.end), "inside": range.inside })
}

pub async fn host_metrics(
    State(node): State<Arc<Node>>,
    Path(host): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if let Some(owner) = node.cluster.owner(&host) {
        let path = format!("/api/v1/hosts/{}/metrics", path_segment(&host));
        let asked = node.clone();
        let (status, json) = blocking(move || Ok(asked.cluster.get(owner, &path)?)).await?;
        if status == 200 {
            return Ok(Json(json));
        }
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
        let message = json["error"]
            .as_str()
            .unwrap_or("the owner refused")
            .to_string();
        return Err(ApiError(status, message));
    }
    let listed = node.clone();
    let lookup = host.clone();
    let metrics = blocking(move || {
        let mut metrics = crate::storage::with_catalogue(&listed.config, |catalogue| {
            Ok(catalogue.metrics(&lookup)?)
        })?;
        // Series whose first points are still queued are listed too.
        metrics.extend(
            listed
                .enqueuer
                .queued_new_series(super::QUEUED_SERIES_WAIT)
                .into_iter()
                .filter(|series| series.key.host == lookup),
        );
        metrics
            .sort_by(|a, b| (&a.key.service, &a.key.metric).cmp(&(&b.key.service, &b.key.metric)));
        // An aggregate's row trails its values (`enqueuer::AGGREGATE_ROW_LAG`); the last
        // values do not.
        for series in &mut metrics {
            if let Some((timestamp, value)) = listed.last_values.newest(&series.key) {
                if timestamp > series.last_seen {
                    series.last_seen = timestamp;
                    series.last_value = Some(value);
                }
            }
        }
        Ok(metrics)
    })
    .await?;
    if metrics.is_empty() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no series of host {host:?}"),
        ));
    }
    let metrics: Vec<Value> = metrics
        .into_iter()
        .map(|s| {
            json!({
                "service": s.key.service,
                "metric": s.key.metric,
                "hsm": s.key.to_string(),
                "uom": s.uom,
                "ds_type": format!("{:?}", s.ds_type).to_uppercase(),
                "first_seen": s.first_seen,
                "last_seen": s.last_seen,
                "last_value": s.last_value,
                "warn": s.warn.as_ref().map(threshold_json),
                "crit": s.crit.as_ref().map(threshold_json),
            })
        })
        .collect();
    Ok(Json(json!({ "host": host, "metrics": metrics })))
}
