//! The ingest protocols other monitoring tools speak, read into the same points as
//! `POST /api/v1/write`: Graphite's plaintext lines ([`graphite`], received by
//! `crate::carbon` on TCP and UDP) and InfluxDB's line protocol ([`line_protocol`], received
//! by `POST /write` and `POST /api/v2/write`). Each module owns one format and its mapping onto
//! host, service and metric; none of them touches a socket, a queue or a file. Their points
//! go through `crate::api::write::submit` (owner routing, the write-ahead log, hinted handoff)
//! like every other write.
//!
//! [`Counters`] are what `/status` and `/metrics` report of them.

pub mod graphite;
pub mod line_protocol;

use std::sync::atomic::AtomicU64;

/// Counts of one receiver (all atomics, relaxed: they are statistics).
#[derive(Debug, Default)]
pub struct ReceiverCounters {
    /// Lines read (blank lines and comments not counted).
    pub lines: AtomicU64,
    /// Points taken (logged by their owner).
    pub points: AtomicU64,
    /// Lines not taken because they could not be read or mapped.
    pub bad_lines: AtomicU64,
    /// Points read but not taken: the queues were full, or a log or owner refused them.
    pub dropped: AtomicU64,
}

/// The receivers' counters, shared by the listeners and the status endpoints.
#[derive(Debug, Default)]
pub struct Counters {
    /// Graphite plaintext over TCP.
    pub graphite_tcp: ReceiverCounters,
    /// Graphite plaintext over UDP.
    pub graphite_udp: ReceiverCounters,
    /// TCP connections accepted by the Graphite listener.
    pub graphite_connections: AtomicU64,
    /// InfluxDB line protocol on `/write` and `/api/v2/write`.
    pub line_protocol: ReceiverCounters,
    /// Fields of line protocol not stored (string fields).
    pub line_protocol_ignored_fields: AtomicU64,
    /// Notices of bad lines and ignored fields of the InfluxDB write endpoints.
    pub line_protocol_log: LogLimiter,
}

/// Lets a few log lines through per interval and counts the rest, so a sender of bad lines
/// cannot flood the log.
#[derive(Debug)]
pub struct LogLimiter {
    state: parking_lot::Mutex<(std::time::Instant, u32, u64)>,
    per_interval: u32,
    interval: std::time::Duration,
}

impl Default for LogLimiter {
    /// 10 lines per 10 seconds.
    fn default() -> Self {
        LogLimiter::new(10, std::time::Duration::from_secs(10))
    }
}

impl LogLimiter {
    pub fn new(per_interval: u32, interval: std::time::Duration) -> LogLimiter {
        LogLimiter {
            state: parking_lot::Mutex::new((std::time::Instant::now(), 0, 0)),
            per_interval,
            interval,
        }
    }

    /// Whether to log now; when a new interval starts, also how many were held back in the
    /// last one (to be logged once).
    pub fn allow(&self) -> (bool, u64) {
        let mut state = self.state.lock();
        let (started, logged, held) = &mut *state;
        let mut suppressed = 0;
        if started.elapsed() >= self.interval {
            suppressed = *held;
            *started = std::time::Instant::now();
            *logged = 0;
            *held = 0;
        }
        if *logged < self.per_interval {
            *logged += 1;
            (true, suppressed)
        } else {
            *held += 1;
            (false, suppressed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_lets_a_few_through_then_counts() {
        let limiter = LogLimiter::new(2, std::time::Duration::from_millis(50));
        assert_eq!(limiter.allow(), (true, 0));
        assert_eq!(limiter.allow(), (true, 0));
        assert_eq!(limiter.allow(), (false, 0));
        assert_eq!(limiter.allow(), (false, 0));
        std::thread::sleep(std::time::Duration::from_millis(60));
        assert_eq!(limiter.allow(), (true, 2));
    }
}
