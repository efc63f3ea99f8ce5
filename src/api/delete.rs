//! `DELETE /api/v1/hosts/{host}` and `DELETE /api/v1/series?hsm=host::service::metric`:
//! the owner node has its shards drop the queued points and forget open files, moves the files
//! to the trash (see `trash`), and marks the catalogue rows deleted; the deletion is first
//! logged in the write-ahead log, so that replay after a crash does not bring the points back.
//! Asked of another node, the request is passed to the owner. The answer counts, never names
//! files.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::query::parse_hsm;
use super::{blocking, ApiError, Node};
use crate::cluster::path_segment;

/// Logs in the write-ahead log (if any) that the points logged so far of `host`, or of its one
/// series, are not to be replayed (`crate::wal::encode_forget`): done before a deletion or a
/// rename touches any file. 503 naming `what` when it cannot be logged (then nothing is
/// `done`).
pub(super) async fn log_forget(
    node: &Node,
    host: &str,
    series: Option<(&str, &str)>,
    what: &str,
    done: &str,
) -> Result<(), ApiError> {
    let Some(wal) = &node.wal else {
        return Ok(());
    };
    wal.append(crate::wal::encode_forget(host, series))
        .await
        .map_err(|failure| {
            tracing::error!(%failure, host, "{what} not logged");
            ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the {what} could not be logged; nothing was {done}"),
            )
        })
}

pub async fn delete_host(
    State(node): State<Arc<Node>>,
    Path(host): Path<String>,
) -> Result<Json<Value>, ApiError> {
    remove(node, host, None).await
}

pub async fn delete_series(
    State(node): State<Arc<Node>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let raw = raw.unwrap_or_default();
    let hsm = form_urlencoded::parse(raw.as_bytes())
        .find(|(name, _)| name == "hsm")
        .map(|(_, value)| value.into_owned())
        .ok_or_else(|| {
            ApiError(
                StatusCode::BAD_REQUEST,
                "name the series: hsm=host::service::metric".into(),
            )
        })?;
    let key = parse_hsm(&hsm).map_err(|message| ApiError(StatusCode::BAD_REQUEST, message))?;
    remove(
        node,
        key.host.into(),
        Some((key.service.into(), key.metric.into())),
    )
    .await
}

/// Forgets a host, or one series of it, stored on this node: the shards drop its queued points
/// and open files, its files move to the trash, the catalogue marks it deleted. Returns the
/// catalogue rows and the paths moved.
pub fn forget_here(
    node: &Node,
    host: &str,
    series: Option<(&str, &str)>,
) -> anyhow::Result<(u64, usize)> {
    let paths = node.enqueuer.forget(host, series);
    node.last_values.forget(host, series);
    let moved = crate::trash::move_to_trash(&node.config.data_dir, &paths)?;
    let mut catalogue = crate::storage::open_catalogue(&node.config)?;
    let now = perfpipe_backend::unix_now();
    let forgotten = match series {
        None => catalogue.delete_host(host, now)?,
        Some((service, metric)) => u64::from(catalogue.delete_series(
            &perfpipe_backend::SeriesKey::new(host, service, metric),
            now,
        )?),
    };
    Ok((forgotten, moved))
}

async fn remove(
    node: Arc<Node>,
    host: String,
    series: Option<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    if let Some(owner) = node.cluster.owner(&host) {
        let path = match &series {
            None => format!("/api/v1/hosts/{}", path_segment(&host)),
            Some((service, metric)) => format!(
                "/api/v1/series?{}",
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("hsm", &format!("{host}::{service}::{metric}"))
                    .finish()
            ),
        };
        let answer = blocking(move || Ok(node.cluster.delete(owner, &path)?)).await?;
        return Ok(Json(answer));
    }
    // Logged first, so that a crash before the deleted points' log segments are gone does not
    // replay them back.
    let series_ref = series.as_ref().map(|(s, m)| (s.as_str(), m.as_str()));
    log_forget(&node, &host, series_ref, "deletion", "deleted").await?;
    blocking(move || {
        let series_ref = series.as_ref().map(|(s, m)| (s.as_str(), m.as_str()));
        let (forgotten, moved) = forget_here(&node, &host, series_ref)?;
        if forgotten == 0 && moved == 0 {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                "nothing stored under that name".into(),
            ));
        }
        Ok(Json(
            json!({ "deleted": { "series": forgotten, "moved_to_trash": moved } }),
        ))
    })
    .await
}
