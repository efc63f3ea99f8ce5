//! `GET /api/v1/eval?expr=…`: an expression (see `expr`) over the last-values cache.
//!
//! The values of a host live on its owner node, so a request is answered by the owner of the
//! hosts it names: asked of another node it is passed on. An expression naming hosts of
//! different owners is refused (400), as one node holds only its own hosts' values.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use perfpipe_backend::SeriesKey;
use serde_json::Value;

use super::{blocking, owner_answer, ApiError, Node};
use crate::cluster::path_segment;
use crate::expr::{self, Sample, SeriesName};
use crate::lastvalues::LastValues;

/// The last-values cache as the expressions' data source.
pub struct CachedSeries<'a>(pub &'a LastValues);

impl CachedSeries<'_> {
    fn with<T>(
        &self,
        series: &SeriesName,
        read: impl FnOnce(&VecDeque<(i64, f64)>) -> T,
    ) -> Option<T> {
        let key = SeriesKey::new(&*series.host, &*series.service, &*series.item);
        self.0.with_values(&key, read)
    }
}

impl expr::Series for CachedSeries<'_> {
    fn value_count(&self, series: &SeriesName) -> Option<usize> {
        self.with(series, VecDeque::len)
    }

    fn latest(&self, series: &SeriesName, index: usize) -> Option<Sample> {
        self.with(series, |values| {
            values.len().checked_sub(index + 1).map(|at| values[at])
        })
        .flatten()
    }

    fn latest_range(&self, series: &SeriesName, newest: usize, oldest: usize) -> Vec<Sample> {
        self.with(series, |values| {
            values
                .iter()
                .rev()
                .skip(newest)
                .take(oldest.saturating_sub(newest) + 1)
                .copied()
                .collect()
        })
        .unwrap_or_default()
    }

    fn nearest(&self, series: &SeriesName, at: i64, tolerance: i64) -> Option<Sample> {
        self.with(series, |values| {
            let after = values.partition_point(|&(t, _)| t < at);
            // The candidates are the values on either side of `at`; the newer wins a tie.
            [after.checked_sub(1), Some(after)]
                .into_iter()
                .flatten()
                .filter_map(|index| values.get(index).copied())
                .filter(|&(t, _)| (t - at).abs() <= tolerance)
                .min_by_key(|&(t, _)| ((t - at).abs(), -t))
        })
        .flatten()
    }

    fn between(&self, series: &SeriesName, from: i64, to: i64) -> Vec<Sample> {
        let (from, to) = (from.min(to), from.max(to));
        self.with(series, |values| {
            let start = values.partition_point(|&(t, _)| t < from);
            let end = values.partition_point(|&(t, _)| t <= to);
            values.range(start..end).rev().copied().collect()
        })
        .unwrap_or_default()
    }
}

pub async fn eval(
    State(node): State<Arc<Node>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let _slot = super::query_slot(&node)?;
    let raw = raw.unwrap_or_default();
    let text = form_urlencoded::parse(raw.as_bytes())
        .find(|(name, _)| name == "expr")
        .map(|(_, value)| value.into_owned())
        .ok_or_else(|| ApiError(StatusCode::BAD_REQUEST, "expr is missing".into()))?;
    let parsed = expr::parse(&text)
        .map_err(|error| ApiError(StatusCode::BAD_REQUEST, format!("expr: {error}")))?;
    let mut owners: Vec<Option<usize>> = parsed
        .series()
        .iter()
        .map(|series| node.cluster.owner(&series.host))
        .collect();
    owners.dedup();
    if owners.len() > 1 {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "expr names hosts kept on different nodes; each node evaluates its own hosts".into(),
        ));
    }
    if let Some(&Some(owner)) = owners.first() {
        let path = format!("/api/v1/eval?expr={}", path_segment(&text));
        let asked = node.clone();
        let answer = blocking(move || Ok(asked.cluster.get(owner, &path)?)).await?;
        return owner_answer(answer);
    }
    let now = perfpipe_backend::unix_now();
    let outcome = expr::evaluate(&parsed, &CachedSeries(&node.last_values), now);
    Ok(Json(
        serde_json::to_value(outcome).map_err(anyhow::Error::from)?,
    ))
}
