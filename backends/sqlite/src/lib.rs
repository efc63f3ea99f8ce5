//! The series catalogue: one SQLite row per series a node has stored, with its unit,
//! data-source type, first and last time seen, last value and the warning and critical
//! thresholds in force at that value. It answers the listing APIs (hosts,
//! a host's services and metrics, search) and replaces Opsview's per-metric `uom` files.
//!
//! Guarantees: the database runs in WAL mode, so readers (queries from the HTTP API, other
//! processes) never block the writer; [`Catalogue::record`] applies a whole flush in one
//! transaction, so a crash leaves either all or none of it; a series' `first_seen` only moves
//! back, `last_seen` only forward, and `last_value` is the value at `last_seen`. Deleting marks
//! rows (`deleted_at`) instead of removing them, and a later write of the series revives it.
//! An update may allow its row to lag ([`SeriesUpdate::may_lag`]: the node's rollup aggregates,
//! a value an hour each): it is then written only once its newest time is that far past the
//! one this connection last wrote to the row, so the row's `last_seen` and `last_value` trail
//! the series by less than that; [`Catalogue::write_lagging_rows_again`] ends the lag after
//! another connection changed rows (a deletion, a rename).
//! The schema version is kept in `PRAGMA user_version`; opening a newer database is refused,
//! an older one is brought up to date (version 1 had no thresholds: `warn` and `crit` are added
//! empty). Thresholds are kept as text in the canonical Nagios form `[@]start:end` (`~` for an
//! infinite start, nothing for an infinite end), which [`format_range`] writes and
//! [`parse_range`] reads back exactly.
//!
//! One [`Catalogue`] is one connection: it is `Send` but not shared between threads; open one
//! per thread (SQLite serialises the writers).

pub mod aggregates;

use std::borrow::Cow;
use std::path::Path;

use perfpipe_backend::{DataSourceType, SeriesBatch, SeriesKey, ThresholdRange};
use rusqlite::{params, Connection, OptionalExtension};

/// The schema this code writes and reads.
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE series (
    id          INTEGER PRIMARY KEY,
    host        TEXT NOT NULL,
    service     TEXT NOT NULL,
    metric      TEXT NOT NULL,
    uom         TEXT NOT NULL,
    ds_type     TEXT NOT NULL CHECK (ds_type IN ('GAUGE', 'COUNTER')),
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    last_value  REAL,
    deleted_at  INTEGER,
    warn        TEXT,
    crit        TEXT,
    UNIQUE (host, service, metric)
);
";

/// An index on `metric` that catalogues made before 2026-12-04 carry: no query uses it (search
/// scans), and every new row paid for it (2.0 µs an insert without, 2.5 with). Dropped when a
/// connection finds it and can (best effort); the schema version stays, as older code never
/// needed it either.
const UNUSED_METRIC_INDEX: &str = "series_by_metric";

/// From version 1: the thresholds.
const MIGRATE_1_TO_2: &str = "
ALTER TABLE series ADD COLUMN warn TEXT;
ALTER TABLE series ADD COLUMN crit TEXT;
";

/// A threshold in the canonical Nagios form: `0:10`, `~:5`, `20:`, `@10:20`.
pub fn format_range(range: &ThresholdRange) -> String {
    let start = if range.start == f64::NEG_INFINITY {
        "~".to_owned()
    } else {
        range.start.to_string()
    };
    let end = if range.end == f64::INFINITY {
        String::new()
    } else {
        range.end.to_string()
    };
    let at = if range.inside { "@" } else { "" };
    format!("{at}{start}:{end}")
}

/// Reads back what [`format_range`] wrote; `None` for any other text.
pub fn parse_range(text: &str) -> Option<ThresholdRange> {
    let (inside, rest) = match text.strip_prefix('@') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (start, end) = rest.split_once(':')?;
    let start = match start {
        "~" => f64::NEG_INFINITY,
        number => number.parse().ok().filter(|n: &f64| n.is_finite())?,
    };
    let end = match end {
        "" => f64::INFINITY,
        number => number.parse().ok().filter(|n: &f64| n.is_finite())?,
    };
    Some(ThresholdRange { start, end, inside })
}

/// Why the catalogue could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    /// SQLite failed; the context names the database and the operation.
    #[error("catalogue {context}: {source}")]
    Sqlite {
        /// What was being done.
        context: String,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The database was written by a newer perfpipe.
    #[error("catalogue {path}: schema version {found} is newer than this perfpipe's {supported}")]
    NewerSchema {
        /// The database file.
        path: String,
        /// Its schema version.
        found: i64,
        /// The newest this code knows.
        supported: i64,
    },
}

trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, CatalogueError>;
}

impl<T> Context<T> for Result<T, rusqlite::Error> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, CatalogueError> {
        self.map_err(|source| CatalogueError::Sqlite {
            context: what(),
            source,
        })
    }
}

/// What one flush learned about one series. The names are borrowed from the flush's batch
/// where there is one ([`SeriesUpdate::from_batch`]): a flush updates every series it wrote,
/// and copying each one's names for that was four allocations a series.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesUpdate<'a> {
    /// The series.
    pub key: Cow<'a, SeriesKey>,
    /// Its unit, as perfdata gave it.
    pub uom: Cow<'a, str>,
    /// How its values are stored.
    pub ds_type: DataSourceType,
    /// Oldest timestamp in the flush.
    pub first_seen: i64,
    /// Newest timestamp in the flush.
    pub last_seen: i64,
    /// The value at `last_seen`.
    pub last_value: f64,
    /// The warning threshold in force at `last_seen`.
    pub warn: Option<ThresholdRange>,
    /// The critical threshold in force at `last_seen`.
    pub crit: Option<ThresholdRange>,
    /// Seconds of data time the series' row may trail it: when this connection wrote the row
    /// last through a `last_seen` less than this before this update's, the update is not
    /// written. 0 (every update written) but for the rollup aggregates, whose rows would
    /// otherwise cost a row update for each value (docs/architecture.md, "Rollups").
    pub may_lag: i64,
}

impl<'a> SeriesUpdate<'a> {
    /// What a written batch tells the catalogue; `None` for a batch without points.
    pub fn from_batch(batch: &'a SeriesBatch) -> Option<SeriesUpdate<'a>> {
        let (first, last) = (batch.points.first()?, batch.points.last()?);
        let levels = batch
            .points_with_levels()
            .last()
            .and_then(|(_, l)| l.copied());
        Some(SeriesUpdate {
            key: Cow::Borrowed(&batch.key),
            uom: Cow::Borrowed(&batch.uom),
            ds_type: batch.ds_type,
            first_seen: first.timestamp,
            last_seen: last.timestamp,
            last_value: last.value,
            warn: levels.and_then(|levels| levels.warn),
            crit: levels.and_then(|levels| levels.crit),
            may_lag: 0,
        })
    }
}

/// A series as the catalogue knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesInfo {
    /// The series.
    pub key: SeriesKey,
    /// Its unit.
    pub uom: String,
    /// How its values are stored.
    pub ds_type: DataSourceType,
    /// Oldest timestamp stored.
    pub first_seen: i64,
    /// Newest timestamp stored.
    pub last_seen: i64,
    /// The value at `last_seen`.
    pub last_value: Option<f64>,
    /// The warning threshold in force at `last_seen`, when perfdata gave one.
    pub warn: Option<ThresholdRange>,
    /// The critical threshold in force at `last_seen`, when perfdata gave one.
    pub crit: Option<ThresholdRange>,
}

/// A host and how many live series it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSummary {
    /// The host.
    pub host: String,
    /// Live (not deleted) series of the host.
    pub series: u64,
    /// Newest timestamp over its series.
    pub last_seen: i64,
}

/// The insert of a whole series row, `?1` to `?10` (names, unit, type, first and last seen,
/// last value, thresholds): what a new row and the upsert of one that may be there share.
macro_rules! insert_series {
    () => {
        "INSERT INTO series
            (host, service, metric, uom, ds_type, first_seen, last_seen, last_value, warn, crit)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    };
}

/// `?1` to `?10` of the statements that write a whole row (the update by id, the insert, the
/// upsert, [`insert_series!`]): an update's fields, its type and thresholds as text.
struct RowFields<'u> {
    update: &'u SeriesUpdate<'u>,
    names: [&'u str; 3],
    ds_type: &'static str,
    warn: Option<String>,
    crit: Option<String>,
}

impl<'u> RowFields<'u> {
    fn of(update: &'u SeriesUpdate<'u>) -> RowFields<'u> {
        RowFields {
            update,
            names: [
                update.key.host.as_str(),
                update.key.service.as_str(),
                update.key.metric.as_str(),
            ],
            ds_type: ds_type_name(update.ds_type),
            warn: update.warn.as_ref().map(format_range),
            crit: update.crit.as_ref().map(format_range),
        }
    }

    fn params(&self) -> [&dyn rusqlite::ToSql; 10] {
        [
            &self.names[0],
            &self.names[1],
            &self.names[2],
            &self.update.uom,
            &self.ds_type,
            &self.update.first_seen,
            &self.update.last_seen,
            &self.update.last_value,
            &self.warn,
            &self.crit,
        ]
    }
}

/// A connection to the catalogue database.
pub struct Catalogue {
    connection: Connection,
    path: String,
    /// The row id of each series this connection has recorded, by a hash of its key: a later
    /// flush updates the row by id (an integer B-tree seek) rather than looking the three names
    /// up in the name index. Rows can go (a rename) and ids be reused, so the update also
    /// checks the names and falls back to the upsert when they differ; so does a collision.
    row_ids: hashbrown::HashMap<u64, RecordedRow>,
    hasher: hashbrown::DefaultHashBuilder,
}

/// A row this connection has written.
#[derive(Debug, Clone, Copy)]
struct RecordedRow {
    id: i64,
    /// The newest `last_seen` this connection wrote to it; `i64::MIN` once another connection
    /// may have changed it, so that the next update writes it whatever its
    /// [`SeriesUpdate::may_lag`].
    written_through: i64,
}

fn ds_type_name(ds_type: DataSourceType) -> &'static str {
    match ds_type {
        DataSourceType::Gauge => "GAUGE",
        DataSourceType::Counter => "COUNTER",
    }
}

fn ds_type_from(name: &str) -> DataSourceType {
    // The CHECK constraint admits only these two.
    if name == "COUNTER" {
        DataSourceType::Counter
    } else {
        DataSourceType::Gauge
    }
}

/// The smallest string greater than every string that starts with `prefix`, for index range
/// scans (`column >= prefix AND column < upper`). `None` when no such bound is needed.
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    // U+10FFFF is the largest char; SQLite's BINARY collation compares UTF-8 bytes, and no
    // valid UTF-8 sequence starts with a byte above 0xF4.
    (!prefix.is_empty()).then(|| format!("{prefix}\u{10FFFF}\u{10FFFF}"))
}

impl Catalogue {
    /// Opens (creating if needed) the catalogue at `path`, in WAL mode.
    pub fn open(path: &Path) -> Result<Catalogue, CatalogueError> {
        let shown = path.display().to_string();
        let connection = Connection::open(path).context(|| format!("{shown}: open"))?;
        Catalogue::init(connection, shown)
    }

    /// An in-memory catalogue (tests, `ingest` dry runs).
    pub fn in_memory() -> Result<Catalogue, CatalogueError> {
        let connection = Connection::open_in_memory().context(|| "in memory: open".into())?;
        Catalogue::init(connection, ":memory:".into())
    }

    fn init(mut connection: Connection, path: String) -> Result<Catalogue, CatalogueError> {
        let at = |what: &str| format!("{path}: {what}");
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .context(|| at("enable WAL"))?;
        connection
            .pragma_update(None, "synchronous", "NORMAL")
            .context(|| at("set synchronous"))?;
        connection
            .busy_timeout(std::time::Duration::from_secs(5))
            .context(|| at("set busy timeout"))?;
        // A flush upserts a row per series, in hash order, each a walk down the name index and
        // the table: with SQLite's default 2 MB page cache a catalogue of a few hundred
        // thousand series is read again from the OS a page at a time. Up to 64 MiB of pages per
        // connection (taken only as read): flushes of 30,000 into 300,000 series 1.3-1.5× faster
        // (`cargo bench -p perfpipe-sqlite --bench upsert`). Memory-mapping the file as well
        // gained a little more, but turns an I/O error into SIGBUS: not done.
        connection
            .pragma_update(None, "cache_size", -65_536)
            .context(|| at("set cache size"))?;
        let version: i64 = connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .context(|| at("read schema version"))?;
        if version > SCHEMA_VERSION {
            return Err(CatalogueError::NewerSchema {
                path,
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version < SCHEMA_VERSION {
            // Created or brought up to date under the write lock, the version read again
            // inside: of two processes opening an old file at once, one does it.
            let transaction = connection
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .context(|| at("lock for the schema"))?;
            let version: i64 = transaction
                .pragma_query_value(None, "user_version", |row| row.get(0))
                .context(|| at("read schema version"))?;
            if version == 0 {
                transaction
                    .execute_batch(SCHEMA)
                    .context(|| at("create schema"))?;
            } else if version == 1 {
                transaction
                    .execute_batch(MIGRATE_1_TO_2)
                    .context(|| at("add the thresholds"))?;
            }
            if version < SCHEMA_VERSION {
                transaction
                    .pragma_update(None, "user_version", SCHEMA_VERSION)
                    .context(|| at("write schema version"))?;
            }
            transaction.commit().context(|| at("commit the schema"))?;
        }
        let unused_index: i64 = connection
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = ?1",
                [UNUSED_METRIC_INDEX],
                |row| row.get(0),
            )
            .context(|| at("look for the unused index"))?;
        if unused_index > 0 {
            // Best effort: a connection that cannot write now (another process holding the
            // lock past the busy timeout, a file opened read-only) leaves it to a later one;
            // the index costs inserts, never answers.
            let _ =
                connection.execute_batch(&format!("DROP INDEX IF EXISTS {UNUSED_METRIC_INDEX}"));
        }
        Ok(Catalogue {
            connection,
            path,
            row_ids: hashbrown::HashMap::new(),
            hasher: hashbrown::DefaultHashBuilder::default(),
        })
    }

    fn at(&self, what: &str) -> String {
        format!("{}: {what}", self.path)
    }

    /// Records one flush: every series in `updates`, in one transaction.
    pub fn record(&mut self, updates: &[SeriesUpdate<'_>]) -> Result<(), CatalogueError> {
        use std::hash::BuildHasher;
        let path = self.path.clone();
        let transaction = self
            .connection
            .transaction()
            .context(|| format!("{path}: begin"))?;
        let row_ids = &mut self.row_ids;
        let mut apply = || -> Result<(), CatalogueError> {
            let mut update_by_id = transaction
                .prepare_cached(
                    "UPDATE series SET
                        uom = ?4,
                        ds_type = ?5,
                        first_seen = min(first_seen, ?6),
                        last_value = CASE WHEN ?7 >= last_seen THEN ?8 ELSE last_value END,
                        warn = CASE WHEN ?7 >= last_seen THEN ?9 ELSE warn END,
                        crit = CASE WHEN ?7 >= last_seen THEN ?10 ELSE crit END,
                        last_seen = max(last_seen, ?7),
                        deleted_at = NULL
                     WHERE id = ?11 AND host = ?1 AND service = ?2 AND metric = ?3",
                )
                .context(|| format!("{path}: prepare update"))?;
            // A series new to the catalogue: inserted when no row has its names (its id is the
            // new rowid), else upserted (a row another connection or an earlier process made).
            // `RETURNING` on every insert cost a new row 4.1 µs rather than 2.5 (an ephemeral
            // table per statement; `cargo bench -p perfpipe-sqlite --bench upsert`): only the
            // upsert of a row that was there pays it now.
            let mut insert = transaction
                .prepare_cached(concat!(
                    insert_series!(),
                    " ON CONFLICT (host, service, metric) DO NOTHING"
                ))
                .context(|| format!("{path}: prepare insert"))?;
            let mut upsert = transaction
                .prepare_cached(concat!(
                    insert_series!(),
                    " ON CONFLICT (host, service, metric) DO UPDATE SET
                        uom = excluded.uom,
                        ds_type = excluded.ds_type,
                        first_seen = min(first_seen, excluded.first_seen),
                        last_value = CASE WHEN excluded.last_seen >= last_seen
                                          THEN excluded.last_value ELSE last_value END,
                        warn = CASE WHEN excluded.last_seen >= last_seen
                                    THEN excluded.warn ELSE warn END,
                        crit = CASE WHEN excluded.last_seen >= last_seen
                                    THEN excluded.crit ELSE crit END,
                        last_seen = max(last_seen, excluded.last_seen),
                        deleted_at = NULL
                     RETURNING id"
                ))
                .context(|| format!("{path}: prepare upsert"))?;
            // The series this connection has no row id for, recorded after the others in the
            // flush's order. (In name order each insert would land beside the previous one in
            // the name index, 1.9 µs a new row instead of 2.4; but the rows' ids would then
            // follow the names, and every later flush, which comes in the order of the first,
            // updates its rows by id 1.3 µs each instead of 0.9.)
            let mut unknown: Vec<(&SeriesUpdate<'_>, u64)> = Vec::new();
            for update in updates {
                let key = &update.key;
                let hash = self.hasher.hash_one(key);
                let Some(row) = row_ids.get_mut(&hash) else {
                    unknown.push((update, hash));
                    continue;
                };
                if update.may_lag > 0
                    && update.last_seen < row.written_through.saturating_add(update.may_lag)
                {
                    continue;
                }
                let fields = RowFields::of(update);
                let with_id = fields
                    .params()
                    .into_iter()
                    .chain([&row.id as &dyn rusqlite::ToSql]);
                let updated = update_by_id
                    .execute(rusqlite::params_from_iter(with_id))
                    .context(|| format!("{path}: record {key}"))?;
                if updated == 1 {
                    row.written_through = row.written_through.max(update.last_seen);
                } else {
                    // The row went (a rename) or the hash is another series': by name.
                    unknown.push((update, hash));
                }
            }
            for (update, hash) in unknown {
                let key = &update.key;
                let fields = RowFields::of(update);
                let fields = fields.params();
                let inserted = insert
                    .execute(&fields[..])
                    .context(|| format!("{path}: record {key}"))?;
                let id: i64 = if inserted == 1 {
                    transaction.last_insert_rowid()
                } else {
                    upsert
                        .query_row(&fields[..], |row| row.get(0))
                        .context(|| format!("{path}: record {key}"))?
                };
                row_ids.insert(
                    hash,
                    RecordedRow {
                        id,
                        written_through: update.last_seen,
                    },
                );
            }
            Ok(())
        };
        let applied = apply();
        let committed =
            applied.and_then(|()| transaction.commit().context(|| format!("{path}: commit")));
        if committed.is_err() {
            // Rolled back: ids of rows made in it may be taken by others later.
            self.row_ids.clear();
        }
        committed
    }

    /// Makes the next update of every row this connection wrote go to the database, whatever
    /// its [`SeriesUpdate::may_lag`]: for after another connection deleted or renamed rows,
    /// which an update skipped as lagging would otherwise leave as they are for that long.
    pub fn write_lagging_rows_again(&mut self) {
        for row in self.row_ids.values_mut() {
            row.written_through = i64::MIN;
        }
    }

    /// Hosts with live series, by name; only those starting with `prefix` when it is not empty.
    pub fn hosts(&self, prefix: &str) -> Result<Vec<HostSummary>, CatalogueError> {
        let upper = prefix_upper_bound(prefix);
        let mut statement = self
            .connection
            .prepare_cached(
                "SELECT host, count(*), max(last_seen) FROM series
                 WHERE deleted_at IS NULL AND host >= ?1 AND (?2 IS NULL OR host < ?2)
                 GROUP BY host ORDER BY host",
            )
            .context(|| self.at("prepare hosts"))?;
        let rows = statement
            .query_map(params![prefix, upper], |row| {
                Ok(HostSummary {
                    host: row.get(0)?,
                    series: row.get(1)?,
                    last_seen: row.get(2)?,
                })
            })
            .context(|| self.at("list hosts"))?;
        rows.collect::<Result<_, _>>()
            .context(|| self.at("list hosts"))
    }

    /// The live services of `host`, by name.
    pub fn services(&self, host: &str) -> Result<Vec<String>, CatalogueError> {
        let mut statement = self
            .connection
            .prepare_cached(
                "SELECT DISTINCT service FROM series
                 WHERE host = ?1 AND deleted_at IS NULL ORDER BY service",
            )
            .context(|| self.at("prepare services"))?;
        let rows = statement
            .query_map([host], |row| row.get(0))
            .context(|| self.at("list services"))?;
        rows.collect::<Result<_, _>>()
            .context(|| self.at("list services"))
    }

    /// The live series of `host`, by service and metric.
    pub fn metrics(&self, host: &str) -> Result<Vec<SeriesInfo>, CatalogueError> {
        self.select(
            "WHERE host = ?1 AND deleted_at IS NULL ORDER BY service, metric",
            params![host],
        )
    }

    /// One series, if the catalogue knows it and it is not deleted.
    pub fn series(&self, key: &SeriesKey) -> Result<Option<SeriesInfo>, CatalogueError> {
        Ok(self
            .select(
                "WHERE host = ?1 AND service = ?2 AND metric = ?3 AND deleted_at IS NULL",
                params![key.host.as_str(), key.service.as_str(), key.metric.as_str()],
            )?
            .pop())
    }

    /// Whether `key` is a live series of the catalogue. Rows this connection recorded are
    /// known without a query (one deleted by another connection since is taken as still there
    /// until this one records it again).
    pub fn has_series(&self, key: &SeriesKey) -> Result<bool, CatalogueError> {
        use std::hash::BuildHasher;
        if self.row_ids.contains_key(&self.hasher.hash_one(key)) {
            return Ok(true);
        }
        Ok(self.series(key)?.is_some())
    }

    /// Live series whose host, service or metric contains `text` (case-sensitive), at most
    /// `limit`, by host, service and metric.
    pub fn search(&self, text: &str, limit: u32) -> Result<Vec<SeriesInfo>, CatalogueError> {
        self.select(
            "WHERE deleted_at IS NULL
               AND (instr(host, ?1) > 0 OR instr(service, ?1) > 0 OR instr(metric, ?1) > 0)
             ORDER BY host, service, metric LIMIT ?2",
            params![text, limit],
        )
    }

    /// Every live series, by host, service and metric (the listings of the Opsview graph API
    /// filter these).
    pub fn all(&self) -> Result<Vec<SeriesInfo>, CatalogueError> {
        self.select(
            "WHERE deleted_at IS NULL ORDER BY host, service, metric",
            params![],
        )
    }

    /// Live series last seen before `before` (epoch seconds), least recently seen first.
    pub fn stale(&self, before: i64) -> Result<Vec<SeriesInfo>, CatalogueError> {
        self.select(
            "WHERE deleted_at IS NULL AND last_seen < ?1 ORDER BY last_seen, host, service, metric",
            params![before],
        )
    }

    fn select(
        &self,
        condition: &str,
        parameters: impl rusqlite::Params,
    ) -> Result<Vec<SeriesInfo>, CatalogueError> {
        let sql = format!(
            "SELECT host, service, metric, uom, ds_type, first_seen, last_seen, last_value,
                    warn, crit
             FROM series {condition}"
        );
        let mut statement = self
            .connection
            .prepare_cached(&sql)
            .context(|| self.at("prepare series query"))?;
        let rows = statement
            .query_map(parameters, |row| {
                Ok(SeriesInfo {
                    key: SeriesKey {
                        host: row.get::<_, String>(0)?.into(),
                        service: row.get::<_, String>(1)?.into(),
                        metric: row.get::<_, String>(2)?.into(),
                    },
                    uom: row.get(3)?,
                    ds_type: ds_type_from(&row.get::<_, String>(4)?),
                    first_seen: row.get(5)?,
                    last_seen: row.get(6)?,
                    last_value: row.get(7)?,
                    warn: row
                        .get::<_, Option<String>>(8)?
                        .as_deref()
                        .and_then(parse_range),
                    crit: row
                        .get::<_, Option<String>>(9)?
                        .as_deref()
                        .and_then(parse_range),
                })
            })
            .context(|| self.at("query series"))?;
        rows.collect::<Result<_, _>>()
            .context(|| self.at("query series"))
    }

    /// Marks a series deleted at `now`. Returns whether a live series was marked.
    pub fn delete_series(&mut self, key: &SeriesKey, now: i64) -> Result<bool, CatalogueError> {
        let changed = self
            .connection
            .execute(
                "UPDATE series SET deleted_at = ?4
                 WHERE host = ?1 AND service = ?2 AND metric = ?3 AND deleted_at IS NULL",
                params![
                    key.host.as_str(),
                    key.service.as_str(),
                    key.metric.as_str(),
                    now
                ],
            )
            .context(|| self.at(&format!("delete {key}")))?;
        Ok(changed > 0)
    }

    /// Marks every series of `host` deleted at `now`. Returns how many were marked.
    pub fn delete_host(&mut self, host: &str, now: i64) -> Result<u64, CatalogueError> {
        let changed = self
            .connection
            .execute(
                "UPDATE series SET deleted_at = ?2 WHERE host = ?1 AND deleted_at IS NULL",
                params![host, now],
            )
            .context(|| self.at(&format!("delete host {host:?}")))?;
        Ok(changed as u64)
    }

    /// Gives the live series `from` the name `to`. When `to` is already known the two rows
    /// become one: the earlier first sighting, the later last sighting with its value, live.
    /// Returns whether `from` was a live series.
    pub fn rename_series(
        &mut self,
        from: &SeriesKey,
        to: &SeriesKey,
    ) -> Result<bool, CatalogueError> {
        let at = self.at(&format!("rename {from} to {to}"));
        let transaction = self.connection.transaction().context(|| at.clone())?;
        let moved = transaction
            .execute(
                "INSERT INTO series (host, service, metric, uom, ds_type, first_seen, last_seen,
                                     last_value, deleted_at, warn, crit)
                 SELECT ?4, ?5, ?6, uom, ds_type, first_seen, last_seen, last_value, NULL,
                        warn, crit
                 FROM series
                 WHERE host = ?1 AND service = ?2 AND metric = ?3 AND deleted_at IS NULL
                 ON CONFLICT (host, service, metric) DO UPDATE SET
                     first_seen = CASE WHEN deleted_at IS NULL
                                       THEN min(first_seen, excluded.first_seen)
                                       ELSE excluded.first_seen END,
                     last_value = CASE WHEN deleted_at IS NULL AND last_seen >= excluded.last_seen
                                       THEN last_value ELSE excluded.last_value END,
                     warn = CASE WHEN deleted_at IS NULL AND last_seen >= excluded.last_seen
                                 THEN warn ELSE excluded.warn END,
                     crit = CASE WHEN deleted_at IS NULL AND last_seen >= excluded.last_seen
                                 THEN crit ELSE excluded.crit END,
                     last_seen = CASE WHEN deleted_at IS NULL
                                      THEN max(last_seen, excluded.last_seen)
                                      ELSE excluded.last_seen END,
                     deleted_at = NULL",
                params![
                    from.host.as_str(),
                    from.service.as_str(),
                    from.metric.as_str(),
                    to.host.as_str(),
                    to.service.as_str(),
                    to.metric.as_str()
                ],
            )
            .context(|| at.clone())?;
        transaction
            .execute(
                "DELETE FROM series WHERE host = ?1 AND service = ?2 AND metric = ?3",
                params![
                    from.host.as_str(),
                    from.service.as_str(),
                    from.metric.as_str()
                ],
            )
            .context(|| at.clone())?;
        transaction.commit().context(|| at.clone())?;
        Ok(moved > 0)
    }

    /// Whether the database is in WAL mode (for tests and `/status`).
    pub fn journal_mode(&self) -> Result<String, CatalogueError> {
        self.connection
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .optional()
            .context(|| self.at("read journal mode"))
            .map(Option::unwrap_or_default)
    }
}
