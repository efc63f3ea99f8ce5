//! The storage-backend boundary of perfpipe: what a series is, what a batch of points is, and
//! the one trait every backend (Whisper, RRD, InfluxDB) implements.
//!
//! Owns: [`SeriesKey`], [`Point`], [`Levels`], [`SeriesBatch`], [`DataSourceType`], range queries
//! ([`RangeQuery`], [`Consolidation`], [`SeriesRange`]), the [`Backend`] trait, [`BackendError`],
//! and [`encode_name`], the file-name encoding the file backends share.
//!
//! Guarantees a backend can rely on: the points of a [`SeriesBatch`] are sorted by time with no
//! duplicate timestamps (the enqueuer makes them so), and one backend value is driven by one
//! thread at a time (`&mut self`), so a series' files have exactly one writer. This crate knows
//! nothing of the server.

use std::fmt;

/// A host, service or metric name: a string kept inline when it has at most 24 bytes (most
/// names of monitoring have), on the heap otherwise. Series keys are made for every series of
/// every request and looked up in maps on the write path; inline names spare three allocations
/// a key, the frees on another thread that followed them, and the pointer chases of comparing
/// keys (`docs/performance.md`, "Names kept inline").
pub type Name = compact_str::CompactString;

/// The identity of a series: a metric of a service of a host, names exactly as read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    /// The host.
    pub host: Name,
    /// The service; host perfdata uses the service name the node is configured with.
    pub service: Name,
    /// The perfdata label.
    pub metric: Name,
}

impl SeriesKey {
    /// The series `host`/`service`/`metric`.
    pub fn new(host: impl Into<Name>, service: impl Into<Name>, metric: impl Into<Name>) -> Self {
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

/// A threshold as perfdata gives it (`10`, `10:20`, `~:5`, `20:`, `@10:20`): alert when the
/// value is outside `start..=end`, or inside it when `inside`. A missing bound is infinite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThresholdRange {
    /// Lower bound (`-inf` for `~`).
    pub start: f64,
    /// Upper bound (`+inf` when absent after `:`).
    pub end: f64,
    /// `@` was given: alert inside the range.
    pub inside: bool,
}

impl ThresholdRange {
    /// The plain form `N` (`0:N`, alerting outside): most plugins' thresholds, which nagflux
    /// stores as one number.
    pub fn plain_limit(&self) -> Option<f64> {
        (!self.inside && self.start == 0.0 && self.end.is_finite()).then_some(self.end)
    }
}

/// What perfdata says beside a value: warning and critical thresholds and the value's range.
/// The InfluxDB schema stores them with each point; the file formats have no place for them.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Levels {
    /// The warning threshold.
    pub warn: Option<ThresholdRange>,
    /// The critical threshold.
    pub crit: Option<ThresholdRange>,
    /// The least value the metric can take.
    pub min: Option<f64>,
    /// The greatest value the metric can take.
    pub max: Option<f64>,
}

/// Points of one series, sorted by time, without duplicate timestamps.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesBatch {
    /// Which series.
    pub key: SeriesKey,
    /// The unit perfdata gave, verbatim.
    pub uom: Name,
    /// How the values are interpreted.
    pub ds_type: DataSourceType,
    /// The points, oldest first.
    pub points: Vec<Point>,
    /// The levels in force from a timestamp on, oldest first, one entry per change: a point
    /// carries the levels of the last entry at or before its time (or the first entry's, when
    /// it is older than all). Empty when nothing is known of them. Thresholds change rarely, so
    /// this costs one entry per batch, not one per point.
    pub levels: Vec<(i64, Levels)>,
}

impl SeriesBatch {
    /// A batch of `(timestamp, value)` points, its data-source type implied by `uom`
    /// ([`DataSourceType::for_unit`]), with no levels. The caller keeps the batch's promise:
    /// sorted by time, no duplicate timestamps.
    pub fn new(key: SeriesKey, uom: impl Into<Name>, points: &[(i64, f64)]) -> Self {
        let uom = uom.into();
        SeriesBatch {
            key,
            ds_type: DataSourceType::for_unit(&uom),
            uom,
            points: points
                .iter()
                .map(|&(timestamp, value)| Point { timestamp, value })
                .collect(),
            levels: Vec::new(),
        }
    }

    /// A batch from points in any order: sorted by time, and of points with the same timestamp
    /// only the first given kept (a stable sort keeps arrival order among equals). `levels` are
    /// `(timestamp of the point that brought them, levels)` in arrival order; they are put in
    /// time order the same way and entries that change nothing are dropped. Returns the batch
    /// and how many duplicate points were dropped.
    pub fn from_unordered(
        key: SeriesKey,
        uom: Name,
        mut points: Vec<Point>,
        mut levels: Vec<(i64, Levels)>,
    ) -> (Self, usize) {
        points.sort_by_key(|point| point.timestamp);
        let before = points.len();
        points.dedup_by_key(|point| point.timestamp);
        let duplicates = before - points.len();
        levels.sort_by_key(|&(timestamp, _)| timestamp);
        levels.dedup_by_key(|&mut (timestamp, _)| timestamp);
        levels.dedup_by(|later, earlier| later.1 == earlier.1);
        let batch = SeriesBatch {
            ds_type: DataSourceType::for_unit(&uom),
            key,
            uom,
            points,
            levels,
        };
        (batch, duplicates)
    }

    /// Replaces the contents of `pairs` with the points as `(timestamp, value)`.
    pub fn copy_pairs_into(&self, pairs: &mut Vec<(i64, f64)>) {
        pairs.clear();
        pairs.extend(
            self.points
                .iter()
                .map(|point| (point.timestamp, point.value)),
        );
    }

    /// Each point with the levels in force at its time (see [`SeriesBatch::levels`]).
    pub fn points_with_levels(&self) -> impl Iterator<Item = (&Point, Option<&Levels>)> {
        let mut next = 0;
        self.points.iter().map(move |point| {
            while next < self.levels.len() && self.levels[next].0 <= point.timestamp {
                next += 1;
            }
            (
                point,
                self.levels.get(next.saturating_sub(1)).map(|(_, l)| l),
            )
        })
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

impl BackendError {
    /// The disk (or the quota) is full: the write may succeed once space returns, so it is
    /// worth retrying rather than counting as failed. librrd reports it only as text.
    pub fn is_disk_full(&self) -> bool {
        const ENOSPC: i32 = 28;
        const EDQUOT: i32 = 122;
        match self {
            BackendError::Io { source, .. } => {
                matches!(source.raw_os_error(), Some(ENOSPC | EDQUOT))
            }
            BackendError::Store(message) => {
                message.contains("No space left on device")
                    || message.contains("Disk quota exceeded")
            }
            _ => false,
        }
    }
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

    /// Reads a range as a reader at epoch second `now` would: stores whose answer depends on
    /// the present (Whisper picks its archive by the age of `start` and clamps `end` to now)
    /// use it, so a render and graphite-web asked with the same `now` read the same archive.
    /// Default: [`Backend::read`].
    fn read_as_of(
        &mut self,
        key: &SeriesKey,
        range: &RangeQuery,
        now: i64,
    ) -> Result<SeriesRange, BackendError> {
        let _ = now;
        self.read(key, range)
    }

    /// What [`Backend::read_as_of`] would answer for `key`, which this store does not have yet
    /// (its first points are still queued), were it created at `now` with no point: the range's
    /// slots in the layout a new series gets, all empty, for the caller to fill with the queued
    /// points. `None` when the store cannot say (the default).
    fn read_unwritten(&self, key: &SeriesKey, range: &RangeQuery, now: i64) -> Option<SeriesRange> {
        let _ = (key, range, now);
        None
    }

    /// Forgets what this backend keeps in memory about `host`'s series (all of them, or the
    /// one `(service, metric)`): open files, cached last-update times. Called before their
    /// files are moved away, so no later write goes to a moved file. Default: nothing kept.
    fn forget(&mut self, host: &str, series: Option<(&str, &str)>) {
        let _ = (host, series);
    }

    /// Deletes what this backend holds of `host`'s series (all of them, or the one
    /// `(service, metric)`) other than in the files the caller moves away (see
    /// [`Backend::stored_at`]); returns how many values went. Default: nothing held so.
    fn delete_held(
        &mut self,
        host: &str,
        series: Option<(&str, &str)>,
    ) -> Result<u64, BackendError> {
        let _ = (host, series);
        Ok(0)
    }

    /// Renames the series `from` to `to` inside a store whose data is not in files the caller
    /// moves (see [`Backend::stored_at`]): `from`'s points end under `to`, merged with what `to`
    /// holds (`from`'s value winning at equal times), and `from` is gone. Default: nothing of
    /// the backend's own to rename.
    fn rename_series(
        &mut self,
        from: &SeriesKey,
        to: &SeriesKey,
    ) -> Result<SeriesRename, BackendError> {
        let _ = (from, to);
        Ok(SeriesRename::NothingHeld)
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

/// Seconds since the Unix epoch by the system clock (0 for a clock set before 1970): the one
/// "now" of the backends and the node.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

/// What [`Backend::rename_series`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeriesRename {
    /// The backend keeps nothing of its own under the name (its files, if any, are moved by
    /// the caller).
    NothingHeld,
    /// This many points were rewritten under the new name and the old series removed.
    Moved {
        /// Points rewritten.
        points: u64,
    },
    /// The store cannot do it (why); its points stay under the old name.
    Unsupported(String),
}

/// Moves a corrupt store file out of the way: renamed to the first free name of
/// `<file>.corrupt`, `<file>.1.corrupt`, … beside it, kept for a person to look at. Answers the
/// new name.
pub fn set_aside(path: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    for n in 0..1000 {
        let mut name = path.as_os_str().to_owned();
        if n > 0 {
            name.push(format!(".{n}"));
        }
        name.push(".corrupt");
        let aside = std::path::PathBuf::from(name);
        if !aside.exists() {
            return std::fs::rename(path, &aside).map(|()| aside);
        }
    }
    Err(std::io::Error::other(
        "a thousand corrupt copies already beside it",
    ))
}

/// A name as one path component, without length checks: every byte outside `[A-Za-z0-9_]`
/// becomes `%XX` (upper-case hex), as Opsview's RRD layout does. Graphite paths use it too, so
/// they name series exactly as the files do.
pub fn percent_encode(name: &str) -> String {
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
    encoded
}

/// Encodes a name for use as one path component ([`percent_encode`]). `..`, `/`, NUL and any
/// other byte are therefore just characters of a file name, never a path step. A name whose
/// encoded form (plus `reserve` bytes the caller appends, like `.wsp`) exceeds
/// [`MAX_FILE_NAME_BYTES`] is refused.
pub fn encode_name(name: &str, reserve: usize) -> Result<String, BackendError> {
    let encoded = percent_encode(name);
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
            Vec::new(),
        );
        assert_eq!(
            batch.points,
            [point(10, 2.0), point(20, 4.0), point(30, 1.0)]
        );
        assert_eq!(duplicates, 1);
        assert_eq!(batch.ds_type, DataSourceType::Counter);
    }

    #[test]
    fn each_point_carries_the_levels_in_force_at_its_time() {
        let point = |timestamp| Point {
            timestamp,
            value: 1.0,
        };
        let limit = |end| Levels {
            warn: Some(ThresholdRange {
                start: 0.0,
                end,
                inside: false,
            }),
            ..Levels::default()
        };
        // Arrival order: 30 brought warn 2, 10 brought warn 1, 20 repeated warn 1 (no change),
        // 40 brought warn 3 twice.
        let (batch, _) = SeriesBatch::from_unordered(
            SeriesKey::new("h", "s", "m"),
            Name::default(),
            [5, 10, 20, 30, 40, 50].map(point).to_vec(),
            vec![
                (30, limit(2.0)),
                (10, limit(1.0)),
                (20, limit(1.0)),
                (40, limit(3.0)),
                (40, limit(9.0)),
            ],
        );
        assert_eq!(
            batch.levels,
            [(10, limit(1.0)), (30, limit(2.0)), (40, limit(3.0))]
        );
        let warn_of_each: Vec<f64> = batch
            .points_with_levels()
            .map(|(_, levels)| levels.unwrap().warn.unwrap().end)
            .collect();
        assert_eq!(warn_of_each, [1.0, 1.0, 1.0, 2.0, 3.0, 3.0]);
        let bare = SeriesBatch::new(SeriesKey::new("h", "s", "m"), "", &[(1, 1.0)]);
        assert!(bare
            .points_with_levels()
            .all(|(_, levels)| levels.is_none()));
    }

    #[test]
    fn only_zero_based_outside_thresholds_are_plain_limits() {
        let range = |start, end, inside| ThresholdRange { start, end, inside };
        assert_eq!(range(0.0, 80.0, false).plain_limit(), Some(80.0));
        assert_eq!(range(10.0, 80.0, false).plain_limit(), None);
        assert_eq!(range(0.0, 80.0, true).plain_limit(), None);
        assert_eq!(range(0.0, f64::INFINITY, false).plain_limit(), None);
    }

    #[test]
    fn counters_are_unit_c() {
        assert_eq!(DataSourceType::for_unit("c"), DataSourceType::Counter);
        assert_eq!(DataSourceType::for_unit("ms"), DataSourceType::Gauge);
    }
}
