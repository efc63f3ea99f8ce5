//! `POST /api/v1/write`: check results in, points to the enqueuer.
//!
//! The body format follows `Content-Type`: `application/json` (`{"results":[…]}`),
//! `application/x-ndjson` (one result a line), `text/plain` (Opsview or Nagios spool lines);
//! without one, it is detected. The answer is `{"results":N,"points":M,"errors":[{"result":i,
//! "offset":o,"message":"…"}]}`: every bad result or metric is listed and the good ones are
//! taken. 503 with `Retry-After` when the queues are full (nothing of the request was taken),
//! 413 when the body is over `max_body_size`, 415 for another content type, 400 when nothing
//! could be taken at all.
//!
//! A write is acknowledged once its points are in the write-ahead log (`crate::wal`) of their
//! owner. In a cluster, points of hosts owned by other nodes are forwarded, one request per
//! peer and all peers at once, and acknowledged once each owner has logged them; an owner that
//! is down or answers 5xx has its points logged here instead, to be delivered when it is back
//! (`crate::handoff`). A peer that refuses points (4xx), or a log that cannot take them, makes
//! the answer 503 naming the reason (what others took stays taken; a retry's duplicates are
//! dropped or overwritten downstream). `POST /internal/v1/points` takes forwarded points and
//! never forwards them again.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use tracing::warn;

use super::{blocking, ApiError, Node};
use crate::cluster::{ForwardError, WireBatch};
use crate::enqueuer::{EnqueueError, SeriesPoints};
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
    let limits = node.config.limits.intake();
    let intake = blocking(move || Ok(intake::read_within(&body, format, &limits))).await?;
    if intake.too_many_results {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "more than {} check results in one request (limits.max_results_per_request): \
                 send smaller requests",
                limits.max_results
            ),
        ));
    }
    let answer = WriteAnswer {
        results: intake.results,
        points: intake.points,
        errors: intake.errors,
    };
    if answer.results == 0 && !answer.errors.is_empty() {
        return Ok((StatusCode::BAD_REQUEST, Json(answer)).into_response());
    }
    match submit(&node, intake.series).await {
        Ok(()) => Ok(Json(answer).into_response()),
        Err(SubmitError::Refused(refusal)) => Ok(refused(refusal)),
        Err(SubmitError::Unavailable(why)) => Ok(unavailable(why)),
    }
}

/// Why points handed to [`submit`] were not acknowledged.
#[derive(Debug)]
pub enum SubmitError {
    /// None of them was taken: the queues are full (retry later), or the points are more than
    /// the queues ever hold, or a writer thread is gone.
    Refused(EnqueueError),
    /// A log or an owner did not take some of them (the reason, naming no path); what others
    /// took stays taken, so a retry's duplicates are dropped or overwritten downstream.
    Unavailable(String),
}

/// Hands points to their owners: this node's queues and write-ahead log for its own hosts,
/// each peer (one request each, all at once) for theirs, the hint log for an owner that is
/// down. Resolves once every point is logged by its owner or hinted here: the point at which
/// any front end (`POST /api/v1/write`, the Graphite listeners, the InfluxDB write endpoints)
/// may acknowledge them.
pub async fn submit(node: &Arc<Node>, series: Vec<SeriesPoints>) -> Result<(), SubmitError> {
    let mut remote: HashMap<usize, Vec<SeriesPoints>> = HashMap::new();
    // A body's series are this node's own when it is alone (or when every host is its own):
    // they go on in the vector they came in. Pushed one by one into a new one, a body of 3,000
    // series grew it a dozen times, the last copies half a megabyte each into memory the
    // kernel had to zero first: the node's CPU a point is 0.95 of what it was at 1,000,000
    // points/s (docs/performance.md, "The intake's own vector").
    // Each series' owner is asked once: those before the first remote one are this node's.
    let first_remote = series.iter().enumerate().find_map(|(at, series)| {
        node.cluster
            .owner(&series.key.host)
            .map(|owner| (at, owner))
    });
    let local = match first_remote {
        None => series,
        Some((first, first_owner)) => {
            let mut local = Vec::with_capacity(series.len());
            let mut series = series.into_iter();
            local.extend(series.by_ref().take(first));
            remote.entry(first_owner).or_default().extend(series.next());
            for series in series {
                match node.cluster.owner(&series.key.host) {
                    None => local.push(series),
                    Some(owner) => remote.entry(owner).or_default().push(series),
                }
            }
            local
        }
    };
    let logged = match take_and_log(node, local, false) {
        Ok(logged) => logged,
        Err(refusal) => return Err(SubmitError::Refused(refusal)),
    };
    let forwards: Vec<_> = remote
        .into_iter()
        .map(|(owner, series)| tokio::spawn(to_owner(node.clone(), owner, series)))
        .collect();
    let mut failures = Vec::new();
    if let Err(failure) = logged.await {
        failures.push(failure);
    }
    for forward in forwards {
        match forward.await {
            Ok(Ok(())) => {}
            Ok(Err(failure)) => failures.push(failure),
            Err(failure) => failures.push(failure.to_string()),
        }
    }
    if !failures.is_empty() {
        return Err(SubmitError::Unavailable(failures.join("; ")));
    }
    Ok(())
}

pub(crate) fn refused(refusal: EnqueueError) -> Response {
    match refusal {
        EnqueueError::Full { .. } => unavailable(refusal.to_string()),
        EnqueueError::TooLarge { .. } => {
            ApiError(StatusCode::PAYLOAD_TOO_LARGE, refusal.to_string()).into_response()
        }
        EnqueueError::ShardGone => {
            ApiError(StatusCode::INTERNAL_SERVER_ERROR, refusal.to_string()).into_response()
        }
    }
}

pub(crate) fn unavailable(message: String) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

/// Hands `series` to their owner `owner`: forwarded, answered once the owner has logged
/// them; or, when the owner cannot take them now or still has hinted points waiting here,
/// logged here for it (hinted handoff), answered once synced.
async fn to_owner(node: Arc<Node>, owner: usize, series: Vec<SeriesPoints>) -> Result<(), String> {
    let backlog = node
        .handoff
        .as_ref()
        .is_some_and(|handoff| handoff.has_backlog(owner));
    let series = if backlog {
        series
    } else {
        let forwarding = node.clone();
        let (sent, series) = tokio::task::spawn_blocking(move || {
            let sent = forwarding.cluster.forward(owner, &series, false);
            (sent, series)
        })
        .await
        .map_err(|failure| failure.to_string())?;
        match sent {
            Ok(()) => return Ok(()),
            Err(refused @ ForwardError::Refused { .. }) => return Err(refused.to_string()),
            Err(unreachable) if node.handoff.is_some() => {
                warn!(%unreachable, "points handed off to be delivered later");
                series
            }
            Err(unreachable) => return Err(unreachable.to_string()),
        }
    };
    let handoff = node.handoff.as_ref().expect("checked above");
    handoff
        .hint(owner, &series)
        .await
        .map_err(|failure| not_logged(&failure, "points for a down owner"))
}

/// The answer for points a log did not take. It names no path of the node: the node's log has
/// the whole error.
fn not_logged(failure: &crate::wal::WalError, what: &str) -> String {
    tracing::error!(%failure, what, "points not logged");
    if failure.is_disk_full() {
        format!("this node's disk is full: {what} not logged, retry later")
    } else {
        format!("{what} could not be logged on this node (see its log); retry later")
    }
}

/// Points forwarded by a peer: taken here, never forwarded again, and answered once logged.
/// `?hinted=1` marks points delivered from the peer's hint log, which the shards hold longer
/// (`enqueuer.handoff_hold`).
pub async fn internal_points(
    State(node): State<Arc<Node>>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let hinted = query.as_deref() == Some("hinted=1");
    let batch: WireBatch = serde_json::from_slice(&body)
        .map_err(|error| ApiError(StatusCode::BAD_REQUEST, format!("points body: {error}")))?;
    let series: Vec<SeriesPoints> = batch.series.into_iter().map(SeriesPoints::from).collect();
    let points: usize = series.iter().map(|series| series.points.len()).sum();
    let logged = match take_and_log(&node, series, hinted) {
        Ok(logged) => logged,
        Err(refusal) => return Ok(refused(refusal)),
    };
    match logged.await {
        Ok(()) => Ok(Json(serde_json::json!({ "points": points })).into_response()),
        Err(failure) => Ok(unavailable(failure)),
    }
}

/// Queues `series` on this node's shards, then logs them in the write-ahead log; the future
/// resolves once they are synced there (at once when there is no log or nothing to log).
///
/// Queued before logged: so every point in a log segment is queued before the segment is
/// sealed and its barrier sent (see `crate::wal`). A point queued whose logging then fails is
/// written all the same, only not acknowledged.
fn take_and_log(
    node: &Arc<Node>,
    series: Vec<SeriesPoints>,
    hinted: bool,
) -> Result<impl std::future::Future<Output = Result<(), String>>, EnqueueError> {
    let mut record = match &node.wal {
        Some(_) if !series.is_empty() => Some(crate::wal::encode_sequenced(&series)),
        _ => None,
    };
    let enqueued = node.enqueuer.enqueue_from(series, hinted)?;
    if let Some(record) = &mut record {
        crate::wal::set_sequence(record, enqueued.sequence);
    }
    let node = node.clone();
    Ok(async move {
        let (Some(wal), Some(record)) = (&node.wal, record) else {
            return Ok(());
        };
        wal.append(record)
            .await
            .map_err(|failure| not_logged(&failure, "points"))
    })
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
