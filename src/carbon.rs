//! The Graphite plaintext listeners (`[graphite] listen`): carbon's line receiver on TCP and
//! its datagram receiver on UDP, on one address and port (2003 when only an IP is given).
//!
//! Lines are read by `crate::protocols::graphite` and go into the same pipeline as
//! `POST /api/v1/write` through `crate::api::write::submit`: routed to the owner node, logged in
//! its write-ahead log (or the hint log for a down owner), then queued for the backends.
//!
//! Guarantees. TCP: a connection's points are acknowledged only implicitly, so each batch read
//! (what one read of the socket returned, complete lines only) is logged before the connection
//! is read again; while the queues are full the connection is not read (the sender's socket
//! buffer fills: backpressure, nothing dropped). A line that cannot be read is counted and
//! logged with the peer, its line number on the connection and the reason (at most 10 log lines
//! per 10 s per listener, then a count of those held back); the good lines beside it are kept.
//! A line longer than 64 KiB is refused as a whole. UDP: each datagram is read alone (line
//! numbers within it); datagrams arriving while the queues are full are dropped and counted,
//! since UDP has no way to push back. Both stop at the node's shutdown signal; what was
//! submitted by then is flushed with the rest of the queues.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use perfpipe_backend::{Name, SeriesKey};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::api::write::{submit, SubmitError};
use crate::api::Node;
use crate::enqueuer::{EnqueueError, SeriesPoints};
use crate::protocols::graphite::Templates;
use crate::protocols::{LogLimiter, ReceiverCounters};

/// Longest line taken.
const MAX_LINE: usize = 64 * 1024;

/// What the listeners share.
struct Receiver {
    node: Arc<Node>,
    templates: Templates,
    /// Bad lines of the TCP listener, then of the UDP one.
    tcp_log: LogLimiter,
    udp_log: LogLimiter,
}

/// Binds the listeners of `[graphite]` (TCP, and UDP on the same port when `udp`) and serves
/// them until `stopping` turns true. Answers the bound addresses, or `None` when
/// `graphite.listen` is empty.
pub async fn start(
    node: Arc<Node>,
    stopping: watch::Receiver<bool>,
) -> anyhow::Result<Option<(SocketAddr, Option<SocketAddr>)>> {
    let config = &node.config.graphite;
    let Some(address) = config.address()? else {
        return Ok(None);
    };
    let templates = Templates::new(
        &config.templates,
        &config.service,
        node.config.limits.max_name_length,
    )?;
    let tcp = TcpListener::bind(address)
        .await
        .with_context(|| format!("graphite: listening on {address} (TCP)"))?;
    let tcp_address = tcp.local_addr().context("graphite: the bound address")?;
    // UDP on the port TCP got (so port 0 gives both one port).
    let udp = if config.udp {
        let socket = UdpSocket::bind(tcp_address)
            .await
            .with_context(|| format!("graphite: listening on {tcp_address} (UDP)"))?;
        Some(socket)
    } else {
        None
    };
    let udp_address = udp.as_ref().and_then(|socket| socket.local_addr().ok());
    if !address.ip().is_loopback() {
        warn!(tcp = %tcp_address, "graphite plaintext has no authentication: anyone who reaches this address may write");
    }
    info!(tcp = %tcp_address, udp = ?udp_address, "graphite listening");
    let receiver = Arc::new(Receiver {
        node,
        templates,
        tcp_log: LogLimiter::new(10, Duration::from_secs(10)),
        udp_log: LogLimiter::new(10, Duration::from_secs(10)),
    });
    tokio::spawn(accept(receiver.clone(), tcp, stopping.clone()));
    if let Some(udp) = udp {
        tokio::spawn(datagrams(receiver, udp, stopping));
    }
    Ok(Some((tcp_address, udp_address)))
}

async fn stopped(mut stopping: watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

async fn accept(receiver: Arc<Receiver>, listener: TcpListener, stopping: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(stopping.clone()) => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                receiver
                    .node
                    .protocols
                    .graphite_connections
                    .fetch_add(1, Ordering::Relaxed);
                tokio::spawn(connection(receiver.clone(), stream, peer, stopping.clone()));
            }
            Err(failure) => {
                // Out of descriptors and the like: wait rather than spin.
                warn!(%failure, "graphite: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One TCP connection: read, take complete lines, log them, read again.
async fn connection(
    receiver: Arc<Receiver>,
    mut stream: TcpStream,
    peer: SocketAddr,
    stopping: watch::Receiver<bool>,
) {
    let counters = &receiver.node.protocols.graphite_tcp;
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut line_number = 0usize;
    // Inside a line longer than MAX_LINE: skip to its end.
    let mut skipping = false;
    loop {
        let read = tokio::select! {
            read = stream.read(&mut chunk) => read,
            () = stopped(stopping.clone()) => return,
        };
        let read = match read {
            Ok(read) => read,
            Err(failure) => {
                warn!(%peer, %failure, "graphite: connection failed");
                return;
            }
        };
        let end_of_stream = read == 0;
        let mut data = &chunk[..read];
        if skipping {
            match memchr::memchr(b'\n', data) {
                Some(newline) => {
                    skipping = false;
                    data = &data[newline + 1..];
                }
                None => data = &[],
            }
        }
        pending.extend_from_slice(data);
        let complete = if end_of_stream {
            // The last line may lack its newline.
            std::mem::take(&mut pending)
        } else {
            match memchr::memrchr(b'\n', &pending) {
                Some(newline) => {
                    let rest = pending.split_off(newline + 1);
                    std::mem::replace(&mut pending, rest)
                }
                None => Vec::new(),
            }
        };
        if pending.len() > MAX_LINE {
            line_number += 1;
            bad_line(
                &receiver.tcp_log,
                counters,
                peer,
                line_number,
                &format!("line longer than {MAX_LINE} bytes"),
            );
            pending.clear();
            skipping = true;
        }
        if !complete.is_empty() {
            let series = read_lines(
                &receiver,
                &complete,
                &mut line_number,
                peer,
                counters,
                &receiver.tcp_log,
            );
            take(&receiver, series, counters, peer, true, &stopping).await;
        }
        if end_of_stream {
            return;
        }
    }
}

/// UDP: each datagram is a batch of lines.
async fn datagrams(receiver: Arc<Receiver>, socket: UdpSocket, stopping: watch::Receiver<bool>) {
    let counters = &receiver.node.protocols.graphite_udp;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let received = tokio::select! {
            received = socket.recv_from(&mut buffer) => received,
            () = stopped(stopping.clone()) => return,
        };
        let (size, peer) = match received {
            Ok(received) => received,
            Err(failure) => {
                warn!(%failure, "graphite: UDP receive failed");
                continue;
            }
        };
        let mut line_number = 0;
        let series = read_lines(
            &receiver,
            &buffer[..size],
            &mut line_number,
            peer,
            counters,
            &receiver.udp_log,
        );
        take(&receiver, series, counters, peer, false, &stopping).await;
    }
}

/// Reads `bytes` (whole lines) into points per series; counts and logs the bad lines.
fn read_lines(
    receiver: &Receiver,
    bytes: &[u8],
    line_number: &mut usize,
    peer: SocketAddr,
    counters: &ReceiverCounters,
    log: &LogLimiter,
) -> Vec<SeriesPoints> {
    let mut series: Vec<SeriesPoints> = Vec::new();
    let mut index: std::collections::HashMap<SeriesKey, usize> = Default::default();
    let mut lines = bytes.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        // The split's last piece is what follows the final newline: nothing.
        if line.is_empty() && lines.peek().is_none() {
            break;
        }
        *line_number += 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        counters.lines.fetch_add(1, Ordering::Relaxed);
        let Ok(text) = std::str::from_utf8(line) else {
            bad_line(log, counters, peer, *line_number, "not valid UTF-8");
            continue;
        };
        match receiver.templates.read_line(text) {
            Ok((key, point)) => {
                let position = *index.entry(key.clone()).or_insert_with(|| {
                    series.push(SeriesPoints {
                        key,
                        uom: Name::default(),
                        points: smallvec::SmallVec::new(),
                        levels: smallvec::SmallVec::new(),
                    });
                    series.len() - 1
                });
                series[position].points.push(point);
            }
            Err(reason) => bad_line(log, counters, peer, *line_number, &reason.to_string()),
        }
    }
    series
}

fn bad_line(
    log: &LogLimiter,
    counters: &ReceiverCounters,
    peer: SocketAddr,
    line: usize,
    reason: &str,
) {
    counters.bad_lines.fetch_add(1, Ordering::Relaxed);
    let (allowed, held_back) = log.allow();
    if held_back > 0 {
        warn!(
            held_back,
            "graphite: more bad lines were not logged (10 per 10 s)"
        );
    }
    if allowed {
        warn!(%peer, line, reason, "graphite: line not taken");
    }
}

/// Submits `series` and waits until they are logged. With `patient` (TCP) full queues are
/// waited out; otherwise (UDP) the points are dropped and counted.
async fn take(
    receiver: &Receiver,
    series: Vec<SeriesPoints>,
    counters: &ReceiverCounters,
    peer: SocketAddr,
    patient: bool,
    stopping: &watch::Receiver<bool>,
) {
    let points: u64 = series.iter().map(|s| s.points.len() as u64).sum();
    if points == 0 {
        return;
    }
    loop {
        match submit(&receiver.node, series.clone()).await {
            Ok(()) => {
                counters.points.fetch_add(points, Ordering::Relaxed);
                return;
            }
            Err(SubmitError::Refused(EnqueueError::Full { .. }))
                if patient && !*stopping.borrow() =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(SubmitError::Refused(refusal)) => {
                counters.dropped.fetch_add(points, Ordering::Relaxed);
                error!(%peer, points, %refusal, "graphite: points dropped");
                return;
            }
            Err(SubmitError::Unavailable(why)) => {
                counters.dropped.fetch_add(points, Ordering::Relaxed);
                error!(%peer, points, %why, "graphite: points not logged");
                return;
            }
        }
    }
}
