//! The node's HTTP API: the router and the state every handler shares.
//!
//! The front end holds no state of its own: any node accepts any write, parses it, and hands
//! the points to the enqueuer. Handlers do their CPU work (parsing, file reads, SQLite) on
//! tokio's blocking pool, never on the async workers.

mod auth;
pub(crate) mod deadline;
pub(crate) mod delete;
mod eval;
mod graphite;
mod influx;
mod opsview;
mod page;
pub mod plugins;
pub(crate) mod query;
mod rename;
mod status;
pub(crate) mod write;

pub(crate) use opsview::wildcard_match;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::Value;

use crate::cachemanager::CacheManager;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::enqueuer::Enqueuer;

/// What every handler can reach.
pub struct Node {
    pub config: Config,
    pub enqueuer: Enqueuer,
    pub cluster: Cluster,
    pub plugins: CacheManager,
    pub last_values: Arc<crate::lastvalues::LastValues>,
    /// The write-ahead log, unless `wal.enabled = false`.
    pub wal: Option<crate::wal::Wal>,
    /// Hint logs of the peers, unless the write-ahead log is off.
    pub handoff: Option<crate::handoff::Handoff>,
    /// One permit per query being served (`limits.max_concurrent_queries`).
    pub query_slots: tokio::sync::Semaphore,
    /// Requests in progress on the listeners (`limits.max_requests_in_flight`).
    pub in_flight: std::sync::atomic::AtomicUsize,
    /// What the Graphite listeners and the InfluxDB write endpoints received.
    pub protocols: crate::protocols::Counters,
    pub started: Instant,
}

/// Which listener a request came in on, as the plugins' API needs to know.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    /// Namespaces must be tokens (`cache.*_server.encrypted_namespaces`).
    pub encrypted_namespaces: bool,
}

/// The router of a node's listener.
pub fn router(node: Arc<Node>, endpoint: Endpoint) -> Router {
    let body_limit = node.config.max_body_size.as_u64() as usize;
    // Forwarded points travel as JSON of parsed points, larger than the perfdata they came
    // from (about 60 bytes a point against a few): a peer takes what a client body can become.
    let internal = Router::new()
        .route("/internal/v1/points", post(write::internal_points))
        .layer(DefaultBodyLimit::max(body_limit.saturating_mul(32)));
    Router::new()
        .route("/", get(page::index))
        .route("/page/{file}", get(page::asset))
        .route("/health", get(status::health))
        .route("/status", get(status::status))
        .route("/metrics", get(status::metrics))
        .route("/api/v1/write", post(write::write))
        .route("/write", post(influx::write_v1))
        .route("/api/v2/write", post(influx::write_v2))
        .route("/ping", get(influx::ping).head(influx::ping))
        .route("/api/v1/query", get(query::query))
        .route("/api/v1/hosts", get(query::hosts))
        .route("/api/v1/hosts/{host}", delete(delete::delete_host))
        .route("/api/v1/hosts/{host}/metrics", get(query::host_metrics))
        .route(
            "/api/v1/series",
            delete(delete::delete_series).get(query::series),
        )
        .route("/api/v1/stale", get(query::stale))
        .route("/api/v1/eval", get(eval::eval))
        .route("/rest/graph", get(opsview::graph))
        .route(
            "/rest/runtime/performancemetric",
            get(opsview::performance_metric),
        )
        .route("/api/v1/rename", post(rename::rename))
        .route("/render", get(graphite::render).post(graphite::render))
        .route("/metrics/find", get(graphite::find).post(graphite::find))
        .route(
            "/metrics/expand",
            get(graphite::expand).post(graphite::expand),
        )
        .route("/functions", get(graphite::functions))
        .route("/version", get(graphite::version))
        .route("/get_data", post(plugins::get_data))
        .route("/set_data", post(plugins::set_data))
        .route("/store_data", post(plugins::store_data))
        .route("/fetch_data", post(plugins::fetch_data))
        .layer(DefaultBodyLimit::max(body_limit))
        .merge(internal)
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            auth::require_token,
        ))
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            limit_in_flight,
        ))
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            deadline::request_body_deadline,
        ))
        .layer(axum::Extension(endpoint))
        .with_state(node)
}

/// An error answer: `{"error": "..."}` with its status.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    /// 429 and 503 say when to come back (`Retry-After: 1`).
    fn into_response(self) -> Response {
        let retry_after = self.retry_after();
        let mut answer = (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response();
        if retry_after {
            answer.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        answer
    }
}

/// A request in progress, counted against `limits.max_requests_in_flight` until dropped.
pub struct InFlight<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Node {
    /// Counts one more request in progress, or refuses it with 429 once
    /// `limits.max_requests_in_flight` are.
    pub fn enter_request(&self) -> Result<InFlight<'_>, ApiError> {
        let limit = self.config.limits.max_requests_in_flight;
        let before = self
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let entered = InFlight(&self.in_flight);
        if before >= limit {
            return Err(ApiError(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "{limit} requests already in progress (limits.max_requests_in_flight); \
                     retry later"
                ),
            ));
        }
        Ok(entered)
    }
}

impl ApiError {
    /// The answer's JSON body, `{"error": "..."}`.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "error": self.1 }))
            .expect("a JSON object of one string serializes")
    }

    /// Whether the answer says when to come back (`Retry-After: 1`).
    pub fn retry_after(&self) -> bool {
        matches!(
            self.0,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        )
    }
}

/// Answers 429 once `limits.max_requests_in_flight` requests are in progress (`/health`, for
/// the load balancer, is always answered), so a flood queues in clients, not in the node.
async fn limit_in_flight(
    axum::extract::State(node): axum::extract::State<Arc<Node>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if request.uri().path() == "/health" {
        return next.run(request).await;
    }
    match node.enter_request() {
        Ok(_in_flight) => next.run(request).await,
        Err(refused) => refused.into_response(),
    }
}

/// Takes one of the node's query slots for as long as the permit lives, or answers 429.
fn query_slot(node: &Node) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
    node.query_slots.try_acquire().map_err(|_| {
        ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{} queries already running (limits.max_concurrent_queries); retry later",
                node.config.limits.max_concurrent_queries
            ),
        )
    })
}

impl From<anyhow::Error> for ApiError {
    /// Internal failures are logged in full; the answer says no more than that, since their
    /// text names files of the node.
    fn from(error: anyhow::Error) -> Self {
        tracing::error!(error = %format!("{error:#}"), "request failed");
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; the node's log has the details".into(),
        )
    }
}

/// The answer of the owner node a request was passed to, as this node's answer: its JSON on
/// 200, otherwise its status with its error message.
/// How long a listing waits for the shards to say which new series they have queued (see
/// [`crate::enqueuer::Enqueuer::queued_new_series`]); a shard busier than that is left out.
pub(crate) const QUEUED_SERIES_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

fn owner_answer((status, answer): (u16, Value)) -> Result<Json<Value>, ApiError> {
    match status {
        200 => Ok(Json(answer)),
        _ => Err(ApiError(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            answer["error"]
                .as_str()
                .unwrap_or("the owner refused")
                .to_owned(),
        )),
    }
}

/// Runs blocking work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| ApiError(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))?
}
