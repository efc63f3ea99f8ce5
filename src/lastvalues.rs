//! The last-values cache: the newest values of every series, in memory, for expressions and
//! dynamic thresholds (bischeck's "last status cache").
//!
//! Owns, per series, its values in time order and the purge rule that bounds them: by count
//! (`maxcount`, default 500) or by age (`offset` periods of `period` = H, D, W or Y), exclusive
//! per rule; the first `[[last_values]]` rule whose glob matches `host/service/metric` applies.
//! The writers record every flushed batch ([`LastValues::record`]); readers look values up by
//! index (newest first), by nearest time and by time span without copying the series.
//! Guarantees: values of a series are in strictly increasing time order (a second value for one
//! timestamp replaces the first, as the stores do); the cache survives a restart through
//! [`LastValues::save`] / [`LastValues::load`]. A save (every minute) appends to a journal beside
//! the snapshot only the values recorded since the last save, each series' record with its
//! length and CRC-32, synced; once the journal has grown as large as the snapshot, or after a
//! start or a deletion, it writes a whole snapshot instead (a temporary file, synced, then
//! renamed, so a crash leaves the previous one) and the journal starts again. Written whole
//! every minute, a cache of 300,000 series of 500 values was 2.4 GB a minute. Loading reads the
//! snapshot, then the journal of the same generation up to its first incomplete or damaged
//! record (what a crash in the middle of an append leaves).

use std::collections::VecDeque;

// hashbrown (foldhash, seeded at random): the hot path's hasher, as in `enqueuer`.
use hashbrown::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use globset::{Glob, GlobMatcher};
use parking_lot::Mutex;
use perfpipe_backend::{Point, SeriesKey};
use serde::Deserialize;

use crate::routing::fnv1a_64;

/// Shards of the map, so writer threads and readers rarely meet on one mutex.
const SHARDS: usize = 32;
/// The snapshot's first bytes (and version), then its generation (u64).
const MAGIC: &[u8; 8] = b"PPLASTV2";
/// The first bytes of a snapshot of the earlier version, without a generation or journal.
const MAGIC_V1: &[u8; 8] = b"PPLASTV1";
/// The journal's first bytes (and version), then the generation of the snapshot it follows.
const JOURNAL_MAGIC: &[u8; 8] = b"PPLASTJ1";
/// A journal smaller than this is appended to whatever the snapshot's size.
const JOURNAL_MIN_BYTES: u64 = 1 << 20;

/// One `[[last_values]]` rule of the config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LastValuesRule {
    /// Glob over `host/service/metric`.
    #[serde(rename = "match")]
    pub pattern: String,
    /// Keep this many newest values.
    pub maxcount: Option<usize>,
    /// Keep values younger than `offset` × `period`.
    pub offset: Option<u32>,
    /// `H`, `D`, `W` or `Y`.
    pub period: Option<String>,
}

impl Default for LastValuesRule {
    fn default() -> Self {
        LastValuesRule {
            pattern: "*".into(),
            maxcount: Some(500),
            offset: None,
            period: None,
        }
    }
}

/// A rule that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("last_values rule {index}: {message}")]
    Invalid { index: usize, message: String },
}

/// How many values a series keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The newest N.
    Count(usize),
    /// Those at most this many seconds older than the newest.
    Age(i64),
}

/// The validated rules, in config order.
pub struct LastValuesRules {
    rules: Vec<(GlobMatcher, Limit)>,
}

impl LastValuesRules {
    /// Checks every rule: a valid glob, and exactly one of `maxcount` or `offset` + `period`.
    pub fn new(rules: &[LastValuesRule]) -> Result<LastValuesRules, RuleError> {
        let invalid = |index, message: String| RuleError::Invalid { index, message };
        let rules = rules
            .iter()
            .enumerate()
            .map(|(index, rule)| {
                let glob = Glob::new(&rule.pattern)
                    .map_err(|error| invalid(index, format!("match {:?}: {error}", rule.pattern)))?
                    .compile_matcher();
                let limit = match (rule.maxcount, rule.offset, rule.period.as_deref()) {
                    (Some(count), None, None) if count > 0 => Limit::Count(count),
                    (None, Some(offset), Some(period)) if offset > 0 => {
                        let seconds = match period {
                            "H" => 3600,
                            "D" => 86_400,
                            "W" => 7 * 86_400,
                            "Y" => 365 * 86_400,
                            other => {
                                return Err(invalid(
                                    index,
                                    format!("period {other:?} is not one of H, D, W, Y"),
                                ))
                            }
                        };
                        Limit::Age(i64::from(offset) * seconds)
                    }
                    _ => {
                        return Err(invalid(
                            index,
                            "give either maxcount (> 0) or offset (> 0) with period, not both"
                                .into(),
                        ))
                    }
                };
                Ok((glob, limit))
            })
            .collect::<Result<_, _>>()?;
        Ok(LastValuesRules { rules })
    }

    /// The limit for `key`; `None` when no rule matches (the series is not kept).
    pub fn limit_of(&self, key: &SeriesKey) -> Option<Limit> {
        let path = format!("{}/{}/{}", key.host, key.service, key.metric);
        self.rules
            .iter()
            .find(|(glob, _)| glob.is_match(&path))
            .map(|&(_, limit)| limit)
    }
}

struct Values {
    limit: Limit,
    /// Oldest first.
    points: VecDeque<(i64, f64)>,
    /// The oldest time recorded since the last save (which saves the values from it on).
    changed_from: Option<i64>,
}

impl Values {
    fn insert(&mut self, timestamp: i64, value: f64) {
        match self.points.back() {
            Some(&(last, _)) if timestamp > last => self.points.push_back((timestamp, value)),
            None => self.points.push_back((timestamp, value)),
            // Out of order (a late point): placed by binary search.
            Some(_) => match self.points.binary_search_by_key(&timestamp, |&(t, _)| t) {
                Ok(at) => self.points[at].1 = value,
                Err(at) => self.points.insert(at, (timestamp, value)),
            },
        }
    }

    fn purge(&mut self) {
        match self.limit {
            Limit::Count(count) => {
                while self.points.len() > count {
                    self.points.pop_front();
                }
            }
            Limit::Age(seconds) => {
                let Some(&(newest, _)) = self.points.back() else {
                    return;
                };
                while self
                    .points
                    .front()
                    .is_some_and(|&(t, _)| t < newest.saturating_sub(seconds))
                {
                    self.points.pop_front();
                }
            }
        }
    }
}

/// The cache; `Send + Sync`, shared by the writer threads and the HTTP handlers.
pub struct LastValues {
    rules: Arc<LastValuesRules>,
    shards: Vec<Mutex<HashMap<SeriesKey, Values>>>,
    /// What the files hold; locked for a whole save, so saves take turns.
    persisted: Mutex<Persisted>,
    /// Whether the next save writes a whole snapshot: at the first save of a process, after a
    /// deletion (a journal cannot take values away) and after a failed save (whose changes
    /// are no longer marked). Apart from `persisted`, so a deletion never waits for a save.
    snapshot_next: AtomicBool,
}

/// The snapshot and journal as the last save left them.
struct Persisted {
    /// The snapshot's generation; the journal carries it too.
    generation: u64,
    snapshot_bytes: u64,
    journal_bytes: u64,
}

/// Where the journal of the snapshot at `path` is.
fn journal_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".journal");
    name.into()
}

/// Syncs the directory holding `path`, so that a file made or renamed there keeps its name
/// through a power loss.
fn sync_directory_of(path: &Path) -> std::io::Result<()> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::File::open(directory)?.sync_all()
}

impl std::fmt::Debug for LastValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LastValues").finish_non_exhaustive()
    }
}

impl LastValues {
    pub fn new(rules: LastValuesRules) -> LastValues {
        LastValues {
            rules: Arc::new(rules),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            persisted: Mutex::new(Persisted {
                generation: 0,
                snapshot_bytes: 0,
                journal_bytes: 0,
            }),
            snapshot_next: AtomicBool::new(true),
        }
    }

    fn shard(&self, key: &SeriesKey) -> &Mutex<HashMap<SeriesKey, Values>> {
        let hash = fnv1a_64(key.host.as_bytes())
            ^ fnv1a_64(key.service.as_bytes()).rotate_left(21)
            ^ fnv1a_64(key.metric.as_bytes()).rotate_left(42);
        &self.shards[(hash % SHARDS as u64) as usize]
    }

    /// Adds the points of one series (any order) and purges by its rule; returns whether the
    /// cache keeps the series (a rule matches it), and so holds its newest value (`false`
    /// for no points: nothing looked up).
    pub fn record(&self, key: &SeriesKey, points: &[Point]) -> bool {
        if points.is_empty() {
            return false;
        }
        let mut shard = self.shard(key).lock();
        let values = match shard.get_mut(key) {
            Some(values) => values,
            None => {
                let Some(limit) = self.rules.limit_of(key) else {
                    return false;
                };
                shard.entry(key.clone()).or_insert(Values {
                    limit,
                    points: VecDeque::new(),
                    changed_from: None,
                })
            }
        };
        let mut oldest = i64::MAX;
        for point in points {
            values.insert(point.timestamp, point.value);
            oldest = oldest.min(point.timestamp);
        }
        values.purge();
        values.changed_from = Some(values.changed_from.map_or(oldest, |from| from.min(oldest)));
        true
    }

    /// Forgets a host, or one series of it (after a delete); the next save is a snapshot.
    pub fn forget(&self, host: &str, series: Option<(&str, &str)>) {
        for shard in &self.shards {
            shard.lock().retain(|key, _| {
                key.host != host
                    || series.is_some_and(|(service, metric)| {
                        key.service != service || key.metric != metric
                    })
            });
        }
        self.snapshot_next.store(true, Ordering::Release);
    }

    /// The newest value of `key` and its time, when it has any.
    pub fn newest(&self, key: &SeriesKey) -> Option<(i64, f64)> {
        self.with_values(key, |values| values.back().copied())
            .flatten()
    }

    /// Reads the values of `key` (oldest first) under its lock; `None` when it has none.
    pub fn with_values<T>(
        &self,
        key: &SeriesKey,
        read: impl FnOnce(&VecDeque<(i64, f64)>) -> T,
    ) -> Option<T> {
        let shard = self.shard(key).lock();
        shard.get(key).map(|values| read(&values.points))
    }

    /// How many series are kept.
    pub fn series(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().len()).sum()
    }

    /// Saves the cache for [`LastValues::load`] at `path`: the values recorded since the last
    /// save appended to the journal, or a whole snapshot (see the module doc).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let mut persisted = self.persisted.lock();
        let journal = journal_path(path);
        // Taken before the changes are copied: a deletion from here on asks for the next one.
        let forced = self.snapshot_next.swap(false, Ordering::AcqRel);
        let saved = if forced
            || persisted.journal_bytes >= persisted.snapshot_bytes.max(JOURNAL_MIN_BYTES)
        {
            let generation = persisted.generation + 1;
            self.write_snapshot(path, generation)
                .and_then(|snapshot_bytes| {
                    // The journal follows the snapshot before: read with none, and made anew.
                    match std::fs::remove_file(&journal) {
                        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
                        _ => Ok(snapshot_bytes),
                    }
                })
                .map(|snapshot_bytes| {
                    *persisted = Persisted {
                        generation,
                        snapshot_bytes,
                        journal_bytes: 0,
                    }
                })
        } else {
            self.append_journal(&journal, persisted.generation, persisted.journal_bytes)
                .map(|appended| persisted.journal_bytes += appended)
        };
        if saved.is_err() {
            // The changes were unmarked as they were copied: the next save writes them all.
            self.snapshot_next.store(true, Ordering::Release);
        }
        saved
    }

    /// Writes every series to `path` (a temporary file synced and renamed over it); returns
    /// its size.
    fn write_snapshot(&self, path: &Path, generation: u64) -> std::io::Result<u64> {
        let partial = path.with_extension("partial");
        let file = std::fs::File::create(&partial)?;
        let mut out = BufWriter::new(file);
        out.write_all(MAGIC)?;
        out.write_all(&generation.to_le_bytes())?;
        let mut record = Vec::new();
        for shard in &self.shards {
            copy_for_save(shard, true, |key, points| {
                record.clear();
                encode_series(&mut record, key, points);
                out.write_all(&record)
            })?;
        }
        let file = out.into_inner().map_err(|error| error.into_error())?;
        file.sync_all()?;
        let bytes = file.metadata()?.len();
        std::fs::rename(&partial, path)?;
        // The rename made durable before the journal of the old generation goes: else a power
        // loss could leave the old snapshot beside a journal of the new one, which it ignores.
        sync_directory_of(path)?;
        Ok(bytes)
    }

    /// Appends to `journal` (holding `held` bytes, made when 0) a record for every series with
    /// values recorded since the last save, holding those values; returns the bytes appended.
    fn append_journal(&self, journal: &Path, generation: u64, held: u64) -> std::io::Result<u64> {
        let mut options = std::fs::OpenOptions::new();
        if held == 0 {
            options.write(true).create(true).truncate(true);
        } else {
            options.append(true);
        }
        let mut out = BufWriter::new(options.open(journal)?);
        let mut appended = 0;
        if held == 0 {
            out.write_all(JOURNAL_MAGIC)?;
            out.write_all(&generation.to_le_bytes())?;
            appended += 16;
        }
        let mut record = Vec::new();
        for shard in &self.shards {
            copy_for_save(shard, false, |key, points| {
                record.clear();
                encode_series(&mut record, key, points);
                out.write_all(&(record.len() as u32).to_le_bytes())?;
                out.write_all(&crc32fast::hash(&record).to_le_bytes())?;
                out.write_all(&record)?;
                appended += 8 + record.len() as u64;
                Ok(())
            })?;
        }
        let file = out.into_inner().map_err(|error| error.into_error())?;
        file.sync_data()?;
        if held == 0 {
            // A new file's name is in its directory, which its own sync does not write.
            sync_directory_of(journal)?;
        }
        Ok(appended)
    }

    /// Reads what [`LastValues::save`] wrote (a missing snapshot is an empty cache): the
    /// snapshot, then the journal that follows it; each series takes the limit of today's
    /// rules. Returns how many series the cache then holds. The next save is a snapshot.
    pub fn load(&self, path: &Path) -> std::io::Result<usize> {
        let file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(error) => return Err(error),
        };
        let mut input = BufReader::new(file);
        let mut magic = [0u8; 8];
        input.read_exact(&mut magic)?;
        let generation = match &magic {
            MAGIC => read_u64(&mut input)?,
            MAGIC_V1 => 0,
            _ => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not a last-values file", path.display()),
                ))
            }
        };
        while let Some((key, points)) = decode_series(&mut input)? {
            let _ = self.record(&key, &points);
        }
        if generation > 0 {
            self.replay_journal(&journal_path(path), generation)?;
        }
        self.persisted.lock().generation = generation;
        self.snapshot_next.store(true, Ordering::Release);
        Ok(self.series())
    }

    /// Records the journal's series in order, when it follows the snapshot of `generation`,
    /// up to its first incomplete or damaged record.
    fn replay_journal(&self, journal: &Path, generation: u64) -> std::io::Result<()> {
        let file = match std::fs::File::open(journal) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error),
        };
        // A damaged length must not become an allocation: none is longer than what is left.
        let mut left = file.metadata()?.len();
        let mut input = BufReader::new(file);
        let mut header = [0u8; 16];
        left = left.saturating_sub(16);
        if input.read_exact(&mut header).is_err()
            || &header[..8] != JOURNAL_MAGIC
            || header[8..] != generation.to_le_bytes()
        {
            tracing::warn!(journal = %journal.display(), "last-values journal not of this snapshot: not read");
            return Ok(());
        }
        let mut record = Vec::new();
        loop {
            let mut head = [0u8; 8];
            match input.read_exact(&mut head) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(error) => return Err(error),
            }
            let length = u64::from(u32::from_le_bytes(head[..4].try_into().expect("4 bytes")));
            let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
            left = left.saturating_sub(8);
            let complete = length <= left && {
                record.resize(length as usize, 0);
                match input.read_exact(&mut record) {
                    Ok(()) => crc32fast::hash(&record) == crc,
                    Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => false,
                    Err(error) => return Err(error),
                }
            };
            left -= length.min(left);
            let decoded = if complete {
                decode_series(&mut record.as_slice()).ok().flatten()
            } else {
                None
            };
            let Some((key, points)) = decoded else {
                tracing::warn!(journal = %journal.display(), "last-values journal ends in a damaged record: read up to it");
                return Ok(());
            };
            let _ = self.record(&key, &points);
        }
    }
}

/// Series a save copies under a shard's lock at a time: writers wait for the copy of this
/// many, not of the whole shard, and the copy's buffer (reused) stays a few MB where a shard's
/// whole cache is hundreds (30,000 series of 500 values: 240 MB, which a copy at once
/// allocated afresh, the kernel zeroing its pages, at every snapshot).
const SAVE_CHUNK_SERIES: usize = 1024;

/// Gives `write` what a save writes of one shard's series, copied under its lock a chunk
/// ([`SAVE_CHUNK_SERIES`]) at a time and written outside it, and unmarks their changes: every
/// series whole for a snapshot, else those with changes, from their oldest changed time on.
/// Each series is copied whole at one moment; a series made after the copy began, or changed
/// after its own copy, stays marked for the next save, and one removed before its copy is left
/// out. When `write` fails the changes already unmarked are the caller's to save again.
fn copy_for_save(
    shard: &Mutex<HashMap<SeriesKey, Values>>,
    whole: bool,
    mut write: impl FnMut(&SeriesKey, &[(i64, f64)]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let keys: Vec<SeriesKey> = shard.lock().keys().cloned().collect();
    let mut points = Vec::new();
    let mut copied = Vec::with_capacity(SAVE_CHUNK_SERIES);
    for chunk in keys.chunks(SAVE_CHUNK_SERIES) {
        points.clear();
        copied.clear();
        {
            let mut series = shard.lock();
            for key in chunk {
                let Some(values) = series.get_mut(key) else {
                    continue;
                };
                let changed_from = values.changed_from.take();
                let first = if whole {
                    0
                } else {
                    let Some(from) = changed_from else {
                        continue;
                    };
                    values.points.partition_point(|&(t, _)| t < from)
                };
                let start = points.len();
                points.extend(values.points.range(first..).copied());
                copied.push((key, start..points.len()));
            }
        }
        for (key, span) in &copied {
            write(key, &points[span.clone()])?;
        }
    }
    Ok(())
}

/// One series as the snapshot and the journal hold it: its three names (length, bytes), the
/// count of its values, then each time and value, little-endian.
fn encode_series(out: &mut Vec<u8>, key: &SeriesKey, points: &[(i64, f64)]) {
    for name in [&key.host, &key.service, &key.metric] {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
    }
    out.extend_from_slice(&(points.len() as u32).to_le_bytes());
    for (timestamp, value) in points {
        out.extend_from_slice(&timestamp.to_le_bytes());
        out.extend_from_slice(&value.to_le_bytes());
    }
}

/// What [`encode_series`] wrote; `None` at the end of the input (before a series).
fn decode_series(input: &mut impl Read) -> std::io::Result<Option<(SeriesKey, Vec<Point>)>> {
    let mut names = Vec::with_capacity(3);
    for part in 0..3 {
        let length = match read_u32(input) {
            Ok(length) => length,
            Err(error) if part == 0 && error.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Ok(None)
            }
            Err(error) => return Err(error),
        };
        let mut bytes = vec![0u8; length as usize];
        input.read_exact(&mut bytes)?;
        names.push(String::from_utf8(bytes).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "a name is not UTF-8")
        })?);
    }
    let count = read_u32(input)? as usize;
    let mut points = Vec::with_capacity(count.min(1 << 20));
    for _ in 0..count {
        let timestamp = read_u64(input)? as i64;
        let value = f64::from_bits(read_u64(input)?);
        points.push(Point { timestamp, value });
    }
    let metric = names.pop().unwrap_or_default();
    let service = names.pop().unwrap_or_default();
    let host = names.pop().unwrap_or_default();
    Ok(Some((SeriesKey::new(host, service, metric), points)))
}

fn read_u64(input: &mut impl Read) -> std::io::Result<u64> {
    let mut bytes = [0u8; 8];
    input.read_exact(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}

fn read_u32(input: &mut impl Read) -> std::io::Result<u32> {
    let mut bytes = [0u8; 4];
    input.read_exact(&mut bytes)?;
    Ok(u32::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(range: std::ops::Range<i64>) -> Vec<Point> {
        range
            .map(|t| Point {
                timestamp: t * 60,
                value: t as f64,
            })
            .collect()
    }

    fn kept(cache: &LastValues, key: &SeriesKey) -> Vec<i64> {
        cache
            .with_values(key, |values| values.iter().map(|&(t, _)| t / 60).collect())
            .unwrap_or_default()
    }

    fn rules(text: &str) -> LastValuesRules {
        #[derive(Deserialize)]
        struct Rules {
            last_values: Vec<LastValuesRule>,
        }
        let parsed: Rules = toml::from_str(text).unwrap();
        LastValuesRules::new(&parsed.last_values).unwrap()
    }

    #[test]
    fn series_are_purged_by_count_or_by_age_as_their_first_matching_rule_says() {
        let cache = LastValues::new(rules(
            "[[last_values]]\nmatch = \"db*/**\"\noffset = 2\nperiod = \"H\"\n\
             [[last_values]]\nmatch = \"*\"\nmaxcount = 5\n",
        ));
        let web = SeriesKey::new("web", "PING", "rta");
        let db = SeriesKey::new("db1", "Disk", "used");
        cache.record(&web, &points(0..20));
        cache.record(&db, &points(0..200));
        assert_eq!(kept(&cache, &web), [15, 16, 17, 18, 19]);
        // Two hours back from the newest (minute 199): minutes 79..=199.
        assert_eq!(kept(&cache, &db), (79..200).collect::<Vec<_>>());
    }

    #[test]
    fn late_points_take_their_place_and_a_repeated_time_replaces() {
        let cache = LastValues::new(LastValuesRules::new(&[LastValuesRule::default()]).unwrap());
        let key = SeriesKey::new("h", "s", "m");
        cache.record(&key, &points(0..3));
        cache.record(&key, &points(5..6));
        cache.record(
            &key,
            &[
                Point {
                    timestamp: 240,
                    value: 4.0,
                },
                Point {
                    timestamp: 60,
                    value: 99.0,
                },
            ],
        );
        let values = cache
            .with_values(&key, |values| values.iter().copied().collect::<Vec<_>>())
            .unwrap();
        assert_eq!(
            values,
            [(0, 0.0), (60, 99.0), (120, 2.0), (240, 4.0), (300, 5.0)]
        );
    }

    #[test]
    fn a_saved_cache_loads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last-values");
        let cache = LastValues::new(LastValuesRules::new(&[LastValuesRule::default()]).unwrap());
        for n in 0..50 {
            let key = SeriesKey::new(format!("host {n}"), "sérvice", format!("m{n}"));
            cache.record(&key, &points(0..(n + 1)));
        }
        cache.save(&path).unwrap();
        let loaded = LastValues::new(LastValuesRules::new(&[LastValuesRule::default()]).unwrap());
        assert_eq!(loaded.load(&path).unwrap(), 50);
        for n in 0..50 {
            let key = SeriesKey::new(format!("host {n}"), "sérvice", format!("m{n}"));
            assert_eq!(kept(&loaded, &key), (0..=n).collect::<Vec<_>>());
        }
        assert_eq!(loaded.load(&dir.path().join("none")).unwrap(), 0);
        std::fs::write(&path, b"garbage!").unwrap();
        assert!(loaded.load(&path).is_err());
    }

    fn all_values(cache: &LastValues) -> Vec<(SeriesKey, Vec<(i64, f64)>)> {
        let mut all: Vec<_> = cache
            .shards
            .iter()
            .flat_map(|shard| {
                shard
                    .lock()
                    .iter()
                    .map(|(key, values)| (key.clone(), values.points.iter().copied().collect()))
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    fn loaded(path: &Path) -> LastValues {
        let cache = LastValues::new(rules("[[last_values]]\nmatch = \"*\"\nmaxcount = 5\n"));
        cache.load(path).unwrap();
        cache
    }

    #[test]
    fn saves_after_the_first_append_what_changed_and_a_load_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last-values");
        let journal = journal_path(&path);
        let cache = LastValues::new(rules("[[last_values]]\nmatch = \"*\"\nmaxcount = 5\n"));
        let keys: Vec<SeriesKey> = (0..20)
            .map(|n| SeriesKey::new(format!("host {n}"), "ping", "rta"))
            .collect();
        for key in &keys {
            cache.record(key, &points(0..8));
        }
        cache.save(&path).unwrap();
        assert!(!journal.exists(), "the first save is a snapshot");
        let snapshot = std::fs::read(&path).unwrap();

        // A new value of two series, a late one of a third, a new series.
        cache.record(&keys[0], &points(8..9));
        cache.record(&keys[1], &points(8..10));
        cache.record(
            &keys[2],
            &[Point {
                timestamp: 5 * 60,
                value: -1.0,
            }],
        );
        let new = SeriesKey::new("db", "disk", "used");
        cache.record(&new, &points(0..2));
        cache.save(&path).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            snapshot,
            "the snapshot stays"
        );
        let journal_size = std::fs::metadata(&journal).unwrap().len();
        assert!(
            journal_size < snapshot.len() as u64 / 4,
            "the journal holds only the changes: {journal_size} bytes"
        );
        assert_eq!(all_values(&loaded(&path)), all_values(&cache));

        // Nothing changed: nothing but the header is there to read.
        cache.save(&path).unwrap();
        assert_eq!(std::fs::metadata(&journal).unwrap().len(), journal_size);
        cache.record(&keys[3], &points(9..10));
        cache.save(&path).unwrap();
        assert_eq!(all_values(&loaded(&path)), all_values(&cache));

        // A crash in the middle of an append: read up to the last whole record.
        let whole = std::fs::read(&journal).unwrap();
        std::fs::write(&journal, &whole[..whole.len() - 3]).unwrap();
        let cut = loaded(&path);
        assert_eq!(
            kept(&cut, &keys[3]),
            [3, 4, 5, 6, 7],
            "the torn record is not read"
        );
        assert_eq!(
            kept(&cut, &keys[1]),
            [5, 6, 7, 8, 9],
            "the records before it are"
        );
        let mut damaged = whole.clone();
        let last = damaged.len() - 2;
        damaged[last] ^= 0xff;
        std::fs::write(&journal, &damaged).unwrap();
        assert_eq!(kept(&loaded(&path), &keys[3]), [3, 4, 5, 6, 7]);
        // A damaged length, as large as it goes, ends the reading there.
        let mut last_record = 16;
        loop {
            let length =
                u32::from_le_bytes(whole[last_record..last_record + 4].try_into().unwrap());
            let next = last_record + 8 + length as usize;
            if next == whole.len() {
                break;
            }
            last_record = next;
        }
        let mut damaged = whole.clone();
        damaged[last_record..last_record + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&journal, &damaged).unwrap();
        assert_eq!(kept(&loaded(&path), &keys[3]), [3, 4, 5, 6, 7]);
        std::fs::write(&journal, &whole).unwrap();

        // A deletion cannot be journalled: the next save is a snapshot, without the series.
        cache.forget("db", None);
        cache.save(&path).unwrap();
        assert!(!journal.exists());
        let reloaded = loaded(&path);
        assert_eq!(kept(&reloaded, &new), Vec::<i64>::new());
        assert_eq!(all_values(&reloaded), all_values(&cache));

        // A journal of an earlier snapshot is not read with a later one.
        std::fs::write(&journal, &whole).unwrap();
        assert_eq!(kept(&loaded(&path), &new), Vec::<i64>::new());
    }

    #[test]
    fn a_save_copies_a_chunk_at_a_time_and_changes_made_while_it_writes_stay_marked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last-values");
        let cache = LastValues::new(rules("[[last_values]]\nmatch = \"*\"\nmaxcount = 5\n"));
        // Several chunks in every shard.
        let keys: Vec<SeriesKey> = (0..(SHARDS * SAVE_CHUNK_SERIES * 2))
            .map(|n| SeriesKey::new(format!("host {n}"), "ping", "rta"))
            .collect();
        for key in &keys {
            cache.record(key, &points(0..3));
        }
        cache.save(&path).unwrap();
        assert_eq!(all_values(&loaded(&path)), all_values(&cache));

        // While a shard's first series is written, a value comes for every series of that
        // shard: those copied already get it in the next save, the others in this one.
        let shard = &cache.shards[0];
        let mut written = Vec::new();
        let mut first = true;
        for key in &keys {
            cache.record(key, &points(3..4));
        }
        copy_for_save(shard, false, |key, copied| {
            if std::mem::take(&mut first) {
                let in_shard: Vec<SeriesKey> = shard.lock().keys().cloned().collect();
                for key in &in_shard {
                    cache.record(key, &points(4..5));
                }
            }
            written.push((key.clone(), copied.to_vec()));
            Ok(())
        })
        .unwrap();
        let in_shard = shard.lock().len();
        assert_eq!(written.len(), in_shard, "every changed series once");
        let with_the_late_value = written.iter().filter(|(_, p)| p.len() == 2).count();
        assert_eq!(
            with_the_late_value,
            in_shard - SAVE_CHUNK_SERIES,
            "the first chunk was copied before the values came, the rest after"
        );
        let mut again = Vec::new();
        copy_for_save(shard, false, |key, points| {
            again.push((key.clone(), points.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            again.len(),
            SAVE_CHUNK_SERIES,
            "the first chunk is still marked"
        );
        assert!(again.iter().all(|(_, p)| p == &[(4 * 60, 4.0)]));

        // The copies above were not written to the files: a snapshot brings them back.
        cache.snapshot_next.store(true, Ordering::Release);
        cache.save(&path).unwrap();
        assert_eq!(all_values(&loaded(&path)), all_values(&cache));
    }

    #[test]
    fn a_snapshot_of_the_earlier_version_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last-values");
        let key = SeriesKey::new("web", "ping", "rta");
        let mut file = MAGIC_V1.to_vec();
        encode_series(&mut file, &key, &[(60, 1.0), (120, 2.0)]);
        std::fs::write(&path, &file).unwrap();
        let cache = loaded(&path);
        assert_eq!(kept(&cache, &key), [1, 2]);
        cache.save(&path).unwrap();
        assert_eq!(&std::fs::read(&path).unwrap()[..8], MAGIC);
        assert_eq!(kept(&loaded(&path), &key), [1, 2]);
    }

    #[test]
    fn a_journal_as_large_as_the_snapshot_gives_way_to_a_snapshot_and_a_start_saves_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last-values");
        let journal = journal_path(&path);
        let cache = LastValues::new(LastValuesRules::new(&[LastValuesRule::default()]).unwrap());
        // 300 series of 500 values: a snapshot of about 2.4 MB, over the journal's minimum.
        let keys: Vec<SeriesKey> = (0..300)
            .map(|n| SeriesKey::new("web", format!("service {n}"), "time"))
            .collect();
        let round = |from: i64| {
            for key in &keys {
                cache.record(key, &points(from..from + 500));
            }
        };
        round(0);
        cache.save(&path).unwrap();
        round(500);
        cache.save(&path).unwrap();
        assert!(
            std::fs::metadata(&journal).unwrap().len() >= std::fs::metadata(&path).unwrap().len()
        );
        round(1000);
        cache.save(&path).unwrap();
        assert!(!journal.exists(), "the third save is a snapshot again");
        assert_eq!(all_values(&loaded(&path)).len(), 300);

        // After a load, the first save writes a snapshot of a later generation.
        cache.record(&keys[0], &points(2000..2001));
        cache.save(&path).unwrap();
        assert!(journal.exists());
        let restarted =
            LastValues::new(LastValuesRules::new(&[LastValuesRule::default()]).unwrap());
        restarted.load(&path).unwrap();
        assert_eq!(all_values(&restarted), all_values(&cache));
        restarted.save(&path).unwrap();
        assert!(!journal.exists());
        assert_eq!(all_values(&loaded(&path)).len(), 300);
    }

    #[test]
    fn rules_must_choose_one_purge() {
        let rule = |maxcount, offset, period: Option<&str>| LastValuesRule {
            pattern: "*".into(),
            maxcount,
            offset,
            period: period.map(String::from),
        };
        assert!(LastValuesRules::new(&[rule(Some(5), Some(1), Some("D"))]).is_err());
        assert!(LastValuesRules::new(&[rule(None, None, None)]).is_err());
        assert!(LastValuesRules::new(&[rule(None, Some(1), Some("M"))]).is_err());
        assert!(LastValuesRules::new(&[rule(Some(0), None, None)]).is_err());
        let error = LastValuesRules::new(&[
            rule(Some(5), None, None),
            LastValuesRule {
                pattern: "[".into(),
                ..LastValuesRule::default()
            },
        ])
        .err()
        .unwrap();
        assert!(
            error.to_string().starts_with("last_values rule 1: match"),
            "{error}"
        );
    }
}
