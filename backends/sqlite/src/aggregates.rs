//! The aggregate store: the hour, day, week and month aggregates of rollups, one row per
//! aggregate value, in one SQLite database beside the catalogue. File backends keep an
//! aggregate here rather than in a file of its own: a closed hour of 300,000 series rolled up
//! with avg, max and min is 900,000 values, which as files cost as much to write as the raw
//! points themselves (an open, a header read and a page written per value), and as rows about
//! a microsecond each in one transaction.
//!
//! Layout: values are keyed by (time, series), so that the values of a closed period, which
//! arrive together, are appended side by side at the end of the table: the closure of an hour
//! of 90,000 series writes about 450 pages. Keyed by (series, time), as before, each value
//! landed on a page of its own series and the same closure rewrote every page of the table
//! (11,000 at a day of values): four times the time, twice with the deletions of aged-out
//! values (`benches/aggregate_store.rs`, docs/performance.md). Reading
//! one series walks the distinct times of the table within the range asked for, one index
//! seek each, and looks the series up at each: a day of hours is a few dozen seeks, two
//! months of a month series a few thousand (the hours of every series are times of the
//! table too), a few milliseconds.
//!
//! Guarantees: [`AggregateStore::write`] applies a whole call in one transaction (a crash keeps
//! all or none of it); a value written again at the same time replaces the old one; values
//! older than the `now` of a write minus the retention given with their series are not
//! written, and those that age out later are deleted by the writes of at most [`PRUNE_EVERY`]
//! later (readers clamp to the retention, so they never see the difference); readers (other
//! connections, other processes) never block the writer (WAL mode). A series keeps its id for
//! as long as the database lives, so ids cached by one connection stay right whatever another
//! connection renames or deletes (only values move or go). The connection is opened at the
//! first call that needs it, so a reader that never asks for an aggregate costs nothing; a
//! store of the earlier layout is converted when it is first opened.

use std::path::{Path, PathBuf};

// hashbrown's map (foldhash): looked up once per aggregate series written.
use hashbrown::{HashMap, HashSet};

use perfpipe_backend::{Point, SeriesKey};
use rusqlite::{params, Connection, OptionalExtension};

/// How often, in the `now` of writes, a connection deletes the values that aged out.
pub const PRUNE_EVERY: i64 = 900;

/// The layout's version, in SQLite's `user_version`: 0 for the (series, time) layout of
/// `aggregate_values`, 2 for this one.
const LAYOUT_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS aggregate_series (
    id      INTEGER PRIMARY KEY,
    host    TEXT NOT NULL,
    service TEXT NOT NULL,
    metric  TEXT NOT NULL,
    keep_seconds INTEGER,
    UNIQUE (host, service, metric)
);
CREATE INDEX IF NOT EXISTS aggregate_series_by_keep ON aggregate_series (keep_seconds);
CREATE TABLE IF NOT EXISTS aggregate_points (
    stamp   INTEGER NOT NULL,
    series  INTEGER NOT NULL,
    value   REAL NOT NULL,
    PRIMARY KEY (stamp, series)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS aggregate_pruned (
    keep_seconds INTEGER PRIMARY KEY,
    through      INTEGER NOT NULL
);
";

/// A series' id and retention by its names.
const FIND_SERIES: &str =
    "SELECT id, keep_seconds FROM aggregate_series WHERE host = ?1 AND service = ?2 AND metric = ?3";

/// The distinct times of the table in `[?2, ?3)`, one index seek each, as the CTE `stamps`.
const STAMPS_WITHIN: &str = "WITH RECURSIVE stamps(stamp) AS (
    SELECT min(stamp) FROM aggregate_points WHERE stamp >= ?2
    UNION ALL
    SELECT (SELECT min(stamp) FROM aggregate_points WHERE stamp > stamps.stamp)
    FROM stamps WHERE stamps.stamp < ?3
)";

/// Why the aggregate store could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[error("aggregate store {path}: {what}: {source}")]
pub struct AggregateStoreError {
    path: String,
    what: &'static str,
    #[source]
    source: rusqlite::Error,
}

impl AggregateStoreError {
    /// The disk (or the quota) is full: the write may succeed once space returns.
    pub fn is_disk_full(&self) -> bool {
        matches!(
            self.source.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DiskFull)
        )
    }
}

/// One aggregate series' values to write, and how long it keeps them.
#[derive(Debug, Clone, Copy)]
pub struct AggregateWrite<'a> {
    pub key: &'a SeriesKey,
    /// Sorted by time.
    pub points: &'a [Point],
    /// Values older than `now` minus this many seconds are deleted.
    pub keep_seconds: i64,
}

/// What a connection knows of one series of the store.
#[derive(Debug, Clone, Copy)]
struct KnownSeries {
    id: i64,
    /// The retention the series' row holds (`None`: none written yet).
    keep_seconds: Option<i64>,
}

/// One connection to the aggregate store at a path; `Send`, used by one thread at a time.
pub struct AggregateStore {
    path: PathBuf,
    connection: Option<Connection>,
    /// The series this connection has seen: their ids (which never change) and retention. One
    /// map for both: at a hundred thousand series each lookup is a few cache misses.
    known: HashMap<SeriesKey, KnownSeries>,
    /// The retentions this connection knows `aggregate_pruned` to hold.
    retentions: HashSet<i64>,
    /// The `now` from which this connection's next write deletes aged-out values.
    next_prune: Option<i64>,
}

impl std::fmt::Debug for AggregateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Converts a store of the (series, time) layout, inside the caller's transaction.
fn convert_layout(transaction: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    let has_keep: bool = transaction
        .prepare("SELECT 1 FROM pragma_table_info('aggregate_series') WHERE name = 'keep_seconds'")?
        .exists([])?;
    let has_series: bool = transaction
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'aggregate_series'")?
        .exists([])?;
    if has_series && !has_keep {
        transaction
            .execute_batch("ALTER TABLE aggregate_series ADD COLUMN keep_seconds INTEGER")?;
    }
    transaction.execute_batch(SCHEMA)?;
    let has_old_values: bool = transaction
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'aggregate_values'")?
        .exists([])?;
    if has_old_values {
        // Their series have no retention yet: they are pruned once written again.
        transaction.execute_batch(
            "INSERT OR REPLACE INTO aggregate_points (stamp, series, value)
                 SELECT stamp, series, value FROM aggregate_values;
             DROP TABLE aggregate_values;",
        )?;
    }
    transaction.pragma_update(None, "user_version", LAYOUT_VERSION)
}

impl AggregateStore {
    /// The store in the SQLite file `path`, created at the first write.
    pub fn new(path: &Path) -> AggregateStore {
        AggregateStore {
            path: path.to_owned(),
            connection: None,
            known: HashMap::new(),
            retentions: HashSet::new(),
            next_prune: None,
        }
    }

    fn error(
        &self,
        what: &'static str,
    ) -> impl FnOnce(rusqlite::Error) -> AggregateStoreError + use<> {
        let path = self.path.display().to_string();
        move |source| AggregateStoreError { path, what, source }
    }

    fn connection(&mut self) -> Result<&mut Connection, AggregateStoreError> {
        if self.connection.is_none() {
            let mut connection = Connection::open(&self.path).map_err(self.error("open"))?;
            connection
                .pragma_update(None, "journal_mode", "WAL")
                .map_err(self.error("enable WAL"))?;
            connection
                .pragma_update(None, "synchronous", "NORMAL")
                .map_err(self.error("set synchronous"))?;
            connection
                .busy_timeout(std::time::Duration::from_secs(5))
                .map_err(self.error("set busy timeout"))?;
            let version: i64 = connection
                .pragma_query_value(None, "user_version", |row| row.get(0))
                .map_err(self.error("read layout version"))?;
            if version < LAYOUT_VERSION {
                // Immediate: two connections opening an old store convert it once.
                let transaction = connection
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(self.error("convert layout"))?;
                let version: i64 = transaction
                    .pragma_query_value(None, "user_version", |row| row.get(0))
                    .map_err(self.error("convert layout"))?;
                if version < LAYOUT_VERSION {
                    convert_layout(&transaction).map_err(self.error("convert layout"))?;
                }
                transaction.commit().map_err(self.error("convert layout"))?;
            }
            self.connection = Some(connection);
        }
        Ok(self.connection.as_mut().expect("opened above"))
    }

    /// The id of `key`, `None` when the store has never held it.
    fn find(&mut self, key: &SeriesKey) -> Result<Option<i64>, AggregateStoreError> {
        if let Some(known) = self.known.get(key) {
            return Ok(Some(known.id));
        }
        let error = self.error("find series");
        let found: Option<(i64, Option<i64>)> = self
            .connection()?
            .prepare_cached(FIND_SERIES)
            .and_then(|mut find| {
                find.query_row(
                    params![key.host.as_str(), key.service.as_str(), key.metric.as_str()],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
            })
            .map_err(error)?;
        let Some((id, keep_seconds)) = found else {
            return Ok(None);
        };
        self.known
            .insert(key.clone(), KnownSeries { id, keep_seconds });
        Ok(Some(id))
    }

    /// What this connection knows of `key`, inside the caller's transaction; a series new to
    /// the store gets its row, with the retention `keep_seconds` when given, in one statement
    /// (the first closures of a node's rollups make a row for each of hundreds of thousands of
    /// aggregate series). Returns whether the row was made here.
    fn known_in<'k>(
        known: &'k mut HashMap<SeriesKey, KnownSeries>,
        transaction: &rusqlite::Transaction<'_>,
        key: &SeriesKey,
        keep_seconds: Option<i64>,
    ) -> rusqlite::Result<(&'k mut KnownSeries, bool)> {
        // Looked up then inserted (not `entry`) so that a known key is not cloned.
        if known.contains_key(key) {
            return Ok((known.get_mut(key).expect("just found"), false));
        }
        let names = (key.host.as_str(), key.service.as_str(), key.metric.as_str());
        let made: Option<i64> = transaction
            .prepare_cached(
                "INSERT INTO aggregate_series (host, service, metric, keep_seconds)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (host, service, metric) DO NOTHING RETURNING id",
            )?
            .query_row(params![names.0, names.1, names.2, keep_seconds], |row| {
                row.get(0)
            })
            .optional()?;
        let series = match made {
            Some(id) => KnownSeries { id, keep_seconds },
            None => {
                let (id, keep_seconds) = transaction
                    .prepare_cached(FIND_SERIES)?
                    .query_row(params![names.0, names.1, names.2], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })?;
                KnownSeries { id, keep_seconds }
            }
        };
        let series = known.entry(key.clone()).or_insert(series);
        Ok((series, made.is_some()))
    }

    /// Makes sure the prune knows the retention `keep_seconds`, inside the caller's
    /// transaction; `registered` holds those this connection knows to be there (rows of
    /// `aggregate_pruned` are never deleted), so each costs a statement once.
    fn register_retention(
        transaction: &rusqlite::Transaction<'_>,
        registered: &mut HashSet<i64>,
        keep_seconds: i64,
    ) -> rusqlite::Result<()> {
        if registered.contains(&keep_seconds) {
            return Ok(());
        }
        transaction
            .prepare_cached(
                "INSERT OR IGNORE INTO aggregate_pruned (keep_seconds, through) VALUES (?1, ?2)",
            )?
            .execute(params![keep_seconds, i64::MIN])?;
        registered.insert(keep_seconds);
        Ok(())
    }

    /// Gives `series`, which may already hold values, the retention `keep_seconds`, inside the
    /// caller's transaction. Its values may lie below what that retention's deletions have
    /// passed: they start again from the oldest value then (once, at the next prune).
    fn set_keep(
        transaction: &rusqlite::Transaction<'_>,
        series: &mut KnownSeries,
        keep_seconds: i64,
    ) -> rusqlite::Result<()> {
        transaction
            .prepare_cached("UPDATE aggregate_series SET keep_seconds = ?2 WHERE id = ?1")?
            .execute(params![series.id, keep_seconds])?;
        transaction
            .prepare_cached(
                "INSERT INTO aggregate_pruned (keep_seconds, through) VALUES (?1, ?2)
                 ON CONFLICT (keep_seconds) DO UPDATE SET through = ?2",
            )?
            .execute(params![keep_seconds, i64::MIN])?;
        series.keep_seconds = Some(keep_seconds);
        Ok(())
    }

    /// Deletes, for every retention, the values that aged out of it since its last prune,
    /// inside the caller's transaction: one range of times per retention.
    fn prune(transaction: &rusqlite::Transaction<'_>, now: i64) -> rusqlite::Result<()> {
        let retentions: Vec<(i64, i64)> = transaction
            .prepare_cached("SELECT keep_seconds, through FROM aggregate_pruned")?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (keep_seconds, through) in retentions {
            let cutoff = now.saturating_sub(keep_seconds);
            if cutoff <= through {
                continue;
            }
            transaction
                .prepare_cached(
                    "DELETE FROM aggregate_points WHERE stamp >= ?1 AND stamp < ?2 AND series IN
                         (SELECT id FROM aggregate_series WHERE keep_seconds = ?3)",
                )?
                .execute(params![through, cutoff, keep_seconds])?;
            transaction
                .prepare_cached("UPDATE aggregate_pruned SET through = ?2 WHERE keep_seconds = ?1")?
                .execute(params![keep_seconds, cutoff])?;
        }
        Ok(())
    }

    /// Writes every series of `writes` in one transaction, and deletes what aged out by `now`
    /// (every [`PRUNE_EVERY`] seconds of it); returns the values written.
    pub fn write(
        &mut self,
        writes: &[AggregateWrite<'_>],
        now: i64,
    ) -> Result<u64, AggregateStoreError> {
        if writes.iter().all(|write| write.points.is_empty()) {
            return Ok(0);
        }
        let error = self.error("write");
        self.connection()?;
        let connection = self.connection.as_mut().expect("opened above");
        let known = &mut self.known;
        let registered = &mut self.retentions;
        let prune_due = self.next_prune.is_none_or(|due| now >= due);
        let mut apply = || -> rusqlite::Result<u64> {
            let transaction = connection.transaction()?;
            let mut insert = transaction.prepare_cached(
                "INSERT OR REPLACE INTO aggregate_points (stamp, series, value) VALUES (?1, ?2, ?3)",
            )?;
            let mut written = 0;
            for write in writes {
                if write.points.is_empty() {
                    continue;
                }
                let keep = Some(write.keep_seconds);
                let (series, created) = Self::known_in(known, &transaction, write.key, keep)?;
                if created {
                    Self::register_retention(&transaction, registered, write.keep_seconds)?;
                } else if series.keep_seconds != keep {
                    Self::set_keep(&transaction, series, write.keep_seconds)?;
                }
                // A value already older than its retention allows is one no read can show,
                // and one the prune has passed (it deletes from where it got to): not kept.
                let oldest_kept = now.saturating_sub(write.keep_seconds);
                for point in write.points {
                    if point.timestamp < oldest_kept {
                        continue;
                    }
                    insert.execute(params![point.timestamp, series.id, point.value])?;
                    written += 1;
                }
            }
            drop(insert);
            if prune_due {
                Self::prune(&transaction, now)?;
            }
            transaction.commit()?;
            Ok(written)
        };
        match apply() {
            Ok(written) => {
                if prune_due {
                    self.next_prune = Some(now.saturating_add(PRUNE_EVERY));
                }
                Ok(written)
            }
            Err(source) => {
                // The transaction rolled back: series made and retentions set in it are gone.
                self.known.clear();
                self.retentions.clear();
                Err(error(source))
            }
        }
    }

    /// The distinct times of the table in `[from, until)`.
    fn stamps_within(connection: &Connection, from: i64, until: i64) -> rusqlite::Result<Vec<i64>> {
        connection
            .prepare_cached(&format!(
                "{STAMPS_WITHIN} SELECT stamp FROM stamps WHERE stamp < ?3"
            ))?
            // ?1 is not used (the CTE's times are ?2 and ?3).
            .query_map(params![0, from, until], |row| row.get(0))?
            .collect()
    }

    /// The retention the values of `key` were written with; `None` when the store has never
    /// held the series or was never given one for it (converted from the earlier layout).
    pub fn retention_of(&mut self, key: &SeriesKey) -> Result<Option<i64>, AggregateStoreError> {
        if !self.path.exists() && self.connection.is_none() {
            return Ok(None);
        }
        self.find(key)?;
        Ok(self.known.get(key).and_then(|series| series.keep_seconds))
    }

    /// The values of `key` stamped in `[from, until)`, in time order; `None` when the store has
    /// never held the series.
    pub fn read(
        &mut self,
        key: &SeriesKey,
        from: i64,
        until: i64,
    ) -> Result<Option<Vec<Point>>, AggregateStoreError> {
        if !self.path.exists() && self.connection.is_none() {
            return Ok(None);
        }
        let Some(id) = self.find(key)? else {
            return Ok(None);
        };
        let error = self.error("read");
        let points = self
            .connection()?
            .prepare_cached(&format!(
                "{STAMPS_WITHIN} SELECT points.stamp, points.value
                 FROM stamps CROSS JOIN aggregate_points AS points
                     ON points.stamp = stamps.stamp AND points.series = ?1
                 WHERE stamps.stamp < ?3 ORDER BY points.stamp"
            ))
            .and_then(|mut read| {
                read.query_map(params![id, from, until], |row| {
                    Ok(Point {
                        timestamp: row.get(0)?,
                        value: row.get(1)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(error)?;
        Ok(Some(points))
    }

    /// Moves the values of `from` to `to`, merged with what `to` holds (`from`'s winning at
    /// equal times); returns how many were moved.
    pub fn rename(&mut self, from: &SeriesKey, to: &SeriesKey) -> Result<u64, AggregateStoreError> {
        // Onto itself nothing moves (and the move's delete would take every value).
        if from == to || (!self.path.exists() && self.connection.is_none()) {
            return Ok(0);
        }
        let Some(old) = self.find(from)? else {
            return Ok(0);
        };
        let error = self.error("rename");
        let connection = self.connection.as_mut().expect("opened by find");
        let known = &mut self.known;
        let mut apply = || -> rusqlite::Result<u64> {
            // Immediate: the write lock taken first, waiting on the busy timeout. Deferred, the
            // reads first would hold a snapshot that cannot become a write once another
            // shard's connection has committed: SQLITE_BUSY at once, no wait.
            let transaction =
                connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            // A target no retention was given yet (a name the rules do not cover) keeps the
            // values with the retention they had: read and aged out as before.
            let old_keep = known.get(from).and_then(|series| series.keep_seconds);
            let (target, _) = Self::known_in(known, &transaction, to, None)?;
            if let (None, Some(keep_seconds)) = (target.keep_seconds, old_keep) {
                Self::set_keep(&transaction, target, keep_seconds)?;
            }
            let new = *target;
            let mut moved = 0;
            for stamp in Self::stamps_within(&transaction, i64::MIN, i64::MAX)? {
                moved += transaction
                    .prepare_cached(
                        "INSERT OR REPLACE INTO aggregate_points (stamp, series, value)
                         SELECT stamp, ?3, value FROM aggregate_points
                         WHERE stamp = ?1 AND series = ?2",
                    )?
                    .execute(params![stamp, old, new.id])?;
                transaction
                    .prepare_cached(
                        "DELETE FROM aggregate_points WHERE stamp = ?1 AND series = ?2",
                    )?
                    .execute(params![stamp, old])?;
            }
            // The moved values may lie below what the new series' retention has pruned.
            if let Some(keep_seconds) = new.keep_seconds {
                transaction
                    .prepare_cached(
                        "UPDATE aggregate_pruned SET through = ?2 WHERE keep_seconds = ?1",
                    )?
                    .execute(params![keep_seconds, i64::MIN])?;
            }
            transaction.commit()?;
            Ok(moved as u64)
        };
        apply().map_err(|source| {
            self.known.clear();
            self.retentions.clear();
            error(source)
        })
    }

    /// Deletes the values of `host`'s series (all, or the one `(service, metric)`); returns how
    /// many were deleted.
    pub fn delete(
        &mut self,
        host: &str,
        series: Option<(&str, &str)>,
    ) -> Result<u64, AggregateStoreError> {
        if !self.path.exists() && self.connection.is_none() {
            return Ok(0);
        }
        let error = self.error("delete");
        let connection = self.connection()?;
        let mut apply = || -> rusqlite::Result<u64> {
            // Immediate, as in `rename`: it reads before it deletes.
            let transaction =
                connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let ids: Vec<i64> = match series {
                Some((service, metric)) => transaction
                    .prepare_cached(
                        "SELECT id FROM aggregate_series \
                         WHERE host = ?1 AND service = ?2 AND metric = ?3",
                    )?
                    .query_map(params![host, service, metric], |row| row.get(0))?
                    .collect::<rusqlite::Result<_>>()?,
                None => transaction
                    .prepare_cached("SELECT id FROM aggregate_series WHERE host = ?1")?
                    .query_map(params![host], |row| row.get(0))?
                    .collect::<rusqlite::Result<_>>()?,
            };
            let mut deleted = 0;
            if !ids.is_empty() {
                let mut delete = transaction.prepare_cached(
                    "DELETE FROM aggregate_points WHERE stamp = ?1 AND series = ?2",
                )?;
                for stamp in Self::stamps_within(&transaction, i64::MIN, i64::MAX)? {
                    for &id in &ids {
                        deleted += delete.execute(params![stamp, id])?;
                    }
                }
            }
            transaction.commit()?;
            Ok(deleted as u64)
        };
        apply().map_err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(values: &[(i64, f64)]) -> Vec<Point> {
        values
            .iter()
            .map(|&(timestamp, value)| Point { timestamp, value })
            .collect()
    }

    fn write(
        store: &mut AggregateStore,
        key: &SeriesKey,
        values: &[(i64, f64)],
        keep: i64,
        now: i64,
    ) {
        let points = points(values);
        let written = store
            .write(
                &[AggregateWrite {
                    key,
                    points: &points,
                    keep_seconds: keep,
                }],
                now,
            )
            .unwrap();
        assert_eq!(written, values.len() as u64);
    }

    #[test]
    fn values_are_written_replaced_aged_out_renamed_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aggregates.sqlite");
        let mut writer = AggregateStore::new(&path);
        let mut reader = AggregateStore::new(&path);
        let hourly = SeriesKey::new("web", "http/H/avg", "time");
        let daily = SeriesKey::new("web", "http/D/avg", "time");
        assert_eq!(reader.read(&hourly, 0, i64::MAX).unwrap(), None);
        assert!(!path.exists(), "a read makes no database");

        let first = points(&[(3_600, 1.0), (7_200, 2.0)]);
        let day = points(&[(86_400, 5.0)]);
        let written = writer
            .write(
                &[
                    AggregateWrite {
                        key: &hourly,
                        points: &first,
                        keep_seconds: 7_200,
                    },
                    AggregateWrite {
                        key: &daily,
                        points: &day,
                        keep_seconds: 86_400 * 7,
                    },
                ],
                7_200,
            )
            .unwrap();
        assert_eq!(written, 3);
        assert_eq!(
            reader.read(&hourly, 0, i64::MAX).unwrap(),
            Some(first.clone())
        );
        assert_eq!(reader.read(&daily, 0, i64::MAX).unwrap(), Some(day.clone()));
        assert_eq!(reader.read(&hourly, 3_601, 7_200).unwrap(), Some(vec![]));
        assert_eq!(
            reader.read(&hourly, 3_600, 7_201).unwrap(),
            Some(first.clone())
        );

        // A correction replaces; values older than now minus the retention go.
        write(
            &mut writer,
            &hourly,
            &[(7_200, 2.5), (14_400, 4.0)],
            7_200,
            14_400,
        );
        let later = points(&[(7_200, 2.5), (14_400, 4.0)]);
        assert_eq!(
            reader.read(&hourly, 0, i64::MAX).unwrap(),
            Some(later.clone())
        );
        assert_eq!(reader.read(&daily, 0, i64::MAX).unwrap(), Some(day.clone()));

        // Renamed onto a series that holds a value at one of the same times: ours wins.
        let renamed = SeriesKey::new("web-01", "http/H/avg", "time");
        write(
            &mut writer,
            &renamed,
            &[(14_400, 9.0), (18_000, 8.0)],
            7_200,
            14_400,
        );
        assert_eq!(reader.rename(&hourly, &renamed).unwrap(), 2);
        assert_eq!(reader.read(&hourly, 0, i64::MAX).unwrap(), Some(vec![]));
        assert_eq!(
            reader.read(&renamed, 0, i64::MAX).unwrap(),
            Some(points(&[(7_200, 2.5), (14_400, 4.0), (18_000, 8.0)]))
        );
        // The writer's cached ids stay right: it writes the old name again, then the new.
        write(&mut writer, &hourly, &[(21_600, 6.0)], 7_200, 14_400);
        assert_eq!(
            reader.read(&hourly, 0, i64::MAX).unwrap(),
            Some(points(&[(21_600, 6.0)]))
        );

        assert_eq!(
            reader.delete("web", Some(("http/D/avg", "time"))).unwrap(),
            1
        );
        assert_eq!(reader.read(&daily, 0, i64::MAX).unwrap(), Some(vec![]));
        assert_eq!(reader.delete("web-01", None).unwrap(), 3);
        assert_eq!(reader.read(&renamed, 0, i64::MAX).unwrap(), Some(vec![]));
        assert_eq!(
            reader.read(&hourly, 0, i64::MAX).unwrap(),
            Some(points(&[(21_600, 6.0)]))
        );
    }

    fn rows_in(path: &Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("SELECT count(*) FROM aggregate_points", [], |row| {
                row.get(0)
            })
            .unwrap()
    }

    #[test]
    fn a_value_older_than_its_retention_is_not_written_whatever_the_order_of_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aggregates.sqlite");
        let mut store = AggregateStore::new(&path);
        let key = SeriesKey::new("web", "http/H/avg", "time");
        let now = 100 * 3_600;
        let keep = 10 * 3_600;
        // History copied newest day first (as `adopt` may): the prune has passed the older
        // values by the time they come, so they must not be left behind in the table.
        let newest: Vec<Point> = points(&[(now - 3_600, 2.0), (now, 3.0)]);
        let older: Vec<Point> = points(&[(now - 50 * 3_600, 0.5), (now - keep, 1.0)]);
        for (values, expected) in [(&newest, 2), (&older, 1)] {
            let written = store
                .write(
                    &[AggregateWrite {
                        key: &key,
                        points: values,
                        keep_seconds: keep,
                    }],
                    now,
                )
                .unwrap();
            assert_eq!(written, expected);
        }
        assert_eq!(rows_in(&path), 3);
        assert_eq!(
            store.read(&key, 0, i64::MAX).unwrap(),
            Some(points(&[(now - keep, 1.0), (now - 3_600, 2.0), (now, 3.0)]))
        );
    }

    #[test]
    fn a_series_another_connection_made_is_written_under_its_id_with_this_retention() {
        // Each shard has its own connection: a series new to one may be in the store already.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aggregates.sqlite");
        let mut first = AggregateStore::new(&path);
        let mut second = AggregateStore::new(&path);
        let hourly = SeriesKey::new("web", "http/H/avg", "time");
        let other = SeriesKey::new("web", "http/H/max", "time");
        write(&mut first, &hourly, &[(3_600, 1.0)], 7_200, 7_200);
        write(&mut second, &other, &[(3_600, 9.0)], 86_400, 7_200);
        // Same retention: the row is found and left as it is.
        write(&mut second, &hourly, &[(7_200, 2.0)], 7_200, 7_200);
        assert_eq!(
            first.read(&hourly, 0, i64::MAX).unwrap(),
            Some(points(&[(3_600, 1.0), (7_200, 2.0)]))
        );
        assert_eq!(second.retention_of(&hourly).unwrap(), Some(7_200));
        // Another retention: the row takes it, and the values age out by it.
        write(&mut second, &hourly, &[(10_800, 3.0)], 3_600, 10_800);
        assert_eq!(
            AggregateStore::new(&path).retention_of(&hourly).unwrap(),
            Some(3_600)
        );
        write(&mut second, &hourly, &[(14_400, 4.0)], 3_600, 14_400);
        assert_eq!(
            first.read(&hourly, 0, i64::MAX).unwrap(),
            Some(points(&[(10_800, 3.0), (14_400, 4.0)]))
        );
        assert_eq!(
            first.read(&other, 0, i64::MAX).unwrap(),
            Some(points(&[(3_600, 9.0)]))
        );
        assert_eq!(rows_in(&path), 3);
    }

    #[test]
    fn a_series_renamed_onto_itself_keeps_its_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aggregates.sqlite");
        let mut store = AggregateStore::new(&path);
        let key = SeriesKey::new("web", "http/H/avg", "time");
        write(
            &mut store,
            &key,
            &[(3_600, 1.0), (7_200, 2.0)],
            7_200,
            7_200,
        );
        assert_eq!(store.rename(&key, &key.clone()).unwrap(), 0);
        assert_eq!(
            store.read(&key, 0, i64::MAX).unwrap(),
            Some(points(&[(3_600, 1.0), (7_200, 2.0)]))
        );
    }

    #[test]
    fn a_delete_waits_for_another_connections_write_rather_than_failing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aggregates.sqlite");
        let mut store = AggregateStore::new(&path);
        let key = SeriesKey::new("web", "http/H/avg", "time");
        write(&mut store, &key, &[(3_600, 1.0)], 7_200, 3_600);
        // Another shard's connection in the middle of its write, committing a moment later.
        let other = Connection::open(&path).unwrap();
        other
            .execute_batch(
                "BEGIN IMMEDIATE;
                 INSERT INTO aggregate_points (stamp, series, value) VALUES (7200, 999, 0.0);",
            )
            .unwrap();
        let committer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            other.execute_batch("COMMIT").unwrap();
        });
        assert_eq!(store.delete("web", None).unwrap(), 1);
        committer.join().unwrap();
        assert_eq!(store.read(&key, 0, i64::MAX).unwrap(), Some(vec![]));
        assert_eq!(rows_in(&path), 1, "the other connection's value stays");
    }

    #[test]
    fn each_series_keeps_its_own_retention_and_ages_out_at_most_a_prune_period_late() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aggregates.sqlite");
        let mut store = AggregateStore::new(&path);
        let hours = SeriesKey::new("db", "disk/H/max", "used");
        let days = SeriesKey::new("db", "disk/D/max", "used");
        let hour_values: Vec<(i64, f64)> = (0..48).map(|h| (h * 3_600, h as f64)).collect();
        let day_values: Vec<(i64, f64)> = (0..2).map(|d| (d * 86_400, d as f64)).collect();
        write(&mut store, &hours, &hour_values, 10 * 3_600, 0);
        write(&mut store, &days, &day_values, 7 * 86_400, 0);
        let now = 48 * 3_600;
        // Within PRUNE_EVERY of the last prune: nothing goes yet.
        write(
            &mut store,
            &hours,
            &[(now, 48.0)],
            10 * 3_600,
            PRUNE_EVERY - 1,
        );
        assert_eq!(store.read(&hours, 0, i64::MAX).unwrap().unwrap().len(), 49);
        // Then everything older than now minus its own series' retention.
        write(&mut store, &hours, &[(now, 48.5)], 10 * 3_600, now);
        let kept = store.read(&hours, 0, i64::MAX).unwrap().unwrap();
        assert_eq!(kept.first().map(|p| p.timestamp), Some(now - 10 * 3_600));
        assert_eq!(kept.len(), 11);
        assert_eq!(
            kept.last(),
            Some(&Point {
                timestamp: now,
                value: 48.5
            })
        );
        assert_eq!(
            store.read(&days, 0, i64::MAX).unwrap(),
            Some(points(&day_values))
        );
        // A raised retention keeps more from then on; a later prune goes on from where the
        // last one stopped.
        write(
            &mut store,
            &hours,
            &[(now + 3_600, 49.0)],
            20 * 3_600,
            now + 3_600,
        );
        assert_eq!(store.read(&hours, 0, i64::MAX).unwrap().unwrap().len(), 12);
        write(
            &mut store,
            &days,
            &[(2 * 86_400, 2.0)],
            7 * 86_400,
            8 * 86_400,
        );
        assert_eq!(
            store.read(&days, 0, i64::MAX).unwrap(),
            Some(points(&[(86_400, 1.0), (2 * 86_400, 2.0)]))
        );
        assert_eq!(store.read(&hours, 0, i64::MAX).unwrap(), Some(vec![]));
    }

    #[test]
    fn a_store_of_the_earlier_layout_is_converted_and_its_values_age_out_once_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aggregates.sqlite");
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(
                "CREATE TABLE aggregate_series (
                     id INTEGER PRIMARY KEY, host TEXT NOT NULL, service TEXT NOT NULL,
                     metric TEXT NOT NULL, UNIQUE (host, service, metric));
                 CREATE TABLE aggregate_values (
                     series INTEGER NOT NULL, stamp INTEGER NOT NULL, value REAL NOT NULL,
                     PRIMARY KEY (series, stamp)) WITHOUT ROWID;
                 INSERT INTO aggregate_series VALUES (7, 'web', 'http/H/avg', 'time');
                 INSERT INTO aggregate_values VALUES (7, 3600, 1.0), (7, 7200, 2.0), (7, 10800, 3.0);",
            )
            .unwrap();
        }
        let key = SeriesKey::new("web", "http/H/avg", "time");
        let mut reader = AggregateStore::new(&path);
        assert_eq!(
            reader.read(&key, 0, i64::MAX).unwrap(),
            Some(points(&[(3_600, 1.0), (7_200, 2.0), (10_800, 3.0)]))
        );
        let mut writer = AggregateStore::new(&path);
        write(&mut writer, &key, &[(14_400, 4.0)], 7_200, 14_400);
        assert_eq!(
            reader.read(&key, 0, i64::MAX).unwrap(),
            Some(points(&[(7_200, 2.0), (10_800, 3.0), (14_400, 4.0)]))
        );
        let tables: Vec<String> = Connection::open(&path)
            .unwrap()
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            tables,
            ["aggregate_points", "aggregate_pruned", "aggregate_series"]
        );
    }
}
