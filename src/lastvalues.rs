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
//! [`LastValues::save`] / [`LastValues::load`] (written whole to a temporary file, synced, then
//! renamed, so a crash leaves the previous file).

use std::collections::VecDeque;

// hashbrown (foldhash, seeded at random): the hot path's hasher, as in `enqueuer`.
use hashbrown::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;

use globset::{Glob, GlobMatcher};
use parking_lot::Mutex;
use perfpipe_backend::{Point, SeriesKey};
use serde::Deserialize;

use crate::routing::fnv1a_64;

/// Shards of the map, so writer threads and readers rarely meet on one mutex.
const SHARDS: usize = 32;
/// The file format's first bytes (and version).
const MAGIC: &[u8; 8] = b"PPLASTV1";

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
                })
            }
        };
        for point in points {
            values.insert(point.timestamp, point.value);
        }
        values.purge();
        true
    }

    /// Forgets a host, or one series of it (after a delete).
    pub fn forget(&self, host: &str, series: Option<(&str, &str)>) {
        for shard in &self.shards {
            shard.lock().retain(|key, _| {
                key.host != host
                    || series.is_some_and(|(service, metric)| {
                        key.service != service || key.metric != metric
                    })
            });
        }
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

    /// Writes every series to `path` (a temporary file synced and renamed over it).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let partial = path.with_extension("partial");
        let file = std::fs::File::create(&partial)?;
        let mut out = BufWriter::new(file);
        out.write_all(MAGIC)?;
        for shard in &self.shards {
            // One shard at a time: writers wait for one shard's copy, not for the disk.
            let copied: Vec<(SeriesKey, Vec<(i64, f64)>)> = shard
                .lock()
                .iter()
                .map(|(key, values)| (key.clone(), values.points.iter().copied().collect()))
                .collect();
            for (key, points) in copied {
                for name in [&key.host, &key.service, &key.metric] {
                    out.write_all(&(name.len() as u32).to_le_bytes())?;
                    out.write_all(name.as_bytes())?;
                }
                out.write_all(&(points.len() as u32).to_le_bytes())?;
                for (timestamp, value) in points {
                    out.write_all(&timestamp.to_le_bytes())?;
                    out.write_all(&value.to_le_bytes())?;
                }
            }
        }
        let file = out.into_inner().map_err(|error| error.into_error())?;
        file.sync_all()?;
        std::fs::rename(&partial, path)
    }

    /// Reads what [`LastValues::save`] wrote (a missing file is an empty cache); each series
    /// takes the limit of today's rules.
    pub fn load(&self, path: &Path) -> std::io::Result<usize> {
        let file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(error) => return Err(error),
        };
        let mut input = BufReader::new(file);
        let mut magic = [0u8; 8];
        input.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is not a last-values file", path.display()),
            ));
        }
        let mut series = 0;
        loop {
            let mut names = Vec::with_capacity(3);
            for part in 0..3 {
                let length = match read_u32(&mut input) {
                    Ok(length) => length,
                    Err(error)
                        if part == 0 && error.kind() == std::io::ErrorKind::UnexpectedEof =>
                    {
                        return Ok(series)
                    }
                    Err(error) => return Err(error),
                };
                let mut bytes = vec![0u8; length as usize];
                input.read_exact(&mut bytes)?;
                names.push(String::from_utf8(bytes).map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "a name is not UTF-8")
                })?);
            }
            let count = read_u32(&mut input)? as usize;
            let mut points = Vec::with_capacity(count.min(1 << 20));
            for _ in 0..count {
                let mut timestamp = [0u8; 8];
                let mut value = [0u8; 8];
                input.read_exact(&mut timestamp)?;
                input.read_exact(&mut value)?;
                points.push(Point {
                    timestamp: i64::from_le_bytes(timestamp),
                    value: f64::from_le_bytes(value),
                });
            }
            let metric = names.pop().unwrap_or_default();
            let service = names.pop().unwrap_or_default();
            let host = names.pop().unwrap_or_default();
            self.record(&SeriesKey::new(host, service, metric), &points);
            series += 1;
        }
    }
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
