//! `limits.request_timeout` for requests served by hyper and the router: a request's body must
//! arrive whole within that time of its head, however it trickles, or the answer is 408 and
//! the connection closes. (hyper's own `header_read_timeout`, set by the listener, bounds the
//! head; the direct path of `get_data`/`set_data` keeps the same deadlines itself.)
//!
//! A per-frame timeout (tower-http's `RequestBodyTimeout`) would not do: a client sending a
//! byte just inside each interval would hold the connection for ever.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};

use super::{ApiError, Node};

/// Gives the request's body a deadline of `limits.request_timeout` from now; answers 408
/// (and closes the connection) when the handler's read of it ran past the deadline.
pub(super) async fn request_body_deadline(
    axum::extract::State(node): axum::extract::State<Arc<Node>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let timeout = node.config.limits.request_timeout;
    let expired = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| {
        Body::new(DeadlineBody {
            body,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
            expired: expired.clone(),
        })
    });
    let response = next.run(request).await;
    if !expired.load(Ordering::Acquire) {
        return response;
    }
    let mut response = request_timed_out(timeout).into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The 408 of a request that did not arrive whole in time.
pub(crate) fn request_timed_out(timeout: Duration) -> ApiError {
    ApiError(
        StatusCode::REQUEST_TIMEOUT,
        format!(
            "the request did not arrive whole within limits.request_timeout ({})",
            humantime::format_duration(timeout)
        ),
    )
}

/// A body that fails once its deadline passes, and says so in `expired`.
struct DeadlineBody {
    body: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    expired: Arc<AtomicBool>,
}

/// The error a [`DeadlineBody`] ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within limits.request_timeout ({})", humantime::format_duration(*.0))]
struct BodyTimedOut(Duration);

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.expired.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut(self.timeout)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
