//! `POST /api/v1/rename?host=OLD&to_host=NEW[&service=OLD&to_service=NEW]`: a host, or one
//! service of it, takes a new name on the node that owns both names (see `rename`); asked of
//! another node, the request is passed to that owner.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::Value;

use super::{blocking, owner_answer, ApiError, Node};

pub async fn rename(
    State(node): State<Arc<Node>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let raw = raw.unwrap_or_default();
    let field = |name: &str| {
        form_urlencoded::parse(raw.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    };
    let bad = |message: &str| ApiError(StatusCode::BAD_REQUEST, message.to_owned());
    let (Some(host), Some(to_host)) = (field("host"), field("to_host")) else {
        return Err(bad("host and to_host are needed"));
    };
    let services = match (field("service"), field("to_service")) {
        (None, None) => None,
        (Some(service), Some(to_service)) => Some((service, to_service)),
        _ => return Err(bad("service and to_service go together")),
    };
    if host.is_empty() || to_host.is_empty() {
        return Err(bad("host names cannot be empty"));
    }
    if host == to_host && services.as_ref().is_none_or(|(from, to)| from == to) {
        // Merged into itself, a series would be moved onto itself and its old copy removed.
        return Err(bad(&format!(
            "nothing to rename: the new name of {host:?} is the old one"
        )));
    }
    let owner = node.cluster.owner(&host);
    if owner != node.cluster.owner(&to_host) {
        return Err(bad(&format!(
            "{host:?} and {to_host:?} are kept by different nodes; \
             a rename moves files within one node"
        )));
    }
    if let Some(owner) = owner {
        let path = format!("/api/v1/rename?{raw}");
        let asked = node.clone();
        let answer = blocking(move || Ok(asked.cluster.post(owner, &path)?)).await?;
        return owner_answer(answer);
    }
    // Logged first, as deletions are: the points logged under the old names before the rename
    // are in the files the rename moves (the shards write what they hold before it), so a crash
    // before their log segments are gone must not replay them under the old names.
    if node.wal.is_some() {
        let old_names: Vec<Option<(String, String)>> = match &services {
            None => vec![None],
            Some((service, _)) => {
                let (asked, host, service) = (node.clone(), host.clone(), service.clone());
                blocking(move || {
                    let catalogue = crate::storage::open_catalogue(&asked.config)?;
                    Ok(catalogue
                        .metrics(&host)
                        .map_err(anyhow::Error::from)?
                        .into_iter()
                        .filter(|info| info.key.service == service)
                        .map(|info| Some((info.key.service.into(), info.key.metric.into())))
                        .collect())
                })
                .await?
            }
        };
        for series in &old_names {
            let series = series.as_ref().map(|(s, m)| (s.as_str(), m.as_str()));
            super::delete::log_forget(&node, &host, series, "rename", "renamed").await?;
        }
    }
    let renamed = blocking(move || {
        let from = (host.as_str(), services.as_ref().map(|(s, _)| s.as_str()));
        let to = (to_host.as_str(), services.as_ref().map(|(_, s)| s.as_str()));
        Ok(crate::rename::rename_here(&node, from, to)?)
    })
    .await?;
    if renamed.series == 0 && renamed.kept.is_empty() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "nothing stored under that name".into(),
        ));
    }
    Ok(Json(serde_json::json!({ "renamed": renamed })))
}
