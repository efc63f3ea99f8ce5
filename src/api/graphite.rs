//! The Graphite API that Grafana's Graphite data source and graphite-web's clients speak:
//! `GET/POST /render` (`format=json|csv|raw`), `GET /metrics/find` (treejson and completer
//! forms), `GET /metrics/expand`, `GET /functions` and `GET /version`, over every series the
//! cluster stores, whatever the backend. The language itself lives in `crate::graphite`; this
//! module gives it data: path patterns are matched against the catalogue (this node's, and
//! each peer's through its own `/metrics/find?local=1`), and series are read from the first
//! backend of their owner node as `/api/v1/query` reads them, as at the render's `now`.
//!
//! Parameters come from the query string and, for `POST`, a form body (Grafana posts one).
//! A target that does not parse, an unknown function or bad arguments answer 400 naming the
//! target and the reason; a peer that cannot be asked answers 502 naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use perfpipe_backend::{Backend, BackendError, Consolidation, RangeQuery, SeriesKey};
use serde_json::{json, Value};

use super::{blocking, ApiError, Node};
use crate::graphite::{self, decode_path, graphite_path, EvalError, PathPattern, Request, Series};

/// The graphite-web version whose API perfpipe answers like.
const GRAPHITE_VERSION: &str = "1.1.8";

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

/// Query-string and form-body parameters, in order.
fn parameters(raw: Option<String>, headers: &HeaderMap, body: &[u8]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> =
        form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form && !body.is_empty() {
        pairs.extend(form_urlencoded::parse(body).into_owned());
    }
    pairs
}

fn last<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// A node of the path tree: a branch (host, or host.service) or a leaf (a series).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct TreeNode {
    path: String,
    leaf: bool,
}

/// A read: first timestamp, step, values.
type StoredRange = (i64, i64, Vec<Option<f64>>);

/// The data source of one request.
struct ClusterStore {
    node: Arc<Node>,
    backend: Option<Box<dyn Backend>>,
}

impl ClusterStore {
    fn new(node: Arc<Node>) -> ClusterStore {
        ClusterStore {
            node,
            backend: None,
        }
    }

    /// This node's part of the tree at the pattern's depth.
    fn find_local(&mut self, pattern: &PathPattern) -> Result<Vec<TreeNode>, String> {
        let depth = pattern.depth();
        if !(1..=3).contains(&depth) {
            return Ok(Vec::new());
        }
        // Series whose first points are still queued are listed too (their reads are answered
        // from the queue until the first write).
        let mut queued: BTreeMap<String, Vec<SeriesKey>> = BTreeMap::new();
        for series in self
            .node
            .enqueuer
            .queued_new_series(super::QUEUED_SERIES_WAIT)
        {
            queued
                .entry(series.key.host.to_string())
                .or_default()
                .push(series.key);
        }
        crate::storage::with_catalogue(&self.node.config, |catalogue| {
            let hosts: BTreeSet<String> =
                match pattern.literal(0).and_then(graphite::decode_component) {
                    Some(host) => BTreeSet::from([host.to_string()]),
                    None => catalogue
                        .hosts("")?
                        .into_iter()
                        .map(|summary| summary.host)
                        .chain(queued.keys().cloned())
                        .collect(),
                };
            let mut found = BTreeSet::new();
            for host in hosts {
                let host_part = graphite::encode_component(&host);
                if !pattern.node_matches(0, &host_part) {
                    continue;
                }
                let series = catalogue
                    .metrics(&host)?
                    .into_iter()
                    .map(|info| info.key)
                    .chain(queued.remove(&host).unwrap_or_default());
                for key in series {
                    let service_part = graphite::encode_component(&key.service);
                    let (path, leaf) = match depth {
                        1 => (host_part.clone(), false),
                        2 if pattern.node_matches(1, &service_part) => {
                            (format!("{host_part}.{service_part}"), false)
                        }
                        3 if pattern.node_matches(1, &service_part)
                            && pattern
                                .node_matches(2, &graphite::encode_component(&key.metric)) =>
                        {
                            (graphite_path(&key), true)
                        }
                        _ => continue,
                    };
                    found.insert(TreeNode { path, leaf });
                }
            }
            Ok(found.into_iter().collect())
        })
        .map_err(|error| format!("{error:#}"))
    }

    /// The whole cluster's part of the tree at the pattern's depth, sorted by path.
    fn find(&mut self, text: &str) -> Result<Vec<TreeNode>, String> {
        let pattern = PathPattern::new(text);
        let mut found: BTreeSet<TreeNode> = self.find_local(&pattern)?.into_iter().collect();
        // A literal host lives on its owner only; a pattern may match hosts anywhere.
        let peers: Vec<usize> = match pattern.literal(0).and_then(graphite::decode_component) {
            Some(host) => self.node.cluster.owner(&host).into_iter().collect(),
            None => self.node.cluster.peers().collect(),
        };
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("query", text);
        query.append_pair("local", "1");
        query.append_pair("format", "nodes");
        let path = format!("/metrics/find?{}", query.finish());
        for peer in peers {
            let (status, answer) = self
                .node
                .cluster
                .get(peer, &path)
                .map_err(|error| format!("{}: {error:#}", self.node.cluster.node_url(peer)))?;
            if status != 200 {
                return Err(format!(
                    "{} answered {status} to {path}: {answer}",
                    self.node.cluster.node_url(peer)
                ));
            }
            for entry in answer.as_array().into_iter().flatten() {
                if let Some(path) = entry["path"].as_str() {
                    found.insert(TreeNode {
                        path: path.to_string(),
                        leaf: entry["leaf"].as_bool() == Some(true),
                    });
                }
            }
        }
        Ok(found.into_iter().collect())
    }

    /// The first backend, opened at the first read.
    fn backend(&mut self) -> Result<&mut Box<dyn perfpipe_backend::Backend>, String> {
        if self.backend.is_none() {
            let backend = crate::storage::open_backends(&self.node.config)
                .map_err(|error| format!("{error:#}"))?
                .into_iter()
                .next()
                .ok_or("no backend configured")?;
            self.backend = Some(backend);
        }
        Ok(self.backend.as_mut().expect("just opened"))
    }

    /// Reads a series of this node, its gaps filled with its `queued` points.
    fn read_local(
        &mut self,
        key: &SeriesKey,
        range: &RangeQuery,
        now: i64,
        queued: &[perfpipe_backend::Point],
    ) -> Result<Option<StoredRange>, String> {
        let backend = self.backend()?;
        match super::query::read_with_queued(backend.as_mut(), key, range, Some(now), queued) {
            Ok(read) => Ok(Some((read.start, i64::from(read.step), read.values))),
            Err(
                BackendError::NotFound(_)
                | BackendError::EmptyName
                | BackendError::NameTooLong { .. },
            ) => Ok(None),
            Err(error) => {
                tracing::error!(series = %key, %error, "graphite render: read failed");
                Err("the store could not be read; the node's log has the details".into())
            }
        }
    }
}

impl graphite::Store for ClusterStore {
    fn fetch(
        &mut self,
        pattern: &str,
        start: i64,
        end: i64,
        now: i64,
    ) -> Result<Vec<Series>, String> {
        let leaves: Vec<(String, SeriesKey)> = self
            .find(pattern)?
            .into_iter()
            .filter(|node| node.leaf)
            .filter_map(|node| decode_path(&node.path).map(|key| (node.path, key)))
            .collect();
        let range = RangeQuery {
            start,
            end,
            step: None,
            consolidation: Consolidation::Average,
        };
        let mut series = Vec::with_capacity(leaves.len());
        let mut remote: Vec<(usize, Vec<(String, SeriesKey)>)> = Vec::new();
        let mut local: Vec<(String, SeriesKey)> = Vec::new();
        for (path, key) in leaves {
            match self.node.cluster.owner(&key.host) {
                None => local.push((path, key)),
                Some(owner) => match remote.iter_mut().find(|(o, _)| *o == owner) {
                    Some((_, keys)) => keys.push((path, key)),
                    None => remote.push((owner, vec![(path, key)])),
                },
            }
        }
        if !local.is_empty() {
            let keys: Vec<(usize, SeriesKey)> = local
                .iter()
                .enumerate()
                .map(|(position, (_, key))| (position, key.clone()))
                .collect();
            let backend = self.backend()?.name();
            let queued = super::query::queued_points(&self.node, backend, &keys);
            for ((path, key), queued) in local.into_iter().zip(queued) {
                if let Some((first, step, values)) = self.read_local(&key, &range, now, &queued)? {
                    push_read(&mut series, path, first, step, values);
                }
            }
        }
        for (owner, keys) in remote {
            let mut query = form_urlencoded::Serializer::new(String::new());
            for (_, key) in &keys {
                query.append_pair("hsm", &key.to_string());
            }
            query.append_pair("start", &start.to_string());
            query.append_pair("end", &end.to_string());
            query.append_pair("now", &now.to_string());
            let answers = self
                .node
                .cluster
                .query(owner, &query.finish())
                .map_err(|error| format!("{}: {error:#}", self.node.cluster.node_url(owner)))?;
            for ((path, _), answer) in keys.into_iter().zip(answers) {
                let (Some(first), Some(step)) = (answer["start"].as_i64(), answer["step"].as_i64())
                else {
                    continue;
                };
                let values = answer["values"]
                    .as_array()
                    .map(|values| values.iter().map(Value::as_f64).collect())
                    .unwrap_or_default();
                push_read(&mut series, path, first, step, values);
            }
        }
        series.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(series)
    }
}

/// Adds a read series unless nothing was read (graphite-web leaves such a series out).
fn push_read(
    into: &mut Vec<Series>,
    path: String,
    start: i64,
    step: i64,
    values: Vec<Option<f64>>,
) {
    if values.is_empty() || step <= 0 {
        return;
    }
    let end = start + values.len() as i64 * step;
    into.push(Series::new(path, start, end, step, values));
}

/// `GET /render` and `POST /render`.
pub async fn render(
    State(node): State<Arc<Node>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let _slot = super::query_slot(&node)?;
    let pairs = parameters(raw, &headers, &body);
    let targets: Vec<String> = pairs
        .iter()
        .filter(|(key, _)| key == "target" || key == "target[]")
        .map(|(_, value)| value.clone())
        .collect();
    let clock = super::query::now();
    let time = |name: &str, default: &str, now: i64| {
        let text = last(&pairs, name).unwrap_or(default);
        graphite::parse_at_time(text, now).map_err(|error| bad_request(format!("{name}: {error}")))
    };
    let now = time("now", "now", clock)?;
    let from = time("from", "-1d", now)?;
    let until = time("until", "now", now)?;
    let (start, end) = (from.min(until), from.max(until));
    if start == end {
        return Err(bad_request(
            "from and until are the same time: an empty range",
        ));
    }
    let format = last(&pairs, "format").unwrap_or("json").to_string();
    if !matches!(format.as_str(), "json" | "csv" | "raw") {
        return Err(bad_request(format!(
            "format={format}: perfpipe answers data, not images: json, csv or raw"
        )));
    }
    let max_data_points = last(&pairs, "maxDataPoints").and_then(|v| v.parse::<usize>().ok());
    let no_null_points = last(&pairs, "noNullPoints").is_some();
    let x_files_factor = match last(&pairs, "xFilesFactor") {
        Some(text) => text
            .parse::<f64>()
            .ok()
            .filter(|v| (0.0..=1.0).contains(v))
            .ok_or_else(|| bad_request(format!("xFilesFactor {text:?} is not between 0 and 1")))?,
        None => 0.0,
    };
    let span = (end - start) as u64;
    let limits = &node.config.limits;
    if span > limits.max_query_span.as_secs() {
        return Err(bad_request(format!(
            "a span of {span} s is more than limits.max_query_span ({} s)",
            limits.max_query_span.as_secs()
        )));
    }
    let request = Request {
        start,
        end,
        now,
        x_files_factor,
    };
    let asked = node.clone();
    let max_points = limits.max_query_points;
    let (content_type, body) = blocking(move || {
        let mut store = ClusterStore::new(asked);
        let mut series = graphite::evaluate_targets(&mut store, request, &targets).map_err(
            |error| match error {
                EvalError::Store(message) => ApiError(StatusCode::BAD_GATEWAY, message),
                other => bad_request(other.to_string()),
            },
        )?;
        let points: usize = series.iter().map(|s| s.values.len()).sum();
        if points > max_points {
            return Err(bad_request(format!(
                "{points} values, more than limits.max_query_points ({max_points}): fewer \
                 targets or a shorter span"
            )));
        }
        Ok(match format.as_str() {
            "csv" => ("text/csv", csv(&series)),
            "raw" => ("text/plain", raw_text(&series)),
            _ => (
                "application/json",
                render_json(&mut series, max_data_points, no_null_points),
            ),
        })
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

/// The JSON answer, written straight into one buffer: a dashboard's answer holds hundreds of
/// thousands of points, and a `serde_json::Value` per point costs more than reading them.
fn render_json(
    series: &mut [Series],
    max_data_points: Option<usize>,
    no_null_points: bool,
) -> String {
    graphite::apply_max_data_points(series, max_data_points);
    let total: usize = series.iter().map(|s| s.values.len()).sum();
    // About 25 bytes a point (`[51.234, 1764590460], `); room for a little more.
    let mut out = String::with_capacity(total * 32 + series.len() * 128);
    let mut numbers = ryu::Buffer::new();
    let mut integers = itoa::Buffer::new();
    out.push('[');
    let mut first_series = true;
    for one in series.iter() {
        let consolidated;
        let values: &[Option<f64>] = if one.values_per_point > 1 {
            consolidated = one.points();
            &consolidated
        } else {
            &one.values
        };
        let stride = (one.step * one.values_per_point as i64).max(1);
        let count = if one.end < one.start {
            0
        } else {
            values
                .len()
                .min(((one.end - one.start) / stride + 1) as usize)
        };
        let values = &values[..count];
        if no_null_points && values.iter().all(Option::is_none) {
            continue;
        }
        if !first_series {
            out.push_str(", ");
        }
        first_series = false;
        let name = serde_json::to_string(&one.name).unwrap_or_else(|_| "\"\"".into());
        out.push_str("{\"target\": ");
        out.push_str(&name);
        out.push_str(", \"tags\": {\"name\": ");
        out.push_str(&name);
        out.push_str("}, \"datapoints\": [");
        let mut first_point = true;
        for (i, value) in values.iter().enumerate() {
            if no_null_points && value.is_none() {
                continue;
            }
            if !first_point {
                out.push_str(", ");
            }
            first_point = false;
            out.push('[');
            match *value {
                Some(v) if v.is_finite() => push_number(&mut out, v, &mut numbers, &mut integers),
                // graphite-web's spelling of the infinities; NaN is no value.
                Some(v) if v == f64::INFINITY => out.push_str("1e9999"),
                Some(v) if v == f64::NEG_INFINITY => out.push_str("-1e9999"),
                _ => out.push_str("null"),
            }
            out.push_str(", ");
            out.push_str(integers.format(one.start + i as i64 * stride));
            out.push(']');
        }
        out.push_str("]}");
    }
    out.push(']');
    out
}

/// Writes a finite number so that it reads back as exactly `value`. Stored measurements are
/// mostly short decimals (`51.234`): when `value · 10^k` is a whole number `m` below 2^53 for
/// some k ≤ 6 and `m / 10^k == value` (both exact in binary, the division correctly rounded),
/// `m` with k decimals parses back to `value`, and is written with integer formatting. Others
/// go to ryu (the shortest representation). About twice as fast as ryu alone on such data.
fn push_number(out: &mut String, value: f64, ryu: &mut ryu::Buffer, itoa: &mut itoa::Buffer) {
    const POWERS: [f64; 7] = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6];
    if value.abs() < 1e9 {
        for (decimals, scale) in POWERS.iter().enumerate() {
            let whole = (value * scale).round();
            if whole / scale == value {
                let digits = itoa.format(whole.abs() as i64);
                if value.is_sign_negative() && whole != 0.0 {
                    out.push('-');
                }
                if decimals == 0 {
                    out.push_str(digits);
                    out.push_str(".0");
                } else if digits.len() > decimals {
                    let (int, frac) = digits.split_at(digits.len() - decimals);
                    out.push_str(int);
                    out.push('.');
                    out.push_str(frac);
                } else {
                    out.push_str("0.");
                    out.extend(std::iter::repeat_n('0', decimals - digits.len()));
                    out.push_str(digits);
                }
                return;
            }
        }
    }
    out.push_str(ryu.format_finite(value));
}

fn csv(series: &[Series]) -> String {
    let mut out = String::new();
    for one in series {
        for (i, value) in one.points().iter().enumerate() {
            let at = one.start + i as i64 * one.step * one.values_per_point as i64;
            let stamp = chrono::DateTime::from_timestamp(at, 0)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_default();
            let value = value.map(graphite::python_float).unwrap_or_default();
            let name = if one.name.contains([',', '"', '\n']) {
                format!("\"{}\"", one.name.replace('"', "\"\""))
            } else {
                one.name.clone()
            };
            out.push_str(&format!("{name},{stamp},{value}\r\n"));
        }
    }
    out
}

fn raw_text(series: &[Series]) -> String {
    let mut out = String::new();
    for one in series {
        let values: Vec<String> = one
            .points()
            .iter()
            .map(|v| v.map_or_else(|| "None".to_string(), graphite::python_float))
            .collect();
        out.push_str(&format!(
            "{},{},{},{}|{}\n",
            one.name,
            one.start,
            one.end,
            one.step,
            values.join(",")
        ));
    }
    out
}

/// `GET /metrics/find?query=…[&format=treejson|completer]`.
pub async fn find(
    State(node): State<Arc<Node>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let pairs = parameters(raw, &headers, &body);
    let mut query = last(&pairs, "query")
        .filter(|q| !q.is_empty())
        .ok_or_else(|| bad_request("the query parameter is missing or empty"))?
        .to_string();
    let format = last(&pairs, "format").unwrap_or("treejson").to_string();
    let local = last(&pairs, "local") == Some("1");
    let base_path = query
        .rsplit_once('.')
        .map(|(base, _)| format!("{base}."))
        .unwrap_or_default();
    if format == "completer" {
        query = query.replace("..", "*.");
        if !query.ends_with('*') {
            query.push('*');
        }
    }
    let asked = node.clone();
    let found = blocking(move || {
        let mut store = ClusterStore::new(asked);
        if local {
            store.find_local(&PathPattern::new(&query))
        } else {
            store.find(&query)
        }
        .map_err(|message| ApiError(StatusCode::BAD_GATEWAY, message))
    })
    .await?;
    let name_of = |path: &str| path.rsplit('.').next().unwrap_or(path).to_string();
    // graphite-web sorts by the node's own name, not its path.
    let mut by_name = found.clone();
    by_name.sort_by_key(|node| name_of(&node.path));
    let wildcards = last(&pairs, "wildcards") == Some("1") && by_name.len() > 1;
    Ok(match format.as_str() {
        "treejson" => {
            // As graphite-web's tree_json: one entry per name (the first), branches before
            // leaves, and a `*` entry first when asked for.
            let entry = |text: String, id: String, leaf: bool| {
                let (allow, expandable, leaf) = if leaf { (0, 0, 1) } else { (1, 1, 0) };
                json!({
                    "text": text,
                    "id": id,
                    "allowChildren": allow,
                    "expandable": expandable,
                    "leaf": leaf,
                })
            };
            let mut seen = BTreeSet::new();
            let (mut branches, mut leaves) = (Vec::new(), Vec::new());
            for node in &by_name {
                let name = name_of(&node.path);
                if !seen.insert(name.clone()) {
                    continue;
                }
                // graphite-web shows the name unquoted, the id as stored.
                let text = graphite::decode_component(&name).unwrap_or_else(|| name.clone());
                let made = entry(text, format!("{base_path}{name}"), node.leaf);
                if node.leaf {
                    leaves.push(made);
                } else {
                    branches.push(made);
                }
            }
            let mut all = Vec::new();
            if wildcards {
                let any_branch = by_name.iter().any(|node| !node.leaf);
                all.push(entry("*".into(), format!("{base_path}*"), !any_branch));
            }
            all.extend(branches);
            all.extend(leaves);
            Json(all).into_response()
        }
        "completer" => {
            let mut metrics: Vec<Value> = by_name
                .iter()
                .map(|node| {
                    json!({
                        "path": if node.leaf { node.path.clone() } else { format!("{}.", node.path) },
                        "name": name_of(&node.path),
                        "is_leaf": if node.leaf { "1" } else { "0" },
                    })
                })
                .collect();
            if wildcards {
                metrics.push(json!({ "name": "*" }));
            }
            Json(json!({ "metrics": metrics })).into_response()
        }
        // perfpipe's own, between nodes: the matching paths themselves (treejson's ids
        // repeat the pattern's prefix, as graphite-web's do).
        "nodes" => Json(
            found
                .iter()
                .map(|node| json!({ "path": node.path, "leaf": node.leaf }))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        other => {
            return Err(bad_request(format!(
                "format={other}: treejson, completer or nodes"
            )))
        }
    })
}

/// `GET /metrics/expand?query=…` (repeatable; `leavesOnly=1`, `groupByExpr=1`).
pub async fn expand(
    State(node): State<Arc<Node>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let pairs = parameters(raw, &headers, &body);
    let queries: Vec<String> = pairs
        .iter()
        .filter(|(key, _)| key == "query")
        .map(|(_, value)| value.clone())
        .collect();
    if queries.is_empty() {
        return Err(bad_request("the query parameter is missing"));
    }
    let leaves_only = last(&pairs, "leavesOnly") == Some("1");
    let group = last(&pairs, "groupByExpr") == Some("1");
    let asked = node.clone();
    let expanded = blocking(move || {
        let mut store = ClusterStore::new(asked);
        let mut out = Vec::new();
        for query in queries {
            let paths: BTreeSet<String> = store
                .find(&query)
                .map_err(|message| ApiError(StatusCode::BAD_GATEWAY, message))?
                .into_iter()
                .filter(|node| node.leaf || !leaves_only)
                .map(|node| node.path)
                .collect();
            out.push((query, paths));
        }
        Ok(out)
    })
    .await?;
    let results = if group {
        Value::Object(
            expanded
                .into_iter()
                .map(|(query, paths)| (query, json!(paths)))
                .collect(),
        )
    } else {
        let all: BTreeSet<String> = expanded.into_iter().flat_map(|(_, paths)| paths).collect();
        json!(all)
    };
    Ok(Json(json!({ "results": results })).into_response())
}

/// `GET /functions`: the functions `/render` knows, in graphite-web's shape.
pub async fn functions() -> Json<Value> {
    let mut all = serde_json::Map::new();
    for (name, group, params) in graphite::FUNCTION_NAMES {
        let params: Vec<Value> = params
            .iter()
            .map(|(param, kind, required)| {
                let mut p = json!({ "name": param, "type": kind });
                if *required {
                    p["required"] = json!(true);
                }
                p
            })
            .collect();
        all.insert(
            (*name).to_string(),
            json!({
                "name": name,
                "function": format!("{name}({})", params.iter().filter_map(|p| p["name"].as_str()).collect::<Vec<_>>().join(", ")),
                "group": group,
                "module": "perfpipe.graphite",
                "description": format!("graphite-web's {name}; see docs/api.md"),
                "params": params,
            }),
        );
    }
    Json(Value::Object(all))
}

/// `GET /version`: the graphite-web version whose API this is, as graphite-web answers it.
pub async fn version() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain")], GRAPHITE_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_back_exactly() {
        let (mut ryu, mut itoa) = (ryu::Buffer::new(), itoa::Buffer::new());
        let samples = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            51.234,
            -0.005,
            0.1,
            0.3,
            0.1 + 0.2,
            1e-7,
            123456.789,
            1e8,
            999999999.5,
            1e9,
            2.5e15,
            -7.125,
            1.0 / 3.0,
            42.000001,
            0.000123,
        ];
        for value in samples
            .into_iter()
            .chain((0..20_000).map(|i| (i as f64 * 0.731).sin() * 1e3))
        {
            let mut out = String::new();
            push_number(&mut out, value, &mut ryu, &mut itoa);
            let back: f64 = out
                .parse()
                .unwrap_or_else(|_| panic!("{out:?} is a number"));
            assert_eq!(
                back.to_bits() & !(1 << 63),
                value.to_bits() & !(1 << 63),
                "{value} as {out}"
            );
        }
        let mut out = String::new();
        push_number(&mut out, 51.234, &mut ryu, &mut itoa);
        push_number(&mut out, -0.005, &mut ryu, &mut itoa);
        push_number(&mut out, 7.0, &mut ryu, &mut itoa);
        assert_eq!(out, "51.234-0.0057.0");
    }
}
