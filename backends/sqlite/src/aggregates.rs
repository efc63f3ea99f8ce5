//! The aggregate store: the hour, day, week and month aggregates of rollups in one SQLite
//! database beside the catalogue, one row per aggregate group and period holding the value of
//! each method. File backends keep an aggregate here rather than in a file of its own: a closed
//! hour of 300,000 series rolled up with avg, max and min is 900,000 values, which as files
//! cost as much to write as the raw points themselves (an open, a header read and a page
//! written per value), and as rows a fraction of a microsecond each in one transaction.
//!
//! An aggregate *group* is what the aggregate series of one base series at one level (and
//! weekend variant) share: `web::http/H/avg::time`, `…/H/max…` and `…/H/min…` are the group
//! `web::http/H::time` and its three methods. The caller names the groups (the store only keeps
//! and compares the names it is given); a group is one row of `aggregate_groups` and each
//! period one row of `aggregate_rows` with a column per method, so the closure of a period
//! writes one B-tree entry for the three values rather than three (a third of the cost, and a
//! third of the catalogue of ids in memory).
//!
//! Layout: rows are keyed by (time, group), so that the rows of a closed period, which arrive
//! together, are appended side by side at the end of the table: the closure of an hour of
//! 30,000 groups writes a few hundred pages. Keyed by (group, time), each row would land on a
//! page of its own group and the same closure would rewrite every page of the table (four
//! times the time, `benches/aggregate_store.rs`, docs/performance.md). Reading one series walks
//! the distinct times of the table within the range asked for, one index seek each, and looks
//! the group up at each: a day of hours is a few dozen seeks, two months of a month series a
//! few thousand (the hours of every series are times of the table too), a few milliseconds.
//!
//! Guarantees: [`AggregateStore::write`] applies a whole call in one transaction (a crash keeps
//! all or none of it); a value written again at the same time replaces the old one, and a row
//! written with some methods keeps the values of the others; values older than the `now` of a
//! write minus the retention given with their group are not written, and those that age out
//! later are deleted by the writes of at most [`PRUNE_EVERY`] later (readers clamp to the
//! retention, so they never see the difference); readers (other connections, other processes)
//! never block the writer (WAL mode). A group keeps its id for as long as the database lives,
//! so ids cached by one connection stay right whatever another connection renames or deletes
//! (only values move or go). The connection is opened at the first call that needs it, so a
//! reader that never asks for an aggregate costs nothing; a store of an earlier layout (a row
//! per aggregate value, series named with their method) is converted when it is first opened,
//! with the caller's [`GroupOf`].

use std::path::{Path, PathBuf};

// hashbrown's map (foldhash): looked up once per aggregate group written.
use hashbrown::{HashMap, HashSet};

use perfpipe_backend::{Point, SeriesKey};
use rusqlite::{params, Connection, OptionalExtension};

/// How often, in the `now` of writes, a connection deletes the values that aged out.
pub const PRUNE_EVERY: i64 = 900;

/// The layout's version, in SQLite's `user_version`: 0 for a row per value keyed by (series,
/// time), 2 for a row per value keyed by (time, series), 3 for this one.
const LAYOUT_VERSION: i64 = 3;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS aggregate_groups (
    id      INTEGER PRIMARY KEY,
    host    TEXT NOT NULL,
    service TEXT NOT NULL,
    metric  TEXT NOT NULL,
    keep_seconds INTEGER,
    methods INTEGER NOT NULL DEFAULT 0,
    UNIQUE (host, service, metric)
);
CREATE INDEX IF NOT EXISTS aggregate_groups_by_keep ON aggregate_groups (keep_seconds);
CREATE TABLE IF NOT EXISTS aggregate_rows (
    stamp     INTEGER NOT NULL,
    grp       INTEGER NOT NULL,
    value_avg REAL,
    value_max REAL,
    value_min REAL,
    PRIMARY KEY (stamp, grp)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS aggregate_pruned (
    keep_seconds INTEGER PRIMARY KEY,
    through      INTEGER NOT NULL
);
";

/// A group's id, retention and methods by its names.
const FIND_GROUP: &str = "SELECT id, keep_seconds, methods FROM aggregate_groups
     WHERE host = ?1 AND service = ?2 AND metric = ?3";

/// The distinct times of the table from `?2` up to the first at or past `?3`, one index seek
/// each, as the CTE `stamps` (the select after it bounds them at `?3`, open or closed).
const STAMPS_WITHIN: &str = "WITH RECURSIVE stamps(stamp) AS (
    SELECT min(stamp) FROM aggregate_rows WHERE stamp >= ?2
    UNION ALL
    SELECT (SELECT min(stamp) FROM aggregate_rows WHERE stamp > stamps.stamp)
    FROM stamps WHERE stamps.stamp < ?3
)";

/// Deletes the row `(?1, ?2)` once no method has a value in it.
const DELETE_IF_EMPTY: &str = "DELETE FROM aggregate_rows WHERE stamp = ?1 AND grp = ?2
     AND value_avg IS NULL AND value_max IS NULL AND value_min IS NULL";

/// An aggregation method: one value column of the store's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggregateMethod {
    Avg,
    Max,
    Min,
}

impl AggregateMethod {
    /// Every method, in the order of [`AggregateRow::values`].
    pub const ALL: [AggregateMethod; 3] = [
        AggregateMethod::Avg,
        AggregateMethod::Max,
        AggregateMethod::Min,
    ];

    /// Its position in [`AggregateMethod::ALL`] and [`AggregateRow::values`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Its column of `aggregate_rows`.
    fn column(self) -> &'static str {
        match self {
            AggregateMethod::Avg => "value_avg",
            AggregateMethod::Max => "value_max",
            AggregateMethod::Min => "value_min",
        }
    }

    /// Its bit in `aggregate_groups.methods`.
    fn bit(self) -> i64 {
        1 << self.index()
    }
}

/// How the caller names groups: the group and method of an aggregate series' service (its host
/// and metric are the group's), `None` for a service that is not an aggregate's. Used to
/// convert a store of an earlier layout, whose series were named with their method.
pub type GroupOf = fn(&str) -> Option<(String, AggregateMethod)>;

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

/// One period of a group: its time and the value of each method written (by
/// [`AggregateMethod::index`]; `None`: not written, the row keeps what it holds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AggregateRow {
    pub timestamp: i64,
    pub values: [Option<f64>; 3],
}

impl AggregateRow {
    /// The methods with a value, as `aggregate_groups.methods` bits.
    fn methods(&self) -> i64 {
        AggregateMethod::ALL
            .into_iter()
            .filter(|method| self.values[method.index()].is_some())
            .fold(0, |bits, method| bits | method.bit())
    }
}

/// One group's rows to write, and how long it keeps them.
#[derive(Debug, Clone, Copy)]
pub struct AggregateWrite<'a> {
    pub group: &'a SeriesKey,
    /// Sorted by time, one row per time.
    pub rows: &'a [AggregateRow],
    /// Values older than `now` minus this many seconds are deleted.
    pub keep_seconds: i64,
}

/// What a connection knows of one group of the store.
#[derive(Debug, Clone, Copy)]
struct KnownGroup {
    id: i64,
    /// The retention the group's row holds (`None`: none written yet).
    keep_seconds: Option<i64>,
    /// The methods ever written to the group (bits of [`AggregateMethod::bit`]), as this
    /// connection last saw them: another connection may have added some since.
    methods: i64,
}

/// One connection to the aggregate store at a path; `Send`, used by one thread at a time.
pub struct AggregateStore {
    path: PathBuf,
    group_of: GroupOf,
    connection: Option<Connection>,
    /// The groups this connection has seen: their ids (which never change), retention and
    /// methods. One map for all: at a hundred thousand groups each lookup is a few cache misses.
    known: HashMap<SeriesKey, KnownGroup>,
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

fn table_exists(transaction: &rusqlite::Transaction<'_>, name: &str) -> rusqlite::Result<bool> {
    transaction
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1")?
        .exists([name])
}

/// Converts a store of an earlier layout (a row per value, of series named with their method)
/// inside the caller's transaction: each series becomes a method of its group (`group_of`),
/// its values that method's column. A series `group_of` does not recognize (none a node wrote:
/// only aggregates are stored) is left out.
fn convert_layout(
    transaction: &rusqlite::Transaction<'_>,
    group_of: GroupOf,
) -> rusqlite::Result<()> {
    let old_values = if table_exists(transaction, "aggregate_points")? {
        Some("aggregate_points")
    } else if table_exists(transaction, "aggregate_values")? {
        Some("aggregate_values")
    } else {
        None
    };
    transaction.execute_batch(SCHEMA)?;
    if table_exists(transaction, "aggregate_series")? {
        // The first layout had no retention per series.
        let has_keep: bool = transaction
            .prepare(
                "SELECT 1 FROM pragma_table_info('aggregate_series') WHERE name = 'keep_seconds'",
            )?
            .exists([])?;
        let keep = if has_keep { "keep_seconds" } else { "NULL" };
        let series: Vec<(i64, String, String, String, Option<i64>)> = transaction
            .prepare(&format!(
                "SELECT id, host, service, metric, {keep} FROM aggregate_series"
            ))?
            .query_map([], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        transaction.execute_batch(
            "CREATE TEMP TABLE aggregate_conversion (
                 old INTEGER PRIMARY KEY, grp INTEGER NOT NULL, method INTEGER NOT NULL)",
        )?;
        for (old, host, service, metric, keep_seconds) in series {
            let Some((group, method)) = group_of(&service) else {
                continue;
            };
            let id: i64 = transaction
                .prepare_cached(
                    "INSERT INTO aggregate_groups (host, service, metric, keep_seconds, methods)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (host, service, metric) DO UPDATE SET
                         methods = methods | excluded.methods,
                         keep_seconds = coalesce(keep_seconds, excluded.keep_seconds)
                     RETURNING id",
                )?
                .query_row(
                    params![host, group, metric, keep_seconds, method.bit()],
                    |row| row.get(0),
                )?;
            transaction
                .prepare_cached("INSERT INTO aggregate_conversion VALUES (?1, ?2, ?3)")?
                .execute(params![old, id, method.index() as i64])?;
        }
        if let Some(old_values) = old_values {
            for method in AggregateMethod::ALL {
                let column = method.column();
                // `WHERE` before `ON CONFLICT`: SQLite's rule for an upsert from a select.
                transaction.execute(
                    &format!(
                        "INSERT INTO aggregate_rows (stamp, grp, {column})
                         SELECT v.stamp, c.grp, v.value
                         FROM {old_values} AS v JOIN aggregate_conversion AS c ON c.old = v.series
                         WHERE c.method = ?1
                         ON CONFLICT (stamp, grp) DO UPDATE SET {column} = excluded.{column}"
                    ),
                    [method.index() as i64],
                )?;
            }
        }
        transaction
            .execute_batch("DROP TABLE aggregate_conversion; DROP TABLE aggregate_series")?;
    }
    // Values without their series' names (never seen) could not be given a group.
    if let Some(old_values) = old_values {
        transaction.execute_batch(&format!("DROP TABLE {old_values}"))?;
    }
    transaction.pragma_update(None, "user_version", LAYOUT_VERSION)
}

impl AggregateStore {
    /// The store in the SQLite file `path`, created at the first write; `group_of` names the
    /// groups of a store of an earlier layout when it is converted.
    pub fn new(path: &Path, group_of: GroupOf) -> AggregateStore {
        AggregateStore {
            path: path.to_owned(),
            group_of,
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
                    convert_layout(&transaction, self.group_of)
                        .map_err(self.error("convert layout"))?;
                }
                transaction.commit().map_err(self.error("convert layout"))?;
            }
            self.connection = Some(connection);
        }
        Ok(self.connection.as_mut().expect("opened above"))
    }

    /// What the store holds of `group`, read again when `wanted` (a method's bit, or 0) is not
    /// among the methods this connection last saw; `None` when the store has never held it.
    fn find(
        &mut self,
        group: &SeriesKey,
        wanted: i64,
    ) -> Result<Option<KnownGroup>, AggregateStoreError> {
        if let Some(known) = self.known.get(group) {
            if known.methods & wanted == wanted {
                return Ok(Some(*known));
            }
        }
        let error = self.error("find group");
        let found: Option<KnownGroup> = self
            .connection()?
            .prepare_cached(FIND_GROUP)
            .and_then(|mut find| {
                find.query_row(
                    params![
                        group.host.as_str(),
                        group.service.as_str(),
                        group.metric.as_str()
                    ],
                    |row| {
                        Ok(KnownGroup {
                            id: row.get(0)?,
                            keep_seconds: row.get(1)?,
                            methods: row.get(2)?,
                        })
                    },
                )
                .optional()
            })
            .map_err(error)?;
        if let Some(found) = found {
            self.known.insert(group.clone(), found);
        }
        Ok(found)
    }

    /// What this connection knows of `group`, inside the caller's transaction; a group new to
    /// the store gets its row, with the retention `keep_seconds` when given and the methods
    /// `methods`, in one statement (the first closures of a node's rollups make a row for each
    /// of a hundred thousand groups). Returns whether the row was made here.
    fn known_in<'k>(
        known: &'k mut HashMap<SeriesKey, KnownGroup>,
        transaction: &rusqlite::Transaction<'_>,
        group: &SeriesKey,
        keep_seconds: Option<i64>,
        methods: i64,
    ) -> rusqlite::Result<(&'k mut KnownGroup, bool)> {
        // Looked up then inserted (not `entry`) so that a known key is not cloned.
        if known.contains_key(group) {
            return Ok((known.get_mut(group).expect("just found"), false));
        }
        let names = (
            group.host.as_str(),
            group.service.as_str(),
            group.metric.as_str(),
        );
        // Not `RETURNING id`: that costs an ephemeral table per statement (a new catalogue row
        // 4.1 µs with it, 2.5 without); the new row's id is the connection's last rowid.
        let inserted = transaction
            .prepare_cached(
                "INSERT INTO aggregate_groups (host, service, metric, keep_seconds, methods)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (host, service, metric) DO NOTHING",
            )?
            .execute(params![names.0, names.1, names.2, keep_seconds, methods])?;
        let made = (inserted == 1).then(|| transaction.last_insert_rowid());
        let found = match made {
            Some(id) => KnownGroup {
                id,
                keep_seconds,
                methods,
            },
            None => transaction.prepare_cached(FIND_GROUP)?.query_row(
                params![names.0, names.1, names.2],
                |row| {
                    Ok(KnownGroup {
                        id: row.get(0)?,
                        keep_seconds: row.get(1)?,
                        methods: row.get(2)?,
                    })
                },
            )?,
        };
        let group = known.entry(group.clone()).or_insert(found);
        Ok((group, made.is_some()))
    }

    /// Adds `methods` to what `group` says it was written with, inside the caller's transaction.
    fn add_methods(
        transaction: &rusqlite::Transaction<'_>,
        group: &mut KnownGroup,
        methods: i64,
    ) -> rusqlite::Result<()> {
        if group.methods & methods == methods {
            return Ok(());
        }
        group.methods = transaction
            .prepare_cached(
                "UPDATE aggregate_groups SET methods = methods | ?2 WHERE id = ?1
                 RETURNING methods",
            )?
            .query_row(params![group.id, methods], |row| row.get(0))?;
        Ok(())
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

    /// Gives `group`, which may already hold values, the retention `keep_seconds`, inside the
    /// caller's transaction. Its values may lie below what that retention's deletions have
    /// passed: they start again from the oldest value then (once, at the next prune).
    fn set_keep(
        transaction: &rusqlite::Transaction<'_>,
        group: &mut KnownGroup,
        keep_seconds: i64,
    ) -> rusqlite::Result<()> {
        transaction
            .prepare_cached("UPDATE aggregate_groups SET keep_seconds = ?2 WHERE id = ?1")?
            .execute(params![group.id, keep_seconds])?;
        transaction
            .prepare_cached(
                "INSERT INTO aggregate_pruned (keep_seconds, through) VALUES (?1, ?2)
                 ON CONFLICT (keep_seconds) DO UPDATE SET through = ?2",
            )?
            .execute(params![keep_seconds, i64::MIN])?;
        group.keep_seconds = Some(keep_seconds);
        Ok(())
    }

    /// Deletes, for every retention, the rows that aged out of it since its last prune, inside
    /// the caller's transaction: one range of times per retention.
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
                    "DELETE FROM aggregate_rows WHERE stamp >= ?1 AND stamp < ?2 AND grp IN
                         (SELECT id FROM aggregate_groups WHERE keep_seconds = ?3)",
                )?
                .execute(params![through, cutoff, keep_seconds])?;
            transaction
                .prepare_cached("UPDATE aggregate_pruned SET through = ?2 WHERE keep_seconds = ?1")?
                .execute(params![keep_seconds, cutoff])?;
        }
        Ok(())
    }

    /// Writes every group of `writes` in one transaction, and deletes what aged out by `now`
    /// (every [`PRUNE_EVERY`] seconds of it); returns the values written.
    pub fn write(
        &mut self,
        writes: &[AggregateWrite<'_>],
        now: i64,
    ) -> Result<u64, AggregateStoreError> {
        if writes.iter().all(|write| write.rows.is_empty()) {
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
            let mut upsert = transaction.prepare_cached(
                "INSERT INTO aggregate_rows (stamp, grp, value_avg, value_max, value_min)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (stamp, grp) DO UPDATE SET
                     value_avg = coalesce(excluded.value_avg, value_avg),
                     value_max = coalesce(excluded.value_max, value_max),
                     value_min = coalesce(excluded.value_min, value_min)",
            )?;
            let mut written = 0;
            for write in writes {
                if write.rows.is_empty() {
                    continue;
                }
                let methods = write.rows.iter().fold(0, |bits, row| bits | row.methods());
                let keep = Some(write.keep_seconds);
                let (group, created) =
                    Self::known_in(known, &transaction, write.group, keep, methods)?;
                if created {
                    Self::register_retention(&transaction, registered, write.keep_seconds)?;
                } else {
                    if group.keep_seconds != keep {
                        Self::set_keep(&transaction, group, write.keep_seconds)?;
                    }
                    Self::add_methods(&transaction, group, methods)?;
                }
                // A value already older than its retention allows is one no read can show,
                // and one the prune has passed (it deletes from where it got to): not kept.
                let oldest_kept = now.saturating_sub(write.keep_seconds);
                for row in write.rows {
                    let values = row.values.iter().flatten().count();
                    if row.timestamp < oldest_kept || values == 0 {
                        continue;
                    }
                    let [avg, max, min] = row.values;
                    upsert.execute(params![row.timestamp, group.id, avg, max, min])?;
                    written += values as u64;
                }
            }
            drop(upsert);
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
                // The transaction rolled back: groups made and retentions set in it are gone.
                self.known.clear();
                self.retentions.clear();
                Err(error(source))
            }
        }
    }

    /// Every distinct time of the table, `i64::MAX` included (a half-open range up to it would
    /// leave a row stamped there out of a rename's or a delete's walk).
    fn every_stamp(connection: &Connection) -> rusqlite::Result<Vec<i64>> {
        connection
            .prepare_cached(&format!(
                "{STAMPS_WITHIN} SELECT stamp FROM stamps WHERE stamp <= ?3"
            ))?
            // ?1 is not used (the CTE's times are ?2 and ?3).
            .query_map(params![0, i64::MIN, i64::MAX], |row| row.get(0))?
            .collect()
    }

    /// Whether the store can hold anything yet (a read of a store never written makes none).
    fn exists(&self) -> bool {
        self.connection.is_some() || self.path.exists()
    }

    /// The retention the values of `group` were written with; `None` when the store has never
    /// held the group or was never given one for it (converted from the first layout).
    pub fn retention_of(&mut self, group: &SeriesKey) -> Result<Option<i64>, AggregateStoreError> {
        if !self.exists() {
            return Ok(None);
        }
        Ok(self.find(group, 0)?.and_then(|group| group.keep_seconds))
    }

    /// The values of `method` in `group` stamped in `[from, until)`, in time order; `None` when
    /// the store has never held that method of the group.
    pub fn read(
        &mut self,
        group: &SeriesKey,
        method: AggregateMethod,
        from: i64,
        until: i64,
    ) -> Result<Option<Vec<Point>>, AggregateStoreError> {
        if !self.exists() {
            return Ok(None);
        }
        let Some(found) = self.find(group, method.bit())? else {
            return Ok(None);
        };
        if found.methods & method.bit() == 0 {
            return Ok(None);
        }
        let error = self.error("read");
        let column = method.column();
        let points = self
            .connection()?
            .prepare_cached(&format!(
                "{STAMPS_WITHIN} SELECT rows.stamp, rows.{column}
                 FROM stamps CROSS JOIN aggregate_rows AS rows
                     ON rows.stamp = stamps.stamp AND rows.grp = ?1
                 WHERE stamps.stamp < ?3 AND rows.{column} IS NOT NULL ORDER BY rows.stamp"
            ))
            .and_then(|mut read| {
                read.query_map(params![found.id, from, until], |row| {
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

    /// Moves the values of `method` from the group `from` to the group `to`, merged with what
    /// `to` holds (`from`'s winning at equal times); returns how many were moved.
    pub fn rename(
        &mut self,
        from: &SeriesKey,
        to: &SeriesKey,
        method: AggregateMethod,
    ) -> Result<u64, AggregateStoreError> {
        // Onto itself nothing moves (and the move's clearing would take every value).
        if from == to || !self.exists() {
            return Ok(0);
        }
        let Some(old) = self.find(from, 0)? else {
            return Ok(0);
        };
        let error = self.error("rename");
        let connection = self.connection.as_mut().expect("opened by find");
        let known = &mut self.known;
        let column = method.column();
        let mut apply = || -> rusqlite::Result<u64> {
            // Immediate: the write lock taken first, waiting on the busy timeout. Deferred, the
            // reads first would hold a snapshot that cannot become a write once another
            // shard's connection has committed: SQLITE_BUSY at once, no wait.
            let transaction =
                connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            // A target no retention was given yet (a name the rules do not cover) keeps the
            // values with the retention they had: read and aged out as before.
            let (target, _) = Self::known_in(known, &transaction, to, None, 0)?;
            if let (None, Some(keep_seconds)) = (target.keep_seconds, old.keep_seconds) {
                Self::set_keep(&transaction, target, keep_seconds)?;
            }
            let target_id = target.id;
            let mut moved = 0;
            for stamp in Self::every_stamp(&transaction)? {
                // `WHERE` before `ON CONFLICT`: SQLite's rule for an upsert from a select.
                moved += transaction
                    .prepare_cached(&format!(
                        "INSERT INTO aggregate_rows (stamp, grp, {column})
                         SELECT stamp, ?3, {column} FROM aggregate_rows
                         WHERE stamp = ?1 AND grp = ?2 AND {column} IS NOT NULL
                         ON CONFLICT (stamp, grp) DO UPDATE SET {column} = excluded.{column}"
                    ))?
                    .execute(params![stamp, old.id, target_id])?;
                transaction
                    .prepare_cached(&format!(
                        "UPDATE aggregate_rows SET {column} = NULL WHERE stamp = ?1 AND grp = ?2"
                    ))?
                    .execute(params![stamp, old.id])?;
                transaction
                    .prepare_cached(DELETE_IF_EMPTY)?
                    .execute(params![stamp, old.id])?;
            }
            if moved > 0 {
                let target = known.get_mut(to).expect("known_in keeps it");
                Self::add_methods(&transaction, target, method.bit())?;
                // The moved values may lie below what the new group's retention has pruned.
                if let Some(keep_seconds) = target.keep_seconds {
                    transaction
                        .prepare_cached(
                            "UPDATE aggregate_pruned SET through = ?2 WHERE keep_seconds = ?1",
                        )?
                        .execute(params![keep_seconds, i64::MIN])?;
                }
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

    /// Deletes the values of `host`'s groups: all of them, or those of one method of one group
    /// (`(service, metric, method)`, the group's names); returns how many were deleted.
    pub fn delete(
        &mut self,
        host: &str,
        only: Option<(&str, &str, AggregateMethod)>,
    ) -> Result<u64, AggregateStoreError> {
        if !self.exists() {
            return Ok(0);
        }
        let error = self.error("delete");
        let connection = self.connection()?;
        let mut apply = || -> rusqlite::Result<u64> {
            // Immediate, as in `rename`: it reads before it deletes.
            let transaction =
                connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let ids: Vec<i64> = match only {
                Some((service, metric, _)) => transaction
                    .prepare_cached(
                        "SELECT id FROM aggregate_groups \
                         WHERE host = ?1 AND service = ?2 AND metric = ?3",
                    )?
                    .query_map(params![host, service, metric], |row| row.get(0))?
                    .collect::<rusqlite::Result<_>>()?,
                None => transaction
                    .prepare_cached("SELECT id FROM aggregate_groups WHERE host = ?1")?
                    .query_map(params![host], |row| row.get(0))?
                    .collect::<rusqlite::Result<_>>()?,
            };
            let mut deleted = 0;
            if ids.is_empty() {
                return Ok(0);
            }
            let stamps = Self::every_stamp(&transaction)?;
            match only {
                Some((_, _, method)) => {
                    let column = method.column();
                    let mut clear = transaction.prepare_cached(&format!(
                        "UPDATE aggregate_rows SET {column} = NULL
                         WHERE stamp = ?1 AND grp = ?2 AND {column} IS NOT NULL"
                    ))?;
                    let mut delete_if_empty = transaction.prepare_cached(DELETE_IF_EMPTY)?;
                    for stamp in stamps {
                        for &id in &ids {
                            deleted += clear.execute(params![stamp, id])? as u64;
                            delete_if_empty.execute(params![stamp, id])?;
                        }
                    }
                }
                None => {
                    let mut delete = transaction.prepare_cached(
                        "DELETE FROM aggregate_rows WHERE stamp = ?1 AND grp = ?2
                         RETURNING (value_avg IS NOT NULL) + (value_max IS NOT NULL)
                             + (value_min IS NOT NULL)",
                    )?;
                    for stamp in stamps {
                        for &id in &ids {
                            let values: Option<i64> = delete
                                .query_row(params![stamp, id], |row| row.get(0))
                                .optional()?;
                            deleted += values.unwrap_or(0) as u64;
                        }
                    }
                }
            }
            transaction.commit()?;
            Ok(deleted)
        };
        apply().map_err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AggregateMethod::{Avg, Max, Min};

    /// The node's naming, for conversions: `http/H/avg` is the method `avg` of `http/H`.
    fn group_of(service: &str) -> Option<(String, AggregateMethod)> {
        let (group, method) = service.rsplit_once('/')?;
        let method = match method {
            "avg" => Avg,
            "max" => Max,
            "min" => Min,
            _ => return None,
        };
        Some((group.to_owned(), method))
    }

    fn store(path: &Path) -> AggregateStore {
        AggregateStore::new(path, group_of)
    }

    fn points(values: &[(i64, f64)]) -> Vec<Point> {
        values
            .iter()
            .map(|&(timestamp, value)| Point { timestamp, value })
            .collect()
    }

    fn rows(method: AggregateMethod, values: &[(i64, f64)]) -> Vec<AggregateRow> {
        values
            .iter()
            .map(|&(timestamp, value)| {
                let mut row = AggregateRow {
                    timestamp,
                    values: [None; 3],
                };
                row.values[method.index()] = Some(value);
                row
            })
            .collect()
    }

    fn write(
        store: &mut AggregateStore,
        group: &SeriesKey,
        method: AggregateMethod,
        values: &[(i64, f64)],
        keep: i64,
        now: i64,
    ) {
        let rows = rows(method, values);
        let written = store
            .write(
                &[AggregateWrite {
                    group,
                    rows: &rows,
                    keep_seconds: keep,
                }],
                now,
            )
            .unwrap();
        assert_eq!(written, values.len() as u64);
    }

    fn read(store: &mut AggregateStore, group: &SeriesKey, method: AggregateMethod) -> Vec<Point> {
        store.read(group, method, 0, i64::MAX).unwrap().unwrap()
    }

    fn rows_in(path: &Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("SELECT count(*) FROM aggregate_rows", [], |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn values_are_written_replaced_aged_out_renamed_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aggregates.sqlite");
        let mut writer = store(&path);
        let mut reader = store(&path);
        let hourly = SeriesKey::new("web", "http/H", "time");
        let daily = SeriesKey::new("web", "http/D", "time");
        assert_eq!(reader.read(&hourly, Avg, 0, i64::MAX).unwrap(), None);
        assert!(!path.exists(), "a read makes no database");

        let first = rows(Avg, &[(3_600, 1.0), (7_200, 2.0)]);
        let day = rows(Avg, &[(86_400, 5.0)]);
        let written = writer
            .write(
                &[
                    AggregateWrite {
                        group: &hourly,
                        rows: &first,
                        keep_seconds: 7_200,
                    },
                    AggregateWrite {
                        group: &daily,
                        rows: &day,
                        keep_seconds: 86_400 * 7,
                    },
                ],
                7_200,
            )
            .unwrap();
        assert_eq!(written, 3);
        let first = points(&[(3_600, 1.0), (7_200, 2.0)]);
        assert_eq!(read(&mut reader, &hourly, Avg), first);
        assert_eq!(read(&mut reader, &daily, Avg), points(&[(86_400, 5.0)]));
        assert_eq!(
            reader.read(&hourly, Max, 0, i64::MAX).unwrap(),
            None,
            "a method never written is not held"
        );
        assert_eq!(
            reader.read(&hourly, Avg, 3_601, 7_200).unwrap(),
            Some(vec![])
        );
        assert_eq!(
            reader.read(&hourly, Avg, 3_600, 7_201).unwrap(),
            Some(first.clone())
        );

        // A correction replaces; values older than now minus the retention go.
        write(
            &mut writer,
            &hourly,
            Avg,
            &[(7_200, 2.5), (14_400, 4.0)],
            7_200,
            14_400,
        );
        assert_eq!(
            read(&mut reader, &hourly, Avg),
            points(&[(7_200, 2.5), (14_400, 4.0)])
        );
        assert_eq!(read(&mut reader, &daily, Avg), points(&[(86_400, 5.0)]));

        // Renamed onto a group that holds a value at one of the same times: ours wins.
        let renamed = SeriesKey::new("web-01", "http/H", "time");
        write(
            &mut writer,
            &renamed,
            Avg,
            &[(14_400, 9.0), (18_000, 8.0)],
            7_200,
            14_400,
        );
        assert_eq!(reader.rename(&hourly, &renamed, Avg).unwrap(), 2);
        assert_eq!(read(&mut reader, &hourly, Avg), vec![]);
        assert_eq!(
            read(&mut reader, &renamed, Avg),
            points(&[(7_200, 2.5), (14_400, 4.0), (18_000, 8.0)])
        );
        // The writer's cached ids stay right: it writes the old name again, then the new.
        write(&mut writer, &hourly, Avg, &[(21_600, 6.0)], 7_200, 14_400);
        assert_eq!(read(&mut reader, &hourly, Avg), points(&[(21_600, 6.0)]));

        assert_eq!(
            reader.delete("web", Some(("http/D", "time", Avg))).unwrap(),
            1
        );
        assert_eq!(read(&mut reader, &daily, Avg), vec![]);
        assert_eq!(reader.delete("web-01", None).unwrap(), 3);
        assert_eq!(read(&mut reader, &renamed, Avg), vec![]);
        assert_eq!(read(&mut reader, &hourly, Avg), points(&[(21_600, 6.0)]));
    }

    #[test]
    fn the_methods_of_a_group_share_a_row_and_each_is_written_renamed_and_deleted_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aggregates.sqlite");
        let mut writer = store(&path);
        let mut reader = store(&path);
        let group = SeriesKey::new("db", "disk/H", "used");
        let both = [
            AggregateRow {
                timestamp: 3_600,
                values: [Some(2.0), Some(3.0), None],
            },
            AggregateRow {
                timestamp: 7_200,
                values: [Some(4.0), Some(5.0), None],
            },
        ];
        let written = writer
            .write(
                &[AggregateWrite {
                    group: &group,
                    rows: &both,
                    keep_seconds: 86_400,
                }],
                7_200,
            )
            .unwrap();
        assert_eq!(written, 4);
        assert_eq!(rows_in(&path), 2, "one row per period");
        // The reader learns of a method added after it first saw the group.
        assert_eq!(reader.read(&group, Min, 0, i64::MAX).unwrap(), None);
        write(&mut writer, &group, Min, &[(3_600, 1.0)], 86_400, 7_200);
        assert_eq!(rows_in(&path), 2);
        assert_eq!(read(&mut reader, &group, Min), points(&[(3_600, 1.0)]));
        assert_eq!(
            read(&mut reader, &group, Avg),
            points(&[(3_600, 2.0), (7_200, 4.0)]),
            "a write of one method keeps the others"
        );
        assert_eq!(
            read(&mut reader, &group, Max),
            points(&[(3_600, 3.0), (7_200, 5.0)])
        );

        // One method renamed: the others stay under the old name.
        let moved = SeriesKey::new("db-01", "disk/H", "used");
        assert_eq!(reader.rename(&group, &moved, Max).unwrap(), 2);
        assert_eq!(
            read(&mut reader, &moved, Max),
            points(&[(3_600, 3.0), (7_200, 5.0)])
        );
        assert_eq!(reader.read(&moved, Avg, 0, i64::MAX).unwrap(), None);
        assert_eq!(read(&mut reader, &group, Max), vec![]);
        assert_eq!(
            read(&mut reader, &group, Avg),
            points(&[(3_600, 2.0), (7_200, 4.0)])
        );
        assert_eq!(rows_in(&path), 4);
        assert_eq!(
            store(&path).retention_of(&moved).unwrap(),
            Some(86_400),
            "the moved values keep their retention"
        );

        // One method deleted; a row goes once none of its methods holds a value.
        assert_eq!(
            reader.delete("db", Some(("disk/H", "used", Avg))).unwrap(),
            2
        );
        assert_eq!(read(&mut reader, &group, Avg), vec![]);
        assert_eq!(read(&mut reader, &group, Min), points(&[(3_600, 1.0)]));
        assert_eq!(rows_in(&path), 3, "7200 of db held only avg then");
        assert_eq!(reader.delete("db", None).unwrap(), 1);
        assert_eq!(reader.delete("db-01", None).unwrap(), 2);
        assert_eq!(rows_in(&path), 0);
    }

    #[test]
    fn a_value_older_than_its_retention_is_not_written_whatever_the_order_of_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aggregates.sqlite");
        let mut store = store(&path);
        let group = SeriesKey::new("web", "http/H", "time");
        let now = 100 * 3_600;
        let keep = 10 * 3_600;
        // History copied newest day first (as `adopt` may): the prune has passed the older
        // values by the time they come, so they must not be left behind in the table.
        let newest = rows(Avg, &[(now - 3_600, 2.0), (now, 3.0)]);
        let older = rows(Avg, &[(now - 50 * 3_600, 0.5), (now - keep, 1.0)]);
        for (rows, expected) in [(&newest, 2), (&older, 1)] {
            let written = store
                .write(
                    &[AggregateWrite {
                        group: &group,
                        rows,
                        keep_seconds: keep,
                    }],
                    now,
                )
                .unwrap();
            assert_eq!(written, expected);
        }
        assert_eq!(rows_in(&path), 3);
        assert_eq!(
            read(&mut store, &group, Avg),
            points(&[(now - keep, 1.0), (now - 3_600, 2.0), (now, 3.0)])
        );
    }

    #[test]
    fn a_group_another_connection_made_is_written_under_its_id_with_this_retention() {
        // Each shard has its own connection: a group new to one may be in the store already.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aggregates.sqlite");
        let mut first = store(&path);
        let mut second = store(&path);
        let hourly = SeriesKey::new("web", "http/H", "time");
        let other = SeriesKey::new("web", "http/D", "time");
        write(&mut first, &hourly, Avg, &[(3_600, 1.0)], 7_200, 7_200);
        write(&mut second, &other, Avg, &[(3_600, 9.0)], 86_400, 7_200);
        // Same retention: the row is found and left as it is.
        write(&mut second, &hourly, Avg, &[(7_200, 2.0)], 7_200, 7_200);
        assert_eq!(
            read(&mut first, &hourly, Avg),
            points(&[(3_600, 1.0), (7_200, 2.0)])
        );
        assert_eq!(second.retention_of(&hourly).unwrap(), Some(7_200));
        // Another retention: the row takes it, and the values age out by it.
        write(&mut second, &hourly, Avg, &[(10_800, 3.0)], 3_600, 10_800);
        assert_eq!(store(&path).retention_of(&hourly).unwrap(), Some(3_600));
        write(&mut second, &hourly, Avg, &[(14_400, 4.0)], 3_600, 14_400);
        assert_eq!(
            read(&mut first, &hourly, Avg),
            points(&[(10_800, 3.0), (14_400, 4.0)])
        );
        assert_eq!(read(&mut first, &other, Avg), points(&[(3_600, 9.0)]));
        assert_eq!(rows_in(&path), 3);
    }

    #[test]
    fn values_at_the_ends_of_time_are_renamed_and_deleted_with_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aggregates.sqlite");
        let mut store = store(&path);
        let hourly = SeriesKey::new("web", "http/H", "time");
        let renamed = SeriesKey::new("web-01", "http/H", "time");
        let ends = [(i64::MIN, 1.0), (0, 2.0), (i64::MAX, 3.0)];
        write(&mut store, &hourly, Avg, &ends, i64::MAX, i64::MIN);
        assert_eq!(rows_in(&path), 3);
        assert_eq!(store.rename(&hourly, &renamed, Avg).unwrap(), 3);
        assert_eq!(
            store.delete("web", None).unwrap(),
            0,
            "nothing left under the old group"
        );
        assert_eq!(store.delete("web-01", None).unwrap(), 3);
        assert_eq!(rows_in(&path), 0);
    }

    #[test]
    fn a_group_renamed_onto_itself_keeps_its_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aggregates.sqlite");
        let mut store = store(&path);
        let group = SeriesKey::new("web", "http/H", "time");
        write(
            &mut store,
            &group,
            Avg,
            &[(3_600, 1.0), (7_200, 2.0)],
            7_200,
            7_200,
        );
        assert_eq!(store.rename(&group, &group.clone(), Avg).unwrap(), 0);
        assert_eq!(
            read(&mut store, &group, Avg),
            points(&[(3_600, 1.0), (7_200, 2.0)])
        );
    }

    #[test]
    fn a_delete_waits_for_another_connections_write_rather_than_failing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aggregates.sqlite");
        let mut store = store(&path);
        let group = SeriesKey::new("web", "http/H", "time");
        write(&mut store, &group, Avg, &[(3_600, 1.0)], 7_200, 3_600);
        // Another shard's connection in the middle of its write, committing a moment later.
        let other = Connection::open(&path).unwrap();
        other
            .execute_batch(
                "BEGIN IMMEDIATE;
                 INSERT INTO aggregate_rows (stamp, grp, value_avg) VALUES (7200, 999, 0.0);",
            )
            .unwrap();
        let committer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            other.execute_batch("COMMIT").unwrap();
        });
        assert_eq!(store.delete("web", None).unwrap(), 1);
        committer.join().unwrap();
        assert_eq!(read(&mut store, &group, Avg), vec![]);
        assert_eq!(rows_in(&path), 1, "the other connection's value stays");
    }

    #[test]
    fn each_group_keeps_its_own_retention_and_ages_out_at_most_a_prune_period_late() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aggregates.sqlite");
        let mut store = store(&path);
        let hours = SeriesKey::new("db", "disk/H", "used");
        let days = SeriesKey::new("db", "disk/D", "used");
        let hour_values: Vec<(i64, f64)> = (0..48).map(|h| (h * 3_600, h as f64)).collect();
        let day_values: Vec<(i64, f64)> = (0..2).map(|d| (d * 86_400, d as f64)).collect();
        write(&mut store, &hours, Max, &hour_values, 10 * 3_600, 0);
        write(&mut store, &days, Max, &day_values, 7 * 86_400, 0);
        let now = 48 * 3_600;
        // Within PRUNE_EVERY of the last prune: nothing goes yet.
        write(
            &mut store,
            &hours,
            Max,
            &[(now, 48.0)],
            10 * 3_600,
            PRUNE_EVERY - 1,
        );
        assert_eq!(read(&mut store, &hours, Max).len(), 49);
        // Then everything older than now minus its own group's retention.
        write(&mut store, &hours, Max, &[(now, 48.5)], 10 * 3_600, now);
        let kept = read(&mut store, &hours, Max);
        assert_eq!(kept.first().map(|p| p.timestamp), Some(now - 10 * 3_600));
        assert_eq!(kept.len(), 11);
        assert_eq!(
            kept.last(),
            Some(&Point {
                timestamp: now,
                value: 48.5
            })
        );
        assert_eq!(read(&mut store, &days, Max), points(&day_values));
        // A raised retention keeps more from then on; a later prune goes on from where the
        // last one stopped.
        write(
            &mut store,
            &hours,
            Max,
            &[(now + 3_600, 49.0)],
            20 * 3_600,
            now + 3_600,
        );
        assert_eq!(read(&mut store, &hours, Max).len(), 12);
        write(
            &mut store,
            &days,
            Max,
            &[(2 * 86_400, 2.0)],
            7 * 86_400,
            8 * 86_400,
        );
        assert_eq!(
            read(&mut store, &days, Max),
            points(&[(86_400, 1.0), (2 * 86_400, 2.0)])
        );
        assert_eq!(read(&mut store, &hours, Max), vec![]);
    }

    fn tables(path: &Path) -> Vec<String> {
        Connection::open(path)
            .unwrap()
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// A store made by `sql` (an earlier layout), in a new temporary directory.
    fn earlier_store(sql: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aggregates.sqlite");
        Connection::open(&path).unwrap().execute_batch(sql).unwrap();
        (dir, path)
    }

    #[test]
    fn a_store_of_the_first_layout_is_converted_and_its_values_age_out_once_written_again() {
        let (_dir, path) = earlier_store(
            "CREATE TABLE aggregate_series (
                 id INTEGER PRIMARY KEY, host TEXT NOT NULL, service TEXT NOT NULL,
                 metric TEXT NOT NULL, UNIQUE (host, service, metric));
             CREATE TABLE aggregate_values (
                 series INTEGER NOT NULL, stamp INTEGER NOT NULL, value REAL NOT NULL,
                 PRIMARY KEY (series, stamp)) WITHOUT ROWID;
             INSERT INTO aggregate_series VALUES (7, 'web', 'http/H/avg', 'time');
             INSERT INTO aggregate_values VALUES (7, 3600, 1.0), (7, 7200, 2.0), (7, 10800, 3.0);",
        );
        let group = SeriesKey::new("web", "http/H", "time");
        let mut reader = store(&path);
        assert_eq!(
            read(&mut reader, &group, Avg),
            points(&[(3_600, 1.0), (7_200, 2.0), (10_800, 3.0)])
        );
        let mut writer = store(&path);
        write(&mut writer, &group, Avg, &[(14_400, 4.0)], 7_200, 14_400);
        assert_eq!(
            read(&mut reader, &group, Avg),
            points(&[(7_200, 2.0), (10_800, 3.0), (14_400, 4.0)])
        );
        assert_eq!(
            tables(&path),
            ["aggregate_groups", "aggregate_pruned", "aggregate_rows"]
        );
    }

    #[test]
    fn a_store_of_a_row_per_value_is_converted_to_a_row_per_group_and_period() {
        let (_dir, path) = earlier_store(
            "CREATE TABLE aggregate_series (
                 id INTEGER PRIMARY KEY, host TEXT NOT NULL, service TEXT NOT NULL,
                 metric TEXT NOT NULL, keep_seconds INTEGER, UNIQUE (host, service, metric));
             CREATE INDEX aggregate_series_by_keep ON aggregate_series (keep_seconds);
             CREATE TABLE aggregate_points (
                 stamp INTEGER NOT NULL, series INTEGER NOT NULL, value REAL NOT NULL,
                 PRIMARY KEY (stamp, series)) WITHOUT ROWID;
             CREATE TABLE aggregate_pruned (
                 keep_seconds INTEGER PRIMARY KEY, through INTEGER NOT NULL);
             INSERT INTO aggregate_series VALUES
                 (1, 'web', 'http/H/avg', 'time', 7200),
                 (2, 'web', 'http/H/min', 'time', 7200),
                 (3, 'web', 'http/D/avg', 'time', 691200),
                 (4, 'web', 'not an aggregate', 'time', 7200);
             INSERT INTO aggregate_points VALUES
                 (3600, 1, 1.5), (3600, 2, 0.5), (7200, 1, 2.5), (0, 3, 9.0), (3600, 4, 1.0);
             INSERT INTO aggregate_pruned VALUES (7200, 0), (691200, -86400);
             PRAGMA user_version = 2;",
        );
        let mut converted = store(&path);
        let hourly = SeriesKey::new("web", "http/H", "time");
        let daily = SeriesKey::new("web", "http/D", "time");
        assert_eq!(
            read(&mut converted, &hourly, Avg),
            points(&[(3_600, 1.5), (7_200, 2.5)])
        );
        assert_eq!(read(&mut converted, &hourly, Min), points(&[(3_600, 0.5)]));
        assert_eq!(converted.read(&hourly, Max, 0, i64::MAX).unwrap(), None);
        assert_eq!(read(&mut converted, &daily, Avg), points(&[(0, 9.0)]));
        assert_eq!(converted.retention_of(&hourly).unwrap(), Some(7_200));
        assert_eq!(converted.retention_of(&daily).unwrap(), Some(691_200));
        assert_eq!(rows_in(&path), 3, "one row per group and period");
        assert_eq!(
            tables(&path),
            ["aggregate_groups", "aggregate_pruned", "aggregate_rows"]
        );
    }
}
