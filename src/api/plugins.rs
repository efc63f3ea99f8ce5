//! The plugins' cache manager and state manager API (Opsview's wire protocol, which `plugnpy`
//! speaks): `POST /get_data`, `/set_data`, `/store_data`, `/fetch_data`; their part of
//! `GET /status` is in `status`.
//!
//! Bodies are read here rather than by axum's `Json` so that every refusal is a 400 whose
//! body names the field at fault (the client shows the body to the user). Waiting `get_data`
//! calls hold no thread: they await the cache's notification.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{blocking, ApiError, Node};
use crate::cachemanager::state::StateError;
use crate::cachemanager::{check_name, now_seconds};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GetData {
    namespace: String,
    key: String,
    #[serde(default)]
    max_wait_time: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetData {
    namespace: String,
    key: String,
    data: String,
    ttl: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreData {
    namespace: String,
    key: String,
    data: String,
    ttl: f64,
    timestamp: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FetchData {
    namespace: String,
    key: String,
}

fn bad_request(message: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message)
}

/// The JSON body as `T`, or a 400 naming what was wrong and where.
fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let reader = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(reader).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if path == "." {
            bad_request(format!("request body: {inner}"))
        } else {
            bad_request(format!("request body, field {path}: {inner}"))
        }
    })
}

/// The item's namespace (opened from its token when namespaces are encrypted) after the
/// protocol's checks of both names.
fn item_names(node: &Node, namespace: &str, key: &str) -> Result<String, ApiError> {
    check_name("namespace", namespace).map_err(bad_request)?;
    check_name("key", key).map_err(bad_request)?;
    node.plugins
        .namespace(namespace)
        .map_err(|refused| ApiError(StatusCode::FORBIDDEN, refused.to_string()))
}

/// A whole number of seconds, positive (`what` names the field in the refusal).
fn positive_seconds(what: &str, seconds: f64) -> Result<Duration, ApiError> {
    if seconds <= 0.0 || !seconds.is_finite() {
        return Err(bad_request(format!(
            "{what} must be a positive number of seconds, not {seconds}"
        )));
    }
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| bad_request(format!("{what} {seconds} is too large")))
}

pub async fn get_data(
    State(node): State<Arc<Node>>,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: GetData = body(&bytes)?;
    let namespace = item_names(&node, &request.namespace, &request.key)?;
    if request.max_wait_time < 0.0 || !request.max_wait_time.is_finite() {
        return Err(bad_request(format!(
            "max_wait_time must be 0 or a positive number of seconds, not {}",
            request.max_wait_time
        )));
    }
    // A lock or a wait never outlasts worker_timeout, so a client asking for hours cannot
    // keep a missing item locked for everyone else.
    let max_wait =
        Duration::from_secs_f64(request.max_wait_time.min(1e9)).min(node.plugins.worker_timeout);
    let outcome = node
        .plugins
        .cache
        .get(&namespace, &request.key, max_wait)
        .await;
    Ok(Json(
        json!({ "data": outcome.data.as_deref(), "lock": outcome.lock }),
    ))
}

pub async fn set_data(
    State(node): State<Arc<Node>>,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: SetData = body(&bytes)?;
    let namespace = item_names(&node, &request.namespace, &request.key)?;
    let ttl = positive_seconds("ttl", request.ttl)?;
    node.plugins
        .cache
        .set(&namespace, &request.key, request.data, ttl)
        .map_err(|refused| ApiError(StatusCode::PAYLOAD_TOO_LARGE, refused.to_string()))?;
    Ok(Json(json!({ "success": true })))
}

pub async fn store_data(
    State(node): State<Arc<Node>>,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: StoreData = body(&bytes)?;
    let namespace = item_names(&node, &request.namespace, &request.key)?;
    if !request.timestamp.is_finite() || request.timestamp < 0.0 {
        return Err(bad_request(format!(
            "timestamp must be seconds since the epoch, not {}",
            request.timestamp
        )));
    }
    if !request.ttl.is_finite() {
        return Err(bad_request(format!(
            "ttl {} is not a number of seconds",
            request.ttl
        )));
    }
    let state = node.plugins.state.clone();
    blocking(move || {
        state
            .store(
                &namespace,
                &request.key,
                &request.data,
                request.ttl as i64,
                request.timestamp,
                now_seconds(),
            )
            .map_err(state_error)
    })
    .await?;
    Ok(Json(json!({ "success": true })))
}

pub async fn fetch_data(
    State(node): State<Arc<Node>>,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: FetchData = body(&bytes)?;
    let namespace = item_names(&node, &request.namespace, &request.key)?;
    let state = node.plugins.state.clone();
    let key = request.key.clone();
    let item = blocking(move || {
        state
            .fetch(&namespace, &key, now_seconds())
            .map_err(state_error)
    })
    .await?;
    match item {
        Some(item) => Ok(Json(json!({ "data": item.data }))),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "no item {:?} in namespace {:?}",
                request.key, request.namespace
            ),
        )),
    }
}

/// The protocol's status for each refusal of the state store; a database failure is logged and
/// answered as an internal error.
fn state_error(error: StateError) -> ApiError {
    let status = match &error {
        StateError::Conflict { .. } => StatusCode::CONFLICT,
        StateError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        StateError::Full { .. } => StatusCode::INSUFFICIENT_STORAGE,
        StateError::NewerSchema { .. } | StateError::Database(_) => {
            return anyhow::Error::new(error).context("state store").into()
        }
    };
    ApiError(status, error.to_string())
}
