//! The aggregate store: the hour, day, week and month aggregates of rollups, one row per
//! aggregate value, in one SQLite database beside the catalogue. File backends keep an
//! aggregate here rather than in a file of its own: a closed hour of 300,000 series rolled up
//! with avg, max and min is 900,000 values, which as files cost as much to write as the raw
//! points themselves (an open, a header read and a page written per value), and as rows a few
//! microseconds each in one transaction.
//!
//! Guarantees: [`AggregateStore::write`] applies a whole call in one transaction (a crash keeps
//! all or none of it); a value written again at the same time replaces the old one; a series'
//! values older than its newest minus the retention given with it are deleted as it is
//! written (at most about eight times per retention period, so up to an eighth of it more may
//! stay for a while: readers clamp to the retention); readers (other connections, other processes) never block the writer (WAL mode).
//! A series keeps its id for as long as the database lives, so ids cached by one connection
//! stay right whatever another connection renames or deletes (only values move or go).
//! The connection is opened at the first call that needs it, so a reader that never asks for
//! an aggregate costs nothing.

use std::path::{Path, PathBuf};

// hashbrown's map (foldhash): looked up once per aggregate series written.
use hashbrown::HashMap;

use perfpipe_backend::{Point, SeriesKey};
use rusqlite::{params, Connection, OptionalExtension};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS aggregate_series (
    id      INTEGER PRIMARY KEY,
    host    TEXT NOT NULL,
    service TEXT NOT NULL,
    metric  TEXT NOT NULL,
    UNIQUE (host, service, metric)
);
CREATE TABLE IF NOT EXISTS aggregate_values (
    series  INTEGER NOT NULL,
    stamp   INTEGER NOT NULL,
    value   REAL NOT NULL,
    PRIMARY KEY (series, stamp)
) WITHOUT ROWID;
";

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
    /// Values older than the newest written minus this many seconds are deleted.
    pub keep_seconds: i64,
}

/// What a connection knows of one series of the store.
#[derive(Debug, Clone, Copy)]
struct KnownSeries {
    id: i64,
    /// The time up to which this connection last deleted the series' old values.
    pruned_through: Option<i64>,
}

/// One connection to the aggregate store at a path; `Send`, used by one thread at a time.
pub struct AggregateStore {
    path: PathBuf,
    connection: Option<Connection>,
    /// The series this connection has seen: their ids (which never change) and pruning. One
    /// map rather than one per field: at a hundred thousand series, each lookup is a few cache
    /// misses, and they were a fifth of the time of a write.
    known: HashMap<SeriesKey, KnownSeries>,
}

impl std::fmt::Debug for AggregateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl AggregateStore {
    /// The store in the SQLite file `path`, created at the first write.
    pub fn new(path: &Path) -> AggregateStore {
        AggregateStore {
            path: path.to_owned(),
            connection: None,
            known: HashMap::new(),
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
            let connection = Connection::open(&self.path).map_err(self.error("open"))?;
            connection
                .pragma_update(None, "journal_mode", "WAL")
                .map_err(self.error("enable WAL"))?;
            connection
                .pragma_update(None, "synchronous", "NORMAL")
                .map_err(self.error("set synchronous"))?;
            connection
                .busy_timeout(std::time::Duration::from_secs(5))
                .map_err(self.error("set busy timeout"))?;
            connection
                .execute_batch(SCHEMA)
                .map_err(self.error("create tables"))?;
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
        let id = self
            .connection()?
            .prepare_cached(
                "SELECT id FROM aggregate_series WHERE host = ?1 AND service = ?2 AND metric = ?3",
            )
            .and_then(|mut find| {
                find.query_row(params![key.host, key.service, key.metric], |row| row.get(0))
                    .optional()
            })
            .map_err(error)?;
        if let Some(id) = id {
            self.known.insert(
                key.clone(),
                KnownSeries {
                    id,
                    pruned_through: None,
                },
            );
        }
        Ok(id)
    }

    /// What this connection knows of `key`, its row made when new, inside the caller's
    /// transaction.
    fn known_in<'k>(
        known: &'k mut HashMap<SeriesKey, KnownSeries>,
        transaction: &rusqlite::Transaction<'_>,
        key: &SeriesKey,
    ) -> rusqlite::Result<&'k mut KnownSeries> {
        // Looked up then inserted (not `entry`) so that a known key is not cloned.
        if known.contains_key(key) {
            return Ok(known.get_mut(key).expect("just found"));
        }
        transaction
            .prepare_cached(
                "INSERT OR IGNORE INTO aggregate_series (host, service, metric) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![key.host, key.service, key.metric])?;
        let id = transaction
            .prepare_cached(
                "SELECT id FROM aggregate_series WHERE host = ?1 AND service = ?2 AND metric = ?3",
            )?
            .query_row(params![key.host, key.service, key.metric], |row| row.get(0))?;
        Ok(known.entry(key.clone()).or_insert(KnownSeries {
            id,
            pruned_through: None,
        }))
    }

    /// Writes every series of `writes` in one transaction; returns the values written.
    pub fn write(&mut self, writes: &[AggregateWrite<'_>]) -> Result<u64, AggregateStoreError> {
        if writes.iter().all(|write| write.points.is_empty()) {
            return Ok(0);
        }
        let error = self.error("write");
        self.connection()?;
        let connection = self.connection.as_mut().expect("opened above");
        let known = &mut self.known;
        let mut apply = || -> rusqlite::Result<u64> {
            let transaction = connection.transaction()?;
            let mut insert = transaction.prepare_cached(
                "INSERT OR REPLACE INTO aggregate_values (series, stamp, value) VALUES (?1, ?2, ?3)",
            )?;
            let mut written = 0;
            for write in writes {
                let Some(newest) = write.points.last() else {
                    continue;
                };
                let series = Self::known_in(known, &transaction, write.key)?;
                for point in write.points {
                    insert.execute(params![series.id, point.timestamp, point.value])?;
                    written += 1;
                }
                // Old values go once the cutoff has moved an eighth of the retention on.
                let cutoff = newest.timestamp.saturating_sub(write.keep_seconds);
                let due = series
                    .pruned_through
                    .is_none_or(|done| cutoff >= done.saturating_add(write.keep_seconds / 8));
                if due {
                    transaction
                        .prepare_cached(
                            "DELETE FROM aggregate_values WHERE series = ?1 AND stamp < ?2",
                        )?
                        .execute(params![series.id, cutoff])?;
                    series.pruned_through = Some(cutoff);
                }
            }
            drop(insert);
            transaction.commit()?;
            Ok(written)
        };
        apply().map_err(|source| {
            // The transaction rolled back: ids made and deletions done in it are gone again.
            self.known.clear();
            error(source)
        })
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
            .prepare_cached(
                "SELECT stamp, value FROM aggregate_values \
                 WHERE series = ?1 AND stamp >= ?2 AND stamp < ?3 ORDER BY stamp",
            )
            .and_then(|mut select| {
                select
                    .query_map(params![id, from, until], |row| {
                        Ok(Point {
                            timestamp: row.get(0)?,
                            value: row.get(1)?,
                        })
                    })?
                    .collect::<rusqlite::Result<Vec<Point>>>()
            })
            .map_err(error)?;
        Ok(Some(points))
    }

    /// Moves the values of `from` to `to`, merged with what `to` holds (`from`'s winning at
    /// equal times); returns how many were moved.
    pub fn rename(&mut self, from: &SeriesKey, to: &SeriesKey) -> Result<u64, AggregateStoreError> {
        if !self.path.exists() && self.connection.is_none() {
            return Ok(0);
        }
        let Some(old) = self.find(from)? else {
            return Ok(0);
        };
        let error = self.error("rename");
        let connection = self.connection.as_mut().expect("opened by find");
        let known = &mut self.known;
        let mut apply = || -> rusqlite::Result<u64> {
            let transaction = connection.transaction()?;
            let new = Self::known_in(known, &transaction, to)?.id;
            let moved = transaction.execute(
                "INSERT OR REPLACE INTO aggregate_values (series, stamp, value) \
                 SELECT ?2, stamp, value FROM aggregate_values WHERE series = ?1",
                params![old, new],
            )?;
            transaction.execute(
                "DELETE FROM aggregate_values WHERE series = ?1",
                params![old],
            )?;
            transaction.commit()?;
            Ok(moved as u64)
        };
        apply().map_err(|source| {
            self.known.clear();
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
        let deleted = match series {
            Some((service, metric)) => connection.execute(
                "DELETE FROM aggregate_values WHERE series IN (SELECT id FROM aggregate_series \
                 WHERE host = ?1 AND service = ?2 AND metric = ?3)",
                params![host, service, metric],
            ),
            None => connection.execute(
                "DELETE FROM aggregate_values WHERE series IN \
                 (SELECT id FROM aggregate_series WHERE host = ?1)",
                params![host],
            ),
        }
        .map_err(error)?;
        Ok(deleted as u64)
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
            .write(&[
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
            ])
            .unwrap();
        assert_eq!(written, 3);
        assert_eq!(
            reader.read(&hourly, 0, i64::MAX).unwrap(),
            Some(first.clone())
        );
        assert_eq!(reader.read(&hourly, 3_601, 7_200).unwrap(), Some(vec![]));

        // A correction replaces; values older than the newest minus the retention go.
        let later = points(&[(7_200, 2.5), (14_400, 4.0)]);
        writer
            .write(&[AggregateWrite {
                key: &hourly,
                points: &later,
                keep_seconds: 7_200,
            }])
            .unwrap();
        assert_eq!(
            reader.read(&hourly, 0, i64::MAX).unwrap(),
            Some(later.clone())
        );

        // Renamed onto a series that holds a value at one of the same times: ours wins.
        let renamed = SeriesKey::new("web-01", "http/H/avg", "time");
        let theirs = points(&[(14_400, 9.0), (18_000, 8.0)]);
        writer
            .write(&[AggregateWrite {
                key: &renamed,
                points: &theirs,
                keep_seconds: 7_200,
            }])
            .unwrap();
        assert_eq!(reader.rename(&hourly, &renamed).unwrap(), 2);
        assert_eq!(reader.read(&hourly, 0, i64::MAX).unwrap(), Some(vec![]));
        assert_eq!(
            reader.read(&renamed, 0, i64::MAX).unwrap(),
            Some(points(&[(7_200, 2.5), (14_400, 4.0), (18_000, 8.0)]))
        );
        // The writer's cached ids stay right: it writes the old name again, then the new.
        writer
            .write(&[AggregateWrite {
                key: &hourly,
                points: &points(&[(21_600, 6.0)]),
                keep_seconds: 7_200,
            }])
            .unwrap();
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
}
