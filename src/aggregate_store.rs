//! Aggregate series of file backends kept in the aggregate store
//! (`<data_dir>/aggregates.sqlite`, [`perfpipe_sqlite::aggregates`]) instead of a file each.
//!
//! [`WithAggregateStore`] wraps a Whisper or RRD backend: series that are rollup aggregates under
//! the configured rules (`host::service/H/avg::metric` and the like, whose rule matches the base
//! series) are written to, read from, renamed in and deleted from the store; every other series
//! goes to the wrapped backend untouched. Reads answer exactly what Whisper answered when each
//! aggregate had its own file (one archive of 15-minute slots covering the rule's retention,
//! see [`AGGREGATE_STEP`]), so the query APIs, the Graphite API and the graph page see no
//! difference; the retention is kept by the store, which deletes the values older than the
//! clock minus the retention (those no read can show) as it writes.
//!
//! Why: as files, a closed hour of 300,000 series with avg, max and min is 900,000 file
//! updates, each an open, a header read and a page written: rollups then cost a quarter more
//! CPU per posted point at 5-minute checks, the aggregates as much as the raw points
//! (`docs/performance.md`). As rows they are a few microseconds each, in one transaction per
//! flush.
//!
//! When several file backends are configured, only the first writes aggregates to the store
//! (they would all write the same rows); the others skip them, and all read them from it.
//! Deleting an aggregate series deletes its rows at once: unlike files, they do not go through
//! the trash.

use std::sync::Arc;

// hashbrown's map (foldhash): these maps are looked up once per aggregate batch written.
use hashbrown::HashMap;

use perfpipe_backend::{
    Backend, BackendError, Name, RangeQuery, SeriesBatch, SeriesKey, SeriesRange, SeriesRename,
    WriteReport,
};
use perfpipe_sqlite::aggregates::{
    AggregateMethod, AggregateRow, AggregateStore, AggregateStoreError, AggregateWrite,
};

use crate::rollup::{AggregateService, Level, Method, RollupRules};

/// Seconds between the slots an aggregate series is read in: every time zone's hours and
/// midnights fall on a multiple of 15 minutes, so each slot holds one period's value at its
/// exact start.
pub const AGGREGATE_STEP: i64 = 900;

/// How long an aggregate series keeps its values, in seconds (a multiple of
/// [`AGGREGATE_STEP`]), `None` for a series that is not an aggregate under `rules`: the rule's
/// retention of that level, plus the period being closed (a period's value is written when it
/// ends, one period after its stamp) and an hour for a day that DST makes longer.
pub fn aggregate_retention(rules: &RollupRules, key: &SeriesKey) -> Option<i64> {
    let aggregate = crate::rollup::parse_aggregate_service(&key.service)?;
    let (_, rule) = rules.rule_for(&key.host, aggregate.base, &key.metric)?;
    let retention = rule.retention();
    let (kept, period) = match aggregate.level {
        Level::Hour => (retention.hours, 3_600),
        Level::Day => (retention.days, 86_400 + 3_600),
        Level::Week => (retention.weeks, 7 * 86_400 + 3_600),
        Level::Month => (retention.months, 31 * 86_400 + 3_600),
    };
    let seconds = (i64::from(kept) + 1) * period;
    Some((seconds + AGGREGATE_STEP - 1) / AGGREGATE_STEP * AGGREGATE_STEP)
}

/// The store's group and method of an aggregate series' service: `http/H/avg` is the method
/// `avg` of the group `http/H`, `http/H/max/weekend` the method `max` of `http/H/weekend` (host
/// and metric are the group's); `None` for any other service. A group's service never is an
/// aggregate's: its last part is a level or `weekend`, not a method.
pub fn group_of(service: &str) -> Option<(String, AggregateMethod)> {
    let aggregate = crate::rollup::parse_aggregate_service(service)?;
    Some((
        group_service(&aggregate).into(),
        store_method(aggregate.method),
    ))
}

/// The parts of an aggregate's group service after its base: `/H`, or `/H/weekend`.
fn group_suffix(aggregate: &AggregateService<'_>) -> [&'static str; 3] {
    let weekend = if aggregate.weekend { "/weekend" } else { "" };
    ["/", aggregate.level.code(), weekend]
}

/// The service of `aggregate`'s group, built in place (inline up to 24 bytes: a flush makes
/// one for each group it writes).
fn group_service(aggregate: &AggregateService<'_>) -> Name {
    let suffix = group_suffix(aggregate);
    let mut service = Name::with_capacity(aggregate.base.len() + 10);
    service.push_str(aggregate.base);
    for part in suffix {
        service.push_str(part);
    }
    service
}

/// Whether `group` is the group of the aggregate series `key`, whose service says `aggregate`.
fn is_group_of(group: &SeriesKey, key: &SeriesKey, aggregate: &AggregateService<'_>) -> bool {
    if group.host != key.host || group.metric != key.metric {
        return false;
    }
    let Some(mut rest) = group.service.strip_prefix(aggregate.base) else {
        return false;
    };
    for part in group_suffix(aggregate) {
        match rest.strip_prefix(part) {
            Some(after) => rest = after,
            None => return false,
        }
    }
    rest.is_empty()
}

fn store_method(method: Method) -> AggregateMethod {
    match method {
        Method::Avg => AggregateMethod::Avg,
        Method::Max => AggregateMethod::Max,
        Method::Min => AggregateMethod::Min,
    }
}

/// The group (as a key) and method in the store of the aggregate series `key`, whose service
/// says `aggregate`.
fn group_key(key: &SeriesKey, aggregate: &AggregateService<'_>) -> (SeriesKey, AggregateMethod) {
    let group = SeriesKey {
        host: key.host.clone(),
        service: group_service(aggregate),
        metric: key.metric.clone(),
    };
    (group, store_method(aggregate.method))
}

/// An aggregate series as the store holds it.
struct Held {
    /// Seconds its values are kept, as [`aggregate_retention`] says.
    retention: i64,
    group: SeriesKey,
    method: AggregateMethod,
}

/// The rows of one group that a write brings, merged from its methods' batches.
struct GroupRows {
    group: SeriesKey,
    keep_seconds: i64,
    /// Sorted by time, one per time.
    rows: Vec<AggregateRow>,
}

impl GroupRows {
    /// Adds a method's points (sorted by time, one per time) to the rows.
    fn add(&mut self, method: AggregateMethod, points: &[perfpipe_backend::Point]) {
        let column = method.index();
        for point in points {
            match self
                .rows
                .binary_search_by_key(&point.timestamp, |row| row.timestamp)
            {
                Ok(at) => self.rows[at].values[column] = Some(point.value),
                Err(at) => {
                    let mut row = AggregateRow {
                        timestamp: point.timestamp,
                        values: [None; 3],
                    };
                    row.values[column] = Some(point.value);
                    self.rows.insert(at, row);
                }
            }
        }
    }
}

/// A file backend whose aggregate series live in the aggregate store.
pub struct WithAggregateStore {
    inner: Box<dyn Backend>,
    store: AggregateStore,
    rules: Arc<RollupRules>,
    /// Whether this backend writes aggregates (the first file backend) or skips them.
    writes_aggregates: bool,
    /// Each aggregate group seen: its retention under the rules, `None` when no rule covers
    /// it. Kept by group rather than by aggregate series: the methods of a group share it, and
    /// a third of the entries is a third of the lookups that miss the processor's cache.
    retention: HashMap<SeriesKey, Option<i64>>,
    /// "Now" of [`Backend::read`] (the system clock but in tests).
    clock: Box<dyn Fn() -> i64 + Send>,
}

impl WithAggregateStore {
    pub fn new(
        inner: Box<dyn Backend>,
        store: AggregateStore,
        rules: Arc<RollupRules>,
        writes_aggregates: bool,
    ) -> Self {
        WithAggregateStore {
            inner,
            store,
            rules,
            writes_aggregates,
            retention: HashMap::new(),
            clock: Box::new(perfpipe_backend::unix_now),
        }
    }

    /// Replaces the clock of [`Backend::read`] (for tests; give the wrapped backend the same).
    pub fn with_clock(mut self, clock: impl Fn() -> i64 + Send + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// `key`, whose service says `aggregate`, as an aggregate of the rules: its retention, its
    /// group and method in the store; `None` when no rule covers its base series.
    fn aggregate_of(&mut self, key: &SeriesKey, aggregate: &AggregateService<'_>) -> Option<Held> {
        let (group, method) = group_key(key, aggregate);
        Some(Held {
            retention: self.retention_under_rules(&group, key)?,
            group,
            method,
        })
    }

    /// The retention the rules give the aggregate series `key` of `group`, looked up once per
    /// group; `None` when no rule covers its base series.
    fn retention_under_rules(&mut self, group: &SeriesKey, key: &SeriesKey) -> Option<i64> {
        match self.retention.get(group) {
            Some(&retention) => retention,
            None => {
                let retention = aggregate_retention(&self.rules, key);
                self.retention.insert(group.clone(), retention);
                retention
            }
        }
    }

    /// [`Self::aggregate_of`] for reads and renames, which also find an aggregate the rules no
    /// longer cover: one renamed to a host or service outside every `[[rollups]]` match keeps
    /// its values here, with the retention they were written with.
    fn held(&mut self, key: &SeriesKey) -> Result<Option<Held>, BackendError> {
        let Some(aggregate) = crate::rollup::parse_aggregate_service(&key.service) else {
            return Ok(None);
        };
        let (group, method) = group_key(key, &aggregate);
        let retention = match self.retention_under_rules(&group, key) {
            Some(retention) => Some(retention),
            None => self
                .store
                .retention_of(&group)
                .map_err(|error| self.store_failed(error))?,
        };
        Ok(retention.map(|retention| Held {
            retention,
            group,
            method,
        }))
    }

    fn store_failed(&self, error: AggregateStoreError) -> BackendError {
        const ENOSPC: i32 = 28;
        if error.is_disk_full() {
            BackendError::Io {
                context: error.to_string(),
                source: std::io::Error::from_raw_os_error(ENOSPC),
            }
        } else {
            BackendError::Store(error.to_string())
        }
    }
}

impl Backend for WithAggregateStore {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn write(&mut self, batches: &[SeriesBatch]) -> Result<WriteReport, BackendError> {
        let mut groups: Vec<GroupRows> = Vec::new();
        let mut aggregate_values = 0;
        let mut raw = Vec::with_capacity(batches.len());
        for (index, batch) in batches.iter().enumerate() {
            let Some(aggregate) = crate::rollup::parse_aggregate_service(&batch.key.service) else {
                raw.push(index);
                continue;
            };
            // The enqueuer puts the methods of one group side by side: the second and third are
            // told by their names, without building the group's key or looking up its retention.
            if let Some(rows) = groups
                .last_mut()
                .filter(|rows| is_group_of(&rows.group, &batch.key, &aggregate))
            {
                aggregate_values += batch.points.len() as u64;
                rows.add(store_method(aggregate.method), &batch.points);
                continue;
            }
            let Some(Held {
                retention: keep_seconds,
                group,
                method,
            }) = self.aggregate_of(&batch.key, &aggregate)
            else {
                raw.push(index);
                continue;
            };
            aggregate_values += batch.points.len() as u64;
            if !self.writes_aggregates {
                continue;
            }
            // The enqueuer puts the aggregates of one base series side by side: its group is
            // among the last few (a dozen at most: four levels, two variants); one further
            // back, if ever, is only written twice.
            let recent = groups.len().saturating_sub(8);
            let at = match groups[recent..].iter().position(|rows| rows.group == group) {
                Some(at) => recent + at,
                None => {
                    groups.push(GroupRows {
                        group,
                        keep_seconds,
                        rows: Vec::new(),
                    });
                    groups.len() - 1
                }
            };
            groups[at].add(method, &batch.points);
        }
        // Aggregates first: a full disk fails the call before the wrapped backend wrote
        // anything, so that the retry writes nothing twice.
        let aggregates_written = if groups.is_empty() {
            aggregate_values
        } else {
            let writes: Vec<AggregateWrite<'_>> = groups
                .iter()
                .map(|rows| AggregateWrite {
                    group: &rows.group,
                    rows: &rows.rows,
                    keep_seconds: rows.keep_seconds,
                })
                .collect();
            self.store
                .write(&writes, (self.clock)())
                .map_err(|error| self.store_failed(error))?
        };
        let mut report = if raw.is_empty() {
            WriteReport::default()
        } else if raw.iter().enumerate().all(|(at, &index)| at == index) {
            // The raw batches come first (the enqueuer puts aggregates last): no copy needed.
            self.inner.write(&batches[..raw.len()])?
        } else {
            let raw: Vec<SeriesBatch> = raw.iter().map(|&index| batches[index].clone()).collect();
            self.inner.write(&raw)?
        };
        report.written += aggregates_written;
        Ok(report)
    }

    fn read(&mut self, key: &SeriesKey, range: &RangeQuery) -> Result<SeriesRange, BackendError> {
        if self.held(key)?.is_none() {
            return self.inner.read(key, range);
        }
        let now = (self.clock)();
        self.read_as_of(key, range, now)
    }

    /// For an aggregate, what Whisper answers for a file of one archive of
    /// [`AGGREGATE_STEP`] slots over the series' retention (`range.step` and consolidation
    /// chose nothing there either).
    fn read_as_of(
        &mut self,
        key: &SeriesKey,
        range: &RangeQuery,
        now: i64,
    ) -> Result<SeriesRange, BackendError> {
        let Some(Held {
            retention,
            group,
            method,
        }) = self.held(key)?
        else {
            return self.inner.read_as_of(key, range, now);
        };
        if range.start > range.end {
            return Err(BackendError::Store(format!(
                "invalid time interval: from {} is after until {}",
                range.start, range.end
            )));
        }
        let oldest = now.saturating_sub(retention);
        let (from_interval, until_interval) = if range.start > now || range.end < oldest {
            (range.start, range.start)
        } else {
            let from = range.start.max(oldest);
            let until = range.end.min(now);
            perfpipe_whisper::format::fetch_interval(from, until, AGGREGATE_STEP)
        };
        let stored = self
            .store
            .read(&group, method, from_interval, until_interval)
            .map_err(|error| self.store_failed(error))?;
        // The file an earlier version wrote for the aggregate, if it is still there: its
        // values fill the slots the store has none for.
        let file = match self.inner.read_as_of(key, range, now) {
            Ok(file) => Some(file),
            Err(BackendError::NotFound(_)) => None,
            Err(error) => return Err(error),
        };
        if stored.is_none() && file.is_none() {
            return Err(BackendError::NotFound(key.clone()));
        }
        let slots = ((until_interval - from_interval) / AGGREGATE_STEP).max(0) as usize;
        let mut values = match file {
            Some(file)
                if file.start == from_interval
                    && i64::from(file.step) == AGGREGATE_STEP
                    && file.values.len() == slots =>
            {
                file.values
            }
            _ => vec![None; slots],
        };
        let stored = stored.unwrap_or_default();
        for point in stored {
            let slot = point.timestamp - point.timestamp.rem_euclid(AGGREGATE_STEP);
            if let Some(value) = usize::try_from((slot - from_interval) / AGGREGATE_STEP)
                .ok()
                .and_then(|index| values.get_mut(index))
            {
                *value = Some(point.value);
            }
        }
        Ok(SeriesRange {
            start: from_interval,
            step: AGGREGATE_STEP as u32,
            values,
        })
    }

    fn read_unwritten(&self, key: &SeriesKey, range: &RangeQuery, now: i64) -> Option<SeriesRange> {
        // Aggregates are never queued, so none is ever unwritten with points waiting.
        if aggregate_retention(&self.rules, key).is_some() {
            return None;
        }
        self.inner.read_unwritten(key, range, now)
    }

    fn forget(&mut self, host: &str, series: Option<(&str, &str)>) {
        self.inner.forget(host, series);
    }

    fn delete_held(
        &mut self,
        host: &str,
        series: Option<(&str, &str)>,
    ) -> Result<u64, BackendError> {
        // The store holds aggregates only: a base series' own deletion leaves it untouched.
        let only = match series {
            None => None,
            Some((service, metric)) => match group_of(service) {
                Some((group, method)) => Some((group, metric, method)),
                None => return self.inner.delete_held(host, series),
            },
        };
        let deleted = self
            .store
            .delete(
                host,
                only.as_ref()
                    .map(|(group, metric, method)| (group.as_str(), *metric, *method)),
            )
            .map_err(|error| self.store_failed(error))?;
        Ok(deleted + self.inner.delete_held(host, series)?)
    }

    fn rename_series(
        &mut self,
        from: &SeriesKey,
        to: &SeriesKey,
    ) -> Result<SeriesRename, BackendError> {
        let Some(Held {
            group: from_group,
            method,
            ..
        }) = self.held(from)?
        else {
            return self.inner.rename_series(from, to);
        };
        let to_group = match crate::rollup::parse_aggregate_service(&to.service)
            .map(|aggregate| group_key(to, &aggregate))
        {
            Some((to_group, to_method)) if to_method == method => to_group,
            _ => {
                return Ok(SeriesRename::Unsupported(format!(
                    "{to} is not the same aggregate of another series"
                )))
            }
        };
        let points = self
            .store
            .rename(&from_group, &to_group, method)
            .map_err(|error| self.store_failed(error))?;
        Ok(if points == 0 {
            SeriesRename::NothingHeld
        } else {
            SeriesRename::Moved { points }
        })
    }

    /// The wrapped backend's path, for aggregates too: where an earlier version kept an
    /// aggregate's file, which deletes and renames then move with the rows.
    fn stored_at(
        &self,
        host: &str,
        series: Option<(&str, &str)>,
    ) -> Result<Option<std::path::PathBuf>, BackendError> {
        self.inner.stored_at(host, series)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use perfpipe_backend::Consolidation;

    fn rules() -> Arc<RollupRules> {
        let rule =
            serde_json::from_value(serde_json::json!({"match": "web*", "retention": {"H": 30}}))
                .unwrap();
        Arc::new(RollupRules::new(vec![rule]).unwrap())
    }

    /// A Whisper backend giving aggregates files of their own, as the node did before the
    /// store: one archive of `AGGREGATE_STEP` slots over `aggregate_retention`.
    fn whisper_with_aggregate_files(
        dir: &std::path::Path,
        now: i64,
    ) -> perfpipe_whisper::WhisperBackend {
        let mut config = perfpipe_whisper::WhisperConfig::new(dir);
        let rules = rules();
        config.archives_by_series =
            Some(perfpipe_whisper::ArchivesBySeries(Arc::new(move |key| {
                let retention = aggregate_retention(&rules, key)?;
                perfpipe_whisper::parse_retentions(&format!("{AGGREGATE_STEP}s:{retention}s")).ok()
            })));
        perfpipe_whisper::WhisperBackend::new(config)
            .unwrap()
            .with_clock(move || now)
    }

    /// Whisper files under `dir/whisper_dir`, aggregates in `dir/aggregates.sqlite`.
    fn wrapped(
        dir: &std::path::Path,
        whisper_dir: &str,
        now: i64,
        writes: bool,
    ) -> WithAggregateStore {
        let whisper = perfpipe_whisper::WhisperBackend::new(perfpipe_whisper::WhisperConfig::new(
            dir.join(whisper_dir),
        ))
        .unwrap()
        .with_clock(move || now);
        WithAggregateStore::new(
            Box::new(whisper),
            AggregateStore::new(&dir.join("aggregates.sqlite"), group_of),
            rules(),
            writes,
        )
        .with_clock(move || now)
    }

    #[test]
    fn aggregates_read_as_their_own_whisper_files_did_and_raw_series_stay_files() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_717_408_800 + 40 * 3_600 + 1_234;
        let hourly = SeriesKey::new("web", "http/H/avg", "time");
        let daily = SeriesKey::new("web", "http/D/max/weekend", "time");
        let raw = SeriesKey::new("web", "http", "time");
        let not_rolled_up = SeriesKey::new("db", "disk/H/avg", "used");
        let hours: Vec<(i64, f64)> = (0..40)
            .map(|n| (1_717_408_800 + n * 3_600, n as f64 * 1.5))
            .collect();
        // Stamped on local midnights of a +05:30 zone: not on the hour grid.
        let days = [(1_717_353_000, 7.0), (1_717_439_400, 8.0)];
        let batches = vec![
            SeriesBatch::new(raw.clone(), "ms", &[(now - 120, 1.0), (now - 60, 2.0)]),
            SeriesBatch::new(not_rolled_up.clone(), "", &[(now - 60, 3.0)]),
            SeriesBatch::new(hourly.clone(), "ms", &hours),
            SeriesBatch::new(daily.clone(), "ms", &days),
        ];
        let mut files = whisper_with_aggregate_files(&dir.path().join("files"), now);
        let mut store = wrapped(dir.path(), "whisper", now, true);
        let mut second = wrapped(dir.path(), "second", now, false);
        // Whisper leaves out the 10 hours older than its retention, and so does the store
        // (those older than now minus the retention); the second wrapper counts the
        // aggregates as written without writing them.
        assert_eq!(files.write(&batches).unwrap().written, 35);
        assert_eq!(store.write(&batches).unwrap().written, 35);
        assert_eq!(second.write(&batches).unwrap().written, 45);

        let whisper = dir.path().join("whisper/web");
        assert!(whisper.join("http/time.wsp").exists());
        assert!(dir
            .path()
            .join("whisper/db/disk%2FH%2Favg/used.wsp")
            .exists());
        assert!(!whisper.join("http%2FH%2Favg").exists());
        assert!(!dir.path().join("second/web/http%2FH%2Favg").exists());

        for key in [&hourly, &daily, &raw, &not_rolled_up] {
            for (start, end) in [
                (now - 100 * 3_600, now),
                (now - 10 * 3_600, now - 3_600),
                (1_717_408_800, 1_717_408_800 + 3_600),
                (now - 3_600, now + 86_400),
                (now + 10, now + 20),
                (0, 100),
            ] {
                let range = RangeQuery {
                    start,
                    end,
                    step: None,
                    consolidation: Consolidation::Average,
                };
                let want = files.read_as_of(key, &range, now).unwrap();
                assert_eq!(
                    store.read_as_of(key, &range, now).unwrap(),
                    want,
                    "{key} {start}..{end}"
                );
                assert_eq!(
                    store.read(key, &range).unwrap(),
                    want,
                    "{key} {start}..{end}"
                );
                if key != &raw && key != &not_rolled_up {
                    // The backend that skipped aggregates reads them from the store too.
                    assert_eq!(second.read_as_of(key, &range, now).unwrap(), want, "{key}");
                }
            }
        }
        let range = RangeQuery {
            start: 0,
            end: now,
            step: None,
            consolidation: Consolidation::Average,
        };
        let missing = SeriesKey::new("web", "ftp/H/avg", "time");
        assert!(matches!(
            store.read(&missing, &range),
            Err(BackendError::NotFound(_))
        ));
        let no_file = store
            .stored_at("web", Some(("http/H/avg", "time")))
            .unwrap();
        assert!(!no_file.unwrap().exists());
        assert!(store
            .stored_at("web", Some(("http", "time")))
            .unwrap()
            .is_some());

        // An aggregate file an earlier version wrote: read, and filled in by the store.
        let legacy = SeriesKey::new("web", "http/H/min", "time");
        let mut earlier = whisper_with_aggregate_files(&dir.path().join("whisper"), now);
        let old_hours: Vec<(i64, f64)> = hours[..30].iter().map(|&(t, v)| (t, v + 100.0)).collect();
        earlier
            .write(&[SeriesBatch::new(legacy.clone(), "ms", &old_hours)])
            .unwrap();
        let file_only = store.read_as_of(&legacy, &range, now).unwrap();
        assert_eq!(file_only, earlier.read_as_of(&legacy, &range, now).unwrap());
        store
            .write(&[SeriesBatch::new(legacy.clone(), "ms", &hours[25..])])
            .unwrap();
        let merged = store.read_as_of(&legacy, &range, now).unwrap();
        let want: Vec<(i64, f64)> = old_hours[..25]
            .iter()
            .chain(&hours[25..])
            .copied()
            .collect();
        let got: Vec<(i64, f64)> = merged
            .values
            .iter()
            .enumerate()
            .filter_map(|(slot, value)| {
                Some((merged.start + slot as i64 * AGGREGATE_STEP, (*value)?))
            })
            .collect();
        let within: Vec<(i64, f64)> = want
            .into_iter()
            .filter(|&(t, _)| t >= merged.start)
            .collect();
        assert_eq!(got, within);
        assert!(store
            .stored_at("web", Some(("http/H/min", "time")))
            .unwrap()
            .unwrap()
            .exists());

        // Renamed: the values follow; deleted: they go, the raw file stays for the caller.
        let values = |backend: &mut WithAggregateStore, key| {
            let read = backend.read_as_of(key, &range, now).unwrap();
            read.values.into_iter().flatten().count()
        };
        let visible = values(&mut store, &hourly);
        assert_eq!(visible, 30, "the hours within the retention");
        let renamed = SeriesKey::new("web-01", "http/H/avg", "time");
        // 30 rows: the store aged out the hours older than now minus the retention.
        assert!(matches!(
            store.rename_series(&hourly, &renamed).unwrap(),
            SeriesRename::Moved { points: 30 }
        ));
        assert_eq!(values(&mut store, &renamed), visible);
        assert_eq!(values(&mut store, &hourly), 0);
        assert_eq!(store.delete_held("web", None).unwrap(), 2 + 15); // the day's 2, the H/min rows
        assert_eq!(values(&mut store, &daily), 0);
        let raw_file = store.stored_at("web", Some(("http", "time"))).unwrap();
        assert!(raw_file.unwrap().exists());
        let deleted = store.delete_held("web-01", Some(("http/H/avg", "time")));
        assert_eq!(deleted.unwrap(), 30);
        assert_eq!(values(&mut second, &renamed), 0);
    }

    #[test]
    fn methods_side_by_side_land_each_in_its_own_group() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_717_408_800 + 10 * 3_600;
        // Neighbours in a flush that differ from the one before in one part of the group only:
        // the level, the weekend variant, the metric, the host, a base that is a prefix of the
        // other's, a base holding a level's name; and a service outside the rules between.
        let keys = [
            ("web", "http/H/avg", "time"),
            ("web", "http/H/max", "time"),
            ("web", "http/H/min/weekend", "time"),
            ("web", "http/H/max/weekend", "time"),
            ("web", "http/D/max", "time"),
            ("web", "http/D/min", "time"),
            ("web", "http/D/min", "size"),
            ("web2", "http/D/avg", "size"),
            ("web2", "htt/D/avg", "size"),
            ("web2", "htt/H/D/avg", "size"),
            ("db", "htt/H/D/max", "size"),
            ("web2", "htt/H/D/min", "size"),
        ]
        .map(|(host, service, metric)| SeriesKey::new(host, service, metric));
        let batches: Vec<SeriesBatch> = keys
            .iter()
            .enumerate()
            .map(|(index, key)| {
                let values: Vec<(i64, f64)> = (0..5)
                    .map(|n| (1_717_408_800 + n * 3_600, (index * 100 + n as usize) as f64))
                    .collect();
                SeriesBatch::new(key.clone(), "ms", &values)
            })
            .collect();
        let mut files = whisper_with_aggregate_files(&dir.path().join("files"), now);
        let mut store = wrapped(dir.path(), "whisper", now, true);
        assert_eq!(
            store.write(&batches).unwrap().written,
            files.write(&batches).unwrap().written
        );
        let range = RangeQuery {
            start: now - 20 * 3_600,
            end: now,
            step: None,
            consolidation: Consolidation::Average,
        };
        for key in &keys {
            let want = files.read_as_of(key, &range, now).unwrap();
            assert!(want.values.iter().any(Option::is_some), "{key}");
            assert_eq!(store.read_as_of(key, &range, now).unwrap(), want, "{key}");
        }
    }

    #[test]
    fn an_aggregate_renamed_outside_the_rules_is_still_read_with_its_retention() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_717_408_800 + 40 * 3_600;
        let hourly = SeriesKey::new("web", "http/H/avg", "time");
        // "db" matches no [[rollups]] rule ("web*"): its names are not aggregates by the rules.
        let renamed = SeriesKey::new("db", "http/H/avg", "time");
        let hours: Vec<(i64, f64)> = (0..40).map(|n| (now - n * 3_600, n as f64)).collect();
        let mut store = wrapped(dir.path(), "whisper", now, true);
        let written = store
            .write(&[SeriesBatch::new(hourly.clone(), "ms", &hours)])
            .unwrap()
            .written;
        let range = RangeQuery {
            start: now - 100 * 3_600,
            end: now,
            step: None,
            consolidation: Consolidation::Average,
        };
        let before = store.read(&hourly, &range).unwrap();
        assert_eq!(before.values.iter().flatten().count(), 31, "within 30 h");

        let moved = store.rename_series(&hourly, &renamed).unwrap();
        assert_eq!(moved, SeriesRename::Moved { points: written });
        assert_eq!(store.read(&renamed, &range).unwrap(), before);
        assert!(matches!(
            store
                .read(&hourly, &range)
                .map(|got| got.values.iter().flatten().count()),
            Ok(0)
        ));
        // A fresh wrapper (a restart) finds it too, and the values keep aging out.
        let mut later = wrapped(dir.path(), "whisper", now + 10 * 3_600, true);
        let after = later.read(&renamed, &range).unwrap();
        assert_eq!(after.values.iter().flatten().count(), 21);
    }

    #[test]
    fn reads_at_the_ends_of_time_answer_without_overflowing() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_717_408_800;
        let mut store = wrapped(dir.path(), "whisper", now, true);
        let hourly = SeriesKey::new("web", "http/H/avg", "time");
        let raw = SeriesKey::new("web", "http", "time");
        store
            .write(&[
                SeriesBatch::new(hourly.clone(), "ms", &[(now - 3_600, 1.5)]),
                SeriesBatch::new(raw.clone(), "ms", &[(now - 60, 2.5)]),
            ])
            .unwrap();
        let range = |start, end| RangeQuery {
            start,
            end,
            step: None,
            consolidation: Consolidation::Average,
        };
        let everything = store
            .read_as_of(&hourly, &range(i64::MIN, i64::MAX), now)
            .unwrap();
        assert!(everything.values.contains(&Some(1.5)));
        for key in [&hourly, &raw] {
            // Raw: Whisper answers from its coarsest archive for a start that far back.
            assert!(store
                .read_as_of(key, &range(i64::MIN, i64::MAX), now)
                .is_ok());
            // Times a query may name (Graphite's take any i64): an answer or a refusal.
            for (start, end, at) in [(0, i64::MAX, i64::MAX), (i64::MIN, 0, i64::MIN)] {
                let _ = store.read_as_of(key, &range(start, end), at);
            }
        }
    }
}
