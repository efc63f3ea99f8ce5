//! The cap on open client connections (`limits.max_connections`), shared by the node's
//! listeners. A connection holds its permit from accept to close, idle keep-alive included.
//! Beyond the cap a new connection is not left waiting in the kernel's backlog: it is read
//! (its request head, for at most two seconds, so the client is not reset mid-send) and
//! answered `429 Too Many Requests` with `Retry-After: 1` and a JSON error naming the limit,
//! then closed. Requests on the connections already open are not affected. Every accepted
//! connection has TCP_NODELAY set (`no_delay`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Permits for open connections, one per connection.
#[derive(Clone)]
pub struct ConnectionLimit {
    permits: Arc<Semaphore>,
    max: usize,
}

impl ConnectionLimit {
    pub fn new(max: usize) -> ConnectionLimit {
        ConnectionLimit {
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// A permit for one more connection, or `None` when `max` are open.
    pub fn try_take(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// Answers a connection over the cap and closes it.
    pub async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(&self, mut stream: S) {
        let mut head = [0u8; 8192];
        let mut seen = 0;
        let read_head = async {
            while seen < head.len() {
                match stream.read(&mut head[seen..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen += n,
                }
                if head[..seen].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), read_head).await;
        let body = format!(
            "{{\"error\":\"more than limits.max_connections ({}) connections open: try again, \
             or reuse a connection\"}}",
            self.max
        );
        let answer = format!(
            "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n\
             retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    }
}

/// A connection with its permit: the permit goes back when the connection is dropped.
pub struct Limited<S> {
    stream: S,
    _permit: OwnedSemaphorePermit,
}

impl<S> Limited<S> {
    pub fn new(stream: S, permit: OwnedSemaphorePermit) -> Limited<S> {
        Limited {
            stream,
            _permit: permit,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Turns Nagle's algorithm off on an accepted connection: an answer is written as soon as it
/// is ready, rather than held back while an earlier segment waits for the client's delayed
/// ACK (up to 40 ms on Linux) when an answer leaves in more than one write.
pub fn no_delay(stream: &TcpStream) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "setting TCP_NODELAY failed");
    }
}
