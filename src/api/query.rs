//! `GET /api/v1/query` (ranges of series) and the catalogue listings `GET /api/v1/hosts`,
//! `GET /api/v1/hosts/{host}/metrics`.
//!
//! A query names series as `hsm=host::service::metric` (repeatable; answered in request
//! order), a range with `start` and `end` (epoch seconds, `now`, or `-24h`-style offsets from
//! now; default the last 24 hours), optionally `step` (seconds) and `cf` (`average`, `min`,
//! `max`). Series are read from the first configured backend, with the unit from the
//! catalogue. Points still queued are not seen until their flush.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use perfpipe_backend::{BackendError, Consolidation, RangeQuery, SeriesKey};
use serde_json::{json, Value};

use super::{blocking, ApiError, Node};

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
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

fn parse_hsm(text: &str) -> Result<SeriesKey, String> {
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

pub async fn query(
    State(node): State<Arc<Node>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let raw = raw.unwrap_or_default();
    let mut keys = Vec::new();
    let (mut start, mut end, mut step, mut cf) = (None, None, None, Consolidation::Average);
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
    let config = node.config.clone();
    let series = blocking(move || {
        let mut backends = crate::storage::open_backends(&config)?;
        let catalogue = crate::storage::open_catalogue(&config)?;
        let backend = backends
            .first_mut()
            .ok_or_else(|| anyhow::anyhow!("no backend configured"))?;
        let mut answers = Vec::with_capacity(keys.len());
        for key in keys {
            let uom = catalogue
                .series(&key)
                .map_err(anyhow::Error::from)?
                .map(|info| info.uom);
            let mut answer = json!({ "hsm": key.to_string(), "uom": uom });
            match backend.read(&key, &range) {
                Ok(read) => {
                    answer["start"] = json!(read.start);
                    answer["step"] = json!(read.step);
                    answer["values"] = json!(read.values);
                }
                Err(BackendError::NotFound(_)) => {
                    answer["values"] = json!([]);
                    answer["error"] = json!("no such series");
                }
                Err(error) => return Err(ApiError(StatusCode::BAD_GATEWAY, error.to_string())),
            }
            answers.push(answer);
        }
        Ok(answers)
    })
    .await?;
    Ok(Json(json!({ "series": series })))
}

pub async fn hosts(State(node): State<Arc<Node>>) -> Result<Json<Value>, ApiError> {
    let config = node.config.clone();
    let hosts = blocking(move || {
        let catalogue = crate::storage::open_catalogue(&config)?;
        Ok(catalogue.hosts("").map_err(anyhow::Error::from)?)
    })
    .await?;
    let hosts: Vec<Value> = hosts
        .into_iter()
        .map(|h| json!({ "host": h.host, "series": h.series, "last_seen": h.last_seen }))
        .collect();
    Ok(Json(json!({ "hosts": hosts })))
}

pub async fn host_metrics(
    State(node): State<Arc<Node>>,
    Path(host): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let config = node.config.clone();
    let lookup = host.clone();
    let metrics = blocking(move || {
        let catalogue = crate::storage::open_catalogue(&config)?;
        Ok(catalogue.metrics(&lookup).map_err(anyhow::Error::from)?)
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
            })
        })
        .collect();
    Ok(Json(json!({ "host": host, "metrics": metrics })))
}
