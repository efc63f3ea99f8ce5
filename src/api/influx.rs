//! InfluxDB's write endpoints, so Telegraf, nagflux and every other InfluxDB client can write
//! to perfpipe: `POST /write` (1.x: `db`, `precision` = `n`/`ns`, `u`/`us`, `ms`, `s`, `m`,
//! `h`) and `POST /api/v2/write` (2.x: `org`, `bucket`, `precision` = `ns`, `us`, `ms`, `s`),
//! and `GET`/`HEAD /ping`.
//!
//! Owns the HTTP side (parameters, gzip bodies, InfluxDB's answers); the lines are read and
//! mapped by `crate::protocols::line_protocol`, and the points go through
//! [`super::write::submit`] like those of `POST /api/v1/write` (owner routing, write-ahead log,
//! hinted handoff). `db`, `org` and `bucket` are required, as InfluxDB requires them, and
//! otherwise not used: perfpipe has one store per node.
//!
//! Answers as InfluxDB does: 204 with no body when every line was taken; 400 with
//! `{"error": "..."}` naming each bad line (number, text, reason) otherwise. As InfluxDB 1.x
//! does, the good lines of a body with bad lines are taken (logged) before that 400, whose
//! error then starts with `partial write:`. 503 with `Retry-After` when the queues are full or
//! a log or owner could not take the points, 413 for a body (after gzip) over `max_body_size`.

use std::io::Read as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::write::{refused, submit, unavailable, SubmitError};
use super::{blocking, ApiError, Node};
use crate::protocols::line_protocol::{self, Mapping, Precision};

/// Bad lines named in one answer at most (the rest are counted).
const NAMED_BAD_LINES: usize = 10;

/// `GET /ping`, `HEAD /ping`: InfluxDB clients check the server with it.
pub async fn ping() -> Response {
    (
        StatusCode::NO_CONTENT,
        [("X-Influxdb-Version", "1.8-compatible (perfpipe)")],
    )
        .into_response()
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

/// `POST /write` (InfluxDB 1.x).
pub async fn write_v1(
    State(node): State<Arc<Node>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let raw = raw.unwrap_or_default();
    let mut database = None;
    let mut precision = Precision::Nanoseconds;
    for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
        match name.as_ref() {
            "db" => database = Some(value.into_owned()),
            "precision" => {
                precision = Precision::v1(&value).map_err(|e| bad_request(e.to_string()))?
            }
            // Credentials (checked by the auth layer), retention policy, consistency.
            _ => {}
        }
    }
    if database.is_none_or(|db| db.is_empty()) {
        return Err(bad_request("database is required (db)"));
    }
    take(node, headers, body, precision).await
}

/// `POST /api/v2/write` (InfluxDB 2.x).
pub async fn write_v2(
    State(node): State<Arc<Node>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let raw = raw.unwrap_or_default();
    let (mut org, mut bucket) = (None, None);
    let mut precision = Precision::Nanoseconds;
    for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
        match name.as_ref() {
            "org" | "orgID" => org = Some(value.into_owned()),
            "bucket" => bucket = Some(value.into_owned()),
            "precision" => {
                precision = Precision::v2(&value).map_err(|e| bad_request(e.to_string()))?
            }
            _ => {}
        }
    }
    if org.is_none_or(|org| org.is_empty()) {
        return Err(bad_request("organization is required (org or orgID)"));
    }
    if bucket.is_none_or(|bucket| bucket.is_empty()) {
        return Err(bad_request("bucket is required (bucket)"));
    }
    take(node, headers, body, precision).await
}

/// Reads, submits and answers one body.
async fn take(
    node: Arc<Node>,
    headers: HeaderMap,
    body: Bytes,
    precision: Precision,
) -> Result<Response, ApiError> {
    let limit = node.config.max_body_size.as_u64();
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim().eq_ignore_ascii_case("gzip"));
    let mapping = Mapping {
        host_tag: node.config.line_protocol.host_tag.clone(),
        nagflux_measurement: node.config.line_protocol.nagflux_measurement.clone(),
        max_name_length: node.config.limits.max_name_length,
    };
    let now = super::query::now();
    let read = blocking(move || {
        let body = if gzip {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .take(limit + 1)
                .read_to_end(&mut plain)
                .map_err(|error| bad_request(format!("gzip body: {error}")))?;
            if plain.len() as u64 > limit {
                return Err(ApiError(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("body larger than max_body_size ({limit} bytes) once unzipped"),
                ));
            }
            Bytes::from(plain)
        } else {
            body
        };
        let text = std::str::from_utf8(&body).map_err(|error| {
            bad_request(format!("body is not UTF-8 (byte {})", error.valid_up_to()))
        })?;
        Ok(line_protocol::read(text, precision, &mapping, now))
    })
    .await?;

    let counters = &node.protocols.line_protocol;
    counters.lines.fetch_add(read.lines, Ordering::Relaxed);
    counters
        .bad_lines
        .fetch_add(read.bad.len() as u64, Ordering::Relaxed);
    node.protocols
        .line_protocol_ignored_fields
        .fetch_add(read.ignored.len() as u64, Ordering::Relaxed);
    for ignored in &read.ignored {
        let (allowed, held_back) = node.protocols.line_protocol_log.allow();
        if held_back > 0 {
            tracing::warn!(held_back, "line protocol: more notices were not logged");
        }
        if allowed {
            tracing::info!(
                line = ignored.line,
                field = %ignored.field,
                reason = ignored.reason,
                "line protocol: field not stored"
            );
        }
    }
    for bad in &read.bad {
        let (allowed, held_back) = node.protocols.line_protocol_log.allow();
        if held_back > 0 {
            tracing::warn!(held_back, "line protocol: more notices were not logged");
        }
        if allowed {
            tracing::warn!(
                line = bad.line,
                reason = %bad.reason,
                "line protocol: line not taken"
            );
        }
    }
    if read.points > 0 {
        match submit(&node, read.series).await {
            Ok(()) => {
                counters.points.fetch_add(read.points, Ordering::Relaxed);
            }
            Err(failure) => {
                counters.dropped.fetch_add(read.points, Ordering::Relaxed);
                return Ok(match failure {
                    SubmitError::Refused(refusal) => refused(refusal),
                    SubmitError::Unavailable(why) => unavailable(why),
                });
            }
        }
    }
    if read.bad.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let mut message: Vec<String> = read
        .bad
        .iter()
        .take(NAMED_BAD_LINES)
        .map(ToString::to_string)
        .collect();
    if read.bad.len() > NAMED_BAD_LINES {
        message.push(format!(
            "and {} more bad lines",
            read.bad.len() - NAMED_BAD_LINES
        ));
    }
    let message = message.join("; ");
    let message = if read.points > 0 {
        format!(
            "partial write: {message} ({} points of the other lines taken)",
            read.points
        )
    } else {
        message
    };
    Err(bad_request(message))
}
