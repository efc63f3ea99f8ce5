//! `POST /api/v1/write`: check results in, points to the enqueuer.
//!
//! The body format follows `Content-Type`: `application/json` (`{"results":[…]}`),
//! `application/x-ndjson` (one result a line), `text/plain` (Opsview or Nagios spool lines);
//! without one, it is detected. The answer is `{"results":N,"points":M,"errors":[{"result":i,
//! "offset":o,"message":"…"}]}`: every bad result or metric is listed and the good ones are
//! taken. 503 with `Retry-After` when the queues are full (nothing of the request was taken),
//! 413 when the body is over `max_body_size`, 415 for another content type, 400 when nothing
//! could be taken at all.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::{blocking, ApiError, Node};
use crate::intake::{self, Format, IntakeError};

#[derive(Serialize)]
struct WriteAnswer {
    results: u64,
    points: u64,
    errors: Vec<IntakeError>,
}

pub async fn write(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let format = body_format(&headers)?;
    let intake = blocking(move || Ok(intake::read(&body, format))).await?;
    let answer = WriteAnswer {
        results: intake.results,
        points: intake.points,
        errors: intake.errors,
    };
    if answer.results == 0 && !answer.errors.is_empty() {
        return Ok((StatusCode::BAD_REQUEST, Json(answer)).into_response());
    }
    match node.enqueuer.enqueue(intake.series) {
        Ok(_) => Ok(Json(answer).into_response()),
        Err(full) => Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            Json(serde_json::json!({ "error": full.to_string() })),
        )
            .into_response()),
    }
}

fn body_format(headers: &HeaderMap) -> Result<Format, ApiError> {
    let Some(content_type) = headers.get(header::CONTENT_TYPE) else {
        return Ok(Format::Detect);
    };
    let essence = content_type
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(Format::JsonBody),
        "application/x-ndjson" | "application/ndjson" => Ok(Format::Ndjson),
        "text/plain" => Ok(Format::Spool),
        "" => Ok(Format::Detect),
        other => Err(ApiError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "content type {other:?}: send application/json, application/x-ndjson or text/plain"
            ),
        )),
    }
}
