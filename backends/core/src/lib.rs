//! The storage-backend boundary of perfpipe: what a series is, what a batch of points is, and
//! the one trait every backend (Whisper, RRD, InfluxDB) implements.
//!
//! Owns: [`SeriesKey`], [`Point`], [`SeriesBatch`], [`DataSourceType`], range queries
//! ([`RangeQuery`], [`Consolidation`], [`SeriesRange`]), the [`Backend`] trait, [`BackendError`],
//! and [`encode_name`], the file-name encoding the file backends share.
//!
//! Guarantees a backend can rely on: the points of a [`SeriesBatch`] are sorted by time with no
//! duplicate timestamps (the enqueuer makes them so), and one backend value is driven by one
//! thread at a time (`&mut self`), so a series' files have exactly one writer. This crate knows
//! nothing of the server.

use std::fmt;

/// The identity of a series: a metric of a service of a host, names exactly as read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    /// The host.
    pub host: String,
    /// The service; host perfdata uses the service name the node is configured with.
    pub service: String,
    /// The perfdata label.
    pub metric: String,
}

impl SeriesKey {
    /// The series `host`/`service`/`metric`.
    pub fn new(
        host: impl Into<String>,
        service: impl Into<String>,
        metric: impl Into<String>,
    ) -> Self {
        SeriesKey {
            host: host.into(),
            service: service.into(),
            metric: metric.into(),
        }
    }
}

impl fmt::Display for SeriesKey {
    /// The `host::service::metric` form of the query API.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}::{}::{}", self.host, self.service, self.metric)
    }
}

/// How a stored value is interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataSourceType {
    /// The value is the measurement (most perfdata).
    Gauge,
    /// The value is a running count; storage derives a rate (perfdata unit `c`).
    Counter,
}

impl DataSourceType {
    /// The type perfdata's unit implies: `c` is a counter, everything else a gauge.
    pub fn for_unit(uom: &str) -> Self {
        if uom == "c" {
            DataSourceType::Counter
        } else {
            DataSourceType::Gauge
        }
    }
}

/// One measurement: seconds since the epoch and a value (`NaN` never appears; unknown values
/// are not stored).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Seconds since the Unix epoch.
    pub timestamp: i64,
    /// The value.
    pub value: f64,
}

/// Points of one series, sorted by time, without duplicate timestamps.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesBatch {
    /// Which series.
    pub key: SeriesKey,
    /// The unit perfdata gave, verbatim.
    pub uom: String,
    /// How the values are interpreted.
    pub ds_type: DataSourceType,
    /// The points, oldest first.
    pub points: Vec<Point>,
}

impl SeriesBatch {
    /// A batch of `(timestamp, value)` points, its data-source type implied by `uom`
    /// ([`DataSourceType::for_unit`]). The caller keeps the batch's promise: sorted by time,
    /// no duplicate timestamps.
    pub fn new(key: SeriesKey, uom: impl Into<String>, points: &[(i64, f64)]) -> Self {
        let uom = uom.into();
        SeriesBatch {
            key,
            ds_type: DataSourceType::for_unit(&uom),
            uom,
            points: points
                .iter()
                .map(|&(timestamp, value)| Point { timestamp, value })
                .collect(),
        }
    }
}

impl SeriesBatch {
    /// A batch from points in any order: sorted by time, and of points with the same timestamp
    /// only the first given kept (a stable sort keeps arrival order among equals). Returns the
    /// batch and how many duplicates were dropped.
    pub fn from_unordered(key: SeriesKey, uom: String, mut points: Vec<Point>) -> (Self, usize) {
        points.sort_by_key(|point| point.timestamp);
        let before = points.len();
        points.dedup_by_key(|point| point.timestamp);
        let duplicates = before - points.len();
        let batch = SeriesBatch {
            ds_type: DataSourceType::for_unit(&uom),
            key,
            uom,
            points,
        };
        (batch, duplicates)
    }
}

/// How values are combined when a range is read at a coarser step than stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Consolidation {
    /// The mean of the values.
    #[default]
    Average,
    /// The smallest value.
    Min,
    /// The largest value.
    Max,
}

/// A range to read: `[start, end)` in epoch seconds, at `step` seconds if given (else the
/// finest step the store has for that range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeQuery {
    /// First second of the range.
    pub start: i64,
    /// End of the range.
    pub end: i64,
    /// The wanted step in seconds, if any.
    pub step: Option<u32>,
    /// How values are combined.
    pub consolidation: Consolidation,
}

/// Values read for a range: the value at `start + i * step` is `values[i]`, `None` for a gap.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesRange {
    /// Timestamp of the first value.
    pub start: i64,
    /// Seconds between values.
    pub step: u32,
    /// The values, `None` where nothing is stored.
    pub values: Vec<Option<f64>>,
}

/// What one call to [`Backend::write`] did.
#[derive(Debug, Default)]
pub struct WriteReport {
    /// Points stored.
    pub written: u64,
    /// Points refused because the store already holds later data for their series.
    pub late: u64,
    /// Series that could not be written, with why; the other series of the call were written.
    pub failed: Vec<(SeriesKey, BackendError)>,
}

/// Why a backend could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A name whose encoded form cannot be a file name.
    #[error(
        "name too long for a file name once encoded ({encoded_len} bytes, limit {limit}): {name:?}"
    )]
    NameTooLong {
        /// The name as given.
        name: String,
        /// Its encoded length.
        encoded_len: usize,
        /// The file-system limit.
        limit: usize,
    },
    /// An empty host, service or metric name, which cannot name a file.
    #[error("empty name")]
    EmptyName,
    /// The series does not exist in this backend.
    #[error("no such series: {0}")]
    NotFound(SeriesKey),
    /// The store's files or server failed; the message says which and how.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the file or server.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The store answered but refused or could not do the operation.
    #[error("{0}")]
    Store(String),
}

/// The contract of a storage backend.
pub trait Backend: Send {
    /// A short name for logs and metrics (`whisper`, `rrd`, `influxdb`).
    fn name(&self) -> &'static str;

    /// Stores many series' batches in one call. A failure of one series is reported in the
    /// report and does not stop the others; `Err` means the whole call failed (a store that is
    /// down), and nothing may be assumed written.
    fn write(&mut self, batches: &[SeriesBatch]) -> Result<WriteReport, BackendError>;

    /// Reads a range of one series.
    fn read(&mut self, key: &SeriesKey, range: &RangeQuery) -> Result<SeriesRange, BackendError>;

    /// Forgets what this backend keeps in memory about `host`'s series (all of them, or the
    /// one `(service, metric)`): open files, cached last-update times. Called before their
    /// files are moved away, so no later write goes to a moved file. Default: nothing kept.
    fn forget(&mut self, host: &str, series: Option<(&str, &str)>) {
        let _ = (host, series);
    }

    /// Where the data of `host` (or of its one series `(service, metric)`) lies on disk: the
    /// file or directory to move when it is deleted. `None` for backends without local files.
    fn stored_at(
        &self,
        host: &str,
        series: Option<(&str, &str)>,
    ) -> Result<Option<std::path::PathBuf>, BackendError> {
        let _ = (host, series);
        Ok(None)
    }
}

/// The longest file name common file systems accept (ext4, XFS, btrfs).
pub const MAX_FILE_NAME_BYTES: usize = 255;

/// Encodes a name for use as one path component: every byte outside `[A-Za-z0-9_]` becomes
/// `%XX` (upper-case hex), as Opsview's RRD layout does. `..`, `/`, NUL and any other byte are
/// therefore just characters of a file name, never a path step. A name whose encoded form (plus
/// `reserve` bytes the caller appends, like `.wsp`) exceeds [`MAX_FILE_NAME_BYTES`] is refused.
pub fn encode_name(name: &str, reserve: usize) -> Result<String, BackendError> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut encoded = String::with_capacity(name.len());
    for &byte in name.as_bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' {
            encoded.push(char::from(byte));
        } else {
            encoded.push('%');
            encoded.push(char::from(HEX[usize::from(byte >> 4)]));
            encoded.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
    }
    if encoded.is_empty() {
        return Err(BackendError::EmptyName);
    }
    let limit = MAX_FILE_NAME_BYTES - reserve;
    if encoded.len() > limit {
        return Err(BackendError::NameTooLong {
            name: name.to_owned(),
            encoded_len: encoded.len(),
            limit,
        });
    }
    Ok(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_keeps_names_inside_their_directory() {
        assert_eq!(encode_name("load1", 0).unwrap(), "load1");
        assert_eq!(encode_name("..", 0).unwrap(), "%2E%2E");
        assert_eq!(encode_name("/var/log", 0).unwrap(), "%2Fvar%2Flog");
        assert_eq!(encode_name("C:\\ Used", 0).unwrap(), "C%3A%5C%20Used");
        assert_eq!(encode_name("a\0b", 0).unwrap(), "a%00b");
        assert_eq!(encode_name("µs", 0).unwrap(), "%C2%B5s");
    }

    #[test]
    fn long_names_are_refused_with_their_length() {
        assert!(encode_name(&"a".repeat(255), 0).is_ok());
        let error = encode_name(&"a".repeat(252), 4).unwrap_err();
        assert!(
            error.to_string().contains("252 bytes, limit 251"),
            "{error}"
        );
        assert!(encode_name(&"/".repeat(1400), 0).is_err());
        assert!(matches!(encode_name("", 0), Err(BackendError::EmptyName)));
    }

    #[test]
    fn unordered_points_are_sorted_keeping_the_first_of_equal_times() {
        let point = |timestamp, value| Point { timestamp, value };
        let (batch, duplicates) = SeriesBatch::from_unordered(
            SeriesKey::new("h", "s", "m"),
            "c".into(),
            vec![
                point(30, 1.0),
                point(10, 2.0),
                point(30, 3.0),
                point(20, 4.0),
            ],
        );
        assert_eq!(
            batch.points,
            [point(10, 2.0), point(20, 4.0), point(30, 1.0)]
        );
        assert_eq!(duplicates, 1);
        assert_eq!(batch.ds_type, DataSourceType::Counter);
    }

    #[test]
    fn counters_are_unit_c() {
        assert_eq!(DataSourceType::for_unit("c"), DataSourceType::Counter);
        assert_eq!(DataSourceType::for_unit("ms"), DataSourceType::Gauge);
    }
}
