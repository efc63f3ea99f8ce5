//! The direct path of the plugins' two hottest calls, `POST /get_data` and `POST /set_data`.
//!
//! Every connection of a listener starts here. Its requests are read with `httparse` and, as
//! long as they are one of those two calls in plain HTTP/1.1 with a `Content-Length` body
//! within `max_body_size`, answered straight from the cache (the same code as axum's
//! handlers, `api::plugins::answer_get_data`/`answer_set_data`, under the same
//! `limits.max_requests_in_flight`), one write per answer. The first request that is anything
//! else (another path, a chunked body, `Expect`, an upgrade, HTTP/1.0, a head over 16 KB or
//! of more than 32 headers, a body over the limit) hands the connection over, with the bytes
//! already read, to hyper and the axum router for the rest of its life, so every other answer
//! and every refusal of a malformed request stays theirs.
//!
//! Why by hand: with 64 keep-alive clients on two cores, hyper's connection state machine,
//! axum's router, its middlewares and extractors (each boxing a future per request) took
//! about half of the node's user-space CPU of a 1 KB `get_data` (measured with `perf`, see
//! `docs/performance.md`), more than the cache itself and the JSON together.
//!
//! Guarantees: a request is answered only once whole; pipelined requests are answered in
//! order; a request's head must arrive within `limits.request_timeout` of its first byte and
//! its body within as long again of its head, else 408 and the connection closes (hyper,
//! given the connection, keeps the same bounds); at shutdown an idle connection is closed at
//! once and a request in progress is answered first.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::StatusCode;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::debug;

use crate::api::plugins::{answer_get_data, answer_set_data, PeerCall, PluginAnswer};
use crate::api::{ApiError, Endpoint, Node};
use crate::cachemanager::peers::{PEER_HEADER, REPLICA_HEADER};

/// The longest request head the direct path reads; a longer one goes to hyper.
const MAX_HEAD: usize = 16 * 1024;
/// The most headers the direct path reads; a request with more goes to hyper.
const MAX_HEADERS: usize = 32;

/// What a connection's listener gives each of its connections.
#[derive(Clone)]
pub struct ConnectionContext {
    pub node: Arc<Node>,
    pub endpoint: Endpoint,
    pub router: Router,
    /// Turns `true` when the node stops.
    pub stopping: watch::Receiver<bool>,
}

/// The call a request head asks for, when the direct path takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    GetData,
    SetData,
}

/// A request head the direct path takes.
struct DirectRequest {
    call: Call,
    head_len: usize,
    body_len: usize,
    close: bool,
    /// `X-Perfpipe-Peer`'s value (peers only; plugins send none).
    peer_secret: Option<Vec<u8>>,
    replica: bool,
}

/// What the bytes read so far hold.
enum Head {
    Direct(DirectRequest),
    /// Not all of the head has arrived.
    Partial,
    /// A request for hyper (or bytes hyper will refuse with the right status).
    Other,
}

/// Serves one connection: the direct path while it applies, then hyper (see the module).
pub async fn serve_connection<S>(mut io: S, context: ConnectionContext, watcher: Watcher)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ConnectionContext {
        node,
        endpoint,
        router,
        mut stopping,
    } = context;
    let body_limit = usize::try_from(node.config.max_body_size.as_u64()).unwrap_or(usize::MAX);
    let request_timeout = node.config.limits.request_timeout;
    let mut input: Vec<u8> = Vec::with_capacity(4096);
    let mut output: Vec<u8> = Vec::with_capacity(4096);
    loop {
        // From the request's first byte (now, when pipelined bytes wait already).
        let mut head_deadline = (!input.is_empty()).then(|| Instant::now() + request_timeout);
        let request = loop {
            match read_head(&input, body_limit) {
                Head::Direct(request) => break request,
                Head::Other => {
                    return hand_to_hyper(io, input, router, watcher, request_timeout).await
                }
                Head::Partial if input.len() > MAX_HEAD => {
                    return hand_to_hyper(io, input, router, watcher, request_timeout).await
                }
                Head::Partial => {}
            }
            let read = match head_deadline {
                // Idle between requests: the only moment a stopping node closes it.
                None => tokio::select! {
                    read = io.read_buf(&mut input) => {
                        head_deadline = Some(Instant::now() + request_timeout);
                        read
                    }
                    _ = stopping.wait_for(|stop| *stop) => return,
                },
                Some(deadline) => {
                    match tokio::time::timeout_at(deadline, io.read_buf(&mut input)).await {
                        Ok(read) => read,
                        Err(_) => return time_out(io, output, request_timeout).await,
                    }
                }
            };
            match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        let end = request.head_len + request.body_len;
        if input.len() < end {
            input.reserve(end - input.len());
            let body_deadline = Instant::now() + request_timeout;
            while input.len() < end {
                match tokio::time::timeout_at(body_deadline, io.read_buf(&mut input)).await {
                    Ok(Ok(0) | Err(_)) => return,
                    Ok(Ok(_)) => {}
                    Err(_) => return time_out(io, output, request_timeout).await,
                }
            }
        }
        let body = &input[request.head_len..end];
        let peer = PeerCall {
            secret: request.peer_secret.as_deref(),
            replica: request.replica,
        };
        let answer = match node.enter_request() {
            Ok(_in_flight) => match request.call {
                Call::GetData => answer_get_data(&node, endpoint, peer, body).await,
                Call::SetData => answer_set_data(&node, endpoint, peer, body).await,
            },
            Err(refused) => Err(refused),
        };
        output.clear();
        write_answer(&mut output, answer, request.close);
        if io.write_all(&output).await.is_err() {
            return;
        }
        if request.close {
            let _ = io.shutdown().await;
            return;
        }
        // Usually the whole input was this request; pipelined ones move to the front.
        if input.len() == end {
            input.clear();
        } else {
            input.drain(..end);
        }
        if input.capacity() > 64 * 1024 && input.len() < 4096 {
            // A large body's buffer is not kept for the connection's life.
            input.shrink_to(4096);
        }
    }
}

/// Answers 408 to a request that did not arrive whole in time, and closes the connection.
async fn time_out<S>(mut io: S, mut output: Vec<u8>, request_timeout: Duration)
where
    S: AsyncWrite + Unpin,
{
    debug!("request not whole within limits.request_timeout: 408, connection closed");
    output.clear();
    write_answer(
        &mut output,
        Err(crate::api::deadline::request_timed_out(request_timeout)),
        true,
    );
    if io.write_all(&output).await.is_ok() {
        let _ = io.shutdown().await;
    }
}

/// Reads the request head at the start of `input`.
fn read_head(input: &[u8], body_limit: usize) -> Head {
    if input.is_empty() {
        return Head::Partial;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(input) {
        Ok(httparse::Status::Complete(head_len)) => head_len,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::Other,
    };
    let call = match (request.method, request.path, request.version) {
        (Some("POST"), Some("/get_data"), Some(1)) => Call::GetData,
        (Some("POST"), Some("/set_data"), Some(1)) => Call::SetData,
        _ => return Head::Other,
    };
    let mut body_len = None;
    let mut close = false;
    let mut peer_secret = None;
    let mut replica = false;
    for header in request.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            let length = std::str::from_utf8(header.value)
                .ok()
                .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|digits| digits.parse::<usize>().ok());
            match (length, body_len) {
                (Some(length), None) => body_len = Some(length),
                // Two lengths, or one that is not a number: hyper refuses it properly.
                _ => return Head::Other,
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("upgrade")
        {
            return Head::Other;
        } else if name.eq_ignore_ascii_case("connection") {
            for option in header.value.split(|&b| b == b',') {
                let option = option.trim_ascii();
                if option.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if option.eq_ignore_ascii_case(b"upgrade") {
                    return Head::Other;
                }
            }
        } else if name.eq_ignore_ascii_case(PEER_HEADER) {
            peer_secret = Some(header.value.to_vec());
        } else if name.eq_ignore_ascii_case(REPLICA_HEADER) {
            replica = true;
        }
    }
    match body_len {
        Some(body_len) if body_len <= body_limit => Head::Direct(DirectRequest {
            call,
            head_len,
            body_len,
            close,
            peer_secret,
            replica,
        }),
        // No length (an empty body hyper reads as such) or over the limit (axum's 413).
        _ => Head::Other,
    }
}

/// Writes an answer, head and body, into `output`.
fn write_answer(output: &mut Vec<u8>, answer: Result<PluginAnswer, ApiError>, close: bool) {
    let (status, body, retry_after) = match answer {
        Ok(PluginAnswer { status, body }) => (status, body, false),
        Err(refused) => (refused.0, refused.body().into(), refused.retry_after()),
    };
    write_head(output, status, body.len(), retry_after, close);
    output.extend_from_slice(&body);
}

fn write_head(
    output: &mut Vec<u8>,
    status: StatusCode,
    body_len: usize,
    retry_after: bool,
    close: bool,
) {
    output.extend_from_slice(b"HTTP/1.1 ");
    output.extend_from_slice(status.as_str().as_bytes());
    output.push(b' ');
    output.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    output.extend_from_slice(b"\r\ncontent-type: application/json\r\ncontent-length: ");
    output.extend_from_slice(itoa::Buffer::new().format(body_len).as_bytes());
    output.extend_from_slice(b"\r\ndate: ");
    output.extend_from_slice(http_date::now().as_bytes());
    if retry_after {
        output.extend_from_slice(b"\r\nretry-after: 1");
    }
    if close {
        output.extend_from_slice(b"\r\nconnection: close");
    }
    output.extend_from_slice(b"\r\n\r\n");
}

/// Serves the rest of a connection with hyper and the router, `read` first. hyper bounds the
/// wait for each request head by `request_timeout` (it counts from the end of the answer
/// before, so an idle keep-alive connection closes after as long), the router each body.
async fn hand_to_hyper<S>(
    io: S,
    read: Vec<u8>,
    router: Router,
    watcher: Watcher,
    request_timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = Replayed {
        read,
        position: 0,
        io,
    };
    let service = TowerToHyperService::new(router);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(request_timeout);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    if let Err(error) = watcher.watch(connection.into_owned()).await {
        debug!(%error, "connection ended with an error");
    }
}

/// A connection whose first bytes were already read: they are read again first.
struct Replayed<S> {
    read: Vec<u8>,
    position: usize,
    io: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Replayed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.position < this.read.len() {
            let left = &this.read[this.position..];
            let taken = left.len().min(buf.remaining());
            buf.put_slice(&left[..taken]);
            this.position += taken;
            if this.position == this.read.len() {
                this.read = Vec::new();
                this.position = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replayed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The `Date` header's value, formatted once a second per thread.
mod http_date {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};

    thread_local! {
        static LAST: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }

    pub fn now() -> String {
        let now = SystemTime::now();
        let second = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        LAST.with(|last| {
            let mut last = last.borrow_mut();
            if last.0 != second || last.1.is_empty() {
                *last = (second, httpdate::fmt_http_date(now));
            }
            last.1.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direct(input: &[u8]) -> DirectRequest {
        match read_head(input, 1024) {
            Head::Direct(request) => request,
            Head::Partial => panic!("partial: {}", String::from_utf8_lossy(input)),
            Head::Other => panic!("other: {}", String::from_utf8_lossy(input)),
        }
    }

    fn is_other(input: &[u8]) -> bool {
        matches!(read_head(input, 1024), Head::Other)
    }

    #[test]
    fn the_two_calls_are_taken_with_their_lengths_and_peer_headers() {
        let input =
            b"POST /get_data HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n{\"k\": \"v\"} ";
        let request = direct(input);
        assert_eq!(request.call, Call::GetData);
        assert_eq!(request.head_len, input.len() - 11);
        assert_eq!(request.body_len, 12);
        assert!(!request.close);
        assert!(request.peer_secret.is_none());

        let input =
            b"POST /set_data HTTP/1.1\r\ncontent-length: 0\r\nConnection: keep-alive, Close\r\n\
                      X-Perfpipe-Peer: s3cret\r\nX-Perfpipe-Replica: 1\r\n\r\n";
        let request = direct(input);
        assert_eq!(request.call, Call::SetData);
        assert!(request.close);
        assert_eq!(request.peer_secret.as_deref(), Some(&b"s3cret"[..]));
        assert!(request.replica);
    }

    #[test]
    fn a_head_cut_short_waits_for_more() {
        assert!(matches!(
            read_head(b"POST /get_data HTTP/1.1\r\nContent-Len", 1024),
            Head::Partial
        ));
        assert!(matches!(read_head(b"", 1024), Head::Partial));
    }

    #[test]
    fn everything_else_goes_to_hyper() {
        // Other paths and methods, HTTP/1.0, chunked, Expect, upgrades, no or bad lengths,
        // a body over the limit, garbage.
        for input in [
            &b"GET /get_data HTTP/1.1\r\nContent-Length: 0\r\n\r\n"[..],
            b"POST /store_data HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
            b"POST /get_data?x=1 HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
            b"POST /get_data HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}",
            b"POST /get_data HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST /get_data HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
            b"POST /get_data HTTP/1.1\r\nContent-Length: 2\r\nConnection: Upgrade\r\n\r\n",
            b"POST /get_data HTTP/1.1\r\n\r\n",
            b"POST /get_data HTTP/1.1\r\nContent-Length: +2\r\n\r\n{}",
            b"POST /get_data HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
            b"POST /get_data HTTP/1.1\r\nContent-Length: 1025\r\n\r\n",
            b"\x00\x01garbage\r\n\r\n",
        ] {
            assert!(is_other(input), "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn answers_carry_status_length_and_retry_after() {
        let mut output = Vec::new();
        write_answer(
            &mut output,
            Err(ApiError(StatusCode::TOO_MANY_REQUESTS, "busy".into())),
            true,
        );
        let text = String::from_utf8(output).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\ncontent-length: 16\r\n"), "{text}");
        assert!(text.contains("\r\nretry-after: 1\r\n"), "{text}");
        assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n{\"error\":\"busy\"}"), "{text}");
    }
}
