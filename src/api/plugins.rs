//! The plugins' cache manager and state manager API (Opsview's wire protocol, which `plugnpy`
//! speaks): `POST /get_data`, `/set_data`, `/store_data`, `/fetch_data`; their part of
//! `GET /status` is in `status`.
//!
//! Bodies are read here rather than by axum's `Json` so that every refusal is a 400 whose
//! body names the field at fault (the client shows the body to the user). Waiting `get_data`
//! calls hold no thread: they await the cache's notification.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use crate::cachemanager::cache::ItemData;
use axum::body::Bytes;
use axum::extract::FromRequestParts;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{blocking, ApiError, Endpoint, Node};
use crate::cachemanager::peers::{Route, PEER_HEADER, REPLICA_HEADER};
use crate::cachemanager::state::StateError;
use crate::cachemanager::{check_name, now_seconds};

// The names and data of `get_data` and `set_data` borrow from the body when they hold no
// escape (the common case), so a request allocates none of them.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GetData<'a> {
    #[serde(borrow)]
    namespace: Cow<'a, str>,
    #[serde(borrow)]
    key: Cow<'a, str>,
    #[serde(default)]
    max_wait_time: f64,
}

/// `get_data`'s answer.
#[derive(Serialize)]
struct GetAnswer<'a> {
    data: Option<&'a str>,
    lock: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetData<'a> {
    #[serde(borrow)]
    namespace: Cow<'a, str>,
    #[serde(borrow)]
    key: Cow<'a, str>,
    #[serde(borrow)]
    data: Cow<'a, str>,
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
fn body<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    // The common case reads once; only a refused body is read again to name the field.
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
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

/// Who sent a request: a plugin (whose request may be forwarded to the item's owner) or a
/// peer (answered from this node's own stores, never forwarded again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// `encrypted`: its namespace is a token.
    Client {
        encrypted: bool,
    },
    Peer {
        replica: bool,
    },
}

/// The two headers that tell a peer's call from a plugin's, taken from the request without
/// copying its whole header map (as axum's `HeaderMap` extractor does).
pub struct PeerHeaders {
    secret: Option<HeaderValue>,
    replica: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for PeerHeaders {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerHeaders {
            secret: parts.headers.get(PEER_HEADER).cloned(),
            replica: parts.headers.contains_key(REPLICA_HEADER),
        })
    }
}

impl PeerHeaders {
    fn as_call(&self) -> PeerCall<'_> {
        PeerCall {
            secret: self.secret.as_ref().map(HeaderValue::as_bytes),
            replica: self.replica,
        }
    }
}

/// The peer headers of a request as the plugins' calls read them, whichever HTTP path the
/// request came by (axum's, or the direct one of `fastpath`).
#[derive(Debug, Clone, Copy, Default)]
pub struct PeerCall<'a> {
    /// `X-Perfpipe-Peer`'s value.
    pub secret: Option<&'a [u8]>,
    /// `X-Perfpipe-Replica` was sent.
    pub replica: bool,
}

fn caller(node: &Node, peer: PeerCall<'_>, endpoint: Endpoint) -> Result<Caller, ApiError> {
    match node.plugins.peers.authenticates(peer.secret) {
        None => Ok(Caller::Client {
            encrypted: endpoint.encrypted_namespaces,
        }),
        Some(true) => Ok(Caller::Peer {
            replica: peer.replica,
        }),
        Some(false) => Err(ApiError(
            StatusCode::FORBIDDEN,
            "peer call with a wrong cache.peer_secret".into(),
        )),
    }
}

/// The item's namespace after the protocol's checks of both names: for a plugin, opened from
/// its token when namespaces are encrypted (the only case that makes a new string); a peer
/// sends the namespace its entry node opened.
fn item_names<'a>(
    node: &Node,
    caller: Caller,
    namespace: &'a str,
    key: &str,
) -> Result<Cow<'a, str>, ApiError> {
    check_name("namespace", namespace).map_err(bad_request)?;
    check_name("key", key).map_err(bad_request)?;
    match caller {
        Caller::Client { encrypted: true } => node
            .plugins
            .namespace(namespace, true)
            .map(Cow::Owned)
            .map_err(|refused| ApiError(StatusCode::FORBIDDEN, refused.to_string())),
        Caller::Client { encrypted: false } | Caller::Peer { .. } => Ok(Cow::Borrowed(namespace)),
    }
}

/// The answer of `get_data` or `set_data`: a status and a JSON body, which either HTTP path
/// writes out as it is.
pub struct PluginAnswer {
    pub status: StatusCode,
    pub body: Bytes,
}

impl IntoResponse for PluginAnswer {
    fn into_response(self) -> Response {
        (
            self.status,
            [(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.body,
        )
            .into_response()
    }
}

/// `{"success": true}`, as `set_data` answers it.
fn success() -> PluginAnswer {
    PluginAnswer {
        status: StatusCode::OK,
        body: Bytes::from_static(br#"{"success":true}"#),
    }
}

/// A 200 with `answer` as its JSON body, serialized once into a buffer of `capacity` bytes
/// (axum's `Json` starts at 128 bytes and grows, copying, for a 1 KB item).
fn json_answer(answer: &impl Serialize, capacity: usize) -> Result<PluginAnswer, ApiError> {
    let mut body = Vec::with_capacity(capacity);
    serde_json::to_writer(&mut body, answer)
        .map_err(|error| anyhow::Error::new(error).context("serializing an answer"))?;
    Ok(PluginAnswer {
        status: StatusCode::OK,
        body: body.into(),
    })
}

/// An answer passed on from a peer as it came.
fn relayed(status: u16, answer: Value) -> Result<PluginAnswer, ApiError> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let body = serde_json::to_vec(&answer)
        .map_err(|error| anyhow::Error::new(error).context("serializing an answer"))?;
    Ok(PluginAnswer {
        status,
        body: body.into(),
    })
}

/// Sends a plugin's request to the node that answers for its item, when that is not this
/// node: the owner, or the next node up while the owner is down. `None` = answer here.
async fn forward(
    node: &Node,
    namespace: &str,
    key: &str,
    path: &str,
    body: &Value,
    wait: Duration,
) -> Option<(u16, Value)> {
    let peers = &node.plugins.peers;
    // Each failed call marks its peer down, so the next route differs; a bounded loop all
    // the same.
    for _ in 0..peers.count() {
        let Route::Peer(index) = peers.route(namespace, key) else {
            return None;
        };
        match peers.call(index, path, body, wait, false).await {
            Ok(answer) => return Some(answer),
            Err(down) => tracing::debug!(%down, "rerouting"),
        }
    }
    None
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
    Extension(endpoint): Extension<Endpoint>,
    headers: PeerHeaders,
    bytes: Bytes,
) -> Result<PluginAnswer, ApiError> {
    answer_get_data(&node, endpoint, headers.as_call(), &bytes).await
}

/// `get_data` of the JSON body `bytes`, for either HTTP path.
pub async fn answer_get_data(
    node: &Node,
    endpoint: Endpoint,
    peer: PeerCall<'_>,
    bytes: &[u8],
) -> Result<PluginAnswer, ApiError> {
    let caller = caller(node, peer, endpoint)?;
    let request: GetData = body(bytes)?;
    let namespace = item_names(node, caller, &request.namespace, &request.key)?;
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
    let cache = &node.plugins.cache;
    if matches!(caller, Caller::Client { .. }) && node.plugins.peers.count() > 1 {
        // A copy kept from an earlier read answers without a hop (and still does when the
        // owner is gone: the product's documented behaviour).
        let kept = cache.get(&namespace, &request.key, Duration::ZERO).await;
        if let Some(data) = &kept.data {
            return get_answer(Some(data), false, None);
        }
        let forwarded = json!({
            "namespace": namespace,
            "key": request.key,
            "max_wait_time": max_wait.as_secs_f64(),
        });
        if let Some((status, mut answer)) = forward(
            node,
            &namespace,
            &request.key,
            "get_data",
            &forwarded,
            max_wait,
        )
        .await
        {
            // The owner's "ttl" is for this node's copy, not for the plugin.
            let ttl = answer
                .as_object_mut()
                .and_then(|fields| fields.remove("ttl"))
                .and_then(|ttl| ttl.as_f64());
            if let (200, Some(data), Some(ttl)) = (status, answer["data"].as_str(), ttl) {
                cache.keep_copy(
                    &namespace,
                    &request.key,
                    ItemData::new(data),
                    Duration::from_secs_f64(ttl.max(0.0)),
                );
            }
            return relayed(status, answer);
        }
    }
    let outcome = cache.get(&namespace, &request.key, max_wait).await;
    // Serialized straight from the cached data (a `json!` value would copy it first).
    // What an asking peer keeps its copy for.
    let ttl = match caller {
        Caller::Peer { .. } => outcome.remaining_ttl.map(|ttl| ttl.as_secs_f64()),
        Caller::Client { .. } => None,
    };
    get_answer(outcome.data.as_ref(), outcome.lock, ttl)
}

/// `get_data`'s answer, serialized straight from the cached data (a `json!` value would copy
/// it first); data that needs no JSON escape is copied in whole, as serde_json would write it.
fn get_answer(
    data: Option<&ItemData>,
    lock: bool,
    ttl: Option<f64>,
) -> Result<PluginAnswer, ApiError> {
    match data {
        Some(data) if data.is_json_plain() && ttl.is_none() => {
            let tail: &[u8] = if lock {
                br#"","lock":true}"#
            } else {
                br#"","lock":false}"#
            };
            let mut body = Vec::with_capacity(data.len() + 32);
            body.extend_from_slice(br#"{"data":""#);
            body.extend_from_slice(data.as_bytes());
            body.extend_from_slice(tail);
            Ok(PluginAnswer {
                status: StatusCode::OK,
                body: body.into(),
            })
        }
        _ => {
            let capacity = data.map_or(0, |data| data.len()) + 48;
            let answer = GetAnswer {
                data: data.map(|data| &**data),
                lock,
                ttl,
            };
            json_answer(&answer, capacity)
        }
    }
}

pub async fn set_data(
    State(node): State<Arc<Node>>,
    Extension(endpoint): Extension<Endpoint>,
    headers: PeerHeaders,
    bytes: Bytes,
) -> Result<PluginAnswer, ApiError> {
    answer_set_data(&node, endpoint, headers.as_call(), &bytes).await
}

/// `set_data` of the JSON body `bytes`, for either HTTP path.
pub async fn answer_set_data(
    node: &Node,
    endpoint: Endpoint,
    peer: PeerCall<'_>,
    bytes: &[u8],
) -> Result<PluginAnswer, ApiError> {
    let caller = caller(node, peer, endpoint)?;
    let request: SetData = body(bytes)?;
    let namespace = item_names(node, caller, &request.namespace, &request.key)?;
    let ttl = positive_seconds("ttl", request.ttl)?;
    let cache = &node.plugins.cache;
    if matches!(caller, Caller::Client { .. }) && node.plugins.peers.count() > 1 {
        let forwarded = json!({
            "namespace": namespace,
            "key": request.key,
            "data": request.data,
            "ttl": request.ttl,
        });
        if let Some((status, answer)) = forward(
            node,
            &namespace,
            &request.key,
            "set_data",
            &forwarded,
            Duration::ZERO,
        )
        .await
        {
            if status == 200 {
                cache.keep_copy(&namespace, &request.key, ItemData::new(&request.data), ttl);
            }
            return relayed(status, answer);
        }
    }
    cache
        .set(&namespace, &request.key, &request.data, ttl)
        .map_err(|refused| ApiError(StatusCode::PAYLOAD_TOO_LARGE, refused.to_string()))?;
    Ok(success())
}

pub async fn store_data(
    State(node): State<Arc<Node>>,
    Extension(endpoint): Extension<Endpoint>,
    headers: PeerHeaders,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let caller = caller(&node, headers.as_call(), endpoint)?;
    let request: StoreData = body(&bytes)?;
    let namespace = item_names(&node, caller, &request.namespace, &request.key)?.into_owned();
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
    let forwarded = json!({
        "namespace": namespace,
        "key": request.key,
        "data": request.data,
        "ttl": request.ttl,
        "timestamp": request.timestamp,
    });
    if matches!(caller, Caller::Client { .. }) && node.plugins.peers.count() > 1 {
        if let Some((status, answer)) = forward(
            &node,
            &namespace,
            &request.key,
            "store_data",
            &forwarded,
            Duration::ZERO,
        )
        .await
        {
            return Ok(relayed(status, answer)?.into_response());
        }
    }
    let state = node.plugins.state.clone();
    let key = request.key.clone();
    let local_namespace = namespace.clone();
    blocking(move || {
        state
            .store(
                &local_namespace,
                &key,
                &request.data,
                request.ttl as i64,
                request.timestamp,
                now_seconds(),
            )
            .map_err(state_error)
    })
    .await?;
    if caller != (Caller::Peer { replica: true }) {
        // The copy on the next node, before the answer: one node's loss loses no item.
        copy_to_next(&node, &forwarded).await;
    }
    Ok(Json(json!({ "success": true })).into_response())
}

/// Stores the state item `body` on the next node up after this one, trying further nodes
/// while those are down. A conflict there means the copy is already newer.
async fn copy_to_next(node: &Node, body: &Value) {
    let peers = &node.plugins.peers;
    for _ in 0..peers.count() {
        let Some(Route::Peer(index)) = peers.next_up_after(Route::Local) else {
            return;
        };
        match peers
            .call(index, "store_data", body, Duration::ZERO, true)
            .await
        {
            Ok((200 | 409, _)) => return,
            Ok((status, answer)) => {
                tracing::warn!(status, %answer, "the copy of a state item was refused");
                return;
            }
            Err(down) => tracing::debug!(%down, "copying to the next node instead"),
        }
    }
}

pub async fn fetch_data(
    State(node): State<Arc<Node>>,
    Extension(endpoint): Extension<Endpoint>,
    headers: PeerHeaders,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let caller = caller(&node, headers.as_call(), endpoint)?;
    let request: FetchData = body(&bytes)?;
    let namespace = item_names(&node, caller, &request.namespace, &request.key)?.into_owned();
    let forwarded = json!({ "namespace": namespace, "key": request.key });
    if matches!(caller, Caller::Client { .. }) && node.plugins.peers.count() > 1 {
        if let Some((status, answer)) = forward(
            &node,
            &namespace,
            &request.key,
            "fetch_data",
            &forwarded,
            Duration::ZERO,
        )
        .await
        {
            return Ok(relayed(status, answer)?.into_response());
        }
    }
    let state = node.plugins.state.clone();
    let key = request.key.clone();
    let local_namespace = namespace.clone();
    let mut found = blocking(move || {
        state
            .fetch(&local_namespace, &key, now_seconds())
            .map_err(state_error)
    })
    .await?
    .map(|item| (item.data, item.timestamp));
    if caller != (Caller::Peer { replica: true }) {
        // The copy may be newer: stores made while this node was down went to the next node.
        if let Some((copy, timestamp)) = fetch_copy(&node, &forwarded).await {
            if found.as_ref().is_none_or(|(_, ours)| timestamp > *ours) {
                found = Some((copy, timestamp));
            }
        }
    }
    match found {
        Some((data, timestamp)) => {
            Ok(Json(json!({ "data": data, "timestamp": timestamp })).into_response())
        }
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "no item {:?} in namespace {:?}",
                request.key, request.namespace
            ),
        )),
    }
}

/// The copy of a state item that the next node up keeps, with its timestamp.
async fn fetch_copy(node: &Node, body: &Value) -> Option<(String, f64)> {
    let peers = &node.plugins.peers;
    let Some(Route::Peer(index)) = peers.next_up_after(Route::Local) else {
        return None;
    };
    match peers
        .call(index, "fetch_data", body, Duration::ZERO, true)
        .await
    {
        Ok((200, answer)) => Some((
            answer["data"].as_str()?.to_owned(),
            answer["timestamp"].as_f64()?,
        )),
        _ => None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_written_get_answers_equal_what_serde_json_writes() {
        for text in ["", "plain 1 KB é ☃ {'a': 1}", "needs \"escape\"\n", "\u{1}"] {
            let data = ItemData::new(text);
            for lock in [false, true] {
                for ttl in [None, Some(12.5)] {
                    let written = get_answer(Some(&data), lock, ttl).unwrap();
                    let expected = serde_json::to_vec(&GetAnswer {
                        data: Some(text),
                        lock,
                        ttl,
                    })
                    .unwrap();
                    assert_eq!(written.status, StatusCode::OK);
                    assert_eq!(
                        &written.body[..],
                        &expected[..],
                        "{text:?} lock {lock} ttl {ttl:?}"
                    );
                }
            }
        }
        let missing = get_answer(None, true, None).unwrap();
        assert_eq!(&missing.body[..], br#"{"data":null,"lock":true}"#);
    }
}
