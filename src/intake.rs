//! From request bodies and spool files to points: the envelope readers, then the perfdata
//! reader, grouped per series. Shared by the write API and `perfpipe ingest`, so both read
//! input the same way.
//!
//! Host perfdata (no service) is stored under the service [`HOST_SERVICE`], as PNP4Nagios does.
//! A metric with the value `U` is counted and not stored. Every bad record or metric becomes an
//! [`IntakeError`] naming the record (index in the body, or line) and, for perfdata, the byte
//! offset of the metric; the good results around it are kept.

// hashbrown (foldhash, seeded at random): the hot path's hasher, as in `enqueuer`.
use hashbrown::HashMap;
use std::fmt;

use perfpipe_backend::{Levels, Name, Point, SeriesKey, ThresholdRange};
use perfpipe_checkresult::{json, spool, CheckResult, EnvelopeError, Location};
use serde::Serialize;

use crate::enqueuer::SeriesPoints;

/// The service name host perfdata is stored under.
pub const HOST_SERVICE: &str = "_HOST_";

/// How a body is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `{"results":[…]}`.
    JsonBody,
    /// One result object a line.
    Ndjson,
    /// Opsview or Nagios spool lines.
    Spool,
    /// Decide line by line (a line starting with `{` is JSON, any other a spool line), or a
    /// whole `{"results":…}` body: what `perfpipe ingest` reads.
    Detect,
}

/// A record or metric that was not taken.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntakeError {
    /// Index of the result in the body (0-based), or for line formats the 0-based line index.
    pub result: usize,
    /// Byte offset of the metric in its perfdata string, for perfdata errors.
    pub offset: Option<usize>,
    /// What was wrong, naming the field where one is to blame.
    pub message: String,
    #[serde(skip)]
    location: Location,
}

impl fmt::Display for IntakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.offset {
            Some(offset) => write!(
                f,
                "{}, perfdata: {} at byte {offset}",
                self.location, self.message
            ),
            None => write!(f, "{}: {}", self.location, self.message),
        }
    }
}

impl IntakeError {
    fn envelope(error: EnvelopeError) -> Self {
        let message = match &error.field {
            Some(field) => format!("field {field}: {}", error.message),
            None => error.message,
        };
        IntakeError {
            result: index_of(error.location),
            offset: None,
            message,
            location: error.location,
        }
    }
}

fn index_of(location: Location) -> usize {
    match location {
        Location::Body => 0,
        Location::Result(index) => index,
        Location::Line(number) => number - 1,
    }
}

/// What one body may hold at most (`[limits]` in the config).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Check results in one body; reading stops past it ([`Intake::too_many_results`]).
    pub max_results: usize,
    /// Metrics in one result; the rest of its perfdata is refused with an error.
    pub max_metrics_per_result: usize,
    /// Bytes of a host, service or metric name; a longer one is refused with an error.
    pub max_name_length: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_results: 100_000,
            max_metrics_per_result: 1_000,
            max_name_length: 1_024,
        }
    }
}

/// What a body held.
#[derive(Debug, Default)]
pub struct Intake {
    /// Points grouped per series, in first-seen order; within a series in input order.
    pub series: Vec<SeriesPoints>,
    /// Check results read.
    pub results: u64,
    /// Points read (metrics with a value).
    pub points: u64,
    /// Metrics whose value was `U`.
    pub unknown_values: u64,
    /// Records and metrics not taken.
    pub errors: Vec<IntakeError>,
    /// The body held more results than `max_results`: reading stopped there, and the body as
    /// a whole is to be refused.
    pub too_many_results: bool,
}

/// Reads `body` as `format` within the default [`Limits`].
pub fn read(body: &[u8], format: Format) -> Intake {
    read_within(body, format, &Limits::default())
}

/// Reads `body` as `format`; what passes `limits` is refused with errors naming the limit.
pub fn read_within(body: &[u8], format: Format, limits: &Limits) -> Intake {
    let mut intake = Intake::default();
    let mut index = SeriesIndex::default();
    // Whether to go on: false once the body has shown more results than the limit.
    // `results_expected` is how many results the body holds at most (records of a JSON body,
    // lines of the others): with the first result's series it sizes the series vector and the
    // index once, rather than by doubling (each doubling moved every series read so far).
    let mut accept = |result: CheckResult<'_>,
                      location: Location,
                      intake: &mut Intake,
                      results_expected: usize| {
        if intake.results as usize >= limits.max_results {
            intake.too_many_results = true;
            return false;
        }
        let first = intake.results == 0;
        add_result(&result, location, &mut index, intake, limits);
        if first {
            let results_left = results_expected.min(limits.max_results).saturating_sub(1);
            // A metric takes at least 4 bytes of the body ("a=1 "): a first result with many
            // metrics among small ones cannot make the guess larger than the body allows.
            let series_left =
                (intake.series.len().saturating_mul(results_left)).min(body.len() / 4);
            intake.series.reserve(series_left);
            index.positions.reserve(series_left);
        }
        true
    };

    let text = std::str::from_utf8(body);
    let whole_body = match (format, text) {
        (Format::JsonBody, Ok(text)) => Some(json::read_body(text)),
        (Format::Detect, Ok(text)) if text.trim_start().starts_with('{') => {
            json::read_body(text).ok().map(Ok)
        }
        (Format::JsonBody, Err(error)) => {
            intake.errors.push(IntakeError {
                result: 0,
                offset: None,
                message: format!("not UTF-8 (byte {})", error.valid_up_to()),
                location: Location::Body,
            });
            return intake;
        }
        _ => None,
    };
    if let Some(records) = whole_body {
        match records {
            Ok(records) => {
                let results_expected = records.len();
                for (i, record) in records.into_iter().enumerate() {
                    match record {
                        Ok(result) => {
                            if !accept(result, Location::Result(i), &mut intake, results_expected) {
                                break;
                            }
                        }
                        Err(error) => intake.errors.push(IntakeError::envelope(error)),
                    }
                }
            }
            Err(error) => intake.errors.push(IntakeError::envelope(error)),
        }
        return intake;
    }

    let results_expected = memchr::memchr_iter(b'\n', body).count() + 1;
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let location = Location::Line(i + 1);
        let Ok(line) = std::str::from_utf8(line) else {
            intake.errors.push(IntakeError::envelope(EnvelopeError {
                location,
                field: None,
                message: "not valid UTF-8".into(),
            }));
            continue;
        };
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let json_line = match format {
            Format::Ndjson => true,
            Format::Spool => false,
            _ => line.starts_with('{'),
        };
        let record = if json_line {
            json::read_result(line, location)
        } else {
            spool::read_line(line, location)
        };
        match record {
            Ok(result) => {
                if !accept(result, location, &mut intake, results_expected) {
                    break;
                }
            }
            Err(error) => intake.errors.push(IntakeError::envelope(error)),
        }
    }
    intake
}

/// The thresholds and bounds beside a metric's value; a threshold that is not a valid range
/// is left out (the reading keeps the metric).
fn levels_of(metric: &perfpipe_perfdata::Metric<'_>) -> Levels {
    let range = |threshold: Option<perfpipe_perfdata::Threshold<'_>>| {
        threshold
            .and_then(|threshold| threshold.range)
            .map(|range| ThresholdRange {
                start: range.start,
                end: range.end,
                inside: range.inside,
            })
    };
    Levels {
        warn: range(metric.warn),
        crit: range(metric.crit),
        min: metric.min,
        max: metric.max,
    }
}

/// Where each series of a body is in [`Intake::series`], found from its borrowed names: a
/// series seen before costs no allocation, a new one allocates only its own key (the index
/// keeps a hash of the names, not a copy of them).
#[derive(Default)]
struct SeriesIndex {
    /// Hash of (host, service, metric) → position; a hash shared by two series (as good as
    /// never with 64 bits) sends the second to [`SeriesIndex::position`]'s linear search.
    positions: HashMap<u64, usize>,
    /// foldhash (hashbrown's, seeded per index) rather than std's SipHash: it is hashed once per
    /// metric read, and a collision costs only a linear search.
    hasher: hashbrown::DefaultHashBuilder,
}

impl SeriesIndex {
    /// The position of series `(host, service, metric)` in `series`, pushed there if new.
    fn position(&mut self, series: &mut Vec<SeriesPoints>, names: (&str, &str, &str)) -> usize {
        let same = |one: &SeriesPoints| {
            one.key.host == names.0 && one.key.service == names.1 && one.key.metric == names.2
        };
        let hash = std::hash::BuildHasher::hash_one(&self.hasher, names);
        match self.positions.get(&hash) {
            Some(&at) if same(&series[at]) => return at,
            Some(_) => {
                if let Some(at) = series.iter().position(same) {
                    return at;
                }
            }
            None => {
                self.positions.insert(hash, series.len());
            }
        }
        series.push(SeriesPoints {
            key: SeriesKey::new(names.0, names.1, names.2),
            uom: Name::default(),
            // A series has one point a body as a rule (one result a check): room for one,
            // inline.
            points: smallvec::SmallVec::new(),
            levels: smallvec::SmallVec::new(),
        });
        series.len() - 1
    }
}

fn add_result(
    result: &CheckResult<'_>,
    location: Location,
    index: &mut SeriesIndex,
    intake: &mut Intake,
    limits: &Limits,
) {
    // Whisper and RRD keep 32-bit seconds: a later time (a sender writing milliseconds) would
    // fail the whole series batch downstream, after the write was acknowledged.
    if !(0..=i64::from(u32::MAX)).contains(&result.timestamp) {
        intake.errors.push(IntakeError {
            result: index_of(location),
            offset: None,
            message: format!(
                "timestamp {} is not a time in seconds the stores can hold (milliseconds?)",
                result.timestamp
            ),
            location,
        });
        return;
    }
    let service = result.service.as_deref().unwrap_or(HOST_SERVICE);
    for (field, name) in [("host", result.host.as_ref()), ("service", service)] {
        if name.len() > limits.max_name_length {
            intake.errors.push(IntakeError {
                result: index_of(location),
                offset: None,
                message: format!(
                    "field {field}: {} bytes, more than the limit of {}",
                    name.len(),
                    limits.max_name_length
                ),
                location,
            });
            return;
        }
    }
    intake.results += 1;
    for (position, metric) in perfpipe_perfdata::Reader::new(&result.perfdata).enumerate() {
        if position == limits.max_metrics_per_result {
            intake.errors.push(IntakeError {
                result: index_of(location),
                offset: metric.as_ref().ok().map(|metric| metric.offset),
                message: format!(
                    "more than {} metrics in one result; the rest are not taken",
                    limits.max_metrics_per_result
                ),
                location,
            });
            break;
        }
        let metric = match metric {
            Ok(metric) => metric,
            Err(error) => {
                intake.errors.push(IntakeError {
                    result: index_of(location),
                    offset: Some(error.offset),
                    message: error.kind.to_string(),
                    location,
                });
                continue;
            }
        };
        let Some(value) = metric.value else {
            intake.unknown_values += 1;
            continue;
        };
        if metric.label.len() > limits.max_name_length {
            intake.errors.push(IntakeError {
                result: index_of(location),
                offset: Some(metric.offset),
                message: format!(
                    "label of {} bytes, more than the limit of {}",
                    metric.label.len(),
                    limits.max_name_length
                ),
                location,
            });
            continue;
        }
        intake.points += 1;
        let levels = levels_of(&metric);
        let at = index.position(
            &mut intake.series,
            (result.host.as_ref(), service, &metric.label),
        );
        let series = &mut intake.series[at];
        // The unit of the latest result wins, as the catalogue keeps the latest unit.
        if series.uom != metric.uom {
            series.uom = Name::new(metric.uom);
        }
        series.points.push(Point {
            timestamp: result.timestamp,
            value,
        });
        if series.levels.last().is_none_or(|(_, last)| *last != levels) {
            series.levels.push((result.timestamp, levels));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_series_index_finds_each_series_once_even_when_hashes_collide() {
        let mut index = SeriesIndex::default();
        let mut series = Vec::new();
        let a = ("h", "s", "a");
        let b = ("h", "s", "b");
        assert_eq!(index.position(&mut series, a), 0);
        assert_eq!(index.position(&mut series, a), 0);
        // b's hash taken by a (a collision): b must still get a place of its own, once.
        let hash_b = std::hash::BuildHasher::hash_one(&index.hasher, b);
        index.positions.insert(hash_b, 0);
        assert_eq!(index.position(&mut series, b), 1);
        assert_eq!(index.position(&mut series, b), 1);
        assert_eq!(index.position(&mut series, a), 0);
        let names: Vec<&str> = series.iter().map(|one| &*one.key.metric).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn thresholds_travel_with_the_points_recorded_where_they_change() {
        let body = b"100||h||Disk||OK||used=1%;80;90;0;100\n\
                     160||h||Disk||OK||used=2%;80;90;0;100\n\
                     220||h||Disk||OK||used=3%;@10:~;x\n";
        let intake = read(body, Format::Detect);
        let series = &intake.series[0];
        assert_eq!(series.points.len(), 3);
        let plain = |end| {
            Some(ThresholdRange {
                start: 0.0,
                end,
                inside: false,
            })
        };
        assert_eq!(
            series.levels[..],
            [
                (
                    100,
                    Levels {
                        warn: plain(80.0),
                        crit: plain(90.0),
                        min: Some(0.0),
                        max: Some(100.0),
                    }
                ),
                (
                    220,
                    Levels {
                        warn: None,
                        crit: None,
                        min: None,
                        max: None,
                    }
                ),
            ]
        );
    }

    #[test]
    fn points_group_per_series_and_bad_records_are_named() {
        let body = b"1764590400||web-01||PING||OK||rta=1ms pl=0%\n\
                     1764590460||web-01||PING||OK||rta=2ms pl=x\n\
                     1764590460123||web-01||PING||OK||rta=3ms\n\
                     garbage\n\
                     {\"host\":\"web-02\",\"timestamp\":1764590400,\"perfdata\":\"up=1\"}\n";
        let intake = read(body, Format::Detect);
        assert_eq!((intake.results, intake.points), (3, 4));
        let series: Vec<String> = intake.series.iter().map(|s| s.key.to_string()).collect();
        assert_eq!(
            series,
            [
                "web-01::PING::rta",
                "web-01::PING::pl",
                "web-02::_HOST_::up"
            ]
        );
        assert_eq!(intake.series[0].points.len(), 2);
        let errors: Vec<String> = intake.errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert_eq!(
            errors[0],
            "line 2, perfdata: value is not a number at byte 8"
        );
        assert!(
            errors[1].starts_with("line 3: timestamp 1764590460123 is not a time"),
            "{errors:?}"
        );
        assert!(errors[2].starts_with("line 4: neither"), "{errors:?}");
    }
}
